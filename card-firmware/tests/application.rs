//! The built-in purse: installed, extradited to a vendor SSD, personalised through the SSD with
//! STORE DATA (plain and encrypted), used, and able to lock the card with the Card Lock privilege.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

mod common;

use card_firmware::lifecycle::CardLifeCycle;
use card_firmware::storage::RamStorage;
use card_firmware::Card;
use common::*;
use gp_core::keys::AesKey;

const SSD: [u8; 10] = [0xA0, 0, 0, 0x01, 0x51, 0x53, 0x50, 0x41, 0x00, 0x01];
const SD_PACKAGE: [u8; 7] = [0xA0, 0, 0, 0x01, 0x51, 0x53, 0x50];
const SD_MODULE: [u8; 8] = [0xA0, 0, 0, 0x01, 0x51, 0x53, 0x50, 0x41];
const PURSE_PACKAGE: [u8; 6] = [0xF0, 0x50, 0x55, 0x52, 0x53, 0x45];
const PURSE_MODULE: [u8; 7] = [0xF0, 0x50, 0x55, 0x52, 0x53, 0x45, 0x01];
const PURSE: [u8; 8] = [0xF0, 0x50, 0x55, 0x52, 0x53, 0x45, 0x01, 0x01];
const PURSE_KEY: [u8; 16] = [0x2B; 16];
const SSD_DEK: [u8; 16] = [0x3D; 16];

fn with_privileges(mut d: Vec<u8>, fixed: usize, privileges: u8) -> Vec<u8> {
    d[fixed + 1] = privileges;
    d
}

/// A SECURED card with a vendor SSD (own keys, KVN 01, and a purse key KVN 40) and a purse
/// extradited to it. Returns the card and a terminal authenticated to the SSD.
fn setup(purse_privileges: u8) -> (Card<RamStorage>, Terminal) {
    let mut card = new_card();
    let mut t = Terminal::new();
    personalise(&mut card, &mut t);
    assert_eq!(t.authenticate(&mut card, ISSUER, 0x33), 0x9000);
    let ssd = install_and_make_selectable_data(&SD_PACKAGE, &SD_MODULE, &SSD);
    let fixed = 1 + SD_PACKAGE.len() + 1 + SD_MODULE.len() + 1 + SSD.len();
    assert_eq!(
        t.send(
            &mut card,
            cmd(0x80, 0xE6, 0x0C, 0x00, &with_privileges(ssd, fixed, 0x80))
        )
        .sw,
        0x9000
    );
    let purse = install_and_make_selectable_data(&PURSE_PACKAGE, &PURSE_MODULE, &PURSE);
    let fixed = 1 + PURSE_PACKAGE.len() + 1 + PURSE_MODULE.len() + 1 + PURSE.len();
    assert_eq!(
        t.send(
            &mut card,
            cmd(
                0x80,
                0xE6,
                0x0C,
                0x00,
                &with_privileges(purse, fixed, purse_privileges)
            )
        )
        .sw,
        0x9000
    );
    // Extradite the purse to the vendor's SSD.
    let mut ex = vec![SSD.len() as u8];
    ex.extend_from_slice(&SSD);
    ex.push(0);
    ex.push(PURSE.len() as u8);
    ex.extend_from_slice(&PURSE);
    ex.extend_from_slice(&[0, 0, 0]);
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xE6, 0x10, 0x00, &ex)).sw,
        0x9000
    );
    // The vendor replaces the SSD's transport keys and adds the purse key.
    let vendor = StaticKeys {
        kvn: 0x01,
        enc: [0x1E; 16],
        mac: [0x1A; 16],
        dek: SSD_DEK,
    };
    let mut v = Terminal::new();
    assert_eq!(sw(&v.select(&mut card, &SSD)), 0x9000);
    assert_eq!(v.authenticate(&mut card, TRANSPORT, 0x33), 0x9000);
    assert_eq!(
        v.send(
            &mut card,
            cmd(0x80, 0xD8, 0x30, 0x81, &put_key_data(vendor, &K))
        )
        .sw,
        0x9000
    );
    assert_eq!(v.authenticate(&mut card, vendor, 0x33), 0x9000);
    assert_eq!(
        v.send(
            &mut card,
            cmd(
                0x80,
                0xD8,
                0x00,
                0x01,
                &put_one_key_data(0x40, 0x88, &PURSE_KEY, &SSD_DEK)
            )
        )
        .sw,
        0x9000
    );
    (card, v)
}

