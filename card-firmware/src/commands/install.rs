//! INSTALL (GP 2.3.1 §11.5): every variant.
//!
//! [for load] opens the load session LOAD continues ([`crate::commands::load`]);
//! [for install] creates an application from a module of a registered load file (INSTALLED, or
//! SELECTABLE with [for make selectable] combined); [for make selectable] moves an INSTALLED
//! application on; [for personalization], [for extradition] and [for registry update] act on an
//! application's association and privileges.

use alloc::vec::Vec;

use gp_core::apdu::{CommandApdu, ResponseApdu};
use gp_core::tlv::TlvReader;

use crate::aid::{Aid, ISD_AID};
use crate::dm::{self, Authority};
use crate::error::{refuse, Error, Result};
use crate::keys::{DomainKeys, Key, KeySet, ScpConfig};
use crate::lifecycle::AppLifeCycle;
use crate::privileges::Privileges;
use crate::registry::Application;
use crate::session::{ok, Ctx, LoadSession};
use crate::state::{SD_MODULE_AID, SD_PACKAGE_AID};
use crate::Sw;

fn bad() -> Error {
    Error::Refused(Sw::INCORRECT_DATA)
}

/// INSTALL: route on P1 (and P2 for the combined process).
pub(crate) fn install(ctx: &mut Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu> {
    ctx.require_auth()?;
    ctx.require_content_change()?;
    if cmd.p1 & 0x80 != 0 {
        // Segmented INSTALL data is not supported.
        return refuse(Sw::INCORRECT_P1P2);
    }
    match (cmd.p1, cmd.p2) {
        (0x02, 0x00) => install_for_load(ctx, cmd, false),
        // INSTALL [for load, install and make selectable]: first and final command.
        (0x0E, 0x01) => install_for_load(ctx, cmd, true),
        (0x0E, 0x03) => {
            let combined = ctx.ram.load.take();
            install_for_install(ctx, cmd, true, combined)
        }
        (0x04 | 0x0C, 0x00) => {
            ctx.ram.load = None;
            install_for_install(ctx, cmd, cmd.p1 == 0x0C, None)
        }
        (0x08, 0x00) => {
            ctx.ram.load = None;
            make_selectable(ctx, cmd)
        }
        (0x20, 0x00) => {
            ctx.ram.load = None;
            install_for_personalization(ctx, cmd)
        }
        (0x10, 0x00) => {
            ctx.ram.load = None;
            extradite(ctx, cmd)
        }
        (0x40, 0x00) => {
            ctx.ram.load = None;
            registry_update(ctx, cmd)
        }
        _ => refuse(Sw::INCORRECT_P1P2),
    }
}

/// Reads the LV fields of INSTALL data.
pub(crate) struct Lv<'a>(pub &'a [u8]);

impl<'a> Lv<'a> {
    /// A field with a one-byte length.
    pub fn short(&mut self) -> Result<&'a [u8]> {
        let (&n, rest) = self.0.split_first().ok_or_else(bad)?;
        let (v, rest) = rest.split_at_checked(usize::from(n)).ok_or_else(bad)?;
        self.0 = rest;
        Ok(v)
    }
    /// A field with a BER length (`81 xx`, `82 xx xx`; GP also allows 128 as a lone `80`).
    pub fn ber(&mut self) -> Result<&'a [u8]> {
        let (n, rest) = match self.0.split_first() {
            Some((0x80, rest)) => (0x80, rest),
            _ => gp_core::tlv::read_len(self.0).map_err(|_| bad())?,
        };
        let (v, rest) = rest.split_at_checked(n).ok_or_else(bad)?;
        self.0 = rest;
        Ok(v)
    }
    /// All bytes consumed.
    pub fn end(self) -> Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            refuse(Sw::INCORRECT_DATA)
        }
    }
}

