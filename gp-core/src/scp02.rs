//! Secure Channel Protocol '02' (GPC 2.3.1 Appendix E), explicit initiation, i = `15` / `55`.
//!
//! Two-key 3DES session keys derived by 3DES-CBC from a sequence counter, full-3DES-MAC
//! cryptograms, retail-MAC C-MAC with ICV encryption, C-DECRYPTION (3DES-CBC, zero ICV) and R-MAC.
//! SCP02 has no response encryption, so level `33` does not exist here. The static keys are reached
//! through [`BlockCipher3Des`] so the host can keep them inside an HSM.
//!
//! Like [`crate::scp03::Session`], a [`Session`] dies on the first security error.

use alloc::vec::Vec;
use core::convert::Infallible;
use core::fmt;

use zeroize::Zeroizing;

use crate::apdu::{self, CommandApdu, ResponseApdu};
use crate::commands::put_key::{KeyComponent, KeyData, KEY_TYPE_DES};
use crate::crypto;
use crate::kcv;
use crate::keys::Des3Key;
use crate::sw::Sw;
use crate::util::{first_n, take_array};

pub use crate::scp03::SecurityLevel;

/// Session key derivation constant for C-MAC.
pub const DERIVE_C_MAC: [u8; 2] = [0x01, 0x01];
/// Session key derivation constant for R-MAC.
pub const DERIVE_R_MAC: [u8; 2] = [0x01, 0x02];
/// Session key derivation constant for the data encryption key.
pub const DERIVE_DEK: [u8; 2] = [0x01, 0x81];
/// Session key derivation constant for encryption.
pub const DERIVE_ENC: [u8; 2] = [0x01, 0x82];

/// SCP identifier returned in the key information of INITIALIZE UPDATE.
pub const SCP_ID: u8 = 0x02;
/// Length of a C-MAC / R-MAC.
pub const MAC_LEN: usize = 8;

/// "i" bit: ICV encryption for the C-MAC session (set in i = `15` and `55`).
pub const I_ICV_ENCRYPTION: u8 = 0x10;
/// "i" bit: well-known pseudo-random card challenge (set in i = `55`).
pub const I_PSEUDO_RANDOM: u8 = 0x40;

/// 3DES-CBC with a zero ICV under a static key: the one operation SCP02 session key derivation
/// needs, so the host can run it inside an HSM.
pub trait BlockCipher3Des {
    /// Error of the underlying key store ([`Infallible`] for software keys).
    type Error;
    /// 3DES-CBC encryption with a zero ICV of `data` (a multiple of 8 bytes).
    fn encrypt_cbc_zero_iv(&mut self, data: &[u8]) -> Result<Vec<u8>, Self::Error>;
}

impl BlockCipher3Des for Des3Key {
    type Error = Infallible;
    /// Data that is not a multiple of 8 bytes is zero-padded first.
    fn encrypt_cbc_zero_iv(&mut self, data: &[u8]) -> Result<Vec<u8>, Infallible> {
        let mut buf = data.to_vec();
        crypto::zero_pad(&mut buf, 8);
        let _ = crypto::tdes_cbc_encrypt(self, &[0; 8], &mut buf);
        Ok(buf)
    }
}

impl<P: BlockCipher3Des + ?Sized> BlockCipher3Des for &mut P {
    type Error = P::Error;
    fn encrypt_cbc_zero_iv(&mut self, data: &[u8]) -> Result<Vec<u8>, P::Error> {
        (**self).encrypt_cbc_zero_iv(data)
    }
}

/// Errors of the SCP02 secure channel; `E` is the error of an HSM-backed [`BlockCipher3Des`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scp02Error<E = Infallible> {
    /// A C-MAC or R-MAC did not verify. The session is aborted.
    BadMac,
    /// The host or card cryptogram did not verify. The session is aborted.
    BadCryptogram,
    /// Bytes that do not have the structure the protocol requires.
    Malformed,
    /// A data field of the wrong length.
    WrongLength,
    /// Decrypted data without valid `80 00…` padding. The session is aborted.
    BadPadding,
    /// A security level SCP02 does not define (e.g. `33`: SCP02 has no R-ENCRYPTION).
    UnsupportedLevel(u8),
    /// INITIALIZE UPDATE answered with another SCP identifier (the value is given).
    UnsupportedProtocol(u8),
    /// The operation needs an open session but EXTERNAL AUTHENTICATE has not succeeded yet.
    NotAuthenticated,
    /// The operation is not valid in the session's current state.
    WrongState,
    /// The session was aborted by an earlier security error.
    SessionAborted,
    /// A command without secure messaging arrived while the level requires it. The session is
    /// aborted.
    NotSecured,
    /// The wrapped command would exceed what an APDU can carry.
    DataTooLong,
    /// The key store returned a derivation result of the wrong length.
    BadDerivation,
    /// The 3DES key store (e.g. the HSM) failed.
    Cipher(E),
}

impl<E> Scp02Error<E> {
    /// The status word a card answers with (same mapping as SCP03).
    pub fn sw(&self) -> Sw {
        match self {
            Scp02Error::BadMac
            | Scp02Error::BadPadding
            | Scp02Error::NotAuthenticated
            | Scp02Error::SessionAborted
            | Scp02Error::NotSecured => Sw::SECURITY_STATUS_NOT_SATISFIED,
            Scp02Error::BadCryptogram => Sw::VERIFICATION_FAILED,
            Scp02Error::Malformed | Scp02Error::UnsupportedProtocol(_) => Sw::INCORRECT_DATA,
            Scp02Error::WrongLength | Scp02Error::DataTooLong => Sw::WRONG_LENGTH,
            Scp02Error::UnsupportedLevel(_) => Sw::INCORRECT_P1P2,
            Scp02Error::WrongState => Sw::CONDITIONS_NOT_SATISFIED,
            Scp02Error::BadDerivation | Scp02Error::Cipher(_) => Sw::UNKNOWN,
        }
    }
}

