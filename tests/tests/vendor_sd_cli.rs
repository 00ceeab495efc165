//! The vendor's post-issuance flow through the tools alone, as the demo runs it: the issuer creates the
//! vendor's security domain (`signer card create-sd`), the vendor puts each card's own DAP key and its
//! load-file cipher key into it through the SSD's channel (`signer sd put-keys`), and a package with
//! per-card DAPs and a ciphered LFDB loads through it (`signer deploy --sd`). A package whose DAP for this
//! card was made for another card is refused by the card, with its registry unchanged.

mod common;

use common::*;
use postissue_tests::{create_sd, fails, ok, sd_put_keys};

const SSD: &str = "A0000001515350410001";

#[test]
fn the_signed_vendor_flow_through_the_command_line() {
    let w = World::new();
    // Each party records in its own ledger, anchored in its own token.
    let issuer_ledger = w.new_ledger("issuer-flow.jsonl", "issuer");
    let ledger = w.new_ledger("vendor-flow.jsonl", "vendor");
    let mut cards = Vec::new();
    for (name, kdd) in [("a", KDD_A), ("b", KDD_B)] {
        let image = w.card(name, kdd);
        let out = ok(create_sd(
            &w.hsm,
            &image,
            ISSUER_MASTER,
            SSD,
            "dap-verification,ciphered-load-file-data-block",
        )
        .args(["--ledger", &issuer_ledger]));
        assert!(
            out.contains(&format!("security domain {SSD} created"))
                && out.contains("SSD  ")
                && out.contains("SELECTABLE")
                && out.contains("C00040"),
            "{out}"
        );
        let out = ok(sd_put_keys(
            &w.hsm,
            &image,
            SSD,
            &vendor_key("dap-master"),
            Some(&vendor_key("lfdb-cipher")),
        )
        .args(["--ledger", &ledger]));
        assert!(
            out.contains(&format!("card {kdd}"))
                && out.contains("KVN 73 key 01")
                && out.contains("KVN 74 key 01")
                && out.contains("confirmed by the card"),
            "{out}"
        );
        cards.push(image);
    }
    let verified = ok(&mut w.verify_ledger(&ledger, "vendor"));
    assert!(verified.contains("2 entries, chain intact"), "{verified}");
    let verified = ok(&mut w.verify_ledger(&issuer_ledger, "issuer"));
    assert!(verified.contains("2 entries, chain intact"), "{verified}");

    let (a, b) = (&cards[0], &cards[1]);
    let good = w.p("vendor.pkg");
    ok(&mut w.package(
        "vendor.pkg",
        &[
            "--dap",
            "aes",
            "--dap-key",
            &vendor_key("dap-master"),
            "--dap-sd",
            SSD,
            "--cards",
            &w.p("cards.csv"),
            "--diversify",
            "aes",
            "--encrypt",
            "--cipher-key",
            &vendor_key("lfdb-cipher"),
        ],
    ));

    // Card B's record carries card A's signature: B's SSD checks it with B's key and refuses the load.
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&good).unwrap()).unwrap();
    let sig = |i: usize| {
        v["manifest"]["daps"][i]["signature"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let swapped = w.p("swapped.pkg");
    std::fs::write(
        &swapped,
        std::fs::read_to_string(&good)
            .unwrap()
            .replace(&sig(1), &sig(0)),
    )
    .unwrap();
    let before_b = w.registry(b);
    let err = fails(&mut w.deploy(&swapped, b, &["--sd", SSD]));
    assert!(err.contains("LOAD") && err.contains("6982"), "{err}");
    assert_eq!(w.registry(b), before_b);

    // The genuine package loads on each card with that card's DAP, deciphered by its SSD.
    for card in [a, b] {
        let out = ok(&mut w.deploy(&good, card, &["--sd", SSD]));
        assert!(
            out.contains("ciphered") && out.contains("1 DAP block"),
            "{out}"
        );
        let reg = w.registry(card);
        assert!(
            reg.lines().any(|l| l.starts_with("SSD")
                && l.contains(SSD)
                && l.contains("SELECTABLE")
                && l.contains("privileges C00040")),
            "{reg}"
        );
        assert!(
            reg.lines().any(|l| l.starts_with("APP")
                && l.contains(APPLET)
                && l.contains("SELECTABLE")
                && l.contains(&format!("sd {SSD}"))),
            "{reg}"
        );
        assert!(
            reg.lines()
                .any(|l| l.starts_with("ELF") && l.contains(&format!("sd {SSD}"))),
            "{reg}"
        );
    }
}
