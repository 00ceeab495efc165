//! The tamper-evident ceremony ledger shared by `keyman` and `signer`.
//!
//! A ledger is a file that only ever grows, one JSON object per line, each entry chained by hash to the one
//! before it. It is the record that must still convince an auditor years after a ceremony, so this
//! documentation specifies the format completely: an auditor can re-check a ledger without this code.
//!
//! # What an entry holds, and what it never holds
//!
//! Sequence number, time, kind, ceremony and step names, participants (role and name), whether prompts were
//! answered by a scripted source, SHA-256 hashes of non-secret input files, and typed outputs (key labels,
//! key IDs, KCVs with their method, public keys in PEM, package hashes, DAP signatures, card identities),
//! plus the error text of an abort. Never a key, a component, a PIN, or a hash of any of them: the entry
//! types ([`EntryBody`], [`Output`]) have no field for such data, and the writer refuses values that look
//! like one (a "KCV" longer than 5 bytes, a PEM block that is not a public key).
//!
//! # File format
//!
//! UTF-8, one entry per line, each line terminated by `\n` (including the last). Each line is the compact
//! JSON (no whitespace) of an object with exactly these fields, in this order:
//!
//! | field | JSON | meaning |
//! |---|---|---|
//! | `v` | number | format version, `1` |
//! | `seq` | number | 1 for the first entry, then +1 per line |
//! | `time` | string | `YYYY-MM-DDTHH:MM:SSZ` (RFC 3339, UTC, whole seconds) |
//! | `kind` | string | `ceremony-start`, `step`, `ceremony-end`, `abort`, `signing`, `delivery` |
//! | `ceremony` | string | ceremony or run name |
//! | `step` | string or null | step name |
//! | `participants` | array of `{"role","name"}` | who took part |
//! | `scripted` | bool | prompts answered by a scripted source |
//! | `inputs` | array of `{"name","sha256"}` | input files |
//! | `outputs` | array of objects tagged by `"type"` | see [`Output`]; fields in the order documented there |
//! | `error` | string or null | present exactly for `abort` |
//! | `salt` | 32 hex digits | 16 random bytes from the operating system |
//! | `prev_hash` | 64 hex digits | `entry_hash` of the previous line; 32 zero bytes for the first |
//! | `entry_hash` | 64 hex digits | SHA-256 of the canonical encoding below |
//!
//! All hex is lower case. The verifier also requires each line to be byte-for-byte the JSON this module
//! writes (so even edits that change no value, such as added spaces, are reported); an independent auditor
//! may skip that check, because the hash covers every value.
//!
//! # Canonical encoding (what `entry_hash` is computed over)
//!
//! `entry_hash = SHA-256(E)` where `E` is the concatenation of, in order:
//!
//! ```text
//! text("postissue-ledger-v1")
//! u64(seq)
//! text(time)
//! text(kind)
//! text(ceremony)
//! option(step, text)
//! list(participants, p => text(p.role) || text(p.name))
//! bool(scripted)
//! list(inputs, i => text(i.name) || bytes(i.sha256))
//! list(outputs, output)
//! option(error, text)
//! bytes(salt)
//! bytes(prev_hash)
//! ```
//!
//! with the primitives
//!
//! ```text
//! u64(n)       = n as 8 bytes, big-endian
//! bytes(b)     = u64(length of b) || b
//! text(s)      = bytes(UTF-8 of s)
//! bool(b)      = one byte, 0x01 for true, 0x00 for false
//! option(x, f) = 0x00 if x is null, else 0x01 || f(x)
//! list(xs, f)  = u64(number of items) || f(x1) || f(x2) || ...
//! ```
//!
//! and each output encoded as `text(type)` followed by its fields; fields shown in hex in the JSON are
//! hashed as the bytes they denote (`bytes(...)`), never as hex text:
//!
//! ```text
//! key:        text(label) || bytes(id) || text(key_type) || option(kcv, bytes) || option(kcv_method, text)
//! component:  text(label) || u64(index) || u64(count) || text(custodian) || bytes(kcv) || text(kcv_method)
//! public-key: text(label) || text(pem)
//! destroyed:  text(label) || bytes(id)
//! file:       text(name) || bytes(sha256)
//! package:    bytes(sha256)
//! dap:        bytes(sd_aid) || option(card, text) || bytes(dap)
//! card:       text(identity)
//! ```
//!
//! Every variable-length item carries its length, so no two different entries have the same encoding.
//!
//! # What the chain proves, and what it does not
//!
//! Any change to an entry, any removal, duplication or reordering of entries, and any cut in the middle of
//! a line is reported by [`verify`], naming the first line that does not fit. Two things the file alone
//! cannot show, because no secret key is involved: someone who rewrites the file from some entry onwards
//! can recompute all later hashes, and someone who removes whole entries from the end leaves a shorter but
//! consistent chain; a deleted file, or one replaced by another consistent chain, shows nothing either. Two
//! things catch them. The **anchor** ([`anchor`]): a private data object in the HSM token that the
//! ledger's tools log in to holds the head (entry count and last hash); every append by `signer` checks
//! and moves it, and `keyman ledger verify FILE --token ...` fails naming the head it expected when the
//! file does not reach it exactly. And the **fingerprint**: at the end of every ceremony the head hash is
//! read aloud as words ([`VerifyReport::fingerprint_words`]) and written on the paper form; a later
//! [`verify`] (or [`verify_each`], to check the hash of an earlier entry) must reproduce it.
//!
//! No tool creates a ledger implicitly: `keyman ledger init` makes an empty one and its anchor, and a
//! ceremony run starts a new one that `keyman ledger anchor` anchors before anything else appends to it.
//!
//! # Durability
//!
//! Each entry is written with one `write` of the whole line and then `fsync`ed before
//! [`Ledger::append`] returns, so an entry that a ceremony has reported is on disk. A crash during the
//! write leaves at most a partial last line, which [`verify`] reports as truncation and
//! [`Ledger::open_append`] refuses to build on.

