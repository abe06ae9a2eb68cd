//! The outbound queue against a scripted in-process dialer: timers on paused time (the store is in
//! memory so nothing waits on another thread), restarts and limits on SQLite.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};

use herald_storage::{S2sEnqueue, S2sQueueUsage, S2sQueued, Storage, StorageResult};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::time::timeout;

use super::*;
use crate::net::shutdown::ShutdownTrigger;

/// What the fakes saw, in the order it happened.
#[derive(Debug, Clone, PartialEq)]
enum Event {
    Dialed {
        link: usize,
        local: String,
        remote: String,
    },
    Sent {
        link: usize,
        stanza: String,
    },
    Closed {
        link: usize,
    },
    Bounced {
        stanza: String,
        condition: DefinedCondition,
    },
}

/// What one dial does.
#[derive(Debug, Clone)]
enum Dial {
    /// A link whose writes fail after this many succeeded (never with `None`).
    Connect {
        writes_before_failure: Option<usize>,
    },
    /// A link that never fails, after the dial took this long.
    SlowConnect(Duration),
    Fail(DialError),
    /// A bug in the streams: the domain task dies.
    Panic,
}

struct FakeDialer {
    /// Local domains whose dials fail as unreachable, whatever the script says (not consumed).
    unreachable_from: Mutex<HashSet<String>>,
    script: Mutex<VecDeque<Dial>>,
    otherwise: Dial,
    links: AtomicUsize,
    events: UnboundedSender<Event>,
}

#[async_trait]
impl Dialer for FakeDialer {
    async fn dial(
        &self,
        local_domain: &str,
        remote_domain: &str,
    ) -> Result<Box<dyn Link>, DialError> {
        let link = self.links.fetch_add(1, Ordering::SeqCst) + 1;
        let _ = self.events.send(Event::Dialed {
            link,
            local: local_domain.to_string(),
            remote: remote_domain.to_string(),
        });
        if self
            .unreachable_from
            .lock()
            .expect("unreachable_from")
            .contains(local_domain)
        {
            return Err(DialError::Unreachable("dialback refused".to_string()));
        }
        let step = self
            .script
            .lock()
            .expect("script")
            .pop_front()
            .unwrap_or_else(|| self.otherwise.clone());
        match step {
            Dial::Connect {
                writes_before_failure,
            } => Ok(Box::new(FakeLink {
                link,
                writes_left: writes_before_failure,
                events: self.events.clone(),
            })),
            Dial::SlowConnect(delay) => {
                tokio::time::sleep(delay).await;
                Ok(Box::new(FakeLink {
                    link,
                    writes_left: None,
                    events: self.events.clone(),
                }))
            }
            Dial::Fail(error) => Err(error),
            Dial::Panic => panic!("dialer bug (expected by the test)"),
        }
    }
}

struct FakeLink {
    link: usize,
    writes_left: Option<usize>,
    events: UnboundedSender<Event>,
}

#[async_trait]
impl Link for FakeLink {
    async fn send(&mut self, stanza: &str) -> Result<(), LinkError> {
        if let Some(left) = self.writes_left.as_mut() {
            if *left == 0 {
                return Err(LinkError("connection reset".to_string()));
            }
            *left -= 1;
        }
        let _ = self.events.send(Event::Sent {
            link: self.link,
            stanza: stanza.to_string(),
        });
        Ok(())
    }

    async fn close(self: Box<Self>) {
        let _ = self.events.send(Event::Closed { link: self.link });
    }
}

struct FakeBounces(UnboundedSender<Event>);

impl BounceSink for FakeBounces {
    fn bounce(&self, stanza: &str, condition: DefinedCondition) {
        let _ = self.0.send(Event::Bounced {
            stanza: stanza.to_string(),
            condition,
        });
    }
}

/// The [`S2sQueue`] contract in memory: never waits, so paused time only moves when the queue
/// itself waits.
#[derive(Default)]
struct MemoryQueue {
    rows: Mutex<Vec<(String, S2sQueued)>>,
    next_id: AtomicUsize,
}

