//! A session's mailbox: the bounded queue the router fills and the session task drains.
//!
//! Hand-rolled rather than `tokio::sync::mpsc` because every bound session owns one and most of them sit
//! idle: a tokio channel allocates about 1 KiB up front (a shared state padded to 128-byte cache lines and a
//! first block of 32 slots), while this one is a single ~100-byte allocation that holds no slot storage while
//! the queue is empty. The lock is held only to push or pop, never across an `.await`.

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
    queue: VecDeque<T>,
    capacity: usize,
    /// The receiver's waker while it waits on an empty queue.
    waker: Option<Waker>,
    senders: usize,
    is_receiver_gone: bool,
}

/// A mailbox holding at most `capacity` items.
pub fn mailbox<T>(capacity: usize) -> (MailboxSender<T>, Mailbox<T>) {
    let shared = Arc::new(Mutex::new(State {
        queue: VecDeque::new(),
        capacity,
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
    /// Queues `item` without waiting. Returns it back if the receiver is gone or the mailbox is full.
    pub fn try_send(&self, item: T) -> Result<(), T> {
        let waker = {
            let mut state = lock(&self.shared);
            if state.is_receiver_gone || state.queue.len() >= state.capacity {
                return Err(item);
            }
            state.queue.push_back(item);
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
            state.queue.push_front(item);
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

    /// The next item if one is queued.
    pub fn try_recv(&mut self) -> Option<T> {
        lock(&self.shared).pop()
    }
}

impl<T> State<T> {
    fn pop(&mut self) -> Option<T> {
        let item = self.queue.pop_front();
        // A drained queue gives its storage back: a session that once received a burst should not keep
        // paying for it while idle.
        if self.queue.is_empty() && self.queue.capacity() > 0 {
            self.queue = VecDeque::new();
        }
        item
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
        let (tx, mut rx) = mailbox(2);
        assert!(tx.try_send(1).is_ok());
        assert!(tx.try_send(2).is_ok());
        assert_eq!(tx.try_send(3), Err(3), "full");
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.try_recv(), Some(2));
        assert_eq!(rx.try_recv(), None);
        assert!(tx.try_send(4).is_ok(), "room again once drained");
        assert_eq!(rx.recv().await, Some(4));
    }

    #[tokio::test]
    async fn wakes_a_waiting_receiver_and_ends_when_every_sender_is_gone() {
        let (tx, mut rx) = mailbox::<u32>(8);
        let second = tx.clone();
        let waiter = tokio::spawn(async move {
            let first = rx.recv().await;
            let after = rx.recv().await;
            (first, after)
        });
        tokio::task::yield_now().await;
        assert!(second.try_send(7).is_ok());
        drop(second);
        drop(tx);
        assert_eq!(waiter.await.unwrap(), (Some(7), None));
    }

    #[tokio::test]
    async fn send_first_overtakes_a_full_queue() {
        let (tx, mut rx) = mailbox(1);
        assert!(tx.try_send(1).is_ok());
        assert!(tx.send_first(0).is_ok(), "ignores the bound");
        assert_eq!(rx.recv().await, Some(0));
        assert_eq!(rx.recv().await, Some(1));
    }

    #[test]
    fn refuses_once_the_receiver_is_gone() {
        let (tx, rx) = mailbox(8);
        drop(rx);
        assert_eq!(tx.try_send(1), Err(1));
    }

    #[tokio::test]
    async fn cancelled_recv_loses_nothing() {
        let (tx, mut rx) = mailbox(8);
        let timed_out = tokio::time::timeout(std::time::Duration::from_millis(5), rx.recv()).await;
        assert!(timed_out.is_err());
        assert!(tx.try_send("kept").is_ok());
        assert_eq!(rx.recv().await, Some("kept"));
    }
}
