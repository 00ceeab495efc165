//! Key check values, the three bytes custodians compare on paper forms and cards compare in PUT KEY.
//!
//! AES has two conventions in the field (over `01×16` per GPC B.6 and Amendment D §7.2.2, and
//! over zeros), which give different values for the same key, so every KCV that is shown to people
//! should be shown with its [`KcvMethod`].

use core::fmt;

use crate::crypto;
use crate::keys::{AesKey, Des3Key};
use crate::util::first_n;

/// How a key check value was computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KcvMethod {
    /// 3DES: first three bytes of `3DES-ECB(key, 00×8)`.
    Des3Zeros,
    /// AES per GPC B.6 / Amendment D §7.2.2: first three bytes of `AES-ECB(key, 01×16)`.
    AesOnes,
    /// AES over zeros, a variant some tools and HSMs print: first three bytes of `AES-ECB(key, 00×16)`.
    AesZeros,
}

impl fmt::Display for KcvMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KcvMethod::Des3Zeros => "3DES-ECB(00*8)",
            KcvMethod::AesOnes => "AES-ECB(01*16) GPC B.6",
            KcvMethod::AesZeros => "AES-ECB(00*16)",
        })
    }
}

/// KCV of a 3DES key: the first three bytes of `3DES-ECB(key, 00×8)`.
pub fn kcv_des3(key: &Des3Key) -> [u8; 3] {
    let mut block = [0u8; 8];
    // An 8-byte buffer is always block aligned.
    let _ = crypto::tdes_ecb_encrypt(key, &mut block);
    first_n::<3>(&block)
}

/// KCV of an AES key per GPC B.6: the first three bytes of `AES-ECB(key, 01×16)`.
pub fn kcv_aes(key: &AesKey) -> [u8; 3] {
    let mut block = [0x01u8; 16];
    crypto::aes_encrypt_block(key, &mut block);
    first_n::<3>(&block)
}

/// KCV of an AES key over zeros: the first three bytes of `AES-ECB(key, 00×16)`.
pub fn kcv_aes_zeros(key: &AesKey) -> [u8; 3] {
    let mut block = [0u8; 16];
    crypto::aes_encrypt_block(key, &mut block);
    first_n::<3>(&block)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use alloc::{format, vec::Vec};

    use crate::util::h;

    const K: &str = "404142434445464748494A4B4C4D4E4F";

    #[test]
    fn gp_facts_kcvs() {
        // GP-FACTS "Key check values": 3DES K → 8BAF47.
        assert_eq!(
            kcv_des3(&Des3Key::from_slice(&h(K)).unwrap()),
            [0x8B, 0xAF, 0x47]
        );
        // GP-FACTS: AES per B.6, K → 504A77; over zeros → 189956.
        let k = AesKey::from_slice(&h(K)).unwrap();
        assert_eq!(kcv_aes(&k), [0x50, 0x4A, 0x77]);
        assert_eq!(kcv_aes_zeros(&k), [0x18, 0x99, 0x56]);
        // GP-FACTS: AES-192 key 40..57 → FFCD73; AES-256 key 40..5F → ECDCD8 (both per B.6).
        let k192: Vec<u8> = (0x40u8..=0x57).collect();
        assert_eq!(
            kcv_aes(&AesKey::from_slice(&k192).unwrap()),
            [0xFF, 0xCD, 0x73]
        );
        let k256: Vec<u8> = (0x40u8..=0x5F).collect();
        assert_eq!(
            kcv_aes(&AesKey::from_slice(&k256).unwrap()),
            [0xEC, 0xDC, 0xD8]
        );
    }

    #[test]
    fn method_names() {
        assert_eq!(format!("{}", KcvMethod::Des3Zeros), "3DES-ECB(00*8)");
        assert_eq!(format!("{}", KcvMethod::AesOnes), "AES-ECB(01*16) GPC B.6");
        assert_eq!(format!("{}", KcvMethod::AesZeros), "AES-ECB(00*16)");
    }
}
