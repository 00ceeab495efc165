//! Hostile input: random APDU sequences (random bytes, and GP commands with random parameters
//! and data) against a card with an authenticated level-00 session, so commands get past the
//! secure channel into every handler. Nothing may panic; every response ends in a status word;
//! a refused command changes nothing; the committed state always survives a power cycle.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

mod common;

use card_firmware::Card;
use common::*;
use proptest::prelude::*;

fn apdu() -> impl Strategy<Value = Vec<u8>> {
    let raw = proptest::collection::vec(any::<u8>(), 0..300);
    let cla = prop_oneof![
        Just(0x80u8),
        Just(0x00),
        Just(0x84),
        Just(0x81),
        Just(0xC0),
        Just(0xE2),
        Just(0x5C),
        Just(0x54),
        any::<u8>()
    ];
    let ins = prop_oneof![
        Just(0xA4u8),
        Just(0x50),
        Just(0x82),
        Just(0xCA),
        Just(0xF2),
        Just(0xF0),
        Just(0xD8),
        Just(0xE6),
        Just(0xE8),
        Just(0xE4),
        Just(0xC0),
        any::<u8>()
    ];
    let data = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        // Plausible GP payloads: LV fields and TLVs with small lengths.
        proptest::collection::vec(
            prop_oneof![
                Just(0x4Fu8),
                Just(0x05),
                Just(0x08),
                Just(0xC4),
                Just(0xE2),
                Just(0x00),
                Just(0xC9),
                Just(0x88),
                Just(0x10)
            ],
            0..40
        ),
        Just(install_for_load_data(&PACKAGE, &[])),
        Just(vec![0x4F, 0x00]),
    ];
    let structured = (
        cla,
        ins,
        any::<u8>(),
        any::<u8>(),
        data,
        proptest::option::of(any::<u8>()),
    )
        .prop_map(|(cla, ins, p1, p2, data, le)| {
            let mut a = vec![cla, ins, p1, p2];
            if !data.is_empty() {
                a.push(data.len() as u8);
                a.extend_from_slice(&data);
            }
            if let Some(le) = le {
                a.push(le);
            }
            a
        });
    prop_oneof![1 => raw, 4 => structured]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_apdu_sequences(seq in proptest::collection::vec(apdu(), 1..40)) {
        let mut card = new_card();
        let mut t = Terminal::new();
        t.select_isd(&mut card);
        prop_assert_eq!(t.authenticate(&mut card, TRANSPORT, 0x00), 0x9000);
        for a in &seq {
            let before = card.state().clone();
            let r = card.process(a);
            prop_assert!(r.len() >= 2);
            let sw = u16::from_be_bytes([r[r.len() - 2], r[r.len() - 1]]);
            let accepted = sw == 0x9000 || sw == 0x6310 || (sw >> 8) == 0x61;
            let ins = a.get(1).copied();
            // EXTERNAL AUTHENTICATE counts a failed attempt before it knows; everything else
            // refused changes nothing.
            if !accepted && ins != Some(0x82) {
                prop_assert_eq!(card.state(), &before, "refused {:02X?} -> {:04X} changed the state", a, sw);
            }
        }
        let state = card.state().clone();
        let card = Card::boot(card.into_storage()).unwrap();
        prop_assert_eq!(card.state(), &state);
    }
}
