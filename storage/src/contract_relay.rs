//! The relay part of the contract suite (storage/src/relay): what every backend must do for relay
//! accounts, devices, whitelist tokens, the outbox (collapse, claim, retry, recover) and the audit
//! trail. Cases create their own uniquely named rows, so they can run on a database that is reused.

// Contract checks panic on the first difference, like the assertions they are.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};

use crate::relay::*;
use crate::{Storage, StorageError};

/// A prefix unique to this call, so that cases never collide on a reused PostgreSQL database.
fn unique(tag: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{tag}-{nanos:x}-{}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn account(id: &str) -> RelayAccount {
    RelayAccount {
        id: id.to_string(),
        username: format!("u{id}"),
        email: None,
        password_hash: Some("$argon2id$fake".into()),
        is_local: false,
        created_at_ms: 1_000,
    }
}

fn device(id: &str, account_id: &str, kind: DeviceKind, at: i64) -> Device {
    Device {
        id: id.to_string(),
        account_id: account_id.to_string(),
        kind,
        name: "phone".into(),
        device_id: String::new(),
        active: true,
        token: format!("tok-{id}"),
        apns_topic: None,
        apns_sandbox: false,
        webpush_p256dh: None,
        webpush_auth: None,
        created_at_ms: at,
    }
}

/// Runs every relay case against `storage`. Panics on the first failure.
pub async fn run(storage: &Storage) {
    accounts_and_keys(storage).await;
    devices(storage).await;
    tokens(storage).await;
    dead_tokens_are_pruned(storage).await;
    outbox_collapse_and_lifecycle(storage).await;
    outbox_recover_and_fail_device(storage).await;
    outbox_batches(storage).await;
    outbox_claim_with_devices(storage).await;
    outbox_claim_ids(storage).await;
    audit(storage).await;
    account_delete_cascades(storage).await;
}

pub async fn accounts_and_keys(s: &Storage) {
    let id = unique("acct");
    let mut a = account(&id);
    a.email = Some(format!("{id}@mail.example"));
    s.relay_accounts.create(&a).await.unwrap();
    assert!(matches!(
        s.relay_accounts.create(&a).await,
        Err(StorageError::AlreadyExists)
    ));
    let mut dup_email = account(&unique("acct"));
    dup_email.email = a.email.clone();
    assert!(matches!(
        s.relay_accounts.create(&dup_email).await,
        Err(StorageError::AlreadyExists)
    ));
    assert_eq!(s.relay_accounts.by_id(&id).await.unwrap(), Some(a.clone()));
    assert_eq!(
        s.relay_accounts.by_username(&a.username).await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(
        s.relay_accounts
            .by_email(a.email.as_deref().unwrap())
            .await
            .unwrap(),
        Some(a.clone())
    );
    assert_eq!(s.relay_accounts.by_id(&unique("none")).await.unwrap(), None);

    let k1 = unique("k1");
    let k2 = unique("k2");
    let k3 = unique("k3");
    s.relay_accounts.add_api_key(&id, &k1, 10, 2).await.unwrap();
    s.relay_accounts.add_api_key(&id, &k2, 20, 2).await.unwrap();
    assert_eq!(
        s.relay_accounts.by_api_key(&k1).await.unwrap(),
        Some(a.clone())
    );
    // A third key with keep = 2 evicts the oldest.
    s.relay_accounts.add_api_key(&id, &k3, 30, 2).await.unwrap();
    assert_eq!(s.relay_accounts.by_api_key(&k1).await.unwrap(), None);
    assert_eq!(
        s.relay_accounts.by_api_key(&k2).await.unwrap(),
        Some(a.clone())
    );
    let k4 = unique("k4");
    s.relay_accounts
        .replace_api_keys(&id, &k4, 40)
        .await
        .unwrap();
    assert_eq!(s.relay_accounts.by_api_key(&k2).await.unwrap(), None);
    assert_eq!(s.relay_accounts.by_api_key(&k3).await.unwrap(), None);
    assert_eq!(s.relay_accounts.by_api_key(&k4).await.unwrap(), Some(a));
}

pub async fn devices(s: &Storage) {
    let acct = unique("acct");
    s.relay_accounts.create(&account(&acct)).await.unwrap();
    let d1 = device(&unique("d"), &acct, DeviceKind::Apns, 1);
    let mut d2 = device(&unique("d"), &acct, DeviceKind::WebPush, 2);
    d2.webpush_p256dh = Some("BPk".into());
    d2.webpush_auth = Some("au".into());
    s.relay_devices.create(&d1).await.unwrap();
    s.relay_devices.create(&d2).await.unwrap();
    assert!(matches!(
        s.relay_devices.create(&d1).await,
        Err(StorageError::AlreadyExists)
    ));
    assert_eq!(s.relay_devices.get(&d2.id).await.unwrap(), Some(d2.clone()));
    assert_eq!(
        s.relay_devices.list(&acct, None).await.unwrap(),
        vec![d1.clone(), d2.clone()]
    );
    assert_eq!(
        s.relay_devices
            .list(&acct, Some(DeviceKind::Apns))
            .await
            .unwrap(),
        vec![d1.clone()]
    );
    assert!(
        s.relay_devices
            .list(&acct, Some(DeviceKind::Fcm))
            .await
            .unwrap()
            .is_empty()
    );
    let mut d1b = d1.clone();
    d1b.token = "newtoken".into();
    d1b.apns_sandbox = true;
    d1b.apns_topic = Some("org.example.app".into());
    d1b.active = false;
    assert!(s.relay_devices.update(&d1b).await.unwrap());
    assert_eq!(s.relay_devices.get(&d1.id).await.unwrap(), Some(d1b));
    assert!(s.relay_devices.delete(&d1.id).await.unwrap());
    assert!(!s.relay_devices.delete(&d1.id).await.unwrap());
    assert_eq!(s.relay_devices.list(&acct, None).await.unwrap(), vec![d2]);

    // Counted by account prefix: `_` and `%` in it are literal.
    let base = unique("pfx");
    let prefix = format!("{base}_%:");
    let (one, two, other) = (
        format!("{prefix}one"),
        format!("{prefix}two"),
        format!("{base}x%:one"),
    );
    for (n, owner) in [&one, &two, &two, &other].into_iter().enumerate() {
        s.relay_accounts.create(&account(owner)).await.ok();
        let d = device(&unique("d"), owner, DeviceKind::Fcm, n as i64);
        s.relay_devices.create(&d).await.unwrap();
    }
    assert_eq!(
        s.relay_devices
            .count_with_account_prefix(&prefix)
            .await
            .unwrap(),
        3
    );
}

pub async fn tokens(s: &Storage) {
    let acct = unique("acct");
    s.relay_accounts.create(&account(&acct)).await.unwrap();
    let t = WhitelistToken {
        id: unique("t"),
        token_hash: unique("hash"),
        account_id: acct.clone(),
        name: Some("server".into()),
        device_ids: vec!["a".into(), "b".into()],
        sender: Some("example.org".into()),
        rate_per_minute: Some(7),
        created_at_ms: 5,
        expires_at_ms: Some(100),
        revoked_at_ms: None,
    };
    s.whitelist_tokens.create(&t).await.unwrap();
    assert!(matches!(
        s.whitelist_tokens.create(&t).await,
        Err(StorageError::AlreadyExists)
    ));
    assert_eq!(
        s.whitelist_tokens.by_hash(&t.token_hash).await.unwrap(),
        Some(t.clone())
    );
    assert_eq!(
        s.whitelist_tokens.get(&t.id).await.unwrap(),
        Some(t.clone())
    );
    let all = WhitelistToken {
        id: unique("t"),
        token_hash: unique("hash"),
        device_ids: vec![],
        sender: None,
        rate_per_minute: None,
        expires_at_ms: None,
        name: None,
        created_at_ms: 6,
        ..t.clone()
    };
    s.whitelist_tokens.create(&all).await.unwrap();
    assert_eq!(
        s.whitelist_tokens.list(&acct).await.unwrap(),
        vec![t.clone(), all.clone()]
    );
    let mut t2 = t.clone();
    t2.name = None;
    t2.device_ids = vec!["c".into()];
    t2.expires_at_ms = None;
    assert!(s.whitelist_tokens.update(&t2).await.unwrap());
    assert_eq!(
        s.whitelist_tokens.get(&t.id).await.unwrap(),
        Some(t2.clone())
    );
    assert!(s.whitelist_tokens.revoke(&t.id, 50).await.unwrap());
    assert!(!s.whitelist_tokens.revoke(&t.id, 60).await.unwrap());
    let revoked = s.whitelist_tokens.get(&t.id).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at_ms, Some(50));
}

fn message(id: &str, acct: Option<&str>, at: i64) -> PushMessage {
    PushMessage {
        id: id.to_string(),
        account_id: acct.map(str::to_string),
        token_id: None,
        sender: Some("example.org".into()),
        priority: "low".into(),
        created_at_ms: at,
    }
}

fn to_device(id: &str, priority: &str) -> NewDelivery {
    NewDelivery {
        target: DeliveryTarget::Device(id.to_string()),
        collapse_key: format!("device:{id}"),
        priority: priority.into(),
        data: None,
    }
}

pub async fn outbox_collapse_and_lifecycle(s: &Storage) {
    let acct = unique("acct");
    s.relay_accounts.create(&account(&acct)).await.unwrap();
    let dev = unique("dev");
    let window = 1_000;
    // Times far in the future so rows of other cases sharing the database are never due here.
    let t0 = 4_000_000_000_000_i64 + (std::process::id() as i64) * 100_000;

    let m1 = message(&unique("m"), Some(&acct), t0);
    let e1 = s
        .push_outbox
        .enqueue(&m1, &[to_device(&dev, "low")], window, t0)
        .await
        .unwrap();
    assert_eq!(e1.collapsed, 0);
    // A second notification while the first is pending joins it, and raises its priority.
    let m2 = message(&unique("m"), Some(&acct), t0 + 10);
    let e2 = s
        .push_outbox
        .enqueue(&m2, &[to_device(&dev, "high")], window, t0 + 10)
        .await
        .unwrap();
    assert_eq!(e2.collapsed, 1);
    assert_eq!(e2.outbox_ids, e1.outbox_ids);
    let d = s.push_outbox.deliveries(&m2.id).await.unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].priority, "high");
    assert_eq!(d[0].status, DeliveryStatus::Pending);
    assert_eq!(
        s.push_outbox.message(&m1.id).await.unwrap(),
        Some(m1.clone())
    );

    // Claim: nothing before it is due; then exactly the entry.
    assert!(
        s.push_outbox
            .claim_due(t0 - 1, 10)
            .await
            .unwrap()
            .iter()
            .all(|e| e.collapse_key != format!("device:{dev}"))
    );
    let claimed = s.push_outbox.claim_due(t0 + 20, 1000).await.unwrap();
    let mine: Vec<_> = claimed
        .iter()
        .filter(|e| e.collapse_key == format!("device:{dev}"))
        .collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].status, DeliveryStatus::Sending);
    assert_eq!(mine[0].target, DeliveryTarget::Device(dev.clone()));
    let id = mine[0].id;
    // Claimed entries are not claimed twice.
    assert!(
        s.push_outbox
            .claim_due(t0 + 20, 1000)
            .await
            .unwrap()
            .iter()
            .all(|e| e.id != id)
    );

    // While sending, a new notification does not join it: it gets its own entry, delayed to the end of
    // the collapse window of the first.
    let m3 = message(&unique("m"), Some(&acct), t0 + 30);
    let e3 = s
        .push_outbox
        .enqueue(&m3, &[to_device(&dev, "low")], window, t0 + 30)
        .await
        .unwrap();
    assert_eq!(e3.collapsed, 0);
    assert_ne!(e3.outbox_ids[0], id);
    let d3 = s.push_outbox.deliveries(&m3.id).await.unwrap();
    assert_eq!(d3[0].next_attempt_at_ms, t0 + window);

    // Retry then send.
    s.push_outbox
        .retry_at(id, t0 + 500, "http 503", t0 + 40)
        .await
        .unwrap();
    let d = s.push_outbox.deliveries(&m1.id).await.unwrap();
    assert_eq!(
        (d[0].status, d[0].attempts, d[0].next_attempt_at_ms),
        (DeliveryStatus::Pending, 1, t0 + 500)
    );
    assert_eq!(d[0].reason.as_deref(), Some("http 503"));
    let again = s.push_outbox.claim_due(t0 + 500, 1000).await.unwrap();
    assert!(again.iter().any(|e| e.id == id));
    s.push_outbox.mark_sent(id, t0 + 510).await.unwrap();
    let d = s.push_outbox.deliveries(&m1.id).await.unwrap();
    assert_eq!((d[0].status, d[0].attempts), (DeliveryStatus::Sent, 2));

    let e3id = e3.outbox_ids[0];
    let claimed = s.push_outbox.claim_due(t0 + window, 1000).await.unwrap();
    assert!(claimed.iter().any(|e| e.id == e3id));
    s.push_outbox
        .mark_failed(e3id, "rejected: BadTopic", t0 + window)
        .await
        .unwrap();
    let d = s.push_outbox.deliveries(&m3.id).await.unwrap();
    assert_eq!(d[0].status, DeliveryStatus::Failed);
    assert_eq!(d[0].reason.as_deref(), Some("rejected: BadTopic"));

    // Remote targets keep their endpoint and token until done.
    let m4 = message(&unique("m"), None, t0 + 50);
    let remote = NewDelivery {
        target: DeliveryTarget::Remote {
            endpoint: "https://relay.example/api/v1/messages/".into(),
            token: "secret".into(),
        },
        collapse_key: unique("remote"),
        priority: "high".into(),
        data: Some("x".into()),
    };
    s.push_outbox
        .enqueue(&m4, std::slice::from_ref(&remote), window, t0 + 50)
        .await
        .unwrap();
    let d = s.push_outbox.deliveries(&m4.id).await.unwrap();
    assert_eq!(d[0].target, remote.target);
    assert_eq!(d[0].data.as_deref(), Some("x"));
    assert_eq!(s.push_outbox.message(&unique("none")).await.unwrap(), None);
}

