//! More of the HSM paths on NSS softokn, the second PKCS#11 implementation: delegated-management tokens
//! signed in NSS with the card's receipts checked by NSS, ledger anchoring (which NSS refuses, with the
//! reason, before anything changes), personalisation batches, the vendor's SSD flow, application
//! personalisation through an SSD, card key rotation, 3DES DAPs and ciphered LFDBs, and the admin
//! server's remote sessions. Every key is in the NSS key database (`NSS Certificate DB`); per-card keys
//! are `kdf3` (SP 800-108 in the token), and where a path needs a mechanism NSS's key database token
//! lacks, the test asserts the exact line the user gets.

mod common;
mod remote_common;

use postissue_tests::{fails, ok, NssDb, NSS_MODULE, NSS_TOKEN, PIN_VAR};

const ISD: &str = "A000000151000000";
const SSD: &str = "A0000001515350410001";
const APPLET: &str = "A00000064750490101";
const KDD_A: &str = "00010203040506070809";
const KDD_B: &str = "0102030405060708090A";

fn pin_source() -> String {
    format!("env:{PIN_VAR}")
}

fn token() -> String {
    format!("pkcs11:token={}", NSS_TOKEN.replace(' ', "%20"))
}

fn key(label: &str) -> String {
    format!("{};object={label}", token())
}

/// The line NSS's key database token gives for the `aes` derivation scheme, which needs
/// `CKM_AES_ECB_ENCRYPT_DATA`.
const NO_DERIVE_AES: &str =
    "cannot do derive-aes: it lacks CKM_AES_ECB_ENCRYPT_DATA (derive); nothing \
                             is done outside the token instead";

/// The keys of both parties in the NSS key database, formed from custodians' components (so each has a
/// KCV: NSS keeps none for generated keys). Masters whose per-card keys go to cards by PUT KEY are
/// extractable: NSS derives an extractable key only from an extractable base. The token signing key of
/// delegated management is an EC P-256 key pair generated in NSS.
fn keys(nss: &NssDb) {
    let form = |label: &str, id: &str, usages: &str| {
        let key_type = if label.ends_with("-des") {
            "Des3TwoKey"
        } else {
            "Aes128"
        };
        format!(
            r#"FormKey(
            label: "{label}", id: "{id}", key_type: {key_type}, usages: [{usages}], extractable: true,
            components: [Component(custodian: "custodian-a"), Component(custodian: "custodian-b")],
            token: "issuer", performed_by: ["officer"], witnessed_by: ["witness"],
        ),"#
        )
    };
    let formed = [
        ("isd-kmc-aes", "0111", "Derive"),
        ("isd-kmc-next", "0121", "Derive"),
        ("receipt-master", "0171", "Derive"),
        ("ssd-kmc", "0151", "Derive"),
        ("dap-master", "0112", "Derive"),
        ("lfdb-cipher", "0113", "Encrypt, Decrypt"),
        ("dap-master-des", "0114", "Derive"),
        ("lfdb-cipher-des", "0115", "Encrypt, Decrypt"),
    ];
    let steps: String = formed.iter().map(|(l, i, u)| form(l, i, u)).collect();
    let script = format!(
        r#"Ceremony(
    version: 1,
    name: "nss-keys",
    purpose: "issuer and vendor keys for delegated management, batches and SSDs on NSS",
    tokens: [Token(name: "issuer", uri: "{}")],
    roles: [
        Role(name: "officer", kind: Officer),
        Role(name: "custodian-a", kind: Custodian),
        Role(name: "custodian-b", kind: Custodian),
        Role(name: "witness", kind: Witness),
    ],
    steps: [
        {steps}
        GenerateKeyPair(label: "dm-token", id: "0701", key_type: EcP256, usages: [Sign],
            performed_by: ["officer"], witnessed_by: ["witness"]),
        GenerateKeyPair(label: "dm-token-rsa", id: "0702", key_type: Rsa2048, usages: [Sign],
            performed_by: ["officer"], witnessed_by: ["witness"]),
    ],
)"#,
        token()
    );
    std::fs::write(nss.path("keys.ron"), script).unwrap();
    let mut answers = String::new();
    for (k, _, _) in formed {
        for (i, c) in [
            "00112233445566778899AABBCCDDEEFF",
            "0F1E2D3C4B5A69788796A5B4C3D2E1F0",
        ]
        .iter()
        .enumerate()
        {
            // Distinct keys: the last byte of the first component names the key.
            let c = if i == 0 {
                format!("{}{:02X}", &c[..30], k.len() as u8 ^ k.as_bytes()[0])
            } else {
                c.to_string()
            };
            answers.push_str(&format!("component/issuer/{k}/{} = {c}\n", i + 1));
            answers.push_str(&format!("kcv-ok/issuer/{k}/{} = yes\n", i + 1));
        }
    }
    let answers_path = nss.path("answers.txt");
    std::fs::write(&answers_path, answers).unwrap();
    std::fs::set_permissions(
        &answers_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    ok(nss
        .tool("keyman")
        .args(["ceremony", "run"])
        .arg(nss.path("keys.ron"))
        .args(["--ledger", "keys.jsonl", "--pin-source", &pin_source()])
        .arg("--answers")
        .arg(format!("file:{}", answers_path.display())));
}

