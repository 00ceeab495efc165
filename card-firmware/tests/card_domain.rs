//! The card domain end to end, in process: personalisation with gp-core's host session and
//! software keys, a load, an install, and the registry as GET STATUS reports it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

mod common;

use card_firmware::lifecycle::CardLifeCycle;
use common::*;
use gp_core::tlv::TlvReader;

#[test]
fn personalise_load_install_and_audit() {
    let mut card = new_card();
    let mut t = Terminal::new();
    personalise(&mut card, &mut t);
    assert_eq!(card.state().life_cycle, CardLifeCycle::Secured);
    // The transport keys are gone; the issuer keys open a session.
    assert_eq!(t.authenticate(&mut card, TRANSPORT, 0x03), 0x6A88);
    assert_eq!(t.authenticate(&mut card, ISSUER, 0x33), 0x9000);
    load_and_install(&mut card, &mut t);

    // GET STATUS applications, TLV format.
    let r = t.send(&mut card, cmd(0x80, 0xF2, 0x40, 0x02, &[0x4F, 0x00]));
    assert_eq!(r.sw, 0x9000);
    let e3: Vec<_> = TlvReader::new(&r.data).map(|t| t.unwrap()).collect();
    assert_eq!(e3.len(), 1);
    assert_eq!(e3[0].tag, 0xE3);
    let fields: Vec<_> = e3[0].children().map(|t| t.unwrap()).collect();
    assert_eq!(fields[0].tag, 0x4F);
    assert_eq!(fields[0].value, APPLET);
    assert_eq!(fields[1].tag, 0x9F70);
    assert_eq!(fields[1].value, [0x07]);

    // GET STATUS load files and modules.
    let r = t.send(&mut card, cmd(0x80, 0xF2, 0x10, 0x02, &[0x4F, 0x00]));
    assert_eq!(r.sw, 0x9000);
    let hex = hex::encode_upper(&r.data);
    assert!(
        hex.contains(&format!("4F05{}", hex::encode_upper(PACKAGE))),
        "{hex}"
    );
    assert!(
        hex.contains(&format!("8408{}", hex::encode_upper(APPLET))),
        "{hex}"
    );

    // GET STATUS ISD: SECURED.
    let r = t.send(&mut card, cmd(0x80, 0xF2, 0x80, 0x02, &[0x4F, 0x00]));
    assert_eq!(r.sw, 0x9000);
    assert!(hex::encode_upper(&r.data).contains("9F70010F"));

    // Legacy format for applications: len AID life cycle privileges.
    let r = t.send(&mut card, cmd(0x80, 0xF2, 0x40, 0x00, &[0x4F, 0x00]));
    assert_eq!(r.sw, 0x9000);
    let mut legacy = vec![8];
    legacy.extend_from_slice(&APPLET);
    legacy.extend_from_slice(&[0x07, 0x00]);
    assert_eq!(r.data, legacy);

    // The applet is registered but not executable: SELECT answers 6999 and the ISD stays.
    let mut sel = vec![0x00, 0xA4, 0x04, 0x00, 0x08];
    sel.extend_from_slice(&APPLET);
    assert_eq!(sw(&card.process(&sel)), 0x6999);

    // The state survives a power cycle.
    let before = card.state().clone();
    let card = card_firmware::Card::boot(card.into_storage()).unwrap();
    assert_eq!(*card.state(), before);
}

