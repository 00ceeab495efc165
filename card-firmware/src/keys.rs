//! A security domain's keys, as the card stores them.
//!
//! Key values live only here and in the journal; nothing in this module returns them to a
//! command. Other modules ask for a key by (KVN, key id) and receive a reference they use for
//! cryptography on the card; `Debug` shows key version, id, type and length only. Values are
//! zeroized when dropped.

use alloc::vec::Vec;
use core::fmt;

use zeroize::Zeroizing;

use gp_core::keys::{AesKey, Des3Key};
use gp_core::{scp02, scp03};

use crate::codec::{decode_list, encode_list, Persist, Reader, Writer};
use crate::error::{Error, Result};
use crate::Sw;

/// Key types the card stores (GP 2.3.1 §11.1.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// `80`: two-key 3DES (16 bytes).
    Des3,
    /// `88`: AES-128/192/256.
    Aes,
    /// `A1`/`A0`: RSA public key (DAP verification); stored as `len(2) ‖ modulus ‖ exponent`.
    RsaPublic,
    /// `B0` with parameter reference `00`: ECC P-256 public key (DAP verification); stored as
    /// the 65-byte uncompressed point.
    EcP256Public,
}

/// Largest RSA modulus stored, in bytes (4096 bits).
const MAX_RSA_MODULUS: usize = 512;

impl KeyType {
    /// GP key type byte (for RSA the modulus component's).
    pub fn code(self) -> u8 {
        match self {
            KeyType::Des3 => 0x80,
            KeyType::Aes => 0x88,
            KeyType::RsaPublic => 0xA1,
            KeyType::EcP256Public => 0xB0,
        }
    }
    /// Parse a key type byte as [`KeyType::code`] writes it.
    pub fn from_code(code: u8) -> Option<KeyType> {
        match code {
            0x80 => Some(KeyType::Des3),
            0x88 => Some(KeyType::Aes),
            0xA1 => Some(KeyType::RsaPublic),
            0xB0 => Some(KeyType::EcP256Public),
            _ => None,
        }
    }
    /// Whether `value` is a well-formed stored value for this type.
    pub fn valid_value(self, value: &[u8]) -> bool {
        match self {
            KeyType::Des3 => value.len() == 16,
            KeyType::Aes => matches!(value.len(), 16 | 24 | 32),
            KeyType::RsaPublic => split_rsa(value).is_some(),
            KeyType::EcP256Public => value.len() == 65 && value.first() == Some(&0x04),
        }
    }
    /// Whether the key is secret (symmetric): secret keys arrive encrypted and have a KCV.
    pub fn is_secret(self) -> bool {
        matches!(self, KeyType::Des3 | KeyType::Aes)
    }
}

