//! The durable outbound server-to-server queue (RFC 6120 section 10.4.3 for stanzas to remote
//! domains; sections 8.3.3.15 `remote-server-not-found` and 8.3.3.16 `remote-server-timeout` for
//! the bounces). Stanzas wait in storage ([`S2sQueue`]) while a stream to their domain is
//! established; one task per remote domain dials, writes them oldest first (the in-order
//! processing of RFC 6120 section 10.1), removes what was written, retries with backoff, bounces
//! what waited too long, and closes the stream when it has been idle. Streams, failures and
//! backoff are per (local domain, remote domain) link: one of our domains that cannot reach the
//! peer (a failed dialback for the push service's domain, say) holds back only its own stanzas. A restart loses nothing:
//! [`OutboundQueue::resume`] restarts a task for every domain with stanzas waiting.
//!
//! The streams themselves are behind [`Dialer`] and [`Link`]; bounces go back through
//! [`BounceSink`]. An error stanza is never bounced (RFC 6120 section 8.3.1), so bounces cannot loop.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use herald_storage::{S2sEnqueue, S2sQueue, S2sQueueLimits, StorageError};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until, timeout};

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

struct Shared {
    store: Arc<dyn S2sQueue>,
    dialer: Arc<dyn Dialer>,
    bounces: Arc<dyn BounceSink>,
    settings: QueueSettings,
    clock: QueueClock,
    tasks: Mutex<DomainTasks>,
    /// How many domain tasks run (for [`OutboundQueue::stopped`]).
    running: watch::Sender<usize>,
    shutdown: Shutdown,
}

#[derive(Default)]
struct DomainTasks {
    by_domain: HashMap<String, DomainTask>,
    next_generation: u64,
}

struct DomainTask {
    wake: mpsc::Sender<()>,
    generation: u64,
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

impl OutboundQueue {
    /// A queue over `store`, dialing with `dialer` and bouncing through `bounces`. Its tasks end
    /// when `shutdown` fires (closing their streams); what is still queued stays in storage.
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
                tasks: Mutex::new(DomainTasks::default()),
                running: watch::Sender::new(0),
                shutdown,
            }),
        }
    }

    /// Queues `stanza` (from `sender`, a JID of `local_domain`) for `remote_domain` and wakes that
    /// domain's task. Returns once the stanza is in storage.
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
        let now_ms = shared.clock.now_ms();
        match shared
            .store
            .enqueue(&domain, sender, stanza, now_ms, shared.settings.limits)
            .await?
        {
            S2sEnqueue::Queued(_) => {
                self.wake(&domain);
                Ok(())
            }
            S2sEnqueue::Full => Err(SubmitError::Full(domain)),
        }
    }

    /// Starts a task for every domain with stanzas waiting in storage (call once at start).
    /// Errors: the storage error reading the domains.
    pub async fn resume(&self) -> Result<(), StorageError> {
        for domain in self.shared.store.domains().await? {
            self.wake(&domain);
        }
        Ok(())
    }

    /// Resolves once no domain task runs (all queues drained, or shutdown finished).
    pub async fn stopped(&self) {
        let mut running = self.shared.running.subscribe();
        let _ = running.wait_for(|count| *count == 0).await;
    }

    /// Tells `domain`'s task there is work, starting one if none runs.
    fn wake(&self, domain: &str) {
        if self.shared.shutdown.is_triggered() {
            return;
        }
        let mut tasks = self.shared.lock_tasks();
        if let Some(task) = tasks.by_domain.get(domain) {
            match task.wake.try_send(()) {
                // A full channel already holds a wake the task has yet to see.
                Ok(()) | Err(mpsc::error::TrySendError::Full(())) => return,
                Err(mpsc::error::TrySendError::Closed(())) => {}
            }
        }
        let (wake, woken) = mpsc::channel(1);
        let generation = tasks.next_generation;
        tasks.next_generation += 1;
        tasks
            .by_domain
            .insert(domain.to_string(), DomainTask { wake, generation });
        self.shared.running.send_replace(tasks.by_domain.len());
        let worker = DomainWorker {
            shared: self.shared.clone(),
            domain: domain.to_string(),
            generation,
            links: HashMap::new(),
            backoff: HashMap::new(),
            storage_failures: 0,
        };
        tokio::spawn(worker.run(woken));
    }
}

