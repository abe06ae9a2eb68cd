//! XEP-0163: Personal Eventing Protocol, a XEP-0060 pubsub service on every account's bare JID.
//!
//! The owner publishes (section 3; nodes are created on first publish, XEP-0060 section 7.1 with
//! publish-options as preconditions, section 7.1.5), retracts (7.2), reads items (6.5: the newest N
//! or by id), creates (8.1), configures (8.2), deletes (8.4) and purges (8.5) nodes. Anyone else may
//! only read items, as the node's access model allows ([`access`]). Notifications go to the
//! resources whose entity capabilities ask for the node ([`notify`], XEP-0163 section 4.3), and the
//! last item to a resource once its capabilities are known (section 6.2,
//! `features::entity_caps`). Limits come from `[pep]`: a request over one is refused, never
//! answered by dropping stored data. A node with `pubsub#persist_items` false is transient (section
//! 4.3): its items are notified and not kept.
//!
//! Features built on PEP publish through [`publish_converted`] (XEP-0398 avatars from a vCard
//! PHOTO, XEP-0292 vCard4 from vcard-temp, XEP-0402 bookmarks from XEP-0048), and a change of a node
//! has the effects [`after_change`] lists (the avatar hash in presence, the XEP-0048 PEP view of the
//! bookmarks). The XEP-0048 node `storage:bookmarks` is that view, answered by `bookmarks_compat`.

pub mod access;
pub mod notify;
pub mod wire;

use std::sync::Arc;

use herald_storage::{PepCreate, PepItem, PepNode, PepPublish, StorageError};

use super::ClientSession;
use super::iq::{IqAnswer, IqError, IqRequest};
use super::{bookmarks_compat, vcard_avatar, vcard4};
use crate::config::PepSettings;
use crate::router::Router;
use crate::xmpp::{BareJid, DefinedCondition, Element, ns};
use access::{Requester, access_model, may_read_node, refusal};
use wire::{
    AccessModel, ConfigFields, MaxItems, NodeConfig, PUBSUB_EVENT, PUBSUB_OWNER, PubsubRequest,
    pubsub_error,
};

pub use notify::send_last_items;

/// The `http://jabber.org/protocol/pubsub#...` features of the service (XEP-0060 section 10), as
/// the account's disco#info lists them: exactly what is implemented.
pub const FEATURES: [&str; 23] = [
    "http://jabber.org/protocol/pubsub#access-open",
    "http://jabber.org/protocol/pubsub#access-presence",
    "http://jabber.org/protocol/pubsub#access-roster",
    "http://jabber.org/protocol/pubsub#access-whitelist",
    "http://jabber.org/protocol/pubsub#auto-create",
    "http://jabber.org/protocol/pubsub#config-node",
    "http://jabber.org/protocol/pubsub#config-node-max",
    "http://jabber.org/protocol/pubsub#create-and-configure",
    "http://jabber.org/protocol/pubsub#create-nodes",
    "http://jabber.org/protocol/pubsub#delete-items",
    "http://jabber.org/protocol/pubsub#delete-nodes",
    "http://jabber.org/protocol/pubsub#filtered-notifications",
    "http://jabber.org/protocol/pubsub#item-ids",
    "http://jabber.org/protocol/pubsub#last-published",
    "http://jabber.org/protocol/pubsub#multi-items",
    "http://jabber.org/protocol/pubsub#persistent-items",
    "http://jabber.org/protocol/pubsub#presence-notifications",
    "http://jabber.org/protocol/pubsub#publish",
    "http://jabber.org/protocol/pubsub#publish-options",
    "http://jabber.org/protocol/pubsub#purge-nodes",
    "http://jabber.org/protocol/pubsub#retract-items",
    "http://jabber.org/protocol/pubsub#retrieve-default",
    "http://jabber.org/protocol/pubsub#retrieve-items",
];