/// `len(2) ‖ modulus ‖ exponent` → (modulus, exponent), checking sizes.
fn split_rsa(value: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = value.split_at_checked(2)?;
    let n = usize::from(u16::from_be_bytes(<[u8; 2]>::try_from(len).ok()?));
    let (modulus, exponent) = rest.split_at_checked(n)?;
    let ok = (64..=MAX_RSA_MODULUS).contains(&n) && (1..=8).contains(&exponent.len());
    ok.then_some((modulus, exponent))
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
    /// A key from its clear value; `None` if the value does not suit the type.
    pub fn new(id: u8, key_type: KeyType, value: &[u8]) -> Option<Key> {
        key_type.valid_value(value).then(|| Key {
            id,
            key_type,
            value: Zeroizing::new(value.to_vec()),
        })
    }
    /// An RSA public key from its modulus and exponent.
    pub fn rsa_public(id: u8, modulus: &[u8], exponent: &[u8]) -> Option<Key> {
        let len = u16::try_from(modulus.len()).ok()?;
        let mut value = Vec::with_capacity(2 + modulus.len() + exponent.len());
        value.extend_from_slice(&len.to_be_bytes());
        value.extend_from_slice(modulus);
        value.extend_from_slice(exponent);
        Key::new(id, KeyType::RsaPublic, &value)
    }
    /// The clear value, for on-card cryptography only.
    pub(crate) fn value(&self) -> &[u8] {
        &self.value
    }
    /// Modulus and exponent of an RSA public key.
    pub(crate) fn rsa_parts(&self) -> Option<(&[u8], &[u8])> {
        (self.key_type == KeyType::RsaPublic)
            .then(|| split_rsa(&self.value))
            .flatten()
    }
    /// The key information data of GET DATA `E0` (GP Table 11-28, basic format): key type and
    /// length pairs per component.
    pub fn info_components(&self) -> Vec<u8> {
        let short = |n: usize| u8::try_from(n).unwrap_or(0);
        match (self.key_type, self.rsa_parts()) {
            (KeyType::RsaPublic, Some((n, e))) => {
                alloc::vec![0xA1, short(n.len()), 0xA0, short(e.len())]
            }
            // P-256 public point without the 04 prefix, and parameter reference 00.
            (KeyType::EcP256Public, _) => alloc::vec![0xB0, 0x40, 0xF0, 0x00],
            (t, _) => alloc::vec![t.code(), short(self.len())],
        }
    }
    /// Key length in bytes (public information, reported in key information templates).
    pub fn len(&self) -> usize {
        self.value.len()
    }
    /// The key check value and its method (public information: GET DATA, `card-sim info`):
    /// AES per GPC B.6 over 01×16, 3DES over 00×8.
    /// Public keys have none.
    pub fn kcv(&self) -> Option<([u8; 3], gp_core::kcv::KcvMethod)> {
        use gp_core::kcv::{kcv_aes, kcv_des3, KcvMethod};
        use gp_core::keys::{AesKey, Des3Key};
        match self.key_type {
            KeyType::Aes => Some((
                AesKey::from_slice(&self.value)
                    .map(|k| kcv_aes(&k))
                    .unwrap_or_default(),
                KcvMethod::AesOnes,
            )),
            KeyType::Des3 => Some((
                Des3Key::from_slice(&self.value)
                    .map(|k| kcv_des3(&k))
                    .unwrap_or_default(),
                KcvMethod::Des3Zeros,
            )),
            KeyType::RsaPublic | KeyType::EcP256Public => None,
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

/// Key version numbers of the key sets a security domain keeps for its applications (card
/// convention). Only keys here can be given to an application ([`KeyHandle`]); they never open a
/// secure channel, and the channel, token, receipt, DAP and load file keys live outside the
/// range, so no application can reach them.
pub const APP_KVNS: core::ops::RangeInclusive<u8> = 0x40..=0x4F;

/// A key a security domain gave one of its applications, by key version number (in
/// [`APP_KVNS`]) and key identifier. Applications name keys only this way and never see key
/// bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyHandle {
    /// Key version number.
    pub kvn: u8,
    /// Key identifier.
    pub id: u8,
}

impl Persist for KeyHandle {
    fn encode(&self, w: &mut Writer) {
        w.u8(self.kvn);
        w.u8(self.id);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        Ok(KeyHandle {
            kvn: r.u8()?,
            id: r.u8()?,
        })
    }
}

/// Key version number of a security domain's DAP verification key (GP-FACTS: `73`), key id 1.
pub const DAP_KVN: u8 = 0x73;
/// Key version number of a security domain's load file decryption key, key id 1. GP 2.3.1
/// C.1.3 only asks for "an unambiguously identified" key; this card names it KVN `74`.
pub const LFDB_KVN: u8 = 0x74;

/// Secure channel protocol a domain runs, with its `i` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScpConfig {
    /// `02` or `03`.
    pub scp: u8,
    /// The `i` parameter (`70` for SCP03 pseudo-random challenges, `55`/`15` for SCP02).
    pub i: u8,
}

impl ScpConfig {
    /// Whether the card implements this protocol and `i`: SCP03 with `i` made of the
    /// pseudo-random (`10`), R-MAC (`20`) and R-ENC (`40`, only with R-MAC) bits; SCP02 with
    /// `i` = `15` or `55`.
    pub fn supported(self) -> bool {
        match self.scp {
            0x03 => self.i & !0x70 == 0 && (self.i & 0x40 == 0 || self.i & 0x20 != 0),
            0x02 => matches!(self.i, 0x15 | 0x55),
            _ => false,
        }
    }

    /// Key version number of the transport key set a new domain of this protocol starts with.
    pub fn transport_kvn(self) -> u8 {
        if self.scp == 0x02 {
            0x20
        } else {
            0x30
        }
    }

    /// Key type of this protocol's secure channel keys.
    pub fn key_type(self) -> KeyType {
        if self.scp == 0x02 {
            KeyType::Des3
        } else {
            KeyType::Aes
        }
    }
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
    /// Key sets, in creation order; the first outside [`APP_KVNS`] is used when INITIALIZE
    /// UPDATE names KVN `00`.
    pub sets: Vec<KeySet>,
    /// Consecutive failed authentications (written before a cryptogram is checked).
    pub failed_auth: u8,
    /// Failed authentications after which INITIALIZE UPDATE answers `6983`.
    pub auth_limit: u8,
}

impl DomainKeys {
    /// Default for [`DomainKeys::auth_limit`].
    pub const DEFAULT_AUTH_LIMIT: u8 = 10;

    /// The key set with `kvn`, or the default one for `00` (the first that is not kept for
    /// applications).
    pub fn set(&self, kvn: u8) -> Option<&KeySet> {
        if kvn == 0 {
            self.sets.iter().find(|s| !APP_KVNS.contains(&s.kvn))
        } else {
            self.sets.iter().find(|s| s.kvn == kvn)
        }
    }
    /// Mutable access to the key set with `kvn` (or the default one for `00`).
    pub fn set_mut(&mut self, kvn: u8) -> Option<&mut KeySet> {
        if kvn == 0 {
            self.sets.iter_mut().find(|s| !APP_KVNS.contains(&s.kvn))
        } else {
            self.sets.iter_mut().find(|s| s.kvn == kvn)
        }
    }
}

impl DomainKeys {
    /// The application key `handle` names: a secret key in a key set of [`APP_KVNS`].
    pub(crate) fn app_key(&self, handle: KeyHandle) -> Option<&Key> {
        if !APP_KVNS.contains(&handle.kvn) {
            return None;
        }
        self.sets
            .iter()
            .find(|s| s.kvn == handle.kvn)
            .and_then(|s| s.key(handle.id))
            .filter(|k| k.key_type.is_secret())
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

/// The key that protects key data (and other sensitive data) in a secure channel session.
pub(crate) enum Dek {
    /// SCP03: the static Key-DEK of the authenticating key set.
    Aes(AesKey),
    /// SCP02: the session S-DEK.
    Des(Des3Key),
}

impl Dek {
    /// The SCP03 static DEK `key`.
    pub(crate) fn aes(key: &Key) -> Result<Dek> {
        AesKey::from_slice(key.value())
            .map(Dek::Aes)
            .map_err(|_| Error::Refused(Sw::REFERENCED_DATA_NOT_FOUND))
    }

    /// The cipher's block size: padding and clear-length rules depend on it.
    pub(crate) fn block(&self) -> usize {
        match self {
            Dek::Aes(_) => 16,
            Dek::Des(_) => 8,
        }
    }

    /// Decrypt whole blocks (no padding is removed).
    pub(crate) fn decrypt(&self, data: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let bad = Error::Refused(Sw::INCORRECT_DATA);
        match self {
            Dek::Aes(k) => scp03::decrypt_key_data(k, data).map_err(|_| bad),
            Dek::Des(k) => scp02::decrypt_key_data(k, data).map_err(|_| bad),
        }
    }
}
