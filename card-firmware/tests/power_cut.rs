//! Tearing: for every state-changing command, cut power after each of its writes in turn (whole
//! and torn writes), power on again, and demand the state before or after the command (or, for
//! EXTERNAL AUTHENTICATE, its explicit intermediate step), then a card that works.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

mod common;

use card_firmware::state::CardState;
use card_firmware::storage::RamStorage;
use card_firmware::Card;
use common::*;

type Setup = dyn Fn(&mut Card<RamStorage>, &mut Terminal);

/// The card still works: select, authenticate with whichever keys it holds, audit, and commit.
fn works(card: &mut Card<RamStorage>) {
    let mut t = Terminal::new();
    assert_eq!(sw(&t.select_isd(card)), 0x9000);
    let keys = match card.state().isd.sets.first().map(|s| s.kvn) {
        Some(0x30) => TRANSPORT,
        Some(0x01) => ISSUER,
        other => panic!("unexpected key set {other:?}"),
    };
    assert_eq!(t.authenticate(card, keys, 0x33), 0x9000);
    let r = t.send(card, cmd(0x80, 0xF2, 0x80, 0x02, &[0x4F, 0x00]));
    assert_eq!(r.sw, 0x9000);
}

/// Run `step` after `setup`, cutting power after each write; `extra` lists acceptable
/// intermediate states computed from the state before.
fn check(name: &str, setup: &Setup, step: &Setup, extra: &dyn Fn(&CardState) -> Vec<CardState>) {
    // Reference run.
    let mut card = new_card();
    let mut t = Terminal::new();
    setup(&mut card, &mut t);
    let before = card.state().clone();
    let w0 = card.storage().writes();
    step(&mut card, &mut t);
    let after = card.state().clone();
    let total = card.storage().writes() - w0;
    assert_ne!(before, after, "{name}: the step must change the state");
    assert!(total > 0);
    let mut allowed = vec![before.clone(), after.clone()];
    allowed.extend(extra(&before));
    let mut outcomes = [false, false];
    for torn in [false, true] {
        for n in 0..total {
            let mut card = new_card();
            let mut t = Terminal::new();
            setup(&mut card, &mut t);
            card.storage_mut().cut_power_after(n, torn);
            step(&mut card, &mut t);
            assert!(
                card.storage().power_lost(),
                "{name}: cut after {n} writes did not happen"
            );
            let mut storage = card.into_storage();
            storage.restore_power();
            let writes = storage.writes();
            let mut card = Card::boot(storage).unwrap();
            assert_eq!(
                card.storage().writes(),
                writes,
                "{name}: recovery must not write"
            );
            let state = card.state().clone();
            assert!(
                allowed.contains(&state),
                "{name}: cut after {n} writes (torn {torn}) left a state that is neither before nor after"
            );
            outcomes[usize::from(state == after)] = true;
            works(&mut card);
        }
    }
    // Cutting early leaves "before"; the last cut (torn header) also leaves "before" or an
    // intermediate; the full run leaves "after" - so both ends were reached.
    assert!(outcomes[0], "{name}: no cut point left the old state");
}

fn authed(card: &mut Card<RamStorage>, t: &mut Terminal) {
    assert_eq!(t.authenticate(card, TRANSPORT, 0x33), 0x9000);
}

fn secured(card: &mut Card<RamStorage>, t: &mut Terminal) {
    personalise(card, t);
    assert_eq!(t.authenticate(card, ISSUER, 0x33), 0x9000);
}

fn none(_: &CardState) -> Vec<CardState> {
    Vec::new()
}

#[test]
fn initialize_update_and_external_authenticate() {
    let setup: &Setup = &|card, t| {
        t.select_isd(card);
    };
    let step: &Setup = &|card, t| {
        t.authenticate(card, TRANSPORT, 0x33);
    };
    check(
        "INITIALIZE UPDATE + EXTERNAL AUTHENTICATE",
        setup,
        step,
        &|before| {
            let mut counted = before.clone();
            counted.isd.sets[0].sequence_counter += 1;
            let mut failed = counted.clone();
            failed.isd.failed_auth += 1;
            vec![counted, failed]
        },
    );
}

#[test]
fn put_key() {
    let step: &Setup = &|card, t| {
        t.send(card, cmd(0x80, 0xD8, 0x30, 0x81, &put_key_data(ISSUER, &K)));
    };
    check("PUT KEY", &authed, step, &none);
}

#[test]
fn put_key_new_set() {
    let step: &Setup = &|card, t| {
        let new = StaticKeys {
            kvn: 0x02,
            ..ISSUER
        };
        t.send(card, cmd(0x80, 0xD8, 0x00, 0x81, &put_key_data(new, &K)));
    };
    check("PUT KEY (new set)", &authed, step, &none);
}

#[test]
fn set_status() {
    let step: &Setup = &|card, t| {
        t.send(card, cmd(0x80, 0xF0, 0x80, 0x0F, &[]));
    };
    check("SET STATUS", &authed, step, &none);
}

#[test]
fn load_last_block() {
    let setup: &Setup = &|card, t| {
        secured(card, t);
        let lfdb = lfdb();
        let r = t.send(
            card,
            cmd(
                0x80,
                0xE6,
                0x02,
                0x00,
                &install_for_load_data(&PACKAGE, &sha256(&lfdb)),
            ),
        );
        assert_eq!(r.sw, 0x9000);
        let blocks = load_commands(&lfdb, 16);
        for b in &blocks[..blocks.len() - 1] {
            assert_eq!(t.send(card, b.clone()).sw, 0x9000);
        }
    };
    let step: &Setup = &|card, t| {
        let blocks = load_commands(&lfdb(), 16);
        t.send(card, blocks.last().unwrap().clone());
    };
    check("LOAD", setup, step, &none);
}

#[test]
fn install_for_install() {
    let setup: &Setup = &|card, t| {
        secured(card, t);
        let lfdb = lfdb();
        let r = t.send(
            card,
            cmd(
                0x80,
                0xE6,
                0x02,
                0x00,
                &install_for_load_data(&PACKAGE, &sha256(&lfdb)),
            ),
        );
        assert_eq!(r.sw, 0x9000);
        for b in load_commands(&lfdb, 64) {
            assert_eq!(t.send(card, b).sw, 0x9000);
        }
    };
    let step: &Setup = &|card, t| {
        t.send(
            card,
            cmd(
                0x80,
                0xE6,
                0x0C,
                0x00,
                &install_and_make_selectable_data(&PACKAGE, &APPLET, &APPLET),
            ),
        );
    };
    check(
        "INSTALL [for install and make selectable]",
        setup,
        step,
        &none,
    );
}

#[test]
fn delete_with_related() {
    let setup: &Setup = &|card, t| {
        secured(card, t);
        load_and_install(card, t);
    };
    let step: &Setup = &|card, t| {
        let mut data = vec![0x4F, 0x05];
        data.extend_from_slice(&PACKAGE);
        t.send(card, cmd(0x80, 0xE4, 0x00, 0x80, &data));
    };
    check("DELETE", setup, step, &none);
}
