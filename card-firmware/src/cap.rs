//! What the card learns from a Java Card load file data block (the concatenated CAP components).
//!
//! The card does not execute CAP code; it registers the package and its applets. Every component
//! is walked (tag, 16-bit size, body) so a malformed LFDB is refused as a whole, and the Header
//! (tag `01`: magic `DECAFFED`, versions, package AID) and Applet (tag `03`: applet AIDs)
//! components are decoded. Unknown components are skipped by size.

use alloc::vec::Vec;

use crate::aid::Aid;

/// CAP Header component tag.
pub const COMPONENT_HEADER: u8 = 0x01;
/// CAP Applet component tag.
pub const COMPONENT_APPLET: u8 = 0x03;
const MAGIC: [u8; 4] = [0xDE, 0xCA, 0xFF, 0xED];

/// Why an LFDB is not a CAP file this card accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapError {
    /// A component's size runs past the end, or bytes are missing.
    Truncated,
    /// The first component is not a Header, or the magic is wrong.
    NotCap,
    /// An AID field is not 5..=16 bytes.
    BadAid,
    /// A component appears twice.
    Duplicate,
}

/// The facts the registry needs from a CAP load file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapInfo {
    /// Package AID (the executable load file AID).
    pub package_aid: Aid,
    /// Package version `[major, minor]`.
    pub version: [u8; 2],
    /// Applet AIDs (the executable modules); empty for a library package.
    pub applets: Vec<Aid>,
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CapError> {
        if n > self.0.len() {
            return Err(CapError::Truncated);
        }
        let (h, t) = self.0.split_at(n);
        self.0 = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8, CapError> {
        let (b, rest) = self.0.split_first().ok_or(CapError::Truncated)?;
        self.0 = rest;
        Ok(*b)
    }
    fn u16(&mut self) -> Result<u16, CapError> {
        Ok(u16::from_be_bytes([self.u8()?, self.u8()?]))
    }
    fn aid(&mut self) -> Result<Aid, CapError> {
        let len = self.u8()?;
        Aid::new(self.take(usize::from(len))?).ok_or(CapError::BadAid)
    }
}

/// Parse an LFDB made of CAP components.
pub fn parse_lfdb(lfdb: &[u8]) -> Result<CapInfo, CapError> {
    let mut c = Cursor(lfdb);
    let mut header: Option<(Aid, [u8; 2])> = None;
    let mut applets: Option<Vec<Aid>> = None;
    let mut first = true;
    while !c.0.is_empty() {
        let tag = c.u8()?;
        let size = c.u16()?;
        let body = c.take(usize::from(size))?;
        if first && tag != COMPONENT_HEADER {
            return Err(CapError::NotCap);
        }
        first = false;
        match tag {
            COMPONENT_HEADER => {
                if header.is_some() {
                    return Err(CapError::Duplicate);
                }
                header = Some(parse_header(body)?);
            }
            COMPONENT_APPLET => {
                if applets.is_some() {
                    return Err(CapError::Duplicate);
                }
                applets = Some(parse_applets(body)?);
            }
            _ => {}
        }
    }
    let (package_aid, version) = header.ok_or(CapError::NotCap)?;
    Ok(CapInfo {
        package_aid,
        version,
        applets: applets.unwrap_or_default(),
    })
}

fn parse_header(body: &[u8]) -> Result<(Aid, [u8; 2]), CapError> {
    let mut c = Cursor(body);
    if c.take(4)? != MAGIC {
        return Err(CapError::NotCap);
    }
    let _cap_minor = c.u8()?;
    let _cap_major = c.u8()?;
    let _flags = c.u8()?;
    let minor = c.u8()?;
    let major = c.u8()?;
    let aid = c.aid()?;
    // Java Card 2.2+ appends package_name_info; its content does not matter here.
    Ok((aid, [major, minor]))
}

fn parse_applets(body: &[u8]) -> Result<Vec<Aid>, CapError> {
    let mut c = Cursor(body);
    let count = c.u8()?;
    let mut out = Vec::new();
    for _ in 0..count {
        out.push(c.aid()?);
        let _install_method_offset = c.u16()?;
    }
    if !c.0.is_empty() {
        return Err(CapError::Truncated);
    }
    Ok(out)
}

/// Build a minimal CAP LFDB (Header, Applet and an empty Directory-like filler) for tests and
/// demos: the card registers it like any other package.
pub fn synthetic_lfdb(package_aid: &[u8], version: [u8; 2], applets: &[&[u8]]) -> Vec<u8> {
    let mut header = Vec::new();
    header.extend_from_slice(&MAGIC);
    header.extend_from_slice(&[0x02, 0x02, 0x04]); // CAP 2.2, flags: applets present
    header.extend_from_slice(&[version[1], version[0]]);
    header.push(u8::try_from(package_aid.len()).unwrap_or(0));
    header.extend_from_slice(package_aid);
    let mut applet = Vec::new();
    applet.push(u8::try_from(applets.len()).unwrap_or(0));
    for a in applets {
        applet.push(u8::try_from(a.len()).unwrap_or(0));
        applet.extend_from_slice(a);
        applet.extend_from_slice(&[0x00, 0x10]);
    }
    let mut out = Vec::new();
    for (tag, body) in [
        (COMPONENT_HEADER, &header),
        (0x02, &Vec::new()),
        (COMPONENT_APPLET, &applet),
    ] {
        if tag == COMPONENT_APPLET && applets.is_empty() {
            continue;
        }
        out.push(tag);
        out.extend_from_slice(&u16::try_from(body.len()).unwrap_or(0).to_be_bytes());
        out.extend_from_slice(body);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_round_trip() {
        let lfdb = synthetic_lfdb(&[1, 2, 3, 4, 5], [1, 0], &[&[1, 2, 3, 4, 5, 6, 7, 8]]);
        let info = parse_lfdb(&lfdb).unwrap();
        assert_eq!(info.package_aid.as_bytes(), &[1, 2, 3, 4, 5]);
        assert_eq!(info.version, [1, 0]);
        assert_eq!(info.applets.len(), 1);
        for cut in 0..lfdb.len() {
            // A cut between components still parses (the LFDB hash catches it); a cut inside
            // one never does, and nothing panics.
            if let Ok(short) = parse_lfdb(&lfdb[..cut]) {
                assert!(short.applets.is_empty());
            }
        }
        assert!(parse_lfdb(&lfdb[..10]).is_err());
        assert!(parse_lfdb(&[]).is_err());
    }

    #[test]
    fn real_cap_fixture_if_present() {
        // The empty-2.2.1 CAP's LFDB is built by the host tools; here only the shape matters.
        assert_eq!(parse_lfdb(&[0x02, 0x00, 0x00]), Err(CapError::NotCap));
    }
}
