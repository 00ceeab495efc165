//! `admin-agent`: relays an admin server's scripts to the card in a reader (or a simulated card).

use clap::{Args, Parser, Subcommand};
use remote::agent::AgentConfig;
use remote::tls::{self, ClientTls};
use remote::Error;
use signer::transport::{connect, CardRef};
use std::path::PathBuf;
use std::time::Duration;

/// Ask the admin server for work for this card, run its scripts on the card, and return the results.
#[derive(Parser, Debug)]
#[command(
    name = "admin-agent",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The admin URI: https://HOST:PORT/admin (http:// only to a loopback address).
    #[arg(long, required = true)]
    server: Option<String>,
    /// The card: pcsc:READER-NAME or sim:IMAGE-PATH.
    #[arg(long, required = true)]
    card: Option<CardRef>,
    #[command(flatten)]
    conn: Connection,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Simulate a fleet: many devices, each with its own simulated card and connection, against one
    /// or more server instances, with injected latency and faults (seeded); prints a summary.
    Swarm(Swarm),
}

#[derive(Args, Debug)]
struct Swarm {
    /// An admin URI; repeat it for several server instances (a card that calls again moves to the
    /// next).
    #[arg(long, required = true)]
    server: Vec<String>,
    /// The cards: a directory of simulated card images (`*.img`, made by `card-sim new` and
    /// personalised, or left fab-fresh).
    #[arg(long)]
    images: PathBuf,
    /// Use only the first N images (all by default).
    #[arg(long)]
    cards: Option<usize>,
    /// Cards served at once.
    #[arg(long, default_value_t = 10)]
    concurrency: usize,
    /// Seed of every random choice (the same seed injects the same faults).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Chance (0 to 1) that a request's connection drops, before the request or after its answer.
    #[arg(long, default_value_t = 0.0)]
    drop_rate: f64,
    /// Chance (0 to 1) that a session's card loses power at a random APDU.
    #[arg(long, default_value_t = 0.0)]
    power_cut_rate: f64,
    /// Milliseconds added to every APDU.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Sessions a card tries before it is given up.
    #[arg(long, default_value_t = 20)]
    attempts: u32,
    /// Milliseconds before a card whose session failed calls again (times the failures, at most 10×).
    #[arg(long, default_value_t = 500)]
    call_again_ms: u64,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    conn: Connection,
}

#[derive(Args, Debug)]
struct Connection {
    /// PSK-TLS 1.2 (SCP81 suites): the identity to send.
    #[arg(long, requires = "psk_file", conflicts_with = "ca_cert")]
    psk_identity: Option<String>,
    /// PSK-TLS: a file holding the key as hex on one line, readable by its owner only.
    #[arg(long, requires = "psk_identity")]
    psk_file: Option<PathBuf>,
    /// Certificate TLS: the CA certificates (PEM) the server's certificate must chain to.
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    /// The agent's id, sent as X-Admin-From.
    #[arg(long, default_value = "admin-agent")]
    from: String,
    /// How many times a request is repeated after a dropped connection.
    #[arg(long, default_value_t = 5)]
    retries: u32,
    /// The first delay before a repeat, in milliseconds (doubled each time).
    #[arg(long, default_value_t = 500)]
    backoff_ms: u64,
}

impl Connection {
    fn tls(&self) -> Result<ClientTls, Error> {
        match (&self.psk_identity, &self.psk_file, &self.ca_cert) {
            (Some(id), Some(file), None) => tls::client_psk(id, file),
            (None, None, Some(ca)) => tls::client_certificate(ca),
            (None, None, None) => Ok(ClientTls::Plain),
            _ => Err(Error::Usage(
                "give --psk-identity with --psk-file, or --ca-cert, or neither for http:// on loopback"
                    .into(),
            )),
        }
    }

    fn agent(&self, server: &str, tls: ClientTls) -> Result<AgentConfig, Error> {
        let server = server
            .parse()
            .map_err(|_| Error::Usage(format!("--server '{server}' is not a URI")))?;
        remote::protocol::check_agent_id(&self.from)?;
        let cfg = AgentConfig {
            server,
            tls,
            from: self.from.clone(),
            retries: self.retries,
            backoff: Duration::from_millis(self.backoff_ms),
        };
        cfg.check()?;
        Ok(cfg)
    }
}

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ADMIN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("admin-agent: error: {e}");
            std::process::exit(1);
        }
    }
}

fn run(cli: Cli) -> Result<String, Error> {
    if let Some(Command::Swarm(sw)) = cli.command {
        return swarm(sw);
    }
    let (Some(server), Some(card)) = (cli.server, cli.card) else {
        return Err(Error::Usage("give --server and --card".into()));
    };
    let cfg = cli.conn.agent(&server, cli.conn.tls()?)?;
    let mut card = connect(&card)?;
    let s = cfg.run(card.as_mut())?;
    Ok(format!(
        "done: {} script(s), {} APDU(s), {} resumed request(s)",
        s.scripts, s.apdus, s.resumes
    ))
}

fn swarm(sw: Swarm) -> Result<String, Error> {
    let rate = |what: &str, r: f64| {
        if (0.0..=1.0).contains(&r) {
            Ok(r)
        } else {
            Err(Error::Usage(format!("--{what} {r} is not between 0 and 1")))
        }
    };
    let tls = sw.conn.tls()?;
    let agents = sw
        .server
        .iter()
        .map(|s| sw.conn.agent(s, tls.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut images: Vec<PathBuf> = std::fs::read_dir(&sw.images)
        .map_err(|e| Error::Io {
            what: sw.images.display().to_string(),
            source: e,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "img"))
        .collect();
    images.sort();
    if let Some(n) = sw.cards {
        if n > images.len() {
            return Err(Error::Usage(format!(
                "--cards {n}: only {} image(s) in {}",
                images.len(),
                sw.images.display()
            )));
        }
        images.truncate(n);
    }
    let cfg = remote::swarm::SwarmConfig {
        agents,
        images,
        concurrency: sw.concurrency.max(1),
        seed: sw.seed,
        drop_rate: rate("drop-rate", sw.drop_rate)?,
        power_cut_rate: rate("power-cut-rate", sw.power_cut_rate)?,
        apdu_latency: Duration::from_millis(sw.latency_ms),
        attempts: sw.attempts.max(1),
        call_again: Duration::from_millis(sw.call_again_ms),
    };
    let report = remote::swarm::run(&cfg)?;
    Ok(if sw.json {
        report.to_json()
    } else {
        report.to_text()
    })
}
