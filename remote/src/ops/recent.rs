//! What the status page shows of the last minutes: the admin sessions in progress, the last sessions
//! that ended and the last errors answered to agents, kept in memory (bounded) by this server instance.
//! The HTTP layer reports every answer it gives ([`Recent::observe`]); the session metrics follow.

use super::metrics::{metrics, CodeLabel, OutcomeLabel};
use crate::engine::{MAX_SESSIONS, SESSION_TTL};
use std::collections::{HashMap, VecDeque};
use std::time::{Instant, SystemTime};

/// Sessions and errors kept for the status page.
pub const KEPT: usize = 50;
/// Longest error message kept, in characters.
pub const MAX_MESSAGE: usize = 300;

/// One admin session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    /// The session id (32 hex digits, as in its URI).
    pub id: String,
    /// `X-Admin-From` of the agent that opened it.
    pub agent: String,
    /// When it was opened.
    pub opened: SystemTime,
    /// When it ended (`None` while in progress).
    pub ended: Option<SystemTime>,
    /// Requests answered in it, the opening POST included.
    pub requests: u32,
    /// How it ended (`None` while in progress).
    pub outcome: Option<&'static str>,
}

/// One error answered to an agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorRecord {
    /// When.
    pub at: SystemTime,
    /// The HTTP status.
    pub code: u16,
    /// The session the request named, if any.
    pub session: Option<String>,
    /// `X-Admin-From`, when well formed.
    pub agent: String,
    /// The message the agent got (shortened).
    pub message: String,
}

/// What one answer to an agent was, as the HTTP layer saw it.
#[derive(Debug)]
pub struct Answer<'a> {
    /// The session the request's URI named (`None` for the admin URI).
    pub session: Option<&'a str>,
    /// The agent, when its `X-Admin-From` is well formed.
    pub agent: Option<&'a str>,
    /// The agent reported it could not run the last script (`X-Admin-Script-Status` other than `ok`).
    pub agent_failed: bool,
    /// The HTTP status answered.
    pub code: u16,
    /// The session named by `X-Admin-Next-URI`, when a script was answered.
    pub next: Option<&'a str>,
    /// The error message, for a `4xx` or `5xx`.
    pub error: Option<&'a str>,
}

struct Live {
    record: SessionRecord,
    since: Instant,
}

/// The sessions in progress and the recent history.
#[derive(Default)]
pub struct Recent {
    live: HashMap<String, Live>,
    ended: VecDeque<SessionRecord>,
    errors: VecDeque<ErrorRecord>,
}

fn push<T>(q: &mut VecDeque<T>, x: T) {
    if q.len() >= KEPT {
        q.pop_front();
    }
    q.push_back(x);
}

impl Recent {
    /// Records one answer: opens, advances or ends the session it belongs to, and keeps errors.
    pub fn observe(&mut self, a: &Answer<'_>) {
        let m = metrics();
        m.requests.get_or_create(&CodeLabel { code: a.code }).inc();
        self.expire();
        let agent = a.agent.unwrap_or("?");
        if let Some(next) = a.next {
            if let Some(old) = a.session.filter(|s| *s != next) {
                // The engine no longer knew the session (expired, or dropped after a server error).
                self.end(old, "expired");
            }
            if let Some(live) = self.live.get_mut(next) {
                live.record.requests = live.record.requests.saturating_add(1);
            } else if self.live.len() < MAX_SESSIONS {
                self.live.insert(
                    next.to_string(),
                    Live {
                        record: SessionRecord {
                            id: next.to_string(),
                            agent: agent.to_string(),
                            opened: SystemTime::now(),
                            ended: None,
                            requests: 1,
                            outcome: None,
                        },
                        since: Instant::now(),
                    },
                );
                m.sessions_in_flight.inc();
            }
        } else if let Some(id) = a.session {
            let outcome = match a.code {
                200..=299 if a.agent_failed => "agent_error",
                200..=299 => "completed",
                400..=499 => "rejected",
                _ => "server_error",
            };
            if let Some(live) = self.live.get_mut(id) {
                live.record.requests = live.record.requests.saturating_add(1);
            }
            self.end(id, outcome);
        }
        if let Some(message) = a.error {
            push(
                &mut self.errors,
                ErrorRecord {
                    at: SystemTime::now(),
                    code: a.code,
                    session: a.session.map(str::to_string),
                    agent: agent.to_string(),
                    message: message.chars().take(MAX_MESSAGE).collect(),
                },
            );
        }
    }

