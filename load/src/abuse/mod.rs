//! The abuse run (issue 10, "Hardening"): while normal users keep chatting, unauthenticated
//! connections send the largest unfinished stanza the server allows (RFC 6120 section 13.12 lists
//! this resource exhaustion as a server's problem to bound), other connections hold TLS handshakes
//! open on the direct-TLS port (XEP-0368), and the push relay is flooded with a revoked whitelist
//! token. The server's memory and CPU are sampled throughout; the run stops by itself after its
//! duration, or early when the server's resident memory passes a guard. Loopback only.
//!
//! - [`chatters`]: the normal users, their messages, errors and latency, and login probes.
//! - [`unauth`]: the unauthenticated connections and their worst-case stream header and stanza.
//! - [`tls_hold`]: connections that start a TLS handshake and never finish it.
//! - [`relay_flood`]: the revoked-token setup and the flood of `POST /api/v1/messages/`.
//! - [`sampler`]: the server's resident memory and CPU time, and the memory guard.
//! - [`table`]: the report as a Markdown table.

pub mod chatters;
pub mod relay_flood;
pub mod sampler;
pub mod table;
pub mod tls_hold;
pub mod unauth;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::phase::Target;
use crate::stats::{ErrorCounts, Latency, own_cpu_seconds};

pub use tls_hold::TlsHoldMode;

/// Everything the abuse run does, bounded in count and time.
#[derive(Clone)]
pub struct AbusePlan {
    /// The normal users: connector (STARTTLS port), account names and password, their source
    /// addresses, and the server process to sample.
    pub target: Target,
    /// Label of the server in the report.
    pub server_name: String,
    /// The whole run, from the first chat message to the stop signal.
    pub duration: Duration,
    /// Normal users `{prefix}0..chat_users`, chatting in pairs (0-1, 2-3, ...).
    pub chat_users: usize,
    /// Each normal user sends one message to its peer this often.
    pub chat_interval: Duration,
    /// A fresh login (connect, TLS, SASL, bind, close) of a normal user this often; `None`: none.
    pub login_probe_interval: Option<Duration>,
    /// Unauthenticated connections to the STARTTLS port.
    pub unauth_connections: usize,
    /// The port they connect to (normally the STARTTLS port).
    pub unauth_address: SocketAddr,
    /// The worst-case payload each of them sends.
    pub payload: unauth::PayloadShape,
    /// Connections being opened at once (the ramp).
    pub connect_concurrency: usize,
    /// Local addresses for the abusive connections (disjoint from the normal users').
    pub abuse_sources: Vec<IpAddr>,
    /// Connections holding a TLS handshake open, and the direct-TLS port; `None`: not run.
    pub tls_holds: usize,
    pub direct_tls_address: Option<SocketAddr>,
    pub tls_hold_mode: TlsHoldMode,
    /// Relay API base URL (`http://127.0.0.1:PORT`); `None`: no flood.
    pub relay_url: Option<String>,
    /// The account whose revoked token is posted (`{prefix}{relay_user}`).
    pub relay_user: usize,
    /// Total posts per second over all flood connections.
    pub flood_rate: f64,
    /// Keep-alive HTTP connections the flood is spread over.
    pub flood_connections: usize,
    /// Stop early when the server's VmRSS passes this many KiB.
    pub max_server_rss_kib: u64,
    /// How often the server's memory is sampled.
    pub sample_interval: Duration,
    /// Wait after the stop for chat messages in flight, and before the last memory sample.
    pub drain: Duration,
}

/// The server side of the run, from `/proc/<pid>` (absent without a pid).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ServerFigures {
    /// VmRSS before the normal users logged in, KiB.
    pub rss_before_kib: Option<u64>,
    /// Largest VmRSS sampled during the run, KiB.
    pub rss_max_kib: Option<u64>,
    /// VmRSS just before the stop signal, KiB.
    pub rss_loaded_kib: Option<u64>,
    /// VmRSS after every connection closed and the drain wait, KiB.
    pub rss_after_kib: Option<u64>,
    /// VmHWM (resident peak since the process started) at the end, KiB.
    pub hwm_kib: Option<u64>,
    /// Number of memory samples taken.
    pub samples: u64,
    /// CPU seconds (user + system) the server used from the first login to the last sample.
    pub cpu_s: Option<f64>,
}

