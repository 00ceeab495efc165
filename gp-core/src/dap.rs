//! Load File Data Block hashes, symmetric DAP signatures and ciphered LFDBs (GPC 2.3.1
//! Appendix C, Amendment D §8).
//!
//! A DAP is a signature over the LFDB *hash* (not over the LFDB): 3DES keys give an ISO 9797-1
//! algorithm 3 retail MAC over the padded SHA-1 hash, AES keys a 16-byte AES-CMAC over a SHA-2
//! hash. Verification compares in constant time. Asymmetric DAPs (RSA, ECDSA P-256) are verified
//! by the functions behind the `asymmetric` feature, which brings the RSA and elliptic-curve code
//! only to the builds that need it.

use alloc::vec::Vec;
use core::fmt;

use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};
use zeroize::Zeroizing;

use crate::crypto;
use crate::keys::{AesKey, Des3Key};
use crate::sw::Sw;

/// Hash algorithm for the LFDB hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashAlg {
    /// SHA-1 (20 bytes): with 3DES DAPs and tokens only.
    Sha1,
    /// SHA-256 (32 bytes).
    Sha256,
    /// SHA-384 (48 bytes).
    Sha384,
    /// SHA-512 (64 bytes).
    Sha512,
}

impl HashAlg {
    /// Digest length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            HashAlg::Sha1 => 20,
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 => 64,
        }
    }

    /// The algorithm whose digest has `len` bytes, as the card infers it from the INSTALL [for load]
    /// hash length (GPC C.2).
    pub fn from_output_len(len: usize) -> Option<HashAlg> {
        match len {
            20 => Some(HashAlg::Sha1),
            32 => Some(HashAlg::Sha256),
            48 => Some(HashAlg::Sha384),
            64 => Some(HashAlg::Sha512),
            _ => None,
        }
    }

    /// True when this hash is strong enough for a key of the given kind and length per GPC Table C-3
    /// and Amendment D Table 8-1: any for 3DES, SHA-256+ for AES-128, SHA-384+ for AES-192,
    /// SHA-512 for AES-256.
    pub fn acceptable_for(self, kind: SymmetricKeyKind) -> bool {
        let min = match kind {
            SymmetricKeyKind::Des3 => 20,
            SymmetricKeyKind::Aes(16) => 32,
            SymmetricKeyKind::Aes(24) => 48,
            SymmetricKeyKind::Aes(_) => 64,
        };
        self.output_len() >= min
    }
}

impl fmt::Display for HashAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HashAlg::Sha1 => "SHA-1",
            HashAlg::Sha256 => "SHA-256",
            HashAlg::Sha384 => "SHA-384",
            HashAlg::Sha512 => "SHA-512",
        })
    }
}

/// Kind of a symmetric DAP or LFDB encryption key, for hash selection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SymmetricKeyKind {
    /// Two-key 3DES.
    Des3,
    /// AES with the key length in bytes.
    Aes(usize),
}

/// Why a DAP or a ciphered LFDB did not verify or decrypt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DapError {
    /// The signature does not match the hash.
    BadSignature,
    /// Ciphertext that is not whole blocks, or an ICV of the wrong length.
    Malformed,
    /// Decrypted data without valid `80 00…` padding.
    BadPadding,
}

impl DapError {
    /// The status word the card answers with: `6982` for a bad signature, `6A80` otherwise.
    pub fn sw(&self) -> Sw {
        match self {
            DapError::BadSignature => Sw::SECURITY_STATUS_NOT_SATISFIED,
            DapError::Malformed | DapError::BadPadding => Sw::INCORRECT_DATA,
        }
    }
}

impl fmt::Display for DapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DapError::BadSignature => "DAP verification failed",
            DapError::Malformed => "malformed ciphered load file data",
            DapError::BadPadding => "bad padding in decrypted load file data",
        })
    }
}

/// The LFDB hash: the digest of the value of tag `C4` (without tag and length).
pub fn lfdb_hash(alg: HashAlg, lfdb: &[u8]) -> Vec<u8> {
    match alg {
        HashAlg::Sha1 => Sha1::digest(lfdb).to_vec(),
        HashAlg::Sha256 => Sha256::digest(lfdb).to_vec(),
        HashAlg::Sha384 => Sha384::digest(lfdb).to_vec(),
        HashAlg::Sha512 => Sha512::digest(lfdb).to_vec(),
    }
}