#[async_trait]
impl S2sQueue for MemoryQueue {
    async fn enqueue(
        &self,
        domain: &str,
        sender: &str,
        stanza: &str,
        enqueued_at_ms: i64,
        limits: S2sQueueLimits,
    ) -> StorageResult<S2sEnqueue> {
        let mut rows = self.rows.lock().expect("rows");
        let mine = rows.iter().filter(|(d, _)| d == domain);
        let (count, bytes) = mine.fold((0, 0), |(c, b), (_, q)| (c + 1, b + q.stanza.len()));
        if count >= limits.max_stanzas || bytes + stanza.len() > limits.max_bytes {
            return Ok(S2sEnqueue::Full);
        }
        let id = i64::try_from(self.next_id.fetch_add(1, Ordering::SeqCst) + 1).unwrap_or(0);
        rows.push((
            domain.to_string(),
            S2sQueued {
                id,
                sender: sender.to_string(),
                stanza: stanza.to_string(),
                enqueued_at_ms,
            },
        ));
        Ok(S2sEnqueue::Queued(id))
    }

    async fn append(
        &self,
        domain: &str,
        sender: &str,
        stanza: &str,
        enqueued_at_ms: i64,
    ) -> StorageResult<i64> {
        let mut rows = self.rows.lock().expect("rows");
        let id = i64::try_from(self.next_id.fetch_add(1, Ordering::SeqCst) + 1).unwrap_or(0);
        rows.push((
            domain.to_string(),
            S2sQueued {
                id,
                sender: sender.to_string(),
                stanza: stanza.to_string(),
                enqueued_at_ms,
            },
        ));
        Ok(id)
    }

    async fn oldest(
        &self,
        domain: &str,
        after_id: Option<i64>,
        limit: usize,
    ) -> StorageResult<Vec<S2sQueued>> {
        let rows = self.rows.lock().expect("rows");
        Ok(rows
            .iter()
            .filter(|(d, q)| d == domain && after_id.is_none_or(|after| q.id > after))
            .take(limit)
            .map(|(_, q)| q.clone())
            .collect())
    }

    async fn remove(&self, domain: &str, ids: &[i64]) -> StorageResult<u64> {
        let mut rows = self.rows.lock().expect("rows");
        let before = rows.len();
        rows.retain(|(d, q)| d != domain || !ids.contains(&q.id));
        Ok((before - rows.len()) as u64)
    }

    async fn take_enqueued_before(
        &self,
        domain: &str,
        cutoff_ms: i64,
    ) -> StorageResult<Vec<S2sQueued>> {
        let mut rows = self.rows.lock().expect("rows");
        let (taken, kept) = rows
            .drain(..)
            .partition(|(d, q)| d == domain && q.enqueued_at_ms < cutoff_ms);
        *rows = kept;
        Ok(taken
            .into_iter()
            .map(|(_, q): (String, S2sQueued)| q)
            .collect())
    }

    async fn domains(&self) -> StorageResult<Vec<String>> {
        let rows = self.rows.lock().expect("rows");
        let mut domains: Vec<String> = rows.iter().map(|(d, _)| d.clone()).collect();
        domains.sort();
        domains.dedup();
        Ok(domains)
    }

    async fn usage(&self, domain: &str) -> StorageResult<S2sQueueUsage> {
        let rows = self.rows.lock().expect("rows");
        let mine: Vec<&S2sQueued> = rows
            .iter()
            .filter(|(d, _)| d == domain)
            .map(|(_, q)| q)
            .collect();
        Ok(S2sQueueUsage {
            stanzas: mine.len() as u64,
            bytes: mine.iter().map(|q| q.stanza.len() as u64).sum(),
        })
    }
}

/// A [`MemoryQueue`] that counts the calls made to it.
#[derive(Default)]
struct CountingQueue {
    inner: MemoryQueue,
    /// `oldest`, `take_enqueued_before`, `domains` and `usage`.
    reads: AtomicUsize,
    /// `enqueue` and `append`.
    inserts: AtomicUsize,
}

