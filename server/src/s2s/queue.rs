//! The outbound server-to-server queue (RFC 6120 section 10.4.3 for stanzas to remote domains;
//! sections 8.3.3.15 `remote-server-not-found` and 8.3.3.16 `remote-server-timeout` for the
//! bounces). One task per remote domain dials, writes stanzas oldest first (the in-order processing
//! of RFC 6120 section 10.1), retries with backoff, bounces what waited too long, and closes the
//! stream when it has been idle. Streams, failures and backoff are per (local domain, remote domain)
//! link: one of our domains that cannot reach the peer (a failed dialback for the push service's
//! domain, say) holds back only its own stanzas.
//!
//! Where a stanza waits. When its link has a proven stream and nothing of that link waits in
//! storage, [`OutboundQueue::submit`] hands it to the domain's task in memory (a bounded channel)
//! and storage is not touched; otherwise (no stream yet, dialing, backing off, stanzas stored ahead
//! of it, or the hand-off full) it is stored ([`S2sQueue`]) and the task sweeps storage for it. Per
//! link, everything handed off is older than everything stored, and the task writes the hand-off
//! first, so the order holds. What is stored for which link, and the per-domain cap, are counted in
//! memory ([`ledger`]): a submit costs one insert at most, and the task reads storage only to drain
//! it, never per submit while a link backs off.
//!
//! The trade-off, and what "a restart loses nothing that was queued" means now: a stanza written to
//! the socket is no longer queued (as before); a stanza in the hand-off is not yet in storage. If its
//! link fails, it and every later one of that link go back to storage, ahead of anything submitted
//! for the link meanwhile (those submits wait for it), and are written by the next stream; at
//! shutdown they are stored for the next start; a storage error while putting one back bounces it.
//! Only a crash (or a panic of the task, after which they bounce) can lose what the hand-off holds:
//! at most [`HANDOFF_CAPACITY`] stanzas and [`HANDOFF_BYTES`] per domain (about a second of a
//! busy link), accepted a moment earlier, as a stanza already in the socket's buffer always could be. Prosody and ejabberd keep their whole queue in memory.
//! A restart still delivers everything stored: [`OutboundQueue::resume`] counts it and restarts a
//! task for every domain with stanzas waiting.
//!
//! The streams themselves are behind [`Dialer`] and [`Link`]; bounces go back through
//! [`BounceSink`]. An error stanza is never bounced (RFC 6120 section 8.3.1), so bounces cannot loop.

mod ledger;
mod worker;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use herald_storage::{S2sQueue, S2sQueueLimits, StorageError};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;

use ledger::{DomainLedger, DomainTask, Handoff, HandoffLimits, HandoffReceiver, Ledger};
use worker::DomainWorker;

use super::retry::RetryPolicy;
use crate::net::shutdown::Shutdown;
use crate::xmpp::{DefinedCondition, Element, Jid};

/// Opens authenticated outbound streams (implemented by the s2s streams).
#[async_trait]
pub trait Dialer: Send + Sync {
    /// An authenticated outbound stream from our `local_domain` to `remote_domain`: resolution,
    /// TCP, TLS, SASL EXTERNAL or dialback all happen inside.
    async fn dial(
        &self,
        local_domain: &str,
        remote_domain: &str,
    ) -> Result<Box<dyn Link>, DialError>;
}

/// One established outbound stream.
#[async_trait]
pub trait Link: Send {
    /// Writes one serialized stanza (`jabber:server` namespace) and flushes it to the socket.
    async fn send(&mut self, stanza: &str) -> Result<(), LinkError>;
    /// Closes the stream with `</stream:stream>`.
    async fn close(self: Box<Self>);
}

/// Why a stream could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialError {
    /// The domain has no server-to-server service (no SRV or address record, or a "." target):
    /// everything queued for it bounces with `remote-server-not-found` at once.
    #[error("no server found")]
    NotFound,
    /// No connection could be made; retried with backoff, bounced at the queue timeout.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// Connected, but authentication or policy failed; retried with backoff, bounced at the
    /// queue timeout.
    #[error("rejected: {0}")]
    Rejected(String),
}

/// Why a write failed; the stream is then dropped and a new one dialed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("s2s link failed: {0}")]
pub struct LinkError(pub String);

/// Where stanzas that cannot be delivered go back to their senders.
pub trait BounceSink: Send + Sync {
    /// Answers `stanza` (as queued) to its sender with a stanza error of `condition`. Never called
    /// with an error stanza.
    fn bounce(&self, stanza: &str, condition: DefinedCondition);
}

