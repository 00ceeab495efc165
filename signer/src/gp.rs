//! GlobalPlatform card-management operations the signer performs through a secure channel: personalising a
//! fab-fresh card with per-card issuer keys, loading and installing an application, reading the registry.

use crate::channel::{self, SecureChannel, StaticKeys, ISD_AID};
use crate::diversify::{derive_card_keys, CardKeys, Purpose};
use crate::error::Error;
use crate::transport::Transport;
use gp_core::commands::put_key::{KeyComponent, KeyData, PutKey, PutKeyResponse, KEY_TYPE_AES};
use gp_core::commands::{
    get_status, parse_get_status_response_for, set_status, split_into_load_blocks,
    InstallForInstall, InstallForLoad, LfdbBlock, LoadFile, RegistryEntry, GET_STATUS_TLV,
};
use gp_core::diversify::Scheme;
use gp_core::scp03::SecurityLevel;
use keyman::hsm::{KeyHandle, SecretKeyType, TokenSession};

/// The default GlobalPlatform test key (`40..4F`) that many cards ship with as their transport key.
pub const DEFAULT_TRANSPORT_KEY: [u8; 16] = [
    0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F,
];

/// The key version number the issuer's per-card SCP03 key set gets at personalisation.
pub const ISSUER_KVN: u8 = 0x31;

/// Card life-cycle codes set during personalisation.
const INITIALIZED: u8 = 0x07;
const SECURED: u8 = 0x0F;

/// Security level used for card management: C-MAC and C-DECRYPTION.
fn management_level() -> SecurityLevel {
    SecurityLevel::C_MAC_C_DEC
}

/// What personalisation did, for the operator's screen and the ledger.
#[derive(Debug, Clone)]
pub struct Personalised {
    /// The card's key diversification data.
    pub kdd: [u8; 10],
    /// Key version number of the new key set.
    pub kvn: u8,
    /// KCVs of ENC, MAC, DEK as the card confirmed them (SCP03: AES, GPC B.6 method; SCP02: 3DES over
    /// zeros).
    pub kcvs: [[u8; 3]; 3],
    /// The secure channel protocol the keys were put with (`02` or `03`).
    pub scp: u8,
    /// Where the channel's session keys were (see [`channel::SessionKeyPath::describe`]).
    pub session_keys: &'static str,
}

/// Replaces a fab-fresh card's transport keys (the default test key) with per-card issuer keys derived in
/// the token from `master`, then moves the card to SECURED. SCP03 cards get AES-128 keys; SCP02 cards get
/// 3DES keys through [`channel::scp02::personalise`].
pub fn personalise(
    t: &mut dyn Transport,
    token: &TokenSession<'_>,
    master: KeyHandle,
    scheme: Scheme,
    allow_same_channel_keys: bool,
) -> Result<Personalised, Error> {
    channel::select(t, &ISD_AID)?;
    if channel::offered_scp(t, token)? == gp_core::scp02::SCP_ID {
        return channel::scp02::personalise(t, token, master, scheme, allow_same_channel_keys);
    }
    let transport_keys = crate::sd::import_default_transport_keys(token)?;
    let transport = transport_keys.statics();
    let (hc, iu) = channel::initialize_update(t, token, 0)?;
    let old_kvn = iu.kvn;
    let kdd = iu.kdd;
    let mut ch = SecureChannel::authenticate(t, token, transport, hc, &iu, management_level())?;

    let new = derive_card_keys(
        token,
        master,
        scheme,
        &kdd,
        SecretKeyType::Aes128,
        Purpose::PutKey,
    )?;
    let session_keys = ch.session_key_path().describe();
    let kcvs = put_key_set(
        &mut ch,
        token,
        &transport,
        &new,
        (old_kvn, ISSUER_KVN),
        allow_same_channel_keys,
    )?;
    for state in [INITIALIZED, SECURED] {
        ch.send_ok(&set_status(0x80, state, &[]), "SET STATUS")?;
    }
    Ok(Personalised {
        kdd,
        kvn: ISSUER_KVN,
        kcvs,
        scp: 0x03,
        session_keys,
    })
}

