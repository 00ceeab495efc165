//! PKCS#11 access shared by `keyman` and `signer`: tokens found by label, serial or RFC 7512 URI, keys made
//! and used inside the token.
//!
//! Why one module: every key operation of the project goes through here, so the rules hold everywhere —
//! secret keys are created sensitive and (unless a ceremony says otherwise) never extractable, attributes are
//! read back and checked after creation, derived per-card keys live only as session objects and are destroyed
//! when their guard drops, and no function returns secret key bytes — except
//! [`TokenSession::export_value`], for a key whose policy allows export as components, into a wiped type.

pub mod anchor;
pub mod capabilities;
mod raw;
pub mod signing;
pub mod uri;

mod inventory;
mod keys;
pub mod pem;

use crate::error::Error;
use crate::pin::PinSource;
use cryptoki::context::Pkcs11;
use cryptoki::error::RvError;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType as CkKeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use gp_core::kcv::KcvMethod;
pub use inventory::{format_inventory, ObjectInfo};
pub use keys::{Capability, KeyPairHandles, KeyPairSpec, KeyPairType, WrapMechanism};
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use std::collections::HashMap;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
pub use uri::TokenUri;

/// Where SoftHSM2's module lives on Debian; the default when nothing else names a module.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// Secret key types the project makes and uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SecretKeyType {
    /// Two-key triple DES (16 bytes), the SCP02 and EMV master key type.
    Des3TwoKey,
    /// Three-key triple DES (24 bytes).
    Des3ThreeKey,
    /// AES with a 128-bit key.
    Aes128,
    /// AES with a 192-bit key.
    Aes192,
    /// AES with a 256-bit key.
    Aes256,
}

impl SecretKeyType {
    /// Key length in bytes.
    pub fn byte_len(self) -> usize {
        match self {
            SecretKeyType::Des3TwoKey | SecretKeyType::Aes128 => 16,
            SecretKeyType::Des3ThreeKey | SecretKeyType::Aes192 => 24,
            SecretKeyType::Aes256 => 32,
        }
    }

    /// True for the triple-DES types.
    pub fn is_des(self) -> bool {
        matches!(
            self,
            SecretKeyType::Des3TwoKey | SecretKeyType::Des3ThreeKey
        )
    }

    fn ck_type(self) -> CkKeyType {
        match self {
            SecretKeyType::Des3TwoKey => CkKeyType::DES2,
            SecretKeyType::Des3ThreeKey => CkKeyType::DES3,
            _ => CkKeyType::AES,
        }
    }

    /// Short display name ("DES3-2KEY", "AES-128", …).
    pub fn name(self) -> &'static str {
        match self {
            SecretKeyType::Des3TwoKey => "DES3-2KEY",
            SecretKeyType::Des3ThreeKey => "DES3-3KEY",
            SecretKeyType::Aes128 => "AES-128",
            SecretKeyType::Aes192 => "AES-192",
            SecretKeyType::Aes256 => "AES-256",
        }
    }
}

/// What a key may be used for; each maps to one PKCS#11 boolean attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Usage {
    /// `CKA_ENCRYPT`.
    Encrypt,
    /// `CKA_DECRYPT`.
    Decrypt,
    /// `CKA_SIGN` (MAC generation for secret keys).
    Sign,
    /// `CKA_VERIFY`.
    Verify,
    /// `CKA_WRAP`.
    Wrap,
    /// `CKA_UNWRAP`.
    Unwrap,
    /// `CKA_DERIVE` (per-card key diversification).
    Derive,
}

impl Usage {
    /// All usages, in a fixed order.
    pub const ALL: [Usage; 7] = [
        Usage::Encrypt,
        Usage::Decrypt,
        Usage::Sign,
        Usage::Verify,
        Usage::Wrap,
        Usage::Unwrap,
        Usage::Derive,
    ];

    fn attr(self, on: bool) -> Attribute {
        match self {
            Usage::Encrypt => Attribute::Encrypt(on),
            Usage::Decrypt => Attribute::Decrypt(on),
            Usage::Sign => Attribute::Sign(on),
            Usage::Verify => Attribute::Verify(on),
            Usage::Wrap => Attribute::Wrap(on),
            Usage::Unwrap => Attribute::Unwrap(on),
            Usage::Derive => Attribute::Derive(on),
        }
    }

    fn attr_type(self) -> AttributeType {
        match self {
            Usage::Encrypt => AttributeType::Encrypt,
            Usage::Decrypt => AttributeType::Decrypt,
            Usage::Sign => AttributeType::Sign,
            Usage::Verify => AttributeType::Verify,
            Usage::Wrap => AttributeType::Wrap,
            Usage::Unwrap => AttributeType::Unwrap,
            Usage::Derive => AttributeType::Derive,
        }
    }

