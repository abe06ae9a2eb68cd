//! Outbox workers: claim due deliveries from storage, send them through the backend for the device
//! kind (or forward to a peer relay), and apply the one action of each failure class: sent → done;
//! gone → remove the device and fail its pending deliveries; retry → back to pending after an
//! exponential backoff with jitter, never sooner than Retry-After, until `max_attempts`; rejected →
//! failed with its reason. At start, deliveries a stopped process left in flight go back to pending.

use std::collections::HashMap;
use std::time::Duration;

use herald_storage::StorageResult;
use herald_storage::relay::{DeliveryTarget, Device, OutboxEntry};
use rand::Rng;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use tokio::sync::mpsc::Receiver;

use crate::backends::{Push, SendOutcome};
use crate::batch::storage_answer;
use crate::handoff::Claimed;
use crate::{Priority, Relay, now_ms};

/// How long an idle worker sleeps before looking again, in case another process (sharing a
/// PostgreSQL database) queued work it was not told about.
const IDLE_POLL: Duration = Duration::from_secs(5);
/// Back off this long after a database error.
const DB_ERROR_PAUSE: Duration = Duration::from_secs(1);
/// Delete finished deliveries and old audit entries this often.
const PURGE_EVERY: Duration = Duration::from_secs(3600);
/// Sent deliveries marked in one statement at most (see `batch.rs`).
pub(crate) const MAX_SENT_BATCH: usize = 256;

/// The delay before attempt `attempts + 1`: `base * 2^attempts` capped at `max`, plus up to 20 %
/// jitter; a peer's Retry-After replaces it but is capped at `max` too, so a peer cannot park a
/// delivery for longer than the operator's retry maximum (nor overflow the arithmetic with a huge
/// value: RFC 9110 section 10.2.3 sets no upper bound on delay-seconds).
pub fn backoff(
    attempts: u32,
    base_ms: u64,
    max_ms: u64,
    retry_after: Option<Duration>,
) -> Duration {
    let exp = base_ms.saturating_mul(1u64 << attempts.min(30)).min(max_ms);
    let jitter = if exp > 0 {
        rand::rng().random_range(0..=exp / 5)
    } else {
        0
    };
    let computed = Duration::from_millis(exp + jitter);
    match retry_after {
        // Honour the peer's Retry-After (plus a little jitter so retries do not stampede), up to `max`.
        Some(after) => after
            .saturating_add(Duration::from_millis(jitter.min(1000)))
            .min(Duration::from_millis(max_ms)),
        None => computed,
    }
}

/// The worker loop; returns once `shutdown` is cancelled and in-flight sends finished.
pub async fn run(relay: Relay, shutdown: CancellationToken) {
    let inner = &relay.inner;
    match inner.storage.push_outbox.recover().await {
        Ok(n) if n > 0 => tracing::info!(deliveries = n, "resuming deliveries left in flight"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "outbox recover failed"),
    }
    // Only after the recovery: it puts every `sending` entry back to pending, a handed-over one too.
    let mut handed = inner.handoff.take_receiver();
    if handed.is_some() {
        inner.handoff.set_open(true);
    }
    let workers = inner.config.workers.max(1);
    // In-flight sends live in this set: if the loop's task is aborted they are aborted with it (their
    // entries stay claimed and are recovered at the next start), as after a crash.
    let mut tasks = JoinSet::new();
    let mut last_purge = tokio::time::Instant::now();
    // Whether to claim from storage in this round: at start, when told that work was queued, when
    // the earliest pending entry falls due, and again at once after a full claim. Entries handed
    // over by the wake-up path are claimed already.
    let mut claim_from_storage = true;
    let mut next_look = tokio::time::Instant::now();
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        while tasks.try_join_next().is_some() {}
        if last_purge.elapsed() >= PURGE_EVERY {
            purge(&relay).await;
            last_purge = tokio::time::Instant::now();
        }
        let free = workers.saturating_sub(tasks.len());
        if free == 0 {
            tokio::select! {
                _ = tasks.join_next() => continue,
                _ = shutdown.cancelled() => break,
            }
        }
        if let Some(claimed) = handed.as_mut().and_then(|r| r.try_recv().ok()) {
            spawn_handed_over(&mut tasks, &relay, claimed);
            continue;
        }
        if claim_from_storage {
            claim_from_storage = false;
            // One call for the claim, the devices of the whole claim (rather than one query per
            // delivery) and the next due time: one statement on PostgreSQL.
            let claim = match inner
                .storage
                .push_outbox
                .claim_due_with_devices(now_ms(), free)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "outbox claim failed");
                    claim_from_storage = true;
                    tokio::select! {
                        _ = tokio::time::sleep(DB_ERROR_PAUSE) => continue,
                        _ = shutdown.cancelled() => break,
                    }
                }
            };
            // Fewer than asked for: everything due is claimed, and whatever is queued after the
            // claim signals `queued`, so the worker can wait at once instead of claiming again for
            // nothing (a round trip per wake-up on PostgreSQL).
            let all_due_claimed = claim.entries.len() < free;
            let devices: Result<HashMap<String, Device>, _> = claim
                .devices
                .map(|found| found.into_iter().map(|d| (d.id.clone(), d)).collect());
            if let Err(e) = &devices {
                tracing::warn!(error = %e, "looking up the devices of claimed deliveries failed");
            }
            for entry in claim.entries {
                let relay = relay.clone();
                let device = match (&entry.target, &devices) {
                    (DeliveryTarget::Device(id), Ok(found)) => Ok(found.get(id).cloned()),
                    (DeliveryTarget::Device(_), Err(_)) => Err(LookupFailed),
                    (DeliveryTarget::Remote { .. }, _) => Ok(None),
                };
                tasks.spawn(async move { deliver(&relay, entry, device).await });
            }
            if !all_due_claimed {
                claim_from_storage = true;
                continue;
            }
            let wait = match claim.next_due_at_ms {
                Ok(Some(due)) => {
                    Duration::from_millis(u64::try_from(due - now_ms()).unwrap_or(0)).min(IDLE_POLL)
                }
                _ => IDLE_POLL,
            };
            next_look = tokio::time::Instant::now() + wait;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(next_look) => claim_from_storage = true,
            _ = inner.queued.notified() => claim_from_storage = true,
            Some(claimed) = recv_handed_over(&mut handed) => {
                spawn_handed_over(&mut tasks, &relay, claimed);
            }
            _ = shutdown.cancelled() => break,
        }
    }
    inner.handoff.set_open(false);
    // Let in-flight sends finish so their outcome is recorded.
    while tasks.join_next().await.is_some() {}
}

