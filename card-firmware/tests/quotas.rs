//! Per-domain quotas (docs/card-firmware.md, "Quotas"): key sets, keys per set, key bytes,
//! install parameters and registry entries. Over quota a command answers `6A84` and changes
//! nothing, so no domain, even one without management privileges, can fill the card.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

mod common;

use card_firmware::quotas;
use card_firmware::storage::RamStorage;
use card_firmware::Card;
use common::*;
use gp_core::keys::AesKey;
use gp_core::scp03;

/// PUT KEY data for a new set `kvn` of `n` AES keys of `len` bytes, encrypted under `dek`.
fn aes_set(kvn: u8, n: usize, len: usize, dek: &[u8; 16]) -> Vec<u8> {
    let dek = AesKey::from_slice(dek).unwrap();
    let mut d = vec![kvn];
    for i in 0..n {
        let key = AesKey::from_slice(&vec![0x50 + i as u8; len]).unwrap();
        d.extend_from_slice(&scp03::put_key_data(&dek, &key).to_bytes().unwrap());
    }
    d
}

/// PUT KEY data for a new set `kvn` holding one RSA-4096 public key (in clear, no KCV).
fn rsa4096_set(kvn: u8) -> Vec<u8> {
    let mut d = vec![kvn];
    gp_core::tlv::write_tlv(&mut d, 0xA1, &[0xC5; 512]);
    gp_core::tlv::write_tlv(&mut d, 0xA0, &[0x01, 0x00, 0x01]);
    d.push(0x00);
    d
}

fn put(card: &mut Card<RamStorage>, t: &mut Terminal, data: &[u8], multiple: bool) -> u16 {
    let p2 = if multiple { 0x81 } else { 0x01 };
    t.send(card, cmd(0x80, 0xD8, 0x00, p2, data)).sw
}

#[test]
fn an_ssd_without_privileges_cannot_fill_the_card_with_keys() {
    // An SSD with no privilege beyond Security Domain, its owner authenticated.
    let (mut card, mut v) = card_with_ssd([0x80, 0x00, 0x00]);
    // Five keys in one set: over the keys-per-set quota.
    let before = card.state().clone();
    assert_eq!(
        put(&mut card, &mut v, &aes_set(0x01, 5, 16, &K), true),
        0x6A84
    );
    assert_eq!(card.state(), &before);
    // Seven more sets of four AES-256 keys: 8 sets, 48 + 7 × 128 = 944 key bytes.
    for kvn in 1..=7u8 {
        assert_eq!(
            put(&mut card, &mut v, &aes_set(kvn, 4, 32, &K), true),
            0x9000
        );
    }
    // A ninth set: over the key set quota.
    let before = card.state().clone();
    assert_eq!(
        put(&mut card, &mut v, &aes_set(0x08, 1, 16, &K), false),
        0x6A84
    );
    assert_eq!(card.state(), &before);
    // Key bytes: delete down to the transport set, then RSA-4096 public keys of 517 bytes
    // each; the second would pass 1,024 bytes.
    for kvn in 1..=7u8 {
        let r = v.send(&mut card, cmd(0x80, 0xE4, 0x00, 0x00, &[0xD2, 0x01, kvn]));
        assert_eq!(r.sw, 0x9000);
    }
    assert_eq!(put(&mut card, &mut v, &rsa4096_set(0x73), false), 0x9000);
    let before = card.state().clone();
    assert_eq!(put(&mut card, &mut v, &rsa4096_set(0x74), false), 0x6A84);
    assert_eq!(card.state(), &before);
    let ssd = card
        .state()
        .domain(&card_firmware::aid::Aid::new(&SSD).unwrap())
        .unwrap()
        .clone();
    let bytes: usize = ssd.sets.iter().flat_map(|s| &s.keys).map(|k| k.len()).sum();
    assert!(bytes <= quotas::MAX_DOMAIN_KEY_BYTES);
}

const PURSE_PACKAGE: [u8; 6] = [0xF0, 0x50, 0x55, 0x52, 0x53, 0x45];
const PURSE_MODULE: [u8; 7] = [0xF0, 0x50, 0x55, 0x52, 0x53, 0x45, 0x01];

fn purse(i: u8) -> Vec<u8> {
    vec![0xF0, 0x50, 0x55, 0x52, 0x53, 0x45, 0x01, 0x10, i]
}

/// INSTALL [for install and make selectable] of a purse instance with a `C9` of `params` bytes.
fn install_purse(i: u8, params: usize) -> Vec<u8> {
    let mut d = Vec::new();
    lv(&mut d, &PURSE_PACKAGE);
    lv(&mut d, &PURSE_MODULE);
    lv(&mut d, &purse(i));
    lv(&mut d, &[0x00]);
    let mut c9 = Vec::new();
    gp_core::tlv::write_tlv(&mut c9, 0xC9, &vec![0xAB; params]);
    lv(&mut d, &c9);
    d.push(0x00);
    d
}

#[test]
fn install_parameters_have_a_quota() {
    let mut card = new_card();
    let mut t = Terminal::new();
    personalise(&mut card, &mut t);
    assert_eq!(t.authenticate(&mut card, ISSUER, 0x33), 0x9000);
    let before = card.state().clone();
    let over = install_purse(0, quotas::MAX_INSTALL_PARAMS + 1);
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xE6, 0x0C, 0x00, &over)).sw,
        0x6A84
    );
    assert_eq!(card.state(), &before);
    let full = install_purse(0, quotas::MAX_INSTALL_PARAMS);
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xE6, 0x0C, 0x00, &full)).sw,
        0x9000
    );
}

#[test]
fn an_ssd_has_a_registry_entry_quota() {
    // Authorized Management: the SSD installs for itself.
    let (mut card, mut v) = card_with_ssd([0x80, 0x40, 0x00]);
    for i in 0..quotas::MAX_SSD_ENTRIES as u8 {
        let r = v.send(&mut card, cmd(0x80, 0xE6, 0x0C, 0x00, &install_purse(i, 0)));
        assert_eq!(r.sw, 0x9000, "entry {i}");
    }
    let before = card.state().clone();
    let r = v.send(
        &mut card,
        cmd(0x80, 0xE6, 0x0C, 0x00, &install_purse(0x40, 0)),
    );
    assert_eq!(r.sw, 0x6A84);
    // Nor may it start a load it could not keep.
    let lfdb = lfdb();
    let r = v.send(
        &mut card,
        cmd(
            0x80,
            0xE6,
            0x02,
            0x00,
            &with_token(&load_body(&PACKAGE, &[], &sha256(&lfdb)), &[]),
        ),
    );
    assert_eq!(r.sw, 0x6A84);
    assert_eq!(card.state(), &before);
    // The ISD cannot push the SSD over its quota by extradition either.
    let mut t = Terminal::new();
    t.select_isd(&mut card);
    assert_eq!(t.authenticate(&mut card, ISSUER, 0x33), 0x9000);
    assert_eq!(
        t.send(
            &mut card,
            cmd(0x80, 0xE6, 0x0C, 0x00, &install_purse(0x41, 0))
        )
        .sw,
        0x9000
    );
    let before = card.state().clone();
    let mut ex = Vec::new();
    lv(&mut ex, &SSD);
    ex.push(0);
    lv(&mut ex, &purse(0x41));
    ex.extend_from_slice(&[0, 0, 0]);
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xE6, 0x10, 0x00, &ex)).sw,
        0x6A84
    );
    assert_eq!(card.state(), &before);
}
