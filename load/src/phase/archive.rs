//! Archive queries (XEP-0313 Message Archive Management): one user's archive is filled through XMPP
//! with messages exchanged with several contacts (RFC 6121 section 5 chat messages, both directions),
//! then the latency of page queries (XEP-0059 paging, `max` messages per page) is measured: the first
//! page, a middle page (`after` the id in the middle) and the last page (empty `before`), each over the
//! whole archive and filtered `with` one contact.
//!
//! Users are `{prefix}mam0` (the owner) and `{prefix}mam1..=contacts`, registered in-band here (an
//! existing account counts as registered), so the phase runs on its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::mam::{self, ArchivedItem, Page};
use super::{NamedLatency, PhaseReport, Target};
use crate::client::{ClientError, SessionReader, SessionWriter, TlsSession, TlsSocket};
use crate::stats::{ErrorCounts, Latency};

/// What to fill and how to query.
#[derive(Debug, Clone)]
pub struct ArchivePlan {
    /// Messages in the owner's archive (half sent by the owner, half received).
    pub messages: usize,
    /// Contacts the owner exchanges messages with.
    pub contacts: usize,
    /// Sessions (resources) the owner sends from; each server limits what one session may send per
    /// second (Herald: 200 stanzas/s by default), so the owner's half is spread over several.
    pub owner_resources: usize,
    /// Messages sent per second during the fill, over all senders.
    pub fill_rate: f64,
    /// Messages sent but not yet delivered at most, so a slow server is not buried.
    pub window: usize,
    /// Timed queries of each kind.
    pub iterations: usize,
    /// Queries started per second at most (one session; also under the per-session stanza limit).
    pub query_rate: f64,
    /// RSM `<max/>` of every page.
    pub page: usize,
    /// How long to wait for the fill to be delivered, then archived.
    pub settle: Duration,
}

/// The six query kinds, in the order they are run and reported.
const KINDS: [(&str, bool, Position); 6] = [
    ("first page", false, Position::First),
    ("middle page", false, Position::Middle),
    ("last page", false, Position::Last),
    ("first page with=contact", true, Position::First),
    ("middle page with=contact", true, Position::Middle),
    ("last page with=contact", true, Position::Last),
];

#[derive(Debug, Clone, Copy)]
enum Position {
    First,
    Middle,
    Last,
}

/// A query to time and the archive id its page must start with.
struct TimedQuery {
    name: &'static str,
    with: Option<String>,
    page: Page,
    expected_first: String,
    samples: Vec<u64>,
    errors: ErrorCounts,
}

/// The localpart of archive user `n` (0 is the owner).
fn username(target: &Target, n: usize) -> String {
    format!("{}mam{n}", target.prefix)
}

fn bare_jid(target: &Target, n: usize) -> String {
    format!("{}@{}", username(target, n), target.connector.domain())
}

async fn login(target: &Target, n: usize, resource: &str) -> Result<TlsSession, ClientError> {
    target.login_as(&username(target, n), n, resource).await
}

