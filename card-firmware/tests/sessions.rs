//! Session rules across commands: a new secure channel session ends the personalisation
//! session; a STORE DATA whose commit fails moves no block counter; a load cannot complete for a
//! domain that was deleted meanwhile.
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

const PURSE_PACKAGE: [u8; 6] = [0xF0, 0x50, 0x55, 0x52, 0x53, 0x45];
const PURSE_MODULE: [u8; 7] = [0xF0, 0x50, 0x55, 0x52, 0x53, 0x45, 0x01];
const PURSE: [u8; 8] = [0xF0, 0x50, 0x55, 0x52, 0x53, 0x45, 0x01, 0x01];

fn perso_command() -> gp_core::apdu::CommandApdu {
    let mut ip = vec![0, 0, PURSE.len() as u8];
    ip.extend_from_slice(&PURSE);
    ip.extend_from_slice(&[0, 0, 0]);
    cmd(0x80, 0xE6, 0x20, 0x00, &ip)
}

/// A SECURED card on `storage` with a purse under the ISD, the ISD's application key KVN 40,
/// and an open issuer session (level 33) that has just sent INSTALL [for personalization].
fn purse_in_personalisation(storage: RamStorage) -> (Card<RamStorage>, Terminal) {
    let mut card = Card::format(storage, &fab()).unwrap();
    let mut t = Terminal::new();
    personalise(&mut card, &mut t);
    assert_eq!(t.authenticate(&mut card, ISSUER, 0x33), 0x9000);
    let d = install_and_make_selectable_data(&PURSE_PACKAGE, &PURSE_MODULE, &PURSE);
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xE6, 0x0C, 0x00, &d)).sw,
        0x9000
    );
    let d = put_one_key_data(0x40, 0x88, &[0x2B; 16], &NEW_DEK);
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xD8, 0x00, 0x01, &d)).sw,
        0x9000
    );
    assert_eq!(t.send(&mut card, perso_command()).sw, 0x9000);
    (card, t)
}

const BLOCK: [u8; 14] = [
    0xDF, 0x01, 0x04, 0, 1, 0x86, 0xA0, 0xDF, 0x02, 0x04, 0, 0, 0, 100,
];

#[test]
fn a_new_secure_channel_session_ends_personalisation() {
    let (mut card, mut t) = purse_in_personalisation(RamStorage::new(64 * 1024, 128));
    // A new session, at C-MAC only: the STORE DATA that follows is not the purse's.
    t.select_isd(&mut card);
    assert_eq!(t.authenticate(&mut card, ISSUER, 0x01), 0x9000);
    let before = card.state().clone();
    let r = t.send(&mut card, cmd(0x80, 0xE2, 0x10, 0x00, &BLOCK));
    // The ISD's own STORE DATA takes it, and refuses tags that are not its own.
    assert_eq!(r.sw, 0x6A80);
    assert_eq!(card.state(), &before);
    // A session ended by INITIALIZE UPDATE alone (no EXTERNAL AUTHENTICATE yet) too.
    let (mut card, mut t) = purse_in_personalisation(RamStorage::new(64 * 1024, 128));
    let mut iu = vec![0x80, 0x50, 0x01, 0x00, 0x08];
    iu.extend_from_slice(&[7; 8]);
    iu.push(0x00);
    assert_eq!(sw(&card.process(&iu)), 0x9000);
    assert_eq!(t.authenticate(&mut card, ISSUER, 0x33), 0x9000);
    let before = card.state().clone();
    let r = t.send(&mut card, cmd(0x80, 0xE2, 0x10, 0x00, &BLOCK));
    assert_eq!(r.sw, 0x6A80);
    assert_eq!(card.state(), &before);
}

/// Storage whose journal slot holds `record` bytes of state and no more.
fn storage_for(record: usize) -> RamStorage {
    RamStorage::new(24 + 2 * (28 + record), 128)
}

fn state_len(card: &Card<RamStorage>) -> usize {
    card.state().to_bytes().len()
}

