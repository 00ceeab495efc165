//! Snapshots of the `--help` and `--dry-run` outputs of `signer token …` and `signer app personalise`,
//! compared as plain text with the files under `signer/tests/snapshots/` (as `cli_snapshots.rs` does for
//! the other commands): run with `UPDATE_SNAPSHOTS=1` to rewrite them, then read the diff.

use postissue_tests::ok;
use postissue_tests::snapshot::{check, check_all, signer};
use std::process::Command;

#[test]
fn help_texts() {
    let cases: [(&str, &[&str]); 7] = [
        ("help-token", &["token", "--help"]),
        ("help-token-load", &["token", "load", "--help"]),
        ("help-token-install", &["token", "install", "--help"]),
        ("help-token-delete", &["token", "delete", "--help"]),
        ("help-token-put-keys", &["token", "put-keys", "--help"]),
        ("help-app", &["app", "--help"]),
        ("help-app-personalise", &["app", "personalise", "--help"]),
    ];
    check_all(&cases);
}

#[test]
fn dry_runs_print_every_action_and_touch_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    ok(Command::new(postissue_tests::bin("demo-cap"))
        .current_dir(dir)
        .arg("hello.cap"));
    ok(signer(dir).args(["package", "hello.cap", "--out", "hello.pkg"]));
    let issuer = "pkcs11:token=issuer";
    let load = ok(signer(dir).args([
        "--dry-run",
        "token",
        "load",
        "hello.pkg",
        "--sd",
        "A0000001515350410001",
        "--token-key",
        &format!("{issuer};object=dm-token"),
        "--out",
        "hello.tokens",
        "--ledger",
        "issuer.jsonl",
    ]));
    check("dry-run-token-load", &load);
    let put = ok(signer(dir).args([
        "--dry-run",
        "token",
        "put-keys",
        "--card",
        "sim:card.img",
        "--master",
        &format!("{issuer};object=isd-kmc"),
        "--token-key",
        &format!("{issuer};object=dm-token"),
        "--receipt-master",
        &format!("{issuer};object=receipt-master"),
    ]));
    check("dry-run-token-put-keys", &put);
    std::fs::write(
        dir.join("purse.hex"),
        "DF01 04 000186A0\nDF02 04 00000064\n",
    )
    .unwrap();
    let perso = ok(signer(dir).args([
        "--dry-run",
        "app",
        "personalise",
        "--card",
        "sim:card.img",
        "--sd",
        "A0000001515350410001",
        "--app",
        "F050555253450101",
        "--data",
        "purse.hex",
        "--master",
        "pkcs11:token=vendor;object=ssd-kmc",
    ]));
    check("dry-run-app-personalise", &perso);
    assert!(
        !dir.join("hello.tokens").exists()
            && !dir.join("issuer.jsonl").exists()
            && !dir.join("card.img").exists()
    );
}
