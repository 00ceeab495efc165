//! The card domain (issuer security domain): command routing, INITIALIZE UPDATE, SET STATUS and
//! GET DATA. Key management, loading, installation and status live in their own modules.
//!
//! Handlers work on the *next* card state (a copy); the caller commits it once when the handler
//! succeeds and discards it when the handler refuses, so a refused command changes nothing.

use alloc::vec::Vec;

use gp_core::apdu::{CommandApdu, ResponseApdu};
use gp_core::keys::AesKey;
use gp_core::scp03;
use gp_core::tlv::write_tlv;

use crate::aid::{Aid, ISD_AID};
use crate::card::Transient;
use crate::channel::{Auth, Channel, Pending};
use crate::error::{refuse, Error, Result};
use crate::keys::KeyType;
use crate::lifecycle::CardLifeCycle;
use crate::state::CardState;
use crate::Sw;

/// Everything a command handler may touch.
pub(crate) struct Ctx<'a> {
    /// The state the command builds; committed only if the handler returns `Ok`.
    pub state: &'a mut CardState,
    /// RAM-only session data.
    pub ram: &'a mut Transient,
    /// The authenticated session, if any.
    pub auth: Option<Auth>,
}

impl Ctx<'_> {
    /// GP Table 11-2: most commands need at least AUTHENTICATED.
    pub fn require_auth(&self) -> Result<Auth> {
        self.auth
            .ok_or(Error::Refused(Sw::SECURITY_STATUS_NOT_SATISFIED))
    }

    /// Card content may change only in OP_READY, INITIALIZED and SECURED.
    pub fn require_content_change(&self) -> Result<()> {
        if self.state.life_cycle.allows_content_change() {
            Ok(())
        } else {
            refuse(Sw::CONDITIONS_NOT_SATISFIED)
        }
    }
}

/// `9000` with data.
pub(crate) fn ok(data: Vec<u8>) -> Result<ResponseApdu> {
    Ok(ResponseApdu::new(data, Sw::NO_ERROR))
}

fn is_gp_class(cla: u8) -> bool {
    cla & 0x80 != 0
}

