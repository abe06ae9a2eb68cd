//! Rosters and subscriptions over real sockets (RFC 6121 sections 2 and 3): get, set, versioning, removal,
//! roster pushes to interested resources, the subscription handshake, pre-approval and cancellation.
//!
//! "Settled" below means: the sender's barrier returned (its stanza was fully routed), then the receiver's
//! barrier collected everything that had been queued for it.
#![allow(clippy::unwrap_used)]

use herald::xmpp::ns;
use herald_tests::xml::{self, any, find, is_error, is_presence, is_roster_push, pushed_item};
use herald_tests::{Element, TestServer};

const ROSTER_SET_BOB: &str = "<query xmlns='jabber:iq:roster'><item jid='bob@localhost' name='Bob'><group>Friends</group></item></query>";

fn is_result(id: &str) -> impl Fn(&Element) -> bool + '_ {
    move |e: &Element| {
        e.is("iq", ns::CLIENT) && e.attr("id") == Some(id) && e.attr("type") == Some("result")
    }
}

#[tokio::test]
async fn roster_get_set_versioning_and_remove() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    let mut r1 = server.login("alice", "r1").await;
    let empty = r1.roster_get().await;
    assert!(xml::roster_items(&empty).is_empty());
    let first_ver = xml::roster_ver(&empty).expect("RFC 6121 2.6: the result carries ver");
    let mut r2 = server.login("alice", "r2").await;
    r2.roster_get().await;
    // r3 never requests the roster, so it is not an interested resource (2.1.6).
    let mut r3 = server.login("alice", "r3").await;

    r1.send(&format!("<iq type='set' id='set1'>{ROSTER_SET_BOB}</iq>"))
        .await;
    let at_r1 = r1.barrier().await;
    find(&at_r1, "result of the set", is_result("set1"));
    let push = find(&at_r1, "push to the sender", |e| {
        is_roster_push(e, "bob@localhost")
    });
    let item = pushed_item(push);
    assert_eq!(item.name.as_deref(), Some("Bob"));
    assert_eq!(item.subscription, "none");
    let new_ver = xml::roster_ver(push).expect("pushes carry ver");
    assert_ne!(new_ver, first_ver);
    let at_r2 = r2.barrier().await;
    let push = find(&at_r2, "push to the other interested resource", |e| {
        is_roster_push(e, "bob@localhost")
    });
    assert_eq!(xml::roster_ver(push).as_deref(), Some(new_ver.as_str()));
    r3.assert_none("roster push", |e| is_roster_push(e, "bob@localhost"))
        .await;

    // 2.6.3: the client is current, so an empty result; an old version gets the whole roster.
    let current = r2
        .iq_result(
            "get",
            None,
            &format!("<query xmlns='jabber:iq:roster' ver='{new_ver}'/>"),
        )
        .await;
    assert!(
        current.get_child("query", ns::ROSTER).is_none(),
        "{}",
        xml::show(&current)
    );
    let stale = r2
        .iq_result(
            "get",
            None,
            &format!("<query xmlns='jabber:iq:roster' ver='{first_ver}'/>"),
        )
        .await;
    let items = xml::roster_items(&stale);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].jid, "bob@localhost");

    // 2.5: removal is pushed with subscription='remove'.
    r1.send("<iq type='set' id='rm1'><query xmlns='jabber:iq:roster'><item jid='bob@localhost' subscription='remove'/></query></iq>").await;
    let at_r1 = r1.barrier().await;
    find(&at_r1, "result of the removal", is_result("rm1"));
    for got in [at_r1, r2.barrier().await] {
        let push = find(&got, "removal push", |e| is_roster_push(e, "bob@localhost"));
        assert_eq!(pushed_item(push).subscription, "remove");
    }
    assert!(xml::roster_items(&r1.roster_get().await).is_empty());
}

fn item_state(got: &[Element], jid: &str) -> (String, Option<String>, bool) {
    let item = pushed_item(find(got, &format!("roster push for {jid}"), |e| {
        is_roster_push(e, jid)
    }));
    (item.subscription, item.ask, item.approved)
}

