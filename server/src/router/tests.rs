//! The router on a fake context (RFC 6120 section 10, RFC 6121 section 8): every kind of route, and the
//! delivery events each one emits. The server's own handling is a recording fake, push is a recording
//! fake, storage is in-memory SQLite.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::events::{EventLog, Recorded, Subscribers, WakeUps};
use super::mailbox::{Mailbox, mailbox};
use super::routes::InProcessService;
use super::*;
use crate::config::{Config, RawConfig};
use crate::xmpp::{BareJid, DefinedCondition, Element, Envelope, FullJid, ns};
use herald_relay::login_throttle::LoginThrottle;
use herald_storage::Storage;

/// What the fake local handling and the fake services were asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    ForServer(String),
    ForUser(String),
    StoreOffline(String),
    Service(String),
}

#[derive(Default)]
struct Calls(Mutex<Vec<Call>>);

impl Calls {
    fn push(&self, call: Call) {
        self.0.lock().expect("calls").push(call);
    }

    fn take(&self) -> Vec<Call> {
        std::mem::take(&mut *self.0.lock().expect("calls"))
    }
}

/// The server's own handling, faked: records each call; storing offline answers `offline`.
struct FakeLocal {
    calls: Arc<Calls>,
    offline: Result<Stored, DefinedCondition>,
}

#[async_trait]
impl LocalHandling for FakeLocal {
    async fn for_server(&self, _: &Arc<Router>, envelope: Envelope) -> Result<Delivery, Bounce> {
        self.calls.push(Call::ForServer(id(&envelope)));
        Ok(Delivery::Handled)
    }

    async fn for_user(
        &self,
        _: &Arc<Router>,
        user: &BareJid,
        _: Envelope,
    ) -> Result<Delivery, Bounce> {
        self.calls.push(Call::ForUser(user.to_string()));
        Ok(Delivery::Handled)
    }

    async fn store_offline(
        &self,
        _: &Arc<Router>,
        user: &BareJid,
        envelope: &Envelope,
    ) -> Result<Stored, Bounce> {
        self.calls.push(Call::StoreOffline(user.to_string()));
        self.offline
            .clone()
            .map_err(|condition| Bounce::new(envelope.clone(), condition))
    }
}

/// A push subscriber that records whom it woke.
#[derive(Default)]
struct FakePush(Mutex<Vec<String>>);

#[async_trait]
impl WakeUps for FakePush {
    async fn wake_soon(&self, account: String) {
        self.0.lock().expect("woken").push(account);
    }
}

/// An in-process service (what MUC will be) that records what it receives.
struct FakeService {
    calls: Arc<Calls>,
    refuses: bool,
}

#[async_trait]
impl InProcessService for FakeService {
    async fn receive(&self, _: &Arc<Router>, envelope: Envelope) -> Result<Delivery, Bounce> {
        self.calls.push(Call::Service(id(&envelope)));
        if self.refuses {
            return Err(Bounce::new(envelope, DefinedCondition::ItemNotFound));
        }
        Ok(Delivery::Handled)
    }
}

fn id(envelope: &Envelope) -> String {
    envelope.id().unwrap_or_default().to_string()
}

/// A router for `localhost` on in-memory SQLite with the accounts alice and bob, the fakes above, and
/// an event log.
struct Fixture {
    router: Arc<Router>,
    calls: Arc<Calls>,
    push: Arc<FakePush>,
    events: EventLog,
}

struct Options {
    offline: Result<Stored, DefinedCondition>,
    has_push: bool,
    session_queue_bytes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            offline: Ok(Stored::Kept),
            has_push: true,
            session_queue_bytes: 100_000,
        }
    }
}

