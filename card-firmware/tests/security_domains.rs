//! Supplementary security domains: creation with privileges, their own secure channel and keys,
//! DAP verification (3DES and AES, GP-FACTS vectors over the real empty-2.2.1 CAP), mandated DAP,
//! ciphered load files, locking, and the wall between the ISD and an SSD's keys.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

mod common;

use std::io::Read;

use card_firmware::storage::RamStorage;
use card_firmware::Card;
use common::*;
use gp_core::tlv::TlvReader;

const SSD: [u8; 10] = [0xA0, 0, 0, 0x01, 0x51, 0x53, 0x50, 0x41, 0x00, 0x01];
const SD_PACKAGE: [u8; 7] = [0xA0, 0, 0, 0x01, 0x51, 0x53, 0x50];
const SD_MODULE: [u8; 8] = [0xA0, 0, 0, 0x01, 0x51, 0x53, 0x50, 0x41];
const EMPTY_PACKAGE: [u8; 5] = [1, 2, 3, 4, 5];
const EMPTY_APPLET: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

/// The LFDB of the empty-2.2.1 CAP without Descriptor, in GP's component order.
fn empty_cap_lfdb() -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/empty-2.2.1.cap");
    let file = std::fs::File::open(path).expect("fixture empty-2.2.1.cap");
    let mut zip = zip::ZipArchive::new(file).unwrap();
    let mut lfdb = Vec::new();
    for name in [
        "Header",
        "Directory",
        "Import",
        "Applet",
        "Class",
        "Method",
        "StaticField",
        "Export",
        "ConstantPool",
        "RefLocation",
    ] {
        if let Ok(mut f) = zip.by_name(&format!("testapplets/empty/javacard/{name}.cap")) {
            f.read_to_end(&mut lfdb).unwrap();
        }
    }
    // GP-FACTS: 211 bytes, SHA-1 BD74FF18…F485.
    assert_eq!(lfdb.len(), 211);
    assert_eq!(
        hex::encode_upper(gp_core::dap::lfdb_hash(gp_core::dap::HashAlg::Sha1, &lfdb)),
        "BD74FF188CFF4D78D95A6AC1952166338C49F485"
    );
    lfdb
}

/// A personalised card with the ISD authenticated.
fn issued() -> (Card<RamStorage>, Terminal) {
    let mut card = new_card();
    let mut t = Terminal::new();
    personalise(&mut card, &mut t);
    assert_eq!(t.authenticate(&mut card, ISSUER, 0x33), 0x9000);
    (card, t)
}

fn install_ssd(
    card: &mut Card<RamStorage>,
    t: &mut Terminal,
    privileges: &[u8],
    params: &[u8],
) -> u16 {
    let mut d = vec![SD_PACKAGE.len() as u8];
    d.extend_from_slice(&SD_PACKAGE);
    d.push(SD_MODULE.len() as u8);
    d.extend_from_slice(&SD_MODULE);
    d.push(SSD.len() as u8);
    d.extend_from_slice(&SSD);
    d.push(privileges.len() as u8);
    d.extend_from_slice(privileges);
    d.push(params.len() as u8 + 2);
    d.push(0xC9);
    d.push(params.len() as u8);
    d.extend_from_slice(params);
    d.push(0);
    t.send(card, cmd(0x80, 0xE6, 0x0C, 0x00, &d)).sw
}

/// Select the SSD, authenticate with its transport keys, and put keys through its own channel.
fn provision_ssd(card: &mut Card<RamStorage>, keys: &[Vec<u8>]) {
    let mut v = Terminal::new();
    assert_eq!(
        v.select(card, &SSD),
        [0x6F, 0x12, 0x84, 0x0A]
            .iter()
            .copied()
            .chain(SSD)
            .chain([0xA5, 0x04, 0x9F, 0x65, 0x01, 0xFF, 0x90, 0x00])
            .collect::<Vec<u8>>()
    );
    assert_eq!(v.authenticate(card, TRANSPORT, 0x33), 0x9000);
    for data in keys {
        let r = v.send(card, cmd(0x80, 0xD8, 0x00, 0x01, data));
        assert_eq!(r.sw, 0x9000, "PUT KEY into the SSD");
        assert_eq!(r.data[0], data[0]);
    }
}

