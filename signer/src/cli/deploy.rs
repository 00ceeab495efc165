//! `signer deploy` through the card domain (the delegated deploy is `signer::token::deploy`).

use super::{token_key_output, with_master, CardArgs};
use keyman::hsm::TokenUri;
use keyman::ledger::{EntryKind, Output};
use signer::gp::{self, LoadOptions, LoadRequest};
use signer::package::Package;
use signer::records::{self, Records};
use signer::token::parse_aid;
use signer::transport::connect;
use signer::Error;
use std::path::Path;

pub fn deploy(
    path: &Path,
    card: &CardArgs,
    sd: Option<&str>,
    ledger: Option<&Path>,
    dry: bool,
) -> Result<(), Error> {
    let (pkg, bytes) = Package::read_with_bytes(path)?;
    let sd_aid = sd.map(|s| parse_aid(s, "--sd")).transpose()?;
    let applets = pkg.applets()?;
    let ciphered = match &pkg.manifest.cipher {
        Some(c) => Some((
            hex::decode(&c.icv).map_err(|_| Error::Usage("manifest.cipher.icv".into()))?,
            pkg.ciphered_bytes()?,
        )),
        None => None,
    };
    let req = LoadRequest {
        load_file_aid: pkg.load_file_aid()?,
        lfdb: if ciphered.is_some() {
            Vec::new()
        } else {
            pkg.lfdb_bytes()?
        },
        lfdb_hash: pkg.lfdb_hash()?,
        applets: applets.iter().map(|a| (a.clone(), a.clone())).collect(),
    };
    if dry {
        println!(
            "would connect to {} and open SCP03 to the card domain with keys derived from {}",
            card.card, card.master
        );
        println!(
            "would INSTALL [for load] {} to security domain {}",
            pkg.manifest.load_file_aid,
            sd_aid.as_deref().map_or(
                "A000000151000000 (card domain)".to_string(),
                hex::encode_upper
            )
        );
        println!(
            "would LOAD {} with the DAPs made for the card's KDD ({} DAPs in the package)",
            if ciphered.is_some() {
                "the ciphered LFDB (D3/D4)"
            } else {
                "the LFDB (C4)"
            },
            pkg.manifest.daps.len()
        );
        for a in &pkg.manifest.applets {
            println!("would INSTALL [for install and make selectable] {a}");
        }
        return Ok(());
    }
    let mut records = Records::open(
        ledger,
        Some(&TokenUri::parse(&card.master)?),
        &card.token.pin_source,
    )?;
    let mut t = connect(&card.card)?;
    let opts = records.guard("signer deploy", |records| {
        with_master(card, |session, master, label| {
            let (mut ch, kdd) = gp::open_issuer_channel(t.as_mut(), session, master, card.scheme)?;
            println!(
                "secure channel SCP03 to the card domain of card {} (C-MAC, C-DEC)",
                hex::encode_upper(kdd)
            );
            println!("session keys  {}", ch.session_key_path().describe());
            let opts = LoadOptions {
                sd_aid: sd_aid.clone(),
                dap_blocks: pkg.dap_blocks_for(&kdd)?,
                ciphered: ciphered.clone(),
            };
            gp::load_and_install_with(&mut ch, &req, &opts)?;
            let identity = format!("KDD:{}", hex::encode_upper(kdd));
            let mut common = vec![records::package_output(&bytes)];
            common.extend(token_key_output(session, master, label));
            common.push(records::card_output(&identity));
            let daps: Vec<Output> = opts
                .dap_blocks
                .iter()
                .map(|(sd, sig)| records::dap_output(sd, Some(&identity), sig))
                .collect();
            records.record(
                EntryKind::Delivery,
                "signer deploy",
                &format!("load {}", pkg.manifest.load_file_aid),
                &[],
                &common,
                &daps,
            )?;
            Ok(opts)
        })
    })?;
    println!(
        "loaded        {} ({} bytes, {} {}){}{}",
        pkg.manifest.load_file_aid,
        pkg.manifest.lfdb_length,
        pkg.manifest.hash.to_uppercase(),
        pkg.manifest.lfdb_hash,
        if opts.ciphered.is_some() {
            ", ciphered"
        } else {
            ""
        },
        match opts.dap_blocks.len() {
            0 => String::new(),
            n => format!(", {n} DAP block(s)"),
        }
    );
    for a in &pkg.manifest.applets {
        println!("installed     {a} (selectable)");
    }
    Ok(())
}
