//! Java Card load files: CAP archives and IJC files in, Load File Data Blocks (LFDB) out.
//!
//! The LFDB is what a card receives in LOAD commands (tag `C4`) and what the DAP signs, so its bytes must
//! be exactly those that other GlobalPlatform tools produce: the components in the order Header,
//! Directory, Import, Applet, Class, Method, StaticField, Export, ConstantPool, RefLocation, and — by
//! the caller's choice, recorded in the package manifest — Descriptor ([`LfdbPolicy`]).
//!
//! CAP files come from outside the issuer. [`CapFile::parse`] treats them as hostile: the ZIP container
//! is checked against [`CapLimits`] before anything is decompressed, and every component is read with
//! bounds checks; any problem is a [`CapError`] that names the entry or component, never a panic.
//!
//! [`build_demo_cap`] writes a small deterministic CAP file so the project's demo needs no outside file.

mod archive;
mod component;
mod demo;
mod error;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use archive::CapLimits;
pub use component::{
    AppletInfo, CapHeader, Component, ComponentKind, Components, ImportedPackage, AID_LEN,
    MAX_COMPONENT_BYTES,
};
pub use demo::build_demo_cap;
pub use error::CapError;

/// Whether the Descriptor component is appended to the Load File Data Block.
///
/// GlobalPlatform tools differ here, and the choice changes the LFDB hash and so every DAP: a package must
/// say which policy it used ("with-descriptor" / "without-descriptor" in manifests and on the command
/// line) so that anyone can recompute the same bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LfdbPolicy {
    /// Append the Descriptor component after RefLocation.
    WithDescriptor,
    /// Leave the Descriptor component out (cards do not need it to link or run the code).
    WithoutDescriptor,
}

impl LfdbPolicy {
    /// The policy's name as written in manifests and accepted on the command line.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::WithDescriptor => "with-descriptor",
            Self::WithoutDescriptor => "without-descriptor",
        }
    }
}

impl fmt::Display for LfdbPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A policy name that is neither `with-descriptor` nor `without-descriptor`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown LFDB policy {0:?}: expected \"with-descriptor\" or \"without-descriptor\"")]
pub struct UnknownLfdbPolicy(pub String);

impl FromStr for LfdbPolicy {
    type Err = UnknownLfdbPolicy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "with-descriptor" => Ok(Self::WithDescriptor),
            "without-descriptor" => Ok(Self::WithoutDescriptor),
            other => Err(UnknownLfdbPolicy(other.to_owned())),
        }
    }
}

/// A parsed and validated CAP file: one Java Card package, its typed Header and Applet information, and
/// its loadable components.
///
/// Fields are private so that a `CapFile` can only exist after every check passed; the accessors give the
/// values INSTALL [for load] and INSTALL [for install] need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapFile {
    package_name: String,
    load_file: LoadFile,
}

impl CapFile {
    /// Parses a CAP archive with the default [`CapLimits`].
    ///
    /// # Errors
    /// Any [`CapError`]: unsafe or oversized archive, missing/duplicate/malformed component, more than one
    /// package, unsupported CAP format.
    pub fn parse(bytes: &[u8]) -> Result<Self, CapError> {
        Self::parse_with_limits(bytes, &CapLimits::default())
    }

    /// Parses a CAP archive under caller-chosen limits (a pipeline that knows its inputs can tighten them).
    ///
    /// # Errors
    /// As [`CapFile::parse`].
    pub fn parse_with_limits(bytes: &[u8], limits: &CapLimits) -> Result<Self, CapError> {
        let (package_name, components) = archive::read_package(bytes, limits)?;
        let parsed = component::validate(&components, true)?;
        if let Some(name) = &parsed.header.package_name {
            if *name != package_name {
                return Err(CapError::PackageNameMismatch {
                    header: name.clone(),
                    path: package_name,
                });
            }
        }
        Ok(Self {
            package_name,
            load_file: LoadFile::from_parsed(parsed, components),
        })
    }

    /// The package AID (the Executable Load File AID of INSTALL [for load]).
    pub fn package_aid(&self) -> &[u8] {
        self.load_file.package_aid()
    }

    /// The package path in the archive (`com/example/demo`), which is also the package's internal name.
    pub fn package_name(&self) -> &str {
        &self.package_name
    }

    /// The applets the package defines, in Applet-component order.
    pub fn applets(&self) -> &[AppletInfo] {
        self.load_file.applets()
    }

    /// The packages this one imports.
    pub fn imports(&self) -> &[ImportedPackage] {
        self.load_file.imports()
    }

    /// The typed Header component (versions, flags, AID, name).
    pub fn header(&self) -> &CapHeader {
        self.load_file.header()
    }

    /// All loadable components, Descriptor included, in load order.
    pub fn components(&self) -> &Components {
        self.load_file.components()
    }

    /// The Load File Data Block under `policy`: the components concatenated in load order, with or
    /// without the Descriptor.
    pub fn lfdb(&self, policy: LfdbPolicy) -> Vec<u8> {
        self.load_file(policy).lfdb()
    }

    /// The package as a [`LoadFile`] under `policy`, the form the rest of the signer works with whether
    /// the input was a CAP or an IJC.
    pub fn load_file(&self, policy: LfdbPolicy) -> LoadFile {
        match policy {
            LfdbPolicy::WithDescriptor => self.load_file.clone(),
            LfdbPolicy::WithoutDescriptor => LoadFile {
                components: self.load_file.components.without(ComponentKind::Descriptor),
                ..self.load_file.clone()
            },
        }
    }
}

