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
        install_for_load(card, t, &lfdb);
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
        load(card, t, 64);
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

fn install_ssd_data(privileges: u8, ciphered: bool) -> Vec<u8> {
    let mut d = install_and_make_selectable_data(&SD_PACKAGE, &SD_MODULE, &SSD);
    let p = 1 + SD_PACKAGE.len() + 1 + SD_MODULE.len() + 1 + SSD.len();
    d.splice(
        p..p + 2,
        [0x03, privileges, 0x00, if ciphered { 0x40 } else { 0x00 }],
    );
    d
}

#[test]
fn install_security_domain() {
    let step: &Setup = &|card, t| {
        t.send(
            card,
            cmd(0x80, 0xE6, 0x0C, 0x00, &install_ssd_data(0xC0, false)),
        );
    };
    check("INSTALL (SSD)", &secured, step, &none);
}

#[test]
fn put_key_into_security_domain() {
    let setup: &Setup = &|card, t| {
        secured(card, t);
        assert_eq!(
            t.send(
                card,
                cmd(0x80, 0xE6, 0x0C, 0x00, &install_ssd_data(0xC0, false))
            )
            .sw,
            0x9000
        );
        assert_eq!(sw(&t.select(card, &SSD)), 0x9000);
        assert_eq!(t.authenticate(card, TRANSPORT, 0x33), 0x9000);
    };
    let step: &Setup = &|card, t| {
        t.send(
            card,
            cmd(
                0x80,
                0xD8,
                0x00,
                0x01,
                &put_one_key_data(0x73, 0x88, &K, &K),
            ),
        );
    };
    check("PUT KEY (SSD)", setup, step, &none);
}

#[test]
fn ciphered_load_into_security_domain() {
    let cipher_key = [0x5Cu8; 16];
    let body = move || {
        let key = gp_core::keys::AesKey::from_slice(&cipher_key).unwrap();
        let mut body = Vec::new();
        gp_core::tlv::write_tlv(
            &mut body,
            0xD4,
            &gp_core::dap::encrypt_lfdb_aes(&key, None, &lfdb()),
        );
        body
    };
    let setup: &Setup = &move |card, t| {
        secured(card, t);
        assert_eq!(
            t.send(
                card,
                cmd(0x80, 0xE6, 0x0C, 0x00, &install_ssd_data(0x80, true))
            )
            .sw,
            0x9000
        );
        let mut v = Terminal::new();
        assert_eq!(sw(&v.select(card, &SSD)), 0x9000);
        assert_eq!(v.authenticate(card, TRANSPORT, 0x33), 0x9000);
        assert_eq!(
            v.send(
                card,
                cmd(
                    0x80,
                    0xD8,
                    0x00,
                    0x01,
                    &put_one_key_data(0x74, 0x88, &cipher_key, &K)
                )
            )
            .sw,
            0x9000
        );
        t.select_isd(card);
        assert_eq!(t.authenticate(card, ISSUER, 0x33), 0x9000);
        let mut d = vec![PACKAGE.len() as u8];
        d.extend_from_slice(&PACKAGE);
        d.push(SSD.len() as u8);
        d.extend_from_slice(&SSD);
        let hash = sha256(&lfdb());
        d.push(hash.len() as u8);
        d.extend_from_slice(&hash);
        d.extend_from_slice(&[0, 0]);
        assert_eq!(t.send(card, cmd(0x80, 0xE6, 0x02, 0x00, &d)).sw, 0x9000);
    };
    let step: &Setup = &move |card, t| {
        t.send(card, cmd(0x80, 0xE8, 0x80, 0x00, &body()));
    };
    check("LOAD (ciphered, SSD)", setup, step, &none);
}

#[test]
fn lock_application() {
    let setup: &Setup = &|card, t| {
        secured(card, t);
        load_and_install(card, t);
    };
    let step: &Setup = &|card, t| {
        t.send(card, cmd(0x80, 0xF0, 0x40, 0x80, &APPLET));
    };
    check("SET STATUS (lock application)", setup, step, &none);
}

