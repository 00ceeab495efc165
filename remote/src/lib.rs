//! Remote post-issuance delivery over GlobalPlatform Amendment B (RAM over HTTP).
//!
//! The admin server ([`server`], [`engine`]) runs campaigns (this package onto these cards) from a
//! SQLite database ([`db`]); a device runs the admin agent ([`agent`]) that relays command scripts
//! (ETSI TS 102 226 expanded format, `gp_core::script`) to the card and posts the responses back. The
//! server derives each card's keys in the HSM ([`hsm`]), checks the card's cryptogram and sends
//! EXTERNAL AUTHENTICATE with the whole operation in one script, wrapped in advance ([`prepared`],
//! [`plan`]). [`protocol`] holds the Amendment B headers and media types, [`tls`] the certificate and
//! PSK (SCP81) TLS set-ups, [`config`] the server's configuration file, [`campaign`] the campaign
//! commands. For the operations team: [`ops`] (metrics, status page), [`logging`] (text or JSON logs)
//! and [`report`] (a campaign's cards as CSV or JSON).
pub mod agent;
pub mod campaign;
pub mod config;
pub mod db;
pub mod engine;
pub mod error;
pub mod hsm;
pub mod logging;
pub mod ops;
pub mod plan;
pub mod prepared;
pub mod protocol;
pub mod report;
pub mod server;
pub mod swarm;
pub mod tls;

pub use error::Error;
