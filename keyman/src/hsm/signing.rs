//! Token operations for `signer`: DAP signatures (AES-CMAC, 3DES retail MAC, RSA, ECDSA), load-file
//! encryption, per-card derivations beyond the 3DES schemes, public keys, and extra sessions for workers.
//!
//! Why a module of its own: these are the operations a vendor's or a bureau's signing pipeline runs, kept
//! apart from the ceremony operations in the parent module. The parent's rules hold here too: no function
//! returns secret key bytes, derived keys are session objects destroyed when their guard drops, and where a
//! token cannot do something inside (SoftHSM2 has no SP 800-108 KDF, no retail-MAC mechanism) the function
//! says so with [`Error::Unsupported`] instead of falling back to exporting a key.

use super::capabilities::Feature;
use super::{raw, DerivedKey, KeyHandle, SecretKeyType, TokenSession, Usage};
use crate::error::Error;
use cryptoki::mechanism::kbkdf::{
    Endianness, KbkdfCounterFormat, KbkdfParams, PrfDataParam, PrfDataParamType,
};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType as CkKeyType, ObjectClass, ObjectHandle};
use gp_core::dap::AsymmetricDap;
use sha2::Digest;
use std::num::NonZeroUsize;

/// DER of the P-256 curve OID (`1.2.840.10045.3.1.7`), as `CKA_EC_PARAMS` holds it.
const P256_OID_DER: [u8; 10] = [0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];

/// A private signing key in the token: the handle and what kind of key it is, never its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrivateKey {
    handle: ObjectHandle,
    /// The DAP format this key produces (from its type and, for RSA, its modulus length).
    pub format: AsymmetricDap,
    /// Key size in bits (RSA modulus, or 256 for P-256).
    pub bits: usize,
}

/// A public key read from the token, in the form PUT KEY and the DAP verifiers take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicKey {
    /// RSA: big-endian modulus and public exponent.
    Rsa {
        /// Modulus.
        modulus: Vec<u8>,
        /// Public exponent.
        exponent: Vec<u8>,
    },
    /// ECDSA P-256: the uncompressed SEC1 point `04 ‖ X ‖ Y`.
    EcP256 {
        /// The point.
        point: Vec<u8>,
    },
}

/// One half `K` of a two-key triple-DES key, held as the session object `K ‖ K` (two-key 3DES with equal
/// halves, which computes single DES under `K`). Exists because PKCS#11 has no ISO 9797-1 algorithm 3
/// (retail MAC) mechanism and SoftHSM2 (on OpenSSL 3) refuses single-DES mechanisms: with the halves as
/// separate objects the token still computes the MAC inside (single-DES CBC under K1, then decrypt under
/// K2 and encrypt under K1) with its 3DES mechanisms.
pub struct DesHalf<'s, 'h> {
    key: DerivedKey<'s, 'h>,
}

