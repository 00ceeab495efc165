//! The application API: what an application on this card may ask of its security domain.
//!
//! As in trussed, an application names keys by handle ([`KeyHandle`]: key version and id in its
//! associated security domain) and asks the domain to use them; it never receives key bytes. The
//! domain decrypts personalisation data with its data encryption key, verifies and computes MACs,
//! and forwards a request to lock the card, which the card honours only for an application with
//! the Card Lock privilege. Applications keep their persistent data in their registry entry; it is
//! committed with the command like everything else.

use alloc::vec::Vec;

use gp_core::apdu::{CommandApdu, ResponseApdu};
use gp_core::keys::{AesKey, Des3Key};
use gp_core::scp03::Prf;
use zeroize::Zeroizing;

use crate::aid::Aid;
use crate::error::{refuse, Error, Result};
use crate::keys::{Dek, KeyType};
use crate::lifecycle::CardLifeCycle;
use crate::privileges::Privileges;
use crate::state::CardState;
use crate::Sw;

/// A key of the application's security domain, by key version number and key identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyHandle {
    /// Key version number.
    pub kvn: u8,
    /// Key identifier.
    pub id: u8,
}

/// Services of the security domain an application is associated with (the ISD by default).
pub trait DomainServices {
    /// Decrypt data the provider encrypted for this application under the domain's data
    /// encryption key of the current secure channel (GP STORE DATA with P1 b7b6 = `11`).
    fn decrypt(&mut self, data: &[u8]) -> Result<Zeroizing<Vec<u8>>>;
    /// Check an 8-byte MAC over `data` with a domain key: AES-CMAC (first 8 bytes) for AES keys,
    /// ISO 9797-1 algorithm 3 for 3DES keys. Constant time; `6982` when it does not verify.
    fn verify_mac(&mut self, key: KeyHandle, data: &[u8], mac: &[u8]) -> Result<()>;
    /// Compute the same 8-byte MAC, e.g. for a transaction certificate.
    fn mac(&mut self, key: KeyHandle, data: &[u8]) -> Result<[u8; 8]>;
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

/// The card's implementation of [`DomainServices`] for one command: works on the next state.
pub(crate) struct Services<'a> {
    pub state: &'a mut CardState,
    /// The application's security domain.
    pub sd: Aid,
    /// The application.
    pub app: Aid,
    /// The data encryption key of the secure channel the data came through, if any.
    pub dek: Option<Dek>,
}

impl Services<'_> {
    fn key(&self, handle: KeyHandle) -> Result<&crate::keys::Key> {
        self.state
            .domain(&self.sd)
            .and_then(|d| d.sets.iter().find(|s| s.kvn == handle.kvn))
            .and_then(|s| s.key(handle.id))
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

    fn verify_mac(&mut self, key: KeyHandle, data: &[u8], mac: &[u8]) -> Result<()> {
        let expected = self.mac(key, data)?;
        if mac.len() == 8 && bool::from(subtle::ConstantTimeEq::ct_eq(&expected[..], mac)) {
            Ok(())
        } else {
            refuse(Sw::SECURITY_STATUS_NOT_SATISFIED)
        }
    }

    fn mac(&mut self, handle: KeyHandle, data: &[u8]) -> Result<[u8; 8]> {
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
