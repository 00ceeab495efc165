//! SCP02 PUT KEY with every key in the token, end to end: a fab-fresh simulated card speaking SCP02
//! (i=55, key set 20, 3DES), NSS softokn holding the static keys and the new key set, the session keys
//! computed by the token's 3DES-CBC and each new key wrapped by the token under the session DEK
//! (`CKM_DES3_ECB`, which SoftHSM2 lacks). The card must confirm the token's KCVs and then open a channel
//! with the new keys only.

use gp_core::scp02::SecurityLevel;
use keyman::hsm::{register_module_init, Hsm, SecretKeySpec, SecretKeyType, TokenUri, Usage};
use keyman::pin::PinSource;
use keyman::secret::KeyValue;
use postissue_tests::{ok, NssDb, NSS_MODULE, NSS_TOKEN, PIN_VAR};
use secrecy::SecretSlice;
use signer::channel::scp02::{initialize_update, put_key_set, Scp02Channel};
use signer::channel::{select, StaticKeys, ISD_AID};
use signer::transport::SimTransport;
use std::path::Path;

/// GP-FACTS default test key K: the simulated card's transport key.
const K: [u8; 16] = *b"@ABCDEFGHIJKLMNO";

#[test]
fn scp02_put_key_with_keys_in_nss_then_the_card_opens_with_the_new_keys_only() {
    let db = NssDb::new();
    std::env::set_var(PIN_VAR, &db.pin);
    register_module_init(Path::new(NSS_MODULE), &db.init_string()).unwrap();
    let hsm = Hsm::load(Some(Path::new(NSS_MODULE))).unwrap();
    let token = hsm
        .open(
            &TokenUri::parse(NSS_TOKEN).unwrap(),
            &PinSource::Env(PIN_VAR.into()),
        )
        .unwrap();
    let image = db.path("card.img");
    ok(db
        .tool("card-sim")
        .args(["new", "--scp", "02", "--image"])
        .arg(&image));

    // The fab's transport keys as session objects that may only encrypt (session key derivation).
    let transport = token
        .import_session_key(
            &SecretSlice::from(K.to_vec()),
            SecretKeyType::Des3TwoKey,
            &[Usage::Encrypt],
        )
        .unwrap();
    let statics = |k: keyman::hsm::KeyHandle| StaticKeys {
        enc: k,
        mac: k,
        dek: k,
    };
    // The new key set: three 3DES keys in the token, extractable only wrapped.
    let mut new_values = Vec::new();
    let mut new_keys = Vec::new();
    for (i, label) in ["new-enc", "new-mac", "new-dek"].iter().enumerate() {
        let value = token.random(16).unwrap();
        let spec = SecretKeySpec {
            label: label.to_string(),
            id: vec![i as u8 + 1],
            key_type: SecretKeyType::Des3TwoKey,
            usages: vec![Usage::Encrypt],
            extractable: true,
        };
        let kv = KeyValue::new(
            zeroize::Zeroizing::new(value.clone()),
            SecretKeyType::Des3TwoKey,
        )
        .unwrap();
        new_keys.push(token.create_secret_from_value(&spec, &kv).unwrap().0);
        new_values.push(value);
    }

    let mut t = SimTransport::open(&image).unwrap();
    select(&mut t, &ISD_AID).unwrap();
    let (hc, iu) = initialize_update(&mut t, &token, 0).unwrap();
    assert_eq!((iu.kvn, iu.scp_id), (0x20, 0x02));
    let mut ch = Scp02Channel::authenticate(
        &mut t,
        &token,
        statics(transport.handle()),
        hc,
        &iu,
        SecurityLevel::C_MAC_C_DEC,
        true,
    )
    .unwrap();
    let kcvs = put_key_set(&mut ch, [new_keys[0], new_keys[1], new_keys[2]], 0x20, 0x21).unwrap();
    drop(ch);
    // The KCVs the card confirmed are those of the new values (3DES over zeros).
    for (kcv, value) in kcvs.iter().zip(&new_values) {
        let v = KeyValue::new(
            zeroize::Zeroizing::new(value.clone()),
            SecretKeyType::Des3TwoKey,
        )
        .unwrap();
        assert_eq!(
            *kcv,
            v.kcv(gp_core::kcv::KcvMethod::Des3Zeros).unwrap().value
        );
    }

    // A new session: key set 21 opens with the new keys, in the token.
    let mut t = SimTransport::open(&image).unwrap();
    select(&mut t, &ISD_AID).unwrap();
    let (hc, iu) = initialize_update(&mut t, &token, 0).unwrap();
    assert_eq!(iu.kvn, 0x21);
    let new = |i: usize| {
        token
            .import_session_key(
                &SecretSlice::from(new_values[i].clone()),
                SecretKeyType::Des3TwoKey,
                &[Usage::Encrypt],
            )
            .unwrap()
    };
    let (enc, mac, dek) = (new(0), new(1), new(2));
    let keys = StaticKeys {
        enc: enc.handle(),
        mac: mac.handle(),
        dek: dek.handle(),
    };
    Scp02Channel::authenticate(&mut t, &token, keys, hc, &iu, SecurityLevel::C_MAC, true).unwrap();
    // The transport keys no longer open the card.
    let mut t = SimTransport::open(&image).unwrap();
    select(&mut t, &ISD_AID).unwrap();
    let (hc, iu) = initialize_update(&mut t, &token, 0).unwrap();
    let err = Scp02Channel::authenticate(
        &mut t,
        &token,
        statics(transport.handle()),
        hc,
        &iu,
        SecurityLevel::C_MAC,
        true,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("the card's cryptogram does not match"),
        "{err}"
    );
}
