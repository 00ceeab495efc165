//! Supplementary security domains (SSDs): the issuer creates a vendor's SSD through the card domain, and the
//! vendor puts its own per-card keys into it through the SSD's own secure channel.
//!
//! The split follows who may see which key: the issuer's channel can create the SSD but never reach its
//! keys, and the vendor's channel to the SSD never needs the issuer's keys. Every key the vendor puts is
//! wrapped inside the vendor's token under the SSD's current DEK, so no key is ever on the host in clear;
//! even the SSD's transport key (a known value, the default key on fab-fresh cards) is imported into the
//! token as a session object and used there, as [`crate::gp::personalise`] does for the card domain.

use crate::channel::{self, SecureChannel, StaticKeys};
use crate::diversify::{derive_card_keys, CardKeys, Purpose};
use crate::error::Error;
use crate::gp::DEFAULT_TRANSPORT_KEY;
use crate::transport::Transport;
use gp_core::commands::put_key::{KeyComponent, KeyData, PutKey, PutKeyResponse, KEY_TYPE_AES};
use gp_core::commands::InstallForInstall;
use gp_core::diversify::Scheme;
use gp_core::privileges::{self, Privilege};
use gp_core::scp03::{InitializeUpdateResponse, SecurityLevel};
use keyman::hsm::{DerivedKey, KeyHandle, SecretKeyType, TokenSession, Usage};
use secrecy::SecretSlice;

/// The card's built-in security-domain load file: every SSD is installed from it.
pub const SD_LOAD_FILE_AID: [u8; 7] = [0xA0, 0x00, 0x00, 0x01, 0x51, 0x53, 0x50];
/// The security-domain module inside [`SD_LOAD_FILE_AID`].
pub const SD_MODULE_AID: [u8; 8] = [0xA0, 0x00, 0x00, 0x01, 0x51, 0x53, 0x50, 0x41];
/// Key version number of the DAP verification key in an SSD (GP reserves `73` for DAP keys).
pub const DAP_KVN: u8 = 0x73;
/// Key version number of the load-file cipher key in an SSD (ciphered LFDB, tags D3/D4).
pub const CIPHER_KVN: u8 = 0x74;
/// Key identifier of the DAP and cipher keys within their key versions.
pub const SD_KEY_ID: u8 = 0x01;
/// Key version number of the SSD's per-card channel key set (ENC, MAC, DEK) that replaces its transport
/// key set (`signer sd put-keys --channel-master`).
pub const SSD_CHANNEL_KVN: u8 = 0x01;

/// The privileges `--privileges` accepts, by their GP names in kebab case. Security Domain itself is
/// always granted, so it is not listed.
pub const PRIVILEGE_NAMES: [(&str, Privilege); 10] = [
    ("dap-verification", privileges::DAP_VERIFICATION),
    (
        "mandated-dap-verification",
        privileges::MANDATED_DAP_VERIFICATION,
    ),
    (
        "ciphered-load-file-data-block",
        privileges::CIPHERED_LOAD_FILE_DATA_BLOCK,
    ),
    ("authorized-management", privileges::AUTHORIZED_MANAGEMENT),
    ("delegated-management", privileges::DELEGATED_MANAGEMENT),
    ("card-lock", privileges::CARD_LOCK),
    ("card-terminate", privileges::CARD_TERMINATE),
    ("trusted-path", privileges::TRUSTED_PATH),
    ("global-service", privileges::GLOBAL_SERVICE),
    ("cvm-management", privileges::CVM_MANAGEMENT),
];

/// Parses a comma-separated list of privilege names into the three privilege bytes, with Security Domain
/// always set (an SSD without it would not be a security domain). Unknown names are refused with the list
/// of known ones, so a typo never silently drops a privilege.
pub fn parse_privileges(text: &str) -> Result<[u8; 3], Error> {
    let mut out = [0u8; 3];
    privileges::SECURITY_DOMAIN.set_in(&mut out);
    let mut mandated = false;
    let mut plain_dap = false;
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let Some((_, p)) = PRIVILEGE_NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        else {
            let known: Vec<&str> = PRIVILEGE_NAMES.iter().map(|(n, _)| *n).collect();
            return Err(Error::Usage(format!(
                "--privileges: '{name}' is not one of {}",
                known.join(", ")
            )));
        };
        mandated |= *p == privileges::MANDATED_DAP_VERIFICATION;
        plain_dap |= *p == privileges::DAP_VERIFICATION;
        p.set_in(&mut out);
    }
    if mandated && plain_dap {
        return Err(Error::Usage(
            "--privileges: dap-verification and mandated-dap-verification exclude each other"
                .into(),
        ));
    }
    Ok(out)
}

