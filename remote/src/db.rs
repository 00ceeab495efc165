//! The campaign database: SQLite (bundled), one file, schema from numbered migrations embedded in the
//! binary and applied in order (`PRAGMA user_version` holds the last one applied).
//!
//! Each card of each campaign moves `pending → in_flight → done`, or to `failed` with a reason; the
//! attempt count grows with every script that could change the card. Every change is committed before
//! the script that depends on it leaves the server, so after a crash the row never claims less than the
//! card may hold: `in_flight` means "outcome unknown, audit before acting".

use crate::error::Error;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;

/// The migrations, numbered from 1 by their position.
const MIGRATIONS: &[&str] = &[
    // 1: campaigns and their cards.
    "CREATE TABLE campaigns (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        state TEXT NOT NULL CHECK (state IN ('active', 'paused', 'cancelled')),
        package BLOB NOT NULL,
        package_sha256 TEXT NOT NULL,
        sd_aid TEXT,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
    );
    CREATE TABLE cards (
        campaign_id INTEGER NOT NULL REFERENCES campaigns(id),
        identity TEXT NOT NULL,
        kdd TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'in_flight', 'done', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        reason TEXT,
        updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
        PRIMARY KEY (campaign_id, kdd)
    );
    CREATE INDEX cards_by_kdd ON cards (kdd, state);",
    // 2: what INSTALL [for install] gives the applications.
    "ALTER TABLE campaigns ADD COLUMN privileges TEXT NOT NULL DEFAULT '00';
    ALTER TABLE campaigns ADD COLUMN install_parameters TEXT NOT NULL DEFAULT 'C900';",
];

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
            other => Err(Error::Database(format!("unknown card state '{other}'"))),
        }
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

/// An open database.
pub struct Db {
    conn: Connection,
}

impl Db {
    /// Opens (creating when missing) the database at `path` and applies pending migrations.
    pub fn open(path: &Path) -> Result<Db, Error> {
        let conn = Connection::open(path)
            .map_err(|e| Error::Database(format!("{}: {e}", path.display())))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let mut db = Db { conn };
        db.migrate()?;
        Ok(db)
    }

    fn migrate(&mut self) -> Result<(), Error> {
        let version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?;
        let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
        if version > known {
            return Err(Error::Database(format!(
                "schema version {version} is newer than this server knows ({known}); upgrade the server"
            )));
        }
        for (n, sql) in MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(version).unwrap_or(0))
        {
            let tx = self.conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", n + 1)?;
            tx.commit()?;
        }
        Ok(())
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
        let tx = self.conn.transaction()?;
        let exists: Option<i64> = tx
            .query_row("SELECT id FROM campaigns WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?;
        if exists.is_some() {
            return Err(Error::Campaign(format!("a campaign named '{name}' exists")));
        }
        tx.execute(
            "INSERT INTO campaigns (name, state, package, package_sha256, sd_aid, privileges, install_parameters)
             VALUES (?1, 'active', ?2, ?3, ?4, ?5, ?6)",
            params![
                name,
                package,
                package_sha256,
                settings.sd_aid.as_deref().map(hex::encode_upper),
                hex::encode_upper(&settings.privileges),
                hex::encode_upper(&settings.install_parameters)
            ],
        )?;
        let id = tx.last_insert_rowid();
        {
            let mut ins = tx.prepare(
                "INSERT INTO cards (campaign_id, identity, kdd, state) VALUES (?1, ?2, ?3, 'pending')",
            )?;
            for (identity, kdd) in cards {
                ins.execute(params![id, identity, hex::encode_upper(kdd)])
                    .map_err(|e| Error::Campaign(format!("card {identity}: {e}")))?;
            }
        }
        tx.commit()?;
        Ok(id)
    }

