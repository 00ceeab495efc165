//! Per-card keys and DAPs on a second, independent PKCS#11 implementation: NSS softokn, started with its
//! initialisation string. Where NSS has a mechanism SoftHSM2 lacks (SP 800-108 for `kdf3`), the token's
//! result must equal GP-FACTS's vector; where its key-database token offers no mechanism for a feature,
//! the exact refusal the user gets is asserted.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use aes::cipher::{BlockEncrypt, KeyInit};
use gp_core::diversify::Scheme;
use keyman::hsm::capabilities::Feature;
use keyman::hsm::{register_module_init, Hsm, SecretKeyType, TokenSession, TokenUri, Usage};
use keyman::pin::PinSource;
use keyman::secret::KeyValue;
use postissue_tests::{NssDb, NSS_MODULE, NSS_TOKEN, PIN_VAR};
use signer::diversify::{derive_card_keys, derive_dap_key, CardDapKey, Purpose};
use std::path::Path;
use std::sync::OnceLock;

/// GP-FACTS default test key K.
const K: [u8; 16] = [
    0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F,
];
const KDD: [u8; 10] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];

/// One NSS database for the whole test process (a module is initialised once per process).
fn hsm() -> &'static Hsm {
    static DB: OnceLock<(NssDb, Hsm)> = OnceLock::new();
    &DB.get_or_init(|| {
        let db = NssDb::new();
        std::env::set_var(PIN_VAR, &db.pin);
        register_module_init(Path::new(NSS_MODULE), &db.init_string()).unwrap();
        let hsm = Hsm::load(Some(Path::new(NSS_MODULE))).unwrap();
        (db, hsm)
    })
    .1
}

fn session() -> TokenSession<'static> {
    hsm()
        .open(
            &TokenUri::parse(NSS_TOKEN).unwrap(),
            &PinSource::Env(PIN_VAR.into()),
        )
        .unwrap()
}

/// A persistent master with value `value`, made as a ceremony makes one from components.
fn master(
    s: &TokenSession<'_>,
    label: &str,
    key_type: SecretKeyType,
    value: &[u8],
) -> keyman::hsm::KeyHandle {
    let spec = keyman::hsm::SecretKeySpec {
        label: label.into(),
        id: label.as_bytes().to_vec(),
        key_type,
        usages: vec![Usage::Derive],
        extractable: false,
    };
    let value = KeyValue::new(zeroize::Zeroizing::new(value.to_vec()), key_type).unwrap();
    s.create_secret_from_value(&spec, &value).unwrap().0
}

/// AES-ECB of a zero block under a published key value, computed on the host.
fn aes_zero_block(key: &str) -> Vec<u8> {
    let key = hex::decode(key).unwrap();
    let cipher = aes::Aes128::new_from_slice(&key).unwrap();
    let mut block = aes::Block::default();
    cipher.encrypt_block(&mut block);
    block.to_vec()
}

#[test]
fn kdf3_in_nss_gives_the_gp_facts_keys() {
    let s = session();
    let m = master(&s, "kdf3-master", SecretKeyType::Aes128, &K);
    let keys = derive_card_keys(
        &s,
        m,
        Scheme::Kdf3,
        &KDD,
        SecretKeyType::Aes128,
        Purpose::Check,
    )
    .unwrap();
    // GP-FACTS "kdf3": K, KDD 00..09 → ENC 808B…8843, MAC 6594…6275, DEK 6A74…D7CC. The derived keys are
    // sensitive and never leave the token: each encrypts a zero block there, compared in full with the
    // same block under the published value.
    for (key, want) in [
        (&keys.enc, "808BC985A1069AD2A9AC94E0FE7B8843"),
        (&keys.mac, "65942E0BF4F3F32AEFACBA5671456275"),
        (&keys.dek, "6A74F6F6040CCA10D8A3FDC7914FD7CC"),
    ] {
        assert_eq!(
            s.encrypt_ecb(key.handle(), &[0; 16]).unwrap(),
            aes_zero_block(want)
        );
        let info = s.key_info(key.handle()).unwrap();
        assert!(info.sensitive && !info.extractable, "{info:?}");
    }
    // A per-card DAP key by kdf3 is an AES key with the sign usage only.
    match derive_dap_key(&s, m, Scheme::Kdf3, &KDD, true).unwrap() {
        CardDapKey::Aes(k) => {
            let info = s.key_info(k.handle()).unwrap();
            assert_eq!(info.usages, [Usage::Sign]);
            assert!(info.sensitive && !info.extractable);
        }
        CardDapKey::Des(..) => panic!("kdf3 gives AES DAP keys"),
    }
    s.destroy(m).unwrap();
}