/// Route a command (secure messaging already removed) to its handler.
pub(crate) fn handle(ctx: &mut Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu> {
    let lc = ctx.state.life_cycle;
    let is_get_data = matches!(cmd.ins, 0xCA | 0xCB);
    if lc == CardLifeCycle::Terminated && !is_get_data {
        // GP 2.3.1 §5.1.1.5: a terminated card's ISD processes GET DATA only.
        return refuse(Sw::CONDITIONS_NOT_SATISFIED);
    }
    if is_get_data {
        return get_data(ctx, cmd);
    }
    if !is_gp_class(cmd.cla) {
        return refuse(Sw::CLA_NOT_SUPPORTED);
    }
    match cmd.ins {
        0xF2 => crate::status::get_status(ctx, cmd),
        0xF0 => set_status(ctx, cmd),
        0xD8 => crate::putkey::put_key(ctx, cmd),
        0xE6 => crate::install::install(ctx, cmd),
        0xE8 => crate::load::load(ctx, cmd),
        0xE4 => crate::install::delete(ctx, cmd),
        _ => refuse(Sw::INS_NOT_SUPPORTED),
    }
}

/// Largest sequence counter SCP03 can carry (3 bytes).
const SCP03_MAX_COUNTER: u32 = 0x00FF_FFFF;

/// INITIALIZE UPDATE (GP 2.3.1 §D.4.1 / Amendment D §7.1.1). Increments the key set's sequence
/// counter in the next state (the caller commits it before answering), derives the session and
/// leaves the channel `Initiated`.
pub(crate) fn initialize_update(
    state: &mut CardState,
    channel: &mut Channel,
    cmd: &CommandApdu,
) -> Result<ResponseApdu> {
    // Any previous session ends here, whatever the outcome.
    *channel = Channel::None;
    if !is_gp_class(cmd.cla) || gp_core::apdu::has_secure_messaging(cmd.cla) {
        return refuse(Sw::CLA_NOT_SUPPORTED);
    }
    if state.life_cycle == CardLifeCycle::Terminated {
        return refuse(Sw::CONDITIONS_NOT_SATISFIED);
    }
    if cmd.p2 != 0x00 {
        return refuse(Sw::INCORRECT_P1P2);
    }
    let host_challenge: [u8; 8] = cmd
        .data
        .as_slice()
        .try_into()
        .map_err(|_| Error::Refused(Sw::WRONG_LENGTH))?;
    let domain = &mut state.isd;
    if domain.failed_auth >= domain.auth_limit {
        return refuse(Sw::AUTHENTICATION_METHOD_BLOCKED);
    }
    let scp = domain.scp;
    if scp.scp != 0x03 {
        return refuse(Sw::REFERENCED_DATA_NOT_FOUND);
    }
    let set = domain
        .set_mut(cmd.p1)
        .ok_or(Error::Refused(Sw::REFERENCED_DATA_NOT_FOUND))?;
    let kvn = set.kvn;
    let aes = |id: u8| -> Result<AesKey> {
        let key = set
            .key(id)
            .filter(|k| k.key_type == KeyType::Aes)
            .ok_or(Error::Refused(Sw::REFERENCED_DATA_NOT_FOUND))?;
        AesKey::from_slice(key.value()).map_err(|_| Error::Refused(Sw::REFERENCED_DATA_NOT_FOUND))
    };
    let mut enc = aes(1)?;
    let mut mac = aes(2)?;
    if set.sequence_counter >= SCP03_MAX_COUNTER {
        return refuse(Sw::CONDITIONS_NOT_SATISFIED);
    }
    set.sequence_counter = set.sequence_counter.saturating_add(1);
    let [_, s0, s1, s2] = set.sequence_counter.to_be_bytes();
    let seq = [s0, s1, s2];
    if scp.i & 0x10 == 0 {
        // Random card challenges need an entropy source this build does not have.
        return refuse(Sw::CONDITIONS_NOT_SATISFIED);
    }
    let card_challenge = scp03::pseudo_random_challenge(&mut enc, seq, ISD_AID.as_bytes())
        .map_err(|_| Error::Refused(Sw::UNKNOWN))?;
    let key_len = enc.len();
    let keys = scp03::derive_session_keys(
        &mut enc,
        &mut mac,
        key_len,
        &host_challenge,
        &card_challenge,
    )
    .map_err(|_| Error::Refused(Sw::UNKNOWN))?;
    let card_cryptogram = scp03::card_cryptogram(&keys, &host_challenge, &card_challenge);
    let host_cryptogram = scp03::host_cryptogram(&keys, &host_challenge, &card_challenge);
    let response = scp03::InitializeUpdateResponse {
        kdd: state.kdd,
        kvn,
        scp_id: 0x03,
        i: scp.i,
        card_challenge,
        card_cryptogram,
        sequence_counter: Some(seq),
    };
    *channel = Channel::Initiated(alloc::boxed::Box::new(Pending {
        session: scp03::Session::card(keys),
        host_cryptogram,
        kvn,
    }));
    ok(response.to_bytes())
}

/// SET STATUS (GP 2.3.1 §11.10): card life cycle (P1 `80`) and application lock/unlock
/// (P1 `40`, `60`).
fn set_status(ctx: &mut Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu> {
    ctx.require_auth()?;
    match cmd.p1 {
        0x80 => {
            let to = CardLifeCycle::from_code(cmd.p2).ok_or(Error::Refused(Sw::INCORRECT_DATA))?;
            ctx.state.life_cycle = ctx.state.life_cycle.transition(to)?;
            ok(Vec::new())
        }
        0x40 | 0x60 => {
            ctx.require_content_change()?;
            let aid = Aid::new(&cmd.data).ok_or(Error::Refused(Sw::INCORRECT_DATA))?;
            let lock = cmd.p2 & 0x80 != 0;
            let targets: Vec<Aid> = if cmd.p1 == 0x60 {
                // The SD and every application associated with it.
                ctx.state
                    .registry
                    .applications
                    .iter()
                    .filter(|a| a.aid == aid || a.associated_sd == aid)
                    .map(|a| a.aid)
                    .collect()
            } else {
                alloc::vec![aid]
            };
            if ctx.state.registry.application(&aid).is_none() {
                return refuse(Sw::REFERENCED_DATA_NOT_FOUND);
            }
            for target in targets {
                let app = ctx
                    .state
                    .registry
                    .application_mut(&target)
                    .ok_or(Error::Refused(Sw::REFERENCED_DATA_NOT_FOUND))?;
                let single = cmd.p1 == 0x40;
                app.life_cycle = match (lock, app.life_cycle.is_locked()) {
                    (true, false) => app.life_cycle.lock()?,
                    (false, true) => app.life_cycle.unlock()?,
                    // GP: a request for the current state is refused for a single target and
                    // is a no-op inside a hierarchy.
                    _ if single => return refuse(Sw::INCORRECT_DATA),
                    _ => app.life_cycle,
                };
            }
            ok(Vec::new())
        }
        _ => refuse(Sw::INCORRECT_P1P2),
    }
}

/// The card recognition data (GP 2.3.1 Annex H), tag `66`.
fn card_data(state: &CardState) -> Vec<u8> {
    const GP_OID: [u8; 6] = [0x2A, 0x86, 0x48, 0x86, 0xFC, 0x6B];
    let oid = |suffix: &[u8]| {
        let mut v = GP_OID.to_vec();
        v.extend_from_slice(suffix);
        let mut out = Vec::new();
        write_tlv(&mut out, 0x06, &v);
        out
    };
    let mut inner = Vec::new();
    inner.extend_from_slice(&oid(&[0x01]));
    write_tlv(&mut inner, 0x60, &oid(&[0x02, 0x02, 0x03, 0x01]));
    write_tlv(&mut inner, 0x63, &oid(&[0x03]));
    write_tlv(
        &mut inner,
        0x64,
        &oid(&[0x04, state.isd.scp.scp, state.isd.scp.i]),
    );
    let mut rec = Vec::new();
    write_tlv(&mut rec, 0x73, &inner);
    rec
}

/// Key information template `E0` (GP 2.3.1 Table 11-28, basic format).
pub(crate) fn key_information(state: &CardState) -> Vec<u8> {
    let mut inner = Vec::new();
    for set in &state.isd.sets {
        for key in &set.keys {
            let len = u8::try_from(key.len()).unwrap_or(0);
            write_tlv(
                &mut inner,
                0xC0,
                &[key.id, set.kvn, key.key_type.code(), len],
            );
        }
    }
    inner
}

/// GET DATA (GP 2.3.1 §11.3). With a GP class byte the whole TLV object is returned, with an
/// ISO class byte its value only.
fn get_data(ctx: &mut Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu> {
    let tag = u16::from_be_bytes([cmd.p1, cmd.p2]);
    let gp_class = is_gp_class(cmd.cla);
    if gp_class && cmd.ins != 0xCA {
        return refuse(Sw::INS_NOT_SUPPORTED);
    }
    let state = &*ctx.state;
    let value: Vec<u8> = match tag {
        0x0042 if !state.iin.is_empty() => state.iin.clone(),
        0x0045 if !state.cin.is_empty() => state.cin.clone(),
        0x0066 => card_data(state),
        0x00CF => state.kdd.to_vec(),
        0x00C1 => {
            let set = state
                .isd
                .set(0)
                .ok_or(Error::Refused(Sw::REFERENCED_DATA_NOT_FOUND))?;
            let b = set.sequence_counter.to_be_bytes();
            if state.isd.scp.scp == 0x02 {
                b.get(2..).unwrap_or_default().to_vec()
            } else {
                b.get(1..).unwrap_or_default().to_vec()
            }
        }
        0x00E0 => key_information(state),
        0x9F7F => state.cplc.to_vec(),
        _ => return refuse(Sw::REFERENCED_DATA_NOT_FOUND),
    };
    if gp_class {
        let mut out = Vec::new();
        write_tlv(&mut out, u32::from(tag), &value);
        ok(out)
    } else {
        ok(value)
    }
}
