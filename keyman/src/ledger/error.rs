//! The ledger's error type.
//!
//! Every variant says what an operator can do about it, and every variant that concerns a file names the
//! file, and where a line is known, the line and the sequence number an auditor should look at.

use std::path::PathBuf;

/// Why a ledger could not be created, opened, appended to or verified.
///
/// Verification errors ([`Truncated`](Self::Truncated), [`Malformed`](Self::Malformed),
/// [`OutOfSequence`](Self::OutOfSequence), [`BrokenLink`](Self::BrokenLink), [`Altered`](Self::Altered))
/// always name the *first* line that does not fit: everything before it was checked and is consistent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// The operating system refused a read, write, sync or open. Nothing about the ledger's integrity is
    /// known from this error; fix the cause (permissions, disk space, a missing directory) and retry.
    #[error("{}: cannot {action}: {source}", path.display())]
    Io {
        /// The file (or directory) involved.
        path: PathBuf,
        /// What was being done, in words: "open", "read", "write", "sync", ...
        action: &'static str,
        /// The operating system's error.
        source: std::io::Error,
    },

    /// [`Ledger::create`](super::Ledger::create) found a file at the path. A ledger is never written over:
    /// the old file may be the only record of an earlier ceremony.
    #[error(
        "{}: already exists; a ledger is never overwritten (choose a new file name, or append to it with open_append)",
        path.display()
    )]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },

    /// The last line has no newline: the write of entry `expected_seq` was interrupted (a crash, a full disk)
    /// or the file was cut short. Entries before it are intact; keep a copy of the file and decide with the
    /// auditor whether to remove the partial line.
    #[error(
        "{}:{line}: entry {expected_seq} is truncated (the last line has no newline): a write was interrupted or the file was cut short",
        path.display()
    )]
    Truncated {
        /// The ledger.
        path: PathBuf,
        /// 1-based line number of the partial line.
        line: u64,
        /// The sequence number an entry on that line must carry.
        expected_seq: u64,
    },

    /// A line is not an entry in the exact form keyman writes: not UTF-8, not JSON, an unknown or missing
    /// field, a value out of range, or JSON reformatted by hand. The file was edited or damaged here.
    #[error("{}:{line}: entry {expected_seq} is malformed: {reason}", path.display())]
    Malformed {
        /// The ledger.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// The sequence number an entry on that line must carry.
        expected_seq: u64,
        /// What is wrong, naming the field where one is at fault.
        reason: String,
    },

    /// The entry on this line carries the wrong sequence number: an entry was deleted, duplicated or moved
    /// here from elsewhere in the file.
    #[error(
        "{}:{line}: expected entry {expected} but found entry {found}: an entry was deleted, duplicated or moved",
        path.display()
    )]
    OutOfSequence {
        /// The ledger.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// The sequence number this line must carry.
        expected: u64,
        /// The sequence number it does carry.
        found: u64,
    },

    /// The entry's `prev_hash` is not the hash of the entry on the line before: the previous entry was
    /// replaced (and its own hash recomputed), or entries were removed or reordered.
    #[error(
        "{}:{line}: entry {seq} does not follow from the entry before it (its prev_hash differs): the previous entry was replaced, or entries were removed or reordered",
        path.display()
    )]
    BrokenLink {
        /// The ledger.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// The sequence number of the entry.
        seq: u64,
    },

    /// The entry's recorded `entry_hash` is not the hash of its contents: a field (a label, a KCV, a time,
    /// the salt, ...) was changed after it was written.
    #[error(
        "{}:{line}: entry {seq} was altered: its contents do not match its recorded entry_hash",
        path.display()
    )]
    Altered {
        /// The ledger.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// The sequence number of the entry.
        seq: u64,
    },

    /// An entry was refused before anything was written, because a field breaks the ledger's rules (for
    /// instance a PEM block that is not a public key, a KCV longer than a KCV can be, or a control character
    /// in a label). Fix the caller; the ledger is unchanged.
    #[error("ledger entry refused, nothing written: {field}: {reason}")]
    InvalidEntry {
        /// The offending field, as a path such as `outputs[1].kcv_hex`.
        field: String,
        /// The rule it breaks.
        reason: String,
    },

    /// The file's length is not what this handle last wrote: another process appended to (or cut) the
    /// ledger since it was opened. Appending now could fork the chain; reopen with
    /// [`Ledger::open_append`](super::Ledger::open_append), which verifies the file first.
    #[error(
        "{}: changed by another writer since it was opened ({expected_len} bytes expected, {found_len} found); reopen it to verify and append",
        path.display()
    )]
    ChangedUnderneath {
        /// The ledger.
        path: PathBuf,
        /// Length this handle expects.
        expected_len: u64,
        /// Length found on disk.
        found_len: u64,
    },

    /// An earlier append through this handle failed part-way, so the file may end in a partial line. The
    /// handle refuses further appends; reopen with [`Ledger::open_append`](super::Ledger::open_append),
    /// which will report the state of the file.
    #[error(
        "{}: an earlier write through this handle failed; reopen the ledger to check it before appending",
        path.display()
    )]
    Poisoned {
        /// The ledger.
        path: PathBuf,
    },

    /// The token holds a head for this ledger and the file does not reach it, or goes past it, or is a
    /// different chain: entries were cut from the end, or the file was replaced or rewritten. Hand the file
    /// and the paper form to an auditor; the message names the head the token recorded at the last append.
    #[error(
        "{}: does not match the anchor in token '{token}': the token expects {expected}, the file has {found}",
        path.display()
    )]
    AnchorMismatch {
        /// The ledger.
        path: PathBuf,
        /// Label of the token holding the anchor.
        token: String,
        /// The number of entries the anchor records.
        expected_entries: u64,
        /// The anchored head, described (count, fingerprint in hex and words).
        expected: String,
        /// The file's head, described the same way.
        found: String,
    },

    /// The token holds a head for this ledger but there is no file: it was deleted or moved.
    #[error(
        "{}: missing, but token '{token}' anchors a ledger of that name with {expected}; restore the file from a copy or hand the case to an auditor",
        path.display()
    )]
    AnchoredButMissing {
        /// The ledger path that was named.
        path: PathBuf,
        /// Label of the token holding the anchor.
        token: String,
        /// The anchored head, described.
        expected: String,
    },

    /// The token holds no anchor for this ledger's file name, so nothing shows whether entries were cut
    /// or the file replaced. Anchor a ledger when it is made (`keyman ledger init`, or `keyman ledger
    /// anchor` right after the ceremony that made it), in the token its tools log in to.
    #[error(
        "{}: token '{token}' holds no anchor for this ledger; create ledgers with `keyman ledger init` (or anchor a ceremony's new ledger with `keyman ledger anchor`) in the token that appends to them",
        path.display()
    )]
    NotAnchored {
        /// The ledger.
        path: PathBuf,
        /// Label of the token searched.
        token: String,
    },

    /// A ledger's anchor is named after the file's name, and this path has none.
    #[error("{}: a ledger path must end in a file name", path.display())]
    NoAnchorName {
        /// The path given.
        path: PathBuf,
    },

    /// There is no ledger file and no tool creates one implicitly.
    #[error(
        "{}: no such ledger; create it explicitly with `keyman ledger init {} --token TOKEN` (a missing ledger is never started afresh silently)",
        path.display(),
        path.display()
    )]
    NotFound {
        /// The path given.
        path: PathBuf,
    },

    /// The random salt for a new entry could not be read from the operating system. Nothing was written.
    #[error("cannot read a random salt from /dev/urandom: {source}")]
    Random {
        /// The operating system's error.
        source: std::io::Error,
    },
}

impl LedgerError {
    /// The 1-based line number this error points at, if it concerns one line of a ledger file.
    ///
    /// Tools use it to print the offending line next to the message; tests use it to check that the first
    /// bad line is the one reported.
    pub fn line(&self) -> Option<u64> {
        match self {
            Self::Truncated { line, .. }
            | Self::Malformed { line, .. }
            | Self::OutOfSequence { line, .. }
            | Self::BrokenLink { line, .. }
            | Self::Altered { line, .. } => Some(*line),
            _ => None,
        }
    }

    /// True when the error means the ledger file is not a consistent chain (as opposed to an I/O problem, a
    /// refused entry or a concurrent writer): the ledger must be handed to an auditor, not retried.
    pub fn is_integrity_failure(&self) -> bool {
        self.line().is_some()
    }
}