#[test]
fn nss_key_database_offers_no_ecb_encrypt_data_and_emv_is_refused_exactly() {
    let s = session();
    let m = master(&s, "emv-master", SecretKeyType::Des3TwoKey, &K);
    assert!(!s.probe(Feature::DeriveEmv).unwrap().available());
    let err = derive_card_keys(
        &s,
        m,
        Scheme::Emv,
        &KDD,
        SecretKeyType::Des3TwoKey,
        Purpose::Check,
    )
    .err()
    .unwrap()
    .to_string();
    assert_eq!(
        err,
        "the token cannot do this: token 'NSS Certificate DB' cannot do derive-emv: it lacks \
         CKM_DES3_ECB_ENCRYPT_DATA (derive); nothing is done outside the token instead"
    );
    // NSS would perform the unlisted derivation if asked; the tools never ask. The DES halves of a
    // 3DES DAP key are refused the same way.
    let err = s.derive_des_half(m, &[0; 8]).err().unwrap().to_string();
    assert_eq!(
        err,
        "the token cannot do this: token 'NSS Certificate DB' does not offer CKM_DES3_ECB_ENCRYPT_DATA \
         (derive), which this derivation needs; nothing is done outside the token instead"
    );
    s.destroy(m).unwrap();
}

#[test]
fn nss_wraps_to_exactly_the_rfc_3394_bytes() {
    // NSS softokn over-estimates the wrapped length in C_WrapKey's length query; the wrapped key must be
    // exactly RFC 3394's 24 bytes, equal to the `aes-kw` crate's wrap of the same key under the same KEK.
    let s = session();
    let kek_value = [7u8; 32];
    let kek = {
        let spec = keyman::hsm::SecretKeySpec {
            label: "kek-probe".into(),
            id: b"kek-probe".to_vec(),
            key_type: SecretKeyType::Aes256,
            usages: vec![Usage::Wrap],
            extractable: false,
        };
        let value = KeyValue::new(
            zeroize::Zeroizing::new(kek_value.to_vec()),
            SecretKeyType::Aes256,
        )
        .unwrap();
        s.create_secret_from_value(&spec, &value).unwrap().0
    };
    let key = {
        let spec = keyman::hsm::SecretKeySpec {
            label: "wrapped-probe".into(),
            id: b"wrapped-probe".to_vec(),
            key_type: SecretKeyType::Aes128,
            usages: vec![Usage::Derive],
            extractable: true,
        };
        let value =
            KeyValue::new(zeroize::Zeroizing::new(K.to_vec()), SecretKeyType::Aes128).unwrap();
        s.create_secret_from_value(&spec, &value).unwrap().0
    };
    let wrapped = s
        .wrap_key(keyman::hsm::WrapMechanism::AesKeyWrap, kek, key)
        .unwrap();
    let mut want = [0u8; 24];
    aes_kw::KekAes256::from(kek_value)
        .wrap(&K, &mut want)
        .unwrap();
    assert_eq!(wrapped, want);
    s.destroy(key).unwrap();
    s.destroy(kek).unwrap();
}