    /// Lower-case name as ceremony scripts and inventories write it.
    pub fn name(self) -> &'static str {
        match self {
            Usage::Encrypt => "encrypt",
            Usage::Decrypt => "decrypt",
            Usage::Sign => "sign",
            Usage::Verify => "verify",
            Usage::Wrap => "wrap",
            Usage::Unwrap => "unwrap",
            Usage::Derive => "derive",
        }
    }
}

/// How to create a persistent secret key in a token.
#[derive(Clone, Debug)]
pub struct SecretKeySpec {
    /// Label, unique in the token.
    pub label: String,
    /// Object identifier (`CKA_ID`), unique in the token.
    pub id: Vec<u8>,
    /// Algorithm and length.
    pub key_type: SecretKeyType,
    /// Permitted usages; every other usage is set false explicitly.
    pub usages: Vec<Usage>,
    /// Whether the key may ever leave the token (wrapped). False unless a ceremony says otherwise.
    pub extractable: bool,
}

/// A key check value with the method that produced it: AES check values differ between methods, so a
/// value is never shown without its method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kcv {
    /// The first three bytes of the check computation.
    pub value: [u8; 3],
    /// How it was computed.
    pub method: KcvMethod,
}

impl std::fmt::Display for Kcv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", hex::encode_upper(self.value), self.method)
    }
}

/// What the token says about a key (never its value).
#[derive(Clone, Debug)]
pub struct KeyInfo {
    /// `CKA_LABEL`.
    pub label: String,
    /// `CKA_ID`.
    pub id: Vec<u8>,
    /// Algorithm and length, when the project knows the type.
    pub key_type: Option<SecretKeyType>,
    /// Usages set true.
    pub usages: Vec<Usage>,
    /// `CKA_SENSITIVE`.
    pub sensitive: bool,
    /// `CKA_EXTRACTABLE`.
    pub extractable: bool,
    /// `CKA_NEVER_EXTRACTABLE`.
    pub never_extractable: bool,
    /// `CKA_LOCAL`: generated inside the token.
    pub local: bool,
    /// `CKA_CHECK_VALUE`, when the token keeps one.
    pub check_value: Option<Vec<u8>>,
}

/// A loaded and initialised PKCS#11 module.
///
/// A module is initialised once per process and shared: PKCS#11 allows one `C_Initialize` per process,
/// and the issuer's and a vendor's tokens often sit behind the same module. Cloning is cheap.
#[derive(Clone)]
pub struct Hsm {
    inner: Arc<Inner>,
}

struct Inner {
    ctx: Pkcs11,
    path: PathBuf,
    raw: OnceLock<Result<raw::RawModule, String>>,
    /// The initialisation string the module received at `C_Initialize`; kept for the life of the process
    /// because the module was handed a pointer to it.
    init: Option<CString>,
    /// `C_GetMechanismInfo` answers by (slot, mechanism): flags, or `None` when not offered. A token's
    /// mechanisms do not change while the module is loaded, and the tools ask per card.
    mechanisms:
        Mutex<HashMap<(u64, cryptoki_sys::CK_MECHANISM_TYPE), Option<cryptoki_sys::CK_FLAGS>>>,
}

/// Modules initialised in this process, by path.
fn modules() -> &'static Mutex<HashMap<PathBuf, Hsm>> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Hsm>>> = OnceLock::new();
    MODULES.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Initialisation strings registered for modules not yet loaded, by path.
fn init_strings() -> &'static Mutex<HashMap<PathBuf, String>> {
    static INITS: OnceLock<Mutex<HashMap<PathBuf, String>>> = OnceLock::new();
    INITS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The module the command line named (`--module`), for every token the command opens.
fn command_line_module() -> &'static OnceLock<PathBuf> {
    static MODULE: OnceLock<PathBuf> = OnceLock::new();
    &MODULE
}

/// The module a tool uses when it names none: `module`, else the command line's `--module`, else
/// `$PKCS11_MODULE`, else SoftHSM2's Debian path.
pub fn default_module(module: Option<&Path>) -> PathBuf {
    module
        .map(Path::to_path_buf)
        .or_else(|| command_line_module().get().cloned())
        .or_else(|| std::env::var_os("PKCS11_MODULE").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(SOFTHSM_MODULE))
}