/// The next entry handed over, or never when this loop has no receiver.
async fn recv_handed_over(handed: &mut Option<Receiver<Claimed>>) -> Option<Claimed> {
    match handed {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

fn spawn_handed_over(tasks: &mut JoinSet<()>, relay: &Relay, claimed: Claimed) {
    let relay = relay.clone();
    tasks.spawn(async move { deliver(&relay, claimed.entry, Ok(claimed.device)).await });
}

async fn purge(relay: &Relay) {
    let before = purge_before(now_ms(), relay.inner.config.retention_days);
    if let Err(e) = relay.inner.storage.push_outbox.purge_finished(before).await {
        tracing::warn!(error = %e, "outbox purge failed");
    }
    if let Err(e) = relay.inner.storage.push_audit.purge(before).await {
        tracing::warn!(error = %e, "audit purge failed");
    }
}

/// Finished entries older than this (epoch ms) are purged, `retention_days` before `now_ms`.
fn purge_before(now_ms: i64, retention_days: u64) -> i64 {
    let keep_ms = i64::try_from(retention_days.saturating_mul(86_400_000)).unwrap_or(i64::MAX);
    now_ms.saturating_sub(keep_ms)
}

/// A delivery's device as looked up for its claim: the device, or `None` if it was removed; an error
/// when the database failed (the delivery is retried later).
type DeviceLookup = Result<Option<Device>, LookupFailed>;

/// The device lookup for a claim failed.
struct LookupFailed;

/// Sends one delivery and records its outcome.
async fn deliver(relay: &Relay, entry: OutboxEntry, device: DeviceLookup) {
    let inner = &relay.inner;
    let push = Push {
        priority: Priority::parse(&entry.priority),
        data: entry.data.clone(),
        collapse_id: "herald-wake".into(),
        ttl_secs: inner.config.push_ttl_secs,
    };
    let (outcome, device_id) = match &entry.target {
        DeliveryTarget::Device(_) => {
            let device = match device {
                Ok(d) => d,
                Err(LookupFailed) => {
                    tracing::warn!("device lookup failed");
                    record(
                        relay,
                        &entry,
                        SendOutcome::Retry {
                            after: None,
                            reason: "database".into(),
                        },
                        None,
                    )
                    .await;
                    return;
                }
            };
            match device {
                None => (SendOutcome::Rejected("device removed".into()), None),
                Some(d) if !d.active => (SendOutcome::Rejected("device inactive".into()), None),
                Some(d) => match inner.backends.for_kind(d.kind) {
                    None => (
                        SendOutcome::Rejected(format!(
                            "{} backend not configured",
                            d.kind.as_str()
                        )),
                        None,
                    ),
                    Some(b) => (b.send(&d, &push).await, Some(d.id.clone())),
                },
            }
        }
        DeliveryTarget::Remote { endpoint, token } => {
            let outcome = crate::xmpp_forward::forward(
                relay,
                endpoint,
                token,
                push.priority,
                push.data.as_deref(),
            )
            .await;
            (outcome, None)
        }
    };
    record(relay, &entry, outcome, device_id).await;
}

async fn record(
    relay: &Relay,
    entry: &OutboxEntry,
    outcome: SendOutcome,
    device_id: Option<String>,
) {
    let inner = &relay.inner;
    let outbox = &inner.storage.push_outbox;
    let now = now_ms();
    let result = match outcome {
        SendOutcome::Sent => mark_sent(relay, entry.id).await,
        SendOutcome::Gone(reason) => {
            let reason = format!("gone: {reason}");
            if let Some(id) = device_id {
                tracing::info!(device = %id, "removing device the push network reports gone");
                if let Err(e) = inner.storage.relay_devices.delete(&id).await {
                    tracing::warn!(error = %e, "device removal failed");
                }
                if let Err(e) = outbox.fail_device(&id, "device gone", now).await {
                    tracing::warn!(error = %e, "failing deliveries of gone device failed");
                }
            }
            outbox.mark_failed(entry.id, &reason, now).await
        }
        SendOutcome::Retry { after, reason } => {
            if entry.attempts + 1 >= inner.config.max_attempts {
                outbox
                    .mark_failed(entry.id, &format!("gave up: {reason}"), now)
                    .await
            } else {
                let delay = backoff(
                    entry.attempts,
                    inner.config.retry_base_ms,
                    inner.config.retry_max_ms,
                    after,
                );
                let at = now.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
                let r = outbox.retry_at(entry.id, at, &reason, now).await;
                // Wake the loop so it re-arms its timer for this entry.
                inner.queued.notify_one();
                r
            }
        }
        SendOutcome::Rejected(reason) => {
            outbox
                .mark_failed(entry.id, &format!("rejected: {reason}"), now)
                .await
        }
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, outbox_id = entry.id, "recording delivery outcome failed");
    }
}

/// Marks a delivery sent together with the others that finished meanwhile (one statement a batch).
async fn mark_sent(relay: &Relay, id: i64) -> StorageResult<()> {
    let flushing = relay.clone();
    let answer = relay
        .inner
        .sent
        .submit(id, move |ids: Vec<i64>| {
            let relay = flushing.clone();
            async move {
                let outcome = relay
                    .inner
                    .storage
                    .push_outbox
                    .mark_sent_many(&ids, now_ms())
                    .await
                    .map_err(|e| e.to_string());
                vec![outcome; ids.len()]
            }
        })
        .await;
    storage_answer(answer, "sent")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_honours_retry_after() {
        let d0 = backoff(0, 1000, 60_000, None);
        assert!(d0 >= Duration::from_millis(1000) && d0 <= Duration::from_millis(1200));
        let d3 = backoff(3, 1000, 60_000, None);
        assert!(d3 >= Duration::from_millis(8000) && d3 <= Duration::from_millis(9600));
        let capped = backoff(20, 1000, 60_000, None);
        assert!(capped >= Duration::from_millis(60_000) && capped <= Duration::from_millis(72_000));
        let ra = backoff(0, 1000, 60_000, Some(Duration::from_secs(30)));
        assert!(ra >= Duration::from_secs(30) && ra <= Duration::from_millis(31_000));
    }

    /// A huge `retention_days` ("keep forever") once overflowed the multiplication: a panic in
    /// debug builds, and in release builds a wrapped, small retention that purged recent history.
    #[test]
    fn huge_retention_purges_nothing() {
        let now = 1_700_000_000_000;
        assert_eq!(purge_before(now, 30), now - 30 * 86_400_000);
        for days in [u64::MAX, u64::MAX / 86_400_000 + 1, 213_503_982_335] {
            assert!(purge_before(now, days) < 0, "{days} days");
        }
    }

    /// A peer's `Retry-After: 18446744073709551615` (u64::MAX seconds) once overflowed the addition
    /// and panicked the delivery task, leaving the delivery claimed until restart.
    #[test]
    fn huge_retry_after_saturates_at_the_retry_maximum() {
        for huge in [Duration::MAX, Duration::from_secs(u64::MAX)] {
            for attempts in [40, 5, 0] {
                let d = backoff(attempts, 1000, 60_000, Some(huge));
                assert_eq!(d, Duration::from_millis(60_000), "attempt {attempts}");
            }
        }
        let long = backoff(0, 1000, 60_000, Some(Duration::from_secs(3600)));
        assert_eq!(long, Duration::from_millis(60_000));
    }
}
