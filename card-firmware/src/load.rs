//! INSTALL [for load] and LOAD (GP 2.3.1 §11.5.2.3.1, §11.6, Appendix C.2).
//!
//! The load session lives in RAM: blocks must arrive in order (P2 = block number, P1 `80` on the
//! last); nothing is written until the last block has been checked, so a refused, interrupted or
//! abandoned load leaves nothing behind. On the last block the load file is parsed (`E2` DAP
//! blocks, then `C4` LFDB), the LFDB hash from INSTALL [for load] is checked, the CAP components
//! are decoded and the executable load file with its modules enters the registry.

use alloc::vec::Vec;

use gp_core::apdu::{CommandApdu, ResponseApdu};
use gp_core::tlv::TlvReader;
use sha2::Digest;

use crate::aid::{Aid, ISD_AID};
use crate::cap;
use crate::error::{refuse, Error, Result};
use crate::isd::{ok, Ctx};
use crate::registry::LoadFile;
use crate::Sw;

/// Largest load file the card accepts (it is buffered in RAM until the last block).
pub const MAX_LOAD_FILE: usize = 64 * 1024;

/// An accepted INSTALL [for load] and the blocks received since.
#[derive(Debug, Clone)]
pub(crate) struct LoadSession {
    pub load_file_aid: Aid,
    pub sd_aid: Aid,
    pub lfdb_hash: Vec<u8>,
    pub next_block: u16,
    pub data: Vec<u8>,
}

fn bad() -> Error {
    Error::Refused(Sw::INCORRECT_DATA)
}

/// Reads the LV fields of INSTALL data.
pub(crate) struct Lv<'a>(pub &'a [u8]);

impl<'a> Lv<'a> {
    /// A field with a one-byte length.
    pub fn short(&mut self) -> Result<&'a [u8]> {
        let (&n, rest) = self.0.split_first().ok_or_else(bad)?;
        let (v, rest) = rest.split_at_checked(usize::from(n)).ok_or_else(bad)?;
        self.0 = rest;
        Ok(v)
    }
    /// A field with a BER length (`81 xx`, `82 xx xx`).
    pub fn ber(&mut self) -> Result<&'a [u8]> {
        let (n, rest) = gp_core::tlv::read_len(self.0).map_err(|_| bad())?;
        let (v, rest) = rest.split_at_checked(n).ok_or_else(bad)?;
        self.0 = rest;
        Ok(v)
    }
    /// All bytes consumed.
    pub fn end(self) -> Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            refuse(Sw::INCORRECT_DATA)
        }
    }
}

