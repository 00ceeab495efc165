//! A tiny, deterministic demo CAP file, so the project's demo and tests need no file from outside the
//! repository.
//!
//! The package holds one class, `Demo extends javacard.framework.Applet`, equivalent to this source:
//!
//! ```text
//! public class Demo extends Applet {
//!     private Demo(byte[] b, short o, byte l) { register(b, (short) (o + 1), b[o]); }
//!     public static void install(byte[] b, short o, byte l) { new Demo(b, o, l); }
//!     public void process(APDU apdu) { }            // every command answers 9000
//! }
//! ```
//!
//! encoded by hand in CAP format 2.2 against `javacard.framework` 1.2 and `java.lang` 1.0 (the Java Card
//! 2.2.1 API, which every current card offers). The bytes are laid out field by field below; the
//! components parse with [`super::CapFile::parse`], the Directory lists their true sizes, and the
//! Applet component points at the `install` method. The code has been checked structurally, not on a
//! physical card.

use std::io::{Cursor, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

use super::component::{ComponentKind, AID_LEN};
use super::error::CapError;

/// AID of `javacard.framework` (imported as package token 0).
const FRAMEWORK_AID: [u8; 7] = [0xA0, 0x00, 0x00, 0x00, 0x62, 0x01, 0x01];
/// AID of `java.lang` (imported as package token 1).
const JAVA_LANG_AID: [u8; 7] = [0xA0, 0x00, 0x00, 0x00, 0x62, 0x00, 0x01];

/// Method component content: offsets of the three methods, used by Applet, Class and Descriptor.
const CTOR_OFFSET: u16 = 0x0001;
const INSTALL_OFFSET: u16 = 0x0013;
const PROCESS_OFFSET: u16 = 0x0021;

fn demo_error(reason: impl Into<String>) -> CapError {
    CapError::DemoInput {
        reason: reason.into(),
    }
}

/// Tag, `u2` size, content.
fn component(kind: ComponentKind, info: &[u8]) -> Result<Vec<u8>, CapError> {
    let size =
        u16::try_from(info.len()).map_err(|_| demo_error(format!("{kind} component too large")))?;
    let mut out = Vec::with_capacity(info.len().saturating_add(3));
    out.push(kind.tag());
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(info);
    Ok(out)
}

fn aid_field(aid: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(aid.len().saturating_add(1));
    out.push(u8::try_from(aid.len()).unwrap_or(0));
    out.extend_from_slice(aid);
    out
}

/// Checks a package name (`com.example.demo` or `com/example/demo`) and returns it in internal form.
fn internal_name(package_name: &str) -> Result<String, CapError> {
    let internal = package_name.replace('.', "/");
    if internal.is_empty() || internal.len() > 255 {
        return Err(demo_error("package name must be 1 to 255 characters"));
    }
    for part in internal.split('/') {
        let mut chars = part.chars();
        let ok_start = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$');
        let ok_rest = chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
        if !ok_start || !ok_rest {
            return Err(demo_error(format!(
                "package name {package_name:?}: {part:?} is not a Java identifier (ASCII letters, digits, _ and $)"
            )));
        }
    }
    Ok(internal)
}

fn check_aids(package_aid: &[u8], applet_aid: &[u8]) -> Result<(), CapError> {
    for (what, aid) in [("package", package_aid), ("applet", applet_aid)] {
        if !AID_LEN.contains(&aid.len()) {
            return Err(demo_error(format!(
                "{what} AID is {} bytes; an AID has 5 to 16",
                aid.len()
            )));
        }
    }
    if package_aid.get(..5) != applet_aid.get(..5) {
        return Err(demo_error(
            "applet AID must share its RID (first 5 bytes) with the package AID",
        ));
    }
    if package_aid == applet_aid {
        return Err(demo_error("applet AID must differ from the package AID"));
    }
    Ok(())
}

/// The ten components of the demo package, in the order they are written to the archive.
fn demo_components(
    package_aid: &[u8],
    applet_aid: &[u8],
    name: &str,
) -> Result<Vec<(ComponentKind, Vec<u8>)>, CapError> {
    use ComponentKind as K;

    // Header: magic, CAP format 2.2 (minor first), flags ACC_APPLET, package version 1.0, package AID,
    // package_name_info.
    let mut header = Vec::new();
    header.extend_from_slice(&0xDECA_FFEDu32.to_be_bytes());
    header.extend_from_slice(&[0x02, 0x02, 0x04, 0x00, 0x01]);
    header.extend_from_slice(&aid_field(package_aid));
    header.push(
        u8::try_from(name.len()).map_err(|_| demo_error("package name longer than 255 bytes"))?,
    );
    header.extend_from_slice(name.as_bytes());

    // Import: javacard.framework 1.2 (token 0), java.lang 1.0 (token 1); each is minor, major, AID.
    let mut import = vec![0x02, 0x02, 0x01];
    import.extend_from_slice(&aid_field(&FRAMEWORK_AID));
    import.extend_from_slice(&[0x00, 0x01]);
    import.extend_from_slice(&aid_field(&JAVA_LANG_AID));

    // Applet: one applet, its AID and the offset of `install` in the Method component.
    let mut applet = vec![0x01];
    applet.extend_from_slice(&aid_field(applet_aid));
    applet.extend_from_slice(&INSTALL_OFFSET.to_be_bytes());

    // Class (2.2 layout): signature_pool_length 0, then one class_info at offset 2:
    // flags/interface_count 0, super class Applet (external: package 0, class token 3),
    // declared_instance_size 0, first_reference_token FF, reference_count 0,
    // public methods: base 7, count 1 (process, token 7, at PROCESS_OFFSET); no package methods.
    let mut class = vec![
        0x00, 0x00, 0x00, 0x80, 0x03, 0x00, 0xFF, 0x00, 0x07, 0x01, 0x00, 0x00,
    ];
    class.extend_from_slice(&PROCESS_OFFSET.to_be_bytes());

    // Method: no exception handlers, then three methods (header: flags|max_stack, nargs|max_locals).
    let method = [
        0x00, // handler_count
        // @0x01 private Demo(byte[] b, short o, byte l): max_stack 5, nargs 4
        0x05, 0x40, //
        0x18, 0x8C, 0x00, 0x00, // aload_0; invokespecial CP#0 (Applet.<init>)
        0x18, 0x19, 0x1E, 0x04, 0x41, // aload_0; aload_1; sload_2; sconst_1; sadd
        0x19, 0x1E, 0x25, // aload_1; sload_2; baload
        0x8B, 0x00, 0x01, // invokevirtual CP#1 (Applet.register(byte[],short,byte))
        0x7A, // return
        // @0x13 public static void install(byte[] b, short o, byte l): max_stack 5, nargs 3
        0x05, 0x30, //
        0x8F, 0x00, 0x02, 0x3D, // new CP#2 (Demo); dup
        0x18, 0x1D, 0x1E, // aload_0; sload_1; sload_2
        0x8C, 0x00, 0x03, // invokespecial CP#3 (Demo.<init>)
        0x3B, 0x7A, // pop; return
        // @0x21 public void process(APDU apdu): max_stack 0, nargs 2
        0x00, 0x20, //
        0x7A, // return
    ];

    // StaticField: image_size, reference_count, array_init_count, default_value_count,
    // non_default_value_count, all 0.
    let static_field = [0u8; 10];

    // ConstantPool: 4 entries of 4 bytes.
    let constant_pool = [
        0x00, 0x04, // count
        0x06, 0x80, 0x03,
        0x00, // static method ref: Applet.<init> (package 0, class 3, token 0)
        0x03, 0x80, 0x03,
        0x02, // virtual method ref: Applet.register(byte[],short,byte), token 2
        0x01, 0x00, 0x02, 0x00, // class ref: Demo (Class component offset 2), padding
        0x06, 0x00, 0x00, 0x01, // static method ref: Demo.<init> (padding, Method offset 1)
    ];

    // RefLocation: no 1-byte indices; four 2-byte constant-pool indices in the Method component at
    // offsets 5, 16, 22 and 29, stored as deltas.
    let ref_location = [0x00, 0x00, 0x00, 0x04, 0x05, 0x0B, 0x06, 0x07];

    // Descriptor: one class (token 0, public, Class offset 2, no interfaces or fields, 3 methods), then
    // the type descriptors of the constant-pool entries and methods.
    let mut descriptor = vec![0x01, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x03];
    // method_descriptor_info: token, access flags, method offset, type offset, bytecode count,
    // exception handler count and index.
    for (token, flags, offset, type_offset, bytecodes) in [
        (0xFFu8, 0x82u8, CTOR_OFFSET, 0x000Cu16, 16u16), // private <init> (ACC_INIT|ACC_PRIVATE)
        (0x00, 0x09, INSTALL_OFFSET, 0x000C, 12),        // public static install
        (0x07, 0x01, PROCESS_OFFSET, 0x000F, 1),         // public process
    ] {
        descriptor.extend_from_slice(&[token, flags]);
        descriptor.extend_from_slice(&offset.to_be_bytes());
        descriptor.extend_from_slice(&type_offset.to_be_bytes());
        descriptor.extend_from_slice(&bytecodes.to_be_bytes());
        descriptor.extend_from_slice(&[0x00, 0x00, 0x00, 0x00]);
    }
    descriptor.extend_from_slice(&[
        0x00, 0x04, // constant_pool_count
        0x00, 0x0A, 0x00, 0x0C, 0xFF, 0xFF, 0x00, 0x0C, // types of CP#0..3 (class ref: none)
        0x01, 0x10, // @0x0A ()V
        0x04, 0xB4, 0x31, // @0x0C (byte[], short, byte)V
        0x06, 0x68, 0x00, 0xA1, // @0x0F (javacard.framework.APDU)V  (class ref 0x800A)
    ]);

    let parts = [
        (K::Header, header),
        (K::Import, import),
        (K::Applet, applet),
        (K::Class, class),
        (K::Method, method.to_vec()),
        (K::StaticField, static_field.to_vec()),
        (K::ConstantPool, constant_pool.to_vec()),
        (K::RefLocation, ref_location.to_vec()),
        (K::Descriptor, descriptor),
    ];

    // Directory (2.2 layout): content sizes of all 12 components by tag, static field sizes (all 0),
    // import count 2, applet count 1, no custom components. Its own size is fixed: 24 + 6 + 3.
    const DIRECTORY_INFO_LEN: u16 = 33;
    let mut directory = Vec::with_capacity(usize::from(DIRECTORY_INFO_LEN));
    for kind in ComponentKind::ALL {
        let size = if kind == K::Directory {
            DIRECTORY_INFO_LEN
        } else {
            let len = parts
                .iter()
                .find(|(k, _)| *k == kind)
                .map_or(0, |(_, info)| info.len());
            u16::try_from(len).map_err(|_| demo_error(format!("{kind} component too large")))?
        };
        directory.extend_from_slice(&size.to_be_bytes());
    }
    directory.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0x02, 0x01, 0x00]);

    let mut out = Vec::with_capacity(11);
    for (kind, info) in parts {
        out.push((kind, component(kind, &info)?));
        if kind == K::Header {
            out.push((K::Directory, component(K::Directory, &directory)?));
        }
    }
    Ok(out)
}

