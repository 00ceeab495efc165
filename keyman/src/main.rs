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
    /// Check a script and its tokens, then run it, recording every step in a new ledger that this run
    /// starts (anchor it next with `keyman ledger anchor`).
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
        /// The script's name of the token that anchors the new ledger: its head (entry count and last
        /// hash) is kept there when the run ends, so a cut, deleted or replaced ledger shows at `keyman
        /// ledger verify --token`. Without it, anchor the ledger next with `keyman ledger anchor`.
        #[arg(long, value_name = "NAME")]
        anchor_token: Option<String>,
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

/// The token that anchors a ledger (see `keyman ledger init`).
#[derive(clap::Args, Debug)]
struct AnchorToken {
    /// The token holding the ledger's anchor: a label or an RFC 7512 URI.
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    /// Where the token's PIN comes from: env:NAME or file:PATH (default: a no-echo prompt).
    #[arg(long, value_name = "SOURCE", default_value = "prompt")]
    pin_source: String,
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
    /// Create a new, empty ledger and its anchor in a token: the explicit start of a ledger that
    /// `signer` appends to. No tool creates a ledger implicitly.
    ///
    /// The anchor is a private data object in the token holding the ledger's head (entry count and
    /// last hash); every append moves it, and `keyman ledger verify --token` compares the file with
    /// it, so a cut, deleted or replaced ledger is caught by whoever holds the token.
    Init {
        /// The new ledger file (never overwritten).
        file: PathBuf,
        #[command(flatten)]
        anchor: AnchorToken,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Anchor an existing ledger that has no anchor yet (the one a ceremony run has just started) in a
    /// token, at its current head.
    Anchor {
        /// The ledger file.
        file: PathBuf,
        #[command(flatten)]
        anchor: AnchorToken,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Recompute a ledger's hash chain, naming the first entry that does not fit, and compare its head
    /// with the anchor in the token.
    Verify {
        /// The ledger file.
        file: PathBuf,
        #[command(flatten)]
        anchor: AnchorToken,
        /// Check the chain alone, without a token: a cut at an entry boundary, a deleted or a replaced
        /// ledger is then not detected (compare the fingerprint with the paper form).
        #[arg(long, conflicts_with = "token")]
        unanchored: bool,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// A ledger's head as the ledger commands print it, in text or as JSON.
fn print_head(
    file: &std::path::Path,
    what: &str,
    head: keyman::ledger::Head,
    token: Option<&str>,
    json: bool,
) {
    let words = head.hash.words();
    if json {
        let value = serde_json::json!({
            "ledger": file.display().to_string(),
            "result": what,
            "entries": head.entries,
            "fingerprint_hex": head.hash.to_string(),
            "fingerprint_words": words,
            "anchor_token": token,
        });
        println!("{value}");
        return;
    }
    println!("{}: {} entries, {what}", file.display(), head.entries);
    println!("fingerprint {}", head.hash);
    println!("read aloud  {}", words.join(" "));
    match token {
        Some(t) => println!("anchor      token '{t}' holds this head"),
        None => println!(
            "anchor      not checked (--unanchored): compare the fingerprint with the paper form"
        ),
    }
}

/// Opens the token named by `anchor` for the ledger commands.
fn with_anchor_token<T>(
    anchor: &AnchorToken,
    module: Option<&std::path::Path>,
    f: impl FnOnce(&keyman::hsm::TokenSession<'_>) -> Result<T, Error>,
) -> Result<T, Error> {
    let token = anchor.token.as_deref().ok_or_else(|| {
        Error::Script(
            "name the token that anchors the ledger with --token (or pass --unanchored to verify)"
                .into(),
        )
    })?;
    let uri = TokenUri::parse(token)?;
    // Parsed here rather than by clap, whose error would repeat the value (perhaps a PIN).
    let pin_source: PinSource = anchor.pin_source.parse()?;
    let hsm = Hsm::for_uri(&uri, module)?;
    let session = hsm.open(&uri, &pin_source)?;
    f(&session)
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
                    anchor_token,
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
                if let Some(name) = &anchor_token {
                    println!("would anchor the ledger's head in token '{name}' when the run ends");
                }
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
                    anchor_in: anchor_token.as_deref(),
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
            match &anchor_token {
                Some(name) => println!(
                    "this run started the new ledger {}, anchored in token '{name}'",
                    ledger.display()
                ),
                None => println!(
                    "this run started the new ledger {}; anchor it before anything else appends: \
                     keyman ledger anchor {} --token TOKEN",
                    ledger.display(),
                    ledger.display()
                ),
            }
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
        Command::Ledger { command } => ledger_command(command, cli.dry_run, cli.module.as_deref()),
    }
}

fn ledger_command(
    command: LedgerCommand,
    dry_run: bool,
    module: Option<&std::path::Path>,
) -> Result<(), Error> {
    use keyman::ledger::{self, anchor, Head, Ledger, LedgerError};
    match command {
        LedgerCommand::Init {
            file,
            anchor: a,
            json,
        } => {
            let label = anchor::anchor_label(&file)?;
            if dry_run {
                println!(
                    "dry run: would create the empty ledger {} and its anchor '{label}' in token {}",
                    file.display(),
                    a.token.as_deref().unwrap_or("(none named)")
                );
                return Ok(());
            }
            if file.exists() {
                return Err(LedgerError::AlreadyExists { path: file }.into());
            }
            let token = with_anchor_token(&a, module, |s| {
                // Checked before the file is made, so a refusal leaves nothing behind.
                s.refuse_existing_ledger_anchor(&label)?;
                let ledger = Ledger::create(&file)?;
                if let Err(e) = s.create_ledger_anchor(&label, ledger.head_state()) {
                    drop(ledger);
                    let _ = std::fs::remove_file(&file);
                    return Err(e);
                }
                Ok(s.label().to_string())
            })?;
            print_head(
                &file,
                "new ledger, anchored",
                Head::EMPTY,
                Some(&token),
                json,
            );
            Ok(())
        }
        LedgerCommand::Anchor {
            file,
            anchor: a,
            json,
        } => {
            let label = anchor::anchor_label(&file)?;
            if dry_run {
                println!(
                    "dry run: would verify {} and anchor its head as '{label}' in token {}",
                    file.display(),
                    a.token.as_deref().unwrap_or("(none named)")
                );
                return Ok(());
            }
            let report = ledger::verify(&file)?;
            let head = Head::from(&report);
            let token = with_anchor_token(&a, module, |s| {
                s.create_ledger_anchor(&label, head)?;
                Ok(s.label().to_string())
            })?;
            print_head(
                &file,
                "chain intact, now anchored",
                head,
                Some(&token),
                json,
            );
            Ok(())
        }
        LedgerCommand::Verify {
            file,
            anchor: a,
            unanchored,
            json,
        } => {
            if dry_run {
                match (&a.token, unanchored) {
                    (Some(t), false) => println!(
                        "dry run: would verify {} and compare its head with its anchor in token {t}",
                        file.display()
                    ),
                    _ => println!(
                        "dry run: would verify the chain of {} (no token)",
                        file.display()
                    ),
                }
                return Ok(());
            }
            if unanchored {
                let report = ledger::verify(&file)?;
                print_head(&file, "chain intact", Head::from(&report), None, json);
                return Ok(());
            }
            let label = anchor::anchor_label(&file)?;
            let found = if file.exists() {
                Some(Head::from(&ledger::verify(&file)?))
            } else {
                None
            };
            let (token, anchored) = with_anchor_token(&a, module, |s| {
                Ok((s.label().to_string(), s.ledger_anchor_for(&label, found)?))
            })?;
            anchor::check(&file, &token, found, anchored)?;
            let head = found.unwrap_or(Head::EMPTY);
            print_head(&file, "chain intact", head, Some(&token), json);
            Ok(())
        }
    }
}
