//! Per-card keys made inside the token from a master key and the card's KDD.
//!
//! The KDD (key diversification data) is what INITIALIZE UPDATE returns; it is unique per card, so one leaked
//! card key reveals no other card. The derivation data comes from `gp_core::diversify` (the one
//! implementation shared with the card's tests); the encryption under the master happens in the token, and
//! the derived keys exist only as session objects.
//!
//! Schemes: `emv` and `visa2` (3DES master, `CKM_DES3_ECB_ENCRYPT_DATA`), `aes` (AES master,
//! `CKM_AES_ECB_ENCRYPT_DATA` over [`gp_core::diversify::aes_derivation_data`]), `kdf3` (AES master,
//! `CKM_SP800_108_COUNTER_KDF` with AES-CMAC over `i ‖ 00 00 00 ‖ kk ‖ 00 ‖ KDD`). Each needs its mechanism
//! in the token, found by the capability probe; where it is missing (SoftHSM2 has no SP 800-108 KDF, NSS's
//! key database token lists no `*_ECB_ENCRYPT_DATA`) derivation stops with the probe's refusal and no key is
//! ever exported to compute it outside.

use crate::error::Error;
use gp_core::diversify::{aes_derivation_data, derivation_data, KeyRole, Scheme};
use keyman::hsm::capabilities::Feature;
use keyman::hsm::signing::DesHalf;
use keyman::hsm::{DerivedKey, KeyHandle, SecretKeyType, TokenSession, Usage};

/// The `kk` byte used to derive a per-card DAP key: `73`, the key version number GP reserves for DAP
/// verification. It differs from ENC/MAC/DEK (`01`–`03`), so a DAP key is never equal to a channel key of
/// the same card even if one master served both.
pub const DAP_KK: u8 = 0x73;

/// What the derived key set will be used for, which decides attributes and types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Open a secure channel with the card's current keys (static keys inside the token only).
    Channel,
    /// Send the keys to a card in a PUT KEY, wrapped under the card's current DEK.
    PutKey,
    /// Only show the keys' check values (`signer keys derive`): encrypt usage, never extractable.
    Check,
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
    check_master(session, master, scheme, out)?;
    let one = |role: KeyRole, usages: &[Usage]| {
        derive_kk(
            session,
            master,
            scheme,
            kdd,
            role as u8,
            out,
            usages,
            purpose == Purpose::PutKey,
        )
    };
    let (enc_u, mac_u, dek_u): (&[Usage], &[Usage], &[Usage]) = match purpose {
        // The channel needs CMAC (AES) or encryption (3DES) under ENC and MAC, and wrapping under DEK;
        // derive lets a token with SP 800-108 make the SCP03 session keys as token objects.
        Purpose::Channel => (
            &[Usage::Sign, Usage::Encrypt, Usage::Derive],
            &[Usage::Sign, Usage::Encrypt, Usage::Derive],
            &[Usage::Wrap, Usage::Encrypt],
        ),
        // Keys on their way to a card only need to show their KCV (an encryption) before being wrapped.
        Purpose::PutKey | Purpose::Check => {
            (&[Usage::Encrypt], &[Usage::Encrypt], &[Usage::Encrypt])
        }
    };
    Ok(CardKeys {
        enc: one(KeyRole::Enc, enc_u)?,
        mac: one(KeyRole::Mac, mac_u)?,
        dek: one(KeyRole::Dek, dek_u)?,
    })
}

/// Derives one key of a card's key set (role `role`) in the token, as a session object with `usages`,
/// extractable (wrapped only) when `wrap_out` is set. Used where only one key is needed, such as the
/// current DEK under which a batch wraps new keys.
#[allow(clippy::too_many_arguments)]
pub fn derive_one<'s, 'h>(
    session: &'s TokenSession<'h>,
    master: KeyHandle,
    scheme: Scheme,
    kdd: &[u8; 10],
    role: KeyRole,
    out: SecretKeyType,
    usages: &[Usage],
    wrap_out: bool,
) -> Result<DerivedKey<'s, 'h>, Error> {
    check_master(session, master, scheme, out)?;
    derive_kk(
        session, master, scheme, kdd, role as u8, out, usages, wrap_out,
    )
}

/// The `kdf3` PRF input after the counter byte for role byte `kk`: `00 00 00 ‖ kk ‖ 00 ‖ KDD`.
fn kdf3_fixed(kdd: &[u8; 10], kk: u8) -> Vec<u8> {
    let mut v = vec![0, 0, 0, kk, 0];
    v.extend_from_slice(kdd);
    v
}

