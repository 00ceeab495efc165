//! What a token can do for each feature of the project, found by asking the token about every mechanism
//! (`C_GetMechanismInfo`), never by its product name.
//!
//! Why probing: two tokens of the same make differ by version and configuration, and a vendor's module is
//! not available to test against. Each feature lists the ways it can be done, best first, each as the
//! mechanisms (and the mechanism flags) it needs; the first way the token offers in full is the one the
//! tools take, and they say so. Mechanisms are asked for by number through the raw module: `cryptoki`'s
//! mechanism list leaves out those it has no name for (`CKM_DES3_ECB_ENCRYPT_DATA`, …).

use super::{Hsm, TokenSession};
use crate::error::Error;
use cryptoki::slot::Slot;
use cryptoki_sys::{
    CKF_DECRYPT, CKF_DERIVE, CKF_ENCRYPT, CKF_SIGN, CKF_UNWRAP, CKF_WRAP, CK_FLAGS,
    CK_MECHANISM_TYPE,
};

/// A feature of the project that needs the token's help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feature {
    /// Per-card keys by the `emv` scheme (3DES master, EMV CPS derivation data).
    DeriveEmv,
    /// Per-card keys by the `visa2` scheme (3DES master).
    DeriveVisa2,
    /// Per-card keys by the `aes` scheme (AES master, ECB over derivation data).
    DeriveAes,
    /// Per-card keys by the `kdf3` scheme (SP 800-108 counter mode with AES-CMAC).
    DeriveKdf3,
    /// SCP03 session keys (S-ENC, S-MAC, S-RMAC) and the channel's MACs and encryption.
    Scp03Session,
    /// SCP02 session keys and PUT KEY key data (DES3-ECB under S-DEK).
    Scp02KeyLoading,
    /// AES DAPs (AES-CMAC over the LFDB hash).
    DapAes,
    /// 3DES DAPs (retail MAC over the LFDB hash).
    DapDes3,
    /// RSA DAPs up to 1024 bits (PKCS#1 v1.5 with SHA-1).
    DapRsaPkcs1,
    /// RSA DAPs above 1024 bits (RSASSA-PSS with SHA-256).
    DapRsaPss,
    /// ECDSA P-256 DAPs.
    DapEcdsa,
    /// Ciphered load-file data blocks (`D4`) under an AES key.
    CipheredLfdbAes,
    /// Ciphered load-file data blocks (`D4`) under a 3DES key.
    CipheredLfdbDes3,
    /// Moving keys between tokens under an AES KEK.
    KekExchange,
    /// Keys formed from custodians' components, and their check values.
    Components,
}

impl Feature {
    /// Every feature, in the order `keyman token capabilities` prints them.
    pub const ALL: [Feature; 15] = [
        Feature::DeriveEmv,
        Feature::DeriveVisa2,
        Feature::DeriveAes,
        Feature::DeriveKdf3,
        Feature::Scp03Session,
        Feature::Scp02KeyLoading,
        Feature::DapAes,
        Feature::DapDes3,
        Feature::DapRsaPkcs1,
        Feature::DapRsaPss,
        Feature::DapEcdsa,
        Feature::CipheredLfdbAes,
        Feature::CipheredLfdbDes3,
        Feature::KekExchange,
        Feature::Components,
    ];

