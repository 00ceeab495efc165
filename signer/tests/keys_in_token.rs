//! In-token derivation and DAPs against known answers: the token's results (SoftHSM2 through PKCS#11) must
//! equal GP-FACTS's vectors and `gp_core`'s software reference, key by key, while no key leaves the token.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use gp_core::diversify::{derive_software, KeyRole, Scheme};
use gp_core::keys::{AesKey, Des3Key};
use keyman::hsm::{Hsm, SecretKeyType, TokenSession, TokenUri, Usage};
use keyman::pin::PinSource;
use postissue_tests::{SoftHsm, PIN_VAR};
use secrecy::SecretSlice;
use signer::diversify::{
    dap_derivation_data, derive_card_keys, derive_dap_key, CardDapKey, Purpose,
};
use std::sync::OnceLock;

/// GP-FACTS default test key K.
const K: [u8; 16] = [
    0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F,
];

fn kdd(s: &str) -> [u8; 10] {
    hex::decode(s).unwrap().try_into().unwrap()
}

/// One token store for the whole test process (PKCS#11 is initialised once per process).
fn hsm() -> &'static Hsm {
    static STORE: OnceLock<(SoftHsm, Hsm)> = OnceLock::new();
    &STORE
        .get_or_init(|| {
            let store = SoftHsm::new();
            store.init_token("kat");
            std::env::set_var("SOFTHSM2_CONF", store.conf());
            std::env::set_var(PIN_VAR, &store.pin);
            let hsm = Hsm::load(None).unwrap();
            (store, hsm)
        })
        .1
}

fn session() -> TokenSession<'static> {
    hsm()
        .open(
            &TokenUri::parse("kat").unwrap(),
            &PinSource::Env(PIN_VAR.into()),
        )
        .unwrap()
}

fn kcvs(
    session: &TokenSession<'_>,
    scheme: Scheme,
    master: keyman::hsm::KeyHandle,
    out: SecretKeyType,
    k: &str,
) -> Vec<String> {
    let keys = derive_card_keys(session, master, scheme, &kdd(k), out, Purpose::Check).unwrap();
    [&keys.enc, &keys.mac, &keys.dek]
        .iter()
        .map(|d| hex::encode_upper(session.kcv(d.handle()).unwrap().value))
        .collect()
}

#[test]
fn emv_and_visa2_in_the_token_give_the_gp_facts_kcvs() {
    let s = session();
    let master = s
        .import_session_key(
            &SecretSlice::from(K.to_vec()),
            SecretKeyType::Des3TwoKey,
            &[Usage::Derive],
        )
        .unwrap();
    // GP-FACTS "Key diversification": emv, K, KDD 00..09 → KCVs C33013 / 6F4CA6 / BB8179.
    assert_eq!(
        kcvs(
            &s,
            Scheme::Emv,
            master.handle(),
            SecretKeyType::Des3TwoKey,
            "00010203040506070809"
        ),
        ["C33013", "6F4CA6", "BB8179"]
    );
    // visa2, K, KDD 00..09 → KCVs 2BE598 / 58DA38 / 3C328E.
    assert_eq!(
        kcvs(
            &s,
            Scheme::Visa2,
            master.handle(),
            SecretKeyType::Des3TwoKey,
            "00010203040506070809"
        ),
        ["2BE598", "58DA38", "3C328E"]
    );
    // emv row 2 (KDD 01..0A): the token's keys used as AES-128 keys equal the software keys' AES KCVs.
    let k2 = "0102030405060708090A";
    let token = kcvs(&s, Scheme::Emv, master.handle(), SecretKeyType::Aes128, k2);
    let soft: Vec<String> = KeyRole::ALL
        .iter()
        .map(|r| {
            let k = derive_software(Scheme::Emv, &K, &kdd(k2), *r).unwrap();
            hex::encode_upper(gp_core::kcv::kcv_aes(&AesKey::from_slice(&k).unwrap()))
        })
        .collect();
    assert_eq!(token, soft);
}