#[test]
fn nss_derives_no_extractable_key_from_a_non_extractable_master() {
    // Keys for PUT KEY must leave the token wrapped, so they are derived extractable; NSS refuses that
    // from a master that is not, and the user is told why instead of a bare PKCS#11 code.
    let s = session();
    let m = master(&s, "kdf3-fixed-master", SecretKeyType::Aes128, &K);
    let err = derive_card_keys(
        &s,
        m,
        Scheme::Kdf3,
        &KDD,
        SecretKeyType::Aes128,
        Purpose::PutKey,
    )
    .err()
    .unwrap()
    .to_string();
    assert_eq!(
        err,
        "the token cannot do this: token 'NSS Certificate DB' derives no extractable key from a master \
         that is not extractable (NSS softokn's rule), and a key for PUT KEY must leave the token \
         wrapped; only a master made with extractable: true can serve PUT KEY on this token"
    );
    assert!(derive_card_keys(
        &s,
        m,
        Scheme::Kdf3,
        &KDD,
        SecretKeyType::Aes128,
        Purpose::Channel
    )
    .is_ok());
    s.destroy(m).unwrap();
}

/// A card that answers from a script: each command must be the expected bytes.
struct Scripted {
    exchanges: Vec<(Vec<u8>, Vec<u8>)>,
}

impl signer::transport::Transport for Scripted {
    fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Vec<u8>, signer::Error> {
        assert!(
            !self.exchanges.is_empty(),
            "unexpected command {}",
            hex::encode_upper(apdu)
        );
        let (want, answer) = self.exchanges.remove(0);
        assert_eq!(hex::encode_upper(apdu), hex::encode_upper(want));
        Ok(answer)
    }
}

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

#[test]
fn scp03_session_keys_in_nss_reproduce_a_real_card_trace() {
    use gp_core::scp03::{InitializeUpdateResponse, SecurityLevel};
    use signer::channel::{SecureChannel, SessionKeyPath, StaticKeys};
    let s = session();
    // GP-FACTS "Real card, i=70, KVN 30": static keys, host challenge and INITIALIZE UPDATE response;
    // the EXTERNAL AUTHENTICATE (level 03) and the DELETE command as the card received them.
    let import = |v: &str| {
        s.import_session_key(
            &secrecy::SecretSlice::from(h(v)),
            SecretKeyType::Aes128,
            &[Usage::Sign, Usage::Encrypt, Usage::Derive],
        )
        .unwrap()
    };
    let enc = import("F995D0A069335C7DF42E590317FFEA6D");
    let mac = import("58563362EC5A4541ABCD32B34B1EAE7D");
    let dek = import("0A02A6D687406DCFA09DC70B3EDB7E38");
    let keys = StaticKeys {
        enc: enc.handle(),
        mac: mac.handle(),
        dek: dek.handle(),
    };
    let iu = InitializeUpdateResponse::parse(&h(
        "00000000000000000000300370C40932A6FEFEAEB2E127185170F45FCA000015",
    ))
    .unwrap();
    let hc: [u8; 8] = h("B2BDE1A2DC66BD56").try_into().unwrap();
    let mut card = Scripted {
        exchanges: vec![
            (h("848203001059D54D932423D29F6313C970875F8C2F"), h("9000")),
            (
                h("84E400801829F06AEC3180B3EFE91FF662310B945DE0D5FE66AD67A5B6"),
                h("009000"),
            ),
        ],
    };
    let mut ch =
        SecureChannel::authenticate(&mut card, &s, keys, hc, &iu, SecurityLevel::C_MAC_C_DEC)
            .unwrap();
    assert_eq!(ch.session_key_path(), SessionKeyPath::InToken);
    let delete = gp_core::apdu::CommandApdu::parse(&h("80E400800A4F08A00100015141434C")).unwrap();
    ch.send_ok(&delete, "DELETE").unwrap();
    drop(ch);
    assert!(card.exchanges.is_empty());
}

