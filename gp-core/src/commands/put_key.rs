//! PUT KEY payloads (GPC 2.3.1 §11.8, Tables 11-67 to 11-75; Amendment D §7.2), basic format.
//!
//! Data field: `new KVN ‖ key data field…`, one key data field per key. A key data field is one or
//! more components (`type ‖ BER length ‖ key component block`) followed by `KCV length ‖ KCV`.
//! Key types are all ≥ `80`, so the byte after a component tells a further component from the KCV
//! length. Encryption of the component blocks is the secure channel's business
//! ([`crate::scp02::put_key_data`], [`crate::scp03::put_key_data`]); this module only frames bytes.

use alloc::vec;
use alloc::vec::Vec;

use super::{read_gp_len, read_lv_ber, write_lv_ber, CommandError, CLA_GP, INS_PUT_KEY};
use crate::apdu::CommandApdu;

/// Key type: DES / 3DES (block encrypted under the DEK, no length prefix).
pub const KEY_TYPE_DES: u8 = 0x80;
/// Key type: AES (block = clear length ‖ AES-CBC ciphertext, Amendment D Table 7-10).
pub const KEY_TYPE_AES: u8 = 0x88;
/// Key type: RSA public exponent e (clear).
pub const KEY_TYPE_RSA_PUBLIC_EXPONENT: u8 = 0xA0;
/// Key type: RSA modulus N (clear).
pub const KEY_TYPE_RSA_MODULUS: u8 = 0xA1;
/// Key type: ECC public key (uncompressed point, clear).
pub const KEY_TYPE_EC_PUBLIC: u8 = 0xB0;
/// Key type: ECC private key (encrypted).
pub const KEY_TYPE_EC_PRIVATE: u8 = 0xB1;
/// Key type: key parameter reference (e.g. `00` for the card's P-256 parameters).
pub const KEY_TYPE_PARAMETER_REFERENCE: u8 = 0xF0;

/// P1 bit: more PUT KEY commands follow.
pub const P1_MORE: u8 = 0x80;
/// P2 bit: the data field holds several keys with consecutive key identifiers.
pub const P2_MULTIPLE_KEYS: u8 = 0x80;

/// One key component: its type and the key component block as sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyComponent {
    /// Key type (`80` DES, `88` AES, `A0`/`A1` RSA public, `B0` EC public, `F0` parameters, …).
    pub key_type: u8,
    /// Key component block: ciphertext for secret components (for AES prefixed by the clear
    /// length), the clear value for public ones.
    pub block: Vec<u8>,
}

impl KeyComponent {
    /// Splits an encrypted key component block per GPC 11.8.2.3.3: when its length is not a
    /// multiple of `cipher_block` (8 for DES, 16 for AES) it starts with the clear length
    /// (Table 11-70), else it is only ciphertext (Table 11-71). `None` when malformed.
    pub fn split_clear_length(&self, cipher_block: usize) -> Option<(Option<usize>, &[u8])> {
        if cipher_block == 0 {
            return None;
        }
        if self.block.len() % cipher_block == 0 {
            return Some((None, &self.block));
        }
        let (len, rest) = read_gp_len(&self.block).ok()?;
        if rest.len() % cipher_block != 0 || len > rest.len() {
            return None;
        }
        Some((Some(len), rest))
    }
}

/// One key data field: components and the key check value (empty for RSA and ECC).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyData {
    /// Components in order.
    pub components: Vec<KeyComponent>,
    /// Key check value (3 bytes for DES and AES, empty when the key type has none).
    pub kcv: Vec<u8>,
}

impl KeyData {
    /// A 3DES key encrypted under the DEK: `80 10 ciphertext 03 KCV`.
    pub fn des3(encrypted: [u8; 16], kcv: [u8; 3]) -> KeyData {
        KeyData {
            components: vec![KeyComponent {
                key_type: KEY_TYPE_DES,
                block: encrypted.to_vec(),
            }],
            kcv: kcv.to_vec(),
        }
    }

    /// An RSA public key: `A1 len N ‖ A0 len e ‖ 00` (Table 11-75).
    pub fn rsa_public(modulus: &[u8], exponent: &[u8]) -> KeyData {
        KeyData {
            components: vec![
                KeyComponent {
                    key_type: KEY_TYPE_RSA_MODULUS,
                    block: modulus.to_vec(),
                },
                KeyComponent {
                    key_type: KEY_TYPE_RSA_PUBLIC_EXPONENT,
                    block: exponent.to_vec(),
                },
            ],
            kcv: Vec::new(),
        }
    }

