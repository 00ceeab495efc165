//! GlobalPlatform registry entries as GET STATUS reports them (GPC 2.3.1 §11.4.3).
//!
//! TLV format (P2 b2 set, Tables 11-36/11-37): one `E3` template per entry. The deprecated
//! format (P2 b2 clear) of earlier specifications is also read and written: `len AID ‖ life cycle ‖
//! privileges (1 byte)`, plus `count ‖ (len AID)…` of modules when P1 is `10`.

use alloc::vec::Vec;

use super::{
    check_aid, read_lv1, write_lv1, CommandError, GET_STATUS_LOAD_FILES_AND_MODULES, GET_STATUS_TLV,
};
use crate::tlv::{self, TlvReader};

/// Tag of the registry entry template.
pub const TAG_REGISTRY_ENTRY: u32 = 0xE3;
/// Tag of the AID.
pub const TAG_AID: u32 = 0x4F;
/// Tag of the life cycle state.
pub const TAG_LIFE_CYCLE: u32 = 0x9F70;
/// Tag of the privileges.
pub const TAG_PRIVILEGES: u32 = 0xC5;
/// Tag of the application's executable load file AID.
pub const TAG_ELF_AID: u32 = 0xC4;
/// Tag of the executable load file version number.
pub const TAG_VERSION: u32 = 0xCE;
/// Tag of an executable module AID.
pub const TAG_MODULE_AID: u32 = 0x84;
/// Tag of the associated security domain's AID.
pub const TAG_ASSOCIATED_SD: u32 = 0xCC;

/// One registry entry: the ISD, an application or SD, or an executable load file.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RegistryEntry {
    /// AID of the entry.
    pub aid: Vec<u8>,
    /// Life cycle state (see [`crate::life_cycle`]).
    pub life_cycle: u8,
    /// Privileges (see [`crate::privileges`]); zero for load files.
    pub privileges: [u8; 3],
    /// For applications: the executable load file they were installed from.
    pub elf_aid: Option<Vec<u8>>,
    /// For load files: the version number (two bytes major, minor for Java Card).
    pub version: Option<Vec<u8>>,
    /// For load files: the executable module AIDs.
    pub modules: Vec<Vec<u8>>,
    /// The associated security domain.
    pub associated_sd: Option<Vec<u8>>,
}

impl RegistryEntry {
    fn encode_e3(&self, with_privileges: bool) -> Vec<u8> {
        let mut inner = Vec::with_capacity(64);
        tlv::write_tlv(&mut inner, TAG_AID, &self.aid);
        tlv::write_tlv(&mut inner, TAG_LIFE_CYCLE, &[self.life_cycle]);
        if with_privileges {
            tlv::write_tlv(&mut inner, TAG_PRIVILEGES, &self.privileges);
        }
        if let Some(elf) = &self.elf_aid {
            tlv::write_tlv(&mut inner, TAG_ELF_AID, elf);
        }
        if let Some(v) = &self.version {
            tlv::write_tlv(&mut inner, TAG_VERSION, v);
        }
        for m in &self.modules {
            tlv::write_tlv(&mut inner, TAG_MODULE_AID, m);
        }
        if let Some(sd) = &self.associated_sd {
            tlv::write_tlv(&mut inner, TAG_ASSOCIATED_SD, sd);
        }
        tlv::tlv(TAG_REGISTRY_ENTRY, &inner)
    }

    /// `E3` template for the ISD, an application or an SD (Table 11-36): privileges always present.
    pub fn to_e3_tlv(&self) -> Vec<u8> {
        self.encode_e3(true)
    }

    /// `E3` template for an executable load file (Table 11-37): no privileges.
    pub fn to_e3_tlv_load_file(&self) -> Vec<u8> {
        self.encode_e3(false)
    }

    /// Parses the value of one `E3` template. `4F` and `9F70` are required; unknown tags (e.g. the
    /// implicit selection parameters `CF`) are skipped; privileges of one byte are widened.
    pub fn parse_e3(value: &[u8]) -> Result<RegistryEntry, CommandError> {
        let mut e = RegistryEntry::default();
        let (mut have_aid, mut have_lc) = (false, false);
        for item in TlvReader::new(value) {
            let item = item?;
            match item.tag {
                TAG_AID => {
                    e.aid = item.value.to_vec();
                    have_aid = true;
                }
                TAG_LIFE_CYCLE => {
                    let [lc] = item.value else {
                        return Err(CommandError::BadFieldLength);
                    };
                    e.life_cycle = *lc;
                    have_lc = true;
                }
                TAG_PRIVILEGES => {
                    e.privileges = crate::privileges::from_slice(item.value)
                        .ok_or(CommandError::BadFieldLength)?
                }
                TAG_ELF_AID => e.elf_aid = Some(item.value.to_vec()),
                TAG_VERSION => e.version = Some(item.value.to_vec()),
                TAG_MODULE_AID => e.modules.push(item.value.to_vec()),
                TAG_ASSOCIATED_SD => e.associated_sd = Some(item.value.to_vec()),
                _ => {}
            }
        }
        if !have_aid || !have_lc {
            return Err(CommandError::UnexpectedElement);
        }
        Ok(e)
    }

    /// The deprecated (P2 b2 = 0) encoding: `len AID ‖ life cycle ‖ privileges byte 1`, plus the
    /// module list when `with_modules` (P1 `10`).
    pub fn to_legacy_bytes(&self, with_modules: bool) -> Result<Vec<u8>, CommandError> {
        let mut out = Vec::with_capacity(24);
        write_lv1(&mut out, &self.aid)?;
        out.push(self.life_cycle);
        out.push(self.privileges.first().copied().unwrap_or(0));
        if with_modules {
            out.push(u8::try_from(self.modules.len()).map_err(|_| CommandError::FieldTooLong)?);
            for m in &self.modules {
                write_lv1(&mut out, m)?;
            }
        }
        Ok(out)
    }
}

