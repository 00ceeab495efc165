//! Separation shown on the reference card: the vendor's security domain (SSD) on each card holds that
//! card's own DAP key (derived from the vendor's master and the card's KDD in the vendor's token) and the
//! vendor's load-file cipher key. A package with per-card DAPs loads on each listed card with that card's
//! DAP; a DAP made for another card, a tampered DAP, a DAP by the wrong vendor key and a tampered
//! ciphertext are refused by the card with its registry unchanged.
//!
//! One test function: the PKCS#11 module is initialised once per process, with the first token store.

mod common;

use common::*;
use gp_core::diversify::Scheme;
use keyman::hsm::{KeyHandle, TokenSession, Usage};
use postissue_tests::{fails, ok};
use signer::sd;
use signer::transport::SimTransport;

const SSD: &str = "A0000001515350410001";
/// SSD privileges: Security Domain + DAP Verification (byte 1 `C0`), Ciphered Load File Data Block (byte 3 `40`).
const SSD_PRIVILEGES: [u8; 3] = [0xC0, 0x00, 0x40];

/// The issuer creates the vendor's SSD on the card through its card domain channel.
fn create_ssd(image: &str, issuer: &TokenSession<'_>) {
    let master = issuer.find_secret_key("isd-kmc").unwrap();
    let mut t = SimTransport::open(std::path::Path::new(image)).unwrap();
    let (mut ch, _) = signer::gp::open_issuer_channel(&mut t, issuer, master, Scheme::Emv).unwrap();
    let spec = sd::SdSpec {
        aid: h(SSD),
        privileges: SSD_PRIVILEGES,
        scp: None,
    };
    assert_eq!(spec.install_command().load_file_aid, h(SD_PACKAGE));
    assert_eq!(spec.install_command().module_aid, h(SD_MODULE));
    sd::create_security_domain(&mut ch, &spec).unwrap();
}

/// The vendor (or its bureau) puts the card's DAP key (KVN 73) and the cipher key (KVN 74) into the SSD,
/// through the SSD's own channel opened with its transport keys; each key is wrapped in the vendor's
/// token under the SSD's DEK, and the card confirms its KCV.
fn provision_ssd(
    image: &str,
    vendor: &TokenSession<'_>,
    dap_master: KeyHandle,
    cipher: KeyHandle,
    kdd: &[u8; 10],
) {
    let transport = sd::import_default_transport_keys(vendor).unwrap();
    let keys = transport.statics();
    let mut t = SimTransport::open(std::path::Path::new(image)).unwrap();
    let (mut ch, iu) = sd::open_sd_channel(&mut t, vendor, &h(SSD), keys).unwrap();
    assert_eq!(&iu.kdd, kdd, "the SSD reports the card's KDD");
    let card_dap = sd::derive_sd_dap_key(vendor, dap_master, Scheme::Aes, &iu.kdd).unwrap();
    for (kvn, key) in [(sd::DAP_KVN, card_dap.handle()), (sd::CIPHER_KVN, cipher)] {
        sd::put_sd_key(&mut ch, vendor, keys.dek, key, 0, kvn).unwrap();
    }
}

