//! Card content management beyond the ISD: the combined INSTALL [for load, install and make
//! selectable] process, security domains with Authorized Management, Delegated Management with
//! tokens (ISD key KVN 70) and receipts (ISD key KVN 71), DELETE [key], and GET DATA `67`, `2F00`
//! and `C2`. Every refusal is checked to leave the card as it was.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

mod common;

use card_firmware::aid::Aid;
use card_firmware::lifecycle::AppLifeCycle;
use card_firmware::storage::RamStorage;
use card_firmware::Card;
use common::*;
use gp_core::apdu::ResponseApdu;
use gp_core::tlv::TlvReader;

const PURSE_PACKAGE: [u8; 6] = [0xF0, 0x50, 0x55, 0x52, 0x53, 0x45];
const PURSE_MODULE: [u8; 7] = [0xF0, 0x50, 0x55, 0x52, 0x53, 0x45, 0x01];
const PURSE: [u8; 8] = [0xF0, 0x50, 0x55, 0x52, 0x53, 0x45, 0x01, 0x01];

fn issued() -> (Card<RamStorage>, Terminal) {
    let mut card = new_card();
    let mut t = Terminal::new();
    personalise(&mut card, &mut t);
    assert_eq!(t.authenticate(&mut card, ISSUER, 0x33), 0x9000);
    (card, t)
}

/// Send and demand that a refusal changes nothing.
fn refused(card: &mut Card<RamStorage>, t: &mut Terminal, c: gp_core::apdu::CommandApdu) -> u16 {
    let before = card.state().clone();
    let r = t.send(card, c);
    assert_ne!(r.sw, 0x9000);
    assert_eq!(card.state(), &before, "a refused command changed the card");
    r.sw
}

fn has_app(card: &Card<RamStorage>, aid: &[u8]) -> bool {
    card.state()
        .registry
        .application(&Aid::new(aid).unwrap())
        .is_some()
}

fn has_load_file(card: &Card<RamStorage>, aid: &[u8]) -> bool {
    card.state()
        .registry
        .load_file(&Aid::new(aid).unwrap())
        .is_some()
}

fn send_loads(card: &mut Card<RamStorage>, t: &mut Terminal) -> Vec<ResponseApdu> {
    load_commands(&lfdb(), 32)
        .into_iter()
        .map(|c| t.send(card, c))
        .collect()
}

fn delete_data(aid: &[u8]) -> Vec<u8> {
    let mut d = vec![0x4F];
    lv(&mut d, aid);
    d
}

// ---- The combined process ----------------------------------------------------------------------

fn combined_first() -> Vec<u8> {
    with_token(&load_body(&PACKAGE, &[], &sha256(&lfdb())), &[])
}

fn combined_final(elf: &[u8]) -> Vec<u8> {
    with_token(&install_body(elf, &APPLET, &APPLET, &[0x00]), &[])
}

