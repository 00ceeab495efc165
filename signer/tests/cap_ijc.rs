//! IJC input (a raw Load File Data Block): parsed into the same typed values as a CAP, and refused when
//! components are unknown, repeated, out of order, truncated or followed by junk.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use signer::cap::{build_demo_cap, CapError, CapFile, ComponentKind, LfdbPolicy, LoadFile};

const PKG: [u8; 5] = [0xF0, 0x00, 0x00, 0x00, 0x01];
const APPLET: [u8; 6] = [0xF0, 0x00, 0x00, 0x00, 0x01, 0x01];

fn demo_cap() -> CapFile {
    CapFile::parse(&build_demo_cap(&PKG, &APPLET, "ijc/demo").unwrap()).unwrap()
}

/// The components of the demo LFDB as separate byte strings, in load order.
fn parts(policy: LfdbPolicy) -> Vec<Vec<u8>> {
    demo_cap()
        .load_file(policy)
        .components()
        .iter()
        .map(|c| c.as_bytes().to_vec())
        .collect()
}

fn refuse(bytes: &[u8]) -> CapError {
    match LoadFile::from_ijc(bytes) {
        Ok(_) => panic!("hostile IJC accepted"),
        Err(e) => e,
    }
}

#[test]
fn parses_typed_values() {
    let cap = demo_cap();
    for policy in [LfdbPolicy::WithDescriptor, LfdbPolicy::WithoutDescriptor] {
        let lfdb = cap.lfdb(policy);
        let lf = LoadFile::from_ijc(&lfdb).unwrap();
        assert_eq!(lf.package_aid(), PKG);
        assert_eq!(lf.applets()[0].aid, APPLET);
        assert_eq!(lf.header().package_name.as_deref(), Some("ijc/demo"));
        assert_eq!(lf.policy(), policy);
        assert_eq!(lf.lfdb(), lfdb);
    }
}

#[test]
fn empty_input_lacks_a_header() {
    assert!(matches!(
        refuse(&[]),
        CapError::MissingComponent {
            component: ComponentKind::Header
        }
    ));
}

#[test]
fn unknown_tag_and_trailing_junk() {
    let mut bytes = demo_cap().lfdb(LfdbPolicy::WithoutDescriptor);
    let end = bytes.len() as u64;
    bytes.extend_from_slice(&[0x42, 0x00, 0x00]);
    assert!(matches!(refuse(&bytes), CapError::UnknownTag { offset, tag: 0x42 } if offset == end));
    let mut bytes = demo_cap().lfdb(LfdbPolicy::WithoutDescriptor);
    bytes.push(0x00);
    assert!(matches!(
        refuse(&bytes),
        CapError::UnknownTag { tag: 0, .. }
    ));
}

#[test]
fn truncated_component() {
    let bytes = demo_cap().lfdb(LfdbPolicy::WithDescriptor);
    let err = refuse(&bytes[..bytes.len() - 1]);
    assert!(
        matches!(
            err,
            CapError::ComponentLength {
                component: ComponentKind::Descriptor,
                ..
            }
        ),
        "{err:?}"
    );
    // A lone tag byte at the end.
    let mut bytes = demo_cap().lfdb(LfdbPolicy::WithoutDescriptor);
    bytes.push(ComponentKind::Descriptor.tag());
    assert!(matches!(
        refuse(&bytes),
        CapError::ComponentLength {
            component: ComponentKind::Descriptor,
            ..
        }
    ));
}

#[test]
fn duplicate_component() {
    let mut p = parts(LfdbPolicy::WithoutDescriptor);
    let method = p[5].clone();
    p.insert(5, method);
    match refuse(&p.concat()) {
        CapError::DuplicateComponent {
            component,
            first,
            second,
        } => {
            assert_eq!(component, ComponentKind::Method);
            assert!(first.contains("IJC offset") && second.contains("IJC offset"));
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn out_of_order() {
    // The CAP tag order (ConstantPool before Class) is not the load order.
    let mut p = parts(LfdbPolicy::WithoutDescriptor);
    let cp = p.remove(7);
    p.insert(4, cp);
    match refuse(&p.concat()) {
        CapError::OutOfOrder {
            component, after, ..
        } => {
            assert_eq!(component, ComponentKind::Class);
            assert_eq!(after, ComponentKind::ConstantPool);
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn debug_component_is_not_loadable() {
    let mut bytes = demo_cap().lfdb(LfdbPolicy::WithDescriptor);
    bytes.extend_from_slice(&[12, 0x00, 0x01, 0x00]);
    assert!(matches!(
        refuse(&bytes),
        CapError::NotLoadable {
            component: ComponentKind::Debug,
            ..
        }
    ));
}

#[test]
fn missing_required_component() {
    let p = parts(LfdbPolicy::WithoutDescriptor);
    // Drop RefLocation (the last one).
    let bytes = p[..p.len() - 1].concat();
    assert!(matches!(
        refuse(&bytes),
        CapError::MissingComponent {
            component: ComponentKind::RefLocation
        }
    ));
}

#[test]
fn oversized_input() {
    let bytes = vec![0u8; LoadFile::MAX_IJC_BYTES + 1];
    assert!(matches!(refuse(&bytes), CapError::InputTooLarge { .. }));
}

#[test]
fn every_truncation_and_byte_flip_is_an_error_not_a_panic() {
    let bytes = demo_cap().lfdb(LfdbPolicy::WithDescriptor);
    // Cutting exactly before the Descriptor leaves a valid load file without it; every other cut fails.
    let without_len = demo_cap().lfdb(LfdbPolicy::WithoutDescriptor).len();
    for len in 0..bytes.len() {
        let result = LoadFile::from_ijc(&bytes[..len]);
        assert_eq!(result.is_ok(), len == without_len, "prefix of {len} bytes");
    }
    for i in 0..bytes.len() {
        for flip in [0x01u8, 0x10, 0x80, 0xFF] {
            let mut b = bytes.clone();
            b[i] ^= flip;
            let _ = LoadFile::from_ijc(&b);
        }
    }
}