#[test]
fn aes_scheme_in_the_token_matches_the_software_reference() {
    let s = session();
    let master = s
        .import_session_key(
            &SecretSlice::from(K.to_vec()),
            SecretKeyType::Aes128,
            &[Usage::Derive],
        )
        .unwrap();
    // Computed independently (see gp_core::diversify tests): 652C48 / E0E0AC / 237C30 by GPC B.6.
    assert_eq!(
        kcvs(
            &s,
            Scheme::Aes,
            master.handle(),
            SecretKeyType::Aes128,
            "00010203040506070809"
        ),
        ["652C48", "E0E0AC", "237C30"]
    );
    // AES-256 and AES-192 masters: the token's keys equal the reference, block by block.
    for len in [24usize, 32] {
        let value: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(7)).collect();
        let ty = if len == 24 {
            SecretKeyType::Aes192
        } else {
            SecretKeyType::Aes256
        };
        let m = s
            .import_session_key(&SecretSlice::from(value.clone()), ty, &[Usage::Derive])
            .unwrap();
        let got = kcvs(&s, Scheme::Aes, m.handle(), ty, "0A0B0C0D0E0F10111213");
        let want: Vec<String> = KeyRole::ALL
            .iter()
            .map(|r| {
                let k =
                    derive_software(Scheme::Aes, &value, &kdd("0A0B0C0D0E0F10111213"), *r).unwrap();
                hex::encode_upper(gp_core::kcv::kcv_aes(&AesKey::from_slice(&k).unwrap()))
            })
            .collect();
        assert_eq!(got, want, "AES-{}", len * 8);
    }
}

#[test]
fn kdf3_is_refused_with_the_missing_mechanism_and_nothing_is_derived() {
    let s = session();
    let master = s
        .import_session_key(
            &SecretSlice::from(K.to_vec()),
            SecretKeyType::Aes128,
            &[Usage::Derive],
        )
        .unwrap();
    let err = derive_card_keys(
        &s,
        master.handle(),
        Scheme::Kdf3,
        &kdd("00010203040506070809"),
        SecretKeyType::Aes128,
        Purpose::Check,
    )
    .err()
    .unwrap()
    .to_string();
    // SoftHSM2 2.6.1 has no SP 800-108 KDF: the refusal names the feature and the missing mechanism.
    assert_eq!(
        err,
        "the token cannot do this: token 'kat' cannot do derive-kdf3: it lacks CKM_SP800_108_COUNTER_KDF \
         (derive); nothing is done outside the token instead"
    );
}

