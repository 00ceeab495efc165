//! The application API: what an application on this card may ask of its security domain.
//!
//! As in trussed, an application names keys by handle ([`KeyHandle`]) and asks its domain to use
//! them; it never receives key bytes. A handle reaches only a key the application was *given*:
//! during personalisation through its associated security domain the application asks the domain
//! to [`bind_key`](DomainServices::bind_key) a key of the domain's application key sets
//! ([`crate::keys::APP_KVNS`]); secure channel, token, receipt, DAP and load file keys are outside
//! that range and unreachable. When the application moves to another domain (extradition, registry
//! update) the keys it was given are dropped: a handle never silently starts naming the new
//! domain's key.
//!
//! Every MAC the domain computes or checks for an application is bound to the application and the
//! card, and separated by purpose: the MAC input is `len(label) ‖ label ‖ len(AID) ‖ AID ‖ KDD ‖
//! data`, where the label is the application's name for the operation. So no MAC one application
//! makes for one operation verifies for another operation, another application or another card,
//! however the data fields line up. The built-in [`purse`](crate::purse) shows the pattern.
//!
//! The domain also decrypts personalisation data with its data encryption key and forwards an
//! authenticated request to lock the card, which the card honours only for an application with
//! the Card Lock privilege. Applications keep their persistent data in their registry entry; it is
//! committed with the command like everything else.

use alloc::vec::Vec;

use gp_core::apdu::{CommandApdu, ResponseApdu};
use gp_core::keys::{AesKey, Des3Key};
use gp_core::scp03::Prf;
use zeroize::Zeroizing;

use crate::aid::Aid;
use crate::error::{refuse, Error, Result};
pub use crate::keys::KeyHandle;
use crate::keys::{Dek, Key, KeyType};
use crate::lifecycle::CardLifeCycle;
use crate::privileges::Privileges;
use crate::state::CardState;
use crate::Sw;

/// Most keys one application may be given.
pub const MAX_APP_KEYS: usize = 4;

/// Services of the security domain an application is associated with (the ISD by default).
pub trait DomainServices {
    /// Decrypt data the provider encrypted for this application under the domain's data
    /// encryption key of the current secure channel (GP STORE DATA with P1 b7b6 = `11`).
    fn decrypt(&mut self, data: &[u8]) -> Result<Zeroizing<Vec<u8>>>;
    /// During personalisation only: take the domain's application key `key` for this
    /// application's use. `6A88` when the domain has no such application key (or it is not one
    /// kept for applications), `6985` outside personalisation, `6A84` over [`MAX_APP_KEYS`].
    fn bind_key(&mut self, key: KeyHandle) -> Result<()>;
    /// Check an 8-byte MAC over `label` and `data` (bound to this application and card, see the
    /// module docs) with a key this application was given: AES-CMAC (first 8 bytes) for AES
    /// keys, ISO 9797-1 algorithm 3 for 3DES keys. Constant time; `6982` when it does not
    /// verify, `6A88` for a key the application was not given.
    fn verify_mac(&mut self, key: KeyHandle, label: &[u8], data: &[u8], mac: &[u8]) -> Result<()>;
    /// Compute the same 8-byte MAC, e.g. for a transaction certificate.
    fn mac(&mut self, key: KeyHandle, label: &[u8], data: &[u8]) -> Result<[u8; 8]>;
    /// Ask the card to move to CARD_LOCKED. Honoured only when the application holds the Card
    /// Lock privilege and the card is SECURED; `6982` otherwise. An application calls it only
    /// for a request it has authenticated (e.g. a MAC under a key it was given): a lock the
    /// first unauthenticated terminal can trigger is a denial of service on the whole card.
    fn request_card_lock(&mut self) -> Result<()>;
}

/// An application the card executes (built into the card: the card has no VM for loaded code).
pub trait Applet {
    /// One STORE DATA block sent through the application's security domain after INSTALL [for
    /// personalization]; `p1` is STORE DATA's P1 (b8 last block, b7b6 encryption, b5b4 format).
    fn personalize(
        &self,
        data: &mut Vec<u8>,
        life_cycle: &mut u8,
        p1: u8,
        block: &[u8],
        services: &mut dyn DomainServices,
    ) -> Result<()>;

    /// A command while the application is selected.
    fn process(
        &self,
        data: &mut Vec<u8>,
        life_cycle: &mut u8,
        cmd: &CommandApdu,
        services: &mut dyn DomainServices,
    ) -> Result<ResponseApdu>;
}

/// The input every application MAC covers: `len(label) ‖ label ‖ len(AID) ‖ AID ‖ KDD ‖ data`
/// (an injective encoding, so distinct labels, applications or cards never collide).
pub fn mac_input(label: &[u8], app: &Aid, kdd: &[u8; 10], data: &[u8]) -> Result<Vec<u8>> {
    let label_len = u8::try_from(label.len()).map_err(|_| Error::Refused(Sw::WRONG_LENGTH))?;
    let aid = app.as_bytes();
    let mut out = Vec::with_capacity(2 + label.len() + aid.len() + kdd.len() + data.len());
    out.push(label_len);
    out.extend_from_slice(label);
    out.push(u8::try_from(aid.len()).unwrap_or(0));
    out.extend_from_slice(aid);
    out.extend_from_slice(kdd);
    out.extend_from_slice(data);
    Ok(out)
}

