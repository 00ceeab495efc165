//! The built-in purse: installed, extradited to a vendor SSD, personalised through the SSD with
//! STORE DATA (plain and encrypted), used; its MACs separated by operation and bound to the card
//! (a property test over random command sequences); key handles that reach only keys the purse
//! was given; under attack it locks itself, never the card.
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

/// A purse MAC as its holder computes it: AES-CMAC (first 8 bytes) under the purse key over
/// `len(label) ‖ label ‖ len(AID) ‖ AID ‖ KDD ‖ data` (the card's application MAC framing).
fn purse_mac_on(kdd: &[u8; 10], label: &[u8], data: &[u8]) -> Vec<u8> {
    let mut input = vec![label.len() as u8];
    input.extend_from_slice(label);
    input.push(PURSE.len() as u8);
    input.extend_from_slice(&PURSE);
    input.extend_from_slice(kdd);
    input.extend_from_slice(data);
    gp_core::dap::dap_aes(&AesKey::from_slice(&PURSE_KEY).unwrap(), &input)[..8].to_vec()
}

/// The credit authorisation for `amount` at purse counter `counter` (this card).
fn credit_mac(counter: u32, amount: u32) -> Vec<u8> {
    let mut d = counter.to_be_bytes().to_vec();
    d.extend_from_slice(&amount.to_be_bytes());
    purse_mac_on(&KDD, b"credit", &d)
}

/// The certificate of a debit of `amount` leaving `balance` at counter `counter`.
fn debit_mac(counter: u32, amount: u32, balance: u32) -> Vec<u8> {
    let mut d = counter.to_be_bytes().to_vec();
    d.extend_from_slice(&amount.to_be_bytes());
    d.extend_from_slice(&balance.to_be_bytes());
    purse_mac_on(&KDD, b"debit", &d)
}

