//! The ledger owes exactly one delivery record per installed card even when an instance dies between
//! marking a card done and writing its record: a restarted instance writes the records its ledger lacks,
//! and only those.

mod common;
mod remote_common;

use common::*;
use postissue_tests::{ok, PIN_VAR};
use remote::db::Db;
use remote_common::*;
use std::path::Path;

fn config(dir: &Path, port: u16, ledger: &str) -> std::path::PathBuf {
    let path = dir.join("server.ron");
    std::fs::write(
        &path,
        format!(
            r#"(
    listen: "127.0.0.1:{port}",
    tls: (plain_http_on_loopback: true),
    database: "remote.db",
    issuer_master: "pkcs11:token=issuer;object=isd-kmc",
    scheme: "emv",
    pin_source: "env:{PIN_VAR}",
    ledger: Some("{ledger}"),
)"#
        ),
    )
    .unwrap();
    path
}

fn records(ledger: &str, kdd: &str) -> usize {
    std::fs::read_to_string(ledger)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&format!("KDD:{kdd}")))
        .count()
}

/// Marks every done card as waiting for its record in `ledger`, as a crash right after the commit
/// would have left it.
fn crash_before_record(db: &Path, ledger: &str) {
    let c = rusqlite::Connection::open(db).unwrap();
    let n = c
        .execute(
            "UPDATE cards SET ledger_pending = ?1 WHERE state = 'done'",
            [ledger],
        )
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn a_restarted_instance_writes_the_missing_record_once() {
    let w = World::new();
    let image = w.card("a", KDD_A);
    std::fs::write(w.p("one.csv"), format!("identity,kdd\ncard-a,{KDD_A}\n")).unwrap();
    ok(&mut w.package("plain.pkg", &[]));
    let port = free_port();
    let dir = w.hsm.dir.path();
    let cfg = config(dir, port, "l1.jsonl");
    campaign(
        &w.hsm,
        &cfg,
        &[
            "add",
            "one",
            "--package",
            &w.p("plain.pkg"),
            "--cards",
            &w.p("one.csv"),
        ],
    );
    let (l1, l2) = (w.p("l1.jsonl"), w.p("l2.jsonl"));
    let db = dir.join("remote.db");
    {
        let _server = ServerProc::start(&w.hsm, &cfg);
        let mut card = signer::transport::SimTransport::open(Path::new(&image)).unwrap();
        agent(port).run(&mut card).unwrap();
    }
    assert_eq!(records(&l1, KDD_A), 1);

    // Killed after the record was written but before the mark was cleared: nothing is written again.
    crash_before_record(&db, &l1);
    {
        let _server = ServerProc::start(&w.hsm, &cfg);
    }
    assert_eq!(records(&l1, KDD_A), 1, "no second record");
    assert!(Db::open(&db)
        .unwrap()
        .pending_records(&l1)
        .unwrap()
        .is_empty());

    // Killed before the record was written (here: a ledger that never got it): the restarted instance
    // writes it, once.
    let cfg = config(dir, port, "l2.jsonl");
    crash_before_record(&db, &l2);
    {
        let _server = ServerProc::start(&w.hsm, &cfg);
    }
    assert_eq!(records(&l2, KDD_A), 1, "the missing record is written");
    assert!(Db::open(&db)
        .unwrap()
        .pending_records(&l2)
        .unwrap()
        .is_empty());
    {
        let _server = ServerProc::start(&w.hsm, &cfg);
    }
    assert_eq!(records(&l2, KDD_A), 1, "and only once");
    let verified = verify_ledger_file(&w.hsm, Path::new(&l2));
    assert!(verified.contains("chain intact"), "{verified}");
}