    /// An ECC public key with a parameter reference: `B0 len point ‖ F0 01 ref ‖ 00` (Table 11-73).
    pub fn ec_public(uncompressed_point: &[u8], parameter_reference: u8) -> KeyData {
        KeyData {
            components: vec![
                KeyComponent {
                    key_type: KEY_TYPE_EC_PUBLIC,
                    block: uncompressed_point.to_vec(),
                },
                KeyComponent {
                    key_type: KEY_TYPE_PARAMETER_REFERENCE,
                    block: vec![parameter_reference],
                },
            ],
            kcv: Vec::new(),
        }
    }

    /// The first component with `key_type`, if any.
    pub fn component(&self, key_type: u8) -> Option<&KeyComponent> {
        self.components.iter().find(|c| c.key_type == key_type)
    }

    /// Appends the encoded key data field to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) -> Result<(), CommandError> {
        if self.components.is_empty() {
            return Err(CommandError::UnexpectedElement);
        }
        for c in &self.components {
            if c.key_type < 0x80 || c.key_type == 0xFF || c.block.is_empty() {
                return Err(CommandError::UnexpectedElement);
            }
            out.push(c.key_type);
            write_lv_ber(out, &c.block)?;
        }
        let kcv_len = u8::try_from(self.kcv.len())
            .ok()
            .filter(|&l| l < 0x80)
            .ok_or(CommandError::BadFieldLength)?;
        out.push(kcv_len);
        out.extend_from_slice(&self.kcv);
        Ok(())
    }

    /// The encoded key data field.
    pub fn to_bytes(&self) -> Result<Vec<u8>, CommandError> {
        let mut out = Vec::new();
        self.write_to(&mut out)?;
        Ok(out)
    }

    /// Parses one key data field from the start of `bytes`; returns it and the rest.
    pub fn parse_one(bytes: &[u8]) -> Result<(KeyData, &[u8]), CommandError> {
        let mut components = Vec::new();
        let mut rest = bytes;
        loop {
            let (&first, after) = rest.split_first().ok_or(CommandError::Truncated)?;
            if first < 0x80 {
                // The KCV length ends the component list.
                if components.is_empty() {
                    return Err(CommandError::UnexpectedElement);
                }
                let (kcv, after_kcv) = after
                    .split_at_checked(usize::from(first))
                    .ok_or(CommandError::Truncated)?;
                return Ok((
                    KeyData {
                        components,
                        kcv: kcv.to_vec(),
                    },
                    after_kcv,
                ));
            }
            if first == 0xFF {
                // Extended format (Table 11-69).
                return Err(CommandError::Unsupported);
            }
            let (block, after_block) = read_lv_ber(after)?;
            if block.is_empty() {
                return Err(CommandError::BadFieldLength);
            }
            components.push(KeyComponent {
                key_type: first,
                block: block.to_vec(),
            });
            rest = after_block;
        }
    }
}

/// A PUT KEY data field: the new key version number and one or more keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutKey {
    /// Key version number of the new keys (`01`–`7F`).
    pub new_kvn: u8,
    /// Key data fields, for key identifiers P2, P2+1, … in order.
    pub keys: Vec<KeyData>,
}

impl PutKey {
    /// Encodes the command data field.
    pub fn to_data(&self) -> Result<Vec<u8>, CommandError> {
        if self.keys.is_empty() {
            return Err(CommandError::UnexpectedElement);
        }
        let mut out = vec![self.new_kvn];
        for k in &self.keys {
            k.write_to(&mut out)?;
        }
        Ok(out)
    }

    /// Parses the command data field.
    pub fn parse(data: &[u8]) -> Result<PutKey, CommandError> {
        let (&new_kvn, mut rest) = data.split_first().ok_or(CommandError::Truncated)?;
        let mut keys = Vec::new();
        while !rest.is_empty() {
            let (k, r) = KeyData::parse_one(rest)?;
            keys.push(k);
            rest = r;
        }
        if keys.is_empty() {
            return Err(CommandError::Truncated);
        }
        Ok(PutKey { new_kvn, keys })
    }

    /// The complete command `80 D8 P1 P2 Lc data 00`: P1 is the KVN to replace (0 to add a new
    /// key set), P2 the key identifier of the first key; P2 b8 is set when several keys follow.
    pub fn to_apdu(&self, old_kvn: u8, first_key_id: u8) -> Result<CommandApdu, CommandError> {
        let p2 = (first_key_id & 0x7F)
            | if self.keys.len() > 1 {
                P2_MULTIPLE_KEYS
            } else {
                0
            };
        Ok(CommandApdu::new(
            CLA_GP,
            INS_PUT_KEY,
            old_kvn & 0x7F,
            p2,
            self.to_data()?,
            Some(256),
        ))
    }
}

