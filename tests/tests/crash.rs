//! A server killed with SIGKILL loses nothing it acknowledged to a hibernated user (XEP-0198 section
//! 5 with XEP-0357): a message for a phone whose session hibernates is stored before the sender's
//! stanza counts as handled, so after the kill and a restart the user still gets it, once, and is
//! woken for it. Run against the `herald` binary as a process of its own, since an in-process server
//! cannot be killed without running its shutdown.
#![allow(clippy::unwrap_used)]

use herald::xmpp::ns;
use herald_storage::testing::ScratchDatabase;
use herald_tests::app_server::{enable, register, relay_toml};
use herald_tests::fcm::StandInFcm;
use herald_tests::herald_process::HeraldCommand;
use herald_tests::{Backend, on_every_backend, xml};

async fn an_acknowledged_message_survives_sigkill(backend: Backend) {
    let mut fcm = StandInFcm::start().await;
    let dir = tempfile::tempdir().unwrap();
    let scratch = match &backend {
        Backend::Sqlite => None,
        Backend::Postgres { admin_url } => Some(
            ScratchDatabase::create(admin_url, "herald_crash")
                .await
                .unwrap(),
        ),
    };
    std::fs::write(
        dir.path().join("service-account.json"),
        fcm.service_account(),
    )
    .unwrap();
    let herald = HeraldCommand::new(dir.path(), scratch.as_ref().map(|s| s.url.as_str()))
        .toml(&relay_toml(&fcm));
    herald.add_user("alice").await;
    herald.add_user("bob").await;
    let mut server = herald.start().await;

    // alice's phone: available, push through the relay's app server, resumable; then its connection
    // drops without a closing stream and the session hibernates.
    let mut alice = server.login("alice", "phone").await;
    alice.available(None).await;
    let (node, secret) = register(&mut alice, "fcm-token-phone", "phone-1").await;
    enable(&mut alice, &node, &secret).await;
    alice.enable_resumption().await;
    drop(alice);
    server
        .log_line(&["session hibernated", "alice@localhost/phone"])
        .await;

    // bob's message is acknowledged (XEP-0198 section 4: h counts it as handled)...
    let mut bob = server.login("bob", "pc").await;
    bob.send("<enable xmlns='urn:xmpp:sm:3'/>").await;
    bob.expect("<enabled/>", |e| e.is("enabled", ns::SM)).await;
    bob.chat("alice@localhost", "meet at noon").await;
    bob.send("<r xmlns='urn:xmpp:sm:3'/>").await;
    let ack = bob.expect("<a/>", |e| e.is("a", ns::SM)).await;
    assert_eq!(ack.attr("h"), Some("1"), "{}", xml::show(&ack));
    // ...and the server dies at once: no shutdown code runs.
    server.kill().await;
    drop(bob);
    // Wakes the old process sent before it died do not count.
    while fcm.sends.try_recv().is_ok() {}

    let server = herald.start().await;
    // The restarted server wakes alice's phone for the message waiting (content-free)...
    let wake = fcm.next_send().await;
    assert!(wake.contains("fcm-token-phone"), "to the phone: {wake}");
    assert!(!wake.contains("meet at noon"), "content-free: {wake}");
    // ...and she gets it once when she comes back.
    let mut alice = server.login("alice", "phone").await;
    alice.available(None).await;
    alice.expect_body_once("meet at noon").await;
    drop(server);
    if let Some(scratch) = scratch {
        scratch.drop_database().await.unwrap();
    }
}

on_every_backend!(an_acknowledged_message_survives_sigkill);
