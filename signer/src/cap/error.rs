//! The one error type for reading CAP and IJC load files.
//!
//! CAP files arrive from outside the issuer (vendors, CI artefacts), so every refusal names what a user can
//! act on: the archive entry, the component, the limit that was crossed and the value found.

use super::component::ComponentKind;

/// Why a CAP archive, an IJC load file or a demo CAP request was refused.
///
/// Variants fall in three groups, in the spirit of a panic-free reader over untrusted bytes:
/// the *archive* is unsafe or unreadable (bombs, traversal paths, duplicates, overlaps),
/// a *component* is missing, repeated or malformed (each names the component), or the input uses a
/// format this crate does not *support*. None of them is ever a panic.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CapError {
    /// The whole input is bigger than any load file we accept; refused before parsing anything.
    #[error("{what} is {size} bytes, over the limit of {limit} bytes")]
    InputTooLarge {
        /// What was measured ("CAP archive", "IJC load file").
        what: &'static str,
        /// Size of the input in bytes.
        size: u64,
        /// The limit it crossed.
        limit: u64,
    },

    /// The bytes are not a ZIP archive the reader can open (no end-of-central-directory record, corrupt
    /// central directory, multi-disk archive...).
    #[error("not a readable CAP (ZIP) archive: {0}")]
    NotZip(#[source] zip::result::ZipError),

    /// The archive lists more entries than a CAP file plausibly has.
    #[error("archive has {count} entries, over the limit of {limit}")]
    TooManyEntries {
        /// Entries found in the central directory.
        count: u64,
        /// The configured limit.
        limit: u64,
    },

    /// Two central-directory records carry the same name: tools disagree on which one wins, so an
    /// attacker could show a reviewer one file and the signer another.
    #[error("entry {entry:?} appears more than once in the archive")]
    DuplicateEntry {
        /// The repeated entry name.
        entry: String,
    },

    /// An entry name is absolute, carries a drive letter, a backslash or a `..` component: a classic
    /// path-traversal carrier if anyone ever extracts the archive.
    #[error("entry {entry:?} has an unsafe path (absolute, drive letter, backslash, NUL or `..`)")]
    UnsafePath {
        /// The offending entry name.
        entry: String,
    },

    /// Two entries share bytes in the archive (the "overlapping files" zip-bomb construction).
    #[error("entries {first:?} and {second:?} overlap inside the archive")]
    OverlappingEntries {
        /// The entry that starts first.
        first: String,
        /// The entry whose data starts inside the first one.
        second: String,
    },

    /// An entry declares an uncompressed size over the per-entry limit.
    #[error("entry {entry:?} declares {declared} bytes uncompressed, over the per-entry limit of {limit}")]
    EntryTooLarge {
        /// The entry name.
        entry: String,
        /// Uncompressed size from the central directory.
        declared: u64,
        /// The configured limit.
        limit: u64,
    },

    /// All entries together declare more uncompressed bytes than the archive limit.
    #[error(
        "archive entries declare {total} bytes uncompressed in total, over the limit of {limit}"
    )]
    ArchiveTooLarge {
        /// Sum of the declared uncompressed sizes so far.
        total: u64,
        /// The configured limit.
        limit: u64,
    },

    /// An entry expands far more than real Java Card output does: the signature of a zip bomb.
    #[error("entry {entry:?} expands {compressed} bytes to {uncompressed} (over {limit}:1)")]
    CompressionRatio {
        /// The entry name.
        entry: String,
        /// Compressed size from the central directory.
        compressed: u64,
        /// Uncompressed size from the central directory.
        uncompressed: u64,
        /// The configured ratio limit.
        limit: u64,
    },

    /// A component entry uses a compression method other than stored or deflate.
    #[error("entry {entry:?} uses compression method {method}; CAP components must be stored or deflated")]
    UnsupportedCompression {
        /// The entry name.
        entry: String,
        /// The method as the ZIP reader names it.
        method: String,
    },

    /// A component entry is encrypted; a load file to be signed must be readable as it is.
    #[error("entry {entry:?} is encrypted; CAP components must not be")]
    EncryptedEntry {
        /// The entry name.
        entry: String,
    },

    /// An entry decompresses to more bytes than its header declares (a lying header).
    #[error("entry {entry:?} holds more than the {declared} bytes its header declares")]
    EntryLargerThanDeclared {
        /// The entry name.
        entry: String,
        /// Declared uncompressed size.
        declared: u64,
    },

    /// An entry decompresses to fewer bytes than its header declares (truncated or lying header).
    #[error("entry {entry:?} holds {actual} bytes, fewer than the {declared} its header declares")]
    EntrySmallerThanDeclared {
        /// The entry name.
        entry: String,
        /// Declared uncompressed size.
        declared: u64,
        /// Bytes actually produced.
        actual: u64,
    },

    /// An entry could not be read or decompressed (corrupt deflate stream, CRC mismatch, bad local header).
    #[error("cannot read entry {entry:?}: {source}")]
    EntryRead {
        /// The entry name.
        entry: String,
        /// What the ZIP reader reported.
        #[source]
        source: std::io::Error,
    },

    /// The archive holds no `<package path>/javacard/Header.cap` or other component: it is not a CAP file.
    #[error("no Java Card package found: expected components under `<package path>/javacard/`")]
    NoPackage,

    /// Components of two packages were found; a load file carries exactly one package, and choosing one
    /// silently could sign the wrong code.
    #[error("archive holds more than one package ({first:?} and {second:?}); a CAP file carries exactly one")]
    MultiplePackages {
        /// Package path seen first.
        first: String,
        /// A different package path seen later.
        second: String,
    },

    /// The same component appears twice (two entries whose names differ only in case, or twice in an IJC).
    #[error("{component} component appears twice ({first} and {second})")]
    DuplicateComponent {
        /// The repeated component.
        component: ComponentKind,
        /// Where it was seen first.
        first: String,
        /// Where it was seen again.
        second: String,
    },

    /// A component the Java Card VM specification requires is absent.
    #[error("{component} component is missing; every load file must have one")]
    MissingComponent {
        /// The missing component.
        component: ComponentKind,
    },

    /// A component entry is bigger than any component can be (a `u2` size plus its 3-byte header).
    #[error("{component} component entry {entry:?} declares {size} bytes, over the {limit}-byte maximum of a component")]
    ComponentTooLarge {
        /// The component the entry should hold.
        component: ComponentKind,
        /// The entry name.
        entry: String,
        /// Declared uncompressed size.
        size: u64,
        /// The largest possible component.
        limit: u64,
    },

    /// A component's tag byte is not the one its file name promises.
    #[error("{component} component at {location}: tag is {found}, expected {expected}")]
    ComponentTag {
        /// The component expected from the file name.
        component: ComponentKind,
        /// Where (entry name or IJC offset).
        location: String,
        /// Tag found.
        found: u8,
        /// Tag expected.
        expected: u8,
    },

    /// A component's `u2` size disagrees with the bytes actually present.
    #[error("{component} component at {location}: header declares {declared} bytes of content, {actual} present")]
    ComponentLength {
        /// The component.
        component: ComponentKind,
        /// Where (entry name or IJC offset).
        location: String,
        /// Content size from the component header.
        declared: u64,
        /// Content bytes present.
        actual: u64,
    },

    /// A component's content does not follow its structure in the Java Card VM specification.
    #[error("{component} component is malformed: {reason}")]
    Malformed {
        /// The component.
        component: ComponentKind,
        /// What is wrong, in words.
        reason: String,
    },

    /// The Header component does not start with `DECAFFED`: the bytes are not Java Card code.
    #[error("Header component: magic is {found:08X}, not DECAFFED")]
    BadMagic {
        /// The four bytes found.
        found: u32,
    },

    /// The CAP format version is one this reader does not know how to lay out.
    #[error("Header component: CAP format {major}.{minor} is not supported (2.1 and 2.2 are)")]
    UnsupportedVersion {
        /// Major version found.
        major: u8,
        /// Minor version found.
        minor: u8,
    },

    /// The Directory component lists a size for a component that differs from the component itself.
    #[error("Directory component lists {listed} bytes for the {component} component, which has {actual}")]
    DirectoryMismatch {
        /// The component whose size disagrees.
        component: ComponentKind,
        /// Size listed in the Directory.
        listed: u64,
        /// Size of the component's content.
        actual: u64,
    },

    /// The package name inside the Header differs from the path its components are stored under.
    #[error(
        "Header component names package {header:?}, but the components are stored under {path:?}"
    )]
    PackageNameMismatch {
        /// Name from the Header component.
        header: String,
        /// Path from the archive.
        path: String,
    },

    /// An IJC holds a byte where a component tag should be that names no component.
    #[error("IJC load file at offset {offset}: {tag} is not a component tag")]
    UnknownTag {
        /// Offset of the tag byte.
        offset: u64,
        /// The byte found.
        tag: u8,
    },

    /// An IJC holds components out of the load order that cards expect.
    #[error("IJC load file at offset {offset}: {component} component comes after {after}, out of load order")]
    OutOfOrder {
        /// The misplaced component.
        component: ComponentKind,
        /// The component before it.
        after: ComponentKind,
        /// Offset of the misplaced component.
        offset: u64,
    },

    /// An IJC holds a component that is never loaded onto a card (Debug).
    #[error(
        "IJC load file at offset {offset}: the {component} component is never part of a load file"
    )]
    NotLoadable {
        /// The component.
        component: ComponentKind,
        /// Its offset.
        offset: u64,
    },

    /// The demo CAP builder was given values a Java Card converter would refuse.
    #[error("demo CAP: {reason}")]
    DemoInput {
        /// What is wrong with the input.
        reason: String,
    },

    /// Writing the demo CAP archive failed.
    #[error("demo CAP: writing the archive failed: {0}")]
    DemoWrite(#[source] zip::result::ZipError),
}

impl CapError {
    /// The component the error is about, when there is one: lets a caller point at the right part of the
    /// file without parsing messages.
    pub fn component(&self) -> Option<ComponentKind> {
        match self {
            Self::DuplicateComponent { component, .. }
            | Self::MissingComponent { component }
            | Self::ComponentTooLarge { component, .. }
            | Self::ComponentTag { component, .. }
            | Self::ComponentLength { component, .. }
            | Self::Malformed { component, .. }
            | Self::DirectoryMismatch { component, .. }
            | Self::OutOfOrder { component, .. }
            | Self::NotLoadable { component, .. } => Some(*component),
            Self::BadMagic { .. }
            | Self::UnsupportedVersion { .. }
            | Self::PackageNameMismatch { .. } => Some(ComponentKind::Header),
            _ => None,
        }
    }
}
