//! GlobalPlatform privileges (GPC 2.3.1 §11.1.2, Tables 11-7 to 11-9).
//!
//! Privileges are three bytes. Some privileges are not a single bit: DAP Verification is `C0` with
//! b1 clear and Mandated DAP Verification is `C1`, both implying Security Domain. A [`Privilege`]
//! therefore carries a mask and the value the masked bits must have.

/// One privilege: byte index into the three privilege bytes, mask and required value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Privilege {
    /// Which of the three privilege bytes (0, 1 or 2).
    pub byte: usize,
    /// Bits that define this privilege.
    pub mask: u8,
    /// Value the masked bits have when the privilege is held.
    pub value: u8,
    /// GP name, for display.
    pub name: &'static str,
}

impl Privilege {
    /// True when `privileges` grants this privilege.
    pub fn is_set_in(&self, privileges: &[u8; 3]) -> bool {
        privileges
            .get(self.byte)
            .is_some_and(|b| b & self.mask == self.value)
    }

    /// Grants this privilege in `privileges` (other bits unchanged, except those the mask
    /// defines: granting DAP Verification clears the Mandated bit and vice versa).
    pub fn set_in(&self, privileges: &mut [u8; 3]) {
        if let Some(b) = privileges.get_mut(self.byte) {
            *b = (*b & !self.mask) | self.value;
        }
    }
}

const fn p(byte: usize, mask: u8, value: u8, name: &'static str) -> Privilege {
    Privilege {
        byte,
        mask,
        value,
        name,
    }
}

/// Security Domain (byte 1 b8).
pub const SECURITY_DOMAIN: Privilege = p(0, 0x80, 0x80, "Security Domain");
/// DAP Verification (byte 1 `C0`, b1 clear).
pub const DAP_VERIFICATION: Privilege = p(0, 0xC1, 0xC0, "DAP Verification");
/// Delegated Management (byte 1 `A0`).
pub const DELEGATED_MANAGEMENT: Privilege = p(0, 0xA0, 0xA0, "Delegated Management");
/// Card Lock (byte 1 b5).
pub const CARD_LOCK: Privilege = p(0, 0x10, 0x10, "Card Lock");
/// Card Terminate (byte 1 b4).
pub const CARD_TERMINATE: Privilege = p(0, 0x08, 0x08, "Card Terminate");
/// Card Reset (byte 1 b3).
pub const CARD_RESET: Privilege = p(0, 0x04, 0x04, "Card Reset");
/// CVM Management (byte 1 b2).
pub const CVM_MANAGEMENT: Privilege = p(0, 0x02, 0x02, "CVM Management");
/// Mandated DAP Verification (byte 1 `C1`).
pub const MANDATED_DAP_VERIFICATION: Privilege = p(0, 0xC1, 0xC1, "Mandated DAP Verification");
/// Trusted Path (byte 2 b8).
pub const TRUSTED_PATH: Privilege = p(1, 0x80, 0x80, "Trusted Path");
/// Authorized Management (byte 2 b7).
pub const AUTHORIZED_MANAGEMENT: Privilege = p(1, 0x40, 0x40, "Authorized Management");
/// Token Management (byte 2 b6), named Token Verification in older versions.
pub const TOKEN_MANAGEMENT: Privilege = p(1, 0x20, 0x20, "Token Management");
/// Global Delete (byte 2 b5).
pub const GLOBAL_DELETE: Privilege = p(1, 0x10, 0x10, "Global Delete");
/// Global Lock (byte 2 b4).
pub const GLOBAL_LOCK: Privilege = p(1, 0x08, 0x08, "Global Lock");
/// Global Registry (byte 2 b3).
pub const GLOBAL_REGISTRY: Privilege = p(1, 0x04, 0x04, "Global Registry");
/// Final Application (byte 2 b2).
pub const FINAL_APPLICATION: Privilege = p(1, 0x02, 0x02, "Final Application");
/// Global Service (byte 2 b1).
pub const GLOBAL_SERVICE: Privilege = p(1, 0x01, 0x01, "Global Service");
/// Receipt Generation (byte 3 b8).
pub const RECEIPT_GENERATION: Privilege = p(2, 0x80, 0x80, "Receipt Generation");
/// Ciphered Load File Data Block (byte 3 b7).
pub const CIPHERED_LOAD_FILE_DATA_BLOCK: Privilege =
    p(2, 0x40, 0x40, "Ciphered Load File Data Block");
/// Contactless Activation (byte 3 b6).
pub const CONTACTLESS_ACTIVATION: Privilege = p(2, 0x20, 0x20, "Contactless Activation");
/// Contactless Self-Activation (byte 3 b5).
pub const CONTACTLESS_SELF_ACTIVATION: Privilege = p(2, 0x10, 0x10, "Contactless Self-Activation");

/// Every privilege, in GP privilege-number order, for listing what an entry holds.
pub const ALL: [Privilege; 20] = [
    SECURITY_DOMAIN,
    DAP_VERIFICATION,
    DELEGATED_MANAGEMENT,
    CARD_LOCK,
    CARD_TERMINATE,
    CARD_RESET,
    CVM_MANAGEMENT,
    MANDATED_DAP_VERIFICATION,
    TRUSTED_PATH,
    AUTHORIZED_MANAGEMENT,
    TOKEN_MANAGEMENT,
    GLOBAL_DELETE,
    GLOBAL_LOCK,
    GLOBAL_REGISTRY,
    FINAL_APPLICATION,
    GLOBAL_SERVICE,
    RECEIPT_GENERATION,
    CIPHERED_LOAD_FILE_DATA_BLOCK,
    CONTACTLESS_ACTIVATION,
    CONTACTLESS_SELF_ACTIVATION,
];

/// Widens privileges coded on one byte (older INSTALL commands) to three bytes, the other bytes
/// zero; `None` for lengths other than 1 or 3.
pub fn from_slice(bytes: &[u8]) -> Option<[u8; 3]> {
    match bytes {
        [a] => Some([*a, 0, 0]),
        [a, b, c] => Some([*a, *b, *c]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dap_and_mandated_dap_are_distinct() {
        let mut p = [0u8; 3];
        DAP_VERIFICATION.set_in(&mut p);
        assert_eq!(p, [0xC0, 0, 0]);
        assert!(SECURITY_DOMAIN.is_set_in(&p));
        assert!(DAP_VERIFICATION.is_set_in(&p));
        assert!(!MANDATED_DAP_VERIFICATION.is_set_in(&p));
        MANDATED_DAP_VERIFICATION.set_in(&mut p);
        assert_eq!(p, [0xC1, 0, 0]);
        assert!(!DAP_VERIFICATION.is_set_in(&p));
        CIPHERED_LOAD_FILE_DATA_BLOCK.set_in(&mut p);
        assert_eq!(p, [0xC1, 0, 0x40]);
        assert_eq!(from_slice(&[0x80]), Some([0x80, 0, 0]));
        assert_eq!(from_slice(&[1, 2]), None);
    }
}
