//! The host side of a GlobalPlatform secure channel whose static keys stay in the token.
//!
//! Two ways, chosen by the token's capability probe ([`Feature::Scp03Session`]):
//! * **in-token**, where the token has `CKM_SP800_108_COUNTER_KDF`: S-ENC, S-MAC and S-RMAC are derived
//!   as sensitive session objects with the Amendment D layout, and the token computes every cryptogram,
//!   C-MAC, R-MAC, C-DEC and R-ENC; no session key is ever on the host;
//! * **host**, elsewhere (SoftHSM2): the token computes the KDF's AES-CMAC under the static keys, and only
//!   the session keys, which die with the session, are held on the host, zeroized on drop; wire formats,
//!   MACs and encryption come from `gp_core::scp03`, the same code the card runs.

use crate::error::{sw_meaning, Error};
use crate::transport::Transport;
use gp_core::apdu::{CommandApdu, ResponseApdu};
use gp_core::commands;
use gp_core::scp03::{self, InitializeUpdateResponse, Prf, SecurityLevel, Session, SessionKeys};
use keyman::hsm::capabilities::Feature;
use keyman::hsm::{DerivedKey, KeyHandle, SecretKeyType, TokenSession, Usage};
use subtle::ConstantTimeEq;

pub mod scp02;

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

/// The secure channel protocol the selected security domain offers (`02` or `03`), from one INITIALIZE
/// UPDATE whose session is then abandoned: lets a tool choose SCP02 or SCP03 before it changes anything.
pub fn offered_scp(t: &mut dyn Transport, token: &TokenSession<'_>) -> Result<u8, Error> {
    let hc: [u8; 8] = token
        .random(8)?
        .try_into()
        .map_err(|_| Error::Card("the token returned a short random".into()))?;
    let resp = send_plain(t, &commands::initialize_update(0, &hc), "INITIALIZE UPDATE")?;
    commands::initialize_update_scp_id(&resp.data)
        .ok_or_else(|| Error::Card("INITIALIZE UPDATE response too short".into()))
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

/// The SCP03 session keys for this host challenge and the card challenge of `iu`, derived on the host
/// with the token's AES-CMAC under the static keys (the host way), without sending anything and without
/// checking the card's cryptogram: the caller checks it ([`scp03::verify_card_cryptogram`]) before it
/// computes a host cryptogram. A caller that prepares a whole session in advance (a remote script) uses
/// this, since every command of the script must be wrapped before any is sent.
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

/// Where an SCP03 channel's session keys live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionKeyPath {
    /// Derived as token objects by `CKM_SP800_108_COUNTER_KDF`; the token does all session cryptography.
    InToken,
    /// Computed with the token's AES-CMAC under the static keys and held on the host for the session.
    Host,
}

impl SessionKeyPath {
    /// How tools print it.
    pub fn describe(self) -> &'static str {
        match self {
            SessionKeyPath::InToken => {
                "SCP03 session keys in the token (CKM_SP800_108_COUNTER_KDF; MACs and encryption by the token)"
            }
            SessionKeyPath::Host => {
                "SCP03 session keys on the host (computed with the token's CKM_AES_CMAC, wiped after the session)"
            }
        }
    }
}

/// The session state of a channel whose session keys are token objects: the same state machine as
/// `gp_core::scp03::Session` on the host side, with every cryptographic step done by the token.
struct TokenSessionKeys<'t> {
    token: &'t TokenSession<'t>,
    enc: DerivedKey<'t, 't>,
    mac: DerivedKey<'t, 't>,
    rmac: DerivedKey<'t, 't>,
    level: SecurityLevel,
    mac_chain: [u8; 16],
    counter: u64,
    response_pending: bool,
    aborted: bool,
}

/// The Amendment D KDF's fixed input before the counter byte: `00×11 ‖ constant ‖ 00 ‖ L(2, bits)`.
fn kdf_label(constant: u8, bits: u16) -> Vec<u8> {
    let mut v = vec![0u8; 11];
    v.push(constant);
    v.push(0);
    v.extend_from_slice(&bits.to_be_bytes());
    v
}