/// The names of the privileges set in `p`, for the operator's screen (GP names, Security Domain first).
pub fn privilege_names(p: &[u8; 3]) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = privileges::ALL
        .iter()
        .filter(|x| x.is_set_in(p))
        .map(|x| x.name)
        .collect();
    // Mandated DAP Verification includes the DAP Verification bits; show only the stronger one.
    if privileges::MANDATED_DAP_VERIFICATION.is_set_in(p) {
        names.retain(|n| *n != privileges::DAP_VERIFICATION.name);
    }
    names
}

/// Parses `--scp`: `03` (i = `70`), `02` (i = `55`), or `PP:II` with an explicit `i` parameter, all hex.
pub fn parse_scp(text: &str) -> Result<(u8, u8), Error> {
    let byte = |s: &str| {
        u8::from_str_radix(s, 16)
            .map_err(|_| Error::Usage(format!("--scp: '{s}' is not a hex byte")))
    };
    let (scp, i) = match text.split_once(':') {
        Some((p, i)) => (byte(p)?, Some(byte(i)?)),
        None => (byte(text)?, None),
    };
    match (scp, i) {
        (0x03, i) => Ok((0x03, i.unwrap_or(0x70))),
        (0x02, i) => Ok((0x02, i.unwrap_or(0x55))),
        (other, _) => Err(Error::Usage(format!(
            "--scp: SCP{other:02X} is not a protocol security domains here speak (02 or 03)"
        ))),
    }
}

/// What the issuer asks the card to create: the SSD's AID, its privileges and, optionally, the secure
/// channel protocol its keys serve (the card domain's protocol when absent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SdSpec {
    /// The SSD's instance AID.
    pub aid: Vec<u8>,
    /// Three privilege bytes, Security Domain included.
    pub privileges: [u8; 3],
    /// `(SCP identifier, i parameter)` for install parameters `C9 { 81 02 <scp> <i> }`.
    pub scp: Option<(u8, u8)>,
}

impl SdSpec {
    /// The install parameters field: `C9 { 81 02 <scp> <i> }`, or an empty `C9` when no protocol is named.
    pub fn install_parameters(&self) -> Vec<u8> {
        match self.scp {
            Some((scp, i)) => vec![0xC9, 0x04, 0x81, 0x02, scp, i],
            None => vec![0xC9, 0x00],
        }
    }

    /// INSTALL [for install and make selectable] of the SSD from the card's built-in security-domain module.
    pub fn install_command(&self) -> InstallForInstall {
        InstallForInstall {
            load_file_aid: SD_LOAD_FILE_AID.to_vec(),
            module_aid: SD_MODULE_AID.to_vec(),
            application_aid: self.aid.clone(),
            privileges: self.privileges.to_vec(),
            install_parameters: self.install_parameters(),
            token: Vec::new(),
            make_selectable: true,
        }
    }
}

/// Creates the SSD through an open channel to the card domain (the issuer's channel): one INSTALL
/// [for install and make selectable]. The SSD starts with the card's transport key set, which its provider
/// replaces or extends through the SSD's own channel ([`open_sd_channel`], [`put_sd_key`]).
pub fn create_security_domain(ch: &mut SecureChannel<'_>, spec: &SdSpec) -> Result<(), Error> {
    let cmd = spec
        .install_command()
        .to_apdu()
        .map_err(|e| Error::Card(format!("INSTALL [for install] of the SSD: {e}")))?;
    ch.send_ok(&cmd, "INSTALL [for install and make selectable] of the SSD")?;
    Ok(())
}

