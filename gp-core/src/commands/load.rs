//! The load file sent by LOAD commands (GPC 2.3.1 §11.6, Table 11-58).
//!
//! `[E2 { 4F SD-AID, C3 signature }]… ‖ C4 LFDB` or, for a ciphered LFDB, `… ‖ [D3 ICV] ‖ D4 data`.
//! The whole structure is split into LOAD blocks of any size; the card reassembles the blocks and
//! parses the result with [`LoadFile::parse`].

use alloc::vec::Vec;

use super::{check_aid, CommandError, CLA_GP, INS_LOAD};
use crate::apdu::CommandApdu;
use crate::tlv::{self, TlvReader};

/// Tag of a DAP block.
pub const TAG_DAP_BLOCK: u32 = 0xE2;
/// Tag of the security domain AID inside a DAP block.
pub const TAG_SD_AID: u32 = 0x4F;
/// Tag of the LFDB signature inside a DAP block.
pub const TAG_SIGNATURE: u32 = 0xC3;
/// Tag of the plain Load File Data Block.
pub const TAG_LFDB: u32 = 0xC4;
/// Tag of the ICV of a ciphered LFDB.
pub const TAG_ICV: u32 = 0xD3;
/// Tag of the ciphered Load File Data Block.
pub const TAG_CIPHERED_LFDB: u32 = 0xD4;

/// The Load File Data Block, plain (`C4`) or ciphered (`D3`/`D4`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LfdbBlock {
    /// `C4`: the LFDB in clear; its hash is what DAPs sign.
    Plain(Vec<u8>),
    /// `D4` with an optional `D3` ICV (8 bytes for DES, 16 for AES; absent means zero).
    Ciphered {
        /// The ICV from tag `D3`, if sent.
        icv: Option<Vec<u8>>,
        /// The ciphered LFDB (value of `D4`).
        data: Vec<u8>,
    },
}

/// A complete load file: DAP blocks followed by the LFDB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadFile {
    /// `(security domain AID, signature)` for every DAP block, in order.
    pub dap_blocks: Vec<(Vec<u8>, Vec<u8>)>,
    /// The Load File Data Block.
    pub lfdb: LfdbBlock,
}

impl LoadFile {
    /// Encodes the load file (the concatenation of all LOAD data fields).
    pub fn to_bytes(&self) -> Result<Vec<u8>, CommandError> {
        let mut out = Vec::new();
        for (sd_aid, signature) in &self.dap_blocks {
            check_aid(sd_aid, false)?;
            let mut inner = Vec::with_capacity(sd_aid.len() + signature.len() + 8);
            tlv::write_tlv(&mut inner, TAG_SD_AID, sd_aid);
            tlv::write_tlv(&mut inner, TAG_SIGNATURE, signature);
            tlv::write_tlv(&mut out, TAG_DAP_BLOCK, &inner);
        }
        match &self.lfdb {
            LfdbBlock::Plain(data) => tlv::write_tlv(&mut out, TAG_LFDB, data),
            LfdbBlock::Ciphered { icv, data } => {
                if let Some(icv) = icv {
                    if !matches!(icv.len(), 8 | 16) {
                        return Err(CommandError::BadFieldLength);
                    }
                    tlv::write_tlv(&mut out, TAG_ICV, icv);
                }
                tlv::write_tlv(&mut out, TAG_CIPHERED_LFDB, data);
            }
        }
        Ok(out)
    }

    /// Parses a reassembled load file: DAP blocks first, then exactly one `C4` or `[D3] D4`,
    /// nothing after it.
    pub fn parse(bytes: &[u8]) -> Result<LoadFile, CommandError> {
        let mut dap_blocks = Vec::new();
        let mut icv: Option<Vec<u8>> = None;
        let mut lfdb: Option<LfdbBlock> = None;
        for item in TlvReader::new(bytes) {
            let item = item?;
            if lfdb.is_some() {
                return Err(CommandError::TrailingBytes);
            }
            match item.tag {
                TAG_DAP_BLOCK if icv.is_none() => dap_blocks.push(parse_dap_block(item.value)?),
                TAG_LFDB if icv.is_none() => lfdb = Some(LfdbBlock::Plain(item.value.to_vec())),
                TAG_ICV if icv.is_none() => {
                    if !matches!(item.value.len(), 8 | 16) {
                        return Err(CommandError::BadFieldLength);
                    }
                    icv = Some(item.value.to_vec());
                }
                TAG_CIPHERED_LFDB => {
                    lfdb = Some(LfdbBlock::Ciphered {
                        icv: icv.take(),
                        data: item.value.to_vec(),
                    })
                }
                _ => return Err(CommandError::UnexpectedElement),
            }
        }
        let lfdb = lfdb.ok_or(CommandError::UnexpectedElement)?;
        Ok(LoadFile { dap_blocks, lfdb })
    }

    /// The plain LFDB, if not ciphered: the bytes whose hash the DAPs and INSTALL [for load] carry.
    pub fn plain_lfdb(&self) -> Option<&[u8]> {
        match &self.lfdb {
            LfdbBlock::Plain(d) => Some(d),
            LfdbBlock::Ciphered { .. } => None,
        }
    }
}

fn parse_dap_block(value: &[u8]) -> Result<(Vec<u8>, Vec<u8>), CommandError> {
    let mut r = TlvReader::new(value);
    let aid = r.next().ok_or(CommandError::UnexpectedElement)??;
    let sig = r.next().ok_or(CommandError::UnexpectedElement)??;
    if r.next().is_some() {
        return Err(CommandError::UnexpectedElement);
    }
    if aid.tag != TAG_SD_AID || sig.tag != TAG_SIGNATURE {
        return Err(CommandError::UnexpectedElement);
    }
    check_aid(aid.value, false)?;
    if sig.value.is_empty() {
        return Err(CommandError::BadFieldLength);
    }
    Ok((aid.value.to_vec(), sig.value.to_vec()))
}

