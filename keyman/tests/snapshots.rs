//! Snapshot tests: `keyman --help` (and each subcommand's) and the `--dry-run` of every shipped ceremony,
//! compared with the files in `keyman/tests/snapshots/`. A change to the command line or to what a
//! ceremony does shows up here as a diff that a reviewer reads. After an intended change, regenerate the
//! files with `UPDATE_SNAPSHOTS=1 cargo test -p keyman --test snapshots` and review them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use postissue_tests::{bin, root};
use std::path::PathBuf;
use std::process::Command;

/// The ceremonies keyman ships (each also run on SoftHSM by `tests/ceremonies.rs`).
const SHIPPED: [&str; 6] = [
    "issuer-master",
    "vendor-master",
    "kek-exchange",
    "dap-keypair",
    "pin-quorum",
    "rotate",
];

fn snapshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{name}.txt"))
}

/// Compares `actual` with the stored snapshot, or stores it when `UPDATE_SNAPSHOTS` is set.
fn check(name: &str, actual: &str) -> Option<String> {
    let path = snapshot_path(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, actual).expect("write snapshot");
        return None;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if expected == actual {
        return None;
    }
    let first = expected
        .lines()
        .zip(actual.lines())
        .position(|(e, a)| e != a)
        .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
    Some(format!(
        "{}: differs from line {} on\n  expected: {:?}\n  actual:   {:?}",
        path.display(),
        first + 1,
        expected.lines().nth(first).unwrap_or("<end>"),
        actual.lines().nth(first).unwrap_or("<end>")
    ))
}

fn keyman(args: &[&str]) -> String {
    let out = Command::new(bin("keyman"))
        .current_dir(root())
        .env_remove("PKCS11_MODULE")
        .args(args)
        .output()
        .expect("run keyman");
    assert!(
        out.status.success(),
        "keyman {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

#[test]
fn help_texts_are_stable() {
    let mut failures = Vec::new();
    for (name, args) in [
        ("help", &["--help"][..]),
        ("help-ceremony", &["ceremony", "--help"]),
        ("help-ceremony-run", &["ceremony", "run", "--help"]),
        ("help-ceremony-check", &["ceremony", "check", "--help"]),
        ("help-ceremony-form", &["ceremony", "form", "--help"]),
        ("help-keys-list", &["keys", "list", "--help"]),
        ("help-ledger", &["ledger", "--help"]),
        ("help-ledger-init", &["ledger", "init", "--help"]),
        ("help-ledger-anchor", &["ledger", "anchor", "--help"]),
        ("help-ledger-verify", &["ledger", "verify", "--help"]),
        ("help-token", &["token", "--help"]),
        (
            "help-token-capabilities",
            &["token", "capabilities", "--help"],
        ),
    ] {
        failures.extend(check(name, &keyman(args)));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn dry_runs_of_the_shipped_ceremonies_are_stable() {
    let mut failures = Vec::new();
    for c in SHIPPED {
        let script = format!("ceremonies/{c}.ron");
        let ledger = format!("{c}.ledger.jsonl");
        let out = keyman(&["--dry-run", "ceremony", "run", &script, "--ledger", &ledger]);
        failures.extend(check(&format!("dry-run-{c}"), &out));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn paper_forms_have_a_blank_for_every_kcv_and_a_line_for_every_signature() {
    let out = keyman(&["ceremony", "form", "ceremonies/kek-exchange.ron"]);
    let hash = keyman::ledger::Sha256Hash::of_file(&root().join("ceremonies/kek-exchange.ron"))
        .unwrap()
        .to_string();
    assert!(out.contains(&format!("SHA-256:  {hash}")), "{out}");
    assert!(out.contains("KEY CEREMONY: kek-exchange"), "{out}");
    // Two components at each of the two sites, each with a KCV blank and the custodian's initials.
    assert_eq!(
        out.lines()
            .filter(|l| l.contains("KCV shown: ________  matches my form [ ]"))
            .count(),
        4,
        "{out}"
    );
    assert_eq!(
        out.matches("combined KCV of 'kek-vendor-bureau'").count(),
        2,
        "{out}"
    );
    for k in ["ssd-enc", "ssd-mac", "ssd-dek", "ssd-dap", "ssd-lfc"] {
        assert!(out.contains(&format!("KCV of '{k}': ________")), "{out}");
        assert!(
            out.contains(&format!(
                "KCV of '{k}' shown: ________  same as the sender's form"
            )),
            "{out}"
        );
    }
    for role in [
        "vendor-officer",
        "bureau-officer",
        "custodian-a",
        "custodian-b",
        "witness",
    ] {
        assert!(
            out.lines()
                .any(|l| l.trim_start().starts_with(role) && l.contains("____")),
            "no signature line for {role}: {out}"
        );
    }
    assert!(
        out.contains("Ledger fingerprint (words, read aloud)"),
        "{out}"
    );
    let rotate = keyman(&["ceremony", "form", "ceremonies/rotate.ron"]);
    assert!(
        rotate.contains("PIN opened by 2 of: [ ] officer-a  [ ] officer-b  [ ] officer-c"),
        "{rotate}"
    );
}
