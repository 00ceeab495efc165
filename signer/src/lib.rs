//! signer: per-card keys in the HSM, signed and encrypted load-file packages, and secure delivery to cards.
//!
//! Modules: [`cap`] turns CAP files into load file data blocks, [`package`] makes and checks packages,
//! [`diversify`] derives per-card keys inside the token, [`channel`] opens GlobalPlatform secure channels
//! whose static keys stay in the token, [`gp`] performs card management through them, and [`transport`]
//! reaches the card. [`cards`] reads card lists, [`dap`] makes and checks DAP signatures in the vendor's
//! token, [`cipher`] makes ciphered load files, [`sd`] creates vendors' security domains and puts
//! their per-card keys through their own channels, [`records`] appends to the ledger, and [`batch`] runs
//! personalisation batches.
//! [`token`] issues delegated-management tokens and checks the card's receipts, and [`perso`]
//! personalises applications through their security domain.
pub mod batch;
pub mod cap;
pub mod cards;
pub mod channel;
pub mod cipher;
pub mod dap;
pub mod diversify;
pub mod error;
pub mod gp;
pub mod package;
pub mod perso;
pub mod records;
pub mod sd;
pub mod token;
pub mod transport;

pub use error::Error;