/// ISO/IEC 9797-1 MAC algorithm 3 with padding method 2 and a zero ICV (GPC B.1.2.2 / B.1.3):
/// single DES under K1 over all blocks but the last, 3DES on the last.
pub fn retail_mac(key: &Des3Key, data: &[u8]) -> [u8; 8] {
    let padded = crypto::pad80(data, 8);
    // Padded data is non-empty and block aligned, so this cannot fail.
    crypto::retail_mac_padded(key, &[0; 8], &padded).unwrap_or([0; 8])
}

/// 3DES DAP: the retail MAC over the LFDB hash (SHA-1 for 3DES per Table C-3).
pub fn dap_des3(key: &Des3Key, lfdb_hash: &[u8]) -> [u8; 8] {
    retail_mac(key, lfdb_hash)
}

/// AES DAP: the 16-byte AES-CMAC over the LFDB hash (Amendment D §8.1).
pub fn dap_aes(key: &AesKey, lfdb_hash: &[u8]) -> [u8; 16] {
    crypto::aes_cmac(key, &[lfdb_hash])
}

/// Verifies a 3DES DAP in constant time.
pub fn verify_dap_des3(key: &Des3Key, lfdb_hash: &[u8], signature: &[u8]) -> Result<(), DapError> {
    if crypto::ct_eq(&dap_des3(key, lfdb_hash), signature) {
        Ok(())
    } else {
        Err(DapError::BadSignature)
    }
}

/// Verifies an AES DAP in constant time.
pub fn verify_dap_aes(key: &AesKey, lfdb_hash: &[u8], signature: &[u8]) -> Result<(), DapError> {
    if crypto::ct_eq(&dap_aes(key, lfdb_hash), signature) {
        Ok(())
    } else {
        Err(DapError::BadSignature)
    }
}

/// Encrypts an LFDB for tag `D4` (GPC C.6): `80 00…` padding to 16, AES-CBC with the ICV that will
/// be sent in `D3` (`None`: zero ICV, `D3` omitted).
pub fn encrypt_lfdb_aes(key: &AesKey, icv: Option<&[u8; 16]>, lfdb: &[u8]) -> Vec<u8> {
    let mut buf = crypto::pad80(lfdb, 16);
    // pad80 output is block aligned.
    let _ = crypto::aes_cbc_encrypt(key, icv.unwrap_or(&[0; 16]), &mut buf);
    buf
}

/// The `D3` ICV as an array of the cipher's block size; zero when `D3` was not sent.
fn icv_or_zero<const N: usize>(icv: Option<&[u8]>) -> Result<[u8; N], DapError> {
    match icv {
        None => Ok([0; N]),
        Some(v) => v.try_into().map_err(|_| DapError::Malformed),
    }
}

/// Decrypts a `D4` value encrypted with [`encrypt_lfdb_aes`]; `icv` is the value of `D3`, if any.
pub fn decrypt_lfdb_aes(
    key: &AesKey,
    icv: Option<&[u8]>,
    data: &[u8],
) -> Result<Vec<u8>, DapError> {
    let icv = icv_or_zero::<16>(icv)?;
    let mut buf = Zeroizing::new(data.to_vec());
    crypto::aes_cbc_decrypt(key, &icv, &mut buf).map_err(|_| DapError::Malformed)?;
    crypto::unpad80(&buf, 16)
        .map(|p| p.to_vec())
        .ok_or(DapError::BadPadding)
}

/// Encrypts an LFDB for tag `D4` under a 3DES key (GPC C.6): padding to 8, 3DES-CBC.
pub fn encrypt_lfdb_des3(key: &Des3Key, icv: Option<&[u8; 8]>, lfdb: &[u8]) -> Vec<u8> {
    let mut buf = crypto::pad80(lfdb, 8);
    let _ = crypto::tdes_cbc_encrypt(key, icv.unwrap_or(&[0; 8]), &mut buf);
    buf
}

/// Decrypts a `D4` value encrypted with [`encrypt_lfdb_des3`].
pub fn decrypt_lfdb_des3(
    key: &Des3Key,
    icv: Option<&[u8]>,
    data: &[u8],
) -> Result<Vec<u8>, DapError> {
    let icv = icv_or_zero::<8>(icv)?;
    let mut buf = Zeroizing::new(data.to_vec());
    crypto::tdes_cbc_decrypt(key, &icv, &mut buf).map_err(|_| DapError::Malformed)?;
    crypto::unpad80(&buf, 8)
        .map(|p| p.to_vec())
        .ok_or(DapError::BadPadding)
}