#[test]
fn a_store_data_that_cannot_be_stored_moves_no_block_counter() {
    // Personalisation: block 0 (with the key handle) adds 16 bytes of state, block 1 (without)
    // 14. With room for 15, block 0 fails to commit (6A84) and block 1 must not follow it.
    let (card, _) = purse_in_personalisation(RamStorage::new(64 * 1024, 128));
    let room = state_len(&card) + 15;
    let (mut card, mut t) = purse_in_personalisation(storage_for(room));
    let before: CardState = card.state().clone();
    let mut block0 = BLOCK.to_vec();
    block0.extend_from_slice(&[0xDF, 0x03, 0x02, 0x40, 0x01]);
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xE2, 0x10, 0x00, &block0)).sw,
        0x6A84
    );
    assert_eq!(card.state(), &before);
    let r = t.send(&mut card, cmd(0x80, 0xE2, 0x10, 0x01, &BLOCK));
    assert_ne!(
        r.sw, 0x9000,
        "block 1 accepted after block 0 was not stored"
    );
    assert_eq!(card.state(), &before);
    // The session can start again with block 0.
    assert_eq!(t.send(&mut card, perso_command()).sw, 0x9000);
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xE2, 0x10, 0x00, &BLOCK)).sw,
        0x9000
    );

    // The ISD's own STORE DATA: a 16-byte IIN does not fit, then block 0 again (a 2-byte IIN)
    // is the one expected.
    let mut card = Card::format(RamStorage::new(64 * 1024, 128), &fab()).unwrap();
    let mut t = Terminal::new();
    personalise(&mut card, &mut t);
    let room = state_len(&card) + 8;
    let mut card = Card::format(storage_for(room), &fab()).unwrap();
    let mut t = Terminal::new();
    personalise(&mut card, &mut t);
    assert_eq!(t.authenticate(&mut card, ISSUER, 0x33), 0x9000);
    let before = card.state().clone();
    let mut iin = vec![0x42, 16];
    iin.extend_from_slice(&[0x12; 16]);
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xE2, 0x10, 0x00, &iin)).sw,
        0x6A84
    );
    assert_eq!(card.state(), &before);
    let r = t.send(
        &mut card,
        cmd(0x80, 0xE2, 0x90, 0x00, &[0x42, 0x02, 0x12, 0x34]),
    );
    assert_eq!(r.sw, 0x9000);
    assert_eq!(card.state().iin, [0x12, 0x34]);
}

#[test]
fn a_load_cannot_complete_for_a_deleted_domain() {
    let mut card = new_card();
    let mut t = Terminal::new();
    personalise(&mut card, &mut t);
    assert_eq!(t.authenticate(&mut card, ISSUER, 0x33), 0x9000);
    assert_eq!(
        install_ssd(&mut card, &mut t, &SSD, [0x80, 0x00, 0x00]),
        0x9000
    );
    let lfdb = lfdb();
    let mut d = Vec::new();
    lv(&mut d, &PACKAGE);
    lv(&mut d, &SSD);
    lv(&mut d, &sha256(&lfdb));
    d.extend_from_slice(&[0x00, 0x00]);
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xE6, 0x02, 0x00, &d)).sw,
        0x9000
    );
    let blocks = load_commands(&lfdb, 32);
    let n = blocks.len();
    assert!(n > 1);
    let mut blocks = blocks.into_iter();
    for c in blocks.by_ref().take(n - 1) {
        assert_eq!(t.send(&mut card, c).sw, 0x9000);
    }
    // The SSD goes (nothing is associated with it yet), then the last block arrives.
    let mut del = vec![0x4F, SSD.len() as u8];
    del.extend_from_slice(&SSD);
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xE4, 0x00, 0x00, &del)).sw,
        0x9000
    );
    let before = card.state().clone();
    assert_eq!(t.send(&mut card, blocks.next().unwrap()).sw, 0x6A88);
    assert_eq!(card.state(), &before);
    assert!(card
        .state()
        .registry
        .load_files
        .iter()
        .all(|f| f.aid.as_bytes() != PACKAGE));
}
