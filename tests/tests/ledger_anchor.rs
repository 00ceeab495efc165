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

/// A crash inside an append leaves two anchor objects, the heads before and after: the anchor gains the
/// new head's object, then the file is written (the commit point), then the old object goes. A crash
/// before the file write must not make the ledger look cut: the next run keeps the head the file holds,
/// verify accepts it, and the next append goes on from it.
#[test]
fn an_append_interrupted_before_the_file_write_is_settled_by_the_file() {
    let w = World::new();
    let ledger = w.p("issuer.jsonl");
    let entries = std::fs::read_to_string(&ledger).unwrap().lines().count() as u64;

    // The token as a crash after the anchor's new object and before the file write leaves it: a second
    // anchor object holding one entry more than the file.
    let mut next = Vec::from(*b"PLA1");
    next.extend_from_slice(&(entries + 1).to_be_bytes());
    next.extend_from_slice(&[0x5A; 32]);
    let value = w.hsm.path("next-head.bin");
    std::fs::write(&value, &next).unwrap();
    let out = std::process::Command::new("pkcs11-tool")
        .env("SOFTHSM2_CONF", w.hsm.conf())
        .args([
            "--module",
            "/usr/lib/softhsm/libsofthsm2.so",
            "--token-label",
            "issuer",
        ])
        .args(["--login", "--pin", &w.hsm.pin, "--write-object"])
        .arg(&value)
        .args([
            "--type",
            "data",
            "--private",
            "--label",
            "ledger-anchor:issuer.jsonl",
        ])
        .args(["--application-label", "postissue-ledger-anchor"])
        .output()
        .expect("pkcs11-tool (opensc) must be installed (./run test installs it)");
    assert!(
        out.status.success(),
        "pkcs11-tool: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Verify reads the anchor that applies to the file, and changes nothing.
    let v = ok(&mut w.verify_ledger(&ledger, "issuer"));
    assert!(
        v.contains(&format!("{entries} entries, chain intact")),
        "{v}"
    );

    // The next run settles the token by the file and appends from the file's head.
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
    let (count, _, _) = reported_head(&out);
    assert_eq!(count, entries + 1, "{out}");
    let v = ok(&mut w.verify_ledger(&ledger, "issuer"));
    assert!(
        v.contains(&format!("{} entries, chain intact", entries + 1)),
        "{v}"
    );
}
