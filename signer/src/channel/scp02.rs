//! The host side of SCP02 (GPC 2.3.1 Appendix E, i = `15` / `55`) with the static keys in the token.
//!
//! The token computes the session keys (3DES-CBC under static ENC, MAC and DEK); the session keys live on
//! the host for the session, wiped on drop, and the wire format comes from `gp_core::scp02`, the code the
//! card runs. PUT KEY key data is the new key's 3DES-ECB encryption under S-DEK, which must happen inside
//! the token: S-DEK becomes a session object and the token wraps the new key under it
//! ([`Feature::Scp02KeyLoading`], `CKM_DES3_ECB` wrap). A token without that wrap (SoftHSM2) stops with the
//! probe's refusal; the new key is never exported to encrypt it outside.

use super::{expect_ok, send_plain, StaticKeys};
use crate::error::Error;
use crate::transport::Transport;
use gp_core::apdu::{CommandApdu, ResponseApdu};
use gp_core::commands;
use gp_core::commands::put_key::KeyData;
use gp_core::kcv::KcvMethod;
use gp_core::scp02::{self, BlockCipher3Des, InitializeUpdateResponse, SecurityLevel, Session};
use keyman::hsm::capabilities::Feature;
use keyman::hsm::{KeyHandle, SecretKeyType, TokenSession, Usage};
use secrecy::SecretSlice;

/// A static 3DES key inside the token, used for SCP02's session key derivation.
struct TokenDes<'a, 'h> {
    session: &'a TokenSession<'h>,
    key: KeyHandle,
}

impl BlockCipher3Des for TokenDes<'_, '_> {
    type Error = keyman::Error;

    fn encrypt_cbc_zero_iv(&mut self, data: &[u8]) -> Result<Vec<u8>, keyman::Error> {
        let mut buf = data.to_vec();
        while buf.len() % 8 != 0 {
            buf.push(0);
        }
        self.session.encrypt_cbc(self.key, &[0; 8], &buf)
    }
}

/// INITIALIZE UPDATE for SCP02: the host challenge from the token, the card's answer parsed (and refused
/// unless it speaks SCP02).
pub fn initialize_update(
    t: &mut dyn Transport,
    token: &TokenSession<'_>,
    kvn: u8,
) -> Result<([u8; 8], InitializeUpdateResponse), Error> {
    let hc: [u8; 8] = token
        .random(8)?
        .try_into()
        .map_err(|_| Error::Card("the token returned a short random".into()))?;
    let resp = send_plain(
        t,
        &commands::initialize_update(kvn, &hc),
        "INITIALIZE UPDATE",
    )?;
    let iu = InitializeUpdateResponse::parse(&resp.data)
        .map_err(|e| Error::Card(format!("malformed SCP02 INITIALIZE UPDATE response: {e}")))?;
    Ok((hc, iu))
}

/// An authenticated SCP02 channel to the selected security domain.
pub struct Scp02Channel<'t> {
    transport: &'t mut dyn Transport,
    token: &'t TokenSession<'t>,
    session: Session,
}

