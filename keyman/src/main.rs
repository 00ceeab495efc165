//! The `keyman` command line: key ceremonies, key inventory and ledger checks.

use clap::{Parser, Subcommand};
use keyman::ceremony::{self, Ceremony, RunOptions};
use keyman::hsm::{capabilities, format_inventory, Hsm, TokenUri};
use keyman::ledger::Sha256Hash;
use keyman::pin::{PinSource, PinSources};
use keyman::prompt::{AnswerSource, Prompter, Scripted, Terminal};
use keyman::Error;
use std::path::PathBuf;
use std::process::ExitCode;

/// Key ceremonies on PKCS#11 tokens, recorded in a tamper-evident ledger.
///
/// Tokens are named by label or RFC 7512 URI, never by slot number. PINs come from a no-echo prompt or,
/// for unattended runs, from --pin-source env:NAME or file:PATH; never from an argument or a script.
#[derive(Parser, Debug)]
#[command(name = "keyman", version, about, long_about = None)]
struct Cli {
    /// Print every action that would be taken, and take none (no token is opened).
    #[arg(long, global = true)]
    dry_run: bool,
    /// PKCS#11 module (default: from the URI, $PKCS11_MODULE, or SoftHSM2).
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
    /// Ceremony scripts: run, check, print the paper form.
    Ceremony {
        #[command(subcommand)]
        command: CeremonyCommand,
    },
    /// Key inventory of a token.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// What a token can do, found by probing it.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Ceremony ledgers.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
}

#[derive(Subcommand, Debug)]
enum CeremonyCommand {
    /// Check a script and its tokens, then run it, recording every step in a new ledger.
    Run {
        /// The ceremony script (RON).
        script: PathBuf,
        /// The new ledger file (never overwritten).
        #[arg(long, value_name = "FILE")]
        ledger: PathBuf,
        /// Where token PINs come from: env:NAME or file:PATH for every token, NAME=SOURCE for the token
        /// the script names NAME (repeatable; default: a no-echo prompt).
        #[arg(long, value_name = "SOURCE")]
        pin_source: Vec<String>,
        /// Answer every question from a script instead of people, for rehearsals and CI: file:PATH
        /// (owner-only) or env:NAME, lines of `id = value`. The ledger marks the run as scripted.
        #[arg(long, value_name = "SOURCE")]
        answers: Option<AnswerSource>,
        /// With --answers: the directory that receives secrets meant for one person's eyes (exported
        /// components, PIN shares), one owner-only file each.
        #[arg(long, value_name = "DIR", requires = "answers")]
        reveal_to: Option<PathBuf>,
    },
    /// Check a script without touching any token, and print its plan.
    Check {
        /// The ceremony script (RON).
        script: PathBuf,
    },
    /// Print the paper checklist for the room: steps, KCV blanks, signature lines.
    Form {
        /// The ceremony script (RON).
        script: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// List every key object of a token: label, ID, type, length, KCVs with their method, usages and
    /// the sensitive / never-extractable / local flags.
    List {
        /// The token: a label or an RFC 7512 URI.
        token: String,
        /// Where the PIN comes from: env:NAME or file:PATH (default: a no-echo prompt).
        #[arg(long, value_name = "SOURCE", default_value = "prompt")]
        pin_source: String,
    },
}

#[derive(Subcommand, Debug)]
enum TokenCommand {
    /// Per feature of the project (derivation schemes, secure channels, DAPs, ciphered LFDB, KEK
    /// exchange, components): whether this token can do it and with which mechanisms, asked of the
    /// token mechanism by mechanism (C_GetMechanismInfo). No login is needed.
    Capabilities {
        /// The token: a label or an RFC 7512 URI.
        token: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
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
            // One line: the error types never carry newlines of their own, but a token's or the
            // operating system's text might.
            let text = e.to_string().replace(['\n', '\r'], " ");
            eprintln!("keyman: error: {text}");
            ExitCode::FAILURE
        }
    }
}

fn script_hash(path: &std::path::Path) -> Result<String, Error> {
    Ok(Sha256Hash::of_file(path)?.to_string())
}

