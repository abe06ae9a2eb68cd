//! Push on outcomes (XEP-0357 "Publishing Notifications"): storing a message offline wakes the recipient's devices through
//! the server's `PushWaker`; delivering it to an online session does not. A recorder stands in for the relay.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use herald::features::push::PushWaker;
use herald_tests::TestServer;
use herald_tests::xml;
use tokio::sync::mpsc;

/// Records every wake-up in a channel and reports one device woken.
struct WakeRecorder(mpsc::UnboundedSender<String>);

#[async_trait::async_trait]
impl PushWaker for WakeRecorder {
    async fn wake(&self, account: &str) -> Result<usize, String> {
        self.0
            .send(account.to_string())
            .map_err(|e| e.to_string())?;
        Ok(1)
    }
}

async fn server_with_recorder() -> (TestServer, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let server = TestServer::builder()
        .push(Arc::new(WakeRecorder(tx)))
        .start()
        .await;
    for user in ["alice", "bob"] {
        server.add_user(user).await;
    }
    (server, rx)
}

#[tokio::test]
async fn message_to_an_offline_user_wakes_that_account_once() {
    let (server, mut wakes) = server_with_recorder().await;
    let mut bob = server.online("bob", "r").await;
    bob.chat("alice@localhost", "wake up").await;
    let woken = tokio::time::timeout(herald_tests::TIMEOUT, wakes.recv())
        .await
        .expect("a wake-up in time")
        .unwrap();
    assert_eq!(woken, "alice@localhost");
    // The sender's barrier means the message was fully routed: no second wake is on its way.
    bob.barrier().await;
    assert!(wakes.try_recv().is_err(), "exactly one wake-up");
}

#[tokio::test]
async fn message_to_an_online_user_wakes_nobody() {
    let (server, mut wakes) = server_with_recorder().await;
    let mut alice = server.online("alice", "r").await;
    let mut bob = server.online("bob", "r").await;
    bob.chat("alice@localhost", "you are here").await;
    alice
        .expect("the message", |e| xml::has_body(e, "you are here"))
        .await;
    bob.barrier().await;
    assert!(
        wakes.try_recv().is_err(),
        "no wake-up for a delivered message"
    );
}
