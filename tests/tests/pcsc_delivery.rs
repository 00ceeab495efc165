//! Delivery through the real PC/SC stack: `card-sim serve` behind pcscd's vpcd reader, and `signer` with
//! `--card pcsc:READER` personalising the card and loading a package. Fails, saying what to install, when
//! pcscd or the vpcd driver is not installed; otherwise waits for the machine-wide bench lock (`Pcscd::start`),
//! starts its own pcscd when none runs, stops only the processes it started, and fails when the reader
//! shows a card that is not its own.

mod common;

use common::*;
use postissue_tests::ok;
use postissue_tests::pcsc_stack::{self, CardSim, Pcscd};
use std::time::{Duration, Instant};

const READER: &str = "Virtual PCD 00 00";

#[test]
fn personalise_and_deploy_through_pcscd() {
    if let Some(why) = pcsc_stack::unavailable() {
        panic!("delivery through pcscd needs the PC/SC stack: {why}");
    }
    let logs = tempfile::tempdir().unwrap();
    // Holds the bench lock until the end of the test (dropped after `_sim`).
    let _pcscd = Pcscd::start(&logs.path().join("pcscd.log"));
    let w = World::new();
    let image = w.p("pcsc.img");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let kdd = hex::encode_upper(&nanos.to_be_bytes()[6..]);
    ok(w.hsm
        .tool("card-sim")
        .args(["new", "--image", &image, "--kdd", &kdd]));
    let sim = CardSim::serve(
        std::path::Path::new(&image),
        35963,
        &logs.path().join("card-sim.log"),
    );
    // Wait for our card (GET DATA CF gives its KDD) in the reader.
    let reader = std::ffi::CString::new(READER).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = pcsc::Context::establish(pcsc::Scope::User).and_then(|ctx| {
            let card = ctx.connect(&reader, pcsc::ShareMode::Shared, pcsc::Protocols::ANY)?;
            let mut buf = [0u8; 300];
            card.transmit(&[0x80, 0xCA, 0x00, 0xCF, 0x00], &mut buf)
                .map(|r| r.to_vec())
        });
        match seen {
            Ok(r) if r.len() == 14 && hex::encode_upper(&r[2..12]) == kdd => break,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(250)),
            other => panic!(
                "our card did not appear in the Virtual PCD reader: {other:?}; card-sim: {}",
                sim.log_text()
            ),
        }
    }
    let card = format!("pcsc:{READER}");
    let out = ok(w.hsm.tool("signer").args([
        "personalise",
        "--card",
        &card,
        "--master",
        ISSUER_MASTER,
        "--pin-source",
        &pin_source(),
    ]));
    assert!(out.contains(&kdd) && out.contains("SECURED"), "{out}");
    ok(&mut w.package("p.pkg", &[]));
    let out = ok(w.hsm.tool("signer").args([
        "deploy",
        &w.p("p.pkg"),
        "--card",
        &card,
        "--master",
        ISSUER_MASTER,
        "--pin-source",
        &pin_source(),
    ]));
    assert!(out.contains("installed"), "{out}");
    let reg = ok(w.hsm.tool("signer").args([
        "card",
        "list",
        "--card",
        &card,
        "--master",
        ISSUER_MASTER,
        "--pin-source",
        &pin_source(),
    ]));
    assert!(reg.contains(APPLET), "{reg}");
    // A reader name that matches nothing is one clear line naming the readers present.
    let out = w
        .hsm
        .tool("signer")
        .args([
            "card",
            "list",
            "--card",
            "pcsc:No Such Reader",
            "--master",
            ISSUER_MASTER,
            "--pin-source",
            &pin_source(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no PC/SC reader matches 'No Such Reader'") && err.contains("Virtual PCD"),
        "{err}"
    );
}
