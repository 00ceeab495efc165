//! The typed contents of a ledger entry.
//!
//! Everything a caller can put in the ledger is one of these types, and none of them has a field for key
//! material: outputs are labels, key identifiers, KCVs (with their method), public keys, digests of
//! non-secret files, DAP signatures and card identities. There is deliberately no "raw bytes" or "extra"
//! field, so recording a secret would take an explicit, reviewable misuse of a label or name field.

use std::fmt;
use std::io;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Digest as _;

use super::error::LedgerError;
use super::words;

/// Parses lower-case hex of exactly `N` bytes. The ledger accepts only lower case so that each value has
/// exactly one spelling in the file.
fn parse_hex_array<const N: usize>(s: &str) -> Result<[u8; N], String> {
    if s.len() != 2 * N {
        return Err(format!(
            "expected {} lower-case hex digits, found {} characters",
            2 * N,
            s.len()
        ));
    }
    let v = parse_hex_lower(s)?;
    <[u8; N]>::try_from(v).map_err(|_| format!("expected {N} bytes"))
}

/// Parses lower-case hex of any even length.
pub(crate) fn parse_hex_lower(s: &str) -> Result<Vec<u8>, String> {
    if !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err("not lower-case hex".into());
    }
    hex::decode(s).map_err(|e| format!("not hex: {e}"))
}

macro_rules! hex_bytes_type {
    ($(#[$doc:meta])* $name:ident, $n:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name(pub [u8; $n]);

        impl $name {
            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $n] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            /// Lower-case hex, the form the ledger file uses.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }

        impl FromStr for $name {
            type Err = String;
            /// Parses lower-case hex only, as written in the ledger file.
            fn from_str(s: &str) -> Result<Self, String> {
                parse_hex_array::<$n>(s).map(Self)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&hex::encode(self.0))
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hex_bytes_type!(
    /// The SHA-256 hash of one ledger entry in its canonical encoding; the last one (the head) stands for
    /// the whole ledger.
    ///
    /// It is what chains the entries together and what people compare at the end of a ceremony, either in
    /// hex or as words ([`EntryHash::words`]).
    EntryHash,
    32
);

hex_bytes_type!(
    /// A SHA-256 digest of a file that is *not* secret (a ceremony script, a card list, a load file, a
    /// package, a wrapped-key file). Never use it for a PIN file, a component or any other secret: a hash
    /// of a low-entropy secret is as good as the secret.
    Sha256Hash,
    32
);

hex_bytes_type!(
    /// The 16 random bytes mixed into each entry's hash.
    ///
    /// Salting makes every entry hash unique even when a rehearsal repeats a ceremony word for word, and
    /// means a published hash cannot be used to confirm guesses about an entry's low-entropy fields (a
    /// name, a label) if the entry itself is withheld.
    Salt,
    16
);

impl EntryHash {
    /// The value that the first entry's `prev_hash` carries, and the head of an empty ledger: 32 zero bytes.
    pub const GENESIS: EntryHash = EntryHash([0; 32]);

    /// The first [`FINGERPRINT_WORDS`](super::FINGERPRINT_WORDS) bytes as words from the project's word
    /// list, for reading the hash aloud.
    pub fn words(&self) -> Vec<&'static str> {
        words::words_for(&self.0)
    }
}

impl Sha256Hash {
    /// The SHA-256 of `data`.
    pub fn of(data: &[u8]) -> Sha256Hash {
        Sha256Hash(sha2::Sha256::digest(data).into())
    }

    /// The SHA-256 of a file's contents, read in a stream so large load files need no memory.
    ///
    /// Only for files that are not secret; see the type's documentation.
    pub fn of_file(path: &Path) -> Result<Sha256Hash, LedgerError> {
        let io_err = |action, source| LedgerError::Io {
            path: path.to_path_buf(),
            action,
            source,
        };
        let mut file = std::fs::File::open(path).map_err(|e| io_err("open", e))?;
        let mut hasher = sha2::Sha256::new();
        io::copy(&mut file, &mut hasher).map_err(|e| io_err("read", e))?;
        Ok(Sha256Hash(hasher.finalize().into()))
    }
}

/// What kind of event an entry records.
///
/// The kind tells an auditor how to read the rest of the entry; new kinds may be added, so match with a
/// wildcard arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum EntryKind {
    /// A ceremony began: its script is among the inputs, its participants are listed.
    CeremonyStart,
    /// One step of a ceremony completed, with what it produced.
    Step,
    /// A ceremony completed normally.
    CeremonyEnd,
    /// A ceremony (or a signing or delivery run) stopped early; the entry carries the error.
    Abort,
    /// `signer` made a signature (a DAP, a token) over a package.
    Signing,
    /// `signer` delivered a package or keys to a card.
    Delivery,
}

impl EntryKind {
    /// The name used both in the JSON file and in the canonical encoding.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CeremonyStart => "ceremony-start",
            Self::Step => "step",
            Self::CeremonyEnd => "ceremony-end",
            Self::Abort => "abort",
            Self::Signing => "signing",
            Self::Delivery => "delivery",
        }
    }
}

