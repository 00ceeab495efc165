//! The wrapped-key file that carries keys from one organisation's token to another's under a KEK.
//!
//! Why a file of its own: it travels (by courier, by mail) between organisations, so it holds only what
//! is safe to publish: each key's label, ID, type, usages, KCV with its method, and its value wrapped under
//! the KEK. The receiving side reads it as untrusted input: strict JSON, bounded size, every field checked,
//! and each key's KCV compared after unwrapping before the key is kept.

use crate::error::Error;
use crate::hsm::{SecretKeyType, Usage, WrapMechanism};
use gp_core::kcv::KcvMethod;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The `format` field's value.
pub const FORMAT: &str = "postissue-wrapped-keys";

/// Largest file read, in bytes.
const MAX_FILE: u64 = 1024 * 1024;

/// A wrapped-key file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WrappedKeys {
    /// Always [`FORMAT`].
    pub format: String,
    /// Format version, 1.
    pub version: u32,
    /// The ceremony that wrote it.
    pub ceremony: String,
    /// Label of the token the keys came from.
    pub from_token: String,
    /// Label of the KEK the keys are wrapped under.
    pub kek: String,
    /// The wrapping mechanism.
    pub mechanism: WrapMechanism,
    /// The keys.
    pub keys: Vec<WrappedKey>,
}

/// One key in a wrapped-key file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WrappedKey {
    /// Its label.
    pub label: String,
    /// Its ID, hex.
    pub id: String,
    /// Type and length ("AES-128", "DES3-2KEY", …).
    pub key_type: String,
    /// Usages, as scripts write them in lower case.
    pub usages: Vec<String>,
    /// KCV, 6 hex digits.
    pub kcv: String,
    /// How the KCV was computed ("3des-ecb-zeros", "aes-ecb-ones", "aes-ecb-zeros").
    pub kcv_method: String,
    /// The wrapped value, hex.
    pub wrapped: String,
}

/// A checked key from a wrapped-key file.
#[derive(Debug, Clone)]
pub struct ReceivedKey {
    /// Its label.
    pub label: String,
    /// Its ID.
    pub id: Vec<u8>,
    /// Its type.
    pub key_type: SecretKeyType,
    /// Its usages.
    pub usages: Vec<Usage>,
    /// The KCV it must have after unwrapping.
    pub kcv: crate::hsm::Kcv,
    /// The wrapped bytes.
    pub wrapped: Vec<u8>,
}

/// The ledger's and the file's name for a KCV method.
pub fn method_name(m: KcvMethod) -> &'static str {
    match m {
        KcvMethod::Des3Zeros => "3des-ecb-zeros",
        KcvMethod::AesOnes => "aes-ecb-ones",
        KcvMethod::AesZeros => "aes-ecb-zeros",
    }
}

fn method_from(name: &str) -> Option<KcvMethod> {
    [
        KcvMethod::Des3Zeros,
        KcvMethod::AesOnes,
        KcvMethod::AesZeros,
    ]
    .into_iter()
    .find(|m| method_name(*m) == name)
}

fn usage_from(name: &str) -> Option<Usage> {
    Usage::ALL.into_iter().find(|u| u.name() == name)
}

