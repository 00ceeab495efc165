//! `signer personalise` and `signer card`: issuer keys, registry, life cycle, key rotation, new SSDs.

use super::{record_card_delivery, with_master, CardArgs};
use clap::Subcommand;
use gp_core::diversify::Scheme;
use keyman::hsm::{SecretKeyType, TokenUri};
use signer::diversify::{derive_card_keys, Purpose};
use signer::gp::{self, CardStateChange};
use signer::records::{self, Records};
use signer::token::{key_uri, parse_aid, same_token};
use signer::transport::connect;
use signer::Error;
use std::path::{Path, PathBuf};

#[derive(Subcommand, Debug)]
pub enum CardCommand {
    /// Print the card's registry as GET STATUS returns it.
    List {
        #[command(flatten)]
        card: CardArgs,
    },
    /// Lock the card (SECURED → CARD_LOCKED).
    Lock {
        #[command(flatten)]
        card: CardArgs,
        /// Append a delivery record to this ledger.
        #[arg(long)]
        ledger: Option<PathBuf>,
    },
    /// Unlock the card (CARD_LOCKED → SECURED).
    Unlock {
        #[command(flatten)]
        card: CardArgs,
        /// Append a delivery record to this ledger.
        #[arg(long)]
        ledger: Option<PathBuf>,
    },
    /// Terminate the card (irreversible).
    Terminate {
        #[command(flatten)]
        card: CardArgs,
        /// Type the card's KDD (hex) to confirm; the command refuses without it.
        #[arg(long)]
        confirm_kdd: String,
        /// Append a delivery record to this ledger.
        #[arg(long)]
        ledger: Option<PathBuf>,
    },
    /// Create a vendor's security domain (SSD) through the card domain: INSTALL [for install and make
    /// selectable] from the card's security-domain module.
    CreateSd {
        #[command(flatten)]
        card: CardArgs,
        /// The new SSD's AID (hex, 5 to 16 bytes).
        #[arg(long)]
        sd: String,
        /// Comma-separated privileges besides Security Domain: dap-verification, mandated-dap-verification,
        /// ciphered-load-file-data-block, authorized-management, delegated-management, card-lock,
        /// card-terminate, trusted-path, global-service, cvm-management.
        #[arg(long, default_value = "dap-verification")]
        privileges: String,
        /// Secure channel protocol of the SSD's keys: 03 (i=70), 02 (i=55) or PP:II (default: the card
        /// domain's).
        #[arg(long)]
        scp: Option<String>,
        /// Append a delivery record to this ledger.
        #[arg(long)]
        ledger: Option<PathBuf>,
    },
    /// Rotate the card domain's keys: a new per-card key set from --new-master replaces the current one.
    PutKeys {
        #[command(flatten)]
        card: CardArgs,
        /// The new master (same token as --master): pkcs11:token=LABEL;object=KEY-LABEL.
        #[arg(long)]
        new_master: String,
        /// The new master's scheme (default: --scheme).
        #[arg(long)]
        new_scheme: Option<Scheme>,
        /// Key version number of the new key set.
        #[arg(long, default_value = "32", value_parser = parse_kvn)]
        new_kvn: u8,
        /// Put the new key set even when its ENC and MAC have the KCVs of the current keys (refused
        /// otherwise: the same channel keys under a replaced key set let recorded sessions replay).
        #[arg(long)]
        allow_same_channel_keys: bool,
        /// Append a delivery record to this ledger.
        #[arg(long)]
        ledger: Option<PathBuf>,
    },
}

pub fn personalise(
    card: &CardArgs,
    ledger: Option<&Path>,
    allow_same_channel_keys: bool,
    dry: bool,
) -> Result<(), Error> {
    if dry {
        println!("would connect to {}", card.card);
        println!("would open SCP03 with the card's transport keys (default key, imported as session objects)");
        println!(
            "would derive the card's ENC, MAC, DEK in the token from {} ({}), PUT KEY them as KVN {:02X}",
            card.master,
            card.scheme,
            gp::ISSUER_KVN
        );
        println!("would set the card INITIALIZED, then SECURED");
        return Ok(());
    }
    let mut records = Records::open(
        ledger,
        Some(&TokenUri::parse(&card.master)?),
        &card.token.pin_source,
    )?;
    let mut t = connect(&card.card)?;
    let run = "signer personalise";
    let done = records.guard(run, |records| {
        with_master(card, |session, master, label| {
            let done = gp::personalise(
                t.as_mut(),
                session,
                master,
                card.scheme,
                allow_same_channel_keys,
            )?;
            record_card_delivery(
                records,
                session,
                master,
                label,
                &done.kdd,
                run,
                "issuer keys put",
            )?;
            Ok(done)
        })
    })?;
    println!("card KDD      {}", hex::encode_upper(done.kdd));
    println!(
        "issuer keys   KVN {:02X} derived in the token ({}), put with PUT KEY over SCP{:02X}",
        done.kvn, card.scheme, done.scp
    );
    println!("session keys  {}", done.session_keys);
    if done.scp == gp_core::scp02::SCP_ID {
        for (name, kcv) in ["ENC", "MAC", "DEK"].iter().zip(&done.kcvs) {
            println!(
                "  {name} KCV     {} (3DES-ECB(00*8))",
                hex::encode_upper(kcv)
            );
        }
    } else {
        print_kcvs(&done.kcvs);
    }
    println!("card state    SECURED");
    Ok(())
}

