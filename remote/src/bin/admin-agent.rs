//! `admin-agent`: relays an admin server's scripts to the card in a reader (or a simulated card).

use clap::Parser;
use remote::agent::AgentConfig;
use remote::tls::{self, ClientTls};
use remote::Error;
use signer::transport::{connect, CardRef};
use std::path::PathBuf;
use std::time::Duration;

/// Ask the admin server for work for this card, run its scripts on the card, and return the results.
#[derive(Parser, Debug)]
#[command(name = "admin-agent", version)]
struct Cli {
    /// The admin URI: https://HOST:PORT/admin (http:// only to a loopback address).
    #[arg(long)]
    server: String,
    /// The card: pcsc:READER-NAME or sim:IMAGE-PATH.
    #[arg(long)]
    card: CardRef,
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
    let server = cli
        .server
        .parse()
        .map_err(|_| Error::Usage(format!("--server '{}' is not a URI", cli.server)))?;
    remote::protocol::check_agent_id(&cli.from)?;
    let tls = match (&cli.psk_identity, &cli.psk_file, &cli.ca_cert) {
        (Some(id), Some(file), None) => tls::client_psk(id, file)?,
        (None, None, Some(ca)) => tls::client_certificate(ca)?,
        (None, None, None) => ClientTls::Plain,
        _ => return Err(Error::Usage(
            "give --psk-identity with --psk-file, or --ca-cert, or neither for http:// on loopback"
                .into(),
        )),
    };
    let cfg = AgentConfig {
        server,
        tls,
        from: cli.from,
        retries: cli.retries,
        backoff: Duration::from_millis(cli.backoff_ms),
    };
    cfg.check()?;
    let mut card = connect(&cli.card)?;
    let s = cfg.run(card.as_mut())?;
    Ok(format!(
        "done: {} script(s), {} APDU(s), {} resumed request(s)",
        s.scripts, s.apdus, s.resumes
    ))
}