impl WrappedKeys {
    /// Reads and checks a file; errors name the file and the field.
    pub fn load(path: &Path) -> Result<WrappedKeys, Error> {
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        if std::fs::metadata(path).map_err(io)?.len() > MAX_FILE {
            return Err(Error::Script(format!(
                "{}: larger than {MAX_FILE} bytes; not a wrapped-key file",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        let w: WrappedKeys = serde_json::from_str(&text).map_err(|e| {
            Error::Script(format!(
                "{}:{}:{}: not a wrapped-key file: {e}",
                path.display(),
                e.line(),
                e.column()
            ))
        })?;
        if w.format != FORMAT || w.version != 1 {
            return Err(Error::Script(format!(
                "{}: format '{}' version {} is not a wrapped-key file this keyman reads",
                path.display(),
                w.format,
                w.version
            )));
        }
        for i in 0..w.keys.len() {
            w.key(i)
                .map_err(|e| Error::Script(format!("{}: {e}", path.display())))?;
        }
        Ok(w)
    }

    /// Key `i`, checked.
    pub fn key(&self, i: usize) -> Result<ReceivedKey, Error> {
        let k = self
            .keys
            .get(i)
            .ok_or_else(|| Error::Script(format!("keys[{i}]: no such key")))?;
        let bad = |field: &str, why: &str| Error::Script(format!("keys[{i}].{field}: {why}"));
        let key_type = SecretKeyType::from_name(&k.key_type)
            .ok_or_else(|| bad("key_type", "not a secret key type keyman knows"))?;
        let id = hex::decode(&k.id).map_err(|_| bad("id", "not hex"))?;
        if id.is_empty() || id.len() > 64 || k.label.is_empty() || k.label.len() > 64 {
            return Err(bad("label", "label and id must be 1 to 64 bytes"));
        }
        let mut usages = Vec::new();
        for u in &k.usages {
            let u = usage_from(u).ok_or_else(|| bad("usages", "unknown usage"))?;
            if usages.contains(&u) {
                return Err(bad("usages", "a usage is listed twice"));
            }
            usages.push(u);
        }
        if usages.is_empty() {
            return Err(bad("usages", "none"));
        }
        let method = method_from(&k.kcv_method).ok_or_else(|| bad("kcv_method", "unknown"))?;
        if (method == KcvMethod::Des3Zeros) != key_type.is_des() {
            return Err(bad("kcv_method", "does not fit the key type"));
        }
        let value = super::parse_kcv(&k.kcv).map_err(|e| bad("kcv", &e.to_string()))?;
        let wrapped = hex::decode(&k.wrapped).map_err(|_| bad("wrapped", "not hex"))?;
        if wrapped.len() < key_type.byte_len() || wrapped.len() > key_type.byte_len() + 32 {
            return Err(bad("wrapped", "length does not fit the key type"));
        }
        Ok(ReceivedKey {
            label: k.label.clone(),
            id,
            key_type,
            usages,
            kcv: crate::hsm::Kcv { value, method },
            wrapped,
        })
    }

    /// The key labelled `label`, checked.
    pub fn find(&self, label: &str) -> Result<ReceivedKey, Error> {
        let i = self
            .keys
            .iter()
            .position(|k| k.label == label)
            .ok_or_else(|| Error::Script(format!("the wrapped-key file holds no key '{label}'")))?;
        self.key(i)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample() -> WrappedKeys {
        WrappedKeys {
            format: FORMAT.into(),
            version: 1,
            ceremony: "c".into(),
            from_token: "vendor".into(),
            kek: "kek".into(),
            mechanism: WrapMechanism::AesKeyWrap,
            keys: vec![WrappedKey {
                label: "ssd-enc".into(),
                id: "0201".into(),
                key_type: "AES-128".into(),
                usages: vec!["derive".into()],
                kcv: "0a0b0c".into(),
                kcv_method: "aes-ecb-zeros".into(),
                wrapped: "00".repeat(24),
            }],
        }
    }

    #[test]
    fn files_round_trip_and_bad_fields_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.json");
        std::fs::write(&p, serde_json::to_string_pretty(&sample()).unwrap()).unwrap();
        let w = WrappedKeys::load(&p).unwrap();
        assert_eq!(w, sample());
        let k = w.find("ssd-enc").unwrap();
        assert_eq!(k.key_type, SecretKeyType::Aes128);
        assert_eq!(k.usages, vec![Usage::Derive]);
        assert!(w.find("nope").is_err());

        let mut bad = sample();
        if let Some(k) = bad.keys.first_mut() {
            k.kcv_method = "3des-ecb-zeros".into();
        }
        std::fs::write(&p, serde_json::to_string(&bad).unwrap()).unwrap();
        let e = WrappedKeys::load(&p).unwrap_err().to_string();
        assert!(e.contains("keys[0].kcv_method"), "{e}");

        std::fs::write(&p, "{\"format\": 1}").unwrap();
        let e = WrappedKeys::load(&p).unwrap_err().to_string();
        assert!(e.contains("w.json:1:"), "{e}");
    }
}
