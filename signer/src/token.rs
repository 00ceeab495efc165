//! Delegated management (GPC 2.3.1 §9.1.4, Appendix C.4 and C.5): the card issuer authorises each
//! load, install and delete that a vendor's security domain performs with a token signed in the
//! issuer's token, and the card answers each with a receipt that proves to the issuer what was done.
//!
//! Why it exists: with Delegated Management a vendor manages its own applications through its own
//! security domain and its own keys, yet the issuer keeps control of what enters its cards. A token
//! covers exactly the command data the vendor will send (GPC C.4: `P1 ‖ P2 ‖ Lc' ‖ data`, where data is
//! the command data field without the token, and for INSTALL without its length field either), so a
//! token for one package cannot authorise another.
//!
//! Tokens are issued once per package for every card (the commands do not depend on the card) and
//! written to a tokens file bound to the package by its SHA-256; `signer deploy --tokens` checks the
//! binding and that each token covers the very command it is about to send. The card verifies tokens
//! with the card domain's key version `70` (the issuer's ECDSA P-256 or RSA public key, or an AES key)
//! and signs receipts with key version `71`. Receipt keys are per card: an AES-128 key derived in the
//! issuer's token from a receipt master and the card's KDD (role byte `71`), so one card's key reveals
//! no other card's. Receipts are checked in the issuer's token with the same derivation.

use crate::channel::{self, SecureChannel, ISD_AID};
use crate::diversify::{derive_kk, derive_one};
use crate::error::Error;
use crate::gp::open_domain_channel;
use crate::package::Package;
use crate::records::{self, Records};
use crate::transport::{connect, CardRef, Transport};
use clap::{Args, Subcommand};
use gp_core::commands::put_key::{KeyComponent, KeyData, PutKey, PutKeyResponse, KEY_TYPE_AES};
use gp_core::commands::{
    split_into_load_blocks, InstallForInstall, InstallForLoad, LfdbBlock, LoadFile,
};
use gp_core::diversify::{KeyRole, Scheme};
use keyman::hsm::signing::{PrivateKey, PublicKey};
use keyman::hsm::{Hsm, KeyHandle, SecretKeyType, TokenSession, TokenUri, Usage};
use keyman::ledger::{EntryKind, Output};
use keyman::pin::PinSource;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq;

/// Key version number of the card domain's token verification key (GP: reserved for it).
pub const TOKEN_KVN: u8 = 0x70;
/// Key version number of the card domain's receipt generation key (GP: reserved for it).
pub const RECEIPT_KVN: u8 = 0x71;
/// The `format` field of a tokens file.
pub const TOKENS_FORMAT: &str = "postissue-tokens";
/// The tokens file version this signer writes and reads.
pub const TOKENS_VERSION: u32 = 1;
/// Largest tokens file read (a file for a package with many applets and RSA-4096 tokens is far smaller).
pub const MAX_TOKENS_FILE: u64 = 1 << 20;

/// `INSTALL [for load]`, as the tokens file names it.
pub const CMD_LOAD: &str = "install-for-load";
/// `INSTALL [for install and make selectable]`, as the tokens file names it.
pub const CMD_INSTALL: &str = "install-for-install-and-make-selectable";
/// `DELETE [card content]`, as the tokens file names it.
pub const CMD_DELETE: &str = "delete";
/// `INSTALL [for load, install and make selectable]` (the combined process, GPC C.4.7), as the tokens
/// file names it.
pub const CMD_COMBINED: &str = "install-for-load-install-and-make-selectable";

/// The key that signed a tokens file: its label and how to recognise it without the key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TokenKeyRecord {
    /// The key's label in the issuer's token.
    pub label: String,
    /// `aes-cmac`, `rsa-pkcs1-sha1`, `rsa-pss-sha256` or `ecdsa-p256-sha256`.
    pub algorithm: String,
    /// KCV of an AES key (GPC B.6 method), in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kcv: Option<String>,
    /// SHA-256 of the public key (RSA: modulus ‖ exponent; EC: the SEC1 point), in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_sha256: Option<String>,
}

/// One token: the command it authorises, the exact data it covers, and the signature.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TokenRecord {
    /// [`CMD_LOAD`], [`CMD_INSTALL`], [`CMD_DELETE`] or [`CMD_COMBINED`].
    pub command: String,
    /// P1 of the command, hex.
    pub p1: String,
    /// P2 of the command, hex.
    pub p2: String,
    /// The command data the token covers (without the token and its length), hex. For
    /// [`CMD_COMBINED`] (P1 `0E`, P2 `03`: the final command, which carries the token): the whole signed
    /// data, the first command's `P1 ‖ P2 ‖ Lc' ‖ data` followed by the final one's (GPC C.4.7).
    pub data: String,
    /// The token, hex.
    pub token: String,
}

/// A tokens file: what the issuer authorised, for which package and security domain, with which key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TokensFile {
    /// Always [`TOKENS_FORMAT`].
    pub format: String,
    /// Always [`TOKENS_VERSION`].
    pub version: u32,
    /// SHA-256 of the package file the tokens were issued for (absent for delete tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_sha256: Option<String>,
    /// The security domain with Delegated Management that will send the commands, hex.
    pub sd_aid: String,
    /// The signing key.
    pub key: TokenKeyRecord,
    /// The tokens, in the order the commands are sent.
    pub tokens: Vec<TokenRecord>,
}

impl TokensFile {
    /// Reads and checks a tokens file: size bound, strict JSON, format and version, every hex field.
    pub fn read(path: &Path) -> Result<TokensFile, Error> {
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let len = std::fs::metadata(path).map_err(io)?.len();
        if len > MAX_TOKENS_FILE {
            return Err(bad(
                path,
                "file",
                format!("{len} bytes; at most {MAX_TOKENS_FILE}"),
            ));
        }
        let bytes = std::fs::read(path).map_err(io)?;
        let file: TokensFile =
            serde_json::from_slice(&bytes).map_err(|e| bad(path, "json", e.to_string()))?;
        if file.format != TOKENS_FORMAT || file.version != TOKENS_VERSION {
            return Err(bad(
                path,
                "format",
                format!("not a {TOKENS_FORMAT} file of version {TOKENS_VERSION}"),
            ));
        }
        hex_field(path, "sd_aid", &file.sd_aid)?;
        if let Some(h) = &file.package_sha256 {
            if hex_field(path, "package_sha256", h)?.len() != 32 {
                return Err(bad(path, "package_sha256", "not 32 bytes".into()));
            }
        }
        for (i, t) in file.tokens.iter().enumerate() {
            let field = |f: &str| format!("tokens[{i}].{f}");
            if ![CMD_LOAD, CMD_INSTALL, CMD_DELETE, CMD_COMBINED].contains(&t.command.as_str()) {
                return Err(bad(
                    path,
                    &field("command"),
                    format!("unknown '{}'", t.command),
                ));
            }
            for (name, v, n) in [("p1", &t.p1, Some(1)), ("p2", &t.p2, Some(1))] {
                if Some(hex_field(path, &field(name), v)?.len()) != n {
                    return Err(bad(path, &field(name), "not one byte".into()));
                }
            }
            hex_field(path, &field("data"), &t.data)?;
            if hex_field(path, &field("token"), &t.token)?.is_empty() {
                return Err(bad(path, &field("token"), "empty".into()));
            }
        }
        Ok(file)
    }

