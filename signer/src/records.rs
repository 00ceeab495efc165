//! Records of every signing and every delivery, appended to a ledger in keyman's format so that one
//! `keyman ledger verify` covers key ceremonies, package signing and deliveries to cards alike.
//!
//! What is recorded: the package's SHA-256, the key's label with its KCV and method (or its public key),
//! every DAP with its security domain and card, and the card acted on. Never a key, a PIN or a hash of one:
//! the ledger's entry types have no field for them.
//!
//! A ledger is never created here: it must exist (`keyman ledger init`), so a deleted ledger is not
//! silently started afresh. Every append is checked against, and then moves, the ledger's anchor in the
//! run's token ([`keyman::ledger::anchor`]), so cutting entries, deleting or replacing the file shows at
//! the next append and at `keyman ledger verify --token`. After each record the new head (entry count,
//! fingerprint in hex and words) is printed, for the operator's log and the paper form.

use crate::error::Error;
use keyman::hsm::anchor::AnchorSession;
use keyman::hsm::{Hsm, TokenUri};
use keyman::ledger::{anchor, EntryBody, EntryKind, Head, Ledger, Output, Sha256Hash};
use keyman::pin::PinSource;
use std::path::Path;

/// Most outputs put in one ledger entry: a line stays far below the ledger's 1 MiB line limit even with
/// 512-byte RSA DAPs, so per-card DAPs for many cards are spread over several entries.
pub const OUTPUTS_PER_ENTRY: usize = 500;

/// Opens the existing ledger at `path` to append to it, after verifying its chain. A missing file is an
/// error ([`keyman::ledger::LedgerError::NotFound`]): ledgers are created explicitly, never here.
pub fn open_ledger(path: &Path) -> Result<Ledger, Error> {
    if !path.exists() {
        return Err(keyman::ledger::LedgerError::NotFound {
            path: path.to_path_buf(),
        }
        .into());
    }
    Ok(Ledger::open_append(path)?)
}

/// An open ledger with the token session that holds its anchor.
struct Anchored {
    ledger: Ledger,
    anchor: AnchorSession,
    label: String,
}

impl Anchored {
    /// Holds an exclusive lock on `.postissue-anchor.lock` in the ledger's directory while the anchor
    /// objects change: some tokens (SoftHSM2's file store) do not serialise object changes made by
    /// several processes, and several writers on one host (server instances, tools) share a token.
    fn token_turn(&self) -> Result<std::fs::File, Error> {
        let dir = self
            .ledger
            .path()
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let path = dir.join(".postissue-anchor.lock");
        let io = |e: std::io::Error| Error::Usage(format!("{}: {e}", path.display()));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        fs4::FileExt::lock(&file).map_err(io)?;
        Ok(file)
    }

    /// Fails unless the token's anchor holds exactly the head of the file as opened.
    fn check(&self) -> Result<(), Error> {
        let _turn = self.token_turn()?;
        self.anchor.settle(&self.label, self.ledger.head_state())?;
        let anchored = self.anchor.read(&self.label)?;
        anchor::check(
            self.ledger.path(),
            self.anchor.token(),
            Some(self.ledger.head_state()),
            anchored,
        )?;
        Ok(())
    }

    /// Appends one entry in three steps: the anchor gains an object holding the new head (a token
    /// failure stops here, nothing changed), the file is written (the commit point), then the old
    /// head's object goes. A crash between them leaves both heads in the token, and the next open
    /// keeps the one the file holds ([`AnchorSession::settle`]); a failed file write undoes the first.
    fn append(&mut self, body: EntryBody) -> Result<Head, Error> {
        let _turn = self.token_turn()?;
        let from = self.ledger.head_state();
        let prepared = self.ledger.prepare(body)?;
        let to = prepared.head();
        self.anchor.begin(&self.label, from, to)?;
        if let Err(e) = self.ledger.commit(prepared) {
            let _ = self.anchor.finish(&self.label, from);
            return Err(e.into());
        }
        self.anchor.finish(&self.label, to)?;
        Ok(to)
    }
}

/// An optional ledger: every `record` call is a no-op without `--ledger`.
pub struct Records {
    ledger: Option<Anchored>,
    scripted: bool,
    /// Where each new head goes: standard output for the tools, a log line for a server.
    report: fn(&Path, Head),
}

impl Records {
    /// Opens the ledger named on the command line, if any, with a logged-in session on `token` (the
    /// token the run uses, which holds the ledger's anchor, in the run's module; `pin` as for the run), and
    /// checks the file against the anchor before the run does anything. A PIN from a named source marks
    /// the records as scripted.
    pub fn open(
        path: Option<&Path>,
        token: Option<&TokenUri>,
        pin: &PinSource,
    ) -> Result<Records, Error> {
        let scripted = pin.is_scripted();
        let ledger = match path {
            None => None,
            Some(path) => {
                let token = token.ok_or_else(|| {
                    Error::Usage(format!(
                        "{}: a ledger is anchored in the run's token, and this run names no token key",
                        path.display()
                    ))
                })?;
                let label = anchor::anchor_label(path)?;
                let ledger = open_ledger(path)?;
                let hsm = Hsm::for_uri(token, None)?;
                let anchor = hsm.open_anchor_session(token, pin)?;
                let anchored = Anchored {
                    ledger,
                    anchor,
                    label,
                };
                anchored.check()?;
                Some(anchored)
            }
        };
        Ok(Records {
            ledger,
            scripted,
            report: print_head,
        })
    }

    /// Reports each new head through `report` instead of standard output: a server, whose standard
    /// output is no operator's terminal, logs it.
    pub fn report_heads_with(mut self, report: fn(&Path, Head)) -> Records {
        self.report = report;
        self
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
        ledger.check()?;
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
            let head = ledger.append(body)?;
            if i + 1 == parts {
                (self.report)(ledger.ledger.path(), head);
            }
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
            // Only on a ledger that still matches its anchor, and only while the run is logged in: an
            // abort before the PIN was accepted leaves no record (nothing was done).
            if ledger.check().is_ok() {
                let body = EntryBody::abort(run, error.to_string()).scripted(self.scripted);
                if let Ok(head) = ledger.append(body) {
                    (self.report)(ledger.ledger.path(), head);
                }
            }
        }
    }
}

/// Prints a ledger's new head after an append: what the operator copies to the run's log or paper form.
fn print_head(path: &Path, head: Head) {
    println!(
        "ledger        {}: {} entries, head {}",
        path.display(),
        head.entries,
        head.hash
    );
    println!("read aloud    {}", head.hash.words().join(" "));
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
