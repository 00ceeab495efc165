//! The signer on a second, independent PKCS#11 implementation: NSS softokn, started by `--module` and
//! `--module-init` (or `$PKCS11_MODULE` / `$PKCS11_MODULE_INIT`). A representative path end to end: masters
//! formed from components by a keyman ceremony in the NSS key database, a card personalised with `kdf3`
//! per-card keys derived inside NSS (SP 800-108, which SoftHSM2 lacks), a package with per-card AES DAPs
//! and an RSA DAP signed by NSS, and its deployment to the card. The full SoftHSM2 suite covers every other
//! option; this file keeps the NSS share of CI small.

use postissue_tests::{fails, ok, NssDb, NSS_MODULE, NSS_TOKEN, PIN_VAR};

fn pin_source() -> String {
    format!("env:{PIN_VAR}")
}

fn token() -> String {
    format!("pkcs11:token={}", NSS_TOKEN.replace(' ', "%20"))
}

fn key(label: &str) -> String {
    format!("{};object={label}", token())
}

/// Two AES masters formed from custodians' components in the NSS token (NSS keeps no check value, so
/// generated derive-only keys would have no KCV to show; components give one). The issuer master is
/// extractable: NSS derives extractable keys (which PUT KEY sends wrapped) only from an extractable base.
fn masters(nss: &NssDb) {
    let script = format!(
        r#"Ceremony(
    version: 1,
    name: "nss-masters",
    purpose: "AES masters for kdf3 per-card keys and DAPs",
    tokens: [Token(name: "issuer", uri: "{}")],
    roles: [
        Role(name: "officer", kind: Officer),
        Role(name: "custodian-a", kind: Custodian),
        Role(name: "custodian-b", kind: Custodian),
        Role(name: "witness", kind: Witness),
    ],
    steps: [
        FormKey(
            label: "isd-kmc-aes", id: "0111", key_type: Aes128, usages: [Derive], extractable: true,
            components: [Component(custodian: "custodian-a"), Component(custodian: "custodian-b")],
            token: "issuer", performed_by: ["officer"], witnessed_by: ["witness"],
        ),
        FormKey(
            label: "dap-master", id: "0112", key_type: Aes128, usages: [Derive],
            components: [Component(custodian: "custodian-a"), Component(custodian: "custodian-b")],
            token: "issuer", performed_by: ["officer"], witnessed_by: ["witness"],
        ),
        FormKey(
            label: "lfdb-cipher", id: "0113", key_type: Aes128, usages: [Encrypt, Decrypt],
            components: [Component(custodian: "custodian-a"), Component(custodian: "custodian-b")],
            token: "issuer", performed_by: ["officer"], witnessed_by: ["witness"],
        ),
        GenerateKeyPair(label: "dap-ec", id: "0114", key_type: EcP256, usages: [Sign],
            performed_by: ["officer"], witnessed_by: ["witness"]),
    ],
)"#,
        token()
    );
    std::fs::write(nss.path("masters.ron"), script).unwrap();
    let mut answers = String::new();
    for k in ["isd-kmc-aes", "dap-master", "lfdb-cipher"] {
        for (i, c) in [
            "00112233445566778899AABBCCDDEEFF",
            "0F1E2D3C4B5A69788796A5B4C3D2E1F0",
        ]
        .iter()
        .enumerate()
        {
            answers.push_str(&format!("component/issuer/{k}/{} = {c}\n", i + 1));
            answers.push_str(&format!("kcv-ok/issuer/{k}/{} = yes\n", i + 1));
        }
    }
    let answers_path = nss.path("answers.txt");
    std::fs::write(&answers_path, answers).unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut std::fs::metadata(&answers_path).unwrap().permissions(),
        0o600,
    );
    std::fs::set_permissions(
        &answers_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    ok(nss
        .tool("keyman")
        .args(["ceremony", "run"])
        .arg(nss.path("masters.ron"))
        .args(["--ledger", "masters.jsonl", "--pin-source", &pin_source()])
        .arg("--answers")
        .arg(format!("file:{}", answers_path.display())));
    // An RSA DAP key pair generated in the token.
    let dap = std::fs::read_to_string(postissue_tests::root().join("ceremonies/dap-keypair.ron"))
        .unwrap()
        .replace(
            "uri: \"pkcs11:token=vendor\"",
            &format!("uri: \"{}\"", token()),
        );
    std::fs::write(nss.path("dap.ron"), dap).unwrap();
    ok(nss
        .tool("keyman")
        .args(["ceremony", "run"])
        .arg(nss.path("dap.ron"))
        .args(["--ledger", "dap.jsonl", "--pin-source", &pin_source()]));
}

