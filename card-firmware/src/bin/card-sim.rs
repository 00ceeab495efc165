//! `card-sim`: make, inspect and serve simulated Postissue cards.
//!
//! `card-sim new --image PATH [--scp 02|03] [--key HEX] [--kdd HEX]` makes a card as from the
//! fab; `card-sim info --image PATH` prints its life cycle, KDD, key sets (KVN, type, KCV with
//! its method — never key bytes) and registry; `card-sim serve --image PATH --vpcd ADDR` plugs
//! the card into pcscd through vsmartcard's vpcd.

use std::path::PathBuf;
use std::process::ExitCode;

use card_firmware::sim::{FabProfile, FabScp, SimCard, DEFAULT_KEY};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "card-sim",
    version,
    about = "Simulated GlobalPlatform cards for Postissue"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make a new card image as the fab delivers it (OP_READY, one transport key set).
    New {
        /// Image file to create (never overwritten).
        #[arg(long)]
        image: PathBuf,
        /// Secure channel protocol: 03 (i=70, KVN 30, AES) or 02 (i=55, KVN 20, 3DES).
        #[arg(long, default_value = "03", value_parser = ["02", "03"])]
        scp: String,
        /// Transport key (16 bytes hex) for ENC, MAC and DEK; default 404142…4F.
        #[arg(long)]
        key: Option<String>,
        /// Key diversification data (10 bytes hex); default random.
        #[arg(long)]
        kdd: Option<String>,
    },
    /// Plug the card into pcscd through vsmartcard's vpcd driver (reconnects when pcscd
    /// restarts; power off and reset are power loss).
    Serve {
        /// Image file.
        #[arg(long)]
        image: PathBuf,
        /// vpcd address.
        #[arg(long, default_value = card_firmware::vpcd::DEFAULT_ADDR)]
        vpcd: String,
    },
    /// Print what the card holds (never key bytes).
    Info {
        /// Image file.
        #[arg(long)]
        image: PathBuf,
    },
}

fn parse_hex<const N: usize>(what: &str, s: &str) -> Result<[u8; N], String> {
    let s: String = s
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ':')
        .collect();
    if s.len() != N * 2 || !s.is_ascii() {
        return Err(format!("{what} must be {N} bytes of hex"));
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        let byte = s.get(i * 2..i * 2 + 2).unwrap_or("");
        *o = u8::from_str_radix(byte, 16).map_err(|_| format!("{what} is not hex"))?;
    }
    Ok(out)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::New {
            image,
            scp,
            key,
            kdd,
        } => {
            let profile = FabProfile {
                scp: if scp == "02" {
                    FabScp::Scp02
                } else {
                    FabScp::Scp03
                },
                key: match key {
                    Some(k) => parse_hex::<16>("--key", &k)?,
                    None => DEFAULT_KEY,
                },
                kdd: kdd.map(|k| parse_hex::<10>("--kdd", &k)).transpose()?,
            };
            let card = SimCard::create(&image, &profile).map_err(|e| e.to_string())?;
            let kdd = card.state().map(|s| hex(&s.kdd)).unwrap_or_default();
            println!("created {} (OP_READY, KDD {kdd})", image.display());
            Ok(())
        }
        Command::Serve { image, vpcd } => {
            let mut card = SimCard::open(&image).map_err(|e| e.to_string())?;
            eprintln!("card-sim: serving {} on vpcd {vpcd}", image.display());
            card_firmware::vpcd::serve(&mut card, &vpcd, &mut |line| eprintln!("card-sim: {line}"))
                .map_err(|e| e.to_string())
        }
        Command::Info { image } => {
            let card = SimCard::open(&image).map_err(|e| e.to_string())?;
            let state = card
                .state()
                .ok_or_else(|| "card image unreadable".to_string())?;
            println!("image:       {}", image.display());
            println!(
                "life cycle:  {} ({:02X})",
                state.life_cycle.name(),
                state.life_cycle.code()
            );
            println!("KDD:         {}", hex(&state.kdd));
            println!(
                "state:       {} bytes of {} per journal slot",
                state.to_bytes().len(),
                card.max_state_len().unwrap_or(0)
            );
            println!(
                "ISD:         A000000151000000, SCP{:02X} i={:02X}, failed authentications {}/{}, \
                 confirmation counter {}",
                state.isd.scp.scp,
                state.isd.scp.i,
                state.isd.failed_auth,
                state.isd.auth_limit,
                state.confirmation_counter
            );
            for set in &state.isd.sets {
                println!(
                    "key set:     KVN {:02X}, sequence counter {:06X}",
                    set.kvn, set.sequence_counter
                );
                for key in &set.keys {
                    let check = match key.kcv() {
                        Some((kcv, method)) => format!("KCV {} [{method}]", hex(&kcv)),
                        None => "public key, no KCV".to_string(),
                    };
                    println!(
                        "  key {:02X}:    type {:02X}, {} bytes, {check}",
                        key.id,
                        key.key_type.code(),
                        key.len(),
                    );
                }
            }
            for f in &state.registry.load_files {
                let version = f
                    .version
                    .map(|[a, b]| format!("{a}.{b}"))
                    .unwrap_or_else(|| "-".into());
                println!(
                    "load file:   {} LOADED, version {version}, SD {}, {} bytes",
                    f.aid, f.associated_sd, f.size
                );
                for m in &f.modules {
                    println!("  module:    {m}");
                }
            }
            for a in &state.registry.applications {
                println!(
                    "application: {} life cycle {:02X}, privileges {}, from {}/{}, SD {}",
                    a.aid,
                    a.life_cycle.code(),
                    hex(&a.privileges.0),
                    a.load_file,
                    a.module,
                    a.associated_sd
                );
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("card-sim: {e}");
            ExitCode::FAILURE
        }
    }
}
