//! A database that fails for a moment must be answered as a temporary failure (an error of type `wait`,
//! RFC 6120 section 8.3.3.6 `<internal-server-error/>`), never as a permanent answer such as "no such
//! account" (`service-unavailable`), "empty roster" or "not subscribed". The server's storage is wrapped
//! so that every call about one chosen account fails ([`Faults`]); the other accounts keep working.
#![allow(clippy::unwrap_used)]

use herald::xmpp::ns;
use herald_tests::faulty_storage::Faults;
use herald_tests::xml::{self, any, is_presence};
use herald_tests::{Element, TestServer};

const BOB: &str = "bob@localhost";

async fn server_with(faults: &Faults) -> TestServer {
    let faults = faults.clone();
    TestServer::builder()
        .wrap_storage(move |storage| faults.wrap(storage))
        .start()
        .await
}

/// Whether `element` is a `name` error from `from` with `<internal-server-error/>` of type `wait`.
fn is_wait_internal_error(element: &Element, name: &str, from: &str) -> bool {
    element.is(name, ns::CLIENT)
        && element.attr("from") == Some(from)
        && xml::error_condition(element).as_deref() == Some("internal-server-error")
        && element
            .get_child("error", ns::CLIENT)
            .and_then(|e| e.attr("type"))
            == Some("wait")
}

#[tokio::test]
async fn a_message_to_an_account_that_cannot_be_read_gets_wait_not_service_unavailable() {
    let faults = Faults::default();
    let server = server_with(&faults).await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    let mut alice = server.online("alice", "phone").await;

    faults.fail(BOB);
    alice.chat(BOB, "are you there?").await;
    let answer = alice
        .expect("an error from bob", |e| {
            e.is("message", ns::CLIENT) && e.attr("type") == Some("error")
        })
        .await;
    assert!(
        is_wait_internal_error(&answer, "message", BOB),
        "a database failure is temporary, not 'no such account': {}",
        xml::show(&answer)
    );

    // Once the database answers again, the same message is kept for bob.
    faults.heal(BOB);
    alice.chat(BOB, "are you there now?").await;
    let early = alice.barrier().await;
    assert!(
        !any(&early, |e| e.attr("type") == Some("error")),
        "{early:?}"
    );
    assert_eq!(server.storage.offline.count(BOB).await.unwrap(), 1);
}

#[tokio::test]
async fn a_roster_read_failure_at_initial_presence_is_an_error_and_the_retry_is_still_initial() {
    let faults = Faults::default();
    let server = server_with(&faults).await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    server.befriend("alice", "bob").await;
    let mut alice = server.online("alice", "phone").await;
    let mut bob = server.login("bob", "laptop").await;
    bob.roster_get().await;

    faults.fail(BOB);
    bob.send("<presence/>").await;
    let at_bob = bob.barrier().await;
    assert!(
        any(&at_bob, |e| e.is("presence", ns::CLIENT)
            && xml::error_condition(e).as_deref()
                == Some("internal-server-error")),
        "bob is told his presence was not broadcast, not silently given an empty roster: {at_bob:#?}"
    );

    // The retry is initial presence: alice sees bob and bob's probe brings alice's presence.
    faults.heal(BOB);
    bob.available(None).await;
    alice
        .expect("bob's presence", |e| {
            is_presence(e, "bob@localhost/laptop", None)
        })
        .await;
    bob.expect("alice's presence, answering bob's probe", |e| {
        is_presence(e, "alice@localhost/phone", None)
    })
    .await;
}

#[tokio::test]
async fn a_probe_the_contact_cannot_answer_for_now_is_an_error_not_silence() {
    let faults = Faults::default();
    let server = server_with(&faults).await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    server.befriend("alice", "bob").await;
    let mut bob = server.online("bob", "laptop").await;

    faults.fail(BOB);
    let mut alice = server.online("alice", "phone").await;
    let answer = alice
        .expect("an answer to alice's probe of bob", |e| {
            e.is("presence", ns::CLIENT)
                && e.attr("from")
                    .is_some_and(|from| from.starts_with("bob@localhost"))
        })
        .await;
    assert!(
        is_wait_internal_error(&answer, "presence", BOB),
        "silence would read as 'bob is offline': {}",
        xml::show(&answer)
    );
    bob.barrier().await;
}

#[tokio::test]
async fn a_subscription_request_that_cannot_be_stored_is_answered_not_dropped() {
    let faults = Faults::default();
    let server = server_with(&faults).await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    let mut alice = server.online("alice", "phone").await;

    faults.fail(BOB);
    alice
        .send("<presence to='bob@localhost' type='subscribe'/>")
        .await;
    let answer = alice
        .expect("an answer to the request", |e| {
            e.is("presence", ns::CLIENT) && e.attr("type") == Some("error")
        })
        .await;
    assert!(
        is_wait_internal_error(&answer, "presence", BOB),
        "{}",
        xml::show(&answer)
    );
}

#[tokio::test]
async fn offline_messages_that_cannot_be_fetched_are_reported_and_delivered_on_the_next_presence() {
    let faults = Faults::default();
    let server = server_with(&faults).await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    let mut alice = server.online("alice", "phone").await;
    alice.chat(BOB, "while you were out").await;
    alice.barrier().await;
    assert_eq!(server.storage.offline.count(BOB).await.unwrap(), 1);

    faults.fail_offline(BOB);
    let mut bob = server.login("bob", "laptop").await;
    bob.send("<presence/>").await;
    let at_bob = bob.barrier().await;
    assert!(
        any(&at_bob, |e| e.is("presence", ns::CLIENT)
            && xml::error_condition(e).as_deref()
                == Some("internal-server-error")),
        "bob is told his offline messages could not be fetched, not shown none: {at_bob:#?}"
    );

    // The next presence, an update and no longer initial, fetches them.
    faults.heal(BOB);
    bob.send("<presence><show>away</show></presence>").await;
    bob.expect("the offline message", |e| {
        xml::is_message(e, "alice@localhost/phone", "while you were out")
    })
    .await;
}
