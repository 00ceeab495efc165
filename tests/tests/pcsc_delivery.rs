//! Delivery through the real PC/SC stack: `card-sim serve` behind pcscd's vpcd reader, and `signer` with
//! `--card pcsc:READER` personalising the card and loading a package. Skips (with a message) when pcscd or
//! the vpcd driver is not installed, or when another simulator already serves the reader; starts its own
//! pcscd when none runs and stops only the processes it started.

mod common;

use common::*;
use postissue_tests::{bin, ok};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Guard(Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
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

const READER: &str = "Virtual PCD 00 00";

#[test]
fn personalise_and_deploy_through_pcscd() {
    if !Path::new("/usr/sbin/pcscd").exists()
        || !Path::new("/usr/lib/pcsc/drivers/serial/libifdvpcd.so").exists()
    {
        eprintln!("skipped: pcscd or vsmartcard-vpcd not installed");
        return;
    }
    let running = pcsc::Context::establish(pcsc::Scope::User).is_ok();
    let _pcscd = if running {
        Guard(None)
    } else {
        Guard(Some(
            Command::new("/usr/sbin/pcscd")
                .arg("--foreground")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        ))
    };
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
    let _sim = Guard(Some(
        Command::new(bin("card-sim"))
            .args(["serve", "--image", &image, "--vpcd", "127.0.0.1:35963"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    ));
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
            Ok(_) if running => {
                eprintln!("skipped: the Virtual PCD reader is served by another simulator");
                return;
            }
            other => panic!("our card did not appear in the Virtual PCD reader: {other:?}"),
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
