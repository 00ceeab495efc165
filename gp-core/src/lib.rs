//! GlobalPlatform wire formats and secure-channel cryptography, shared by the card and the host.
//!
//! One implementation of every byte that crosses the card interface: APDUs and status words,
//! BER-TLV, the SCP02 and SCP03 secure channels (session keys, cryptograms, C-MAC, C-DEC, R-MAC,
//! R-ENC), key check values, key diversification, GP command payloads (INSTALL, LOAD, PUT KEY,
//! GET STATUS) and symmetric DAP signatures. The card firmware and the host tools both link this
//! crate, so a disagreement between them can only be a disagreement with the specification, and
//! the known-answer tests beside each module pin the specification's bytes.
//!
//! The crate is `no_std` with `alloc`, contains no `unsafe`, never panics on untrusted input,
//! wipes secret keys on drop, hides them from `Debug`, and compares MACs and cryptograms in
//! constant time. The `std` feature only adds `std::error::Error` implementations.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod crypto;
mod util;

pub mod apdu;
pub mod commands;
pub mod dap;
pub mod diversify;
pub mod kcv;
pub mod keys;
pub mod life_cycle;
pub mod privileges;
pub mod scp02;
pub mod scp03;
pub mod script;
pub mod sw;
pub mod tlv;

#[cfg(feature = "std")]
mod std_impls {
    impl std::error::Error for crate::apdu::ApduError {}
    impl std::error::Error for crate::tlv::TlvError {}
    impl std::error::Error for crate::keys::KeyError {}
    impl std::error::Error for crate::commands::CommandError {}
    impl std::error::Error for crate::diversify::DiversifyError {}
    impl std::error::Error for crate::dap::DapError {}
    impl std::error::Error for crate::script::ScriptError {}
    impl<E: core::fmt::Debug + core::fmt::Display> std::error::Error for crate::scp02::Scp02Error<E> {}
    impl<E: core::fmt::Debug + core::fmt::Display> std::error::Error for crate::scp03::Scp03Error<E> {}
}
