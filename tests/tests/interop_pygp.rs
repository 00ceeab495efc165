//! Interoperability: a foreign GlobalPlatform tool, Py-GP 1.0.0 (written in 2017, independently of
//! this project), drives the simulated card through the real PC/SC stack: pcscd with vsmartcard's
//! vpcd driver, `card-sim serve` plugged into it. The scenarios are Python scripts under
//! `tests/interop/` (docs/interop.md); each prints `PASS` lines and exits non-zero with a `FAIL:`
//! line on any mismatch, including with what `card-sim info` says about the image.
//!
//! One pcscd machine-wide: the tests take a lock and run one after another, across processes too
//! (`Pcscd::start` holds the flock of `postissue_tests::pcscd_lock`). The card uses vpcd's second
//! reader (`Virtual PCD 00 01`, port 35964), so the card-firmware PC/SC test, which uses the first,
//! never meets this card even when a pcscd is shared outside the lock.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use postissue_tests::pcsc_stack::{self, CardSim, Pcscd};
use postissue_tests::{bin, interop_python, ok, root};

/// vpcd's second slot: the reader pcscd names `Virtual PCD 00 01` listens on this port.
const VPCD_PORT: u16 = 35964;
const READER: &str = "Virtual PCD 00 01";

static SERIAL: Mutex<()> = Mutex::new(());

/// A pcscd and a scratch directory, held by one test at a time.
struct Bench {
    dir: tempfile::TempDir,
    pcscd: Pcscd,
    _lock: MutexGuard<'static, ()>,
}

/// The bench; the test fails, saying what to install, when pcscd or vpcd is not installed.
fn bench(test: &str) -> Bench {
    let lock = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(why) = pcsc_stack::unavailable() {
        panic!("{test} needs the PC/SC stack: {why}");
    }
    let python = interop_python();
    let dir = tempfile::tempdir().expect("temporary directory");
    let pcscd = Pcscd::start(&dir.path().join("pcscd.log"));
    eprintln!(
        "{test}: Py-GP from {}, pcscd {}",
        python.display(),
        if pcscd.started_here() {
            "started by this test"
        } else {
            "already running"
        }
    );
    Bench {
        dir,
        pcscd,
        _lock: lock,
    }
}

impl Bench {
    /// A fab card: `card-sim new --image DIR/NAME.img --scp SCP`.
    fn card(&self, name: &str, scp: &str) -> PathBuf {
        let image = self.dir.path().join(format!("{name}.img"));
        ok(Command::new(bin("card-sim"))
            .arg("new")
            .arg("--image")
            .arg(&image)
            .args(["--scp", scp]));
        image
    }

    /// The project's demo CAP file, written by the `demo-cap` example.
    fn demo_cap(&self) -> PathBuf {
        let cap = self.dir.path().join("demo.cap");
        ok(Command::new(bin("demo-cap")).arg(&cap));
        cap
    }

    /// Serve `image`, wait for the card in the reader, run `tests/interop/SCRIPT` with `args`
    /// (plus `--card-sim` and `--image`), and return its output; panics with both output streams
    /// and the logs when the script fails.
    fn scenario(&self, image: &Path, script: &str, args: &[&str]) -> String {
        let started = Instant::now();
        let mut sim = CardSim::serve(image, VPCD_PORT, &self.dir.path().join("card-sim.log"));
        sim.wait_for_card(READER, Duration::from_secs(20));
        let out = Command::new(interop_python())
            .arg(root().join("tests").join("interop").join(script))
            .arg("--card-sim")
            .arg(bin("card-sim"))
            .arg("--image")
            .arg(image)
            .args(args)
            .env("INTEROP_READER", READER)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output()
            .expect("run the Py-GP scenario");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        println!("$ {script} {}\n{stdout}", args.join(" "));
        eprintln!("{stderr}");
        assert!(
            out.status.success(),
            "{script} {args:?} failed ({}):\n{stdout}\n{stderr}\ncard-sim log:\n{}\npcscd log:\n{}",
            out.status,
            sim.log_text(),
            self.pcscd.log_text()
        );
        sim.remove(READER);
        println!("{script}: {:.1} s", started.elapsed().as_secs_f64());
        stdout
    }