/// Derives the key with role byte `kk` in the token, by the scheme's mechanism: for `kdf3` the SP 800-108
/// KDF with `kk` in its input (its derivation data is a CMAC input the token cannot encrypt), else the
/// encryption of the scheme's derivation data. Also the card domain's receipt key (`kk` = `71`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn derive_kk<'s, 'h>(
    session: &'s TokenSession<'h>,
    master: KeyHandle,
    scheme: Scheme,
    kdd: &[u8; 10],
    kk: u8,
    out: SecretKeyType,
    usages: &[Usage],
    wrap_out: bool,
) -> Result<DerivedKey<'s, 'h>, Error> {
    if scheme == Scheme::Kdf3 {
        return Ok(session.derive_counter_kdf(
            master,
            &[],
            &kdf3_fixed(kdd, kk),
            out,
            usages,
            wrap_out,
        )?);
    }
    let data = scheme_data(scheme, kdd, kk, out)?;
    Ok(session.derive_by_encryption(master, &data, out, usages, wrap_out)?)
}

/// The capability-probe feature that derives keys by `scheme`.
pub fn derivation_feature(scheme: Scheme) -> Feature {
    match scheme {
        Scheme::Emv => Feature::DeriveEmv,
        Scheme::Visa2 => Feature::DeriveVisa2,
        Scheme::Aes => Feature::DeriveAes,
        Scheme::Kdf3 => Feature::DeriveKdf3,
    }
}

/// The mechanisms the token uses to derive keys by `scheme` (from the capability probe), as tools print
/// them: `CKM_… (derive), …`; or the probe's refusal.
pub fn derivation_mechanisms(session: &TokenSession<'_>, scheme: Scheme) -> Result<String, Error> {
    let way = session.way_for(derivation_feature(scheme))?;
    Ok(way
        .needs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", "))
}

/// Checks that `master` fits `scheme` and that the token can derive `out` with it, before any derivation.
pub fn check_master(
    session: &TokenSession<'_>,
    master: KeyHandle,
    scheme: Scheme,
    out: SecretKeyType,
) -> Result<(), Error> {
    let is_des = master.key_type().is_some_and(SecretKeyType::is_des);
    match scheme {
        Scheme::Emv | Scheme::Visa2 => {
            session.way_for(derivation_feature(scheme))?;
            if !is_des {
                return Err(Error::Usage(format!(
                    "scheme {scheme} needs a triple-DES master key (the master is {})",
                    master
                        .key_type()
                        .map_or("of unknown type", SecretKeyType::name)
                )));
            }
            if out.byte_len() != 16 {
                return Err(Error::Usage(format!(
                    "scheme {scheme} makes 16-byte keys, not {}",
                    out.name()
                )));
            }
            Ok(())
        }
        Scheme::Aes => {
            session.way_for(Feature::DeriveAes)?;
            if is_des || master.key_type().is_none() {
                return Err(Error::Usage(format!(
                    "scheme aes needs an AES master key (the master is {})",
                    master
                        .key_type()
                        .map_or("of unknown type", SecretKeyType::name)
                )));
            }
            if out.is_des() {
                return Err(Error::Usage("scheme aes makes AES keys".into()));
            }
            Ok(())
        }
        Scheme::Kdf3 => {
            if is_des || master.key_type().is_none() {
                return Err(Error::Usage(format!(
                    "scheme kdf3 needs an AES master key (the master is {})",
                    master
                        .key_type()
                        .map_or("of unknown type", SecretKeyType::name)
                )));
            }
            if out.is_des() {
                return Err(Error::Usage("scheme kdf3 makes AES keys".into()));
            }
            session.way_for(Feature::DeriveKdf3)?;
            Ok(())
        }
    }
}

