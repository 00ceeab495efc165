//! The `keyman` command line: key ceremonies, key inventory and ledger checks.

use clap::{Parser, Subcommand};
use keyman::ceremony::{self, Ceremony, RunOptions};
use keyman::pin::PinSource;
use keyman::Error;
use std::path::PathBuf;
use std::process::ExitCode;

/// Key ceremonies on PKCS#11 tokens, recorded in a tamper-evident ledger.
#[derive(Parser, Debug)]
#[command(name = "keyman", version, about)]
struct Cli {
    /// Print every action that would be taken, and take none.
    #[arg(long, global = true)]
    dry_run: bool,
    /// PKCS#11 module (default: from the URI, $PKCS11_MODULE, or SoftHSM2).
    #[arg(long, global = true)]
    module: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Ceremony scripts.
    Ceremony {
        #[command(subcommand)]
        command: CeremonyCommand,
    },
    /// Ceremony ledgers.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
}

#[derive(Subcommand, Debug)]
enum CeremonyCommand {
    /// Check a script and run it on its token, recording every step in a new ledger.
    Run {
        /// The ceremony script (RON).
        script: PathBuf,
        /// The new ledger file (never overwritten).
        #[arg(long)]
        ledger: PathBuf,
        /// Where the token PIN comes from: env:NAME or file:PATH (default: a no-echo prompt).
        #[arg(long, default_value = "prompt")]
        pin_source: PinSource,
    },
    /// Check a script without touching any token.
    Check {
        /// The ceremony script (RON).
        script: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum LedgerCommand {
    /// Recompute a ledger's hash chain; name the first entry that does not fit.
    Verify {
        /// The ledger file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyman: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print_plan(c: &Ceremony) {
    println!("ceremony '{}': {}", c.name, c.purpose);
    println!("token: {}", c.token);
    for r in &c.roles {
        println!("role: {} ({:?})", r.name, r.kind);
    }
    for (n, s) in c.steps.iter().enumerate() {
        println!("step {}: {}", n + 1, s.describe(&c.token));
    }
}

fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Ceremony {
            command: CeremonyCommand::Check { script },
        } => {
            let c = Ceremony::load(&script)?;
            print_plan(&c);
            println!("{}: OK", script.display());
            Ok(())
        }
        Command::Ceremony {
            command:
                CeremonyCommand::Run {
                    script,
                    ledger,
                    pin_source,
                },
        } => {
            let c = Ceremony::load(&script)?;
            if cli.dry_run {
                println!("dry run: nothing will be created");
                print_plan(&c);
                println!(
                    "would record every step in a new ledger {}",
                    ledger.display()
                );
                return Ok(());
            }
            println!("ceremony '{}': {}", c.name, c.purpose);
            let mut show = |k: &ceremony::MadeKey| {
                println!(
                    "step {}: generated {} '{}' (id {}) — KCV {}",
                    k.step,
                    k.key_type.name(),
                    k.label,
                    hex::encode(&k.id),
                    k.kcv
                );
            };
            let made = ceremony::run(
                &c,
                RunOptions {
                    script_path: &script,
                    ledger_path: &ledger,
                    pin: &pin_source,
                    module: cli.module.as_deref(),
                    on_key: &mut show,
                },
            )?;
            println!(
                "ceremony '{}' complete: {} key(s); ledger {}",
                c.name,
                made.len(),
                ledger.display()
            );
            Ok(())
        }
        Command::Ledger {
            command: LedgerCommand::Verify { file },
        } => {
            let report = keyman::ledger::verify(&file)?;
            println!(
                "{}: {} entries, chain intact",
                file.display(),
                report.entries
            );
            println!("fingerprint {}", report.fingerprint_hex);
            println!("read aloud  {}", report.fingerprint_words.join(" "));
            Ok(())
        }
    }
}