async fn fixture(options: Options) -> Fixture {
    let mut raw = RawConfig::default();
    raw.limits.max_stanza_bytes = 10_000;
    raw.limits.session_queue_bytes = options.session_queue_bytes;
    let config = Config::resolve(raw).expect("config");
    let storage = Storage::connect("sqlite::memory:").await.expect("storage");
    for name in ["alice@localhost", "bob@localhost"] {
        let jid = crate::accounts::parse_account(name).expect("jid");
        crate::accounts::create(&storage, &jid, "secret")
            .await
            .expect("create");
    }
    let context = ServerContext::new(Arc::new(config), storage, LoginThrottle::default());
    let calls = Arc::new(Calls::default());
    let push = Arc::new(FakePush::default());
    let events = EventLog::default();
    let subscribers = Subscribers {
        push: options
            .has_push
            .then(|| Arc::clone(&push) as Arc<dyn WakeUps>),
        archive: None,
        carbons: None,
        push_notifications: None,
        log: Some(events.clone()),
    };
    let local = Arc::new(FakeLocal {
        calls: Arc::clone(&calls),
        offline: options.offline,
    });
    let router = Router::new(Arc::new(context), local, subscribers);
    Fixture {
        router,
        calls,
        push,
        events,
    }
}

impl Fixture {
    /// Binds `bare/resource`, available at `priority` when `priority` is given.
    fn bind(&self, bare: &str, resource: &str, priority: Option<i8>) -> Mailbox<SessionCommand> {
        let (handle, commands) = self.router.sessions.new_session();
        self.router.sessions.bind(bare, resource, handle);
        if let Some(priority) = priority {
            let presence = Element::bare("presence", ns::CLIENT);
            self.router
                .sessions
                .set_presence(bare, resource, Some((presence, priority)));
        }
        commands
    }

    async fn route(&self, xml: &str) -> Delivery {
        let element: Element = xml.parse().expect("xml");
        self.router
            .route(Envelope::parse(element).expect("envelope"))
            .await
    }
}

/// The stanza a session was given, as XML.
fn written(commands: &mut Mailbox<SessionCommand>) -> Option<String> {
    match commands.try_recv()? {
        SessionCommand::Stanza(stanza) => Some(stanza.as_str().to_string()),
        other => panic!("not a stanza: {other:?}"),
    }
}

/// The next stanza a session is given within a second (for replies routed by a spawned task).
async fn next_written(commands: &mut Mailbox<SessionCommand>) -> String {
    match tokio::time::timeout(Duration::from_secs(1), commands.recv()).await {
        Ok(Some(SessionCommand::Stanza(stanza))) => stanza.as_str().to_string(),
        other => panic!("no stanza: {other:?}"),
    }
}

fn delivered(to: &str) -> Recorded {
    Recorded::Delivered { to: to.into() }
}

/// The events of a stanza routed to bob@localhost/pc and handed to it.
fn routed_to_bobs_pc() -> Vec<Recorded> {
    vec![
        delivered("bob@localhost/pc"),
        Recorded::DeliveredToUser {
            user: "bob@localhost".into(),
            resources: vec!["pc".into()],
        },
    ]
}

const CHAT_TO_ALICE: &str = "<message xmlns='jabber:client' type='chat' id='m1' \
                             from='bob@localhost/pc' to='alice@localhost'><body>hi</body></message>";

#[tokio::test]
async fn a_chat_to_an_online_user_reaches_each_top_resource_and_is_told_once_per_resource() {
    let f = fixture(Options::default()).await;
    let mut phone = f.bind("alice@localhost", "phone", Some(5));
    let mut laptop = f.bind("alice@localhost", "laptop", Some(5));
    let mut idle = f.bind("alice@localhost", "idle", Some(1));
    assert_eq!(f.route(CHAT_TO_ALICE).await, Delivery::Delivered);
    assert!(written(&mut phone).is_some_and(|x| x.contains("<body>hi</body>")));
    assert!(written(&mut laptop).is_some());
    assert!(written(&mut idle).is_none(), "lower priority");
    assert_eq!(
        f.events.take(),
        vec![
            delivered("alice@localhost/phone"),
            delivered("alice@localhost/laptop"),
            Recorded::DeliveredToUser {
                user: "alice@localhost".into(),
                resources: vec!["phone".into(), "laptop".into()]
            }
        ]
    );
    assert!(f.calls.take().is_empty());
}