#[test]
fn combined_load_install_and_make_selectable() {
    let (mut card, mut t) = issued();
    // The final command without the first: nothing to finish.
    assert_eq!(
        refused(
            &mut card,
            &mut t,
            cmd(0x80, 0xE6, 0x0E, 0x03, &combined_final(&PACKAGE))
        ),
        0x6985
    );
    // P1 0E needs P2 01 or 03; P2 01/03 need P1 0E.
    assert_eq!(
        refused(
            &mut card,
            &mut t,
            cmd(0x80, 0xE6, 0x0E, 0x00, &combined_first())
        ),
        0x6A86
    );
    assert_eq!(
        refused(
            &mut card,
            &mut t,
            cmd(0x80, 0xE6, 0x02, 0x01, &combined_first())
        ),
        0x6A86
    );
    // A token in the first command is an error (it belongs to the final one).
    let body = load_body(&PACKAGE, &[], &sha256(&lfdb()));
    assert_eq!(
        refused(
            &mut card,
            &mut t,
            cmd(0x80, 0xE6, 0x0E, 0x01, &with_token(&body, &[1; 16]))
        ),
        0x6A80
    );

    // The whole process: nothing is registered until the final command.
    let r = t.send(&mut card, cmd(0x80, 0xE6, 0x0E, 0x01, &combined_first()));
    assert_eq!((r.sw, r.data.as_slice()), (0x9000, &[0x00][..]));
    for r in send_loads(&mut card, &mut t) {
        assert_eq!((r.sw, r.data.as_slice()), (0x9000, &[0x00][..]));
    }
    assert!(!has_load_file(&card, &PACKAGE));
    // No further LOAD once the file is complete; that ends the process.
    let before = card.state().clone();
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xE8, 0x80, 0x09, &[0xC4, 0x00]))
            .sw,
        0x6985
    );
    assert_eq!(
        t.send(
            &mut card,
            cmd(0x80, 0xE6, 0x0E, 0x03, &combined_final(&PACKAGE))
        )
        .sw,
        0x6985
    );
    assert_eq!(card.state(), &before);

    // Again, with a final command naming another load file: refused, nothing left.
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xE6, 0x0E, 0x01, &combined_first()))
            .sw,
        0x9000
    );
    send_loads(&mut card, &mut t);
    assert_eq!(
        refused(
            &mut card,
            &mut t,
            cmd(0x80, 0xE6, 0x0E, 0x03, &combined_final(&[9; 5]))
        ),
        0x6A80
    );
    assert!(!has_load_file(&card, &PACKAGE));

    // A module the load file does not have.
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xE6, 0x0E, 0x01, &combined_first()))
            .sw,
        0x9000
    );
    send_loads(&mut card, &mut t);
    let bad_module = with_token(&install_body(&PACKAGE, &[7; 8], &APPLET, &[0x00]), &[]);
    assert_eq!(
        refused(&mut card, &mut t, cmd(0x80, 0xE6, 0x0E, 0x03, &bad_module)),
        0x6A88
    );

    // Another INSTALL between the last LOAD and the final command abandons the process.
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xE6, 0x0E, 0x01, &combined_first()))
            .sw,
        0x9000
    );
    send_loads(&mut card, &mut t);
    let purse = install_and_make_selectable_data(&PURSE_PACKAGE, &PURSE_MODULE, &PURSE);
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xE6, 0x0C, 0x00, &purse)).sw,
        0x9000
    );
    assert_eq!(
        refused(
            &mut card,
            &mut t,
            cmd(0x80, 0xE6, 0x0E, 0x03, &combined_final(&PACKAGE))
        ),
        0x6985
    );
    assert!(!has_load_file(&card, &PACKAGE));

    // And the good one, leaving the executable load file and the module out of the final
    // command (GP allows it when the load file has one module).
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xE6, 0x0E, 0x01, &combined_first()))
            .sw,
        0x9000
    );
    send_loads(&mut card, &mut t);
    let short = with_token(&install_body(&[], &[], &APPLET, &[0x00]), &[]);
    let r = t.send(&mut card, cmd(0x80, 0xE6, 0x0E, 0x03, &short));
    assert_eq!((r.sw, r.data.as_slice()), (0x9000, &[0x00][..]));
    assert!(has_load_file(&card, &PACKAGE));
    let app = card
        .state()
        .registry
        .application(&Aid::new(&APPLET).unwrap())
        .unwrap();
    assert_eq!(app.life_cycle, AppLifeCycle::SELECTABLE);
    assert_eq!(app.load_file.as_bytes(), PACKAGE);
    // GET STATUS shows both.
    let r = t.send(&mut card, cmd(0x80, 0xF2, 0x10, 0x02, &[0x4F, 0x00]));
    assert_eq!(r.sw, 0x9000);
    assert!(r.data.windows(PACKAGE.len()).any(|w| w == PACKAGE));
}

// ---- Authorized Management -----------------------------------------------------------------------