impl Scp02Error<Infallible> {
    /// Converts an error of the software path into one with any key-store error type.
    pub fn widen<F>(self) -> Scp02Error<F> {
        match self {
            Scp02Error::BadMac => Scp02Error::BadMac,
            Scp02Error::BadCryptogram => Scp02Error::BadCryptogram,
            Scp02Error::Malformed => Scp02Error::Malformed,
            Scp02Error::WrongLength => Scp02Error::WrongLength,
            Scp02Error::BadPadding => Scp02Error::BadPadding,
            Scp02Error::UnsupportedLevel(l) => Scp02Error::UnsupportedLevel(l),
            Scp02Error::UnsupportedProtocol(p) => Scp02Error::UnsupportedProtocol(p),
            Scp02Error::NotAuthenticated => Scp02Error::NotAuthenticated,
            Scp02Error::WrongState => Scp02Error::WrongState,
            Scp02Error::SessionAborted => Scp02Error::SessionAborted,
            Scp02Error::NotSecured => Scp02Error::NotSecured,
            Scp02Error::DataTooLong => Scp02Error::DataTooLong,
            Scp02Error::BadDerivation => Scp02Error::BadDerivation,
            Scp02Error::Cipher(e) => match e {},
        }
    }
}

impl<E: fmt::Display> fmt::Display for Scp02Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scp02Error::BadMac => f.write_str("SCP02: MAC verification failed"),
            Scp02Error::BadCryptogram => f.write_str("SCP02: cryptogram verification failed"),
            Scp02Error::Malformed => f.write_str("SCP02: malformed data"),
            Scp02Error::WrongLength => f.write_str("SCP02: wrong data length"),
            Scp02Error::BadPadding => f.write_str("SCP02: bad padding after decryption"),
            Scp02Error::UnsupportedLevel(l) => {
                write!(f, "SCP02: unsupported security level {l:02X}")
            }
            Scp02Error::UnsupportedProtocol(p) => {
                write!(f, "SCP02: card answered with SCP {p:02X}")
            }
            Scp02Error::NotAuthenticated => f.write_str("SCP02: secure channel not authenticated"),
            Scp02Error::WrongState => {
                f.write_str("SCP02: operation not valid in this session state")
            }
            Scp02Error::SessionAborted => f.write_str("SCP02: secure channel aborted"),
            Scp02Error::NotSecured => f.write_str("SCP02: command lacks required secure messaging"),
            Scp02Error::DataTooLong => f.write_str("SCP02: wrapped command too long"),
            Scp02Error::BadDerivation => {
                f.write_str("SCP02: key store returned a derivation of the wrong length")
            }
            Scp02Error::Cipher(e) => write!(f, "SCP02: key store failed: {e}"),
        }
    }
}

/// The four SCP02 session keys of one session; all wipe on drop and hide from `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKeys {
    /// S-ENC: cryptograms and command encryption.
    pub enc: Des3Key,
    /// S-MAC (C-MAC session key).
    pub mac: Des3Key,
    /// R-MAC session key.
    pub rmac: Des3Key,
    /// S-DEK: encryption of sensitive data (PUT KEY key data).
    pub dek: Des3Key,
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionKeys")
            .field("enc", &self.enc)
            .field("mac", &self.mac)
            .field("rmac", &self.rmac)
            .field("dek", &self.dek)
            .finish()
    }
}

/// One session key: `3DES-CBC(static, zero ICV, constant ‖ seq ‖ 00×12)` (GPC E.4.1).
pub fn session_key<P: BlockCipher3Des>(
    static_key: &mut P,
    constant: [u8; 2],
    seq: [u8; 2],
) -> Result<Des3Key, Scp02Error<P::Error>> {
    let mut data = [0u8; 16];
    for (d, s) in data.iter_mut().zip(constant.iter().chain(seq.iter())) {
        *d = *s;
    }
    let out = Zeroizing::new(
        static_key
            .encrypt_cbc_zero_iv(&data)
            .map_err(Scp02Error::Cipher)?,
    );
    Des3Key::from_slice(&out).map_err(|_| Scp02Error::BadDerivation)
}

/// Derives S-ENC, C-MAC, R-MAC and DEK session keys from the three static keys and the sequence
/// counter. For a key set with a single base key, pass the same key three times.
pub fn derive_session_keys<E, M, D>(
    static_enc: &mut E,
    static_mac: &mut M,
    static_dek: &mut D,
    seq: [u8; 2],
) -> Result<SessionKeys, Scp02Error<E::Error>>
where
    E: BlockCipher3Des,
    M: BlockCipher3Des<Error = E::Error>,
    D: BlockCipher3Des<Error = E::Error>,
{
    Ok(SessionKeys {
        enc: session_key(static_enc, DERIVE_ENC, seq)?,
        mac: session_key(static_mac, DERIVE_C_MAC, seq)?,
        rmac: session_key(static_mac, DERIVE_R_MAC, seq)?,
        dek: session_key(static_dek, DERIVE_DEK, seq)?,
    })
}

fn full_mac(key: &Des3Key, parts: &[&[u8]]) -> [u8; 8] {
    let data: Vec<u8> = parts.concat();
    let padded = crypto::pad80(&data, 8);
    crypto::tdes_cbc_mac_padded(key, &[0; 8], &padded).unwrap_or([0; 8])
}

/// Card cryptogram (GPC E.4.2.1): full 3DES MAC under S-ENC over `hc ‖ seq ‖ cc`.
pub fn card_cryptogram(keys: &SessionKeys, hc: &[u8; 8], seq: [u8; 2], cc: &[u8; 6]) -> [u8; 8] {
    full_mac(&keys.enc, &[hc, &seq, cc])
}

/// Host cryptogram (GPC E.4.2.2): full 3DES MAC under S-ENC over `seq ‖ cc ‖ hc`.
pub fn host_cryptogram(keys: &SessionKeys, hc: &[u8; 8], seq: [u8; 2], cc: &[u8; 6]) -> [u8; 8] {
    full_mac(&keys.enc, &[&seq, cc, hc])
}

/// Checks the card cryptogram in constant time (host side).
pub fn verify_card_cryptogram(
    keys: &SessionKeys,
    hc: &[u8; 8],
    seq: [u8; 2],
    cc: &[u8; 6],
    received: &[u8; 8],
) -> Result<(), Scp02Error> {
    if crypto::ct_eq(&card_cryptogram(keys, hc, seq, cc), received) {
        Ok(())
    } else {
        Err(Scp02Error::BadCryptogram)
    }
}

/// The well-known pseudo-random card challenge (GPC E.4.2.3, i = `55`): the first six bytes of
/// the retail MAC under the C-MAC session key, zero ICV, over the padded AID.
pub fn pseudo_random_challenge(c_mac_key: &Des3Key, aid: &[u8]) -> [u8; 6] {
    first_n::<6>(&retail_mac(c_mac_key, &[0; 8], aid))
}

