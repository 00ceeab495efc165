//! Snapshots of the `--help` and `--dry-run` outputs of `signer token …` and `signer app personalise`,
//! compared as plain text with the files under `signer/tests/snapshots/` (as `cli_snapshots.rs` does for
//! the other commands): run with `UPDATE_SNAPSHOTS=1` to rewrite them, then read the diff.

use postissue_tests::{ok, root};
use std::process::Command;

fn check(name: &str, actual: &str) {
    let path = root()
        .join("signer/tests/snapshots")
        .join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} is missing; run with UPDATE_SNAPSHOTS=1", path.display()));
    assert_eq!(
        actual, expected,
        "snapshot {name} differs; rerun with UPDATE_SNAPSHOTS=1 if intended"
    );
}

fn signer(dir: &std::path::Path) -> Command {
    let mut c = Command::new(postissue_tests::bin("signer"));
    c.current_dir(dir).env_remove("COLUMNS");
    c
}

#[test]
fn help_texts() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[&str]); 7] = [
        ("help-token", &["token", "--help"]),
        ("help-token-load", &["token", "load", "--help"]),
        ("help-token-install", &["token", "install", "--help"]),
        ("help-token-delete", &["token", "delete", "--help"]),
        ("help-token-put-keys", &["token", "put-keys", "--help"]),
        ("help-app", &["app", "--help"]),
        ("help-app-personalise", &["app", "personalise", "--help"]),
    ];
    for (name, args) in cases {
        check(name, &ok(signer(dir.path()).args(args)));
    }
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
