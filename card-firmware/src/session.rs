//! The command context: what a command handler may touch, and what the card keeps in RAM
//! between commands of one application session.
//!
//! The pipeline ([`crate::card`]) owns a [`Transient`] and builds a [`Ctx`] around the *next*
//! card state (a copy) for every secured command; handlers ([`crate::commands`]) read and change
//! both through it. Nothing here knows a command: the session types (load, GET STATUS cursor,
//! personalisation) are plain data the handlers fill in, so dependencies run one way, pipeline
//! → handlers → this context → domain state.

use alloc::vec::Vec;

use gp_core::apdu::ResponseApdu;

use crate::aid::{Aid, ISD_AID};
use crate::channel::{Auth, Channel};
use crate::dm::Authority;
use crate::error::{refuse, Error, Result};
use crate::keys::Dek;
use crate::registry::LoadFile;
use crate::state::CardState;
use crate::Sw;

/// A personalisation session opened by INSTALL [for personalization].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Perso {
    /// The application STORE DATA is forwarded to.
    pub app: Aid,
    /// The block number the next STORE DATA must carry.
    pub next_block: u16,
}

/// An accepted INSTALL [for load] and the blocks received since.
#[derive(Debug, Clone)]
pub(crate) struct LoadSession {
    pub load_file_aid: Aid,
    pub sd_aid: Aid,
    pub lfdb_hash: Vec<u8>,
    pub next_block: u16,
    pub data: Vec<u8>,
    /// Who loads: the ISD, or an SSD with Authorized or Delegated Management.
    pub authority: Authority,
    /// The token identifier (`B6 { 93 }` in the load parameters), for the receipt.
    pub token_id: Option<Vec<u8>>,
    /// The combined [for load, install and make selectable] process: the first command's token
    /// input (the final INSTALL's token signs it too).
    pub combined: Option<Vec<u8>>,
    /// Combined process: the checked load file, waiting for the final INSTALL to enter the
    /// registry together with its application.
    pub completed: Option<LoadFile>,
}

/// Where the next GET STATUS [next] continues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StatusCursor {
    pub p1: u8,
    pub p2_format: u8,
    pub prefix: Vec<u8>,
    pub next: usize,
}

/// RAM-only state; lost on power loss or reset.
#[derive(Debug)]
pub(crate) struct Transient {
    /// The security domain selected on the basic logical channel (the ISD after power on).
    pub selected: Aid,
    pub channel: Channel,
    pub load: Option<LoadSession>,
    pub status: Option<StatusCursor>,
    /// Response bytes not yet fetched with GET RESPONSE, and the status word that ends them.
    pub pending: Option<(Vec<u8>, u16)>,
    /// The personalisation session, if any.
    pub perso: Option<Perso>,
    /// The block number the ISD's own next STORE DATA must carry (GP 11.11.2.2).
    pub store_next: u16,
    /// How often a security domain's load file decryption service has run since the last reset.
    pub lfdb_decryptions: u32,
}

impl Default for Transient {
    fn default() -> Self {
        Transient {
            selected: ISD_AID,
            channel: Channel::None,
            load: None,
            status: None,
            pending: None,
            perso: None,
            store_next: 0,
            lfdb_decryptions: 0,
        }
    }
}

/// Everything a command handler may touch.
pub(crate) struct Ctx<'a> {
    /// The state the command builds; committed only if the handler returns `Ok`.
    pub state: &'a mut CardState,
    /// RAM-only session data.
    pub ram: &'a mut Transient,
    /// The authenticated session, if any.
    pub auth: Option<Auth>,
    /// The selected security domain, which processes the command.
    pub sd: Aid,
}

impl Ctx<'_> {
    /// GP Table 11-2: most commands need at least AUTHENTICATED.
    pub fn require_auth(&self) -> Result<Auth> {
        self.auth
            .ok_or(Error::Refused(Sw::SECURITY_STATUS_NOT_SATISFIED))
    }

    /// Commands that are the card domain's alone (extradition, registry update, the ISD's own
    /// STORE DATA).
    pub fn require_isd(&self) -> Result<()> {
        if self.sd == ISD_AID {
            Ok(())
        } else {
            refuse(Sw::CONDITIONS_NOT_SATISFIED)
        }
    }

    /// Card content may change only in OP_READY, INITIALIZED and SECURED.
    pub fn require_content_change(&self) -> Result<()> {
        if self.state.life_cycle.allows_content_change() {
            Ok(())
        } else {
            refuse(Sw::CONDITIONS_NOT_SATISFIED)
        }
    }

    /// The data encryption key of the open session: the static DEK (key id 3) of the SCP03 key
    /// set that authenticated, or the SCP02 session DEK.
    pub fn session_dek(&self) -> Result<Dek> {
        let auth = self.require_auth()?;
        if auth.scp == 0x02 {
            return self
                .ram
                .channel
                .scp02_session_dek()
                .map(Dek::Des)
                .ok_or(Error::Refused(Sw::SECURITY_STATUS_NOT_SATISFIED));
        }
        let key = self
            .state
            .domain(&self.sd)
            .and_then(|d| d.set(auth.kvn))
            .and_then(|set| set.key(3))
            .ok_or(Error::Refused(Sw::REFERENCED_DATA_NOT_FOUND))?;
        Dek::aes(key)
    }
}

/// Whether `cla` is a GlobalPlatform (proprietary) class byte.
pub(crate) fn is_gp_class(cla: u8) -> bool {
    cla & 0x80 != 0
}

/// `9000` with data.
pub(crate) fn ok(data: Vec<u8>) -> Result<ResponseApdu> {
    Ok(ResponseApdu::new(data, Sw::NO_ERROR))
}
