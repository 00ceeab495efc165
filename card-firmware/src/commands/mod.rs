//! The command handlers: one GlobalPlatform command per module.
//!
//! The pipeline ([`crate::card`]) unwraps secure messaging and calls [`handle`] with a
//! [`Ctx`] over the *next* card state (a copy); it commits that copy once when the handler
//! succeeds and discards it when the handler refuses, so a refused command changes nothing.
//! Handlers depend on the command context ([`crate::session`]) and the domain state below it,
//! never on the pipeline or on each other: where one GP command hands over to the next (INSTALL
//! [for load] opens the session LOAD continues), they share it through the context, and the load
//! rules both apply live in [`crate::dm`].

use gp_core::apdu::{CommandApdu, ResponseApdu};

use crate::error::{refuse, Result};
use crate::lifecycle::CardLifeCycle;
use crate::session::{is_gp_class, Ctx};
use crate::Sw;

pub(crate) mod delete;
pub(crate) mod external_authenticate;
pub(crate) mod get_data;
pub(crate) mod get_status;
pub(crate) mod initialize_update;
pub(crate) mod install;
pub(crate) mod load;
pub(crate) mod put_key;
pub(crate) mod select;
pub(crate) mod set_status;
pub(crate) mod store_data;

/// Route a command (secure messaging already removed) to its handler.
pub(crate) fn handle(ctx: &mut Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu> {
    let lc = ctx.state.life_cycle;
    let is_get_data = matches!(cmd.ins, 0xCA | 0xCB);
    if lc == CardLifeCycle::Terminated && !is_get_data {
        // GP 2.3.1 §5.1.1.5: a terminated card's ISD processes GET DATA only.
        return refuse(Sw::CONDITIONS_NOT_SATISFIED);
    }
    if is_get_data {
        return get_data::get_data(ctx, cmd);
    }
    if !is_gp_class(cmd.cla) {
        return refuse(Sw::CLA_NOT_SUPPORTED);
    }
    match cmd.ins {
        0xF2 => get_status::get_status(ctx, cmd),
        0xF0 => set_status::set_status(ctx, cmd),
        0xD8 => put_key::put_key(ctx, cmd),
        0xE6 => {
            // Any SD personalises its own applications; extradition and registry updates are
            // the ISD's; loading and installing are card content management (see `dm`).
            if matches!(cmd.p1 & 0x7F, 0x10 | 0x40) {
                ctx.require_isd()?;
            }
            install::install(ctx, cmd)
        }
        0xE2 => store_data::store_data(ctx, cmd),
        // Only the domain that accepted INSTALL [for load] has a load session.
        0xE8 => load::load(ctx, cmd),
        // Keys: the selected domain's own; content: card content management (see `dm`).
        0xE4 => delete::delete(ctx, cmd),
        _ => refuse(Sw::INS_NOT_SUPPORTED),
    }
}
