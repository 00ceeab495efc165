//! Secure Channel Protocol '03' (GlobalPlatform Card Specification Amendment D).
//!
//! AES-128/192/256 session keys from the NIST SP 800-108 KDF with AES-CMAC, 64-bit cryptograms,
//! C-MAC with a 16-byte chaining value, C-DECRYPTION with counter-derived ICVs, R-MAC and
//! R-ENCRYPTION. The static keys are reached through the [`Prf`] trait so the host can keep them
//! inside an HSM; session keys are plain [`AesKey`]s that wipe themselves on drop.
//!
//! A [`Session`] is one side of one secure channel. It dies on the first bad MAC, cryptogram or
//! padding (as Amendment D §5.6 demands), after which every call fails until a new session is made.

use alloc::vec::Vec;
use core::convert::Infallible;
use core::fmt;

use zeroize::Zeroizing;

use crate::apdu::{self, CommandApdu, ResponseApdu};
use crate::commands::put_key::{KeyComponent, KeyData, KEY_TYPE_AES};
use crate::crypto;
use crate::kcv;
use crate::keys::AesKey;
use crate::sw::Sw;
use crate::util::{first_n, take_array};

/// KDF derivation constant for the card cryptogram.
pub const CARD_CRYPTOGRAM: u8 = 0x00;
/// KDF derivation constant for the host cryptogram.
pub const HOST_CRYPTOGRAM: u8 = 0x01;
/// KDF derivation constant for the pseudo-random card challenge.
pub const CARD_CHALLENGE: u8 = 0x02;
/// KDF derivation constant for S-ENC.
pub const S_ENC: u8 = 0x04;
/// KDF derivation constant for S-MAC.
pub const S_MAC: u8 = 0x06;
/// KDF derivation constant for S-RMAC.
pub const S_RMAC: u8 = 0x07;

/// SCP identifier returned in the key information of INITIALIZE UPDATE.
pub const SCP_ID: u8 = 0x03;
/// Length of a C-MAC / R-MAC on the wire (the 8 most significant bytes of the CMAC).
pub const MAC_LEN: usize = 8;

/// The pseudo-random function of the SCP03 KDF: AES-CMAC under a static key.
///
/// Implemented here for software keys; the host tools implement it over an HSM key handle so the
/// static keys never leave the token. `&mut self` lets such implementations hold a session.
pub trait Prf {
    /// Error of the underlying key store ([`Infallible`] for software keys).
    type Error;
    /// Full 16-byte AES-CMAC of `data` under this key.
    fn cmac(&mut self, data: &[u8]) -> Result<[u8; 16], Self::Error>;
}

impl Prf for AesKey {
    type Error = Infallible;
    fn cmac(&mut self, data: &[u8]) -> Result<[u8; 16], Infallible> {
        Ok(crypto::aes_cmac(self, &[data]))
    }
}

impl<P: Prf + ?Sized> Prf for &mut P {
    type Error = P::Error;
    fn cmac(&mut self, data: &[u8]) -> Result<[u8; 16], P::Error> {
        (**self).cmac(data)
    }
}

/// Unwraps a result whose error type cannot be constructed.
fn infallible<T>(r: Result<T, Infallible>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => match e {},
    }
}

/// Most 128-bit blocks the KDF can produce: its block counter `i` is one byte.
pub const KDF_MAX_BLOCKS: usize = 255;

/// SP 800-108 counter-mode KDF as Amendment D §4.1.5 defines it.
///
/// For each `i = 1, 2, …` the PRF runs over `00×11 ‖ constant ‖ 00 ‖ L ‖ i ‖ context` where `L`
/// is `out_bits` as two bytes; the outputs are concatenated and cut to `out_bits` (trailing bits of
/// a partial last byte are cleared). GP only asks for 64 to 256 bits; a request beyond
/// [`KDF_MAX_BLOCKS`] blocks (32 640 bits), which the one-byte counter cannot express, yields
/// the first 32 640 bits.
pub fn kdf<P: Prf>(
    prf: &mut P,
    constant: u8,
    context: &[u8],
    out_bits: u16,
) -> Result<Zeroizing<Vec<u8>>, P::Error> {
    let out_len = usize::from(out_bits).div_ceil(8).min(KDF_MAX_BLOCKS * 16);
    let blocks = out_len.div_ceil(16);
    let mut out = Zeroizing::new(Vec::with_capacity(blocks * 16));
    let mut input = Vec::with_capacity(16 + context.len());
    for i in 1..=blocks {
        input.clear();
        input.extend_from_slice(&[0u8; 11]);
        input.push(constant);
        input.push(0x00);
        input.extend_from_slice(&out_bits.to_be_bytes());
        input.push(i as u8);
        input.extend_from_slice(context);
        let block = Zeroizing::new(prf.cmac(&input)?);
        out.extend_from_slice(&*block);
    }
    out.truncate(out_len);
    let rem = out_bits % 8;
    if rem != 0 && usize::from(out_bits).div_ceil(8) == out_len {
        if let Some(last) = out.last_mut() {
            *last &= 0xFFu8 << (8 - rem);
        }
    }
    Ok(out)
}

/// Errors of the SCP03 secure channel; `E` is the error of an HSM-backed [`Prf`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scp03Error<E = Infallible> {
    /// A C-MAC or R-MAC did not verify. The session is aborted.
    BadMac,
    /// The host or card cryptogram did not verify. The session is aborted.
    BadCryptogram,
    /// Bytes that do not have the structure the protocol requires.
    Malformed,
    /// A data field of the wrong length (e.g. EXTERNAL AUTHENTICATE without 16 bytes).
    WrongLength,
    /// Decrypted data without valid `80 00…` padding. The session is aborted.
    BadPadding,
    /// A security level (EXTERNAL AUTHENTICATE P1) SCP03 does not define.
    UnsupportedLevel(u8),
    /// A key length other than 16, 24 or 32 bytes.
    UnsupportedKeyLength(usize),
    /// INITIALIZE UPDATE answered with another SCP identifier (the value is given).
    UnsupportedProtocol(u8),
    /// The operation needs an open session but EXTERNAL AUTHENTICATE has not succeeded yet.
    NotAuthenticated,
    /// The operation is not valid in the session's current state (e.g. a second EXTERNAL
    /// AUTHENTICATE).
    WrongState,
    /// The session was aborted by an earlier security error; open a new one.
    SessionAborted,
    /// A command without secure messaging arrived while the level requires it. The session is
    /// aborted.
    NotSecured,
    /// The wrapped command would exceed what an APDU can carry.
    DataTooLong,
    /// The encryption counter reached its maximum; open a new session.
    CounterExhausted,
    /// The PRF (e.g. the HSM) failed.
    Prf(E),
}

impl<E> Scp03Error<E> {
    /// The status word a card answers with for this error.
    ///
    /// Security failures are `6982` (`6300` for a bad host cryptogram, as GPC E.5.2.7 specifies),
    /// structural problems `6A80`/`6700`, an unknown level `6A86`, state problems `6985`.
    pub fn sw(&self) -> Sw {
        match self {
            Scp03Error::BadMac
            | Scp03Error::BadPadding
            | Scp03Error::NotAuthenticated
            | Scp03Error::SessionAborted
            | Scp03Error::NotSecured => Sw::SECURITY_STATUS_NOT_SATISFIED,
            Scp03Error::BadCryptogram => Sw::VERIFICATION_FAILED,
            Scp03Error::Malformed
            | Scp03Error::UnsupportedKeyLength(_)
            | Scp03Error::UnsupportedProtocol(_) => Sw::INCORRECT_DATA,
            Scp03Error::WrongLength | Scp03Error::DataTooLong => Sw::WRONG_LENGTH,
            Scp03Error::UnsupportedLevel(_) => Sw::INCORRECT_P1P2,
            Scp03Error::WrongState | Scp03Error::CounterExhausted => Sw::CONDITIONS_NOT_SATISFIED,
            Scp03Error::Prf(_) => Sw::UNKNOWN,
        }
    }
}