#[tokio::test]
async fn a_chat_to_an_offline_user_is_stored_and_wakes_their_devices() {
    let f = fixture(Options::default()).await;
    assert_eq!(
        f.route(CHAT_TO_ALICE).await,
        Delivery::StoredOffline { waking: true }
    );
    assert_eq!(
        f.calls.take(),
        vec![Call::StoreOffline("alice@localhost".into())]
    );
    assert_eq!(
        f.events.take(),
        vec![Recorded::StoredOffline {
            user: "alice@localhost".into()
        }]
    );
    assert_eq!(*f.push.0.lock().expect("woken"), vec!["alice@localhost"]);
}

#[tokio::test]
async fn without_a_push_subscriber_a_stored_message_wakes_nobody() {
    let f = fixture(Options {
        has_push: false,
        ..Options::default()
    })
    .await;
    assert_eq!(
        f.route(CHAT_TO_ALICE).await,
        Delivery::StoredOffline { waking: false }
    );
    assert_eq!(
        f.events.take().len(),
        1,
        "still told to the other subscribers"
    );
}

#[tokio::test]
async fn a_message_not_worth_keeping_is_dropped_and_no_one_is_woken() {
    let f = fixture(Options {
        offline: Ok(Stored::NotKept),
        ..Options::default()
    })
    .await;
    assert_eq!(f.route(CHAT_TO_ALICE).await, Delivery::Dropped);
    assert!(f.events.take().is_empty());
    assert!(f.push.0.lock().expect("woken").is_empty());
}

#[tokio::test]
async fn a_full_offline_store_bounces_to_the_sender_and_emits_nothing_stored() {
    let f = fixture(Options {
        offline: Err(DefinedCondition::ResourceConstraint),
        ..Options::default()
    })
    .await;
    let mut bob = f.bind("bob@localhost", "pc", None);
    assert_eq!(
        f.route(CHAT_TO_ALICE).await,
        Delivery::Bounced(DefinedCondition::ResourceConstraint)
    );
    let error = next_written(&mut bob).await;
    assert!(error.contains("resource-constraint"), "{error}");
    assert_eq!(f.events.take(), routed_to_bobs_pc());
    assert!(f.push.0.lock().expect("woken").is_empty());
}

#[tokio::test]
async fn a_message_for_a_session_that_cannot_take_it_goes_offline() {
    let f = fixture(Options {
        session_queue_bytes: 10_000,
        ..Options::default()
    })
    .await;
    let (handle, _commands) = f.router.sessions.new_session();
    f.router
        .sessions
        .bind("alice@localhost", "phone", handle.clone());
    f.router.sessions.set_presence(
        "alice@localhost",
        "phone",
        Some((Element::bare("presence", ns::CLIENT), 0)),
    );
    let mut backlog = Element::bare("message", ns::CLIENT);
    backlog.append_text_node("x".repeat(10_000));
    assert!(handle.send_stanza(&backlog), "the queue is now full");
    assert_eq!(
        f.route(CHAT_TO_ALICE).await,
        Delivery::StoredOffline { waking: true }
    );
    assert_eq!(
        f.events.take(),
        vec![Recorded::StoredOffline {
            user: "alice@localhost".into()
        }],
        "nothing delivered"
    );
}

#[tokio::test]
async fn an_iq_to_a_resource_whose_queue_is_full_is_answered_service_unavailable() {
    let f = fixture(Options {
        session_queue_bytes: 10_000,
        ..Options::default()
    })
    .await;
    let router = &f.router;
    let (handle, _commands) = router.sessions.new_session();
    router
        .sessions
        .bind("alice@localhost", "phone", handle.clone());
    let mut backlog = Element::bare("message", crate::xmpp::ns::CLIENT);
    backlog.append_text_node("x".repeat(10_000));
    assert!(handle.send_stanza(&backlog), "the queue is now full");
    let iq: Element = "<iq xmlns='jabber:client' type='get' id='v1' from='bob@localhost/r' \
                       to='alice@localhost/phone'><query xmlns='jabber:iq:version'/></iq>"
        .parse()
        .expect("iq");
    let delivery = router.route(Envelope::parse(iq).expect("envelope")).await;
    assert_eq!(
        delivery,
        Delivery::Bounced(DefinedCondition::ServiceUnavailable)
    );
}

