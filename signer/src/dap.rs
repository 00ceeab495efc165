//! DAP signatures made and checked with keys in the vendor's token (GPC C.3).
//!
//! A DAP signs the LFDB hash. Symmetric DAP keys are per card (a master in the token, the card's key derived
//! from it and its KDD inside the token, so "each application has a unique signature that the card can
//! verify"), or one AES key for every card. Asymmetric DAP keys (RSA, ECDSA P-256) sign once for every
//! card; anyone can check them offline with the public key.
//!
//! What the token cannot do is refused, never worked around by exporting a key: a single 3DES DAP key
//! needs a retail MAC, for which PKCS#11 has no mechanism and which needs the key's single-DES halves as
//! separate objects; per-card 3DES DAP keys are derived half by half, so they work.

use crate::diversify::{derive_dap_key, CardDapKey};
use crate::error::Error;
use crate::package::{DapAlgorithm, DapRecord};
use gp_core::dap::{AsymmetricDap, HashAlg};
use gp_core::diversify::Scheme;
use keyman::hsm::signing::{PrivateKey, PublicKey};
use keyman::hsm::{KeyHandle, SecretKeyType, TokenSession};
use keyman::ledger::Output;
use sha2::{Digest, Sha256};
use std::str::FromStr;
use subtle::ConstantTimeEq;

/// The kind of DAP key named on the command line (`--dap`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DapKind {
    /// AES key: AES-CMAC over a SHA-2 LFDB hash.
    Aes,
    /// Triple-DES key: retail MAC over the SHA-1 LFDB hash.
    Des,
    /// RSA private key.
    Rsa,
    /// ECDSA P-256 private key.
    Ecdsa,
}

impl DapKind {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            DapKind::Aes => "aes",
            DapKind::Des => "des",
            DapKind::Rsa => "rsa",
            DapKind::Ecdsa => "ecdsa",
        }
    }
}

impl FromStr for DapKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "aes" => Ok(DapKind::Aes),
            "des" => Ok(DapKind::Des),
            "rsa" => Ok(DapKind::Rsa),
            "ecdsa" => Ok(DapKind::Ecdsa),
            other => Err(Error::Usage(format!(
                "--dap '{other}' is not one of aes, des, rsa, ecdsa"
            ))),
        }
    }
}

enum KeyRef {
    Secret(KeyHandle),
    Private(PrivateKey),
}

/// A DAP key in the token, checked against the requested kind and diversification before any signing.
pub struct DapKey<'s, 'h> {
    session: &'s TokenSession<'h>,
    key: KeyRef,
    label: String,
    algorithm: DapAlgorithm,
    diversify: Option<Scheme>,
    key_check: String,
    ledger_key: Output,
}

