//! Personal Eventing Protocol (XEP-0163) and entity capabilities (XEP-0115), in two parts:
//!
//! - `pep`: one publisher and `contacts` contacts with mutual presence subscriptions (RFC 6121
//!   section 3, set up through XMPP). Every contact sends available presence carrying caps whose
//!   features include `urn:xmpp:avatar:metadata+notify` (XEP-0163 section 4.3, "filtered
//!   notifications") and answers the server's disco#info query for `node#ver` (XEP-0115 section 6.2).
//!   The publisher then publishes `publishes` items to the avatar metadata node (XEP-0084) at a set
//!   rate; the latency is from sending each publish to each contact receiving its `<event/>`
//!   (XEP-0163 section 4.3.2), over all (publish, contact) pairs; a notification that never comes is
//!   an error.
//! - `pep-caps`: `burst` contacts log in at once announcing the same, never seen caps `ver`; the time
//!   until all are online with presence exchanged with the publisher, and how many disco#info queries
//!   the server sent to the clients (a server with a caps cache needs one per new hash, XEP-0115
//!   section 8.4).
//!
//! Users are `{prefix}pep0` (the publisher) and `{prefix}pep1..`, registered in-band here (an
//! existing account counts as registered), so the phase runs on its own.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha1::{Digest, Sha1};
use tokio::sync::{Mutex, mpsc, watch};
use tokio::task::JoinHandle;

use super::batch::run_batch;
use super::caps::{Caps, Identity, NS_CAPS, NS_DISCO_INFO};
use super::{PhaseReport, Target};
use crate::client::{
    ClientError, Element, SessionReader, SessionWriter, TlsSession, TlsSocket, error_condition,
    escape,
};
use crate::stats::{ErrorCounts, Latency, own_cpu_seconds};

/// The node published to: XEP-0084 avatar metadata, which clients follow with `+notify`.
pub const NODE: &str = "urn:xmpp:avatar:metadata";
const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const NS_PUBSUB_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
const NS_ROSTER: &str = "jabber:iq:roster";
/// The `node` of the load clients' caps (XEP-0115 section 4: a URI naming the software).
const CAPS_NODE: &str = "https://herald.invalid/herald-load";

/// How long warm-up publishes wait for every contact before the next one is sent.
const WARM_UP_STEP: Duration = Duration::from_secs(2);
/// After the burst is complete, disco#info queries are still counted until none came for this long.
const BURST_QUIET: Duration = Duration::from_secs(1);

/// What to run.
#[derive(Debug, Clone)]
pub struct PepPlan {
    /// Contacts receiving the notifications.
    pub contacts: usize,
    /// Measured publishes.
    pub publishes: usize,
    /// Publishes sent per second at most.
    pub rate: f64,
    /// Publishes sent but not yet answered, at most.
    pub window: usize,
    /// Contacts logging in at once in the caps burst.
    pub burst: usize,
    /// Logins in flight while registering and setting up.
    pub concurrency: usize,
    /// Bound of each wait: warm-up, notifications still in flight, the burst.
    pub wait: Duration,
}

/// The localpart of PEP user `n` (0 is the publisher).
fn username(target: &Target, n: usize) -> String {
    format!("{}pep{n}", target.prefix)
}

fn bare_jid(target: &Target, n: usize) -> String {
    format!("{}@{}", username(target, n), target.connector.domain())
}

async fn login(target: &Target, n: usize, resource: &str) -> Result<TlsSession, ClientError> {
    target.login_as(&username(target, n), n, resource).await
}

/// The bare part of a JID (`user@host/res` -> `user@host`).
fn bare(jid: &str) -> &str {
    jid.split('/').next().unwrap_or(jid)
}

/// The number `n` of `{prefix}pep{n}@domain`, if `bare_jid` is a PEP user's.
fn contact_number(target: &Target, bare_jid: &str) -> Option<usize> {
    let (local, domain) = bare_jid.split_once('@')?;
    if domain != target.connector.domain() {
        return None;
    }
    local
        .strip_prefix(&format!("{}pep", target.prefix))?
        .parse()
        .ok()
}

/// The caps of a load client: `+notify` for avatar metadata (the node published to) and the OMEMO
/// device list, as a chat client announces; `tag` goes into the identity's name, so each run and
/// part announces a hash no server has seen.
pub fn client_caps(tag: &str, notify: bool) -> Caps {
    let mut features: Vec<String> = [
        NS_CAPS,
        NS_DISCO_INFO,
        "urn:xmpp:ping",
        "urn:xmpp:avatar:metadata",
        "eu.siacs.conversations.axolotl.devicelist",
    ]
    .map(String::from)
    .to_vec();
    if notify {
        features.push(format!("{NODE}+notify"));
        features.push("eu.siacs.conversations.axolotl.devicelist+notify".into());
    }
    Caps {
        node: CAPS_NODE.into(),
        identities: vec![Identity {
            category: "client".into(),
            kind: "pc".into(),
            lang: String::new(),
            name: format!("herald-load {tag}"),
        }],
        features,
    }
}