/// A pubsub request from the owner's own client (to their bare JID or without `to`).
pub async fn handle_own(
    router: &Arc<Router>,
    session: &ClientSession,
    request: &IqRequest<'_>,
) -> IqAnswer {
    let parsed = wire::parse(request.payload, request.is_set)?;
    let owner = session.bare.as_str();
    let result = match parsed {
        PubsubRequest::Items { node, .. } if node == bookmarks_compat::LEGACY => {
            return bookmarks_compat::legacy_pep_items(router, owner).await;
        }
        PubsubRequest::Publish { node, payload, .. } if node == bookmarks_compat::LEGACY => {
            return bookmarks_compat::legacy_pep_publish(router, session, payload).await;
        }
        PubsubRequest::Items {
            node,
            max_items,
            ids,
        } => items(router, owner, &Requester::OWNER, &node, max_items, &ids).await,
        PubsubRequest::Publish {
            node,
            id,
            payload,
            options,
        } => {
            let vcard = payload.as_ref().filter(|_| node == vcard4::NODE).cloned();
            let published = publish(
                router,
                owner,
                &node,
                id,
                payload.map(Payload::new),
                PublishOptions::Preconditions(options.as_ref()),
                Effects::All,
            )
            .await;
            // XEP-0292 beside XEP-0054: a vCard4 the client wrote reaches the vcard-temp too.
            if published.is_ok()
                && let Some(vcard) = &vcard
            {
                vcard4::merge_into_vcard_temp(router, owner, vcard).await;
            }
            published
        }
        PubsubRequest::Retract { node, id, notify } => {
            retract(router, owner, &node, &id, notify, Effects::All).await
        }
        PubsubRequest::Create { node, config } => create(router, owner, &node, config).await,
        PubsubRequest::GetConfiguration { node } => get_configuration(router, owner, &node).await,
        PubsubRequest::DefaultConfiguration => {
            let settings = &router.context.config.pep;
            let mut default = Element::builder("default", PUBSUB_OWNER).build();
            default.append_child(wire::config_form(
                &node_config(&default_node("")),
                settings.max_items_per_node,
            ));
            Ok(Some(wire::pubsub(PUBSUB_OWNER, default)))
        }
        PubsubRequest::Configure { node, config } => configure(router, owner, &node, &config).await,
        PubsubRequest::Delete { node } => delete(router, owner, &node).await,
        PubsubRequest::Purge { node } => purge(router, owner, &node).await,
    };
    result.map_err(IqError::from)
}

/// A pubsub request to `user`'s service from someone else: reading items, as the access model
/// allows; anything else is the owner's alone (XEP-0060 section 4.1, `forbidden`).
pub async fn handle_other(
    router: &Arc<Router>,
    user: &BareJid,
    request: &IqRequest<'_>,
) -> IqAnswer {
    let owner = user.to_string();
    match wire::parse(request.payload, request.is_set)? {
        PubsubRequest::Items {
            node,
            max_items,
            ids,
        } => {
            let requester_bare = request.from.to_bare().to_string();
            let item = router
                .context
                .storage
                .rosters
                .item(&owner, &requester_bare)
                .await
                .map_err(internal)?;
            let requester = Requester::contact(item.as_ref());
            items(router, &owner, &requester, &node, max_items, &ids)
                .await
                .map_err(IqError::from)
        }
        _ => Err(IqError::new(DefinedCondition::Forbidden)),
    }
}

/// The nodes `requester` may read, for disco#items on the account (XEP-0163 section 5).
pub async fn readable_nodes(
    router: &Arc<Router>,
    owner: &str,
    requester: Option<&BareJid>,
) -> Result<Vec<PepNode>, StorageError> {
    let storage = &router.context.storage;
    let nodes = storage.pep.nodes(owner).await?;
    let Some(requester) = requester else {
        return Ok(nodes);
    };
    let item = storage.rosters.item(owner, &requester.to_string()).await?;
    let requester = Requester::contact(item.as_ref());
    Ok(nodes
        .into_iter()
        .filter(|node| may_read_node(node, &requester))
        .collect())
}

