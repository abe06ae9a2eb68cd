//! XEP-0060 as PEP uses it (XEP-0163 section 4): the pubsub requests an account's service
//! answers, parsed from their elements, and the elements it sends back (results, node
//! configuration forms, event notifications). Pure functions, no I/O.

use std::collections::BTreeMap;

use crate::xmpp::{DefinedCondition, Element, ns, set_attribute};

use super::super::iq::IqError;

pub use crate::xmpp::ns::{PUBSUB_ERRORS, PUBSUB_EVENT, PUBSUB_OWNER};
/// The FORM_TYPE of node configuration (XEP-0060 section 16.4.4).
pub const NODE_CONFIG: &str = "http://jabber.org/protocol/pubsub#node_config";
/// The FORM_TYPE of publish-options (XEP-0060 section 7.1.5).
pub const PUBLISH_OPTIONS: &str = "http://jabber.org/protocol/pubsub#publish-options";

/// Most item ids one items request may name.
pub const MAX_REQUESTED_IDS: usize = 100;

/// `pubsub#access_model` (XEP-0060 section 4.5), the four PEP uses (XEP-0163 section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessModel {
    /// Contacts subscribed to the owner's presence (the PEP default, XEP-0163 section 3.2).
    Presence,
    /// Anyone.
    Open,
    /// Contacts in one of `pubsub#roster_groups_allowed`.
    Roster,
    /// The owner only (no affiliations are managed here).
    Whitelist,
}

impl AccessModel {
    pub fn parse(value: &str) -> Option<AccessModel> {
        Some(match value {
            "presence" => AccessModel::Presence,
            "open" => AccessModel::Open,
            "roster" => AccessModel::Roster,
            "whitelist" => AccessModel::Whitelist,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AccessModel::Presence => "presence",
            AccessModel::Open => "open",
            AccessModel::Roster => "roster",
            AccessModel::Whitelist => "whitelist",
        }
    }
}

/// `pubsub#max_items` as written: a number or `max` (XEP-0060 section 16.4.4, integer-or-max).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxItems {
    Count(u32),
    Max,
}

/// The configuration fields a request may set (node configuration or publish-options). A field
/// left out is `None`; unknown fields are ignored, as Prosody does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigFields {
    pub access_model: Option<AccessModel>,
    pub max_items: Option<MaxItems>,
    pub persist_items: Option<bool>,
    pub notify_retract: Option<bool>,
    pub send_last_published_item: Option<String>,
    pub title: Option<String>,
    pub roster_groups: Option<Vec<String>>,
}

/// A pubsub request to an account's service, as parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PubsubRequest {
    /// `<items/>`: the newest `max_items`, or the items with `ids` (section 6.5).
    Items {
        node: String,
        max_items: Option<usize>,
        ids: Vec<String>,
    },
    /// `<publish/>` with at most one item and the publish-options preconditions (section 7.1).
    Publish {
        node: String,
        id: Option<String>,
        payload: Option<Element>,
        options: Option<ConfigFields>,
    },
    /// `<retract/>` (section 7.2).
    Retract {
        node: String,
        id: String,
        notify: bool,
    },
    /// `<create/>` with an optional `<configure/>` form (section 8.1).
    Create {
        node: String,
        config: Option<ConfigFields>,
    },
    /// `<configure/>` get (section 8.2.1).
    GetConfiguration { node: String },
    /// `<configure/>` set with a submitted form (section 8.2.4).
    Configure { node: String, config: ConfigFields },
    /// `<default/>` get (section 8.3).
    DefaultConfiguration,
    /// `<delete/>` (section 8.4).
    Delete { node: String },
    /// `<purge/>` (section 8.5).
    Purge { node: String },
}

/// An error with its pubsub#errors condition (XEP-0060 section 14).
pub fn pubsub_error(condition: DefinedCondition, specific: Option<&str>) -> IqError {
    let mut error = IqError::new(condition);
    if let Some(name) = specific {
        error.app_condition = Some(Box::new(Element::builder(name, PUBSUB_ERRORS).build()));
    }
    error
}

