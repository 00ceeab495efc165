//! Payload formats of GlobalPlatform commands, built by the host and parsed by the card.
//!
//! Each format has one encoder and one parser here, tested as a round trip and against published
//! bytes, so the card accepts exactly what the host tools send. Parsers are strict: lengths must
//! match, trailing bytes are errors, AIDs must be 5–16 bytes where GP says so.

use alloc::vec::Vec;
use core::fmt;

use crate::apdu::CommandApdu;
use crate::sw::Sw;
use crate::tlv::{self, TlvError};

pub mod install;
pub mod load;
pub mod put_key;
pub mod registry;

pub use crate::life_cycle;
pub use crate::privileges;
pub use install::{
    Install, InstallForExtradition, InstallForInstall, InstallForLoad, InstallForMakeSelectable,
    InstallForPersonalization, InstallForRegistryUpdate,
};
pub use load::{split_into_load_blocks, LfdbBlock, LoadFile};
pub use put_key::{KeyComponent, KeyData, PutKey};
pub use registry::{parse_get_status_response, parse_get_status_response_for, RegistryEntry};

/// CLA of GlobalPlatform commands on the basic channel without secure messaging.
pub const CLA_GP: u8 = 0x80;
/// CLA of ISO interindustry commands (SELECT, GET RESPONSE).
pub const CLA_ISO: u8 = 0x00;

/// INS SELECT.
pub const INS_SELECT: u8 = 0xA4;
/// INS INITIALIZE UPDATE.
pub const INS_INITIALIZE_UPDATE: u8 = 0x50;
/// INS EXTERNAL AUTHENTICATE.
pub const INS_EXTERNAL_AUTHENTICATE: u8 = 0x82;
/// INS BEGIN R-MAC SESSION.
pub const INS_BEGIN_RMAC_SESSION: u8 = 0x7A;
/// INS END R-MAC SESSION.
pub const INS_END_RMAC_SESSION: u8 = 0x78;
/// INS INSTALL.
pub const INS_INSTALL: u8 = 0xE6;
/// INS LOAD.
pub const INS_LOAD: u8 = 0xE8;
/// INS PUT KEY.
pub const INS_PUT_KEY: u8 = 0xD8;
/// INS DELETE.
pub const INS_DELETE: u8 = 0xE4;
/// INS GET STATUS.
pub const INS_GET_STATUS: u8 = 0xF2;
/// INS SET STATUS.
pub const INS_SET_STATUS: u8 = 0xF0;
/// INS GET DATA (even instruction).
pub const INS_GET_DATA: u8 = 0xCA;
/// INS STORE DATA.
pub const INS_STORE_DATA: u8 = 0xE2;
/// INS GET RESPONSE.
pub const INS_GET_RESPONSE: u8 = 0xC0;
/// INS MANAGE CHANNEL.
pub const INS_MANAGE_CHANNEL: u8 = 0x70;

/// Why a command payload cannot be encoded or parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandError {
    /// The data ends inside a field.
    Truncated,
    /// Bytes remain after the last field.
    TrailingBytes,
    /// An AID outside 5–16 bytes (or non-empty where it must be absent); the length is given.
    BadAidLength(usize),
    /// A field whose length GP restricts (hash, privileges, KCV, ICV) has a length it does not allow.
    BadFieldLength,
    /// A field too long for its length encoding (over 65 535 bytes, or over 127 for a hash).
    FieldTooLong,
    /// A required element is missing or an element appears where the format does not allow it.
    UnexpectedElement,
    /// A format this implementation does not handle (e.g. PUT KEY extended format).
    Unsupported,
    /// Malformed BER-TLV.
    Tlv(TlvError),
    /// A LOAD block size of zero, or more than 256 blocks.
    BadBlocking,
    /// The P1 / P2 of the command do not select a known variant.
    BadP1P2,
}

impl CommandError {
    /// The status word a card answers with: `6A86` for unknown P1/P2, `6A80` otherwise.
    pub fn sw(&self) -> Sw {
        match self {
            CommandError::BadP1P2 => Sw::INCORRECT_P1P2,
            _ => Sw::INCORRECT_DATA,
        }
    }
}

