//! PUT KEY (GP 2.3.1 §11.8): add a key set or replace one, keys encrypted under the static DEK
//! of the key set that opened the session; key check values verified and returned.
//!
//! The whole command is one atomic change: every key is decrypted and checked before the next
//! state is touched. Chained PUT KEY (P1 b8) is not supported and answers `6A86`.

use alloc::vec::Vec;

use gp_core::apdu::{CommandApdu, ResponseApdu};
use gp_core::keys::{AesKey, Des3Key};
use gp_core::tlv::read_len;
use gp_core::{kcv, scp03};

use crate::error::{refuse, Error, Result};
use crate::isd::{ok, Ctx};
use crate::keys::{Key, KeySet, KeyType};
use crate::Sw;

/// Most key sets a domain holds.
const MAX_KEY_SETS: usize = 8;

/// One key from the command, decrypted and checked.
struct NewKey {
    key: Key,
    kcv: [u8; 3],
}

fn bad() -> Error {
    Error::Refused(Sw::INCORRECT_DATA)
}

fn split(data: &[u8], n: usize) -> Result<(&[u8], &[u8])> {
    data.split_at_checked(n).ok_or_else(bad)
}

fn key_check_value(key_type: KeyType, value: &[u8]) -> Result<[u8; 3]> {
    Ok(match key_type {
        KeyType::Aes => kcv::kcv_aes(&AesKey::from_slice(value).map_err(|_| bad())?),
        KeyType::Des3 => kcv::kcv_des3(&Des3Key::from_slice(value).map_err(|_| bad())?),
    })
}

/// Parse one basic-format key data field (Table 11-68, one component) and decrypt it.
fn parse_key<'a>(rest: &'a [u8], id: u8, dek: &AesKey) -> Result<(NewKey, &'a [u8])> {
    let (&type_byte, rest) = rest.split_first().ok_or_else(bad)?;
    // Extended format (FF xx) and asymmetric keys are not supported by this card domain.
    let key_type = KeyType::from_code(type_byte).ok_or_else(bad)?;
    let (block_len, rest) = read_len(rest).map_err(|_| bad())?;
    let (block, rest) = split(rest, block_len)?;
    // Table 11-70 (length-prefixed, padded) or 11-71 (whole blocks) component block.
    let (clear_len, encrypted) = if block.len() % 16 == 0 {
        (block.len(), block)
    } else {
        let (n, enc) = read_len(block).map_err(|_| bad())?;
        (n, enc)
    };
    if encrypted.is_empty() || encrypted.len() % 16 != 0 {
        return refuse(Sw::INCORRECT_DATA);
    }
    let clear = scp03::decrypt_key_data(dek, encrypted).map_err(|_| bad())?;
    let value = clear.get(..clear_len).ok_or_else(bad)?;
    let key = Key::new(id, key_type, value).ok_or_else(bad)?;
    let (&kcv_len, rest) = rest.split_first().ok_or_else(bad)?;
    let (given, rest) = split(rest, usize::from(kcv_len))?;
    let kcv = key_check_value(key_type, value)?;
    // GP: the KCV is mandatory for the key types of Annex B.6 and must match.
    if given.len() != 3 || !bool::from(subtle::ConstantTimeEq::ct_eq(given, &kcv[..])) {
        return refuse(Sw::SECURITY_STATUS_NOT_SATISFIED);
    }
    Ok((NewKey { key, kcv }, rest))
}

/// PUT KEY.
pub(crate) fn put_key(ctx: &mut Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu> {
    let auth = ctx.require_auth()?;
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
    let domain = &ctx.state.isd;
    if domain.scp.scp != 0x03 {
        return refuse(Sw::CONDITIONS_NOT_SATISFIED);
    }
    let dek = {
        let set = domain
            .set(auth.kvn)
            .ok_or(Error::Refused(Sw::REFERENCED_DATA_NOT_FOUND))?;
        let key = set
            .key(3)
            .ok_or(Error::Refused(Sw::REFERENCED_DATA_NOT_FOUND))?;
        AesKey::from_slice(key.value())
            .map_err(|_| Error::Refused(Sw::REFERENCED_DATA_NOT_FOUND))?
    };
    let (&new_kvn, mut rest) = cmd.data.split_first().ok_or_else(bad)?;
    if !(0x01..=0x7F).contains(&new_kvn) {
        return refuse(Sw::INCORRECT_DATA);
    }
    let mut new_keys: Vec<NewKey> = Vec::new();
    let mut id = first_id;
    while !rest.is_empty() {
        if !new_keys.is_empty() && !multiple {
            return refuse(Sw::INCORRECT_DATA);
        }
        let (k, r) = parse_key(rest, id, &dek)?;
        new_keys.push(k);
        rest = r;
        id = id.checked_add(1).filter(|i| *i <= 0x7F).ok_or_else(bad)?;
    }
    if new_keys.is_empty() {
        return refuse(Sw::INCORRECT_DATA);
    }
    let mut response = alloc::vec![new_kvn];
    for k in &new_keys {
        response.extend_from_slice(&k.kcv);
    }
    let sets = &mut ctx.state.isd.sets;
    let kvn_taken =
        |sets: &[KeySet], kvn: u8, except: u8| sets.iter().any(|s| s.kvn == kvn && s.kvn != except);
    if old_kvn == 0 {
        // A new key set.
        if kvn_taken(sets, new_kvn, 0) {
            return refuse(Sw::INCORRECT_DATA);
        }
        if sets.len() >= MAX_KEY_SETS {
            return refuse(Sw::NOT_ENOUGH_MEMORY);
        }
        sets.push(KeySet {
            kvn: new_kvn,
            keys: new_keys.into_iter().map(|k| k.key).collect(),
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
        let whole = set.keys.len() == new_keys.len();
        if new_kvn != old_kvn && !whole {
            // Changing the version of part of a set would split it.
            return refuse(Sw::INCORRECT_DATA);
        }
        for nk in new_keys {
            let slot = set
                .keys
                .iter_mut()
                .find(|k| k.id == nk.key.id)
                .ok_or(Error::Refused(Sw::REFERENCED_DATA_NOT_FOUND))?;
            // GP 11.8.2.3.3: same algorithm and size as the key replaced.
            if slot.key_type != nk.key.key_type || slot.len() != nk.key.len() {
                return refuse(Sw::INCORRECT_DATA);
            }
            *slot = nk.key;
        }
        set.kvn = new_kvn;
        if whole {
            // Amendment D §6.2.2.1: a replaced key set starts its counter again.
            set.sequence_counter = 0;
        }
    }
    ok(response)
}
