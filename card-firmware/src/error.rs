//! The crate's one error type.
//!
//! A command that is refused carries the exact GP/ISO status word the card answers with, so the
//! dispatcher never has to guess one; storage and image problems are kept apart because they mean
//! "the card lost power or its memory is damaged", not "the terminal sent something wrong".

use core::fmt;

use crate::Sw;

/// Everything that can go wrong inside the card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The command is refused; the card answers this status word and changes nothing.
    Refused(Sw),
    /// Power was lost during a write (the fault-injecting storage, or a real tear).
    PowerLost,
    /// The persistent state does not fit in the storage.
    StorageFull,
    /// The storage reported an I/O failure other than power loss.
    StorageIo,
    /// Stored bytes do not decode: the image is damaged or not a card image.
    Corrupt(&'static str),
}

impl Error {
    /// The status word the card answers when this error ends a command.
    pub fn sw(&self) -> Sw {
        match self {
            Error::Refused(sw) => *sw,
            Error::StorageFull => Sw::NOT_ENOUGH_MEMORY,
            // '6581' memory failure: the command may or may not have been committed.
            Error::PowerLost | Error::StorageIo | Error::Corrupt(_) => Sw(0x6581),
        }
    }
}

impl From<Sw> for Error {
    fn from(sw: Sw) -> Self {
        Error::Refused(sw)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Refused(sw) => write!(f, "command refused with status {sw}"),
            Error::PowerLost => f.write_str("power lost during a write"),
            Error::StorageFull => f.write_str("card state does not fit in storage"),
            Error::StorageIo => f.write_str("storage I/O failure"),
            Error::Corrupt(what) => write!(f, "corrupt card image: {what}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}

/// Shorthand used throughout the crate.
pub type Result<T> = core::result::Result<T, Error>;

/// Refuse the current command with `sw`.
pub(crate) fn refuse<T>(sw: Sw) -> Result<T> {
    Err(Error::Refused(sw))
}
