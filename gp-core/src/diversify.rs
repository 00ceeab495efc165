//! Per-card key diversification schemes known to off-card tools as `emv`, `visa2` and `kdf3`.
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
}

impl Scheme {
    /// The name used on command lines and in configuration files.
    pub fn name(&self) -> &'static str {
        match self {
            Scheme::Emv => "emv",
            Scheme::Visa2 => "visa2",
            Scheme::Kdf3 => "kdf3",
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
    /// Accepts `emv`, `visa2`, `kdf3` (case-insensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("emv") {
            Ok(Scheme::Emv)
        } else if s.eq_ignore_ascii_case("visa2") {
            Ok(Scheme::Visa2)
        } else if s.eq_ignore_ascii_case("kdf3") {
            Ok(Scheme::Kdf3)
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
                f.write_str("unknown diversification scheme (emv, visa2, kdf3)")
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
/// [`kdf3_input`] instead.
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
        Scheme::Kdf3 => Err(DiversifyError::WrongSchemeKind),
    }
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
/// `emv`/`visa2` need a 16-byte 3DES master and give 16 bytes; `kdf3` takes a 16-, 24- or 32-byte
/// AES master and gives a key of the same length.
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
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::kcv::kcv_des3;
    use alloc::string::ToString;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }
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
        for s in [Scheme::Emv, Scheme::Visa2, Scheme::Kdf3] {
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