impl<'s, 'h> DapKey<'s, 'h> {
    /// Finds the key labelled `label` and checks it can make `kind` DAPs (per card with `diversify`).
    pub fn open(
        session: &'s TokenSession<'h>,
        kind: DapKind,
        label: &str,
        diversify: Option<Scheme>,
    ) -> Result<DapKey<'s, 'h>, Error> {
        let symmetric =
            |handle: KeyHandle, algorithm: DapAlgorithm| -> Result<DapKey<'s, 'h>, Error> {
                let kcv = session.kcv(handle)?;
                let info = session.key_info(handle)?;
                Ok(DapKey {
                    session,
                    key: KeyRef::Secret(handle),
                    label: label.to_string(),
                    algorithm,
                    diversify,
                    key_check: kcv.to_string(),
                    ledger_key: Output::Key {
                        label: label.to_string(),
                        id_hex: hex::encode(&info.id),
                        key_type: handle
                            .key_type()
                            .map_or("unknown", SecretKeyType::name)
                            .into(),
                        kcv_hex: Some(hex::encode(kcv.value)),
                        kcv_method: Some(ledger_kcv_method(kcv.method)),
                    },
                })
            };
        match (kind, diversify) {
            (DapKind::Des | DapKind::Rsa | DapKind::Ecdsa, Some(Scheme::Kdf3)) => Err(Error::Usage(
                "--diversify kdf3 makes AES keys: per-card DAPs by kdf3 use --dap aes".into(),
            )),
            (DapKind::Rsa | DapKind::Ecdsa, Some(s)) => Err(Error::Usage(format!(
                "--diversify {s}: asymmetric DAPs are one signature for every card; per-card DAPs use \
                 --dap aes or --dap des"
            ))),
            (DapKind::Des, None) => Err(Error::Hsm(keyman::Error::Unsupported(
                "a 3DES DAP is a retail MAC (ISO 9797-1 algorithm 3), for which PKCS#11 has no mechanism; \
                 the token could compute it only from the key's two single-DES halves, which it cannot \
                 split from one 3DES key, and the key is never exported. Use per-card DAPs \
                 (--cards FILE --diversify emv|visa2: each card's key is derived half by half in the \
                 token) or an AES DAP key"
                    .into(),
            ))),
            (DapKind::Des, Some(Scheme::Aes)) => Err(Error::Usage(
                "--dap des needs a 3DES master and --diversify emv or visa2".into(),
            )),
            (DapKind::Des, Some(_)) => {
                let h = session.find_secret_key(label)?;
                if !h.key_type().is_some_and(SecretKeyType::is_des) {
                    return Err(Error::Usage(format!(
                        "--dap des: key '{label}' is not a triple-DES key"
                    )));
                }
                symmetric(h, DapAlgorithm::Des3RetailMac)
            }
            (DapKind::Aes, d) => {
                let h = session.find_secret_key(label)?;
                let is_des = h.key_type().is_some_and(SecretKeyType::is_des);
                match d {
                    None | Some(Scheme::Aes | Scheme::Kdf3) if is_des => Err(Error::Usage(format!(
                        "--dap aes: key '{label}' is a triple-DES key"
                    ))),
                    Some(Scheme::Emv | Scheme::Visa2) if !is_des => Err(Error::Usage(format!(
                        "--diversify {}: needs a triple-DES master; '{label}' is AES (use --diversify aes)",
                        d.map_or("", |s| s.name())
                    ))),
                    _ => symmetric(h, DapAlgorithm::AesCmac),
                }
            }
            (DapKind::Rsa | DapKind::Ecdsa, None) => {
                let private = session.find_private_key(label)?;
                let algorithm = match (kind, private.format) {
                    (DapKind::Rsa, AsymmetricDap::RsaPkcs1Sha1) => DapAlgorithm::RsaPkcs1Sha1,
                    (DapKind::Rsa, AsymmetricDap::RsaPssSha256) => DapAlgorithm::RsaPssSha256,
                    (DapKind::Ecdsa, AsymmetricDap::EcdsaP256Sha256) => DapAlgorithm::EcdsaP256Sha256,
                    _ => {
                        return Err(Error::Usage(format!(
                            "--dap {}: key '{label}' is a {} key",
                            if kind == DapKind::Rsa { "rsa" } else { "ecdsa" },
                            private.format
                        )))
                    }
                };
                let public = session.find_public_key(label)?;
                Ok(DapKey {
                    session,
                    key: KeyRef::Private(private),
                    label: label.to_string(),
                    algorithm,
                    diversify: None,
                    key_check: public_key_check(&public),
                    ledger_key: Output::PublicKey {
                        label: label.to_string(),
                        pem: public_key_pem(&public)?,
                    },
                })
            }
        }
    }

    /// The algorithm the key signs with.
    pub fn algorithm(&self) -> DapAlgorithm {
        self.algorithm
    }

    /// The key's label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Which key this is, for manifests: KCV with method, or SHA-256 of the public key.
    pub fn key_check(&self) -> &str {
        &self.key_check
    }

    /// What the ledger records about the key (never its value).
    pub fn ledger_output(&self) -> Output {
        self.ledger_key.clone()
    }