/// How the queue behaves (from `[s2s]`).
#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// A stanza that waited this long while its domain could not be reached bounces with
    /// `remote-server-timeout`.
    pub queue_timeout: Duration,
    /// A stream with nothing to send for this long is closed.
    pub idle_timeout: Duration,
    /// Per remote domain; beyond it [`OutboundQueue::submit`] answers [`SubmitError::Full`].
    pub limits: S2sQueueLimits,
    /// The wait between failed attempts.
    pub retry: RetryPolicy,
    /// A dial taking longer counts as unreachable.
    pub dial_timeout: Duration,
    /// A write (or a polite close) taking longer counts as a failed link.
    pub send_timeout: Duration,
    /// Stanzas read from storage at once.
    pub batch_size: usize,
    /// Bytes the in-memory hand-offs hold at most, per domain and in all.
    pub(crate) handoff: HandoffLimits,
}

impl QueueSettings {
    /// The configured timeouts and limits, with the default retry policy, a 60-second dial
    /// timeout, a 30-second write timeout and batches of 64.
    pub fn new(queue_timeout: Duration, idle_timeout: Duration, limits: S2sQueueLimits) -> Self {
        Self {
            queue_timeout,
            idle_timeout,
            limits,
            retry: RetryPolicy::default(),
            dial_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(30),
            batch_size: 64,
            handoff: HANDOFF_LIMITS,
        }
    }
}

/// Why a stanza was not queued; the caller bounces it with [`SubmitError::condition`].
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The domain's queue is at its limit.
    #[error("the outbound queue for {0} is full")]
    Full(String),
    /// The sender's domain is not `local_domain` (the stream would not be authorised to carry it).
    #[error("sender {sender} is not of {local_domain}")]
    ForeignSender {
        sender: String,
        local_domain: String,
    },
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
}

impl SubmitError {
    /// The stanza error to bounce with: `resource-constraint` (RFC 6120 section 8.3.3.18) when
    /// full, `internal-server-error` otherwise.
    pub fn condition(&self) -> DefinedCondition {
        match self {
            Self::Full(_) => DefinedCondition::ResourceConstraint,
            Self::ForeignSender { .. } | Self::Storage(_) => DefinedCondition::InternalServerError,
        }
    }
}

/// The outbound queues of every remote domain. Cheap to clone; all clones share the tasks.
#[derive(Clone)]
pub struct OutboundQueue {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for OutboundQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundQueue")
            .field("settings", &self.shared.settings)
            .finish_non_exhaustive()
    }
}

/// Stanzas one domain's hand-off holds at most; a submit that finds it full (in stanzas or in
/// [`HANDOFF_BYTES`]) stores its stanza instead (behind the handed-off ones, which the task writes
/// first). Bounds what a failing link can have to put back, and what a crash can lose.
///
/// Sized for bursts and scheduling stalls of a busy link, not for a steady 256: once a link has
/// stanzas in storage every later one goes there too until the task has drained them, and the
/// storage path costs an insert, a read and a delete per stanza, several times the CPU of a
/// hand-off. A hand-off that overflowed at every stall of a few tens of milliseconds (256 at
/// 8000 stanzas/s) sent a busy link into that slower path, where it fell further behind.
const HANDOFF_CAPACITY: usize = 8192;

/// Bytes one domain's hand-off holds at most (as serialised), whatever the stanzas' sizes: with
/// [`HANDOFF_CAPACITY`] alone, large stanzas to a slow peer could make it hold capacity times
/// `[limits] max_stanza_bytes`.
const HANDOFF_BYTES: usize = 4 * 1024 * 1024;

/// Bytes all domains' hand-offs hold together at most: [`HANDOFF_BYTES`] is sized for one busy
/// link, and peers that read slowly (each a domain that passed authentication, cheap to have many
/// of) must not hold that much each in memory; past this, stanzas are stored (under the per-domain
/// storage caps) as for a full hand-off.
const HANDOFF_BYTES_ALL: usize = 64 * 1024 * 1024;

/// The hand-offs' byte bounds.
const HANDOFF_LIMITS: HandoffLimits = HandoffLimits {
    per_domain: HANDOFF_BYTES,
    all: HANDOFF_BYTES_ALL,
};

/// Stanzas read from storage at once when counting what waits at start.
const RESUME_PAGE: usize = 512;

pub(super) struct Shared {
    store: Arc<dyn S2sQueue>,
    dialer: Arc<dyn Dialer>,
    bounces: Arc<dyn BounceSink>,
    settings: QueueSettings,
    clock: QueueClock,
    ledger: Mutex<Ledger>,
    /// How many domain tasks run (for [`OutboundQueue::stopped`]).
    running: watch::Sender<usize>,
    /// Told when a link's handed-off stanzas are back in storage (see [`LinkLedger::requeuing`]).
    requeued: Notify,
    /// Bytes in every domain's hand-off together (bounded by `handoff_limits.all`).
    handoff_bytes_all: Arc<std::sync::atomic::AtomicUsize>,
    shutdown: Shutdown,
}

