//! Ceremony operations on keys: key pairs, keys formed from components, export as components, key
//! exchange under a KEK, public keys, capability checks and PIN changes.
//!
//! Why a module of its own: these are what a ceremony does once in a key's life, each followed by
//! reading the result back from the token and comparing it with what was asked; the parent module holds
//! what every tool does every day (find, derive, use).

use super::{first3, Kcv, KeyHandle, KeyInfo, SecretKeySpec, SecretKeyType, TokenSession, Usage};
use crate::error::Error;
use crate::secret::KeyValue;
use cryptoki::error::RvError;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType as CkKeyType, ObjectClass, ObjectHandle};
use cryptoki::session::UserType;
use gp_core::kcv::KcvMethod;
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use zeroize::Zeroizing;

/// DER of the P-256 curve OID (`1.2.840.10045.3.1.7`), as `CKA_EC_PARAMS` holds it.
const P256_PARAMS: [u8; 10] = [0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];

/// Asymmetric key types a ceremony makes: DAP and token-signing keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum KeyPairType {
    /// RSA with a 2048-bit modulus and public exponent 65537.
    Rsa2048,
    /// RSA with a 3072-bit modulus and public exponent 65537.
    Rsa3072,
    /// ECDSA on NIST P-256.
    EcP256,
}

impl KeyPairType {
    /// Short display name ("RSA-2048", "EC-P256").
    pub fn name(self) -> &'static str {
        match self {
            KeyPairType::Rsa2048 => "RSA-2048",
            KeyPairType::Rsa3072 => "RSA-3072",
            KeyPairType::EcP256 => "EC-P256",
        }
    }

    /// Usages the private key of this type may have (the public half gets the matching ones).
    pub fn private_usages(self) -> &'static [Usage] {
        match self {
            KeyPairType::Rsa2048 | KeyPairType::Rsa3072 => {
                &[Usage::Sign, Usage::Decrypt, Usage::Unwrap]
            }
            KeyPairType::EcP256 => &[Usage::Sign, Usage::Derive],
        }
    }

    fn mechanism(self) -> Mechanism<'static> {
        match self {
            KeyPairType::EcP256 => Mechanism::EccKeyPairGen,
            _ => Mechanism::RsaPkcsKeyPairGen,
        }
    }

    fn modulus_bits(self) -> Option<u64> {
        match self {
            KeyPairType::Rsa2048 => Some(2048),
            KeyPairType::Rsa3072 => Some(3072),
            KeyPairType::EcP256 => None,
        }
    }
}

/// The usage a public key gets for a private key's usage: the public half verifies what the private half
/// signs, encrypts what it decrypts, wraps what it unwraps.
fn public_usage(u: Usage) -> Option<Usage> {
    match u {
        Usage::Sign => Some(Usage::Verify),
        Usage::Decrypt => Some(Usage::Encrypt),
        Usage::Unwrap => Some(Usage::Wrap),
        _ => None,
    }
}

/// How to create a key pair in a token.
#[derive(Clone, Debug)]
pub struct KeyPairSpec {
    /// Label of both halves, unique in the token.
    pub label: String,
    /// `CKA_ID` of both halves.
    pub id: Vec<u8>,
    /// Algorithm and size.
    pub key_type: KeyPairType,
    /// Usages of the private key (see [`KeyPairType::private_usages`]).
    pub usages: Vec<Usage>,
    /// Whether the private key may ever leave the token wrapped. False unless a ceremony says otherwise.
    pub extractable: bool,
}

/// Both halves of a key pair in a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyPairHandles {
    public: ObjectHandle,
    private: ObjectHandle,
}