    /// Fails unless the LFDB hash algorithm suits this key (SHA-1 for 3DES, SHA-2 for AES).
    pub fn check_hash(&self, alg: HashAlg) -> Result<(), Error> {
        if self.algorithm.hash_ok(alg) {
            Ok(())
        } else {
            Err(Error::Usage(format!(
                "--hash: a {} DAP may not sign a {alg} LFDB hash ({})",
                self.algorithm.name(),
                if self.algorithm == DapAlgorithm::Des3RetailMac {
                    "3DES DAPs sign the SHA-1 hash: use --hash sha1"
                } else {
                    "AES DAPs sign a SHA-2 hash: use --hash sha256 or longer"
                }
            )))
        }
    }

    /// The DAP for every card (no diversification).
    pub fn sign(&self, lfdb_hash: &[u8]) -> Result<Vec<u8>, Error> {
        match (&self.key, self.diversify) {
            (KeyRef::Secret(h), None) => Ok(self.session.aes_cmac(*h, lfdb_hash)?.to_vec()),
            (KeyRef::Private(p), None) => Ok(self.session.sign_dap(p, lfdb_hash)?),
            (_, Some(_)) => Err(Error::Usage(
                "this DAP key is a per-card master; a card's KDD is needed".into(),
            )),
        }
    }

    /// The DAP for the card with `kdd`, made with that card's key derived in the token.
    pub fn sign_for_card(&self, kdd: &[u8; 10], lfdb_hash: &[u8]) -> Result<Vec<u8>, Error> {
        let (KeyRef::Secret(master), Some(scheme)) = (&self.key, self.diversify) else {
            return Err(Error::Usage(
                "this DAP key is not a per-card master (use --diversify)".into(),
            ));
        };
        let aes_out = self.algorithm == DapAlgorithm::AesCmac;
        match derive_dap_key(self.session, *master, scheme, kdd, aes_out)? {
            CardDapKey::Aes(k) => Ok(self.session.aes_cmac(k.handle(), lfdb_hash)?.to_vec()),
            CardDapKey::Des(k1, k2) => Ok(self.session.retail_mac(&k1, &k2, lfdb_hash)?.to_vec()),
        }
    }

    /// A manifest record for a signature this key made.
    pub fn record(
        &self,
        sd_aid: &[u8],
        card: Option<(&str, &[u8; 10])>,
        signature: &[u8],
    ) -> DapRecord {
        DapRecord {
            sd_aid: hex::encode_upper(sd_aid),
            algorithm: self.algorithm.name().into(),
            key: self.label.clone(),
            key_check: self.key_check.clone(),
            card: card.map(|(id, _)| id.to_string()),
            kdd: card.map(|(_, kdd)| hex::encode_upper(kdd)),
            diversification: card.and(self.diversify).map(|s| s.name().to_string()),
            signature: hex::encode_upper(signature),
        }
    }

    /// Re-checks a record with this key: symmetric DAPs are recomputed in the token and compared in
    /// constant time; asymmetric ones are verified with the public key.
    pub fn verify(&self, record: &DapRecord, lfdb_hash: &[u8]) -> Result<(), Error> {
        let sig = hex::decode(&record.signature)
            .map_err(|_| Error::Verification("DAP signature is not hex".into()))?;
        match &self.key {
            KeyRef::Private(_) => {
                let public = self.session.find_public_key(&self.label)?;
                verify_with_public(&public, record, lfdb_hash)
            }
            KeyRef::Secret(_) => {
                let expect = match &record.kdd {
                    Some(kdd) => {
                        let kdd = crate::cards::parse_kdd(kdd).map_err(Error::Verification)?;
                        self.sign_for_card(&kdd, lfdb_hash)?
                    }
                    None => self.sign(lfdb_hash)?,
                };
                if expect.len() == sig.len() && bool::from(expect.ct_eq(&sig)) {
                    Ok(())
                } else {
                    Err(Error::Verification(format!(
                        "DAP{} does not verify with key '{}'",
                        record
                            .card
                            .as_deref()
                            .map(|c| format!(" for card {c}"))
                            .unwrap_or_default(),
                        self.label
                    )))
                }
            }
        }
    }
}

