//! The vendor's SSD gets its per-card channel keys through the command line: `signer sd put-keys
//! --channel-master` derives this card's ENC, MAC and DEK in the vendor's token and replaces the SSD's
//! transport key set with them (key set 01), next to the card's DAP key (KVN 73), all wrapped in the token
//! under the SSD's current DEK with the KCVs the card confirms. Afterwards the SSD opens only with the
//! per-card keys: `signer app personalise` reaches the purse through it, a second `put-keys` opens with
//! them and refuses to overwrite KVN 73 unless told to replace it, and nothing is sent before refusing.
//!
//! One test function: the PKCS#11 module is initialised once per process, with the first token store.

mod common;

use common::*;
use gp_core::commands::put_key::{KeyComponent, KeyData, PutKey, KEY_TYPE_AES};
use gp_core::commands::InstallForExtradition;
use gp_core::diversify::{KeyRole, Scheme};
use keyman::hsm::{SecretKeyType, Usage};
use postissue_tests::{create_sd, fails, ok};
use signer::diversify::derive_one;
use signer::transport::SimTransport;

const SSD: &str = "A0000001515350410001";
const PURSE_PACKAGE: &str = "F05055525345";
const PURSE_MODULE: &str = "F0505552534501";
const PURSE: &str = "F050555253450101";

/// GET BALANCE from the purse on the card image: the raw response.
fn balance(image: &str) -> Vec<u8> {
    let mut card = card_firmware::sim::SimCard::open(std::path::Path::new(image)).unwrap();
    card.power_on();
    let mut select = vec![0x00, 0xA4, 0x04, 0x00, 0x08];
    select.extend_from_slice(&h(PURSE));
    assert!(card.transmit(&select).ends_with(&[0x90, 0x00]));
    card.transmit(&[0x80, 0x5C, 0x00, 0x00, 0x08])
}