/// A path in the database's directory, as a string.
fn p(nss: &NssDb, name: &str) -> String {
    nss.path(name).display().to_string()
}

/// A card personalised with kdf3 keys derived in NSS from the issuer's master.
fn card(nss: &NssDb, name: &str, kdd: &str) -> String {
    let image = p(nss, &format!("{name}.img"));
    ok(nss
        .tool("card-sim")
        .args(["new", "--image", &image, "--kdd", kdd]));
    ok(nss
        .tool("signer")
        .args(["personalise", "--card", &format!("sim:{image}")])
        .args(["--master", &key("isd-kmc-aes"), "--scheme", "kdf3"])
        .args(["--pin-source", &pin_source()]));
    image
}

/// `signer card SUB --card sim:IMAGE` through the card domain, keys from NSS (kdf3).
fn card_cmd(nss: &NssDb, sub: &str, image: &str) -> std::process::Command {
    let mut c = nss.tool("signer");
    c.args(["card", sub, "--card", &format!("sim:{image}")])
        .args(["--master", &key("isd-kmc-aes"), "--scheme", "kdf3"])
        .args(["--pin-source", &pin_source()]);
    c
}

fn registry(nss: &NssDb, image: &str) -> String {
    ok(&mut card_cmd(nss, "list", image))
}

/// What keyman says when NSS refuses a ledger anchor.
const ANCHOR_REFUSED: &str = "token 'NSS Certificate DB' refuses private token data objects, so it \
                              cannot hold a ledger anchor (NSS softokn is such a token); anchor the \
                              ledger in a token that keeps them (SoftHSM2, most HSMs)";

#[test]
fn nss_refuses_to_anchor_a_ledger_and_says_why() {
    let nss = NssDb::new();
    let ledger = p(&nss, "anchored.jsonl");
    let err = fails(nss.tool("keyman").args([
        "ledger",
        "init",
        &ledger,
        "--token",
        NSS_TOKEN,
        "--pin-source",
        &pin_source(),
    ]));
    assert_eq!(
        err,
        "keyman: error: the token cannot do this: token 'NSS Certificate DB' refuses private token data \
         objects, so it cannot hold a ledger anchor (NSS softokn is such a token); anchor the ledger in \
         a token that keeps them (SoftHSM2, most HSMs)"
    );
    // Nothing is left behind: no ledger without its anchor.
    assert!(!nss.path("anchored.jsonl").exists());
    // An existing ledger (a ceremony's) cannot be anchored there either, and stays as it was.
    keys(&nss);
    let ledger = nss.path("work/keys.jsonl");
    let before = std::fs::read(&ledger).unwrap();
    let err = fails(nss.tool("keyman").args([
        "ledger",
        "anchor",
        "keys.jsonl",
        "--token",
        NSS_TOKEN,
        "--pin-source",
        &pin_source(),
    ]));
    assert!(err.ends_with(ANCHOR_REFUSED), "{err}");
    assert_eq!(std::fs::read(&ledger).unwrap(), before);
    let err = fails(
        nss.tool("keyman")
            .args(["ledger", "verify", "keys.jsonl", "--token", NSS_TOKEN])
            .args(["--pin-source", &pin_source()]),
    );
    assert_eq!(
        err,
        "keyman: error: keys.jsonl: token 'NSS Certificate DB' holds no anchor for this ledger; create \
         ledgers with `keyman ledger init` (or anchor a ceremony's new ledger with `keyman ledger anchor`) \
         in the token that appends to them"
    );
    let dap = std::fs::read_to_string(postissue_tests::root().join("ceremonies/dap-keypair.ron"))
        .unwrap()
        .replace(
            "uri: \"pkcs11:token=vendor\"",
            &format!("uri: \"{}\"", token()),
        );
    std::fs::write(nss.path("dap.ron"), dap).unwrap();
    let out = nss
        .tool("keyman")
        .args(["ceremony", "run"])
        .arg(nss.path("dap.ron"))
        .args(["--ledger", "dap.jsonl", "--pin-source", &pin_source()])
        .args(["--anchor-token", "vendor"])
        .output()
        .unwrap();
    // A ceremony told to anchor its new ledger there is refused before any step: no key made, no
    // ledger left; the same ceremony without the anchor then runs.
    assert!(!out.status.success());
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("step 1"),
        "{out:?}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .trim()
            .ends_with(ANCHOR_REFUSED),
        "{out:?}"
    );
    assert!(!nss.path("work/dap.jsonl").exists());
    let made = ok(nss
        .tool("keyman")
        .args(["ceremony", "run"])
        .arg(nss.path("dap.ron"))
        .args(["--ledger", "dap.jsonl", "--pin-source", &pin_source()]));
    assert!(
        made.contains("step 1: generated RSA-2048 key pair 'ssd-dap-rsa'"),
        "{made}"
    );
    let image = p(&nss, "l.img");
    ok(nss
        .tool("card-sim")
        .args(["new", "--image", &image, "--kdd", KDD_A]));
    // A tool recording into a ledger in NSS is refused before the card changes: the card still has its
    // transport keys, which the same personalisation without the ledger then replaces.
    let perso = || {
        let mut c = nss.tool("signer");
        c.args(["personalise", "--card", &format!("sim:{image}")])
            .args(["--master", &key("isd-kmc-aes"), "--scheme", "kdf3"])
            .args(["--pin-source", &pin_source()]);
        c
    };
    let err = fails(perso().args(["--ledger", "keys.jsonl"]));
    assert_eq!(
        err,
        "signer: error: ledger: keys.jsonl: token 'NSS Certificate DB' holds no anchor for this ledger; \
         create ledgers with `keyman ledger init` (or anchor a ceremony's new ledger with `keyman ledger \
         anchor`) in the token that appends to them"
    );
    ok(&mut perso());
}

