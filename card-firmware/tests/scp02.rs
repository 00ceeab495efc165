//! SCP02 (i=55 and i=15, 3DES) from the card's side, with gp-core's host session.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use card_firmware::keys::ScpConfig;
use card_firmware::lifecycle::CardLifeCycle;
use card_firmware::state::FabSettings;
use card_firmware::storage::RamStorage;
use card_firmware::Card;
use gp_core::apdu::{CommandApdu, ResponseApdu};
use gp_core::keys::Des3Key;
use gp_core::scp02;

const K: [u8; 16] = [
    0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F,
];

fn card(i: u8) -> Card<RamStorage> {
    let fab = FabSettings {
        scp: ScpConfig { scp: 0x02, i },
        kvn: 0x20,
        key: K,
        kdd: [0, 0, 0x74, 0x74, 0x6E, 0x6E, 0x6E, 0x62, 0x62, 0x62],
        rng_seed: [9; 16],
    };
    Card::format(RamStorage::new(32 * 1024, 128), &fab).unwrap()
}

fn sw(r: &[u8]) -> u16 {
    u16::from_be_bytes([r[r.len() - 2], r[r.len() - 1]])
}

fn h(s: &str) -> Vec<u8> {
    hex::decode(s.replace(' ', "")).unwrap()
}

/// INITIALIZE UPDATE + EXTERNAL AUTHENTICATE; returns the session and the sequence counter.
fn open(
    card: &mut Card<RamStorage>,
    kvn: u8,
    keys: [[u8; 16]; 3],
    level: u8,
) -> (scp02::Session, [u8; 2]) {
    let hc = [0xD5, 0xAD, 0x53, 0x9A, 0x60, 0xCA, 0x5E, 0x72];
    let mut iu = vec![0x80, 0x50, kvn, 0x00, 0x08];
    iu.extend_from_slice(&hc);
    iu.push(0x00);
    let r = card.process(&iu);
    assert_eq!(sw(&r), 0x9000, "INITIALIZE UPDATE");
    let iur = scp02::InitializeUpdateResponse::parse(&r[..r.len() - 2]).unwrap();
    let [mut e, mut m, mut d] = keys.map(|k| Des3Key::from_slice(&k).unwrap());
    let sk = scp02::derive_session_keys(&mut e, &mut m, &mut d, iur.sequence_counter).unwrap();
    scp02::verify_card_cryptogram(
        &sk,
        &hc,
        iur.sequence_counter,
        &iur.card_challenge,
        &iur.card_cryptogram,
    )
    .unwrap();
    let host = scp02::host_cryptogram(&sk, &hc, iur.sequence_counter, &iur.card_challenge);
    let mut s =
        scp02::Session::host(sk, scp02::SecurityLevel::parse_scp02(level).unwrap()).unwrap();
    let r = card.process(&s.external_authenticate(&host).to_bytes());
    assert_eq!(r, [0x90, 0x00], "EXTERNAL AUTHENTICATE");
    (s, iur.sequence_counter)
}

fn send(card: &mut Card<RamStorage>, s: &mut scp02::Session, cmd: CommandApdu) -> ResponseApdu {
    let raw = card.process(&s.wrap(&cmd).unwrap().to_bytes());
    s.unwrap_response(&ResponseApdu::parse(&raw).unwrap())
        .unwrap()
}

fn c(ins: u8, p1: u8, p2: u8, data: &[u8]) -> CommandApdu {
    CommandApdu::new(0x80, ins, p1, p2, data.to_vec(), Some(256))
}

#[test]
fn put_key_vector_under_s_dek_seq_0000() {
    // GP-FACTS: PUT KEY of K under S-DEK(seq 0000) → 80 10 EFBEE6C6D99D7B70BDE9D7E927F020AF 03 8BAF47.
    let mut card = card(0x55);
    let (mut s, seq) = open(&mut card, 0x20, [K; 3], 0x01);
    assert_eq!(seq, [0, 0]);
    let field = "8010EFBEE6C6D99D7B70BDE9D7E927F020AF038BAF47";
    let data = h(&format!("21{field}{field}{field}"));
    let r = send(&mut card, &mut s, c(0xD8, 0x20, 0x81, &data));
    assert_eq!(r.sw, 0x9000);
    assert_eq!(hex::encode_upper(&r.data), "218BAF478BAF478BAF47");
    // The counter counted the session. The set was wholly replaced but ENC and MAC are still K,
    // so the counter goes on: a restart would issue the same challenges and session keys again.
    assert_eq!(card.state().isd.sets[0].kvn, 0x21);
    assert_eq!(card.state().isd.sets[0].sequence_counter, 1);
}