/// INSTALL [for load] (P1 `02`), or the first INSTALL [for load, install and make selectable]
/// (P1 `0E`, P2 `01`) when `combined`.
pub(crate) fn install_for_load(
    ctx: &mut Ctx<'_>,
    cmd: &CommandApdu,
    combined: bool,
) -> Result<ResponseApdu> {
    ctx.ram.load = None;
    let authority = dm::authority(ctx.state, &ctx.sd)?;
    let mut lv = Lv(&cmd.data);
    let elf = Aid::new(lv.short()?).ok_or_else(bad)?;
    let sd = lv.short()?;
    let hash = lv.short()?;
    let params = lv.ber()?;
    // What a token signs: everything before the token's length field.
    let body = cmd
        .data
        .get(..cmd.data.len().saturating_sub(lv.0.len()))
        .unwrap_or_default();
    let token = lv.ber()?;
    lv.end()?;
    // The new load file belongs to the loading domain unless the ISD names another.
    let sd_aid = if sd.is_empty() {
        ctx.sd
    } else {
        Aid::new(sd).ok_or_else(bad)?
    };
    if !authority.is_issuer() && sd_aid != ctx.sd {
        // An SSD loads for itself only.
        return refuse(Sw::CONDITIONS_NOT_SATISFIED);
    }
    dm::load_target_accepts(ctx.state, &sd_aid)?;
    if !matches!(hash.len(), 0 | 20 | 32 | 48 | 64) {
        return refuse(Sw::INCORRECT_DATA);
    }
    // GP C.2: DAP blocks, ciphered load files and delegated loads need the hash.
    let needs_hash = !dm::dap_authorities(ctx.state, &sd_aid).is_empty()
        || dm::ciphered_required(ctx.state, &sd_aid)
        || authority == Authority::Delegated;
    if needs_hash && hash.is_empty() {
        return refuse(Sw::INCORRECT_DATA);
    }
    if !params.is_empty() {
        // Load parameters must at least be well-formed TLV.
        for t in TlvReader::new(params) {
            t.map_err(|_| bad())?;
        }
    }
    if ctx.state.registry.aid_in_use(&elf) || elf == ISD_AID {
        return refuse(Sw::CONDITIONS_NOT_SATISFIED);
    }
    crate::quotas::room_for_load_file(ctx.state, &sd_aid)?;
    let input = dm::token_input(cmd.p1, cmd.p2, body);
    if authority == Authority::Delegated && !combined {
        // GP 11.5.2.3.1: the load token is mandatory for delegated management (the combined
        // process carries its token in the final INSTALL).
        dm::verify_token(ctx.state, &input, token)?;
    } else if !token.is_empty() {
        return refuse(Sw::INCORRECT_DATA);
    }
    ctx.ram.load = Some(LoadSession {
        load_file_aid: elf,
        sd_aid,
        lfdb_hash: hash.to_vec(),
        next_block: 0,
        data: Vec::new(),
        authority,
        token_id: dm::token_identifier(params),
        combined: combined.then_some(input),
        completed: None,
    });
    ok(alloc::vec![0x00])
}

/// The transport key (`40..4F`) a new security domain starts with, as the fab's ISD does; the
/// provider replaces it through the domain's own secure channel.
const TRANSPORT_KEY: [u8; 16] = [
    0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F,
];

