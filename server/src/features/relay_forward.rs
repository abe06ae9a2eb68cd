//! Relay-to-relay forwarding over server-to-server streams (Herald's own protocol,
//! `urn:herald:relay-forward:0`, documented in relay/README.md): the hosted relay forwards a
//! whitelist token issued by a peer relay to that relay's push service JID as an IQ set from this
//! relay's federation domain, instead of a signed HTTP post. The peer's s2s layer authenticates that
//! domain (RFC 6120 section 13.7: SASL EXTERNAL per XEP-0178, or XEP-0220 dialback), so it is the
//! sender the token's binding is checked against, as the signature's key id is over HTTP.
//!
//! ```xml
//! <iq type='set' from='a.example' to='push.b.example' id='...'>
//!   <forward xmlns='urn:herald:relay-forward:0' priority='high'>
//!     <token>whitelist token</token>
//!     <data>opaque app data (optional)</data>
//!   </forward>
//! </iq>
//! ```
//!
//! Answers (RFC 6120 section 8.3.3 conditions) and what the forwarding relay's outbox does with them:
//! result = sent; `item-not-found` = the token is gone; `forbidden`/`not-authorized` (a token bound
//! to another sender) and `bad-request` = rejected; `type='wait'` (`resource-constraint` when rate
//! limited) = retried; `remote-server-not-found`, `remote-server-timeout`, `service-unavailable`,
//! `feature-not-implemented` or no answer in time = sent over signed HTTP instead.
//!
//! Whether a peer offers it: its disco#info (XEP-0030) lists the namespace as a feature.

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use herald_relay::backends::SendOutcome;
// The longest token and data a forward may carry are the relay's own (ChatSecure's 200 and 100
// characters), checked before anything else is done with them.
use herald_relay::{MAX_DATA_CHARS, MAX_TOKEN_CHARS, Priority, XmppForward, XmppForwarding};

use super::iq::{IqAnswer, IqError};
use crate::router::Router;
use crate::router::pending_iqs::IqRequestError;
use crate::xmpp::{DefinedCondition, Element, ErrorType, Jid, ns, set_attribute};

/// One forward as carried on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub token: String,
    pub priority: Priority,
    pub data: Option<String>,
}

/// The `<forward/>` payload of `forward`.
pub fn forward_payload(forward: &Forward) -> Element {
    let token = Element::builder("token", ns::RELAY_FORWARD)
        .append(forward.token.as_str())
        .build();
    let mut payload = Element::builder("forward", ns::RELAY_FORWARD)
        .append(token)
        .build();
    set_attribute(&mut payload, "priority", forward.priority.as_str());
    if let Some(data) = &forward.data {
        payload.append_child(
            Element::builder("data", ns::RELAY_FORWARD)
                .append(data.as_str())
                .build(),
        );
    }
    payload
}

/// Reads a `<forward/>` payload. Errors: `bad-request` for a missing, empty or overlong token,
/// overlong data, or a priority other than `high` or `low` (missing means low, as over HTTP).
pub fn parse_forward(payload: &Element) -> Result<Forward, IqError> {
    let bad = |text: &str| IqError::with_text(DefinedCondition::BadRequest, text);
    let token = payload
        .get_child("token", ns::RELAY_FORWARD)
        .map(Element::text)
        .filter(|t| !t.is_empty() && t.chars().count() <= MAX_TOKEN_CHARS)
        .ok_or_else(|| bad("token: 1 to 200 characters"))?;
    let priority = match payload.attr("priority") {
        None | Some("low") => Priority::Low,
        Some("high") => Priority::High,
        Some(_) => return Err(bad("priority: high or low")),
    };
    let data = payload
        .get_child("data", ns::RELAY_FORWARD)
        .map(Element::text);
    if data
        .as_ref()
        .is_some_and(|d| d.chars().count() > MAX_DATA_CHARS)
    {
        return Err(bad("data: at most 100 characters"));
    }
    Ok(Forward {
        token,
        priority,
        data,
    })
}

