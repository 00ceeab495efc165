//! The status page: one server-rendered HTML page, readable without JavaScript or images, that the
//! on-call person opens first. Every value from the database, the agents or the configuration is
//! HTML-escaped; the page refreshes itself every 15 seconds with a `<meta>` tag.

use super::recent::{ErrorRecord, SessionRecord, KEPT};
use super::Instance;
use crate::db::{Campaign, FailureCount};
use std::fmt::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What the page shows.
#[derive(Debug)]
pub struct Status {
    /// This server instance.
    pub instance: Instance,
    /// When the page was made.
    pub now: SystemTime,
    /// Every campaign with its counts (empty when the database failed).
    pub campaigns: Vec<Campaign>,
    /// Failed cards per campaign and reason.
    pub failures: Vec<FailureCount>,
    /// Every server instance registered in the database (newest first), with whether it is alive.
    pub instances: Vec<crate::db::Instance>,
    /// Why the campaigns could not be read, if they could not.
    pub db_error: Option<String>,
    /// Sessions in progress.
    pub in_progress: Vec<SessionRecord>,
    /// Last sessions ended, newest first.
    pub ended: Vec<SessionRecord>,
    /// Last errors answered to agents, newest first.
    pub errors: Vec<ErrorRecord>,
}

/// `text` with `& < > " '` escaped for HTML text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `t` as `YYYY-MM-DD HH:MM:SS UTC` (the civil-from-days algorithm of H. Hinnant's `chrono` paper).
pub fn utc(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A duration as people read it: `3 d 4 h`, `2 h 5 min`, `4 min 10 s`, `12 s`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s} s"),
        60..=3_599 => format!("{} min {} s", s / 60, s % 60),
        3_600..=86_399 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

/// The first 12 hex digits of a session id and an ellipsis: enough to find its log lines, while the
/// whole id (which names the session's URI) stays out of the page.
pub fn short_session(id: &str) -> String {
    if id.len() <= 12 {
        return id.to_string();
    }
    let head: String = id.chars().take(12).collect();
    format!("{head}…")
}

