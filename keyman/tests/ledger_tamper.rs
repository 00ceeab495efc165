//! Ledger integration tests: a good chain verifies, and each way of tampering with a ledger file is
//! reported at the first entry that does not fit.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::path::{Path, PathBuf};

use keyman::ledger::{
    self, EntryBody, EntryHash, EntryKind, InputFile, KcvMethod, Ledger, LedgerError, Output,
    Sha256Hash, FINGERPRINT_WORDS, WORDS,
};
use tempfile::TempDir;

const PEM: &str = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\nAAAA==\n-----END PUBLIC KEY-----\n";

/// The entries of a small but varied ceremony and signing run.
fn bodies() -> Vec<EntryBody> {
    let script = InputFile {
        name: "ceremonies/issuer-master.ron".into(),
        sha256: Sha256Hash::of(b"script"),
    };
    vec![
        EntryBody::new(EntryKind::CeremonyStart, "issuer-master")
            .participant("officer", "Alice")
            .participant("custodian", "Carol")
            .participant("witness", "Bob")
            .input(script),
        EntryBody::new(EntryKind::Step, "issuer-master")
            .step("form-kek")
            .participant("custodian", "Carol")
            .output(Output::Component {
                label: "kek".into(),
                index: 1,
                count: 2,
                custodian: "Carol".into(),
                kcv_hex: "8baf47".into(),
                kcv_method: KcvMethod::Des3Zeros,
            }),
        EntryBody::new(EntryKind::Step, "issuer-master")
            .step("generate-enc")
            .participant("officer", "Alice")
            .output(Output::Key {
                label: "isd-enc".into(),
                id_hex: "0101".into(),
                key_type: "AES-128".into(),
                kcv_hex: Some("504a77".into()),
                kcv_method: Some(KcvMethod::AesOnes),
            }),
        EntryBody::new(EntryKind::Step, "issuer-master")
            .step("export-dap-public")
            .output(Output::PublicKey {
                label: "dap".into(),
                pem: PEM.into(),
            }),
        EntryBody::new(EntryKind::Signing, "package-applet")
            .scripted(true)
            .output(Output::Package {
                sha256: Sha256Hash::of(b"package"),
            })
            .output(Output::Dap {
                sd_aid_hex: "a000000151535041".into(),
                card: Some("card-0001".into()),
                dap_hex: "00112233445566778899aabbccddeeff".into(),
            })
            .output(Output::Card {
                identity: "card-0001".into(),
            }),
        EntryBody::new(EntryKind::CeremonyEnd, "issuer-master").participant("officer", "Alice"),
    ]
}

struct Fixture {
    _dir: TempDir,
    path: PathBuf,
    head: EntryHash,
    lines: Vec<String>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ceremony.ledger");
    let mut l = Ledger::create(&path).unwrap();
    let mut head = EntryHash::GENESIS;
    for b in bodies() {
        head = l.append(b).unwrap();
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let lines = text.lines().map(str::to_string).collect();
    Fixture {
        _dir: dir,
        path,
        head,
        lines,
    }
}

impl Fixture {
    /// Writes `content` next to the good ledger and verifies it.
    fn verify_bytes(&self, content: &[u8]) -> Result<ledger::VerifyReport, LedgerError> {
        let path = self.path.with_file_name("tampered.ledger");
        std::fs::write(&path, content).unwrap();
        ledger::verify(&path)
    }