/// A new SSD's keys: SCP parameters from tag `81` (SCP id ‖ i) in its `C9` parameters (card
/// convention; default: the ISD's protocol), and one transport key set.
fn new_domain(params: &[u8], isd_scp: ScpConfig) -> Result<DomainKeys> {
    let mut scp = isd_scp;
    for t in TlvReader::new(params) {
        let t = t.map_err(|_| bad())?;
        if t.tag == 0x81 {
            let [id, i] = <[u8; 2]>::try_from(t.value).map_err(|_| bad())?;
            scp = ScpConfig { scp: id, i };
        }
    }
    if !scp.supported() {
        return refuse(Sw::INCORRECT_DATA);
    }
    let mut keys = Vec::new();
    for id in 1..=3u8 {
        keys.push(Key::new(id, scp.key_type(), &TRANSPORT_KEY).ok_or_else(bad)?);
    }
    Ok(DomainKeys {
        scp,
        sets: alloc::vec![KeySet {
            kvn: scp.transport_kvn(),
            keys,
            sequence_counter: 0,
        }],
        failed_auth: 0,
        auth_limit: DomainKeys::DEFAULT_AUTH_LIMIT,
    })
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

/// INSTALL [for install] (P1 `04`), [for install and make selectable] (`0C`), or the final
/// INSTALL [for load, install and make selectable] (`0E`, P2 `03`) with the combined load
/// session, whose checked load file enters the registry together with the application.
fn install_for_install(
    ctx: &mut Ctx<'_>,
    cmd: &CommandApdu,
    selectable: bool,
    combined: Option<LoadSession>,
) -> Result<ResponseApdu> {
    let is_final = cmd.p1 == 0x0E;
    let authority = dm::authority(ctx.state, &ctx.sd)?;
    let mut lv = Lv(&cmd.data);
    let elf_field = lv.short()?;
    let module_field = lv.short()?;
    let app_field = lv.short()?;
    let privileges = Privileges::from_install(lv.short()?).ok_or_else(bad)?;
    let raw_params = lv.ber()?;
    let body = cmd
        .data
        .get(..cmd.data.len().saturating_sub(lv.0.len()))
        .unwrap_or_default();
    let token = lv.ber()?;
    lv.end()?;
    let params = application_params(raw_params)?;
    let mut token_input = Vec::new();
    let mut token_id = dm::token_identifier(raw_params);
    if is_final {
        // The combined process: its load file, checked by the last LOAD.
        let session = combined
            .filter(|s| s.combined.is_some())
            .ok_or(Error::Refused(Sw::CONDITIONS_NOT_SATISFIED))?;
        let first = session.combined.as_deref().unwrap_or_default();
        let load_file = session
            .completed
            .ok_or(Error::Refused(Sw::CONDITIONS_NOT_SATISFIED))?;
        if !elf_field.is_empty() && elf_field != load_file.aid.as_bytes() {
            return refuse(Sw::INCORRECT_DATA);
        }
        // Its domain must still be there, and nothing may have taken its AIDs since the load
        // began.
        dm::load_target_accepts(ctx.state, &load_file.associated_sd)?;
        let registry = &ctx.state.registry;
        if registry.aid_in_use(&load_file.aid)
            || load_file.modules.iter().any(|m| registry.aid_in_use(m))
        {
            return refuse(Sw::CONDITIONS_NOT_SATISFIED);
        }
        token_input.extend_from_slice(first);
        token_id = token_id.or(session.token_id);
        ctx.state.registry.load_files.push(load_file);
    }
    let registry = &ctx.state.registry;
    let elf = if is_final && elf_field.is_empty() {
        registry.load_files.last().map(|f| f.aid).ok_or_else(bad)?
    } else {
        Aid::new(elf_field).ok_or_else(bad)?
    };
    let load_file = registry
        .load_file(&elf)
        .ok_or(Error::Refused(Sw::REFERENCED_DATA_NOT_FOUND))?;
    let module = match (module_field, load_file.modules.as_slice()) {
        // The module may be left out of the combined command when there is only one.
        ([], [only]) if is_final => *only,
        _ => Aid::new(module_field).ok_or_else(bad)?,
    };
    let aid = if app_field.is_empty() {
        module
    } else {
        Aid::new(app_field).ok_or_else(bad)?
    };
    if !load_file.modules.contains(&module) {
        return refuse(Sw::REFERENCED_DATA_NOT_FOUND);
    }
    let is_sd_module = elf.as_bytes() == SD_PACKAGE_AID && module.as_bytes() == SD_MODULE_AID;
    if !authority.is_issuer() {
        if privileges.has(Privileges::SECURITY_DOMAIN) || is_sd_module {
            // Security domains are created by the ISD only.
            return refuse(Sw::INCORRECT_DATA);
        }
        // An SSD installs from its own load files, or from the built-in application packages.
        let own = load_file.associated_sd == ctx.sd || crate::state::is_builtin_load_file(&elf);
        if !own {
            return refuse(Sw::REFERENCED_DATA_NOT_FOUND);
        }
    }
    let domain = if privileges.has(Privileges::SECURITY_DOMAIN) {
        if !is_sd_module
            || !privileges.within(Privileges::SSD_GRANTABLE)
            || privileges.has(Privileges::AUTHORIZED_MANAGEMENT)
                && privileges.has(Privileges::DELEGATED_MANAGEMENT)
        {
            // GP 6.6.1: Authorized and Delegated Management are mutually exclusive.
            return refuse(Sw::INCORRECT_DATA);
        }
        let mandated = |p: Privileges| p.has(Privileges::MANDATED_DAP_VERIFICATION);
        if mandated(privileges) && registry.applications.iter().any(|a| mandated(a.privileges)) {
            // One mandated-DAP authority per card.
            return refuse(Sw::CONDITIONS_NOT_SATISFIED);
        }
        Some(new_domain(&params, ctx.state.isd.scp)?)
    } else {
        if is_sd_module || !privileges.within(Privileges::APP_GRANTABLE) {
            return refuse(Sw::INCORRECT_DATA);
        }
        None
    };
    if authority == Authority::Authorized {
        // The card's privilege policy (docs/card-firmware.md): card-wide privileges come from
        // the issuer only (the ISD, or an issuer token under Delegated Management), and a
        // domain never grants what it does not hold itself.
        let own = ctx.state.privileges(&ctx.sd).unwrap_or_default();
        if privileges.intersects(Privileges::CARD_WIDE) || !privileges.within(own) {
            return refuse(Sw::SECURITY_STATUS_NOT_SATISFIED);
        }
    }
    // GP 9.3.6: the instance AID is neither an application nor a load file (a module's AID it
    // may be: that is the default instance AID).
    if aid == ISD_AID || registry.application(&aid).is_some() || registry.load_file(&aid).is_some()
    {
        return refuse(Sw::CONDITIONS_NOT_SATISFIED);
    }
    // The ISD installs for the load file's domain; an SSD for itself.
    let associated_sd = if authority.is_issuer() {
        load_file.associated_sd
    } else {
        ctx.sd
    };
    token_input.extend_from_slice(&dm::token_input(cmd.p1, cmd.p2, body));
    if authority == Authority::Delegated {
        dm::verify_token(ctx.state, &token_input, token)?;
    } else if !token.is_empty() {
        return refuse(Sw::INCORRECT_DATA);
    }
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
        domain,
        app_data: Vec::new(),
        keys: Vec::new(),
    });
    // Registry quotas (applications, entries per SSD, install parameters): 6A84.
    crate::quotas::check_registry(ctx.state)?;
    if authority == Authority::Delegated {
        // Install receipt (GP C.5.2), or the combined one (C.5.6) naming the load file's SD.
        let mut fields = Vec::new();
        dm::push_aid(&mut fields, &elf);
        dm::push_aid(&mut fields, &aid);
        if is_final {
            dm::push_aid(&mut fields, &associated_sd);
        }
        return ok(dm::confirmation(ctx.state, token_id.as_deref(), &fields)?);
    }
    ok(alloc::vec![0x00])
}

