//! The simulator on the real PC/SC stack: `card-sim serve` plugged into pcscd through vsmartcard's
//! vpcd, driven with the `pcsc` crate. Fails (naming what is missing, which `./run test` installs) when
//! pcscd or the vpcd driver is not installed; otherwise waits for the machine-wide bench lock (common/pcscd_lock.rs), starts its own
//! pcscd when none is running and stops only that one, and fails when the reader shows a card that
//! is not its own.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::ffi::CString;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gp_core::apdu::{CommandApdu, ResponseApdu};
use gp_core::keys::AesKey;
use gp_core::scp03;

#[path = "common/pcscd_lock.rs"]
mod pcscd_lock;

struct Guard(Option<Child>);
impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            // SIGTERM first so pcscd removes its socket; SIGKILL if it lingers.
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn sw(r: &[u8]) -> u16 {
    u16::from_be_bytes([r[r.len() - 2], r[r.len() - 1]])
}

fn transmit(card: &pcsc::Card, apdu: &[u8]) -> Vec<u8> {
    let mut buf = [0u8; pcsc::MAX_BUFFER_SIZE_EXTENDED];
    card.transmit(apdu, &mut buf).unwrap().to_vec()
}

#[test]
fn card_sim_through_pcscd() {
    let driver = Path::new("/usr/lib/pcsc/drivers/serial/libifdvpcd.so");
    assert!(
        Path::new("/usr/sbin/pcscd").exists() && driver.exists(),
        "the PC/SC test needs pcscd and vsmartcard-vpcd (`./run test` installs them)"
    );
    // Released last (declared first): after card-sim and our pcscd have stopped.
    let _bench = pcscd_lock::acquire();
    // Use a running pcscd (the socket may be stale, so ask it), else start one of our own.
    let running = pcsc::Context::establish(pcsc::Scope::User).is_ok();
    let _pcscd = if running {
        Guard(None)
    } else {
        let child = Command::new("/usr/sbin/pcscd")
            .arg("--foreground")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Guard(Some(child))
    };
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("pcsc.img");
    let bin = env!("CARGO_BIN_EXE_card-sim");
    // A KDD of our own, to recognise our card if another simulator already serves the reader.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let kdd: Vec<u8> = nanos.to_be_bytes()[6..].to_vec();
    let status = Command::new(bin)
        .args([
            "new",
            "--image",
            image.to_str().unwrap(),
            "--kdd",
            &hex::encode(&kdd),
        ])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let _sim = Guard(Some(
        Command::new(bin)
            .args([
                "serve",
                "--image",
                image.to_str().unwrap(),
                "--vpcd",
                "127.0.0.1:35963",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    ));

    let reader = CString::new("Virtual PCD 00 00").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let ours = |card: &pcsc::Card| {
        let r = transmit(card, &[0x80, 0xCA, 0x00, 0xCF, 0x00]);
        r.len() == 14 && r[2..12] == kdd[..]
    };
    let (ctx, mut card) = loop {
        let attempt = pcsc::Context::establish(pcsc::Scope::User).and_then(|ctx| {
            ctx.connect(&reader, pcsc::ShareMode::Shared, pcsc::Protocols::ANY)
                .map(|c| (ctx, c))
        });
        match attempt {
            Ok((ctx, card)) if ours(&card) => break (ctx, card),
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(250)),
            Ok(_) => panic!(
                "the Virtual PCD reader shows another card: a simulator outside the test lock \
                 ({}) serves vpcd port 35963",
                pcscd_lock::PATH
            ),
            Err(e) => panic!("no card in the Virtual PCD reader: {e}"),
        }
    };
    // The ATR advertises T=1.
    let (_, protocol, atr) = {
        let mut names = [0u8; 256];
        let mut atr = [0u8; 64];
        let s = card.status2(&mut names, &mut atr).unwrap();
        (s.status(), s.protocol2(), s.atr().to_vec())
    };
    assert_eq!(protocol, Some(pcsc::Protocol::T1));
    assert_eq!(atr, card_firmware::card::atr());

    let r = transmit(
        &card,
        &[
            0x00, 0xA4, 0x04, 0x00, 0x08, 0xA0, 0, 0, 0x01, 0x51, 0, 0, 0, 0x00,
        ],
    );
    assert_eq!(sw(&r), 0x9000);

    // Authenticate with the transport key and audit over C-MAC + R-MAC.
    let hc = [1, 2, 3, 4, 5, 6, 7, 8];
    let mut iu = vec![0x80, 0x50, 0x00, 0x00, 0x08];
    iu.extend_from_slice(&hc);
    iu.push(0x00);
    let r = transmit(&card, &iu);
    assert_eq!(sw(&r), 0x9000);
    let iur = scp03::InitializeUpdateResponse::parse(&r[..r.len() - 2]).unwrap();
    let k = card_firmware::sim::DEFAULT_KEY;
    let (mut enc, mut mac) = (
        AesKey::from_slice(&k).unwrap(),
        AesKey::from_slice(&k).unwrap(),
    );
    let keys =
        scp03::derive_session_keys(&mut enc, &mut mac, 16, &hc, &iur.card_challenge).unwrap();
    assert_eq!(
        scp03::card_cryptogram(&keys, &hc, &iur.card_challenge),
        iur.card_cryptogram
    );
    let host = scp03::host_cryptogram(&keys, &hc, &iur.card_challenge);
    let mut session = scp03::Session::host(keys, scp03::SecurityLevel::C_MAC_R_MAC);
    let r = transmit(&card, &session.external_authenticate(&host).to_bytes());
    assert_eq!(sw(&r), 0x9000);
    let get_status = CommandApdu::new(0x80, 0xF2, 0x80, 0x02, vec![0x4F, 0x00], Some(256));
    let r = transmit(&card, &session.wrap(&get_status).unwrap().to_bytes());
    let resp = session
        .unwrap_response(&ResponseApdu::parse(&r).unwrap())
        .unwrap();
    assert_eq!(resp.sw, 0x9000);
    assert!(
        resp.data.windows(4).any(|w| w == [0x9F, 0x70, 0x01, 0x01]),
        "ISD OP_READY"
    );

    // A reset is power loss: the session is gone.
    card.reconnect(
        pcsc::ShareMode::Shared,
        pcsc::Protocols::ANY,
        pcsc::Disposition::ResetCard,
    )
    .unwrap();
    let r = transmit(&card, &session.wrap(&get_status).unwrap().to_bytes());
    assert_eq!(sw(&r), 0x6982);
    drop(card);
    drop(ctx);
}
