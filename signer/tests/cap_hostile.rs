//! Hostile CAP archives: each test builds one malicious ZIP with the `zip` crate's writer (patching
//! header bytes where the writer refuses to lie) and checks that parsing refuses it with an error naming
//! the entry or component, and never panics.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::io::{Cursor, Read, Write};

use signer::cap::{build_demo_cap, CapError, CapFile, CapLimits, ComponentKind};
use zip::write::SimpleFileOptions;
use zip::CompressionMethod;

const PKG: [u8; 6] = [0xA0, 0x00, 0x00, 0x06, 0x17, 0x42];
const APPLET: [u8; 7] = [0xA0, 0x00, 0x00, 0x06, 0x17, 0x42, 0x01];
const JC: &str = "demo/javacard/";

type Entries = Vec<(String, Vec<u8>)>;

/// The entries of a valid demo CAP (package `demo`).
fn demo_entries() -> Entries {
    let bytes = build_demo_cap(&PKG, &APPLET, "demo").unwrap();
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
    (0..zip.len())
        .map(|i| {
            let mut f = zip.by_index(i).unwrap();
            let mut data = Vec::new();
            f.read_to_end(&mut data).unwrap();
            (f.name().to_owned(), data)
        })
        .collect()
}

fn write_zip_with(entries: &[(String, Vec<u8>)], method: CompressionMethod) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(method);
    for (name, data) in entries {
        w.start_file(name.as_str(), options).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn write_zip(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    write_zip_with(entries, CompressionMethod::Stored)
}

fn component_mut(entries: &mut Entries, kind: ComponentKind) -> &mut Vec<u8> {
    let name = format!("{JC}{}", kind.file_name());
    &mut entries.iter_mut().find(|(n, _)| *n == name).unwrap().1
}

fn refuse(bytes: &[u8]) -> CapError {
    match CapFile::parse(bytes) {
        Ok(cap) => panic!("hostile CAP accepted: package {:02X?}", cap.package_aid()),
        Err(e) => {
            assert!(!e.to_string().is_empty());
            e
        }
    }
}

/// Offset of the central directory record of `name`.
fn central(bytes: &[u8], name: &str) -> usize {
    (0..bytes.len() - 46)
        .find(|&i| {
            bytes[i..i + 4] == [0x50, 0x4b, 0x01, 0x02]
                && bytes[i + 46..].starts_with(name.as_bytes())
        })
        .unwrap_or_else(|| panic!("no central record for {name}"))
}

/// Offset of the local file header of `name`.
fn local(bytes: &[u8], name: &str) -> usize {
    (0..bytes.len() - 30)
        .find(|&i| {
            bytes[i..i + 4] == [0x50, 0x4b, 0x03, 0x04]
                && bytes[i + 30..].starts_with(name.as_bytes())
        })
        .unwrap_or_else(|| panic!("no local header for {name}"))
}

fn put_u16(bytes: &mut [u8], at: usize, v: u16) {
    bytes[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(bytes: &mut [u8], at: usize, v: u32) {
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn get_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

#[test]
fn demo_entries_are_a_valid_baseline() {
    let cap = CapFile::parse(&write_zip(&demo_entries())).unwrap();
    assert_eq!(cap.package_aid(), PKG);
    let deflated = write_zip_with(&demo_entries(), CompressionMethod::Deflated);
    assert_eq!(CapFile::parse(&deflated).unwrap(), cap);
}

#[test]
fn not_a_zip() {
    assert!(matches!(refuse(b""), CapError::NotZip(_)));
    assert!(matches!(
        refuse(b"DECAFFED is not a zip"),
        CapError::NotZip(_)
    ));
    let good = write_zip(&demo_entries());
    assert!(matches!(
        refuse(&good[..good.len() - 10]),
        CapError::NotZip(_)
    ));
}

#[test]
fn input_over_the_archive_limit() {
    let bytes = write_zip(&demo_entries());
    let limits = CapLimits {
        max_archive_bytes: 512,
        ..CapLimits::default()
    };
    let err = CapFile::parse_with_limits(&bytes, &limits).unwrap_err();
    assert!(
        matches!(err, CapError::InputTooLarge { limit: 512, .. }),
        "{err:?}"
    );
}

#[test]
fn too_many_entries() {
    let mut entries = demo_entries();
    for i in 0..40 {
        entries.push((format!("APPLET-INF/f{i}"), vec![0]));
    }
    let limits = CapLimits {
        max_entries: 32,
        ..CapLimits::default()
    };
    let err = CapFile::parse_with_limits(&write_zip(&entries), &limits).unwrap_err();
    assert!(
        matches!(err, CapError::TooManyEntries { limit: 32, .. }),
        "{err:?}"
    );
}

#[test]
fn zip_bomb_declared_size_over_entry_limit() {
    // A header that promises 2 GiB: refused from the central directory alone, nothing is inflated.
    let mut entries = demo_entries();
    entries.push(("APPLET-INF/bomb.bin".to_owned(), vec![0; 16]));
    let mut bytes = write_zip(&entries);
    let c = central(&bytes, "APPLET-INF/bomb.bin");
    put_u32(&mut bytes, c + 24, 0x7FFF_FFFF);
    match refuse(&bytes) {
        CapError::EntryTooLarge {
            entry, declared, ..
        } => {
            assert_eq!(entry, "APPLET-INF/bomb.bin");
            assert_eq!(declared, 0x7FFF_FFFF);
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn zip_bomb_actual_size_over_entry_limit() {
    // An honest header for 17 MiB of zeros that deflate to a few KiB.
    let mut entries = demo_entries();
    entries.push(("APPLET-INF/zeros.bin".to_owned(), vec![0; 17 << 20]));
    let bytes = write_zip_with(&entries, CompressionMethod::Deflated);
    assert!(bytes.len() < 1 << 20);
    assert!(
        matches!(refuse(&bytes), CapError::EntryTooLarge { entry, .. } if entry == "APPLET-INF/zeros.bin")
    );
}

#[test]
fn zip_bomb_compression_ratio() {
    let mut entries = demo_entries();
    entries.push(("APPLET-INF/zeros.bin".to_owned(), vec![0; 2 << 20]));
    let bytes = write_zip_with(&entries, CompressionMethod::Deflated);
    match refuse(&bytes) {
        CapError::CompressionRatio {
            entry,
            compressed,
            uncompressed,
            limit,
        } => {
            assert_eq!(entry, "APPLET-INF/zeros.bin");
            assert_eq!(uncompressed, 2 << 20);
            assert!(uncompressed > compressed * limit);
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn zip_bomb_total_declared_size() {
    let mut entries = demo_entries();
    for i in 0..5 {
        entries.push((
            format!("APPLET-INF/part{i}.bin"),
            (0..60_000u32).map(|x| (x * 7919 % 251) as u8).collect(),
        ));
    }
    let limits = CapLimits {
        max_total_bytes: 200_000,
        ..CapLimits::default()
    };
    let err = CapFile::parse_with_limits(&write_zip(&entries), &limits).unwrap_err();
    assert!(
        matches!(err, CapError::ArchiveTooLarge { limit: 200_000, .. }),
        "{err:?}"
    );
}

#[test]
fn component_inflates_beyond_its_declared_size() {
    // The central directory says Method.cap is 10 bytes; the deflate stream produces more.
    let entries = demo_entries();
    let mut bytes = write_zip_with(&entries, CompressionMethod::Deflated);
    let name = format!("{JC}Method.cap");
    let c = central(&bytes, &name);
    put_u32(&mut bytes, c + 24, 10);
    match refuse(&bytes) {
        CapError::EntryLargerThanDeclared { entry, declared } => {
            assert_eq!(entry, name);
            assert_eq!(declared, 10);
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn component_shorter_than_its_declared_size() {
    let entries = demo_entries();
    let mut bytes = write_zip(&entries);
    let name = format!("{JC}Header.cap");
    let c = central(&bytes, &name);
    let size = get_u32(&bytes, c + 24);
    put_u32(&mut bytes, c + 24, size + 5);
    match refuse(&bytes) {
        CapError::EntrySmallerThanDeclared { entry, .. } | CapError::EntryRead { entry, .. } => {
            assert_eq!(entry, name)
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn corrupt_component_data_fails_its_crc() {
    let entries = demo_entries();
    let mut bytes = write_zip(&entries);
    let name = format!("{JC}Header.cap");
    let l = local(&bytes, &name);
    let data = l + 30 + name.len();
    bytes[data + 8] ^= 0xFF;
    assert!(matches!(refuse(&bytes), CapError::EntryRead { entry, .. } if entry == name));
}

#[test]
fn traversal_and_absolute_paths() {
    for bad in [
        "../../etc/passwd",
        "/etc/passwd",
        "C:/Windows/system32/x.dll",
        "demo/javacard/../../../x",
        "a\\..\\..\\b",
        "demo/..",
    ] {
        let mut entries = demo_entries();
        entries.push((bad.to_owned(), b"x".to_vec()));
        match refuse(&write_zip(&entries)) {
            CapError::UnsafePath { entry } => assert_eq!(entry, bad),
            e => panic!("{bad}: {e:?}"),
        }
    }
}

#[test]
fn duplicate_entry_names() {
    // The writer refuses duplicate names, so write `Header.caX` and rename it in both headers.
    let mut entries = demo_entries();
    let header = component_mut(&mut entries, ComponentKind::Header).clone();
    let decoy = format!("{JC}Header.caX");
    entries.push((decoy.clone(), header));
    let mut bytes = write_zip(&entries);
    for at in [central(&bytes, &decoy) + 46, local(&bytes, &decoy) + 30] {
        let last = at + decoy.len() - 1;
        bytes[last] = b'p';
    }
    match refuse(&bytes) {
        CapError::DuplicateEntry { entry } => assert_eq!(entry, format!("{JC}Header.cap")),
        e => panic!("{e:?}"),
    }
}

#[test]
fn duplicate_component_in_another_case() {
    let mut entries = demo_entries();
    let header = component_mut(&mut entries, ComponentKind::Header).clone();
    entries.push((format!("{JC}HEADER.CAP"), header));
    match refuse(&write_zip(&entries)) {
        CapError::DuplicateComponent {
            component,
            first,
            second,
        } => {
            assert_eq!(component, ComponentKind::Header);
            assert!(
                first.contains("Header.cap") && second.contains("HEADER.CAP"),
                "{first} {second}"
            );
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn missing_required_components() {
    use ComponentKind as K;
    for kind in [
        K::Header,
        K::Directory,
        K::Class,
        K::Method,
        K::StaticField,
        K::ConstantPool,
        K::RefLocation,
        K::Descriptor,
    ] {
        let name = format!("{JC}{}", kind.file_name());
        let entries: Entries = demo_entries()
            .into_iter()
            .filter(|(n, _)| *n != name)
            .collect();
        let err = refuse(&write_zip(&entries));
        match &err {
            CapError::MissingComponent { component } => assert_eq!(*component, kind),
            e => panic!("{kind}: {e:?}"),
        }
        assert!(err.to_string().contains(kind.name()));
        assert_eq!(err.component(), Some(kind));
    }
}

#[test]
fn optional_components_may_be_absent() {
    // A library-like package: no Applet and no Import, Header flags and Directory adjusted to match.
    let mut entries: Entries = demo_entries()
        .into_iter()
        .filter(|(n, _)| !n.ends_with("/Applet.cap") && !n.ends_with("/Import.cap"))
        .collect();
    component_mut(&mut entries, ComponentKind::Header)[3 + 6] &= !0x04; // clear ACC_APPLET
    let dir = component_mut(&mut entries, ComponentKind::Directory);
    // Directory content (2.2): sizes by tag at 2*(tag-1); then 6 bytes; import count; applet count.
    for tag in [3usize, 4] {
        dir[3 + 2 * (tag - 1)] = 0;
        dir[3 + 2 * (tag - 1) + 1] = 0;
    }
    dir[3 + 30] = 0; // import count
    dir[3 + 31] = 0; // applet count
    let cap = CapFile::parse(&write_zip(&entries)).unwrap();
    assert!(cap.applets().is_empty() && cap.imports().is_empty());
    assert!(cap.components().get(ComponentKind::Applet).is_none());
}

#[test]
fn no_package_in_archive() {
    let entries: Entries = demo_entries()
        .into_iter()
        .filter(|(n, _)| !n.starts_with(JC))
        .collect();
    assert!(matches!(refuse(&write_zip(&entries)), CapError::NoPackage));
    let entries: Entries = demo_entries()
        .into_iter()
        .map(|(n, d)| (n.replace("demo/javacard/", "javacard/"), d))
        .collect();
    assert!(matches!(refuse(&write_zip(&entries)), CapError::NoPackage));
}

#[test]
fn more_than_one_package() {
    let mut entries = demo_entries();
    let header = component_mut(&mut entries, ComponentKind::Header).clone();
    entries.push(("other/pkg/javacard/Header.cap".to_owned(), header));
    match refuse(&write_zip(&entries)) {
        CapError::MultiplePackages { first, second } => {
            assert_eq!(first, "demo");
            assert_eq!(second, "other/pkg");
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn component_tag_disagrees_with_file_name() {
    let mut entries = demo_entries();
    component_mut(&mut entries, ComponentKind::Class)[0] = 7;
    match refuse(&write_zip(&entries)) {
        CapError::ComponentTag {
            component,
            location,
            found,
            expected,
        } => {
            assert_eq!(component, ComponentKind::Class);
            assert!(location.contains("Class.cap"));
            assert_eq!((found, expected), (7, 6));
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn component_length_disagrees_with_entry_size() {
    for kind in [
        ComponentKind::Header,
        ComponentKind::Method,
        ComponentKind::Descriptor,
    ] {
        let mut entries = demo_entries();
        let c = component_mut(&mut entries, kind);
        c[2] = c[2].wrapping_add(1);
        match refuse(&write_zip(&entries)) {
            CapError::ComponentLength {
                component,
                declared,
                actual,
                ..
            } => {
                assert_eq!(component, kind);
                assert_eq!(declared, actual + 1);
            }
            e => panic!("{kind}: {e:?}"),
        }
        let mut entries = demo_entries();
        component_mut(&mut entries, kind).truncate(2);
        assert!(
            matches!(refuse(&write_zip(&entries)), CapError::ComponentLength { component, .. } if component == kind)
        );
    }
}

#[test]
fn oversized_component_entry() {
    let mut entries = demo_entries();
    let mut big = vec![7u8, 0xFF, 0xFF];
    big.resize(70_000, 0x5A);
    *component_mut(&mut entries, ComponentKind::Method) = big;
    match refuse(&write_zip(&entries)) {
        CapError::ComponentTooLarge {
            component,
            entry,
            size,
            ..
        } => {
            assert_eq!(component, ComponentKind::Method);
            assert_eq!(entry, format!("{JC}Method.cap"));
            assert_eq!(size, 70_000);
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn overlapping_entries() {
    // Point a second central record at the first entry's bytes (the "overlapping files" bomb shape).
    let mut entries = demo_entries();
    entries.push(("APPLET-INF/a.bin".to_owned(), vec![1; 64]));
    entries.push(("APPLET-INF/b.bin".to_owned(), vec![1; 64]));
    let mut bytes = write_zip(&entries);
    let a = get_u32(&bytes, central(&bytes, "APPLET-INF/a.bin") + 42);
    let cb = central(&bytes, "APPLET-INF/b.bin");
    put_u32(&mut bytes, cb + 42, a);
    match refuse(&bytes) {
        CapError::OverlappingEntries { first, second } => {
            let mut pair = [first, second];
            pair.sort();
            assert_eq!(pair, ["APPLET-INF/a.bin", "APPLET-INF/b.bin"]);
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn entry_data_runs_into_the_central_directory() {
    let mut entries = demo_entries();
    entries.push(("APPLET-INF/last.bin".to_owned(), vec![1; 64]));
    let mut bytes = write_zip(&entries);
    let c = central(&bytes, "APPLET-INF/last.bin");
    put_u32(&mut bytes, c + 20, 64 + 40);
    match refuse(&bytes) {
        CapError::OverlappingEntries { first, second } => {
            assert_eq!(first, "APPLET-INF/last.bin");
            assert!(second.contains("central directory"));
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn unsupported_compression_method() {
    let entries = demo_entries();
    let mut bytes = write_zip(&entries);
    let name = format!("{JC}Header.cap");
    let (c, l) = (central(&bytes, &name), local(&bytes, &name));
    put_u16(&mut bytes, c + 10, 12); // bzip2
    put_u16(&mut bytes, l + 8, 12);
    assert!(
        matches!(refuse(&bytes), CapError::UnsupportedCompression { entry, .. } if entry == name)
    );
}

#[test]
fn encrypted_component() {
    let entries = demo_entries();
    let mut bytes = write_zip(&entries);
    let name = format!("{JC}Method.cap");
    let (c, l) = (central(&bytes, &name), local(&bytes, &name));
    bytes[c + 8] |= 1;
    bytes[l + 6] |= 1;
    assert!(matches!(refuse(&bytes), CapError::EncryptedEntry { entry } if entry == name));
}

#[test]
fn header_bad_magic_and_version() {
    let mut entries = demo_entries();
    component_mut(&mut entries, ComponentKind::Header)[3] = 0xCA;
    assert!(matches!(
        refuse(&write_zip(&entries)),
        CapError::BadMagic { found: 0xCACA_FFED }
    ));

    let mut entries = demo_entries();
    component_mut(&mut entries, ComponentKind::Header)[7] = 3; // minor version 2.3
    assert!(matches!(
        refuse(&write_zip(&entries)),
        CapError::UnsupportedVersion { major: 2, minor: 3 }
    ));
}

#[test]
fn directory_size_disagrees_with_component() {
    let mut entries = demo_entries();
    let method_tag = usize::from(ComponentKind::Method.tag());
    component_mut(&mut entries, ComponentKind::Directory)[3 + 2 * (method_tag - 1) + 1] ^= 1;
    match refuse(&write_zip(&entries)) {
        CapError::DirectoryMismatch {
            component,
            listed,
            actual,
        } => {
            assert_eq!(component, ComponentKind::Method);
            assert_ne!(listed, actual);
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn header_name_disagrees_with_path() {
    let entries: Entries = demo_entries()
        .into_iter()
        .map(|(n, d)| (n.replace("demo/javacard/", "evil/javacard/"), d))
        .collect();
    match refuse(&write_zip(&entries)) {
        CapError::PackageNameMismatch { header, path } => {
            assert_eq!((header.as_str(), path.as_str()), ("demo", "evil"))
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn applet_flag_and_install_offset_checked() {
    let mut entries = demo_entries();
    component_mut(&mut entries, ComponentKind::Header)[3 + 6] = 0; // clear ACC_APPLET
    assert!(matches!(
        refuse(&write_zip(&entries)),
        CapError::Malformed {
            component: ComponentKind::Header,
            ..
        }
    ));

    let mut entries = demo_entries();
    let applet = component_mut(&mut entries, ComponentKind::Applet);
    let n = applet.len();
    applet[n - 2] = 0x7F; // install method offset far beyond the Method component
    assert!(matches!(
        refuse(&write_zip(&entries)),
        CapError::Malformed {
            component: ComponentKind::Applet,
            ..
        }
    ));

    let mut entries = demo_entries();
    component_mut(&mut entries, ComponentKind::Applet)[4] = 4; // AID length 4: too short
    assert!(matches!(
        refuse(&write_zip(&entries)),
        CapError::Malformed {
            component: ComponentKind::Applet,
            ..
        }
    ));
}

#[test]
fn every_truncation_and_byte_flip_is_an_error_not_a_panic() {
    let bytes = write_zip(&demo_entries());
    for len in 0..bytes.len() {
        let _ = CapFile::parse(&bytes[..len]);
    }
    for i in 0..bytes.len() {
        for flip in [0x01u8, 0x80, 0xFF] {
            let mut b = bytes.clone();
            b[i] ^= flip;
            let _ = CapFile::parse(&b);
        }
    }
}