/// The vendor's Delegated Management SSD with its per-card channel keys (kdf3, derived in NSS from
/// `ssd-kmc` and put by `signer sd put-keys --channel-master`), then the issuer's token verification key
/// and the card's receipt key put by `signer token put-keys`.
fn delegated_card(nss: &NssDb, name: &str, kdd: &str) -> String {
    let image = card(nss, name, kdd);
    let out = ok(card_cmd(nss, "create-sd", &image).args([
        "--sd",
        SSD,
        "--privileges",
        "delegated-management",
        "--scp",
        "03",
    ]));
    assert!(
        out.contains(&format!("security domain {SSD} created")),
        "{out}"
    );
    let out = ok(nss.tool("signer").args([
        "sd",
        "put-keys",
        "--card",
        &format!("sim:{image}"),
        "--sd",
        SSD,
        "--channel-master",
        &key("ssd-kmc"),
        "--channel-scheme",
        "kdf3",
        "--pin-source",
        &pin_source(),
    ]));
    assert!(out.contains("confirmed by the card"), "{out}");
    image
}

/// The key information template (GET DATA `00E0`, no secure channel needed) of the security domain
/// `aid`, read from the card image: which key versions it holds.
fn key_information(image: &str, aid: &str) -> Vec<u8> {
    use signer::transport::Transport;
    let mut t = signer::transport::SimTransport::open(std::path::Path::new(image)).unwrap();
    let select = hex::decode(format!("00A40400{:02X}{aid}", aid.len() / 2)).unwrap();
    assert!(t.transmit_raw(&select).unwrap().ends_with(&[0x90, 0x00]));
    let info = t.transmit_raw(&[0x80, 0xCA, 0x00, 0xE0, 0x00]).unwrap();
    assert!(
        info.ends_with(&[0x90, 0x00]),
        "{}",
        hex::encode_upper(&info)
    );
    info
}

fn put_dm_keys(
    nss: &NssDb,
    image: &str,
    token_key: &str,
    receipt_scheme: &str,
) -> std::process::Command {
    let mut c = nss.tool("signer");
    c.args(["token", "put-keys", "--card", &format!("sim:{image}")])
        .args(["--master", &key("isd-kmc-aes"), "--scheme", "kdf3"])
        .args(["--token-key", &key(token_key)])
        .args(["--receipt-master", &key("receipt-master")])
        .args(["--receipt-scheme", receipt_scheme])
        .args(["--pin-source", &pin_source()]);
    c
}

fn delegated_deploy(nss: &NssDb, image: &str, tokens: &str) -> std::process::Command {
    let mut c = nss.tool("signer");
    c.args([
        "deploy",
        &p(nss, "hello.pkg"),
        "--card",
        &format!("sim:{image}"),
    ])
    .args(["--master", &key("ssd-kmc"), "--scheme", "kdf3", "--sd", SSD])
    .args(["--tokens", &p(nss, tokens)])
    .args(["--receipt-master", &key("receipt-master")])
    .args(["--receipt-scheme", "kdf3", "--pin-source", &pin_source()]);
    c
}

