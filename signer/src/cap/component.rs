//! Java Card components: their kinds, a bounds-checked reader, and the typed values that INSTALL needs.
//!
//! Every byte here comes from outside, so the reader never indexes: each read goes through
//! [`slice::get`] and fails with [`CapError::Malformed`] naming the component and the field.

use std::fmt;

use super::error::CapError;

/// The largest a component can be: a 1-byte tag, a `u2` size and up to 65 535 bytes of content.
pub const MAX_COMPONENT_BYTES: usize = 3 + u16::MAX as usize;

/// Shortest and longest AID a Java Card package or applet may have (ISO/IEC 7816-5: RID of 5 bytes plus
/// a PIX of up to 11).
pub const AID_LEN: std::ops::RangeInclusive<usize> = 5..=16;

/// The kinds of component a Java Card CAP file holds, each with its fixed tag.
///
/// The kind is what errors name, what the Directory component lists sizes for, and what decides the
/// order of the Load File Data Block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ComponentKind {
    /// Tag 1: magic, CAP format version, package AID and (2.2) name.
    Header,
    /// Tag 2: sizes of all components, static field sizes, import and applet counts.
    Directory,
    /// Tag 3: the applets the package defines (AIDs and install methods). Optional.
    Applet,
    /// Tag 4: the packages this one links against. Optional here (a package importing nothing).
    Import,
    /// Tag 5: the constant pool.
    ConstantPool,
    /// Tag 6: classes and interfaces.
    Class,
    /// Tag 7: method bytecode.
    Method,
    /// Tag 8: static field image.
    StaticField,
    /// Tag 9: offsets the card's linker patches.
    RefLocation,
    /// Tag 10: what the package exports to others. Optional.
    Export,
    /// Tag 11: type descriptors; some GP tools append it to the load file, some do not.
    Descriptor,
    /// Tag 12: debug information; never loaded onto a card.
    Debug,
}

impl ComponentKind {
    /// Every kind, in tag order.
    pub const ALL: [ComponentKind; 12] = [
        Self::Header,
        Self::Directory,
        Self::Applet,
        Self::Import,
        Self::ConstantPool,
        Self::Class,
        Self::Method,
        Self::StaticField,
        Self::RefLocation,
        Self::Export,
        Self::Descriptor,
        Self::Debug,
    ];

    /// The order in which components are sent to a card and hashed for the DAP (JCVM install order; the
    /// order GP tools use for the Load File Data Block). Debug is never loaded.
    pub const LOAD_ORDER: [ComponentKind; 11] = [
        Self::Header,
        Self::Directory,
        Self::Import,
        Self::Applet,
        Self::Class,
        Self::Method,
        Self::StaticField,
        Self::Export,
        Self::ConstantPool,
        Self::RefLocation,
        Self::Descriptor,
    ];

    /// The tag byte that starts this component.
    pub const fn tag(self) -> u8 {
        match self {
            Self::Header => 1,
            Self::Directory => 2,
            Self::Applet => 3,
            Self::Import => 4,
            Self::ConstantPool => 5,
            Self::Class => 6,
            Self::Method => 7,
            Self::StaticField => 8,
            Self::RefLocation => 9,
            Self::Export => 10,
            Self::Descriptor => 11,
            Self::Debug => 12,
        }
    }

    /// The kind a tag byte names, if any (custom components, tags 128–255, are not known here).
    pub const fn from_tag(tag: u8) -> Option<Self> {
        Some(match tag {
            1 => Self::Header,
            2 => Self::Directory,
            3 => Self::Applet,
            4 => Self::Import,
            5 => Self::ConstantPool,
            6 => Self::Class,
            7 => Self::Method,
            8 => Self::StaticField,
            9 => Self::RefLocation,
            10 => Self::Export,
            11 => Self::Descriptor,
            12 => Self::Debug,
            _ => return None,
        })
    }

