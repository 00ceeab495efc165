//! INSTALL (GP 2.3.1 §11.5) other than [for load], and DELETE (§11.2).
//!
//! [for install] creates an application from a module of a registered load file (INSTALLED, or
//! SELECTABLE with [for make selectable] combined); [for make selectable] moves an INSTALLED
//! application on. DELETE removes an application, or a load file (with its applications when P2
//! b8 asks for related objects).

use alloc::vec::Vec;

use gp_core::apdu::{CommandApdu, ResponseApdu};
use gp_core::tlv::TlvReader;

use crate::aid::{Aid, ISD_AID};
use crate::error::{refuse, Error, Result};
use crate::isd::{ok, Ctx};
use crate::lifecycle::AppLifeCycle;
use crate::load::{install_for_load, Lv};
use crate::privileges::Privileges;
use crate::registry::Application;
use crate::Sw;

/// Most applications the registry holds.
const MAX_APPLICATIONS: usize = 32;

fn bad() -> Error {
    Error::Refused(Sw::INCORRECT_DATA)
}

/// INSTALL: route on P1.
pub(crate) fn install(ctx: &mut Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu> {
    ctx.require_auth()?;
    ctx.require_content_change()?;
    if cmd.p1 & 0x80 != 0 {
        // Segmented INSTALL data is not supported.
        return refuse(Sw::INCORRECT_P1P2);
    }
    if !matches!(cmd.p2, 0x00) {
        return refuse(Sw::INCORRECT_P1P2);
    }
    match cmd.p1 {
        0x02 => install_for_load(ctx, cmd),
        0x04 | 0x0C => {
            ctx.ram.load = None;
            install_for_install(ctx, cmd, cmd.p1 == 0x0C)
        }
        0x08 => {
            ctx.ram.load = None;
            make_selectable(ctx, cmd)
        }
        _ => refuse(Sw::INCORRECT_P1P2),
    }
}

/// The install parameters field carries application parameters (`C9`) and may carry system
/// parameters (`EF`) and others; it must be well-formed TLV. GP makes `C9` mandatory, but an
/// empty field is accepted as "no parameters" since tools differ and nothing depends on it.
fn application_params(field: &[u8]) -> Result<Vec<u8>> {
    if field.is_empty() {
        return Ok(Vec::new());
    }
    let mut c9: Option<Vec<u8>> = None;
    for t in TlvReader::new(field) {
        let t = t.map_err(|_| bad())?;
        if t.tag == 0xC9 {
            c9 = Some(t.value.to_vec());
        }
    }
    c9.ok_or_else(bad)
}

fn install_for_install(
    ctx: &mut Ctx<'_>,
    cmd: &CommandApdu,
    selectable: bool,
) -> Result<ResponseApdu> {
    let mut lv = Lv(&cmd.data);
    let elf = Aid::new(lv.short()?).ok_or_else(bad)?;
    let module = Aid::new(lv.short()?).ok_or_else(bad)?;
    let app_field = lv.short()?;
    let privileges = Privileges::from_install(lv.short()?).ok_or_else(bad)?;
    let params = application_params(lv.ber()?)?;
    let token = lv.short()?;
    lv.end()?;
    let aid = if app_field.is_empty() {
        module
    } else {
        Aid::new(app_field).ok_or_else(bad)?
    };
    if !token.is_empty() {
        return refuse(Sw::INCORRECT_DATA);
    }
    let registry = &ctx.state.registry;
    let load_file = registry
        .load_file(&elf)
        .ok_or(Error::Refused(Sw::REFERENCED_DATA_NOT_FOUND))?;
    if !load_file.modules.contains(&module) {
        return refuse(Sw::REFERENCED_DATA_NOT_FOUND);
    }
    if privileges.has(Privileges::SECURITY_DOMAIN) {
        // Supplementary security domains arrive with issue 3.
        return refuse(Sw::INCORRECT_DATA);
    }
    // Privileges only the card domain may hold on this card.
    if privileges.has(Privileges::FINAL_APPLICATION) || privileges.has(Privileges::GLOBAL_DELETE) {
        return refuse(Sw::INCORRECT_DATA);
    }
    if aid == ISD_AID || registry.application(&aid).is_some() {
        return refuse(Sw::CONDITIONS_NOT_SATISFIED);
    }
    if registry.applications.len() >= MAX_APPLICATIONS {
        return refuse(Sw::NOT_ENOUGH_MEMORY);
    }
    let associated_sd = load_file.associated_sd;
    ctx.state.registry.applications.push(Application {
        aid,
        load_file: elf,
        module,
        life_cycle: if selectable {
            AppLifeCycle::SELECTABLE
        } else {
            AppLifeCycle::INSTALLED
        },
        privileges,
        associated_sd,
        install_params: params,
        domain: None,
    });
    ok(alloc::vec![0x00])
}

fn make_selectable(ctx: &mut Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu> {
    let mut lv = Lv(&cmd.data);
    let empty1 = lv.short()?;
    let empty2 = lv.short()?;
    let aid = Aid::new(lv.short()?).ok_or_else(bad)?;
    let _privileges = lv.short()?;
    let _params = lv.ber()?;
    let token = lv.short()?;
    lv.end()?;
    if !empty1.is_empty() || !empty2.is_empty() || !token.is_empty() {
        return refuse(Sw::INCORRECT_DATA);
    }
    let app = ctx
        .state
        .registry
        .application_mut(&aid)
        .ok_or(Error::Refused(Sw::REFERENCED_DATA_NOT_FOUND))?;
    app.life_cycle = app.life_cycle.make_selectable()?;
    ok(alloc::vec![0x00])
}

/// DELETE [card content] (tag `4F`).
pub(crate) fn delete(ctx: &mut Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu> {
    ctx.require_auth()?;
    ctx.require_content_change()?;
    if cmd.p1 & 0x80 != 0 || cmd.p2 & 0x7F != 0 {
        return refuse(Sw::INCORRECT_P1P2);
    }
    let related = cmd.p2 & 0x80 != 0;
    let mut aid: Option<Aid> = None;
    for t in TlvReader::new(&cmd.data) {
        let t = t.map_err(|_| bad())?;
        match t.tag {
            0x4F if aid.is_none() => aid = Some(Aid::new(t.value).ok_or_else(bad)?),
            // Deleting keys is not offered: the card domain's keys are replaced, not removed.
            0xD0 | 0xD2 => return refuse(Sw::CONDITIONS_NOT_SATISFIED),
            0xB6 | 0x9E => return refuse(Sw::INCORRECT_DATA),
            _ => return refuse(Sw::INCORRECT_DATA),
        }
    }
    let aid = aid.ok_or_else(bad)?;
    let registry = &mut ctx.state.registry;
    if let Some(pos) = registry.applications.iter().position(|a| a.aid == aid) {
        // An SD with associated applications cannot go first.
        if registry.applications.iter().any(|a| a.associated_sd == aid) {
            return refuse(Sw::CONDITIONS_NOT_SATISFIED);
        }
        registry.applications.remove(pos);
        return ok(alloc::vec![0x00]);
    }
    let Some(pos) = registry.load_files.iter().position(|f| f.aid == aid) else {
        return refuse(Sw::REFERENCED_DATA_NOT_FOUND);
    };
    if aid.as_bytes() == crate::state::SD_PACKAGE_AID {
        // Load files in immutable memory cannot be deleted.
        return refuse(Sw::CONDITIONS_NOT_SATISFIED);
    }
    let dependants = registry.applications.iter().any(|a| a.load_file == aid);
    if dependants && !related {
        return refuse(Sw::CONDITIONS_NOT_SATISFIED);
    }
    if related
        && registry.applications.iter().any(|a| {
            a.load_file == aid
                && registry
                    .applications
                    .iter()
                    .any(|b| b.associated_sd == a.aid)
        })
    {
        return refuse(Sw::CONDITIONS_NOT_SATISFIED);
    }
    registry.applications.retain(|a| a.load_file != aid);
    registry.load_files.remove(pos);
    ok(alloc::vec![0x00])
}
