//! Asymmetric signature verification for a security domain's services (DAPs, tokens).
//!
//! Thin, feature-gated calls into gp-core: with `asymmetric-dap` RSA and ECDSA P-256 verify;
//! without it public keys can be stored but never verify, so tiny builds refuse rather than
//! accept.

use gp_core::dap::{self, HashAlg};

#[cfg(feature = "asymmetric-dap")]
pub(crate) fn verify_rsa(
    n: &[u8],
    e: &[u8],
    alg: HashAlg,
    hash: &[u8],
    signature: &[u8],
) -> core::result::Result<(), dap::DapError> {
    // GP B.3.2: keys beyond 1024 bits sign with SHA-256, so SHA-1 hashes are too weak for them.
    if n.len() > 128 && alg == HashAlg::Sha1 {
        return Err(dap::DapError::Malformed);
    }
    dap::verify_dap_rsa(n, e, hash, signature)
}

#[cfg(feature = "asymmetric-dap")]
pub(crate) fn verify_ecdsa(
    point: &[u8],
    hash: &[u8],
    signature: &[u8],
) -> core::result::Result<(), dap::DapError> {
    dap::verify_dap_ecdsa_p256(point, hash, signature)
}

// Without the `asymmetric-dap` feature public DAP keys can be stored but never verify.
#[cfg(not(feature = "asymmetric-dap"))]
pub(crate) fn verify_rsa(
    _: &[u8],
    _: &[u8],
    _: HashAlg,
    _: &[u8],
    _: &[u8],
) -> core::result::Result<(), dap::DapError> {
    Err(dap::DapError::BadSignature)
}

#[cfg(not(feature = "asymmetric-dap"))]
pub(crate) fn verify_ecdsa(
    _: &[u8],
    _: &[u8],
    _: &[u8],
) -> core::result::Result<(), dap::DapError> {
    Err(dap::DapError::BadSignature)
}
