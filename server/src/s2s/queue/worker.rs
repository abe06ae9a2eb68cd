//! The task of one remote domain (see `queue.rs`): writes handed-off stanzas to their links as they
//! come, and sweeps storage, oldest first, for the links that have stanzas waiting there; dials,
//! backs off, bounces what waited too long, closes idle streams, and puts handed-off stanzas whose
//! link failed back in storage.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::error::Elapsed;
use tokio::time::{Instant, sleep_until, timeout};

use super::ledger::{Handoff, HandoffReceiver};
use super::{DialError, Link, LinkError, Shared, domain_of, duration_ms, is_error_stanza};
use crate::xmpp::DefinedCondition;
use herald_storage::StorageError;

/// Handed-off stanzas of one link written together (one write, one flush).
const MAX_BATCH_STANZAS: usize = 64;
/// ... and at most about this many bytes of them.
const MAX_BATCH_BYTES: usize = 64 * 1024;

/// An open stream to the remote domain from one of our domains.
struct OpenLink {
    link: Box<dyn Link>,
    /// At least one stanza went through: a later failure means the stream was lost (redial at
    /// once), not that the peer refuses us (back off). Also: the ledger says the link is open.
    proven: bool,
    last_write: Instant,
}

/// How writing over a local domain's link went.
enum Written {
    Yes,
    /// A proven stream broke: dial again at once.
    LinkLost,
    /// Dialing or a fresh stream failed: this link backs off.
    Failed(String),
    /// The domain has no server: bounce everything.
    NotFound,
}

/// What woke an idle task.
enum Event {
    HandedOff(Option<Handoff>),
    Woken(bool),
    Deadline,
}

/// The retry state of one (local domain, remote domain) link.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    failures: u32,
    retry_at: Instant,
}

/// The task of one remote domain.
pub(super) struct DomainWorker {
    shared: Arc<Shared>,
    domain: String,
    generation: u64,
    handoff: HandoffReceiver,
    /// By local domain (the domain of the stanza's sender).
    links: HashMap<String, OpenLink>,
    /// By local domain: the links that failed and when each is tried again.
    backoff: HashMap<String, Backoff>,
    /// Consecutive failures to read or update storage, and when it is tried again.
    storage_failures: u32,
    storage_retry_at: Option<Instant>,
    /// Something may be in storage for a link that can send: sweep before waiting.
    sweep_due: bool,
    /// Handed-off stanzas being written (one link's, in order).
    in_flight: Vec<Handoff>,
    /// Handed-off stanzas taken from the channel but not yet written, in order.
    pending: VecDeque<Handoff>,
    /// Handed-off stanzas going back to storage, in order.
    requeue: VecDeque<Handoff>,
}

impl DomainWorker {
    pub(super) fn new(
        shared: Arc<Shared>,
        domain: String,
        generation: u64,
        handoff: HandoffReceiver,
    ) -> Self {
        Self {
            shared,
            domain,
            generation,
            handoff,
            links: HashMap::new(),
            backoff: HashMap::new(),
            storage_failures: 0,
            storage_retry_at: None,
            sweep_due: true,
            in_flight: Vec::new(),
            pending: VecDeque::new(),
            requeue: VecDeque::new(),
        }
    }

    pub(super) async fn run(mut self, mut woken: mpsc::Receiver<()>) {
        let mut shutdown = self.shared.shutdown.clone();
        tokio::select! {
            biased;
            () = shutdown.wait() => {}
            () = self.work(&mut woken) => {}
        }
        self.put_back_everything().await;
        self.close_links().await;
    }

