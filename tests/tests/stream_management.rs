//! XEP-0198 Stream Management over real sockets: enabling (section 3), acknowledgements counted alike on
//! both sides (section 4), resumption after a dropped TCP connection with what was not acknowledged
//! delivered once (section 5), failed resumptions, and a session not resumed in time ending as if the
//! client had left.
#![allow(clippy::unwrap_used)]

use herald::xmpp::ns;
use herald_tests::xml::{self, has_body, is_presence};
use herald_tests::{DOMAIN, Element, PASSWORD, TestClient, TestServer};

/// A client's side of stream management: the stanzas it handled since `<enabled/>`, as it reports them.
struct Counted {
    client: TestClient,
    handled: u32,
}

impl Counted {
    /// Enables stream management, resumable or not, and returns `<enabled/>`; what came before it is
    /// skipped and not counted.
    async fn enable(mut client: TestClient, resume: bool) -> (Counted, Element) {
        let resume = if resume { " resume='true'" } else { "" };
        client
            .send(&format!("<enable xmlns='urn:xmpp:sm:3'{resume}/>"))
            .await;
        let enabled = client
            .expect("<enabled/>", |e| e.is("enabled", ns::SM))
            .await;
        (Counted { client, handled: 0 }, enabled)
    }

    /// The next element that is not the server's `<r/>`; each `<r/>` is answered with the count so far
    /// and each stanza counted (section 4).
    async fn next(&mut self) -> Element {
        loop {
            let element = self.client.recv().await;
            if element.is("r", ns::SM) {
                let h = self.handled;
                self.client
                    .send(&format!("<a xmlns='urn:xmpp:sm:3' h='{h}'/>"))
                    .await;
                continue;
            }
            if is_stanza(&element) {
                self.handled += 1;
            }
            return element;
        }
    }

    /// The first element matching `matches`, the others before it counted and dropped.
    async fn expect(&mut self, matches: impl Fn(&Element) -> bool) -> Element {
        loop {
            let element = self.next().await;
            if matches(&element) {
                return element;
            }
        }
    }

    /// Pings the server and returns what came before the answer, counted (see `TestClient::barrier`).
    async fn barrier(&mut self) -> Vec<Element> {
        let id = self.client.id();
        self.client
            .send(&format!(
                "<iq type='get' id='{id}' to='{DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>"
            ))
            .await;
        let mut before = Vec::new();
        loop {
            let element = self.next().await;
            if element.is("iq", ns::CLIENT) && element.attr("id") == Some(id.as_str()) {
                return before;
            }
            before.push(element);
        }
    }

    /// Shows that the server sent exactly as many stanzas as this client handled: `h` equal to its count
    /// is accepted, one more is `handled-count-too-high`, an `undefined-condition` stream error.
    async fn assert_counts_agree(mut self) {
        let h = self.handled;
        self.client
            .send(&format!(
                "<a xmlns='urn:xmpp:sm:3' h='{h}'/><a xmlns='urn:xmpp:sm:3' h='{}'/>",
                h + 1
            ))
            .await;
        self.client.expect_stream_error("undefined-condition").await;
    }
}

fn is_stanza(element: &Element) -> bool {
    element.ns() == ns::CLIENT && matches!(element.name(), "message" | "presence" | "iq")
}

/// A new connection authenticated as `user`, not bound.
async fn authenticated(server: &TestServer, user: &str) -> TestClient {
    let mut client = TestClient::connect_starttls(server).await;
    client.auth_plain(user, PASSWORD).await.unwrap();
    client
}

#[tokio::test]
async fn enabled_after_binding_and_acknowledgements_count_both_ways() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    let mut early = authenticated(&server, "alice").await;
    assert!(
        early.features.has_child("sm", ns::SM),
        "advertised with binding"
    );
    early.send("<enable xmlns='urn:xmpp:sm:3'/>").await;
    let failed = early.recv().await;
    assert!(
        failed.is("failed", ns::SM) && failed.has_child("unexpected-request", ns::STANZAS),
        "not before binding: {}",
        xml::show(&failed)
    );
    early.bind(Some("early")).await;

    let alice = server.login("alice", "phone").await;
    let mut bob = server.login("bob", "pc").await;
    let (mut alice, enabled) = Counted::enable(alice, false).await;
    assert_eq!(enabled.attr("resume"), None);
    for body in ["one", "two", "three"] {
        alice.client.chat("bob@localhost/pc", body).await;
    }
    alice.client.send("<r xmlns='urn:xmpp:sm:3'/>").await;
    let answer = alice.expect(|e| e.is("a", ns::SM)).await;
    assert_eq!(answer.attr("h"), Some("3"), "three stanzas from alice");
    for body in ["one", "two", "three"] {
        bob.expect(body, |e| has_body(e, body)).await;
    }

    for body in ["four", "five"] {
        bob.chat("alice@localhost/phone", body).await;
    }
    let mut received = Vec::new();
    while received.len() < 2 {
        let element = alice.next().await;
        if let Some(body) = xml::body(&element) {
            received.push(body);
        }
    }
    assert_eq!(received, ["four", "five"]);
    alice.client.send("<enable xmlns='urn:xmpp:sm:3'/>").await;
    let twice = alice.next().await;
    assert!(twice.is("failed", ns::SM), "enabling twice fails");
    alice.barrier().await;
    alice.assert_counts_agree().await;
}

