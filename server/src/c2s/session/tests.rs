//! The session over an in-memory [`ClientStream`]: detaching, queueing while detached, re-attaching, and
//! ending while detached; XEP-0198 counting and acknowledgements, hibernation when a resumable session
//! loses its connection, resumption writing what was not acknowledged once, the resume timeout; the nonza
//! answer, and the size an idle session costs.

use std::io;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::mpsc;

use super::*;
use crate::c2s::stream::Writing;
use crate::config::RawConfig;
use crate::context::ServerContext;
use crate::router::events::Subscribers;
use crate::xmpp::FullJid;
use herald_relay::login_throttle::LoginThrottle;
use herald_storage::Storage;

/// What a fake connection was sent: stanzas by id and the server's own elements by name, in order; the
/// stream error; whether it was closed.
#[derive(Debug, Default)]
struct Wire {
    written: Vec<String>,
    error: Option<StreamErrorCondition>,
    is_closed: bool,
}

/// A connection in memory: what the client "sends" comes from a channel, what the session writes is
/// recorded in a [`Wire`]. Writes fail when it is broken.
struct FakeStream {
    inbound: mpsc::UnboundedReceiver<Result<Inbound, StreamError>>,
    wire: Arc<Mutex<Wire>>,
    is_broken: bool,
}

/// The test's end of a [`FakeStream`].
struct FakeClient {
    sends: mpsc::UnboundedSender<Result<Inbound, StreamError>>,
    wire: Arc<Mutex<Wire>>,
}

impl FakeClient {
    fn written(&self) -> Vec<String> {
        self.wire.lock().unwrap().written.clone()
    }
}

fn fake_stream(is_broken: bool) -> (Box<dyn ClientStream>, FakeClient) {
    let (sends, inbound) = mpsc::unbounded_channel();
    let wire = Arc::new(Mutex::new(Wire::default()));
    let stream = FakeStream {
        inbound,
        wire: wire.clone(),
        is_broken,
    };
    (Box::new(stream), FakeClient { sends, wire })
}

impl FakeStream {
    fn record(&self, entries: impl Iterator<Item = String>) -> Writing<'static> {
        let result = if self.is_broken {
            Err(io::Error::new(io::ErrorKind::TimedOut, "not reading"))
        } else {
            self.wire.lock().unwrap().written.extend(entries);
            Ok(())
        };
        Box::pin(std::future::ready(result))
    }
}

impl ClientStream for FakeStream {
    fn poll_inbound(&mut self, cx: &mut Context<'_>) -> Poll<Result<Inbound, StreamError>> {
        self.inbound
            .poll_recv(cx)
            .map(|next| next.unwrap_or(Err(StreamError::Closed)))
    }

    fn write_stanzas<'a>(&'a mut self, stanzas: &'a [WireStanza]) -> Writing<'a> {
        let ids = stanzas.iter().map(|stanza| {
            let element = stanza.unpack().expect("a stanza");
            element.attr("id").unwrap_or_default().to_owned()
        });
        self.record(ids.collect::<Vec<_>>().into_iter())
    }

    fn write_element<'a>(&'a mut self, element: &'a Element) -> Writing<'a> {
        self.record(std::iter::once(element.name().to_owned()))
    }

    fn end_with_error(&mut self, condition: StreamErrorCondition) -> Writing<'_> {
        self.wire.lock().unwrap().error = Some(condition);
        Box::pin(std::future::ready(Ok(())))
    }

    fn close(&mut self) -> Writing<'_> {
        self.wire.lock().unwrap().is_closed = true;
        Box::pin(std::future::ready(Ok(())))
    }
}