fn vendor() -> StaticKeys {
    StaticKeys {
        kvn: 0x01,
        enc: [0x1E; 16],
        mac: [0x1A; 16],
        dek: SSD_DEK,
    }
}

fn personalise_purse(card: &mut Card<RamStorage>, v: &mut Terminal) {
    let mut ip = vec![0, 0, PURSE.len() as u8];
    ip.extend_from_slice(&PURSE);
    ip.extend_from_slice(&[0, 0, 0]);
    assert_eq!(v.send(card, cmd(0x80, 0xE6, 0x20, 0x00, &ip)).sw, 0x9000);
    // Block 0, plain BER-TLV: maximum balance 100000.
    assert_eq!(
        v.send(
            card,
            cmd(
                0x80,
                0xE2,
                0x10,
                0x00,
                &[0xDF, 0x01, 0x04, 0x00, 0x01, 0x86, 0xA0]
            )
        )
        .sw,
        0x9000
    );
    // Block 1, last, encrypted under the SSD's DEK: initial balance 100, purse key handle 40/01.
    let mut clear = vec![
        0xDF, 0x02, 0x04, 0, 0, 0, 100, 0xDF, 0x03, 0x02, 0x40, 0x01, 0x80,
    ];
    while clear.len() % 16 != 0 {
        clear.push(0);
    }
    let enc = gp_core::scp03::encrypt_key_data(&AesKey::from_slice(&SSD_DEK).unwrap(), &clear);
    assert_eq!(v.send(card, cmd(0x80, 0xE2, 0xF0, 0x01, &enc)).sw, 0x9000);
}

fn mac(counter: u32, value: u32) -> Vec<u8> {
    let mut d = counter.to_be_bytes().to_vec();
    d.extend_from_slice(&value.to_be_bytes());
    gp_core::dap::dap_aes(&AesKey::from_slice(&PURSE_KEY).unwrap(), &d)[..8].to_vec()
}

fn select_purse(card: &mut Card<RamStorage>) -> u16 {
    let mut a = vec![0x00, 0xA4, 0x04, 0x00, PURSE.len() as u8];
    a.extend_from_slice(&PURSE);
    sw(&card.process(&a))
}

#[test]
fn purse_personalised_through_its_ssd_and_used() {
    let (mut card, mut v) = setup(0x00);
    // Not personalised yet: selectable, but refuses to work.
    assert_eq!(select_purse(&mut card), 0x9000);
    assert_eq!(card.process(&[0x80, 0x5C, 0x00, 0x00, 0x08]), [0x69, 0x85]);
    assert_eq!(sw(&v.select(&mut card, &SSD)), 0x9000);
    let vendor = StaticKeys {
        kvn: 0x01,
        enc: [0x1E; 16],
        mac: [0x1A; 16],
        dek: SSD_DEK,
    };
    assert_eq!(v.authenticate(&mut card, vendor, 0x33), 0x9000);
    personalise_purse(&mut card, &mut v);
    let app = card
        .state()
        .registry
        .applications
        .iter()
        .find(|a| a.aid.as_bytes() == PURSE)
        .unwrap();
    assert_eq!(app.life_cycle.code(), 0x0F);

    assert_eq!(select_purse(&mut card), 0x9000);
    let r = card.process(&[0x80, 0x5C, 0x00, 0x00, 0x08]);
    assert_eq!(r, [0, 0, 0, 100, 0, 0, 0, 0, 0x90, 0x00]);
    // DEBIT 30: new balance, counter, certificate under the purse key (computed by the SSD).
    let r = card.process(&[0x80, 0x54, 0x00, 0x00, 0x04, 0, 0, 0, 30, 0x00]);
    assert_eq!(&r[..8], &[0, 0, 0, 70, 0, 0, 0, 1]);
    assert_eq!(&r[8..16], &mac(1, 70)[..]);
    // CREDIT 50 authenticated by the issuer of value.
    let mut credit = vec![0x80, 0x52, 0x00, 0x00, 0x0C, 0, 0, 0, 50];
    credit.extend_from_slice(&mac(1, 50));
    credit.push(0x00);
    assert_eq!(
        card.process(&credit),
        [0, 0, 0, 120, 0, 0, 0, 2, 0x90, 0x00]
    );
    // Replaying it fails (the counter moved).
    assert_eq!(card.process(&credit), [0x69, 0x82]);
    // Insufficient funds.
    assert_eq!(
        card.process(&[0x80, 0x54, 0x00, 0x00, 0x04, 0, 0, 1, 0, 0x00]),
        [0x69, 0x85]
    );
    // The state survives power loss.
    let before = card.state().clone();
    let card = Card::boot(card.into_storage()).unwrap();
    assert_eq!(card.state(), &before);
}