/// INSTALL [for load].
pub(crate) fn install_for_load(ctx: &mut Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu> {
    ctx.ram.load = None;
    let mut lv = Lv(&cmd.data);
    let elf = Aid::new(lv.short()?).ok_or_else(bad)?;
    let sd = lv.short()?;
    let hash = lv.short()?;
    let params = lv.ber()?;
    let token = lv.short()?;
    lv.end()?;
    let sd_aid = if sd.is_empty() {
        ISD_AID
    } else {
        Aid::new(sd).ok_or_else(bad)?
    };
    if sd_aid != ISD_AID {
        // Supplementary security domains arrive with issue 3.
        return refuse(Sw::REFERENCED_DATA_NOT_FOUND);
    }
    if !matches!(hash.len(), 0 | 20 | 32 | 48 | 64) {
        return refuse(Sw::INCORRECT_DATA);
    }
    if !token.is_empty() {
        // The ISD has Authorized Management; it does not process load tokens.
        return refuse(Sw::INCORRECT_DATA);
    }
    if !params.is_empty() {
        // Load parameters must at least be well-formed TLV.
        for t in TlvReader::new(params) {
            t.map_err(|_| bad())?;
        }
    }
    if ctx.state.registry.aid_in_use(&elf) || elf == ISD_AID {
        return refuse(Sw::CONDITIONS_NOT_SATISFIED);
    }
    ctx.ram.load = Some(LoadSession {
        load_file_aid: elf,
        sd_aid,
        lfdb_hash: hash.to_vec(),
        next_block: 0,
        data: Vec::new(),
    });
    ok(alloc::vec![0x00])
}

/// LOAD: one block.
pub(crate) fn load(ctx: &mut Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu> {
    ctx.require_auth()?;
    ctx.require_content_change()?;
    // Any refusal below ends the load: take the session out and put it back only on success.
    let mut session = ctx
        .ram
        .load
        .take()
        .ok_or(Error::Refused(Sw::CONDITIONS_NOT_SATISFIED))?;
    if cmd.p1 & 0x7F != 0 || u16::from(cmd.p2) != session.next_block {
        return refuse(Sw::INCORRECT_P1P2);
    }
    if session.data.len().saturating_add(cmd.data.len()) > MAX_LOAD_FILE {
        return refuse(Sw::NOT_ENOUGH_MEMORY);
    }
    session.data.extend_from_slice(&cmd.data);
    session.next_block = session.next_block.saturating_add(1);
    if cmd.p1 & 0x80 == 0 {
        if session.next_block > 0xFF {
            return refuse(Sw::INCORRECT_P1P2);
        }
        ctx.ram.load = Some(session);
        return ok(alloc::vec![0x00]);
    }
    let entry = complete(&session, ctx)?;
    ctx.state.registry.load_files.push(entry);
    ok(alloc::vec![0x00])
}

/// Check the whole load file and build its registry entry.
fn complete(session: &LoadSession, ctx: &Ctx<'_>) -> Result<LoadFile> {
    let mut lfdb: Option<&[u8]> = None;
    for tlv in TlvReader::new(&session.data) {
        let tlv = tlv.map_err(|_| bad())?;
        match tlv.tag {
            // DAP blocks: the ISD holds no DAP Verification privilege and no SSD exists yet,
            // so they are checked for form only.
            0xE2 if lfdb.is_none() => {
                for inner in tlv.children() {
                    inner.map_err(|_| bad())?;
                }
            }
            0xC4 if lfdb.is_none() => lfdb = Some(tlv.value),
            // Ciphered LFDBs need an SD with the Ciphered Load File Data Block privilege.
            0xD3 | 0xD4 => return refuse(Sw::CONDITIONS_NOT_SATISFIED),
            _ => return refuse(Sw::INCORRECT_DATA),
        }
    }
    let lfdb = lfdb.ok_or_else(bad)?;
    let sha256: [u8; 32] = sha2::Sha256::digest(lfdb).into();
    let expected = session.lfdb_hash.as_slice();
    let matches = match expected.len() {
        0 => true,
        20 => ct_eq(&sha1::Sha1::digest(lfdb), expected),
        32 => ct_eq(&sha256, expected),
        48 => ct_eq(&sha2::Sha384::digest(lfdb), expected),
        64 => ct_eq(&sha2::Sha512::digest(lfdb), expected),
        _ => false,
    };
    if !matches {
        return refuse(Sw::INCORRECT_DATA);
    }
    let info = cap::parse_lfdb(lfdb).map_err(|_| bad())?;
    if info.package_aid != session.load_file_aid {
        return refuse(Sw::INCORRECT_DATA);
    }
    let registry = &ctx.state.registry;
    for (i, applet) in info.applets.iter().enumerate() {
        let repeated = info.applets.iter().take(i).any(|a| a == applet);
        if repeated || registry.aid_in_use(applet) || *applet == session.load_file_aid {
            return refuse(Sw::CONDITIONS_NOT_SATISFIED);
        }
    }
    Ok(LoadFile {
        aid: session.load_file_aid,
        associated_sd: session.sd_aid,
        version: Some(info.version),
        modules: info.applets,
        lfdb_sha256: sha256,
        size: u32::try_from(lfdb.len()).unwrap_or(u32::MAX),
    })
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(subtle::ConstantTimeEq::ct_eq(a, b))
}