impl Scp03Error<Infallible> {
    /// Converts an error of the software path (which has no PRF error) into one with any PRF
    /// error type, so callers with an HSM-backed PRF can use `?` on both.
    pub fn widen<F>(self) -> Scp03Error<F> {
        match self {
            Scp03Error::BadMac => Scp03Error::BadMac,
            Scp03Error::BadCryptogram => Scp03Error::BadCryptogram,
            Scp03Error::Malformed => Scp03Error::Malformed,
            Scp03Error::WrongLength => Scp03Error::WrongLength,
            Scp03Error::BadPadding => Scp03Error::BadPadding,
            Scp03Error::UnsupportedLevel(l) => Scp03Error::UnsupportedLevel(l),
            Scp03Error::UnsupportedKeyLength(l) => Scp03Error::UnsupportedKeyLength(l),
            Scp03Error::UnsupportedProtocol(p) => Scp03Error::UnsupportedProtocol(p),
            Scp03Error::NotAuthenticated => Scp03Error::NotAuthenticated,
            Scp03Error::WrongState => Scp03Error::WrongState,
            Scp03Error::SessionAborted => Scp03Error::SessionAborted,
            Scp03Error::NotSecured => Scp03Error::NotSecured,
            Scp03Error::DataTooLong => Scp03Error::DataTooLong,
            Scp03Error::CounterExhausted => Scp03Error::CounterExhausted,
            Scp03Error::Prf(e) => match e {},
        }
    }
}

impl<E: fmt::Display> fmt::Display for Scp03Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scp03Error::BadMac => f.write_str("SCP03: MAC verification failed"),
            Scp03Error::BadCryptogram => f.write_str("SCP03: cryptogram verification failed"),
            Scp03Error::Malformed => f.write_str("SCP03: malformed data"),
            Scp03Error::WrongLength => f.write_str("SCP03: wrong data length"),
            Scp03Error::BadPadding => f.write_str("SCP03: bad padding after decryption"),
            Scp03Error::UnsupportedLevel(l) => {
                write!(f, "SCP03: unsupported security level {l:02X}")
            }
            Scp03Error::UnsupportedKeyLength(l) => write!(f, "SCP03: unsupported key length {l}"),
            Scp03Error::UnsupportedProtocol(p) => {
                write!(f, "SCP03: card answered with SCP {p:02X}")
            }
            Scp03Error::NotAuthenticated => f.write_str("SCP03: secure channel not authenticated"),
            Scp03Error::WrongState => {
                f.write_str("SCP03: operation not valid in this session state")
            }
            Scp03Error::SessionAborted => f.write_str("SCP03: secure channel aborted"),
            Scp03Error::NotSecured => f.write_str("SCP03: command lacks required secure messaging"),
            Scp03Error::DataTooLong => f.write_str("SCP03: wrapped command too long"),
            Scp03Error::CounterExhausted => f.write_str("SCP03: encryption counter exhausted"),
            Scp03Error::Prf(e) => write!(f, "SCP03: PRF failed: {e}"),
        }
    }
}

/// The three SCP03 session keys of one secure channel session.
///
/// All three wipe themselves on drop; `Debug` shows only their lengths.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKeys {
    /// S-ENC: command and response encryption, derived from Key-ENC.
    pub enc: AesKey,
    /// S-MAC: C-MAC and the cryptograms, derived from Key-MAC.
    pub mac: AesKey,
    /// S-RMAC: R-MAC, derived from Key-MAC.
    pub rmac: AesKey,
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionKeys")
            .field("enc", &self.enc)
            .field("mac", &self.mac)
            .field("rmac", &self.rmac)
            .finish()
    }
}

fn challenge_context(hc: &[u8; 8], cc: &[u8; 8]) -> [u8; 16] {
    let mut ctx = [0u8; 16];
    for (d, s) in ctx.iter_mut().zip(hc.iter().chain(cc.iter())) {
        *d = *s;
    }
    ctx
}

/// Derives S-ENC, S-MAC and S-RMAC (Amendment D §6.2.1) with context `host challenge ‖ card
/// challenge`.
///
/// `key_len` is the length of the static keys in bytes (16, 24 or 32); the session keys have the
/// same length. Both PRFs share one error type, which holds for any single key store.
pub fn derive_session_keys<E: Prf, M: Prf<Error = E::Error>>(
    static_enc: &mut E,
    static_mac: &mut M,
    key_len: usize,
    host_challenge: &[u8; 8],
    card_challenge: &[u8; 8],
) -> Result<SessionKeys, Scp03Error<E::Error>> {
    if !matches!(key_len, 16 | 24 | 32) {
        return Err(Scp03Error::UnsupportedKeyLength(key_len));
    }
    let bits = (key_len * 8) as u16;
    let ctx = challenge_context(host_challenge, card_challenge);
    let to_key = |bytes: Zeroizing<Vec<u8>>| {
        AesKey::from_slice(&bytes).map_err(|_| Scp03Error::UnsupportedKeyLength(key_len))
    };
    let enc = to_key(kdf(static_enc, S_ENC, &ctx, bits).map_err(Scp03Error::Prf)?)?;
    let mac = to_key(kdf(static_mac, S_MAC, &ctx, bits).map_err(Scp03Error::Prf)?)?;
    let rmac = to_key(kdf(static_mac, S_RMAC, &ctx, bits).map_err(Scp03Error::Prf)?)?;
    Ok(SessionKeys { enc, mac, rmac })
}

fn cryptogram(keys: &SessionKeys, constant: u8, hc: &[u8; 8], cc: &[u8; 8]) -> [u8; 8] {
    let mut mac = keys.mac.clone();
    let out = infallible(kdf(&mut mac, constant, &challenge_context(hc, cc), 64));
    first_n::<8>(&out)
}

/// The card cryptogram (Amendment D §6.2.2.2): KDF under S-MAC with constant `00`, 64 bits.
pub fn card_cryptogram(keys: &SessionKeys, hc: &[u8; 8], cc: &[u8; 8]) -> [u8; 8] {
    cryptogram(keys, CARD_CRYPTOGRAM, hc, cc)
}

/// The host cryptogram (Amendment D §6.2.2.3): KDF under S-MAC with constant `01`, 64 bits.
pub fn host_cryptogram(keys: &SessionKeys, hc: &[u8; 8], cc: &[u8; 8]) -> [u8; 8] {
    cryptogram(keys, HOST_CRYPTOGRAM, hc, cc)
}

/// Checks the card cryptogram of an INITIALIZE UPDATE response in constant time (host side):
/// the host must not send EXTERNAL AUTHENTICATE to a card that failed to prove its keys.
pub fn verify_card_cryptogram(
    keys: &SessionKeys,
    hc: &[u8; 8],
    cc: &[u8; 8],
    received: &[u8; 8],
) -> Result<(), Scp03Error> {
    if crypto::ct_eq(&card_cryptogram(keys, hc, cc), received) {
        Ok(())
    } else {
        Err(Scp03Error::BadCryptogram)
    }
}

