//! Runs numbered operations with bounded concurrency and a deadline, timing each one: the common
//! skeleton of the account, idle and login phases.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::client::ClientError;
use crate::stats::ErrorCounts;

/// What a batch did.
pub struct BatchOutcome<T> {
    /// Values of the operations that succeeded, in completion order.
    pub values: Vec<T>,
    /// Operations started.
    pub attempted: u64,
    /// Operation latencies in microseconds (successes only).
    pub latencies_us: Vec<u64>,
    /// Failures by kind; operations cut off by the deadline count as `deadline`.
    pub errors: ErrorCounts,
    /// The message of the first error of each kind, for diagnosis.
    pub first_errors: Vec<String>,
    /// From the first start to the last completion.
    pub elapsed: Duration,
}

/// Runs `op(0..count)` with at most `concurrency` in flight. No operation starts after `deadline`;
/// those still running at `deadline` plus `grace` are aborted and counted as errors.
pub async fn run_batch<T, F, Fut>(
    count: usize,
    concurrency: usize,
    deadline: Duration,
    grace: Duration,
    op: F,
) -> BatchOutcome<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<T, ClientError>> + Send + 'static,
{
    let start = Instant::now();
    let hard_stop = start + deadline + grace;
    let mut set = JoinSet::new();
    let mut out = BatchOutcome {
        values: Vec::with_capacity(count),
        attempted: 0,
        latencies_us: Vec::with_capacity(count),
        errors: ErrorCounts::default(),
        first_errors: Vec::new(),
        elapsed: Duration::ZERO,
    };
    let mut next = 0usize;
    loop {
        while next < count && set.len() < concurrency.max(1) && start.elapsed() < deadline {
            let fut = op(next);
            set.spawn(async move {
                let t0 = Instant::now();
                let r = fut.await;
                (r, t0.elapsed())
            });
            next += 1;
            out.attempted += 1;
        }
        if set.is_empty() {
            break;
        }
        match tokio::time::timeout_at(hard_stop.into(), set.join_next()).await {
            Ok(Some(Ok((Ok(value), took)))) => {
                out.values.push(value);
                out.latencies_us.push(took.as_micros() as u64);
            }
            Ok(Some(Ok((Err(e), _)))) => {
                if !out.errors.0.contains_key(e.kind()) {
                    out.first_errors.push(e.to_string());
                }
                out.errors.add(e.kind());
            }
            Ok(Some(Err(_join))) => out.errors.add("task-panicked"),
            Ok(None) => break,
            Err(_) => {
                for _ in 0..set.len() {
                    out.errors.add("deadline");
                }
                set.abort_all();
                break;
            }
        }
    }
    out.elapsed = start.elapsed();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn all_run_and_failures_are_counted_by_kind() {
        let out = run_batch(
            10,
            3,
            Duration::from_secs(5),
            Duration::from_secs(1),
            |i| async move {
                if i % 5 == 0 {
                    Err(ClientError::StreamClosed)
                } else {
                    Ok(i)
                }
            },
        )
        .await;
        assert_eq!(out.attempted, 10);
        assert_eq!(out.values.len(), 8);
        assert_eq!(out.errors.0["stream-closed"], 2);
    }

    #[tokio::test]
    async fn stragglers_past_the_deadline_are_aborted() {
        let out = run_batch(
            2,
            2,
            Duration::from_millis(10),
            Duration::from_millis(50),
            |i| async move {
                if i == 1 {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
                Ok(i)
            },
        )
        .await;
        assert_eq!(out.values, vec![0]);
        assert_eq!(out.errors.0["deadline"], 1);
        assert!(out.elapsed < Duration::from_secs(5));
    }
}
