//! STORE DATA (GP 2.3.1 §11.11): personalisation data for an application through its security
//! domain, or the ISD's own IIN and CIN.

use alloc::vec::Vec;

use gp_core::apdu::{CommandApdu, ResponseApdu};

use crate::error::{refuse, Error, Result};
use crate::lifecycle::AppLifeCycle;
use crate::session::{ok, Ctx, Perso};
use crate::Sw;

/// STORE DATA (GP 2.3.1 §11.11): blocks numbered from `00` in P2, P1 b8 on the last. After
/// INSTALL [for personalization] they go to the application, which uses its SD's services to
/// decrypt them; otherwise the ISD stores its own IIN (`42`) and CIN (`45`) from BER-TLV.
pub(crate) fn store_data(ctx: &mut Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu> {
    ctx.require_auth()?;
    ctx.require_content_change()?;
    let last = cmd.p1 & 0x80 != 0;
    match ctx.ram.perso.take() {
        Some(perso) => {
            if u16::from(cmd.p2) != perso.next_block {
                return refuse(Sw::INCORRECT_P1P2);
            }
            let dek = ctx.session_dek().ok();
            let app = ctx
                .state
                .registry
                .application(&perso.app)
                .ok_or(Error::Refused(Sw::REFERENCED_DATA_NOT_FOUND))?;
            let applet = crate::applets::applet_for(&app.module)
                .ok_or(Error::Refused(Sw::CONDITIONS_NOT_SATISFIED))?;
            let mut data = app.app_data.clone();
            let mut life_cycle = app.life_cycle.code();
            {
                let mut services = crate::app::Services {
                    personalising: true,
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
                ctx.ram.perso = Some(Perso {
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
