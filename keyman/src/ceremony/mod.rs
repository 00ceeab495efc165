//! Ceremony scripts: one RON file per ceremony, parsed strictly and checked in full before the first key is
//! made.
//!
//! Why so strict: a ceremony happens once, in a room, with witnesses. A typo found half-way leaves a token
//! with half the keys and a ledger that tells a confusing story. So unknown fields are refused, the script
//! names its format version, roles named in steps must be declared with the right kind, labels and IDs are
//! unique per token, quorums are possible, and outputs are named once. [`run`] then checks the tokens
//! (present, logged in, labels and IDs free, keys referred to present with the right policy, mechanisms
//! available) and the files (outputs absent, inputs present) before anything is created.
//!
//! A script looks like this (see `ceremonies/` for complete ones):
//!
//! ```ron
//! Ceremony(
//!     version: 1,
//!     name: "issuer-master",
//!     purpose: "Generate the issuer's ISD master key",
//!     tokens: [Token(name: "issuer", uri: "pkcs11:token=issuer")],
//!     roles: [Role(name: "officer", kind: Officer), Role(name: "witness", kind: Witness)],
//!     steps: [
//!         GenerateSecretKey(label: "isd-kmc", id: "0101", key_type: Des3TwoKey, usages: [Derive],
//!             performed_by: ["officer"], witnessed_by: ["witness"]),
//!     ],
//! )
//! ```

mod form;
mod run;
pub mod wrapped;

pub use form::paper_form;
pub use run::{run, RunOptions, RunReport};
pub use wrapped::WrappedKeys;

use crate::error::Error;
use crate::hsm::{KeyPairType, SecretKeySpec, SecretKeyType, TokenUri, Usage};
use gp_core::kcv::KcvMethod;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// The script format version this build understands.
pub const SCRIPT_VERSION: u32 = 1;

/// Largest script read, in bytes: a script is untrusted input.
const MAX_SCRIPT: u64 = 1024 * 1024;

/// Longest label a script may give a key.
const MAX_LABEL: usize = 64;

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
    /// Shorthand for a ceremony on one token whose PIN the operator gives: `token: "pkcs11:token=issuer"`
    /// is `tokens: [Token(name: "issuer", uri: "pkcs11:token=issuer")]`. Give this or `tokens`.
    #[serde(default)]
    pub token: Option<String>,
    /// The tokens the ceremony works on; steps name one, or use the first.
    #[serde(default)]
    pub tokens: Vec<TokenDecl>,
    /// The people taking part, by role.
    pub roles: Vec<Role>,
    /// What happens, in order.
    pub steps: Vec<Step>,
}

/// A token the ceremony uses (written `Token(…)` in scripts).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename = "Token")]
pub struct TokenDecl {
    /// Short name used by steps, `--pin-source NAME=…` and answer ids.
    pub name: String,
    /// A token label or an RFC 7512 URI (`pkcs11:token=issuer;serial=…`), never a slot number.
    pub uri: String,
    /// How the token's user PIN is given.
    #[serde(default)]
    pub pin: PinPolicy,
}

/// How a token's user PIN is given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub enum PinPolicy {
    /// By the operator: a no-echo prompt, or `--pin-source` for unattended runs.
    #[default]
    Operator,
    /// As Shamir shares held by officers (enrolled by an `EnrolPinQuorum` step); any `threshold` of them
    /// rebuild it in memory.
    Quorum {
        /// How many shares open the token.
        threshold: usize,
        /// The officers holding shares, in the order of the enrolment (officer `i` holds share `i`).
        officers: Vec<String>,
    },
}

/// A person's part in the ceremony.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    /// Name used in steps and recorded in the ledger (a role or person's name, not a secret).
    pub name: String,
    /// What the role may do.
    pub kind: RoleKind,
}

/// Kinds of role in a ceremony.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum RoleKind {
    /// Operates the token and runs the steps; may hold a PIN share.
    Officer,
    /// Holds a key component.
    Custodian,
    /// Watches and signs the form.
    Witness,
}

impl RoleKind {
    /// Lower-case name for the ledger and the form.
    pub fn name(self) -> &'static str {
        match self {
            RoleKind::Officer => "officer",
            RoleKind::Custodian => "custodian",
            RoleKind::Witness => "witness",
        }
    }
}

/// One custodian's component of a key formed in the ceremony.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    /// The custodian who types it.
    pub custodian: String,
    /// The component's KCV from the custodian's paper form (6 hex digits), when known in advance: a
    /// component that does not match aborts the ceremony before anything is created. Without it, the
    /// custodian confirms the KCV shown.
    #[serde(default)]
    pub kcv: Option<String>,
}

