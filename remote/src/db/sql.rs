//! How the two engines are reached: where the database is ([`DbTarget`]), the two SQL dialects
//! ([`Dialect`]: queries are written once with `$N` parameters and tokens each dialect expands), one
//! value type for parameters and columns, and a connection that runs statements alone or in a
//! transaction on either engine, reconnecting to PostgreSQL after it was lost.

use crate::error::Error;
use secrecy::{ExposeSecret, SecretString};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the database is: a SQLite file, or a PostgreSQL server named by a `postgres://` URL.
#[derive(Clone)]
pub enum DbTarget {
    /// The SQLite file (created when missing).
    Sqlite(PathBuf),
    /// The PostgreSQL connection URL (it may hold a password: never shown).
    Postgres(SecretString),
}

impl DbTarget {
    /// `postgres://…` or `postgresql://…` names a PostgreSQL server; anything else is a SQLite file.
    pub fn parse(path: &Path) -> DbTarget {
        let text = path.to_string_lossy();
        if is_postgres_url(&text) {
            DbTarget::Postgres(SecretString::from(text.into_owned()))
        } else {
            DbTarget::Sqlite(path.to_path_buf())
        }
    }

    /// What to call it in messages: the file, or `PostgreSQL` with host and database and without the
    /// credentials.
    pub fn describe(&self) -> String {
        match self {
            DbTarget::Sqlite(p) => p.display().to_string(),
            DbTarget::Postgres(url) => match url.expose_secret().parse::<postgres::Config>() {
                Ok(c) => format!(
                    "PostgreSQL database '{}'",
                    c.get_dbname().unwrap_or("(default)")
                ),
                Err(_) => "PostgreSQL (unparsable URL)".into(),
            },
        }
    }
}

/// Whether `text` is a PostgreSQL URL rather than a file path.
pub fn is_postgres_url(text: &str) -> bool {
    text.starts_with("postgres://") || text.starts_with("postgresql://")
}

/// The two SQL dialects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite 3 (bundled).
    Sqlite,
    /// PostgreSQL 13 or later.
    Postgres,
}

impl Dialect {
    /// The query `sql` (written with `$N` parameters and the `{now}` token) in this dialect.
    pub fn sql(self, sql: &str) -> String {
        match self {
            Dialect::Sqlite => sql
                .replace("{now}", "CAST(unixepoch('subsec') * 1000 AS INTEGER)")
                .replace("{utc}", "strftime('%Y-%m-%dT%H:%M:%SZ', 'now')")
                .replace("{lock}", "")
                .replace('$', "?"),
            Dialect::Postgres => sql
                .replace(
                    "{now}",
                    "CAST(extract(epoch FROM clock_timestamp()) * 1000 AS BIGINT)",
                )
                .replace(
                    "{utc}",
                    "to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
                )
                .replace("{lock}", "FOR UPDATE OF k"),
        }
    }
}

/// A parameter or column value, the same for both engines.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum V {
    I(i64),
    T(String),
    N(Option<String>),
    B(Vec<u8>),
}

/// The type a column is read as.
#[derive(Clone, Copy)]
pub(super) enum Ty {
    I,
    T,
    N,
    B,
}

impl V {
    pub(super) fn int(&self) -> i64 {
        match self {
            V::I(i) => *i,
            _ => 0,
        }
    }
    pub(super) fn text(self) -> String {
        match self {
            V::T(s) | V::N(Some(s)) => s,
            _ => String::new(),
        }
    }
    pub(super) fn opt(self) -> Option<String> {
        match self {
            V::T(s) | V::N(Some(s)) => Some(s),
            _ => None,
        }
    }
    pub(super) fn bytes(self) -> Vec<u8> {
        match self {
            V::B(b) => b,
            _ => Vec::new(),
        }
    }
}

impl rusqlite::ToSql for V {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            V::I(i) => i.to_sql(),
            V::T(s) => s.to_sql(),
            V::N(s) => s.to_sql(),
            V::B(b) => b.to_sql(),
        }
    }
}

fn pg_params(params: &[V]) -> Vec<Box<dyn postgres::types::ToSql + Sync>> {
    params
        .iter()
        .map(|p| -> Box<dyn postgres::types::ToSql + Sync> {
            match p {
                V::I(i) => Box::new(*i),
                V::T(s) => Box::new(s.clone()),
                V::N(s) => Box::new(s.clone()),
                V::B(b) => Box::new(b.clone()),
            }
        })
        .collect()
}

pub(super) fn pg_err(e: postgres::Error) -> Error {
    match e.as_db_error() {
        Some(db) => Error::Database(format!("PostgreSQL {}: {}", db.code().code(), db.message())),
        None => Error::Database(format!("PostgreSQL: {e}")),
    }
}

/// What both engines can do inside or outside a transaction.
pub(super) trait Exec {
    fn query(&mut self, sql: &str, params: &[V], cols: &[Ty]) -> Result<Vec<Vec<V>>, Error>;
    fn execute(&mut self, sql: &str, params: &[V]) -> Result<u64, Error>;
}

