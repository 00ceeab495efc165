//! The shipped ceremonies, each run by the `keyman` binary on real SoftHSM2 tokens, with the results read
//! back independently: `keyman keys list`, OpenSC's `pkcs11-tool`, OpenSSL, and the ledger file itself.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

mod common;

use common::*;
use gp_core::kcv::KcvMethod;
use keyman::hsm::SecretKeyType;
use keyman::secret::{combine, KeyValue};
use postissue_tests::{fails, ok};
use std::path::Path;

/// The KCV a line of keyman's output shows after `marker` (6 hex digits).
fn kcv_after(out: &str, marker: &str) -> String {
    let line = out
        .lines()
        .find(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("no line with {marker} in {out}"));
    let at = line.find("KCV ").expect("KCV") + 4;
    line[at..at + 6].to_string()
}

#[test]
fn issuer_master_runs_unattended_and_every_tool_sees_the_same_key() {
    let hsm = store(&["issuer"]);
    let out = ceremony_ok(&hsm, &shipped("issuer-master.ron"), "issuer.jsonl", &[]);
    assert!(out.contains("'isd-kmc' (id 0101)"), "{out}");
    assert!(out.contains("3DES-ECB(00*8)"), "{out}");
    let kcv = kcv_after(&out, "'isd-kmc'");
    assert!(out.contains("read aloud"), "{out}");

    let inv = inventory(&hsm, "issuer");
    let row = inv.lines().find(|l| l.starts_with("isd-kmc")).expect("row");
    for want in [
        "0101",
        "secret",
        "DES3-2KEY",
        "128",
        &kcv,
        "3DES-ECB(00*8)",
        "derive",
        "sensitive,never-extractable,local",
    ] {
        assert!(row.contains(want), "{want} missing from {row}");
    }
    assert!(!row.contains(",extractable"), "{row}");

    // OpenSC's pkcs11-tool reads the same object.
    let opensc = pkcs11_tool_objects(&hsm, "issuer");
    assert!(opensc.contains("label:      isd-kmc"), "{opensc}");
    assert!(opensc.contains("ID:         0101"), "{opensc}");
    assert!(opensc.contains("Usage:      derive"), "{opensc}");
    assert!(
        opensc.contains("sensitive, always sensitive, never extractable, local"),
        "{opensc}"
    );

    // The ledger: start, one step, end; scripted (the PIN came from the environment); the key with its
    // KCV and method; the PIN nowhere.
    let ledger = hsm.path("work/issuer.jsonl");
    verify_ledger(&hsm, &ledger);
    let entries = ledger_entries(&ledger);
    let kinds: Vec<&str> = entries
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["ceremony-start", "step", "ceremony-end"]);
    assert!(entries.iter().all(|e| e["scripted"] == true));
    let key = &entries[1]["outputs"][0];
    assert_eq!(key["label"], "isd-kmc");
    assert_eq!(key["kcv_hex"], kcv.to_lowercase());
    assert_eq!(key["kcv_method"], "3des-ecb-zeros");
    let text = std::fs::read_to_string(&ledger).unwrap();
    assert!(
        !text.contains(&hsm.pin),
        "the PIN must never reach the ledger"
    );
    assert!(entries[0]["inputs"][0]["name"]
        .as_str()
        .unwrap()
        .ends_with("issuer-master.ron"));
}

