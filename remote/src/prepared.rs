//! An SCP03 session prepared in advance: once the card's challenge is known (from the first script), the
//! host computes EXTERNAL AUTHENTICATE and every wrapped command of the operation before any is sent,
//! because C-MAC chaining uses only the previous command's MAC and the C-DEC counter counts commands
//! (Amendment D §6.2). R-MACs are checked when the responses come back.
//!
//! The host session is deterministic given its keys and the commands, so the responses of a script are
//! checked by replaying the session up to that script; no session state has to survive in a form the
//! secure-channel code does not own.

use crate::error::Error;
use gp_core::apdu::{CommandApdu, ResponseApdu};
use gp_core::scp03::{SecurityLevel, Session, SessionKeys};

/// One card's secure channel as the server holds it between scripts.
pub struct PreparedChannel {
    keys: SessionKeys,
    host_cryptogram: [u8; 8],
    level: SecurityLevel,
    /// Plain commands sent in earlier scripts with the raw responses that were verified.
    verified: Vec<(CommandApdu, ResponseApdu)>,
    /// Plain commands of the script whose responses are awaited.
    pending: Vec<CommandApdu>,
}

impl std::fmt::Debug for PreparedChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedChannel")
            .field("level", &self.level)
            .field("verified", &self.verified.len())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl PreparedChannel {
    /// A channel that will authenticate with `host_cryptogram` (already computed from a checked card
    /// cryptogram) at `level`.
    pub fn new(
        keys: SessionKeys,
        host_cryptogram: [u8; 8],
        level: SecurityLevel,
    ) -> PreparedChannel {
        PreparedChannel {
            keys,
            host_cryptogram,
            level,
            verified: Vec::new(),
            pending: Vec::new(),
        }
    }

    /// The security level requested.
    pub fn level(&self) -> SecurityLevel {
        self.level
    }

    fn fresh(&self) -> (Session, CommandApdu) {
        let mut s = Session::host(self.keys.clone(), self.level);
        let ea = s.external_authenticate(&self.host_cryptogram);
        (s, ea)
    }

    fn replayed(&self) -> Result<Session, Error> {
        let (mut s, _) = self.fresh();
        for (cmd, resp) in &self.verified {
            s.wrap(cmd).map_err(|e| Error::Card(format!("wrap: {e}")))?;
            s.unwrap_response(resp)
                .map_err(|e| Error::Card(format!("replay: {e}")))?;
        }
        Ok(s)
    }

    /// EXTERNAL AUTHENTICATE, the first command of the first script after INITIALIZE UPDATE.
    pub fn external_authenticate(&self) -> CommandApdu {
        self.fresh().1
    }

    /// Wraps `commands` (C-MAC, C-DEC, and Le for R-MAC per the level) as the next script's commands,
    /// continuing from every response verified so far.
    pub fn wrap_script(&mut self, commands: Vec<CommandApdu>) -> Result<Vec<CommandApdu>, Error> {
        let mut s = self.replayed()?;
        let mut out = Vec::with_capacity(commands.len());
        for c in &commands {
            out.push(
                s.wrap(c)
                    .map_err(|e| Error::Card(format!("cannot wrap command: {e}")))?,
            );
        }
        self.pending = commands;
        Ok(out)
    }

    /// Checks the R-MAC of each response to the pending script (fewer responses than commands when the
    /// script stopped early) and returns them unwrapped. A bad R-MAC is an error and nothing is kept.
    pub fn verify(&mut self, responses: &[ResponseApdu]) -> Result<Vec<ResponseApdu>, Error> {
        if responses.len() > self.pending.len() {
            return Err(Error::Protocol(format!(
                "{} responses to a script of {} commands",
                responses.len(),
                self.pending.len()
            )));
        }
        let mut s = self.replayed()?;
        let mut out = Vec::with_capacity(responses.len());
        for (cmd, resp) in self.pending.iter().zip(responses) {
            s.wrap(cmd).map_err(|e| Error::Card(format!("wrap: {e}")))?;
            out.push(s.unwrap_response(resp).map_err(|e| {
                Error::Card(format!(
                    "the response to {:02X}{:02X} fails its R-MAC check: {e}",
                    cmd.cla, cmd.ins
                ))
            })?);
        }
        let pending = std::mem::take(&mut self.pending);
        self.verified
            .extend(pending.into_iter().zip(responses.iter().cloned()));
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use gp_core::keys::AesKey;

    fn keys() -> SessionKeys {
        SessionKeys {
            enc: AesKey::from_slice(&[1u8; 16]).unwrap(),
            mac: AesKey::from_slice(&[2u8; 16]).unwrap(),
            rmac: AesKey::from_slice(&[3u8; 16]).unwrap(),
        }
    }

    /// The card side of the same session, answering each command with `data` R-MACed.
    #[test]
    fn prepared_scripts_match_a_live_session_and_r_macs_are_checked() {
        let level = SecurityLevel::C_MAC_C_DEC_R_MAC;
        let hc = [9u8; 8];
        let mut prepared = PreparedChannel::new(keys(), hc, level);
        let mut card = Session::card(keys());
        let ea = prepared.external_authenticate();
        card.verify_external_authenticate(&ea, &hc).unwrap();
        let cmds: Vec<CommandApdu> = (0..3u8)
            .map(|i| CommandApdu::new(0x80, 0xE8, 0, i, vec![i; 20], None))
            .collect();
        let wrapped = prepared.wrap_script(cmds.clone()).unwrap();
        let mut answers = Vec::new();
        for (w, plain) in wrapped.iter().zip(&cmds) {
            let got = card.unwrap_command(w).unwrap();
            // R-MAC asks for Le 00 on a command that had none (GPC E.4.5).
            assert_eq!(
                (got.ins, got.p2, &got.data, got.le),
                (plain.ins, plain.p2, &plain.data, Some(256))
            );
            answers.push(card.wrap_response(ResponseApdu {
                data: vec![0xAB],
                sw: 0x9000,
            }));
        }
        let got = prepared.verify(&answers).unwrap();
        assert!(got.iter().all(|r| r.data == [0xAB] && r.sw == 0x9000));

        // A second script continues the same chain.
        let more = vec![CommandApdu::new(
            0x80,
            0xF2,
            0x40,
            0x02,
            vec![0x4F, 0x00],
            None,
        )];
        let wrapped = prepared.wrap_script(more.clone()).unwrap();
        assert_eq!(card.unwrap_command(&wrapped[0]).unwrap().data, more[0].data);
        let mut answer = card.wrap_response(ResponseApdu {
            data: vec![1, 2],
            sw: 0x9000,
        });
        // A response changed on the way fails the R-MAC check and is not kept.
        answer.data[0] ^= 1;
        assert!(prepared.verify(std::slice::from_ref(&answer)).is_err());
    }
}
