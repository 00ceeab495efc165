//! Secret key containers for AES and two-key triple DES.
//!
//! Keys live in fixed-size arrays so their size is known at the type level, are wiped when dropped
//! and never print their bytes: `Debug` shows the algorithm and length only, which is all a log or
//! a panic message should ever reveal about a key.

use core::fmt;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::sw::Sw;

/// Why bytes cannot become a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The slice has a length the algorithm does not accept; the length is given.
    WrongLength(usize),
}

impl KeyError {
    /// The status word a card answers with when a command carries such a key: `6A80`.
    pub fn sw(&self) -> Sw {
        Sw::INCORRECT_DATA
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::WrongLength(n) => write!(f, "key of {n} bytes has the wrong length"),
        }
    }
}

/// An AES key of 128, 192 or 256 bits (SCP03 static and session keys, AES DAP keys).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub enum AesKey {
    /// AES-128.
    Aes128([u8; 16]),
    /// AES-192.
    Aes192([u8; 24]),
    /// AES-256.
    Aes256([u8; 32]),
}

impl AesKey {
    /// Copies a 16-, 24- or 32-byte slice into a key.
    pub fn from_slice(bytes: &[u8]) -> Result<AesKey, KeyError> {
        if let Ok(k) = <[u8; 16]>::try_from(bytes) {
            Ok(AesKey::Aes128(k))
        } else if let Ok(k) = <[u8; 24]>::try_from(bytes) {
            Ok(AesKey::Aes192(k))
        } else if let Ok(k) = <[u8; 32]>::try_from(bytes) {
            Ok(AesKey::Aes256(k))
        } else {
            Err(KeyError::WrongLength(bytes.len()))
        }
    }

    /// The key bytes. Handle with care: copies are not wiped automatically.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            AesKey::Aes128(k) => k,
            AesKey::Aes192(k) => k,
            AesKey::Aes256(k) => k,
        }
    }

    /// Key length in bytes: 16, 24 or 32.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }
}

/// Constant-time comparison, so equality checks on keys (e.g. "is this still the transport key?")
/// leak nothing through timing.
impl PartialEq for AesKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes().ct_eq(other.as_bytes()).into()
    }
}

impl Eq for AesKey {}

impl fmt::Debug for AesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AesKey(AES-{}, <secret>)", self.len() * 8)
    }
}

/// A two-key triple DES key (K1 ‖ K2, 16 bytes) as SCP02 and the DES DAP use.
///
/// DES parity bits are carried as given and ignored by the cipher, so derived keys compare equal to
/// the values other tools print.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Des3Key([u8; 16]);

impl Des3Key {
    /// Wraps 16 key bytes.
    pub fn new(bytes: [u8; 16]) -> Self {
        Des3Key(bytes)
    }

    /// Copies a 16-byte slice into a key.
    pub fn from_slice(bytes: &[u8]) -> Result<Des3Key, KeyError> {
        <[u8; 16]>::try_from(bytes)
            .map(Des3Key)
            .map_err(|_| KeyError::WrongLength(bytes.len()))
    }

    /// The key bytes. Handle with care: copies are not wiped automatically.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The first half K1, which SCP02 uses alone for single-DES steps (retail MAC, ICV encryption).
    pub(crate) fn k1(&self) -> Zeroizing<[u8; 8]> {
        let mut k = Zeroizing::new([0u8; 8]);
        for (d, s) in k.iter_mut().zip(self.0.iter()) {
            *d = *s;
        }
        k
    }

    /// Key length in bytes: always 16.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        16
    }
}

/// Constant-time comparison, like [`AesKey`]'s.
impl PartialEq for Des3Key {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for Des3Key {}

impl fmt::Debug for Des3Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Des3Key(2-key 3DES, <secret>)")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn aes_lengths() {
        assert_eq!(AesKey::from_slice(&[1; 16]).unwrap().len(), 16);
        assert_eq!(AesKey::from_slice(&[1; 24]).unwrap().len(), 24);
        assert_eq!(AesKey::from_slice(&[1; 32]).unwrap().len(), 32);
        assert_eq!(AesKey::from_slice(&[1; 17]), Err(KeyError::WrongLength(17)));
        assert_eq!(
            Des3Key::from_slice(&[1; 24]),
            Err(KeyError::WrongLength(24))
        );
    }

    #[test]
    fn debug_never_prints_key_bytes() {
        let k = AesKey::from_slice(&[0x5A; 16]).unwrap();
        let s = format!("{k:?}");
        assert_eq!(s, "AesKey(AES-128, <secret>)");
        let d = Des3Key::new([0x5A; 16]);
        assert!(!format!("{d:?}").contains("5A") && !format!("{d:?}").contains("90"));
    }

    #[test]
    fn zeroize_wipes() {
        let mut k = AesKey::from_slice(&[0x77; 32]).unwrap();
        k.zeroize();
        assert_eq!(k.as_bytes(), &[0u8; 32]);
        let mut d = Des3Key::new([0x77; 16]);
        d.zeroize();
        assert_eq!(d.as_bytes(), &[0u8; 16]);
    }
}