    /// The token that covers exactly `command` with `p1`, `p2` and `body`; an error naming what is missing
    /// otherwise (the card would refuse the command without it, so it is never sent).
    pub fn token_for(
        &self,
        command: &str,
        p1: u8,
        p2: u8,
        body: &[u8],
        what: &str,
    ) -> Result<Vec<u8>, Error> {
        let wanted = (
            hex::encode_upper([p1]),
            hex::encode_upper([p2]),
            hex::encode_upper(body),
        );
        self.tokens
            .iter()
            .find(|t| {
                t.command == command
                    && t.p1.eq_ignore_ascii_case(&wanted.0)
                    && t.p2.eq_ignore_ascii_case(&wanted.1)
                    && t.data.eq_ignore_ascii_case(&wanted.2)
            })
            .and_then(|t| hex::decode(&t.token).ok())
            .ok_or_else(|| {
                Error::Verification(format!(
                    "the tokens file has no token for {what} with this data (tokens cover the exact command: \
                     another package, security domain or applet needs its own); nothing was sent"
                ))
            })
    }
}

fn bad(path: &Path, field: &str, problem: String) -> Error {
    Error::Usage(format!(
        "tokens file {}: {field}: {problem}",
        path.display()
    ))
}

fn hex_field(path: &Path, field: &str, v: &str) -> Result<Vec<u8>, Error> {
    hex::decode(v).map_err(|_| bad(path, field, "not hex".into()))
}

/// The data a token signs (GPC C.4): `P1 ‖ P2 ‖ Lc' ‖ body`, `Lc'` the body's length in one byte, or
/// `00 xx xx` above 255.
pub fn token_input(p1: u8, p2: u8, body: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.extend_from_slice(&[p1, p2]);
    match u8::try_from(body.len()) {
        Ok(n) => out.push(n),
        Err(_) => {
            let n = u16::try_from(body.len())
                .map_err(|_| Error::Usage("command data too long for a token".into()))?;
            out.push(0x00);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
    out.extend_from_slice(body);
    Ok(out)
}

/// P1 of the combined INSTALL [for load, install and make selectable].
pub const P1_COMBINED: u8 = 0x0E;
/// P2 of the combined process's first command.
pub const P2_COMBINED_FIRST: u8 = 0x01;
/// P2 of the combined process's final command (the one that carries the token).
pub const P2_COMBINED_FINAL: u8 = 0x03;

/// The data the combined process's token signs (GPC C.4.7): the first command's `P1 ‖ P2 ‖ Lc' ‖ data`
/// (INSTALL [for load] data) followed by the final command's (INSTALL [for install] data).
pub fn combined_token_input(first: &[u8], last: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = token_input(P1_COMBINED, P2_COMBINED_FIRST, first)?;
    out.extend(token_input(P1_COMBINED, P2_COMBINED_FINAL, last)?);
    Ok(out)
}

/// The first and final command bodies of the combined process for `pkg`'s first applet through
/// `sd_aid` (without the tokens), the final command, and the signed data.
fn combined_parts(
    pkg: &Package,
    sd_aid: &[u8],
) -> Result<(InstallForLoad, InstallForInstall, Vec<u8>), Error> {
    let load = load_command(pkg, sd_aid)?;
    let first = install_body(&load.to_data().map_err(gp_err("INSTALL [for load]"))?)?;
    let applet = pkg
        .applets()?
        .into_iter()
        .next()
        .ok_or_else(|| Error::Usage("the package has no applet to install".into()))?;
    let install = install_command(pkg, &applet)?;
    let last = install_body(&install.to_data().map_err(gp_err("INSTALL [for install]"))?)?;
    let input = combined_token_input(&first, &last)?;
    Ok((load, install, input))
}

/// The issuer's token signing key, in the issuer's token.
pub enum TokenKey {
    /// An AES key: AES-CMAC, 16 bytes (GPC B.2.2).
    Aes(KeyHandle),
    /// An RSA or P-256 private key (GPC B.3, B.4); the card gets the public half.
    Asymmetric(PrivateKey),
}

impl TokenKey {
    /// Finds the key labelled `label`: a private key (RSA, P-256) first, else an AES secret key.
    /// 3DES token keys are refused: PKCS#11 has no retail MAC and one key cannot be split into halves
    /// inside the token.
    pub fn open(session: &TokenSession<'_>, label: &str) -> Result<TokenKey, Error> {
        if let Ok(k) = session.find_private_key(label) {
            return Ok(TokenKey::Asymmetric(k));
        }
        let k = session.find_secret_key(label)?;
        match k.key_type() {
            Some(t) if !t.is_des() => Ok(TokenKey::Aes(k)),
            _ => Err(Error::Usage(format!(
                "token key '{label}' is a 3DES key: its retail MAC cannot be computed inside the token; use \
                 an AES, RSA or EC P-256 key"
            ))),
        }
    }

    /// The signature algorithm, as the tokens file names it.
    pub fn algorithm(&self) -> &'static str {
        match self {
            TokenKey::Aes(_) => "aes-cmac",
            TokenKey::Asymmetric(k) => match k.format {
                gp_core::dap::AsymmetricDap::RsaPkcs1Sha1 => "rsa-pkcs1-sha1",
                gp_core::dap::AsymmetricDap::RsaPssSha256 => "rsa-pss-sha256",
                gp_core::dap::AsymmetricDap::EcdsaP256Sha256 => "ecdsa-p256-sha256",
            },
        }
    }

    /// Signs the token input in the token.
    pub fn sign(&self, session: &TokenSession<'_>, input: &[u8]) -> Result<Vec<u8>, Error> {
        Ok(match self {
            TokenKey::Aes(k) => session.aes_cmac(*k, input)?.to_vec(),
            TokenKey::Asymmetric(k) => session.sign_token(k, input)?,
        })
    }

    /// How a reader recognises the key: label, algorithm, KCV or public key hash.
    pub fn record(&self, session: &TokenSession<'_>, label: &str) -> Result<TokenKeyRecord, Error> {
        let (kcv, public_key_sha256) = match self {
            TokenKey::Aes(k) => (Some(hex::encode_upper(session.kcv(*k)?.value)), None),
            TokenKey::Asymmetric(_) => {
                let public = session.find_public_key(label)?;
                (None, Some(hex::encode_upper(public_key_hash(&public))))
            }
        };
        Ok(TokenKeyRecord {
            label: label.to_string(),
            algorithm: self.algorithm().into(),
            kcv,
            public_key_sha256,
        })
    }
}

fn public_key_hash(public: &PublicKey) -> [u8; 32] {
    let mut h = sha2::Sha256::new();
    match public {
        PublicKey::Rsa { modulus, exponent } => {
            h.update(modulus);
            h.update(exponent);
        }
        PublicKey::EcP256 { point } => h.update(point),
    }
    h.finalize().into()
}

/// INSTALL [for load] as a delegated-management security domain sends it: the load file, the domain
/// itself named as its security domain, the LFDB hash (which binds the code), no load parameters.
pub fn load_command(pkg: &Package, sd_aid: &[u8]) -> Result<InstallForLoad, Error> {
    Ok(InstallForLoad {
        load_file_aid: pkg.load_file_aid()?,
        sd_aid: sd_aid.to_vec(),
        lfdb_hash: pkg.lfdb_hash()?,
        load_parameters: Vec::new(),
        load_token: Vec::new(),
    })
}

/// INSTALL [for install and make selectable] of one applet of the package, as `signer deploy` sends it.
pub fn install_command(pkg: &Package, applet: &[u8]) -> Result<InstallForInstall, Error> {
    Ok(InstallForInstall {
        load_file_aid: pkg.load_file_aid()?,
        module_aid: applet.to_vec(),
        application_aid: applet.to_vec(),
        privileges: vec![0x00],
        install_parameters: vec![0xC9, 0x00],
        token: Vec::new(),
        make_selectable: true,
    })
}

/// The command data field of `data` (which ends in the empty token's one length byte) without that byte:
/// what an INSTALL token covers.
fn install_body(data: &[u8]) -> Result<Vec<u8>, Error> {
    match data.split_last() {
        Some((0x00, body)) => Ok(body.to_vec()),
        _ => Err(Error::Usage(
            "INSTALL data does not end with an empty token".into(),
        )),
    }
}

fn gp_err(what: &str) -> impl Fn(gp_core::commands::CommandError) -> Error + '_ {
    move |e| Error::Card(format!("{what}: {e}"))
}

