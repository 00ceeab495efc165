//! Secret key material on the host: key components typed by custodians, the key they combine into, and
//! the check values people compare with their paper forms.
//!
//! Why a module of its own: forming a key from components (and exporting one as components) is the one
//! place where clear key bytes pass through the host, because PKCS#11 tokens such as SoftHSM2 have no XOR
//! derivation. Everything here keeps those bytes in [`KeyValue`], which is wiped when dropped, has no
//! `Debug` that shows them, and is never written to a log, an error or the ledger: errors say which
//! component is wrong and how, never what it contains.

use crate::error::Error;
use crate::hsm::{Kcv, SecretKeyType};
use cipher::{BlockEncrypt, KeyInit};
use gp_core::kcv::KcvMethod;
use zeroize::{Zeroize, Zeroizing};

/// Clear bytes of a secret key or of one of its components; wiped on drop.
///
/// It has no `Clone`, `Display` or revealing `Debug`, so the bytes can only reach a screen, a file or the
/// token through the explicit [`KeyValue::expose`] call.
pub struct KeyValue {
    bytes: Zeroizing<Vec<u8>>,
    key_type: SecretKeyType,
}

impl std::fmt::Debug for KeyValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyValue({}, <secret>)", self.key_type.name())
    }
}

impl KeyValue {
    /// Takes ownership of `bytes` as a value of `key_type`, refusing a wrong length.
    pub fn new(bytes: Zeroizing<Vec<u8>>, key_type: SecretKeyType) -> Result<KeyValue, Error> {
        if bytes.len() != key_type.byte_len() {
            return Err(Error::Script(format!(
                "a {} key has {} bytes, not {}",
                key_type.name(),
                key_type.byte_len(),
                bytes.len()
            )));
        }
        Ok(KeyValue { bytes, key_type })
    }

    /// Parses a component as a custodian types it: hex digits, with spaces or dashes between groups
    /// allowed. `what` names the component in errors, which never repeat what was typed.
    pub fn parse_component(
        text: &str,
        key_type: SecretKeyType,
        what: &str,
    ) -> Result<KeyValue, Error> {
        let mut digits = Zeroizing::new(String::with_capacity(text.len()));
        for c in text.chars() {
            if c.is_ascii_hexdigit() {
                digits.push(c);
            } else if !(c == ' ' || c == '-' || c == '\t') {
                return Err(Error::Component(format!(
                    "{what}: only hex digits (and spaces or dashes between groups) are allowed"
                )));
            }
        }
        let want = key_type.byte_len() * 2;
        if digits.len() != want {
            return Err(Error::Component(format!(
                "{what}: {} hex digits typed, a {} component has {want}",
                digits.len(),
                key_type.name()
            )));
        }
        let bytes = hex::decode(digits.as_bytes())
            .map_err(|_| Error::Component(format!("{what}: not hex")))?;
        KeyValue::new(Zeroizing::new(bytes), key_type)
    }

    /// Random bytes from the token's generator, as a new component of `key_type`.
    pub fn from_random(random: Vec<u8>, key_type: SecretKeyType) -> Result<KeyValue, Error> {
        let mut v = KeyValue::new(Zeroizing::new(random), key_type)?;
        if key_type.is_des() {
            fix_des_parity(&mut v.bytes);
        }
        Ok(v)
    }

    /// The key type.
    pub fn key_type(&self) -> SecretKeyType {
        self.key_type
    }

    /// The clear bytes. Every caller is a place where key material leaves this type on purpose: the
    /// token template of a formed key, a custodian's screen.
    pub fn expose(&self) -> &[u8] {
        &self.bytes
    }

    /// The value as a custodian writes it down: upper-case hex in groups of four.
    pub fn to_groups(&self) -> Zeroizing<String> {
        let hex = Zeroizing::new(hex::encode_upper(self.bytes.as_slice()));
        let mut out = Zeroizing::new(String::with_capacity(hex.len() * 5 / 4));
        for (i, c) in hex.chars().enumerate() {
            if i > 0 && i % 4 == 0 {
                out.push(' ');
            }
            out.push(c);
        }
        out
    }

    /// The check value in `method`, computed on the host.
    pub fn kcv(&self, method: KcvMethod) -> Result<Kcv, Error> {
        let block = host_check_block(&self.bytes, self.key_type, method)?;
        let [a, b, c, ..] = *block;
        Ok(Kcv {
            value: [a, b, c],
            method,
        })
    }