pub mod anchor;
mod canonical;
mod entry;
mod error;
mod time;
mod words;

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub use anchor::Head;
pub use entry::{
    Entry, EntryBody, EntryHash, EntryKind, InputFile, KcvMethod, Output, Participant, Salt,
    Sha256Hash,
};
pub use error::LedgerError;
pub use words::{FINGERPRINT_WORDS, WORDS};

use entry::Wire;

/// The file format version written in every entry's `v` field and implied by the canonical encoding's
/// domain tag. A verifier refuses versions it does not know rather than guess.
pub const FORMAT_VERSION: u32 = 1;

/// Longest line, in bytes, that the writer produces or the verifier reads. The file is untrusted input: a
/// bound keeps a damaged or hostile file from exhausting memory.
pub const MAX_LINE: usize = 1024 * 1024;

/// The result of a successful verification: how many entries there are and the hash that stands for all
/// of them, in the forms people compare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Number of entries (lines).
    pub entries: u64,
    /// Hash of the last entry, or [`EntryHash::GENESIS`] for an empty ledger.
    pub head_hash: EntryHash,
    /// `head_hash` in lower-case hex, for copying into reports and tickets.
    pub fingerprint_hex: String,
    /// The first [`FINGERPRINT_WORDS`] bytes of `head_hash` as words from [`WORDS`], for reading aloud and
    /// writing on the paper form.
    pub fingerprint_words: Vec<&'static str>,
}

impl VerifyReport {
    fn new(entries: u64, head_hash: EntryHash) -> VerifyReport {
        VerifyReport {
            entries,
            head_hash,
            fingerprint_hex: head_hash.to_string(),
            fingerprint_words: head_hash.words(),
        }
    }
}

/// An entry built by [`Ledger::prepare`] and not yet written: its line and the head it will make.
#[derive(Debug)]
pub struct PreparedEntry {
    line: Vec<u8>,
    after: Head,
    head: Head,
}

impl PreparedEntry {
    /// The ledger's head once this entry is written.
    pub fn head(&self) -> Head {
        self.head
    }
}

/// An open ledger to which entries can be appended.
///
/// It is obtained only through [`Ledger::create`] (a new, empty file) or [`Ledger::open_append`] (an
/// existing file whose whole chain has just been verified), so a `Ledger` always extends a sound chain.
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
    file: File,
    entries: u64,
    head: EntryHash,
    len: u64,
    poisoned: bool,
}