#[test]
fn scp03_in_nss_refuses_a_card_with_other_keys() {
    use gp_core::scp03::{InitializeUpdateResponse, SecurityLevel};
    use signer::channel::{SecureChannel, StaticKeys};
    let s = session();
    let key = s
        .import_session_key(
            &secrecy::SecretSlice::from(K.to_vec()),
            SecretKeyType::Aes128,
            &[Usage::Sign, Usage::Encrypt, Usage::Derive],
        )
        .unwrap();
    let keys = StaticKeys {
        enc: key.handle(),
        mac: key.handle(),
        dek: key.handle(),
    };
    // The i=70 card's answer, whose cryptogram was made with other keys than K.
    let iu = InitializeUpdateResponse::parse(&h(
        "00000000000000000000300370C40932A6FEFEAEB2E127185170F45FCA000015",
    ))
    .unwrap();
    let mut card = Scripted { exchanges: vec![] };
    let err = SecureChannel::authenticate(
        &mut card,
        &s,
        keys,
        h("B2BDE1A2DC66BD56").try_into().unwrap(),
        &iu,
        SecurityLevel::C_MAC_C_DEC,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("the card's cryptogram does not match"),
        "{err}"
    );
}

/// A card that accepts every command.
struct AcceptAll;

impl signer::transport::Transport for AcceptAll {
    fn transmit_raw(&mut self, _apdu: &[u8]) -> Result<Vec<u8>, signer::Error> {
        Ok(h("9000"))
    }
}

/// Static key K as a two-key 3DES session object that may encrypt (the SCP02 session key derivation).
fn des_k<'s, 'h>(s: &'s TokenSession<'h>) -> keyman::hsm::DerivedKey<'s, 'h> {
    s.import_session_key(
        &secrecy::SecretSlice::from(K.to_vec()),
        SecretKeyType::Des3TwoKey,
        &[Usage::Encrypt],
    )
    .unwrap()
}

#[test]
fn scp02_with_static_keys_in_nss_reproduces_a_real_card_trace() {
    use gp_core::scp02::{InitializeUpdateResponse, SecurityLevel};
    use signer::channel::scp02::Scp02Channel;
    use signer::channel::StaticKeys;
    let s = session();
    let k = des_k(&s);
    let keys = StaticKeys {
        enc: k.handle(),
        mac: k.handle(),
        dek: k.handle(),
    };
    // GP-FACTS "Real card, static keys all K, i=15": INITIALIZE UPDATE answer, EXTERNAL AUTHENTICATE and a
    // GET STATUS as the card received them.
    let iu = InitializeUpdateResponse::parse(&h(
        "000074746E6E6E6262620102069FAA2A0591E73367DD78794D04315E",
    ))
    .unwrap();
    let mut card = Scripted {
        exchanges: vec![
            (h("84820100107C799B3C771DBAE6BEF49310977617BA"), h("9000")),
            (h("84F220020A4F00BB6E71C0EFCFCF0D00"), h("9000")),
        ],
    };
    let hc: [u8; 8] = h("D5AD539A60CA5E72").try_into().unwrap();
    let mut ch =
        Scp02Channel::authenticate(&mut card, &s, keys, hc, &iu, SecurityLevel::C_MAC, true)
            .unwrap();
    ch.send_ok(
        // Sent with Le 00, as the wire trace shows (Le is not MACed).
        &gp_core::apdu::CommandApdu::parse(&h("80F22002024F0000")).unwrap(),
        "GET STATUS",
    )
    .unwrap();
    drop(ch);
    assert!(card.exchanges.is_empty());
}

