//! Bad input, each through the `keyman` binary on SoftHSM2: one clear line, a non-zero exit, nothing
//! created on any token, and the abort recorded in the ledger where one was open.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

mod common;

use common::*;
use postissue_tests::{fails, ok, SoftHsm};
use std::os::unix::fs::PermissionsExt;

const GOOD: &str = r#"Ceremony(
    version: 1,
    name: "bad-input",
    purpose: "bad input tests",
    tokens: [Token(name: "issuer", uri: "pkcs11:token=issuer")],
    roles: [Role(name: "officer", kind: Officer), Role(name: "alice", kind: Custodian),
        Role(name: "bob", kind: Custodian)],
    steps: [
        GenerateSecretKey(label: "first", id: "01", key_type: Aes128, usages: [Encrypt], performed_by: ["officer"]),
    ],
)"#;

/// The script with one more step.
fn with_step(step: &str) -> String {
    GOOD.replace("    ],\n)", &format!("        {step},\n    ],\n)"))
}

/// Nothing on the token, no ledger.
fn nothing_happened(hsm: &SoftHsm, ledger: &str) {
    assert_eq!(
        key_count(hsm, "issuer"),
        0,
        "something was created on the token"
    );
    assert!(
        !hsm.path("work").join(ledger).exists(),
        "no ledger is started for a ceremony refused before it began"
    );
}

#[test]
fn malformed_ron_names_file_line_and_column() {
    let hsm = store(&["issuer"]);
    let bad = GOOD.replace("usages: [Encrypt],", "usages: [Encrypt]");
    let path = script(&hsm, "malformed.ron", &bad);
    let e = ceremony_fails(&hsm, &path, "l.jsonl", &[]);
    assert!(
        e.starts_with(&format!("keyman: error: {}:9:", path.display())),
        "{e}"
    );
    nothing_happened(&hsm, "l.jsonl");
    // `check` and the dry run refuse it the same way, without any token.
    let e = fails(keyman(&hsm).args(["ceremony", "check"]).arg(&path));
    assert!(e.contains(":9:"), "{e}");
    let e = fails(
        keyman(&hsm)
            .args(["--dry-run", "ceremony", "run"])
            .arg(&path)
            .args(["--ledger", "l.jsonl"]),
    );
    assert!(e.contains(":9:"), "{e}");
}

#[test]
fn unknown_field_is_refused_by_name() {
    let hsm = store(&["issuer"]);
    let bad = GOOD.replace("id: \"01\",", "id: \"01\", colour: \"blue\",");
    let path = script(&hsm, "unknown.ron", &bad);
    let e = ceremony_fails(&hsm, &path, "l.jsonl", &[]);
    assert!(e.contains("unknown.ron:9:"), "{e}");
    assert!(e.contains("colour"), "{e}");
    nothing_happened(&hsm, "l.jsonl");
}

#[test]
fn duplicate_labels_in_the_script_or_on_the_token_are_refused() {
    let hsm = store(&["issuer"]);
    let dup = with_step(
        r#"GenerateSecretKey(label: "first", id: "02", key_type: Aes128, usages: [Encrypt], performed_by: ["officer"])"#,
    );
    let e = ceremony_fails(&hsm, &script(&hsm, "dup.ron", &dup), "l.jsonl", &[]);
    assert!(
        e.contains(
            "steps[1] (GenerateSecretKey 'first'): label 'first' is used twice in token 'issuer'"
        ),
        "{e}"
    );
    nothing_happened(&hsm, "l.jsonl");

    // On the token: the second run of the issuer ceremony stops before anything is made.
    ceremony_ok(&hsm, &shipped("issuer-master.ron"), "first.jsonl", &[]);
    let e = ceremony_fails(&hsm, &shipped("issuer-master.ron"), "second.jsonl", &[]);
    assert_eq!(
        e,
        "keyman: error: step 1 (GenerateSecretKey 'isd-kmc'): token 'issuer' already holds an object labelled 'isd-kmc'; nothing was created"
    );
    assert_eq!(key_count(&hsm, "issuer"), 1);
    assert!(!hsm.path("work/second.jsonl").exists());
    // The same for an ID already taken under another label.
    let same_id = GOOD.replace(
        "label: \"first\", id: \"01\"",
        "label: \"other\", id: \"0101\"",
    );
    let e = ceremony_fails(&hsm, &script(&hsm, "id.ron", &same_id), "id.jsonl", &[]);
    assert!(e.contains("already holds an object with id 0101"), "{e}");
    assert_eq!(key_count(&hsm, "issuer"), 1);
}

