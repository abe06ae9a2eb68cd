//! The per-element budget (RFC 6120 section 13.12: a server must limit the resources a peer can make it
//! use): memory is bounded by what was received, not by what it parses into. Element count, attribute
//! count and the estimated size of the parsed tree are counted while parsing, so the stream fails before
//! the tree or the CPU time grows; the pre-authentication limits are much smaller.

use super::*;

/// `<iq>` followed by `children` empty children, as finding 1 of the hardening issue sent it.
fn many_children(children: usize) -> String {
    format!(
        "{}<iq type='get' id='x'>{}</iq></stream:stream>",
        client_header(),
        "<a/>".repeat(children)
    )
}

/// A stream header with `count` attributes (finding 8: the duplicate check was quadratic).
fn header_with_attributes(count: usize) -> String {
    let mut header = format!("<stream:stream xmlns='jabber:client' {STREAMS_DECL}");
    for i in 0..count {
        header.push_str(&format!(" a{i}=''"));
    }
    header.push('>');
    header
}

#[test]
fn sixty_thousand_empty_children_are_a_policy_violation() {
    let input = many_children(60_000);
    assert!(input.len() < Limits::DEFAULT_MAX_STANZA_BYTES);
    assert_eq!(
        failure(input.as_bytes(), Limits::default()),
        StreamErrorCondition::PolicyViolation
    );
}

#[test]
fn a_header_with_26000_attributes_is_a_policy_violation() {
    let input = header_with_attributes(26_000);
    assert!(input.len() < Limits::DEFAULT_MAX_STANZA_BYTES);
    assert_eq!(
        failure(input.as_bytes(), Limits::default()),
        StreamErrorCondition::PolicyViolation
    );
}

#[test]
fn a_stanza_with_too_many_attributes_is_a_policy_violation() {
    let attributes: String = (0..1000).map(|i| format!(" a{i}=''")).collect();
    let body = format!("<message{attributes}/>");
    assert_eq!(body_failure(&body), StreamErrorCondition::PolicyViolation);
}

#[test]
fn a_long_inherited_namespace_is_charged_to_every_element() {
    // Each element holds its own copy of its namespace name: 2,000 children of a 20 KiB namespace are
    // 40 MB of tree from 28 KB of input.
    let namespace = format!("urn:{}", "n".repeat(20 * 1024));
    let body = format!(
        "<message xmlns='{namespace}'>{}</message>",
        "<a/>".repeat(2_000)
    );
    assert_eq!(body_failure(&body), StreamErrorCondition::PolicyViolation);
}

fn element_with_children(children: usize) -> String {
    format!("<iq type='get' id='x'>{}</iq>", "<a/>".repeat(children - 1))
}

fn element_with_attributes(count: usize) -> String {
    let attributes: String = (0..count).map(|i| format!(" a{i}=''")).collect();
    format!("<message{attributes}/>")
}

/// The condition a stream body fails with under `limits`, or `None` if it is read to the end.
fn outcome(body: &str, limits: Limits) -> Option<StreamErrorCondition> {
    let input = format!("{}{body}</stream:stream>", client_header());
    match run_chunked(input.as_bytes(), 512, limits) {
        Ok(outcome) => outcome.condition(),
        Err(e) => e.condition(),
    }
}

#[test]
fn element_count_is_bounded_per_stanza_and_restarts_with_the_next() {
    let limits = Limits::PRE_AUTH;
    assert_eq!(outcome(&element_with_children(100).repeat(3), limits), None);
    assert_eq!(
        outcome(&element_with_children(101), limits),
        Some(StreamErrorCondition::PolicyViolation)
    );
    let full = Limits::default();
    assert_eq!(outcome(&element_with_children(8192), full), None);
    assert_eq!(
        outcome(&element_with_children(8193), full),
        Some(StreamErrorCondition::PolicyViolation)
    );
}

#[test]
fn attribute_count_is_bounded_per_element_and_much_lower_before_authentication() {
    let pre = Limits::PRE_AUTH;
    assert_eq!(outcome(&element_with_attributes(16), pre), None);
    assert_eq!(
        outcome(&element_with_attributes(17), pre),
        Some(StreamErrorCondition::PolicyViolation)
    );
    let full = Limits::default();
    assert_eq!(outcome(&element_with_attributes(64), full), None);
    assert_eq!(
        outcome(&element_with_attributes(65), full),
        Some(StreamErrorCondition::PolicyViolation)
    );
    // The stream header is bounded too, namespace declarations counted.
    assert_eq!(
        failure(header_with_attributes(15).as_bytes(), pre),
        StreamErrorCondition::PolicyViolation
    );
}

