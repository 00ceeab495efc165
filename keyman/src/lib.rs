//! keyman: key ceremonies on PKCS#11 tokens with a tamper-evident ledger.
pub mod ledger;
