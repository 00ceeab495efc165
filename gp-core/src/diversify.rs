//! Per-card key diversification schemes known to off-card tools as `emv`, `visa2` and `kdf3`, plus
//! this project's `aes` scheme for SCP03 key sets derived inside a PKCS#11 token.
//!
//! Each card's keys are derived from a master key and the card's key diversification data (KDD,
//! the first ten bytes of the INITIALIZE UPDATE response), so one extracted card key reveals no
//! other card's. The host tools derive inside the HSM and only need the derivation data from here;
//! [`derive_software`] is the reference implementation for the card simulator's tests and for
//! cross-checks.

use alloc::vec::Vec;
use core::fmt;
use core::str::FromStr;

use zeroize::Zeroizing;

use crate::crypto;
use crate::keys::{AesKey, Des3Key};
use crate::sw::Sw;

/// A diversification scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// EMV CPS 1.1: 3DES-ECB under the master over `KDD[4..10] ‖ F0 ‖ kk ‖ KDD[4..10] ‖ 0F ‖ kk`.
    Emv,
    /// VISA2: 3DES-ECB over `KDD[0..2] ‖ KDD[4..8] ‖ F0 ‖ kk ‖ KDD[0..2] ‖ KDD[4..8] ‖ 0F ‖ kk`.
    Visa2,
    /// AES scheme: AES-CMAC under the master over `i ‖ 00 00 00 ‖ kk ‖ 00 ‖ KDD`, i = 1, 2, …
    Kdf3,
    /// This project's AES scheme for SCP03 key sets: AES-ECB under the master over the blocks of
    /// [`aes_derivation_data`]. It exists because a PKCS#11 token can compute it inside with
    /// `CKM_AES_ECB_ENCRYPT_DATA`, which every token with AES offers, while `kdf3` needs an
    /// SP 800-108 KDF mechanism that many tokens (SoftHSM2 among them) lack.
    Aes,
}

impl Scheme {
    /// The name used on command lines and in configuration files.
    pub fn name(&self) -> &'static str {
        match self {
            Scheme::Emv => "emv",
            Scheme::Visa2 => "visa2",
            Scheme::Kdf3 => "kdf3",
            Scheme::Aes => "aes",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scheme {
    type Err = DiversifyError;
    /// Accepts `emv`, `visa2`, `kdf3`, `aes` (case-insensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("emv") {
            Ok(Scheme::Emv)
        } else if s.eq_ignore_ascii_case("visa2") {
            Ok(Scheme::Visa2)
        } else if s.eq_ignore_ascii_case("kdf3") {
            Ok(Scheme::Kdf3)
        } else if s.eq_ignore_ascii_case("aes") {
            Ok(Scheme::Aes)
        } else {
            Err(DiversifyError::UnknownScheme)
        }
    }
}

/// Which key of a GP key set is derived; the value is the `kk` byte of the derivation data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum KeyRole {
    /// Secure channel encryption key (key id 1).
    Enc = 1,
    /// Secure channel MAC key (key id 2).
    Mac = 2,
    /// Data encryption key (key id 3).
    Dek = 3,
}

impl KeyRole {
    /// All three roles in key-id order.
    pub const ALL: [KeyRole; 3] = [KeyRole::Enc, KeyRole::Mac, KeyRole::Dek];
}

/// Why a diversification cannot be done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiversifyError {
    /// Scheme name not recognised.
    UnknownScheme,
    /// The scheme is not of the kind asked for (e.g. 3DES derivation data for `kdf3`).
    WrongSchemeKind,
    /// A master key length the scheme does not accept (16 for `emv`/`visa2`; 16, 24, 32 for `kdf3`).
    BadMasterLength(usize),
}

impl DiversifyError {
    /// Status word if a card-side caller must report it: `6A80`.
    pub fn sw(&self) -> Sw {
        Sw::INCORRECT_DATA
    }
}

impl fmt::Display for DiversifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiversifyError::UnknownScheme => {
                f.write_str("unknown diversification scheme (emv, visa2, kdf3, aes)")
            }
            DiversifyError::WrongSchemeKind => {
                f.write_str("operation does not apply to this diversification scheme")
            }
            DiversifyError::BadMasterLength(n) => {
                write!(f, "master key of {n} bytes not valid for this scheme")
            }
        }
    }
}