#[test]
fn authorized_management_domain_manages_its_own_content() {
    let (mut card, mut v) = card_with_ssd([0x80, 0x40, 0x00]);
    let hash = sha256(&lfdb());
    // A token where none is due is an error; so is loading for another domain.
    let body = load_body(&PACKAGE, &[], &hash);
    assert_eq!(
        refused(
            &mut card,
            &mut v,
            cmd(0x80, 0xE6, 0x02, 0x00, &with_token(&body, &[1; 16]))
        ),
        0x6A80
    );
    let for_isd = with_token(
        &load_body(&PACKAGE, card_firmware::aid::ISD_AID.as_bytes(), &hash),
        &[],
    );
    assert_eq!(
        refused(&mut card, &mut v, cmd(0x80, 0xE6, 0x02, 0x00, &for_isd)),
        0x6985
    );
    // Load, install: the content is the SSD's.
    assert_eq!(
        v.send(
            &mut card,
            cmd(0x80, 0xE6, 0x02, 0x00, &with_token(&body, &[]))
        )
        .sw,
        0x9000
    );
    for r in send_loads(&mut card, &mut v) {
        assert_eq!((r.sw, r.data.as_slice()), (0x9000, &[0x00][..]));
    }
    let f = card
        .state()
        .registry
        .load_file(&Aid::new(&PACKAGE).unwrap())
        .unwrap();
    assert_eq!(f.associated_sd.as_bytes(), SSD);
    let install = with_token(&install_body(&PACKAGE, &APPLET, &APPLET, &[0x00]), &[]);
    let r = v.send(&mut card, cmd(0x80, 0xE6, 0x0C, 0x00, &install));
    assert_eq!((r.sw, r.data.as_slice()), (0x9000, &[0x00][..]));
    let app = card
        .state()
        .registry
        .application(&Aid::new(&APPLET).unwrap())
        .unwrap();
    assert_eq!(app.associated_sd.as_bytes(), SSD);
    // Applications from the built-in packages too, but no security domains.
    let purse = with_token(
        &install_body(&PURSE_PACKAGE, &PURSE_MODULE, &PURSE, &[0x00]),
        &[],
    );
    assert_eq!(
        v.send(&mut card, cmd(0x80, 0xE6, 0x0C, 0x00, &purse)).sw,
        0x9000
    );
    let ssd2 = with_token(
        &install_body(
            &SD_PACKAGE,
            &SD_MODULE,
            &[0xA0, 0, 0, 1, 0x51, 0x53, 0x50, 0x41, 0, 2],
            &[0x80],
        ),
        &[],
    );
    assert_eq!(
        refused(&mut card, &mut v, cmd(0x80, 0xE6, 0x0C, 0x00, &ssd2)),
        0x6A80
    );
    // GET STATUS from the SSD sees its content.
    let r = v.send(&mut card, cmd(0x80, 0xF2, 0x40, 0x02, &[0x4F, 0x00]));
    assert_eq!(r.sw, 0x9000);
    assert_eq!(TlvReader::new(&r.data).count(), 2);

    // The ISD's content is out of reach: an ISD application is "not found" for the SSD.
    let mut t = Terminal::new();
    t.select_isd(&mut card);
    assert_eq!(t.authenticate(&mut card, ISSUER, 0x33), 0x9000);
    let isd_app = install_and_make_selectable_data(
        &PURSE_PACKAGE,
        &PURSE_MODULE,
        &[0xF0, 0x50, 0x55, 0x52, 0x53, 0x45, 0x01, 0x02],
    );
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xE6, 0x0C, 0x00, &isd_app)).sw,
        0x9000
    );
    let mut v = Terminal::new();
    v.select(&mut card, &SSD);
    assert_eq!(v.authenticate(&mut card, TRANSPORT, 0x33), 0x9000);
    assert_eq!(
        refused(
            &mut card,
            &mut v,
            cmd(
                0x80,
                0xE4,
                0x00,
                0x00,
                &delete_data(&[0xF0, 0x50, 0x55, 0x52, 0x53, 0x45, 0x01, 0x02])
            )
        ),
        0x6A88
    );
    // Its own: the load file with its application.
    let r = v.send(
        &mut card,
        cmd(0x80, 0xE4, 0x00, 0x80, &delete_data(&PACKAGE)),
    );
    assert_eq!((r.sw, r.data.as_slice()), (0x9000, &[0x00][..]));
    assert!(!has_app(&card, &APPLET) && !has_load_file(&card, &PACKAGE));
    // Extradition and registry update stay with the ISD.
    let mut ext = Vec::new();
    lv(&mut ext, &SSD);
    ext.push(0);
    lv(&mut ext, &PURSE);
    ext.extend_from_slice(&[0, 0, 0]);
    assert_eq!(
        refused(&mut card, &mut v, cmd(0x80, 0xE6, 0x10, 0x00, &ext)),
        0x6985
    );
}