/// A security domain's transport key set (ENC, MAC, DEK all the same known value), imported into the
/// token as sensitive, non-extractable session objects that die with the guard.
pub struct TransportKeys<'s, 'h> {
    enc: DerivedKey<'s, 'h>,
    mac: DerivedKey<'s, 'h>,
    dek: DerivedKey<'s, 'h>,
}

impl TransportKeys<'_, '_> {
    /// The handles a secure channel authenticates with.
    pub fn statics(&self) -> StaticKeys {
        StaticKeys {
            enc: self.enc.handle(),
            mac: self.mac.handle(),
            dek: self.dek.handle(),
        }
    }
}

/// Imports the default transport key (`40..4F`, AES-128, as fab-fresh cards and new SSDs carry it) into the
/// token: ENC and MAC for the channel's CMACs, DEK for wrapping keys on their way to the card.
pub fn import_default_transport_keys<'s, 'h>(
    token: &'s TokenSession<'h>,
) -> Result<TransportKeys<'s, 'h>, Error> {
    let k = SecretSlice::from(DEFAULT_TRANSPORT_KEY.to_vec());
    Ok(TransportKeys {
        enc: token.import_session_key(&k, SecretKeyType::Aes128, &[Usage::Sign])?,
        mac: token.import_session_key(&k, SecretKeyType::Aes128, &[Usage::Sign])?,
        dek: token.import_session_key(&k, SecretKeyType::Aes128, &[Usage::Wrap])?,
    })
}

/// Selects the SSD and opens SCP03 to it with `keys` (C-MAC, C-DEC). Returns the channel and the SSD's
/// INITIALIZE UPDATE answer (its KDD, key version and protocol), from which per-card keys are derived.
pub fn open_sd_channel<'t>(
    t: &'t mut dyn Transport,
    token: &'t TokenSession<'_>,
    sd_aid: &[u8],
    keys: StaticKeys,
) -> Result<(SecureChannel<'t>, InitializeUpdateResponse), Error> {
    channel::select(t, sd_aid)?;
    let (hc, iu) = channel::initialize_update(t, token, 0)?;
    let ch = SecureChannel::authenticate(t, token, keys, hc, &iu, SecurityLevel::C_MAC_C_DEC)?;
    Ok((ch, iu))
}

/// The static keys an SSD's channel opened with: its transport key set, or the card's own key set derived
/// in the token from the vendor's channel master. Either way session objects that die with the value.
pub enum SdKeys<'s, 'h> {
    /// The default transport key set (a new SSD).
    Transport(TransportKeys<'s, 'h>),
    /// The per-card key set [`SSD_CHANNEL_KVN`], derived from the vendor's channel master.
    PerCard(CardKeys<'s, 'h>),
}

impl SdKeys<'_, '_> {
    /// The handles the channel authenticated with; `dek` wraps keys put through it.
    pub fn statics(&self) -> StaticKeys {
        match self {
            SdKeys::Transport(t) => t.statics(),
            SdKeys::PerCard(k) => StaticKeys {
                enc: k.enc.handle(),
                mac: k.mac.handle(),
                dek: k.dek.handle(),
            },
        }
    }

    /// True when the channel opened with the SSD's per-card key set.
    pub fn is_per_card(&self) -> bool {
        matches!(self, SdKeys::PerCard(_))
    }
}