#[tokio::test]
async fn a_message_to_no_account_bounces_and_is_not_stored() {
    let f = fixture(Options::default()).await;
    let delivery = f
        .route(
            "<message xmlns='jabber:client' type='chat' from='bob@localhost/pc' \
             to='nobody@localhost'><body>x</body></message>",
        )
        .await;
    assert_eq!(
        delivery,
        Delivery::Bounced(DefinedCondition::ServiceUnavailable)
    );
    assert!(f.calls.take().is_empty());
}

#[tokio::test]
async fn nothing_from_a_blocked_sender_reaches_the_user() {
    let f = fixture(Options::default()).await;
    f.router
        .context
        .storage
        .block_lists
        .block("alice@localhost", &["bob@localhost".to_string()])
        .await
        .expect("block");
    let mut phone = f.bind("alice@localhost", "phone", Some(0));
    assert_eq!(
        f.route(CHAT_TO_ALICE).await,
        Delivery::Bounced(DefinedCondition::ServiceUnavailable)
    );
    assert!(written(&mut phone).is_none());
    assert!(f.events.take().is_empty());
}

#[tokio::test]
async fn stanzas_for_the_servers_domain_and_for_a_user_go_to_the_local_handling() {
    let f = fixture(Options::default()).await;
    let to_server = "<iq xmlns='jabber:client' type='get' id='s1' from='bob@localhost/pc' \
                     to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>";
    assert_eq!(f.route(to_server).await, Delivery::Handled);
    let to_account = "<iq xmlns='jabber:client' type='get' id='a1' from='bob@localhost/pc' \
                      to='alice@localhost'><ping xmlns='urn:xmpp:ping'/></iq>";
    assert_eq!(f.route(to_account).await, Delivery::Handled);
    assert_eq!(
        f.calls.take(),
        vec![
            Call::ForServer("s1".into()),
            Call::ForUser("alice@localhost".into())
        ]
    );
    assert!(f.events.take().is_empty());
}

#[tokio::test]
async fn a_component_gets_its_domains_stanzas_in_its_namespace_until_it_detaches() {
    let f = fixture(Options::default()).await;
    let (sender, mut component) = mailbox(16, 100_000);
    assert!(
        f.router
            .attach_component("bridge.localhost", sender.clone())
    );
    assert!(
        !f.router.attach_component("bridge.localhost", sender),
        "one component per domain"
    );
    assert_eq!(f.router.component_domains(), vec!["bridge.localhost"]);
    let to_component = "<message xmlns='jabber:client' id='c1' from='bob@localhost/pc' \
                        to='x@bridge.localhost'><body>hi</body></message>";
    assert_eq!(f.route(to_component).await, Delivery::Forwarded);
    let stanza = component.try_recv().expect("forwarded");
    assert_eq!(stanza.stream_ns(), ns::COMPONENT_ACCEPT);
    assert!(f.events.take().is_empty(), "a component is not a resource");

    f.router.detach_component("bridge.localhost");
    assert!(f.router.component_domains().is_empty());
    assert_eq!(
        f.route(to_component).await,
        Delivery::Bounced(DefinedCondition::RemoteServerNotFound)
    );
}

#[tokio::test]
async fn a_component_that_does_not_read_times_out() {
    let f = fixture(Options::default()).await;
    let (sender, _component) = mailbox(1, 100_000);
    assert!(f.router.attach_component("bridge.localhost", sender));
    let to_component = "<message xmlns='jabber:client' from='bob@localhost/pc' \
                        to='x@bridge.localhost'><body>hi</body></message>";
    assert_eq!(f.route(to_component).await, Delivery::Forwarded);
    assert_eq!(
        f.route(to_component).await,
        Delivery::Bounced(DefinedCondition::RemoteServerTimeout)
    );
}