/// What the forwarding relay makes of the peer's answer (see the module documentation).
pub fn classify_answer(answer: &Element) -> XmppForward {
    if answer.attr("type") == Some("result") {
        return XmppForward::Answered(SendOutcome::Sent);
    }
    let error = answer.children().find(|child| child.name() == "error");
    let error_type = error
        .and_then(|e| e.attr("type"))
        .and_then(|t| t.parse::<ErrorType>().ok());
    let condition = error
        .and_then(|e| e.children().find(|c| c.ns() == ns::STANZAS))
        .map(|c| c.name().to_string())
        .unwrap_or_default();
    let reason = format!("peer answered {condition}");
    match (condition.as_str(), error_type) {
        (
            "remote-server-not-found"
            | "remote-server-timeout"
            | "service-unavailable"
            | "feature-not-implemented",
            _,
        ) => XmppForward::Unavailable(reason),
        ("item-not-found", _) => XmppForward::Answered(SendOutcome::Gone(reason)),
        ("resource-constraint", _) | (_, Some(ErrorType::Wait)) => {
            XmppForward::Answered(SendOutcome::Retry {
                after: None,
                reason,
            })
        }
        _ => XmppForward::Answered(SendOutcome::Rejected(reason)),
    }
}

/// The peer side: accepts a `<forward/>` from `from`, which must be a server (a bare domain, as the
/// s2s layer authenticated it; a user of that server could otherwise pass a domain binding), through
/// the relay's forward path with that domain as the sender.
pub async fn accept(relay: &herald_relay::Relay, from: &Jid, payload: &Element) -> IqAnswer {
    if !relay.accepts_xmpp_forwards() {
        return Err(IqError::new(DefinedCondition::ServiceUnavailable));
    }
    if from.node().is_some() || from.resource().is_some() {
        return Err(IqError::with_text(
            DefinedCondition::Forbidden,
            "forwards come from a relay's server domain",
        ));
    }
    let forward = parse_forward(payload)?;
    relay
        .accept_xmpp_forward(
            from.domain().as_str(),
            forward.token,
            forward.priority,
            forward.data,
        )
        .await
        .map(|_| None)
        .map_err(super::app_server::relay_refusal)
}

/// The transport the hosted relay forwards through: IQs from `from` (this relay's federation domain,
/// an XMPP domain this server hosts) through the router, which sends them over s2s.
pub struct S2sForwarding {
    /// Weak: the router holds the push service, which holds the relay, which holds this.
    router: Weak<Router>,
    from: String,
    timeout: Duration,
}

impl S2sForwarding {
    /// Forwards from `from`, waiting at most `timeout` for each answer.
    pub fn new(router: &Arc<Router>, from: &str, timeout: Duration) -> S2sForwarding {
        S2sForwarding {
            router: Arc::downgrade(router),
            from: from.to_string(),
            timeout,
        }
    }

    fn iq(&self, kind: &str, to: &str, payload: Element) -> Element {
        let mut iq = Element::builder("iq", ns::CLIENT).append(payload).build();
        for (name, value) in [("type", kind), ("from", &self.from), ("to", to)] {
            set_attribute(&mut iq, name, value);
        }
        iq
    }

    /// Sends `iq` and waits for its answer.
    async fn request(&self, iq: Element) -> Result<Element, String> {
        let Some(router) = self.router.upgrade() else {
            return Err("server shutting down".into());
        };
        router
            .pending_iqs
            .request(&router, iq, self.timeout)
            .await
            .map(|answer| answer.element)
            .map_err(|error: IqRequestError| error.to_string())
    }
}

#[async_trait]
impl XmppForwarding for S2sForwarding {
    async fn offers_forwarding(&self, peer_jid: &str) -> bool {
        if peer_jid.parse::<Jid>().is_err() {
            return false;
        }
        let query = Element::builder("query", ns::DISCO_INFO).build();
        let Ok(answer) = self.request(self.iq("get", peer_jid, query)).await else {
            return false;
        };
        answer.attr("type") == Some("result")
            && answer
                .get_child("query", ns::DISCO_INFO)
                .is_some_and(|query| {
                    query.children().any(|feature| {
                        feature.is("feature", ns::DISCO_INFO)
                            && feature.attr("var") == Some(ns::RELAY_FORWARD)
                    })
                })
    }