/// disco#info on a node of `owner`'s service (XEP-0060 section 5.3): identity pubsub/leaf, for
/// whoever may read it (`requester` `None`: the owner); anyone else gets the same answer as for a
/// node that does not exist ([`access::refusal`]).
pub async fn node_info(
    router: &Arc<Router>,
    owner: &BareJid,
    requester: Option<&crate::xmpp::Jid>,
    node: &str,
) -> IqAnswer {
    let owner_key = owner.to_string();
    let storage = &router.context.storage;
    let requester_bare = requester
        .map(|jid| jid.to_bare())
        .filter(|bare| bare != owner);
    let item = match &requester_bare {
        Some(bare) => storage
            .rosters
            .item(&owner_key, &bare.to_string())
            .await
            .map_err(internal)?,
        None => None,
    };
    let requester = match requester_bare {
        Some(_) => Requester::contact(item.as_ref()),
        None => Requester::OWNER,
    };
    let stored = storage.pep.node(&owner_key, node).await.map_err(internal)?;
    let Some(stored) = stored.filter(|n| may_read_node(n, &requester)) else {
        return Err(IqError::new(refusal(&requester)));
    };
    let mut identity = Element::builder("identity", ns::DISCO_INFO).build();
    crate::xmpp::set_attribute(&mut identity, "category", "pubsub");
    crate::xmpp::set_attribute(&mut identity, "type", "leaf");
    if let Some(title) = &stored.title {
        crate::xmpp::set_attribute(&mut identity, "name", title);
    }
    let mut feature = Element::builder("feature", ns::DISCO_INFO).build();
    crate::xmpp::set_attribute(&mut feature, "var", ns::PUBSUB);
    let mut query = Element::builder("query", ns::DISCO_INFO)
        .append(identity)
        .append(feature)
        .build();
    crate::xmpp::set_attribute(&mut query, "node", node);
    Ok(Some(query))
}

/// An item's payload with its serialisation, made once: the size check (`[pep] max_item_bytes`),
/// storage and the notifications all use it (the notification carries the element itself, never
/// the stored text parsed back).
#[derive(Debug, Clone)]
pub struct Payload {
    element: Element,
    xml: String,
}

impl Payload {
    /// Serialises `element`.
    pub fn new(element: Element) -> Payload {
        let xml = String::from(&element);
        Payload { element, xml }
    }

    /// The size of the serialised payload, as `[pep] max_item_bytes` counts it.
    pub fn bytes(&self) -> usize {
        self.xml.len()
    }

    /// Whether it is over `max_item_bytes`: XEP-0060 section 7.1.3.4 `payload-too-big`.
    pub fn check_size(&self, max_item_bytes: usize) -> Result<(), IqError> {
        if self.bytes() > max_item_bytes {
            return Err(pubsub_error(
                DefinedCondition::NotAcceptable,
                Some("payload-too-big"),
            ));
        }
        Ok(())
    }
}

/// What the handlers fail with: an answer to send, or a storage failure.
enum Failure {
    Answer(IqError),
    Storage(StorageError),
}

impl From<IqError> for Failure {
    fn from(error: IqError) -> Failure {
        Failure::Answer(error)
    }
}

impl From<StorageError> for Failure {
    fn from(error: StorageError) -> Failure {
        Failure::Storage(error)
    }
}

impl From<Failure> for IqError {
    fn from(failure: Failure) -> IqError {
        match failure {
            Failure::Answer(error) => error,
            Failure::Storage(error) => internal(error),
        }
    }
}

/// The payload of the newest item of `owner`'s `node`, if the node exists, `requester` may read it
/// and the payload parses: what features built on PEP (vCard avatars, vCard4) read. Errors: storage.
pub async fn newest_readable(
    router: &Arc<Router>,
    owner: &str,
    node: &str,
    requester: &Requester<'_>,
) -> Result<Option<Element>, StorageError> {
    let pep = &router.context.storage.pep;
    let Some(stored) = pep.node(owner, node).await? else {
        return Ok(None);
    };
    if !may_read_node(&stored, requester) {
        return Ok(None);
    }
    let items = pep.items(owner, node, Some(1)).await?;
    Ok(items
        .into_iter()
        .next()
        .and_then(|item| item.payload.parse::<Element>().ok()))
}

fn internal(error: StorageError) -> IqError {
    tracing::error!(%error, "PEP storage failed");
    IqError::new(DefinedCondition::InternalServerError)
}

type Handled = Result<Option<Element>, Failure>;

