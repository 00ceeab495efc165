//! Life cycles as GP 2.3.1 §5 and §11.1.1 define them.
//!
//! The card life cycle is a closed enum with one transition function, so a forbidden transition
//! cannot be written anywhere else. Applications and security domains keep GP's bit-coded byte
//! (applications own bits b4..b7) in [`AppLifeCycle`], with the LOCKED bit and the remembered
//! previous state handled here.

use crate::error::{refuse, Error, Result};
use crate::Sw;

/// The card life cycle state (inherited by the ISD).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CardLifeCycle {
    /// `01`: fresh from the fab; the ISD holds the initial key.
    OpReady,
    /// `07`: administrative production state.
    Initialized,
    /// `0F`: issued; the intended post-issuance state.
    Secured,
    /// `7F`: only the issuer may audit; no card content changes.
    CardLocked,
    /// `FF`: end of life.
    Terminated,
}

impl CardLifeCycle {
    /// The GP coding of the state.
    pub fn code(self) -> u8 {
        match self {
            CardLifeCycle::OpReady => 0x01,
            CardLifeCycle::Initialized => 0x07,
            CardLifeCycle::Secured => 0x0F,
            CardLifeCycle::CardLocked => 0x7F,
            CardLifeCycle::Terminated => 0xFF,
        }
    }

    /// Parse a GP coding; anything else is not a card life cycle state.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0x01 => Some(CardLifeCycle::OpReady),
            0x07 => Some(CardLifeCycle::Initialized),
            0x0F => Some(CardLifeCycle::Secured),
            0x7F => Some(CardLifeCycle::CardLocked),
            0xFF => Some(CardLifeCycle::Terminated),
            _ => None,
        }
    }

    /// GP's name of the state.
    pub fn name(self) -> &'static str {
        match self {
            CardLifeCycle::OpReady => "OP_READY",
            CardLifeCycle::Initialized => "INITIALIZED",
            CardLifeCycle::Secured => "SECURED",
            CardLifeCycle::CardLocked => "CARD_LOCKED",
            CardLifeCycle::Terminated => "TERMINATED",
        }
    }

    /// The state after SET STATUS asks for `to` (GP Figure 5-1): forward only
    /// (OP_READY → INITIALIZED → SECURED, states may be skipped), SECURED ↔ CARD_LOCKED, and
    /// TERMINATED from anywhere. A request for the current state or any other move is refused
    /// with `6A80` (incorrect values), as Table 11-87 lists.
    pub fn transition(self, to: CardLifeCycle) -> Result<CardLifeCycle> {
        use CardLifeCycle::*;
        let allowed = matches!(
            (self, to),
            (OpReady, Initialized)
                | (OpReady, Secured)
                | (Initialized, Secured)
                | (Secured, CardLocked)
                | (CardLocked, Secured)
                | (OpReady | Initialized | Secured | CardLocked, Terminated)
        );
        if allowed {
            Ok(to)
        } else {
            refuse(Sw::INCORRECT_DATA)
        }
    }

    /// Card content (load, install, delete, keys) may change only before locking.
    pub fn allows_content_change(self) -> bool {
        matches!(
            self,
            CardLifeCycle::OpReady | CardLifeCycle::Initialized | CardLifeCycle::Secured
        )
    }
}

/// An application or security domain life cycle byte (GP Tables 11-4 and 11-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppLifeCycle(u8);

impl AppLifeCycle {
    /// `03` INSTALLED.
    pub const INSTALLED: AppLifeCycle = AppLifeCycle(0x03);
    /// `07` SELECTABLE.
    pub const SELECTABLE: AppLifeCycle = AppLifeCycle(0x07);
    /// `0F` PERSONALIZED (security domains).
    pub const PERSONALIZED: AppLifeCycle = AppLifeCycle(0x0F);
    const LOCKED_BIT: u8 = 0x80;

    /// Parse a stored or received byte: b1 and b2 must be set (every defined state has them).
    pub fn from_code(code: u8) -> Result<Self> {
        if code & 0x03 == 0x03 {
            Ok(AppLifeCycle(code))
        } else {
            Err(Error::Corrupt("bad application life cycle"))
        }
    }

    /// The GP coding.
    pub fn code(self) -> u8 {
        self.0
    }

    /// LOCKED (b8 set): not selectable.
    pub fn is_locked(self) -> bool {
        self.0 & Self::LOCKED_BIT != 0
    }

    /// SELECTABLE or beyond, and not locked.
    pub fn is_selectable(self) -> bool {
        !self.is_locked() && self.0 & 0x07 == 0x07
    }

    /// Lock, keeping the previous state in the low bits so unlocking restores exactly it.
    pub fn lock(self) -> Result<Self> {
        if self.is_locked() {
            return refuse(Sw::INCORRECT_DATA);
        }
        Ok(AppLifeCycle(self.0 | Self::LOCKED_BIT))
    }

    /// Unlock back to the remembered previous state.
    pub fn unlock(self) -> Result<Self> {
        if !self.is_locked() {
            return refuse(Sw::INCORRECT_DATA);
        }
        Ok(AppLifeCycle(self.0 & !Self::LOCKED_BIT))
    }

    /// INSTALLED → SELECTABLE (irreversible); refused when not INSTALLED.
    pub fn make_selectable(self) -> Result<Self> {
        if self == Self::INSTALLED {
            Ok(Self::SELECTABLE)
        } else {
            refuse(Sw::CONDITIONS_NOT_SATISFIED)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use CardLifeCycle::*;

    #[test]
    fn card_transitions() {
        let all = [OpReady, Initialized, Secured, CardLocked, Terminated];
        for from in all {
            for to in all {
                let ok = from.transition(to).is_ok();
                let expected = matches!(
                    (from, to),
                    (OpReady, Initialized)
                        | (OpReady, Secured)
                        | (Initialized, Secured)
                        | (Secured, CardLocked)
                        | (CardLocked, Secured)
                ) || (to == Terminated && from != Terminated);
                assert_eq!(ok, expected, "{from:?} -> {to:?}");
            }
        }
        for code in 0..=255u8 {
            if let Some(s) = CardLifeCycle::from_code(code) {
                assert_eq!(s.code(), code);
            }
        }
    }

    #[test]
    fn app_lock_unlock_restores() {
        let s = AppLifeCycle::from_code(0x0F).unwrap();
        let l = s.lock().unwrap();
        assert!(l.is_locked() && !l.is_selectable());
        assert_eq!(l.unlock().unwrap(), s);
        assert!(s.unlock().is_err());
        assert!(l.lock().is_err());
    }
}
