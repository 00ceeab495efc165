//! The command groups of `signer`, one module each, and what they share: the card and token options,
//! the issuer master, and the ledger records of deliveries.

pub mod card;
pub mod deploy;
pub mod keys;
pub mod package;
pub mod sd;

use clap::Args;
use gp_core::diversify::Scheme;
use keyman::hsm::{KeyHandle, TokenSession, TokenUri};
use keyman::ledger::EntryKind;
use signer::records::{self, Records};
use signer::token::{key_uri, TokenAccess};
use signer::transport::CardRef;
use signer::Error;

#[derive(Args, Debug)]
pub struct CardArgs {
    /// The card: sim:IMAGE-PATH or pcsc:READER-NAME.
    #[arg(long)]
    pub card: CardRef,
    /// The issuer's master key: pkcs11:token=LABEL;object=KEY-LABEL.
    #[arg(long)]
    pub master: String,
    /// Key diversification scheme: emv, visa2, aes or kdf3 (AES master, SP 800-108 in the token).
    #[arg(long, default_value = "emv")]
    pub scheme: Scheme,
    #[command(flatten)]
    pub token: TokenAccess,
}

/// A key URI for an optional option.
pub fn optional_key_uri(
    text: Option<&str>,
    option: &str,
) -> Result<Option<(TokenUri, String)>, Error> {
    text.map(|k| key_uri(k, option)).transpose()
}

pub fn with_master<T>(
    args: &CardArgs,
    f: impl FnOnce(&TokenSession<'_>, KeyHandle, &str) -> Result<T, Error>,
) -> Result<T, Error> {
    let (uri, label) = key_uri(&args.master, "--master")?;
    args.token.with_session(&uri, |session| {
        let master = session.find_secret_key(&label)?;
        f(session, master, &label)
    })
}

use signer::records::token_key_output;
/// Appends the delivery record of `run`/`step` for the card with `kdd`, reached with the token key `key`.
pub fn record_card_delivery(
    records: &mut Records,
    session: &TokenSession<'_>,
    key: KeyHandle,
    label: &str,
    kdd: &[u8],
    run: &str,
    step: &str,
) -> Result<(), Error> {
    let mut common = token_key_output(session, key, label);
    common.push(records::kdd_output(kdd));
    records.record(EntryKind::Delivery, run, step, &[], &common, &[])
}
