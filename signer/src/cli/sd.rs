//! `signer sd`: a vendor's security domain, through its own secure channel.

use super::{optional_key_uri, token_key_output};
use clap::{Args, Subcommand};
use gp_core::diversify::Scheme;
use keyman::hsm::{SecretKeyType, TokenUri};
use keyman::ledger::EntryKind;
use signer::diversify::{derive_card_keys, Purpose};
use signer::gp;
use signer::records::{self, Records};
use signer::token::{key_uri, parse_aid, same_token, TokenAccess};
use signer::transport::{connect, CardRef};
use signer::Error;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum SdCommand {
    /// Put the vendor's per-card DAP key (KVN 73), load-file cipher key (KVN 74) and per-card channel key set
    /// (key set 01, replacing the transport key set) into its SSD, wrapped in the vendor's token under the
    /// SSD's current DEK.
    PutKeys(SdPutKeysArgs),
}

#[derive(Args, Debug)]
pub struct SdPutKeysArgs {
    /// The card: sim:IMAGE-PATH or pcsc:READER-NAME.
    #[arg(long)]
    pub card: CardRef,
    /// The SSD's AID (hex). Its channel opens with its transport key set (the default key), or with its
    /// per-card key set from --channel-master when the SSD reports key set 01.
    #[arg(long)]
    pub sd: String,
    /// The vendor's per-card DAP master: pkcs11:token=LABEL;object=KEY-LABEL.
    #[arg(long, requires = "diversify")]
    pub dap_master: Option<String>,
    /// Scheme deriving the card's DAP key from the KDD the SSD reports: aes, kdf3, emv or visa2 (as
    /// `package --diversify`).
    #[arg(long, requires = "dap_master")]
    pub diversify: Option<Scheme>,
    /// The load-file cipher key to put as KVN 74 (same token; extractable, leaves the token only wrapped).
    #[arg(long)]
    pub cipher_key: Option<String>,
    /// The vendor's SSD master (same token): this card's ENC, MAC and DEK, derived from it and the KDD,
    /// replace the SSD's transport key set as key set 01 (for `deploy --tokens` and `app personalise`).
    #[arg(long, value_name = "URI")]
    pub channel_master: Option<String>,
    /// Key diversification scheme of --channel-master: emv, visa2, aes or kdf3 (default aes).
    #[arg(long, value_name = "SCHEME", requires = "channel_master")]
    pub channel_scheme: Option<Scheme>,
    /// Replace KVN 73/74 when the SSD already holds them (otherwise refused before any key is sent).
    #[arg(long)]
    pub replace: bool,
    /// With --channel-master: put the key set even when its ENC and MAC have the KCVs of the SSD's
    /// current keys (refused otherwise: the same channel keys under a replaced key set let recorded
    /// sessions replay).
    #[arg(long, requires = "channel_master")]
    pub allow_same_channel_keys: bool,
    #[command(flatten)]
    pub token: TokenAccess,
    /// Append a delivery record to this existing ledger (see `keyman ledger init`), anchored in the token.
    #[arg(long)]
    pub ledger: Option<PathBuf>,
}

