//! BER-TLV as GlobalPlatform uses it (ISO/IEC 8825-1 subset).
//!
//! Tags of one to three bytes, definite lengths in short form or `81`/`82`/`83`/`84` long form.
//! The reader borrows from the input and never copies or panics; the first malformed object ends
//! iteration with an error, because nothing after a broken length can be trusted.

use alloc::vec::Vec;
use core::fmt;

use crate::sw::Sw;

/// Why bytes are not valid BER-TLV.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlvError {
    /// The input ends inside a tag, a length or a value.
    Truncated,
    /// A tag longer than three bytes.
    TagTooLong,
    /// Indefinite length (`80`) or a length form longer than four bytes.
    UnsupportedLength,
    /// A length that does not fit in memory addresses on this platform.
    LengthOverflow,
}

impl TlvError {
    /// The status word a card answers with when command data holds such TLV: `6A80`.
    pub fn sw(&self) -> Sw {
        Sw::INCORRECT_DATA
    }
}

impl fmt::Display for TlvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            TlvError::Truncated => "TLV truncated",
            TlvError::TagTooLong => "TLV tag longer than three bytes",
            TlvError::UnsupportedLength => "TLV length form not supported",
            TlvError::LengthOverflow => "TLV length too large",
        };
        f.write_str(s)
    }
}

/// One data object: its tag (the tag bytes read as a big-endian number, e.g. `0x9F70`) and value.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// Tag bytes as a big-endian number: `4F` is `0x4F`, `9F70` is `0x9F70`.
    pub tag: u32,
    /// Value bytes, borrowed from the input.
    pub value: &'a [u8],
}

impl<'a> Tlv<'a> {
    /// True when the tag's first byte has bit 6 set: the value is itself a sequence of TLVs.
    pub fn is_constructed(&self) -> bool {
        first_tag_byte(self.tag) & 0x20 != 0
    }

    /// A reader over the value, for walking into constructed objects such as `E3` or `E2`.
    pub fn children(&self) -> TlvReader<'a> {
        TlvReader::new(self.value)
    }
}

impl fmt::Debug for Tlv<'_> {
    /// Tag and length only; values may be key material or signatures.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Tlv {{ tag: {:X}, len: {} }}",
            self.tag,
            self.value.len()
        )
    }
}

fn first_tag_byte(tag: u32) -> u8 {
    let bytes = tag.to_be_bytes();
    bytes.into_iter().find(|&b| b != 0).unwrap_or(0)
}

/// Iterator over consecutive BER-TLV objects in a byte string.
///
/// Yields `Err` once at the first malformed object and then stops.
#[derive(Clone, Debug)]
pub struct TlvReader<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> TlvReader<'a> {
    /// Starts reading at the beginning of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        TlvReader {
            rest: bytes,
            failed: false,
        }
    }

    /// The bytes not consumed yet.
    pub fn remaining(&self) -> &'a [u8] {
        self.rest
    }

    fn read_one(&mut self) -> Result<Tlv<'a>, TlvError> {
        let (tag, after_tag) = read_tag(self.rest)?;
        let (len, after_len) = read_len(after_tag)?;
        let (value, rest) = after_len.split_at_checked(len).ok_or(TlvError::Truncated)?;
        self.rest = rest;
        Ok(Tlv { tag, value })
    }
}

impl<'a> Iterator for TlvReader<'a> {
    type Item = Result<Tlv<'a>, TlvError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let r = self.read_one();
        if r.is_err() {
            self.failed = true;
        }
        Some(r)
    }
}

/// Reads a tag of one to three bytes; returns it as a big-endian number and the rest.
pub fn read_tag(bytes: &[u8]) -> Result<(u32, &[u8]), TlvError> {
    let (&first, mut rest) = bytes.split_first().ok_or(TlvError::Truncated)?;
    let mut tag = u32::from(first);
    if first & 0x1F == 0x1F {
        // Subsequent bytes follow while bit 8 is set; at most two of them.
        let mut count = 0;
        loop {
            let (&b, r) = rest.split_first().ok_or(TlvError::Truncated)?;
            rest = r;
            count += 1;
            if count > 2 {
                return Err(TlvError::TagTooLong);
            }
            tag = (tag << 8) | u32::from(b);
            if b & 0x80 == 0 {
                break;
            }
        }
    }
    Ok((tag, rest))
}

/// Reads a BER definite length (short form, or `81`–`84` long form); returns it and the rest.
pub fn read_len(bytes: &[u8]) -> Result<(usize, &[u8]), TlvError> {
    let (&first, rest) = bytes.split_first().ok_or(TlvError::Truncated)?;
    if first < 0x80 {
        return Ok((usize::from(first), rest));
    }
    let n = usize::from(first & 0x7F);
    if n == 0 || n > 4 {
        return Err(TlvError::UnsupportedLength);
    }
    let (len_bytes, rest) = rest.split_at_checked(n).ok_or(TlvError::Truncated)?;
    let len = len_bytes
        .iter()
        .fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
    let len = usize::try_from(len).map_err(|_| TlvError::LengthOverflow)?;
    Ok((len, rest))
}