fn load_file(daps: &[(&[u8], &[u8])], body: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    for (sd, sig) in daps {
        let mut inner = Vec::new();
        gp_core::tlv::write_tlv(&mut inner, 0x4F, sd);
        gp_core::tlv::write_tlv(&mut inner, 0xC3, sig);
        gp_core::tlv::write_tlv(&mut f, 0xE2, &inner);
    }
    f.extend_from_slice(body);
    f
}

fn c4(lfdb: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    gp_core::tlv::write_tlv(&mut out, 0xC4, lfdb);
    out
}

/// INSTALL [for load] naming `sd`, then LOAD of `file` in 100-byte blocks; the last status.
fn load(
    card: &mut Card<RamStorage>,
    t: &mut Terminal,
    package: &[u8],
    sd: &[u8],
    hash: &[u8],
    file: &[u8],
) -> u16 {
    let mut d = vec![package.len() as u8];
    d.extend_from_slice(package);
    d.push(sd.len() as u8);
    d.extend_from_slice(sd);
    d.push(hash.len() as u8);
    d.extend_from_slice(hash);
    d.extend_from_slice(&[0, 0]);
    let r = t.send(card, cmd(0x80, 0xE6, 0x02, 0x00, &d));
    if r.sw != 0x9000 {
        return r.sw;
    }
    let blocks: Vec<&[u8]> = file.chunks(100).collect();
    let mut last = 0;
    for (i, b) in blocks.iter().enumerate() {
        let p1 = if i + 1 == blocks.len() { 0x80 } else { 0x00 };
        last = t.send(card, cmd(0x80, 0xE8, p1, i as u8, b)).sw;
        if last != 0x9000 {
            break;
        }
    }
    last
}

#[test]
fn des_dap_verified_by_the_ssd() {
    let (mut card, mut t) = issued();
    assert_eq!(
        install_ssd(&mut card, &mut t, &[0xC0, 0x00, 0x00], &[]),
        0x9000
    );
    provision_ssd(&mut card, &[put_one_key_data(0x73, 0x80, &K, &K)]);

    let lfdb = empty_cap_lfdb();
    let sha1 = gp_core::dap::lfdb_hash(gp_core::dap::HashAlg::Sha1, &lfdb);
    let before = card.state().clone();
    // GP-FACTS (derived): 3DES DAP with K over the SHA-1 LFDBH.
    let good = h("D49391127619DCF5");
    let mut bad = good.clone();
    bad[7] ^= 1;
    assert_eq!(sw(&t.select_isd(&mut card)), 0x9000);
    assert_eq!(t.authenticate(&mut card, ISSUER, 0x33), 0x9000);
    assert_eq!(
        load(
            &mut card,
            &mut t,
            &EMPTY_PACKAGE,
            &SSD,
            &sha1,
            &load_file(&[(&SSD, &bad)], &c4(&lfdb))
        ),
        0x6982
    );
    assert_eq!(
        load(&mut card, &mut t, &EMPTY_PACKAGE, &SSD, &sha1, &c4(&lfdb)),
        0x6982,
        "DAP block missing"
    );
    assert_eq!(
        load(&mut card, &mut t, &EMPTY_PACKAGE, &SSD, &[], &c4(&lfdb)),
        0x6A80,
        "hash missing"
    );
    assert_eq!(card.state().registry, before.registry);
    assert_eq!(
        load(
            &mut card,
            &mut t,
            &EMPTY_PACKAGE,
            &SSD,
            &sha1,
            &load_file(&[(&SSD, &good)], &c4(&lfdb))
        ),
        0x9000
    );
    let f = card
        .state()
        .registry
        .load_files
        .iter()
        .find(|f| f.aid.as_bytes() == EMPTY_PACKAGE)
        .unwrap();
    assert_eq!(f.associated_sd.as_bytes(), SSD);
    assert_eq!(f.modules[0].as_bytes(), EMPTY_APPLET);

    // The application installed from it is associated with the SSD, whose GET STATUS sees it.
    let r = t.send(
        &mut card,
        cmd(
            0x80,
            0xE6,
            0x0C,
            0x00,
            &install_and_make_selectable_data(&EMPTY_PACKAGE, &EMPTY_APPLET, &EMPTY_APPLET),
        ),
    );
    assert_eq!(r.sw, 0x9000);
    let mut v = Terminal::new();
    v.select(&mut card, &SSD);
    assert_eq!(v.authenticate(&mut card, TRANSPORT, 0x03), 0x9000);
    let r = v.send(&mut card, cmd(0x80, 0xF2, 0x40, 0x02, &[0x4F, 0x00]));
    assert_eq!(r.sw, 0x9000);
    let entries: Vec<_> = TlvReader::new(&r.data).map(|e| e.unwrap()).collect();
    assert_eq!(entries.len(), 1);
    assert!(hex::encode_upper(&r.data).contains("0102030405060708"));
    // The SSD has no Global Registry: no ISD status, no other entries.
    assert_eq!(
        v.send(&mut card, cmd(0x80, 0xF2, 0x80, 0x02, &[0x4F, 0x00]))
            .sw,
        0x6A86
    );
}