/// A validated load file: the components exactly as they are sent to a card, whatever the input was.
///
/// Built from a CAP file by [`CapFile::load_file`] or from raw LFDB bytes (`.ijc`) by
/// [`LoadFile::from_ijc`]; both run the same component checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadFile {
    header: CapHeader,
    applets: Vec<AppletInfo>,
    imports: Vec<ImportedPackage>,
    components: Components,
}

impl LoadFile {
    /// The largest IJC accepted: every loadable component at its maximum size.
    pub const MAX_IJC_BYTES: usize = 11 * MAX_COMPONENT_BYTES;

    fn from_parsed(parsed: component::Parsed, components: Components) -> Self {
        Self {
            header: parsed.header,
            applets: parsed.applets,
            imports: parsed.imports,
            components,
        }
    }

    /// Parses an IJC file: the components already concatenated as a Load File Data Block.
    ///
    /// IJC files are what some converters and vendors hand over instead of a CAP. Components must appear
    /// once each in load order (the order cards expect), Debug is refused, the Descriptor is optional, and
    /// nothing may follow the last component.
    ///
    /// # Errors
    /// [`CapError::InputTooLarge`], [`CapError::UnknownTag`], [`CapError::NotLoadable`],
    /// [`CapError::DuplicateComponent`], [`CapError::OutOfOrder`], [`CapError::ComponentLength`] for a
    /// truncated component, and every component check [`CapFile::parse`] makes.
    pub fn from_ijc(bytes: &[u8]) -> Result<Self, CapError> {
        let size = bytes.len() as u64;
        if bytes.len() > Self::MAX_IJC_BYTES {
            return Err(CapError::InputTooLarge {
                what: "IJC load file",
                size,
                limit: Self::MAX_IJC_BYTES as u64,
            });
        }
        let mut components = Components::default();
        let mut last: Option<(ComponentKind, usize)> = None;
        let mut offset = 0usize;
        while let Some(rest) = bytes.get(offset..).filter(|r| !r.is_empty()) {
            let location = format!("IJC offset {offset}");
            let (tag, declared) = match rest {
                [tag, hi, lo, ..] => (*tag, usize::from(u16::from_be_bytes([*hi, *lo]))),
                [tag, ..] => {
                    let kind = ComponentKind::from_tag(*tag).ok_or(CapError::UnknownTag {
                        offset: offset as u64,
                        tag: *tag,
                    })?;
                    return Err(CapError::ComponentLength {
                        component: kind,
                        location,
                        declared: 0,
                        actual: 0,
                    });
                }
                [] => break,
            };
            let kind = ComponentKind::from_tag(tag).ok_or(CapError::UnknownTag {
                offset: offset as u64,
                tag,
            })?;
            let Some(position) = kind.load_position() else {
                return Err(CapError::NotLoadable {
                    component: kind,
                    offset: offset as u64,
                });
            };
            if let Some((prev, prev_offset)) = last {
                if prev == kind {
                    return Err(CapError::DuplicateComponent {
                        component: kind,
                        first: format!("IJC offset {prev_offset}"),
                        second: location,
                    });
                }
                if prev.load_position().is_some_and(|p| p > position) {
                    return Err(CapError::OutOfOrder {
                        component: kind,
                        after: prev,
                        offset: offset as u64,
                    });
                }
            }
            let end = offset.saturating_add(3).saturating_add(declared);
            let Some(raw) = bytes.get(offset..end) else {
                return Err(CapError::ComponentLength {
                    component: kind,
                    location,
                    declared: declared as u64,
                    actual: rest.len().saturating_sub(3) as u64,
                });
            };
            let component = Component::new(kind, &location, raw.to_vec())?;
            if components.insert(component).is_err() {
                return Err(CapError::DuplicateComponent {
                    component: kind,
                    first: "an earlier offset".to_owned(),
                    second: location,
                });
            }
            last = Some((kind, offset));
            offset = end;
        }
        let parsed = component::validate(&components, false)?;
        Ok(Self::from_parsed(parsed, components))
    }

    /// The typed Header component.
    pub fn header(&self) -> &CapHeader {
        &self.header
    }

    /// The package AID (the Executable Load File AID of INSTALL [for load]).
    pub fn package_aid(&self) -> &[u8] {
        &self.header.package_aid
    }

    /// The applets the package defines.
    pub fn applets(&self) -> &[AppletInfo] {
        &self.applets
    }

    /// The packages this one imports.
    pub fn imports(&self) -> &[ImportedPackage] {
        &self.imports
    }

    /// The components in load order.
    pub fn components(&self) -> &Components {
        &self.components
    }

    /// Which policy these bytes follow: whether the Descriptor is part of the LFDB.
    pub fn policy(&self) -> LfdbPolicy {
        if self.components.get(ComponentKind::Descriptor).is_some() {
            LfdbPolicy::WithDescriptor
        } else {
            LfdbPolicy::WithoutDescriptor
        }
    }

    /// The Load File Data Block: the components concatenated in load order (for an IJC input, the input
    /// bytes unchanged).
    pub fn lfdb(&self) -> Vec<u8> {
        self.components.concatenated()
    }

    /// Length of [`LoadFile::lfdb`] without building it.
    pub fn lfdb_len(&self) -> usize {
        self.components.total_len()
    }
}