impl CountingQueue {
    fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }

    fn inserts(&self) -> usize {
        self.inserts.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl S2sQueue for CountingQueue {
    async fn enqueue(
        &self,
        domain: &str,
        sender: &str,
        stanza: &str,
        enqueued_at_ms: i64,
        limits: S2sQueueLimits,
    ) -> StorageResult<S2sEnqueue> {
        self.inserts.fetch_add(1, Ordering::SeqCst);
        self.inner
            .enqueue(domain, sender, stanza, enqueued_at_ms, limits)
            .await
    }

    async fn append(
        &self,
        domain: &str,
        sender: &str,
        stanza: &str,
        enqueued_at_ms: i64,
    ) -> StorageResult<i64> {
        self.inserts.fetch_add(1, Ordering::SeqCst);
        self.inner
            .append(domain, sender, stanza, enqueued_at_ms)
            .await
    }

    async fn oldest(
        &self,
        domain: &str,
        after_id: Option<i64>,
        limit: usize,
    ) -> StorageResult<Vec<S2sQueued>> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.oldest(domain, after_id, limit).await
    }

    async fn remove(&self, domain: &str, ids: &[i64]) -> StorageResult<u64> {
        self.inner.remove(domain, ids).await
    }

    async fn take_enqueued_before(
        &self,
        domain: &str,
        cutoff_ms: i64,
    ) -> StorageResult<Vec<S2sQueued>> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.take_enqueued_before(domain, cutoff_ms).await
    }

    async fn domains(&self) -> StorageResult<Vec<String>> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.domains().await
    }

    async fn usage(&self, domain: &str) -> StorageResult<S2sQueueUsage> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.usage(domain).await
    }
}

fn settings() -> QueueSettings {
    let mut settings = QueueSettings::new(
        Duration::from_secs(300),
        Duration::from_secs(600),
        S2sQueueLimits {
            max_stanzas: 100,
            max_bytes: 100_000,
        },
    );
    settings.retry = RetryPolicy {
        initial: Duration::from_secs(2),
        max: Duration::from_secs(60),
        jitter: 0.5,
    };
    settings
}

struct Harness {
    queue: OutboundQueue,
    events: UnboundedReceiver<Event>,
    dialer: Arc<FakeDialer>,
    trigger: ShutdownTrigger,
    on_paused_time: bool,
}

fn harness(
    store: Arc<dyn S2sQueue>,
    settings: QueueSettings,
    script: Vec<Dial>,
    otherwise: Dial,
) -> Harness {
    let (sender, events) = unbounded_channel();
    let dialer = Arc::new(FakeDialer {
        unreachable_from: Mutex::new(HashSet::new()),
        script: Mutex::new(script.into()),
        otherwise,
        links: AtomicUsize::new(0),
        events: sender.clone(),
    });
    let (trigger, shutdown) = Shutdown::new();
    let queue = OutboundQueue::new(
        store,
        dialer.clone(),
        Arc::new(FakeBounces(sender)),
        settings,
        shutdown,
    );
    Harness {
        queue,
        events,
        dialer,
        trigger,
        on_paused_time: false,
    }
}

/// A harness for a test on paused time.
fn paused(
    store: Arc<dyn S2sQueue>,
    settings: QueueSettings,
    script: Vec<Dial>,
    otherwise: Dial,
) -> Harness {
    Harness {
        on_paused_time: true,
        ..harness(store, settings, script, otherwise)
    }
}

const CONNECT: Dial = Dial::Connect {
    writes_before_failure: None,
};

fn unreachable() -> Dial {
    Dial::Fail(DialError::Unreachable("connection refused".to_string()))
}

fn message(n: u32) -> String {
    format!(
        "<message xmlns='jabber:server' from='alice@a.test/phone' to='bob@b.test' \
         id='m{n}' type='chat'><body>{n}</body></message>"
    )
}

impl Harness {
    async fn submit(&self, stanza: &str) {
        self.queue
            .submit("a.test", "b.test", "alice@a.test/phone", stanza)
            .await
            .expect("queued");
    }

    /// The next event; a missing one fails the test instead of hanging it (on paused time the
    /// hour passes at once once nothing else is waiting, so it must exceed every test's timers).
    async fn next(&mut self) -> Event {
        timeout(self.patience(), self.events.recv())
            .await
            .expect("an event in time")
            .expect("an event")
    }

    /// Waits for every domain task to end, failing rather than hanging.
    async fn stopped(&self) {
        timeout(self.patience(), self.queue.stopped())
            .await
            .expect("the domain tasks ended in time");
    }

    fn patience(&self) -> Duration {
        if self.on_paused_time {
            Duration::from_secs(3600)
        } else {
            Duration::from_secs(20)
        }
    }

    fn nothing_more(&mut self) {
        assert_eq!(self.events.try_recv().ok(), None);
    }
}

fn dialed(link: usize) -> Event {
    Event::Dialed {
        link,
        local: "a.test".to_string(),
        remote: "b.test".to_string(),
    }
}

fn sent(link: usize, n: u32) -> Event {
    Event::Sent {
        link,
        stanza: message(n),
    }
}

fn bounced(n: u32, condition: DefinedCondition) -> Event {
    Event::Bounced {
        stanza: message(n),
        condition,
    }
}