/// The JSON report of one abuse run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AbuseReport {
    /// Label of the server.
    pub server: String,
    /// Wall time from the start of chatting to the stop signal, seconds.
    pub seconds: f64,
    /// Why the run stopped before its duration (the memory guard), if it did.
    pub stopped_early: Option<String>,
    pub normal: chatters::ChatReport,
    pub unauth: unauth::UnauthReport,
    pub tls_holds: tls_hold::TlsHoldReport,
    pub relay_flood: relay_flood::FloodReport,
    pub server_figures: ServerFigures,
    /// CPU seconds the load generator used over the same interval.
    pub client_cpu_s: Option<f64>,
}

/// How one connection ended, counted by label.
pub type Outcomes = ErrorCounts;

/// Summarises durations (connection lifetimes) as a latency summary in milliseconds.
pub(crate) fn summarise(durations: Vec<Duration>) -> Option<Latency> {
    Latency::from_micros(durations.iter().map(|d| d.as_micros() as u64).collect())
}

/// Resolves when `stop` is (or already was) set, or when its sender is gone.
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the sender was dropped: that is a stop too.
    let _ = stop.wait_for(|s| *s).await;
}

/// Runs the whole plan and returns the report. Never fails: what could not be done is counted
/// and noted in the report.
pub async fn run(plan: &AbusePlan) -> AbuseReport {
    let mut report = AbuseReport {
        server: plan.server_name.clone(),
        ..AbuseReport::default()
    };
    let cpu_start = (plan.target.server_cpu_seconds(), own_cpu_seconds());
    report.server_figures.rss_before_kib = plan.target.sample_memory().map(|m| m.rss_kib);
    let (stop_tx, stop_rx) = watch::channel(false);

    let chat = chatters::start(plan, stop_rx.clone()).await;
    // The flood's token is set up before the abuse starts, so its figures are the flood's alone.
    let flood_setup = relay_flood::setup(plan).await;

    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + plan.duration;
    let sampler = tokio::spawn(sampler::run(
        plan.target.memory.clone(),
        plan.sample_interval,
        plan.max_server_rss_kib,
        stop_tx.clone(),
        stop_rx.clone(),
    ));
    let unauth = tokio::spawn(unauth::run(plan.clone(), stop_rx.clone()));
    let tls = tokio::spawn(tls_hold::run(plan.clone(), stop_rx.clone()));
    let flood = tokio::spawn(relay_flood::run(plan.clone(), flood_setup, stop_rx.clone()));

    let mut until_stop = stop_rx.clone();
    tokio::select! {
        _ = tokio::time::sleep_until(deadline) => {}
        _ = stopped(&mut until_stop) => {}
    }
    report.seconds = started.elapsed().as_secs_f64();
    report.server_figures.rss_loaded_kib = plan.target.sample_memory().map(|m| m.rss_kib);
    // Ignore a send error: every receiver is already gone, which is a stop too.
    let _ = stop_tx.send(true);

    report.unauth = unauth
        .await
        .unwrap_or_else(|_| unauth::UnauthReport::panicked());
    report.tls_holds = tls
        .await
        .unwrap_or_else(|_| tls_hold::TlsHoldReport::panicked());
    report.relay_flood = flood
        .await
        .unwrap_or_else(|_| relay_flood::FloodReport::panicked());
    report.normal = chat.finish(plan.drain).await;
    let samples = sampler.await.unwrap_or_default();
    report.stopped_early = samples.guard_tripped.clone();
    report.server_figures.rss_max_kib = samples.rss_max_kib;
    report.server_figures.samples = samples.count;
    // Let the server finish tearing the connections down before the last sample; this is a
    // measurement interval, not synchronisation.
    tokio::time::sleep(plan.drain).await;
    let last = plan.target.sample_memory();
    report.server_figures.rss_after_kib = last.map(|m| m.rss_kib);
    report.server_figures.hwm_kib = last.map(|m| m.peak_kib);
    let cpu_end = (plan.target.server_cpu_seconds(), own_cpu_seconds());
    report.server_figures.cpu_s = cpu_start.0.zip(cpu_end.0).map(|(a, b)| b - a);
    report.client_cpu_s = cpu_start.1.zip(cpu_end.1).map(|(a, b)| b - a);
    report
}