impl Shared {
    fn lock_tasks(&self) -> std::sync::MutexGuard<'_, DomainTasks> {
        // The map stays consistent under every panic point, so a poisoned lock is still usable.
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Removes `domain`'s task entry if it is still `generation`'s.
    fn forget_task(&self, domain: &str, generation: u64) {
        let mut tasks = self.lock_tasks();
        if tasks
            .by_domain
            .get(domain)
            .is_some_and(|task| task.generation == generation)
        {
            tasks.by_domain.remove(domain);
        }
        self.running.send_replace(tasks.by_domain.len());
    }
}

/// An open stream to the remote domain from one of our domains.
struct OpenLink {
    link: Box<dyn Link>,
    /// At least one stanza went through: a later failure means the stream was lost (redial at
    /// once), not that the peer refuses us (back off).
    proven: bool,
}

/// How writing one stanza over its local domain's link went.
enum Written {
    Yes,
    /// A proven stream broke: dial again at once (after this sweep).
    LinkLost,
    /// Dialing or a fresh stream failed: this link backs off.
    Failed(String),
    /// The domain has no server: bounce everything.
    NotFound,
}

/// What one sweep over the queue came to.
enum Sweep {
    /// Nothing is queued.
    Empty,
    /// The domain has no server: bounce everything.
    NotFound,
    /// Every stanza of a usable link was written. `retry_now`: a proven stream broke, so its
    /// stanzas go over a fresh one at once; `waiting_until`: the earliest retry of a link that
    /// backs off with stanzas waiting.
    Swept {
        retry_now: bool,
        waiting_until: Option<Instant>,
    },
}

/// The retry state of one (local domain, remote domain) link.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    failures: u32,
    retry_at: Instant,
}

/// The task of one remote domain.
struct DomainWorker {
    shared: Arc<Shared>,
    domain: String,
    generation: u64,
    /// By local domain (the domain of the queued stanza's sender).
    links: HashMap<String, OpenLink>,
    /// By local domain: the links that failed and when each is tried again.
    backoff: HashMap<String, Backoff>,
    /// Consecutive failures to read the queue from storage.
    storage_failures: u32,
}

impl DomainWorker {
    async fn run(mut self, mut woken: mpsc::Receiver<()>) {
        // Forgets the task however it ends, a panic included, so a later submit starts a new one
        // and `stopped` still resolves.
        let _forget = ForgetOnDrop {
            shared: self.shared.clone(),
            domain: self.domain.clone(),
            generation: self.generation,
        };
        let mut shutdown = self.shared.shutdown.clone();
        tokio::select! {
            biased;
            () = shutdown.wait() => {}
            () = self.work(&mut woken) => {}
        }
        self.close_links().await;
    }

    async fn work(&mut self, woken: &mut mpsc::Receiver<()>) {
        loop {
            let sweep = match self.sweep().await {
                Ok(sweep) => sweep,
                Err(error) => {
                    tracing::warn!(domain = %self.domain, %error, "s2s queue unreadable");
                    self.storage_failures = self.storage_failures.saturating_add(1);
                    let delay = self
                        .shared
                        .settings
                        .retry
                        .random_delay(self.storage_failures);
                    self.wait_until(Instant::now() + delay, None).await;
                    continue;
                }
            };
            self.storage_failures = 0;
            match sweep {
                Sweep::Empty => {
                    if !self.links.is_empty() && self.idle(woken).await {
                        continue;
                    }
                    self.close_links().await;
                    if self.exit_unless_woken(woken) {
                        return;
                    }
                }
                Sweep::NotFound => {
                    self.backoff.clear();
                    self.bounce_enqueued_before(i64::MAX, DefinedCondition::RemoteServerNotFound)
                        .await;
                }
                Sweep::Swept {
                    retry_now: false,
                    waiting_until: Some(retry_at),
                } => {
                    // A submit wakes the wait: a stanza of another local domain goes out at once.
                    self.wait_until(retry_at, Some(woken)).await;
                }
                Sweep::Swept { .. } => {}
            }
        }
    }

    /// Waits for more work while the streams are open; `false` when they were idle too long.
    async fn idle(&mut self, woken: &mut mpsc::Receiver<()>) -> bool {
        let idle_timeout = self.shared.settings.idle_timeout;
        matches!(timeout(idle_timeout, woken.recv()).await, Ok(Some(())))
    }