/// A router on an in-memory database with the account alice@localhost, whose sessions queue at most
/// `session_queue_bytes`.
async fn router(session_queue_bytes: usize) -> Arc<Router> {
    let mut raw = RawConfig::default();
    raw.limits.max_stanza_bytes = session_queue_bytes;
    raw.limits.session_queue_bytes = session_queue_bytes;
    let config = Config::resolve(raw).expect("config");
    let storage = Storage::connect("sqlite::memory:").await.expect("storage");
    let alice = crate::accounts::parse_account("alice@localhost").expect("jid");
    crate::accounts::create(&storage, &alice, "secret")
        .await
        .expect("create");
    server(config, storage)
}

/// A router with the real features and no push.
fn server(config: Config, storage: Storage) -> Arc<Router> {
    let context = ServerContext::new(Arc::new(config), storage, LoginThrottle::default());
    Router::new(
        Arc::new(context),
        Arc::new(crate::features::Features),
        Subscribers::new(None),
    )
}

/// alice@localhost/phone bound over `stream`, as negotiation hands it over.
fn bind(router: &Arc<Router>, stream: Box<dyn ClientStream>) -> (Session, SessionHandle) {
    let (handle, commands) = router.sessions.new_session();
    router
        .sessions
        .bind("alice@localhost", "phone", handle.clone());
    let bound = Bound {
        stream,
        jid: FullJid::new("alice@localhost/phone").expect("jid"),
        handle: handle.clone(),
        commands,
    };
    (Session::new(&router.context.config, bound), handle)
}

/// A chat message for alice@localhost/phone with this id, of about `size` bytes.
fn message(id: &str, size: usize) -> Element {
    format!(
        "<message xmlns='jabber:client' type='chat' id='{id}' from='bob@localhost/pc' \
         to='alice@localhost/phone'><body>{}</body></message>",
        "x".repeat(size)
    )
    .parse()
    .expect("message")
}

fn queue(handle: &SessionHandle, ids: &[&str]) {
    for id in ids {
        assert!(handle.send_stanza(&message(id, 10)), "queued {id}");
    }
}

/// Runs the session's wakes until it has had nothing to do for 50 ms (`None`) or ends (`Some`).
async fn settle(session: &mut Session, router: &Arc<Router>) -> Option<Ending> {
    loop {
        let wake = tokio::time::timeout(Duration::from_millis(50), session.wait())
            .await
            .ok()?;
        if let Some(end) = session.act(router, wake).await {
            return Some(end);
        }
    }
}

#[tokio::test]
async fn detached_nothing_is_written_and_reattached_the_queue_is_written_once_in_order() {
    let router = router(10_000).await;
    let (first, first_client) = fake_stream(false);
    let (mut session, handle) = bind(&router, first);
    queue(&handle, &["m1"]);
    assert_eq!(settle(&mut session, &router).await, None);
    assert_eq!(first_client.written(), ["m1"]);

    assert!(session.detach().is_some());
    assert!(!session.is_attached());
    queue(&handle, &["m2", "m3", "m4"]);
    assert_eq!(settle(&mut session, &router).await, None, "still bound");
    assert_eq!(first_client.written(), ["m1"], "nothing written detached");

    let (second, second_client) = fake_stream(false);
    assert!(session.attach(second).is_none());
    assert_eq!(settle(&mut session, &router).await, None);
    assert_eq!(second_client.written(), ["m2", "m3", "m4"]);
    queue(&handle, &["m5"]);
    assert_eq!(settle(&mut session, &router).await, None);
    assert_eq!(second_client.written(), ["m2", "m3", "m4", "m5"]);
    assert_eq!(first_client.written(), ["m1"]);
}

#[tokio::test]
async fn what_waits_while_detached_is_bounded_by_the_session_queue() {
    let router = router(10_000).await;
    let (stream, _client) = fake_stream(false);
    let (mut session, handle) = bind(&router, stream);
    session.detach();
    assert!(handle.send_stanza(&message("m1", 6_000)));
    assert!(
        !handle.send_stanza(&message("m2", 6_000)),
        "past session_queue_bytes"
    );
    assert_eq!(settle(&mut session, &router).await, None);
    assert!(
        !handle.send_stanza(&message("m2", 6_000)),
        "a detached session takes nothing out of its queue"
    );
}