/// ISO/IEC 9797-1 padding method 2 to a multiple of 16.
fn pad80(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    out.push(0x80);
    while out.len() % 16 != 0 {
        out.push(0);
    }
    out
}

/// Removes padding method 2 (at most one block of it); `None` when malformed.
fn unpad80(data: &[u8]) -> Option<&[u8]> {
    let zeros = data.iter().rev().take_while(|&&b| b == 0).count();
    let marker = data.len().checked_sub(zeros + 1)?;
    if *data.get(marker)? != 0x80 || zeros >= 16 {
        return None;
    }
    data.get(..marker)
}

/// `CLA INS P1 P2 Lc` as SCP03 MACs it (Lc one byte up to 255, else `00` and two bytes).
fn lc_header(cla: u8, ins: u8, p1: u8, p2: u8, lc: usize) -> Option<Vec<u8>> {
    let mut h = vec![cla, ins, p1, p2];
    if lc <= 255 {
        h.push(lc as u8);
    } else {
        h.push(0);
        h.extend_from_slice(&u16::try_from(lc).ok()?.to_be_bytes());
    }
    Some(h)
}

impl<'t> TokenSessionKeys<'t> {
    /// Derives S-ENC, S-MAC and S-RMAC in the token from the static keys, with context `hc ‖ cc`.
    fn derive(
        token: &'t TokenSession<'t>,
        keys: StaticKeys,
        context: &[u8; 16],
        level: SecurityLevel,
    ) -> Result<TokenSessionKeys<'t>, Error> {
        let out = keys.enc.key_type().unwrap_or(SecretKeyType::Aes128);
        let bits = u16::try_from(out.byte_len() * 8)
            .map_err(|_| Error::Authentication("session key length".into()))?;
        let derive = |key: KeyHandle, constant: u8, usages: &[Usage]| {
            token.derive_counter_kdf(key, &kdf_label(constant, bits), context, out, usages, false)
        };
        Ok(TokenSessionKeys {
            token,
            enc: derive(keys.enc, scp03::S_ENC, &[Usage::Encrypt, Usage::Decrypt])?,
            mac: derive(keys.mac, scp03::S_MAC, &[Usage::Sign])?,
            rmac: derive(keys.mac, scp03::S_RMAC, &[Usage::Sign])?,
            level,
            mac_chain: [0; 16],
            counter: 0,
            response_pending: false,
            aborted: false,
        })
    }

    /// A 64-bit cryptogram: the KDF under S-MAC with `constant`, computed by the token.
    fn cryptogram(&self, constant: u8, context: &[u8; 16]) -> Result<[u8; 8], Error> {
        let mut input = kdf_label(constant, 64);
        input.push(1);
        input.extend_from_slice(context);
        let full = self.token.aes_cmac(self.mac.handle(), &input)?;
        let mut out = [0u8; 8];
        out.copy_from_slice(full.get(..8).unwrap_or(&[0; 8]));
        Ok(out)
    }

    fn fail<T>(&mut self, what: &str) -> Result<T, Error> {
        self.aborted = true;
        self.response_pending = false;
        Err(Error::Authentication(format!(
            "{what}; the session is closed"
        )))
    }

    /// The ICV for command or response encryption: S-ENC's ECB encryption of the counter block.
    fn icv(&self, response: bool) -> Result<Vec<u8>, Error> {
        let mut block = [0u8; 16];
        for (d, s) in block
            .iter_mut()
            .rev()
            .zip(self.counter.to_be_bytes().iter().rev())
        {
            *d = *s;
        }
        if response {
            block[0] = 0x80;
        }
        Ok(self.token.encrypt_ecb(self.enc.handle(), &block)?)
    }

    fn external_authenticate(&mut self, host_cryptogram: &[u8; 8]) -> Result<CommandApdu, Error> {
        self.mac_chain = [0; 16];
        self.counter = 0;
        let p1 = self.level.bits();
        let mut input = self.mac_chain.to_vec();
        input.extend_from_slice(&[0x84, 0x82, p1, 0x00, 0x10]);
        input.extend_from_slice(host_cryptogram);
        let full = self.token.aes_cmac(self.mac.handle(), &input)?;
        self.mac_chain = full;
        let mut data = host_cryptogram.to_vec();
        data.extend_from_slice(full.get(..scp03::MAC_LEN).unwrap_or(&[]));
        Ok(CommandApdu::new(0x84, 0x82, p1, 0x00, data, None))
    }

    fn wrap(&mut self, cmd: &CommandApdu) -> Result<CommandApdu, Error> {
        if self.aborted {
            return Err(Error::Authentication(
                "the session was closed by an earlier error".into(),
            ));
        }
        self.counter = match self.counter.checked_add(1) {
            Some(c) => c,
            None => return self.fail("encryption counter exhausted"),
        };
        self.response_pending = true;
        if !self.level.c_mac() {
            return Ok(cmd.clone());
        }
        let mut body = if self.level.c_dec() && !cmd.data.is_empty() {
            let padded = zeroize::Zeroizing::new(pad80(&cmd.data));
            let icv = self.icv(false)?;
            self.token.encrypt_cbc(self.enc.handle(), &icv, &padded)?
        } else {
            cmd.data.clone()
        };
        let Some(header) = lc_header(
            gp_core::apdu::mac_cla(cmd.cla),
            cmd.ins,
            cmd.p1,
            cmd.p2,
            body.len() + scp03::MAC_LEN,
        ) else {
            return self.fail("command too long for SCP03");
        };
        let mut input = self.mac_chain.to_vec();
        input.extend_from_slice(&header);
        input.extend_from_slice(&body);
        let full = self.token.aes_cmac(self.mac.handle(), &input)?;
        self.mac_chain = full;
        body.extend_from_slice(full.get(..scp03::MAC_LEN).unwrap_or(&[]));
        let le = match cmd.le {
            None if self.level.r_mac() => Some(gp_core::apdu::SHORT_MAX_LE),
            other => other,
        };
        Ok(CommandApdu::new(
            gp_core::apdu::with_secure_messaging(cmd.cla),
            cmd.ins,
            cmd.p1,
            cmd.p2,
            body,
            le,
        ))
    }

    fn unwrap_response(&mut self, resp: &ResponseApdu) -> Result<ResponseApdu, Error> {
        if self.aborted {
            return Err(Error::Authentication(
                "the session was closed by an earlier error".into(),
            ));
        }
        if !self.level.r_mac() {
            return Ok(resp.clone());
        }
        if !std::mem::take(&mut self.response_pending) {
            return self.fail("a response without a command");
        }
        if !resp.sw().is_success_or_warning() {
            return Ok(ResponseApdu {
                data: Vec::new(),
                sw: resp.sw,
            });
        }
        let Some((body, mac)) = resp.data.split_last_chunk::<{ scp03::MAC_LEN }>() else {
            return self.fail("response: R-MAC missing");
        };
        let mut input = self.mac_chain.to_vec();
        input.extend_from_slice(body);
        input.extend_from_slice(&resp.sw.to_be_bytes());
        let expected = self.token.aes_cmac(self.rmac.handle(), &input)?;
        if !bool::from(
            expected
                .get(..scp03::MAC_LEN)
                .unwrap_or(&[])
                .ct_eq(mac.as_slice()),
        ) {
            return self.fail("response: bad R-MAC");
        }
        let data = if self.level.r_enc() && !body.is_empty() {
            if body.len() % 16 != 0 {
                return self.fail("response: bad R-ENC padding");
            }
            let icv = self.icv(true)?;
            let plain =
                zeroize::Zeroizing::new(self.token.decrypt_cbc(self.enc.handle(), &icv, body)?);
            match unpad80(&plain) {
                Some(p) => p.to_vec(),
                None => return self.fail("response: bad R-ENC padding"),
            }
        } else {
            body.to_vec()
        };
        Ok(ResponseApdu { data, sw: resp.sw })
    }
}