/// The pseudo-random card challenge (Amendment D §6.2.2.1): KDF under the static Key-ENC with
/// constant `02` over `sequence counter ‖ AID`, 64 bits.
///
/// The card uses it when "i" has bit 5 set; the host can use it to predict and check the card's
/// challenge.
pub fn pseudo_random_challenge<P: Prf>(
    static_enc: &mut P,
    seq: [u8; 3],
    sd_aid: &[u8],
) -> Result<[u8; 8], P::Error> {
    let mut ctx = Vec::with_capacity(3 + sd_aid.len());
    ctx.extend_from_slice(&seq);
    ctx.extend_from_slice(sd_aid);
    let out = kdf(static_enc, CARD_CHALLENGE, &ctx, 64)?;
    Ok(first_n::<8>(&out))
}

/// "i" bit: the card challenge is pseudo-random and the sequence counter is returned.
pub const I_PSEUDO_RANDOM: u8 = 0x10;
/// "i" bits: R-MAC supported.
pub const I_RMAC: u8 = 0x20;
/// "i" bits: R-MAC and R-ENCRYPTION supported.
pub const I_RMAC_RENC: u8 = 0x60;

/// The data field of the INITIALIZE UPDATE response (Amendment D Table 7-2), S8 mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitializeUpdateResponse {
    /// Key diversification data: the card-unique input to per-card key derivation.
    pub kdd: [u8; 10],
    /// Key version number of the key set the card chose.
    pub kvn: u8,
    /// Secure channel protocol identifier, `03`.
    pub scp_id: u8,
    /// The SCP03 "i" parameter of the key set.
    pub i: u8,
    /// Card challenge.
    pub card_challenge: [u8; 8],
    /// Card cryptogram.
    pub card_cryptogram: [u8; 8],
    /// Sequence counter, present exactly when "i" announces pseudo-random challenges.
    pub sequence_counter: Option<[u8; 3]>,
}

impl InitializeUpdateResponse {
    /// Parses the 29- or 32-byte response data (without status word).
    ///
    /// Rejects another SCP identifier, a length that is neither, and a sequence counter whose
    /// presence disagrees with bit 5 of "i".
    pub fn parse(bytes: &[u8]) -> Result<Self, Scp03Error> {
        let (kdd, rest) = take_array::<10>(bytes).ok_or(Scp03Error::WrongLength)?;
        let (&[kvn, scp_id, i], rest) = take_array::<3>(rest).ok_or(Scp03Error::WrongLength)?;
        let (card_challenge, rest) = take_array::<8>(rest).ok_or(Scp03Error::WrongLength)?;
        let (card_cryptogram, rest) = take_array::<8>(rest).ok_or(Scp03Error::WrongLength)?;
        let sequence_counter = match rest {
            [] => None,
            [a, b, c] => Some([*a, *b, *c]),
            _ => return Err(Scp03Error::WrongLength),
        };
        if scp_id != SCP_ID {
            return Err(Scp03Error::UnsupportedProtocol(scp_id));
        }
        if sequence_counter.is_some() != (i & I_PSEUDO_RANDOM != 0) {
            return Err(Scp03Error::Malformed);
        }
        Ok(InitializeUpdateResponse {
            kdd: *kdd,
            kvn,
            scp_id,
            i,
            card_challenge: *card_challenge,
            card_cryptogram: *card_cryptogram,
            sequence_counter,
        })
    }

    /// Encodes the response data field (the card side of [`InitializeUpdateResponse::parse`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        out.extend_from_slice(&self.kdd);
        out.extend_from_slice(&[self.kvn, self.scp_id, self.i]);
        out.extend_from_slice(&self.card_challenge);
        out.extend_from_slice(&self.card_cryptogram);
        if let Some(seq) = &self.sequence_counter {
            out.extend_from_slice(seq);
        }
        out
    }
}

/// A security level: the P1 of EXTERNAL AUTHENTICATE and the protection applied afterwards.
///
/// Only the combinations the protocols define can be constructed ([`SecurityLevel::parse`] for
/// SCP03, [`SecurityLevel::parse_scp02`] for SCP02, or the combined constants); the single-flag
/// constants exist for [`SecurityLevel::contains`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecurityLevel(u8);

impl SecurityLevel {
    /// `00`: authenticated, no secure messaging afterwards.
    pub const NO_SECURITY: SecurityLevel = SecurityLevel(0x00);
    /// `01`: C-MAC on every command.
    pub const C_MAC: SecurityLevel = SecurityLevel(0x01);
    /// Flag `02`: command data encrypted (always together with C-MAC, i.e. level `03`).
    pub const C_DECRYPTION: SecurityLevel = SecurityLevel(0x02);
    /// `10`: R-MAC on every response (as a level of its own only in SCP02).
    pub const R_MAC: SecurityLevel = SecurityLevel(0x10);
    /// Flag `20`: response data encrypted (SCP03 only, always with level `33`).
    pub const R_ENCRYPTION: SecurityLevel = SecurityLevel(0x20);
    /// `03`: C-MAC and C-DECRYPTION.
    pub const C_MAC_C_DEC: SecurityLevel = SecurityLevel(0x03);
    /// `11`: C-MAC and R-MAC.
    pub const C_MAC_R_MAC: SecurityLevel = SecurityLevel(0x11);
    /// `13`: C-MAC, C-DECRYPTION and R-MAC.
    pub const C_MAC_C_DEC_R_MAC: SecurityLevel = SecurityLevel(0x13);
    /// `33`: C-MAC, C-DECRYPTION, R-MAC and R-ENCRYPTION (SCP03 only).
    pub const ALL: SecurityLevel = SecurityLevel(0x33);

    /// Accepts the SCP03 levels of Amendment D Table 7-3: `00`, `01`, `03`, `11`, `13`, `33`.
    pub const fn parse(p1: u8) -> Option<SecurityLevel> {
        match p1 {
            0x00 | 0x01 | 0x03 | 0x11 | 0x13 | 0x33 => Some(SecurityLevel(p1)),
            _ => None,
        }
    }

    /// Accepts the SCP02 levels of GPC Table E-11: `00`, `01`, `03`, `10`, `11`, `13`.
    pub const fn parse_scp02(p1: u8) -> Option<SecurityLevel> {
        match p1 {
            0x00 | 0x01 | 0x03 | 0x10 | 0x11 | 0x13 => Some(SecurityLevel(p1)),
            _ => None,
        }
    }

    /// The P1 byte.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// True when every flag of `flag` is set in this level (and `flag` is not empty).
    pub const fn contains(self, flag: SecurityLevel) -> bool {
        flag.0 != 0 && self.0 & flag.0 == flag.0
    }

    /// Commands carry a C-MAC.
    pub const fn c_mac(self) -> bool {
        self.contains(Self::C_MAC)
    }

    /// Command data is encrypted.
    pub const fn c_dec(self) -> bool {
        self.contains(Self::C_DECRYPTION)
    }

    /// Responses carry an R-MAC.
    pub const fn r_mac(self) -> bool {
        self.contains(Self::R_MAC)
    }

    /// Response data is encrypted.
    pub const fn r_enc(self) -> bool {
        self.contains(Self::R_ENCRYPTION)
    }
}

impl fmt::Debug for SecurityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecurityLevel({:02X} {})", self.0, self)
    }
}

