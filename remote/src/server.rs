//! The admin server's HTTP side (hyper, HTTP/1.1) over TLS (OpenSSL) or, for tests, plain TCP on
//! loopback: the Amendment B headers checked, bodies limited before they are read, a timeout on every
//! connection and every read, and the engine's blocking work moved off the executor.

use crate::engine::{Engine, Reply, Request};
use crate::error::Error;
use crate::ops::{recent::Answer, Ops};
use crate::protocol::{self, ScriptStatus};
use bytes::Bytes;
use gp_core::script::MAX_SCRIPT_LEN;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use openssl::ssl::{Ssl, SslAcceptor};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tracing::Instrument;

/// Time allowed for the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for a request's headers (also the idle time between requests on a connection).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(20);
/// Time allowed for a request's body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a connection may live.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// Largest request body: the largest response script.
pub const MAX_BODY: usize = MAX_SCRIPT_LEN;

/// The server: the engine, the TLS acceptor (none for plain HTTP on loopback) and the operations
/// state every answer is reported to (metrics, status page), if any.
pub struct Server {
    engine: Arc<Engine>,
    tls: Option<SslAcceptor>,
    ops: Option<Arc<Ops>>,
}

type Body = Full<Bytes>;

fn answer(status: StatusCode, text: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{text}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        protocol::X_ADMIN_PROTOCOL,
        hyper::header::HeaderValue::from_static(protocol::PROTOCOL),
    );
    r.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn same_media_type(got: &str, want: &str) -> bool {
    let norm = |s: &str| -> String {
        s.split(';')
            .map(|p| p.trim().to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join(";")
    };
    norm(got) == norm(want)
}

impl Server {
    /// A server for `engine`, with TLS when `tls` is given.
    pub fn new(engine: Engine, tls: Option<SslAcceptor>) -> Server {
        Server {
            engine: Arc::new(engine),
            tls,
            ops: None,
        }
    }

    /// The server reporting every answer it gives to `ops`.
    pub fn with_ops(mut self, ops: Arc<Ops>) -> Server {
        self.ops = Some(ops);
        self
    }

    /// Accepts connections on `listener` until the process ends.
    pub async fn run(self, listener: TcpListener) -> Result<(), Error> {
        let this = Arc::new(self);
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let this = this.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let served = tokio::time::timeout(CONNECTION_LIFETIME, this.connection(tcp)).await;
                match served {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::info!(%peer, "connection ended: {e}"),
                    Err(_) => tracing::info!(%peer, "connection closed: lived too long"),
                }
            });
        }
    }

    async fn connection(self: Arc<Self>, tcp: tokio::net::TcpStream) -> Result<(), Error> {
        let engine = self.engine.clone();
        let ops = self.ops.clone();
        let service = hyper::service::service_fn(move |req| {
            let (engine, ops) = (engine.clone(), ops.clone());
            async move { Ok::<_, std::convert::Infallible>(handle(engine, ops, req).await) }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .max_buf_size(64 * 1024);
        match &self.tls {
            None => builder
                .serve_connection(TokioIo::new(tcp), service)
                .await
                .map_err(|e| Error::Http(e.to_string())),
            Some(acceptor) => {
                let ssl = Ssl::new(acceptor.context())?;
                let mut stream = tokio_openssl::SslStream::new(ssl, tcp)?;
                tokio::time::timeout(HANDSHAKE_TIMEOUT, Pin::new(&mut stream).accept())
                    .await
                    .map_err(|_| Error::Tls("handshake timed out".into()))?
                    .map_err(|e| Error::Tls(format!("handshake: {e}")))?;
                let ssl = stream.ssl();
                let psk = ssl
                    .psk_identity()
                    .map(|id| String::from_utf8_lossy(id).escape_debug().to_string());
                tracing::info!(
                    version = ssl.version_str(),
                    cipher = ssl.current_cipher().map_or("?", |c| c.name()),
                    psk_identity = psk.as_deref().unwrap_or("-"),
                    "TLS connection"
                );
                builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                    .map_err(|e| Error::Http(e.to_string()))
            }
        }
    }
}

/// The session id a URI under `admin` names: `ADMIN/session/` and 32 hex digits.
fn session_id<'a>(admin: &str, path: &'a str) -> Option<&'a str> {
    path.strip_prefix(admin)
        .and_then(|p| p.strip_prefix("/session/"))
        .filter(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Answers one request inside a `session` span (with `session_id` from the URI; the opening POST's
/// span has none, its line names the session it opens), and reports the answer to the operations
/// state.
async fn handle(
    engine: Arc<Engine>,
    ops: Option<Arc<Ops>>,
    req: hyper::Request<Incoming>,
) -> Response<Body> {
    let started = Instant::now();
    let session = session_id(engine.admin_path(), req.uri().path()).map(str::to_string);
    let span = tracing::info_span!("session", session_id = tracing::field::Empty);
    if let Some(id) = &session {
        span.record("session_id", id.as_str());
    }
    let agent = header(req.headers(), protocol::X_ADMIN_FROM)
        .filter(|a| protocol::check_agent_id(a).is_ok())
        .map(str::to_string);
    let agent_failed = header(req.headers(), protocol::X_ADMIN_SCRIPT_STATUS)
        .is_some_and(|s| s != ScriptStatus::Ok.as_str());
    let admin = engine.admin_path().to_string();
    let (response, error) = match handle_inner(engine, req).instrument(span.clone()).await {
        Ok(r) => (r, None),
        Err((status, text)) => {
            span.in_scope(|| tracing::warn!(status = status.as_u16(), "{text}"));
            (answer(status, &text), Some(text))
        }
    };
    let next =
        header(response.headers(), protocol::X_ADMIN_NEXT_URI).and_then(|u| session_id(&admin, u));
    crate::ops::metrics::metrics()
        .request_seconds
        .observe(started.elapsed().as_secs_f64());
    if let Some(ops) = ops {
        ops.observe(&Answer {
            session: session.as_deref(),
            agent: agent.as_deref(),
            agent_failed,
            code: response.status().as_u16(),
            next,
            error: error.as_deref(),
        });
    }
    response
}

async fn handle_inner(
    engine: Arc<Engine>,
    req: hyper::Request<Incoming>,
) -> Result<Response<Body>, (StatusCode, String)> {
    let bad = |t: String| (StatusCode::BAD_REQUEST, t);
    let path = req.uri().path().to_string();
    let admin = engine.admin_path().to_string();
    let session = if path == admin {
        None
    } else if let Some(id) = session_id(&admin, &path) {
        Some(id.to_string())
    } else {
        return Err((
            StatusCode::NOT_FOUND,
            format!("no admin resource at {}", path.escape_debug()),
        ));
    };
    if req.method() != Method::POST {
        return Err((
            StatusCode::METHOD_NOT_ALLOWED,
            "only POST is allowed".into(),
        ));
    }
    let h = req.headers();
    match header(h, protocol::X_ADMIN_PROTOCOL) {
        Some(p) if p == protocol::PROTOCOL => {}
        Some(p) => {
            return Err(bad(format!(
                "X-Admin-Protocol '{}' is not {}",
                p.escape_debug(),
                protocol::PROTOCOL
            )))
        }
        None => return Err(bad("X-Admin-Protocol is missing".into())),
    }
    let from = header(h, protocol::X_ADMIN_FROM)
        .ok_or_else(|| bad("X-Admin-From is missing".into()))?
        .to_string();
    protocol::check_agent_id(&from).map_err(|e| bad(e.to_string()))?;
    let resume = match header(h, protocol::X_ADMIN_RESUME) {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(_) => return Err(bad("X-Admin-Resume is neither true nor false".into())),
    };
    let status = header(h, protocol::X_ADMIN_SCRIPT_STATUS)
        .map(ScriptStatus::parse)
        .transpose()
        .map_err(|e| bad(e.to_string()))?;
    if status == Some(ScriptStatus::Ok) {
        match header(h, CONTENT_TYPE.as_str()) {
            Some(ct) if same_media_type(ct, protocol::RESPONSE_MEDIA_TYPE) => {}
            other => {
                return Err((
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!(
                        "Content-Type '{}' is not {}",
                        other.unwrap_or("").escape_debug(),
                        protocol::RESPONSE_MEDIA_TYPE
                    ),
                ))
            }
        }
    }
    if let Some(len) = header(h, CONTENT_LENGTH.as_str()) {
        match len.parse::<usize>() {
            Ok(n) if n <= MAX_BODY => {}
            _ => {
                return Err((
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("bodies are limited to {MAX_BODY} bytes"),
                ))
            }
        }
    }
    let body = tokio::time::timeout(
        BODY_TIMEOUT,
        Limited::new(req.into_body(), MAX_BODY).collect(),
    )
    .await
    .map_err(|_| (StatusCode::REQUEST_TIMEOUT, "the body took too long".into()))?
    .map_err(|e| {
        if e.downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
        {
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("bodies are limited to {MAX_BODY} bytes"),
            )
        } else {
            bad(format!("reading the body: {e}"))
        }
    })?
    .to_bytes()
    .to_vec();
    let request = Request {
        from,
        session,
        resume,
        status,
        body,
    };
    let span = tracing::Span::current();
    let reply = tokio::task::spawn_blocking(move || span.in_scope(|| engine.handle(request)))
        .await
        .map_err(|_| {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error".to_string(),
            )
        })?;
    match reply {
        Ok(Reply::Done) => {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::NO_CONTENT;
            r.headers_mut().insert(
                protocol::X_ADMIN_PROTOCOL,
                hyper::header::HeaderValue::from_static(protocol::PROTOCOL),
            );
            Ok(r)
        }
        Ok(Reply::Script { body, next_uri }) => {
            let mut r = Response::new(Full::new(Bytes::from(body)));
            let hs = r.headers_mut();
            hs.insert(
                protocol::X_ADMIN_PROTOCOL,
                hyper::header::HeaderValue::from_static(protocol::PROTOCOL),
            );
            hs.insert(
                CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(protocol::COMMAND_MEDIA_TYPE),
            );
            let next = hyper::header::HeaderValue::from_str(&next_uri).map_err(|_| {
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "bad next URI".to_string(),
                )
            })?;
            hs.insert(protocol::X_ADMIN_NEXT_URI, next);
            Ok(r)
        }
        Err(e) => {
            let status = match &e {
                Error::Protocol(_) | Error::Script(_) => StatusCode::BAD_REQUEST,
                // The request was well formed; what the card answered in it is not usable.
                Error::Card(_) => StatusCode::UNPROCESSABLE_ENTITY,
                Error::Usage(_) | Error::Database(_) | Error::Hsm(_) | Error::Signer(_) => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            Err((status, e.to_string()))
        }
    }
}