impl Ledger {
    /// Creates a new, empty ledger at `path`, refusing if any file is already there.
    ///
    /// A ledger is never overwritten: the existing file may be the only record of an earlier ceremony. The
    /// new file and its directory entry are synced so the ledger's existence survives a crash.
    pub fn create(path: impl AsRef<Path>) -> Result<Ledger, LedgerError> {
        let path = path.as_ref().to_path_buf();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    LedgerError::AlreadyExists { path: path.clone() }
                } else {
                    io_error(&path, "create", e)
                }
            })?;
        file.sync_all().map_err(|e| io_error(&path, "sync", e))?;
        sync_parent_dir(&path)?;
        Ok(Ledger {
            path,
            file,
            entries: 0,
            head: EntryHash::GENESIS,
            len: 0,
            poisoned: false,
        })
    }

    /// Opens an existing ledger to append to it, after verifying its whole chain.
    ///
    /// Appending to a broken ledger would bury the damage under valid-looking entries, so any verification
    /// error is returned instead, naming the first bad line. The file is verified through the same handle
    /// that will write to it.
    pub fn open_append(path: impl AsRef<Path>) -> Result<Ledger, LedgerError> {
        let path = path.as_ref().to_path_buf();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_error(&path, "open", e))?;
        let (report, len) = verify_reader(&path, BufReader::new(&file), &mut |_| ())?;
        let on_disk = file_len(&path, &file)?;
        if on_disk != len {
            return Err(LedgerError::ChangedUnderneath {
                path,
                expected_len: len,
                found_len: on_disk,
            });
        }
        Ok(Ledger {
            path,
            file,
            entries: report.entries,
            head: report.head_hash,
            len,
            poisoned: false,
        })
    }

    /// Appends one entry, stamped with the current time, a fresh salt and the chain's head, and syncs it to
    /// disk before returning its hash.
    ///
    /// The body is checked first ([`LedgerError::InvalidEntry`] leaves the file untouched), except that an
    /// abort's error text is cleaned (control characters become spaces, long text is cut) rather than
    /// refused, so that an abort can always be recorded. If another process has changed the file since this
    /// handle last wrote, nothing is written ([`LedgerError::ChangedUnderneath`]). If the write or sync
    /// fails, the handle refuses further appends ([`LedgerError::Poisoned`]).
    pub fn append(&mut self, body: EntryBody) -> Result<EntryHash, LedgerError> {
        let salt = random_salt()?;
        self.append_with(body, SystemTime::now(), salt)
    }

    fn append_with(
        &mut self,
        body: EntryBody,
        now: SystemTime,
        salt: Salt,
    ) -> Result<EntryHash, LedgerError> {
        let prepared = self.prepare_with(body, now, salt)?;
        self.commit(prepared)
    }

    /// Builds the next entry without writing it, so that a caller can first record its head elsewhere
    /// (`signer` moves the ledger's token anchor before the file, so a token failure leaves both as they
    /// were). Checks as [`Ledger::append`] does; [`Ledger::commit`] writes it.
    pub fn prepare(&self, body: EntryBody) -> Result<PreparedEntry, LedgerError> {
        let salt = random_salt()?;
        self.prepare_with(body, SystemTime::now(), salt)
    }

    fn prepare_with(
        &self,
        mut body: EntryBody,
        now: SystemTime,
        salt: Salt,
    ) -> Result<PreparedEntry, LedgerError> {
        if self.poisoned {
            return Err(LedgerError::Poisoned {
                path: self.path.clone(),
            });
        }
        if let Some(error) = body.error.as_mut() {
            *error = canonical::sanitize_error(error);
        }
        let time = time::format_utc(now).map_err(|reason| LedgerError::InvalidEntry {
            field: "time".into(),
            reason,
        })?;
        let seq = self.entries.saturating_add(1);
        let encoding = canonical::encode(seq, &time, &body, &salt, &self.head).map_err(|i| {
            LedgerError::InvalidEntry {
                field: i.field,
                reason: i.reason,
            }
        })?;
        let entry_hash = canonical::entry_hash(&encoding);
        let entry = Entry {
            seq,
            time,
            body,
            salt,
            prev_hash: self.head,
            entry_hash,
        };
        let mut line = serde_json::to_vec(&Wire::from_entry(entry)).map_err(|e| {
            LedgerError::InvalidEntry {
                field: "entry".into(),
                reason: e.to_string(),
            }
        })?;
        line.push(b'\n');
        if line.len() > MAX_LINE {
            return Err(LedgerError::InvalidEntry {
                field: "entry".into(),
                reason: format!("{} bytes once written; the limit is {MAX_LINE}", line.len()),
            });
        }
        Ok(PreparedEntry {
            line,
            after: self.head_state(),
            head: Head {
                entries: seq,
                hash: entry_hash,
            },
        })
    }

    /// Writes an entry made by [`Ledger::prepare`] and syncs it, refusing one prepared on another head.
    pub fn commit(&mut self, prepared: PreparedEntry) -> Result<EntryHash, LedgerError> {
        if self.poisoned {
            return Err(LedgerError::Poisoned {
                path: self.path.clone(),
            });
        }
        let on_disk = file_len(&self.path, &self.file)?;
        if on_disk != self.len || prepared.after != self.head_state() {
            return Err(LedgerError::ChangedUnderneath {
                path: self.path.clone(),
                expected_len: self.len,
                found_len: on_disk,
            });
        }
        let PreparedEntry { line, head, .. } = prepared;
        // From here on a failure may leave a partial line: poison the handle so nothing is built on it.
        self.poisoned = true;
        self.file
            .write_all(&line)
            .map_err(|e| io_error(&self.path, "write", e))?;
        self.file
            .sync_data()
            .map_err(|e| io_error(&self.path, "sync", e))?;
        self.poisoned = false;

        self.len = self.len.saturating_add(line.len() as u64);
        self.entries = head.entries;
        self.head = head.hash;
        Ok(head.hash)
    }

    /// The hash of the last entry written or verified: what the ceremony reads aloud at its end.
    pub fn head(&self) -> EntryHash {
        self.head
    }

    /// The number of entries in the ledger; the next entry gets this number plus one.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// The head as a token anchors it: entry count and last hash.
    pub fn head_state(&self) -> Head {
        Head {
            entries: self.entries,
            hash: self.head,
        }
    }

    /// The ledger's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current state in the same form [`verify`] reports, for printing at the end of a ceremony
    /// without re-reading the file.
    pub fn report(&self) -> VerifyReport {
        VerifyReport::new(self.entries, self.head)
    }
}