    /// The method custodians' forms use for this type: 3DES over zeros, AES over 01×16 (GPC B.6, what
    /// cards report in PUT KEY).
    pub fn form_method(key_type: SecretKeyType) -> KcvMethod {
        if key_type.is_des() {
            KcvMethod::Des3Zeros
        } else {
            KcvMethod::AesOnes
        }
    }
}

/// XORs components into the key they form and fixes DES parity (each byte odd), because components
/// with correct parity XOR into a key whose parity an even number of components breaks.
pub fn combine(components: &[KeyValue], key_type: SecretKeyType) -> Result<KeyValue, Error> {
    if components.len() < 2 {
        return Err(Error::Component(
            "a key is formed from at least two components".into(),
        ));
    }
    let mut out = Zeroizing::new(vec![0u8; key_type.byte_len()]);
    for c in components {
        if c.key_type != key_type {
            return Err(Error::Component(format!(
                "a {} component cannot form a {} key",
                c.key_type.name(),
                key_type.name()
            )));
        }
        for (o, b) in out.iter_mut().zip(c.bytes.iter()) {
            *o ^= *b;
        }
    }
    if key_type.is_des() {
        fix_des_parity(&mut out);
    }
    KeyValue::new(out, key_type)
}

/// Splits `key` into `n` components whose XOR is the key: `n - 1` random components (from `random`,
/// which the token supplies) and one computed. Each DES component gets odd parity, so the combined key's
/// parity is fixed again by [`combine`].
pub fn split(
    key: &KeyValue,
    n: usize,
    mut random: impl FnMut(usize) -> Result<Vec<u8>, Error>,
) -> Result<Vec<KeyValue>, Error> {
    if n < 2 {
        return Err(Error::Component(
            "a key is exported as at least two components".into(),
        ));
    }
    let len = key.key_type.byte_len();
    let mut last = Zeroizing::new(key.bytes.to_vec());
    let mut parts = Vec::with_capacity(n);
    for _ in 1..n {
        let part = KeyValue::from_random(random(len)?, key.key_type)?;
        for (l, b) in last.iter_mut().zip(part.bytes.iter()) {
            *l ^= *b;
        }
        parts.push(part);
    }
    if key.key_type.is_des() {
        fix_des_parity(&mut last);
    }
    parts.push(KeyValue::new(last, key.key_type)?);
    Ok(parts)
}

/// Sets the low bit of every byte so that each byte has odd parity, as DES keys require.
pub fn fix_des_parity(bytes: &mut [u8]) {
    for b in bytes.iter_mut() {
        if b.count_ones() % 2 == 0 {
            *b ^= 1;
        }
    }
}

/// The first block of the check computation in `method` over `key`.
fn host_check_block(
    key: &[u8],
    key_type: SecretKeyType,
    method: KcvMethod,
) -> Result<Zeroizing<[u8; 16]>, Error> {
    let mismatch = || {
        Error::Component(format!(
            "a {} key has no {method} check value",
            key_type.name()
        ))
    };
    let mut block = Zeroizing::new([0u8; 16]);
    match (key_type, method) {
        (SecretKeyType::Des3TwoKey, KcvMethod::Des3Zeros) => {
            let c = des::TdesEde2::new_from_slice(key).map_err(|_| mismatch())?;
            let mut b = [0u8; 8];
            c.encrypt_block((&mut b).into());
            copy8(&mut block, &b);
        }
        (SecretKeyType::Des3ThreeKey, KcvMethod::Des3Zeros) => {
            let c = des::TdesEde3::new_from_slice(key).map_err(|_| mismatch())?;
            let mut b = [0u8; 8];
            c.encrypt_block((&mut b).into());
            copy8(&mut block, &b);
        }
        (t, KcvMethod::AesOnes | KcvMethod::AesZeros) if !t.is_des() => {
            let fill = if method == KcvMethod::AesOnes { 1 } else { 0 };
            block.fill(fill);
            let b: &mut [u8; 16] = &mut block;
            match t {
                SecretKeyType::Aes128 => aes::Aes128::new_from_slice(key)
                    .map_err(|_| mismatch())?
                    .encrypt_block(b.into()),
                SecretKeyType::Aes192 => aes::Aes192::new_from_slice(key)
                    .map_err(|_| mismatch())?
                    .encrypt_block(b.into()),
                _ => aes::Aes256::new_from_slice(key)
                    .map_err(|_| mismatch())?
                    .encrypt_block(b.into()),
            }
        }
        _ => return Err(mismatch()),
    }
    Ok(block)
}