pub fn sd_put_keys(a: &SdPutKeysArgs, dry: bool) -> Result<(), Error> {
    use signer::sd::{CIPHER_KVN, DAP_KVN, SD_KEY_ID, SSD_CHANNEL_KVN};
    let sd_aid = parse_aid(&a.sd, "--sd")?;
    let dap = match (&a.dap_master, a.diversify) {
        (Some(m), Some(scheme)) => Some((key_uri(m, "--dap-master")?, scheme)),
        _ => None,
    };
    let cipher = optional_key_uri(a.cipher_key.as_deref(), "--cipher-key")?;
    let channel_scheme = a.channel_scheme.unwrap_or(Scheme::Aes);
    let channel = optional_key_uri(a.channel_master.as_deref(), "--channel-master")?;
    let uris: Vec<(&TokenUri, &str)> = [
        dap.as_ref().map(|((u, _), _)| (u, "--dap-master")),
        cipher.as_ref().map(|(u, _)| (u, "--cipher-key")),
        channel.as_ref().map(|(u, _)| (u, "--channel-master")),
    ]
    .into_iter()
    .flatten()
    .collect();
    let Some(&(uri, first)) = uris.first() else {
        return Err(Error::Usage(
            "name at least one key to put: --dap-master, --cipher-key or --channel-master".into(),
        ));
    };
    for (other, name) in uris.iter().skip(1) {
        same_token(uri, other, &format!("{first} and {name}"))?;
    }
    let uri = uri.clone();
    let aid = hex::encode_upper(&sd_aid);
    if dry {
        println!(
            "would connect to {}, SELECT security domain {aid} and open SCP03 to it with its transport \
             key set (the default key, imported into the token of {first} as session objects)",
            a.card
        );
        if let Some((_, label)) = &channel {
            println!(
                "  or, when the SSD reports key set {SSD_CHANNEL_KVN:02X}, with its per-card keys derived \
                 in the token from '{label}' ({channel_scheme})"
            );
        }
        println!(
            "would read the SSD's key information (GET DATA 00E0) and {} key versions it already holds",
            if a.replace { "replace" } else { "refuse" }
        );
        if let Some(((_, dap_label), scheme)) = &dap {
            println!(
                "would derive the card's DAP key in the token from '{dap_label}' ({scheme}) and the KDD the SSD reports",
            );
            println!(
                "would PUT KEY it as KVN {DAP_KVN:02X} key {SD_KEY_ID:02X}, wrapped in the token under the SSD's DEK",
            );
        }
        if let Some((_, label)) = &cipher {
            println!(
                "would PUT KEY '{label}' as KVN {CIPHER_KVN:02X} key {SD_KEY_ID:02X}, wrapped in the token under the SSD's DEK",
            );
        }
        if let Some((_, label)) = &channel {
            println!(
                "would derive the card's ENC, MAC, DEK in the token from '{label}' ({channel_scheme}) and PUT KEY \
                 them as key set {SSD_CHANNEL_KVN:02X}, wrapped under the SSD's DEK, replacing its transport key set"
            );
        }
        println!("would check the KCVs the card confirms against the token's; no key leaves the token in clear");
        records::print_dry_ledger(a.ledger.as_deref(), "delivery");
        return Ok(());
    }
    let mut records = Records::open(a.ledger.as_deref(), Some(&uri), &a.token.pin_source)?;
    let mut t = connect(&a.card)?;
    let run = "signer sd put-keys";
    let (kdd, kvn, put, channel_set) = records.guard(run, |records| {
        a.token.with_session(&uri, |session| {
        let dap_master = dap
            .as_ref()
            .map(|((_, label), scheme)| {
                session
                    .find_secret_key(label)
                    .map(|k| (label.as_str(), k, *scheme))
            })
            .transpose()?;
        let cipher_key = cipher
            .as_ref()
            .map(|(_, label)| session.find_secret_key(label).map(|k| (label.as_str(), k)))
            .transpose()?;
        let channel_master = channel
            .as_ref()
            .map(|(_, label)| session.find_secret_key(label).map(|k| (label.as_str(), k)))
            .transpose()?;
        let (mut ch, iu, keys) = signer::sd::open_sd_channel_for(
            t.as_mut(),
            session,
            &sd_aid,
            channel_master.map(|(_, k)| (k, channel_scheme)),
        )?;
        let statics = keys.statics();
        // Refuse, before any key is sent, what the card would refuse half-way (6A80).
        let held = signer::sd::held_key_versions(&mut ch)?;
        let replaced = |kvn: u8, what: &str| -> Result<u8, Error> {
            match (held.contains(&kvn), a.replace) {
                (false, _) => Ok(0),
                (true, true) => Ok(kvn),
                (true, false) => Err(Error::Usage(format!(
                    "security domain {aid} already holds KVN {kvn:02X} ({what}); nothing was put. \
                     Rerun with --replace to replace it"
                ))),
            }
        };
        let dap_replace = dap_master
            .map(|_| replaced(DAP_KVN, "a DAP key"))
            .transpose()?;
        let cipher_replace = cipher_key
            .map(|_| replaced(CIPHER_KVN, "a load-file cipher key"))
            .transpose()?;
        if channel_master.is_some() && !keys.is_per_card() && held.contains(&SSD_CHANNEL_KVN) {
            return Err(Error::Usage(format!(
                "security domain {aid} already holds key set {SSD_CHANNEL_KVN:02X} but answers with key set \
                 {:02X}; nothing was put",
                iu.kvn
            )));
        }
        // The new key set is derived and checked first, so that a refused set follows no key already put.
        let new_channel = match channel_master {
            Some((_, master)) if !keys.is_per_card() => {
                let new = derive_card_keys(
                    session,
                    master,
                    channel_scheme,
                    &iu.kdd,
                    SecretKeyType::Aes128,
                    Purpose::PutKey,
                )?;
                if !a.allow_same_channel_keys {
                    gp::refuse_same_channel_keys(
                        session,
                        &statics,
                        &new,
                        &format!(
                            "security domain {aid}: key set {SSD_CHANNEL_KVN:02X} replacing {:02X}",
                            iu.kvn
                        ),
                    )?;
                }
                Some(new)
            }
            _ => None,
        };
        let mut put = Vec::new();
        let mut common = Vec::new();
        if let Some((label, master, scheme)) = dap_master {
            let dap_key = signer::sd::derive_sd_dap_key(session, master, scheme, &iu.kdd)?;
            let kcv = signer::sd::put_sd_key(
                &mut ch,
                session,
                statics.dek,
                dap_key.handle(),
                dap_replace.unwrap_or(0),
                DAP_KVN,
            )?;
            put.push((
                DAP_KVN,
                format!("DAP key for this card from '{label}' ({scheme})"),
                kcv,
                dap_replace.unwrap_or(0) != 0,
            ));
            common.extend(token_key_output(session, master, label));
        }
        if let Some((label, key)) = cipher_key {
            let kcv = signer::sd::put_sd_key(
                &mut ch,
                session,
                statics.dek,
                key,
                cipher_replace.unwrap_or(0),
                CIPHER_KVN,
            )?;
            put.push((
                CIPHER_KVN,
                format!("load-file cipher key '{label}'"),
                kcv,
                cipher_replace.unwrap_or(0) != 0,
            ));
            common.extend(token_key_output(session, key, label));
        }
        // The key set goes last: it is wrapped under the DEK this channel opened with, which it replaces.
        let mut channel_set = None;
        if let Some((label, master)) = channel_master {
            if let Some(new) = &new_channel {
                let kcvs = gp::put_key_set(
                    &mut ch,
                    session,
                    &statics,
                    new,
                    (iu.kvn, SSD_CHANNEL_KVN),
                    a.allow_same_channel_keys,
                )?;
                channel_set = Some((label, Some(kcvs)));
            } else {
                channel_set = Some((label, None));
            }
            common.extend(token_key_output(session, master, label));
        }
        common.push(records::kdd_output(&iu.kdd));
        let mut kvns: Vec<String> = put.iter().map(|(k, ..)| format!("{k:02X}")).collect();
        if let Some((_, Some(_))) = &channel_set {
            kvns.push(format!(
                "key set {SSD_CHANNEL_KVN:02X} replacing {:02X}",
                iu.kvn
            ));
        }
        if !kvns.is_empty() {
            records.record(
                EntryKind::Delivery,
                run,
                &format!("security domain {aid} keys {}", kvns.join(",")),
                &[],
                &common,
                &[],
            )?;
        }
        Ok((iu.kdd, iu.kvn, put, channel_set))
        })
    })?;
    println!(
        "card {}: security domain {aid}, SCP03 with its key set {kvn:02X}",
        hex::encode_upper(kdd)
    );
    for (kvn, what, kcv, was_replaced) in put {
        println!(
            "  KVN {kvn:02X} key {SD_KEY_ID:02X}  {what}, KCV {} (AES-ECB(01*16) GPC B.6), {}confirmed by the card",
            hex::encode_upper(kcv),
            if was_replaced { "replaced, " } else { "" }
        );
    }
    match channel_set {
        Some((label, Some(kcvs))) => {
            println!(
                "  key set {kvn:02X} replaced by {SSD_CHANNEL_KVN:02X} from '{label}' ({channel_scheme}), confirmed by the card"
            );
            for (name, kcv) in ["ENC", "MAC", "DEK"].iter().zip(kcvs) {
                println!(
                    "    {name} KCV {} (AES-ECB(01*16) GPC B.6)",
                    hex::encode_upper(kcv)
                );
            }
        }
        Some((label, None)) => println!(
            "  key set {SSD_CHANNEL_KVN:02X} from '{label}' ({channel_scheme}) already in place (the channel opened with it)"
        ),
        None => {}
    }
    Ok(())
}
