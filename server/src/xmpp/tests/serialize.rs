//! Output: header, elements, stream errors and closing; escaping; namespace handling
//! (RFC 6120 sections 4.7, 4.8.3, 4.9 and 11).

use tokio::io::AsyncReadExt;
use xmpp_parsers::message::Message;

use super::*;
use crate::xmpp::fuzzing::reparse;
use crate::xmpp::{Jid, ns, renamespace};

/// Everything written to the peer until the write side is shut down.
async fn written(peer: &mut tokio::io::DuplexStream) -> String {
    let mut out = String::new();
    peer.read_to_string(&mut out).await.unwrap();
    out
}

fn client_out_header() -> StreamHeader {
    StreamHeader {
        to: None,
        from: Some("example.com".to_owned()),
        id: Some("s'1".to_owned()),
        version: Some("1.0".to_owned()),
        lang: Some("en".to_owned()),
        default_ns: ns::CLIENT.to_owned(),
    }
}

#[tokio::test]
async fn header_stanza_and_close_on_the_wire() {
    let (mut stream, mut peer) = duplex_with(b"").await;
    stream.send_header(&client_out_header()).await.unwrap();
    let message = element(
        "<message to='juliet@example.com' id='m1'><body>hi</body><x xmlns='urn:x'><y/></x></message>",
    );
    stream.send(&message).await.unwrap();
    stream
        .send(&Element::builder("features", ns::STREAMS).build())
        .await
        .unwrap();
    stream.close().await.unwrap();
    drop(stream);
    assert_eq!(
        written(&mut peer).await,
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
         xmlns:stream='http://etherx.jabber.org/streams' id='s&apos;1' from='example.com' version='1.0' \
         xml:lang='en'><message id='m1' to='juliet@example.com'><body>hi</body><x xmlns='urn:x'><y/></x>\
         </message><stream:features/></stream:stream>"
    );
}

#[tokio::test]
async fn stream_error_opens_a_stream_first_if_needed() {
    let (mut stream, mut peer) = duplex_with(b"").await;
    let error = StreamError::new(StreamErrorCondition::PolicyViolation, "too <big>");
    stream.send_error(&error).await.unwrap();
    drop(stream);
    assert_eq!(
        written(&mut peer).await,
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
         xmlns:stream='http://etherx.jabber.org/streams' version='1.0'><stream:error>\
         <policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
         <text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>too &lt;big&gt;</text></stream:error></stream:stream>"
    );
}

#[tokio::test]
async fn stream_error_after_header() {
    let (mut stream, mut peer) = duplex_with(b"").await;
    stream.send_header(&client_out_header()).await.unwrap();
    stream
        .send_error(&StreamError::bare(StreamErrorCondition::NotWellFormed))
        .await
        .unwrap();
    drop(stream);
    let out = written(&mut peer).await;
    assert!(out.ends_with(
        "version='1.0' xml:lang='en'><stream:error><not-well-formed \
         xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>"
    ));
}

/// Our output parses back to what was sent, with every kind of content.
#[test]
fn elements_round_trip_through_the_parser() {
    let samples = [
        "<message xmlns:p='urn:p' p:attr='v' xml:lang='de'><body>x</body><p:q><r xmlns=''/></p:q></message>",
        "<iq type='set' id='a&#10;b&#9;c'><query xmlns='jabber:iq:roster'><item jid='a@b' name='&quot;&apos;'/></query></iq>",
        "<presence><status>line1\nline2 &amp; &lt;tag&gt; ]]&gt;</status><c xmlns='http://jabber.org/protocol/caps'/></presence>",
        "<message><body><![CDATA[</body></message><iq type='set'>]]></body></message>",
    ];
    for xml in samples {
        let el = element(xml);
        for stream_ns in [ns::CLIENT, "", "urn:other"] {
            assert_eq!(reparse(&el, stream_ns), el, "{xml} in {stream_ns:?}");
        }
    }
}

/// A body that looks like markup goes out as text and comes back as the same text.
#[tokio::test]
async fn markup_in_text_cannot_inject() {
    let evil = "</body></message><iq type='set' id='x'><query xmlns='jabber:iq:roster'/></iq><message><body>";
    let mut message = Message::new(Some(Jid::new("juliet@example.com").unwrap()));
    message.bodies.insert(Default::default(), evil.to_owned());
    message.id = Some(xmpp_parsers::message::Id("a' b=\"c".to_owned()));
    let (mut stream, mut peer) = duplex_with(b"").await;
    stream.send_header(&client_out_header()).await.unwrap();
    stream.send(&Element::from(message.clone())).await.unwrap();
    stream.close().await.unwrap();
    drop(stream);
    let wire = written(&mut peer).await;
    assert!(
        wire.contains("&lt;/body&gt;&lt;/message&gt;&lt;iq"),
        "{wire}"
    );
    let outcome = run(&wire).unwrap();
    assert_eq!(outcome.elements.len(), 1);
    let back = Message::try_from(outcome.elements[0].clone()).unwrap();
    assert_eq!(back.bodies.values().next().map(String::as_str), Some(evil));
    assert_eq!(back.id, message.id);
}

