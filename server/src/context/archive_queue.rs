//! Archiving behind delivery (XEP-0313 section 3): appends are queued in memory and one writer task
//! commits them in batches, one transaction per batch.
//!
//! Why: archiving in the path of delivery, one transaction per append, took the chat benchmark from
//! about 31,000 to 833 messages/s on SQLite and 357 on PostgreSQL (BENCHMARKS.md, "Archiving on the
//! delivery path: measured and reverted"): every message waited for two commits. Here the stanza id
//! (XEP-0359) is made in memory, the message is delivered with it at once, and the commits of many
//! messages share one transaction; the batch grows with the load, so an idle server adds no delay.
//!
//! What this costs and how it is bounded:
//! - A message is delivered before its archive row commits. A query or an account removal first calls
//!   [`ArchiveQueue::sync`], so a client always finds what it was sent; a crash loses at most the
//!   queued rows of messages already delivered (offline messages are stored by the offline store, not
//!   here). Shutdown commits what is queued ([`ArchiveQueue::close`]).
//! - Queued rows hold at most [`QUEUE_BYTES`]; beyond that an append waits up to [`APPEND_WAIT`] for
//!   room and is then given up (logged, delivered without an archive id), so a stalled database slows
//!   senders down a little but never stops message flow (ejabberd#1698 is that failure) and memory
//!   stays bounded.
//! - A batch that fails is retried [`RETRIES`] times with a short pause, then written one row at a time
//!   so that one bad row cannot lose the others.

use std::sync::Arc;
use std::time::Duration;

use herald_storage::{ArchiveAppend, Direction, Storage};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

/// Bytes of queued rows at most (their stanzas plus [`ROW_OVERHEAD`] each).
pub const QUEUE_BYTES: usize = 32 * 1024 * 1024;

/// Counted for each queued row besides its stanza: the owner, contact and id strings and the queue
/// entry.
const ROW_OVERHEAD: usize = 256;

/// Rows committed in one transaction at most.
pub const MAX_BATCH: usize = 512;

/// How long an append waits for room in a full queue before it is given up.
pub const APPEND_WAIT: Duration = Duration::from_secs(2);

/// Retries of a failed batch before it is written row by row.
const RETRIES: u32 = 2;

/// One message to archive, owned, with the id it was delivered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedAppend {
    pub owner: String,
    pub id: String,
    pub contact: String,
    pub at_ms: i64,
    pub direction: Direction,
    pub stanza: String,
}

impl QueuedAppend {
    fn as_append(&self) -> ArchiveAppend<'_> {
        ArchiveAppend {
            owner: &self.owner,
            id: &self.id,
            contact: &self.contact,
            at_ms: self.at_ms,
            direction: self.direction,
            stanza: &self.stanza,
        }
    }
}

/// Why an append was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("the archive queue stayed full for {APPEND_WAIT:?}")]
    Full,
    #[error("the archive queue is closed")]
    Closed,
}

enum Entry {
    Append(QueuedAppend, OwnedSemaphorePermit),
    /// Answered once every entry queued before it is committed (or given up).
    Sync(oneshot::Sender<()>),
}

/// The queue in front of [`herald_storage::Archive`]; cheap to share behind the server context.
#[derive(Debug)]
pub struct ArchiveQueue {
    entries: mpsc::UnboundedSender<Entry>,
    room: Arc<Semaphore>,
}

impl ArchiveQueue {
    /// A queue over `storage` and its writer task (spawned on the current runtime). The writer ends
    /// when [`Self::close`] is called or the queue is dropped, after committing what was queued.
    pub fn new(storage: Storage) -> ArchiveQueue {
        let (entries, queued) = mpsc::unbounded_channel();
        tokio::spawn(write_batches(storage, queued));
        ArchiveQueue {
            entries,
            room: Arc::new(Semaphore::new(QUEUE_BYTES)),
        }
    }

    /// Queues `append`; returns once it is queued, not committed. Waits only while the queue is full
    /// (at most [`APPEND_WAIT`]).
    pub async fn append(&self, append: QueuedAppend) -> Result<(), QueueError> {
        let cost = append.stanza.len().saturating_add(ROW_OVERHEAD);
        // A row larger than the whole queue would never fit; the stanza size limit keeps rows far
        // smaller than this, so such a row is a bug upstream and is refused rather than waited for.
        let cost = u32::try_from(cost.min(QUEUE_BYTES)).map_err(|_| QueueError::Full)?;
        let room = Arc::clone(&self.room);
        let permit = match room.clone().try_acquire_many_owned(cost) {
            Ok(permit) => permit,
            Err(_) => tokio::time::timeout(APPEND_WAIT, room.acquire_many_owned(cost))
                .await
                .map_err(|_| QueueError::Full)?
                .map_err(|_| QueueError::Closed)?,
        };
        self.entries
            .send(Entry::Append(append, permit))
            .map_err(|_| QueueError::Closed)
    }

    /// Waits until every append queued before this call is committed (or given up after retries), so
    /// that a query sees the messages its client was already sent.
    pub async fn sync(&self) {
        let (done, committed) = oneshot::channel();
        if self.entries.send(Entry::Sync(done)).is_ok() {
            let _ = committed.await;
        }
    }