pub async fn outbox_recover_and_fail_device(s: &Storage) {
    let acct = unique("acct");
    s.relay_accounts.create(&account(&acct)).await.unwrap();
    let dev = unique("dev");
    let t0 = 5_000_000_000_000_i64 + (std::process::id() as i64) * 100_000;
    let m = message(&unique("m"), Some(&acct), t0);
    let e = s
        .push_outbox
        .enqueue(&m, &[to_device(&dev, "low")], 0, t0)
        .await
        .unwrap();
    let id = e.outbox_ids[0];
    assert!(
        s.push_outbox
            .next_due_at()
            .await
            .unwrap()
            .is_some_and(|t| t <= t0)
    );
    assert!(
        s.push_outbox
            .claim_due(t0, 1000)
            .await
            .unwrap()
            .iter()
            .any(|e| e.id == id)
    );
    // A restart puts sending entries back.
    assert!(s.push_outbox.recover().await.unwrap() >= 1);
    let d = s.push_outbox.deliveries(&m.id).await.unwrap();
    assert_eq!(d[0].status, DeliveryStatus::Pending);
    assert_eq!(
        s.push_outbox
            .fail_device(&dev, "device gone", t0 + 1)
            .await
            .unwrap(),
        1
    );
    let d = s.push_outbox.deliveries(&m.id).await.unwrap();
    assert_eq!(d[0].status, DeliveryStatus::Failed);
    assert_eq!(d[0].reason.as_deref(), Some("device gone"));
    // Purging finished entries removes the entry and the message it no longer serves.
    assert!(s.push_outbox.purge_finished(t0 + 2).await.unwrap() >= 1);
    assert!(s.push_outbox.deliveries(&m.id).await.unwrap().is_empty());
    assert_eq!(s.push_outbox.message(&m.id).await.unwrap(), None);
}

