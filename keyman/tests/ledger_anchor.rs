//! A ceremony's ledger anchored in its token: the head is kept there when the run ends, and `keyman ledger
//! verify --token` then catches a cut at an entry boundary and a deletion, naming the head it expected.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

mod common;

use common::*;
use postissue_tests::{fails, ok};

fn verify(hsm: &postissue_tests::SoftHsm, extra: &[&str]) -> std::process::Command {
    let mut c = keyman(hsm);
    c.args(["ledger", "verify", "ledger.jsonl"])
        .args(["--token", "issuer", "--pin-source", &pin_source()])
        .args(extra);
    c
}

#[test]
fn a_ceremony_anchors_its_ledger_and_verify_names_the_anchored_head() {
    let hsm = store(&["issuer"]);
    // A token name the script does not have is refused before anything is made.
    let e = ceremony_fails(
        &hsm,
        &shipped("issuer-master.ron"),
        "ledger.jsonl",
        &["--anchor-token", "vendor"],
    );
    assert!(e.contains("--anchor-token vendor"), "{e}");
    assert!(!hsm.path("work/ledger.jsonl").exists());

    let out = ceremony_ok(
        &hsm,
        &shipped("issuer-master.ron"),
        "ledger.jsonl",
        &["--anchor-token", "issuer"],
    );
    assert!(out.contains("anchored in token 'issuer'"), "{out}");
    let ledger = hsm.path("work/ledger.jsonl");
    let full = std::fs::read_to_string(&ledger).unwrap();
    let report = keyman::ledger::verify(&ledger).unwrap();
    let (count, hex, words) = (
        report.entries,
        report.fingerprint_hex.clone(),
        report.fingerprint_words.join(" "),
    );
    let json = ok(&mut verify(&hsm, &["--json"]));
    let json: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(json["entries"], count);
    assert_eq!(json["fingerprint_hex"], hex.as_str());

    // Anchoring again under the same name is refused.
    let e = fails(keyman(&hsm).args([
        "ledger",
        "anchor",
        "ledger.jsonl",
        "--token",
        "issuer",
        "--pin-source",
        &pin_source(),
    ]));
    assert!(e.contains("exists already"), "{e}");

    // Cut by its last entry: the chain alone verifies; against the anchor it fails naming the head.
    let cut: String = full
        .lines()
        .take(count as usize - 1)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&ledger, cut).unwrap();
    ok(keyman(&hsm).args(["ledger", "verify", "ledger.jsonl", "--unanchored"]));
    let e = fails(&mut verify(&hsm, &[]));
    assert!(
        e.contains(&format!("expects {count} entries")) && e.contains(&hex) && e.contains(&words),
        "{e}"
    );

    // Deleted: the same.
    std::fs::remove_file(&ledger).unwrap();
    let e = fails(&mut verify(&hsm, &[]));
    assert!(e.contains("missing") && e.contains(&hex), "{e}");

    std::fs::write(&ledger, &full).unwrap();
    ok(&mut verify(&hsm, &[]));
}