    /// Ends the task unless a submit woke it meanwhile: checked and forgotten under the lock
    /// `wake` takes, so a stanza queued now either sees this task or starts a new one.
    fn exit_unless_woken(&self, woken: &mut mpsc::Receiver<()>) -> bool {
        let mut tasks = self.shared.lock_tasks();
        if woken.try_recv().is_ok() {
            return false;
        }
        if tasks
            .by_domain
            .get(&self.domain)
            .is_some_and(|task| task.generation == self.generation)
        {
            tasks.by_domain.remove(&self.domain);
        }
        self.shared.running.send_replace(tasks.by_domain.len());
        true
    }

    /// One pass over everything queued, oldest first, page by page: each stanza goes over its
    /// local domain's link unless that link backs off or failed during this pass (then its later
    /// stanzas wait too, keeping each link's order). What was written is removed.
    ///
    /// Errors: the storage error reading the queue.
    async fn sweep(&mut self) -> Result<Sweep, StorageError> {
        let batch_size = self.shared.settings.batch_size.max(1);
        let started = Instant::now();
        let mut held: HashSet<String> = HashSet::new();
        let mut retry_now = false;
        let mut waiting_until: Option<Instant> = None;
        let mut after_id = None;
        let mut seen_any = false;
        loop {
            let page = self
                .shared
                .store
                .oldest(&self.domain, after_id, batch_size)
                .await?;
            let Some(last) = page.last() else {
                break;
            };
            after_id = Some(last.id);
            seen_any = true;
            let mut written = Vec::with_capacity(page.len());
            let mut not_found = false;
            for queued in page {
                let local_domain = domain_of(&queued.sender).to_ascii_lowercase();
                if held.contains(&local_domain) {
                    continue;
                }
                if let Some(backoff) = self.backoff.get(&local_domain)
                    && backoff.retry_at > started
                {
                    waiting_until = earliest(waiting_until, backoff.retry_at);
                    held.insert(local_domain);
                    continue;
                }
                match self.write(&local_domain, &queued.stanza).await {
                    Written::Yes => {
                        self.backoff.remove(&local_domain);
                        written.push(queued.id);
                    }
                    Written::LinkLost => {
                        retry_now = true;
                        held.insert(local_domain);
                    }
                    Written::Failed(reason) => {
                        let retry_at = self.failed(&local_domain, &reason);
                        waiting_until = earliest(waiting_until, retry_at);
                        held.insert(local_domain);
                    }
                    Written::NotFound => {
                        not_found = true;
                        break;
                    }
                }
            }
            if !written.is_empty()
                && let Err(error) = self.shared.store.remove(&self.domain, &written).await
            {
                // They stay queued and are sent again: a duplicate rather than a loss.
                tracing::warn!(domain = %self.domain, %error, "written s2s stanzas not removed");
            }
            if not_found {
                return Ok(Sweep::NotFound);
            }
        }
        if !seen_any {
            return Ok(Sweep::Empty);
        }
        Ok(Sweep::Swept {
            retry_now,
            waiting_until,
        })
    }

    /// Counts a failure of `local_domain`'s link and returns when it is tried again.
    fn failed(&mut self, local_domain: &str, reason: &str) -> Instant {
        let failures = self
            .backoff
            .get(local_domain)
            .map_or(0, |backoff| backoff.failures)
            .saturating_add(1);
        let retry_at = Instant::now() + self.shared.settings.retry.random_delay(failures);
        tracing::info!(local = %local_domain, domain = %self.domain, failures, %reason,
            "s2s peer not reachable, retrying");
        self.backoff
            .insert(local_domain.to_string(), Backoff { failures, retry_at });
        retry_at
    }

    /// Writes one stanza over `local_domain`'s link, dialing one if none is open.
    async fn write(&mut self, local_domain: &str, stanza: &str) -> Written {
        // Taken out while in use: a write cancelled halfway leaves no half-written stream
        // behind to be reused or politely closed.
        let mut open = match self.links.remove(local_domain) {
            Some(open) => open,
            None => match self.dial(local_domain).await {
                Ok(link) => OpenLink {
                    link,
                    proven: false,
                },
                Err(DialError::NotFound) => return Written::NotFound,
                Err(error) => return Written::Failed(error.to_string()),
            },
        };
        let send_timeout = self.shared.settings.send_timeout;
        match timeout(send_timeout, open.link.send(stanza)).await {
            Ok(Ok(())) => {
                open.proven = true;
                self.links.insert(local_domain.to_string(), open);
                Written::Yes
            }
            outcome => {
                let reason = match outcome {
                    Ok(Err(error)) => error.to_string(),
                    _ => "write timed out".to_string(),
                };
                tracing::debug!(local = %local_domain, domain = %self.domain, %reason, "s2s link dropped");
                if open.proven {
                    Written::LinkLost
                } else {
                    Written::Failed(reason)
                }
            }
        }
    }