/// The 16 bytes that are 3DES-ECB encrypted under the master for `emv` and `visa2`.
///
/// Fails with [`DiversifyError::WrongSchemeKind`] for `kdf3`, whose PRF input is
/// [`kdf3_input`] instead, and for `aes`, whose input is [`aes_derivation_data`].
pub fn derivation_data(
    scheme: Scheme,
    kdd: &[u8; 10],
    role: KeyRole,
) -> Result<[u8; 16], DiversifyError> {
    let kk = role as u8;
    let [k0, k1, _, _, k4, k5, k6, k7, k8, k9] = *kdd;
    match scheme {
        Scheme::Emv => Ok([
            k4, k5, k6, k7, k8, k9, 0xF0, kk, k4, k5, k6, k7, k8, k9, 0x0F, kk,
        ]),
        Scheme::Visa2 => Ok([
            k0, k1, k4, k5, k6, k7, 0xF0, kk, k0, k1, k4, k5, k6, k7, 0x0F, kk,
        ]),
        Scheme::Kdf3 | Scheme::Aes => Err(DiversifyError::WrongSchemeKind),
    }
}

/// The `aes` scheme's domain tag, the last three bytes of every block (ASCII `AES`): keeps its
/// blocks apart from the `emv`/`visa2` patterns (`F0`/`0F` at bytes 6 and 14).
pub const AES_SCHEME_TAG: [u8; 3] = *b"AES";

/// The data the `aes` scheme encrypts with AES-ECB under the master to make a key of `key_len`
/// bytes (16, 24 or 32).
///
/// Layout (documented here because it is this project's own): `n = ceil(key_len / 16)` blocks of
/// 16 bytes, block `i` (1-based) being
///
/// ```text
/// KDD(10) ‖ kk(1) ‖ i(1) ‖ key_len(1) ‖ 41 45 53 ("AES")
/// ```
///
/// and the card key is the first `key_len` bytes of `AES-ECB(master, block_1 ‖ … ‖ block_n)`.
/// Why each field: the KDD makes the key per card; `kk` (01 ENC, 02 MAC, 03 DEK) per role; `i`
/// makes the blocks of a long key differ; `key_len` keeps an AES-128 key from being the prefix of
/// the AES-256 key of the same card and role; the tag separates the scheme from the 3DES ones.
/// ECB over independent blocks is exactly what `CKM_AES_ECB_ENCRYPT_DATA` computes in a token.
pub fn aes_derivation_data(
    kdd: &[u8; 10],
    role: KeyRole,
    key_len: usize,
) -> Result<Vec<u8>, DiversifyError> {
    let len = u8::try_from(key_len)
        .ok()
        .filter(|l| matches!(l, 16 | 24 | 32))
        .ok_or(DiversifyError::BadMasterLength(key_len))?;
    let blocks = key_len.div_ceil(16);
    let mut out = Vec::with_capacity(blocks * 16);
    for i in 1..=blocks {
        out.extend_from_slice(kdd);
        out.push(role as u8);
        out.push(i as u8);
        out.push(len);
        out.extend_from_slice(&AES_SCHEME_TAG);
    }
    Ok(out)
}

/// The `kdf3` PRF input for block `i` (1-based): `i ‖ 00 00 00 ‖ kk ‖ 00 ‖ KDD`.
pub fn kdf3_input(kdd: &[u8; 10], role: KeyRole, i: u8) -> [u8; 16] {
    let [k0, k1, k2, k3, k4, k5, k6, k7, k8, k9] = *kdd;
    [
        i, 0, 0, 0, role as u8, 0, k0, k1, k2, k3, k4, k5, k6, k7, k8, k9,
    ]
}