    async fn work(&mut self, woken: &mut mpsc::Receiver<()>) {
        loop {
            // Handed-off stanzas first: each is older than anything of its link in storage.
            if let Some(item) = self.next_handed_off() {
                self.deliver(item).await;
                continue;
            }
            if std::mem::take(&mut self.sweep_due) {
                let targets = self.sweepable(Instant::now());
                if !targets.is_empty() {
                    self.sweep(targets).await;
                    continue;
                }
            }
            if self.links.is_empty() && !self.has_stored() {
                if self.exit_unless_woken(woken) {
                    return;
                }
                self.sweep_due = true;
                continue;
            }
            let deadline = self.next_deadline();
            let event = tokio::select! {
                biased;
                item = self.handoff.recv() => Event::HandedOff(item),
                wake = woken.recv() => Event::Woken(wake.is_some()),
                () = sleep_until_or_never(deadline) => Event::Deadline,
            };
            match event {
                Event::HandedOff(Some(item)) => self.deliver(item).await,
                Event::Woken(true) => self.sweep_due = true,
                Event::Deadline => self.deadline_passed().await,
                // The senders live in the ledger as long as this task is registered there:
                // gone, the task has been replaced.
                Event::HandedOff(None) | Event::Woken(false) => return,
            }
        }
    }

    fn next_handed_off(&mut self) -> Option<Handoff> {
        self.pending
            .pop_front()
            .or_else(|| self.handoff.try_recv().ok())
    }

    fn has_stored(&self) -> bool {
        self.shared
            .lock_ledger()
            .domains
            .get(&self.domain)
            .is_some_and(|entry| entry.stanzas > 0)
    }

    /// The links with stanzas in storage that may send now, and how many each has there.
    fn sweepable(&self, now: Instant) -> HashMap<String, usize> {
        if self.storage_retry_at.is_some_and(|at| at > now) {
            return HashMap::new();
        }
        let ledger = self.shared.lock_ledger();
        let Some(entry) = ledger.domains.get(&self.domain) else {
            return HashMap::new();
        };
        entry
            .links
            .iter()
            .filter(|(link, state)| {
                state.committed > 0
                    && self
                        .backoff
                        .get(*link)
                        .is_none_or(|backoff| backoff.retry_at <= now)
            })
            .map(|(link, state)| (link.clone(), state.committed))
            .collect()
    }

    /// Ends the task unless a submit woke it meanwhile: checked and forgotten under the lock
    /// `wake` takes, so a stanza stored now either sees this task or starts a new one. Nothing can
    /// be handed off to a task without open links, so nothing is left behind.
    fn exit_unless_woken(&self, woken: &mut mpsc::Receiver<()>) -> bool {
        let mut ledger = self.shared.lock_ledger();
        if woken.try_recv().is_ok() {
            return false;
        }
        self.shared
            .forget_task(&mut ledger, &self.domain, self.generation);
        true
    }

    /// Writes `first` and the handed-off stanzas of its link right behind it, in one write; on
    /// failure they go back to storage.
    async fn deliver(&mut self, first: Handoff) {
        let link = first.link.clone();
        let mut bytes = first.stanza.len();
        self.in_flight.push(first);
        while self.in_flight.len() < MAX_BATCH_STANZAS && bytes < MAX_BATCH_BYTES {
            let next = match self.pending.front() {
                Some(front) if front.link == link => self.pending.pop_front(),
                Some(_) => None,
                None => match self.handoff.try_recv() {
                    Ok(item) if item.link == link => Some(item),
                    Ok(other) => {
                        self.pending.push_back(other);
                        None
                    }
                    Err(_) => None,
                },
            };
            let Some(next) = next else {
                break;
            };
            bytes += next.stanza.len();
            self.in_flight.push(next);
        }
        // Taken out while in use: a write cancelled halfway leaves no half-written stream behind.
        let Some(mut open) = self.links.remove(&link) else {
            // Handed off as the link closed: back to storage, for the next stream.
            self.link_down(&link).await;
            self.sweep_due = true;
            return;
        };
        let joined;
        let text = match self.in_flight.as_slice() {
            [only] => only.stanza.as_str(),
            several => {
                joined = several
                    .iter()
                    .map(|item| item.stanza.as_str())
                    .collect::<String>();
                joined.as_str()
            }
        };
        let send_timeout = self.shared.settings.send_timeout;
        match timeout(send_timeout, open.link.send(text)).await {
            Ok(Ok(())) => {
                self.in_flight.clear();
                open.last_write = Instant::now();
                self.links.insert(link, open);
            }
            outcome => {
                let reason = failure_reason(outcome);
                tracing::debug!(local = %link, domain = %self.domain, %reason, "s2s link dropped");
                if open.proven {
                    self.sweep_due = true;
                } else {
                    self.failed(&link, &reason);
                }
                self.link_down(&link).await;
            }
        }
    }