impl Exec for rusqlite::Connection {
    fn query(&mut self, sql: &str, params: &[V], cols: &[Ty]) -> Result<Vec<Vec<V>>, Error> {
        let mut stmt = self.prepare_cached(&Dialect::Sqlite.sql(sql))?;
        let mut rows = stmt.query(rusqlite::params_from_iter(params.iter()))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let mut row = Vec::with_capacity(cols.len());
            for (i, t) in cols.iter().enumerate() {
                row.push(match t {
                    Ty::I => V::I(r.get(i)?),
                    Ty::T => V::T(r.get(i)?),
                    Ty::N => V::N(r.get(i)?),
                    Ty::B => V::B(r.get(i)?),
                });
            }
            out.push(row);
        }
        Ok(out)
    }
    fn execute(&mut self, sql: &str, params: &[V]) -> Result<u64, Error> {
        let mut stmt = self.prepare_cached(&Dialect::Sqlite.sql(sql))?;
        let n = stmt.execute(rusqlite::params_from_iter(params.iter()))?;
        Ok(u64::try_from(n).unwrap_or(u64::MAX))
    }
}

fn pg_query<C: postgres::GenericClient>(
    c: &mut C,
    sql: &str,
    params: &[V],
    cols: &[Ty],
) -> Result<Vec<Vec<V>>, Error> {
    let boxed = pg_params(params);
    let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = boxed.iter().map(|b| &**b).collect();
    let rows = c
        .query(Dialect::Postgres.sql(sql).as_str(), &refs)
        .map_err(pg_err)?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let mut row = Vec::with_capacity(cols.len());
        for (i, t) in cols.iter().enumerate() {
            row.push(match t {
                Ty::I => V::I(r.try_get(i).map_err(pg_err)?),
                Ty::T => V::T(r.try_get(i).map_err(pg_err)?),
                Ty::N => V::N(r.try_get(i).map_err(pg_err)?),
                Ty::B => V::B(r.try_get(i).map_err(pg_err)?),
            });
        }
        out.push(row);
    }
    Ok(out)
}

fn pg_execute<C: postgres::GenericClient>(
    c: &mut C,
    sql: &str,
    params: &[V],
) -> Result<u64, Error> {
    let boxed = pg_params(params);
    let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = boxed.iter().map(|b| &**b).collect();
    c.execute(Dialect::Postgres.sql(sql).as_str(), &refs)
        .map_err(pg_err)
}

impl Exec for postgres::Client {
    fn query(&mut self, sql: &str, params: &[V], cols: &[Ty]) -> Result<Vec<Vec<V>>, Error> {
        pg_query(self, sql, params, cols)
    }
    fn execute(&mut self, sql: &str, params: &[V]) -> Result<u64, Error> {
        pg_execute(self, sql, params)
    }
}

impl Exec for postgres::Transaction<'_> {
    fn query(&mut self, sql: &str, params: &[V], cols: &[Ty]) -> Result<Vec<Vec<V>>, Error> {
        pg_query(self, sql, params, cols)
    }
    fn execute(&mut self, sql: &str, params: &[V]) -> Result<u64, Error> {
        pg_execute(self, sql, params)
    }
}

pub(super) enum Backend {
    Sqlite(rusqlite::Connection),
    Postgres {
        url: SecretString,
        client: Option<Box<postgres::Client>>,
    },
}

pub(super) fn pg_connect(url: &SecretString) -> Result<postgres::Client, Error> {
    let mut cfg: postgres::Config = url
        .expose_secret()
        .parse()
        .map_err(|_| Error::Database("the PostgreSQL URL cannot be parsed".into()))?;
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(Duration::from_secs(5));
    }
    let mut client = cfg.connect(postgres::NoTls).map_err(pg_err)?;
    // A claim waits at most this long for a row another instance is claiming.
    client
        .batch_execute("SET lock_timeout = '5s'; SET statement_timeout = '60s'")
        .map_err(pg_err)?;
    Ok(client)
}

impl Backend {
    /// Runs `f` outside a transaction (one statement commits by itself).
    pub(super) fn run<R>(
        &mut self,
        f: impl FnOnce(&mut dyn Exec) -> Result<R, Error>,
    ) -> Result<R, Error> {
        match self {
            Backend::Sqlite(c) => f(c),
            Backend::Postgres { url, client } => {
                let c = match client {
                    Some(c) if !c.is_closed() => c,
                    _ => client.insert(Box::new(pg_connect(url)?)),
                };
                let r = f(&mut **c);
                if r.is_err() && c.is_closed() {
                    *client = None;
                }
                r
            }
        }
    }

    /// Runs `f` in one transaction (IMMEDIATE on SQLite: it holds the write lock from the start),
    /// committed when `f` succeeds, rolled back otherwise.
    pub(super) fn tx<R>(
        &mut self,
        f: impl FnOnce(&mut dyn Exec) -> Result<R, Error>,
    ) -> Result<R, Error> {
        match self {
            Backend::Sqlite(c) => {
                c.execute_batch("BEGIN IMMEDIATE")?;
                match f(c) {
                    Ok(r) => match c.execute_batch("COMMIT") {
                        Ok(()) => Ok(r),
                        Err(e) => {
                            let _ = c.execute_batch("ROLLBACK");
                            Err(e.into())
                        }
                    },
                    Err(e) => {
                        let _ = c.execute_batch("ROLLBACK");
                        Err(e)
                    }
                }
            }
            Backend::Postgres { url, client } => {
                let c = match client {
                    Some(c) if !c.is_closed() => c,
                    _ => client.insert(Box::new(pg_connect(url)?)),
                };
                let r = (|| {
                    let mut tx = c.transaction().map_err(pg_err)?;
                    let r = f(&mut tx)?;
                    tx.commit().map_err(pg_err)?;
                    Ok(r)
                })();
                if r.is_err() && c.is_closed() {
                    *client = None;
                }
                r
            }
        }
    }
}
