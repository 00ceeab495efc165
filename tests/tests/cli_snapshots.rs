//! Snapshots of `signer --help` (and its subcommands) and of `--dry-run` outputs, compared as plain text
//! with the files under `signer/tests/snapshots/`. A change to the command line shows up in review as a
//! change to those files: run with `UPDATE_SNAPSHOTS=1` to rewrite them, then read the diff.

use postissue_tests::snapshot::{check, check_all, signer};
use postissue_tests::{ok, SoftHsm};
use std::process::Command;

#[test]
fn help_texts() {
    let cases: [(&str, &[&str]); 13] = [
        ("help", &["--help"]),
        ("help-package", &["package", "--help"]),
        ("help-verify", &["verify", "--help"]),
        ("help-keys-derive", &["keys", "derive", "--help"]),
        ("help-deploy", &["deploy", "--help"]),
        ("help-card", &["card", "--help"]),
        ("help-card-put-keys", &["card", "put-keys", "--help"]),
        ("help-card-terminate", &["card", "terminate", "--help"]),
        ("help-card-create-sd", &["card", "create-sd", "--help"]),
        ("help-sd", &["sd", "--help"]),
        ("help-sd-put-keys", &["sd", "put-keys", "--help"]),
        ("help-batch", &["batch", "--help"]),
        ("help-inspect", &["inspect", "--help"]),
    ];
    check_all(&cases);
}

#[test]
fn dry_runs_print_every_action_and_touch_nothing() {
    let store = SoftHsm::new();
    let dir = store.dir.path();
    ok(Command::new(postissue_tests::bin("demo-cap"))
        .current_dir(dir)
        .arg("hello.cap"));
    std::fs::write(
        dir.join("cards.csv"),
        "identity,kdd\ncard-a,00010203040506070809\ncard-b,0102030405060708090A\n",
    )
    .unwrap();
    let vendor = "pkcs11:token=vendor";
    let package = ok(signer(dir).args([
        "--dry-run",
        "package",
        "hello.cap",
        "--out",
        "hello.pkg",
        "--dap",
        "aes",
        "--dap-key",
        &format!("{vendor};object=dap-master"),
        "--cards",
        "cards.csv",
        "--diversify",
        "aes",
        "--encrypt",
        "--cipher-key",
        &format!("{vendor};object=lfdb-cipher"),
        "--dap-sd",
        "A000000151535344",
        "--ledger",
        "vendor.jsonl",
    ]));
    check("dry-run-package", &package);
    assert!(!dir.join("hello.pkg").exists() && !dir.join("vendor.jsonl").exists());
    let derive = ok(signer(dir).args([
        "--dry-run",
        "keys",
        "derive",
        "--master",
        "pkcs11:token=issuer;object=isd-kmc",
        "--scheme",
        "emv",
        "--kdd",
        "00010203040506070809",
    ]));
    check("dry-run-keys-derive", &derive);
    let batch = ok(signer(dir).args([
        "--dry-run",
        "batch",
        "--cards",
        "cards.csv",
        "--master",
        "pkcs11:token=issuer;object=isd-kmc",
        "--out",
        "keys.jsonl",
        "--workers",
        "2",
    ]));
    check("dry-run-batch", &batch);
    assert!(!dir.join("keys.jsonl").exists());
    ok(signer(dir).args(["package", "hello.cap", "--out", "plain.pkg"]));
    let deploy = ok(signer(dir).args([
        "--dry-run",
        "deploy",
        "plain.pkg",
        "--card",
        "sim:card.img",
        "--master",
        "pkcs11:token=issuer;object=isd-kmc",
        "--sd",
        "A000000151535344",
    ]));
    check("dry-run-deploy", &deploy);
    let lock = ok(signer(dir).args([
        "--dry-run",
        "card",
        "lock",
        "--card",
        "sim:card.img",
        "--master",
        "pkcs11:token=issuer;object=isd-kmc",
    ]));
    check("dry-run-card-lock", &lock);
    let create_sd = ok(signer(dir).args([
        "--dry-run",
        "card",
        "create-sd",
        "--card",
        "sim:card.img",
        "--master",
        "pkcs11:token=issuer;object=isd-kmc",
        "--sd",
        "A0000001515350410001",
        "--privileges",
        "dap-verification,ciphered-load-file-data-block",
        "--scp",
        "03",
        "--ledger",
        "issuer.jsonl",
    ]));
    check("dry-run-card-create-sd", &create_sd);
    let put_keys = ok(signer(dir).args([
        "--dry-run",
        "sd",
        "put-keys",
        "--card",
        "sim:card.img",
        "--sd",
        "A0000001515350410001",
        "--dap-master",
        &format!("{vendor};object=dap-master"),
        "--diversify",
        "aes",
        "--cipher-key",
        &format!("{vendor};object=lfdb-cipher"),
        "--ledger",
        "vendor.jsonl",
    ]));
    check("dry-run-sd-put-keys", &put_keys);
    assert!(
        !dir.join("card.img").exists()
            && !dir.join("issuer.jsonl").exists()
            && !dir.join("vendor.jsonl").exists()
    );
}
