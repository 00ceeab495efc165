//! Shared setup of the remote delivery tests: the admin server as a process on loopback, its
//! configuration, the agent in-process against simulated cards, and a card transport that loses power.

#![allow(dead_code)]

use postissue_tests::{ok, SoftHsm, PIN_VAR};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

/// A free loopback port (bound and released; the server binds it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes the server's configuration: plain HTTP on loopback unless `tls` gives the `tls: (…)` value.
pub fn write_config(dir: &Path, name: &str, port: u16, tls: Option<&str>) -> PathBuf {
    let path = dir.join(name);
    let tls = tls.unwrap_or("(plain_http_on_loopback: true)");
    std::fs::write(
        &path,
        format!(
            r#"(
    listen: "127.0.0.1:{port}",
    tls: {tls},
    database: "remote.db",
    issuer_master: "pkcs11:token=issuer;object=isd-kmc",
    scheme: "emv",
    pin_source: "env:{PIN_VAR}",
    ledger: Some("remote-ledger.jsonl"),
)"#
        ),
    )
    .unwrap();
    path
}

/// Makes the ledger the configuration names, once, as an operator does before a server's first start:
/// explicitly, with `keyman ledger init`, anchored in the issuer's token (no tool creates a ledger
/// implicitly).
pub fn ensure_ledger(hsm: &SoftHsm, config: &Path) {
    let checked = remote::config::ServerConfig::read(config).expect("the server's configuration");
    if let Some(ledger) = checked.config.ledger.filter(|l| !l.exists()) {
        ok(hsm
            .tool("keyman")
            .args(["ledger", "init"])
            .arg(&ledger)
            .args([
                "--token",
                "issuer",
                "--pin-source",
                &format!("env:{PIN_VAR}"),
            ]));
    }
}

/// The admin server running as a process; killed on drop.
pub struct ServerProc {
    child: Child,
    /// What it printed when it started.
    pub banner: String,
}

impl ServerProc {
    /// Starts `admin-server serve --config CONFIG` (after [`ensure_ledger`]) and waits until it listens.
    pub fn start(hsm: &SoftHsm, config: &Path) -> ServerProc {
        ensure_ledger(hsm, config);
        let child = hsm
            .tool("admin-server")
            .args(["serve", "--config"])
            .arg(config)
            .env("ADMIN_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("admin-server");
        ServerProc::adopt(child)
    }

    /// Waits until a started `admin-server serve` (stdout piped) listens.
    pub fn adopt(mut child: Child) -> ServerProc {
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        assert!(
            line.contains("admin-server listening on"),
            "admin-server did not start: {line}"
        );
        ServerProc {
            child,
            banner: line,
        }
    }

    /// Kills the server at once (no clean shutdown), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `admin-server campaign …` against the configuration.
pub fn campaign(hsm: &SoftHsm, config: &Path, args: &[&str]) -> String {
    ok(hsm
        .tool("admin-server")
        .args(["campaign", "--config"])
        .arg(config)
        .args(args))
}

/// The in-process agent for plain HTTP on loopback, with quick retries.
pub fn agent(port: u16) -> remote::agent::AgentConfig {
    remote::agent::AgentConfig {
        server: format!("http://127.0.0.1:{port}/admin").parse().unwrap(),
        tls: remote::tls::ClientTls::Plain,
        from: "test-agent".into(),
        retries: 6,
        backoff: Duration::from_millis(50),
    }
}

/// A simulated card that loses power after `budget` APDUs (every later APDU fails as a card pulled from
/// the reader would), and runs `at_end` once when the budget is used up.
pub struct PowerCut {
    /// The card.
    pub inner: signer::transport::SimTransport,
    /// APDUs left before the power goes.
    pub budget: usize,
    /// APDUs sent so far.
    pub sent: usize,
    /// Called when the budget runs out, instead of cutting the power, when set.
    pub at_end: Option<Box<dyn FnMut()>>,
    /// From this APDU on (counted from 0), the first byte of every response with data is flipped, as a
    /// card or a relay answering garbage would.
    pub corrupt_from: Option<usize>,
}

impl PowerCut {
    /// The card in `image` with an APDU budget.
    pub fn new(image: &str, budget: usize) -> PowerCut {
        PowerCut {
            inner: signer::transport::SimTransport::open(Path::new(image)).unwrap(),
            budget,
            sent: 0,
            at_end: None,
            corrupt_from: None,
        }
    }
}

impl signer::transport::Transport for PowerCut {
    fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Vec<u8>, signer::Error> {
        if self.sent >= self.budget {
            if let Some(mut f) = self.at_end.take() {
                f();
                self.budget = usize::MAX;
            } else {
                return Err(signer::Error::Card("the card lost power".into()));
            }
        }
        self.sent += 1;
        let mut resp = self.inner.transmit_raw(apdu)?;
        if self.corrupt_from.is_some_and(|n| self.sent > n) && resp.len() > 2 {
            resp[0] ^= 0x01;
        }
        Ok(resp)
    }
}

/// How many times the registry of the card lists `kind` (APP, ELF, SSD) entries with `aid`.
pub fn count_entries(registry: &str, kind: &str, aid: &str) -> usize {
    registry
        .lines()
        .filter(|l| l.starts_with(kind) && l.split_whitespace().nth(1) == Some(aid))
        .count()
}

/// The rows of `campaign show`, as (identity, kdd, state, attempts, reason).
pub fn rows(show: &str) -> Vec<(String, String, String, u32, String)> {
    show.lines()
        .skip(1)
        .map(|l| {
            let mut f = l.splitn(5, ' ');
            let mut next = || f.next().unwrap_or("").to_string();
            let (id, kdd, state, att, reason) = (next(), next(), next(), next(), next());
            (id, kdd, state, att.parse().unwrap(), reason)
        })
        .collect()
}

/// A loopback TCP proxy in front of the server that reads whole HTTP/1.1 messages and, once, drops the
/// connection instead of forwarding message number `cut_after + 1` (counted over all connections):
/// `cut_after` 0 loses the opening request, 1 the server's first answer, and so on.
pub struct CutProxy {
    /// The port agents connect to.
    pub port: u16,
    /// Whether the cut has happened.
    pub cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

fn read_message(r: &mut BufReader<std::net::TcpStream>) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = r.read_until(b'\n', &mut line).ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&line);
        if line == b"\r\n" {
            break;
        }
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let len = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse::<usize>().unwrap());
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).ok()?;
    head.extend_from_slice(&body);
    Some(head)
}