/// The PUT KEY response: the new KVN followed by the KCVs of the keys that have one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutKeyResponse {
    /// Key version number echoed by the card.
    pub kvn: u8,
    /// Concatenated key check values.
    pub check_values: Vec<u8>,
}

impl PutKeyResponse {
    /// Parses the response data (at least the KVN byte).
    pub fn parse(data: &[u8]) -> Result<Self, CommandError> {
        let (&kvn, rest) = data.split_first().ok_or(CommandError::Truncated)?;
        Ok(PutKeyResponse {
            kvn,
            check_values: rest.to_vec(),
        })
    }

    /// Encodes the response data.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![self.kvn];
        out.extend_from_slice(&self.check_values);
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::util::h;

    #[test]
    fn des_component_vector_framing() {
        // GP-FACTS "SCP02": component `80 10 EFBE…20AF 03 8BAF47`.
        let kd = KeyData::des3(
            h("EFBEE6C6D99D7B70BDE9D7E927F020AF").try_into().unwrap(),
            [0x8B, 0xAF, 0x47],
        );
        assert_eq!(
            kd.to_bytes().unwrap(),
            h("8010EFBEE6C6D99D7B70BDE9D7E927F020AF038BAF47")
        );
        let encoded = kd.to_bytes().unwrap();
        let (back, rest) = KeyData::parse_one(&encoded).unwrap();
        assert_eq!(back, kd);
        assert!(rest.is_empty());
        assert_eq!(
            back.components[0].split_clear_length(8),
            Some((None, &back.components[0].block[..]))
        );
    }

    #[test]
    fn three_keys_round_trip() {
        let k = KeyData::des3([1; 16], [1, 2, 3]);
        let pk = PutKey {
            new_kvn: 0x21,
            keys: vec![k.clone(), k.clone(), k],
        };
        let apdu = pk.to_apdu(0x20, 0x01).unwrap();
        assert_eq!((apdu.p1, apdu.p2), (0x20, 0x81));
        assert_eq!(apdu.data.len(), 1 + 3 * 22);
        assert_eq!(PutKey::parse(&apdu.data).unwrap(), pk);
    }

    #[test]
    fn public_keys() {
        let rsa = KeyData::rsa_public(&[0xC3; 256], &[0x01, 0x00, 0x01]);
        let bytes = rsa.to_bytes().unwrap();
        assert_eq!(&bytes[..4], &h("A1820100"));
        assert_eq!(&bytes[bytes.len() - 6..], &h("A003010001 00"));
        let pk = PutKey {
            new_kvn: 0x73,
            keys: vec![rsa],
        };
        assert_eq!(PutKey::parse(&pk.to_data().unwrap()).unwrap(), pk);

        let mut point = vec![0x04];
        point.extend_from_slice(&[0x11; 64]);
        let ec = KeyData::ec_public(&point, 0x00);
        let b = ec.to_bytes().unwrap();
        assert_eq!(&b[..3], &h("B04104"));
        assert_eq!(&b[b.len() - 4..], &h("F001 00 00"));
        assert_eq!(KeyData::parse_one(&b).unwrap().0, ec);
    }

    #[test]
    fn aes_clear_length_prefix() {
        let c = KeyComponent {
            key_type: KEY_TYPE_AES,
            block: [&[0x18][..], &[0u8; 32][..]].concat(),
        };
        assert_eq!(c.split_clear_length(16).unwrap().0, Some(24));
        let bad = KeyComponent {
            key_type: KEY_TYPE_AES,
            block: [&[0x30][..], &[0u8; 32][..]].concat(),
        };
        assert_eq!(bad.split_clear_length(16), None);
    }

    #[test]
    fn rejects() {
        assert_eq!(PutKey::parse(&h("01")), Err(CommandError::Truncated));
        assert_eq!(
            PutKey::parse(&h("01 03 010203")),
            Err(CommandError::UnexpectedElement)
        );
        assert_eq!(
            PutKey::parse(&h("01 8010 00")),
            Err(CommandError::Truncated)
        );
        assert_eq!(
            PutKey::parse(&h("01 FF80 10")),
            Err(CommandError::Unsupported)
        );
        assert_eq!(
            PutKey::parse(&h("01 8000 00")),
            Err(CommandError::BadFieldLength)
        );
        let r = PutKeyResponse::parse(&h("218BAF47")).unwrap();
        assert_eq!((r.kvn, r.to_bytes()), (0x21, h("218BAF47")));
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(pk) = PutKey::parse(&bytes) {
                let again = PutKey::parse(&pk.to_data().unwrap()).unwrap();
                prop_assert_eq!(again, pk);
            }
        }
    }
}