/// Verifies the ledger at `path`: every line is a well-formed entry, sequence numbers run 1, 2, 3, ...,
/// every entry links to the hash of the one before, and every entry's hash matches its contents.
///
/// This is what `keyman ledger verify FILE` runs. On success the report carries the head hash and its
/// fingerprint for comparison with the paper form; on failure the error names the first line (and the
/// sequence number expected there) that does not fit. The file is treated as untrusted input: any content,
/// however damaged, produces an error rather than a panic, and memory stays bounded by [`MAX_LINE`].
pub fn verify(path: impl AsRef<Path>) -> Result<VerifyReport, LedgerError> {
    verify_each(path, |_| ())
}

/// Like [`verify`], but hands each entry, once it has been checked against its predecessor, to `visit`.
///
/// Use it to show a ledger, to check that the entry at a given sequence number has the hash written on an
/// earlier ceremony's form, or (in `signer`) to find which cards a crashed run already delivered to. Note
/// that `visit` sees entries before the rest of the file has been verified; act on them only after this
/// function returns `Ok`.
pub fn verify_each(
    path: impl AsRef<Path>,
    mut visit: impl FnMut(&Entry),
) -> Result<VerifyReport, LedgerError> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|e| io_error(path, "open", e))?;
    verify_reader(path, BufReader::new(file), &mut visit).map(|(report, _)| report)
}

