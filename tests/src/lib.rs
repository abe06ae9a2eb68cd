//! Black-box test harness: Herald servers started in-process on port 0 ([`TestServer`]) and real XMPP
//! clients over TCP, STARTTLS and direct TLS ([`TestClient`]). The tests themselves live in tests/*.rs.
//!
//! Synchronisation is always by awaiting an event with a timeout ([`TIMEOUT`]), never by sleeping. To
//! assert that something did *not* arrive, a client sends a ping to the server and collects what comes
//! before the answer ([`TestClient::barrier`]): a session's queue is first in, first out, and the server
//! routes each stanza before it reads the next one from the same connection.

// Tests may unwrap (working rules): a failure here is a test failure, reported with the panic message.
#![allow(clippy::unwrap_used)]

pub mod app_server;
pub mod caps;
pub mod client;
pub mod component;
pub mod faulty_storage;
pub mod fcm;
pub mod federation;
pub mod herald_process;
pub mod process;
pub mod scram;
pub mod server;
pub mod xml;

use std::time::Duration;

pub use client::{Incoming, TestClient};
pub use herald::xmpp::Element;
pub use server::{Backend, TestServer, TestServerBuilder};

/// How long any single await in a test may take before the test fails. Generous: the machine is slow
/// and shared, and PBKDF2 in a debug build is not fast.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The domain every test server hosts.
pub const DOMAIN: &str = "localhost";

/// The password [`TestServer::add_user`] gives every account.
pub const PASSWORD: &str = "correct horse battery staple";

/// Waits until `condition` holds, checking every 20 ms for at most [`TIMEOUT`]: for server state that
/// changes after an event the client cannot observe (a session noticed as hibernated, an answer
/// handled), never as a stand-in for awaiting something the client does see.
pub async fn eventually(what: &str, condition: impl AsyncFn() -> bool) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `async fn scenario(backend: Backend)` as two tests, `scenario::sqlite` and `scenario::postgres`;
/// without `HERALD_TEST_POSTGRES_URL` the PostgreSQL one returns early and prints a `SKIPPED (no
/// HERALD_TEST_POSTGRES_URL)` line (see `herald_storage::testing::postgres_url_or_skip`).
#[macro_export]
macro_rules! on_every_backend {
    ($($scenario:ident),+ $(,)?) => {$(
        mod $scenario {
            #[tokio::test]
            async fn sqlite() {
                super::$scenario($crate::Backend::Sqlite).await;
            }

            #[tokio::test]
            async fn postgres() {
                if let Some(backend) = $crate::Backend::postgres_from_env() {
                    super::$scenario(backend).await;
                }
            }
        }
    )+};
}