fn retail_mac(key: &Des3Key, icv: &[u8; 8], data: &[u8]) -> [u8; 8] {
    let padded = crypto::pad80(data, 8);
    crypto::retail_mac_padded(key, icv, &padded).unwrap_or([0; 8])
}

/// The data field of the SCP02 INITIALIZE UPDATE response (GPC Table E-8), 28 bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitializeUpdateResponse {
    /// Key diversification data.
    pub kdd: [u8; 10],
    /// Key version number.
    pub kvn: u8,
    /// Secure channel protocol identifier, `02`.
    pub scp_id: u8,
    /// Sequence counter used for the session keys.
    pub sequence_counter: [u8; 2],
    /// Card challenge (6 bytes).
    pub card_challenge: [u8; 6],
    /// Card cryptogram.
    pub card_cryptogram: [u8; 8],
}

impl InitializeUpdateResponse {
    /// Parses the 28-byte response data; rejects another length or SCP identifier.
    pub fn parse(bytes: &[u8]) -> Result<Self, Scp02Error> {
        let (kdd, rest) = take_array::<10>(bytes).ok_or(Scp02Error::WrongLength)?;
        let (&[kvn, scp_id], rest) = take_array::<2>(rest).ok_or(Scp02Error::WrongLength)?;
        let (seq, rest) = take_array::<2>(rest).ok_or(Scp02Error::WrongLength)?;
        let (cc, rest) = take_array::<6>(rest).ok_or(Scp02Error::WrongLength)?;
        let (crypt, rest) = take_array::<8>(rest).ok_or(Scp02Error::WrongLength)?;
        if !rest.is_empty() {
            return Err(Scp02Error::WrongLength);
        }
        if scp_id != SCP_ID {
            return Err(Scp02Error::UnsupportedProtocol(scp_id));
        }
        Ok(InitializeUpdateResponse {
            kdd: *kdd,
            kvn,
            scp_id,
            sequence_counter: *seq,
            card_challenge: *cc,
            card_cryptogram: *crypt,
        })
    }

    /// Encodes the response data field.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(28);
        out.extend_from_slice(&self.kdd);
        out.extend_from_slice(&[self.kvn, self.scp_id]);
        out.extend_from_slice(&self.sequence_counter);
        out.extend_from_slice(&self.card_challenge);
        out.extend_from_slice(&self.card_cryptogram);
        out
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Host,
    Card,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Initiated,
    Open,
    Aborted,
}

/// One side of an SCP02 secure channel session (explicit initiation).
///
/// Same flow as [`crate::scp03::Session`]. The R-MAC of each response covers the command it
/// answers, so the host must unwrap each response before wrapping the next command.
pub struct Session {
    keys: SessionKeys,
    role: Role,
    state: State,
    level: SecurityLevel,
    icv_encryption: bool,
    /// The last verified / generated C-MAC (ICV source for the next one).
    c_mac: [u8; 8],
    /// The last R-MAC (ICV of the next one); starts as the EXTERNAL AUTHENTICATE C-MAC.
    r_mac: [u8; 8],
    /// Stripped command `CLA INS P1 P2 Lc data` awaiting its response's R-MAC.
    rmac_command: Option<Vec<u8>>,
}

impl fmt::Debug for Session {
    /// State and level; never keys.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("level", &self.level)
            .field("icv_encryption", &self.icv_encryption)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Host side, for i = `15` / `55` (ICV encryption on). `level` must be an SCP02 level;
    /// anything else (e.g. `33`) gives [`Scp02Error::UnsupportedLevel`].
    pub fn host(keys: SessionKeys, level: SecurityLevel) -> Result<Session, Scp02Error> {
        if SecurityLevel::parse_scp02(level.bits()).is_none() {
            return Err(Scp02Error::UnsupportedLevel(level.bits()));
        }
        Ok(Session::new(keys, Role::Host, level))
    }

    /// Card side, for i = `15` / `55`, waiting for EXTERNAL AUTHENTICATE.
    pub fn card(keys: SessionKeys) -> Session {
        Session::new(keys, Role::Card, SecurityLevel::NO_SECURITY)
    }

    fn new(keys: SessionKeys, role: Role, level: SecurityLevel) -> Session {
        Session {
            keys,
            role,
            state: State::Initiated,
            level,
            icv_encryption: true,
            c_mac: [0; 8],
            r_mac: [0; 8],
            rmac_command: None,
        }
    }

    /// Turns ICV encryption off or on, for key sets whose "i" lacks bit `10` (e.g. i = `05`).
    pub fn with_icv_encryption(mut self, on: bool) -> Session {
        self.icv_encryption = on;
        self
    }

    /// The level in force.
    pub fn level(&self) -> SecurityLevel {
        self.level
    }

    /// True once EXTERNAL AUTHENTICATE has succeeded and no security error occurred since.
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// True when a security error ended the session.
    pub fn is_aborted(&self) -> bool {
        self.state == State::Aborted
    }

    /// Ends the session deliberately.
    pub fn abort(&mut self) {
        self.state = State::Aborted;
    }

    /// The session keys (e.g. S-DEK for PUT KEY key data).
    pub fn keys(&self) -> &SessionKeys {
        &self.keys
    }

    fn fail<T>(&mut self, e: Scp02Error) -> Result<T, Scp02Error> {
        self.state = State::Aborted;
        self.rmac_command = None;
        Err(e)
    }

    fn require_open(&self, role: Role) -> Result<(), Scp02Error> {
        match self.state {
            State::Open if self.role == role => Ok(()),
            State::Open => Err(Scp02Error::WrongState),
            State::Initiated => Err(Scp02Error::NotAuthenticated),
            State::Aborted => Err(Scp02Error::SessionAborted),
        }
    }

    /// ICV for the next C-MAC: the previous C-MAC, encrypted with single DES under K1 of S-MAC
    /// when ICV encryption is on (GPC E.3.4).
    fn next_icv(&self) -> [u8; 8] {
        let mut icv = self.c_mac;
        if self.icv_encryption {
            crypto::des_k1_encrypt_block(&self.keys.mac, &mut icv);
        }
        icv
    }