    /// The component's name as the specification and the archive use it ("Header", "RefLocation").
    pub const fn name(self) -> &'static str {
        match self {
            Self::Header => "Header",
            Self::Directory => "Directory",
            Self::Applet => "Applet",
            Self::Import => "Import",
            Self::ConstantPool => "ConstantPool",
            Self::Class => "Class",
            Self::Method => "Method",
            Self::StaticField => "StaticField",
            Self::RefLocation => "RefLocation",
            Self::Export => "Export",
            Self::Descriptor => "Descriptor",
            Self::Debug => "Debug",
        }
    }

    /// The file name of the component inside `<package path>/javacard/` ("Header.cap").
    pub fn file_name(self) -> String {
        format!("{}.cap", self.name())
    }

    /// Whether every CAP file must carry this component. Descriptor is required by the Java Card VM
    /// specification; without it the `with-descriptor` policy could not be honoured.
    pub const fn required_in_cap(self) -> bool {
        !matches!(
            self,
            Self::Applet | Self::Import | Self::Export | Self::Debug
        )
    }

    /// Whether every load file (CAP-derived or IJC) must carry this component: as for CAP files, except
    /// that a load file may leave the Descriptor out.
    pub const fn required_in_load_file(self) -> bool {
        self.required_in_cap() && !matches!(self, Self::Descriptor)
    }

    /// Position in [`Self::LOAD_ORDER`]; `None` for Debug.
    pub fn load_position(self) -> Option<usize> {
        Self::LOAD_ORDER.iter().position(|k| *k == self)
    }
}

impl fmt::Display for ComponentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One component exactly as it is loaded: tag, `u2` size and content.
///
/// Only built after the tag and size were checked against the bytes, so `as_bytes().len()` is always
/// `3 + size`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    kind: ComponentKind,
    bytes: Vec<u8>,
}

impl Component {
    /// Checks that `bytes` starts with `kind`'s tag and a size matching the rest, and wraps it.
    /// `location` names where the bytes came from for the error.
    pub(crate) fn new(
        kind: ComponentKind,
        location: &str,
        bytes: Vec<u8>,
    ) -> Result<Self, CapError> {
        let (tag, size, content) = match bytes.as_slice() {
            [tag, hi, lo, content @ ..] => (*tag, u16::from_be_bytes([*hi, *lo]), content.len()),
            _ => {
                return Err(CapError::ComponentLength {
                    component: kind,
                    location: location.to_owned(),
                    declared: 0,
                    actual: bytes.len() as u64,
                })
            }
        };
        if tag != kind.tag() {
            return Err(CapError::ComponentTag {
                component: kind,
                location: location.to_owned(),
                found: tag,
                expected: kind.tag(),
            });
        }
        if usize::from(size) != content {
            return Err(CapError::ComponentLength {
                component: kind,
                location: location.to_owned(),
                declared: u64::from(size),
                actual: content as u64,
            });
        }
        Ok(Self { kind, bytes })
    }

    /// Which component this is.
    pub fn kind(&self) -> ComponentKind {
        self.kind
    }

    /// The whole component (tag, size, content) as it goes into the Load File Data Block.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The content after the 3-byte tag and size (the specification's `info` item), which is what the
    /// Directory component's sizes count.
    pub fn info(&self) -> &[u8] {
        self.bytes.get(3..).unwrap_or(&[])
    }
}

/// The components of one package, at most one of each kind, kept in load order.
///
/// Keeping them ordered and unique here means the Load File Data Block is simply their concatenation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Components {
    list: Vec<Component>,
}

impl Components {
    /// The component of a kind, if present.
    pub fn get(&self, kind: ComponentKind) -> Option<&Component> {
        self.list.iter().find(|c| c.kind == kind)
    }

    /// The components in load order.
    pub fn iter(&self) -> std::slice::Iter<'_, Component> {
        self.list.iter()
    }

    /// How many components are held.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether no component is held.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Total bytes of all components held: the length of their concatenation.
    pub fn total_len(&self) -> usize {
        self.list.iter().map(|c| c.bytes.len()).sum()
    }

    /// Concatenation of the components in load order.
    pub fn concatenated(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.total_len());
        for c in &self.list {
            out.extend_from_slice(&c.bytes);
        }
        out
    }

    /// Adds a component in its load-order place. Returns it back if that kind is already held, or if it
    /// is Debug (never loaded).
    pub(crate) fn insert(&mut self, component: Component) -> Result<(), Component> {
        let Some(pos) = component.kind.load_position() else {
            return Err(component);
        };
        if self.get(component.kind).is_some() {
            return Err(component);
        }
        let at = self
            .list
            .iter()
            .position(|c| c.kind.load_position().is_some_and(|p| p > pos))
            .unwrap_or(self.list.len());
        self.list.insert(at, component);
        Ok(())
    }

    /// A copy without the given kind.
    pub(crate) fn without(&self, kind: ComponentKind) -> Self {
        Self {
            list: self
                .list
                .iter()
                .filter(|c| c.kind != kind)
                .cloned()
                .collect(),
        }
    }
}