    /// The link is no longer open: closes its hand-off and puts what it held (and what was being
    /// written over it) back in storage, ahead of anything submitted for it from now on.
    async fn link_down(&mut self, link: &str) {
        {
            let mut ledger = self.shared.lock_ledger();
            let entry = ledger.domains.entry(self.domain.clone()).or_default();
            let state = entry.link_mut(link);
            state.open = false;
            state.requeuing = true;
        }
        // Nothing more is handed off for the link now; what was is in the channel or taken out.
        while let Ok(item) = self.handoff.try_recv() {
            self.pending.push_back(item);
        }
        self.requeue.extend(self.in_flight.drain(..));
        let (mine, others): (VecDeque<_>, VecDeque<_>) =
            self.pending.drain(..).partition(|item| item.link == link);
        self.pending = others;
        self.requeue.extend(mine);
        if !self.requeue.is_empty() {
            self.sweep_due = true;
        }
        self.put_back().await;
        {
            let mut ledger = self.shared.lock_ledger();
            if let Some(entry) = ledger.domains.get_mut(&self.domain) {
                entry.link_mut(link).requeuing = false;
            }
        }
        self.shared.requeued.notify_waiters();
    }

    /// Stores [`Self::requeue`] in order; what cannot be stored bounces rather than vanish.
    async fn put_back(&mut self) {
        while let Some(item) = self.requeue.front() {
            let stored = self
                .shared
                .store
                .append(
                    &self.domain,
                    &item.sender,
                    &item.stanza,
                    item.enqueued_at_ms,
                )
                .await;
            let mut ledger = self.shared.lock_ledger();
            match stored {
                Ok(_) => {
                    let entry = ledger.domains.entry(self.domain.clone()).or_default();
                    entry.reserve(&item.link, item.stanza.len());
                    entry.commit(&item.link, item.enqueued_at_ms);
                }
                Err(error) => {
                    drop(ledger);
                    tracing::warn!(domain = %self.domain, %error, "handed-off s2s stanza not stored; bounced");
                    if !is_error_stanza(&item.stanza) {
                        self.shared
                            .bounces
                            .bounce(&item.stanza, DefinedCondition::InternalServerError);
                    }
                }
            }
            self.requeue.pop_front();
        }
    }

    /// At the end (shutdown): the links close to hand-offs, and every handed-off stanza not written
    /// goes back to storage for the next start.
    async fn put_back_everything(&mut self) {
        {
            let mut ledger = self.shared.lock_ledger();
            if let Some(entry) = ledger.domains.get_mut(&self.domain)
                && entry
                    .task
                    .as_ref()
                    .is_some_and(|task| task.generation == self.generation)
            {
                for state in entry.links.values_mut() {
                    state.open = false;
                }
            }
        }
        while let Ok(item) = self.handoff.try_recv() {
            self.pending.push_back(item);
        }
        // Per link the order holds: requeue, then in flight, then pending.
        self.requeue.extend(self.in_flight.drain(..));
        self.requeue.extend(self.pending.drain(..));
        if self.requeue.is_empty() {
            return;
        }
        let links: HashSet<String> = self.requeue.iter().map(|item| item.link.clone()).collect();
        self.set_requeuing(&links, true);
        self.put_back().await;
        self.set_requeuing(&links, false);
        self.shared.requeued.notify_waiters();
    }

    fn set_requeuing(&self, links: &HashSet<String>, requeuing: bool) {
        let mut ledger = self.shared.lock_ledger();
        if let Some(entry) = ledger.domains.get_mut(&self.domain) {
            for link in links {
                entry.link_mut(link).requeuing = requeuing;
            }
        }
    }