    /// Short name, as the JSON output and the documentation write it.
    pub fn name(self) -> &'static str {
        match self {
            Feature::DeriveEmv => "derive-emv",
            Feature::DeriveVisa2 => "derive-visa2",
            Feature::DeriveAes => "derive-aes",
            Feature::DeriveKdf3 => "derive-kdf3",
            Feature::Scp03Session => "scp03-session-keys",
            Feature::Scp02KeyLoading => "scp02-key-loading",
            Feature::DapAes => "dap-aes",
            Feature::DapDes3 => "dap-des3",
            Feature::DapRsaPkcs1 => "dap-rsa-1024",
            Feature::DapRsaPss => "dap-rsa-pss",
            Feature::DapEcdsa => "dap-ecdsa",
            Feature::CipheredLfdbAes => "ciphered-lfdb-aes",
            Feature::CipheredLfdbDes3 => "ciphered-lfdb-des3",
            Feature::KekExchange => "kek-exchange",
            Feature::Components => "components",
        }
    }

    /// The ways this feature can be done, best first.
    pub fn ways(self) -> &'static [Way] {
        match self {
            Feature::DeriveEmv | Feature::DeriveVisa2 => &[Way {
                name: "in-token",
                what: "3DES-ECB of the derivation data under the master, by C_DeriveKey",
                needs: &[DES3_ECB_ENCRYPT_DATA],
            }],
            Feature::DeriveAes => &[Way {
                name: "in-token",
                what: "AES-ECB of the derivation data under the master, by C_DeriveKey",
                needs: &[AES_ECB_ENCRYPT_DATA],
            }],
            Feature::DeriveKdf3 => &[Way {
                name: "in-token",
                what: "SP 800-108 counter mode with AES-CMAC, by C_DeriveKey",
                needs: &[SP800_108_COUNTER_KDF, AES_CMAC_SIGN],
            }],
            Feature::Scp03Session => &[
                Way {
                    name: "in-token",
                    what: "session keys derived as token objects; C-MAC, R-MAC, C-DEC and R-ENC by the token",
                    needs: &[
                        SP800_108_COUNTER_KDF,
                        AES_CMAC_SIGN,
                        AES_ECB_ENCRYPT,
                        AES_CBC_ENCRYPT,
                        AES_CBC_DECRYPT,
                    ],
                },
                Way {
                    name: "host",
                    what: "session keys computed with the token's AES-CMAC, held on the host and wiped after the session",
                    needs: &[AES_CMAC_SIGN],
                },
            ],
            Feature::Scp02KeyLoading => &[
                Way {
                    name: "host",
                    what: "session keys computed with the token's 3DES-CBC, S-DEK held as a session object; PUT KEY key data wrapped by the token",
                    needs: &[DES3_CBC_ENCRYPT, DES3_ECB_WRAP],
                },
            ],
            Feature::DapAes => &[Way {
                name: "in-token",
                what: "AES-CMAC by the token",
                needs: &[AES_CMAC_SIGN],
            }],
            Feature::DapDes3 => &[Way {
                name: "in-token",
                what: "retail MAC from the key's DES halves, each derived in the token",
                needs: &[DES3_ECB_ENCRYPT_DATA, DES3_CBC_ENCRYPT, DES3_ECB_ENCRYPT, DES3_ECB_DECRYPT],
            }],
            Feature::DapRsaPkcs1 => &[Way {
                name: "in-token",
                what: "PKCS#1 v1.5 signature with SHA-1 by the token",
                needs: &[SHA1_RSA_PKCS_SIGN],
            }],
            Feature::DapRsaPss => &[Way {
                name: "in-token",
                what: "RSASSA-PSS with SHA-256 by the token",
                needs: &[SHA256_RSA_PKCS_PSS_SIGN],
            }],
            Feature::DapEcdsa => &[Way {
                name: "in-token",
                what: "ECDSA over the SHA-256 digest by the token",
                needs: &[ECDSA_SIGN],
            }],
            Feature::CipheredLfdbAes => &[Way {
                name: "in-token",
                what: "AES-CBC by the token",
                needs: &[AES_CBC_ENCRYPT],
            }],
            Feature::CipheredLfdbDes3 => &[Way {
                name: "in-token",
                what: "3DES-CBC by the token",
                needs: &[DES3_CBC_ENCRYPT],
            }],
            Feature::KekExchange => &[
                Way {
                    name: "aes-key-wrap",
                    what: "RFC 3394 key wrap under the KEK",
                    needs: &[AES_KEY_WRAP_WRAP, AES_KEY_WRAP_UNWRAP, AES_ECB_ENCRYPT],
                },
                Way {
                    name: "aes-key-wrap-pad",
                    what: "RFC 5649 key wrap under the KEK",
                    needs: &[AES_KEY_WRAP_PAD_WRAP, AES_KEY_WRAP_PAD_UNWRAP, AES_ECB_ENCRYPT],
                },
                Way {
                    name: "aes-cbc",
                    what: "AES-CBC wrap under the KEK, the KCV standing in for integrity",
                    needs: &[AES_CBC_WRAP, AES_CBC_UNWRAP, AES_ECB_ENCRYPT],
                },
            ],
            Feature::Components => &[
                Way {
                    name: "import-and-export",
                    what: "keys formed from components and checked by KCV; export as components through a one-time wrap",
                    needs: &[DES3_ECB_ENCRYPT, AES_ECB_ENCRYPT, AES_KEY_WRAP_WRAP],
                },
                Way {
                    name: "import-only",
                    what: "keys formed from components and checked by KCV; export as components is refused",
                    needs: &[DES3_ECB_ENCRYPT, AES_ECB_ENCRYPT],
                },
            ],
        }
    }
}