    /// Every campaign with its counts.
    pub fn campaigns(&self) -> Result<Vec<Campaign>, Error> {
        let mut stmt = self.conn.prepare(
            "SELECT id, name, state, package_sha256, sd_aid,
               (SELECT count(*) FROM cards WHERE campaign_id = c.id AND state = 'pending'),
               (SELECT count(*) FROM cards WHERE campaign_id = c.id AND state = 'in_flight'),
               (SELECT count(*) FROM cards WHERE campaign_id = c.id AND state = 'done'),
               (SELECT count(*) FROM cards WHERE campaign_id = c.id AND state = 'failed')
             FROM campaigns c ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(Campaign {
                id: r.get(0)?,
                name: r.get(1)?,
                state: r.get(2)?,
                package_sha256: r.get(3)?,
                sd_aid: r.get(4)?,
                counts: [r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?],
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The cards of the campaign `name`.
    pub fn cards(&self, name: &str) -> Result<Vec<CardRow>, Error> {
        let mut stmt = self.conn.prepare(
            "SELECT k.campaign_id, c.name, k.identity, k.kdd, k.state, k.attempts, k.reason
             FROM cards k JOIN campaigns c ON c.id = k.campaign_id WHERE c.name = ?1 ORDER BY k.rowid",
        )?;
        let rows = stmt.query_map([name], card_row)?;
        let mut out = Vec::new();
        for r in rows {
            out.push(r??);
        }
        Ok(out)
    }

    /// Sets a campaign's state (`pause`, `resume`, `cancel`); a cancelled campaign stays cancelled.
    pub fn set_campaign_state(&mut self, name: &str, state: CampaignState) -> Result<(), Error> {
        let current: Option<String> = self
            .conn
            .query_row("SELECT state FROM campaigns WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?;
        match current.as_deref() {
            None => Err(Error::Campaign(format!("no campaign named '{name}'"))),
            Some("cancelled") if state != CampaignState::Cancelled => Err(Error::Campaign(
                format!("campaign '{name}' is cancelled; add a new campaign instead"),
            )),
            Some(_) => {
                self.conn.execute(
                    "UPDATE campaigns SET state = ?1 WHERE name = ?2",
                    params![state.as_str(), name],
                )?;
                Ok(())
            }
        }
    }

    /// The work for the card with `kdd`: its oldest in-flight row (any campaign state: a card in flight
    /// is finished even when its campaign was paused), else its oldest pending row in an active campaign.
    pub fn work_for(&self, kdd: &[u8; 10]) -> Result<Option<Work>, Error> {
        let kdd = hex::encode_upper(kdd);
        let mut stmt = self.conn.prepare(
            "SELECT k.campaign_id, c.name, k.identity, k.kdd, k.state, k.attempts, k.reason, c.package, c.sd_aid,
               c.privileges, c.install_parameters
             FROM cards k JOIN campaigns c ON c.id = k.campaign_id
             WHERE k.kdd = ?1 AND (k.state = 'in_flight' OR (k.state = 'pending' AND c.state = 'active'))
             ORDER BY k.state = 'in_flight' DESC, c.id LIMIT 1",
        )?;
        let found = stmt
            .query_row([&kdd], |r| {
                let card = card_row(r)?;
                let package: Vec<u8> = r.get(7)?;
                let sd: Option<String> = r.get(8)?;
                let privileges: String = r.get(9)?;
                let params: String = r.get(10)?;
                Ok((card, package, sd, privileges, params))
            })
            .optional()?;
        let Some((card, package, sd, privileges, params)) = found else {
            return Ok(None);
        };
        let unhex = |s: &str, what: &str| {
            hex::decode(s).map_err(|_| Error::Database(format!("campaigns.{what} is not hex")))
        };
        let settings = crate::plan::InstallSettings {
            sd_aid: sd.map(|s| unhex(&s, "sd_aid")).transpose()?,
            privileges: unhex(&privileges, "privileges")?,
            install_parameters: unhex(&params, "install_parameters")?,
        };
        Ok(Some(Work {
            card: card?,
            package,
            settings,
        }))
    }

    /// Whether a card with this KDD is in any campaign at all.
    pub fn knows(&self, kdd: &[u8; 10]) -> Result<bool, Error> {
        let n: i64 = self.conn.query_row(
            "SELECT count(*) FROM cards WHERE kdd = ?1",
            [hex::encode_upper(kdd)],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }

    /// Moves a card's row to `state` (committed when this returns), adding one attempt when `attempt`.
    pub fn set_card(
        &mut self,
        campaign_id: i64,
        kdd: &str,
        state: CardState,
        reason: Option<&str>,
        attempt: bool,
    ) -> Result<(), Error> {
        let n = self.conn.execute(
            "UPDATE cards SET state = ?1, reason = ?2, attempts = attempts + ?3,
               updated_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now')
             WHERE campaign_id = ?4 AND kdd = ?5",
            params![state.as_str(), reason, i64::from(attempt), campaign_id, kdd],
        )?;
        if n != 1 {
            return Err(Error::Database(format!(
                "no card {kdd} in campaign {campaign_id}"
            )));
        }
        Ok(())
    }
}

fn card_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<CardRow, Error>> {
    let state: String = r.get(4)?;
    let attempts: i64 = r.get(5)?;
    let row = CardRow {
        campaign_id: r.get(0)?,
        campaign: r.get(1)?,
        identity: r.get(2)?,
        kdd: r.get(3)?,
        state: CardState::Pending,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        reason: r.get(6)?,
    };
    Ok(CardState::parse(&state).map(|state| CardRow { state, ..row }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn campaigns_and_card_states() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let mut db = Db::open(&path).unwrap();
        let kdd = [1u8; 10];
        let settings = crate::plan::InstallSettings {
            sd_aid: Some(vec![0xA0, 0, 0, 0, 0x51]),
            privileges: vec![0x10, 0, 0],
            install_parameters: vec![0xC9, 0x01, 0x07],
        };
        db.add_campaign("c1", b"pkg", "00", &settings, &[("a".into(), kdd)])
            .unwrap();
        assert!(db.add_campaign("c1", b"pkg", "00", &settings, &[]).is_err());
        let w = db.work_for(&kdd).unwrap().unwrap();
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
        // Reopened (migrations are not re-applied): an in-flight card is still worked on when paused.
        let mut db = Db::open(&path).unwrap();
        let w = db.work_for(&kdd).unwrap().unwrap();
        assert_eq!((w.card.state, w.card.attempts), (CardState::InFlight, 1));
        db.set_card(
            w.card.campaign_id,
            &w.card.kdd,
            CardState::Done,
            None,
            false,
        )
        .unwrap();
        assert!(db.work_for(&kdd).unwrap().is_none());
        assert!(db.knows(&kdd).unwrap());
        assert_eq!(db.campaigns().unwrap()[0].counts, [0, 0, 1, 0]);
        db.set_campaign_state("c1", CampaignState::Cancelled)
            .unwrap();
        assert!(db.set_campaign_state("c1", CampaignState::Active).is_err());
        assert!(db
            .set_campaign_state("nope", CampaignState::Paused)
            .is_err());
    }

    #[test]
    fn a_version_1_database_is_migrated_and_keeps_its_campaigns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let c = Connection::open(&path).unwrap();
        c.execute_batch(MIGRATIONS[0]).unwrap();
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
        let db = Db::open(&path).unwrap();
        let w = db.work_for(&[1u8; 10]).unwrap().unwrap();
        assert_eq!(w.settings, crate::plan::InstallSettings::default());
        let v: i64 = db
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, 2);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        Db::open(&path).unwrap();
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
        drop(c);
        assert!(Db::open(&path).is_err());
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

/// Read-only queries for the operations side (status page, metrics, reports).
impl Db {
    /// Failed cards per campaign and reason, most frequent first.
    pub fn failure_counts(&self) -> Result<Vec<FailureCount>, Error> {
        let mut stmt = self.conn.prepare(
            "SELECT c.name, k.reason, count(*) AS n FROM cards k JOIN campaigns c ON c.id = k.campaign_id
             WHERE k.state = 'failed' GROUP BY c.name, k.reason ORDER BY n DESC, c.name, k.reason",
        )?;
        let rows = stmt.query_map([], |r| {
            let n: i64 = r.get(2)?;
            Ok(FailureCount {
                campaign: r.get(0)?,
                reason: r.get(1)?,
                cards: u64::try_from(n).unwrap_or(0),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Calls `each` with every card of campaign `name`, by identity, with when its row last changed,
    /// one row at a time (a campaign may hold millions); `false` when there is no such campaign.
    pub fn report_each(
        &self,
        name: &str,
        mut each: impl FnMut(ReportRow) -> Result<(), Error>,
    ) -> Result<bool, Error> {
        let exists: Option<i64> = self
            .conn
            .query_row("SELECT id FROM campaigns WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?;
        let Some(id) = exists else {
            return Ok(false);
        };
        let mut stmt = self.conn.prepare(
            "SELECT identity, kdd, state, attempts, reason, updated_at FROM cards
             WHERE campaign_id = ?1 ORDER BY identity, kdd",
        )?;
        let rows = stmt.query_map([id], |r| {
            Ok(ReportRow {
                identity: r.get(0)?,
                kdd: r.get(1)?,
                state: r.get(2)?,
                attempts: r.get(3)?,
                reason: r.get(4)?,
                updated_at: r.get(5)?,
            })
        })?;
        for row in rows {
            each(row?)?;
        }
        Ok(true)
    }
}
