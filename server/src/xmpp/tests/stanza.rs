//! The `Stanza` enum and error replies (RFC 6120 section 8).

use xmpp_parsers::iq::Iq;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use super::*;
use crate::xmpp::{Jid, Stanza, StanzaParseError, error_reply, ns};

#[test]
fn message_presence_and_iq_round_trip() {
    let samples = [
        "<message to='juliet@example.com/balcony' from='romeo@example.net/orchard' id='m1' type='chat'>\
         <body>Art thou not Romeo?</body><thread>t1</thread><active xmlns='http://jabber.org/protocol/chatstates'/></message>",
        "<presence from='romeo@example.net/orchard' id='p1'><show>away</show><status>gone</status>\
         <priority>5</priority><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v'/></presence>",
        "<presence to='juliet@example.com' type='subscribe' id='p2'/>",
        "<iq type='get' id='i1' to='example.com'><ping xmlns='urn:xmpp:ping'/></iq>",
        "<iq type='result' id='i2' from='example.com'/>",
        "<iq type='set' id='i3'><query xmlns='jabber:iq:roster'><item jid='nurse@example.com'/></query></iq>",
    ];
    for xml in samples {
        let original = element(xml);
        let stanza = Stanza::parse(original.clone()).unwrap();
        let again = Stanza::parse(stanza.to_element()).unwrap();
        assert_eq!(again, stanza, "{xml}");
        assert_eq!(stanza.name(), original.name());
        assert_eq!(stanza.id(), original.attr("id"));
        assert_eq!(
            stanza.to().map(ToString::to_string).as_deref(),
            original.attr("to")
        );
        assert_eq!(
            stanza.from().map(ToString::to_string).as_deref(),
            original.attr("from")
        );
        // Payloads keep their namespaces through the typed form.
        let out = Element::from(stanza);
        for child in original.children().filter(|c| c.ns() != ns::CLIENT) {
            assert!(out.children().any(|c| c == child), "{xml}: lost {child:?}");
        }
    }
}

#[test]
fn addresses_can_be_stamped() {
    let mut stanza = Stanza::parse(element("<message to='a@b'><body>x</body></message>")).unwrap();
    stanza.set_from(Some(Jid::new("me@example.com/phone").unwrap()));
    stanza.set_to(Some(Jid::new("you@example.com").unwrap()));
    let el = stanza.to_element();
    assert_eq!(el.attr("from"), Some("me@example.com/phone"));
    assert_eq!(el.attr("to"), Some("you@example.com"));
    let mut iq = Stanza::parse(element(
        "<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>",
    ))
    .unwrap();
    iq.set_from(Some(Jid::new("me@example.com").unwrap()));
    assert_eq!(
        iq.from().map(ToString::to_string).as_deref(),
        Some("me@example.com")
    );
    iq.set_from(None);
    assert_eq!(iq.from(), None);
}

#[test]
fn nonzas_and_invalid_stanzas() {
    let r = element("<r xmlns='urn:xmpp:sm:3'/>");
    match Stanza::parse(r.clone()) {
        Err(StanzaParseError::NotAStanza(el)) => assert_eq!(el, r),
        other => panic!("{other:?}"),
    }
    // `message` in a foreign namespace is not a stanza either.
    assert!(matches!(
        Stanza::parse(Element::bare("message", "urn:other")),
        Err(StanzaParseError::NotAStanza(_))
    ));
    let cases = [
        (
            "<iq type='get'><ping xmlns='urn:xmpp:ping'/></iq>",
            DefinedCondition::BadRequest,
        ),
        ("<iq type='bogus' id='1'/>", DefinedCondition::BadRequest),
        ("<iq type='get' id='1'/>", DefinedCondition::BadRequest),
        (
            "<message to='a@b@c' id='m'/>",
            DefinedCondition::JidMalformed,
        ),
        (
            "<presence from='@example.com'/>",
            DefinedCondition::JidMalformed,
        ),
    ];
    for (xml, condition) in cases {
        let original = element(xml);
        match Stanza::parse(original.clone()) {
            Err(e @ StanzaParseError::Invalid { .. }) => {
                assert_eq!(e.condition(), Some(condition.clone()), "{xml}");
                let StanzaParseError::Invalid { element, .. } = e else {
                    unreachable!()
                };
                assert_eq!(element, original);
            }
            other => panic!("{xml}: {other:?}"),
        }
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
    let Stanza::Iq(Iq::Error { error, id, .. }) = Stanza::parse(reply).unwrap() else {
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
    let Stanza::Message(m) = Stanza::parse(el.clone()).unwrap() else {
        panic!()
    };
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