/// Splits load file bytes into LOAD commands of at most `block_len` data bytes each:
/// `80 E8 P1 P2 Lc data 00` with P1 `80` on the last block (`00` before) and P2 the block number.
///
/// `block_len` must leave room for any secure messaging the caller will add (MAC, padding).
/// Fails for `block_len` 0, for empty input and when more than 256 blocks would be needed.
pub fn split_into_load_blocks(
    bytes: &[u8],
    block_len: usize,
) -> Result<Vec<CommandApdu>, CommandError> {
    if block_len == 0 || bytes.is_empty() {
        return Err(CommandError::BadBlocking);
    }
    let count = bytes.len().div_ceil(block_len);
    if count > 256 {
        return Err(CommandError::BadBlocking);
    }
    Ok(bytes
        .chunks(block_len)
        .enumerate()
        .map(|(i, chunk)| {
            let p1 = if i + 1 == count { 0x80 } else { 0x00 };
            CommandApdu::new(CLA_GP, INS_LOAD, p1, i as u8, chunk.to_vec(), Some(256))
        })
        .collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use alloc::vec;
    use proptest::prelude::*;

    use crate::util::h;

    #[test]
    fn round_trip_plain_and_ciphered() {
        let lf = LoadFile {
            dap_blocks: vec![
                (h("A000000151000000"), vec![0xD4; 8]),
                (h("A0000001515350"), vec![0x94; 16]),
            ],
            lfdb: LfdbBlock::Plain(vec![0x01; 300]),
        };
        let bytes = lf.to_bytes().unwrap();
        assert_eq!(&bytes[..4], &h("E2 14 4F 08"));
        assert_eq!(LoadFile::parse(&bytes).unwrap(), lf);
        assert_eq!(lf.plain_lfdb().unwrap().len(), 300);

        let c = LoadFile {
            dap_blocks: vec![],
            lfdb: LfdbBlock::Ciphered {
                icv: Some(vec![7; 16]),
                data: vec![9; 32],
            },
        };
        let b = c.to_bytes().unwrap();
        assert_eq!(&b[..2], &[0xD3, 0x10]);
        assert_eq!(LoadFile::parse(&b).unwrap(), c);
        let c2 = LoadFile {
            dap_blocks: vec![],
            lfdb: LfdbBlock::Ciphered {
                icv: None,
                data: vec![9; 32],
            },
        };
        assert_eq!(LoadFile::parse(&c2.to_bytes().unwrap()).unwrap(), c2);
    }

    #[test]
    fn rejects_bad_structure() {
        // DAP block after the LFDB.
        assert_eq!(
            LoadFile::parse(&h("C40101 E20C4F05A000000151C303010203")),
            Err(CommandError::TrailingBytes)
        );
        // No LFDB at all.
        assert_eq!(
            LoadFile::parse(&h("E20C4F05A000000151C303010203")),
            Err(CommandError::UnexpectedElement)
        );
        // ICV without D4.
        assert_eq!(
            LoadFile::parse(&h("D3080000000000000000")),
            Err(CommandError::UnexpectedElement)
        );
        // ICV followed by C4.
        assert_eq!(
            LoadFile::parse(&h("D3080000000000000000C40101")),
            Err(CommandError::UnexpectedElement)
        );
        // DAP block with the elements swapped.
        assert_eq!(
            LoadFile::parse(&h("E20C C303010203 4F05A000000151 C40101")),
            Err(CommandError::UnexpectedElement)
        );
        // Truncated TLV.
        assert!(matches!(
            LoadFile::parse(&h("C405010203")),
            Err(CommandError::Tlv(_))
        ));
    }

    #[test]
    fn blocks() {
        let data: Vec<u8> = (0..=255u8).cycle().take(600).collect();
        let blocks = split_into_load_blocks(&data, 250).unwrap();
        assert_eq!(blocks.len(), 3);
        assert_eq!(
            (blocks[0].p1, blocks[0].p2, blocks[0].data.len()),
            (0x00, 0, 250)
        );
        assert_eq!(
            (blocks[2].p1, blocks[2].p2, blocks[2].data.len()),
            (0x80, 2, 100)
        );
        assert_eq!(
            blocks
                .iter()
                .flat_map(|b| b.data.clone())
                .collect::<Vec<_>>(),
            data
        );
        let one = split_into_load_blocks(&[1, 2, 3], 255).unwrap();
        assert_eq!(
            one[0].to_bytes(),
            h("80E88000030102030 0".replace(' ', "").as_str())
        );
        assert_eq!(
            split_into_load_blocks(&data, 0),
            Err(CommandError::BadBlocking)
        );
        assert_eq!(
            split_into_load_blocks(&[], 10),
            Err(CommandError::BadBlocking)
        );
        assert_eq!(
            split_into_load_blocks(&vec![0; 257], 1),
            Err(CommandError::BadBlocking)
        );
        assert_eq!(
            split_into_load_blocks(&vec![0; 256], 1)
                .unwrap()
                .last()
                .unwrap()
                .p2,
            255
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(lf) = LoadFile::parse(&bytes) {
                let again = LoadFile::parse(&lf.to_bytes().unwrap()).unwrap();
                prop_assert_eq!(again, lf);
            }
        }
    }
}
