//! The card's privilege policy (docs/card-firmware.md): card-wide privileges come from the card
//! issuer only, a domain never grants what it lacks, refused grants answer `6982` and change
//! nothing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

mod common;

use common::*;

const PURSE_PACKAGE: [u8; 6] = [0xF0, 0x50, 0x55, 0x52, 0x53, 0x45];
const PURSE_MODULE: [u8; 7] = [0xF0, 0x50, 0x55, 0x52, 0x53, 0x45, 0x01];
const PURSE: [u8; 8] = [0xF0, 0x50, 0x55, 0x52, 0x53, 0x45, 0x01, 0x01];

fn install_purse_body(privileges: &[u8]) -> Vec<u8> {
    install_body(&PURSE_PACKAGE, &PURSE_MODULE, &PURSE, privileges)
}

#[test]
fn authorized_management_grants_no_card_wide_privilege() {
    // An SSD with Authorized Management (and nothing card-wide itself).
    let (mut card, mut v) = card_with_ssd([0x80, 0x40, 0x00]);
    let before = card.state().clone();
    // Card Lock, Card Terminate, Card Reset, CVM Management, alone or together: 6982.
    for p in [[0x10], [0x08], [0x04], [0x02], [0x1E]] {
        let d = with_token(&install_purse_body(&p), &[]);
        let r = v.send(&mut card, cmd(0x80, 0xE6, 0x0C, 0x00, &d));
        assert_eq!(r.sw, 0x6982, "privileges {p:02X?}");
        assert_eq!(card.state(), &before, "a refused INSTALL changes nothing");
    }
    // Without privileges the same install goes through.
    let d = with_token(&install_purse_body(&[0x00]), &[]);
    assert_eq!(
        v.send(&mut card, cmd(0x80, 0xE6, 0x0C, 0x00, &d)).sw,
        0x9000
    );
    let app = card.state().registry.applications.last().unwrap();
    assert_eq!(app.aid.as_bytes(), PURSE);
    assert_eq!(app.privileges.0, [0, 0, 0]);
}

#[test]
fn a_domain_holding_card_lock_still_cannot_pass_it_on() {
    // Even an SSD that was given Card Lock by the issuer does not hand it to its applications.
    let (mut card, mut v) = card_with_ssd([0x90, 0x40, 0x00]);
    let before = card.state().clone();
    let d = with_token(&install_purse_body(&[0x10]), &[]);
    assert_eq!(
        v.send(&mut card, cmd(0x80, 0xE6, 0x0C, 0x00, &d)).sw,
        0x6982
    );
    assert_eq!(card.state(), &before);
}

#[test]
fn the_issuer_grants_card_wide_privileges_directly_or_by_token() {
    // Delegated Management: the issuer's token authorises the grant.
    let (mut card, mut v) = card_with_ssd([0xA0, 0x00, 0x00]);
    let body = install_purse_body(&[0x10]);
    let d = with_token(&body, &aes_token(0x0C, 0x00, &body));
    assert_eq!(
        v.send(&mut card, cmd(0x80, 0xE6, 0x0C, 0x00, &d)).sw,
        0x9000
    );
    let app = card.state().registry.applications.last().unwrap();
    assert_eq!(app.privileges.0, [0x10, 0, 0]);
    // The ISD grants them itself.
    let mut card = new_card();
    let mut t = Terminal::new();
    personalise(&mut card, &mut t);
    assert_eq!(t.authenticate(&mut card, ISSUER, 0x33), 0x9000);
    let d = with_token(&install_purse_body(&[0x1E]), &[]);
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xE6, 0x0C, 0x00, &d)).sw,
        0x9000
    );
}
