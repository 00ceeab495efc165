//! The simulator the host tools drive: a [`Card`] over a file-backed image.
//!
//! `SimCard` is the API in `notes/card-firmware-api.md`: create an image as the fab would, open
//! it again later, power on, and exchange APDUs. Power on after a failed write recovers the
//! newest valid state from the image, exactly as the card does after a tear.

use std::path::{Path, PathBuf};
use std::{fmt, fs, io};

use crate::card::Card;
use crate::keys::ScpConfig;
use crate::state::{CardState, FabSettings};
use crate::storage::FileStorage;

/// Size of a card image: the format block and two journal slots of just under 64 KiB.
pub const IMAGE_SIZE: usize = 128 * 1024;

/// The default transport key K (`40..4F`).
pub const DEFAULT_KEY: [u8; 16] = [
    0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F,
];

/// Which secure channel protocol the fab configures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FabScp {
    /// SCP02 i=55, KVN 20, 3DES keys.
    Scp02,
    /// SCP03 i=70 (pseudo-random challenges), KVN 30, AES-128 keys.
    Scp03,
}

/// What a card looks like when it leaves the fab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FabProfile {
    /// Secure channel protocol.
    pub scp: FabScp,
    /// Transport key used for ENC, MAC and DEK (key ids 1, 2, 3).
    pub key: [u8; 16],
    /// Key diversification data; `None` draws 10 random bytes.
    pub kdd: Option<[u8; 10]>,
}

impl Default for FabProfile {
    fn default() -> Self {
        FabProfile {
            scp: FabScp::Scp03,
            key: DEFAULT_KEY,
            kdd: None,
        }
    }
}

impl FabProfile {
    fn settings(&self) -> Result<FabSettings, SimError> {
        let kdd = match self.kdd {
            Some(k) => k,
            None => {
                let mut kdd = [0u8; 10];
                random_bytes(&mut kdd)?;
                kdd
            }
        };
        let (scp, kvn) = match self.scp {
            FabScp::Scp02 => (ScpConfig { scp: 0x02, i: 0x55 }, 0x20),
            FabScp::Scp03 => (ScpConfig { scp: 0x03, i: 0x70 }, 0x30),
        };
        let mut rng_seed = [0u8; 16];
        random_bytes(&mut rng_seed)?;
        Ok(FabSettings {
            scp,
            kvn,
            key: self.key,
            kdd,
            rng_seed,
        })
    }
}

fn random_bytes(out: &mut [u8]) -> Result<(), SimError> {
    use io::Read;
    fs::File::open("/dev/urandom")?.read_exact(out)?;
    Ok(())
}

/// Why a simulator image cannot be used.
#[derive(Debug)]
pub enum SimError {
    /// The file system failed.
    Io(io::Error),
    /// The image holds no valid card state.
    Corrupt(String),
    /// `create` refuses to overwrite an existing file.
    Exists(PathBuf),
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::Io(e) => write!(f, "card image I/O error: {e}"),
            SimError::Corrupt(what) => write!(f, "card image is damaged: {what}"),
            SimError::Exists(p) => write!(f, "card image {} already exists", p.display()),
        }
    }
}

impl std::error::Error for SimError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SimError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for SimError {
    fn from(e: io::Error) -> Self {
        SimError::Io(e)
    }
}

impl From<crate::Error> for SimError {
    fn from(e: crate::Error) -> Self {
        match e {
            crate::Error::Corrupt(what) => SimError::Corrupt(what.into()),
            other => SimError::Io(io::Error::other(other.to_string())),
        }
    }
}

/// A simulated card backed by an image file.
#[derive(Debug)]
pub struct SimCard {
    path: PathBuf,
    card: Option<Card<FileStorage>>,
}

fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::File::open(dir)?.sync_all()
}

impl SimCard {
    /// Write a new card image (refuses to overwrite an existing file). The image is built under
    /// a temporary name and linked into place, so `path` never holds a half-made card.
    pub fn create(path: &Path, profile: &FabProfile) -> Result<SimCard, SimError> {
        if path.exists() {
            return Err(SimError::Exists(path.to_path_buf()));
        }
        let settings = profile.settings()?;
        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(format!(".tmp-{}", std::process::id()));
        let tmp = PathBuf::from(tmp_name);
        let _ = fs::remove_file(&tmp);
        let made = (|| -> Result<(), SimError> {
            let storage = FileStorage::create(&tmp, IMAGE_SIZE)?;
            Card::format(storage, &settings)?;
            match fs::hard_link(&tmp, path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    Err(SimError::Exists(path.to_path_buf()))
                }
                Err(e) => Err(e.into()),
            }
        })();
        let _ = fs::remove_file(&tmp);
        made?;
        sync_dir(path)?;
        SimCard::open(path)
    }

    /// Open an existing image, recovering the newest valid state.
    pub fn open(path: &Path) -> Result<SimCard, SimError> {
        let storage = FileStorage::open(path)?;
        let card = Card::boot(storage)?;
        Ok(SimCard {
            path: path.to_path_buf(),
            card: Some(card),
        })
    }

    /// Power on (after any power loss or reset): returns the ATR. RAM state, and with it any
    /// secure channel, is gone; the state is recovered from the image.
    pub fn power_on(&mut self) -> Vec<u8> {
        let storage = match self.card.take() {
            Some(card) => card.into_storage(),
            None => match FileStorage::open(&self.path) {
                Ok(s) => s,
                Err(_) => return Vec::new(),
            },
        };
        self.card = Card::boot(storage).ok();
        crate::card::atr()
    }

    /// One APDU in, response data ‖ SW1 SW2 out. Never panics; a card whose image cannot be
    /// read answers `6F00`.
    pub fn transmit(&mut self, apdu: &[u8]) -> Vec<u8> {
        match &mut self.card {
            Some(card) => card.process(apdu),
            None => vec![0x6F, 0x00],
        }
    }

    /// The committed card state (for `card-sim info` and tests).
    pub fn state(&self) -> Option<&CardState> {
        self.card.as_ref().map(|c| c.state())
    }

    /// The largest state the image's journal slots hold, as the image was formatted.
    pub fn max_state_len(&self) -> Option<usize> {
        self.card.as_ref().map(|c| c.max_state_len())
    }

    /// The image path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