/// Sends one PUT KEY that replaces key set `old_kvn` (0: adds a set) with `new` as key set `new_kvn`
/// (`kvns` is `(old_kvn, new_kvn)`), each key wrapped in the token under `current.dek` (the card's current
/// static DEK; SCP03: AES-CBC with a zero IV). `current` holds the static keys this channel authenticated
/// with, so they are the card's current keys; a new set whose ENC and MAC have their KCVs is refused
/// before anything is sent unless `allow_same_channel_keys` ([`refuse_same_channel_keys`]). Checks that
/// the card confirms exactly the KCVs the token computed. Returns those KCVs (GPC B.6 method).
pub fn put_key_set(
    ch: &mut SecureChannel<'_>,
    token: &TokenSession<'_>,
    current: &StaticKeys,
    new: &CardKeys<'_, '_>,
    kvns: (u8, u8),
    allow_same_channel_keys: bool,
) -> Result<[[u8; 3]; 3], Error> {
    let (old_kvn, new_kvn) = kvns;
    if !allow_same_channel_keys {
        refuse_same_channel_keys(
            token,
            current,
            new,
            &format!("PUT KEY of key set {new_kvn:02X} replacing {old_kvn:02X}"),
        )?;
    }
    let put_key = put_key_apdu(token, current.dek, new, old_kvn, new_kvn)?;
    let kcvs = put_key.1;
    let resp = ch.send_ok(&put_key.0, "PUT KEY")?;
    let confirmed = PutKeyResponse::parse(&resp.data)
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

/// Refuses a new key set whose ENC and MAC are the static keys in use (`current`), by their KCVs. The
/// current keys' KCVs are computed in the token from the keys the channel authenticated with: the card's
/// key information template gives types and lengths, never check values, and a successful
/// authentication proves these are the card's keys. See [`Error::SameChannelKeys`] for why equal channel
/// keys under a replaced key set are a replay window.
pub fn refuse_same_channel_keys(
    token: &TokenSession<'_>,
    current: &StaticKeys,
    new: &CardKeys<'_, '_>,
    what: &str,
) -> Result<(), Error> {
    let enc = same_key(token, current.enc, new.enc.handle())?;
    let mac = same_key(token, current.mac, new.mac.handle())?;
    if let (Some(enc), Some(mac)) = (enc, mac) {
        return Err(Error::SameChannelKeys {
            what: what.to_string(),
            same: format!(
                "ENC KCV {}, MAC KCV {}",
                hex::encode_upper(enc),
                hex::encode_upper(mac)
            ),
        });
    }
    Ok(())
}

/// The KCV `current` and `new` share, or `None` when they differ. Both are compared by one method: the
/// token's encryption KCV when both keys may encrypt, else the zero-block check value the token keeps
/// (`CKA_CHECK_VALUE`; a transport key imported for CMAC only cannot encrypt). A token that keeps no
/// check value for a key that may not encrypt (NSS softokn's derived keys) gives no answer: nothing is
/// refused, and a note on standard error says the comparison could not be made.
fn same_key(
    token: &TokenSession<'_>,
    current: KeyHandle,
    new: KeyHandle,
) -> Result<Option<[u8; 3]>, Error> {
    // Only "this key has no KCV here" is an answer to work around; any other token failure stops the run.
    let kcv = |key: KeyHandle| match token.kcv(key) {
        Ok(k) => Ok(Some(k)),
        Err(keyman::Error::Unsupported(_)) => Ok(None),
        Err(e) => Err(e),
    };
    if let (Some(a), Some(b)) = (kcv(current)?, kcv(new)?) {
        if a.method == b.method {
            return Ok((a.value == b.value).then_some(a.value));
        }
    }
    let kept = |key: KeyHandle| -> Result<Option<[u8; 3]>, Error> {
        Ok(token
            .key_info(key)?
            .check_value
            .and_then(|v| v.get(..3).and_then(|s| <[u8; 3]>::try_from(s).ok())))
    };
    Ok(match (kept(current)?, kept(new)?) {
        (Some(x), Some(y)) => (x == y).then_some(x),
        _ => {
            eprintln!(
                "signer: note: token '{}' gives no check value for one of the keys compared, so whether \
                 the new key set repeats the current channel keys could not be checked",
                token.label()
            );
            None
        }
    })
}

/// The PUT KEY command (before secure messaging) carrying `new` wrapped under `dek`, and the KCVs of the
/// three keys. The wrapping happens in the token: SCP03 AES-CBC with a zero IV under the static DEK. A token
/// that cannot wrap this way (SoftHSM2 has no DES3 wrap, which SCP02 needs) stops with an error and the
/// keys are not exported instead.
pub fn put_key_apdu(
    token: &TokenSession<'_>,
    dek: KeyHandle,
    new: &CardKeys<'_, '_>,
    old_kvn: u8,
    new_kvn: u8,
) -> Result<(gp_core::apdu::CommandApdu, [[u8; 3]; 3]), Error> {
    let mut kcvs = [[0u8; 3]; 3];
    let mut keys = Vec::new();
    for (slot, key) in kcvs.iter_mut().zip([&new.enc, &new.mac, &new.dek]) {
        let handle = key.handle();
        let key_type = handle.key_type().unwrap_or(SecretKeyType::Aes128);
        if key_type.is_des() || dek.key_type().is_some_and(SecretKeyType::is_des) {
            return Err(Error::Hsm(keyman::Error::Unsupported(
                "SCP02 PUT KEY needs the key wrapped with DES3-ECB under the DEK, which this token cannot                  do (SoftHSM2 has no DES3 wrap); the key is never exported in clear instead"
                    .into(),
            )));
        }
        let kcv = token.kcv(handle)?;
        let wrapped = token.wrap_cbc_zero_iv(dek, handle)?;
        let clear_len = u8::try_from(key_type.byte_len()).unwrap_or(16);
        keys.push(KeyData {
            components: vec![KeyComponent {
                key_type: KEY_TYPE_AES,
                block: [&[clear_len][..], &wrapped].concat(),
            }],
            kcv: kcv.value.to_vec(),
        });
        *slot = kcv.value;
    }
    let apdu = PutKey { new_kvn, keys }
        .to_apdu(old_kvn, 1)
        .map_err(|e| Error::Card(format!("PUT KEY: {e}")))?;
    Ok((apdu, kcvs))
}

/// Opens a management channel to the card domain with the card's per-card issuer keys, derived in the token
/// from `master` and the KDD the card reports.
pub fn open_issuer_channel<'t, 's: 't, 'h: 't>(
    t: &'t mut dyn Transport,
    token: &'s TokenSession<'h>,
    master: KeyHandle,
    scheme: Scheme,
) -> Result<(SecureChannel<'t>, [u8; 10]), Error> {
    open_domain_channel(t, token, &ISD_AID, master, scheme)
}