/// How a key check value was computed. AES check values differ between methods, so the ledger never
/// records a KCV without its method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum KcvMethod {
    /// Leading bytes of 3DES-ECB(key, 00×8): the usual 3DES check value.
    #[serde(rename = "3des-ecb-zeros")]
    Des3Zeros,
    /// Leading bytes of AES-ECB(key, 01×16): GlobalPlatform Card Specification B.6 (SCP03 keys).
    #[serde(rename = "aes-ecb-ones")]
    AesOnes,
    /// Leading bytes of AES-ECB(key, 00×16): a common non-GP variant.
    #[serde(rename = "aes-ecb-zeros")]
    AesZeros,
    /// Leading bytes of AES-CMAC(key, 00×16), as ANSI X9.24-1 describes for AES keys.
    #[serde(rename = "aes-cmac-zeros")]
    AesCmacZeros,
}

impl KcvMethod {
    /// The name used both in the JSON file and in the canonical encoding.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Des3Zeros => "3des-ecb-zeros",
            Self::AesOnes => "aes-ecb-ones",
            Self::AesZeros => "aes-ecb-zeros",
            Self::AesCmacZeros => "aes-cmac-zeros",
        }
    }
}

/// A person who took part, with the role they held (for example `officer` / `Alice`).
///
/// Names only: the ledger records who was in the room, never anything they typed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Participant {
    /// The role from the ceremony script (officer, custodian, witness, ...).
    pub role: String,
    /// The person's name as the script or the operator gives it.
    pub name: String,
}

/// A non-secret input file and its SHA-256, so an auditor can tell exactly which script, card list or
/// load file a step used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputFile {
    /// The file's name or path as the operator gave it.
    pub name: String,
    /// SHA-256 of its contents.
    pub sha256: Sha256Hash,
}

impl InputFile {
    /// Hashes the file at `path` and names it by that path.
    ///
    /// Only for files that are not secret (never a PIN file or a key component): a hash of a secret is
    /// not allowed in the ledger.
    pub fn from_path(path: &Path) -> Result<InputFile, LedgerError> {
        Ok(InputFile {
            name: path.display().to_string(),
            sha256: Sha256Hash::of_file(path)?,
        })
    }
}

