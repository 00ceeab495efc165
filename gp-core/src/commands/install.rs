//! INSTALL command payloads (GPC 2.3.1 §11.5, Tables 11-42 to 11-47).
//!
//! All variants are LV sequences. AIDs and the hash use one-byte lengths; parameters and tokens
//! use 1–3 byte BER lengths (with `80` on one byte accepted as 128).

use alloc::vec::Vec;

use super::{
    check_aid, read_lv1, read_lv_ber, write_lv1, write_lv_ber, CommandError, CLA_GP, INS_INSTALL,
};
use crate::apdu::CommandApdu;
use crate::tlv;

/// P1 bit: more INSTALL commands follow (chained data).
pub const P1_MORE: u8 = 0x80;
/// P1: INSTALL [for registry update].
pub const P1_FOR_REGISTRY_UPDATE: u8 = 0x40;
/// P1: INSTALL [for personalization].
pub const P1_FOR_PERSONALIZATION: u8 = 0x20;
/// P1: INSTALL [for extradition].
pub const P1_FOR_EXTRADITION: u8 = 0x10;
/// P1 bit: INSTALL [for make selectable].
pub const P1_FOR_MAKE_SELECTABLE: u8 = 0x08;
/// P1 bit: INSTALL [for install].
pub const P1_FOR_INSTALL: u8 = 0x04;
/// P1 bit: INSTALL [for load].
pub const P1_FOR_LOAD: u8 = 0x02;

fn install_apdu(p1: u8, data: Vec<u8>) -> CommandApdu {
    CommandApdu::new(CLA_GP, INS_INSTALL, p1, 0x00, data, Some(256))
}

fn ensure_end(rest: &[u8]) -> Result<(), CommandError> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(CommandError::TrailingBytes)
    }
}

/// Skips `N` zero bytes (an empty field written as its `00` length, or a reserved field).
fn skip_zeros<const N: usize>(data: &[u8]) -> Result<&[u8], CommandError> {
    match data.split_first_chunk::<N>() {
        Some((head, rest)) if *head == [0; N] => Ok(rest),
        Some(_) => Err(CommandError::UnexpectedElement),
        None => Err(CommandError::Truncated),
    }
}

fn check_privileges(p: &[u8], allow_empty: bool) -> Result<(), CommandError> {
    match p.len() {
        0 if allow_empty => Ok(()),
        1 | 3 => Ok(()),
        _ => Err(CommandError::BadFieldLength),
    }
}

/// INSTALL [for load] (Table 11-42): announces a load file before the LOAD commands.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct InstallForLoad {
    /// AID of the load file (5–16 bytes).
    pub load_file_aid: Vec<u8>,
    /// AID of the security domain to associate (empty: the one receiving the command).
    pub sd_aid: Vec<u8>,
    /// Load File Data Block hash (empty, or up to 127 bytes: SHA-1/-256/-384/-512).
    pub lfdb_hash: Vec<u8>,
    /// Load parameters (TLV, e.g. `EF` system parameters), possibly empty.
    pub load_parameters: Vec<u8>,
    /// Load token for delegated management, possibly empty.
    pub load_token: Vec<u8>,
}

impl InstallForLoad {
    /// Encodes the command data field.
    pub fn to_data(&self) -> Result<Vec<u8>, CommandError> {
        check_aid(&self.load_file_aid, false)?;
        check_aid(&self.sd_aid, true)?;
        if self.lfdb_hash.len() > 0x7F {
            return Err(CommandError::FieldTooLong);
        }
        let mut out = Vec::with_capacity(
            64 + self.lfdb_hash.len() + self.load_parameters.len() + self.load_token.len(),
        );
        write_lv1(&mut out, &self.load_file_aid)?;
        write_lv1(&mut out, &self.sd_aid)?;
        write_lv1(&mut out, &self.lfdb_hash)?;
        write_lv_ber(&mut out, &self.load_parameters)?;
        write_lv_ber(&mut out, &self.load_token)?;
        Ok(out)
    }

