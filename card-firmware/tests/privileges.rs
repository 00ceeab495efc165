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

/// The controlling authority model (GP 2.3.1 §9.2.1): the domain with Mandated DAP Verification
/// constrains what the issuer loads, so the issuer can neither strip its privilege nor delete it.
#[test]
fn the_issuer_cannot_lift_the_mandated_dap() {
    let mut card = new_card();
    let mut t = Terminal::new();
    personalise(&mut card, &mut t);
    assert_eq!(t.authenticate(&mut card, ISSUER, 0x33), 0x9000);
    assert_eq!(
        install_ssd(&mut card, &mut t, &SSD, [0xC1, 0x00, 0x00]),
        0x9000
    );
    // The controlling authority puts its DAP key (KVN 73) through its own channel.
    let mut ca = Terminal::new();
    assert_eq!(sw(&ca.select(&mut card, &SSD)), 0x9000);
    assert_eq!(ca.authenticate(&mut card, TRANSPORT, 0x33), 0x9000);
    let d = put_one_key_data(0x73, 0x88, &[0xCA; 16], &K);
    assert_eq!(
        ca.send(&mut card, cmd(0x80, 0xD8, 0x00, 0x01, &d)).sw,
        0x9000
    );

    t.select_isd(&mut card);
    assert_eq!(t.authenticate(&mut card, ISSUER, 0x33), 0x9000);
    let before = card.state().clone();
    let registry_update = |privileges: &[u8]| {
        let mut d = vec![0, 0];
        lv(&mut d, &SSD);
        lv(&mut d, privileges);
        d.extend_from_slice(&[0, 0]);
        cmd(0x80, 0xE6, 0x40, 0x00, &d)
    };
    // Stripping Mandated DAP Verification (keeping DAP Verification, or nothing but SD): 6985.
    for p in [[0xC0u8], [0x80]] {
        assert_eq!(
            t.send(&mut card, registry_update(&p)).sw,
            0x6985,
            "{p:02X?}"
        );
        assert_eq!(card.state(), &before);
    }
    // Deleting the controlling authority: 6985.
    let mut del = vec![0x4F, SSD.len() as u8];
    del.extend_from_slice(&SSD);
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xE4, 0x00, 0x00, &del)).sw,
        0x6985
    );
    assert_eq!(card.state(), &before);
    // So a load without its DAP is still refused.
    let lfdb = lfdb();
    let r = t.send(
        &mut card,
        cmd(
            0x80,
            0xE6,
            0x02,
            0x00,
            &install_for_load_data(&PACKAGE, &sha256(&lfdb)),
        ),
    );
    assert_eq!(r.sw, 0x9000);
    let blocks = load_commands(&lfdb, 200);
    let n = blocks.len();
    for (i, c) in blocks.into_iter().enumerate() {
        let expected = if i + 1 == n { 0x6982 } else { 0x9000 };
        assert_eq!(t.send(&mut card, c).sw, expected);
    }
    assert_eq!(card.state().registry, before.registry);
    // Updates that keep the privilege still work.
    assert_eq!(
        t.send(&mut card, registry_update(&[0xC1, 0x00, 0x00])).sw,
        0x9000
    );
}
