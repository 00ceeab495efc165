//! The campaign database: SQLite (bundled, one file: a pilot) or PostgreSQL (a fleet served by several
//! server instances). One schema, from numbered migrations embedded in the binary and applied in order;
//! where the dialects differ, each migration says so explicitly ([`Migration`]). Queries are written once
//! with `$N` parameters and `{now}` (milliseconds since the epoch, database clock), `{utc}` (the time as
//! text) and `{lock}` (row locks where the engine has them) tokens;
//! [`Dialect::sql`] turns them into what each engine reads.
//!
//! Each card of each campaign moves `pending → in_flight → done`, or to `failed` with a reason; the
//! attempt count grows with every script that could change the card. Every change is committed before
//! the script that depends on it leaves the server, so after a crash the row never claims less than the
//! card may hold: `in_flight` means "outcome unknown, audit before acting".
//!
//! Any instance may serve any card, but one at a time: a card is *claimed* with a lease (`lease_owner`,
//! `lease_until`) in a transaction that locks its rows (`SELECT … FOR UPDATE` on PostgreSQL, an
//! `IMMEDIATE` transaction on SQLite). Every later change is fenced by the lease (it applies only while
//! this instance still owns the row) and renews it; a finished card gives it back. The lease of an
//! instance that died simply runs out, and any other instance takes the card over. Instances register in
//! `instances` and beat a heartbeat there, so operators see which are alive.

mod migrations;
mod sql;

use migrations::PG_MIGRATION_LOCK;
pub use migrations::{Migration, MIGRATIONS};
pub use sql::{is_postgres_url, DbTarget, Dialect};
use sql::{pg_connect, pg_err, Backend, Ty, V};

use crate::error::Error;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// A campaign's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CampaignState {
    /// Cards that call get the package.
    Active,
    /// No card starts; cards already in flight are finished.
    Paused,
    /// As paused, for good.
    Cancelled,
}

impl CampaignState {
    fn as_str(self) -> &'static str {
        match self {
            CampaignState::Active => "active",
            CampaignState::Paused => "paused",
            CampaignState::Cancelled => "cancelled",
        }
    }
}

/// A card's state in a campaign.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CardState {
    /// Nothing sent yet.
    Pending,
    /// A script that changes the card was sent; its outcome is unknown until the card answers or is
    /// audited.
    InFlight,
    /// Installed, checked by status words and R-MACs or by an audit.
    Done,
    /// Given up, with a reason (wrong keys, refused by the card, package unusable for this card).
    Failed,
}

impl CardState {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            CardState::Pending => "pending",
            CardState::InFlight => "in_flight",
            CardState::Done => "done",
            CardState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<CardState, Error> {
        match s {
            "pending" => Ok(CardState::Pending),
            "in_flight" => Ok(CardState::InFlight),
            "done" => Ok(CardState::Done),
            "failed" => Ok(CardState::Failed),
            other => Err(Error::Database(format!(
                "unknown card state '{}'",
                other.escape_debug()
            ))),
        }
    }

    fn is_final(self) -> bool {
        matches!(self, CardState::Done | CardState::Failed)
    }
}

/// A campaign as listed.
#[derive(Clone, Debug)]
pub struct Campaign {
    /// Row id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// `active`, `paused` or `cancelled`.
    pub state: String,
    /// SHA-256 of the package, hex.
    pub package_sha256: String,
    /// Target security domain (hex), the ISD when absent.
    pub sd_aid: Option<String>,
    /// Cards per state: pending, in flight, done, failed.
    pub counts: [u64; 4],
}

/// One card of one campaign.
#[derive(Clone, Debug)]
pub struct CardRow {
    /// The campaign's row id.
    pub campaign_id: i64,
    /// The campaign's name.
    pub campaign: String,
    /// The card's identity from the card list.
    pub identity: String,
    /// The card's KDD, hex upper case.
    pub kdd: String,
    /// Its state.
    pub state: CardState,
    /// Scripts sent that could change the card.
    pub attempts: u32,
    /// Why it failed.
    pub reason: Option<String>,
}

/// Work for a card that called: its row, and the campaign's package and security domain.
#[derive(Clone, Debug)]
pub struct Work {
    /// The card's row.
    pub card: CardRow,
    /// The package file's bytes as stored when the campaign was added.
    pub package: Vec<u8>,
    /// Security domain, privileges and install parameters.
    pub settings: crate::plan::InstallSettings,
}

/// What a card that called gets from [`Db::claim`].
#[derive(Debug)]
pub enum Claim {
    /// Its work, leased to this instance.
    Work(Work),
    /// Another instance holds the card's lease (a session in progress there, or an instance that died
    /// and whose lease has not run out yet): the card calls again later.
    Busy {
        /// The instance holding it.
        owner: String,
    },
    /// Nothing to do for this card.
    Nothing,
}

/// A server instance as registered in the database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    /// Its id (unique per process start).
    pub id: String,
    /// Its name (the same across restarts: host and listen address).
    pub name: String,
    /// The ledger it appends deliveries to, if any.
    pub ledger: Option<String>,
    /// When it started, milliseconds since the epoch (database clock).
    pub started_at_ms: i64,
    /// Its last heartbeat, milliseconds since the epoch.
    pub heartbeat_at_ms: i64,
    /// Whether its heartbeat is recent (within its lease time).
    pub alive: bool,
}