/// Something a step produced or acted on, in a form that is safe to publish.
///
/// Each variant holds only identifiers and public values. Hex fields are lower-case; their lengths are
/// bounded so that a key cannot be passed off as a KCV.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Output {
    /// A key that now exists on a token (generated, formed, unwrapped, derived).
    Key {
        /// Its CKA_LABEL.
        label: String,
        /// Its CKA_ID in hex (0 to 64 bytes; empty when the token has none).
        id_hex: String,
        /// Its type and size, for example `AES-128`, `DES3-2KEY`, `RSA-2048`, `EC-P256` (letters, digits,
        /// `-`, `_`, `.`; at most 32).
        key_type: String,
        /// Its check value in hex (2 to 5 bytes), absent for asymmetric keys.
        kcv_hex: Option<String>,
        /// How the check value was computed; present exactly when `kcv_hex` is.
        kcv_method: Option<KcvMethod>,
    },
    /// One key component entered or shown to a custodian, identified by its check value only.
    Component {
        /// The label of the key the component belongs to.
        label: String,
        /// 1-based component number.
        index: u32,
        /// How many components the key has.
        count: u32,
        /// The custodian who entered or received it.
        custodian: String,
        /// The component's check value in hex (2 to 5 bytes).
        kcv_hex: String,
        /// How the check value was computed.
        kcv_method: KcvMethod,
    },
    /// A public key exported for DAP or token verification, as a PEM block whose label ends in
    /// `PUBLIC KEY`.
    PublicKey {
        /// The label of the key pair.
        label: String,
        /// The PEM text.
        pem: String,
    },
    /// A key destroyed on a token.
    Destroyed {
        /// Its CKA_LABEL.
        label: String,
        /// Its CKA_ID in hex (0 to 64 bytes).
        id_hex: String,
    },
    /// A non-secret file written by the step (a public key, a wrapped key, a form).
    File {
        /// The file's name or path.
        name: String,
        /// SHA-256 of its contents.
        sha256: Sha256Hash,
    },
    /// A package produced or delivered by `signer`, identified by its hash.
    Package {
        /// SHA-256 of the package file.
        sha256: Sha256Hash,
    },
    /// A DAP signature (public by nature: the card receives it in the clear).
    Dap {
        /// AID of the security domain whose key made it, in hex (5 to 16 bytes).
        sd_aid_hex: String,
        /// The card it was made for, when it is a per-card DAP.
        card: Option<String>,
        /// The signature in hex (8 to 512 bytes).
        dap_hex: String,
    },
    /// A card acted on (personalised, loaded, locked), by its identity (serial or CPLC-derived name).
    Card {
        /// The card's identity.
        identity: String,
    },
}

/// What a caller supplies for one entry; the ledger adds the sequence number, time, salt and hashes.
///
/// Build one with [`EntryBody::new`] and the builder methods, which read like the ceremony they record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryBody {
    /// What happened.
    pub kind: EntryKind,
    /// The ceremony (or signer run) this belongs to, for example `issuer-master`.
    pub ceremony: String,
    /// The step's name within the ceremony, when the entry is about one step.
    pub step: Option<String>,
    /// Who took part, by role and name.
    pub participants: Vec<Participant>,
    /// True when the prompts were answered by a scripted source (rehearsal, CI) rather than by people.
    pub scripted: bool,
    /// Non-secret input files and their hashes.
    pub inputs: Vec<InputFile>,
    /// What the step produced or acted on.
    pub outputs: Vec<Output>,
    /// Why the run stopped; present exactly for [`EntryKind::Abort`]. Free text: never put key material
    /// in it. Control characters are replaced by spaces when the entry is written.
    pub error: Option<String>,
}

impl EntryBody {
    /// An entry of `kind` for `ceremony`, with no step, participants, inputs or outputs yet.
    pub fn new(kind: EntryKind, ceremony: impl Into<String>) -> EntryBody {
        EntryBody {
            kind,
            ceremony: ceremony.into(),
            step: None,
            participants: Vec::new(),
            scripted: false,
            inputs: Vec::new(),
            outputs: Vec::new(),
            error: None,
        }
    }

    /// An abort entry: the ceremony stopped with `error`.
    pub fn abort(ceremony: impl Into<String>, error: impl Into<String>) -> EntryBody {
        EntryBody {
            error: Some(error.into()),
            ..EntryBody::new(EntryKind::Abort, ceremony)
        }
    }

    /// Names the step this entry records.
    pub fn step(mut self, step: impl Into<String>) -> EntryBody {
        self.step = Some(step.into());
        self
    }

    /// Adds a participant.
    pub fn participant(mut self, role: impl Into<String>, name: impl Into<String>) -> EntryBody {
        self.participants.push(Participant {
            role: role.into(),
            name: name.into(),
        });
        self
    }

    /// Marks whether prompts were answered by a scripted source.
    pub fn scripted(mut self, scripted: bool) -> EntryBody {
        self.scripted = scripted;
        self
    }

    /// Adds an input file.
    pub fn input(mut self, input: InputFile) -> EntryBody {
        self.inputs.push(input);
        self
    }