#[tokio::test]
async fn full_subscription_handshake_ends_in_both() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    let mut alice = server.online("alice", "r").await;
    let mut bob = server.online("bob", "r").await;
    let none = |s: &str| (s.to_string(), None::<String>, false);

    // 3.1.2: alice asks; her roster shows ask='subscribe'; bob gets the request from her bare JID.
    alice
        .send("<presence to='bob@localhost' type='subscribe'/>")
        .await;
    let at_alice = alice.barrier().await;
    assert_eq!(
        item_state(&at_alice, "bob@localhost"),
        ("none".into(), Some("subscribe".into()), false)
    );
    let at_bob = bob.barrier().await;
    find(&at_bob, "subscribe request", |e| {
        is_presence(e, "alice@localhost", Some("subscribe"))
    });

    // 3.1.5: bob approves: bob has 'from', alice has 'to', and alice gets bob's presence.
    bob.send("<presence to='alice@localhost' type='subscribed'/>")
        .await;
    let at_bob = bob.barrier().await;
    assert_eq!(item_state(&at_bob, "alice@localhost"), none("from"));
    let at_alice = alice.barrier().await;
    assert_eq!(item_state(&at_alice, "bob@localhost"), none("to"));
    find(&at_alice, "subscribed", |e| {
        is_presence(e, "bob@localhost", Some("subscribed"))
    });
    find(&at_alice, "bob's presence", |e| {
        is_presence(e, "bob@localhost/r", None)
    });

    // The other way round.
    bob.send("<presence to='alice@localhost' type='subscribe'/>")
        .await;
    let at_bob = bob.barrier().await;
    assert_eq!(
        item_state(&at_bob, "alice@localhost"),
        ("from".into(), Some("subscribe".into()), false)
    );
    let at_alice = alice.barrier().await;
    find(&at_alice, "subscribe request", |e| {
        is_presence(e, "bob@localhost", Some("subscribe"))
    });
    alice
        .send("<presence to='bob@localhost' type='subscribed'/>")
        .await;
    let at_alice = alice.barrier().await;
    assert_eq!(item_state(&at_alice, "bob@localhost"), none("both"));
    let at_bob = bob.barrier().await;
    assert_eq!(item_state(&at_bob, "alice@localhost"), none("both"));
    find(&at_bob, "subscribed", |e| {
        is_presence(e, "alice@localhost", Some("subscribed"))
    });
    find(&at_bob, "alice's presence", |e| {
        is_presence(e, "alice@localhost/r", None)
    });

    for (client, contact) in [(&mut alice, "bob@localhost"), (&mut bob, "alice@localhost")] {
        let items = xml::roster_items(&client.roster_get().await);
        assert_eq!(items.len(), 1);
        assert_eq!(
            (items[0].jid.as_str(), items[0].subscription.as_str()),
            (contact, "both")
        );
        assert_eq!(items[0].ask, None);
    }
}

#[tokio::test]
async fn pre_approved_request_is_approved_by_the_server() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    let mut alice = server.online("alice", "r").await;
    let mut bob = server.online("bob", "r").await;

    // RFC 6121 3.4: 'subscribed' without a pending request is a pre-approval, not routed.
    alice
        .send("<presence to='bob@localhost' type='subscribed'/>")
        .await;
    let at_alice = alice.barrier().await;
    assert_eq!(
        item_state(&at_alice, "bob@localhost"),
        ("none".into(), None, true)
    );
    bob.assert_none("pre-approval", |e| {
        e.is("presence", ns::CLIENT) && e.attr("type") == Some("subscribed")
    })
    .await;

    bob.send("<presence to='alice@localhost' type='subscribe'/>")
        .await;
    let at_bob = bob.barrier().await;
    find(&at_bob, "automatic subscribed", |e| {
        is_presence(e, "alice@localhost", Some("subscribed"))
    });
    find(&at_bob, "alice's presence", |e| {
        is_presence(e, "alice@localhost/r", None)
    });
    let bob_roster = xml::roster_items(&bob.roster_get().await);
    assert_eq!(bob_roster[0].subscription, "to");
    let at_alice = alice.barrier().await;
    assert!(
        !any(&at_alice, |e| is_presence(
            e,
            "bob@localhost",
            Some("subscribe")
        )),
        "no request is shown to alice"
    );
    assert_eq!(
        item_state(&at_alice, "bob@localhost"),
        ("from".into(), None, false)
    );
}

