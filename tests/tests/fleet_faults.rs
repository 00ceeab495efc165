//! Remote delivery at fleet scale, small enough for CI: two admin server instances share one PostgreSQL
//! database (a real cluster, initdb'd for the test) and a swarm of simulated devices calls them while
//! connections drop at random points, cards lose power at a random APDU, one instance is killed and
//! restarted mid-run and the database is restarted once. Afterwards every personalised card holds the
//! application exactly once, every fab-fresh card is failed for its true reason (its keys are not the
//! issuer's), the database agrees with every card's registry, and the two ledgers verify with exactly one
//! delivery record per installed card.
//!
//! The faults come from a seed (`FLEET_SEED`, printed) so that a failure reproduces.

mod common;
mod remote_common;

use common::*;
use postissue_tests::postgres::PgCluster;
use postissue_tests::{ok, PIN_VAR};
use remote::db::{CardState, Db};
use remote_common::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Personalised cards, and fab-fresh cards (transport keys only) in the same campaign.
const PERSONALISED: usize = 46;
const FRESH: usize = 4;

fn kdd(i: usize) -> String {
    format!("F1EE7000000000{i:06X}")
}

/// The configuration of one instance on the shared database, with its own ledger.
fn instance_config(dir: &Path, name: &str, port: u16, database: &str) -> PathBuf {
    let path = dir.join(format!("{name}.ron"));
    std::fs::write(
        &path,
        format!(
            r#"(
    listen: "127.0.0.1:{port}",
    tls: (plain_http_on_loopback: true),
    database: "{database}",
    lease_seconds: 2,
    catch_up_seconds: 1,
    issuer_master: "pkcs11:token=issuer;object=isd-kmc",
    scheme: "emv",
    pin_source: "env:{PIN_VAR}",
    ledger: Some("{name}-ledger.jsonl"),
)"#
        ),
    )
    .unwrap();
    path
}

fn done_count(url: &str) -> u64 {
    Db::open(Path::new(url))
        .and_then(|db| db.campaigns())
        .map(|c| c.iter().map(|c| c.counts[2] + c.counts[3]).sum())
        .unwrap_or(0)
}

