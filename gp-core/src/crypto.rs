//! Block-cipher plumbing shared by the secure channels, KCVs, diversification and DAP.
//!
//! Only RustCrypto primitives are used; this module merely composes them into the modes GP needs
//! (CBC with a given ICV, ISO 9797-1 MAC algorithms 1 and 3, CMAC) and keeps the key-size dispatch
//! in one place.

use alloc::vec::Vec;

use aes::{Aes128, Aes192, Aes256};
use cipher::block_padding::NoPadding;
use cipher::{BlockDecryptMut, BlockEncrypt, BlockEncryptMut, KeyInit, KeyIvInit};
use cmac::{Cmac, Mac};
use des::{Des, TdesEde2};
use subtle::ConstantTimeEq;

use crate::keys::{AesKey, Des3Key};

/// Constant-time equality of two byte strings (length is not secret).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// ISO/IEC 9797-1 padding method 2: append `80`, then zeros up to a multiple of `block`.
/// Always adds at least one byte.
pub(crate) fn pad80(data: &[u8], block: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + block);
    out.extend_from_slice(data);
    out.push(0x80);
    zero_pad(&mut out, block);
    out
}

/// Appends zero bytes until `buf` is a multiple of `block` long (none when it already is).
pub(crate) fn zero_pad(buf: &mut Vec<u8>, block: usize) {
    while buf.len() % block != 0 {
        buf.push(0);
    }
}

/// Removes ISO/IEC 9797-1 method 2 padding; `None` when no `80` marker ends the zeros or when
/// the padding is longer than one block.
pub(crate) fn unpad80(data: &[u8], block: usize) -> Option<&[u8]> {
    let zeros = data.iter().rev().take_while(|&&b| b == 0).count();
    let marker_pos = data.len().checked_sub(zeros + 1)?;
    if *data.get(marker_pos)? != 0x80 || zeros >= block {
        return None;
    }
    data.get(..marker_pos)
}

/// Error for mode operations on data that is not a whole number of blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotBlockAligned;

macro_rules! with_aes {
    ($key:expr, $c:ident => $body:expr) => {
        match $key {
            AesKey::Aes128(k) => {
                let $c = Aes128::new(k.into());
                $body
            }
            AesKey::Aes192(k) => {
                let $c = Aes192::new(k.into());
                $body
            }
            AesKey::Aes256(k) => {
                let $c = Aes256::new(k.into());
                $body
            }
        }
    };
}

macro_rules! with_aes_cbc {
    ($key:expr, $mode:ident, $iv:expr, $c:ident => $body:expr) => {
        match $key {
            AesKey::Aes128(k) => {
                let $c = cbc::$mode::<Aes128>::new(k.into(), $iv.into());
                $body
            }
            AesKey::Aes192(k) => {
                let $c = cbc::$mode::<Aes192>::new(k.into(), $iv.into());
                $body
            }
            AesKey::Aes256(k) => {
                let $c = cbc::$mode::<Aes256>::new(k.into(), $iv.into());
                $body
            }
        }
    };
}

/// AES-ECB encryption of one block in place.
pub(crate) fn aes_encrypt_block(key: &AesKey, block: &mut [u8; 16]) {
    with_aes!(key, c => c.encrypt_block(block.into()))
}

/// AES-CBC encryption in place with the given ICV; `buf` must be block aligned.
pub(crate) fn aes_cbc_encrypt(
    key: &AesKey,
    iv: &[u8; 16],
    buf: &mut [u8],
) -> Result<(), NotBlockAligned> {
    if buf.len() % 16 != 0 {
        return Err(NotBlockAligned);
    }
    let len = buf.len();
    with_aes_cbc!(key, Encryptor, iv, c => c.encrypt_padded_mut::<NoPadding>(buf, len).map(|_| ()).map_err(|_| NotBlockAligned))
}

/// AES-CBC decryption in place with the given ICV; `buf` must be block aligned.
pub(crate) fn aes_cbc_decrypt(
    key: &AesKey,
    iv: &[u8; 16],
    buf: &mut [u8],
) -> Result<(), NotBlockAligned> {
    if buf.len() % 16 != 0 {
        return Err(NotBlockAligned);
    }
    with_aes_cbc!(key, Decryptor, iv, c => c.decrypt_padded_mut::<NoPadding>(buf).map(|_| ()).map_err(|_| NotBlockAligned))
}

