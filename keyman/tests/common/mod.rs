//! Helpers shared by keyman's end-to-end tests: the `keyman` binary run against throwaway SoftHSM2 tokens,
//! scripted answers, and reading tokens and ledgers back independently.
#![allow(dead_code)]

use postissue_tests::{fails, ok, run, SoftHsm, PIN_VAR};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `--pin-source` for the test PIN.
pub fn pin_source() -> String {
    format!("env:{PIN_VAR}")
}

/// A token store with tokens of these labels, and a working directory for outputs.
pub fn store(tokens: &[&str]) -> SoftHsm {
    let hsm = SoftHsm::new();
    for t in tokens {
        hsm.init_token(t);
    }
    std::fs::create_dir(hsm.path("work")).expect("work directory");
    hsm
}

/// `keyman` with the store's configuration, run in its work directory.
pub fn keyman(hsm: &SoftHsm) -> Command {
    let mut c = hsm.tool("keyman");
    c.current_dir(hsm.path("work"));
    c
}

/// A shipped ceremony script.
pub fn shipped(name: &str) -> PathBuf {
    postissue_tests::root().join("ceremonies").join(name)
}

/// Writes a file readable by its owner only (answers, PIN files).
pub fn private_file(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// Writes a script into the store's directory and returns its path.
pub fn script(hsm: &SoftHsm, name: &str, text: &str) -> PathBuf {
    let p = hsm.path(name);
    std::fs::write(&p, text).expect("script");
    p
}

/// Runs a ceremony that must succeed; returns its standard output.
pub fn ceremony_ok(hsm: &SoftHsm, script: &Path, ledger: &str, extra: &[&str]) -> String {
    ok(keyman(hsm)
        .args(["ceremony", "run"])
        .arg(script)
        .args(["--ledger", ledger, "--pin-source", &pin_source()])
        .args(extra))
}

/// Runs a ceremony that must fail with one line; returns that line.
pub fn ceremony_fails(hsm: &SoftHsm, script: &Path, ledger: &str, extra: &[&str]) -> String {
    fails(
        keyman(hsm)
            .args(["ceremony", "run"])
            .arg(script)
            .args(["--ledger", ledger, "--pin-source", &pin_source()])
            .args(extra),
    )
}

/// `keyman keys list` of a token.
pub fn inventory(hsm: &SoftHsm, token: &str) -> String {
    ok(keyman(hsm).args(["keys", "list", token, "--pin-source", &pin_source()]))
}

/// The number of key objects `keyman keys list` reports.
pub fn key_count(hsm: &SoftHsm, token: &str) -> usize {
    let inv = inventory(hsm, token);
    let first = inv.lines().next().unwrap_or_default();
    first
        .split("): ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {inv}"))
}

/// OpenSC's view of a token's objects (`pkcs11-tool -O`), logged in with the test PIN.
pub fn pkcs11_tool_objects(hsm: &SoftHsm, token: &str) -> String {
    ok(Command::new("pkcs11-tool")
        .env("SOFTHSM2_CONF", hsm.conf())
        .env(PIN_VAR, &hsm.pin)
        .args([
            "--module",
            "/usr/lib/softhsm/libsofthsm2.so",
            "--token-label",
            token,
        ])
        .args(["--login", "--pin", &format!("env:{PIN_VAR}"), "-O"]))
}

/// The ledger's entries as JSON values.
pub fn ledger_entries(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("ledger")
        .lines()
        .map(|l| serde_json::from_str(l).expect("ledger line is JSON"))
        .collect()
}

/// `keyman ledger verify --unanchored` must succeed: the chain of a ceremony's new ledger, which no
/// token anchors yet (the workspace tests anchor and cut ledgers).
pub fn verify_ledger(hsm: &SoftHsm, path: &Path) -> String {
    let out = ok(keyman(hsm)
        .args(["ledger", "verify", "--unanchored"])
        .arg(path));
    assert!(out.contains("chain intact"), "{out}");
    out
}

/// Random hex digits from the operating system (component values for rehearsals).
pub fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    let mut f = std::fs::File::open("/dev/urandom").expect("urandom");
    std::io::Read::read_exact(&mut f, &mut b).expect("urandom");
    hex::encode_upper(b)
}

/// Runs any command and returns its output (for commands whose failure is expected and checked).
pub fn output(cmd: &mut Command) -> std::process::Output {
    run(cmd)
}