    /// A fab SCP03 card NAME running the `findings.py` scenario `case` (docs/interop.md): its output.
    fn finding(&self, name: &str, case: &str) -> String {
        let card = self.card(name, "03");
        self.scenario(&card, "findings.py", &["--kvn", "30", "--case", case])
    }
}

fn has_line(out: &str, line: &str) {
    assert!(
        out.lines().any(|l| l.trim_end() == line),
        "expected the line {line:?} in:\n{out}"
    );
}

fn has_prefix(out: &str, prefix: &str) {
    assert!(
        out.lines().any(|l| l.starts_with(prefix)),
        "expected a line starting {prefix:?} in:\n{out}"
    );
}

#[test]
fn scp03_i70_authenticates_at_every_security_level() {
    let b = bench("scp03_i70_authenticates_at_every_security_level");
    let card = b.card("scp03", "03");
    let out = b.scenario(
        &card,
        "secure_channel.py",
        &[
            "--scp",
            "03",
            "--kvn",
            "30",
            "--levels",
            "00,01,03,11,13,33",
        ],
    );
    for (level, name) in [
        ("00", "no secure messaging"),
        ("01", "C-MAC"),
        ("03", "C-DEC C-MAC"),
        ("11", "C-MAC R-MAC"),
        ("13", "C-DEC C-MAC R-MAC"),
        ("33", "C-DEC R-ENC C-MAC R-MAC"),
    ] {
        has_prefix(
            &out,
            &format!("PASS SCP03 i=70 KVN 30 level {level} ({name}): EXTERNAL AUTHENTICATE"),
        );
    }
    has_line(
        &out,
        "PASS reset ends the secure channel: wrapped GET DATA after reset answers 6982",
    );
    has_line(&out, "OK secure_channel SCP03");
}

#[test]
fn scp02_i55_authenticates_at_its_security_levels() {
    let b = bench("scp02_i55_authenticates_at_its_security_levels");
    let card = b.card("scp02", "02");
    // i=55 has no R-MAC (GPC E.1.1, b6 = 0): levels 00, 01 and 03.
    let out = b.scenario(
        &card,
        "secure_channel.py",
        &["--scp", "02", "--kvn", "20", "--levels", "00,01,03"],
    );
    for level in ["00", "01", "03"] {
        has_prefix(&out, &format!("PASS SCP02 i=55 KVN 20 level {level} "));
    }
    has_line(&out, "OK secure_channel SCP02");
}

#[test]
fn audit_matches_card_sim_info() {
    let b = bench("audit_matches_card_sim_info");
    for (scp, kvn, level) in [("03", "30", "03"), ("02", "20", "01")] {
        let card = b.card(&format!("audit{scp}"), scp);
        let out = b.scenario(&card, "audit.py", &["--kvn", kvn, "--level", level]);
        has_prefix(
            &out,
            "PASS fab card: GET STATUS ISD/applications/load files match card-sim info",
        );
        has_prefix(&out, "PASS GET DATA 9F7F: CPLC, 42 bytes");
        has_prefix(
            &out,
            &format!("PASS GET DATA 66: card recognition data, GP 2.3.1, SCP{scp} i="),
        );
        has_prefix(
            &out,
            "PASS GET DATA E0: key information matches card-sim info (3 keys)",
        );
        has_line(
            &out,
            "PASS STORE DATA (BER-TLV) IIN and CIN; GET DATA 42 and 45 read them back",
        );
        has_line(&out, "OK audit");
    }
}

#[test]
fn put_key_new_and_replaced_sets_then_authenticate() {
    let b = bench("put_key_new_and_replaced_sets_then_authenticate");
    for (scp, kvn, new, kind) in [("03", "30", "31", "AES"), ("02", "20", "21", "DES")] {
        let card = b.card(&format!("putkey{scp}"), scp);
        let out = b.scenario(
            &card,
            "put_key.py",
            &["--scp", scp, "--kvn", kvn, "--new-kvn", new],
        );
        has_prefix(
            &out,
            &format!("PASS PUT KEY new {kind} key set KVN {new} under C-DEC"),
        );
        has_line(
            &out,
            &format!("PASS authenticated with the new key set KVN {new}"),
        );
        has_prefix(&out, &format!("PASS PUT KEY replace KVN {new} (P1={new})"));
        has_line(
            &out,
            &format!("PASS authenticated with the replaced key set KVN {new}"),
        );
        has_line(
            &out,
            &format!("PASS the transport key set KVN {kvn} still authenticates"),
        );
        has_line(&out, &format!("OK put_key SCP{scp}"));
    }
}