/// DELETE [card content] data without the token: `4F len AID`.
pub fn delete_body(aid: &[u8]) -> Result<Vec<u8>, Error> {
    let n = u8::try_from(aid.len()).map_err(|_| Error::Usage("AID too long".into()))?;
    let mut d = vec![0x4F, n];
    d.extend_from_slice(aid);
    Ok(d)
}

/// What to authorise.
#[derive(Clone, Debug)]
pub enum Authorise {
    /// Loading the package (and, with `install`, installing every applet).
    Load {
        /// Also install tokens for the package's applets.
        install: bool,
    },
    /// Installing the package's applets (its load file is already on the card).
    Install,
    /// The combined load, install and make selectable process for the package's first applet (GPC
    /// C.4.7), with install tokens for any further applets.
    Combined,
    /// Deleting an application or load file (`related`: with its applications, P2 `80`).
    Delete {
        /// The AID to delete.
        aid: Vec<u8>,
        /// Delete related objects too.
        related: bool,
    },
}

/// Issues tokens for `what` through the security domain `sd_aid`, signed with `key` in `session`.
pub fn issue(
    session: &TokenSession<'_>,
    key: &TokenKey,
    key_label: &str,
    package: Option<(&Package, &[u8])>,
    sd_aid: &[u8],
    what: &Authorise,
) -> Result<TokensFile, Error> {
    let mut tokens = Vec::new();
    let mut sign = |command: &str, p1: u8, p2: u8, body: Vec<u8>| -> Result<(), Error> {
        // The combined token's data is already the whole signed data (GPC C.4.7).
        let input = if command == CMD_COMBINED {
            body.clone()
        } else {
            token_input(p1, p2, &body)?
        };
        let token = key.sign(session, &input)?;
        tokens.push(TokenRecord {
            command: command.into(),
            p1: hex::encode_upper([p1]),
            p2: hex::encode_upper([p2]),
            data: hex::encode_upper(&body),
            token: hex::encode_upper(token),
        });
        Ok(())
    };
    let need_pkg = || package.ok_or_else(|| Error::Usage("a package is needed".into()));
    match what {
        Authorise::Load { install } => {
            let (pkg, _) = need_pkg()?;
            let c = load_command(pkg, sd_aid)?;
            let body = install_body(&c.to_data().map_err(gp_err("INSTALL [for load]"))?)?;
            sign(CMD_LOAD, 0x02, 0x00, body)?;
            if *install {
                for a in pkg.applets()? {
                    let c = install_command(pkg, &a)?;
                    let body =
                        install_body(&c.to_data().map_err(gp_err("INSTALL [for install]"))?)?;
                    sign(CMD_INSTALL, c.p1(), 0x00, body)?;
                }
            }
        }
        Authorise::Install => {
            let (pkg, _) = need_pkg()?;
            for a in pkg.applets()? {
                let c = install_command(pkg, &a)?;
                let body = install_body(&c.to_data().map_err(gp_err("INSTALL [for install]"))?)?;
                sign(CMD_INSTALL, c.p1(), 0x00, body)?;
            }
        }
        Authorise::Combined => {
            let (pkg, _) = need_pkg()?;
            let (_, _, input) = combined_parts(pkg, sd_aid)?;
            sign(CMD_COMBINED, P1_COMBINED, P2_COMBINED_FINAL, input)?;
            for a in pkg.applets()?.into_iter().skip(1) {
                let c = install_command(pkg, &a)?;
                let body = install_body(&c.to_data().map_err(gp_err("INSTALL [for install]"))?)?;
                sign(CMD_INSTALL, c.p1(), 0x00, body)?;
            }
        }
        Authorise::Delete { aid, related } => {
            sign(
                CMD_DELETE,
                0x00,
                if *related { 0x80 } else { 0x00 },
                delete_body(aid)?,
            )?;
        }
    }
    Ok(TokensFile {
        format: TOKENS_FORMAT.into(),
        version: TOKENS_VERSION,
        package_sha256: package.map(|(_, bytes)| hex::encode_upper(sha2::Sha256::digest(bytes))),
        sd_aid: hex::encode_upper(sd_aid),
        key: key.record(session, key_label)?,
        tokens,
    })
}

// ---- Receipts -------------------------------------------------------------------------------------

/// A receipt and its confirmation data, as the card returns them (GPC Table 11-13).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confirmation {
    /// The receipt (AES: 16-byte CMAC).
    pub receipt: Vec<u8>,
    /// The confirmation data the receipt signs before the operation's fields.
    pub data: Vec<u8>,
    /// The confirmation counter.
    pub counter: u16,
}

