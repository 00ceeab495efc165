//! GP privileges (GP 2.3.1 §11.1.2): three bytes, bit-coded.
//!
//! Kept as the wire bytes with named queries, so GET STATUS can echo them unchanged and checks
//! read as the privilege names GP uses.

use crate::codec::{Persist, Reader, Writer};
use crate::error::Result;

/// The three privilege bytes of a registry entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Privileges(pub [u8; 3]);

impl Privileges {
    /// Security Domain (byte 1 b8).
    pub const SECURITY_DOMAIN: u32 = 0x80_0000;
    /// DAP Verification (byte 1 b8 b7).
    pub const DAP_VERIFICATION: u32 = 0xC0_0000;
    /// Delegated Management (byte 1 b8 b6).
    pub const DELEGATED_MANAGEMENT: u32 = 0xA0_0000;
    /// Card Lock (byte 1 b5).
    pub const CARD_LOCK: u32 = 0x10_0000;
    /// Card Terminate (byte 1 b4).
    pub const CARD_TERMINATE: u32 = 0x08_0000;
    /// Card Reset (byte 1 b3).
    pub const CARD_RESET: u32 = 0x04_0000;
    /// CVM Management (byte 1 b2).
    pub const CVM_MANAGEMENT: u32 = 0x02_0000;
    /// Mandated DAP Verification (byte 1 b8 b7 b1).
    pub const MANDATED_DAP_VERIFICATION: u32 = 0xC1_0000;
    /// Trusted Path (byte 2 b8).
    pub const TRUSTED_PATH: u32 = 0x00_8000;
    /// Authorized Management (byte 2 b7).
    pub const AUTHORIZED_MANAGEMENT: u32 = 0x00_4000;
    /// Token Management (byte 2 b6).
    pub const TOKEN_MANAGEMENT: u32 = 0x00_2000;
    /// Global Delete (byte 2 b5).
    pub const GLOBAL_DELETE: u32 = 0x00_1000;
    /// Global Lock (byte 2 b4).
    pub const GLOBAL_LOCK: u32 = 0x00_0800;
    /// Global Registry (byte 2 b3).
    pub const GLOBAL_REGISTRY: u32 = 0x00_0400;
    /// Final Application (byte 2 b2).
    pub const FINAL_APPLICATION: u32 = 0x00_0200;
    /// Global Service (byte 2 b1).
    pub const GLOBAL_SERVICE: u32 = 0x00_0100;
    /// Receipt Generation (byte 3 b8).
    pub const RECEIPT_GENERATION: u32 = 0x00_0080;
    /// Ciphered Load File Data Block (byte 3 b7).
    pub const CIPHERED_LOAD_FILE_DATA_BLOCK: u32 = 0x00_0040;

    /// What the ISD of this card holds: SD, Card Lock, Card Terminate, Card Reset, CVM
    /// Management, Trusted Path, Authorized Management, Token Management, Global Delete, Global
    /// Lock, Global Registry, Final Application, Global Service, Receipt Generation.
    pub const ISD: Privileges = Privileges([0x9E, 0xFE, 0x80]);

    /// Privileges a supplementary security domain may be given on this card: Security Domain,
    /// DAP Verification, Delegated Management, Card Lock, Card Terminate, Mandated DAP
    /// Verification; Authorized Management; Ciphered Load File Data Block. (Token Management and
    /// Receipt Generation stay with the ISD.)
    pub const SSD_GRANTABLE: Privileges = Privileges([0xF9, 0x40, 0x40]);
    /// Privileges an application may be given on this card: Card Lock, Card Terminate, Card
    /// Reset, CVM Management.
    pub const APP_GRANTABLE: Privileges = Privileges([0x1E, 0x00, 0x00]);

    /// Privileges that act on the whole card or on other parties' content, which only the card
    /// issuer grants (the ISD, or an issuer token under Delegated Management): Card Lock, Card
    /// Terminate, Card Reset, CVM Management, Mandated DAP Verification (byte 1 b5..b1);
    /// Authorized Management, Token Verification, Global Delete, Global Lock, Global Registry,
    /// Final Application (byte 2 b7..b2); Receipt Generation (byte 3 b8).
    pub const CARD_WIDE: Privileges = Privileges([0x1F, 0x7E, 0x80]);

    /// Whether any privilege bit set here is also set in `other`.
    pub fn intersects(self, other: Privileges) -> bool {
        self.0.iter().zip(other.0.iter()).any(|(p, o)| p & o != 0)
    }

    /// Whether every privilege bit set here is also set in `allowed`.
    pub fn within(self, allowed: Privileges) -> bool {
        self.0
            .iter()
            .zip(allowed.0.iter())
            .all(|(p, a)| p & !a == 0)
    }

    /// Parse the 1- or 3-byte coding INSTALL uses (one byte means bytes 2 and 3 are zero).
    pub fn from_install(bytes: &[u8]) -> Option<Privileges> {
        match bytes {
            [a] => Some(Privileges([*a, 0, 0])),
            [a, b, c] => Some(Privileges([*a, *b, *c])),
            _ => None,
        }
    }

    fn bits(self) -> u32 {
        let [a, b, c] = self.0;
        u32::from_be_bytes([0, a, b, c])
    }

    /// Whether all bits of `privilege` (one of the constants) are set.
    pub fn has(self, privilege: u32) -> bool {
        self.bits() & privilege == privilege
    }
}

impl Persist for Privileges {
    fn encode(&self, w: &mut Writer) {
        w.raw(&self.0);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        Ok(Privileges(r.array()?))
    }
}
