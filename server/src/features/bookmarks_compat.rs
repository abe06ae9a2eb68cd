//! XEP-0402: PEP Native Bookmarks, its Compatibility section (`urn:xmpp:bookmarks:1#compat`): the
//! bookmarks older clients keep in XEP-0049 private XML (`<storage xmlns='storage:bookmarks'/>`,
//! XEP-0048) and the items of the XEP-0402 PEP node `urn:xmpp:bookmarks:1` are one list.
//!
//! The PEP node holds the conferences; private XML keeps only what the node cannot hold (URL
//! bookmarks, dropped by XEP-0402, and conferences without a usable `jid`). So:
//! - "Publishing via this specification": a publish or retract on the node needs nothing here; a
//!   private XML get of `storage:bookmarks` collates the node's items, each as a `<conference/>`
//!   whose `jid` is the item id ([`fill_legacy`]).
//! - "Publishing via the old specification": a private XML set of `storage:bookmarks` is compared
//!   with the node's items; new or changed conferences are published and missing ones retracted
//!   through the PEP service itself, so notifications go out as for any publish, and the XEP-0048
//!   view once for the whole write ([`publish_legacy`]).
//!   A node created this way has the configuration XEP-0402 asks clients to publish with (section
//!   "Outline of use", publish-options): `whitelist`, persisted, as many items as allowed.
//!
//! Until the node exists, a stored `storage:bookmarks` fragment (written before this feature, or by
//! a client that never used bookmarks 2) is answered as it was stored.
//!
//! XEP-0048 also kept bookmarks in PEP, as item `current` of the node `storage:bookmarks`
//! (`urn:xmpp:bookmarks:1#compat-pep`). That node is a view, never stored: a publish to it is a
//! private XML set of its `<storage/>` ([`legacy_pep_publish`]), an items request is answered the
//! collated list ([`legacy_pep_items`]), and every change of the XEP-0402 node is notified on it to
//! the owner's resources that ask for `storage:bookmarks+notify` ([`notify_legacy_pep`]; the owner
//! alone, as the whitelist access model of the node it mirrors).

use std::sync::Arc;

use super::ClientSession;
use super::iq::{IqAnswer, IqError};
use super::{pep, private_xml};
use crate::router::Router;
use crate::xmpp::{BareJid, DefinedCondition, Element, ns, set_attribute};
use pep::wire::{AccessModel, ConfigFields, MaxItems};

/// The XEP-0402 node and payload namespace.
pub const BOOKMARKS2: &str = "urn:xmpp:bookmarks:1";
/// The XEP-0048 namespace of `<storage/>` in private XML.
pub const LEGACY: &str = "storage:bookmarks";
/// What the account's disco#info lists for this (XEP-0402, Compatibility: "SHOULD announce").
pub const ACCOUNT_FEATURES: [&str; 2] = [
    "urn:xmpp:bookmarks:1#compat",
    "urn:xmpp:bookmarks:1#compat-pep",
];
/// XEP-0048 over PEP: the one item of the `storage:bookmarks` node.
const LEGACY_ITEM: &str = "current";

/// One bookmarked room, as both specifications can express it (XEP-0402 section "Data Model",
/// XEP-0048 section 3.2).
#[derive(Debug, Clone, PartialEq)]
pub struct Conference {
    pub name: Option<String>,
    pub autojoin: bool,
    pub nick: Option<String>,
    pub password: Option<String>,
    /// The children of XEP-0402 `<extensions/>`, kept as they are; in XEP-0048 they are the
    /// conference's children of other namespaces.
    pub extensions: Vec<Element>,
}

/// XEP-0402 and XEP-0048 both take "true" or "1" (xs:boolean).
fn is_true(value: Option<&str>) -> bool {
    matches!(value, Some("true" | "1"))
}

fn child_text(element: &Element, name: &str, namespace: &str) -> Option<String> {
    element.get_child(name, namespace).map(Element::text)
}