/// Records the initialisation string that `module` receives at `C_Initialize` (as `pReserved` of
/// `CK_C_INITIALIZE_ARGS`), before the module is first loaded in this process.
///
/// Why: some modules cannot start without one — NSS softokn needs
/// `configdir='sql:DIR' certPrefix='' keyPrefix='' secmod='secmod.db' flags=` to find its database — while
/// others (SoftHSM2) refuse any. So the string belongs to one module path, never to every module.
pub fn register_module_init(module: &Path, init: &str) -> Result<(), Error> {
    let bad = |reason: String| Error::Module {
        path: module.to_path_buf(),
        reason,
    };
    if init.contains('\0') {
        return Err(bad("the initialisation string contains a NUL byte".into()));
    }
    if let Some(hsm) = modules()
        .lock()
        .map_err(|_| bad("an earlier use of the module failed in this process".into()))?
        .get(module)
    {
        if hsm.init_string() != Some(init) {
            return Err(bad(
                "the module is already initialised in this process with another initialisation string"
                    .into(),
            ));
        }
    }
    init_strings()
        .lock()
        .map_err(|_| bad("an earlier use of the module failed in this process".into()))?
        .insert(module.to_path_buf(), init.to_string());
    Ok(())
}

/// Applies the command line's global `--module` and `--module-init` (else `$PKCS11_MODULE_INIT`): the
/// module becomes the default for every token the command opens (a URI's `module-path` still wins), and
/// the initialisation string goes to that module only. Both tools call this once at start.
pub fn configure_module(module: Option<&Path>, init: Option<&str>) -> Result<(), Error> {
    if let Some(m) = module {
        if command_line_module().get().is_some_and(|p| p != m) {
            return Err(Error::Module {
                path: m.to_path_buf(),
                reason: "another module was already named for this process".into(),
            });
        }
        let _ = command_line_module().set(m.to_path_buf());
    }
    let from_env = std::env::var("PKCS11_MODULE_INIT").ok();
    let Some(init) = init.or(from_env.as_deref()) else {
        return Ok(());
    };
    if module.is_none() && std::env::var_os("PKCS11_MODULE").is_none() {
        return Err(Error::Module {
            path: PathBuf::from(SOFTHSM_MODULE),
            reason: "an initialisation string (--module-init or $PKCS11_MODULE_INIT) needs the module it \
                     belongs to (--module or $PKCS11_MODULE)"
                .into(),
        });
    }
    register_module_init(&default_module(module), init)
}

impl Hsm {
    /// Loads the module named by `module`, else by `$PKCS11_MODULE`, else SoftHSM2's Debian path, and
    /// initialises it with the string registered for it ([`register_module_init`]), if any.
    pub fn load(module: Option<&Path>) -> Result<Hsm, Error> {
        let path = default_module(module);
        let module_err = |reason: String| Error::Module {
            path: path.clone(),
            reason,
        };
        if !path.exists() {
            return Err(module_err(
                "no such file (install softhsm2 or name the module with --module)".into(),
            ));
        }
        let mut loaded = modules().lock().map_err(|_| {
            module_err("an earlier use of the module failed in this process".into())
        })?;
        if let Some(hsm) = loaded.get(&path) {
            return Ok(hsm.clone());
        }
        let init = init_strings()
            .lock()
            .map_err(|_| module_err("an earlier use of the module failed in this process".into()))?
            .get(&path)
            .map(|s| CString::new(s.as_str()))
            .transpose()
            .map_err(|_| module_err("the initialisation string contains a NUL byte".into()))?;
        let ctx = Pkcs11::new(&path).map_err(|e| module_err(e.to_string()))?;
        raw::initialize(&ctx, init.as_ref()).map_err(|e| {
            module_err(match (&init, e) {
                (None, cryptoki::error::Error::Pkcs11(RvError::ArgumentsBad, _)) => {
                    "C_Initialize: CKR_ARGUMENTS_BAD (does this module need an initialisation string? \
                     name it with --module-init or $PKCS11_MODULE_INIT)"
                        .into()
                }
                (Some(_), e) => format!("C_Initialize with the initialisation string: {e}"),
                (None, e) => e.to_string(),
            })
        })?;
        let hsm = Hsm {
            inner: Arc::new(Inner {
                ctx,
                path: path.clone(),
                raw: OnceLock::new(),
                init,
                mechanisms: Mutex::new(HashMap::new()),
            }),
        };
        loaded.insert(path, hsm.clone());
        Ok(hsm)
    }

    /// The initialisation string the module was started with, if any.
    pub fn init_string(&self) -> Option<&str> {
        self.inner.init.as_ref().and_then(|s| s.to_str().ok())
    }

    /// Loads the module a URI names, or the usual default.
    pub fn for_uri(uri: &TokenUri, module: Option<&Path>) -> Result<Hsm, Error> {
        Hsm::load(uri.module_path.as_deref().or(module))
    }

    /// The module path in use.
    pub fn module_path(&self) -> &Path {
        &self.inner.path
    }
}

