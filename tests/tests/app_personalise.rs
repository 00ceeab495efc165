//! Application personalisation through the application's security domain (flow 5), through the real
//! tools: the card's built-in purse, associated with a vendor SSD, is personalised by `signer app
//! personalise` with INSTALL [for personalization] and STORE DATA blocks encrypted under the SSD's DEK
//! inside the vendor's token; the purse then answers with the personalised balance. A wrong vendor key
//! and a malformed data file change nothing.
//!
//! One test function: the PKCS#11 module is initialised once per process, with the first token store.

mod common;

use common::*;
use gp_core::commands::put_key::{KeyComponent, KeyData, PutKey, KEY_TYPE_AES};
use gp_core::commands::InstallForExtradition;
use gp_core::diversify::{KeyRole, Scheme};
use keyman::hsm::{SecretKeyType, TokenSession, Usage};
use postissue_tests::{fails, ok};
use signer::diversify::derive_one;
use signer::transport::SimTransport;

const SSD: &str = "A0000001515350410001";
const PURSE_PACKAGE: &str = "F05055525345";
const PURSE_MODULE: &str = "F0505552534501";
const PURSE: &str = "F050555253450101";

/// The issuer creates the SSD and the purse and extradites the purse to the SSD; the vendor replaces
/// the SSD's transport keys with the card's own keys from `ssd-kmc` and puts the purse's credit key
/// (KVN 40) wrapped under the new DEK.
fn setup(image: &str, issuer: &TokenSession<'_>, vendor: &TokenSession<'_>) {
    let master = issuer.find_secret_key("isd-kmc").unwrap();
    let mut t = SimTransport::open(std::path::Path::new(image)).unwrap();
    {
        let (mut ch, _) =
            signer::gp::open_issuer_channel(&mut t, issuer, master, Scheme::Emv).unwrap();
        for (cmd, what) in [
            (install(SD_PACKAGE, SD_MODULE, SSD, &[0x80, 0, 0]), "SSD"),
            (
                install(PURSE_PACKAGE, PURSE_MODULE, PURSE, &[0x00]),
                "purse",
            ),
        ] {
            ch.send_ok(&cmd.to_apdu().unwrap(), what).unwrap();
        }
        let ex = InstallForExtradition {
            sd_aid: h(SSD),
            aid: h(PURSE),
            parameters: Vec::new(),
            token: Vec::new(),
        };
        ch.send_ok(&ex.to_apdu().unwrap(), "extradition").unwrap();
    }
    replace_ssd_transport_keys(&mut t, vendor, &h(SSD));
    let ssd_master = vendor.find_secret_key("ssd-kmc").unwrap();
    let (mut ch, kdd) =
        signer::gp::open_domain_channel(&mut t, vendor, &h(SSD), ssd_master, Scheme::Aes).unwrap();
    let new_dek = derive_one(
        vendor,
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
    let put = PutKey {
        new_kvn: 0x40,
        keys: vec![KeyData {
            components: vec![KeyComponent {
                key_type: KEY_TYPE_AES,
                block: [
                    &[16u8][..],
                    &vendor
                        .wrap_cbc_zero_iv(new_dek.handle(), purse_key)
                        .unwrap(),
                ]
                .concat(),
            }],
            kcv: vendor.kcv(purse_key).unwrap().value.to_vec(),
        }],
    };
    ch.send_ok(&put.to_apdu(0, 1).unwrap(), "PUT KEY 40")
        .unwrap();
}

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
fn the_purse_is_personalised_through_its_security_domain() {
    let w = World::new();
    let hsm = load_module(&w.hsm);
    let issuer = open_token(&hsm, "pkcs11:token=issuer");
    let vendor = open_token(&hsm, "pkcs11:token=vendor");
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
    let image = w.card("a", KDD_A);
    setup(&image, &issuer, &vendor);
    // Not personalised: the purse refuses to work.
    assert_eq!(balance(&image), [0x69, 0x85]);

    std::fs::write(
        w.hsm.path("purse.hex"),
        "# the purse's personalisation\nDF01 04 000186A0  # maximum balance 100000\n\
         DF02 04 00000064  # initial balance 100\nDF03 02 4001     # credit key: KVN 40, id 01\n",
    )
    .unwrap();
    std::fs::write(w.hsm.path("bad.hex"), "DF01 04 0001\n").unwrap();
    w.new_ledger("perso.jsonl", "vendor");
    let personalise = |data: &str, master: &str| {
        let mut c = w.hsm.tool("signer");
        c.args([
            "app",
            "personalise",
            "--card",
            &format!("sim:{image}"),
            "--sd",
            SSD,
            "--app",
            PURSE,
            "--data",
            &w.p(data),
            "--master",
            &vendor_key(master),
            "--scheme",
            "aes",
            "--ledger",
            &w.p("perso.jsonl"),
            "--pin-source",
            &pin_source(),
        ]);
        c
    };
    // A malformed data file is refused before the card is reached.
    let err = fails(&mut personalise("bad.hex", "ssd-kmc"));
    assert!(err.contains("truncated"), "{err}");
    // Another vendor's key does not open the SSD.
    let err = fails(&mut personalise("purse.hex", "other-ssd-kmc"));
    assert!(err.contains("cryptogram"), "{err}");
    assert_eq!(balance(&image), [0x69, 0x85]);

    let out = ok(&mut personalise("purse.hex", "ssd-kmc"));
    assert!(
        out.contains("encrypted under the SD's DEK") && out.contains("1 STORE DATA block"),
        "{out}"
    );
    assert_eq!(balance(&image), [0, 0, 0, 100, 0, 0, 0, 0, 0x90, 0x00]);
    let registry = w.registry(&image);
    assert!(
        registry
            .lines()
            .any(|l| l.contains(PURSE) && l.contains(" 0F ") && l.contains(&format!("sd {SSD}"))),
        "{registry}"
    );
    let verified = ok(&mut w.verify_ledger(&w.p("perso.jsonl"), "vendor"));
    assert!(verified.contains("chain intact"), "{verified}");
}
