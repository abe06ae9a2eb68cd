//! A session's mailbox: the bounded queue the router fills and the session task drains.
//!
//! Hand-rolled rather than `tokio::sync::mpsc` because every bound session owns one and most of them sit
//! idle: a tokio channel allocates about 1 KiB up front (a shared state padded to 128-byte cache lines and a
//! first block of 32 slots), while this one is a single ~100-byte allocation that holds no slot storage while
//! the queue is empty. The lock is held only to push or pop, never across an `.await`.
//!
//! Bounded in entries and in bytes: the sender states what an item costs (for a stanza, its serialised
//! length), so a peer sending few but large stanzas to a session that does not read cannot grow the queue
//! past the byte bound (RFC 6120 section 13.12 asks servers to bound what one entity can make them hold).

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

/// The sending side; cloned into the registry and wherever a session must be reached.
pub struct MailboxSender<T> {
    shared: Arc<Mutex<State<T>>>,
}

/// The receiving side, owned by the session task.
pub struct Mailbox<T> {
    shared: Arc<Mutex<State<T>>>,
}

struct State<T> {
    /// Each item with the bytes it was charged.
    queue: VecDeque<(T, usize)>,
    capacity: usize,
    byte_capacity: usize,
    /// The sum of the charges of the queued items.
    queued_bytes: usize,
    /// The receiver's waker while it waits on an empty queue.
    waker: Option<Waker>,
    senders: usize,
    is_receiver_gone: bool,
}

/// A mailbox holding at most `capacity` items and at most `byte_capacity` bytes of them (as charged by
/// [`MailboxSender::try_send`]), except that an empty mailbox takes any one item, however large.
pub fn mailbox<T>(capacity: usize, byte_capacity: usize) -> (MailboxSender<T>, Mailbox<T>) {
    let shared = Arc::new(Mutex::new(State {
        queue: VecDeque::new(),
        capacity,
        byte_capacity,
        queued_bytes: 0,
        waker: None,
        senders: 1,
        is_receiver_gone: false,
    }));
    (
        MailboxSender {
            shared: shared.clone(),
        },
        Mailbox { shared },
    )
}