    /// Parses the command data field.
    pub fn parse(data: &[u8]) -> Result<Self, CommandError> {
        let (load_file_aid, rest) = read_lv1(data)?;
        let (sd_aid, rest) = read_lv1(rest)?;
        let (lfdb_hash, rest) = read_lv1(rest)?;
        let (load_parameters, rest) = read_lv_ber(rest)?;
        let (load_token, rest) = read_lv_ber(rest)?;
        ensure_end(rest)?;
        check_aid(load_file_aid, false)?;
        check_aid(sd_aid, true)?;
        if lfdb_hash.len() > 0x7F {
            return Err(CommandError::FieldTooLong);
        }
        Ok(InstallForLoad {
            load_file_aid: load_file_aid.to_vec(),
            sd_aid: sd_aid.to_vec(),
            lfdb_hash: lfdb_hash.to_vec(),
            load_parameters: load_parameters.to_vec(),
            load_token: load_token.to_vec(),
        })
    }

    /// The complete command `80 E6 02 00 Lc data 00`.
    pub fn to_apdu(&self) -> Result<CommandApdu, CommandError> {
        Ok(install_apdu(P1_FOR_LOAD, self.to_data()?))
    }

    /// The data the load token signs (GPC C.4.1): P1, P2, the length of the rest, and the data
    /// field up to (not including) the load token length.
    pub fn token_signed_data(&self) -> Result<Vec<u8>, CommandError> {
        let mut no_token = self.clone();
        no_token.load_token.clear();
        token_signed_data(P1_FOR_LOAD, &no_token.to_data()?)
    }
}

/// Token input per GPC C.4: `P1 P2 Lc' data-without-token-length` where `Lc'` is the length of the
/// remaining data; `data` is a data field whose token is empty (ends in one `00`).
fn token_signed_data(p1: u8, data: &[u8]) -> Result<Vec<u8>, CommandError> {
    let body = data.split_last().map(|(_, b)| b).unwrap_or(&[]);
    let len = u8::try_from(body.len()).map_err(|_| CommandError::FieldTooLong)?;
    let mut out = Vec::with_capacity(body.len() + 3);
    out.extend_from_slice(&[p1, 0x00, len]);
    out.extend_from_slice(body);
    Ok(out)
}

/// INSTALL [for install] (Table 11-43), optionally combined with [for make selectable].
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct InstallForInstall {
    /// AID of the executable load file (empty only in the combined load+install command).
    pub load_file_aid: Vec<u8>,
    /// AID of the executable module (the applet class) in the load file.
    pub module_aid: Vec<u8>,
    /// AID the new instance will be selected by.
    pub application_aid: Vec<u8>,
    /// Privileges, 1 or 3 bytes (see [`crate::privileges`]).
    pub privileges: Vec<u8>,
    /// Install parameters, at least `C9 00` (see [`install_parameters`]).
    pub install_parameters: Vec<u8>,
    /// Install token for delegated management, possibly empty.
    pub token: Vec<u8>,
    /// Also make the instance selectable (P1 `0C` instead of `04`).
    pub make_selectable: bool,
}

impl InstallForInstall {
    /// P1 of this command: `04`, or `0C` with make selectable.
    pub fn p1(&self) -> u8 {
        P1_FOR_INSTALL
            | if self.make_selectable {
                P1_FOR_MAKE_SELECTABLE
            } else {
                0
            }
    }

    /// Encodes the command data field.
    pub fn to_data(&self) -> Result<Vec<u8>, CommandError> {
        check_aid(&self.load_file_aid, true)?;
        check_aid(&self.module_aid, true)?;
        check_aid(&self.application_aid, false)?;
        check_privileges(&self.privileges, false)?;
        let mut out = Vec::with_capacity(64 + self.install_parameters.len() + self.token.len());
        write_lv1(&mut out, &self.load_file_aid)?;
        write_lv1(&mut out, &self.module_aid)?;
        write_lv1(&mut out, &self.application_aid)?;
        write_lv1(&mut out, &self.privileges)?;
        write_lv_ber(&mut out, &self.install_parameters)?;
        write_lv_ber(&mut out, &self.token)?;
        Ok(out)
    }

    /// Parses the command data field; `make_selectable` comes from P1.
    pub fn parse(data: &[u8], make_selectable: bool) -> Result<Self, CommandError> {
        let (load_file_aid, rest) = read_lv1(data)?;
        let (module_aid, rest) = read_lv1(rest)?;
        let (application_aid, rest) = read_lv1(rest)?;
        let (privileges, rest) = read_lv1(rest)?;
        let (install_parameters, rest) = read_lv_ber(rest)?;
        let (token, rest) = read_lv_ber(rest)?;
        ensure_end(rest)?;
        check_aid(load_file_aid, true)?;
        check_aid(module_aid, true)?;
        check_aid(application_aid, false)?;
        check_privileges(privileges, false)?;
        Ok(InstallForInstall {
            load_file_aid: load_file_aid.to_vec(),
            module_aid: module_aid.to_vec(),
            application_aid: application_aid.to_vec(),
            privileges: privileges.to_vec(),
            install_parameters: install_parameters.to_vec(),
            token: token.to_vec(),
            make_selectable,
        })
    }

