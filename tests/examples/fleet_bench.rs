//! Fleet benchmark (docs/PERFORMANCE.md): installs per second for N simulated cards, C at a time, with
//! two admin server instances on one PostgreSQL database and with one instance on SQLite, against the HSM
//! floor for the same per-card work (the token calls alone, measured in the same run); session time p50
//! and p99, the servers' peak RSS, database size per card. Not part of the test suite:
//!
//! ```text
//! cargo build --release --workspace --bins --examples
//! cargo run --release -p postissue-tests --example fleet_bench -- CARDS CONCURRENCY
//! ```

use postissue_tests::postgres::PgCluster;
use postissue_tests::{ok, root, SoftHsm, PIN_VAR};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const MASTER: &str = "pkcs11:token=issuer;object=isd-kmc";

fn kdd(i: usize) -> String {
    format!("BE4C0000000000{i:06X}")
}

struct Server {
    child: Child,
}

impl Server {
    fn start(hsm: &SoftHsm, config: &Path) -> Server {
        let mut child = hsm
            .tool("admin-server")
            .args(["serve", "--config"])
            .arg(config)
            .env("ADMIN_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("admin-server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("banner");
        assert!(line.contains("listening"), "admin-server: {line}");
        Server { child }
    }

    /// Peak resident set size (VmHWM), KiB.
    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

/// CPU seconds (user + system) a process has used so far, from /proc (clock ticks of 1/100 s).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name in parentheses: state is field 3; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}

fn config(dir: &Path, name: &str, port: u16, database: &str) -> PathBuf {
    let path = dir.join(format!("{name}.ron"));
    std::fs::write(
        &path,
        format!(
            r#"(
    listen: "127.0.0.1:{port}",
    tls: (plain_http_on_loopback: true),
    database: "{database}",
    issuer_master: "{MASTER}",
    scheme: "emv",
    pin_source: "env:{PIN_VAR}",
    ledger: Some("{name}-ledger.jsonl"),
)"#
        ),
    )
    .expect("config");
    path
}

fn agent(port: u16) -> remote::agent::AgentConfig {
    remote::agent::AgentConfig {
        server: format!("http://127.0.0.1:{port}/admin")
            .parse()
            .expect("uri"),
        tls: remote::tls::ClientTls::Plain,
        from: "bench".into(),
        retries: 8,
        backoff: Duration::from_millis(100),
    }
}

fn copy_images(from: &Path, to: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(to).expect("dir");
    let mut out = Vec::new();
    for e in std::fs::read_dir(from).expect("images") {
        let p = e.expect("entry").path();
        let dest = to.join(p.file_name().expect("name"));
        std::fs::copy(&p, &dest).expect("copy");
        out.push(dest);
    }
    out.sort();
    out
}

struct Run {
    label: String,
    /// CPU seconds of the server instances and of the swarm (this process) during the run.
    cpu: (f64, f64),
    report: remote::swarm::SwarmReport,
    rss_kib: Vec<u64>,
    db_bytes: u64,
}

fn swarm(ports: &[u16], images: Vec<PathBuf>, concurrency: usize) -> remote::swarm::SwarmReport {
    let cfg = remote::swarm::SwarmConfig {
        agents: ports.iter().map(|p| agent(*p)).collect(),
        images,
        concurrency,
        seed: 1,
        drop_rate: 0.0,
        power_cut_rate: 0.0,
        apdu_latency: Duration::ZERO,
        attempts: 10,
        call_again: Duration::from_millis(500),
    };
    remote::swarm::run(&cfg).expect("swarm")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let cards: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let concurrency: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(20);
    eprintln!("fleet bench: {cards} cards, {concurrency} at a time");
    let hsm = SoftHsm::new();
    hsm.init_token("issuer");
    ok(hsm
        .tool("keyman")
        .args(["ceremony", "run"])
        .arg(root().join("ceremonies/issuer-master.ron"))
        .arg("--ledger")
        .arg(hsm.path("issuer.jsonl"))
        .args(["--pin-source", &format!("env:{PIN_VAR}")]));
    ok(hsm.tool("demo-cap").arg(hsm.path("hello.cap")));
    let pkg = hsm.path("bench.pkg");
    ok(hsm
        .tool("signer")
        .arg("package")
        .arg(hsm.path("hello.cap"))
        .arg("--out")
        .arg(&pkg)
        .args(["--pin-source", &format!("env:{PIN_VAR}")]));

    // Personalised cards (the same per-card keys the issuer's master derives).
    let pristine = hsm.path("pristine");
    std::fs::create_dir(&pristine).expect("dir");
    let mut list = String::from("identity,kdd\n");
    let t = Instant::now();
    for i in 0..cards {
        let image = pristine.join(format!("card-{i:06}.img"));
        ok(hsm
            .tool("card-sim")
            .args(["new", "--image"])
            .arg(&image)
            .args(["--kdd", &kdd(i)]));
        ok(hsm.tool("signer").args([
            "personalise",
            "--card",
            &format!("sim:{}", image.display()),
            "--master",
            MASTER,
            "--pin-source",
            &format!("env:{PIN_VAR}"),
        ]));
        list.push_str(&format!("card-{i},{}\n", kdd(i)));
    }
    eprintln!(
        "personalised {cards} cards in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let csv = hsm.path("cards.csv");
    std::fs::write(&csv, list).expect("csv");

    // The HSM floor: the server's per-card token work (derive the card's static keys from the master,
    // then the SCP03 session keys) through the same HSM thread, with nothing else.
    std::env::set_var("SOFTHSM2_CONF", hsm.conf());
    std::env::set_var(PIN_VAR, &hsm.pin);
    let worker = remote::hsm::HsmWorker::start(
        MASTER,
        None,
        keyman::pin::PinSource::Env(PIN_VAR.into()),
        gp_core::diversify::Scheme::Emv,
    )
    .expect("HSM");
    let t = Instant::now();
    for i in 0..cards {
        let mut iu = hex::decode(kdd(i)).expect("kdd");
        iu.extend_from_slice(&[0x30, 0x03, 0x00]);
        iu.extend_from_slice(&[0x11; 16]);
        let iu = gp_core::scp03::InitializeUpdateResponse::parse(&iu).expect("iu");
        worker.session_keys([0x22; 8], iu).expect("keys");
    }
    let floor = cards as f64 / t.elapsed().as_secs_f64();
    drop(worker);

    let mut runs = Vec::new();
    let dir = hsm.dir.path();
    {
        let pg = PgCluster::start("fleet", true);
        let (pa, pb) = (free_port(), free_port());
        let base = remote::db::Db::open(Path::new(&pg.url()))
            .and_then(|d| d.size_bytes())
            .expect("db");
        let ca = config(dir, "pg-a", pa, &pg.url());
        let cb = config(dir, "pg-b", pb, &pg.url());
        ok(hsm
            .tool("admin-server")
            .args(["campaign", "--config"])
            .arg(&ca)
            .args(["add", "bench", "--package"])
            .arg(&pkg)
            .arg("--cards")
            .arg(&csv));
        let a = Server::start(&hsm, &ca);
        let b = Server::start(&hsm, &cb);
        let images = copy_images(&pristine, &dir.join("run-pg"));
        let before = (
            cpu_seconds(&a.child.id().to_string()) + cpu_seconds(&b.child.id().to_string()),
            cpu_seconds("self"),
        );
        let report = swarm(&[pa, pb], images, concurrency);
        let cpu = (
            cpu_seconds(&a.child.id().to_string()) + cpu_seconds(&b.child.id().to_string())
                - before.0,
            cpu_seconds("self") - before.1,
        );
        let db = remote::db::Db::open(Path::new(&pg.url())).expect("db");
        runs.push(Run {
            label: "2 instances, PostgreSQL".into(),
            cpu,
            report,
            rss_kib: vec![a.peak_rss_kib(), b.peak_rss_kib()],
            db_bytes: db.size_bytes().expect("size").saturating_sub(base),
        });
    }
    {
        let p = free_port();
        let db_path = dir.join("bench.db");
        let base = remote::db::Db::open(&db_path)
            .and_then(|d| d.size_bytes())
            .expect("db");
        let c = config(dir, "sqlite", p, &db_path.display().to_string());
        ok(hsm
            .tool("admin-server")
            .args(["campaign", "--config"])
            .arg(&c)
            .args(["add", "bench", "--package"])
            .arg(&pkg)
            .arg("--cards")
            .arg(&csv));
        let s = Server::start(&hsm, &c);
        let images = copy_images(&pristine, &dir.join("run-sqlite"));
        let before = (cpu_seconds(&s.child.id().to_string()), cpu_seconds("self"));
        let report = swarm(&[p], images, concurrency);
        let cpu = (
            cpu_seconds(&s.child.id().to_string()) - before.0,
            cpu_seconds("self") - before.1,
        );
        let db = remote::db::Db::open(&db_path).expect("db");
        runs.push(Run {
            label: "1 instance, SQLite".into(),
            cpu,
            report,
            rss_kib: vec![s.peak_rss_kib()],
            db_bytes: db.size_bytes().expect("size").saturating_sub(base),
        });
    }

    let begin = format!("<!-- fleet-bench {cards}x{concurrency}:begin -->");
    let end = format!("<!-- fleet-bench {cards}x{concurrency}:end -->");
    let mut md = String::new();
    md.push_str(&format!(
        "{begin}\n## Remote delivery at fleet scale ({cards} cards, {concurrency} at a time)\n\n\
         Measured by `cargo run --release -p postissue-tests --example fleet_bench -- {cards} {concurrency}` \
         (tests/examples/fleet_bench.rs), which replaces this section. Every card is a simulated card \
         (personalised, its own image file) with its own agent and HTTP connection on loopback, plain HTTP, \
         no injected faults or latency; the swarm, the servers, PostgreSQL and SoftHSM2 share the same \
         2 cores. One install = the opening POST, identification, the HSM derivation, EXTERNAL AUTHENTICATE \
         with the whole load and install, the checks, the database commits and the ledger record. The HSM \
         floor is the server's token work per card alone (derive the card's keys from the master, then \
         the SCP03 session keys) through the same HSM thread, measured in the same run: the most installs \
         per second this token allows. PostgreSQL runs with its durable defaults (fsync on); SQLite with \
         WAL and `synchronous=FULL`. DB bytes per card is the growth of the database over the run.\n\n"
    ));
    md.push_str("| set-up | installs/s | HSM floor/s | session p50 ms | p99 ms | peak RSS per instance | DB bytes/card | CPU s: servers / swarm | cards given up |\n");
    md.push_str("|---|---|---|---|---|---|---|---|---|\n");
    for r in &runs {
        let rss: Vec<String> = r
            .rss_kib
            .iter()
            .map(|k| format!("{:.1} MiB", *k as f64 / 1024.0))
            .collect();
        md.push_str(&format!(
            "| {} | {:.1} | {:.1} | {:.0} | {:.0} | {} | {:.0} | {:.1} / {:.1} | {} |\n",
            r.label,
            r.report.per_second,
            floor,
            r.report.p50_ms,
            r.report.p99_ms,
            rss.join(", "),
            r.db_bytes as f64 / cards as f64,
            r.cpu.0,
            r.cpu.1,
            r.report.gave_up
        ));
        eprintln!("{}: {}", r.label, r.report.to_json());
    }
    md.push_str(&end);
    md.push('\n');
    println!("{md}");
    let path = root().join("docs/PERFORMANCE.md");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let new = match (text.find(&begin), text.find(&end)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{}{}", &text[..b], md.trim_end(), &text[e + end.len()..])
        }
        _ => format!("{}\n{}", text.trim_end(), md),
    };
    std::fs::write(&path, new).expect("docs/PERFORMANCE.md");
}
