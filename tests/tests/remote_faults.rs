//! A vendor campaign (per-card DAPs, ciphered LFDB, loaded through the vendor's SSD) on 20 cards while
//! everything goes wrong in turn: the connection is cut after each HTTP message of an install, the card
//! loses power after each APDU of the operation script (and once more in the script that continues
//! after the audit), and the server is killed and restarted while a card's results are on their way.
//! Every card ends with the application installed exactly once, and the database agrees with the cards.

mod common;
mod remote_common;

use common::*;
use postissue_tests::{create_sd, ok, sd_put_keys};
use remote_common::*;
use std::sync::{Arc, Mutex};

const SSD: &str = "A0000001515350410001";
const CARDS: usize = 20;

fn kdd(i: usize) -> String {
    format!("5A5A5A5A5A5A5A5A{i:04X}")
}

#[test]
fn every_card_ends_installed_once_through_cuts_power_loss_and_a_server_restart() {
    let w = World::new();
    let mut list = String::from("identity,kdd\n");
    let mut images = Vec::new();
    for i in 0..CARDS {
        let image = w.card(&format!("c{i}"), &kdd(i));
        ok(&mut create_sd(
            &w.hsm,
            &image,
            ISSUER_MASTER,
            SSD,
            "dap-verification,ciphered-load-file-data-block",
        ));
        ok(&mut sd_put_keys(
            &w.hsm,
            &image,
            SSD,
            &vendor_key("dap-master"),
            Some(&vendor_key("lfdb-cipher")),
        ));
        list.push_str(&format!("card-{i},{}\n", kdd(i)));
        images.push(image);
    }
    std::fs::write(w.p("fleet.csv"), list).unwrap();
    ok(&mut w.package(
        "vendor.pkg",
        &[
            "--dap",
            "aes",
            "--dap-key",
            &vendor_key("dap-master"),
            "--dap-sd",
            SSD,
            "--cards",
            &w.p("fleet.csv"),
            "--diversify",
            "aes",
            "--encrypt",
            "--cipher-key",
            &vendor_key("lfdb-cipher"),
        ],
    ));
    let pkg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(w.p("vendor.pkg")).unwrap()).unwrap();
    let load_file = pkg["manifest"]["load_file_aid"]
        .as_str()
        .unwrap()
        .to_uppercase();

    let port = free_port();
    let config = write_config(w.hsm.dir.path(), "server.ron", port, None);
    campaign(
        &w.hsm,
        &config,
        &[
            "add",
            "fleet",
            "--package",
            &w.p("vendor.pkg"),
            "--cards",
            &w.p("fleet.csv"),
            "--sd",
            SSD,
        ],
    );
    let server = Arc::new(Mutex::new(ServerProc::start(&w.hsm, &config)));
    let open =
        |i: usize| signer::transport::SimTransport::open(std::path::Path::new(&images[i])).unwrap();

    // Card 0 without faults: the opening POST, two scripts, a 204.
    let first = agent(port).run(&mut open(0)).unwrap();
    assert_eq!((first.scripts, first.resumes), (2, 0));
    let operation = first.apdus - 3;
    assert!(
        operation >= 4,
        "EXTERNAL AUTHENTICATE, INSTALL, LOAD…, INSTALL: {first:?}"
    );
    let mut next = 1;

    // The connection cut after each of the six messages of an install in turn (and before the first).
    for cut_after in 0..6 {
        let proxy = CutProxy::start(port, cut_after);
        let mut cfg = agent(proxy.port);
        cfg.server = format!("http://127.0.0.1:{}/admin", proxy.port)
            .parse()
            .unwrap();
        let s = cfg.run(&mut open(next)).unwrap();
        assert!(
            proxy.cut.load(std::sync::atomic::Ordering::SeqCst),
            "cut after message {cut_after}"
        );
        assert!(s.resumes >= 1, "cut after message {cut_after}: {s:?}");
        next += 1;
    }

    // Power lost after each APDU of the operation script in turn (0: right after identification); the
    // card then calls again, is audited in a fresh channel and gets only what it lacks.
    for after in 0..operation {
        let mut card = PowerCut::new(&images[next], 3 + after);
        let err = agent(port).run(&mut card).unwrap_err();
        assert!(err.to_string().contains("lost power"), "{err}");
        let again = agent(port).run(&mut open(next)).unwrap();
        // Identification, the audit, and what the card still lacks (the last APDU never ran).
        assert_eq!(again.scripts, 3, "power cut after APDU {after}: {again:?}");
        next += 1;
    }

    // The server killed and restarted while a card runs its operation script: the agent's results find
    // a server that never heard of the session; the card is identified again, audited and finished.
    let mut card = PowerCut::new(&images[next], 3 + operation - 1);
    let (srv, cfg_path) = (server.clone(), config.clone());
    let tool_env = (w.hsm.conf(), w.hsm.pin.clone());
    card.at_end = Some(Box::new(move || {
        let mut s = srv.lock().unwrap();
        s.kill();
        let child = std::process::Command::new(postissue_tests::bin("admin-server"))
            .args(["serve", "--config"])
            .arg(&cfg_path)
            .env("SOFTHSM2_CONF", &tool_env.0)
            .env(postissue_tests::PIN_VAR, &tool_env.1)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        *s = ServerProc::adopt(child);
    }));
    let s = agent(port).run(&mut card).unwrap();
    assert!(s.resumes >= 1 && s.scripts >= 4, "{s:?}");
    next += 1;

    // Power lost twice: after the first LOAD block, then again in the script that continues after the
    // audit (identification 3, audit: EXTERNAL AUTHENTICATE and the load file's GET STATUS, which finds
    // nothing, then INSTALL [for load] of the new script); the third call finishes.
    let mut card = PowerCut::new(&images[next], 3 + 3);
    assert!(agent(port).run(&mut card).is_err());
    let mut card = PowerCut::new(&images[next], 3 + 2 + 1);
    let err = agent(port).run(&mut card).unwrap_err();
    assert!(err.to_string().contains("lost power"), "{err}");
    assert_eq!(card.sent, 6, "the power went during the continuation");
    let s = agent(port).run(&mut open(next)).unwrap();
    assert_eq!(s.scripts, 3, "{s:?}");
    next += 1;

    // The rest of the fleet without faults.
    while next < CARDS {
        let s = agent(port).run(&mut open(next)).unwrap();
        assert_eq!(s.scripts, 2);
        next += 1;
    }

    // The database agrees with the cards: every card done, the application and its load file once.
    let show = campaign(&w.hsm, &config, &["show", "fleet"]);
    let rows = rows(&show);
    assert_eq!(rows.len(), CARDS, "{show}");
    for (i, image) in images.iter().enumerate() {
        let (_, k, state, attempts, _) = &rows[i];
        assert_eq!(
            (k.as_str(), state.as_str()),
            (kdd(i).as_str(), "done"),
            "{show}"
        );
        assert!(*attempts >= 1, "{show}");
        let reg = w.registry(image);
        assert_eq!(count_entries(&reg, "APP", APPLET), 1, "card {i}: {reg}");
        assert_eq!(count_entries(&reg, "ELF", &load_file), 1, "card {i}: {reg}");
    }
    let verified = verify_remote_ledger(&w.hsm, w.hsm.dir.path());
    assert!(
        verified.contains(&format!("{CARDS} entries, chain intact")),
        "{verified}"
    );
}