impl<'a> IntoIterator for &'a Components {
    type Item = &'a Component;
    type IntoIter = std::slice::Iter<'a, Component>;
    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}

/// The Header component, typed: what a card and an INSTALL [for load] need to know about the package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapHeader {
    /// CAP format major version (2).
    pub format_major: u8,
    /// CAP format minor version (1 or 2); decides the layout of the Directory and Class components.
    pub format_minor: u8,
    /// Package flags: `0x01` needs `int`, `0x02` has an Export component, `0x04` has an Applet component.
    pub flags: u8,
    /// Package version, major part (checked by the card's linker against importers).
    pub package_major: u8,
    /// Package version, minor part.
    pub package_minor: u8,
    /// The package AID: the Executable Load File AID in INSTALL [for load] and the card's registry.
    pub package_aid: Vec<u8>,
    /// The package name in internal form (`com/example/demo`), present in CAP 2.2 headers.
    pub package_name: Option<String>,
}

impl CapHeader {
    /// The magic number every Header component starts with.
    pub const MAGIC: u32 = 0xDECA_FFED;
    /// Flag: the package uses the `int` type, so the card must support it.
    pub const ACC_INT: u8 = 0x01;
    /// Flag: the package has an Export component.
    pub const ACC_EXPORT: u8 = 0x02;
    /// Flag: the package has an Applet component.
    pub const ACC_APPLET: u8 = 0x04;

    /// Whether the card must support the 32-bit `int` type to load this package.
    pub fn int_required(&self) -> bool {
        self.flags & Self::ACC_INT != 0
    }

    /// Whether the package declares an Export component (a library other packages link to).
    pub fn has_export(&self) -> bool {
        self.flags & Self::ACC_EXPORT != 0
    }

    /// Whether the package declares an Applet component (applets to install).
    pub fn has_applets(&self) -> bool {
        self.flags & Self::ACC_APPLET != 0
    }
}

/// An applet the package defines: its class AID is what INSTALL [for install] names as the module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppletInfo {
    /// The applet's AID (also the default instance AID).
    pub aid: Vec<u8>,
    /// Offset of its `install` method in the Method component's content.
    pub install_method_offset: u16,
}

/// A package this one imports; the card refuses the load unless it holds that package at a compatible
/// version, so tools show these before a load is attempted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedPackage {
    /// The imported package's AID.
    pub aid: Vec<u8>,
    /// Required major version.
    pub major: u8,
    /// Minimum minor version.
    pub minor: u8,
}

/// What validation of a component set yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Parsed {
    pub header: CapHeader,
    pub applets: Vec<AppletInfo>,
    pub imports: Vec<ImportedPackage>,
}

/// Bounds-checked big-endian reader over one component's content.
struct Reader<'a> {
    component: ComponentKind,
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(component: &'a Component) -> Self {
        Self {
            component: component.kind,
            data: component.info(),
            pos: 0,
        }
    }

    fn malformed(&self, reason: impl Into<String>) -> CapError {
        CapError::Malformed {
            component: self.component,
            reason: reason.into(),
        }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], CapError> {
        let slice = self
            .pos
            .checked_add(n)
            .and_then(|end| self.data.get(self.pos..end))
            .ok_or_else(|| {
                self.malformed(format!(
                    "ends at byte {} while reading {what} ({n} bytes)",
                    self.data.len()
                ))
            })?;
        self.pos = self.pos.saturating_add(n);
        Ok(slice)
    }

    fn u1(&mut self, what: &str) -> Result<u8, CapError> {
        match self.take(1, what)? {
            [b] => Ok(*b),
            _ => Err(self.malformed(format!("cannot read {what}"))),
        }
    }

    fn u2(&mut self, what: &str) -> Result<u16, CapError> {
        match self.take(2, what)? {
            [a, b] => Ok(u16::from_be_bytes([*a, *b])),
            _ => Err(self.malformed(format!("cannot read {what}"))),
        }
    }

    fn u4(&mut self, what: &str) -> Result<u32, CapError> {
        match self.take(4, what)? {
            [a, b, c, d] => Ok(u32::from_be_bytes([*a, *b, *c, *d])),
            _ => Err(self.malformed(format!("cannot read {what}"))),
        }
    }

    /// `u1 AID_length; u1 AID[AID_length]`, with the length checked against ISO 7816-5.
    fn aid(&mut self, what: &str) -> Result<Vec<u8>, CapError> {
        let len = usize::from(self.u1(what)?);
        if !AID_LEN.contains(&len) {
            return Err(self.malformed(format!("{what} is {len} bytes long; an AID has 5 to 16")));
        }
        Ok(self.take(len, what)?.to_vec())
    }

    fn finish(self) -> Result<(), CapError> {
        let extra = self.data.len().saturating_sub(self.pos);
        if extra == 0 {
            Ok(())
        } else {
            Err(self.malformed(format!("{extra} unexpected bytes after the last field")))
        }
    }
}

