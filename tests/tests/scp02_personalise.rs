//! `signer personalise` of a fab-fresh SCP02 card (i=55, key set 20, 3DES): the signer sees the card
//! speak SCP02 and takes the SCP02 way, which needs both the scheme's 3DES derivation and DES3-ECB wrap
//! under the session DEK inside the token. Neither token here has both on a token that keeps objects, so
//! each is refused with the exact line the operator reads, before the card is changed; the SCP02 PUT KEY
//! itself is proven end to end in `nss_scp02.rs`.

use postissue_tests::{fails, ok, root, NssDb, SoftHsm, NSS_TOKEN, PIN_VAR};

fn pin_source() -> String {
    format!("env:{PIN_VAR}")
}

/// `card-sim info` of an image: must still be the fab's card.
fn assert_untouched(info: &str) {
    assert!(info.contains("life cycle:  OP_READY (01)"), "{info}");
    assert!(info.contains("key set:     KVN 20"), "{info}");
}

#[test]
fn softhsm_lacks_des3_wrap_and_the_scp02_card_stays_as_the_fab_made_it() {
    let hsm = SoftHsm::new();
    hsm.init_token("issuer");
    ok(hsm
        .tool("keyman")
        .args(["ceremony", "run"])
        .arg(root().join("ceremonies/issuer-master.ron"))
        .arg("--ledger")
        .arg(hsm.path("issuer.jsonl"))
        .args(["--pin-source", &pin_source()]));
    let image = hsm.path("card.img").display().to_string();
    ok(hsm
        .tool("card-sim")
        .args(["new", "--scp", "02", "--image", &image]));
    let err = fails(hsm.tool("signer").args([
        "personalise",
        "--card",
        &format!("sim:{image}"),
        "--master",
        "pkcs11:token=issuer;object=isd-kmc",
        "--pin-source",
        &pin_source(),
    ]));
    assert_eq!(
        err,
        "signer: error: the token cannot do this: token 'issuer' cannot do scp02-key-loading: it lacks \
         CKM_DES3_ECB (wrap); nothing is done outside the token instead"
    );
    assert_untouched(&ok(hsm.tool("card-sim").args(["info", "--image", &image])));
}

#[test]
fn nss_lacks_emv_derivation_and_the_scp02_card_stays_as_the_fab_made_it() {
    let db = NssDb::new();
    // A 3DES master formed from components (NSS keeps no check value for generated derive-only keys).
    let script = format!(
        r#"Ceremony(
    version: 1,
    name: "nss-3des-master",
    purpose: "3DES master for emv per-card keys",
    tokens: [Token(name: "issuer", uri: "pkcs11:token={}")],
    roles: [
        Role(name: "officer", kind: Officer),
        Role(name: "custodian-a", kind: Custodian),
        Role(name: "custodian-b", kind: Custodian),
        Role(name: "witness", kind: Witness),
    ],
    steps: [
        FormKey(
            label: "isd-kmc", id: "0101", key_type: Des3TwoKey, usages: [Derive], extractable: true,
            components: [Component(custodian: "custodian-a"), Component(custodian: "custodian-b")],
            token: "issuer", performed_by: ["officer"], witnessed_by: ["witness"],
        ),
    ],
)"#,
        NSS_TOKEN.replace(' ', "%20")
    );
    std::fs::write(db.path("master.ron"), script).unwrap();
    let mut answers = String::new();
    for (i, c) in [
        "0123456789ABCDEFFEDCBA9876543210",
        "1111111111111111EEEEEEEEEEEEEEEE",
    ]
    .iter()
    .enumerate()
    {
        answers.push_str(&format!("component/issuer/isd-kmc/{} = {c}\n", i + 1));
        answers.push_str(&format!("kcv-ok/issuer/isd-kmc/{} = yes\n", i + 1));
    }
    let answers_path = db.path("answers.txt");
    std::fs::write(&answers_path, answers).unwrap();
    std::fs::set_permissions(
        &answers_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    ok(db
        .tool("keyman")
        .args(["ceremony", "run"])
        .arg(db.path("master.ron"))
        .args(["--ledger", "master.jsonl", "--pin-source", &pin_source()])
        .arg("--answers")
        .arg(format!("file:{}", answers_path.display())));
    let image = db.path("card.img").display().to_string();
    ok(db
        .tool("card-sim")
        .args(["new", "--scp", "02", "--image", &image]));
    let err = fails(db.tool("signer").args([
        "personalise",
        "--card",
        &format!("sim:{image}"),
        "--master",
        &format!(
            "pkcs11:token={};object=isd-kmc",
            NSS_TOKEN.replace(' ', "%20")
        ),
        "--pin-source",
        &pin_source(),
    ]));
    assert_eq!(
        err,
        "signer: error: the token cannot do this: token 'NSS Certificate DB' cannot do derive-emv: it \
         lacks CKM_DES3_ECB_ENCRYPT_DATA (derive); nothing is done outside the token instead"
    );
    assert_untouched(&ok(db.tool("card-sim").args(["info", "--image", &image])));
}