/// One step of a ceremony. Every step may name its `token` (default: the first), and names the roles
/// performing and witnessing it.
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
        /// Token name (default: the first token).
        #[serde(default)]
        token: Option<String>,
        /// Officers performing the step.
        performed_by: Vec<String>,
        /// Roles witnessing the step.
        #[serde(default)]
        witnessed_by: Vec<String>,
    },
    /// Generate a key pair inside the token (DAP keys, token-signing keys).
    GenerateKeyPair {
        /// Unique label of both halves in the token.
        label: String,
        /// Object ID of both halves, hex.
        id: String,
        /// Algorithm and size.
        key_type: KeyPairType,
        /// What the private key may be used for; the public key gets the matching usages.
        usages: Vec<Usage>,
        /// Whether the private key may ever leave the token wrapped (default false).
        #[serde(default)]
        extractable: bool,
        /// Token name (default: the first token).
        #[serde(default)]
        token: Option<String>,
        /// Officers performing the step.
        performed_by: Vec<String>,
        /// Roles witnessing the step.
        #[serde(default)]
        witnessed_by: Vec<String>,
    },
    /// Form a secret key from custodians' components, typed one at a time without echo.
    FormKey {
        /// Unique label in the token.
        label: String,
        /// Unique object ID, hex.
        id: String,
        /// Algorithm and length.
        key_type: SecretKeyType,
        /// What the key may be used for.
        usages: Vec<Usage>,
        /// Whether it may leave the token wrapped or as components later (default false).
        #[serde(default)]
        extractable: bool,
        /// The components, one per custodian, at least two.
        components: Vec<Component>,
        /// Token name (default: the first token).
        #[serde(default)]
        token: Option<String>,
        /// Officers performing the step.
        performed_by: Vec<String>,
        /// Roles witnessing the step.
        #[serde(default)]
        witnessed_by: Vec<String>,
    },
    /// Export an extractable secret key as components, each shown to one custodian only.
    ExportComponents {
        /// Label of the key.
        key: String,
        /// One custodian per component, at least two.
        custodians: Vec<String>,
        /// Token name (default: the first token).
        #[serde(default)]
        token: Option<String>,
        /// Officers performing the step.
        performed_by: Vec<String>,
        /// Roles witnessing the step.
        #[serde(default)]
        witnessed_by: Vec<String>,
    },
    /// Wrap extractable keys under a KEK into a file for another organisation's token.
    WrapKeys {
        /// Labels of the keys to wrap.
        keys: Vec<String>,
        /// Label of the KEK (a secret key with the wrap usage).
        kek: String,
        /// The file to write (never overwritten).
        out: String,
        /// Token name (default: the first token).
        #[serde(default)]
        token: Option<String>,
        /// Officers performing the step.
        performed_by: Vec<String>,
        /// Roles witnessing the step.
        #[serde(default)]
        witnessed_by: Vec<String>,
    },
    /// Unwrap keys from a wrapped-key file under a KEK, checking each key's KCV before keeping it.
    UnwrapKeys {
        /// The wrapped-key file (written by `WrapKeys`, here or at the other organisation).
        input: String,
        /// Label of the KEK (a secret key with the unwrap usage).
        kek: String,
        /// Labels of the keys expected in the file, all of which are unwrapped.
        keys: Vec<String>,
        /// Whether the received keys may leave this token again (default false).
        #[serde(default)]
        extractable: bool,
        /// Token name (default: the first token).
        #[serde(default)]
        token: Option<String>,
        /// Officers performing the step.
        performed_by: Vec<String>,
        /// Roles witnessing the step.
        #[serde(default)]
        witnessed_by: Vec<String>,
    },
    /// Write a key pair's public key as PEM (for DAP or token verification by others).
    ExportPublicKey {
        /// Label of the key pair.
        key: String,
        /// The PEM file to write (never overwritten).
        out: String,
        /// Token name (default: the first token).
        #[serde(default)]
        token: Option<String>,
        /// Officers performing the step.
        performed_by: Vec<String>,
        /// Roles witnessing the step.
        #[serde(default)]
        witnessed_by: Vec<String>,
    },
    /// Destroy a key (or both halves of a key pair) after the officer types its label to confirm.
    DestroyKey {
        /// Label of the key.
        key: String,
        /// Token name (default: the first token).
        #[serde(default)]
        token: Option<String>,
        /// Officers performing the step.
        performed_by: Vec<String>,
        /// Roles witnessing the step.
        #[serde(default)]
        witnessed_by: Vec<String>,
    },
    /// Replace the token's user PIN by a random one held as Shamir shares by officers. Must be the last
    /// step: nothing after it could be undone if it failed.
    EnrolPinQuorum {
        /// How many shares open the token.
        threshold: usize,
        /// Officers receiving shares; officer `i` gets share `i`.
        officers: Vec<String>,
        /// Token name (default: the first token).
        #[serde(default)]
        token: Option<String>,
        /// Officers performing the step.
        performed_by: Vec<String>,
        /// Roles witnessing the step.
        #[serde(default)]
        witnessed_by: Vec<String>,
    },
}

/// What a step does to keys in its token, for the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyEffect {
    /// Creates a key with this label and ID.
    Creates { label: String, id: Vec<u8> },
    /// Needs an existing key with this label.
    Uses(String),
    /// Removes the key with this label.
    Destroys(String),
}