#[test]
fn sd_put_keys_replaces_the_transport_key_set_from_the_command_line() {
    let w = World::new();
    let hsm = load_module(&w.hsm);
    let issuer = open_token(&hsm, "pkcs11:token=issuer");
    let vendor = open_token(&hsm, VENDOR);
    for (label, id) in [("ssd-kmc", 0x51), ("other-ssd-kmc", 0x52)] {
        vendor
            .generate_secret(&aes_spec(label, id, vec![Usage::Derive], false))
            .unwrap();
    }
    vendor
        .generate_secret(&aes_spec(
            "purse-credit",
            0x53,
            vec![Usage::Encrypt, Usage::Sign],
            true,
        ))
        .unwrap();
    // Each party records in its own ledger, anchored in its own token.
    let issuer_ledger = w.new_ledger("ssd-made.jsonl", "issuer");
    let ledger = w.new_ledger("ssd-keys.jsonl", "vendor");
    let image = w.card("a", KDD_A);
    let card = format!("sim:{image}");

    // The issuer creates the SSD (command line) and the purse, extradited to the SSD (library).
    ok(
        create_sd(&w.hsm, &image, ISSUER_MASTER, SSD, "dap-verification")
            .args(["--ledger", &issuer_ledger]),
    );
    {
        let master = issuer.find_secret_key("isd-kmc").unwrap();
        let mut t = SimTransport::open(std::path::Path::new(&image)).unwrap();
        let (mut ch, _) =
            signer::gp::open_issuer_channel(&mut t, &issuer, master, Scheme::Emv).unwrap();
        let purse = install(PURSE_PACKAGE, PURSE_MODULE, PURSE, &[0x00]);
        ch.send_ok(&purse.to_apdu().unwrap(), "purse").unwrap();
        let ex = InstallForExtradition {
            sd_aid: h(SSD),
            aid: h(PURSE),
            parameters: Vec::new(),
            token: Vec::new(),
        };
        ch.send_ok(&ex.to_apdu().unwrap(), "extradition").unwrap();
    }

    let put_keys = |extra: &[&str]| {
        let mut c = w.hsm.tool("signer");
        c.args(["sd", "put-keys", "--card", &card, "--sd", SSD])
            .args(["--pin-source", &pin_source(), "--ledger", &ledger])
            .args(extra);
        c
    };
    let channel_args = [
        "--channel-master",
        &vendor_key("ssd-kmc"),
        "--channel-scheme",
        "aes",
    ];
    let dap_args = [
        "--dap-master",
        &vendor_key("dap-master"),
        "--diversify",
        "aes",
    ];

    // Nothing to put is a usage error; --dry-run names every step and touches nothing.
    let err = fails(&mut put_keys(&[]));
    assert!(err.contains("--channel-master"), "{err}");
    let dry = ok(put_keys(&[&channel_args[..], &dap_args[..]].concat()).arg("--dry-run"));
    assert!(
        dry.contains("would derive the card's ENC, MAC, DEK in the token from 'ssd-kmc' (aes)")
            && dry.contains("replacing its transport key set")
            && dry.contains("GET DATA 00E0"),
        "{dry}"
    );

    // The SSD still has its transport key set: app personalise with the per-card keys cannot open it.
    std::fs::write(
        w.hsm.path("purse.hex"),
        "DF01 04 000186A0\nDF02 04 00000064\nDF03 02 4001\n",
    )
    .unwrap();
    let personalise = |master: &str| {
        let mut c = w.hsm.tool("signer");
        c.args([
            "app",
            "personalise",
            "--card",
            &card,
            "--sd",
            SSD,
            "--app",
            PURSE,
        ])
        .args(["--data", &w.p("purse.hex"), "--master", &vendor_key(master)])
        .args(["--scheme", "aes", "--pin-source", &pin_source()]);
        c
    };
    let err = fails(&mut personalise("ssd-kmc"));
    assert!(err.contains("cryptogram"), "{err}");

    // The vendor's put-keys: DAP key 73, then key set 01 replacing the transport set, KCVs confirmed.
    let out = ok(&mut put_keys(&[&channel_args[..], &dap_args[..]].concat()));
    let ssd_master = vendor.find_secret_key("ssd-kmc").unwrap();
    let kdd: [u8; 10] = h(KDD_A).try_into().unwrap();
    let expected = signer::diversify::derive_card_keys(
        &vendor,
        ssd_master,
        Scheme::Aes,
        &kdd,
        SecretKeyType::Aes128,
        signer::diversify::Purpose::Check,
    )
    .unwrap();
    assert!(
        out.contains(&format!(
            "card {KDD_A}: security domain {SSD}, SCP03 with its key set 30"
        )) && out.contains("KVN 73 key 01")
            && out.contains("confirmed by the card")
            && out
                .contains("key set 30 replaced by 01 from 'ssd-kmc' (aes), confirmed by the card"),
        "{out}"
    );
    for (name, key) in [
        ("ENC", &expected.enc),
        ("MAC", &expected.mac),
        ("DEK", &expected.dek),
    ] {
        let kcv = hex::encode_upper(vendor.kcv(key.handle()).unwrap().value);
        assert!(out.contains(&format!("{name} KCV {kcv}")), "{name}: {out}");
    }

    // Another run opens with the per-card keys and refuses KVN 73 before sending any key…
    let err = fails(&mut put_keys(&[&channel_args[..], &dap_args[..]].concat()));
    assert!(
        err.contains("already holds KVN 73") && err.contains("--replace"),
        "{err}"
    );
    // …and replaces it when told to; the key set stays as it is.
    let out = ok(put_keys(&[&channel_args[..], &dap_args[..]].concat()).arg("--replace"));
    assert!(
        out.contains("SCP03 with its key set 01")
            && out.contains("KVN 73 key 01")
            && out.contains("replaced, confirmed by the card")
            && out.contains("key set 01 from 'ssd-kmc' (aes) already in place"),
        "{out}"
    );
    // Without the channel master, the transport keys no longer open the SSD.
    let err = fails(&mut put_keys(&dap_args));
    assert!(err.contains("--channel-master"), "{err}");

    // The purse's credit key goes in under the SSD's new DEK; then app personalise works through the SSD.
    {
        let mut t = SimTransport::open(std::path::Path::new(&image)).unwrap();
        let (mut ch, kdd) =
            signer::gp::open_domain_channel(&mut t, &vendor, &h(SSD), ssd_master, Scheme::Aes)
                .unwrap();
        let dek = derive_one(
            &vendor,
            ssd_master,
            Scheme::Aes,
            &kdd,
            KeyRole::Dek,
            SecretKeyType::Aes128,
            &[Usage::Wrap],
            false,
        )
        .unwrap();
        let purse_key = vendor.find_secret_key("purse-credit").unwrap();
        let wrapped = vendor.wrap_cbc_zero_iv(dek.handle(), purse_key).unwrap();
        let put = PutKey {
            new_kvn: 0x40,
            keys: vec![KeyData {
                components: vec![KeyComponent {
                    key_type: KEY_TYPE_AES,
                    block: [&[16u8][..], &wrapped].concat(),
                }],
                kcv: vendor.kcv(purse_key).unwrap().value.to_vec(),
            }],
        };
        ch.send_ok(&put.to_apdu(0, 1).unwrap(), "PUT KEY 40")
            .unwrap();
    }
    assert_eq!(balance(&image), [0x69, 0x85]);
    let err = fails(&mut personalise("other-ssd-kmc"));
    assert!(err.contains("cryptogram"), "{err}");
    let out = ok(&mut personalise("ssd-kmc"));
    assert!(out.contains("encrypted under the SD's DEK"), "{out}");
    assert_eq!(balance(&image), [0, 0, 0, 100, 0, 0, 0, 0, 0x90, 0x00]);

    ok(&mut w.verify_ledger(&issuer_ledger, "issuer"));
    let verified = ok(&mut w.verify_ledger(&ledger, "vendor"));
    assert!(verified.contains("chain intact"), "{verified}");
}
