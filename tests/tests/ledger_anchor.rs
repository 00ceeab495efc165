//! Ledger records cannot be cut, deleted or replaced without trace: each append by `signer` reports and
//! anchors the new head in the token, no tool starts a ledger implicitly, and `keyman ledger verify
//! --token` fails naming the head it expected.

mod common;

use common::*;
use postissue_tests::{fails, ok};

/// The `N entries, head HEX` and words that `signer` prints after its last append.
fn reported_head(out: &str) -> (u64, String, String) {
    let line = out
        .lines()
        .rfind(|l| l.starts_with("ledger ") && l.contains(" entries, head "))
        .unwrap_or_else(|| panic!("no ledger head in:\n{out}"));
    let (left, hash) = line.rsplit_once(" entries, head ").unwrap();
    let count = left.rsplit_once(' ').unwrap().1.parse().unwrap();
    let words = out
        .lines()
        .rfind(|l| l.starts_with("read aloud "))
        .unwrap()
        .trim_start_matches("read aloud")
        .trim()
        .to_string();
    (count, hash.to_string(), words)
}

#[test]
fn cut_deleted_and_replaced_ledgers_fail_verify_naming_the_anchored_head() {
    let w = World::new();
    let ledger = w.p("issuer.jsonl");

    // No ledger is created implicitly: a missing one is refused and stays missing.
    let missing = w.p("never-made.jsonl");
    let e = fails(w.hsm.tool("signer").args([
        "personalise",
        "--card",
        &format!("sim:{}", w.p("x.img")),
        "--master",
        ISSUER_MASTER,
        "--pin-source",
        &pin_source(),
        "--ledger",
        &missing,
    ]));
    assert!(e.contains("keyman ledger init"), "{e}");
    assert!(!std::path::Path::new(&missing).exists());

    // Two appends by signer, each reporting the new head.
    let before = std::fs::read_to_string(&ledger).unwrap();
    let ceremony_entries = before.lines().count() as u64;
    let image = w.card("a", KDD_A);
    let out = ok(w.hsm.tool("signer").args([
        "card",
        "lock",
        "--card",
        &format!("sim:{image}"),
        "--master",
        ISSUER_MASTER,
        "--pin-source",
        &pin_source(),
        "--ledger",
        &ledger,
    ]));
    let (n1, _, _) = reported_head(&out);
    assert_eq!(n1, ceremony_entries + 1, "{out}");
    let out = ok(w.hsm.tool("signer").args([
        "card",
        "unlock",
        "--card",
        &format!("sim:{image}"),
        "--master",
        ISSUER_MASTER,
        "--pin-source",
        &pin_source(),
        "--ledger",
        &ledger,
    ]));
    let (count, hex, words) = reported_head(&out);
    assert_eq!(count, ceremony_entries + 2, "{out}");
    assert_eq!(hex.len(), 64, "{out}");
    assert!(words.split(' ').count() >= 4, "{out}");

    // The intact ledger verifies against its anchor; text and JSON name the same head.
    let v = ok(&mut w.verify_ledger(&ledger, "issuer"));
    assert!(v.contains(&format!("{count} entries")), "{v}");
    assert!(v.contains(&hex) && v.contains(&words), "{v}");
    let j = ok(w.verify_ledger(&ledger, "issuer").arg("--json"));
    let j: serde_json::Value = serde_json::from_str(j.trim()).unwrap();
    assert_eq!(j["entries"], count);
    assert_eq!(j["fingerprint_hex"], hex.as_str());
    assert_eq!(j["anchor_token"], "issuer");
    assert_eq!(
        j["fingerprint_words"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_str().unwrap())
            .collect::<Vec<_>>()
            .join(" "),
        words
    );

    let full = std::fs::read_to_string(&ledger).unwrap();
    let expects_anchor = |e: &str| {
        assert!(e.contains(&format!("{count} entries")), "{e}");
        assert!(e.contains(&hex), "{e}");
        assert!(e.contains(&words), "{e}");
    };

    // Cut at an entry boundary: the chain alone still verifies, the anchor does not.
    let lines: Vec<&str> = full.lines().collect();
    let cut: String = lines[..lines.len() - 1]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&ledger, &cut).unwrap();
    ok(w.hsm
        .tool("keyman")
        .args(["ledger", "verify", &ledger, "--unanchored"]));
    expects_anchor(&fails(&mut w.verify_ledger(&ledger, "issuer")));
    // signer refuses to build on it, and writes nothing.
    let e = fails(w.hsm.tool("signer").args([
        "card",
        "lock",
        "--card",
        &format!("sim:{image}"),
        "--master",
        ISSUER_MASTER,
        "--pin-source",
        &pin_source(),
        "--ledger",
        &ledger,
    ]));
    expects_anchor(&e);
    assert_eq!(std::fs::read_to_string(&ledger).unwrap(), cut);

    // Deleted: verify names what the token expected; the ledger cannot be started afresh under the same
    // name.
    std::fs::remove_file(&ledger).unwrap();
    expects_anchor(&fails(&mut w.verify_ledger(&ledger, "issuer")));
    let e = fails(w.hsm.tool("keyman").args([
        "ledger",
        "init",
        &ledger,
        "--token",
        "issuer",
        "--pin-source",
        &pin_source(),
    ]));
    assert!(e.contains("exists already"), "{e}");
    assert!(!std::path::Path::new(&ledger).exists());

    // Replaced by another consistent, anchored chain of the same token.
    let other = w.new_ledger("other.jsonl", "issuer");
    ok(w.hsm.tool("signer").args([
        "card",
        "lock",
        "--card",
        &format!("sim:{image}"),
        "--master",
        ISSUER_MASTER,
        "--pin-source",
        &pin_source(),
        "--ledger",
        &other,
    ]));
    std::fs::copy(&other, &ledger).unwrap();
    ok(w.hsm
        .tool("keyman")
        .args(["ledger", "verify", &ledger, "--unanchored"]));
    expects_anchor(&fails(&mut w.verify_ledger(&ledger, "issuer")));

    // The original file verifies again: the failures were the tampering, nothing else.
    std::fs::write(&ledger, &full).unwrap();
    ok(&mut w.verify_ledger(&ledger, "issuer"));
}

#[test]
fn verify_needs_a_token_or_an_explicit_unanchored_check() {
    let w = World::new();
    let ledger = w.p("vendor.jsonl");
    let e = fails(w.hsm.tool("keyman").args(["ledger", "verify", &ledger]));
    assert!(e.contains("--token") && e.contains("--unanchored"), "{e}");
    let out = ok(w
        .hsm
        .tool("keyman")
        .args(["ledger", "verify", &ledger, "--unanchored"]));
    assert!(out.contains("not checked"), "{out}");
    // A ledger with no anchor in the token named is reported as such.
    let e = fails(&mut w.verify_ledger(&ledger, "issuer"));
    assert!(e.contains("holds no anchor"), "{e}");
    ok(&mut w.verify_ledger(&ledger, "vendor"));
}