/// Decrypts a `D4` value under an AES key and leaves the `80 00…` padding in place, for a card
/// that checks padding and LFDB hash together in constant time (so that bad padding and a wrong
/// hash cannot be told apart: no padding oracle). Only the lengths are checked here: `data` must
/// be whole blocks, at least one, and `icv` 16 bytes.
pub fn decrypt_lfdb_aes_padded(
    key: &AesKey,
    icv: Option<&[u8]>,
    data: &[u8],
) -> Result<Zeroizing<Vec<u8>>, DapError> {
    let icv = icv_or_zero::<16>(icv)?;
    if data.is_empty() {
        return Err(DapError::Malformed);
    }
    let mut buf = Zeroizing::new(data.to_vec());
    crypto::aes_cbc_decrypt(key, &icv, &mut buf).map_err(|_| DapError::Malformed)?;
    Ok(buf)
}

/// Decrypts a `D4` value under a 3DES key and leaves the padding in place (see
/// [`decrypt_lfdb_aes_padded`]); `icv` is 8 bytes.
pub fn decrypt_lfdb_des3_padded(
    key: &Des3Key,
    icv: Option<&[u8]>,
    data: &[u8],
) -> Result<Zeroizing<Vec<u8>>, DapError> {
    let icv = icv_or_zero::<8>(icv)?;
    if data.is_empty() {
        return Err(DapError::Malformed);
    }
    let mut buf = Zeroizing::new(data.to_vec());
    crypto::tdes_cbc_decrypt(key, &icv, &mut buf).map_err(|_| DapError::Malformed)?;
    Ok(buf)
}

/// Asymmetric DAP signature formats (GPC C.3 with B.3 and B.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AsymmetricDap {
    /// RSA keys up to 1024 bits: PKCS#1 v1.5 signature with SHA-1 over the LFDB hash (B.3.1).
    RsaPkcs1Sha1,
    /// RSA keys longer than 1024 bits: RSASSA-PSS with SHA-256, MGF1-SHA-256, 32-byte salt (B.3.2).
    RsaPssSha256,
    /// ECDSA on P-256 with SHA-256 over the LFDB hash; the signature is `r ‖ s`, 32 bytes each (B.4).
    EcdsaP256Sha256,
}

impl AsymmetricDap {
    /// The RSA format GP prescribes for a modulus of `bits` bits: PKCS#1 v1.5 up to 1024, PSS above.
    pub fn for_rsa_bits(bits: usize) -> AsymmetricDap {
        if bits <= 1024 {
            AsymmetricDap::RsaPkcs1Sha1
        } else {
            AsymmetricDap::RsaPssSha256
        }
    }
}

impl fmt::Display for AsymmetricDap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AsymmetricDap::RsaPkcs1Sha1 => "RSA PKCS#1 v1.5 SHA-1",
            AsymmetricDap::RsaPssSha256 => "RSA PSS SHA-256 salt 32",
            AsymmetricDap::EcdsaP256Sha256 => "ECDSA P-256 SHA-256",
        })
    }
}

/// Largest RSA modulus accepted for a DAP key, in bits: bounds the work a hostile key can cause.
pub const MAX_RSA_BITS: usize = 4096;

/// Verifies an RSA DAP over `lfdb_hash` with the public key (big-endian modulus and exponent, as
/// PUT KEY carries them in tags `A1` and `A0`). The format follows from the modulus length
/// ([`AsymmetricDap::for_rsa_bits`]). Malformed keys and signatures are [`DapError::BadSignature`]:
/// nothing about them is worth telling the sender apart from a wrong signature.
#[cfg(feature = "asymmetric")]
pub fn verify_dap_rsa(
    modulus: &[u8],
    exponent: &[u8],
    lfdb_hash: &[u8],
    signature: &[u8],
) -> Result<(), DapError> {
    use rsa::traits::PublicKeyParts;
    use rsa::{BigUint, Pkcs1v15Sign, RsaPublicKey};
    let n = BigUint::from_bytes_be(modulus);
    let e = BigUint::from_bytes_be(exponent);
    let bits = n.bits();
    if !(512..=MAX_RSA_BITS).contains(&bits) {
        return Err(DapError::BadSignature);
    }
    let key = RsaPublicKey::new(n, e).map_err(|_| DapError::BadSignature)?;
    if signature.len() != key.size() {
        return Err(DapError::BadSignature);
    }
    let verified = match AsymmetricDap::for_rsa_bits(bits) {
        AsymmetricDap::RsaPkcs1Sha1 => key.verify(
            Pkcs1v15Sign::new::<Sha1>(),
            &Sha1::digest(lfdb_hash),
            signature,
        ),
        _ => key.verify(
            rsa::pss::Pss::new_with_salt::<Sha256>(32),
            &Sha256::digest(lfdb_hash),
            signature,
        ),
    };
    verified.map_err(|_| DapError::BadSignature)
}

