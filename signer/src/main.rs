//! The `signer` command line: packages, per-card keys and delivery to cards.

use clap::{Args, Parser, Subcommand};
use gp_core::diversify::Scheme;
use keyman::hsm::{Hsm, TokenUri};
use keyman::pin::PinSource;
use signer::cap::LfdbPolicy;
use signer::gp::{self, LoadRequest};
use signer::package::Package;
use signer::transport::{connect, CardRef};
use signer::Error;
use std::path::PathBuf;
use std::process::ExitCode;

/// Per-card keys in the HSM, signed load-file packages, and secure delivery to GlobalPlatform cards.
#[derive(Parser, Debug)]
#[command(name = "signer", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Turn a CAP file into a package: LFDB, its hash, and a manifest binding them.
    Package {
        /// The CAP file.
        input: PathBuf,
        /// Where to write the package (never overwritten).
        #[arg(long)]
        out: PathBuf,
        /// Whether the LFDB includes the Descriptor component.
        #[arg(long, default_value = "without-descriptor")]
        lfdb: LfdbPolicy,
        /// LFDB hash algorithm: sha1, sha256, sha384 or sha512.
        #[arg(long, default_value = "sha256")]
        hash: String,
    },
    /// Print a package's manifest.
    Inspect {
        /// The package.
        package: PathBuf,
    },
    /// Re-check a package offline: format, manifest fields and the LFDB hash.
    Verify {
        /// The package.
        package: PathBuf,
    },
    /// Replace a fab-fresh card's transport keys with per-card issuer keys and move it to SECURED.
    Personalise {
        #[command(flatten)]
        card: CardArgs,
    },
    /// Load and install a package on a card after issuance, through the card domain.
    Deploy {
        /// The package.
        package: PathBuf,
        #[command(flatten)]
        card: CardArgs,
    },
    /// Card management.
    Card {
        #[command(subcommand)]
        command: CardCommand,
    },
}

#[derive(Subcommand, Debug)]
enum CardCommand {
    /// Print the card's registry as GET STATUS returns it.
    List {
        #[command(flatten)]
        card: CardArgs,
    },
}

#[derive(Args, Debug)]
struct CardArgs {
    /// The card: sim:IMAGE-PATH or pcsc:READER-NAME.
    #[arg(long)]
    card: CardRef,
    /// The issuer's master key: pkcs11:token=LABEL;object=KEY-LABEL.
    #[arg(long)]
    master: String,
    /// Key diversification scheme: emv or visa2.
    #[arg(long, default_value = "emv")]
    scheme: Scheme,
    /// Where the token PIN comes from: env:NAME or file:PATH (default: a no-echo prompt).
    #[arg(long, default_value = "prompt")]
    pin_source: PinSource,
    /// PKCS#11 module (default: from the URI, $PKCS11_MODULE, or SoftHSM2).
    #[arg(long)]
    module: Option<PathBuf>,
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

fn with_master<T>(
    args: &CardArgs,
    f: impl FnOnce(&keyman::hsm::TokenSession<'_>, keyman::hsm::KeyHandle) -> Result<T, Error>,
) -> Result<T, Error> {
    let uri = TokenUri::parse(&args.master)?;
    let label = uri
        .object
        .clone()
        .ok_or_else(|| Error::Usage("--master must name the key with object=LABEL".into()))?;
    let hsm = Hsm::for_uri(&uri, args.module.as_deref())?;
    let session = hsm.open(&uri, &args.pin_source)?;
    let master = session.find_secret_key(&label)?;
    f(&session, master)
}

fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Package {
            input,
            out,
            lfdb,
            hash,
        } => {
            if out.exists() {
                return Err(Error::OutputExists(out));
            }
            let bytes = std::fs::read(&input).map_err(|source| Error::Io {
                path: input.clone(),
                source,
            })?;
            let pkg = Package::from_cap(&bytes, lfdb, &hash)?;
            pkg.write_new(&out)?;
            println!(
                "package {}: load file {} ({} bytes LFDB, {}), {} {}",
                out.display(),
                pkg.manifest.load_file_aid,
                pkg.manifest.lfdb_length,
                pkg.manifest.lfdb_policy,
                pkg.manifest.hash.to_uppercase(),
                pkg.manifest.lfdb_hash
            );
            Ok(())
        }
        Command::Inspect { package } => {
            let pkg = Package::read(&package)?;
            let m = &pkg.manifest;
            println!("format        {} v{}", pkg.format, pkg.version);
            println!("load file     {}", m.load_file_aid);
            for a in &m.applets {
                println!("applet        {a}");
            }
            println!("LFDB          {} bytes, {}", m.lfdb_length, m.lfdb_policy);
            println!("LFDB hash     {} {}", m.hash.to_uppercase(), m.lfdb_hash);
            println!("source        SHA256 {}", m.source_sha256);
            Ok(())
        }
        Command::Verify { package } => {
            let pkg = Package::read(&package)?;
            println!(
                "{}: OK (LFDB {} bytes, {} {})",
                package.display(),
                pkg.manifest.lfdb_length,
                pkg.manifest.hash.to_uppercase(),
                pkg.manifest.lfdb_hash
            );
            Ok(())
        }
        Command::Personalise { card } => {
            let mut t = connect(&card.card)?;
            let done = with_master(&card, |session, master| {
                gp::personalise(t.as_mut(), session, master, card.scheme)
            })?;
            println!("card KDD      {}", hex::encode_upper(done.kdd));
            println!(
                "issuer keys   KVN {:02X} derived in the token ({}), put with PUT KEY over SCP03",
                done.kvn, card.scheme
            );
            for (name, kcv) in ["ENC", "MAC", "DEK"].iter().zip(done.kcvs) {
                println!(
                    "  {name} KCV     {} (AES-ECB(01*16) GPC B.6)",
                    hex::encode_upper(kcv)
                );
            }
            println!("card state    SECURED");
            Ok(())
        }
        Command::Deploy { package, card } => {
            let pkg = Package::read(&package)?;
            let applets = pkg.applets()?;
            let req = LoadRequest {
                load_file_aid: pkg.load_file_aid()?,
                lfdb: pkg.lfdb_bytes()?,
                lfdb_hash: pkg.lfdb_hash()?,
                applets: applets.iter().map(|a| (a.clone(), a.clone())).collect(),
            };
            let mut t = connect(&card.card)?;
            with_master(&card, |session, master| {
                let (mut ch, kdd) =
                    gp::open_issuer_channel(t.as_mut(), session, master, card.scheme)?;
                println!(
                    "secure channel SCP03 to the card domain of card {} (C-MAC, C-DEC)",
                    hex::encode_upper(kdd)
                );
                gp::load_and_install(&mut ch, &req)?;
                println!(
                    "loaded        {} ({} bytes, {} {})",
                    pkg.manifest.load_file_aid,
                    req.lfdb.len(),
                    pkg.manifest.hash.to_uppercase(),
                    pkg.manifest.lfdb_hash
                );
                for a in &pkg.manifest.applets {
                    println!("installed     {a} (selectable)");
                }
                Ok(())
            })
        }
        Command::Card {
            command: CardCommand::List { card },
        } => {
            let mut t = connect(&card.card)?;
            with_master(&card, |session, master| {
                let (mut ch, _) =
                    gp::open_issuer_channel(t.as_mut(), session, master, card.scheme)?;
                for (p1, e) in gp::registry(&mut ch)? {
                    println!("{}", gp::describe_entry(p1, &e));
                }
                Ok(())
            })
        }
    }
}