impl<'h> TokenSession<'h> {
    /// Opens another session on the same token for a worker thread. PKCS#11 logs in per application
    /// and token, so the new session is already logged in and no PIN is read again.
    pub fn another_session(&self) -> Result<TokenSession<'h>, Error> {
        let slot = self.session.get_session_info()?.slot_id();
        let session = self.hsm.inner.ctx.open_rw_session(slot)?;
        Ok(TokenSession {
            hsm: self.hsm,
            session,
            label: self.label.clone(),
            serial: self.serial.clone(),
        })
    }

    /// Whether the token offers `mechanism` at all.
    ///
    /// Asked per mechanism by number (`C_GetMechanismInfo`, cached), never through `cryptoki`'s mechanism
    /// list, which silently leaves out mechanisms it has no name for (SoftHSM2's DES2-KEY-GEN, DES3-CBC, …).
    pub fn has_mechanism(&self, mechanism: MechanismType) -> Result<bool, Error> {
        let slot = self.session.get_session_info()?.slot_id();
        Ok(self
            .hsm
            .inner
            .mechanism_flags(slot.id(), mechanism.into())?
            .is_some())
    }

    /// Whether the token can wrap keys with `mechanism` (its mechanism info has the wrap flag).
    pub fn can_wrap_with(&self, mechanism: MechanismType) -> Result<bool, Error> {
        self.can(mechanism, super::Capability::Wrap)
    }

    /// Derives a key inside the token with NIST SP 800-108 in counter mode, PRF AES-CMAC under `master`
    /// (`CKM_SP800_108_COUNTER_KDF`, PKCS#11 3.0): the PRF input of block `i` is `before ‖ i(1) ‖ after`,
    /// blocks until `out`'s length is produced. Both the `kdf3` scheme (`before` empty) and SCP03's KDF
    /// (`before` = label, separator and L) have this form. The result is a sensitive session object of
    /// type `out`, usable for `usages`, extractable (wrapped only) when `wrap_out` is set, and destroyed
    /// when the guard drops.
    ///
    /// Fails with the capability probe's refusal when the token lacks the mechanism: the master is never
    /// exported to compute it outside.
    pub fn derive_counter_kdf<'s>(
        &'s self,
        master: KeyHandle,
        before: &[u8],
        after: &[u8],
        out: SecretKeyType,
        usages: &[Usage],
        wrap_out: bool,
    ) -> Result<DerivedKey<'s, 'h>, Error> {
        self.way_for(Feature::DeriveKdf3)?;
        if out.is_des() || master.key_type.is_some_and(SecretKeyType::is_des) {
            return Err(self.key_error(
                "SP 800-108 with AES-CMAC needs an AES master and makes AES keys".into(),
            ));
        }
        let counter = KbkdfCounterFormat::new(Endianness::Big, NonZeroUsize::MIN.saturating_add(7));
        let mut params = Vec::with_capacity(3);
        if !before.is_empty() {
            params.push(PrfDataParam::new(PrfDataParamType::ByteArray(before)));
        }
        params.push(PrfDataParam::new(PrfDataParamType::IterationVariable(
            Some(&counter),
        )));
        if !after.is_empty() {
            params.push(PrfDataParam::new(PrfDataParamType::ByteArray(after)));
        }
        let mechanism =
            Mechanism::KbkdfCounter(KbkdfParams::new(MechanismType::AES_CMAC, &params, None));
        let template = self.session_key_template(out, usages, wrap_out);
        let handle = self
            .session
            .derive_key(&mechanism, master.handle, &template)
            .map_err(|e| match e {
                cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::KeyFunctionNotPermitted, _)
                    if wrap_out =>
                {
                    Error::Unsupported(format!(
                        "token '{}' derives no extractable key from a master that is not extractable \
                         (NSS softokn's rule), and a key for PUT KEY must leave the token wrapped; only a \
                         master made with extractable: true can serve PUT KEY on this token",
                        self.label
                    ))
                }
                other => other.into(),
            })?;
        Ok(DerivedKey {
            session: self,
            key: KeyHandle {
                handle,
                key_type: Some(out),
            },
        })
    }

    /// The one private key labelled `label`: RSA (any size up to 4096 bits) or EC on P-256.
    pub fn find_private_key(&self, label: &str) -> Result<PrivateKey, Error> {
        let handle = self.one_object(ObjectClass::PRIVATE_KEY, label, "private key")?;
        let (kind, bits) = self.asymmetric_kind(handle, label)?;
        Ok(PrivateKey {
            handle,
            format: kind,
            bits,
        })
    }

    /// The public key labelled `label` (the public half of a signing key pair).
    pub fn find_public_key(&self, label: &str) -> Result<PublicKey, Error> {
        let handle = self.one_object(ObjectClass::PUBLIC_KEY, label, "public key")?;
        let attrs = self.session.get_attributes(
            handle,
            &[
                AttributeType::KeyType,
                AttributeType::Modulus,
                AttributeType::PublicExponent,
                AttributeType::EcParams,
                AttributeType::EcPoint,
            ],
        )?;
        let mut key_type = None;
        let (mut modulus, mut exponent, mut params, mut point) = (None, None, None, None);
        for a in attrs {
            match a {
                Attribute::KeyType(t) => key_type = Some(t),
                Attribute::Modulus(m) => modulus = Some(m),
                Attribute::PublicExponent(e) => exponent = Some(e),
                Attribute::EcParams(p) => params = Some(p),
                Attribute::EcPoint(p) => point = Some(p),
                _ => {}
            }
        }
        match key_type {
            Some(t) if t == CkKeyType::RSA => match (modulus, exponent) {
                (Some(modulus), Some(exponent)) => Ok(PublicKey::Rsa { modulus, exponent }),
                _ => Err(self.key_error(format!("RSA public key '{label}' has no modulus"))),
            },
            Some(t) if t == CkKeyType::EC => {
                if params.as_deref() != Some(&P256_OID_DER[..]) {
                    return Err(self.key_error(format!(
                        "EC public key '{label}' is not on P-256, the curve GP DAPs use"
                    )));
                }
                let point = point.as_deref().and_then(unwrap_ec_point).ok_or_else(|| {
                    self.key_error(format!("EC public key '{label}' has a malformed point"))
                })?;
                Ok(PublicKey::EcP256 { point })
            }
            _ => Err(self.key_error(format!("public key '{label}' is neither RSA nor EC"))),
        }
    }

    /// An asymmetric DAP over `lfdb_hash`, made in the token in the format the key prescribes
    /// (GPC C.3): RSA ≤ 1024 bits PKCS#1 v1.5 SHA-1, larger RSA PSS SHA-256 with a 32-byte salt,
    /// ECDSA P-256 over SHA-256 as `r ‖ s`. The LFDB hash is the message; the mechanism hashes it again.
    pub fn sign_dap(&self, key: &PrivateKey, lfdb_hash: &[u8]) -> Result<Vec<u8>, Error> {
        let sig = match key.format {
            AsymmetricDap::RsaPkcs1Sha1 => {
                self.session
                    .sign(&Mechanism::Sha1RsaPkcs, key.handle, lfdb_hash)?
            }
            AsymmetricDap::RsaPssSha256 => {
                let params = PkcsPssParams {
                    hash_alg: MechanismType::SHA256,
                    mgf: PkcsMgfType::MGF1_SHA256,
                    s_len: 32.into(),
                };
                self.session
                    .sign(&Mechanism::Sha256RsaPkcsPss(params), key.handle, lfdb_hash)?
            }
            AsymmetricDap::EcdsaP256Sha256 => {
                // SoftHSM2 has no CKM_ECDSA_SHA256: hash here (public data) and sign the digest.
                let digest = sha2::Sha256::digest(lfdb_hash);
                self.session.sign(&Mechanism::Ecdsa, key.handle, &digest)?
            }
        };
        let expected = match key.format {
            AsymmetricDap::EcdsaP256Sha256 => 64,
            _ => key.bits.div_ceil(8),
        };
        if sig.len() != expected {
            return Err(Error::Token(format!(
                "the token returned a {}-byte signature; {} expects {expected}",
                sig.len(),
                key.format
            )));
        }
        Ok(sig)
    }

    /// A delegated-management token (GPC C.4) over `input`, made in the token in the format the key
    /// prescribes: the same formats as an asymmetric DAP (B.3, B.4), but the message is the token
    /// input (`P1 ‖ P2 ‖ Lc' ‖ data`) instead of an LFDB hash. A function of its own so that the card
    /// issuer's token signing reads as what it is in the code that calls it.
    pub fn sign_token(&self, key: &PrivateKey, input: &[u8]) -> Result<Vec<u8>, Error> {
        self.sign_dap(key, input)
    }

    /// Derives one half of a per-card two-key 3DES key: `K = 3DES-ECB(master, data8)`, held as the
    /// session object `K ‖ K` derived from `data8 ‖ data8`. Because ECB treats blocks independently, the
    /// halves derived from the two 8-byte halves of the 16 derivation bytes are exactly K1 and K2 of the
    /// key [`TokenSession::derive_by_encryption`] would make from all 16.
    pub fn derive_des_half<'s>(
        &'s self,
        master: KeyHandle,
        data8: &[u8; 8],
    ) -> Result<DesHalf<'s, 'h>, Error> {
        if !master.key_type.is_some_and(SecretKeyType::is_des) {
            return Err(self.key_error("a DES half needs a triple-DES master".into()));
        }
        let template = self.session_key_template(
            SecretKeyType::Des3TwoKey,
            &[Usage::Encrypt, Usage::Decrypt],
            false,
        );
        let mut doubled = [0u8; 16];
        for (d, s) in doubled.iter_mut().zip(data8.iter().chain(data8.iter())) {
            *d = *s;
        }
        let key = self.derive_session_object(
            raw::CKM_DES3_ECB_ENCRYPT_DATA,
            master,
            &doubled,
            template,
            None,
        )?;
        Ok(DesHalf { key })
    }

    /// ISO/IEC 9797-1 MAC algorithm 3 (retail MAC, padding method 2, zero ICV) computed in the token
    /// from the two single-DES halves of a key: the 3DES DAP of GPC B.1.2.2.
    pub fn retail_mac(
        &self,
        k1: &DesHalf<'_, '_>,
        k2: &DesHalf<'_, '_>,
        data: &[u8],
    ) -> Result<[u8; 8], Error> {
        let mut padded = data.to_vec();
        padded.push(0x80);
        while padded.len() % 8 != 0 {
            padded.push(0);
        }
        let split = padded.len().saturating_sub(8);
        let (head, last) = padded.split_at(split);
        let chain: [u8; 8] = if head.is_empty() {
            [0; 8]
        } else {
            let out = self
                .session
                .encrypt(&Mechanism::Des3Cbc([0; 8]), k1.key.key.handle, head)?;
            last8(&out)?
        };
        let mut x = [0u8; 8];
        for ((o, a), b) in x.iter_mut().zip(last).zip(chain) {
            *o = a ^ b;
        }
        let y = self
            .session
            .encrypt(&Mechanism::Des3Ecb, k1.key.key.handle, &x)?;
        let z = self
            .session
            .decrypt(&Mechanism::Des3Ecb, k2.key.key.handle, &y)?;
        let mac = self
            .session
            .encrypt(&Mechanism::Des3Ecb, k1.key.key.handle, &z)?;
        last8(&mac)
    }

    /// CBC encryption of whole blocks under `key` with `iv` (AES: 16 bytes, 3DES: 8), in the token:
    /// the ciphered load file (`D4`) for a security domain to decrypt.
    pub fn encrypt_cbc(&self, key: KeyHandle, iv: &[u8], data: &[u8]) -> Result<Vec<u8>, Error> {
        Ok(self
            .session
            .encrypt(&cbc_mechanism(key, iv)?, key.handle, data)?)
    }

    /// CBC decryption under `key`, in the token: lets `signer verify` check a ciphered load file with
    /// the vendor's key without the key leaving the token.
    pub fn decrypt_cbc(&self, key: KeyHandle, iv: &[u8], data: &[u8]) -> Result<Vec<u8>, Error> {
        Ok(self
            .session
            .decrypt(&cbc_mechanism(key, iv)?, key.handle, data)?)
    }

    fn one_object(
        &self,
        class: ObjectClass,
        label: &str,
        what: &str,
    ) -> Result<ObjectHandle, Error> {
        let found = self.session.find_objects(&[
            Attribute::Class(class),
            Attribute::Label(label.as_bytes().to_vec()),
        ])?;
        match found.as_slice() {
            [one] => Ok(*one),
            [] => Err(self.key_error(format!("no {what} labelled '{label}'"))),
            more => Err(self.key_error(format!(
                "{} objects of class {what} are labelled '{label}'; labels must be unique",
                more.len()
            ))),
        }
    }

    fn asymmetric_kind(
        &self,
        handle: ObjectHandle,
        label: &str,
    ) -> Result<(AsymmetricDap, usize), Error> {
        let attrs = self.session.get_attributes(
            handle,
            &[
                AttributeType::KeyType,
                AttributeType::Modulus,
                AttributeType::EcParams,
            ],
        )?;
        let mut key_type = None;
        let (mut modulus, mut params) = (None, None);
        for a in attrs {
            match a {
                Attribute::KeyType(t) => key_type = Some(t),
                Attribute::Modulus(m) => modulus = Some(m),
                Attribute::EcParams(p) => params = Some(p),
                _ => {}
            }
        }
        match key_type {
            Some(t) if t == CkKeyType::RSA => {
                let m = modulus.unwrap_or_default();
                let first = m.iter().position(|b| *b != 0).unwrap_or(m.len());
                let significant = m.get(first..).unwrap_or_default();
                let bits = significant.len() * 8
                    - significant
                        .first()
                        .map_or(0, |b| b.leading_zeros() as usize);
                if !(1024..=gp_core::dap::MAX_RSA_BITS).contains(&bits) {
                    return Err(self.key_error(format!(
                        "RSA key '{label}' has {bits} bits; DAP keys have 1024 to {} bits",
                        gp_core::dap::MAX_RSA_BITS
                    )));
                }
                Ok((AsymmetricDap::for_rsa_bits(bits), bits))
            }
            Some(t) if t == CkKeyType::EC => {
                if params.as_deref() != Some(&P256_OID_DER[..]) {
                    return Err(self.key_error(format!(
                        "EC key '{label}' is not on P-256, the curve GP DAPs use"
                    )));
                }
                Ok((AsymmetricDap::EcdsaP256Sha256, 256))
            }
            _ => Err(self.key_error(format!("private key '{label}' is neither RSA nor EC"))),
        }
    }
}