/// Selects the SSD and opens SCP03 to it (C-MAC, C-DEC) with the keys its INITIALIZE UPDATE answer calls
/// for: when `per_card` names the vendor's channel master and the SSD reports key version
/// [`SSD_CHANNEL_KVN`] (its transport set was already replaced), the card's own keys derived in the token;
/// otherwise the default transport key set. Returns the channel, the answer and the keys.
pub fn open_sd_channel_for<'t, 's: 't, 'h: 't>(
    t: &'t mut dyn Transport,
    token: &'s TokenSession<'h>,
    sd_aid: &[u8],
    per_card: Option<(KeyHandle, Scheme)>,
) -> Result<(SecureChannel<'t>, InitializeUpdateResponse, SdKeys<'s, 'h>), Error> {
    channel::select(t, sd_aid)?;
    let (hc, iu) = channel::initialize_update(t, token, 0)?;
    let keys = match per_card {
        Some((master, scheme)) if iu.kvn == SSD_CHANNEL_KVN => SdKeys::PerCard(derive_card_keys(
            token,
            master,
            scheme,
            &iu.kdd,
            SecretKeyType::Aes128,
            Purpose::Channel,
        )?),
        _ => SdKeys::Transport(import_default_transport_keys(token)?),
    };
    let ch = SecureChannel::authenticate(t, token, keys.statics(), hc, &iu, SecurityLevel::C_MAC_C_DEC)
        .map_err(|e| match &keys {
            SdKeys::Transport(_) => Error::Card(format!(
                "the SSD's key set {:02X} did not accept the transport key set ({e}); if its keys were \
                 already replaced, name their master with --channel-master",
                iu.kvn
            )),
            SdKeys::PerCard(_) => e,
        })?;
    Ok((ch, iu, keys))
}

/// The key versions the selected security domain holds, from its key information template (GET DATA
/// `00E0` through the open channel): one entry per key version, in the card's order.
pub fn held_key_versions(ch: &mut SecureChannel<'_>) -> Result<Vec<u8>, Error> {
    let resp = ch.send_ok(
        &gp_core::commands::get_data(0x00E0),
        "GET DATA 00E0 (key information)",
    )?;
    parse_key_information(&resp.data)
        .map_err(|e| Error::Card(format!("GET DATA 00E0 (key information) response: {e}")))
}

/// Parses a key information template (`E0 { C0 { id kvn … } … }`, or its value alone) into the key
/// versions it lists, without duplicates.
pub fn parse_key_information(data: &[u8]) -> Result<Vec<u8>, String> {
    use gp_core::tlv::TlvReader;
    let inner = match gp_core::tlv::find(data, 0xE0).map_err(|e| e.to_string())? {
        Some(v) => v,
        None => data,
    };
    let mut out = Vec::new();
    for tlv in TlvReader::new(inner) {
        let tlv = tlv.map_err(|e| e.to_string())?;
        if tlv.tag != 0xC0 {
            continue;
        }
        let Some(&kvn) = tlv.value.get(1) else {
            return Err("a key information entry C0 is shorter than 2 bytes".into());
        };
        if !out.contains(&kvn) {
            out.push(kvn);
        }
    }
    Ok(out)
}

/// Derives, in the token, the DAP key the card with `kdd` verifies per-card DAPs with: the same key
/// `signer package --dap aes --diversify SCHEME` signs with (schemes `aes` and `kdf3`: an AES key of the
/// master's length; `emv`/`visa2`: AES-128 from a 3DES master). The key is a sensitive session object, extractable
/// only wrapped, so it can go into the SSD under the SSD's DEK.
pub fn derive_sd_dap_key<'s, 'h>(
    token: &'s TokenSession<'h>,
    master: KeyHandle,
    scheme: Scheme,
    kdd: &[u8; 10],
) -> Result<DerivedKey<'s, 'h>, Error> {
    let out = match scheme {
        Scheme::Aes | Scheme::Kdf3 => master.key_type().unwrap_or(SecretKeyType::Aes128),
        _ => SecretKeyType::Aes128,
    };
    crate::diversify::check_master(token, master, scheme, out)?;
    crate::diversify::derive_kk(
        token,
        master,
        scheme,
        kdd,
        crate::diversify::DAP_KK,
        out,
        &[Usage::Encrypt],
        true,
    )
}

