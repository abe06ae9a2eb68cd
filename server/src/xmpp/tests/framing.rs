//! Stream header and framing (RFC 6120 sections 4.2 to 4.8): declarations, pipelining, arbitrary
//! splits, cancel-safety, restarts and STARTTLS hand-over.

use std::time::Duration;

use futures::FutureExt;
use tokio::io::AsyncWriteExt;

use super::*;
use crate::xmpp::ns;

fn sample_session() -> String {
    format!(
        "{}\n  <message to='juliet@example.com' id='m1' type='chat'><body>a &lt;b&gt; &amp; &#x1F600;\r\n</body>\
         <x xmlns='urn:x' a=\"q'q\"><y/><![CDATA[<raw> & ]]></x></message> \
         <presence/><iq type='get' id='i1'><ping xmlns='urn:xmpp:ping'/></iq>\t</stream:stream>",
        client_header()
    )
}

#[test]
fn header_with_declaration() {
    let outcome = run(&format!("{}</stream:stream>", client_header())).unwrap();
    let header = outcome.header;
    assert_eq!(header.to.as_deref(), Some("example.com"));
    assert_eq!(header.from, None);
    assert_eq!(header.id, None);
    assert_eq!(header.version.as_deref(), Some("1.0"));
    assert_eq!(header.lang.as_deref(), Some("en"));
    assert_eq!(header.default_ns, ns::CLIENT);
    assert!(outcome.elements.is_empty());
    assert!(outcome.end.is_ok());
}

#[test]
fn header_without_declaration_with_bom_and_double_quotes() {
    let input = format!(
        "\u{FEFF}<stream:stream xmlns=\"jabber:server\" xmlns:stream=\"{}\" from=\"a.example\" \
         id=\"s1\"></stream:stream>",
        ns::STREAMS
    );
    let header = run(&input).unwrap().header;
    assert_eq!(header.default_ns, ns::SERVER);
    assert_eq!(header.from.as_deref(), Some("a.example"));
    assert_eq!(header.id.as_deref(), Some("s1"));
    assert_eq!(header.version, None);
}

#[test]
fn header_without_default_namespace_is_left_to_the_caller() {
    let header = run(&format!("<stream:stream {STREAMS_DECL}></stream:stream>"))
        .unwrap()
        .header;
    assert_eq!(header.default_ns, "");
}

#[test]
fn pipelined_header_and_stanzas_in_one_read() {
    let outcome = run(&sample_session()).unwrap();
    let names: Vec<_> = outcome.elements.iter().map(Element::name).collect();
    assert_eq!(names, ["message", "presence", "iq"]);
    assert!(outcome.end.is_ok());
    let message = &outcome.elements[0];
    assert!(message.is("message", ns::CLIENT));
    assert_eq!(
        message.get_child("body", ns::CLIENT).unwrap().text(),
        "a <b> & 😀\n"
    );
    let x = message.get_child("x", "urn:x").unwrap();
    assert_eq!(x.attr("a"), Some("q'q"));
    assert!(x.has_child("y", "urn:x"));
    assert_eq!(x.text(), "<raw> & ");
}

#[test]
fn every_chunk_size_and_every_split_point_give_the_same_frames() {
    let input = sample_session();
    let expected = run(&input).unwrap().elements;
    for chunk in [1, 2, 3, 5, 7, 64] {
        let outcome = run_chunked(input.as_bytes(), chunk, Limits::default()).unwrap();
        assert_eq!(outcome.elements, expected, "chunk {chunk}");
        assert!(outcome.end.is_ok());
    }
    for at in 0..=input.len() {
        let mut stream =
            XmlStream::new(ScriptedPeer::split(input.as_bytes(), at), Limits::default());
        let outcome = futures::executor::block_on(drain(&mut stream)).unwrap();
        assert_eq!(outcome.elements, expected, "split at {at}");
        assert!(outcome.end.is_ok());
    }
}

/// Every call of `next()` is cancelled as soon as it would wait, with one byte arriving between calls.
#[tokio::test]
async fn next_is_cancel_safe_when_dropped_at_every_byte() {
    let input = sample_session();
    let expected = run(&input).unwrap().elements;
    let (ours, mut peer) = tokio::io::duplex(1 << 16);
    let mut stream = XmlStream::new(ours, Limits::default());
    let header_len = client_header().len();
    peer.write_all(&input.as_bytes()[..header_len])
        .await
        .unwrap();
    stream.read_header().await.unwrap();
    let mut got = Vec::new();
    let mut cancelled = 0;
    for byte in &input.as_bytes()[header_len..] {
        peer.write_all(&[*byte]).await.unwrap();
        loop {
            match stream.next().now_or_never() {
                Some(Ok(Frame::Element(e))) => got.push(e),
                Some(Ok(Frame::End)) => break,
                Some(Err(e)) => panic!("{e}"),
                None => {
                    cancelled += 1;
                    break;
                }
            }
        }
    }
    assert_eq!(got, expected);
    assert!(stream.has_ended());
    assert!(cancelled > input.len() / 2);
}