#[test]
fn tampered_load_is_refused_and_leaves_nothing() {
    let mut card = new_card();
    let mut t = Terminal::new();
    personalise(&mut card, &mut t);
    assert_eq!(t.authenticate(&mut card, ISSUER, 0x03), 0x9000);
    let before = card.state().clone();
    let lfdb = lfdb();
    install_for_load(&mut card, &mut t, &lfdb);
    let mut blocks = load_commands(&lfdb, 16);
    // Flip one byte of the second block: the LFDB hash no longer matches.
    blocks[1].data[3] ^= 0x01;
    let n = blocks.len();
    for (i, b) in blocks.into_iter().enumerate() {
        let r = t.send(&mut card, b);
        if i + 1 == n {
            assert_eq!(r.sw, 0x6A80);
        } else {
            assert_eq!(r.sw, 0x9000);
        }
    }
    assert_eq!(*card.state(), before);
    // The session is still usable and the registry shows no package.
    let r = t.send(
        &mut card,
        cmd(
            0x80,
            0xF2,
            0x20,
            0x02,
            &[0x4F, 0x05, 0xD0, 0xD1, 0xD2, 0xD3, 0xD4],
        ),
    );
    assert_eq!(r.sw, 0x6A88);
}

#[test]
fn out_of_order_block_aborts_the_load() {
    let mut card = new_card();
    let mut t = Terminal::new();
    personalise(&mut card, &mut t);
    assert_eq!(t.authenticate(&mut card, ISSUER, 0x01), 0x9000);
    let lfdb = lfdb();
    install_for_load(&mut card, &mut t, &lfdb);
    let blocks = load_commands(&lfdb, 16);
    assert_eq!(t.send(&mut card, blocks[0].clone()).sw, 0x9000);
    assert_eq!(t.send(&mut card, blocks[2].clone()).sw, 0x6A86);
    // The load session is gone: even the right block is now refused.
    assert_eq!(t.send(&mut card, blocks[1].clone()).sw, 0x6985);
}

#[test]
fn bad_mac_ends_the_session() {
    let mut card = new_card();
    let mut t = Terminal::new();
    assert_eq!(t.authenticate(&mut card, TRANSPORT, 0x01), 0x9000);
    let mut wire = t.wrap(&cmd(0x80, 0xF2, 0x80, 0x02, &[0x4F, 0x00]));
    let n = wire.len();
    wire[n - 2] ^= 0xFF; // inside the MAC (Le is last)
    assert_eq!(sw(&card.process(&wire)), 0x6982);
    // Even a correctly wrapped command is refused now.
    let wire = t.wrap(&cmd(0x80, 0xF2, 0x80, 0x02, &[0x4F, 0x00]));
    assert_eq!(sw(&card.process(&wire)), 0x6982);
    // A plain command too.
    assert_eq!(
        sw(&card.process(&[0x80, 0xF2, 0x80, 0x02, 0x02, 0x4F, 0x00, 0x00])),
        0x6982
    );
}

#[test]
fn commands_need_authentication() {
    let mut card = new_card();
    let before = card.state().clone();
    for apdu in [
        &[0x80, 0xF2, 0x80, 0x02, 0x02, 0x4F, 0x00, 0x00][..],
        &[0x80, 0xF0, 0x80, 0x0F][..],
        &[0x80, 0xE6, 0x02, 0x00, 0x03, 0x00, 0x00, 0x00][..],
    ] {
        assert_eq!(sw(&card.process(apdu)), 0x6982);
    }
    assert_eq!(*card.state(), before);
}

#[test]
fn get_data_objects() {
    let mut card = new_card();
    let r = card.process(&[0x80, 0xCA, 0x00, 0xCF, 0x00]);
    assert_eq!(r, [&[0xCF, 0x0A][..], &KDD, &[0x90, 0x00]].concat());
    let r = card.process(&[0x80, 0xCA, 0x9F, 0x7F, 0x00]);
    assert_eq!(&r[..3], &[0x9F, 0x7F, 0x2A]);
    assert_eq!(sw(&r), 0x9000);
    let r = card.process(&[0x80, 0xCA, 0x00, 0xE0, 0x00]);
    assert_eq!(
        hex::encode_upper(&r),
        "E012C00401308810C00402308810C004033088109000"
    );
    let r = card.process(&[0x80, 0xCA, 0x00, 0x66, 0x00]);
    assert_eq!(sw(&r), 0x9000);
    assert!(hex::encode_upper(&r).contains("2A864886FC6B040370"));
    let r = card.process(&[0x80, 0xCA, 0x00, 0xC1, 0x00]);
    assert_eq!(r, [0xC1, 0x03, 0, 0, 0, 0x90, 0x00]);
    // ISO class: value only.
    let r = card.process(&[0x00, 0xCA, 0x00, 0xCF, 0x00]);
    assert_eq!(r, [&KDD[..], &[0x90, 0x00]].concat());
    assert_eq!(sw(&card.process(&[0x80, 0xCA, 0x00, 0x42, 0x00])), 0x6A88);
}