    /// The complete command `80 E6 04|0C 00 Lc data 00`.
    pub fn to_apdu(&self) -> Result<CommandApdu, CommandError> {
        Ok(install_apdu(self.p1(), self.to_data()?))
    }
}

/// Install parameters carrying application-specific parameters in tag `C9` (mandatory, may be
/// empty), as INSTALL [for install] requires.
pub fn install_parameters(application_specific: &[u8]) -> Vec<u8> {
    tlv::tlv(0xC9, application_specific)
}

/// INSTALL [for make selectable] (Table 11-44).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct InstallForMakeSelectable {
    /// AID of the installed application.
    pub application_aid: Vec<u8>,
    /// Privileges, 1 or 3 bytes (only Card Reset is evaluated by the card).
    pub privileges: Vec<u8>,
    /// Make selectable parameters, possibly empty.
    pub parameters: Vec<u8>,
    /// Make selectable token, possibly empty.
    pub token: Vec<u8>,
}

impl InstallForMakeSelectable {
    /// Encodes the command data field.
    pub fn to_data(&self) -> Result<Vec<u8>, CommandError> {
        check_aid(&self.application_aid, false)?;
        check_privileges(&self.privileges, false)?;
        let mut out = Vec::with_capacity(32 + self.parameters.len() + self.token.len());
        out.extend_from_slice(&[0x00, 0x00]);
        write_lv1(&mut out, &self.application_aid)?;
        write_lv1(&mut out, &self.privileges)?;
        write_lv_ber(&mut out, &self.parameters)?;
        write_lv_ber(&mut out, &self.token)?;
        Ok(out)
    }

    /// Parses the command data field.
    pub fn parse(data: &[u8]) -> Result<Self, CommandError> {
        let rest = skip_zeros::<2>(data)?;
        let (application_aid, rest) = read_lv1(rest)?;
        let (privileges, rest) = read_lv1(rest)?;
        let (parameters, rest) = read_lv_ber(rest)?;
        let (token, rest) = read_lv_ber(rest)?;
        ensure_end(rest)?;
        check_aid(application_aid, false)?;
        check_privileges(privileges, false)?;
        Ok(InstallForMakeSelectable {
            application_aid: application_aid.to_vec(),
            privileges: privileges.to_vec(),
            parameters: parameters.to_vec(),
            token: token.to_vec(),
        })
    }

    /// The complete command `80 E6 08 00 Lc data 00`.
    pub fn to_apdu(&self) -> Result<CommandApdu, CommandError> {
        Ok(install_apdu(P1_FOR_MAKE_SELECTABLE, self.to_data()?))
    }
}

/// INSTALL [for personalization] (Table 11-47): routes following STORE DATA to an application.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct InstallForPersonalization {
    /// AID of the application to personalise.
    pub application_aid: Vec<u8>,
}

impl InstallForPersonalization {
    /// Encodes the command data field `00 00 len AID 00 00 00`.
    pub fn to_data(&self) -> Result<Vec<u8>, CommandError> {
        check_aid(&self.application_aid, false)?;
        let mut out = Vec::with_capacity(self.application_aid.len() + 6);
        out.extend_from_slice(&[0x00, 0x00]);
        write_lv1(&mut out, &self.application_aid)?;
        out.extend_from_slice(&[0x00, 0x00, 0x00]);
        Ok(out)
    }

    /// Parses the command data field.
    pub fn parse(data: &[u8]) -> Result<Self, CommandError> {
        let rest = skip_zeros::<2>(data)?;
        let (application_aid, rest) = read_lv1(rest)?;
        match rest {
            [0x00, 0x00, 0x00] => {}
            [_, _, _] => return Err(CommandError::UnexpectedElement),
            [] | [_] | [_, _] => return Err(CommandError::Truncated),
            _ => return Err(CommandError::TrailingBytes),
        }
        check_aid(application_aid, false)?;
        Ok(InstallForPersonalization {
            application_aid: application_aid.to_vec(),
        })
    }