/// Opens SCP03 (C-MAC, C-DEC) to the security domain `aid` with the card's keys derived in the token
/// from `master` and the KDD the card reports. Returns the channel and the KDD.
pub fn open_domain_channel<'t>(
    t: &'t mut dyn Transport,
    token: &'t TokenSession<'_>,
    aid: &[u8],
    master: KeyHandle,
    scheme: Scheme,
) -> Result<(SecureChannel<'t>, [u8; 10]), Error> {
    channel::select(t, aid)?;
    let (hc, iu) = channel::initialize_update(t, token, 0)?;
    let keys = derive_card_keys(
        token,
        master,
        scheme,
        &iu.kdd,
        SecretKeyType::Aes128,
        Purpose::Channel,
    )?;
    let statics = StaticKeys {
        enc: keys.enc.handle(),
        mac: keys.mac.handle(),
        dek: keys.dek.handle(),
    };
    let ch = SecureChannel::authenticate(t, token, statics, hc, &iu, management_level())?;
    Ok((ch, iu.kdd))
}

/// What to load and install.
#[derive(Debug, Clone)]
pub struct LoadRequest {
    /// Executable load file AID (the CAP package AID).
    pub load_file_aid: Vec<u8>,
    /// The load file data block.
    pub lfdb: Vec<u8>,
    /// Its hash, as INSTALL [for load] carries it.
    pub lfdb_hash: Vec<u8>,
    /// Applets to install and make selectable: (module AID, application AID).
    pub applets: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Where the load goes and what it carries beyond the LFDB: the security domain named in INSTALL
/// [for load] (the vendor's SSD; the card domain when `None`), the DAP blocks for this card, and the
/// ciphered LFDB (`D3` ICV, `D4` data) to send instead of the plain one.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The security domain the load file is associated with.
    pub sd_aid: Option<Vec<u8>>,
    /// `(security domain AID, signature)` DAP blocks.
    pub dap_blocks: Vec<(Vec<u8>, Vec<u8>)>,
    /// `(ICV, ciphered LFDB)` when the LFDB is ciphered.
    pub ciphered: Option<(Vec<u8>, Vec<u8>)>,
}

