//! The normal users of the abuse run: online (initial presence, RFC 6121 section 4.2) and in
//! pairs, each sending a `type='chat'` message to its peer's bare JID (RFC 6121 section 8.5.2.1.1)
//! at a steady pace for the whole run, while fresh logins probe that the door is still open. What
//! they see is the run's verdict: messages sent and received, errors of every kind, latency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::{AbusePlan, Outcomes, stopped};
use crate::client::{ClientError, SessionReader, SessionWriter, TlsSocket, error_condition};
use crate::phase::Target;
use crate::phase::batch::run_batch;
use crate::stats::Latency;

/// Logins of the normal users in flight at once.
const LOGIN_CONCURRENCY: usize = 50;

/// What the normal users saw.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ChatReport {
    /// Users asked for, and logged in before the abuse started.
    pub users: u64,
    pub logged_in: u64,
    /// Messages sent, received by the peer, and not received by the end of the drain.
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    /// Errors by kind: `stream-error:<condition>`, `message-error:<condition>`, `send:<kind>`,
    /// `login:<kind>`, and transport kinds (`stream-closed`, `io`, `timeout`).
    pub errors: Outcomes,
    /// Send-to-receive latency.
    pub latency: Option<Latency>,
    /// Fresh logins during the run (connect, TLS, SASL, bind, close) and their failures by kind.
    pub probe_logins: u64,
    pub probe_logins_ok: u64,
    pub probe_errors: Outcomes,
    pub probe_latency: Option<Latency>,
    pub note: String,
}

impl ChatReport {
    /// Errors the normal users saw, all kinds together (lost messages included).
    pub fn error_total(&self) -> u64 {
        self.errors.total() + self.lost + self.probe_errors.total()
    }
}

/// Shared by the receiving tasks.
struct Inbox {
    epoch: Instant,
    latencies_us: Mutex<Vec<u64>>,
    received: AtomicU64,
    errors: Mutex<Outcomes>,
    arrived: Notify,
}

impl Inbox {
    fn error(&self, kind: &str) {
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add(kind);
    }
}

/// The chatting users, started.
pub struct Chat {
    report: ChatReport,
    inbox: Arc<Inbox>,
    senders: Vec<JoinHandle<(SessionWriter<TlsSocket>, u64)>>,
    readers: Vec<JoinHandle<()>>,
    readers_stop: watch::Sender<bool>,
    probes: JoinHandle<(u64, Vec<u64>, Outcomes)>,
    timeout: Duration,
}

/// Logs the normal users in, and starts their messages and the login probes; both stop at `stop`.
pub async fn start(plan: &AbusePlan, stop: watch::Receiver<bool>) -> Chat {
    let users = plan.chat_users - plan.chat_users % 2;
    let target = &plan.target;
    let logins = run_batch(
        users,
        LOGIN_CONCURRENCY,
        target.connector.timeout * 4,
        target.connector.timeout,
        |i| {
            let target = target.clone();
            async move {
                let mut s = target.login(i, "abuse-chat").await?;
                s.send("<presence/>").await?;
                Ok((i, s))
            }
        },
    )
    .await;
    let inbox = Arc::new(Inbox {
        epoch: Instant::now(),
        latencies_us: Mutex::new(Vec::new()),
        received: AtomicU64::new(0),
        errors: Mutex::new(Outcomes::default()),
        arrived: Notify::new(),
    });
    for (kind, n) in &logins.errors.0 {
        for _ in 0..*n {
            inbox.error(&format!("login:{kind}"));
        }
    }
    let mut report = ChatReport {
        users: users as u64,
        logged_in: logins.values.len() as u64,
        note: format!(
            "{} pairs, one message per user every {} ms",
            users / 2,
            plan.chat_interval.as_millis()
        ),
        ..ChatReport::default()
    };
    if !logins.first_errors.is_empty() {
        report.note.push_str(&format!(
            "; first login errors: {}",
            logins.first_errors.join("; ")
        ));
    }
    let (readers_stop, readers_rx) = watch::channel(false);
    let mut senders = Vec::new();
    let mut readers = Vec::new();
    for (i, session) in logins.values {
        let (reader, writer) = session.into_split();
        readers.push(tokio::spawn(receive(
            reader,
            inbox.clone(),
            readers_rx.clone(),
        )));
        // Spread the users' sends over one interval so the load is smooth.
        let offset = plan.chat_interval.mul_f64(i as f64 / users.max(1) as f64);
        senders.push(tokio::spawn(send_loop(
            writer,
            target.bare_jid(i ^ 1),
            i,
            inbox.clone(),
            tokio::time::Instant::now() + offset,
            plan.chat_interval,
            stop.clone(),
        )));
    }
    let probes = tokio::spawn(probe_logins(
        target.clone(),
        users,
        plan.login_probe_interval,
        stop,
    ));
    Chat {
        report,
        inbox,
        senders,
        readers,
        readers_stop,
        probes,
        timeout: target.connector.timeout,
    }
}