pub fn card_command(command: CardCommand, dry: bool) -> Result<(), Error> {
    let (card, change, ledger, confirm) = match command {
        CardCommand::List { card } => {
            if dry {
                println!(
                    "would connect to {} and read the registry with GET STATUS",
                    card.card
                );
                return Ok(());
            }
            let mut t = connect(&card.card)?;
            return with_master(&card, |session, master, _| {
                let (mut ch, _) =
                    gp::open_issuer_channel(t.as_mut(), session, master, card.scheme)?;
                for (p1, e) in gp::registry(&mut ch)? {
                    println!("{}", gp::describe_entry(p1, &e));
                }
                Ok(())
            });
        }
        CardCommand::PutKeys {
            card,
            new_master,
            new_scheme,
            new_kvn,
            allow_same_channel_keys,
            ledger,
        } => {
            return put_keys(
                &card,
                &new_master,
                new_scheme,
                (new_kvn, allow_same_channel_keys),
                ledger.as_deref(),
                dry,
            )
        }
        CardCommand::CreateSd {
            card,
            sd,
            privileges,
            scp,
            ledger,
        } => {
            return create_sd(
                &card,
                &sd,
                &privileges,
                scp.as_deref(),
                ledger.as_deref(),
                dry,
            )
        }
        CardCommand::Lock { card, ledger } => (card, CardStateChange::Lock, ledger, None),
        CardCommand::Unlock { card, ledger } => (card, CardStateChange::Unlock, ledger, None),
        CardCommand::Terminate {
            card,
            confirm_kdd,
            ledger,
        } => (card, CardStateChange::Terminate, ledger, Some(confirm_kdd)),
    };
    if dry {
        println!(
            "would connect to {}, open SCP03 to the card domain and SET STATUS {:02X} ({})",
            card.card,
            change.code(),
            change.state_name()
        );
        return Ok(());
    }
    let mut records = Records::open(
        ledger.as_deref(),
        Some(&TokenUri::parse(&card.master)?),
        &card.token.pin_source,
    )?;
    let mut t = connect(&card.card)?;
    let run = format!("signer card {}", change.state_name().to_lowercase());
    let kdd = records.guard(&run, |records| {
        with_master(&card, |session, master, label| {
            let (mut ch, kdd) = gp::open_issuer_channel(t.as_mut(), session, master, card.scheme)?;
            if let Some(confirm) = &confirm {
                if !confirm.eq_ignore_ascii_case(&hex::encode(kdd)) {
                    return Err(Error::Usage(format!(
                        "--confirm-kdd {confirm} is not this card's KDD {}; nothing was changed",
                        hex::encode_upper(kdd)
                    )));
                }
            }
            gp::set_card_state(&mut ch, change)?;
            record_card_delivery(
                records,
                session,
                master,
                label,
                &kdd,
                &run,
                change.state_name(),
            )?;
            Ok(kdd)
        })
    })?;
    println!(
        "card {}     {}",
        hex::encode_upper(kdd),
        change.state_name()
    );
    Ok(())
}

pub fn put_keys(
    card: &CardArgs,
    new_master: &str,
    new_scheme: Option<Scheme>,
    (new_kvn, allow_same_channel_keys): (u8, bool),
    ledger: Option<&Path>,
    dry: bool,
) -> Result<(), Error> {
    let (uri, _) = key_uri(&card.master, "--master")?;
    let (new_uri, new_label) = key_uri(new_master, "--new-master")?;
    same_token(&uri, &new_uri, "--master and --new-master")?;
    let scheme = new_scheme.unwrap_or(card.scheme);
    if dry {
        println!(
            "would connect to {} and open SCP03 with keys derived from {}",
            card.card, card.master
        );
        println!(
            "would derive the new ENC, MAC, DEK from '{new_label}' ({scheme}) and PUT KEY them as KVN {new_kvn:02X}, \
             wrapped in the token under the card's current DEK, replacing the current key set"
        );
        return Ok(());
    }
    let mut records = Records::open(
        ledger,
        Some(&TokenUri::parse(&card.master)?),
        &card.token.pin_source,
    )?;
    let mut t = connect(&card.card)?;
    let run = "signer card put-keys";
    let (kdd, old, kcvs) = records.guard(run, |records| {
        with_master(card, |session, master, _| {
            let nm = session.find_secret_key(&new_label)?;
            signer::channel::select(t.as_mut(), &signer::channel::ISD_AID)?;
            let (hc, iu) = signer::channel::initialize_update(t.as_mut(), session, 0)?;
            let current = derive_card_keys(
                session,
                master,
                card.scheme,
                &iu.kdd,
                SecretKeyType::Aes128,
                Purpose::Channel,
            )?;
            let statics = signer::channel::StaticKeys {
                enc: current.enc.handle(),
                mac: current.mac.handle(),
                dek: current.dek.handle(),
            };
            let mut ch = signer::channel::SecureChannel::authenticate(
                t.as_mut(),
                session,
                statics,
                hc,
                &iu,
                gp_core::scp03::SecurityLevel::C_MAC_C_DEC,
            )?;
            let new = derive_card_keys(
                session,
                nm,
                scheme,
                &iu.kdd,
                SecretKeyType::Aes128,
                Purpose::PutKey,
            )?;
            let kcvs = gp::put_key_set(
                &mut ch,
                session,
                &statics,
                &new,
                (iu.kvn, new_kvn),
                allow_same_channel_keys,
            )?;
            record_card_delivery(
                records,
                session,
                nm,
                &new_label,
                &iu.kdd,
                run,
                &format!("key set {new_kvn:02X}"),
            )?;
            Ok((iu.kdd, iu.kvn, kcvs))
        })
    })?;
    println!(
        "card {}: key set {old:02X} replaced by {new_kvn:02X} from '{new_label}' ({scheme})",
        hex::encode_upper(kdd)
    );
    print_kcvs(&kcvs);
    Ok(())
}

