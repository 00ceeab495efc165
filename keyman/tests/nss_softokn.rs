//! keyman on a second, independent PKCS#11 implementation: NSS softokn, started with its initialisation
//! string (`--module-init` / `$PKCS11_MODULE_INIT`). The capability probe, ceremonies on NSS, and KEK
//! exchange between a SoftHSM2 token and an NSS token in both directions, each read back by `keyman keys
//! list` and checked by KCV.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

mod common;

use common::*;
use postissue_tests::{fails, ok, NssDb, SoftHsm, NSS_MODULE, NSS_TOKEN, SOFTHSM_MODULE};
use std::path::{Path, PathBuf};
use std::process::Command;

/// `keyman` pointed at NSS (through the environment) and at a SoftHSM2 store, with each token's PIN in
/// its own variable.
fn keyman_both(nss: &NssDb, soft: &SoftHsm) -> Command {
    let mut c = nss.tool("keyman");
    c.env("SOFTHSM2_CONF", soft.conf())
        .env("PIN_NSS", &nss.pin)
        .env("PIN_SOFT", &soft.pin);
    c
}

/// A shipped script with its token URIs replaced (`pkcs11:token=NAME` → URI).
fn retargeted(dir: &Path, name: &str, uris: &[(&str, String)]) -> PathBuf {
    let mut text = std::fs::read_to_string(shipped(name)).unwrap();
    for (token, uri) in uris {
        let from = format!("uri: \"pkcs11:token={token}\"");
        assert!(text.contains(&from), "{name} names no token {token}");
        text = text.replace(&from, &format!("uri: \"{uri}\""));
    }
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn nss_uri() -> String {
    format!("pkcs11:token={}", NSS_TOKEN.replace(' ', "%20"))
}

fn soft_uri(label: &str) -> String {
    format!("pkcs11:token={label}?module-path={SOFTHSM_MODULE}")
}

fn kcv_of(out: &str, label: &str) -> String {
    let line = out
        .lines()
        .find(|l| l.contains(&format!("'{label}'")) && l.contains("KCV "))
        .unwrap_or_else(|| panic!("no KCV for {label} in {out}"));
    let at = line.find("KCV ").unwrap() + 4;
    line[at..at + 6].to_string()
}

/// The KCV on the line of `out` that contains `marker`.
fn kcv_after(out: &str, marker: &str) -> String {
    let line = out
        .lines()
        .find(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("no line with {marker} in {out}"));
    let at = line.find("KCV ").expect("KCV") + 4;
    line[at..at + 6].to_string()
}

#[test]
fn capabilities_are_probed_mechanism_by_mechanism() {
    let nss = NssDb::new();
    let soft = store(&["t"]);
    let text = ok(nss
        .tool("keyman")
        .args(["token", "capabilities", NSS_TOKEN]));
    assert!(
        text.starts_with(&format!("token '{NSS_TOKEN}' (module {NSS_MODULE})")),
        "{text}"
    );
    for line in [
        "derive-kdf3          yes  in-token",
        "scp03-session-keys   yes  in-token",
        "scp02-key-loading    yes  host",
        "derive-emv           no   lacks CKM_DES3_ECB_ENCRYPT_DATA (derive)",
        "dap-des3             no   lacks CKM_DES3_ECB_ENCRYPT_DATA (derive)",
        "kek-exchange         yes  aes-key-wrap",
        "dap-ecdsa            yes  in-token",
    ] {
        assert!(text.contains(line), "{line} missing from {text}");
    }
    let soft_text = ok(keyman(&soft).args(["token", "capabilities", "t"]));
    for line in [
        "derive-kdf3          no   lacks CKM_SP800_108_COUNTER_KDF (derive)",
        "scp03-session-keys   yes  host",
        "scp02-key-loading    no   lacks CKM_DES3_ECB (wrap)",
        "derive-emv           yes  in-token",
        "dap-des3             yes  in-token",
    ] {
        assert!(soft_text.contains(line), "{line} missing from {soft_text}");
    }
    let json: serde_json::Value = serde_json::from_str(&ok(nss.tool("keyman").args([
        "token",
        "capabilities",
        NSS_TOKEN,
        "--json",
    ])))
    .unwrap();
    let kdf3 = json["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["feature"] == "derive-kdf3")
        .unwrap();
    assert_eq!(kdf3["available"], true);
    assert_eq!(
        kdf3["mechanisms"][0]["mechanism"],
        "CKM_SP800_108_COUNTER_KDF"
    );
}

#[test]
fn nss_needs_its_initialisation_string_and_softhsm_refuses_one() {
    let nss = NssDb::new();
    let err = fails(nss.tool("keyman").env_remove("PKCS11_MODULE_INIT").args([
        "token",
        "capabilities",
        NSS_TOKEN,
    ]));
    assert!(
        err.contains("CKR_ARGUMENTS_BAD") && err.contains("--module-init"),
        "{err}"
    );
    // The same string on the command line instead of the environment.
    let out = ok(nss
        .tool("keyman")
        .env_remove("PKCS11_MODULE_INIT")
        .env_remove("PKCS11_MODULE")
        .args(["--module", NSS_MODULE, "--module-init", &nss.init_string()])
        .args(["token", "capabilities", NSS_TOKEN]));
    assert!(out.contains("derive-kdf3          yes"), "{out}");
    // A string with no module to go to is refused before anything is loaded.
    let soft = store(&["t"]);
    let err = fails(keyman(&soft).args(["--module-init", "x", "token", "capabilities", "t"]));
    assert!(err.contains("needs the module it belongs to"), "{err}");
}

#[test]
fn issuer_and_dap_ceremonies_run_on_nss() {
    let nss = NssDb::new();
    let dir = nss.path("work");
    // NSS keeps no CKA_CHECK_VALUE: a derive-only master has no KCV to show, so the shipped script is
    // refused after generation and the key destroyed again.
    let script = retargeted(&dir, "issuer-master.ron", &[("issuer", nss_uri())]);
    let err = fails(
        nss.tool("keyman")
            .args(["ceremony", "run"])
            .arg(&script)
            .args(["--ledger", "issuer.jsonl", "--pin-source", &pin_source()]),
    );
    assert_eq!(
        err,
        "keyman: error: the token cannot do this: key 'isd-kmc' has no CKA_CHECK_VALUE and may not \
         encrypt, so no KCV can be shown (a token that keeps no check value, such as NSS softokn, needs \
         the key to have the encrypt usage or to be formed from components); the keys this run had made \
         were destroyed again ('isd-kmc' in token 'issuer'), so nothing it created remains"
    );
    let inv =
        ok(nss
            .tool("keyman")
            .args(["keys", "list", NSS_TOKEN, "--pin-source", &pin_source()]));
    assert!(!inv.contains("isd-kmc"), "{inv}");
    // With the encrypt usage as well, the token computes the KCV itself.
    let text = std::fs::read_to_string(&script)
        .unwrap()
        .replace("usages: [Derive]", "usages: [Derive, Encrypt]");
    std::fs::write(&script, text).unwrap();
    let out = ok(nss
        .tool("keyman")
        .args(["ceremony", "run"])
        .arg(&script)
        .args(["--ledger", "issuer2.jsonl", "--pin-source", &pin_source()]));
    let kcv = kcv_of(&out, "isd-kmc");
    let script = retargeted(&dir, "dap-keypair.ron", &[("vendor", nss_uri())]);
    let dap = ok(nss
        .tool("keyman")
        .args(["ceremony", "run"])
        .arg(&script)
        .args(["--ledger", "dap.jsonl", "--pin-source", &pin_source()]));
    assert!(dap.contains("complete"), "{dap}");
    let inv =
        ok(nss
            .tool("keyman")
            .args(["keys", "list", NSS_TOKEN, "--pin-source", &pin_source()]));
    let row = inv.lines().find(|l| l.starts_with("isd-kmc")).expect("row");
    for want in [
        "0101",
        "DES3-2KEY",
        &kcv,
        "derive",
        "sensitive,never-extractable",
    ] {
        assert!(row.contains(want), "{want} missing from {row}");
    }
    assert!(
        inv.lines()
            .any(|l| l.contains("private") && l.contains("sign")),
        "{inv}"
    );
}

/// Runs vendor-master on the vendor token, then the KEK exchange to the bureau token; returns the
/// exchange's output and the vendor's KCVs.
fn exchange(nss: &NssDb, soft: &SoftHsm, vendor: String, bureau: String) -> (String, Vec<String>) {
    let dir = nss.path("work");
    let labels = ["ssd-enc", "ssd-mac", "ssd-dek", "ssd-dap", "ssd-lfc"];
    let script = retargeted(&dir, "vendor-master.ron", &[("vendor", vendor.clone())]);
    if !vendor.contains("softhsm") {
        // NSS keeps no CKA_CHECK_VALUE: the masters may also encrypt so that the token shows their KCVs.
        let text = std::fs::read_to_string(&script)
            .unwrap()
            .replace("usages: [Derive]", "usages: [Derive, Encrypt]");
        std::fs::write(&script, text).unwrap();
    }
    let out = ok(keyman_both(nss, soft)
        .args(["ceremony", "run"])
        .arg(&script)
        .args(["--ledger", "vendor.jsonl"])
        .args(["--pin-source", "vendor=env:PIN_VENDOR"])
        .env(
            "PIN_VENDOR",
            if vendor.contains("softhsm") {
                &soft.pin
            } else {
                &nss.pin
            },
        ));
    let kcvs: Vec<String> = labels.iter().map(|l| kcv_of(&out, l)).collect();
    let a = random_hex(32);
    let b = random_hex(32);
    let mut answers = String::new();
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
    let answers_path = nss.path("answers.txt");
    private_file(&answers_path, &answers);
    let script = retargeted(
        &dir,
        "kek-exchange.ron",
        &[("vendor", vendor.clone()), ("bureau", bureau.clone())],
    );
    let (pv, pb) = if vendor.contains("softhsm") {
        ("env:PIN_SOFT", "env:PIN_NSS")
    } else {
        ("env:PIN_NSS", "env:PIN_SOFT")
    };
    let out = ok(keyman_both(nss, soft)
        .args(["ceremony", "run"])
        .arg(&script)
        .args(["--ledger", "exchange.jsonl"])
        .args([
            "--pin-source",
            &format!("vendor={pv}"),
            "--pin-source",
            &format!("bureau={pb}"),
        ])
        .args(["--answers", &format!("file:{}", answers_path.display())]));
    assert!(out.contains("with AES-KEY-WRAP"), "{out}");
    for (l, k) in labels.iter().zip(&kcvs) {
        assert!(
            out.contains(&format!("unwrapped '{l}'")) && out.contains(&format!("KCV {k}")),
            "{l}: {out}"
        );
    }
    (out, kcvs)
}

#[test]
fn kek_exchange_from_softhsm_to_nss() {
    let nss = NssDb::new();
    let soft = store(&["vendor"]);
    exchange(&nss, &soft, soft_uri("vendor"), nss_uri());
    let inv =
        ok(nss
            .tool("keyman")
            .args(["keys", "list", NSS_TOKEN, "--pin-source", &pin_source()]));
    for l in ["ssd-enc", "ssd-mac", "ssd-dek", "ssd-dap", "ssd-lfc"] {
        let row = inv.lines().find(|r| r.starts_with(l)).expect("row");
        assert!(row.contains("derive") && row.contains("sensitive"), "{row}");
        assert!(!row.contains("extractable"), "{row}");
    }
}

#[test]
fn kek_exchange_from_nss_to_softhsm() {
    let nss = NssDb::new();
    let soft = store(&["bureau"]);
    exchange(&nss, &soft, nss_uri(), soft_uri("bureau"));
    let inv = inventory(&soft, "bureau");
    for l in ["ssd-enc", "ssd-mac", "ssd-dek", "ssd-dap", "ssd-lfc"] {
        let row = inv.lines().find(|r| r.starts_with(l)).expect("row");
        assert!(row.contains("derive") && row.contains("sensitive"), "{row}");
        assert!(!row.contains("extractable"), "{row}");
    }
}

#[test]
fn pin_quorum_and_rotation_on_nss() {
    let nss = NssDb::new();
    let dir = nss.path("work");
    // The NSS database password becomes a PIN only a quorum of officers can rebuild.
    let script = retargeted(&dir, "pin-quorum.ron", &[("issuer", nss_uri())]);
    let reveal = nss.path("revealed");
    std::fs::create_dir(&reveal).unwrap();
    let empty = nss.path("no-answers.txt");
    private_file(&empty, "");
    let out = ok(nss
        .tool("keyman")
        .args(["ceremony", "run"])
        .arg(&script)
        .args(["--ledger", "quorum.jsonl", "--pin-source", &pin_source()])
        .arg("--answers")
        .arg(format!("file:{}", empty.display()))
        .arg("--reveal-to")
        .arg(&reveal));
    assert!(out.contains("2-of-3 shares"), "{out}");
    let err =
        fails(
            nss.tool("keyman")
                .args(["keys", "list", NSS_TOKEN, "--pin-source", &pin_source()]),
        );
    assert!(
        err.contains("wrong PIN for token 'NSS Certificate DB'"),
        "{err}"
    );
    // Two officers open the token and make the next master (may also encrypt: NSS keeps no check value).
    let shares: String = ["officer-a", "officer-c"]
        .iter()
        .map(|o| std::fs::read_to_string(reveal.join(format!("pin-share_issuer_{o}.txt"))).unwrap())
        .collect();
    let two = nss.path("two.txt");
    private_file(&two, &shares);
    let script = retargeted(&dir, "rotate.ron", &[("issuer", nss_uri())]);
    let text = std::fs::read_to_string(&script)
        .unwrap()
        .replace("usages: [Derive]", "usages: [Derive, Encrypt]");
    std::fs::write(&script, text).unwrap();
    let out = ok(nss
        .tool("keyman")
        .args(["ceremony", "run"])
        .arg(&script)
        .args(["--ledger", "rotate.jsonl"])
        .arg("--answers")
        .arg(format!("file:{}", two.display())));
    assert!(out.contains("'isd-kmc-2' (id 0102)"), "{out}");
}

#[test]
fn a_key_exported_as_components_from_nss_is_formed_again_in_softhsm() {
    let nss = NssDb::new();
    let soft = store(&["two"]);
    let dir = nss.path("work");
    let reveal = nss.path("revealed");
    std::fs::create_dir(&reveal).unwrap();
    let export = format!(
        r#"Ceremony(
    version: 1,
    name: "export",
    purpose: "export a key from NSS as components",
    tokens: [Token(name: "one", uri: "{}")],
    roles: [Role(name: "officer", kind: Officer), Role(name: "alice", kind: Custodian),
        Role(name: "bob", kind: Custodian)],
    steps: [
        GenerateSecretKey(label: "xfer", id: "0a", key_type: Des3ThreeKey, usages: [Encrypt, Decrypt],
            extractable: true, performed_by: ["officer"]),
        ExportComponents(key: "xfer", custodians: ["alice", "bob"], performed_by: ["officer"]),
    ],
)"#,
        nss_uri()
    );
    std::fs::write(dir.join("export.ron"), export).unwrap();
    let empty = nss.path("none.txt");
    private_file(&empty, "");
    let out = ok(keyman_both(&nss, &soft)
        .args(["ceremony", "run", "export.ron", "--ledger", "export.jsonl"])
        .args(["--pin-source", "one=env:PIN_NSS"])
        .arg("--answers")
        .arg(format!("file:{}", empty.display()))
        .arg("--reveal-to")
        .arg(&reveal));
    let key_kcv = kcv_after(&out, "generated DES3-3KEY 'xfer'");
    let mut answers = String::new();
    for n in 1..=2 {
        let line =
            std::fs::read_to_string(reveal.join(format!("export_one_xfer_{n}.txt"))).unwrap();
        let value = line.split(" = ").nth(1).unwrap().trim().to_string();
        answers.push_str(&format!("component/two/xfer/{n} = {value}\n"));
        answers.push_str(&format!("kcv-ok/two/xfer/{n} = yes\n"));
    }
    let reform = format!(
        r#"Ceremony(
    version: 1,
    name: "reform",
    purpose: "form the key again in SoftHSM2",
    tokens: [Token(name: "two", uri: "{}")],
    roles: [Role(name: "officer", kind: Officer), Role(name: "alice", kind: Custodian),
        Role(name: "bob", kind: Custodian)],
    steps: [
        FormKey(label: "xfer", id: "0a", key_type: Des3ThreeKey, usages: [Encrypt],
            components: [Component(custodian: "alice"), Component(custodian: "bob")],
            token: "two", performed_by: ["officer"]),
    ],
)"#,
        soft_uri("two")
    );
    std::fs::write(dir.join("reform.ron"), reform).unwrap();
    let answers_path = nss.path("answers.txt");
    private_file(&answers_path, &answers);
    let out = ok(keyman_both(&nss, &soft)
        .args(["ceremony", "run", "reform.ron", "--ledger", "reform.jsonl"])
        .args(["--pin-source", "two=env:PIN_SOFT"])
        .arg("--answers")
        .arg(format!("file:{}", answers_path.display())));
    // The same key, by its check value, in the other implementation.
    assert_eq!(kcv_after(&out, "formed DES3-3KEY 'xfer'"), key_kcv);
    assert!(out.contains("confirmed by the token"), "{out}");
    assert!(inventory(&soft, "two").contains(&key_kcv));
}
