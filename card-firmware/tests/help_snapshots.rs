//! Snapshots of `card-sim --help` and each subcommand's help, compared byte for byte with the files
//! under `card-firmware/tests/snapshots/` (the convention of `tests/tests/cli_snapshots.rs` and
//! `keyman/tests/snapshots.rs`). A change to the command line shows up in review as a change to those
//! files: run `UPDATE_SNAPSHOTS=1 cargo test -p card-firmware --test help_snapshots` to rewrite them,
//! then read the diff.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::PathBuf;
use std::process::Command;

fn snapshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{name}.txt"))
}

/// Compares `actual` with the stored snapshot (`None` when equal), or stores it when
/// `UPDATE_SNAPSHOTS` is set.
fn check(name: &str, actual: &str) -> Option<String> {
    let path = snapshot_path(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).expect("write snapshot");
        return None;
    }
    let Ok(expected) = std::fs::read_to_string(&path) else {
        return Some(format!(
            "{} is missing; run with UPDATE_SNAPSHOTS=1",
            path.display()
        ));
    };
    if expected == actual {
        return None;
    }
    let first = expected
        .lines()
        .zip(actual.lines())
        .position(|(e, a)| e != a)
        .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
    Some(format!(
        "{}: differs from line {} on (rerun with UPDATE_SNAPSHOTS=1 if intended)\n  expected: {:?}\n  actual:   {:?}",
        path.display(),
        first + 1,
        expected.lines().nth(first).unwrap_or("<end>"),
        actual.lines().nth(first).unwrap_or("<end>")
    ))
}

/// `card-sim ARGS` (which must succeed) without `COLUMNS`, so help texts wrap the same everywhere.
fn card_sim(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_card-sim"))
        .env_remove("COLUMNS")
        .args(args)
        .output()
        .expect("run card-sim");
    assert!(
        out.status.success(),
        "card-sim {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

#[test]
fn help_texts_are_stable() {
    let mut failures = Vec::new();
    for (name, args) in [
        ("help", &["--help"][..]),
        ("help-new", &["new", "--help"]),
        ("help-serve", &["serve", "--help"]),
        ("help-info", &["info", "--help"]),
    ] {
        failures.extend(check(name, &card_sim(args)));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
