//! `admin-server campaign report NAME --format csv|json`: every card of a campaign with its outcome,
//! when its row last changed and how many scripts that could change it were sent, for the people who
//! answer for the rollout (spreadsheets take the CSV, tools the JSON). Rows are written as the database
//! yields them, so a campaign of millions of cards is never held in memory.

use crate::db::{Db, ReportRow};
use crate::error::Error;
use clap::ValueEnum;
use std::io::Write;

/// The report's format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// RFC 4180 CSV with a header line.
    #[default]
    Csv,
    /// One JSON object: the campaign's name and its cards, one card per line.
    Json,
}

/// The columns, in order.
pub const COLUMNS: [&str; 6] = [
    "identity",
    "kdd",
    "outcome",
    "updated_at",
    "attempts",
    "reason",
];

/// One CSV field: quoted when it holds a comma, a quote or a line break; a field a spreadsheet would
/// take for a formula (`= + - @`, tab, carriage return first) is prefixed with `'`.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn csv_row(r: &ReportRow) -> String {
    let fields = [
        csv_field(&r.identity),
        csv_field(&r.kdd),
        csv_field(&r.state),
        csv_field(&r.updated_at),
        r.attempts.to_string(),
        csv_field(r.reason.as_deref().unwrap_or("")),
    ];
    fields.join(",") + "\r\n"
}

fn json_row(r: &ReportRow) -> String {
    serde_json::json!({
        "identity": r.identity,
        "kdd": r.kdd,
        "outcome": r.state,
        "updated_at": r.updated_at,
        "attempts": r.attempts,
        "reason": r.reason,
    })
    .to_string()
}

/// Writes the report of campaign `name` to `out`.
pub fn write(db: &Db, name: &str, format: Format, out: &mut dyn Write) -> Result<(), Error> {
    let io = |e: std::io::Error| Error::Io {
        what: "writing the report".into(),
        source: e,
    };
    let mut buf = std::io::BufWriter::new(out);
    let mut first = true;
    let found = db.report_each(name, |row| {
        if first {
            let head = match format {
                Format::Csv => COLUMNS.join(",") + "\r\n",
                Format::Json => format!("{{\"campaign\":{},\"cards\":[\n", json_str(name)),
            };
            buf.write_all(head.as_bytes()).map_err(io)?;
        }
        let line = match format {
            Format::Csv => csv_row(&row),
            Format::Json if first => json_row(&row),
            Format::Json => format!(",\n{}", json_row(&row)),
        };
        first = false;
        buf.write_all(line.as_bytes()).map_err(io)
    })?;
    if !found {
        return Err(Error::Campaign(format!("no campaign named '{name}'")));
    }
    let tail = match (format, first) {
        (Format::Csv, true) => COLUMNS.join(",") + "\r\n",
        (Format::Csv, false) => String::new(),
        (Format::Json, true) => format!("{{\"campaign\":{},\"cards\":[]}}\n", json_str(name)),
        (Format::Json, false) => "\n]}\n".into(),
    };
    buf.write_all(tail.as_bytes()).map_err(io)?;
    buf.flush().map_err(io)
}

fn json_str(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    fn report(db: &Db, name: &str, format: Format) -> Result<String, Error> {
        let mut out = Vec::new();
        write(db, name, format, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open(&dir.path().join("r.db")).unwrap();
        let settings = crate::plan::InstallSettings::default();
        db.add_campaign(
            "c1",
            b"pkg",
            "00",
            &settings,
            &[
                ("card-a".into(), [1u8; 10]),
                ("=HYPERLINK(\"x\")".into(), [2u8; 10]),
            ],
        )
        .unwrap();
        db.add_campaign("empty", b"pkg", "00", &settings, &[])
            .unwrap();
        db.register_instance("r", "report-test", None, std::time::Duration::from_secs(60))
            .unwrap();
        let crate::db::Claim::Work(w) = db.claim(&[2u8; 10]).unwrap() else {
            panic!("the card's row is this instance's to claim")
        };
        db.set_card(
            w.card.campaign_id,
            &w.card.kdd,
            crate::db::CardState::Failed,
            Some("LOAD block 1 refused with 6982 (security status, \"not satisfied\")"),
            true,
        )
        .unwrap();
        (dir, db)
    }

    #[test]
    fn csv_is_rfc4180_and_defuses_formulas() {
        let (_dir, db) = db();
        let out = report(&db, "c1", Format::Csv).unwrap();
        let lines: Vec<&str> = out.split("\r\n").collect();
        assert_eq!(lines.len(), 4, "{out}");
        assert_eq!(lines[0], "identity,kdd,outcome,updated_at,attempts,reason");
        // By identity: '=' sorts before 'c'.
        let (when, rest) = lines[1]
            .strip_prefix("\"'=HYPERLINK(\"\"x\"\")\",02020202020202020202,failed,")
            .unwrap()
            .split_once(',')
            .unwrap();
        assert!(when.len() == 20 && when.ends_with('Z'), "{when}");
        assert_eq!(
            rest,
            "1,\"LOAD block 1 refused with 6982 (security status, \"\"not satisfied\"\")\""
        );
        assert!(lines[2].starts_with("card-a,01010101010101010101,pending,"));
        assert!(lines[2].ends_with(",0,"), "{}", lines[2]);
        assert_eq!(lines[3], "");
        assert_eq!(
            report(&db, "empty", Format::Csv).unwrap(),
            "identity,kdd,outcome,updated_at,attempts,reason\r\n"
        );
    }

    #[test]
    fn json_parses_back() {
        let (_dir, db) = db();
        let v: serde_json::Value =
            serde_json::from_str(&report(&db, "c1", Format::Json).unwrap()).unwrap();
        assert_eq!(v["campaign"], "c1");
        assert_eq!(v["cards"][0]["outcome"], "failed");
        assert_eq!(v["cards"][0]["attempts"], 1);
        assert_eq!(v["cards"][0]["identity"], "=HYPERLINK(\"x\")");
        assert_eq!(v["cards"][1]["reason"], serde_json::Value::Null);
        assert_eq!(v["cards"][1]["kdd"], "01010101010101010101");
        let v: serde_json::Value =
            serde_json::from_str(&report(&db, "empty", Format::Json).unwrap()).unwrap();
        assert_eq!(v["cards"].as_array().unwrap().len(), 0);
        assert!(matches!(
            report(&db, "nope", Format::Csv),
            Err(Error::Campaign(_))
        ));
    }
}
