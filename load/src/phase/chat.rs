//! Chatting pairs: online users (initial presence sent, RFC 6121 section 4.2) exchange
//! `type='chat'` messages addressed to the peer's bare JID (RFC 6121 section 8.5.2.1.1) at a rate
//! raised step by step; the report gives the highest step sustained without loss, errors or a p99
//! latency above the limit.
//!
//! [`run_federated`] is the same ramp across two servers (RFC 6120 section 10.4, server-to-server): user
//! `i` of one domain and user `i` of the other chat, so every message crosses the federation link.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use super::batch::run_batch;
use super::idle::close_all;
use super::{PhaseReport, Target};
use crate::client::{SessionWriter, TlsSocket};
use crate::stats::{ErrorCounts, Latency};

/// How to ramp.
#[derive(Debug, Clone)]
pub struct ChatPlan {
    /// Users online, paired 0-1, 2-3, ... (an odd last user is left out).
    pub users: usize,
    /// First step's total message rate (messages per second over all users).
    pub start_rate: f64,
    /// No step above this rate.
    pub max_rate: f64,
    /// Each step's sending window.
    pub step: Duration,
    /// A step fails if its p99 latency exceeds this.
    pub max_p99: Duration,
    /// How long to wait after a step for messages still in flight.
    pub drain: Duration,
    /// Concurrency of the initial logins.
    pub login_concurrency: usize,
    /// The steps' rates in order, when given; otherwise doubling from `start_rate` to `max_rate`.
    /// Finer steps measure the best clean step more finely than doubling does.
    pub rates: Vec<f64>,
}

impl ChatPlan {
    /// The rates of the judged steps, in order.
    fn step_rates(&self) -> Vec<f64> {
        if !self.rates.is_empty() {
            return self.rates.clone();
        }
        let mut rates = Vec::new();
        let mut rate = self.start_rate;
        while rate <= self.max_rate {
            rates.push(rate);
            rate *= 2.0;
        }
        rates
    }
}

/// Shared by the receiving tasks.
struct Inbox {
    epoch: Instant,
    /// Latencies in microseconds of the current step's messages.
    samples: Mutex<Vec<u64>>,
    current_step: AtomicU64,
    received: AtomicU64,
    late: AtomicU64,
    errors: Mutex<ErrorCounts>,
    arrived: Notify,
}

struct StepResult {
    rate: f64,
    sent: u64,
    received: u64,
    seconds: f64,
    latency: Option<Latency>,
    errors: ErrorCounts,
}

/// Runs the ramp and reports the best sustained step.
pub async fn run(target: &Target, plan: &ChatPlan) -> PhaseReport {
    let users = plan.users - plan.users % 2;
    let mut report = PhaseReport {
        name: "chat".into(),
        available: true,
        ..PhaseReport::default()
    };
    let logins = log_in(target, 0..users, plan).await;
    if logins.values.len() < users {
        report.errors = logins.errors;
        report.note = format!(
            "only {} of {users} chat users logged in; no messages sent",
            logins.values.len()
        );
        return report;
    }
    let mut sessions = logins.values;
    sessions.sort_by_key(|(i, _)| *i);
    let peers = (0..users).map(|i| target.bare_jid(i ^ 1)).collect();
    let sessions = sessions.into_iter().map(|(_, s)| s).collect();
    ramp(report, sessions, peers, plan, target.connector.timeout).await
}

/// The ramp between two servers: `plan.users / 2` users on each (`{prefix}0..` on both domains, which
/// must exist), user `i` of `local` paired with user `i` of `remote`, each sending to the other's bare
/// JID, so every message is carried by server-to-server streams. Reported as phase `federation`.
pub async fn run_federated(local: &Target, remote: &Target, plan: &ChatPlan) -> PhaseReport {
    let per_side = plan.users / 2;
    let mut report = PhaseReport {
        name: "federation".into(),
        available: true,
        ..PhaseReport::default()
    };
    let (local_logins, remote_logins) = tokio::join!(
        log_in(local, 0..per_side, plan),
        log_in(remote, 0..per_side, plan)
    );
    if local_logins.values.len() < per_side || remote_logins.values.len() < per_side {
        report.errors = local_logins.errors;
        report.errors.merge(&remote_logins.errors);
        report.note = format!(
            "only {} + {} of {per_side} + {per_side} users logged in; no messages sent",
            local_logins.values.len(),
            remote_logins.values.len()
        );
        return report;
    }
    let mut sessions = Vec::with_capacity(2 * per_side);
    let mut peers = Vec::with_capacity(2 * per_side);
    for (logins, other) in [(local_logins, remote), (remote_logins, local)] {
        let mut values = logins.values;
        values.sort_by_key(|(i, _)| *i);
        for (i, session) in values {
            sessions.push(session);
            peers.push(other.bare_jid(i));
        }
    }
    ramp(report, sessions, peers, plan, local.connector.timeout).await
}

