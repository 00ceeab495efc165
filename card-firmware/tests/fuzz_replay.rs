//! Replays the APDU-sequence fuzz harness without libFuzzer: the hand-written seeds of
//! `fuzz/harness.rs`, every file under `fuzz/seeds/` (the committed corpus, including inputs that
//! once failed), and, when present locally, `fuzz/corpus/apdu_sequences/` and
//! `fuzz/artifacts/apdu_sequences/`. Runs on the stable toolchain in CI; `harness = false`, so it
//! prints its own `N passed, N failed` line.
//!
//! `CARD_FUZZ_WRITE_SEEDS=DIR` writes the hand-written seeds to DIR as files (how `fuzz/seeds/`
//! was made).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    if let Some(dir) = std::env::var_os("CARD_FUZZ_WRITE_SEEDS") {
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, s) in harness::seeds().iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:02}")), s).unwrap();
        }
    }
    let mut inputs: Vec<(String, Vec<u8>)> = harness::seeds()
        .into_iter()
        .enumerate()
        .map(|(i, s)| (format!("built-in seed {i}"), s))
        .collect();
    for sub in ["seeds", "corpus/apdu_sequences", "artifacts/apdu_sequences"] {
        for f in files(&root.join(sub)) {
            let bytes = std::fs::read(&f).unwrap();
            inputs.push((f.display().to_string(), bytes));
        }
    }
    let (mut passed, mut failed) = (0usize, 0usize);
    for (name, bytes) in &inputs {
        match std::panic::catch_unwind(|| harness::run(bytes)) {
            Ok(()) => passed += 1,
            Err(_) => {
                eprintln!("FAILED: {name}");
                failed += 1;
            }
        }
    }
    println!("fuzz replay: {passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