/// The batch operations behave like their one-at-a-time forms: `enqueue_batch` collapses within the
/// batch and against pending entries, writes the audit lines; device lookups and `mark_sent_many`
/// touch exactly what they name.
pub async fn outbox_batches(s: &Storage) {
    let alice = unique("alice");
    let bob = unique("bob");
    let nobody = unique("nobody");
    for a in [&alice, &bob] {
        s.relay_accounts.create(&account(a)).await.unwrap();
    }
    let (a1, a2, b1) = (unique("a1"), unique("a2"), unique("b1"));
    s.relay_devices
        .create(&device(&a1, &alice, DeviceKind::Fcm, 1))
        .await
        .unwrap();
    s.relay_devices
        .create(&device(&a2, &alice, DeviceKind::Apns, 2))
        .await
        .unwrap();
    s.relay_devices
        .create(&device(&b1, &bob, DeviceKind::WebPush, 1))
        .await
        .unwrap();

    let listed = s
        .relay_devices
        .list_for_accounts(&[alice.clone(), bob.clone(), nobody.clone()])
        .await
        .unwrap();
    let mut ids: Vec<(&str, &str)> = listed
        .iter()
        .map(|d| (d.account_id.as_str(), d.id.as_str()))
        .collect();
    ids.sort_unstable();
    let mut want = vec![
        (alice.as_str(), a1.as_str()),
        (alice.as_str(), a2.as_str()),
        (bob.as_str(), b1.as_str()),
    ];
    want.sort_unstable();
    assert_eq!(ids, want);
    let alices: Vec<&str> = listed
        .iter()
        .filter(|d| d.account_id == alice)
        .map(|d| d.id.as_str())
        .collect();
    assert_eq!(
        alices,
        [a1.as_str(), a2.as_str()],
        "each account's oldest first"
    );
    let mut got: Vec<String> = s
        .relay_devices
        .get_many(&[b1.clone(), unique("missing"), a2.clone()])
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    got.sort_unstable();
    let mut want = vec![b1.clone(), a2.clone()];
    want.sort_unstable();
    assert_eq!(got, want);
    assert!(s.relay_devices.get_many(&[]).await.unwrap().is_empty());

    let window = 1_000;
    let t0 = 4_100_000_000_000_i64 + (std::process::id() as i64) * 100_000;
    // An entry already pending for b1 before the batch.
    let before = message(&unique("m"), Some(&bob), t0);
    let pending = s
        .push_outbox
        .enqueue(&before, &[to_device(&b1, "low")], window, t0)
        .await
        .unwrap();
    let audit_for = |acct: &str, m: &PushMessage| AuditEntry {
        id: 0,
        account_id: acct.to_string(),
        at_ms: t0 + 5,
        token_id: None,
        sender: Some("server".into()),
        message_id: Some(m.id.clone()),
        outcome: "accepted".into(),
    };
    let m1 = message(&unique("m"), Some(&alice), t0 + 5);
    let m2 = message(&unique("m"), Some(&bob), t0 + 5);
    let m3 = message(&unique("m"), Some(&alice), t0 + 5);
    let requests = vec![
        EnqueueRequest {
            message: m1.clone(),
            deliveries: vec![to_device(&a1, "low"), to_device(&a2, "low")],
            audit: Some(audit_for(&alice, &m1)),
        },
        EnqueueRequest {
            message: m2.clone(),
            deliveries: vec![to_device(&b1, "high")],
            audit: Some(audit_for(&bob, &m2)),
        },
        // Same devices as m1 later in the same batch: joins m1's new entries, raising a2's priority.
        EnqueueRequest {
            message: m3.clone(),
            deliveries: vec![to_device(&a2, "high"), to_device(&a1, "low")],
            audit: None,
        },
    ];
    let done = s
        .push_outbox
        .enqueue_batch(&requests, window, t0 + 5)
        .await
        .unwrap();
    assert_eq!(done.len(), 3);
    assert_eq!(done[0].collapsed, 0);
    assert_eq!(done[0].outbox_ids.len(), 2);
    assert_eq!(
        done[1].collapsed, 1,
        "joins the entry pending before the batch"
    );
    assert_eq!(done[1].outbox_ids, pending.outbox_ids);
    assert_eq!(done[2].collapsed, 2);
    assert_eq!(
        done[2].outbox_ids,
        [done[0].outbox_ids[1], done[0].outbox_ids[0]]
    );
    assert_eq!(
        s.push_outbox.message(&m1.id).await.unwrap(),
        Some(m1.clone())
    );
    let d1 = s.push_outbox.deliveries(&m1.id).await.unwrap();
    let priorities: Vec<(&DeliveryTarget, &str, i64)> = d1
        .iter()
        .map(|e| (&e.target, e.priority.as_str(), e.next_attempt_at_ms))
        .collect();
    assert_eq!(
        priorities,
        [
            (&DeliveryTarget::Device(a1.clone()), "low", t0 + 5),
            (&DeliveryTarget::Device(a2.clone()), "high", t0 + 5)
        ]
    );
    assert_eq!(s.push_outbox.deliveries(&m3.id).await.unwrap(), d1);
    let b = s.push_outbox.deliveries(&m2.id).await.unwrap();
    assert_eq!((b.len(), b[0].priority.as_str()), (1, "high"));
    let audited = s.push_audit.list(&alice, None, 10).await.unwrap();
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0].message_id.as_deref(), Some(m1.id.as_str()));
    assert_eq!(s.push_audit.list(&bob, None, 10).await.unwrap().len(), 1);
    assert!(
        s.push_outbox
            .enqueue_batch(&[], window, t0)
            .await
            .unwrap()
            .is_empty()
    );

    // mark_sent_many marks exactly the ids named.
    let claimed: Vec<i64> = s
        .push_outbox
        .claim_due(t0 + 5, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .filter(|id| d1.iter().any(|e| e.id == *id) || b.iter().any(|e| e.id == *id))
        .collect();
    assert_eq!(claimed.len(), 3);
    s.push_outbox
        .mark_sent_many(&[d1[0].id, b[0].id], t0 + 6)
        .await
        .unwrap();
    let statuses = |entries: Vec<OutboxEntry>| -> Vec<DeliveryStatus> {
        entries.into_iter().map(|e| e.status).collect()
    };
    assert_eq!(
        statuses(s.push_outbox.deliveries(&m1.id).await.unwrap()),
        [DeliveryStatus::Sent, DeliveryStatus::Sending]
    );
    assert_eq!(
        statuses(s.push_outbox.deliveries(&m2.id).await.unwrap()),
        [DeliveryStatus::Sent]
    );
    s.push_outbox.mark_sent_many(&[], t0 + 6).await.unwrap();
}

