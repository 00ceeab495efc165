//! Personalisation batches through the real tools: PUT KEY payloads wrapped in the token that a card
//! accepts, ordered and resumable output, SCP02 refused where the token cannot wrap, hostile card lists.

mod common;

use common::*;
use gp_core::apdu::CommandApdu;
use postissue_tests::{fails, ok, run};
use signer::channel::ISD_AID;
use signer::transport::SimTransport;

fn batch(w: &World, cards: &str, out: &str, extra: &[&str]) -> std::process::Command {
    let mut c = w.hsm.tool("signer");
    c.args([
        "batch",
        "--cards",
        cards,
        "--master",
        ISSUER_MASTER,
        "--out",
        out,
        "--pin-source",
        &pin_source(),
    ])
    .args(extra);
    c
}

#[test]
fn batch_put_key_is_accepted_by_the_card_and_opens_its_issuer_channel() {
    let w = World::new();
    let image = w.p("fresh.img");
    ok(w.hsm
        .tool("card-sim")
        .args(["new", "--image", &image, "--kdd", KDD_C]));
    let list = w.p("list.csv");
    std::fs::write(
        &list,
        format!("identity,kdd\ncard-a,{KDD_A}\ncard-c,{KDD_C}\n"),
    )
    .unwrap();
    let out = w.p("keys.jsonl");
    let mut cmd = batch(
        &w,
        &list,
        &out,
        &["--workers", "2", "--ledger", &w.p("issuer.jsonl")],
    );
    let done = run(&mut cmd);
    assert!(done.status.success());
    // Not a terminal: progress comes as JSON lines on standard error.
    let progress = String::from_utf8_lossy(&done.stderr);
    assert!(
        progress.contains("\"done\":2") && progress.contains("\"total\":2"),
        "{progress}"
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["identity"], "card-a");
    let line = &lines[1];
    assert_eq!(line["kdd"], KDD_C);
    let put_key = hex::decode(line["put_key"].as_str().unwrap()).unwrap();
    // Open the card's channel with its fab transport keys and send the batch's PUT KEY.
    let hsm = load_module(&w.hsm);
    let token = open_token(&hsm, "issuer");
    {
        let mut t = SimTransport::open(std::path::Path::new(&image)).unwrap();
        with_transport_channel(&mut t, &token, &ISD_AID, |ch, _, _| {
            let cmd = CommandApdu::parse(&put_key).unwrap();
            let resp = ch.send_ok(&cmd, "PUT KEY").unwrap();
            let kcvs: String = line["kcvs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            assert_eq!(
                hex::encode_upper(&resp.data[1..]),
                kcvs,
                "the card confirms the token's KCVs"
            );
        });
    }
    // The card now answers to its per-card issuer keys, derived from the issuer's master.
    let reg = w.registry(&image);
    assert!(reg.contains("A000000151000000"), "{reg}");
    let v = ok(&mut w.verify_ledger(&w.p("issuer.jsonl"), "issuer"));
    assert!(v.contains("chain intact"), "{v}");
}

#[test]
fn a_batch_resumes_after_a_crash_without_duplicating_cards() {
    let w = World::new();
    let list = w.p("big.csv");
    let mut text = String::from("identity,kdd\n");
    for i in 0..300u32 {
        text.push_str(&format!("card-{i:04},{i:020X}\n"));
    }
    std::fs::write(&list, text).unwrap();
    let whole = w.p("whole.jsonl");
    ok(&mut batch(&w, &list, &whole, &[]));
    let expected = std::fs::read(&whole).unwrap();
    // A crash mid-line: 101 complete lines, then the middle of card 102's line.
    let cut = w.p("cut.jsonl");
    let at = expected
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(100)
        .unwrap()
        .0
        + 40;
    std::fs::write(&cut, &expected[..at]).unwrap();
    let out = ok(&mut batch(&w, &list, &cut, &["--workers", "2"]));
    assert!(out.contains("199 made now, 101 kept"), "{out}");
    assert_eq!(
        std::fs::read(&cut).unwrap(),
        expected,
        "same bytes, each card once, in order"
    );
    // Running again makes nothing new.
    let again = ok(&mut batch(&w, &list, &cut, &[]));
    assert!(again.contains("0 made now, 300 kept"), "{again}");
    // Another card list with the same output is refused.
    let other = w.p("other.csv");
    std::fs::write(&other, "x-1,00000000000000000001\n").unwrap();
    let err = fails(&mut batch(&w, &other, &cut, &[]));
    assert!(err.contains("not the same list"), "{err}");
}

#[test]
fn scp02_and_hostile_card_lists_stop_before_any_card() {
    let w = World::new();
    let out = w.p("o.jsonl");
    let err = fails(&mut batch(&w, &w.p("cards.csv"), &out, &["--scp", "02"]));
    assert!(
        err.ends_with(
            "cannot do scp02-key-loading: it lacks CKM_DES3_ECB (wrap); nothing is done outside the \
             token instead"
        ),
        "{err}"
    );
    assert!(!w.hsm.path("o.jsonl").exists());
    let bad = w.p("bad.csv");
    std::fs::write(
        &bad,
        format!("card-a,{KDD_A}\ncard-b,{KDD_B}\ncard c,{KDD_C}\n"),
    )
    .unwrap();
    let err = fails(&mut batch(&w, &bad, &out, &[]));
    assert!(err.contains("line 3, identity"), "{err}");
    assert!(!w.hsm.path("o.jsonl").exists());
}