/// Logs users `indices` of `target` in and sends their initial presence; `(index, session)` pairs.
async fn log_in(
    target: &Target,
    indices: std::ops::Range<usize>,
    plan: &ChatPlan,
) -> super::batch::BatchOutcome<(usize, crate::client::TlsSession)> {
    let first = indices.start;
    run_batch(
        indices.len(),
        plan.login_concurrency,
        plan.step * 20,
        target.connector.timeout,
        |n| {
            let target = target.clone();
            async move {
                let i = first + n;
                let mut s = target.login(i, "chat").await?;
                s.send("<presence/>").await?;
                Ok((i, s))
            }
        },
    )
    .await
}

/// Ramps the message rate over `sessions`, session `k` sending to `peers[k]`, and reports the best
/// step that met the criteria in `report`.
async fn ramp(
    mut report: PhaseReport,
    sessions: Vec<crate::client::TlsSession>,
    peers: Vec<String>,
    plan: &ChatPlan,
    timeout: Duration,
) -> PhaseReport {
    let users = sessions.len();
    let inbox = Arc::new(Inbox {
        epoch: Instant::now(),
        samples: Mutex::new(Vec::new()),
        current_step: AtomicU64::new(0),
        received: AtomicU64::new(0),
        late: AtomicU64::new(0),
        errors: Mutex::new(ErrorCounts::default()),
        arrived: Notify::new(),
    });
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut writers: Vec<Option<SessionWriter<TlsSocket>>> = Vec::with_capacity(users);
    let mut readers = Vec::with_capacity(users);
    for session in sessions {
        let (reader, writer) = session.into_split();
        writers.push(Some(writer));
        readers.push(tokio::spawn(receive(
            reader,
            inbox.clone(),
            shutdown_rx.clone(),
        )));
    }
    let mut best: Option<StepResult> = None;
    let mut notes = Vec::new();
    let rates = plan.step_rates();
    let rate = rates.first().copied().unwrap_or(plan.start_rate);
    // A warm-up step at the start rate, not judged: the server may still be busy with the logins
    // and presence of the chat users, which is not what the ramp measures.
    let warm_up = run_step(plan, &inbox, &mut writers, &peers, 1, rate).await;
    notes.push(format!(
        "warm-up {:.0}/s: sent {} got {} p99 {}",
        rate,
        warm_up.sent,
        warm_up.received,
        warm_up
            .latency
            .map_or("-".into(), |l| format!("{:.1}ms", l.p99_ms))
    ));
    let mut first_failure: Option<StepResult> = None;
    let mut step_no = 1u64;
    for rate in rates {
        step_no += 1;
        let result = run_step(plan, &inbox, &mut writers, &peers, step_no, rate).await;
        let p99_ok = result
            .latency
            .is_some_and(|l| l.p99_ms <= plan.max_p99.as_secs_f64() * 1000.0);
        let target_sent = (rate * plan.step.as_secs_f64()) as u64;
        let kept_up = result.sent as f64 >= 0.9 * target_sent as f64;
        let passed =
            result.received == result.sent && result.errors.total() == 0 && p99_ok && kept_up;
        notes.push(format!(
            "{}{:.0}/s: sent {} got {} p99 {} errors {}",
            if passed { "" } else { "FAIL " },
            rate,
            result.sent,
            result.received,
            result
                .latency
                .map_or("-".into(), |l| format!("{:.1}ms", l.p99_ms)),
            result.errors.total()
        ));
        if !kept_up {
            notes.push("client could not send at the target rate".into());
        }
        if !passed {
            report.errors.merge(&result.errors);
            first_failure = Some(result);
            break;
        }
        best = Some(result);
    }
    let _ = shutdown_tx.send(true);
    close_all(readers, timeout).await;
    for writer in writers.into_iter().flatten() {
        // Best effort: the measurements are taken.
        let _ = writer.close().await;
    }
    if let Some(b) = best {
        report.attempted = b.sent;
        report.succeeded = b.received;
        report.seconds = b.seconds;
        report.rate_per_s = b.received as f64 / b.seconds;
        report.latency = b.latency;
        report.note = format!(
            "best step {:.0}/s target; steps: {}",
            b.rate,
            notes.join("; ")
        );
    } else if let Some(f) = first_failure {
        // Nothing met the criteria: report the lowest step as measured, and say so.
        report.attempted = f.sent;
        report.succeeded = f.received;
        report.seconds = f.seconds;
        report.rate_per_s = f.received as f64 / f.seconds;
        report.latency = f.latency;
        report.note = format!(
            "NO step met the criteria; figures are the lowest step ({:.0}/s target); steps: {}",
            f.rate,
            notes.join("; ")
        );
    } else {
        report.note = format!("no step ran; steps: {}", notes.join("; "));
    }
    report
}