#[tokio::test]
async fn unsubscribe_and_unsubscribed_cancel_both_directions() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    server.befriend("alice", "bob").await;
    let mut alice = server.online("alice", "r").await;
    let mut bob = server.online("bob", "r").await;
    alice.barrier().await;

    // 3.3: alice stops following bob: she has 'from' left, he 'to', and she sees him go offline.
    alice
        .send("<presence to='bob@localhost' type='unsubscribe'/>")
        .await;
    let at_alice = alice.barrier().await;
    assert_eq!(item_state(&at_alice, "bob@localhost").0, "from");
    find(&at_alice, "bob's unavailable", |e| {
        is_presence(e, "bob@localhost/r", Some("unavailable"))
    });
    let at_bob = bob.barrier().await;
    assert_eq!(item_state(&at_bob, "alice@localhost").0, "to");
    find(&at_bob, "the unsubscribe", |e| {
        is_presence(e, "alice@localhost", Some("unsubscribe"))
    });

    // 3.2: alice cancels bob's subscription to her: 'none' on both sides, bob sees her go offline.
    alice
        .send("<presence to='bob@localhost' type='unsubscribed'/>")
        .await;
    let at_alice = alice.barrier().await;
    assert_eq!(item_state(&at_alice, "bob@localhost").0, "none");
    let at_bob = bob.barrier().await;
    assert_eq!(item_state(&at_bob, "alice@localhost").0, "none");
    find(&at_bob, "the unsubscribed", |e| {
        is_presence(e, "alice@localhost", Some("unsubscribed"))
    });
    find(&at_bob, "alice's unavailable", |e| {
        is_presence(e, "alice@localhost/r", Some("unavailable"))
    });

    // Nothing is shared any more: a presence update reaches neither side's contact.
    alice.send("<presence><show>away</show></presence>").await;
    alice.barrier().await;
    bob.assert_none("presence without a subscription", |e| {
        is_presence(e, "alice@localhost/r", None)
    })
    .await;
}

#[tokio::test]
async fn removing_a_subscribed_contact_cancels_both_subscriptions() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    server.befriend("alice", "bob").await;
    let mut alice = server.online("alice", "r").await;
    let mut bob = server.online("bob", "r").await;
    alice.barrier().await;
    alice.iq_result("set", None, "<query xmlns='jabber:iq:roster'><item jid='bob@localhost' subscription='remove'/></query>").await;
    alice.barrier().await;
    // RFC 6121 2.5.2: the contact's server processes an unsubscribe and an unsubscribed.
    let at_bob = bob.barrier().await;
    find(&at_bob, "unsubscribe", |e| {
        is_presence(e, "alice@localhost", Some("unsubscribe"))
    });
    find(&at_bob, "unsubscribed", |e| {
        is_presence(e, "alice@localhost", Some("unsubscribed"))
    });
    find(&at_bob, "alice's unavailable", |e| {
        is_presence(e, "alice@localhost/r", Some("unavailable"))
    });
    let items = xml::roster_items(&bob.roster_get().await);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].subscription, "none");
    assert!(xml::roster_items(&alice.roster_get().await).is_empty());
}