#[test]
fn domains_without_management_privileges_manage_nothing() {
    let (mut card, mut v) = card_with_ssd([0x80, 0x00, 0x00]);
    let body = load_body(&PACKAGE, &[], &sha256(&lfdb()));
    assert_eq!(
        refused(
            &mut card,
            &mut v,
            cmd(0x80, 0xE6, 0x02, 0x00, &with_token(&body, &[]))
        ),
        0x6985
    );
    assert_eq!(
        refused(
            &mut card,
            &mut v,
            cmd(0x80, 0xE4, 0x00, 0x00, &delete_data(&PURSE))
        ),
        0x6985
    );
    // Token Management and Receipt Generation are not given to SSDs on this card.
    let mut t = Terminal::new();
    t.select_isd(&mut card);
    assert_eq!(t.authenticate(&mut card, ISSUER, 0x33), 0x9000);
    let other = [0xA0, 0, 0, 1, 0x51, 0x53, 0x50, 0x41, 0, 9];
    assert_eq!(
        install_ssd(&mut card, &mut t, &other, [0x80, 0x20, 0x00]),
        0x6A80
    );
    assert_eq!(
        install_ssd(&mut card, &mut t, &other, [0x80, 0x00, 0x80]),
        0x6A80
    );
}

// ---- Delegated Management ------------------------------------------------------------------------

#[test]
fn delegated_management_with_tokens_and_receipts() {
    let (mut card, mut v) = card_with_ssd([0xA0, 0x00, 0x00]);
    let kdd = KDD;
    let hash = sha256(&lfdb());
    // The load token signs P1 P2 Lc' and the data up to the token length.
    let body = load_body(&PACKAGE, &[], &hash);
    assert_eq!(
        refused(
            &mut card,
            &mut v,
            cmd(0x80, 0xE6, 0x02, 0x00, &with_token(&body, &[]))
        ),
        0x6982
    );
    let mut bad = aes_token(0x02, 0x00, &body);
    bad[0] ^= 1;
    assert_eq!(
        refused(
            &mut card,
            &mut v,
            cmd(0x80, 0xE6, 0x02, 0x00, &with_token(&body, &bad))
        ),
        0x6982
    );
    // A token for another command (P1 differs) does not verify either.
    let other = aes_token(0x0E, 0x01, &body);
    assert_eq!(
        refused(
            &mut card,
            &mut v,
            cmd(0x80, 0xE6, 0x02, 0x00, &with_token(&body, &other))
        ),
        0x6982
    );
    // Delegated loads need the hash (the token binds the code through it).
    let no_hash = load_body(&PACKAGE, &[], &[]);
    assert_eq!(
        refused(
            &mut card,
            &mut v,
            cmd(
                0x80,
                0xE6,
                0x02,
                0x00,
                &with_token(&no_hash, &aes_token(0x02, 0, &no_hash))
            )
        ),
        0x6A80
    );
    let good = aes_token(0x02, 0x00, &body);
    let r = v.send(
        &mut card,
        cmd(0x80, 0xE6, 0x02, 0x00, &with_token(&body, &good)),
    );
    assert_eq!((r.sw, r.data.as_slice()), (0x9000, &[0x00][..]));
    let responses = send_loads(&mut card, &mut v);
    let (last, rest) = responses.split_last().unwrap();
    for r in rest {
        assert_eq!((r.sw, r.data.as_slice()), (0x9000, &[0x00][..]));
    }
    // Load receipt (C.5.1): confirmation data ‖ ELF AID ‖ SD AID.
    assert_eq!(last.sw, 0x9000);
    let mut fields = Vec::new();
    lv(&mut fields, &PACKAGE);
    lv(&mut fields, &SSD);
    check_receipt(&last.data, 1, &kdd, &fields);

    // Install and make selectable, with its token; receipt C.5.2.
    let ib = install_body(&PACKAGE, &APPLET, &APPLET, &[0x00]);
    assert_eq!(
        refused(
            &mut card,
            &mut v,
            cmd(0x80, 0xE6, 0x0C, 0x00, &with_token(&ib, &[]))
        ),
        0x6982
    );
    let r = v.send(
        &mut card,
        cmd(
            0x80,
            0xE6,
            0x0C,
            0x00,
            &with_token(&ib, &aes_token(0x0C, 0, &ib)),
        ),
    );
    assert_eq!(r.sw, 0x9000);
    let mut fields = Vec::new();
    lv(&mut fields, &PACKAGE);
    lv(&mut fields, &APPLET);
    check_receipt(&r.data, 2, &kdd, &fields);
    assert_eq!(
        card.state()
            .registry
            .application(&Aid::new(&APPLET).unwrap())
            .unwrap()
            .associated_sd
            .as_bytes(),
        SSD
    );

    // Delete with a token (tag 9E after the AID); receipt C.5.5.
    let dd = delete_data(&PACKAGE);
    assert_eq!(
        refused(&mut card, &mut v, cmd(0x80, 0xE4, 0x00, 0x80, &dd)),
        0x6982
    );
    let mut with = dd.clone();
    gp_core::tlv::write_tlv(&mut with, 0x9E, &aes_token(0x00, 0x80, &dd));
    let r = v.send(&mut card, cmd(0x80, 0xE4, 0x00, 0x80, &with));
    assert_eq!(r.sw, 0x9000);
    let mut fields = Vec::new();
    lv(&mut fields, &PACKAGE);
    check_receipt(&r.data, 3, &kdd, &fields);
    assert!(!has_load_file(&card, &PACKAGE) && !has_app(&card, &APPLET));
    assert_eq!(card.state().confirmation_counter, 3);

    // The ISD reports its confirmation counter (GET DATA C2).
    let mut t = Terminal::new();
    t.select_isd(&mut card);
    assert_eq!(t.authenticate(&mut card, ISSUER, 0x33), 0x9000);
    let r = t.send(&mut card, cmd(0x80, 0xCA, 0x00, 0xC2, &[]));
    assert_eq!(
        (r.sw, r.data.as_slice()),
        (0x9000, &[0xC2, 0x02, 0x00, 0x03][..])
    );
}

