//! The card domain (issuer security domain): command routing, INITIALIZE UPDATE, SET STATUS and
//! GET DATA. Key management, loading, installation and status live in their own modules.
//!
//! Handlers work on the *next* card state (a copy); the caller commits it once when the handler
//! succeeds and discards it when the handler refuses, so a refused command changes nothing.

use alloc::vec::Vec;

use gp_core::apdu::{CommandApdu, ResponseApdu};
use gp_core::keys::{AesKey, Des3Key};
use gp_core::tlv::write_tlv;
use gp_core::{scp02, scp03};

use crate::aid::{Aid, ISD_AID};
use crate::card::Transient;
use crate::channel::{Auth, Channel, Pending, Scp};
use crate::error::{refuse, Error, Result};
use crate::keys::{DomainKeys, KeyType};
use crate::lifecycle::AppLifeCycle;
use crate::lifecycle::CardLifeCycle;
use crate::privileges::Privileges;
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
        0xE6 => {
            // Any SD personalises its own applications; extradition and registry updates are
            // the ISD's; loading and installing are card content management (see `dm`).
            if matches!(cmd.p1 & 0x7F, 0x10 | 0x40) {
                ctx.require_isd()?;
            }
            crate::install::install(ctx, cmd)
        }
        0xE2 => store_data(ctx, cmd),
        // Only the domain that accepted INSTALL [for load] has a load session.
        0xE8 => crate::load::load(ctx, cmd),
        // Keys: the selected domain's own; content: card content management (see `dm`).
        0xE4 => crate::install::delete(ctx, cmd),
        _ => refuse(Sw::INS_NOT_SUPPORTED),
    }
}

/// Largest sequence counter SCP03 can carry (3 bytes).
const SCP03_MAX_COUNTER: u32 = 0x00FF_FFFF;
/// Largest sequence counter SCP02 can carry (2 bytes).
const SCP02_MAX_COUNTER: u32 = 0xFFFF;

/// INITIALIZE UPDATE (GP 2.3.1 §E.5.1 / Amendment D §7.1.1). Works on the next state (SCP03
/// pseudo-random challenges increment the key set's sequence counter; random challenges advance
/// the card's generator), which the caller commits before answering; leaves the channel
/// `Initiated`.
pub(crate) fn initialize_update(
    state: &mut CardState,
    channel: &mut Channel,
    cmd: &CommandApdu,
    sd: &Aid,
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
    let domain = state
        .domain(sd)
        .ok_or(Error::Refused(Sw::CONDITIONS_NOT_SATISFIED))?;
    if domain.failed_auth >= domain.auth_limit {
        return refuse(Sw::AUTHENTICATION_METHOD_BLOCKED);
    }
    match domain.scp.scp {
        0x03 => initialize_update_scp03(state, channel, cmd.p1, &host_challenge, sd),
        0x02 => initialize_update_scp02(state, channel, cmd.p1, &host_challenge, sd),
        _ => refuse(Sw::REFERENCED_DATA_NOT_FOUND),
    }
}

/// The three secure channel keys (ENC, MAC, DEK = ids 1, 2, 3) of a set, of one type.
fn channel_keys(set: &crate::keys::KeySet, key_type: KeyType) -> Result<[&crate::keys::Key; 3]> {
    let get = |id: u8| {
        set.key(id)
            .filter(|k| k.key_type == key_type)
            .ok_or(Error::Refused(Sw::REFERENCED_DATA_NOT_FOUND))
    };
    Ok([get(1)?, get(2)?, get(3)?])
}