#[test]
fn a_purse_under_attack_locks_itself_never_the_card() {
    // Even with the Card Lock privilege, bad MACs from any terminal lock only the purse.
    for privileges in [0x10u8, 0x00] {
        let (mut card, mut v) = setup(privileges);
        personalise_purse(&mut card, &mut v);
        assert_eq!(select_purse(&mut card), 0x9000);
        let mut forged = vec![0x80, 0x52, 0x00, 0x00, 0x0C, 0, 0, 0, 50];
        forged.extend_from_slice(&[0u8; 8]);
        for _ in 0..3 {
            assert_eq!(card.process(&forged), [0x69, 0x82]);
        }
        let app = card
            .state()
            .registry
            .applications
            .iter()
            .find(|a| a.aid.as_bytes() == PURSE)
            .unwrap();
        assert!(app.life_cycle.is_locked());
        assert_eq!(card.state().life_cycle, CardLifeCycle::Secured);
        // The locked purse answers nothing more, and cannot be selected again.
        assert_eq!(card.process(&[0x80, 0x5C, 0x00, 0x00, 0x08]), [0x69, 0x85]);
        assert_eq!(select_purse(&mut card), 0x6A82);
        // Its security domain unlocks it.
        assert_eq!(sw(&v.select(&mut card, &SSD)), 0x9000);
        assert_eq!(v.authenticate(&mut card, vendor(), 0x33), 0x9000);
        assert_eq!(
            v.send(&mut card, cmd(0x80, 0xF0, 0x40, 0x0F, &PURSE)).sw,
            0x9000
        );
        assert_eq!(select_purse(&mut card), 0x9000);
    }
}

#[test]
fn store_data_needs_the_channel_and_the_order() {
    let (mut card, mut v) = setup(0x00);
    let mut ip = vec![0, 0, PURSE.len() as u8];
    ip.extend_from_slice(&PURSE);
    ip.extend_from_slice(&[0, 0, 0]);
    // The ISD cannot personalise an application associated with the SSD.
    let mut t = Terminal::new();
    t.select_isd(&mut card);
    assert_eq!(t.authenticate(&mut card, ISSUER, 0x33), 0x9000);
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xE6, 0x20, 0x00, &ip)).sw,
        0x6A88
    );
    // Through the SSD: a block out of order ends the session.
    assert_eq!(sw(&v.select(&mut card, &SSD)), 0x9000);
    let vendor = StaticKeys {
        kvn: 0x01,
        enc: [0x1E; 16],
        mac: [0x1A; 16],
        dek: SSD_DEK,
    };
    assert_eq!(v.authenticate(&mut card, vendor, 0x33), 0x9000);
    assert_eq!(
        v.send(&mut card, cmd(0x80, 0xE6, 0x20, 0x00, &ip)).sw,
        0x9000
    );
    assert_eq!(
        v.send(
            &mut card,
            cmd(0x80, 0xE2, 0x90, 0x01, &[0xDF, 0x01, 0x04, 0, 0, 0, 1])
        )
        .sw,
        0x6A86
    );
    // Incomplete data on the last block is refused and changes nothing.
    let before = card.state().clone();
    assert_eq!(
        v.send(&mut card, cmd(0x80, 0xE6, 0x20, 0x00, &ip)).sw,
        0x9000
    );
    assert_eq!(
        v.send(
            &mut card,
            cmd(0x80, 0xE2, 0x90, 0x00, &[0xDF, 0x01, 0x04, 0, 0, 0, 1])
        )
        .sw,
        0x6A80
    );
    assert_eq!(card.state(), &before);
    // The ISD's own data: IIN and CIN.
    t.select_isd(&mut card);
    assert_eq!(t.authenticate(&mut card, ISSUER, 0x33), 0x9000);
    assert_eq!(
        t.send(
            &mut card,
            cmd(
                0x80,
                0xE2,
                0x90,
                0x00,
                &[0x42, 0x03, 0x12, 0x34, 0x56, 0x45, 0x02, 0xAB, 0xCD]
            )
        )
        .sw,
        0x9000
    );
    let r = t.send(&mut card, cmd(0x80, 0xCA, 0x00, 0x42, &[]));
    assert_eq!(r.data, [0x42, 0x03, 0x12, 0x34, 0x56]);
    let r = t.send(&mut card, cmd(0x80, 0xCA, 0x00, 0x45, &[]));
    assert_eq!(r.data, [0x45, 0x02, 0xAB, 0xCD]);
}