#[tokio::test]
async fn pings_stop_while_detached_and_start_again_once_attached() {
    let mut raw = RawConfig::default();
    raw.c2s.ping_interval_seconds = 1;
    let config = Config::resolve(raw).expect("config");
    let storage = Storage::connect("sqlite::memory:").await.expect("storage");
    let router = server(config, storage);
    let (first, first_client) = fake_stream(false);
    let (mut session, _handle) = bind(&router, first);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(settle(&mut session, &router).await, None);
    assert_eq!(first_client.written(), ["iq"], "pinged, not answered");

    session.detach();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(settle(&mut session, &router).await, None, "no timeout");
    assert_eq!(first_client.written(), ["iq"], "no ping while detached");

    let (second, second_client) = fake_stream(false);
    session.attach(second);
    assert_eq!(
        settle(&mut session, &router).await,
        None,
        "the unanswered ping was for the old stream"
    );
    assert!(
        second_client.written().is_empty(),
        "the clock started again"
    );
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(settle(&mut session, &router).await, None);
    assert_eq!(second_client.written(), ["iq"], "pinged after an interval");
}

#[tokio::test]
async fn a_batch_whose_write_failed_goes_first_to_the_next_stream() {
    let router = router(10_000).await;
    let (broken, _broken_client) = fake_stream(true);
    let (mut session, handle) = bind(&router, broken);
    queue(&handle, &["m1", "m2"]);
    assert_eq!(settle(&mut session, &router).await, Some(Ending::Gone));
    // Today the session then ends; resumption will detach instead, and the batch must not be lost.
    session.detach();
    queue(&handle, &["m3"]);
    let (next, next_client) = fake_stream(false);
    session.attach(next);
    assert_eq!(settle(&mut session, &router).await, None);
    assert_eq!(next_client.written(), ["m1", "m2", "m3"]);
}

#[tokio::test]
async fn a_session_told_to_end_while_detached_ends_and_routes_its_queue_again() {
    let router = router(10_000).await;
    let (stream, client) = fake_stream(false);
    let (mut session, handle) = bind(&router, stream);
    session.detach();
    queue(&handle, &["m1", "m2"]);
    assert!(handle.send(SessionCommand::Terminate));
    let end = settle(&mut session, &router).await;
    assert_eq!(
        end,
        Some(Ending::Error(StreamErrorCondition::NotAuthorized)),
        "the command behind the queued stanzas is seen"
    );
    session.finish(&router, end.expect("ended")).await;
    {
        let wire = client.wire.lock().unwrap();
        assert!(wire.written.is_empty() && wire.error.is_none() && !wire.is_closed);
    }
    assert!(
        router.sessions.resources("alice@localhost").is_empty(),
        "unbound"
    );
    // RFC 6121 section 8.5.3.2.1: a chat message for a resource that is gone, with no other resource
    // available, is stored offline.
    let ids = offline_ids(&router).await;
    assert_eq!(ids, ["m1", "m2"]);
}

#[tokio::test]
async fn a_nonza_ends_the_stream_with_unsupported_stanza_type() {
    let router = router(10_000).await;
    let (stream, client) = fake_stream(false);
    let (session, _handle) = bind(&router, stream);
    let task = tokio::spawn(run(router.clone(), session));
    let r: Element = "<r xmlns='urn:xmpp:sm:3'/>".parse().expect("r");
    client.sends.send(Ok(Inbound::Nonza(r))).expect("send");
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("ended")
        .expect("task");
    let wire = client.wire.lock().unwrap();
    assert_eq!(
        wire.error,
        Some(StreamErrorCondition::UnsupportedStanzaType)
    );
    assert!(!wire.is_closed, "the stream error closed it");
}

