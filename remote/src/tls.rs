//! TLS for the admin protocol through OpenSSL (the `openssl` crate): certificate TLS 1.2/1.3 for device
//! agents, and PSK-TLS 1.2 with the SCP81 suites `TLS_PSK_WITH_AES_128_CBC_SHA256` and
//! `TLS_PSK_WITH_AES_128_GCM_SHA256` for agents keyed like cards (rustls has no PSK suites). Session
//! tickets are off: SGP.02 forbids session resumption for PSK-TLS.

use crate::config::TlsConfig;
use crate::error::Error;
use keyman::pin::PinSource;
use openssl::ssl::{
    SslAcceptor, SslConnector, SslFiletype, SslMethod, SslOptions, SslSessionCacheMode,
    SslVerifyMode, SslVersion,
};
use secrecy::ExposeSecret;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use zeroize::Zeroizing;

/// OpenSSL names of the SCP81 PSK suites, in preference order.
pub const PSK_CIPHERS: &str = "PSK-AES128-GCM-SHA256:PSK-AES128-CBC-SHA256";
/// Certificate suites for TLS 1.2 (TLS 1.3 suites are OpenSSL's defaults).
const CERT_CIPHERS: &str = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
/// Longest PSK identity accepted.
pub const MAX_PSK_IDENTITY: usize = 128;

/// Reads a pre-shared key: hex on the first line of a file readable by its owner only (the same check
/// keyman makes on PIN files), 16 to 64 bytes.
pub fn read_psk(path: &Path) -> Result<Zeroizing<Vec<u8>>, Error> {
    let text = PinSource::File(path.to_path_buf())
        .read("psk")
        .map_err(|e| Error::Tls(format!("PSK file: {e}")))?;
    let key = Zeroizing::new(
        hex::decode(text.expose_secret().trim())
            .map_err(|_| Error::Tls(format!("PSK file {}: not hex", path.display())))?,
    );
    if !(16..=64).contains(&key.len()) {
        return Err(Error::Tls(format!(
            "PSK file {}: the key must be 16 to 64 bytes",
            path.display()
        )));
    }
    Ok(key)
}

fn check_identity(id: &str) -> Result<(), Error> {
    if id.is_empty() || id.len() > MAX_PSK_IDENTITY || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::Tls(format!(
            "PSK identity must be 1 to {MAX_PSK_IDENTITY} printable characters"
        )));
    }
    Ok(())
}

/// The server's acceptor for `cfg` (`None` for plain HTTP on loopback).
pub fn acceptor(cfg: &TlsConfig) -> Result<Option<SslAcceptor>, Error> {
    if cfg.certificate.is_none() && cfg.psk.is_empty() {
        return Ok(None);
    }
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())?;
    b.set_options(SslOptions::NO_TICKET | SslOptions::NO_RENEGOTIATION);
    b.set_session_cache_mode(SslSessionCacheMode::OFF);
    b.set_min_proto_version(Some(SslVersion::TLS1_2))?;
    if let Some(c) = &cfg.certificate {
        b.set_certificate_chain_file(&c.chain)
            .map_err(|e| Error::Tls(format!("{}: {e}", c.chain.display())))?;
        b.set_private_key_file(&c.key, SslFiletype::PEM)
            .map_err(|e| Error::Tls(format!("{}: {e}", c.key.display())))?;
        b.check_private_key()?;
    }
    if !cfg.psk.is_empty() {
        let mut table: HashMap<Vec<u8>, Zeroizing<Vec<u8>>> = HashMap::new();
        for e in &cfg.psk {
            check_identity(&e.identity)?;
            let key = read_psk(&e.key_file)?;
            if table.insert(e.identity.as_bytes().to_vec(), key).is_some() {
                return Err(Error::Tls(format!("PSK identity '{}' twice", e.identity)));
            }
        }
        let table = Arc::new(table);
        if cfg.certificate.is_some() {
            b.set_cipher_list(&format!("{CERT_CIPHERS}:{PSK_CIPHERS}"))?;
        } else {
            b.set_cipher_list(PSK_CIPHERS)?;
            b.set_max_proto_version(Some(SslVersion::TLS1_2))?;
        }
        b.set_psk_server_callback(move |_ssl, identity, out| {
            let key = identity.and_then(|id| table.get(id));
            match key {
                Some(k) if k.len() <= out.len() => {
                    if let Some(dst) = out.get_mut(..k.len()) {
                        dst.copy_from_slice(k);
                    }
                    Ok(k.len())
                }
                // Unknown identity: no key, the handshake fails.
                _ => Ok(0),
            }
        });
    } else {
        b.set_cipher_list(CERT_CIPHERS)?;
    }
    Ok(Some(b.build()))
}

/// How the agent secures its connection.
#[derive(Clone)]
pub enum ClientTls {
    /// Plain HTTP (the URL is `http://` to a loopback address).
    Plain,
    /// Certificate TLS, the server checked against this CA and the URL's host name.
    Certificate(SslConnector),
    /// PSK-TLS 1.2 with this identity and key.
    Psk(SslConnector),
}

/// Certificate TLS trusting the CA certificates in `ca_pem`.
pub fn client_certificate(ca_pem: &Path) -> Result<ClientTls, Error> {
    let mut b = SslConnector::builder(SslMethod::tls_client())?;
    b.set_min_proto_version(Some(SslVersion::TLS1_2))?;
    b.set_ca_file(ca_pem)
        .map_err(|e| Error::Tls(format!("{}: {e}", ca_pem.display())))?;
    b.set_verify(SslVerifyMode::PEER);
    Ok(ClientTls::Certificate(b.build()))
}

/// PSK-TLS 1.2 (SCP81 suites) with `identity` and the key in `key_file`.
pub fn client_psk(identity: &str, key_file: &Path) -> Result<ClientTls, Error> {
    check_identity(identity)?;
    let key = read_psk(key_file)?;
    let mut b = SslConnector::builder(SslMethod::tls_client())?;
    b.set_options(SslOptions::NO_TICKET);
    b.set_min_proto_version(Some(SslVersion::TLS1_2))?;
    b.set_max_proto_version(Some(SslVersion::TLS1_2))?;
    b.set_cipher_list(PSK_CIPHERS)?;
    // PSK suites carry no certificate; the key authenticates both sides.
    b.set_verify(SslVerifyMode::NONE);
    let id = identity.as_bytes().to_vec();
    b.set_psk_client_callback(move |_ssl, _hint, id_out, key_out| {
        let (Some(id_dst), Some(key_dst)) =
            (id_out.get_mut(..=id.len()), key_out.get_mut(..key.len()))
        else {
            return Ok(0);
        };
        let (id_bytes, nul) = id_dst.split_at_mut(id.len());
        id_bytes.copy_from_slice(&id);
        nul.fill(0);
        key_dst.copy_from_slice(&key);
        Ok(key.len())
    });
    Ok(ClientTls::Psk(b.build()))
}
