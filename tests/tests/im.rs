//! Presence and delivery over real sockets (RFC 6121 sections 4 and 8): presence broadcast, probes,
//! directed presence, the bare/full JID delivery rules with priorities, plus stanza-level addressing errors
//! (RFC 6120 sections 8.1.2.1 and 8.3.3).
#![allow(clippy::unwrap_used)]

use herald::xmpp::ns;
use herald_tests::TestServer;
use herald_tests::xml::{self, any, find, is_error, is_presence};

#[tokio::test]
async fn presence_is_broadcast_probed_and_ended_on_disconnect() {
    let server = TestServer::start().await;
    for user in ["alice", "bob", "carol"] {
        server.add_user(user).await;
    }
    server.befriend("alice", "bob").await;
    let mut bob = server.online("bob", "r").await;
    let mut carol = server.online("carol", "r").await;

    let mut alice = server.login("alice", "r").await;
    alice.available(None).await;
    // 4.2.2: bob (subscribed) gets alice's initial presence; 4.3.2: the probe brings bob's back.
    bob.expect("alice's initial presence", |e| {
        is_presence(e, "alice@localhost/r", None)
    })
    .await;
    alice
        .expect("bob's presence, answering the probe", |e| {
            is_presence(e, "bob@localhost/r", None)
        })
        .await;
    carol
        .assert_none("presence of a non-contact", |e| {
            is_presence(e, "alice@localhost/r", None)
        })
        .await;

    // 4.6.2: directed presence to carol, who is not a contact.
    alice.send("<presence to='carol@localhost/r'/>").await;
    alice.barrier().await;
    carol
        .expect("directed presence", |e| {
            is_presence(e, "alice@localhost/r", None)
        })
        .await;

    // 4.5.2 and 4.6.3: the connection drops without an unavailable presence.
    drop(alice);
    bob.expect("unavailable to the contact", |e| {
        is_presence(e, "alice@localhost/r", Some("unavailable"))
    })
    .await;
    carol
        .expect("unavailable to the directed-presence target", |e| {
            is_presence(e, "alice@localhost/r", Some("unavailable"))
        })
        .await;
}

#[tokio::test]
async fn chat_to_the_bare_jid_goes_to_the_highest_non_negative_priority() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    let mut alice = Vec::new();
    for (resource, priority) in [("top1", 5), ("top2", 5), ("low", 1), ("negative", -1)] {
        let mut client = server.login("alice", resource).await;
        client.available(Some(priority)).await;
        alice.push(client);
    }
    let mut bob = server.online("bob", "r").await;
    bob.chat("alice@localhost", "to the top").await;
    bob.barrier().await;
    for (index, client) in alice.iter_mut().enumerate() {
        let got = client.barrier().await;
        let delivered = any(&got, |e| {
            xml::is_message(e, "bob@localhost/r", "to the top")
        });
        assert_eq!(delivered, index < 2, "{} delivered={delivered}", client.jid);
    }
}

#[tokio::test]
async fn negative_priority_resources_get_nothing_sent_to_the_bare_jid() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    let mut negative = server.login("alice", "negative").await;
    negative.available(Some(-1)).await;
    let mut bob = server.online("bob", "r").await;
    bob.chat("alice@localhost", "to the bare jid").await;
    bob.chat("alice@localhost/negative", "to the full jid")
        .await;
    bob.barrier().await;
    let got = negative.barrier().await;
    assert!(!any(&got, |e| xml::has_body(e, "to the bare jid")));
    find(&got, "message to its full JID", |e| {
        xml::has_body(e, "to the full jid")
    });
    // Not lost either: RFC 6121 8.5.2.1.1 treats it as if no resource were available (offline storage).
    let mut normal = server.login("alice", "normal").await;
    normal.available(None).await;
    normal
        .expect("the stored message", |e| {
            xml::has_body(e, "to the bare jid")
        })
        .await;
}

#[tokio::test]
async fn message_to_an_offline_resource_follows_the_bare_jid_rules() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    let mut alice = server.online("alice", "here").await;
    let mut bob = server.online("bob", "r").await;
    bob.chat("alice@localhost/gone", "to a gone resource").await;
    alice
        .expect("message via the bare JID", |e| {
            xml::is_message(e, "bob@localhost/r", "to a gone resource")
        })
        .await;
}

#[tokio::test]
async fn groupchat_to_a_bare_jid_is_an_error() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    let mut alice = server.online("alice", "r").await;
    let mut bob = server.online("bob", "r").await;
    bob.send("<message to='alice@localhost' type='groupchat' id='g1'><body>room?</body></message>")
        .await;
    let error = bob
        .expect("groupchat error", |e| e.attr("id") == Some("g1"))
        .await;
    assert!(
        is_error(&error, "message", "service-unavailable"),
        "{}",
        xml::show(&error)
    );
    alice
        .assert_none("groupchat", |e| xml::has_body(e, "room?"))
        .await;
}

