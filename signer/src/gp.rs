//! GlobalPlatform card-management operations the signer performs through a secure channel: personalising a
//! fab-fresh card with per-card issuer keys, loading and installing an application, reading the registry.

use crate::channel::{self, SecureChannel, StaticKeys, ISD_AID};
use crate::diversify::{derive_card_keys, Purpose};
use crate::error::Error;
use crate::transport::Transport;
use gp_core::apdu::CommandApdu;
use gp_core::commands::{
    parse_get_status_response, split_into_load_blocks, InstallForInstall, InstallForLoad, LfdbBlock, LoadFile,
    RegistryEntry,
};
use gp_core::diversify::Scheme;
use gp_core::scp03::SecurityLevel;
use keyman::hsm::{KeyHandle, SecretKeyType, TokenSession, Usage};
use secrecy::SecretSlice;

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
    SecurityLevel(SecurityLevel::C_MAC.0 | SecurityLevel::C_DECRYPTION.0)
}

/// What personalisation did, for the operator's screen and the ledger.
#[derive(Debug, Clone)]
pub struct Personalised {
    /// The card's key diversification data.
    pub kdd: [u8; 10],
    /// Key version number of the new key set.
    pub kvn: u8,
    /// KCVs of ENC, MAC, DEK as the card confirmed them (AES, GPC B.6 method).
    pub kcvs: [[u8; 3]; 3],
}

/// Replaces a fab-fresh card's transport keys (the default test key, SCP03) with per-card issuer keys
/// derived in the token from `master`, then moves the card to SECURED.
pub fn personalise(
    t: &mut dyn Transport,
    token: &TokenSession<'_>,
    master: KeyHandle,
    scheme: Scheme,
) -> Result<Personalised, Error> {
    channel::select(t, &ISD_AID)?;
    let transport_key = SecretSlice::from(DEFAULT_TRANSPORT_KEY.to_vec());
    let tk_enc = token.import_session_key(&transport_key, SecretKeyType::Aes128, &[Usage::Sign])?;
    let tk_mac = token.import_session_key(&transport_key, SecretKeyType::Aes128, &[Usage::Sign])?;
    let tk_dek = token.import_session_key(&transport_key, SecretKeyType::Aes128, &[Usage::Wrap])?;
    let transport = StaticKeys {
        enc: tk_enc.handle(),
        mac: tk_mac.handle(),
        dek: tk_dek.handle(),
    };
    let (hc, iu) = channel::initialize_update(t, token, 0)?;
    let old_kvn = iu.kvn;
    let kdd = iu.kdd;
    let mut ch = SecureChannel::authenticate(t, token, transport, hc, &iu, management_level())?;

    let new = derive_card_keys(token, master, scheme, &kdd, SecretKeyType::Aes128, Purpose::PutKey)?;
    let mut data = vec![ISSUER_KVN];
    let mut kcvs = [[0u8; 3]; 3];
    for (slot, key) in kcvs.iter_mut().zip([&new.enc, &new.mac, &new.dek]) {
        let kcv = token.kcv(key.handle())?;
        let wrapped = token.wrap_cbc_zero_iv(transport.dek, key.handle())?;
        let len = u8::try_from(wrapped.len() + 1).map_err(|_| Error::Card("wrapped key too long".into()))?;
        data.extend_from_slice(&[0x88, len, 16]);
        data.extend_from_slice(&wrapped);
        data.push(3);
        data.extend_from_slice(&kcv.value);
        *slot = kcv.value;
    }
    let put_key = CommandApdu {
        cla: 0x80,
        ins: 0xD8,
        p1: old_kvn,
        p2: 0x81,
        data,
        le: Some(256),
    };
    let resp = ch.send_ok(&put_key, "PUT KEY")?;
    let mut expected = vec![ISSUER_KVN];
    kcvs.iter().for_each(|k| expected.extend_from_slice(k));
    if resp.data != expected {
        return Err(Error::Card(format!(
            "PUT KEY: the card confirmed {} but the token computed {}",
            hex::encode_upper(&resp.data),
            hex::encode_upper(&expected)
        )));
    }
    for state in [INITIALIZED, SECURED] {
        let cmd = CommandApdu {
            cla: 0x80,
            ins: 0xF0,
            p1: 0x80,
            p2: state,
            data: Vec::new(),
            le: None,
        };
        ch.send_ok(&cmd, "SET STATUS")?;
    }
    Ok(Personalised {
        kdd,
        kvn: ISSUER_KVN,
        kcvs,
    })
}