fn parse_header(c: &Component) -> Result<CapHeader, CapError> {
    let mut r = Reader::new(c);
    let magic = r.u4("magic")?;
    if magic != CapHeader::MAGIC {
        return Err(CapError::BadMagic { found: magic });
    }
    let format_minor = r.u1("CAP minor version")?;
    let format_major = r.u1("CAP major version")?;
    if format_major != 2 || !(1..=2).contains(&format_minor) {
        return Err(CapError::UnsupportedVersion {
            major: format_major,
            minor: format_minor,
        });
    }
    let flags = r.u1("flags")?;
    let package_minor = r.u1("package minor version")?;
    let package_major = r.u1("package major version")?;
    let package_aid = r.aid("package AID")?;
    // CAP 2.2 adds `package_name_info`; some 2.2 writers leave it out when the package has no remote
    // interfaces, so it is read when present and must then be exact.
    let package_name = if r.pos < r.data.len() {
        let len = usize::from(r.u1("package name length")?);
        let raw = r.take(len, "package name")?;
        let name =
            std::str::from_utf8(raw).map_err(|_| r.malformed("package name is not UTF-8"))?;
        (!name.is_empty()).then(|| name.to_owned())
    } else {
        None
    };
    r.finish()?;
    Ok(CapHeader {
        format_major,
        format_minor,
        flags,
        package_major,
        package_minor,
        package_aid,
        package_name,
    })
}

/// The parts of the Directory component that are checked against the other components.
struct Directory {
    /// Content sizes indexed by `tag - 1`: 11 entries in CAP 2.1, 12 (with Debug) in 2.2.
    sizes: Vec<u16>,
    import_count: u8,
    applet_count: u8,
}

fn parse_directory(c: &Component, header: &CapHeader) -> Result<Directory, CapError> {
    let mut r = Reader::new(c);
    let count = if header.format_minor >= 2 { 12 } else { 11 };
    let mut sizes = Vec::with_capacity(count);
    for kind in ComponentKind::ALL.iter().take(count) {
        sizes.push(r.u2(&format!("size of the {kind} component"))?);
    }
    r.u2("static field image size")?;
    r.u2("static array init count")?;
    r.u2("static array init size")?;
    let import_count = r.u1("import count")?;
    let applet_count = r.u1("applet count")?;
    let custom_count = r.u1("custom component count")?;
    for i in 0..custom_count {
        let tag = r.u1(&format!("tag of custom component {i}"))?;
        if tag < 128 {
            return Err(r.malformed(format!(
                "custom component {i} has tag {tag}; custom tags are 128-255"
            )));
        }
        r.u2(&format!("size of custom component {i}"))?;
        r.aid(&format!("AID of custom component {i}"))?;
    }
    r.finish()?;
    Ok(Directory {
        sizes,
        import_count,
        applet_count,
    })
}

fn parse_imports(c: &Component) -> Result<Vec<ImportedPackage>, CapError> {
    let mut r = Reader::new(c);
    let count = r.u1("package count")?;
    let mut out = Vec::with_capacity(usize::from(count));
    for i in 0..count {
        let minor = r.u1(&format!("minor version of import {i}"))?;
        let major = r.u1(&format!("major version of import {i}"))?;
        let aid = r.aid(&format!("AID of import {i}"))?;
        out.push(ImportedPackage { aid, major, minor });
    }
    r.finish()?;
    Ok(out)
}

