//! The memory bar: one long authenticated session does not grow the heap, and the card's RAM need
//! per APDU is measured, not estimated.
//!
//! This test binary counts every heap allocation of the test thread with the `allocation-counter`
//! crate, whose `#[global_allocator]` wraps the system allocator (no unsafe code here). It drives a
//! personalised card through 1,000 commands of one SCP03 session at the highest security level
//! (C-MAC, C-DEC, R-MAC, R-ENC): a 15-command cycle of GET STATUS, GET DATA, STORE DATA and a whole
//! INSTALL [for load] / LOAD / INSTALL [for install and make selectable] / DELETE round trip. Live
//! bytes after command 10 and after command 1,000 (the same point of the cycle) must be equal, and
//! so must every point of every cycle. The peak of live bytes while `Card::process` runs, above
//! what was live before the APDU, is the RAM the card needs for that APDU; the table it prints is
//! the one in docs/card-firmware.md (`cargo test -p card-firmware --test heap -- --nocapture`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

mod common;

use card_firmware::storage::{RamStorage, Storage};
use card_firmware::Card;
use common::*;
use gp_core::apdu::CommandApdu;
use gp_core::keys::AesKey;
use gp_core::scp03;

/// Run `f` on this thread, counting its heap allocations: what it returns, the bytes it left
/// live (negative when it freed more than it allocated) and the peak of live bytes above those
/// live before the call. (The crate counts a reallocation as an allocation of the new size and
/// a release of the old one: a reallocation that moves the block holds both for a moment.)
fn counted<R>(f: impl FnOnce() -> R) -> (R, i64, i64) {
    let mut out = None;
    let info = allocation_counter::measure(|| out = Some(f()));
    (
        out.expect("measured closure ran"),
        info.bytes_current,
        info.bytes_max as i64,
    )
}

/// Process one wire APDU; returns its status word, the bytes it left live and the peak of live
/// bytes above those live before the call. The response is dropped inside, so only the card's
/// allocations stay counted.
fn measured(card: &mut Card<RamStorage>, wire: &[u8]) -> (u16, i64, i64) {
    let (sw, left, peak) = counted(|| {
        let resp = card.process(wire);
        let n = resp.len();
        u16::from_be_bytes([resp[n - 2], resp[n - 1]])
    });
    (sw, left, peak)
}

/// The bytes the card frees when it is dropped.
fn dropped(card: Card<RamStorage>) -> i64 {
    let ((), left, _) = counted(|| drop(card));
    -left
}

const PURSE_PACKAGE: [u8; 6] = [0xF0, 0x50, 0x55, 0x52, 0x53, 0x45];
const PURSE_MODULE: [u8; 7] = [0xF0, 0x50, 0x55, 0x52, 0x53, 0x45, 0x01];
const PURSE: [u8; 8] = [0xF0, 0x50, 0x55, 0x52, 0x53, 0x45, 0x01, 0x01];

const CYCLE: usize = 15;
const COMMANDS: usize = 1000;
const NAMES: [&str; CYCLE] = [
    "GET STATUS 80 (ISD)",
    "GET STATUS 40 (applications)",
    "GET DATA 9F7F (CPLC)",
    "GET DATA 66 (card data)",
    "GET DATA E0 (key information)",
    "STORE DATA (IIN, committed)",
    "INSTALL [for load]",
    "LOAD block",
    "LOAD block",
    "LOAD block",
    "LOAD block",
    "LOAD block",
    "LOAD last block (1.3 KB file)",
    "INSTALL [for install+selectable]",
    "DELETE (load file + application)",
];

/// The test package with a 1,200-byte filler component (the size of a small applet's Method
/// component), so a load takes six blocks.
fn big_lfdb() -> Vec<u8> {
    let mut lfdb = lfdb();
    lfdb.push(0x07);
    lfdb.extend_from_slice(&1200u16.to_be_bytes());
    lfdb.extend((0..1200u32).map(|i| i as u8));
    lfdb
}

