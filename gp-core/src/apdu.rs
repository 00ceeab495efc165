//! ISO/IEC 7816-4 command and response APDUs.
//!
//! One parser for both sides: the card parses what the reader delivers and the host parses what
//! tests and traces contain. Every length is checked against the bytes actually present; a command
//! whose length fields disagree with its size is rejected rather than guessed at, because guessing is
//! how two implementations come to disagree about which bytes were authenticated.

use alloc::vec::Vec;
use core::fmt;

use crate::sw::Sw;

/// Largest data field a short APDU can carry (Lc is one byte).
pub const SHORT_MAX_DATA: usize = 255;
/// Largest Le a short APDU can express (`00` encodes 256).
pub const SHORT_MAX_LE: usize = 256;
/// Largest data field an extended APDU can carry (Lc is two bytes, zero not allowed).
pub const EXTENDED_MAX_DATA: usize = 65_535;
/// Largest Le an extended APDU can express (`0000` encodes 65 536).
pub const EXTENDED_MAX_LE: usize = 65_536;

/// Why a byte string is not a well-formed APDU (or an APDU cannot be encoded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApduError {
    /// Fewer than four header bytes (command) or two status bytes (response).
    TooShort,
    /// The length fields do not match the number of bytes present (ISO 7816-4 §5.1).
    LengthMismatch,
    /// An extended Lc of `0000`, which ISO 7816-4 does not allow.
    ZeroExtendedLc,
    /// The data field is longer than 65 535 bytes and cannot be encoded.
    DataTooLong,
    /// Le is larger than 65 536 and cannot be encoded.
    LeTooLarge,
}

impl ApduError {
    /// The status word a card answers with when it receives such an APDU.
    ///
    /// Every variant is a length problem, so all map to `6700` (wrong length).
    pub fn sw(&self) -> Sw {
        Sw::WRONG_LENGTH
    }
}

impl fmt::Display for ApduError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ApduError::TooShort => "APDU too short",
            ApduError::LengthMismatch => "APDU length fields do not match its size",
            ApduError::ZeroExtendedLc => "extended APDU with Lc 0000",
            ApduError::DataTooLong => "APDU data field longer than 65535 bytes",
            ApduError::LeTooLarge => "APDU Le larger than 65536",
        };
        f.write_str(s)
    }
}

/// A command APDU with its length fields decoded.
///
/// `le` is the number of response bytes expected: `None` when Le is absent, `Some(256)` for a
/// short Le of `00` and `Some(65536)` for an extended Le of `0000`. `Some(0)` is treated like
/// `None` when encoding (an expected length of zero is what an absent Le means).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct CommandApdu {
    /// Class byte: command class, secure messaging indication and logical channel.
    pub cla: u8,
    /// Instruction byte.
    pub ins: u8,
    /// First parameter byte.
    pub p1: u8,
    /// Second parameter byte.
    pub p2: u8,
    /// Command data field (empty for cases 1 and 2).
    pub data: Vec<u8>,
    /// Expected response length, see the type documentation.
    pub le: Option<usize>,
}

impl CommandApdu {
    /// Builds a command from its header, data and expected response length.
    pub fn new(cla: u8, ins: u8, p1: u8, p2: u8, data: Vec<u8>, le: Option<usize>) -> Self {
        CommandApdu {
            cla,
            ins,
            p1,
            p2,
            data,
            le,
        }
    }

    /// Parses an ISO/IEC 7816-4 command APDU: cases 1, 2S, 3S, 4S, 2E, 3E and 4E.
    ///
    /// Any inconsistency between the length fields and the number of bytes is an error
    /// ([`ApduError::LengthMismatch`]); trailing bytes are never ignored.
    pub fn parse(bytes: &[u8]) -> Result<CommandApdu, ApduError> {
        let (header, body) = bytes.split_at_checked(4).ok_or(ApduError::TooShort)?;
        let &[cla, ins, p1, p2] = header else {
            return Err(ApduError::TooShort);
        };
        let mut cmd = CommandApdu {
            cla,
            ins,
            p1,
            p2,
            data: Vec::new(),
            le: None,
        };
        match body {
            // Case 1.
            [] => {}
            // Case 2S.
            [le] => cmd.le = Some(short_le(*le)),
            // Extended forms start with a 00 byte and have at least two more bytes.
            [0, rest @ ..] if rest.len() >= 2 => {
                let (lc_or_le, rest) = rest.split_at_checked(2).ok_or(ApduError::TooShort)?;
                let n = be16(lc_or_le);
                if rest.is_empty() {
                    // Case 2E.
                    cmd.le = Some(extended_le(n));
                } else {
                    if n == 0 {
                        return Err(ApduError::ZeroExtendedLc);
                    }
                    let (data, tail) = rest
                        .split_at_checked(usize::from(n))
                        .ok_or(ApduError::LengthMismatch)?;
                    cmd.data = data.to_vec();
                    match tail {
                        // Case 3E.
                        [] => {}
                        // Case 4E.
                        [a, b] => cmd.le = Some(extended_le(u16::from_be_bytes([*a, *b]))),
                        _ => return Err(ApduError::LengthMismatch),
                    }
                }
            }
            [lc, rest @ ..] => {
                if *lc == 0 {
                    // A short Lc of 00 is not allowed; 00 followed by fewer than two bytes is
                    // neither a short nor an extended encoding.
                    return Err(ApduError::LengthMismatch);
                }
                let (data, tail) = rest
                    .split_at_checked(usize::from(*lc))
                    .ok_or(ApduError::LengthMismatch)?;
                cmd.data = data.to_vec();
                match tail {
                    // Case 3S.
                    [] => {}
                    // Case 4S.
                    [le] => cmd.le = Some(short_le(*le)),
                    _ => return Err(ApduError::LengthMismatch),
                }
            }
        }
        Ok(cmd)
    }

