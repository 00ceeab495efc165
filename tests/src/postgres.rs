//! A throwaway PostgreSQL cluster for the fleet tests and benchmarks: `initdb` into a temporary directory
//! as an unprivileged user (PostgreSQL refuses to run as root: as root the cluster belongs to the
//! `postgres` system account and every server command runs through `runuser`), started on a free
//! loopback port with its unix socket in the same directory, one database created, stopped on drop.
//!
//! Nothing is skipped: without the server binaries (Debian `postgresql`, which `./run test` installs)
//! the test fails and says so.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The system account that owns the cluster when the tests run as root.
pub const ACCOUNT: &str = "postgres";

/// A running cluster with one database.
pub struct PgCluster {
    /// Holds the data directory, socket and log; removed on drop.
    pub dir: tempfile::TempDir,
    /// The loopback port.
    pub port: u16,
    /// The database's name.
    pub database: String,
    bin: PathBuf,
    as_account: bool,
    options: String,
}

/// The directory of the newest installed PostgreSQL server binaries.
pub fn bin_dir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: install the Debian \
             package `postgresql` (./run test installs it)"
        ),
    }
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

impl PgCluster {
    /// Creates and starts a cluster with the database `name`. `durable` keeps PostgreSQL's defaults
    /// (fsync on, as in production: benchmarks); otherwise fsync is off, which loses nothing unless
    /// the machine itself crashes (tests).
    pub fn start(name: &str, durable: bool) -> PgCluster {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("pg-")
            .tempdir()
            .expect("temporary directory");
        let as_account = is_root();
        if as_account {
            let ok = Command::new("chown")
                .arg(format!("{ACCOUNT}:"))
                .arg(dir.path())
                .status()
                .expect("chown")
                .success();
            assert!(
                ok,
                "cannot give {} to the '{ACCOUNT}' account: PostgreSQL refuses to run as root and \
                 needs that account (the Debian package `postgresql` creates it)",
                dir.path().display()
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            dir.path().display()
        );
        if !durable {
            options.push_str(" -c fsync=off -c full_page_writes=off");
        }
        let cluster = PgCluster {
            dir,
            port,
            database: name.to_string(),
            bin,
            as_account,
            options,
        };
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data().display().to_string(),
                "-U",
                ACCOUNT,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        cluster.pg_ctl(&["start"]);
        cluster.run(
            "createdb",
            &[
                "-h",
                &cluster.dir.path().display().to_string(),
                "-p",
                &port.to_string(),
                "-U",
                ACCOUNT,
                name,
            ],
        );
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        if self.as_account {
            let mut c = Command::new("runuser");
            c.args(["-u", ACCOUNT, "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self
            .command(tool)
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}{}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    fn pg_ctl(&self, action: &[&str]) {
        let data = self.data().display().to_string();
        let log = self.dir.path().join("server.log").display().to_string();
        let mut args = vec![
            "-D",
            &data,
            "-l",
            &log,
            "-w",
            "-t",
            "60",
            "-o",
            &self.options,
        ];
        args.extend_from_slice(action);
        self.run("pg_ctl", &args);
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The URL the admin server's `database` takes.
    pub fn url(&self) -> String {
        format!(
            "postgres://{ACCOUNT}@127.0.0.1:{}/{}",
            self.port, self.database
        )
    }

    /// Creates another database `name` in the cluster and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        self.run(
            "createdb",
            &[
                "-h",
                &self.dir.path().display().to_string(),
                "-p",
                &self.port.to_string(),
                "-U",
                ACCOUNT,
                name,
            ],
        );
        format!("postgres://{ACCOUNT}@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs `sql` with `psql` in the database `name` (stops at the first error).
    pub fn psql(&self, name: &str, sql: &str) {
        self.run(
            "psql",
            &[
                "-h",
                &self.dir.path().display().to_string(),
                "-p",
                &self.port.to_string(),
                "-U",
                ACCOUNT,
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                name,
                "-c",
                sql,
            ],
        );
    }

    /// Stops the server (fast shutdown: open connections are cut) and starts it again.
    pub fn restart(&self) {
        self.pg_ctl(&["-m", "fast", "restart"]);
    }

    /// Size of the cluster's data directory in bytes.
    pub fn data_size(&self) -> u64 {
        fn walk(p: &Path) -> u64 {
            std::fs::read_dir(p)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        }
        walk(&self.data())
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.data().display().to_string();
        let _ = self
            .command("pg_ctl")
            .args(["-D", &data, "-m", "immediate", "-w", "stop"])
            .output();
    }
}
