//! INITIALIZE UPDATE (GP 2.3.1 §E.5.1, Amendment D §7.1.1): the first step of a secure
//! channel session with the selected security domain.

use gp_core::apdu::{CommandApdu, ResponseApdu};
use gp_core::keys::{AesKey, Des3Key};
use gp_core::{scp02, scp03};

use crate::aid::{Aid, ISD_AID};
use crate::channel::{Channel, Pending, Scp};
use crate::error::{refuse, Error, Result};
use crate::keys::KeyType;
use crate::lifecycle::CardLifeCycle;
use crate::session::is_gp_class;
use crate::session::ok;
use crate::state::CardState;
use crate::Sw;

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
    if crate::keys::APP_KVNS.contains(&cmd.p1) {
        // Keys kept for applications never open a secure channel.
        return refuse(Sw::REFERENCED_DATA_NOT_FOUND);
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