async fn run_step(
    plan: &ChatPlan,
    inbox: &Arc<Inbox>,
    writers: &mut [Option<SessionWriter<TlsSocket>>],
    peers: &[String],
    step_no: u64,
    rate: f64,
) -> StepResult {
    let users = writers.len();
    inbox.current_step.store(step_no, Ordering::SeqCst);
    inbox.received.store(0, Ordering::SeqCst);
    inbox
        .samples
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clear();
    *inbox.errors.lock().unwrap_or_else(|p| p.into_inner()) = ErrorCounts::default();
    let period = Duration::from_secs_f64(users as f64 / rate);
    let start = tokio::time::Instant::now();
    let end = start + plan.step;
    let mut tasks = Vec::with_capacity(users);
    for (i, slot) in writers.iter_mut().enumerate() {
        let Some(writer) = slot.take() else { continue };
        let peer = peers[i].clone();
        let inbox = inbox.clone();
        // Spread first sends over one period so the load is smooth rather than in bursts.
        let offset = period.mul_f64(i as f64 / users as f64);
        tasks.push(tokio::spawn(send_loop(
            writer,
            peer,
            inbox,
            step_no,
            start + offset,
            period,
            end,
        )));
    }
    let mut sent = 0u64;
    let mut errors = ErrorCounts::default();
    for (slot, task) in writers.iter_mut().zip(tasks) {
        match task.await {
            Ok((writer, n, err)) => {
                sent += n;
                if let Some(kind) = err {
                    errors.add(kind);
                } else {
                    *slot = Some(writer);
                }
            }
            Err(_) => errors.add("task-panicked"),
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let drain_until = tokio::time::Instant::now() + plan.drain;
    while inbox.received.load(Ordering::SeqCst) < sent {
        let notified = inbox.arrived.notified();
        if inbox.received.load(Ordering::SeqCst) >= sent {
            break;
        }
        if tokio::time::timeout_at(drain_until, notified)
            .await
            .is_err()
        {
            break;
        }
    }
    // Messages arriving after this belong to no step and are counted as late.
    inbox.current_step.store(0, Ordering::SeqCst);
    let received = inbox.received.load(Ordering::SeqCst);
    let samples = std::mem::take(&mut *inbox.samples.lock().unwrap_or_else(|p| p.into_inner()));
    errors.merge(&inbox.errors.lock().unwrap_or_else(|p| p.into_inner()));
    StepResult {
        rate,
        sent,
        received,
        seconds,
        latency: Latency::from_micros(samples),
        errors,
    }
}

async fn send_loop(
    mut writer: SessionWriter<TlsSocket>,
    peer: String,
    inbox: Arc<Inbox>,
    step_no: u64,
    first: tokio::time::Instant,
    period: Duration,
    end: tokio::time::Instant,
) -> (SessionWriter<TlsSocket>, u64, Option<&'static str>) {
    let mut ticks = tokio::time::interval_at(first, period);
    // If the client falls behind it must not catch up in bursts: that would hide its own limit.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sent = 0u64;
    loop {
        let at = ticks.tick().await;
        if at >= end {
            return (writer, sent, None);
        }
        let micros = inbox.epoch.elapsed().as_micros();
        let xml = format!(
            "<message to='{peer}' type='chat' id='c{step_no}-{sent}'><body>{step_no} {micros}</body></message>"
        );
        if let Err(e) = writer.send(&xml).await {
            return (writer, sent, Some(e.kind()));
        }
        sent += 1;
    }
}

async fn receive(
    mut reader: crate::client::SessionReader<TlsSocket>,
    inbox: Arc<Inbox>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let next = tokio::select! {
            _ = shutdown.changed() => return,
            next = reader.recv() => next,
        };
        let e = match next {
            Ok(e) => e,
            Err(err) => {
                inbox
                    .errors
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .add(err.kind());
                return;
            }
        };
        if e.name != "message" {
            continue;
        }
        if e.attr("type") == Some("error") {
            let condition = crate::client::error_condition(&e);
            inbox
                .errors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .add(&format!("message-error:{condition}"));
            continue;
        }
        let Some((step, micros)) = e.child_text("body").and_then(parse_body) else {
            continue;
        };
        if step != inbox.current_step.load(Ordering::SeqCst) {
            inbox.late.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let now = inbox.epoch.elapsed().as_micros() as u64;
        inbox
            .samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(now.saturating_sub(micros));
        inbox.received.fetch_add(1, Ordering::SeqCst);
        inbox.arrived.notify_waiters();
    }
}

fn parse_body(body: &str) -> Option<(u64, u64)> {
    let mut parts = body.split_whitespace();
    let step = parts.next()?.parse().ok()?;
    let micros = parts.next()?.parse().ok()?;
    Some((step, micros))
}

#[cfg(test)]
mod tests {
    use super::parse_body;

    #[test]
    fn body_carries_step_and_send_time() {
        assert_eq!(parse_body("3 123456"), Some((3, 123456)));
        assert_eq!(parse_body("hello"), None);
    }
}
