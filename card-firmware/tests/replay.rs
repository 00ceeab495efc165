//! Recorded secure channel sessions cannot be replayed after a key change that keeps the
//! channel keys (ENC, MAC): the sequence counter restarts only when a key set is created or
//! wholly replaced by new channel keys (Amendment D §6.2.2.1, GPC E.1.2), so pseudo-random
//! challenges (SCP03 i=70, SCP02 i=55) never repeat under the same keys.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

mod common;

use card_firmware::keys::ScpConfig;
use card_firmware::state::FabSettings;
use card_firmware::storage::RamStorage;
use card_firmware::Card;
use common::*;
use gp_core::apdu::{CommandApdu, ResponseApdu};
use gp_core::keys::{AesKey, Des3Key};
use gp_core::{scp02, scp03};

const PURSE_PACKAGE: [u8; 6] = [0xF0, 0x50, 0x55, 0x52, 0x53, 0x45];
const PURSE_MODULE: [u8; 7] = [0xF0, 0x50, 0x55, 0x52, 0x53, 0x45, 0x01];
const PURSE: [u8; 8] = [0xF0, 0x50, 0x55, 0x52, 0x53, 0x45, 0x01, 0x01];

fn install_purse() -> CommandApdu {
    cmd(
        0x80,
        0xE6,
        0x0C,
        0x00,
        &install_and_make_selectable_data(&PURSE_PACKAGE, &PURSE_MODULE, &PURSE),
    )
}

fn delete_purse() -> CommandApdu {
    let mut d = vec![0x4F, PURSE.len() as u8];
    d.extend_from_slice(&PURSE);
    cmd(0x80, 0xE4, 0x00, 0x00, &d)
}

fn has_purse(card: &Card<RamStorage>) -> bool {
    card.state()
        .registry
        .applications
        .iter()
        .any(|a| a.aid.as_bytes() == PURSE)
}

/// The wire bytes of a whole SCP03 session with the ISD's transport keys: INITIALIZE UPDATE,
/// EXTERNAL AUTHENTICATE (C-MAC) and a C-MACed INSTALL of the purse, as an eavesdropper records
/// them. The session is real: the card accepts every command.
fn record_scp03_session(card: &mut Card<RamStorage>) -> Vec<Vec<u8>> {
    let t = Terminal::new();
    let mut iu = vec![0x80, 0x50, 0x30, 0x00, 0x08];
    iu.extend_from_slice(&t.host_challenge);
    iu.push(0x00);
    let resp = card.process(&iu);
    assert_eq!(sw(&resp), 0x9000);
    let iur = scp03::InitializeUpdateResponse::parse(&resp[..resp.len() - 2]).unwrap();
    let mut enc = AesKey::from_slice(&K).unwrap();
    let mut mac = AesKey::from_slice(&K).unwrap();
    let sk = scp03::derive_session_keys(
        &mut enc,
        &mut mac,
        16,
        &t.host_challenge,
        &iur.card_challenge,
    )
    .unwrap();
    let hc = scp03::host_cryptogram(&sk, &t.host_challenge, &iur.card_challenge);
    let mut session = scp03::Session::host(sk, scp03::SecurityLevel::parse(0x01).unwrap());
    let ea = session.external_authenticate(&hc).to_bytes();
    assert_eq!(card.process(&ea), [0x90, 0x00]);
    let install = session.wrap(&install_purse()).unwrap().to_bytes();
    assert_eq!(sw(&card.process(&install)), 0x9000);
    vec![iu, ea, install]
}

/// Replay recorded wire bytes in order (after a fresh selection of the ISD); the status words.
fn replay(card: &mut Card<RamStorage>, recorded: &[Vec<u8>]) -> Vec<u16> {
    let mut t = Terminal::new();
    assert_eq!(sw(&t.select_isd(card)), 0x9000);
    recorded
        .iter()
        .map(|apdu| sw(&card.process(apdu)))
        .collect()
}

/// A new issuer session on the transport keys that deletes the purse and then runs `change`.
fn issuer_session(card: &mut Card<RamStorage>, change: CommandApdu) -> u16 {
    let mut t = Terminal::new();
    assert_eq!(sw(&t.select_isd(card)), 0x9000);
    assert_eq!(t.authenticate(card, TRANSPORT, 0x01), 0x9000);
    assert_eq!(t.send(card, delete_purse()).sw, 0x9000);
    t.send(card, change).sw
}

/// GET DATA `C1` (after selecting the ISD): the default key set's sequence counter.
fn counter(card: &mut Card<RamStorage>) -> Vec<u8> {
    assert_eq!(sw(&Terminal::new().select_isd(card)), 0x9000);
    let r = card.process(&[0x00, 0xCA, 0x00, 0xC1, 0x00]);
    assert_eq!(sw(&r), 0x9000);
    r[..r.len() - 2].to_vec()
}

#[test]
fn scp03_session_replayed_after_a_dek_only_put_key_is_refused() {
    let mut card = new_card();
    let recorded = record_scp03_session(&mut card);
    assert!(has_purse(&card));
    // PUT KEY of the DEK alone (P1 = KVN 30, P2 = key id 3): ENC and MAC stay.
    let dek_only = cmd(
        0x80,
        0xD8,
        0x30,
        0x03,
        &put_one_key_data(0x30, 0x88, &NEW_DEK, &K),
    );
    assert_eq!(issuer_session(&mut card, dek_only), 0x9000);
    assert!(!has_purse(&card));
    assert_eq!(counter(&mut card), [0, 0, 2], "the counter kept counting");
    let before = card.state().clone();
    let sws = replay(&mut card, &recorded);
    // INITIALIZE UPDATE answers (with a fresh challenge); the recorded host cryptogram no
    // longer matches, and the INSTALL after it finds no session.
    assert_eq!(sws[0], 0x9000);
    assert_ne!(sws[1], 0x9000, "recorded EXTERNAL AUTHENTICATE accepted");
    assert_ne!(sws[2], 0x9000, "recorded INSTALL accepted");
    assert!(!has_purse(&card));
    assert_eq!(card.state().registry, before.registry);
}

