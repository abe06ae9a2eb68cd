//! What must survive a restart on the same data: accounts (and changed passwords), rosters with their
//! subscription states (RFC 6121 section 3), pending subscription requests, offline messages (XEP-0160),
//! vCards (XEP-0054) and block lists (XEP-0191). On SQLite always, on PostgreSQL when
//! `HERALD_TEST_POSTGRES_URL` is set.
#![allow(clippy::unwrap_used)]

use herald::xmpp::ns;
use herald_tests::xml::{self, any, is_error, is_presence};
use herald_tests::{Backend, DOMAIN, PASSWORD, TestClient, TestServer, on_every_backend};

on_every_backend!(
    accounts_rosters_and_pending_subscriptions_survive_a_restart,
    offline_messages_vcards_and_block_lists_survive_a_restart,
);

async fn accounts_rosters_and_pending_subscriptions_survive_a_restart(backend: Backend) {
    let mut server = TestServer::builder().backend(backend).start().await;
    for user in ["alice", "bob", "carol", "dave"] {
        server.add_user(user).await;
    }
    {
        let mut alice = server.online("alice", "r").await;
        let mut bob = server.online("bob", "r").await;
        let mut carol = server.online("carol", "r").await;
        // alice and bob: the full handshake both ways ('both'); each step settled before the next.
        alice
            .send("<presence to='bob@localhost' type='subscribe'/>")
            .await;
        alice.barrier().await;
        bob.send("<presence to='alice@localhost' type='subscribed'/>")
            .await;
        bob.send("<presence to='alice@localhost' type='subscribe'/>")
            .await;
        bob.barrier().await;
        alice
            .send("<presence to='bob@localhost' type='subscribed'/>")
            .await;
        alice.barrier().await;
        // carol asks dave, who is offline: pending on both sides.
        carol
            .send("<presence to='dave@localhost' type='subscribe'/>")
            .await;
        carol.barrier().await;
        // A changed password must be the one that counts after the restart.
        carol
            .iq_result(
                "set",
                Some(DOMAIN),
                "<query xmlns='jabber:iq:register'><username>carol</username><password>carol's new</password></query>",
            )
            .await;
        carol.barrier().await;
    }

    server.restart().await;

    let mut alice = server.login("alice", "r").await;
    let mut bob = server.login("bob", "r").await;
    for (client, contact) in [(&mut alice, "bob@localhost"), (&mut bob, "alice@localhost")] {
        let items = xml::roster_items(&client.roster_get().await);
        assert_eq!(items.len(), 1, "{items:?}");
        assert_eq!(items[0].jid, contact);
        assert_eq!(items[0].subscription, "both");
        assert_eq!(items[0].ask, None);
    }
    let mut old = TestClient::connect_starttls(&server).await;
    assert_eq!(
        old.auth_plain("carol", PASSWORD).await,
        Err("not-authorized".into())
    );
    let mut carol = TestClient::connect_starttls(&server).await;
    carol.auth_plain("carol", "carol's new").await.unwrap();
    carol.bind(Some("r")).await;
    let items = xml::roster_items(&carol.roster_get().await);
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0].jid, "dave@localhost");
    assert_eq!(
        (items[0].subscription.as_str(), items[0].ask.as_deref()),
        ("none", Some("subscribe"))
    );
    let mut dave = server.login("dave", "r").await;
    dave.available(None).await;
    let got = dave.barrier().await;
    assert!(
        any(&got, |e| is_presence(
            e,
            "carol@localhost",
            Some("subscribe")
        )),
        "the pending request is delivered after the restart"
    );
}

async fn offline_messages_vcards_and_block_lists_survive_a_restart(backend: Backend) {
    let mut server = TestServer::builder().backend(backend).start().await;
    for user in ["alice", "bob", "mallory"] {
        server.add_user(user).await;
    }
    {
        let mut bob = server.online("bob", "r").await;
        bob.chat("alice@localhost", "before the restart 1").await;
        bob.chat("alice@localhost", "before the restart 2").await;
        bob.iq_result(
            "set",
            None,
            "<vCard xmlns='vcard-temp'><FN>Bob Builder</FN></vCard>",
        )
        .await;
        bob.iq_result(
            "set",
            None,
            "<block xmlns='urn:xmpp:blocking'><item jid='mallory@localhost'/></block>",
        )
        .await;
        bob.barrier().await;
    }

    server.restart().await;

    let mut alice = server.login("alice", "r").await;
    alice.available(None).await;
    let got = alice.barrier().await;
    let bodies: Vec<String> = got
        .iter()
        .filter(|e| e.is("message", ns::CLIENT))
        .filter_map(xml::body)
        .collect();
    assert_eq!(bodies, ["before the restart 1", "before the restart 2"]);
    assert!(
        got.iter()
            .filter(|e| e.is("message", ns::CLIENT))
            .all(|m| m.has_child("delay", ns::DELAY))
    );

    let vcard = alice
        .iq_result("get", Some("bob@localhost"), "<vCard xmlns='vcard-temp'/>")
        .await;
    let name = vcard
        .get_child("vCard", ns::VCARD)
        .and_then(|v| v.get_child("FN", ns::VCARD))
        .map(|f| f.text());
    assert_eq!(name.as_deref(), Some("Bob Builder"));

    let mut bob = server.online("bob", "r").await;
    let list = bob
        .iq_result("get", None, "<blocklist xmlns='urn:xmpp:blocking'/>")
        .await;
    let blocked: Vec<&str> = list
        .get_child("blocklist", ns::BLOCKING)
        .map(|b| b.children().filter_map(|i| i.attr("jid")).collect())
        .unwrap_or_default();
    assert_eq!(blocked, ["mallory@localhost"]);
    let mut mallory = server.online("mallory", "r").await;
    mallory
        .send(
            "<message to='bob@localhost' type='chat' id='m1'><body>blocked still</body></message>",
        )
        .await;
    let error = mallory
        .expect("bounce", |e| e.attr("id") == Some("m1"))
        .await;
    assert!(
        is_error(&error, "message", "service-unavailable"),
        "{}",
        xml::show(&error)
    );
    bob.assert_none("message from a blocked JID", |e| {
        xml::has_body(e, "blocked still")
    })
    .await;
}
