//! A load the card must refuse leaves the registry as it was: a LOAD block altered in transit (the C-MAC
//! no longer fits) and a load file that does not match the hash INSTALL [for load] announced.

mod common;

use common::{load_module, open_token};
use gp_core::diversify::Scheme;
use keyman::hsm::{SecretKeySpec, SecretKeyType, Usage};
use postissue_tests::SoftHsm;
use signer::gp::{self, LoadRequest};
use signer::transport::{SimTransport, Transport};

/// Passes APDUs through, flipping one bit in the data of the chosen LOAD block.
struct Tamper<T: Transport> {
    inner: T,
    load_block: Option<u8>,
}

impl<T: Transport> Transport for Tamper<T> {
    fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Vec<u8>, signer::Error> {
        let mut apdu = apdu.to_vec();
        if apdu.get(1) == Some(&0xE8) && apdu.get(3).copied() == self.load_block && apdu.len() > 10
        {
            apdu[7] ^= 0x01;
        }
        self.inner.transmit_raw(&apdu)
    }
}

fn demo_load_request(tamper_lfdb: bool) -> LoadRequest {
    let cap = signer::cap::build_demo_cap(
        &[0xA0, 0, 0, 0x06, 0x47, 0x50, 0x49, 0x01],
        &[0xA0, 0, 0, 0x06, 0x47, 0x50, 0x49, 0x01, 0x01],
        "com/postissue/hello",
    )
    .unwrap();
    let pkg = signer::package::Package::from_cap(
        &cap,
        signer::cap::LfdbPolicy::WithoutDescriptor,
        "sha256",
    )
    .unwrap();
    let mut lfdb = pkg.lfdb_bytes().unwrap();
    if tamper_lfdb {
        let last = lfdb.len() - 1;
        lfdb[last] ^= 0x80;
    }
    LoadRequest {
        load_file_aid: pkg.load_file_aid().unwrap(),
        lfdb,
        lfdb_hash: pkg.lfdb_hash().unwrap(),
        applets: pkg
            .applets()
            .unwrap()
            .into_iter()
            .map(|a| (a.clone(), a))
            .collect(),
    }
}

#[test]
fn refused_loads_leave_the_registry_unchanged() {
    let store = SoftHsm::new();
    store.init_token("issuer");
    let hsm = load_module(&store);
    let token = open_token(&hsm, "issuer");
    let (master, _) = token
        .generate_secret(&SecretKeySpec {
            label: "isd-kmc".into(),
            id: vec![1],
            key_type: SecretKeyType::Des3TwoKey,
            usages: vec![Usage::Derive],
            extractable: false,
        })
        .unwrap();
    let image = store.path("card.img");
    card_firmware::sim::SimCard::create(&image, &card_firmware::sim::FabProfile::default())
        .unwrap();
    // Each step opens the image anew, as separate tool runs do.
    let open = || SimTransport::open(&image).unwrap();
    gp::personalise(&mut open(), &token, master, Scheme::Emv, false).unwrap();

    let registry = || {
        let mut t = open();
        let (mut ch, _) = gp::open_issuer_channel(&mut t, &token, master, Scheme::Emv).unwrap();
        gp::registry(&mut ch).unwrap()
    };
    let before = registry();

    // 1. A LOAD block altered on the wire: the card's C-MAC check fails (6982) and the session ends.
    let mut tampering = Tamper {
        inner: open(),
        load_block: Some(0),
    };
    let (mut ch, _) = gp::open_issuer_channel(&mut tampering, &token, master, Scheme::Emv).unwrap();
    let err = gp::load_and_install(&mut ch, &demo_load_request(false)).unwrap_err();
    assert!(err.to_string().contains("6982"), "{err}");
    drop(ch);
    assert_eq!(registry(), before);

    // 2. A load file that does not match the hash announced in INSTALL [for load]: refused at the last
    //    block, nothing left behind.
    let mut t2 = open();
    let (mut ch, _) = gp::open_issuer_channel(&mut t2, &token, master, Scheme::Emv).unwrap();
    let err = gp::load_and_install(&mut ch, &demo_load_request(true)).unwrap_err();
    assert!(err.to_string().contains("LOAD"), "{err}");
    drop(ch);
    assert_eq!(registry(), before);

    // 3. The genuine load then succeeds on the same card: nothing from the refused loads is in the way.
    let mut t3 = open();
    let (mut ch, _) = gp::open_issuer_channel(&mut t3, &token, master, Scheme::Emv).unwrap();
    gp::load_and_install(&mut ch, &demo_load_request(false)).unwrap();
    drop(ch);
    let after = registry();
    assert!(after.len() > before.len());
}
