//! The admin agent a device runs: it holds no card key and relays blindly. It POSTs first with an empty
//! body, runs each command script on the card (stopping at the first error status, TS 102 226), POSTs
//! the response script to `X-Admin-Next-URI`, and ends when the server answers `204` without a next URI.
//! After a dropped connection it repeats its last request with `X-Admin-Resume: true`, a bounded number
//! of times with growing delays. It logs APDU headers and status words, never data.

use crate::error::Error;
use crate::protocol::{self, ScriptStatus};
use crate::tls::ClientTls;
use bytes::Bytes;
use gp_core::apdu::CommandApdu;
use gp_core::script::{
    continues_after, Coding, CommandScript, ResponseScript, ScriptResponse, MAX_SCRIPT_LEN,
};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use signer::transport::Transport;
use std::pin::Pin;
use std::time::Duration;

/// Time allowed to connect and finish the TLS handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Most requests in one session (an install takes three; an audit and a restart a few more): a server
/// that never ends the session cannot keep the agent forever.
pub const MAX_EXCHANGES: usize = 32;
/// Time allowed for one request and its whole answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// What the agent needs.
#[derive(Clone)]
pub struct AgentConfig {
    /// The admin URI (`https://host:port/admin`, or `http://127.0.0.1:port/admin` for tests).
    pub server: Uri,
    /// How the connection is secured.
    pub tls: ClientTls,
    /// `X-Admin-From`.
    pub from: String,
    /// How many times a request is repeated after a dropped connection.
    pub retries: u32,
    /// The first delay before a repeat; doubled each time.
    pub backoff: Duration,
}

/// What happens to one request of a session when faults are injected ([`AgentConfig::run_with_faults`]):
/// the swarm uses it to drop connections at chosen points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The request goes through.
    None,
    /// The connection drops before the request is sent: the server never sees it.
    DropBeforeSending,
    /// The connection drops after the server answered, before the agent reads the answer: the server
    /// acted on the request and the agent must resume.
    LoseTheAnswer,
}

/// What a session did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Scripts run on the card.
    pub scripts: usize,
    /// C-APDUs run.
    pub apdus: usize,
    /// Requests repeated after a dropped connection.
    pub resumes: usize,
}

struct Answer {
    status: StatusCode,
    headers: hyper::HeaderMap,
    body: Vec<u8>,
}

/// Why one attempt failed: worth repeating (the connection) or not (everything else).
enum Attempt {
    Retry(Error),
    Fatal(Error),
}

struct Conn {
    key: (String, String, u16),
    sender: SendRequest<Full<Bytes>>,
}