#[tokio::test(start_paused = true)]
async fn delivers_in_order_reuses_the_busy_link_and_closes_it_when_idle() {
    let store = Arc::new(MemoryQueue::default());
    let mut h = paused(store.clone(), settings(), vec![], CONNECT);
    for n in 1..=3 {
        h.submit(&message(n)).await;
    }
    assert_eq!(h.next().await, dialed(1));
    for n in 1..=3 {
        assert_eq!(h.next().await, sent(1, n));
    }
    h.submit(&message(4)).await;
    assert_eq!(h.next().await, sent(1, 4), "the open link is reused");
    let last_write = Instant::now();
    assert_eq!(h.next().await, Event::Closed { link: 1 });
    assert_eq!(last_write.elapsed(), settings().idle_timeout);
    h.stopped().await;
    assert!(store.domains().await.expect("domains").is_empty());
    assert_eq!(h.dialer.links.load(Ordering::SeqCst), 1);
    h.nothing_more();
}

#[tokio::test(start_paused = true)]
async fn a_failed_dial_is_retried_after_the_backoff() {
    let store = Arc::new(MemoryQueue::default());
    let script = vec![
        unreachable(),
        Dial::Fail(DialError::Rejected("dialback failed".to_string())),
    ];
    let mut h = paused(store.clone(), settings(), script, CONNECT);
    let start = Instant::now();
    h.submit(&message(1)).await;
    assert_eq!(h.next().await, dialed(1));
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(h.next().await, dialed(2));
    let first_wait = start.elapsed();
    let (shortest, longest) = settings().retry.bounds(1);
    assert!(
        shortest <= first_wait && first_wait <= longest,
        "{first_wait:?}"
    );
    assert_eq!(h.next().await, dialed(3));
    let second_wait = start.elapsed() - first_wait;
    let (shortest, longest) = settings().retry.bounds(2);
    assert!(
        shortest <= second_wait && second_wait <= longest,
        "{second_wait:?}"
    );
    assert_eq!(h.next().await, sent(3, 1));
    assert!(store.domains().await.expect("domains").is_empty());
}

#[tokio::test(start_paused = true)]
async fn stanzas_bounce_with_remote_server_timeout_once_they_waited_the_queue_timeout() {
    let store = Arc::new(MemoryQueue::default());
    let mut settings = settings();
    settings.queue_timeout = Duration::from_secs(10);
    settings.retry = RetryPolicy {
        initial: Duration::from_secs(4),
        max: Duration::from_secs(4),
        jitter: 0.0,
    };
    let mut h = paused(store.clone(), settings, vec![], unreachable());
    let start = Instant::now();
    h.submit(&message(1)).await;
    assert_eq!(h.next().await, dialed(1));
    tokio::time::advance(Duration::from_secs(5)).await;
    h.submit(&message(2)).await;
    // Attempts every 4 seconds; each stanza bounces the moment it has waited 10, between them.
    assert_eq!(h.next().await, dialed(2));
    assert_eq!(h.next().await, dialed(3));
    assert_eq!(
        h.next().await,
        bounced(1, DefinedCondition::RemoteServerTimeout)
    );
    let waited = start.elapsed();
    assert!(
        Duration::from_secs(10) < waited && waited <= Duration::from_millis(10_002),
        "{waited:?}"
    );
    assert_eq!(h.next().await, dialed(4));
    assert_eq!(
        h.next().await,
        bounced(2, DefinedCondition::RemoteServerTimeout)
    );
    let waited = start.elapsed();
    assert!(
        Duration::from_secs(15) < waited && waited <= Duration::from_millis(15_002),
        "{waited:?}"
    );
    h.stopped().await;
    assert!(store.domains().await.expect("domains").is_empty());
    h.nothing_more();
}

#[tokio::test(start_paused = true)]
async fn not_found_bounces_everything_at_once_but_never_an_error_stanza() {
    let store = Arc::new(MemoryQueue::default());
    let mut h = paused(
        store.clone(),
        settings(),
        vec![],
        Dial::Fail(DialError::NotFound),
    );
    let start = Instant::now();
    h.submit(&message(1)).await;
    let error = "<message xmlns='jabber:server' from='alice@a.test/phone' to='bob@b.test' \
                 type='error'><error type='cancel'/></message>";
    h.submit(error).await;
    h.submit(&message(2)).await;
    assert_eq!(h.next().await, dialed(1));
    assert_eq!(
        h.next().await,
        bounced(1, DefinedCondition::RemoteServerNotFound)
    );
    assert_eq!(
        h.next().await,
        bounced(2, DefinedCondition::RemoteServerNotFound)
    );
    assert_eq!(start.elapsed(), Duration::ZERO);
    h.stopped().await;
    assert!(store.domains().await.expect("domains").is_empty());
    h.nothing_more();
}

