//! XEP-0357: Push Notifications, the push service side (the "App Server" of section 2.2): the hosted
//! relay answers as a pubsub push service on its own domain (`[relay] pubsub_jid`, attached to the
//! router as an in-process service). It covers section 3 (the push service; credentials in
//! publish-options rather than trust in JIDs, 3.2), section 4.2 (discovery: identity `pubsub`/`push`)
//! and section 7 (a publish to a node, checked against the `secret` publish-option, wakes the
//! registered device; 7.1, publish errors), plus the registration commands of
//! `app_server_commands.rs` (XEP-0050, as Conversations' app server p2 offers them). A publish
//! carrying ChatSecure's `token` (and `endpoint`) publish-options instead of a `secret` submits that
//! relay whitelist token. Publishers may be local or remote servers (over s2s, their domain
//! authenticated by the s2s layer): the publisher's address is the sender a token's binding (a node's
//! is its account's domain) is checked against, so a token bound to `remote.example` is usable by
//! that server only.
//!
//! Errors are chosen for what publishing servers do with them (XEP-0357 section 7.1: an IQ error
//! disables the JID+node): `cancel/item-not-found` for a node that is unknown or gone and
//! `auth/forbidden` for a wrong or missing secret, so the publisher stops; `wait` for what passes
//! (storage failure, rate limit), which ejabberd and Prosody do not count against the registration.

use std::sync::Arc;

use async_trait::async_trait;
use herald_relay::{NodeError, Notification, Priority, Publisher, Relay, RelayError};

use super::iq::{self, IqAnswer, IqError};
use super::{app_server_commands, relay_forward};
use crate::router::routes::InProcessService;
use crate::router::{Bounce, Delivery, Router};
use crate::xmpp::{
    DefinedCondition, Element, Envelope, Jid, MessageKind, StanzaKind, ns, set_attribute,
};

/// The FORM_TYPE of publish-options (XEP-0060 section 7.1.5).
const PUBLISH_OPTIONS_FORM: &str = "http://jabber.org/protocol/pubsub#publish-options";

/// The push service of the hosted relay, for one domain.
pub struct AppServer {
    relay: Relay,
    domain: String,
}

impl AppServer {
    /// The service for `domain`, waking devices through `relay`.
    pub fn new(relay: Relay, domain: &str) -> AppServer {
        AppServer {
            relay,
            domain: domain.to_string(),
        }
    }

    async fn answer(
        &self,
        router: &Arc<Router>,
        from: &Jid,
        payload: &Element,
        is_set: bool,
    ) -> IqAnswer {
        match (payload.ns().as_str(), payload.name(), is_set) {
            (ns::DISCO_INFO, "query", false) => {
                disco_info(payload, self.relay.accepts_xmpp_forwards())
            }
            (ns::DISCO_ITEMS, "query", false) => Ok(Some(app_server_commands::disco_items(
                payload.attr("node"),
                &self.domain,
            )?)),
            (ns::PING, "ping", false) => Ok(None),
            (ns::PUBSUB, "pubsub", true) => self.publish(router, from, payload).await,
            (ns::RELAY_FORWARD, "forward", true) => {
                relay_forward::accept(&self.relay, from, payload).await
            }
            (ns::COMMANDS, "command", true) => {
                app_server_commands::execute(&self.relay, router, from, payload, &self.domain).await
            }
            _ => Err(IqError::new(DefinedCondition::ServiceUnavailable)),
        }
    }