/// A new node's configuration (XEP-0163 section 3: presence access, as Prosody's defaults: one
/// item, persisted, retractions notified, last item sent on presence).
fn default_node(name: &str) -> PepNode {
    PepNode {
        node: name.to_string(),
        access_model: AccessModel::Presence.as_str().to_string(),
        max_items: 1,
        persist_items: true,
        notify_retract: true,
        send_last_published_item: "on_sub_and_presence".to_string(),
        title: None,
        roster_groups: Vec::new(),
    }
}

fn node_config(node: &PepNode) -> NodeConfig {
    NodeConfig {
        access_model: access_model(node),
        max_items: node.max_items,
        persist_items: node.persist_items,
        notify_retract: node.notify_retract,
        send_last_published_item: node.send_last_published_item.clone(),
        title: node.title.clone(),
        roster_groups: node.roster_groups.clone(),
    }
}

/// `max_items` as a number within the limit; beyond it is `not-acceptable` (as Prosody answers a
/// configuration its checks refuse).
fn resolve_max_items(max_items: MaxItems, settings: &PepSettings) -> Result<u32, IqError> {
    match max_items {
        MaxItems::Max => Ok(settings.max_items_per_node),
        MaxItems::Count(n) if n >= 1 && n <= settings.max_items_per_node => Ok(n),
        MaxItems::Count(_) => Err(IqError::with_text(
            DefinedCondition::NotAcceptable,
            &format!(
                "pubsub#max_items must be between 1 and {}",
                settings.max_items_per_node
            ),
        )),
    }
}

/// `node` with the fields of `config` applied. Errors: a value over a limit.
fn configured(
    mut node: PepNode,
    config: &ConfigFields,
    settings: &PepSettings,
) -> Result<PepNode, IqError> {
    if let Some(model) = config.access_model {
        node.access_model = model.as_str().to_string();
    }
    if let Some(max_items) = config.max_items {
        node.max_items = resolve_max_items(max_items, settings)?;
    }
    if let Some(persist) = config.persist_items {
        node.persist_items = persist;
    }
    if let Some(notify) = config.notify_retract {
        node.notify_retract = notify;
    }
    if let Some(send_last) = &config.send_last_published_item {
        node.send_last_published_item = send_last.clone();
    }
    if let Some(title) = &config.title {
        node.title = (!title.is_empty()).then(|| title.clone());
    }
    if let Some(groups) = &config.roster_groups {
        node.roster_groups = groups.clone();
    }
    Ok(node)
}

/// The first publish-options field the node does not match (XEP-0060 section 7.1.5), by name.
fn unmet_precondition(
    node: &PepNode,
    options: &ConfigFields,
    settings: &PepSettings,
) -> Option<&'static str> {
    if options
        .access_model
        .is_some_and(|model| model.as_str() != node.access_model)
    {
        return Some("pubsub#access_model");
    }
    if let Some(max_items) = options.max_items
        && resolve_max_items(max_items, settings).ok() != Some(node.max_items)
    {
        return Some("pubsub#max_items");
    }
    if options
        .persist_items
        .is_some_and(|persist| persist != node.persist_items)
    {
        return Some("pubsub#persist_items");
    }
    if options
        .notify_retract
        .is_some_and(|notify| notify != node.notify_retract)
    {
        return Some("pubsub#notify_retract");
    }
    if options
        .send_last_published_item
        .as_ref()
        .is_some_and(|send_last| *send_last != node.send_last_published_item)
    {
        return Some("pubsub#send_last_published_item");
    }
    if let Some(title) = &options.title
        && node.title.as_deref().unwrap_or("") != title
    {
        return Some("pubsub#title");
    }
    if options
        .roster_groups
        .as_ref()
        .is_some_and(|groups| *groups != node.roster_groups)
    {
        return Some("pubsub#roster_groups_allowed");
    }
    None
}

