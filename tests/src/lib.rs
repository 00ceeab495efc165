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

    /// Generates a signing key pair in `token` with `pkcs11-tool` (OpenSC): `kind` is `rsa:1024`,
    /// `rsa:2048` or `EC:prime256v1`. Both halves get `label`.
    pub fn keypair(&self, token: &str, label: &str, id: &str, kind: &str) {
        let out = Command::new("pkcs11-tool")
            .env("SOFTHSM2_CONF", self.conf())
            .args([
                "--module",
                "/usr/lib/softhsm/libsofthsm2.so",
                "--token-label",
                token,
            ])
            .args([
                "--login",
                "--pin",
                &self.pin,
                "--keypairgen",
                "--key-type",
                kind,
            ])
            .args(["--label", label, "--id", id])
            .output()
            .expect("pkcs11-tool must be installed (./run test installs opensc)");
        assert!(
            out.status.success(),
            "pkcs11-tool: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Exports the public key `label` of `token` as a PEM file and returns its path.
    pub fn public_pem(&self, token: &str, label: &str) -> PathBuf {
        let der = self.path(&format!("{label}.der"));
        let pem = self.path(&format!("{label}.pem"));
        let out = Command::new("pkcs11-tool")
            .env("SOFTHSM2_CONF", self.conf())
            .args([
                "--module",
                "/usr/lib/softhsm/libsofthsm2.so",
                "--token-label",
                token,
            ])
            .args(["--read-object", "--type", "pubkey", "--label", label, "-o"])
            .arg(&der)
            .output()
            .expect("pkcs11-tool");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = Command::new("openssl")
            .args(["pkey", "-pubin", "-inform", "DER", "-in"])
            .arg(&der)
            .arg("-out")
            .arg(&pem)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        pem
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

/// Where Debian's `libnss3` puts NSS softokn, the second PKCS#11 implementation the tests run on.
pub const NSS_MODULE: &str = "/usr/lib/x86_64-linux-gnu/libsoftokn3.so";
/// SoftHSM2's module on Debian.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// The NSS token that keeps objects (the key database); its PIN is the database password.
pub const NSS_TOKEN: &str = "NSS Certificate DB";

/// The two PKCS#11 implementations the tests run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// SoftHSM2 2.6.1 (Debian `softhsm2`).
    SoftHsm,
    /// NSS softokn (Debian `libnss3`), with a database made by `certutil` (Debian `libnss3-tools`).
    Nss,
}

/// A temporary NSS database with a password, opened through NSS softokn's PKCS#11 module.
///
/// NSS softokn starts only with an initialisation string naming its database; it has one token that keeps
/// objects, [`NSS_TOKEN`], whose user PIN is the database password.
pub struct NssDb {
    /// Holds the database; removed on drop.
    pub dir: tempfile::TempDir,
    /// The database password, which is the token's user PIN.
    pub pin: String,
}

impl NssDb {
    /// A fresh database protected by a random password, made by `certutil -N`.
    pub fn new() -> NssDb {
        assert!(
            Path::new(NSS_MODULE).exists(),
            "{NSS_MODULE} is missing: install libnss3 (./run test installs it)"
        );
        let dir = tempfile::tempdir().expect("temporary directory");
        std::fs::create_dir(dir.path().join("db")).expect("db directory");
        std::fs::create_dir(dir.path().join("work")).expect("work directory");
        let pin = format!("{:016x}", rand_u64());
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, &pin).expect("password file");
        let out = Command::new("certutil")
            .arg("-N")
            .arg("-d")
            .arg(format!("sql:{}", dir.path().join("db").display()))
            .arg("-f")
            .arg(&pwfile)
            .output()
            .expect("certutil must be installed (Debian libnss3-tools; ./run test installs it)");
        assert!(
            out.status.success(),
            "certutil -N: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::remove_file(&pwfile).expect("remove password file");
        NssDb { dir, pin }
    }

    /// The initialisation string NSS softokn needs at `C_Initialize` for this database.
    pub fn init_string(&self) -> String {
        format!(
            "configdir='sql:{}' certPrefix='' keyPrefix='' secmod='secmod.db' flags=",
            self.dir.path().join("db").display()
        )
    }

    /// A command for one of the project's binaries, pointed at NSS softokn and this database through
    /// `PKCS11_MODULE` and `PKCS11_MODULE_INIT`, with the PIN in [`PIN_VAR`].
    pub fn tool(&self, name: &str) -> Command {
        let mut c = Command::new(bin(name));
        c.env("PKCS11_MODULE", NSS_MODULE)
            .env("PKCS11_MODULE_INIT", self.init_string())
            .env(PIN_VAR, &self.pin)
            .current_dir(self.path("work"));
        c
    }

    /// A path inside the database's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Default for NssDb {
    fn default() -> Self {
        NssDb::new()
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

/// `signer card create-sd`: the issuer creates the vendor's security domain `sd` on the simulated card
/// `image` through its card-domain channel (keys derived from `master`), with `privileges` and SCP03.
pub fn create_sd(hsm: &SoftHsm, image: &str, master: &str, sd: &str, privileges: &str) -> Command {
    let mut c = hsm.tool("signer");
    c.args([
        "card",
        "create-sd",
        "--card",
        &format!("sim:{image}"),
        "--master",
        master,
        "--sd",
        sd,
        "--privileges",
        privileges,
        "--scp",
        "03",
        "--pin-source",
        &format!("env:{PIN_VAR}"),
    ]);
    c
}

/// `signer sd put-keys`: the vendor puts the card's DAP key (derived from `dap_master` with scheme `aes`)
/// and, when given, `cipher_key` into its security domain `sd`, through the SSD's own channel.
pub fn sd_put_keys(
    hsm: &SoftHsm,
    image: &str,
    sd: &str,
    dap_master: &str,
    cipher_key: Option<&str>,
) -> Command {
    let mut c = hsm.tool("signer");
    c.args([
        "sd",
        "put-keys",
        "--card",
        &format!("sim:{image}"),
        "--sd",
        sd,
        "--dap-master",
        dap_master,
        "--diversify",
        "aes",
        "--pin-source",
        &format!("env:{PIN_VAR}"),
    ]);
    if let Some(k) = cipher_key {
        c.args(["--cipher-key", k]);
    }
    c
}

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Plain-text snapshots of `signer`'s command-line outputs, kept under `signer/tests/snapshots/`: a
/// change to the command line shows up in review as a change to those files. Run the tests with
/// `UPDATE_SNAPSHOTS=1` to rewrite them, then read the diff.
pub mod snapshot {
    use std::path::Path;
    use std::process::Command;

    /// Compares `actual` with the snapshot `signer/tests/snapshots/NAME.txt` (or, with
    /// `UPDATE_SNAPSHOTS` set, writes it there).
    pub fn check(name: &str, actual: &str) {
        let path = crate::root()
            .join("signer/tests/snapshots")
            .join(format!("{name}.txt"));
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, actual).unwrap();
            return;
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
            panic!("{} is missing; run with UPDATE_SNAPSHOTS=1", path.display())
        });
        assert_eq!(
            actual, expected,
            "snapshot {name} differs; rerun with UPDATE_SNAPSHOTS=1 if intended"
        );
    }

    /// `signer` run in `dir`, without `COLUMNS` (so help texts wrap the same everywhere).
    pub fn signer(dir: &Path) -> Command {
        let mut c = Command::new(crate::bin("signer"));
        c.current_dir(dir).env_remove("COLUMNS");
        c
    }

    /// Checks the output of `signer ARGS` (which must succeed) against the snapshot NAME, for each
    /// `(NAME, ARGS)` of `cases`; `signer` runs in a fresh temporary directory.
    pub fn check_all(cases: &[(&str, &[&str])]) {
        let dir = tempfile::tempdir().unwrap();
        for (name, args) in cases {
            check(name, &crate::ok(signer(dir.path()).args(*args)));
        }
    }
}

/// A throwaway PostgreSQL cluster (the fleet tests and benchmarks).
pub mod postgres;

#[path = "../../card-firmware/tests/common/pcscd_lock.rs"]
pub mod pcscd_lock;

/// The real PC/SC stack for the interoperability tests (docs/interop.md): pcscd with vsmartcard's
/// vpcd driver, whose readers the simulated card plugs into.
pub mod pcsc_stack {
    use std::ffi::CString;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    /// pcscd as Debian installs it.
    pub const PCSCD: &str = "/usr/sbin/pcscd";
    /// vsmartcard's vpcd driver, as Debian's `vsmartcard-vpcd` installs it.
    pub const VPCD_DRIVER: &str = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so";

    /// Why the PC/SC stack cannot run here (a missing package), or `None` when it can.
    pub fn unavailable() -> Option<String> {
        for (path, package) in [(PCSCD, "pcscd"), (VPCD_DRIVER, "vsmartcard-vpcd")] {
            if !Path::new(path).exists() {
                return Some(format!(
                    "{path} is missing (Debian package {package}; ./run test installs it)"
                ));
            }
        }
        None
    }

    fn terminate(child: &mut Child) {
        // SIGTERM first so pcscd removes its socket and pid file; SIGKILL if it lingers.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// A running pcscd: one this guard started (stopped on drop, even when the test fails) or,
    /// when one already answers, that one (left alone: it is not ours). Either way the guard holds
    /// the machine-wide bench lock ([`crate::pcscd_lock`]) until dropped, so keep it alive as long
    /// as the test uses pcscd or the vpcd ports (drop any [`CardSim`] before it).
    pub struct Pcscd {
        child: Option<Child>,
        log: Option<PathBuf>,
        // Dropped after `Drop::drop` has stopped our pcscd.
        _lock: crate::pcscd_lock::PcscdLock,
    }

    impl Pcscd {
        /// Wait for the bench lock, then use the running pcscd or start `pcscd --foreground`,
        /// logging to `log`.
        pub fn start(log: &Path) -> Pcscd {
            let lock = crate::pcscd_lock::acquire();
            if pcsc::Context::establish(pcsc::Scope::User).is_ok() {
                return Pcscd {
                    child: None,
                    log: None,
                    _lock: lock,
                };
            }
            let out = std::fs::File::create(log).expect("pcscd log file");
            let err = out.try_clone().expect("pcscd log file");
            let child = Command::new(PCSCD)
                .args(["--foreground", "--error"])
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .expect("start pcscd");
            let mut guard = Pcscd {
                child: Some(child),
                log: Some(log.to_path_buf()),
                _lock: lock,
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while pcsc::Context::establish(pcsc::Scope::User).is_err() {
                let exited = guard
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten());
                if exited.is_some() || Instant::now() > deadline {
                    panic!(
                        "pcscd did not start ({}): {}",
                        exited.map_or("timeout".to_string(), |s| s.to_string()),
                        guard.log_text()
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            guard
        }

        /// Whether this guard started pcscd (and will stop it).
        pub fn started_here(&self) -> bool {
            self.child.is_some()
        }

        /// What pcscd logged, when this guard started it.
        pub fn log_text(&self) -> String {
            self.log
                .as_ref()
                .and_then(|p| std::fs::read_to_string(p).ok())
                .unwrap_or_default()
        }
    }

    impl Drop for Pcscd {
        fn drop(&mut self) {
            if let Some(child) = &mut self.child {
                terminate(child);
            }
        }
    }

    /// `card-sim serve` plugging a card image into vpcd; stopped on drop.
    pub struct CardSim {
        child: Child,
        log: PathBuf,
    }

    impl CardSim {
        /// Serve `image` on vpcd at `127.0.0.1:port`, logging to `log`.
        pub fn serve(image: &Path, port: u16, log: &Path) -> CardSim {
            let out = std::fs::File::create(log).expect("card-sim log file");
            let err = out.try_clone().expect("card-sim log file");
            let child = Command::new(crate::bin("card-sim"))
                .arg("serve")
                .arg("--image")
                .arg(image)
                .arg("--vpcd")
                .arg(format!("127.0.0.1:{port}"))
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .expect("start card-sim serve");
            CardSim {
                child,
                log: log.to_path_buf(),
            }
        }

        /// Wait until the card in `reader` answers SELECT of the ISD through PC/SC (pcscd polls
        /// vpcd), or panic after `timeout`.
        pub fn wait_for_card(&mut self, reader: &str, timeout: Duration) {
            let name = CString::new(reader).expect("reader name");
            let deadline = Instant::now() + timeout;
            loop {
                let attempt = pcsc::Context::establish(pcsc::Scope::User).and_then(|ctx| {
                    let card = ctx.connect(&name, pcsc::ShareMode::Shared, pcsc::Protocols::ANY)?;
                    let mut buf = [0u8; 258];
                    let answered = card
                        .transmit(&[0x00, 0xA4, 0x04, 0x00, 0x00], &mut buf)
                        .map(|r| r.ends_with(&[0x90, 0x00]));
                    let _ = card.disconnect(pcsc::Disposition::LeaveCard);
                    match answered {
                        Ok(true) => Ok(()),
                        Ok(false) => Err(pcsc::Error::UnknownCard),
                        Err(e) => Err(e),
                    }
                });
                match attempt {
                    Ok(()) => return,
                    Err(e) => {
                        if let Ok(Some(status)) = self.child.try_wait() {
                            panic!("card-sim serve exited ({status}): {}", self.log_text());
                        }
                        if Instant::now() > deadline {
                            panic!(
                                "no card answering in reader {reader:?} after {timeout:?} ({e}); \
                                 card-sim: {}",
                                self.log_text()
                            );
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }

        /// Stop card-sim and wait until pcscd reports `reader` empty, so that the next card
        /// plugged in is not mistaken for this one.
        pub fn remove(mut self, reader: &str) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let name = CString::new(reader).expect("reader name");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                let empty = pcsc::Context::establish(pcsc::Scope::User).and_then(|ctx| {
                    let mut states = [pcsc::ReaderState::new(
                        name.as_c_str(),
                        pcsc::State::UNAWARE,
                    )];
                    ctx.get_status_change(Duration::from_millis(0), &mut states)?;
                    Ok(!states[0].event_state().contains(pcsc::State::PRESENT))
                });
                if empty.unwrap_or(true) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            panic!("pcscd still sees a card in {reader:?} 10 s after card-sim stopped");
        }

        /// What card-sim logged.
        pub fn log_text(&self) -> String {
            std::fs::read_to_string(&self.log).unwrap_or_default()
        }
    }

    impl Drop for CardSim {
        fn drop(&mut self) {
            // card-sim keeps nothing in RAM worth saving: every change is already in the image.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The Python interpreter of the virtual environment `scripts/interop-setup.sh` makes for the
/// foreign GlobalPlatform tool (Py-GP); `INTEROP_VENV` overrides its location.
pub fn interop_python() -> PathBuf {
    let venv = std::env::var_os("INTEROP_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target").join("interop-venv"));
    let python = venv.join("bin").join("python");
    assert!(
        python.exists(),
        "{} is missing: the interoperability tests drive the card with Py-GP from that virtual \
         environment; run `./run test` (or scripts/interop-setup.sh) to make it",
        python.display()
    );
    python
}
