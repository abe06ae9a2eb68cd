//! Group commit for small database writes: callers queue a job and wait for its result; one task at a
//! time takes everything queued and writes it with one flush (one transaction, a few statements). The
//! first job goes out at once; jobs arriving while a flush runs form the next batch, so batches grow
//! with the load and an idle relay adds no delay.
//!
//! Why: on SQLite every statement is a round trip to the connection's thread and every write takes the
//! one write lock, so a wake-up written alone (about ten statements) capped the offline-message path
//! at ~700/s with p99 near 500 ms (BENCHMARKS.md); batched, the cost per wake-up falls with the batch.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use herald_storage::{StorageError, StorageResult};
use tokio::sync::oneshot;

/// A database write's answer from a batch: the flush reports one error for the whole batch as text
/// (the same for every job), and `None` (no answer) becomes an error too.
pub(crate) fn storage_answer<T>(answer: Option<Result<T, String>>, what: &str) -> StorageResult<T> {
    match answer {
        Some(Ok(value)) => Ok(value),
        Some(Err(reason)) => Err(StorageError::Database(reason)),
        None => Err(StorageError::Database(format!(
            "the {what} batch ended without an answer"
        ))),
    }
}

/// A queue of jobs of type `J` answered with `R`, flushed by `flush` (see the module comment).
pub(crate) struct Batcher<J, R> {
    state: Mutex<State<J, R>>,
    max_batch: usize,
}

struct State<J, R> {
    queue: Vec<(J, oneshot::Sender<R>)>,
    /// A task is flushing; it takes whatever is queued before it stops.
    flushing: bool,
}

impl<J: Send + 'static, R: Send + 'static> Batcher<J, R> {
    pub(crate) fn new(max_batch: usize) -> Batcher<J, R> {
        Batcher {
            state: Mutex::new(State {
                queue: Vec::new(),
                flushing: false,
            }),
            max_batch: max_batch.max(1),
        }
    }

    /// Queues `job` and waits for its result. `flush` gets the jobs of one batch in order and returns
    /// one result per job, in the same order. `None` if the flush gave no result for this job (it
    /// returned too few, or panicked). The flush runs in its own task, so a caller that stops waiting
    /// does not stop the batch the other callers are waiting for.
    pub(crate) async fn submit<F, Fut>(self: &Arc<Self>, job: J, flush: F) -> Option<R>
    where
        F: FnMut(Vec<J>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<R>> + Send + 'static,
    {
        let (answer, result) = oneshot::channel();
        let lead = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.queue.push((job, answer));
            !std::mem::replace(&mut state.flushing, true)
        };
        if lead {
            let batcher = Arc::clone(self);
            tokio::spawn(async move { batcher.drain(flush).await });
        }
        result.await.ok()
    }

    async fn drain<F, Fut>(&self, mut flush: F)
    where
        F: FnMut(Vec<J>) -> Fut,
        Fut: Future<Output = Vec<R>>,
    {
        // If a flush panics, the next submit must be able to start a new drain.
        let _guard = FlushingGuard(&self.state);
        loop {
            let batch: Vec<(J, oneshot::Sender<R>)> = {
                let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                if state.queue.is_empty() {
                    state.flushing = false;
                    return;
                }
                let n = state.queue.len().min(self.max_batch);
                state.queue.drain(..n).collect()
            };
            let (jobs, answers): (Vec<J>, Vec<oneshot::Sender<R>>) = batch.into_iter().unzip();
            let results = flush(jobs).await;
            for (answer, result) in answers.into_iter().zip(results) {
                // The caller may have stopped waiting; its job was done all the same.
                let _ = answer.send(result);
            }
        }
    }
}

/// Clears `flushing` when a drain ends by unwinding; a normal end clears it under the lock itself.
struct FlushingGuard<'a, J, R>(&'a Mutex<State<J, R>>);

impl<J, R> Drop for FlushingGuard<'_, J, R> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            state.flushing = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn every_job_gets_its_own_result_and_batches_form_under_load() {
        let batcher: Arc<Batcher<u32, u32>> = Arc::new(Batcher::new(64));
        let flushes = Arc::new(AtomicUsize::new(0));
        let mut waiting = Vec::new();
        for job in 0..200u32 {
            let batcher = Arc::clone(&batcher);
            let flushes = Arc::clone(&flushes);
            waiting.push(tokio::spawn(async move {
                batcher
                    .submit(job, move |jobs: Vec<u32>| {
                        let flushes = Arc::clone(&flushes);
                        async move {
                            flushes.fetch_add(1, Ordering::SeqCst);
                            tokio::task::yield_now().await;
                            jobs.into_iter().map(|j| j * 2).collect()
                        }
                    })
                    .await
            }));
        }
        for (job, handle) in waiting.into_iter().enumerate() {
            let doubled = u32::try_from(job).unwrap() * 2;
            assert_eq!(handle.await.unwrap(), Some(doubled));
        }
        let flushes = flushes.load(Ordering::SeqCst);
        assert!(
            (4..200).contains(&flushes),
            "200 jobs, at most 64 a batch, grouped: {flushes} flushes"
        );
    }

    #[tokio::test]
    async fn a_short_answer_leaves_the_rest_with_none_and_the_next_submit_still_runs() {
        let batcher: Arc<Batcher<u32, u32>> = Arc::new(Batcher::new(8));
        let answered = batcher
            .submit(1, |_jobs: Vec<u32>| async { Vec::new() })
            .await;
        assert_eq!(answered, None);
        let answered = batcher
            .submit(2, |jobs: Vec<u32>| async move { jobs })
            .await;
        assert_eq!(answered, Some(2));
    }

    #[tokio::test]
    async fn a_panicking_flush_does_not_wedge_the_queue() {
        let batcher: Arc<Batcher<u32, u32>> = Arc::new(Batcher::new(8));
        let answered = batcher
            .submit(1, |_jobs: Vec<u32>| async { panic!("flush failed") })
            .await;
        assert_eq!(answered, None);
        let answered = batcher
            .submit(2, |jobs: Vec<u32>| async move { jobs })
            .await;
        assert_eq!(answered, Some(2));
    }
}