#[test]
fn aes_dap_and_hash_strength() {
    let (mut card, mut t) = issued();
    assert_eq!(
        install_ssd(
            &mut card,
            &mut t,
            &[0xC0, 0x00, 0x00],
            &[0x81, 0x02, 0x03, 0x70]
        ),
        0x9000
    );
    provision_ssd(&mut card, &[put_one_key_data(0x73, 0x88, &K, &K)]);
    let lfdb = empty_cap_lfdb();
    let sha1 = gp_core::dap::lfdb_hash(gp_core::dap::HashAlg::Sha1, &lfdb);
    let sha256 = gp_core::dap::lfdb_hash(gp_core::dap::HashAlg::Sha256, &lfdb);
    assert_eq!(
        hex::encode_upper(&sha256),
        "8D5AC9E226E3F0A89457FB078470A9378DAED8B96BA6CBE839513CDF08D27A38"
    );
    // GP-FACTS (derived): AES DAP with K over the SHA-256 LFDBH.
    let dap = h("94B7D65FE750611D0B5E693CC6FD0152");
    t.select_isd(&mut card);
    assert_eq!(t.authenticate(&mut card, ISSUER, 0x33), 0x9000);
    // SHA-1 is too weak for an AES-128 DAP (GP Table C-3).
    let sig1 = gp_core::dap::dap_aes(&gp_core::keys::AesKey::from_slice(&K).unwrap(), &sha1);
    assert_eq!(
        load(
            &mut card,
            &mut t,
            &EMPTY_PACKAGE,
            &SSD,
            &sha1,
            &load_file(&[(&SSD, &sig1)], &c4(&lfdb))
        ),
        0x6A80
    );
    assert_eq!(
        load(
            &mut card,
            &mut t,
            &EMPTY_PACKAGE,
            &SSD,
            &sha256,
            &load_file(&[(&SSD, &dap)], &c4(&lfdb))
        ),
        0x9000
    );
}

#[test]
fn mandated_dap_applies_to_every_load() {
    let (mut card, mut t) = issued();
    assert_eq!(
        install_ssd(&mut card, &mut t, &[0xC1, 0x00, 0x00], &[]),
        0x9000
    );
    provision_ssd(&mut card, &[put_one_key_data(0x73, 0x88, &K, &K)]);
    t.select_isd(&mut card);
    assert_eq!(t.authenticate(&mut card, ISSUER, 0x33), 0x9000);
    let lfdb = lfdb();
    let hash = sha256(&lfdb);
    // A load to the ISD now needs the mandated DAP too (and therefore a hash).
    assert_eq!(
        load(&mut card, &mut t, &PACKAGE, &[], &[], &c4(&lfdb)),
        0x6A80
    );
    assert_eq!(
        load(&mut card, &mut t, &PACKAGE, &[], &hash, &c4(&lfdb)),
        0x6982
    );
    let dap = gp_core::dap::dap_aes(&gp_core::keys::AesKey::from_slice(&K).unwrap(), &hash);
    assert_eq!(
        load(
            &mut card,
            &mut t,
            &PACKAGE,
            &[],
            &hash,
            &load_file(&[(&SSD, &dap)], &c4(&lfdb))
        ),
        0x9000
    );
    // A second mandated-DAP authority is refused.
    let mut d = install_and_make_selectable_data(
        &SD_PACKAGE,
        &SD_MODULE,
        &[0xA0, 0, 0, 0x01, 0x51, 0x53, 0x50, 0x41, 0x00, 0x02],
    );
    let p = 1 + 7 + 1 + 8 + 1 + 10;
    d.splice(p..p + 2, [0x03, 0xC1, 0x00, 0x00]);
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xE6, 0x0C, 0x00, &d)).sw,
        0x6985
    );
}