    /// One pass over storage, oldest first, page by page, for the links in `targets` (with how
    /// many stanzas each has there): each stanza goes over its link unless that link failed during
    /// this pass (then its later stanzas wait too, keeping its order). What was written is removed.
    /// Stops reading once every target's stanzas were seen.
    async fn sweep(&mut self, mut targets: HashMap<String, usize>) {
        let batch_size = self.shared.settings.batch_size.max(1);
        let mut held: HashSet<String> = HashSet::new();
        let mut after_id = None;
        loop {
            if targets.values().all(|left| *left == 0) {
                break;
            }
            let page = match self
                .shared
                .store
                .oldest(&self.domain, after_id, batch_size)
                .await
            {
                Ok(page) => page,
                Err(error) => {
                    self.storage_failed(&error);
                    return;
                }
            };
            let Some(last) = page.last() else {
                break;
            };
            after_id = Some(last.id);
            let mut written = Vec::with_capacity(page.len());
            let mut not_found = false;
            for queued in page {
                let link = domain_of(&queued.sender).to_ascii_lowercase();
                let Some(left) = targets.get_mut(&link) else {
                    continue;
                };
                if held.contains(&link) {
                    continue;
                }
                *left = left.saturating_sub(1);
                match self.write(&link, &queued.stanza).await {
                    Written::Yes => {
                        self.backoff.remove(&link);
                        written.push((queued.id, link, queued.stanza.len()));
                    }
                    Written::LinkLost => {
                        self.sweep_due = true;
                        self.link_down(&link).await;
                        held.insert(link);
                    }
                    Written::Failed(reason) => {
                        self.failed(&link, &reason);
                        self.link_down(&link).await;
                        held.insert(link);
                    }
                    Written::NotFound => {
                        not_found = true;
                        break;
                    }
                }
            }
            self.remove_written(written).await;
            if not_found {
                self.backoff.clear();
                self.bounce_enqueued_before(i64::MAX, DefinedCondition::RemoteServerNotFound)
                    .await;
                return;
            }
        }
        self.storage_failures = 0;
    }

    /// Removes written stanzas from storage and from the counts.
    async fn remove_written(&mut self, written: Vec<(i64, String, usize)>) {
        if written.is_empty() {
            return;
        }
        let ids: Vec<i64> = written.iter().map(|(id, _, _)| *id).collect();
        if let Err(error) = self.shared.store.remove(&self.domain, &ids).await {
            // They stay queued (and counted) and are sent again: a duplicate rather than a loss.
            tracing::warn!(domain = %self.domain, %error, "written s2s stanzas not removed");
            self.storage_failed(&error);
            return;
        }
        let mut ledger = self.shared.lock_ledger();
        let entry = ledger.domains.entry(self.domain.clone()).or_default();
        for (_, link, bytes) in &written {
            entry.removed(link, *bytes);
        }
    }

    fn storage_failed(&mut self, error: &StorageError) {
        tracing::warn!(domain = %self.domain, %error, "s2s queue storage failed");
        self.storage_failures = self.storage_failures.saturating_add(1);
        let delay = self
            .shared
            .settings
            .retry
            .random_delay(self.storage_failures);
        self.storage_retry_at = Some(Instant::now() + delay);
    }

    /// Counts a failure of `link` and returns when it is tried again.
    fn failed(&mut self, link: &str, reason: &str) -> Instant {
        let failures = self
            .backoff
            .get(link)
            .map_or(0, |backoff| backoff.failures)
            .saturating_add(1);
        let retry_at = Instant::now() + self.shared.settings.retry.random_delay(failures);
        tracing::info!(local = %link, domain = %self.domain, failures, %reason,
            "s2s peer not reachable, retrying");
        self.backoff
            .insert(link.to_string(), Backoff { failures, retry_at });
        retry_at
    }