fn initialize_update_scp03(
    state: &mut CardState,
    channel: &mut Channel,
    kvn_wanted: u8,
    host_challenge: &[u8; 8],
    sd: &Aid,
) -> Result<ResponseApdu> {
    let kdd = state.kdd;
    let CardState {
        isd, registry, rng, ..
    } = state;
    let domain = if *sd == ISD_AID {
        isd
    } else {
        registry
            .application_mut(sd)
            .and_then(|a| a.domain.as_mut())
            .ok_or(Error::Refused(Sw::CONDITIONS_NOT_SATISFIED))?
    };
    let i = domain.scp.i;
    let set = domain
        .set_mut(kvn_wanted)
        .ok_or(Error::Refused(Sw::REFERENCED_DATA_NOT_FOUND))?;
    let kvn = set.kvn;
    let [enc, mac, _] = channel_keys(set, KeyType::Aes)?;
    let aes = |k: &crate::keys::Key| {
        AesKey::from_slice(k.value()).map_err(|_| Error::Refused(Sw::REFERENCED_DATA_NOT_FOUND))
    };
    let mut enc = aes(enc)?;
    let mut mac = aes(mac)?;
    let (card_challenge, seq) = if i & scp03::I_PSEUDO_RANDOM != 0 {
        if set.sequence_counter >= SCP03_MAX_COUNTER {
            return refuse(Sw::CONDITIONS_NOT_SATISFIED);
        }
        set.sequence_counter = set.sequence_counter.saturating_add(1);
        let [_, s0, s1, s2] = set.sequence_counter.to_be_bytes();
        let seq = [s0, s1, s2];
        let cc = scp03::pseudo_random_challenge(&mut enc, seq, sd.as_bytes())
            .map_err(|_| Error::Refused(Sw::UNKNOWN))?;
        (cc, Some(seq))
    } else {
        (rng.next8()?, None)
    };
    let key_len = enc.len();
    let keys =
        scp03::derive_session_keys(&mut enc, &mut mac, key_len, host_challenge, &card_challenge)
            .map_err(|_| Error::Refused(Sw::UNKNOWN))?;
    let card_cryptogram = scp03::card_cryptogram(&keys, host_challenge, &card_challenge);
    let host_cryptogram = scp03::host_cryptogram(&keys, host_challenge, &card_challenge);
    let response = scp03::InitializeUpdateResponse {
        kdd,
        kvn,
        scp_id: 0x03,
        i,
        card_challenge,
        card_cryptogram,
        sequence_counter: seq,
    };
    *channel = Channel::Initiated(alloc::boxed::Box::new(Pending {
        session: Scp::V03(scp03::Session::card(keys)),
        host_cryptogram,
        kvn,
        i,
    }));
    ok(response.to_bytes())
}

fn initialize_update_scp02(
    state: &mut CardState,
    channel: &mut Channel,
    kvn_wanted: u8,
    host_challenge: &[u8; 8],
    sd: &Aid,
) -> Result<ResponseApdu> {
    let domain = state
        .domain(sd)
        .ok_or(Error::Refused(Sw::CONDITIONS_NOT_SATISFIED))?;
    let i = domain.scp.i;
    let set = domain
        .set(kvn_wanted)
        .ok_or(Error::Refused(Sw::REFERENCED_DATA_NOT_FOUND))?;
    let kvn = set.kvn;
    // GPC E.1.2: the counter counts opened sessions; EXTERNAL AUTHENTICATE increments it.
    if set.sequence_counter >= SCP02_MAX_COUNTER {
        return refuse(Sw::CONDITIONS_NOT_SATISFIED);
    }
    let [_, _, s0, s1] = set.sequence_counter.to_be_bytes();
    let seq = [s0, s1];
    let [enc, mac, dek] = channel_keys(set, KeyType::Des3)?;
    let des = |k: &crate::keys::Key| {
        Des3Key::from_slice(k.value()).map_err(|_| Error::Refused(Sw::REFERENCED_DATA_NOT_FOUND))
    };
    let (mut enc, mut mac, mut dek) = (des(enc)?, des(mac)?, des(dek)?);
    let keys = scp02::derive_session_keys(&mut enc, &mut mac, &mut dek, seq)
        .map_err(|_| Error::Refused(Sw::UNKNOWN))?;
    let card_challenge: [u8; 6] = if i & scp02::I_PSEUDO_RANDOM != 0 {
        scp02::pseudo_random_challenge(&keys.mac, sd.as_bytes())
    } else {
        let [a, b, c, d, e, f, _, _] = state.rng.next8()?;
        [a, b, c, d, e, f]
    };
    let card_cryptogram = scp02::card_cryptogram(&keys, host_challenge, seq, &card_challenge);
    let host_cryptogram = scp02::host_cryptogram(&keys, host_challenge, seq, &card_challenge);
    let response = scp02::InitializeUpdateResponse {
        kdd: state.kdd,
        kvn,
        scp_id: 0x02,
        sequence_counter: seq,
        card_challenge,
        card_cryptogram,
    };
    let session = scp02::Session::card(keys).with_icv_encryption(i & scp02::I_ICV_ENCRYPTION != 0);
    *channel = Channel::Initiated(alloc::boxed::Box::new(Pending {
        session: Scp::V02(session),
        host_cryptogram,
        kvn,
        i,
    }));
    ok(response.to_bytes())
}

