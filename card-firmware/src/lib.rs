//! The Postissue reference card: a GlobalPlatform 2.3.1 card OS core.
//!
//! The card every package is proved against: an issuer security domain (card domain) and
//! supplementary security domains with SCP02/SCP03 secure channels, key management, the registry
//! and life cycles, loading verified by security domains (DAP, ciphered load files) and
//! installing applications, on storage that survives power loss at any write. `no_std` + `alloc`; the `std`
//! feature adds file-backed storage and the `sim` simulator the host tools drive.
//!
//! Layout, top to bottom; every module uses only modules below it:
//!
//! 1. [`card`]: power, the command pipeline (APDU parsing, `61xx` chaining, secure messaging),
//!    the commit rule; it runs the built-in applications for their commands.
//! 2. `commands`: the command handlers, one GP command per module (SELECT, INITIALIZE UPDATE,
//!    EXTERNAL AUTHENTICATE, PUT KEY, INSTALL, LOAD, DELETE, STORE DATA, SET STATUS, GET
//!    STATUS, GET DATA).
//! 3. `session`: the command context (`Ctx`) and what the card keeps in RAM between commands
//!    (selection, secure channel, load, personalisation and GET STATUS sessions).
//! 4. Domain state and services: [`state`] (what is persisted), [`registry`], [`keys`],
//!    [`lifecycle`], [`privileges`], [`quotas`], `dm` (content management authority, tokens, receipts),
//!    `channel` (secure channel sessions), [`cap`] (load file parsing), `signatures`,
//!    [`app`] (the application API) with [`purse`] (a built-in application) and `applets`.
//! 5. [`storage`] (medium + journal) and [`codec`], [`aid`], [`error`].
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod aid;
pub mod app;
mod applets;
pub mod cap;
pub mod card;
mod channel;
pub mod codec;
mod commands;
mod dm;
pub mod error;
pub mod keys;
pub mod lifecycle;
pub mod privileges;
pub mod purse;
pub mod quotas;
pub mod registry;
mod session;
mod signatures;
#[cfg(feature = "std")]
pub mod sim;
pub mod state;
pub mod storage;
#[cfg(feature = "std")]
pub mod vpcd;

pub use card::Card;
pub use channel::Auth;
pub use error::{Error, Result};
pub use gp_core::sw::Sw;