    /// Writes one stored stanza over `link`'s stream, dialing one if none is open.
    async fn write(&mut self, link: &str, stanza: &str) -> Written {
        // Taken out while in use: a write cancelled halfway leaves no half-written stream
        // behind to be reused or politely closed.
        let mut open = match self.links.remove(link) {
            Some(open) => open,
            None => match self.dial(link).await {
                Ok(stream) => OpenLink {
                    link: stream,
                    proven: false,
                    last_write: Instant::now(),
                },
                Err(DialError::NotFound) => return Written::NotFound,
                Err(error) => return Written::Failed(error.to_string()),
            },
        };
        let send_timeout = self.shared.settings.send_timeout;
        match timeout(send_timeout, open.link.send(stanza)).await {
            Ok(Ok(())) => {
                if !open.proven {
                    open.proven = true;
                    // From now on stanzas for the link may be handed off (once none wait).
                    let mut ledger = self.shared.lock_ledger();
                    let entry = ledger.domains.entry(self.domain.clone()).or_default();
                    entry.link_mut(link).open = true;
                }
                open.last_write = Instant::now();
                self.links.insert(link.to_string(), open);
                Written::Yes
            }
            outcome => {
                let reason = failure_reason(outcome);
                tracing::debug!(local = %link, domain = %self.domain, %reason, "s2s link dropped");
                if open.proven {
                    Written::LinkLost
                } else {
                    Written::Failed(reason)
                }
            }
        }
    }

    async fn dial(&mut self, link: &str) -> Result<Box<dyn Link>, DialError> {
        let settings = &self.shared.settings;
        match timeout(
            settings.dial_timeout,
            self.shared.dialer.dial(link, &self.domain),
        )
        .await
        {
            Ok(outcome) => outcome,
            Err(_) => Err(DialError::Unreachable("dial timed out".to_string())),
        }
    }

    /// The next moment something is due: a backoff ends for a link with stanzas stored, storage
    /// is tried again, a stored stanza reaches its queue timeout, an idle stream is to close.
    fn next_deadline(&self) -> Option<Instant> {
        let now = Instant::now();
        let mut deadline = self.storage_retry_at;
        let ledger = self.shared.lock_ledger();
        let entry = ledger.domains.get(&self.domain);
        for (link, backoff) in &self.backoff {
            let stored = entry.is_some_and(|entry| entry.committed(link) > 0);
            if stored && backoff.retry_at > now {
                deadline = earliest(deadline, backoff.retry_at);
            }
        }
        if let Some(oldest_ms) = entry.and_then(|entry| entry.oldest_ms) {
            deadline = earliest(deadline, self.expiry(oldest_ms));
        }
        let idle_timeout = self.shared.settings.idle_timeout;
        for open in self.links.values() {
            deadline = earliest(deadline, open.last_write + idle_timeout);
        }
        deadline
    }

    /// When a stanza enqueued at `enqueued_at_ms` has waited the queue timeout
    /// (`take_enqueued_before` is strict: one millisecond past it).
    fn expiry(&self, enqueued_at_ms: i64) -> Instant {
        let expires_in_ms = self.expires_in_ms(enqueued_at_ms).max(0);
        Instant::now() + Duration::from_millis(expires_in_ms.unsigned_abs())
    }

    /// Milliseconds until a stanza enqueued at `enqueued_at_ms` expires; zero or less: it has.
    fn expires_in_ms(&self, enqueued_at_ms: i64) -> i64 {
        let timeout_ms = duration_ms(self.shared.settings.queue_timeout);
        enqueued_at_ms
            .saturating_add(timeout_ms)
            .saturating_add(1)
            .saturating_sub(self.shared.clock.now_ms())
    }

    async fn deadline_passed(&mut self) {
        let now = Instant::now();
        if self.storage_retry_at.is_some_and(|at| at <= now) {
            self.storage_retry_at = None;
            self.sweep_due = true;
        }
        if self.backoff.values().any(|backoff| backoff.retry_at <= now) {
            self.sweep_due = true;
        }
        let oldest_ms = self
            .shared
            .lock_ledger()
            .domains
            .get(&self.domain)
            .and_then(|entry| entry.oldest_ms);
        if oldest_ms.is_some_and(|oldest_ms| self.expires_in_ms(oldest_ms) <= 0) {
            self.bounce_expired().await;
        }
        let idle_timeout = self.shared.settings.idle_timeout;
        let idle: Vec<String> = self
            .links
            .iter()
            .filter(|(_, open)| open.last_write + idle_timeout <= now)
            .map(|(link, _)| link.clone())
            .collect();
        for link in idle {
            self.close_link(&link).await;
        }
    }