/// SET STATUS (GP 2.3.1 §11.10): the card life cycle (P1 `80`, by the ISD or an SD with the
/// Card Lock / Card Terminate privilege), an application's or SD's lock and unlock (P1 `40`), a
/// whole SD hierarchy's (P1 `60`), and an SD moving itself to PERSONALIZED.
fn set_status(ctx: &mut Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu> {
    ctx.require_auth()?;
    let privileges = ctx
        .state
        .privileges(&ctx.sd)
        .ok_or(Error::Refused(Sw::CONDITIONS_NOT_SATISFIED))?;
    match cmd.p1 {
        0x80 => {
            let to = CardLifeCycle::from_code(cmd.p2).ok_or(Error::Refused(Sw::INCORRECT_DATA))?;
            let needed = match to {
                CardLifeCycle::Terminated => Privileges::CARD_TERMINATE,
                CardLifeCycle::CardLocked => Privileges::CARD_LOCK,
                CardLifeCycle::Secured if ctx.state.life_cycle == CardLifeCycle::CardLocked => {
                    Privileges::CARD_LOCK
                }
                // Personalisation states belong to the card domain.
                _ if ctx.sd != ISD_AID => return refuse(Sw::SECURITY_STATUS_NOT_SATISFIED),
                _ => 0,
            };
            if needed != 0 && !privileges.has(needed) {
                return refuse(Sw::SECURITY_STATUS_NOT_SATISFIED);
            }
            ctx.state.life_cycle = ctx.state.life_cycle.transition(to)?;
            ok(Vec::new())
        }
        0x40 | 0x60 => {
            ctx.require_content_change()?;
            let aid = Aid::new(&cmd.data).ok_or(Error::Refused(Sw::INCORRECT_DATA))?;
            let target = ctx
                .state
                .registry
                .application(&aid)
                .ok_or(Error::Refused(Sw::REFERENCED_DATA_NOT_FOUND))?;
            // An SD moves itself to PERSONALIZED (GP 5.3.2; irreversible).
            if aid == ctx.sd && cmd.p1 == 0x40 && cmd.p2 == AppLifeCycle::PERSONALIZED.code() {
                if target.life_cycle != AppLifeCycle::SELECTABLE {
                    return refuse(Sw::INCORRECT_DATA);
                }
                if let Some(app) = ctx.state.registry.application_mut(&aid) {
                    app.life_cycle = AppLifeCycle::PERSONALIZED;
                }
                return ok(Vec::new());
            }
            // Otherwise only LOCKED and back (b8), by an SD the target is associated with
            // (the ISD is, indirectly, for everything) or with Global Lock.
            let associated = ctx.sd == ISD_AID
                || target.associated_sd == ctx.sd
                || privileges.has(Privileges::GLOBAL_LOCK);
            if !associated {
                return refuse(Sw::SECURITY_STATUS_NOT_SATISFIED);
            }
            if target.privileges.has(Privileges::FINAL_APPLICATION) {
                return refuse(Sw::CONDITIONS_NOT_SATISFIED);
            }
            let lock = cmd.p2 & 0x80 != 0;
            if !lock && aid == ctx.sd {
                // An SD does not unlock itself.
                return refuse(Sw::SECURITY_STATUS_NOT_SATISFIED);
            }
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

/// STORE DATA (GP 2.3.1 §11.11): blocks numbered from `00` in P2, P1 b8 on the last. After
/// INSTALL [for personalization] they go to the application, which uses its SD's services to
/// decrypt them; otherwise the ISD stores its own IIN (`42`) and CIN (`45`) from BER-TLV.
fn store_data(ctx: &mut Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu> {
    ctx.require_auth()?;
    ctx.require_content_change()?;
    let last = cmd.p1 & 0x80 != 0;
    match ctx.ram.perso.take() {
        Some(perso) => {
            if u16::from(cmd.p2) != perso.next_block {
                return refuse(Sw::INCORRECT_P1P2);
            }
            let dek = crate::putkey::session_dek(ctx).ok();
            let app = ctx
                .state
                .registry
                .application(&perso.app)
                .ok_or(Error::Refused(Sw::REFERENCED_DATA_NOT_FOUND))?;
            let applet = crate::app::applet_for(&app.module)
                .ok_or(Error::Refused(Sw::CONDITIONS_NOT_SATISFIED))?;
            let mut data = app.app_data.clone();
            let mut life_cycle = app.life_cycle.code();
            {
                let mut services = crate::app::Services {
                    state: ctx.state,
                    sd: ctx.sd,
                    app: perso.app,
                    dek,
                };
                crate::app::Applet::personalize(
                    &applet,
                    &mut data,
                    &mut life_cycle,
                    cmd.p1,
                    &cmd.data,
                    &mut services,
                )?;
            }
            let lc = AppLifeCycle::from_code(life_cycle)?;
            let app = ctx
                .state
                .registry
                .application_mut(&perso.app)
                .ok_or(Error::Refused(Sw::REFERENCED_DATA_NOT_FOUND))?;
            app.app_data = data;
            app.life_cycle = lc;
            if !last {
                ctx.ram.perso = Some(crate::card::Perso {
                    app: perso.app,
                    next_block: perso.next_block.saturating_add(1),
                });
            }
            ok(Vec::new())
        }
        None => {
            ctx.require_isd()?;
            // Blocks are numbered from 00; the count restarts after the last block and after
            // any refused block (GP 2.3.1 §11.11.2.2).
            let expected = core::mem::take(&mut ctx.ram.store_next);
            if u16::from(cmd.p2) != expected {
                return refuse(Sw::INCORRECT_P1P2);
            }
            if cmd.p1 & 0x78 != 0x10 {
                // Plain BER-TLV only for the card domain's own data.
                return refuse(Sw::INCORRECT_P1P2);
            }
            for t in gp_core::tlv::TlvReader::new(&cmd.data) {
                let t = t.map_err(|_| Error::Refused(Sw::INCORRECT_DATA))?;
                match t.tag {
                    0x42 if (1..=16).contains(&t.value.len()) => ctx.state.iin = t.value.to_vec(),
                    0x45 if (1..=16).contains(&t.value.len()) => ctx.state.cin = t.value.to_vec(),
                    _ => return refuse(Sw::INCORRECT_DATA),
                }
            }
            if !last {
                ctx.ram.store_next = expected.saturating_add(1);
            }
            ok(Vec::new())
        }
    }
}

/// The card recognition data (GP 2.3.1 Annex H), tag `66`, naming the protocol of `domain`.
fn card_data(domain: &DomainKeys) -> Vec<u8> {
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
        &oid(&[0x04, domain.scp.scp, domain.scp.i]),
    );
    let mut rec = Vec::new();
    write_tlv(&mut rec, 0x73, &inner);
    rec
}

/// GET DATA `2F00`: an application template `61 { 4F AID }` for every application associated
/// with the selected domain, or every application when it has Global Registry (the ISD).
fn application_list(ctx: &Ctx<'_>) -> Vec<u8> {
    let global = ctx
        .state
        .privileges(&ctx.sd)
        .is_some_and(|p| p.has(Privileges::GLOBAL_REGISTRY));
    let mut out = Vec::new();
    for app in &ctx.state.registry.applications {
        if global || app.associated_sd == ctx.sd {
            let mut inner = Vec::new();
            write_tlv(&mut inner, 0x4F, app.aid.as_bytes());
            write_tlv(&mut out, 0x61, &inner);
        }
    }
    out
}

/// Card capability information, tag `67` (GP 2.3.1 H.4): the protocols with their options, the
/// privileges SSDs and applications can be given, LFDB hashes, LFDB ciphers, and the signature
/// schemes for tokens, receipts and DAPs.
fn card_capabilities() -> Vec<u8> {
    // Signature schemes (Table H-9): 3DES retail MAC, AES-CMAC 128/192/256, and with the
    // asymmetric code RSA PKCS#1 v1.5 SHA-1 (<= 1024 bits), RSA PSS SHA-256, ECDSA P-256.
    const SYMMETRIC: u8 = 0x04 | 0x08 | 0x10 | 0x20;
    const SIGNATURES: u8 = if cfg!(feature = "asymmetric-dap") {
        SYMMETRIC | 0x01 | 0x02 | 0x40
    } else {
        SYMMETRIC
    };
    let mut scp03 = Vec::new();
    write_tlv(&mut scp03, 0x80, &[0x03]);
    write_tlv(&mut scp03, 0x81, &[0x00, 0x10, 0x20, 0x30, 0x60, 0x70]);
    write_tlv(&mut scp03, 0x82, &[0x07]);
    let mut scp02 = Vec::new();
    write_tlv(&mut scp02, 0x80, &[0x02]);
    write_tlv(&mut scp02, 0x81, &[0x15, 0x55]);
    let mut inner = Vec::new();
    write_tlv(&mut inner, 0xA0, &scp03);
    write_tlv(&mut inner, 0xA0, &scp02);
    write_tlv(&mut inner, 0x81, &crate::install::SSD_PRIVILEGES);
    write_tlv(&mut inner, 0x82, &crate::install::APP_PRIVILEGES);
    write_tlv(&mut inner, 0x83, &[0x01, 0x02, 0x03, 0x04]);
    // LFDB encryption: 3DES, AES-128/192/256, with an ICV.
    write_tlv(&mut inner, 0x84, &[0x8F]);
    write_tlv(&mut inner, 0x85, &[SIGNATURES]);
    write_tlv(&mut inner, 0x86, &[SYMMETRIC]);
    write_tlv(&mut inner, 0x87, &[SIGNATURES]);
    if cfg!(feature = "asymmetric-dap") {
        // Key parameter reference 00: P-256.
        write_tlv(&mut inner, 0x88, &[0x00]);
    }
    inner
}

/// Key information template `E0` (GP 2.3.1 Table 11-28, basic format).
pub(crate) fn key_information(domain: &DomainKeys) -> Vec<u8> {
    let mut inner = Vec::new();
    for set in &domain.sets {
        for key in &set.keys {
            let mut info = alloc::vec![key.id, set.kvn];
            info.extend_from_slice(&key.info_components());
            write_tlv(&mut inner, 0xC0, &info);
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
    let isd = ctx.sd == ISD_AID;
    let domain = state
        .domain(&ctx.sd)
        .ok_or(Error::Refused(Sw::CONDITIONS_NOT_SATISFIED))?;
    if tag == 0x2F00 {
        // The list of applications (GP 11.3.3.1.3): the same format for both classes; the
        // tag list `5C 00` is expected and may be left out.
        if !cmd.data.is_empty() && cmd.data != [0x5C, 0x00] {
            return refuse(Sw::INCORRECT_DATA);
        }
        let list = application_list(ctx);
        if list.is_empty() {
            return refuse(Sw::REFERENCED_DATA_NOT_FOUND);
        }
        return ok(list);
    }
    let value: Vec<u8> = match tag {
        0x0042 if isd && !state.iin.is_empty() => state.iin.clone(),
        0x0067 if isd => card_capabilities(),
        0x00C2 if isd => state.confirmation_counter.to_be_bytes().to_vec(),
        0x0045 if isd && !state.cin.is_empty() => state.cin.clone(),
        0x0066 => card_data(domain),
        0x00CF => state.kdd.to_vec(),
        0x00C1 => {
            let set = domain
                .set(0)
                .ok_or(Error::Refused(Sw::REFERENCED_DATA_NOT_FOUND))?;
            let b = set.sequence_counter.to_be_bytes();
            if domain.scp.scp == 0x02 {
                b.get(2..).unwrap_or_default().to_vec()
            } else {
                b.get(1..).unwrap_or_default().to_vec()
            }
        }
        0x00E0 => key_information(domain),
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