fn percent(part: u64, whole: u64) -> u64 {
    part.saturating_mul(100).checked_div(whole).unwrap_or(0)
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#111}\
table{border-collapse:collapse;margin-bottom:1.5em}\
th,td{border:1px solid #999;padding:.3em .7em;text-align:left}\
td.n{text-align:right;font-variant-numeric:tabular-nums}\
thead th{background:#e8e8e8}\
.failed{color:#a00000;font-weight:bold}\
.bar{display:inline-block;height:.8em;background:#2a7a2a}\
.bar.f{background:#a00000}\
.track{display:inline-block;width:10em;background:#ddd;margin-right:.5em}\
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dt{font-weight:bold}";

fn session_rows(out: &mut String, rows: &[SessionRecord], now: SystemTime) {
    for s in rows {
        let ended = s.ended.map_or_else(|| "-".to_string(), utc);
        let age = now.duration_since(s.opened).unwrap_or_default();
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            escape(&short_session(&s.id)),
            escape(&s.agent),
            utc(s.opened),
            if s.ended.is_some() { ended } else { format!("open for {}", human(age)) },
            s.requests,
            s.outcome.unwrap_or("in progress")
        );
    }
}

/// The fleet's server instances: which are alive (heartbeat within their lease) and when each last beat.
fn instance_rows(o: &mut String, instances: &[crate::db::Instance]) {
    let alive = instances.iter().filter(|i| i.alive).count();
    let _ = write!(o, "<h2>Server instances ({alive} alive)</h2>");
    if instances.is_empty() {
        o.push_str("<p>None registered.</p>");
        return;
    }
    o.push_str(
        "<table id=\"instances\"><thead><tr><th scope=\"col\">Name</th><th scope=\"col\">Instance</th>\
         <th scope=\"col\">Started</th><th scope=\"col\">Last heartbeat</th><th scope=\"col\">State</th>\
         </tr></thead><tbody>",
    );
    let at = |ms: i64| utc(UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0)));
    for i in instances {
        let _ = write!(
            o,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
            escape(&i.name),
            escape(&i.id),
            at(i.started_at_ms),
            at(i.heartbeat_at_ms),
            if i.alive { "" } else { "failed" },
            if i.alive { "alive" } else { "gone" },
        );
    }
    o.push_str("</tbody></table>");
}

/// The page.
pub fn render(st: &Status) -> String {
    let i = &st.instance;
    let mut o = String::with_capacity(16 * 1024);
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"15\">\
         <title>admin-server status: {id}</title><style>{STYLE}</style></head><body>\
         <h1>admin-server status</h1><p>Page made {now}; it refreshes every 15 s.</p>\
         <h2>This server</h2><dl id=\"instance\">\
         <dt>Instance</dt><dd>{id}</dd><dt>Host</dt><dd>{host}</dd><dt>Process</dt><dd>{pid}</dd>\
         <dt>Version</dt><dd>{version}</dd><dt>Started</dt><dd>{started}</dd><dt>Uptime</dt><dd>{uptime}</dd>\
         <dt>Agents' address</dt><dd>{agents}</dd></dl>",
        id = escape(&i.id),
        now = utc(st.now),
        host = escape(&i.host),
        pid = i.pid,
        version = escape(i.version),
        started = utc(i.started),
        uptime = human(st.now.duration_since(i.started).unwrap_or_default()),
        agents = escape(&i.agents),
    );
    o.push_str("<h2>Campaigns</h2>");
    if let Some(e) = &st.db_error {
        let _ = write!(
            o,
            "<p class=\"failed\">The campaigns cannot be read: {}</p>",
            escape(e)
        );
    } else if st.campaigns.is_empty() {
        o.push_str("<p>No campaign.</p>");
    } else {
        o.push_str(
            "<table id=\"campaigns\"><thead><tr><th scope=\"col\">Campaign</th><th scope=\"col\">State</th>\
             <th scope=\"col\">Cards</th><th scope=\"col\">Pending</th><th scope=\"col\">In flight</th>\
             <th scope=\"col\">Done</th><th scope=\"col\">Failed</th><th scope=\"col\">Progress</th></tr></thead><tbody>",
        );
        for c in &st.campaigns {
            let [p, f, d, x] = c.counts;
            let total = p + f + d + x;
            let (dp, xp) = (percent(d, total), percent(x, total));
            let _ = write!(
                o,
                "<tr><th scope=\"row\">{name}</th><td>{state}</td><td class=\"n\">{total}</td>\
                 <td class=\"n\">{p}</td><td class=\"n\">{f}</td><td class=\"n\">{d}</td>\
                 <td class=\"n{fc}\">{x}</td><td><span class=\"track\"><span class=\"bar\" style=\"width:{dp}%\"></span>\
                 <span class=\"bar f\" style=\"width:{xp}%\"></span></span>{dp} % done{xf}</td></tr>",
                name = escape(&c.name),
                state = escape(&c.state),
                fc = if x > 0 { " failed" } else { "" },
                xf = if x > 0 {
                    format!(", {xp} % failed")
                } else {
                    String::new()
                },
            );
        }
        o.push_str("</tbody></table>");
        if !st.failures.is_empty() {
            o.push_str(
                "<h3>Failed cards by reason</h3><table id=\"failures\"><thead><tr><th scope=\"col\">Campaign</th>\
                 <th scope=\"col\">Reason</th><th scope=\"col\">Cards</th></tr></thead><tbody>",
            );
            for f in &st.failures {
                let _ = write!(
                    o,
                    "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
                    escape(&f.campaign),
                    escape(f.reason.as_deref().unwrap_or("(no reason recorded)")),
                    f.cards
                );
            }
            o.push_str("</tbody></table>");
        }
    }
    let head = "<thead><tr><th scope=\"col\">Session</th><th scope=\"col\">Agent</th><th scope=\"col\">Opened</th>\
                <th scope=\"col\">Ended</th><th scope=\"col\">Requests</th><th scope=\"col\">Outcome</th></tr></thead>";
    instance_rows(&mut o, &st.instances);
    let _ = write!(
        o,
        "<h2>Sessions in progress ({})</h2>",
        st.in_progress.len()
    );
    if st.in_progress.is_empty() {
        o.push_str("<p>None.</p>");
    } else {
        let _ = write!(o, "<table id=\"in-progress\">{head}<tbody>");
        session_rows(&mut o, &st.in_progress, st.now);
        o.push_str("</tbody></table>");
    }
    let _ = write!(
        o,
        "<h2>Recent sessions</h2><p>The last {KEPT} this instance ended, newest first.</p>"
    );
    if st.ended.is_empty() {
        o.push_str("<p>None since the server started.</p>");
    } else {
        let _ = write!(o, "<table id=\"recent\">{head}<tbody>");
        session_rows(&mut o, &st.ended, st.now);
        o.push_str("</tbody></table>");
    }
    let _ = write!(
        o,
        "<h2>Recent errors</h2><p>The last {KEPT} answered to agents, newest first.</p>"
    );
    if st.errors.is_empty() {
        o.push_str("<p>None since the server started.</p>");
    } else {
        o.push_str(
            "<table id=\"errors\"><thead><tr><th scope=\"col\">When</th><th scope=\"col\">HTTP</th>\
             <th scope=\"col\">Session</th><th scope=\"col\">Agent</th><th scope=\"col\">Message</th></tr></thead><tbody>",
        );
        for e in &st.errors {
            let _ = write!(
                o,
                "<tr><td>{}</td><td class=\"n\">{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                utc(e.at),
                e.code,
                escape(&e.session.as_deref().map_or_else(|| "-".into(), short_session)),
                escape(&e.agent),
                escape(&e.message)
            );
        }
        o.push_str("</tbody></table>");
    }
    o.push_str("</body></html>\n");
    o
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil_utc() {
        // 2000-02-29 and 2026-12-04 12:34:56, as `date -u -d @N` prints them.
        assert_eq!(
            utc(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29 00:00:00 UTC"
        );
        assert_eq!(
            utc(UNIX_EPOCH + Duration::from_secs(1_796_387_696)),
            "2026-12-04 12:34:56 UTC"
        );
        assert_eq!(utc(UNIX_EPOCH), "1970-01-01 00:00:00 UTC");
        assert_eq!(human(Duration::from_secs(3_725)), "1 h 2 min");
    }

    #[test]
    fn hostile_text_is_escaped() {
        let st = Status {
            instance: Instance::for_test(),
            now: SystemTime::now(),
            campaigns: vec![Campaign {
                id: 1,
                name: "<script>alert(1)</script>".into(),
                state: "active\"".into(),
                package_sha256: "00".into(),
                sd_aid: None,
                counts: [1, 0, 1, 0],
            }],
            failures: vec![FailureCount {
                campaign: "c".into(),
                reason: Some("<img src=x onerror=alert(1)>".into()),
                cards: 1,
            }],
            instances: vec![crate::db::Instance {
                id: "i-1".into(),
                name: "<b>host</b>:8443".into(),
                ledger: None,
                started_at_ms: 0,
                heartbeat_at_ms: 1_000,
                alive: true,
            }],
            db_error: None,
            in_progress: vec![],
            ended: vec![],
            errors: vec![ErrorRecord {
                at: SystemTime::now(),
                code: 400,
                session: None,
                agent: "a'b".into(),
                message: "X-Admin-Protocol '</td><b>' is wrong".into(),
            }],
        };
        let html = render(&st);
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("</td><b>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("a&#39;b"));
        assert!(html.contains("50 % done"));
        assert!(html.contains("Server instances (1 alive)"), "{html}");
        assert!(html.contains("&lt;b&gt;host&lt;/b&gt;:8443"), "{html}");
        assert_eq!(
            short_session("430cc5549cef5cc89a6301f70d021444"),
            "430cc5549cef…"
        );
    }
}