const PURSE_PACKAGE: [u8; 6] = [0xF0, 0x50, 0x55, 0x52, 0x53, 0x45];
const PURSE_MODULE: [u8; 7] = [0xF0, 0x50, 0x55, 0x52, 0x53, 0x45, 0x01];
const PURSE: [u8; 8] = [0xF0, 0x50, 0x55, 0x52, 0x53, 0x45, 0x01, 0x01];

/// A purse installed under the ISD with its key (ISD key set 40) and an open
/// INSTALL [for personalization].
fn purse_ready(card: &mut Card<RamStorage>, t: &mut Terminal) {
    secured(card, t);
    let d = install_and_make_selectable_data(&PURSE_PACKAGE, &PURSE_MODULE, &PURSE);
    assert_eq!(t.send(card, cmd(0x80, 0xE6, 0x0C, 0x00, &d)).sw, 0x9000);
    let r = t.send(
        card,
        cmd(
            0x80,
            0xD8,
            0x00,
            0x01,
            &put_one_key_data(0x40, 0x88, &[0x2B; 16], &NEW_DEK),
        ),
    );
    assert_eq!(r.sw, 0x9000);
    let mut ip = vec![0, 0, PURSE.len() as u8];
    ip.extend_from_slice(&PURSE);
    ip.extend_from_slice(&[0, 0, 0]);
    assert_eq!(t.send(card, cmd(0x80, 0xE6, 0x20, 0x00, &ip)).sw, 0x9000);
}

const PERSO: [u8; 16] = [
    0xDF, 0x01, 0x04, 0, 0, 0x03, 0xE8, 0xDF, 0x02, 0x04, 0, 0, 0, 100, 0xDF, 0x03,
];

fn perso_data() -> Vec<u8> {
    let mut d = PERSO.to_vec();
    d.extend_from_slice(&[0x02, 0x40, 0x01]);
    d
}

#[test]
fn store_data_personalisation() {
    let step: &Setup = &|card, t| {
        t.send(card, cmd(0x80, 0xE2, 0x90, 0x00, &perso_data()));
    };
    check("STORE DATA (purse)", &purse_ready, step, &none);
}

#[test]
fn purse_debit() {
    let setup: &Setup = &|card, t| {
        purse_ready(card, t);
        assert_eq!(
            t.send(card, cmd(0x80, 0xE2, 0x90, 0x00, &perso_data())).sw,
            0x9000
        );
        let mut a = vec![0x00, 0xA4, 0x04, 0x00, PURSE.len() as u8];
        a.extend_from_slice(&PURSE);
        assert_eq!(sw(&card.process(&a)), 0x9000);
    };
    let step: &Setup = &|card, _| {
        card.process(&[0x80, 0x54, 0x00, 0x00, 0x04, 0, 0, 0, 30, 0x00]);
    };
    check("purse DEBIT", setup, step, &none);
}

#[test]
fn purse_credit() {
    let setup: &Setup = &|card, t| {
        purse_ready(card, t);
        assert_eq!(
            t.send(card, cmd(0x80, 0xE2, 0x90, 0x00, &perso_data())).sw,
            0x9000
        );
        let mut a = vec![0x00, 0xA4, 0x04, 0x00, PURSE.len() as u8];
        a.extend_from_slice(&PURSE);
        assert_eq!(sw(&card.process(&a)), 0x9000);
    };
    let step: &Setup = &|card, _| {
        // CREDIT 50 at counter 0: MAC(`credit`, counter ‖ amount) framed with the AID and KDD.
        let mut input = vec![6];
        input.extend_from_slice(b"credit");
        input.push(PURSE.len() as u8);
        input.extend_from_slice(&PURSE);
        input.extend_from_slice(&KDD);
        input.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 50]);
        let key = gp_core::keys::AesKey::from_slice(&[0x2B; 16]).unwrap();
        let mac = gp_core::dap::dap_aes(&key, &input);
        let mut a = vec![0x80, 0x52, 0x00, 0x00, 0x0C, 0, 0, 0, 50];
        a.extend_from_slice(&mac[..8]);
        a.push(0x00);
        let r = card.process(&a);
        if !card.storage().power_lost() {
            assert_eq!(
                r,
                [0, 0, 0, 150, 0, 0, 0, 1, 0x90, 0x00],
                "the credit is accepted"
            );
        }
    };
    check("purse CREDIT", setup, step, &none);
}