/// Puts one AES key as key version `kvn`, key id [`SD_KEY_ID`], into the selected SSD: the key is wrapped in
/// the token under `dek` (the SSD's current DEK; AES-CBC, zero IV), and the card must confirm exactly the KCV
/// the token computed. `replace` names the key version being replaced (`0` adds one). Returns the KCV (GPC
/// B.6 method). A key that is not extractable cannot go to the card and is refused by the token; it is never
/// exported in clear instead.
pub fn put_sd_key(
    ch: &mut SecureChannel<'_>,
    token: &TokenSession<'_>,
    dek: KeyHandle,
    key: KeyHandle,
    replace: u8,
    kvn: u8,
) -> Result<[u8; 3], Error> {
    let key_type = key.key_type().unwrap_or(SecretKeyType::Aes128);
    if key_type.is_des() {
        return Err(Error::Usage(format!(
            "key version {kvn:02X}: only AES keys go into an SCP03 security domain here (the key is {})",
            key_type.name()
        )));
    }
    let kcv = token.kcv(key)?;
    let wrapped = token.wrap_cbc_zero_iv(dek, key)?;
    let clear_len = u8::try_from(key_type.byte_len())
        .map_err(|_| Error::Usage("key longer than 255 bytes".into()))?;
    let put = PutKey {
        new_kvn: kvn,
        keys: vec![KeyData {
            components: vec![KeyComponent {
                key_type: KEY_TYPE_AES,
                block: [&[clear_len][..], &wrapped].concat(),
            }],
            kcv: kcv.value.to_vec(),
        }],
    };
    let cmd = put
        .to_apdu(replace, SD_KEY_ID)
        .map_err(|e| Error::Card(format!("PUT KEY: {e}")))?;
    let what = format!("PUT KEY {kvn:02X} into the SSD");
    let resp = ch.send_ok(&cmd, &what)?;
    let confirmed = PutKeyResponse::parse(&resp.data)
        .map_err(|e| Error::Card(format!("{what} response: {e}")))?;
    if confirmed.kvn != kvn || confirmed.check_values != kcv.value {
        return Err(Error::Card(format!(
            "{what}: the card confirmed KVN {:02X} KCV {} but the token computed {}",
            confirmed.kvn,
            hex::encode_upper(&confirmed.check_values),
            hex::encode_upper(kcv.value)
        )));
    }
    Ok(kcv.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn privileges_always_include_security_domain() {
        assert_eq!(parse_privileges("").ok(), Some([0x80, 0, 0]));
        assert_eq!(
            parse_privileges("dap-verification,ciphered-load-file-data-block").ok(),
            Some([0xC0, 0x00, 0x40])
        );
        assert_eq!(
            parse_privileges("mandated-dap-verification").ok(),
            Some([0xC1, 0, 0])
        );
        assert!(parse_privileges("dap-verification,mandated-dap-verification").is_err());
        assert!(parse_privileges("dap-verfication").is_err());
        assert_eq!(
            privilege_names(&[0xC0, 0, 0x40]),
            [
                "Security Domain",
                "DAP Verification",
                "Ciphered Load File Data Block"
            ]
        );
    }

    #[test]
    fn scp_parameters() {
        assert_eq!(parse_scp("03").ok(), Some((0x03, 0x70)));
        assert_eq!(parse_scp("02").ok(), Some((0x02, 0x55)));
        assert_eq!(parse_scp("03:10").ok(), Some((0x03, 0x10)));
        assert!(parse_scp("01").is_err());
        let spec = SdSpec {
            aid: vec![0xA0, 0, 0, 1, 0x51, 0x53, 0x50, 0x41, 0, 1],
            privileges: [0xC0, 0, 0x40],
            scp: Some((0x03, 0x70)),
        };
        assert_eq!(spec.install_parameters(), [0xC9, 4, 0x81, 2, 3, 0x70]);
    }

    #[test]
    fn key_information_lists_key_versions() {
        let whole = [
            0xE0, 0x0C, 0xC0, 0x04, 0x01, 0x30, 0x88, 0x10, 0xC0, 0x04, 0x02, 0x30, 0x88, 0x10,
        ];
        assert_eq!(parse_key_information(&whole), Ok(vec![0x30]));
        let value = [
            0xC0, 0x04, 0x01, 0x73, 0x88, 0x10, 0xC0, 0x04, 0x01, 0x74, 0x88, 0x10,
        ];
        assert_eq!(parse_key_information(&value), Ok(vec![0x73, 0x74]));
        assert!(parse_key_information(&[0xC0, 0x01, 0x01]).is_err());
        assert!(parse_key_information(&[0xE0, 0x05, 0xC0]).is_err());
        assert_eq!(parse_key_information(&[]), Ok(vec![]));
    }
}