#[tokio::test]
async fn a_client_closing_its_stream_gets_our_closing_tag() {
    let router = router(10_000).await;
    let (stream, client) = fake_stream(false);
    let (session, _handle) = bind(&router, stream);
    let task = tokio::spawn(run(router.clone(), session));
    client.sends.send(Ok(Inbound::Closed)).expect("send");
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("ended")
        .expect("task");
    let wire = client.wire.lock().unwrap();
    assert!(wire.is_closed && wire.error.is_none());
    assert!(router.sessions.resources("alice@localhost").is_empty());
}

/// Like [`settle`], but as [`run`] steps: a lost connection hibernates a resumable session.
async fn settle_managed(session: &mut Session, router: &Arc<Router>) -> Option<Ending> {
    loop {
        let wake = tokio::time::timeout(Duration::from_millis(50), session.wait())
            .await
            .ok()?;
        if let Some(end) = session.step(router, wake).await {
            return Some(end);
        }
    }
}

/// The client sends the nonza `xml`.
fn send_nonza(client: &FakeClient, xml: &str) {
    let element: Element = xml.parse().expect("nonza");
    client
        .sends
        .send(Ok(Inbound::Nonza(element)))
        .expect("session listening");
}

/// The client's connection fails without a closing tag (as a phone's does when it sleeps); the
/// session handles that and does not end (a resumable one hibernates).
async fn lose_connection(session: &mut Session, client: &FakeClient, router: &Arc<Router>) {
    client.sends.send(Err(StreamError::Closed)).expect("send");
    assert_eq!(
        settle_managed(session, router).await,
        None,
        "hibernated, not ended"
    );
}

/// The ids of the stanzas waiting for an acknowledgement.
fn unacked(session: &Session) -> Vec<String> {
    let managed = session.managed.as_ref().expect("stream management enabled");
    managed
        .state
        .unacked()
        .map(|stanza| {
            let element = stanza.unpack().expect("stanza");
            element.attr("id").unwrap_or_default().to_owned()
        })
        .collect()
}

#[tokio::test]
async fn stream_management_counts_both_ways_and_drops_what_is_acknowledged() {
    let router = router(10_000).await;
    let (stream, client) = fake_stream(false);
    let (mut session, handle) = bind(&router, stream);
    send_nonza(&client, "<enable xmlns='urn:xmpp:sm:3'/>");
    assert_eq!(settle_managed(&mut session, &router).await, None);
    assert_eq!(client.written(), ["enabled"]);
    assert!(
        router.sessions.session_count() == 1 && !session.can_hibernate(),
        "no resumption asked"
    );

    queue(&handle, &["m1", "m2"]);
    assert_eq!(settle_managed(&mut session, &router).await, None);
    assert_eq!(
        client.written(),
        ["enabled", "m1", "m2", "r"],
        "one request"
    );
    send_nonza(&client, "<a xmlns='urn:xmpp:sm:3' h='1'/>");
    assert_eq!(settle_managed(&mut session, &router).await, None);
    assert_eq!(unacked(&session), ["m2"]);

    let ping: Element =
        "<iq xmlns='jabber:client' type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>"
            .parse()
            .expect("iq");
    client.sends.send(Ok(Inbound::Stanza(ping))).expect("send");
    // Settled between, so the pong is written before the nonzas below are read.
    assert_eq!(settle_managed(&mut session, &router).await, None);
    send_nonza(&client, "<r xmlns='urn:xmpp:sm:3'/>");
    send_nonza(&client, "<enable xmlns='urn:xmpp:sm:3'/>");
    assert_eq!(settle_managed(&mut session, &router).await, None);
    assert_eq!(
        client.written()[4..],
        ["p1", "r", "a", "failed"],
        "the pong, a request, our count, enabling twice refused"
    );
    let managed = session.managed.as_ref().expect("enabled");
    assert_eq!(managed.state.inbound(), 1, "the client sent one stanza");
    assert_eq!(managed.state.sent(), 3);

    send_nonza(&client, "<a xmlns='urn:xmpp:sm:3' h='4'/>");
    assert_eq!(
        settle_managed(&mut session, &router).await,
        Some(Ending::Error(StreamErrorCondition::UndefinedCondition)),
        "handled-count-too-high"
    );
}