#[test]
fn vendor_masters_move_to_the_bureau_under_a_kek_formed_from_components() {
    let hsm = store(&["vendor", "bureau"]);
    let out = ceremony_ok(&hsm, &shipped("vendor-master.ron"), "vendor.jsonl", &[]);
    let labels = ["ssd-enc", "ssd-mac", "ssd-dek", "ssd-dap", "ssd-lfc"];
    let vendor_kcvs: Vec<String> = labels
        .iter()
        .map(|l| kcv_after(&out, &format!("'{l}'")))
        .collect();
    let vendor_inv = inventory(&hsm, "vendor");
    for l in labels {
        let row = vendor_inv.lines().find(|r| r.starts_with(l)).expect("row");
        assert!(row.contains("AES-128") && row.contains("derive"), "{row}");
        assert!(row.contains("sensitive,extractable,local"), "{row}");
    }

    // Two custodians' components, typed at both sites (here: scripted answers).
    let a = random_hex(32);
    let b = random_hex(32);
    let mut answers = String::from("# kek-exchange rehearsal\n");
    for site in ["vendor", "bureau"] {
        for (i, c) in [&a, &b].iter().enumerate() {
            answers.push_str(&format!(
                "component/{site}/kek-vendor-bureau/{} = {c}\n",
                i + 1
            ));
            answers.push_str(&format!(
                "kcv-ok/{site}/kek-vendor-bureau/{} = yes\n",
                i + 1
            ));
        }
    }
    let answers_path = hsm.path("answers.txt");
    private_file(&answers_path, &answers);
    let answers_arg = format!("file:{}", answers_path.display());
    let out = ceremony_ok(
        &hsm,
        &shipped("kek-exchange.ron"),
        "exchange.jsonl",
        &["--answers", &answers_arg],
    );

    // The KCVs shown are those of the components and of their XOR, per GPC B.6.
    let parts = [
        KeyValue::parse_component(&a, SecretKeyType::Aes256, "a").unwrap(),
        KeyValue::parse_component(&b, SecretKeyType::Aes256, "b").unwrap(),
    ];
    let kcv = |v: &KeyValue| hex::encode_upper(v.kcv(KcvMethod::AesOnes).unwrap().value);
    assert_eq!(kcv_after(&out, "(custodian custodian-a)"), kcv(&parts[0]));
    assert_eq!(kcv_after(&out, "(custodian custodian-b)"), kcv(&parts[1]));
    let kek = combine(&parts, SecretKeyType::Aes256).unwrap();
    assert_eq!(kcv_after(&out, "combined key"), kcv(&kek));
    assert!(out.contains("with AES-KEY-WRAP"), "{out}");

    // Each master arrived with the vendor's KCV, sensitive and not extractable.
    for (l, k) in labels.iter().zip(&vendor_kcvs) {
        assert!(
            out.contains(&format!("unwrapped '{l}'")) && out.contains(&format!("KCV {k}")),
            "{l}: {out}"
        );
    }
    let bureau = inventory(&hsm, "bureau");
    for l in labels {
        let row = bureau.lines().find(|r| r.starts_with(l)).expect("row");
        assert!(row.contains("derive") && row.contains("sensitive"), "{row}");
        assert!(!row.contains("extractable"), "{row}");
    }
    let opensc = pkcs11_tool_objects(&hsm, "bureau");
    for l in labels {
        assert!(opensc.contains(&format!("label:      {l}")), "{opensc}");
    }

    // The wrapped-key file and the ledger hold no component and no key in clear.
    let wrapped = std::fs::read_to_string(hsm.path("work/vendor-masters.wrapped.json")).unwrap();
    let ledger = hsm.path("work/exchange.jsonl");
    let ledger_text = std::fs::read_to_string(&ledger).unwrap();
    for secret in [&a, &b, &hex::encode_upper(kek.expose())] {
        for text in [&wrapped, &ledger_text, &out] {
            assert!(!text.to_uppercase().contains(secret.as_str()));
        }
    }
    verify_ledger(&hsm, &ledger);
    let entries = ledger_entries(&ledger);
    assert!(entries.iter().all(|e| e["scripted"] == true));
    let step1 = &entries[1];
    let custodians: Vec<&str> = step1["participants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["role"] == "custodian")
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(custodians, ["custodian-a", "custodian-b"]);
    let components: Vec<&serde_json::Value> = step1["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["type"] == "component")
        .collect();
    assert_eq!(components.len(), 2);
    assert_eq!(components[0]["kcv_method"], "aes-ecb-ones");
    let unwrap_step = &entries[4];
    assert_eq!(
        unwrap_step["inputs"][0]["name"],
        "vendor-masters.wrapped.json"
    );
    assert_eq!(unwrap_step["outputs"].as_array().unwrap().len(), 5);
}

#[test]
fn dap_key_pair_public_key_matches_opensc_and_openssl() {
    let hsm = store(&["vendor"]);
    let out = ceremony_ok(&hsm, &shipped("dap-keypair.ron"), "dap.jsonl", &[]);
    assert!(out.contains("RSA-2048 key pair 'ssd-dap-rsa'"), "{out}");
    let pem = std::fs::read_to_string(hsm.path("work/ssd-dap-rsa.pem")).unwrap();
    let opensc_pem = std::fs::read_to_string(hsm.public_pem("vendor", "ssd-dap-rsa")).unwrap();
    assert_eq!(
        pem, opensc_pem,
        "keyman's PEM is OpenSSL's PEM of the token's key"
    );
    let text = ok(std::process::Command::new("openssl")
        .args(["pkey", "-pubin", "-noout", "-text", "-in"])
        .arg(hsm.path("work/ssd-dap-rsa.pem")));
    assert!(text.contains("Public-Key: (2048 bit)"), "{text}");

    let inv = inventory(&hsm, "vendor");
    let private = inv
        .lines()
        .find(|l| l.starts_with("ssd-dap-rsa") && l.contains("private"))
        .expect("private row");
    assert!(
        private.contains("RSA-2048") && private.contains("sign"),
        "{private}"
    );
    assert!(
        private.contains("sensitive,never-extractable,local"),
        "{private}"
    );
    let public = inv
        .lines()
        .find(|l| l.starts_with("ssd-dap-rsa") && l.contains("public"))
        .expect("public row");
    assert!(public.contains("verify"), "{public}");

    let ledger = hsm.path("work/dap.jsonl");
    verify_ledger(&hsm, &ledger);
    let entries = ledger_entries(&ledger);
    assert_eq!(entries[1]["outputs"][1]["type"], "public-key");
    assert_eq!(entries[1]["outputs"][1]["pem"], pem.as_str());
    assert_eq!(entries[2]["outputs"][1]["name"], "ssd-dap-rsa.pem");
}

/// Reads the PIN shares a scripted enrolment revealed, as answer lines.
fn revealed_shares(dir: &Path, officers: &[&str]) -> String {
    officers
        .iter()
        .map(|o| std::fs::read_to_string(dir.join(format!("pin-share_issuer_{o}.txt"))).unwrap())
        .collect()
}

#[test]
fn pin_quorum_then_rotation_under_dual_control() {
    let hsm = store(&["issuer"]);
    ceremony_ok(&hsm, &shipped("issuer-master.ron"), "issuer.jsonl", &[]);
    let reveal = hsm.path("revealed");
    std::fs::create_dir(&reveal).unwrap();
    let empty = hsm.path("no-answers.txt");
    private_file(&empty, "");
    let out = ceremony_ok(
        &hsm,
        &shipped("pin-quorum.ron"),
        "quorum.jsonl",
        &[
            "--answers",
            &format!("file:{}", empty.display()),
            "--reveal-to",
            reveal.to_str().unwrap(),
        ],
    );
    assert!(out.contains("2-of-3 shares"), "{out}");
    // The old PIN no longer opens the token.
    let e = fails(keyman(&hsm).args(["keys", "list", "issuer", "--pin-source", &pin_source()]));
    assert!(e.contains("wrong PIN for token 'issuer'"), "{e}");
    // Shares are owner-only files, and the enrolment's ledger names the officers, never a share.
    let share_a = revealed_shares(&reveal, &["officer-a"]);
    let ledger_text = std::fs::read_to_string(hsm.path("work/quorum.jsonl")).unwrap();
    let share_value = share_a.split(" = ").nth(1).unwrap().trim();
    assert!(!ledger_text.contains(share_value));
    assert!(ledger_text.contains("pin-share issuer"));

    // One share is not enough: nothing is created and no ledger is started.
    let one = hsm.path("one.txt");
    private_file(&one, &share_a);
    let e = ceremony_fails(
        &hsm,
        &shipped("rotate.ron"),
        "rotate-1.jsonl",
        &["--answers", &format!("file:{}", one.display())],
    );
    assert_eq!(
        e,
        "keyman: error: 1 share(s) entered; 2 are needed to open the token"
    );
    assert!(!hsm.path("work/rotate-1.jsonl").exists());

    // A share with a typing mistake is caught by its check digits before the token sees a PIN.
    let mut typo = revealed_shares(&reveal, &["officer-a", "officer-b"]);
    let pos = typo.find(" = ").unwrap() + 6;
    let c = typo.as_bytes()[pos];
    typo.replace_range(pos..pos + 1, if c == b'0' { "1" } else { "0" });
    let typo_path = hsm.path("typo.txt");
    private_file(&typo_path, &typo);
    let e = ceremony_fails(
        &hsm,
        &shipped("rotate.ron"),
        "rotate-typo.jsonl",
        &["--answers", &format!("file:{}", typo_path.display())],
    );
    assert!(e.contains("officer officer-a's share for token 'issuer': the PIN share's check digits do not match"), "{e}");

    // Officers a and c open the token; the ledger records who did.
    let two = hsm.path("two.txt");
    private_file(&two, &revealed_shares(&reveal, &["officer-a", "officer-c"]));
    let out = ceremony_ok(
        &hsm,
        &shipped("rotate.ron"),
        "rotate.jsonl",
        &["--answers", &format!("file:{}", two.display())],
    );
    assert!(out.contains("'isd-kmc-2' (id 0102)"), "{out}");
    let entries = ledger_entries(&hsm.path("work/rotate.jsonl"));
    let holders: Vec<&str> = entries[0]["participants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["role"] == "pin-share issuer")
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(holders, ["officer-a", "officer-c"]);
    verify_ledger(&hsm, &hsm.path("work/rotate.jsonl"));
}

const EXPORT: &str = r#"Ceremony(
    version: 1,
    name: "export-and-reform",
    purpose: "rehearse export as components, forming again elsewhere, and destruction",
    tokens: [Token(name: "one", uri: "pkcs11:token=one"), Token(name: "two", uri: "pkcs11:token=two")],
    roles: [Role(name: "officer", kind: Officer), Role(name: "alice", kind: Custodian),
        Role(name: "bob", kind: Custodian), Role(name: "carol", kind: Custodian)],
    steps: [
        GenerateSecretKey(label: "xfer", id: "0a", key_type: Des3ThreeKey, usages: [Encrypt, Decrypt],
            extractable: true, performed_by: ["officer"]),
        ExportComponents(key: "xfer", custodians: ["alice", "bob", "carol"], performed_by: ["officer"]),
    ],
)"#;

const REFORM: &str = r#"Ceremony(
    version: 1,
    name: "reform",
    purpose: "form the exported key again and retire the original",
    tokens: [Token(name: "one", uri: "pkcs11:token=one"), Token(name: "two", uri: "pkcs11:token=two")],
    roles: [Role(name: "officer", kind: Officer), Role(name: "alice", kind: Custodian),
        Role(name: "bob", kind: Custodian), Role(name: "carol", kind: Custodian)],
    steps: [
        FormKey(label: "xfer", id: "0a", key_type: Des3ThreeKey, usages: [Encrypt],
            components: [Component(custodian: "alice", kcv: "KCV1"), Component(custodian: "bob", kcv: "KCV2"),
                Component(custodian: "carol", kcv: "KCV3")],
            token: "two", performed_by: ["officer"]),
        DestroyKey(key: "xfer", token: "one", performed_by: ["officer"]),
    ],
)"#;

#[test]
fn export_as_components_form_elsewhere_and_destroy_with_confirmation() {
    let hsm = store(&["one", "two"]);
    let reveal = hsm.path("revealed");
    std::fs::create_dir(&reveal).unwrap();
    let empty = hsm.path("none.txt");
    private_file(&empty, "");
    let out = ceremony_ok(
        &hsm,
        &script(&hsm, "export.ron", EXPORT),
        "export.jsonl",
        &[
            "--answers",
            &format!("file:{}", empty.display()),
            "--reveal-to",
            reveal.to_str().unwrap(),
        ],
    );
    let key_kcv = kcv_after(&out, "generated DES3-3KEY 'xfer'");
    let mut kcvs = Vec::new();
    let mut answers = String::new();
    for (i, c) in ["alice", "bob", "carol"].iter().enumerate() {
        let n = i + 1;
        kcvs.push(kcv_after(
            &out,
            &format!("component {n} shown to custodian {c}"),
        ));
        let line =
            std::fs::read_to_string(reveal.join(format!("export_one_xfer_{n}.txt"))).unwrap();
        let value = line.split(" = ").nth(1).unwrap().trim().to_string();
        assert!(!out.contains(&value), "a component reached standard output");
        answers.push_str(&format!("component/two/xfer/{n} = {value}\n"));
    }
    // The components are not the key, and their XOR is.
    let reform = REFORM
        .replace("KCV1", &kcvs[0])
        .replace("KCV2", &kcvs[1])
        .replace("KCV3", &kcvs[2]);

    // A typed label that does not match destroys nothing; the new key is undone; the abort is recorded.
    let wrong = hsm.path("wrong.txt");
    private_file(&wrong, &format!("{answers}destroy/one/xfer = xfe\n"));
    let reform_path = script(&hsm, "reform.ron", &reform);
    let e = ceremony_fails(
        &hsm,
        &reform_path,
        "reform-wrong.jsonl",
        &["--answers", &format!("file:{}", wrong.display())],
    );
    assert!(
        e.contains("the label typed does not match 'xfer'; nothing was destroyed"),
        "{e}"
    );
    assert!(e.contains("destroyed again ('xfer' in token 'two')"), "{e}");
    assert_eq!(key_count(&hsm, "one"), 1);
    assert_eq!(key_count(&hsm, "two"), 0);
    let aborted = ledger_entries(&hsm.path("work/reform-wrong.jsonl"));
    let last = aborted.last().unwrap();
    assert_eq!(last["kind"], "abort");
    assert_eq!(last["outputs"][0]["type"], "destroyed");
    verify_ledger(&hsm, &hsm.path("work/reform-wrong.jsonl"));

    let right = hsm.path("right.txt");
    private_file(&right, &format!("{answers}destroy/one/xfer = xfer\n"));
    let out = ceremony_ok(
        &hsm,
        &reform_path,
        "reform.jsonl",
        &["--answers", &format!("file:{}", right.display())],
    );
    assert_eq!(kcv_after(&out, "combined key 'xfer'"), key_kcv);
    assert!(out.contains("confirmed by the token"), "{out}");
    assert!(out.contains("destroyed 'xfer' (id 0a"), "{out}");
    assert_eq!(key_count(&hsm, "one"), 0);
    let row = inventory(&hsm, "two");
    assert!(row.contains(&key_kcv), "{row}");

    // A key generated never-extractable cannot be exported: refused before anything is created.
    let strict = EXPORT
        .replace("extractable: true, ", "")
        .replace("\"0a\"", "\"0b\"")
        .replace("label: \"xfer\"", "label: \"strict\"")
        .replace("key: \"xfer\"", "key: \"strict\"");
    let e = ceremony_fails(
        &hsm,
        &script(&hsm, "strict.ron", &strict),
        "strict.jsonl",
        &[
            "--answers",
            &format!("file:{}", empty.display()),
            "--reveal-to",
            reveal.to_str().unwrap(),
        ],
    );
    assert!(
        e.contains("'strict' in token 'one' is not extractable"),
        "{e}"
    );
    assert_eq!(key_count(&hsm, "one"), 0);
}

const EVERY_TYPE: &str = r#"Ceremony(
    version: 1,
    name: "every-type",
    purpose: "every key type keyman generates",
    token: "pkcs11:token=t",
    roles: [Role(name: "officer", kind: Officer)],
    steps: [
        GenerateSecretKey(label: "d2", id: "01", key_type: Des3TwoKey, usages: [Encrypt, Decrypt], performed_by: ["officer"]),
        GenerateSecretKey(label: "d3", id: "02", key_type: Des3ThreeKey, usages: [Derive], performed_by: ["officer"]),
        GenerateSecretKey(label: "a128", id: "03", key_type: Aes128, usages: [Encrypt, Sign], performed_by: ["officer"]),
        GenerateSecretKey(label: "a192", id: "04", key_type: Aes192, usages: [Wrap, Unwrap], performed_by: ["officer"]),
        GenerateSecretKey(label: "a256", id: "05", key_type: Aes256, usages: [Derive], extractable: true, performed_by: ["officer"]),
        GenerateKeyPair(label: "rsa3", id: "06", key_type: Rsa3072, usages: [Sign, Decrypt], performed_by: ["officer"]),
        GenerateKeyPair(label: "ec", id: "07", key_type: EcP256, usages: [Sign], performed_by: ["officer"]),
        ExportPublicKey(key: "ec", out: "ec.pem", performed_by: ["officer"]),
    ],
)"#;