/// `0xA0:0x00:...` as JAR manifests of Java Card converters write AIDs.
fn manifest_aid(aid: &[u8]) -> String {
    aid.iter()
        .map(|b| format!("0x{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// One manifest attribute, folded at 72 bytes as the JAR format requires (names here are ASCII).
fn manifest_line(out: &mut String, name: &str, value: &str) {
    let line = format!("{name}: {value}");
    let mut rest = line.as_str();
    let mut width = 72;
    while rest.len() > width {
        let (head, tail) = rest.split_at(width);
        out.push_str(head);
        out.push_str("\r\n ");
        rest = tail;
        width = 71;
    }
    out.push_str(rest);
    out.push_str("\r\n");
}

fn manifest(package_aid: &[u8], applet_aid: &[u8], internal: &str) -> String {
    let mut m = String::new();
    let dotted = internal.replace('/', ".");
    for (name, value) in [
        ("Manifest-Version", "1.0".to_owned()),
        ("Created-By", "Postissue signer demo builder".to_owned()),
        ("Java-Card-CAP-File-Version", "2.2".to_owned()),
        ("Java-Card-Package-Name", dotted),
        ("Java-Card-Package-Version", "1.0".to_owned()),
        ("Java-Card-Package-AID", manifest_aid(package_aid)),
        ("Java-Card-Applet-1-Name", "Demo".to_owned()),
        ("Java-Card-Applet-1-AID", manifest_aid(applet_aid)),
        (
            "Java-Card-Imported-Package-1-AID",
            manifest_aid(&FRAMEWORK_AID),
        ),
        ("Java-Card-Imported-Package-1-Version", "1.2".to_owned()),
        (
            "Java-Card-Imported-Package-2-AID",
            manifest_aid(&JAVA_LANG_AID),
        ),
        ("Java-Card-Imported-Package-2-Version", "1.0".to_owned()),
        ("Java-Card-Integer-Support-Required", "FALSE".to_owned()),
    ] {
        manifest_line(&mut m, name, &value);
    }
    m.push_str("\r\n");
    m
}

/// Builds a small, well-formed CAP file for a demo applet with the given package AID, applet AID and
/// package name (`com.example.demo` or `com/example/demo`).
///
/// Why: the project's demo and end-to-end tests load an application onto the reference card, and must
/// not depend on a CAP file fetched from elsewhere. What: a ZIP with `META-INF/MANIFEST.MF` and the ten
/// components under `<package path>/javacard/` (see the module documentation for the applet they
/// encode). Entries are stored uncompressed with a fixed 1980-01-01 timestamp and fixed permissions, so
/// the same inputs always give the same bytes, and therefore the same LFDB hash and DAP.
///
/// # Errors
/// [`CapError::DemoInput`] when an AID is not 5 to 16 bytes, the applet AID does not share the package
/// AID's RID or equals it, or the package name is not a dotted or slashed Java identifier path of at
/// most 255 bytes; [`CapError::DemoWrite`] if the ZIP writer fails.
pub fn build_demo_cap(
    package_aid: &[u8],
    applet_aid: &[u8],
    package_name: &str,
) -> Result<Vec<u8>, CapError> {
    check_aids(package_aid, applet_aid)?;
    let internal = internal_name(package_name)?;
    let components = demo_components(package_aid, applet_aid, &internal)?;

    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Stored)
        .last_modified_time(DateTime::default())
        .unix_permissions(0o644);
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    zip.start_file("META-INF/MANIFEST.MF", options)
        .map_err(CapError::DemoWrite)?;
    zip.write_all(manifest(package_aid, applet_aid, &internal).as_bytes())
        .map_err(|e| CapError::DemoWrite(e.into()))?;
    for (kind, bytes) in components {
        zip.start_file(format!("{internal}/javacard/{}", kind.file_name()), options)
            .map_err(CapError::DemoWrite)?;
        zip.write_all(&bytes)
            .map_err(|e| CapError::DemoWrite(e.into()))?;
    }
    Ok(zip.finish().map_err(CapError::DemoWrite)?.into_inner())
}
