//! A built-in stored-value purse: the realistic application the card executes, and the worked
//! example of an application using its security domain's services correctly.
//!
//! - **Keys by handle, given by its domain.** Personalisation (INSTALL [for personalization] +
//!   STORE DATA through the associated SD, BER-TLV, optionally encrypted under the SD's DEK with
//!   `80 00…` padding) carries `DF01 04` maximum balance, `DF02 04` initial balance (optional) and
//!   `DF03 02` the handle (KVN in `40`–`4F`, key id) of the SD's application key that
//!   authenticates credits; the purse asks the SD to give it that key
//!   ([`DomainServices::bind_key`]) and never sees its bytes. The last block activates the purse
//!   (life cycle `0F`).
//! - **One label per operation.** Every MAC goes through the SD's service, which binds it to the
//!   purse's AID and the card's KDD; the purse separates its operations by label: [`DEBIT_LABEL`]
//!   for the certificates it issues, [`CREDIT_LABEL`] for the authorisations it accepts. A debit
//!   certificate therefore never verifies as a credit authorisation, and nothing from another
//!   card or application does either.
//! - **Freshness from a counter** committed with the balance: each authorisation covers the
//!   counter it was issued for, so it is accepted once.
//! - **Failures stay local.** Three consecutive bad credit MACs lock the purse (application
//!   LOCKED; its SD unlocks it); a bad MAC is unauthenticated input and never locks the card.
//!
//! Commands (CLA `80`): GET BALANCE `5C` → balance ‖ counter; DEBIT `54` (amount) → new balance ‖
//! counter ‖ 8-byte certificate MAC(`debit`, counter ‖ amount ‖ balance) with the new counter and
//! balance; CREDIT `52` (amount ‖ MAC(`credit`, counter ‖ amount)) with the counter before the
//! credit; all MACs as [`crate::app::mac_input`] frames them.

use alloc::vec::Vec;

use gp_core::apdu::{CommandApdu, ResponseApdu};
use gp_core::tlv::TlvReader;

use crate::app::{Applet, DomainServices, KeyHandle};
use crate::codec::{Reader, Writer};
use crate::error::{refuse, Error, Result};
use crate::Sw;

/// Life cycle of an active (personalised) purse: SELECTABLE plus application-specific b4.
pub const ACTIVE: u8 = 0x0F;
/// Label of the MACs the purse issues for debits (its certificates).
pub const DEBIT_LABEL: &[u8] = b"debit";
/// Label of the MACs the purse accepts as credit authorisations.
pub const CREDIT_LABEL: &[u8] = b"credit";

/// Bad credit MACs tolerated before the purse locks itself.
pub const MAX_FAILED_CREDITS: u8 = 3;

/// The purse's persistent data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Purse {
    balance: u32,
    max_balance: u32,
    counter: u32,
    failed: u8,
    credit_key: Option<KeyHandle>,
}

impl Purse {
    fn load(data: &[u8]) -> Result<Purse> {
        if data.is_empty() {
            return Ok(Purse::default());
        }
        let mut r = Reader::new(data);
        let purse = Purse {
            balance: r.u32()?,
            max_balance: r.u32()?,
            counter: r.u32()?,
            failed: r.u8()?,
            credit_key: if r.bool()? {
                Some(KeyHandle {
                    kvn: r.u8()?,
                    id: r.u8()?,
                })
            } else {
                None
            },
        };
        r.finish()?;
        Ok(purse)
    }

    fn store(&self, data: &mut Vec<u8>) {
        let mut w = Writer::new();
        w.u32(self.balance);
        w.u32(self.max_balance);
        w.u32(self.counter);
        w.u8(self.failed);
        match self.credit_key {
            Some(h) => {
                w.bool(true);
                w.u8(h.kvn);
                w.u8(h.id);
            }
            None => w.bool(false),
        }
        *data = w.finish();
    }
}

fn u32_of(v: &[u8]) -> Result<u32> {
    <[u8; 4]>::try_from(v)
        .map(u32::from_be_bytes)
        .map_err(|_| Error::Refused(Sw::INCORRECT_DATA))
}

/// Remove ISO 9797-1 method 2 padding (`80 00…`).
fn unpad(data: &[u8]) -> Result<&[u8]> {
    let end = data
        .iter()
        .rposition(|b| *b != 0)
        .ok_or(Error::Refused(Sw::INCORRECT_DATA))?;
    match data.get(end) {
        Some(0x80) => data.get(..end).ok_or(Error::Refused(Sw::INCORRECT_DATA)),
        _ => refuse(Sw::INCORRECT_DATA),
    }
}

/// The purse application.
#[derive(Debug, Clone, Copy, Default)]
pub struct PurseApplet;