/// `<feature-not-implemented/>` with `<unsupported feature=.../>` (section 14.2).
fn unsupported(feature: &str) -> IqError {
    let mut error = IqError::new(DefinedCondition::FeatureNotImplemented);
    let mut specific = Element::builder("unsupported", PUBSUB_ERRORS).build();
    set_attribute(&mut specific, "feature", feature);
    error.app_condition = Some(Box::new(specific));
    error
}

fn node_of(element: &Element) -> Result<String, IqError> {
    match element.attr("node") {
        Some(node) if !node.is_empty() => Ok(node.to_string()),
        // Section 7.1.3.3 and others: a request without a node.
        _ => Err(pubsub_error(
            DefinedCondition::BadRequest,
            Some("nodeid-required"),
        )),
    }
}

fn bad_request(text: &str) -> IqError {
    IqError::with_text(DefinedCondition::BadRequest, text)
}

/// Parses the payload of a pubsub IQ (`is_set`: type set, else get). Errors are the answers to send.
pub fn parse(payload: &Element, is_set: bool) -> Result<PubsubRequest, IqError> {
    let is_owner = payload.is("pubsub", PUBSUB_OWNER);
    if !is_owner && !payload.is("pubsub", ns::PUBSUB) {
        return Err(IqError::new(DefinedCondition::BadRequest));
    }
    let namespace = payload.ns();
    let mut children = payload.children().filter(|c| c.ns() == namespace);
    let Some(verb) = children.next() else {
        return Err(bad_request("no pubsub request"));
    };
    // Section 7.1.5: publish-options comes beside publish; section 8.1.3: configure beside create.
    let second = children.next();
    let name = verb.name();
    match (is_owner, is_set, name) {
        (false, false, "items") => parse_items(verb),
        (false, true, "publish") => {
            let options = match second {
                Some(options) if options.name() == "publish-options" => {
                    match options.get_child("x", ns::DATA_FORMS) {
                        Some(form) => Some(parse_form(form)?),
                        None => None,
                    }
                }
                Some(_) => return Err(bad_request("unexpected element beside publish")),
                None => None,
            };
            parse_publish(verb, options)
        }
        (false, true, "retract") => {
            let node = node_of(verb)?;
            let mut items = verb.children().filter(|c| c.is("item", ns::PUBSUB));
            let id = match (items.next().and_then(|i| i.attr("id")), items.next()) {
                (Some(id), None) if !id.is_empty() => id.to_string(),
                _ => {
                    return Err(pubsub_error(
                        DefinedCondition::BadRequest,
                        Some("item-required"),
                    ));
                }
            };
            let notify = matches!(verb.attr("notify"), Some("1" | "true"));
            Ok(PubsubRequest::Retract { node, id, notify })
        }
        (false, true, "create") => {
            let node = node_of(verb)?;
            let config = match second {
                Some(configure) if configure.name() == "configure" => {
                    match configure.get_child("x", ns::DATA_FORMS) {
                        Some(form) => Some(parse_form(form)?),
                        None => None,
                    }
                }
                Some(_) => return Err(bad_request("unexpected element beside create")),
                None => None,
            };
            Ok(PubsubRequest::Create { node, config })
        }
        (true, false, "configure") => Ok(PubsubRequest::GetConfiguration {
            node: node_of(verb)?,
        }),
        (true, true, "configure") => {
            let node = node_of(verb)?;
            let Some(form) = verb.get_child("x", ns::DATA_FORMS) else {
                return Err(bad_request("configure without a form"));
            };
            if form.attr("type") == Some("cancel") {
                // Section 8.2.5: cancelling changes nothing; answered like an empty submission.
                return Ok(PubsubRequest::Configure {
                    node,
                    config: ConfigFields::default(),
                });
            }
            Ok(PubsubRequest::Configure {
                node,
                config: parse_form(form)?,
            })
        }
        (true, false, "default") => Ok(PubsubRequest::DefaultConfiguration),
        (true, true, "delete") => Ok(PubsubRequest::Delete {
            node: node_of(verb)?,
        }),
        (true, true, "purge") => Ok(PubsubRequest::Purge {
            node: node_of(verb)?,
        }),
        (false, _, "subscribe" | "unsubscribe" | "options") => Err(unsupported("subscribe")),
        (false, false, "subscriptions") | (true, _, "subscriptions") => {
            Err(unsupported("manage-subscriptions"))
        }
        (false, false, "affiliations") | (true, _, "affiliations") => {
            Err(unsupported("modify-affiliations"))
        }
        _ => Err(bad_request("unknown pubsub request")),
    }
}