    /// Commits what is queued and stops the writer (at shutdown). Later appends fail with
    /// [`QueueError::Closed`].
    pub async fn close(&self) {
        self.sync().await;
        self.room.close();
    }
}

/// The writer: takes everything queued (up to [`MAX_BATCH`] rows), commits it in one transaction,
/// answers the syncs that were queued behind it, and again, until the queue is dropped.
async fn write_batches(storage: Storage, mut queued: mpsc::UnboundedReceiver<Entry>) {
    let mut rows: Vec<QueuedAppend> = Vec::with_capacity(MAX_BATCH);
    let mut permits: Vec<OwnedSemaphorePermit> = Vec::with_capacity(MAX_BATCH);
    let mut syncs: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(first) = queued.recv().await {
        let mut next = Some(first);
        while let Some(entry) = next.take() {
            match entry {
                Entry::Append(row, permit) => {
                    rows.push(row);
                    permits.push(permit);
                }
                // Rows queued after a sync may join this batch: committing more than asked is fine.
                Entry::Sync(done) => syncs.push(done),
            }
            if rows.len() < MAX_BATCH {
                next = queued.try_recv().ok();
            }
        }
        if !rows.is_empty() {
            commit(&storage, &rows).await;
        }
        rows.clear();
        // Room is given back only once the rows are written, so the bound covers rows in flight too.
        permits.clear();
        for done in syncs.drain(..) {
            let _ = done.send(());
        }
    }
}

/// Commits `rows` in one transaction, retrying; if that keeps failing, row by row, logging each loss.
async fn commit(storage: &Storage, rows: &[QueuedAppend]) {
    let appends: Vec<ArchiveAppend<'_>> = rows.iter().map(QueuedAppend::as_append).collect();
    for attempt in 0..=RETRIES {
        match storage.archive.append_all(&appends).await {
            Ok(_) => return,
            Err(error) => {
                tracing::warn!(%error, rows = rows.len(), attempt, "archiving a batch failed");
                tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
            }
        }
    }
    for append in &appends {
        if let Err(error) = storage.archive.append(append).await {
            tracing::error!(
                %error,
                owner = append.owner,
                id = append.id,
                "archiving a message failed; it was delivered but is not in the archive"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_storage::{ArchivePaging, ArchiveQuery, new_stanza_id};

    fn row(owner: &str, n: usize) -> QueuedAppend {
        QueuedAppend {
            owner: owner.to_string(),
            id: new_stanza_id(),
            contact: "romeo@example.net".into(),
            at_ms: 1_000 + i64::try_from(n).unwrap_or(0),
            direction: Direction::Incoming,
            stanza: format!("<message><body>{n}</body></message>"),
        }
    }

    async fn archived_ids(storage: &Storage, owner: &str) -> Vec<String> {
        let page = storage
            .archive
            .query(
                owner,
                &ArchiveQuery {
                    paging: ArchivePaging::Forward { after: None },
                    max: 250,
                    ..ArchiveQuery::default()
                },
            )
            .await
            .expect("query");
        page.messages.into_iter().map(|m| m.id).collect()
    }

    #[tokio::test]
    async fn a_sync_sees_every_append_queued_before_it_in_order() {
        let storage = Storage::connect("sqlite::memory:").await.expect("storage");
        let queue = ArchiveQueue::new(storage.clone());
        let rows: Vec<QueuedAppend> = (0..200).map(|n| row("alice@example.org", n)).collect();
        for row in &rows {
            queue.append(row.clone()).await.expect("queued");
        }
        queue.sync().await;
        let expected: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        assert_eq!(archived_ids(&storage, "alice@example.org").await, expected);
    }

    #[tokio::test]
    async fn close_commits_what_is_queued_and_refuses_later_appends() {
        let storage = Storage::connect("sqlite::memory:").await.expect("storage");
        let queue = ArchiveQueue::new(storage.clone());
        let first = row("bob@example.org", 0);
        queue.append(first.clone()).await.expect("queued");
        queue.close().await;
        assert_eq!(archived_ids(&storage, "bob@example.org").await, [first.id]);
        assert_eq!(
            queue.append(row("bob@example.org", 1)).await,
            Err(QueueError::Closed)
        );
    }

    #[tokio::test]
    async fn a_row_that_cannot_be_written_loses_only_itself() {
        let storage = Storage::connect("sqlite::memory:").await.expect("storage");
        let queue = ArchiveQueue::new(storage.clone());
        let kept = row("carol@example.org", 0);
        queue.append(kept.clone()).await.expect("queued");
        queue.sync().await;
        // The same id again makes its batch fail (ids are unique per archive); the rows around it
        // are written one by one after the retries.
        let before = row("carol@example.org", 1);
        let after = row("carol@example.org", 2);
        for row in [before.clone(), kept.clone(), after.clone()] {
            queue.append(row).await.expect("queued");
        }
        queue.sync().await;
        assert_eq!(
            archived_ids(&storage, "carol@example.org").await,
            [kept.id, before.id, after.id]
        );
    }
}