/// A 15-command cycle that leaves the card as it found it (the IIN changes value, not length).
/// Block size 224 leaves room for C-DEC padding and the C-MAC in a short APDU.
fn cycle(round: usize) -> Vec<CommandApdu> {
    let lfdb = big_lfdb();
    let mut iin = vec![0x42, 0x04];
    iin.extend_from_slice(&(round as u32).to_be_bytes());
    let mut out = vec![
        cmd(0x80, 0xF2, 0x80, 0x02, &[0x4F, 0x00]),
        cmd(0x80, 0xF2, 0x40, 0x02, &[0x4F, 0x00]),
        cmd(0x80, 0xCA, 0x9F, 0x7F, &[]),
        cmd(0x80, 0xCA, 0x00, 0x66, &[]),
        cmd(0x80, 0xCA, 0x00, 0xE0, &[]),
        cmd(0x80, 0xE2, 0x90, 0x00, &iin),
        cmd(
            0x80,
            0xE6,
            0x02,
            0x00,
            &install_for_load_data(&PACKAGE, &sha256(&lfdb)),
        ),
    ];
    let blocks = load_commands(&lfdb, 224);
    assert_eq!(blocks.len(), 6, "the load file must take 6 blocks");
    out.extend(blocks);
    out.push(cmd(
        0x80,
        0xE6,
        0x0C,
        0x00,
        &install_and_make_selectable_data(&PACKAGE, &APPLET, &APPLET),
    ));
    let mut del = vec![0x4F, PACKAGE.len() as u8];
    del.extend_from_slice(&PACKAGE);
    out.push(cmd(0x80, 0xE4, 0x00, 0x80, &del));
    assert_eq!(out.len(), CYCLE);
    out
}

/// INITIALIZE UPDATE + EXTERNAL AUTHENTICATE at `level` with the issuer keys, measuring the
/// card's side of both; leaves the host session in `t`.
fn authenticate_measured(card: &mut Card<RamStorage>, t: &mut Terminal, level: u8) -> [i64; 2] {
    let mut iu = vec![0x80, 0x50, ISSUER.kvn, 0x00, 0x08];
    iu.extend_from_slice(&t.host_challenge);
    iu.push(0x00);
    let (resp, _, iu_peak) = counted(|| card.process(&iu));
    assert_eq!(sw(&resp), 0x9000);
    let iur = scp03::InitializeUpdateResponse::parse(&resp[..resp.len() - 2]).unwrap();
    let mut enc = AesKey::from_slice(&ISSUER.enc).unwrap();
    let mut mac = AesKey::from_slice(&ISSUER.mac).unwrap();
    let sk = scp03::derive_session_keys(
        &mut enc,
        &mut mac,
        16,
        &t.host_challenge,
        &iur.card_challenge,
    )
    .unwrap();
    let hc = scp03::host_cryptogram(&sk, &t.host_challenge, &iur.card_challenge);
    let mut session = scp03::Session::host(sk, scp03::SecurityLevel::parse(level).unwrap());
    let ea = session.external_authenticate(&hc).to_bytes();
    let (sw, _, ea_peak) = measured(card, &ea);
    assert_eq!(sw, 0x9000);
    t.session = Some(session);
    [iu_peak, ea_peak]
}