impl Inner {
    /// The `CKF_*` flags the token in `slot` reports for `mechanism`, or `None` when it does not offer it;
    /// asked once per process.
    fn mechanism_flags(
        &self,
        slot: u64,
        mechanism: cryptoki_sys::CK_MECHANISM_TYPE,
    ) -> Result<Option<cryptoki_sys::CK_FLAGS>, Error> {
        if let Some(known) = self
            .mechanisms
            .lock()
            .ok()
            .and_then(|m| m.get(&(slot, mechanism)).copied())
        {
            return Ok(known);
        }
        let flags = self
            .raw()?
            .mechanism_info(slot, mechanism)?
            .map(|i| i.flags);
        if let Ok(mut m) = self.mechanisms.lock() {
            m.insert((slot, mechanism), flags);
        }
        Ok(flags)
    }

    fn raw(&self) -> Result<&raw::RawModule, Error> {
        self.raw
            .get_or_init(|| raw::RawModule::load(&self.path).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| Error::Token(e.clone()))
    }
}

impl Hsm {
    /// Finds the one slot whose token matches `uri` (label, serial, manufacturer, model).
    pub fn find_token(&self, uri: &TokenUri) -> Result<(Slot, String, String), Error> {
        let mut present = Vec::new();
        let mut found = Vec::new();
        for slot in self.inner.ctx.get_slots_with_initialized_token()? {
            let info = self.inner.ctx.get_token_info(slot)?;
            let label = info.label().trim_end().to_string();
            let serial = info.serial_number().trim_end().to_string();
            let matches = uri.token.as_deref().is_none_or(|t| t == label)
                && uri.serial.as_deref().is_none_or(|s| s == serial)
                && uri
                    .manufacturer
                    .as_deref()
                    .is_none_or(|m| m == info.manufacturer_id().trim_end())
                && uri
                    .model
                    .as_deref()
                    .is_none_or(|m| m == info.model().trim_end());
            present.push(label.clone());
            if matches {
                found.push((slot, label, serial));
            }
        }
        let wanted = TokenUri {
            object: None,
            id: None,
            ..uri.clone()
        }
        .to_string();
        match found.len() {
            0 => Err(Error::MissingToken {
                wanted,
                present: if present.is_empty() {
                    "none".into()
                } else {
                    present.join(", ")
                },
            }),
            1 => Ok(found.remove(0)),
            count => Err(Error::AmbiguousToken { wanted, count }),
        }
    }

    /// Opens a read-write session on the token `uri` names and logs the user in with a PIN from `pin`.
    /// When another session of this process is logged in to the token already (PKCS#11 login state is
    /// per application), the new session shares that state and no PIN is read.
    pub fn open(&self, uri: &TokenUri, pin: &PinSource) -> Result<TokenSession<'_>, Error> {
        let (slot, label, serial) = self.find_token(uri)?;
        let session = self.inner.ctx.open_rw_session(slot)?;
        if session.get_session_info()?.session_state() == cryptoki::session::SessionState::RwUser {
            return Ok(TokenSession {
                hsm: self,
                session,
                label,
                serial,
            });
        }
        let secret = pin.read(&label)?;
        self.login(session, slot, label, serial, &secret)
    }

    /// Opens a read-write session on the token `uri` names and logs the user in with `pin`, which the
    /// caller holds already (a PIN rebuilt from officers' shares, or one being changed).
    pub fn open_with_pin(
        &self,
        uri: &TokenUri,
        pin: &SecretString,
    ) -> Result<TokenSession<'_>, Error> {
        let (slot, label, serial) = self.find_token(uri)?;
        let session = self.inner.ctx.open_rw_session(slot)?;
        self.login(session, slot, label, serial, pin)
    }

    fn login(
        &self,
        session: Session,
        slot: Slot,
        label: String,
        serial: String,
        secret: &SecretString,
    ) -> Result<TokenSession<'_>, Error> {
        if let Err(e) = session.login(UserType::User, Some(secret)) {
            return Err(match e {
                cryptoki::error::Error::Pkcs11(RvError::PinIncorrect, _) => {
                    let info = self.inner.ctx.get_token_info(slot)?;
                    if info.user_pin_locked() {
                        Error::PinLocked { token: label }
                    } else {
                        Error::WrongPin {
                            token: label,
                            final_try: info.user_pin_final_try(),
                            count_low: info.user_pin_count_low(),
                        }
                    }
                }
                cryptoki::error::Error::Pkcs11(RvError::PinLocked, _) => {
                    Error::PinLocked { token: label }
                }
                cryptoki::error::Error::Pkcs11(RvError::UserAlreadyLoggedIn, _) => {
                    return Ok(TokenSession {
                        hsm: self,
                        session,
                        label,
                        serial,
                    })
                }
                other => other.into(),
            });
        }
        Ok(TokenSession {
            hsm: self,
            session,
            label,
            serial,
        })
    }
}