    /// XEP-0357 section 7: wakes the node's device when the secret is right; or, for a publish
    /// carrying a whitelist `token` (ChatSecure's publish-options), submits that token. `from` is
    /// the publisher as the router delivers it: a local session's JID, or a remote server's domain
    /// the s2s layer authenticated (RFC 6120 section 13.7; XEP-0220 or SASL EXTERNAL), which is the
    /// sender a token's binding is checked against.
    async fn publish(&self, router: &Arc<Router>, from: &Jid, pubsub: &Element) -> IqAnswer {
        let publish = parse_publish(pubsub)?;
        let Some(secret) = publish.secret else {
            if let Some(token) = publish.token {
                return self.submit_token(from, token, publish.endpoint).await;
            }
            return Err(IqError::with_text(
                DefinedCondition::Forbidden,
                "a secret publish-option is required",
            ));
        };
        let from_text = from.to_string();
        // The server of one of our domains publishing for its user is not metered per sender (the
        // node and the account are); anyone else is.
        let is_hosting_server = from.node().is_none()
            && from.resource().is_none()
            && router
                .context
                .config
                .domains
                .iter()
                .any(|d| d == from.domain().as_str());
        let publisher = if is_hosting_server {
            Publisher::HostingServer(&from_text)
        } else {
            Publisher::Other(&from_text)
        };
        match self
            .relay
            .publish_to_node(&publish.node, &secret, publisher)
            .await
        {
            Ok(_) => Ok(None),
            Err(NodeError::UnknownNode) => Err(IqError::new(DefinedCondition::ItemNotFound)),
            Err(NodeError::WrongSecret) => Err(IqError::new(DefinedCondition::Forbidden)),
            Err(NodeError::RateLimited) => Err(IqError::with_text(
                DefinedCondition::ResourceConstraint,
                "rate limited, try later",
            )),
            Err(NodeError::Relay(error)) => Err(relay_refusal(error)),
        }
    }

    /// A ChatSecure-style publish (publish-options `token` and `endpoint`): the relay's token path,
    /// with the publisher as the sender its binding is checked against.
    async fn submit_token(&self, from: &Jid, token: String, endpoint: Option<String>) -> IqAnswer {
        let notification = Notification {
            token,
            endpoint,
            priority: Priority::High,
            data: None,
            sender: Some(from.to_string()),
            origin: None,
        };
        match self.relay.submit(notification).await {
            Ok(_) => Ok(None),
            Err(error) => Err(relay_refusal(error)),
        }
    }
}

/// The publish error for a relay refusal (XEP-0357 section 7.1, XEP-0060 section 7.1.3): an unknown
/// token disables the registration (`cancel/item-not-found`), a token bound to another sender or a
/// relay not federated with is `auth/forbidden`, what passes is `wait`.
pub(crate) fn relay_refusal(error: RelayError) -> IqError {
    match error {
        RelayError::UnknownToken => IqError::new(DefinedCondition::ItemNotFound),
        RelayError::SenderNotAllowed => IqError::with_text(
            DefinedCondition::Forbidden,
            "this token is bound to another sender",
        ),
        RelayError::ForwardNotAllowed => IqError::with_text(
            DefinedCondition::Forbidden,
            "forwarding to that relay is not allowed",
        ),
        RelayError::RateLimited(_) => IqError::with_text(
            DefinedCondition::ResourceConstraint,
            "rate limited, try later",
        ),
        RelayError::BadInput(text) => IqError::with_text(DefinedCondition::BadRequest, &text),
        error @ (RelayError::Config(_) | RelayError::Storage(_)) => {
            tracing::warn!(%error, "push service: a publish could not be queued");
            IqError::new(DefinedCondition::InternalServerError)
        }
    }
}

#[async_trait]
impl InProcessService for AppServer {
    async fn receive(&self, router: &Arc<Router>, envelope: Envelope) -> Result<Delivery, Bounce> {
        match envelope.kind {
            StanzaKind::IqRequest => {}
            // The answer to a request the relay sent from this domain (a forward's disco#info).
            StanzaKind::IqResponse => {
                router.pending_iqs.complete(envelope);
                return Ok(Delivery::Dropped);
            }
            // RFC 6120 section 8.3.1: never answer an error or a response with an error.
            StanzaKind::Presence(_) | StanzaKind::Message(MessageKind::Error) => {
                return Ok(Delivery::Dropped);
            }
            StanzaKind::Message(_) => {
                return Err(Bounce::new(envelope, DefinedCondition::ServiceUnavailable));
            }
        }
        let Some(from) = envelope.from.clone() else {
            return Ok(Delivery::Dropped);
        };
        // Only the service's own address answers; nothing lives under it.
        if envelope
            .to
            .as_ref()
            .is_some_and(|to| to.node().is_some() || to.resource().is_some())
        {
            return Err(Bounce::new(envelope, DefinedCondition::ServiceUnavailable));
        }
        // RFC 6120 section 8.2.3: a get or set carries exactly one payload.
        let mut children = envelope.element.children();
        let (Some(payload), None) = (children.next(), children.next()) else {
            return Err(Bounce::new(envelope, DefinedCondition::BadRequest));
        };
        let is_set = envelope.element.attr("type") == Some("set");
        let answer = self.answer(router, &from, payload, is_set).await;
        iq::reply(router, &envelope, answer).await;
        Ok(Delivery::Handled)
    }
}