impl From<TlvError> for CommandError {
    fn from(e: TlvError) -> Self {
        CommandError::Tlv(e)
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Truncated => f.write_str("command data truncated"),
            CommandError::TrailingBytes => f.write_str("trailing bytes after command data"),
            CommandError::BadAidLength(n) => write!(f, "AID of {n} bytes (5 to 16 required)"),
            CommandError::BadFieldLength => f.write_str("field length not allowed"),
            CommandError::FieldTooLong => f.write_str("field too long"),
            CommandError::UnexpectedElement => f.write_str("missing or unexpected element"),
            CommandError::Unsupported => f.write_str("unsupported command format"),
            CommandError::Tlv(e) => write!(f, "{e}"),
            CommandError::BadBlocking => f.write_str("bad LOAD block size or too many blocks"),
            CommandError::BadP1P2 => f.write_str("unknown P1/P2"),
        }
    }
}

/// Checks an AID length: 5–16 bytes, or also empty when `optional`.
pub(crate) fn check_aid(aid: &[u8], optional: bool) -> Result<(), CommandError> {
    match aid.len() {
        0 if optional => Ok(()),
        5..=16 => Ok(()),
        n => Err(CommandError::BadAidLength(n)),
    }
}

/// Reads a one-byte-length LV field.
pub(crate) fn read_lv1(bytes: &[u8]) -> Result<(&[u8], &[u8]), CommandError> {
    let (&len, rest) = bytes.split_first().ok_or(CommandError::Truncated)?;
    rest.split_at_checked(usize::from(len))
        .ok_or(CommandError::Truncated)
}

/// Writes a one-byte-length LV field.
pub(crate) fn write_lv1(out: &mut Vec<u8>, value: &[u8]) -> Result<(), CommandError> {
    let len = u8::try_from(value.len()).map_err(|_| CommandError::FieldTooLong)?;
    out.push(len);
    out.extend_from_slice(value);
    Ok(())
}

/// Reads an LV field whose length is BER coded on 1–3 bytes, where GP also accepts `80` on one
/// byte as 128 for backward compatibility (GPC 11.5.2.3, 11.8.2.3.1).
pub(crate) fn read_lv_ber(bytes: &[u8]) -> Result<(&[u8], &[u8]), CommandError> {
    let (len, rest) = read_gp_len(bytes)?;
    rest.split_at_checked(len).ok_or(CommandError::Truncated)
}

/// Reads a GP length: `00`–`80` on one byte, `81 xx`, or `82 xx xx`.
pub(crate) fn read_gp_len(bytes: &[u8]) -> Result<(usize, &[u8]), CommandError> {
    match bytes {
        [0x80, rest @ ..] => Ok((128, rest)),
        [0x81, b, rest @ ..] => Ok((usize::from(*b), rest)),
        [0x82, a, b, rest @ ..] => Ok((usize::from(u16::from_be_bytes([*a, *b])), rest)),
        [b, rest @ ..] if *b < 0x80 => Ok((usize::from(*b), rest)),
        [] | [0x81] | [0x82] | [0x82, _] => Err(CommandError::Truncated),
        _ => Err(CommandError::Unsupported),
    }
}

/// Writes an LV field with a BER length of 1–3 bytes (at most 65 535 bytes of value).
pub(crate) fn write_lv_ber(out: &mut Vec<u8>, value: &[u8]) -> Result<(), CommandError> {
    if value.len() > 0xFFFF {
        return Err(CommandError::FieldTooLong);
    }
    tlv::write_len(out, value.len());
    out.extend_from_slice(value);
    Ok(())
}

/// SELECT by AID (`00 A4 04 00 Lc AID 00`), first or only occurrence.
pub fn select_by_aid(aid: &[u8]) -> CommandApdu {
    CommandApdu::new(CLA_ISO, INS_SELECT, 0x04, 0x00, aid.to_vec(), Some(256))
}

/// INITIALIZE UPDATE (`80 50 KVN 00 08 host-challenge 00`); KVN 0 lets the card choose the key set.
pub fn initialize_update(kvn: u8, host_challenge: &[u8; 8]) -> CommandApdu {
    CommandApdu::new(
        CLA_GP,
        INS_INITIALIZE_UPDATE,
        kvn,
        0x00,
        host_challenge.to_vec(),
        Some(256),
    )
}

/// The SCP identifier in an INITIALIZE UPDATE response (byte 12: `02` or `03`), which tells the
/// host which protocol's parser to use.
pub fn initialize_update_scp_id(response_data: &[u8]) -> Option<u8> {
    response_data.get(11).copied()
}

/// DELETE of a card content object by AID (`80 E4 00 P2 Lc 4F len AID 00`); `related` sets P2
/// b8 to delete the object and its related objects (a load file and its applications).
pub fn delete(aid: &[u8], related: bool) -> CommandApdu {
    let data = tlv::tlv(0x4F, aid);
    CommandApdu::new(
        CLA_GP,
        INS_DELETE,
        0x00,
        if related { 0x80 } else { 0x00 },
        data,
        Some(256),
    )
}