fn parse_items(items: &Element) -> Result<PubsubRequest, IqError> {
    let node = node_of(items)?;
    let max_items = match items.attr("max_items") {
        None => None,
        Some(value) => Some(
            value
                .parse::<usize>()
                .map_err(|_| bad_request("max_items is not a number"))?,
        ),
    };
    let mut ids = Vec::new();
    for item in items.children().filter(|c| c.is("item", ns::PUBSUB)) {
        let Some(id) = item.attr("id") else {
            return Err(bad_request("item without id"));
        };
        if !ids.iter().any(|known: &String| known == id) {
            ids.push(id.to_string());
        }
    }
    if ids.len() > MAX_REQUESTED_IDS {
        return Err(IqError::with_text(
            DefinedCondition::PolicyViolation,
            "too many item ids",
        ));
    }
    Ok(PubsubRequest::Items {
        node,
        max_items,
        ids,
    })
}

fn parse_publish(
    publish: &Element,
    options: Option<ConfigFields>,
) -> Result<PubsubRequest, IqError> {
    let node = node_of(publish)?;
    let mut items = publish.children().filter(|c| c.is("item", ns::PUBSUB));
    let item = items.next();
    if items.next().is_some() {
        // XEP-0060 section 7.1.3.6 (a publish carries one item at most).
        return Err(pubsub_error(
            DefinedCondition::BadRequest,
            Some("invalid-payload"),
        ));
    }
    let Some(item) = item else {
        // Section 7.1.3.6: PEP nodes are payload nodes, an item is required.
        return Err(pubsub_error(
            DefinedCondition::BadRequest,
            Some("item-required"),
        ));
    };
    let mut payloads = item.children();
    let payload = payloads.next().cloned();
    if payloads.next().is_some() {
        return Err(pubsub_error(
            DefinedCondition::BadRequest,
            Some("invalid-payload"),
        ));
    }
    if payload.is_none() {
        return Err(pubsub_error(
            DefinedCondition::BadRequest,
            Some("payload-required"),
        ));
    }
    let id = item
        .attr("id")
        .filter(|id| !id.is_empty())
        .map(str::to_string);
    Ok(PubsubRequest::Publish {
        node,
        id,
        payload,
        options,
    })
}

fn parse_bool(value: &str) -> Result<bool, IqError> {
    match value {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(bad_request("not a boolean")),
    }
}