/// The sender and recipient (user numbers, owner resource) of fill message `i`: even messages go from
/// the owner to a contact, odd ones back, contacts taken in turn.
fn fill_route(i: usize, contacts: usize, owner_resources: usize) -> FillRoute {
    let contact = 1 + (i / 2) % contacts;
    if i.is_multiple_of(2) {
        FillRoute::FromOwner {
            resource: (contact - 1) % owner_resources,
            to: contact,
        }
    } else {
        FillRoute::ToOwner { from: contact }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum FillRoute {
    FromOwner { resource: usize, to: usize },
    ToOwner { from: usize },
}

fn fill_body(i: usize) -> String {
    format!("archive fill {i}")
}

/// Counts delivered fill messages.
#[derive(Default)]
struct Delivered {
    count: AtomicU64,
    errors: std::sync::Mutex<ErrorCounts>,
    arrived: Notify,
}

/// Registers, fills, waits for the archive, then times the queries.
pub async fn run(target: &Target, plan: &ArchivePlan) -> PhaseReport {
    let mut report = PhaseReport {
        name: "archive".into(),
        available: true,
        ..PhaseReport::default()
    };
    let contacts = plan.contacts.max(1);
    let owner_resources = plan.owner_resources.max(1);
    for n in 0..=contacts {
        let user = username(target, n);
        if let Err(e) = target
            .connector
            .register(&user, &target.password, target.source_ip(n))
            .await
        {
            report.errors.add(e.kind());
            report.note = format!("registering {user} failed: {e}");
            return report;
        }
    }
    let owner = bare_jid(target, 0);

    // Fill.
    let fill = match fill(target, plan, contacts, owner_resources).await {
        Ok(fill) => fill,
        Err(e) => {
            report.errors.add(e.kind());
            report.note = format!("fill failed: {e}");
            return report;
        }
    };
    report.attempted = plan.messages as u64;
    report.errors.merge(&fill.errors);
    let fill_seconds = fill.elapsed.as_secs_f64();

    // Wait until the last fill message is archived, then walk the whole archive once.
    let mut session = match login(target, 0, "mam").await {
        Ok(s) => s,
        Err(e) => {
            report.errors.add(e.kind());
            report.note = format!("owner login for queries failed: {e}");
            return report;
        }
    };
    let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / plan.query_rate.max(1.0)));
    pace.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut query_no = 0u64;
    let last_body = fill_body(plan.messages.saturating_sub(1));
    let settle_until = Instant::now() + plan.settle;
    let waited = Instant::now();
    let mut newest: Option<String> = None;
    loop {
        pace.tick().await;
        query_no += 1;
        match mam::query(&mut session, &format!("w{query_no}"), None, &Page::Last, 1).await {
            Ok((items, _)) if items.last().and_then(|i| i.body.as_deref()) == Some(&last_body) => {
                break;
            }
            Ok((items, _)) if Instant::now() < settle_until => {
                newest = items.last().map(|i| format!("{i:?}"));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(_) => {
                report.note = format!(
                    "the last fill message was not archived within {:?} (newest: {})",
                    plan.settle,
                    newest.as_deref().unwrap_or("none")
                );
                return report;
            }
            Err(ClientError::IqError(condition)) => {
                report.available = false;
                report.note = format!("archive query refused ({condition}): no XEP-0313 here?");
                return report;
            }
            Err(e) => {
                report.errors.add(e.kind());
                report.note = format!("archive query failed: {e}");
                return report;
            }
        }
    }
    let archived_after = waited.elapsed();
    let walk_started = Instant::now();
    let walk = match walk(&mut session, &mut pace, plan).await {
        Ok(items) => items,
        Err(e) => {
            report.errors.add(e.kind());
            report.note = format!("walking the archive failed: {e}");
            return report;
        }
    };
    let walk_seconds = walk_started.elapsed().as_secs_f64();
    report.succeeded = walk.len() as u64;

    // Time the queries, kinds interleaved so drift on a shared machine hits them alike.
    let contact = bare_jid(target, 1);
    let mut queries = match plan_queries(&walk, &owner, &contact, plan.page) {
        Some(q) => q,
        None => {
            report.note = format!(
                "archive too small to query: {} messages, page {}",
                walk.len(),
                plan.page
            );
            return report;
        }
    };
    let mut all = Vec::with_capacity(plan.iterations * queries.len());
    let timing_started = Instant::now();
    'timing: for _ in 0..plan.iterations {
        for q in queries.iter_mut() {
            pace.tick().await;
            query_no += 1;
            let started = Instant::now();
            let outcome = mam::query(
                &mut session,
                &format!("t{query_no}"),
                q.with.as_deref(),
                &q.page,
                plan.page,
            )
            .await;
            let took = started.elapsed().as_micros() as u64;
            match outcome {
                Ok((items, _)) => match check_page(&items, &q.expected_first, plan.page) {
                    Ok(()) => {
                        q.samples.push(took);
                        all.push(took);
                    }
                    Err(kind) => q.errors.add(kind),
                },
                Err(e) => {
                    q.errors.add(e.kind());
                    // The session is gone or stuck: more queries on it would only time out.
                    if !matches!(e, ClientError::IqError(_)) {
                        break 'timing;
                    }
                }
            }
        }
    }
    let timing_seconds = timing_started.elapsed().as_secs_f64();
    let _ = session.close().await;
    for q in queries {
        report.errors.merge(&q.errors);
        report.queries.push(NamedLatency {
            name: q.name.into(),
            latency: Latency::from_micros(q.samples),
        });
    }
    report.latency = Latency::from_micros(all);
    report.seconds = fill_seconds;
    report.rate_per_s = if fill_seconds > 0.0 {
        fill.delivered as f64 / fill_seconds
    } else {
        0.0
    };
    report.note = format!(
        "{} messages with {contacts} contacts (owner sending from {owner_resources} resources), \
         filled at {:.0} msgs/s (client cap {:.0}/s, window {}); {} delivered; last one archived \
         {:.2}s after delivery; walk of {} archived messages in pages of {} took {:.1}s; {} \
         iterations of {} kinds in {:.1}s at most {:.0} queries/s; with={contact}",
        plan.messages,
        report.rate_per_s,
        plan.fill_rate,
        plan.window,
        fill.delivered,
        archived_after.as_secs_f64(),
        report.succeeded,
        plan.page,
        walk_seconds,
        plan.iterations,
        KINDS.len(),
        timing_seconds,
        plan.query_rate,
    );
    if report.succeeded != plan.messages as u64 {
        report.note.push_str(&format!(
            "; NOTE the archive holds {} messages, {} were sent",
            report.succeeded, plan.messages
        ));
    }
    report
}

