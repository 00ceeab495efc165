//! `admin-server campaign report NAME --format csv|json`: every card of a campaign with its outcome,
//! when its row last changed and how many scripts that could change it were sent, for the people who
//! answer for the rollout (spreadsheets take the CSV, tools the JSON).

use crate::db::{Db, ReportRow};
use crate::error::Error;
use clap::ValueEnum;

/// The report's format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// RFC 4180 CSV with a header line.
    #[default]
    Csv,
    /// One JSON object: the campaign's name and its cards.
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

fn csv(rows: &[ReportRow]) -> String {
    let mut out = COLUMNS.join(",");
    out.push_str("\r\n");
    for r in rows {
        let fields = [
            csv_field(&r.identity),
            csv_field(&r.kdd),
            csv_field(&r.state),
            csv_field(&r.updated_at),
            r.attempts.to_string(),
            csv_field(r.reason.as_deref().unwrap_or("")),
        ];
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    }
    out
}

fn json(name: &str, rows: &[ReportRow]) -> String {
    let cards: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "identity": r.identity,
                "kdd": r.kdd,
                "outcome": r.state,
                "updated_at": r.updated_at,
                "attempts": r.attempts,
                "reason": r.reason,
            })
        })
        .collect();
    let doc = serde_json::json!({ "campaign": name, "cards": cards });
    // A Value with string keys always serialises.
    serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
}

/// The report of campaign `name`.
pub fn report(db: &Db, name: &str, format: Format) -> Result<String, Error> {
    let rows = db
        .report(name)?
        .ok_or_else(|| Error::Campaign(format!("no campaign named '{name}'")))?;
    Ok(match format {
        Format::Csv => csv(&rows),
        Format::Json => json(name, &rows),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn rows() -> Vec<ReportRow> {
        vec![
            ReportRow {
                identity: "card-a".into(),
                kdd: "00010203040506070809".into(),
                state: "done".into(),
                attempts: 1,
                reason: None,
                updated_at: "2026-12-04T17:00:00Z".into(),
            },
            ReportRow {
                identity: "=HYPERLINK(\"x\")".into(),
                kdd: "0A0B0C0D0E0F10111213".into(),
                state: "failed".into(),
                attempts: 2,
                reason: Some(
                    "LOAD block 1 refused with 6982 (security status, \"not satisfied\")".into(),
                ),
                updated_at: "2026-12-04T17:01:00Z".into(),
            },
        ]
    }

    #[test]
    fn csv_is_rfc4180_and_defuses_formulas() {
        let out = csv(&rows());
        assert_eq!(
            out,
            "identity,kdd,outcome,updated_at,attempts,reason\r\n\
             card-a,00010203040506070809,done,2026-12-04T17:00:00Z,1,\r\n\
             \"'=HYPERLINK(\"\"x\"\")\",0A0B0C0D0E0F10111213,failed,2026-12-04T17:01:00Z,2,\
             \"LOAD block 1 refused with 6982 (security status, \"\"not satisfied\"\")\"\r\n"
        );
    }

    #[test]
    fn json_parses_back() {
        let v: serde_json::Value = serde_json::from_str(&json("c1", &rows())).unwrap();
        assert_eq!(v["campaign"], "c1");
        assert_eq!(v["cards"][1]["outcome"], "failed");
        assert_eq!(v["cards"][1]["attempts"], 2);
        assert_eq!(v["cards"][0]["reason"], serde_json::Value::Null);
        assert_eq!(v["cards"][1]["identity"], "=HYPERLINK(\"x\")");
    }
}
