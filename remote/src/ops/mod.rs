//! The operations side of the admin server: Prometheus metrics ([`metrics`]), the status page
//! ([`status`]) and the recent sessions and errors behind it ([`recent`]), served on their own listener
//! (plain HTTP, loopback by default), never on the agents' port.
//!
//! Only `GET` (and `HEAD`) of `/metrics` and `/status` are answered; everything is read-only. The
//! database is read through its own connection, so a slow page never holds the engine's.

pub mod metrics;
pub mod recent;
pub mod status;

use crate::db::Db;
use crate::error::Error;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use recent::Recent;
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;

/// Default address of the operations listener.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";

/// The `ops: Some((…))` section of the server's configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsConfig {
    /// Address of the operations listener (`/metrics`, `/status`) [default: `127.0.0.1:9464`].
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The endpoints have no authentication: an address other than loopback is refused unless this
    /// says the network in front of it restricts who can connect.
    #[serde(default)]
    pub off_loopback_behind_firewall: bool,
}

fn default_listen() -> String {
    DEFAULT_LISTEN.into()
}

impl OpsConfig {
    /// The listener's address, checked against the agents' address `agents`.
    pub fn check(&self, agents: SocketAddr) -> Result<SocketAddr, String> {
        let addr: SocketAddr = self
            .listen
            .parse()
            .map_err(|_| format!("ops.listen '{}' is not ADDRESS:PORT", self.listen))?;
        if addr.port() == agents.port() && addr.port() != 0 {
            return Err(format!(
                "ops.listen {addr} uses the agents' port: the operations endpoints need their own"
            ));
        }
        if !addr.ip().is_loopback() && !self.off_loopback_behind_firewall {
            return Err(format!(
                "ops.listen {addr} is not loopback: the operations endpoints have no authentication; \
                 set off_loopback_behind_firewall: true only when the network restricts who connects"
            ));
        }
        Ok(addr)
    }
}

/// This server process, as the status page names it.
#[derive(Clone, Debug)]
pub struct Instance {
    /// A random id chosen at start (16 hex digits), also logged in the start line.
    pub id: String,
    /// The host name.
    pub host: String,
    /// The process id.
    pub pid: u32,
    /// The server's version.
    pub version: &'static str,
    /// When the process started serving.
    pub started: SystemTime,
    /// Where agents connect.
    pub agents: String,
}

impl Instance {
    /// This process, serving agents at `agents`.
    pub fn new(agents: String) -> Result<Instance, Error> {
        let mut id = [0u8; 8];
        openssl::rand::rand_bytes(&mut id)?;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().chars().take(253).collect())
            .unwrap_or_else(|_| "unknown".into());
        Ok(Instance {
            id: hex::encode(id),
            host,
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION"),
            started: SystemTime::now(),
            agents,
        })
    }

    #[cfg(test)]
    pub(crate) fn for_test() -> Instance {
        Instance {
            id: "0011223344556677".into(),
            host: "host<1>".into(),
            pid: 1,
            version: "0",
            started: SystemTime::now(),
            agents: "127.0.0.1:1".into(),
        }
    }
}

