//! Separation shown end to end: a per-card DAP goes only to its own card, tampered parts of a package are
//! refused with the card's registry unchanged, and the issuer's and the vendor's tokens hold none of each
//! other's keys.

mod common;

use common::*;
use postissue_tests::{fails, ok};

fn card_dap(pkg: &str, card: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(pkg).unwrap()).unwrap();
    v["manifest"]["daps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["card"] == card)
        .unwrap()["signature"]
        .as_str()
        .unwrap()
        .to_lowercase()
}

#[test]
fn a_per_card_dap_goes_to_its_own_card_and_no_other() {
    let w = World::new();
    let pkg = w.p("cards.pkg");
    ok(&mut w.package_per_card("cards.pkg", &[]));
    assert_ne!(
        card_dap(&pkg, "card-a"),
        card_dap(&pkg, "card-b"),
        "each card has its own DAP"
    );
    // Card C is not in the list: the load is not attempted and its registry stays as it was.
    let c = w.card("c", KDD_C);
    let before = w.registry(&c);
    let err = fails(&mut w.deploy(&pkg, &c, &[]));
    assert!(
        err.contains(&format!("no DAP was made for the card with KDD {KDD_C}")),
        "{err}"
    );
    assert_eq!(w.registry(&c), before);
    // Card A gets card A's DAP, and only it (the delivery record names the DAP sent).
    let a = w.card("a", KDD_A);
    let ledger = w.new_ledger("deliveries.jsonl", "issuer");
    ok(&mut w.deploy(&pkg, &a, &["--ledger", &ledger]));
    let record = std::fs::read_to_string(&ledger).unwrap();
    assert!(record.contains(&card_dap(&pkg, "card-a")), "{record}");
    assert!(!record.contains(&card_dap(&pkg, "card-b")), "{record}");
    assert!(w.registry(&a).contains(APPLET));
}

#[test]
fn tampered_lfdb_manifest_or_ciphertext_is_refused_with_the_registry_unchanged() {
    let w = World::new();
    ok(&mut w.package(
        "plain.pkg",
        &["--dap", "aes", "--dap-key", &vendor_key("dap-master")],
    ));
    ok(&mut w.package(
        "ciphered.pkg",
        &[
            "--dap",
            "aes",
            "--dap-key",
            &vendor_key("dap-master"),
            "--encrypt",
            "--cipher-key",
            &vendor_key("lfdb-cipher"),
        ],
    ));
    let image = w.card("a", KDD_A);
    let before = w.registry(&image);
    let cases = [
        ("plain.pkg", "lfdb", "manifest.lfdb_hash"),
        ("plain.pkg", "lfdb_hash", "manifest.lfdb_hash"),
        ("plain.pkg", "load_file_aid", "manifest.load_file_aid"),
        ("ciphered.pkg", "ciphered_lfdb", "manifest.cipher.sha256"),
        ("ciphered.pkg", "icv", "ICV"),
    ];
    for (i, (pkg, field, expect)) in cases.iter().enumerate() {
        let bad = w.p(&format!("bad-{i}.pkg"));
        edit_field(&w.p(pkg), field, flip_last, &bad);
        let err = fails(&mut w.deploy(&bad, &image, &[]));
        let refused = err.contains(expect) || err.contains("card refused");
        assert!(refused, "{field}: {err}");
        assert_eq!(w.registry(&image), before, "{field}");
    }
    // A manifest that lists an applet the LFDB does not hold.
    let bad = w.p("bad-applets.pkg");
    let text = std::fs::read_to_string(w.p("plain.pkg"))
        .unwrap()
        .replace(&format!("\"{APPLET}\""), "\"A00000064750490102\"");
    std::fs::write(&bad, text).unwrap();
    let err = fails(&mut w.deploy(&bad, &image, &[]));
    assert!(err.contains("manifest.applets"), "{err}");
    assert_eq!(w.registry(&image), before);
}

#[test]
fn the_issuer_token_holds_no_vendor_key_and_the_vendor_token_no_issuer_key() {
    let w = World::new();
    for label in ["dap-master", "dap-master-des", "lfdb-cipher"] {
        let err = fails(&mut w.package(
            "x.pkg",
            &[
                "--dap",
                "aes",
                "--dap-key",
                &format!("pkcs11:token=issuer;object={label}"),
            ],
        ));
        assert!(
            err.contains(&format!("no secret key labelled '{label}'")),
            "{err}"
        );
    }
    let err = fails(&mut w.package(
        "x.pkg",
        &[
            "--dap",
            "rsa",
            "--dap-key",
            "pkcs11:token=issuer;object=dap-rsa",
        ],
    ));
    assert!(err.contains("no private key labelled 'dap-rsa'"), "{err}");
    let err = fails(w.hsm.tool("signer").args([
        "keys",
        "derive",
        "--master",
        "pkcs11:token=vendor;object=isd-kmc",
        "--scheme",
        "emv",
        "--kdd",
        KDD_A,
        "--pin-source",
        &pin_source(),
    ]));
    assert!(err.contains("no secret key labelled 'isd-kmc'"), "{err}");
    // What pkcs11-tool lists in each token, by label.
    let list = |token: &str| {
        let out = std::process::Command::new("pkcs11-tool")
            .env("SOFTHSM2_CONF", w.hsm.conf())
            .args([
                "--module",
                "/usr/lib/softhsm/libsofthsm2.so",
                "--token-label",
                token,
                "--login",
                "--pin",
                &w.hsm.pin,
                "-O",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let issuer = list("issuer");
    let vendor = list("vendor");
    assert!(
        issuer.contains("isd-kmc") && !issuer.contains("dap-") && !issuer.contains("lfdb-cipher"),
        "{issuer}"
    );
    assert!(
        vendor.contains("dap-master") && !vendor.contains("isd-kmc"),
        "{vendor}"
    );
    // A ciphered package carries no plain LFDB: the issuer delivering it never sees the vendor's code.
    ok(&mut w.package(
        "c.pkg",
        &["--encrypt", "--cipher-key", &vendor_key("lfdb-cipher")],
    ));
    ok(&mut w.package("p.pkg", &[]));
    let plain: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(w.p("p.pkg")).unwrap()).unwrap();
    let lfdb = plain["lfdb"].as_str().unwrap();
    let ciphered = std::fs::read_to_string(w.p("c.pkg")).unwrap();
    assert!(
        !ciphered.contains(&lfdb[..64]),
        "no stretch of the LFDB in the ciphered package"
    );
}