#[tokio::test]
async fn a_remote_domain_bounces_remote_server_not_found_to_the_sender() {
    let f = fixture(Options::default()).await;
    let mut bob = f.bind("bob@localhost", "pc", None);
    let delivery = f
        .route(
            "<message xmlns='jabber:client' type='chat' id='r1' from='bob@localhost/pc' \
             to='juliet@capulet.example'><body>hi</body></message>",
        )
        .await;
    assert_eq!(
        delivery,
        Delivery::Bounced(DefinedCondition::RemoteServerNotFound)
    );
    let error = next_written(&mut bob).await;
    assert!(error.contains("remote-server-not-found"), "{error}");
    assert!(
        error.contains("id='r1'") || error.contains("id=\"r1\""),
        "{error}"
    );
    assert_eq!(f.events.take(), routed_to_bobs_pc());
}

#[tokio::test]
async fn an_in_process_service_receives_its_domains_stanzas() {
    let f = fixture(Options::default()).await;
    let service = Arc::new(FakeService {
        calls: Arc::clone(&f.calls),
        refuses: false,
    });
    assert!(f.router.attach_service("rooms.localhost", service));
    assert!(
        f.router.component_domains().is_empty(),
        "not listed as a component"
    );
    let to_room = "<message xmlns='jabber:client' type='groupchat' id='g1' \
                   from='bob@localhost/pc' to='lobby@rooms.localhost'><body>hi</body></message>";
    assert_eq!(f.route(to_room).await, Delivery::Handled);
    assert_eq!(f.calls.take(), vec![Call::Service("g1".into())]);

    f.router.detach_service("rooms.localhost");
    assert_eq!(
        f.route(to_room).await,
        Delivery::Bounced(DefinedCondition::RemoteServerNotFound)
    );
    assert!(f.calls.take().is_empty());
}

#[tokio::test]
async fn an_in_process_service_may_refuse_and_the_sender_hears_of_it() {
    let f = fixture(Options::default()).await;
    let mut bob = f.bind("bob@localhost", "pc", None);
    let service = Arc::new(FakeService {
        calls: Arc::clone(&f.calls),
        refuses: true,
    });
    assert!(f.router.attach_service("rooms.localhost", service));
    let to_room = "<message xmlns='jabber:client' type='groupchat' id='g2' \
                   from='bob@localhost/pc' to='lobby@rooms.localhost'><body>hi</body></message>";
    assert_eq!(
        f.route(to_room).await,
        Delivery::Bounced(DefinedCondition::ItemNotFound)
    );
    assert!(next_written(&mut bob).await.contains("item-not-found"));
}

#[tokio::test]
async fn delivering_to_one_resource_is_told_only_when_the_session_took_it() {
    let f = fixture(Options::default()).await;
    let mut phone = f.bind("alice@localhost", "phone", None);
    let push = Element::bare("iq", ns::CLIENT);
    assert!(
        f.router
            .deliver_to_resource("alice@localhost", "phone", &push)
            .await
    );
    assert!(written(&mut phone).is_some());
    assert!(
        !f.router
            .deliver_to_resource("alice@localhost", "tablet", &push)
            .await
    );
    assert_eq!(f.events.take(), vec![delivered("alice@localhost/phone")]);
}

#[tokio::test]
async fn session_events_reach_the_subscribers_in_order() {
    let f = fixture(Options::default()).await;
    let jid: FullJid = "alice@localhost/phone".parse().expect("jid");
    f.router
        .emit(events::DeliveryEvent::SessionBound { jid: &jid })
        .await;
    f.router
        .emit(events::DeliveryEvent::SessionEnded { jid: &jid })
        .await;
    assert_eq!(
        f.events.take(),
        vec![
            Recorded::Bound {
                jid: "alice@localhost/phone".into()
            },
            Recorded::Ended {
                jid: "alice@localhost/phone".into()
            }
        ]
    );
}

#[test]
fn the_route_table_serves_our_domains_locally_and_every_other_domain_is_remote() {
    let table = RouteTable::new(vec!["localhost".into()]);
    assert!(matches!(table.route("localhost"), Route::LocalUsers));
    assert!(matches!(table.route("elsewhere.example"), Route::Remote));
    let (sender, _rx) = mailbox(1, 1);
    assert!(table.attach("bridge.localhost", Route::Component(sender)));
    assert!(matches!(
        table.route("bridge.localhost"),
        Route::Component(_)
    ));
    table.detach("bridge.localhost");
    assert!(matches!(table.route("bridge.localhost"), Route::Remote));
}
