//! signer: per-card keys in the HSM, signed and encrypted load-file packages, and secure delivery to cards.
//!
//! Modules: [`cap`] turns CAP files into load file data blocks, [`package`] makes and checks packages,
//! [`diversify`] derives per-card keys inside the token, [`channel`] opens GlobalPlatform secure channels
//! whose static keys stay in the token, [`gp`] performs card management through them, and [`transport`]
//! reaches the card.
pub mod cap;
pub mod channel;
pub mod diversify;
pub mod error;
pub mod gp;
pub mod package;
pub mod transport;

pub use error::Error;