    /// Adds an output.
    pub fn output(mut self, output: Output) -> EntryBody {
        self.outputs.push(output);
        self
    }
}

/// One verified entry as read back from a ledger file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// 1-based position in the chain; equals the line number in an intact file.
    pub seq: u64,
    /// When it was written, `YYYY-MM-DDTHH:MM:SSZ`.
    pub time: String,
    /// What the caller recorded.
    pub body: EntryBody,
    /// The entry's random salt.
    pub salt: Salt,
    /// The hash of the entry before it ([`EntryHash::GENESIS`] for the first).
    pub prev_hash: EntryHash,
    /// The hash of this entry's canonical encoding.
    pub entry_hash: EntryHash,
}

/// The JSON form of an entry, one per line. Field order here is the order in the file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Wire {
    pub v: u32,
    pub seq: u64,
    pub time: String,
    pub kind: EntryKind,
    pub ceremony: String,
    pub step: Option<String>,
    pub participants: Vec<Participant>,
    pub scripted: bool,
    pub inputs: Vec<InputFile>,
    pub outputs: Vec<Output>,
    pub error: Option<String>,
    pub salt: Salt,
    pub prev_hash: EntryHash,
    pub entry_hash: EntryHash,
}

impl Wire {
    pub(crate) fn from_entry(e: Entry) -> Wire {
        let b = e.body;
        Wire {
            v: super::FORMAT_VERSION,
            seq: e.seq,
            time: e.time,
            kind: b.kind,
            ceremony: b.ceremony,
            step: b.step,
            participants: b.participants,
            scripted: b.scripted,
            inputs: b.inputs,
            outputs: b.outputs,
            error: b.error,
            salt: e.salt,
            prev_hash: e.prev_hash,
            entry_hash: e.entry_hash,
        }
    }

    pub(crate) fn into_entry(self) -> Entry {
        Entry {
            seq: self.seq,
            time: self.time,
            body: EntryBody {
                kind: self.kind,
                ceremony: self.ceremony,
                step: self.step,
                participants: self.participants,
                scripted: self.scripted,
                inputs: self.inputs,
                outputs: self.outputs,
                error: self.error,
            },
            salt: self.salt,
            prev_hash: self.prev_hash,
            entry_hash: self.entry_hash,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_match_serde() {
        for k in [
            EntryKind::CeremonyStart,
            EntryKind::Step,
            EntryKind::CeremonyEnd,
            EntryKind::Abort,
            EntryKind::Signing,
            EntryKind::Delivery,
        ] {
            assert_eq!(
                serde_json::to_string(&k).unwrap(),
                format!("\"{}\"", k.as_str())
            );
        }
        for m in [
            KcvMethod::Des3Zeros,
            KcvMethod::AesOnes,
            KcvMethod::AesZeros,
            KcvMethod::AesCmacZeros,
        ] {
            assert_eq!(
                serde_json::to_string(&m).unwrap(),
                format!("\"{}\"", m.as_str())
            );
        }
    }

    #[test]
    fn hex_is_lower_case_only() {
        let lower = "00".repeat(31) + "ab";
        assert!(lower.parse::<EntryHash>().is_ok());
        assert!(lower.to_uppercase().parse::<EntryHash>().is_err());
        assert!("00".parse::<EntryHash>().is_err());
        assert!("zz".repeat(16).parse::<Salt>().is_err());
        assert!(parse_hex_lower("abc").is_err());
        assert!(parse_hex_lower("é1").is_err());
    }

    #[test]
    fn outputs_refuse_unknown_fields() {
        let ok = r#"{"type":"card","identity":"c1"}"#;
        assert!(serde_json::from_str::<Output>(ok).is_ok());
        let extra = r#"{"type":"card","identity":"c1","key":"00"}"#;
        assert!(serde_json::from_str::<Output>(extra).is_err());
        let unknown = r#"{"type":"secret","value":"00"}"#;
        assert!(serde_json::from_str::<Output>(unknown).is_err());
    }

    #[test]
    fn sha256_of_known_input() {
        assert_eq!(
            Sha256Hash::of(b"abc").to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
