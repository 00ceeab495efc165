//! Personalisation batches: for every card of a card list, the PUT KEY command that gives the card its new
//! per-card key set, with each key wrapped inside the token under that card's current DEK.
//!
//! Built for a bureau's volumes:
//! * **streaming**: the card list is read line by line and results are written as they come, so memory does
//!   not grow with the number of cards (a window of at most `8 × workers` cards is in flight);
//! * **parallel**: each worker thread has its own session on the token (PKCS#11 logs in once per
//!   application, so the PIN is read once);
//! * **in order and resumable**: results are written in card-list order, one JSON line per card. After a
//!   crash, running the same command again keeps the complete lines already written (a cut last line is
//!   dropped), checks that the last kept line is the card the list has at that position, and carries on
//!   from the next card: no card is skipped and none appears twice. Wrapping is deterministic (AES-CBC with a
//!   zero IV), so a card redone after a crash gets the same bytes;
//! * **observable**: a progress bar on a terminal, JSON lines on standard error otherwise.
//!
//! SCP03 cards only: SCP02 PUT KEY key data is encrypted under the session DEK of a live channel, so it
//! cannot be prepared for a card list ahead of time; `--scp 02` stops with that reason (after the capability
//! probe, which refuses first on a token without DES3-ECB wrap, such as SoftHSM2). It never exports a key to
//! wrap it outside.
//!
//! Output line (`--out`): `{"line":N,"identity":"…","kdd":"…","old_kvn":"30","new_kvn":"31",
//! "put_key":"80D8…","kcvs":["…","…","…"],"kcv_method":"aes-ecb-ones"}` where `put_key` is the whole PUT KEY
//! command before secure messaging (the bureau's station sends it through the card's secure channel).

