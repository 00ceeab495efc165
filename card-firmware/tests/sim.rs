//! The simulator API the host tools use: image files, power cycles, and the CLI.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use card_firmware::lifecycle::CardLifeCycle;
use card_firmware::sim::{FabProfile, FabScp, SimCard, SimError};

fn sw(r: &[u8]) -> u16 {
    u16::from_be_bytes([r[r.len() - 2], r[r.len() - 1]])
}

#[test]
fn create_open_power_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("card.img");
    let kdd = [9, 8, 7, 6, 5, 4, 3, 2, 1, 0];
    let mut card = SimCard::create(
        &path,
        &FabProfile {
            kdd: Some(kdd),
            ..FabProfile::default()
        },
    )
    .unwrap();
    let atr = card.power_on();
    assert_eq!(atr[0], 0x3B);
    // TCK makes the XOR of T0..TCK zero.
    assert_eq!(atr[1..].iter().fold(0u8, |a, b| a ^ b), 0);
    let r = card.transmit(&[
        0x00, 0xA4, 0x04, 0x00, 0x08, 0xA0, 0, 0, 0x01, 0x51, 0, 0, 0, 0x00,
    ]);
    assert_eq!(sw(&r), 0x9000);
    let r = card.transmit(&[0x80, 0xCA, 0x00, 0xCF, 0x00]);
    assert_eq!(&r[2..12], &kdd);
    // INITIALIZE UPDATE commits the sequence counter to the file.
    let r = card.transmit(&[0x80, 0x50, 0x00, 0x00, 0x08, 1, 2, 3, 4, 5, 6, 7, 8, 0x00]);
    assert_eq!(sw(&r), 0x9000);
    assert_eq!(&r[r.len() - 5..r.len() - 2], &[0, 0, 1]);
    drop(card);
    let mut card = SimCard::open(&path).unwrap();
    let r = card.transmit(&[0x80, 0xCA, 0x00, 0xC1, 0x00]);
    assert_eq!(r, [0xC1, 0x03, 0, 0, 1, 0x90, 0x00]);
    assert_eq!(card.state().unwrap().life_cycle, CardLifeCycle::OpReady);
    // Garbage never panics.
    for apdu in [&[][..], &[0x80], &[0x80, 0xCA, 0x00], &[0xFF; 300]] {
        let r = card.transmit(apdu);
        assert!(r.len() >= 2);
    }
}

#[test]
fn create_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("card.img");
    std::fs::write(&path, b"not a card").unwrap();
    assert!(matches!(
        SimCard::create(&path, &FabProfile::default()),
        Err(SimError::Exists(_))
    ));
    assert!(matches!(SimCard::open(&path), Err(SimError::Corrupt(_))));
    assert_eq!(std::fs::read(&path).unwrap(), b"not a card");
}

#[test]
fn scp02_profile_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("card02.img");
    let card = SimCard::create(
        &path,
        &FabProfile {
            scp: FabScp::Scp02,
            ..FabProfile::default()
        },
    )
    .unwrap();
    let state = card.state().unwrap();
    assert_eq!(state.isd.scp.scp, 0x02);
    assert_eq!(state.isd.sets[0].kvn, 0x20);
}

#[test]
fn card_sim_cli_new_and_info() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cli.img");
    let bin = env!("CARGO_BIN_EXE_card-sim");
    let out = std::process::Command::new(bin)
        .args([
            "new",
            "--image",
            path.to_str().unwrap(),
            "--kdd",
            "00010203040506070809",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = std::process::Command::new(bin)
        .args(["info", "--image", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("OP_READY"), "{text}");
    assert!(text.contains("00010203040506070809"), "{text}");
    // The KCV of K per GPC B.6, with its method; never the key itself.
    assert!(text.contains("504A77"), "{text}");
    assert!(text.contains("GPC B.6"), "{text}");
    assert!(!text.contains("404142434445464748494A4B4C4D4E4F"), "{text}");
    // A second `new` on the same path fails with one clear line.
    let out = std::process::Command::new(bin)
        .args(["new", "--image", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn vpcd_protocol() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vpcd.img");
    SimCard::create(&path, &FabProfile::default()).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let mut card = SimCard::open(&path).unwrap();
        let (mut stream, _) = listener.accept().unwrap();
        card_firmware::vpcd::serve_connection(&mut card, &mut stream).unwrap();
    });
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let mut frame = |payload: &[u8], answer: bool| -> Vec<u8> {
        s.write_all(&(payload.len() as u16).to_be_bytes()).unwrap();
        s.write_all(payload).unwrap();
        if !answer {
            return Vec::new();
        }
        let mut len = [0u8; 2];
        s.read_exact(&mut len).unwrap();
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut buf).unwrap();
        buf
    };
    frame(&[0x01], false);
    let atr = frame(&[0x04], true);
    assert_eq!(atr, card_firmware::card::atr());
    let r = frame(&[0x80, 0xCA, 0x00, 0xCF, 0x00], true);
    assert_eq!(sw(&r), 0x9000);
    // INITIALIZE UPDATE opens an initiation; a reset is power loss and ends it.
    let r = frame(
        &[0x80, 0x50, 0x00, 0x00, 0x08, 1, 2, 3, 4, 5, 6, 7, 8, 0x00],
        true,
    );
    assert_eq!(sw(&r), 0x9000);
    frame(&[0x02], false);
    let r = frame(
        &[
            0x84, 0x82, 0x00, 0x00, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
        true,
    );
    assert_eq!(r, [0x69, 0x85]);
    frame(&[0x00], false);
    drop(s);
    server.join().unwrap();
}
