//! A small panic-free binary codec for the card's persistent state.
//!
//! The state is written by this crate only, but it is read back from storage that may be torn,
//! damaged, or hand-edited, so the reader treats it as untrusted: every read is bounds-checked
//! and returns [`Error::Corrupt`] instead of panicking. Integers are big-endian, byte strings
//! carry a 32-bit length, and a version byte leads the record so the format can evolve.

use alloc::vec::Vec;

use crate::error::{Error, Result};

/// Appends encoded values to a byte vector.
#[derive(Debug, Default)]
pub struct Writer {
    out: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }
    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.out.push(v);
    }
    /// A big-endian 16-bit integer.
    pub fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }
    /// A big-endian 32-bit integer.
    pub fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }
    /// A boolean as `00`/`01`.
    pub fn bool(&mut self, v: bool) {
        self.out.push(u8::from(v));
    }
    /// Bytes of a length known to the reader (no length prefix).
    pub fn raw(&mut self, v: &[u8]) {
        self.out.extend_from_slice(v);
    }
    /// A byte string with a 32-bit length prefix.
    pub fn bytes(&mut self, v: &[u8]) {
        // Card state never approaches 4 GiB; saturate rather than panic.
        self.u32(u32::try_from(v.len()).unwrap_or(u32::MAX));
        self.out.extend_from_slice(v);
    }
    /// A count of items that follow, as a 16-bit integer.
    pub fn count(&mut self, n: usize) {
        self.u16(u16::try_from(n).unwrap_or(u16::MAX));
    }
    /// The encoded bytes.
    pub fn finish(self) -> Vec<u8> {
        self.out
    }
}

/// Reads values back, refusing anything truncated or out of range.
#[derive(Debug)]
pub struct Reader<'a> {
    rest: &'a [u8],
    version: u8,
}

impl<'a> Reader<'a> {
    /// A reader over `bytes` in the newest format.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self {
            rest: bytes,
            version: u8::MAX,
        }
    }
    /// A reader over a record written in format `version`, so decoders can read fields that
    /// older formats lack as their defaults.
    pub fn versioned(bytes: &'a [u8], version: u8) -> Self {
        Self {
            rest: bytes,
            version,
        }
    }
    /// The format version of the record being read ([`u8::MAX`]: the newest).
    pub fn version(&self) -> u8 {
        self.version
    }
    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.rest.len() {
            return Err(Error::Corrupt("truncated state record"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }
    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let bytes = self.take(N)?;
        <[u8; N]>::try_from(bytes).map_err(|_| Error::Corrupt("truncated state record"))
    }
    /// One byte.
    pub fn u8(&mut self) -> Result<u8> {
        let [b] = self.array::<1>()?;
        Ok(b)
    }
    /// A big-endian 16-bit integer.
    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    /// A big-endian 32-bit integer.
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    /// A boolean; only `00` and `01` are accepted.
    pub fn bool(&mut self) -> Result<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Error::Corrupt("bad boolean")),
        }
    }
    /// A byte string with a 32-bit length prefix.
    pub fn bytes(&mut self) -> Result<&'a [u8]> {
        let len = usize::try_from(self.u32()?).map_err(|_| Error::Corrupt("length overflow"))?;
        self.take(len)
    }
    /// A count of items written by [`Writer::count`].
    pub fn count(&mut self) -> Result<usize> {
        Ok(usize::from(self.u16()?))
    }
    /// Succeeds only when every byte was consumed: trailing garbage means corruption.
    pub fn finish(self) -> Result<()> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(Error::Corrupt("trailing bytes in state record"))
        }
    }
}

/// A value that can be written to and read back from persistent storage.
pub trait Persist: Sized {
    /// Append the encoding of `self`.
    fn encode(&self, w: &mut Writer);
    /// Read a value written by [`Persist::encode`].
    fn decode(r: &mut Reader<'_>) -> Result<Self>;
}

/// Encode a list with a count prefix.
pub fn encode_list<T: Persist>(w: &mut Writer, items: &[T]) {
    w.count(items.len());
    for item in items {
        item.encode(w);
    }
}

/// Decode a list written by [`encode_list`].
pub fn decode_list<T: Persist>(r: &mut Reader<'_>) -> Result<Vec<T>> {
    let n = r.count()?;
    let mut items = Vec::new();
    for _ in 0..n {
        items.push(T::decode(r)?);
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let mut w = Writer::new();
        w.u8(7);
        w.u16(0x1234);
        w.u32(0xdead_beef);
        w.bool(true);
        w.bytes(&[1, 2, 3]);
        let bytes = w.finish();
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u8().ok(), Some(7));
        assert_eq!(r.u16().ok(), Some(0x1234));
        assert_eq!(r.u32().ok(), Some(0xdead_beef));
        assert_eq!(r.bool().ok(), Some(true));
        assert_eq!(r.bytes().ok(), Some(&[1u8, 2, 3][..]));
        assert!(r.finish().is_ok());
        for cut in 0..bytes.len() {
            let mut r = Reader::new(bytes.get(..cut).unwrap_or_default());
            let all = (|| -> Result<()> {
                r.u8()?;
                r.u16()?;
                r.u32()?;
                r.bool()?;
                r.bytes()?;
                Ok(())
            })();
            assert!(all.is_err(), "cut at {cut} must fail");
        }
    }
}
