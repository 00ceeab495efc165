//! The ledger's head as a token anchors it, and the comparison of a ledger file with that anchor.
//!
//! The hash chain shows any change *inside* a ledger, but not a cut at an entry boundary, a deleted file or
//! a file replaced by another consistent chain: whoever can write the file can do those without a trace in
//! the file. The anchor closes that gap. It is a private token object in the HSM token the ledger's tools
//! already log in to (a `CKO_DATA` object, `CKA_TOKEN` and `CKA_PRIVATE` true, application
//! [`ANCHOR_APPLICATION`], label [`anchor_label`]), holding the head — the number of entries and the last
//! entry's hash — in the form [`Head::to_value`] writes. Every append updates it; `keyman ledger verify
//! FILE --token ...` compares the file with it and fails naming the head it expected.
//!
//! Why a data object rather than a signature by a ledger key: a signature over the head proves that the
//! head was once signed, not that it is the latest one, so a cut back to an earlier signed head would still
//! verify. A data object that only a logged-in user can read or change holds exactly one head, the latest.
//! Who can rewrite the ledger file cannot change the anchor without the token's user PIN.
//!
//! One token may anchor several ledgers: each anchor's label carries the ledger's file name (not its path,
//! so a ledger may be moved or copied to an auditor's machine, but it keeps its name).

use super::{EntryHash, LedgerError, VerifyReport};
use std::path::Path;

/// `CKA_APPLICATION` of every ledger anchor, so inventories and auditors can tell anchors from other
/// data objects.
pub const ANCHOR_APPLICATION: &str = "postissue-ledger-anchor";

/// Prefix of an anchor's `CKA_LABEL`; the ledger's file name follows.
pub const ANCHOR_LABEL_PREFIX: &str = "ledger-anchor:";

/// Version tag at the start of an anchor's value.
const VALUE_TAG: &[u8; 4] = b"PLA1";

/// Length of an anchor's value: tag, entry count, head hash.
pub const VALUE_LEN: usize = 4 + 8 + 32;

/// A ledger's head: how many entries it has and the hash of the last one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// Number of entries.
    pub entries: u64,
    /// Hash of the last entry, or [`EntryHash::GENESIS`] for an empty ledger.
    pub hash: EntryHash,
}

impl Head {
    /// The head of a ledger with no entries yet.
    pub const EMPTY: Head = Head {
        entries: 0,
        hash: EntryHash::GENESIS,
    };

    /// The bytes stored in the anchor object's `CKA_VALUE`: `"PLA1"`, the entry count as 8 bytes
    /// big-endian, and the 32-byte head hash.
    pub fn to_value(&self) -> [u8; VALUE_LEN] {
        let mut v = [0u8; VALUE_LEN];
        let (tag, rest) = v.split_at_mut(4);
        tag.copy_from_slice(VALUE_TAG);
        let (count, hash) = rest.split_at_mut(8);
        count.copy_from_slice(&self.entries.to_be_bytes());
        hash.copy_from_slice(&self.hash.0);
        v
    }

    /// Parses an anchor's value; the token's reply is untrusted input.
    pub fn from_value(value: &[u8]) -> Result<Head, String> {
        let value: &[u8; VALUE_LEN] = value.try_into().map_err(|_| {
            format!(
                "anchor value is {} bytes, expected {VALUE_LEN}",
                value.len()
            )
        })?;
        let (tag, rest) = value.split_at(4);
        if tag != VALUE_TAG {
            return Err("anchor value has an unknown version tag".into());
        }
        let (count, hash) = rest.split_at(8);
        let count: [u8; 8] = count.try_into().map_err(|_| "short count".to_string())?;
        let hash: [u8; 32] = hash.try_into().map_err(|_| "short hash".to_string())?;
        Ok(Head {
            entries: u64::from_be_bytes(count),
            hash: EntryHash(hash),
        })
    }

    /// The head in the words people compare: `N entries, fingerprint HEX (WORDS)`.
    pub fn describe(&self) -> String {
        format!(
            "{} entries, fingerprint {} ({})",
            self.entries,
            self.hash,
            self.hash.words().join(" ")
        )
    }
}

impl From<&VerifyReport> for Head {
    fn from(r: &VerifyReport) -> Head {
        Head {
            entries: r.entries,
            hash: r.head_hash,
        }
    }
}

/// The anchor label for the ledger at `path`: [`ANCHOR_LABEL_PREFIX`] and the file name.
pub fn anchor_label(path: &Path) -> Result<String, LedgerError> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| LedgerError::NoAnchorName {
            path: path.to_path_buf(),
        })?;
    Ok(format!("{ANCHOR_LABEL_PREFIX}{name}"))
}

/// Compares what the file holds (`found`, or `None` when there is no file) with the token's anchor.
///
/// `anchor` is `None` when the token holds no anchor for this ledger's name. Every failure names the
/// head the token expected, so an auditor can tell a cut (fewer entries) from a replacement (a
/// different fingerprint) and knows what the paper form should show.
pub fn check(
    path: &Path,
    token: &str,
    found: Option<Head>,
    anchor: Option<Head>,
) -> Result<(), LedgerError> {
    let path = path.to_path_buf();
    let token = token.to_string();
    match (found, anchor) {
        (_, None) => Err(LedgerError::NotAnchored { path, token }),
        (None, Some(expected)) => Err(LedgerError::AnchoredButMissing {
            path,
            token,
            expected: expected.describe(),
        }),
        (Some(found), Some(expected)) if found == expected => Ok(()),
        (Some(found), Some(expected)) => Err(LedgerError::AnchorMismatch {
            path,
            token,
            expected_entries: expected.entries,
            expected: expected.describe(),
            found: found.describe(),
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn value_round_trips_and_rejects_other_lengths_and_tags() {
        let h = Head {
            entries: 0x0102,
            hash: EntryHash([7; 32]),
        };
        let v = h.to_value();
        assert_eq!(&v[..4], b"PLA1");
        assert_eq!(&v[4..12], &[0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(Head::from_value(&v).unwrap(), h);
        assert!(Head::from_value(&v[..43]).is_err());
        let mut w = v;
        w[0] = b'X';
        assert!(Head::from_value(&w).is_err());
    }

    #[test]
    fn check_names_the_expected_head() {
        let p = Path::new("l.jsonl");
        let a = Head {
            entries: 5,
            hash: EntryHash([1; 32]),
        };
        let cut = Head {
            entries: 4,
            hash: EntryHash([2; 32]),
        };
        check(p, "t", Some(a), Some(a)).unwrap();
        let e = check(p, "t", Some(cut), Some(a)).unwrap_err().to_string();
        assert!(e.contains("5 entries"), "{e}");
        assert!(e.contains(&EntryHash([1; 32]).to_string()), "{e}");
        assert!(e.contains(&EntryHash([1; 32]).words().join(" ")), "{e}");
        let e = check(p, "t", None, Some(a)).unwrap_err().to_string();
        assert!(e.contains("5 entries"), "{e}");
        assert!(matches!(
            check(p, "t", Some(a), None),
            Err(LedgerError::NotAnchored { .. })
        ));
    }

    #[test]
    fn label_is_the_file_name() {
        assert_eq!(
            anchor_label(Path::new("/x/y/issuer.jsonl")).unwrap(),
            "ledger-anchor:issuer.jsonl"
        );
        assert!(anchor_label(Path::new("/")).is_err());
    }
}