impl Conference {
    /// A XEP-0048 `<conference/>` and its room JID, or `None` if it is not one or its `jid` is not
    /// a bare JID (which could not be an item id).
    pub fn from_legacy(conference: &Element) -> Option<(String, Conference)> {
        if !conference.is("conference", LEGACY) {
            return None;
        }
        let jid = conference.attr("jid")?.parse::<BareJid>().ok()?.to_string();
        let extensions = conference
            .children()
            .filter(|child| child.ns() != LEGACY)
            .cloned()
            .collect();
        Some((
            jid,
            Conference {
                name: conference.attr("name").map(str::to_string),
                autojoin: is_true(conference.attr("autojoin")),
                nick: child_text(conference, "nick", LEGACY),
                password: child_text(conference, "password", LEGACY),
                extensions,
            },
        ))
    }

    /// A XEP-0402 item payload, or `None` if it is not a `<conference/>` of that namespace.
    pub fn from_bookmarks2(payload: &Element) -> Option<Conference> {
        if !payload.is("conference", BOOKMARKS2) {
            return None;
        }
        let extensions = payload
            .get_child("extensions", BOOKMARKS2)
            .map(|e| e.children().cloned().collect())
            .unwrap_or_default();
        Some(Conference {
            name: payload.attr("name").map(str::to_string),
            autojoin: is_true(payload.attr("autojoin")),
            nick: child_text(payload, "nick", BOOKMARKS2),
            password: child_text(payload, "password", BOOKMARKS2),
            extensions,
        })
    }

    /// The XEP-0048 form, with `jid` the room (the XEP-0402 item id).
    pub fn to_legacy(&self, jid: &str) -> Element {
        let mut conference = self.element(LEGACY);
        set_attribute(&mut conference, "jid", jid);
        for extension in &self.extensions {
            conference.append_child(extension.clone());
        }
        conference
    }

    /// The XEP-0402 item payload.
    pub fn to_bookmarks2(&self) -> Element {
        let mut conference = self.element(BOOKMARKS2);
        if !self.extensions.is_empty() {
            let mut extensions = Element::builder("extensions", BOOKMARKS2).build();
            for extension in &self.extensions {
                extensions.append_child(extension.clone());
            }
            conference.append_child(extensions);
        }
        conference
    }

    /// `<conference name autojoin><nick/><password/></conference>` in `namespace`.
    fn element(&self, namespace: &str) -> Element {
        let mut conference = Element::builder("conference", namespace).build();
        if let Some(name) = &self.name {
            set_attribute(&mut conference, "name", name);
        }
        if self.autojoin {
            set_attribute(&mut conference, "autojoin", "true");
        }
        for (name, value) in [("nick", &self.nick), ("password", &self.password)] {
            if let Some(value) = value {
                conference.append_child(
                    Element::builder(name, namespace)
                        .append(value.to_string())
                        .build(),
                );
            }
        }
        conference
    }
}

/// Whether `fragment` is the XEP-0048 bookmarks storage.
fn is_legacy_storage(fragment: &Element) -> bool {
    fragment.is("storage", LEGACY)
}

/// The children of a `<storage/>` that are not conferences the PEP node can hold, in a new
/// `<storage/>`: what private XML keeps.
fn remainder(storage: &Element) -> Element {
    let mut kept = Element::builder("storage", LEGACY).build();
    for child in storage.children() {
        if Conference::from_legacy(child).is_none() {
            kept.append_child(child.clone());
        }
    }
    kept
}

/// The fragments of a private XML set as they are to be stored: a `storage:bookmarks` list keeps
/// only its [`remainder`], since its conferences go to the PEP node ([`publish_legacy`]).
pub fn kept_fragments(fragments: &[&Element]) -> Vec<Element> {
    fragments
        .iter()
        .map(|fragment| {
            if is_legacy_storage(fragment) {
                remainder(fragment)
            } else {
                (*fragment).clone()
            }
        })
        .collect()
}

/// The node's items as (room JID, conference), oldest first; `None` if the node does not exist.
/// Items that are not XEP-0402 conferences are left out.
async fn node_conferences(
    router: &Arc<Router>,
    owner: &str,
) -> Result<Option<Vec<(String, Conference)>>, IqError> {
    let pep = &router.context.storage.pep;
    if pep
        .node(owner, BOOKMARKS2)
        .await
        .map_err(internal)?
        .is_none()
    {
        return Ok(None);
    }
    let mut items = pep.items(owner, BOOKMARKS2, None).await.map_err(internal)?;
    items.reverse();
    Ok(Some(
        items
            .into_iter()
            .filter_map(|item| {
                let payload = item.payload.parse::<Element>().ok()?;
                Some((item.id, Conference::from_bookmarks2(&payload)?))
            })
            .collect(),
    ))
}