fn copy8(block: &mut [u8; 16], b: &[u8; 8]) {
    for (d, s) in block.iter_mut().zip(b.iter()) {
        *d = *s;
    }
}

impl Drop for KeyValue {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn gp_facts_kcvs_on_the_host() {
        // GP-FACTS "Key check values": the default key K as 3DES gives 8BAF47.
        let k = KeyValue::parse_component(
            "4041 4243 4445 4647 4849 4A4B 4C4D 4E4F",
            SecretKeyType::Des3TwoKey,
            "k",
        )
        .unwrap();
        assert_eq!(
            k.kcv(KcvMethod::Des3Zeros).unwrap().value,
            [0x8B, 0xAF, 0x47]
        );
        // As AES-128 it gives the same value gp-core computes per GPC B.6.
        let a = KeyValue::parse_component(
            "404142434445464748494a4b4c4d4e4f",
            SecretKeyType::Aes128,
            "k",
        )
        .unwrap();
        let expected = gp_core::kcv::kcv_aes(
            &gp_core::keys::AesKey::from_slice(
                &hex::decode("404142434445464748494a4b4c4d4e4f").unwrap(),
            )
            .unwrap(),
        );
        assert_eq!(a.kcv(KcvMethod::AesOnes).unwrap().value, expected);
        assert!(a.kcv(KcvMethod::Des3Zeros).is_err());
    }

    #[test]
    fn three_key_des_kcv_matches_two_key_when_k3_is_k1() {
        let two = KeyValue::parse_component(
            "0123456789ABCDEFFEDCBA9876543210",
            SecretKeyType::Des3TwoKey,
            "k",
        )
        .unwrap();
        let three = KeyValue::parse_component(
            "0123456789ABCDEFFEDCBA98765432100123456789ABCDEF",
            SecretKeyType::Des3ThreeKey,
            "k",
        )
        .unwrap();
        assert_eq!(
            two.kcv(KcvMethod::Des3Zeros).unwrap(),
            three.kcv(KcvMethod::Des3Zeros).unwrap()
        );
    }

    #[test]
    fn parse_errors_never_repeat_the_input() {
        for text in [
            "0123456789abcdefXYZ",
            "0123",
            "01234567 89abcdef 01234567 89abcdef 00",
        ] {
            let e = KeyValue::parse_component(text, SecretKeyType::Des3TwoKey, "component 1")
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("component 1:"), "{e}");
            assert!(!e.contains("0123"), "{e}");
        }
    }

    #[test]
    fn combine_and_split_round_trip_with_des_parity() {
        let a = KeyValue::parse_component(
            "11111111111111111111111111111111",
            SecretKeyType::Des3TwoKey,
            "a",
        )
        .unwrap();
        let b = KeyValue::parse_component(
            "22222222222222222222222222222222",
            SecretKeyType::Des3TwoKey,
            "b",
        )
        .unwrap();
        let k = combine(&[a, b], SecretKeyType::Des3TwoKey).unwrap();
        // 0x11 ^ 0x22 = 0x33 (even parity) becomes 0x32.
        assert_eq!(k.expose(), &[0x32u8; 16]);
        assert!(k.expose().iter().all(|b| b.count_ones() % 2 == 1));
        let mut seed = 7u8;
        let parts = split(&k, 3, |n| {
            seed = seed.wrapping_mul(31).wrapping_add(17);
            Ok(vec![seed; n])
        })
        .unwrap();
        assert_eq!(parts.len(), 3);
        for p in &parts {
            assert!(p.expose().iter().all(|b| b.count_ones() % 2 == 1));
        }
        let again = combine(&parts, SecretKeyType::Des3TwoKey).unwrap();
        assert_eq!(again.expose(), k.expose());
        assert_eq!(format!("{again:?}"), "KeyValue(DES3-2KEY, <secret>)");
    }

    #[test]
    fn aes_keys_are_not_parity_adjusted() {
        let a = KeyValue::parse_component(&"11".repeat(32), SecretKeyType::Aes256, "a").unwrap();
        let b = KeyValue::parse_component(&"22".repeat(32), SecretKeyType::Aes256, "b").unwrap();
        let k = combine(&[a, b], SecretKeyType::Aes256).unwrap();
        assert_eq!(k.expose(), &[0x33u8; 32]);
        assert_eq!(k.to_groups().len(), 64 + 15);
    }
}
