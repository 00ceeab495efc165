//! SET STATUS (GP 2.3.1 §11.10): card, application and security domain life cycles.

use alloc::vec::Vec;

use gp_core::apdu::{CommandApdu, ResponseApdu};

use crate::aid::{Aid, ISD_AID};
use crate::error::{refuse, Error, Result};
use crate::lifecycle::{AppLifeCycle, CardLifeCycle};
use crate::privileges::Privileges;
use crate::session::{ok, Ctx};
use crate::Sw;

/// SET STATUS (GP 2.3.1 §11.10): the card life cycle (P1 `80`, by the ISD or an SD with the
/// Card Lock / Card Terminate privilege), an application's or SD's lock and unlock (P1 `40`), a
/// whole SD hierarchy's (P1 `60`), and an SD moving itself to PERSONALIZED.
pub(crate) fn set_status(ctx: &mut Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu> {
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
