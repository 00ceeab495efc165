//! Packages through the real tools: every DAP kind made in the vendor's token, per-card DAPs, ciphered
//! LFDBs, offline verification with token and PEM keys, deterministic bytes, ledger records, and hostile
//! package and card-list files refused with an error naming the field or line.

mod common;

use common::*;
use postissue_tests::{fails, ok};

#[test]
fn every_dap_kind_is_made_in_the_token_and_verifies_offline() {
    let w = World::new();
    let cases: [(&str, &[&str], &str); 6] = [
        (
            "aes.pkg",
            &[
                "--dap",
                "aes",
                "--dap-key",
                &vendor_key("dap-master"),
                "--dap-sd",
                "A000000151535344",
            ],
            "dap-master",
        ),
        (
            "des.pkg",
            &[
                "--hash",
                "sha1",
                "--dap",
                "des",
                "--dap-key",
                &vendor_key("dap-master-des"),
                "--cards",
                &w.p("cards.csv"),
                "--diversify",
                "emv",
            ],
            "dap-master-des",
        ),
        (
            "card.pkg",
            &[
                "--dap",
                "aes",
                "--dap-key",
                &vendor_key("dap-master"),
                "--cards",
                &w.p("cards.csv"),
                "--diversify",
                "aes",
                "--encrypt",
                "--cipher-key",
                &vendor_key("lfdb-cipher"),
            ],
            "dap-master",
        ),
        (
            "rsa1024.pkg",
            &["--dap", "rsa", "--dap-key", &vendor_key("dap-rsa1024")],
            "dap-rsa1024",
        ),
        (
            "rsa.pkg",
            &["--dap", "rsa", "--dap-key", &vendor_key("dap-rsa")],
            "dap-rsa",
        ),
        (
            "ec.pkg",
            &["--dap", "ecdsa", "--dap-key", &vendor_key("dap-ec")],
            "dap-ec",
        ),
    ];
    for (name, args, key) in cases {
        ok(&mut w.package(name, args));
        let out = ok(w.hsm.tool("signer").args([
            "verify",
            &w.p(name),
            "--dap-key",
            &vendor_key(key),
            "--pin-source",
            &pin_source(),
        ]));
        assert!(out.contains("verified with"), "{name}: {out}");
    }
    // Formats follow the key: RSA 1024 PKCS#1 v1.5 SHA-1, RSA 2048 PSS, ECDSA raw r||s, 3DES retail MAC.
    let inspect = |name: &str| ok(w.hsm.tool("signer").args(["inspect", &w.p(name)]));
    assert!(inspect("rsa1024.pkg").contains("rsa-pkcs1-sha1"));
    assert!(inspect("rsa.pkg").contains("rsa-pss-sha256"));
    let ec = inspect("ec.pkg");
    let sig = ec
        .lines()
        .find(|l| l.contains("signature"))
        .unwrap()
        .split_whitespace()
        .last()
        .unwrap()
        .to_string();
    assert_eq!(sig.len(), 128, "r||s: {ec}");
    let des = inspect("des.pkg");
    assert_eq!(des.matches("des3-retail-mac").count(), 2, "{des}");
    assert!(
        des.contains(&format!("card card-a KDD {KDD_A} (emv)")),
        "{des}"
    );
    // inspect shows the LFDB hash and the DAPs in hex.
    let card = inspect("card.pkg");
    assert!(
        card.contains("LFDB hash     SHA256 ") && card.contains("ICV") && card.contains("aes-cbc"),
        "{card}"
    );
    // A ciphered package does not carry the plain LFDB.
    let text = std::fs::read_to_string(w.p("card.pkg")).unwrap();
    assert!(!text.contains("\"lfdb\":"), "{text}");
    ok(w.hsm.tool("signer").args([
        "verify",
        &w.p("card.pkg"),
        "--cipher-key",
        &vendor_key("lfdb-cipher"),
        "--pin-source",
        &pin_source(),
    ]));
    // Public keys from PEM files check the asymmetric DAPs without the token.
    for (name, label) in [
        ("rsa.pkg", "dap-rsa"),
        ("rsa1024.pkg", "dap-rsa1024"),
        ("ec.pkg", "dap-ec"),
    ] {
        let pem = w.hsm.public_pem("vendor", label);
        ok(w.hsm.tool("signer").args([
            "verify",
            &w.p(name),
            "--public-key",
            pem.to_str().unwrap(),
        ]));
    }
}