/// One way of doing a feature: a name, what happens, and the mechanisms it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Way {
    /// Short name ("in-token", "host", "aes-key-wrap", …).
    pub name: &'static str,
    /// What happens, in a few words.
    pub what: &'static str,
    /// Every mechanism, with the function it must allow.
    pub needs: &'static [Need],
}

/// A mechanism and the function (`CKF_*` flag) a way needs it for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Need {
    /// `CKM_*` number.
    pub mechanism: CK_MECHANISM_TYPE,
    /// `CKM_*` name.
    pub name: &'static str,
    /// The `CKF_*` flag the token must report for it.
    pub flag: CK_FLAGS,
    /// The flag's function ("derive", "sign", …).
    pub function: &'static str,
}

impl std::fmt::Display for Need {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name, self.function)
    }
}

macro_rules! need {
    ($const:ident, $mech:ident, $flag:ident, $function:literal) => {
        const $const: Need = Need {
            mechanism: cryptoki_sys::$mech,
            name: stringify!($mech),
            flag: $flag,
            function: $function,
        };
    };
}

need!(
    DES3_ECB_ENCRYPT_DATA,
    CKM_DES3_ECB_ENCRYPT_DATA,
    CKF_DERIVE,
    "derive"
);
need!(
    AES_ECB_ENCRYPT_DATA,
    CKM_AES_ECB_ENCRYPT_DATA,
    CKF_DERIVE,
    "derive"
);
need!(
    SP800_108_COUNTER_KDF,
    CKM_SP800_108_COUNTER_KDF,
    CKF_DERIVE,
    "derive"
);
need!(AES_CMAC_SIGN, CKM_AES_CMAC, CKF_SIGN, "sign");
need!(AES_ECB_ENCRYPT, CKM_AES_ECB, CKF_ENCRYPT, "encrypt");
need!(AES_CBC_ENCRYPT, CKM_AES_CBC, CKF_ENCRYPT, "encrypt");
need!(AES_CBC_DECRYPT, CKM_AES_CBC, CKF_DECRYPT, "decrypt");
need!(AES_CBC_WRAP, CKM_AES_CBC, CKF_WRAP, "wrap");
need!(AES_CBC_UNWRAP, CKM_AES_CBC, CKF_UNWRAP, "unwrap");
need!(DES3_ECB_ENCRYPT, CKM_DES3_ECB, CKF_ENCRYPT, "encrypt");
need!(DES3_ECB_DECRYPT, CKM_DES3_ECB, CKF_DECRYPT, "decrypt");
need!(DES3_ECB_WRAP, CKM_DES3_ECB, CKF_WRAP, "wrap");
need!(DES3_CBC_ENCRYPT, CKM_DES3_CBC, CKF_ENCRYPT, "encrypt");
need!(AES_KEY_WRAP_WRAP, CKM_AES_KEY_WRAP, CKF_WRAP, "wrap");
need!(AES_KEY_WRAP_UNWRAP, CKM_AES_KEY_WRAP, CKF_UNWRAP, "unwrap");
need!(
    AES_KEY_WRAP_PAD_WRAP,
    CKM_AES_KEY_WRAP_PAD,
    CKF_WRAP,
    "wrap"
);
need!(
    AES_KEY_WRAP_PAD_UNWRAP,
    CKM_AES_KEY_WRAP_PAD,
    CKF_UNWRAP,
    "unwrap"
);
need!(SHA1_RSA_PKCS_SIGN, CKM_SHA1_RSA_PKCS, CKF_SIGN, "sign");
need!(
    SHA256_RSA_PKCS_PSS_SIGN,
    CKM_SHA256_RSA_PKCS_PSS,
    CKF_SIGN,
    "sign"
);
need!(ECDSA_SIGN, CKM_ECDSA, CKF_SIGN, "sign");