/// AES-CMAC (NIST SP 800-38B) over the concatenation of `parts`, full 16 bytes.
pub(crate) fn aes_cmac(key: &AesKey, parts: &[&[u8]]) -> [u8; 16] {
    fn run<M: Mac>(mut m: M, parts: &[&[u8]]) -> [u8; 16] {
        for p in parts {
            m.update(p);
        }
        let tag = m.finalize().into_bytes();
        let mut out = [0u8; 16];
        for (o, t) in out.iter_mut().zip(tag.iter()) {
            *o = *t;
        }
        out
    }
    match key {
        AesKey::Aes128(k) => run(<Cmac<Aes128> as KeyInit>::new(k.into()), parts),
        AesKey::Aes192(k) => run(<Cmac<Aes192> as KeyInit>::new(k.into()), parts),
        AesKey::Aes256(k) => run(<Cmac<Aes256> as KeyInit>::new(k.into()), parts),
    }
}

/// Two-key 3DES-ECB encryption in place; `buf` must be a multiple of 8 bytes.
pub(crate) fn tdes_ecb_encrypt(key: &Des3Key, buf: &mut [u8]) -> Result<(), NotBlockAligned> {
    tdes_ecb(key, buf, |c, block| c.encrypt_block(block.into()))
}

/// Two-key 3DES-ECB decryption in place; `buf` must be a multiple of 8 bytes.
pub(crate) fn tdes_ecb_decrypt(key: &Des3Key, buf: &mut [u8]) -> Result<(), NotBlockAligned> {
    use cipher::BlockDecrypt;
    tdes_ecb(key, buf, |c, block| c.decrypt_block(block.into()))
}

fn tdes_ecb(
    key: &Des3Key,
    buf: &mut [u8],
    op: impl Fn(&TdesEde2, &mut [u8; 8]),
) -> Result<(), NotBlockAligned> {
    if buf.len() % 8 != 0 {
        return Err(NotBlockAligned);
    }
    let c = TdesEde2::new(key.as_bytes().into());
    for chunk in buf.chunks_exact_mut(8) {
        if let Ok(block) = <&mut [u8; 8]>::try_from(chunk) {
            op(&c, block);
        }
    }
    Ok(())
}

/// Two-key 3DES-CBC encryption in place with the given ICV.
pub(crate) fn tdes_cbc_encrypt(
    key: &Des3Key,
    iv: &[u8; 8],
    buf: &mut [u8],
) -> Result<(), NotBlockAligned> {
    if buf.len() % 8 != 0 {
        return Err(NotBlockAligned);
    }
    let len = buf.len();
    cbc::Encryptor::<TdesEde2>::new(key.as_bytes().into(), iv.into())
        .encrypt_padded_mut::<NoPadding>(buf, len)
        .map(|_| ())
        .map_err(|_| NotBlockAligned)
}

/// Two-key 3DES-CBC decryption in place with the given ICV.
pub(crate) fn tdes_cbc_decrypt(
    key: &Des3Key,
    iv: &[u8; 8],
    buf: &mut [u8],
) -> Result<(), NotBlockAligned> {
    if buf.len() % 8 != 0 {
        return Err(NotBlockAligned);
    }
    cbc::Decryptor::<TdesEde2>::new(key.as_bytes().into(), iv.into())
        .decrypt_padded_mut::<NoPadding>(buf)
        .map(|_| ())
        .map_err(|_| NotBlockAligned)
}

/// Single-DES ECB encryption of one block under K1 of a 3DES key (SCP02 ICV encryption).
pub(crate) fn des_k1_encrypt_block(key: &Des3Key, block: &mut [u8; 8]) {
    let k1 = key.k1();
    let c = Des::new((&*k1).into());
    c.encrypt_block(block.into());
}

/// XORs `b` into `a`.
fn xor8(a: &mut [u8; 8], b: &[u8]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x ^= y;
    }
}

/// ISO/IEC 9797-1 MAC algorithm 3 ("retail MAC"): single-DES CBC under K1 over all blocks but the
/// last, then 3DES (K1, K2) on the last. `padded` must already be padded to 8 bytes.
pub(crate) fn retail_mac_padded(
    key: &Des3Key,
    icv: &[u8; 8],
    padded: &[u8],
) -> Result<[u8; 8], NotBlockAligned> {
    if padded.is_empty() || padded.len() % 8 != 0 {
        return Err(NotBlockAligned);
    }
    let k1 = key.k1();
    let des = Des::new((&*k1).into());
    let tdes = TdesEde2::new(key.as_bytes().into());
    let mut state = *icv;
    let n = padded.len() / 8;
    for (i, block) in padded.chunks_exact(8).enumerate() {
        xor8(&mut state, block);
        if i + 1 == n {
            tdes.encrypt_block((&mut state).into());
        } else {
            des.encrypt_block((&mut state).into());
        }
    }
    Ok(state)
}