impl<'t> Scp02Channel<'t> {
    /// Completes the handshake: session keys from the token's 3DES-CBC under the static keys, the card's
    /// cryptogram checked in constant time, then EXTERNAL AUTHENTICATE at `level` (`00`, `01` or `03`).
    /// `icv_encryption` follows bit `10` of the key set's "i" parameter (set for i = `15` and `55`).
    pub fn authenticate(
        transport: &'t mut dyn Transport,
        token: &'t TokenSession<'_>,
        keys: StaticKeys,
        host_challenge: [u8; 8],
        iu: &InitializeUpdateResponse,
        level: SecurityLevel,
        icv_encryption: bool,
    ) -> Result<Scp02Channel<'t>, Error> {
        for k in [keys.enc, keys.mac, keys.dek] {
            if !k.key_type().is_some_and(SecretKeyType::is_des) {
                return Err(Error::Usage("SCP02 needs triple-DES static keys".into()));
            }
        }
        let des = |key| TokenDes {
            session: token,
            key,
        };
        let seq = iu.sequence_counter;
        let session_keys = scp02::derive_session_keys(
            &mut des(keys.enc),
            &mut des(keys.mac),
            &mut des(keys.dek),
            seq,
        )
        .map_err(|e| Error::Authentication(format!("SCP02 session keys: {e}")))?;
        scp02::verify_card_cryptogram(
            &session_keys,
            &host_challenge,
            seq,
            &iu.card_challenge,
            &iu.card_cryptogram,
        )
        .map_err(|_| {
            Error::Authentication(
                "the card's cryptogram does not match: the token holds other keys than the card"
                    .into(),
            )
        })?;
        let host_cryptogram =
            scp02::host_cryptogram(&session_keys, &host_challenge, seq, &iu.card_challenge);
        let mut session = Session::host(session_keys, level)
            .map_err(|e| Error::Usage(format!("SCP02: {e}")))?
            .with_icv_encryption(icv_encryption);
        let cmd = session.external_authenticate(&host_cryptogram);
        let resp = transport.send(&cmd)?;
        expect_ok(&resp, "EXTERNAL AUTHENTICATE")?;
        Ok(Scp02Channel {
            transport,
            token,
            session,
        })
    }

    /// Sends a command through the channel (C-MAC, C-DEC per the level) and returns the verified response.
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

    /// The PUT KEY key data of a two-key 3DES key in the token: `80 10 E(S-DEK, key) 03 KCV`, wrapped by
    /// the token with `CKM_DES3_ECB` under this session's S-DEK (a session object for the call), the KCV
    /// computed by the token. `key` must be extractable (only as wrapped) and allowed to encrypt.
    pub fn put_key_data(&self, key: KeyHandle) -> Result<KeyData, Error> {
        self.token.way_for(Feature::Scp02KeyLoading)?;
        let s_dek = self.token.import_session_key(
            &SecretSlice::from(self.session.keys().dek.as_bytes().to_vec()),
            SecretKeyType::Des3TwoKey,
            &[Usage::Wrap],
        )?;
        let wrapped = self.token.wrap_ecb(s_dek.handle(), key)?;
        let block: [u8; 16] = wrapped.as_slice().try_into().map_err(|_| {
            Error::Card(format!(
                "the token wrapped a 3DES key into {} bytes, not 16",
                wrapped.len()
            ))
        })?;
        let kcv = self.token.kcv_by_encryption(key, KcvMethod::Des3Zeros)?;
        Ok(KeyData::des3(block, kcv.value))
    }
}

/// PUT KEY over SCP02: the three 3DES keys `keys` (ENC, MAC, DEK; extractable only wrapped, allowed to
/// encrypt) become key set `new_kvn`, replacing `old_kvn` (0 adds a set). Each key is wrapped by the token
/// under this session's S-DEK; the card's confirmation (KVN and KCVs) must equal what the token computed.
/// Returns the KCVs.
pub fn put_key_set(
    ch: &mut Scp02Channel<'_>,
    keys: [KeyHandle; 3],
    old_kvn: u8,
    new_kvn: u8,
) -> Result<[[u8; 3]; 3], Error> {
    let mut data = Vec::with_capacity(3);
    let mut kcvs = [[0u8; 3]; 3];
    for (slot, key) in kcvs.iter_mut().zip(keys) {
        let key_data = ch.put_key_data(key)?;
        let kcv: [u8; 3] = key_data
            .kcv
            .as_slice()
            .try_into()
            .map_err(|_| Error::Card("a 3DES KCV has 3 bytes".into()))?;
        *slot = kcv;
        data.push(key_data);
    }
    let cmd = gp_core::commands::put_key::PutKey {
        new_kvn,
        keys: data,
    }
    .to_apdu(old_kvn, 1)
    .map_err(|e| Error::Usage(format!("PUT KEY: {e}")))?;
    let resp = ch.send_ok(&cmd, "PUT KEY")?;
    let confirmed = gp_core::commands::put_key::PutKeyResponse::parse(&resp.data)
        .map_err(|e| Error::Card(format!("PUT KEY response: {e}")))?;
    let expected: Vec<u8> = kcvs.concat();
    if confirmed.kvn != new_kvn || confirmed.check_values != expected {
        return Err(Error::Card(format!(
            "PUT KEY: the card confirmed KVN {:02X} KCVs {} but the token computed {}",
            confirmed.kvn,
            hex::encode_upper(&confirmed.check_values),
            hex::encode_upper(&expected)
        )));
    }
    Ok(kcvs)
}