#[test]
fn ciphered_load_file_decrypted_by_the_ssd() {
    let (mut card, mut t) = issued();
    let cipher_key = [0x5Cu8; 16];
    assert_eq!(
        install_ssd(&mut card, &mut t, &[0x80, 0x00, 0x40], &[]),
        0x9000
    );
    provision_ssd(&mut card, &[put_one_key_data(0x74, 0x88, &cipher_key, &K)]);
    t.select_isd(&mut card);
    assert_eq!(t.authenticate(&mut card, ISSUER, 0x33), 0x9000);
    let lfdb = lfdb();
    let hash = sha256(&lfdb);
    // Plain C4 to an SD that requires ciphered loads: refused.
    assert_eq!(
        load(&mut card, &mut t, &PACKAGE, &SSD, &hash, &c4(&lfdb)),
        0x6985
    );
    let icv = [0x11u8; 16];
    let key = gp_core::keys::AesKey::from_slice(&cipher_key).unwrap();
    let mut body = Vec::new();
    gp_core::tlv::write_tlv(&mut body, 0xD3, &icv);
    gp_core::tlv::write_tlv(
        &mut body,
        0xD4,
        &gp_core::dap::encrypt_lfdb_aes(&key, Some(&icv), &lfdb),
    );
    // Tampered ciphertext fails the hash (or the padding), one answer for both, and leaves
    // nothing.
    let mut tampered = body.clone();
    let n = tampered.len();
    tampered[n - 20] ^= 1;
    let before = card.state().registry.clone();
    assert!(matches!(
        load(&mut card, &mut t, &PACKAGE, &SSD, &hash, &tampered),
        0x6A80
    ));
    assert_eq!(card.state().registry, before);
    assert_eq!(
        load(&mut card, &mut t, &PACKAGE, &SSD, &hash, &body),
        0x9000
    );
    assert!(card
        .state()
        .registry
        .load_file(&card_firmware::aid::Aid::new(&PACKAGE).unwrap())
        .is_some());
}

/// An SSD with DAP Verification that requires ciphered load files (DAP key `73`, cipher key
/// `74`, both AES), the ISD authenticated again; the LFDB's SHA-256, the SSD's DAP over it, and
/// the LFDB ciphered under the SSD's key with [`ICV`].
fn dap_and_cipher_ssd() -> (Card<RamStorage>, Terminal, Vec<u8>, Vec<u8>, Vec<u8>) {
    let (mut card, mut t) = issued();
    let cipher_key = [0x5Cu8; 16];
    assert_eq!(
        install_ssd(&mut card, &mut t, &[0xC0, 0x00, 0x40], &[]),
        0x9000
    );
    provision_ssd(
        &mut card,
        &[
            put_one_key_data(0x73, 0x88, &K, &K),
            put_one_key_data(0x74, 0x88, &cipher_key, &K),
        ],
    );
    t.select_isd(&mut card);
    assert_eq!(t.authenticate(&mut card, ISSUER, 0x33), 0x9000);
    let lfdb = lfdb();
    let hash = sha256(&lfdb);
    let dap = gp_core::dap::dap_aes(&gp_core::keys::AesKey::from_slice(&K).unwrap(), &hash);
    let key = gp_core::keys::AesKey::from_slice(&cipher_key).unwrap();
    let ciphertext = gp_core::dap::encrypt_lfdb_aes(&key, Some(&ICV), &lfdb);
    (card, t, hash, dap.to_vec(), ciphertext)
}