/// A card finished (`done`) whose delivery record may not be in the ledger yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingRecord {
    /// The campaign's row id.
    pub campaign_id: i64,
    /// The card's KDD, hex.
    pub kdd: String,
}

/// An open database.
pub struct Db {
    /// The connections: one for commands, more for a server (each request takes a free one).
    first: Mutex<Backend>,
    more: Vec<Mutex<Backend>>,
    next: std::sync::atomic::AtomicUsize,
    target: DbTarget,
    /// This instance's id, lease length (ms) and ledger, once registered.
    instance: Option<(String, i64, Option<String>)>,
}

const CARD_COLUMNS: &str =
    "k.campaign_id, c.name, k.identity, k.kdd, k.state, k.attempts, k.reason";
const CARD_TYPES: [Ty; 7] = [Ty::I, Ty::T, Ty::T, Ty::T, Ty::T, Ty::I, Ty::N];

fn card_row(row: Vec<V>) -> Result<CardRow, Error> {
    let mut it = row.into_iter();
    let mut next = || it.next().unwrap_or(V::N(None));
    let campaign_id = next().int();
    let campaign = next().text();
    let identity = next().text();
    let kdd = next().text();
    let state = CardState::parse(&next().text())?;
    let attempts = u32::try_from(next().int()).unwrap_or(u32::MAX);
    let reason = next().opt();
    Ok(CardRow {
        campaign_id,
        campaign,
        identity,
        kdd,
        state,
        attempts,
        reason,
    })
}

fn unhex(s: &str, what: &str) -> Result<Vec<u8>, Error> {
    hex::decode(s).map_err(|_| Error::Database(format!("campaigns.{what} is not hex")))
}

fn work_row(row: Vec<V>) -> Result<Work, Error> {
    let mut row = row;
    let extra = row.split_off(CARD_TYPES.len().min(row.len()));
    let card = card_row(row)?;
    let mut it = extra.into_iter();
    let mut next = || it.next().unwrap_or(V::N(None));
    let package = next().bytes();
    let sd = next().opt();
    let privileges = next().text();
    let params = next().text();
    let settings = crate::plan::InstallSettings {
        sd_aid: sd.map(|s| unhex(&s, "sd_aid")).transpose()?,
        privileges: unhex(&privileges, "privileges")?,
        install_parameters: unhex(&params, "install_parameters")?,
    };
    Ok(Work {
        card,
        package,
        settings,
    })
}

const WORK_TYPES: [Ty; 11] = [
    Ty::I,
    Ty::T,
    Ty::T,
    Ty::T,
    Ty::T,
    Ty::I,
    Ty::N,
    Ty::B,
    Ty::N,
    Ty::T,
    Ty::T,
];

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

impl Db {
    /// Opens (creating when missing) the database at `path` — a SQLite file, or a PostgreSQL server
    /// when `path` is a `postgres://` URL — and applies pending migrations.
    pub fn open(path: &Path) -> Result<Db, Error> {
        Db::connect(DbTarget::parse(path))
    }

    /// Opens the database `target` and applies pending migrations.
    pub fn connect(target: DbTarget) -> Result<Db, Error> {
        let backend = Db::backend_for(&target)?;
        let db = Db {
            first: Mutex::new(backend),
            more: Vec::new(),
            next: std::sync::atomic::AtomicUsize::new(0),
            target,
            instance: None,
        };
        db.migrate()?;
        Ok(db)
    }

    /// Grows the pool to `n` connections, so that up to `n` requests use the database at once (a
    /// server's commits then overlap, and PostgreSQL groups their flushes). SQLite keeps its one
    /// connection: it has one writer anyway, and connections waiting for its lock only sleep.
    pub fn grow_pool(&mut self, n: usize) -> Result<(), Error> {
        if self.dialect() == Dialect::Sqlite {
            return Ok(());
        }
        while self.more.len() + 1 < n {
            let b = Db::backend_for(&self.target)?;
            self.more.push(Mutex::new(b));
        }
        Ok(())
    }

