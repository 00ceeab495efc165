//! Running a ceremony: every check first, then the steps, each recorded in a new ledger; a failure after
//! the first step undoes what the run created and records the abort.
//!
//! Why all-or-nothing: a ceremony half done leaves keys nobody planned to keep and labels that block the
//! re-run. So keys and files this run made are destroyed again on an abort (the abort entry lists them),
//! and the only steps that cannot be undone (destroying a key, changing a PIN) are placed by the script
//! where nothing can fail after them.

use super::wrapped::{self, WrappedKey, WrappedKeys};
use super::{answer_id, form_method, parse_kcv, Ceremony, PinPolicy, Step, TokenDecl};
use crate::error::Error;
use crate::hsm::signing::PublicKey;
use crate::hsm::{
    pem, Capability, Hsm, Kcv, KeyPairSpec, SecretKeyType, TokenSession, TokenUri, Usage,
    WrapMechanism,
};
use crate::ledger::{EntryBody, EntryKind, InputFile, Ledger, Output, Sha256Hash};
use crate::pin::PinSources;
use crate::prompt::Prompter;
use crate::quorum::{self, PinShare};
use crate::secret::{self, KeyValue};
use gp_core::kcv::KcvMethod;
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// How a ceremony run is set up.
pub struct RunOptions<'a> {
    /// Path of the script (hashed into the ledger).
    pub script_path: &'a Path,
    /// Where the new ledger goes (must not exist).
    pub ledger_path: &'a Path,
    /// Where each token's PIN comes from (tokens with a PIN quorum ignore it).
    pub pins: &'a PinSources,
    /// PKCS#11 module override.
    pub module: Option<&'a Path>,
    /// Who answers questions: people at the terminal, or a script for rehearsals.
    pub prompter: &'a mut dyn Prompter,
    /// Where the run's narrative goes (KCVs for the paper form, what was made); never secrets.
    pub out: &'a mut dyn FnMut(&str),
    /// The script's name of the token that anchors the new ledger ([`crate::ledger::anchor`]): its
    /// head is anchored there when the run ends, completed or aborted. `None` leaves the ledger
    /// unanchored, for `keyman ledger anchor`.
    pub anchor_in: Option<&'a str>,
}

/// What a completed run leaves for the paper form.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// Keys made (label and type), in order.
    pub keys: Vec<String>,
    /// Entries in the ledger.
    pub entries: u64,
    /// The ledger's head hash in hex.
    pub fingerprint_hex: String,
    /// The same as words to read aloud.
    pub fingerprint_words: Vec<&'static str>,
}

/// A token opened for the run.
struct Open<'h> {
    decl: &'h TokenDecl,
    session: TokenSession<'h>,
    pin: SecretString,
    share_holders: Vec<String>,
}

