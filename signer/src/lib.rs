//! signer: per-card keys in the HSM, signed and encrypted load-file packages, and secure delivery to cards.
pub mod cap;