const ICV: [u8; 16] = [0x11; 16];

/// `D3 {ICV} D4 {ciphertext}`.
fn ciphered_body(ciphertext: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    gp_core::tlv::write_tlv(&mut body, 0xD3, &ICV);
    gp_core::tlv::write_tlv(&mut body, 0xD4, ciphertext);
    body
}

#[test]
fn ciphered_load_file_is_decrypted_only_after_every_dap() {
    let (mut card, mut t, hash, dap, ciphertext) = dap_and_cipher_ssd();
    let before = card.state().registry.clone();
    let body = ciphered_body(&ciphertext);
    let n = ciphertext.len();
    // Tampered in the last block (the padding breaks) and in the first (the padding holds, the
    // hash does not).
    let mut c = ciphertext.clone();
    c[n - 1] ^= 0x01;
    let bad_padding = ciphered_body(&c);
    let mut c = ciphertext.clone();
    c[3] ^= 0x01;
    let bad_hash = ciphered_body(&c);
    let mut wrong_dap = dap.clone();
    wrong_dap[0] ^= 0x01;
    let other_hash = sha256(b"another load file");
    let other_dap =
        gp_core::dap::dap_aes(&gp_core::keys::AesKey::from_slice(&K).unwrap(), &other_hash);
    let refused_by_dap: [(&str, &[u8], Vec<u8>); 5] = [
        ("no DAP block", &hash, bad_padding.clone()),
        ("no DAP block, intact", &hash, body.clone()),
        (
            "wrong DAP",
            &hash,
            load_file(&[(&SSD, &wrong_dap)], &bad_padding),
        ),
        (
            "wrong DAP",
            &hash,
            load_file(&[(&SSD, &wrong_dap)], &bad_hash),
        ),
        (
            "DAP over another hash than the announced one",
            &hash,
            load_file(&[(&SSD, &other_dap)], &bad_hash),
        ),
    ];
    for (what, announced, file) in &refused_by_dap {
        assert_eq!(
            load(&mut card, &mut t, &PACKAGE, &SSD, announced, file),
            0x6982,
            "{what}"
        );
        assert_eq!(
            card.lfdb_decryptions(),
            0,
            "{what}: decrypted before the DAP"
        );
        assert_eq!(card.state().registry, before, "{what}");
    }
    // A DAP over a hash other than the announced one: the same.
    assert_eq!(
        load(
            &mut card,
            &mut t,
            &PACKAGE,
            &SSD,
            &other_hash,
            &load_file(&[(&SSD, &dap)], &bad_padding)
        ),
        0x6982
    );
    assert_eq!(card.lfdb_decryptions(), 0);
    // A valid DAP lets the decryption run once; bad padding and a wrong hash give one answer.
    for (i, tampered) in [&bad_padding, &bad_hash].into_iter().enumerate() {
        assert_eq!(
            load(
                &mut card,
                &mut t,
                &PACKAGE,
                &SSD,
                &hash,
                &load_file(&[(&SSD, &dap)], tampered)
            ),
            0x6A80
        );
        assert_eq!(card.lfdb_decryptions(), i as u32 + 1);
        assert_eq!(card.state().registry, before);
    }
    // Ciphertext that is not whole blocks: the same answer.
    assert_eq!(
        load(
            &mut card,
            &mut t,
            &PACKAGE,
            &SSD,
            &hash,
            &load_file(&[(&SSD, &dap)], &ciphered_body(&ciphertext[..n - 1]))
        ),
        0x6A80
    );
    assert_eq!(card.state().registry, before);
    // The genuine load file with its DAP goes in.
    let decrypted = card.lfdb_decryptions();
    assert_eq!(
        load(
            &mut card,
            &mut t,
            &PACKAGE,
            &SSD,
            &hash,
            &load_file(&[(&SSD, &dap)], &body)
        ),
        0x9000
    );
    assert_eq!(card.lfdb_decryptions(), decrypted + 1);
    assert!(card
        .state()
        .registry
        .load_file(&card_firmware::aid::Aid::new(&PACKAGE).unwrap())
        .is_some());
}

