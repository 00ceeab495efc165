//! Known-answer tests for CAP → LFDB on real CAP files (GP-FACTS "Load files and DAP").
//!
//! The fixtures are the repository's copies under `fixtures/` (their provenance, licence and SHA-256
//! are in `fixtures/README.md`). A missing or altered fixture fails the tests: the vectors are only
//! worth something when they are checked.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::path::PathBuf;

use sha1::Digest as _;
use signer::cap::{CapFile, ComponentKind, LfdbPolicy, LoadFile};

/// The fixtures and their SHA-256, as `fixtures/README.md` records them.
const FIXTURES: [(&str, &str); 2] = [
    (
        "empty-2.2.1.cap",
        "107ed9e70410ddf6b52bce7dd761a750ec91a421d30a0f636353ecc04f729195",
    ),
    (
        "helloworld.cap",
        "728ea21d93b4306c29b779c033a1081659ed0e69eeb1077de80481d8f9652d97",
    ),
];

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn fixture(name: &str) -> Vec<u8> {
    let path = fixtures_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the CAP fixture {} ({e}): it is part of the repository (fixtures/README.md)",
            path.display()
        )
    })
}

fn sha1_hex(data: &[u8]) -> String {
    hex::encode_upper(sha1::Sha1::digest(data))
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode_upper(sha2::Sha256::digest(data))
}

#[test]
fn fixtures_match_their_recorded_hashes() {
    let readme = std::fs::read_to_string(fixtures_dir().join("README.md"))
        .expect("fixtures/README.md records where each fixture comes from");
    for (name, sha256) in FIXTURES {
        assert_eq!(
            sha256_hex(&fixture(name)).to_lowercase(),
            sha256,
            "fixtures/{name} differs from the copy taken from its source project"
        );
        assert!(
            readme.contains(name) && readme.contains(sha256),
            "fixtures/README.md must name {name} with its SHA-256 {sha256}"
        );
    }
}

#[test]
fn empty_cap_lfdb_without_descriptor() {
    let bytes = fixture("empty-2.2.1.cap");
    let cap = CapFile::parse(&bytes).unwrap();
    let lfdb = cap.lfdb(LfdbPolicy::WithoutDescriptor);
    assert_eq!(lfdb.len(), 211);
    assert_eq!(sha1_hex(&lfdb), "BD74FF188CFF4D78D95A6AC1952166338C49F485");
    assert_eq!(
        sha256_hex(&lfdb),
        "8D5AC9E226E3F0A89457FB078470A9378DAED8B96BA6CBE839513CDF08D27A38"
    );
}

#[test]
fn empty_cap_lfdb_with_descriptor() {
    let bytes = fixture("empty-2.2.1.cap");
    let cap = CapFile::parse(&bytes).unwrap();
    let lfdb = cap.lfdb(LfdbPolicy::WithDescriptor);
    assert_eq!(lfdb.len(), 283);
    assert_eq!(
        sha256_hex(&lfdb),
        "32BD8F40D709C500204D3887F83FE4AA4440DAF70E7268E6ECCECED6FAD86EEF"
    );
}

#[test]
fn empty_cap_typed_header_and_applet() {
    let bytes = fixture("empty-2.2.1.cap");
    let cap = CapFile::parse(&bytes).unwrap();
    assert_eq!(cap.package_aid(), hex::decode("0102030405").unwrap());
    assert_eq!(cap.package_name(), "testapplets/empty");
    assert_eq!(cap.applets().len(), 1);
    assert_eq!(
        cap.applets()[0].aid,
        hex::decode("0102030405060708").unwrap()
    );
    assert_eq!(cap.applets()[0].install_method_offset, 0x13);
    let h = cap.header();
    assert_eq!((h.format_major, h.format_minor), (2, 1));
    assert!(h.has_applets() && !h.has_export() && !h.int_required());
    assert_eq!(h.package_name, None);
    let imports: Vec<String> = cap
        .imports()
        .iter()
        .map(|i| hex::encode_upper(&i.aid))
        .collect();
    assert_eq!(
        imports,
        ["A0000000620101", "A0000000620102", "A0000000620001"]
    );
    let kinds: Vec<ComponentKind> = cap.components().iter().map(|c| c.kind()).collect();
    use ComponentKind as K;
    assert_eq!(
        kinds,
        [
            K::Header,
            K::Directory,
            K::Import,
            K::Applet,
            K::Class,
            K::Method,
            K::StaticField,
            K::ConstantPool,
            K::RefLocation,
            K::Descriptor
        ]
    );
}