/// The operations state shared by the agents' listener (which reports) and the operations listener
/// (which shows).
pub struct Ops {
    instance: Instance,
    db: Mutex<Db>,
    recent: Mutex<Recent>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Time allowed for a request's headers on the operations listener.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest an operations connection may live.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

type Body = Full<Bytes>;

fn answer(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert("cache-control", HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    r
}

impl Ops {
    /// The operations state of `instance`, reading campaigns through `db` (a connection of its own).
    pub fn new(instance: Instance, db: Db) -> Ops {
        Ops {
            instance,
            db: Mutex::new(db),
            recent: Mutex::new(Recent::default()),
        }
    }

    /// This instance.
    pub fn instance(&self) -> &Instance {
        &self.instance
    }

    /// Records one answer given to an agent.
    pub fn observe(&self, a: &recent::Answer<'_>) {
        lock(&self.recent).observe(a);
    }

    /// The status page's data (blocking: reads the database).
    pub fn status(&self) -> status::Status {
        let m = metrics::metrics();
        let read = {
            let db = lock(&self.db);
            m.time_db("campaigns", || db.campaigns()).and_then(|c| {
                m.time_db("failure_counts", || db.failure_counts())
                    .map(|f| (c, f))
            })
        };
        let (campaigns, failures, db_error) = match read {
            Ok((c, f)) => (c, f, None),
            Err(e) => {
                tracing::warn!("status page: {e}");
                (Vec::new(), Vec::new(), Some(e.to_string()))
            }
        };
        let instances = {
            let db = lock(&self.db);
            m.time_db("instances", || db.instances())
        }
        .unwrap_or_else(|e| {
            tracing::warn!("status page: instances: {e}");
            Vec::new()
        });
        let recent = {
            let mut r = lock(&self.recent);
            r.expire();
            (r.in_progress(), r.ended(), r.errors())
        };
        status::Status {
            instance: self.instance.clone(),
            now: SystemTime::now(),
            campaigns,
            failures,
            instances,
            db_error,
            in_progress: recent.0,
            ended: recent.1,
            errors: recent.2,
        }
    }

    /// The metrics text (blocking: reads the campaign counts from the database first).
    pub fn metrics_text(&self) -> String {
        let m = metrics::metrics();
        lock(&self.recent).expire();
        let campaigns = {
            let db = lock(&self.db);
            m.time_db("campaigns", || db.campaigns())
        };
        match campaigns {
            Ok(list) => {
                for c in list {
                    for (state, n) in ["pending", "in_flight", "done", "failed"]
                        .into_iter()
                        .zip(c.counts)
                    {
                        m.campaign_cards
                            .get_or_create(&metrics::CampaignLabel {
                                campaign: c.name.clone(),
                                state,
                            })
                            .set(i64::try_from(n).unwrap_or(i64::MAX));
                    }
                }
            }
            Err(e) => tracing::warn!("metrics: campaign counts: {e}"),
        }
        m.encode()
    }

    /// Serves `/metrics` and `/status` on `listener` until the process ends.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> Result<(), Error> {
        loop {
            let (tcp, _) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("ops accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let this = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let this = this.clone();
                    async move { Ok::<_, std::convert::Infallible>(this.handle(&req).await) }
                });
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .max_buf_size(16 * 1024);
                let conn = builder.serve_connection(TokioIo::new(tcp), service);
                let _ = tokio::time::timeout(CONNECTION_LIFETIME, conn).await;
            });
        }
    }

    async fn handle<B>(self: Arc<Self>, req: &hyper::Request<B>) -> Response<Body> {
        let text = "text/plain; charset=utf-8";
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return answer(
                StatusCode::METHOD_NOT_ALLOWED,
                text,
                "only GET is allowed\n".into(),
            );
        }
        let page = match req.uri().path() {
            "/metrics" => Page::Metrics,
            "/status" | "/" => Page::Status,
            _ => {
                return answer(
                    StatusCode::NOT_FOUND,
                    text,
                    "try /status or /metrics\n".into(),
                )
            }
        };
        let this = self.clone();
        let made = tokio::task::spawn_blocking(move || match page {
            Page::Metrics => answer(StatusCode::OK, metrics::CONTENT_TYPE, this.metrics_text()),
            Page::Status => answer(
                StatusCode::OK,
                "text/html; charset=utf-8",
                status::render(&this.status()),
            ),
        })
        .await;
        made.unwrap_or_else(|_| {
            answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                text,
                "internal error\n".into(),
            )
        })
    }
}

#[derive(Clone, Copy)]
enum Page {
    Metrics,
    Status,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_ops_listener_is_loopback_and_not_the_agents_port() {
        let agents: SocketAddr = "0.0.0.0:8443".parse().unwrap();
        let cfg = |listen: &str, off: bool| OpsConfig {
            listen: listen.into(),
            off_loopback_behind_firewall: off,
        };
        assert_eq!(
            cfg(DEFAULT_LISTEN, false).check(agents).unwrap(),
            DEFAULT_LISTEN.parse().unwrap()
        );
        assert!(cfg("127.0.0.1:8443", false)
            .check(agents)
            .unwrap_err()
            .contains("agents' port"));
        assert!(cfg("0.0.0.0:9464", false)
            .check(agents)
            .unwrap_err()
            .contains("no authentication"));
        assert!(cfg("0.0.0.0:9464", true).check(agents).is_ok());
        assert!(cfg("nowhere", false).check(agents).is_err());
    }
}