/// A page is right when it is full (the archive is bigger than a page in every kind) and starts
/// where the walk says it must.
fn check_page(
    items: &[ArchivedItem],
    expected_first: &str,
    page: usize,
) -> Result<(), &'static str> {
    if items.len() != page {
        return Err("short-page");
    }
    if items.first().map(|i| i.id.as_str()) != Some(expected_first) {
        return Err("wrong-page");
    }
    Ok(())
}

/// The six timed queries and where each page must start, from the walk of the whole archive
/// (oldest first). `None` when the archive (or the contact's part) does not fill two pages.
fn plan_queries(
    walk: &[ArchivedItem],
    owner: &str,
    contact: &str,
    page: usize,
) -> Option<Vec<TimedQuery>> {
    let all: Vec<String> = walk.iter().map(|i| i.id.clone()).collect();
    let with: Vec<String> = walk
        .iter()
        .filter(|i| i.contact(owner) == contact)
        .map(|i| i.id.clone())
        .collect();
    if all.len() < 2 * page || with.len() < 2 * page {
        return None;
    }
    KINDS
        .iter()
        .map(|&(name, filtered, position)| {
            let ids = if filtered { &with } else { &all };
            let (page_at, expected_first) = match position {
                Position::First => (Page::First, ids[0].clone()),
                Position::Middle => {
                    let (after, first) = mam::middle_ids(ids)?;
                    (Page::After(after.to_owned()), first.to_owned())
                }
                Position::Last => (Page::Last, ids[ids.len() - page].clone()),
            };
            Some(TimedQuery {
                name,
                with: filtered.then(|| contact.to_owned()),
                page: page_at,
                expected_first,
                samples: Vec::new(),
                errors: ErrorCounts::default(),
            })
        })
        .collect()
}

/// Pages through the whole archive, oldest first. Bounded: stops after twice the pages the fill
/// needs (plus some), so a server that never says `complete` cannot keep it going.
async fn walk(
    session: &mut TlsSession,
    pace: &mut tokio::time::Interval,
    plan: &ArchivePlan,
) -> Result<Vec<ArchivedItem>, ClientError> {
    let mut items: Vec<ArchivedItem> = Vec::with_capacity(plan.messages);
    let mut page = Page::First;
    let max_pages = 2 * plan.messages / plan.page.max(1) + 10;
    for n in 0..max_pages {
        pace.tick().await;
        let (got, fin) = mam::query(session, &format!("walk{n}"), None, &page, plan.page).await?;
        let next = got.last().map(|i| i.id.clone()).or(fin.last);
        let done = fin.complete || got.is_empty();
        items.extend(got);
        match next {
            Some(id) if !done => page = Page::After(id),
            _ => break,
        }
    }
    Ok(items)
}

struct FillOutcome {
    delivered: u64,
    elapsed: Duration,
    errors: ErrorCounts,
}

