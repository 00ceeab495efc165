//! The admin agent on a device: `admin-agent --card pcsc:READER` relays the server's scripts to the
//! simulated card behind pcscd's vpcd reader, through the real PC/SC stack. Fails, naming what is missing,
//! when pcscd or the vpcd driver is not installed, as the other PC/SC tests do.

mod common;
mod remote_common;

use common::*;
use postissue_tests::ok;
use postissue_tests::pcsc_stack::{self, CardSim, Pcscd};
use remote_common::*;
use std::time::{Duration, Instant};

const READER: &str = "Virtual PCD 00 00";

#[test]
fn the_agent_installs_through_pcscd() {
    if let Some(why) = pcsc_stack::unavailable() {
        panic!("the agent through pcscd needs the PC/SC stack (`./run test` installs it): {why}");
    }
    let logs = tempfile::tempdir().unwrap();
    let _pcscd = Pcscd::start(&logs.path().join("pcscd.log"));
    let w = World::new();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let kdd = hex::encode_upper(&nanos.to_be_bytes()[6..]);
    let image = w.card("pcsc", &kdd);
    std::fs::write(w.p("one.csv"), format!("identity,kdd\ndevice-card,{kdd}\n")).unwrap();
    ok(&mut w.package("p.pkg", &[]));
    let port = free_port();
    let config = write_config(w.hsm.dir.path(), "server.ron", port, None);
    campaign(
        &w.hsm,
        &config,
        &[
            "add",
            "device",
            "--package",
            &w.p("p.pkg"),
            "--cards",
            &w.p("one.csv"),
        ],
    );
    let _server = ServerProc::start(&w.hsm, &config);
    let sim = CardSim::serve(
        std::path::Path::new(&image),
        35963,
        &logs.path().join("card-sim.log"),
    );
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
    let out = ok(w.hsm.tool("admin-agent").args([
        "--server",
        &format!("http://127.0.0.1:{port}/admin"),
        "--card",
        &format!("pcsc:{READER}"),
        "--from",
        "kiosk-17",
    ]));
    assert!(out.contains("done: 2 script(s)"), "{out}");
    let show = campaign(&w.hsm, &config, &["show", "device"]);
    assert_eq!(rows(&show)[0].2, "done", "{show}");
    let reg = ok(w.hsm.tool("signer").args([
        "card",
        "list",
        "--card",
        &format!("pcsc:{READER}"),
        "--master",
        ISSUER_MASTER,
        "--pin-source",
        &pin_source(),
    ]));
    assert_eq!(count_entries(&reg, "APP", APPLET), 1, "{reg}");
}
