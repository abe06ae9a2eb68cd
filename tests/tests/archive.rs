//! Message Archive Management over real sockets (XEP-0313 with XEP-0359 stanza ids, XEP-0059 paging,
//! XEP-0441 preferences), on SQLite and, when `HERALD_TEST_POSTGRES_URL` is set, on PostgreSQL.
#![allow(clippy::unwrap_used)]

use herald::xmpp::ns;
use herald_tests::TestClient;
use herald_tests::faulty_storage::Faults;
use herald_tests::xml::{self, disco_features};
use herald_tests::{Backend, Element, TestServer, on_every_backend};

on_every_backend!(
    a_contact_s_messages_page_forward_once_each_with_their_stanza_ids,
    a_message_to_several_resources_is_archived_once,
    never_for_a_contact_stops_archiving_and_chat_states_are_not_archived,
    a_forged_stanza_id_is_replaced,
    the_archive_is_discoverable_with_its_form_and_metadata,
    a_removed_account_leaves_no_archive,
    a_message_the_offline_store_refuses_is_not_archived,
    with_the_archive_off_nothing_is_archived_offered_or_answered,
);

const RSM: &str = "http://jabber.org/protocol/rsm";

/// A query's outcome: the `<result/>`s that came before the IQ answer, and the answer.
struct Answer {
    results: Vec<Element>,
    iq: Element,
}