/// Why `[relay] pubsub_jid` cannot be the push service's domain, if it cannot: it must be a bare
/// domain (no `@`, no `/`), and neither one of the user domains nor a component's. Empty means no
/// push service, which is fine.
pub fn service_domain_problem(
    pubsub_jid: &str,
    user_domains: &[String],
    component_domains: &[&str],
) -> Option<String> {
    if pubsub_jid.is_empty() {
        return None;
    }
    let is_domain = pubsub_jid.parse::<Jid>().is_ok_and(|jid| {
        jid.node().is_none() && jid.resource().is_none() && jid.to_string() == pubsub_jid
    });
    if !is_domain {
        return Some(format!(
            "relay.pubsub_jid: {pubsub_jid:?} is not a domain like push.example.org"
        ));
    }
    if user_domains.iter().any(|d| d == pubsub_jid) {
        return Some(format!(
            "relay.pubsub_jid: {pubsub_jid} is already a user domain"
        ));
    }
    if component_domains.contains(&pubsub_jid) {
        return Some(format!(
            "relay.pubsub_jid: {pubsub_jid} is already a component's domain"
        ));
    }
    None
}

/// The features the service's disco#info lists (XEP-0357 section 4.2, XEP-0050 section 2).
const FEATURES: [&str; 5] = [
    ns::DISCO_INFO,
    ns::DISCO_ITEMS,
    ns::COMMANDS,
    ns::PING,
    ns::PUSH,
];

/// disco#info: the service itself (identity pubsub/push, and relay forwarding over s2s when the
/// relay offers it), or one of its command nodes.
fn disco_info(query: &Element, forwarding: bool) -> IqAnswer {
    let mut answer = Element::builder("query", ns::DISCO_INFO).build();
    let (category, kind, features): (&str, &str, &[&str]) = match query.attr("node") {
        None => ("pubsub", "push", &FEATURES),
        Some(node) if app_server_commands::is_command_node(node) => {
            set_attribute(&mut answer, "node", node);
            // XEP-0050 section 2.3.
            (
                "automation",
                "command-node",
                &[ns::COMMANDS, ns::DATA_FORMS],
            )
        }
        Some(_) => return Err(IqError::new(DefinedCondition::ItemNotFound)),
    };
    let mut identity = Element::builder("identity", ns::DISCO_INFO).build();
    set_attribute(&mut identity, "category", category);
    set_attribute(&mut identity, "type", kind);
    answer.append_child(identity);
    let forwarding = (forwarding && query.attr("node").is_none()).then_some(ns::RELAY_FORWARD);
    for feature in features.iter().copied().chain(forwarding) {
        let mut element = Element::builder("feature", ns::DISCO_INFO).build();
        set_attribute(&mut element, "var", feature);
        answer.append_child(element);
    }
    Ok(Some(answer))
}

/// What a publish asks for: the node, and the `secret` of its publish-options if any, or
/// ChatSecure's `token` and `endpoint` (a relay whitelist token and the messages endpoint of the
/// relay that issued it).
#[derive(Debug, PartialEq, Eq, Default)]
pub struct Publish {
    pub node: String,
    pub secret: Option<String>,
    pub token: Option<String>,
    pub endpoint: Option<String>,
}