    /// The complete command `80 E6 20 00 Lc data 00`.
    pub fn to_apdu(&self) -> Result<CommandApdu, CommandError> {
        Ok(install_apdu(P1_FOR_PERSONALIZATION, self.to_data()?))
    }
}

/// INSTALL [for registry update] (Table 11-46): extradition to another SD and/or new privileges
/// or parameters.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct InstallForRegistryUpdate {
    /// SD to extradite the application to (empty: no extradition).
    pub sd_aid: Vec<u8>,
    /// Application to update (empty only when updating the OPEN itself).
    pub application_aid: Vec<u8>,
    /// New privileges: empty (unchanged), 1 or 3 bytes.
    pub privileges: Vec<u8>,
    /// Registry update parameters, possibly empty.
    pub parameters: Vec<u8>,
    /// Registry update token, possibly empty.
    pub token: Vec<u8>,
}

impl InstallForRegistryUpdate {
    /// Encodes the command data field.
    pub fn to_data(&self) -> Result<Vec<u8>, CommandError> {
        check_aid(&self.sd_aid, true)?;
        check_aid(&self.application_aid, true)?;
        check_privileges(&self.privileges, true)?;
        let mut out = Vec::with_capacity(48 + self.parameters.len() + self.token.len());
        write_lv1(&mut out, &self.sd_aid)?;
        out.push(0x00);
        write_lv1(&mut out, &self.application_aid)?;
        write_lv1(&mut out, &self.privileges)?;
        write_lv_ber(&mut out, &self.parameters)?;
        write_lv_ber(&mut out, &self.token)?;
        Ok(out)
    }

    /// Parses the command data field.
    pub fn parse(data: &[u8]) -> Result<Self, CommandError> {
        let (sd_aid, rest) = read_lv1(data)?;
        let rest = skip_zeros::<1>(rest)?;
        let (application_aid, rest) = read_lv1(rest)?;
        let (privileges, rest) = read_lv1(rest)?;
        let (parameters, rest) = read_lv_ber(rest)?;
        let (token, rest) = read_lv_ber(rest)?;
        ensure_end(rest)?;
        check_aid(sd_aid, true)?;
        check_aid(application_aid, true)?;
        check_privileges(privileges, true)?;
        Ok(InstallForRegistryUpdate {
            sd_aid: sd_aid.to_vec(),
            application_aid: application_aid.to_vec(),
            privileges: privileges.to_vec(),
            parameters: parameters.to_vec(),
            token: token.to_vec(),
        })
    }

    /// The complete command `80 E6 40 00 Lc data 00`.
    pub fn to_apdu(&self) -> Result<CommandApdu, CommandError> {
        Ok(install_apdu(P1_FOR_REGISTRY_UPDATE, self.to_data()?))
    }
}

/// INSTALL [for extradition] (Table 11-45): associates an application or load file with another SD.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct InstallForExtradition {
    /// SD to extradite to.
    pub sd_aid: Vec<u8>,
    /// Application or executable load file to extradite.
    pub aid: Vec<u8>,
    /// Extradition parameters, possibly empty.
    pub parameters: Vec<u8>,
    /// Extradition token, possibly empty.
    pub token: Vec<u8>,
}

impl InstallForExtradition {
    /// Encodes the command data field.
    pub fn to_data(&self) -> Result<Vec<u8>, CommandError> {
        check_aid(&self.sd_aid, false)?;
        check_aid(&self.aid, false)?;
        let mut out = Vec::with_capacity(40 + self.parameters.len() + self.token.len());
        write_lv1(&mut out, &self.sd_aid)?;
        out.push(0x00);
        write_lv1(&mut out, &self.aid)?;
        out.push(0x00);
        write_lv_ber(&mut out, &self.parameters)?;
        write_lv_ber(&mut out, &self.token)?;
        Ok(out)
    }

    /// Parses the command data field.
    pub fn parse(data: &[u8]) -> Result<Self, CommandError> {
        let (sd_aid, rest) = read_lv1(data)?;
        let rest = skip_zeros::<1>(rest)?;
        let (aid, rest) = read_lv1(rest)?;
        let rest = skip_zeros::<1>(rest)?;
        let (parameters, rest) = read_lv_ber(rest)?;
        let (token, rest) = read_lv_ber(rest)?;
        ensure_end(rest)?;
        check_aid(sd_aid, false)?;
        check_aid(aid, false)?;
        Ok(InstallForExtradition {
            sd_aid: sd_aid.to_vec(),
            aid: aid.to_vec(),
            parameters: parameters.to_vec(),
            token: token.to_vec(),
        })
    }

