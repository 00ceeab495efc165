//! The server's Prometheus metrics (OpenMetrics text, as `/metrics` on the operations listener serves
//! them). One registry per process, so the code paths that call the HSM or the database record with
//! one line and no handle passed around.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use std::sync::OnceLock;
use std::time::Instant;

/// The media type `/metrics` answers with.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How an admin session ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `completed`, `agent_error`, `rejected`, `server_error` or `expired`.
    pub outcome: &'static str,
}

/// An HTTP status answered to agents.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    /// The status code, e.g. `200`.
    pub code: u16,
}

/// The HSM or database operation timed.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    /// The operation, e.g. `session_keys` or `campaigns`.
    pub op: &'static str,
}

/// Cards of one campaign in one state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CampaignLabel {
    /// The campaign's name.
    pub campaign: String,
    /// `pending`, `in_flight`, `done` or `failed`.
    pub state: &'static str,
}

type Timings<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency() -> Histogram {
    // 0.25 ms to about 8 s: an SQLite commit and a network HSM both fit.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// Every metric the server exports; see docs/remote.md for what each one means.
pub struct Metrics {
    registry: Registry,
    /// Admin sessions ended, by outcome.
    pub sessions: Family<OutcomeLabel, Counter>,
    /// Admin sessions opened and not yet ended.
    pub sessions_in_flight: Gauge,
    /// Requests answered to agents, by HTTP status.
    pub requests: Family<CodeLabel, Counter>,
    /// Time to answer an agent's request, from its headers to the answer (body read included).
    pub request_seconds: Histogram,
    /// HSM call latency, by operation.
    pub hsm_seconds: Timings<OpLabel>,
    /// HSM calls that failed, by operation.
    pub hsm_errors: Family<OpLabel, Counter>,
    /// Database query latency, by query.
    pub db_seconds: Timings<OpLabel>,
    /// Cards per campaign and state, read from the database when scraped (installs by outcome).
    pub campaign_cards: Family<CampaignLabel, Gauge>,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("postissue_admin");
        let sessions = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "sessions",
            "Admin sessions ended, by outcome",
            sessions.clone(),
        );
        let sessions_in_flight = Gauge::default();
        registry.register(
            "sessions_in_flight",
            "Admin sessions opened and not yet ended",
            sessions_in_flight.clone(),
        );
        let requests = Family::<CodeLabel, Counter>::default();
        registry.register(
            "requests",
            "Requests answered to agents, by HTTP status",
            requests.clone(),
        );
        let request_seconds = latency();
        registry.register_with_unit(
            "request_duration",
            "Time to answer an agent's request, from its headers to the answer",
            Unit::Seconds,
            request_seconds.clone(),
        );
        let hsm_seconds = Timings::<OpLabel>::new_with_constructor(latency);
        registry.register_with_unit(
            "hsm_call_duration",
            "HSM call latency, by operation",
            Unit::Seconds,
            hsm_seconds.clone(),
        );
        let hsm_errors = Family::<OpLabel, Counter>::default();
        registry.register(
            "hsm_errors",
            "HSM calls that failed, by operation",
            hsm_errors.clone(),
        );
        let db_seconds = Timings::<OpLabel>::new_with_constructor(latency);
        registry.register_with_unit(
            "db_query_duration",
            "Database query latency, by query",
            Unit::Seconds,
            db_seconds.clone(),
        );
        let campaign_cards = Family::<CampaignLabel, Gauge>::default();
        registry.register(
            "campaign_cards",
            "Cards per campaign and state (installs by outcome), read from the database when scraped",
            campaign_cards.clone(),
        );
        Metrics {
            registry,
            sessions,
            sessions_in_flight,
            requests,
            request_seconds,
            hsm_seconds,
            hsm_errors,
            db_seconds,
            campaign_cards,
        }
    }

    /// The metrics in OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Runs `f`, recording its latency as the HSM operation `op` (and a failure when it fails).
    pub fn time_hsm<T, E>(
        &self,
        op: &'static str,
        f: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        let start = Instant::now();
        let r = f();
        self.hsm_seconds
            .get_or_create(&OpLabel { op })
            .observe(start.elapsed().as_secs_f64());
        if r.is_err() {
            self.hsm_errors.get_or_create(&OpLabel { op }).inc();
        }
        r
    }

    /// Runs `f`, recording its latency as the database query `op`.
    pub fn time_db<T>(&self, op: &'static str, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let r = f();
        self.db_seconds
            .get_or_create(&OpLabel { op })
            .observe(start.elapsed().as_secs_f64());
        r
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_exported_with_its_labels() {
        // A registry of its own: the process's one is shared with the other tests.
        let m = Metrics::new();
        m.time_hsm("session_keys", || Ok::<_, ()>(())).unwrap();
        let _ = m.time_hsm("session_keys", || Err::<(), _>(()));
        m.time_db("campaigns", || ());
        m.sessions
            .get_or_create(&OutcomeLabel {
                outcome: "completed",
            })
            .inc();
        m.campaign_cards
            .get_or_create(&CampaignLabel {
                campaign: "c\"1".into(),
                state: "done",
            })
            .set(2);
        let text = m.encode();
        for want in [
            "postissue_admin_hsm_call_duration_seconds_count{op=\"session_keys\"} 2",
            "postissue_admin_hsm_errors_total{op=\"session_keys\"} 1",
            "postissue_admin_db_query_duration_seconds_count{op=\"campaigns\"} 1",
            "postissue_admin_sessions_total{outcome=\"completed\"} 1",
            "postissue_admin_campaign_cards{campaign=\"c\\\"1\",state=\"done\"} 2",
            "# TYPE postissue_admin_sessions_in_flight gauge",
            "# EOF",
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
    }
}