use crate::cards::{CardEntry, CardReader};
use crate::diversify::{derive_card_keys, derive_one, Purpose};
use crate::error::Error;
use crate::records::Records;
use gp_core::diversify::{KeyRole, Scheme};
use keyman::hsm::{DerivedKey, Hsm, KeyHandle, SecretKeyType, TokenSession, TokenUri, Usage};
use keyman::ledger::{EntryKind, InputFile};
use keyman::pin::PinSource;
use secrecy::SecretSlice;
use std::collections::BTreeMap;
use std::io::{BufRead, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

/// Command-line arguments of `signer batch`.
#[derive(clap::Args, Debug, Clone)]
pub struct BatchArgs {
    /// Card list (CSV: identity,kdd).
    #[arg(long)]
    pub cards: PathBuf,
    /// Master of the new keys: pkcs11:token=LABEL;object=KEY-LABEL.
    #[arg(long)]
    pub master: String,
    /// Scheme of the new keys: emv, visa2 (3DES master) or aes (AES master).
    #[arg(long, default_value = "emv")]
    pub scheme: Scheme,
    /// Master of the cards' current keys (same token); without it the cards hold the default transport key.
    #[arg(long)]
    pub current_master: Option<String>,
    /// Scheme of the current keys.
    #[arg(long, default_value = "emv")]
    pub current_scheme: Scheme,
    /// Key version number of the current key set (hex), replaced by the PUT KEY.
    #[arg(long, default_value = "30")]
    pub old_kvn: String,
    /// Key version number of the new key set (hex).
    #[arg(long, default_value = "31")]
    pub new_kvn: String,
    /// Secure channel protocol of the cards: 03 (AES keys wrapped with AES-CBC) or 02 (3DES, DES3-ECB wrap).
    #[arg(long, default_value = "03")]
    pub scp: String,
    /// Output file, one JSON line per card; an existing file is resumed.
    #[arg(long)]
    pub out: PathBuf,
    /// Worker threads, each with its own token session.
    #[arg(long, default_value = "1")]
    pub workers: usize,
    /// Where the token PIN comes from: env:NAME or file:PATH (default: a no-echo prompt).
    #[arg(long, default_value = "prompt")]
    pub pin_source: PinSource,
    /// Append a delivery record to this existing ledger (see `keyman ledger init`), anchored in the token.
    #[arg(long)]
    pub ledger: Option<PathBuf>,
    /// Cards per process: with a PIN from env: or file:, longer lists are run as a series of child
    /// processes of this many cards each, because a software token (SoftHSM2) keeps every session object
    /// in the process's memory until the process ends. 0 runs everything in one process.
    #[arg(long, default_value = "50000")]
    pub chunk: u64,
    /// Put key sets even when their ENC and MAC have the KCVs of the cards' current keys (refused
    /// otherwise: the same channel keys under a replaced key set let recorded sessions replay).
    #[arg(long)]
    pub allow_same_channel_keys: bool,
    /// Internal: this process is one chunk of a longer run (no ledger record, no further chunks).
    #[arg(long, hide = true)]
    pub chunk_child: bool,
}

fn hex_byte(text: &str, option: &str) -> Result<u8, Error> {
    u8::from_str_radix(text, 16)
        .ok()
        .filter(|v| (1..=0x7F).contains(v))
        .ok_or_else(|| Error::Usage(format!("{option}: '{text}' is not a key version 01..7F")))
}

/// How each card's current DEK is obtained.
#[derive(Clone, Copy)]
enum Current {
    /// Derived per card from this master and scheme.
    Master(KeyHandle, Scheme),
    /// The default transport key, imported into each worker's session.
    DefaultKey,
}

/// What one worker needs, fixed for the whole batch.
#[derive(Clone, Copy)]
struct Plan {
    master: KeyHandle,
    scheme: Scheme,
    current: Current,
    old_kvn: u8,
    new_kvn: u8,
    allow_same_channel_keys: bool,
}

/// Refuses a batch whose new keys are every card's current keys: the same master (by KCV, computed in the
/// token) with the same scheme derives the same ENC and MAC for every KDD, so the check is made once for
/// the whole batch, before any card (see [`Error::SameChannelKeys`]).
fn refuse_same_master(
    session: &TokenSession<'_>,
    current: (KeyHandle, Scheme),
    new: (KeyHandle, Scheme),
) -> Result<(), Error> {
    if current.1 != new.1 {
        return Ok(());
    }
    let (a, b) = (session.kcv(current.0)?, session.kcv(new.0)?);
    if a.value == b.value && current.0.key_type() == new.0.key_type() {
        return Err(Error::SameChannelKeys {
            what: "batch: every card".into(),
            same: format!(
                "--master and --current-master have the same KCV {} and scheme {}, so they derive the \
                 same keys for every KDD",
                hex::encode_upper(a.value),
                new.1
            ),
        });
    }
    Ok(())
}

/// The result line for one card (deterministic for a given card and keys).
fn card_line(
    session: &TokenSession<'_>,
    plan: &Plan,
    default_dek: Option<&DerivedKey<'_, '_>>,
    card: &CardEntry,
) -> Result<String, Error> {
    let derived;
    let dek = match (plan.current, default_dek) {
        (Current::Master(m, s), _) => {
            derived = derive_one(
                session,
                m,
                s,
                &card.kdd,
                KeyRole::Dek,
                SecretKeyType::Aes128,
                &[Usage::Wrap],
                false,
            )?;
            derived.handle()
        }
        (Current::DefaultKey, Some(k)) => k.handle(),
        (Current::DefaultKey, None) => {
            return Err(Error::Usage("the transport key is not loaded".into()))
        }
    };
    let new = derive_card_keys(
        session,
        plan.master,
        plan.scheme,
        &card.kdd,
        SecretKeyType::Aes128,
        Purpose::PutKey,
    )?;
    let (apdu, kcvs) = crate::gp::put_key_apdu(session, dek, &new, plan.old_kvn, plan.new_kvn)?;
    if matches!(plan.current, Current::DefaultKey) && !plan.allow_same_channel_keys {
        // The transport key is public test data: its KCV is computed here, not in the token.
        let transport = gp_core::keys::AesKey::Aes128(crate::gp::DEFAULT_TRANSPORT_KEY);
        let current = gp_core::kcv::kcv_aes(&transport);
        if kcvs.first() == Some(&current) && kcvs.get(1) == Some(&current) {
            return Err(Error::SameChannelKeys {
                what: format!("card {} (line {})", hex::encode_upper(card.kdd), card.line),
                same: format!(
                    "ENC KCV {0}, MAC KCV {0}: the default transport key",
                    hex::encode_upper(current)
                ),
            });
        }
    }
    let line = serde_json::json!({
        "line": card.line,
        "identity": card.identity,
        "kdd": hex::encode_upper(card.kdd),
        "old_kvn": format!("{:02X}", plan.old_kvn),
        "new_kvn": format!("{:02X}", plan.new_kvn),
        "put_key": hex::encode_upper(apdu.to_bytes()),
        "kcvs": kcvs.iter().map(hex::encode_upper).collect::<Vec<_>>(),
        "kcv_method": "aes-ecb-ones",
    });
    Ok(line.to_string())
}

/// Keeps the complete lines of an existing output file (dropping a cut last line) and returns how many
/// there are and the identity on the last one.
fn resume_point(path: &Path) -> Result<(u64, Option<String>), Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, None)),
        Err(e) => return Err(io(e)),
    };
    let mut reader = std::io::BufReader::new(&mut f);
    let mut keep = 0u64;
    let mut count = 0u64;
    let mut last = None;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = (&mut reader)
            .take(64 * 1024)
            .read_until(b'\n', &mut buf)
            .map_err(io)?;
        if n == 0 || buf.last() != Some(&b'\n') {
            break;
        }
        let v: serde_json::Value = serde_json::from_slice(&buf).map_err(|e| Error::Package {
            field: format!("{} line {}", path.display(), count + 1),
            problem: format!("not a batch result line: {e}"),
        })?;
        last = v
            .get("identity")
            .and_then(|i| i.as_str())
            .map(str::to_string);
        keep += n as u64;
        count += 1;
    }
    drop(reader);
    f.set_len(keep).map_err(io)?;
    f.seek(std::io::SeekFrom::End(0)).map_err(io)?;
    Ok((count, last))
}