/// GET STATUS P1: Issuer Security Domain.
pub const GET_STATUS_ISD: u8 = 0x80;
/// GET STATUS P1: applications and supplementary security domains.
pub const GET_STATUS_APPS: u8 = 0x40;
/// GET STATUS P1: executable load files.
pub const GET_STATUS_LOAD_FILES: u8 = 0x20;
/// GET STATUS P1: executable load files and their modules.
pub const GET_STATUS_LOAD_FILES_AND_MODULES: u8 = 0x10;
/// GET STATUS P2 bit: TLV response format (Tables 11-36 / 11-37).
pub const GET_STATUS_TLV: u8 = 0x02;
/// GET STATUS P2 bit: next occurrence(s).
pub const GET_STATUS_NEXT: u8 = 0x01;

/// GET STATUS in TLV format with the search criterion `4F aid_filter` (empty filter matches all).
pub fn get_status(p1: u8, next: bool, aid_filter: &[u8]) -> CommandApdu {
    let p2 = GET_STATUS_TLV | if next { GET_STATUS_NEXT } else { 0 };
    CommandApdu::new(
        CLA_GP,
        INS_GET_STATUS,
        p1,
        p2,
        tlv::tlv(0x4F, aid_filter),
        Some(256),
    )
}

/// SET STATUS (`80 F0 P1 state [Lc AID]`): P1 `80` for the ISD (card life cycle, no AID),
/// `40` for an application or SD, `60` for an SD and its associated applications.
pub fn set_status(p1: u8, state: u8, aid: &[u8]) -> CommandApdu {
    CommandApdu::new(CLA_GP, INS_SET_STATUS, p1, state, aid.to_vec(), None)
}

/// GET DATA for a one- or two-byte tag (e.g. `0066` card data, `00E0` key information, `9F7F`
/// CPLC) with P1P2 = tag.
pub fn get_data(tag: u16) -> CommandApdu {
    let [p1, p2] = tag.to_be_bytes();
    CommandApdu::new(CLA_GP, INS_GET_DATA, p1, p2, Vec::new(), Some(256))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use alloc::vec;

    use crate::util::h;

    #[test]
    fn simple_builders() {
        assert_eq!(
            select_by_aid(&h("A000000151000000")).to_bytes(),
            h("00A4040008A00000015100000000")
        );
        assert_eq!(
            initialize_update(0x30, &[1, 2, 3, 4, 5, 6, 7, 8]).to_bytes(),
            h("805030000801020304050607 0800")
        );
        // GP-FACTS: the DELETE of the real-card SCP03 i=70 trace (sent there without Le).
        let mut d = delete(&h("A00100015141434C"), true);
        assert_eq!(d.le, Some(256));
        d.le = None;
        assert_eq!(d.to_bytes(), h("80E400800A4F08A00100015141434C"));
        assert_eq!(delete(&h("A00100015141434C"), false).p2, 0x00);
        assert_eq!(
            get_status(GET_STATUS_LOAD_FILES, false, &[]).to_bytes(),
            h("80F22002024F0000")
        );
        assert_eq!(get_data(0x9F7F).to_bytes(), h("80CA9F7F00"));
        assert_eq!(set_status(0x80, 0x0F, &[]).to_bytes(), h("80F0800F"));
        assert_eq!(
            initialize_update_scp_id(&h("000074746E6E6E6262620102069F")),
            Some(0x02)
        );
    }

    #[test]
    fn gp_lengths() {
        assert_eq!(read_gp_len(&[0x80]).unwrap().0, 128);
        assert_eq!(read_gp_len(&[0x81, 0x80]).unwrap().0, 128);
        assert_eq!(read_gp_len(&[0x82, 0x01, 0x00]).unwrap().0, 256);
        assert_eq!(
            read_gp_len(&[0x83, 0, 0, 0]),
            Err(CommandError::Unsupported)
        );
        assert_eq!(read_gp_len(&[0x82, 1]), Err(CommandError::Truncated));
        let mut out = vec![];
        write_lv_ber(&mut out, &[0; 200]).unwrap();
        assert_eq!(&out[..2], &[0x81, 200]);
        assert_eq!(read_lv_ber(&out).unwrap().0.len(), 200);
        assert_eq!(
            write_lv_ber(&mut out, &vec![0; 65536]),
            Err(CommandError::FieldTooLong)
        );
    }
}