/// `claim_due_with_devices` is `claim_due` with the claimed entries' devices (those that still
/// exist) and, after a claim that took fewer than asked, the next due time of what is left pending.
pub async fn outbox_claim_with_devices(s: &Storage) {
    let acct = unique("acct");
    s.relay_accounts.create(&account(&acct)).await.unwrap();
    let dev = unique("dev");
    let registered = device(&dev, &acct, DeviceKind::UnifiedPush, 1);
    s.relay_devices.create(&registered).await.unwrap();
    let gone = unique("dev");
    let window = 1_000;
    // Later than every other case's times: whatever they left pending is due here and claimed too.
    let t0 = 7_000_000_000_000_i64 + (std::process::id() as i64) * 100_000;
    let remote = NewDelivery {
        target: DeliveryTarget::Remote {
            endpoint: "https://relay.example/api/v1/messages/".into(),
            token: unique("tok"),
        },
        collapse_key: unique("remote"),
        priority: "high".into(),
        data: None,
    };
    let m1 = message(&unique("m"), Some(&acct), t0);
    let deliveries = [to_device(&dev, "low"), to_device(&gone, "low"), remote];
    let e1 = s
        .push_outbox
        .enqueue(&m1, &deliveries, window, t0)
        .await
        .unwrap();
    let claim = s
        .push_outbox
        .claim_due_with_devices(t0, 10_000)
        .await
        .unwrap();
    let ours: Vec<&OutboxEntry> = claim
        .entries
        .iter()
        .filter(|e| e1.outbox_ids.contains(&e.id))
        .collect();
    assert_eq!(ours.len(), 3);
    assert!(ours.iter().all(|e| e.status == DeliveryStatus::Sending));
    let devices = claim.devices.unwrap();
    assert_eq!(devices.iter().find(|d| d.id == dev), Some(&registered));
    assert!(!devices.iter().any(|d| d.id == gone));
    // Everything due was claimed; a new push to the device waits for the window.
    let m2 = message(&unique("m"), Some(&acct), t0 + 10);
    let e2 = s
        .push_outbox
        .enqueue(&m2, &[to_device(&dev, "low")], window, t0 + 10)
        .await
        .unwrap();
    // With one due now for another device: the next due time is the device's, not the one just
    // claimed.
    let other = unique("dev");
    let m3 = message(&unique("m"), Some(&acct), t0 + 10);
    let e3 = s
        .push_outbox
        .enqueue(&m3, &[to_device(&other, "low")], window, t0 + 10)
        .await
        .unwrap();
    let claim = s
        .push_outbox
        .claim_due_with_devices(t0 + 10, 10_000)
        .await
        .unwrap();
    assert_eq!(
        claim.entries.iter().map(|e| e.id).collect::<Vec<_>>(),
        e3.outbox_ids
    );
    assert!(claim.devices.unwrap().is_empty());
    assert_eq!(claim.next_due_at_ms.unwrap(), Some(t0 + window));
    let claim = s
        .push_outbox
        .claim_due_with_devices(t0 + 20, 10_000)
        .await
        .unwrap();
    assert!(claim.entries.is_empty());
    assert_eq!(claim.next_due_at_ms.unwrap(), Some(t0 + window));
    // A full claim says nothing of what is left.
    let claim = s
        .push_outbox
        .claim_due_with_devices(t0 + window, 1)
        .await
        .unwrap();
    assert_eq!(
        claim.entries.iter().map(|e| e.id).collect::<Vec<_>>(),
        e2.outbox_ids
    );
    assert_eq!(claim.devices.unwrap(), vec![registered]);
    assert_eq!(claim.next_due_at_ms.unwrap(), None);
}