/// How progress is shown: a bar on a terminal, JSON lines on standard error otherwise.
enum Progress {
    Bar(indicatif::ProgressBar),
    Lines {
        every: u64,
        started: std::time::Instant,
    },
}

impl Progress {
    fn new(total: u64, done: u64) -> Progress {
        use std::io::IsTerminal;
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(total);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} cards  {per_sec}  eta {eta}",
            ) {
                bar.set_style(style);
            }
            bar.set_position(done);
            Progress::Bar(bar)
        } else {
            Progress::Lines {
                every: (total / 20).max(1000),
                started: std::time::Instant::now(),
            }
        }
    }

    fn update(&self, done: u64, total: u64, new: u64) {
        match self {
            Progress::Bar(b) => b.set_position(done),
            Progress::Lines { every, started } => {
                if done % every == 0 || done == total {
                    let secs = started.elapsed().as_secs_f64().max(1e-9);
                    let mut line = serde_json::json!({"done": done, "total": total,
                        "cards_per_second": (new as f64 / secs * 10.0).round() / 10.0});
                    if let (Some(kb), Some(map)) = (peak_rss_kb(), line.as_object_mut()) {
                        map.insert("peak_rss_kb".into(), kb.into());
                    }
                    eprintln!("{line}");
                }
            }
        }
    }

    fn finish(&self) {
        if let Progress::Bar(b) = self {
            b.finish();
        }
    }
}

/// The process's peak resident memory so far (Linux `VmHWM`), for operators watching a long batch and
/// for the memory benchmark.
pub fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Counts the card lines of a list (for the progress total) without keeping them.
fn count_cards(path: &Path) -> Result<u64, Error> {
    let mut n = 0;
    for card in CardReader::open(path)? {
        card?;
        n += 1;
    }
    Ok(n)
}

