//! Life cycle state codes (GPC 2.3.1 §11.1.1), as stored in the registry and reported by
//! GET STATUS tag `9F70`.

/// Card life cycle: OP_READY.
pub const CARD_OP_READY: u8 = 0x01;
/// Card life cycle: INITIALIZED.
pub const CARD_INITIALIZED: u8 = 0x07;
/// Card life cycle: SECURED.
pub const CARD_SECURED: u8 = 0x0F;
/// Card life cycle: CARD_LOCKED (reversible back to SECURED).
pub const CARD_LOCKED: u8 = 0x7F;
/// Card life cycle: TERMINATED (final).
pub const CARD_TERMINATED: u8 = 0xFF;

/// Executable Load File: LOADED.
pub const LOAD_FILE_LOADED: u8 = 0x01;

/// Application: INSTALLED.
pub const APP_INSTALLED: u8 = 0x03;
/// Application: SELECTABLE.
pub const APP_SELECTABLE: u8 = 0x07;
/// Application: LOCKED flag (b8), combined with the state it was locked in.
pub const APP_LOCKED: u8 = 0x80;

/// Security domain: INSTALLED.
pub const SD_INSTALLED: u8 = 0x03;
/// Security domain: SELECTABLE.
pub const SD_SELECTABLE: u8 = 0x07;
/// Security domain: PERSONALIZED.
pub const SD_PERSONALIZED: u8 = 0x0F;
/// Security domain: LOCKED flag (b8).
pub const SD_LOCKED: u8 = 0x80;

/// GP name of a card life cycle state, or `None` for a value GP does not define.
pub fn card_state_name(state: u8) -> Option<&'static str> {
    Some(match state {
        CARD_OP_READY => "OP_READY",
        CARD_INITIALIZED => "INITIALIZED",
        CARD_SECURED => "SECURED",
        CARD_LOCKED => "CARD_LOCKED",
        CARD_TERMINATED => "TERMINATED",
        _ => return None,
    })
}