/// Reads a `<pubsub/>` publish (XEP-0357 section 7, XEP-0060 section 7.1). The notification item is
/// not read: the device is woken with no sender and no text whatever the summary says. Forms are
/// read leniently (the spec's own examples omit the form `type`). Errors: `bad-request` when there
/// is no `<publish node='...'/>`.
pub fn parse_publish(pubsub: &Element) -> Result<Publish, IqError> {
    let node = pubsub
        .get_child("publish", ns::PUBSUB)
        .and_then(|p| p.attr("node"))
        .filter(|node| !node.is_empty())
        .ok_or_else(|| IqError::with_text(DefinedCondition::BadRequest, "publish node required"))?;
    let options = pubsub
        .get_child("publish-options", ns::PUBSUB)
        .and_then(|o| o.get_child("x", ns::DATA_FORMS))
        .map(app_server_commands::form_values)
        .unwrap_or_default();
    // A form of another type is not publish-options (a missing FORM_TYPE is tolerated).
    let is_options = options
        .get("FORM_TYPE")
        .is_none_or(|form_type| form_type == PUBLISH_OPTIONS_FORM);
    let option = |name: &str| {
        options
            .get(name)
            .filter(|_| is_options)
            .filter(|s| !s.is_empty())
            .cloned()
    };
    Ok(Publish {
        node: node.to_string(),
        secret: option("secret"),
        token: option("token"),
        endpoint: option("endpoint"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pubsub(xml: &str) -> Element {
        xml.parse().expect("xml")
    }

    #[test]
    fn a_publish_gives_its_node_and_secret() {
        let element = pubsub(
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'>\
               <publish node='yxs32uqsflafdk3iuqo'><item><notification xmlns='urn:xmpp:push:0'>\
                 <x xmlns='jabber:x:data'><field var='FORM_TYPE'><value>urn:xmpp:push:summary</value></field>\
                 <field var='message-count'><value>1</value></field></x>\
               </notification></item></publish>\
               <publish-options><x xmlns='jabber:x:data' type='submit'>\
                 <field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
                 <field var='secret'><value>eruio234vzxc2kla-91</value></field>\
               </x></publish-options></pubsub>",
        );
        assert_eq!(
            parse_publish(&element).expect("publish"),
            Publish {
                node: "yxs32uqsflafdk3iuqo".into(),
                secret: Some("eruio234vzxc2kla-91".into()),
                ..Publish::default()
            }
        );
    }

    /// ChatSecure's publish-options (XMPPFramework's XMPPPushModule): `token` and `endpoint`.
    #[test]
    fn a_chatsecure_publish_gives_its_token_and_endpoint() {
        let element = pubsub(
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='a-uuid'><item/></publish>\
               <publish-options><x xmlns='jabber:x:data' type='submit'>\
                 <field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
                 <field var='token'><value>t0k3n</value></field>\
                 <field var='endpoint'><value>https://push.example/api/v1/messages/</value></field>\
               </x></publish-options></pubsub>",
        );
        assert_eq!(
            parse_publish(&element).expect("publish"),
            Publish {
                node: "a-uuid".into(),
                secret: None,
                token: Some("t0k3n".into()),
                endpoint: Some("https://push.example/api/v1/messages/".into()),
            }
        );
    }

    #[test]
    fn forms_without_type_or_form_type_are_read() {
        let element = pubsub(
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='n'/>\
               <publish-options><x xmlns='jabber:x:data'>\
                 <field var='secret'><value>s</value></field></x></publish-options></pubsub>",
        );
        assert_eq!(
            parse_publish(&element).expect("publish").secret.as_deref(),
            Some("s")
        );
    }

    #[test]
    fn a_publish_without_secret_or_node() {
        let no_options = pubsub(
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='n'><item/></publish></pubsub>",
        );
        assert_eq!(parse_publish(&no_options).expect("publish").secret, None);
        let other_form = pubsub(
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='n'/>\
               <publish-options><x xmlns='jabber:x:data'>\
                 <field var='FORM_TYPE'><value>urn:example</value></field>\
                 <field var='secret'><value>s</value></field></x></publish-options></pubsub>",
        );
        assert_eq!(parse_publish(&other_form).expect("publish").secret, None);
        for xml in [
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish/></pubsub>",
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node=''/></pubsub>",
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'><subscribe node='n' jid='a@b'/></pubsub>",
        ] {
            let error = parse_publish(&pubsub(xml)).expect_err(xml);
            assert_eq!(error.condition, DefinedCondition::BadRequest, "{xml}");
        }
    }

    #[test]
    fn the_service_domain_is_a_free_bare_domain() {
        let users = vec!["example.org".to_string()];
        let components = ["comp.example.org"];
        assert_eq!(service_domain_problem("", &users, &components), None);
        assert_eq!(
            service_domain_problem("push.example.org", &users, &components),
            None
        );
        for taken in [
            "example.org",
            "comp.example.org",
            "a@push.example.org",
            "push.example.org/r",
            "Push.Example.org",
            "not a domain",
        ] {
            assert!(
                service_domain_problem(taken, &users, &components).is_some(),
                "{taken}"
            );
        }
    }

    /// `check-config` reports a service domain that is taken, with the other problems.
    #[test]
    fn the_configuration_check_refuses_a_taken_service_domain() {
        use crate::config::{Config, RawConfig};
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("herald.toml");
        let relay = "[relay]\nenabled = true\nlisten = \"127.0.0.1:0\"\n";
        std::fs::write(&path, format!("{relay}pubsub_jid = \"localhost\"\n")).expect("write");
        let problems = Config::resolve(RawConfig::load(Some(&path), Vec::new()).expect("load"))
            .expect_err("a user domain as push service")
            .problems;
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("relay.pubsub_jid: localhost")),
            "{problems:?}"
        );
        std::fs::write(&path, format!("{relay}pubsub_jid = \"push.localhost\"\n")).expect("write");
        let loaded = RawConfig::load(Some(&path), Vec::new()).expect("load");
        assert!(Config::resolve(loaded).is_ok());
    }

    /// `check-config` reports remote push domains that are malformed or ours.
    #[test]
    fn the_configuration_check_refuses_bad_remote_push_domains() {
        use crate::config::{Config, RawConfig};
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("herald.toml");
        let relay =
            "[relay]\nenabled = true\nlisten = \"127.0.0.1:0\"\npubsub_jid = \"push.localhost\"\n";
        let section = |domains: &str, cap: usize| {
            format!(
                "{relay}[relay.push_service]\nremote_domains = {domains}\nmax_nodes_per_remote_domain = {cap}\n"
            )
        };
        std::fs::write(
            &path,
            section(r#"["localhost", "Bad_Domain", "friends.example"]"#, 0),
        )
        .expect("write");
        let problems = Config::resolve(RawConfig::load(Some(&path), Vec::new()).expect("load"))
            .expect_err("bad remote domains")
            .problems;
        for expected in [
            "relay.push_service.remote_domains: localhost",
            "relay.push_service.remote_domains: \"Bad_Domain\"",
            "relay.push_service.max_nodes_per_remote_domain:",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(expected)),
                "{expected} in {problems:?}"
            );
        }
        assert_eq!(problems.len(), 3, "{problems:?}");
        std::fs::write(&path, section(r#"["friends.example", "*"]"#, 5)).expect("write");
        let loaded = RawConfig::load(Some(&path), Vec::new()).expect("load");
        assert!(Config::resolve(loaded).is_ok());
    }

    #[test]
    fn disco_info_is_a_push_service_with_commands() {
        let query = pubsub("<query xmlns='http://jabber.org/protocol/disco#info'/>");
        let answer = String::from(&disco_info(&query, true).expect("info").expect("payload"));
        for expected in [
            "category='pubsub'",
            "type='push'",
            "urn:xmpp:push:0",
            "http://jabber.org/protocol/commands",
            "urn:herald:relay-forward:0",
        ] {
            assert!(answer.contains(expected), "{expected} in {answer}");
        }
        let without = String::from(&disco_info(&query, false).expect("info").expect("payload"));
        assert!(!without.contains("relay-forward"), "{without}");
        let node = pubsub(
            "<query xmlns='http://jabber.org/protocol/disco#info' node='register-push-fcm'/>",
        );
        let answer = String::from(&disco_info(&node, true).expect("info").expect("payload"));
        assert!(answer.contains("command-node"), "{answer}");
        let unknown =
            pubsub("<query xmlns='http://jabber.org/protocol/disco#info' node='nothing'/>");
        assert!(disco_info(&unknown, true).is_err());
    }
}