#[tokio::test]
async fn a_lost_connection_hibernates_and_resuming_writes_what_was_not_acknowledged_once() {
    let router = router(10_000).await;
    let (first, first_client) = fake_stream(false);
    let (mut session, handle) = bind(&router, first);
    send_nonza(
        &first_client,
        "<enable xmlns='urn:xmpp:sm:3' resume='true'/>",
    );
    assert_eq!(settle_managed(&mut session, &router).await, None);
    queue(&handle, &["m1", "m2"]);
    assert_eq!(settle_managed(&mut session, &router).await, None);
    assert_eq!(first_client.written(), ["enabled", "m1", "m2", "r"]);

    lose_connection(&mut session, &first_client, &router).await;
    assert!(!session.is_attached());
    assert_eq!(
        router.sessions.resources("alice@localhost").len(),
        1,
        "still bound"
    );
    queue(&handle, &["m3"]);
    assert_eq!(settle_managed(&mut session, &router).await, None);

    let (second, second_client) = fake_stream(false);
    assert!(
        handle
            .resume(Box::new(Resumption {
                stream: second,
                h: 1,
            }))
            .is_ok()
    );
    assert_eq!(settle_managed(&mut session, &router).await, None);
    assert_eq!(
        second_client.written(),
        ["resumed", "m2", "r", "m3"],
        "m1 was acknowledged by the resumption's h; each of the others once, in order"
    );
    assert_eq!(first_client.written(), ["enabled", "m1", "m2", "r"]);
    send_nonza(&second_client, "<a xmlns='urn:xmpp:sm:3' h='3'/>");
    assert_eq!(settle_managed(&mut session, &router).await, None);
    assert!(unacked(&session).is_empty());
}

#[tokio::test]
async fn a_resumption_acknowledging_more_than_was_sent_fails_and_ends_the_session() {
    let router = router(10_000).await;
    let (first, first_client) = fake_stream(false);
    let (mut session, handle) = bind(&router, first);
    send_nonza(
        &first_client,
        "<enable xmlns='urn:xmpp:sm:3' resume='true'/>",
    );
    assert_eq!(settle_managed(&mut session, &router).await, None);
    queue(&handle, &["m1"]);
    assert_eq!(settle_managed(&mut session, &router).await, None);
    lose_connection(&mut session, &first_client, &router).await;

    let (second, second_client) = fake_stream(false);
    assert!(
        handle
            .resume(Box::new(Resumption {
                stream: second,
                h: 5,
            }))
            .is_ok()
    );
    // XEP-0198 sections 4 and 5: `<failed/>` with handled-count-too-high, not a resumption.
    assert_eq!(
        settle_managed(&mut session, &router).await,
        Some(Ending::PeerClosed)
    );
    assert_eq!(second_client.written(), ["failed"]);
}