    /// True when this command needs the extended length encoding (data longer than 255 bytes or
    /// Le larger than 256).
    pub fn needs_extended(&self) -> bool {
        self.data.len() > SHORT_MAX_DATA || self.effective_le().is_some_and(|le| le > SHORT_MAX_LE)
    }

    fn effective_le(&self) -> Option<usize> {
        self.le.filter(|&le| le != 0)
    }

    /// Encodes the command, choosing the short encoding when both Lc and Le fit, else extended.
    ///
    /// Fails only when the data field or Le exceed what extended APDUs can express.
    pub fn try_to_bytes(&self) -> Result<Vec<u8>, ApduError> {
        if self.data.len() > EXTENDED_MAX_DATA {
            return Err(ApduError::DataTooLong);
        }
        let le = self.effective_le();
        if le.is_some_and(|le| le > EXTENDED_MAX_LE) {
            return Err(ApduError::LeTooLarge);
        }
        let mut out = Vec::with_capacity(self.data.len() + 9);
        out.extend_from_slice(&[self.cla, self.ins, self.p1, self.p2]);
        if self.needs_extended() {
            out.push(0);
            if !self.data.is_empty() {
                out.extend_from_slice(&len16(self.data.len()));
                out.extend_from_slice(&self.data);
            }
            if let Some(le) = le {
                out.extend_from_slice(&len16(le));
            }
        } else {
            if !self.data.is_empty() {
                out.push(self.data.len() as u8);
                out.extend_from_slice(&self.data);
            }
            if let Some(le) = le {
                // 256 wraps to 00 as ISO 7816-4 requires.
                out.push(le as u8);
            }
        }
        Ok(out)
    }

    /// Encodes the command like [`CommandApdu::try_to_bytes`].
    ///
    /// A command that cannot be encoded at all (data over 65 535 bytes, Le over 65 536) yields an
    /// empty vector, which every reader rejects; use `try_to_bytes` to see the reason instead.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.try_to_bytes().unwrap_or_default()
    }
}

impl fmt::Debug for CommandApdu {
    /// Header in hex and the data length only: command data may carry (encrypted) key material
    /// or personalisation data, which does not belong in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CommandApdu {{ {:02X} {:02X} {:02X} {:02X}, data: {} bytes, le: {:?} }}",
            self.cla,
            self.ins,
            self.p1,
            self.p2,
            self.data.len(),
            self.le
        )
    }
}

/// A response APDU: data field followed by the status word.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct ResponseApdu {
    /// Response data field (may be empty).
    pub data: Vec<u8>,
    /// Status word `SW1 SW2` as a big-endian `u16`.
    pub sw: u16,
}

impl ResponseApdu {
    /// Builds a response from data and status word.
    pub fn new(data: Vec<u8>, sw: Sw) -> Self {
        ResponseApdu { data, sw: sw.0 }
    }

    /// A response with a status word and no data, the form every error takes.
    pub fn status(sw: Sw) -> Self {
        ResponseApdu {
            data: Vec::new(),
            sw: sw.0,
        }
    }

    /// Splits `data ‖ SW1 SW2`; needs at least the two status bytes.
    pub fn parse(bytes: &[u8]) -> Result<ResponseApdu, ApduError> {
        let split = bytes.len().checked_sub(2).ok_or(ApduError::TooShort)?;
        let (data, sw) = bytes.split_at_checked(split).ok_or(ApduError::TooShort)?;
        let &[sw1, sw2] = sw else {
            return Err(ApduError::TooShort);
        };
        Ok(ResponseApdu {
            data: data.to_vec(),
            sw: u16::from_be_bytes([sw1, sw2]),
        })
    }

