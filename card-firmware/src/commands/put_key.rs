//! PUT KEY (GP 2.3.1 §11.8): add a key set or replace one; key check values verified and
//! returned.
//!
//! Secret key components arrive encrypted: under the static DEK of the key set that opened an
//! SCP03 session (AES-CBC, Amendment D §6.2.8), or under the SCP02 session DEK (3DES-ECB,
//! GPC E.4.7); public DAP keys (RSA, ECC P-256) arrive in clear. The payload is framed by
//! gp-core's `commands::put_key`. The whole command is one atomic change: every key is decrypted
//! and checked before the next state is touched, and the domain's key quotas
//! ([`crate::quotas`]) are checked on the result (`6A84`). A replaced set's sequence counter
//! restarts only when the whole set is replaced with new channel keys, so no recorded session
//! can replay. Chained PUT KEY (P1 b8) is not supported and answers `6A86`.

use alloc::vec::Vec;

use gp_core::apdu::{CommandApdu, ResponseApdu};
use gp_core::commands::put_key::{
    KeyData, PutKey, KEY_TYPE_AES, KEY_TYPE_DES, KEY_TYPE_EC_PUBLIC, KEY_TYPE_PARAMETER_REFERENCE,
    KEY_TYPE_RSA_MODULUS, KEY_TYPE_RSA_PUBLIC_EXPONENT,
};
use gp_core::kcv;
use gp_core::keys::{AesKey, Des3Key};

use crate::error::{refuse, Error, Result};
use crate::keys::{Dek, Key, KeySet, KeyType};
use crate::session::{ok, Ctx};
use crate::Sw;

fn bad() -> Error {
    Error::Refused(Sw::INCORRECT_DATA)
}

fn key_check_value(key_type: KeyType, value: &[u8]) -> Result<[u8; 3]> {
    match key_type {
        KeyType::Aes => Ok(kcv::kcv_aes(&AesKey::from_slice(value).map_err(|_| bad())?)),
        KeyType::Des3 => Ok(kcv::kcv_des3(
            &Des3Key::from_slice(value).map_err(|_| bad())?,
        )),
        KeyType::RsaPublic | KeyType::EcP256Public => refuse(Sw::INCORRECT_DATA),
    }
}

/// A public key data field: RSA (`A1` modulus, `A0` exponent, either order) or ECC P-256 (`B0`
/// point, `F0 00` parameter reference), in clear and without KCV (GP 11.8.2.3.5-6).
fn open_public_key(data: &KeyData, id: u8) -> Result<Key> {
    if !data.kcv.is_empty() {
        return refuse(Sw::INCORRECT_DATA);
    }
    let component = |t: u8| data.component(t).map(|c| c.block.as_slice());
    let key = match data.components.len() {
        2 => match (
            component(KEY_TYPE_RSA_MODULUS),
            component(KEY_TYPE_RSA_PUBLIC_EXPONENT),
            component(KEY_TYPE_EC_PUBLIC),
            component(KEY_TYPE_PARAMETER_REFERENCE),
        ) {
            (Some(n), Some(e), None, None) => Key::rsa_public(id, n, e),
            // Parameter reference 00: the card's P-256 curve.
            (None, None, Some(point), Some([0x00])) => Key::new(id, KeyType::EcP256Public, point),
            _ => None,
        },
        _ => None,
    };
    key.ok_or_else(bad)
}

/// Decrypt and check one key data field: a secret key (one encrypted component and its KCV)
/// or a public key. Returns the key and the KCV the response echoes (none for public keys).
fn open_key(data: &KeyData, id: u8, dek: &Dek) -> Result<(Key, Option<[u8; 3]>)> {
    let [component] = data.components.as_slice() else {
        return Ok((open_public_key(data, id)?, None));
    };
    let key_type = match component.key_type {
        KEY_TYPE_AES => KeyType::Aes,
        KEY_TYPE_DES => KeyType::Des3,
        _ => return refuse(Sw::INCORRECT_DATA),
    };
    let (clear_len, encrypted) = component.split_clear_length(dek.block()).ok_or_else(bad)?;
    if encrypted.is_empty() {
        return refuse(Sw::INCORRECT_DATA);
    }
    let clear = dek.decrypt(encrypted)?;
    let value = clear
        .get(..clear_len.unwrap_or(clear.len()))
        .ok_or_else(bad)?;
    let key = Key::new(id, key_type, value).ok_or_else(bad)?;
    let kcv = key_check_value(key_type, value)?;
    // GP 11.8.2.3.3: the KCV is mandatory for these key types and must match (`6982`).
    let matches = data.kcv.len() == 3
        && bool::from(subtle::ConstantTimeEq::ct_eq(data.kcv.as_slice(), &kcv[..]));
    if !matches {
        return refuse(Sw::SECURITY_STATUS_NOT_SATISFIED);
    }
    Ok((key, Some(kcv)))
}

