//! The XEP-0357 elements: `<enable/>` and `<disable/>` read (sections 5 and 6), the publish built
//! (section 7), and a publish's error answer classified (section 7.1). Pure: no I/O.

use crate::xmpp::{Element, ErrorType, Jid, ns, set_attribute};

/// `urn:xmpp:push:summary` (XEP-0357 section 7).
pub const SUMMARY_FORM_TYPE: &str = "urn:xmpp:push:summary";
/// Longest node a client may enable (nodes in the wild are UUIDs or 20-odd random characters).
pub const MAX_NODE_BYTES: usize = 1024;
/// Largest publish-options form, as serialised: it is stored and sent with every publish.
pub const MAX_PUBLISH_OPTIONS_BYTES: usize = 4096;
/// Most fields in a publish-options form (`FORM_TYPE` plus a secret, or ChatSecure's token and
/// endpoint, in practice).
pub const MAX_PUBLISH_OPTIONS_FIELDS: usize = 16;
/// The most of a body put in `last-message-body`, in bytes (cut at a character boundary).
pub const MAX_SUMMARY_BODY_BYTES: usize = 512;

/// Why an `<enable/>` or `<disable/>` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Missing or malformed `jid`, missing `node` on enable, more than one form.
    #[error("{0}")]
    BadRequest(&'static str),
    /// Within the protocol but beyond this server's bounds.
    #[error("{0}")]
    TooLarge(&'static str),
}

/// An `<enable/>` as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enable {
    pub service: String,
    pub node: String,
    /// The data form, serialised, replayed as publish-options.
    pub publish_options: Option<String>,
}

/// A `<disable/>`: one node of a service, or all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disable {
    pub service: String,
    pub node: Option<String>,
}

fn service_of(payload: &Element) -> Result<String, RequestError> {
    let raw = payload
        .attr("jid")
        .ok_or(RequestError::BadRequest("the jid attribute is missing"))?;
    Jid::new(raw)
        .map(|jid| jid.to_string())
        .map_err(|_| RequestError::BadRequest("the jid attribute is not a JID"))
}

/// Reads `<enable jid='…' node='…'>[<x xmlns='jabber:x:data'/>]</enable>` (section 5).
pub fn parse_enable(payload: &Element) -> Result<Enable, RequestError> {
    let service = service_of(payload)?;
    // The schema makes `node` required; ejabberd refuses an enable without it too.
    let node = payload
        .attr("node")
        .filter(|node| !node.is_empty())
        .ok_or(RequestError::BadRequest("the node attribute is missing"))?;
    if node.len() > MAX_NODE_BYTES {
        return Err(RequestError::TooLarge("the node is too long"));
    }
    let mut forms = payload
        .children()
        .filter(|child| child.is("x", ns::DATA_FORMS));
    let form = forms.next();
    if forms.next().is_some() {
        return Err(RequestError::BadRequest("more than one data form"));
    }
    let publish_options = match form {
        None => None,
        Some(form) => {
            if form.children().count() > MAX_PUBLISH_OPTIONS_FIELDS {
                return Err(RequestError::TooLarge(
                    "the publish-options form is too large",
                ));
            }
            let xml = String::from(form);
            if xml.len() > MAX_PUBLISH_OPTIONS_BYTES {
                return Err(RequestError::TooLarge(
                    "the publish-options form is too large",
                ));
            }
            Some(xml)
        }
    };
    Ok(Enable {
        service,
        node: node.to_string(),
        publish_options,
    })
}

/// Reads `<disable jid='…' [node='…']/>` (section 6).
pub fn parse_disable(payload: &Element) -> Result<Disable, RequestError> {
    Ok(Disable {
        service: service_of(payload)?,
        node: payload
            .attr("node")
            .filter(|node| !node.is_empty())
            .map(str::to_string),
    })
}

/// The value of the field `var` in a data form, if it has one.
pub fn form_value(form: &Element, var: &str) -> Option<String> {
    form.children()
        .find(|field| field.is("field", ns::DATA_FORMS) && field.attr("var") == Some(var))
        .and_then(|field| field.get_child("value", ns::DATA_FORMS))
        .map(Element::text)
}

