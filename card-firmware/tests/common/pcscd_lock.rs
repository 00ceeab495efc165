//! The machine-wide lock on the PC/SC test bench: pcscd has one socket per machine and vpcd listens on
//! fixed ports (35963, 35964), so a test owns the bench only while it holds an advisory `flock` on
//! [`PATH`]. The lock spans processes (two developers' runs, two test binaries) and threads alike (each
//! [`acquire`] opens the file anew), and the kernel drops it when the holder exits, even on a crash.
//!
//! One implementation for both users: card-firmware's `tests/pcsc.rs` and `postissue-tests`
//! (`tests/src/lib.rs` includes this file with `#[path]`).

use std::fs::File;
use std::time::{Duration, Instant};

/// The lock file; anyone who can read it can lock it.
pub const PATH: &str = "/tmp/postissue-pcscd.lock";

/// How long a test waits for the bench before failing.
pub const TIMEOUT: Duration = Duration::from_secs(600);

/// Holds the bench until dropped (closing the file releases the lock).
#[must_use = "the lock is released when the guard is dropped"]
pub struct PcscdLock {
    _file: File,
}

/// Waits (up to [`TIMEOUT`]) for the bench and returns it; panics when another holder keeps it longer.
pub fn acquire() -> PcscdLock {
    // Read-only is enough for flock, so a file another user created is usable too.
    let file = File::open(PATH)
        .or_else(|_| File::create(PATH))
        .unwrap_or_else(|e| panic!("open the PC/SC test lock {PATH}: {e}"));
    let started = Instant::now();
    let mut told = false;
    loop {
        // Called through the trait: on Rust 1.89+ `File` has an inherent `try_lock` of its own.
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => return PcscdLock { _file: file },
            Err(fs4::TryLockError::WouldBlock) => {}
            Err(fs4::TryLockError::Error(e)) => panic!("lock {PATH}: {e}"),
        }
        if started.elapsed() > TIMEOUT {
            panic!(
                "the PC/SC test bench (pcscd, vpcd ports 35963/35964) stayed locked by another \
                 process for {TIMEOUT:?}; see `fuser -v {PATH}`"
            );
        }
        if !told {
            eprintln!("waiting for the PC/SC test bench: another process holds {PATH}");
            told = true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
