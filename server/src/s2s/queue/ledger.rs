//! What the outbound queue ([`super::OutboundQueue`]) keeps in memory, under one lock: per remote
//! domain its task, and per (local domain, remote domain) link how many of its stanzas wait in
//! storage and whether its stream takes stanzas straight away. Submits decide from it whether a
//! stanza goes to the stream (the hand-off) or to storage without reading storage (so a submit
//! costs one insert at most however long the queue is), and it keeps the per-domain cap.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;

/// A stanza handed to its domain's task in memory, never stored unless its link fails first.
#[derive(Debug)]
pub(super) struct Handoff {
    /// The link's local domain, lowercase.
    pub(super) link: String,
    pub(super) sender: String,
    pub(super) stanza: String,
    /// When it was submitted (kept if it goes back to storage, so its queue timeout still counts).
    pub(super) enqueued_at_ms: i64,
}

/// Everything the queue keeps in memory.
#[derive(Default)]
pub(super) struct Ledger {
    pub(super) domains: HashMap<String, DomainLedger>,
    pub(super) next_generation: u64,
    /// How many domains have a task (for [`super::OutboundQueue::stopped`]).
    pub(super) tasks: usize,
}

/// One remote domain.
#[derive(Default)]
pub(super) struct DomainLedger {
    pub(super) task: Option<DomainTask>,
    /// By local domain (lowercase).
    pub(super) links: HashMap<String, LinkLedger>,
    /// Stanzas in storage or being stored for the domain, all links together: what the cap
    /// (`[s2s] max_queue_stanzas`) counts.
    pub(super) stanzas: usize,
    /// Their bytes (`[s2s] max_queue_bytes`).
    pub(super) bytes: usize,
    /// No stanza in storage was enqueued before this; it may be earlier than the oldest left (after
    /// removals), never later. `None` when nothing is stored.
    pub(super) oldest_ms: Option<i64>,
}

/// The running task of a domain.
pub(super) struct DomainTask {
    pub(super) wake: mpsc::Sender<()>,
    pub(super) handoff: mpsc::Sender<Handoff>,
    /// Bytes of the stanzas in `handoff`, counted against its own bound and the one all
    /// hand-offs share.
    pub(super) handoff_bytes: HandoffBytes,
    pub(super) generation: u64,
}

/// Byte bounds of the hand-offs (as serialised).
#[derive(Debug, Clone, Copy)]
pub struct HandoffLimits {
    /// What one domain's hand-off may hold.
    pub(crate) per_domain: usize,
    /// What all domains' hand-offs may hold together.
    pub(crate) all: usize,
}

/// The byte counts one hand-off adds to: its own and the one all hand-offs share. Added before a
/// send and taken off by [`HandoffReceiver`] (also for what it still holds when it is dropped), so
/// the shared count never keeps bytes of a hand-off that is gone.
#[derive(Debug, Clone)]
pub(super) struct HandoffBytes {
    own: Arc<AtomicUsize>,
    all: Arc<AtomicUsize>,
}

impl HandoffBytes {
    /// Counts `bytes` if both bounds leave room for them.
    fn try_add(&self, bytes: usize, limits: HandoffLimits) -> bool {
        let own = self.own.fetch_add(bytes, Ordering::AcqRel);
        let all = self.all.fetch_add(bytes, Ordering::AcqRel);
        if own.saturating_add(bytes) > limits.per_domain || all.saturating_add(bytes) > limits.all {
            self.take(bytes);
            return false;
        }
        true
    }

    fn take(&self, bytes: usize) {
        self.own.fetch_sub(bytes, Ordering::AcqRel);
        self.all.fetch_sub(bytes, Ordering::AcqRel);
    }
}

impl DomainTask {
    /// Hands `item` to the task if the hand-off has room for it in stanzas and in `limits`; gives
    /// it back otherwise (or when the task is gone).
    pub(super) fn try_hand_off(&self, item: Handoff, limits: HandoffLimits) -> Result<(), Handoff> {
        let bytes = item.stanza.len();
        // Counted before the send, so the receiver never takes off more than was added.
        if !self.handoff_bytes.try_add(bytes, limits) {
            return Err(item);
        }
        self.handoff.try_send(item).map_err(|error| {
            self.handoff_bytes.take(bytes);
            match error {
                mpsc::error::TrySendError::Full(back) | mpsc::error::TrySendError::Closed(back) => {
                    back
                }
            }
        })
    }
}

/// The task's end of a hand-off: what it takes out no longer counts against the hand-off's bytes.
pub(super) struct HandoffReceiver {
    receiver: mpsc::Receiver<Handoff>,
    bytes: HandoffBytes,
}