/// Largest LOAD block sent; leaves room for C-DEC padding and the C-MAC within a short APDU.
pub const LOAD_BLOCK: usize = 200;

/// INSTALL [for load], LOAD, INSTALL [for install and make selectable] through an open channel.
pub fn load_and_install(ch: &mut SecureChannel<'_>, req: &LoadRequest) -> Result<(), Error> {
    load_and_install_with(ch, req, &LoadOptions::default())
}

/// As [`load_and_install`], naming the security domain, carrying DAP blocks and a ciphered LFDB.
pub fn load_and_install_with(
    ch: &mut SecureChannel<'_>,
    req: &LoadRequest,
    opts: &LoadOptions,
) -> Result<(), Error> {
    for (what, cmd) in load_and_install_commands(req, opts)? {
        ch.send_ok(&cmd, &what)?;
    }
    Ok(())
}

/// The plain commands (before secure messaging) of a load and install, each with the name an error
/// message gives it: INSTALL [for load], every LOAD block, INSTALL [for install and make selectable] per
/// applet. [`load_and_install_with`] sends them one by one; a remote script wraps them all in advance.
pub fn load_and_install_commands(
    req: &LoadRequest,
    opts: &LoadOptions,
) -> Result<Vec<(String, gp_core::apdu::CommandApdu)>, Error> {
    let mut out = load_commands(req, opts)?;
    out.extend(install_commands(req)?);
    Ok(out)
}

/// The plain commands of the load alone, with their names: INSTALL [for load] and every LOAD block.
pub fn load_commands(
    req: &LoadRequest,
    opts: &LoadOptions,
) -> Result<Vec<(String, gp_core::apdu::CommandApdu)>, Error> {
    let mut out = Vec::new();
    let for_load = InstallForLoad {
        load_file_aid: req.load_file_aid.clone(),
        sd_aid: opts.sd_aid.clone().unwrap_or_else(|| ISD_AID.to_vec()),
        lfdb_hash: req.lfdb_hash.clone(),
        load_parameters: Vec::new(),
        load_token: Vec::new(),
    };
    let cmd = for_load
        .to_apdu()
        .map_err(|e| Error::Card(format!("INSTALL [for load]: {e}")))?;
    out.push(("INSTALL [for load]".to_string(), cmd));
    let load = LoadFile {
        dap_blocks: opts.dap_blocks.clone(),
        lfdb: match &opts.ciphered {
            Some((icv, data)) => LfdbBlock::Ciphered {
                icv: Some(icv.clone()),
                data: data.clone(),
            },
            None => LfdbBlock::Plain(req.lfdb.clone()),
        },
    };
    let bytes = load
        .to_bytes()
        .map_err(|e| Error::Card(format!("LOAD: {e}")))?;
    let blocks = split_into_load_blocks(&bytes, LOAD_BLOCK)
        .map_err(|e| Error::Card(format!("LOAD: {e}")))?;
    for (n, block) in blocks.into_iter().enumerate() {
        out.push((format!("LOAD block {n}"), block));
    }
    Ok(out)
}

/// INSTALL [for install and make selectable] of every applet of `req` (privileges `00`, install
/// parameters `C9 00`), each with its name for error messages.
pub fn install_commands(
    req: &LoadRequest,
) -> Result<Vec<(String, gp_core::apdu::CommandApdu)>, Error> {
    let mut out = Vec::new();
    for (module, app) in &req.applets {
        let install = InstallForInstall {
            load_file_aid: req.load_file_aid.clone(),
            module_aid: module.clone(),
            application_aid: app.clone(),
            privileges: vec![0x00],
            install_parameters: vec![0xC9, 0x00],
            token: Vec::new(),
            make_selectable: true,
        };
        let cmd = install
            .to_apdu()
            .map_err(|e| Error::Card(format!("INSTALL [for install]: {e}")))?;
        out.push(("INSTALL [for install and make selectable]".to_string(), cmd));
    }
    Ok(out)
}

