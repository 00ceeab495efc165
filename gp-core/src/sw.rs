//! ISO/IEC 7816-4 and GlobalPlatform status words.
//!
//! Card and host must agree byte for byte on which status word a condition produces, so the names
//! used in the GlobalPlatform Card Specification live here once and both sides refer to them.

use core::fmt;

/// A two-byte status word (`SW1 SW2`) as returned at the end of every response APDU.
///
/// Kept as a plain `u16` newtype so that unknown, proprietary or future status words survive a
/// round trip unchanged; the associated constants name the ones GlobalPlatform uses.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sw(pub u16);

impl Sw {
    /// `9000`: normal processing, no further qualification.
    pub const NO_ERROR: Sw = Sw(0x9000);
    /// `6310`: GET STATUS has more data; a GET STATUS for the next occurrences retrieves it.
    pub const WARNING_MORE_DATA: Sw = Sw(0x6310);
    /// `6300`: verification failed (GP: authentication of the host cryptogram failed).
    pub const VERIFICATION_FAILED: Sw = Sw(0x6300);
    /// `6700`: wrong length (Lc or Le inconsistent with the command).
    pub const WRONG_LENGTH: Sw = Sw(0x6700);
    /// `6881`: the logical channel addressed by CLA is not supported or not open.
    pub const LOGICAL_CHANNEL_NOT_SUPPORTED: Sw = Sw(0x6881);
    /// `6882`: secure messaging is not supported in the way the command asked for.
    pub const SECURE_MESSAGING_NOT_SUPPORTED: Sw = Sw(0x6882);
    /// `6982`: security status not satisfied (missing or bad MAC, no secure channel, ...).
    pub const SECURITY_STATUS_NOT_SATISFIED: Sw = Sw(0x6982);
    /// `6983`: authentication method blocked (e.g. a key whose usage counter is exhausted).
    pub const AUTHENTICATION_METHOD_BLOCKED: Sw = Sw(0x6983);
    /// `6984`: referenced data invalidated (e.g. a blocked key or a locked application).
    pub const REFERENCED_DATA_INVALIDATED: Sw = Sw(0x6984);
    /// `6985`: conditions of use not satisfied (wrong life cycle state, wrong command order, ...).
    pub const CONDITIONS_NOT_SATISFIED: Sw = Sw(0x6985);
    /// `6A80`: incorrect values in the command data field.
    pub const INCORRECT_DATA: Sw = Sw(0x6A80);
    /// `6A81`: function not supported (e.g. the card is locked for this function).
    pub const FUNCTION_NOT_SUPPORTED: Sw = Sw(0x6A81);
    /// `6A82`: application or file not found (SELECT of an unknown AID).
    pub const FILE_NOT_FOUND: Sw = Sw(0x6A82);
    /// `6A84`: not enough memory space on the card.
    pub const NOT_ENOUGH_MEMORY: Sw = Sw(0x6A84);
    /// `6A86`: incorrect parameters P1-P2.
    pub const INCORRECT_P1P2: Sw = Sw(0x6A86);
    /// `6A88`: referenced data not found (e.g. an unknown key version in INITIALIZE UPDATE).
    pub const REFERENCED_DATA_NOT_FOUND: Sw = Sw(0x6A88);
    /// `6B00`: wrong parameters P1-P2 (ISO interindustry variant of `6A86`).
    pub const WRONG_P1P2: Sw = Sw(0x6B00);
    /// `6D00`: instruction code not supported or invalid.
    pub const INS_NOT_SUPPORTED: Sw = Sw(0x6D00);
    /// `6E00`: class not supported.
    pub const CLA_NOT_SUPPORTED: Sw = Sw(0x6E00);
    /// `6F00`: no precise diagnosis; used when the card cannot say more without leaking state.
    pub const UNKNOWN: Sw = Sw(0x6F00);

    /// Builds a status word from its two bytes, as they appear at the end of a response.
    pub const fn from_bytes(sw1: u8, sw2: u8) -> Sw {
        Sw(((sw1 as u16) << 8) | sw2 as u16)
    }

    /// The two bytes `[SW1, SW2]` in transmission order.
    pub const fn bytes(self) -> [u8; 2] {
        self.0.to_be_bytes()
    }

    /// `SW1`, the byte that carries the category of the status.
    pub const fn sw1(self) -> u8 {
        self.bytes()[0]
    }

    /// `SW2`, the byte that qualifies the status.
    pub const fn sw2(self) -> u8 {
        self.bytes()[1]
    }

    /// True only for `9000`: the command completed normally.
    ///
    /// `61xx` (more response bytes available) is reported by [`Sw::is_more_data_available`]
    /// instead, because the caller still has to issue GET RESPONSE before it has the result.
    pub const fn is_success(self) -> bool {
        self.0 == 0x9000
    }

    /// True for `61xx`: the card has `SW2` (0 meaning 256) more bytes for GET RESPONSE.
    pub const fn is_more_data_available(self) -> bool {
        self.sw1() == 0x61
    }

    /// True for the warning classes `62xx` and `63xx`.
    ///
    /// Secure messaging treats warnings like success: the response is still protected by
    /// R-MAC / R-ENC, whereas error status words are returned bare.
    pub const fn is_warning(self) -> bool {
        matches!(self.sw1(), 0x62 | 0x63)
    }

    /// True for status words that secure messaging protects: `9000`, `62xx` and `63xx`.
    pub const fn is_success_or_warning(self) -> bool {
        self.is_success() || self.is_warning()
    }
}

impl From<u16> for Sw {
    fn from(value: u16) -> Self {
        Sw(value)
    }
}

impl From<Sw> for u16 {
    fn from(value: Sw) -> Self {
        value.0
    }
}

impl fmt::Display for Sw {
    /// Four upper-case hex digits, the way status words appear in traces and specifications.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04X}", self.0)
    }
}

impl fmt::Debug for Sw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sw({:04X})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn bytes_and_display() {
        assert_eq!(Sw::NO_ERROR.bytes(), [0x90, 0x00]);
        assert_eq!(format!("{}", Sw::INCORRECT_DATA), "6A80");
        assert_eq!(format!("{:?}", Sw::WRONG_LENGTH), "Sw(6700)");
        assert_eq!(Sw::from_bytes(0x63, 0x10), Sw::WARNING_MORE_DATA);
    }

    #[test]
    fn classes() {
        assert!(Sw::NO_ERROR.is_success());
        assert!(!Sw(0x6100).is_success());
        assert!(Sw(0x6110).is_more_data_available());
        assert!(Sw::WARNING_MORE_DATA.is_success_or_warning());
        assert!(Sw(0x6283).is_warning());
        assert!(!Sw::SECURITY_STATUS_NOT_SATISFIED.is_success_or_warning());
    }
}
