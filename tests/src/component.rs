//! A XEP-0114 component connection as a gateway or an app server opens it, for black-box tests: the
//! stream header, the handshake (section 3: lowercase hex SHA-1 of the stream id and the shared
//! secret), and reading what the server sends.

use herald::xmpp::stream::{Frame, StreamHeader, XmlStream};
use herald::xmpp::{Element, Limits, ns};
use sha1::{Digest, Sha1};
use tokio::net::TcpStream;

use crate::{TIMEOUT, TestServer, xml};

/// One component stream to a test server's component listener.
pub struct ComponentClient {
    /// The stream itself, for raw writes a test needs.
    pub stream: XmlStream<TcpStream>,
    stream_id: String,
}

impl ComponentClient {
    /// Connects and exchanges stream headers for `domain`.
    pub async fn open(server: &TestServer, domain: &str) -> ComponentClient {
        let socket = TcpStream::connect(server.component_address())
            .await
            .expect("component listener");
        let mut stream = XmlStream::new(socket, Limits::default());
        stream
            .send_raw(&format!(
                "<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='{domain}'>"
            ))
            .await
            .expect("stream header sent");
        let header: StreamHeader = tokio::time::timeout(TIMEOUT, stream.read_header())
            .await
            .expect("component stream header in time")
            .expect("component stream header");
        assert_eq!(header.default_ns, ns::COMPONENT_ACCEPT);
        ComponentClient {
            stream,
            stream_id: header.id.expect("a stream id"),
        }
    }

    /// Opens a stream for `domain` and completes the handshake with `secret` (the server's empty
    /// `<handshake/>` read).
    pub async fn attach(server: &TestServer, domain: &str, secret: &str) -> ComponentClient {
        let mut component = ComponentClient::open(server, domain).await;
        component.handshake(secret).await;
        let ack = component.expect_element().await;
        assert!(
            ack.is("handshake", ns::COMPONENT_ACCEPT),
            "{}",
            xml::show(&ack)
        );
        component
    }

    /// Sends the handshake for `secret`.
    pub async fn handshake(&mut self, secret: &str) {
        let digest = Sha1::digest(format!("{}{secret}", self.stream_id).as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        self.send(&format!("<handshake>{hex}</handshake>")).await;
    }

    /// Writes `xml` as it is.
    pub async fn send(&mut self, xml: &str) {
        self.stream.send_raw(xml).await.expect("component write");
    }

    /// The next frame from the server, within [`TIMEOUT`].
    pub async fn next(&mut self) -> Frame {
        tokio::time::timeout(TIMEOUT, self.stream.next())
            .await
            .expect("something from the server in time")
            .expect("a well-formed frame")
    }

    /// The next element; panics if the stream ended.
    pub async fn expect_element(&mut self) -> Element {
        match self.next().await {
            Frame::Element(e) => e,
            Frame::End => panic!("component stream ended"),
        }
    }

    /// The stream error `condition`, then the end of the stream.
    pub async fn expect_stream_error(&mut self, condition: &str) {
        let error = self.expect_element().await;
        assert!(error.is("error", ns::STREAMS), "{}", xml::show(&error));
        assert_eq!(
            xml::stream_error_condition(&error).as_deref(),
            Some(condition)
        );
        assert_eq!(self.next().await, Frame::End);
    }
}