/// Card life-cycle changes the issuer makes through the card domain (SET STATUS, P1 `80`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CardStateChange {
    /// SECURED → CARD_LOCKED (`7F`): the card answers only the issuer's audit until unlocked.
    Lock,
    /// CARD_LOCKED → SECURED (`0F`).
    Unlock,
    /// → TERMINATED (`FF`): irreversible.
    Terminate,
}

impl CardStateChange {
    /// The life-cycle code SET STATUS carries.
    pub fn code(self) -> u8 {
        match self {
            CardStateChange::Lock => 0x7F,
            CardStateChange::Unlock => SECURED,
            CardStateChange::Terminate => 0xFF,
        }
    }

    /// The state's name.
    pub fn state_name(self) -> &'static str {
        match self {
            CardStateChange::Lock => "CARD_LOCKED",
            CardStateChange::Unlock => "SECURED",
            CardStateChange::Terminate => "TERMINATED",
        }
    }
}

/// Changes the card's life cycle through an open channel to the card domain.
pub fn set_card_state(ch: &mut SecureChannel<'_>, change: CardStateChange) -> Result<(), Error> {
    ch.send_ok(&set_status(0x80, change.code(), &[]), "SET STATUS")?;
    Ok(())
}

/// The registry as GET STATUS returns it: the card domain, applications and security domains, and load
/// files with their modules.
pub fn registry(ch: &mut SecureChannel<'_>) -> Result<Vec<(u8, RegistryEntry)>, Error> {
    let mut out = Vec::new();
    for p1 in [0x80u8, 0x40, 0x10] {
        let mut next = false;
        loop {
            let cmd = get_status(p1, next, &[]);
            let resp = ch.send(&cmd)?;
            if resp.sw == 0x6A88 {
                break;
            }
            if resp.sw != 0x9000 && resp.sw != 0x6310 {
                channel::expect_ok(&resp, "GET STATUS")?;
            }
            let entries = parse_get_status_response_for(p1, GET_STATUS_TLV, &resp.data)
                .map_err(|e| Error::Card(format!("malformed GET STATUS response: {e}")))?;
            out.extend(entries.into_iter().map(|e| (p1, e)));
            if resp.sw == 0x6310 {
                next = true;
            } else {
                break;
            }
        }
    }
    Ok(out)
}

/// One registry entry as a line for people: kind, AID, life cycle, privileges, and what it relates to.
pub fn describe_entry(p1: u8, e: &RegistryEntry) -> String {
    use gp_core::life_cycle::{self as lc};
    let (kind, state) = match p1 {
        0x80 => (
            "ISD",
            lc::card_state_name(e.life_cycle).unwrap_or("?").to_string(),
        ),
        0x40 => {
            let sd = e.privileges.first().is_some_and(|p| p & 0x80 != 0);
            let base = match e.life_cycle & 0x7F {
                lc::APP_INSTALLED => "INSTALLED",
                lc::APP_SELECTABLE => "SELECTABLE",
                lc::SD_PERSONALIZED if sd => "PERSONALIZED",
                _ => "APPLICATION-SPECIFIC",
            };
            let locked = if e.life_cycle & lc::APP_LOCKED != 0 {
                "+LOCKED"
            } else {
                ""
            };
            (if sd { "SSD" } else { "APP" }, format!("{base}{locked}"))
        }
        _ => (
            "ELF",
            if e.life_cycle == lc::LOAD_FILE_LOADED {
                "LOADED".into()
            } else {
                "?".into()
            },
        ),
    };
    let mut line = format!(
        "{kind:<4} {:<32} {state:<12} {:02X} privileges {}",
        hex::encode_upper(&e.aid),
        e.life_cycle,
        hex::encode_upper(e.privileges)
    );
    if let Some(elf) = &e.elf_aid {
        line.push_str(&format!(" from {}", hex::encode_upper(elf)));
    }
    if let Some(sd) = &e.associated_sd {
        line.push_str(&format!(" sd {}", hex::encode_upper(sd)));
    }
    for m in &e.modules {
        line.push_str(&format!(" module {}", hex::encode_upper(m)));
    }
    line
}
