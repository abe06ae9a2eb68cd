//! RFC 6121 section 2: roster get, set and remove, roster pushes to every interested resource (2.1.6) and
//! roster versioning (2.6). Subscription states change only through presence (section 3, [`super::presence`]);
//! a client's `subscription` and `ask` attributes in a set are ignored (2.1.2.5, 2.3.2).

use std::sync::Arc;

use super::ClientSession;
use super::iq::{IqAnswer, IqError, IqRequest};
use crate::router::Router;
use crate::xmpp::{BareJid, DefinedCondition, Element, Jid, WireStanza, ns, set_attribute};
use herald_storage::{RosterItem, StorageError, Subscription};

/// Longest roster group name accepted (RFC 6121 section 2.1.2.4 lets the server set a limit).
const MAX_GROUP_NAME_CHARS: usize = 1024;

/// A roster get or set from the user's own client.
pub async fn handle(
    router: &Arc<Router>,
    session: &ClientSession,
    request: &IqRequest<'_>,
) -> IqAnswer {
    if !request.payload.is("query", ns::ROSTER) {
        return Err(IqError::new(DefinedCondition::BadRequest));
    }
    if request.is_set {
        set(router, session, request.payload).await
    } else {
        get(router, session, request.payload).await
    }
}

async fn get(router: &Arc<Router>, session: &ClientSession, query: &Element) -> IqAnswer {
    // 2.1.6: requesting the roster makes this resource "interested" in pushes.
    router
        .sessions
        .set_interested(&session.bare, session.jid.resource().as_str());
    let (version, items) = router
        .context
        .storage
        .rosters
        .items(&session.bare)
        .await
        .map_err(internal)?;
    let version = version.to_string();
    // 2.6.3: the client's version is current, so an empty result; changes come as pushes.
    if query.attr("ver") == Some(version.as_str()) {
        return Ok(None);
    }
    let mut result = Element::builder("query", ns::ROSTER).build();
    set_attribute(&mut result, "ver", &version);
    for item in items.iter().filter(|i| i.in_roster) {
        result.append_child(item_element(item));
    }
    Ok(Some(result))
}

async fn set(router: &Arc<Router>, session: &ClientSession, query: &Element) -> IqAnswer {
    // 2.3.3: exactly one item.
    let mut items = query.children().filter(|c| c.is("item", ns::ROSTER));
    let (Some(item), None) = (items.next(), items.next()) else {
        return Err(IqError::new(DefinedCondition::BadRequest));
    };
    let contact = item
        .attr("jid")
        .ok_or_else(|| IqError::new(DefinedCondition::BadRequest))
        .and_then(|raw| Jid::new(raw).map_err(|_| IqError::new(DefinedCondition::JidMalformed)))?;
    if contact.resource().is_some() {
        return Err(IqError::new(DefinedCondition::JidMalformed));
    }
    let contact = contact.to_bare();
    let owner = session.bare_jid();
    if item.attr("subscription") == Some("remove") {
        return remove(router, &owner, &contact).await;
    }
    let mut groups: Vec<String> = Vec::new();
    for group in item.children().filter(|c| c.is("group", ns::ROSTER)) {
        let name = group.text();
        // 2.3.3: empty group names are not-acceptable, duplicates are bad-request.
        if name.is_empty() || name.chars().count() > MAX_GROUP_NAME_CHARS {
            return Err(IqError::new(DefinedCondition::NotAcceptable));
        }
        if groups.contains(&name) {
            return Err(IqError::new(DefinedCondition::BadRequest));
        }
        groups.push(name);
    }
    let owner_key = owner.to_string();
    // A subscription change to the same item must not be overwritten by this one (`Router::roster_gates`).
    let _roster_gate = router.roster_gates.lock(&owner_key).await;
    let existing = router
        .context
        .storage
        .rosters
        .item(&owner_key, &contact.to_string())
        .await
        .map_err(internal)?;
    if existing.is_none() && !has_room(router, &owner_key).await.map_err(internal)? {
        return Err(roster_full(router));
    }
    let mut updated = existing.unwrap_or_else(|| RosterItem {
        contact: contact.to_string(),
        ..RosterItem::default()
    });
    updated.name = item
        .attr("name")
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    updated.groups = groups;
    updated.in_roster = true;
    let version = router
        .context
        .storage
        .rosters
        .upsert(&owner_key, &updated)
        .await
        .map_err(internal)?;
    push(router, &owner_key, item_element(&updated), version).await;
    Ok(None)
}