    fn end(&mut self, id: &str, outcome: &'static str) {
        if let Some(mut live) = self.live.remove(id) {
            live.record.ended = Some(SystemTime::now());
            live.record.outcome = Some(outcome);
            push(&mut self.ended, live.record);
            let m = metrics();
            m.sessions.get_or_create(&OutcomeLabel { outcome }).inc();
            m.sessions_in_flight.dec();
        }
    }

    /// Ends the sessions the engine has forgotten (older than its session lifetime).
    pub fn expire(&mut self) {
        let old: Vec<String> = self
            .live
            .iter()
            .filter(|(_, l)| l.since.elapsed() >= SESSION_TTL)
            .map(|(id, _)| id.clone())
            .collect();
        for id in old {
            self.end(&id, "expired");
        }
    }

    /// The sessions in progress, oldest first.
    pub fn in_progress(&self) -> Vec<SessionRecord> {
        let mut v: Vec<_> = self.live.values().map(|l| l.record.clone()).collect();
        v.sort_by_key(|r| r.opened);
        v
    }

    /// The last sessions that ended, newest first.
    pub fn ended(&self) -> Vec<SessionRecord> {
        self.ended.iter().rev().cloned().collect()
    }

    /// The last errors, newest first.
    pub fn errors(&self) -> Vec<ErrorRecord> {
        self.errors.iter().rev().cloned().collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn answer<'a>(
        session: Option<&'a str>,
        code: u16,
        next: Option<&'a str>,
        error: Option<&'a str>,
    ) -> Answer<'a> {
        Answer {
            session,
            agent: Some("kiosk-1"),
            agent_failed: false,
            code,
            next,
            error,
        }
    }

    #[test]
    fn sessions_open_advance_and_end_with_their_outcome() {
        let mut r = Recent::default();
        r.observe(&answer(None, 200, Some("s1"), None));
        r.observe(&answer(Some("s1"), 200, Some("s1"), None));
        assert_eq!(r.in_progress().len(), 1);
        assert_eq!(r.in_progress()[0].requests, 2);
        r.observe(&answer(Some("s1"), 204, None, None));
        assert!(r.in_progress().is_empty());
        let ended = r.ended();
        assert_eq!(
            (ended[0].outcome, ended[0].requests, ended[0].agent.as_str()),
            (Some("completed"), 3, "kiosk-1")
        );

        r.observe(&answer(None, 200, Some("s2"), None));
        r.observe(&answer(Some("s2"), 422, None, Some("card: <bad>")));
        assert_eq!(r.ended()[0].outcome, Some("rejected"));
        assert_eq!(r.errors()[0].session.as_deref(), Some("s2"));
        assert_eq!(r.errors()[0].message, "card: <bad>");

        // A session the engine forgot is replaced by a new one.
        r.observe(&answer(None, 200, Some("s3"), None));
        r.observe(&answer(Some("s3"), 200, Some("s4"), None));
        assert_eq!(r.ended()[0].outcome, Some("expired"));
        assert_eq!(r.in_progress()[0].id, "s4");
    }

    #[test]
    fn history_is_bounded() {
        let mut r = Recent::default();
        let long = "x".repeat(10 * MAX_MESSAGE);
        for i in 0..(KEPT + 10) {
            let id = format!("s{i}");
            r.observe(&answer(None, 200, Some(&id), None));
            r.observe(&answer(Some(&id), 503, None, Some(&long)));
        }
        assert_eq!(r.ended().len(), KEPT);
        assert_eq!(r.errors().len(), KEPT);
        assert_eq!(r.errors()[0].message.len(), MAX_MESSAGE);
        assert_eq!(r.ended()[0].outcome, Some("server_error"));
    }
}