    fn c_mac_over(
        &self,
        icv: &[u8; 8],
        cla: u8,
        ins: u8,
        p1: u8,
        p2: u8,
        plain: &[u8],
    ) -> Result<[u8; 8], Scp02Error> {
        let header = header_bytes(apdu::mac_cla(cla), ins, p1, p2, plain.len() + MAC_LEN)?;
        let mut data = header;
        data.extend_from_slice(plain);
        Ok(retail_mac(&self.keys.mac, icv, &data))
    }

    /// The stripped command for the R-MAC: plain CLA on channel 0, Lc of the plain data (always
    /// present, `00` for cases 1 and 2), plain data.
    fn stripped_command(
        cmd_cla: u8,
        ins: u8,
        p1: u8,
        p2: u8,
        plain: &[u8],
    ) -> Result<Vec<u8>, Scp02Error> {
        let mut out = header_bytes(apdu::plain_cla(cmd_cla), ins, p1, p2, plain.len())?;
        out.extend_from_slice(plain);
        Ok(out)
    }

    /// The R-MAC over `stripped ‖ Li ‖ data ‖ SW` (GPC E.4.5). `Li` is one byte, so response data
    /// longer than 255 bytes cannot be R-MACed: `None` (never a length cut to its low byte).
    fn response_mac(&self, stripped: &[u8], resp_data: &[u8], sw: u16) -> Option<[u8; 8]> {
        let mut data = Vec::with_capacity(stripped.len() + resp_data.len() + 3);
        data.extend_from_slice(stripped);
        if Sw(sw).is_success_or_warning() {
            data.push(u8::try_from(resp_data.len()).ok()?);
            data.extend_from_slice(resp_data);
        } else {
            data.push(0);
        }
        data.extend_from_slice(&sw.to_be_bytes());
        Some(retail_mac(&self.keys.rmac, &self.r_mac, &data))
    }

    /// Host: builds EXTERNAL AUTHENTICATE (`84 82 level 00 10 cryptogram C-MAC`, zero ICV) and
    /// opens the session.
    pub fn external_authenticate(&mut self, host_cryptogram: &[u8; 8]) -> CommandApdu {
        let p1 = self.level.bits();
        let mut mac_input = alloc::vec![0x84, 0x82, p1, 0x00, 0x10];
        mac_input.extend_from_slice(host_cryptogram);
        let mac = retail_mac(&self.keys.mac, &[0; 8], &mac_input);
        self.c_mac = mac;
        self.r_mac = mac;
        self.rmac_command = None;
        self.state = State::Open;
        let mut data = Vec::with_capacity(16);
        data.extend_from_slice(host_cryptogram);
        data.extend_from_slice(&mac);
        CommandApdu::new(0x84, 0x82, p1, 0x00, data, None)
    }

    /// Host: protects a plain command: C-MAC over the plain command with the modified header,
    /// then C-DECRYPTION of a non-empty data field. With R-MAC the stripped command is kept for
    /// the response and a missing Le becomes `00` (GPC E.4.5).
    pub fn wrap(&mut self, cmd: &CommandApdu) -> Result<CommandApdu, Scp02Error> {
        self.require_open(Role::Host)?;
        let le = match cmd.le {
            None if self.level.r_mac() => Some(apdu::SHORT_MAX_LE),
            other => other,
        };
        self.rmac_command = if self.level.r_mac() {
            Some(Self::stripped_command(
                cmd.cla, cmd.ins, cmd.p1, cmd.p2, &cmd.data,
            )?)
        } else {
            None
        };
        if !self.level.c_mac() {
            return Ok(CommandApdu { le, ..cmd.clone() });
        }
        let icv = self.next_icv();
        let mac = self.c_mac_over(&icv, cmd.cla, cmd.ins, cmd.p1, cmd.p2, &cmd.data)?;
        let mut body = if self.level.c_dec() && !cmd.data.is_empty() {
            let mut padded = Zeroizing::new(crypto::pad80(&cmd.data, 8));
            if crypto::tdes_cbc_encrypt(&self.keys.enc, &[0; 8], &mut padded).is_err() {
                return Err(Scp02Error::Malformed);
            }
            core::mem::take(&mut *padded)
        } else {
            cmd.data.clone()
        };
        body.extend_from_slice(&mac);
        if body.len() > apdu::EXTENDED_MAX_DATA {
            // Nothing is sent, so the C-MAC chain and the pending R-MAC command stay as they were.
            self.rmac_command = None;
            return Err(Scp02Error::DataTooLong);
        }
        // Committed only once the command can be sent: a refused command must not advance the
        // chain the card will check the next C-MAC against.
        self.c_mac = mac;
        Ok(CommandApdu::new(
            apdu::with_secure_messaging(cmd.cla),
            cmd.ins,
            cmd.p1,
            cmd.p2,
            body,
            le,
        ))
    }

    /// Host: verifies the R-MAC of the response to the last wrapped command and strips it.
    ///
    /// SCP02 MACs every response, errors included (their data is not covered: `Li = 00`).
    pub fn unwrap_response(&mut self, resp: &ResponseApdu) -> Result<ResponseApdu, Scp02Error> {
        self.require_open(Role::Host)?;
        if !self.level.r_mac() {
            return Ok(resp.clone());
        }
        let Some(stripped) = self.rmac_command.take() else {
            return Err(Scp02Error::WrongState);
        };
        let Some((body, mac)) = resp.data.split_last_chunk::<MAC_LEN>() else {
            return self.fail(Scp02Error::BadMac);
        };
        if !resp.sw().is_success_or_warning() && !body.is_empty() {
            return self.fail(Scp02Error::Malformed);
        }
        let Some(expected) = self.response_mac(&stripped, body, resp.sw) else {
            return self.fail(Scp02Error::Malformed);
        };
        if !crypto::ct_eq(&expected, mac) {
            return self.fail(Scp02Error::BadMac);
        }
        self.r_mac = expected;
        Ok(ResponseApdu {
            data: body.to_vec(),
            sw: resp.sw,
        })
    }

