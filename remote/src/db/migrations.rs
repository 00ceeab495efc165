//! The schema's numbered migrations, embedded in the binary: one list for both engines, each entry
//! with its SQLite and its PostgreSQL text (the same text where the dialects agree).

/// One numbered migration in both dialects. Most are the same text; where SQLite and PostgreSQL
/// differ (row ids, binary columns, time defaults) each has its own.
pub struct Migration {
    /// The SQLite statements.
    pub sqlite: &'static str,
    /// The PostgreSQL statements.
    pub postgres: &'static str,
}

/// The migrations, numbered from 1 by their position.
pub const MIGRATIONS: &[Migration] = &[
    // 1: campaigns and their cards. PostgreSQL has no implicit rowid: cards get an identity column of
    // that name so that "in the order of the card list" reads the same in both.
    Migration {
        sqlite: "CREATE TABLE campaigns (
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
        postgres: "CREATE TABLE campaigns (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        state TEXT NOT NULL CHECK (state IN ('active', 'paused', 'cancelled')),
        package BYTEA NOT NULL,
        package_sha256 TEXT NOT NULL,
        sd_aid TEXT,
        created_at TEXT NOT NULL DEFAULT (to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'))
    );
    CREATE TABLE cards (
        rowid BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
        campaign_id BIGINT NOT NULL REFERENCES campaigns(id),
        identity TEXT NOT NULL,
        kdd TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'in_flight', 'done', 'failed')),
        attempts BIGINT NOT NULL DEFAULT 0,
        reason TEXT,
        updated_at TEXT NOT NULL DEFAULT (to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')),
        PRIMARY KEY (campaign_id, kdd)
    );
    CREATE INDEX cards_by_kdd ON cards (kdd, state);",
    },
    // 2: what INSTALL [for install] gives the applications.
    Migration {
        sqlite: MIGRATION_2,
        postgres: MIGRATION_2,
    },
    // 3: several instances: card leases, the ledger entry a finished card still waits for, instances.
    Migration {
        sqlite: MIGRATION_3,
        postgres: MIGRATION_3,
    },
];

const MIGRATION_2: &str = "ALTER TABLE campaigns ADD COLUMN privileges TEXT NOT NULL DEFAULT '00';
    ALTER TABLE campaigns ADD COLUMN install_parameters TEXT NOT NULL DEFAULT 'C900';";

const MIGRATION_3: &str = "ALTER TABLE cards ADD COLUMN lease_owner TEXT;
    ALTER TABLE cards ADD COLUMN lease_until BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE cards ADD COLUMN ledger_pending TEXT;
    CREATE TABLE instances (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        ledger TEXT,
        lease_ms BIGINT NOT NULL,
        started_at BIGINT NOT NULL,
        heartbeat_at BIGINT NOT NULL
    );";

/// The advisory lock PostgreSQL instances take while migrating, so that two starting at once apply
/// each migration once.
pub(super) const PG_MIGRATION_LOCK: i64 = 0x5054_4953_5355_4531;
