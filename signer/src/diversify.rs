//! Per-card keys made inside the token from a master key and the card's KDD.
//!
//! The KDD (key diversification data) is what INITIALIZE UPDATE returns; it is unique per card, so one leaked
//! card key reveals no other card. The derivation data comes from `gp_core::diversify` (the one
//! implementation shared with the card's tests); the encryption under the master happens in the token, and
//! the derived keys exist only as session objects.

use crate::error::Error;
use gp_core::diversify::{derivation_data, KeyRole, Scheme};
use keyman::hsm::{DerivedKey, KeyHandle, SecretKeyType, TokenSession, Usage};

/// What the derived key set will be used for, which decides attributes and types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Open a secure channel with the card's current keys (static keys inside the token only).
    Channel,
    /// Send the keys to a card in a PUT KEY, wrapped under the card's current DEK.
    PutKey,
}

/// A card's ENC, MAC and DEK keys, derived in the token.
pub struct CardKeys<'s, 'h> {
    /// Key for the secure channel's encryption keys and the card challenge.
    pub enc: DerivedKey<'s, 'h>,
    /// Key for the secure channel's MAC keys and cryptograms.
    pub mac: DerivedKey<'s, 'h>,
    /// Key-encryption key for PUT KEY and sensitive data.
    pub dek: DerivedKey<'s, 'h>,
}

/// Derives ENC, MAC and DEK for the card with this KDD. SCP03 keys (`out` AES-128) take the 16 bytes the
/// 3DES scheme produces as an AES key, as off-card tools do for `emv`/`visa2` with SCP03.
pub fn derive_card_keys<'s, 'h>(
    session: &'s TokenSession<'h>,
    master: KeyHandle,
    scheme: Scheme,
    kdd: &[u8; 10],
    out: SecretKeyType,
    purpose: Purpose,
) -> Result<CardKeys<'s, 'h>, Error> {
    if !matches!(scheme, Scheme::Emv | Scheme::Visa2) {
        return Err(Error::Usage(format!(
            "scheme {scheme} is not available for in-token derivation yet; use emv or visa2"
        )));
    }
    if master.key_type() != Some(SecretKeyType::Des3TwoKey)
        && master.key_type() != Some(SecretKeyType::Des3ThreeKey)
    {
        return Err(Error::Usage(format!(
            "scheme {scheme} needs a triple-DES master key"
        )));
    }
    let one = |role: KeyRole, usages: &[Usage]| {
        let data = derivation_data(scheme, kdd, role)
            .map_err(|e| Error::Usage(format!("{scheme}: {e}")))?;
        session
            .derive_by_encryption(master, &data, out, usages, purpose == Purpose::PutKey)
            .map_err(Error::from)
    };
    let (enc_u, mac_u, dek_u): (&[Usage], &[Usage], &[Usage]) = match purpose {
        // The channel needs CMAC (AES) or encryption (3DES) under ENC and MAC, and wrapping under DEK.
        Purpose::Channel => (
            &[Usage::Sign, Usage::Encrypt],
            &[Usage::Sign, Usage::Encrypt],
            &[Usage::Wrap, Usage::Encrypt],
        ),
        // Keys on their way to a card only need to show their KCV (an encryption) before being wrapped.
        Purpose::PutKey => (&[Usage::Encrypt], &[Usage::Encrypt], &[Usage::Encrypt]),
    };
    Ok(CardKeys {
        enc: one(KeyRole::Enc, enc_u)?,
        mac: one(KeyRole::Mac, mac_u)?,
        dek: one(KeyRole::Dek, dek_u)?,
    })
}
