//! Refused logins leave one line each in the log at a level shown by default (`info`, main.rs), with the
//! client address and the account and never the password, so an admin sees guessing and the throttle
//! firing and can feed the log to fail2ban. A binary of its own: it captures the log of its own thread.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use herald_tests::{PASSWORD, TestClient, TestServer};
use serde_json::json;

/// Log output collected in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self, containing: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|l| l.contains(containing))
            .map(str::to_owned)
            .collect()
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// The test runs on one thread (the default current-thread runtime), so the server's tasks log into the
/// subscriber set for this thread.
#[tokio::test]
async fn refused_logins_are_logged_with_address_and_account() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = TestServer::builder()
        .env("HERALD_RELAY__ENABLED", "true")
        .env("HERALD_RELAY__LISTEN", "127.0.0.1:0")
        .file("component.secret", "the component secret")
        .toml(
            "[component]\nlisten = \"127.0.0.1:0\"\n\n[[component.components]]\n\
             domain = \"bot.localhost\"\nsecret_file = \"{dir}/component.secret\"\n",
        )
        .start()
        .await;
    server.add_user("alice").await;
    let mut client = TestClient::connect_starttls(&server).await;
    for _ in 0..5 {
        assert_eq!(
            client.auth_plain("alice", "hunter2-guess").await,
            Err("not-authorized".into())
        );
    }
    let failed = captured.lines("XMPP login failed");
    assert_eq!(failed.len(), 5, "{}", captured.text());
    assert!(failed[0].contains("client=127.0.0.1"), "{}", failed[0]);
    assert!(
        failed[0].contains("account=alice@localhost"),
        "{}",
        failed[0]
    );
    assert!(failed[0].contains("INFO") || failed[0].contains("WARN"));

    assert_eq!(
        client.auth_plain("alice", PASSWORD).await,
        Err("temporary-auth-failure".into())
    );
    let throttled = captured.lines("too many failed logins");
    assert_eq!(throttled.len(), 1, "{}", captured.text());
    assert!(throttled[0].contains("client=127.0.0.1") && throttled[0].contains("alice@localhost"));

    let status = reqwest::Client::new()
        .post(format!(
            "http://{}/api/v1/accounts/",
            server.relay_address()
        ))
        .json(&json!({"username": "bob@localhost", "password": "hunter2-guess"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401);
    let relay = captured.lines("relay login failed");
    assert_eq!(relay.len(), 1, "{}", captured.text());
    assert!(relay[0].contains("client=127.0.0.1") && relay[0].contains("account=bob@localhost"));

    let status = reqwest::Client::new()
        .get(format!(
            "http://{}/api/v1/accounts/",
            server.relay_address()
        ))
        .header("Authorization", "Token 0123456789abcdef")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401);
    let key = captured.lines("relay API key refused");
    assert_eq!(key.len(), 1, "{}", captured.text());
    assert!(key[0].contains("client=127.0.0.1") && !key[0].contains("0123456789abcdef"));

    wrong_component_handshake(&server).await;
    let component = captured.lines("component handshake failed");
    assert_eq!(component.len(), 1, "{}", captured.text());
    assert!(component[0].contains("client=127.0.0.1") && component[0].contains("bot.localhost"));

    assert!(
        !captured.text().contains("hunter2"),
        "a password reached the log"
    );
}

/// Opens a component stream for bot.localhost and sends a wrong handshake (XEP-0114 section 3).
async fn wrong_component_handshake(server: &TestServer) {
    use herald::xmpp::Limits;
    use herald::xmpp::stream::{Frame, XmlStream};
    let socket = tokio::net::TcpStream::connect(server.component_address())
        .await
        .unwrap();
    let mut stream = XmlStream::new(socket, Limits::default());
    stream
        .send_raw(
            "<stream:stream xmlns='jabber:component:accept' \
             xmlns:stream='http://etherx.jabber.org/streams' to='bot.localhost'>",
        )
        .await
        .unwrap();
    tokio::time::timeout(herald_tests::TIMEOUT, stream.read_header())
        .await
        .unwrap()
        .unwrap();
    stream
        .send_raw("<handshake>0000000000000000000000000000000000000000</handshake>")
        .await
        .unwrap();
    // The stream error, then the end of the stream.
    while let Ok(Ok(Frame::Element(_))) =
        tokio::time::timeout(herald_tests::TIMEOUT, stream.next()).await
    {}
}