fn internal(error: herald_storage::StorageError) -> IqError {
    tracing::error!(%error, "bookmarks compatibility: storage failed");
    IqError::new(DefinedCondition::InternalServerError)
}

/// XEP-0402 Compatibility, "Publishing via the old specification": brings the PEP node in line with
/// every `storage:bookmarks` list of a private XML set. Each new or changed conference is published
/// (keeping the XEP-0402 extensions of the item it replaces when the old client sent none) and each
/// item no longer listed is retracted with notification: one XEP-0402 notification per changed
/// item, and then one of the whole list on the XEP-0048 PEP view ([`notify_legacy_pep`]) if anything
/// changed. Errors: what the PEP service answered.
pub async fn publish_legacy(
    router: &Arc<Router>,
    owner: &str,
    fragments: &[&Element],
) -> Result<(), IqError> {
    let options = xep0402_options();
    let mut changed = false;
    let result = async {
        for storage in fragments.iter().filter(|f| is_legacy_storage(f)) {
            let wanted: Vec<(String, Conference)> = storage
                .children()
                .filter_map(Conference::from_legacy)
                .collect();
            let current = node_conferences(router, owner).await?.unwrap_or_default();
            for (index, (jid, conference)) in wanted.iter().enumerate() {
                // A room listed twice: the last entry is the one kept.
                if wanted[index + 1..].iter().any(|(later, _)| later == jid) {
                    continue;
                }
                let old = current.iter().find(|(id, _)| id == jid).map(|(_, c)| c);
                let mut conference = conference.clone();
                if conference.extensions.is_empty()
                    && let Some(old) = old
                {
                    conference.extensions = old.extensions.clone();
                }
                if old == Some(&conference) {
                    continue;
                }
                let payload = pep::Payload::new(conference.to_bookmarks2());
                pep::publish_mirrored(router, owner, BOOKMARKS2, jid, payload, &options).await?;
                changed = true;
            }
            for (id, _) in &current {
                if !wanted.iter().any(|(jid, _)| jid == id) {
                    pep::retract_mirrored(router, owner, BOOKMARKS2, id).await?;
                    changed = true;
                }
            }
        }
        Ok(())
    }
    .await;
    // Also after a failure part way: what did change is notified.
    if changed {
        Box::pin(notify_legacy_pep(router, owner)).await;
    }
    result
}

/// The configuration XEP-0402 asks clients to publish with ("Outline of use", publish-options),
/// for a node a XEP-0048 write creates; an existing node is used as its owner configured it.
fn xep0402_options() -> ConfigFields {
    ConfigFields {
        access_model: Some(AccessModel::Whitelist),
        max_items: Some(MaxItems::Max),
        persist_items: Some(true),
        send_last_published_item: Some("never".to_string()),
        ..ConfigFields::default()
    }
}

/// XEP-0402 Compatibility, "Publishing via this specification": in a private XML answer, a
/// `storage:bookmarks` list becomes the node's items as conferences (oldest first) followed by what
/// private XML kept; while the node does not exist the stored list is answered as it is.
pub async fn fill_legacy(
    router: &Arc<Router>,
    owner: &str,
    query: Element,
) -> Result<Element, IqError> {
    if !query.children().any(is_legacy_storage) {
        return Ok(query);
    }
    let Some(conferences) = node_conferences(router, owner).await? else {
        return Ok(query);
    };
    let mut answer = Element::builder("query", ns::PRIVATE).build();
    for child in query.children() {
        if !is_legacy_storage(child) {
            answer.append_child(child.clone());
            continue;
        }
        answer.append_child(collate(&conferences, child));
    }
    Ok(answer)
}

/// `<storage/>` with `conferences` in order, then the children of `kept` that are not conferences
/// the node could hold.
fn collate(conferences: &[(String, Conference)], kept: &Element) -> Element {
    let mut storage = Element::builder("storage", LEGACY).build();
    for (jid, conference) in conferences {
        storage.append_child(conference.to_legacy(jid));
    }
    for child in remainder(kept).children() {
        storage.append_child(child.clone());
    }
    storage
}