    /// The status word as an [`Sw`].
    pub fn sw(&self) -> Sw {
        Sw(self.sw)
    }

    /// `data ‖ SW1 SW2`, the bytes sent back to the reader.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() + 2);
        out.extend_from_slice(&self.data);
        out.extend_from_slice(&self.sw.to_be_bytes());
        out
    }
}

impl fmt::Debug for ResponseApdu {
    /// Status word and data length only, for the same reason as [`CommandApdu`]'s `Debug`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ResponseApdu {{ data: {} bytes, sw: {:04X} }}",
            self.data.len(),
            self.sw
        )
    }
}

/// True when CLA uses the further interindustry coding (`40`–`7F`, and GP's `C0`–`CF`/`E0`–`EF`),
/// where the logical channel is 4–19 and secure messaging is bit 6.
pub const fn is_further_interindustry(cla: u8) -> bool {
    cla & 0x40 != 0
}

/// The logical channel number (0–19) encoded in CLA (GPC 2.3.1 Tables 11-11 and 11-12).
pub const fn logical_channel(cla: u8) -> u8 {
    if is_further_interindustry(cla) {
        4 + (cla & 0x0F)
    } else {
        cla & 0x03
    }
}

/// True when CLA indicates GlobalPlatform proprietary secure messaging (bit 3, or bit 6 for
/// logical channels 4–19).
pub const fn has_secure_messaging(cla: u8) -> bool {
    if is_further_interindustry(cla) {
        cla & 0x20 != 0
    } else {
        cla & 0x04 != 0
    }
}

/// CLA with the GlobalPlatform secure messaging indication set, logical channel unchanged.
pub const fn with_secure_messaging(cla: u8) -> u8 {
    if is_further_interindustry(cla) {
        cla | 0x20
    } else {
        (cla & !0x08) | 0x04
    }
}

/// CLA with the secure messaging indication cleared, logical channel unchanged.
pub const fn without_secure_messaging(cla: u8) -> u8 {
    if is_further_interindustry(cla) {
        cla & !0x20
    } else {
        cla & !0x0C
    }
}

/// The class byte that enters MAC computations: logical channel zero, secure messaging set.
///
/// SCP02 (GPC E.4.4) and SCP03 (Amendment D §6.2.4) keep the logical channel out of the
/// integrity protection, so a command is MACed identically on every channel.
pub const fn mac_cla(cla: u8) -> u8 {
    (cla & 0x80) | 0x04
}

/// The class byte without secure messaging and on logical channel zero, as SCP02 feeds the
/// "stripped" command into the R-MAC.
pub const fn plain_cla(cla: u8) -> u8 {
    cla & 0x80
}

/// `CLA INS P1 P2 Lc` as the secure channels MAC it: Lc one byte up to 255, else extended
/// (`00` + two bytes); `None` beyond [`EXTENDED_MAX_DATA`].
pub(crate) fn lc_header(cla: u8, ins: u8, p1: u8, p2: u8, lc: usize) -> Option<Vec<u8>> {
    let mut h = Vec::with_capacity(7);
    h.extend_from_slice(&[cla, ins, p1, p2]);
    if lc <= SHORT_MAX_DATA {
        h.push(lc as u8);
    } else if lc <= EXTENDED_MAX_DATA {
        h.push(0);
        h.extend_from_slice(&(lc as u16).to_be_bytes());
    } else {
        return None;
    }
    Some(h)
}

fn short_le(b: u8) -> usize {
    if b == 0 {
        SHORT_MAX_LE
    } else {
        usize::from(b)
    }
}

fn extended_le(n: u16) -> usize {
    if n == 0 {
        EXTENDED_MAX_LE
    } else {
        usize::from(n)
    }
}

fn be16(b: &[u8]) -> u16 {
    match b {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 0,
    }
}