#[test]
fn long_session_does_not_grow_the_heap() {
    // (1000 - 10) is a whole number of cycles: commands 10 and 1,000 are at the same point.
    assert_eq!((COMMANDS - 10) % CYCLE, 0);
    let mut card = new_card();
    let mut t = Terminal::new();
    personalise(&mut card, &mut t);
    assert_eq!(t.authenticate(&mut card, ISSUER, 0x33), 0x9000);
    // The IIN and one application (a purse from the built-in package) exist before the
    // session, so every cycle finds the same state and GET STATUS 40 has something to report.
    let r = t.send(
        &mut card,
        cmd(0x80, 0xE2, 0x90, 0x00, &[0x42, 0x04, 1, 2, 3, 4]),
    );
    assert_eq!(r.sw, 0x9000);
    let purse = install_and_make_selectable_data(&PURSE_PACKAGE, &PURSE_MODULE, &PURSE);
    assert_eq!(
        t.send(&mut card, cmd(0x80, 0xE6, 0x0C, 0x00, &purse)).sw,
        0x9000
    );
    let fresh_state = card.state().to_bytes().len();

    assert_eq!(sw(&t.select_isd(&mut card)), 0x9000);
    let [iu_peak, ea_peak] = authenticate_measured(&mut card, &mut t, 0x33);

    // Every wire APDU of the session is prepared first: the host's wrapping allocates too, and
    // only the card is measured. The card checks the C-MAC chain in the same order.
    let mut wires: Vec<Vec<u8>> = Vec::with_capacity(COMMANDS);
    let mut round = 0;
    while wires.len() < COMMANDS {
        for c in cycle(round) {
            if wires.len() < COMMANDS {
                wires.push(t.wrap(&c));
            }
        }
        round += 1;
    }

    // Live bytes are counted from the first command of the session on: nothing else allocates
    // between the commands (the vectors below have their room already).
    let mut live = 0i64;
    let mut live_after: Vec<i64> = Vec::with_capacity(COMMANDS);
    let mut peaks = [0i64; CYCLE];
    for (i, wire) in wires.iter().enumerate() {
        let (sw, left, peak) = measured(&mut card, wire);
        assert_eq!(sw, 0x9000, "command {} ({})", i + 1, NAMES[i % CYCLE]);
        live += left;
        live_after.push(live);
        peaks[i % CYCLE] = peaks[i % CYCLE].max(peak);
    }

    // The bar: after command 10 and after command 1,000 the heap holds the same bytes, and
    // so does every point of the cycle in every cycle from the second on. (Between the first
    // DELETE and the next state-changing command the registry's vectors keep room for the
    // deleted load file and application, 256 bytes: commands 16 to 20 hold that much more than
    // commands 1 to 5 did, the same in every later cycle.)
    assert_eq!(
        live_after[9],
        live_after[COMMANDS - 1],
        "live bytes after command 10 and command 1,000"
    );
    for i in 2 * CYCLE..COMMANDS {
        assert_eq!(
            live_after[i],
            live_after[i - CYCLE],
            "command {} ({}) holds other bytes than one cycle earlier",
            i + 1,
            NAMES[i % CYCLE]
        );
    }

    // What the card holds between commands: everything it owns minus the storage medium
    // (flash on a real card).
    let medium = card.storage().capacity() as i64;
    let held = dropped(card) - medium;

    println!("RAM per APDU (peak live heap bytes while the card processes it, SCP03 level 33):");
    println!("  {:<34} {:>6}", "INITIALIZE UPDATE", iu_peak);
    println!("  {:<34} {:>6}", "EXTERNAL AUTHENTICATE", ea_peak);
    for (name, peak) in NAMES.iter().zip(peaks) {
        println!("  {name:<34} {peak:>6}");
    }
    println!("held between commands (state + session, without the medium): {held} bytes");
    println!("encoded state: {fresh_state} bytes");
    println!(
        "live bytes the session added by command 10: {}; by command 1000: {}",
        live_after[9],
        live_after[COMMANDS - 1]
    );
}

/// The same measurement on a card whose registry is full (32 applications): every command
/// copies and, when it changes something, encodes the whole state, so the peak grows with it.
#[test]
fn ram_per_apdu_with_a_full_registry() {
    let mut card = new_card();
    let mut t = Terminal::new();
    personalise(&mut card, &mut t);
    assert_eq!(t.authenticate(&mut card, ISSUER, 0x33), 0x9000);
    let aid = |i: u8| {
        let mut a = PURSE.to_vec();
        a.push(i);
        a
    };
    for i in 0..31u8 {
        let d = install_and_make_selectable_data(&PURSE_PACKAGE, &PURSE_MODULE, &aid(i));
        assert_eq!(
            t.send(&mut card, cmd(0x80, 0xE6, 0x0C, 0x00, &d)).sw,
            0x9000
        );
    }
    let state = card.state().to_bytes().len();
    let last = install_and_make_selectable_data(&PURSE_PACKAGE, &PURSE_MODULE, &aid(31));
    let mut del = vec![0x4F, 9];
    del.extend_from_slice(&aid(31));
    let steps: [(&str, CommandApdu, u16); 5] = [
        (
            "GET STATUS 40 (first page)",
            cmd(0x80, 0xF2, 0x40, 0x02, &[0x4F, 0x00]),
            0x6310,
        ),
        (
            "STORE DATA (IIN, committed)",
            cmd(0x80, 0xE2, 0x90, 0x00, &[0x42, 0x04, 1, 2, 3, 4]),
            0x9000,
        ),
        (
            "INSTALL [for install+selectable]",
            cmd(0x80, 0xE6, 0x0C, 0x00, &last),
            0x9000,
        ),
        (
            "GET STATUS 40 (first page)",
            cmd(0x80, 0xF2, 0x40, 0x02, &[0x4F, 0x00]),
            0x6310,
        ),
        (
            "DELETE (application)",
            cmd(0x80, 0xE4, 0x00, 0x00, &del),
            0x9000,
        ),
    ];
    let wires: Vec<Vec<u8>> = steps.iter().map(|(_, c, _)| t.wrap(c)).collect();
    let mut peaks = Vec::with_capacity(steps.len());
    for (wire, (name, _, expected)) in wires.iter().zip(&steps) {
        let (sw, _, peak) = measured(&mut card, wire);
        assert_eq!(sw, *expected, "{name}");
        peaks.push(peak);
    }
    let medium = card.storage().capacity() as i64;
    let held = dropped(card) - medium;
    println!("RAM per APDU with 32 applications (encoded state {state} bytes before the last):");
    for ((name, _, _), peak) in steps.iter().zip(peaks) {
        println!("  {name:<34} {peak:>6}");
    }
    println!("held between commands: {held} bytes");
}

