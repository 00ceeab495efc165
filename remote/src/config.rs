//! The admin server's configuration file (RON), parsed strictly: unknown fields are errors, relative
//! paths are taken from the file's directory, and every check is made before the server starts.

use crate::error::Error;
use gp_core::diversify::Scheme;
use keyman::pin::PinSource;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// `admin-server serve --config FILE.ron`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address and port to listen on, e.g. `"0.0.0.0:8443"`.
    pub listen: String,
    /// TLS for agents.
    pub tls: TlsConfig,
    /// The database: a SQLite file (created when missing), or a PostgreSQL server as a
    /// `postgres://USER@HOST:PORT/DB` URL (several instances share one; keep any password out of the
    /// URL with a `~/.pgpass` file).
    pub database: PathBuf,
    /// How long a card this instance claimed stays its own without a step of its session (seconds,
    /// 1 to 3600): after this, another instance finishes a card whose instance died.
    #[serde(default = "default_lease_seconds")]
    pub lease_seconds: u64,
    /// How often (seconds, at least 1) a serving instance writes the ledger records whose database note
    /// was lost (a card marked done, its record not yet confirmed); it also does so when it starts.
    #[serde(default = "default_catch_up_seconds")]
    pub catch_up_seconds: u64,
    /// The issuer's master key in the HSM: `pkcs11:token=LABEL;object=KEY-LABEL`.
    pub issuer_master: String,
    /// Key diversification scheme of the issuer's per-card keys: `emv`, `visa2`, `aes` or `kdf3`.
    #[serde(default = "default_scheme")]
    pub scheme: String,
    /// The PKCS#11 module (default: from the URI, $PKCS11_MODULE, or SoftHSM2).
    #[serde(default)]
    pub module: Option<PathBuf>,
    /// The module's initialisation string for `C_Initialize` (NSS softokn needs one; see docs/hsm.md),
    /// else `$PKCS11_MODULE_INIT`.
    #[serde(default)]
    pub module_init: Option<String>,
    /// Where the token PIN comes from: `env:NAME` or `file:PATH` (a server is never prompted).
    pub pin_source: String,
    /// The ledger deliveries are appended to (keyman's format), if any: an existing ledger made with
    /// `keyman ledger init --token` in the issuer master's token, which holds its anchor.
    #[serde(default)]
    pub ledger: Option<PathBuf>,
    /// The path agents POST to first.
    #[serde(default = "default_admin_path")]
    pub admin_path: String,
    /// The operations listener (`/metrics`, `/status`), if any: `Some((listen: "127.0.0.1:9464"))`.
    #[serde(default)]
    pub ops: Option<crate::ops::OpsConfig>,
}

fn default_scheme() -> String {
    "emv".into()
}

fn default_catch_up_seconds() -> u64 {
    crate::engine::CATCH_UP_EVERY.as_secs()
}

fn default_lease_seconds() -> u64 {
    60
}

fn default_admin_path() -> String {
    "/admin".into()
}

/// How agents reach the server.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate TLS 1.2/1.3 for device agents: the server's chain and key (PEM files).
    #[serde(default)]
    pub certificate: Option<CertificateConfig>,
    /// PSK-TLS 1.2 (SCP81 suites) for agents keyed like cards: identity and key file per agent.
    #[serde(default)]
    pub psk: Vec<PskEntry>,
    /// Plain HTTP, for tests and demos: refused unless the listen address is a loopback address, and
    /// only when neither certificate nor PSK is configured.
    #[serde(default)]
    pub plain_http_on_loopback: bool,
}

/// The server's certificate.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// PEM certificate chain, leaf first.
    pub chain: PathBuf,
    /// PEM private key (readable by the server's account only).
    pub key: PathBuf,
}

/// One pre-shared key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PskEntry {
    /// The PSK identity the agent sends.
    pub identity: String,
    /// A file holding the key as hex on one line, readable by its owner only.
    pub key_file: PathBuf,
}

/// The configuration, checked, with paths resolved.
#[derive(Debug)]
pub struct Checked {
    /// The parsed file, paths made absolute.
    pub config: ServerConfig,
    /// The listen address.
    pub listen: SocketAddr,
    /// The diversification scheme.
    pub scheme: Scheme,
    /// The PIN source.
    pub pin_source: PinSource,
    /// The operations listener's address, when configured.
    pub ops: Option<SocketAddr>,
}

impl ServerConfig {
    /// The lease of a claimed card ([`ServerConfig::lease_seconds`]).
    pub fn lease(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.lease_seconds)
    }

    /// Reads and checks `path`.
    pub fn read(path: &Path) -> Result<Checked, Error> {
        let cfg_err = |reason: String| Error::Config {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| cfg_err(e.to_string()))?;
        if text.len() > 1 << 20 {
            return Err(cfg_err("larger than 1 MiB".into()));
        }
        let mut config: ServerConfig = ron::from_str(&text).map_err(|e| cfg_err(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if !crate::db::is_postgres_url(&config.database.to_string_lossy()) {
            abs(&mut config.database);
        }
        if !(1..=3600).contains(&config.lease_seconds) {
            return Err(cfg_err(format!(
                "lease_seconds {} is not between 1 and 3600",
                config.lease_seconds
            )));
        }
        if let Some(l) = config.ledger.as_mut() {
            abs(l);
        }
        if let Some(c) = config.tls.certificate.as_mut() {
            abs(&mut c.chain);
            abs(&mut c.key);
        }
        for p in &mut config.tls.psk {
            abs(&mut p.key_file);
        }
        let listen: SocketAddr = config
            .listen
            .parse()
            .map_err(|_| cfg_err(format!("listen '{}' is not ADDRESS:PORT", config.listen)))?;
        let scheme: Scheme = config.scheme.parse().map_err(|_| {
            cfg_err(format!(
                "scheme '{}': use emv, visa2, aes or kdf3",
                config.scheme
            ))
        })?;
        let pin_source: PinSource = config
            .pin_source
            .parse()
            .map_err(|e: keyman::Error| cfg_err(format!("pin_source: {e}")))?;
        if pin_source == PinSource::Prompt {
            return Err(cfg_err(
                "pin_source: a server cannot be prompted; use env:NAME or file:PATH".into(),
            ));
        }
        let tls = &config.tls;
        let secured = tls.certificate.is_some() || !tls.psk.is_empty();
        if tls.plain_http_on_loopback && secured {
            return Err(cfg_err(
                "tls: plain_http_on_loopback excludes certificate and psk".into(),
            ));
        }
        if !secured && !tls.plain_http_on_loopback {
            return Err(cfg_err(
                "tls: configure a certificate, PSKs, or (tests only) plain_http_on_loopback".into(),
            ));
        }
        if tls.plain_http_on_loopback && !listen.ip().is_loopback() {
            return Err(cfg_err(format!(
                "plain HTTP listens on loopback only, not {listen}"
            )));
        }
        if !config.admin_path.starts_with('/') || config.admin_path.len() > 128 {
            return Err(cfg_err("admin_path must start with '/'".into()));
        }
        let ops = config
            .ops
            .as_ref()
            .map(|o| o.check(listen))
            .transpose()
            .map_err(cfg_err)?;
        Ok(Checked {
            config,
            listen,
            scheme,
            pin_source,
            ops,
        })
    }
}