impl Answer {
    /// `(stanza id, body, from of the original)` of each result, in order.
    fn messages(&self) -> Vec<(String, String, String)> {
        self.results
            .iter()
            .map(|message| {
                let result = message.get_child("result", ns::MAM).unwrap();
                let original = result
                    .get_child("forwarded", ns::FORWARD)
                    .and_then(|f| f.get_child("message", ns::CLIENT))
                    .unwrap_or_else(|| panic!("forwarded message in {}", xml::show(message)));
                (
                    result.attr("id").unwrap_or_default().to_string(),
                    xml::body(original).unwrap_or_default(),
                    original.attr("from").unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    fn ids(&self) -> Vec<String> {
        self.messages().into_iter().map(|(id, _, _)| id).collect()
    }

    fn bodies(&self) -> Vec<String> {
        self.messages()
            .into_iter()
            .map(|(_, body, _)| body)
            .collect()
    }

    fn fin(&self) -> &Element {
        self.iq
            .get_child("fin", ns::MAM)
            .unwrap_or_else(|| panic!("fin in {}", xml::show(&self.iq)))
    }

    fn is_complete(&self) -> bool {
        self.fin().attr("complete") == Some("true")
    }

    fn rsm(&self, name: &str) -> Option<String> {
        self.fin()
            .get_child("set", RSM)?
            .get_child(name, RSM)
            .map(Element::text)
    }
}

/// Sends a MAM query (`type='set'`) with `with` (if any) and the RSM `set` body, and collects what
/// arrives up to the IQ answer.
async fn query(client: &mut TestClient, with: Option<&str>, rsm: &str) -> Answer {
    let form = with
        .map(|with| {
            format!(
                "<x xmlns='jabber:x:data' type='submit'>\
                 <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>\
                 <field var='with'><value>{with}</value></field></x>"
            )
        })
        .unwrap_or_default();
    let id = client.id();
    client
        .send(&format!(
            "<iq type='set' id='{id}'><query xmlns='urn:xmpp:mam:2' queryid='q-{id}'>{form}\
             <set xmlns='{RSM}'>{rsm}</set></query></iq>"
        ))
        .await;
    let mut results = Vec::new();
    loop {
        let element = client.recv().await;
        if element.is("iq", ns::CLIENT) && element.attr("id") == Some(id.as_str()) {
            for result in &results {
                let result: &Element = result;
                let queryid = result
                    .get_child("result", ns::MAM)
                    .and_then(|r| r.attr("queryid"));
                assert_eq!(queryid, Some(format!("q-{id}").as_str()), "queryid echoed");
            }
            return Answer {
                results,
                iq: element,
            };
        }
        if element.is("message", ns::CLIENT) && element.has_child("result", ns::MAM) {
            results.push(element);
        } else {
            panic!("unexpected during a query: {}", xml::show(&element));
        }
    }
}

/// The stanza id the archive of `owner` put on a delivered message (XEP-0359), if any.
fn stanza_ids_by(message: &Element, owner: &str) -> Vec<String> {
    message
        .children()
        .filter(|c| c.is("stanza-id", ns::STANZA_ID) && c.attr("by") == Some(owner))
        .map(|c| c.attr("id").unwrap_or_default().to_string())
        .collect()
}

fn one_stanza_id(message: &Element, owner: &str) -> String {
    let ids = stanza_ids_by(message, owner);
    assert_eq!(ids.len(), 1, "one stanza-id in {}", xml::show(message));
    ids[0].clone()
}

async fn receive_body(client: &mut TestClient, body: &str) -> Element {
    client
        .expect(&format!("message {body}"), |e| xml::has_body(e, body))
        .await
}

async fn a_contact_s_messages_page_forward_once_each_with_their_stanza_ids(backend: Backend) {
    let server = TestServer::builder().backend(backend).start().await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    server.add_user("carol").await;
    let mut alice = server.online("alice", "a").await;
    let mut bob = server.online("bob", "r").await;
    let mut carol = server.online("carol", "c").await;

    // Two while bob is online, one from carol in between (filtered out by `with`), one while offline.
    let mut delivered_ids = Vec::new();
    alice.chat("bob@localhost", "one").await;
    delivered_ids.push(one_stanza_id(
        &receive_body(&mut bob, "one").await,
        "bob@localhost",
    ));
    carol.chat("bob@localhost", "from carol").await;
    receive_body(&mut bob, "from carol").await;
    alice.chat("bob@localhost", "two").await;
    delivered_ids.push(one_stanza_id(
        &receive_body(&mut bob, "two").await,
        "bob@localhost",
    ));
    bob.close_and_wait_for_end().await;
    alice.chat("bob@localhost", "three").await;
    alice.barrier().await;
    let mut bob = server.login("bob", "r").await;
    bob.available(None).await;
    delivered_ids.push(one_stanza_id(
        &receive_body(&mut bob, "three").await,
        "bob@localhost",
    ));

    // Paging forward by two with <after>: each message exactly once, in order, with the delivered ids.
    let first = query(&mut bob, Some("alice@localhost"), "<max>2</max>").await;
    assert_eq!(first.bodies(), ["one", "two"], "{}", xml::show(&first.iq));
    assert_eq!(first.ids(), delivered_ids[..2]);
    assert!(
        !first.is_complete(),
        "more to come: {}",
        xml::show(&first.iq)
    );
    assert_eq!(first.rsm("first"), Some(delivered_ids[0].clone()));
    assert_eq!(first.rsm("last"), Some(delivered_ids[1].clone()));
    for (_, _, from) in first.messages() {
        assert_eq!(from, "alice@localhost/a");
    }
    let after = format!("<max>2</max><after>{}</after>", delivered_ids[1]);
    let second = query(&mut bob, Some("alice@localhost"), &after).await;
    assert_eq!(second.bodies(), ["three"]);
    assert_eq!(second.ids(), delivered_ids[2..]);
    assert!(second.is_complete(), "{}", xml::show(&second.iq));

    // An empty <before/> gives the last page, in chronological order (XEP-0313 section 4.3.3).
    let last = query(&mut bob, Some("alice@localhost"), "<max>2</max><before/>").await;
    assert_eq!(last.ids(), delivered_ids[1..]);
    assert!(
        !last.is_complete(),
        "one more before: {}",
        xml::show(&last.iq)
    );

    // Without `with`, carol's message is there too, between one and two.
    let all = query(&mut bob, None, "<max>10</max>").await;
    assert_eq!(all.bodies(), ["one", "from carol", "two", "three"]);

    // Alice's own archive has the three as outgoing (from her, to bob).
    let sent = query(&mut alice, Some("bob@localhost"), "<max>10</max>").await;
    assert_eq!(sent.bodies(), ["one", "two", "three"]);
    for message in &sent.results {
        let original = message
            .get_child("result", ns::MAM)
            .and_then(|r| r.get_child("forwarded", ns::FORWARD))
            .and_then(|f| f.get_child("message", ns::CLIENT))
            .unwrap();
        assert_eq!(original.attr("to"), Some("bob@localhost"));
    }
    let alice_ids = sent.ids();
    assert!(
        alice_ids.iter().all(|id| !delivered_ids.contains(id)),
        "each archive draws its own ids"
    );

    // An id this archive does not hold: item-not-found (XEP-0313 section 4.3.2), also bob's id in
    // alice's archive.
    for (client, unknown) in [
        (&mut bob, "no-such-id".to_string()),
        (&mut alice, delivered_ids[0].clone()),
    ] {
        let id = client.id();
        client
            .send(&format!(
                "<iq type='set' id='{id}'><query xmlns='urn:xmpp:mam:2'>\
                 <set xmlns='{RSM}'><after>{unknown}</after></set></query></iq>"
            ))
            .await;
        let answer = client
            .expect("query answer", |e| {
                e.is("iq", ns::CLIENT) && e.attr("id") == Some(id.as_str())
            })
            .await;
        assert!(
            xml::is_error(&answer, "iq", "item-not-found"),
            "{}",
            xml::show(&answer)
        );
    }

    // A malformed form: bad-request.
    let answer = bob
        .iq(
            "set",
            None,
            "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'>\
             <field var='start'><value>last tuesday</value></field></x></query>",
        )
        .await;
    assert!(
        xml::is_error(&answer, "iq", "bad-request"),
        "{}",
        xml::show(&answer)
    );
}

async fn a_message_to_several_resources_is_archived_once(backend: Backend) {
    let server = TestServer::builder().backend(backend).start().await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    let mut alice = server.online("alice", "a").await;
    let mut phone = server.online("bob", "phone").await;
    let mut laptop = server.online("bob", "laptop").await;
    alice.chat("bob@localhost", "to both").await;
    let on_phone = one_stanza_id(&receive_body(&mut phone, "to both").await, "bob@localhost");
    let on_laptop = one_stanza_id(&receive_body(&mut laptop, "to both").await, "bob@localhost");
    assert_eq!(on_phone, on_laptop, "one message, one id");
    let all = query(&mut phone, None, "").await;
    assert_eq!(all.ids(), [on_phone]);
    assert!(all.is_complete());
}

async fn never_for_a_contact_stops_archiving_and_chat_states_are_not_archived(backend: Backend) {
    let server = TestServer::builder().backend(backend).start().await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    server.add_user("carol").await;
    let mut alice = server.online("alice", "a").await;
    let mut bob = server.online("bob", "r").await;
    let mut carol = server.online("carol", "c").await;

    let prefs = bob
        .iq_result(
            "set",
            None,
            "<prefs xmlns='urn:xmpp:mam:2' default='always'><always/>\
             <never><jid>alice@localhost</jid></never></prefs>",
        )
        .await;
    let stored = prefs.get_child("prefs", ns::MAM).unwrap();
    assert_eq!(stored.attr("default"), Some("always"));
    let got = bob
        .iq_result("get", None, "<prefs xmlns='urn:xmpp:mam:2'/>")
        .await;
    let never: Vec<String> = got
        .get_child("prefs", ns::MAM)
        .and_then(|p| p.get_child("never", ns::MAM))
        .map(|n| n.children().map(Element::text).collect())
        .unwrap_or_default();
    assert_eq!(never, ["alice@localhost"]);

    alice.chat("bob@localhost", "off the record").await;
    let message = receive_body(&mut bob, "off the record").await;
    assert!(
        stanza_ids_by(&message, "bob@localhost").is_empty(),
        "not archived, no id"
    );

    // A chat state alone is delivered but not archived; a body is.
    carol
        .send(
            "<message to='bob@localhost' type='chat'>\
             <composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
        )
        .await;
    let composing = bob
        .expect("chat state", |e| {
            e.is("message", ns::CLIENT)
                && e.has_child("composing", "http://jabber.org/protocol/chatstates")
        })
        .await;
    assert!(stanza_ids_by(&composing, "bob@localhost").is_empty());
    carol.chat("bob@localhost", "kept").await;
    let kept = one_stanza_id(&receive_body(&mut bob, "kept").await, "bob@localhost");

    let all = query(&mut bob, None, "").await;
    assert_eq!(all.ids(), [kept], "{:?}", all.bodies());
    // Carol's archive has only the message with a body too.
    let carol_archive = query(&mut carol, None, "").await;
    assert_eq!(carol_archive.bodies(), ["kept"]);
}

async fn a_forged_stanza_id_is_replaced(backend: Backend) {
    let server = TestServer::builder().backend(backend).start().await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    let mut alice = server.online("alice", "a").await;
    let mut bob = server.online("bob", "r").await;
    alice
        .send(
            "<message to='bob@localhost' type='chat'><body>trust me</body>\
             <stanza-id xmlns='urn:xmpp:sid:0' by='bob@localhost' id='forged'/></message>",
        )
        .await;
    let message = receive_body(&mut bob, "trust me").await;
    let id = one_stanza_id(&message, "bob@localhost");
    assert_ne!(id, "forged");
    let all = query(&mut bob, None, "").await;
    assert_eq!(all.ids(), [id]);
}

async fn the_archive_is_discoverable_with_its_form_and_metadata(backend: Backend) {
    let server = TestServer::builder().backend(backend).start().await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    let mut alice = server.online("alice", "a").await;
    let mut bob = server.online("bob", "r").await;

    let info = bob
        .iq_result(
            "get",
            Some("bob@localhost"),
            "<query xmlns='http://jabber.org/protocol/disco#info'/>",
        )
        .await;
    let features = disco_features(&info);
    for feature in ["urn:xmpp:mam:2", "urn:xmpp:mam:2#extended"] {
        assert!(features.iter().any(|f| f == feature), "{features:?}");
    }

    let form = bob
        .iq_result("get", None, "<query xmlns='urn:xmpp:mam:2'/>")
        .await;
    let vars: Vec<String> = form
        .get_child("query", ns::MAM)
        .and_then(|q| q.get_child("x", ns::DATA_FORMS))
        .map(|x| {
            x.children()
                .filter_map(|f| f.attr("var").map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    for var in [
        "FORM_TYPE",
        "with",
        "start",
        "end",
        "before-id",
        "after-id",
        "ids",
    ] {
        assert!(vars.iter().any(|v| v == var), "{var} in {vars:?}");
    }

    let empty = bob
        .iq_result("get", None, "<metadata xmlns='urn:xmpp:mam:2'/>")
        .await;
    let metadata = empty.get_child("metadata", ns::MAM).unwrap();
    assert_eq!(metadata.children().count(), 0, "{}", xml::show(&empty));

    alice.chat("bob@localhost", "first").await;
    let first = one_stanza_id(&receive_body(&mut bob, "first").await, "bob@localhost");
    alice.chat("bob@localhost", "last").await;
    let last = one_stanza_id(&receive_body(&mut bob, "last").await, "bob@localhost");
    let answer = bob
        .iq_result("get", None, "<metadata xmlns='urn:xmpp:mam:2'/>")
        .await;
    let metadata = answer.get_child("metadata", ns::MAM).unwrap();
    let end_id = |name: &str| {
        metadata
            .get_child(name, ns::MAM)
            .and_then(|e| e.attr("id"))
            .map(str::to_string)
    };
    assert_eq!(end_id("start"), Some(first));
    assert_eq!(end_id("end"), Some(last));
}

/// XEP-0160 with XEP-0313: a message bounced for a full offline quota never reached the user, so it is
/// not in their archive either (the archive holds only what the user can have).
async fn a_message_the_offline_store_refuses_is_not_archived(backend: Backend) {
    let server = TestServer::builder()
        .backend(backend)
        .env("HERALD_LIMITS__OFFLINE_QUOTA", "1")
        .start()
        .await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    let mut alice = server.online("alice", "a").await;
    for (id, body) in [("k1", "kept"), ("k2", "refused")] {
        alice
            .send(&format!(
                "<message to='bob@localhost' type='chat' id='{id}'><body>{body}</body></message>"
            ))
            .await;
    }
    alice
        .expect("the second message bounced", |e| {
            e.attr("id") == Some("k2") && e.attr("type") == Some("error")
        })
        .await;
    let mut bob = server.login("bob", "r").await;
    assert_eq!(query(&mut bob, None, "").await.bodies(), ["kept"]);
}

async fn a_removed_account_leaves_no_archive(backend: Backend) {
    let server = TestServer::builder().backend(backend).start().await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    let mut alice = server.online("alice", "a").await;
    let mut bob = server.online("bob", "r").await;
    alice.chat("bob@localhost", "before removal").await;
    receive_body(&mut bob, "before removal").await;
    assert_eq!(query(&mut bob, None, "").await.bodies(), ["before removal"]);
    bob.send("<iq type='set' id='bye'><query xmlns='jabber:iq:register'><remove/></query></iq>")
        .await;
    bob.expect("removal result", |e| {
        e.attr("id") == Some("bye") && e.attr("type") == Some("result")
    })
    .await;
    bob.expect_any_stream_error().await;
    // The same name again is a new account with an empty archive (XEP-0077 section 3.2 removes the
    // account's data; the storage deletes the archive in the same transaction).
    server.add_user("bob").await;
    let mut again = server.online("bob", "r").await;
    let all = query(&mut again, None, "").await;
    assert!(all.results.is_empty(), "{:?}", all.bodies());
    assert!(all.is_complete());
}

/// A database that fails for the archive only must not cost the message: it is delivered (online) or
/// stored (offline), and the sender hears of no error. Archiving runs behind delivery, so the message
/// already carries the stanza id it was given in memory; the failed row is lost alone (the batch it was
/// in is written row by row), and the sender's archive, written in the same batches, keeps both.
#[tokio::test]
async fn an_archive_failure_does_not_cost_the_message() {
    let faults = Faults::default();
    let wrapped = faults.clone();
    let server = TestServer::builder()
        .wrap_storage(move |storage| wrapped.wrap(storage))
        .start()
        .await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    let mut alice = server.online("alice", "a").await;
    let mut bob = server.online("bob", "r").await;
    faults.fail_archive("bob@localhost");

    alice.chat("bob@localhost", "online").await;
    receive_body(&mut bob, "online").await;

    bob.close_and_wait_for_end().await;
    alice.chat("bob@localhost", "offline").await;
    let at_alice = alice.barrier().await;
    assert!(
        !xml::any(&at_alice, |e| e.attr("type") == Some("error")),
        "the sender saw no failure: {at_alice:?}"
    );
    let mut bob = server.login("bob", "r").await;
    bob.available(None).await;
    receive_body(&mut bob, "offline").await;

    // Alice's archive worked throughout: both are there as outgoing.
    let sent = query(&mut alice, Some("bob@localhost"), "").await;
    assert_eq!(sent.bodies(), ["online", "offline"]);
}

/// `[archive] enabled = false`: no stanza id, no archived row, no XEP-0313 in disco#info, and a query
/// gets `service-unavailable` (RFC 6120 section 8.4), as from a server without the archive.
async fn with_the_archive_off_nothing_is_archived_offered_or_answered(backend: Backend) {
    let server = TestServer::builder()
        .backend(backend)
        .env("HERALD_ARCHIVE__ENABLED", "false")
        .start()
        .await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    let mut alice = server.online("alice", "a").await;
    let mut bob = server.online("bob", "r").await;

    alice.chat("bob@localhost", "unarchived").await;
    let received = receive_body(&mut bob, "unarchived").await;
    assert!(
        stanza_ids_by(&received, "bob@localhost").is_empty(),
        "{}",
        xml::show(&received)
    );
    bob.close_and_wait_for_end().await;
    alice.chat("bob@localhost", "while offline").await;
    alice.barrier().await;

    let mut bob = server.login("bob", "r").await;
    let info = bob
        .iq_result(
            "get",
            Some("bob@localhost"),
            "<query xmlns='http://jabber.org/protocol/disco#info'/>",
        )
        .await;
    let features = disco_features(&info);
    assert!(
        !features.iter().any(|f| f.starts_with("urn:xmpp:mam:")),
        "{features:?}"
    );
    let answer = bob
        .iq("get", None, "<metadata xmlns='urn:xmpp:mam:2'/>")
        .await;
    assert_eq!(answer.attr("type"), Some("error"), "{}", xml::show(&answer));
    assert_eq!(
        xml::error_condition(&answer).as_deref(),
        Some("service-unavailable")
    );
    bob.available(None).await;
    receive_body(&mut bob, "while offline").await;

    // Appends are written behind delivery; a stopped server has committed every one it queued.
    let mut server = server;
    server.stop().await;
    for owner in ["alice@localhost", "bob@localhost"] {
        let metadata = server.storage.archive.metadata(owner).await.unwrap();
        assert!(metadata.is_none(), "{owner}'s archive: {metadata:?}");
    }
}