#[test]
fn extradite_personalised_purse() {
    // Extradition moves the purse and drops the key its old domain gave it, in one commit.
    let setup: &Setup = &|card, t| {
        purse_ready(card, t);
        assert_eq!(
            t.send(card, cmd(0x80, 0xE2, 0x90, 0x00, &perso_data())).sw,
            0x9000
        );
        assert_eq!(
            t.send(
                card,
                cmd(0x80, 0xE6, 0x0C, 0x00, &install_ssd_data(0x80, false))
            )
            .sw,
            0x9000
        );
    };
    let step: &Setup = &|card, t| {
        let mut ex = Vec::new();
        lv(&mut ex, &SSD);
        ex.push(0);
        lv(&mut ex, &PURSE);
        ex.extend_from_slice(&[0, 0, 0]);
        let r = t.send(card, cmd(0x80, 0xE6, 0x10, 0x00, &ex));
        if !card.storage().power_lost() {
            assert_eq!(r.sw, 0x9000);
            let purse = card_firmware::aid::Aid::new(&PURSE).unwrap();
            assert!(card
                .state()
                .registry
                .application(&purse)
                .unwrap()
                .keys
                .is_empty());
        }
    };
    check("INSTALL [for extradition]", setup, step, &none);
}

#[test]
fn registry_update_of_personalised_purse() {
    // INSTALL [for registry update]: new privileges and a new domain in one commit; the key the
    // old domain gave the purse is dropped with it.
    let setup: &Setup = &|card, t| {
        purse_ready(card, t);
        assert_eq!(
            t.send(card, cmd(0x80, 0xE2, 0x90, 0x00, &perso_data())).sw,
            0x9000
        );
        assert_eq!(
            t.send(
                card,
                cmd(0x80, 0xE6, 0x0C, 0x00, &install_ssd_data(0x80, false))
            )
            .sw,
            0x9000
        );
    };
    let step: &Setup = &|card, t| {
        let mut d = Vec::new();
        lv(&mut d, &SSD);
        d.push(0);
        lv(&mut d, &PURSE);
        lv(&mut d, &[0x10]);
        d.extend_from_slice(&[0, 0]);
        let r = t.send(card, cmd(0x80, 0xE6, 0x40, 0x00, &d));
        if !card.storage().power_lost() {
            assert_eq!(r.sw, 0x9000);
            let purse = card_firmware::aid::Aid::new(&PURSE).unwrap();
            let app = card.state().registry.application(&purse).unwrap();
            assert!(app.keys.is_empty());
            assert_eq!(app.privileges.0, [0x10, 0, 0]);
        }
    };
    check("INSTALL [for registry update]", setup, step, &none);
}

// ---- Combined load and install, delegated management, key deletion ----------------------------

/// The combined process up to its last LOAD (ISD).
fn combined_loaded(card: &mut Card<RamStorage>, t: &mut Terminal) {
    secured(card, t);
    let first = with_token(&load_body(&PACKAGE, &[], &sha256(&lfdb())), &[]);
    assert_eq!(t.send(card, cmd(0x80, 0xE6, 0x0E, 0x01, &first)).sw, 0x9000);
    for b in load_commands(&lfdb(), 32) {
        assert_eq!(t.send(card, b).sw, 0x9000);
    }
}

#[test]
fn combined_final_install() {
    let step: &Setup = &|card, t| {
        let last = with_token(&install_body(&PACKAGE, &APPLET, &APPLET, &[0x00]), &[]);
        t.send(card, cmd(0x80, 0xE6, 0x0E, 0x03, &last));
    };
    check(
        "INSTALL [for load, install and make selectable] (final)",
        &combined_loaded,
        step,
        &none,
    );
}