/// The derivation data the token encrypts under the master for one key of `scheme` with role byte `kk`.
fn scheme_data(
    scheme: Scheme,
    kdd: &[u8; 10],
    kk: u8,
    out: SecretKeyType,
) -> Result<Vec<u8>, Error> {
    let role = match kk {
        1 => Some(KeyRole::Enc),
        2 => Some(KeyRole::Mac),
        3 => Some(KeyRole::Dek),
        _ => None,
    };
    match (scheme, role) {
        (Scheme::Emv | Scheme::Visa2, Some(role)) => derivation_data(scheme, kdd, role)
            .map(|d| d.to_vec())
            .map_err(|e| Error::Usage(format!("{scheme}: {e}"))),
        (Scheme::Emv | Scheme::Visa2, None) => {
            // Same layout as the scheme's, with the DAP role byte in place of kk.
            let mut d = derivation_data(scheme, kdd, KeyRole::Enc)
                .map_err(|e| Error::Usage(format!("{scheme}: {e}")))?;
            for at in [7, 15] {
                if let Some(b) = d.get_mut(at) {
                    *b = kk;
                }
            }
            Ok(d.to_vec())
        }
        (Scheme::Aes, Some(role)) => aes_derivation_data(kdd, role, out.byte_len())
            .map_err(|e| Error::Usage(format!("aes: {e}"))),
        (Scheme::Aes, None) => {
            let mut d = aes_derivation_data(kdd, KeyRole::Enc, out.byte_len())
                .map_err(|e| Error::Usage(format!("aes: {e}")))?;
            for block in d.chunks_exact_mut(16) {
                if let Some(b) = block.get_mut(10) {
                    *b = kk;
                }
            }
            Ok(d)
        }
        (Scheme::Kdf3, _) => Err(Error::Usage(
            "kdf3 derivation data is a CMAC input; the token cannot use it".into(),
        )),
    }
}

/// The derivation data of a card's DAP key under `scheme` (the scheme's layout with `kk` = [`DAP_KK`]).
/// Public so that the card side and tests can derive the same key in software.
pub fn dap_derivation_data(
    scheme: Scheme,
    kdd: &[u8; 10],
    out: SecretKeyType,
) -> Result<Vec<u8>, Error> {
    scheme_data(scheme, kdd, DAP_KK, out)
}

/// A card's DAP key, derived in the token: AES (signs by CMAC) or the two single-DES halves of a 3DES key
/// (signs by retail MAC, which PKCS#11 has no one mechanism for).
pub enum CardDapKey<'s, 'h> {
    /// AES key with the sign usage.
    Aes(DerivedKey<'s, 'h>),
    /// K1 and K2 of a two-key 3DES key.
    Des(DesHalf<'s, 'h>, DesHalf<'s, 'h>),
}

/// Derives the DAP key of the card with this KDD from the DAP master: `aes` gives an AES key of the
/// master's length; `emv`/`visa2` give an AES-128 key when `aes_out` is set (3DES master, SCP03-era
/// cards), else a two-key 3DES key as its two halves.
pub fn derive_dap_key<'s, 'h>(
    session: &'s TokenSession<'h>,
    master: KeyHandle,
    scheme: Scheme,
    kdd: &[u8; 10],
    aes_out: bool,
) -> Result<CardDapKey<'s, 'h>, Error> {
    let out = match (scheme, aes_out) {
        (Scheme::Aes | Scheme::Kdf3, _) => master.key_type().unwrap_or(SecretKeyType::Aes128),
        (_, true) => SecretKeyType::Aes128,
        (_, false) => SecretKeyType::Des3TwoKey,
    };
    check_master(session, master, scheme, out)?;
    if scheme == Scheme::Kdf3 {
        return Ok(CardDapKey::Aes(derive_kk(
            session,
            master,
            scheme,
            kdd,
            DAP_KK,
            out,
            &[Usage::Sign],
            false,
        )?));
    }
    let data = dap_derivation_data(scheme, kdd, out)?;
    if out.is_des() {
        let (a, b) = data.split_at(8);
        let k1: [u8; 8] = a
            .try_into()
            .map_err(|_| Error::Usage("DES derivation data has 16 bytes".into()))?;
        let k2: [u8; 8] = b
            .try_into()
            .map_err(|_| Error::Usage("DES derivation data has 16 bytes".into()))?;
        Ok(CardDapKey::Des(
            session.derive_des_half(master, &k1)?,
            session.derive_des_half(master, &k2)?,
        ))
    } else {
        Ok(CardDapKey::Aes(session.derive_by_encryption(
            master,
            &data,
            out,
            &[Usage::Sign],
            false,
        )?))
    }
}

/// The derivation data of a card key with role byte `kk` under `scheme` (the scheme's layout with `kk`
/// in place of the channel key's): the card domain's receipt key uses `kk` = `71`, the key version GP
/// reserves for receipt generation, so each card signs its receipts with a key of its own.
pub fn role_derivation_data(
    scheme: Scheme,
    kdd: &[u8; 10],
    kk: u8,
    out: SecretKeyType,
) -> Result<Vec<u8>, Error> {
    scheme_data(scheme, kdd, kk, out)
}
