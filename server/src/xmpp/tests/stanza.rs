//! The stanza model as the XML layer sees it, and error replies (RFC 6120 section 8).

use xmpp_parsers::iq::Iq;
use xmpp_parsers::message::Message;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use super::*;
use crate::xmpp::{Envelope, EnvelopeError, Jid, error_reply, ns, renamespace};

#[test]
fn addresses_can_be_stamped_and_payloads_stay() {
    let mut stanza = Envelope::parse(element(
        "<message to='a@b' id='m1' type='chat'><body>x</body><thread>t1</thread>\
         <active xmlns='http://jabber.org/protocol/chatstates'/></message>",
    ))
    .unwrap();
    stanza.set_from(&Jid::new("me@example.com/phone").unwrap());
    stanza.set_to(&Jid::new("you@example.com").unwrap());
    assert_eq!(stanza.element.attr("from"), Some("me@example.com/phone"));
    assert_eq!(stanza.element.attr("to"), Some("you@example.com"));
    assert_eq!(stanza.id(), Some("m1"));
    assert!(
        stanza
            .element
            .has_child("active", "http://jabber.org/protocol/chatstates")
    );
}

#[test]
fn nonzas_and_invalid_stanzas() {
    let r = element("<r xmlns='urn:xmpp:sm:3'/>");
    assert!(matches!(
        Envelope::parse(r),
        Err(EnvelopeError::NotAStanza(_))
    ));
    // `message` in a foreign namespace is not a stanza either.
    assert!(matches!(
        Envelope::parse(Element::bare("message", "urn:other")),
        Err(EnvelopeError::NotAStanza(_))
    ));
    for xml in [
        "<iq type='get'><ping xmlns='urn:xmpp:ping'/></iq>",
        "<iq type='bogus' id='1'/>",
    ] {
        assert!(
            matches!(
                Envelope::parse(element(xml)),
                Err(EnvelopeError::BadRequest(_))
            ),
            "{xml}"
        );
    }
    for xml in [
        "<message to='a@b@c' id='m'/>",
        "<presence from='@example.com'/>",
    ] {
        assert!(
            matches!(
                Envelope::parse(element(xml)),
                Err(EnvelopeError::MalformedJid { .. })
            ),
            "{xml}"
        );
    }
}

#[test]
fn error_reply_swaps_addresses_and_carries_the_condition() {
    let original =
        element("<iq type='get' id='q1' from='a@b/c' to='d@e'><query xmlns='urn:unknown'/></iq>");
    let reply = error_reply(
        &original,
        ErrorType::Cancel,
        DefinedCondition::ServiceUnavailable,
        Some("nope"),
    )
    .unwrap();
    assert!(reply.is("iq", ns::CLIENT));
    assert_eq!(reply.attr("type"), Some("error"));
    assert_eq!(reply.attr("id"), Some("q1"));
    assert_eq!(reply.attr("to"), Some("a@b/c"));
    assert_eq!(reply.attr("from"), Some("d@e"));
    let Iq::Error { error, id, .. } = Iq::try_from(reply).unwrap() else {
        panic!()
    };
    assert_eq!(id, "q1");
    assert_eq!(error.type_, ErrorType::Cancel);
    assert_eq!(
        error.defined_condition,
        DefinedCondition::ServiceUnavailable
    );
    assert_eq!(
        error.texts.values().next().map(String::as_str),
        Some("nope")
    );

    let presence = element("<presence to='x@y' type='subscribe'/>");
    let reply = error_reply(
        &presence,
        ErrorType::Modify,
        DefinedCondition::JidMalformed,
        None,
    )
    .unwrap();
    assert_eq!(reply.attr("from"), Some("x@y"));
    assert_eq!(reply.attr("to"), None);
    assert_eq!(reply.attr("id"), None);
    let error = reply.get_child("error", ns::CLIENT).unwrap();
    assert!(error.has_child("jid-malformed", ns::STANZAS));
    assert!(!error.has_child("text", ns::STANZAS));
    assert!(StanzaError::try_from(error.clone()).is_ok());
}

#[test]
fn errors_are_never_answered_with_errors() {
    for xml in [
        "<message type='error' id='1'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>",
        "<presence type='error'/>",
        "<iq type='error' id='2'/>",
    ] {
        assert!(
            error_reply(
                &element(xml),
                ErrorType::Cancel,
                DefinedCondition::BadRequest,
                None
            )
            .is_none(),
            "{xml}"
        );
    }
    assert!(
        error_reply(
            &element("<r xmlns='urn:xmpp:sm:3'/>"),
            ErrorType::Cancel,
            DefinedCondition::BadRequest,
            None
        )
        .is_none()
    );
}

#[test]
fn server_stream_stanzas_parse_and_replies_stay_in_their_namespace() {
    let input = format!(
        "<stream:stream xmlns='jabber:server' {STREAMS_DECL}><message from='a@x' to='b@y' id='s'>\
         <body>hi</body></message></stream:stream>"
    );
    let el = run(&input).unwrap().elements.remove(0);
    assert!(el.is("message", ns::SERVER));
    let m = Message::try_from(renamespace(el.clone(), ns::SERVER, ns::CLIENT)).unwrap();
    assert_eq!(m.bodies.values().next().map(String::as_str), Some("hi"));
    let reply = error_reply(
        &el,
        ErrorType::Cancel,
        DefinedCondition::ServiceUnavailable,
        None,
    )
    .unwrap();
    assert!(reply.is("message", ns::SERVER));
    assert!(reply.has_child("error", ns::SERVER));
}
