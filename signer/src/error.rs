//! The one error type of `signer`, with variants an operator can act on.

/// Everything that can stop a signer operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line asks for something impossible.
    #[error("{0}")]
    Usage(String),
    /// The token or a key in it (from keyman's HSM layer).
    #[error(transparent)]
    Hsm(#[from] keyman::Error),
    /// The card answered, but not as GlobalPlatform requires, or the transport failed.
    #[error("card: {0}")]
    Card(String),
    /// The card refused a command with a status word.
    #[error("card refused {command}: status {sw:04X} ({meaning})")]
    Refused {
        /// Which command.
        command: String,
        /// The status word.
        sw: u16,
        /// What the status word means.
        meaning: &'static str,
    },
    /// A whole key set would replace the card's current one with ENC and MAC keys of the same check
    /// values: the same channel keys under a new key version. GlobalPlatform restarts a key set's sequence
    /// counter when the set is replaced, so with pseudo-random card challenges (SCP03 i=70, SCP02 i=55)
    /// the card would issue the same challenges again and sessions recorded under the old set would
    /// replay. Put keys derived from another master (or scheme), or pass `--allow-same-channel-keys` when
    /// this is intended.
    #[error(
        "{what}: the new key set's ENC and MAC are the keys the card uses now ({same}); nothing was put. Keeping the channel keys across a key-set \
         replacement opens a replay window: the card restarts its sequence counter, so with pseudo-random \
         challenges it issues the same card challenges again and recorded sessions replay. Put keys from \
         another master, or pass --allow-same-channel-keys if this is intended"
    )]
    SameChannelKeys {
        /// What was being replaced (card, security domain, key versions).
        what: String,
        /// What shows they are the same: the shared ENC and MAC KCVs, or the shared master and scheme.
        same: String,
    },
    /// The card failed to prove it holds the expected keys.
    #[error("card authentication failed: {0}")]
    Authentication(String),
    /// A load file or package is malformed or does not match its manifest.
    #[error("package {field}: {problem}")]
    Package {
        /// The field or part that is wrong.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A CAP file is malformed or hostile.
    #[error(transparent)]
    Cap(#[from] crate::cap::CapError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A card list line is malformed.
    #[error("{} line {line}, {field}: {problem}", path.display())]
    CardList {
        /// The card list file.
        path: std::path::PathBuf,
        /// 1-based line number.
        line: u64,
        /// The field that is wrong (`identity`, `kdd`, `line`).
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The ledger could not be opened or appended to.
    #[error("ledger: {0}")]
    Ledger(#[from] keyman::ledger::LedgerError),
    /// A DAP or a ciphered LFDB did not verify.
    #[error("{0}")]
    Verification(String),
    /// An output already exists; outputs are never overwritten.
    #[error("{0} already exists; outputs are never overwritten")]
    OutputExists(std::path::PathBuf),
}

/// The meaning of common status words, for error lines people can act on.
pub fn sw_meaning(sw: u16) -> &'static str {
    match sw {
        0x6700 => "wrong length",
        0x6881 => "logical channel not supported",
        0x6982 => "security status not satisfied",
        0x6983 => "authentication method blocked",
        0x6985 => "conditions of use not satisfied",
        0x6A80 => "incorrect data",
        0x6A81 => "function not supported",
        0x6A82 => "application or file not found",
        0x6A84 => "not enough memory",
        0x6A86 => "incorrect P1 P2",
        0x6A88 => "referenced data not found",
        0x6D00 => "instruction not supported",
        0x6E00 => "class not supported",
        0x6300 => "verification failed",
        _ => "see GlobalPlatform Card Specification",
    }
}