#[test]
fn scp02_put_key_data_is_wrapped_by_nss_under_the_session_dek() {
    use gp_core::keys::Des3Key;
    use gp_core::scp02::{self, InitializeUpdateResponse, SecurityLevel};
    use signer::channel::scp02::Scp02Channel;
    use signer::channel::StaticKeys;
    let s = session();
    let k = des_k(&s);
    let keys = StaticKeys {
        enc: k.handle(),
        mac: k.handle(),
        dek: k.handle(),
    };
    // A card with static keys K at sequence counter 0000; its cryptogram made by the card's own code.
    let hc = [1u8; 8];
    let cc = [2u8; 6];
    let mut soft = Des3Key::from_slice(&K).unwrap();
    let card_keys =
        scp02::derive_session_keys(&mut soft.clone(), &mut soft.clone(), &mut soft, [0, 0])
            .unwrap();
    let mut iu = h("00000000000000000000010200000202020202020000000000000000");
    let crypt = scp02::card_cryptogram(&card_keys, &hc, [0, 0], &cc);
    iu[20..28].copy_from_slice(&crypt);
    let iu = InitializeUpdateResponse::parse(&iu).unwrap();
    let mut card = AcceptAll;
    let ch = Scp02Channel::authenticate(&mut card, &s, keys, hc, &iu, SecurityLevel::C_MAC, true)
        .unwrap();
    // The key to load: K, extractable only wrapped, in the token.
    let spec = keyman::hsm::SecretKeySpec {
        label: "scp02-new-key".into(),
        id: b"scp02-new-key".to_vec(),
        key_type: SecretKeyType::Des3TwoKey,
        usages: vec![Usage::Encrypt],
        extractable: true,
    };
    let value = KeyValue::new(
        zeroize::Zeroizing::new(K.to_vec()),
        SecretKeyType::Des3TwoKey,
    )
    .unwrap();
    let new_key = s.create_secret_from_value(&spec, &value).unwrap().0;
    // GP-FACTS "SCP02": S-DEK(seq 0000) = E119…89D4, and PUT KEY of K gives 80 10 EFBE…20AF 03 8BAF47.
    // NSS stores DES keys with odd parity (K becomes 4040 4343 4545 4646 4949 4A4A 4C4C 4F4F, the same DES
    // key), so its wrap carries the parity-adjusted bytes: under the published S-DEK the block decrypts
    // to K up to parity bits, and the KCV is GP-FACTS's 8BAF47.
    let data = ch.put_key_data(new_key).unwrap();
    let bytes = data.to_bytes().unwrap();
    assert_eq!(bytes[..2], [0x80, 0x10]);
    assert_eq!(hex::encode_upper(&bytes[18..]), "038BAF47");
    let s_dek = h("E11987EE331B417A5D67D760692F89D4");
    let tdes = des::TdesEde2::new_from_slice(&s_dek).unwrap();
    let mut clear = bytes[2..18].to_vec();
    for block in clear.chunks_mut(8) {
        des::cipher::BlockDecrypt::decrypt_block(&tdes, block.into());
    }
    let no_parity = |v: &[u8]| v.iter().map(|b| b & 0xFE).collect::<Vec<u8>>();
    assert_eq!(no_parity(&clear), no_parity(&K));
    assert_eq!(
        hex::encode_upper(&clear),
        "40404343454546464949 4A4A4C4C4F4F".replace(' ', "")
    );
    drop(ch);
    s.destroy(new_key).unwrap();
}

/// A card running the card side of `gp_core::scp03` (the code the reference card runs), which answers
/// every command after EXTERNAL AUTHENTICATE with the command's data reversed.
struct SoftCard {
    session: gp_core::scp03::Session,
    host_cryptogram: [u8; 8],
    /// Flip one bit of every response's R-MAC, as a man in the middle would.
    tamper: bool,
}

impl signer::transport::Transport for SoftCard {
    fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Vec<u8>, signer::Error> {
        use gp_core::apdu::{CommandApdu, ResponseApdu};
        let cmd = CommandApdu::parse(apdu).unwrap();
        if cmd.ins == 0x82 {
            self.session
                .verify_external_authenticate(&cmd, &self.host_cryptogram)
                .unwrap();
            return Ok(h("9000"));
        }
        let plain = self.session.unwrap_command(&cmd).unwrap();
        let mut data = plain.data.clone();
        data.reverse();
        let resp = self
            .session
            .wrap_response(ResponseApdu::new(data, gp_core::sw::Sw::from(0x9000)));
        let mut bytes = resp.to_bytes();
        if self.tamper {
            if let Some(b) = bytes.len().checked_sub(3).and_then(|at| bytes.get_mut(at)) {
                *b ^= 1;
            }
        }
        Ok(bytes)
    }
}