fn parse_applets(c: &Component) -> Result<Vec<AppletInfo>, CapError> {
    let mut r = Reader::new(c);
    let count = r.u1("applet count")?;
    if count == 0 {
        return Err(
            r.malformed("applet count is 0; a package without applets has no Applet component")
        );
    }
    let mut out = Vec::with_capacity(usize::from(count));
    for i in 0..count {
        let aid = r.aid(&format!("AID of applet {i}"))?;
        let install_method_offset = r.u2(&format!("install method offset of applet {i}"))?;
        out.push(AppletInfo {
            aid,
            install_method_offset,
        });
    }
    r.finish()?;
    Ok(out)
}

/// Checks a component set as a whole: required components present, Header, Directory, Import and Applet
/// well formed, and the Directory's sizes and counts matching what is there.
///
/// `require_descriptor` is true for CAP files (the JCVM requires it) and false for IJC load files.
pub(crate) fn validate(
    components: &Components,
    require_descriptor: bool,
) -> Result<Parsed, CapError> {
    for kind in ComponentKind::LOAD_ORDER {
        let required = if require_descriptor {
            kind.required_in_cap()
        } else {
            kind.required_in_load_file()
        };
        if required && components.get(kind).is_none() {
            return Err(CapError::MissingComponent { component: kind });
        }
    }
    let header_c = components
        .get(ComponentKind::Header)
        .ok_or(CapError::MissingComponent {
            component: ComponentKind::Header,
        })?;
    let header = parse_header(header_c)?;
    let dir_c = components
        .get(ComponentKind::Directory)
        .ok_or(CapError::MissingComponent {
            component: ComponentKind::Directory,
        })?;
    let directory = parse_directory(dir_c, &header)?;

    for (kind, listed) in ComponentKind::ALL.iter().zip(directory.sizes.iter()) {
        if *kind == ComponentKind::Debug {
            continue; // Debug is never part of a load file; its size is not ours to check.
        }
        let actual = match components.get(*kind) {
            Some(c) => c.info().len(),
            // A load file may drop the Descriptor the Directory still lists.
            None if *kind == ComponentKind::Descriptor => continue,
            None => 0,
        };
        if usize::from(*listed) != actual {
            return Err(CapError::DirectoryMismatch {
                component: *kind,
                listed: u64::from(*listed),
                actual: actual as u64,
            });
        }
    }

    let imports = match components.get(ComponentKind::Import) {
        Some(c) => parse_imports(c)?,
        None => Vec::new(),
    };
    if imports.len() != usize::from(directory.import_count) {
        return Err(CapError::Malformed {
            component: ComponentKind::Directory,
            reason: format!(
                "import count is {}, but the Import component lists {}",
                directory.import_count,
                imports.len()
            ),
        });
    }

    let applets = match components.get(ComponentKind::Applet) {
        Some(c) => parse_applets(c)?,
        None => Vec::new(),
    };
    if applets.len() != usize::from(directory.applet_count) {
        return Err(CapError::Malformed {
            component: ComponentKind::Directory,
            reason: format!(
                "applet count is {}, but the Applet component lists {}",
                directory.applet_count,
                applets.len()
            ),
        });
    }
    let method_len = components
        .get(ComponentKind::Method)
        .map_or(0, |c| c.info().len());
    for (i, applet) in applets.iter().enumerate() {
        if usize::from(applet.install_method_offset) >= method_len {
            return Err(CapError::Malformed {
                component: ComponentKind::Applet,
                reason: format!(
                    "install method offset {} of applet {i} lies outside the {method_len}-byte Method component",
                    applet.install_method_offset
                ),
            });
        }
    }

    let flag_checks = [
        (header.has_applets(), ComponentKind::Applet, "ACC_APPLET"),
        (header.has_export(), ComponentKind::Export, "ACC_EXPORT"),
    ];
    for (flag, kind, name) in flag_checks {
        let present = components.get(kind).is_some();
        if flag != present {
            return Err(CapError::Malformed {
                component: ComponentKind::Header,
                reason: format!(
                    "flag {name} is {}, but the {kind} component is {}",
                    if flag { "set" } else { "clear" },
                    if present { "present" } else { "absent" }
                ),
            });
        }
    }

    Ok(Parsed {
        header,
        applets,
        imports,
    })
}