/// INSTALL [for registry update] (GP 2.3.1 §11.5.2.3.6): change an application's privileges
/// (within what this card grants; never the Security Domain privilege itself) and, when an SD AID
/// is given, its associated SD as extradition does.
fn registry_update(ctx: &mut Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu> {
    let mut lv = Lv(&cmd.data);
    let sd = lv.short()?;
    let empty = lv.short()?;
    let aid = Aid::new(lv.short()?).ok_or_else(bad)?;
    let privileges = lv.short()?;
    let _params = lv.ber()?;
    let token = lv.short()?;
    lv.end()?;
    if !empty.is_empty() || !token.is_empty() {
        return refuse(Sw::INCORRECT_DATA);
    }
    let new_sd = if sd.is_empty() {
        None
    } else {
        let sd = Aid::new(sd).ok_or_else(bad)?;
        let is_sd = sd == ISD_AID
            || ctx
                .state
                .registry
                .application(&sd)
                .is_some_and(|a| a.domain.is_some() && !a.life_cycle.is_locked());
        if !is_sd {
            return refuse(Sw::REFERENCED_DATA_NOT_FOUND);
        }
        Some(sd)
    };
    let mandated_elsewhere = ctx
        .state
        .registry
        .applications
        .iter()
        .any(|a| a.aid != aid && a.privileges.has(Privileges::MANDATED_DAP_VERIFICATION));
    let app = ctx
        .state
        .registry
        .application_mut(&aid)
        .ok_or(Error::Refused(Sw::REFERENCED_DATA_NOT_FOUND))?;
    let is_sd = app.domain.is_some();
    if !privileges.is_empty() {
        let p = Privileges::from_install(privileges).ok_or_else(bad)?;
        let allowed = if is_sd {
            Privileges::SSD_GRANTABLE
        } else {
            Privileges::APP_GRANTABLE
        };
        if p.has(Privileges::SECURITY_DOMAIN) != is_sd || !p.within(allowed) {
            return refuse(Sw::INCORRECT_DATA);
        }
        if p.has(Privileges::MANDATED_DAP_VERIFICATION) && mandated_elsewhere {
            return refuse(Sw::CONDITIONS_NOT_SATISFIED);
        }
        let mandated = Privileges::MANDATED_DAP_VERIFICATION;
        if app.privileges.has(mandated) && !p.has(mandated) {
            // The mandated-DAP domain is the controlling authority: it constrains what the
            // issuer loads, so the issuer cannot take its privilege away.
            return refuse(Sw::CONDITIONS_NOT_SATISFIED);
        }
        app.privileges = p;
    }
    if let Some(sd) = new_sd {
        if is_sd && sd != ISD_AID {
            return refuse(Sw::CONDITIONS_NOT_SATISFIED);
        }
        if app.associated_sd != sd {
            // The keys its old domain gave it stay behind (see extradition).
            app.keys.clear();
        }
        app.associated_sd = sd;
    }
    crate::quotas::check_registry(ctx.state)?;
    ok(alloc::vec![0x00])
}

/// INSTALL [for extradition] (GP 2.3.1 §11.5.2.3.3): associate an application with another
/// security domain, which then personalises it and lends it its services.
fn extradite(ctx: &mut Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu> {
    let mut lv = Lv(&cmd.data);
    let sd = Aid::new(lv.short()?).ok_or_else(bad)?;
    let empty1 = lv.short()?;
    let aid = Aid::new(lv.short()?).ok_or_else(bad)?;
    let empty2 = lv.short()?;
    let _params = lv.ber()?;
    let token = lv.short()?;
    lv.end()?;
    if !empty1.is_empty() || !empty2.is_empty() || !token.is_empty() {
        return refuse(Sw::INCORRECT_DATA);
    }
    if sd != ISD_AID {
        let target = ctx
            .state
            .registry
            .application(&sd)
            .filter(|a| a.domain.is_some())
            .ok_or(Error::Refused(Sw::REFERENCED_DATA_NOT_FOUND))?;
        if target.life_cycle.is_locked() {
            return refuse(Sw::CONDITIONS_NOT_SATISFIED);
        }
    }
    let app = ctx
        .state
        .registry
        .application_mut(&aid)
        .ok_or(Error::Refused(Sw::REFERENCED_DATA_NOT_FOUND))?;
    if app.domain.is_some() && sd != ISD_AID {
        // Security domains hang off the ISD only: no hierarchy, no cycles.
        return refuse(Sw::CONDITIONS_NOT_SATISFIED);
    }
    if app.associated_sd != sd {
        // What the old domain gave the application stays with it: a key handle must never start
        // naming a key of the new domain, which did not give it (nor may the new domain's key be
        // used under an old domain's binding).
        app.keys.clear();
    }
    app.associated_sd = sd;
    crate::quotas::check_registry(ctx.state)?;
    ok(alloc::vec![0x00])
}

/// INSTALL [for personalization] (GP 2.3.1 §11.5.2.3.4): the selected SD will forward the
/// following STORE DATA commands to one of its associated applications, which must be one the
/// card executes.
fn install_for_personalization(ctx: &mut Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu> {
    let mut lv = Lv(&cmd.data);
    let empty1 = lv.short()?;
    let empty2 = lv.short()?;
    let aid = Aid::new(lv.short()?).ok_or_else(bad)?;
    let empty3 = lv.short()?;
    let empty4 = lv.ber()?;
    let empty5 = lv.short()?;
    lv.end()?;
    if [empty1, empty2, empty3, empty4, empty5]
        .iter()
        .any(|f| !f.is_empty())
    {
        return refuse(Sw::INCORRECT_DATA);
    }
    let app = ctx
        .state
        .registry
        .application(&aid)
        .ok_or(Error::Refused(Sw::REFERENCED_DATA_NOT_FOUND))?;
    if app.associated_sd != ctx.sd {
        return refuse(Sw::REFERENCED_DATA_NOT_FOUND);
    }
    if crate::applets::applet_for(&app.module).is_none() || app.life_cycle.is_locked() {
        return refuse(Sw::CONDITIONS_NOT_SATISFIED);
    }
    ctx.ram.perso = Some(crate::session::Perso {
        app: aid,
        next_block: 0,
    });
    ok(alloc::vec![0x00])
}

fn make_selectable(ctx: &mut Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu> {
    let authority = dm::authority(ctx.state, &ctx.sd)?;
    let mut lv = Lv(&cmd.data);
    let empty1 = lv.short()?;
    let empty2 = lv.short()?;
    let aid = Aid::new(lv.short()?).ok_or_else(bad)?;
    let _privileges = lv.short()?;
    let params = lv.ber()?;
    let body = cmd
        .data
        .get(..cmd.data.len().saturating_sub(lv.0.len()))
        .unwrap_or_default();
    let token = lv.ber()?;
    lv.end()?;
    if !empty1.is_empty() || !empty2.is_empty() {
        return refuse(Sw::INCORRECT_DATA);
    }
    let sd = ctx.sd;
    let app = ctx
        .state
        .registry
        .application_mut(&aid)
        .filter(|a| authority.is_issuer() || a.associated_sd == sd)
        .ok_or(Error::Refused(Sw::REFERENCED_DATA_NOT_FOUND))?;
    app.life_cycle = app.life_cycle.make_selectable()?;
    let elf = app.load_file;
    if authority == Authority::Delegated {
        dm::verify_token(ctx.state, &dm::token_input(cmd.p1, cmd.p2, body), token)?;
        // Make selectable receipt (GP C.5.2).
        let mut fields = Vec::new();
        dm::push_aid(&mut fields, &elf);
        dm::push_aid(&mut fields, &aid);
        return ok(dm::confirmation(
            ctx.state,
            dm::token_identifier(params).as_deref(),
            &fields,
        )?);
    }
    if !token.is_empty() {
        return refuse(Sw::INCORRECT_DATA);
    }
    ok(alloc::vec![0x00])
}