/// The `storage:bookmarks` list as private XML and the XEP-0048 PEP node show it: the XEP-0402
/// node's conferences and what private XML keeps, or the stored list while that node does not exist.
async fn legacy_storage(router: &Arc<Router>, owner: &str) -> Result<Element, IqError> {
    let stored = router
        .context
        .storage
        .private_xml
        .get(owner, LEGACY, "storage")
        .await
        .map_err(internal)?;
    let kept = match stored {
        Some(xml) => xml
            .parse::<Element>()
            .map_err(|_| IqError::new(DefinedCondition::InternalServerError))?,
        None => Element::builder("storage", LEGACY).build(),
    };
    Ok(match node_conferences(router, owner).await? {
        Some(conferences) => collate(&conferences, &kept),
        None => kept,
    })
}

/// XEP-0048 over PEP, an items request of the owner on `storage:bookmarks` (XEP-0060 section 6.5):
/// item `current` holds the list ([`legacy_storage`]).
pub async fn legacy_pep_items(router: &Arc<Router>, owner: &str) -> IqAnswer {
    let storage = legacy_storage(router, owner).await?;
    let mut items = pep::wire::with_node("items", ns::PUBSUB, LEGACY);
    items.append_child(pep::wire::item(
        ns::PUBSUB,
        LEGACY_ITEM,
        &String::from(&storage),
    ));
    Ok(Some(pep::wire::pubsub(ns::PUBSUB, items)))
}

/// XEP-0048 over PEP, a publish of the owner's `<storage/>` to `storage:bookmarks`: what a private
/// XML set of it does (XEP-0402, Compatibility, "Publishing via the old specification"), so the
/// XEP-0402 node is brought in line through the PEP service and private XML keeps the rest. The
/// item id is always `current`; publish-options are not preconditions on a node that is a view.
/// Errors: a payload that is not a `<storage/>` (`bad-request`, XEP-0060 section 7.1.3.6
/// `invalid-payload`), or what private XML or the PEP service answered.
pub async fn legacy_pep_publish(
    router: &Arc<Router>,
    session: &ClientSession,
    payload: Option<Element>,
) -> IqAnswer {
    let Some(storage) = payload.filter(is_legacy_storage) else {
        return Err(pep::wire::pubsub_error(
            DefinedCondition::BadRequest,
            Some("invalid-payload"),
        ));
    };
    let kept = remainder(&storage);
    private_xml::store(router, &session.bare, &[&kept]).await?;
    publish_legacy(router, &session.bare, &[&storage]).await?;
    let mut item = Element::builder("item", ns::PUBSUB).build();
    set_attribute(&mut item, "id", LEGACY_ITEM);
    let mut publish = pep::wire::with_node("publish", ns::PUBSUB, LEGACY);
    publish.append_child(item);
    Ok(Some(pep::wire::pubsub(ns::PUBSUB, publish)))
}

