//! The one error type of `keyman`: each variant says what went wrong in words an operator can act on.

use std::path::PathBuf;

/// Everything that can stop a keyman operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The PKCS#11 library could not be loaded or initialised.
    #[error("cannot use PKCS#11 module {path}: {reason}")]
    Module {
        /// The module path that was tried.
        path: PathBuf,
        /// What the loader or the module said.
        reason: String,
    },
    /// A token URI or label is malformed.
    #[error("bad token name '{uri}': {reason}")]
    BadUri {
        /// The text given.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No token matches the name given.
    #[error("no token matches {wanted} (tokens present: {present})")]
    MissingToken {
        /// The URI that was looked for.
        wanted: String,
        /// Labels of the tokens that are present.
        present: String,
    },
    /// More than one token matches the name given.
    #[error("{wanted} matches {count} tokens; add serial= to the URI")]
    AmbiguousToken {
        /// The URI that was looked for.
        wanted: String,
        /// How many tokens matched.
        count: usize,
    },
    /// The token refused the PIN.
    #[error("wrong PIN for token '{token}'{}", tries_hint(*.final_try, *.count_low))]
    WrongPin {
        /// Token label.
        token: String,
        /// The token says only one more try is left.
        final_try: bool,
        /// The token says a wrong PIN has been entered since the last right one (tries are running out).
        count_low: bool,
    },
    /// The token's user PIN is locked.
    #[error("the user PIN of token '{token}' is locked; the security officer must reset it")]
    PinLocked {
        /// Token label.
        token: String,
    },
    /// A `--pin-source` value is not one of the accepted forms. The value itself is not repeated: it may
    /// be a PIN typed where a source was expected.
    #[error("bad PIN source: {0}")]
    BadPinSource(String),
    /// The PIN could not be read from its source.
    #[error("cannot read the PIN: {0}")]
    PinUnavailable(String),
    /// No key, or more than one, carries a label.
    #[error("token '{token}': {problem}")]
    Key {
        /// Token label.
        token: String,
        /// What is wrong (missing, duplicate, wrong type, wrong attributes).
        problem: String,
    },
    /// The token cannot do something the operation needs.
    #[error("the token cannot do this: {0}")]
    Unsupported(String),
    /// A PKCS#11 call failed.
    #[error("token error: {0}")]
    Token(String),
    /// A ceremony script is malformed or inconsistent.
    #[error("{0}")]
    Script(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An output file already exists; outputs are never overwritten.
    #[error("{0} already exists; outputs are never overwritten")]
    OutputExists(PathBuf),
    /// A key component was typed wrongly or does not match its check value.
    #[error("{0}")]
    Component(String),
    /// PIN shares could not rebuild a PIN, or a quorum is not met.
    #[error("{0}")]
    Quorum(String),
    /// A scripted answer source is unusable or lacks an answer.
    #[error("{0}")]
    Answers(String),
    /// A person declined to go on (a KCV that does not match a paper form, a refused confirmation).
    #[error("{0}")]
    Declined(String),
    /// A ceremony stopped after it had begun; what was made in this run was removed again.
    #[error("{error}{}", rollback_note(.rolled_back))]
    Aborted {
        /// Why it stopped.
        error: Box<Error>,
        /// Labels of the keys this run had made and destroyed again.
        rolled_back: Vec<String>,
    },
    /// The ceremony ledger refused an operation.
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
}

fn tries_hint(final_try: bool, count_low: bool) -> &'static str {
    if final_try {
        " (the token says one try is left before the PIN locks)"
    } else if count_low {
        " (the token says tries are running out; it does not say how many are left)"
    } else {
        " (the token does not say how many tries are left)"
    }
}

fn rollback_note(rolled_back: &[String]) -> String {
    if rolled_back.is_empty() {
        "; nothing was created on any token".into()
    } else {
        format!(
            "; the keys this run had made were destroyed again ({}), so nothing it created remains",
            rolled_back.join(", ")
        )
    }
}

impl From<cryptoki::error::Error> for Error {
    fn from(e: cryptoki::error::Error) -> Self {
        Error::Token(e.to_string())
    }
}