/// Section 6.5: the newest `max_items` (oldest first in the answer, as Prosody orders them) or the
/// items named by id.
async fn items(
    router: &Arc<Router>,
    owner: &str,
    requester: &Requester<'_>,
    node: &str,
    max_items: Option<usize>,
    ids: &[String],
) -> Handled {
    let pep = &router.context.storage.pep;
    let Some(stored) = pep.node(owner, node).await? else {
        return Err(IqError::new(refusal(requester)).into());
    };
    if !may_read_node(&stored, requester) {
        return Err(IqError::new(refusal(requester)).into());
    }
    let mut found = if ids.is_empty() {
        pep.items(owner, node, max_items).await?
    } else {
        pep.items_by_id(owner, node, ids).await?
    };
    found.reverse();
    let mut answer = wire::with_node("items", ns::PUBSUB, node);
    for item in &found {
        answer.append_child(wire::item(ns::PUBSUB, &item.id, &item.payload));
    }
    Ok(Some(wire::pubsub(ns::PUBSUB, answer)))
}

/// What a publish does with the options it carries.
enum PublishOptions<'a> {
    /// A client's publish-options (XEP-0060 section 7.1.5): the configuration of a node the publish
    /// creates, preconditions on an existing one.
    Preconditions(Option<&'a ConfigFields>),
    /// A conversion's: the configuration of a node the publish creates; an existing node is used as
    /// its owner configured it.
    CreateWith(&'a ConfigFields),
}

/// Publishes `payload` as item `id` of `owner`'s `node` for a feature that converts from another
/// protocol (XEP-0398 avatars, XEP-0292 vCard4, XEP-0402 bookmarks): through the service, so the
/// limits, notifications and the effects of a publish apply, with `create_with` the configuration of
/// a node it creates. Errors: what the service would answer the owner.
pub async fn publish_converted(
    router: &Arc<Router>,
    owner: &str,
    node: &str,
    id: &str,
    payload: Payload,
    create_with: &ConfigFields,
) -> Result<(), IqError> {
    publish_on_behalf(router, owner, node, id, payload, create_with, Effects::All).await
}

/// [`publish_converted`] and [`publish_mirrored`]: a publish through the service with `effects`.
async fn publish_on_behalf(
    router: &Arc<Router>,
    owner: &str,
    node: &str,
    id: &str,
    payload: Payload,
    create_with: &ConfigFields,
    effects: Effects,
) -> Result<(), IqError> {
    publish(
        router,
        owner,
        node,
        Some(id.to_string()),
        Some(payload),
        PublishOptions::CreateWith(create_with),
        effects,
    )
    .await
    .map(|_| ())
    .map_err(IqError::from)
}

/// What a change has beyond its own notifications ([`after_change`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effects {
    All,
    /// All but the XEP-0048 PEP view of the bookmarks, which `bookmarks_compat` sends once after
    /// all the changes of one write (one list, not one per changed item).
    AllButLegacyBookmarks,
}

/// Like [`publish_converted`], for `bookmarks_compat` bringing the XEP-0402 node in line with a
/// XEP-0048 list: the item is notified on `node` as any publish, and the caller sends the XEP-0048
/// view once when it is done ([`bookmarks_compat::notify_legacy_pep`]). Errors: as the service.
pub async fn publish_mirrored(
    router: &Arc<Router>,
    owner: &str,
    node: &str,
    id: &str,
    payload: Payload,
    create_with: &ConfigFields,
) -> Result<(), IqError> {
    let effects = Effects::AllButLegacyBookmarks;
    publish_on_behalf(router, owner, node, id, payload, create_with, effects).await
}

/// Retracts item `id` of `owner`'s `node` with notification (XEP-0402 asks retractions to be
/// notified), for `bookmarks_compat` as [`publish_mirrored`]. Errors: as the service.
pub async fn retract_mirrored(
    router: &Arc<Router>,
    owner: &str,
    node: &str,
    id: &str,
) -> Result<(), IqError> {
    retract(
        router,
        owner,
        node,
        id,
        true,
        Effects::AllButLegacyBookmarks,
    )
    .await
    .map(|_| ())
    .map_err(IqError::from)
}