fn run(cli: Cli) -> Result<(), Error> {
    keyman::hsm::configure_module(cli.module.as_deref(), cli.module_init.as_deref())?;
    match cli.command {
        Command::Ceremony {
            command: CeremonyCommand::Check { script },
        } => {
            let c = Ceremony::load(&script)?;
            for line in c.plan() {
                println!("{line}");
            }
            println!("{}: OK", script.display());
            Ok(())
        }
        Command::Ceremony {
            command: CeremonyCommand::Form { script },
        } => {
            let c = Ceremony::load(&script)?;
            print!(
                "{}",
                ceremony::paper_form(&c, &script.display().to_string(), &script_hash(&script)?)
            );
            Ok(())
        }
        Command::Ceremony {
            command:
                CeremonyCommand::Run {
                    script,
                    ledger,
                    pin_source,
                    answers,
                    reveal_to,
                },
        } => {
            let c = Ceremony::load(&script)?;
            let pins = PinSources::from_args(&pin_source)?;
            if cli.dry_run {
                println!("dry run: nothing will be created and no token will be opened");
                println!("script: {}", script.display());
                for line in c.plan() {
                    println!("{line}");
                }
                for t in &c.tokens {
                    if let ceremony::PinPolicy::Quorum {
                        threshold,
                        officers,
                    } = &t.pin
                    {
                        println!(
                            "PIN shares for token '{}' ({threshold} of these, typed without echo):",
                            t.name
                        );
                        for o in officers {
                            println!("  {}", ceremony::answer_id::pin_share(&t.name, o));
                        }
                    }
                }
                let questions = c.questions();
                if !questions.is_empty() {
                    println!("questions (answer ids for --answers):");
                    for (id, secret) in questions {
                        println!(
                            "  {id}{}",
                            if secret {
                                " (secret, typed without echo)"
                            } else {
                                ""
                            }
                        );
                    }
                }
                println!(
                    "would record every step in a new ledger {}, and undo what the run made if a step fails",
                    ledger.display()
                );
                return Ok(());
            }
            let mut prompter: Box<dyn Prompter> = match &answers {
                Some(source) => Box::new(Scripted::load(source, reveal_to.as_deref())?),
                None => Box::new(Terminal),
            };
            println!("ceremony '{}': {}", c.name, c.purpose);
            let mut out = |line: &str| println!("{line}");
            let report = ceremony::run(
                &c,
                RunOptions {
                    script_path: &script,
                    ledger_path: &ledger,
                    pins: &pins,
                    module: cli.module.as_deref(),
                    prompter: prompter.as_mut(),
                    out: &mut out,
                },
            )?;
            println!(
                "ceremony '{}' complete: {} key(s) made; ledger {} ({} entries)",
                c.name,
                report.keys.len(),
                ledger.display(),
                report.entries
            );
            println!("ledger fingerprint {}", report.fingerprint_hex);
            println!("read aloud         {}", report.fingerprint_words.join(" "));
            Ok(())
        }
        Command::Keys {
            command: KeysCommand::List { token, pin_source },
        } => {
            let uri = TokenUri::parse(&token)?;
            if cli.dry_run {
                println!("dry run: would log in to token {uri} and list its key objects");
                return Ok(());
            }
            // Parsed here rather than by clap, whose error would repeat the value (perhaps a PIN).
            let pin_source: PinSource = pin_source.parse()?;
            let hsm = Hsm::for_uri(&uri, cli.module.as_deref())?;
            let session = hsm.open(&uri, &pin_source)?;
            let items = session.inventory()?;
            print!(
                "{}",
                format_inventory(session.label(), session.serial(), &items)
            );
            Ok(())
        }
        Command::Token {
            command: TokenCommand::Capabilities { token, json },
        } => {
            let uri = TokenUri::parse(&token)?;
            if cli.dry_run {
                println!("dry run: would ask token {uri} about each mechanism the project's features need");
                return Ok(());
            }
            let hsm = Hsm::for_uri(&uri, cli.module.as_deref())?;
            let (slot, label, _) = hsm.find_token(&uri)?;
            let verdicts = hsm.capabilities(slot)?;
            let module = hsm.module_path().display().to_string();
            if json {
                println!(
                    "{}",
                    capabilities::capabilities_json(&label, &module, &verdicts)
                );
            } else {
                print!(
                    "{}",
                    capabilities::format_capabilities(&label, &module, &verdicts)
                );
            }
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