/// Logs the owner (one receiving resource with presence, `owner_resources` sending ones without, so
/// each message to the owner's bare JID is delivered once) and the contacts in, sends the messages at
/// the planned rate with at most `window` undelivered, and waits for them to be delivered.
async fn fill(
    target: &Target,
    plan: &ArchivePlan,
    contacts: usize,
    owner_resources: usize,
) -> Result<FillOutcome, ClientError> {
    let delivered = Arc::new(Delivered::default());
    let mut readers: Vec<JoinHandle<()>> = Vec::new();
    let mut receive_writers = Vec::new();
    // The owner's receiving resource, then the contacts: available, reading.
    let mut owner_in = login(target, 0, "recv").await?;
    owner_in.send("<presence/>").await?;
    let (reader, writer) = owner_in.into_split();
    readers.push(tokio::spawn(receive(reader, delivered.clone())));
    receive_writers.push(writer);
    let mut contact_writers: Vec<SessionWriter<TlsSocket>> = Vec::with_capacity(contacts);
    for n in 1..=contacts {
        let mut s = login(target, n, "fill").await?;
        s.send("<presence/>").await?;
        let (reader, writer) = s.into_split();
        readers.push(tokio::spawn(receive(reader, delivered.clone())));
        contact_writers.push(writer);
    }
    // The owner's sending resources: no presence, so they get no bare-JID messages.
    let mut owner_writers: Vec<SessionWriter<TlsSocket>> = Vec::with_capacity(owner_resources);
    let mut owner_readers = Vec::new();
    for r in 0..owner_resources {
        let s = login(target, 0, &format!("send{r}")).await?;
        let (reader, writer) = s.into_split();
        // Nothing is expected here; reading keeps the socket drained.
        owner_readers.push(tokio::spawn(drain(reader)));
        owner_writers.push(writer);
    }
    let owner = bare_jid(target, 0);
    let contact_jids: Vec<String> = (0..=contacts).map(|n| bare_jid(target, n)).collect();

    // Sends in small bursts every 10 ms: finer ticks are below the timer's resolution.
    let tick = Duration::from_millis(10);
    let per_tick = ((plan.fill_rate * tick.as_secs_f64()).ceil() as usize).max(1);
    let mut ticks = tokio::time::interval(tick);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut sent = 0usize;
    let mut result = Ok(());
    'send: while sent < plan.messages {
        ticks.tick().await;
        for _ in 0..per_tick {
            if sent >= plan.messages {
                break;
            }
            // Window: wait for deliveries (bounded by the session timeout). The last message waits
            // for all the others, so it is the newest in the archive whatever order the server took
            // the senders' streams in: the query side waits for it.
            let window = if sent + 1 == plan.messages {
                1
            } else {
                plan.window.max(1) as u64
            };
            while sent as u64 >= delivered.count.load(Ordering::SeqCst) + window {
                let arrived = delivered.arrived.notified();
                if (sent as u64) < delivered.count.load(Ordering::SeqCst) + window {
                    break;
                }
                if tokio::time::timeout(target.connector.timeout, arrived)
                    .await
                    .is_err()
                {
                    result = Err(ClientError::Timeout("fill window: no delivery"));
                    break 'send;
                }
            }
            let body = fill_body(sent);
            let outcome = match fill_route(sent, contacts, owner_resources) {
                FillRoute::FromOwner { resource, to } => {
                    let xml = format!(
                        "<message to='{}' type='chat' id='f{sent}'><body>{body}</body></message>",
                        contact_jids[to]
                    );
                    owner_writers[resource].send(&xml).await
                }
                FillRoute::ToOwner { from } => {
                    let xml = format!(
                        "<message to='{owner}' type='chat' id='f{sent}'><body>{body}</body></message>"
                    );
                    contact_writers[from - 1].send(&xml).await
                }
            };
            if let Err(e) = outcome {
                result = Err(e);
                break 'send;
            }
            sent += 1;
        }
    }
    // Wait for the last deliveries.
    let until = tokio::time::Instant::now() + plan.settle;
    while result.is_ok() && delivered.count.load(Ordering::SeqCst) < sent as u64 {
        let arrived = delivered.arrived.notified();
        if delivered.count.load(Ordering::SeqCst) >= sent as u64 {
            break;
        }
        if tokio::time::timeout_at(until, arrived).await.is_err() {
            break;
        }
    }
    let elapsed = started.elapsed();
    for writer in receive_writers
        .into_iter()
        .chain(contact_writers)
        .chain(owner_writers)
    {
        // Best effort: the fill is done.
        let _ = writer.close().await;
    }
    super::idle::close_all(readers, target.connector.timeout).await;
    super::idle::close_all(owner_readers, target.connector.timeout).await;
    result?;
    let errors = delivered
        .errors
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    Ok(FillOutcome {
        delivered: delivered.count.load(Ordering::SeqCst),
        elapsed,
        errors,
    })
}

