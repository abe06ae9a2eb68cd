//! Stanza helpers shared by every stream (RFC 6120 section 8): error replies (section 8.3), the error
//! type paired with each condition (section 8.3.3), attribute stamping, and the one rule for moving a
//! stanza between stream namespaces (section 4.8.3; XEP-0114 section 3 for components).
//!
//! The stanza model itself is [`super::Envelope`]: the element as received plus its parsed addressing.

use std::collections::BTreeMap;

use xmpp_parsers::minidom::Node;
use xmpp_parsers::minidom::rxml::{Namespace, NcName};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use super::{Element, ns};

fn is_content_ns(namespace: &str) -> bool {
    matches!(namespace, ns::CLIENT | ns::SERVER | ns::COMPONENT_ACCEPT)
}

/// Move `element` and its descendants that are in `from` (an unbroken chain from the top) to `to`.
/// Descendants in other namespaces, and anything below them, are left alone: a forwarded
/// `<message xmlns='jabber:client'/>` inside `<forwarded/>` keeps its own namespace.
pub fn renamespace(mut element: Element, from: &str, to: &str) -> Element {
    if from == to || element.ns() != from {
        return element;
    }
    let mut out = Element::bare(element.name(), to);
    for ((attr_ns, name), value) in element.attrs() {
        out.set_attr(attr_ns.clone(), name.clone(), value.clone());
    }
    for node in element.take_nodes() {
        match node {
            Node::Element(child) => {
                out.append_child(renamespace(child, from, to));
            }
            Node::Text(text) => out.append_text_node(text),
        }
    }
    out
}

/// The error reply to a stanza (RFC 6120 section 8.3.1): same name and id, `to` and `from` swapped,
/// `type='error'`, and an `<error/>` child with the condition and optional text. The original
/// payload is not echoed back (the RFC allows either).
///
/// `None` if `original` is itself an error (RFC 6120 section 8.3.1: an error is never answered with
/// an error) or is not a stanza. Whether to answer IQ results is the caller's rule.
pub fn error_reply(
    original: &Element,
    error_type: ErrorType,
    condition: DefinedCondition,
    text: Option<&str>,
) -> Option<Element> {
    let namespace = original.ns();
    if !is_content_ns(&namespace)
        || !matches!(original.name(), "message" | "presence" | "iq")
        || original.attr("type") == Some("error")
    {
        return None;
    }
    let mut reply = Element::bare(original.name(), namespace.as_str());
    let mut set = |name: &str, value: &str| {
        if let Ok(name) = NcName::try_from(name) {
            reply.set_attr(Namespace::NONE, name, value.to_owned());
        }
    };
    if let Some(id) = original.attr("id") {
        set("id", id);
    }
    if let Some(from) = original.attr("from") {
        set("to", from);
    }
    if let Some(to) = original.attr("to") {
        set("from", to);
    }
    set("type", "error");
    let mut texts = BTreeMap::new();
    if let Some(text) = text {
        texts.insert("en".to_owned(), text.to_owned());
    }
    let error = StanzaError {
        type_: error_type,
        by: None,
        defined_condition: condition,
        texts,
        other: None,
    };
    reply.append_child(renamespace(Element::from(error), ns::CLIENT, &namespace));
    Some(reply)
}

/// The error type RFC 6120 section 8.3.3 pairs with each condition we send.
pub fn error_type_for(condition: &DefinedCondition) -> ErrorType {
    match condition {
        DefinedCondition::BadRequest
        | DefinedCondition::JidMalformed
        | DefinedCondition::NotAcceptable
        | DefinedCondition::PolicyViolation => ErrorType::Modify,
        DefinedCondition::NotAuthorized
        | DefinedCondition::Forbidden
        | DefinedCondition::RegistrationRequired
        | DefinedCondition::SubscriptionRequired => ErrorType::Auth,
        DefinedCondition::ResourceConstraint
        | DefinedCondition::RemoteServerTimeout
        | DefinedCondition::InternalServerError => ErrorType::Wait,
        _ => ErrorType::Cancel,
    }
}

/// Sets an attribute with no namespace on `element`.
pub fn set_attribute(element: &mut Element, name: &str, value: &str) {
    if let Ok(name) = NcName::try_from(name) {
        element
            .attrs_mut()
            .insert(Namespace::NONE, name, value.to_string());
    }
}

/// Removes an attribute with no namespace from `element`.
pub fn remove_attribute(element: &mut Element, name: &str) {
    element.attrs_mut().remove(&Namespace::NONE, name);
}

/// Moves a stanza from `jabber:client` into `jabber:component:accept` (XEP-0114 section 3), with the
/// children that inherited the stream namespace ([`renamespace`]).
pub fn to_component_namespace(element: Element) -> Element {
    renamespace(element, ns::CLIENT, ns::COMPONENT_ACCEPT)
}

/// Moves a stanza received from a component into `jabber:client`, the namespace routing works in.
pub fn to_client_namespace(element: Element) -> Element {
    renamespace(element, ns::COMPONENT_ACCEPT, ns::CLIENT)
}

/// A copy of `element` without its children `name` in `namespace`, or `None` when it has none (so the
/// caller keeps the original without copying it).
pub fn without_child(element: &Element, name: &str, namespace: &str) -> Option<Element> {
    element.get_child(name, namespace)?;
    let mut copy = element.clone();
    while copy.remove_child(name, namespace).is_some() {}
    Some(copy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_namespace_round_trip() {
        let original: Element =
            "<message xmlns='jabber:client' to='a@b'><body>x</body><x xmlns='urn:y'/></message>"
                .parse()
                .unwrap();
        let component = to_component_namespace(original.clone());
        assert!(component.has_ns(ns::COMPONENT_ACCEPT));
        assert!(component.get_child("body", ns::COMPONENT_ACCEPT).is_some());
        assert!(component.get_child("x", "urn:y").is_some());
        assert_eq!(to_client_namespace(component), original);
    }

    /// The one renaming rule: only the unbroken chain from the top inherited the stream namespace; a
    /// `jabber:client` message forwarded inside another namespace (XEP-0297) is payload and keeps its own.
    #[test]
    fn renaming_stops_at_a_foreign_namespace() {
        let original: Element = "<message xmlns='jabber:client' to='a@b'><body>x</body>\
             <forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client'><body>y</body>\
             </message></forwarded></message>"
            .parse()
            .unwrap();
        let component = to_component_namespace(original);
        let inner = component
            .get_child("forwarded", "urn:xmpp:forward:0")
            .and_then(|f| f.get_child("message", ns::CLIENT));
        assert!(inner.is_some(), "{}", String::from(&component));
        assert!(component.get_child("body", ns::COMPONENT_ACCEPT).is_some());
    }

    #[test]
    fn without_child_removes_every_such_child_and_copies_only_when_there_is_one() {
        let message: Element = "<message xmlns='jabber:client'><body>hi</body>\
             <private xmlns='urn:xmpp:carbons:2'/><private xmlns='urn:xmpp:carbons:2'/></message>"
            .parse()
            .unwrap();
        let stripped = without_child(&message, "private", ns::CARBONS).expect("had one");
        assert_eq!(stripped.children().count(), 1);
        assert!(without_child(&stripped, "private", ns::CARBONS).is_none());
    }
}