/// The issuer's DM keys, an SSD with `privileges`, and `t` in a session with the SSD.
fn ssd_session(card: &mut Card<RamStorage>, t: &mut Terminal, privileges: [u8; 3]) {
    secured(card, t);
    put_dm_keys(card, t, true, true);
    assert_eq!(install_ssd(card, t, &SSD, privileges), 0x9000);
    assert_eq!(sw(&t.select(card, &SSD)), 0x9000);
    assert_eq!(t.authenticate(card, TRANSPORT, 0x33), 0x9000);
}

/// A delegated load up to its last block.
fn delegated_loading(card: &mut Card<RamStorage>, t: &mut Terminal) {
    ssd_session(card, t, [0xA0, 0x00, 0x00]);
    let body = load_body(&PACKAGE, &[], &sha256(&lfdb()));
    let data = with_token(&body, &aes_token(0x02, 0x00, &body));
    assert_eq!(t.send(card, cmd(0x80, 0xE6, 0x02, 0x00, &data)).sw, 0x9000);
    let blocks = load_commands(&lfdb(), 32);
    for b in &blocks[..blocks.len() - 1] {
        assert_eq!(t.send(card, b.clone()).sw, 0x9000);
    }
}

#[test]
fn delegated_load_with_receipt() {
    let step: &Setup = &|card, t| {
        let blocks = load_commands(&lfdb(), 32);
        t.send(card, blocks.last().unwrap().clone());
    };
    check("LOAD (delegated, receipt)", &delegated_loading, step, &none);
}

fn delegated_loaded(card: &mut Card<RamStorage>, t: &mut Terminal) {
    delegated_loading(card, t);
    let blocks = load_commands(&lfdb(), 32);
    assert_eq!(t.send(card, blocks.last().unwrap().clone()).sw, 0x9000);
}

#[test]
fn delegated_install_with_receipt() {
    let step: &Setup = &|card, t| {
        let body = install_body(&PACKAGE, &APPLET, &APPLET, &[0x00]);
        let data = with_token(&body, &aes_token(0x0C, 0x00, &body));
        t.send(card, cmd(0x80, 0xE6, 0x0C, 0x00, &data));
    };
    check(
        "INSTALL (delegated, receipt)",
        &delegated_loaded,
        step,
        &none,
    );
}

#[test]
fn delegated_delete_with_receipt() {
    let step: &Setup = &|card, t| {
        let mut d = vec![0x4F];
        lv(&mut d, &PACKAGE);
        let token = aes_token(0x00, 0x80, &d);
        gp_core::tlv::write_tlv(&mut d, 0x9E, &token);
        t.send(card, cmd(0x80, 0xE4, 0x00, 0x80, &d));
    };
    check(
        "DELETE (delegated, receipt)",
        &delegated_loaded,
        step,
        &none,
    );
}

#[test]
fn authorized_management_install() {
    let setup: &Setup = &|card, t| {
        ssd_session(card, t, [0x80, 0x40, 0x00]);
        let data = with_token(&load_body(&PACKAGE, &[], &[]), &[]);
        assert_eq!(t.send(card, cmd(0x80, 0xE6, 0x02, 0x00, &data)).sw, 0x9000);
        for b in load_commands(&lfdb(), 32) {
            assert_eq!(t.send(card, b).sw, 0x9000);
        }
    };
    let step: &Setup = &|card, t| {
        let data = with_token(&install_body(&PACKAGE, &APPLET, &APPLET, &[0x00]), &[]);
        t.send(card, cmd(0x80, 0xE6, 0x0C, 0x00, &data));
    };
    check("INSTALL (authorized management)", setup, step, &none);
}

#[test]
fn delete_key_set() {
    let setup: &Setup = &|card, t| {
        secured(card, t);
        put_dm_keys(card, t, true, true);
    };
    let step: &Setup = &|card, t| {
        t.send(card, cmd(0x80, 0xE4, 0x00, 0x00, &[0xD2, 0x01, 0x70]));
    };
    check("DELETE [key]", setup, step, &none);
}
