//! keyman: key ceremonies on PKCS#11 tokens with a tamper-evident ledger.
//!
//! The library is shared with `signer`: [`hsm`] is the project's single place of PKCS#11 access (and holds
//! the one audited `unsafe` module), [`pin`] says where PINs may come from, and [`ledger`] is the record
//! format both tools append to.
pub mod ceremony;
pub mod error;
pub mod hsm;
pub mod ledger;
pub mod pin;
pub mod prompt;
pub mod quorum;
pub mod secret;

pub use error::Error;