impl CutProxy {
    /// Starts the proxy to the server on `server_port`.
    pub fn start(server_port: u16, cut_after: usize) -> CutProxy {
        use std::io::Write;
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Arc;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let count = Arc::new(AtomicUsize::new(0));
        let cut = Arc::new(AtomicBool::new(false));
        let cut2 = cut.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let (count, cut) = (count.clone(), cut2.clone());
                std::thread::spawn(move || {
                    let server = std::net::TcpStream::connect(("127.0.0.1", server_port)).unwrap();
                    let mut from_client = BufReader::new(client.try_clone().unwrap());
                    let mut from_server = BufReader::new(server.try_clone().unwrap());
                    let (mut to_client, mut to_server) = (client, server);
                    let pass = |msg: Option<Vec<u8>>, to: &mut std::net::TcpStream| -> bool {
                        let Some(msg) = msg else { return false };
                        let n = count.fetch_add(1, Ordering::SeqCst);
                        if n == cut_after && !cut.swap(true, Ordering::SeqCst) {
                            return false;
                        }
                        to.write_all(&msg).is_ok()
                    };
                    loop {
                        if !pass(read_message(&mut from_client), &mut to_server) {
                            break;
                        }
                        if !pass(read_message(&mut from_server), &mut to_client) {
                            break;
                        }
                    }
                    let _ = to_client.shutdown(std::net::Shutdown::Both);
                    let _ = to_server.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        CutProxy { port, cut }
    }
}

/// One raw HTTP/1.1 request to the plain server on `port` (a fresh connection): returns the status code,
/// the headers (lower-case names) and the body.
pub fn raw_post(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut req =
        format!("POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, out[split..].to_vec())
}

/// The Amendment B headers of an agent's request: protocol and agent id.
pub const AGENT_HEADERS: [(&str, &str); 2] = [
    ("X-Admin-Protocol", "globalplatform-remote-admin/1.0"),
    ("X-Admin-From", "raw-test"),
];

/// Compares `actual` with the snapshot `remote/tests/snapshots/NAME.txt` (with `UPDATE_SNAPSHOTS` set,
/// writes it there instead): a change to the command line shows in review as a change to those files.
pub fn snapshot(name: &str, actual: &str) {
    let path = postissue_tests::root()
        .join("remote/tests/snapshots")
        .join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} is missing; run with UPDATE_SNAPSHOTS=1", path.display()));
    assert_eq!(
        actual, expected,
        "snapshot {name} differs; rerun with UPDATE_SNAPSHOTS=1 if intended"
    );
}

/// The LFDB of the package at `small_pkg` with a Descriptor component of `padding` bytes appended (the
/// card skips it, every LOAD carries it), its size entered in the Directory component: a large IJC load
/// file from the demo CAP.
pub fn padded_ijc(small_pkg: &str, padding: usize) -> Vec<u8> {
    let small: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(small_pkg).unwrap()).unwrap();
    let mut lfdb = hex::decode(small["lfdb"].as_str().unwrap()).unwrap();
    // The Directory component (tag 02) lists every component's size, the Descriptor's (tag 0B) at
    // index 10 of its size table.
    let mut at = 0;
    while lfdb[at] != 0x02 {
        at += 3 + usize::from(u16::from_be_bytes([lfdb[at + 1], lfdb[at + 2]]));
    }
    let size = u16::try_from(padding).unwrap().to_be_bytes();
    let entry = at + 3 + 2 * 10;
    lfdb[entry..entry + 2].copy_from_slice(&size);
    lfdb.push(0x0B);
    lfdb.extend_from_slice(&size);
    lfdb.extend((0..padding).map(|i| i as u8));
    lfdb
}

/// `keyman ledger verify` of the server's ledger (`remote-ledger.jsonl` in `dir`) against its anchor in the
/// issuer's token.
pub fn verify_remote_ledger(hsm: &SoftHsm, dir: &Path) -> String {
    verify_ledger_file(hsm, &dir.join("remote-ledger.jsonl"))
}

/// `keyman ledger verify LEDGER` against its anchor in the issuer's token.
pub fn verify_ledger_file(hsm: &SoftHsm, ledger: &Path) -> String {
    ok(hsm
        .tool("keyman")
        .args(["ledger", "verify"])
        .arg(ledger)
        .args([
            "--token",
            "issuer",
            "--pin-source",
            &format!("env:{PIN_VAR}"),
        ]))
}