#[test]
fn delegated_management_needs_the_issuer_keys() {
    // No token key: 6A88; token key but no receipt key: the load is refused at its end.
    let mut card = new_card();
    let mut t = Terminal::new();
    personalise(&mut card, &mut t);
    assert_eq!(t.authenticate(&mut card, ISSUER, 0x33), 0x9000);
    assert_eq!(install_ssd(&mut card, &mut t, &SSD, [0xA0, 0, 0]), 0x9000);
    let mut v = Terminal::new();
    v.select(&mut card, &SSD);
    assert_eq!(v.authenticate(&mut card, TRANSPORT, 0x33), 0x9000);
    let body = load_body(&PACKAGE, &[], &sha256(&lfdb()));
    let install = cmd(
        0x80,
        0xE6,
        0x02,
        0x00,
        &with_token(&body, &aes_token(0x02, 0, &body)),
    );
    assert_eq!(refused(&mut card, &mut v, install.clone()), 0x6A88);

    t.select_isd(&mut card);
    assert_eq!(t.authenticate(&mut card, ISSUER, 0x33), 0x9000);
    put_dm_keys(&mut card, &mut t, true, false);
    v.select(&mut card, &SSD);
    assert_eq!(v.authenticate(&mut card, TRANSPORT, 0x33), 0x9000);
    assert_eq!(v.send(&mut card, install).sw, 0x9000);
    let before = card.state().clone();
    let last = send_loads(&mut card, &mut v).pop().unwrap();
    assert_eq!(last.sw, 0x6A88);
    assert_eq!(card.state(), &before);
}

#[test]
fn delegated_combined_process_signs_both_commands() {
    let (mut card, mut v) = card_with_ssd([0xA0, 0x00, 0x00]);
    let first = load_body(&PACKAGE, &[], &sha256(&lfdb()));
    let r = v.send(
        &mut card,
        cmd(0x80, 0xE6, 0x0E, 0x01, &with_token(&first, &[])),
    );
    assert_eq!(r.sw, 0x9000);
    let loads = send_loads(&mut card, &mut v);
    assert_eq!(
        loads.last().unwrap().data,
        [0x00],
        "no load receipt in the combined process"
    );
    let last = install_body(&PACKAGE, &APPLET, &APPLET, &[0x00]);
    // The token signs the first command's P1 P2 Lc' data, then the final one's.
    let mut input = vec![0x0E, 0x01, first.len() as u8];
    input.extend_from_slice(&first);
    input.extend_from_slice(&[0x0E, 0x03, last.len() as u8]);
    input.extend_from_slice(&last);
    let key = gp_core::keys::AesKey::from_slice(&TOKEN_KEY).unwrap();
    let token = gp_core::dap::dap_aes(&key, &input);
    // The final command's part alone is not enough.
    let wrong = aes_token(0x0E, 0x03, &last);
    assert_eq!(
        refused(
            &mut card,
            &mut v,
            cmd(0x80, 0xE6, 0x0E, 0x03, &with_token(&last, &wrong))
        ),
        0x6982
    );
    // (The refusal ended the process: start again.)
    assert_eq!(
        v.send(
            &mut card,
            cmd(0x80, 0xE6, 0x0E, 0x01, &with_token(&first, &[]))
        )
        .sw,
        0x9000
    );
    send_loads(&mut card, &mut v);
    let r = v.send(
        &mut card,
        cmd(0x80, 0xE6, 0x0E, 0x03, &with_token(&last, &token)),
    );
    assert_eq!(r.sw, 0x9000);
    // Combined receipt (C.5.6): ELF AID ‖ application AID ‖ SD AID.
    let mut fields = Vec::new();
    lv(&mut fields, &PACKAGE);
    lv(&mut fields, &APPLET);
    lv(&mut fields, &SSD);
    check_receipt(&r.data, 1, &KDD, &fields);
    assert!(has_app(&card, &APPLET) && has_load_file(&card, &PACKAGE));
}