/// Finds the first top-level object with `tag` and returns its value.
///
/// Objects before it must be well formed; objects after it are not examined.
pub fn find(bytes: &[u8], tag: u32) -> Result<Option<&[u8]>, TlvError> {
    for tlv in TlvReader::new(bytes) {
        let tlv = tlv?;
        if tlv.tag == tag {
            return Ok(Some(tlv.value));
        }
    }
    Ok(None)
}

/// Appends a BER length: short form below 128, else `81`, `82`, `83` or `84` with the minimum
/// number of bytes.
pub fn write_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
        return;
    }
    let bytes = (len as u64).to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    let significant = bytes.get(skip..).unwrap_or(&[]);
    out.push(0x80 | significant.len() as u8);
    out.extend_from_slice(significant);
}

/// Appends the tag bytes of `tag` (leading zero bytes dropped; tag `0` writes one `00`).
pub fn write_tag(out: &mut Vec<u8>, tag: u32) {
    let bytes = tag.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count().min(3);
    out.extend_from_slice(bytes.get(skip..).unwrap_or(&[]));
}

/// Appends `tag ‖ length ‖ value`.
pub fn write_tlv(out: &mut Vec<u8>, tag: u32, value: &[u8]) {
    write_tag(out, tag);
    write_len(out, value.len());
    out.extend_from_slice(value);
}

/// Returns `tag ‖ length ‖ value` as a new vector.
pub fn tlv(tag: u32, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 6);
    write_tlv(&mut out, tag, value);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use alloc::vec;
    use proptest::prelude::*;

    #[test]
    fn reads_nested_get_status_entry() {
        let bytes = hex::decode("E3114F08A0000001510000009F70010FC5019E").unwrap();
        let mut r = TlvReader::new(&bytes);
        let e3 = r.next().unwrap().unwrap();
        assert!(r.next().is_none());
        assert_eq!(e3.tag, 0xE3);
        assert!(e3.is_constructed());
        let kids: Vec<_> = e3.children().map(|t| t.unwrap()).collect();
        assert_eq!(kids.len(), 3);
        assert_eq!(kids[0].tag, 0x4F);
        assert!(!kids[0].is_constructed());
        assert_eq!(kids[1].tag, 0x9F70);
        assert_eq!(kids[1].value, &[0x0F]);
        assert_eq!(find(e3.value, 0xC5).unwrap(), Some(&[0x9E][..]));
        assert_eq!(find(e3.value, 0xCC).unwrap(), None);
    }

    #[test]
    fn lengths() {
        for len in [
            0usize, 1, 127, 128, 255, 256, 65535, 65536, 0xFF_FFFF, 0x100_0000,
        ] {
            let mut out = Vec::new();
            write_len(&mut out, len);
            let expected_bytes = match len {
                0..=127 => 1,
                128..=255 => 2,
                256..=65535 => 3,
                65536..=0xFF_FFFF => 4,
                _ => 5,
            };
            assert_eq!(out.len(), expected_bytes, "{len}");
            let (back, rest) = read_len(&out).unwrap();
            assert_eq!(back, len);
            assert!(rest.is_empty());
        }
        assert_eq!(read_len(&[0x80]), Err(TlvError::UnsupportedLength));
        assert_eq!(
            read_len(&[0x85, 1, 1, 1, 1, 1]),
            Err(TlvError::UnsupportedLength)
        );
        assert_eq!(read_len(&[0x82, 1]), Err(TlvError::Truncated));
    }

    #[test]
    fn tags() {
        for tag in [0x4Fu32, 0x9F70, 0xDF8101, 0xBF0C] {
            let encoded = tlv(tag, &[1, 2, 3]);
            let t = TlvReader::new(&encoded).next().unwrap().unwrap();
            assert_eq!(t.tag, tag);
            assert_eq!(t.value, &[1, 2, 3]);
        }
        assert_eq!(read_tag(&[0x9F]), Err(TlvError::Truncated));
        assert_eq!(
            read_tag(&[0x9F, 0x81, 0x81, 0x01]),
            Err(TlvError::TagTooLong)
        );
    }

    #[test]
    fn errors_stop_iteration() {
        let bytes = vec![0x4F, 0x05, 1, 2];
        let mut r = TlvReader::new(&bytes);
        assert_eq!(r.next(), Some(Err(TlvError::Truncated)));
        assert_eq!(r.next(), None);
        assert_eq!(find(&bytes, 0xC5), Err(TlvError::Truncated));
    }

    proptest! {
        #[test]
        fn reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut total = 0usize;
            for t in TlvReader::new(&bytes) {
                match t {
                    Ok(t) => {
                        total += t.value.len();
                        let _ = t.children().count();
                    }
                    Err(_) => break,
                }
            }
            prop_assert!(total <= bytes.len());
            let _ = find(&bytes, 0x4F);
        }

        #[test]
        fn write_then_read(tag in prop_oneof![0x40u32..0x5F, 0x9F00u32..0x9F7F, 0xC0u32..0xDE], value in proptest::collection::vec(any::<u8>(), 0..400)) {
            let tag = if tag & 0x1F == 0x1F && tag <= 0xFF { 0x4F } else { tag };
            let encoded = tlv(tag, &value);
            let t = TlvReader::new(&encoded).next().unwrap().unwrap();
            prop_assert_eq!(t.tag, tag);
            prop_assert_eq!(t.value, &value[..]);
        }
    }
}
