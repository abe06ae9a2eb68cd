//! XEP-0191: Blocking Command. Users block JIDs (bare, full or whole domains); nothing from a blocked entity
//! reaches them (section 3.3, enforced in the router) and they cannot send to one (section 3.4).
//!
//! Block lists are read on every delivery, so they are cached per account in the server context
//! (`context::block_lists`) and invalidated here on change.

use std::sync::Arc;

use super::ClientSession;
use super::iq::{IqAnswer, IqError, IqRequest};
use crate::router::Router;
use crate::xmpp::Envelope;
use crate::xmpp::{DefinedCondition, Element, Jid, WireStanza, ns, set_attribute};
use herald_storage::StorageError;

/// Whether the session's user blocked `to` (section 3.4). Errors: the list could not be read.
pub async fn is_blocked_by_sender(
    router: &Arc<Router>,
    session: &ClientSession,
    to: &Jid,
) -> Result<bool, StorageError> {
    router
        .context
        .block_lists
        .is_blocked(&router.context.storage, &session.bare, to)
        .await
}

/// The error for a stanza sent to a blocked JID: `<not-acceptable/>` with `<blocked/>` (section 3.4).
pub fn blocked_error_reply(envelope: &Envelope) -> Option<Element> {
    let mut reply = envelope.error_reply(DefinedCondition::NotAcceptable, None)?;
    if let Some(error) = reply.get_child_mut("error", ns::CLIENT) {
        error.append_child(Element::builder("blocked", ns::BLOCKING_ERRORS).build());
    }
    Some(reply)
}

/// blocklist get, block and unblock sets (sections 3.1 to 3.5).
pub async fn handle(
    router: &Arc<Router>,
    session: &ClientSession,
    request: &IqRequest<'_>,
) -> IqAnswer {
    let payload = request.payload;
    let storage = &router.context.storage.block_lists;
    let internal = |e: herald_storage::StorageError| {
        tracing::error!(error = %e, "block list storage failed");
        IqError::new(DefinedCondition::InternalServerError)
    };
    match (request.is_set, payload.name()) {
        (false, "blocklist") => {
            let mut list = Element::builder("blocklist", ns::BLOCKING).build();
            for jid in storage.list(&session.bare).await.map_err(internal)? {
                list.append_child(item(&jid));
            }
            Ok(Some(list))
        }
        (true, "block") => {
            let jids = item_jids(payload)?;
            if jids.is_empty() {
                // Section 3.3: a block without items is a bad request.
                return Err(IqError::new(DefinedCondition::BadRequest));
            }
            // `[limits] max_block_list_items`: XEP-0191 names no condition for a full list; a block
            // that would pass the limit is refused whole with `<not-acceptable/>` (type `modify`:
            // fewer items may fit), nothing of it stored. Counted before the write, so concurrent
            // blocks from two resources may pass the limit by what races.
            let current = storage.list(&session.bare).await.map_err(internal)?;
            let mut added: Vec<&String> = jids.iter().filter(|j| !current.contains(j)).collect();
            added.sort_unstable();
            added.dedup();
            if current.len() + added.len() > router.context.config.max_block_list_items {
                return Err(IqError::with_text(
                    DefinedCondition::NotAcceptable,
                    &format!(
                        "The block list is full (at most {} items)",
                        router.context.config.max_block_list_items
                    ),
                ));
            }
            storage
                .block(&session.bare, &jids)
                .await
                .map_err(internal)?;
            router.context.block_lists.invalidate(&session.bare);
            push_change(router, session, payload).await;
            send_unavailable_to(router, session, &jids);
            Ok(None)
        }
        (true, "unblock") => {
            let jids = item_jids(payload)?;
            if jids.is_empty() {
                storage.unblock_all(&session.bare).await.map_err(internal)?;
            } else {
                storage
                    .unblock(&session.bare, &jids)
                    .await
                    .map_err(internal)?;
            }
            router.context.block_lists.invalidate(&session.bare);
            push_change(router, session, payload).await;
            Ok(None)
        }
        _ => Err(IqError::new(DefinedCondition::BadRequest)),
    }
}

fn item(jid: &str) -> Element {
    let mut item = Element::builder("item", ns::BLOCKING).build();
    set_attribute(&mut item, "jid", jid);
    item
}

fn item_jids(payload: &Element) -> Result<Vec<String>, IqError> {
    payload
        .children()
        .filter(|c| c.is("item", ns::BLOCKING))
        .map(|c| {
            let raw = c
                .attr("jid")
                .ok_or_else(|| IqError::new(DefinedCondition::BadRequest))?;
            Jid::new(raw)
                .map(|jid| jid.to_string())
                .map_err(|_| IqError::new(DefinedCondition::JidMalformed))
        })
        .collect()
}

/// Section 3.3 and 3.4: every resource of the user learns about the change.
async fn push_change(router: &Arc<Router>, session: &ClientSession, payload: &Element) {
    for resource in router.sessions.resources(&session.bare) {
        let mut push = Element::builder("iq", ns::CLIENT)
            .append(payload.clone())
            .build();
        let to = format!("{}/{}", session.bare, resource.resource);
        for (name, value) in [("type", "set"), ("id", "block-push"), ("to", to.as_str())] {
            set_attribute(&mut push, name, value);
        }
        router
            .deliver(
                &session.bare,
                &resource.resource,
                &resource.handle,
                &WireStanza::for_client_stream(&push),
            )
            .await;
    }
}

/// Section 3.3: a blocked contact stops seeing the user's presence.
fn send_unavailable_to(router: &Arc<Router>, session: &ClientSession, jids: &[String]) {
    for resource in router.sessions.resources(&session.bare) {
        if !resource.view.is_available {
            continue;
        }
        for jid in jids {
            let mut presence = Element::builder("presence", ns::CLIENT).build();
            let from = format!("{}/{}", session.bare, resource.resource);
            for (name, value) in [
                ("type", "unavailable"),
                ("from", from.as_str()),
                ("to", jid.as_str()),
            ] {
                set_attribute(&mut presence, name, value);
            }
            router.send_detached(presence);
        }
    }
}
