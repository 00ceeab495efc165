//! Ceremony scripts: one RON file per ceremony, parsed strictly and checked in full before the first key is
//! made.
//!
//! Why so strict: a ceremony happens once, in a room, with witnesses. A typo found half-way leaves a token
//! with half the keys and a ledger that tells a confusing story. So unknown fields are refused, the script
//! names its format version, every label and ID must be unique, roles named in steps must be declared, and
//! the token is checked (present, labels and IDs free) before anything is created.

use crate::error::Error;
use crate::hsm::{SecretKeySpec, SecretKeyType, TokenUri, Usage};
use serde::Deserialize;
use std::collections::HashSet;
use std::path::Path;

/// The script format version this build understands.
pub const SCRIPT_VERSION: u32 = 1;

/// A whole ceremony script.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ceremony {
    /// Script format version; must equal [`SCRIPT_VERSION`].
    pub version: u32,
    /// Short name, recorded in the ledger.
    pub name: String,
    /// Why the ceremony is held, printed on the paper form.
    pub purpose: String,
    /// The token every step works on: a label or an RFC 7512 URI.
    pub token: String,
    /// The people taking part, by role.
    pub roles: Vec<Role>,
    /// What happens, in order.
    pub steps: Vec<Step>,
}

/// A person's part in the ceremony.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    /// Name used in steps and recorded in the ledger (a role name, not a secret).
    pub name: String,
    /// What the role may do.
    pub kind: RoleKind,
}

/// Kinds of role in a ceremony.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum RoleKind {
    /// Operates the token and runs the steps.
    Officer,
    /// Holds a key component or PIN share.
    Custodian,
    /// Watches and signs the form.
    Witness,
}

/// One step of a ceremony.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Step {
    /// Generate a secret key inside the token.
    GenerateSecretKey {
        /// Unique label in the token.
        label: String,
        /// Unique object ID, hex.
        id: String,
        /// Algorithm and length.
        key_type: SecretKeyType,
        /// What the key may be used for.
        usages: Vec<Usage>,
        /// Whether it may ever leave the token wrapped (default false).
        #[serde(default)]
        extractable: bool,
        /// Roles performing the step.
        performed_by: Vec<String>,
        /// Roles witnessing the step.
        #[serde(default)]
        witnessed_by: Vec<String>,
    },
}

impl Step {
    /// A one-line description of what the step will do, for `--dry-run` and the paper form.
    pub fn describe(&self, token: &str) -> String {
        match self {
            Step::GenerateSecretKey {
                label,
                id,
                key_type,
                usages,
                extractable,
                ..
            } => {
                format!(
                "generate {} key '{label}' (id {id}) in token {token}: usages [{}], sensitive, {}",
                key_type.name(),
                usages.iter().map(|u| u.name()).collect::<Vec<_>>().join(", "),
                if *extractable {
                    "extractable (wrapped only)"
                } else {
                    "never extractable"
                }
            )
            }
        }
    }

    /// Roles performing and witnessing the step.
    pub fn roles(&self) -> (&[String], &[String]) {
        match self {
            Step::GenerateSecretKey {
                performed_by,
                witnessed_by,
                ..
            } => (performed_by, witnessed_by),
        }
    }

    /// The key this step creates, as a token template.
    pub fn key_spec(&self) -> Result<SecretKeySpec, Error> {
        match self {
            Step::GenerateSecretKey {
                label,
                id,
                key_type,
                usages,
                extractable,
                ..
            } => Ok(SecretKeySpec {
                label: label.clone(),
                id: hex::decode(id)
                    .map_err(|_| Error::Script(format!("step '{label}': id '{id}' is not hex")))?,
                key_type: *key_type,
                usages: usages.clone(),
                extractable: *extractable,
            }),
        }
    }
}