/// Verifies from a reader; returns the report and the number of bytes read.
fn verify_reader(
    path: &Path,
    mut reader: impl BufRead,
    visit: &mut dyn FnMut(&Entry),
) -> Result<(VerifyReport, u64), LedgerError> {
    let mut buf = Vec::new();
    let mut head = EntryHash::GENESIS;
    let mut entries: u64 = 0;
    let mut bytes: u64 = 0;
    loop {
        buf.clear();
        let limit = MAX_LINE as u64 + 1;
        let n = reader
            .by_ref()
            .take(limit)
            .read_until(b'\n', &mut buf)
            .map_err(|e| io_error(path, "read", e))?;
        if n == 0 {
            break;
        }
        let line = entries.saturating_add(1);
        let malformed = |reason: String| LedgerError::Malformed {
            path: path.to_path_buf(),
            line,
            expected_seq: line,
            reason,
        };
        let Some(content) = buf.strip_suffix(b"\n") else {
            if buf.len() > MAX_LINE {
                return Err(malformed(format!("line longer than {MAX_LINE} bytes")));
            }
            return Err(LedgerError::Truncated {
                path: path.to_path_buf(),
                line,
                expected_seq: line,
            });
        };
        let entry = parse_line(content).map_err(malformed)?;
        if entry.seq != line {
            return Err(LedgerError::OutOfSequence {
                path: path.to_path_buf(),
                line,
                expected: line,
                found: entry.seq,
            });
        }
        if entry.prev_hash != head {
            return Err(LedgerError::BrokenLink {
                path: path.to_path_buf(),
                line,
                seq: line,
            });
        }
        let encoding = canonical::encode(
            entry.seq,
            &entry.time,
            &entry.body,
            &entry.salt,
            &entry.prev_hash,
        )
        .map_err(|i| malformed(format!("{}: {}", i.field, i.reason)))?;
        if canonical::entry_hash(&encoding) != entry.entry_hash {
            return Err(LedgerError::Altered {
                path: path.to_path_buf(),
                line,
                seq: line,
            });
        }
        visit(&entry);
        head = entry.entry_hash;
        entries = line;
        bytes = bytes.saturating_add(n as u64);
    }
    Ok((VerifyReport::new(entries, head), bytes))
}

/// Parses one line (without its newline) into an entry, requiring the exact form this module writes.
fn parse_line(content: &[u8]) -> Result<Entry, String> {
    let text = std::str::from_utf8(content).map_err(|_| "not UTF-8".to_string())?;
    if text.is_empty() {
        return Err("empty line".into());
    }
    let wire: Wire = serde_json::from_str(text).map_err(|e| format!("not a ledger entry: {e}"))?;
    if wire.v != FORMAT_VERSION {
        return Err(format!(
            "format version {} is not supported (this keyman reads {FORMAT_VERSION})",
            wire.v
        ));
    }
    let again = serde_json::to_vec(&wire).map_err(|e| e.to_string())?;
    if again != content {
        return Err(
            "not in the exact form keyman writes (the line was reformatted or edited)".into(),
        );
    }
    Ok(wire.into_entry())
}

fn random_salt() -> Result<Salt, LedgerError> {
    let mut salt = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut salt))
        .map_err(|source| LedgerError::Random { source })?;
    Ok(Salt(salt))
}