    /// The complete command `80 E6 10 00 Lc data 00`.
    pub fn to_apdu(&self) -> Result<CommandApdu, CommandError> {
        Ok(install_apdu(P1_FOR_EXTRADITION, self.to_data()?))
    }
}

/// Any INSTALL command, as the card sees it after dispatching on P1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Install {
    /// P1 `02`.
    ForLoad(InstallForLoad),
    /// P1 `04` or `0C`.
    ForInstall(InstallForInstall),
    /// P1 `08`.
    ForMakeSelectable(InstallForMakeSelectable),
    /// P1 `10`.
    ForExtradition(InstallForExtradition),
    /// P1 `20`.
    ForPersonalization(InstallForPersonalization),
    /// P1 `40`.
    ForRegistryUpdate(InstallForRegistryUpdate),
}

impl Install {
    /// Parses an INSTALL command (plain, i.e. after secure messaging was removed) by its P1.
    ///
    /// Chained INSTALL (P1 b8) and the combined load+install+make selectable process (P1 `0E`)
    /// are not handled and give [`CommandError::BadP1P2`], as do unknown P1 values and a P2
    /// other than `00`, `01`, `03`.
    pub fn parse_apdu(cmd: &CommandApdu) -> Result<Install, CommandError> {
        if !matches!(cmd.p2, 0x00 | 0x01 | 0x03) {
            return Err(CommandError::BadP1P2);
        }
        let data = &cmd.data;
        Ok(match cmd.p1 {
            P1_FOR_LOAD => Install::ForLoad(InstallForLoad::parse(data)?),
            0x04 => Install::ForInstall(InstallForInstall::parse(data, false)?),
            0x0C => Install::ForInstall(InstallForInstall::parse(data, true)?),
            P1_FOR_MAKE_SELECTABLE => {
                Install::ForMakeSelectable(InstallForMakeSelectable::parse(data)?)
            }
            P1_FOR_EXTRADITION => Install::ForExtradition(InstallForExtradition::parse(data)?),
            P1_FOR_PERSONALIZATION => {
                Install::ForPersonalization(InstallForPersonalization::parse(data)?)
            }
            P1_FOR_REGISTRY_UPDATE => {
                Install::ForRegistryUpdate(InstallForRegistryUpdate::parse(data)?)
            }
            _ => return Err(CommandError::BadP1P2),
        })
    }

