//! A swarm of simulated devices: many admin agents, each with its own simulated card (an image file
//! made by `card-sim new`, personalised or fab-fresh) and its own connections, run against one or more
//! admin server instances, `concurrency` at a time. Faults are injected with seeded randomness so a
//! failure reproduces: the connection dropped before a request or after its answer, the card's power
//! cut at a random APDU, latency added to every APDU. A card whose session fails calls again, the
//! next time to the next server instance, as a device's retry policy would; it gives up after
//! `attempts` sessions.

use crate::agent::{AgentConfig, Fault, Summary};
use crate::error::Error;
use signer::transport::{SimTransport, Transport};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the swarm does.
#[derive(Clone)]
pub struct SwarmConfig {
    /// One agent configuration per server instance (URI and TLS); card `i` starts with instance
    /// `i % len` and moves to the next one each time it calls again.
    pub agents: Vec<AgentConfig>,
    /// The card images, one simulated card each.
    pub images: Vec<PathBuf>,
    /// Cards served at once.
    pub concurrency: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// Chance that a request's connection drops (before the request or after its answer).
    pub drop_rate: f64,
    /// Chance that a session's card loses power at a random APDU.
    pub power_cut_rate: f64,
    /// Added to every APDU, as a slow card or reader would.
    pub apdu_latency: Duration,
    /// Sessions a card tries before the swarm gives up on it.
    pub attempts: u32,
    /// Wait before a card calls again (multiplied by the number of failed sessions, at most 10×).
    pub call_again: Duration,
}

/// What the swarm did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SwarmReport {
    /// Cards in the swarm.
    pub cards: usize,
    /// Sessions started (one or more per card).
    pub sessions: usize,
    /// Cards whose last session ended normally (the server had nothing more).
    pub completed: usize,
    /// Cards whose last session ran the operation or audit script to the end (install or audit
    /// finished): completed cards minus those the server turned away after identification.
    pub installs: usize,
    /// Cards given up after `attempts` sessions.
    pub gave_up: usize,
    /// Connections dropped on purpose.
    pub connections_dropped: usize,
    /// Power cuts injected.
    pub power_cuts: usize,
    /// Requests the agents repeated after a dropped connection or a busy server.
    pub resumed_requests: usize,
    /// Sessions started again after a failed one.
    pub session_retries: usize,
    /// APDUs sent to the cards.
    pub apdus: usize,
    /// Wall time of the whole run, seconds.
    pub elapsed_s: f64,
    /// Completed cards per second.
    pub per_second: f64,
    /// Median time of a card's successful session, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile of the same.
    pub p99_ms: f64,
    /// The last error of every card given up (card image, error).
    pub errors: Vec<(String, String)>,
}

impl SwarmReport {
    /// The report as one JSON object.
    pub fn to_json(&self) -> String {
        let errors: Vec<String> = self
            .errors
            .iter()
            .map(|(c, e)| format!("{{\"card\":{},\"error\":{}}}", json_str(c), json_str(e)))
            .collect();
        format!(
            "{{\"cards\":{},\"sessions\":{},\"completed\":{},\"installs\":{},\"gave_up\":{},\
             \"connections_dropped\":{},\"power_cuts\":{},\"resumed_requests\":{},\"session_retries\":{},\
             \"apdus\":{},\"elapsed_s\":{:.3},\"per_second\":{:.2},\"p50_ms\":{:.1},\"p99_ms\":{:.1},\
             \"errors\":[{}]}}",
            self.cards,
            self.sessions,
            self.completed,
            self.installs,
            self.gave_up,
            self.connections_dropped,
            self.power_cuts,
            self.resumed_requests,
            self.session_retries,
            self.apdus,
            self.elapsed_s,
            self.per_second,
            self.p50_ms,
            self.p99_ms,
            errors.join(",")
        )
    }

    /// The report for people, a few lines.
    pub fn to_text(&self) -> String {
        format!(
            "swarm: {} card(s): {} completed ({} with the operation run), {} given up\n\
             sessions {} ({} started again), requests resumed {}\n\
             faults injected: {} connection(s) dropped, {} power cut(s)\n\
             {:.1} s, {:.2} cards/s, session p50 {:.0} ms, p99 {:.0} ms, {} APDUs",
            self.cards,
            self.completed,
            self.installs,
            self.gave_up,
            self.sessions,
            self.session_retries,
            self.resumed_requests,
            self.connections_dropped,
            self.power_cuts,
            self.elapsed_s,
            self.per_second,
            self.p50_ms,
            self.p99_ms,
            self.apdus
        )
    }
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// SplitMix64: a small seeded generator for fault injection (not for anything secret).
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        let n64 = u64::try_from(n).unwrap_or(u64::MAX);
        if n64 == 0 {
            0
        } else {
            usize::try_from(self.next_u64() % n64).unwrap_or(0)
        }
    }
}

