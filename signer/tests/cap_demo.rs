//! The demo CAP builder: well formed, deterministic, and read back by the same parser that reads
//! vendors' CAP files.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::io::{Cursor, Read};

use signer::cap::{build_demo_cap, CapError, CapFile, ComponentKind, LfdbPolicy, LoadFile};

const PKG: [u8; 7] = [0xA0, 0x00, 0x00, 0x06, 0x17, 0x00, 0x01];
const APPLET: [u8; 8] = [0xA0, 0x00, 0x00, 0x06, 0x17, 0x00, 0x01, 0x01];

#[test]
fn round_trip_through_parse() {
    let bytes = build_demo_cap(&PKG, &APPLET, "org.postissue.demo").unwrap();
    let cap = CapFile::parse(&bytes).unwrap();
    assert_eq!(cap.package_aid(), PKG);
    assert_eq!(cap.package_name(), "org/postissue/demo");
    assert_eq!(cap.applets().len(), 1);
    assert_eq!(cap.applets()[0].aid, APPLET);
    let h = cap.header();
    assert_eq!((h.format_major, h.format_minor), (2, 2));
    assert_eq!(h.package_name.as_deref(), Some("org/postissue/demo"));
    assert_eq!((h.package_major, h.package_minor), (1, 0));
    assert!(h.has_applets() && !h.has_export());
    let imports: Vec<String> = cap
        .imports()
        .iter()
        .map(|i| hex::encode_upper(&i.aid))
        .collect();
    assert_eq!(imports, ["A0000000620101", "A0000000620001"]);

    let with = cap.lfdb(LfdbPolicy::WithDescriptor);
    let without = cap.lfdb(LfdbPolicy::WithoutDescriptor);
    let descriptor = cap
        .components()
        .get(ComponentKind::Descriptor)
        .unwrap()
        .as_bytes();
    assert_eq!(with.len(), without.len() + descriptor.len());
    assert!(with.starts_with(&without) && with.ends_with(descriptor));
    assert_eq!(
        LoadFile::from_ijc(&with).unwrap(),
        cap.load_file(LfdbPolicy::WithDescriptor)
    );
    assert_eq!(
        LoadFile::from_ijc(&without).unwrap(),
        cap.load_file(LfdbPolicy::WithoutDescriptor)
    );
}

#[test]
fn slashed_and_dotted_names_give_the_same_file() {
    let a = build_demo_cap(&PKG, &APPLET, "org.postissue.demo").unwrap();
    let b = build_demo_cap(&PKG, &APPLET, "org/postissue/demo").unwrap();
    assert_eq!(a, b);
}

#[test]
fn deterministic_bytes() {
    let a = build_demo_cap(&PKG, &APPLET, "demo").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100)); // a clock-dependent timestamp would show
    let b = build_demo_cap(&PKG, &APPLET, "demo").unwrap();
    assert_eq!(a, b);
    let c = build_demo_cap(
        &PKG,
        &[0xA0, 0x00, 0x00, 0x06, 0x17, 0x00, 0x01, 0x02],
        "demo",
    )
    .unwrap();
    assert_ne!(a, c);
}

#[test]
fn archive_layout() {
    let bytes = build_demo_cap(&PKG, &APPLET, "com.example.demo").unwrap();
    let mut zip = zip::ZipArchive::new(Cursor::new(&bytes)).unwrap();
    let names: Vec<String> = zip.file_names().map(str::to_owned).collect();
    let expected: Vec<String> = std::iter::once("META-INF/MANIFEST.MF".to_owned())
        .chain(
            [
                "Header",
                "Directory",
                "Import",
                "Applet",
                "Class",
                "Method",
                "StaticField",
                "ConstantPool",
                "RefLocation",
                "Descriptor",
            ]
            .iter()
            .map(|c| format!("com/example/demo/javacard/{c}.cap")),
        )
        .collect();
    assert_eq!(names, expected);
    let mut manifest = String::new();
    zip.by_name("META-INF/MANIFEST.MF")
        .unwrap()
        .read_to_string(&mut manifest)
        .unwrap();
    assert!(manifest.contains("Java-Card-Package-AID: 0xa0:0x00:0x00:0x06:0x17:0x00:0x01\r\n"));
    assert!(manifest.contains("Java-Card-Package-Name: com.example.demo\r\n"));
    assert!(manifest.lines().all(|l| l.len() <= 72));
    for i in 0..zip.len() {
        let f = zip.by_index(i).unwrap();
        assert_eq!(
            f.last_modified(),
            Some(zip::DateTime::default()),
            "{}",
            f.name()
        );
    }
}