/// Milliseconds since the epoch as storage records them, advancing with tokio's clock (so paused
/// time in tests moves queued stanzas towards their timeout too).
#[derive(Debug, Clone, Copy)]
struct QueueClock {
    epoch_ms_at_start: i64,
    started: Instant,
}

impl QueueClock {
    fn new() -> Self {
        let epoch_ms_at_start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| {
                i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
            });
        Self {
            epoch_ms_at_start,
            started: Instant::now(),
        }
    }

    fn now_ms(&self) -> i64 {
        let elapsed = i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.epoch_ms_at_start.saturating_add(elapsed)
    }
}

/// Where a submit's stanza goes.
enum Admission {
    /// Into the link's hand-off.
    HandedOff,
    /// Into storage (counted already).
    Store(Handoff),
    /// Wait until the link's handed-off stanzas are back in storage, then decide again.
    Wait(Handoff),
}

impl OutboundQueue {
    /// A queue over `store`, dialing with `dialer` and bouncing through `bounces`. Its tasks end
    /// when `shutdown` fires (closing their streams); what is still queued stays in storage, and
    /// what was handed off but not written goes back to it.
    pub fn new(
        store: Arc<dyn S2sQueue>,
        dialer: Arc<dyn Dialer>,
        bounces: Arc<dyn BounceSink>,
        settings: QueueSettings,
        shutdown: Shutdown,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                store,
                dialer,
                bounces,
                settings,
                clock: QueueClock::new(),
                ledger: Mutex::new(Ledger::default()),
                running: watch::Sender::new(0),
                requeued: Notify::new(),
                handoff_bytes_all: Arc::default(),
                shutdown,
            }),
        }
    }

    /// Sends `stanza` (from `sender`, a JID of `local_domain`) to `remote_domain`: handed to the
    /// stream in memory when the link is up with nothing waiting ahead of it, else stored and the
    /// domain's task woken. Returns once the stanza is handed off or in storage.
    ///
    /// Errors: [`SubmitError::Full`] when the domain's queue is at its limit (bounce with
    /// `resource-constraint`), [`SubmitError::ForeignSender`], [`SubmitError::Storage`].
    pub async fn submit(
        &self,
        local_domain: &str,
        remote_domain: &str,
        sender: &str,
        stanza: &str,
    ) -> Result<(), SubmitError> {
        if !domain_of(sender).eq_ignore_ascii_case(local_domain) {
            return Err(SubmitError::ForeignSender {
                sender: sender.to_string(),
                local_domain: local_domain.to_string(),
            });
        }
        let domain = remote_domain.to_ascii_lowercase();
        let shared = &self.shared;
        let mut item = Handoff {
            link: local_domain.to_ascii_lowercase(),
            sender: sender.to_string(),
            stanza: stanza.to_string(),
            enqueued_at_ms: shared.clock.now_ms(),
        };
        let item = loop {
            // Made before the ledger is read, so a requeue that ends in between still wakes it.
            let requeued = shared.requeued.notified();
            match self.admit(&domain, item)? {
                Admission::HandedOff => return Ok(()),
                Admission::Store(stored) => break stored,
                Admission::Wait(waiting) => {
                    item = waiting;
                    requeued.await;
                }
            }
        };
        let appended = shared
            .store
            .append(&domain, &item.sender, &item.stanza, item.enqueued_at_ms)
            .await;
        {
            let mut ledger = shared.lock_ledger();
            let entry = ledger.domains.entry(domain.clone()).or_default();
            if let Err(error) = appended {
                entry.unreserve(&item.link, item.stanza.len());
                return Err(error.into());
            }
            entry.commit(&item.link, item.enqueued_at_ms);
        }
        self.wake(&domain);
        Ok(())
    }

    /// Decides under the ledger's lock where `item` goes; a stanza for storage is counted against
    /// the cap here, so the cap holds without reading storage.
    fn admit(&self, domain: &str, item: Handoff) -> Result<Admission, SubmitError> {
        let limits = self.shared.settings.limits;
        let mut ledger = self.shared.lock_ledger();
        let entry = match ledger.domains.get_mut(domain) {
            Some(entry) => entry,
            None => ledger.domains.entry(domain.to_string()).or_default(),
        };
        let link = entry.link_mut(&item.link);
        let (requeuing, open, stored) = (link.requeuing, link.open, link.stored);
        if requeuing {
            return Ok(Admission::Wait(item));
        }
        let mut item = item;
        if open
            && stored == 0
            && let Some(task) = &entry.task
        {
            match task.try_hand_off(item, self.shared.settings.handoff) {
                Ok(()) => return Ok(Admission::HandedOff),
                // A full hand-off: stored behind what it holds, which the task writes first.
                Err(back) => item = back,
            }
        }
        if entry.stanzas >= limits.max_stanzas
            || entry.bytes.saturating_add(item.stanza.len()) > limits.max_bytes
        {
            return Err(SubmitError::Full(domain.to_string()));
        }
        entry.reserve(&item.link, item.stanza.len());
        Ok(Admission::Store(item))
    }

    /// Counts what waits in storage and starts a task for every domain with stanzas waiting (call
    /// once at start, before any submit): the only time the queue reads all of storage.
    /// Errors: the storage error reading the queue.
    pub async fn resume(&self) -> Result<(), StorageError> {
        let store = &self.shared.store;
        for domain in store.domains().await? {
            let mut counted = DomainLedger::default();
            let mut after_id = None;
            loop {
                let page = store.oldest(&domain, after_id, RESUME_PAGE).await?;
                let Some(last) = page.last() else {
                    break;
                };
                after_id = Some(last.id);
                for queued in &page {
                    let link = domain_of(&queued.sender).to_ascii_lowercase();
                    counted.reserve(&link, queued.stanza.len());
                    counted.commit(&link, queued.enqueued_at_ms);
                }
            }
            {
                let mut ledger = self.shared.lock_ledger();
                let entry = ledger.domains.entry(domain.clone()).or_default();
                entry.links = counted.links;
                entry.stanzas = counted.stanzas;
                entry.bytes = counted.bytes;
                entry.oldest_ms = counted.oldest_ms;
            }
            self.wake(&domain);
        }
        Ok(())
    }

    /// Resolves once no domain task runs (all queues drained, or shutdown finished).
    pub async fn stopped(&self) {
        let mut running = self.shared.running.subscribe();
        let _ = running.wait_for(|count| *count == 0).await;
    }

    /// Tells `domain`'s task there is work in storage, starting one if none runs.
    fn wake(&self, domain: &str) {
        if self.shared.shutdown.is_triggered() {
            return;
        }
        let mut ledger = self.shared.lock_ledger();
        let generation = ledger.next_generation;
        let entry = ledger.domains.entry(domain.to_string()).or_default();
        if let Some(task) = &entry.task {
            match task.wake.try_send(()) {
                // A full channel already holds a wake the task has yet to see.
                Ok(()) | Err(mpsc::error::TrySendError::Full(())) => return,
                Err(mpsc::error::TrySendError::Closed(())) => {}
            }
        }
        let (wake, woken) = mpsc::channel(1);
        let (handoff, handoff_bytes, handed_off) =
            HandoffReceiver::channel(HANDOFF_CAPACITY, self.shared.handoff_bytes_all.clone());
        let replaced = entry.task.replace(DomainTask {
            wake,
            handoff,
            handoff_bytes,
            generation,
        });
        for link in entry.links.values_mut() {
            link.open = false;
        }
        ledger.next_generation += 1;
        if replaced.is_none() {
            ledger.tasks += 1;
        }
        self.shared.running.send_replace(ledger.tasks);
        let worker = DomainWorker::new(
            self.shared.clone(),
            domain.to_string(),
            generation,
            handed_off,
        );
        tokio::spawn(worker.run(woken));
    }
}