fn target(uri: &Uri) -> Result<(String, String, u16), Error> {
    let scheme = uri.scheme_str().unwrap_or("").to_ascii_lowercase();
    let host = uri
        .host()
        .ok_or_else(|| Error::Usage(format!("URI {uri} has no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = match (uri.port_u16(), scheme.as_str()) {
        (Some(p), _) => p,
        (None, "https") => 443,
        (None, "http") => 80,
        _ => {
            return Err(Error::Usage(format!(
                "URI {uri}: use https:// (or http:// on loopback)"
            )))
        }
    };
    Ok((scheme, host, port))
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .map(|a| a.is_loopback())
            .unwrap_or(false)
}

/// Resolves `X-Admin-Next-URI` against the URI of the request it answered.
fn resolve(base: &Uri, next: &str) -> Result<Uri, Error> {
    let bad = || {
        Error::Protocol(format!(
            "X-Admin-Next-URI '{}' is not a URI",
            next.escape_debug()
        ))
    };
    if next.starts_with('/') {
        let mut parts = base.clone().into_parts();
        parts.path_and_query = Some(next.parse().map_err(|_| bad())?);
        Uri::from_parts(parts).map_err(|_| bad())
    } else {
        next.parse().map_err(|_| bad())
    }
}

impl AgentConfig {
    /// Checks the admin URI against the TLS set-up before anything else happens: `https://` with TLS,
    /// `http://` only to a loopback address without it.
    pub fn check(&self) -> Result<(), Error> {
        let (scheme, host, _) = target(&self.server)?;
        match (&self.tls, scheme.as_str()) {
            (ClientTls::Plain, "http") if is_loopback(&host) => Ok(()),
            (ClientTls::Plain, _) => Err(Error::Usage(
                "plain HTTP only to a loopback address; give --ca-cert or --psk-identity for https"
                    .into(),
            )),
            (_, "https") => Ok(()),
            _ => Err(Error::Usage(format!(
                "{}: TLS is configured, use https://",
                self.server
            ))),
        }
    }

    async fn connect(&self, uri: &Uri) -> Result<Conn, Attempt> {
        let key = target(uri).map_err(Attempt::Fatal)?;
        let (scheme, host, port) = &key;
        let tls = match (&self.tls, scheme.as_str()) {
            (ClientTls::Plain, "http") if is_loopback(host) => None,
            (ClientTls::Plain, _) => return Err(Attempt::Fatal(Error::Usage(
                "plain HTTP only to a loopback address; give --ca-cert or --psk-identity for https"
                    .into(),
            ))),
            (ClientTls::Certificate(c) | ClientTls::Psk(c), "https") => Some(c.clone()),
            _ => {
                return Err(Attempt::Fatal(Error::Usage(format!(
                    "{uri}: TLS is configured, use https://"
                ))))
            }
        };
        let connecting = async {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), *port))
                .await
                .map_err(|e| Error::Http(format!("connect to {host}:{port}: {e}")))?;
            let _ = tcp.set_nodelay(true);
            match tls {
                None => {
                    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                        .await
                        .map_err(|e| Error::Http(e.to_string()))?;
                    tokio::spawn(conn);
                    Ok(sender)
                }
                Some(connector) => {
                    let mut cfg = connector.configure()?;
                    if matches!(self.tls, ClientTls::Psk(_)) {
                        cfg.set_verify_hostname(false);
                        cfg.set_use_server_name_indication(false);
                    }
                    let ssl = cfg.into_ssl(host)?;
                    let mut stream = tokio_openssl::SslStream::new(ssl, tcp)?;
                    Pin::new(&mut stream).connect().await.map_err(|e| {
                        // A refusal (bad certificate, unknown PSK, alert) will not go away by
                        // retrying; a dropped connection might.
                        let text = format!("handshake with {host}:{port}: {e}");
                        if e.io_error().is_some()
                            || e.code() == openssl::ssl::ErrorCode::ZERO_RETURN
                        {
                            Error::Http(text)
                        } else {
                            Error::Tls(text)
                        }
                    })?;
                    tracing::info!(
                        "TLS to {host}:{port}: {} {}",
                        stream.ssl().version_str(),
                        stream.ssl().current_cipher().map_or("?", |c| c.name())
                    );
                    let (sender, conn) =
                        hyper::client::conn::http1::handshake(TokioIo::new(stream))
                            .await
                            .map_err(|e| Error::Http(e.to_string()))?;
                    tokio::spawn(conn);
                    Ok(sender)
                }
            }
        };
        let sender = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| Attempt::Retry(Error::Http("connecting timed out".into())))?
            .map_err(|e: Error| match e {
                Error::Http(_) => Attempt::Retry(e),
                other => Attempt::Fatal(other),
            })?;
        Ok(Conn { key, sender })
    }

    #[allow(clippy::too_many_arguments)]
    async fn post_once(
        &self,
        conn: &mut Option<Conn>,
        uri: &Uri,
        body: &[u8],
        status: Option<ScriptStatus>,
        resume: bool,
        fault: Fault,
    ) -> Result<Answer, Attempt> {
        let key = target(uri).map_err(Attempt::Fatal)?;
        if fault == Fault::DropBeforeSending {
            *conn = None;
            return Err(Attempt::Retry(Error::Http(
                "the connection dropped before the request was sent (injected)".into(),
            )));
        }
        if conn
            .as_ref()
            .is_none_or(|c| c.key != key || c.sender.is_closed())
        {
            *conn = Some(self.connect(uri).await?);
        }
        let Some(c) = conn.as_mut() else {
            return Err(Attempt::Retry(Error::Http("no connection".into())));
        };
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let host = match uri.port_u16() {
            Some(p) => format!("{}:{p}", key.1),
            None => key.1.clone(),
        };
        let mut req = hyper::Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(HOST, host)
            .header(protocol::X_ADMIN_PROTOCOL, protocol::PROTOCOL)
            .header(protocol::X_ADMIN_FROM, &self.from);
        if let Some(s) = status {
            req = req.header(protocol::X_ADMIN_SCRIPT_STATUS, s.as_str());
            if s == ScriptStatus::Ok {
                req = req.header(CONTENT_TYPE, protocol::RESPONSE_MEDIA_TYPE);
            }
        }
        if resume {
            req = req.header(protocol::X_ADMIN_RESUME, "true");
        }
        let req = req
            .body(Full::new(Bytes::copy_from_slice(body)))
            .map_err(|e| Attempt::Fatal(Error::Http(e.to_string())))?;
        let exchange = async {
            c.sender
                .ready()
                .await
                .map_err(|e| Error::Http(format!("connection: {e}")))?;
            let resp = c
                .sender
                .send_request(req)
                .await
                .map_err(|e| Error::Http(format!("request: {e}")))?;
            let (parts, incoming) = resp.into_parts();
            let body = Limited::new(incoming, MAX_SCRIPT_LEN)
                .collect()
                .await
                .map_err(|e| Error::Http(format!("answer body: {e}")))?
                .to_bytes()
                .to_vec();
            Ok::<_, Error>(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        let result = tokio::time::timeout(REQUEST_TIMEOUT, exchange).await;
        match result {
            Ok(Ok(_)) if fault == Fault::LoseTheAnswer => {
                *conn = None;
                Err(Attempt::Retry(Error::Http(
                    "the connection dropped before the answer was read (injected)".into(),
                )))
            }
            Ok(Ok(a)) => Ok(a),
            Ok(Err(e)) => {
                *conn = None;
                Err(Attempt::Retry(e))
            }
            Err(_) => {
                *conn = None;
                Err(Attempt::Retry(Error::Http(
                    "the server did not answer in time".into(),
                )))
            }
        }
    }

    /// Runs one admin session against `card` until the server has nothing more.
    pub fn run(&self, card: &mut dyn Transport) -> Result<Summary, Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Io {
                what: "starting the agent's runtime".into(),
                source: e,
            })?;
        rt.block_on(self.session(card, &mut || Fault::None))
    }

    /// [`AgentConfig::run`] with `fault` deciding the fate of every request before it is sent (a
    /// swarm of simulated devices injects dropped connections this way).
    pub async fn run_with_faults(
        &self,
        card: &mut dyn Transport,
        fault: &mut (dyn FnMut() -> Fault + Send),
    ) -> Result<Summary, Error> {
        self.session(card, fault).await
    }

    async fn session(
        &self,
        card: &mut dyn Transport,
        fault: &mut (dyn FnMut() -> Fault + Send),
    ) -> Result<Summary, Error> {
        let mut summary = Summary::default();
        let mut conn: Option<Conn> = None;
        let mut uri = self.server.clone();
        let mut body: Vec<u8> = Vec::new();
        let mut status: Option<ScriptStatus> = None;
        let mut exchanges = 0usize;
        loop {
            exchanges += 1;
            if exchanges > MAX_EXCHANGES {
                return Err(Error::Protocol(format!(
                    "the server kept the session going for {MAX_EXCHANGES} requests; giving up"
                )));
            }
            let mut resume = false;
            let mut delay = self.backoff;
            let mut tries = 0;
            let answer = loop {
                let f = fault();
                match self
                    .post_once(&mut conn, &uri, &body, status, resume, f)
                    .await
                {
                    Ok(a)
                        if a.status == StatusCode::SERVICE_UNAVAILABLE && tries < self.retries =>
                    {
                        tracing::warn!("the server is busy; trying again in {delay:?}");
                    }
                    Ok(a) => break a,
                    Err(Attempt::Fatal(e)) => return Err(e),
                    Err(Attempt::Retry(e)) if tries < self.retries => {
                        tracing::warn!("{e}; resuming in {delay:?}");
                    }
                    Err(Attempt::Retry(e)) => {
                        return Err(Error::Http(format!(
                            "{e} (gave up after {} attempts)",
                            tries + 1
                        )))
                    }
                }
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2);
                tries += 1;
                resume = true;
                summary.resumes += 1;
            };
            let h = &answer.headers;
            let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok());
            if answer.status != StatusCode::OK && answer.status != StatusCode::NO_CONTENT {
                let text = String::from_utf8_lossy(&answer.body);
                let line = text
                    .lines()
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(200)
                    .collect::<String>();
                return Err(Error::Http(format!(
                    "the server answered {}: {line}",
                    answer.status
                )));
            }
            if get(protocol::X_ADMIN_PROTOCOL) != Some(protocol::PROTOCOL) {
                return Err(Error::Protocol(format!(
                    "the server's X-Admin-Protocol is not {}",
                    protocol::PROTOCOL
                )));
            }
            let next = get(protocol::X_ADMIN_NEXT_URI)
                .map(|n| resolve(&uri, n))
                .transpose()?;
            if answer.status == StatusCode::NO_CONTENT {
                match next {
                    Some(n) => {
                        uri = n;
                        body.clear();
                        status = None;
                        continue;
                    }
                    None => return Ok(summary),
                }
            }
            match get(CONTENT_TYPE.as_str()) {
                Some(ct)
                    if ct
                        .replace(' ', "")
                        .eq_ignore_ascii_case(&protocol::COMMAND_MEDIA_TYPE.replace(' ', "")) => {}
                other => {
                    return Err(Error::Protocol(format!(
                        "the server's Content-Type '{}' is not {}",
                        other.unwrap_or(""),
                        protocol::COMMAND_MEDIA_TYPE
                    )))
                }
            }
            let (script, _) = CommandScript::parse(&answer.body)?;
            let response = run_script(card, &script)?;
            summary.scripts += 1;
            summary.apdus += response.responses.len();
            let Some(n) = next else {
                // A last script without a next URI is run, and its results are never returned.
                return Ok(summary);
            };
            uri = n;
            body = response.encode(Coding::Definite)?;
            status = Some(ScriptStatus::Ok);
        }
    }
}