#[tokio::test]
async fn a_clean_close_ends_a_resumable_session_at_once() {
    let router = router(10_000).await;
    let (stream, client) = fake_stream(false);
    let (mut session, _handle) = bind(&router, stream);
    send_nonza(&client, "<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
    assert_eq!(settle_managed(&mut session, &router).await, None);
    client.sends.send(Ok(Inbound::Closed)).expect("send");
    assert_eq!(
        settle_managed(&mut session, &router).await,
        Some(Ending::PeerClosed)
    );
}

#[tokio::test]
async fn a_session_not_resumed_in_time_ends_and_stores_what_it_held() {
    let mut raw = RawConfig::default();
    raw.c2s.resume_timeout_seconds = 1;
    let config = Config::resolve(raw).expect("config");
    let storage = Storage::connect("sqlite::memory:").await.expect("storage");
    let alice = crate::accounts::parse_account("alice@localhost").expect("jid");
    crate::accounts::create(&storage, &alice, "secret")
        .await
        .expect("create");
    let router = server(config, storage);
    let (stream, client) = fake_stream(false);
    let (mut session, handle) = bind(&router, stream);
    send_nonza(&client, "<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
    assert_eq!(settle_managed(&mut session, &router).await, None);
    let id = session
        .managed
        .as_ref()
        .and_then(|managed| managed.state.resume_id())
        .expect("resumable")
        .to_owned();
    assert!(router.sessions.resumable(&id).is_some());
    queue(&handle, &["m1"]);
    assert_eq!(settle_managed(&mut session, &router).await, None);
    lose_connection(&mut session, &client, &router).await;
    queue(&handle, &["m2"]);

    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let wake = session.wait().await;
            if let Some(end) = session.step(&router, wake).await {
                return end;
            }
        }
    })
    .await
    .expect("the resume timeout ends it");
    assert_eq!(end, Ending::Gone);
    session.finish(&router, end).await;
    assert!(router.sessions.resources("alice@localhost").is_empty());
    assert!(
        router.sessions.resumable(&id).is_none(),
        "the id is forgotten"
    );
    let ids = offline_ids(&router).await;
    assert_eq!(
        ids,
        ["m1", "m2"],
        "the unacknowledged one, then the queued one"
    );
}

/// Queues, for alice@localhost/phone, a stanza given as XML.
fn queue_xml(handle: &SessionHandle, xml: &str) {
    let element: Element = xml.parse().expect("stanza");
    assert!(handle.send_stanza(&element), "queued {xml}");
}

/// bob's available presence with this id.
fn bobs_presence(id: &str) -> String {
    format!(
        "<presence xmlns='jabber:client' id='{id}' from='bob@localhost/pc' to='alice@localhost/phone'/>"
    )
}

/// A receipt (a bodiless message, held in order) with this id, asking to be stored offline (XEP-0334).
fn receipt(id: &str) -> String {
    format!(
        "<message xmlns='jabber:client' id='{id}' from='bob@localhost/pc' to='alice@localhost/phone'>\
         <received xmlns='urn:xmpp:receipts' id='x'/><store xmlns='urn:xmpp:hints'/></message>"
    )
}

/// What the client was written, without stream management's requests.
fn stanzas_written(client: &FakeClient) -> Vec<String> {
    client.written().into_iter().filter(|x| x != "r").collect()
}

#[tokio::test]
async fn an_inactive_client_gets_held_stanzas_when_something_urgent_comes_or_it_is_active() {
    let router = router(10_000).await;
    let (stream, client) = fake_stream(false);
    let (mut session, handle) = bind(&router, stream);
    send_nonza(&client, "<enable xmlns='urn:xmpp:sm:3'/>");
    send_nonza(&client, "<inactive xmlns='urn:xmpp:csi:0'/>");
    assert_eq!(settle_managed(&mut session, &router).await, None);
    queue_xml(&handle, &bobs_presence("p1"));
    queue_xml(&handle, &receipt("d1"));
    queue_xml(&handle, &bobs_presence("p2"));
    assert_eq!(settle_managed(&mut session, &router).await, None);
    assert_eq!(stanzas_written(&client), ["enabled"], "all held");
    let sent = |session: &Session| session.managed.as_ref().expect("enabled").state.sent();
    assert_eq!(
        sent(&session),
        0,
        "a held stanza is not counted (XEP-0198 section 4)"
    );

    queue(&handle, &["m1"]);
    assert_eq!(settle_managed(&mut session, &router).await, None);
    assert_eq!(
        stanzas_written(&client),
        ["enabled", "d1", "p2", "m1"],
        "the latest presence only, in its place, then the message that released them"
    );
    assert_eq!(sent(&session), 3);

    queue_xml(&handle, &bobs_presence("p3"));
    assert_eq!(settle_managed(&mut session, &router).await, None);
    assert_eq!(stanzas_written(&client).len(), 4, "held again");
    send_nonza(&client, "<active xmlns='urn:xmpp:csi:0'/>");
    // Settled first: taken while still inactive, p4 would replace p3 (the latest per contact).
    assert_eq!(settle_managed(&mut session, &router).await, None);
    queue_xml(&handle, &bobs_presence("p4"));
    assert_eq!(settle_managed(&mut session, &router).await, None);
    assert_eq!(
        stanzas_written(&client)[4..],
        ["p3", "p4"],
        "active: all at once"
    );
    assert_eq!(sent(&session), 5);
    assert!(session.held.is_none(), "an active client holds nothing");
}

