//! The admin server's decisions, apart from HTTP: which script a card gets, what its answers mean, and
//! what the database and the ledger record. Every method blocks (SQLite, the HSM thread), so the HTTP
//! layer calls them from a blocking task.
//!
//! One install is the opening POST, two scripts and a `204`: the first script identifies the card
//! (SELECT ISD, GET DATA, INITIALIZE UPDATE); the server derives the card's keys in the HSM, checks the
//! card's cryptogram, marks the card `in_flight` (committed) and sends EXTERNAL AUTHENTICATE and the
//! whole operation, every command wrapped in advance. A card whose outcome is unknown gets an audit (GET
//! STATUS in a fresh channel) instead, and then only what it still lacks.
//!
//! Several engines (server instances) may share one database: a card is claimed with a lease before
//! anything is sent to it ([`Db::claim`]), every change is fenced by that lease, and a card whose lease
//! another live instance holds is told to call again later (`503`). A `done` card is marked as
//! waiting for its ledger record until the record is written; an instance that died in between writes
//! the missing records of its ledger when it starts again.

use crate::db::{CardState, Claim, Db, Work};
use crate::error::Error;
use crate::plan::{self, Held, Operation};
use crate::prepared::PreparedChannel;
use crate::protocol::ScriptStatus;
use gp_core::apdu::{CommandApdu, ResponseApdu};
use gp_core::scp03::{self, InitializeUpdateResponse, SecurityLevel};
use gp_core::script::{Coding, CommandScript, ResponseScript};
use keyman::ledger::{EntryKind, Output};
use sha2::{Digest, Sha256};
use signer::package::Package;
use signer::records::{self, Records};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an admin session waits for the agent's next request.
pub const SESSION_TTL: Duration = Duration::from_secs(15 * 60);
/// Most admin sessions in progress at once; more agents get `503` until some finish.
pub const MAX_SESSIONS: usize = 10_000;
/// How long a finished session's last answer is kept for an agent that lost it and resumes. Dropping
/// it sooner costs nothing but three APDUs: a resuming agent is identified again and told `204`.
pub const FINISHED_TTL: Duration = Duration::from_secs(60);

/// Drops expired sessions (finished ones after [`FINISHED_TTL`], the others after [`SESSION_TTL`])
/// and returns how many are still in progress: finished sessions never count against
/// [`MAX_SESSIONS`], so a fleet's call rate is not capped by answers kept for resumes.
fn sweep(sessions: &mut HashMap<String, Session>, now: Instant) -> usize {
    let mut active = 0;
    sessions.retain(|_, s| {
        let age = now.saturating_duration_since(s.created);
        if matches!(s.stage, Stage::Finished) {
            age < FINISHED_TTL
        } else {
            let keep = age < SESSION_TTL;
            active += usize::from(keep);
            keep
        }
    });
    active
}
/// Database connections an engine uses at once (requests beyond wait for a free one).
pub const DB_CONNECTIONS: usize = 8;
/// How often pending ledger records are caught up while serving.
pub const CATCH_UP_EVERY: Duration = Duration::from_secs(30);
/// Tries at writing a finished card's ledger record, and at clearing its "record pending" mark once the
/// record is in the ledger (waits of 0.2, 0.4, 0.8, 1.6 and 3.2 s between them: a database restart, a
/// busy token), before the periodic catch-up takes over.
const RECORDED_ATTEMPTS: u32 = 6;
/// How long a card claimed by an instance stays its own without a step of its session.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

