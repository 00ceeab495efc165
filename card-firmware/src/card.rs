//! The card: power, the command pipeline and the commit rule.
//!
//! `Card` owns the journal (persistent) and a [`Transient`] (RAM: selection, secure channel,
//! load session, GET STATUS cursor). Power on recovers the newest valid state and clears RAM.
//! Each command runs on a copy of the state; if it succeeds and the copy differs, the copy is
//! committed once before the response leaves the card, so a power cut leaves the state before or
//! after the command. EXTERNAL AUTHENTICATE is the one command with two explicit atomic steps:
//! it counts the attempt as failed before checking the cryptogram, then clears the count.

use alloc::vec::Vec;

use gp_core::apdu::{CommandApdu, ResponseApdu};

use crate::channel::Channel;
use crate::commands::{self, external_authenticate, initialize_update};
use crate::error::{Error, Result};
use crate::session::{Ctx, Transient};
use crate::state::{CardState, FabSettings};
use crate::storage::{Journal, Storage};
use crate::Sw;

/// The answer to reset: direct convention; T0 = `89` (TD1 follows, 9 historical bytes);
/// TD1 = `81` (TD2 follows, T=1); TD2 = `31` (TA3, TB3 follow, T=1); TA3 = `FE` (IFSC 254);
/// TB3 = `45` (BWI 4, CWI 5); historical bytes "Postissue"; TCK. Only T=1 is offered, so
/// PC/SC readers carry extended-length APDUs.
pub fn atr() -> Vec<u8> {
    let mut atr = alloc::vec![0x3B, 0x89, 0x81, 0x31, 0xFE, 0x45];
    atr.extend_from_slice(b"Postissue");
    // TCK: XOR of all bytes from T0 on.
    let tck = atr.iter().skip(1).fold(0u8, |a, b| a ^ b);
    atr.push(tck);
    atr
}

/// A GlobalPlatform card over some storage.
pub struct Card<S: Storage> {
    journal: Journal<S>,
    state: CardState,
    ram: Transient,
    dead: bool,
}

impl<S: Storage> core::fmt::Debug for Card<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Card")
            .field("life_cycle", &self.state.life_cycle)
            .field("channel", &self.ram.channel)
            .finish()
    }
}

impl<S: Storage> Card<S> {
    /// Personalise blank storage as the fab does and power the card on.
    pub fn format(storage: S, fab: &FabSettings) -> Result<Self> {
        let state = CardState::from_fab(fab)?;
        let journal = Journal::format(storage, &state.to_bytes())?;
        Ok(Card {
            journal,
            state,
            ram: Transient::default(),
            dead: false,
        })
    }

    /// Power on: recover the newest valid state (never writes) with fresh RAM.
    pub fn boot(storage: S) -> Result<Self> {
        let (journal, record) = Journal::open(storage)?;
        let state = CardState::from_bytes(&record)?;
        Ok(Card {
            journal,
            state,
            ram: Transient::default(),
            dead: false,
        })
    }

    /// The answer to reset.
    pub fn atr(&self) -> Vec<u8> {
        atr()
    }

    /// Warm reset: RAM (selection, secure channel, load session) is lost; the ISD is selected.
    pub fn reset(&mut self) {
        self.ram = Transient::default();
    }

    /// The committed state (for audits in tests and `card-sim info`; contains key values, which
    /// only the key module exposes inside the crate).
    pub fn state(&self) -> &CardState {
        &self.state
    }

    /// How many times a security domain's load file decryption service (ciphered `D4` LFDBs) has
    /// run since power-on or the last reset. A diagnostic: the card decrypts only after every DAP
    /// over the announced LFDB hash has verified, which tests check through this count.
    pub fn lfdb_decryptions(&self) -> u32 {
        self.ram.lfdb_decryptions
    }

    /// The largest encoded state the journal holds (its slot size as formatted, less the
    /// header).
    pub fn max_state_len(&self) -> usize {
        self.journal.max_record()
    }