impl Shared {
    fn lock_ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        // The ledger stays consistent under every panic point, so a poisoned lock is still usable.
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Removes `domain`'s task from `ledger` if it is still `generation`'s; its links are no
    /// longer open.
    fn forget_task(&self, ledger: &mut Ledger, domain: &str, generation: u64) {
        let Some(entry) = ledger.domains.get_mut(domain) else {
            return;
        };
        if entry
            .task
            .as_ref()
            .is_none_or(|task| task.generation != generation)
        {
            return;
        }
        entry.task = None;
        for link in entry.links.values_mut() {
            link.open = false;
            link.requeuing = false;
        }
        if entry.stanzas == 0 {
            ledger.domains.remove(domain);
        }
        ledger.tasks = ledger.tasks.saturating_sub(1);
        self.running.send_replace(ledger.tasks);
    }
}

/// The domain part of a JID as stored (the sender), or the whole string if it does not parse.
fn domain_of(jid: &str) -> String {
    match Jid::new(jid) {
        Ok(jid) => jid.domain().as_str().to_string(),
        Err(_) => jid.to_string(),
    }
}

/// Whether `stanza` is `type='error'` (RFC 6120 section 8.3.1: never answered with an error),
/// whether it carries its namespace or inherits `jabber:server` from the stream.
fn is_error_stanza(stanza: &str) -> bool {
    let element = stanza.parse::<Element>().ok().or_else(|| {
        format!("<stanza xmlns='jabber:server'>{stanza}</stanza>")
            .parse::<Element>()
            .ok()
            .and_then(|wrapper| wrapper.children().next().cloned())
    });
    element.is_some_and(|element| element.attr("type") == Some("error"))
}

fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
