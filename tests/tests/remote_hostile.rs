//! Bad input to the admin server gets a clear status and loses nothing: requests that break Amendment B
//! (protocol string, agent id, media type, method, path, body size), malformed and garbage response
//! scripts, responses whose R-MAC does not verify, a package that does not verify, and a campaign paused
//! while a card is in flight. Each time the card's row stays correct and the card is finished later.

mod common;
mod remote_common;

use common::*;
use gp_core::script::{Coding, CommandScript, ResponseScript};
use postissue_tests::{fails, ok};
use remote_common::*;
use std::path::Path;

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn state_of(w: &World, config: &Path, name: &str) -> (String, u32) {
    let show = campaign(&w.hsm, config, &["show", name]);
    let r = rows(&show);
    (r[0].2.clone(), r[0].3)
}

const RESPONSE_TYPE: (&str, &str) = (
    "Content-Type",
    "application/vnd.globalplatform.card-content-mgt-response;version=1.0",
);

#[test]
fn bad_requests_and_bad_answers_lose_nothing() {
    let w = World::new();
    let port = free_port();
    let config = write_config(w.hsm.dir.path(), "server.ron", port, None);
    let a = w.card("a", KDD_A);
    std::fs::write(w.p("one.csv"), format!("identity,kdd\na,{KDD_A}\n")).unwrap();
    ok(&mut w.package("plain.pkg", &[]));

    // A package that does not verify is refused when the campaign is added, with one line.
    edit_field(&w.p("plain.pkg"), "lfdb", flip_last, &w.p("bad.pkg"));
    let err = fails(
        w.hsm
            .tool("admin-server")
            .args(["campaign", "--config"])
            .arg(&config)
            .args([
                "add",
                "bad",
                "--package",
                &w.p("bad.pkg"),
                "--cards",
                &w.p("one.csv"),
            ]),
    );
    assert!(err.contains("admin-server: error:"), "{err}");
    // A load file too large for 256 LOAD blocks is refused when the campaign is added.
    std::fs::write(w.p("huge.ijc"), padded_ijc(&w.p("plain.pkg"), 60 * 1024)).unwrap();
    ok(w.hsm
        .tool("signer")
        .args(["package", &w.p("huge.ijc"), "--out", &w.p("huge.pkg")]));
    let err = fails(
        w.hsm
            .tool("admin-server")
            .args(["campaign", "--config"])
            .arg(&config)
            .args([
                "add",
                "huge",
                "--package",
                &w.p("huge.pkg"),
                "--cards",
                &w.p("one.csv"),
            ]),
    );
    assert!(err.contains("LOAD"), "{err}");
    campaign(
        &w.hsm,
        &config,
        &[
            "add",
            "one",
            "--package",
            &w.p("plain.pkg"),
            "--cards",
            &w.p("one.csv"),
        ],
    );
    let _server = ServerProc::start(&w.hsm, &config);

    // Requests that break the protocol.
    let (s, h, _) = raw_post(
        port,
        "/admin",
        &[
            ("X-Admin-Protocol", "globalplatform-remote-admin/9.9"),
            ("X-Admin-From", "x"),
        ],
        b"",
    );
    assert_eq!(s, 400);
    assert_eq!(
        header(&h, "x-admin-protocol"),
        Some("globalplatform-remote-admin/1.0")
    );
    assert_eq!(
        raw_post(port, "/admin", &[AGENT_HEADERS[0]], b"").0,
        400,
        "no X-Admin-From"
    );
    assert_eq!(
        raw_post(
            port,
            "/admin",
            &[AGENT_HEADERS[0], ("X-Admin-From", "a b")],
            b""
        )
        .0,
        400
    );
    assert_eq!(
        raw_post(port, "/admin", &AGENT_HEADERS, b"unexpected").0,
        400,
        "opening POST with a body"
    );
    assert_eq!(raw_post(port, "/elsewhere", &AGENT_HEADERS, b"").0, 404);
    assert_eq!(
        raw_post(port, "/admin/session/zz", &AGENT_HEADERS, b"").0,
        404
    );

    // A session whose results are malformed, garbage, or of the wrong type.
    let (s, h, body) = raw_post(port, "/admin", &AGENT_HEADERS, b"");
    assert_eq!(s, 200);
    assert_eq!(
        header(&h, "content-type"),
        Some("application/vnd.globalplatform.card-content-mgt;version=1.0")
    );
    let next = header(&h, "x-admin-next-uri").unwrap().to_string();
    let (script, _) = CommandScript::parse(&body).unwrap();
    assert_eq!(
        script.commands.len(),
        3,
        "SELECT, GET DATA, INITIALIZE UPDATE"
    );
    let mut with = AGENT_HEADERS.to_vec();
    with.push(("X-Admin-Script-Status", "ok"));
    assert_eq!(
        raw_post(port, &next, &with, b"\xAB\x07\x80\x01\x01").0,
        415,
        "no content type"
    );
    with.push(RESPONSE_TYPE);
    assert_eq!(
        raw_post(port, &next, &with, b"\xAB\x07\x80\x01\x01").0,
        400,
        "truncated script"
    );
    let mut status_bad = AGENT_HEADERS.to_vec();
    status_bad.push(("X-Admin-Script-Status", "fine"));
    assert_eq!(raw_post(port, &next, &status_bad, b"").0, 400);
    let big = vec![0u8; gp_core::script::MAX_SCRIPT_LEN + 1];
    assert_eq!(raw_post(port, &next, &with, &big).0, 413);
    // A card that answers garbage to INITIALIZE UPDATE.
    let (s, h, _) = raw_post(port, "/admin", &AGENT_HEADERS, b"");
    assert_eq!(s, 200);
    let next = header(&h, "x-admin-next-uri").unwrap().to_string();
    let garbage =
        ResponseScript::parse(&hex::decode("AB12800103230290002302900023051122339000").unwrap())
            .unwrap()
            .0;
    let (s, _, text) = raw_post(
        port,
        &next,
        &with,
        &garbage.encode(Coding::Definite).unwrap(),
    );
    assert_eq!(s, 422, "{}", String::from_utf8_lossy(&text));
    assert!(String::from_utf8_lossy(&text).contains("INITIALIZE UPDATE"));
    assert_eq!(state_of(&w, &config, "one"), ("pending".into(), 0));

    // Responses whose R-MAC does not verify: the card stays in flight (outcome unknown).
    let mut card = PowerCut::new(&a, usize::MAX);
    card.corrupt_from = Some(3 + 2);
    agent(port).run(&mut card).unwrap();
    assert_eq!(state_of(&w, &config, "one"), ("in_flight".into(), 1));

    // Paused while in flight: the card is still finished, from what it holds.
    campaign(&w.hsm, &config, &["pause", "one"]);
    let mut card = signer::transport::SimTransport::open(Path::new(&a)).unwrap();
    let s = agent(port).run(&mut card).unwrap();
    assert_eq!(
        s.scripts, 2,
        "identification and the audit, which found it all installed: {s:?}"
    );
    assert_eq!(state_of(&w, &config, "one"), ("done".into(), 1));
    assert_eq!(count_entries(&w.registry(&a), "APP", APPLET), 1);
}