impl Step {
    /// The step's kind as scripts write it.
    pub fn kind(&self) -> &'static str {
        match self {
            Step::GenerateSecretKey { .. } => "GenerateSecretKey",
            Step::GenerateKeyPair { .. } => "GenerateKeyPair",
            Step::FormKey { .. } => "FormKey",
            Step::ExportComponents { .. } => "ExportComponents",
            Step::WrapKeys { .. } => "WrapKeys",
            Step::UnwrapKeys { .. } => "UnwrapKeys",
            Step::ExportPublicKey { .. } => "ExportPublicKey",
            Step::DestroyKey { .. } => "DestroyKey",
            Step::EnrolPinQuorum { .. } => "EnrolPinQuorum",
        }
    }

    /// The token name the step names, if any.
    pub fn token_name(&self) -> Option<&str> {
        match self {
            Step::GenerateSecretKey { token, .. }
            | Step::GenerateKeyPair { token, .. }
            | Step::FormKey { token, .. }
            | Step::ExportComponents { token, .. }
            | Step::WrapKeys { token, .. }
            | Step::UnwrapKeys { token, .. }
            | Step::ExportPublicKey { token, .. }
            | Step::DestroyKey { token, .. }
            | Step::EnrolPinQuorum { token, .. } => token.as_deref(),
        }
    }

    /// Roles performing and witnessing the step.
    pub fn roles(&self) -> (&[String], &[String]) {
        match self {
            Step::GenerateSecretKey {
                performed_by,
                witnessed_by,
                ..
            }
            | Step::GenerateKeyPair {
                performed_by,
                witnessed_by,
                ..
            }
            | Step::FormKey {
                performed_by,
                witnessed_by,
                ..
            }
            | Step::ExportComponents {
                performed_by,
                witnessed_by,
                ..
            }
            | Step::WrapKeys {
                performed_by,
                witnessed_by,
                ..
            }
            | Step::UnwrapKeys {
                performed_by,
                witnessed_by,
                ..
            }
            | Step::ExportPublicKey {
                performed_by,
                witnessed_by,
                ..
            }
            | Step::DestroyKey {
                performed_by,
                witnessed_by,
                ..
            }
            | Step::EnrolPinQuorum {
                performed_by,
                witnessed_by,
                ..
            } => (performed_by, witnessed_by),
        }
    }

    /// The label a step is mainly about, for messages.
    pub fn subject(&self) -> String {
        match self {
            Step::GenerateSecretKey { label, .. }
            | Step::GenerateKeyPair { label, .. }
            | Step::FormKey { label, .. } => label.clone(),
            Step::ExportComponents { key, .. }
            | Step::ExportPublicKey { key, .. }
            | Step::DestroyKey { key, .. } => key.clone(),
            Step::WrapKeys { keys, .. } | Step::UnwrapKeys { keys, .. } => keys.join(", "),
            Step::EnrolPinQuorum { .. } => "user PIN".into(),
        }
    }

    /// The secret key this step creates, as a token template (generate and form steps).
    pub fn key_spec(&self) -> Result<Option<SecretKeySpec>, Error> {
        match self {
            Step::GenerateSecretKey {
                label,
                id,
                key_type,
                usages,
                extractable,
                ..
            }
            | Step::FormKey {
                label,
                id,
                key_type,
                usages,
                extractable,
                ..
            } => Ok(Some(SecretKeySpec {
                label: label.clone(),
                id: parse_id(id)?,
                key_type: *key_type,
                usages: usages.clone(),
                extractable: *extractable,
            })),
            _ => Ok(None),
        }
    }

    /// The file a step writes, if any.
    pub fn output_file(&self) -> Option<&str> {
        match self {
            Step::WrapKeys { out, .. } | Step::ExportPublicKey { out, .. } => Some(out),
            _ => None,
        }
    }

    /// What the step does to keys (input to the label, ID and reference checks).
    pub(crate) fn effects(&self) -> Result<Vec<KeyEffect>, Error> {
        Ok(match self {
            Step::GenerateSecretKey { label, id, .. }
            | Step::GenerateKeyPair { label, id, .. }
            | Step::FormKey { label, id, .. } => vec![KeyEffect::Creates {
                label: label.clone(),
                id: parse_id(id)?,
            }],
            Step::ExportComponents { key, .. } | Step::ExportPublicKey { key, .. } => {
                vec![KeyEffect::Uses(key.clone())]
            }
            Step::WrapKeys { keys, kek, .. } => {
                let mut v = vec![KeyEffect::Uses(kek.clone())];
                v.extend(keys.iter().map(|k| KeyEffect::Uses(k.clone())));
                v
            }
            Step::UnwrapKeys { kek, .. } => vec![KeyEffect::Uses(kek.clone())],
            Step::DestroyKey { key, .. } => vec![KeyEffect::Destroys(key.clone())],
            Step::EnrolPinQuorum { .. } => Vec::new(),
        })
    }

    /// A one-line description of what the step will do, for `--dry-run`, the ledger and the paper form.
    pub fn describe(&self, token: &str) -> String {
        let usages = |u: &[Usage]| u.iter().map(|u| u.name()).collect::<Vec<_>>().join(", ");
        let policy = |x: bool| {
            if x {
                "extractable (wrapped only)"
            } else {
                "never extractable"
            }
        };
        match self {
            Step::GenerateSecretKey {
                label,
                id,
                key_type,
                usages: u,
                extractable,
                ..
            } => format!(
                "generate {} key '{label}' (id {id}) in token '{token}': usages [{}], sensitive, {}",
                key_type.name(),
                usages(u),
                policy(*extractable)
            ),
            Step::GenerateKeyPair {
                label,
                id,
                key_type,
                usages: u,
                extractable,
                ..
            } => format!(
                "generate {} key pair '{label}' (id {id}) in token '{token}': private key usages [{}], sensitive, {}",
                key_type.name(),
                usages(u),
                policy(*extractable)
            ),
            Step::FormKey {
                label,
                id,
                key_type,
                usages: u,
                extractable,
                components,
                ..
            } => format!(
                "form {} key '{label}' (id {id}) in token '{token}' from {} components ({}): usages [{}], sensitive, {}",
                key_type.name(),
                components.len(),
                components
                    .iter()
                    .map(|c| c.custodian.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                usages(u),
                if *extractable {
                    "extractable (wrapped or as components only)"
                } else {
                    "never leaves the token"
                }
            ),
            Step::ExportComponents {
                key, custodians, ..
            } => format!(
                "export key '{key}' of token '{token}' as {} components, each shown to one custodian ({})",
                custodians.len(),
                custodians.join(", ")
            ),
            Step::WrapKeys { keys, kek, out, .. } => format!(
                "wrap keys {} of token '{token}' under KEK '{kek}' into {out}",
                quote_list(keys)
            ),
            Step::UnwrapKeys {
                input,
                kek,
                keys,
                extractable,
                ..
            } => format!(
                "unwrap keys {} from {input} under KEK '{kek}' into token '{token}', each KCV checked first: sensitive, {}",
                quote_list(keys),
                policy(*extractable)
            ),
            Step::ExportPublicKey { key, out, .. } => {
                format!("write the public key of '{key}' in token '{token}' to {out} (PEM)")
            }
            Step::DestroyKey { key, .. } => format!(
                "destroy key '{key}' in token '{token}' once its label is typed to confirm"
            ),
            Step::EnrolPinQuorum {
                threshold,
                officers,
                ..
            } => format!(
                "replace the user PIN of token '{token}' by a random one held as {threshold}-of-{} shares by {}",
                officers.len(),
                officers.join(", ")
            ),
        }
    }
}

