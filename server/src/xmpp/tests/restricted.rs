//! Restricted XML (RFC 6120 section 11) and resource limits (RFC 6120 section 13.12).

use super::*;

const BILLION_LAUGHS: &str = "<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>\
    <!ENTITY lol2 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>\
    <!ENTITY lol3 '&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;'>]>\
    <stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>&lol3;";

#[test]
fn billion_laughs_fails_after_three_bytes_of_the_doctype() {
    futures::executor::block_on(async {
        let mut stream = XmlStream::new(
            ScriptedPeer::chunked(BILLION_LAUGHS.as_bytes(), 1),
            Limits::default(),
        );
        let err = stream.read_header().await.unwrap_err();
        assert_eq!(err.condition(), Some(StreamErrorCondition::RestrictedXml));
        assert_eq!(
            stream.get_ref().consumed(),
            "<?xml version='1.0'?><!D".len()
        );
    });
}

#[test]
fn doctype_comment_and_processing_instructions_are_restricted() {
    let in_prolog = |s: &str| {
        failure(
            format!("<?xml version='1.0'?>{s}").as_bytes(),
            Limits::default(),
        )
    };
    assert_eq!(
        in_prolog("<!DOCTYPE stream>"),
        StreamErrorCondition::RestrictedXml
    );
    assert_eq!(
        in_prolog("<!-- hi -->"),
        StreamErrorCondition::RestrictedXml
    );
    assert_eq!(
        in_prolog("<?php echo 1; ?>"),
        StreamErrorCondition::RestrictedXml
    );
    assert_eq!(
        body_failure("<!DOCTYPE x>"),
        StreamErrorCondition::RestrictedXml
    );
    assert_eq!(
        body_failure("<!-- keepalive -->"),
        StreamErrorCondition::RestrictedXml
    );
    assert_eq!(
        body_failure("<message><!-- c --></message>"),
        StreamErrorCondition::RestrictedXml
    );
    assert_eq!(
        body_failure("<message><?pi x?></message>"),
        StreamErrorCondition::RestrictedXml
    );
    assert_eq!(
        body_failure("<?xml version='1.0'?>"),
        StreamErrorCondition::RestrictedXml
    );
}

#[test]
fn only_predefined_entities_are_allowed() {
    assert_eq!(
        body_failure("<message><body>&nbsp;</body></message>"),
        StreamErrorCondition::RestrictedXml
    );
    assert_eq!(
        body_failure("<message id='&foo;'/>"),
        StreamErrorCondition::RestrictedXml
    );
    let el = element(
        "<message id='&lt;&amp;&#65;&#x42;'><body>&quot;&apos;&gt;&#x1F600;</body></message>",
    );
    assert_eq!(el.attr("id"), Some("<&AB"));
    assert_eq!(el.children().next().unwrap().text(), "\"'>😀");
}

#[test]
fn malformed_xml_is_not_well_formed() {
    let nwf = StreamErrorCondition::NotWellFormed;
    assert_eq!(body_failure("<message><body>a & b</body></message>"), nwf);
    assert_eq!(body_failure("<message><body>&#0;</body></message>"), nwf);
    assert_eq!(body_failure("<message id='a<b'/>"), nwf);
    assert_eq!(body_failure("<message id='1' id='2'/>"), nwf);
    assert_eq!(body_failure("<message><a></b></message>"), nwf);
    assert_eq!(body_failure("<mess age/>"), nwf);
    assert_eq!(body_failure("<message><body>]]></body></message>"), nwf);
    assert_eq!(body_failure("<!x>"), nwf);
    let mut input = client_header().into_bytes();
    input.extend_from_slice(b"<message><body>\xC3\x28</body></message>");
    assert_eq!(failure(&input, Limits::default()), nwf);
    let mut input = client_header().into_bytes();
    input.extend_from_slice(b"<message to='\xFF'/>");
    assert_eq!(failure(&input, Limits::default()), nwf);
}

#[test]
fn oversize_stanza_is_a_policy_violation_and_buffering_is_bounded() {
    let limits = Limits {
        max_stanza_bytes: 1000,
        ..Limits::default()
    };
    let header = client_header();
    // A stanza that never ends: the framer must stop reading once the limit is passed.
    let mut input = format!("{header}<message><body>").into_bytes();
    input.extend(std::iter::repeat_n(b'x', 1_000_000));
    futures::executor::block_on(async {
        let mut stream = XmlStream::new(ScriptedPeer::chunked(&input, 100), limits);
        stream.read_header().await.unwrap();
        let err = stream.next().await.unwrap_err();
        assert_eq!(err.condition(), Some(StreamErrorCondition::PolicyViolation));
        assert!(
            stream.get_ref().consumed() <= header.len() + 1000 + 100,
            "read too much"
        );
    });
    // A complete stanza over the limit, arriving in one read.
    let big = format!(
        "{header}<message><body>{}</body></message>",
        "y".repeat(1000)
    );
    assert_eq!(
        failure(big.as_bytes(), limits),
        StreamErrorCondition::PolicyViolation
    );
    // An endless start tag, and an endless header.
    let tag = format!("{header}<message a='{}", "z".repeat(5000));
    assert_eq!(
        failure(tag.as_bytes(), limits),
        StreamErrorCondition::PolicyViolation
    );
    let endless_header = format!("<stream:stream a='{}", "z".repeat(5000));
    assert_eq!(
        failure(endless_header.as_bytes(), limits),
        StreamErrorCondition::PolicyViolation
    );
}

#[test]
fn stanza_just_under_the_limit_passes_and_the_count_restarts_per_stanza() {
    let stanza = format!("<message><body>{}</body></message>", "y".repeat(900));
    let limits = Limits {
        max_stanza_bytes: stanza.len(),
        ..Limits::default()
    };
    let input = format!(
        "{}{stanza}{stanza}{stanza}</stream:stream>",
        client_header()
    );
    for chunk in [1, 333, 4096] {
        let outcome = run_chunked(input.as_bytes(), chunk, limits).unwrap();
        assert_eq!(outcome.elements.len(), 3, "chunk {chunk}");
        assert!(outcome.end.is_ok());
    }
    let over = Limits {
        max_stanza_bytes: stanza.len() - 1,
        ..limits
    };
    assert_eq!(
        failure(input.as_bytes(), over),
        StreamErrorCondition::PolicyViolation
    );
}

#[test]
fn deep_nesting_is_a_policy_violation() {
    let nest = |depth: usize| {
        format!(
            "{}{}{}",
            "<a>".repeat(depth),
            "</a>".repeat(depth),
            "</stream:stream>"
        )
    };
    let limits = Limits {
        max_stanza_bytes: 1 << 20,
        max_depth: 32,
        ..Limits::default()
    };
    let ok = run_chunked(
        format!("{}{}", client_header(), nest(32)).as_bytes(),
        4096,
        limits,
    )
    .unwrap();
    assert_eq!(ok.elements.len(), 1);
    let deep = format!("{}{}", client_header(), nest(33));
    assert_eq!(
        failure(deep.as_bytes(), limits),
        StreamErrorCondition::PolicyViolation
    );
    // Depth is checked as tags arrive, before the element is complete.
    let endless = format!("{}{}", client_header(), "<a>".repeat(100_000));
    assert_eq!(
        failure(endless.as_bytes(), Limits::default()),
        StreamErrorCondition::PolicyViolation
    );
}
