//! A whole key set whose ENC and MAC are the card's current keys is refused unless the operator says so:
//! GlobalPlatform restarts the sequence counter of a replaced key set, so with pseudo-random challenges
//! the card would issue the same challenges again and recorded sessions would replay.

mod common;

use common::*;
use postissue_tests::{fails, ok};

fn info(w: &World, image: &str) -> String {
    ok(w.hsm.tool("card-sim").args(["info", "--image", image]))
}

/// The card's key sets and keys (KVN, types, KCVs), without the sequence counter that every opened
/// channel advances.
fn key_sets(info: &str) -> Vec<String> {
    info.lines()
        .filter(|l| l.starts_with("key set:") || l.starts_with("  key "))
        .map(|l| {
            l.split(", sequence counter")
                .next()
                .unwrap_or(l)
                .to_string()
        })
        .collect()
}

fn put_keys(w: &World, image: &str, extra: &[&str]) -> std::process::Command {
    let mut c = w.hsm.tool("signer");
    c.args([
        "card",
        "put-keys",
        "--card",
        &format!("sim:{image}"),
        "--master",
        ISSUER_MASTER,
        "--new-master",
        ISSUER_MASTER,
        "--new-kvn",
        "32",
        "--pin-source",
        &pin_source(),
    ])
    .args(extra);
    c
}

#[test]
fn same_channel_keys_are_refused_until_allowed_by_put_keys_and_batch() {
    let w = World::new();
    let image = w.card("a", KDD_A);
    let before = info(&w, &image);
    assert!(before.contains("KVN 31"), "{before}");
    assert_eq!(key_sets(&before).len(), 4, "{before}");

    // The card domain's key set again, from the same master and scheme, under a new KVN: refused, and
    // the card's keys are unchanged.
    let e = fails(&mut put_keys(&w, &image, &[]));
    assert!(e.contains("replay"), "{e}");
    assert!(e.contains("--allow-same-channel-keys"), "{e}");
    assert!(e.contains("ENC KCV") && e.contains("MAC KCV"), "{e}");
    assert!(e.contains("nothing was put"), "{e}");
    assert_eq!(key_sets(&info(&w, &image)), key_sets(&before));

    // Told explicitly, signer puts it.
    let out = ok(&mut put_keys(&w, &image, &["--allow-same-channel-keys"]));
    assert!(out.contains("key set 31 replaced by 32"), "{out}");
    let after = info(&w, &image);
    assert!(
        after.contains("KVN 32") && !after.contains("KVN 31"),
        "{after}"
    );

    // A batch whose new master is the cards' current master (same scheme) is refused before any card.
    let list = w.p("list.csv");
    std::fs::write(&list, format!("identity,kdd\ncard-a,{KDD_A}\n")).unwrap();
    let batch = |extra: &[&str]| {
        let mut c = w.hsm.tool("signer");
        c.args([
            "batch",
            "--cards",
            &list,
            "--master",
            ISSUER_MASTER,
            "--current-master",
            ISSUER_MASTER,
            "--old-kvn",
            "32",
            "--new-kvn",
            "33",
            "--out",
            &w.p("same.jsonl"),
            "--pin-source",
            &pin_source(),
        ])
        .args(extra);
        c
    };
    let e = fails(&mut batch(&[]));
    assert!(
        e.contains("replay") && e.contains("--allow-same-channel-keys"),
        "{e}"
    );
    assert!(!w.hsm.path("same.jsonl").exists());
    ok(&mut batch(&["--allow-same-channel-keys"]));
    assert!(w.hsm.path("same.jsonl").exists());
}

#[test]
fn put_key_set_refuses_the_transport_keys_as_the_new_set() {
    use keyman::hsm::{SecretKeyType, Usage};
    use secrecy::SecretSlice;
    use signer::channel::ISD_AID;
    use signer::transport::SimTransport;

    let w = World::new();
    let image = w.p("fresh.img");
    ok(w.hsm
        .tool("card-sim")
        .args(["new", "--image", &image, "--kdd", KDD_B]));
    let before = info(&w, &image);
    let hsm = load_module(&w.hsm);
    let token = open_token(&hsm, "issuer");
    let k = SecretSlice::from(signer::gp::DEFAULT_TRANSPORT_KEY.to_vec());
    let import = || {
        token
            .import_session_key(&k, SecretKeyType::Aes128, &[Usage::Encrypt])
            .unwrap()
    };
    // The new set is the transport key again: what personalisation or an SSD's first key set would
    // put if its master derived the fab's key.
    let new = signer::diversify::CardKeys {
        enc: import(),
        mac: import(),
        dek: import(),
    };
    let mut t = SimTransport::open(std::path::Path::new(&image)).unwrap();
    let e = with_transport_channel(&mut t, &token, &ISD_AID, |ch, iu, current| {
        signer::gp::put_key_set(ch, &token, &current, &new, (iu.kvn, 0x31), false).unwrap_err()
    });
    assert!(matches!(e, signer::Error::SameChannelKeys { .. }), "{e:?}");
    // The current keys were imported for CMAC only (no encryption), so the token's zero-block check values
    // are compared: AES(40..4F, 00×16) starts 189956 (GP-FACTS, "KCV", the variant over zeros).
    assert!(e.to_string().contains("ENC KCV 189956"), "{e}");
    drop(t);
    assert_eq!(
        key_sets(&info(&w, &image)),
        key_sets(&before),
        "no key reached the card"
    );
}