#[test]
fn missing_token_names_the_tokens_present() {
    let hsm = store(&["other"]);
    let e = ceremony_fails(&hsm, &shipped("issuer-master.ron"), "l.jsonl", &[]);
    assert_eq!(
        e,
        "keyman: error: no token matches pkcs11:token=issuer (tokens present: other)"
    );
    assert!(!hsm.path("work/l.jsonl").exists());
    assert_eq!(key_count(&hsm, "other"), 0);
}

#[test]
fn wrong_pin_says_what_the_token_says_about_tries() {
    let hsm = store(&["issuer"]);
    let e = fails(
        keyman(&hsm)
            .env("WRONG_PIN", "00000000")
            .args(["ceremony", "run"])
            .arg(shipped("issuer-master.ron"))
            .args(["--ledger", "l.jsonl", "--pin-source", "env:WRONG_PIN"]),
    );
    assert!(
        e.starts_with("keyman: error: wrong PIN for token 'issuer' ("),
        "{e}"
    );
    assert!(e.contains("tries"), "{e}");
    nothing_happened(&hsm, "l.jsonl");
    // A PIN on the command line is not a PIN source.
    let e = fails(
        keyman(&hsm)
            .args(["ceremony", "run"])
            .arg(shipped("issuer-master.ron"))
            .args(["--ledger", "l.jsonl", "--pin-source", &hsm.pin]),
    );
    assert!(e.contains("bad PIN source"), "{e}");
    assert!(!e.contains(&hsm.pin), "the error repeats the PIN: {e}");
    // A PIN file other users can read is refused.
    let pin_file = hsm.path("pin");
    std::fs::write(&pin_file, &hsm.pin).unwrap();
    std::fs::set_permissions(&pin_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = fails(
        keyman(&hsm)
            .args(["ceremony", "run"])
            .arg(shipped("issuer-master.ron"))
            .args(["--ledger", "l.jsonl", "--pin-source"])
            .arg(format!("file:{}", pin_file.display())),
    );
    assert!(e.contains("can be read by other users"), "{e}");
    // A link to a private PIN file is refused.
    std::fs::set_permissions(&pin_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let link = hsm.path("pin-link");
    std::os::unix::fs::symlink(&pin_file, &link).unwrap();
    let e = fails(
        keyman(&hsm)
            .args(["ceremony", "run"])
            .arg(shipped("issuer-master.ron"))
            .args(["--ledger", "l.jsonl", "--pin-source"])
            .arg(format!("file:{}", link.display())),
    );
    assert!(e.contains("symbolic link"), "{e}");
    assert!(!e.contains(&hsm.pin), "the error repeats the PIN: {e}");
    nothing_happened(&hsm, "l.jsonl");
}

#[test]
fn wrong_component_kcv_aborts_and_undoes_the_run() {
    let hsm = store(&["issuer"]);
    let form = with_step(
        r#"FormKey(label: "kek", id: "02", key_type: Des3TwoKey, usages: [Wrap],
            components: [Component(custodian: "alice", kcv: "8BAF47"), Component(custodian: "bob", kcv: "000000")],
            performed_by: ["officer"])"#,
    );
    let answers = hsm.path("answers.txt");
    // alice's component is the GP test key (KCV 8BAF47); bob's does not match the KCV on his form.
    private_file(
        &answers,
        "component/issuer/kek/1 = 4041 4243 4445 4647 4849 4A4B 4C4D 4E4F\ncomponent/issuer/kek/2 = 0123456789ABCDEFFEDCBA9876543210\n",
    );
    let e = ceremony_fails(
        &hsm,
        &script(&hsm, "form.ron", &form),
        "form.jsonl",
        &[
            "--answers",
            &format!("file:{}", answers.display()),
            "--anchor-token",
            "issuer",
        ],
    );
    assert!(
        e.contains("component 2 of 'kek' (custodian bob) has KCV"),
        "{e}"
    );
    assert!(e.contains("but the script expects 000000"), "{e}");
    assert!(
        e.contains("destroyed again ('first' in token 'issuer')"),
        "{e}"
    );
    assert!(
        !e.contains("0123456789"),
        "the error repeats a component: {e}"
    );
    assert_eq!(key_count(&hsm, "issuer"), 0, "the run's keys were undone");

    let ledger = hsm.path("work/form.jsonl");
    verify_ledger(&hsm, &ledger);
    // The aborted run's ledger is anchored too: its abort record cannot be cut without trace.
    let anchored = ok(keyman(&hsm).args([
        "ledger",
        "verify",
        "form.jsonl",
        "--token",
        "issuer",
        "--pin-source",
        &pin_source(),
    ]));
    assert!(anchored.contains("3 entries, chain intact"), "{anchored}");
    let entries = ledger_entries(&ledger);
    let kinds: Vec<&str> = entries
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["ceremony-start", "step", "abort"]);
    let abort = &entries[2];
    assert!(abort["error"].as_str().unwrap().contains("custodian bob"));
    assert_eq!(abort["outputs"][0]["type"], "destroyed");
    assert_eq!(abort["outputs"][0]["label"], "first");
    let text = std::fs::read_to_string(&ledger).unwrap();
    assert!(!text.contains("4041424344") && !text.contains("0123456789"));
}