impl Ceremony {
    /// Reads and parses a script; errors name the file, line and column and what was expected.
    pub fn load(path: &Path) -> Result<Ceremony, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ceremony::parse(&text, &path.display().to_string())
    }

    /// Parses script text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Ceremony, Error> {
        let ceremony: Ceremony = ron::from_str(text).map_err(|e| {
            Error::Script(format!(
                "{origin}:{}:{}: {}",
                e.span.start.line, e.span.start.col, e.code
            ))
        })?;
        ceremony.check(origin)?;
        Ok(ceremony)
    }

    /// Every check that needs no token: version, roles, unique labels and IDs, well-formed values.
    fn check(&self, origin: &str) -> Result<(), Error> {
        let err = |m: String| Error::Script(format!("{origin}: {m}"));
        if self.version != SCRIPT_VERSION {
            return Err(err(format!(
                "version {} is not understood (this keyman reads version {SCRIPT_VERSION})",
                self.version
            )));
        }
        TokenUri::parse(&self.token).map_err(|e| err(format!("token: {e}")))?;
        let mut roles = HashSet::new();
        for r in &self.roles {
            if !roles.insert(r.name.as_str()) {
                return Err(err(format!("role '{}' is declared twice", r.name)));
            }
        }
        if self.steps.is_empty() {
            return Err(err("the ceremony has no steps".into()));
        }
        let mut labels = HashSet::new();
        let mut ids = HashSet::new();
        for (n, step) in self.steps.iter().enumerate() {
            let spec = step
                .key_spec()
                .map_err(|e| err(format!("step {}: {e}", n + 1)))?;
            let at = format!("step {} ('{}')", n + 1, spec.label);
            if spec.label.is_empty() {
                return Err(err(format!("{at}: empty label")));
            }
            if spec.id.is_empty() {
                return Err(err(format!("{at}: empty id")));
            }
            if !labels.insert(spec.label.clone()) {
                return Err(err(format!("{at}: label '{}' is used twice", spec.label)));
            }
            if !ids.insert(spec.id.clone()) {
                return Err(err(format!(
                    "{at}: id {} is used twice",
                    hex::encode(&spec.id)
                )));
            }
            if spec.usages.is_empty() {
                return Err(err(format!("{at}: a key with no usages is useless")));
            }
            let (performers, witnesses) = step.roles();
            if performers.is_empty() {
                return Err(err(format!("{at}: no role performs it")));
            }
            for name in performers.iter().chain(witnesses) {
                if !roles.contains(name.as_str()) {
                    return Err(err(format!("{at}: role '{name}' is not declared")));
                }
            }
            for p in performers {
                let kind = self.roles.iter().find(|r| &r.name == p).map(|r| r.kind);
                if kind != Some(RoleKind::Officer) {
                    return Err(err(format!(
                        "{at}: '{p}' performs a token step but is not an Officer"
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const GOOD: &str = r#"Ceremony(
    version: 1,
    name: "t",
    purpose: "test",
    token: "issuer",
    roles: [Role(name: "officer", kind: Officer), Role(name: "witness", kind: Witness)],
    steps: [
        GenerateSecretKey(label: "k", id: "01", key_type: Des3TwoKey, usages: [Derive],
            performed_by: ["officer"], witnessed_by: ["witness"]),
    ],
)"#;

    #[test]
    fn parses_a_good_script() {
        let c = Ceremony::parse(GOOD, "good.ron").unwrap();
        assert_eq!(c.steps.len(), 1);
    }

    #[test]
    fn unknown_field_is_refused_with_line_and_column() {
        let bad = GOOD.replace(
            "purpose: \"test\",",
            "purpose: \"test\",\n    colour: \"blue\",",
        );
        let e = Ceremony::parse(&bad, "bad.ron").unwrap_err().to_string();
        assert!(e.starts_with("bad.ron:5:5:"), "{e}");
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn inconsistent_scripts_are_refused() {
        for (from, to, says) in [
            ("version: 1", "version: 2", "version 2"),
            (
                "witnessed_by: [\"witness\"]",
                "witnessed_by: [\"ghost\"]",
                "'ghost' is not declared",
            ),
            (
                "performed_by: [\"officer\"]",
                "performed_by: [\"witness\"]",
                "not an Officer",
            ),
            ("id: \"01\"", "id: \"zz\"", "not hex"),
            ("usages: [Derive]", "usages: []", "no usages"),
        ] {
            let e = Ceremony::parse(&GOOD.replace(from, to), "x.ron")
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{from} -> {e}");
        }
        let dup = GOOD.replace(
            "],\n)",
            "    GenerateSecretKey(label: \"k\", id: \"02\", key_type: Aes128, usages: [Derive], performed_by: [\"officer\"]),\n    ],\n)",
        );
        let e = Ceremony::parse(&dup, "x.ron").unwrap_err().to_string();
        assert!(e.contains("used twice"), "{e}");
    }
}

/// One key a ceremony made, as printed for the paper form and recorded in the ledger.
#[derive(Clone, Debug)]
pub struct MadeKey {
    /// Step number (1-based).
    pub step: usize,
    /// Key label.
    pub label: String,
    /// Key ID.
    pub id: Vec<u8>,
    /// Algorithm and length.
    pub key_type: SecretKeyType,
    /// Check value with its method.
    pub kcv: crate::hsm::Kcv,
}

/// How a ceremony run is set up.
pub struct RunOptions<'a> {
    /// Path of the script (hashed into the ledger).
    pub script_path: &'a Path,
    /// Where the new ledger goes (must not exist).
    pub ledger_path: &'a Path,
    /// Where the token PIN comes from.
    pub pin: &'a crate::pin::PinSource,
    /// PKCS#11 module override.
    pub module: Option<&'a Path>,
    /// Called after each key is made, to show it to the room.
    pub on_key: &'a mut dyn FnMut(&MadeKey),
}

fn ledger_kcv(method: gp_core::kcv::KcvMethod) -> crate::ledger::KcvMethod {
    match method {
        gp_core::kcv::KcvMethod::Des3Zeros => crate::ledger::KcvMethod::Des3Zeros,
        gp_core::kcv::KcvMethod::AesOnes => crate::ledger::KcvMethod::AesOnes,
        gp_core::kcv::KcvMethod::AesZeros => crate::ledger::KcvMethod::AesZeros,
    }
}

/// Runs a ceremony: every check first (script, token, PIN, free labels and IDs, ledger path), then the
/// steps, each recorded in a new ledger. A failure after the ledger is open is recorded as an abort.
pub fn run(ceremony: &Ceremony, opts: RunOptions<'_>) -> Result<Vec<MadeKey>, Error> {
    use crate::hsm::Hsm;
    use crate::ledger::{EntryBody, EntryKind, InputFile, Ledger, Output};

    if opts.ledger_path.exists() {
        return Err(Error::OutputExists(opts.ledger_path.to_path_buf()));
    }
    let uri = TokenUri::parse(&ceremony.token)?;
    let hsm = Hsm::for_uri(&uri, opts.module)?;
    let session = hsm.open(&uri, opts.pin)?;
    let mut specs = Vec::new();
    for (n, step) in ceremony.steps.iter().enumerate() {
        let spec = step.key_spec()?;
        if !session.objects_labelled(&spec.label)?.is_empty() {
            return Err(Error::Script(format!(
                "step {} ('{}'): token '{}' already holds an object with this label; nothing was created",
                n + 1,
                spec.label,
                session.label()
            )));
        }
        if !session.objects_with_id(&spec.id)?.is_empty() {
            return Err(Error::Script(format!(
                "step {} ('{}'): token '{}' already holds an object with id {}; nothing was created",
                n + 1,
                spec.label,
                session.label(),
                hex::encode(&spec.id)
            )));
        }
        specs.push(spec);
    }
    let script = InputFile::from_path(opts.script_path)?;
    let mut ledger = Ledger::create(opts.ledger_path)?;
    let mut start = EntryBody::new(EntryKind::CeremonyStart, ceremony.name.clone())
        .scripted(opts.pin.is_scripted())
        .input(script);
    for r in &ceremony.roles {
        start = start.participant(format!("{:?}", r.kind).to_lowercase(), r.name.clone());
    }
    ledger.append(start)?;

    let mut made = Vec::new();
    let mut result = Ok(());
    for (n, (step, spec)) in ceremony.steps.iter().zip(&specs).enumerate() {
        let outcome = session.generate_secret(spec).and_then(|(key, _)| {
            let kcv = session.kcv(key)?;
            Ok(MadeKey {
                step: n + 1,
                label: spec.label.clone(),
                id: spec.id.clone(),
                key_type: spec.key_type,
                kcv,
            })
        });
        match outcome {
            Ok(key) => {
                (opts.on_key)(&key);
                let (performers, witnesses) = step.roles();
                let mut body = EntryBody::new(EntryKind::Step, ceremony.name.clone())
                    .step(format!("{}: {}", n + 1, step.describe(session.label())))
                    .scripted(opts.pin.is_scripted())
                    .output(Output::Key {
                        label: key.label.clone(),
                        id_hex: hex::encode(&key.id),
                        key_type: key.key_type.name().to_string(),
                        kcv_hex: Some(hex::encode(key.kcv.value)),
                        kcv_method: Some(ledger_kcv(key.kcv.method)),
                    });
                for p in performers {
                    body = body.participant("performed-by", p.clone());
                }
                for w in witnesses {
                    body = body.participant("witnessed-by", w.clone());
                }
                ledger.append(body)?;
                made.push(key);
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    match result {
        Ok(()) => {
            ledger.append(
                EntryBody::new(EntryKind::CeremonyEnd, ceremony.name.clone())
                    .scripted(opts.pin.is_scripted()),
            )?;
            Ok(made)
        }
        Err(e) => {
            ledger.append(EntryBody::abort(ceremony.name.clone(), e.to_string()))?;
            Err(e)
        }
    }
}