#[test]
fn load_install_select_delete_demo_cap() {
    let b = bench("load_install_select_delete_demo_cap");
    let cap = b.demo_cap();
    let cap = cap.to_str().expect("utf-8 path");
    // SCP03 under C-DEC with 12 more instances (GET STATUS needs '6310'), then SCP02 under C-MAC.
    let card = b.card("demo03", "03");
    let out = b.scenario(
        &card,
        "load_install.py",
        &[
            "--kvn",
            "30",
            "--cap",
            cap,
            "--instances",
            "12",
            "--level",
            "03",
        ],
    );
    has_prefix(
        &out,
        "PASS INSTALL [for load] + 2 LOAD blocks of demo.cap: load file A000000647504901 with module A00000064750490101",
    );
    has_prefix(&out, "PASS GET STATUS P1=40 over ");
    has_line(
        &out,
        "PASS SELECT A00000064750490101 answers 6999 (the card does not execute loaded code); ISD selectable again",
    );
    has_prefix(&out, "PASS DELETE A000000647504901 with related objects");
    has_line(&out, "OK load_install A000000647504901");

    let card = b.card("demo02", "02");
    let out = b.scenario(
        &card,
        "load_install.py",
        &["--kvn", "20", "--cap", cap, "--level", "01"],
    );
    has_line(&out, "OK load_install A000000647504901");
}

#[test]
fn load_install_select_delete_helloworld_cap() {
    let cap = root().join("fixtures/helloworld.cap");
    assert!(
        cap.exists(),
        "the CAP fixture {} is missing: it is part of the repository (fixtures/README.md)",
        cap.display()
    );
    let b = bench("load_install_select_delete_helloworld_cap");
    // Under full protection: C-DEC, R-ENC, C-MAC and R-MAC.
    let card = b.card("hello", "03");
    let out = b.scenario(
        &card,
        "load_install.py",
        &[
            "--kvn",
            "30",
            "--cap",
            cap.to_str().expect("utf-8 path"),
            "--level",
            "33",
        ],
    );
    has_prefix(
        &out,
        "PASS INSTALL [for load] + 2 LOAD blocks of helloworld.cap: load file D0D1D2D3D4D501 with module D0D1D2D3D4D50101",
    );
    has_prefix(
        &out,
        "PASS SELECT D0D1D2D3D4D50101 answers 6999 (the card does not execute loaded code)",
    );
    has_line(&out, "OK load_install D0D1D2D3D4D501");
}

#[test]
fn set_status_application_and_card_life_cycles() {
    let b = bench("set_status_application_and_card_life_cycles");
    let cap = b.demo_cap();
    let card = b.card("life", "03");
    let out = b.scenario(
        &card,
        "lifecycle.py",
        &["--kvn", "30", "--cap", cap.to_str().expect("utf-8 path")],
    );
    has_line(
        &out,
        "PASS SET STATUS application LOCKED (87, SELECT 6A82) and back to SELECTABLE (07)",
    );
    for state in ["INITIALIZED (07)", "SECURED (0F)", "CARD_LOCKED (7F)"] {
        has_prefix(&out, &format!("PASS SET STATUS card -> {state}"));
    }
    has_line(
        &out,
        "PASS backward card transitions refused with 6A80, state unchanged",
    );
    has_line(
        &out,
        "PASS CARD_LOCKED: authenticate, GET STATUS, GET DATA work; INSTALL 6985; SELECT application 6A82",
    );
    has_line(
        &out,
        "PASS TERMINATED: SELECT and INITIALIZE UPDATE 6985, GET DATA CPLC answers",
    );
    has_line(&out, "OK lifecycle");
}

#[test]
fn manage_channel_is_refused_by_the_open() {
    let b = bench("manage_channel_is_refused_by_the_open");
    let out = b.finding("channel", "manage-channel");
    has_line(&out, "OK findings manage-channel");
}

#[test]
fn store_data_block_numbers_are_checked() {
    let b = bench("store_data_block_numbers_are_checked");
    let out = b.finding("storedata", "store-data-sequence");
    has_line(&out, "OK findings store-data-sequence");
}