    /// Card: verifies EXTERNAL AUTHENTICATE (C-MAC with zero ICV, host cryptogram; both constant
    /// time) and opens the session at the SCP02 level in P1.
    pub fn verify_external_authenticate(
        &mut self,
        cmd: &CommandApdu,
        expected_host_cryptogram: &[u8; 8],
    ) -> Result<SecurityLevel, Scp02Error> {
        if self.role != Role::Card || self.state != State::Initiated {
            return self.fail(Scp02Error::WrongState);
        }
        if cmd.ins != 0x82 || cmd.p2 != 0x00 || !apdu::has_secure_messaging(cmd.cla) {
            return self.fail(Scp02Error::Malformed);
        }
        let Some(level) = SecurityLevel::parse_scp02(cmd.p1) else {
            return self.fail(Scp02Error::UnsupportedLevel(cmd.p1));
        };
        let Some((cryptogram, mac)) = take_array::<8>(&cmd.data) else {
            return self.fail(Scp02Error::WrongLength);
        };
        let Some((mac, [])) = take_array::<8>(mac) else {
            return self.fail(Scp02Error::WrongLength);
        };
        let expected = self
            .c_mac_over(&[0; 8], cmd.cla, cmd.ins, cmd.p1, cmd.p2, cryptogram)
            .or_else(|e| self.fail(e))?;
        let mac_ok = crypto::ct_eq(&expected, mac);
        let crypto_ok = crypto::ct_eq(cryptogram, expected_host_cryptogram);
        if !mac_ok {
            return self.fail(Scp02Error::BadMac);
        }
        if !crypto_ok {
            return self.fail(Scp02Error::BadCryptogram);
        }
        self.c_mac = expected;
        self.r_mac = expected;
        self.level = level;
        self.state = State::Open;
        Ok(level)
    }

    /// Card: decrypts C-DEC data, verifies the C-MAC (over the plain command, GPC E.4.4/E.4.6) and
    /// returns the plain command with the secure messaging bit cleared. With R-MAC the stripped
    /// command is kept for [`Session::wrap_response`].
    pub fn unwrap_command(&mut self, cmd: &CommandApdu) -> Result<CommandApdu, Scp02Error> {
        self.require_open(Role::Card)?;
        let plain_cmd = if !self.level.c_mac() {
            cmd.clone()
        } else {
            if !apdu::has_secure_messaging(cmd.cla) {
                return self.fail(Scp02Error::NotSecured);
            }
            let Some((body, mac)) = cmd.data.split_last_chunk::<MAC_LEN>() else {
                return self.fail(Scp02Error::BadMac);
            };
            let plain = if self.level.c_dec() && !body.is_empty() {
                self.decrypt(body).or_else(|e| self.fail(e))?
            } else {
                body.to_vec()
            };
            let icv = self.next_icv();
            let expected = self
                .c_mac_over(&icv, cmd.cla, cmd.ins, cmd.p1, cmd.p2, &plain)
                .or_else(|e| self.fail(e))?;
            if !crypto::ct_eq(&expected, mac) {
                return self.fail(Scp02Error::BadMac);
            }
            self.c_mac = expected;
            CommandApdu::new(
                apdu::without_secure_messaging(cmd.cla),
                cmd.ins,
                cmd.p1,
                cmd.p2,
                plain,
                cmd.le,
            )
        };
        self.rmac_command = if self.level.r_mac() {
            let p = &plain_cmd;
            Some(
                Self::stripped_command(p.cla, p.ins, p.p1, p.p2, &p.data)
                    .or_else(|e| self.fail(e))?,
            )
        } else {
            None
        };
        Ok(plain_cmd)
    }

    fn decrypt(&self, data: &[u8]) -> Result<Vec<u8>, Scp02Error> {
        if data.len() % 8 != 0 {
            return Err(Scp02Error::BadPadding);
        }
        let mut buf = Zeroizing::new(data.to_vec());
        crypto::tdes_cbc_decrypt(&self.keys.enc, &[0; 8], &mut buf)
            .map_err(|_| Scp02Error::BadPadding)?;
        crypto::unpad80(&buf, 8)
            .map(|p| p.to_vec())
            .ok_or(Scp02Error::BadPadding)
    }

    /// Card: appends the R-MAC when the level has R-MAC (error responses carry only the R-MAC as
    /// data). Outside an open session, or without a pending command, the response is unchanged.
    pub fn wrap_response(&mut self, resp: ResponseApdu) -> ResponseApdu {
        if self.role != Role::Card || self.state != State::Open || !self.level.r_mac() {
            return resp;
        }
        let Some(stripped) = self.rmac_command.take() else {
            return resp;
        };
        let (mut data, sw) = if !resp.sw().is_success_or_warning() {
            (Vec::new(), resp.sw)
        } else if resp.data.len() > apdu::SHORT_MAX_DATA {
            // Li is one byte (GPC E.4.5): such data cannot be R-MACed, so the card answers
            // `6700` (R-MACed like every error) rather than a MAC over a length cut to a byte.
            (Vec::new(), Sw::WRONG_LENGTH.0)
        } else {
            (resp.data, resp.sw)
        };
        // Cannot fail: `data` is at most 255 bytes here.
        let mac = self.response_mac(&stripped, &data, sw).unwrap_or([0; 8]);
        self.r_mac = mac;
        data.extend_from_slice(&mac);
        ResponseApdu { data, sw }
    }
}

/// `CLA INS P1 P2 Lc` with Lc one byte up to 255, else extended (`00` + two bytes).
fn header_bytes(cla: u8, ins: u8, p1: u8, p2: u8, lc: usize) -> Result<Vec<u8>, Scp02Error> {
    apdu::lc_header(cla, ins, p1, p2, lc).ok_or(Scp02Error::DataTooLong)
}

/// Encrypts key material under S-DEK with 3DES-ECB (GPC E.4.7, explicit initiation); data that
/// is not whole 8-byte blocks is zero-padded.
pub fn encrypt_key_data(s_dek: &Des3Key, key: &[u8]) -> Vec<u8> {
    let mut buf = Zeroizing::new(Vec::with_capacity(key.len() + 8));
    buf.extend_from_slice(key);
    crypto::zero_pad(&mut buf, 8);
    let _ = crypto::tdes_ecb_encrypt(s_dek, &mut buf);
    core::mem::take(&mut *buf)
}

/// Decrypts key material encrypted by [`encrypt_key_data`]; no padding is removed (GPC E.4.7).
pub fn decrypt_key_data(s_dek: &Des3Key, data: &[u8]) -> Result<Zeroizing<Vec<u8>>, Scp02Error> {
    if data.len() % 8 != 0 {
        return Err(Scp02Error::Malformed);
    }
    let mut buf = Zeroizing::new(data.to_vec());
    crypto::tdes_ecb_decrypt(s_dek, &mut buf).map_err(|_| Scp02Error::Malformed)?;
    Ok(buf)
}

