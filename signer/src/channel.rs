//! The host side of a GlobalPlatform secure channel whose static keys stay in the token.
//!
//! The token computes every function of the static keys (the SCP03 KDF is AES-CMAC under static ENC and MAC);
//! only the session keys, which die with the session, are held on the host, zeroized on drop. Wire formats,
//! MACs and encryption of commands come from `gp_core::scp03`, the same code the card runs.

use crate::error::{sw_meaning, Error};
use crate::transport::Transport;
use gp_core::apdu::{CommandApdu, ResponseApdu};
use gp_core::commands;
use gp_core::scp03::{self, InitializeUpdateResponse, Prf, SecurityLevel, Session, SessionKeys};
use keyman::hsm::{KeyHandle, TokenSession};
use subtle::ConstantTimeEq;

/// The card domain's AID (GP 2.3.1), selected before a channel is opened.
pub const ISD_AID: [u8; 8] = [0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00];

/// A static key inside the token, used as the SCP03 pseudo-random function.
struct TokenPrf<'a, 'h> {
    session: &'a TokenSession<'h>,
    key: KeyHandle,
}

impl Prf for TokenPrf<'_, '_> {
    type Error = keyman::Error;

    fn cmac(&mut self, data: &[u8]) -> Result<[u8; 16], keyman::Error> {
        self.session.aes_cmac(self.key, data)
    }
}

/// The static keys of the key set to authenticate with, as handles in the token.
#[derive(Clone, Copy, Debug)]
pub struct StaticKeys {
    /// Static ENC.
    pub enc: KeyHandle,
    /// Static MAC.
    pub mac: KeyHandle,
    /// Static DEK (for PUT KEY and sensitive data).
    pub dek: KeyHandle,
}

/// Sends one command without secure messaging and checks for 9000.
pub fn send_plain(
    t: &mut dyn Transport,
    cmd: &CommandApdu,
    what: &str,
) -> Result<ResponseApdu, Error> {
    let resp = t.send(cmd)?;
    expect_ok(&resp, what)?;
    Ok(resp)
}

/// Fails with a precise line unless the status word is 9000.
pub fn expect_ok(resp: &ResponseApdu, what: &str) -> Result<(), Error> {
    if resp.sw == 0x9000 {
        Ok(())
    } else {
        Err(Error::Refused {
            command: what.to_string(),
            sw: resp.sw,
            meaning: sw_meaning(resp.sw),
        })
    }
}

/// SELECT by AID (first or only occurrence).
pub fn select(t: &mut dyn Transport, aid: &[u8]) -> Result<ResponseApdu, Error> {
    let cmd = commands::select_by_aid(aid);
    send_plain(t, &cmd, "SELECT")
}

/// INITIALIZE UPDATE: asks the card for its KDD, key set and challenge. Returned separately so the caller
/// can derive the card's keys from the KDD before authenticating.
pub fn initialize_update(
    t: &mut dyn Transport,
    token: &TokenSession<'_>,
    kvn: u8,
) -> Result<([u8; 8], InitializeUpdateResponse), Error> {
    let hc: [u8; 8] = token
        .random(8)?
        .try_into()
        .map_err(|_| Error::Card("the token returned a short random".into()))?;
    let cmd = commands::initialize_update(kvn, &hc);
    let resp = send_plain(t, &cmd, "INITIALIZE UPDATE")?;
    let iu = InitializeUpdateResponse::parse(&resp.data)
        .map_err(|e| Error::Card(format!("malformed INITIALIZE UPDATE response: {e}")))?;
    if iu.scp_id != 0x03 {
        return Err(Error::Card(format!(
            "the card offers SCP{:02X}; this signer speaks SCP03 here",
            iu.scp_id
        )));
    }
    Ok((hc, iu))
}

/// The SCP03 session keys for this host challenge and the card challenge of `iu`, derived from the
/// static keys in the token, without sending anything and without checking the card's cryptogram: the
/// caller checks it ([`scp03::verify_card_cryptogram`]) before it computes a host cryptogram. A caller
/// that prepares a whole session in advance (a remote script) uses this.
pub fn session_keys(
    token: &TokenSession<'_>,
    keys: StaticKeys,
    host_challenge: &[u8; 8],
    iu: &InitializeUpdateResponse,
) -> Result<SessionKeys, Error> {
    let key_len = keys.enc.key_type().map(|t| t.byte_len()).unwrap_or(16);
    let mut enc = TokenPrf {
        session: token,
        key: keys.enc,
    };
    let mut mac = TokenPrf {
        session: token,
        key: keys.mac,
    };
    scp03::derive_session_keys(
        &mut enc,
        &mut mac,
        key_len,
        host_challenge,
        &iu.card_challenge,
    )
    .map_err(|e| Error::Authentication(format!("session keys: {e}")))
}

/// An authenticated SCP03 channel to the selected security domain.
pub struct SecureChannel<'t> {
    transport: &'t mut dyn Transport,
    session: Session,
}

impl<'t> SecureChannel<'t> {
    /// Completes the handshake begun by [`initialize_update`]: session keys from the token, the card's
    /// cryptogram checked in constant time, then EXTERNAL AUTHENTICATE at `level`.
    pub fn authenticate(
        transport: &'t mut dyn Transport,
        token: &TokenSession<'_>,
        keys: StaticKeys,
        host_challenge: [u8; 8],
        iu: &InitializeUpdateResponse,
        level: SecurityLevel,
    ) -> Result<SecureChannel<'t>, Error> {
        let session_keys = session_keys(token, keys, &host_challenge, iu)?;
        let expected = scp03::card_cryptogram(&session_keys, &host_challenge, &iu.card_challenge);
        if !bool::from(expected.ct_eq(&iu.card_cryptogram)) {
            return Err(Error::Authentication(
                "the card's cryptogram does not match: the token holds other keys than the card"
                    .into(),
            ));
        }
        let host_cryptogram =
            scp03::host_cryptogram(&session_keys, &host_challenge, &iu.card_challenge);
        let mut session = Session::host(session_keys, level);
        let cmd = session.external_authenticate(&host_cryptogram);
        let resp = transport.send(&cmd)?;
        expect_ok(&resp, "EXTERNAL AUTHENTICATE")?;
        Ok(SecureChannel { transport, session })
    }

    /// Sends a command through the channel (MAC and encryption per the security level) and returns the
    /// verified, decrypted response. Any status word is returned; see [`SecureChannel::send_ok`].
    pub fn send(&mut self, cmd: &CommandApdu) -> Result<ResponseApdu, Error> {
        let wrapped = self
            .session
            .wrap(cmd)
            .map_err(|e| Error::Card(format!("cannot wrap command: {e}")))?;
        let resp = self.transport.send(&wrapped)?;
        self.session
            .unwrap_response(&resp)
            .map_err(|e| Error::Authentication(format!("response: {e}")))
    }

    /// Sends a command and fails unless the card answers 9000.
    pub fn send_ok(&mut self, cmd: &CommandApdu, what: &str) -> Result<ResponseApdu, Error> {
        let resp = self.send(cmd)?;
        expect_ok(&resp, what)?;
        Ok(resp)
    }
}