#[tokio::test]
async fn a_dropped_connection_is_resumed_and_gets_what_it_missed_once() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    server.befriend("alice", "bob").await;
    let mut bob = server.online("bob", "pc").await;
    let alice = server.online("alice", "phone").await;
    bob.expect("alice online", |e| {
        is_presence(e, "alice@localhost/phone", None)
    })
    .await;
    let (mut alice, enabled) = Counted::enable(alice, true).await;
    assert_eq!(enabled.attr("resume"), Some("true"));
    assert_eq!(enabled.attr("max"), Some("300"));
    let id = enabled.attr("id").unwrap().to_owned();
    assert!(id.len() >= 22, "128 bits or more: {id}");

    alice.client.chat("bob@localhost/pc", "hi bob").await;
    bob.expect("hi bob", |e| has_body(e, "hi bob")).await;
    bob.chat("alice@localhost/phone", "before").await;
    // Bob's presence may come first: the session read `<enable/>` before writing it.
    alice.expect(|e| has_body(e, "before")).await;
    // Alice resumes as if "before" had been lost with the connection: it must come again.
    let handled = alice.handled - 1;

    // The TCP connection drops without `</stream:stream>`.
    drop(alice);
    bob.chat("alice@localhost/phone", "meanwhile").await;

    let mut resuming = authenticated(&server, "alice").await;
    resuming.jid = "alice@localhost/phone".into();
    resuming
        .send(&format!(
            "<resume xmlns='urn:xmpp:sm:3' previd='{id}' h='{handled}'/>"
        ))
        .await;
    let resumed = resuming.recv().await;
    assert!(resumed.is("resumed", ns::SM), "{}", xml::show(&resumed));
    assert_eq!(resumed.attr("previd"), Some(id.as_str()));
    assert_eq!(resumed.attr("h"), Some("1"), "alice sent one stanza");
    let mut alice = Counted {
        client: resuming,
        handled,
    };
    let mut after = alice.barrier().await;
    if !after.iter().any(|e| has_body(e, "meanwhile")) {
        // Bob's message may still have been on its way when the barrier was answered.
        after.push(alice.expect(|e| has_body(e, "meanwhile")).await);
        after.extend(alice.barrier().await);
    }
    let bodies: Vec<_> = after.iter().filter_map(xml::body).collect();
    assert_eq!(
        bodies,
        ["before", "meanwhile"],
        "what h did not cover, then what came while away, each once; nothing acknowledged again"
    );
    assert!(
        !after.iter().any(|e| e.is("presence", ns::CLIENT)),
        "nothing else"
    );
    // Presence is neither withdrawn nor broadcast again across the resumption.
    bob.assert_none("alice's presence", |e| {
        e.is("presence", ns::CLIENT) && e.attr("from") == Some("alice@localhost/phone")
    })
    .await;
    bob.chat("alice@localhost/phone", "after").await;
    let next = alice.next().await;
    assert!(has_body(&next, "after"), "{}", xml::show(&next));
    alice.barrier().await;
    alice.assert_counts_agree().await;
}

#[tokio::test]
async fn a_wrong_or_unknown_id_fails_and_binding_still_works() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    server.add_user("mallory").await;
    let alice = server.login("alice", "phone").await;
    let (alice, enabled) = Counted::enable(alice, true).await;
    let id = enabled.attr("id").unwrap().to_owned();

    for (user, previd) in [("mallory", id.as_str()), ("alice", "no-such-id")] {
        let mut client = authenticated(&server, user).await;
        client
            .send(&format!(
                "<resume xmlns='urn:xmpp:sm:3' previd='{previd}' h='0'/>"
            ))
            .await;
        let failed = client.recv().await;
        assert!(
            failed.is("failed", ns::SM) && failed.has_child("item-not-found", ns::STANZAS),
            "{user} resuming {previd}: {}",
            xml::show(&failed)
        );
        let jid = client.bind(Some("other")).await;
        assert_eq!(jid, format!("{user}@localhost/other"));
    }
    // Alice's session was not disturbed.
    let mut alice = alice;
    alice.barrier().await;
    alice.assert_counts_agree().await;
}

#[tokio::test]
async fn a_session_not_resumed_in_time_ends_and_its_messages_go_offline() {
    let server = TestServer::builder()
        .env("HERALD_C2S__RESUME_TIMEOUT_SECONDS", "1")
        .start()
        .await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    server.befriend("alice", "bob").await;
    let mut bob = server.online("bob", "pc").await;
    let alice = server.online("alice", "phone").await;
    bob.expect("alice online", |e| {
        is_presence(e, "alice@localhost/phone", None)
    })
    .await;
    let (alice, enabled) = Counted::enable(alice, true).await;
    assert_eq!(enabled.attr("max"), Some("1"));
    drop(alice);
    bob.chat("alice@localhost/phone", "while away").await;
    // Unavailable presence goes out when the timeout ends the session, after what it held was stored.
    bob.expect("alice unavailable", |e| {
        is_presence(e, "alice@localhost/phone", Some("unavailable"))
    })
    .await;
    let mut alice = server.login("alice", "phone").await;
    alice.send("<presence/>").await;
    alice
        .expect("the message, from offline storage", |e| {
            has_body(e, "while away")
        })
        .await;
}