    /// The storage medium.
    pub fn storage(&self) -> &S {
        self.journal.storage()
    }

    /// The storage medium, mutably (tests schedule power cuts through it).
    pub fn storage_mut(&mut self) -> &mut S {
        self.journal.storage_mut()
    }

    /// Power off: give the medium back.
    pub fn into_storage(self) -> S {
        self.journal.into_storage()
    }

    /// Whether a write failed: the card stopped and needs a power cycle.
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// Process one command APDU; returns response data ‖ SW1 SW2. Never panics.
    pub fn process(&mut self, apdu: &[u8]) -> Vec<u8> {
        if self.dead {
            return Sw(0x6581).bytes().to_vec();
        }
        let cmd = match CommandApdu::parse(apdu) {
            Ok(cmd) => cmd,
            Err(e) => {
                self.ram.pending = None;
                return ResponseApdu::status(e.sw()).to_bytes();
            }
        };
        if cmd.ins == 0xC0 && cmd.cla & 0x80 == 0 {
            return self.get_response(&cmd).to_bytes();
        }
        self.ram.pending = None;
        let extended = cmd.needs_extended();
        let le = cmd.le;
        let resp = self.dispatch(cmd);
        self.chain(resp, le, extended).to_bytes()
    }

    /// ISO 7816-4 response chaining for short APDUs: data beyond what one short response
    /// carries (Le, at most 256 bytes) waits for GET RESPONSE, announced by `61xx`. Extended
    /// APDUs get everything at once.
    fn chain(&mut self, resp: ResponseApdu, le: Option<usize>, extended: bool) -> ResponseApdu {
        let limit = le.filter(|l| *l > 0).unwrap_or(256).min(256);
        if extended || resp.data.len() <= 256 {
            return resp;
        }
        let ResponseApdu { mut data, sw } = resp;
        let rest = data.split_off(limit.min(data.len()));
        self.announce(data, rest, sw)
    }

    fn announce(&mut self, now: Vec<u8>, rest: Vec<u8>, sw: u16) -> ResponseApdu {
        if rest.is_empty() {
            return ResponseApdu { data: now, sw };
        }
        let xx = u8::try_from(rest.len()).unwrap_or(0);
        self.ram.pending = Some((rest, sw));
        ResponseApdu {
            data: now,
            sw: u16::from_be_bytes([0x61, xx]),
        }
    }

    /// GET RESPONSE (ISO 7816-4 §11.5.5): the next part of a chained response.
    fn get_response(&mut self, cmd: &CommandApdu) -> ResponseApdu {
        let Some((mut data, sw)) = self.ram.pending.take() else {
            return ResponseApdu::status(Sw::CONDITIONS_NOT_SATISFIED);
        };
        if cmd.p1 != 0 || cmd.p2 != 0 || !cmd.data.is_empty() {
            self.ram.pending = Some((data, sw));
            return ResponseApdu::status(Sw::INCORRECT_P1P2);
        }
        let limit = cmd.le.filter(|l| *l > 0).unwrap_or(256).min(256);
        let rest = data.split_off(limit.min(data.len()));
        self.announce(data, rest, sw)
    }

    fn commit(&mut self, next: CardState) -> Result<()> {
        match self.journal.commit(&next.to_bytes()) {
            Ok(()) => {
                self.state = next;
                Ok(())
            }
            Err(e) => {
                if e != Error::StorageFull {
                    // The medium failed mid-write: stop until power is cycled, then recovery
                    // decides what survived.
                    self.dead = true;
                    self.ram = Transient::default();
                }
                Err(e)
            }
        }
    }