/// Runs a batch (see the module documentation).
pub fn run(args: &BatchArgs, dry: bool) -> Result<(), Error> {
    let old_kvn = hex_byte(&args.old_kvn, "--old-kvn")?;
    let new_kvn = hex_byte(&args.new_kvn, "--new-kvn")?;
    if !(1..=64).contains(&args.workers) {
        return Err(Error::Usage("--workers: 1 to 64".into()));
    }
    let uri = TokenUri::parse(&args.master)?;
    let label = uri
        .object
        .clone()
        .ok_or_else(|| Error::Usage("--master must name the key with object=LABEL".into()))?;
    let current_label = match &args.current_master {
        Some(c) => {
            let cu = TokenUri::parse(c)?;
            if cu.token != uri.token || cu.serial != uri.serial {
                return Err(Error::Usage(
                    "--current-master must be in the same token as --master".into(),
                ));
            }
            Some(cu.object.ok_or_else(|| {
                Error::Usage("--current-master must name the key with object=LABEL".into())
            })?)
        }
        None => None,
    };
    // The whole card list is checked before the first HSM call; it also gives the progress total.
    let total = count_cards(&args.cards)?;
    if dry {
        println!(
            "would read {} ({total} cards) and, for each, derive ENC, MAC, DEK from '{label}' ({}) in token {}",
            args.cards.display(),
            args.scheme,
            uri
        );
        println!(
            "would wrap them in the token under the card's current DEK ({}) and write PUT KEY {:02X} -> {:02X} \
             to {} with {} worker(s), resuming after any lines already there",
            current_label
                .as_deref()
                .map_or("the default transport key".to_string(), |l| format!(
                    "derived from '{l}' ({})",
                    args.current_scheme
                )),
            old_kvn,
            new_kvn,
            args.out.display(),
            args.workers
        );
        return Ok(());
    }
    if !args.chunk_child && args.chunk > 0 && args.pin_source.is_scripted() {
        let (already, _) = resume_point(&args.out)?;
        if total.saturating_sub(already) > args.chunk {
            return run_in_chunks(args, total);
        }
    }
    let hsm = Hsm::for_uri(&uri, None)?;
    let session = hsm.open(&uri, &args.pin_source)?;
    match args.scp.as_str() {
        "03" => {}
        "02" => {
            // The token must be able to wrap under an S-DEK at all (the probe's refusal names what it
            // lacks); even then the key data depends on the session.
            session.way_for(keyman::hsm::capabilities::Feature::Scp02KeyLoading)?;
            return Err(Error::Usage(format!(
                "SCP02 PUT KEY key data is encrypted under the session DEK of a live secure channel (GPC \
                 E.4.1: derived from the card's sequence counter), so it cannot be prepared for a card list \
                 ahead of time; token '{}' can wrap it during a session (signer::channel::scp02)",
                session.label()
            )));
        }
        other => {
            return Err(Error::Usage(format!("--scp '{other}' is not 02 or 03")));
        }
    }
    let master = session.find_secret_key(&label)?;
    crate::diversify::check_master(&session, master, args.scheme, SecretKeyType::Aes128)?;
    let current = match &current_label {
        Some(l) => {
            let m = session.find_secret_key(l)?;
            crate::diversify::check_master(
                &session,
                m,
                args.current_scheme,
                SecretKeyType::Aes128,
            )?;
            if !args.allow_same_channel_keys {
                refuse_same_master(&session, (m, args.current_scheme), (master, args.scheme))?;
            }
            Current::Master(m, args.current_scheme)
        }
        None => Current::DefaultKey,
    };
    let plan = Plan {
        master,
        scheme: args.scheme,
        current,
        old_kvn,
        new_kvn,
        allow_same_channel_keys: args.allow_same_channel_keys,
    };
    let ledger = if args.chunk_child {
        None
    } else {
        args.ledger.as_deref()
    };
    let mut records = Records::open(ledger, Some(&uri), &args.pin_source)?;
    let limit = if args.chunk_child {
        args.chunk
    } else {
        u64::MAX
    };
    let result = run_cards(args, &session, plan, total, limit);
    match result {
        Ok((done, new)) => {
            let mut common = vec![output_record(&args.out)?];
            common.extend(crate::records::token_key_output(&session, master, &label));
            records.record(
                EntryKind::Delivery,
                "signer batch",
                &format!("{new} key sets made, {done} in {}", args.out.display()),
                &[InputFile::from_path(&args.cards)?],
                &common,
                &[],
            )?;
            println!(
                "{done} of {total} cards in {} ({new} made now, {} kept from an earlier run)",
                args.out.display(),
                done - new
            );
            Ok(())
        }
        Err(e) => {
            records.abort("signer batch", &e);
            Err(e)
        }
    }
}