/// Claiming the entries just enqueued by id: only those still pending and due, each once.
pub async fn outbox_claim_ids(s: &Storage) {
    let acct = unique("acct");
    s.relay_accounts.create(&account(&acct)).await.unwrap();
    let (first, second) = (unique("dev"), unique("dev"));
    let window = 1_000;
    // Later than the other cases' claims of everything due, so none of them takes these.
    let t0 = 8_000_000_000_000_i64 + (std::process::id() as i64) * 100_000;
    let enqueue = |device: &str, at: i64| {
        let m = message(&unique("m"), Some(&acct), at);
        let d = [to_device(device, "high")];
        async move {
            s.push_outbox
                .enqueue(&m, &d, window, at)
                .await
                .unwrap()
                .outbox_ids[0]
        }
    };
    assert!(s.push_outbox.claim_ids(&[], t0).await.unwrap().is_empty());
    let a1 = enqueue(&first, t0).await;
    let b1 = enqueue(&second, t0).await;
    let claimed = s.push_outbox.claim_ids(&[a1], t0).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, a1);
    assert_eq!(claimed[0].status, DeliveryStatus::Sending);
    assert_eq!(claimed[0].target, DeliveryTarget::Device(first.clone()));
    // Claimed already: not again.
    assert!(s.push_outbox.claim_ids(&[a1], t0).await.unwrap().is_empty());
    // The first device's next push waits for the collapse window: not due yet, so not claimed.
    let a2 = enqueue(&first, t0 + 10).await;
    assert_ne!(a2, a1);
    let claimed = s.push_outbox.claim_ids(&[b1, a2], t0 + 10).await.unwrap();
    assert_eq!(claimed.iter().map(|e| e.id).collect::<Vec<_>>(), vec![b1]);
    // A worker's claim sees neither of the claimed ones; a restart puts them back.
    let due = s.push_outbox.claim_due(t0 + 10, 10_000).await.unwrap();
    assert!(!due.iter().any(|e| e.id == a1 || e.id == b1 || e.id == a2));
    assert!(s.push_outbox.recover().await.unwrap() >= 2);
    let again = s.push_outbox.claim_ids(&[a1, b1], t0 + 10).await.unwrap();
    assert_eq!(again.len(), 2);
}