impl HandoffReceiver {
    /// A hand-off of `capacity` stanzas whose bytes also count in `all` (shared by every
    /// hand-off): the task's sender (with its byte counts) and receiver.
    pub(super) fn channel(
        capacity: usize,
        all: Arc<AtomicUsize>,
    ) -> (mpsc::Sender<Handoff>, HandoffBytes, Self) {
        let (sender, receiver) = mpsc::channel(capacity);
        let bytes = HandoffBytes {
            own: Arc::new(AtomicUsize::new(0)),
            all,
        };
        let receiver = HandoffReceiver {
            receiver,
            bytes: bytes.clone(),
        };
        (sender, bytes, receiver)
    }

    pub(super) async fn recv(&mut self) -> Option<Handoff> {
        let item = self.receiver.recv().await?;
        Some(self.taken(item))
    }

    pub(super) fn try_recv(&mut self) -> Result<Handoff, mpsc::error::TryRecvError> {
        let item = self.receiver.try_recv()?;
        Ok(self.taken(item))
    }

    fn taken(&self, item: Handoff) -> Handoff {
        self.bytes.take(item.stanza.len());
        item
    }
}

impl Drop for HandoffReceiver {
    /// Whatever is left (a task that ended without draining it) stops counting against the shared
    /// bound; a sender racing with the drop sees the channel closed and stores its stanza.
    fn drop(&mut self) {
        self.receiver.close();
        while let Ok(item) = self.receiver.try_recv() {
            self.bytes.take(item.stanza.len());
        }
    }
}

/// One (local domain, remote domain) link.
#[derive(Debug, Default)]
pub(super) struct LinkLedger {
    /// Its stanzas in storage or being inserted: while there are any, new ones go to storage too,
    /// behind them (the in-order processing of RFC 6120 section 10.1).
    pub(super) stored: usize,
    /// Of those, the ones whose insert finished (a read sees them).
    pub(super) committed: usize,
    /// The domain task has a proven stream for this link and takes its stanzas by hand-off.
    pub(super) open: bool,
    /// The task is putting handed-off stanzas back in storage: submits for the link wait, so
    /// theirs are stored behind them.
    pub(super) requeuing: bool,
}

impl DomainLedger {
    /// The link's entry, created empty.
    pub(super) fn link_mut(&mut self, link: &str) -> &mut LinkLedger {
        if !self.links.contains_key(link) {
            self.links.insert(link.to_string(), LinkLedger::default());
        }
        self.links.get_mut(link).expect("inserted above")
    }

    /// Counts a stanza of `bytes` that is about to be stored for `link`.
    pub(super) fn reserve(&mut self, link: &str, bytes: usize) {
        self.link_mut(link).stored += 1;
        self.stanzas += 1;
        self.bytes += bytes;
    }

    /// A reserved stanza is in storage now, enqueued at `enqueued_at_ms`.
    pub(super) fn commit(&mut self, link: &str, enqueued_at_ms: i64) {
        self.link_mut(link).committed += 1;
        self.oldest_ms = Some(
            self.oldest_ms
                .map_or(enqueued_at_ms, |oldest| oldest.min(enqueued_at_ms)),
        );
    }

    /// A reserved stanza's insert failed.
    pub(super) fn unreserve(&mut self, link: &str, bytes: usize) {
        let entry = self.link_mut(link);
        entry.stored = entry.stored.saturating_sub(1);
        self.forget(bytes);
    }

    /// A stored stanza of `link` was removed from storage (written, or taken to bounce).
    pub(super) fn removed(&mut self, link: &str, bytes: usize) {
        let entry = self.link_mut(link);
        entry.stored = entry.stored.saturating_sub(1);
        entry.committed = entry.committed.saturating_sub(1);
        self.forget(bytes);
    }

    fn forget(&mut self, bytes: usize) {
        self.stanzas = self.stanzas.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(bytes);
        if self.stanzas == 0 {
            self.oldest_ms = None;
        }
    }

    /// How many stanzas of `link` a read of storage finds.
    pub(super) fn committed(&self, link: &str) -> usize {
        self.links.get(link).map_or(0, |entry| entry.committed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_reserve_commit_and_removal() {
        let mut domain = DomainLedger::default();
        domain.reserve("a.test", 10);
        domain.reserve("a.test", 5);
        assert_eq!((domain.stanzas, domain.bytes), (2, 15));
        assert_eq!(
            domain.committed("a.test"),
            0,
            "not readable before the insert"
        );
        domain.commit("a.test", 200);
        domain.commit("a.test", 100);
        assert_eq!(domain.oldest_ms, Some(100));
        domain.unreserve("a.test", 5);
        domain.removed("a.test", 10);
        assert_eq!((domain.stanzas, domain.bytes), (0, 0));
        assert_eq!(domain.oldest_ms, None, "nothing stored");
        assert_eq!(domain.link_mut("a.test").stored, 0);
    }
}