    /// The complete command for this variant.
    pub fn to_apdu(&self) -> Result<CommandApdu, CommandError> {
        match self {
            Install::ForLoad(c) => c.to_apdu(),
            Install::ForInstall(c) => c.to_apdu(),
            Install::ForMakeSelectable(c) => c.to_apdu(),
            Install::ForExtradition(c) => c.to_apdu(),
            Install::ForPersonalization(c) => c.to_apdu(),
            Install::ForRegistryUpdate(c) => c.to_apdu(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use alloc::vec;
    use proptest::prelude::*;

    use crate::util::h;

    #[test]
    fn install_for_load_vector() {
        // GP-FACTS "Load files and DAP": INSTALL [for load] to ISD with the SHA-256 hash of the
        // empty CAP's LFDB.
        let expected = h("80E602003205010203040508A000000151000000208D5AC9E226E3F0A89457FB078470A9378DAED8B96BA6CBE839513CDF08D27A38000000");
        let cmd = InstallForLoad {
            load_file_aid: h("0102030405"),
            sd_aid: h("A000000151000000"),
            lfdb_hash: h("8D5AC9E226E3F0A89457FB078470A9378DAED8B96BA6CBE839513CDF08D27A38"),
            load_parameters: vec![],
            load_token: vec![],
        };
        let apdu = cmd.to_apdu().unwrap();
        assert_eq!(apdu.to_bytes(), expected);
        let parsed = crate::apdu::CommandApdu::parse(&expected).unwrap();
        assert_eq!(
            Install::parse_apdu(&parsed).unwrap(),
            Install::ForLoad(cmd.clone())
        );
        // Token input: P1 P2 Lc' then the data without the token length byte.
        let t = cmd.token_signed_data().unwrap();
        assert_eq!(&t[..3], &[0x02, 0x00, 0x31]);
        assert_eq!(&t[3..], &apdu.data[..apdu.data.len() - 1]);
    }

    #[test]
    fn round_trips() {
        let variants = [
            Install::ForInstall(InstallForInstall {
                load_file_aid: h("D0D1D2D3D4D501"),
                module_aid: h("D0D1D2D3D4D50101"),
                application_aid: h("D0D1D2D3D4D50101"),
                privileges: vec![0x00],
                install_parameters: install_parameters(&[]),
                token: vec![],
                make_selectable: true,
            }),
            Install::ForInstall(InstallForInstall {
                load_file_aid: h("D0D1D2D3D4D501"),
                module_aid: h("D0D1D2D3D4D50101"),
                application_aid: h("A00000015153504341534400"),
                privileges: vec![0x80, 0x00, 0x40],
                install_parameters: install_parameters(&[0xAB; 200]),
                token: vec![0x11; 128],
                make_selectable: false,
            }),
            Install::ForMakeSelectable(InstallForMakeSelectable {
                application_aid: h("D0D1D2D3D4D50101"),
                privileges: vec![0x04, 0, 0],
                parameters: vec![],
                token: vec![],
            }),
            Install::ForPersonalization(InstallForPersonalization {
                application_aid: h("D0D1D2D3D4D50101"),
            }),
            Install::ForRegistryUpdate(InstallForRegistryUpdate {
                sd_aid: h("A0000001515350"),
                application_aid: h("D0D1D2D3D4D50101"),
                privileges: vec![],
                parameters: vec![],
                token: vec![],
            }),
            Install::ForExtradition(InstallForExtradition {
                sd_aid: h("A0000001515350"),
                aid: h("D0D1D2D3D4D501"),
                parameters: vec![],
                token: vec![],
            }),
        ];
        for v in variants {
            let apdu = v.to_apdu().unwrap();
            let bytes = apdu.to_bytes();
            let back =
                Install::parse_apdu(&crate::apdu::CommandApdu::parse(&bytes).unwrap()).unwrap();
            assert_eq!(back, v);
        }
        assert_eq!(
            InstallForPersonalization {
                application_aid: h("D0D1D2D3D4D50101")
            }
            .to_data()
            .unwrap(),
            h("000008D0D1D2D3D4D50101000000")
        );
    }

    #[test]
    fn rejects_bad_fields() {
        let mut c = InstallForLoad {
            load_file_aid: h("01020304"),
            ..Default::default()
        };
        assert_eq!(c.to_data(), Err(CommandError::BadAidLength(4)));
        c.load_file_aid = h("0102030405");
        c.lfdb_hash = vec![0; 128];
        assert_eq!(c.to_data(), Err(CommandError::FieldTooLong));
        let i = InstallForInstall {
            application_aid: h("0102030405"),
            privileges: vec![0, 0],
            ..Default::default()
        };
        assert_eq!(i.to_data(), Err(CommandError::BadFieldLength));
        assert_eq!(
            InstallForLoad::parse(&h("050102030405000000000000")),
            Err(CommandError::TrailingBytes)
        );
        assert_eq!(
            InstallForLoad::parse(&h("0501020304")),
            Err(CommandError::Truncated)
        );
        let bad_p1 = crate::apdu::CommandApdu::new(0x80, 0xE6, 0x0E, 0x00, vec![], None);
        assert_eq!(Install::parse_apdu(&bad_p1), Err(CommandError::BadP1P2));
        // Length 80 on one byte means 128 (backward compatibility).
        let mut data = h("0501020304050000");
        data.push(0x80);
        data.extend_from_slice(&[0xEF; 128]);
        data.push(0x00);
        assert_eq!(
            InstallForLoad::parse(&data).unwrap().load_parameters.len(),
            128
        );
    }

    proptest! {
        #[test]
        fn parsers_never_panic(p1 in any::<u8>(), data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let cmd = crate::apdu::CommandApdu::new(0x80, 0xE6, p1, 0, data, None);
            if let Ok(v) = Install::parse_apdu(&cmd) {
                // Whatever parses re-encodes to something that parses back to the same value.
                let again = Install::parse_apdu(&v.to_apdu().unwrap()).unwrap();
                prop_assert_eq!(again, v);
            }
        }
    }
}