/// PUT KEY key data field for a 3DES key under S-DEK: `80 10 ciphertext 03 KCV`.
pub fn put_key_data(s_dek: &Des3Key, key: &Des3Key) -> KeyData {
    KeyData {
        components: alloc::vec![KeyComponent {
            key_type: KEY_TYPE_DES,
            block: encrypt_key_data(s_dek, key.as_bytes())
        }],
        kcv: kcv::kcv_des3(key).to_vec(),
    }
}

/// Recovers a 3DES key from a PUT KEY key data field (card side of [`put_key_data`]), checking
/// its KCV in constant time when present.
pub fn open_put_key_data(s_dek: &Des3Key, data: &KeyData) -> Result<Des3Key, Scp02Error> {
    let [component] = data.components.as_slice() else {
        return Err(Scp02Error::Malformed);
    };
    if component.key_type != KEY_TYPE_DES {
        return Err(Scp02Error::Malformed);
    }
    let (clear_len, cipher) = component
        .split_clear_length(8)
        .ok_or(Scp02Error::Malformed)?;
    let plain = decrypt_key_data(s_dek, cipher)?;
    let bytes = plain
        .get(..clear_len.unwrap_or(plain.len()))
        .ok_or(Scp02Error::Malformed)?;
    let key = Des3Key::from_slice(bytes).map_err(|_| Scp02Error::Malformed)?;
    if !data.kcv.is_empty() && !crypto::ct_eq(&kcv::kcv_des3(&key), &data.kcv) {
        return Err(Scp02Error::BadCryptogram);
    }
    Ok(key)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use alloc::vec;

    use crate::util::h;
    fn dkey(s: &str) -> Des3Key {
        Des3Key::from_slice(&h(s)).unwrap()
    }
    const K: &str = "404142434445464748494A4B4C4D4E4F";

    fn keys_k(seq: [u8; 2]) -> SessionKeys {
        let (mut e, mut m, mut d) = (dkey(K), dkey(K), dkey(K));
        derive_session_keys(&mut e, &mut m, &mut d, seq).unwrap()
    }

    #[test]
    fn session_key_table() {
        // GP-FACTS "SCP02" table: seq 0000, 0001, FFFF with static K (self-test).
        let rows = [
            (
                [0x00, 0x00],
                "010B0371D78377B801F2D62AFC671D95",
                "D1C28C601652A4770D67AD82D2D2E1C4",
                "E11987EE331B417A5D67D760692F89D4",
            ),
            (
                [0x00, 0x01],
                "25C9794A1205FF244F5FA0378D2F8D59",
                "9BED98891580C3B245FE9EC58BFA8D2A",
                "0E51FDF196141F227A57BD154012FD39",
            ),
            (
                [0xFF, 0xFF],
                "E75ADAAF916DE18A01AB9ACC6EF84B8B",
                "66F6B778A1FAFCCC9DE6C253233BE33D",
                "3C750E0F60899FFC8F0D26D860AE6C95",
            ),
        ];
        for (seq, enc, mac, dek) in rows {
            let k = keys_k(seq);
            assert_eq!(k.enc, dkey(enc));
            assert_eq!(k.mac, dkey(mac));
            assert_eq!(k.dek, dkey(dek));
        }
    }

    #[test]
    fn put_key_vector() {
        // GP-FACTS: PUT KEY of K under S-DEK(seq 0000) → EFBEE6C6D99D7B70BDE9D7E927F020AF,
        // component `80 10 EFBE…20AF 03 8BAF47`.
        let k = keys_k([0, 0]);
        assert_eq!(
            encrypt_key_data(&k.dek, &h(K)),
            h("EFBEE6C6D99D7B70BDE9D7E927F020AF")
        );
        let kd = put_key_data(&k.dek, &dkey(K));
        assert_eq!(
            kd.to_bytes().unwrap(),
            h("8010EFBEE6C6D99D7B70BDE9D7E927F020AF038BAF47")
        );
        assert_eq!(open_put_key_data(&k.dek, &kd).unwrap(), dkey(K));
        let mut bad = kd.clone();
        bad.kcv[2] ^= 1;
        assert_eq!(
            open_put_key_data(&k.dek, &bad).unwrap_err(),
            Scp02Error::BadCryptogram
        );
        assert_eq!(
            &decrypt_key_data(&k.dek, &h("EFBEE6C6D99D7B70BDE9D7E927F020AF")).unwrap()[..],
            &h(K)[..]
        );
    }

    /// GP-FACTS: "Real card, static keys all K, i=15 (real card)".
    #[test]
    fn real_card_trace() {
        let hc: [u8; 8] = h("D5AD539A60CA5E72").try_into().unwrap();
        let iu = InitializeUpdateResponse::parse(&h(
            "000074746E6E6E6262620102069FAA2A0591E73367DD78794D04315E",
        ))
        .unwrap();
        assert_eq!(iu.kdd.to_vec(), h("000074746E6E6E626262"));
        assert_eq!(
            (iu.kvn, iu.scp_id, iu.sequence_counter),
            (0x01, 0x02, [0x06, 0x9F])
        );
        assert_eq!(iu.card_challenge.to_vec(), h("AA2A0591E733"));
        assert_eq!(
            iu.to_bytes(),
            h("000074746E6E6E6262620102069FAA2A0591E73367DD78794D04315E")
        );

        let keys = keys_k(iu.sequence_counter);
        assert_eq!(keys.enc, dkey("A7E638E94A6AEC1AB596BA9E46FF2B7F"));
        assert_eq!(keys.mac, dkey("3D19A0E1F74FFE5260157E1E150AC67E"));
        assert_eq!(
            card_cryptogram(&keys, &hc, iu.sequence_counter, &iu.card_challenge),
            iu.card_cryptogram
        );
        verify_card_cryptogram(
            &keys,
            &hc,
            iu.sequence_counter,
            &iu.card_challenge,
            &iu.card_cryptogram,
        )
        .unwrap();
        let host_c = host_cryptogram(&keys, &hc, iu.sequence_counter, &iu.card_challenge);

        let mut host = Session::host(keys.clone(), SecurityLevel::C_MAC).unwrap();
        let ea = host.external_authenticate(&host_c);
        assert_eq!(
            ea.to_bytes(),
            h("84820100107C799B3C771DBAE6BEF49310977617BA")
        );
        // The trace's tool sent the GET STATUS with Le 00 (Le is not MACed).
        let mut get_status = CommandApdu::parse(&h("80F22002024F00")).unwrap();
        get_status.le = Some(256);
        let wrapped = host.wrap(&get_status).unwrap();
        assert_eq!(wrapped.to_bytes(), h("84F220020A4F00BB6E71C0EFCFCF0D00"));

        let mut card = Session::card(keys);
        assert_eq!(
            card.verify_external_authenticate(&ea, &host_c).unwrap(),
            SecurityLevel::C_MAC
        );
        assert_eq!(
            card.wrap_response(ResponseApdu::status(Sw::NO_ERROR))
                .to_bytes(),
            h("9000")
        );
        let plain = card
            .unwrap_command(&CommandApdu::parse(&wrapped.to_bytes()).unwrap())
            .unwrap();
        assert_eq!(plain, get_status);
    }

    #[test]
    fn pseudo_random_challenge_is_mac_over_aid() {
        let k = keys_k([0, 1]);
        let c = pseudo_random_challenge(&k.mac, &h("A000000151000000"));
        let full = crate::dap::retail_mac(&k.mac, &h("A000000151000000"));
        assert_eq!(c[..], full[..6]);
    }

    fn pair(level: SecurityLevel) -> (Session, Session) {
        let keys = keys_k([0x00, 0x2A]);
        let hc = [1, 2, 3, 4, 5, 6, 7, 8];
        let cc = [9, 10, 11, 12, 13, 14];
        let host_c = host_cryptogram(&keys, &hc, [0x00, 0x2A], &cc);
        let mut host = Session::host(keys.clone(), level).unwrap();
        let mut card = Session::card(keys);
        let ea = host.external_authenticate(&host_c);
        assert_eq!(
            card.verify_external_authenticate(&ea, &host_c).unwrap(),
            level
        );
        (host, card)
    }

    #[test]
    fn round_trip_every_level() {
        let commands = [
            CommandApdu::new(0x80, 0xF2, 0x40, 0x02, h("4F00"), Some(256)),
            CommandApdu::new(0x80, 0xCA, 0x00, 0x66, vec![], None),
            CommandApdu::new(0x81, 0xE6, 0x0C, 0x00, vec![0x5A; 100], Some(256)),
            CommandApdu::new(0x80, 0xE8, 0x80, 0x01, vec![0xC4; 16], None),
            CommandApdu::new(
                0xC3,
                0xE4,
                0x00,
                0x00,
                vec![0x4F, 0x05, 1, 2, 3, 4, 5],
                None,
            ),
            CommandApdu::new(0x80, 0xE8, 0x00, 0x00, vec![0x11; 239], None),
        ];
        let responses = [
            ResponseApdu::new(h("E3114F08A0000001510000009F70010FC5019E"), Sw::NO_ERROR),
            ResponseApdu::status(Sw::NO_ERROR),
            ResponseApdu::new(vec![0x42; 32], Sw::WARNING_MORE_DATA),
            ResponseApdu::status(Sw::INCORRECT_DATA),
            ResponseApdu::new(vec![0x00], Sw::NO_ERROR),
            ResponseApdu::new(vec![0x33; 15], Sw(0x6283)),
        ];
        for level in
            [0x00u8, 0x01, 0x03, 0x10, 0x11, 0x13].map(|b| SecurityLevel::parse_scp02(b).unwrap())
        {
            let (mut host, mut card) = pair(level);
            for (cmd, resp) in commands.iter().zip(responses.iter()) {
                let wire = CommandApdu::parse(&host.wrap(cmd).unwrap().to_bytes()).unwrap();
                if level.c_mac() {
                    assert!(apdu::has_secure_messaging(wire.cla));
                }
                if level.c_dec() && !cmd.data.is_empty() {
                    let n = cmd.data.len().min(8);
                    assert!(!wire.data.windows(n).any(|w| w == &cmd.data[..n]));
                }
                let plain = card.unwrap_command(&wire).unwrap();
                assert_eq!(
                    (plain.cla, plain.ins, plain.p1, plain.p2),
                    (cmd.cla, cmd.ins, cmd.p1, cmd.p2)
                );
                assert_eq!(plain.data, cmd.data, "{level:?}");
                let protected = card.wrap_response(resp.clone());
                let back = host
                    .unwrap_response(&ResponseApdu::parse(&protected.to_bytes()).unwrap())
                    .unwrap();
                if resp.sw().is_success_or_warning() || !level.r_mac() {
                    assert_eq!(&back, resp, "{level:?}");
                } else {
                    assert!(back.data.is_empty());
                    assert_eq!(back.sw, resp.sw);
                }
            }
            assert!(host.is_open() && card.is_open());
        }
    }

    #[test]
    fn level_33_does_not_exist_in_scp02() {
        assert_eq!(
            Session::host(keys_k([0, 0]), SecurityLevel::ALL).unwrap_err(),
            Scp02Error::UnsupportedLevel(0x33)
        );
        let (mut host, _) = pair(SecurityLevel::C_MAC);
        let mut ea = host.external_authenticate(&[0; 8]);
        ea.p1 = 0x33;
        let mut card = Session::card(keys_k([0x00, 0x2A]));
        assert_eq!(
            card.verify_external_authenticate(&ea, &[0; 8]).unwrap_err(),
            Scp02Error::UnsupportedLevel(0x33)
        );
    }

    #[test]
    fn tampering_aborts() {
        for level in [
            SecurityLevel::C_MAC,
            SecurityLevel::C_MAC_C_DEC,
            SecurityLevel::C_MAC_C_DEC_R_MAC,
        ] {
            let cmd = CommandApdu::new(0x80, 0xE2, 0x90, 0x00, vec![0x77; 20], None);
            let (mut host, _) = pair(level);
            let wire = host.wrap(&cmd).unwrap().to_bytes();
            for i in 1..wire.len() {
                if i == 4 || (level.r_mac() && i == wire.len() - 1) {
                    continue; // Lc (length error) and Le (not MACed)
                }
                let (_, mut card) = pair(level);
                let mut bad = wire.clone();
                bad[i] ^= 0x01;
                let parsed = CommandApdu::parse(&bad).unwrap();
                assert!(card.unwrap_command(&parsed).is_err(), "byte {i} {level:?}");
                assert!(card.is_aborted());
            }
        }
        // Tampered R-MAC, and a response to an error that carries data.
        let (mut host, mut card) = pair(SecurityLevel::C_MAC_R_MAC);
        let cmd = CommandApdu::new(0x80, 0xCA, 0x00, 0x66, vec![], None);
        card.unwrap_command(&host.wrap(&cmd).unwrap()).unwrap();
        let mut r = card.wrap_response(ResponseApdu::new(vec![1, 2], Sw::NO_ERROR));
        r.data[0] ^= 1;
        assert_eq!(host.unwrap_response(&r).unwrap_err(), Scp02Error::BadMac);
        assert_eq!(host.wrap(&cmd).unwrap_err(), Scp02Error::SessionAborted);
        // The chain: replaying a command is rejected.
        let (mut host, mut card) = pair(SecurityLevel::C_MAC);
        let w = host.wrap(&cmd).unwrap();
        card.unwrap_command(&w).unwrap();
        assert_eq!(card.unwrap_command(&w).unwrap_err(), Scp02Error::BadMac);
        // Plain command when C-MAC is required.
        let (_, mut card) = pair(SecurityLevel::C_MAC);
        assert_eq!(
            card.unwrap_command(&cmd).unwrap_err(),
            Scp02Error::NotSecured
        );
    }

    #[test]
    fn rmac_never_covers_a_length_cut_to_one_byte() {
        // Card: 256 data bytes cannot carry a one-byte Li, so the card answers 6700 (R-MACed).
        let (mut host, mut card) = pair(SecurityLevel::C_MAC_R_MAC);
        let cmd = CommandApdu::new(0x80, 0xF2, 0x40, 0x02, h("4F00"), Some(256));
        card.unwrap_command(&host.wrap(&cmd).unwrap()).unwrap();
        let r = card.wrap_response(ResponseApdu::new(vec![0xE3; 256], Sw::NO_ERROR));
        assert_eq!(r.sw(), Sw::WRONG_LENGTH);
        assert_eq!(r.data.len(), MAC_LEN);
        let back = host.unwrap_response(&r).unwrap();
        assert_eq!((back.sw(), back.data.len()), (Sw::WRONG_LENGTH, 0));

        // Host: a hostile card MACs 256 bytes with Li = 00 (256 cut to a byte); refused unread.
        let (mut host, _) = pair(SecurityLevel::C_MAC_R_MAC);
        host.wrap(&cmd).unwrap();
        let body = vec![0x5A; 256];
        let mut input = host.rmac_command.clone().unwrap();
        input.push(0x00);
        input.extend_from_slice(&body);
        input.extend_from_slice(&[0x90, 0x00]);
        let forged_mac = retail_mac(&host.keys.rmac, &host.r_mac, &input);
        let mut data = body;
        data.extend_from_slice(&forged_mac);
        let resp = ResponseApdu::new(data, Sw::NO_ERROR);
        assert_eq!(
            host.unwrap_response(&resp).unwrap_err(),
            Scp02Error::Malformed
        );
        assert!(host.is_aborted());
    }

    #[test]
    fn refused_wrap_leaves_the_mac_chain_alone() {
        // 65 527 plain bytes pass the C-MAC header check, but padded and encrypted with the MAC
        // they exceed 65 535: wrap refuses, and the next command must still verify on the card.
        let (mut host, mut card) = pair(SecurityLevel::C_MAC_C_DEC);
        let big = CommandApdu::new(0x80, 0xE8, 0x00, 0x00, vec![0xC4; 65_527], None);
        assert_eq!(host.wrap(&big).unwrap_err(), Scp02Error::DataTooLong);
        let cmd = CommandApdu::new(0x80, 0xCA, 0x00, 0x66, vec![], None);
        card.unwrap_command(&host.wrap(&cmd).unwrap()).unwrap();
    }

    #[test]
    fn external_authenticate_failures() {
        let keys = keys_k([0, 5]);
        let mut host = Session::host(keys.clone(), SecurityLevel::C_MAC).unwrap();
        let ea = host.external_authenticate(&[7; 8]);
        let mut card = Session::card(keys.clone());
        assert_eq!(
            card.verify_external_authenticate(&ea, &[8; 8]).unwrap_err(),
            Scp02Error::BadCryptogram
        );
        assert_eq!(
            Scp02Error::<Infallible>::BadCryptogram.sw(),
            Sw::VERIFICATION_FAILED
        );
        let mut card = Session::card(keys.clone());
        let mut bad = ea.clone();
        bad.data[9] ^= 0x80;
        assert_eq!(
            card.verify_external_authenticate(&bad, &[7; 8])
                .unwrap_err(),
            Scp02Error::BadMac
        );
        let mut card = Session::card(keys);
        let mut short = ea;
        short.data.push(0);
        assert_eq!(
            card.verify_external_authenticate(&short, &[7; 8])
                .unwrap_err(),
            Scp02Error::WrongLength
        );
    }

    #[test]
    fn initialize_update_rules() {
        let good = h("000074746E6E6E6262620102069FAA2A0591E73367DD78794D04315E");
        assert_eq!(
            InitializeUpdateResponse::parse(&good[..27]),
            Err(Scp02Error::WrongLength)
        );
        let mut scp03 = good.clone();
        scp03[11] = 0x03;
        assert_eq!(
            InitializeUpdateResponse::parse(&scp03),
            Err(Scp02Error::UnsupportedProtocol(3))
        );
    }

    proptest::proptest! {
        /// Untrusted bytes into the card side of an open session and into the host's parsers:
        /// errors, never panics.
        #[test]
        fn card_side_never_panics(
            level_index in 0usize..6,
            apdu in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            resp in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            let level = [0x00u8, 0x01, 0x03, 0x10, 0x11, 0x13].map(|b| SecurityLevel::parse_scp02(b).unwrap())[level_index];
            let (mut host, mut card) = pair(level);
            let _ = InitializeUpdateResponse::parse(&apdu);
            if let Ok(cmd) = CommandApdu::parse(&apdu) {
                let _ = card.verify_external_authenticate(&cmd, &[0; 8]);
                let _ = card.unwrap_command(&cmd);
                let _ = card.wrap_response(ResponseApdu::new(resp.clone(), Sw::NO_ERROR));
            }
            let _ = host.wrap(&CommandApdu::new(0x80, 0xCA, 0x00, 0x66, Vec::new(), None));
            if let Ok(r) = ResponseApdu::parse(&resp) {
                let _ = host.unwrap_response(&r);
            }
        }
    }
}