/// ChatSecure's publish-options (`token` and `endpoint`: what ChatSecure iOS sends, for its relay
/// reached over HTTP as RubDub did), if that is what `publish_options` is.
pub fn chatsecure_options(publish_options: &str) -> Option<(String, String)> {
    let form: Element = publish_options.parse().ok()?;
    Some((form_value(&form, "token")?, form_value(&form, "endpoint")?))
}

/// What goes into the summary form, after the configuration's say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub message_count: Option<u32>,
    pub last_sender: Option<String>,
    pub last_body: Option<String>,
}

fn field(var: &str, value: &str) -> Element {
    let mut field = Element::builder("field", ns::DATA_FORMS)
        .append(
            Element::builder("value", ns::DATA_FORMS)
                .append(value)
                .build(),
        )
        .build();
    set_attribute(&mut field, "var", var);
    field
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn truncated(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The publish of section 7 from `account` (a bare JID) to `service`, with the summary form and the
/// stored publish-options replayed as the client gave them. The `id` is set by whoever sends it.
pub fn publish(
    account: &str,
    service: &str,
    node: &str,
    summary: &Summary,
    publish_options: Option<&str>,
) -> Element {
    let mut form = Element::builder("x", ns::DATA_FORMS)
        .append(field("FORM_TYPE", SUMMARY_FORM_TYPE))
        .build();
    set_attribute(&mut form, "type", "submit");
    if let Some(count) = summary.message_count {
        form.append_child(field("message-count", &count.to_string()));
    }
    if let Some(sender) = &summary.last_sender {
        form.append_child(field("last-message-sender", sender));
    }
    if let Some(body) = &summary.last_body {
        form.append_child(field(
            "last-message-body",
            truncated(body, MAX_SUMMARY_BODY_BYTES),
        ));
    }
    let notification = Element::builder("notification", ns::PUSH)
        .append(form)
        .build();
    let item = Element::builder("item", ns::PUBSUB)
        .append(notification)
        .build();
    let mut publish = Element::builder("publish", ns::PUBSUB).append(item).build();
    set_attribute(&mut publish, "node", node);
    let mut pubsub = Element::builder("pubsub", ns::PUBSUB)
        .append(publish)
        .build();
    if let Some(options) = publish_options.and_then(|xml| xml.parse::<Element>().ok()) {
        pubsub.append_child(
            Element::builder("publish-options", ns::PUBSUB)
                .append(options)
                .build(),
        );
    }
    let mut iq = Element::builder("iq", ns::CLIENT).append(pubsub).build();
    for (name, value) in [("type", "set"), ("from", account), ("to", service)] {
        set_attribute(&mut iq, name, value);
    }
    iq
}

/// What a publish came to, and so what becomes of the registration (section 7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted: the count of failures in a row starts again.
    Delivered,
    /// A transient failure (`type='wait'`, an overloaded server, an HTTP 429 or 5xx): try again
    /// later; not counted against the registration.
    Retry,
    /// Any other failure (no answer, an error of another kind): counted, and the registration is
    /// disabled after a few in a row.
    Failed,
    /// The app server says the registration is gone (`item-not-found`, `forbidden`, HTTP 404 or
    /// 410): disabled at once.
    Gone,
}

/// Classifies an IQ answer: a result, or an error of `error_type` with `condition`.
pub fn classify_answer(answer: &Element) -> Outcome {
    match answer.attr("type") {
        Some("result") => Outcome::Delivered,
        _ => {
            let error = answer.children().find(|child| child.name() == "error");
            let error_type = error
                .and_then(|e| e.attr("type"))
                .and_then(|t| t.parse::<ErrorType>().ok());
            let condition = error.and_then(|e| {
                e.children()
                    .find(|c| c.ns() == ns::STANZAS)
                    .map(|c| c.name().to_string())
            });
            classify_error(error_type, condition.as_deref())
        }
    }
}

/// Section 7.1: an error disables the registration, but a transient one may be let pass; this
/// server retries `wait`, drops a registration at once on `item-not-found` or `forbidden` (how app
/// servers say a node or its secret is gone), and counts the rest.
pub fn classify_error(error_type: Option<ErrorType>, condition: Option<&str>) -> Outcome {
    match (error_type, condition) {
        (Some(ErrorType::Wait), _) => Outcome::Retry,
        (_, Some("item-not-found" | "forbidden")) => Outcome::Gone,
        _ => Outcome::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Element {
        xml.parse().expect("xml")
    }

    const OPTIONS: &str = "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var='secret'><value>eruio234vzxc2kla-91</value></field></x>";

    #[test]
    fn enable_and_disable_are_read() {
        let enable = parse_enable(&parse(&format!(
            "<enable xmlns='urn:xmpp:push:0' jid='push-5.client.example' node='yxs32uqsflafdk3iuqo'>{OPTIONS}</enable>"
        )))
        .expect("enable");
        assert_eq!(enable.service, "push-5.client.example");
        assert_eq!(enable.node, "yxs32uqsflafdk3iuqo");
        let options = enable.publish_options.expect("options");
        assert_eq!(
            form_value(&parse(&options), "secret").as_deref(),
            Some("eruio234vzxc2kla-91")
        );
        let bare = parse_enable(&parse(
            "<enable xmlns='urn:xmpp:push:0' jid='push.example' node='n'/>",
        ))
        .expect("enable without form");
        assert_eq!(bare.publish_options, None);

        assert_eq!(
            parse_disable(&parse(
                "<disable xmlns='urn:xmpp:push:0' jid='push.example'/>"
            )),
            Ok(Disable {
                service: "push.example".into(),
                node: None
            })
        );
        assert_eq!(
            parse_disable(&parse(
                "<disable xmlns='urn:xmpp:push:0' jid='push.example' node='n'/>"
            ))
            .expect("disable")
            .node
            .as_deref(),
            Some("n")
        );
    }

    #[test]
    fn bad_and_oversized_requests_are_refused() {
        let long_node = "n".repeat(MAX_NODE_BYTES + 1);
        let many_fields =
            "<field var='f'><value>v</value></field>".repeat(MAX_PUBLISH_OPTIONS_FIELDS);
        let big_value = "v".repeat(MAX_PUBLISH_OPTIONS_BYTES);
        let cases = [
            (
                "<enable xmlns='urn:xmpp:push:0' node='n'/>".to_string(),
                "missing jid",
            ),
            (
                "<enable xmlns='urn:xmpp:push:0' jid='push.example'/>".to_string(),
                "missing node",
            ),
            (
                "<enable xmlns='urn:xmpp:push:0' jid='a@b@c' node='n'/>".to_string(),
                "bad jid",
            ),
            (
                format!(
                    "<enable xmlns='urn:xmpp:push:0' jid='p.example' node='n'>{OPTIONS}{OPTIONS}</enable>"
                ),
                "two forms",
            ),
            (
                format!("<enable xmlns='urn:xmpp:push:0' jid='p.example' node='{long_node}'/>"),
                "long node",
            ),
            (
                format!(
                    "<enable xmlns='urn:xmpp:push:0' jid='p.example' node='n'><x xmlns='jabber:x:data'><field var='FORM_TYPE'/>{many_fields}</x></enable>"
                ),
                "many fields",
            ),
            (
                format!(
                    "<enable xmlns='urn:xmpp:push:0' jid='p.example' node='n'><x xmlns='jabber:x:data'><field var='secret'><value>{big_value}</value></field></x></enable>"
                ),
                "big form",
            ),
        ];
        for (xml, what) in cases {
            assert!(parse_enable(&parse(&xml)).is_err(), "{what}");
        }
        assert!(parse_disable(&parse("<disable xmlns='urn:xmpp:push:0'/>")).is_err());
    }

    #[test]
    fn chatsecure_options_are_recognised() {
        let chatsecure = "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var='token'><value>89587e09</value></field><field var='endpoint'><value>https://push.chatsecure.org/api/v1/messages/</value></field></x>";
        assert_eq!(
            chatsecure_options(chatsecure),
            Some((
                "89587e09".to_string(),
                "https://push.chatsecure.org/api/v1/messages/".to_string()
            ))
        );
        assert_eq!(chatsecure_options(OPTIONS), None);
    }

    #[test]
    fn the_publish_carries_the_summary_the_configuration_allows_and_the_options() {
        let empty = publish(
            "alice@example.org",
            "push.example",
            "node1",
            &Summary::default(),
            Some(OPTIONS),
        );
        assert_eq!(empty.attr("from"), Some("alice@example.org"));
        assert_eq!(empty.attr("to"), Some("push.example"));
        assert_eq!(empty.attr("type"), Some("set"));
        let pubsub = empty.get_child("pubsub", ns::PUBSUB).expect("pubsub");
        let publish_element = pubsub.get_child("publish", ns::PUBSUB).expect("publish");
        assert_eq!(publish_element.attr("node"), Some("node1"));
        let form = publish_element
            .get_child("item", ns::PUBSUB)
            .and_then(|item| item.get_child("notification", ns::PUSH))
            .and_then(|n| n.get_child("x", ns::DATA_FORMS))
            .expect("summary form");
        assert_eq!(form.attr("type"), Some("submit"));
        assert_eq!(
            form_value(form, "FORM_TYPE").as_deref(),
            Some(SUMMARY_FORM_TYPE)
        );
        assert_eq!(form.children().count(), 1, "content-free: FORM_TYPE only");
        let options = pubsub
            .get_child("publish-options", ns::PUBSUB)
            .and_then(|o| o.get_child("x", ns::DATA_FORMS))
            .expect("publish-options");
        assert_eq!(
            form_value(options, "secret").as_deref(),
            Some("eruio234vzxc2kla-91")
        );

        let long_body = "é".repeat(MAX_SUMMARY_BODY_BYTES);
        let full = publish(
            "alice@example.org",
            "push.example",
            "node1",
            &Summary {
                message_count: Some(3),
                last_sender: Some("juliet@capulet.example".into()),
                last_body: Some(long_body),
            },
            None,
        );
        let pubsub = full.get_child("pubsub", ns::PUBSUB).expect("pubsub");
        assert!(pubsub.get_child("publish-options", ns::PUBSUB).is_none());
        let form = pubsub
            .get_child("publish", ns::PUBSUB)
            .and_then(|p| p.get_child("item", ns::PUBSUB))
            .and_then(|i| i.get_child("notification", ns::PUSH))
            .and_then(|n| n.get_child("x", ns::DATA_FORMS))
            .expect("summary form");
        assert_eq!(form_value(form, "message-count").as_deref(), Some("3"));
        assert_eq!(
            form_value(form, "last-message-sender").as_deref(),
            Some("juliet@capulet.example")
        );
        let body = form_value(form, "last-message-body").expect("body");
        assert!(body.len() <= MAX_SUMMARY_BODY_BYTES && body.chars().all(|c| c == 'é'));
    }

    #[test]
    fn answers_are_classified() {
        let answer = |xml: &str| classify_answer(&parse(xml));
        assert_eq!(
            answer("<iq xmlns='jabber:client' type='result' id='1'/>"),
            Outcome::Delivered
        );
        let error = |kind: &str, condition: &str| {
            answer(&format!(
                "<iq xmlns='jabber:client' type='error' id='1'><error type='{kind}'><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
            ))
        };
        assert_eq!(error("wait", "internal-server-error"), Outcome::Retry);
        assert_eq!(error("wait", "resource-constraint"), Outcome::Retry);
        assert_eq!(error("cancel", "item-not-found"), Outcome::Gone);
        assert_eq!(error("auth", "forbidden"), Outcome::Gone);
        assert_eq!(error("cancel", "service-unavailable"), Outcome::Failed);
        assert_eq!(error("cancel", "remote-server-not-found"), Outcome::Failed);
        assert_eq!(error("modify", "bad-request"), Outcome::Failed);
        assert_eq!(
            answer("<iq xmlns='jabber:client' type='error' id='1'/>"),
            Outcome::Failed
        );
    }
}