pub async fn audit(s: &Storage) {
    let acct = unique("acct");
    s.relay_accounts.create(&account(&acct)).await.unwrap();
    for (i, outcome) in ["accepted", "rate-limited", "revoked"].iter().enumerate() {
        s.push_audit
            .record(&AuditEntry {
                id: 0,
                account_id: acct.clone(),
                at_ms: 100 + i as i64,
                token_id: Some("t1".into()),
                sender: Some("example.org".into()),
                message_id: None,
                outcome: outcome.to_string(),
            })
            .await
            .unwrap();
    }
    let all = s.push_audit.list(&acct, None, 10).await.unwrap();
    let outcomes: Vec<_> = all.iter().map(|e| e.outcome.as_str()).collect();
    assert_eq!(outcomes, ["revoked", "rate-limited", "accepted"]);
    let page = s.push_audit.list(&acct, Some(all[0].id), 1).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].outcome, "rate-limited");
    assert!(
        s.push_audit
            .list(&unique("other"), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// `delete_dead` keeps the newest dead (revoked or expired) tokens of one account and never touches
/// live tokens or other accounts.
pub async fn dead_tokens_are_pruned(s: &Storage) {
    let acct = unique("acct");
    let other = unique("acct");
    for a in [&acct, &other] {
        s.relay_accounts.create(&account(a)).await.unwrap();
    }
    let token = |account_id: &str, created: i64, expires: Option<i64>| WhitelistToken {
        id: unique("t"),
        token_hash: unique("h"),
        account_id: account_id.to_string(),
        name: None,
        device_ids: vec![],
        sender: None,
        rate_per_minute: None,
        created_at_ms: created,
        expires_at_ms: expires,
        revoked_at_ms: None,
    };
    let revoked: Vec<WhitelistToken> = (1..=3).map(|at| token(&acct, at, None)).collect();
    let expired = token(&acct, 4, Some(10));
    let live = token(&acct, 5, None);
    let live_until_later = token(&acct, 6, Some(1_000));
    let others = token(&other, 1, None);
    for t in revoked
        .iter()
        .chain([&expired, &live, &live_until_later, &others])
    {
        s.whitelist_tokens.create(t).await.unwrap();
    }
    for t in revoked.iter().chain([&others]) {
        assert!(s.whitelist_tokens.revoke(&t.id, 20).await.unwrap());
    }
    let ids = |list: Vec<WhitelistToken>| list.into_iter().map(|t| t.id).collect::<Vec<_>>();
    assert_eq!(
        s.whitelist_tokens.delete_dead(&acct, 100, 2).await.unwrap(),
        2
    );
    assert_eq!(
        ids(s.whitelist_tokens.list(&acct).await.unwrap()),
        [&revoked[2], &expired, &live, &live_until_later].map(|t| t.id.clone())
    );
    assert_eq!(
        s.whitelist_tokens.delete_dead(&acct, 100, 0).await.unwrap(),
        2
    );
    assert_eq!(
        ids(s.whitelist_tokens.list(&acct).await.unwrap()),
        [&live, &live_until_later].map(|t| t.id.clone())
    );
    assert_eq!(
        ids(s.whitelist_tokens.list(&other).await.unwrap()),
        vec![others.id]
    );
}

pub async fn account_delete_cascades(s: &Storage) {
    let acct = unique("acct");
    s.relay_accounts.create(&account(&acct)).await.unwrap();
    let key = unique("key");
    s.relay_accounts
        .add_api_key(&acct, &key, 1, 5)
        .await
        .unwrap();
    let d = device(&unique("d"), &acct, DeviceKind::Fcm, 1);
    s.relay_devices.create(&d).await.unwrap();
    let t = WhitelistToken {
        id: unique("t"),
        token_hash: unique("h"),
        account_id: acct.clone(),
        name: None,
        device_ids: vec![],
        sender: None,
        rate_per_minute: None,
        created_at_ms: 1,
        expires_at_ms: None,
        revoked_at_ms: None,
    };
    s.whitelist_tokens.create(&t).await.unwrap();
    let m = message(&unique("m"), Some(&acct), 1);
    s.push_outbox
        .enqueue(&m, &[to_device(&d.id, "low")], 0, 1)
        .await
        .unwrap();
    assert!(s.relay_accounts.delete(&acct).await.unwrap());
    assert!(!s.relay_accounts.delete(&acct).await.unwrap());
    assert_eq!(s.relay_accounts.by_api_key(&key).await.unwrap(), None);
    assert_eq!(s.relay_devices.get(&d.id).await.unwrap(), None);
    assert_eq!(s.whitelist_tokens.get(&t.id).await.unwrap(), None);
    assert_eq!(s.push_outbox.message(&m.id).await.unwrap(), None);
    // `fail_device` counts the device's pending deliveries: none may be left to send.
    assert_eq!(
        s.push_outbox.fail_device(&d.id, "probe", 2).await.unwrap(),
        0,
        "a pending push for a deleted device is left in the outbox"
    );
}