/// RFC 6120 section 4.8.3: stanzas are jabber:client inside Herald and take the stream's namespace
/// on server streams; payloads that carry their own jabber:client namespace keep it.
#[tokio::test]
async fn client_stanzas_take_the_server_namespace_on_s2s_streams() {
    let forwarded = element(
        "<message to='a@b' from='c@d'><body>outer</body><received xmlns='urn:xmpp:carbons:2'>\
         <forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' to='e@f'><body>inner</body>\
         </message></forwarded></received></message>",
    );
    let (mut stream, mut peer) = duplex_with(b"").await;
    let header = StreamHeader {
        default_ns: ns::SERVER.to_owned(),
        ..StreamHeader::default()
    };
    stream.send_header(&header).await.unwrap();
    stream.send(&forwarded).await.unwrap();
    stream
        .send(&Element::builder("result", ns::DIALBACK).append("k").build())
        .await
        .unwrap();
    stream.close().await.unwrap();
    drop(stream);
    let wire = written(&mut peer).await;
    assert!(wire.contains("xmlns:db='jabber:server:dialback'"), "{wire}");
    assert!(
        wire.contains("<message from='c@d' to='a@b'><body>outer</body>"),
        "{wire}"
    );
    assert!(
        wire.contains("<message xmlns='jabber:client' to='e@f'><body>inner</body>"),
        "{wire}"
    );
    assert!(wire.contains("<db:result>k</db:result>"), "{wire}");

    let outcome = run(&wire).unwrap();
    assert_eq!(outcome.header.default_ns, ns::SERVER);
    assert!(outcome.elements[0].is("message", ns::SERVER));
    // Parsing turns it back into exactly what was sent.
    let back = renamespace(outcome.elements[0].clone(), ns::SERVER, ns::CLIENT);
    assert_eq!(back, forwarded);
    assert!(outcome.elements[1].is("result", ns::DIALBACK));
}

#[test]
fn unrepresentable_characters_are_dropped_not_sent() {
    let el = Element::builder("message", ns::CLIENT)
        .append(
            Element::builder("body", ns::CLIENT)
                .append("a\u{0}b\u{1B}c\rd")
                .build(),
        )
        .build();
    let back = reparse(&el, ns::CLIENT);
    assert_eq!(back.get_child("body", ns::CLIENT).unwrap().text(), "abc\rd");
}

/// Fuzz regression (corpus/stanza/crash_element_in_xml_namespace.bin): an element with the `xml`
/// prefix was written with `xmlns='http://www.w3.org/XML/1998/namespace'`, which no parser accepts.
#[test]
fn elements_in_the_xml_namespace_keep_the_xml_prefix() {
    let el = element("<xml:la a='3'/>");
    assert!(el.is("la", ns::XML));
    for stream_ns in [ns::CLIENT, ""] {
        assert_eq!(reparse(&el, stream_ns), el);
    }
}

/// Records every write it is given, so a test can see how the output was split.
#[derive(Default)]
struct WriteLog {
    writes: Vec<String>,
}

impl tokio::io::AsyncRead for WriteLog {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for WriteLog {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.writes.push(String::from_utf8_lossy(buf).into_owned());
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn a_queued_header_goes_out_in_one_write_with_what_follows() {
    let mut stream = XmlStream::new(WriteLog::default(), Limits::default());
    stream.queue_header(&client_out_header());
    assert!(stream.get_ref().writes.is_empty(), "nothing written yet");
    stream
        .send(&Element::builder("features", ns::STREAMS).build())
        .await
        .unwrap();
    stream.send(&element("<message id='m2'/>")).await.unwrap();
    let writes = &stream.get_ref().writes;
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert!(
        writes[0].starts_with("<?xml version='1.0'?><stream:stream xmlns='jabber:client'")
            && writes[0].ends_with("xml:lang='en'><stream:features/>"),
        "{writes:?}"
    );
    assert_eq!(writes[1], "<message id='m2'/>");
}

#[tokio::test]
async fn an_error_after_a_queued_header_follows_it() {
    let (mut stream, mut peer) = duplex_with(b"").await;
    stream.queue_header(&client_out_header());
    let error = StreamError::new(StreamErrorCondition::HostUnknown, "");
    stream.send_error(&error).await.unwrap();
    drop(stream);
    let out = written(&mut peer).await;
    assert_eq!(out.matches("<stream:stream").count(), 1, "{out}");
    assert!(
        out.starts_with("<?xml version='1.0'?><stream:stream")
            && out.contains("<host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>")
            && out.ends_with("</stream:stream>"),
        "{out}"
    );
}
