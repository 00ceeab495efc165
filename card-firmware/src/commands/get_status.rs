//! GET STATUS (GP 2.3.1 §11.4): the registry as the issuer audits it.
//!
//! P1 `80` ISD, `40` applications and security domains, `20` load files, `10` load files with
//! their modules; P2 b2 selects the TLV format (`E3` templates) or the legacy one; the search
//! criterion `4F` matches AIDs by prefix (`4F 00` matches all). Responses are cut between entries
//! at [`MAX_RESPONSE`] bytes with `6310`; GET STATUS [next] (P2 b1) continues from a cursor kept
//! in RAM for the application session.

use alloc::vec::Vec;

use gp_core::apdu::{CommandApdu, ResponseApdu};
use gp_core::tlv::{write_tlv, TlvReader};

use crate::aid::{Aid, ISD_AID};
use crate::error::{refuse, Error, Result};
use crate::privileges::Privileges;
use crate::session::{Ctx, StatusCursor};
use crate::state::CardState;
use crate::Sw;

/// Largest data field of one GET STATUS response, leaving room for R-MAC and R-ENC padding
/// inside a short response.
pub const MAX_RESPONSE: usize = 0xE0;

fn bad() -> Error {
    Error::Refused(Sw::INCORRECT_DATA)
}

/// One registry entry in the shape GET STATUS reports.
struct Entry {
    aid: Aid,
    life_cycle: u8,
    privileges: Option<Privileges>,
    elf: Option<Aid>,
    version: Option<[u8; 2]>,
    modules: Option<Vec<Aid>>,
    associated_sd: Option<Aid>,
}

fn entries(state: &CardState, p1: u8) -> Vec<Entry> {
    let reg = &state.registry;
    match p1 {
        0x80 => alloc::vec![Entry {
            aid: ISD_AID,
            life_cycle: state.life_cycle.code(),
            privileges: Some(Privileges::ISD),
            elf: None,
            version: None,
            modules: None,
            associated_sd: None,
        }],
        0x40 => reg
            .applications
            .iter()
            .map(|a| Entry {
                aid: a.aid,
                life_cycle: a.life_cycle.code(),
                privileges: Some(a.privileges),
                elf: Some(a.load_file),
                version: None,
                modules: None,
                associated_sd: Some(a.associated_sd),
            })
            .collect(),
        _ => reg
            .load_files
            .iter()
            .map(|f| Entry {
                aid: f.aid,
                life_cycle: 0x01,
                privileges: None,
                elf: None,
                version: f.version,
                modules: (p1 == 0x10).then(|| f.modules.clone()),
                associated_sd: Some(f.associated_sd),
            })
            .collect(),
    }
}

fn encode_tlv(e: &Entry) -> Vec<u8> {
    let mut inner = Vec::new();
    write_tlv(&mut inner, 0x4F, e.aid.as_bytes());
    write_tlv(&mut inner, 0x9F70, &[e.life_cycle]);
    if let Some(p) = e.privileges {
        write_tlv(&mut inner, 0xC5, &p.0);
    }
    if let Some(elf) = e.elf {
        write_tlv(&mut inner, 0xC4, elf.as_bytes());
    }
    if let Some(v) = e.version {
        write_tlv(&mut inner, 0xCE, &v);
    }
    if let Some(mods) = &e.modules {
        for m in mods {
            write_tlv(&mut inner, 0x84, m.as_bytes());
        }
    }
    if let Some(sd) = e.associated_sd {
        write_tlv(&mut inner, 0xCC, sd.as_bytes());
    }
    let mut out = Vec::new();
    write_tlv(&mut out, 0xE3, &inner);
    out
}

fn encode_legacy(e: &Entry) -> Vec<u8> {
    let mut out = Vec::new();
    let aid = e.aid.as_bytes();
    out.push(u8::try_from(aid.len()).unwrap_or(0));
    out.extend_from_slice(aid);
    out.push(e.life_cycle);
    out.push(e.privileges.map(|p| p.0[0]).unwrap_or(0));
    if let Some(mods) = &e.modules {
        out.push(u8::try_from(mods.len()).unwrap_or(0));
        for m in mods {
            out.push(u8::try_from(m.as_bytes().len()).unwrap_or(0));
            out.extend_from_slice(m.as_bytes());
        }
    }
    out
}

/// GET STATUS.
pub(crate) fn get_status(ctx: &mut Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu> {
    ctx.require_auth()?;
    let next = cmd.p2 & 0x01 != 0;
    let format = cmd.p2 & 0x02;
    if cmd.p2 & !0x03 != 0 || !matches!(cmd.p1, 0x80 | 0x40 | 0x20 | 0x10) {
        return refuse(Sw::INCORRECT_P1P2);
    }
    let mut prefix: Option<Vec<u8>> = None;
    for t in TlvReader::new(&cmd.data) {
        let t = t.map_err(|_| bad())?;
        if t.tag == 0x4F && prefix.is_none() {
            prefix = Some(t.value.to_vec());
        }
        // Other search criteria and tag lists are ignored, as GP allows.
    }
    let prefix = prefix.ok_or_else(bad)?;
    if prefix.len() > 16 {
        return refuse(Sw::INCORRECT_DATA);
    }
    let start = if next {
        if cmd.p1 == 0x80 {
            return refuse(Sw::INCORRECT_P1P2);
        }
        match &ctx.ram.status {
            Some(c) if c.p1 == cmd.p1 && c.p2_format == format && c.prefix == prefix => c.next,
            _ => return refuse(Sw::CONDITIONS_NOT_SATISFIED),
        }
    } else {
        0
    };
    ctx.ram.status = None;
    // The ISD has Global Registry and sees everything; another SD only what is associated with
    // it, and not the ISD.
    let global = ctx
        .state
        .privileges(&ctx.sd)
        .is_some_and(|p| p.has(Privileges::GLOBAL_REGISTRY));
    if cmd.p1 == 0x80 && !global {
        return refuse(Sw::INCORRECT_P1P2);
    }
    let sd = ctx.sd;
    let matching: Vec<Entry> = entries(ctx.state, cmd.p1)
        .into_iter()
        .filter(|e| cmd.p1 == 0x80 || e.aid.starts_with(&prefix))
        .filter(|e| global || e.associated_sd == Some(sd))
        .collect();
    if matching.is_empty() {
        return refuse(Sw::REFERENCED_DATA_NOT_FOUND);
    }
    let mut out = Vec::new();
    let mut index = start;
    for e in matching.iter().skip(start) {
        let enc = if format == 0x02 {
            encode_tlv(e)
        } else {
            encode_legacy(e)
        };
        if !out.is_empty() && out.len().saturating_add(enc.len()) > MAX_RESPONSE {
            break;
        }
        out.extend_from_slice(&enc);
        index = index.saturating_add(1);
    }
    if index < matching.len() {
        ctx.ram.status = Some(StatusCursor {
            p1: cmd.p1,
            p2_format: format,
            prefix,
            next: index,
        });
        return Ok(ResponseApdu::new(out, Sw::WARNING_MORE_DATA));
    }
    Ok(ResponseApdu::new(out, Sw::NO_ERROR))
}