#[test]
fn personalise_and_load_over_scp02() {
    for i in [0x55, 0x15] {
        let mut card = card(i);
        let (mut s, _) = open(&mut card, 0x20, [K; 3], 0x03);
        assert_eq!(card.state().isd.sets[0].sequence_counter, 1);
        // New per-card keys, 3DES-ECB under S-DEK, KCV 3DES.
        let new = [[0x11u8; 16], [0x22; 16], [0x33; 16]];
        let dek = s.keys().dek.clone();
        let mut data = vec![0x01];
        for k in &new {
            let kd = scp02::put_key_data(&dek, &Des3Key::from_slice(k).unwrap());
            data.extend_from_slice(&kd.to_bytes().unwrap());
        }
        let r = send(&mut card, &mut s, c(0xD8, 0x20, 0x81, &data));
        assert_eq!(r.sw, 0x9000, "PUT KEY i={i:02X}");
        assert_eq!(send(&mut card, &mut s, c(0xF0, 0x80, 0x0F, &[])).sw, 0x9000);
        assert_eq!(card.state().life_cycle, CardLifeCycle::Secured);

        let (mut s, seq) = open(&mut card, 0x01, new, 0x11);
        assert_eq!(seq, [0, 0]);
        let pkg = [0xD0, 0xD1, 0xD2, 0xD3, 0xD4];
        let applet = [0xD0, 0xD1, 0xD2, 0xD3, 0xD4, 0x01];
        let lfdb = card_firmware::cap::synthetic_lfdb(&pkg, [1, 1], &[&applet]);
        let hash = gp_core::dap::lfdb_hash(gp_core::dap::HashAlg::Sha1, &lfdb);
        let mut ifl = vec![5];
        ifl.extend_from_slice(&pkg);
        ifl.push(0);
        ifl.push(20);
        ifl.extend_from_slice(&hash);
        ifl.extend_from_slice(&[0, 0]);
        assert_eq!(
            send(&mut card, &mut s, c(0xE6, 0x02, 0x00, &ifl)).sw,
            0x9000
        );
        let mut file = vec![0xC4, lfdb.len() as u8];
        file.extend_from_slice(&lfdb);
        assert_eq!(
            send(&mut card, &mut s, c(0xE8, 0x80, 0x00, &file)).sw,
            0x9000
        );
        let mut inst = vec![5];
        inst.extend_from_slice(&pkg);
        inst.push(6);
        inst.extend_from_slice(&applet);
        inst.push(6);
        inst.extend_from_slice(&applet);
        inst.extend_from_slice(&[1, 0, 2, 0xC9, 0, 0]);
        assert_eq!(
            send(&mut card, &mut s, c(0xE6, 0x0C, 0x00, &inst)).sw,
            0x9000
        );
        let r = send(&mut card, &mut s, c(0xF2, 0x40, 0x02, &[0x4F, 0x00]));
        assert_eq!(r.sw, 0x9000);
        assert!(hex::encode_upper(&r.data).starts_with("E3"));
        assert!(hex::encode_upper(&r.data).contains("9F700107"));
        // GET DATA C1: two-byte SCP02 counter of the default key set.
        let r = card.process(&[0x80, 0xCA, 0x00, 0xC1, 0x00]);
        assert_eq!(
            sw(&r),
            0x6982,
            "plain command inside a C-MAC session aborts it"
        );
    }
}

#[test]
fn scp02_bad_mac_aborts() {
    let mut card = card(0x55);
    let (mut s, _) = open(&mut card, 0x20, [K; 3], 0x01);
    let mut wire = s
        .wrap(&c(0xF2, 0x80, 0x02, &[0x4F, 0x00]))
        .unwrap()
        .to_bytes();
    let n = wire.len();
    wire[n - 2] ^= 1;
    assert_eq!(sw(&card.process(&wire)), 0x6982);
    let wire = s
        .wrap(&c(0xF2, 0x80, 0x02, &[0x4F, 0x00]))
        .unwrap()
        .to_bytes();
    assert_eq!(sw(&card.process(&wire)), 0x6982);
}