/// XEP-0048 over PEP: after a change of the XEP-0402 node, the owner's available resources whose
/// caps ask for `storage:bookmarks+notify` get the whole list as item `current`. A storage failure
/// is logged: the change itself stands.
pub async fn notify_legacy_pep(router: &Arc<Router>, owner: &str) {
    let recipients = pep::notify::interested_resources(router, owner, LEGACY);
    if recipients.is_empty() {
        return;
    }
    let storage = match legacy_storage(router, owner).await {
        Ok(storage) => String::from(&storage),
        Err(_) => return,
    };
    for to in recipients {
        let item = pep::wire::item(pep::wire::PUBSUB_EVENT, LEGACY_ITEM, &storage);
        router
            .send(pep::wire::event_message(owner, &to, LEGACY, item))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Element {
        xml.parse().expect("test XML")
    }

    const FULL_LEGACY: &str = "<conference xmlns='storage:bookmarks' jid='council@conference.underhill.org' \
         name='Council of Oberon' autojoin='1'><nick>Puck</nick><password>pass</password></conference>";

    fn council() -> Conference {
        Conference {
            name: Some("Council of Oberon".into()),
            autojoin: true,
            nick: Some("Puck".into()),
            password: Some("pass".into()),
            extensions: Vec::new(),
        }
    }

    #[test]
    fn legacy_conference_becomes_bookmarks2_item() {
        let (jid, conference) = Conference::from_legacy(&parse(FULL_LEGACY)).expect("a conference");
        assert_eq!(jid, "council@conference.underhill.org");
        assert_eq!(conference, council());
        let payload = conference.to_bookmarks2();
        assert_eq!(
            payload,
            parse(
                "<conference xmlns='urn:xmpp:bookmarks:1' name='Council of Oberon' autojoin='true'>\
                 <nick>Puck</nick><password>pass</password></conference>"
            )
        );
    }

    #[test]
    fn bookmarks2_item_becomes_legacy_conference() {
        let payload = parse(
            "<conference xmlns='urn:xmpp:bookmarks:1' name='Council of Oberon' autojoin='true'>\
             <nick>Puck</nick><password>pass</password></conference>",
        );
        let conference = Conference::from_bookmarks2(&payload).expect("a conference");
        assert_eq!(conference, council());
        assert_eq!(
            conference.to_legacy("council@conference.underhill.org"),
            parse(
                "<conference xmlns='storage:bookmarks' name='Council of Oberon' autojoin='true' \
                 jid='council@conference.underhill.org'><nick>Puck</nick><password>pass</password></conference>"
            )
        );
    }

    #[test]
    fn missing_fields_stay_missing_and_autojoin_defaults_to_false() {
        let (_, conference) = Conference::from_legacy(&parse(
            "<conference xmlns='storage:bookmarks' jid='room@muc.example' autojoin='false'/>",
        ))
        .expect("a conference");
        assert_eq!(
            conference,
            Conference {
                name: None,
                autojoin: false,
                nick: None,
                password: None,
                extensions: Vec::new()
            }
        );
        assert_eq!(
            conference.to_bookmarks2(),
            parse("<conference xmlns='urn:xmpp:bookmarks:1'/>")
        );
    }

    #[test]
    fn extensions_cross_both_ways() {
        let payload = parse(
            "<conference xmlns='urn:xmpp:bookmarks:1' name='R'><extensions>\
             <state xmlns='http://myclient.example/bookmark/state' minimized='true'/></extensions></conference>",
        );
        let conference = Conference::from_bookmarks2(&payload).expect("a conference");
        let legacy = conference.to_legacy("r@muc.example");
        assert!(
            legacy
                .get_child("state", "http://myclient.example/bookmark/state")
                .is_some()
        );
        let (_, back) = Conference::from_legacy(&legacy).expect("a conference");
        assert_eq!(back.to_bookmarks2(), payload);
    }

    #[test]
    fn conferences_without_a_usable_jid_and_urls_stay_in_private_xml() {
        let storage = parse(
            "<storage xmlns='storage:bookmarks'>\
             <conference jid='room@muc.example' name='Room'/>\
             <conference name='No JID'/>\
             <conference jid='@bad' name='Bad'/>\
             <url name='Site' url='https://example.org/'/></storage>",
        );
        let kept = kept_fragments(&[&storage]);
        assert_eq!(
            kept,
            vec![parse(
                "<storage xmlns='storage:bookmarks'><conference name='No JID'/>\
                 <conference jid='@bad' name='Bad'/>\
                 <url name='Site' url='https://example.org/'/></storage>"
            )]
        );
        let other = parse("<notes xmlns='storage:rosternotes'/>");
        assert_eq!(kept_fragments(&[&other]), vec![other.clone()]);
    }

    #[test]
    fn collated_list_puts_node_items_first_and_drops_stored_conferences() {
        let kept = parse(
            "<storage xmlns='storage:bookmarks'><conference jid='old@muc.example'/>\
             <url name='Site' url='https://example.org/'/></storage>",
        );
        let storage = collate(
            &[("council@conference.underhill.org".into(), council())],
            &kept,
        );
        let children: Vec<&Element> = storage.children().collect();
        assert_eq!(children.len(), 2);
        assert_eq!(
            children[0].attr("jid"),
            Some("council@conference.underhill.org")
        );
        assert!(children[1].is("url", LEGACY));
    }

    #[test]
    fn a_node_a_legacy_write_creates_is_configured_as_xep0402_asks() {
        let options = xep0402_options();
        assert_eq!(options.access_model, Some(AccessModel::Whitelist));
        assert_eq!(options.persist_items, Some(true));
        assert_eq!(options.max_items, Some(MaxItems::Max));
        assert_eq!(options.send_last_published_item.as_deref(), Some("never"));
    }
}