pub fn create_sd(
    card: &CardArgs,
    sd: &str,
    privileges: &str,
    scp: Option<&str>,
    ledger: Option<&Path>,
    dry: bool,
) -> Result<(), Error> {
    let spec = signer::sd::SdSpec {
        aid: parse_aid(sd, "--sd")?,
        privileges: signer::sd::parse_privileges(privileges)?,
        scp: scp.map(signer::sd::parse_scp).transpose()?,
    };
    let aid = hex::encode_upper(&spec.aid);
    let names = signer::sd::privilege_names(&spec.privileges).join(", ");
    let protocol = spec.scp.map_or("the card domain's".to_string(), |(p, i)| {
        format!("SCP{p:02X} i={i:02X}")
    });
    if dry {
        println!(
            "would connect to {} and open SCP03 to the card domain with keys derived from {}",
            card.card, card.master
        );
        println!(
            "would INSTALL [for install and make selectable] security domain {aid} from {} module {}",
            hex::encode_upper(signer::sd::SD_LOAD_FILE_AID),
            hex::encode_upper(signer::sd::SD_MODULE_AID)
        );
        println!(
            "  privileges {} ({names}), install parameters {} (protocol {protocol})",
            hex::encode_upper(spec.privileges),
            hex::encode_upper(spec.install_parameters())
        );
        println!("would read the registry back and show the new security domain");
        records::print_dry_ledger(ledger, "delivery");
        return Ok(());
    }
    let mut records = Records::open(
        ledger,
        Some(&TokenUri::parse(&card.master)?),
        &card.token.pin_source,
    )?;
    let mut t = connect(&card.card)?;
    let run = "signer card create-sd";
    let (kdd, (p1, entry)) = records.guard(run, |records| {
        with_master(card, |session, master, label| {
            let (mut ch, kdd) = gp::open_issuer_channel(t.as_mut(), session, master, card.scheme)?;
            signer::sd::create_security_domain(&mut ch, &spec)?;
            let entry = gp::registry(&mut ch)?
                .into_iter()
                .find(|(p1, e)| *p1 == 0x40 && e.aid == spec.aid)
                .ok_or_else(|| {
                    Error::Card(format!(
                        "the card accepted the INSTALL but its registry does not list {aid}"
                    ))
                })?;
            record_card_delivery(
                records,
                session,
                master,
                label,
                &kdd,
                run,
                &format!("create security domain {aid}"),
            )?;
            Ok((kdd, entry))
        })
    })?;
    println!(
        "card {}: security domain {aid} created",
        hex::encode_upper(kdd)
    );
    println!(
        "  privileges  {} ({names}), protocol {protocol}",
        hex::encode_upper(spec.privileges)
    );
    println!("  registry    {}", gp::describe_entry(p1, &entry));
    println!(
        "  keys        its transport key set; the vendor puts its own with `signer sd put-keys`"
    );
    Ok(())
}

pub fn parse_kvn(s: &str) -> Result<u8, String> {
    let v = u8::from_str_radix(s, 16).map_err(|_| format!("'{s}' is not a hex byte"))?;
    if (1..=0x7F).contains(&v) {
        Ok(v)
    } else {
        Err(format!("key version {v:02X} is outside 01..7F"))
    }
}

/// Prints the KCVs of a key set (ENC, MAC, DEK) as the card confirmed them.
pub fn print_kcvs(kcvs: &[[u8; 3]; 3]) {
    for (name, kcv) in ["ENC", "MAC", "DEK"].iter().zip(kcvs) {
        println!(
            "  {name} KCV     {} (AES-ECB(01*16) GPC B.6)",
            hex::encode_upper(kcv)
        );
    }
}
