//! Wake-ups handed straight to the outbox's senders. The server's wake-up path (`wake.rs`) claims
//! the entries it has just stored (`PushOutbox::claim_ids`) and passes them here with their devices,
//! instead of notifying the outbox loop, which would then claim them in a round of its own: one
//! database round and one hop between tasks fewer on the way from a stored message to the push
//! service. The entries are claimed (`sending`) before they are handed over, so a process that
//! stops with some still queued here leaves them to `PushOutbox::recover` at its next start, like
//! sends in flight.
//!
//! The queue is bounded: the wake-up path claims only as many entries as there is room for, and
//! leaves the rest pending for the loop's own claims. It is open only while the outbox loop runs
//! (after its start-up recovery, which would otherwise put freshly claimed entries back to pending
//! and have them sent twice).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use herald_storage::relay::{Device, OutboxEntry};
use tokio::sync::mpsc;

/// Entries waiting for a sender at most: one full wake-up batch.
pub(crate) const CAPACITY: usize = crate::wake::MAX_WAKE_BATCH;

/// A claimed entry and its device (`None` when it was removed meanwhile).
pub(crate) struct Claimed {
    pub(crate) entry: OutboxEntry,
    pub(crate) device: Option<Device>,
}

pub(crate) struct Handoff {
    sender: mpsc::Sender<Claimed>,
    receiver: Mutex<Option<mpsc::Receiver<Claimed>>>,
    open: AtomicBool,
}

impl Handoff {
    pub(crate) fn new() -> Handoff {
        let (sender, receiver) = mpsc::channel(CAPACITY);
        Handoff {
            sender,
            receiver: Mutex::new(Some(receiver)),
            open: AtomicBool::new(false),
        }
    }

    /// How many entries the wake-up path may claim and hand over now: 0 unless the loop runs.
    pub(crate) fn room(&self) -> usize {
        if self.open.load(Ordering::Acquire) {
            self.sender.capacity()
        } else {
            0
        }
    }

    /// Queues a claimed entry for the senders. Errors with the entry's id if there is no room or no
    /// loop (the caller must then return it to pending).
    pub(crate) fn hand_over(&self, claimed: Claimed) -> Result<(), i64> {
        let id = claimed.entry.id;
        if !self.open.load(Ordering::Acquire) {
            return Err(id);
        }
        self.sender.try_send(claimed).map_err(|_| id)
    }

    /// The receiving end, for the outbox loop; `None` if a loop already took it.
    pub(crate) fn take_receiver(&self) -> Option<mpsc::Receiver<Claimed>> {
        self.receiver
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Opens (the loop runs, its recovery done) or closes (the loop stopped) the hand-over.
    pub(crate) fn set_open(&self, open: bool) {
        self.open.store(open, Ordering::Release);
    }
}