/// Parses a GET STATUS response data field for the given P2: TLV format when b2 (`02`) is set,
/// otherwise the deprecated format without module lists (P1 `80`, `40`, `20`).
///
/// For the deprecated format with modules (P1 `10`) use [`parse_get_status_response_for`].
pub fn parse_get_status_response(
    p2_format: u8,
    bytes: &[u8],
) -> Result<Vec<RegistryEntry>, CommandError> {
    parse_get_status_response_for(0x40, p2_format, bytes)
}

/// Parses a GET STATUS response data field knowing both P1 and P2 (the deprecated format depends
/// on P1: with P1 `10` each load file is followed by its modules).
pub fn parse_get_status_response_for(
    p1: u8,
    p2: u8,
    bytes: &[u8],
) -> Result<Vec<RegistryEntry>, CommandError> {
    let mut out = Vec::new();
    if p2 & GET_STATUS_TLV != 0 {
        for item in TlvReader::new(bytes) {
            let item = item?;
            if item.tag != TAG_REGISTRY_ENTRY {
                return Err(CommandError::UnexpectedElement);
            }
            out.push(RegistryEntry::parse_e3(item.value)?);
        }
        return Ok(out);
    }
    let with_modules = p1 & GET_STATUS_LOAD_FILES_AND_MODULES != 0 && p1 & 0xE0 == 0;
    let mut rest = bytes;
    while !rest.is_empty() {
        let (aid, r) = read_lv1(rest)?;
        check_aid(aid, false)?;
        let (&[life_cycle, privilege], r) =
            crate::util::take_array::<2>(r).ok_or(CommandError::Truncated)?;
        let mut entry = RegistryEntry {
            aid: aid.to_vec(),
            life_cycle,
            privileges: [privilege, 0, 0],
            ..Default::default()
        };
        rest = r;
        if with_modules {
            let (&count, mut r) = rest.split_first().ok_or(CommandError::Truncated)?;
            for _ in 0..count {
                let (m, r2) = read_lv1(r)?;
                entry.modules.push(m.to_vec());
                r = r2;
            }
            rest = r;
        }
        out.push(entry);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::{life_cycle, privileges};
    use alloc::vec;
    use proptest::prelude::*;

    use crate::util::h;

    #[test]
    fn isd_entry() {
        let mut isd = RegistryEntry {
            aid: h("A000000151000000"),
            life_cycle: life_cycle::CARD_OP_READY,
            ..Default::default()
        };
        privileges::SECURITY_DOMAIN.set_in(&mut isd.privileges);
        privileges::CARD_LOCK.set_in(&mut isd.privileges);
        let e3 = isd.to_e3_tlv();
        assert_eq!(e3, h("E313 4F08A000000151000000 9F700101 C503900000"));
        assert_eq!(parse_get_status_response(0x02, &e3).unwrap(), vec![isd]);
    }

    #[test]
    fn load_file_with_modules() {
        let elf = RegistryEntry {
            aid: h("D0D1D2D3D4D501"),
            life_cycle: life_cycle::LOAD_FILE_LOADED,
            version: Some(vec![1, 0]),
            modules: vec![h("D0D1D2D3D4D50101"), h("D0D1D2D3D4D50102")],
            associated_sd: Some(h("A000000151000000")),
            ..Default::default()
        };
        let app = RegistryEntry {
            aid: h("D0D1D2D3D4D50101"),
            life_cycle: life_cycle::APP_SELECTABLE,
            elf_aid: Some(h("D0D1D2D3D4D501")),
            associated_sd: Some(h("A000000151000000")),
            ..Default::default()
        };
        let mut bytes = elf.to_e3_tlv_load_file();
        assert!(!bytes.windows(2).any(|w| w == [0xC5, 0x03]));
        bytes.extend_from_slice(&app.to_e3_tlv());
        assert_eq!(
            parse_get_status_response(0x02, &bytes).unwrap(),
            vec![elf.clone(), app]
        );

        // Deprecated format with modules (P1 10).
        let legacy = elf.to_legacy_bytes(true).unwrap();
        let back = parse_get_status_response_for(0x10, 0x00, &legacy).unwrap();
        assert_eq!(back[0].modules, elf.modules);
        assert_eq!(back[0].aid, elf.aid);
    }

    #[test]
    fn legacy_without_modules() {
        let bytes = h("08A000000151000000 0F 9E  07A0000000030000 07 00");
        let entries = parse_get_status_response(0x00, &bytes).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(
            (entries[0].life_cycle, entries[0].privileges),
            (0x0F, [0x9E, 0, 0])
        );
        assert_eq!(
            parse_get_status_response(0x00, &bytes[..10]),
            Err(CommandError::Truncated)
        );
    }

    #[test]
    fn rejects() {
        assert_eq!(
            parse_get_status_response(0x02, &h("E1024F00")),
            Err(CommandError::UnexpectedElement)
        );
        assert_eq!(
            parse_get_status_response(0x02, &h("E3039F7001")),
            Err(CommandError::Tlv(crate::tlv::TlvError::Truncated))
        );
        assert_eq!(
            parse_get_status_response(0x02, &h("E3049F70010F")),
            Err(CommandError::UnexpectedElement)
        );
        assert_eq!(
            parse_get_status_response(0x02, &h("E3074F00 9F7002 0F0F")),
            Err(CommandError::BadFieldLength)
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics(p1 in any::<u8>(), p2 in any::<u8>(), bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_get_status_response_for(p1, p2, &bytes);
        }
    }
}