/// ISO/IEC 9797-1 MAC algorithm 1 with 3DES ("full triple DES MAC"): the last block of
/// 3DES-CBC. `padded` must already be padded to 8 bytes.
pub(crate) fn tdes_cbc_mac_padded(
    key: &Des3Key,
    icv: &[u8; 8],
    padded: &[u8],
) -> Result<[u8; 8], NotBlockAligned> {
    if padded.is_empty() || padded.len() % 8 != 0 {
        return Err(NotBlockAligned);
    }
    let tdes = TdesEde2::new(key.as_bytes().into());
    let mut state = *icv;
    for block in padded.chunks_exact(8) {
        xor8(&mut state, block);
        tdes.encrypt_block((&mut state).into());
    }
    Ok(state)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn padding() {
        assert_eq!(pad80(&[], 8), vec![0x80, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(pad80(&[1; 8], 8).len(), 16);
        assert_eq!(pad80(&[1; 7], 8), vec![1, 1, 1, 1, 1, 1, 1, 0x80]);
        assert_eq!(unpad80(&pad80(&[1, 2, 3], 16), 16), Some(&[1u8, 2, 3][..]));
        assert_eq!(unpad80(&pad80(&[], 16), 16), Some(&[][..]));
        assert_eq!(unpad80(&[1, 2, 0, 0], 16), None);
        assert_eq!(unpad80(&[0; 16], 16), None);
        let mut long = vec![0x80];
        long.extend_from_slice(&[0; 16]);
        assert_eq!(unpad80(&long, 16), None);
    }

    #[test]
    fn known_blocks() {
        // GP-FACTS "Key check values": 3DES-ECB(K, K) and AES-ECB(K, 00×16).
        let k: [u8; 16] = hex::decode("404142434445464748494A4B4C4D4E4F")
            .unwrap()
            .try_into()
            .unwrap();
        let mut buf = k;
        tdes_ecb_encrypt(&Des3Key::new(k), &mut buf).unwrap();
        assert_eq!(hex::encode_upper(buf), "B4BAA89A8CD0292B45210E1BC84B1C31");
        tdes_ecb_decrypt(&Des3Key::new(k), &mut buf).unwrap();
        assert_eq!(buf, k);
        let mut z = [0u8; 16];
        aes_encrypt_block(&AesKey::Aes128(k), &mut z);
        assert_eq!(hex::encode_upper(z), "1899564A9DA8DE833D25C71739EAADCE");
    }

    #[test]
    fn cbc_round_trip_and_alignment() {
        let key = AesKey::Aes256([7; 32]);
        let mut buf = [0x11u8; 48];
        aes_cbc_encrypt(&key, &[1; 16], &mut buf).unwrap();
        aes_cbc_decrypt(&key, &[1; 16], &mut buf).unwrap();
        assert_eq!(buf, [0x11; 48]);
        assert_eq!(
            aes_cbc_encrypt(&key, &[0; 16], &mut [0u8; 15]),
            Err(NotBlockAligned)
        );
        let dk = Des3Key::new([3; 16]);
        let mut b = [0x22u8; 24];
        tdes_cbc_encrypt(&dk, &[0; 8], &mut b).unwrap();
        tdes_cbc_decrypt(&dk, &[0; 8], &mut b).unwrap();
        assert_eq!(b, [0x22; 24]);
        assert!(retail_mac_padded(&dk, &[0; 8], &[]).is_err());
    }

    #[test]
    fn retail_mac_equals_single_block_3des_when_one_block() {
        let dk = Des3Key::new([0x5C; 16]);
        let data = [0xA5u8; 8];
        let mut e = data;
        tdes_ecb_encrypt(&dk, &mut e).unwrap();
        assert_eq!(retail_mac_padded(&dk, &[0; 8], &data).unwrap(), e);
        assert_eq!(tdes_cbc_mac_padded(&dk, &[0; 8], &data).unwrap(), e);
    }
}