fn cbc_mechanism(key: KeyHandle, iv: &[u8]) -> Result<Mechanism<'static>, Error> {
    match key.key_type {
        Some(t) if t.is_des() => {
            let iv: [u8; 8] = iv
                .try_into()
                .map_err(|_| Error::Token("a 3DES CBC IV has 8 bytes".into()))?;
            Ok(Mechanism::Des3Cbc(iv))
        }
        Some(_) => {
            let iv: [u8; 16] = iv
                .try_into()
                .map_err(|_| Error::Token("an AES CBC IV has 16 bytes".into()))?;
            Ok(Mechanism::AesCbc(iv))
        }
        None => Err(Error::Token("key of unknown type for CBC".into())),
    }
}

fn last8(v: &[u8]) -> Result<[u8; 8], Error> {
    v.len()
        .checked_sub(8)
        .and_then(|at| v.get(at..))
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .ok_or_else(|| Error::Token(format!("DES returned {} bytes", v.len())))
}

/// `CKA_EC_POINT` is a DER OCTET STRING around the SEC1 point (some tokens give the bare point).
fn unwrap_ec_point(v: &[u8]) -> Option<Vec<u8>> {
    match v {
        [0x04, 0x41, rest @ ..] if rest.len() == 65 => Some(rest.to_vec()),
        [0x04, ..] if v.len() == 65 => Some(v.to_vec()),
        _ => None,
    }
}