#[test]
fn life_cycle_rules() {
    let mut card = new_card();
    let mut t = Terminal::new();
    assert_eq!(t.authenticate(&mut card, TRANSPORT, 0x01), 0x9000);
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xF0, 0x80, 0x0F, &[])).sw,
        0x9000
    );
    // Never backwards.
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xF0, 0x80, 0x07, &[])).sw,
        0x6A80
    );
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xF0, 0x80, 0x01, &[])).sw,
        0x6A80
    );
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xF0, 0x80, 0x0F, &[])).sw,
        0x6A80
    );
    // Lock: content changes refused, audit allowed, unlock works.
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xF0, 0x80, 0x7F, &[])).sw,
        0x9000
    );
    let r = t.send(
        &mut card,
        cmd(
            0x80,
            0xE6,
            0x02,
            0x00,
            &install_for_load_data(&PACKAGE, &[]),
        ),
    );
    assert_eq!(r.sw, 0x6985);
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xF2, 0x80, 0x02, &[0x4F, 0x00]))
            .sw,
        0x9000
    );
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xF0, 0x80, 0x0F, &[])).sw,
        0x9000
    );
    // Terminate: only GET DATA remains.
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xF0, 0x80, 0xFF, &[])).sw,
        0x9000
    );
    assert_eq!(card.state().life_cycle, CardLifeCycle::Terminated);
    assert_eq!(t.authenticate(&mut card, TRANSPORT, 0x01), 0x6985);
    assert_eq!(sw(&card.process(&[0x80, 0xCA, 0x00, 0xCF, 0x00])), 0x9000);
}

#[test]
fn get_status_continues_with_6310() {
    let mut card = new_card();
    let mut t = Terminal::new();
    assert_eq!(t.authenticate(&mut card, TRANSPORT, 0x33), 0x9000);
    // Twenty packages with one applet each: more than one response's worth.
    for i in 0..20u8 {
        let pkg = [0xD0, 0xD1, 0xD2, 0xD3, 0xD4, i];
        let applet = [
            0xD0, 0xD1, 0xD2, 0xD3, 0xD4, i, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01,
        ];
        let lfdb = card_firmware::cap::synthetic_lfdb(&pkg, [1, 0], &[&applet]);
        let r = t.send(
            &mut card,
            cmd(
                0x80,
                0xE6,
                0x02,
                0x00,
                &install_for_load_data(&pkg, &sha256(&lfdb)),
            ),
        );
        assert_eq!(r.sw, 0x9000);
        for c in load_commands(&lfdb, 200) {
            assert_eq!(t.send(&mut card, c).sw, 0x9000);
        }
        let r = t.send(
            &mut card,
            cmd(
                0x80,
                0xE6,
                0x0C,
                0x00,
                &install_and_make_selectable_data(&pkg, &applet, &applet),
            ),
        );
        assert_eq!(r.sw, 0x9000);
    }
    let mut seen = 0;
    let mut p2 = 0x02;
    loop {
        let r = t.send(&mut card, cmd(0x80, 0xF2, 0x40, p2, &[0x4F, 0x00]));
        seen += TlvReader::new(&r.data).count();
        match r.sw {
            0x6310 => p2 = 0x03,
            0x9000 => break,
            other => panic!("unexpected {other:04X}"),
        }
    }
    assert_eq!(seen, 20);
    // [next] without a preceding [first] in this session is refused.
    assert_eq!(t.authenticate(&mut card, TRANSPORT, 0x01), 0x9000);
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xF2, 0x40, 0x03, &[0x4F, 0x00]))
            .sw,
        0x6985
    );
}