/// The id of measured item `k`: the SHA-1 of some image bytes, as XEP-0084 section 4.2 has it.
fn item_id(nonce: &str, k: usize) -> String {
    Sha1::digest(format!("herald-load {nonce} {k}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An `<iq type='set'>` publishing item `id` to [`NODE`] (XEP-0060 section 7.1.1, XEP-0084 section 4.2).
fn publish_iq(iq_id: &str, id: &str) -> String {
    format!(
        "<iq type='set' id='{iq_id}'><pubsub xmlns='{NS_PUBSUB}'><publish node='{NODE}'>\
         <item id='{id}'><metadata xmlns='{NODE}'><info bytes='12345' id='{id}' height='64' \
         width='64' type='image/png'/></metadata></item></publish></pubsub></iq>"
    )
}

/// The item ids in a PEP notification for [`NODE`] (XEP-0060 section 7.1.2.1), if `message` is one.
fn notified_items(message: &Element) -> Vec<&str> {
    message
        .child_ns("event", NS_PUBSUB_EVENT)
        .and_then(|event| event.child("items"))
        .filter(|items| items.attr("node") == Some(NODE))
        .map(|items| {
            items
                .children
                .iter()
                .filter(|c| c.local_name() == "item")
                .filter_map(|c| c.attr("id"))
                .collect()
        })
        .unwrap_or_default()
}

/// The `subscription` of `jid` in a roster result or push (`none` when absent) and whether it has
/// `ask='subscribe'` (RFC 6121 section 2.1.2); `None` when `jid` is not in it.
fn roster_item<'a>(iq: &'a Element, jid: &str) -> Option<(&'a str, bool)> {
    iq.child_ns("query", NS_ROSTER)?
        .children
        .iter()
        .find(|item| item.local_name() == "item" && item.attr("jid") == Some(jid))
        .map(|item| {
            (
                item.attr("subscription").unwrap_or("none"),
                item.attr("ask") == Some("subscribe"),
            )
        })
}

/// What the session tasks see.
#[derive(Debug)]
enum Event {
    /// A notification for item `item` reached contact `who`.
    Notified {
        who: usize,
        item: String,
        at: Instant,
    },
    /// A disco#info query reached user `who` from `from`.
    Disco { who: usize, from: String },
    /// An available presence from `from` reached user `who`, with caps `ver`.
    Presence {
        who: usize,
        from: String,
        ver: Option<String>,
        at: Instant,
    },
    /// An IQ result (`error` none) or error reached user `who`.
    IqReply {
        id: String,
        error: Option<String>,
        at: Instant,
    },
    /// Something went wrong on user `who`'s session: an error kind and message.
    Failed { kind: String, message: String },
}

type SharedWriter = Arc<Mutex<Option<SessionWriter<TlsSocket>>>>;

/// One online user: its writer (shared with the publishing task) and its reading task.
struct Online {
    who: usize,
    writer: SharedWriter,
    task: JoinHandle<()>,
}

/// Splits `session` and reads it until `shutdown`, answering disco#info with `caps`, pings and
/// roster pushes, and reporting what it sees. On shutdown it closes the stream and waits for the
/// server's close, so the server's teardown is not counted in what comes next.
fn serve(
    who: usize,
    session: TlsSession,
    caps: Arc<Caps>,
    events: mpsc::UnboundedSender<Event>,
    shutdown: watch::Receiver<bool>,
) -> Online {
    let (reader, writer) = session.into_split();
    let writer: SharedWriter = Arc::new(Mutex::new(Some(writer)));
    let task = tokio::spawn(read_loop(
        who,
        reader,
        writer.clone(),
        caps,
        events,
        shutdown,
    ));
    Online { who, writer, task }
}

async fn read_loop(
    who: usize,
    mut reader: SessionReader<TlsSocket>,
    writer: SharedWriter,
    caps: Arc<Caps>,
    events: mpsc::UnboundedSender<Event>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let next = tokio::select! {
            _ = shutdown.changed() => {
                let taken = writer.lock().await.take();
                if let Some(w) = taken {
                    // Best effort: the measurement is over either way.
                    let _ = w.close().await;
                    while reader.recv().await.is_ok() {}
                }
                return;
            }
            next = reader.recv() => next,
        };
        let e = match next {
            Ok(e) => e,
            Err(err) => {
                let _ = events.send(Event::Failed {
                    kind: err.kind().into(),
                    message: format!("{}: {err}", who),
                });
                return;
            }
        };
        let at = Instant::now();
        let reply = match e.name.as_str() {
            "message" => {
                if e.attr("type") == Some("error") {
                    let _ = events.send(Event::Failed {
                        kind: format!("message-error:{}", error_condition(&e)),
                        message: e.raw.clone(),
                    });
                }
                for item in notified_items(&e) {
                    let _ = events.send(Event::Notified {
                        who,
                        item: item.to_owned(),
                        at,
                    });
                }
                None
            }
            "presence" if e.attr("type").is_none() => {
                let _ = events.send(Event::Presence {
                    who,
                    from: e.attr("from").unwrap_or_default().to_owned(),
                    ver: e
                        .child_ns("c", NS_CAPS)
                        .and_then(|c| c.attr("ver"))
                        .map(str::to_owned),
                    at,
                });
                None
            }
            "iq" => answer_iq(who, &e, &caps, &events, at),
            _ => None,
        };
        if let Some(xml) = reply {
            let mut guard = writer.lock().await;
            if let Some(w) = guard.as_mut()
                && let Err(err) = w.send(&xml).await
            {
                let _ = events.send(Event::Failed {
                    kind: err.kind().into(),
                    message: format!("{who}: {err}"),
                });
                return;
            }
        }
    }
}

/// The answer to an IQ, if it needs one: disco#info from `caps` (XEP-0115 section 6.2), pings
/// (XEP-0199 section 4.2) and roster pushes (RFC 6121 section 2.1.6) succeed, anything else is
/// `service-unavailable` (RFC 6120 section 8.4).
fn answer_iq(
    who: usize,
    e: &Element,
    caps: &Caps,
    events: &mpsc::UnboundedSender<Event>,
    at: Instant,
) -> Option<String> {
    let id = escape(e.attr("id").unwrap_or_default());
    let to = e
        .attr("from")
        .map(|f| format!(" to='{}'", escape(f)))
        .unwrap_or_default();
    match e.attr("type") {
        Some("result") | Some("error") => {
            let _ = events.send(Event::IqReply {
                id: e.attr("id").unwrap_or_default().to_owned(),
                error: (e.attr("type") == Some("error")).then(|| error_condition(e)),
                at,
            });
            None
        }
        Some("get") if e.child_ns("query", NS_DISCO_INFO).is_some() => {
            let _ = events.send(Event::Disco {
                who,
                from: e.attr("from").unwrap_or_default().to_owned(),
            });
            let node = e
                .child_ns("query", NS_DISCO_INFO)
                .and_then(|q| q.attr("node"));
            match node {
                Some(n) if n != caps.query_node() => Some(format!(
                    "<iq type='error' id='{id}'{to}><query xmlns='{NS_DISCO_INFO}' node='{}'/>\
                     <error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
                     </error></iq>",
                    escape(n)
                )),
                _ => Some(format!(
                    "<iq type='result' id='{id}'{to}>{}</iq>",
                    caps.disco_query(node)
                )),
            }
        }
        Some("get") if e.child("ping").is_some() => {
            Some(format!("<iq type='result' id='{id}'{to}/>"))
        }
        Some("set") if e.child_ns("query", NS_ROSTER).is_some() => {
            Some(format!("<iq type='result' id='{id}'{to}/>"))
        }
        _ => Some(format!(
            "<iq type='error' id='{id}'{to}><error type='cancel'><service-unavailable \
             xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        )),
    }
}

/// Stops the sessions and waits (bounded) for them to close.
async fn close_all(shutdown: &watch::Sender<bool>, online: Vec<Online>, timeout: Duration) {
    let _ = shutdown.send(true);
    let tasks: Vec<JoinHandle<()>> = online.into_iter().map(|o| o.task).collect();
    super::idle::close_all(tasks, timeout).await;
}

/// Errors and their first messages.
#[derive(Default)]
struct Tally {
    errors: ErrorCounts,
    first: Vec<String>,
}

impl Tally {
    fn add(&mut self, kind: &str, message: String) {
        if !self.errors.0.contains_key(kind) {
            self.first.push(message);
        }
        self.errors.add(kind);
    }

    fn into_report(self, report: &mut PhaseReport) {
        report.errors.merge(&self.errors);
        report.note_first_errors(&self.first);
    }
}

/// Disco#info queries seen, by who asked: the publisher's account, the receiving contact's own
/// account, or anyone else (e.g. the server's domain).
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
struct DiscoCount {
    from_publisher: u64,
    from_own_account: u64,
    other: u64,
}

impl DiscoCount {
    fn add(&mut self, from: &str, publisher: &str, own: &str) {
        let from = bare(from);
        if from == publisher {
            self.from_publisher += 1;
        } else if from == own {
            self.from_own_account += 1;
        } else {
            self.other += 1;
        }
    }

    fn total(&self) -> u64 {
        self.from_publisher + self.from_own_account + self.other
    }

    fn describe(&self) -> String {
        format!(
            "{} (from the publisher's account {}, from the contact's own account {}, other {})",
            self.total(),
            self.from_publisher,
            self.from_own_account,
            self.other
        )
    }
}

/// Runs both parts; returns the `pep` and `pep-caps` reports, each with its own CPU figures.
pub async fn run(target: &Target, plan: &PepPlan) -> Vec<PhaseReport> {
    let mut pep = PhaseReport {
        name: "pep".into(),
        available: true,
        ..PhaseReport::default()
    };
    let mut caps = PhaseReport {
        name: "pep-caps".into(),
        available: true,
        ..PhaseReport::default()
    };
    let users = plan.contacts.max(plan.burst).max(1);
    let setup = match prepare(target, plan, users).await {
        Ok(note) => note,
        Err((kind, message)) => {
            for report in [&mut pep, &mut caps] {
                report.errors.add(&kind);
                report.note = format!("set-up failed, nothing measured: {message}");
            }
            return vec![pep, caps];
        }
    };
    // CPU from here: the set-up (registration, subscriptions) is not what is measured.
    let cpu_before = (target.server_cpu_seconds(), own_cpu_seconds());
    latency(target, plan, &mut pep).await;
    pep.note = format!("{}; {setup}", pep.note);
    let cpu_between = (target.server_cpu_seconds(), own_cpu_seconds());
    pep.server_cpu_s = cpu_before.0.zip(cpu_between.0).map(|(b, a)| a - b);
    pep.client_cpu_s = cpu_before.1.zip(cpu_between.1).map(|(b, a)| a - b);
    if pep.available {
        burst(target, plan, &mut caps).await;
    } else {
        caps.available = false;
        caps.note = "not run: the server refused PEP publishing (see the pep phase)".into();
    }
    let cpu_after = (target.server_cpu_seconds(), own_cpu_seconds());
    caps.server_cpu_s = cpu_between.0.zip(cpu_after.0).map(|(b, a)| a - b);
    caps.client_cpu_s = cpu_between.1.zip(cpu_after.1).map(|(b, a)| a - b);
    vec![pep, caps]
}

/// Registers users `0..=users` and makes every contact and the publisher subscribed to each other
/// (RFC 6121 section 3.1: subscribe, subscribed, both ways), unless they already are.
async fn prepare(
    target: &Target,
    plan: &PepPlan,
    users: usize,
) -> Result<String, (String, String)> {
    let registered = run_batch(
        users + 1,
        plan.concurrency,
        plan.wait * 4,
        target.connector.timeout,
        |n| {
            let connector = target.connector.clone();
            let user = username(target, n);
            let password = target.password.clone();
            let ip = target.source_ip(n);
            async move { connector.register(&user, &password, ip).await }
        },
    )
    .await;
    if registered.values.len() < users + 1 {
        return Err((
            "register".into(),
            format!(
                "{} of {} accounts registered ({})",
                registered.values.len(),
                users + 1,
                registered.first_errors.join("; ")
            ),
        ));
    }
    let publisher = bare_jid(target, 0);
    let mut notes = Vec::new();
    for round in 1..=SETUP_ROUNDS {
        let outcome = subscription_round(target, plan, users, &publisher).await?;
        match outcome {
            Round::AllBoth if round == 1 => {
                return Ok(format!(
                    "{users} contacts already subscribed both ways from an earlier run"
                ));
            }
            Round::AllBoth => break,
            Round::Ran {
                missing,
                done,
                first_errors,
                seconds,
            } => {
                notes.push(format!(
                    "set-up round {round}: {done} of {missing} contacts subscribed both ways in {seconds:.1}s{}",
                    if first_errors.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", first_errors.join("; "))
                    }
                ));
                if done == missing {
                    break;
                }
                if round == SETUP_ROUNDS {
                    return Err(("subscription".into(), notes.join("; ")));
                }
            }
        }
    }
    Ok(notes.join("; "))
}

/// Subscription set-up rounds before giving up: a contact whose roster lost an update (seen on a
/// server applying both sides' approvals at once) is retried from the state it is in.
const SETUP_ROUNDS: usize = 3;

enum Round {
    /// Every contact was already subscribed both ways.
    AllBoth,
    /// `done` of the `missing` contacts are subscribed both ways now.
    Ran {
        missing: usize,
        done: usize,
        first_errors: Vec<String>,
        seconds: f64,
    },
}

/// One set-up round: the publisher reads its roster, asks every contact it does not yet follow,
/// and approves requests while each contact not yet `both` runs [`befriend`].
async fn subscription_round(
    target: &Target,
    plan: &PepPlan,
    users: usize,
    publisher: &str,
) -> Result<Round, (String, String)> {
    let fail = |what: &str, e: ClientError| (e.kind().to_owned(), format!("{what}: {e}"));
    let mut session = login(target, 0, "setup")
        .await
        .map_err(|e| fail("publisher login", e))?;
    let roster = session
        .iq("get", None, &format!("<query xmlns='{NS_ROSTER}'/>"))
        .await
        .map_err(|e| fail("publisher roster", e))?;
    let mut missing = Vec::new();
    session
        .send("<presence/>")
        .await
        .map_err(|e| fail("publisher presence", e))?;
    for n in 1..=users {
        let contact = bare_jid(target, n);
        let (sub, _) = roster_item(&roster, &contact).unwrap_or(("none", false));
        if sub != "both" {
            missing.push(n);
        }
        if sub != "both" && sub != "to" {
            // The publisher asks; the server delivers it when the contact comes online
            // (RFC 6121 section 3.1.3), and the contact approves it before asking back.
            session
                .send(&format!(
                    "<presence type='subscribe' to='{}'/>",
                    escape(&contact)
                ))
                .await
                .map_err(|e| fail("publisher subscribe", e))?;
        }
    }
    if missing.is_empty() {
        let _ = session.close().await;
        return Ok(Round::AllBoth);
    }
    // The publisher approves every request.
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let (mut reader, mut writer) = session.into_split();
    let approver = tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                _ = stop_rx.changed() => break,
                next = reader.recv() => next,
            };
            let Ok(e) = next else { break };
            if e.name == "presence" && e.attr("type") == Some("subscribe") {
                let to = escape(bare(e.attr("from").unwrap_or_default()));
                let xml = format!("<presence type='subscribed' to='{to}'/>");
                if writer.send(&xml).await.is_err() {
                    break;
                }
            }
        }
        let _ = writer.close().await;
    });
    let count = missing.len();
    let done = run_batch(
        count,
        plan.concurrency,
        plan.wait * 4,
        target.connector.timeout,
        |i| {
            let target = target.clone();
            let publisher = publisher.to_owned();
            let n = missing[i];
            async move { befriend(&target, n, &publisher).await }
        },
    )
    .await;
    let _ = stop_tx.send(true);
    let _ = approver.await;
    Ok(Round::Ran {
        missing: count,
        done: done.values.len(),
        first_errors: done.first_errors,
        seconds: done.elapsed.as_secs_f64(),
    })
}