fn credit_apdu(amount: u32, mac: &[u8]) -> Vec<u8> {
    let mut credit = vec![0x80, 0x52, 0x00, 0x00, 0x0C];
    credit.extend_from_slice(&amount.to_be_bytes());
    credit.extend_from_slice(mac);
    credit.push(0x00);
    credit
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
    assert_eq!(&r[8..16], &debit_mac(1, 30, 70)[..]);
    // CREDIT 50 authenticated by the issuer of value.
    let credit = credit_apdu(50, &credit_mac(1, 50));
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

/// A SECURED card with the purse personalised through the vendor SSD (balance 100, counter 0),
/// its storage ready to boot again and again.
fn personalised_storage() -> RamStorage {
    let (mut card, mut v) = setup(0x00);
    personalise_purse(&mut card, &mut v);
    card.into_storage()
}

fn balance(card: &mut Card<RamStorage>) -> (u32, u32) {
    let r = card.process(&[0x80, 0x5C, 0x00, 0x00, 0x08]);
    assert_eq!(sw(&r), 0x9000);
    (
        u32::from_be_bytes(r[..4].try_into().unwrap()),
        u32::from_be_bytes(r[4..8].try_into().unwrap()),
    )
}

fn debit(card: &mut Card<RamStorage>, amount: u32) -> Vec<u8> {
    let mut a = vec![0x80, 0x54, 0x00, 0x00, 0x04];
    a.extend_from_slice(&amount.to_be_bytes());
    a.push(0x00);
    card.process(&a)
}

#[test]
fn a_debit_certificate_is_no_credit_authorisation() {
    let mut card = Card::boot(personalised_storage()).unwrap();
    assert_eq!(select_purse(&mut card), 0x9000);
    let r = debit(&mut card, 30);
    assert_eq!(&r[..8], &[0, 0, 0, 70, 0, 0, 0, 1]);
    let certificate = r[8..16].to_vec();
    // The counter is now 1 and the balance 70: the certificate covers the counter and the
    // balance, as a credit of 70 at counter 1 would. It must not verify as one.
    assert_eq!(card.process(&credit_apdu(70, &certificate)), [0x69, 0x82]);
    assert_eq!(card.process(&credit_apdu(30, &certificate)), [0x69, 0x82]);
    assert_eq!(balance(&mut card), (70, 1));
    assert!(!purse_of(card.state()).life_cycle.is_locked());
}

fn purse_of(state: &card_firmware::state::CardState) -> card_firmware::registry::Application {
    state
        .registry
        .application(&card_firmware::aid::Aid::new(&PURSE).unwrap())
        .unwrap()
        .clone()
}

#[test]
fn a_credit_for_another_card_or_framing_is_refused() {
    let mut card = Card::boot(personalised_storage()).unwrap();
    assert_eq!(select_purse(&mut card), 0x9000);
    let mut d = 0u32.to_be_bytes().to_vec();
    d.extend_from_slice(&50u32.to_be_bytes());
    // The same purse key and counter on a card with another KDD.
    let other_card = purse_mac_on(&[9; 10], b"credit", &d);
    assert_eq!(card.process(&credit_apdu(50, &other_card)), [0x69, 0x82]);
    // The bare MAC(counter ‖ amount) of the old framing.
    let bare = gp_core::dap::dap_aes(&AesKey::from_slice(&PURSE_KEY).unwrap(), &d)[..8].to_vec();
    assert_eq!(card.process(&credit_apdu(50, &bare)), [0x69, 0x82]);
    // The right one (this card, `credit`, counter 0) goes through.
    assert_eq!(
        card.process(&credit_apdu(50, &credit_mac(0, 50))),
        [0, 0, 0, 150, 0, 0, 0, 1, 0x90, 0x00]
    );
}

mod sequences {
    use super::*;
    use proptest::prelude::*;

    /// What a terminal (honest or not) sends the purse.
    #[derive(Debug, Clone)]
    enum Op {
        Balance,
        Debit(u32),
        /// The credit key holder authorises a credit at the purse's current counter.
        AuthorisedCredit(u32),
        /// The holder authorises a credit for some other counter.
        StaleCredit(u32, u32),
        /// Replay the n-th authorisation seen so far.
        Replay(usize),
        /// Present the n-th debit certificate seen so far as a credit authorisation, with the
        /// amount set to the certificate's balance or its amount.
        CertificateAsCredit(usize, bool),
        Forged(u32, [u8; 8]),
        Raw(u8, Vec<u8>),
        PowerCycle,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            Just(Op::Balance),
            (0u32..200).prop_map(Op::Debit),
            (0u32..1000).prop_map(Op::AuthorisedCredit),
            (0u32..1000, 0u32..8).prop_map(|(a, c)| Op::StaleCredit(a, c)),
            (0usize..8).prop_map(Op::Replay),
            (0usize..8, any::<bool>()).prop_map(|(n, b)| Op::CertificateAsCredit(n, b)),
            (0u32..1000, any::<[u8; 8]>()).prop_map(|(a, m)| Op::Forged(a, m)),
            (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..16))
                .prop_map(|(ins, d)| Op::Raw(ins, d)),
            Just(Op::PowerCycle),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Whatever terminals send, the balance rises only by the amount of an authorisation
        /// the credit key holder issued, once per authorisation.
        #[test]
        fn balance_rises_only_by_authorised_credits(ops in proptest::collection::vec(op(), 1..40)) {
            static STORAGE: std::sync::OnceLock<RamStorage> = std::sync::OnceLock::new();
            let storage = STORAGE.get_or_init(personalised_storage);
            let mut card = Card::boot(storage.clone()).unwrap();
            prop_assert_eq!(select_purse(&mut card), 0x9000);
            // Every credit authorisation the key holder issued: (counter, amount, apdu).
            let mut authorised: Vec<(u32, u32, Vec<u8>)> = Vec::new();
            let mut consumed: Vec<Vec<u8>> = Vec::new();
            // Debit certificates seen: (amount, balance, mac).
            let mut certificates: Vec<(u32, u32, Vec<u8>)> = Vec::new();
            let purse_aid = card_firmware::aid::Aid::new(&PURSE).unwrap();
            let locked = |c: &Card<RamStorage>| {
                c.state().registry.application(&purse_aid).unwrap().life_cycle.is_locked()
            };
            for op in ops {
                if locked(&card) {
                    break;
                }
                let (before, counter) = balance(&mut card);
                let apdu: Vec<u8> = match op {
                    Op::Balance => vec![0x80, 0x5C, 0x00, 0x00, 0x08],
                    Op::Debit(amount) => {
                        let r = debit(&mut card, amount);
                        if sw(&r) == 0x9000 {
                            let balance = u32::from_be_bytes(r[..4].try_into().unwrap());
                            certificates.push((amount, balance, r[8..16].to_vec()));
                        }
                        let (after, _) = balance(&mut card);
                        prop_assert!(after <= before);
                        continue;
                    }
                    Op::AuthorisedCredit(amount) => {
                        let a = credit_apdu(amount, &credit_mac(counter, amount));
                        authorised.push((counter, amount, a.clone()));
                        a
                    }
                    Op::StaleCredit(amount, c) => {
                        let a = credit_apdu(amount, &credit_mac(c, amount));
                        authorised.push((c, amount, a.clone()));
                        a
                    }
                    Op::Replay(n) => match authorised.get(n) {
                        Some((_, _, a)) => a.clone(),
                        None => continue,
                    },
                    Op::CertificateAsCredit(n, use_balance) => match certificates.get(n) {
                        Some((amount, balance, mac)) => {
                            credit_apdu(if use_balance { *balance } else { *amount }, mac)
                        }
                        None => continue,
                    },
                    Op::Forged(amount, mac) => credit_apdu(amount, &mac),
                    Op::Raw(ins, data) => {
                        let mut a = vec![0x80, ins, 0x00, 0x00, data.len() as u8];
                        a.extend_from_slice(&data);
                        a
                    }
                    Op::PowerCycle => {
                        card = Card::boot(card.into_storage()).unwrap();
                        prop_assert_eq!(select_purse(&mut card), 0x9000);
                        continue;
                    }
                };
                let r = card.process(&apdu);
                if locked(&card) {
                    break;
                }
                let (after, _) = balance(&mut card);
                if after > before {
                    // Only an authorisation the key holder issued for this counter, used for
                    // the first time, and for exactly the amount it names.
                    prop_assert_eq!(sw(&r), 0x9000);
                    let issued = authorised
                        .iter()
                        .find(|(c, _, a)| *a == apdu && *c == counter);
                    prop_assert!(issued.is_some(), "balance rose without an authorisation");
                    let (_, amount, _) = issued.unwrap();
                    prop_assert_eq!(after - before, *amount);
                    prop_assert!(!consumed.contains(&apdu), "an authorisation was used twice");
                    consumed.push(apdu);
                }
            }
        }
    }
}

