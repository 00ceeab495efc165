//! Reading the ZIP container of a CAP file without trusting it.
//!
//! The archive is checked as a whole before a single byte is decompressed: entry count, duplicate and
//! unsafe names, declared sizes per entry and in total, compression ratios, and entries that overlap.
//! Only the component entries of the one package are then decompressed, each through a reader capped at
//! its declared size plus one byte, so a lying header cannot make us produce more than
//! [`MAX_COMPONENT_BYTES`] per component.

use std::collections::HashSet;
use std::io::{Cursor, Read};

use zip::CompressionMethod;
use zip::ZipArchive;

use super::component::{Component, ComponentKind, Components, MAX_COMPONENT_BYTES};
use super::error::CapError;

/// Limits applied to a CAP archive before anything in it is decompressed.
///
/// The defaults are far above any real Java Card package (whose components are at most 64 KiB each)
/// and far below what would hurt a signing host; tighten them for a pipeline that knows its inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapLimits {
    /// Largest archive accepted, in bytes as given (compressed).
    pub max_archive_bytes: u64,
    /// Most entries (files and directories) the archive may list.
    pub max_entries: u64,
    /// Largest declared uncompressed size of any single entry, component or not.
    pub max_entry_bytes: u64,
    /// Largest sum of declared uncompressed sizes over all entries.
    pub max_total_bytes: u64,
    /// Highest uncompressed:compressed ratio accepted for an entry larger than `ratio_floor_bytes`.
    pub max_ratio: u64,
    /// Entries up to this uncompressed size are exempt from the ratio check (tiny files compress
    /// unpredictably, and their size is harmless anyway).
    pub ratio_floor_bytes: u64,
}

impl Default for CapLimits {
    fn default() -> Self {
        Self {
            max_archive_bytes: 32 << 20,
            max_entries: 4096,
            max_entry_bytes: 16 << 20,
            max_total_bytes: 64 << 20,
            max_ratio: 100,
            ratio_floor_bytes: 64 << 10,
        }
    }
}

/// What the central directory says about one entry, gathered before any decompression.
struct EntryMeta {
    index: usize,
    name: String,
    size: u64,
    compression: CompressionMethod,
    encrypted: bool,
    is_dir: bool,
}

/// A component entry found in the archive: its kind and where it is.
struct ComponentEntry {
    kind: ComponentKind,
    index: usize,
    name: String,
    size: u64,
    compression: CompressionMethod,
    encrypted: bool,
}

/// Reads the one package of a CAP archive: its path and its loadable components (Debug excluded).
pub(crate) fn read_package(
    bytes: &[u8],
    limits: &CapLimits,
) -> Result<(String, Components), CapError> {
    let len = bytes.len() as u64;
    if len > limits.max_archive_bytes {
        return Err(CapError::InputTooLarge {
            what: "CAP archive",
            size: len,
            limit: limits.max_archive_bytes,
        });
    }
    let mut archive = ZipArchive::new(Cursor::new(bytes)).map_err(CapError::NotZip)?;
    check_raw_central_directory(bytes, archive.central_directory_start(), limits)?;
    let count = archive.len() as u64;
    if count > limits.max_entries {
        return Err(CapError::TooManyEntries {
            count,
            limit: limits.max_entries,
        });
    }

    let metas = survey(&mut archive, limits)?;

    // Find the package and its component entries.
    let mut package: Option<String> = None;
    let mut entries: Vec<ComponentEntry> = Vec::new();
    for meta in metas.iter().filter(|m| !m.is_dir) {
        let Some((pkg, kind)) = classify(&meta.name) else {
            continue;
        };
        match &package {
            None => package = Some(pkg.to_owned()),
            Some(p) if p != pkg => {
                return Err(CapError::MultiplePackages {
                    first: p.clone(),
                    second: pkg.to_owned(),
                })
            }
            Some(_) => {}
        }
        if let Some(prev) = entries.iter().find(|e| e.kind == kind) {
            return Err(CapError::DuplicateComponent {
                component: kind,
                first: format!("entry {:?}", prev.name),
                second: format!("entry {:?}", meta.name),
            });
        }
        entries.push(ComponentEntry {
            kind,
            index: meta.index,
            name: meta.name.clone(),
            size: meta.size,
            compression: meta.compression,
            encrypted: meta.encrypted,
        });
    }
    let package = package.ok_or(CapError::NoPackage)?;

    let mut components = Components::default();
    for entry in entries.iter().filter(|e| e.kind != ComponentKind::Debug) {
        let bytes = read_component_entry(&mut archive, entry)?;
        let location = format!("entry {:?}", entry.name);
        let component = Component::new(entry.kind, &location, bytes)?;
        // Uniqueness was checked above, so insertion cannot be refused; stay panic-free regardless.
        if components.insert(component).is_err() {
            return Err(CapError::DuplicateComponent {
                component: entry.kind,
                first: "an earlier entry".to_owned(),
                second: location,
            });
        }
    }
    Ok((package, components))
}