/// The secure channel keys a set's challenges and session keys come from: ENC (id 1) and MAC
/// (id 2).
fn channel_keys(set: &KeySet) -> (Option<Key>, Option<Key>) {
    (set.key(1).cloned(), set.key(2).cloned())
}

/// PUT KEY.
pub(crate) fn put_key(ctx: &mut Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu> {
    ctx.require_auth()?;
    ctx.require_content_change()?;
    if cmd.p1 & 0x80 != 0 {
        return refuse(Sw::INCORRECT_P1P2);
    }
    let old_kvn = cmd.p1 & 0x7F;
    let first_id = cmd.p2 & 0x7F;
    let multiple = cmd.p2 & 0x80 != 0;
    if first_id == 0 {
        return refuse(Sw::INCORRECT_P1P2);
    }
    let dek = ctx.session_dek()?;
    let request = PutKey::parse(&cmd.data).map_err(|_| bad())?;
    let new_kvn = request.new_kvn;
    if !(0x01..=0x7F).contains(&new_kvn) || (request.keys.len() > 1 && !multiple) {
        return refuse(Sw::INCORRECT_DATA);
    }
    let mut new_keys: Vec<Key> = Vec::new();
    let mut response = alloc::vec![new_kvn];
    let mut id = first_id;
    for data in &request.keys {
        let (key, kcv) = open_key(data, id, &dek)?;
        new_keys.push(key);
        if let Some(kcv) = kcv {
            response.extend_from_slice(&kcv);
        }
        id = id.checked_add(1).filter(|i| *i <= 0x7F).ok_or_else(bad)?;
    }
    let sd = ctx.sd;
    let sets = &mut ctx
        .state
        .domain_mut(&sd)
        .ok_or(Error::Refused(Sw::CONDITIONS_NOT_SATISFIED))?
        .sets;
    let kvn_taken =
        |sets: &[KeySet], kvn: u8, except: u8| sets.iter().any(|s| s.kvn == kvn && s.kvn != except);
    if old_kvn == 0 {
        // A new key set.
        if kvn_taken(sets, new_kvn, 0) {
            return refuse(Sw::INCORRECT_DATA);
        }
        sets.push(KeySet {
            kvn: new_kvn,
            keys: new_keys,
            sequence_counter: 0,
        });
    } else {
        if kvn_taken(sets, new_kvn, old_kvn) {
            return refuse(Sw::INCORRECT_DATA);
        }
        let set = sets
            .iter_mut()
            .find(|s| s.kvn == old_kvn)
            .ok_or(Error::Refused(Sw::REFERENCED_DATA_NOT_FOUND))?;
        if new_kvn != old_kvn && set.keys.len() != new_keys.len() {
            // Changing the version of part of a set would split it.
            return refuse(Sw::INCORRECT_DATA);
        }
        let whole = new_keys.len() == set.keys.len();
        let channel_before = channel_keys(set);
        for nk in new_keys {
            let slot = set
                .keys
                .iter_mut()
                .find(|k| k.id == nk.id)
                .ok_or(Error::Refused(Sw::REFERENCED_DATA_NOT_FOUND))?;
            // GP 11.8.2.3.3: same algorithm and size as the key replaced.
            if slot.key_type != nk.key_type || slot.len() != nk.len() {
                return refuse(Sw::INCORRECT_DATA);
            }
            *slot = nk;
        }
        set.kvn = new_kvn;
        // Amendment D §6.2.2.1 and GPC E.1.2: a key set wholly replaced restarts its sequence
        // counter. Only then, and only with new channel keys: pseudo-random challenges (SCP03
        // i=70) and SCP02 session keys come from the counter and the ENC/MAC keys alone, so a
        // restart under unchanged ENC and MAC would issue old challenges again and let a
        // recorded session replay byte for byte.
        if whole && channel_keys(set) != channel_before {
            set.sequence_counter = 0;
        }
    }
    // Over any key quota (sets, keys per set, key bytes): 6A84, nothing stored.
    let domain = ctx
        .state
        .domain(&sd)
        .ok_or(Error::Refused(Sw::CONDITIONS_NOT_SATISFIED))?;
    crate::quotas::check_domain_keys(domain)?;
    ok(response)
}