    async fn forward(
        &self,
        peer_jid: &str,
        token: &str,
        priority: Priority,
        data: Option<&str>,
    ) -> XmppForward {
        let payload = forward_payload(&Forward {
            token: token.to_string(),
            priority,
            data: data.map(str::to_string),
        });
        match self.request(self.iq("set", peer_jid, payload)).await {
            Ok(answer) => classify_answer(&answer),
            Err(reason) => XmppForward::Unavailable(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Element {
        xml.parse().expect("xml")
    }

    #[test]
    fn a_forward_round_trips() {
        for forward in [
            Forward {
                token: "t0k3n".into(),
                priority: Priority::High,
                data: Some("opaque <&> data".into()),
            },
            Forward {
                token: "t".repeat(200),
                priority: Priority::Low,
                data: None,
            },
        ] {
            let xml = String::from(&forward_payload(&forward));
            assert_eq!(parse_forward(&parse(&xml)).expect(&xml), forward);
        }
        let xml = String::from(&forward_payload(&Forward {
            token: "t".into(),
            priority: Priority::High,
            data: None,
        }));
        assert_eq!(
            xml,
            "<forward xmlns='urn:herald:relay-forward:0' priority='high'><token>t</token></forward>"
        );
    }

    #[test]
    fn malformed_forwards_are_bad_requests() {
        let ns = "xmlns='urn:herald:relay-forward:0'";
        let long_token = "t".repeat(201);
        let long_data = "d".repeat(101);
        for xml in [
            format!("<forward {ns}/>"),
            format!("<forward {ns}><token/></forward>"),
            format!("<forward {ns}><token xmlns='urn:other'>t</token></forward>"),
            format!("<forward {ns}><token>{long_token}</token></forward>"),
            format!("<forward {ns}><token>t</token><data>{long_data}</data></forward>"),
            format!("<forward {ns} priority='urgent'><token>t</token></forward>"),
        ] {
            let error = parse_forward(&parse(&xml)).expect_err(&xml);
            assert_eq!(error.condition, DefinedCondition::BadRequest, "{xml}");
        }
        // No priority is low, as over HTTP.
        let forward = parse_forward(&parse(&format!("<forward {ns}><token>t</token></forward>")));
        assert_eq!(forward.expect("forward").priority, Priority::Low);
    }

    fn error(kind: &str, condition: &str) -> Element {
        parse(&format!(
            "<iq xmlns='jabber:client' type='error' id='x'><error type='{kind}'>\
               <{condition} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        ))
    }

    #[test]
    fn answers_map_to_the_failure_classes() {
        let result = parse("<iq xmlns='jabber:client' type='result' id='x'/>");
        assert_eq!(
            classify_answer(&result),
            XmppForward::Answered(SendOutcome::Sent)
        );
        assert!(matches!(
            classify_answer(&error("cancel", "item-not-found")),
            XmppForward::Answered(SendOutcome::Gone(_))
        ));
        for (kind, condition) in [
            ("auth", "forbidden"),
            ("auth", "not-authorized"),
            ("modify", "bad-request"),
        ] {
            assert!(
                matches!(
                    classify_answer(&error(kind, condition)),
                    XmppForward::Answered(SendOutcome::Rejected(_))
                ),
                "{condition}"
            );
        }
        for (kind, condition) in [
            ("wait", "resource-constraint"),
            ("wait", "internal-server-error"),
        ] {
            assert!(
                matches!(
                    classify_answer(&error(kind, condition)),
                    XmppForward::Answered(SendOutcome::Retry { .. })
                ),
                "{condition}"
            );
        }
        for (kind, condition) in [
            ("cancel", "remote-server-not-found"),
            ("wait", "remote-server-timeout"),
            ("cancel", "service-unavailable"),
            ("cancel", "feature-not-implemented"),
        ] {
            assert!(
                matches!(
                    classify_answer(&error(kind, condition)),
                    XmppForward::Unavailable(_)
                ),
                "{condition}"
            );
        }
    }
}