#[test]
fn kdf3_personalisation_per_card_daps_and_deploy_on_nss() {
    let nss = NssDb::new();
    masters(&nss);
    let p = |n: &str| nss.path(n).display().to_string();
    let kdd = "00010203040506070809";
    ok(nss
        .tool("card-sim")
        .args(["new", "--image", &p("card.img"), "--kdd", kdd]));
    // Personalisation: the fab's transport keys replaced by kdf3 keys derived inside NSS, through the
    // global --module / --module-init instead of the environment.
    ok(nss
        .tool("signer")
        .env_remove("PKCS11_MODULE")
        .env_remove("PKCS11_MODULE_INIT")
        .args(["--module", NSS_MODULE, "--module-init", &nss.init_string()])
        .args(["personalise", "--card", &format!("sim:{}", p("card.img"))])
        .args(["--master", &key("isd-kmc-aes"), "--scheme", "kdf3"])
        .args(["--pin-source", &pin_source()]));
    // The tool says which mechanism derived the keys.
    let derived = ok(nss
        .tool("signer")
        .args([
            "keys",
            "derive",
            "--master",
            &key("isd-kmc-aes"),
            "--scheme",
            "kdf3",
        ])
        .args(["--kdd", kdd, "--pin-source", &pin_source()]));
    assert!(
        derived.contains("mechanism     CKM_SP800_108_COUNTER_KDF (derive), CKM_AES_CMAC (sign)"),
        "{derived}"
    );
    std::fs::write(p("cards.csv"), format!("identity,kdd\ncard-a,{kdd}\n")).unwrap();
    ok(nss.tool("demo-cap").arg(nss.path("hello.cap")));
    let out = ok(nss
        .tool("signer")
        .args(["package", &p("hello.cap"), "--out", &p("hello.pkg")])
        .args(["--dap", "aes", "--dap-key", &key("dap-master")])
        .args(["--cards", &p("cards.csv"), "--diversify", "kdf3"])
        .args(["--pin-source", &pin_source()]));
    assert!(out.contains("1 x aes-cmac by 'dap-master'"), "{out}");
    let rsa = ok(nss
        .tool("signer")
        .args(["package", &p("hello.cap"), "--out", &p("hello-rsa.pkg")])
        .args(["--dap", "rsa", "--dap-key", &key("ssd-dap-rsa")])
        .args(["--pin-source", &pin_source()]));
    assert!(rsa.contains("by 'ssd-dap-rsa'"), "{rsa}");
    // An ECDSA P-256 DAP and a ciphered LFDB, both made by NSS, checked again offline with the token.
    let ec = ok(nss
        .tool("signer")
        .args(["package", &p("hello.cap"), "--out", &p("hello-ec.pkg")])
        .args(["--dap", "ecdsa", "--dap-key", &key("dap-ec")])
        .args(["--encrypt", "--cipher-key", &key("lfdb-cipher")])
        .args(["--pin-source", &pin_source()]));
    assert!(ec.contains("by 'dap-ec'"), "{ec}");
    let checked = ok(nss
        .tool("signer")
        .args(["verify", &p("hello-ec.pkg"), "--dap-key", &key("dap-ec")])
        .args([
            "--cipher-key",
            &key("lfdb-cipher"),
            "--pin-source",
            &pin_source(),
        ]));
    assert!(checked.contains("verified with"), "{checked}");
    assert!(
        ok(nss.tool("signer").args(["inspect", &p("hello-ec.pkg")])).contains("ecdsa-p256-sha256"),
        "inspect"
    );
    let deployed = ok(nss
        .tool("signer")
        .args([
            "deploy",
            &p("hello.pkg"),
            "--card",
            &format!("sim:{}", p("card.img")),
        ])
        .args(["--master", &key("isd-kmc-aes"), "--scheme", "kdf3"])
        .args(["--pin-source", &pin_source()]));
    // The card domain's channel ran with its session keys inside NSS.
    assert!(
        deployed.contains(
            "session keys  SCP03 session keys in the token (CKM_SP800_108_COUNTER_KDF; MACs and \
             encryption by the token)"
        ),
        "{deployed}"
    );
    let registry = ok(nss
        .tool("signer")
        .args(["card", "list", "--card", &format!("sim:{}", p("card.img"))])
        .args(["--master", &key("isd-kmc-aes"), "--scheme", "kdf3"])
        .args(["--pin-source", &pin_source()]));
    assert!(
        registry
            .lines()
            .any(|l| l.starts_with("APP") && l.contains("A00000064750490101")),
        "{registry}"
    );
    // The same card through the emv scheme: NSS's key database token offers no 3DES derivation, and the
    // user is told exactly that.
    let err = fails(
        nss.tool("signer")
            .args(["card", "list", "--card", &format!("sim:{}", p("card.img"))])
            .args(["--master", &key("isd-kmc-aes"), "--scheme", "emv"])
            .args(["--pin-source", &pin_source()]),
    );
    assert!(err.contains("derive-emv"), "{err}");
}
