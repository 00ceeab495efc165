//! Helpers shared by the workspace end-to-end tests: a throwaway SoftHSM2 token and the project's binaries.
//!
//! The tests drive the real tools: SoftHSM2 through PKCS#11 (never a mock), the simulated card through its
//! image file. `./run test` builds the binaries before the tests run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The environment variable the tests pass PINs through (never an argument).
pub const PIN_VAR: &str = "POSTISSUE_TEST_PIN";

/// A directory with its own SoftHSM2 configuration and token store.
pub struct SoftHsm {
    /// Holds the files; removed on drop.
    pub dir: tempfile::TempDir,
    /// The user PIN of every token made here.
    pub pin: String,
}

impl SoftHsm {
    /// A fresh token store with no tokens.
    pub fn new() -> SoftHsm {
        let dir = tempfile::tempdir().expect("temporary directory");
        std::fs::create_dir(dir.path().join("tokens")).expect("token directory");
        std::fs::write(
            dir.path().join("softhsm2.conf"),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.path().join("tokens").display()
            ),
        )
        .expect("softhsm2.conf");
        SoftHsm {
            dir,
            pin: format!("{:016x}", rand_u64()),
        }
    }

    /// The `SOFTHSM2_CONF` path for this store.
    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("softhsm2.conf")
    }

    /// Initialises a token with this label (SO PIN random, user PIN `self.pin`).
    pub fn init_token(&self, label: &str) {
        let out = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", self.conf())
            .args(["--init-token", "--free", "--label", label, "--so-pin"])
            .arg(format!("{:016x}", rand_u64()))
            .arg("--pin")
            .arg(&self.pin)
            .output()
            .expect("softhsm2-util must be installed (./run test installs it)");
        assert!(
            out.status.success(),
            "softhsm2-util: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A command for one of the project's binaries, with this store's configuration and the PIN in
    /// [`PIN_VAR`].
    pub fn tool(&self, name: &str) -> Command {
        let mut c = Command::new(bin(name));
        c.env("SOFTHSM2_CONF", self.conf()).env(PIN_VAR, &self.pin);
        c
    }

    /// A path inside the store's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Default for SoftHsm {
    fn default() -> Self {
        SoftHsm::new()
    }
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    let f = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b));
    f.expect("/dev/urandom");
    u64::from_le_bytes(b)
}

/// The path of one of the workspace's binaries, next to the test executable's directory.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory")
        .to_path_buf();
    let candidates = [dir.join(name), dir.join("examples").join(name)];
    for c in &candidates {
        if c.exists() {
            return c.clone();
        }
    }
    panic!(
        "{} is not built; run `cargo build --workspace --bins --examples` first (./run test does)",
        name
    );
}

/// Runs a command and returns its output, printing it for the test log.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run command");
    println!("$ {:?}\n{}", cmd, String::from_utf8_lossy(&out.stdout));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Runs a command that must succeed and returns its standard output.
pub fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(out.status.success(), "command failed: {:?}", cmd);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command that must fail with one clear line on standard error, and returns that line.
pub fn fails(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        !out.status.success(),
        "command should have failed: {:?}",
        cmd
    );
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(
        err.lines().count(),
        1,
        "expected one error line, got: {err}"
    );
    err
}

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}
