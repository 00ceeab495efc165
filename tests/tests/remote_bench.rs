//! Benchmark (run by hand, it writes its section of docs/PERFORMANCE.md):
//! `cargo test -p postissue-tests --test remote_bench -- --ignored --nocapture`.
//!
//! A large load file installed on a simulated card through a link that delays every message by 100 ms
//! each way, two ways: GP Amendment B scripts through `admin-server` and `admin-agent` (the whole
//! operation prepared in advance, one script), against one APDU per round trip (the `signer deploy` path,
//! with the card behind a network reader). Both use the same HSM, card image and package; the proxy counts
//! the round trips. Speed is measured here, never asserted.

mod common;
mod remote_common;

use common::*;
use postissue_tests::ok;
use remote_common::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

const DELAY: Duration = Duration::from_millis(100);
/// Size of the padding component added to the demo load file.
const PADDING: usize = 48 * 1024;

/// A TCP proxy delivering every chunk `DELAY` after it was read, in each direction, and counting the
/// chunks the client sends after a pause (one per round trip).
struct LatencyProxy {
    port: u16,
    requests: Arc<AtomicUsize>,
}

fn delayed_copy(mut from: TcpStream, mut to: TcpStream, count: Option<Arc<AtomicUsize>>) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let mut last = Instant::now() - Duration::from_secs(1);
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let now = Instant::now();
                    if let Some(c) = &count {
                        // A new request starts after the previous answer has come back.
                        if now.duration_since(last) > DELAY {
                            c.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    last = now;
                    if tx.send((now + DELAY, buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    });
    std::thread::spawn(move || {
        for (at, bytes) in rx {
            if let Some(wait) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if to.write_all(&bytes).is_err() {
                return;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Both);
    });
}

impl LatencyProxy {
    fn start(target: u16) -> LatencyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                client.set_nodelay(true).unwrap();
                let server = TcpStream::connect(("127.0.0.1", target)).unwrap();
                server.set_nodelay(true).unwrap();
                delayed_copy(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    Some(counter.clone()),
                );
                delayed_copy(server, client, None);
            }
        });
        LatencyProxy { port, requests }
    }
}

/// A network card reader: each APDU is one length-prefixed frame to a relay in front of the card, and
/// its response one frame back (one round trip per APDU).
struct NetReader(TcpStream);

impl signer::transport::Transport for NetReader {
    fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Vec<u8>, signer::Error> {
        let io = |e: std::io::Error| signer::Error::Card(e.to_string());
        let len = u16::try_from(apdu.len()).unwrap().to_be_bytes();
        self.0.write_all(&[&len[..], apdu].concat()).map_err(io)?;
        let mut l = [0u8; 2];
        self.0.read_exact(&mut l).map_err(io)?;
        let mut resp = vec![0u8; usize::from(u16::from_be_bytes(l))];
        self.0.read_exact(&mut resp).map_err(io)?;
        Ok(resp)
    }
}

fn relay(image: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_nodelay(true).unwrap();
        let mut card = signer::transport::SimTransport::open(std::path::Path::new(&image)).unwrap();
        loop {
            let mut l = [0u8; 2];
            if s.read_exact(&mut l).is_err() {
                return;
            }
            let mut apdu = vec![0u8; usize::from(u16::from_be_bytes(l))];
            s.read_exact(&mut apdu).unwrap();
            let resp = signer::transport::Transport::transmit_raw(&mut card, &apdu).unwrap();
            let len = u16::try_from(resp.len()).unwrap().to_be_bytes();
            s.write_all(&[&len[..], &resp].concat()).unwrap();
        }
    });
    port
}