/// The card's implementation of [`DomainServices`] for one command: works on the next state.
pub(crate) struct Services<'a> {
    pub state: &'a mut CardState,
    /// The application's security domain.
    pub sd: Aid,
    /// The application.
    pub app: Aid,
    /// The data encryption key of the secure channel the data came through, if any.
    pub dek: Option<Dek>,
    /// Whether this is personalisation (STORE DATA through the domain), when keys may be given.
    pub personalising: bool,
}

impl Services<'_> {
    /// The key `handle` names, if the application was given it by its current domain.
    fn key(&self, handle: KeyHandle) -> Result<&Key> {
        let given = self
            .state
            .registry
            .application(&self.app)
            .is_some_and(|a| a.associated_sd == self.sd && a.keys.contains(&handle));
        if !given {
            return refuse(Sw::REFERENCED_DATA_NOT_FOUND);
        }
        self.state
            .domain(&self.sd)
            .and_then(|d| d.app_key(handle))
            .ok_or(Error::Refused(Sw::REFERENCED_DATA_NOT_FOUND))
    }
}

impl DomainServices for Services<'_> {
    fn decrypt(&mut self, data: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        match &self.dek {
            Some(dek) => dek.decrypt(data),
            None => refuse(Sw::SECURITY_STATUS_NOT_SATISFIED),
        }
    }

    fn bind_key(&mut self, handle: KeyHandle) -> Result<()> {
        if !self.personalising {
            return refuse(Sw::CONDITIONS_NOT_SATISFIED);
        }
        let exists = self
            .state
            .domain(&self.sd)
            .is_some_and(|d| d.app_key(handle).is_some());
        if !exists {
            return refuse(Sw::REFERENCED_DATA_NOT_FOUND);
        }
        let sd = self.sd;
        let app = self
            .state
            .registry
            .application_mut(&self.app)
            .filter(|a| a.associated_sd == sd)
            .ok_or(Error::Refused(Sw::CONDITIONS_NOT_SATISFIED))?;
        if app.keys.contains(&handle) {
            return Ok(());
        }
        if app.keys.len() >= MAX_APP_KEYS {
            return refuse(Sw::NOT_ENOUGH_MEMORY);
        }
        app.keys.push(handle);
        Ok(())
    }

    fn verify_mac(&mut self, key: KeyHandle, label: &[u8], data: &[u8], mac: &[u8]) -> Result<()> {
        let expected = self.mac(key, label, data)?;
        if mac.len() == 8 && bool::from(subtle::ConstantTimeEq::ct_eq(&expected[..], mac)) {
            Ok(())
        } else {
            refuse(Sw::SECURITY_STATUS_NOT_SATISFIED)
        }
    }

    fn mac(&mut self, handle: KeyHandle, label: &[u8], data: &[u8]) -> Result<[u8; 8]> {
        let input = mac_input(label, &self.app, &self.state.kdd, data)?;
        let data = input.as_slice();
        let key = self.key(handle)?;
        let full: Vec<u8> = match key.key_type {
            KeyType::Aes => {
                let mut k = AesKey::from_slice(key.value())
                    .map_err(|_| Error::Refused(Sw::REFERENCED_DATA_NOT_FOUND))?;
                match k.cmac(data) {
                    Ok(m) => m.to_vec(),
                    Err(never) => match never {},
                }
            }
            KeyType::Des3 => {
                let k = Des3Key::from_slice(key.value())
                    .map_err(|_| Error::Refused(Sw::REFERENCED_DATA_NOT_FOUND))?;
                gp_core::dap::retail_mac(&k, data).to_vec()
            }
            KeyType::RsaPublic | KeyType::EcP256Public => {
                return refuse(Sw::CONDITIONS_NOT_SATISFIED)
            }
        };
        let mut out = [0u8; 8];
        for (o, f) in out.iter_mut().zip(full.iter()) {
            *o = *f;
        }
        Ok(out)
    }

    fn request_card_lock(&mut self) -> Result<()> {
        let allowed = self
            .state
            .privileges(&self.app)
            .is_some_and(|p| p.has(Privileges::CARD_LOCK));
        if !allowed || self.state.life_cycle != CardLifeCycle::Secured {
            return refuse(Sw::SECURITY_STATUS_NOT_SATISFIED);
        }
        self.state.life_cycle = self
            .state
            .life_cycle
            .transition(CardLifeCycle::CardLocked)?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn mac_input_separates_labels_applications_and_cards() {
        let app = Aid::new(&[0xF0, 1, 2, 3, 4]).unwrap();
        let other_app = Aid::new(&[0xF0, 1, 2, 3, 5]).unwrap();
        let kdd = [1u8; 10];
        let base = mac_input(b"credit", &app, &kdd, &[9, 9]).unwrap();
        assert_eq!(base[..7], [6, b'c', b'r', b'e', b'd', b'i', b't']);
        assert_eq!(base[7..13], [5, 0xF0, 1, 2, 3, 4]);
        assert_eq!(base[13..23], kdd);
        assert_eq!(base[23..], [9, 9]);
        // A label that swallows the start of the data, another application, another card.
        assert_ne!(
            base,
            mac_input(b"credi", &app, &kdd, &[b't', 9, 9]).unwrap()
        );
        assert_ne!(
            base,
            mac_input(b"credit", &other_app, &kdd, &[9, 9]).unwrap()
        );
        assert_ne!(base, mac_input(b"credit", &app, &[2; 10], &[9, 9]).unwrap());
        assert!(mac_input(&[0; 256], &app, &kdd, &[]).is_err());
    }
}