fn quote_list(v: &[String]) -> String {
    v.iter()
        .map(|k| format!("'{k}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses a hex object ID (1 to 64 bytes).
fn parse_id(id: &str) -> Result<Vec<u8>, Error> {
    let bytes = hex::decode(id).map_err(|_| Error::Script(format!("id '{id}' is not hex")))?;
    if bytes.is_empty() || bytes.len() > 64 {
        return Err(Error::Script(format!("id '{id}' must be 1 to 64 bytes")));
    }
    Ok(bytes)
}

/// Parses a KCV written on a paper form: 6 hex digits (3 bytes).
pub(crate) fn parse_kcv(kcv: &str) -> Result<[u8; 3], Error> {
    let b = hex::decode(kcv)
        .ok()
        .and_then(|b| <[u8; 3]>::try_from(b.as_slice()).ok());
    b.ok_or_else(|| Error::Script(format!("kcv '{kcv}' must be 6 hex digits")))
}

/// The method KCVs of this type are shown and compared in: 3DES over zeros, AES over 01×16 (GPC B.6).
pub fn form_method(key_type: SecretKeyType) -> KcvMethod {
    crate::secret::KeyValue::form_method(key_type)
}

/// Answer ids: the names under which scripted answers stand in for people.
pub mod answer_id {
    /// A custodian's component `index` (1-based) of key `label` formed in `token`.
    pub fn component(token: &str, label: &str, index: usize) -> String {
        format!("component/{token}/{label}/{index}")
    }
    /// A custodian's "yes" that the KCV shown matches their form (when the script has no KCV).
    pub fn kcv_ok(token: &str, label: &str, index: usize) -> String {
        format!("kcv-ok/{token}/{label}/{index}")
    }
    /// The label typed to confirm destroying key `label`.
    pub fn destroy(token: &str, label: &str) -> String {
        format!("destroy/{token}/{label}")
    }
    /// An officer's PIN share for `token`.
    pub fn pin_share(token: &str, officer: &str) -> String {
        format!("pin-share/{token}/{officer}")
    }
    /// Component `index` of key `label` exported from `token`, shown to one custodian.
    pub fn export(token: &str, label: &str, index: usize) -> String {
        format!("export/{token}/{label}/{index}")
    }
}

impl Ceremony {
    /// Reads and parses a script; errors name the file, line and column and what was expected.
    pub fn load(path: &Path) -> Result<Ceremony, Error> {
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        if meta.len() > MAX_SCRIPT {
            return Err(Error::Script(format!(
                "{}: larger than {MAX_SCRIPT} bytes; not a ceremony script",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        Ceremony::parse(&text, &path.display().to_string())
    }

    /// Parses script text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Ceremony, Error> {
        let options = ron::Options::default()
            .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME);
        let ceremony: Ceremony = options.from_str(text).map_err(|e| {
            Error::Script(format!(
                "{origin}:{}:{}: {}",
                e.span.start.line, e.span.start.col, e.code
            ))
        })?;
        let mut ceremony = ceremony;
        if let Some(uri) = ceremony.token.take() {
            if !ceremony.tokens.is_empty() {
                return Err(Error::Script(format!(
                    "{origin}: token: give either `token` or `tokens`, not both"
                )));
            }
            let name = TokenUri::parse(&uri)
                .ok()
                .and_then(|u| u.token)
                .filter(|t| !t.contains('/') && !t.contains('='))
                .unwrap_or_else(|| "token".into());
            ceremony.tokens.push(TokenDecl {
                name,
                uri,
                pin: PinPolicy::Operator,
            });
        }
        ceremony.check(origin)?;
        Ok(ceremony)
    }

    /// The declaration of the token a step works on.
    pub fn token_of(&self, step: &Step) -> Option<&TokenDecl> {
        match step.token_name() {
            Some(name) => self.tokens.iter().find(|t| t.name == name),
            None => self.tokens.first(),
        }
    }

    fn role_kind(&self, name: &str) -> Option<RoleKind> {
        self.roles.iter().find(|r| r.name == name).map(|r| r.kind)
    }

    /// Every check that needs no token: version, tokens, roles and quorums, labels, IDs and references
    /// per token, outputs, well-formed values.
    fn check(&self, origin: &str) -> Result<(), Error> {
        let err = |m: String| Error::Script(format!("{origin}: {m}"));
        if self.version != SCRIPT_VERSION {
            return Err(err(format!(
                "version: {} is not understood (this keyman reads version {SCRIPT_VERSION})",
                self.version
            )));
        }
        check_name("name", &self.name).map_err(err)?;
        if self.tokens.is_empty() {
            return Err(err("tokens: the ceremony names no token".into()));
        }
        let mut roles = HashSet::new();
        for (i, r) in self.roles.iter().enumerate() {
            check_name(&format!("roles[{i}].name"), &r.name).map_err(err)?;
            if !roles.insert(r.name.as_str()) {
                return Err(err(format!(
                    "roles[{i}]: role '{}' is declared twice",
                    r.name
                )));
            }
        }
        let need_kind = |field: &str, who: &str, kind: RoleKind| -> Result<(), Error> {
            match self.role_kind(who) {
                None => Err(err(format!("{field}: role '{who}' is not declared"))),
                Some(k) if k != kind => Err(err(format!(
                    "{field}: '{who}' is a {} but must be a {}",
                    k.name(),
                    kind.name()
                ))),
                Some(_) => Ok(()),
            }
        };
        let quorum = |field: &str, threshold: usize, officers: &[String]| -> Result<(), Error> {
            if threshold < 2 || threshold > officers.len() || officers.len() > 255 {
                return Err(err(format!(
                    "{field}: a quorum of {threshold} of {} is not possible (need 2 <= threshold <= officers <= 255)",
                    officers.len()
                )));
            }
            let mut seen = HashSet::new();
            for (i, o) in officers.iter().enumerate() {
                need_kind(&format!("{field}.officers[{i}]"), o, RoleKind::Officer)?;
                if !seen.insert(o) {
                    return Err(err(format!("{field}.officers[{i}]: '{o}' is listed twice")));
                }
            }
            Ok(())
        };
        let mut names = HashSet::new();
        for (i, t) in self.tokens.iter().enumerate() {
            check_name(&format!("tokens[{i}].name"), &t.name).map_err(err)?;
            if t.name.contains('/') || t.name.contains('=') {
                return Err(err(format!(
                    "tokens[{i}].name: '{}' may not contain '/' or '='",
                    t.name
                )));
            }
            if !names.insert(t.name.as_str()) {
                return Err(err(format!(
                    "tokens[{i}]: token name '{}' is used twice",
                    t.name
                )));
            }
            TokenUri::parse(&t.uri).map_err(|e| err(format!("tokens[{i}].uri: {e}")))?;
            if let PinPolicy::Quorum {
                threshold,
                officers,
            } = &t.pin
            {
                quorum(&format!("tokens[{i}].pin"), *threshold, officers)?;
            }
        }
        if self.steps.is_empty() {
            return Err(err("steps: the ceremony has no steps".into()));
        }
        // Simulated token contents: labels and IDs this script creates, per token.
        let mut labels: HashMap<&str, HashSet<String>> = HashMap::new();
        let mut ids: HashMap<&str, HashSet<Vec<u8>>> = HashMap::new();
        let mut outputs = HashSet::new();
        let last = self.steps.len();
        for (n, step) in self.steps.iter().enumerate() {
            let at = format!("steps[{n}] ({} '{}')", step.kind(), step.subject());
            let serr = |m: String| err(format!("{at}: {m}"));
            let token = self.token_of(step).ok_or_else(|| {
                serr(format!(
                    "token '{}' is not declared",
                    step.token_name().unwrap_or_default()
                ))
            })?;
            let (performers, witnesses) = step.roles();
            if performers.is_empty() {
                return Err(serr("performed_by: no officer performs it".into()));
            }
            for (i, p) in performers.iter().enumerate() {
                need_kind(&format!("{at}: performed_by[{i}]"), p, RoleKind::Officer)?;
            }
            for (i, w) in witnesses.iter().enumerate() {
                if !roles.contains(w.as_str()) {
                    return Err(serr(format!(
                        "witnessed_by[{i}]: role '{w}' is not declared"
                    )));
                }
            }
            if let Some(spec) = step.key_spec().map_err(|e| serr(e.to_string()))? {
                check_usages(&spec.usages, &Usage::ALL).map_err(serr)?;
            }
            match step {
                Step::GenerateKeyPair {
                    key_type, usages, ..
                } => {
                    check_usages(usages, key_type.private_usages()).map_err(|m| {
                        serr(format!(
                            "{m} (a {} private key may: {})",
                            key_type.name(),
                            {
                                key_type
                                    .private_usages()
                                    .iter()
                                    .map(|u| u.name())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            }
                        ))
                    })?;
                }
                Step::FormKey { components, .. } => {
                    if components.len() < 2 {
                        return Err(serr(
                            "components: a key is formed from at least two components".into(),
                        ));
                    }
                    let mut seen = HashSet::new();
                    for (i, c) in components.iter().enumerate() {
                        need_kind(
                            &format!("{at}: components[{i}].custodian"),
                            &c.custodian,
                            RoleKind::Custodian,
                        )?;
                        if !seen.insert(&c.custodian) {
                            return Err(serr(format!(
                                "components[{i}].custodian: '{}' holds two components; split knowledge needs one each",
                                c.custodian
                            )));
                        }
                        if let Some(k) = &c.kcv {
                            parse_kcv(k).map_err(|e| serr(format!("components[{i}].{e}")))?;
                        }
                    }
                }
                Step::ExportComponents { custodians, .. } => {
                    if custodians.len() < 2 || custodians.len() > 255 {
                        return Err(serr(
                            "custodians: a key is exported as 2 to 255 components".into(),
                        ));
                    }
                    let mut seen = HashSet::new();
                    for (i, c) in custodians.iter().enumerate() {
                        need_kind(&format!("{at}: custodians[{i}]"), c, RoleKind::Custodian)?;
                        if !seen.insert(c) {
                            return Err(serr(format!(
                                "custodians[{i}]: '{c}' would see two components; split knowledge needs one each"
                            )));
                        }
                    }
                }
                Step::WrapKeys { keys, kek, .. } | Step::UnwrapKeys { keys, kek, .. } => {
                    if keys.is_empty() {
                        return Err(serr("keys: no key named".into()));
                    }
                    let mut seen = HashSet::new();
                    for (i, k) in keys.iter().enumerate() {
                        if !seen.insert(k) || k == kek {
                            return Err(serr(format!(
                                "keys[{i}]: '{k}' is named twice or is the KEK"
                            )));
                        }
                    }
                }
                Step::EnrolPinQuorum {
                    threshold,
                    officers,
                    ..
                } => {
                    quorum(&at, *threshold, officers)?;
                    if n + 1 != last {
                        return Err(serr(
                            "EnrolPinQuorum must be the last step: a PIN change cannot be undone if a later step fails"
                                .into(),
                        ));
                    }
                }
                _ => {}
            }
            if let Some(out) = step.output_file() {
                if out.trim().is_empty() {
                    return Err(serr("out: empty file name".into()));
                }
                if !outputs.insert(out.to_string()) {
                    return Err(serr(format!("out: {out} is written by two steps")));
                }
            }
            if let Step::UnwrapKeys { input, .. } = step {
                if input.trim().is_empty() {
                    return Err(serr("input: empty file name".into()));
                }
            }
            let created_labels = labels.entry(token.name.as_str()).or_default();
            let created_ids = ids.entry(token.name.as_str()).or_default();
            for effect in step.effects().map_err(|e| serr(e.to_string()))? {
                match effect {
                    KeyEffect::Creates { label, id } => {
                        check_name("label", &label).map_err(serr)?;
                        if label.len() > MAX_LABEL {
                            return Err(serr(format!("label: longer than {MAX_LABEL} bytes")));
                        }
                        if !created_labels.insert(label.clone()) {
                            return Err(serr(format!(
                                "label '{label}' is used twice in token '{}'",
                                token.name
                            )));
                        }
                        if !created_ids.insert(id.clone()) {
                            return Err(serr(format!(
                                "id {} is used twice in token '{}'",
                                hex::encode(&id),
                                token.name
                            )));
                        }
                    }
                    KeyEffect::Uses(label) | KeyEffect::Destroys(label) => {
                        check_name("key", &label).map_err(serr)?;
                    }
                }
            }
            if let Step::UnwrapKeys { keys, .. } = step {
                for k in keys {
                    check_name("keys", k).map_err(serr)?;
                    if !created_labels.insert(k.clone()) {
                        return Err(serr(format!(
                            "label '{k}' is used twice in token '{}'",
                            token.name
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// The answer ids a run will ask, and whether each is a secret, in order; for checking scripted
    /// answers before anything is created and for the paper form.
    pub fn questions(&self) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        for step in &self.steps {
            let Some(token) = self.token_of(step) else {
                continue;
            };
            match step {
                Step::FormKey {
                    label, components, ..
                } => {
                    for (i, c) in components.iter().enumerate() {
                        out.push((answer_id::component(&token.name, label, i + 1), true));
                        if c.kcv.is_none() {
                            out.push((answer_id::kcv_ok(&token.name, label, i + 1), false));
                        }
                    }
                }
                Step::DestroyKey { key, .. } => {
                    out.push((answer_id::destroy(&token.name, key), false));
                }
                _ => {}
            }
        }
        out
    }

    /// Whether a run asks people for input, and whether it shows them secrets.
    pub fn needs_people(&self) -> (bool, bool) {
        let ask = self.steps.iter().any(|s| {
            matches!(
                s,
                Step::FormKey { .. } | Step::DestroyKey { .. } | Step::EnrolPinQuorum { .. }
            )
        }) || self
            .tokens
            .iter()
            .any(|t| matches!(t.pin, PinPolicy::Quorum { .. }));
        let reveal = self.steps.iter().any(|s| {
            matches!(
                s,
                Step::ExportComponents { .. } | Step::EnrolPinQuorum { .. }
            )
        });
        (ask, reveal)
    }

    /// The plan as `--dry-run` and `ceremony check` print it: every action, in order, with nothing done.
    pub fn plan(&self) -> Vec<String> {
        let mut out = vec![format!("ceremony '{}': {}", self.name, self.purpose)];
        for t in &self.tokens {
            out.push(format!(
                "token '{}': {} — PIN {}",
                t.name,
                t.uri,
                match &t.pin {
                    PinPolicy::Operator => "from the operator (prompt or --pin-source)".to_string(),
                    PinPolicy::Quorum {
                        threshold,
                        officers,
                    } => format!(
                        "rebuilt in memory from {threshold} of the shares held by {}",
                        officers.join(", ")
                    ),
                }
            ));
        }
        for r in &self.roles {
            out.push(format!("role: {} ({})", r.name, r.kind.name()));
        }
        out.push(
            "check before anything is created: every token present and logged in; labels and IDs free; \
             keys referred to present with the policy their step needs; mechanisms available; \
             output files absent, input files present; scripted answers complete"
                .into(),
        );
        for (n, s) in self.steps.iter().enumerate() {
            let token = self.token_of(s).map_or("?", |t| t.name.as_str());
            let (performers, witnesses) = s.roles();
            out.push(format!("step {}: {}", n + 1, s.describe(token)));
            for d in step_details(s) {
                out.push(format!("  {d}"));
            }
            out.push(format!(
                "  performed by {}{}",
                performers.join(", "),
                if witnesses.is_empty() {
                    String::new()
                } else {
                    format!("; witnessed by {}", witnesses.join(", "))
                }
            ));
        }
        out
    }
}

/// The finer actions of a step, for the plan and the paper form.
fn step_details(step: &Step) -> Vec<String> {
    match step {
        Step::GenerateSecretKey { key_type, .. } => vec![
            "read the key's attributes back and stop on any difference".into(),
            format!("show its KCV ({})", kcv_note(*key_type)),
        ],
        Step::GenerateKeyPair { .. } => vec![
            "read both halves' attributes back and stop on any difference".into(),
            "record the public key (PEM) in the ledger and show its SHA-256 fingerprint".into(),
        ],
        Step::FormKey {
            key_type,
            components,
            ..
        } => {
            let mut v = Vec::new();
            for (i, c) in components.iter().enumerate() {
                v.push(format!(
                    "custodian {} types component {} of {} without echo; its KCV ({}) is shown{}",
                    c.custodian,
                    i + 1,
                    components.len(),
                    form_method(*key_type),
                    match &c.kcv {
                        Some(k) => format!(" and must be {}", k.to_uppercase()),
                        None => " and confirmed against the paper form".into(),
                    }
                ));
            }
            if key_type.is_des() {
                v.push("combine the components (XOR) and fix DES parity".into());
            } else {
                v.push("combine the components (XOR)".into());
            }
            v.push("show the combined key's KCV; create the key; read it back and check its KCV".into());
            v
        }
        Step::ExportComponents { custodians, .. } => {
            let mut v = vec![
                "check the key's policy allows export (extractable); split it into random components in memory"
                    .into(),
            ];
            for (i, c) in custodians.iter().enumerate() {
                v.push(format!(
                    "show component {} only to custodian {c}, with its KCV",
                    i + 1
                ));
            }
            v
        }
        Step::WrapKeys { .. } => vec![
            "choose the best wrapping mechanism the token has (AES-KEY-WRAP first); never export in clear"
                .into(),
            "record each key's label, ID, type, usages and KCV with the wrapped bytes".into(),
        ],
        Step::UnwrapKeys { .. } => vec![
            "unwrap each key once as a temporary session object to check its KCV; only then keep it".into(),
        ],
        Step::ExportPublicKey { .. } => vec![
            "write the PEM file (never overwritten) and record it in the ledger".into(),
        ],
        Step::DestroyKey { .. } => vec!["the officer types the key's label to confirm".into()],
        Step::EnrolPinQuorum { officers, .. } => vec![
            "make a random PIN with the token's generator and split it into shares".into(),
            format!(
                "show each share only to its officer ({}), then have each type it back",
                officers.join(", ")
            ),
            "change the PIN, then log in again with the new one".into(),
        ],
    }
}

fn kcv_note(key_type: SecretKeyType) -> String {
    if key_type.is_des() {
        KcvMethod::Des3Zeros.to_string()
    } else {
        format!(
            "{} when the key may encrypt, else the token's {}",
            KcvMethod::AesOnes,
            KcvMethod::AesZeros
        )
    }
}

fn check_name(field: &str, s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        return Err(format!("{field}: empty"));
    }
    if s.len() > 200 || s.chars().any(char::is_control) {
        return Err(format!(
            "{field}: must be at most 200 bytes without control characters"
        ));
    }
    Ok(())
}

fn check_usages(usages: &[Usage], allowed: &[Usage]) -> Result<(), String> {
    if usages.is_empty() {
        return Err("usages: a key with no usages is useless".into());
    }
    let mut seen = HashSet::new();
    for u in usages {
        if !seen.insert(u) {
            return Err(format!("usages: {} is listed twice", u.name()));
        }
        if !allowed.contains(u) {
            return Err(format!("usages: {} is not possible here", u.name()));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const GOOD: &str = r#"Ceremony(
    version: 1,
    name: "t",
    purpose: "test",
    tokens: [Token(name: "issuer", uri: "pkcs11:token=issuer")],
    roles: [Role(name: "officer", kind: Officer), Role(name: "witness", kind: Witness),
        Role(name: "alice", kind: Custodian), Role(name: "bob", kind: Custodian)],
    steps: [
        GenerateSecretKey(label: "k", id: "01", key_type: Des3TwoKey, usages: [Derive],
            performed_by: ["officer"], witnessed_by: ["witness"]),
    ],
)"#;

    fn parse(text: &str) -> Result<Ceremony, Error> {
        Ceremony::parse(text, "x.ron")
    }

    fn with_step(step: &str) -> String {
        GOOD.replace("    ],\n)", &format!("        {step},\n    ],\n)"))
    }

    #[test]
    fn parses_a_good_script() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.steps.len(), 1);
        assert_eq!(c.questions(), vec![]);
    }

    #[test]
    fn unknown_field_is_refused_with_line_and_column() {
        let bad = GOOD.replace(
            "purpose: \"test\",",
            "purpose: \"test\",\n    colour: \"blue\",",
        );
        let e = parse(&bad).unwrap_err().to_string();
        assert!(e.starts_with("x.ron:5:5:"), "{e}");
        assert!(e.contains("colour"), "{e}");
        let e = parse("Ceremony(version: 1,").unwrap_err().to_string();
        assert!(e.starts_with("x.ron:1:"), "{e}");
    }

    #[test]
    fn inconsistent_scripts_are_refused() {
        for (from, to, says) in [
            ("version: 1", "version: 2", "version: 2"),
            (
                "witnessed_by: [\"witness\"]",
                "witnessed_by: [\"ghost\"]",
                "'ghost' is not declared",
            ),
            (
                "performed_by: [\"officer\"]",
                "performed_by: [\"witness\"]",
                "'witness' is a witness but must be a officer",
            ),
            ("id: \"01\"", "id: \"zz\"", "not hex"),
            ("usages: [Derive]", "usages: []", "no usages"),
            (
                "usages: [Derive]",
                "usages: [Derive, Derive]",
                "listed twice",
            ),
            (
                "tokens: [Token(name: \"issuer\", uri: \"pkcs11:token=issuer\")]",
                "tokens: []",
                "names no token",
            ),
            (
                "uri: \"pkcs11:token=issuer\"",
                "uri: \"pkcs11:slot-id=1\"",
                "tokens[0].uri",
            ),
            (
                "Role(name: \"bob\", kind: Custodian)",
                "Role(name: \"alice\", kind: Witness)",
                "declared twice",
            ),
        ] {
            let e = parse(&GOOD.replace(from, to)).unwrap_err().to_string();
            assert!(e.contains(says), "{from} -> {e}");
        }
        for (step, says) in [
            (
                r#"GenerateSecretKey(label: "k", id: "02", key_type: Aes128, usages: [Derive], performed_by: ["officer"])"#,
                "label 'k' is used twice",
            ),
            (
                r#"GenerateSecretKey(label: "k2", id: "01", key_type: Aes128, usages: [Derive], performed_by: ["officer"])"#,
                "id 01 is used twice",
            ),
            (
                r#"GenerateSecretKey(label: "k2", id: "02", key_type: Aes128, usages: [Derive], token: "bureau", performed_by: ["officer"])"#,
                "token 'bureau' is not declared",
            ),
            (
                r#"GenerateKeyPair(label: "p", id: "03", key_type: Rsa2048, usages: [Derive], performed_by: ["officer"])"#,
                "derive is not possible here",
            ),
            (
                r#"FormKey(label: "f", id: "04", key_type: Aes128, usages: [Wrap], components: [Component(custodian: "alice")], performed_by: ["officer"])"#,
                "at least two components",
            ),
            (
                r#"FormKey(label: "f", id: "04", key_type: Aes128, usages: [Wrap], components: [Component(custodian: "alice"), Component(custodian: "alice")], performed_by: ["officer"])"#,
                "holds two components",
            ),
            (
                r#"FormKey(label: "f", id: "04", key_type: Aes128, usages: [Wrap], components: [Component(custodian: "alice"), Component(custodian: "officer")], performed_by: ["officer"])"#,
                "'officer' is a officer but must be a custodian",
            ),
            (
                r#"FormKey(label: "f", id: "04", key_type: Aes128, usages: [Wrap], components: [Component(custodian: "alice", kcv: "12345"), Component(custodian: "bob")], performed_by: ["officer"])"#,
                "kcv '12345' must be 6 hex digits",
            ),
            (
                r#"EnrolPinQuorum(threshold: 1, officers: ["officer"], performed_by: ["officer"])"#,
                "quorum of 1 of 1 is not possible",
            ),
            (
                r#"WrapKeys(keys: ["k", "k"], kek: "kek", out: "w.json", performed_by: ["officer"])"#,
                "named twice",
            ),
        ] {
            let e = parse(&with_step(step)).unwrap_err().to_string();
            assert!(e.contains(says), "{step} -> {e}");
        }
        let two = with_step(
            r#"EnrolPinQuorum(threshold: 2, officers: ["officer", "officer2"], performed_by: ["officer"])"#,
        )
        .replace(
            "Role(name: \"officer\", kind: Officer)",
            "Role(name: \"officer\", kind: Officer), Role(name: \"officer2\", kind: Officer)",
        );
        parse(&two).unwrap();
        let not_last = two.replace(
            "    ],\n)",
            "        DestroyKey(key: \"k\", performed_by: [\"officer\"]),\n    ],\n)",
        );
        assert!(parse(&not_last)
            .unwrap_err()
            .to_string()
            .contains("must be the last step"));
    }

    #[test]
    fn one_token_shorthand() {
        let short = GOOD.replace(
            "tokens: [Token(name: \"issuer\", uri: \"pkcs11:token=issuer\")]",
            "token: \"pkcs11:token=issuer;serial=1\"",
        );
        let c = parse(&short).unwrap();
        assert_eq!(c.tokens.len(), 1);
        assert_eq!(c.tokens.first().unwrap().name, "issuer");
        let both = GOOD.replace("version: 1,", "version: 1, token: \"issuer\",");
        assert!(parse(&both).unwrap_err().to_string().contains("not both"));
    }

    #[test]
    fn questions_list_every_answer_a_run_needs() {
        let c = parse(&with_step(
            r#"FormKey(label: "f", id: "04", key_type: Aes128, usages: [Wrap], components: [Component(custodian: "alice", kcv: "0A0B0C"), Component(custodian: "bob")], performed_by: ["officer"])"#,
        ))
        .unwrap();
        assert_eq!(
            c.questions(),
            vec![
                ("component/issuer/f/1".to_string(), true),
                ("component/issuer/f/2".to_string(), true),
                ("kcv-ok/issuer/f/2".to_string(), false),
            ]
        );
        assert_eq!(c.needs_people(), (true, false));
    }
}
