//! The combined load, install and make selectable process through a Delegated Management SSD (GPC
//! C.4.7, §11.5): the issuer signs one combined token (`signer token combined`), and `signer deploy
//! --sd --tokens` sends INSTALL [for load, install and make selectable] (P1 `0E`, P2 `01`), the LOADs
//! and the final command (P2 `03`) with the token, checking the card's combined receipt. A combined
//! token for another package is refused with the registry unchanged.
//!
//! One test function: the PKCS#11 module is initialised once per process, with the first token store.

mod common;

use common::*;
use postissue_tests::{fails, ok};

const SSD: &str = "A0000001515350410001";
const TOKEN_KEY: &str = "pkcs11:token=issuer;object=dm-token";
const RECEIPT_MASTER: &str = "pkcs11:token=issuer;object=receipt-master";
const SSD_MASTER: &str = "pkcs11:token=vendor;object=ssd-kmc";

#[test]
fn combined_token_loads_and_installs_in_one_process_and_binds_its_package() {
    let w = World::new();
    w.hsm.keypair("issuer", "dm-token", "0701", "EC:prime256v1");
    let hsm = load_module(&w.hsm);
    let issuer = open_token(&hsm, "pkcs11:token=issuer");
    let vendor = open_token(&hsm, "pkcs11:token=vendor");
    make_dm_keys(&issuer, &vendor);

    // The issuer creates the SSD (Security Domain + Delegated Management) from the built-in SD package;
    // the vendor replaces its transport keys.
    let image = w.card("a", KDD_A);
    create_ssd_with_keys(&image, &issuer, &vendor, SSD, DM_PRIVILEGES);
    ok(w.hsm.tool("signer").args([
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

    ok(&mut w.package("hello.pkg", &[]));
    ok(&mut w.package("other.pkg", &["--lfdb", "with-descriptor"]));
    let issue = |pkg: &str, out: &str| {
        ok(w.hsm.tool("signer").args([
            "token",
            "combined",
            &w.p(pkg),
            "--sd",
            SSD,
            "--token-key",
            TOKEN_KEY,
            "--out",
            &w.p(out),
            "--pin-source",
            &pin_source(),
        ]))
    };
    let issued = issue("hello.pkg", "hello.tokens");
    assert!(
        issued.contains("install-for-load-install-and-make-selectable P1 0E P2 03"),
        "{issued}"
    );
    issue("other.pkg", "other.tokens");
    let deploy = |tokens: &str| {
        let mut c = w.hsm.tool("signer");
        c.args([
            "deploy",
            &w.p("hello.pkg"),
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
            "--pin-source",
            &pin_source(),
        ]);
        c
    };
    let before = w.registry(&image);
    assert!(!before.contains(APPLET), "{before}");

    // Another package's combined token: refused by its binding and, rebound by hand, by its data
    // (nothing sent); the registry is unchanged.
    let err = fails(&mut deploy("other.tokens"));
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
    let err = fails(&mut deploy("rebound.tokens"));
    assert!(
        err.contains("no token for INSTALL [for load, install and make selectable]"),
        "{err}"
    );
    assert_eq!(w.registry(&image), before);
    // Another package's combined token over this package's data: the card refuses it (6982).
    let other = signer::token::TokensFile::read(&w.hsm.path("other.tokens")).unwrap();
    let other_token = other.tokens[0].token.clone();
    edit_field(
        &w.p("hello.tokens"),
        "token",
        |_| other_token.clone(),
        &w.p("swapped.tokens"),
    );
    let err = fails(&mut deploy("swapped.tokens"));
    assert!(err.contains("6982"), "{err}");
    assert_eq!(w.registry(&image), before);

    // The genuine combined token: load file and application in one process, one receipt, verified.
    let out = ok(&mut deploy("hello.tokens"));
    let verified: Vec<_> = out
        .lines()
        .filter(|l| l.contains("verified with the card's receipt key"))
        .collect();
    assert_eq!(verified.len(), 1, "one combined receipt: {out}");
    assert!(verified[0].starts_with("load+install"), "{out}");
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
}