/// Contact `n` approves the publisher's request first, then asks for the publisher's presence
/// once its roster shows the approval, until its roster says `both` (RFC 6121 sections 3.1.2 to
/// 3.1.6). One step at a time, so the two approvals never touch the roster item at once. A roster
/// push that loses an earlier step is a `protocol` error (the next round starts from there).
async fn befriend(target: &Target, n: usize, publisher: &str) -> Result<(), ClientError> {
    let mut session = login(target, n, "setup").await?;
    let roster = session
        .iq("get", None, &format!("<query xmlns='{NS_ROSTER}'/>"))
        .await?;
    let mut sub = roster_item(&roster, publisher)
        .map_or("none", |(s, _)| s)
        .to_owned();
    if sub != "both" {
        // Initial presence: pending requests are delivered now (RFC 6121 section 3.1.3).
        session.send("<presence/>").await?;
        let has_from = |s: &str| s == "from" || s == "both";
        let has_to = |s: &str| s == "to" || s == "both";
        let mut approved = false;
        let mut asked = false;
        if has_from(&sub) {
            session
                .send(&format!(
                    "<presence type='subscribe' to='{}'/>",
                    escape(publisher)
                ))
                .await?;
            asked = true;
        }
        loop {
            let e = session.recv().await?;
            let from_publisher = e.attr("from").map(bare) == Some(publisher);
            match (e.name.as_str(), e.attr("type")) {
                ("presence", Some("subscribe")) if from_publisher => {
                    session
                        .send(&format!(
                            "<presence type='subscribed' to='{}'/>",
                            escape(publisher)
                        ))
                        .await?;
                    approved = true;
                }
                ("iq", Some("set")) if e.child_ns("query", NS_ROSTER).is_some() => {
                    let id = escape(e.attr("id").unwrap_or_default());
                    session
                        .send(&format!("<iq type='result' id='{id}'/>"))
                        .await?;
                    let Some((now, ask)) = roster_item(&e, publisher) else {
                        continue;
                    };
                    now.clone_into(&mut sub);
                    if sub == "both" {
                        break;
                    }
                    if (approved && !has_from(&sub)) || (asked && !ask && !has_to(&sub)) {
                        let _ = session.close().await;
                        return Err(ClientError::Protocol(format!(
                            "roster of contact {n} went to subscription '{sub}' after it \
                             approved the publisher and asked back (a lost update)"
                        )));
                    }
                    if has_from(&sub) && !asked {
                        session
                            .send(&format!(
                                "<presence type='subscribe' to='{}'/>",
                                escape(publisher)
                            ))
                            .await?;
                        asked = true;
                    }
                }
                _ => {}
            }
        }
    }
    let _ = session.close().await;
    Ok(())
}

