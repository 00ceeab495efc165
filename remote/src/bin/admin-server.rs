//! `admin-server`: the GlobalPlatform Amendment B admin server and its campaign commands.

use clap::{Parser, Subcommand};
use remote::config::ServerConfig;
use remote::db::{CampaignState, Db};
use remote::engine::Engine;
use remote::logging::LogFormat;
use remote::server::Server;
use remote::{campaign, report, Error};
use std::path::PathBuf;
use std::sync::Arc;

/// Remote post-issuance delivery: serve admin agents, and manage campaigns in the server's database.
#[derive(Parser, Debug)]
#[command(name = "admin-server", version)]
struct Cli {
    /// Log lines on standard error: `text` for people, `json` (one object per line) for log pipelines.
    #[arg(long, value_enum, global = true, default_value_t = LogFormat::Text, hide_possible_values = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve agents: TLS, database, HSM and ledger as the configuration file names them.
    Serve {
        /// The configuration file (RON).
        #[arg(long)]
        config: PathBuf,
    },
    /// Add, list, show, pause, resume or cancel campaigns.
    Campaign {
        /// The configuration file (RON); only its database is used.
        #[arg(long)]
        config: PathBuf,
        #[command(subcommand)]
        action: CampaignAction,
    },
}

#[derive(Subcommand, Debug)]
enum CampaignAction {
    /// Add a campaign: a package made by `signer package` and the cards it is for.
    Add {
        /// The campaign's name.
        name: String,
        /// The package file.
        #[arg(long)]
        package: PathBuf,
        /// The card list (identity,kdd per line), as `signer` reads it.
        #[arg(long)]
        cards: PathBuf,
        /// The security domain the load file goes to (AID, hex); the card domain when left out.
        #[arg(long)]
        sd: Option<String>,
        /// Privileges of the installed applications, hex (1 or 3 bytes) [default: 00].
        #[arg(long)]
        privileges: Option<String>,
        /// Install parameters of the installed applications, hex BER-TLV starting with C9 [default: C900].
        #[arg(long)]
        install_params: Option<String>,
    },
    /// List campaigns with their counts per card state.
    List,
    /// Show every card of a campaign with its state, attempts and reason.
    Show {
        /// The campaign's name.
        name: String,
    },
    /// Every card of a campaign: outcome, when its row last changed, attempts, reason.
    Report {
        /// The campaign's name.
        name: String,
        /// `csv` (RFC 4180, with a header line) or `json`.
        #[arg(long, value_enum, default_value_t = report::Format::Csv, hide_possible_values = true)]
        format: report::Format,
    },
    /// Stop starting new cards (cards in flight are finished).
    Pause {
        /// The campaign's name.
        name: String,
    },
    /// Start new cards again.
    Resume {
        /// The campaign's name.
        name: String,
    },
    /// Stop the campaign for good (cards in flight are finished).
    Cancel {
        /// The campaign's name.
        name: String,
    },
}

