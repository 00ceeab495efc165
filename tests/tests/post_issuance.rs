//! The walking skeleton end to end, through the real tools: a SoftHSM token, `keyman`, `card-sim`, `signer`.

use postissue_tests::{fails, ok, root, SoftHsm, PIN_VAR};

const MASTER: &str = "pkcs11:token=issuer;object=isd-kmc";
const APPLET: &str = "A00000064750490101";
const PACKAGE: &str = "A000000647504901";

fn pin_source() -> String {
    format!("env:{PIN_VAR}")
}

/// Ceremony on a fresh token and a fab-fresh card; returns the store and the card image path.
fn issued_card() -> (SoftHsm, String) {
    let hsm = SoftHsm::new();
    hsm.init_token("issuer");
    let ledger = hsm.path("ledger.jsonl");
    let out = ok(hsm
        .tool("keyman")
        .args(["ceremony", "run"])
        .arg(root().join("ceremonies/issuer-master.ron"))
        .arg("--ledger")
        .arg(&ledger)
        .args(["--pin-source", &pin_source()]));
    assert!(out.contains("isd-kmc"), "{out}");
    assert!(
        out.contains("3DES-ECB(00*8)"),
        "KCV printed with its method: {out}"
    );
    // The ceremony started the ledger; anchoring it in the token is the explicit next step.
    let token_args = ["--token", "issuer", "--pin-source", &pin_source()];
    ok(hsm
        .tool("keyman")
        .args(["ledger", "anchor"])
        .arg(&ledger)
        .args(token_args));
    let verified = ok(hsm
        .tool("keyman")
        .args(["ledger", "verify"])
        .arg(&ledger)
        .args(token_args));
    assert!(verified.contains("chain intact"), "{verified}");

    let image = hsm.path("card.img").display().to_string();
    ok(hsm.tool("card-sim").args(["new", "--image", &image]));
    let personalised = ok(hsm.tool("signer").args([
        "personalise",
        "--card",
        &format!("sim:{image}"),
        "--master",
        MASTER,
        "--pin-source",
        &pin_source(),
    ]));
    // The fab's transport keys arrive as values without the derive usage: the host way, said so.
    assert!(
        personalised.contains("session keys  SCP03 session keys on the host"),
        "{personalised}"
    );
    (hsm, image)
}

fn package(hsm: &SoftHsm) -> String {
    let cap = hsm.path("hello.cap");
    ok(hsm.tool("demo-cap").arg(&cap));
    let pkg = hsm.path("hello.pkg").display().to_string();
    ok(hsm
        .tool("signer")
        .arg("package")
        .arg(&cap)
        .args(["--out", &pkg, "--hash", "sha256"]));
    pkg
}

fn registry(hsm: &SoftHsm, image: &str) -> String {
    ok(hsm.tool("signer").args([
        "card",
        "list",
        "--card",
        &format!("sim:{image}"),
        "--master",
        MASTER,
        "--pin-source",
        &pin_source(),
    ]))
}

#[test]
fn ceremony_personalisation_and_post_issuance_load() {
    let (hsm, image) = issued_card();
    let before = registry(&hsm, &image);
    assert!(
        before.contains("A000000151000000") && before.contains("SECURED"),
        "{before}"
    );
    assert!(!before.contains(APPLET), "{before}");

    let pkg = package(&hsm);
    let deployed = ok(hsm.tool("signer").args([
        "deploy",
        &pkg,
        "--card",
        &format!("sim:{image}"),
        "--master",
        MASTER,
        "--pin-source",
        &pin_source(),
    ]));
    // SoftHSM2 has no SP 800-108 KDF: the session keys took the host way, and the output says so.
    assert!(
        deployed.contains(
            "session keys  SCP03 session keys on the host (computed with the token's CKM_AES_CMAC, wiped \
             after the session)"
        ),
        "{deployed}"
    );
    let after = registry(&hsm, &image);
    let app = after
        .lines()
        .find(|l| l.contains(APPLET) && l.starts_with("APP"))
        .unwrap_or_else(|| panic!("applet missing from registry:\n{after}"));
    assert!(app.contains("SELECTABLE"), "{app}");
    assert!(
        after
            .lines()
            .any(|l| l.starts_with("ELF") && l.contains(PACKAGE)),
        "load file missing:\n{after}"
    );
}

#[test]
fn wrong_pin_stops_the_ceremony_with_one_line_and_creates_nothing() {
    let hsm = SoftHsm::new();
    hsm.init_token("issuer");
    let ledger = hsm.path("ledger.jsonl");
    let err = fails(
        hsm.tool("keyman")
            .env(PIN_VAR, "not-the-pin")
            .args(["ceremony", "run"])
            .arg(root().join("ceremonies/issuer-master.ron"))
            .arg("--ledger")
            .arg(&ledger)
            .args(["--pin-source", &pin_source()]),
    );
    assert!(err.contains("wrong PIN for token 'issuer'"), "{err}");
    assert!(
        !ledger.exists(),
        "no ledger is opened before the token accepts the PIN"
    );
    // Nothing was created: the same ceremony now runs with the right PIN (its labels are still free).
    ok(hsm
        .tool("keyman")
        .args(["ceremony", "run"])
        .arg(root().join("ceremonies/issuer-master.ron"))
        .arg("--ledger")
        .arg(&ledger)
        .args(["--pin-source", &pin_source()]));
}

#[test]
fn missing_token_is_one_clear_line() {
    let hsm = SoftHsm::new();
    hsm.init_token("someone-else");
    let err = fails(
        hsm.tool("keyman")
            .args(["ceremony", "run"])
            .arg(root().join("ceremonies/issuer-master.ron"))
            .arg("--ledger")
            .arg(hsm.path("l.jsonl"))
            .args(["--pin-source", &pin_source()]),
    );
    assert!(
        err.contains("no token matches pkcs11:token=issuer"),
        "{err}"
    );
    assert!(
        err.contains("someone-else"),
        "lists the tokens present: {err}"
    );
}

#[test]
fn a_tampered_package_is_refused_and_the_registry_is_unchanged() {
    let (hsm, image) = issued_card();
    let pkg = package(&hsm);
    let before = registry(&hsm, &image);
    // Flip one hex digit inside the LFDB of the package file.
    let text = std::fs::read_to_string(&pkg).unwrap();
    let at = text.find("\"lfdb\": \"").unwrap() + 40;
    let mut bytes = text.into_bytes();
    bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
    let bad = hsm.path("tampered.pkg");
    std::fs::write(&bad, bytes).unwrap();
    let err = fails(hsm.tool("signer").args([
        "deploy",
        bad.to_str().unwrap(),
        "--card",
        &format!("sim:{image}"),
        "--master",
        MASTER,
        "--pin-source",
        &pin_source(),
    ]));
    assert!(err.contains("lfdb_hash"), "{err}");
    assert_eq!(registry(&hsm, &image), before);
}