#[test]
fn outputs_that_exist_are_never_overwritten() {
    let hsm = store(&["issuer"]);
    std::fs::write(hsm.path("work/taken.jsonl"), "earlier ceremony\n").unwrap();
    let e = ceremony_fails(&hsm, &shipped("issuer-master.ron"), "taken.jsonl", &[]);
    assert_eq!(
        e,
        "keyman: error: taken.jsonl already exists; outputs are never overwritten"
    );
    assert_eq!(key_count(&hsm, "issuer"), 0);
    assert_eq!(
        std::fs::read_to_string(hsm.path("work/taken.jsonl")).unwrap(),
        "earlier ceremony\n"
    );

    let pem = with_step(
        r#"GenerateKeyPair(label: "dap", id: "03", key_type: EcP256, usages: [Sign], performed_by: ["officer"]),
        ExportPublicKey(key: "dap", out: "dap.pem", performed_by: ["officer"])"#,
    );
    std::fs::write(hsm.path("work/dap.pem"), "not ours").unwrap();
    let e = ceremony_fails(&hsm, &script(&hsm, "pem.ron", &pem), "pem.jsonl", &[]);
    assert_eq!(
        e,
        "keyman: error: dap.pem already exists; outputs are never overwritten"
    );
    nothing_happened(&hsm, "pem.jsonl");
}

#[test]
fn scripted_answers_must_be_private_and_complete() {
    let hsm = store(&["issuer"]);
    let form = with_step(
        r#"FormKey(label: "kek", id: "02", key_type: Aes128, usages: [Wrap],
            components: [Component(custodian: "alice"), Component(custodian: "bob")], performed_by: ["officer"])"#,
    );
    let path = script(&hsm, "form.ron", &form);
    let answers = hsm.path("answers.txt");
    private_file(
        &answers,
        "component/issuer/kek/1 = 00112233445566778899AABBCCDDEEFF\n",
    );
    let e = ceremony_fails(
        &hsm,
        &path,
        "l.jsonl",
        &["--answers", &format!("file:{}", answers.display())],
    );
    assert_eq!(
        e,
        "keyman: error: the scripted answers have no 'kcv-ok/issuer/kek/1'; nothing was done"
    );
    std::fs::set_permissions(&answers, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = ceremony_fails(
        &hsm,
        &path,
        "l.jsonl",
        &["--answers", &format!("file:{}", answers.display())],
    );
    assert!(e.contains("can be read by other users"), "{e}");
    // A link to a private answers file is refused too: the file is checked on the handle it is read from.
    std::fs::set_permissions(&answers, std::fs::Permissions::from_mode(0o600)).unwrap();
    let link = hsm.path("answers-link");
    std::os::unix::fs::symlink(&answers, &link).unwrap();
    let e = ceremony_fails(
        &hsm,
        &path,
        "l.jsonl",
        &["--answers", &format!("file:{}", link.display())],
    );
    assert!(e.contains("symbolic link"), "{e}");
    assert!(!e.contains("00112233"), "the error repeats an answer: {e}");
    nothing_happened(&hsm, "l.jsonl");
}

/// A completed ceremony's ledger, for the tamper tests.
fn completed_ledger(hsm: &SoftHsm) -> std::path::PathBuf {
    ceremony_ok(hsm, &shipped("issuer-master.ron"), "ledger.jsonl", &[]);
    hsm.path("work/ledger.jsonl")
}

#[test]
fn ledger_edited_in_the_middle_is_named() {
    let hsm = store(&["issuer"]);
    let ledger = completed_ledger(&hsm);
    let text = std::fs::read_to_string(&ledger).unwrap();
    let edited = text.replacen("\"isd-kmc\"", "\"isd-kmx\"", 1);
    assert_ne!(text, edited);
    std::fs::write(&ledger, edited).unwrap();
    let e = fails(
        keyman(&hsm)
            .args(["ledger", "verify", "--unanchored"])
            .arg(&ledger),
    );
    assert!(e.contains("ledger.jsonl:2:"), "{e}");
}