/// PUT KEY data for a new set `kvn` of four AES-256 keys encrypted under `dek`.
fn four_aes256(kvn: u8, dek: &[u8; 16]) -> Vec<u8> {
    let dek = AesKey::from_slice(dek).unwrap();
    let mut d = vec![kvn];
    for i in 0..4u8 {
        let key = AesKey::from_slice(&[0x60 + i; 32]).unwrap();
        d.extend_from_slice(&scp03::put_key_data(&dek, &key).to_bytes().unwrap());
    }
    d
}

/// Fill a domain's key quota: seven more sets of four AES-256 keys beside its channel set.
fn fill_keys(card: &mut Card<RamStorage>, t: &mut Terminal, dek: &[u8; 16]) {
    use card_firmware::quotas::{MAX_KEYS_PER_SET, MAX_KEY_SETS};
    assert_eq!(MAX_KEYS_PER_SET, 4);
    for kvn in 2..=MAX_KEY_SETS as u8 {
        let r = t.send(card, cmd(0x80, 0xD8, 0x00, 0x81, &four_aes256(kvn, dek)));
        assert_eq!(r.sw, 0x9000);
    }
}

/// The same measurement with every quota full: the ISD and 31 SSDs with all their key sets, 32
/// applications with the longest install parameters, 32 load files of 8 modules each.
#[test]
fn ram_per_apdu_with_every_quota_full() {
    use card_firmware::quotas::{
        MAX_APPLICATIONS, MAX_INSTALL_PARAMS, MAX_LOAD_FILES, MAX_MODULES,
    };
    // 256 KiB of storage: two 128 KiB slots (the worst-case state is measured, then checked
    // against the card-sim image's 64 KiB slot).
    let mut card = Card::format(RamStorage::new(256 * 1024, 128), &fab()).unwrap();
    let mut t = Terminal::new();
    personalise(&mut card, &mut t);
    assert_eq!(t.authenticate(&mut card, ISSUER, 0x33), 0x9000);
    fill_keys(&mut card, &mut t, &NEW_DEK);
    // Load files: the two built-in ones and 30 of 8 modules.
    let package = |n: u8| vec![0xD0, 0xD1, 0xD2, 0xD3, 0x40 + n];
    let load_file = |n: u8| {
        let p = package(n);
        let modules: Vec<Vec<u8>> = (0..MAX_MODULES as u8)
            .map(|m| {
                let mut a = p.clone();
                a.extend_from_slice(&[0x01, m]);
                a
            })
            .collect();
        let refs: Vec<&[u8]> = modules.iter().map(|m| m.as_slice()).collect();
        card_firmware::cap::synthetic_lfdb(&p, [1, 0], &refs)
    };
    let load_cmds = |n: u8| {
        let lfdb = load_file(n);
        let mut cmds = vec![cmd(
            0x80,
            0xE6,
            0x02,
            0x00,
            &install_for_load_data(&package(n), &sha256(&lfdb)),
        )];
        cmds.extend(load_commands(&lfdb, 200));
        cmds
    };
    for n in 0..(MAX_LOAD_FILES - 2) as u8 {
        for c in load_cmds(n) {
            assert_eq!(t.send(&mut card, c).sw, 0x9000);
        }
    }
    // 31 SSDs (install parameters at their quota) and one purse.
    let c9 = |scp: bool| {
        let mut v = Vec::new();
        if scp {
            gp_core::tlv::write_tlv(&mut v, 0x81, &[0x03, 0x70]);
        }
        let filler = MAX_INSTALL_PARAMS - v.len() - 2;
        gp_core::tlv::write_tlv(&mut v, 0x82, &vec![0xEE; filler]);
        let mut c9 = Vec::new();
        gp_core::tlv::write_tlv(&mut c9, 0xC9, &v);
        c9
    };
    let install = |elf: &[u8], module: &[u8], aid: &[u8], privileges: &[u8], c9: &[u8]| {
        let mut d = Vec::new();
        lv(&mut d, elf);
        lv(&mut d, module);
        lv(&mut d, aid);
        lv(&mut d, privileges);
        lv(&mut d, c9);
        d.push(0x00);
        cmd(0x80, 0xE6, 0x0C, 0x00, &d)
    };
    let ssd = |i: u8| {
        let mut a = SD_MODULE.to_vec();
        a.extend_from_slice(&[0x10, i]);
        a
    };
    for i in 0..(MAX_APPLICATIONS - 1) as u8 {
        let c = install(&SD_PACKAGE, &SD_MODULE, &ssd(i), &[0x80, 0, 0], &c9(true));
        assert_eq!(t.send(&mut card, c).sw, 0x9000);
    }
    let purse_install = install(&PURSE_PACKAGE, &PURSE_MODULE, &PURSE, &[0x00], &c9(false));
    assert_eq!(t.send(&mut card, purse_install.clone()).sw, 0x9000);
    for i in 0..(MAX_APPLICATIONS - 1) as u8 {
        let mut v = Terminal::new();
        assert_eq!(sw(&v.select(&mut card, &ssd(i))), 0x9000);
        assert_eq!(v.authenticate(&mut card, TRANSPORT, 0x01), 0x9000);
        fill_keys(&mut card, &mut v, &K);
    }
    let state = card.state().to_bytes().len();

    t.select_isd(&mut card);
    let [iu_peak, ea_peak] = authenticate_measured(&mut card, &mut t, 0x33);
    let mut del_purse = vec![0x4F, PURSE.len() as u8];
    del_purse.extend_from_slice(&PURSE);
    let last = (MAX_LOAD_FILES - 3) as u8;
    let mut del_file = vec![0x4F, 5];
    del_file.extend_from_slice(&package(last));
    let replace_key = {
        let dek = AesKey::from_slice(&NEW_DEK).unwrap();
        let key = AesKey::from_slice(&[0x6F; 32]).unwrap();
        let mut d = vec![0x02];
        d.extend_from_slice(&scp03::put_key_data(&dek, &key).to_bytes().unwrap());
        d
    };
    let mut steps: Vec<(String, CommandApdu, u16)> = vec![
        (
            "GET STATUS 40 (first page)".into(),
            cmd(0x80, 0xF2, 0x40, 0x02, &[0x4F, 0x00]),
            0x6310,
        ),
        (
            "GET STATUS 10 (first page)".into(),
            cmd(0x80, 0xF2, 0x10, 0x02, &[0x4F, 0x00]),
            0x6310,
        ),
        (
            "GET DATA E0 (key information)".into(),
            cmd(0x80, 0xCA, 0x00, 0xE0, &[]),
            0x9000,
        ),
        (
            "PUT KEY (replace one key)".into(),
            cmd(0x80, 0xD8, 0x02, 0x01, &replace_key),
            0x9000,
        ),
        (
            "STORE DATA (IIN, committed)".into(),
            cmd(0x80, 0xE2, 0x90, 0x00, &[0x42, 0x04, 1, 2, 3, 4]),
            0x9000,
        ),
        (
            "DELETE (application)".into(),
            cmd(0x80, 0xE4, 0x00, 0x00, &del_purse),
            0x9000,
        ),
        (
            "INSTALL [for install+selectable]".into(),
            purse_install,
            0x9000,
        ),
        (
            "DELETE (load file, 8 modules)".into(),
            cmd(0x80, 0xE4, 0x00, 0x00, &del_file),
            0x9000,
        ),
    ];
    let reload = load_cmds(last);
    let n = reload.len();
    for (i, c) in reload.into_iter().enumerate() {
        let name = match i {
            0 => "INSTALL [for load]",
            _ if i + 1 == n => "LOAD last block",
            _ => "LOAD block",
        };
        steps.push((name.into(), c, 0x9000));
    }
    let wires: Vec<Vec<u8>> = steps.iter().map(|(_, c, _)| t.wrap(c)).collect();
    let mut peaks = Vec::with_capacity(steps.len());
    for (wire, (name, _, expected)) in wires.iter().zip(&steps) {
        let (sw, _, peak) = measured(&mut card, wire);
        assert_eq!(sw, *expected, "{name}");
        peaks.push(peak);
    }
    let medium = card.storage().capacity() as i64;
    let held = dropped(card) - medium;
    println!("RAM per APDU with every quota full (encoded state {state} bytes):");
    println!("  {:<34} {:>6}", "INITIALIZE UPDATE", iu_peak);
    println!("  {:<34} {:>6}", "EXTERNAL AUTHENTICATE", ea_peak);
    for ((name, _, _), peak) in steps.iter().zip(peaks) {
        println!("  {name:<34} {peak:>6}");
    }
    println!("held between commands: {held} bytes");
    // The worst-case state fits the card-sim image's slot (128 KiB image, 64 KiB slots).
    assert!(state + 28 <= 64 * 1024, "worst-case state {state} bytes");
}