fn start_heartbeat(db: &Db, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let target = db.target().clone();
    let every = db.lease().unwrap_or(DEFAULT_LEASE) / 3;
    let Ok(mut beat) = Db::connect(target) else {
        tracing::error!("the heartbeat's database connection failed; this instance will look dead");
        return;
    };
    beat.adopt_instance(db);
    let spawned = std::thread::Builder::new()
        .name("heartbeat".into())
        .spawn(move || {
            let step = Duration::from_millis(100).min(every);
            let mut since = Duration::ZERO;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(step);
                since += step;
                if since >= every {
                    since = Duration::ZERO;
                    if let Err(e) = beat.heartbeat() {
                        tracing::warn!("heartbeat: {e}");
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!("starting the heartbeat thread: {e}");
    }
}

/// What the server answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `200` with a command script and where to POST its results.
    Script {
        /// The encoded command script.
        body: Vec<u8>,
        /// `X-Admin-Next-URI`.
        next_uri: String,
    },
    /// `204`: nothing (more) for this card.
    Done,
}

/// One request from an agent, its headers already checked.
#[derive(Debug)]
pub struct Request {
    /// `X-Admin-From`.
    pub from: String,
    /// The session named by the URI (`None` for the admin URI itself).
    pub session: Option<String>,
    /// `X-Admin-Resume: true`.
    pub resume: bool,
    /// `X-Admin-Script-Status` (absent on the opening POST).
    pub status: Option<ScriptStatus>,
    /// The body (a response script when the status is `ok`).
    pub body: Vec<u8>,
}

struct Card {
    work: Work,
    op: Operation,
    package_sha: String,
}

enum Stage {
    Identify {
        host_challenge: [u8; 8],
    },
    Operate {
        card: Box<Card>,
        channel: PreparedChannel,
        names: Vec<String>,
        first: bool,
    },
    Audit {
        card: Box<Card>,
        channel: PreparedChannel,
    },
    Finished,
}

struct Session {
    created: Instant,
    stage: Stage,
    /// Digest of the last request processed and the answer given, repeated to a resuming agent.
    last: Option<([u8; 32], Reply)>,
}

/// The server's state: database, HSM, ledger and the admin sessions in progress.
pub struct Engine {
    db: Db,
    hsm: crate::hsm::HsmWorker,
    records: Mutex<Records>,
    sessions: Mutex<HashMap<String, Session>>,
    admin_path: String,
    /// The ledger's name in the database (as registered), when deliveries are recorded.
    ledger_id: Option<String>,
    /// Cards between "done" and their ledger record in this process: left to `finish`, never to the
    /// catch-up of pending records.
    finishing: Mutex<std::collections::HashSet<(i64, String)>>,
    /// When pending ledger records were last caught up.
    caught_up: Mutex<Instant>,
    /// How often pending ledger records are caught up while serving.
    catch_up_every: Duration,
    /// Held while a delivery record is written or pending records are caught up, so that the two
    /// never write the same record.
    ledger_turn: Mutex<()>,
    /// Set when the engine is dropped: stops the heartbeat thread.
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| {
            h.trim()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
                .take(64)
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "server".into())
}

/// A fresh id for a server instance: the host's name, the process id and random bits, so that a
/// restarted instance never mistakes the leases of its previous life for its own.
pub fn instance_id() -> String {
    let salt = random::<4>().map(hex::encode).unwrap_or_default();
    format!("{}-{}-{salt}", host_name(), std::process::id())
}

/// The name of a server instance, the same across its restarts: host and listen address.
pub fn instance_name(listen: std::net::SocketAddr) -> String {
    format!("{}/{listen}", host_name())
}

fn random<const N: usize>() -> Result<[u8; N], Error> {
    let mut b = [0u8; N];
    openssl::rand::rand_bytes(&mut b)?;
    Ok(b)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn encode(cmds: &[CommandApdu]) -> Result<Vec<u8>, Error> {
    Ok(CommandScript {
        commands: cmds.iter().map(CommandApdu::to_bytes).collect(),
    }
    .encode(Coding::Definite)?)
}

fn to_apdus(script: &ResponseScript) -> Vec<ResponseApdu> {
    script
        .responses
        .iter()
        .map(|r| ResponseApdu {
            data: r.data.clone(),
            sw: r.sw,
        })
        .collect()
}

impl Engine {
    /// An engine over an open database, a started HSM thread and the ledger (if any). A database not
    /// registered as an instance yet ([`Db::register_instance`]) is registered with a fresh id and the
    /// default lease. The engine beats its heartbeat from a thread of its own, and first writes the
    /// ledger records an earlier life of this instance (same ledger) committed but never wrote.
    pub fn new(
        mut db: Db,
        hsm: crate::hsm::HsmWorker,
        records: Records,
        admin_path: String,
    ) -> Engine {
        if db.instance_id().is_none() {
            let id = instance_id();
            if let Err(e) = db.register_instance(&id, &id, None, DEFAULT_LEASE) {
                tracing::error!("registering this instance: {e}");
            }
        }
        if let Err(e) = db.grow_pool(DB_CONNECTIONS) {
            tracing::error!("opening more database connections: {e}");
        }
        let ledger_id = if records.is_open() {
            db.instance_ledger().map(str::to_string)
        } else {
            None
        };
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        start_heartbeat(&db, stop.clone());
        let engine = Engine {
            db,
            hsm,
            records: Mutex::new(records),
            sessions: Mutex::new(HashMap::new()),
            admin_path,
            ledger_id,
            finishing: Mutex::new(std::collections::HashSet::new()),
            caught_up: Mutex::new(Instant::now()),
            catch_up_every: CATCH_UP_EVERY,
            ledger_turn: Mutex::new(()),
            stop,
        };
        if let Err(e) = engine.write_pending_records() {
            tracing::error!("writing the ledger records left pending: {e}");
        }
        engine
    }

    /// Writes the delivery records of cards done but whose record may be missing from this
    /// instance's ledger (the instance died between the two): those already in the ledger are only
    /// marked written.
    fn write_pending_records(&self) -> Result<(), Error> {
        let Some(ledger) = self.ledger_id.clone() else {
            return Ok(());
        };
        let _ledger = lock(&self.ledger_turn);
        let pending = self.db.pending_records(&ledger)?;
        if pending.is_empty() {
            return Ok(());
        }
        let text = std::fs::read_to_string(&ledger).unwrap_or_default();
        for p in pending {
            if lock(&self.finishing).contains(&(p.campaign_id, p.kdd.clone())) {
                continue;
            }
            let Some(work) = self.db.work(p.campaign_id, &p.kdd)? else {
                continue;
            };
            let needle = format!("KDD:{}", p.kdd);
            let step = format!("campaign {}: load", work.card.campaign);
            let present = text
                .lines()
                .any(|l| l.contains(&needle) && l.contains(&step));
            if !present {
                let kdd: [u8; 10] = hex::decode(&p.kdd)
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| {
                        Error::Database(format!("cards.kdd '{}' is not 10 bytes", p.kdd))
                    })?;
                let pkg = Package::parse(&work.package)?;
                let op = Operation::for_card(&pkg, &kdd, &work.settings)?;
                let package_sha = hex::encode(Sha256::digest(&work.package));
                let card = Card {
                    work,
                    op,
                    package_sha,
                };
                self.record(&card, "installed; recorded after a restart")?;
            }
            self.db.recorded(p.campaign_id, &p.kdd)?;
        }
        Ok(())
    }

    /// Catches up pending ledger records every `every` (at least a second) while serving, instead of
    /// every [`CATCH_UP_EVERY`].
    pub fn catch_up_every(mut self, every: Duration) -> Engine {
        self.catch_up_every = every.max(Duration::from_secs(1));
        self
    }

    /// The URI of session `id`.
    pub fn session_uri(&self, id: &str) -> String {
        format!("{}/session/{id}", self.admin_path)
    }

    /// The admin URI agents POST to first.
    pub fn admin_path(&self) -> &str {
        &self.admin_path
    }

    /// Handles one request. Errors are the agent's or the card's fault (`Protocol`, `Script`, `Card`)
    /// or the server's (`Database`, `Hsm`); the database is correct either way.
    pub fn handle(&self, req: Request) -> Result<Reply, Error> {
        let digest: [u8; 32] = Sha256::new()
            .chain_update(req.status.map_or("", ScriptStatus::as_str))
            .chain_update([0])
            .chain_update(&req.body)
            .finalize()
            .into();
        let Some(id) = req.session.clone() else {
            if !req.body.is_empty() {
                return Err(Error::Protocol(
                    "the opening POST carries no body (Amendment B §3)".into(),
                ));
            }
            return self.open(&req.from);
        };
        let taken = {
            let mut sessions = lock(&self.sessions);
            match sessions.get(&id) {
                Some(s) if req.resume => {
                    if let Some((d, reply)) = &s.last {
                        if *d == digest {
                            tracing::info!(agent = %req.from, session = %id, "resumed: the answer is sent again");
                            return Ok(reply.clone());
                        }
                    }
                    sessions.remove(&id)
                }
                Some(_) => sessions.remove(&id),
                None => None,
            }
        };
        let Some(mut session) = taken else {
            tracing::info!(agent = %req.from, session = %id, resume = req.resume,
                "unknown or expired session (server restarted?): identifying the card again");
            return self.open(&req.from);
        };
        let stage = std::mem::replace(&mut session.stage, Stage::Finished);
        let (reply, stage) = self.advance(&req, stage)?;
        session.stage = stage;
        session.last = Some((digest, reply.clone()));
        lock(&self.sessions).insert(id, session);
        Ok(reply)
    }

    fn open(&self, from: &str) -> Result<Reply, Error> {
        // A record whose database note was lost (the database went away between the two) is caught
        // up now and then, not only when the instance starts.
        let due = {
            let mut last = lock(&self.caught_up);
            let due = last.elapsed() >= self.catch_up_every;
            if due {
                *last = Instant::now();
            }
            due
        };
        if due {
            if let Err(e) = self.write_pending_records() {
                tracing::warn!("catching up pending ledger records: {e}");
            }
        }
        let id = hex::encode(random::<16>()?);
        let host_challenge = random::<8>()?;
        let body = encode(&plan::identify(&host_challenge))?;
        let reply = Reply::Script {
            body,
            next_uri: self.session_uri(&id),
        };
        let mut sessions = lock(&self.sessions);
        if sweep(&mut sessions, Instant::now()) >= MAX_SESSIONS {
            return Err(Error::Usage("too many admin sessions in progress".into()));
        }
        sessions.insert(
            id.clone(),
            Session {
                created: Instant::now(),
                stage: Stage::Identify { host_challenge },
                last: None,
            },
        );
        tracing::info!(agent = %from, session = %id, "session opened: identifying the card");
        Ok(reply)
    }

    fn response_script(req: &Request) -> Result<Option<ResponseScript>, Error> {
        match req.status {
            Some(ScriptStatus::Ok) => Ok(Some(ResponseScript::parse(&req.body)?.0)),
            Some(other) => {
                tracing::warn!(agent = %req.from, status = other.as_str(), "the agent could not run the script");
                Ok(None)
            }
            None => Err(Error::Protocol(
                "X-Admin-Script-Status is missing on a request with results".into(),
            )),
        }
    }

    fn advance(&self, req: &Request, stage: Stage) -> Result<(Reply, Stage), Error> {
        let Some(script) = Self::response_script(req)? else {
            return Ok((Reply::Done, Stage::Finished));
        };
        match stage {
            Stage::Identify { host_challenge } => self.identified(req, host_challenge, &script),
            Stage::Operate {
                card,
                channel,
                names,
                first,
            } => self.operated(card, channel, &names, first, &script),
            Stage::Audit { card, channel } => self.audited(req, card, channel, &script),
            Stage::Finished => Ok((Reply::Done, Stage::Finished)),
        }
    }

    fn identified(
        &self,
        req: &Request,
        host_challenge: [u8; 8],
        script: &ResponseScript,
    ) -> Result<(Reply, Stage), Error> {
        let r = &script.responses;
        let (Some(select), Some(data), Some(iu)) = (r.first(), r.get(1), r.get(2)) else {
            let sw = r.last().map_or(0, |x| x.sw);
            return Err(Error::Card(format!(
                "the card ran {} of the 3 identification commands (last status {sw:04X})",
                r.len()
            )));
        };
        for (what, x) in [
            ("SELECT", select),
            ("GET DATA", data),
            ("INITIALIZE UPDATE", iu),
        ] {
            if x.sw != 0x9000 {
                return Err(Error::Card(format!("{what} answered {:04X}", x.sw)));
            }
        }
        let iu = InitializeUpdateResponse::parse(&iu.data)
            .map_err(|e| Error::Card(format!("malformed INITIALIZE UPDATE response: {e}")))?;
        let kdd = iu.kdd;
        let kdd_hex = hex::encode_upper(kdd);
        let claim = self.db.claim(&kdd)?;
        let work = match claim {
            Claim::Work(w) => Some(w),
            Claim::Busy { owner } => {
                tracing::info!(agent = %req.from, card = %kdd_hex, %owner, "the card is leased to another instance");
                return Err(Error::Usage(format!(
                    "card {kdd_hex} is being served by another server instance; call again later"
                )));
            }
            Claim::Nothing => None,
        };
        let Some(work) = work else {
            let known = self.db.knows(&kdd)?;
            if known {
                tracing::info!(agent = %req.from, card = %kdd_hex, "nothing to do for this card");
            } else {
                tracing::warn!(agent = %req.from, card = %kdd_hex, "unknown card: in no campaign");
            }
            return Ok((Reply::Done, Stage::Finished));
        };
        let row = &work.card;
        let fail = |reason: String| -> Result<(Reply, Stage), Error> {
            tracing::warn!(campaign = %row.campaign, card = %kdd_hex, "failed: {reason}");
            self.db.set_card(
                row.campaign_id,
                &row.kdd,
                CardState::Failed,
                Some(&reason),
                true,
            )?;
            Ok((Reply::Done, Stage::Finished))
        };
        let pkg = match Package::parse(&work.package) {
            Ok(p) => p,
            Err(e) => return fail(format!("the package does not verify: {e}")),
        };
        let op = match Operation::for_card(&pkg, &kdd, &work.settings) {
            Ok(op) => op,
            Err(e) => return fail(format!("the package cannot be installed on this card: {e}")),
        };
        let keys = self.hsm.session_keys(host_challenge, iu.clone())?;
        if scp03::verify_card_cryptogram(
            &keys,
            &host_challenge,
            &iu.card_challenge,
            &iu.card_cryptogram,
        )
        .is_err()
        {
            // Never authenticate blindly: failed EXTERNAL AUTHENTICATEs count towards blocking the key set.
            return fail(
                "the card's cryptogram does not match the keys derived for it (wrong keys); EXTERNAL AUTHENTICATE was not sent"
                    .into(),
            );
        }
        let host_cryptogram = scp03::host_cryptogram(&keys, &host_challenge, &iu.card_challenge);
        let level = if iu.i & scp03::I_RMAC != 0 {
            SecurityLevel::C_MAC_C_DEC_R_MAC
        } else {
            SecurityLevel::C_MAC_C_DEC
        };
        let mut channel = PreparedChannel::new(keys, host_cryptogram, level);
        let ea = channel.external_authenticate();
        let package_sha = hex::encode(Sha256::digest(&work.package));
        let state = row.state;
        let campaign = row.campaign.clone();
        let card = Box::new(Card {
            work,
            op,
            package_sha,
        });
        match state {
            CardState::InFlight => {
                let audit = card.op.audit();
                let wrapped = channel.wrap_script(audit.into_iter().map(|(_, c)| c).collect())?;
                let body = encode(&[vec![ea], wrapped].concat())?;
                tracing::info!(agent = %req.from, campaign = %campaign, card = %kdd_hex, level = %level,
                    "outcome of an earlier attempt unknown: auditing the card");
                Ok((self.reply_script(req, body), Stage::Audit { card, channel }))
            }
            _ => {
                let (names, cmds): (Vec<String>, Vec<CommandApdu>) =
                    card.op.full()?.into_iter().unzip();
                let wrapped = channel.wrap_script(cmds)?;
                let body = encode(&[vec![ea], wrapped].concat())?;
                // Committed before the script leaves: from here the outcome is unknown until the card answers.
                let row = &card.work.card;
                self.db
                    .set_card(row.campaign_id, &row.kdd, CardState::InFlight, None, true)?;
                tracing::info!(agent = %req.from, campaign = %campaign, card = %kdd_hex, level = %level,
                    commands = names.len() + 1, "sending the operation");
                Ok((
                    self.reply_script(req, body),
                    Stage::Operate {
                        card,
                        channel,
                        names,
                        first: true,
                    },
                ))
            }
        }
    }

    fn reply_script(&self, req: &Request, body: Vec<u8>) -> Reply {
        let id = req.session.clone().unwrap_or_default();
        Reply::Script {
            body,
            next_uri: self.session_uri(&id),
        }
    }

    /// Splits off and checks the EXTERNAL AUTHENTICATE response when the script began with it.
    fn after_authentication<'a>(
        &self,
        card: &Card,
        first: bool,
        responses: &'a [ResponseApdu],
    ) -> Result<Option<&'a [ResponseApdu]>, Error> {
        if !first {
            return Ok(Some(responses));
        }
        let Some((ea, rest)) = responses.split_first() else {
            return Ok(None);
        };
        if ea.sw != 0x9000 {
            let reason = format!(
                "EXTERNAL AUTHENTICATE refused with {:04X}; it is not sent again",
                ea.sw
            );
            self.set(card, CardState::Failed, Some(&reason), false)?;
            tracing::warn!(card = %card.work.card.kdd, "failed: {reason}");
            return Ok(None);
        }
        Ok(Some(rest))
    }

    fn set(
        &self,
        card: &Card,
        state: CardState,
        reason: Option<&str>,
        attempt: bool,
    ) -> Result<(), Error> {
        let row = &card.work.card;
        self.db
            .set_card(row.campaign_id, &row.kdd, state, reason, attempt)
    }

    fn operated(
        &self,
        card: Box<Card>,
        mut channel: PreparedChannel,
        names: &[String],
        first: bool,
        script: &ResponseScript,
    ) -> Result<(Reply, Stage), Error> {
        let all = to_apdus(script);
        let Some(rest) = self.after_authentication(&card, first, &all)? else {
            return Ok((Reply::Done, Stage::Finished));
        };
        let kdd = card.work.card.kdd.clone();
        let responses = match channel.verify(rest) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(card = %kdd, "responses cannot be trusted ({e}); the card stays in flight and is audited when it calls again");
                self.release(&card);
                return Ok((Reply::Done, Stage::Finished));
            }
        };
        if let Some((i, bad)) = responses.iter().enumerate().find(|(_, r)| r.sw != 0x9000) {
            let name = names.get(i).map_or("a command", String::as_str);
            let reason = format!(
                "{name} refused with {:04X} ({})",
                bad.sw,
                signer::error::sw_meaning(bad.sw)
            );
            self.set(&card, CardState::Failed, Some(&reason), false)?;
            tracing::warn!(campaign = %card.work.card.campaign, card = %kdd, "failed: {reason}");
            return Ok((Reply::Done, Stage::Finished));
        }
        if responses.len() < names.len() {
            tracing::warn!(card = %kdd, ran = responses.len(), of = names.len(),
                "the script stopped short; the card stays in flight and is audited when it calls again");
            self.release(&card);
            return Ok((Reply::Done, Stage::Finished));
        }
        self.finish(&card, "installed")?;
        Ok((Reply::Done, Stage::Finished))
    }

    fn audited(
        &self,
        req: &Request,
        card: Box<Card>,
        mut channel: PreparedChannel,
        script: &ResponseScript,
    ) -> Result<(Reply, Stage), Error> {
        let all = to_apdus(script);
        let Some(rest) = self.after_authentication(&card, true, &all)? else {
            return Ok((Reply::Done, Stage::Finished));
        };
        let responses = channel.verify(rest)?;
        let held = card.op.audit_result(&responses)?;
        let kdd = card.work.card.kdd.clone();
        let todo = match held {
            Held::Everything => {
                self.finish(&card, "found installed by the audit")?;
                return Ok((Reply::Done, Stage::Finished));
            }
            Held::Nothing => card.op.full()?,
            Held::LoadFileAnd(n) => card.op.installs_from(n)?,
        };
        let (names, cmds): (Vec<String>, Vec<CommandApdu>) = todo.into_iter().unzip();
        let wrapped = channel.wrap_script(cmds)?;
        let body = encode(&wrapped)?;
        self.set(&card, CardState::InFlight, None, true)?;
        tracing::info!(card = %kdd, held = ?held, commands = names.len(), "continuing from what the card holds");
        Ok((
            self.reply_script(req, body),
            Stage::Operate {
                card,
                channel,
                names,
                first: false,
            },
        ))
    }

    /// Gives the card's lease back (its session ended without a final state).
    fn release(&self, card: &Card) {
        let row = &card.work.card;
        if let Err(e) = self.db.release(row.campaign_id, &row.kdd) {
            tracing::warn!(card = %row.kdd, "giving the lease back: {e}");
        }
    }

    fn finish(&self, card: &Card, how: &str) -> Result<(), Error> {
        let row = &card.work.card;
        let key = (row.campaign_id, row.kdd.clone());
        lock(&self.finishing).insert(key.clone());
        let result = self.finish_recorded(card, how);
        lock(&self.finishing).remove(&key);
        result
    }

    fn finish_recorded(&self, card: &Card, how: &str) -> Result<(), Error> {
        let row = &card.work.card;
        self.db.set_card_recording(
            row.campaign_id,
            &row.kdd,
            CardState::Done,
            None,
            false,
            self.ledger_id.as_deref(),
        )?;
        tracing::info!(campaign = %row.campaign, card = %row.kdd, "done: {how}");
        let _ledger = lock(&self.ledger_turn);
        // A token error leaves the ledger and its anchor as they were (the anchor's new object comes
        // first, the file is the commit point), so a failed record is tried again a few times before it
        // is left to the periodic catch-up: tokens shared by several processes answer transient errors.
        let mut recorded = self.record(card, how);
        let mut wait = Duration::from_millis(200);
        for _ in 1..RECORDED_ATTEMPTS {
            let Err(e) = &recorded else { break };
            tracing::info!(card = %row.kdd, "the ledger entry could not be written, will retry: {e}");
            std::thread::sleep(wait);
            wait *= 2;
            recorded = self.record(card, how);
        }
        match recorded {
            Ok(()) if self.ledger_id.is_some() => {
                // Clearing the mark is idempotent, and a lost database connection is reopened on the
                // next call: try a few times over about 6 s (a database restart) before leaving it to
                // the periodic catch-up, which finds the record already in the ledger.
                let mut wait = Duration::from_millis(200);
                for attempt in 1..=RECORDED_ATTEMPTS {
                    match self.db.recorded(row.campaign_id, &row.kdd) {
                        Ok(()) => break,
                        Err(e) if attempt == RECORDED_ATTEMPTS => {
                            tracing::warn!(card = %row.kdd, "noting the ledger record: {e}");
                        }
                        Err(e) => {
                            tracing::info!(card = %row.kdd, "noting the ledger record, will retry: {e}");
                            std::thread::sleep(wait);
                            wait *= 2;
                        }
                    }
                }
            }
            Ok(()) => {}
            Err(e) => {
                tracing::error!(card = %row.kdd, "the ledger entry could not be written: {e}");
            }
        }
        Ok(())
    }

    /// Appends the delivery record of a finished card to the ledger (if any).
    fn record(&self, card: &Card, how: &str) -> Result<(), Error> {
        let row = &card.work.card;
        let identity = format!("KDD:{}", row.kdd);
        let mut common = vec![records::package_output(&card.work.package)];
        common.extend(self.hsm.key_outputs.iter().cloned());
        common.push(records::card_output(&identity));
        let daps: Vec<Output> = card
            .op
            .options
            .dap_blocks
            .iter()
            .map(|(sd, sig)| records::dap_output(sd, Some(&identity), sig))
            .collect();
        let step = format!(
            "campaign {}: load {} ({how}), package {}",
            row.campaign,
            hex::encode_upper(&card.op.load_file_aid),
            card.package_sha
        );
        lock(&self.records).record(
            EntryKind::Delivery,
            "admin-server",
            &step,
            &[],
            &common,
            &daps,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_sessions_do_not_use_up_the_session_limit_and_expire_soon() {
        let base = Instant::now();
        let last = SESSION_TTL + Duration::from_secs(2);
        let now = base + last;
        let cases = [
            ("finished-fresh", Duration::from_secs(1), true),
            ("finished-old", FINISHED_TTL + Duration::from_secs(1), true),
            ("open-fresh", Duration::from_secs(1), false),
            ("open-minutes", FINISHED_TTL * 3, false),
            ("open-expired", SESSION_TTL + Duration::from_secs(1), false),
        ];
        let mut sessions = HashMap::new();
        for (name, age, finished) in cases {
            let stage = if finished {
                Stage::Finished
            } else {
                Stage::Identify {
                    host_challenge: [0; 8],
                }
            };
            let session = Session {
                created: base + (last - age),
                stage,
                last: None,
            };
            sessions.insert(name.to_string(), session);
        }
        assert_eq!(
            sweep(&mut sessions, now),
            2,
            "only sessions in progress count"
        );
        let mut kept: Vec<&str> = sessions.keys().map(String::as_str).collect();
        kept.sort_unstable();
        assert_eq!(kept, ["finished-fresh", "open-fresh", "open-minutes"]);
    }
}