#[test]
fn the_same_inputs_give_the_same_bytes() {
    let w = World::new();
    let runs: [&[&str]; 3] = [
        &[
            "--dap",
            "aes",
            "--dap-key",
            &vendor_key("dap-master"),
            "--cards",
            &w.p("cards.csv"),
            "--diversify",
            "aes",
            "--encrypt",
            "--cipher-key",
            &vendor_key("lfdb-cipher"),
        ],
        &[
            "--hash",
            "sha1",
            "--dap",
            "des",
            "--dap-key",
            &vendor_key("dap-master-des"),
            "--cards",
            &w.p("cards.csv"),
            "--diversify",
            "visa2",
        ],
        &["--dap", "rsa", "--dap-key", &vendor_key("dap-rsa1024")],
    ];
    for (i, args) in runs.iter().enumerate() {
        ok(&mut w.package(&format!("{i}-a.pkg"), args));
        ok(&mut w.package(&format!("{i}-b.pkg"), args));
        assert_eq!(
            std::fs::read(w.p(&format!("{i}-a.pkg"))).unwrap(),
            std::fs::read(w.p(&format!("{i}-b.pkg"))).unwrap(),
            "run {i}"
        );
    }
    // Outputs are never overwritten.
    let err = fails(&mut w.package("0-a.pkg", &[]));
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn tampered_packages_and_wrong_keys_are_refused_offline() {
    let w = World::new();
    ok(&mut w.package_per_card(
        "good.pkg",
        &["--encrypt", "--cipher-key", &vendor_key("lfdb-cipher")],
    ));
    ok(&mut w.package(
        "ec.pkg",
        &["--dap", "ecdsa", "--dap-key", &vendor_key("dap-ec")],
    ));
    let good = w.p("good.pkg");
    let verify = |pkg: &str, extra: &[&str]| {
        let mut c = w.hsm.tool("signer");
        c.args(["verify", pkg, "--pin-source", &pin_source()])
            .args(extra);
        c
    };
    // Each tampering is refused with the field it touched.
    let cases: [(&str, &str, &[&str]); 4] = [
        ("signature", "does not verify", &["--dap-key"]),
        ("sha256", "manifest.cipher.sha256", &[]),
        ("ciphered_lfdb", "manifest.cipher.sha256", &[]),
        ("lfdb_hash", "does not verify", &["--dap-key"]),
    ];
    for (field, expect, key) in cases {
        let bad = w.p(&format!("bad-{field}.pkg"));
        edit_field(&good, field, flip_last, &bad);
        let mut args: Vec<String> = key.iter().map(|s| s.to_string()).collect();
        if !args.is_empty() {
            args.push(vendor_key("dap-master"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = fails(&mut verify(&bad, &args));
        assert!(err.contains(expect), "{field}: {err}");
    }
    // A DAP by the wrong vendor key.
    let err = fails(&mut verify(
        &good,
        &["--dap-key", &vendor_key("dap-master-des")],
    ));
    assert!(err.contains("dap-master-des"), "{err}");
    let other_pem = w.hsm.public_pem("vendor", "dap-rsa");
    let err = fails(&mut verify(
        &w.p("ec.pkg"),
        &["--public-key", other_pem.to_str().unwrap()],
    ));
    assert!(
        err.contains("cannot be checked with this public key"),
        "{err}"
    );
    // Hostile package files: errors name the field, the line or the limit.
    let text = std::fs::read_to_string(&good).unwrap();
    let hostile = [
        (
            text.replacen("\"version\": 2", "\"version\": 99", 1),
            "version",
        ),
        (
            text.replacen("\"manifest\": {", "\"manifest\": {\n    \"extra\": 1,", 1),
            "unknown field",
        ),
        (
            text.replacen("\"algorithm\": \"aes-cmac\"", "\"algorithm\": \"md5\"", 1),
            "manifest.daps[0].algorithm",
        ),
        (
            text.replacen("\"card\": \"card-a\"", "\"card\": \"card a/..\"", 1),
            "manifest.daps[0].card",
        ),
        (
            text.replacen("\"sd_aid\": \"A000000151000000\"", "\"sd_aid\": \"A0\"", 1),
            "sd_aid",
        ),
        (
            text.replacen(
                &format!("\"kdd\": \"{KDD_B}\""),
                &format!("\"kdd\": \"{KDD_A}\""),
                1,
            ),
            "manifest.daps[1].kdd",
        ),
        (text[..text.len() / 2].to_string(), "line"),
        ("[]".to_string(), "file"),
    ];
    for (i, (body, expect)) in hostile.iter().enumerate() {
        let bad = w.p(&format!("hostile-{i}.pkg"));
        std::fs::write(&bad, body).unwrap();
        let err = fails(w.hsm.tool("signer").args(["inspect", &bad]));
        assert!(err.contains(expect), "case {i}: {err}");
    }
}

#[test]
fn hostile_card_lists_and_impossible_requests_are_refused_before_signing() {
    let w = World::new();
    let lists = [
        ("card-a,00010203040506070809\ncard-b,0102\n", "line 2, kdd"),
        (
            "card-a,00010203040506070809\n\n# ok\nbad id,0102030405060708090A\n",
            "line 4, identity",
        ),
        (
            "card-a,00010203040506070809\ncard-b,00010203040506070809\n",
            "line 2, kdd: a card with this KDD is already listed",
        ),
        ("card-a,00010203040506070809,extra\n", "line 1, line"),
    ];
    for (i, (body, expect)) in lists.iter().enumerate() {
        let path = w.p(&format!("bad-{i}.csv"));
        std::fs::write(&path, body).unwrap();
        let err = fails(&mut w.package(
            &format!("x{i}.pkg"),
            &[
                "--dap",
                "aes",
                "--dap-key",
                &vendor_key("dap-master"),
                "--cards",
                &path,
                "--diversify",
                "aes",
            ],
        ));
        assert!(err.contains(expect), "{i}: {err}");
        assert!(!w.hsm.path(&format!("x{i}.pkg")).exists());
    }
    // A 3DES DAP for every card needs a retail MAC the token cannot compute from one 3DES key: refused.
    let err = fails(&mut w.package(
        "d.pkg",
        &[
            "--hash",
            "sha1",
            "--dap",
            "des",
            "--dap-key",
            &vendor_key("dap-master-des"),
        ],
    ));
    assert!(
        err.contains("retail MAC") && err.contains("never exported"),
        "{err}"
    );
    // kdf3 needs an SP 800-108 KDF in the token.
    let err = fails(&mut w.package(
        "k.pkg",
        &[
            "--dap",
            "aes",
            "--dap-key",
            &vendor_key("dap-master"),
            "--cards",
            &w.p("cards.csv"),
            "--diversify",
            "kdf3",
        ],
    ));
    assert!(
        err.ends_with(
            "token 'vendor' cannot do derive-kdf3: it lacks CKM_SP800_108_COUNTER_KDF (derive); nothing \
             is done outside the token instead"
        ),
        "{err}"
    );
    // Hash strength: AES DAPs need SHA-2, 3DES DAPs SHA-1.
    let err = fails(&mut w.package(
        "h.pkg",
        &[
            "--hash",
            "sha1",
            "--dap",
            "aes",
            "--dap-key",
            &vendor_key("dap-master"),
        ],
    ));
    assert!(err.contains("--hash"), "{err}");
    let err = fails(&mut w.package(
        "h2.pkg",
        &[
            "--dap",
            "des",
            "--dap-key",
            &vendor_key("dap-master-des"),
            "--cards",
            &w.p("cards.csv"),
            "--diversify",
            "emv",
        ],
    ));
    assert!(err.contains("sha1"), "{err}");
}

#[test]
fn keys_derive_prints_kcvs_with_their_method_and_never_a_key() {
    let w = World::new();
    let derive = |master: &str, scheme: &str| {
        let mut c = w.hsm.tool("signer");
        c.args([
            "keys",
            "derive",
            "--master",
            master,
            "--scheme",
            scheme,
            "--kdd",
            KDD_A,
            "--pin-source",
            &pin_source(),
        ]);
        c
    };
    let out = ok(&mut derive(ISSUER_MASTER, "emv"));
    assert_eq!(out.matches("(3DES-ECB(00*8))").count(), 4, "{out}");
    let aes = ok(&mut derive(&vendor_key("dap-master"), "aes"));
    assert_eq!(aes.matches("(AES-ECB(01*16) GPC B.6)").count(), 3, "{aes}");
    for text in [&out, &aes] {
        assert!(
            !text
                .split(|c: char| !c.is_ascii_hexdigit())
                .any(|w| w.len() >= 32),
            "no key-length hex in the output: {text}"
        );
    }
    let err = fails(&mut derive(&vendor_key("dap-master"), "kdf3"));
    assert!(
        err.contains("cannot do derive-kdf3: it lacks CKM_SP800_108_COUNTER_KDF (derive)"),
        "{err}"
    );
    let err = fails(&mut derive(ISSUER_MASTER, "aes"));
    assert!(err.contains("AES master"), "{err}");
}

#[test]
fn one_ledger_verify_covers_the_ceremony_signing_and_delivery() {
    let w = World::new();
    let issuer_ledger = w.p("issuer.jsonl");
    let vendor_ledger = w.p("vendor.jsonl");
    ok(&mut w.package_per_card("l.pkg", &["--ledger", &vendor_ledger]));
    let image = w.card("a", KDD_A);
    ok(&mut w.deploy(&w.p("l.pkg"), &image, &["--ledger", &issuer_ledger]));
    for (ledger, token, kinds) in [
        (
            &vendor_ledger,
            "vendor",
            ["\"kind\":\"signing\"", "\"type\":\"dap\""],
        ),
        (
            &issuer_ledger,
            "issuer",
            ["\"kind\":\"delivery\"", "\"type\":\"card\""],
        ),
    ] {
        let text = std::fs::read_to_string(ledger).unwrap();
        for k in kinds {
            assert!(text.contains(k), "{k} in {text}");
        }
        assert!(text.contains("ceremony-start"));
        let v = ok(&mut w.verify_ledger(ledger, token));
        assert!(v.contains("chain intact"), "{v}");
    }
    let text = std::fs::read_to_string(&vendor_ledger).unwrap();
    assert!(
        text.contains("\"card\":\"card-a\"") && text.contains("\"type\":\"package\""),
        "{text}"
    );
}