#[test]
fn helloworld_cap_lfdb_with_descriptor() {
    let bytes = fixture("helloworld.cap");
    let cap = CapFile::parse(&bytes).unwrap();
    assert_eq!(hex::encode_upper(cap.package_aid()), "D0D1D2D3D4D501");
    assert_eq!(
        cap.package_name(),
        "net/sourceforge/globalplatform/jc/helloworld"
    );
    assert_eq!(hex::encode_upper(&cap.applets()[0].aid), "D0D1D2D3D4D50101");
    let lfdb = cap.lfdb(LfdbPolicy::WithDescriptor);
    assert_eq!(lfdb.len(), 343);
    assert_eq!(
        sha256_hex(&lfdb),
        "60A16FEA3D7BAF74DFE112ABF645972D6869EDEE8A46F4109CE78F40D33E57B5"
    );
}

#[test]
fn ijc_round_trip_of_fixtures() {
    for name in ["empty-2.2.1.cap", "helloworld.cap"] {
        let bytes = fixture(name);
        let cap = CapFile::parse(&bytes).unwrap();
        for policy in [LfdbPolicy::WithDescriptor, LfdbPolicy::WithoutDescriptor] {
            let lfdb = cap.lfdb(policy);
            let ijc = LoadFile::from_ijc(&lfdb).unwrap();
            assert_eq!(ijc.lfdb(), lfdb, "{name} {policy}");
            assert_eq!(ijc.lfdb_len(), lfdb.len());
            assert_eq!(ijc.policy(), policy);
            assert_eq!(ijc, cap.load_file(policy));
            assert_eq!(ijc.package_aid(), cap.package_aid());
            assert_eq!(ijc.applets(), cap.applets());
        }
    }
}

#[test]
fn install_for_load_vector_uses_the_parsed_aid() {
    // GP-FACTS: INSTALL [for load] of the empty CAP to the ISD with the SHA-256 LFDB hash. Built here from
    // the parsed package AID and the computed hash to show the typed values are the ones INSTALL needs.
    let bytes = fixture("empty-2.2.1.cap");
    let cap = CapFile::parse(&bytes).unwrap();
    let hash = sha2::Sha256::digest(cap.lfdb(LfdbPolicy::WithoutDescriptor));
    let isd = hex::decode("A000000151000000").unwrap();
    let mut data = vec![cap.package_aid().len() as u8];
    data.extend_from_slice(cap.package_aid());
    data.push(isd.len() as u8);
    data.extend_from_slice(&isd);
    data.push(hash.len() as u8);
    data.extend_from_slice(&hash);
    data.extend_from_slice(&[0, 0]);
    let mut apdu = vec![0x80, 0xE6, 0x02, 0x00, data.len() as u8];
    apdu.extend_from_slice(&data);
    apdu.push(0x00);
    assert_eq!(
        hex::encode_upper(apdu),
        "80E602003205010203040508A000000151000000208D5AC9E226E3F0A89457FB078470A9378DAED8B96BA6CBE839513CDF08D27A38000000"
    );
}

#[test]
fn policy_names() {
    for p in [LfdbPolicy::WithDescriptor, LfdbPolicy::WithoutDescriptor] {
        assert_eq!(p.to_string().parse::<LfdbPolicy>().unwrap(), p);
    }
    assert_eq!(LfdbPolicy::WithDescriptor.to_string(), "with-descriptor");
    assert_eq!(
        LfdbPolicy::WithoutDescriptor.to_string(),
        "without-descriptor"
    );
    assert_eq!(
        serde_json::to_string(&LfdbPolicy::WithoutDescriptor).unwrap(),
        "\"without-descriptor\""
    );
    assert_eq!(
        serde_json::from_str::<LfdbPolicy>("\"with-descriptor\"").unwrap(),
        LfdbPolicy::WithDescriptor
    );
    let err = "with_descriptor".parse::<LfdbPolicy>().unwrap_err();
    assert!(err.to_string().contains("with-descriptor"));
}