#[test]
#[ignore = "benchmark: run by hand, writes docs/PERFORMANCE.md"]
fn scripts_against_one_apdu_per_round_trip() {
    let w = World::new();
    // The demo load file with a Descriptor component of padding (skipped by the card, carried by every LOAD).
    ok(&mut w.package("small.pkg", &[]));
    let lfdb = padded_ijc(&w.p("small.pkg"), PADDING);
    std::fs::write(w.p("big.ijc"), &lfdb).unwrap();
    ok(w.hsm
        .tool("signer")
        .args(["package", &w.p("big.ijc"), "--out", &w.p("big.pkg")]));
    let lfdb_len = lfdb.len();
    let a = w.card("a", KDD_A);
    let b = w.card("b", KDD_B);
    std::fs::write(w.p("a.csv"), format!("identity,kdd\na,{KDD_A}\n")).unwrap();

    // Amendment B: admin-server and the agent through the slow link.
    let port = free_port();
    let config = write_config(w.hsm.dir.path(), "server.ron", port, None);
    campaign(
        &w.hsm,
        &config,
        &[
            "add",
            "big",
            "--package",
            &w.p("big.pkg"),
            "--cards",
            &w.p("a.csv"),
        ],
    );
    let _server = ServerProc::start(&w.hsm, &config);
    let proxy = LatencyProxy::start(port);
    let mut cfg = agent(proxy.port);
    cfg.server = format!("http://127.0.0.1:{}/admin", proxy.port)
        .parse()
        .unwrap();
    let mut card = signer::transport::SimTransport::open(std::path::Path::new(&a)).unwrap();
    let start = Instant::now();
    let s = cfg.run(&mut card).unwrap();
    let scripts_time = start.elapsed();
    let scripts_trips = proxy.requests.load(Ordering::SeqCst);
    assert_eq!(count_entries(&w.registry(&a), "APP", APPLET), 1);

    // One APDU per round trip: signer deploy's path in-process, the card behind a network reader.
    let hsm = load_module(&w.hsm);
    let token = open_token(&hsm, "pkcs11:token=issuer");
    let master = token.find_secret_key("isd-kmc").unwrap();
    let proxy2 = LatencyProxy::start(relay(b.clone()));
    let mut reader = NetReader(TcpStream::connect(("127.0.0.1", proxy2.port)).unwrap());
    reader.0.set_nodelay(true).unwrap();
    let pkg = signer::package::Package::read(std::path::Path::new(&w.p("big.pkg"))).unwrap();
    let op =
        remote::plan::Operation::for_card(&pkg, &h(KDD_B).try_into().unwrap(), &Default::default())
            .unwrap();
    let start = Instant::now();
    {
        let (mut ch, _) = signer::gp::open_issuer_channel(
            &mut reader,
            &token,
            master,
            gp_core::diversify::Scheme::Emv,
        )
        .unwrap();
        signer::gp::load_and_install_with(&mut ch, &op.request, &op.options).unwrap();
    }
    let apdu_time = start.elapsed();
    let apdu_trips = proxy2.requests.load(Ordering::SeqCst);
    drop(reader);
    assert_eq!(count_entries(&w.registry(&b), "APP", APPLET), 1);

    let section = format!(
        "<!-- remote:begin (written by `cargo test -p postissue-tests --test remote_bench -- --ignored`) -->\n\
## Remote delivery: scripts against one APDU per round trip\n\n\
A {lfdb_len}-byte load file (the demo CAP with a {PADDING}-byte Descriptor component the card skips)\n\
installed through the card domain, over a link that delays every message by {} ms each way, on\n\
loopback otherwise (plain HTTP, so no TLS handshake round trips). 64 KB does not fit: LOAD blocks are\n\
numbered in one byte, and 256 short blocks of 200 bytes carry at most 51,200 bytes. Amendment B:\n\
`admin-agent` and `admin-server`, the opening POST, the identification script and one script with\n\
EXTERNAL AUTHENTICATE and the whole operation ({} APDUs in all). One APDU per round trip: the same\n\
commands sent by `signer deploy`'s code to the card behind a network reader. Same HSM (SoftHSM2), card\n\
and package; round trips counted by the proxy.\n\n\
| | HTTP / network round trips | wall time (s) |\n\
|---|---|---|\n\
| Amendment B scripts | {scripts_trips} | {:.2} |\n\
| one APDU per round trip | {apdu_trips} | {:.2} |\n\n\
<!-- remote:end -->\n",
        DELAY.as_millis(),
        s.apdus,
        scripts_time.as_secs_f64(),
        apdu_time.as_secs_f64()
    );
    print!("{section}");
    let path = postissue_tests::root().join("docs/PERFORMANCE.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let kept = match (
        text.find("<!-- remote:begin"),
        text.find("<!-- remote:end -->"),
    ) {
        (Some(b), Some(e)) => format!(
            "{}{}",
            &text[..b],
            &text[e + "<!-- remote:end -->\n".len()..]
        ),
        _ => text,
    };
    std::fs::write(&path, format!("{}\n\n{section}", kept.trim_end())).unwrap();
}