    fn dispatch(&mut self, cmd: CommandApdu) -> ResponseApdu {
        if gp_core::apdu::logical_channel(cmd.cla) != 0 {
            return ResponseApdu::status(Sw::LOGICAL_CHANNEL_NOT_SUPPORTED);
        }
        let cla_ok = matches!(cmd.cla & 0xF0, 0x00 | 0x80);
        if !cla_ok {
            return ResponseApdu::status(Sw::CLA_NOT_SUPPORTED);
        }
        if cmd.ins == 0xA4 && cmd.cla & 0x80 == 0 {
            return crate::commands::select::select(&self.state, &mut self.ram, &cmd);
        }
        if cmd.ins == 0x70 && cmd.cla & 0x80 == 0 {
            // MANAGE CHANNEL: the OPEN answers it (GP 2.3.1 §6.3) and supports the basic
            // channel only; the selected application and its secure channel never see it.
            return ResponseApdu::status(Sw::LOGICAL_CHANNEL_NOT_SUPPORTED);
        }
        if self.state.domain(&self.ram.selected).is_none() {
            return self.application_command(&cmd);
        }
        match cmd.ins {
            0x50 => self.initialize_update(&cmd),
            0x82 => self.external_authenticate(&cmd),
            _ => self.secured_command(cmd),
        }
    }

    /// A command for the selected built-in application, with its SD's services; committed like
    /// every other command.
    fn application_command(&mut self, cmd: &CommandApdu) -> ResponseApdu {
        if gp_core::apdu::has_secure_messaging(cmd.cla) {
            return ResponseApdu::status(Sw::SECURE_MESSAGING_NOT_SUPPORTED);
        }
        let aid = self.ram.selected;
        let mut next = self.state.clone();
        let Some(app) = next.registry.application(&aid) else {
            return ResponseApdu::status(Sw::CONDITIONS_NOT_SATISFIED);
        };
        let Some(applet) = crate::applets::applet_for(&app.module) else {
            return ResponseApdu::status(Sw::INS_NOT_SUPPORTED);
        };
        if app.life_cycle.is_locked() || !next.life_cycle.allows_content_change() {
            return ResponseApdu::status(Sw::CONDITIONS_NOT_SATISFIED);
        }
        let mut data = app.app_data.clone();
        let mut life_cycle = app.life_cycle.code();
        let sd = app.associated_sd;
        let result = {
            let mut services = crate::app::Services {
                personalising: false,
                state: &mut next,
                sd,
                app: aid,
                dek: None,
            };
            crate::app::Applet::process(&applet, &mut data, &mut life_cycle, cmd, &mut services)
        };
        match result {
            Ok(resp) => {
                let Ok(lc) = crate::lifecycle::AppLifeCycle::from_code(life_cycle) else {
                    return ResponseApdu::status(Sw::UNKNOWN);
                };
                if let Some(app) = next.registry.application_mut(&aid) {
                    app.app_data = data;
                    app.life_cycle = lc;
                }
                if next != self.state {
                    if let Err(e) = self.commit(next) {
                        return ResponseApdu::status(e.sw());
                    }
                }
                resp
            }
            Err(e) => ResponseApdu::status(e.sw()),
        }
    }

    fn initialize_update(&mut self, cmd: &CommandApdu) -> ResponseApdu {
        // A new secure channel session starts: every session-bound sequence of the old one ends,
        // the personalisation session included (its STORE DATA must not continue under a new,
        // possibly lower, security level).
        self.ram.load = None;
        self.ram.status = None;
        self.ram.store_next = 0;
        self.ram.perso = None;
        let mut next = self.state.clone();
        let mut channel = Channel::None;
        let sd = self.ram.selected;
        let resp = match initialize_update::initialize_update(&mut next, &mut channel, cmd, &sd) {
            Ok(resp) => resp,
            Err(e) => {
                self.ram.channel = Channel::None;
                return ResponseApdu::status(e.sw());
            }
        };
        // The incremented sequence counter (or generator) is durable before the challenge
        // leaves the card.
        if next != self.state {
            if let Err(e) = self.commit(next) {
                self.ram.channel = Channel::None;
                return ResponseApdu::status(e.sw());
            }
        }
        self.ram.channel = channel;
        resp
    }