/// What a change of `owner`'s `node` means beyond its own notifications: a new or removed avatar goes
/// into the owner's presence (XEP-0398 section 4), and a change of bookmarks reaches the clients that read
/// them through the XEP-0048 PEP node (XEP-0402, Compatibility). `published`: the new item's payload (`None`: items were removed).
async fn after_change(
    router: &Arc<Router>,
    owner: &str,
    node: &str,
    published: Option<&Element>,
    effects: Effects,
) {
    if node == vcard_avatar::METADATA {
        match published {
            Some(metadata) => vcard_avatar::avatar_changed(router, owner, metadata),
            // Retracted, purged or deleted: the avatar is the newest metadata left, or none, and
            // then presence carries an empty `<photo/>` (XEP-0153 section 4.3).
            None => match newest_readable(router, owner, node, &Requester::OWNER).await {
                Ok(Some(metadata)) => vcard_avatar::avatar_changed(router, owner, &metadata),
                Ok(None) => vcard_avatar::avatar_removed(router, owner),
                Err(e) => tracing::error!(error = %e, "reading the avatar metadata failed"),
            },
        }
    }
    if node == bookmarks_compat::BOOKMARKS2 && effects == Effects::All {
        bookmarks_compat::notify_legacy_pep(router, owner).await;
    }
}

/// Section 7.1 (and XEP-0163 section 3: the node is created on first publish, with publish-options
/// as its configuration).
async fn publish(
    router: &Arc<Router>,
    owner: &str,
    node: &str,
    id: Option<String>,
    payload: Option<Payload>,
    options: PublishOptions<'_>,
    effects: Effects,
) -> Handled {
    let settings = &router.context.config.pep;
    let pep = &router.context.storage.pep;
    if let Some(payload) = &payload {
        payload.check_size(settings.max_item_bytes)?;
    }
    let (preconditions, create_with) = match options {
        PublishOptions::Preconditions(options) => (options, options),
        PublishOptions::CreateWith(config) => (None, Some(config)),
    };
    let stored = match pep.node(owner, node).await? {
        Some(stored) => {
            if let Some(options) = preconditions
                && let Some(field) = unmet_precondition(&stored, options, settings)
            {
                let mut error =
                    pubsub_error(DefinedCondition::Conflict, Some("precondition-not-met"));
                error.text = Some(format!("Field does not match: {field}"));
                return Err(error.into());
            }
            stored
        }
        None => {
            let fresh = match create_with {
                Some(options) => configured(default_node(node), options, settings)?,
                None => default_node(node),
            };
            create_node(router, owner, &fresh).await?;
            // A node created meanwhile by another resource is used as it is.
            pep.node(owner, node)
                .await?
                .ok_or_else(|| IqError::new(DefinedCondition::ItemNotFound))?
        }
    };
    let id = id.unwrap_or_else(|| format!("{:032x}", rand::random::<u128>()));
    let (element, payload_xml) = match payload {
        Some(Payload { element, xml }) => (Some(element), xml),
        None => (None, String::new()),
    };
    let item = PepItem {
        id: id.clone(),
        payload: payload_xml,
        publisher: owner.to_string(),
        published_at_ms: now_ms(),
    };
    // XEP-0060 section 4.3 and 16.4.3 (`pubsub#persist_items` false): a transient node keeps no
    // item; the notification carries it and is all there is of it.
    if stored.persist_items {
        match pep.publish(owner, node, &item).await? {
            PepPublish::Stored { .. } => {}
            // Deleted between the read and the write.
            PepPublish::NoNode => return Err(IqError::new(DefinedCondition::ItemNotFound).into()),
        }
    }
    let mut event_item = Element::builder("item", PUBSUB_EVENT).build();
    crate::xmpp::set_attribute(&mut event_item, "id", &item.id);
    if let Some(element) = &element {
        event_item.append_child(element.clone());
    }
    notify::broadcast(router, owner, &stored, &event_item).await;
    after_change(router, owner, node, element.as_ref(), effects).await;
    let mut publish = wire::with_node("publish", ns::PUBSUB, node);
    let mut answer_item = Element::builder("item", ns::PUBSUB).build();
    crate::xmpp::set_attribute(&mut answer_item, "id", &id);
    publish.append_child(answer_item);
    Ok(Some(wire::pubsub(ns::PUBSUB, publish)))
}