    fn verify_lines(&self, lines: &[String]) -> Result<ledger::VerifyReport, LedgerError> {
        let mut s = lines.join("\n");
        s.push('\n');
        self.verify_bytes(s.as_bytes())
    }
}

fn replace_once(line: &str, from: &str, to: &str) -> String {
    assert!(line.contains(from), "{from} not in {line}");
    line.replacen(from, to, 1)
}

#[test]
fn ledger_good_chain_verifies_and_reports_its_fingerprint() {
    let f = fixture();
    let r = ledger::verify(&f.path).unwrap();
    assert_eq!(r.entries, 6);
    assert_eq!(r.head_hash, f.head);
    assert_eq!(r.fingerprint_hex, f.head.to_string());
    assert_eq!(r.fingerprint_hex.len(), 64);
    assert_eq!(r.fingerprint_words.len(), FINGERPRINT_WORDS);
    for (word, byte) in r.fingerprint_words.iter().zip(f.head.as_bytes()) {
        assert_eq!(*word, WORDS[usize::from(*byte)]);
    }
    // Stable: verifying again, or asking an open handle, gives the same fingerprint.
    assert_eq!(ledger::verify(&f.path).unwrap(), r);
    assert_eq!(Ledger::open_append(&f.path).unwrap().report(), r);

    let mut seen = Vec::new();
    ledger::verify_each(&f.path, |e| seen.push((e.seq, e.body.kind))).unwrap();
    assert_eq!(seen.first(), Some(&(1, EntryKind::CeremonyStart)));
    assert_eq!(seen.last(), Some(&(6, EntryKind::CeremonyEnd)));
}

#[test]
fn ledger_entries_read_back_as_written() {
    let f = fixture();
    let mut read = Vec::new();
    ledger::verify_each(&f.path, |e| read.push(e.body.clone())).unwrap();
    assert_eq!(read, bodies());
}

#[test]
fn ledger_open_append_extends_the_chain() {
    let f = fixture();
    let mut l = Ledger::open_append(&f.path).unwrap();
    assert_eq!((l.entries(), l.head()), (6, f.head));
    let h = l
        .append(EntryBody::abort("rotate", "operator stopped the ceremony"))
        .unwrap();
    let r = ledger::verify(&f.path).unwrap();
    assert_eq!((r.entries, r.head_hash), (7, h));
}

#[test]
fn ledger_create_refuses_an_existing_file_and_leaves_it_alone() {
    let f = fixture();
    let before = std::fs::read(&f.path).unwrap();
    match Ledger::create(&f.path) {
        Err(e @ LedgerError::AlreadyExists { .. }) => {
            assert!(e.to_string().contains(&f.path.display().to_string()), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read(&f.path).unwrap(), before);
}

#[test]
fn ledger_missing_file_is_an_io_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.ledger");
    let e = ledger::verify(&path).unwrap_err();
    assert!(matches!(e, LedgerError::Io { .. }), "{e:?}");
    assert!(e.to_string().contains("absent.ledger"), "{e}");
    assert!(matches!(
        Ledger::open_append(&path),
        Err(LedgerError::Io { .. })
    ));
}

fn assert_altered(r: Result<ledger::VerifyReport, LedgerError>, line: u64) {
    match r {
        Err(LedgerError::Altered { line: l, seq, .. }) => assert_eq!((l, seq), (line, line)),
        other => panic!("expected Altered at line {line}, got {other:?}"),
    }
}

fn assert_out_of_sequence(r: Result<ledger::VerifyReport, LedgerError>, line: u64, found: u64) {
    match r {
        Err(LedgerError::OutOfSequence {
            line: l,
            expected,
            found: fd,
            ..
        }) => {
            assert_eq!((l, expected, fd), (line, line, found))
        }
        other => panic!("expected OutOfSequence at line {line}, got {other:?}"),
    }
}

fn assert_malformed(r: Result<ledger::VerifyReport, LedgerError>, line: u64) {
    match r {
        Err(LedgerError::Malformed {
            line: l,
            expected_seq,
            ..
        }) => assert_eq!((l, expected_seq), (line, line)),
        other => panic!("expected Malformed at line {line}, got {other:?}"),
    }
}

fn assert_truncated(r: Result<ledger::VerifyReport, LedgerError>, line: u64) {
    match r {
        Err(LedgerError::Truncated {
            line: l,
            expected_seq,
            ..
        }) => assert_eq!((l, expected_seq), (line, line)),
        other => panic!("expected Truncated at line {line}, got {other:?}"),
    }
}

#[test]
fn ledger_editing_a_middle_entry_is_reported_there() {
    let f = fixture();
    let mut lines = f.lines.clone();
    lines[2] = replace_once(&lines[2], "isd-enc", "isd-enx");
    let e = f.verify_lines(&lines).unwrap_err();
    assert!(e.to_string().contains("tampered.ledger:3:"), "{e}");
    assert!(e.is_integrity_failure());
    assert_altered(Err(e), 3);

    let mut lines = f.lines.clone();
    lines[2] = replace_once(&lines[2], "504a77", "504a78");
    assert_altered(f.verify_lines(&lines), 3);

    let mut lines = f.lines.clone();
    lines[4] = replace_once(&lines[4], r#""scripted":true"#, r#""scripted":false"#);
    assert_altered(f.verify_lines(&lines), 5);
}

#[test]
fn ledger_changing_a_salt_is_reported_there() {
    let f = fixture();
    let mut lines = f.lines.clone();
    let at = lines[1].find(r#""salt":""#).unwrap() + r#""salt":""#.len();
    let mut bytes = lines[1].clone().into_bytes();
    bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
    lines[1] = String::from_utf8(bytes).unwrap();
    assert_altered(f.verify_lines(&lines), 2);
}

#[test]
fn ledger_changing_a_recorded_hash_is_reported_there() {
    let f = fixture();
    let mut lines = f.lines.clone();
    let h = f.head.to_string();
    let other = "ab".repeat(32);
    lines[5] = replace_once(
        &lines[5],
        &format!(r#""entry_hash":"{h}""#),
        &format!(r#""entry_hash":"{other}""#),
    );
    assert_altered(f.verify_lines(&lines), 6);

    let mut lines = f.lines.clone();
    let zero = EntryHash::GENESIS.to_string();
    lines[0] = replace_once(&lines[0], &zero, &"01".repeat(32));
    assert!(matches!(
        f.verify_lines(&lines),
        Err(LedgerError::BrokenLink {
            line: 1,
            seq: 1,
            ..
        })
    ));
}

#[test]
fn ledger_replacing_an_entry_with_a_self_consistent_one_breaks_the_link_after_it() {
    // A second ledger with the same bodies: its entries are internally consistent but salted differently.
    let f = fixture();
    let g = fixture();
    // g's first three entries followed by f's last three: the first misfit is line 4.
    let mut lines: Vec<String> = g.lines[..3].to_vec();
    lines.extend_from_slice(&f.lines[3..]);
    let r = f.verify_lines(&lines);
    assert!(
        matches!(
            r,
            Err(LedgerError::BrokenLink {
                line: 4,
                seq: 4,
                ..
            })
        ),
        "{r:?}"
    );
    // One foreign entry in the middle is caught at its own line.
    let mut lines = f.lines.clone();
    lines[2] = g.lines[2].clone();
    assert!(matches!(
        f.verify_lines(&lines),
        Err(LedgerError::BrokenLink { line: 3, .. })
    ));
}

#[test]
fn ledger_deleting_an_entry_is_reported_where_it_is_missing() {
    let f = fixture();
    let mut lines = f.lines.clone();
    lines.remove(2);
    assert_out_of_sequence(f.verify_lines(&lines), 3, 4);
    let mut lines = f.lines.clone();
    lines.remove(0);
    assert_out_of_sequence(f.verify_lines(&lines), 1, 2);
}

#[test]
fn ledger_swapping_two_entries_is_reported_at_the_first() {
    let f = fixture();
    let mut lines = f.lines.clone();
    lines.swap(2, 3);
    assert_out_of_sequence(f.verify_lines(&lines), 3, 4);
    let mut lines = f.lines.clone();
    lines.swap(1, 4);
    assert_out_of_sequence(f.verify_lines(&lines), 2, 5);
}

#[test]
fn ledger_duplicating_an_entry_is_reported_at_the_copy() {
    let f = fixture();
    let mut lines = f.lines.clone();
    lines.insert(3, lines[2].clone());
    assert_out_of_sequence(f.verify_lines(&lines), 4, 3);
    let mut lines = f.lines.clone();
    lines.push(lines[5].clone());
    assert_out_of_sequence(f.verify_lines(&lines), 7, 6);
}

#[test]
fn ledger_renumbering_an_entry_is_reported_there() {
    let f = fixture();
    let mut lines = f.lines.clone();
    lines.remove(2);
    lines[2] = replace_once(&lines[2], r#""seq":4,"#, r#""seq":3,"#);
    assert!(matches!(
        f.verify_lines(&lines),
        Err(LedgerError::BrokenLink {
            line: 3,
            seq: 3,
            ..
        })
    ));
    // Renumbered in place: the number is part of the hash.
    let mut lines = f.lines.clone();
    lines[2] = replace_once(&lines[2], r#""seq":3,"#, r#""seq":4,"#);
    assert_out_of_sequence(f.verify_lines(&lines), 3, 4);
}

#[test]
fn ledger_truncating_the_last_line_is_reported_as_truncation() {
    let f = fixture();
    let good = std::fs::read(&f.path).unwrap();
    // Only the final newline missing.
    assert_truncated(f.verify_bytes(&good[..good.len() - 1]), 6);
    // Cut in the middle of the last entry's JSON.
    assert_truncated(f.verify_bytes(&good[..good.len() - 40]), 6);
    // Cut right after the first byte of the last line.
    let last_start = good.len() - f.lines[5].len() - 1;
    assert_truncated(f.verify_bytes(&good[..last_start + 1]), 6);
    // open_append refuses to build on it.
    std::fs::write(&f.path, &good[..good.len() - 40]).unwrap();
    assert!(matches!(
        Ledger::open_append(&f.path),
        Err(LedgerError::Truncated { line: 6, .. })
    ));
}

#[test]
fn ledger_dropping_whole_trailing_entries_is_only_visible_in_the_fingerprint() {
    // Documented limitation: a consistent shorter chain verifies; the head fingerprint on the paper
    // form is what shows the loss.
    let f = fixture();
    let r = f.verify_lines(&f.lines[..4]).unwrap();
    assert_eq!(r.entries, 4);
    assert_ne!(r.head_hash, f.head);
    assert_ne!(r.fingerprint_words, f.head.words());
}

#[test]
fn ledger_appended_garbage_is_reported_at_its_line() {
    let f = fixture();
    let good = std::fs::read(&f.path).unwrap();
    for (garbage, truncated) in [
        (&b"garbage\n"[..], false),
        (b"\n", false),
        (b"{}\n", false),
        (b"\xff\xfe\n", false),
        (b"garbage", true),
        (b"{\"v\":1,\"seq\":7", true),
    ] {
        let mut bytes = good.clone();
        bytes.extend_from_slice(garbage);
        let r = f.verify_bytes(&bytes);
        if truncated {
            assert_truncated(r, 7);
        } else {
            assert_malformed(r, 7);
        }
    }
    // A whole foreign entry appended (from another ledger) does not link either.
    let g = fixture();
    let mut lines = f.lines.clone();
    lines.push(g.lines[5].replacen(r#""seq":6,"#, r#""seq":7,"#, 1));
    assert!(matches!(
        f.verify_lines(&lines),
        Err(LedgerError::BrokenLink { line: 7, .. })
    ));
}

#[test]
fn ledger_reformatting_is_reported_even_when_no_value_changes() {
    let f = fixture();
    for (from, to) in [
        (r#""seq":3,"#, r#""seq": 3,"#),
        (r#""kind":"step""#, r#""kind":"\u0073tep""#),
        (r#"{"v":1,"#, r#"{"v":1,"v":1,"#),
        (r#""outputs":["#, r#""note":"x","outputs":["#),
    ] {
        let mut lines = f.lines.clone();
        lines[2] = replace_once(&lines[2], from, to);
        assert_malformed(f.verify_lines(&lines), 3);
    }
    let mut lines = f.lines.clone();
    lines[2].push('\r');
    assert_malformed(f.verify_lines(&lines), 3);
    let mut lines = f.lines.clone();
    lines[2] = lines[2].to_uppercase();
    assert_malformed(f.verify_lines(&lines), 3);
}

#[test]
fn ledger_unsupported_version_is_named() {
    let f = fixture();
    let mut lines = f.lines.clone();
    lines[0] = replace_once(&lines[0], r#"{"v":1,"#, r#"{"v":2,"#);
    match f.verify_lines(&lines) {
        Err(LedgerError::Malformed {
            line: 1, reason, ..
        }) => assert!(reason.contains("version 2"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn ledger_secrets_are_refused_before_anything_is_written() {
    let f = fixture();
    let before = std::fs::read(&f.path).unwrap();
    let mut l = Ledger::open_append(&f.path).unwrap();
    let private = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n";
    let attempts = [
        Output::PublicKey {
            label: "dap".into(),
            pem: private.into(),
        },
        Output::Key {
            label: "isd-mac".into(),
            id_hex: "02".into(),
            key_type: "AES-128".into(),
            kcv_hex: Some("00112233445566778899aabbccddeeff".into()),
            kcv_method: Some(KcvMethod::AesOnes),
        },
        Output::Component {
            label: "kek".into(),
            index: 2,
            count: 2,
            custodian: "Dave".into(),
            kcv_hex: "0123456789abcdef".into(),
            kcv_method: KcvMethod::Des3Zeros,
        },
    ];
    for o in attempts {
        let r = l.append(EntryBody::new(EntryKind::Step, "issuer-master").output(o));
        assert!(matches!(r, Err(LedgerError::InvalidEntry { .. })), "{r:?}");
    }
    assert_eq!(std::fs::read(&f.path).unwrap(), before);
    assert_eq!(ledger::verify(&f.path).unwrap().head_hash, f.head);
}

#[test]
fn ledger_error_messages_name_file_line_and_entry() {
    let f = fixture();
    let mut lines = f.lines.clone();
    lines.remove(1);
    let e = f.verify_lines(&lines).unwrap_err();
    let msg = e.to_string();
    let file = Path::new(&f.path).with_file_name("tampered.ledger");
    assert!(msg.starts_with(&format!("{}:2:", file.display())), "{msg}");
    assert!(msg.contains("expected entry 2 but found entry 3"), "{msg}");
    assert_eq!(e.line(), Some(2));
}