/// The fields of a data form (XEP-0004) that configure a node; unknown fields are left out.
pub fn parse_form(form: &Element) -> Result<ConfigFields, IqError> {
    let mut values: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for field in form.children().filter(|c| c.is("field", ns::DATA_FORMS)) {
        let Some(var) = field.attr("var") else {
            continue;
        };
        let field_values = field
            .children()
            .filter(|c| c.is("value", ns::DATA_FORMS))
            .map(|v| v.text())
            .collect();
        values.insert(var.to_string(), field_values);
    }
    let single = |var: &str| -> Option<String> {
        values
            .get(var)
            .and_then(|v| v.first())
            .map(|v| v.trim().to_string())
    };
    let mut config = ConfigFields::default();
    if let Some(value) = single("pubsub#access_model") {
        config.access_model = Some(AccessModel::parse(&value).ok_or_else(|| {
            // Prosody answers an access model it does not offer with not-acceptable.
            IqError::with_text(DefinedCondition::NotAcceptable, "unsupported access model")
        })?);
    }
    if let Some(value) = single("pubsub#max_items") {
        config.max_items = Some(if value == "max" {
            MaxItems::Max
        } else {
            MaxItems::Count(
                value
                    .parse()
                    .map_err(|_| bad_request("max_items is not a number"))?,
            )
        });
    }
    if let Some(value) = single("pubsub#persist_items") {
        config.persist_items = Some(parse_bool(&value)?);
    }
    if let Some(value) = single("pubsub#notify_retract") {
        config.notify_retract = Some(parse_bool(&value)?);
    }
    if let Some(value) = single("pubsub#send_last_published_item") {
        if !matches!(value.as_str(), "never" | "on_sub" | "on_sub_and_presence") {
            return Err(bad_request("unknown send_last_published_item"));
        }
        config.send_last_published_item = Some(value);
    }
    if let Some(value) = values.get("pubsub#title") {
        config.title = Some(value.first().cloned().unwrap_or_default());
    }
    if let Some(groups) = values.get("pubsub#roster_groups_allowed") {
        // Stored one per line: a group name with a line break cannot be kept faithfully.
        if groups.iter().any(|g| g.contains('\n')) {
            return Err(bad_request("group name with a line break"));
        }
        config.roster_groups = Some(groups.clone());
    }
    Ok(config)
}

/// The current configuration of a node, as the fields above hold it (resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    pub access_model: AccessModel,
    pub max_items: u32,
    pub persist_items: bool,
    pub notify_retract: bool,
    pub send_last_published_item: String,
    pub title: Option<String>,
    pub roster_groups: Vec<String>,
}

fn field(var: &str, kind: &str, values: &[&str]) -> Element {
    let mut field = Element::builder("field", ns::DATA_FORMS).build();
    set_attribute(&mut field, "var", var);
    set_attribute(&mut field, "type", kind);
    for value in values {
        field.append_child(
            Element::builder("value", ns::DATA_FORMS)
                .append(value.to_string())
                .build(),
        );
    }
    field
}

fn with_options(mut field: Element, options: &[&str]) -> Element {
    for option in options {
        let value = Element::builder("value", ns::DATA_FORMS)
            .append(option.to_string())
            .build();
        field.append_child(
            Element::builder("option", ns::DATA_FORMS)
                .append(value)
                .build(),
        );
    }
    field
}

/// The node configuration form (section 8.2.1, FORM_TYPE `pubsub#node_config`) with `config`'s values.
pub fn config_form(config: &NodeConfig, max_items_limit: u32) -> Element {
    let mut form = Element::builder("x", ns::DATA_FORMS).build();
    set_attribute(&mut form, "type", "form");
    let bool_value = |b: bool| if b { "1" } else { "0" };
    let max_items = config.max_items.to_string();
    let mut max_field = field("pubsub#max_items", "text-single", &[&max_items]);
    // XEP-0122 would type it; the limit is said in the label instead.
    set_attribute(
        &mut max_field,
        "label",
        &format!("Max # of items to persist (at most {max_items_limit}, or max)"),
    );
    let groups: Vec<&str> = config.roster_groups.iter().map(String::as_str).collect();
    for element in [
        field("FORM_TYPE", "hidden", &[NODE_CONFIG]),
        field(
            "pubsub#title",
            "text-single",
            &[config.title.as_deref().unwrap_or("")],
        ),
        with_options(
            field(
                "pubsub#access_model",
                "list-single",
                &[config.access_model.as_str()],
            ),
            &["open", "presence", "roster", "whitelist"],
        ),
        field("pubsub#roster_groups_allowed", "list-multi", &groups),
        max_field,
        field(
            "pubsub#persist_items",
            "boolean",
            &[bool_value(config.persist_items)],
        ),
        field(
            "pubsub#notify_retract",
            "boolean",
            &[bool_value(config.notify_retract)],
        ),
        with_options(
            field(
                "pubsub#send_last_published_item",
                "list-single",
                &[&config.send_last_published_item],
            ),
            &["never", "on_sub", "on_sub_and_presence"],
        ),
    ] {
        form.append_child(element);
    }
    form
}

