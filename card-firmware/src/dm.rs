//! Who may manage card content and how loads are checked (which domains verify DAPs, whether a
//! load must be ciphered, whether its domain still accepts it), and delegated management's tokens
//! and receipts (GP 2.3.1 §9.1, Appendix C.4 and C.5, §11.1.6).
//!
//! Card content management (INSTALL [for load / install / make selectable], LOAD, DELETE) is done
//! by the ISD, by a supplementary security domain with Authorized Management (for its own content,
//! without tokens) or by one with Delegated Management (for its own content, each command carrying
//! a token the card issuer signed). The ISD holds Token Management and Receipt Generation on this
//! card: it verifies tokens with its key KVN `70` (key id 1) and signs receipts with its key KVN
//! `71` (key id 1), counting them in the confirmation counter.

use alloc::vec::Vec;

use gp_core::dap::{self, HashAlg};
use gp_core::keys::{AesKey, Des3Key};
use gp_core::tlv::{write_len, TlvReader};

use crate::aid::{Aid, ISD_AID};
use crate::error::{refuse, Error, Result};
use crate::keys::{Key, KeyType};
use crate::privileges::Privileges;
use crate::state::CardState;
use crate::Sw;

/// Key version number of the ISD's token verification key (key id 1).
pub const TOKEN_KVN: u8 = 0x70;
/// Key version number of the ISD's receipt generation key (key id 1).
pub const RECEIPT_KVN: u8 = 0x71;
/// The confirmation counter stops here; delegated operations are then refused (GP C.5: counters
/// are never reset, and cards need not count beyond 32767).
pub const MAX_CONFIRMATION_COUNTER: u16 = 0x7FFF;

/// In what capacity the selected security domain manages card content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Authority {
    /// The ISD: all content, no tokens.
    Issuer,
    /// An SSD with Authorized Management: its own content, no tokens.
    Authorized,
    /// An SSD with Delegated Management: its own content, a token per command, receipts.
    Delegated,
}

impl Authority {
    /// Whether this authority acts for the card issuer over all content.
    pub fn is_issuer(self) -> bool {
        self == Authority::Issuer
    }
}

/// Security domain `sd`'s card content management authority; `6985` for an SSD with neither
/// Authorized nor Delegated Management.
pub(crate) fn authority(state: &CardState, sd: &Aid) -> Result<Authority> {
    if *sd == ISD_AID {
        return Ok(Authority::Issuer);
    }
    let p = state
        .privileges(sd)
        .ok_or(Error::Refused(Sw::CONDITIONS_NOT_SATISFIED))?;
    if p.has(Privileges::AUTHORIZED_MANAGEMENT) {
        Ok(Authority::Authorized)
    } else if p.has(Privileges::DELEGATED_MANAGEMENT) {
        Ok(Authority::Delegated)
    } else {
        refuse(Sw::CONDITIONS_NOT_SATISFIED)
    }
}

/// The data a token signs (GP C.4): `P1 ‖ P2 ‖ length ‖ data`, where data is the command data
/// field without the token (and, for INSTALL, without the token's length field); the length is
/// one byte up to 255, else three (`00 xx xx`).
pub(crate) fn token_input(p1: u8, p2: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.extend_from_slice(&[p1, p2]);
    match u8::try_from(body.len()) {
        Ok(n) => out.push(n),
        Err(_) => {
            out.push(0x00);
            out.extend_from_slice(&u16::try_from(body.len()).unwrap_or(u16::MAX).to_be_bytes());
        }
    }
    out.extend_from_slice(body);
    out
}

fn isd_key(state: &CardState, kvn: u8) -> Result<&Key> {
    state
        .isd
        .set(kvn)
        .filter(|s| s.kvn == kvn)
        .and_then(|s| s.key(1))
        .ok_or(Error::Refused(Sw::REFERENCED_DATA_NOT_FOUND))
}