#[tokio::test]
async fn what_is_held_when_the_connection_drops_is_written_on_resumption() {
    let router = router(10_000).await;
    let (first, first_client) = fake_stream(false);
    let (mut session, handle) = bind(&router, first);
    send_nonza(
        &first_client,
        "<enable xmlns='urn:xmpp:sm:3' resume='true'/>",
    );
    send_nonza(&first_client, "<inactive xmlns='urn:xmpp:csi:0'/>");
    assert_eq!(settle_managed(&mut session, &router).await, None);
    queue_xml(&handle, &bobs_presence("p1"));
    queue_xml(&handle, &receipt("d1"));
    assert_eq!(settle_managed(&mut session, &router).await, None);
    lose_connection(&mut session, &first_client, &router).await;
    queue_xml(&handle, &receipt("d2"));

    let (second, second_client) = fake_stream(false);
    let resumption = Box::new(Resumption {
        stream: second,
        h: 0,
    });
    assert!(handle.resume(resumption).is_ok());
    assert_eq!(settle_managed(&mut session, &router).await, None);
    assert_eq!(
        stanzas_written(&second_client),
        ["resumed", "p1", "d1"],
        "what was held goes out once, in order; d2 came later and is held again"
    );
    send_nonza(&second_client, "<active xmlns='urn:xmpp:csi:0'/>");
    assert_eq!(settle_managed(&mut session, &router).await, None);
    assert_eq!(stanzas_written(&second_client)[3..], ["d2"]);
}

#[tokio::test]
async fn what_is_held_when_the_session_ends_is_routed_again() {
    let router = router(10_000).await;
    let (stream, client) = fake_stream(false);
    let (mut session, handle) = bind(&router, stream);
    send_nonza(&client, "<inactive xmlns='urn:xmpp:csi:0'/>");
    assert_eq!(settle(&mut session, &router).await, None);
    queue_xml(&handle, &receipt("d1"));
    assert_eq!(settle(&mut session, &router).await, None);
    assert!(client.written().is_empty());
    client.sends.send(Err(StreamError::Closed)).expect("send");
    let end = settle(&mut session, &router).await.expect("ended");
    session.finish(&router, end).await;
    assert_eq!(
        offline_ids(&router).await,
        ["d1"],
        "kept for the next login"
    );
}

/// The size of what `f` returns, without calling it.
fn returned_size<A, B, R>(_: fn(A, B) -> R) -> usize {
    size_of::<R>()
}

/// What an idle session costs, besides the heap the mailbox and the ping timer hold: the task's future,
/// and the box its TCP/TLS stream is in. Before the session held its stream behind `dyn ClientStream`
/// the future was 816 bytes with the stream (360 bytes) inline; see `server/README.md` "Memory budget".
#[test]
fn an_idle_session_costs_no_more_than_before() {
    type Socket = crate::net::write_deadline::WriteDeadline<tokio::net::TcpStream>;
    type TcpStream = crate::xmpp::XmlStream<crate::net::transport::Transport<Socket>>;
    let future = returned_size(run);
    let stream = size_of::<TcpStream>();
    eprintln!(
        "session future {future} bytes, session {} bytes, stream box {stream} bytes",
        size_of::<Session>()
    );
    assert!(future + stream <= 816, "{future} + {stream}");
}

