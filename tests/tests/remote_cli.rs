//! The command lines of `admin-server` and `admin-agent` as people read them (snapshots of `--help`), and
//! the one-line refusals of configurations and options that would weaken the server or the agent.

mod remote_common;

use postissue_tests::{bin, fails, ok};
use remote_common::snapshot;
use std::process::Command;

/// A configuration `(…)` with an operations listener at `listen` added.
fn with_ops(config: &str, listen: &str) -> String {
    let open = config.strip_suffix(')').unwrap();
    format!(r#"{open}, ops: Some((listen: "{listen}")))"#)
}

fn tool(name: &str) -> Command {
    let mut c = Command::new(bin(name));
    c.env_remove("COLUMNS");
    c
}

#[test]
fn help_texts() {
    for (name, tool_name, args) in [
        ("admin-server-help", "admin-server", &["--help"][..]),
        (
            "admin-server-serve-help",
            "admin-server",
            &["serve", "--help"][..],
        ),
        (
            "admin-server-campaign-help",
            "admin-server",
            &["campaign", "--help"][..],
        ),
        (
            "admin-server-campaign-add-help",
            "admin-server",
            &["campaign", "--config", "x", "add", "--help"][..],
        ),
        (
            "admin-server-campaign-report-help",
            "admin-server",
            &["campaign", "--config", "x", "report", "--help"][..],
        ),
        ("admin-agent-help", "admin-agent", &["--help"][..]),
    ] {
        snapshot(name, &ok(tool(tool_name).args(args)));
    }
}

#[test]
fn weak_configurations_and_options_are_refused_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let base = |listen: &str, tls: &str, pin: &str| {
        format!(
            r#"(listen: "{listen}", tls: {tls}, database: "r.db", issuer_master: "pkcs11:token=issuer;object=isd-kmc", pin_source: "{pin}")"#
        )
    };
    for (name, text, expect) in [
        (
            "public-plain.ron",
            base("0.0.0.0:8080", "(plain_http_on_loopback: true)", "env:P"),
            "loopback only",
        ),
        (
            "no-tls.ron",
            base("127.0.0.1:8080", "()", "env:P"),
            "configure a certificate",
        ),
        (
            "prompt.ron",
            base("127.0.0.1:8080", "(plain_http_on_loopback: true)", "prompt"),
            "cannot be prompted",
        ),
        (
            "unknown.ron",
            base(
                "127.0.0.1:8080",
                "(plain_http_on_loopback: true, extra: 1)",
                "env:P",
            ),
            "extra",
        ),
        (
            "public-ops.ron",
            with_ops(
                &base("127.0.0.1:8080", "(plain_http_on_loopback: true)", "env:P"),
                "0.0.0.0:9464",
            ),
            "no authentication",
        ),
        (
            "ops-on-agents-port.ron",
            with_ops(
                &base("127.0.0.1:8080", "(plain_http_on_loopback: true)", "env:P"),
                "127.0.0.1:8080",
            ),
            "agents' port",
        ),
    ] {
        let p = write(name, &text);
        let err = fails(tool("admin-server").args(["serve", "--config"]).arg(&p));
        assert!(err.contains(expect), "{name}: {err}");
    }
    // The agent refuses plain HTTP to anything but loopback, before it touches the card.
    let err = fails(tool("admin-agent").args([
        "--server",
        "http://192.0.2.1:8080/admin",
        "--card",
        &format!("sim:{}", dir.path().join("missing.img").display()),
    ]));
    assert!(
        err.starts_with("admin-agent: error:") && err.contains("loopback"),
        "{err}"
    );
}
