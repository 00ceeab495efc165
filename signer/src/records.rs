//! Records of every signing and every delivery, appended to a ledger in keyman's format so that one
//! `keyman ledger verify` covers key ceremonies, package signing and deliveries to cards alike.
//!
//! What is recorded: the package's SHA-256, the key's label with its KCV and method (or its public key),
//! every DAP with its security domain and card, and the card acted on. Never a key, a PIN or a hash of one:
//! the ledger's entry types have no field for them.

use crate::error::Error;
use keyman::ledger::{EntryBody, EntryKind, Ledger, Output, Sha256Hash};
use std::path::Path;

/// Most outputs put in one ledger entry: a line stays far below the ledger's 1 MiB line limit even with
/// 512-byte RSA DAPs, so per-card DAPs for many cards are spread over several entries.
pub const OUTPUTS_PER_ENTRY: usize = 500;

/// Opens the ledger at `path` to append to it, creating it when there is no file yet. An existing ledger is
/// verified first (keyman refuses to build on a broken chain).
pub fn open_ledger(path: &Path) -> Result<Ledger, Error> {
    if path.exists() {
        Ok(Ledger::open_append(path)?)
    } else {
        Ok(Ledger::create(path)?)
    }
}

/// An optional ledger: every `record` call is a no-op without `--ledger`.
pub struct Records {
    ledger: Option<Ledger>,
    scripted: bool,
}

impl Records {
    /// Opens the ledger named on the command line, if any. `scripted` marks runs whose PIN came from a
    /// named source rather than a person.
    pub fn open(path: Option<&Path>, scripted: bool) -> Result<Records, Error> {
        Ok(Records {
            ledger: path.map(open_ledger).transpose()?,
            scripted,
        })
    }

    /// Whether a ledger is open.
    pub fn is_open(&self) -> bool {
        self.ledger.is_some()
    }

    /// Appends entries of `kind` for `run`/`step`: the common outputs first in each entry, then `many`
    /// spread over as many entries as needed ([`OUTPUTS_PER_ENTRY`]).
    pub fn record(
        &mut self,
        kind: EntryKind,
        run: &str,
        step: &str,
        inputs: &[keyman::ledger::InputFile],
        common: &[Output],
        many: &[Output],
    ) -> Result<(), Error> {
        let Some(ledger) = self.ledger.as_mut() else {
            return Ok(());
        };
        let mut chunks: Vec<&[Output]> = many.chunks(OUTPUTS_PER_ENTRY).collect();
        if chunks.is_empty() {
            chunks.push(&[]);
        }
        let parts = chunks.len();
        for (i, chunk) in chunks.into_iter().enumerate() {
            let step = if parts > 1 {
                format!("{step} ({}/{parts})", i + 1)
            } else {
                step.to_string()
            };
            let mut body = EntryBody::new(kind, run).step(step).scripted(self.scripted);
            for input in inputs {
                body = body.input(input.clone());
            }
            for o in common.iter().chain(chunk) {
                body = body.output(o.clone());
            }
            ledger.append(body)?;
        }
        Ok(())
    }

    /// Runs `f` with these records; when it fails, records that `run` stopped with its error.
    pub fn guard<T>(
        &mut self,
        run: &str,
        f: impl FnOnce(&mut Records) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let result = f(self);
        if let Err(e) = &result {
            self.abort(run, e);
        }
        result
    }

    /// Records that a run stopped with `error` (only when a ledger is open).
    pub fn abort(&mut self, run: &str, error: &Error) {
        if let Some(ledger) = self.ledger.as_mut() {
            let _ = ledger.append(EntryBody::abort(run, error.to_string()).scripted(self.scripted));
        }
    }
}

/// The ledger output for a package file's bytes.
pub fn package_output(bytes: &[u8]) -> Output {
    Output::Package {
        sha256: Sha256Hash::of(bytes),
    }
}

/// The ledger output for a card.
pub fn card_output(identity: &str) -> Output {
    Output::Card {
        identity: identity.to_string(),
    }
}

/// The ledger output for a card named by its KDD.
pub fn kdd_output(kdd: &[u8]) -> Output {
    card_output(&format!("KDD:{}", hex::encode_upper(kdd)))
}

/// Prints, for a dry run, that a `kind` record would be appended to the ledger, if one is named.
pub fn print_dry_ledger(ledger: Option<&Path>, kind: &str) {
    if let Some(l) = ledger {
        println!("would append a {kind} record to {}", l.display());
    }
}

/// The ledger output for a DAP.
pub fn dap_output(sd_aid: &[u8], card: Option<&str>, dap: &[u8]) -> Output {
    Output::Dap {
        sd_aid_hex: hex::encode(sd_aid),
        card: card.map(str::to_string),
        dap_hex: hex::encode(dap),
    }
}

/// The ledger's record of a token key used (issuer master, vendor DAP master or cipher key): label, ID,
/// type, KCV when the token can give one.
pub fn token_key_output(
    session: &keyman::hsm::TokenSession<'_>,
    key: keyman::hsm::KeyHandle,
    label: &str,
) -> Vec<Output> {
    let Ok(info) = session.key_info(key) else {
        return Vec::new();
    };
    let kcv = session.kcv(key).ok();
    vec![Output::Key {
        label: label.to_string(),
        id_hex: hex::encode(&info.id),
        key_type: key
            .key_type()
            .map_or("unknown", keyman::hsm::SecretKeyType::name)
            .into(),
        kcv_hex: kcv.map(|k| hex::encode(k.value)),
        kcv_method: kcv.map(|k| crate::dap::ledger_kcv_method(k.method)),
    }]
}
