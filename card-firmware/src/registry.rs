//! The GlobalPlatform registry: executable load files with their modules, and applications
//! (security domains included).
//!
//! The ISD is not stored here: it inherits the card life cycle and lives in
//! [`crate::state::CardState`]; GET STATUS P1 `80` reports it from there.

use alloc::vec::Vec;

use crate::aid::Aid;
use crate::codec::{decode_list, encode_list, Persist, Reader, Writer};
use crate::error::{Error, Result};
use crate::keys::{DomainKeys, KeyHandle};
use crate::lifecycle::AppLifeCycle;
use crate::privileges::Privileges;

/// The first state format whose applications carry the keys they were given (older records are
/// read with none).
pub(crate) const FORMAT_VERSION_APP_KEYS: u8 = 4;

/// An executable load file (LOADED) and the executable modules it contains.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadFile {
    /// Load file (package) AID.
    pub aid: Aid,
    /// Security domain the load file is associated with.
    pub associated_sd: Aid,
    /// Package version `major.minor` from the CAP Header component, when known.
    pub version: Option<[u8; 2]>,
    /// Executable module (applet class) AIDs.
    pub modules: Vec<Aid>,
    /// SHA-256 of the load file data block, kept to identify what was loaded.
    pub lfdb_sha256: [u8; 32],
    /// Size of the load file data block in bytes.
    pub size: u32,
}

impl Persist for LoadFile {
    fn encode(&self, w: &mut Writer) {
        self.aid.encode(w);
        self.associated_sd.encode(w);
        match self.version {
            Some(v) => {
                w.bool(true);
                w.raw(&v);
            }
            None => w.bool(false),
        }
        encode_list(w, &self.modules);
        w.raw(&self.lfdb_sha256);
        w.u32(self.size);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        Ok(LoadFile {
            aid: Aid::decode(r)?,
            associated_sd: Aid::decode(r)?,
            version: if r.bool()? { Some(r.array()?) } else { None },
            modules: decode_list(r)?,
            lfdb_sha256: r.array()?,
            size: r.u32()?,
        })
    }
}

/// An installed application or supplementary security domain.
#[derive(Debug, Clone, PartialEq)]
pub struct Application {
    /// Application (instance) AID.
    pub aid: Aid,
    /// Executable load file it was installed from.
    pub load_file: Aid,
    /// Executable module it is an instance of.
    pub module: Aid,
    /// Life cycle byte.
    pub life_cycle: AppLifeCycle,
    /// Privileges granted at installation.
    pub privileges: Privileges,
    /// Associated security domain.
    pub associated_sd: Aid,
    /// Install parameters (the `C9` value, application-specific).
    pub install_params: Vec<u8>,
    /// Keys, for a security domain.
    pub domain: Option<DomainKeys>,
    /// The application's own persistent data (built-in applications only).
    pub app_data: Vec<u8>,
    /// Keys of its associated security domain the application was given (bound during
    /// personalisation through that domain); dropped when it moves to another domain.
    pub keys: Vec<KeyHandle>,
}

impl Persist for Application {
    fn encode(&self, w: &mut Writer) {
        self.aid.encode(w);
        self.load_file.encode(w);
        self.module.encode(w);
        w.u8(self.life_cycle.code());
        self.privileges.encode(w);
        self.associated_sd.encode(w);
        w.bytes(&self.install_params);
        match &self.domain {
            Some(d) => {
                w.bool(true);
                d.encode(w);
            }
            None => w.bool(false),
        }
        w.bytes(&self.app_data);
        encode_list(w, &self.keys);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        Ok(Application {
            aid: Aid::decode(r)?,
            load_file: Aid::decode(r)?,
            module: Aid::decode(r)?,
            life_cycle: AppLifeCycle::from_code(r.u8()?)?,
            privileges: Privileges::decode(r)?,
            associated_sd: Aid::decode(r)?,
            install_params: r.bytes()?.to_vec(),
            domain: if r.bool()? {
                Some(DomainKeys::decode(r)?)
            } else {
                None
            },
            app_data: r.bytes()?.to_vec(),
            keys: if r.version() >= FORMAT_VERSION_APP_KEYS {
                decode_list(r)?
            } else {
                Vec::new()
            },
        })
    }
}

/// Load files and applications, in the order they were created (GET STATUS reports that order).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Registry {
    /// Executable load files.
    pub load_files: Vec<LoadFile>,
    /// Applications and supplementary security domains.
    pub applications: Vec<Application>,
}

impl Registry {
    /// The load file with `aid`.
    pub fn load_file(&self, aid: &Aid) -> Option<&LoadFile> {
        self.load_files.iter().find(|f| f.aid == *aid)
    }
    /// The application with `aid`.
    pub fn application(&self, aid: &Aid) -> Option<&Application> {
        self.applications.iter().find(|a| a.aid == *aid)
    }
    /// The application with `aid`, mutably.
    pub fn application_mut(&mut self, aid: &Aid) -> Option<&mut Application> {
        self.applications.iter_mut().find(|a| a.aid == *aid)
    }
    /// Whether any load file, module or application already uses `aid` (AIDs are unique on a
    /// card, GP 2.3.1 §6.1).
    pub fn aid_in_use(&self, aid: &Aid) -> bool {
        self.load_files
            .iter()
            .any(|f| f.aid == *aid || f.modules.contains(aid))
            || self.applications.iter().any(|a| a.aid == *aid)
    }
}

impl Persist for Registry {
    fn encode(&self, w: &mut Writer) {
        encode_list(w, &self.load_files);
        encode_list(w, &self.applications);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let reg = Registry {
            load_files: decode_list(r)?,
            applications: decode_list(r)?,
        };
        // Every application must come from a registered load file.
        for app in &reg.applications {
            if reg.load_file(&app.load_file).is_none() {
                return Err(Error::Corrupt("application without load file"));
            }
        }
        Ok(reg)
    }
}