impl Chat {
    /// Waits for the senders (which end at the stop), then up to `drain` for messages in flight,
    /// then closes every session and returns the figures.
    pub async fn finish(mut self, drain: Duration) -> ChatReport {
        let mut writers = Vec::new();
        for task in self.senders {
            match task.await {
                Ok((writer, sent)) => {
                    self.report.sent += sent;
                    writers.push(writer);
                }
                Err(_) => self.inbox.error("task-panicked"),
            }
        }
        let sent = self.report.sent;
        let until = tokio::time::Instant::now() + drain;
        while self.inbox.received.load(Ordering::SeqCst) < sent {
            let arrived = self.inbox.arrived.notified();
            if self.inbox.received.load(Ordering::SeqCst) >= sent {
                break;
            }
            if tokio::time::timeout_at(until, arrived).await.is_err() {
                break;
            }
        }
        // Ignore a send error: the readers already ended.
        let _ = self.readers_stop.send(true);
        for reader in self.readers {
            // A reader that panicked has nothing left to clean up.
            let _ = tokio::time::timeout(self.timeout, reader).await;
        }
        for writer in writers {
            // Best effort: the figures are taken.
            let _ = tokio::time::timeout(self.timeout, writer.close()).await;
        }
        let received = self.inbox.received.load(Ordering::SeqCst);
        self.report.received = received;
        self.report.lost = sent.saturating_sub(received);
        let latencies = std::mem::take(
            &mut *self
                .inbox
                .latencies_us
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        self.report.latency = Latency::from_micros(latencies);
        self.report.errors = self
            .inbox
            .errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match self.probes.await {
            Ok((attempted, latencies, errors)) => {
                self.report.probe_logins = attempted;
                self.report.probe_logins_ok = latencies.len() as u64;
                self.report.probe_latency = Latency::from_micros(latencies);
                self.report.probe_errors = errors;
            }
            Err(_) => self.report.probe_errors.add("task-panicked"),
        }
        self.report
    }
}

/// Sends one message to `peer` every `interval` from `first` until `stop`; returns the writer and
/// the number sent. A send error is counted and ends the loop.
async fn send_loop(
    mut writer: SessionWriter<TlsSocket>,
    peer: String,
    user: usize,
    inbox: Arc<Inbox>,
    first: tokio::time::Instant,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) -> (SessionWriter<TlsSocket>, u64) {
    let mut ticks = tokio::time::interval_at(first, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sent = 0u64;
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => return (writer, sent),
            _ = ticks.tick() => {}
        }
        let micros = inbox.epoch.elapsed().as_micros();
        let xml = format!(
            "<message to='{peer}' type='chat' id='a{user}-{sent}'><body>{micros}</body></message>"
        );
        if let Err(e) = writer.send(&xml).await {
            inbox.error(&format!("send:{}", e.kind()));
            return (writer, sent);
        }
        sent += 1;
    }
}

async fn receive(
    mut reader: SessionReader<TlsSocket>,
    inbox: Arc<Inbox>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let next = tokio::select! {
            _ = stopped(&mut stop) => return,
            next = reader.recv() => next,
        };
        let e = match next {
            Ok(e) => e,
            Err(ClientError::StreamError(condition)) => {
                inbox.error(&format!("stream-error:{condition}"));
                return;
            }
            Err(err) => {
                inbox.error(err.kind());
                return;
            }
        };
        if e.name != "message" {
            continue;
        }
        if e.attr("type") == Some("error") {
            inbox.error(&format!("message-error:{}", error_condition(&e)));
            continue;
        }
        let Some(sent_at) = e.child_text("body").and_then(|b| b.parse::<u64>().ok()) else {
            continue;
        };
        let now = inbox.epoch.elapsed().as_micros() as u64;
        inbox
            .latencies_us
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(now.saturating_sub(sent_at));
        inbox.received.fetch_add(1, Ordering::SeqCst);
        inbox.arrived.notify_waiters();
    }
}

/// Every `interval` until `stop`, a fresh login of one of the `users` (round robin) on a resource
/// of its own, closed at once. Returns (attempted, latencies of the good ones, errors by kind).
async fn probe_logins(
    target: Target,
    users: usize,
    interval: Option<Duration>,
    mut stop: watch::Receiver<bool>,
) -> (u64, Vec<u64>, Outcomes) {
    let mut attempted = 0u64;
    let mut latencies = Vec::new();
    let mut errors = Outcomes::default();
    let (Some(interval), true) = (interval, users > 0) else {
        return (attempted, latencies, errors);
    };
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut in_flight = JoinSet::new();
    let mut record = |joined: Result<Result<u64, ClientError>, _>| match joined {
        Ok(Ok(micros)) => latencies.push(micros),
        Ok(Err(ClientError::StreamError(c))) => errors.add(&format!("stream-error:{c}")),
        Ok(Err(e)) => errors.add(e.kind()),
        Err(_) => errors.add("task-panicked"),
    };
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => break,
            Some(joined) = in_flight.join_next() => record(joined),
            _ = ticks.tick() => {
                let target = target.clone();
                let n = attempted as usize;
                attempted += 1;
                in_flight.spawn(async move {
                    let t0 = Instant::now();
                    let session = target.login(n % users, &format!("probe{n}")).await?;
                    let micros = t0.elapsed().as_micros() as u64;
                    // Best effort: the login itself is what is measured.
                    let _ = session.close().await;
                    Ok(micros)
                });
            }
        }
    }
    // Logins still running at the stop get the per-wait timeout to finish (each step is bounded by
    // the connector's timeout, so they cannot run for ever).
    while let Some(joined) = in_flight.join_next().await {
        record(joined);
    }
    (attempted, latencies, errors)
}