    fn backend_for(target: &DbTarget) -> Result<Backend, Error> {
        Ok(match target {
            DbTarget::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path)
                    .map_err(|e| Error::Database(format!("{}: {e}", path.display())))?;
                conn.busy_timeout(Duration::from_secs(5))?;
                conn.pragma_update(None, "journal_mode", "WAL")?;
                conn.pragma_update(None, "synchronous", "FULL")?;
                conn.pragma_update(None, "foreign_keys", "ON")?;
                Backend::Sqlite(conn)
            }
            DbTarget::Postgres(url) => Backend::Postgres {
                url: url.clone(),
                client: Some(Box::new(pg_connect(url).map_err(|e| {
                    Error::Database(format!("{}: {e}", target.describe()))
                })?)),
            },
        })
    }

    /// Where this database is.
    pub fn target(&self) -> &DbTarget {
        &self.target
    }

    /// The SQL dialect in use.
    pub fn dialect(&self) -> Dialect {
        match self.target {
            DbTarget::Sqlite(_) => Dialect::Sqlite,
            DbTarget::Postgres(_) => Dialect::Postgres,
        }
    }

    fn slot(&self, i: usize) -> &Mutex<Backend> {
        match i.checked_sub(1) {
            Some(k) => self.more.get(k).unwrap_or(&self.first),
            None => &self.first,
        }
    }

    /// A free connection of the pool, or (all busy) the next one when it is free.
    fn backend(&self) -> std::sync::MutexGuard<'_, Backend> {
        let n = self.more.len() + 1;
        let start = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for k in 0..n {
            match self.slot((start + k) % n).try_lock() {
                Ok(g) => return g,
                Err(std::sync::TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {}
            }
        }
        self.slot(start % n)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The database's size on disk in bytes (SQLite: the file's pages after a passive checkpoint of
    /// the write-ahead log; PostgreSQL:
    /// `pg_database_size`), for capacity planning.
    pub fn size_bytes(&self) -> Result<u64, Error> {
        let sql = match self.dialect() {
            Dialect::Sqlite => {
                "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()"
            }
            Dialect::Postgres => "SELECT pg_database_size(current_database())",
        };
        let mut backend = self.backend();
        if let Backend::Sqlite(c) = &mut *backend {
            // Pages still in the write-ahead log count once they are in the file.
            c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        }
        let rows = backend.run(|x| x.query(sql, &[], &[Ty::I]))?;
        Ok(u64::try_from(rows.first().and_then(|r| r.first()).map_or(0, V::int)).unwrap_or(0))
    }

    /// The schema version (the number of migrations applied).
    pub fn schema_version(&self) -> Result<i64, Error> {
        match &mut *self.backend() {
            Backend::Sqlite(c) => Ok(c.pragma_query_value(None, "user_version", |r| r.get(0))?),
            b => b.run(|x| {
                let rows = x.query("SELECT version FROM schema_version", &[], &[Ty::I])?;
                Ok(rows.first().and_then(|r| r.first()).map_or(0, V::int))
            }),
        }
    }

    fn migrate(&self) -> Result<(), Error> {
        let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
        let newer = |version: i64| {
            Error::Database(format!(
                "schema version {version} is newer than this server knows ({known}); upgrade the server"
            ))
        };
        match &mut *self.backend() {
            Backend::Sqlite(conn) => {
                let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
                if version > known {
                    return Err(newer(version));
                }
                for (n, m) in MIGRATIONS
                    .iter()
                    .enumerate()
                    .skip(usize::try_from(version).unwrap_or(0))
                {
                    let tx = conn.transaction()?;
                    tx.execute_batch(m.sqlite)?;
                    tx.pragma_update(None, "user_version", n + 1)?;
                    tx.commit()?;
                }
                Ok(())
            }
            Backend::Postgres { url, client } => {
                let c = match client {
                    Some(c) => c,
                    None => client.insert(Box::new(pg_connect(url)?)),
                };
                // DDL is transactional in PostgreSQL: all pending migrations commit together, under
                // an advisory lock so that instances starting at once apply each only once.
                let mut tx = c.transaction().map_err(pg_err)?;
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PG_MIGRATION_LOCK])
                    .map_err(pg_err)?;
                tx.batch_execute(
                    "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)",
                )
                .map_err(pg_err)?;
                let version: i64 = match tx
                    .query_opt("SELECT version FROM schema_version", &[])
                    .map_err(pg_err)?
                {
                    Some(r) => r.try_get(0).map_err(pg_err)?,
                    None => {
                        tx.execute("INSERT INTO schema_version (version) VALUES (0)", &[])
                            .map_err(pg_err)?;
                        0
                    }
                };
                if version > known {
                    return Err(newer(version));
                }
                for (n, m) in MIGRATIONS
                    .iter()
                    .enumerate()
                    .skip(usize::try_from(version).unwrap_or(0))
                {
                    tx.batch_execute(m.postgres).map_err(pg_err)?;
                    let v = i64::try_from(n + 1).unwrap_or(i64::MAX);
                    tx.execute("UPDATE schema_version SET version = $1", &[&v])
                        .map_err(pg_err)?;
                }
                tx.commit().map_err(pg_err)
            }
        }
    }

    /// Adds a campaign with its package bytes and its cards (all pending).
    pub fn add_campaign(
        &mut self,
        name: &str,
        package: &[u8],
        package_sha256: &str,
        settings: &crate::plan::InstallSettings,
        cards: &[(String, [u8; 10])],
    ) -> Result<i64, Error> {
        self.backend().tx(|x| {
            let exists = x.query(
                "SELECT id FROM campaigns WHERE name = $1",
                &[V::T(name.into())],
                &[Ty::I],
            )?;
            if !exists.is_empty() {
                return Err(Error::Campaign(format!("a campaign named '{name}' exists")));
            }
            let id = x
                .query(
                    "INSERT INTO campaigns (name, state, package, package_sha256, sd_aid, privileges, install_parameters)
                     VALUES ($1, 'active', $2, $3, $4, $5, $6) RETURNING id",
                    &[
                        V::T(name.into()),
                        V::B(package.to_vec()),
                        V::T(package_sha256.into()),
                        V::N(settings.sd_aid.as_deref().map(hex::encode_upper)),
                        V::T(hex::encode_upper(&settings.privileges)),
                        V::T(hex::encode_upper(&settings.install_parameters)),
                    ],
                    &[Ty::I],
                )?
                .first()
                .and_then(|r| r.first())
                .map(V::int)
                .ok_or_else(|| Error::Database("the new campaign has no id".into()))?;
            for (identity, kdd) in cards {
                x.execute(
                    "INSERT INTO cards (campaign_id, identity, kdd, state) VALUES ($1, $2, $3, 'pending')",
                    &[V::I(id), V::T(identity.clone()), V::T(hex::encode_upper(kdd))],
                )
                .map_err(|e| Error::Campaign(format!("card {identity}: {e}")))?;
            }
            Ok(id)
        })
    }

    /// Every campaign with its counts.
    pub fn campaigns(&self) -> Result<Vec<Campaign>, Error> {
        let rows = self.backend().run(|x| {
            x.query(
                "SELECT id, name, state, package_sha256, sd_aid,
                   (SELECT count(*) FROM cards WHERE campaign_id = c.id AND state = 'pending'),
                   (SELECT count(*) FROM cards WHERE campaign_id = c.id AND state = 'in_flight'),
                   (SELECT count(*) FROM cards WHERE campaign_id = c.id AND state = 'done'),
                   (SELECT count(*) FROM cards WHERE campaign_id = c.id AND state = 'failed')
                 FROM campaigns c ORDER BY id",
                &[],
                &[
                    Ty::I,
                    Ty::T,
                    Ty::T,
                    Ty::T,
                    Ty::N,
                    Ty::I,
                    Ty::I,
                    Ty::I,
                    Ty::I,
                ],
            )
        })?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let mut it = r.into_iter();
                let mut next = || it.next().unwrap_or(V::N(None));
                let id = next().int();
                let name = next().text();
                let state = next().text();
                let package_sha256 = next().text();
                let sd_aid = next().opt();
                let mut counts = [0u64; 4];
                for c in &mut counts {
                    *c = u64::try_from(next().int()).unwrap_or(0);
                }
                Campaign {
                    id,
                    name,
                    state,
                    package_sha256,
                    sd_aid,
                    counts,
                }
            })
            .collect())
    }

    /// The cards of the campaign `name`, in the order of its card list.
    pub fn cards(&self, name: &str) -> Result<Vec<CardRow>, Error> {
        let rows = self.backend().run(|x| {
            x.query(
                &format!(
                    "SELECT {CARD_COLUMNS} FROM cards k JOIN campaigns c ON c.id = k.campaign_id
                     WHERE c.name = $1 ORDER BY k.rowid"
                ),
                &[V::T(name.into())],
                &CARD_TYPES,
            )
        })?;
        rows.into_iter().map(card_row).collect()
    }

    /// Sets a campaign's state (`pause`, `resume`, `cancel`); a cancelled campaign stays cancelled.
    pub fn set_campaign_state(&mut self, name: &str, state: CampaignState) -> Result<(), Error> {
        self.backend().tx(|x| {
            let current = x.query(
                "SELECT state FROM campaigns WHERE name = $1",
                &[V::T(name.into())],
                &[Ty::T],
            )?;
            match current
                .into_iter()
                .next()
                .and_then(|r| r.into_iter().next())
                .map(V::text)
            {
                None => Err(Error::Campaign(format!("no campaign named '{name}'"))),
                Some(s) if s == "cancelled" && state != CampaignState::Cancelled => {
                    Err(Error::Campaign(format!(
                        "campaign '{name}' is cancelled; add a new campaign instead"
                    )))
                }
                Some(_) => {
                    x.execute(
                        "UPDATE campaigns SET state = $1 WHERE name = $2",
                        &[V::T(state.as_str().into()), V::T(name.into())],
                    )?;
                    Ok(())
                }
            }
        })
    }

    /// Registers this process as a server instance: `id` unique per start; `name` the same across
    /// restarts of one server (host and listen address); `ledger` the ledger it appends deliveries
    /// to; `lease` how long a card it claims stays its own without news from it (and how stale its
    /// heartbeat may get before others call it dead). Cards still leased to an earlier life of the
    /// same `name` are given back at once: that process is gone (its successor holds its address).
    pub fn register_instance(
        &mut self,
        id: &str,
        name: &str,
        ledger: Option<&str>,
        lease: Duration,
    ) -> Result<(), Error> {
        let lease_ms = millis(lease).max(1);
        self.backend().tx(|x| {
            x.execute(
                "INSERT INTO instances (id, name, ledger, lease_ms, started_at, heartbeat_at)
                 VALUES ($1, $2, $3, $4, {now}, {now})",
                &[
                    V::T(id.into()),
                    V::T(name.into()),
                    V::N(ledger.map(str::to_string)),
                    V::I(lease_ms),
                ],
            )?;
            x.execute(
                "UPDATE cards SET lease_owner = NULL, lease_until = 0
                 WHERE lease_owner IN (SELECT id FROM instances WHERE name = $1 AND id <> $2)",
                &[V::T(name.into()), V::T(id.into())],
            )
        })?;
        self.instance = Some((id.to_string(), lease_ms, ledger.map(str::to_string)));
        Ok(())
    }

    /// Acts for the instance another connection of this process registered.
    pub fn adopt_instance(&mut self, other: &Db) {
        self.instance = other.instance.clone();
    }

    /// This instance's id, once registered.
    pub fn instance_id(&self) -> Option<&str> {
        self.instance.as_ref().map(|i| i.0.as_str())
    }

    /// The ledger this instance registered with.
    pub fn instance_ledger(&self) -> Option<&str> {
        self.instance.as_ref().and_then(|i| i.2.as_deref())
    }

    /// How long this instance's leases last.
    pub fn lease(&self) -> Option<Duration> {
        self.instance
            .as_ref()
            .map(|i| Duration::from_millis(u64::try_from(i.1).unwrap_or(0)))
    }

    /// Beats this instance's heartbeat.
    pub fn heartbeat(&self) -> Result<(), Error> {
        let (id, _) = self.me()?;
        self.backend().run(|x| {
            x.execute(
                "UPDATE instances SET heartbeat_at = {now} WHERE id = $1",
                &[V::T(id)],
            )
        })?;
        Ok(())
    }

    /// Every registered instance, newest first, with whether it is alive.
    pub fn instances(&self) -> Result<Vec<Instance>, Error> {
        let rows = self.backend().run(|x| {
            x.query(
                "SELECT id, name, ledger, started_at, heartbeat_at,
                   CAST(CASE WHEN heartbeat_at + lease_ms > {now} THEN 1 ELSE 0 END AS BIGINT)
                 FROM instances ORDER BY started_at DESC, id",
                &[],
                &[Ty::T, Ty::T, Ty::N, Ty::I, Ty::I, Ty::I],
            )
        })?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let mut it = r.into_iter();
                let mut next = || it.next().unwrap_or(V::N(None));
                Instance {
                    id: next().text(),
                    name: next().text(),
                    ledger: next().opt(),
                    started_at_ms: next().int(),
                    heartbeat_at_ms: next().int(),
                    alive: next().int() == 1,
                }
            })
            .collect())
    }

    fn me(&self) -> Result<(String, i64), Error> {
        self.instance
            .clone()
            .map(|(id, ms, _)| (id, ms))
            .ok_or_else(|| {
                Error::Database("this server instance is not registered in the database".into())
            })
    }

    /// Claims the card with `kdd` for this instance: its oldest in-flight row (any campaign state: a
    /// card in flight is finished even when its campaign was paused), else its oldest pending row in
    /// an active campaign, leased to this instance. [`Claim::Busy`] when another instance holds a
    /// lease on any of the card's rows that has not run out.
    pub fn claim(&self, kdd: &[u8; 10]) -> Result<Claim, Error> {
        let (me, lease_ms) = self.me()?;
        let kdd = hex::encode_upper(kdd);
        self.backend().tx(|x| {
            let rows = x.query(
                &format!(
                    "SELECT {CARD_COLUMNS}, c.package, c.sd_aid, c.privileges, c.install_parameters,
                       k.lease_owner,
                       CAST(CASE WHEN k.lease_owner IS NOT NULL AND k.lease_owner <> $2
                         AND k.lease_until > {{now}} THEN 1 ELSE 0 END AS BIGINT)
                     FROM cards k JOIN campaigns c ON c.id = k.campaign_id
                     WHERE k.kdd = $1 AND (k.state = 'in_flight' OR (k.state = 'pending' AND c.state = 'active'))
                     ORDER BY k.state = 'in_flight' DESC, c.id {{lock}}"
                ),
                &[V::T(kdd.clone()), V::T(me.clone())],
                &[WORK_TYPES.as_slice(), &[Ty::N, Ty::I]].concat(),
            )?;
            for r in &rows {
                if let (Some(owner), Some(V::I(1))) = (r.get(WORK_TYPES.len()), r.get(WORK_TYPES.len() + 1)) {
                    return Ok(Claim::Busy {
                        owner: owner.clone().text(),
                    });
                }
            }
            let Some(mut first) = rows.into_iter().next() else {
                return Ok(Claim::Nothing);
            };
            first.truncate(WORK_TYPES.len());
            let work = work_row(first)?;
            x.execute(
                "UPDATE cards SET lease_owner = $1, lease_until = {now} + $2
                 WHERE campaign_id = $3 AND kdd = $4",
                &[V::T(me.clone()), V::I(lease_ms), V::I(work.card.campaign_id), V::T(kdd.clone())],
            )?;
            Ok(Claim::Work(work))
        })
    }

    /// The work row of one card of one campaign, whatever its state (for records written late).
    pub fn work(&self, campaign_id: i64, kdd: &str) -> Result<Option<Work>, Error> {
        let rows = self.backend().run(|x| {
            x.query(
                &format!(
                    "SELECT {CARD_COLUMNS}, c.package, c.sd_aid, c.privileges, c.install_parameters
                     FROM cards k JOIN campaigns c ON c.id = k.campaign_id
                     WHERE k.campaign_id = $1 AND k.kdd = $2"
                ),
                &[V::I(campaign_id), V::T(kdd.into())],
                &WORK_TYPES,
            )
        })?;
        rows.into_iter().next().map(work_row).transpose()
    }

    /// Whether a card with this KDD is in any campaign at all.
    pub fn knows(&self, kdd: &[u8; 10]) -> Result<bool, Error> {
        let rows = self.backend().run(|x| {
            x.query(
                "SELECT count(*) FROM cards WHERE kdd = $1",
                &[V::T(hex::encode_upper(kdd))],
                &[Ty::I],
            )
        })?;
        Ok(rows.first().and_then(|r| r.first()).map_or(0, V::int) > 0)
    }

    /// Moves a card's row, leased to this instance, to `state` (committed when this returns), adding
    /// one attempt when `attempt`. A final state gives the lease back (and, with `ledger_pending`,
    /// notes that the delivery record is still to be written); any other renews it. Fails, changing
    /// nothing, when this instance no longer holds the lease.
    pub fn set_card(
        &self,
        campaign_id: i64,
        kdd: &str,
        state: CardState,
        reason: Option<&str>,
        attempt: bool,
    ) -> Result<(), Error> {
        self.set_card_recording(campaign_id, kdd, state, reason, attempt, None)
    }

    /// [`Db::set_card`], noting for a `done` card that its delivery record is still to be written to
    /// the ledger `ledger_pending`.
    pub fn set_card_recording(
        &self,
        campaign_id: i64,
        kdd: &str,
        state: CardState,
        reason: Option<&str>,
        attempt: bool,
        ledger_pending: Option<&str>,
    ) -> Result<(), Error> {
        let (me, lease_ms) = self.me()?;
        let owner = if state.is_final() {
            V::N(None)
        } else {
            V::N(Some(me.clone()))
        };
        let n = self.backend().run(|x| {
            x.execute(
                "UPDATE cards SET state = $1, reason = $2, attempts = attempts + $3,
                   lease_owner = CAST($4 AS TEXT), lease_until = CASE WHEN CAST($4 AS TEXT) IS NULL THEN 0 ELSE {now} + $5 END,
                   ledger_pending = $6,
                   updated_at = {utc}
                 WHERE campaign_id = $7 AND kdd = $8 AND lease_owner = $9",
                &[
                    V::T(state.as_str().into()),
                    V::N(reason.map(str::to_string)),
                    V::I(i64::from(attempt)),
                    owner,
                    V::I(lease_ms),
                    V::N(ledger_pending.map(str::to_string)),
                    V::I(campaign_id),
                    V::T(kdd.into()),
                    V::T(me.clone()),
                ],
            )
        })?;
        if n != 1 {
            return Err(Error::Database(format!(
                "card {kdd} of campaign {campaign_id} is not leased to this instance (its lease ran out and another instance took it, or it is in no campaign)"
            )));
        }
        Ok(())
    }

    /// Gives back the lease on a card whose session ended without a final state, so that any
    /// instance serves it at once when it calls again.
    pub fn release(&self, campaign_id: i64, kdd: &str) -> Result<(), Error> {
        let (me, _) = self.me()?;
        self.backend().run(|x| {
            x.execute(
                "UPDATE cards SET lease_owner = NULL, lease_until = 0
                 WHERE campaign_id = $1 AND kdd = $2 AND lease_owner = $3",
                &[V::I(campaign_id), V::T(kdd.into()), V::T(me)],
            )
        })?;
        Ok(())
    }

    /// Cards done whose delivery record for `ledger` may not have been written.
    pub fn pending_records(&self, ledger: &str) -> Result<Vec<PendingRecord>, Error> {
        let rows = self.backend().run(|x| {
            x.query(
                "SELECT campaign_id, kdd FROM cards WHERE ledger_pending = $1 ORDER BY campaign_id, kdd",
                &[V::T(ledger.into())],
                &[Ty::I, Ty::T],
            )
        })?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let mut it = r.into_iter();
                let mut next = || it.next().unwrap_or(V::N(None));
                PendingRecord {
                    campaign_id: next().int(),
                    kdd: next().text(),
                }
            })
            .collect())
    }

    /// Notes that the delivery record of this card is in the ledger.
    pub fn recorded(&self, campaign_id: i64, kdd: &str) -> Result<(), Error> {
        self.backend().run(|x| {
            x.execute(
                "UPDATE cards SET ledger_pending = NULL WHERE campaign_id = $1 AND kdd = $2",
                &[V::I(campaign_id), V::T(kdd.into())],
            )
        })?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    fn claimed(db: &Db, kdd: &[u8; 10]) -> Work {
        match db.claim(kdd).unwrap() {
            Claim::Work(w) => w,
            other => panic!("no work: {other:?}"),
        }
    }

    #[test]
    fn campaigns_and_card_states() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let mut db = Db::open(&path).unwrap();
        db.register_instance("one", "n1", None, Duration::from_secs(60))
            .unwrap();
        let kdd = [1u8; 10];
        let settings = crate::plan::InstallSettings {
            sd_aid: Some(vec![0xA0, 0, 0, 0, 0x51]),
            privileges: vec![0x10, 0, 0],
            install_parameters: vec![0xC9, 0x01, 0x07],
        };
        db.add_campaign("c1", b"pkg", "00", &settings, &[("a".into(), kdd)])
            .unwrap();
        assert!(db.add_campaign("c1", b"pkg", "00", &settings, &[]).is_err());
        let w = claimed(&db, &kdd);
        assert_eq!(w.settings, settings);
        assert_eq!(w.card.state, CardState::Pending);
        db.set_card(
            w.card.campaign_id,
            &w.card.kdd,
            CardState::InFlight,
            None,
            true,
        )
        .unwrap();
        db.set_campaign_state("c1", CampaignState::Paused).unwrap();
        drop(db);
        // Reopened (migrations are not re-applied) by the same instance: an in-flight card is still
        // worked on when paused.
        let mut db = Db::open(&path).unwrap();
        db.register_instance("two", "n2", None, Duration::from_secs(60))
            .unwrap();
        assert!(
            matches!(db.claim(&kdd).unwrap(), Claim::Busy { ref owner } if owner == "one"),
            "another instance's lease holds"
        );
        db.instance = Some(("one".into(), 60_000, None));
        let w = claimed(&db, &kdd);
        assert_eq!((w.card.state, w.card.attempts), (CardState::InFlight, 1));
        db.set_card(
            w.card.campaign_id,
            &w.card.kdd,
            CardState::Done,
            None,
            false,
        )
        .unwrap();
        assert!(matches!(db.claim(&kdd).unwrap(), Claim::Nothing));
        assert!(db.knows(&kdd).unwrap());
        assert_eq!(db.campaigns().unwrap()[0].counts, [0, 0, 1, 0]);
        db.set_campaign_state("c1", CampaignState::Cancelled)
            .unwrap();
        assert!(db.set_campaign_state("c1", CampaignState::Active).is_err());
        assert!(db
            .set_campaign_state("nope", CampaignState::Paused)
            .is_err());
        let ids: Vec<String> = db.instances().unwrap().into_iter().map(|i| i.id).collect();
        assert_eq!(ids.len(), 2, "{ids:?}");
    }

    #[test]
    fn an_expired_lease_is_taken_over_and_the_old_owner_is_fenced_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let mut a = Db::open(&path).unwrap();
        a.register_instance("a", "na", None, Duration::from_millis(200))
            .unwrap();
        let mut b = Db::open(&path).unwrap();
        b.register_instance("b", "nb", Some("/l.jsonl"), Duration::from_secs(60))
            .unwrap();
        let kdd = [2u8; 10];
        a.add_campaign(
            "c",
            b"p",
            "00",
            &crate::plan::InstallSettings::default(),
            &[("x".into(), kdd)],
        )
        .unwrap();
        let w = claimed(&a, &kdd);
        a.set_card(
            w.card.campaign_id,
            &w.card.kdd,
            CardState::InFlight,
            None,
            true,
        )
        .unwrap();
        assert!(matches!(b.claim(&kdd).unwrap(), Claim::Busy { .. }));
        std::thread::sleep(Duration::from_millis(300));
        let w = claimed(&b, &kdd);
        assert_eq!(w.card.state, CardState::InFlight);
        // The first owner's late step changes nothing.
        assert!(a
            .set_card(
                w.card.campaign_id,
                &w.card.kdd,
                CardState::Failed,
                Some("late"),
                false
            )
            .is_err());
        b.set_card_recording(
            w.card.campaign_id,
            &w.card.kdd,
            CardState::Done,
            None,
            false,
            Some("/l.jsonl"),
        )
        .unwrap();
        let pending = b.pending_records("/l.jsonl").unwrap();
        assert_eq!(pending.len(), 1);
        b.recorded(pending[0].campaign_id, &pending[0].kdd).unwrap();
        assert!(b.pending_records("/l.jsonl").unwrap().is_empty());
        assert_eq!(a.cards("c").unwrap()[0].state, CardState::Done);
        // a's heartbeat is older than its lease: it shows as dead, b as alive.
        std::thread::sleep(Duration::from_millis(250));
        let alive: Vec<(String, bool)> = a
            .instances()
            .unwrap()
            .into_iter()
            .map(|i| (i.id, i.alive))
            .collect();
        assert!(alive.contains(&("a".into(), false)), "{alive:?}");
        assert!(alive.contains(&("b".into(), true)), "{alive:?}");
    }

    #[test]
    fn a_version_1_database_is_migrated_and_keeps_its_campaigns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(MIGRATIONS[0].sqlite).unwrap();
        c.pragma_update(None, "user_version", 1).unwrap();
        c.execute(
            "INSERT INTO campaigns (name, state, package, package_sha256) VALUES ('old', 'active', x'00', '00')",
            [],
        )
        .unwrap();
        c.execute(
            "INSERT INTO cards (campaign_id, identity, kdd, state) VALUES (1, 'a', '01010101010101010101', 'pending')",
            [],
        )
        .unwrap();
        drop(c);
        let mut db = Db::open(&path).unwrap();
        db.register_instance("i", "ni", None, Duration::from_secs(5))
            .unwrap();
        let w = claimed(&db, &[1u8; 10]);
        assert_eq!(w.settings, crate::plan::InstallSettings::default());
        assert_eq!(
            db.schema_version().unwrap(),
            i64::try_from(MIGRATIONS.len()).unwrap()
        );
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        Db::open(&path).unwrap();
        let c = rusqlite::Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
        drop(c);
        assert!(Db::open(&path).is_err());
    }

    #[test]
    fn queries_are_written_once_for_both_dialects() {
        let q = "UPDATE t SET a = $1 WHERE b < {now} + $2 {lock}";
        assert_eq!(
            Dialect::Sqlite.sql(q),
            "UPDATE t SET a = ?1 WHERE b < CAST(unixepoch('subsec') * 1000 AS INTEGER) + ?2 "
        );
        assert!(Dialect::Postgres.sql(q).ends_with("+ $2 FOR UPDATE OF k"));
        assert!(matches!(
            DbTarget::parse(Path::new("postgres://u@127.0.0.1:5/db")),
            DbTarget::Postgres(_)
        ));
        assert!(matches!(
            DbTarget::parse(Path::new("/var/lib/r.db")),
            DbTarget::Sqlite(_)
        ));
        let t = DbTarget::parse(Path::new("postgres://u:secret@127.0.0.1:5/fleet"));
        assert!(!t.describe().contains("secret"), "{}", t.describe());
    }
}

