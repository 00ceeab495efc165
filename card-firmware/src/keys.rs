//! A security domain's keys, as the card stores them.
//!
//! Key values live only here and in the journal; nothing in this module returns them to a
//! command. Other modules ask for a key by (KVN, key id) and receive a reference they use for
//! cryptography on the card; `Debug` shows key version, id, type and length only. Values are
//! zeroized when dropped.

use alloc::vec::Vec;
use core::fmt;

use zeroize::Zeroizing;

use crate::codec::{decode_list, encode_list, Persist, Reader, Writer};
use crate::error::{Error, Result};

/// Key types the card stores (GP 2.3.1 §11.1.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// `80`: two-key 3DES (16 bytes).
    Des3,
    /// `88`: AES-128/192/256.
    Aes,
}

impl KeyType {
    /// GP key type byte.
    pub fn code(self) -> u8 {
        match self {
            KeyType::Des3 => 0x80,
            KeyType::Aes => 0x88,
        }
    }
    /// Parse a GP key type byte this card supports.
    pub fn from_code(code: u8) -> Option<KeyType> {
        match code {
            0x80 => Some(KeyType::Des3),
            0x88 => Some(KeyType::Aes),
            _ => None,
        }
    }
    /// Whether `len` is a valid key length for this type.
    pub fn valid_len(self, len: usize) -> bool {
        match self {
            KeyType::Des3 => len == 16,
            KeyType::Aes => matches!(len, 16 | 24 | 32),
        }
    }
}

/// One secret key.
#[derive(Clone)]
pub struct Key {
    /// Key identifier within its key set (1 ENC, 2 MAC, 3 DEK for a secure channel set).
    pub id: u8,
    /// Algorithm.
    pub key_type: KeyType,
    value: Zeroizing<Vec<u8>>,
}

impl Key {
    /// A key from its clear value; `None` if the length does not suit the type.
    pub fn new(id: u8, key_type: KeyType, value: &[u8]) -> Option<Key> {
        key_type.valid_len(value.len()).then(|| Key {
            id,
            key_type,
            value: Zeroizing::new(value.to_vec()),
        })
    }
    /// The clear value, for on-card cryptography only.
    pub(crate) fn value(&self) -> &[u8] {
        &self.value
    }
    /// Key length in bytes (public information, reported in key information templates).
    pub fn len(&self) -> usize {
        self.value.len()
    }
    /// The key check value and its method (public information: GET DATA, `card-sim info`):
    /// AES per GPC B.6 over 01×16, 3DES over 00×8.
    pub fn kcv(&self) -> ([u8; 3], gp_core::kcv::KcvMethod) {
        use gp_core::kcv::{kcv_aes, kcv_des3, KcvMethod};
        use gp_core::keys::{AesKey, Des3Key};
        match self.key_type {
            KeyType::Aes => (
                AesKey::from_slice(&self.value)
                    .map(|k| kcv_aes(&k))
                    .unwrap_or_default(),
                KcvMethod::AesOnes,
            ),
            KeyType::Des3 => (
                Des3Key::from_slice(&self.value)
                    .map(|k| kcv_des3(&k))
                    .unwrap_or_default(),
                KcvMethod::Des3Zeros,
            ),
        }
    }
    /// Always false: a stored key has a value.
    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && self.key_type == other.key_type
            && bool::from(subtle::ConstantTimeEq::ct_eq(
                &self.value[..],
                &other.value[..],
            ))
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Key {{ id: {}, type: {:?}, len: {} }}",
            self.id,
            self.key_type,
            self.len()
        )
    }
}

impl Persist for Key {
    fn encode(&self, w: &mut Writer) {
        w.u8(self.id);
        w.u8(self.key_type.code());
        w.bytes(&self.value);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let id = r.u8()?;
        let key_type = KeyType::from_code(r.u8()?).ok_or(Error::Corrupt("bad key type"))?;
        let value = r.bytes()?;
        Key::new(id, key_type, value).ok_or(Error::Corrupt("bad key length"))
    }
}

/// Keys sharing a key version number, with the SCP03 sequence counter that belongs to the set.
#[derive(Debug, Clone, PartialEq)]
pub struct KeySet {
    /// Key version number `01`..`7F`.
    pub kvn: u8,
    /// Keys by identifier.
    pub keys: Vec<Key>,
    /// Sequence counter (3 bytes for SCP03, 2 for SCP02); reset when the set is replaced.
    pub sequence_counter: u32,
}

impl KeySet {
    /// The key with identifier `id`.
    pub fn key(&self, id: u8) -> Option<&Key> {
        self.keys.iter().find(|k| k.id == id)
    }
}

impl Persist for KeySet {
    fn encode(&self, w: &mut Writer) {
        w.u8(self.kvn);
        w.u32(self.sequence_counter);
        encode_list(w, &self.keys);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        Ok(KeySet {
            kvn: r.u8()?,
            sequence_counter: r.u32()?,
            keys: decode_list(r)?,
        })
    }
}

/// Secure channel protocol a domain runs, with its `i` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScpConfig {
    /// `02` or `03`.
    pub scp: u8,
    /// The `i` parameter (`70` for SCP03 pseudo-random challenges, `55`/`15` for SCP02).
    pub i: u8,
}

impl Persist for ScpConfig {
    fn encode(&self, w: &mut Writer) {
        w.u8(self.scp);
        w.u8(self.i);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let scp = r.u8()?;
        let i = r.u8()?;
        if scp != 0x02 && scp != 0x03 {
            return Err(Error::Corrupt("bad SCP identifier"));
        }
        Ok(ScpConfig { scp, i })
    }
}

/// What a security domain keeps beyond its registry entry: keys and secure channel settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainKeys {
    /// Secure channel protocol and `i`.
    pub scp: ScpConfig,
    /// Key sets, in creation order; the first is used when INITIALIZE UPDATE names KVN `00`.
    pub sets: Vec<KeySet>,
    /// Consecutive failed authentications (written before a cryptogram is checked).
    pub failed_auth: u8,
    /// Failed authentications after which INITIALIZE UPDATE answers `6983`.
    pub auth_limit: u8,
}

impl DomainKeys {
    /// Default for [`DomainKeys::auth_limit`].
    pub const DEFAULT_AUTH_LIMIT: u8 = 10;

    /// The key set with `kvn`, or the default (first) one for `00`.
    pub fn set(&self, kvn: u8) -> Option<&KeySet> {
        if kvn == 0 {
            self.sets.first()
        } else {
            self.sets.iter().find(|s| s.kvn == kvn)
        }
    }
    /// Mutable access to the key set with `kvn` (or the first for `00`).
    pub fn set_mut(&mut self, kvn: u8) -> Option<&mut KeySet> {
        if kvn == 0 {
            self.sets.first_mut()
        } else {
            self.sets.iter_mut().find(|s| s.kvn == kvn)
        }
    }
}

impl Persist for DomainKeys {
    fn encode(&self, w: &mut Writer) {
        self.scp.encode(w);
        w.u8(self.failed_auth);
        w.u8(self.auth_limit);
        encode_list(w, &self.sets);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        Ok(DomainKeys {
            scp: ScpConfig::decode(r)?,
            failed_auth: r.u8()?,
            auth_limit: r.u8()?,
            sets: decode_list(r)?,
        })
    }
}
