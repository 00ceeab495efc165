//! The card's persistent state as one typed value.
//!
//! Every command builds the next `CardState` from the current one and commits it once (see
//! [`crate::card`]); the encoding is this crate's own versioned codec, checked on the way back in.

use alloc::vec::Vec;

use crate::aid::{Aid, ISD_AID};
use crate::codec::{Persist, Reader, Writer};
use crate::error::{Error, Result};
use crate::keys::{DomainKeys, Key, KeySet, KeyType, ScpConfig};
use crate::lifecycle::CardLifeCycle;
use crate::registry::{LoadFile, Registry};

/// Version 3 added the confirmation counter, version 4 the keys applications were given
/// ([`crate::registry::Application::keys`]); versions 2 and 3 are still read (counter 0, no
/// keys given).
const FORMAT_VERSION: u8 = crate::registry::FORMAT_VERSION_APP_KEYS;
const FORMAT_VERSION_2: u8 = 2;

/// Length of the CPLC data (GET DATA `9F7F`).
pub const CPLC_LEN: usize = 42;

/// The built-in security domain package (load file) every card carries in ROM.
pub const SD_PACKAGE_AID: [u8; 7] = [0xA0, 0x00, 0x00, 0x01, 0x51, 0x53, 0x50];
/// The security domain module in [`SD_PACKAGE_AID`].
pub const SD_MODULE_AID: [u8; 8] = [0xA0, 0x00, 0x00, 0x01, 0x51, 0x53, 0x50, 0x41];

/// The built-in purse package (executable load file in ROM).
pub const PURSE_PACKAGE_AID: [u8; 6] = [0xF0, 0x50, 0x55, 0x52, 0x53, 0x45];
/// The purse module in [`PURSE_PACKAGE_AID`].
pub const PURSE_MODULE_AID: [u8; 7] = [0xF0, 0x50, 0x55, 0x52, 0x53, 0x45, 0x01];

/// Whether `aid` is a load file in immutable memory (it cannot be deleted).
pub fn is_builtin_load_file(aid: &Aid) -> bool {
    aid.as_bytes() == SD_PACKAGE_AID || aid.as_bytes() == PURSE_PACKAGE_AID
}

/// Everything the card keeps across power loss.
#[derive(Debug, Clone, PartialEq)]
pub struct CardState {
    /// Card life cycle (inherited by the ISD).
    pub life_cycle: CardLifeCycle,
    /// Key diversification data returned by INITIALIZE UPDATE and GET DATA `CF`.
    pub kdd: [u8; 10],
    /// Card production life cycle data (GET DATA `9F7F`).
    pub cplc: [u8; CPLC_LEN],
    /// Issuer identification number (GET DATA `42`), empty until personalised.
    pub iin: Vec<u8>,
    /// Card image number (GET DATA `45`), empty until personalised.
    pub cin: Vec<u8>,
    /// The ISD's keys and secure channel settings.
    pub isd: DomainKeys,
    /// Load files and applications.
    pub registry: Registry,
    /// Random-number generator state: a secret seed set at the fab and a counter that is
    /// committed with every use, so no output repeats even across power loss.
    pub rng: Rng,
    /// Confirmation counter of the ISD, the security domain with Receipt Generation (GP 2.3.1
    /// §11.1.6, C.5): incremented with every receipt, never reset.
    pub confirmation_counter: u16,
}

/// The card's deterministic random bit generator: output block *n* is
/// `KDF(seed, F0, n, 128)` (SP 800-108 counter mode over AES-CMAC, as SCP03 derives keys), so
/// outputs are unpredictable without the seed and never repeat while the counter only grows.
#[derive(Clone, PartialEq)]
pub struct Rng {
    seed: zeroize::Zeroizing<[u8; 16]>,
    /// Blocks drawn so far.
    pub counter: u32,
}

impl core::fmt::Debug for Rng {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Rng {{ counter: {} }}", self.counter)
    }
}

impl Rng {
    /// A generator from a fab-provided secret seed.
    pub fn new(seed: [u8; 16]) -> Rng {
        Rng {
            seed: zeroize::Zeroizing::new(seed),
            counter: 0,
        }
    }

    /// The next 8 random bytes; advances the counter (the caller commits the state before the
    /// bytes leave the card).
    pub fn next8(&mut self) -> Result<[u8; 8]> {
        let n = self.counter;
        self.counter = n
            .checked_add(1)
            .ok_or(Error::Refused(crate::Sw::CONDITIONS_NOT_SATISFIED))?;
        let mut key = gp_core::keys::AesKey::Aes128(*self.seed);
        let out = gp_core::scp03::kdf(&mut key, 0xF0, &n.to_be_bytes(), 64)
            .map_err(|_| Error::Refused(crate::Sw::UNKNOWN))?;
        let mut block = [0u8; 8];
        for (b, o) in block.iter_mut().zip(out.iter()) {
            *b = *o;
        }
        Ok(block)
    }
}