/// The ids of alice's offline messages, oldest first.
async fn offline_ids(router: &Arc<Router>) -> Vec<String> {
    let stored = router
        .context
        .storage
        .offline
        .fetch("alice@localhost")
        .await
        .expect("fetch");
    stored
        .iter()
        .map(|message| {
            let element: Element = message.stanza.parse().expect("stored stanza");
            element.attr("id").unwrap_or_default().to_owned()
        })
        .collect()
}

/// XEP-0198 with XEP-0357: once a push went out for a hibernated session ([`SessionCommand::KeepForPush`]),
/// it outlives the resume timeout, tells the subscribers shortly before its longer end (so the devices
/// are woken), and ends at the end. Time is paused: the waits are the session's own timers.
#[tokio::test]
async fn a_session_kept_for_push_outlives_the_resume_timeout_and_warns_before_its_end() {
    use crate::router::events::{EventLog, Recorded};
    let config = Config::resolve(RawConfig::default()).expect("config");
    let (resume, kept) = (config.resume_timeout, config.push_resume_timeout);
    assert_eq!(kept, Duration::from_secs(72 * 3600), "Prosody's default");
    let storage = Storage::connect("sqlite::memory:").await.expect("storage");
    let alice = crate::accounts::parse_account("alice@localhost").expect("jid");
    crate::accounts::create(&storage, &alice, "secret")
        .await
        .expect("create");
    let events = EventLog::default();
    let context = ServerContext::new(Arc::new(config), storage, LoginThrottle::default());
    let router = Router::new(
        Arc::new(context),
        Arc::new(crate::features::Features),
        Subscribers {
            log: Some(events.clone()),
            ..Subscribers::new(None)
        },
    );
    // Paused once the database is open (its pool's timeouts would otherwise fire at once).
    tokio::time::pause();
    let (stream, client) = fake_stream(false);
    let (mut session, handle) = bind(&router, stream);
    send_nonza(&client, "<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
    assert_eq!(settle_managed(&mut session, &router).await, None);
    lose_connection(&mut session, &client, &router).await;
    assert!(!session.is_attached(), "hibernated");

    assert!(handle.send(SessionCommand::KeepForPush));
    assert_eq!(settle_managed(&mut session, &router).await, None);
    tokio::time::advance(resume * 2).await;
    assert_eq!(
        settle_managed(&mut session, &router).await,
        None,
        "kept past the resume timeout"
    );
    let expiring = Recorded::Expiring {
        jid: "alice@localhost/phone".into(),
    };
    assert!(!events.take().contains(&expiring));

    tokio::time::advance(kept - resume * 2 - Duration::from_secs(599)).await;
    assert_eq!(settle_managed(&mut session, &router).await, None);
    assert!(
        events.take().contains(&expiring),
        "ten minutes before the end the devices are to be woken"
    );
    tokio::time::advance(Duration::from_secs(600)).await;
    assert_eq!(
        settle_managed(&mut session, &router).await,
        Some(Ending::Gone),
        "ended at the end"
    );
}

/// XEP-0198 section 3: a client's shorter `max` is how long its hibernated session waits, and
/// `<enabled/>` says so.
#[tokio::test]
async fn a_client_s_shorter_max_is_the_resume_timeout() {
    let router = router(10_000).await;
    tokio::time::pause();
    let (stream, client) = fake_stream(false);
    let (mut session, _handle) = bind(&router, stream);
    send_nonza(
        &client,
        "<enable xmlns='urn:xmpp:sm:3' resume='true' max='60'/>",
    );
    assert_eq!(settle_managed(&mut session, &router).await, None);
    let enabled = session.managed.as_ref().expect("enabled");
    assert_eq!(enabled.resume_timeout, Duration::from_secs(60));
    lose_connection(&mut session, &client, &router).await;
    tokio::time::advance(Duration::from_secs(59)).await;
    assert_eq!(settle_managed(&mut session, &router).await, None);
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(
        settle_managed(&mut session, &router).await,
        Some(Ending::Gone),
        "not resumed within the client's max"
    );
}