/// Creates `node`, within `[pep] max_nodes_per_account` (`policy-violation` beyond it). An existing
/// node of that name is left as it is.
async fn create_node(router: &Arc<Router>, owner: &str, node: &PepNode) -> Result<bool, Failure> {
    let limit = router.context.config.pep.max_nodes_per_account;
    match router
        .context
        .storage
        .pep
        .create_node(owner, node, limit)
        .await?
    {
        PepCreate::Created => Ok(true),
        PepCreate::Exists => Ok(false),
        PepCreate::LimitReached => Err(IqError::with_text(
            DefinedCondition::PolicyViolation,
            &format!("At most {limit} nodes per account"),
        )
        .into()),
    }
}

/// Section 7.2: an item is removed; retractions are notified if the node asks for it
/// (`pubsub#notify_retract`) or the request does (`notify`).
async fn retract(
    router: &Arc<Router>,
    owner: &str,
    node: &str,
    id: &str,
    notify: bool,
    effects: Effects,
) -> Handled {
    let pep = &router.context.storage.pep;
    let Some(stored) = pep.node(owner, node).await? else {
        return Err(IqError::new(DefinedCondition::ItemNotFound).into());
    };
    if !pep.retract(owner, node, id).await? {
        return Err(IqError::new(DefinedCondition::ItemNotFound).into());
    }
    if stored.notify_retract || notify {
        notify::broadcast(router, owner, &stored, &wire::retract(id)).await;
    }
    after_change(router, owner, node, None, effects).await;
    Ok(None)
}

/// Section 8.1: a node with a name (PEP has no instant nodes), configured by the optional form.
async fn create(
    router: &Arc<Router>,
    owner: &str,
    node: &str,
    config: Option<ConfigFields>,
) -> Handled {
    let settings = &router.context.config.pep;
    let fresh = match &config {
        Some(config) => configured(default_node(node), config, settings)?,
        None => default_node(node),
    };
    if !create_node(router, owner, &fresh).await? {
        // Section 8.1.3.
        return Err(IqError::new(DefinedCondition::Conflict).into());
    }
    Ok(None)
}

/// Section 8.2.1: the node's configuration form.
async fn get_configuration(router: &Arc<Router>, owner: &str, node: &str) -> Handled {
    let settings = &router.context.config.pep;
    let Some(stored) = router.context.storage.pep.node(owner, node).await? else {
        return Err(IqError::new(DefinedCondition::ItemNotFound).into());
    };
    let mut configure = wire::with_node("configure", PUBSUB_OWNER, node);
    configure.append_child(wire::config_form(
        &node_config(&stored),
        settings.max_items_per_node,
    ));
    Ok(Some(wire::pubsub(PUBSUB_OWNER, configure)))
}

/// Section 8.2.4: the submitted fields replace the node's; a smaller `max_items` removes the oldest
/// items at once, and `persist_items` false all of them.
async fn configure(
    router: &Arc<Router>,
    owner: &str,
    node: &str,
    config: &ConfigFields,
) -> Handled {
    let settings = &router.context.config.pep;
    let pep = &router.context.storage.pep;
    let Some(stored) = pep.node(owner, node).await? else {
        return Err(IqError::new(DefinedCondition::ItemNotFound).into());
    };
    let updated = configured(stored, config, settings)?;
    if pep.configure_node(owner, &updated).await?.is_none() {
        return Err(IqError::new(DefinedCondition::ItemNotFound).into());
    }
    if !updated.persist_items {
        // A node made transient keeps nothing from before either (XEP-0060 section 16.4.3).
        pep.purge(owner, node).await?;
    }
    Ok(None)
}

/// Section 8.4: the node and its items go; whoever gets its notifications hears of it (8.4.2).
async fn delete(router: &Arc<Router>, owner: &str, node: &str) -> Handled {
    let pep = &router.context.storage.pep;
    let Some(stored) = pep.node(owner, node).await? else {
        return Err(IqError::new(DefinedCondition::ItemNotFound).into());
    };
    if !pep.delete_node(owner, node).await? {
        return Err(IqError::new(DefinedCondition::ItemNotFound).into());
    }
    send_node_event(router, owner, &stored, "delete").await;
    after_change(router, owner, node, None, Effects::All).await;
    Ok(None)
}