#[tokio::test]
async fn message_to_a_nonexistent_account_is_service_unavailable() {
    let server = TestServer::start().await;
    server.add_user("bob").await;
    let mut bob = server.online("bob", "r").await;
    bob.send("<message to='nobody@localhost' type='chat' id='m1'><body>hello?</body></message>")
        .await;
    let error = bob
        .expect("error reply", |e| e.attr("id") == Some("m1"))
        .await;
    assert!(
        is_error(&error, "message", "service-unavailable"),
        "{}",
        xml::show(&error)
    );
    assert_eq!(error.attr("from"), Some("nobody@localhost"));
}

#[tokio::test]
async fn iq_with_an_unknown_payload_to_a_bare_jid_is_service_unavailable() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    let _alice = server.online("alice", "r").await;
    let mut bob = server.online("bob", "r").await;
    let response = bob
        .iq(
            "get",
            Some("alice@localhost"),
            "<nonsense xmlns='urn:example:unknown'/>",
        )
        .await;
    assert!(
        is_error(&response, "iq", "service-unavailable"),
        "{}",
        xml::show(&response)
    );
}

#[tokio::test]
async fn spoofed_from_ends_the_stream_with_invalid_from() {
    let server = TestServer::start().await;
    for user in ["alice", "bob", "carol"] {
        server.add_user(user).await;
    }
    let mut carol = server.online("carol", "r").await;
    let mut bob = server.online("bob", "r").await;
    bob.send("<message from='alice@localhost/r' to='carol@localhost' type='chat'><body>spoofed</body></message>").await;
    bob.expect_stream_error("invalid-from").await;
    carol
        .assert_none("the spoofed message", |e| xml::has_body(e, "spoofed"))
        .await;
}

#[tokio::test]
async fn stanza_to_a_remote_domain_is_remote_server_not_found() {
    let server = TestServer::start().await;
    server.add_user("bob").await;
    let mut bob = server.online("bob", "r").await;
    bob.send("<message to='someone@remote.example' type='chat' id='far'><body>hi</body></message>")
        .await;
    let error = bob
        .expect("error reply", |e| e.attr("id") == Some("far"))
        .await;
    assert!(
        is_error(&error, "message", "remote-server-not-found"),
        "{}",
        xml::show(&error)
    );
    let response = bob
        .iq(
            "get",
            Some("remote.example"),
            "<ping xmlns='urn:xmpp:ping'/>",
        )
        .await;
    assert!(
        is_error(&response, "iq", "remote-server-not-found"),
        "{}",
        xml::show(&response)
    );
}

#[tokio::test]
async fn chat_between_two_users_both_ways() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    let mut alice = server.online("alice", "r").await;
    let mut bob = server.online("bob", "r").await;
    alice.chat("bob@localhost", "hello bob").await;
    bob.expect("alice's message", |e| {
        xml::is_message(e, "alice@localhost/r", "hello bob")
    })
    .await;
    bob.chat("alice@localhost/r", "hello alice").await;
    alice
        .expect("bob's message", |e| {
            xml::is_message(e, "bob@localhost/r", "hello alice")
        })
        .await;
}

#[tokio::test]
async fn iq_to_a_full_jid_reaches_that_resource_and_the_answer_comes_back() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    let mut alice = server.online("alice", "r").await;
    let mut bob = server.online("bob", "r").await;
    bob.send(
        "<iq type='get' id='v1' to='alice@localhost/r'><query xmlns='jabber:iq:version'/></iq>",
    )
    .await;
    let request = alice
        .expect("the request", |e| {
            e.is("iq", ns::CLIENT) && e.attr("id") == Some("v1")
        })
        .await;
    assert_eq!(request.attr("from"), Some("bob@localhost/r"));
    assert_eq!(request.attr("type"), Some("get"));
    alice
        .send("<iq type='result' id='v1' to='bob@localhost/r'><query xmlns='jabber:iq:version'><name>Alice's client</name></query></iq>")
        .await;
    let answer = bob
        .expect("the answer", |e| {
            e.is("iq", ns::CLIENT) && e.attr("id") == Some("v1")
        })
        .await;
    assert_eq!(answer.attr("from"), Some("alice@localhost/r"));
    assert_eq!(answer.attr("type"), Some("result"));
}

#[tokio::test]
async fn malformed_address_is_jid_malformed() {
    let server = TestServer::start().await;
    server.add_user("bob").await;
    let mut bob = server.online("bob", "r").await;
    bob.send("<message to='@localhost' type='chat' id='j1'><body>to whom?</body></message>")
        .await;
    let error = bob
        .expect("error reply", |e| e.attr("id") == Some("j1"))
        .await;
    assert!(
        is_error(&error, "message", "jid-malformed"),
        "{}",
        xml::show(&error)
    );
    // Only a stanza error: the stream goes on.
    bob.barrier().await;
}

#[tokio::test]
async fn iq_without_an_id_is_a_bad_request() {
    let server = TestServer::start().await;
    server.add_user("bob").await;
    let mut bob = server.online("bob", "r").await;
    bob.send("<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let error = bob
        .expect("an IQ error", |e| {
            e.is("iq", ns::CLIENT) && e.attr("type") == Some("error")
        })
        .await;
    assert_eq!(xml::error_condition(&error).as_deref(), Some("bad-request"));
    bob.barrier().await;
}
