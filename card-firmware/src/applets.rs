//! The applications built into the card (it has no VM for loaded code): which module the card
//! executes, and with which [`Applet`](crate::app::Applet).

use crate::aid::Aid;
use crate::purse::PurseApplet;

/// The built-in applet implementing `module`, if the card executes it.
pub(crate) fn applet_for(module: &Aid) -> Option<PurseApplet> {
    (module.as_bytes() == crate::state::PURSE_MODULE_AID).then_some(PurseApplet)
}