#[test]
fn ledger_truncated_is_named() {
    let hsm = store(&["issuer"]);
    let ledger = completed_ledger(&hsm);
    let text = std::fs::read_to_string(&ledger).unwrap();
    std::fs::write(&ledger, &text[..text.len() - 20]).unwrap();
    let e = fails(
        keyman(&hsm)
            .args(["ledger", "verify", "--unanchored"])
            .arg(&ledger),
    );
    assert!(e.contains("ledger.jsonl:3:"), "{e}");
    assert!(e.contains("truncated"), "{e}");
}

const EXCHANGE: &str = r#"Ceremony(
    version: 1,
    name: "exchange",
    purpose: "KEK exchange failures",
    tokens: [Token(name: "vendor", uri: "pkcs11:token=vendor"), Token(name: "bureau", uri: "pkcs11:token=bureau")],
    roles: [Role(name: "officer", kind: Officer), Role(name: "alice", kind: Custodian), Role(name: "bob", kind: Custodian)],
    steps: [
        GenerateSecretKey(label: "master", id: "01", key_type: Des3TwoKey, usages: [Derive], extractable: true,
            token: "vendor", performed_by: ["officer"]),
        FormKey(label: "kek", id: "02", key_type: KEKTYPE, usages: [Wrap],
            components: [Component(custodian: "alice"), Component(custodian: "bob")], token: "vendor", performed_by: ["officer"]),
        WrapKeys(keys: ["master"], kek: "kek", out: "master.wrapped.json", token: "vendor", performed_by: ["officer"]),
        FormKey(label: "kek", id: "02", key_type: KEKTYPE, usages: [Unwrap],
            components: [Component(custodian: "alice"), Component(custodian: "bob")], token: "bureau", performed_by: ["officer"]),
        UnwrapKeys(input: "master.wrapped.json", kek: "kek", keys: ["master"], token: "bureau", performed_by: ["officer"]),
    ],
)"#;

fn exchange_answers(hsm: &SoftHsm, len: usize, bureau_b: &str) -> String {
    let a = "11".repeat(len);
    let b = "22".repeat(len);
    let mut text = String::new();
    for (site, second) in [("vendor", b.as_str()), ("bureau", bureau_b)] {
        text.push_str(&format!(
            "component/{site}/kek/1 = {a}\ncomponent/{site}/kek/2 = {second}\n"
        ));
        text.push_str(&format!(
            "kcv-ok/{site}/kek/1 = yes\nkcv-ok/{site}/kek/2 = yes\n"
        ));
    }
    let path = hsm.path("exchange-answers.txt");
    private_file(&path, &text);
    format!("file:{}", path.display())
}

#[test]
fn a_triple_des_kek_the_receiver_cannot_unwrap_with_is_refused_before_anything_is_made() {
    let hsm = store(&["vendor", "bureau"]);
    let answers = exchange_answers(&hsm, 16, &"22".repeat(16));
    let e = ceremony_fails(
        &hsm,
        &script(&hsm, "des.ron", &EXCHANGE.replace("KEKTYPE", "Des3TwoKey")),
        "des.jsonl",
        &["--answers", &answers],
    );
    assert!(
        e.contains("steps[2]") || e.contains("step 3 (WrapKeys 'master')"),
        "{e}"
    );
    assert!(e.contains("never moved in clear"), "{e}");
    assert_eq!(key_count(&hsm, "vendor"), 0);
    assert_eq!(key_count(&hsm, "bureau"), 0);
    assert!(!hsm.path("work/des.jsonl").exists());
}

#[test]
fn a_kek_formed_differently_at_the_bureau_keeps_nothing() {
    let hsm = store(&["vendor", "bureau"]);
    // Bob types a different component at the bureau (and confirms its KCV by mistake).
    let answers = exchange_answers(&hsm, 32, &"33".repeat(32));
    let e = ceremony_fails(
        &hsm,
        &script(&hsm, "aes.ron", &EXCHANGE.replace("KEKTYPE", "Aes256")),
        "aes.jsonl",
        &["--answers", &answers],
    );
    assert!(e.contains("'master'"), "{e}");
    assert!(
        e.contains("wrong KEK") || e.contains("does not unwrap under this KEK"),
        "{e}"
    );
    assert_eq!(
        key_count(&hsm, "vendor"),
        0,
        "the vendor's keys from this run were undone"
    );
    assert_eq!(key_count(&hsm, "bureau"), 0);
    assert!(!hsm.path("work/master.wrapped.json").exists());
    let entries = ledger_entries(&hsm.path("work/aes.jsonl"));
    let abort = entries.last().unwrap();
    assert_eq!(abort["kind"], "abort");
    assert_eq!(abort["outputs"].as_array().unwrap().len(), 3);
    verify_ledger(&hsm, &hsm.path("work/aes.jsonl"));
}