/// Opens a management channel to the card domain with the card's per-card issuer keys, derived in the token
/// from `master` and the KDD the card reports.
pub fn open_issuer_channel<'t, 's, 'h>(
    t: &'t mut dyn Transport,
    token: &'s TokenSession<'h>,
    master: KeyHandle,
    scheme: Scheme,
) -> Result<(SecureChannel<'t>, [u8; 10]), Error> {
    channel::select(t, &ISD_AID)?;
    let (hc, iu) = channel::initialize_update(t, token, 0)?;
    let keys = derive_card_keys(token, master, scheme, &iu.kdd, SecretKeyType::Aes128, Purpose::Channel)?;
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

/// Largest LOAD block sent; leaves room for C-DEC padding and the C-MAC within a short APDU.
pub const LOAD_BLOCK: usize = 200;

/// INSTALL [for load], LOAD, INSTALL [for install and make selectable] through an open channel.
pub fn load_and_install(ch: &mut SecureChannel<'_>, req: &LoadRequest) -> Result<(), Error> {
    let for_load = InstallForLoad {
        load_file_aid: req.load_file_aid.clone(),
        sd_aid: ISD_AID.to_vec(),
        lfdb_hash: req.lfdb_hash.clone(),
        load_parameters: Vec::new(),
        load_token: Vec::new(),
    };
    let cmd = CommandApdu {
        cla: 0x80,
        ins: 0xE6,
        p1: 0x02,
        p2: 0x00,
        data: for_load.to_bytes(),
        le: Some(256),
    };
    ch.send_ok(&cmd, "INSTALL [for load]")?;
    let load = LoadFile {
        dap_blocks: Vec::new(),
        lfdb: LfdbBlock::Plain(req.lfdb.clone()),
    };
    for (n, block) in split_into_load_blocks(&load.to_bytes(), LOAD_BLOCK).iter().enumerate() {
        ch.send_ok(block, &format!("LOAD block {n}"))?;
    }
    for (module, app) in &req.applets {
        let install = InstallForInstall {
            load_file_aid: req.load_file_aid.clone(),
            module_aid: module.clone(),
            application_aid: app.clone(),
            privileges: vec![0x00],
            install_parameters: vec![0xC9, 0x00],
            token: Vec::new(),
        };
        let cmd = CommandApdu {
            cla: 0x80,
            ins: 0xE6,
            p1: 0x0C,
            p2: 0x00,
            data: install.to_bytes(),
            le: Some(256),
        };
        ch.send_ok(&cmd, "INSTALL [for install and make selectable]")?;
    }
    Ok(())
}

/// The registry as GET STATUS returns it: the card domain, applications and security domains, and load
/// files with their modules.
pub fn registry(ch: &mut SecureChannel<'_>) -> Result<Vec<(u8, RegistryEntry)>, Error> {
    let mut out = Vec::new();
    for p1 in [0x80u8, 0x40, 0x10] {
        let mut p2 = 0x02;
        loop {
            let cmd = CommandApdu {
                cla: 0x80,
                ins: 0xF2,
                p1,
                p2,
                data: vec![0x4F, 0x00],
                le: Some(256),
            };
            let resp = ch.send(&cmd)?;
            if resp.sw == 0x6A88 {
                break;
            }
            if resp.sw != 0x9000 && resp.sw != 0x6310 {
                channel::expect_ok(&resp, "GET STATUS")?;
            }
            let entries = parse_get_status_response(0x02, &resp.data)
                .map_err(|e| Error::Card(format!("malformed GET STATUS response: {e}")))?;
            out.extend(entries.into_iter().map(|e| (p1, e)));
            if resp.sw == 0x6310 {
                p2 = 0x03;
            } else {
                break;
            }
        }
    }
    Ok(out)
}