/// A key-wrapping mechanism for moving a key between tokens under a KEK.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WrapMechanism {
    /// `CKM_AES_KEY_WRAP` (RFC 3394): integrity-protected, the first choice.
    #[serde(rename = "AES-KEY-WRAP")]
    AesKeyWrap,
    /// `CKM_AES_KEY_WRAP_PAD` (RFC 5649).
    #[serde(rename = "AES-KEY-WRAP-PAD")]
    AesKeyWrapPad,
    /// `CKM_AES_CBC` with a zero IV: no integrity of its own, the KCV check stands in for it.
    #[serde(rename = "AES-CBC")]
    AesCbc,
    /// `CKM_DES3_CBC` with a zero IV, for triple-DES KEKs (absent from SoftHSM2 2.6.1).
    #[serde(rename = "DES3-CBC")]
    Des3Cbc,
}

impl WrapMechanism {
    /// The mechanisms a KEK of `kek` type can use, best first.
    pub fn candidates(kek: SecretKeyType) -> &'static [WrapMechanism] {
        if kek.is_des() {
            &[WrapMechanism::Des3Cbc]
        } else {
            &[
                WrapMechanism::AesKeyWrap,
                WrapMechanism::AesKeyWrapPad,
                WrapMechanism::AesCbc,
            ]
        }
    }

    /// The PKCS#11 name.
    pub fn name(self) -> &'static str {
        match self {
            WrapMechanism::AesKeyWrap => "AES-KEY-WRAP",
            WrapMechanism::AesKeyWrapPad => "AES-KEY-WRAP-PAD",
            WrapMechanism::AesCbc => "AES-CBC",
            WrapMechanism::Des3Cbc => "DES3-CBC",
        }
    }

    fn mechanism_type(self) -> MechanismType {
        match self {
            WrapMechanism::AesKeyWrap => MechanismType::AES_KEY_WRAP,
            WrapMechanism::AesKeyWrapPad => MechanismType::AES_KEY_WRAP_PAD,
            WrapMechanism::AesCbc => MechanismType::AES_CBC,
            WrapMechanism::Des3Cbc => MechanismType::DES3_CBC,
        }
    }

    fn mechanism(self) -> Mechanism<'static> {
        match self {
            WrapMechanism::AesKeyWrap => Mechanism::AesKeyWrap,
            WrapMechanism::AesKeyWrapPad => Mechanism::AesKeyWrapPad,
            WrapMechanism::AesCbc => Mechanism::AesCbc([0; 16]),
            WrapMechanism::Des3Cbc => Mechanism::Des3Cbc([0; 8]),
        }
    }

    /// Whether a key of `len` bytes can be wrapped with this mechanism at all.
    pub fn fits(self, len: usize) -> bool {
        match self {
            WrapMechanism::AesKeyWrap => len >= 16 && len % 8 == 0,
            WrapMechanism::AesKeyWrapPad => len > 0,
            WrapMechanism::AesCbc => len % 16 == 0,
            WrapMechanism::Des3Cbc => len % 8 == 0,
        }
    }
}

/// What a mechanism must be able to do in a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capability {
    /// Generate a secret key.
    Generate,
    /// Generate a key pair.
    GenerateKeyPair,
    /// Wrap a key.
    Wrap,
    /// Unwrap a key.
    Unwrap,
    /// Encrypt data.
    Encrypt,
}

impl SecretKeyType {
    /// The PKCS#11 mechanism that generates a key of this type.
    pub(crate) fn keygen(self) -> (Mechanism<'static>, MechanismType) {
        match self {
            SecretKeyType::Des3TwoKey => (Mechanism::Des2KeyGen, MechanismType::DES2_KEY_GEN),
            SecretKeyType::Des3ThreeKey => (Mechanism::Des3KeyGen, MechanismType::DES3_KEY_GEN),
            _ => (Mechanism::AesKeyGen, MechanismType::AES_KEY_GEN),
        }
    }

    /// The mechanism type that generates a key of this type.
    pub fn keygen_mechanism(self) -> MechanismType {
        self.keygen().1
    }
}

impl KeyPairType {
    /// The mechanism type that generates a pair of this type.
    pub fn keygen_mechanism(self) -> MechanismType {
        self.mechanism().mechanism_type()
    }
}