#[tokio::test(start_paused = true)]
async fn a_lost_link_is_redialed_at_once_and_nothing_is_lost() {
    let store = Arc::new(MemoryQueue::default());
    let script = vec![Dial::Connect {
        writes_before_failure: Some(2),
    }];
    let mut h = paused(store.clone(), settings(), script, CONNECT);
    let start = Instant::now();
    for n in 1..=4 {
        h.submit(&message(n)).await;
    }
    assert_eq!(h.next().await, dialed(1));
    assert_eq!(h.next().await, sent(1, 1));
    assert_eq!(h.next().await, sent(1, 2));
    assert_eq!(h.next().await, dialed(2));
    assert_eq!(h.next().await, sent(2, 3));
    assert_eq!(h.next().await, sent(2, 4));
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert!(store.domains().await.expect("domains").is_empty());
}

#[tokio::test(start_paused = true)]
async fn shutdown_closes_the_link_and_keeps_what_is_queued() {
    let store = Arc::new(MemoryQueue::default());
    let mut h = paused(store.clone(), settings(), vec![], CONNECT);
    h.submit(&message(1)).await;
    assert_eq!(h.next().await, dialed(1));
    assert_eq!(h.next().await, sent(1, 1));
    h.trigger.trigger();
    assert_eq!(h.next().await, Event::Closed { link: 1 });
    h.stopped().await;
    // After shutdown stanzas are still stored (for the next start) but no task is started.
    h.submit(&message(2)).await;
    assert_eq!(store.domains().await.expect("domains"), ["b.test"]);
    h.nothing_more();
}

#[tokio::test(start_paused = true)]
async fn each_local_domain_gets_its_own_link_to_the_remote_domain() {
    let store = Arc::new(MemoryQueue::default());
    let mut h = paused(store.clone(), settings(), vec![], CONNECT);
    h.submit(&message(1)).await;
    let from_other = "<message xmlns='jabber:server' from='news@other.test' to='bob@b.test'/>";
    h.queue
        .submit("other.test", "B.test", "news@other.test", from_other)
        .await
        .expect("queued");
    h.submit(&message(2)).await;
    assert_eq!(h.next().await, dialed(1));
    assert_eq!(h.next().await, sent(1, 1));
    assert_eq!(
        h.next().await,
        Event::Dialed {
            link: 2,
            local: "other.test".to_string(),
            remote: "b.test".to_string(),
        }
    );
    assert_eq!(
        h.next().await,
        Event::Sent {
            link: 2,
            stanza: from_other.to_string(),
        }
    );
    assert_eq!(h.next().await, sent(1, 2));
}

