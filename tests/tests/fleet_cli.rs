//! The swarm's command line as people read it (a snapshot of `admin-agent swarm --help`), and its one-line
//! refusals of impossible values.

mod remote_common;

use postissue_tests::{bin, fails, ok};
use remote_common::snapshot;
use std::process::Command;

fn agent() -> Command {
    let mut c = Command::new(bin("admin-agent"));
    c.env_remove("COLUMNS");
    c
}

#[test]
fn swarm_help_and_refusals() {
    snapshot(
        "admin-agent-swarm-help",
        &ok(agent().args(["swarm", "--help"])),
    );
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().display().to_string();
    let err = fails(agent().args([
        "swarm",
        "--server",
        "http://127.0.0.1:9/admin",
        "--images",
        &images,
        "--drop-rate",
        "1.5",
    ]));
    assert!(
        err.contains("--drop-rate 1.5 is not between 0 and 1"),
        "{err}"
    );
    let err = fails(agent().args([
        "swarm",
        "--server",
        "http://192.0.2.1:9/admin",
        "--images",
        &images,
    ]));
    assert!(err.contains("loopback"), "{err}");
    let err = fails(agent().args([
        "swarm",
        "--server",
        "http://127.0.0.1:9/admin",
        "--images",
        &images,
        "--cards",
        "3",
    ]));
    assert!(err.contains("only 0 image(s)"), "{err}");
}
