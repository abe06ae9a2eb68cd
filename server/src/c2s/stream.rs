//! What a bound session needs from its client's connection (RFC 6120 section 4): the next first-level
//! element, told apart as a stanza (section 8) or a nonza; writing what was queued for the client; a
//! stream error (section 4.9); closing (section 4.4).
//!
//! The TCP/TLS stream ([`XmlStream`], over `net::transport::Transport`) implements it; a WebSocket
//! connection (RFC 7395) will be a second implementation. A session holds its stream as a
//! `Box<dyn ClientStream>`, so its state does not depend on the kind of connection, and a stream can be
//! detached from a session and another attached (XEP-0198 section 5, resumption).

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite};

use crate::xmpp::error::{StreamError, StreamErrorCondition};
use crate::xmpp::stream::{Frame, XmlStream};
use crate::xmpp::{Element, WireStanza, is_stanza};

/// One unit read from a client after negotiation.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// `<message/>`, `<presence/>` or `<iq/>` in a stanza namespace (RFC 6120 section 8).
    Stanza(Element),
    /// Any other first-level element, such as XEP-0198's `<r/>`, `<a/>` and `<enable/>`.
    Nonza(Element),
    /// The client closed its stream (RFC 6120 section 4.4).
    Closed,
}

/// A write in progress. Boxed so that the trait can be used as `dyn`; writes are made per batch, not
/// per idle session, so the allocation is paid only when there is something to write.
pub type Writing<'a> = Pin<Box<dyn Future<Output = io::Result<()>> + Send + 'a>>;

/// A client's connection as a bound session uses it.
pub trait ClientStream: Send {
    /// The next unit from the client. `Err` is the stream error to answer with (or `Closed`/`Io` when the
    /// connection failed, with nothing to answer). Must be cancel-safe: a session polls it only while it
    /// waits, and dropping a pending poll must lose nothing.
    fn poll_inbound(&mut self, cx: &mut Context<'_>) -> Poll<Result<Inbound, StreamError>>;

    /// Writes serialised stanzas in order, as one write where the connection allows it.
    fn write_stanzas<'a>(&'a mut self, stanzas: &'a [WireStanza]) -> Writing<'a>;

    /// Writes one element the server itself sends (a ping, an answer to a nonza).
    fn write_element<'a>(&'a mut self, element: &'a Element) -> Writing<'a>;

    /// Sends the stream error `condition` and closes the stream (RFC 6120 section 4.9.1.1).
    fn end_with_error(&mut self, condition: StreamErrorCondition) -> Writing<'_>;

    /// Closes the stream (RFC 6120 section 4.4).
    fn close(&mut self) -> Writing<'_>;
}

impl<S> ClientStream for XmlStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    fn poll_inbound(&mut self, cx: &mut Context<'_>) -> Poll<Result<Inbound, StreamError>> {
        // `XmlStream::next` is cancel-safe and keeps its whole state in the stream, so a future made
        // and dropped per poll loses nothing; and a waiting session then holds no read future at all.
        let next = pin!(self.next());
        next.poll(cx).map(|frame| {
            frame.map(|frame| match frame {
                Frame::Element(element) if is_stanza(&element) => Inbound::Stanza(element),
                Frame::Element(element) => Inbound::Nonza(element),
                Frame::End => Inbound::Closed,
            })
        })
    }

    fn write_stanzas<'a>(&'a mut self, stanzas: &'a [WireStanza]) -> Writing<'a> {
        Box::pin(self.send_wire(stanzas))
    }

    fn write_element<'a>(&'a mut self, element: &'a Element) -> Writing<'a> {
        Box::pin(self.send(element))
    }

    fn end_with_error(&mut self, condition: StreamErrorCondition) -> Writing<'_> {
        Box::pin(async move {
            self.send_error(&StreamError::Condition {
                condition,
                text: None,
            })
            .await
        })
    }

    fn close(&mut self) -> Writing<'_> {
        Box::pin(XmlStream::close(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xmpp::Limits;
    use std::future::poll_fn;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn tells_stanzas_from_nonzas_and_the_end() {
        let (mut client, server) = tokio::io::duplex(4096);
        let mut stream = XmlStream::new(server, Limits::default());
        client
            .write_all(
                b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' \
                  version='1.0'><message/><r xmlns='urn:xmpp:sm:3'/><iq xmlns='jabber:server' \
                  type='get' id='1'/><message xmlns='urn:other'/></stream:stream>",
            )
            .await
            .unwrap();
        stream.read_header().await.unwrap();
        let stream: &mut dyn ClientStream = &mut stream;
        let mut kinds = Vec::new();
        loop {
            match poll_fn(|cx| stream.poll_inbound(cx)).await.unwrap() {
                Inbound::Stanza(element) => kinds.push(format!("stanza {}", element.name())),
                Inbound::Nonza(element) => kinds.push(format!("nonza {}", element.name())),
                Inbound::Closed => break,
            }
        }
        assert_eq!(
            kinds,
            ["stanza message", "nonza r", "stanza iq", "nonza message"]
        );
    }

    #[tokio::test]
    async fn a_pending_poll_dropped_loses_nothing() {
        let (mut client, server) = tokio::io::duplex(4096);
        let mut stream = XmlStream::new(server, Limits::default());
        client
            .write_all(
                b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' \
                  version='1.0'><message id='a'><bo",
            )
            .await
            .unwrap();
        stream.read_header().await.unwrap();
        let waited = tokio::time::timeout(
            std::time::Duration::from_millis(10),
            poll_fn(|cx| stream.poll_inbound(cx)),
        )
        .await;
        assert!(waited.is_err(), "half a stanza is not a unit");
        client.write_all(b"dy>hi</body></message>").await.unwrap();
        let Inbound::Stanza(message) = poll_fn(|cx| stream.poll_inbound(cx)).await.unwrap() else {
            panic!("a stanza");
        };
        assert_eq!(message.attr("id"), Some("a"));
    }
}