enum ChannelKeys<'t> {
    Host(Session),
    Token(Box<TokenSessionKeys<'t>>),
}

/// An authenticated SCP03 channel to the selected security domain.
pub struct SecureChannel<'t> {
    transport: &'t mut dyn Transport,
    keys: ChannelKeys<'t>,
}

impl<'t> SecureChannel<'t> {
    /// Completes the handshake begun by [`initialize_update`]: session keys derived in the token where
    /// it can (see [`SessionKeyPath`]), else computed with its AES-CMAC; the card's cryptogram checked in
    /// constant time; then EXTERNAL AUTHENTICATE at `level`.
    ///
    /// The in-token way needs static keys the token may derive from (`CKA_DERIVE`): per-card keys are
    /// derived so; keys imported without it (a fab's transport keys) take the host way.
    pub fn authenticate(
        transport: &'t mut dyn Transport,
        token: &'t TokenSession<'_>,
        keys: StaticKeys,
        host_challenge: [u8; 8],
        iu: &InitializeUpdateResponse,
        level: SecurityLevel,
    ) -> Result<SecureChannel<'t>, Error> {
        let in_token = token
            .probe(Feature::Scp03Session)?
            .way
            .is_some_and(|w| w.name == "in-token")
            && [keys.enc, keys.mac].iter().all(|k| {
                token
                    .key_info(*k)
                    .is_ok_and(|i| i.usages.contains(&Usage::Derive))
            });
        if !in_token {
            return SecureChannel::authenticate_host(
                transport,
                token,
                keys,
                host_challenge,
                iu,
                level,
            );
        }
        let mut context = [0u8; 16];
        for (d, s) in context
            .iter_mut()
            .zip(host_challenge.iter().chain(iu.card_challenge.iter()))
        {
            *d = *s;
        }
        let mut session = TokenSessionKeys::derive(token, keys, &context, level)?;
        let expected = session.cryptogram(scp03::CARD_CRYPTOGRAM, &context)?;
        if !bool::from(expected.ct_eq(&iu.card_cryptogram)) {
            return Err(Error::Authentication(
                "the card's cryptogram does not match: the token holds other keys than the card"
                    .into(),
            ));
        }
        let host_cryptogram = session.cryptogram(scp03::HOST_CRYPTOGRAM, &context)?;
        let cmd = session.external_authenticate(&host_cryptogram)?;
        let resp = transport.send(&cmd)?;
        expect_ok(&resp, "EXTERNAL AUTHENTICATE")?;
        Ok(SecureChannel {
            transport,
            keys: ChannelKeys::Token(Box::new(session)),
        })
    }

    /// Which way this channel's session keys took.
    pub fn session_key_path(&self) -> SessionKeyPath {
        match self.keys {
            ChannelKeys::Host(_) => SessionKeyPath::Host,
            ChannelKeys::Token(_) => SessionKeyPath::InToken,
        }
    }

    /// The host way: session keys from the token's AES-CMAC under the static keys, held on the host.
    fn authenticate_host(
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
        Ok(SecureChannel {
            transport,
            keys: ChannelKeys::Host(session),
        })
    }

    /// Sends a command through the channel (MAC and encryption per the security level) and returns the
    /// verified, decrypted response. Any status word is returned; see [`SecureChannel::send_ok`].
    pub fn send(&mut self, cmd: &CommandApdu) -> Result<ResponseApdu, Error> {
        match &mut self.keys {
            ChannelKeys::Host(session) => {
                let wrapped = session
                    .wrap(cmd)
                    .map_err(|e| Error::Card(format!("cannot wrap command: {e}")))?;
                let resp = self.transport.send(&wrapped)?;
                session
                    .unwrap_response(&resp)
                    .map_err(|e| Error::Authentication(format!("response: {e}")))
            }
            ChannelKeys::Token(session) => {
                let wrapped = session.wrap(cmd)?;
                let resp = self.transport.send(&wrapped)?;
                session.unwrap_response(&resp)
            }
        }
    }

    /// Sends a command and fails unless the card answers 9000.
    pub fn send_ok(&mut self, cmd: &CommandApdu, what: &str) -> Result<ResponseApdu, Error> {
        let resp = self.send(cmd)?;
        expect_ok(&resp, what)?;
        Ok(resp)
    }
}