/// Derives a card key in software (reference implementation).
///
/// `emv`/`visa2` need a 16-byte 3DES master and give 16 bytes; `kdf3` and `aes` take a 16-, 24-
/// or 32-byte AES master and give a key of the same length.
pub fn derive_software(
    scheme: Scheme,
    master: &[u8],
    kdd: &[u8; 10],
    role: KeyRole,
) -> Result<Zeroizing<Vec<u8>>, DiversifyError> {
    match scheme {
        Scheme::Emv | Scheme::Visa2 => {
            let master = Des3Key::from_slice(master)
                .map_err(|_| DiversifyError::BadMasterLength(master.len()))?;
            let mut out = Zeroizing::new(derivation_data(scheme, kdd, role)?.to_vec());
            crypto::tdes_ecb_encrypt(&master, &mut out)
                .map_err(|_| DiversifyError::WrongSchemeKind)?;
            Ok(out)
        }
        Scheme::Kdf3 => {
            let master = AesKey::from_slice(master)
                .map_err(|_| DiversifyError::BadMasterLength(master.len()))?;
            let len = master.len();
            let mut out = Zeroizing::new(Vec::with_capacity(32));
            let mut i = 1u8;
            while out.len() < len {
                let block = Zeroizing::new(crypto::aes_cmac(&master, &[&kdf3_input(kdd, role, i)]));
                out.extend_from_slice(&*block);
                i = i.wrapping_add(1);
            }
            out.truncate(len);
            Ok(out)
        }
        Scheme::Aes => {
            let master = AesKey::from_slice(master)
                .map_err(|_| DiversifyError::BadMasterLength(master.len()))?;
            let len = master.len();
            let mut out = Zeroizing::new(aes_derivation_data(kdd, role, len)?);
            for chunk in out.chunks_exact_mut(16) {
                let mut block = Zeroizing::new([0u8; 16]);
                block.copy_from_slice(chunk);
                crypto::aes_encrypt_block(&master, &mut block);
                chunk.copy_from_slice(&*block);
            }
            out.truncate(len);
            Ok(out)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::kcv::kcv_des3;
    use alloc::string::ToString;

    use crate::util::h;
    fn kdd(s: &str) -> [u8; 10] {
        h(s).try_into().unwrap()
    }
    const K: &str = "404142434445464748494A4B4C4D4E4F";

    fn check(scheme: Scheme, kdd_hex: &str, expected: [&str; 3]) {
        for (role, exp) in KeyRole::ALL.into_iter().zip(expected) {
            let k = derive_software(scheme, &h(K), &kdd(kdd_hex), role).unwrap();
            assert_eq!(hex::encode_upper(&*k), exp, "{scheme} {role:?}");
        }
    }

    #[test]
    fn emv_table() {
        // GP-FACTS "Key diversification" table, emv rows 1 and 2 (self-test).
        check(
            Scheme::Emv,
            "00010203040506070809",
            [
                "0EF59FCBF8019B62E62AF6EA20B8BF25",
                "3E383EB6F2762B88155F76BDFED05A02",
                "64021E43C0C7D264A1C7C6D01E1C8761",
            ],
        );
        check(
            Scheme::Emv,
            "0102030405060708090A",
            [
                "6438A05AC377DF302423BC5E2038FB5B",
                "5A9402DDABC5B9497BBECE0884929B83",
                "ACB4C129B3912FB782A4EAEE043BAE95",
            ],
        );
        // GP-FACTS: KCVs C33013 / 6F4CA6 / BB8179 for row 1.
        let kcvs: Vec<[u8; 3]> = KeyRole::ALL
            .iter()
            .map(|r| {
                let k =
                    derive_software(Scheme::Emv, &h(K), &kdd("00010203040506070809"), *r).unwrap();
                kcv_des3(&Des3Key::from_slice(&k).unwrap())
            })
            .collect();
        assert_eq!(
            kcvs,
            [[0xC3, 0x30, 0x13], [0x6F, 0x4C, 0xA6], [0xBB, 0x81, 0x79]]
        );
    }

    #[test]
    fn visa2_table() {
        // GP-FACTS "Key diversification" table, visa2 row (self-test), KCVs 2BE598 / 58DA38 / 3C328E.
        check(
            Scheme::Visa2,
            "00010203040506070809",
            [
                "8510FC973208218CA86888BCEC203635",
                "1068B5FB6F06C78C7A4DFC343B21C78F",
                "2DAEE809C71405FF259C3BE695A1F66E",
            ],
        );
        let k = derive_software(
            Scheme::Visa2,
            &h(K),
            &kdd("00010203040506070809"),
            KeyRole::Dek,
        )
        .unwrap();
        assert_eq!(
            kcv_des3(&Des3Key::from_slice(&k).unwrap()),
            [0x3C, 0x32, 0x8E]
        );
    }

    #[test]
    fn kdf3_vector() {
        // GP-FACTS "kdf3" paragraph (self-test).
        check(
            Scheme::Kdf3,
            "00010203040506070809",
            [
                "808BC985A1069AD2A9AC94E0FE7B8843",
                "65942E0BF4F3F32AEFACBA5671456275",
                "6A74F6F6040CCA10D8A3FDC7914FD7CC",
            ],
        );
        // Longer masters produce keys of their own length.
        let k256 = derive_software(
            Scheme::Kdf3,
            &[0x40; 32],
            &kdd("00010203040506070809"),
            KeyRole::Enc,
        )
        .unwrap();
        assert_eq!(k256.len(), 32);
        let k192 = derive_software(
            Scheme::Kdf3,
            &[0x40; 24],
            &kdd("00010203040506070809"),
            KeyRole::Enc,
        )
        .unwrap();
        assert_eq!(k192.len(), 24);
    }

    #[test]
    fn aes_scheme_layout_and_reference() {
        // The layout documented on `aes_derivation_data`.
        let kdd = kdd("00010203040506070809");
        assert_eq!(
            aes_derivation_data(&kdd, KeyRole::Mac, 16).unwrap(),
            h("00010203040506070809 02 01 10 414553"
                .replace(' ', "")
                .as_str())
        );
        let d32 = aes_derivation_data(&kdd, KeyRole::Dek, 32).unwrap();
        assert_eq!(
            d32,
            h(
                "00010203040506070809 03 01 20 414553 00010203040506070809 03 02 20 414553"
                    .replace(' ', "")
                    .as_str()
            )
        );
        assert_eq!(
            aes_derivation_data(&kdd, KeyRole::Enc, 24).unwrap().len(),
            32
        );
        assert_eq!(
            aes_derivation_data(&kdd, KeyRole::Enc, 20),
            Err(DiversifyError::BadMasterLength(20))
        );
        // Reference: AES-ECB under the master, computed independently with the `aes` crate.
        use cipher::{BlockEncrypt, KeyInit};
        let enc = aes::Aes128::new_from_slice(&h(K)).unwrap();
        let mut block = aes_derivation_data(&kdd, KeyRole::Enc, 16).unwrap();
        enc.encrypt_block(block.as_mut_slice().into());
        let k = derive_software(Scheme::Aes, &h(K), &kdd, KeyRole::Enc).unwrap();
        assert_eq!(*k, block);
        // Keys of the three roles, and of the same card with a longer master, all differ.
        let mac = derive_software(Scheme::Aes, &h(K), &kdd, KeyRole::Mac).unwrap();
        assert_ne!(*k, *mac);
        let long = derive_software(Scheme::Aes, &[0x40; 32], &kdd, KeyRole::Enc).unwrap();
        assert_eq!(long.len(), 32);
        let mid = derive_software(Scheme::Aes, &[0x40; 24], &kdd, KeyRole::Enc).unwrap();
        assert_eq!(mid.len(), 24);
        assert_ne!(long[..24], mid[..]);
        // Master K, KDD 00..09 (computed independently with Python `cryptography`; KCVs by GPC B.6
        // 652C48 / E0E0AC / 237C30, which signer's in-token test checks).
        check(
            Scheme::Aes,
            "00010203040506070809",
            [
                "AFAC56CE7BA260CEDCB72A71EF9B0F5A",
                "56ECDEA9A8B29524D13194B8E2F106ED",
                "517399247EAF1C294DB099AD099FDDDC",
            ],
        );
        assert_eq!(
            derive_software(Scheme::Aes, &[0; 16], &kdd, KeyRole::Enc)
                .map(|k| hex::encode_upper(&*k))
                .unwrap(),
            AES_SCHEME_ZERO_MASTER_ENC
        );
    }

    /// `aes` scheme, master 00×16, KDD 00..09, ENC: computed independently (Python `cryptography`,
    /// AES-ECB of `00..09 01 01 10 414553`) and pinned so the layout cannot drift unnoticed.
    const AES_SCHEME_ZERO_MASTER_ENC: &str = "EF1115F909EA007A5D1DC579144CF392";

    #[test]
    fn derivation_data_layout() {
        let d = derivation_data(Scheme::Emv, &kdd("00010203040506070809"), KeyRole::Mac).unwrap();
        assert_eq!(
            d.to_vec(),
            h("040506070809F002040506070809 0F02"
                .replace(' ', "")
                .as_str())
        );
        let v = derivation_data(Scheme::Visa2, &kdd("00010203040506070809"), KeyRole::Enc).unwrap();
        assert_eq!(
            v.to_vec(),
            h("000104050607F001000104050607 0F01"
                .replace(' ', "")
                .as_str())
        );
        assert_eq!(
            derivation_data(Scheme::Kdf3, &[0; 10], KeyRole::Enc),
            Err(DiversifyError::WrongSchemeKind)
        );
        assert_eq!(
            kdf3_input(&kdd("00010203040506070809"), KeyRole::Dek, 2).to_vec(),
            h("0200000003000001020304050607 0809"
                .replace(' ', "")
                .as_str())
        );
    }

    #[test]
    fn names_and_errors() {
        for s in [Scheme::Emv, Scheme::Visa2, Scheme::Kdf3, Scheme::Aes] {
            assert_eq!(s.to_string().parse::<Scheme>().unwrap(), s);
        }
        assert_eq!("EMV".parse::<Scheme>().unwrap(), Scheme::Emv);
        assert_eq!("cps".parse::<Scheme>(), Err(DiversifyError::UnknownScheme));
        assert_eq!(
            derive_software(Scheme::Emv, &[0; 24], &[0; 10], KeyRole::Enc).unwrap_err(),
            DiversifyError::BadMasterLength(24)
        );
        assert_eq!(
            derive_software(Scheme::Kdf3, &[0; 8], &[0; 10], KeyRole::Enc).unwrap_err(),
            DiversifyError::BadMasterLength(8)
        );
    }
}