/// Tokens under a 3DES key (retail MAC) and an ECDSA P-256 key (the issuer keeps the private
/// key; the card holds the public point).
#[test]
fn delegated_tokens_3des_and_ecdsa() {
    use p256::ecdsa::signature::Signer;
    // 3DES token key.
    let mut card = new_card();
    let mut t = Terminal::new();
    personalise(&mut card, &mut t);
    assert_eq!(t.authenticate(&mut card, ISSUER, 0x33), 0x9000);
    let des = [0x37u8; 16];
    let d = put_one_key_data(0x70, 0x80, &des, &NEW_DEK);
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xD8, 0x00, 0x01, &d)).sw,
        0x9000
    );
    put_dm_keys(&mut card, &mut t, false, true);
    assert_eq!(install_ssd(&mut card, &mut t, &SSD, [0xA0, 0, 0]), 0x9000);
    let mut v = Terminal::new();
    v.select(&mut card, &SSD);
    assert_eq!(v.authenticate(&mut card, TRANSPORT, 0x33), 0x9000);
    let body = load_body(&PACKAGE, &[], &sha256(&lfdb()));
    let mut input = vec![0x02, 0x00, body.len() as u8];
    input.extend_from_slice(&body);
    let des_key = gp_core::keys::Des3Key::from_slice(&des).unwrap();
    let token = gp_core::dap::retail_mac(&des_key, &input);
    assert_eq!(
        v.send(
            &mut card,
            cmd(0x80, 0xE6, 0x02, 0x00, &with_token(&body, &token))
        )
        .sw,
        0x9000
    );

    // ECDSA P-256: a fixed private scalar; the token is r ‖ s over the token input (SHA-256).
    let mut card = new_card();
    let mut t = Terminal::new();
    personalise(&mut card, &mut t);
    assert_eq!(t.authenticate(&mut card, ISSUER, 0x33), 0x9000);
    let signing = p256::ecdsa::SigningKey::from_slice(&[0x42; 32]).unwrap();
    let point = signing.verifying_key().to_encoded_point(false);
    let mut d = vec![0x70];
    gp_core::tlv::write_tlv(&mut d, 0xB0, point.as_bytes());
    d.extend_from_slice(&[0xF0, 0x01, 0x00, 0x00]);
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xD8, 0x00, 0x01, &d)).sw,
        0x9000
    );
    put_dm_keys(&mut card, &mut t, false, true);
    assert_eq!(install_ssd(&mut card, &mut t, &SSD, [0xA0, 0, 0]), 0x9000);
    let mut v = Terminal::new();
    v.select(&mut card, &SSD);
    assert_eq!(v.authenticate(&mut card, TRANSPORT, 0x33), 0x9000);
    let sig: p256::ecdsa::Signature = signing.sign(&input);
    let mut wrong = sig.to_bytes().to_vec();
    wrong[5] ^= 1;
    assert_eq!(
        refused(
            &mut card,
            &mut v,
            cmd(0x80, 0xE6, 0x02, 0x00, &with_token(&body, &wrong))
        ),
        0x6982
    );
    let r = v.send(
        &mut card,
        cmd(0x80, 0xE6, 0x02, 0x00, &with_token(&body, &sig.to_bytes())),
    );
    assert_eq!(r.sw, 0x9000);
}

// ---- DELETE [key] ----------------------------------------------------------------------------------