    /// Bounces what waited the queue timeout, then learns the oldest stanza left.
    async fn bounce_expired(&mut self) {
        let timeout_ms = duration_ms(self.shared.settings.queue_timeout);
        let cutoff = self.shared.clock.now_ms().saturating_sub(timeout_ms);
        self.bounce_enqueued_before(cutoff, DefinedCondition::RemoteServerTimeout)
            .await;
        let now_ms = self.shared.clock.now_ms();
        let oldest = match self.shared.store.oldest(&self.domain, None, 1).await {
            // By id: a stanza put back after a failed link may be older; it bounces a little late.
            Ok(oldest) => oldest.first().map(|queued| queued.enqueued_at_ms),
            Err(error) => {
                self.storage_failed(&error);
                None
            }
        };
        let mut ledger = self.shared.lock_ledger();
        if let Some(entry) = ledger.domains.get_mut(&self.domain)
            && entry.stanzas > 0
        {
            // Nothing readable yet (an insert under way, or storage failing): look again then.
            entry.oldest_ms = Some(oldest.unwrap_or(now_ms));
        }
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
                self.storage_failed(&error);
                return;
            }
        };
        {
            let mut ledger = self.shared.lock_ledger();
            let entry = ledger.domains.entry(self.domain.clone()).or_default();
            for queued in &taken {
                let link = domain_of(&queued.sender).to_ascii_lowercase();
                entry.removed(&link, queued.stanza.len());
            }
        }
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

    /// Closes an idle link; anything handed off to it meanwhile goes back to storage.
    async fn close_link(&mut self, link: &str) {
        let Some(open) = self.links.remove(link) else {
            return;
        };
        self.link_down(link).await;
        let _ = timeout(self.shared.settings.send_timeout, open.link.close()).await;
    }

    async fn close_links(&mut self) {
        let send_timeout = self.shared.settings.send_timeout;
        for (_, open) in self.links.drain() {
            let _ = timeout(send_timeout, open.link.close()).await;
        }
    }
}

impl Drop for DomainWorker {
    /// However the task ends (a panic included): its links are no longer open, a later submit
    /// starts a new task, and `stopped` still resolves. Handed-off stanzas it could not put back
    /// (only when it panicked or its runtime stopped) bounce rather than vanish.
    fn drop(&mut self) {
        let mut leftovers: Vec<Handoff> = self.requeue.drain(..).collect();
        leftovers.append(&mut self.in_flight);
        leftovers.extend(self.pending.drain(..));
        while let Ok(item) = self.handoff.try_recv() {
            leftovers.push(item);
        }
        if !leftovers.is_empty() {
            tracing::error!(domain = %self.domain, count = leftovers.len(),
                "s2s task ended with handed-off stanzas unwritten; bouncing them");
        }
        for item in leftovers {
            if !is_error_stanza(&item.stanza) {
                self.shared
                    .bounces
                    .bounce(&item.stanza, DefinedCondition::InternalServerError);
            }
        }
        let mut ledger = self.shared.lock_ledger();
        self.shared
            .forget_task(&mut ledger, &self.domain, self.generation);
        drop(ledger);
        self.shared.requeued.notify_waiters();
    }
}

fn failure_reason(outcome: Result<Result<(), LinkError>, Elapsed>) -> String {
    match outcome {
        Ok(Err(error)) => error.to_string(),
        Ok(Ok(())) => "no failure".to_string(),
        Err(_) => "write timed out".to_string(),
    }
}

async fn sleep_until_or_never(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The earlier of `current` (if any) and `candidate`.
fn earliest(current: Option<Instant>, candidate: Instant) -> Option<Instant> {
    Some(current.map_or(candidate, |current| current.min(candidate)))
}