    fn external_authenticate(&mut self, cmd: &CommandApdu) -> ResponseApdu {
        if !matches!(self.ram.channel, Channel::Initiated(_)) {
            self.ram.channel = Channel::None;
            return ResponseApdu::status(Sw::CONDITIONS_NOT_SATISFIED);
        }
        // Step 1: count this attempt as failed, durably, before the cryptogram is looked at,
        // so cutting power during the check cannot buy unlimited guesses.
        let sd = self.ram.selected;
        let mut next = self.state.clone();
        external_authenticate::count_attempt(&mut next, &sd);
        if let Err(e) = self.commit(next) {
            self.ram.channel = Channel::None;
            return ResponseApdu::status(e.sw());
        }
        match self.ram.channel.external_authenticate(cmd) {
            Ok(auth) => {
                // Step 2: success clears the count; SCP02 counts the opened session
                // (GPC E.1.2: the counter moves when the first C-MAC verifies).
                let mut next = self.state.clone();
                external_authenticate::authenticated(&mut next, &sd, auth);
                if let Err(e) = self.commit(next) {
                    self.ram.channel = Channel::None;
                    return ResponseApdu::status(e.sw());
                }
                ResponseApdu::status(Sw::NO_ERROR)
            }
            Err(e) => {
                self.ram.channel = Channel::None;
                ResponseApdu::status(e.sw())
            }
        }
    }

    fn secured_command(&mut self, cmd: CommandApdu) -> ResponseApdu {
        let plain = match self.ram.channel.unwrap_command(cmd) {
            Ok(plain) => plain,
            Err(e) => return ResponseApdu::status(e.sw()),
        };
        let mut next = self.state.clone();
        let auth = self.ram.channel.auth();
        let result = {
            let sd = self.ram.selected;
            let mut ctx = Ctx {
                state: &mut next,
                ram: &mut self.ram,
                auth,
                sd,
            };
            commands::handle(&mut ctx, &plain)
        };
        let resp = match result {
            Ok(resp) => {
                if next != self.state {
                    if let Err(e) = self.commit(next) {
                        if plain.ins == 0xE2 {
                            // Not stored, so refused: the STORE DATA sequence ends as after any
                            // refused block, and no block counter has moved on.
                            self.ram.perso = None;
                            self.ram.store_next = 0;
                        }
                        return ResponseApdu::status(e.sw());
                    }
                }
                resp
            }
            Err(e) => ResponseApdu::status(e.sw()),
        };
        self.ram.channel.wrap_response(resp)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::keys::ScpConfig;
    use crate::storage::RamStorage;

    fn card() -> Card<RamStorage> {
        let fab = FabSettings {
            scp: ScpConfig { scp: 3, i: 0x70 },
            kvn: 0x30,
            key: [0x40; 16],
            kdd: [0; 10],
            rng_seed: [3; 16],
        };
        Card::format(RamStorage::new(16 * 1024, 64), &fab).unwrap()
    }

    #[test]
    fn long_responses_chain_with_61xx() {
        let mut card = card();
        let long: Vec<u8> = (0..600u16).map(|i| i as u8).collect();
        let first = card.chain(
            ResponseApdu::new(long.clone(), Sw::NO_ERROR),
            Some(256),
            false,
        );
        assert_eq!(first.data.len(), 256);
        assert_eq!(first.sw, 0x6100);
        let mut got = first.data;
        loop {
            let r = card.process(&[0x00, 0xC0, 0x00, 0x00, 0x00]);
            let (data, sw) = r.split_at(r.len() - 2);
            got.extend_from_slice(data);
            if sw == [0x90, 0x00] {
                break;
            }
            assert_eq!(sw[0], 0x61);
        }
        assert_eq!(got, long);
        // Nothing pending any more.
        assert_eq!(card.process(&[0x00, 0xC0, 0x00, 0x00, 0x00]), [0x69, 0x85]);
        // Extended APDUs get everything at once.
        let all = card.chain(
            ResponseApdu::new(long.clone(), Sw::NO_ERROR),
            Some(65536),
            true,
        );
        assert_eq!(all.data, long);
    }
}