#[test]
fn every_key_type_is_generated_with_exact_attributes() {
    let hsm = store(&["t"]);
    ceremony_ok(
        &hsm,
        &script(&hsm, "every.ron", EVERY_TYPE),
        "every.jsonl",
        &[],
    );
    let inv = inventory(&hsm, "t");
    for (label, class, ty, bits, usages, flags) in [
        (
            "d2",
            "secret",
            "DES3-2KEY",
            "128",
            "encrypt,decrypt",
            "sensitive,never-extractable,local",
        ),
        (
            "d3",
            "secret",
            "DES3-3KEY",
            "192",
            "derive",
            "sensitive,never-extractable,local",
        ),
        (
            "a128",
            "secret",
            "AES-128",
            "128",
            "encrypt,sign",
            "sensitive,never-extractable,local",
        ),
        (
            "a192",
            "secret",
            "AES-192",
            "192",
            "wrap,unwrap",
            "sensitive,never-extractable,local",
        ),
        (
            "a256",
            "secret",
            "AES-256",
            "256",
            "derive",
            "sensitive,extractable,local",
        ),
        (
            "rsa3",
            "private",
            "RSA-3072",
            "3072",
            "decrypt,sign",
            "sensitive,never-extractable,local",
        ),
        (
            "rsa3",
            "public",
            "RSA-3072",
            "3072",
            "encrypt,verify",
            "local",
        ),
        (
            "ec",
            "private",
            "EC-P256",
            "256",
            "sign",
            "sensitive,never-extractable,local",
        ),
        ("ec", "public", "EC-P256", "256", "verify", "local"),
    ] {
        let row = inv
            .lines()
            .find(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.first() == Some(&label) && cols.get(2) == Some(&class)
            })
            .unwrap_or_else(|| panic!("no {label} {class} in {inv}"));
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols[3], ty, "{row}");
        assert_eq!(cols[4], bits, "{row}");
        assert!(row.contains(usages), "{usages}: {row}");
        assert!(row.ends_with(flags), "{flags}: {row}");
    }
    // AES keys allowed to encrypt show both AES check values, each named.
    let a128 = inv.lines().find(|l| l.starts_with("a128")).unwrap();
    assert!(
        a128.contains("GPC B.6") && a128.contains("AES-ECB(00*16)"),
        "{a128}"
    );
    let text = ok(std::process::Command::new("openssl")
        .args(["pkey", "-pubin", "-noout", "-text", "-in"])
        .arg(hsm.path("work/ec.pem")));
    assert!(
        text.contains("prime256v1") || text.contains("P-256"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(hsm.path("work/ec.pem")).unwrap(),
        std::fs::read_to_string(hsm.public_pem("t", "ec")).unwrap()
    );
}