/// A logged-in session on one token.
pub struct TokenSession<'h> {
    hsm: &'h Hsm,
    session: Session,
    label: String,
    serial: String,
}

/// A key object in a token. Holds only the handle: the key bytes stay inside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyHandle {
    handle: ObjectHandle,
    key_type: Option<SecretKeyType>,
}

impl KeyHandle {
    /// The key type, when known.
    pub fn key_type(&self) -> Option<SecretKeyType> {
        self.key_type
    }
}

/// A per-card key derived inside the token: a session object destroyed when this guard drops.
pub struct DerivedKey<'s, 'h> {
    session: &'s TokenSession<'h>,
    key: KeyHandle,
}

impl DerivedKey<'_, '_> {
    /// The handle for use in other operations of the same session.
    pub fn handle(&self) -> KeyHandle {
        self.key
    }
}

impl Drop for DerivedKey<'_, '_> {
    fn drop(&mut self) {
        // Session objects also vanish when the session closes; destroying early keeps the token clean.
        let _ = self.session.session.destroy_object(self.key.handle);
    }
}

impl<'h> TokenSession<'h> {
    /// The token label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The token serial number.
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// Handles of every object carrying `label`.
    pub fn objects_labelled(&self, label: &str) -> Result<Vec<ObjectHandle>, Error> {
        Ok(self.session.find_objects(&[
            Attribute::Token(true),
            Attribute::Label(label.as_bytes().to_vec()),
        ])?)
    }

    /// Handles of every token object carrying `id`.
    pub fn objects_with_id(&self, id: &[u8]) -> Result<Vec<ObjectHandle>, Error> {
        Ok(self
            .session
            .find_objects(&[Attribute::Token(true), Attribute::Id(id.to_vec())])?)
    }

    fn key_error(&self, problem: String) -> Error {
        Error::Key {
            token: self.label.clone(),
            problem,
        }
    }