/// Verify a token over `input` with the ISD's token key (GP C.4: 3DES retail MAC, AES CMAC,
/// RSA PKCS#1 v1.5 SHA-1 up to 1024 bits and PSS SHA-256 above, ECDSA P-256 SHA-256 `r ‖ s`).
/// No key: `6A88`; missing or wrong token: `6982`.
pub(crate) fn verify_token(state: &CardState, input: &[u8], token: &[u8]) -> Result<()> {
    let key = isd_key(state, TOKEN_KVN)?;
    if token.is_empty() {
        return refuse(Sw::SECURITY_STATUS_NOT_SATISFIED);
    }
    let bad = |_| Error::Refused(Sw::SECURITY_STATUS_NOT_SATISFIED);
    match key.key_type {
        KeyType::Des3 => {
            let k = Des3Key::from_slice(key.value()).map_err(|_| bad(()))?;
            dap::verify_dap_des3(&k, input, token).map_err(|_| bad(()))
        }
        KeyType::Aes => {
            let k = AesKey::from_slice(key.value()).map_err(|_| bad(()))?;
            dap::verify_dap_aes(&k, input, token).map_err(|_| bad(()))
        }
        KeyType::RsaPublic => {
            let (n, e) = key.rsa_parts().ok_or_else(|| bad(()))?;
            crate::signatures::verify_rsa(n, e, HashAlg::Sha256, input, token).map_err(|_| bad(()))
        }
        KeyType::EcP256Public => {
            crate::signatures::verify_ecdsa(key.value(), input, token).map_err(|_| bad(()))
        }
    }
}

/// The token identifier (`B6 { 93 }`) in a parameters field or DELETE data, if any.
pub(crate) fn token_identifier(tlvs: &[u8]) -> Option<Vec<u8>> {
    for t in TlvReader::new(tlvs) {
        let t = t.ok()?;
        if t.tag == 0xB6 {
            for inner in t.children() {
                let inner = inner.ok()?;
                if inner.tag == 0x93 {
                    return Some(inner.value.to_vec());
                }
            }
        }
    }
    None
}

/// Append `aid` with a one-byte length.
pub(crate) fn push_aid(out: &mut Vec<u8>, aid: &Aid) {
    out.push(u8::try_from(aid.as_bytes().len()).unwrap_or(0));
    out.extend_from_slice(aid.as_bytes());
}

/// A receipt and its confirmation (GP 2.3.1 Table 11-13): the ISD increments its confirmation
/// counter, builds the confirmation data (counter, the ISD's unique data, the token identifier
/// when the token carried one) and signs it followed by `fields` (what C.5 lists for the
/// operation) with its receipt key: 3DES retail MAC or AES CMAC. Returns the response data field
/// `L ‖ len(receipt) ‖ receipt ‖ confirmation data`. No receipt key: `6A88`; counter at its
/// maximum: `6985`.
pub(crate) fn confirmation(
    state: &mut CardState,
    token_id: Option<&[u8]>,
    fields: &[u8],
) -> Result<Vec<u8>> {
    if state.confirmation_counter >= MAX_CONFIRMATION_COUNTER {
        return refuse(Sw::CONDITIONS_NOT_SATISFIED);
    }
    let counter = state.confirmation_counter.saturating_add(1);
    let mut data = alloc::vec![0x02];
    data.extend_from_slice(&counter.to_be_bytes());
    // Security domain unique data: the ISD's IIN ‖ CIN (§11.1.6); the KDD stands in while the
    // card has neither.
    let mut unique = state.iin.clone();
    unique.extend_from_slice(&state.cin);
    if unique.is_empty() {
        unique = state.kdd.to_vec();
    }
    data.push(u8::try_from(unique.len()).unwrap_or(0));
    data.extend_from_slice(&unique);
    if let Some(id) = token_id {
        let n = u8::try_from(id.len()).map_err(|_| Error::Refused(Sw::INCORRECT_DATA))?;
        data.push(n);
        data.extend_from_slice(id);
    }
    let mut signed = data.clone();
    signed.extend_from_slice(fields);
    let key = isd_key(state, RECEIPT_KVN)?;
    let receipt: Vec<u8> = match key.key_type {
        KeyType::Des3 => {
            let k = Des3Key::from_slice(key.value())
                .map_err(|_| Error::Refused(Sw::REFERENCED_DATA_NOT_FOUND))?;
            dap::retail_mac(&k, &signed).to_vec()
        }
        KeyType::Aes => {
            let k = AesKey::from_slice(key.value())
                .map_err(|_| Error::Refused(Sw::REFERENCED_DATA_NOT_FOUND))?;
            dap::dap_aes(&k, &signed).to_vec()
        }
        // A public key cannot sign: as if there were no receipt key.
        KeyType::RsaPublic | KeyType::EcP256Public => return refuse(Sw::REFERENCED_DATA_NOT_FOUND),
    };
    state.confirmation_counter = counter;
    let mut conf = Vec::with_capacity(receipt.len() + data.len() + 2);
    write_len(&mut conf, receipt.len());
    conf.extend_from_slice(&receipt);
    conf.extend_from_slice(&data);
    let mut out = Vec::with_capacity(conf.len() + 2);
    write_len(&mut out, conf.len());
    out.extend_from_slice(&conf);
    Ok(out)
}