#[test]
fn pre_authentication_limits_refuse_what_the_full_limits_accept() {
    let pre = Limits::PRE_AUTH;
    // 8 KiB of input, a few dozen elements: everything a client sends before SASL succeeds fits.
    let text = format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>{}</auth>",
        "A".repeat(4000)
    );
    assert_eq!(outcome(&text, pre), None);
    let big = format!("<message><body>{}</body></message>", "x".repeat(9000));
    assert_eq!(outcome(&big, Limits::default()), None);
    assert_eq!(
        outcome(&big, pre),
        Some(StreamErrorCondition::PolicyViolation)
    );
    let deep = format!("{}{}", "<a>".repeat(9), "</a>".repeat(9));
    assert_eq!(
        outcome(&deep, pre),
        Some(StreamErrorCondition::PolicyViolation)
    );
    // Never above the configured limits.
    let small = Limits {
        max_stanza_bytes: 4000,
        max_elements: 50,
        ..Limits::default()
    };
    assert_eq!(small.before_auth().max_stanza_bytes, 4000);
    assert_eq!(small.before_auth().max_elements, 50);
}

#[test]
fn parsed_size_counts_text_attributes_and_namespaces() {
    // Plain text parses to about its own size: a full-size body passes the default budget.
    let body = format!(
        "<message><body>{}</body></message>",
        "x".repeat(Limits::DEFAULT_MAX_STANZA_BYTES - 100)
    );
    assert_eq!(outcome(&body, Limits::default()), None);
    let tight = Limits {
        max_parsed_bytes: 10_000,
        ..Limits::default()
    };
    let text = format!("<message><body>{}</body></message>", "x".repeat(10_000));
    assert_eq!(
        outcome(&text, tight),
        Some(StreamErrorCondition::PolicyViolation)
    );
    let cdata = format!(
        "<message><body><![CDATA[{}]]></body></message>",
        "x".repeat(10_000)
    );
    assert_eq!(
        outcome(&cdata, tight),
        Some(StreamErrorCondition::PolicyViolation)
    );
    let attribute = format!("<message a='{}'/>", "x".repeat(10_000));
    assert_eq!(
        outcome(&attribute, tight),
        Some(StreamErrorCondition::PolicyViolation)
    );
}

#[test]
fn real_large_stanzas_fit_the_default_limits() {
    // A XEP-0384 OMEMO bundle publish with 200 pre-keys (about 20 KB here, up to 64 KiB in the wild).
    let prekeys: String = (0..200)
        .map(|i| format!("<pk id='{i}'>{}</pk>", "B".repeat(44)))
        .collect();
    let bundle = format!(
        "<iq type='set' id='b'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
         <publish node='urn:xmpp:omemo:2:bundles'><item id='1'><bundle xmlns='urn:xmpp:omemo:2'>\
         <spk id='1'>{k}</spk><spks>{k}</spks><ik>{k}</ik><prekeys>{prekeys}</prekeys></bundle></item>\
         </publish></pubsub></iq>",
        k = "A".repeat(44)
    );
    assert_eq!(outcome(&bundle, Limits::default()), None);
    // A XEP-0191 block list with 4,000 JIDs (about 170 KB).
    let items: String = (0..4000)
        .map(|i| format!("<item jid='spammer{i:05}@spam.example.com'/>"))
        .collect();
    let block =
        format!("<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'>{items}</block></iq>");
    assert!(block.len() < Limits::DEFAULT_MAX_STANZA_BYTES);
    assert_eq!(outcome(&block, Limits::default()), None);
}

#[test]
fn limits_raised_after_authentication_apply_to_the_restarted_stream() {
    let header = client_header();
    let input = format!(
        "{header}<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAYg==</auth>\
         {header}{}</stream:stream>",
        element_with_children(1000)
    );
    futures::executor::block_on(async {
        let mut stream = XmlStream::new(
            ScriptedPeer::chunked(input.as_bytes(), 300),
            Limits::PRE_AUTH,
        );
        stream.read_header().await.unwrap();
        assert!(matches!(stream.next().await.unwrap(), Frame::Element(_)));
        // What c2s::negotiation does after SASL success (RFC 6120 section 6.4.6).
        stream.reset();
        stream.set_limits(Limits::default());
        stream.read_header().await.unwrap();
        let Frame::Element(iq) = stream.next().await.unwrap() else {
            panic!("no element");
        };
        assert_eq!(iq.children().count(), 999);
    });
}

#[test]
fn namespace_declarations_in_scope_are_bounded() {
    // Each element and each prefixed attribute looks its namespace up among the declarations in scope, so
    // thousands of them in scope (64 per element, 32 levels deep) made every lookup slow: CPU quadratic in
    // the input. They count against `max_attributes` in all.
    let level = |depth: usize| -> String {
        let declarations: String = (0..10)
            .map(|i| format!(" xmlns:p{depth}x{i}='urn:{depth}:{i}'"))
            .collect();
        format!("<a{declarations}>")
    };
    let open: String = (0..20).map(level).collect();
    let body = format!(
        "<message>{open}<b p0x0:c=''/>{}</message>",
        "</a>".repeat(20)
    );
    assert_eq!(
        outcome(&body, Limits::default()),
        Some(StreamErrorCondition::PolicyViolation)
    );
    // A realistic handful is fine.
    let few: String = (0..6).map(level).collect();
    let body = format!("<message>{few}<b p0x0:c=''/>{}</message>", "</a>".repeat(6));
    assert_eq!(outcome(&body, Limits::default()), None);
}