    /// The one secret key labelled `label`.
    pub fn find_secret_key(&self, label: &str) -> Result<KeyHandle, Error> {
        let found = self.session.find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ])?;
        match found.as_slice() {
            [] => Err(self.key_error(format!("no secret key labelled '{label}'"))),
            [one] => {
                let key_type = self.read_key_type(*one)?;
                Ok(KeyHandle {
                    handle: *one,
                    key_type,
                })
            }
            more => Err(self.key_error(format!(
                "{} secret keys are labelled '{label}'; labels must be unique",
                more.len()
            ))),
        }
    }

    /// The raw `CKA_KEY_TYPE` of an object.
    fn raw_key_type(&self, handle: ObjectHandle) -> Result<Option<CkKeyType>, Error> {
        Ok(self
            .session
            .get_attributes(handle, &[AttributeType::KeyType])?
            .into_iter()
            .find_map(|a| match a {
                Attribute::KeyType(t) => Some(t),
                _ => None,
            }))
    }

    fn read_key_type(&self, handle: ObjectHandle) -> Result<Option<SecretKeyType>, Error> {
        let attrs = self
            .session
            .get_attributes(handle, &[AttributeType::KeyType, AttributeType::ValueLen])?;
        let mut ck = None;
        let mut len = None;
        for a in attrs {
            match a {
                Attribute::KeyType(t) => ck = Some(t),
                Attribute::ValueLen(l) => len = Some(u64::from(l)),
                _ => {}
            }
        }
        Ok(match (ck, len) {
            (Some(t), _) if t == CkKeyType::DES2 => Some(SecretKeyType::Des3TwoKey),
            (Some(t), _) if t == CkKeyType::DES3 => Some(SecretKeyType::Des3ThreeKey),
            (Some(t), Some(16)) if t == CkKeyType::AES => Some(SecretKeyType::Aes128),
            (Some(t), Some(24)) if t == CkKeyType::AES => Some(SecretKeyType::Aes192),
            (Some(t), Some(32)) if t == CkKeyType::AES => Some(SecretKeyType::Aes256),
            _ => None,
        })
    }

    /// Generates a persistent secret key inside the token, then reads its attributes back and fails on any
    /// difference from what was asked (a token that silently ignores an attribute must not pass).
    pub fn generate_secret(&self, spec: &SecretKeySpec) -> Result<(KeyHandle, KeyInfo), Error> {
        let (mech, _) = spec.key_type.keygen();
        let mut template = vec![
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(spec.extractable),
            Attribute::Label(spec.label.as_bytes().to_vec()),
            Attribute::Id(spec.id.clone()),
            Attribute::Modifiable(false),
        ];
        if !spec.key_type.is_des() {
            template.push(Attribute::ValueLen(
                (spec.key_type.byte_len() as u64).into(),
            ));
        }
        for u in Usage::ALL {
            template.push(u.attr(spec.usages.contains(&u)));
        }
        let handle = self.session.generate_key(&mech, &template)?;
        let key = KeyHandle {
            handle,
            key_type: Some(spec.key_type),
        };
        let info = self.check_secret(key, spec, true)?;
        Ok((key, info))
    }

    /// Reads what the token says about a key.
    pub fn key_info(&self, key: KeyHandle) -> Result<KeyInfo, Error> {
        let mut types = vec![
            AttributeType::Label,
            AttributeType::Id,
            AttributeType::Sensitive,
            AttributeType::Extractable,
            AttributeType::NeverExtractable,
            AttributeType::Local,
            AttributeType::CheckValue,
        ];
        types.extend(Usage::ALL.iter().map(|u| u.attr_type()));
        let attrs = self.session.get_attributes(key.handle, &types)?;
        let mut info = KeyInfo {
            label: String::new(),
            id: Vec::new(),
            key_type: self.read_key_type(key.handle)?,
            usages: Vec::new(),
            sensitive: false,
            extractable: false,
            never_extractable: false,
            local: false,
            check_value: None,
        };
        for a in attrs {
            match a {
                Attribute::Label(l) => info.label = String::from_utf8_lossy(&l).into_owned(),
                Attribute::Id(i) => info.id = i,
                Attribute::Sensitive(b) => info.sensitive = b,
                Attribute::Extractable(b) => info.extractable = b,
                Attribute::NeverExtractable(b) => info.never_extractable = b,
                Attribute::Local(b) => info.local = b,
                Attribute::CheckValue(v) if !v.is_empty() => info.check_value = Some(v),
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
        Ok(info)
    }

    /// The key's check value as the token keeps it (`CKA_CHECK_VALUE`: the first three bytes of the ECB
    /// encryption of a zero block, for DES and AES alike), or, for keys allowed to encrypt, computed by the
    /// token. AES keys that may encrypt get the GPC B.6 method (over 01×16), which cards report.
    pub fn kcv(&self, key: KeyHandle) -> Result<Kcv, Error> {
        let key_type = key
            .key_type
            .ok_or_else(|| self.key_error("key of an unknown type has no KCV".into()))?;
        let info = self.key_info(key)?;
        if info.usages.contains(&Usage::Encrypt) {
            let (mech, block, method) = if key_type.is_des() {
                (Mechanism::Des3Ecb, vec![0u8; 8], KcvMethod::Des3Zeros)
            } else {
                (Mechanism::AesEcb, vec![1u8; 16], KcvMethod::AesOnes)
            };
            let out = self.session.encrypt(&mech, key.handle, &block)?;
            return first3(&out, method)
                .ok_or_else(|| Error::Token("short encryption output".into()));
        }
        let method = if key_type.is_des() {
            KcvMethod::Des3Zeros
        } else {
            KcvMethod::AesZeros
        };
        info.check_value
            .as_deref()
            .and_then(|v| first3(v, method))
            .ok_or_else(|| {
                Error::Unsupported(format!(
                    "key '{}' has no CKA_CHECK_VALUE and may not encrypt, so no KCV can be shown (a token \
                     that keeps no check value, such as NSS softokn, needs the key to have the encrypt \
                     usage or to be formed from components)",
                    info.label
                ))
            })
    }

    /// Derives a per-card key inside the token: its value is the master's ECB encryption of `data`
    /// (`CKM_DES3_ECB_ENCRYPT_DATA` for a triple-DES master, `CKM_AES_ECB_ENCRYPT_DATA` for AES). The result
    /// is a sensitive session object of type `out`, usable for `usages`, destroyed when the guard drops.
    /// It is extractable only when `wrap_out` is set, so that it can be sent to a card wrapped under that
    /// card's current key, never in clear.
    pub fn derive_by_encryption<'s>(
        &'s self,
        master: KeyHandle,
        data: &[u8],
        out: SecretKeyType,
        usages: &[Usage],
        wrap_out: bool,
    ) -> Result<DerivedKey<'s, 'h>, Error> {
        let mechanism = match master.key_type {
            Some(t) if t.is_des() => raw::CKM_DES3_ECB_ENCRYPT_DATA,
            Some(_) => raw::CKM_AES_ECB_ENCRYPT_DATA,
            // SoftHSM2 2.6.1 records no length for unwrapped AES keys (CKA_VALUE_LEN reads 0), so their
            // type is known only as AES; the derivation mechanism needs no more than that.
            None if self.raw_key_type(master.handle)? == Some(CkKeyType::AES) => {
                raw::CKM_AES_ECB_ENCRYPT_DATA
            }
            None => return Err(self.key_error("master key of unknown type".into())),
        };
        let template = self.session_key_template(out, usages, wrap_out);
        self.derive_session_object(mechanism, master, data, template, Some(out))
    }

    /// `C_DeriveKey` with an `*_ECB_ENCRYPT_DATA` mechanism through the audited raw module, then finds the
    /// new session object again by a random `CKA_ID` (cryptoki offers no way to wrap the raw handle).
    pub(crate) fn derive_session_object<'s>(
        &'s self,
        mechanism: cryptoki_sys::CK_MECHANISM_TYPE,
        master: KeyHandle,
        data: &[u8],
        mut template: Vec<Attribute>,
        key_type: Option<SecretKeyType>,
    ) -> Result<DerivedKey<'s, 'h>, Error> {
        // The token's mechanism list decides, as for every feature: NSS's key-database token performs
        // these derivations though it does not list them, and an unlisted mechanism is not used.
        let slot = self.session.get_session_info()?.slot_id();
        let offered = self
            .hsm
            .inner
            .mechanism_flags(slot.id(), mechanism)?
            .is_some_and(|f| f & cryptoki_sys::CKF_DERIVE != 0);
        let raw = self.hsm.inner.raw()?;
        if !offered {
            let name = if mechanism == raw::CKM_DES3_ECB_ENCRYPT_DATA {
                "CKM_DES3_ECB_ENCRYPT_DATA"
            } else {
                "CKM_AES_ECB_ENCRYPT_DATA"
            };
            return Err(Error::Unsupported(format!(
                "token '{}' does not offer {name} (derive), which this derivation needs; nothing is done \
                 outside the token instead",
                self.label
            )));
        }
        let id = self.session.generate_random_vec(16)?;
        template.push(Attribute::Id(id.clone()));
        raw.derive_encrypt_data(
            self.session.handle(),
            mechanism,
            master.handle.handle(),
            data,
            &template,
        )?;
        let found = self
            .session
            .find_objects(&[Attribute::Token(false), Attribute::Id(id)])?;
        let [handle] = found.as_slice() else {
            for h in found {
                let _ = self.session.destroy_object(h);
            }
            return Err(Error::Token(
                "the derived key could not be found again".into(),
            ));
        };
        Ok(DerivedKey {
            session: self,
            key: KeyHandle {
                handle: *handle,
                key_type,
            },
        })
    }

    pub(crate) fn session_key_template(
        &self,
        out: SecretKeyType,
        usages: &[Usage],
        extractable: bool,
    ) -> Vec<Attribute> {
        let mut template = vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(out.ck_type()),
            Attribute::Token(false),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(extractable),
        ];
        if !out.is_des() {
            template.push(Attribute::ValueLen((out.byte_len() as u64).into()));
        }
        for u in Usage::ALL {
            template.push(u.attr(usages.contains(&u)));
        }
        template
    }

    /// Imports a known key value as a sensitive session object (for a card's fab transport keys, which
    /// arrive as values); destroyed when the guard drops.
    pub fn import_session_key<'s>(
        &'s self,
        value: &SecretSlice<u8>,
        key_type: SecretKeyType,
        usages: &[Usage],
    ) -> Result<DerivedKey<'s, 'h>, Error> {
        if value.expose_secret().len() != key_type.byte_len() {
            return Err(Error::Key {
                token: self.label.clone(),
                problem: format!(
                    "a {} key needs {} bytes",
                    key_type.name(),
                    key_type.byte_len()
                ),
            });
        }
        let mut template = self.session_key_template(key_type, usages, false);
        template.retain(|a| !matches!(a, Attribute::ValueLen(_)));
        template.push(Attribute::Value(value.expose_secret().to_vec()));
        let created = self.session.create_object(&template);
        wipe_values(&mut template);
        let handle = created?;
        Ok(DerivedKey {
            session: self,
            key: KeyHandle {
                handle,
                key_type: Some(key_type),
            },
        })
    }

    /// Random bytes from the token's generator (host challenges, object IDs).
    pub fn random(&self, n: u32) -> Result<Vec<u8>, Error> {
        Ok(self.session.generate_random_vec(n)?)
    }

    /// AES-CMAC of `data` under `key`, computed in the token (the SCP03 PRF).
    pub fn aes_cmac(&self, key: KeyHandle, data: &[u8]) -> Result<[u8; 16], Error> {
        // The output is secret when this is the SCP03 KDF (session keys): wiped when dropped.
        let out =
            zeroize::Zeroizing::new(self.session.sign(&Mechanism::AesCMac, key.handle, data)?);
        out.as_slice()
            .try_into()
            .map_err(|_| Error::Token(format!("AES-CMAC returned {} bytes", out.len())))
    }

    /// ECB encryption of whole blocks under `key`, in the token.
    pub fn encrypt_ecb(&self, key: KeyHandle, data: &[u8]) -> Result<Vec<u8>, Error> {
        let mech = match key.key_type {
            Some(t) if t.is_des() => Mechanism::Des3Ecb,
            _ => Mechanism::AesEcb,
        };
        Ok(self.session.encrypt(&mech, key.handle, data)?)
    }

    /// Wraps `key` under `wrapping` with CBC and a zero IV: the form GP PUT KEY carries (SCP03: AES-CBC under
    /// the card's static DEK). The wrapped bytes are safe to send; the clear key never leaves the token.
    pub fn wrap_cbc_zero_iv(&self, wrapping: KeyHandle, key: KeyHandle) -> Result<Vec<u8>, Error> {
        let mech = match wrapping.key_type {
            Some(t) if t.is_des() => Mechanism::Des3Cbc([0; 8]),
            _ => Mechanism::AesCbc([0; 16]),
        };
        self.wrap_raw(&mech, wrapping.handle, key.handle)
            .map_err(|e| match e {
                cryptoki::error::Error::Pkcs11(RvError::MechanismInvalid, _) => Error::Unsupported(
                    "the token cannot wrap with this mechanism; the key is not exported in clear instead".into(),
                ),
                other => other.into(),
            })
    }

    /// Wraps `key` under `wrapping` with ECB (`CKM_DES3_ECB` for a triple-DES wrapping key, else
    /// `CKM_AES_ECB`): the form SCP02 PUT KEY carries (3DES-ECB under the session DEK). Refused by the token
    /// when it cannot wrap so; the key is never exported in clear instead.
    pub fn wrap_ecb(&self, wrapping: KeyHandle, key: KeyHandle) -> Result<Vec<u8>, Error> {
        let mech = match wrapping.key_type {
            Some(t) if t.is_des() => Mechanism::Des3Ecb,
            _ => Mechanism::AesEcb,
        };
        self.wrap_raw(&mech, wrapping.handle, key.handle)
            .map_err(|e| match e {
                cryptoki::error::Error::Pkcs11(RvError::MechanismInvalid, _) => {
                    Error::Unsupported(format!(
                        "token '{}' cannot wrap with ECB; the key is not exported in clear instead",
                        self.label
                    ))
                }
                other => other.into(),
            })
    }

    /// `C_WrapKey` through the raw module, which keeps only the bytes the token wrote (see
    /// [`raw::RawModule::wrap_key`]).
    pub(crate) fn wrap_raw(
        &self,
        mechanism: &Mechanism<'_>,
        wrapping: ObjectHandle,
        key: ObjectHandle,
    ) -> Result<Vec<u8>, cryptoki::error::Error> {
        let raw = self
            .hsm
            .inner
            .raw()
            .map_err(|_| cryptoki::error::Error::NullFunctionPointer)?;
        raw.wrap_key(
            self.session.handle(),
            mechanism,
            wrapping.handle(),
            key.handle(),
        )
    }

    /// Destroys a persistent object. Used by ceremonies after a typed confirmation.
    pub fn destroy(&self, key: KeyHandle) -> Result<(), Error> {
        Ok(self.session.destroy_object(key.handle)?)
    }
}

/// Wipes every `CKA_VALUE` in a template once the token has taken it: the clear key bytes must not
/// stay behind in freed memory.
pub(crate) fn wipe_values(template: &mut [Attribute]) {
    for a in template.iter_mut() {
        if let Attribute::Value(v) = a {
            zeroize::Zeroize::zeroize(v);
        }
    }
}

fn first3(v: &[u8], method: KcvMethod) -> Option<Kcv> {
    let value: [u8; 3] = v.get(..3)?.try_into().ok()?;
    Some(Kcv { value, method })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn templates_lose_their_key_bytes() {
        // The template `import_session_key` and `create_secret` hand to the token: once the token
        // has the key, the clear bytes in the template are wiped, other attributes kept.
        let mut template = vec![
            Attribute::Label(b"k".to_vec()),
            Attribute::Value(vec![0x5A; 16]),
        ];
        wipe_values(&mut template);
        for a in &template {
            match a {
                Attribute::Value(v) => assert!(v.iter().all(|b| *b == 0)),
                Attribute::Label(l) => assert_eq!(l, b"k"),
                _ => {}
            }
        }
    }
}
