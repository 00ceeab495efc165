//! SELECT [by name] (GP 2.3.1 §11.9), handled by the OPEN: which application or security domain
//! receives the following commands.

use alloc::vec::Vec;

use gp_core::apdu::{CommandApdu, ResponseApdu};

use crate::aid::{Aid, ISD_AID};
use crate::session::Transient;
use crate::state::CardState;
use crate::Sw;

/// SELECT [by name] (GP 2.3.1 §11.9), handled by the OPEN.
pub(crate) fn select(state: &CardState, ram: &mut Transient, cmd: &CommandApdu) -> ResponseApdu {
    if cmd.p1 != 0x04 || cmd.p2 & !0x02 != 0 {
        return ResponseApdu::status(Sw::INCORRECT_P1P2);
    }
    if cmd.p2 & 0x02 != 0 {
        // "Next occurrence" is not supported: every AID on the card is unique.
        return ResponseApdu::status(Sw::FUNCTION_NOT_SUPPORTED);
    }
    let lc = state.life_cycle;
    if lc == crate::lifecycle::CardLifeCycle::Terminated {
        return ResponseApdu::status(Sw::CONDITIONS_NOT_SATISFIED);
    }
    let wanted = cmd.data.as_slice();
    let isd = wanted.is_empty() || ISD_AID.starts_with(wanted);
    if isd {
        // A new application session on the ISD: everything in RAM starts again.
        *ram = Transient::default();
        return ResponseApdu::new(fci(&ISD_AID), Sw::NO_ERROR);
    }
    let registered = state
        .registry
        .applications
        .iter()
        .find(|a| a.aid.starts_with(wanted));
    let Some(app) = registered else {
        return ResponseApdu::status(Sw::FILE_NOT_FOUND);
    };
    // A locked card selects only the final application (the ISD); a locked or merely
    // INSTALLED application is not selectable.
    if lc == crate::lifecycle::CardLifeCycle::CardLocked || !app.life_cycle.is_selectable() {
        return ResponseApdu::status(Sw::FILE_NOT_FOUND);
    }
    if app.domain.is_some() {
        let aid = app.aid;
        *ram = Transient::default();
        ram.selected = aid;
        return ResponseApdu::new(fci(&aid), Sw::NO_ERROR);
    }
    if crate::applets::applet_for(&app.module).is_some() {
        let aid = app.aid;
        *ram = Transient::default();
        ram.selected = aid;
        return ResponseApdu::new(fci(&aid), Sw::NO_ERROR);
    }
    // The card does not execute loaded code: the selection fails and the current selection
    // stays (ISO 7816-4), as a Java Card answers when an applet refuses selection.
    ResponseApdu::status(Sw(0x6999))
}

/// A security domain's FCI: `6F { 84 AID, A5 { 9F65 maximum command data length } }`.
fn fci(aid: &Aid) -> Vec<u8> {
    use gp_core::tlv::write_tlv;
    let mut a5 = Vec::new();
    // 9F65: maximum length of data field in a command message.
    write_tlv(&mut a5, 0x9F65, &[0xFF]);
    let mut inner = Vec::new();
    write_tlv(&mut inner, 0x84, aid.as_bytes());
    write_tlv(&mut inner, 0xA5, &a5);
    let mut out = Vec::new();
    write_tlv(&mut out, 0x6F, &inner);
    out
}