#[tokio::test(start_paused = true)]
async fn one_local_domain_failing_to_dial_does_not_hold_back_another_local_domain() {
    let store = Arc::new(MemoryQueue::default());
    let mut h = paused(store.clone(), settings(), vec![], CONNECT);
    h.dialer
        .unreachable_from
        .lock()
        .expect("unreachable_from")
        .insert("push.a.test".to_string());
    let from_push = "<iq xmlns='jabber:server' from='push.a.test' to='bob@b.test/p' id='r1' \
                     type='result'/>";
    let dialed_from_push = |link| Event::Dialed {
        link,
        local: "push.a.test".to_string(),
        remote: "b.test".to_string(),
    };
    let start = Instant::now();
    h.queue
        .submit("push.a.test", "b.test", "push.a.test", from_push)
        .await
        .expect("queued");
    h.submit(&message(1)).await;
    assert_eq!(h.next().await, dialed_from_push(1));
    assert_eq!(
        h.next().await,
        dialed(2),
        "not after the push domain's backoff"
    );
    assert_eq!(h.next().await, sent(2, 1));
    assert_eq!(start.elapsed(), Duration::ZERO);
    // While the push domain's link backs off, a.test's stanzas still go out at once.
    tokio::time::advance(Duration::from_millis(500)).await;
    h.submit(&message(2)).await;
    assert_eq!(h.next().await, sent(2, 2));
    assert_eq!(start.elapsed(), Duration::from_millis(500));
    // The push domain's link is retried after its own backoff and delivers in turn.
    h.dialer
        .unreachable_from
        .lock()
        .expect("unreachable_from")
        .clear();
    assert_eq!(h.next().await, dialed_from_push(3));
    let waited = start.elapsed();
    let (shortest, longest) = settings().retry.bounds(1);
    assert!(shortest <= waited && waited <= longest, "{waited:?}");
    assert_eq!(
        h.next().await,
        Event::Sent {
            link: 3,
            stanza: from_push.to_string(),
        }
    );
    assert!(store.domains().await.expect("domains").is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_task_that_died_is_replaced_by_the_next_submit() {
    let store = Arc::new(MemoryQueue::default());
    let mut h = paused(store.clone(), settings(), vec![Dial::Panic], CONNECT);
    h.submit(&message(1)).await;
    assert_eq!(h.next().await, dialed(1));
    h.stopped().await;
    h.submit(&message(2)).await;
    assert_eq!(h.next().await, dialed(2));
    assert_eq!(h.next().await, sent(2, 1));
    assert_eq!(h.next().await, sent(2, 2));
}

#[tokio::test]
async fn a_new_queue_over_the_same_sqlite_file_delivers_what_the_first_left() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", directory.path().join("herald.db").display());
    let mut patient = settings();
    patient.retry.initial = Duration::from_secs(3600);
    patient.retry.max = Duration::from_secs(3600);

    let first = Storage::connect(&url).await.expect("storage");
    let mut h = harness(first.s2s_queue.clone(), patient, vec![], unreachable());
    for n in 1..=3 {
        h.submit(&message(n)).await;
    }
    assert_eq!(h.next().await, dialed(1));
    h.trigger.trigger();
    h.stopped().await;

    let second = Storage::connect(&url).await.expect("storage again");
    let mut quick = settings();
    quick.idle_timeout = Duration::from_millis(20);
    let mut h = harness(second.s2s_queue.clone(), quick, vec![], CONNECT);
    h.queue.resume().await.expect("resume");
    assert_eq!(h.next().await, dialed(1));
    for n in 1..=3 {
        assert_eq!(h.next().await, sent(1, n));
    }
    assert_eq!(h.next().await, Event::Closed { link: 1 });
    h.stopped().await;
    assert!(
        second
            .s2s_queue
            .domains()
            .await
            .expect("domains")
            .is_empty()
    );
}

#[tokio::test]
async fn a_full_queue_refuses_with_resource_constraint() {
    let storage = Storage::connect("sqlite::memory:").await.expect("storage");
    let mut limited = settings();
    limited.limits.max_stanzas = 2;
    limited.retry.initial = Duration::from_secs(3600);
    let h = harness(storage.s2s_queue.clone(), limited, vec![], unreachable());
    h.submit(&message(1)).await;
    h.submit(&message(2)).await;
    let refused = h
        .queue
        .submit("a.test", "b.test", "alice@a.test/phone", &message(3))
        .await;
    assert!(
        matches!(&refused, Err(SubmitError::Full(domain)) if domain == "b.test"),
        "{refused:?}"
    );
    assert_eq!(
        refused.map_err(|e| e.condition()),
        Err(DefinedCondition::ResourceConstraint)
    );
    let foreign = h
        .queue
        .submit("a.test", "b.test", "mallory@c.test", &message(4))
        .await;
    assert!(matches!(foreign, Err(SubmitError::ForeignSender { .. })));
    let usage = storage.s2s_queue.usage("b.test").await.expect("usage");
    assert_eq!(usage.stanzas, 2);
}

#[tokio::test(start_paused = true)]
async fn stanzas_stored_while_dialing_go_first_and_later_ones_skip_storage() {
    let store = Arc::new(CountingQueue::default());
    let script = vec![Dial::SlowConnect(Duration::from_secs(1))];
    let mut h = paused(store.clone(), settings(), script, CONNECT);
    h.submit(&message(1)).await;
    assert_eq!(h.next().await, dialed(1));
    // The dial takes a second: these wait in storage behind the first.
    h.submit(&message(2)).await;
    h.submit(&message(3)).await;
    for n in 1..=3 {
        assert_eq!(h.next().await, sent(1, n));
    }
    assert_eq!(store.inserts(), 3);
    // The link is proven and nothing waits: the next ones go straight to it, in order, and
    // what was handed off together is written together.
    for n in 4..=6 {
        h.submit(&message(n)).await;
    }
    assert_eq!(
        h.next().await,
        Event::Sent {
            link: 1,
            stanza: (4..=6).map(message).collect(),
        }
    );
    assert_eq!(store.inserts(), 3, "handed off, never stored");
    assert!(store.domains().await.expect("domains").is_empty());
}

#[tokio::test(start_paused = true)]
async fn handed_off_stanzas_of_a_failing_link_go_back_to_storage_and_out_on_the_next() {
    let store = Arc::new(CountingQueue::default());
    // The first stream takes three writes, then breaks.
    let script = vec![Dial::Connect {
        writes_before_failure: Some(3),
    }];
    let mut h = paused(store.clone(), settings(), script, CONNECT);
    h.submit(&message(1)).await;
    assert_eq!(h.next().await, dialed(1));
    assert_eq!(h.next().await, sent(1, 1));
    // Handed off one by one: each is its own write.
    h.submit(&message(2)).await;
    assert_eq!(h.next().await, sent(1, 2));
    h.submit(&message(3)).await;
    assert_eq!(h.next().await, sent(1, 3));
    assert_eq!(store.inserts(), 1);
    // Three more handed off at once; the stream breaks writing them.
    for n in 4..=6 {
        h.submit(&message(n)).await;
    }
    assert_eq!(
        h.next().await,
        dialed(2),
        "a proven stream is redialed at once"
    );
    assert_eq!(store.inserts(), 1 + 3, "the three were put back in storage");
    // One submitted now comes after them, whether stored or handed off.
    h.submit(&message(7)).await;
    for n in 4..=7 {
        assert_eq!(h.next().await, sent(2, n));
    }
    assert!(store.domains().await.expect("domains").is_empty());
    h.nothing_more();
}

#[tokio::test(start_paused = true)]
async fn submits_while_the_link_backs_off_do_not_read_storage() {
    let store = Arc::new(CountingQueue::default());
    let mut patient = settings();
    patient.retry.initial = Duration::from_secs(3600);
    patient.retry.max = Duration::from_secs(3600);
    patient.queue_timeout = Duration::from_secs(7200);
    let mut h = paused(store.clone(), patient, vec![], unreachable());
    h.submit(&message(1)).await;
    assert_eq!(h.next().await, dialed(1));
    // Let the task settle into its backoff.
    tokio::time::sleep(Duration::from_millis(10)).await;
    let reads = store.reads();
    for n in 2..=50 {
        h.submit(&message(n)).await;
        // The task sees each wake before the next submit.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(store.reads(), reads, "no storage read per submit");
    assert_eq!(store.inserts(), 50);
    h.nothing_more();
}

#[test]
fn error_stanzas_are_recognised_with_or_without_their_namespace() {
    let table = [
        ("<message xmlns='jabber:server' type='error'/>", true),
        (
            "<message type='error' to='b.test'><error type='cancel'/></message>",
            true,
        ),
        ("<iq type='error' id='1'/>", true),
        ("<message xmlns='jabber:server' type='chat'/>", false),
        ("<presence/>", false),
        ("not xml", false),
    ];
    for (stanza, expected) in table {
        assert_eq!(is_error_stanza(stanza), expected, "{stanza}");
    }
}

/// A message to bob of about `size` bytes, numbered `n`.
fn sized_message(n: u32, size: usize) -> String {
    let body = "x".repeat(size);
    format!(
        "<message xmlns='jabber:server' from='alice@a.test/phone' to='bob@b.test' \
         id='m{n}' type='chat'><body>{n}{body}</body></message>"
    )
}

/// Submits `stanzas` without yielding (the domain task cannot take any meanwhile), then reads
/// what the link wrote until it wrote them all; they must come out in order, whatever mix of
/// hand-off and storage they took.
async fn burst_then_written_in_order(h: &mut Harness, stanzas: &[String]) {
    for stanza in stanzas {
        h.submit(stanza).await;
    }
    let expected: String = stanzas.concat();
    let mut written = String::new();
    while written.len() < expected.len() {
        match h.next().await {
            Event::Sent { link: 1, stanza } => written.push_str(&stanza),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(written == expected, "written in submit order");
}

#[tokio::test(start_paused = true)]
async fn a_burst_to_a_busy_link_stays_in_memory() {
    let store = Arc::new(CountingQueue::default());
    let mut roomy = settings();
    roomy.limits.max_stanzas = 10_000;
    roomy.limits.max_bytes = 10_000_000;
    let mut h = paused(store.clone(), roomy, vec![], CONNECT);
    h.submit(&message(0)).await;
    assert_eq!(h.next().await, dialed(1));
    assert_eq!(h.next().await, sent(1, 0));
    assert_eq!(store.inserts(), 1, "the first waited for the dial");
    // A few thousand stanzas arriving while the task is busy (a scheduling stall of a link
    // carrying several thousand stanzas a second): within the hand-off, nothing is stored.
    let burst: Vec<String> = (1..=2000).map(message).collect();
    burst_then_written_in_order(&mut h, &burst).await;
    assert_eq!(store.inserts(), 1, "the burst never touched storage");
    h.nothing_more();
}

#[tokio::test(start_paused = true)]
async fn the_hand_off_is_bounded_in_bytes_and_what_does_not_fit_is_stored_behind_it() {
    let store = Arc::new(CountingQueue::default());
    let mut roomy = settings();
    roomy.limits.max_stanzas = 10_000;
    roomy.limits.max_bytes = 100_000_000;
    let mut h = paused(store.clone(), roomy, vec![], CONNECT);
    h.submit(&message(0)).await;
    assert_eq!(h.next().await, dialed(1));
    assert_eq!(h.next().await, sent(1, 0));
    let size = 100_000;
    let fit = HANDOFF_BYTES / sized_message(1, size).len();
    assert!(fit < HANDOFF_CAPACITY, "the byte bound is the one tested");
    let burst: Vec<String> = (1..=fit as u32 + 5)
        .map(|n| sized_message(n, size))
        .collect();
    burst_then_written_in_order(&mut h, &burst).await;
    assert_eq!(
        store.inserts(),
        1 + 5,
        "what exceeded the hand-off's bytes was stored"
    );
    assert!(store.domains().await.expect("domains").is_empty());
    h.nothing_more();
}

#[tokio::test(start_paused = true)]
async fn the_hand_offs_of_all_domains_share_one_byte_bound() {
    let store = Arc::new(CountingQueue::default());
    let mut roomy = settings();
    roomy.limits.max_stanzas = 10_000;
    roomy.limits.max_bytes = 100_000_000;
    let size = 100_000;
    let one = sized_message(1, size).len();
    roomy.handoff = HandoffLimits {
        per_domain: 8 * one,
        all: 10 * one,
    };
    let mut h = paused(store.clone(), roomy, vec![], CONNECT);
    // Both links up (each first stanza waits for its dial in storage).
    h.submit(&message(0)).await;
    assert_eq!(h.next().await, dialed(1));
    assert_eq!(h.next().await, sent(1, 0));
    h.queue
        .submit("a.test", "c.test", "alice@a.test/phone", &message(0))
        .await
        .expect("queued");
    assert!(matches!(h.next().await, Event::Dialed { link: 2, .. }));
    assert_eq!(h.next().await, sent(2, 0));
    assert_eq!(store.inserts(), 2);
    // Without yielding: 8 fill b.test's hand-off; of 8 for c.test, 2 fit in what is left of the
    // shared bound and 6 are stored behind them.
    let burst: Vec<String> = (1..=8).map(|n| sized_message(n, size)).collect();
    for stanza in &burst {
        h.submit(stanza).await;
    }
    for stanza in &burst {
        h.queue
            .submit("a.test", "c.test", "alice@a.test/phone", stanza)
            .await
            .expect("queued");
    }
    assert_eq!(
        store.inserts(),
        2 + 6,
        "past the shared bound, stanzas are stored"
    );
    let expected = burst.concat();
    let (mut to_b, mut to_c) = (String::new(), String::new());
    while to_b.len() < expected.len() || to_c.len() < expected.len() {
        match h.next().await {
            Event::Sent { link: 1, stanza } => to_b.push_str(&stanza),
            Event::Sent { link: 2, stanza } => to_c.push_str(&stanza),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        to_b == expected && to_c == expected,
        "each link in submit order"
    );
    // Written out, the hand-offs count nothing: a second burst to c.test fits its own bound.
    for stanza in &burst {
        h.queue
            .submit("a.test", "c.test", "alice@a.test/phone", stanza)
            .await
            .expect("queued");
    }
    assert_eq!(store.inserts(), 2 + 6, "the shared bound was given back");
    let mut again = String::new();
    while again.len() < expected.len() {
        match h.next().await {
            Event::Sent { link: 2, stanza } => again.push_str(&stanza),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(again == expected);
    h.nothing_more();
}