/// Security domains whose DAP must verify before a load associated with `sd` completes: `sd`
/// itself when it has DAP Verification (or Mandated DAP Verification), and every SD with
/// Mandated DAP Verification (GP 2.3.1 §9.2.1, C.3).
pub(crate) fn dap_authorities(state: &CardState, sd: &Aid) -> Vec<Aid> {
    let mut out = Vec::new();
    for app in &state.registry.applications {
        if app.domain.is_none() {
            continue;
        }
        let p = app.privileges;
        let dap = p.has(Privileges::DAP_VERIFICATION);
        let mandated = p.has(Privileges::MANDATED_DAP_VERIFICATION);
        if mandated || (dap && app.aid == *sd) {
            out.push(app.aid);
        }
    }
    out
}

/// Refuse unless `sd` is the ISD or a registered, unlocked security domain (`6A88` gone, `6985`
/// locked).
pub(crate) fn load_target_accepts(state: &CardState, sd: &Aid) -> Result<()> {
    if *sd == crate::aid::ISD_AID {
        return Ok(());
    }
    let app = state
        .registry
        .application(sd)
        .filter(|a| a.domain.is_some())
        .ok_or(Error::Refused(Sw::REFERENCED_DATA_NOT_FOUND))?;
    if app.life_cycle.is_locked() {
        return refuse(Sw::CONDITIONS_NOT_SATISFIED);
    }
    Ok(())
}

/// Whether loads associated with `sd` must arrive ciphered (GP 2.3.1 §11.6.2.3).
pub(crate) fn ciphered_required(state: &CardState, sd: &Aid) -> bool {
    state
        .privileges(sd)
        .is_some_and(|p| p.has(Privileges::CIPHERED_LOAD_FILE_DATA_BLOCK))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn token_input_lengths() {
        assert_eq!(token_input(0x02, 0x00, &[1, 2]), [0x02, 0x00, 0x02, 1, 2]);
        let long = [7u8; 300];
        let t = token_input(0x0C, 0x00, &long);
        assert_eq!(t[..5], [0x0C, 0x00, 0x00, 0x01, 0x2C]);
        assert_eq!(t.len(), 305);
    }

    #[test]
    fn token_identifier_found_in_b6() {
        let params = [0xC9, 0x00, 0xB6, 0x05, 0x42, 0x01, 0x01, 0x93, 0x00];
        assert_eq!(token_identifier(&params), Some(Vec::new()));
        let params = [0xB6, 0x04, 0x93, 0x02, 0xAB, 0xCD];
        assert_eq!(token_identifier(&params), Some(alloc::vec![0xAB, 0xCD]));
        assert_eq!(token_identifier(&[0xC9, 0x00]), None);
    }
}