#[test]
fn scp03_in_nss_at_level_33_matches_the_card_code_and_a_real_card() {
    use gp_core::keys::AesKey;
    use gp_core::scp03::{self, InitializeUpdateResponse, SecurityLevel};
    use signer::channel::{SecureChannel, SessionKeyPath, StaticKeys};
    let s = session();
    let k = s
        .import_session_key(
            &secrecy::SecretSlice::from(K.to_vec()),
            SecretKeyType::Aes128,
            &[Usage::Sign, Usage::Encrypt, Usage::Derive],
        )
        .unwrap();
    let keys = StaticKeys {
        enc: k.handle(),
        mac: k.handle(),
        dek: k.handle(),
    };
    // GP-FACTS "Same card, default key K, level 33": the EXTERNAL AUTHENTICATE a real card accepted.
    let iu = InitializeUpdateResponse::parse(&h(
        "00010203040506070809000370A5874C57119B976BF94879E36F29E039000001",
    ))
    .unwrap();
    let hc: [u8; 8] = h("2C8130E574247B1B").try_into().unwrap();
    let mut card = Scripted {
        exchanges: vec![(h("8482330010A75F1CD48F3B93DFA57E690937921F92"), h("9000"))],
    };
    let ch = SecureChannel::authenticate(&mut card, &s, keys, hc, &iu, SecurityLevel::ALL).unwrap();
    assert_eq!(ch.session_key_path(), SessionKeyPath::InToken);
    drop(ch);

    // Then commands with C-MAC and C-DEC, responses with R-MAC and R-ENC, against the card's own code.
    let hc = [0x11u8; 8];
    let cc = [0x22u8; 8];
    let soft = AesKey::from_slice(&K).unwrap();
    let card_keys =
        scp03::derive_session_keys(&mut soft.clone(), &mut soft.clone(), 16, &hc, &cc).unwrap();
    let iu = InitializeUpdateResponse {
        kdd: [0; 10],
        kvn: 0x30,
        scp_id: 0x03,
        i: 0x00,
        card_challenge: cc,
        card_cryptogram: scp03::card_cryptogram(&card_keys, &hc, &cc),
        sequence_counter: None,
    };
    let mut card = SoftCard {
        host_cryptogram: scp03::host_cryptogram(&card_keys, &hc, &cc),
        session: scp03::Session::card(card_keys.clone()),
        tamper: false,
    };
    let mut ch =
        SecureChannel::authenticate(&mut card, &s, keys, hc, &iu, SecurityLevel::ALL).unwrap();
    for data in [&b"first command"[..], &[0x5A; 40][..], &[][..]] {
        let cmd = gp_core::apdu::CommandApdu::new(0x80, 0xCA, 0x00, 0x66, data.to_vec(), None);
        let resp = ch.send_ok(&cmd, "ECHO").unwrap();
        let mut want = data.to_vec();
        want.reverse();
        assert_eq!(resp.data, want);
    }
    drop(ch);

    // A response whose R-MAC was altered is refused, and the session is closed for good.
    let mut card = SoftCard {
        host_cryptogram: scp03::host_cryptogram(&card_keys, &hc, &cc),
        session: scp03::Session::card(card_keys),
        tamper: true,
    };
    let mut ch =
        SecureChannel::authenticate(&mut card, &s, keys, hc, &iu, SecurityLevel::ALL).unwrap();
    let cmd = gp_core::apdu::CommandApdu::new(0x80, 0xCA, 0x00, 0x66, b"x".to_vec(), None);
    let err = ch.send(&cmd).err().unwrap().to_string();
    assert!(err.contains("bad R-MAC; the session is closed"), "{err}");
    let err = ch.send(&cmd).err().unwrap().to_string();
    assert!(err.contains("closed by an earlier error"), "{err}");
}
