//! The one error type of the remote crate: each variant says what went wrong and what to do about it.

/// What stopped the server, the agent or a campaign command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A command-line or configuration value is wrong; the message names it.
    #[error("{0}")]
    Usage(String),
    /// The configuration file cannot be read or parsed.
    #[error("configuration {path}: {reason}")]
    Config {
        /// The file.
        path: String,
        /// What is wrong, with the line where RON reports one.
        reason: String,
    },
    /// The database failed or holds something this version cannot read.
    #[error("database: {0}")]
    Database(String),
    /// TLS setup or a handshake failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// The HTTP exchange failed (connection, timeout, an answer the protocol does not allow).
    #[error("HTTP: {0}")]
    Http(String),
    /// The peer broke GP Amendment B (wrong X-Admin-Protocol, missing header, wrong media type).
    #[error("protocol: {0}")]
    Protocol(String),
    /// A script is malformed.
    #[error("script: {0}")]
    Script(#[from] gp_core::script::ScriptError),
    /// The card could not be reached or answered something unusable.
    #[error("card: {0}")]
    Card(String),
    /// A campaign operation is not possible (unknown name, wrong state).
    #[error("campaign: {0}")]
    Campaign(String),
    /// The signer library failed (packages, card lists, key derivation, secure channel).
    #[error(transparent)]
    Signer(#[from] signer::Error),
    /// The HSM failed.
    #[error(transparent)]
    Hsm(#[from] keyman::Error),
    /// A file could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// The file or action.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Database(e.to_string())
    }
}

impl From<openssl::error::ErrorStack> for Error {
    fn from(e: openssl::error::ErrorStack) -> Self {
        Error::Tls(e.to_string())
    }
}
