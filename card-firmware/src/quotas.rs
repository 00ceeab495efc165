//! Resource quotas: how much of the card one security domain may take.
//!
//! Every domain, even an SSD without any management privilege, can change its own keys, and
//! domains with management privileges add registry entries. Without bounds one domain could fill
//! the card's storage and lock every other party out of it. Each quota is checked on the next
//! state before it is committed; over quota the command answers `6A84` (not enough memory) and
//! changes nothing. The numbers are chosen so that the card with every quota full still fits the
//! `card-sim` image (docs/card-firmware.md, "Quotas", gives the worst-case sizes).

use crate::aid::{Aid, ISD_AID};
use crate::error::{refuse, Result};
use crate::keys::DomainKeys;
use crate::state::CardState;
use crate::Sw;

/// Key sets per domain.
pub const MAX_KEY_SETS: usize = 8;
/// Keys per key set (a secure channel set needs 3).
pub const MAX_KEYS_PER_SET: usize = 4;
/// Bytes of key values per domain, all sets together (eight sets of four AES-256 keys, or an
/// RSA-4096 public key beside a few secret sets). Single keys are bounded by their type: 16 bytes
/// 3DES, 16/24/32 AES, 65 P-256, RSA moduli of 512 to 4096 bits.
pub const MAX_DOMAIN_KEY_BYTES: usize = 1024;
/// Bytes of application install parameters (the `C9` value) per application.
pub const MAX_INSTALL_PARAMS: usize = 64;
/// Registry entries (applications and load files) associated with one supplementary security
/// domain.
pub const MAX_SSD_ENTRIES: usize = 8;
/// Applications and security domains on the card.
pub const MAX_APPLICATIONS: usize = 32;
/// Load files on the card, the built-in ones included.
pub const MAX_LOAD_FILES: usize = 32;
/// Executable modules in one load file.
pub const MAX_MODULES: usize = 8;

/// A domain's keys within their quotas.
pub(crate) fn check_domain_keys(domain: &DomainKeys) -> Result<()> {
    let bytes: usize = domain
        .sets
        .iter()
        .flat_map(|s| s.keys.iter())
        .map(|k| k.len())
        .sum();
    let within = domain.sets.len() <= MAX_KEY_SETS
        && domain.sets.iter().all(|s| s.keys.len() <= MAX_KEYS_PER_SET)
        && bytes <= MAX_DOMAIN_KEY_BYTES;
    if within {
        Ok(())
    } else {
        refuse(Sw::NOT_ENOUGH_MEMORY)
    }
}

/// Room for one more load file associated with `sd` (checked at INSTALL [for load], so a host
/// does not send a load file the card will not keep; [`check_registry`] decides at the end).
pub(crate) fn room_for_load_file(state: &CardState, sd: &Aid) -> Result<()> {
    let reg = &state.registry;
    let full = reg.load_files.len() >= MAX_LOAD_FILES
        || (*sd != ISD_AID && ssd_entries(state, sd) >= MAX_SSD_ENTRIES);
    if full {
        refuse(Sw::NOT_ENOUGH_MEMORY)
    } else {
        Ok(())
    }
}

/// Applications and load files associated with `sd`.
fn ssd_entries(state: &CardState, sd: &Aid) -> usize {
    let reg = &state.registry;
    reg.applications
        .iter()
        .filter(|a| a.associated_sd == *sd)
        .count()
        .saturating_add(
            reg.load_files
                .iter()
                .filter(|f| f.associated_sd == *sd)
                .count(),
        )
}

/// The registry within its quotas: card-wide counts, modules per load file, and the entries of
/// every SSD (the ISD's entries are bounded by the card-wide counts).
pub(crate) fn check_registry(state: &CardState) -> Result<()> {
    let reg = &state.registry;
    let within = reg.applications.len() <= MAX_APPLICATIONS
        && reg.load_files.len() <= MAX_LOAD_FILES
        && reg
            .load_files
            .iter()
            .all(|f| f.modules.len() <= MAX_MODULES)
        && reg
            .applications
            .iter()
            .all(|a| a.install_params.len() <= MAX_INSTALL_PARAMS)
        && reg
            .applications
            .iter()
            .filter(|a| a.domain.is_some() && a.aid != ISD_AID)
            .all(|sd| ssd_entries(state, &sd.aid) <= MAX_SSD_ENTRIES);
    if within {
        Ok(())
    } else {
        refuse(Sw::NOT_ENOUGH_MEMORY)
    }
}
