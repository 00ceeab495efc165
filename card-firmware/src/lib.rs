//! The Postissue reference card: a GlobalPlatform 2.3.1 card OS core.
//!
//! The card every package is proved against: an issuer security domain (card domain) and
//! supplementary security domains with SCP02/SCP03 secure channels, key management, the registry
//! and life cycles, loading verified by security domains (DAP, ciphered load files) and
//! installing applications, on storage that survives power loss at any write. `no_std` + `alloc`; the `std`
//! feature adds file-backed storage and the `sim` simulator the host tools drive.
//!
//! Layout: [`storage`] (medium + journal), [`codec`] and [`state`] (what is persisted),
//! [`registry`], [`lifecycle`], [`privileges`], [`keys`], [`cap`] (load file parsing),
//! `channel` (secure channel), `isd` (card domain commands), `putkey`, `load`, `install`,
//! `status`, [`app`] (the application API) and [`purse`] (a built-in application), and [`card`]
//! (power, dispatch, commit).
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod aid;
pub mod app;
pub mod cap;
pub mod card;
mod channel;
pub mod codec;
mod dm;
pub mod error;
mod install;
mod isd;
pub mod keys;
pub mod lifecycle;
mod load;
pub mod privileges;
pub mod purse;
mod putkey;
pub mod registry;
#[cfg(feature = "std")]
pub mod sim;
pub mod state;
mod status;
pub mod storage;
#[cfg(feature = "std")]
pub mod vpcd;

pub use card::Card;
pub use channel::Auth;
pub use error::{Error, Result};
pub use gp_core::sw::Sw;