impl fmt::Display for SecurityLevel {
    /// The protections by name, e.g. `C-MAC+C-DEC+R-MAC`, or `none`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (self.c_mac(), "C-MAC"),
            (self.c_dec(), "C-DEC"),
            (self.r_mac(), "R-MAC"),
            (self.r_enc(), "R-ENC"),
        ];
        let mut first = true;
        for (on, name) in names {
            if on {
                if !first {
                    f.write_str("+")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Host,
    Card,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Session keys exist; EXTERNAL AUTHENTICATE has not completed.
    Initiated,
    /// EXTERNAL AUTHENTICATE succeeded; secure messaging per `level`.
    Open,
    /// A security error ended the session.
    Aborted,
}

/// One side of an SCP03 secure channel session.
///
/// Host: [`Session::host`], [`Session::external_authenticate`], then [`Session::wrap`] each
/// command and [`Session::unwrap_response`] each response. Card: [`Session::card`],
/// [`Session::verify_external_authenticate`], then [`Session::unwrap_command`] and
/// [`Session::wrap_response`]. The EXTERNAL AUTHENTICATE response itself is never R-MACed.
pub struct Session {
    keys: SessionKeys,
    role: Role,
    state: State,
    level: SecurityLevel,
    /// MAC chaining value: the full 16-byte CMAC of the last command; also the R-MAC chain input.
    mac_chain: [u8; 16],
    /// Encryption counter of the current command (1 for the first after EXTERNAL AUTHENTICATE).
    counter: u64,
    /// A command went through `wrap` / `unwrap_command` and its response has not been handled
    /// yet. Keeps the EXTERNAL AUTHENTICATE response (and responses to commands that never
    /// entered the channel) free of R-MAC, as Amendment D §6.2.5 requires.
    response_pending: bool,
}

impl fmt::Debug for Session {
    /// State, level and counter; never keys.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("level", &self.level)
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Host side: a session that will request `level` in EXTERNAL AUTHENTICATE.
    ///
    /// `level` should be one SCP03 defines ([`SecurityLevel::parse`]); a flag-only constant such as
    /// [`SecurityLevel::R_MAC`] is sent as it is and the card rejects it with `6A86`.
    pub fn host(keys: SessionKeys, level: SecurityLevel) -> Session {
        Session::new(keys, Role::Host, level)
    }

    /// Card side: a session waiting for EXTERNAL AUTHENTICATE (level set from its P1).
    pub fn card(keys: SessionKeys) -> Session {
        Session::new(keys, Role::Card, SecurityLevel::NO_SECURITY)
    }

    fn new(keys: SessionKeys, role: Role, level: SecurityLevel) -> Session {
        Session {
            keys,
            role,
            state: State::Initiated,
            level,
            mac_chain: [0; 16],
            counter: 0,
            response_pending: false,
        }
    }

    /// The level in force (on the card: `NO_SECURITY` until EXTERNAL AUTHENTICATE succeeds).
    pub fn level(&self) -> SecurityLevel {
        self.level
    }

    /// True once EXTERNAL AUTHENTICATE has succeeded and no security error has occurred since.
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// True when a security error has ended the session.
    pub fn is_aborted(&self) -> bool {
        self.state == State::Aborted
    }

    /// Ends the session deliberately; every later operation fails with `SessionAborted`.
    pub fn abort(&mut self) {
        self.state = State::Aborted;
    }

    /// The encryption counter of the last command (0 before the first one).
    pub fn counter(&self) -> u64 {
        self.counter
    }

    fn fail<T>(&mut self, e: Scp03Error) -> Result<T, Scp03Error> {
        self.state = State::Aborted;
        self.response_pending = false;
        Err(e)
    }

    fn require_open(&self, role: Role) -> Result<(), Scp03Error> {
        match self.state {
            State::Open if self.role == role => Ok(()),
            State::Open => Err(Scp03Error::WrongState),
            State::Initiated => Err(Scp03Error::NotAuthenticated),
            State::Aborted => Err(Scp03Error::SessionAborted),
        }
    }

    fn next_counter(&mut self) -> Result<(), Scp03Error> {
        match self.counter.checked_add(1) {
            Some(c) => {
                self.counter = c;
                Ok(())
            }
            None => self.fail(Scp03Error::CounterExhausted),
        }
    }

    /// ICV for command (`response == false`) or response encryption from the counter.
    fn icv(&self, response: bool) -> [u8; 16] {
        let mut block = [0u8; 16];
        for (d, s) in block
            .iter_mut()
            .rev()
            .zip(self.counter.to_be_bytes().iter().rev())
        {
            *d = *s;
        }
        if response {
            if let Some(first) = block.first_mut() {
                *first = 0x80;
            }
        }
        crypto::aes_encrypt_block(&self.keys.enc, &mut block);
        block
    }

    /// Full CMAC over `chain ‖ mac_cla INS P1 P2 Lc ‖ data` where `data` already includes
    /// everything but the MAC and `Lc` counts the MAC too.
    fn command_mac(
        &self,
        cla: u8,
        ins: u8,
        p1: u8,
        p2: u8,
        body: &[u8],
    ) -> Result<[u8; 16], Scp03Error> {
        let header = apdu::lc_header(apdu::mac_cla(cla), ins, p1, p2, body.len() + MAC_LEN)
            .ok_or(Scp03Error::DataTooLong)?;
        Ok(crypto::aes_cmac(
            &self.keys.mac,
            &[&self.mac_chain, &header, body],
        ))
    }

    fn response_mac(&self, data: &[u8], sw: u16) -> [u8; 16] {
        crypto::aes_cmac(&self.keys.rmac, &[&self.mac_chain, data, &sw.to_be_bytes()])
    }

    /// Host: builds EXTERNAL AUTHENTICATE (`84 82 level 00 10 cryptogram C-MAC`), MACed with a
    /// zero chaining value, and opens the session.
    pub fn external_authenticate(&mut self, host_cryptogram: &[u8; 8]) -> CommandApdu {
        self.mac_chain = [0; 16];
        self.counter = 0;
        let p1 = self.level.bits();
        let full = crypto::aes_cmac(
            &self.keys.mac,
            &[
                &self.mac_chain,
                &[0x84, 0x82, p1, 0x00, 0x10],
                host_cryptogram,
            ],
        );
        self.mac_chain = full;
        self.state = State::Open;
        let mut data = Vec::with_capacity(16);
        data.extend_from_slice(host_cryptogram);
        data.extend_from_slice(full.get(..MAC_LEN).unwrap_or(&[]));
        CommandApdu::new(0x84, 0x82, p1, 0x00, data, None)
    }

    /// Host: protects a plain command per the level: C-DECRYPTION (skipped for an empty data
    /// field, the counter still advances), then C-MAC; sets the secure messaging bit in CLA.
    ///
    /// When the level includes R-MAC and the command has no Le, Le is set to `00` so that the
    /// card may return the R-MAC (as GPC E.4.5 prescribes for cases 1 and 3).
    pub fn wrap(&mut self, cmd: &CommandApdu) -> Result<CommandApdu, Scp03Error> {
        self.require_open(Role::Host)?;
        self.next_counter()?;
        self.response_pending = true;
        if !self.level.c_mac() {
            return Ok(cmd.clone());
        }
        let mut body = if self.level.c_dec() && !cmd.data.is_empty() {
            let mut padded = Zeroizing::new(crypto::pad80(&cmd.data, 16));
            let icv = self.icv(false);
            if crypto::aes_cbc_encrypt(&self.keys.enc, &icv, &mut padded).is_err() {
                return Err(Scp03Error::Malformed);
            }
            core::mem::take(&mut *padded)
        } else {
            cmd.data.clone()
        };
        let full = self.command_mac(cmd.cla, cmd.ins, cmd.p1, cmd.p2, &body)?;
        self.mac_chain = full;
        body.extend_from_slice(full.get(..MAC_LEN).unwrap_or(&[]));
        let le = match cmd.le {
            None if self.level.r_mac() => Some(apdu::SHORT_MAX_LE),
            other => other,
        };
        Ok(CommandApdu::new(
            apdu::with_secure_messaging(cmd.cla),
            cmd.ins,
            cmd.p1,
            cmd.p2,
            body,
            le,
        ))
    }

    /// Host: checks the R-MAC and decrypts R-ENC data per the level, for the response to the
    /// last wrapped command (a second call for the same command gives `WrongState`).
    ///
    /// Error status words (anything but `9000`, `62xx`, `63xx`) carry no protection by
    /// Amendment D §6.2.5; they are returned with an empty data field, since unauthenticated data
    /// must not reach the caller.
    pub fn unwrap_response(&mut self, resp: &ResponseApdu) -> Result<ResponseApdu, Scp03Error> {
        self.require_open(Role::Host)?;
        if !self.level.r_mac() {
            return Ok(resp.clone());
        }
        if !core::mem::take(&mut self.response_pending) {
            return Err(Scp03Error::WrongState);
        }
        if !resp.sw().is_success_or_warning() {
            return Ok(ResponseApdu {
                data: Vec::new(),
                sw: resp.sw,
            });
        }
        let Some((body, mac)) = resp.data.split_last_chunk::<MAC_LEN>() else {
            return self.fail(Scp03Error::BadMac);
        };
        let expected = self.response_mac(body, resp.sw);
        if !crypto::ct_eq(expected.get(..MAC_LEN).unwrap_or(&[]), mac) {
            return self.fail(Scp03Error::BadMac);
        }
        let data = if self.level.r_enc() && !body.is_empty() {
            self.decrypt(body, true).or_else(|e| self.fail(e))?
        } else {
            body.to_vec()
        };
        Ok(ResponseApdu { data, sw: resp.sw })
    }

    fn decrypt(&self, data: &[u8], response: bool) -> Result<Vec<u8>, Scp03Error> {
        if data.len() % 16 != 0 {
            return Err(Scp03Error::BadPadding);
        }
        let mut buf = Zeroizing::new(data.to_vec());
        let icv = self.icv(response);
        crypto::aes_cbc_decrypt(&self.keys.enc, &icv, &mut buf)
            .map_err(|_| Scp03Error::BadPadding)?;
        let plain = crypto::unpad80(&buf, 16).ok_or(Scp03Error::BadPadding)?;
        Ok(plain.to_vec())
    }

    /// Card: verifies EXTERNAL AUTHENTICATE (C-MAC with zero chaining value, then the host
    /// cryptogram, both in constant time) and opens the session at the level in P1.
    ///
    /// Any failure aborts the session: a new INITIALIZE UPDATE is needed.
    pub fn verify_external_authenticate(
        &mut self,
        cmd: &CommandApdu,
        expected_host_cryptogram: &[u8; 8],
    ) -> Result<SecurityLevel, Scp03Error> {
        if self.role != Role::Card || self.state != State::Initiated {
            return self.fail(Scp03Error::WrongState);
        }
        if cmd.ins != 0x82 || cmd.p2 != 0x00 || !apdu::has_secure_messaging(cmd.cla) {
            return self.fail(Scp03Error::Malformed);
        }
        let Some(level) = SecurityLevel::parse(cmd.p1) else {
            return self.fail(Scp03Error::UnsupportedLevel(cmd.p1));
        };
        let Some((cryptogram, mac)) = take_array::<8>(&cmd.data) else {
            return self.fail(Scp03Error::WrongLength);
        };
        if mac.len() != MAC_LEN {
            return self.fail(Scp03Error::WrongLength);
        }
        self.mac_chain = [0; 16];
        let full = self
            .command_mac(cmd.cla, cmd.ins, cmd.p1, cmd.p2, cryptogram)
            .or_else(|e| self.fail(e))?;
        let mac_ok = crypto::ct_eq(full.get(..MAC_LEN).unwrap_or(&[]), mac);
        let crypto_ok = crypto::ct_eq(cryptogram, expected_host_cryptogram);
        if !mac_ok {
            return self.fail(Scp03Error::BadMac);
        }
        if !crypto_ok {
            return self.fail(Scp03Error::BadCryptogram);
        }
        self.mac_chain = full;
        self.level = level;
        self.counter = 0;
        self.state = State::Open;
        Ok(level)
    }

    /// Card: verifies the C-MAC and decrypts C-DEC data per the level, returning the plain
    /// command with the secure messaging bit cleared.
    ///
    /// The level is enforced regardless of the CLA indication (Amendment D §5.6): a command
    /// without secure messaging while C-MAC is required aborts the session. With level `00` the
    /// command is returned unchanged.
    pub fn unwrap_command(&mut self, cmd: &CommandApdu) -> Result<CommandApdu, Scp03Error> {
        self.require_open(Role::Card)?;
        self.next_counter()?;
        if !self.level.c_mac() {
            self.response_pending = true;
            return Ok(cmd.clone());
        }
        if !apdu::has_secure_messaging(cmd.cla) {
            return self.fail(Scp03Error::NotSecured);
        }
        let Some((body, mac)) = cmd.data.split_last_chunk::<MAC_LEN>() else {
            return self.fail(Scp03Error::BadMac);
        };
        let full = self
            .command_mac(cmd.cla, cmd.ins, cmd.p1, cmd.p2, body)
            .or_else(|e| self.fail(e))?;
        if !crypto::ct_eq(full.get(..MAC_LEN).unwrap_or(&[]), mac) {
            return self.fail(Scp03Error::BadMac);
        }
        self.mac_chain = full;
        let data = if self.level.c_dec() && !body.is_empty() {
            self.decrypt(body, false).or_else(|e| self.fail(e))?
        } else {
            body.to_vec()
        };
        self.response_pending = true;
        Ok(CommandApdu::new(
            apdu::without_secure_messaging(cmd.cla),
            cmd.ins,
            cmd.p1,
            cmd.p2,
            data,
            cmd.le,
        ))
    }

    /// Card: protects a response per the level: R-ENC of non-empty data, then R-MAC.
    ///
    /// Error status words are returned bare (no data, no R-MAC), as Amendment D §6.2.5 requires.
    /// Outside an open session, and for a response to a command that did not pass through
    /// [`Session::unwrap_command`] (such as EXTERNAL AUTHENTICATE itself), the response is
    /// returned unchanged.
    pub fn wrap_response(&mut self, resp: ResponseApdu) -> ResponseApdu {
        let pending = core::mem::take(&mut self.response_pending);
        if self.role != Role::Card || self.state != State::Open || !self.level.r_mac() || !pending {
            return resp;
        }
        if !resp.sw().is_success_or_warning() {
            return ResponseApdu {
                data: Vec::new(),
                sw: resp.sw,
            };
        }
        let mut data = if self.level.r_enc() && !resp.data.is_empty() {
            let mut padded = Zeroizing::new(crypto::pad80(&resp.data, 16));
            let icv = self.icv(true);
            // pad80 output is always block aligned.
            let _ = crypto::aes_cbc_encrypt(&self.keys.enc, &icv, &mut padded);
            core::mem::take(&mut *padded)
        } else {
            resp.data
        };
        let mac = self.response_mac(&data, resp.sw);
        data.extend_from_slice(mac.get(..MAC_LEN).unwrap_or(&[]));
        ResponseApdu { data, sw: resp.sw }
    }
}

/// Encrypts key material for PUT KEY / STORE DATA under the static Key-DEK (Amendment D §6.2.8):
/// AES-CBC with a zero ICV. A key whose length is not a multiple of 16 (AES-192) is padded with
/// zero bytes first, as §7.2.1 allows ("arbitrary bytes").
pub fn encrypt_key_data(dek: &AesKey, key: &[u8]) -> Vec<u8> {
    let mut buf = Zeroizing::new(Vec::with_capacity(key.len() + 16));
    buf.extend_from_slice(key);
    crypto::zero_pad(&mut buf, 16);
    // The buffer is block aligned by construction.
    let _ = crypto::aes_cbc_encrypt(dek, &[0; 16], &mut buf);
    core::mem::take(&mut *buf)
}

/// Decrypts key material encrypted by [`encrypt_key_data`]; the caller cuts it to the clear
/// length given in the key component block. Fails when `data` is not whole AES blocks.
pub fn decrypt_key_data(dek: &AesKey, data: &[u8]) -> Result<Zeroizing<Vec<u8>>, Scp03Error> {
    if data.len() % 16 != 0 {
        return Err(Scp03Error::Malformed);
    }
    let mut buf = Zeroizing::new(data.to_vec());
    crypto::aes_cbc_decrypt(dek, &[0; 16], &mut buf).map_err(|_| Scp03Error::Malformed)?;
    Ok(buf)
}

/// Builds the PUT KEY key data field for an AES key under an AES Key-DEK (Amendment D Table 7-10):
/// `88 (n+1) keylen ciphered-key 03 KCV`, with the KCV per GPC B.6.
pub fn put_key_data(dek: &AesKey, key: &AesKey) -> KeyData {
    let mut block = Vec::with_capacity(33);
    block.push(key.len() as u8);
    block.extend_from_slice(&encrypt_key_data(dek, key.as_bytes()));
    KeyData {
        components: alloc::vec![KeyComponent {
            key_type: KEY_TYPE_AES,
            block
        }],
        kcv: kcv::kcv_aes(key).to_vec(),
    }
}

/// Recovers an AES key from a PUT KEY key data field encrypted under `dek` (the card side of
/// [`put_key_data`]), checking its length and, when present, its KCV in constant time.
pub fn open_put_key_data(dek: &AesKey, data: &KeyData) -> Result<AesKey, Scp03Error> {
    let [component] = data.components.as_slice() else {
        return Err(Scp03Error::Malformed);
    };
    if component.key_type != KEY_TYPE_AES {
        return Err(Scp03Error::Malformed);
    }
    let (clear_len, cipher) = component
        .split_clear_length(16)
        .ok_or(Scp03Error::Malformed)?;
    let plain = decrypt_key_data(dek, cipher)?;
    let clear_len = clear_len.unwrap_or(plain.len());
    let key_bytes = plain.get(..clear_len).ok_or(Scp03Error::Malformed)?;
    let key =
        AesKey::from_slice(key_bytes).map_err(|_| Scp03Error::UnsupportedKeyLength(clear_len))?;
    if !data.kcv.is_empty() && !crypto::ct_eq(&kcv::kcv_aes(&key), &data.kcv) {
        return Err(Scp03Error::BadCryptogram);
    }
    Ok(key)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use alloc::vec;

    use crate::util::h;
    fn a8(s: &str) -> [u8; 8] {
        h(s).try_into().unwrap()
    }
    fn key(s: &str) -> AesKey {
        AesKey::from_slice(&h(s)).unwrap()
    }
    const K: &str = "404142434445464748494A4B4C4D4E4F";

    fn keys_for(static_hex: [&str; 2], hc: &str, cc: &str) -> SessionKeys {
        let mut enc = key(static_hex[0]);
        let mut mac = key(static_hex[1]);
        derive_session_keys(&mut enc, &mut mac, 16, &a8(hc), &a8(cc)).unwrap()
    }

    #[test]
    fn session_keys_row_1() {
        // GP-FACTS: SCP03 table row 1 (self-test).
        let k = keys_for([K, K], "A7F76C713F0A713D", "31900058C1C451A2");
        assert_eq!(k.enc, key("258A78866F41482BEF482DC8CA976CCD"));
        assert_eq!(k.mac, key("053DB6ABC7FDF3B63A0D965EE16B0255"));
        assert_eq!(k.rmac, key("EDA0B4F2EC0345BFC50F3BC59CFEF936"));
    }

    #[test]
    fn session_keys_and_cryptograms_row_2() {
        // GP-FACTS: SCP03 table row 2 (self-test), with card cryptogram 9B5C9D42D5059430 and
        // host cryptogram F3C7624565B5894F.
        let (hc, cc) = (a8("68E9C8799FF8CB46"), a8("F8D89D88BA1287BF"));
        let k = keys_for([K, K], "68E9C8799FF8CB46", "F8D89D88BA1287BF");
        assert_eq!(k.enc, key("3C64070C595D1D72BDEE692DA99B7AE4"));
        assert_eq!(k.mac, key("6E8468B74A707842E3D3696F338D2657"));
        assert_eq!(k.rmac, key("FDD1D7C84750994815D0082734C31D88"));
        assert_eq!(card_cryptogram(&k, &hc, &cc), a8("9B5C9D42D5059430"));
        assert_eq!(host_cryptogram(&k, &hc, &cc), a8("F3C7624565B5894F"));
        assert!(verify_card_cryptogram(&k, &hc, &cc, &a8("9B5C9D42D5059430")).is_ok());
        assert_eq!(
            verify_card_cryptogram(&k, &hc, &cc, &a8("9B5C9D42D5059431")),
            Err(Scp03Error::BadCryptogram)
        );
    }

    #[test]
    fn pseudo_random_challenge_vector() {
        // GP-FACTS: "Pseudo-random challenge: K, seq 00002A, AID A000000018434D08090A0B0C000000".
        let mut k = key(K);
        let c = pseudo_random_challenge(
            &mut k,
            [0x00, 0x00, 0x2A],
            &h("A000000018434D08090A0B0C000000"),
        )
        .unwrap();
        assert_eq!(c, a8("A3F5F144D19BE66E"));
    }

    #[test]
    fn kdf_lengths() {
        let mut k = key(K);
        assert_eq!(kdf(&mut k, S_ENC, &[1; 16], 256).unwrap().len(), 32);
        assert_eq!(kdf(&mut k, S_ENC, &[1; 16], 192).unwrap().len(), 24);
        // The first 128 bits of a 256-bit output differ from a 128-bit output because L differs.
        assert_ne!(
            kdf(&mut k, S_ENC, &[1; 16], 256).unwrap()[..16],
            kdf(&mut k, S_ENC, &[1; 16], 128).unwrap()[..]
        );
        let odd = kdf(&mut k, S_ENC, &[], 12).unwrap();
        assert_eq!(odd.len(), 2);
        assert_eq!(odd[1] & 0x0F, 0);
        assert_eq!(
            kdf(&mut k, S_ENC, &[], u16::MAX).unwrap().len(),
            KDF_MAX_BLOCKS * 16
        );
        assert!(kdf(&mut k, S_ENC, &[], 0).unwrap().is_empty());
        let mut e = key(K);
        assert_eq!(
            derive_session_keys(&mut k, &mut e, 20, &[0; 8], &[0; 8]).unwrap_err(),
            Scp03Error::UnsupportedKeyLength(20)
        );
        let k256 = derive_session_keys(&mut k, &mut e, 32, &[0; 8], &[0; 8]).unwrap();
        assert_eq!(k256.enc.len(), 32);
    }

    /// GP-FACTS: "Real card, i=70, KVN 30 (real card)".
    #[test]
    fn real_card_i70_trace() {
        let mut enc = key("F995D0A069335C7DF42E590317FFEA6D");
        let mut mac = key("58563362EC5A4541ABCD32B34B1EAE7D");
        let sd = h("A000000151000000");
        let hc = a8("B2BDE1A2DC66BD56");
        let iu = InitializeUpdateResponse::parse(&h(
            "00000000000000000000300370C40932A6FEFEAEB2E127185170F45FCA000015",
        ))
        .unwrap();
        assert_eq!((iu.kvn, iu.scp_id, iu.i), (0x30, 0x03, 0x70));
        assert_eq!(iu.sequence_counter, Some([0x00, 0x00, 0x15]));
        assert_eq!(
            iu.to_bytes(),
            h("00000000000000000000300370C40932A6FEFEAEB2E127185170F45FCA000015")
        );
        // The card challenge is the pseudo-random one from seq 000015.
        assert_eq!(
            pseudo_random_challenge(&mut enc, [0, 0, 0x15], &sd).unwrap(),
            iu.card_challenge
        );

        let keys = derive_session_keys(&mut enc, &mut mac, 16, &hc, &iu.card_challenge).unwrap();
        assert_eq!(keys.enc, key("9B841BB63D1087484FF7F16802017243"));
        assert_eq!(keys.mac, key("8117FE5ADED74AC0DAABE9FB81DBDB67"));
        verify_card_cryptogram(&keys, &hc, &iu.card_challenge, &iu.card_cryptogram).unwrap();
        let host_c = host_cryptogram(&keys, &hc, &iu.card_challenge);

        let mut host = Session::host(keys.clone(), SecurityLevel::C_MAC_C_DEC);
        let ea = host.external_authenticate(&host_c);
        assert_eq!(
            ea.to_bytes(),
            h("848203001059D54D932423D29F6313C970875F8C2F")
        );
        let delete = CommandApdu::parse(&h("80E400800A4F08A00100015141434C")).unwrap();
        let wrapped = host.wrap(&delete).unwrap();
        assert_eq!(
            wrapped.to_bytes(),
            h("84E400801829F06AEC3180B3EFE91FF662310B945DE0D5FE66AD67A5B6")
        );

        // The card side accepts the same bytes and recovers the plain DELETE.
        let mut card = Session::card(keys);
        assert_eq!(
            card.verify_external_authenticate(&ea, &host_c).unwrap(),
            SecurityLevel::C_MAC_C_DEC
        );
        let plain = card
            .unwrap_command(&CommandApdu::parse(&wrapped.to_bytes()).unwrap())
            .unwrap();
        assert_eq!(plain.to_bytes(), delete.to_bytes());
        assert_eq!(card.counter(), 1);
    }

    /// GP-FACTS: "Same card, default key K, level 33 (real card)".
    #[test]
    fn real_card_level_33_trace() {
        let mut k = key(K);
        let mut k2 = key(K);
        let hc = a8("2C8130E574247B1B");
        let iu = InitializeUpdateResponse::parse(&h(
            "00010203040506070809000370A5874C57119B976BF94879E36F29E039000001",
        ))
        .unwrap();
        // GP-FACTS does not name the AID this card challenge was derived from, so only the
        // session keys and the EXTERNAL AUTHENTICATE are checked here.
        let keys = derive_session_keys(&mut k, &mut k2, 16, &hc, &iu.card_challenge).unwrap();
        assert_eq!(keys.enc, key("0F1EE990609F3C4E5DF806316763B6C5"));
        assert_eq!(keys.mac, key("75A2C1634EF06B47FD6F726978AE561E"));
        assert_eq!(keys.rmac, key("40C3A39B40CF342F4D73080F80718E3A"));
        verify_card_cryptogram(&keys, &hc, &iu.card_challenge, &iu.card_cryptogram).unwrap();
        let host_c = host_cryptogram(&keys, &hc, &iu.card_challenge);
        let mut host = Session::host(keys.clone(), SecurityLevel::ALL);
        let ea = host.external_authenticate(&host_c);
        assert_eq!(
            ea.to_bytes(),
            h("8482330010A75F1CD48F3B93DFA57E690937921F92")
        );
        let mut card = Session::card(keys);
        assert_eq!(
            card.verify_external_authenticate(&ea, &host_c).unwrap(),
            SecurityLevel::ALL
        );
        // The EXTERNAL AUTHENTICATE response carries no R-MAC.
        assert_eq!(
            card.wrap_response(ResponseApdu::status(Sw::NO_ERROR))
                .to_bytes(),
            h("9000")
        );
        // The host may not unwrap a response it has no command for.
        assert_eq!(
            host.unwrap_response(&ResponseApdu::status(Sw::NO_ERROR))
                .unwrap_err(),
            Scp03Error::WrongState
        );
        assert!(host.is_open());
    }

    #[test]
    fn initialize_update_response_rules() {
        let good = h("00010203040506070809000370A5874C57119B976BF94879E36F29E039000001");
        assert_eq!(
            InitializeUpdateResponse::parse(&good[..29]),
            Err(Scp03Error::Malformed)
        );
        assert_eq!(
            InitializeUpdateResponse::parse(&good[..31]),
            Err(Scp03Error::WrongLength)
        );
        let mut scp02 = good.clone();
        scp02[11] = 0x02;
        assert_eq!(
            InitializeUpdateResponse::parse(&scp02),
            Err(Scp03Error::UnsupportedProtocol(2))
        );
        let mut random = good[..29].to_vec();
        random[12] = 0x60;
        assert_eq!(
            InitializeUpdateResponse::parse(&random)
                .unwrap()
                .sequence_counter,
            None
        );
    }

    fn pair(level: SecurityLevel) -> (Session, Session) {
        let keys = keys_for([K, K], "0102030405060708", "1112131415161718");
        let hc = host_cryptogram(&keys, &a8("0102030405060708"), &a8("1112131415161718"));
        let mut host = Session::host(keys.clone(), level);
        let mut card = Session::card(keys);
        let ea = host.external_authenticate(&hc);
        assert_eq!(card.verify_external_authenticate(&ea, &hc).unwrap(), level);
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
            [0x00u8, 0x01, 0x03, 0x11, 0x13, 0x33].map(|b| SecurityLevel::parse(b).unwrap())
        {
            let (mut host, mut card) = pair(level);
            for (cmd, resp) in commands.iter().zip(responses.iter()) {
                let wire = host.wrap(cmd).unwrap();
                // Through the byte encoding, as a reader would deliver it.
                let wire = CommandApdu::parse(&wire.to_bytes()).unwrap();
                if level.c_mac() {
                    assert!(apdu::has_secure_messaging(wire.cla));
                    assert_eq!(
                        apdu::logical_channel(wire.cla),
                        apdu::logical_channel(cmd.cla)
                    );
                }
                if level.c_dec() && !cmd.data.is_empty() {
                    assert!(!wire
                        .data
                        .windows(cmd.data.len().min(8))
                        .any(|w| w == &cmd.data[..cmd.data.len().min(8)]));
                }
                let plain = card.unwrap_command(&wire).unwrap();
                assert_eq!(plain.cla, cmd.cla, "{level:?}");
                assert_eq!((plain.ins, plain.p1, plain.p2), (cmd.ins, cmd.p1, cmd.p2));
                assert_eq!(plain.data, cmd.data, "{level:?}");
                let protected = card.wrap_response(resp.clone());
                if level.r_enc() && resp.data.len() > 1 && resp.sw().is_success_or_warning() {
                    assert_ne!(&protected.data[..resp.data.len()], &resp.data[..]);
                }
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
            assert_eq!(host.counter(), commands.len() as u64);
            assert_eq!(card.counter(), commands.len() as u64);
        }
    }

    #[test]
    fn tampering_aborts() {
        for level in [
            SecurityLevel::C_MAC,
            SecurityLevel::C_MAC_C_DEC,
            SecurityLevel::ALL,
        ] {
            // Flip one bit anywhere in the command: the card rejects it and the session dies.
            let cmd = CommandApdu::new(0x80, 0xE2, 0x90, 0x00, vec![0x77; 20], None);
            let (mut host, _) = pair(level);
            let wire = host.wrap(&cmd).unwrap().to_bytes();
            for i in 0..wire.len() {
                if i == 4 || (level.r_mac() && i == wire.len() - 1) {
                    // Lc: changing it is a length error, caught by APDU parsing. Le is not MACed
                    // (Amendment D §6.2.4).
                    continue;
                }
                let (_, mut card) = pair(level);
                let mut bad = wire.clone();
                bad[i] ^= 0x01;
                let Ok(parsed) = CommandApdu::parse(&bad) else {
                    continue;
                };
                let r = card.unwrap_command(&parsed);
                if i == 0 {
                    // CLA bit 1 selects another logical channel; the MAC deliberately excludes it.
                    continue;
                }
                assert!(r.is_err(), "byte {i} level {level:?}");
                assert!(card.is_aborted());
                assert_eq!(
                    card.unwrap_command(&parsed).unwrap_err(),
                    Scp03Error::SessionAborted
                );
            }
        }
        // A replayed command fails (the chaining value moved on).
        let (mut host, mut card) = pair(SecurityLevel::C_MAC);
        let w = host
            .wrap(&CommandApdu::new(0x80, 0xF2, 0x80, 0x02, h("4F00"), None))
            .unwrap();
        card.unwrap_command(&w).unwrap();
        assert_eq!(card.unwrap_command(&w).unwrap_err(), Scp03Error::BadMac);
        // A command without secure messaging while C-MAC is required.
        let (_, mut card) = pair(SecurityLevel::C_MAC);
        let plain = CommandApdu::new(0x80, 0xF2, 0x80, 0x02, h("4F00"), None);
        assert_eq!(
            card.unwrap_command(&plain).unwrap_err(),
            Scp03Error::NotSecured
        );
        // A tampered R-MAC.
        let (mut host, mut card) = pair(SecurityLevel::C_MAC_R_MAC);
        let w = host.wrap(&plain).unwrap();
        card.unwrap_command(&w).unwrap();
        let mut r = card.wrap_response(ResponseApdu::new(vec![1, 2, 3], Sw::NO_ERROR));
        r.data[0] ^= 1;
        assert_eq!(host.unwrap_response(&r).unwrap_err(), Scp03Error::BadMac);
        assert!(host.is_aborted());
        assert_eq!(host.wrap(&plain).unwrap_err(), Scp03Error::SessionAborted);
    }

    #[test]
    fn external_authenticate_failures() {
        let keys = keys_for([K, K], "0102030405060708", "1112131415161718");
        let hc = host_cryptogram(&keys, &a8("0102030405060708"), &a8("1112131415161718"));
        let mut host = Session::host(keys.clone(), SecurityLevel::C_MAC);
        let ea = host.external_authenticate(&hc);

        let mut card = Session::card(keys.clone());
        let wrong = a8("0000000000000000");
        assert_eq!(
            card.verify_external_authenticate(&ea, &wrong).unwrap_err(),
            Scp03Error::BadCryptogram
        );
        assert_eq!(
            Scp03Error::<Infallible>::BadCryptogram.sw(),
            Sw::VERIFICATION_FAILED
        );
        assert_eq!(
            card.verify_external_authenticate(&ea, &hc).unwrap_err(),
            Scp03Error::WrongState
        );

        let mut card = Session::card(keys.clone());
        let mut bad = ea.clone();
        bad.data[15] ^= 1;
        assert_eq!(
            card.verify_external_authenticate(&bad, &hc).unwrap_err(),
            Scp03Error::BadMac
        );

        let mut card = Session::card(keys.clone());
        let mut lvl = ea.clone();
        lvl.p1 = 0x31;
        assert_eq!(
            card.verify_external_authenticate(&lvl, &hc).unwrap_err(),
            Scp03Error::UnsupportedLevel(0x31)
        );

        let mut card = Session::card(keys.clone());
        let mut short = ea.clone();
        short.data.pop();
        assert_eq!(
            card.verify_external_authenticate(&short, &hc).unwrap_err(),
            Scp03Error::WrongLength
        );

        let mut card = Session::card(keys);
        assert_eq!(
            card.unwrap_command(&ea).unwrap_err(),
            Scp03Error::NotAuthenticated
        );
        // The response to a rejected command is plain.
        let r = card.wrap_response(ResponseApdu::status(Sw::SECURITY_STATUS_NOT_SATISFIED));
        assert_eq!(r.to_bytes(), h("6982"));
    }

    #[test]
    fn security_levels() {
        for b in 0..=255u8 {
            let ok = matches!(b, 0x00 | 0x01 | 0x03 | 0x11 | 0x13 | 0x33);
            assert_eq!(SecurityLevel::parse(b).is_some(), ok, "{b:02X}");
        }
        assert_eq!(
            alloc::format!("{}", SecurityLevel::ALL),
            "C-MAC+C-DEC+R-MAC+R-ENC"
        );
        assert_eq!(alloc::format!("{}", SecurityLevel::NO_SECURITY), "none");
        assert!(SecurityLevel::C_MAC_C_DEC.c_dec() && !SecurityLevel::C_MAC_C_DEC.r_mac());
    }

    #[test]
    fn put_key_data_round_trip() {
        let dek = key("0A02A6D687406DCFA09DC70B3EDB7E38");
        for len in [16usize, 24, 32] {
            let new_key =
                AesKey::from_slice(&(0x40..0x40 + len as u8).collect::<Vec<_>>()).unwrap();
            let kd = put_key_data(&dek, &new_key);
            let bytes = kd.to_bytes().unwrap();
            // 88 (n+1) keylen data 03 KCV with n = 16 or 32 (Amendment D Table 7-10).
            let n = if len == 16 { 16 } else { 32 };
            assert_eq!(bytes[..3], [0x88, n as u8 + 1, len as u8]);
            assert_eq!(bytes[3 + n], 0x03);
            assert_eq!(bytes[4 + n..], kcv::kcv_aes(&new_key));
            assert_eq!(open_put_key_data(&dek, &kd).unwrap(), new_key);
            // The ciphertext is AES-CBC with zero ICV under the DEK.
            let plain = decrypt_key_data(&dek, &kd.components[0].block[1..]).unwrap();
            assert_eq!(&plain[..len], new_key.as_bytes());
            let mut wrong_kcv = kd.clone();
            wrong_kcv.kcv[0] ^= 1;
            assert_eq!(
                open_put_key_data(&dek, &wrong_kcv).unwrap_err(),
                Scp03Error::BadCryptogram
            );
        }
        assert_eq!(
            decrypt_key_data(&dek, &[0; 15]).unwrap_err(),
            Scp03Error::Malformed
        );
    }

    #[test]
    fn debug_hides_keys() {
        let keys = keys_for([K, K], "0102030405060708", "1112131415161718");
        let s = alloc::format!(
            "{keys:?} {:?}",
            Session::host(keys.clone(), SecurityLevel::ALL)
        );
        assert!(!s.contains("40, 41") && !s.contains("4041"));
        assert!(s.contains("AES-128"));
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
            let level = [0x00u8, 0x01, 0x03, 0x11, 0x13, 0x33].map(|b| SecurityLevel::parse(b).unwrap())[level_index];
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
