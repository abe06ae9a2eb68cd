//! The server's wake-ups: when a message for a local user is stored offline, every active device of
//! theirs gets a push with no sender and no text (XEP-0357 "Publishing Notifications"; content-free like
//! Conversations' and Monal's app servers expect), except devices registered as XEP-0357 nodes, which
//! their publishes wake. Wake-ups are grouped
//! ([`crate::batch`]): one device query and one outbox transaction, with the audit lines, for all
//! wake-ups that arrive while the previous batch is being written; then the batch claims the entries
//! it stored and hands them straight to the senders ([`crate::handoff`]).

use std::collections::HashMap;

use herald_storage::relay::{AuditEntry, DeliveryTarget, Device, EnqueueRequest, PushMessage};

use crate::accept::device_delivery;
use crate::batch::storage_answer;
use crate::handoff::Claimed;
use crate::{Priority, Relay, RelayError, now_ms};

/// Wake-ups written in one transaction at most.
pub(crate) const MAX_WAKE_BATCH: usize = 256;

/// The result of one wake-up: deliveries queued, or why the batch failed (the same for every job of a
/// failed batch, so a `String` rather than the error itself).
pub(crate) type WakeResult = Result<usize, String>;

/// Queues a wake-up for `account_id` and waits until it is stored in the outbox.
pub(crate) async fn wake_account(relay: &Relay, account_id: &str) -> Result<usize, RelayError> {
    let flushing = relay.clone();
    let answer = relay
        .inner
        .wakes
        .submit(account_id.to_string(), move |accounts| {
            let relay = flushing.clone();
            async move { wake_batch(&relay, &accounts).await }
        })
        .await;
    Ok(storage_answer(answer, "wake-up")?)
}

async fn wake_batch(relay: &Relay, accounts: &[String]) -> Vec<WakeResult> {
    match enqueue_wakes(relay, accounts).await {
        Ok(counts) => counts.into_iter().map(Ok).collect(),
        Err(error) => {
            tracing::warn!(%error, wake_ups = accounts.len(), "storing wake-ups failed");
            accounts.iter().map(|_| Err(error.to_string())).collect()
        }
    }
}

/// Stores one message per wake-up with a delivery per active device and an audit line; returns the
/// deliveries per wake-up, in order.
async fn enqueue_wakes(relay: &Relay, accounts: &[String]) -> Result<Vec<usize>, RelayError> {
    let inner = &relay.inner;
    let mut distinct = accounts.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    let devices = inner
        .storage
        .relay_devices
        .list_for_accounts(&distinct)
        .await?;
    let mut by_account: HashMap<&str, Vec<&Device>> = HashMap::new();
    // A device registered as a XEP-0357 node is woken by the publishes of the server its user enabled
    // it with (section 7), this one included; waking it here too would wake it twice per message.
    for device in devices
        .iter()
        .filter(|d| d.active && d.name != crate::push_node::NODE_DEVICE_NAME)
    {
        by_account
            .entry(device.account_id.as_str())
            .or_default()
            .push(device);
    }
    let now = now_ms();
    let priority = Priority::High.as_str();
    let mut counts = Vec::with_capacity(accounts.len());
    let mut requests = Vec::new();
    for account in accounts {
        let Some(devices) = by_account.get(account.as_str()) else {
            counts.push(0);
            continue;
        };
        let message = PushMessage {
            id: uuid::Uuid::new_v4().to_string(),
            account_id: Some(account.clone()),
            token_id: None,
            sender: None,
            priority: priority.to_string(),
            created_at_ms: now,
        };
        let audit = AuditEntry {
            id: 0,
            account_id: account.clone(),
            at_ms: now,
            token_id: None,
            sender: Some("server".into()),
            message_id: Some(message.id.clone()),
            outcome: "accepted".into(),
        };
        counts.push(devices.len());
        requests.push(EnqueueRequest {
            message,
            deliveries: devices
                .iter()
                .map(|d| device_delivery(d, priority, None))
                .collect(),
            audit: Some(audit),
        });
    }
    if !requests.is_empty() {
        let window = i64::try_from(inner.config.collapse_window_ms).unwrap_or(i64::MAX);
        let enqueued = inner
            .storage
            .push_outbox
            .enqueue_batch(&requests, window, now)
            .await?;
        let mut ids: Vec<i64> = enqueued
            .iter()
            .flat_map(|e| e.outbox_ids.iter().copied())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let handed = hand_over(relay, &ids, &devices, now).await;
        // What was not handed over (no room, due later in the collapse window, claimed by a
        // worker already) is the loop's: tell it.
        if handed < ids.len() {
            inner.queued.notify_one();
        }
    }
    Ok(counts)
}

/// Claims as many of the entries just stored (`ids`) as the senders have room for, and hands them
/// over with their devices (see `handoff.rs`). Returns how many were handed over; a failed claim
/// hands over none and leaves them pending for the loop.
async fn hand_over(relay: &Relay, ids: &[i64], devices: &[Device], now: i64) -> usize {
    let inner = &relay.inner;
    let room = inner.handoff.room().min(ids.len());
    if room == 0 {
        return 0;
    }
    let claimed = match inner.storage.push_outbox.claim_ids(&ids[..room], now).await {
        Ok(claimed) => claimed,
        Err(error) => {
            tracing::warn!(%error, "claiming wake-ups to send at once failed; the workers will");
            return 0;
        }
    };
    let by_id: HashMap<&str, &Device> = devices.iter().map(|d| (d.id.as_str(), d)).collect();
    let mut handed = 0;
    for entry in claimed {
        let device = match &entry.target {
            DeliveryTarget::Device(id) => by_id.get(id.as_str()).map(|d| (*d).clone()),
            DeliveryTarget::Remote { .. } => None,
        };
        match inner.handoff.hand_over(Claimed { entry, device }) {
            Ok(()) => handed += 1,
            // The loop stopped meanwhile (the room was checked above, and only this batch's
            // flush hands over): back to pending, for the next start's workers.
            Err(id) => {
                if let Err(error) = inner
                    .storage
                    .push_outbox
                    .retry_at(id, now, "not handed over", now)
                    .await
                {
                    tracing::warn!(%error, outbox_id = id, "returning a wake-up to pending failed");
                }
            }
        }
    }
    handed
}