/// Logs in users `first..first+count` concurrently (at most `concurrency` in flight), each sending
/// `presence` right after binding and then served by [`serve`].
#[allow(clippy::too_many_arguments)]
async fn bring_online(
    target: &Target,
    first: usize,
    count: usize,
    concurrency: usize,
    resource: &'static str,
    caps: &Arc<Caps>,
    events: &mpsc::UnboundedSender<Event>,
    shutdown: &watch::Receiver<bool>,
    deadline: Duration,
) -> (Vec<Online>, ErrorCounts, Vec<String>) {
    let out = run_batch(
        count,
        concurrency,
        deadline,
        target.connector.timeout,
        |i| {
            let target = target.clone();
            let caps = caps.clone();
            let events = events.clone();
            let shutdown = shutdown.clone();
            async move {
                let who = first + i;
                let mut session = login(&target, who, resource).await?;
                session
                    .send(&format!("<presence>{}</presence>", caps.element()))
                    .await?;
                Ok(serve(who, session, caps, events, shutdown))
            }
        },
    )
    .await;
    (out.values, out.errors, out.first_errors)
}

/// The `pep` part: publishes and their notifications.
async fn latency(target: &Target, plan: &PepPlan, report: &mut PhaseReport) {
    let nonce = format!("{:016x}", rand::random::<u64>());
    let publisher_jid = bare_jid(target, 0);
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut tally = Tally::default();
    let publisher_caps = Arc::new(client_caps(&format!("publisher {nonce}"), false));
    let contact_caps = Arc::new(client_caps(&format!("pep {nonce}"), true));
    let publisher = match login(target, 0, "pep-publisher").await {
        Ok(mut s) => match s.send("<presence/>").await {
            Ok(()) => serve(0, s, publisher_caps, events_tx.clone(), shutdown_rx.clone()),
            Err(e) => {
                report.errors.add(e.kind());
                report.note = format!("publisher presence failed: {e}");
                return;
            }
        },
        Err(e) => {
            report.errors.add(e.kind());
            report.note = format!("publisher login failed: {e}");
            return;
        }
    };
    let publisher_writer = publisher.writer.clone();
    let (contacts, login_errors, login_first) = bring_online(
        target,
        1,
        plan.contacts,
        plan.concurrency,
        "pep",
        &contact_caps,
        &events_tx,
        &shutdown_rx,
        plan.wait * 4,
    )
    .await;
    report.errors.merge(&login_errors);
    report.note_first_errors(&login_first);
    let online: Vec<usize> = contacts.iter().map(|o| o.who).collect();
    let mut sessions = contacts;
    sessions.push(publisher);
    let mut disco = DiscoCount::default();
    let own = |who: usize| bare_jid(target, who);
    if online.is_empty() {
        report.note = format!("no contact came online{}", report.note);
        close_all(&shutdown_tx, sessions, target.connector.timeout).await;
        return;
    }

    // Warm-up: publish until every contact has had a notification, so the measured publishes start
    // once the server knows every contact's interest (from its caps), however it learns it.
    let mut warmed: HashSet<usize> = HashSet::new();
    let warm_until = Instant::now() + plan.wait;
    let mut warm_ids: HashSet<String> = HashSet::new();
    let mut warm_no = 0usize;
    let mut unavailable: Option<String> = None;
    let mut warm_acked = false;
    'warm: while warmed.len() < online.len() && Instant::now() < warm_until {
        let id = format!("warm-{nonce}-{warm_no}");
        warm_ids.insert(id.clone());
        let iq_id = format!("warm{warm_no}");
        warm_no += 1;
        if let Err(e) = send_shared(&publisher_writer, &publish_iq(&iq_id, &id)).await {
            tally.add(e.kind(), format!("warm-up publish: {e}"));
            break;
        }
        let step_end = (Instant::now() + WARM_UP_STEP).min(warm_until);
        while warmed.len() < online.len() {
            let Ok(Some(event)) = tokio::time::timeout_at(step_end.into(), events.recv()).await
            else {
                continue 'warm;
            };
            match event {
                Event::Notified { who, item, .. } if warm_ids.contains(&item) => {
                    warmed.insert(who);
                }
                Event::IqReply {
                    id,
                    error: Some(condition),
                    ..
                } if id.starts_with("warm") => {
                    unavailable = Some(condition);
                    break 'warm;
                }
                Event::IqReply {
                    id, error: None, ..
                } if id.starts_with("warm") => warm_acked = true,
                Event::Disco { who, from } => disco.add(&from, &publisher_jid, &own(who)),
                Event::Failed { kind, message } => tally.add(&kind, message),
                _ => {}
            }
        }
    }
    if unavailable.is_none() && !warm_acked && warmed.is_empty() {
        report.available = false;
        report.errors.add("publish-unanswered");
        report.note = format!(
            "no answer and no notification for {warm_no} PEP publishes within {:?}: no XEP-0163 \
             here? Nothing measured{}",
            plan.wait, report.note
        );
        close_all(&shutdown_tx, sessions, target.connector.timeout).await;
        tally.into_report(report);
        return;
    }
    if let Some(condition) = unavailable {
        report.available = false;
        report.errors.add(&format!("publish-error:{condition}"));
        report.note = format!(
            "PEP publish refused ({condition}): no XEP-0163 here? Nothing measured{}",
            report.note
        );
        close_all(&shutdown_tx, sessions, target.connector.timeout).await;
        tally.into_report(report);
        return;
    }
    let warm_up_note = format!(
        "warm-up: {warm_no} publishes until {} of {} contacts had a notification",
        warmed.len(),
        online.len()
    );

    // The measured publishes, paced by one task while this one collects what arrives.
    let ids: HashMap<String, usize> = (0..plan.publishes)
        .map(|k| (item_id(&nonce, k), k))
        .collect();
    let period = Duration::from_secs_f64(1.0 / plan.rate.max(0.001));
    let answered = Arc::new(Answered::default());
    let publishing = {
        let writer = publisher_writer.clone();
        let nonce = nonce.clone();
        let count = plan.publishes;
        let window = plan.window.max(1);
        let answered = answered.clone();
        let wait = plan.wait;
        tokio::spawn(async move {
            let mut sent = Vec::with_capacity(count);
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for k in 0..count {
                ticks.tick().await;
                // At most `window` publishes unanswered: a server that falls behind slows the
                // publisher down instead of queueing without bound.
                if !answered
                    .wait_for((k + 1).saturating_sub(window), wait)
                    .await
                {
                    return (sent, Some(ClientError::Timeout("publish answers")));
                }
                let xml = publish_iq(&format!("pub{k}"), &item_id(&nonce, k));
                sent.push(Instant::now());
                if let Err(e) = send_shared(&writer, &xml).await {
                    return (sent, Some(e));
                }
            }
            (sent, None)
        })
    };
    let mut publishing = publishing;
    let mut publishing_done = false;
    let mut sent: Vec<Instant> = Vec::new();
    let mut acked: Vec<Option<Instant>> = vec![None; plan.publishes];
    let mut refused: Vec<bool> = vec![false; plan.publishes];
    let mut received: HashMap<(usize, usize), Instant> = HashMap::new();
    let mut deadline = Instant::now() + plan.wait;
    loop {
        let acks_done =
            publishing_done && acked.iter().zip(&refused).all(|(a, r)| a.is_some() || *r);
        let delivered = acked.iter().flatten().count() * online.len();
        if publishing_done && acks_done && received.len() >= delivered {
            break;
        }
        tokio::select! {
            done = &mut publishing, if !publishing_done => {
                publishing_done = true;
                match done {
                    Ok((times, err)) => {
                        sent = times;
                        if let Some(e) = err {
                            tally.add(e.kind(), format!("publishing: {e}"));
                            // Acks for publishes never sent will not come.
                            for r in refused.iter_mut().skip(sent.len()) {
                                *r = true;
                            }
                        }
                    }
                    Err(_) => tally.add("task-panicked", "publishing task".into()),
                }
                // Allow the full wait for stragglers, counted from the last send.
                deadline = deadline.max(Instant::now() + plan.wait);
            }
            // While publishing, the publishing task bounds its own waits.
            event = tokio::time::timeout_at(
                if publishing_done { deadline } else { Instant::now() + plan.wait * 4 }.into(),
                events.recv(),
            ) => {
                let Ok(Some(event)) = event else { break };
                match event {
                    Event::Notified { who, item, at } => {
                        if let Some(&k) = ids.get(&item) {
                            received.entry((k, who)).or_insert(at);
                        }
                    }
                    Event::IqReply { id, error, at } => {
                        if let Some(k) = id.strip_prefix("pub").and_then(|k| k.parse::<usize>().ok()).filter(|k| *k < plan.publishes) {
                            answered.add();
                            match error {
                                None => acked[k] = Some(at),
                                Some(condition) => {
                                    refused[k] = true;
                                    tally.add(&format!("publish-error:{condition}"), format!("publish {k} refused: {condition}"));
                                }
                            }
                        }
                    }
                    Event::Disco { who, from } => disco.add(&from, &publisher_jid, &own(who)),
                    Event::Failed { kind, message } => tally.add(&kind, message),
                    Event::Presence { .. } => {}
                }
            }
        }
    }
    if !publishing_done {
        publishing.abort();
    }
    drop(publisher_writer);
    close_all(&shutdown_tx, sessions, target.connector.timeout).await;

    // Figures over the acknowledged publishes.
    let mut samples = Vec::with_capacity(received.len());
    let mut last = None::<Instant>;
    let mut delivered = 0u64;
    for (&(k, _who), &at) in &received {
        if acked.get(k).copied().flatten().is_some()
            && let Some(&sent_at) = sent.get(k)
        {
            samples.push(at.saturating_duration_since(sent_at).as_micros() as u64);
            delivered += 1;
            last = last.max(Some(at));
        }
    }
    let acked_count = acked.iter().flatten().count() as u64;
    let expected = acked_count * online.len() as u64;
    for _ in delivered..expected {
        report.errors.add("notification-missing");
    }
    let never_acked = acked
        .iter()
        .zip(&refused)
        .take(sent.len())
        .filter(|(a, r)| a.is_none() && !**r)
        .count();
    for _ in 0..never_acked {
        report.errors.add("publish-unanswered");
    }
    let last = last.max(acked.iter().flatten().max().copied());
    let seconds = match (sent.first(), last) {
        (Some(first), Some(last)) => last.saturating_duration_since(*first).as_secs_f64(),
        _ => 0.0,
    };
    report.attempted = plan.publishes as u64;
    report.succeeded = acked_count;
    report.seconds = seconds;
    report.rate_per_s = if seconds > 0.0 {
        acked_count as f64 / seconds
    } else {
        0.0
    };
    report.latency = Latency::from_micros(samples);
    let mut figures = BTreeMap::new();
    figures.insert("contacts_online".into(), online.len() as f64);
    figures.insert("notifications_expected".into(), expected as f64);
    figures.insert("notifications_received".into(), delivered as f64);
    figures.insert(
        "notifications_per_s".into(),
        if seconds > 0.0 {
            delivered as f64 / seconds
        } else {
            0.0
        },
    );
    figures.insert("disco_queries".into(), disco.total() as f64);
    report.figures = figures;
    let login_note = std::mem::take(&mut report.note);
    report.note = format!(
        "{} publishes to {NODE} at {:.0}/s at most (client pace, at most {} unanswered) to {} of {} contacts online \
         (mutual subscription, caps with {NODE}+notify); {} acknowledged, {delivered} of {expected} \
         notifications received; latency = publish sent to <event/> received, over all (publish, \
         contact) pairs; {warm_up_note}; disco#info queries seen while contacts came online: {}{login_note}",
        plan.publishes,
        plan.rate,
        plan.window,
        online.len(),
        plan.contacts,
        acked_count,
        disco.describe(),
    );
    tally.into_report(report);
}