#[test]
fn whole_replacement_restarts_the_counter_and_a_same_key_replacement_does_not() {
    let mut card = new_card();
    let _ = record_scp03_session(&mut card);
    // The whole set replaced with the same ENC and MAC (new DEK, same KVN): no restart, since
    // challenges would repeat under unchanged channel keys.
    let same_channel = StaticKeys {
        kvn: 0x30,
        enc: K,
        mac: K,
        dek: NEW_DEK,
    };
    let put = cmd(0x80, 0xD8, 0x30, 0x81, &put_key_data(same_channel, &K));
    assert_eq!(issuer_session(&mut card, put), 0x9000);
    assert_eq!(counter(&mut card), [0, 0, 2]);
    // Wholly replaced by new channel keys: the counter restarts (Amendment D §6.2.2.1).
    let mut t = Terminal::new();
    assert_eq!(sw(&t.select_isd(&mut card)), 0x9000);
    assert_eq!(t.authenticate(&mut card, same_channel, 0x01), 0x9000);
    let fresh = StaticKeys {
        kvn: 0x30,
        ..ISSUER
    };
    let r = t.send(
        &mut card,
        cmd(0x80, 0xD8, 0x30, 0x81, &put_key_data(fresh, &NEW_DEK)),
    );
    assert_eq!(r.sw, 0x9000);
    assert_eq!(counter(&mut card), [0, 0, 0]);
    let mut t = Terminal::new();
    assert_eq!(sw(&t.select_isd(&mut card)), 0x9000);
    assert_eq!(t.authenticate(&mut card, fresh, 0x01), 0x9000);
    assert_eq!(counter(&mut card), [0, 0, 1]);
}

// ---- SCP02 (i=55: the challenge is derived from the session MAC key, so from the counter) -----

fn scp02_card() -> Card<RamStorage> {
    let fab = FabSettings {
        scp: ScpConfig { scp: 0x02, i: 0x55 },
        kvn: 0x20,
        key: K,
        kdd: KDD,
        rng_seed: [9; 16],
    };
    Card::format(RamStorage::new(32 * 1024, 128), &fab).unwrap()
}

/// INITIALIZE UPDATE + EXTERNAL AUTHENTICATE with the transport keys at C-MAC; the host session
/// and the two commands' wire bytes.
fn open_scp02(card: &mut Card<RamStorage>) -> (scp02::Session, Vec<Vec<u8>>) {
    let hc = [0xD5, 0xAD, 0x53, 0x9A, 0x60, 0xCA, 0x5E, 0x72];
    let mut iu = vec![0x80, 0x50, 0x20, 0x00, 0x08];
    iu.extend_from_slice(&hc);
    iu.push(0x00);
    let r = card.process(&iu);
    assert_eq!(sw(&r), 0x9000, "INITIALIZE UPDATE");
    let iur = scp02::InitializeUpdateResponse::parse(&r[..r.len() - 2]).unwrap();
    let [mut e, mut m, mut d] = [K; 3].map(|k| Des3Key::from_slice(&k).unwrap());
    let sk = scp02::derive_session_keys(&mut e, &mut m, &mut d, iur.sequence_counter).unwrap();
    let host = scp02::host_cryptogram(&sk, &hc, iur.sequence_counter, &iur.card_challenge);
    let mut s = scp02::Session::host(sk, scp02::SecurityLevel::parse_scp02(0x01).unwrap()).unwrap();
    let ea = s.external_authenticate(&host).to_bytes();
    assert_eq!(card.process(&ea), [0x90, 0x00], "EXTERNAL AUTHENTICATE");
    (s, vec![iu, ea])
}

fn send02(card: &mut Card<RamStorage>, s: &mut scp02::Session, cmd: CommandApdu) -> u16 {
    let raw = card.process(&s.wrap(&cmd).unwrap().to_bytes());
    ResponseApdu::parse(&raw).unwrap().sw
}

#[test]
fn scp02_session_replayed_after_a_dek_only_put_key_is_refused() {
    let mut card = scp02_card();
    let (mut s, mut recorded) = open_scp02(&mut card);
    let install = s.wrap(&install_purse()).unwrap().to_bytes();
    assert_eq!(sw(&card.process(&install)), 0x9000);
    recorded.push(install);
    assert!(has_purse(&card));
    // Second session: delete the purse, then PUT KEY of the DEK alone under the session DEK.
    let (mut s, _) = open_scp02(&mut card);
    assert_eq!(send02(&mut card, &mut s, delete_purse()), 0x9000);
    let mut data = vec![0x20];
    let dek = s.keys().dek.clone();
    let field = scp02::put_key_data(&dek, &Des3Key::from_slice(&[0x33; 16]).unwrap());
    data.extend_from_slice(&field.to_bytes().unwrap());
    assert_eq!(
        send02(&mut card, &mut s, cmd(0x80, 0xD8, 0x20, 0x03, &data)),
        0x9000
    );
    assert_eq!(card.state().isd.sets[0].sequence_counter, 2);
    let before = card.state().clone();
    let sws = replay(&mut card, &recorded);
    assert_eq!(sws[0], 0x9000);
    assert_ne!(sws[1], 0x9000, "recorded EXTERNAL AUTHENTICATE accepted");
    assert_ne!(sws[2], 0x9000, "recorded INSTALL accepted");
    assert!(!has_purse(&card));
    assert_eq!(card.state().registry, before.registry);
}