/// `<pubsub xmlns=namespace>` around `child`.
pub fn pubsub(namespace: &str, child: Element) -> Element {
    Element::builder("pubsub", namespace).append(child).build()
}

/// An element `name` in `namespace` with a `node` attribute.
pub fn with_node(name: &str, namespace: &str, node: &str) -> Element {
    let mut element = Element::builder(name, namespace).build();
    set_attribute(&mut element, "node", node);
    element
}

/// An `<item id=...>` in `namespace` around the stored payload (which is re-parsed; a payload that
/// no longer parses is left out rather than failing the whole answer).
pub fn item(namespace: &str, id: &str, payload: &str) -> Element {
    let mut item = Element::builder("item", namespace).build();
    set_attribute(&mut item, "id", id);
    if let Ok(payload) = payload.parse::<Element>() {
        item.append_child(payload);
    }
    item
}

/// A notification (section 7.1.2.1): `<message type='headline'><event><items node>child</items>`.
pub fn event_message(from: &str, to: &str, node: &str, child: Element) -> Element {
    let items = with_node("items", PUBSUB_EVENT, node);
    let mut items = items;
    items.append_child(child);
    let event = Element::builder("event", PUBSUB_EVENT)
        .append(items)
        .build();
    let mut message = Element::builder("message", ns::CLIENT)
        .append(event)
        .build();
    set_attribute(&mut message, "type", "headline");
    set_attribute(&mut message, "from", from);
    set_attribute(&mut message, "to", to);
    set_attribute(
        &mut message,
        "id",
        &format!("pep-{:016x}", rand::random::<u64>()),
    );
    message
}