#[test]
fn the_isd_learns_nothing_of_an_ssd_key_through_an_extradited_purse() {
    // The ISD installs a purse of its own and tries to give it keys it could later turn on the
    // vendor's SSD: a channel key handle is refused outright; an application key of its own
    // stays behind when the purse is extradited.
    let (mut card, _v) = setup(0x00);
    const OWN_PURSE: [u8; 8] = [0xF0, 0x50, 0x55, 0x52, 0x53, 0x45, 0x01, 0x02];
    let mut t = Terminal::new();
    t.select_isd(&mut card);
    assert_eq!(t.authenticate(&mut card, ISSUER, 0x33), 0x9000);
    let body = install_and_make_selectable_data(&PURSE_PACKAGE, &PURSE_MODULE, &OWN_PURSE);
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xE6, 0x0C, 0x00, &body)).sw,
        0x9000
    );
    // The ISD's own application key KVN 40 (the vendor SSD has its purse key there too).
    let d = put_one_key_data(0x40, 0x88, &[0x77; 16], &NEW_DEK);
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xD8, 0x00, 0x01, &d)).sw,
        0x9000
    );
    let mut ip = vec![0, 0, OWN_PURSE.len() as u8];
    ip.extend_from_slice(&OWN_PURSE);
    ip.extend_from_slice(&[0, 0, 0]);
    let perso = |t: &mut Terminal, card: &mut Card<RamStorage>, handle: [u8; 2]| {
        assert_eq!(t.send(card, cmd(0x80, 0xE6, 0x20, 0x00, &ip)).sw, 0x9000);
        let mut block = vec![
            0xDF, 0x01, 0x04, 0, 1, 0x86, 0xA0, 0xDF, 0x02, 0x04, 0, 0, 0, 100,
        ];
        block.extend_from_slice(&[0xDF, 0x03, 0x02, handle[0], handle[1]]);
        t.send(card, cmd(0x80, 0xE2, 0x90, 0x00, &block)).sw
    };
    // Handles to the ISD's channel keys (KVN 01: ENC, MAC, DEK), a DAP/token slot, or an
    // application key the ISD does not have: not keys for applications.
    for handle in [[0x01, 0x02], [0x01, 0x03], [0x70, 0x01], [0x41, 0x01]] {
        let before = card.state().clone();
        assert_eq!(perso(&mut t, &mut card, handle), 0x6A88, "{handle:02X?}");
        assert_eq!(card.state(), &before);
    }
    assert_eq!(perso(&mut t, &mut card, [0x40, 0x01]), 0x9000);
    let own = card_firmware::aid::Aid::new(&OWN_PURSE).unwrap();
    let given = |c: &Card<RamStorage>| c.state().registry.application(&own).unwrap().keys.clone();
    assert_eq!(given(&card).len(), 1);
    // Extradited to the vendor's SSD, whose KVN 40 key id 1 is the vendor's purse key.
    let mut ex = vec![SSD.len() as u8];
    ex.extend_from_slice(&SSD);
    ex.push(0);
    ex.push(OWN_PURSE.len() as u8);
    ex.extend_from_slice(&OWN_PURSE);
    ex.extend_from_slice(&[0, 0, 0]);
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xE6, 0x10, 0x00, &ex)).sw,
        0x9000
    );
    assert!(
        given(&card).is_empty(),
        "extradition drops the keys it was given"
    );
    // The purse is active but can compute nothing: no MAC under any vendor key leaves the card.
    let mut a = vec![0x00, 0xA4, 0x04, 0x00, OWN_PURSE.len() as u8];
    a.extend_from_slice(&OWN_PURSE);
    assert_eq!(sw(&card.process(&a)), 0x9000);
    let r = debit(&mut card, 1);
    assert_eq!(r, [0x6A, 0x88]);
    let mut d = 0u32.to_be_bytes().to_vec();
    d.extend_from_slice(&1u32.to_be_bytes());
    let vendor_mac = purse_mac_on(&KDD, b"credit", &d);
    assert_eq!(card.process(&credit_apdu(1, &vendor_mac)), [0x69, 0x82]);
}