/// Removes a contact (2.5): cancels subscriptions both ways first (2.5.2), then pushes the removal.
pub async fn remove(router: &Arc<Router>, owner: &BareJid, contact: &BareJid) -> IqAnswer {
    let owner_key = owner.to_string();
    let contact_key = contact.to_string();
    let roster_gate = router.roster_gates.lock(&owner_key).await;
    let Some(existing) = router
        .context
        .storage
        .rosters
        .item(&owner_key, &contact_key)
        .await
        .map_err(internal)?
    else {
        return Err(IqError::new(DefinedCondition::ItemNotFound));
    };
    let mut cancel = Vec::new();
    if matches!(existing.subscription, Subscription::To | Subscription::Both)
        || existing.pending_out
    {
        cancel.push("unsubscribe");
    }
    if matches!(
        existing.subscription,
        Subscription::From | Subscription::Both
    ) || existing.pending_in
    {
        cancel.push("unsubscribed");
    }
    let Some(version) = router
        .context
        .storage
        .rosters
        .remove(&owner_key, &contact_key)
        .await
        .map_err(internal)?
    else {
        return Err(IqError::new(DefinedCondition::ItemNotFound));
    };
    drop(roster_gate);
    router
        .context
        .remote_resources
        .forget_contact(&owner_key, &contact_key);
    for kind in cancel {
        let mut presence = Element::builder("presence", ns::CLIENT).build();
        for (name, value) in [
            ("type", kind),
            ("from", owner_key.as_str()),
            ("to", contact_key.as_str()),
        ] {
            set_attribute(&mut presence, name, value);
        }
        router.send(presence).await;
        // 3.2.2: a cancelled subscriber sees the user go offline, as when the client sends 'unsubscribed'.
        if kind == "unsubscribed" {
            super::presence::send_unavailable(router, &owner_key, contact).await;
        }
    }
    let mut removed = Element::builder("item", ns::ROSTER).build();
    set_attribute(&mut removed, "jid", &contact_key);
    set_attribute(&mut removed, "subscription", "remove");
    push(router, &owner_key, removed, version).await;
    Ok(None)
}

/// Sends a roster push (2.1.6) carrying `item` at `version` to every interested resource of `owner`.
pub async fn push(router: &Arc<Router>, owner: &str, item: Element, version: u64) {
    for resource in router.sessions.resources(owner) {
        if !resource.is_interested {
            continue;
        }
        let mut query = Element::builder("query", ns::ROSTER)
            .append(item.clone())
            .build();
        set_attribute(&mut query, "ver", &version.to_string());
        let mut iq = Element::builder("iq", ns::CLIENT).append(query).build();
        let to = format!("{owner}/{}", resource.resource);
        let id = format!("push{version}");
        for (name, value) in [("type", "set"), ("id", id.as_str()), ("to", to.as_str())] {
            set_attribute(&mut iq, name, value);
        }
        router
            .deliver(
                owner,
                &resource.resource,
                &resource.handle,
                &WireStanza::for_client_stream(&iq),
            )
            .await;
    }
}

/// The wire form of a roster item (2.1.2): jid, name, subscription, ask and approved attributes, groups.
pub fn item_element(item: &RosterItem) -> Element {
    let mut element = Element::builder("item", ns::ROSTER).build();
    set_attribute(&mut element, "jid", &item.contact);
    if let Some(name) = &item.name {
        set_attribute(&mut element, "name", name);
    }
    set_attribute(&mut element, "subscription", item.subscription.as_str());
    if item.pending_out {
        set_attribute(&mut element, "ask", "subscribe");
    }
    if item.pre_approved {
        set_attribute(&mut element, "approved", "true");
    }
    for group in &item.groups {
        element.append_child(
            Element::builder("group", ns::ROSTER)
                .append(group.as_str())
                .build(),
        );
    }
    element
}

/// Whether `owner`'s roster can take one more item (`[limits] max_roster_items`, hidden pending-in items
/// included, so a flood of subscription requests cannot grow it either). Counted before the insert, so
/// concurrent additions may pass the limit by the few that race.
pub async fn has_room(router: &Arc<Router>, owner: &str) -> Result<bool, StorageError> {
    let items = router.context.storage.rosters.count(owner).await?;
    Ok(items < u64::try_from(router.context.config.max_roster_items).unwrap_or(u64::MAX))
}

/// The user's own addition to a full roster: `<not-allowed/>` (RFC 6120 section 8.3.3.10, type
/// `cancel`: retrying does not help until an item is removed). RFC 6121 section 2.3.3 names no
/// condition for a size limit.
pub fn roster_full(router: &Arc<Router>) -> IqError {
    IqError::with_text(
        DefinedCondition::NotAllowed,
        &format!(
            "The roster is full (at most {} items)",
            router.context.config.max_roster_items
        ),
    )
}

fn internal(e: StorageError) -> IqError {
    tracing::error!(error = %e, "roster storage failed");
    IqError::new(DefinedCondition::InternalServerError)
}