impl Applet for PurseApplet {
    fn personalize(
        &self,
        data: &mut Vec<u8>,
        life_cycle: &mut u8,
        p1: u8,
        block: &[u8],
        services: &mut dyn DomainServices,
    ) -> Result<()> {
        if *life_cycle == ACTIVE {
            return refuse(Sw::CONDITIONS_NOT_SATISFIED);
        }
        // BER-TLV only (P1 b5b4 = 10).
        if p1 & 0x18 != 0x10 {
            return refuse(Sw::INCORRECT_P1P2);
        }
        let clear;
        let tlvs: &[u8] = match p1 & 0x60 {
            0x00 => block,
            0x60 => {
                clear = services.decrypt(block)?;
                unpad(&clear)?
            }
            _ => return refuse(Sw::INCORRECT_P1P2),
        };
        let mut purse = Purse::load(data)?;
        for t in TlvReader::new(tlvs) {
            let t = t.map_err(|_| Error::Refused(Sw::INCORRECT_DATA))?;
            match t.tag {
                0xDF01 => purse.max_balance = u32_of(t.value)?,
                0xDF02 => purse.balance = u32_of(t.value)?,
                0xDF03 => {
                    let [kvn, id] = <[u8; 2]>::try_from(t.value)
                        .map_err(|_| Error::Refused(Sw::INCORRECT_DATA))?;
                    let handle = KeyHandle { kvn, id };
                    // The SD gives the purse this key, or refuses (not an application key).
                    services.bind_key(handle)?;
                    purse.credit_key = Some(handle);
                }
                _ => return refuse(Sw::INCORRECT_DATA),
            }
        }
        if p1 & 0x80 != 0 {
            // Last block: activate only when complete and consistent.
            if purse.credit_key.is_none()
                || purse.max_balance == 0
                || purse.balance > purse.max_balance
            {
                return refuse(Sw::INCORRECT_DATA);
            }
            *life_cycle = ACTIVE;
        }
        purse.store(data);
        Ok(())
    }

    fn process(
        &self,
        data: &mut Vec<u8>,
        life_cycle: &mut u8,
        cmd: &CommandApdu,
        services: &mut dyn DomainServices,
    ) -> Result<ResponseApdu> {
        if cmd.cla != 0x80 {
            return refuse(Sw::CLA_NOT_SUPPORTED);
        }
        if *life_cycle != ACTIVE {
            return refuse(Sw::CONDITIONS_NOT_SATISFIED);
        }
        if cmd.p1 != 0 || cmd.p2 != 0 {
            return refuse(Sw::INCORRECT_P1P2);
        }
        let mut purse = Purse::load(data)?;
        let key = purse
            .credit_key
            .ok_or(Error::Refused(Sw::CONDITIONS_NOT_SATISFIED))?;
        let status = |p: &Purse| {
            let mut out = p.balance.to_be_bytes().to_vec();
            out.extend_from_slice(&p.counter.to_be_bytes());
            out
        };
        match cmd.ins {
            0x5C => Ok(ResponseApdu::new(status(&purse), Sw::NO_ERROR)),
            0x54 => {
                let amount = u32_of(&cmd.data)?;
                purse.balance = purse
                    .balance
                    .checked_sub(amount)
                    .ok_or(Error::Refused(Sw::CONDITIONS_NOT_SATISFIED))?;
                purse.counter = purse
                    .counter
                    .checked_add(1)
                    .ok_or(Error::Refused(Sw::CONDITIONS_NOT_SATISFIED))?;
                let mut out = status(&purse);
                let mut signed = purse.counter.to_be_bytes().to_vec();
                signed.extend_from_slice(&amount.to_be_bytes());
                signed.extend_from_slice(&purse.balance.to_be_bytes());
                out.extend_from_slice(&services.mac(key, DEBIT_LABEL, &signed)?);
                purse.store(data);
                Ok(ResponseApdu::new(out, Sw::NO_ERROR))
            }
            0x52 => {
                let (amount, mac) = cmd
                    .data
                    .split_at_checked(4)
                    .ok_or(Error::Refused(Sw::WRONG_LENGTH))?;
                if mac.len() != 8 {
                    return refuse(Sw::WRONG_LENGTH);
                }
                let mut signed = purse.counter.to_be_bytes().to_vec();
                signed.extend_from_slice(amount);
                if services
                    .verify_mac(key, CREDIT_LABEL, &signed, mac)
                    .is_err()
                {
                    // The failure is remembered (the command "succeeds" with 6982 so the count
                    // is committed); the third one locks the purse.
                    purse.failed = purse.failed.saturating_add(1);
                    if purse.failed >= MAX_FAILED_CREDITS {
                        // Anyone can send a bad MAC: the purse blocks itself, never the card.
                        *life_cycle |= 0x80;
                    }
                    purse.store(data);
                    return Ok(ResponseApdu::status(Sw::SECURITY_STATUS_NOT_SATISFIED));
                }
                let amount = u32_of(amount)?;
                let balance = purse
                    .balance
                    .checked_add(amount)
                    .filter(|b| *b <= purse.max_balance)
                    .ok_or(Error::Refused(Sw::INCORRECT_DATA))?;
                purse.balance = balance;
                purse.failed = 0;
                purse.counter = purse
                    .counter
                    .checked_add(1)
                    .ok_or(Error::Refused(Sw::CONDITIONS_NOT_SATISFIED))?;
                purse.store(data);
                Ok(ResponseApdu::new(status(&purse), Sw::NO_ERROR))
            }
            _ => refuse(Sw::INS_NOT_SUPPORTED),
        }
    }
}