/// Publishes answered (result or error), for the publishing window.
#[derive(Default)]
struct Answered {
    count: std::sync::atomic::AtomicUsize,
    changed: tokio::sync::Notify,
}

impl Answered {
    fn add(&self) {
        self.count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    /// Waits until at least `n` publishes are answered; false if `wait` passes first.
    async fn wait_for(&self, n: usize, wait: Duration) -> bool {
        let until = tokio::time::Instant::now() + wait;
        loop {
            let changed = self.changed.notified();
            if self.count.load(std::sync::atomic::Ordering::SeqCst) >= n {
                return true;
            }
            if tokio::time::timeout_at(until, changed).await.is_err() {
                return self.count.load(std::sync::atomic::Ordering::SeqCst) >= n;
            }
        }
    }
}

/// Sends on a shared writer (an error if the session already closed it).
async fn send_shared(writer: &SharedWriter, xml: &str) -> Result<(), ClientError> {
    match writer.lock().await.as_mut() {
        Some(w) => w.send(xml).await,
        None => Err(ClientError::StreamClosed),
    }
}

/// The `pep-caps` part: `burst` contacts at once, one new caps hash.
async fn burst(target: &Target, plan: &PepPlan, report: &mut PhaseReport) {
    let nonce = format!("{:016x}", rand::random::<u64>());
    let publisher_jid = bare_jid(target, 0);
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut tally = Tally::default();
    let caps = Arc::new(client_caps(&format!("burst {nonce}"), true));
    let ver = caps.ver();
    let publisher = match login(target, 0, "pep-burst").await {
        Ok(mut s) => match s.send("<presence/>").await {
            Ok(()) => serve(
                0,
                s,
                Arc::new(client_caps(&format!("publisher {nonce}"), false)),
                events_tx.clone(),
                shutdown_rx.clone(),
            ),
            Err(e) => {
                report.errors.add(e.kind());
                report.note = format!("publisher presence failed: {e}");
                return;
            }
        },
        Err(e) => {
            report.errors.add(e.kind());
            report.note = format!("publisher login failed: {e}");
            return;
        }
    };
    let count = plan.burst;
    let start = Instant::now();
    // Every contact at once: the logins run while this task collects what arrives.
    let logins = {
        let target = target.clone();
        let caps = caps.clone();
        let events_tx = events_tx.clone();
        let shutdown_rx = shutdown_rx.clone();
        let wait = plan.wait;
        tokio::spawn(async move {
            bring_online(
                &target,
                1,
                count,
                count,
                "burst",
                &caps,
                &events_tx,
                &shutdown_rx,
                wait,
            )
            .await
        })
    };
    // Per contact: when it saw the publisher's presence, and when the publisher saw its presence
    // with the burst's caps.
    let mut saw_publisher: Vec<Option<Instant>> = vec![None; count + 1];
    let mut seen_by_publisher: Vec<Option<Instant>> = vec![None; count + 1];
    let mut disco = DiscoCount::default();
    let own = |who: usize| bare_jid(target, who);
    let deadline = start + plan.wait;
    let mut complete_at: Option<Instant> = None;
    let mut last_disco = start;
    let mut exchanged = 0usize;
    loop {
        let until = match complete_at {
            // Once complete, keep counting queries until none came for BURST_QUIET.
            Some(done) => last_disco.max(done) + BURST_QUIET,
            None => deadline,
        };
        let Ok(Some(event)) = tokio::time::timeout_at(until.into(), events.recv()).await else {
            break;
        };
        match event {
            Event::Presence {
                who,
                from,
                ver: v,
                at,
            } => {
                let from_bare = bare(&from);
                let contact = if who == 0 {
                    // The publisher sees contact `n` announcing the burst's caps.
                    contact_number(target, from_bare).filter(|_| v.as_deref() == Some(&ver))
                } else if from_bare == publisher_jid {
                    Some(who)
                } else {
                    None
                };
                if let Some(n) = contact.filter(|n| (1..=count).contains(n)) {
                    let slot = if who == 0 {
                        &mut seen_by_publisher[n]
                    } else {
                        &mut saw_publisher[n]
                    };
                    if slot.is_none() {
                        *slot = Some(at);
                        if saw_publisher[n].is_some() && seen_by_publisher[n].is_some() {
                            exchanged += 1;
                            if exchanged == count {
                                complete_at = Some(at);
                            }
                        }
                    }
                }
            }
            Event::Disco { who, from } => {
                disco.add(&from, &publisher_jid, &own(who));
                last_disco = Instant::now();
            }
            Event::Failed { kind, message } => tally.add(&kind, message),
            Event::Notified { .. } | Event::IqReply { .. } => {}
        }
    }
    let (contacts, login_errors, login_first) = match logins.await {
        Ok(out) => out,
        Err(_) => (
            Vec::new(),
            ErrorCounts::default(),
            vec!["login task panicked".into()],
        ),
    };
    report.errors.merge(&login_errors);
    report.note_first_errors(&login_first);
    let online = contacts.len();
    let mut sessions = contacts;
    sessions.push(publisher);
    close_all(&shutdown_tx, sessions, target.connector.timeout).await;

    let mut samples = Vec::with_capacity(count);
    for n in 1..=count {
        match (saw_publisher[n], seen_by_publisher[n]) {
            (Some(a), Some(b)) => {
                samples.push(a.max(b).saturating_duration_since(start).as_micros() as u64)
            }
            _ => report.errors.add("presence-not-exchanged"),
        }
    }
    report.attempted = count as u64;
    report.succeeded = samples.len() as u64;
    report.latency = Latency::from_micros(samples);
    match complete_at {
        Some(at) => report.set_elapsed(at.saturating_duration_since(start)),
        None => report.seconds = plan.wait.as_secs_f64(),
    }
    let mut figures = BTreeMap::new();
    figures.insert("contacts_online".into(), online as f64);
    figures.insert("disco_queries".into(), disco.total() as f64);
    figures.insert("disco_from_publisher".into(), disco.from_publisher as f64);
    figures.insert(
        "disco_from_own_account".into(),
        disco.from_own_account as f64,
    );
    report.figures = figures;
    let login_note = std::mem::take(&mut report.note);
    report.note = format!(
        "{count} contacts logging in at once (TLS, SASL, bind, presence with caps ver {ver}, new \
         to the server) while the publisher is online; {} with presence exchanged both ways {}; \
         latency = burst start to both presences for each contact; disco#info queries sent to the \
         clients: {} (a caps cache needs 1 per new hash){}{login_note}",
        report.succeeded,
        match complete_at {
            Some(at) => format!(
                "after {:.0} ms",
                at.saturating_duration_since(start).as_secs_f64() * 1000.0
            ),
            None => format!("NOT ALL within {:?}", plan.wait),
        },
        disco.describe(),
        if disco.total() == 0 {
            "; NOTE no query at all: the server did not look up these caps (no XEP-0115 use?)"
        } else {
            ""
        },
    );
    tally.into_report(report);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ElementReader;

    async fn parse(xml: &str) -> Element {
        ElementReader::new(xml.as_bytes(), 1 << 20)
            .next_element()
            .await
            .expect("element")
    }

    #[tokio::test]
    async fn notification_items_are_read_for_the_node_only() {
        let m = parse(&format!(
            "<message from='p@x' type='headline'><event xmlns='{NS_PUBSUB_EVENT}'>\
             <items node='{NODE}'><item id='a'/><item id='b'><metadata/></item></items></event></message>"
        ))
        .await;
        assert_eq!(notified_items(&m), vec!["a", "b"]);
        let other = parse(&format!(
            "<message><event xmlns='{NS_PUBSUB_EVENT}'><items node='urn:other'><item id='a'/></items></event></message>"
        ))
        .await;
        assert!(notified_items(&other).is_empty());
        assert!(notified_items(&parse("<message><body>hi</body></message>").await).is_empty());
    }

    #[tokio::test]
    async fn roster_items_default_to_none_and_carry_ask() {
        let iq = parse(&format!(
            "<iq type='result'><query xmlns='{NS_ROSTER}'><item jid='a@x' subscription='both'/>\
             <item jid='b@x' ask='subscribe'/></query></iq>"
        ))
        .await;
        assert_eq!(roster_item(&iq, "a@x"), Some(("both", false)));
        assert_eq!(roster_item(&iq, "b@x"), Some(("none", true)));
        assert_eq!(roster_item(&iq, "c@x"), None);
    }

    #[test]
    fn caps_announce_notify_and_differ_per_tag() {
        let a = client_caps("one", true);
        assert!(a.features.iter().any(|f| f == &format!("{NODE}+notify")));
        assert!(
            !client_caps("one", false)
                .features
                .iter()
                .any(|f| f.ends_with("+notify"))
        );
        assert_ne!(a.ver(), client_caps("two", true).ver());
        assert_eq!(a.ver(), client_caps("one", true).ver());
    }

    #[test]
    fn item_ids_are_sha1_hex_and_distinct() {
        let a = item_id("n", 0);
        assert_eq!(a.len(), 40);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, item_id("n", 1));
        assert!(publish_iq("pub0", &a).contains(&format!("<item id='{a}'>")));
    }

    #[tokio::test]
    async fn the_window_waits_for_answers_and_gives_up_after_the_wait() {
        let answered = Arc::new(Answered::default());
        assert!(answered.wait_for(0, Duration::ZERO).await);
        let later = answered.clone();
        let adder = tokio::spawn(async move {
            later.add();
            later.add();
        });
        assert!(answered.wait_for(2, Duration::from_secs(10)).await);
        adder.await.expect("adder");
        assert!(!answered.wait_for(3, Duration::from_millis(20)).await);
    }

    #[test]
    fn disco_queries_are_counted_by_asker() {
        let mut d = DiscoCount::default();
        d.add("p@x", "p@x", "c@x");
        d.add("c@x", "p@x", "c@x");
        d.add("x", "p@x", "c@x");
        d.add("p@x/res", "p@x", "c@x");
        assert_eq!(
            d,
            DiscoCount {
                from_publisher: 2,
                from_own_account: 1,
                other: 1
            }
        );
        assert_eq!(d.total(), 4);
    }
}