async fn receive(mut reader: SessionReader<TlsSocket>, delivered: Arc<Delivered>) {
    loop {
        let e = match reader.recv().await {
            Ok(e) => e,
            // The stream ends when the fill closes it.
            Err(_) => return,
        };
        if e.name != "message" {
            continue;
        }
        if e.attr("type") == Some("error") {
            let condition = crate::client::error_condition(&e);
            delivered
                .errors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .add(&format!("message-error:{condition}"));
            continue;
        }
        if e.child_text("body")
            .is_some_and(|b| b.starts_with("archive fill "))
        {
            delivered.count.fetch_add(1, Ordering::SeqCst);
            delivered.arrived.notify_waiters();
        }
    }
}

async fn drain(mut reader: SessionReader<TlsSocket>) {
    while reader.recv().await.is_ok() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, from: &str, to: &str) -> ArchivedItem {
        ArchivedItem {
            id: id.into(),
            from: from.into(),
            to: to.into(),
            body: None,
        }
    }

    #[test]
    fn fill_alternates_directions_over_contacts_and_owner_resources() {
        let routes: Vec<FillRoute> = (0..6).map(|i| fill_route(i, 3, 2)).collect();
        assert_eq!(
            routes,
            vec![
                FillRoute::FromOwner { resource: 0, to: 1 },
                FillRoute::ToOwner { from: 1 },
                FillRoute::FromOwner { resource: 1, to: 2 },
                FillRoute::ToOwner { from: 2 },
                FillRoute::FromOwner { resource: 0, to: 3 },
                FillRoute::ToOwner { from: 3 },
            ]
        );
    }

    #[test]
    fn queries_start_where_the_walk_says() {
        let owner = "o@localhost";
        // 8 messages alternating between contacts b and c, both directions.
        let walk: Vec<ArchivedItem> = (0..8)
            .map(|n| {
                let contact = if n % 4 < 2 {
                    "b@localhost"
                } else {
                    "c@localhost"
                };
                if n % 2 == 0 {
                    item(&n.to_string(), "o@localhost/send0", contact)
                } else {
                    item(&n.to_string(), &format!("{contact}/fill"), owner)
                }
            })
            .collect();
        let queries = plan_queries(&walk, owner, "b@localhost", 2).expect("two pages each");
        let starts: Vec<(&str, &str)> = queries
            .iter()
            .map(|q| (q.name, q.expected_first.as_str()))
            .collect();
        // All: 0..8; with b: 0, 1, 4, 5.
        assert_eq!(
            starts,
            vec![
                ("first page", "0"),
                ("middle page", "4"),
                ("last page", "6"),
                ("first page with=contact", "0"),
                ("middle page with=contact", "4"),
                ("last page with=contact", "4"),
            ]
        );
        assert_eq!(queries[1].page, Page::After("3".into()));
        assert_eq!(queries[4].page, Page::After("1".into()));
        assert_eq!(queries[3].with.as_deref(), Some("b@localhost"));
        assert!(plan_queries(&walk, owner, "b@localhost", 3).is_none());
    }

    #[test]
    fn a_page_must_be_full_and_start_right() {
        let page = vec![item("5", "a", "b"), item("6", "a", "b")];
        assert_eq!(check_page(&page, "5", 2), Ok(()));
        assert_eq!(check_page(&page, "4", 2), Err("wrong-page"));
        assert_eq!(check_page(&page[..1], "5", 2), Err("short-page"));
    }
}