/// A simulated card that answers slowly and, when armed, loses power at one APDU.
struct SwarmCard {
    inner: SimTransport,
    latency: Duration,
    cut_at: Option<usize>,
    sent: usize,
    cut: bool,
}

impl Transport for SwarmCard {
    fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Vec<u8>, signer::Error> {
        if self.cut || self.cut_at == Some(self.sent) {
            self.cut = true;
            return Err(signer::Error::Card("the card lost power (injected)".into()));
        }
        self.sent += 1;
        if !self.latency.is_zero() {
            std::thread::sleep(self.latency);
        }
        self.inner.transmit_raw(apdu)
    }
}

#[derive(Default)]
struct Tally {
    report: SwarmReport,
    times: Vec<f64>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs the swarm to the end and reports.
pub fn run(cfg: &SwarmConfig) -> Result<SwarmReport, Error> {
    if cfg.agents.is_empty() {
        return Err(Error::Usage("give at least one --server".into()));
    }
    if cfg.images.is_empty() {
        return Err(Error::Usage("no card images".into()));
    }
    for a in &cfg.agents {
        a.check()?;
    }
    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let workers = cfg.concurrency.clamp(1, cfg.images.len());
    let mut handles = Vec::with_capacity(workers);
    for w in 0..workers {
        let (cfg, next, tally) = (cfg.clone(), next.clone(), tally.clone());
        let h = std::thread::Builder::new()
            .name(format!("swarm-{w}"))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        lock(&tally)
                            .report
                            .errors
                            .push(("(worker)".into(), e.to_string()));
                        return;
                    }
                };
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(image) = cfg.images.get(i) else {
                        return;
                    };
                    rt.block_on(one_card(&cfg, i, image, &tally));
                }
            })
            .map_err(|e| Error::Io {
                what: "starting a swarm thread".into(),
                source: e,
            })?;
        handles.push(h);
    }
    for h in handles {
        let _ = h.join();
    }
    let mut t = std::mem::take(&mut *lock(&tally));
    let r = &mut t.report;
    r.cards = cfg.images.len();
    r.elapsed_s = start.elapsed().as_secs_f64();
    r.per_second = if r.elapsed_s > 0.0 {
        r.completed as f64 / r.elapsed_s
    } else {
        0.0
    };
    t.times.sort_by(f64::total_cmp);
    let pick = |q: f64| -> f64 {
        if t.times.is_empty() {
            return 0.0;
        }
        let idx = ((t.times.len() - 1) as f64 * q).round() as usize;
        t.times.get(idx).copied().unwrap_or(0.0)
    };
    r.p50_ms = pick(0.5);
    r.p99_ms = pick(0.99);
    Ok(t.report)
}

async fn one_card(cfg: &SwarmConfig, i: usize, image: &std::path::Path, tally: &Mutex<Tally>) {
    let mut rng = Rng::new(cfg.seed ^ (i as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
    let mut last_error = String::new();
    for attempt in 0..cfg.attempts.max(1) {
        if attempt > 0 {
            lock(tally).report.session_retries += 1;
            let factor = attempt.min(10);
            tokio::time::sleep(cfg.call_again.saturating_mul(factor)).await;
        }
        let n = cfg.agents.len();
        let Some(agent) = cfg.agents.get((i + attempt as usize) % n) else {
            return;
        };
        let cut_at = rng.chance(cfg.power_cut_rate).then(|| rng.below(24));
        let inner = match SimTransport::open(image) {
            Ok(t) => t,
            Err(e) => {
                last_error = e.to_string();
                break;
            }
        };
        let mut card = SwarmCard {
            inner,
            latency: cfg.apdu_latency,
            cut_at,
            sent: 0,
            cut: false,
        };
        let drops = AtomicUsize::new(0);
        let mut fault_rng = Rng::new(rng.next_u64());
        let drop_rate = cfg.drop_rate;
        let mut fault = || {
            if fault_rng.chance(drop_rate) {
                drops.fetch_add(1, Ordering::Relaxed);
                if fault_rng.chance(0.5) {
                    Fault::DropBeforeSending
                } else {
                    Fault::LoseTheAnswer
                }
            } else {
                Fault::None
            }
        };
        let began = Instant::now();
        let result = agent.run_with_faults(&mut card, &mut fault).await;
        let ms = began.elapsed().as_secs_f64() * 1000.0;
        let mut t = lock(tally);
        t.report.sessions += 1;
        t.report.connections_dropped += drops.load(Ordering::Relaxed);
        t.report.apdus += card.sent;
        if card.cut {
            t.report.power_cuts += 1;
        }
        match result {
            Ok(Summary {
                scripts, resumes, ..
            }) => {
                t.report.resumed_requests += resumes;
                t.report.completed += 1;
                if scripts >= 2 {
                    t.report.installs += 1;
                }
                t.times.push(ms);
                return;
            }
            Err(e) => {
                last_error = e.to_string();
            }
        }
    }
    let mut t = lock(tally);
    t.report.gave_up += 1;
    t.report
        .errors
        .push((image.display().to_string(), last_error));
}