/// Parses the response data `L ‖ Lr ‖ receipt ‖ confirmation data` of a delegated command. `00` (no
/// receipt) is an error here: a Delegated Management domain always gets one.
pub fn parse_confirmation(resp: &[u8]) -> Result<Confirmation, Error> {
    let bad = |p: &str| Error::Card(format!("malformed confirmation from the card: {p}"));
    let (len, rest) = gp_core::tlv::read_len(resp).map_err(|_| bad("length"))?;
    if len == 0 {
        return Err(Error::Verification(
            "the card returned no receipt for a delegated operation".into(),
        ));
    }
    if rest.len() != len {
        return Err(bad("length does not match"));
    }
    let (lr, rest) = gp_core::tlv::read_len(rest).map_err(|_| bad("receipt length"))?;
    let (receipt, data) = rest.split_at_checked(lr).ok_or_else(|| bad("receipt"))?;
    let counter = match data {
        [0x02, a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => return Err(bad("confirmation data")),
    };
    Ok(Confirmation {
        receipt: receipt.to_vec(),
        data: data.to_vec(),
        counter,
    })
}

/// Derives the card's receipt key (AES-128, role byte `71`) from `master` in the token, as a session
/// object with `usages`, extractable wrapped only when `for_put` is set.
pub fn derive_receipt_key<'s, 'h>(
    session: &'s TokenSession<'h>,
    master: KeyHandle,
    scheme: Scheme,
    kdd: &[u8; 10],
    usages: &[Usage],
    for_put: bool,
) -> Result<keyman::hsm::DerivedKey<'s, 'h>, Error> {
    crate::diversify::check_master(session, master, scheme, SecretKeyType::Aes128)?;
    derive_kk(
        session,
        master,
        scheme,
        kdd,
        RECEIPT_KVN,
        SecretKeyType::Aes128,
        usages,
        for_put,
    )
}

/// Checks a receipt in the token: AES-CMAC under the card's receipt key over the confirmation data and
/// `fields` (GPC C.5), compared in constant time.
pub fn verify_receipt(
    session: &TokenSession<'_>,
    receipt_key: KeyHandle,
    c: &Confirmation,
    fields: &[u8],
) -> Result<(), Error> {
    let mut signed = c.data.clone();
    signed.extend_from_slice(fields);
    let mac = session.aes_cmac(receipt_key, &signed)?;
    if c.receipt.len() == mac.len() && bool::from(mac.as_slice().ct_eq(&c.receipt)) {
        Ok(())
    } else {
        Err(Error::Verification(
            "the card's receipt does not verify under its receipt key".into(),
        ))
    }
}

/// Length-value of an AID, as receipts list them.
pub fn lv(out: &mut Vec<u8>, v: &[u8]) {
    out.push(u8::try_from(v.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(v);
}

// ---- Channels and card-side steps -----------------------------------------------------------------

/// Sends a PUT KEY for a new single-key set `kvn` (key id 1), or replaces it when the card already has it.
fn put_single_key(
    ch: &mut SecureChannel<'_>,
    kvn: u8,
    key: KeyData,
) -> Result<PutKeyResponse, Error> {
    let put = PutKey {
        new_kvn: kvn,
        keys: vec![key],
    };
    let mut resp = ch.send(&put.to_apdu(0, 1).map_err(gp_err("PUT KEY"))?)?;
    if resp.sw == 0x6A80 {
        // The key version exists already: replace it.
        resp = ch.send(&put.to_apdu(kvn, 1).map_err(gp_err("PUT KEY"))?)?;
    }
    channel::expect_ok(&resp, &format!("PUT KEY {kvn:02X}"))?;
    PutKeyResponse::parse(&resp.data).map_err(|e| Error::Card(format!("PUT KEY response: {e}")))
}

/// What `put_dm_keys` put on the card.
#[derive(Clone, Debug)]
pub struct DmKeysPut {
    /// The card's KDD.
    pub kdd: [u8; 10],
    /// The token verification key: algorithm and KCV or public key hash.
    pub token_key: TokenKeyRecord,
    /// KCV of the card's receipt key (GPC B.6), as the card confirmed it.
    pub receipt_kcv: [u8; 3],
}

/// Puts the card domain's token verification key (KVN `70`: the issuer's public key, or its AES token key
/// wrapped in the token under the card's DEK) and the card's own receipt key (KVN `71`, derived from the
/// receipt master and wrapped in the token) through a channel opened with the issuer's keys.
#[allow(clippy::too_many_arguments)]
pub fn put_dm_keys(
    t: &mut dyn Transport,
    session: &TokenSession<'_>,
    master: KeyHandle,
    scheme: Scheme,
    token_key_label: &str,
    receipt_master: KeyHandle,
    receipt_scheme: Scheme,
) -> Result<DmKeysPut, Error> {
    let token_key = TokenKey::open(session, token_key_label)?;
    let record = token_key.record(session, token_key_label)?;
    // The receipt key is derived after KVN 70 is put: a token that cannot derive it refuses here, before
    // the card changes.
    crate::diversify::check_master(
        session,
        receipt_master,
        receipt_scheme,
        SecretKeyType::Aes128,
    )?;
    let (mut ch, kdd) = open_domain_channel(t, session, &ISD_AID, master, scheme)?;
    let dek = derive_one(
        session,
        master,
        scheme,
        &kdd,
        KeyRole::Dek,
        SecretKeyType::Aes128,
        &[Usage::Wrap],
        false,
    )?;
    let wrapped_aes = |key: KeyHandle| -> Result<KeyData, Error> {
        let kcv = session.kcv(key)?;
        let wrapped = session.wrap_cbc_zero_iv(dek.handle(), key)?;
        let n = u8::try_from(key.key_type().map_or(16, SecretKeyType::byte_len)).unwrap_or(16);
        Ok(KeyData {
            components: vec![KeyComponent {
                key_type: KEY_TYPE_AES,
                block: [&[n][..], &wrapped].concat(),
            }],
            kcv: kcv.value.to_vec(),
        })
    };
    let token_data = match &token_key {
        TokenKey::Aes(k) => wrapped_aes(*k)?,
        TokenKey::Asymmetric(_) => match session.find_public_key(token_key_label)? {
            PublicKey::Rsa { modulus, exponent } => KeyData {
                components: vec![
                    KeyComponent {
                        key_type: 0xA1,
                        block: modulus,
                    },
                    KeyComponent {
                        key_type: 0xA0,
                        block: exponent,
                    },
                ],
                kcv: Vec::new(),
            },
            PublicKey::EcP256 { point } => KeyData {
                components: vec![
                    KeyComponent {
                        key_type: 0xB0,
                        block: point,
                    },
                    // Key parameter reference 00: P-256.
                    KeyComponent {
                        key_type: 0xF0,
                        block: vec![0x00],
                    },
                ],
                kcv: Vec::new(),
            },
        },
    };
    put_single_key(&mut ch, TOKEN_KVN, token_data)?;
    let receipt = derive_receipt_key(
        session,
        receipt_master,
        receipt_scheme,
        &kdd,
        &[Usage::Encrypt],
        true,
    )?;
    let expected = session.kcv(receipt.handle())?.value;
    let confirmed = put_single_key(&mut ch, RECEIPT_KVN, wrapped_aes(receipt.handle())?)?;
    if confirmed.check_values != expected {
        return Err(Error::Card(format!(
            "PUT KEY 71: the card confirmed KCV {} but the token computed {}",
            hex::encode_upper(&confirmed.check_values),
            hex::encode_upper(expected)
        )));
    }
    Ok(DmKeysPut {
        kdd,
        token_key: record,
        receipt_kcv: expected,
    })
}

/// One delegated operation's outcome: what was done and the card's checked (or unchecked) receipt.
#[derive(Clone, Debug)]
pub struct ReceiptOutcome {
    /// `load`, `install` or `delete`, with the AID.
    pub what: String,
    /// The confirmation the card returned.
    pub confirmation: Confirmation,
    /// Whether the receipt was verified in the issuer's token.
    pub verified: bool,
}

/// The delegated commands for `pkg` through `sd_aid`, each with the token from `tokens` that covers it
/// exactly. Called before the card is reached, so a missing token stops the run with nothing sent.
pub struct DelegatedLoad {
    /// INSTALL [for load] with its token (combined: the first command's data, no token).
    pub load: InstallForLoad,
    /// The combined process's final command (INSTALL [for install] data of the first applet) with the
    /// combined token (GPC C.4.7), when the tokens file carries one.
    pub combined: Option<InstallForInstall>,
    /// INSTALL [for install and make selectable] per (further) applet, with their tokens.
    pub installs: Vec<InstallForInstall>,
}

/// Finds the token for every command of a delegated load and install of `pkg` through `sd_aid`.
pub fn prepare_delegated(
    pkg: &Package,
    sd_aid: &[u8],
    tokens: &TokensFile,
) -> Result<DelegatedLoad, Error> {
    if tokens.tokens.iter().any(|t| t.command == CMD_COMBINED) {
        let (load, mut last, input) = combined_parts(pkg, sd_aid)?;
        last.token = tokens.token_for(
            CMD_COMBINED,
            P1_COMBINED,
            P2_COMBINED_FINAL,
            &input,
            "INSTALL [for load, install and make selectable]",
        )?;
        let installs = further_installs(pkg, tokens, 1)?;
        return Ok(DelegatedLoad {
            load,
            combined: Some(last),
            installs,
        });
    }
    let mut load = load_command(pkg, sd_aid)?;
    let load_body = install_body(&load.to_data().map_err(gp_err("INSTALL [for load]"))?)?;
    load.load_token = tokens.token_for(CMD_LOAD, 0x02, 0x00, &load_body, "INSTALL [for load]")?;
    let installs = further_installs(pkg, tokens, 0)?;
    Ok(DelegatedLoad {
        load,
        combined: None,
        installs,
    })
}

/// The INSTALL [for install and make selectable] of `pkg`'s applets after the first `skip`, each with
/// its token.
fn further_installs(
    pkg: &Package,
    tokens: &TokensFile,
    skip: usize,
) -> Result<Vec<InstallForInstall>, Error> {
    let mut installs = Vec::new();
    for a in pkg.applets()?.into_iter().skip(skip) {
        let mut c = install_command(pkg, &a)?;
        let body = install_body(&c.to_data().map_err(gp_err("INSTALL [for install]"))?)?;
        c.token = tokens.token_for(
            CMD_INSTALL,
            c.p1(),
            0x00,
            &body,
            &format!(
                "INSTALL [for install and make selectable] {}",
                hex::encode_upper(&a)
            ),
        )?;
        installs.push(c);
    }
    Ok(installs)
}

/// Checks one receipt against the fields it signs; says whether it was verified (an unverifiable receipt
/// is an error, no key to check with is `false`).
pub type ReceiptCheck<'a> = dyn FnMut(&Confirmation, &[u8]) -> Result<bool, Error> + 'a;

/// Loads and installs `pkg` through the Delegated Management domain `sd_aid` over an open channel to it
/// with the prepared commands, and hands every receipt with the fields it signs (GPC C.5) to
/// `receipt_check`, which says whether it verified it. Stops at the first refusal.
pub fn load_and_install_delegated(
    ch: &mut SecureChannel<'_>,
    pkg: &Package,
    sd_aid: &[u8],
    prepared: DelegatedLoad,
    kdd: &[u8; 10],
    receipt_check: &mut ReceiptCheck<'_>,
) -> Result<Vec<ReceiptOutcome>, Error> {
    let DelegatedLoad {
        load,
        combined,
        installs,
    } = prepared;
    let elf = pkg.load_file_aid()?;
    let mut out = Vec::new();
    let lfdb = match &pkg.manifest.cipher {
        Some(c) => LfdbBlock::Ciphered {
            icv: Some(hex::decode(&c.icv).map_err(|_| Error::Usage("manifest.cipher.icv".into()))?),
            data: pkg.ciphered_bytes()?,
        },
        None => LfdbBlock::Plain(pkg.lfdb_bytes()?),
    };
    let file = LoadFile {
        dap_blocks: pkg.dap_blocks_for(kdd)?,
        lfdb,
    };
    let bytes = file.to_bytes().map_err(gp_err("LOAD"))?;
    let blocks = split_into_load_blocks(&bytes, crate::gp::LOAD_BLOCK).map_err(gp_err("LOAD"))?;
    // Everything is ready (DAPs for this card included) before the first command goes out.
    if let Some(last) = combined {
        // GPC C.4.7 / §11.5: INSTALL [for load, install and make selectable], first command (no token),
        // the LOADs (the card only checks the load file), the final command with the token; one receipt.
        let mut first = load.to_apdu().map_err(gp_err("INSTALL [for load]"))?;
        (first.p1, first.p2) = (P1_COMBINED, P2_COMBINED_FIRST);
        ch.send_ok(
            &first,
            "INSTALL [for load, install and make selectable] first (delegated)",
        )?;
        for (n, block) in blocks.iter().enumerate() {
            ch.send_ok(block, &format!("LOAD block {n}"))?;
        }
        let mut fin = last.to_apdu().map_err(gp_err("INSTALL [for install]"))?;
        (fin.p1, fin.p2) = (P1_COMBINED, P2_COMBINED_FINAL);
        let resp = ch.send_ok(
            &fin,
            "INSTALL [for load, install and make selectable] final (delegated)",
        )?;
        let c = parse_confirmation(&resp.data)?;
        // Combined receipt (GPC C.5.6): load file, application, security domain.
        let mut fields = Vec::new();
        lv(&mut fields, &elf);
        lv(&mut fields, &last.application_aid);
        lv(&mut fields, sd_aid);
        let verified = receipt_check(&c, &fields)?;
        out.push(ReceiptOutcome {
            what: format!(
                "load+install {} {}",
                hex::encode_upper(&elf),
                hex::encode_upper(&last.application_aid)
            ),
            confirmation: c,
            verified,
        });
        install_delegated(ch, &elf, installs, receipt_check, &mut out)?;
        return Ok(out);
    }
    ch.send_ok(
        &load.to_apdu().map_err(gp_err("INSTALL [for load]"))?,
        "INSTALL [for load] (delegated)",
    )?;
    let mut last = Vec::new();
    for (n, block) in blocks.iter().enumerate() {
        last = ch.send_ok(block, &format!("LOAD block {n}"))?.data;
    }
    let c = parse_confirmation(&last)?;
    let mut fields = Vec::new();
    lv(&mut fields, &elf);
    lv(&mut fields, sd_aid);
    let verified = receipt_check(&c, &fields)?;
    out.push(ReceiptOutcome {
        what: format!("load {}", hex::encode_upper(&elf)),
        confirmation: c,
        verified,
    });
    install_delegated(ch, &elf, installs, receipt_check, &mut out)?;
    Ok(out)
}

/// Sends the delegated INSTALL [for install and make selectable] commands and checks their receipts.
fn install_delegated(
    ch: &mut SecureChannel<'_>,
    elf: &[u8],
    installs: Vec<InstallForInstall>,
    receipt_check: &mut ReceiptCheck<'_>,
    out: &mut Vec<ReceiptOutcome>,
) -> Result<(), Error> {
    for c in installs {
        let resp = ch.send_ok(
            &c.to_apdu().map_err(gp_err("INSTALL [for install]"))?,
            "INSTALL [for install and make selectable] (delegated)",
        )?;
        let conf = parse_confirmation(&resp.data)?;
        let mut fields = Vec::new();
        lv(&mut fields, elf);
        lv(&mut fields, &c.application_aid);
        let verified = receipt_check(&conf, &fields)?;
        out.push(ReceiptOutcome {
            what: format!("install {}", hex::encode_upper(&c.application_aid)),
            confirmation: conf,
            verified,
        });
    }
    Ok(())
}

// ---- Command line ---------------------------------------------------------------------------------

/// Where a token's PIN comes from. The module that reaches it is the global `--module` (with
/// `--module-init`), or the URI's `module-path`.
#[derive(Args, Debug, Clone)]
pub struct TokenAccess {
    /// Where the token PIN comes from: env:NAME or file:PATH (default: a no-echo prompt).
    #[arg(long, default_value = "prompt")]
    pub pin_source: PinSource,
}

impl TokenAccess {
    /// Opens the token `uri` names and runs `f` with a session in it.
    pub fn with_session<T>(
        &self,
        uri: &TokenUri,
        f: impl FnOnce(&TokenSession<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let hsm = Hsm::for_uri(uri, None)?;
        let session = hsm.open(uri, &self.pin_source)?;
        f(&session)
    }
}

/// Options of `signer token load|install|delete`.
#[derive(Args, Debug)]
pub struct IssueArgs {
    /// The security domain with Delegated Management that will send the commands (AID, hex).
    #[arg(long)]
    pub sd: String,
    /// The issuer's token signing key (AES, RSA or EC P-256): pkcs11:token=LABEL;object=KEY-LABEL.
    #[arg(long)]
    pub token_key: String,
    /// Where to write the tokens file (never overwritten).
    #[arg(long)]
    pub out: PathBuf,
    /// The token's PIN source and module.
    #[command(flatten)]
    pub token: TokenAccess,
    /// Append a signing record to this existing ledger (see `keyman ledger init`), anchored in the token.
    #[arg(long)]
    pub ledger: Option<PathBuf>,
}

/// `signer token …`: delegated-management tokens and the card keys that check them.
#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Authorise loading a package through a Delegated Management SSD (and installing its applets).
    Load {
        /// The package.
        package: PathBuf,
        /// Only the load token, no install tokens.
        #[arg(long)]
        load_only: bool,
        /// Security domain, key, output.
        #[command(flatten)]
        args: IssueArgs,
    },
    /// Authorise installing a package's applets (its load file already on the card) through an SSD.
    Install {
        /// The package.
        package: PathBuf,
        /// Security domain, key, output.
        #[command(flatten)]
        args: IssueArgs,
    },
    /// Authorise the combined load, install and make selectable process (INSTALL P1 0E, GPC C.4.7) of a
    /// package's first applet through an SSD (install tokens for any further applets).
    Combined {
        /// The package.
        package: PathBuf,
        /// Security domain, key, output.
        #[command(flatten)]
        args: IssueArgs,
    },
    /// Authorise deleting an application or load file through an SSD.
    Delete {
        /// AID of the application or load file to delete (hex).
        #[arg(long)]
        aid: String,
        /// Delete the load file with its applications (DELETE P2 80).
        #[arg(long)]
        related: bool,
        /// Security domain, key, output.
        #[command(flatten)]
        args: IssueArgs,
    },
    /// Put the token verification key (KVN 70) and the card's receipt key (KVN 71) into the card domain.
    PutKeys {
        /// The card: sim:IMAGE-PATH or pcsc:READER-NAME.
        #[arg(long)]
        card: CardRef,
        /// The issuer's master key: pkcs11:token=LABEL;object=KEY-LABEL.
        #[arg(long)]
        master: String,
        /// Key diversification scheme of the issuer's master: emv, visa2 or aes.
        #[arg(long, default_value = "emv")]
        scheme: Scheme,
        /// The token signing key (same token): its public key or the AES key goes to KVN 70.
        #[arg(long)]
        token_key: String,
        /// The receipt master (same token); each card's receipt key is derived from it and its KDD.
        #[arg(long)]
        receipt_master: String,
        /// Scheme of the receipt master: aes or kdf3 (AES master), emv or visa2 (3DES).
        #[arg(long, default_value = "aes")]
        receipt_scheme: Scheme,
        /// The token's PIN source and module.
        #[command(flatten)]
        token: TokenAccess,
        /// Append a delivery record to this ledger.
        #[arg(long)]
        ledger: Option<PathBuf>,
    },
}

/// Options `signer deploy` takes for a delegated load.
#[derive(Args, Debug, Clone)]
pub struct DelegatedArgs {
    /// Load through the Delegated Management SSD named by --sd with these tokens (`signer token load`, or
    /// `signer token combined` for the combined INSTALL [for load, install and make selectable]);
    /// --master and --scheme then name the SSD's (the vendor's) master, not the issuer's.
    #[arg(long, requires = "sd")]
    pub tokens: Option<PathBuf>,
    /// Check the card's receipts with the card's receipt key derived from this master (the issuer's
    /// token, same PIN source): pkcs11:token=LABEL;object=KEY-LABEL.
    #[arg(long, requires = "tokens")]
    pub receipt_master: Option<String>,
    /// Scheme of the receipt master: aes, kdf3, emv or visa2.
    #[arg(long, default_value = "aes")]
    pub receipt_scheme: Scheme,
}

/// A URI naming a key: the token part and the object label.
pub fn key_uri(text: &str, option: &str) -> Result<(TokenUri, String), Error> {
    let uri = TokenUri::parse(text)?;
    let label = uri
        .object
        .clone()
        .ok_or_else(|| Error::Usage(format!("{option} must name the key with object=LABEL")))?;
    Ok((uri, label))
}

/// Refuses two keys in different tokens (one PIN source reaches one token).
pub fn same_token(a: &TokenUri, b: &TokenUri, what: &str) -> Result<(), Error> {
    if a.token == b.token && a.serial == b.serial {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "{what} must be in the same token (one PIN source reaches one token)"
        )))
    }
}

