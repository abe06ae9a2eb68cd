//! Contract: the outbound s2s queue (RFC 6120 section 10.4.3): per domain, oldest first by an id that
//! is never reused; reads after an id; removal by ids touches only its domain; taking what was
//! enqueued before a cutoff; the domains with something waiting; the per-domain cap on stanzas and
//! bytes refuses whole, also when enqueues race.

use tokio::task::JoinSet;

use crate::{S2sEnqueue, S2sQueueLimits, S2sQueueUsage, Storage};

const ROOMY: S2sQueueLimits = S2sQueueLimits {
    max_stanzas: 100,
    max_bytes: 100_000,
};

async fn enqueue(storage: &Storage, domain: &str, stanza: &str, at_ms: i64) -> i64 {
    match storage
        .s2s_queue
        .enqueue(domain, "alice@local.example", stanza, at_ms, ROOMY)
        .await
        .expect("enqueue")
    {
        S2sEnqueue::Queued(id) => id,
        S2sEnqueue::Full => panic!("{domain} unexpectedly full"),
    }
}

async fn stanzas_of(storage: &Storage, domain: &str) -> Vec<String> {
    storage
        .s2s_queue
        .oldest(domain, None, 1000)
        .await
        .expect("oldest")
        .into_iter()
        .map(|queued| queued.stanza)
        .collect()
}

/// Order, paging after an id, removal, taking by age and the list of domains.
pub async fn s2s_queue(storage: &Storage) {
    let queue = &storage.s2s_queue;
    let remote = "remote.s2s.example";
    let other = "other.s2s.example";
    // Only this check's domains: the others may share the storage.
    let domains = || async {
        let all = queue.domains().await.expect("domains");
        assert!(all.is_sorted(), "{all:?}");
        all.into_iter()
            .filter(|d| d == remote || d == other)
            .collect::<Vec<_>>()
    };
    assert!(domains().await.is_empty());
    assert_eq!(
        queue.usage(remote).await.expect("usage"),
        S2sQueueUsage::default()
    );
    assert!(
        queue
            .oldest(remote, None, 10)
            .await
            .expect("oldest")
            .is_empty()
    );

    let first = enqueue(storage, remote, "<message id='1'/>", 1_000).await;
    let on_other = enqueue(storage, other, "<message id='x'/>", 1_500).await;
    let second = enqueue(storage, remote, "<message id='2'>ä</message>", 2_000).await;
    // A clock stepping back does not change the order: the id does.
    let third = enqueue(storage, remote, "<message id='3'/>", 500).await;
    assert!(first < second && second < third, "{first} {second} {third}");

    let oldest = queue.oldest(remote, None, 10).await.expect("oldest");
    assert_eq!(
        oldest.iter().map(|q| q.id).collect::<Vec<_>>(),
        [first, second, third]
    );
    assert_eq!(oldest[1].stanza, "<message id='2'>ä</message>");
    assert_eq!(oldest[1].sender, "alice@local.example");
    assert_eq!(oldest[1].enqueued_at_ms, 2_000);
    let page = queue.oldest(remote, None, 2).await.expect("limit");
    assert_eq!(
        page.iter().map(|q| q.id).collect::<Vec<_>>(),
        [first, second]
    );
    let after = queue.oldest(remote, Some(first), 10).await.expect("after");
    assert_eq!(
        after.iter().map(|q| q.id).collect::<Vec<_>>(),
        [second, third]
    );
    assert!(
        queue
            .oldest(remote, Some(third), 10)
            .await
            .expect("after the last")
            .is_empty()
    );
    // Bytes are UTF-8 bytes: 'ä' is two.
    assert_eq!(
        queue.usage(remote).await.expect("usage"),
        S2sQueueUsage {
            stanzas: 3,
            bytes: 17 + 28 + 17,
        }
    );
    assert_eq!(domains().await, [other, remote]);

    // Removal touches only the domain named: the other domain's id is ignored.
    let removed = queue
        .remove(remote, &[first, on_other, first + 1_000_000])
        .await
        .expect("remove");
    assert_eq!(removed, 1);
    assert_eq!(queue.remove(remote, &[]).await.expect("remove none"), 0);
    assert_eq!(stanzas_of(storage, other).await, ["<message id='x'/>"]);
    assert_eq!(
        stanzas_of(storage, remote).await,
        ["<message id='2'>ä</message>", "<message id='3'/>"]
    );

    // An append skips the cap but keeps the order and the usage.
    let appended = queue
        .append(other, "bob@local.example", "<message id='y'/>", 1_600)
        .await
        .expect("append");
    assert!(appended > on_other, "{appended} after {on_other}");
    let of_other = queue.oldest(other, None, 10).await.expect("other");
    assert_eq!(
        of_other
            .iter()
            .map(|q| (q.id, q.sender.as_str(), q.enqueued_at_ms))
            .collect::<Vec<_>>(),
        [
            (on_other, "alice@local.example", 1_500),
            (appended, "bob@local.example", 1_600)
        ]
    );
    assert_eq!(
        queue.usage(other).await.expect("usage").stanzas,
        2,
        "appended rows count"
    );
    queue
        .remove(other, &[appended])
        .await
        .expect("remove appended");

    // An id is never reused, even after the newest row is gone.
    queue.remove(remote, &[third]).await.expect("remove newest");
    let fourth = enqueue(storage, remote, "<message id='4'/>", 3_000).await;
    assert!(fourth > third, "{fourth} after {third}");

    // Taking by age: strictly before the cutoff, oldest first, and gone afterwards.
    enqueue(storage, remote, "<message id='5'/>", 1_000).await;
    let taken = queue
        .take_enqueued_before(remote, 2_001)
        .await
        .expect("take");
    assert_eq!(
        taken.iter().map(|q| q.stanza.as_str()).collect::<Vec<_>>(),
        ["<message id='2'>ä</message>", "<message id='5'/>"]
    );
    assert_eq!(stanzas_of(storage, remote).await, ["<message id='4'/>"]);
    assert!(
        queue
            .take_enqueued_before(remote, 3_000)
            .await
            .expect("take none")
            .is_empty()
    );
    let rest = queue
        .take_enqueued_before(remote, i64::MAX)
        .await
        .expect("take all");
    assert_eq!(rest.iter().map(|q| q.id).collect::<Vec<_>>(), [fourth]);
    assert_eq!(domains().await, [other]);

    // Many removals in one call (more than one statement's worth of ids).
    let bulk = "bulk.s2s.example";
    let mut ids = Vec::new();
    for n in 0..1_200 {
        ids.push(enqueue_roomy(storage, bulk, n).await);
    }
    assert_eq!(
        queue.remove(bulk, &ids[..1_100]).await.expect("bulk"),
        1_100
    );
    let left = queue.oldest(bulk, None, 1_000).await.expect("left");
    assert_eq!(left.iter().map(|q| q.id).collect::<Vec<_>>(), ids[1_100..]);
}