/// Runs a command script on the card: every C-APDU in order until one answers an error status, which
/// ends the script (its R-APDU included). Refuses a script with a malformed C-APDU before running any.
pub fn run_script(
    card: &mut dyn Transport,
    script: &CommandScript,
) -> Result<ResponseScript, Error> {
    let cmds: Vec<CommandApdu> = script
        .commands
        .iter()
        .enumerate()
        .map(|(i, raw)| {
            CommandApdu::parse(raw)
                .map_err(|e| Error::Protocol(format!("C-APDU {} of the script: {e}", i + 1)))
        })
        .collect::<Result<_, _>>()?;
    let mut responses = Vec::with_capacity(cmds.len());
    for cmd in &cmds {
        let resp = card.send(cmd).map_err(|e| Error::Card(e.to_string()))?;
        tracing::info!(
            "C-APDU {:02X} {:02X} {:02X} {:02X} Lc={} -> SW {:04X}",
            cmd.cla,
            cmd.ins,
            cmd.p1,
            cmd.p2,
            cmd.data.len(),
            resp.sw
        );
        let sw = resp.sw;
        responses.push(ScriptResponse {
            data: resp.data,
            sw,
        });
        if !continues_after(sw) {
            break;
        }
    }
    Ok(ResponseScript {
        executed: u16::try_from(responses.len()).ok(),
        responses,
        notices: Vec::new(),
    })
}