fn wait_for(url: &str, n: u64, limit: Duration) {
    let start = Instant::now();
    while done_count(url) < n && start.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn two_instances_on_postgres_lose_nothing_through_cuts_power_loss_a_crash_and_a_database_restart() {
    let seed: u64 = std::env::var("FLEET_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_204);
    println!("FLEET_SEED={seed}");
    let w = World::new();
    let pg = PgCluster::start("fleet", false);
    let images_dir = w.hsm.path("swarm");
    std::fs::create_dir(&images_dir).unwrap();
    let mut list = String::from("identity,kdd\n");
    for i in 0..PERSONALISED + FRESH {
        let image = images_dir.join(format!("card-{i:04}.img"));
        let image = image.display().to_string();
        if i < PERSONALISED {
            let made = w.card(&format!("swarm/tmp-{i}"), &kdd(i));
            std::fs::rename(&made, &image).unwrap();
        } else {
            ok(w.hsm
                .tool("card-sim")
                .args(["new", "--image", &image, "--kdd", &kdd(i)]));
        }
        list.push_str(&format!("card-{i},{}\n", kdd(i)));
    }
    std::fs::write(w.p("fleet.csv"), list).unwrap();
    ok(&mut w.package("fleet.pkg", &[]));

    let dir = w.hsm.dir.path();
    let url = pg.url();
    let (port_a, port_b) = (free_port(), free_port());
    let config_a = instance_config(dir, "a", port_a, &url);
    let config_b = instance_config(dir, "b", port_b, &url);
    let added = campaign(
        &w.hsm,
        &config_a,
        &[
            "add",
            "fleet",
            "--package",
            &w.p("fleet.pkg"),
            "--cards",
            &w.p("fleet.csv"),
        ],
    );
    assert!(
        added.contains(&format!("{} cards", PERSONALISED + FRESH)),
        "{added}"
    );
    let mut server_a = ServerProc::start(&w.hsm, &config_a);
    let _server_b = ServerProc::start(&w.hsm, &config_b);

    let mut images: Vec<PathBuf> = std::fs::read_dir(&images_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "img"))
        .collect();
    images.sort();
    assert_eq!(images.len(), PERSONALISED + FRESH);
    let swarm = remote::swarm::SwarmConfig {
        agents: vec![agent(port_a), agent(port_b)],
        images: images.clone(),
        concurrency: 6,
        seed,
        drop_rate: 0.12,
        power_cut_rate: 0.3,
        apdu_latency: Duration::from_millis(5),
        attempts: 40,
        call_again: Duration::from_millis(250),
    };
    let running = std::thread::spawn(move || remote::swarm::run(&swarm).unwrap());

    // Instance A dies mid-run (no clean shutdown) and comes back on the same address.
    let total = u64::try_from(PERSONALISED + FRESH).unwrap();
    wait_for(&url, total / 4, Duration::from_secs(120));
    let at_kill = done_count(&url);
    server_a.kill();
    std::thread::sleep(Duration::from_millis(700));
    let mut server_a = ServerProc::start(&w.hsm, &config_a);
    // The database restarts under both instances.
    wait_for(&url, total / 2, Duration::from_secs(120));
    let at_db_restart = done_count(&url);
    pg.restart();

    let report = running.join().unwrap();
    println!("{}", report.to_text());
    println!(
        "cards finished when A was killed: {at_kill}, when the database restarted: {at_db_restart}"
    );
    assert!(
        at_kill < total && at_db_restart < total,
        "the crash and the database restart happened mid-run"
    );
    assert_eq!(report.gave_up, 0, "{:?}", report.errors);
    assert_eq!(report.completed, PERSONALISED + FRESH);
    assert!(
        report.power_cuts > 0 && report.connections_dropped > 0,
        "faults were injected: {report:?}"
    );
    server_a.kill();
    // A restarted instance first writes the records its ledger owes (a card marked done whose record a
    // crash or a lost database connection kept out); B catches up its own while serving the pass below.
    let _server_a = ServerProc::start(&w.hsm, &config_a);

    // Every card calls again, through the command-line swarm: each is identified, nothing more is
    // sent, and nothing changes.
    let again = ok(w.hsm.tool("admin-agent").args([
        "swarm",
        "--server",
        &format!("http://127.0.0.1:{port_b}/admin"),
        "--images",
        &images_dir.display().to_string(),
        "--concurrency",
        "4",
        "--json",
    ]));
    let again: serde_json::Value = serde_json::from_str(again.trim()).unwrap();
    assert_eq!(again["cards"], PERSONALISED + FRESH, "{again}");
    assert_eq!(again["completed"], PERSONALISED + FRESH, "{again}");
    assert_eq!(again["installs"], 0, "{again}");
    assert_eq!(again["gave_up"], 0, "{again}");

    // The database agrees with every card.
    let db = Db::open(Path::new(&url)).unwrap();
    let rows = db.cards("fleet").unwrap();
    assert_eq!(rows.len(), PERSONALISED + FRESH);
    let pkg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(w.p("fleet.pkg")).unwrap()).unwrap();
    let load_file = pkg["manifest"]["load_file_aid"]
        .as_str()
        .unwrap()
        .to_uppercase();
    let ledgers: Vec<String> = ["a", "b"]
        .iter()
        .map(|n| w.p(&format!("{n}-ledger.jsonl")))
        .collect();
    let ledger_text: String = ledgers
        .iter()
        .map(|l| std::fs::read_to_string(l).unwrap_or_default())
        .collect();
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.kdd, kdd(i));
        let records = ledger_text
            .lines()
            .filter(|l| l.contains(&format!("KDD:{}", row.kdd)))
            .count();
        if i < PERSONALISED {
            assert_eq!(row.state, CardState::Done, "card {i}: {row:?}");
            let reg = w.registry(&images[i].display().to_string());
            assert_eq!(count_entries(&reg, "APP", APPLET), 1, "card {i}: {reg}");
            assert_eq!(count_entries(&reg, "ELF", &load_file), 1, "card {i}: {reg}");
            assert_eq!(records, 1, "one delivery record for card {i}");
        } else {
            assert_eq!(row.state, CardState::Failed, "card {i}: {row:?}");
            let reason = row.reason.clone().unwrap_or_default();
            assert!(
                reason.contains("cryptogram") && reason.contains("wrong keys"),
                "card {i}: {reason}"
            );
            assert_eq!(records, 0, "no delivery record for failed card {i}");
            // What the card itself holds: no load file, and no EXTERNAL AUTHENTICATE ever failed on it
            // (the server never sent one to keys it could not match).
            let info = ok(w.hsm.tool("card-sim").args([
                "info",
                "--image",
                &images[i].display().to_string(),
            ]));
            assert!(
                info.contains("failed authentications 0/"),
                "card {i}: {info}"
            );
            assert!(!info.contains(&load_file), "card {i}: {info}");
        }
    }
    for l in &ledgers {
        assert!(db.pending_records(l).unwrap().is_empty(), "{l}");
    }
    // Each instance's ledger was made before its first start and verifies against its anchor.
    for l in &ledgers {
        let v = verify_ledger_file(&w.hsm, Path::new(l));
        assert!(v.contains("chain intact"), "{v}");
        assert!(
            v.contains("anchor      token 'issuer' holds this head"),
            "{v}"
        );
    }
    // Both instances served cards, and the restarted one registered anew.
    let instances = db.instances().unwrap();
    assert!(instances.len() >= 3, "{instances:?}");
}
