//! Application identifiers (ISO/IEC 7816-5): 5 to 16 bytes.
//!
//! A fixed-size, `Copy` value so registry lookups need no allocation and an AID of the wrong
//! length cannot exist past the edge where bytes are parsed.

use core::fmt;

use crate::codec::{Persist, Reader, Writer};
use crate::error::{Error, Result};

/// A parsed AID of 5..=16 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Aid {
    len: u8,
    bytes: [u8; 16],
}

/// The GP 2.3.1 ISD AID, `A000000151000000`.
pub const ISD_AID: Aid = Aid {
    len: 8,
    bytes: [
        0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0,
    ],
};

impl Aid {
    /// Parse an AID; `None` unless 5 to 16 bytes long.
    pub fn new(bytes: &[u8]) -> Option<Aid> {
        if !(5..=16).contains(&bytes.len()) {
            return None;
        }
        let mut out = [0u8; 16];
        for (o, b) in out.iter_mut().zip(bytes) {
            *o = *b;
        }
        Some(Aid {
            len: u8::try_from(bytes.len()).ok()?,
            bytes: out,
        })
    }

    /// The AID bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// Whether `self` starts with `prefix` (partial SELECT by name).
    pub fn starts_with(&self, prefix: &[u8]) -> bool {
        self.as_bytes().starts_with(prefix)
    }
}

impl fmt::Debug for Aid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Aid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.as_bytes() {
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl Persist for Aid {
    fn encode(&self, w: &mut Writer) {
        w.u8(self.len);
        w.raw(self.as_bytes());
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let len = r.u8()?;
        Aid::new(r.take(usize::from(len))?).ok_or(Error::Corrupt("bad AID length"))
    }
}