/// Parses an AID in hex (5 to 16 bytes).
pub fn parse_aid(text: &str, option: &str) -> Result<Vec<u8>, Error> {
    let b =
        hex::decode(text).map_err(|_| Error::Usage(format!("{option}: '{text}' is not hex")))?;
    if (5..=16).contains(&b.len()) {
        Ok(b)
    } else {
        Err(Error::Usage(format!("{option}: an AID has 5 to 16 bytes")))
    }
}

fn key_output(record: &TokenKeyRecord) -> Output {
    Output::Key {
        label: record.label.clone(),
        id_hex: String::new(),
        key_type: record.algorithm.to_uppercase(),
        kcv_hex: record.kcv.clone(),
        kcv_method: record
            .kcv
            .as_ref()
            .map(|_| keyman::ledger::KcvMethod::AesOnes),
    }
}

/// Runs `signer token …`.
pub fn run(command: TokenCommand, dry: bool) -> Result<(), Error> {
    let (package, what, args) = match command {
        TokenCommand::PutKeys {
            card,
            master,
            scheme,
            token_key,
            receipt_master,
            receipt_scheme,
            token,
            ledger,
        } => {
            return run_put_keys(
                &card,
                &master,
                scheme,
                &token_key,
                &receipt_master,
                receipt_scheme,
                &token,
                ledger.as_deref(),
                dry,
            )
        }
        TokenCommand::Load {
            package,
            load_only,
            args,
        } => (
            Some(package),
            Authorise::Load {
                install: !load_only,
            },
            args,
        ),
        TokenCommand::Install { package, args } => (Some(package), Authorise::Install, args),
        TokenCommand::Combined { package, args } => (Some(package), Authorise::Combined, args),
        TokenCommand::Delete { aid, related, args } => (
            None,
            Authorise::Delete {
                aid: parse_aid(&aid, "--aid")?,
                related,
            },
            args,
        ),
    };
    if args.out.exists() {
        return Err(Error::OutputExists(args.out));
    }
    let sd_aid = parse_aid(&args.sd, "--sd")?;
    let (uri, label) = key_uri(&args.token_key, "--token-key")?;
    let pkg = package
        .as_deref()
        .map(Package::read_with_bytes)
        .transpose()?;
    if dry {
        println!("would open token {uri} and find the token key '{label}'");
        match &what {
            Authorise::Load { install } => {
                println!(
                    "would sign the INSTALL [for load] token for the package's load file to SSD {}",
                    hex::encode_upper(&sd_aid)
                );
                if *install {
                    println!(
                        "would sign an INSTALL [for install and make selectable] token per applet"
                    );
                }
            }
            Authorise::Install => {
                println!("would sign an INSTALL [for install and make selectable] token per applet")
            }
            Authorise::Combined => {
                println!(
                    "would sign the INSTALL [for load, install and make selectable] token for the package's \
                     load file and first applet to SSD {} (and an install token per further applet)",
                    hex::encode_upper(&sd_aid)
                );
            }
            Authorise::Delete { aid, .. } => {
                println!("would sign the DELETE token for {}", hex::encode_upper(aid))
            }
        }
        println!(
            "would write {} (tokens bound to the package by its SHA-256)",
            args.out.display()
        );
        return Ok(());
    }
    let mut records = Records::open(args.ledger.as_deref(), Some(&uri), &args.token.pin_source)?;
    let file = records.guard("signer token", |records| {
        args.token.with_session(&uri, |session| {
            let key = TokenKey::open(session, &label)?;
            let file = issue(
                session,
                &key,
                &label,
                pkg.as_ref().map(|(p, b)| (p, b.as_slice())),
                &sd_aid,
                &what,
            )?;
            let mut text = serde_json::to_string_pretty(&file)
                .map_err(|e| Error::Usage(format!("tokens file: {e}")))?;
            text.push('\n');
            crate::package::write_new_file(&args.out, text.as_bytes())?;
            let mut common = vec![key_output(&file.key)];
            if let Some((_, bytes)) = &pkg {
                common.push(records::package_output(bytes));
            }
            common.push(Output::File {
                name: args.out.display().to_string(),
                sha256: keyman::ledger::Sha256Hash::of(text.as_bytes()),
            });
            records.record(
                EntryKind::Signing,
                "signer token",
                &format!("{} token(s) for SSD {}", file.tokens.len(), file.sd_aid),
                &[],
                &common,
                &[],
            )?;
            Ok(file)
        })
    })?;
    println!("token key     {} ({})", file.key.label, file.key.algorithm);
    if let Some(k) = &file.key.kcv {
        println!("  KCV         {k} (AES-ECB(01*16) GPC B.6)");
    }
    if let Some(h) = &file.key.public_key_sha256 {
        println!("  public key  SHA-256 {h}");
    }
    println!("SSD           {}", file.sd_aid);
    if let Some(h) = &file.package_sha256 {
        println!("package       SHA-256 {h}");
    }
    for t in &file.tokens {
        println!(
            "{:<13} P1 {} P2 {} data {} token {}",
            t.command, t.p1, t.p2, t.data, t.token
        );
    }
    println!("written       {}", args.out.display());
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn run_put_keys(
    card: &CardRef,
    master: &str,
    scheme: Scheme,
    token_key: &str,
    receipt_master: &str,
    receipt_scheme: Scheme,
    access: &TokenAccess,
    ledger: Option<&Path>,
    dry: bool,
) -> Result<(), Error> {
    let (uri, master_label) = key_uri(master, "--master")?;
    let (tk_uri, tk_label) = key_uri(token_key, "--token-key")?;
    let (rm_uri, rm_label) = key_uri(receipt_master, "--receipt-master")?;
    same_token(&uri, &tk_uri, "--master and --token-key")?;
    same_token(&uri, &rm_uri, "--master and --receipt-master")?;
    if dry {
        println!("would connect to {card} and open SCP03 to the card domain with keys derived from {master}");
        println!("would PUT KEY {TOKEN_KVN:02X}: the public key (or the wrapped AES key) of '{tk_label}'");
        println!(
            "would derive the card's receipt key from '{rm_label}' ({receipt_scheme}, role 71) and PUT KEY it as \
             {RECEIPT_KVN:02X}, wrapped in the token under the card's DEK"
        );
        return Ok(());
    }
    let mut records = Records::open(ledger, Some(&uri), &access.pin_source)?;
    let done = records.guard("signer token put-keys", |records| {
        let mut t = connect(card)?;
        access.with_session(&uri, |session| {
            let m = session.find_secret_key(&master_label)?;
            let rm = session.find_secret_key(&rm_label)?;
            let done = put_dm_keys(
                t.as_mut(),
                session,
                m,
                scheme,
                &tk_label,
                rm,
                receipt_scheme,
            )?;
            let common = vec![key_output(&done.token_key), records::kdd_output(&done.kdd)];
            records.record(
                EntryKind::Delivery,
                "signer token put-keys",
                "token and receipt keys put",
                &[],
                &common,
                &[],
            )?;
            Ok(done)
        })
    })?;
    println!("card KDD      {}", hex::encode_upper(done.kdd));
    println!(
        "KVN {TOKEN_KVN:02X}        token verification key '{}' ({}){}",
        done.token_key.label,
        done.token_key.algorithm,
        done.token_key
            .kcv
            .as_ref()
            .map(|k| format!(", KCV {k} (AES-ECB(01*16) GPC B.6)"))
            .or_else(|| done
                .token_key
                .public_key_sha256
                .as_ref()
                .map(|h| format!(", public key SHA-256 {h}")))
            .unwrap_or_default()
    );
    println!(
        "KVN {RECEIPT_KVN:02X}        receipt key of this card from '{rm_label}', KCV {} (AES-ECB(01*16) GPC B.6)",
        hex::encode_upper(done.receipt_kcv)
    );
    Ok(())
}

/// `signer deploy PKG --sd AID --tokens FILE`: the delegated load through the vendor's SSD.
#[allow(clippy::too_many_arguments)]
pub fn deploy(
    path: &Path,
    card: &CardRef,
    master: &str,
    scheme: Scheme,
    access: &TokenAccess,
    sd: &str,
    delegated: &DelegatedArgs,
    ledger: Option<&Path>,
    dry: bool,
) -> Result<(), Error> {
    let tokens_path = delegated
        .tokens
        .as_deref()
        .ok_or_else(|| Error::Usage("--tokens is needed for a delegated load".into()))?;
    let (pkg, bytes) = Package::read_with_bytes(path)?;
    let tokens = TokensFile::read(tokens_path)?;
    let sd_aid = parse_aid(sd, "--sd")?;
    let pkg_hash = hex::encode_upper(sha2::Sha256::digest(&bytes));
    if tokens.package_sha256.as_deref().map(str::to_uppercase) != Some(pkg_hash.clone()) {
        return Err(Error::Verification(format!(
            "{} was issued for another package (SHA-256 {}), not {} ({pkg_hash}); nothing was sent",
            tokens_path.display(),
            tokens.package_sha256.as_deref().unwrap_or("none"),
            path.display()
        )));
    }
    if !tokens.sd_aid.eq_ignore_ascii_case(&hex::encode(&sd_aid)) {
        return Err(Error::Verification(format!(
            "{} authorises SSD {}, not {}; nothing was sent",
            tokens_path.display(),
            tokens.sd_aid,
            hex::encode_upper(&sd_aid)
        )));
    }
    let prepared = prepare_delegated(&pkg, &sd_aid, &tokens)?;
    let (uri, label) = key_uri(master, "--master")?;
    let receipt = delegated
        .receipt_master
        .as_deref()
        .map(|r| key_uri(r, "--receipt-master"))
        .transpose()?;
    if dry {
        println!(
            "would connect to {card} and open SCP03 to SSD {} with keys derived from {master}",
            hex::encode_upper(&sd_aid)
        );
        let skip = if prepared.combined.is_some() {
            println!(
                "would INSTALL [for load, install and make selectable] {} naming SSD {}: the first command, \
                 LOAD with the DAPs made for the card's KDD, the final command for {} with the combined token \
                 from {}, and read the combined receipt",
                pkg.manifest.load_file_aid,
                hex::encode_upper(&sd_aid),
                pkg.manifest.applets.first().map_or("", String::as_str),
                tokens_path.display()
            );
            1
        } else {
            println!(
                "would INSTALL [for load] {} naming SSD {} with its token from {}",
                pkg.manifest.load_file_aid,
                hex::encode_upper(&sd_aid),
                tokens_path.display()
            );
            println!(
                "would LOAD it with the DAPs made for the card's KDD and read the load receipt"
            );
            0
        };
        for a in pkg.manifest.applets.iter().skip(skip) {
            println!("would INSTALL [for install and make selectable] {a} with its token and read the receipt");
        }
        match &receipt {
            Some((_, l)) => {
                println!("would check every receipt with the card's receipt key derived from '{l}'")
            }
            None => println!("would print the receipts unchecked (no --receipt-master)"),
        }
        return Ok(());
    }
    let mut records = Records::open(ledger, Some(&uri), &access.pin_source)?;
    let outcomes = records.guard("signer deploy", |records| {
        let mut t = connect(card)?;
        let hsm = Hsm::for_uri(&uri, None)?;
        let session = hsm.open(&uri, &access.pin_source)?;
        let m = session.find_secret_key(&label)?;
        let issuer = match &receipt {
            Some((ruri, rlabel)) => {
                let s = if ruri.token == uri.token && ruri.serial == uri.serial {
                    None
                } else {
                    Some(hsm.open(ruri, &access.pin_source)?)
                };
                Some((s, rlabel.clone()))
            }
            None => None,
        };
        let (mut ch, kdd) = open_domain_channel(t.as_mut(), &session, &sd_aid, m, scheme)?;
        println!(
            "secure channel SCP03 to SSD {} of card {} (C-MAC, C-DEC)",
            hex::encode_upper(&sd_aid),
            hex::encode_upper(kdd)
        );
        let receipt_session = issuer
            .as_ref()
            .map(|(s, l)| (s.as_ref().unwrap_or(&session), l));
        let receipt_key = match receipt_session {
            Some((s, l)) => {
                let rm = s.find_secret_key(l)?;
                Some((
                    s,
                    derive_receipt_key(
                        s,
                        rm,
                        delegated.receipt_scheme,
                        &kdd,
                        &[Usage::Sign],
                        false,
                    )?,
                ))
            }
            None => None,
        };
        let mut check = |c: &Confirmation, fields: &[u8]| -> Result<bool, Error> {
            match &receipt_key {
                Some((s, k)) => verify_receipt(s, k.handle(), c, fields).map(|()| true),
                None => Ok(false),
            }
        };
        let outcomes =
            load_and_install_delegated(&mut ch, &pkg, &sd_aid, prepared, &kdd, &mut check)?;
        let identity = format!("KDD:{}", hex::encode_upper(kdd));
        let common = vec![
            records::package_output(&bytes),
            records::card_output(&identity),
            Output::File {
                name: tokens_path.display().to_string(),
                sha256: keyman::ledger::Sha256Hash::of(&std::fs::read(tokens_path).map_err(
                    |source| Error::Io {
                        path: tokens_path.to_path_buf(),
                        source,
                    },
                )?),
            },
        ];
        records.record(
            EntryKind::Delivery,
            "signer deploy",
            &format!(
                "delegated load {} through SSD {}, {} receipt(s){}",
                pkg.manifest.load_file_aid,
                hex::encode_upper(&sd_aid),
                outcomes.len(),
                if receipt_key.is_some() {
                    " verified"
                } else {
                    " unchecked"
                }
            ),
            &[],
            &common,
            &[],
        )?;
        Ok(outcomes)
    })?;
    for o in &outcomes {
        println!(
            "{:<13} receipt {} counter {} {}",
            o.what,
            hex::encode_upper(&o.confirmation.receipt),
            o.confirmation.counter,
            if o.verified {
                "verified with the card's receipt key"
            } else {
                "NOT checked (no --receipt-master)"
            }
        );
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn token_input_lengths() {
        assert_eq!(token_input(2, 0, &[7; 3]).unwrap(), [2, 0, 3, 7, 7, 7]);
        let long = token_input(0x0C, 0, &[1; 300]).unwrap();
        assert_eq!(&long[..5], &[0x0C, 0, 0, 0x01, 0x2C]);
    }

    #[test]
    fn confirmations_parse_and_refuse_garbage() {
        let mut resp = vec![0x18, 0x10];
        resp.extend_from_slice(&[0xAB; 16]);
        resp.extend_from_slice(&[0x02, 0x00, 0x01, 0x03, 1, 2, 3]);
        let c = parse_confirmation(&resp).unwrap();
        assert_eq!((c.counter, c.receipt.len(), c.data.len()), (1, 16, 7));
        for bad in [
            &[][..],
            &[0x00],
            &[0x05, 0x10],
            &[0x02, 0x10, 0x00],
            &[0x81],
        ] {
            assert!(parse_confirmation(bad).is_err(), "{bad:02X?}");
        }
    }
}
