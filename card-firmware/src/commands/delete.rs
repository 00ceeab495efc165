//! DELETE (GP 2.3.1 §11.2): card content (applications, security domains, load files) or keys
//! of the selected security domain.

use alloc::vec::Vec;

use gp_core::apdu::{CommandApdu, ResponseApdu};
use gp_core::tlv::TlvReader;

use crate::aid::Aid;
use crate::dm::{self, Authority};
use crate::error::{refuse, Error, Result};
use crate::privileges::Privileges;
use crate::registry::Application;
use crate::session::{ok, Ctx};
use crate::Sw;

fn bad() -> Error {
    Error::Refused(Sw::INCORRECT_DATA)
}

/// DELETE (GP 2.3.1 §11.2): card content (tag `4F`, with `B6`/`9E` for delegated management)
/// or keys of the selected domain (`D0` key identifier and/or `D2` key version number).
pub(crate) fn delete(ctx: &mut Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu> {
    ctx.require_auth()?;
    ctx.require_content_change()?;
    if cmd.p1 & 0x80 != 0 || cmd.p2 & 0x7F != 0 {
        return refuse(Sw::INCORRECT_P1P2);
    }
    let related = cmd.p2 & 0x80 != 0;
    let mut aid: Option<Aid> = None;
    let mut key_id: Option<u8> = None;
    let mut kvn: Option<u8> = None;
    let mut crt: Option<&[u8]> = None;
    let mut token: Option<&[u8]> = None;
    // The data a delete token signs: everything before tag `9E`, which must come last.
    let mut body_len = 0;
    let mut reader = TlvReader::new(&cmd.data);
    while let Some(t) = reader.next() {
        let t = t.map_err(|_| bad())?;
        match t.tag {
            0x4F if aid.is_none() && token.is_none() => {
                aid = Some(Aid::new(t.value).ok_or_else(bad)?)
            }
            0xB6 if crt.is_none() && token.is_none() => crt = Some(t.value),
            0x9E if token.is_none() => token = Some(t.value),
            0xD0 if key_id.is_none() => {
                let [id] = <[u8; 1]>::try_from(t.value).map_err(|_| bad())?;
                key_id = Some(id);
            }
            0xD2 if kvn.is_none() => {
                let [v] = <[u8; 1]>::try_from(t.value).map_err(|_| bad())?;
                kvn = Some(v);
            }
            _ => return refuse(Sw::INCORRECT_DATA),
        }
        if t.tag != 0x9E {
            body_len = cmd.data.len().saturating_sub(reader.remaining().len());
        }
    }
    let keys = key_id.is_some() || kvn.is_some();
    match aid {
        Some(_) if keys => refuse(Sw::INCORRECT_DATA),
        None if keys => {
            if related || crt.is_some() || token.is_some() {
                return refuse(Sw::INCORRECT_DATA);
            }
            delete_keys(ctx, key_id, kvn)
        }
        None => refuse(Sw::INCORRECT_DATA),
        Some(aid) => {
            let body = cmd.data.get(..body_len).unwrap_or_default();
            delete_content(ctx, cmd, aid, related, crt, token, body)
        }
    }
}

fn delete_content(
    ctx: &mut Ctx<'_>,
    cmd: &CommandApdu,
    aid: Aid,
    related: bool,
    crt: Option<&[u8]>,
    token: Option<&[u8]>,
    body: &[u8],
) -> Result<ResponseApdu> {
    let authority = dm::authority(ctx.state, &ctx.sd)?;
    let sd = ctx.sd;
    let registry = &mut ctx.state.registry;
    // An SSD deletes only what is associated with it; the rest it does not see.
    let own = |a: &Aid| authority.is_issuer() || *a == sd;
    if let Some(pos) = registry
        .applications
        .iter()
        .position(|a| a.aid == aid && own(&a.associated_sd))
    {
        // An SD with associated applications or load files cannot go first.
        if registry.applications.iter().any(|a| a.associated_sd == aid)
            || registry.load_files.iter().any(|f| f.associated_sd == aid)
        {
            return refuse(Sw::CONDITIONS_NOT_SATISFIED);
        }
        let controlling = registry
            .applications
            .get(pos)
            .is_some_and(|a| a.privileges.has(Privileges::MANDATED_DAP_VERIFICATION));
        if controlling {
            // The mandated-DAP domain (controlling authority) constrains every load; deleting
            // it would lift that constraint, so it stays.
            return refuse(Sw::CONDITIONS_NOT_SATISFIED);
        }
        registry.applications.remove(pos);
    } else {
        let Some(pos) = registry
            .load_files
            .iter()
            .position(|f| f.aid == aid && own(&f.associated_sd))
        else {
            return refuse(Sw::REFERENCED_DATA_NOT_FOUND);
        };
        if crate::state::is_builtin_load_file(&aid) {
            // Load files in immutable memory cannot be deleted.
            return refuse(Sw::CONDITIONS_NOT_SATISFIED);
        }
        let dependants: Vec<&Application> = registry
            .applications
            .iter()
            .filter(|a| a.load_file == aid)
            .collect();
        if !dependants.is_empty() && !related {
            return refuse(Sw::CONDITIONS_NOT_SATISFIED);
        }
        let blocked = dependants.iter().any(|a| {
            !own(&a.associated_sd)
                || registry
                    .applications
                    .iter()
                    .any(|b| b.associated_sd == a.aid)
        });
        if blocked {
            return refuse(Sw::CONDITIONS_NOT_SATISFIED);
        }
        registry.applications.retain(|a| a.load_file != aid);
        registry.load_files.remove(pos);
    }
    if authority == Authority::Delegated {
        let token = token.ok_or(Error::Refused(Sw::SECURITY_STATUS_NOT_SATISFIED))?;
        dm::verify_token(ctx.state, &dm::token_input(cmd.p1, cmd.p2, body), token)?;
        // Delete receipt (GP C.5.5).
        let mut fields = Vec::new();
        dm::push_aid(&mut fields, &aid);
        let mut b6 = Vec::new();
        if let Some(crt) = crt {
            gp_core::tlv::write_tlv(&mut b6, 0xB6, crt);
        }
        return ok(dm::confirmation(
            ctx.state,
            dm::token_identifier(&b6).as_deref(),
            &fields,
        )?);
    }
    if token.is_some() {
        return refuse(Sw::INCORRECT_DATA);
    }
    ok(alloc::vec![0x00])
}

/// DELETE [key] (GP 2.3.1 §11.2.2.3.2): keys of the selected domain by key identifier (`D0`) and
/// key version number (`D2`): both name one key, `D2` alone a whole key set, `D0` alone that key
/// in every set. Emptied key sets disappear. The domain must keep a complete secure channel key
/// set (ENC, MAC and DEK of its protocol), else `6985`; nothing matching: `6A88`.
fn delete_keys(ctx: &mut Ctx<'_>, key_id: Option<u8>, kvn: Option<u8>) -> Result<ResponseApdu> {
    let sd = ctx.sd;
    let domain = ctx
        .state
        .domain_mut(&sd)
        .ok_or(Error::Refused(Sw::CONDITIONS_NOT_SATISFIED))?;
    let mut deleted = 0usize;
    for set in domain.sets.iter_mut() {
        if kvn.is_some_and(|v| v != set.kvn) {
            continue;
        }
        let before = set.keys.len();
        set.keys.retain(|k| key_id.is_some_and(|id| id != k.id));
        deleted = deleted.saturating_add(before.saturating_sub(set.keys.len()));
    }
    if deleted == 0 {
        return refuse(Sw::REFERENCED_DATA_NOT_FOUND);
    }
    domain.sets.retain(|s| !s.keys.is_empty());
    let key_type = domain.scp.key_type();
    let usable = domain
        .sets
        .iter()
        .filter(|s| !crate::keys::APP_KVNS.contains(&s.kvn))
        .any(|s| (1..=3u8).all(|id| s.key(id).is_some_and(|k| k.key_type == key_type)));
    if !usable {
        // The domain would lock itself out of every secure channel.
        return refuse(Sw::CONDITIONS_NOT_SATISFIED);
    }
    ok(alloc::vec![0x00])
}