fn io_error(path: &Path, action: &'static str, source: std::io::Error) -> LedgerError {
    LedgerError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

fn file_len(path: &Path, file: &File) -> Result<u64, LedgerError> {
    file.metadata()
        .map(|m| m.len())
        .map_err(|e| io_error(path, "stat", e))
}

/// Syncs the directory holding `path`, so that a newly created file's name is durable too.
fn sync_parent_dir(path: &Path) -> Result<(), LedgerError> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error(dir, "sync", e))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn body(n: u32) -> EntryBody {
        EntryBody::new(EntryKind::Step, "issuer-master")
            .step(format!("step-{n}"))
            .participant("officer", "Alice")
            .output(Output::Card {
                identity: format!("card-{n}"),
            })
    }

    #[test]
    fn append_is_deterministic_given_time_and_salt() {
        let dir = tempfile::tempdir().unwrap();
        let t = UNIX_EPOCH + Duration::from_secs(1_735_787_045);
        let mut hashes = Vec::new();
        for name in ["a.jsonl", "b.jsonl"] {
            let path = dir.path().join(name);
            let mut l = Ledger::create(&path).unwrap();
            let h1 = l.append_with(body(1), t, Salt([7; 16])).unwrap();
            let h2 = l.append_with(body(2), t, Salt([8; 16])).unwrap();
            assert_ne!(h1, h2);
            hashes.push((h1, h2, std::fs::read(&path).unwrap()));
            let report = verify(&path).unwrap();
            assert_eq!(report.entries, 2);
            assert_eq!(report.head_hash, h2);
            assert_eq!(report, l.report());
        }
        assert_eq!(hashes[0], hashes[1]);
        let text = String::from_utf8(hashes[0].2.clone()).unwrap();
        let first = text.lines().next().unwrap();
        assert!(
            first.starts_with(r#"{"v":1,"seq":1,"time":"2025-01-02T03:04:05Z","kind":"step","#),
            "{first}"
        );
        assert!(first.contains(&format!(r#""prev_hash":"{}""#, EntryHash::GENESIS)));
    }

    #[test]
    fn same_body_twice_gets_different_salts_and_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        let mut l = Ledger::create(&path).unwrap();
        l.append(body(1)).unwrap();
        l.append(body(1)).unwrap();
        let mut salts = Vec::new();
        verify_each(&path, |e| salts.push(e.salt)).unwrap();
        assert_eq!(salts.len(), 2);
        assert_ne!(salts[0], salts[1]);
    }

    #[test]
    fn invalid_entry_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        let mut l = Ledger::create(&path).unwrap();
        l.append(body(1)).unwrap();
        let before = std::fs::read(&path).unwrap();
        let bad = body(2).participant("officer", "");
        match l.append(bad) {
            Err(LedgerError::InvalidEntry { field, .. }) => {
                assert_eq!(field, "participants[1].name")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(std::fs::read(&path).unwrap(), before);
        // The handle is still usable.
        l.append(body(2)).unwrap();
        assert_eq!(verify(&path).unwrap().entries, 2);
    }

    #[test]
    fn abort_text_is_cleaned_not_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        let mut l = Ledger::create(&path).unwrap();
        l.append(EntryBody::abort(
            "issuer-master",
            "token said:\n\u{1b}[31mCKR_PIN_INCORRECT",
        ))
        .unwrap();
        let mut errors = Vec::new();
        verify_each(&path, |e| errors.push(e.body.error.clone())).unwrap();
        assert_eq!(
            errors,
            [Some("token said:  [31mCKR_PIN_INCORRECT".to_string())]
        );
    }

    #[test]
    fn concurrent_writer_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        let mut a = Ledger::create(&path).unwrap();
        a.append(body(1)).unwrap();
        let mut b = Ledger::open_append(&path).unwrap();
        b.append(body(2)).unwrap();
        assert!(matches!(
            a.append(body(3)),
            Err(LedgerError::ChangedUnderneath { .. })
        ));
        assert_eq!(verify(&path).unwrap().entries, 2);
    }

    #[test]
    fn prepared_entry_is_written_only_on_the_head_it_was_built_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        let mut l = Ledger::create(&path).unwrap();
        let first = l.prepare(body(1)).unwrap();
        assert_eq!(first.head().entries, 1);
        // Nothing is written until commit.
        assert_eq!(std::fs::read(&path).unwrap(), b"");
        let stale = l.prepare(body(2)).unwrap();
        let hash = l.commit(first).unwrap();
        assert_eq!(l.head_state().hash, hash);
        assert!(matches!(
            l.commit(stale),
            Err(LedgerError::ChangedUnderneath { .. })
        ));
        assert_eq!(verify(&path).unwrap().entries, 1);
    }

    #[test]
    fn empty_ledger_verifies_with_genesis_head() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        drop(Ledger::create(&path).unwrap());
        let r = verify(&path).unwrap();
        assert_eq!((r.entries, r.head_hash), (0, EntryHash::GENESIS));
        let mut l = Ledger::open_append(&path).unwrap();
        l.append(body(1)).unwrap();
        assert_eq!(verify(&path).unwrap().entries, 1);
    }

    #[test]
    fn overlong_line_is_malformed_not_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        std::fs::write(&path, vec![b'{'; MAX_LINE + 10]).unwrap();
        assert!(matches!(
            verify(&path),
            Err(LedgerError::Malformed { line: 1, .. })
        ));
    }
}