    async fn dial(&mut self, local_domain: &str) -> Result<Box<dyn Link>, DialError> {
        let settings = &self.shared.settings;
        match timeout(
            settings.dial_timeout,
            self.shared.dialer.dial(local_domain, &self.domain),
        )
        .await
        {
            Ok(outcome) => outcome,
            Err(_) => Err(DialError::Unreachable("dial timed out".to_string())),
        }
    }

    /// Waits until `retry_at`, bouncing each stanza the moment it has waited the queue timeout.
    /// Returns early when nothing is left to send, or, given `woken`, when a submit wakes the task.
    async fn wait_until(&mut self, retry_at: Instant, mut woken: Option<&mut mpsc::Receiver<()>>) {
        let timeout_ms = duration_ms(self.shared.settings.queue_timeout);
        loop {
            self.bounce_expired().await;
            let oldest = match self.shared.store.oldest(&self.domain, None, 1).await {
                Ok(oldest) => oldest,
                Err(error) => {
                    tracing::warn!(domain = %self.domain, %error, "s2s queue unreadable");
                    sleep_until(retry_at).await;
                    return;
                }
            };
            let Some(oldest) = oldest.first() else {
                return;
            };
            // take_enqueued_before is strict: one millisecond past the timeout.
            let expires_in_ms = oldest
                .enqueued_at_ms
                .saturating_add(timeout_ms)
                .saturating_add(1)
                .saturating_sub(self.shared.clock.now_ms())
                .max(0);
            let expires_at = Instant::now() + Duration::from_millis(expires_in_ms.unsigned_abs());
            let until = retry_at.min(expires_at);
            match woken.as_deref_mut() {
                Some(woken) => {
                    tokio::select! {
                        () = sleep_until(until) => {}
                        wake = woken.recv() => {
                            if wake.is_some() {
                                self.bounce_expired().await;
                                return;
                            }
                            sleep_until(until).await;
                        }
                    }
                }
                None => sleep_until(until).await,
            }
            if Instant::now() >= retry_at {
                self.bounce_expired().await;
                return;
            }
        }
    }

    async fn bounce_expired(&mut self) {
        let timeout_ms = duration_ms(self.shared.settings.queue_timeout);
        let cutoff = self.shared.clock.now_ms().saturating_sub(timeout_ms);
        self.bounce_enqueued_before(cutoff, DefinedCondition::RemoteServerTimeout)
            .await;
    }

    async fn bounce_enqueued_before(&mut self, cutoff_ms: i64, condition: DefinedCondition) {
        let taken = match self
            .shared
            .store
            .take_enqueued_before(&self.domain, cutoff_ms)
            .await
        {
            Ok(taken) => taken,
            Err(error) => {
                tracing::warn!(domain = %self.domain, %error, "s2s stanzas to bounce unreadable");
                return;
            }
        };
        for queued in taken {
            if is_error_stanza(&queued.stanza) {
                tracing::debug!(domain = %self.domain, "undeliverable error stanza dropped");
                continue;
            }
            self.shared
                .bounces
                .bounce(&queued.stanza, condition.clone());
        }
    }

    async fn close_links(&mut self) {
        let send_timeout = self.shared.settings.send_timeout;
        for (_, open) in self.links.drain() {
            let _ = timeout(send_timeout, open.link.close()).await;
        }
    }
}

/// Removes a domain task's entry when the task ends.
struct ForgetOnDrop {
    shared: Arc<Shared>,
    domain: String,
    generation: u64,
}

impl Drop for ForgetOnDrop {
    fn drop(&mut self) {
        self.shared.forget_task(&self.domain, self.generation);
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

/// The earlier of `current` (if any) and `candidate`.
fn earliest(current: Option<Instant>, candidate: Instant) -> Option<Instant> {
    Some(current.map_or(candidate, |current| current.min(candidate)))
}

fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