/// What the token can do for one feature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The feature.
    pub feature: Feature,
    /// The best way the token offers in full, if any.
    pub way: Option<Way>,
    /// When no way is possible: what the best way lacks.
    pub missing: Vec<Need>,
}

impl Verdict {
    /// Whether the feature can be done in this token.
    pub fn available(&self) -> bool {
        self.way.is_some()
    }

    /// The refusal a tool gives when the feature is unavailable: the feature and every missing mechanism.
    pub fn refusal(&self, token: &str) -> Error {
        Error::Unsupported(format!(
            "token '{token}' cannot do {}: it lacks {}; nothing is done outside the token instead",
            self.feature.name(),
            self.missing
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

impl Hsm {
    /// Whether the token in `slot` offers `mechanism` with `flag` set.
    fn offers(&self, slot: Slot, need: &Need) -> Result<bool, Error> {
        Ok(self
            .inner
            .mechanism_flags(slot.id(), need.mechanism)?
            .is_some_and(|flags| flags & need.flag == need.flag))
    }

    /// Probes one feature on the token in `slot`.
    pub fn probe(&self, slot: Slot, feature: Feature) -> Result<Verdict, Error> {
        let mut first_missing = None;
        for way in feature.ways() {
            let mut missing = Vec::new();
            for need in way.needs {
                if !self.offers(slot, need)? {
                    missing.push(*need);
                }
            }
            if missing.is_empty() {
                return Ok(Verdict {
                    feature,
                    way: Some(*way),
                    missing,
                });
            }
            first_missing.get_or_insert(missing);
        }
        Ok(Verdict {
            feature,
            way: None,
            missing: first_missing.unwrap_or_default(),
        })
    }

    /// Probes every feature on the token in `slot`.
    pub fn capabilities(&self, slot: Slot) -> Result<Vec<Verdict>, Error> {
        Feature::ALL.iter().map(|f| self.probe(slot, *f)).collect()
    }
}

impl TokenSession<'_> {
    /// Probes one feature on this session's token: the same probe `keyman token capabilities` prints.
    pub fn probe(&self, feature: Feature) -> Result<Verdict, Error> {
        let slot = self.session.get_session_info()?.slot_id();
        self.hsm.probe(slot, feature)
    }

    /// The way this token does `feature`, or the refusal naming what it lacks.
    pub fn way_for(&self, feature: Feature) -> Result<Way, Error> {
        let verdict = self.probe(feature)?;
        verdict.way.ok_or_else(|| verdict.refusal(&self.label))
    }
}

/// The capabilities as text: one line per feature with the way taken and its mechanisms, or what is missing.
pub fn format_capabilities(label: &str, module: &str, verdicts: &[Verdict]) -> String {
    let mut out = format!("token '{label}' (module {module})\n");
    for v in verdicts {
        match &v.way {
            Some(way) => out.push_str(&format!(
                "{:<20} yes  {}: {}\n{:<26}{}\n",
                v.feature.name(),
                way.name,
                way.what,
                "",
                way.needs
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            None => out.push_str(&format!(
                "{:<20} no   lacks {}\n",
                v.feature.name(),
                v.missing
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
    out
}

/// The capabilities as JSON: an object per feature with `available`, `way`, `mechanisms` and `missing`.
pub fn capabilities_json(label: &str, module: &str, verdicts: &[Verdict]) -> serde_json::Value {
    let names = |needs: &[Need]| {
        needs
            .iter()
            .map(|n| serde_json::json!({"mechanism": n.name, "function": n.function}))
            .collect::<Vec<_>>()
    };
    serde_json::json!({
        "token": label,
        "module": module,
        "features": verdicts.iter().map(|v| serde_json::json!({
            "feature": v.feature.name(),
            "available": v.available(),
            "way": v.way.map(|w| w.name),
            "mechanisms": v.way.map(|w| names(w.needs)).unwrap_or_default(),
            "missing": names(&v.missing),
        })).collect::<Vec<_>>(),
    })
}