/// Verifies an ECDSA P-256 DAP (`r ‖ s`) over `lfdb_hash` with the public key as an uncompressed
/// (`04 ‖ X ‖ Y`) or compressed SEC1 point, as PUT KEY carries it in tag `B0`.
#[cfg(feature = "asymmetric")]
pub fn verify_dap_ecdsa_p256(
    public_point: &[u8],
    lfdb_hash: &[u8],
    signature: &[u8],
) -> Result<(), DapError> {
    use p256::ecdsa::signature::Verifier;
    use p256::ecdsa::{Signature, VerifyingKey};
    let key = VerifyingKey::from_sec1_bytes(public_point).map_err(|_| DapError::BadSignature)?;
    let sig = Signature::from_slice(signature).map_err(|_| DapError::BadSignature)?;
    key.verify(lfdb_hash, &sig)
        .map_err(|_| DapError::BadSignature)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use alloc::vec;

    use crate::util::h;
    const K: &str = "404142434445464748494A4B4C4D4E4F";
    // GP-FACTS "Load files and DAP": empty-2.2.1.cap LFDB without Descriptor.
    const EMPTY_SHA1: &str = "BD74FF188CFF4D78D95A6AC1952166338C49F485";
    const EMPTY_SHA256: &str = "8D5AC9E226E3F0A89457FB078470A9378DAED8B96BA6CBE839513CDF08D27A38";

    #[test]
    fn dap_vectors() {
        // GP-FACTS "Symmetric DAP over the LFDBH" (derived): 3DES D49391127619DCF5 over the SHA-1
        // hash, AES 94B7D65FE750611D0B5E693CC6FD0152 over the SHA-256 hash.
        let dk = Des3Key::from_slice(&h(K)).unwrap();
        assert_eq!(dap_des3(&dk, &h(EMPTY_SHA1)), h("D49391127619DCF5")[..]);
        verify_dap_des3(&dk, &h(EMPTY_SHA1), &h("D49391127619DCF5")).unwrap();
        assert_eq!(
            verify_dap_des3(&dk, &h(EMPTY_SHA1), &h("D49391127619DCF4")),
            Err(DapError::BadSignature)
        );
        let ak = AesKey::from_slice(&h(K)).unwrap();
        assert_eq!(
            dap_aes(&ak, &h(EMPTY_SHA256)),
            h("94B7D65FE750611D0B5E693CC6FD0152")[..]
        );
        verify_dap_aes(
            &ak,
            &h(EMPTY_SHA256),
            &h("94B7D65FE750611D0B5E693CC6FD0152"),
        )
        .unwrap();
        assert_eq!(
            verify_dap_aes(&ak, &h(EMPTY_SHA256), &h("94B7D65FE750611D")),
            Err(DapError::BadSignature)
        );
    }

    #[test]
    fn hashes() {
        // FIPS 180 "abc" vectors.
        assert_eq!(
            hex::encode_upper(lfdb_hash(HashAlg::Sha1, b"abc")),
            "A9993E364706816ABA3E25717850C26C9CD0D89D"
        );
        assert_eq!(
            hex::encode_upper(lfdb_hash(HashAlg::Sha256, b"abc")),
            "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"
        );
        for alg in [
            HashAlg::Sha1,
            HashAlg::Sha256,
            HashAlg::Sha384,
            HashAlg::Sha512,
        ] {
            assert_eq!(lfdb_hash(alg, &[]).len(), alg.output_len());
            assert_eq!(HashAlg::from_output_len(alg.output_len()), Some(alg));
        }
        assert!(HashAlg::Sha1.acceptable_for(SymmetricKeyKind::Des3));
        assert!(!HashAlg::Sha1.acceptable_for(SymmetricKeyKind::Aes(16)));
        assert!(!HashAlg::Sha384.acceptable_for(SymmetricKeyKind::Aes(32)));
        assert!(HashAlg::Sha384.acceptable_for(SymmetricKeyKind::Aes(24)));
    }

    #[test]
    fn retail_mac_multi_block() {
        // ISO/IEC 9797-1 algorithm 3 equals DES-CBC(K1) then D(K2), E(K1) on the last block;
        // cross-check against an explicit composition.
        use cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
        let key = h("0123456789ABCDEFFEDCBA9876543210");
        let data = b"Now is the time for all ";
        let k1 = des::Des::new_from_slice(&key[..8]).unwrap();
        let k2 = des::Des::new_from_slice(&key[8..]).unwrap();
        let padded = crypto::pad80(data, 8);
        let mut state = [0u8; 8];
        for block in padded.chunks(8) {
            for (s, b) in state.iter_mut().zip(block) {
                *s ^= b;
            }
            k1.encrypt_block((&mut state).into());
        }
        k2.decrypt_block((&mut state).into());
        k1.encrypt_block((&mut state).into());
        assert_eq!(retail_mac(&Des3Key::from_slice(&key).unwrap(), data), state);
    }

    #[cfg(feature = "asymmetric")]
    #[test]
    fn ecdsa_dap_round_trip_and_refusals() {
        use p256::ecdsa::signature::Signer;
        use p256::ecdsa::{Signature, SigningKey};
        let sk = SigningKey::from_slice(&[0x11; 32]).unwrap();
        let point = sk.verifying_key().to_encoded_point(false);
        let hash = h(EMPTY_SHA256);
        let sig: Signature = sk.sign(&hash);
        let raw = sig.to_bytes();
        verify_dap_ecdsa_p256(point.as_bytes(), &hash, &raw).unwrap();
        let mut bad = raw.to_vec();
        bad[10] ^= 1;
        assert_eq!(
            verify_dap_ecdsa_p256(point.as_bytes(), &hash, &bad),
            Err(DapError::BadSignature)
        );
        assert_eq!(
            verify_dap_ecdsa_p256(point.as_bytes(), &h(EMPTY_SHA1), &raw),
            Err(DapError::BadSignature)
        );
        assert_eq!(
            verify_dap_ecdsa_p256(&[0x04; 65], &hash, &raw),
            Err(DapError::BadSignature)
        );
        assert_eq!(
            verify_dap_ecdsa_p256(point.as_bytes(), &hash, &raw[..63]),
            Err(DapError::BadSignature)
        );
    }

    #[cfg(feature = "asymmetric")]
    #[test]
    fn rsa_dap_refuses_hostile_keys_and_signatures() {
        assert_eq!(
            AsymmetricDap::for_rsa_bits(1024),
            AsymmetricDap::RsaPkcs1Sha1
        );
        assert_eq!(
            AsymmetricDap::for_rsa_bits(2048),
            AsymmetricDap::RsaPssSha256
        );
        let hash = h(EMPTY_SHA1);
        // Too short, too long, even exponent, empty: refused without panicking.
        for (n, e) in [
            (vec![0xC5; 32], vec![1, 0, 1]),
            (vec![0xC5; 1024], vec![1, 0, 1]),
            (vec![0xC5; 128], vec![2]),
            (Vec::new(), Vec::new()),
        ] {
            assert_eq!(
                verify_dap_rsa(&n, &e, &hash, &[0; 128]),
                Err(DapError::BadSignature)
            );
        }
        // A plausible key with a wrong-length and a wrong signature.
        let mut n = vec![0xC5; 128];
        n[127] |= 1;
        assert_eq!(
            verify_dap_rsa(&n, &[1, 0, 1], &hash, &[1; 127]),
            Err(DapError::BadSignature)
        );
        assert_eq!(
            verify_dap_rsa(&n, &[1, 0, 1], &hash, &[1; 128]),
            Err(DapError::BadSignature)
        );
    }

    #[test]
    fn ciphered_lfdb_round_trip() {
        let ak = AesKey::from_slice(&h(K)).unwrap();
        let lfdb: Vec<u8> = (0..211u32).map(|i| i as u8).collect();
        for icv in [None, Some([7u8; 16])] {
            let c = encrypt_lfdb_aes(&ak, icv.as_ref(), &lfdb);
            assert_eq!(c.len(), 224);
            assert_eq!(
                decrypt_lfdb_aes(&ak, icv.as_ref().map(|i| &i[..]), &c).unwrap(),
                lfdb
            );
        }
        assert_eq!(
            decrypt_lfdb_aes(&ak, Some(&[0; 8]), &[0; 16]),
            Err(DapError::Malformed)
        );
        assert_eq!(
            decrypt_lfdb_aes(&ak, None, &[0; 15]),
            Err(DapError::Malformed)
        );
        let dk = Des3Key::from_slice(&h(K)).unwrap();
        let c = encrypt_lfdb_des3(&dk, Some(&[1; 8]), &lfdb);
        assert_eq!(c.len(), 216);
        assert_eq!(decrypt_lfdb_des3(&dk, Some(&[1; 8]), &c).unwrap(), lfdb);
        // A wrong ICV only garbles the first block; a wrong key breaks the padding.
        assert_eq!(
            decrypt_lfdb_des3(&Des3Key::new([9; 16]), Some(&[1; 8]), &c).ok(),
            None
        );
    }
}