#[tokio::test]
async fn roster_set_ignores_subscription_and_checks_groups() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    let mut alice = server.login("alice", "r").await;
    alice.roster_get().await;
    // 2.1.2.5 / 2.3.2: a client cannot set a subscription state.
    alice
        .iq_result("set", None, "<query xmlns='jabber:iq:roster'><item jid='bob@localhost' subscription='both'/></query>")
        .await;
    let items = xml::roster_items(&alice.roster_get().await);
    assert_eq!(items[0].subscription, "none");
    // 2.3.3: an empty group name is not-acceptable, a duplicate group is a bad request.
    let empty = alice
        .iq("set", None, "<query xmlns='jabber:iq:roster'><item jid='carol@localhost'><group></group></item></query>")
        .await;
    assert!(
        is_error(&empty, "iq", "not-acceptable"),
        "{}",
        xml::show(&empty)
    );
    let twice = alice
        .iq("set", None, "<query xmlns='jabber:iq:roster'><item jid='carol@localhost'><group>A</group><group>A</group></item></query>")
        .await;
    assert!(
        is_error(&twice, "iq", "bad-request"),
        "{}",
        xml::show(&twice)
    );
    let two_items = alice
        .iq("set", None, "<query xmlns='jabber:iq:roster'><item jid='carol@localhost'/><item jid='dave@localhost'/></query>")
        .await;
    assert!(
        is_error(&two_items, "iq", "bad-request"),
        "{}",
        xml::show(&two_items)
    );
    assert_eq!(xml::roster_items(&alice.roster_get().await).len(), 1);
}

#[tokio::test]
async fn a_subscribe_for_a_contact_already_subscribed_pushes_no_unchanged_roster_item() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    server.befriend("alice", "bob").await;
    let mut alice = server.online("alice", "r").await;
    let mut bob = server.online("bob", "r").await;
    alice.barrier().await;

    // RFC 6121 section 3.1.2 and 3.1.3: alice already has 'both'; the request is routed and bob's server
    // answers for him ('subscribed', not delivered to alice as she is subscribed already, then bob's
    // presence), but neither roster changed, so neither side gets a roster push.
    alice
        .send("<presence to='bob@localhost' type='subscribe'/>")
        .await;
    let at_alice = alice.barrier().await;
    assert!(
        !any(&at_alice, |e| is_roster_push(e, "bob@localhost")),
        "alice got a roster push with nothing changed: {at_alice:#?}"
    );
    find(&at_alice, "bob's presence, sent by his server", |e| {
        is_presence(e, "bob@localhost/r", None)
    });
    bob.assert_none("a roster push", |e| is_roster_push(e, "alice@localhost"))
        .await;
}

/// Two users approving each other's requests at the same moment both end subscribed both ways: each
/// approval changes an item of each user (RFC 6121 section 3.1.5), one in the approver's session and
/// one where the other's approval arrives, and neither change may overwrite the other. Ten pairs at
/// once, so the two changes of a pair overlap in some of them.
#[tokio::test]
async fn simultaneous_mutual_approvals_end_in_both() {
    use herald_storage::Subscription;
    let server = TestServer::start().await;
    server.add_user("alice").await;
    let mut alice = server.online("alice", "r").await;
    let mut contacts = Vec::new();
    for i in 0..10 {
        let name = format!("c{i}");
        server.add_user(&name).await;
        let client = server.online(&name, "r").await;
        contacts.push((name, client));
    }
    for (name, client) in &mut contacts {
        alice
            .send(&format!(
                "<presence to='{name}@localhost' type='subscribe'/>"
            ))
            .await;
        client
            .send("<presence to='alice@localhost' type='subscribe'/>")
            .await;
    }
    alice.barrier().await;
    for (_, client) in &mut contacts {
        client.barrier().await;
    }
    for (name, client) in &mut contacts {
        client
            .send("<presence to='alice@localhost' type='subscribed'/>")
            .await;
        alice
            .send(&format!(
                "<presence to='{name}@localhost' type='subscribed'/>"
            ))
            .await;
    }
    alice.barrier().await;
    for (_, client) in &mut contacts {
        client.barrier().await;
    }
    for (name, _) in &contacts {
        let contact = format!("{name}@localhost");
        for (owner, of) in [
            ("alice@localhost", contact.as_str()),
            (&contact, "alice@localhost"),
        ] {
            let item = server.storage.rosters.item(owner, of).await.unwrap();
            let item = item.unwrap_or_else(|| panic!("{owner} has {of}"));
            assert_eq!(
                item.subscription,
                Subscription::Both,
                "{owner}'s {of}: {item:?}"
            );
            assert!(
                !item.pending_out && !item.pending_in,
                "{owner}'s {of}: {item:?}"
            );
        }
    }
}