/// Two-byte big-endian length; 65 536 wraps to `0000` as ISO 7816-4 requires for Le.
fn len16(n: usize) -> [u8; 2] {
    (n as u16).to_be_bytes()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use alloc::vec;
    use proptest::prelude::*;

    use crate::util::h;

    #[test]
    fn all_cases_round_trip() {
        let cases: &[(&str, &[u8], Option<usize>)] = &[
            ("80CA9F7F", &[], None),                        // case 1
            ("80CA9F7F00", &[], Some(256)),                 // case 2S
            ("80CA9F7F10", &[], Some(16)),                  // case 2S
            ("80F22002024F00", &[0x4F, 0x00], None),        // case 3S
            ("80F22002024F0000", &[0x4F, 0x00], Some(256)), // case 4S
            ("80CA9F7F000000", &[], Some(65536)),           // case 2E
            ("80CA9F7F000101", &[], Some(257)),             // case 2E
        ];
        for (hex, data, le) in cases {
            let bytes = h(hex);
            let cmd = CommandApdu::parse(&bytes).unwrap();
            assert_eq!(cmd.data, *data, "{hex}");
            assert_eq!(cmd.le, *le, "{hex}");
            assert_eq!(cmd.to_bytes(), bytes, "{hex}");
        }
    }

    #[test]
    fn extended_with_data() {
        let data = vec![0xAB; 300];
        let cmd = CommandApdu::new(0x80, 0xE8, 0x00, 0x00, data.clone(), None);
        let bytes = cmd.to_bytes();
        assert_eq!(&bytes[..7], &[0x80, 0xE8, 0, 0, 0, 0x01, 0x2C]);
        assert_eq!(bytes.len(), 7 + 300);
        assert_eq!(CommandApdu::parse(&bytes).unwrap(), cmd);

        let cmd4 = CommandApdu {
            le: Some(65536),
            ..cmd.clone()
        };
        let bytes4 = cmd4.to_bytes();
        assert_eq!(&bytes4[bytes4.len() - 2..], &[0, 0]);
        assert_eq!(CommandApdu::parse(&bytes4).unwrap(), cmd4);

        // Short data but a large Le forces extended encoding for both fields.
        let cmd5 = CommandApdu::new(0x00, 0xB0, 0, 0, vec![1, 2], Some(1000));
        let b5 = cmd5.to_bytes();
        assert_eq!(b5, h("00B0000000000201020 3E8".replace(' ', "").as_str()));
        assert_eq!(CommandApdu::parse(&b5).unwrap(), cmd5);
    }

    #[test]
    fn rejects_inconsistent_lengths() {
        for bad in [
            "",
            "80",
            "80CA9F",
            "80F2200203 4F00",
            "80F22002024F000000",
            "80CA9F7F0000",
            "80CA9F7F00000001",
        ] {
            let bytes = h(&bad.replace(' ', ""));
            let err = CommandApdu::parse(&bytes).unwrap_err();
            assert_eq!(err.sw(), Sw::WRONG_LENGTH, "{bad}");
        }
        assert_eq!(
            CommandApdu::parse(&h("80CA9F7F000000AA")),
            Err(ApduError::ZeroExtendedLc)
        );
    }

    #[test]
    fn unencodable() {
        let cmd = CommandApdu::new(0, 0, 0, 0, vec![0; 65_536], None);
        assert_eq!(cmd.try_to_bytes(), Err(ApduError::DataTooLong));
        assert!(cmd.to_bytes().is_empty());
        let cmd = CommandApdu::new(0, 0, 0, 0, vec![], Some(65_537));
        assert_eq!(cmd.try_to_bytes(), Err(ApduError::LeTooLarge));
    }

    #[test]
    fn response() {
        let r = ResponseApdu::parse(&h("01029000")).unwrap();
        assert_eq!(r.data, vec![1, 2]);
        assert_eq!(r.sw(), Sw::NO_ERROR);
        assert_eq!(r.to_bytes(), h("01029000"));
        assert_eq!(ResponseApdu::parse(&[0x90]), Err(ApduError::TooShort));
        assert!(ResponseApdu::parse(&[0x6A, 0x82]).unwrap().data.is_empty());
    }

    #[test]
    fn cla_helpers() {
        assert_eq!(with_secure_messaging(0x80), 0x84);
        assert_eq!(with_secure_messaging(0x81), 0x85);
        assert_eq!(with_secure_messaging(0xC1), 0xE1);
        assert_eq!(without_secure_messaging(0xE1), 0xC1);
        assert_eq!(without_secure_messaging(0x87), 0x83);
        assert_eq!(logical_channel(0x83), 3);
        assert_eq!(logical_channel(0xCF), 19);
        assert!(has_secure_messaging(0x84) && has_secure_messaging(0xE0));
        assert!(!has_secure_messaging(0x80) && !has_secure_messaging(0xC0));
        assert_eq!(mac_cla(0x87), 0x84);
        assert_eq!(mac_cla(0xE5), 0x84);
        assert_eq!(mac_cla(0x00), 0x04);
    }

    #[test]
    fn debug_hides_data() {
        let cmd = CommandApdu::new(0x84, 0xD8, 0, 0x81, vec![0x11; 20], None);
        let s = alloc::format!("{cmd:?}");
        assert!(!s.contains("11, 17") && s.contains("20 bytes"));
    }

    proptest! {
        #[test]
        fn command_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(cmd) = CommandApdu::parse(&bytes) {
                // Whatever parses re-encodes to an APDU that parses to the same command.
                let again = CommandApdu::parse(&cmd.to_bytes()).unwrap();
                prop_assert_eq!(again, cmd);
            }
        }

        #[test]
        fn response_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(r) = ResponseApdu::parse(&bytes) {
                prop_assert_eq!(r.to_bytes(), bytes);
            }
        }
    }
}