impl TokenSession<'_> {
    /// Whether the token offers `mechanism` for `what`: the same `C_GetMechanismInfo` answers, asked by
    /// number and cached, that the capability probe ([`super::capabilities`]) reads.
    pub fn can(&self, mechanism: MechanismType, what: Capability) -> Result<bool, Error> {
        let slot = self.session.get_session_info()?.slot_id();
        let flag = match what {
            Capability::Generate => cryptoki_sys::CKF_GENERATE,
            Capability::GenerateKeyPair => cryptoki_sys::CKF_GENERATE_KEY_PAIR,
            Capability::Wrap => cryptoki_sys::CKF_WRAP,
            Capability::Unwrap => cryptoki_sys::CKF_UNWRAP,
            Capability::Encrypt => cryptoki_sys::CKF_ENCRYPT,
        };
        Ok(self
            .hsm
            .inner
            .mechanism_flags(slot.id(), mechanism.into())?
            .is_some_and(|f| f & flag == flag))
    }

    /// The best mechanism this token can `what` (wrap or unwrap) with under a KEK of `kek` type for keys
    /// of `lens` bytes, or a clear refusal: a key is never exported in clear instead.
    pub fn wrap_mechanism(
        &self,
        kek: SecretKeyType,
        what: Capability,
        lens: &[usize],
    ) -> Result<WrapMechanism, Error> {
        for m in WrapMechanism::candidates(kek) {
            if lens.iter().all(|l| m.fits(*l)) && self.can(m.mechanism_type(), what)? {
                return Ok(*m);
            }
        }
        Err(Error::Unsupported(format!(
            "token '{}' cannot {} keys under a {} KEK (tried {}); keys are never moved in clear instead{}",
            self.label,
            if what == Capability::Unwrap { "unwrap" } else { "wrap" },
            kek.name(),
            WrapMechanism::candidates(kek)
                .iter()
                .map(|m| m.name())
                .collect::<Vec<_>>()
                .join(", "),
            if kek.is_des() {
                "; use an AES KEK"
            } else {
                ""
            }
        )))
    }

    /// Generates a key pair inside the token, then reads both halves back and fails on any difference
    /// from what was asked (destroying both halves).
    pub fn generate_key_pair(&self, spec: &KeyPairSpec) -> Result<KeyPairHandles, Error> {
        let mut public = vec![
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Label(spec.label.as_bytes().to_vec()),
            Attribute::Id(spec.id.clone()),
        ];
        match spec.key_type.modulus_bits() {
            Some(bits) => {
                public.push(Attribute::ModulusBits(bits.into()));
                public.push(Attribute::PublicExponent(vec![0x01, 0x00, 0x01]));
            }
            None => public.push(Attribute::EcParams(P256_PARAMS.to_vec())),
        }
        let public_usages: Vec<Usage> = spec
            .usages
            .iter()
            .filter_map(|u| public_usage(*u))
            .collect();
        for u in [Usage::Verify, Usage::Encrypt, Usage::Wrap] {
            public.push(u.attr(public_usages.contains(&u)));
        }
        public.push(Attribute::Modifiable(false));
        let mut private = vec![
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(spec.extractable),
            Attribute::Label(spec.label.as_bytes().to_vec()),
            Attribute::Id(spec.id.clone()),
        ];
        for u in [Usage::Sign, Usage::Decrypt, Usage::Unwrap, Usage::Derive] {
            private.push(u.attr(spec.usages.contains(&u)));
        }
        // Last: SoftHSM2 applies templates in order and refuses any attribute after this one.
        private.push(Attribute::Modifiable(false));
        let (public_handle, private_handle) =
            self.session
                .generate_key_pair(&spec.key_type.mechanism(), &public, &private)?;
        let pair = KeyPairHandles {
            public: public_handle,
            private: private_handle,
        };
        let mut problems = Vec::new();
        let info = self.object_info(private_handle, ObjectClass::PRIVATE_KEY)?;
        if info.label != spec.label || info.id != spec.id {
            problems.push("label or ID".to_string());
        }
        if info.type_name.as_deref() != Some(spec.key_type.name()) {
            problems.push(format!(
                "type {} instead of {}",
                info.type_name.as_deref().unwrap_or("unknown"),
                spec.key_type.name()
            ));
        }
        if !info.sensitive {
            problems.push("private key not sensitive".into());
        }
        if info.extractable != spec.extractable {
            problems.push(format!("private key extractable = {}", info.extractable));
        }
        if !spec.extractable && !info.never_extractable {
            problems.push("private key not never-extractable".into());
        }
        // `CKA_LOCAL` is the token's own statement, not asked for; NSS softokn 3.87 leaves it false on the
        // pairs its C_GenerateKeyPair makes, so a missing mark shows in the inventory and is not refused.
        for u in Usage::ALL {
            if info.usages.contains(&u) != spec.usages.contains(&u) {
                problems.push(format!("private usage {} differs", u.name()));
            }
        }
        let pinfo = self.object_info(public_handle, ObjectClass::PUBLIC_KEY)?;
        if pinfo.label != spec.label || pinfo.id != spec.id {
            problems.push("public key label or ID".to_string());
        }
        for u in [Usage::Verify, Usage::Encrypt, Usage::Wrap] {
            if pinfo.usages.contains(&u) != public_usages.contains(&u) {
                problems.push(format!("public usage {} differs", u.name()));
            }
        }
        if !problems.is_empty() {
            let _ = self.session.destroy_object(private_handle);
            let _ = self.session.destroy_object(public_handle);
            return Err(self.key_error(format!(
                "key pair '{}' came back with other attributes than asked ({}); it was destroyed",
                spec.label,
                problems.join(", ")
            )));
        }
        Ok(pair)
    }

    /// Destroys both halves of a key pair (used to undo an aborted ceremony).
    pub fn destroy_pair(&self, pair: KeyPairHandles) -> Result<(), Error> {
        self.session.destroy_object(pair.private)?;
        self.session.destroy_object(pair.public)?;
        Ok(())
    }

    /// Creates a persistent secret key from a value formed on the host (from custodians' components),
    /// wiping the copy in the template afterwards, and reads its attributes back.
    ///
    /// Why not derive in the token: PKCS#11 has no portable XOR derivation (SoftHSM2 has none), so the
    /// combined value passes through the host once, held in a wiped buffer.
    pub fn create_secret_from_value(
        &self,
        spec: &SecretKeySpec,
        value: &KeyValue,
    ) -> Result<(KeyHandle, KeyInfo), Error> {
        if value.key_type() != spec.key_type {
            return Err(self.key_error(format!(
                "a {} value cannot make the {} key '{}'",
                value.key_type().name(),
                spec.key_type.name(),
                spec.label
            )));
        }
        let mut template = vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(spec.key_type.ck_type()),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(spec.extractable),
            Attribute::Label(spec.label.as_bytes().to_vec()),
            Attribute::Id(spec.id.clone()),
        ];
        for u in Usage::ALL {
            template.push(u.attr(spec.usages.contains(&u)));
        }
        template.push(Attribute::Value(value.expose().to_vec()));
        // Last: SoftHSM2 applies the template in order and refuses any attribute after this one.
        template.push(Attribute::Modifiable(false));
        // Tokens that compute no check value themselves (NSS softokn) keep the one given here, computed
        // from the value on the host (the first three bytes of the ECB encryption of a zero block, the
        // PKCS#11 definition), so that a key that may not encrypt still has a KCV. A token that refuses
        // the attribute gets the template without it.
        let zero_method = if spec.key_type.is_des() {
            KcvMethod::Des3Zeros
        } else {
            KcvMethod::AesZeros
        };
        let mut with_check = template.clone();
        with_check.insert(
            with_check.len().saturating_sub(2),
            Attribute::CheckValue(value.kcv(zero_method)?.value.to_vec()),
        );
        let mut created = self.session.create_object(&with_check);
        super::wipe_values(&mut with_check);
        if let Err(cryptoki::error::Error::Pkcs11(
            RvError::AttributeTypeInvalid
            | RvError::AttributeReadOnly
            | RvError::AttributeValueInvalid
            | RvError::TemplateInconsistent,
            _,
        )) = created
        {
            created = self.session.create_object(&template);
        }
        super::wipe_values(&mut template);
        let handle = created?;
        let key = KeyHandle {
            handle,
            key_type: Some(spec.key_type),
        };
        let info = self.check_secret(key, spec, false)?;
        Ok((key, info))
    }

    /// Reads a secret key back and compares it with `spec`; on any difference it is destroyed.
    /// `generated` keys must also be never extractable (unless extractable).
    pub(crate) fn check_secret(
        &self,
        key: KeyHandle,
        spec: &SecretKeySpec,
        generated: bool,
    ) -> Result<KeyInfo, Error> {
        let info = self.key_info(key)?;
        let mut problems = Vec::new();
        if info.label != spec.label || info.id != spec.id {
            problems.push("label or ID".to_string());
        }
        // An unwrapped AES key on SoftHSM2 2.6.1 reads back as AES of length 0: the token does not record
        // the length. Its value (and so its length) was proven by the KCV check before it was kept.
        let aes_without_length = !generated
            && info.key_type.is_none()
            && !spec.key_type.is_des()
            && self.raw_key_type(key.handle)? == Some(CkKeyType::AES);
        if info.key_type != Some(spec.key_type) && !aes_without_length {
            problems.push(format!(
                "type {} instead of {}",
                info.key_type.map_or("unknown", SecretKeyType::name),
                spec.key_type.name()
            ));
        }
        if !info.sensitive {
            problems.push("not sensitive".into());
        }
        if info.extractable != spec.extractable {
            problems.push(format!("extractable = {}", info.extractable));
        }
        if generated && !spec.extractable && !info.never_extractable {
            problems.push("not never-extractable".into());
        }
        // `CKA_LOCAL` is not asked for but stated by the token, and not every token states it: NSS softokn
        // 3.87 leaves it false on secret keys made by its own C_GenerateKey. The key was generated by this
        // call, so a missing mark is shown in the inventory (not "local") rather than refused.
        for u in Usage::ALL {
            if info.usages.contains(&u) != spec.usages.contains(&u) {
                problems.push(format!("usage {} differs", u.name()));
            }
        }
        if !problems.is_empty() {
            let _ = self.session.destroy_object(key.handle);
            return Err(self.key_error(format!(
                "key '{}' came back with other attributes than asked ({}); it was destroyed",
                spec.label,
                problems.join(", ")
            )));
        }
        Ok(info)
    }

    /// The check value of `key` in a given `method`, computed by the token with the key itself (the key
    /// must be allowed to encrypt).
    pub fn kcv_by_encryption(&self, key: KeyHandle, method: KcvMethod) -> Result<Kcv, Error> {
        let (mech, block) = match method {
            KcvMethod::Des3Zeros => (Mechanism::Des3Ecb, vec![0u8; 8]),
            KcvMethod::AesOnes => (Mechanism::AesEcb, vec![1u8; 16]),
            KcvMethod::AesZeros => (Mechanism::AesEcb, vec![0u8; 16]),
        };
        let out = self.session.encrypt(&mech, key.handle, &block)?;
        first3(&out, method).ok_or_else(|| Error::Token("short encryption output".into()))
    }

    /// The check value of a key that may not encrypt, in `method`: the token's `CKA_CHECK_VALUE` when its
    /// method is `method`, else `None`.
    fn stored_kcv(&self, key: KeyHandle, method: KcvMethod) -> Result<Option<Kcv>, Error> {
        let Some(t) = key.key_type else {
            return Ok(None);
        };
        let stored = if t.is_des() {
            KcvMethod::Des3Zeros
        } else {
            KcvMethod::AesZeros
        };
        if stored != method {
            return Ok(None);
        }
        Ok(self
            .key_info(key)?
            .check_value
            .as_deref()
            .and_then(|v| first3(v, method)))
    }

    /// The check value of `key` in `method` by whatever means the token allows: encryption when the key
    /// may encrypt, else the stored `CKA_CHECK_VALUE`. `None` when neither is possible.
    pub fn kcv_in(&self, key: KeyHandle, method: KcvMethod) -> Result<Option<Kcv>, Error> {
        if self.key_info(key)?.usages.contains(&Usage::Encrypt) {
            return self.kcv_by_encryption(key, method).map(Some);
        }
        self.stored_kcv(key, method)
    }

    /// Wraps `key` under `kek` with `mechanism`. The key must be extractable; the result is safe to send.
    pub fn wrap_key(
        &self,
        mechanism: WrapMechanism,
        kek: KeyHandle,
        key: KeyHandle,
    ) -> Result<Vec<u8>, Error> {
        self.wrap_raw(&mechanism.mechanism(), kek.handle, key.handle)
            .map_err(|e| match e {
                cryptoki::error::Error::Pkcs11(RvError::KeyUnextractable, _) => self.key_error(
                    "the key is not extractable, so it cannot leave the token even wrapped".into(),
                ),
                cryptoki::error::Error::Pkcs11(RvError::MechanismInvalid, _) => {
                    Error::Unsupported(format!(
                        "token '{}' cannot wrap with {}; the key is not exported in clear instead",
                        self.label,
                        mechanism.name()
                    ))
                }
                other => other.into(),
            })
    }

    /// Unwraps a key received under `kek` as a persistent key per `spec`, after checking that its check
    /// value is `expected`. Nothing is created when the check fails.
    ///
    /// How the check works on any token: tokens such as SoftHSM2 keep no `CKA_CHECK_VALUE` on unwrapped
    /// keys, and the final key may not be allowed to encrypt. So the blob is first unwrapped as a session
    /// object that may only encrypt, its check value computed and compared, the object destroyed; only
    /// then is the blob unwrapped again as the persistent key.
    pub fn unwrap_checked(
        &self,
        mechanism: WrapMechanism,
        kek: KeyHandle,
        wrapped: &[u8],
        spec: &SecretKeySpec,
        expected: Kcv,
    ) -> Result<(KeyHandle, KeyInfo), Error> {
        let mut probe = vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(spec.key_type.ck_type()),
            Attribute::Token(false),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
        ];
        for u in Usage::ALL {
            probe.push(u.attr(u == Usage::Encrypt));
        }
        let unwrap = |template: &[Attribute]| {
            self.session
                .unwrap_key(&mechanism.mechanism(), kek.handle, wrapped, template)
                .map_err(|e| match e {
                    // SoftHSM2 reports a failed RFC 3394 integrity check as a general error.
                    cryptoki::error::Error::Pkcs11(
                        RvError::WrappedKeyInvalid
                        | RvError::WrappedKeyLenRange
                        | RvError::EncryptedDataInvalid
                        | RvError::GeneralError,
                        _,
                    ) => self.key_error(format!(
                        "the wrapped '{}' does not unwrap under this KEK (a different KEK, or damaged in transit)",
                        spec.label
                    )),
                    other => Error::from(other),
                })
        };
        let temp = unwrap(&probe)?;
        let temp_key = KeyHandle {
            handle: temp,
            key_type: Some(spec.key_type),
        };
        let got = self.kcv_by_encryption(temp_key, expected.method);
        let _ = self.session.destroy_object(temp);
        let got = got?;
        if got != expected {
            return Err(self.key_error(format!(
                "the key unwrapped for '{}' has KCV {got}, not {expected}: wrong KEK or wrong key; nothing was created",
                spec.label
            )));
        }
        let mut template = vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(spec.key_type.ck_type()),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(spec.extractable),
            Attribute::Label(spec.label.as_bytes().to_vec()),
            Attribute::Id(spec.id.clone()),
        ];
        for u in Usage::ALL {
            template.push(u.attr(spec.usages.contains(&u)));
        }
        // Last: SoftHSM2 applies the template in order and refuses any attribute after this one.
        template.push(Attribute::Modifiable(false));
        let handle = unwrap(&template)?;
        let key = KeyHandle {
            handle,
            key_type: Some(spec.key_type),
        };
        let info = self.check_secret(key, spec, false)?;
        Ok((key, info))
    }

    /// The clear value of an extractable key, for export as components: the key is wrapped in the token
    /// under a one-time AES-256 key whose value the host made, and unwrapped on the host (RFC 3394). The
    /// token must allow the key out (`CKA_EXTRACTABLE`), which only a ceremony that said so sets.
    pub fn export_value(&self, key: KeyHandle) -> Result<KeyValue, Error> {
        let key_type = key
            .key_type
            .ok_or_else(|| self.key_error("a key of unknown type cannot be exported".into()))?;
        let info = self.key_info(key)?;
        if !info.extractable {
            return Err(self.key_error(format!(
                "key '{}' is not extractable, so its policy does not allow export as components",
                info.label
            )));
        }
        if !self.can(MechanismType::AES_KEY_WRAP, Capability::Wrap)? {
            return Err(Error::Unsupported(format!(
                "token '{}' has no AES-KEY-WRAP to hand the key to the host for splitting; it is not read in clear instead",
                self.label
            )));
        }
        let temp_value = Zeroizing::new(self.random(32)?);
        let temp = self.import_session_key(
            &SecretSlice::from(temp_value.to_vec()),
            SecretKeyType::Aes256,
            &[Usage::Wrap],
        )?;
        let wrapped = self.wrap_key(WrapMechanism::AesKeyWrap, temp.handle(), key)?;
        drop(temp);
        let kek = aes_kw::KekAes256::try_from(temp_value.as_slice())
            .map_err(|_| Error::Token("one-time key of the wrong length".into()))?;
        let mut clear = Zeroizing::new(vec![0u8; key_type.byte_len()]);
        kek.unwrap(&wrapped, &mut clear).map_err(|_| {
            Error::Token("the token's wrapped key did not unwrap on the host".into())
        })?;
        KeyValue::new(clear, key_type)
    }

    /// Changes the user PIN from `old` to `new`, then logs out and in again with `new` to prove the
    /// token took it.
    pub fn change_pin(&self, old: &SecretString, new: &SecretString) -> Result<(), Error> {
        if new.expose_secret().is_empty() {
            return Err(Error::Quorum("a new PIN cannot be empty".into()));
        }
        self.session.set_pin(old, new)?;
        self.session.logout()?;
        self.session.login(UserType::User, Some(new))?;
        Ok(())
    }

    /// Every key object (secret, private, public) carrying `label`, with its class.
    pub fn keys_labelled(&self, label: &str) -> Result<Vec<(ObjectClass, ObjectHandle)>, Error> {
        let mut out = Vec::new();
        for class in [
            ObjectClass::SECRET_KEY,
            ObjectClass::PRIVATE_KEY,
            ObjectClass::PUBLIC_KEY,
        ] {
            for h in self.session.find_objects(&[
                Attribute::Token(true),
                Attribute::Class(class),
                Attribute::Label(label.as_bytes().to_vec()),
            ])? {
                out.push((class, h));
            }
        }
        Ok(out)
    }

    /// Destroys every key object labelled `label` (a secret key, or both halves of a pair) and returns
    /// how many there were.
    pub fn destroy_labelled(&self, label: &str) -> Result<usize, Error> {
        let found = self.keys_labelled(label)?;
        for (_, h) in &found {
            self.session.destroy_object(*h)?;
        }
        Ok(found.len())
    }

    /// What the token says about any key object, in the words of the inventory.
    pub(crate) fn object_info(
        &self,
        handle: ObjectHandle,
        class: ObjectClass,
    ) -> Result<super::inventory::ObjectInfo, Error> {
        let mut types = vec![
            AttributeType::Label,
            AttributeType::Id,
            AttributeType::KeyType,
            AttributeType::Local,
        ];
        let private = class == ObjectClass::PRIVATE_KEY;
        let secret = class == ObjectClass::SECRET_KEY;
        if private || secret {
            types.extend([
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::NeverExtractable,
            ]);
        }
        if secret {
            types.push(AttributeType::ValueLen);
        }
        if class == ObjectClass::PUBLIC_KEY || private {
            types.extend([AttributeType::Modulus, AttributeType::EcParams]);
        }
        let usage_types: &[Usage] = if secret {
            &Usage::ALL
        } else if private {
            &[Usage::Sign, Usage::Decrypt, Usage::Unwrap, Usage::Derive]
        } else {
            &[Usage::Verify, Usage::Encrypt, Usage::Wrap]
        };
        types.extend(usage_types.iter().map(|u| u.attr_type()));
        let attrs = self.session.get_attributes(handle, &types)?;
        let mut info = super::inventory::ObjectInfo::new(class);
        let mut ck_type = None;
        let mut len = None;
        let mut modulus_bits = None;
        let mut ec_params = None;
        for a in attrs {
            match a {
                Attribute::Label(l) => info.label = String::from_utf8_lossy(&l).into_owned(),
                Attribute::Id(i) => info.id = i,
                Attribute::KeyType(t) => ck_type = Some(t),
                Attribute::Local(b) => info.local = b,
                Attribute::Sensitive(b) => info.sensitive = b,
                Attribute::Extractable(b) => info.extractable = b,
                Attribute::NeverExtractable(b) => info.never_extractable = b,
                Attribute::ValueLen(l) => len = Some(u64::from(l)),
                Attribute::Modulus(m) => {
                    let skip = m.iter().take_while(|b| **b == 0).count();
                    modulus_bits = Some((m.len() - skip) * 8);
                }
                Attribute::EcParams(p) => ec_params = Some(p),
                Attribute::Encrypt(true) => info.usages.push(Usage::Encrypt),
                Attribute::Decrypt(true) => info.usages.push(Usage::Decrypt),
                Attribute::Sign(true) => info.usages.push(Usage::Sign),
                Attribute::Verify(true) => info.usages.push(Usage::Verify),
                Attribute::Wrap(true) => info.usages.push(Usage::Wrap),
                Attribute::Unwrap(true) => info.usages.push(Usage::Unwrap),
                Attribute::Derive(true) => info.usages.push(Usage::Derive),
                _ => {}
            }
        }
        info.usages
            .sort_by_key(|u| Usage::ALL.iter().position(|a| a == u));
        info.bits = len.map(|l| l as usize * 8).or(modulus_bits);
        if ck_type == Some(CkKeyType::DES2) {
            info.bits = Some(128);
        } else if ck_type == Some(CkKeyType::DES3) {
            info.bits = Some(192);
        }
        info.type_name = match ck_type {
            Some(t) if t == CkKeyType::DES2 => Some("DES3-2KEY".into()),
            Some(t) if t == CkKeyType::DES3 => Some("DES3-3KEY".into()),
            Some(t) if t == CkKeyType::AES => match len {
                Some(l) if l > 0 => Some(format!("AES-{}", l * 8)),
                // SoftHSM2 2.6.1 keeps no length for unwrapped AES keys.
                _ => {
                    info.bits = None;
                    Some("AES".into())
                }
            },
            Some(t) if t == CkKeyType::RSA => modulus_bits.map(|b| format!("RSA-{b}")),
            Some(t) if t == CkKeyType::EC => {
                if ec_params.as_deref() == Some(&P256_PARAMS[..]) {
                    info.bits = Some(256);
                    Some("EC-P256".into())
                } else {
                    Some("EC".into())
                }
            }
            Some(t) => Some(format!("{t}")),
            None => None,
        };
        Ok(info)
    }
}