fn kvns(card: &Card<RamStorage>) -> Vec<(u8, Vec<u8>)> {
    card.state()
        .isd
        .sets
        .iter()
        .map(|s| (s.kvn, s.keys.iter().map(|k| k.id).collect()))
        .collect()
}

#[test]
fn delete_keys() {
    let (mut card, mut t) = issued();
    // A DAP-like set 73 with keys 1 and 2, and a second channel set 02.
    let mut two = put_one_key_data(0x73, 0x88, &[0x31; 16], &NEW_DEK);
    two.extend_from_slice(&put_one_key_data(0x73, 0x88, &[0x32; 16], &NEW_DEK)[1..]);
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xD8, 0x00, 0x81, &two)).sw,
        0x9000
    );
    let second = StaticKeys {
        kvn: 0x02,
        ..ISSUER
    };
    assert_eq!(
        t.send(
            &mut card,
            cmd(0x80, 0xD8, 0x00, 0x81, &put_key_data(second, &NEW_DEK))
        )
        .sw,
        0x9000
    );
    assert_eq!(
        kvns(&card),
        [
            (0x01, vec![1, 2, 3]),
            (0x73, vec![1, 2]),
            (0x02, vec![1, 2, 3])
        ]
    );

    // Malformed or mixed requests.
    assert_eq!(
        refused(
            &mut card,
            &mut t,
            cmd(0x80, 0xE4, 0x00, 0x00, &[0xD2, 0x02, 0x73, 0x00])
        ),
        0x6A80
    );
    assert_eq!(
        refused(
            &mut card,
            &mut t,
            cmd(
                0x80,
                0xE4,
                0x00,
                0x00,
                &[0xD2, 0x01, 0x73, 0xD2, 0x01, 0x73]
            )
        ),
        0x6A80
    );
    let mut mixed = delete_data(&PURSE);
    mixed.extend_from_slice(&[0xD2, 0x01, 0x73]);
    assert_eq!(
        refused(&mut card, &mut t, cmd(0x80, 0xE4, 0x00, 0x00, &mixed)),
        0x6A80
    );
    assert_eq!(
        refused(
            &mut card,
            &mut t,
            cmd(0x80, 0xE4, 0x00, 0x80, &[0xD2, 0x01, 0x73])
        ),
        0x6A80
    );
    // Nothing matches.
    assert_eq!(
        refused(
            &mut card,
            &mut t,
            cmd(0x80, 0xE4, 0x00, 0x00, &[0xD2, 0x01, 0x55])
        ),
        0x6A88
    );
    assert_eq!(
        refused(
            &mut card,
            &mut t,
            cmd(
                0x80,
                0xE4,
                0x00,
                0x00,
                &[0xD0, 0x01, 0x04, 0xD2, 0x01, 0x73]
            )
        ),
        0x6A88
    );

    // One key (D0 + D2), then a whole set (D2).
    let r = t.send(
        &mut card,
        cmd(
            0x80,
            0xE4,
            0x00,
            0x00,
            &[0xD0, 0x01, 0x02, 0xD2, 0x01, 0x73],
        ),
    );
    assert_eq!((r.sw, r.data.as_slice()), (0x9000, &[0x00][..]));
    assert_eq!(
        kvns(&card),
        [
            (0x01, vec![1, 2, 3]),
            (0x73, vec![1]),
            (0x02, vec![1, 2, 3])
        ]
    );
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xE4, 0x00, 0x00, &[0xD2, 0x01, 0x73]))
            .sw,
        0x9000
    );
    assert_eq!(kvns(&card), [(0x01, vec![1, 2, 3]), (0x02, vec![1, 2, 3])]);
    // The set that opened this session may go while another complete set remains.
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xE4, 0x00, 0x00, &[0xD2, 0x01, 0x01]))
            .sw,
        0x9000
    );
    assert_eq!(kvns(&card), [(0x02, vec![1, 2, 3])]);
    // The last complete channel set may not: D2 alone, or D0 alone (key 3 of every set).
    assert_eq!(
        refused(
            &mut card,
            &mut t,
            cmd(0x80, 0xE4, 0x00, 0x00, &[0xD2, 0x01, 0x02])
        ),
        0x6985
    );
    assert_eq!(
        refused(
            &mut card,
            &mut t,
            cmd(0x80, 0xE4, 0x00, 0x00, &[0xD0, 0x01, 0x03])
        ),
        0x6985
    );
    // The remaining set opens a session.
    assert_eq!(t.authenticate(&mut card, second, 0x33), 0x9000);

    // An SSD deletes its own keys through its own channel.
    assert_eq!(install_ssd(&mut card, &mut t, &SSD, [0x80, 0, 0]), 0x9000);
    let mut v = Terminal::new();
    v.select(&mut card, &SSD);
    assert_eq!(v.authenticate(&mut card, TRANSPORT, 0x33), 0x9000);
    let d = put_one_key_data(0x73, 0x88, &[0x31; 16], &K);
    assert_eq!(
        v.send(&mut card, cmd(0x80, 0xD8, 0x00, 0x01, &d)).sw,
        0x9000
    );
    assert_eq!(
        v.send(&mut card, cmd(0x80, 0xE4, 0x00, 0x00, &[0xD2, 0x01, 0x73]))
            .sw,
        0x9000
    );
    let ssd = card
        .state()
        .registry
        .application(&Aid::new(&SSD).unwrap())
        .unwrap();
    assert_eq!(ssd.domain.as_ref().unwrap().sets.len(), 1);
}