#[test]
fn registry_update_changes_privileges() {
    let mut card = new_card();
    let mut t = Terminal::new();
    personalise(&mut card, &mut t);
    assert_eq!(t.authenticate(&mut card, ISSUER, 0x33), 0x9000);
    load_and_install(&mut card, &mut t);
    let mut d = vec![0, 0, APPLET.len() as u8];
    d.extend_from_slice(&APPLET);
    d.extend_from_slice(&[1, 0x10, 0, 0]);
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xE6, 0x40, 0x00, &d)).sw,
        0x9000
    );
    let app = card
        .state()
        .registry
        .applications
        .iter()
        .find(|a| a.aid.as_bytes() == APPLET)
        .unwrap();
    assert_eq!(app.privileges.0, [0x10, 0, 0]);
    // An application cannot be made a security domain.
    let n = d.len();
    d[n - 3] = 0x80;
    let before = card.state().clone();
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xE6, 0x40, 0x00, &d)).sw,
        0x6A80
    );
    assert_eq!(card.state(), &before);
}

/// Interop finding 1: MANAGE CHANNEL is the OPEN's, answered `6881` without touching the
/// selected application's secure channel.
#[test]
fn manage_channel_is_answered_by_the_open() {
    let mut card = new_card();
    let mut t = Terminal::new();
    t.select_isd(&mut card);
    assert_eq!(sw(&card.process(&[0x00, 0x70, 0x00, 0x00, 0x01])), 0x6881);
    assert_eq!(sw(&card.process(&[0x00, 0x70, 0x80, 0x01])), 0x6881);
    assert_eq!(t.authenticate(&mut card, TRANSPORT, 0x01), 0x9000);
    assert_eq!(sw(&card.process(&[0x00, 0x70, 0x00, 0x00, 0x01])), 0x6881);
    // The session is intact.
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xCA, 0x00, 0xCF, &[])).sw,
        0x9000
    );
}

/// Interop finding 2: the ISD's own STORE DATA checks block numbers: from `00`, restarting
/// after the last block and after a refused block.
#[test]
fn isd_store_data_checks_block_numbers() {
    let mut card = new_card();
    let mut t = Terminal::new();
    t.select_isd(&mut card);
    assert_eq!(t.authenticate(&mut card, TRANSPORT, 0x01), 0x9000);
    let store = |p1: u8, p2: u8, v: u8| cmd(0x80, 0xE2, p1, p2, &[0x42, 0x01, v]);
    assert_eq!(t.send(&mut card, store(0x90, 0x05, 1)).sw, 0x6A86);
    assert!(card.state().iin.is_empty());
    assert_eq!(t.send(&mut card, store(0x90, 0x00, 2)).sw, 0x9000);
    assert_eq!(t.send(&mut card, store(0x90, 0x01, 3)).sw, 0x6A86);
    assert_eq!(card.state().iin, [2]);
    // A sequence: 00, 01, 02 (last).
    assert_eq!(t.send(&mut card, store(0x10, 0x00, 4)).sw, 0x9000);
    assert_eq!(t.send(&mut card, store(0x10, 0x01, 5)).sw, 0x9000);
    assert_eq!(t.send(&mut card, store(0x90, 0x02, 6)).sw, 0x9000);
    assert_eq!(card.state().iin, [6]);
    // A refused block restarts the count.
    assert_eq!(t.send(&mut card, store(0x10, 0x00, 7)).sw, 0x9000);
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xE2, 0x90, 0x01, &[0x99, 0x01, 0]))
            .sw,
        0x6A80
    );
    assert_eq!(t.send(&mut card, store(0x90, 0x01, 8)).sw, 0x6A86);
    assert_eq!(t.send(&mut card, store(0x90, 0x00, 9)).sw, 0x9000);
    assert_eq!(card.state().iin, [9]);
}
