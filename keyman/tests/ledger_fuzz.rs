//! Property-style tests over damaged ledger files: the file is untrusted input, so every change to its
//! bytes must be reported (at the line where it happened) and no input may make the verifier panic.
//!
//! A small deterministic generator stands in for a fuzzer so the tests are repeatable without extra
//! dependencies; every single-byte flip and every single-byte deletion is tried exhaustively.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::path::{Path, PathBuf};

use keyman::ledger::{
    self, EntryBody, EntryKind, KcvMethod, Ledger, LedgerError, Output, Sha256Hash,
};

/// xorshift64*: deterministic, good enough to pick positions and bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

struct Case {
    _dir: tempfile::TempDir,
    good: Vec<u8>,
    scratch: PathBuf,
}

fn case() -> Case {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("good.ledger");
    let mut l = Ledger::create(&path).unwrap();
    l.append(
        EntryBody::new(EntryKind::CeremonyStart, "vendor-master")
            .participant("officer", "Zoë")
            .participant("witness", "Bob"),
    )
    .unwrap();
    l.append(
        EntryBody::new(EntryKind::Step, "vendor-master")
            .step("generate-dap")
            .output(Output::Key {
                label: "ssd-dap".into(),
                id_hex: "".into(),
                key_type: "AES-256".into(),
                kcv_hex: Some("ecdcd8".into()),
                kcv_method: Some(KcvMethod::AesOnes),
            }),
    )
    .unwrap();
    l.append(
        EntryBody::new(EntryKind::Delivery, "deploy").output(Output::Package {
            sha256: Sha256Hash::of(b"p"),
        }),
    )
    .unwrap();
    l.append(EntryBody::abort("deploy", "card refused the DAP (6982)"))
        .unwrap();
    let good = std::fs::read(&path).unwrap();
    Case {
        scratch: dir.path().join("damaged.ledger"),
        _dir: dir,
        good,
    }
}

impl Case {
    fn verify(&self, bytes: &[u8]) -> Result<ledger::VerifyReport, LedgerError> {
        std::fs::write(&self.scratch, bytes).unwrap();
        ledger::verify(&self.scratch)
    }

    /// 1-based line holding byte `pos` of the good file (one past the end is the next, empty line).
    fn line_of(&self, pos: usize) -> u64 {
        1 + self.good[..pos].iter().filter(|&&b| b == b'\n').count() as u64
    }

    /// The line where `damaged` first differs from the good file: the first line that cannot fit.
    fn first_changed_line(&self, damaged: &[u8]) -> u64 {
        let same = self
            .good
            .iter()
            .zip(damaged)
            .take_while(|(a, b)| a == b)
            .count();
        self.line_of(same)
    }

    fn lines(&self) -> u64 {
        self.line_of(self.good.len()) - 1
    }
}

fn expect_error_at(r: Result<ledger::VerifyReport, LedgerError>, line: u64, what: &str) {
    match r {
        Err(e) => assert_eq!(e.line(), Some(line), "{what}: {e}"),
        Ok(report) => panic!("{what}: not detected, verified {} entries", report.entries),
    }
}

#[test]
fn ledger_every_single_byte_flip_is_detected_at_its_line() {
    let c = case();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for pos in 0..c.good.len() {
        let mut bytes = c.good.clone();
        let mask = loop {
            let m = rng.byte();
            if m != 0 {
                break m;
            }
        };
        bytes[pos] ^= mask;
        expect_error_at(
            c.verify(&bytes),
            c.line_of(pos),
            &format!("flip {mask:#04x} at byte {pos}"),
        );
    }
}

#[test]
fn ledger_every_single_byte_deletion_is_detected_at_its_line() {
    let c = case();
    for pos in 0..c.good.len() {
        let mut bytes = c.good.clone();
        bytes.remove(pos);
        let line = c.first_changed_line(&bytes);
        expect_error_at(c.verify(&bytes), line, &format!("delete byte {pos}"));
    }
}

#[test]
fn ledger_random_insertions_are_detected_at_their_line() {
    let c = case();
    let mut rng = Rng(42);
    for _ in 0..1500 {
        let pos = rng.below(c.good.len() + 1);
        let mut bytes = c.good.clone();
        let b = if rng.below(4) == 0 { b'\n' } else { rng.byte() };
        bytes.insert(pos, b);
        // Inserting a byte equal to its neighbour is the same as inserting it one place later: judge by the
        // first byte that actually differs.
        let line = c.first_changed_line(&bytes);
        expect_error_at(c.verify(&bytes), line, &format!("insert {b:#04x} at {pos}"));
    }
}

