//! Delegated management through the real tools: the issuer signs load and install tokens in its token
//! (`signer token load`), puts its token verification key and the card's own receipt key into the card
//! domain (`signer token put-keys`), and the vendor loads through its Delegated Management SSD
//! (`signer deploy --sd --tokens`), checking the card's receipts with the issuer's receipt master.
//! A missing, forged, wrongly signed or other-package token is refused with the registry unchanged.
//!
//! One test function: the PKCS#11 module is initialised once per process, with the first token store.

mod common;

use common::*;
use gp_core::diversify::Scheme;
use keyman::hsm::Usage;
use postissue_tests::{fails, ok};
use signer::transport::SimTransport;

const SSD: &str = "A0000001515350410001";
const TOKEN_KEY: &str = "pkcs11:token=issuer;object=dm-token";
const RECEIPT_MASTER: &str = "pkcs11:token=issuer;object=receipt-master";
const SSD_MASTER: &str = "pkcs11:token=vendor;object=ssd-kmc";

#[test]
fn delegated_management_loads_with_the_issuers_tokens_and_receipts_verify() {
    let w = World::new();
    // The issuer's token signing key (EC P-256) and receipt master; the vendor's SSD master.
    w.hsm.keypair("issuer", "dm-token", "0701", "EC:prime256v1");
    let hsm = load_module(&w.hsm);
    let issuer = open_token(&hsm, "pkcs11:token=issuer");
    let vendor = open_token(&hsm, "pkcs11:token=vendor");
    make_dm_keys(&issuer, &vendor);

    let image = w.card("a", KDD_A);
    create_ssd_with_keys(&image, &issuer, &vendor, SSD, DM_PRIVILEGES);
    let put = ok(w.hsm.tool("signer").args([
        "token",
        "put-keys",
        "--card",
        &format!("sim:{image}"),
        "--master",
        ISSUER_MASTER,
        "--token-key",
        TOKEN_KEY,
        "--receipt-master",
        RECEIPT_MASTER,
        "--pin-source",
        &pin_source(),
    ]));
    assert!(
        put.contains("KVN 70") && put.contains("ecdsa-p256-sha256"),
        "{put}"
    );
    assert!(put.contains("KVN 71") && put.contains("KCV"), "{put}");

    // Two packages: the one to load, and another (Descriptor included, so another LFDB hash).
    ok(&mut w.package("hello.pkg", &[]));
    ok(&mut w.package("other.pkg", &["--lfdb", "with-descriptor"]));
    let issue = |sub: &str, pkg: &str, key: &str, out: &str| {
        ok(w.hsm.tool("signer").args([
            "token",
            sub,
            &w.p(pkg),
            "--sd",
            SSD,
            "--token-key",
            key,
            "--out",
            &w.p(out),
            "--pin-source",
            &pin_source(),
        ]))
    };
    let issued = issue("load", "hello.pkg", TOKEN_KEY, "hello.tokens");
    assert!(
        issued.contains("install-for-load") && issued.contains(APPLET),
        "{issued}"
    );
    issue("load", "other.pkg", TOKEN_KEY, "other.tokens");
    issue("install", "hello.pkg", TOKEN_KEY, "install-only.tokens");
    // Tokens by a key that is not the issuer's (the vendor's own EC key).
    issue(
        "load",
        "hello.pkg",
        &vendor_key("dap-ec"),
        "vendor-signed.tokens",
    );
    // Outputs are never overwritten.
    let err = fails(w.hsm.tool("signer").args([
        "token",
        "load",
        &w.p("hello.pkg"),
        "--sd",
        SSD,
        "--token-key",
        TOKEN_KEY,
        "--out",
        &w.p("hello.tokens"),
        "--pin-source",
        &pin_source(),
    ]));
    assert!(err.contains("never overwritten"), "{err}");

    w.new_ledger("vendor-delivery.jsonl", "vendor");
    let deploy_to = |image: &str, pkg: &str, tokens: &str| {
        let mut c = w.hsm.tool("signer");
        c.args([
            "deploy",
            &w.p(pkg),
            "--card",
            &format!("sim:{image}"),
            "--master",
            SSD_MASTER,
            "--scheme",
            "aes",
            "--sd",
            SSD,
            "--tokens",
            &w.p(tokens),
            "--receipt-master",
            RECEIPT_MASTER,
            "--ledger",
            &w.p("vendor-delivery.jsonl"),
            "--pin-source",
            &pin_source(),
        ]);
        c
    };
    let deploy = |pkg: &str, tokens: &str| deploy_to(&image, pkg, tokens);
    let before = w.registry(&image);
    assert!(!before.contains(APPLET), "{before}");

    // Missing load token: refused before anything is sent.
    let err = fails(&mut deploy("hello.pkg", "install-only.tokens"));
    assert!(err.contains("no token for INSTALL [for load]"), "{err}");
    assert_eq!(w.registry(&image), before);
    // Without a token the card refuses too (6982), whatever the host does.
    {
        let pkg = signer::package::Package::read(&w.hsm.path("hello.pkg")).unwrap();
        let mut t = SimTransport::open(std::path::Path::new(&image)).unwrap();
        let m = vendor.find_secret_key("ssd-kmc").unwrap();
        let (mut ch, _) =
            signer::gp::open_domain_channel(&mut t, &vendor, &h(SSD), m, Scheme::Aes).unwrap();
        let cmd = signer::token::load_command(&pkg, &h(SSD))
            .unwrap()
            .to_apdu()
            .unwrap();
        assert_eq!(ch.send(&cmd).unwrap().sw, 0x6982);
    }
    assert_eq!(w.registry(&image), before);

    // A forged token (one digit changed): the card refuses it.
    let text = std::fs::read_to_string(w.hsm.path("hello.tokens")).unwrap();
    let at = text.find("\"token\": \"").unwrap() + 10;
    let mut forged = text.clone().into_bytes();
    forged[at] = if forged[at] == b'0' { b'1' } else { b'0' };
    std::fs::write(w.hsm.path("forged.tokens"), forged).unwrap();
    let err = fails(&mut deploy("hello.pkg", "forged.tokens"));
    assert!(err.contains("6982"), "{err}");
    assert_eq!(w.registry(&image), before);

    // Tokens signed by another key than the issuer's: the card refuses them.
    let err = fails(&mut deploy("hello.pkg", "vendor-signed.tokens"));
    assert!(err.contains("6982"), "{err}");
    assert_eq!(w.registry(&image), before);

    // Another package's tokens: refused by their binding, and, rebound by hand, by their data.
    let err = fails(&mut deploy("hello.pkg", "other.tokens"));
    assert!(err.contains("another package"), "{err}");
    let hello_hash = {
        use sha2::Digest;
        hex::encode_upper(sha2::Sha256::digest(
            std::fs::read(w.hsm.path("hello.pkg")).unwrap(),
        ))
    };
    edit_field(
        &w.p("other.tokens"),
        "package_sha256",
        |_| hello_hash.clone(),
        &w.p("rebound.tokens"),
    );
    let err = fails(&mut deploy("hello.pkg", "rebound.tokens"));
    assert!(err.contains("no token for INSTALL [for load]"), "{err}");
    assert_eq!(w.registry(&image), before);

    // The genuine tokens: loaded and installed through the SSD, every receipt verified.
    let out = ok(&mut deploy("hello.pkg", "hello.tokens"));
    let verified = out
        .lines()
        .filter(|l| l.contains("verified with the card's receipt key"))
        .count();
    assert_eq!(verified, 2, "load and install receipts: {out}");
    let after = w.registry(&image);
    assert!(
        after
            .lines()
            .any(|l| l.starts_with("ELF") && l.contains(&format!("sd {SSD}"))),
        "{after}"
    );
    assert!(
        after
            .lines()
            .any(|l| l.starts_with("APP") && l.contains(APPLET) && l.contains("SELECTABLE")),
        "{after}"
    );
    // A receipt checked with another card's key does not verify.
    let c = signer::token::Confirmation {
        receipt: vec![0; 16],
        data: vec![0x02, 0x00, 0x01],
        counter: 1,
    };
    let rm = issuer.find_secret_key("receipt-master").unwrap();
    let key = signer::token::derive_receipt_key(
        &issuer,
        rm,
        Scheme::Aes,
        &[9; 10],
        &[Usage::Sign],
        false,
    )
    .unwrap();
    assert!(signer::token::verify_receipt(&issuer, key.handle(), &c, &[]).is_err());
    // An RSA-2048 token key (PSS SHA-256 tokens) on a second card.
    w.hsm.keypair("issuer", "dm-token-rsa", "0702", "rsa:2048");
    let image_b = w.card("b", KDD_B);
    create_ssd_with_keys(&image_b, &issuer, &vendor, SSD, DM_PRIVILEGES);
    ok(w.hsm.tool("signer").args([
        "token",
        "put-keys",
        "--card",
        &format!("sim:{image_b}"),
        "--master",
        ISSUER_MASTER,
        "--token-key",
        "pkcs11:token=issuer;object=dm-token-rsa",
        "--receipt-master",
        RECEIPT_MASTER,
        "--pin-source",
        &pin_source(),
    ]));
    let issued = issue(
        "load",
        "hello.pkg",
        "pkcs11:token=issuer;object=dm-token-rsa",
        "rsa.tokens",
    );
    assert!(issued.contains("rsa-pss-sha256"), "{issued}");
    // This card checks tokens with the RSA key: the ECDSA tokens are refused.
    let before_b = w.registry(&image_b);
    let err = fails(&mut deploy_to(&image_b, "hello.pkg", "hello.tokens"));
    assert!(err.contains("6982"), "{err}");
    assert_eq!(w.registry(&image_b), before_b);
    let out = ok(&mut deploy_to(&image_b, "hello.pkg", "rsa.tokens"));
    assert_eq!(
        out.matches("verified with the card's receipt key").count(),
        2,
        "{out}"
    );
    assert!(w.registry(&image_b).contains(APPLET));

    // Deliveries and aborts are in the ledger, whose chain verifies.
    let verified = ok(&mut w.verify_ledger(&w.p("vendor-delivery.jsonl"), "vendor"));
    assert!(verified.contains("chain intact"), "{verified}");
}