/// How tools describe where an SCP02 channel's session keys are.
pub const SESSION_KEYS: &str =
    "SCP02 session keys on the host (computed with the token's CKM_DES3_CBC, wiped after \
     the session); PUT KEY key data wrapped by the token (CKM_DES3_ECB under S-DEK)";

/// The key version number the issuer's per-card SCP02 key set gets at personalisation.
pub const ISSUER_KVN_02: u8 = 0x21;

/// Personalises a fab-fresh SCP02 card (the ISD selected): the channel opens with the default transport
/// key, the card's ENC, MAC and DEK are derived in the token from `master` by `scheme` (3DES) and sent by
/// PUT KEY wrapped under the session DEK, then the card moves to INITIALIZED and SECURED. Every token
/// capability is checked before the card is changed: a token without DES3-ECB wrap (SoftHSM2) or without
/// the scheme's derivation (NSS's key database for `emv`) leaves the card as it was.
pub fn personalise(
    t: &mut dyn Transport,
    token: &TokenSession<'_>,
    master: KeyHandle,
    scheme: gp_core::diversify::Scheme,
    allow_same_channel_keys: bool,
) -> Result<crate::gp::Personalised, Error> {
    token.way_for(Feature::Scp02KeyLoading)?;
    crate::diversify::check_master(token, master, scheme, SecretKeyType::Des3TwoKey)?;
    let transport = token.import_session_key(
        &SecretSlice::from(crate::gp::DEFAULT_TRANSPORT_KEY.to_vec()),
        SecretKeyType::Des3TwoKey,
        &[Usage::Encrypt],
    )?;
    let statics = StaticKeys {
        enc: transport.handle(),
        mac: transport.handle(),
        dek: transport.handle(),
    };
    let (hc, iu) = initialize_update(t, token, 0)?;
    let new = crate::diversify::derive_card_keys(
        token,
        master,
        scheme,
        &iu.kdd,
        SecretKeyType::Des3TwoKey,
        crate::diversify::Purpose::PutKey,
    )?;
    let mut ch =
        Scp02Channel::authenticate(t, token, statics, hc, &iu, SecurityLevel::C_MAC_C_DEC, true)?;
    if !allow_same_channel_keys {
        crate::gp::refuse_same_channel_keys(
            token,
            &statics,
            &new,
            &format!(
                "PUT KEY of key set {ISSUER_KVN_02:02X} replacing {:02X}",
                iu.kvn
            ),
        )?;
    }
    let kcvs = put_key_set(
        &mut ch,
        [new.enc.handle(), new.mac.handle(), new.dek.handle()],
        iu.kvn,
        ISSUER_KVN_02,
    )?;
    for state in [0x07, 0x0F] {
        ch.send_ok(&commands::set_status(0x80, state, &[]), "SET STATUS")?;
    }
    Ok(crate::gp::Personalised {
        kdd: iu.kdd,
        kvn: ISSUER_KVN_02,
        kcvs,
        scp: scp02::SCP_ID,
        session_keys: SESSION_KEYS,
    })
}
