//! Key inventory: what a token holds, in the terms auditors check (label, ID, type, length, KCV with its
//! method, usages, and the sensitive / never-extractable / local flags), the same facts any PKCS#11 tool
//! such as OpenSC's `pkcs11-tool -O` shows.

use super::{Kcv, KeyHandle, SecretKeyType, TokenSession, Usage};
use crate::error::Error;
use cryptoki::object::{Attribute, ObjectClass};
use gp_core::kcv::KcvMethod;

/// What the token says about one key object (never its value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// `secret`, `private` or `public`.
    pub class: &'static str,
    /// `CKA_LABEL`.
    pub label: String,
    /// `CKA_ID`.
    pub id: Vec<u8>,
    /// Type and size as the project names them ("DES3-2KEY", "AES-128", "RSA-2048", "EC-P256").
    pub type_name: Option<String>,
    /// Key length in bits.
    pub bits: Option<usize>,
    /// Usages set true.
    pub usages: Vec<Usage>,
    /// `CKA_SENSITIVE` (secret and private keys).
    pub sensitive: bool,
    /// `CKA_EXTRACTABLE` (secret and private keys).
    pub extractable: bool,
    /// `CKA_NEVER_EXTRACTABLE` (secret and private keys).
    pub never_extractable: bool,
    /// `CKA_LOCAL`: generated inside the token.
    pub local: bool,
    /// Check values of a secret key, each with its method.
    pub kcvs: Vec<Kcv>,
}

impl ObjectInfo {
    pub(crate) fn new(class: ObjectClass) -> ObjectInfo {
        ObjectInfo {
            class: if class == ObjectClass::SECRET_KEY {
                "secret"
            } else if class == ObjectClass::PRIVATE_KEY {
                "private"
            } else {
                "public"
            },
            label: String::new(),
            id: Vec::new(),
            type_name: None,
            bits: None,
            usages: Vec::new(),
            sensitive: false,
            extractable: false,
            never_extractable: false,
            local: false,
            kcvs: Vec::new(),
        }
    }

    /// The flags column: which of sensitive, never-extractable, extractable and local hold.
    pub fn flags(&self) -> String {
        let mut f = Vec::new();
        if self.class != "public" {
            if self.sensitive {
                f.push("sensitive");
            }
            if self.never_extractable {
                f.push("never-extractable");
            }
            if self.extractable {
                f.push("extractable");
            }
        }
        if self.local {
            f.push("local");
        }
        f.join(",")
    }
}

impl TokenSession<'_> {
    /// Every key object in the token, sorted by label then class, with check values for secret keys.
    ///
    /// KCVs: keys allowed to encrypt get both the GPC B.6 value (AES over 01×16) or the 3DES value, and
    /// the AES value over zeros, computed by the token; other keys show the token's stored
    /// `CKA_CHECK_VALUE` with its method, or nothing when the token keeps none.
    pub fn inventory(&self) -> Result<Vec<ObjectInfo>, Error> {
        let mut out = Vec::new();
        for class in [
            ObjectClass::SECRET_KEY,
            ObjectClass::PRIVATE_KEY,
            ObjectClass::PUBLIC_KEY,
        ] {
            for h in self
                .session
                .find_objects(&[Attribute::Token(true), Attribute::Class(class)])?
            {
                let mut info = self.object_info(h, class)?;
                if class == ObjectClass::SECRET_KEY {
                    let key = KeyHandle {
                        handle: h,
                        key_type: self.read_key_type(h)?,
                    };
                    info.kcvs = self.all_kcvs(key)?;
                }
                out.push(info);
            }
        }
        out.sort_by(|a, b| a.label.cmp(&b.label).then(a.class.cmp(b.class)));
        Ok(out)
    }

    fn all_kcvs(&self, key: KeyHandle) -> Result<Vec<Kcv>, Error> {
        let methods: &[KcvMethod] = match key.key_type {
            Some(t) if t.is_des() => &[KcvMethod::Des3Zeros],
            Some(_) => &[KcvMethod::AesOnes, KcvMethod::AesZeros],
            None => &[],
        };
        let mut out = Vec::new();
        for m in methods {
            // A key the token refuses to use this way simply has no KCV in that method.
            if let Ok(Some(k)) = self.kcv_in(key, *m) {
                out.push(k);
            }
        }
        Ok(out)
    }
}

/// The inventory as a table for people: one line per key object.
pub fn format_inventory(token: &str, serial: &str, items: &[ObjectInfo]) -> String {
    let mut rows = vec![[
        "LABEL".to_string(),
        "ID".into(),
        "CLASS".into(),
        "TYPE".into(),
        "BITS".into(),
        "KCV (METHOD)".into(),
        "USAGES".into(),
        "FLAGS".into(),
    ]];
    for i in items {
        rows.push([
            i.label.clone(),
            if i.id.is_empty() {
                "-".into()
            } else {
                hex::encode(&i.id)
            },
            i.class.to_string(),
            i.type_name.clone().unwrap_or_else(|| "?".into()),
            i.bits.map_or_else(|| "?".into(), |b| b.to_string()),
            if i.kcvs.is_empty() {
                "-".into()
            } else {
                i.kcvs
                    .iter()
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            },
            if i.usages.is_empty() {
                "-".into()
            } else {
                i.usages
                    .iter()
                    .map(|u| u.name())
                    .collect::<Vec<_>>()
                    .join(",")
            },
            {
                let f = i.flags();
                if f.is_empty() {
                    "-".into()
                } else {
                    f
                }
            },
        ]);
    }
    let mut widths = [0usize; 8];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = format!(
        "token '{token}' (serial {serial}): {} key object(s)\n",
        items.len()
    );
    for r in &rows {
        let mut line = String::new();
        for (n, (w, c)) in widths.iter().zip(r.iter()).enumerate() {
            if n > 0 {
                line.push_str("  ");
            }
            line.push_str(c);
            if n + 1 < r.len() {
                line.push_str(&" ".repeat(w.saturating_sub(c.chars().count())));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

impl SecretKeyType {
    /// The type for a name as the inventory and the ledger write it ("AES-128", …).
    pub fn from_name(name: &str) -> Option<SecretKeyType> {
        [
            SecretKeyType::Des3TwoKey,
            SecretKeyType::Des3ThreeKey,
            SecretKeyType::Aes128,
            SecretKeyType::Aes192,
            SecretKeyType::Aes256,
        ]
        .into_iter()
        .find(|t| t.name() == name)
    }
}