/// Verifies an asymmetric DAP record with a public key (from the token or a PEM file).
pub fn verify_with_public(
    public: &PublicKey,
    record: &DapRecord,
    lfdb_hash: &[u8],
) -> Result<(), Error> {
    let sig = hex::decode(&record.signature)
        .map_err(|_| Error::Verification("DAP signature is not hex".into()))?;
    let algorithm = DapAlgorithm::parse(&record.algorithm);
    let result = match (public, algorithm) {
        (
            PublicKey::Rsa { modulus, exponent },
            Some(DapAlgorithm::RsaPkcs1Sha1 | DapAlgorithm::RsaPssSha256),
        ) => gp_core::dap::verify_dap_rsa(modulus, exponent, lfdb_hash, &sig),
        (PublicKey::EcP256 { point }, Some(DapAlgorithm::EcdsaP256Sha256)) => {
            gp_core::dap::verify_dap_ecdsa_p256(point, lfdb_hash, &sig)
        }
        _ => {
            return Err(Error::Verification(format!(
                "a {} DAP cannot be checked with this public key",
                record.algorithm
            )))
        }
    };
    result.map_err(|_| {
        Error::Verification(format!(
            "{} DAP for security domain {} does not verify with the public key",
            record.algorithm, record.sd_aid
        ))
    })
}

/// SHA-256 of the public key's bytes (`modulus ‖ exponent`, or the SEC1 point), in hex with its method.
pub fn public_key_check(public: &PublicKey) -> String {
    let digest = match public {
        PublicKey::Rsa { modulus, exponent } => {
            let mut h = Sha256::new();
            h.update(strip_zeros(modulus));
            h.update(strip_zeros(exponent));
            h.finalize()
        }
        PublicKey::EcP256 { point } => Sha256::digest(point),
    };
    format!("{} (SHA-256 of the public key)", hex::encode_upper(digest))
}

fn strip_zeros(v: &[u8]) -> &[u8] {
    let first = v.iter().position(|b| *b != 0).unwrap_or(v.len());
    v.get(first..).unwrap_or_default()
}

/// A public key as a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) block, for the ledger and for verifiers.
pub fn public_key_pem(public: &PublicKey) -> Result<String, Error> {
    use p256::pkcs8::EncodePublicKey as _;
    let bad = |e: String| Error::Verification(format!("public key: {e}"));
    match public {
        PublicKey::Rsa { modulus, exponent } => {
            let key = rsa::RsaPublicKey::new(
                rsa::BigUint::from_bytes_be(modulus),
                rsa::BigUint::from_bytes_be(exponent),
            )
            .map_err(|e| bad(e.to_string()))?;
            key.to_public_key_pem(rsa::pkcs8::LineEnding::LF)
                .map_err(|e| bad(e.to_string()))
        }
        PublicKey::EcP256 { point } => {
            let key = p256::PublicKey::from_sec1_bytes(point).map_err(|e| bad(e.to_string()))?;
            key.to_public_key_pem(p256::pkcs8::LineEnding::LF)
                .map_err(|e| bad(e.to_string()))
        }
    }
}

/// Reads a PEM `PUBLIC KEY` block (RSA or EC P-256).
pub fn public_key_from_pem(text: &str) -> Result<PublicKey, Error> {
    use p256::pkcs8::DecodePublicKey as _;
    use rsa::traits::PublicKeyParts;
    if let Ok(k) = rsa::RsaPublicKey::from_public_key_pem(text) {
        return Ok(PublicKey::Rsa {
            modulus: k.n().to_bytes_be(),
            exponent: k.e().to_bytes_be(),
        });
    }
    if let Ok(k) = p256::PublicKey::from_public_key_pem(text) {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        return Ok(PublicKey::EcP256 {
            point: k.to_encoded_point(false).as_bytes().to_vec(),
        });
    }
    Err(Error::Verification(
        "--public-key: not a PEM PUBLIC KEY block for RSA or EC P-256".into(),
    ))
}

/// The ledger's name for a KCV method.
pub fn ledger_kcv_method(m: gp_core::kcv::KcvMethod) -> keyman::ledger::KcvMethod {
    use gp_core::kcv::KcvMethod as G;
    use keyman::ledger::KcvMethod as L;
    match m {
        G::Des3Zeros => L::Des3Zeros,
        G::AesOnes => L::AesOnes,
        G::AesZeros => L::AesZeros,
    }
}