/// The session's pattern: `next()` raced against a timer in `select!` while bytes trickle in.
#[tokio::test]
async fn next_is_cancel_safe_in_select_with_a_timer() {
    let input = sample_session();
    let expected = run(&input).unwrap().elements;
    let (ours, mut peer) = tokio::io::duplex(1 << 16);
    let writer = tokio::spawn(async move {
        for piece in input.as_bytes().chunks(3) {
            peer.write_all(piece).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        peer
    });
    let mut stream = XmlStream::new(ours, Limits::default());
    stream.read_header().await.unwrap();
    let mut timer = tokio::time::interval(Duration::from_micros(300));
    let (mut got, mut ticks) = (Vec::new(), 0u32);
    loop {
        tokio::select! {
            frame = stream.next() => match frame.unwrap() {
                Frame::Element(e) => got.push(e),
                Frame::End => break,
            },
            _ = timer.tick() => ticks += 1,
        }
    }
    drop(writer.await.unwrap());
    assert_eq!(got, expected);
    assert!(ticks > 1, "the timer never interrupted next()");
}

#[test]
fn whitespace_keepalives_are_skipped() {
    let outcome = run(&format!(
        "{} \n\t \r\n<presence/>\n \n</stream:stream>",
        client_header()
    ))
    .unwrap();
    assert_eq!(outcome.elements.len(), 1);
}

#[test]
fn prefixes_declared_on_the_header_are_in_scope() {
    let input = format!(
        "<stream:stream xmlns='jabber:server' {STREAMS_DECL} xmlns:db='jabber:server:dialback'>\
         <db:result from='a.example' to='b.example'>key</db:result><stream:features/></stream:stream>"
    );
    let outcome = run(&input).unwrap();
    assert!(outcome.elements[0].is("result", ns::DIALBACK));
    assert_eq!(outcome.elements[0].text(), "key");
    assert!(outcome.elements[1].is("features", ns::STREAMS));
}

#[test]
fn end_of_stream_is_reported_and_repeated() {
    futures::executor::block_on(async {
        let input = format!("{}<presence/></stream:stream><garbage", client_header());
        let mut stream = XmlStream::new(
            ScriptedPeer::chunked(input.as_bytes(), 7),
            Limits::default(),
        );
        stream.read_header().await.unwrap();
        assert!(matches!(stream.next().await, Ok(Frame::Element(_))));
        assert!(matches!(stream.next().await, Ok(Frame::End)));
        assert!(matches!(stream.next().await, Ok(Frame::End)));
    });
}

#[test]
fn eof_without_close_is_closed() {
    let outcome = run(&format!("{}<presence/><message>", client_header())).unwrap();
    assert_eq!(outcome.elements.len(), 1);
    assert!(matches!(outcome.end, Err(StreamError::Closed)));
    assert!(matches!(
        run("<?xml version='1.0'?><stream:str"),
        Err(StreamError::Closed)
    ));
    assert!(matches!(run(""), Err(StreamError::Closed)));
}

#[test]
fn header_errors() {
    let bad = |input: &str| failure(input.as_bytes(), Limits::default());
    assert_eq!(
        bad("<stream:stream xmlns='jabber:client' xmlns:stream='urn:wrong'>"),
        StreamErrorCondition::InvalidNamespace
    );
    assert_eq!(
        bad("<stream xmlns='jabber:client'>"),
        StreamErrorCondition::InvalidNamespace
    );
    assert_eq!(
        bad("<stream:stream xmlns='jabber:client'>"),
        StreamErrorCondition::BadNamespacePrefix
    );
    assert_eq!(
        bad(&format!("<stream:features {STREAMS_DECL}>")),
        StreamErrorCondition::BadFormat
    );
    assert_eq!(
        bad(&format!("<stream:stream {STREAMS_DECL}/>")),
        StreamErrorCondition::BadFormat
    );
    assert_eq!(
        bad(&format!(
            "<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream {STREAMS_DECL}>"
        )),
        StreamErrorCondition::UnsupportedEncoding
    );
    assert_eq!(bad("hello"), StreamErrorCondition::NotWellFormed);
    assert_eq!(bad("</stream:stream>"), StreamErrorCondition::NotWellFormed);
    assert_eq!(
        bad("<?xml version='1.0'?><?xml version='1.0'?>"),
        StreamErrorCondition::RestrictedXml
    );
}

#[test]
fn framing_errors() {
    assert_eq!(
        body_failure("<stream:stream>"),
        StreamErrorCondition::UnsupportedStanzaType
    );
    assert_eq!(
        body_failure("<stream:bogus/>"),
        StreamErrorCondition::UnsupportedStanzaType
    );
    assert_eq!(
        body_failure("hello<presence/>"),
        StreamErrorCondition::BadFormat
    );
    assert_eq!(
        body_failure("<![CDATA[x]]>"),
        StreamErrorCondition::BadFormat
    );
    assert_eq!(
        body_failure("<message><body></message>"),
        StreamErrorCondition::NotWellFormed
    );
    assert_eq!(
        body_failure("</stream:other>"),
        StreamErrorCondition::NotWellFormed
    );
    assert_eq!(
        body_failure("<message><x:body/></message>"),
        StreamErrorCondition::BadNamespacePrefix
    );
}

#[test]
fn errors_are_sticky() {
    futures::executor::block_on(async {
        let input = format!("{}<a><!-- c --></a><presence/>", client_header());
        let mut stream = XmlStream::new(
            ScriptedPeer::chunked(input.as_bytes(), 1000),
            Limits::default(),
        );
        stream.read_header().await.unwrap();
        for _ in 0..2 {
            let e = stream.next().await.unwrap_err();
            assert_eq!(e.condition(), Some(StreamErrorCondition::RestrictedXml));
        }
    });
}

/// RFC 6120 section 6.4.6: the client may pipeline its new header right after `<auth/>`.
#[test]
fn reset_keeps_a_pipelined_header() {
    futures::executor::block_on(async {
        let input = format!(
            "{}<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAYg==</auth>{}\
             <iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>",
            client_header(),
            client_header()
        );
        let mut stream = XmlStream::new(
            ScriptedPeer::chunked(input.as_bytes(), 4096),
            Limits::default(),
        );
        stream.read_header().await.unwrap();
        let Frame::Element(auth) = stream.next().await.unwrap() else {
            panic!("expected <auth/>")
        };
        assert!(auth.is("auth", ns::SASL));
        stream.reset();
        let header = stream.read_header().await.unwrap();
        assert_eq!(header.to.as_deref(), Some("example.com"));
        let Frame::Element(iq) = stream.next().await.unwrap() else {
            panic!("expected <iq/>")
        };
        assert!(iq.has_child("bind", ns::BIND));
    });
}

/// RFC 6120 section 5.4.3.3: nothing sent after `<starttls/>` may survive into the TLS session.
#[tokio::test]
async fn into_inner_rejects_bytes_pipelined_after_starttls() {
    let starttls = format!(
        "{}<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
        client_header()
    );
    let (mut stream, _peer) =
        duplex_with(format!("{starttls}<iq type='get' id='x'/>").as_bytes()).await;
    stream.read_header().await.unwrap();
    let Frame::Element(el) = stream.next().await.unwrap() else {
        panic!("expected <starttls/>")
    };
    assert!(el.is("starttls", ns::TLS));
    assert!(!stream.buffered().is_empty());
    let err = stream.into_inner().unwrap_err();
    assert_eq!(err.condition(), Some(StreamErrorCondition::PolicyViolation));

    let (mut stream, _peer) = duplex_with(format!("{starttls}\n").as_bytes()).await;
    stream.read_header().await.unwrap();
    stream.next().await.unwrap();
    assert!(stream.into_inner().is_ok());
}

#[tokio::test]
async fn read_header_is_cancel_safe() {
    let input = format!("{}<presence/>", client_header());
    let (ours, mut peer) = tokio::io::duplex(1 << 16);
    let mut stream = XmlStream::new(ours, Limits::default());
    let mut header = None;
    for byte in client_header().as_bytes() {
        assert!(header.is_none(), "header complete before its last byte");
        peer.write_all(&[*byte]).await.unwrap();
        header = stream.read_header().now_or_never().map(Result::unwrap);
    }
    assert_eq!(header.unwrap().to.as_deref(), Some("example.com"));
    peer.write_all(&input.as_bytes()[client_header().len()..])
        .await
        .unwrap();
    assert!(matches!(stream.next().await, Ok(Frame::Element(e)) if e.name() == "presence"));
}

#[test]
fn default_limits() {
    assert_eq!(
        Limits::default(),
        Limits {
            max_stanza_bytes: 262_144,
            max_depth: 32,
            max_elements: 8192,
            max_attributes: 64,
            max_parsed_bytes: 4 << 20,
        }
    );
}