type Job = (u64, CardEntry);

/// Cards a worker handles with one token session before it opens a fresh one.
const RECYCLE_EVERY: usize = 500;

enum WorkerState {
    More,
    Done,
}

/// Handles up to [`RECYCLE_EVERY`] cards with one session.
fn work_some(
    worker: &TokenSession<'_>,
    plan: &Plan,
    rx: &Mutex<mpsc::Receiver<Job>>,
    tx: &mpsc::Sender<Done>,
) -> WorkerState {
    let mut transport: Option<DerivedKey<'_, '_>> = None;
    for _ in 0..RECYCLE_EVERY {
        let job = match rx.lock() {
            Ok(guard) => guard.recv(),
            Err(_) => return WorkerState::Done,
        };
        let Ok((seq, card)) = job else {
            return WorkerState::Done;
        };
        if transport.is_none() && matches!(plan.current, Current::DefaultKey) {
            match worker.import_session_key(
                &SecretSlice::from(crate::gp::DEFAULT_TRANSPORT_KEY.to_vec()),
                SecretKeyType::Aes128,
                &[Usage::Wrap],
            ) {
                Ok(k) => transport = Some(k),
                Err(e) => {
                    let _ = tx.send((seq, Err(e.into())));
                    return WorkerState::Done;
                }
            }
        }
        let line = card_line(worker, plan, transport.as_ref(), &card);
        if tx.send((seq, line)).is_err() {
            return WorkerState::Done;
        }
    }
    WorkerState::More
}
type Done = (u64, Result<String, Error>);

/// Runs a long batch as child processes of `--chunk` cards each (this same program with `--chunk-child`),
/// one after the other, then records the whole run in the ledger. The resumable output is what links them:
/// each child carries on where the previous one stopped.
fn run_in_chunks(args: &BatchArgs, total: u64) -> Result<(), Error> {
    let exe = std::env::current_exe().map_err(|source| Error::Io {
        path: PathBuf::from("signer"),
        source,
    })?;
    let mut child_args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    child_args.push("--chunk-child".into());
    let (start, _) = resume_point(&args.out)?;
    loop {
        let (done, _) = resume_point(&args.out)?;
        if done >= total {
            break;
        }
        let status = std::process::Command::new(&exe)
            .args(&child_args)
            .stdout(std::process::Stdio::null())
            .status()
            .map_err(|source| Error::Io {
                path: exe.clone(),
                source,
            })?;
        if !status.success() {
            return Err(Error::Usage(format!(
                "a chunk of the batch stopped ({status}); {done} of {total} cards are in {}; run the same \
                 command again to resume",
                args.out.display()
            )));
        }
        let (after, _) = resume_point(&args.out)?;
        if after <= done {
            return Err(Error::Usage("a chunk of the batch made no progress".into()));
        }
    }
    // One ledger record for the whole run.
    let uri = TokenUri::parse(&args.master)?;
    let label = uri.object.clone().unwrap_or_default();
    let mut records = Records::open(args.ledger.as_deref(), Some(&uri), &args.pin_source)?;
    if records.is_open() {
        let hsm = Hsm::for_uri(&uri, None)?;
        let session = hsm.open(&uri, &args.pin_source)?;
        let master = session.find_secret_key(&label)?;
        let mut common = vec![output_record(&args.out)?];
        common.extend(crate::records::token_key_output(&session, master, &label));
        records.record(
            EntryKind::Delivery,
            "signer batch",
            &format!(
                "{} key sets made, {total} in {}",
                total - start,
                args.out.display()
            ),
            &[InputFile::from_path(&args.cards)?],
            &common,
            &[],
        )?;
    }
    println!(
        "{total} of {total} cards in {} ({} made now, {start} kept from an earlier run)",
        args.out.display(),
        total - start
    );
    Ok(())
}

