//! Small readers over received elements: bodies, error conditions (RFC 6120 sections 4.9 and 8.3), roster
//! items (RFC 6121 section 2.1.2), and a printable form for failure messages.

use herald::xmpp::ns;

use crate::Element;

/// The element as XML, for assertion messages.
pub fn show(element: &Element) -> String {
    String::from(element)
}

/// The `<body/>` text of a message.
pub fn body(element: &Element) -> Option<String> {
    element.get_child("body", ns::CLIENT).map(Element::text)
}

/// Whether `element` is a message from `from` (full or bare JID, compared exactly) with this body.
pub fn is_message(element: &Element, from: &str, text: &str) -> bool {
    element.is("message", ns::CLIENT)
        && element.attr("type") != Some("error")
        && element.attr("from") == Some(from)
        && body(element).as_deref() == Some(text)
}

/// Whether `element` is a message (of any sender) with this body and not an error.
pub fn has_body(element: &Element, text: &str) -> bool {
    element.is("message", ns::CLIENT)
        && element.attr("type") != Some("error")
        && body(element).as_deref() == Some(text)
}

/// Whether `element` is a presence from `from` of `kind` (`None` for available).
pub fn is_presence(element: &Element, from: &str, kind: Option<&str>) -> bool {
    element.is("presence", ns::CLIENT)
        && element.attr("from") == Some(from)
        && element.attr("type") == kind
}

/// The defined condition of a stanza error (`<error><service-unavailable/></error>`).
pub fn error_condition(element: &Element) -> Option<String> {
    if element.attr("type") != Some("error") {
        return None;
    }
    element
        .get_child("error", ns::CLIENT)?
        .children()
        .find(|c| c.ns() == ns::STANZAS && c.name() != "text")
        .map(|c| c.name().to_string())
}

/// Whether `element` is an error stanza of `name` with `condition`.
pub fn is_error(element: &Element, name: &str, condition: &str) -> bool {
    element.name() == name
        && element.ns() == ns::CLIENT
        && error_condition(element).as_deref() == Some(condition)
}

/// The condition of a `<stream:error/>`.
pub fn stream_error_condition(element: &Element) -> Option<String> {
    element
        .children()
        .find(|c| c.ns() == ns::STREAM_ERRORS && c.name() != "text")
        .map(|c| c.name().to_string())
}

/// One `<item/>` of a roster result or push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterItem {
    pub jid: String,
    pub subscription: String,
    pub ask: Option<String>,
    pub approved: bool,
    pub name: Option<String>,
}

/// The items of the `<query xmlns='jabber:iq:roster'/>` in an IQ (empty if none).
pub fn roster_items(iq: &Element) -> Vec<RosterItem> {
    let Some(query) = iq.get_child("query", ns::ROSTER) else {
        return Vec::new();
    };
    query
        .children()
        .filter(|c| c.is("item", ns::ROSTER))
        .map(|c| RosterItem {
            jid: c.attr("jid").unwrap_or_default().to_string(),
            subscription: c.attr("subscription").unwrap_or("none").to_string(),
            ask: c.attr("ask").map(str::to_string),
            approved: c.attr("approved") == Some("true"),
            name: c.attr("name").map(str::to_string),
        })
        .collect()
}

/// The roster version of a roster result or push.
pub fn roster_ver(iq: &Element) -> Option<String> {
    iq.get_child("query", ns::ROSTER)?
        .attr("ver")
        .map(str::to_string)
}

/// Whether `element` is a roster push (an IQ set carrying one roster item) for `jid`.
pub fn is_roster_push(element: &Element, jid: &str) -> bool {
    element.is("iq", ns::CLIENT)
        && element.attr("type") == Some("set")
        && roster_items(element).iter().any(|i| i.jid == jid)
}

/// The single item of a roster push.
pub fn pushed_item(element: &Element) -> RosterItem {
    let items = roster_items(element);
    assert_eq!(
        items.len(),
        1,
        "a roster push carries one item: {}",
        show(element)
    );
    items.into_iter().next().unwrap_or_else(|| unreachable!())
}

/// The texts of `<feature var=.../>` in a disco#info result.
pub fn disco_features(iq: &Element) -> Vec<String> {
    iq.get_child("query", ns::DISCO_INFO)
        .map(|q| {
            q.children()
                .filter(|c| c.is("feature", ns::DISCO_INFO))
                .filter_map(|c| c.attr("var").map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The SASL mechanism names in stream features.
pub fn mechanisms(features: &Element) -> Vec<String> {
    features
        .get_child("mechanisms", ns::SASL)
        .map(|m| {
            m.children()
                .filter(|c| c.is("mechanism", ns::SASL))
                .map(Element::text)
                .collect()
        })
        .unwrap_or_default()
}

/// The first of `elements` matching `matches`; panics listing them all if none does.
pub fn find<'a>(
    elements: &'a [Element],
    what: &str,
    matches: impl Fn(&Element) -> bool,
) -> &'a Element {
    elements.iter().find(|e| matches(e)).unwrap_or_else(|| {
        let all: Vec<String> = elements.iter().map(show).collect();
        panic!("no {what} among {all:#?}")
    })
}

/// Whether any of `elements` matches.
pub fn any(elements: &[Element], matches: impl Fn(&Element) -> bool) -> bool {
    elements.iter().any(matches)
}

/// The name of the first child element (e.g. the condition of a SASL `<failure/>`).
pub fn first_child_name(element: &Element) -> String {
    element
        .children()
        .next()
        .map(|c| c.name().to_string())
        .unwrap_or_default()
}
