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

const FORMAT_VERSION: u8 = 1;

/// Length of the CPLC data (GET DATA `9F7F`).
pub const CPLC_LEN: usize = 42;

/// The built-in security domain package (load file) every card carries in ROM.
pub const SD_PACKAGE_AID: [u8; 7] = [0xA0, 0x00, 0x00, 0x01, 0x51, 0x53, 0x50];
/// The security domain module in [`SD_PACKAGE_AID`].
pub const SD_MODULE_AID: [u8; 8] = [0xA0, 0x00, 0x00, 0x01, 0x51, 0x53, 0x50, 0x41];

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
        let sd_package = Aid::new(&SD_PACKAGE_AID).ok_or(Error::Corrupt("bad AID"))?;
        let sd_module = Aid::new(&SD_MODULE_AID).ok_or(Error::Corrupt("bad AID"))?;
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
                load_files: alloc::vec![LoadFile {
                    aid: sd_package,
                    associated_sd: ISD_AID,
                    version: Some([1, 0]),
                    modules: alloc::vec![sd_module],
                    lfdb_sha256: [0; 32],
                    size: 0,
                }],
                applications: Vec::new(),
            },
        })
    }

    /// Encode for the journal.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(FORMAT_VERSION);
        self.encode(&mut w);
        w.finish()
    }

    /// Decode a journal record, refusing unknown versions and trailing bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<CardState> {
        let mut r = Reader::new(bytes);
        if r.u8()? != FORMAT_VERSION {
            return Err(Error::Corrupt("unknown state format version"));
        }
        let state = CardState::decode(&mut r)?;
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
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fab() -> FabSettings {
        FabSettings {
            scp: ScpConfig { scp: 3, i: 0x70 },
            kvn: 0x30,
            key: [0x40; 16],
            kdd: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
        }
    }

    #[test]
    fn round_trip() {
        let s = CardState::from_fab(&fab()).unwrap();
        let bytes = s.to_bytes();
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