#[test]
fn ciphered_load_file_needs_the_lfdb_hash() {
    let (mut card, mut t, _, dap, ciphertext) = dap_and_cipher_ssd();
    let before = card.state().registry.clone();
    let body = ciphered_body(&ciphertext);
    for file in [body.clone(), load_file(&[(&SSD, &dap)], &body)] {
        assert_eq!(load(&mut card, &mut t, &PACKAGE, &SSD, &[], &file), 0x6A80);
        assert_eq!(card.lfdb_decryptions(), 0);
        assert_eq!(card.state().registry, before);
    }
}

#[test]
fn isd_cannot_reach_ssd_keys() {
    let (mut card, mut t) = issued();
    assert_eq!(
        install_ssd(&mut card, &mut t, &[0x80, 0x00, 0x00], &[]),
        0x9000
    );
    provision_ssd(&mut card, &[put_one_key_data(0x73, 0x88, &[0x77; 16], &K)]);
    let ssd_keys = card
        .state()
        .domain(&card_firmware::aid::Aid::new(&SSD).unwrap())
        .unwrap()
        .clone();
    t.select_isd(&mut card);
    assert_eq!(t.authenticate(&mut card, ISSUER, 0x33), 0x9000);
    // The ISD's key information lists its own keys only.
    let r = t.send(&mut card, cmd(0x80, 0xCA, 0x00, 0xE0, &[]));
    assert_eq!(r.sw, 0x9000);
    assert!(
        !hex::encode_upper(&r.data).contains("C004017388"),
        "{}",
        hex::encode_upper(&r.data)
    );
    // PUT KEY through the ISD only ever touches the ISD.
    let r = t.send(
        &mut card,
        cmd(
            0x80,
            0xD8,
            0x73,
            0x01,
            &put_one_key_data(0x73, 0x88, &[0x66; 16], &NEW_DEK),
        ),
    );
    assert_eq!(r.sw, 0x6A88);
    // INSTALL [for personalization] cannot target a security domain (it would hand the ISD
    // a channel into the SSD's data).
    assert_eq!(
        t.send(
            &mut card,
            cmd(
                0x80,
                0xE6,
                0x20,
                0x00,
                &[0, 0, 10, 0xA0, 0, 0, 1, 0x51, 0x53, 0x50, 0x41, 0, 1, 0, 0, 0]
            )
        )
        .sw,
        0x6985
    );
    assert_eq!(
        card.state()
            .domain(&card_firmware::aid::Aid::new(&SSD).unwrap())
            .unwrap(),
        &ssd_keys
    );
    // An SSD does not manage card content.
    let mut v = Terminal::new();
    v.select(&mut card, &SSD);
    assert_eq!(v.authenticate(&mut card, TRANSPORT, 0x33), 0x9000);
    let r = v.send(
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
}

#[test]
fn locking_and_personalised_state() {
    let (mut card, mut t) = issued();
    assert_eq!(
        install_ssd(&mut card, &mut t, &[0x90, 0x00, 0x00], &[]),
        0x9000
    );
    // The ISD locks the SSD: it cannot be selected; unlocking restores it.
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xF0, 0x40, 0x80, &SSD)).sw,
        0x9000
    );
    let mut v = Terminal::new();
    assert_eq!(sw(&v.select(&mut card, &SSD)), 0x6A82);
    assert_eq!(t.authenticate(&mut card, ISSUER, 0x33), 0x9000);
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xF0, 0x40, 0x00, &SSD)).sw,
        0x9000
    );
    assert_eq!(sw(&v.select(&mut card, &SSD)), 0x9000);
    assert_eq!(v.authenticate(&mut card, TRANSPORT, 0x33), 0x9000);
    // The SSD personalises itself (irreversible).
    assert_eq!(
        v.send(&mut card, cmd(0x80, 0xF0, 0x40, 0x0F, &SSD)).sw,
        0x9000
    );
    assert_eq!(
        v.send(&mut card, cmd(0x80, 0xF0, 0x40, 0x0F, &SSD)).sw,
        0x6A80
    );
    // With Card Lock it may lock the card; then only the ISD is selectable.
    assert_eq!(
        v.send(&mut card, cmd(0x80, 0xF0, 0x80, 0x7F, &[])).sw,
        0x9000
    );
    assert_eq!(sw(&v.select(&mut card, &SSD)), 0x6A82);
    assert_eq!(sw(&t.select_isd(&mut card)), 0x9000);
    assert_eq!(t.authenticate(&mut card, ISSUER, 0x33), 0x9000);
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xF2, 0x40, 0x02, &[0x4F, 0x00]))
            .sw,
        0x9000
    );
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xF0, 0x80, 0x0F, &[])).sw,
        0x9000
    );
    // Without Card Terminate it may not terminate the card.
    assert_eq!(sw(&v.select(&mut card, &SSD)), 0x9000);
    assert_eq!(v.authenticate(&mut card, TRANSPORT, 0x33), 0x9000);
    assert_eq!(
        v.send(&mut card, cmd(0x80, 0xF0, 0x80, 0xFF, &[])).sw,
        0x6982
    );
    // DELETE of the SSD by the ISD.
    t.select_isd(&mut card);
    assert_eq!(t.authenticate(&mut card, ISSUER, 0x33), 0x9000);
    let mut d = vec![0x4F, SSD.len() as u8];
    d.extend_from_slice(&SSD);
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xE4, 0x00, 0x00, &d)).sw,
        0x9000
    );
    assert_eq!(sw(&v.select(&mut card, &SSD)), 0x6A82);
}