fn main() {
    let cli = Cli::parse();
    remote::logging::init(cli.log_format);
    if let Err(e) = run(cli) {
        eprintln!("admin-server: error: {e}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Serve { config } => serve(&config),
        Command::Campaign { config, action } => {
            let checked = ServerConfig::read(&config)?;
            let mut db = Db::open(&checked.config.database)?;
            let out = match action {
                CampaignAction::Add {
                    name,
                    package,
                    cards,
                    sd,
                    privileges,
                    install_params,
                } => campaign::add(
                    &mut db,
                    &name,
                    &package,
                    &cards,
                    sd.as_deref(),
                    privileges.as_deref(),
                    install_params.as_deref(),
                )?,
                CampaignAction::List => campaign::list(&db)?,
                CampaignAction::Show { name } => campaign::show(&db, &name)?,
                CampaignAction::Report { name, format } => {
                    // The report is data: written as it is read, exactly, not trimmed.
                    return report::write(&db, &name, format, &mut std::io::stdout().lock());
                }
                CampaignAction::Pause { name } => {
                    campaign::set_state(&mut db, &name, CampaignState::Paused)?
                }
                CampaignAction::Resume { name } => {
                    campaign::set_state(&mut db, &name, CampaignState::Active)?
                }
                CampaignAction::Cancel { name } => {
                    campaign::set_state(&mut db, &name, CampaignState::Cancelled)?
                }
            };
            println!("{}", out.trim_end());
            Ok(())
        }
    }
}

fn serve(path: &std::path::Path) -> Result<(), Error> {
    let checked = ServerConfig::read(path)?;
    let cfg = &checked.config;
    let tls = remote::tls::acceptor(&cfg.tls)?;
    let mut db = Db::open(&cfg.database)?;
    let ledger = cfg.ledger.as_ref().map(|l| l.display().to_string());
    db.register_instance(
        &remote::engine::instance_id(),
        &remote::engine::instance_name(checked.listen),
        ledger.as_deref(),
        cfg.lease(),
    )?;
    // The configured module (and its initialisation string) is the process's module for every token the
    // server opens, the ledger's anchor included.
    keyman::hsm::configure_module(cfg.module.as_deref(), cfg.module_init.as_deref())
        .map_err(signer::Error::from)?;
    let master = keyman::hsm::TokenUri::parse(&cfg.issuer_master).map_err(signer::Error::from)?;
    let records =
        signer::records::Records::open(cfg.ledger.as_deref(), Some(&master), &checked.pin_source)?
            .report_heads_with(|path, head| {
                tracing::info!(
                    ledger = %path.display(),
                    entries = head.entries,
                    head = %head.hash,
                    "ledger head moved (anchored in the issuer's token)"
                );
            });
    let hsm = remote::hsm::HsmWorker::start(
        &cfg.issuer_master,
        cfg.module.clone(),
        checked.pin_source.clone(),
        checked.scheme,
    )?;
    let engine = Engine::new(db, hsm, records, cfg.admin_path.clone())
        .catch_up_every(std::time::Duration::from_secs(cfg.catch_up_seconds));
    let instance = remote::ops::Instance::new(checked.listen.to_string())?;
    let ops = Arc::new(remote::ops::Ops::new(instance, Db::open(&cfg.database)?));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Io {
            what: "starting the runtime".into(),
            source: e,
        })?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(checked.listen)
            .await
            .map_err(|e| Error::Io {
                what: format!("listening on {}", checked.listen),
                source: e,
            })?;
        let local = listener.local_addr().map_err(|e| Error::Io {
            what: "local address".into(),
            source: e,
        })?;
        let kind = match (&tls, cfg.tls.certificate.is_some(), cfg.tls.psk.len()) {
            (None, _, _) => "plain HTTP (loopback only)".to_string(),
            (Some(_), cert, psk) => format!(
                "TLS{}{}",
                if cert { ", certificate" } else { "" },
                if psk > 0 {
                    format!(", {psk} PSK identities")
                } else {
                    String::new()
                }
            ),
        };
        let ops_local = match checked.ops {
            Some(addr) => {
                let l = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| Error::Io {
                        what: format!("listening on {addr} (ops)"),
                        source: e,
                    })?;
                let a = l.local_addr().map_err(|e| Error::Io {
                    what: "local address (ops)".into(),
                    source: e,
                })?;
                tokio::spawn(ops.clone().serve(l));
                format!(", operations on http://{a}/status and /metrics")
            }
            None => String::new(),
        };
        tracing::info!(instance = %ops.instance().id, agents = %local, "serving");
        println!(
            "admin-server listening on {local} ({kind}), admin URI {}{ops_local}",
            cfg.admin_path
        );
        use std::io::Write;
        let _ = std::io::stdout().flush();
        Server::new(engine, tls).with_ops(ops).run(listener).await
    })
}