/// Failed cards of one campaign that share a reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailureCount {
    /// The campaign's name.
    pub campaign: String,
    /// The reason recorded (`None` when a row has none).
    pub reason: Option<String>,
    /// How many cards.
    pub cards: u64,
}

/// One card of a campaign as the report lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportRow {
    /// The card's identity from the card list.
    pub identity: String,
    /// The card's KDD, hex upper case.
    pub kdd: String,
    /// `pending`, `in_flight`, `done` or `failed`, as stored.
    pub state: String,
    /// Scripts sent that could change the card.
    pub attempts: i64,
    /// Why it failed.
    pub reason: Option<String>,
    /// When the row last changed (UTC, `YYYY-MM-DDTHH:MM:SSZ`).
    pub updated_at: String,
}

/// Read-only queries for the operations side (status page, metrics, reports), in SQL both engines run.
impl Db {
    /// Failed cards per campaign and reason, most frequent first.
    pub fn failure_counts(&self) -> Result<Vec<FailureCount>, Error> {
        let rows = self.backend().run(|x| {
            x.query(
                "SELECT c.name, k.reason, count(*) AS n FROM cards k JOIN campaigns c ON c.id = k.campaign_id
                 WHERE k.state = 'failed' GROUP BY c.name, k.reason ORDER BY n DESC, c.name, k.reason",
                &[],
                &[Ty::T, Ty::N, Ty::I],
            )
        })?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let mut it = row.into_iter();
                let mut next = || it.next().unwrap_or(V::N(None));
                FailureCount {
                    campaign: next().text(),
                    reason: next().opt(),
                    cards: u64::try_from(next().int()).unwrap_or(0),
                }
            })
            .collect())
    }

    /// Calls `each` with every card of campaign `name`, by identity, with when its row last changed;
    /// `false` when there is no such campaign. Rows come in pages of [`REPORT_PAGE`] (keyset pagination
    /// on identity and KDD), so a campaign of millions of cards is never held in memory.
    pub fn report_each(
        &self,
        name: &str,
        mut each: impl FnMut(ReportRow) -> Result<(), Error>,
    ) -> Result<bool, Error> {
        let found = self.backend().run(|x| {
            x.query(
                "SELECT id FROM campaigns WHERE name = $1",
                &[V::T(name.into())],
                &[Ty::I],
            )
        })?;
        let Some(id) = found
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next())
            .map(|v| v.int())
        else {
            return Ok(false);
        };
        let (mut after_identity, mut after_kdd) = (String::new(), String::new());
        let mut first = true;
        loop {
            let page = self.backend().run(|x| {
                x.query(
                    &format!(
                        "SELECT identity, kdd, state, attempts, reason, updated_at FROM cards
                         WHERE campaign_id = $1 AND ($2 = 1 OR identity > $3 OR (identity = $3 AND kdd > $4))
                         ORDER BY identity, kdd LIMIT {REPORT_PAGE}"
                    ),
                    &[
                        V::I(id),
                        V::I(i64::from(first)),
                        V::T(after_identity.clone()),
                        V::T(after_kdd.clone()),
                    ],
                    &[Ty::T, Ty::T, Ty::T, Ty::I, Ty::N, Ty::T],
                )
            })?;
            let full = page.len() == REPORT_PAGE;
            for row in page {
                let mut it = row.into_iter();
                let mut next = || it.next().unwrap_or(V::N(None));
                let row = ReportRow {
                    identity: next().text(),
                    kdd: next().text(),
                    state: next().text(),
                    attempts: next().int(),
                    reason: next().opt(),
                    updated_at: next().text(),
                };
                after_identity.clone_from(&row.identity);
                after_kdd.clone_from(&row.kdd);
                each(row)?;
            }
            first = false;
            if !full {
                return Ok(true);
            }
        }
    }
}

/// Cards per page of a campaign report.
pub const REPORT_PAGE: usize = 10_000;