impl Persist for Rng {
    fn encode(&self, w: &mut Writer) {
        w.raw(&self.seed[..]);
        w.u32(self.counter);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        Ok(Rng {
            seed: zeroize::Zeroizing::new(r.array()?),
            counter: r.u32()?,
        })
    }
}

/// How the fab sets a card up: which protocol, which transport key, which KDD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FabSettings {
    /// Secure channel protocol (`02` or `03`) with `i`.
    pub scp: ScpConfig,
    /// Transport key version number.
    pub kvn: u8,
    /// The transport key value used for ENC, MAC and DEK (16 bytes).
    pub key: [u8; 16],
    /// Key diversification data.
    pub kdd: [u8; 10],
    /// Secret seed of the card's random number generator.
    pub rng_seed: [u8; 16],
}

impl CardState {
    /// A card as it leaves the fab: OP_READY, one transport key set, the built-in SD package.
    pub fn from_fab(fab: &FabSettings) -> Result<CardState> {
        let key_type = if fab.scp.scp == 0x02 {
            KeyType::Des3
        } else {
            KeyType::Aes
        };
        let mut keys = Vec::new();
        for id in 1..=3u8 {
            keys.push(Key::new(id, key_type, &fab.key).ok_or(Error::Corrupt("bad fab key"))?);
        }
        let aid = |b: &[u8]| Aid::new(b).ok_or(Error::Corrupt("bad AID"));
        let builtin = |package: &[u8], module: &[u8]| -> Result<LoadFile> {
            Ok(LoadFile {
                aid: aid(package)?,
                associated_sd: ISD_AID,
                version: Some([1, 0]),
                modules: alloc::vec![aid(module)?],
                lfdb_sha256: [0; 32],
                size: 0,
            })
        };
        Ok(CardState {
            life_cycle: CardLifeCycle::OpReady,
            kdd: fab.kdd,
            cplc: cplc_from_kdd(&fab.kdd),
            iin: Vec::new(),
            cin: Vec::new(),
            isd: DomainKeys {
                scp: fab.scp,
                sets: alloc::vec![KeySet {
                    kvn: fab.kvn,
                    keys,
                    sequence_counter: 0,
                }],
                failed_auth: 0,
                auth_limit: DomainKeys::DEFAULT_AUTH_LIMIT,
            },
            registry: Registry {
                load_files: alloc::vec![
                    builtin(&SD_PACKAGE_AID, &SD_MODULE_AID)?,
                    builtin(&PURSE_PACKAGE_AID, &PURSE_MODULE_AID)?,
                ],
                applications: Vec::new(),
            },
            rng: Rng::new(fab.rng_seed),
            confirmation_counter: 0,
        })
    }

    /// The keys of security domain `sd`: the ISD's for [`ISD_AID`], else those of the SSD
    /// registered under `sd`.
    pub fn domain(&self, sd: &Aid) -> Option<&DomainKeys> {
        if *sd == ISD_AID {
            Some(&self.isd)
        } else {
            self.registry
                .application(sd)
                .and_then(|a| a.domain.as_ref())
        }
    }

    /// Mutable access to the keys of security domain `sd`.
    pub fn domain_mut(&mut self, sd: &Aid) -> Option<&mut DomainKeys> {
        if *sd == ISD_AID {
            Some(&mut self.isd)
        } else {
            self.registry
                .application_mut(sd)
                .and_then(|a| a.domain.as_mut())
        }
    }

    /// Privileges of security domain or application `aid` (the ISD's are fixed).
    pub fn privileges(&self, aid: &Aid) -> Option<crate::privileges::Privileges> {
        if *aid == ISD_AID {
            Some(crate::privileges::Privileges::ISD)
        } else {
            self.registry.application(aid).map(|a| a.privileges)
        }
    }

    /// Encode for the journal.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(FORMAT_VERSION);
        self.encode(&mut w);
        w.u16(self.confirmation_counter);
        w.finish()
    }

    /// Decode a journal record, refusing unknown versions and trailing bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<CardState> {
        let version = *bytes
            .first()
            .ok_or(Error::Corrupt("truncated state record"))?;
        if !(FORMAT_VERSION_2..=FORMAT_VERSION).contains(&version) {
            return Err(Error::Corrupt("unknown state format version"));
        }
        let mut r = Reader::versioned(bytes.get(1..).unwrap_or_default(), version);
        let mut state = CardState::decode(&mut r)?;
        if version > FORMAT_VERSION_2 {
            state.confirmation_counter = r.u16()?;
        }
        r.finish()?;
        Ok(state)
    }
}