#[test]
fn per_card_daps_and_ciphered_loads_on_the_card() {
    let w = World::new();
    let hsm = load_module(&w.hsm);
    let issuer = open_token(&hsm, "issuer");
    let vendor = open_token(&hsm, "vendor");
    // A cipher key the vendor can put into its SSDs (extractable, wrapped only) and a second DAP master
    // standing for another vendor's key.
    let (cipher, _) = vendor
        .generate_secret(&aes_spec(
            "lfdb-cipher-ssd",
            0x41,
            vec![Usage::Encrypt, Usage::Decrypt],
            true,
        ))
        .unwrap();
    vendor
        .generate_secret(&aes_spec(
            "other-dap-master",
            0x42,
            vec![Usage::Derive],
            false,
        ))
        .unwrap();
    let dap_master = vendor.find_secret_key("dap-master").unwrap();

    let mut cards = Vec::new();
    for (name, kdd) in [("a", KDD_A), ("b", KDD_B)] {
        let image = w.card(name, kdd);
        create_ssd(&image, &issuer);
        provision_ssd(
            &image,
            &vendor,
            dap_master,
            cipher,
            &h(kdd).try_into().unwrap(),
        );
        cards.push(image);
    }
    let (a, b) = (&cards[0], &cards[1]);

    let per_card = |name: &str, key: &str, extra: &[&str]| {
        let mut args = vec!["--dap", "aes", "--dap-key", key, "--dap-sd", SSD, "--cards"];
        let cards = w.p("cards.csv");
        args.push(&cards);
        args.extend(["--diversify", "aes", "--encrypt", "--cipher-key"]);
        let ck = vendor_key("lfdb-cipher-ssd");
        args.push(&ck);
        args.extend(extra);
        ok(&mut w.package(name, &args));
        w.p(name)
    };
    let good = per_card("good.pkg", &vendor_key("dap-master"), &[]);
    let wrong_key = per_card("wrong-key.pkg", &vendor_key("other-dap-master"), &[]);
    let sd = ["--sd", SSD];

    // Card B refuses card A's DAP (the package is edited so that B's record carries A's signature).
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&good).unwrap()).unwrap();
    let sig_a = v["manifest"]["daps"][0]["signature"]
        .as_str()
        .unwrap()
        .to_string();
    let sig_b = v["manifest"]["daps"][1]["signature"]
        .as_str()
        .unwrap()
        .to_string();
    let swapped = w.p("swapped.pkg");
    std::fs::write(
        &swapped,
        std::fs::read_to_string(&good)
            .unwrap()
            .replace(&sig_b, &sig_a),
    )
    .unwrap();
    let tampered = w.p("tampered-dap.pkg");
    edit_field(&good, "signature", flip_last, &tampered);

    let before_b = w.registry(b);
    for (pkg, what) in [
        (&swapped, "card A's DAP"),
        (&wrong_key, "the wrong vendor key"),
    ] {
        let err = fails(&mut w.deploy(pkg, b, &sd));
        assert!(
            err.contains("LOAD") && err.contains("6982"),
            "{what}: {err}"
        );
        assert_eq!(w.registry(b), before_b, "{what}");
    }
    let before_a = w.registry(a);
    let err = fails(&mut w.deploy(&tampered, a, &sd));
    assert!(err.contains("6982"), "tampered DAP: {err}");
    assert_eq!(w.registry(a), before_a);

    // A ciphertext altered after packaging (with the manifest's hash updated to match) is refused by the
    // card: the deciphered LFDB no longer matches the hash.
    let text = std::fs::read_to_string(&good).unwrap();
    let cv: serde_json::Value = serde_json::from_str(&text).unwrap();
    let ct = cv["ciphered_lfdb"].as_str().unwrap().to_string();
    let old_sha = cv["manifest"]["cipher"]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let mut bytes = h(&ct);
    let at = bytes.len() - 40;
    bytes[at] ^= 1;
    use sha2::Digest;
    let new_sha = hex::encode_upper(sha2::Sha256::digest(&bytes));
    let edited = text
        .replace(&ct, &hex::encode_upper(&bytes))
        .replace(&old_sha, &new_sha);
    let bad_ct = w.p("bad-ciphertext.pkg");
    std::fs::write(&bad_ct, edited).unwrap();
    let err = fails(&mut w.deploy(&bad_ct, a, &sd));
    assert!(
        err.contains("card refused LOAD"),
        "tampered ciphertext: {err}"
    );
    assert_eq!(w.registry(a), before_a);

    // The genuine package loads on each card with that card's own DAP, deciphered by its SSD.
    for card in [a, b] {
        let out = ok(&mut w.deploy(&good, card, &sd));
        assert!(
            out.contains("ciphered") && out.contains("1 DAP block"),
            "{out}"
        );
        let reg = w.registry(card);
        assert!(
            reg.lines()
                .any(|l| l.starts_with("ELF") && l.contains(&format!("sd {SSD}"))),
            "{reg}"
        );
        assert!(reg.contains(APPLET), "{reg}");
    }
}