/// A damaged image in a large sparse file: a journal header claiming a 4 GB record. Recovery
/// reads at most one slot of the size the card was formatted with (or `MAX_SLOT` for images from
/// before the format block), so opening it allocates kilobytes, not gigabytes.
#[test]
fn a_damaged_sparse_image_allocates_at_most_one_slot() {
    use card_firmware::sim::SimCard;
    use card_firmware::storage::{FileStorage, Journal, MAX_SLOT};
    use std::io::{Seek, SeekFrom, Write};
    const SPARSE: u64 = 16 << 30;
    let dir = tempfile::tempdir().unwrap();

    // An image from before the format block: slot 0's header at offset 0.
    let legacy = dir.path().join("legacy.img");
    let mut f = std::fs::File::create(&legacy).unwrap();
    let mut header = b"PIJ1".to_vec();
    header.extend_from_slice(&1u32.to_be_bytes());
    header.extend_from_slice(&u32::MAX.to_be_bytes());
    header.extend_from_slice(&[0u8; 16]);
    f.write_all(&header).unwrap();
    f.set_len(SPARSE).unwrap();
    drop(f);
    let (opened, _, peak) = counted(|| {
        FileStorage::open(&legacy)
            .map_err(|_| card_firmware::Error::StorageIo)
            .and_then(Journal::open)
            .map(|_| ())
    });
    assert!(opened.is_err(), "no valid record");
    assert!(peak <= MAX_SLOT as i64, "opening allocated {peak} bytes");

    // A card-sim image, one more commit in slot 1, then slot 1's header damaged and the file
    // grown: the older state comes back, through at most one slot's allocation.
    let image = dir.path().join("card.img");
    let mut sim = SimCard::create(&image, &Default::default()).unwrap();
    let before = sim.state().unwrap().clone();
    let mut iu = vec![0x80, 0x50, 0x00, 0x00, 0x08];
    iu.extend_from_slice(&[1; 8]);
    assert_eq!(
        sw(&sim.transmit(&iu)),
        0x9000,
        "INITIALIZE UPDATE commits its counter"
    );
    let slot = sim.max_state_len().unwrap() + 28;
    drop(sim);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&image)
        .unwrap();
    f.seek(SeekFrom::Start((24 + slot + 8) as u64)).unwrap();
    f.write_all(&u32::MAX.to_be_bytes()).unwrap();
    f.set_len(SPARSE).unwrap();
    drop(f);
    let (sim, _, peak) = counted(|| SimCard::open(&image));
    let sim = sim.unwrap();
    assert_eq!(sim.state().unwrap(), &before);
    assert!(peak <= 4 * slot as i64, "opening allocated {peak} bytes");
}