// Asymmetric DAP keys and signatures over the empty CAP's LFDB hashes, made once with Python's
// `cryptography` package (RSA-1024 PKCS#1 v1.5 SHA-1; RSA-2048 PSS SHA-256 salt 32; ECDSA P-256
// SHA-256, r ‖ s). Only public values are kept here.
const RSA1024_N: &str = "98E4CB36D8086F0C930FE013DE27B51447068C144DF5E53253AF030723492ACC67BFC9516309F204363BFB43D5979D22BD2B15C95B5C9C3B1C765B0976EBC67965E98EBCB00B5639B0E64A12D1C97229BC4F9EA0A34C5CB635EDEDC1339251148243D3F2079C6314A0C74E0E44333BA01728F2FD611302940096A7AB836CC12B";
const RSA1024_SIG: &str = "333E82D04A8324B1EAB2C2180C516098C07BEF15682EE144831333F10E19C4E4C09D267CCF7FE96FB56346C0F14264777DF33F58DEE529A680220A6CABE577CA1B348C2D8FD394C7A4A0A6C83A2FE8EAE30B1CD9B3CCE4674E01EC1CA567C09EDEEF78892B10997A044A3ACE796AA2F8BB937FB5539BF9B2C4F7215D12E663BB";
const RSA2048_N: &str = "BF0F8F6F5919275EEEF69A56E84DE5F7EDF7E89C11E9FEA27A95992E6DB9EFB457F7D7CBC21A82E454C2674586379064B2AE776DADBD9D115C7769FD295D71569BE8CF8EADCD91AEB4C943A7B0A8A076382BF775A754A97BF1B2643693DF04516AFCFBC9865E08FA72426253D7AD1BB3C838F8368D651FE2331F9F5D69102779F6A82E2EDB87E0573B513B4DF32A96A06BB12C836E50FBD36DEDE5E8D2F3127C9977E699C7D66CA445F67C613D4D895421BD2C7E4A0DF971A437AFFE0BD5E7B36FCC3D1F04CDBDF46AAB0B1CF74E3826BCC2AF046DF76B3D55BAE623369414E3AC8445BD8E89808B31D7DC35DF9CD30CBCBE2CB2F67BEDB69B8AE3E4D3D774C7";
const RSA2048_SIG: &str = "3C87982CB5C3A66842D01A2EA84BE0FF9D18E2B0DC2FC040C1CC2027B05152921C2FA5605B171F4028300233E31609D4A6821FCD0054CA436762FA7220C7C2378A77CCF4205ABBA42A78DD88A58C11F44F0D5ABE43A2BDFFC867D3BD53CC3F55DBF88C10A456151B98E03813FDE04CBB557D750529C8D18AA71C92B40F9DFB34D7F3703224D8B7D16EF5260E3D90A86BEFD877D6460D480FD8AA5291D09DFDC77B27FC03C8F8A5C64E4AC11D01FAA091B03B2C4CF42EB2FF5AD2C68861BA581AF47F6A5333974B6F12A47F2D6BB88C86BCDA059F7FEFAD0599CCCF6E9A6EF29DF6B11E5E9B1D0D2A5CEB537E397C1F8824604836D1B12CB562BB7D76928A68C8";
const EC_POINT: &str = "04F92B5943B23F6AD3C57B0B49AE880C0D4ED1CECB4BEA94BAB22BB2D5287DC5F80A7A1740B0D5B12F39DAF83D9151E00593E1DAAAA02F0509EE9A358B75E209BC";
const EC_SIG: &str = "CEFC1690E04790DAEC96983861D056AEA3515EBC0B43B82C903F60FAADDC2E7E2B2AE0869A01B6F5659DCDC936BC3F299951BEA42CD1BD8DBE813A77A172BA0D";