#[test]
fn ledger_every_truncation_is_truncation_or_a_shorter_chain() {
    let c = case();
    let heads = {
        let mut v = Vec::new();
        let mut l = Vec::new();
        for (i, line) in c.good.split_inclusive(|&b| b == b'\n').enumerate() {
            l.extend_from_slice(line);
            v.push((l.len(), i as u64 + 1, c.verify(&l).unwrap().head_hash));
        }
        v
    };
    for len in 0..c.good.len() {
        let r = c.verify(&c.good[..len]);
        if len == 0 {
            assert_eq!(r.unwrap().entries, 0);
        } else if let Some((_, n, head)) = heads.iter().find(|(end, _, _)| *end == len) {
            // Whole entries removed from the end: consistent, but the fingerprint differs.
            let r = r.unwrap();
            assert_eq!((r.entries, r.head_hash), (*n, *head));
        } else {
            match r {
                Err(LedgerError::Truncated { line, .. }) => assert_eq!(line, c.line_of(len - 1)),
                other => panic!("cut at {len}: {other:?}"),
            }
        }
    }
}

#[test]
fn ledger_random_multi_byte_damage_never_panics_and_is_detected() {
    let c = case();
    let mut rng = Rng(7);
    for round in 0..1500 {
        let mut bytes = c.good.clone();
        let first = rng.below(bytes.len());
        for _ in 0..1 + rng.below(8) {
            let pos = first + rng.below(bytes.len() - first);
            match rng.below(3) {
                0 => bytes[pos] = rng.byte(),
                1 => {
                    bytes.remove(pos);
                }
                _ => bytes.insert(pos, rng.byte()),
            }
            if bytes.len() <= first {
                break;
            }
        }
        if bytes == c.good {
            continue;
        }
        // Damage starting in line L: everything before L is intact, so the report is at L or, when whole
        // lines vanished from the end, the chain is shorter.
        match c.verify(&bytes) {
            Err(e) => assert!(
                e.line().is_some_and(|l| l >= c.line_of(first)),
                "round {round}: {e}"
            ),
            Ok(r) => assert!(r.entries < c.lines(), "round {round}: damage not detected"),
        }
    }
}

#[test]
fn ledger_arbitrary_garbage_never_panics() {
    let c = case();
    let mut rng = Rng(0xdead_beef);
    let alphabet = b"{}[]\":,0123456789abcdef-truefalsenull\\u \n\r\tvseqtimekind\xff\xc3";
    for round in 0..800 {
        let len = rng.below(600);
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                if rng.below(2) == 0 {
                    alphabet[rng.below(alphabet.len())]
                } else {
                    rng.byte()
                }
            })
            .collect();
        match c.verify(&bytes) {
            Ok(r) => assert!(
                bytes.is_empty() && r.entries == 0,
                "round {round}: garbage verified"
            ),
            Err(e) => assert_eq!(e.line(), Some(1), "round {round}: {e}"),
        }
    }
    // A splice of two good files' halves, and a file of one huge JSON value, are refused too.
    let d = case();
    let half = c.good.len() / 2;
    let mut spliced = c.good[..half].to_vec();
    spliced.extend_from_slice(&d.good[half..]);
    assert!(c.verify(&spliced).is_err());
    let deep = "[".repeat(100_000) + "\n";
    assert!(matches!(
        c.verify(deep.as_bytes()),
        Err(LedgerError::Malformed { line: 1, .. })
    ));
}

#[test]
fn ledger_open_append_refuses_every_damaged_file() {
    let c = case();
    let mut rng = Rng(3);
    for _ in 0..200 {
        let pos = rng.below(c.good.len());
        let mut bytes = c.good.clone();
        bytes[pos] ^= 0x01;
        std::fs::write(&c.scratch, &bytes).unwrap();
        assert!(
            Ledger::open_append(Path::new(&c.scratch)).is_err(),
            "flip at {pos}"
        );
        // And the refused file is left exactly as it was.
        assert_eq!(std::fs::read(&c.scratch).unwrap(), bytes);
    }
}