#[test]
fn delegated_management_tokens_signed_and_receipts_checked_in_nss() {
    let nss = NssDb::new();
    keys(&nss);
    let image = delegated_card(&nss, "a", KDD_A);
    // The receipt key derived by the `aes` scheme needs CKM_AES_ECB_ENCRYPT_DATA: refused before the card
    // changes.
    let keys_before = key_information(&image, ISD);
    let err = fails(&mut put_dm_keys(&nss, &image, "dm-token", "aes"));
    assert!(err.ends_with(NO_DERIVE_AES), "{err}");
    assert_eq!(key_information(&image, ISD), keys_before, "no key was put");
    let put = ok(&mut put_dm_keys(&nss, &image, "dm-token", "kdf3"));
    assert!(
        put.contains("KVN 70") && put.contains("ecdsa-p256-sha256"),
        "{put}"
    );
    assert!(put.contains("KVN 71") && put.contains("KCV"), "{put}");

    ok(nss.tool("demo-cap").arg(nss.path("hello.cap")));
    ok(nss.tool("signer").args([
        "package",
        &p(&nss, "hello.cap"),
        "--out",
        &p(&nss, "hello.pkg"),
    ]));
    let issue = |sub: &str, token_key: &str, out: &str| {
        ok(nss.tool("signer").args([
            "token",
            sub,
            &p(&nss, "hello.pkg"),
            "--sd",
            SSD,
            "--token-key",
            &key(token_key),
            "--out",
            &p(&nss, out),
            "--pin-source",
            &pin_source(),
        ]))
    };
    let issued = issue("load", "dm-token", "hello.tokens");
    assert!(
        issued.contains("install-for-load") && issued.contains(APPLET),
        "{issued}"
    );
    let combined = issue("combined", "dm-token-rsa", "combined.tokens");
    assert!(
        combined.contains("install-for-load-install-and-make-selectable P1 0E P2 03")
            && combined.contains("rsa-pss-sha256"),
        "{combined}"
    );
    let deleted = ok(nss.tool("signer").args([
        "token",
        "delete",
        "--aid",
        APPLET,
        "--sd",
        SSD,
        "--token-key",
        &key("dm-token"),
        "--out",
        &p(&nss, "delete.tokens"),
        "--pin-source",
        &pin_source(),
    ]));
    // The DELETE token: an ECDSA P-256 signature (r ‖ s) made by NSS.
    let line = deleted
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!(
                "delete        P1 00 P2 00 data 4F09{APPLET} token "
            ))
        })
        .unwrap_or_else(|| panic!("{deleted}"));
    assert!(
        line.len() == 128 && line.bytes().all(|b| b.is_ascii_hexdigit()),
        "{deleted}"
    );
    // A token changed by one digit: the card refuses it (the NSS signature no longer verifies).
    let text = std::fs::read_to_string(nss.path("hello.tokens")).unwrap();
    let at = text.find("\"token\": \"").unwrap() + 10;
    let mut forged = text.into_bytes();
    forged[at] = if forged[at] == b'0' { b'1' } else { b'0' };
    std::fs::write(nss.path("forged.tokens"), forged).unwrap();
    let before = registry(&nss, &image);
    let err = fails(&mut delegated_deploy(&nss, &image, "forged.tokens"));
    assert!(err.contains("6982"), "{err}");
    assert_eq!(registry(&nss, &image), before);
    // The genuine tokens: load and install through the SSD, each receipt checked with the card's receipt
    // key derived in NSS.
    let out = ok(&mut delegated_deploy(&nss, &image, "hello.tokens"));
    assert_eq!(
        out.matches("verified with the card's receipt key").count(),
        2,
        "{out}"
    );
    let after = registry(&nss, &image);
    assert!(
        after.lines().any(|l| l.starts_with("APP")
            && l.contains(APPLET)
            && l.contains(&format!("sd {SSD}"))),
        "{after}"
    );
    // A second card checks tokens with the RSA-2048 key (PSS SHA-256 tokens signed by NSS): the ECDSA
    // tokens are refused, the combined process with the RSA token passes, its one receipt checked.
    let image_b = delegated_card(&nss, "b", KDD_B);
    ok(&mut put_dm_keys(&nss, &image_b, "dm-token-rsa", "kdf3"));
    let before_b = registry(&nss, &image_b);
    let err = fails(&mut delegated_deploy(&nss, &image_b, "hello.tokens"));
    assert!(err.contains("6982"), "{err}");
    assert_eq!(registry(&nss, &image_b), before_b);
    let out = ok(&mut delegated_deploy(&nss, &image_b, "combined.tokens"));
    assert!(
        out.contains("verified with the card's receipt key"),
        "{out}"
    );
    assert!(registry(&nss, &image_b).contains(APPLET));
}

fn batch(nss: &NssDb, scheme: &str, out: &str, extra: &[&str]) -> std::process::Command {
    let mut c = nss.tool("signer");
    c.args([
        "batch",
        "--cards",
        &p(nss, "list.csv"),
        "--out",
        &p(nss, out),
    ])
    .args(["--master", &key("isd-kmc-aes"), "--scheme", scheme])
    .args(["--pin-source", &pin_source()])
    .args(extra);
    c
}