/// Walks the central directory records byte by byte. The ZIP reader keeps only the last of several
/// records with the same name, so duplicates are only visible here.
fn check_raw_central_directory(
    bytes: &[u8],
    start: u64,
    limits: &CapLimits,
) -> Result<(), CapError> {
    const SIGNATURE: [u8; 4] = [0x50, 0x4b, 0x01, 0x02];
    const FIXED: usize = 46;
    let Ok(mut pos) = usize::try_from(start) else {
        return Ok(());
    };
    let mut seen: HashSet<&[u8]> = HashSet::new();
    let mut count: u64 = 0;
    while let Some(fixed) = pos.checked_add(FIXED).and_then(|end| bytes.get(pos..end)) {
        if fixed.get(0..4) != Some(&SIGNATURE[..]) {
            break;
        }
        let le16 = |at: usize| -> usize {
            match fixed.get(at..at.saturating_add(2)) {
                Some([a, b]) => usize::from(u16::from_le_bytes([*a, *b])),
                _ => 0,
            }
        };
        let (name_len, extra_len, comment_len) = (le16(28), le16(30), le16(32));
        let name_start = pos.saturating_add(FIXED);
        let Some(name) = name_start
            .checked_add(name_len)
            .and_then(|end| bytes.get(name_start..end))
        else {
            break;
        };
        count = count.saturating_add(1);
        if count > limits.max_entries {
            return Err(CapError::TooManyEntries {
                count,
                limit: limits.max_entries,
            });
        }
        if !seen.insert(name) {
            return Err(CapError::DuplicateEntry {
                entry: String::from_utf8_lossy(name).into_owned(),
            });
        }
        pos = name_start
            .saturating_add(name_len)
            .saturating_add(extra_len)
            .saturating_add(comment_len);
    }
    Ok(())
}

/// Checks every entry's name, declared sizes and ratio, and that no two entries share bytes.
fn survey(
    archive: &mut ZipArchive<Cursor<&[u8]>>,
    limits: &CapLimits,
) -> Result<Vec<EntryMeta>, CapError> {
    let mut metas = Vec::with_capacity(archive.len());
    let mut ranges: Vec<(u64, u64, usize)> = Vec::with_capacity(archive.len());
    let mut total: u64 = 0;
    let dir_start = archive.central_directory_start();
    for index in 0..archive.len() {
        let name_hint = archive.name_for_index(index).unwrap_or("?").to_owned();
        let file = archive
            .by_index_raw(index)
            .map_err(|e| CapError::EntryRead {
                entry: name_hint.clone(),
                source: e.into(),
            })?;
        let name = file.name().to_owned();
        if is_unsafe_path(&name) {
            return Err(CapError::UnsafePath { entry: name });
        }
        let size = file.size();
        let compressed = file.compressed_size();
        if size > limits.max_entry_bytes {
            return Err(CapError::EntryTooLarge {
                entry: name,
                declared: size,
                limit: limits.max_entry_bytes,
            });
        }
        if size > limits.ratio_floor_bytes && size > compressed.saturating_mul(limits.max_ratio) {
            return Err(CapError::CompressionRatio {
                entry: name,
                compressed,
                uncompressed: size,
                limit: limits.max_ratio,
            });
        }
        total = total.saturating_add(size);
        if total > limits.max_total_bytes {
            return Err(CapError::ArchiveTooLarge {
                total,
                limit: limits.max_total_bytes,
            });
        }
        let end = file.data_start().saturating_add(compressed);
        if end > dir_start {
            return Err(CapError::OverlappingEntries {
                first: name,
                second: "(central directory)".to_owned(),
            });
        }
        ranges.push((file.header_start(), end, index));
        metas.push(EntryMeta {
            index,
            size,
            compression: file.compression(),
            encrypted: file.encrypted(),
            is_dir: file.is_dir(),
            name,
        });
    }

    ranges.sort_unstable();
    let mut furthest: Option<(u64, usize)> = None;
    for (start, end, index) in ranges {
        if let Some((prev_end, prev_index)) = furthest {
            if start < prev_end {
                let name_of = |i: usize| {
                    metas
                        .get(i)
                        .map_or_else(|| "?".to_owned(), |m| m.name.clone())
                };
                return Err(CapError::OverlappingEntries {
                    first: name_of(prev_index),
                    second: name_of(index),
                });
            }
        }
        if furthest.is_none_or(|(prev_end, _)| end > prev_end) {
            furthest = Some((end, index));
        }
    }
    Ok(metas)
}