#[test]
fn per_card_daps_in_the_token_equal_the_software_daps() {
    let s = session();
    let hash = gp_core::dap::lfdb_hash(gp_core::dap::HashAlg::Sha1, b"load file data block");
    let card = kdd("00010203040506070809");
    // 3DES master, emv: the retail MAC made from the key's halves in the token equals gp-core's retail
    // MAC under the whole derived key.
    let des = s
        .import_session_key(
            &SecretSlice::from(K.to_vec()),
            SecretKeyType::Des3TwoKey,
            &[Usage::Derive],
        )
        .unwrap();
    let CardDapKey::Des(k1, k2) =
        derive_dap_key(&s, des.handle(), Scheme::Emv, &card, false).unwrap()
    else {
        panic!("a DES DAP key")
    };
    let token_mac = s.retail_mac(&k1, &k2, &hash).unwrap();
    let mut key = dap_derivation_data(Scheme::Emv, &card, SecretKeyType::Des3TwoKey).unwrap();
    assert_eq!(key[7], 0x73);
    use cipher::{BlockEncrypt, KeyInit};
    let tdes = des::TdesEde2::new_from_slice(&K).unwrap();
    for b in key.chunks_mut(8) {
        tdes.encrypt_block(b.into());
    }
    let soft = gp_core::dap::dap_des3(&Des3Key::from_slice(&key).unwrap(), &hash);
    assert_eq!(token_mac, soft);
    // The software retail MAC the token's was compared with is pinned by GP-FACTS's 3DES DAP vector
    // (K over the empty CAP's SHA-1 LFDB hash).
    let sha1_empty = hex::decode("BD74FF188CFF4D78D95A6AC1952166338C49F485").unwrap();
    assert_eq!(
        hex::encode_upper(gp_core::dap::dap_des3(
            &Des3Key::from_slice(&K).unwrap(),
            &sha1_empty
        )),
        "D49391127619DCF5"
    );

    // AES master, aes scheme: CMAC in the token under the derived key equals gp-core's AES DAP.
    let aes_m = s
        .import_session_key(
            &SecretSlice::from(K.to_vec()),
            SecretKeyType::Aes128,
            &[Usage::Derive, Usage::Sign],
        )
        .unwrap();
    let sha256 = gp_core::dap::lfdb_hash(gp_core::dap::HashAlg::Sha256, b"load file data block");
    let CardDapKey::Aes(k) = derive_dap_key(&s, aes_m.handle(), Scheme::Aes, &card, true).unwrap()
    else {
        panic!("an AES DAP key")
    };
    let token = s.aes_cmac(k.handle(), &sha256).unwrap();
    let mut data = dap_derivation_data(Scheme::Aes, &card, SecretKeyType::Aes128).unwrap();
    aes::Aes128::new_from_slice(&K)
        .unwrap()
        .encrypt_block(data.as_mut_slice().into());
    assert_eq!(
        token,
        gp_core::dap::dap_aes(&AesKey::from_slice(&data).unwrap(), &sha256)
    );
    // One AES DAP for every card, GP-FACTS vector: K over the empty CAP's SHA-256 LFDB hash.
    let empty256 =
        hex::decode("8D5AC9E226E3F0A89457FB078470A9378DAED8B96BA6CBE839513CDF08D27A38").unwrap();
    assert_eq!(
        hex::encode_upper(s.aes_cmac(aes_m.handle(), &empty256).unwrap()),
        "94B7D65FE750611D0B5E693CC6FD0152"
    );
}

/// A card that answers from a script: each command must be the expected bytes.
struct Scripted {
    exchanges: Vec<(Vec<u8>, Vec<u8>)>,
}

impl signer::transport::Transport for Scripted {
    fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Vec<u8>, signer::Error> {
        assert!(!self.exchanges.is_empty(), "unexpected command");
        let (want, answer) = self.exchanges.remove(0);
        assert_eq!(hex::encode_upper(apdu), hex::encode_upper(want));
        Ok(answer)
    }
}

#[test]
fn scp02_in_softhsm_runs_the_channel_and_refuses_put_key_data_exactly() {
    use gp_core::scp02::{InitializeUpdateResponse, SecurityLevel};
    use signer::channel::scp02::Scp02Channel;
    use signer::channel::StaticKeys;
    let s = session();
    let k = s
        .import_session_key(
            &SecretSlice::from(K.to_vec()),
            SecretKeyType::Des3TwoKey,
            &[Usage::Encrypt],
        )
        .unwrap();
    let keys = StaticKeys {
        enc: k.handle(),
        mac: k.handle(),
        dek: k.handle(),
    };
    // GP-FACTS "Real card, static keys all K, i=15": the session keys come from SoftHSM2's 3DES-CBC.
    let iu = InitializeUpdateResponse::parse(
        &hex::decode("000074746E6E6E6262620102069FAA2A0591E73367DD78794D04315E").unwrap(),
    )
    .unwrap();
    let mut card = Scripted {
        exchanges: vec![(
            hex::decode("84820100107C799B3C771DBAE6BEF49310977617BA").unwrap(),
            vec![0x90, 0x00],
        )],
    };
    let hc: [u8; 8] = hex::decode("D5AD539A60CA5E72").unwrap().try_into().unwrap();
    let ch = Scp02Channel::authenticate(&mut card, &s, keys, hc, &iu, SecurityLevel::C_MAC, true)
        .unwrap();
    // SoftHSM2 2.6.1 cannot wrap with DES3-ECB: PUT KEY key data is refused, naming what is missing.
    let err = ch.put_key_data(k.handle()).err().unwrap().to_string();
    assert_eq!(
        err,
        "the token cannot do this: token 'kat' cannot do scp02-key-loading: it lacks CKM_DES3_ECB (wrap); \
         nothing is done outside the token instead"
    );
}