/// CPLC consistent with the KDD: IC fabricator, IC type, IC serial number and batch identifier
/// are the KDD's bytes (the layout many cards use, so tools that diversify from CPLC and tools
/// that diversify from the KDD agree); the other fields are zero.
fn cplc_from_kdd(kdd: &[u8; 10]) -> [u8; CPLC_LEN] {
    let [k0, k1, k2, k3, k4, k5, k6, k7, k8, k9] = *kdd;
    let mut c = [0u8; CPLC_LEN];
    let fields: [(usize, u8); 10] = [
        (0, k0), // IC fabricator
        (1, k1),
        (2, k2), // IC type
        (3, k3),
        (12, k4), // IC serial number
        (13, k5),
        (14, k6),
        (15, k7),
        (16, k8), // IC batch identifier
        (17, k9),
    ];
    for (i, v) in fields {
        if let Some(slot) = c.get_mut(i) {
            *slot = v;
        }
    }
    c
}

impl Persist for CardState {
    fn encode(&self, w: &mut Writer) {
        w.u8(self.life_cycle.code());
        w.raw(&self.kdd);
        w.raw(&self.cplc);
        w.bytes(&self.iin);
        w.bytes(&self.cin);
        self.isd.encode(w);
        self.registry.encode(w);
        self.rng.encode(w);
        // The confirmation counter follows (format 3); `to_bytes` writes it after this.
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        Ok(CardState {
            life_cycle: CardLifeCycle::from_code(r.u8()?)
                .ok_or(Error::Corrupt("bad card life cycle"))?,
            kdd: r.array()?,
            cplc: r.array()?,
            iin: r.bytes()?.to_vec(),
            cin: r.bytes()?.to_vec(),
            isd: DomainKeys::decode(r)?,
            registry: Registry::decode(r)?,
            rng: Rng::decode(r)?,
            confirmation_counter: 0,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn fab() -> FabSettings {
        FabSettings {
            scp: ScpConfig { scp: 3, i: 0x70 },
            kvn: 0x30,
            key: [0x40; 16],
            kdd: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
            rng_seed: [7; 16],
        }
    }

    #[test]
    fn round_trip() {
        let s = CardState::from_fab(&fab()).unwrap();
        let bytes = s.to_bytes();
        assert_eq!(CardState::from_bytes(&bytes).unwrap(), s);
    }

    #[test]
    fn format_2_images_are_read() {
        let mut s = CardState::from_fab(&fab()).unwrap();
        let mut bytes = s.to_bytes();
        // A version 2 record: the same without the confirmation counter.
        bytes[0] = FORMAT_VERSION_2;
        bytes.truncate(bytes.len() - 2);
        assert_eq!(CardState::from_bytes(&bytes).unwrap(), s);
        s.confirmation_counter = 7;
        assert_eq!(CardState::from_bytes(&s.to_bytes()).unwrap(), s);
    }

    #[test]
    fn format_3_images_are_read_with_no_keys_given() {
        let mut s = CardState::from_fab(&fab()).unwrap();
        s.registry.applications.push(crate::registry::Application {
            aid: Aid::new(&[0xF0, 1, 2, 3, 4, 5]).unwrap(),
            load_file: Aid::new(&PURSE_PACKAGE_AID).unwrap(),
            module: Aid::new(&PURSE_MODULE_AID).unwrap(),
            life_cycle: crate::lifecycle::AppLifeCycle::SELECTABLE,
            privileges: crate::privileges::Privileges::default(),
            associated_sd: ISD_AID,
            install_params: Vec::new(),
            domain: None,
            app_data: alloc::vec![1, 2, 3],
            keys: Vec::new(),
        });
        let mut bytes = s.to_bytes();
        // Format 3: the last application has no key list (its empty count `00 00` precedes the
        // DRBG, 20 bytes, and the confirmation counter, 2 bytes).
        let at = bytes.len() - 2 - 20 - 2;
        assert_eq!(bytes[at..at + 2], [0, 0]);
        bytes.drain(at..at + 2);
        bytes[0] = 3;
        assert_eq!(CardState::from_bytes(&bytes).unwrap(), s);
    }

    #[test]
    fn every_truncation_and_bit_flip_is_handled() {
        let bytes = CardState::from_fab(&fab()).unwrap().to_bytes();
        for cut in 0..bytes.len() {
            assert!(CardState::from_bytes(bytes.get(..cut).unwrap()).is_err());
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            if let Some(x) = b.get_mut(i) {
                *x ^= 0x5A;
            }
            // Must not panic; may decode to a different valid state.
            let _ = CardState::from_bytes(&b);
        }
    }
}