/// The streaming, parallel part: makes at most `limit` new cards; returns (cards in the output, cards
/// made in this run).
fn run_cards(
    args: &BatchArgs,
    session: &TokenSession<'_>,
    plan: Plan,
    total: u64,
    limit: u64,
) -> Result<(u64, u64), Error> {
    let (already, last_identity) = resume_point(&args.out)?;
    let mut reader = CardReader::open(&args.cards)?;
    // Skip the cards already done, checking that the list is the same one.
    for n in 0..already {
        let card = reader.next_card()?.ok_or_else(|| {
            Error::Usage(format!(
                "{} has {already} results but the card list only {n} cards: not the same list",
                args.out.display()
            ))
        })?;
        if n + 1 == already && last_identity.as_deref() != Some(card.identity.as_str()) {
            return Err(Error::Usage(format!(
                "{} ends with card {:?} but the card list has {:?} there: not the same list; use a new --out",
                args.out.display(),
                last_identity.unwrap_or_default(),
                card.identity
            )));
        }
    }
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.out)
        .map_err(|source| Error::Io {
            path: args.out.clone(),
            source,
        })?;
    let mut out = std::io::BufWriter::new(out);
    let progress = Progress::new(total, already);
    let window = (args.workers * 8) as u64;
    let (job_tx, job_rx) = mpsc::channel::<Job>();
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (done_tx, done_rx) = mpsc::channel::<Done>();
    let mut sessions = Vec::new();
    for _ in 0..args.workers {
        sessions.push(session.another_session()?);
    }
    let io_err = |source| Error::Io {
        path: args.out.clone(),
        source,
    };
    std::thread::scope(|scope| -> Result<(u64, u64), Error> {
        for worker in sessions {
            let rx = Arc::clone(&job_rx);
            let tx = done_tx.clone();
            scope.spawn(move || {
                let mut worker = worker;
                // A token may keep some memory per session object until its session closes (SoftHSM2
                // does), so each worker starts a fresh session every RECYCLE_EVERY cards: memory stays
                // flat however long the card list is.
                while let WorkerState::More = work_some(&worker, &plan, &rx, &tx) {
                    match worker.another_session() {
                        Ok(fresh) => worker = fresh,
                        Err(e) => {
                            let _ = tx.send((u64::MAX, Err(e.into())));
                            return;
                        }
                    }
                }
            });
        }
        drop(done_tx);
        let mut next_read = 0u64;
        let mut next_write = 0u64;
        let mut exhausted = false;
        let mut pending: BTreeMap<u64, String> = BTreeMap::new();
        let mut failure = None;
        loop {
            while !exhausted && failure.is_none() && next_read - next_write < window {
                if next_read >= limit {
                    exhausted = true;
                    break;
                }
                match reader.next_card() {
                    Ok(Some(card)) => {
                        if job_tx.send((next_read, card)).is_err() {
                            break;
                        }
                        next_read += 1;
                    }
                    Ok(None) => exhausted = true,
                    Err(e) => {
                        failure = Some(e);
                    }
                }
            }
            if next_write == next_read && (exhausted || failure.is_some()) {
                break;
            }
            let Ok((seq, line)) = done_rx.recv() else {
                break;
            };
            match line {
                Ok(l) => {
                    pending.insert(seq, l);
                }
                Err(e) => {
                    failure.get_or_insert(e);
                    // Stop handing out work; write what precedes the failure.
                    exhausted = true;
                    if seq != u64::MAX {
                        next_read = next_read.min(seq);
                    }
                }
            }
            while let Some(l) = pending.remove(&next_write) {
                if next_write >= next_read {
                    break;
                }
                out.write_all(l.as_bytes()).map_err(io_err)?;
                out.write_all(b"\n").map_err(io_err)?;
                next_write += 1;
                progress.update(already + next_write, total, next_write);
            }
            if failure.is_some() && pending.is_empty() && next_write >= next_read {
                break;
            }
        }
        drop(job_tx);
        out.flush().map_err(io_err)?;
        out.get_ref().sync_all().map_err(io_err)?;
        progress.finish();
        match failure {
            Some(e) => Err(e),
            None => Ok((already + next_write, next_write)),
        }
    })
}

/// The ledger output naming a batch's output file.
pub fn output_record(path: &Path) -> Result<keyman::ledger::Output, Error> {
    let f = InputFile::from_path(path)?;
    Ok(keyman::ledger::Output::File {
        name: f.name,
        sha256: f.sha256,
    })
}