fn lock<T>(shared: &Mutex<State<T>>) -> MutexGuard<'_, State<T>> {
    // Every critical section is a single push, pop or counter update, so a panic elsewhere cannot leave
    // the state half-changed: a poisoned lock is still consistent.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T> MailboxSender<T> {
    /// Queues `item`, charged `bytes`, without waiting. Returns it back if the receiver is gone, the mailbox
    /// holds `capacity` items, or the charge would take it past `byte_capacity`. An empty mailbox takes
    /// the item whatever its charge, so that nothing is undeliverable for its size alone (the bound is then
    /// that one item).
    pub fn try_send(&self, item: T, bytes: usize) -> Result<(), T> {
        let waker = {
            let mut state = lock(&self.shared);
            let is_over_bytes = state.queued_bytes > 0
                && state.queued_bytes.saturating_add(bytes) > state.byte_capacity;
            if state.is_receiver_gone || state.queue.len() >= state.capacity || is_over_bytes {
                return Err(item);
            }
            state.queued_bytes += bytes;
            state.queue.push_back((item, bytes));
            state.waker.take()
        };
        // Woken outside the lock so the receiver does not wake up only to block on it.
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Queues `item` ahead of everything queued, even when the mailbox is full: for the rare command that
    /// must overtake a backlog (server shutdown). Returns it back only if the receiver is gone.
    pub fn send_first(&self, item: T) -> Result<(), T> {
        let waker = {
            let mut state = lock(&self.shared);
            if state.is_receiver_gone {
                return Err(item);
            }
            state.queue.push_front((item, 0));
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Queues `item` behind everything queued, even when the mailbox is full: for the commands that end a
    /// session (replaced, account deleted), which must not be lost because the client stopped reading.
    /// They are few and small, and each ends the receiver. Returns `item` back only if the receiver is gone.
    pub fn send_unbounded(&self, item: T) -> Result<(), T> {
        let waker = {
            let mut state = lock(&self.shared);
            if state.is_receiver_gone {
                return Err(item);
            }
            state.queue.push_back((item, 0));
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }
}

impl<T> Clone for MailboxSender<T> {
    fn clone(&self) -> Self {
        lock(&self.shared).senders += 1;
        MailboxSender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for MailboxSender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut state = lock(&self.shared);
            state.senders -= 1;
            if state.senders == 0 {
                state.waker.take()
            } else {
                None
            }
        };
        // The last sender gone: a waiting receiver must learn that nothing more will come.
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> std::fmt::Debug for MailboxSender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailboxSender").finish_non_exhaustive()
    }
}

impl<T> Mailbox<T> {
    /// The next item, waiting for one; `None` once every sender is dropped and the queue is empty.
    ///
    /// Cancel-safe: an item is taken out only in the poll that returns it.
    pub async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| {
            let mut state = lock(&self.shared);
            if let Some(item) = state.pop() {
                return Poll::Ready(Some(item));
            }
            if state.senders == 0 {
                return Poll::Ready(None);
            }
            match &mut state.waker {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }

    /// The first queued item that `is_wanted` accepts, taken out of the queue with the others left in
    /// their order, waiting for one; `None` once every sender is gone and no such item is queued.
    ///
    /// For a session with no connection attached: what it must write waits in the queue, bounded as
    /// ever, while the commands that end it still reach it. Each wake scans the queue, which is bounded.
    /// Cancel-safe like [`Mailbox::recv`].
    pub async fn recv_first(&mut self, is_wanted: impl Fn(&T) -> bool) -> Option<T> {
        poll_fn(|cx| {
            let mut state = lock(&self.shared);
            if let Some(at) = state.queue.iter().position(|(item, _)| is_wanted(item)) {
                return Poll::Ready(state.take(at));
            }
            if state.senders == 0 {
                return Poll::Ready(None);
            }
            match &mut state.waker {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }

    /// The next item if one is queued.
    pub fn try_recv(&mut self) -> Option<T> {
        lock(&self.shared).pop()
    }

    /// Closes the mailbox and returns what was still queued, in order. From then on every send is refused,
    /// so a sender learns the item was not taken and can route it elsewhere; nothing falls in between.
    pub fn close(&mut self) -> Vec<T> {
        let queued = {
            let mut state = lock(&self.shared);
            state.is_receiver_gone = true;
            state.waker = None;
            state.queued_bytes = 0;
            std::mem::take(&mut state.queue)
        };
        queued.into_iter().map(|(item, _)| item).collect()
    }
}

impl<T> State<T> {
    fn pop(&mut self) -> Option<T> {
        self.take(0)
    }

    /// Takes the item at `at` out of the queue.
    fn take(&mut self, at: usize) -> Option<T> {
        let (item, bytes) = self.queue.remove(at)?;
        self.queued_bytes -= bytes;
        // A drained queue gives its storage back: a session that once received a burst should not keep
        // paying for it while idle.
        if self.queue.is_empty() && self.queue.capacity() > 0 {
            self.queue = VecDeque::new();
        }
        Some(item)
    }
}

impl<T> Drop for Mailbox<T> {
    fn drop(&mut self) {
        let queued = {
            let mut state = lock(&self.shared);
            state.is_receiver_gone = true;
            state.waker = None;
            std::mem::take(&mut state.queue)
        };
        // Dropped outside the lock: queued items may be large.
        drop(queued);
    }
}

impl<T> std::fmt::Debug for Mailbox<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn delivers_in_order_and_refuses_when_full() {
        let (tx, mut rx) = mailbox(2, usize::MAX);
        assert!(tx.try_send(1, 1).is_ok());
        assert!(tx.try_send(2, 1).is_ok());
        assert_eq!(tx.try_send(3, 1), Err(3), "full");
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.try_recv(), Some(2));
        assert_eq!(rx.try_recv(), None);
        assert!(tx.try_send(4, 1).is_ok(), "room again once drained");
        assert_eq!(rx.recv().await, Some(4));
    }

    #[tokio::test]
    async fn wakes_a_waiting_receiver_and_ends_when_every_sender_is_gone() {
        let (tx, mut rx) = mailbox::<u32>(8, usize::MAX);
        let second = tx.clone();
        let waiter = tokio::spawn(async move {
            let first = rx.recv().await;
            let after = rx.recv().await;
            (first, after)
        });
        tokio::task::yield_now().await;
        assert!(second.try_send(7, 1).is_ok());
        drop(second);
        drop(tx);
        assert_eq!(waiter.await.unwrap(), (Some(7), None));
    }

    #[tokio::test]
    async fn send_first_overtakes_a_full_queue() {
        let (tx, mut rx) = mailbox(1, usize::MAX);
        assert!(tx.try_send(1, 1).is_ok());
        assert!(tx.send_first(0).is_ok(), "ignores the bound");
        assert_eq!(rx.recv().await, Some(0));
        assert_eq!(rx.recv().await, Some(1));
    }

    #[tokio::test]
    async fn recv_first_takes_what_is_wanted_and_leaves_the_rest_in_order() {
        let (tx, mut rx) = mailbox(3, 10);
        assert!(tx.try_send(1, 4).is_ok());
        assert!(tx.try_send(2, 4).is_ok());
        let waiting = tokio::time::timeout(
            std::time::Duration::from_millis(5),
            rx.recv_first(|item| *item > 2),
        )
        .await;
        assert!(waiting.is_err(), "waits while nothing wanted is queued");
        assert!(tx.try_send(3, 2).is_ok());
        assert_eq!(rx.recv_first(|item| *item > 2).await, Some(3));
        assert!(
            tx.try_send(4, 2).is_ok(),
            "the bytes of what was taken are free"
        );
        assert_eq!(tx.try_send(5, 1), Err(5), "the rest still counts");
        assert_eq!(rx.try_recv(), Some(1));
        assert_eq!(rx.try_recv(), Some(2));
        assert_eq!(rx.try_recv(), Some(4));
        drop(tx);
        assert_eq!(rx.recv_first(|_| true).await, None, "every sender gone");
    }

    #[test]
    fn refuses_once_the_receiver_is_gone() {
        let (tx, rx) = mailbox(8, usize::MAX);
        drop(rx);
        assert_eq!(tx.try_send(1, 1), Err(1));
    }

    #[tokio::test]
    async fn cancelled_recv_loses_nothing() {
        let (tx, mut rx) = mailbox(8, usize::MAX);
        let timed_out = tokio::time::timeout(std::time::Duration::from_millis(5), rx.recv()).await;
        assert!(timed_out.is_err());
        assert!(tx.try_send("kept", 1).is_ok());
        assert_eq!(rx.recv().await, Some("kept"));
    }

    #[tokio::test]
    async fn refuses_past_the_byte_bound_and_takes_again_once_drained() {
        let (tx, mut rx) = mailbox(100, 10);
        assert!(tx.try_send("a", 6).is_ok());
        assert!(tx.try_send("b", 4).is_ok(), "exactly at the bound");
        assert_eq!(tx.try_send("c", 1), Err("c"), "one byte over");
        assert_eq!(rx.recv().await, Some("a"));
        assert!(
            tx.try_send("c", 6).is_ok(),
            "the bytes of what was taken are free again"
        );
        assert_eq!(tx.try_send("d", 1), Err("d"));
    }

    #[test]
    fn an_empty_mailbox_takes_one_item_larger_than_the_byte_bound_and_no_more() {
        let (tx, mut rx) = mailbox(100, 10);
        assert!(tx.try_send("huge", 50).is_ok());
        assert_eq!(tx.try_send("small", 1), Err("small"));
        assert_eq!(rx.try_recv(), Some("huge"));
        assert!(tx.try_send("small", 1).is_ok());
    }

    #[test]
    fn unbounded_sends_pass_a_full_mailbox_in_order() {
        let (tx, mut rx) = mailbox(1, 1);
        assert!(tx.try_send("stanza", 1).is_ok());
        assert_eq!(tx.try_send("more", 1), Err("more"));
        assert!(tx.send_unbounded("end").is_ok());
        assert_eq!(rx.try_recv(), Some("stanza"));
        assert_eq!(rx.try_recv(), Some("end"));
    }

    #[test]
    fn close_hands_back_the_queue_and_refuses_from_then_on() {
        let (tx, mut rx) = mailbox(8, 100);
        assert!(tx.try_send(1, 10).is_ok());
        assert!(tx.try_send(2, 10).is_ok());
        assert_eq!(rx.close(), vec![1, 2]);
        assert_eq!(tx.try_send(3, 1), Err(3));
        assert_eq!(tx.send_unbounded(4), Err(4));
        assert_eq!(rx.try_recv(), None);
    }
}
