//! The `signer` command line: per-card keys, packages, delivery to cards, card life cycle and batches.

mod cli;

use clap::{Parser, Subcommand};
use cli::card::CardCommand;
use cli::keys::KeysCommand;
use cli::package::{PackageArgs, VerifyArgs};
use cli::sd::SdCommand;
use cli::CardArgs;
use signer::Error;
use std::path::PathBuf;
use std::process::ExitCode;

/// Per-card keys in the HSM, signed load-file packages, and secure delivery to GlobalPlatform cards.
#[derive(Parser, Debug)]
#[command(name = "signer", version, about)]
struct Cli {
    /// Print every action that would be taken, touch no token, card or file, and stop.
    #[arg(long, global = true)]
    dry_run: bool,
    /// PKCS#11 module for every token the command opens (default: from the URI, $PKCS11_MODULE, or
    /// SoftHSM2).
    #[arg(long, global = true, value_name = "PATH")]
    module: Option<PathBuf>,
    /// The module's initialisation string for C_Initialize, given to the --module module only (default:
    /// $PKCS11_MODULE_INIT). NSS softokn needs one: see docs/hsm.md.
    #[arg(long, global = true, value_name = "STRING")]
    module_init: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Turn a CAP or IJC file into a package: LFDB, hash, DAPs, optional ciphered LFDB, manifest.
    Package(PackageArgs),
    /// Print a package's manifest: LFDB hash, DAPs and cipher in hex.
    Inspect {
        /// The package.
        package: PathBuf,
    },
    /// Re-check a package offline: every part against the manifest, and DAPs and ciphertext with keys.
    Verify(VerifyArgs),
    /// Per-card keys derived inside the token.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Replace a fab-fresh card's transport keys with per-card issuer keys and move it to SECURED.
    Personalise {
        #[command(flatten)]
        card: CardArgs,
        /// Put the new key set even when its ENC and MAC have the KCVs of the current keys (refused
        /// otherwise: the same channel keys under a replaced key set let recorded sessions replay).
        #[arg(long)]
        allow_same_channel_keys: bool,
        /// Append a delivery record to this existing ledger (see `keyman ledger init`), anchored in the token.
        #[arg(long)]
        ledger: Option<PathBuf>,
    },
    /// Load and install a package on a card after issuance, through the card domain.
    Deploy {
        /// The package.
        package: PathBuf,
        #[command(flatten)]
        card: CardArgs,
        /// The security domain the load file goes to (the vendor's SSD); default the card domain.
        #[arg(long)]
        sd: Option<String>,
        /// Append a delivery record to this existing ledger (see `keyman ledger init`), anchored in the token.
        #[arg(long)]
        ledger: Option<PathBuf>,
        #[command(flatten)]
        delegated: signer::token::DelegatedArgs,
    },
    /// Card management: registry, life cycle, key rotation.
    Card {
        #[command(subcommand)]
        command: CardCommand,
    },
    /// A vendor's security domain (SSD), through the SSD's own secure channel.
    Sd {
        #[command(subcommand)]
        command: SdCommand,
    },
    /// Delegated management: tokens signed with the issuer's key, and the card keys that check them.
    Token {
        #[command(subcommand)]
        command: signer::token::TokenCommand,
    },
    /// Applications on a card, through their security domain.
    App {
        #[command(subcommand)]
        command: signer::perso::AppCommand,
    },
    /// Personalisation batch: PUT KEY payloads for every card of a card list, wrapped in the token.
    Batch(signer::batch::BatchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("signer: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), Error> {
    let dry = cli.dry_run;
    keyman::hsm::configure_module(cli.module.as_deref(), cli.module_init.as_deref())?;
    match cli.command {
        Command::Package(args) => cli::package::package(args, dry),
        Command::Inspect { package } => cli::package::inspect(&package),
        Command::Verify(args) => cli::package::verify(args),
        Command::Keys {
            command:
                KeysCommand::Derive {
                    master,
                    scheme,
                    kdd,
                    key_type,
                    token,
                },
        } => cli::keys::keys_derive(&master, scheme, &kdd, key_type.as_deref(), &token, dry),
        Command::Personalise {
            card,
            ledger,
            allow_same_channel_keys,
        } => cli::card::personalise(&card, ledger.as_deref(), allow_same_channel_keys, dry),
        Command::Deploy {
            package,
            card,
            sd,
            ledger,
            delegated,
        } => match (&delegated.tokens, &sd) {
            (Some(_), Some(sd)) => signer::token::deploy(
                &package,
                &card.card,
                &card.master,
                card.scheme,
                &card.token,
                sd,
                &delegated,
                ledger.as_deref(),
                dry,
            ),
            _ => cli::deploy::deploy(&package, &card, sd.as_deref(), ledger.as_deref(), dry),
        },
        Command::Token { command } => signer::token::run(command, dry),
        Command::App { command } => signer::perso::run(command, dry),
        Command::Card { command } => cli::card::card_command(command, dry),
        Command::Sd {
            command: SdCommand::PutKeys(args),
        } => cli::sd::sd_put_keys(&args, dry),
        Command::Batch(args) => signer::batch::run(&args, dry),
    }
}