/// What a key looks like to the checks: present in the token or made by an earlier step.
#[derive(Clone, Debug)]
struct KnownKey {
    class: KeyClass,
    id: Vec<u8>,
    secret_type: Option<SecretKeyType>,
    usages: Vec<Usage>,
    extractable: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyClass {
    Secret,
    Pair,
}

/// A wrapped-key file an earlier step of the run will write: its mechanism and its keys' labels and IDs.
type PlannedFile = (WrapMechanism, Vec<(String, Vec<u8>)>);

/// Something the run made, to undo on an abort.
enum Made {
    Key {
        token: usize,
        label: String,
        id: Vec<u8>,
    },
    File(PathBuf),
}

/// What a step produced, for the ledger.
#[derive(Default)]
struct StepRecord {
    outputs: Vec<Output>,
    inputs: Vec<InputFile>,
    participants: Vec<(String, String)>,
    keys: Vec<String>,
}

/// Runs a ceremony: every check first (script, files, answers, tokens, PINs, labels and IDs, keys
/// referred to, mechanisms), then the steps, each recorded in a new ledger. A failure after the ledger is
/// open undoes what the run made and is recorded as an abort.
pub fn run(ceremony: &Ceremony, opts: RunOptions<'_>) -> Result<RunReport, Error> {
    let RunOptions {
        script_path,
        ledger_path,
        pins,
        module,
        prompter,
        out,
        anchor_in,
    } = opts;
    // Files: the ledger and every output must be new; inputs must exist or be made by an earlier step.
    if ledger_path.exists() {
        return Err(Error::OutputExists(ledger_path.to_path_buf()));
    }
    check_files(ceremony)?;
    for name in pins.named() {
        if !ceremony.tokens.iter().any(|t| t.name == name) {
            return Err(Error::BadPinSource(format!(
                "{name}=… names no token of this ceremony (its tokens: {})",
                ceremony
                    .tokens
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    // People: a terminal to ask at, or scripted answers for every question.
    let (ask, reveal) = ceremony.needs_people();
    prompter.ready(ask, reveal)?;
    for (id, _) in ceremony.questions() {
        if prompter.has_answer(&id) == Some(false) {
            return Err(Error::Answers(format!(
                "the scripted answers have no '{id}'; nothing was done"
            )));
        }
    }
    // Tokens: every one present, distinct and logged in.
    let uris = ceremony
        .tokens
        .iter()
        .map(|t| TokenUri::parse(&t.uri))
        .collect::<Result<Vec<_>, _>>()?;
    let hsms = uris
        .iter()
        .map(|u| Hsm::for_uri(u, module))
        .collect::<Result<Vec<_>, _>>()?;
    let mut seen: Vec<(String, String, &str)> = Vec::new();
    for ((decl, uri), hsm) in ceremony.tokens.iter().zip(&uris).zip(&hsms) {
        let (_, label, serial) = hsm.find_token(uri)?;
        if let Some((_, _, other)) = seen.iter().find(|(l, s, _)| *l == label && *s == serial) {
            return Err(Error::Script(format!(
                "tokens '{other}' and '{}' are the same token ('{label}', serial {serial})",
                decl.name
            )));
        }
        seen.push((label, serial, &decl.name));
    }
    let mut tokens: Vec<Open<'_>> = Vec::new();
    for ((decl, uri), hsm) in ceremony.tokens.iter().zip(&uris).zip(&hsms) {
        tokens.push(open_token(decl, uri, hsm, pins, &mut *prompter)?);
    }
    // The plan against what the tokens hold; nothing is created if any of it fails.
    let mechanisms = preflight(ceremony, &tokens)?;
    // The anchor's token, and no anchor of this ledger's name there yet.
    let anchor = match anchor_in {
        None => None,
        Some(name) => {
            let Some(t) = tokens.iter().position(|o| o.decl.name == name) else {
                return Err(Error::Script(format!(
                    "--anchor-token {name} names no token of this ceremony"
                )));
            };
            let label = crate::ledger::anchor::anchor_label(ledger_path)?;
            if let Some(o) = tokens.get(t) {
                o.session.refuse_existing_ledger_anchor(&label)?;
            }
            Some((t, label))
        }
    };

    let scripted = prompter.scripted()
        || ceremony
            .tokens
            .iter()
            .any(|t| t.pin == PinPolicy::Operator && pins.for_token(&t.name).is_scripted());
    let mut ledger = Ledger::create(ledger_path)?;
    let mut start = EntryBody::new(EntryKind::CeremonyStart, ceremony.name.clone())
        .step(truncate(&format!(
            "tokens: {}",
            tokens
                .iter()
                .map(|t| format!(
                    "{} = '{}' serial {}",
                    t.decl.name,
                    t.session.label(),
                    t.session.serial()
                ))
                .collect::<Vec<_>>()
                .join("; ")
        )))
        .scripted(scripted)
        .input(InputFile::from_path(script_path)?);
    for r in &ceremony.roles {
        start = start.participant(r.kind.name(), r.name.clone());
    }
    for t in &tokens {
        for o in &t.share_holders {
            start = start.participant(format!("pin-share {}", t.decl.name), o.clone());
        }
    }
    ledger.append(start)?;
    // The anchor is made before any step, holding the start: a token that cannot hold one (NSS softokn
    // keeps no private token data objects) refuses before any key is made, and no ledger is left.
    let start_head = ledger.head_state();
    if let Some(o) = anchor.as_ref().and_then(|(t, _)| tokens.get(*t)) {
        let label = anchor.as_ref().map_or("", |(_, l)| l.as_str());
        if let Err(e) = o.session.create_ledger_anchor(label, start_head) {
            drop(ledger);
            let _ = std::fs::remove_file(ledger_path);
            return Err(e);
        }
    }
    let anchor_head = |tokens: &[Open<'_>], ledger: &Ledger| -> Result<(), Error> {
        match &anchor {
            Some((t, label)) => match tokens.get(*t) {
                Some(o) => o
                    .session
                    .update_ledger_anchor(label, start_head, ledger.head_state()),
                None => Ok(()),
            },
            None => Ok(()),
        }
    };

    let mut made: Vec<Made> = Vec::new();
    let mut keys = Vec::new();
    let mut failure = None;
    for (n, step) in ceremony.steps.iter().enumerate() {
        let Some(t) = ceremony
            .token_of(step)
            .and_then(|d| tokens.iter().position(|o| o.decl.name == d.name))
        else {
            failure = Some(Error::Script(format!("step {}: unknown token", n + 1)));
            break;
        };
        let mut ctx = StepCtx {
            n: n + 1,
            tokens: &tokens,
            t,
            prompter: &mut *prompter,
            out: &mut *out,
            made: &mut made,
            mechanism: mechanisms.get(&n).copied(),
            ceremony,
        };
        match ctx.execute(step) {
            Ok(record) => {
                let (performers, witnesses) = step.roles();
                let mut body = EntryBody::new(EntryKind::Step, ceremony.name.clone())
                    .step(truncate(&format!(
                        "{}: {}",
                        n + 1,
                        step.describe(tokens.get(t).map_or("?", |o| o.decl.name.as_str()))
                    )))
                    .scripted(scripted);
                for p in performers {
                    body = body.participant("performed-by", p.clone());
                }
                for w in witnesses {
                    body = body.participant("witnessed-by", w.clone());
                }
                for (role, name) in record.participants {
                    body = body.participant(role, name);
                }
                for i in record.inputs {
                    body = body.input(i);
                }
                for o in record.outputs {
                    body = body.output(o);
                }
                if let Err(e) = ledger.append(body) {
                    failure = Some(Error::Ledger(e));
                    break;
                }
                keys.extend(record.keys);
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    if let Some(error) = failure {
        let error = abort(ceremony, &tokens, &mut ledger, made, error, scripted);
        return Err(match anchor_head(&tokens, &ledger) {
            Ok(()) => error,
            Err(e) => Error::Token(format!(
                "{error}; and the ledger could not be anchored: {e}"
            )),
        });
    }
    ledger
        .append(EntryBody::new(EntryKind::CeremonyEnd, ceremony.name.clone()).scripted(scripted))?;
    anchor_head(&tokens, &ledger)?;
    let report = ledger.report();
    Ok(RunReport {
        keys,
        entries: report.entries,
        fingerprint_hex: report.fingerprint_hex,
        fingerprint_words: report.fingerprint_words,
    })
}

/// Undoes what the run made (newest first), records the abort with what was undone, and returns the error.
fn abort(
    ceremony: &Ceremony,
    tokens: &[Open<'_>],
    ledger: &mut Ledger,
    made: Vec<Made>,
    error: Error,
    scripted: bool,
) -> Error {
    let mut rolled_back = Vec::new();
    let mut outputs = Vec::new();
    let mut problems = Vec::new();
    for m in made.into_iter().rev() {
        match m {
            Made::Key { token, label, id } => {
                let Some(t) = tokens.get(token) else { continue };
                match t.session.destroy_labelled(&label) {
                    Ok(_) => {
                        outputs.push(Output::Destroyed {
                            label: label.clone(),
                            id_hex: hex::encode(&id),
                        });
                        rolled_back.push(format!("'{label}' in token '{}'", t.decl.name));
                    }
                    Err(e) => problems.push(format!("could not destroy '{label}': {e}")),
                }
            }
            Made::File(path) => {
                if let Err(e) = std::fs::remove_file(&path) {
                    problems.push(format!("could not remove {}: {e}", path.display()));
                }
            }
        }
    }
    let mut text = error.to_string();
    if !problems.is_empty() {
        text.push_str(&format!(" (undoing the run: {})", problems.join("; ")));
    }
    let mut body = EntryBody::abort(ceremony.name.clone(), text).scripted(scripted);
    for o in outputs {
        body = body.output(o);
    }
    let error = if problems.is_empty() {
        error
    } else {
        Error::Token(format!(
            "{error}; undoing the run failed: {}",
            problems.join("; ")
        ))
    };
    match ledger.append(body) {
        Ok(_) => Error::Aborted {
            error: Box::new(error),
            rolled_back,
        },
        Err(e) => Error::Token(format!(
            "{error}; and the abort could not be recorded in the ledger: {e}"
        )),
    }
}

fn truncate(s: &str) -> String {
    let mut end = s.len().min(250);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default().to_string()
}

/// Outputs absent and named once; inputs present or written by an earlier step.
fn check_files(ceremony: &Ceremony) -> Result<(), Error> {
    let mut written: Vec<&str> = Vec::new();
    for (n, step) in ceremony.steps.iter().enumerate() {
        if let Step::UnwrapKeys { input, .. } = step {
            if !written.contains(&input.as_str()) && !Path::new(input).is_file() {
                return Err(Error::Script(format!(
                    "step {} ({} '{}'): input {input} does not exist and no earlier step writes it",
                    n + 1,
                    step.kind(),
                    step.subject()
                )));
            }
        }
        if let Some(out) = step.output_file() {
            if Path::new(out).exists() {
                return Err(Error::OutputExists(PathBuf::from(out)));
            }
            written.push(out);
        }
    }
    Ok(())
}

/// Opens one token: PIN from the operator's source, or rebuilt from officers' shares.
fn open_token<'h>(
    decl: &'h TokenDecl,
    uri: &TokenUri,
    hsm: &'h Hsm,
    pins: &PinSources,
    prompter: &mut dyn Prompter,
) -> Result<Open<'h>, Error> {
    match &decl.pin {
        PinPolicy::Operator => {
            let (_, label, _) = hsm.find_token(uri)?;
            let pin = pins.for_token(&decl.name).read(&label)?;
            let session = hsm.open_with_pin(uri, &pin)?;
            Ok(Open {
                decl,
                session,
                pin,
                share_holders: Vec::new(),
            })
        }
        PinPolicy::Quorum {
            threshold,
            officers,
        } => {
            let mut shares = Vec::new();
            let mut holders = Vec::new();
            for (i, o) in officers.iter().enumerate() {
                if shares.len() >= *threshold {
                    break;
                }
                let typed = prompter.secret(
                    &answer_id::pin_share(&decl.name, o),
                    &format!(
                        "officer {o}: your PIN share for token '{}' (leave empty if you are not taking part)",
                        decl.name
                    ),
                )?;
                if typed.expose_secret().trim().is_empty() {
                    continue;
                }
                let who = format!("officer {o}'s share for token '{}'", decl.name);
                let share = PinShare::parse(typed.expose_secret(), &who)?;
                if usize::from(share.index()) != i + 1 {
                    return Err(Error::Quorum(format!(
                        "{who} is share number {}, but {o} holds share {}; each officer types their own",
                        share.index(),
                        i + 1
                    )));
                }
                shares.push(share);
                holders.push(o.clone());
            }
            let pin = quorum::rebuild_pin(&shares, *threshold)?;
            let session = hsm.open_with_pin(uri, &pin)?;
            Ok(Open {
                decl,
                session,
                pin,
                share_holders: holders,
            })
        }
    }
}

/// Checks every step against what the tokens hold, simulating the run; returns the wrapping mechanism
/// chosen for each `WrapKeys` step (by step index).
fn preflight(
    ceremony: &Ceremony,
    tokens: &[Open<'_>],
) -> Result<HashMap<usize, WrapMechanism>, Error> {
    let mut known: Vec<HashMap<String, Option<KnownKey>>> = vec![HashMap::new(); tokens.len()];
    let mut planned_ids: Vec<Vec<Vec<u8>>> = vec![Vec::new(); tokens.len()];
    let mut planned_files: HashMap<String, PlannedFile> = HashMap::new();
    let mut mechanisms = HashMap::new();
    for (n, step) in ceremony.steps.iter().enumerate() {
        let at = format!("step {} ({} '{}')", n + 1, step.kind(), step.subject());
        let fail = |m: String| Error::Script(format!("{at}: {m}; nothing was created"));
        let t = ceremony
            .token_of(step)
            .and_then(|d| tokens.iter().position(|o| o.decl.name == d.name))
            .ok_or_else(|| fail("unknown token".into()))?;
        let (Some(open), Some(keys), Some(ids)) =
            (tokens.get(t), known.get_mut(t), planned_ids.get_mut(t))
        else {
            return Err(fail("unknown token".into()));
        };
        let s = &open.session;
        let tname = &open.decl.name;
        let lookup = |keys: &mut HashMap<String, Option<KnownKey>>, label: &str| {
            if let Some(k) = keys.get(label) {
                return Ok(k.clone());
            }
            let k = existing_key(s, label)?;
            keys.insert(label.to_string(), k.clone());
            Ok::<_, Error>(k)
        };
        let free = |keys: &mut HashMap<String, Option<KnownKey>>,
                    ids: &mut Vec<Vec<u8>>,
                    label: &str,
                    id: &[u8]|
         -> Result<(), Error> {
            if lookup(keys, label)?.is_some() || !s.objects_labelled(label)?.is_empty() {
                return Err(fail(format!(
                    "token '{tname}' already holds an object labelled '{label}'"
                )));
            }
            if ids.iter().any(|i| i == id) || !s.objects_with_id(id)?.is_empty() {
                return Err(fail(format!(
                    "token '{tname}' already holds an object with id {}",
                    hex::encode(id)
                )));
            }
            ids.push(id.to_vec());
            Ok(())
        };
        let need_secret = |keys: &mut HashMap<String, Option<KnownKey>>,
                           label: &str,
                           usage: Option<Usage>,
                           extractable: bool|
         -> Result<KnownKey, Error> {
            let k = lookup(keys, label)?
                .ok_or_else(|| fail(format!("token '{tname}' holds no key labelled '{label}'")))?;
            if k.class != KeyClass::Secret || k.secret_type.is_none() {
                return Err(fail(format!(
                    "'{label}' in token '{tname}' is not a secret key of a type keyman knows"
                )));
            }
            if let Some(u) = usage {
                if !k.usages.contains(&u) {
                    return Err(fail(format!(
                        "'{label}' in token '{tname}' may not {}",
                        u.name()
                    )));
                }
            }
            if extractable && !k.extractable {
                return Err(fail(format!(
                    "'{label}' in token '{tname}' is not extractable, so its policy does not let it leave the token"
                )));
            }
            Ok(k)
        };
        match step {
            Step::GenerateSecretKey {
                label,
                key_type,
                usages,
                extractable,
                ..
            }
            | Step::FormKey {
                label,
                key_type,
                usages,
                extractable,
                ..
            } => {
                let spec = step.key_spec()?.ok_or_else(|| fail("no key".into()))?;
                free(keys, ids, label, &spec.id)?;
                if matches!(step, Step::GenerateSecretKey { .. })
                    && !s.can(key_type.keygen_mechanism(), Capability::Generate)?
                {
                    return Err(fail(format!(
                        "token '{tname}' cannot generate {} keys",
                        key_type.name()
                    )));
                }
                keys.insert(
                    label.clone(),
                    Some(KnownKey {
                        class: KeyClass::Secret,
                        id: spec.id,
                        secret_type: Some(*key_type),
                        usages: usages.clone(),
                        extractable: *extractable,
                    }),
                );
            }
            Step::GenerateKeyPair {
                label,
                id,
                key_type,
                ..
            } => {
                let id = hex::decode(id).map_err(|_| fail("id is not hex".into()))?;
                free(keys, ids, label, &id)?;
                if !s.can(key_type.keygen_mechanism(), Capability::GenerateKeyPair)? {
                    return Err(fail(format!(
                        "token '{tname}' cannot generate {} key pairs",
                        key_type.name()
                    )));
                }
                keys.insert(
                    label.clone(),
                    Some(KnownKey {
                        class: KeyClass::Pair,
                        id,
                        secret_type: None,
                        usages: Vec::new(),
                        extractable: false,
                    }),
                );
            }
            Step::ExportComponents { key, .. } => {
                need_secret(keys, key, None, true)?;
                if !s.can(
                    cryptoki::mechanism::MechanismType::AES_KEY_WRAP,
                    Capability::Wrap,
                )? {
                    return Err(fail(format!(
                        "token '{tname}' has no AES-KEY-WRAP to hand the key over for splitting; it is never read in clear instead"
                    )));
                }
            }
            Step::WrapKeys {
                keys: labels,
                kek,
                out,
                ..
            } => {
                let k = need_secret(keys, kek, Some(Usage::Wrap), false)?;
                let kek_type = k
                    .secret_type
                    .ok_or_else(|| fail("KEK of unknown type".into()))?;
                let mut lens = Vec::new();
                let mut carried = Vec::new();
                for l in labels {
                    let key = need_secret(keys, l, None, true)?;
                    lens.push(key.secret_type.map_or(0, |t| t.byte_len()));
                    carried.push((l.clone(), key.id.clone()));
                }
                // The mechanism must also be one every receiving token of this run can unwrap with.
                let receivers: Vec<&Open<'_>> = ceremony
                    .steps
                    .iter()
                    .filter_map(|st| match st {
                        Step::UnwrapKeys { input, .. } if input == out => ceremony
                            .token_of(st)
                            .and_then(|d| tokens.iter().find(|o| o.decl.name == d.name)),
                        _ => None,
                    })
                    .collect();
                let mut chosen = None;
                for m in WrapMechanism::candidates(kek_type) {
                    if !lens.iter().all(|l| m.fits(*l)) {
                        continue;
                    }
                    let mut ok = s.can(mech_type(*m), Capability::Wrap)?;
                    for r in &receivers {
                        ok = ok && r.session.can(mech_type(*m), Capability::Unwrap)?;
                    }
                    if ok {
                        chosen = Some(*m);
                        break;
                    }
                }
                let Some(m) = chosen else {
                    // Name the side that cannot, in the token layer's words.
                    s.wrap_mechanism(kek_type, Capability::Wrap, &lens)
                        .map_err(|e| fail(e.to_string()))?;
                    return Err(fail(format!(
                        "no mechanism to wrap under a {} KEK is available both here and at the receiving token; keys are never moved in clear instead{}",
                        kek_type.name(),
                        if kek_type.is_des() { " (use an AES KEK)" } else { "" }
                    )));
                };
                mechanisms.insert(n, m);
                planned_files.insert(out.clone(), (m, carried));
            }
            Step::UnwrapKeys {
                input,
                kek,
                keys: labels,
                ..
            } => {
                need_secret(keys, kek, Some(Usage::Unwrap), false)?;
                let (mechanism, carried) = match planned_files.get(input) {
                    Some(p) => p.clone(),
                    None => {
                        let file = WrappedKeys::load(Path::new(input))?;
                        let mut carried = Vec::new();
                        for l in labels {
                            let k = file.find(l).map_err(|e| fail(format!("{input}: {e}")))?;
                            carried.push((k.label, k.id));
                        }
                        (file.mechanism, carried)
                    }
                };
                if !s.can(mech_type(mechanism), Capability::Unwrap)? {
                    return Err(fail(format!(
                        "token '{tname}' cannot unwrap with {}, the mechanism of {input}; keys are never moved in clear instead",
                        mechanism.name()
                    )));
                }
                for l in labels {
                    let id = carried
                        .iter()
                        .find(|(cl, _)| cl == l)
                        .map(|(_, id)| id.clone())
                        .ok_or_else(|| fail(format!("{input} carries no key '{l}'")))?;
                    free(keys, ids, l, &id)?;
                    keys.insert(
                        l.clone(),
                        Some(KnownKey {
                            class: KeyClass::Secret,
                            id,
                            secret_type: None,
                            usages: Vec::new(),
                            extractable: false,
                        }),
                    );
                }
            }
            Step::ExportPublicKey { key, .. } => {
                let k = lookup(keys, key)?.ok_or_else(|| {
                    fail(format!(
                        "token '{tname}' holds no key pair labelled '{key}'"
                    ))
                })?;
                if k.class != KeyClass::Pair {
                    return Err(fail(format!(
                        "'{key}' in token '{tname}' is not a key pair"
                    )));
                }
            }
            Step::DestroyKey { key, .. } => {
                if lookup(keys, key)?.is_none() {
                    return Err(fail(format!(
                        "token '{tname}' holds no key labelled '{key}'"
                    )));
                }
                keys.insert(key.clone(), None);
            }
            Step::EnrolPinQuorum { .. } => {}
        }
    }
    Ok(mechanisms)
}

fn mech_type(m: WrapMechanism) -> cryptoki::mechanism::MechanismType {
    use cryptoki::mechanism::MechanismType;
    match m {
        WrapMechanism::AesKeyWrap => MechanismType::AES_KEY_WRAP,
        WrapMechanism::AesKeyWrapPad => MechanismType::AES_KEY_WRAP_PAD,
        WrapMechanism::AesCbc => MechanismType::AES_CBC,
        WrapMechanism::Des3Cbc => MechanismType::DES3_CBC,
    }
}

/// What the token holds under `label`, if anything.
fn existing_key(s: &TokenSession<'_>, label: &str) -> Result<Option<KnownKey>, Error> {
    let found = s.keys_labelled(label)?;
    if found.is_empty() {
        return Ok(None);
    }
    let secret = found
        .iter()
        .filter(|(c, _)| *c == cryptoki::object::ObjectClass::SECRET_KEY)
        .count();
    if secret > 1 || (secret == 1 && found.len() > 1) {
        return Err(Error::Key {
            token: s.label().to_string(),
            problem: format!(
                "more than one key object is labelled '{label}'; labels must be unique"
            ),
        });
    }
    if secret == 1 {
        let h = s.find_secret_key(label)?;
        let info = s.key_info(h)?;
        return Ok(Some(KnownKey {
            class: KeyClass::Secret,
            id: info.id,
            secret_type: h.key_type(),
            usages: info.usages,
            extractable: info.extractable,
        }));
    }
    let id = found
        .first()
        .map(|(c, h)| s.object_info(*h, *c).map(|i| i.id))
        .transpose()?
        .unwrap_or_default();
    Ok(Some(KnownKey {
        class: KeyClass::Pair,
        id,
        secret_type: None,
        usages: Vec::new(),
        extractable: false,
    }))
}

/// Everything one step needs.
struct StepCtx<'r, 'h> {
    n: usize,
    tokens: &'r [Open<'h>],
    t: usize,
    prompter: &'r mut dyn Prompter,
    out: &'r mut dyn FnMut(&str),
    made: &'r mut Vec<Made>,
    mechanism: Option<WrapMechanism>,
    ceremony: &'r Ceremony,
}

impl StepCtx<'_, '_> {
    fn say(&mut self, text: &str) {
        (self.out)(text);
    }

    fn execute(&mut self, step: &Step) -> Result<StepRecord, Error> {
        let n = self.n;
        let tokens = self.tokens;
        let open = tokens
            .get(self.t)
            .ok_or_else(|| Error::Script("unknown token".into()))?;
        let tname = open.decl.name.clone();
        let s = &open.session;
        let mut rec = StepRecord::default();
        match step {
            Step::GenerateSecretKey { .. } => {
                let spec = step
                    .key_spec()?
                    .ok_or_else(|| Error::Script("no key".into()))?;
                let (key, _) = s.generate_secret(&spec)?;
                self.made.push(Made::Key {
                    token: self.t,
                    label: spec.label.clone(),
                    id: spec.id.clone(),
                });
                let kcv = s.kcv(key)?;
                self.say(&format!(
                    "step {n}: generated {} '{}' (id {}) in token '{tname}' — KCV {kcv}",
                    spec.key_type.name(),
                    spec.label,
                    hex::encode(&spec.id)
                ));
                rec.outputs.push(key_output(
                    &spec.label,
                    &spec.id,
                    spec.key_type.name(),
                    Some(kcv),
                ));
                rec.keys
                    .push(format!("{} {}", spec.label, spec.key_type.name()));
            }
            Step::GenerateKeyPair {
                label,
                id,
                key_type,
                usages,
                extractable,
                ..
            } => {
                let spec = KeyPairSpec {
                    label: label.clone(),
                    id: hex::decode(id).map_err(|_| Error::Script("id is not hex".into()))?,
                    key_type: *key_type,
                    usages: usages.clone(),
                    extractable: *extractable,
                };
                s.generate_key_pair(&spec)?;
                self.made.push(Made::Key {
                    token: self.t,
                    label: label.clone(),
                    id: spec.id.clone(),
                });
                let (pem, fingerprint) = public_pem(s, label)?;
                self.say(&format!(
                    "step {n}: generated {} key pair '{label}' (id {id}) in token '{tname}' — public key SHA-256 {fingerprint}",
                    key_type.name()
                ));
                rec.outputs
                    .push(key_output(label, &spec.id, key_type.name(), None));
                rec.outputs.push(Output::PublicKey {
                    label: label.clone(),
                    pem,
                });
                rec.keys.push(format!("{label} {}", key_type.name()));
            }
            Step::FormKey {
                label, components, ..
            } => {
                let spec = step
                    .key_spec()?
                    .ok_or_else(|| Error::Script("no key".into()))?;
                let method = form_method(spec.key_type);
                let count = components.len();
                self.say(&format!(
                    "step {n}: forming {} '{label}' in token '{tname}' from {count} components",
                    spec.key_type.name()
                ));
                let mut values = Vec::new();
                for (i, c) in components.iter().enumerate() {
                    let idx = i + 1;
                    let who = format!("component {idx} of '{label}' (custodian {})", c.custodian);
                    let typed = self.prompter.secret(
                        &answer_id::component(&tname, label, idx),
                        &format!(
                            "custodian {}: type component {idx} of {count} of '{label}' ({} hex digits, not shown)",
                            c.custodian,
                            spec.key_type.byte_len() * 2
                        ),
                    )?;
                    if typed.expose_secret().trim().is_empty() {
                        return Err(Error::Component(format!("{who}: nothing was typed")));
                    }
                    let v = KeyValue::parse_component(typed.expose_secret(), spec.key_type, &who)?;
                    drop(typed);
                    let kcv = v.kcv(method)?;
                    self.say(&format!("  {who}: KCV {kcv}"));
                    match &c.kcv {
                        Some(expected) => {
                            let want = parse_kcv(expected)?;
                            if kcv.value != want {
                                return Err(Error::Component(format!(
                                    "{who} has KCV {}, but the script expects {}: a wrong component; the key was not created",
                                    hex::encode_upper(kcv.value),
                                    hex::encode_upper(want)
                                )));
                            }
                        }
                        None => {
                            let answer = self.prompter.line(
                                &answer_id::kcv_ok(&tname, label, idx),
                                &format!(
                                    "custodian {}: is {} the KCV on your form? type yes",
                                    c.custodian,
                                    hex::encode_upper(kcv.value)
                                ),
                            )?;
                            if !answer.eq_ignore_ascii_case("yes") {
                                return Err(Error::Declined(format!(
                                    "custodian {} did not confirm the KCV of {who}; the key was not created",
                                    c.custodian
                                )));
                            }
                        }
                    }
                    rec.outputs.push(Output::Component {
                        label: label.clone(),
                        index: u32::try_from(idx).unwrap_or(u32::MAX),
                        count: u32::try_from(count).unwrap_or(u32::MAX),
                        custodian: c.custodian.clone(),
                        kcv_hex: hex::encode(kcv.value),
                        kcv_method: ledger_method(method),
                    });
                    rec.participants
                        .push(("custodian".into(), c.custodian.clone()));
                    values.push(v);
                }
                let key_value = secret::combine(&values, spec.key_type)?;
                drop(values);
                let kcv = key_value.kcv(method)?;
                self.say(&format!(
                    "  combined key '{label}': KCV {kcv}{}",
                    if spec.key_type.is_des() {
                        " (DES parity fixed)"
                    } else {
                        ""
                    }
                ));
                let (key, _) = s.create_secret_from_value(&spec, &key_value)?;
                self.made.push(Made::Key {
                    token: self.t,
                    label: label.clone(),
                    id: spec.id.clone(),
                });
                let checked = confirm_in_token(s, key, &key_value)?;
                drop(key_value);
                self.say(&format!(
                    "step {n}: formed {} '{label}' (id {}) in token '{tname}' — KCV {kcv}{}",
                    spec.key_type.name(),
                    hex::encode(&spec.id),
                    match checked {
                        Some(k) => format!(", confirmed by the token ({k})"),
                        None => ", the token keeps no check value to confirm it".into(),
                    }
                ));
                rec.outputs
                    .push(key_output(label, &spec.id, spec.key_type.name(), Some(kcv)));
                rec.keys.push(format!("{label} {}", spec.key_type.name()));
            }
            Step::ExportComponents {
                key, custodians, ..
            } => {
                let handle = s.find_secret_key(key)?;
                let value = s.export_value(handle)?;
                let key_type = value.key_type();
                let method = form_method(key_type);
                let count = custodians.len();
                let parts = secret::split(&value, count, |len| {
                    s.random(u32::try_from(len).unwrap_or(32))
                })?;
                let kcv = value.kcv(method)?;
                drop(value);
                self.say(&format!(
                    "step {n}: exporting '{key}' of token '{tname}' (KCV {kcv}) as {count} components"
                ));
                for (i, (part, c)) in parts.iter().zip(custodians).enumerate() {
                    let idx = i + 1;
                    let pkcv = part.kcv(method)?;
                    let shown = part.to_groups();
                    self.prompter.reveal(
                        &answer_id::export(&tname, key, idx),
                        c,
                        &format!("Component {idx} of {count} of key '{key}' — KCV {pkcv}"),
                        &shown,
                    )?;
                    self.say(&format!(
                        "  component {idx} shown to custodian {c}: KCV {pkcv}"
                    ));
                    rec.outputs.push(Output::Component {
                        label: key.clone(),
                        index: u32::try_from(idx).unwrap_or(u32::MAX),
                        count: u32::try_from(count).unwrap_or(u32::MAX),
                        custodian: c.clone(),
                        kcv_hex: hex::encode(pkcv.value),
                        kcv_method: ledger_method(method),
                    });
                    rec.participants.push(("custodian".into(), c.clone()));
                }
                let id = s.key_info(handle)?.id;
                rec.outputs
                    .push(key_output(key, &id, key_type.name(), Some(kcv)));
            }
            Step::WrapKeys { keys, kek, out, .. } => {
                let mechanism = self
                    .mechanism
                    .ok_or_else(|| Error::Script("no wrapping mechanism was chosen".into()))?;
                let kek_handle = s.find_secret_key(kek)?;
                let mut file = WrappedKeys {
                    format: wrapped::FORMAT.into(),
                    version: 1,
                    ceremony: self.ceremony.name.clone(),
                    from_token: s.label().to_string(),
                    kek: kek.clone(),
                    mechanism,
                    keys: Vec::new(),
                };
                for label in keys {
                    let h = s.find_secret_key(label)?;
                    let info = s.key_info(h)?;
                    let key_type = h
                        .key_type()
                        .ok_or_else(|| Error::Script(format!("'{label}' is of an unknown type")))?;
                    let kcv = s.kcv(h)?;
                    let blob = s.wrap_key(mechanism, kek_handle, h)?;
                    file.keys.push(WrappedKey {
                        label: label.clone(),
                        id: hex::encode(&info.id),
                        key_type: key_type.name().into(),
                        usages: info.usages.iter().map(|u| u.name().to_string()).collect(),
                        kcv: hex::encode_upper(kcv.value),
                        kcv_method: wrapped::method_name(kcv.method).into(),
                        wrapped: hex::encode(&blob),
                    });
                    self.say(&format!(
                        "  wrapped '{label}' (id {}) — KCV {kcv}",
                        hex::encode(&info.id)
                    ));
                    rec.outputs
                        .push(key_output(label, &info.id, key_type.name(), Some(kcv)));
                }
                let text = serde_json::to_string_pretty(&file)
                    .map_err(|e| Error::Token(format!("cannot encode the wrapped keys: {e}")))?;
                let path = PathBuf::from(out);
                write_new(&path, format!("{text}\n").as_bytes(), &mut *self.made)?;
                self.say(&format!(
                    "step {n}: wrapped {} key(s) of token '{tname}' under KEK '{kek}' with {} into {out}",
                    keys.len(),
                    mechanism.name()
                ));
                rec.outputs.push(Output::File {
                    name: out.clone(),
                    sha256: Sha256Hash::of(text.as_bytes()),
                });
            }
            Step::UnwrapKeys {
                input,
                kek,
                keys,
                extractable,
                ..
            } => {
                let file = WrappedKeys::load(Path::new(input))?;
                rec.inputs.push(InputFile::from_path(Path::new(input))?);
                let kek_handle = s.find_secret_key(kek)?;
                for label in keys {
                    let k = file.find(label)?;
                    let spec = crate::hsm::SecretKeySpec {
                        label: k.label.clone(),
                        id: k.id.clone(),
                        key_type: k.key_type,
                        usages: k.usages.clone(),
                        extractable: *extractable,
                    };
                    s.unwrap_checked(file.mechanism, kek_handle, &k.wrapped, &spec, k.kcv)?;
                    self.made.push(Made::Key {
                        token: self.t,
                        label: label.clone(),
                        id: k.id.clone(),
                    });
                    self.say(&format!(
                        "  unwrapped '{label}' (id {}) into token '{tname}' — KCV {} matches",
                        hex::encode(&k.id),
                        k.kcv
                    ));
                    rec.outputs
                        .push(key_output(label, &k.id, k.key_type.name(), Some(k.kcv)));
                    rec.keys.push(format!("{label} {}", k.key_type.name()));
                }
                self.say(&format!(
                    "step {n}: unwrapped {} key(s) from {input} under KEK '{kek}' into token '{tname}'",
                    keys.len()
                ));
            }
            Step::ExportPublicKey { key, out, .. } => {
                let (pem, fingerprint) = public_pem(s, key)?;
                let path = PathBuf::from(out);
                write_new(&path, pem.as_bytes(), &mut *self.made)?;
                self.say(&format!(
                    "step {n}: wrote the public key of '{key}' to {out} — SHA-256 {fingerprint}"
                ));
                rec.outputs.push(Output::PublicKey {
                    label: key.clone(),
                    pem: pem.clone(),
                });
                rec.outputs.push(Output::File {
                    name: out.clone(),
                    sha256: Sha256Hash::of(pem.as_bytes()),
                });
            }
            Step::DestroyKey { key, .. } => {
                let typed = self.prompter.line(
                    &answer_id::destroy(&tname, key),
                    &format!(
                        "officer: to destroy '{key}' in token '{tname}' for good, type its label"
                    ),
                )?;
                if typed != *key {
                    return Err(Error::Declined(format!(
                        "the label typed does not match '{key}'; nothing was destroyed"
                    )));
                }
                let id = existing_key(s, key)?.map(|k| k.id).unwrap_or_default();
                let count = s.destroy_labelled(key)?;
                self.made
                    .retain(|m| !matches!(m, Made::Key { token, label, .. } if *token == self.t && label == key));
                self.say(&format!(
                    "step {n}: destroyed '{key}' (id {}, {count} object(s)) in token '{tname}'",
                    hex::encode(&id)
                ));
                rec.outputs.push(Output::Destroyed {
                    label: key.clone(),
                    id_hex: hex::encode(&id),
                });
            }
            Step::EnrolPinQuorum {
                threshold,
                officers,
                ..
            } => {
                let new_bytes = quorum::pin_from_random(
                    &s.random(u32::try_from(quorum::PIN_BYTES).unwrap_or(16))?,
                )?;
                let shares = quorum::split(&new_bytes, *threshold, officers.len())?;
                for (share, o) in shares.iter().zip(officers) {
                    let text = share.to_text();
                    self.prompter.reveal(
                        &answer_id::pin_share(&tname, o),
                        o,
                        &format!(
                            "PIN share {} of {} for token '{tname}' ({threshold} open it)",
                            share.index(),
                            officers.len()
                        ),
                        &text,
                    )?;
                    self.say(&format!(
                        "  PIN share {} shown to officer {o}",
                        share.index()
                    ));
                    rec.participants
                        .push((format!("pin-share {tname}"), o.clone()));
                }
                for (share, o) in shares.iter().zip(officers) {
                    let who = format!("officer {o}'s share for token '{tname}'");
                    let typed = self.prompter.secret(
                        &answer_id::pin_share(&tname, o),
                        &format!(
                            "officer {o}: type your PIN share back to prove it is written down"
                        ),
                    )?;
                    let back = PinShare::parse(typed.expose_secret(), &who)?;
                    if !back.same_as(share) {
                        return Err(Error::Quorum(format!(
                            "{who} as typed back differs from the one shown; the PIN was not changed"
                        )));
                    }
                }
                let new_pin = quorum::pin_text(&new_bytes);
                s.change_pin(&open.pin, &new_pin)?;
                self.say(&format!(
                    "step {n}: the user PIN of token '{tname}' is now held as {threshold}-of-{} shares by {}; no one person knows it",
                    officers.len(),
                    officers.join(", ")
                ));
            }
        }
        Ok(rec)
    }
}

/// Checks a formed key's value in the token against the host's: by encryption when the key may encrypt,
/// else the stored check value. `None` when the token can show neither.
fn confirm_in_token(
    s: &TokenSession<'_>,
    key: crate::hsm::KeyHandle,
    value: &KeyValue,
) -> Result<Option<Kcv>, Error> {
    let mut methods = vec![form_method(value.key_type())];
    if !value.key_type().is_des() {
        methods.push(KcvMethod::AesZeros);
    }
    for m in methods {
        if let Some(got) = s.kcv_in(key, m)? {
            let want = value.kcv(m)?;
            if got != want {
                let _ = s.destroy(key);
                return Err(Error::Key {
                    token: s.label().to_string(),
                    problem: format!(
                        "the key created has KCV {got} in the token but {want} on the host; it was destroyed"
                    ),
                });
            }
            return Ok(Some(got));
        }
    }
    Ok(None)
}

/// The PEM of a key pair's public key and the SHA-256 of its DER, in hex.
fn public_pem(s: &TokenSession<'_>, label: &str) -> Result<(String, String), Error> {
    let der = match s.find_public_key(label)? {
        PublicKey::Rsa { modulus, exponent } => pem::rsa_spki(&modulus, &exponent),
        PublicKey::EcP256 { point } => pem::ec_p256_spki(&point),
    };
    Ok((
        pem::pem("PUBLIC KEY", &der),
        hex::encode_upper(Sha256Hash::of(&der).as_bytes()),
    ))
}

/// Writes a new file (never overwriting one) and remembers it for an abort.
fn write_new(path: &Path, data: &[u8], made: &mut Vec<Made>) -> Result<(), Error> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::OutputExists(path.to_path_buf())
            } else {
                Error::Io {
                    path: path.to_path_buf(),
                    source: e,
                }
            }
        })?;
    made.push(Made::File(path.to_path_buf()));
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: e,
        })
}

fn ledger_method(m: KcvMethod) -> crate::ledger::KcvMethod {
    match m {
        KcvMethod::Des3Zeros => crate::ledger::KcvMethod::Des3Zeros,
        KcvMethod::AesOnes => crate::ledger::KcvMethod::AesOnes,
        KcvMethod::AesZeros => crate::ledger::KcvMethod::AesZeros,
    }
}

fn key_output(label: &str, id: &[u8], key_type: &str, kcv: Option<Kcv>) -> Output {
    Output::Key {
        label: label.to_string(),
        id_hex: hex::encode(id),
        key_type: key_type.to_string(),
        kcv_hex: kcv.map(|k| hex::encode(k.value)),
        kcv_method: kcv.map(|k| ledger_method(k.method)),
    }
}