/// Section 8.5: every item goes; whoever gets the node's notifications hears of it (8.5.2).
async fn purge(router: &Arc<Router>, owner: &str, node: &str) -> Handled {
    let pep = &router.context.storage.pep;
    let Some(stored) = pep.node(owner, node).await? else {
        return Err(IqError::new(DefinedCondition::ItemNotFound).into());
    };
    pep.purge(owner, node).await?;
    send_node_event(router, owner, &stored, "purge").await;
    after_change(router, owner, node, None, Effects::All).await;
    Ok(None)
}

/// `<event><delete node/></event>` or `<purge node/>` to the node's recipients.
async fn send_node_event(router: &Arc<Router>, owner: &str, node: &PepNode, kind: &str) {
    let recipients = match notify::recipients(router, owner, node).await {
        Ok(recipients) => recipients,
        Err(e) => {
            tracing::error!(error = %e, "loading a roster for PEP notifications failed");
            return;
        }
    };
    for to in recipients {
        let child = wire::with_node(kind, PUBSUB_EVENT, &node.node);
        let event = Element::builder("event", PUBSUB_EVENT)
            .append(child)
            .build();
        let mut message = Element::builder("message", ns::CLIENT)
            .append(event)
            .build();
        for (name, value) in [("type", "headline"), ("from", owner), ("to", to.as_str())] {
            crate::xmpp::set_attribute(&mut message, name, value);
        }
        router.send(message).await;
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> PepSettings {
        PepSettings {
            max_nodes_per_account: 10,
            max_items_per_node: 50,
            max_item_bytes: 4096,
        }
    }

    #[test]
    fn publish_options_are_preconditions() {
        let mut node = default_node("n");
        node.access_model = "open".into();
        node.max_items = 50;
        let options = |f: fn(&mut ConfigFields)| {
            let mut fields = ConfigFields::default();
            f(&mut fields);
            fields
        };
        // (options, the field reported as unmet)
        let cases: [(ConfigFields, Option<&str>); 8] = [
            (ConfigFields::default(), None),
            (options(|o| o.access_model = Some(AccessModel::Open)), None),
            (options(|o| o.max_items = Some(MaxItems::Max)), None),
            (options(|o| o.max_items = Some(MaxItems::Count(50))), None),
            (
                options(|o| o.access_model = Some(AccessModel::Whitelist)),
                Some("pubsub#access_model"),
            ),
            (
                options(|o| o.max_items = Some(MaxItems::Count(10))),
                Some("pubsub#max_items"),
            ),
            (
                options(|o| o.send_last_published_item = Some("never".into())),
                Some("pubsub#send_last_published_item"),
            ),
            (
                options(|o| o.persist_items = Some(false)),
                Some("pubsub#persist_items"),
            ),
        ];
        for (n, (fields, expected)) in cases.iter().enumerate() {
            assert_eq!(
                unmet_precondition(&node, fields, &settings()),
                *expected,
                "case {n}"
            );
        }
    }

    #[test]
    fn a_configuration_beyond_the_limits_is_refused() {
        for max_items in [MaxItems::Count(0), MaxItems::Count(51)] {
            let fields = ConfigFields {
                max_items: Some(max_items),
                ..ConfigFields::default()
            };
            let refused = configured(default_node("n"), &fields, &settings());
            assert!(
                matches!(&refused, Err(e) if e.condition == DefinedCondition::NotAcceptable),
                "{max_items:?}"
            );
        }
        let fields = ConfigFields {
            max_items: Some(MaxItems::Max),
            access_model: Some(AccessModel::Roster),
            roster_groups: Some(vec!["Friends".into()]),
            title: Some(String::new()),
            ..ConfigFields::default()
        };
        let node = configured(default_node("n"), &fields, &settings()).expect("valid");
        assert_eq!(node.max_items, 50, "max is the limit");
        assert_eq!(node.access_model, "roster");
        assert_eq!(node.roster_groups, ["Friends"]);
        assert_eq!(node.title, None, "an empty title is none");
    }
}