fn rsa_key_data(n: &str) -> Vec<u8> {
    let n = h(n);
    let mut d = vec![0x73];
    gp_core::tlv::write_tlv(&mut d, 0xA1, &n);
    gp_core::tlv::write_tlv(&mut d, 0xA0, &[0x01, 0x00, 0x01]);
    d.push(0x00);
    d
}

fn ec_key_data() -> Vec<u8> {
    let mut d = vec![0x73];
    gp_core::tlv::write_tlv(&mut d, 0xB0, &h(EC_POINT));
    d.extend_from_slice(&[0xF0, 0x01, 0x00, 0x00]);
    d
}

fn asymmetric_case(key: Vec<u8>, alg: gp_core::dap::HashAlg, sig: &str) {
    let (mut card, mut t) = issued();
    assert_eq!(
        install_ssd(&mut card, &mut t, &[0xC0, 0x00, 0x00], &[]),
        0x9000
    );
    provision_ssd(&mut card, &[key]);
    // No KCV for public keys: the response is the KVN alone; key information names the parts.
    let lfdb = empty_cap_lfdb();
    let hash = gp_core::dap::lfdb_hash(alg, &lfdb);
    t.select_isd(&mut card);
    assert_eq!(t.authenticate(&mut card, ISSUER, 0x33), 0x9000);
    let good = h(sig);
    let mut bad = good.clone();
    bad[10] ^= 1;
    assert_eq!(
        load(
            &mut card,
            &mut t,
            &EMPTY_PACKAGE,
            &SSD,
            &hash,
            &load_file(&[(&SSD, &bad)], &c4(&lfdb))
        ),
        0x6982
    );
    assert_eq!(
        load(
            &mut card,
            &mut t,
            &EMPTY_PACKAGE,
            &SSD,
            &hash,
            &load_file(&[(&SSD, &good)], &c4(&lfdb))
        ),
        0x9000
    );
}

#[test]
fn rsa1024_pkcs1_dap() {
    asymmetric_case(
        rsa_key_data(RSA1024_N),
        gp_core::dap::HashAlg::Sha1,
        RSA1024_SIG,
    );
}

#[test]
fn rsa2048_pss_dap() {
    asymmetric_case(
        rsa_key_data(RSA2048_N),
        gp_core::dap::HashAlg::Sha256,
        RSA2048_SIG,
    );
}

#[test]
fn ecdsa_p256_dap() {
    asymmetric_case(ec_key_data(), gp_core::dap::HashAlg::Sha256, EC_SIG);
}

#[test]
fn public_key_information() {
    let (mut card, mut t) = issued();
    assert_eq!(
        install_ssd(&mut card, &mut t, &[0xC0, 0x00, 0x00], &[]),
        0x9000
    );
    provision_ssd(&mut card, &[ec_key_data()]);
    let mut v = Terminal::new();
    v.select(&mut card, &SSD);
    let r = card.process(&[0x80, 0xCA, 0x00, 0xE0, 0x00]);
    assert!(
        hex::encode_upper(&r).contains("C0060173B040F000"),
        "{}",
        hex::encode_upper(&r)
    );
}