/// A retraction notification's child (section 7.2.2.1).
pub fn retract(id: &str) -> Element {
    let mut retract = Element::builder("retract", PUBSUB_EVENT).build();
    set_attribute(&mut retract, "id", id);
    retract
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_xml(xml: &str, is_set: bool) -> Result<PubsubRequest, IqError> {
        parse(&xml.parse::<Element>().expect("xml"), is_set)
    }

    const OMEMO_PUBLISH: &str = "<pubsub xmlns='http://jabber.org/protocol/pubsub'>\
        <publish node='urn:xmpp:omemo:2:devices'><item id='current'>\
        <devices xmlns='urn:xmpp:omemo:2'><device id='1'/></devices></item></publish>\
        <publish-options><x xmlns='jabber:x:data' type='submit'>\
        <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
        <field var='pubsub#access_model'><value>open</value></field>\
        <field var='pubsub#max_items'><value>max</value></field>\
        <field var='pubsub#persist_items'><value>true</value></field>\
        <field var='pubsub#send_last_published_item'><value>never</value></field>\
        <field var='pubsub#unknown'><value>x</value></field>\
        </x></publish-options></pubsub>";

    #[test]
    fn a_publish_with_options() {
        let PubsubRequest::Publish {
            node,
            id,
            payload,
            options,
        } = parse_xml(OMEMO_PUBLISH, true).expect("parsed")
        else {
            panic!("not a publish");
        };
        assert_eq!(node, "urn:xmpp:omemo:2:devices");
        assert_eq!(id.as_deref(), Some("current"));
        assert!(payload.expect("payload").is("devices", "urn:xmpp:omemo:2"));
        let options = options.expect("options");
        assert_eq!(options.access_model, Some(AccessModel::Open));
        assert_eq!(options.max_items, Some(MaxItems::Max));
        assert_eq!(options.persist_items, Some(true));
        assert_eq!(options.send_last_published_item.as_deref(), Some("never"));
        assert_eq!(options.notify_retract, None);
    }

    #[test]
    fn requests_and_their_errors() {
        let cases: [(&str, bool, Result<PubsubRequest, &str>); 9] = [
            (
                "<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='n' max_items='2'/></pubsub>",
                false,
                Ok(PubsubRequest::Items {
                    node: "n".into(),
                    max_items: Some(2),
                    ids: vec![],
                }),
            ),
            (
                "<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='n'><item id='a'/><item id='a'/><item id='b'/></items></pubsub>",
                false,
                Ok(PubsubRequest::Items {
                    node: "n".into(),
                    max_items: None,
                    ids: vec!["a".into(), "b".into()],
                }),
            ),
            (
                "<pubsub xmlns='http://jabber.org/protocol/pubsub'><items/></pubsub>",
                false,
                Err("nodeid-required"),
            ),
            (
                "<pubsub xmlns='http://jabber.org/protocol/pubsub'><retract node='n' notify='true'><item id='a'/></retract></pubsub>",
                true,
                Ok(PubsubRequest::Retract {
                    node: "n".into(),
                    id: "a".into(),
                    notify: true,
                }),
            ),
            (
                "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='n'><item id='a'/></publish></pubsub>",
                true,
                Err("payload-required"),
            ),
            (
                "<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><delete node='n'/></pubsub>",
                true,
                Ok(PubsubRequest::Delete { node: "n".into() }),
            ),
            (
                "<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><purge node='n'/></pubsub>",
                true,
                Ok(PubsubRequest::Purge { node: "n".into() }),
            ),
            (
                "<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='n'/></pubsub>",
                false,
                Ok(PubsubRequest::GetConfiguration { node: "n".into() }),
            ),
            (
                "<pubsub xmlns='http://jabber.org/protocol/pubsub'><subscribe node='n' jid='a@b'/></pubsub>",
                true,
                Err("unsupported"),
            ),
        ];
        for (xml, is_set, expected) in cases {
            let parsed = parse_xml(xml, is_set);
            match (parsed, expected) {
                (Ok(request), Ok(expected)) => assert_eq!(request, expected, "{xml}"),
                (Err(error), Err(name)) => {
                    let specific = error.app_condition.as_ref().map(|e| e.name().to_string());
                    assert_eq!(specific.as_deref(), Some(name), "{xml}");
                }
                (other, expected) => panic!("{xml}: {other:?} vs {expected:?}"),
            }
        }
    }

    #[test]
    fn bad_form_values_are_refused() {
        for (var, value) in [
            ("pubsub#access_model", "authorize"),
            ("pubsub#max_items", "many"),
            ("pubsub#persist_items", "yes"),
        ] {
            let xml = format!(
                "<x xmlns='jabber:x:data' type='submit'><field var='{var}'><value>{value}</value></field></x>"
            );
            assert!(parse_form(&xml.parse().expect("xml")).is_err(), "{var}");
        }
    }

    #[test]
    fn the_configuration_form_reads_back() {
        let config = NodeConfig {
            access_model: AccessModel::Roster,
            max_items: 5,
            persist_items: true,
            notify_retract: false,
            send_last_published_item: "on_sub".into(),
            title: Some("Title".into()),
            roster_groups: vec!["Friends".into()],
        };
        let parsed = parse_form(&config_form(&config, 256)).expect("parsed");
        assert_eq!(parsed.access_model, Some(AccessModel::Roster));
        assert_eq!(parsed.max_items, Some(MaxItems::Count(5)));
        assert_eq!(parsed.persist_items, Some(true));
        assert_eq!(parsed.notify_retract, Some(false));
        assert_eq!(parsed.title.as_deref(), Some("Title"));
        assert_eq!(parsed.roster_groups, Some(vec!["Friends".to_string()]));
    }
}
