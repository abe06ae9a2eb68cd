//! The client's negotiation against a scripted server over an in-memory pipe: stream open, SASL
//! PLAIN and SCRAM-SHA-1 (RFC 5802), stream restart, bind (RFC 6120 section 7), and that
//! elements arriving during an IQ round trip are kept for later.

#![allow(clippy::unwrap_used)] // test helpers: a failed step should panic with its value

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use herald_load::client::{ClientError, Mechanism, ScramCache, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' id='s1' from='localhost' version='1.0'>";

/// Reads from the client until `needle` has been seen; returns everything read.
async fn expect(server: &mut DuplexStream, seen: &mut String, needle: &str) -> String {
    while !seen.contains(needle) {
        let mut buf = [0u8; 1024];
        let n = server.read(&mut buf).await.unwrap();
        assert!(n > 0, "client closed before sending {needle}; got {seen}");
        seen.push_str(std::str::from_utf8(&buf[..n]).unwrap());
    }
    let at = seen.find(needle).unwrap() + needle.len();
    let consumed = seen[..at].to_owned();
    seen.replace_range(..at, "");
    consumed
}

/// Reads until the element `<name ...>...</name>` is complete and returns just that element.
async fn element(server: &mut DuplexStream, seen: &mut String, name: &str) -> String {
    let consumed = expect(server, seen, &format!("</{name}>")).await;
    let start = consumed.rfind(&format!("<{name} ")).unwrap();
    consumed[start..].to_owned()
}

fn text_of(xml: &str) -> &str {
    let start = xml.find('>').unwrap() + 1;
    let end = xml.rfind("</").unwrap();
    &xml[start..end]
}

async fn bind_and_message(server: &mut DuplexStream, seen: &mut String) {
    expect(server, seen, "<stream:stream").await;
    server
        .write_all(
            format!(
                "{HEADER}<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let iq = element(server, seen, "iq").await;
    let id = iq
        .split("id='")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap()
        .to_owned();
    // A message overtakes the bind result: the client must keep it for a later recv().
    server
        .write_all(
            format!(
                "<message from='b@localhost/x' type='chat'><body>early</body></message>\
                 <iq type='result' id='{id}'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
                 <jid>alice@localhost/phone</jid></bind></iq>"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn plain_login_binds_and_keeps_early_messages() {
    let (client, mut server) = tokio::io::duplex(1 << 16);
    let script = tokio::spawn(async move {
        let mut seen = String::new();
        expect(&mut server, &mut seen, "<stream:stream").await;
        server
            .write_all(
                format!(
                    "{HEADER}<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
                     <mechanism>PLAIN</mechanism></mechanisms></stream:features>"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        let auth = element(&mut server, &mut seen, "auth").await;
        assert!(auth.contains("mechanism='PLAIN'"));
        assert_eq!(B64.decode(text_of(&auth)).unwrap(), b"\0alice\0secret");
        server
            .write_all(b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
            .await
            .unwrap();
        bind_and_message(&mut server, &mut seen).await;
        server
    });
    let mut session = Session::open(client, "localhost", Duration::from_secs(5), 1 << 20)
        .await
        .unwrap();
    session
        .authenticate("alice", "secret", Mechanism::Best, None)
        .await
        .unwrap();
    assert_eq!(
        session.bind("phone").await.unwrap(),
        "alice@localhost/phone"
    );
    let early = session.recv().await.unwrap();
    assert_eq!(early.child_text("body"), Some("early"));
    drop(script.await.unwrap());
}

#[tokio::test]
async fn scram_sha1_proves_and_checks_the_server_signature() {
    // The server side of RFC 5802's example: the client nonce is random here, so the server
    // computes its answer with an independent ScramClient-free implementation of the formulas.
    use hmac::{Hmac, Mac};
    use sha1::{Digest, Sha1};
    fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
        let mut m = Hmac::<Sha1>::new_from_slice(key).unwrap();
        m.update(data);
        m.finalize().into_bytes().to_vec()
    }
    let (client, mut server) = tokio::io::duplex(1 << 16);
    let script = tokio::spawn(async move {
        let mut seen = String::new();
        expect(&mut server, &mut seen, "<stream:stream").await;
        server
            .write_all(
                format!(
                    "{HEADER}<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
                     <mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism></mechanisms></stream:features>"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        let auth = element(&mut server, &mut seen, "auth").await;
        let first = String::from_utf8(B64.decode(text_of(&auth)).unwrap()).unwrap();
        let bare = first.strip_prefix("n,,").unwrap().to_owned();
        let cnonce = bare.split("r=").nth(1).unwrap().to_owned();
        let salt = b"salty-salt";
        let server_first = format!("r={cnonce}srv,s={},i=4096", B64.encode(salt));
        server
            .write_all(
                format!(
                    "<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</challenge>",
                    B64.encode(&server_first)
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        let response = element(&mut server, &mut seen, "response").await;
        let fin = String::from_utf8(B64.decode(text_of(&response)).unwrap()).unwrap();
        let (without_proof, proof) = fin.split_once(",p=").unwrap();
        let mut salted = [0u8; 20];
        pbkdf2::pbkdf2_hmac::<Sha1>(b"secret", salt, 4096, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key = Sha1::digest(&client_key).to_vec();
        let auth_message = format!("{bare},{server_first},{without_proof}");
        let signature = hmac(&stored_key, auth_message.as_bytes());
        let expected: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        assert_eq!(B64.decode(proof).unwrap(), expected, "client proof");
        let server_signature = hmac(&hmac(&salted, b"Server Key"), auth_message.as_bytes());
        server
            .write_all(
                format!(
                    "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</success>",
                    B64.encode(format!("v={}", B64.encode(server_signature)))
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        bind_and_message(&mut server, &mut seen).await;
        server
    });
    let mut session = Session::open(client, "localhost", Duration::from_secs(5), 1 << 20)
        .await
        .unwrap();
    let cache = ScramCache::default();
    session
        .authenticate("alice", "secret", Mechanism::ScramSha1, Some(&cache))
        .await
        .unwrap();
    assert_eq!(cache.len(), 1);
    assert_eq!(
        session.bind("phone").await.unwrap(),
        "alice@localhost/phone"
    );
    drop(script.await.unwrap());
}

#[tokio::test]
async fn sasl_failure_and_missing_mechanism_are_typed_errors() {
    let (client, mut server) = tokio::io::duplex(1 << 16);
    let script = tokio::spawn(async move {
        let mut seen = String::new();
        expect(&mut server, &mut seen, "<stream:stream").await;
        server
            .write_all(
                format!(
                    "{HEADER}<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
                     <mechanism>PLAIN</mechanism></mechanisms></stream:features>"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        element(&mut server, &mut seen, "auth").await;
        server
            .write_all(
                b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>",
            )
            .await
            .unwrap();
        server
    });
    let mut session = Session::open(client, "localhost", Duration::from_secs(5), 1 << 20)
        .await
        .unwrap();
    let only_scram = session
        .authenticate("alice", "bad", Mechanism::ScramSha256, None)
        .await;
    assert!(matches!(only_scram, Err(ClientError::NotOffered(_))));
    let failed = session
        .authenticate("alice", "bad", Mechanism::Plain, None)
        .await;
    assert!(matches!(failed, Err(ClientError::AuthFailed(c)) if c == "not-authorized"));
    drop(script.await.unwrap());
}