#[test]
fn directory_lists_true_sizes() {
    let bytes = build_demo_cap(&PKG, &APPLET, "demo").unwrap();
    let cap = CapFile::parse(&bytes).unwrap();
    let dir = cap
        .components()
        .get(ComponentKind::Directory)
        .unwrap()
        .info();
    // CAP 2.2: twelve u2 sizes, by tag.
    for (i, kind) in ComponentKind::ALL.iter().enumerate() {
        let listed = u16::from_be_bytes([dir[2 * i], dir[2 * i + 1]]) as usize;
        let actual = cap.components().get(*kind).map_or(0, |c| c.info().len());
        assert_eq!(listed, actual, "{kind}");
    }
}

#[test]
fn long_package_name_folds_the_manifest() {
    let name =
        "org.postissue.a_rather_long_package_name_segment.and_another_one_to_pass_seventy_two";
    let bytes = build_demo_cap(&PKG, &APPLET, name).unwrap();
    let cap = CapFile::parse(&bytes).unwrap();
    assert_eq!(cap.package_name(), name.replace('.', "/"));
}

#[test]
fn refuses_bad_inputs() {
    let cases: [(&[u8], &[u8], &str); 7] = [
        (&PKG[..4], &APPLET, "demo"),           // package AID too short
        (&PKG, &[0xA0; 17], "demo"),            // applet AID too long
        (&PKG, &[0xD0, 0, 0, 0, 0, 1], "demo"), // different RID
        (&PKG, &PKG, "demo"),                   // applet AID equals package AID
        (&PKG, &APPLET, ""),                    // empty name
        (&PKG, &APPLET, "com..demo"),           // empty segment
        (&PKG, &APPLET, "com/9demo"),           // not an identifier
    ];
    for (pkg, applet, name) in cases {
        match build_demo_cap(pkg, applet, name) {
            Err(CapError::DemoInput { reason }) => assert!(!reason.is_empty()),
            other => panic!("{pkg:02X?} {applet:02X?} {name:?}: expected DemoInput, got {other:?}"),
        }
    }
    assert!(matches!(
        build_demo_cap(&PKG, &APPLET, &"a".repeat(256)),
        Err(CapError::DemoInput { .. })
    ));
    assert!(matches!(
        build_demo_cap(&PKG, &APPLET, "../evil"),
        Err(CapError::DemoInput { .. })
    ));
}

#[test]
fn demo_code_is_self_consistent() {
    let bytes = build_demo_cap(&PKG, &APPLET, "demo").unwrap();
    let cap = CapFile::parse(&bytes).unwrap();
    let info = |k: ComponentKind| cap.components().get(k).unwrap().info().to_vec();
    let (method, refloc, cp, class, desc) = (
        info(ComponentKind::Method),
        info(ComponentKind::RefLocation),
        info(ComponentKind::ConstantPool),
        info(ComponentKind::Class),
        info(ComponentKind::Descriptor),
    );
    let cp_count = u16::from_be_bytes([cp[0], cp[1]]);
    assert_eq!(cp.len(), 2 + 4 * usize::from(cp_count));

    // RefLocation: every 2-byte index follows an instruction that takes a constant-pool index.
    assert_eq!(&refloc[..2], &[0, 0], "no 1-byte indices");
    let n = usize::from(u16::from_be_bytes([refloc[2], refloc[3]]));
    assert_eq!(refloc.len(), 4 + n);
    let mut at = 0usize;
    for delta in &refloc[4..] {
        at += usize::from(*delta);
        assert!(
            matches!(method[at - 1], 0x8B | 0x8C | 0x8D | 0x8F),
            "opcode before {at}"
        );
        assert!(u16::from_be_bytes([method[at], method[at + 1]]) < cp_count);
    }

    // Descriptor: the three methods tile the Method component after its handler count.
    let methods = &desc[10..10 + 36];
    let mut end = 1usize;
    for m in methods.chunks(12) {
        let offset = usize::from(u16::from_be_bytes([m[2], m[3]]));
        let bytecodes = usize::from(u16::from_be_bytes([m[6], m[7]]));
        assert_eq!(offset, end);
        assert_eq!(
            method[offset + 1 + bytecodes],
            0x7A,
            "each method ends with return"
        );
        end = offset + 2 + bytecodes;
    }
    assert_eq!(end, method.len());

    // Applet install offset and the Class component's `process` entry name real methods.
    assert_eq!(
        usize::from(cap.applets()[0].install_method_offset),
        usize::from(u16::from_be_bytes([methods[14], methods[15]]))
    );
    let process = u16::from_be_bytes([class[12], class[13]]);
    assert_eq!(process, u16::from_be_bytes([methods[26], methods[27]]));
}