/// The only test here that loads NSS in this process (once per process, one database): it plays a
/// batch's PUT KEY to a fab-fresh card through a channel opened with the transport key imported into
/// NSS, then personalises an application on that card through the vendor's SSD.
#[test]
fn a_kdf3_batch_made_in_nss_is_accepted_by_the_card_then_an_app_is_personalised() {
    use keyman::hsm::{register_module_init, Hsm, TokenUri};
    let nss = NssDb::new();
    keys(&nss);
    let image = p(&nss, "fresh.img");
    ok(nss
        .tool("card-sim")
        .args(["new", "--image", &image, "--kdd", KDD_B]));
    std::fs::write(
        nss.path("list.csv"),
        format!("identity,kdd\ncard-a,{KDD_A}\ncard-b,{KDD_B}\n"),
    )
    .unwrap();
    // The aes scheme and SCP02 are refused before anything is written, each with its reason.
    let err = fails(&mut batch(&nss, "aes", "aes.jsonl", &[]));
    assert!(err.ends_with(NO_DERIVE_AES), "{err}");
    assert!(!nss.path("aes.jsonl").exists());
    let err = fails(&mut batch(&nss, "kdf3", "scp02.jsonl", &["--scp", "02"]));
    assert!(
        err.ends_with(
            "SCP02 PUT KEY key data is encrypted under the session DEK of a live secure channel (GPC \
             E.4.1: derived from the card's sequence counter), so it cannot be prepared for a card list \
             ahead of time; token 'NSS Certificate DB' can wrap it during a session \
             (signer::channel::scp02)"
        ),
        "{err}"
    );
    assert!(!nss.path("scp02.jsonl").exists());
    let done = ok(&mut batch(&nss, "kdf3", "keys.jsonl", &["--workers", "2"]));
    assert!(done.contains("2 of 2 cards"), "{done}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(nss.path("keys.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    let line = &lines[1];
    assert_eq!(line["kdd"], KDD_B);
    let put_key = hex::decode(line["put_key"].as_str().unwrap()).unwrap();

    std::env::set_var(PIN_VAR, &nss.pin);
    register_module_init(std::path::Path::new(NSS_MODULE), &nss.init_string()).unwrap();
    let hsm = Hsm::load(Some(std::path::Path::new(NSS_MODULE))).unwrap();
    let session = hsm
        .open(
            &TokenUri::parse(NSS_TOKEN).unwrap(),
            &keyman::pin::PinSource::Env(PIN_VAR.into()),
        )
        .unwrap();
    {
        let mut t = signer::transport::SimTransport::open(std::path::Path::new(&image)).unwrap();
        common::with_transport_channel(&mut t, &session, &signer::channel::ISD_AID, |ch, _, _| {
            let cmd = gp_core::apdu::CommandApdu::parse(&put_key).unwrap();
            let resp = ch.send_ok(&cmd, "PUT KEY").unwrap();
            let kcvs: String = line["kcvs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            assert_eq!(
                hex::encode_upper(&resp.data[1..]),
                kcvs,
                "the card confirms the token's KCVs"
            );
        });
    }
    // The card now opens its card domain with its kdf3 keys, derived again in NSS.
    let reg = registry(&nss, &image);
    assert!(reg.contains("A000000151000000"), "{reg}");

    // Application personalisation through the vendor's SSD on the same card: the issuer creates the SSD
    // (command line) and installs the card's built-in purse, extradited to it (library, kdf3 keys from
    // NSS); the vendor puts the SSD's per-card kdf3 key set and personalises the purse with STORE DATA
    // encrypted by NSS under the SSD's DEK.
    ok(card_cmd(&nss, "create-sd", &image).args(["--sd", SSD]));
    {
        let master = session.find_secret_key("isd-kmc-aes").unwrap();
        let mut t = signer::transport::SimTransport::open(std::path::Path::new(&image)).unwrap();
        let (mut ch, _) = signer::gp::open_issuer_channel(
            &mut t,
            &session,
            master,
            gp_core::diversify::Scheme::Kdf3,
        )
        .unwrap();
        let purse = common::install(PURSE_PACKAGE, PURSE_MODULE, PURSE, &[0x00]);
        ch.send_ok(&purse.to_apdu().unwrap(), "purse").unwrap();
        let ex = gp_core::commands::InstallForExtradition {
            sd_aid: common::h(SSD),
            aid: common::h(PURSE),
            parameters: Vec::new(),
            token: Vec::new(),
        };
        ch.send_ok(&ex.to_apdu().unwrap(), "extradition").unwrap();
    }
    ok(nss.tool("signer").args([
        "sd",
        "put-keys",
        "--card",
        &format!("sim:{image}"),
        "--sd",
        SSD,
        "--channel-master",
        &key("ssd-kmc"),
        "--channel-scheme",
        "kdf3",
        "--pin-source",
        &pin_source(),
    ]));
    // The purse's credit key, generated in NSS, goes into the SSD wrapped under the SSD's new DEK.
    {
        use gp_core::commands::put_key::{KeyComponent, KeyData, PutKey, KEY_TYPE_AES};
        use keyman::hsm::{SecretKeyType, Usage};
        session
            .generate_secret(&common::aes_spec(
                "purse-credit",
                0x53,
                vec![Usage::Encrypt, Usage::Sign],
                true,
            ))
            .unwrap();
        let purse_key = session.find_secret_key("purse-credit").unwrap();
        let ssd_master = session.find_secret_key("ssd-kmc").unwrap();
        let mut t = signer::transport::SimTransport::open(std::path::Path::new(&image)).unwrap();
        let (mut ch, kdd) = signer::gp::open_domain_channel(
            &mut t,
            &session,
            &common::h(SSD),
            ssd_master,
            gp_core::diversify::Scheme::Kdf3,
        )
        .unwrap();
        let dek = signer::diversify::derive_one(
            &session,
            ssd_master,
            gp_core::diversify::Scheme::Kdf3,
            &kdd,
            gp_core::diversify::KeyRole::Dek,
            SecretKeyType::Aes128,
            &[Usage::Wrap],
            false,
        )
        .unwrap();
        let wrapped = session.wrap_cbc_zero_iv(dek.handle(), purse_key).unwrap();
        let put = PutKey {
            new_kvn: 0x40,
            keys: vec![KeyData {
                components: vec![KeyComponent {
                    key_type: KEY_TYPE_AES,
                    block: [&[16u8][..], &wrapped].concat(),
                }],
                kcv: session.kcv(purse_key).unwrap().value.to_vec(),
            }],
        };
        ch.send_ok(&put.to_apdu(0, 1).unwrap(), "PUT KEY 40")
            .unwrap();
    }
    assert_eq!(balance(&image), [0x69, 0x85]);
    std::fs::write(
        nss.path("purse.hex"),
        "DF01 04 000186A0\nDF02 04 00000064\nDF03 02 4001\n",
    )
    .unwrap();
    let out = ok(nss
        .tool("signer")
        .args(["app", "personalise", "--card", &format!("sim:{image}")])
        .args(["--sd", SSD, "--app", PURSE, "--data", &p(&nss, "purse.hex")])
        .args(["--master", &key("ssd-kmc"), "--scheme", "kdf3"])
        .args(["--pin-source", &pin_source()]));
    assert!(out.contains("encrypted under the SD's DEK"), "{out}");
    assert_eq!(balance(&image), [0, 0, 0, 100, 0, 0, 0, 0, 0x90, 0x00]);
}

const PURSE_PACKAGE: &str = "F05055525345";
const PURSE_MODULE: &str = "F0505552534501";
const PURSE: &str = "F050555253450101";

/// GET BALANCE from the purse on the card image: the raw response.
fn balance(image: &str) -> Vec<u8> {
    let mut card = card_firmware::sim::SimCard::open(std::path::Path::new(image)).unwrap();
    card.power_on();
    let mut select = vec![0x00, 0xA4, 0x04, 0x00, 0x08];
    select.extend_from_slice(&common::h(PURSE));
    assert!(card.transmit(&select).ends_with(&[0x90, 0x00]));
    card.transmit(&[0x80, 0x5C, 0x00, 0x00, 0x08])
}

#[test]
fn the_vendor_ssd_flow_with_keys_in_nss() {
    let nss = NssDb::new();
    keys(&nss);
    let image = card(&nss, "a", KDD_A);
    let out = ok(card_cmd(&nss, "create-sd", &image).args([
        "--sd",
        SSD,
        "--privileges",
        "dap-verification,ciphered-load-file-data-block",
    ]));
    assert!(
        out.contains(&format!("security domain {SSD} created")),
        "{out}"
    );
    let put = |scheme: &str| {
        let mut c = nss.tool("signer");
        c.args([
            "sd",
            "put-keys",
            "--card",
            &format!("sim:{image}"),
            "--sd",
            SSD,
        ])
        .args(["--dap-master", &key("dap-master"), "--diversify", scheme])
        .args(["--cipher-key", &key("lfdb-cipher")])
        .args(["--pin-source", &pin_source()]);
        c
    };
    // The card's DAP key by the aes scheme needs CKM_AES_ECB_ENCRYPT_DATA: refused, nothing put.
    let keys_before = key_information(&image, SSD);
    let err = fails(&mut put("aes"));
    assert!(err.ends_with(NO_DERIVE_AES), "{err}");
    assert_eq!(key_information(&image, SSD), keys_before, "no key was put");
    let out = ok(&mut put("kdf3"));
    assert!(
        out.contains(&format!("card {KDD_A}"))
            && out.contains("KVN 73 key 01")
            && out.contains("KVN 74 key 01")
            && out.contains("confirmed by the card"),
        "{out}"
    );
    ok(nss.tool("demo-cap").arg(nss.path("hello.cap")));
    std::fs::write(
        nss.path("cards.csv"),
        format!("identity,kdd\ncard-a,{KDD_A}\n"),
    )
    .unwrap();
    let pkg = p(&nss, "vendor.pkg");
    ok(nss
        .tool("signer")
        .args(["package", &p(&nss, "hello.cap"), "--out", &pkg])
        .args([
            "--dap",
            "aes",
            "--dap-key",
            &key("dap-master"),
            "--dap-sd",
            SSD,
        ])
        .args(["--cards", &p(&nss, "cards.csv"), "--diversify", "kdf3"])
        .args(["--encrypt", "--cipher-key", &key("lfdb-cipher")])
        .args(["--pin-source", &pin_source()]));
    // The SSD checks the per-card DAP with the key put from NSS and deciphers the LFDB.
    let out = ok(nss
        .tool("signer")
        .args([
            "deploy",
            &pkg,
            "--card",
            &format!("sim:{image}"),
            "--sd",
            SSD,
        ])
        .args(["--master", &key("isd-kmc-aes"), "--scheme", "kdf3"])
        .args(["--pin-source", &pin_source()]));
    assert!(
        out.contains("ciphered") && out.contains("1 DAP block"),
        "{out}"
    );
    let reg = registry(&nss, &image);
    assert!(
        reg.lines().any(|l| l.starts_with("APP")
            && l.contains(APPLET)
            && l.contains(&format!("sd {SSD}"))),
        "{reg}"
    );
}

/// The admin server's configuration with the issuer's master in NSS: `module` and `module_init` name
/// NSS softokn and its database, the per-card keys are kdf3. No ledger: NSS cannot anchor one (see
/// `nss_refuses_to_anchor_a_ledger_and_says_why`).
fn server_config(nss: &NssDb, port: u16) -> std::path::PathBuf {
    let path = nss.path("server.ron");
    std::fs::write(
        &path,
        format!(
            r#"(
    listen: "127.0.0.1:{port}",
    tls: (plain_http_on_loopback: true),
    database: "remote.db",
    issuer_master: "{}",
    scheme: "kdf3",
    module: Some("{NSS_MODULE}"),
    module_init: Some("{}"),
    pin_source: "env:{PIN_VAR}",
)"#,
            key("isd-kmc-aes"),
            nss.init_string()
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_remote_campaign_installs_with_the_issuer_master_in_nss() {
    use remote_common::{agent, count_entries, free_port, ServerProc};
    let nss = NssDb::new();
    keys(&nss);
    let image = card(&nss, "a", KDD_A);
    std::fs::write(
        nss.path("campaign.csv"),
        format!("identity,kdd\ncard-a,{KDD_A}\n"),
    )
    .unwrap();
    ok(nss.tool("demo-cap").arg(nss.path("hello.cap")));
    ok(nss.tool("signer").args([
        "package",
        &p(&nss, "hello.cap"),
        "--out",
        &p(&nss, "plain.pkg"),
    ]));
    let port = free_port();
    let config = server_config(&nss, port);
    let server = |args: &[&str]| {
        let mut c = nss.tool("admin-server");
        // The module and its initialisation string come from the configuration only.
        c.env_remove("PKCS11_MODULE")
            .env_remove("PKCS11_MODULE_INIT")
            .arg(args[0])
            .arg("--config")
            .arg(&config)
            .args(&args[1..]);
        c
    };
    let added = ok(&mut server(&[
        "campaign",
        "add",
        "isd",
        "--package",
        &p(&nss, "plain.pkg"),
        "--cards",
        &p(&nss, "campaign.csv"),
    ]));
    assert!(
        added.contains("1 cards") && added.contains("security domain ISD"),
        "{added}"
    );
    let child = server(&["serve"])
        .env("ADMIN_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("admin-server");
    let _server = ServerProc::adopt(child);
    let mut t = signer::transport::SimTransport::open(std::path::Path::new(&image)).unwrap();
    let s = agent(port).run(&mut t).unwrap();
    // The identification script and the install script: the session keys came from NSS.
    assert_eq!((s.scripts, s.resumes), (2, 0), "{s:?}");
    let reg = registry(&nss, &image);
    assert_eq!(count_entries(&reg, "APP", APPLET), 1, "{reg}");
    let show = ok(&mut server(&["campaign", "show", "isd"]));
    let rows = remote_common::rows(&show);
    assert_eq!(rows.len(), 1, "{show}");
    assert_eq!((rows[0].2.as_str(), rows[0].3), ("done", 1), "{show}");
}

/// Starts `admin-server serve` with `config` (module and initialisation string from the configuration
/// only) and returns the one line it fails with; panics if it listens instead.
fn server_refusal(nss: &NssDb, config: &std::path::Path) -> String {
    use std::io::BufRead;
    let mut child = nss
        .tool("admin-server")
        .env_remove("PKCS11_MODULE")
        .env_remove("PKCS11_MODULE_INIT")
        .args(["serve", "--config"])
        .arg(config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("admin-server");
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    if first.contains("listening") {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the server started: {first}");
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

/// What the admin server cannot do with its master in NSS, refused before it listens: a scheme NSS
/// cannot derive, and a ledger (NSS holds no anchor for it).
#[test]
fn a_server_whose_scheme_or_ledger_nss_cannot_serve_refuses_to_start() {
    let nss = NssDb::new();
    keys(&nss);
    let config = server_config(&nss, remote_common::free_port());
    let kdf3 = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, kdf3.replace("scheme: \"kdf3\"", "scheme: \"aes\"")).unwrap();
    assert_eq!(
        server_refusal(&nss, &config),
        format!(
            "admin-server: error: the token cannot do this: token 'NSS Certificate DB' {NO_DERIVE_AES}"
        )
    );
    // The ceremony's ledger, which NSS could not anchor.
    std::fs::write(
        &config,
        kdf3.replace(
            "pin_source:",
            "ledger: Some(\"work/keys.jsonl\"),\n    pin_source:",
        ),
    )
    .unwrap();
    assert_eq!(
        server_refusal(&nss, &config),
        format!(
            "admin-server: error: ledger: {}: token 'NSS Certificate DB' holds no anchor for this \
             ledger; create ledgers with `keyman ledger init` (or anchor a ceremony's new ledger with \
             `keyman ledger anchor`) in the token that appends to them",
            nss.path("work/keys.jsonl").display()
        )
    );
}

/// `signer card put-keys`: the card domain's kdf3 key set replaced by one from another master in NSS; the
/// same keys again are refused (the replay rule works on NSS: the KCVs are computed by the token).
#[test]
fn card_key_rotation_with_kdf3_masters_in_nss() {
    let nss = NssDb::new();
    keys(&nss);
    let image = card(&nss, "a", KDD_A);
    let rotate = |new: &str| {
        let mut c = card_cmd(&nss, "put-keys", &image);
        c.args(["--new-master", &key(new)]);
        c
    };
    let err = fails(&mut rotate("isd-kmc-aes"));
    assert!(
        err.contains(
            "PUT KEY of key set 32 replacing 31: the new key set's ENC and MAC are the keys the card \
             uses now"
        ) && err.contains("nothing was put"),
        "{err}"
    );
    let out = ok(&mut rotate("isd-kmc-next"));
    assert!(
        out.contains("key set 31 replaced by 32 from 'isd-kmc-next' (kdf3)"),
        "{out}"
    );
    let next = ok(nss
        .tool("signer")
        .args(["card", "list", "--card", &format!("sim:{image}")])
        .args(["--master", &key("isd-kmc-next"), "--scheme", "kdf3"])
        .args(["--pin-source", &pin_source()]));
    assert!(next.contains(ISD), "{next}");
    let err = fails(&mut card_cmd(&nss, "list", &image));
    assert!(err.contains("cryptogram"), "{err}");
    // The card's life cycle through the new keys.
    let next_cmd = |sub: &str| {
        let mut c = nss.tool("signer");
        c.args(["card", sub, "--card", &format!("sim:{image}")])
            .args(["--master", &key("isd-kmc-next"), "--scheme", "kdf3"])
            .args(["--pin-source", &pin_source()]);
        c
    };
    ok(&mut next_cmd("lock"));
    let isd_line = |reg: String| {
        reg.lines()
            .find(|l| l.starts_with("ISD"))
            .map(str::to_string)
    };
    assert!(isd_line(ok(&mut next_cmd("list"))).is_some_and(|l| l.contains("CARD_LOCKED")));
    ok(&mut next_cmd("unlock"));
    assert!(isd_line(ok(&mut next_cmd("list"))).is_some_and(|l| l.contains("SECURED")));
}

/// 3DES on NSS: per-card 3DES DAP keys need the emv scheme's `CKM_DES3_ECB_ENCRYPT_DATA`, which the key
/// database token lacks (refused with that line); a 3DES-ciphered LFDB needs only `CKM_DES3_CBC`, and NSS
/// makes and deciphers it.
#[test]
fn des3_daps_refused_and_a_des3_ciphered_lfdb_on_nss() {
    let nss = NssDb::new();
    keys(&nss);
    ok(nss.tool("demo-cap").arg(nss.path("hello.cap")));
    std::fs::write(
        nss.path("cards.csv"),
        format!("identity,kdd\ncard-a,{KDD_A}\n"),
    )
    .unwrap();
    let err = fails(
        nss.tool("signer")
            .args([
                "package",
                &p(&nss, "hello.cap"),
                "--out",
                &p(&nss, "des.pkg"),
            ])
            .args(["--hash", "sha1", "--dap", "des"])
            .args(["--dap-key", &key("dap-master-des")])
            .args(["--cards", &p(&nss, "cards.csv"), "--diversify", "emv"])
            .args(["--pin-source", &pin_source()]),
    );
    assert_eq!(
        err,
        "signer: error: the token cannot do this: token 'NSS Certificate DB' cannot do derive-emv: it \
         lacks CKM_DES3_ECB_ENCRYPT_DATA (derive); nothing is done outside the token instead"
    );
    assert!(!nss.path("des.pkg").exists());
    let made = ok(nss
        .tool("signer")
        .args(["package", &p(&nss, "hello.cap"), "--out", &p(&nss, "c.pkg")])
        .args(["--encrypt", "--cipher-key", &key("lfdb-cipher-des")])
        .args(["--pin-source", &pin_source()]));
    assert!(
        made.contains("ciphered      des3-cbc under 'lfdb-cipher-des'"),
        "{made}"
    );
    let checked = ok(nss
        .tool("signer")
        .args(["verify", &p(&nss, "c.pkg")])
        .args(["--cipher-key", &key("lfdb-cipher-des")])
        .args(["--pin-source", &pin_source()]));
    assert!(
        checked.contains("ciphered LFDB deciphers to the LFDB the manifest names"),
        "{checked}"
    );
}