// ---- GET DATA 67, 2F00 ------------------------------------------------------------------------------

#[test]
fn get_data_card_capabilities_and_application_list() {
    let (mut card, mut t) = issued();
    let r = t.send(&mut card, cmd(0x80, 0xCA, 0x00, 0x67, &[]));
    assert_eq!(r.sw, 0x9000);
    let top: Vec<_> = TlvReader::new(&r.data).map(|x| x.unwrap()).collect();
    assert_eq!(top.len(), 1);
    assert_eq!(top[0].tag, 0x67);
    let inner: Vec<_> = top[0]
        .children()
        .map(|x| (x.unwrap().tag, x.unwrap().value.to_vec()))
        .collect();
    let tags: Vec<u32> = inner.iter().map(|(t, _)| *t).collect();
    assert_eq!(
        tags,
        [0xA0, 0xA0, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88]
    );
    assert_eq!(inner[2].1, [0xF9, 0x40, 0x40], "SSD privileges");
    assert_eq!(inner[3].1, [0x1E, 0x00, 0x00], "application privileges");
    assert_eq!(inner[4].1, [1, 2, 3, 4], "SHA-1, SHA-256, SHA-384, SHA-512");
    let scp03: Vec<_> = TlvReader::new(&inner[0].1)
        .map(|x| x.unwrap().value.to_vec())
        .collect();
    assert_eq!(
        scp03,
        [
            vec![0x03],
            vec![0x00, 0x10, 0x20, 0x30, 0x60, 0x70],
            vec![0x07]
        ]
    );

    // 2F00: nothing installed yet.
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xCA, 0x2F, 0x00, &[0x5C, 0x00]))
            .sw,
        0x6A88
    );
    let purse = install_and_make_selectable_data(&PURSE_PACKAGE, &PURSE_MODULE, &PURSE);
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xE6, 0x0C, 0x00, &purse)).sw,
        0x9000
    );
    assert_eq!(install_ssd(&mut card, &mut t, &SSD, [0x80, 0, 0]), 0x9000);
    let r = t.send(&mut card, cmd(0x80, 0xCA, 0x2F, 0x00, &[0x5C, 0x00]));
    assert_eq!(r.sw, 0x9000);
    let mut expected = Vec::new();
    for aid in [&PURSE[..], &SSD[..]] {
        let mut inner = Vec::new();
        gp_core::tlv::write_tlv(&mut inner, 0x4F, aid);
        gp_core::tlv::write_tlv(&mut expected, 0x61, &inner);
    }
    assert_eq!(r.data, expected);
    // The ISO form (00 CB) outside a session gives the same list; another tag list is refused.
    t.select_isd(&mut card);
    let r = card.process(&[0x00, 0xCB, 0x2F, 0x00, 0x02, 0x5C, 0x00, 0x00]);
    assert_eq!(&r[..r.len() - 2], expected.as_slice());
    assert_eq!(
        sw(&card.process(&[0x00, 0xCA, 0x2F, 0x00, 0x02, 0x5C, 0x01, 0x00])),
        0x6A80
    );
    // An SSD lists only its own applications (none).
    let mut v = Terminal::new();
    v.select(&mut card, &SSD);
    assert_eq!(
        v.send(&mut card, cmd(0x80, 0xCA, 0x2F, 0x00, &[0x5C, 0x00]))
            .sw,
        0x6A88
    );
}