async fn enqueue_roomy(storage: &Storage, domain: &str, n: i64) -> i64 {
    let limits = S2sQueueLimits {
        max_stanzas: 10_000,
        max_bytes: 10_000_000,
    };
    match storage
        .s2s_queue
        .enqueue(domain, "bob@local.example", "<presence/>", n, limits)
        .await
        .expect("enqueue")
    {
        S2sEnqueue::Queued(id) => id,
        S2sEnqueue::Full => panic!("full"),
    }
}

/// The cap: a domain holds at most `max_stanzas` stanzas and `max_bytes` bytes; a refused enqueue
/// stores nothing; other domains have their own; removing makes room again.
pub async fn s2s_queue_limits(storage: &Storage) {
    let queue = &storage.s2s_queue;
    let domain = "capped.s2s.example";
    let limits = S2sQueueLimits {
        max_stanzas: 3,
        max_bytes: 30,
    };
    let ten = "<m>12345</m>"; // 12 bytes
    let put = |domain: &'static str, stanza: &'static str| {
        let queue = queue.clone();
        async move {
            queue
                .enqueue(domain, "alice@local.example", stanza, 1, limits)
                .await
                .expect("enqueue")
        }
    };
    assert!(matches!(put(domain, ten).await, S2sEnqueue::Queued(_)));
    assert!(matches!(put(domain, ten).await, S2sEnqueue::Queued(_)));
    // 24 + 12 > 30: refused on bytes.
    assert_eq!(put(domain, ten).await, S2sEnqueue::Full);
    // 24 + 6 = 30 fits exactly.
    let small = "<m1/>1"; // 6 bytes
    let S2sEnqueue::Queued(last) = put(domain, small).await else {
        panic!("exactly at the byte limit");
    };
    // Three stanzas: refused on count, even a tiny one.
    assert_eq!(put(domain, "").await, S2sEnqueue::Full);
    assert_eq!(
        queue.usage(domain).await.expect("usage"),
        S2sQueueUsage {
            stanzas: 3,
            bytes: 30
        }
    );
    assert!(matches!(
        put("elsewhere.s2s.example", ten).await,
        S2sEnqueue::Queued(_)
    ));
    queue.remove(domain, &[last]).await.expect("remove");
    assert!(matches!(put(domain, small).await, S2sEnqueue::Queued(_)));
}

/// Enqueues racing from many sessions never leave more than the cap queued, and the queue reads
/// back in id order.
pub async fn concurrent_s2s_enqueue(storage: &Storage) {
    const MAX: usize = 5;
    const ATTEMPTS: usize = 16;
    let domain = "busy.s2s.example";
    let limits = S2sQueueLimits {
        max_stanzas: MAX,
        max_bytes: 1_000_000,
    };
    let mut tasks = JoinSet::new();
    for n in 0..ATTEMPTS {
        let storage = storage.clone();
        tasks.spawn(async move {
            let stanza = format!("<message id='{n}'/>");
            storage
                .s2s_queue
                .enqueue(domain, "alice@local.example", &stanza, 1, limits)
                .await
                .expect("enqueue")
        });
    }
    let outcomes = tasks.join_all().await;
    let mut queued: Vec<i64> = outcomes
        .iter()
        .filter_map(|outcome| match outcome {
            S2sEnqueue::Queued(id) => Some(*id),
            S2sEnqueue::Full => None,
        })
        .collect();
    assert_eq!(queued.len(), MAX, "{outcomes:?}");
    queued.sort_unstable();
    let read: Vec<i64> = storage
        .s2s_queue
        .oldest(domain, None, 100)
        .await
        .expect("oldest")
        .iter()
        .map(|q| q.id)
        .collect();
    assert_eq!(read, queued);
}
