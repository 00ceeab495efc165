//! What the operations team sees of a campaign in progress: `/metrics` and `/status` on the operations
//! listener only (never on the agents' port), the status page as a person reads it in a real browser
//! (headless Chromium, with screenshots kept as `target/test-artefacts/remote_ops/status.png` and
//! `status-full.png`), JSON log lines carrying the session id (the log kept beside them as
//! `server.log.jsonl`), and the campaign report as CSV and JSON.

mod common;
mod remote_common;

use common::*;
use postissue_tests::{ok, SoftHsm};
use remote_common::*;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const CHROMIUM: &str = "/usr/bin/chromium";
/// A card in the campaign that never calls.
const KDD_D: &str = "1112131415161718191A";

/// One `GET` on loopback; the status code and the body.
fn get(port: u16, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    (code, body.to_string())
}

/// The value of the sample `name` (with its labels, as printed) in an OpenMetrics text.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("{name} missing from\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Where test artefacts are kept: `target/test-artefacts/NAME/`.
fn artefacts(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/remote_ops-… → target
    let target = exe.ancestors().nth(3).unwrap();
    let dir = target.join("test-artefacts").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Headless Chromium on `url` with the given extra arguments; its standard output.
fn chromium(url: &str, args: &[&str]) -> String {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium; ./run test does)"
    );
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("running chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The text of an HTML fragment as a person reads it: tags removed (each one a space), the five
/// entities decoded, white space collapsed.
fn text_of(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    let decoded = out
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    decoded.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The cells of the table row whose header cell reads `key`, as text.
fn row_cells(dom: &str, key: &str) -> Vec<String> {
    let row = dom
        .split("<tr>")
        .find(|r| r.contains(&format!(">{key}</th>")))
        .unwrap_or_else(|| panic!("no row {key} in\n{dom}"));
    let row = row.split("</tr>").next().unwrap();
    row.split("<td")
        .skip(1)
        .map(|c| text_of(&format!("<td{c}")))
        .collect()
}

/// The campaign: cards A (personalised), B and D (personalised or not, they never call) and W (fab
/// keys: its cryptogram does not match).
fn setup(w: &World, config: &Path) -> (String, String) {
    let a = w.card("a", KDD_A);
    let wrong = w.p("w.img");
    ok(w.hsm
        .tool("card-sim")
        .args(["new", "--image", &wrong, "--kdd", KDD_C]));
    std::fs::write(
        w.p("rollout.csv"),
        format!("identity,kdd\ncard-a,{KDD_A}\ncard-b,{KDD_B}\ncard-w,{KDD_C}\ncard-d,{KDD_D}\n"),
    )
    .unwrap();
    ok(&mut w.package("plain.pkg", &[]));
    let (pkg, csv) = (w.p("plain.pkg"), w.p("rollout.csv"));
    campaign(
        &w.hsm,
        config,
        &["add", "rollout", "--package", &pkg, "--cards", &csv],
    );
    (a, wrong)
}

fn start_json_logging(hsm: &SoftHsm, config: &Path, log: &Path) -> ServerProc {
    ensure_ledger(hsm, config);
    let child = hsm
        .tool("admin-server")
        .args(["--log-format", "json", "serve", "--config"])
        .arg(config)
        .env("ADMIN_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("admin-server");
    ServerProc::adopt(child)
}

#[test]
fn operations_see_a_campaign_in_progress() {
    let w = World::new();
    let (port, ops_port) = (free_port(), free_port());
    let plain = write_config(w.hsm.dir.path(), "server.ron", port, None);
    let text = std::fs::read_to_string(&plain).unwrap();
    let text = text.trim_end().strip_suffix(')').unwrap().to_string()
        + &format!("    ops: Some((listen: \"127.0.0.1:{ops_port}\")),\n)\n");
    std::fs::write(&plain, text).unwrap();
    let config = plain;
    let (a, wrong) = setup(&w, &config);
    let log = w.hsm.path("server.log");
    let server = start_json_logging(&w.hsm, &config, &log);
    assert!(
        server
            .banner
            .contains(&format!("operations on http://127.0.0.1:{ops_port}/status")),
        "{}",
        server.banner
    );

    // Card A is installed; card W fails (wrong keys); B and D never call.
    for image in [&a, &wrong] {
        let mut card = signer::transport::SimTransport::open(Path::new(image)).unwrap();
        agent(port).run(&mut card).unwrap();
    }
    // A request an agent should not send: its error (with markup in it) reaches the status page.
    let (code, _, _) = raw_post(
        port,
        "/admin",
        &[
            ("X-Admin-Protocol", "<b>bold</b>"),
            ("X-Admin-From", "raw-test"),
        ],
        b"",
    );
    assert_eq!(code, 400);

    // The operations endpoints are not on the agents' port, whatever the method.
    for path in ["/metrics", "/status", "/"] {
        let (code, body) = get(port, path);
        assert_eq!(code, 404, "{path} on the agents' port: {body}");
        assert!(!body.contains("postissue_admin"), "{body}");
        let (code, _, body) = raw_post(port, path, &AGENT_HEADERS, b"");
        assert_eq!(code, 404, "{path}: {}", String::from_utf8_lossy(&body));
    }

    // Metrics: installs by campaign and outcome, sessions by outcome, HSM and database latency.
    let (code, metrics) = get(ops_port, "/metrics");
    assert_eq!(code, 200, "{metrics}");
    for (state, n) in [
        ("done", 1.0),
        ("failed", 1.0),
        ("pending", 2.0),
        ("in_flight", 0.0),
    ] {
        let name =
            format!("postissue_admin_campaign_cards{{campaign=\"rollout\",state=\"{state}\"}}");
        assert_eq!(sample(&metrics, &name), n, "{name}\n{metrics}");
    }
    assert_eq!(
        sample(
            &metrics,
            "postissue_admin_sessions_total{outcome=\"completed\"}"
        ),
        2.0
    );
    assert_eq!(sample(&metrics, "postissue_admin_sessions_in_flight"), 0.0);
    assert_eq!(
        sample(
            &metrics,
            "postissue_admin_hsm_call_duration_seconds_count{op=\"session_keys\"}"
        ),
        2.0
    );
    assert!(
        sample(
            &metrics,
            "postissue_admin_db_query_duration_seconds_count{op=\"campaigns\"}"
        ) >= 1.0
    );
    assert_eq!(
        sample(&metrics, "postissue_admin_requests_total{code=\"400\"}"),
        1.0
    );
    assert!(metrics.trim_end().ends_with("# EOF"), "{metrics}");
    // Read-only: nothing but GET.
    let (code, _, _) = raw_post(ops_port, "/status", &[], b"");
    assert_eq!(code, 405);
    // Garbage and an oversized request are refused without stopping the listener.
    for junk in [
        b"\x16\x03\x01\x02\x00garbage\r\n\r\n".to_vec(),
        [
            &b"GET /status HTTP/1.1\r\nX-Big: "[..],
            &[b'a'; 100_000],
            b"\r\n\r\n",
        ]
        .concat(),
    ] {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", ops_port)).unwrap();
        let _ = s.write_all(&junk);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let head = String::from_utf8_lossy(&out);
        assert!(out.is_empty() || head.starts_with("HTTP/1.1 4"), "{head}");
    }
    assert_eq!(get(ops_port, "/status").0, 200);

    // The status page as a person sees it.
    let url = format!("http://127.0.0.1:{ops_port}/status");
    let dom = chromium(&url, &["--dump-dom"]);
    // Cards, pending, in flight, done, failed, progress.
    let cells = row_cells(&dom, "rollout");
    assert_eq!(
        cells,
        ["active", "4", "2", "0", "1", "1", "25 % done, 25 % failed"],
        "{dom}"
    );
    let failures = dom
        .split("id=\"failures\"")
        .nth(1)
        .unwrap_or_else(|| panic!("no failures table in\n{dom}"));
    assert!(
        text_of(failures.split("</table>").next().unwrap())
            .contains("rollout the card's cryptogram does not match"),
        "{dom}"
    );
    let recent = text_of(
        dom.split("id=\"recent\"")
            .nth(1)
            .unwrap()
            .split("</table>")
            .next()
            .unwrap(),
    );
    assert_eq!(recent.matches("completed").count(), 2, "{recent}");
    assert!(recent.contains("test-agent"), "{recent}");
    // Session ids are shortened on the page: none appears whole.
    let long_hex = dom
        .split(|c: char| !c.is_ascii_hexdigit())
        .any(|w| w.len() >= 32);
    assert!(!long_hex, "a whole session id is on the page:\n{dom}");
    // The hostile header is shown as text, not as markup.
    let errors = dom
        .split("id=\"errors\"")
        .nth(1)
        .unwrap()
        .split("</table>")
        .next()
        .unwrap();
    assert!(!errors.contains("<b>"), "{errors}");
    assert!(
        text_of(errors).contains("'<b>bold</b>' is not globalplatform-remote-admin/1.0"),
        "{errors}"
    );
    let instance = text_of(
        dom.split("id=\"instance\"")
            .nth(1)
            .unwrap()
            .split("</dl>")
            .next()
            .unwrap(),
    );
    assert!(
        instance.contains(&format!("127.0.0.1:{port}")) && instance.contains("Uptime"),
        "{instance}"
    );
    let shot = artefacts("remote_ops").join("status.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &url,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1200,900",
        ],
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{}",
        shot.display()
    );
    // The whole page (errors included) in a taller window, for people reading the artefacts.
    let full = artefacts("remote_ops").join("status-full.png");
    chromium(
        &url,
        &[
            &format!("--screenshot={}", full.display()),
            "--window-size=1200,1500",
        ],
    );
    assert!(full.exists());
    println!(
        "status page screenshots: {} and {}",
        shot.display(),
        full.display()
    );

    // JSON logs: every line parses; the lines of a session carry its id in the session span.
    let log = std::fs::read_to_string(&log).unwrap();
    std::fs::write(artefacts("remote_ops").join("server.log.jsonl"), &log).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let session_of = |message: &str| -> String {
        let line = lines
            .iter()
            .find(|l| {
                l["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(message))
            })
            .unwrap_or_else(|| panic!("no line '{message}' in\n{log}"));
        let id = line["span"]["session_id"]
            .as_str()
            .unwrap_or_else(|| panic!("{line}"));
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{line}"
        );
        id.to_string()
    };
    let installed = session_of("sending the operation");
    assert_eq!(session_of("done: installed"), installed);
    // The opening request's line names the session it opened.
    assert!(
        lines.iter().any(|l| l["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("session opened"))
            && l["fields"]["session"] == installed.as_str()),
        "{log}"
    );
    let failed = session_of("failed: the card's cryptogram");
    assert_ne!(installed, failed);
    assert!(
        lines
            .iter()
            .any(|l| l["level"] == "INFO" && l["fields"]["instance"].is_string()),
        "{log}"
    );

    // The report: every card, its outcome, when and how many attempts.
    let csv = campaign(&w.hsm, &config, &["report", "rollout", "--format", "csv"]);
    let mut rows = csv.lines();
    assert_eq!(
        rows.next(),
        Some("identity,kdd,outcome,updated_at,attempts,reason")
    );
    let rows: Vec<Vec<&str>> = rows.map(|l| l.splitn(6, ',').collect()).collect();
    assert_eq!(rows.len(), 4, "{csv}");
    let by_id = |id: &str| {
        rows.iter()
            .find(|r| r[0] == id)
            .unwrap_or_else(|| panic!("{id}: {csv}"))
    };
    assert_eq!(&by_id("card-a")[1..3], [KDD_A, "done"]);
    assert_eq!((by_id("card-a")[4], by_id("card-a")[5]), ("1", ""));
    assert_eq!(&by_id("card-w")[2..3], ["failed"]);
    assert!(by_id("card-w")[5].contains("cryptogram"), "{csv}");
    assert_eq!((by_id("card-b")[2], by_id("card-b")[4]), ("pending", "0"));
    // updated_at is RFC 3339 UTC.
    let when = by_id("card-a")[3];
    assert!(
        when.len() == 20 && when.ends_with('Z') && &when[10..11] == "T",
        "{when}"
    );
    let json = campaign(&w.hsm, &config, &["report", "rollout", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["campaign"], "rollout");
    let cards = v["cards"].as_array().unwrap();
    assert_eq!(cards.len(), 4);
    let d = cards.iter().find(|c| c["identity"] == "card-d").unwrap();
    assert_eq!(
        (
            d["kdd"].as_str(),
            d["outcome"].as_str(),
            d["attempts"].as_i64()
        ),
        (Some(KDD_D), Some("pending"), Some(0))
    );
    let err = postissue_tests::fails(
        w.hsm
            .tool("admin-server")
            .args(["campaign", "--config"])
            .arg(&config)
            .args(["report", "nope"]),
    );
    assert!(err.contains("no campaign named 'nope'"), "{err}");
}