/// True for names that would escape an extraction directory or mean different files on different
/// systems: absolute paths, drive letters, backslashes, NUL, or a `..` component.
fn is_unsafe_path(name: &str) -> bool {
    name.is_empty()
        || name.starts_with('/')
        || name.contains('\\')
        || name.contains('\0')
        || name
            .split('/')
            .next()
            .is_some_and(|first| first.contains(':'))
        || name.split('/').any(|part| part == "..")
}

/// `<package path>/javacard/<Kind>.cap` → (package path, kind). The component file name is matched
/// without regard to case so that `Header.cap` and `HEADER.CAP` count as the same component.
fn classify(name: &str) -> Option<(&str, ComponentKind)> {
    let (dir, file) = name.rsplit_once('/')?;
    let package = dir.strip_suffix("/javacard")?;
    if package.is_empty() {
        return None;
    }
    let kind = ComponentKind::ALL
        .into_iter()
        .find(|k| k.file_name().eq_ignore_ascii_case(file))?;
    Some((package, kind))
}

/// Decompresses one component entry, never producing more than its declared size plus one byte.
fn read_component_entry(
    archive: &mut ZipArchive<Cursor<&[u8]>>,
    entry: &ComponentEntry,
) -> Result<Vec<u8>, CapError> {
    let limit = MAX_COMPONENT_BYTES as u64;
    if entry.size > limit {
        return Err(CapError::ComponentTooLarge {
            component: entry.kind,
            entry: entry.name.clone(),
            size: entry.size,
            limit,
        });
    }
    if !matches!(
        entry.compression,
        CompressionMethod::Stored | CompressionMethod::Deflated
    ) {
        return Err(CapError::UnsupportedCompression {
            entry: entry.name.clone(),
            method: format!("{:?}", entry.compression),
        });
    }
    if entry.encrypted {
        return Err(CapError::EncryptedEntry {
            entry: entry.name.clone(),
        });
    }
    let file = archive
        .by_index(entry.index)
        .map_err(|e| CapError::EntryRead {
            entry: entry.name.clone(),
            source: e.into(),
        })?;
    let mut out = Vec::with_capacity(usize::try_from(entry.size).unwrap_or(0));
    file.take(entry.size.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| CapError::EntryRead {
            entry: entry.name.clone(),
            source: e,
        })?;
    let actual = out.len() as u64;
    if actual > entry.size {
        return Err(CapError::EntryLargerThanDeclared {
            entry: entry.name.clone(),
            declared: entry.size,
        });
    }
    if actual < entry.size {
        return Err(CapError::EntrySmallerThanDeclared {
            entry: entry.name.clone(),
            declared: entry.size,
            actual,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_paths() {
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "..",
            "../x",
            "C:/x",
            "c:x",
            "a\\b",
            "a\0b",
            "x/..",
        ] {
            assert!(is_unsafe_path(bad), "{bad:?} should be unsafe");
        }
        for good in [
            "a/b/javacard/Header.cap",
            "META-INF/MANIFEST.MF",
            "a/..b/c",
            "./a",
            "a..b",
        ] {
            assert!(!is_unsafe_path(good), "{good:?} should be safe");
        }
    }

    #[test]
    fn classify_names() {
        assert_eq!(
            classify("a/b/javacard/Header.cap"),
            Some(("a/b", ComponentKind::Header))
        );
        assert_eq!(
            classify("a/javacard/REFLOCATION.CAP"),
            Some(("a", ComponentKind::RefLocation))
        );
        assert_eq!(classify("javacard/Header.cap"), None);
        assert_eq!(classify("a/javacard/Custom.cap"), None);
        assert_eq!(classify("a/javacard/x/Header.cap"), None);
        assert_eq!(classify("APPLET-INF/classes/a/A.class"), None);
    }
}
