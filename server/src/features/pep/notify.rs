//! Who hears of a PEP node (XEP-0163 section 4.3 filtered notifications, section 6.2 last published
//! item): the available resources, of the owner and of the contacts the access model allows, whose
//! verified entity capabilities (XEP-0115, [`crate::context::CapsCache`]) list `node+notify`. Local
//! contacts' resources are their sessions; remote contacts' are those whose servers sent the owner
//! their presence with caps ([`crate::context::RemoteResources`]); notifications to them go across
//! the federation.
//! Every notification is a headline message from the owner's bare JID routed like any other stanza
//! (`Router::send`), so block lists, stream management and delivery events apply.

use std::collections::BTreeSet;
use std::sync::Arc;

use herald_storage::{PepNode, RosterItem, StorageError, Subscription};

use super::access::{Requester, access_model, may_read, may_read_node};
use super::wire::{self, PUBSUB_EVENT};
use crate::router::Router;
use crate::xmpp::{BareJid, Element, FullJid};

/// Whether the available resource `full` asked for notifications of `node`.
fn wants(router: &Router, full: &str, node: &str) -> bool {
    router
        .context
        .caps
        .of(full)
        .is_some_and(|caps| caps.notify.contains(node))
}

/// The available resources of local user `bare` that want `node`.
pub(crate) fn interested_resources(router: &Router, bare: &str, node: &str) -> Vec<String> {
    router
        .sessions
        .resources(bare)
        .into_iter()
        .filter(|r| r.view.is_available)
        .map(|r| format!("{bare}/{}", r.resource))
        .filter(|full| wants(router, full, node))
        .collect()
}

/// What a roster item says of its contact, for the access decision.
fn requester_of(item: &RosterItem) -> Requester<'_> {
    Requester::contact(Some(item))
}

/// The resources of the remote contact `contact` tracked for `owner` whose verified caps want `node`.
fn interested_remote_resources(
    router: &Router,
    owner: &str,
    contact: &str,
    node: &str,
) -> Vec<String> {
    let caps = &router.context.caps;
    router
        .context
        .remote_resources
        .of_contact(owner, contact)
        .into_iter()
        .filter(|(_, ver)| caps.of_ver(ver).is_some_and(|c| c.notify.contains(node)))
        .map(|(full, _)| full)
        .collect()
}

/// The full JIDs that get notifications of `node` of `owner`: its own resources, and those of the
/// contacts the access model allows, local ones from their sessions and remote ones from the
/// presence their servers sent (`RemoteResources`). Errors: the owner's roster could not be read.
pub async fn recipients(
    router: &Arc<Router>,
    owner: &str,
    node: &PepNode,
) -> Result<Vec<String>, StorageError> {
    let model = access_model(node);
    let mut out = interested_resources(router, owner, &node.node);
    let has_remote = !router.context.remote_resources.of_owner(owner).is_empty();
    let (_, roster) = router.context.storage.rosters.items(owner).await?;
    for item in &roster {
        if !may_read(model, &node.roster_groups, &requester_of(item)) {
            continue;
        }
        let Ok(contact) = item.contact.parse::<BareJid>() else {
            continue;
        };
        if contact.to_string() == owner {
            continue;
        }
        if router.is_local_user(&contact) {
            out.extend(interested_resources(router, &item.contact, &node.node));
        } else if has_remote {
            out.extend(interested_remote_resources(
                router,
                owner,
                &item.contact,
                &node.node,
            ));
        }
    }
    Ok(out)
}

/// Sends `child` (an `<item/>` or `<retract/>` of the event namespace) about `node` of `owner` to
/// every recipient. A roster read failure is logged: the publish itself stands.
pub async fn broadcast(router: &Arc<Router>, owner: &str, node: &PepNode, child: &Element) {
    let recipients = match recipients(router, owner, node).await {
        Ok(recipients) => recipients,
        Err(e) => {
            tracing::error!(error = %e, "loading a roster for PEP notifications failed");
            return;
        }
    };
    for to in recipients {
        let message = wire::event_message(owner, &to, &node.node, child.clone());
        router.send(message).await;
    }
}

/// Sends `full` (an available local resource) the newest item of each node in `nodes` it may read:
/// its own account's, and those of the local contacts whose presence it is subscribed to (XEP-0163
/// section 6.2: the last published item on presence, here once its caps are known). Nodes
/// configured with `send_last_published_item` other than `on_sub_and_presence` are left out.
pub async fn send_last_items(router: &Arc<Router>, full: &str, nodes: &BTreeSet<String>) {
    let Ok(full_jid) = full.parse::<FullJid>() else {
        return;
    };
    let bare = full_jid.to_bare().to_string();
    if let Err(e) = send_last_of(router, &bare, full, nodes, &Requester::OWNER).await {
        tracing::error!(error = %e, "sending the last PEP items failed");
        return;
    }
    let storage = &router.context.storage;
    let roster = match storage.rosters.items(&bare).await {
        Ok((_, roster)) => roster,
        Err(e) => {
            tracing::error!(error = %e, "loading a roster for the last PEP items failed");
            return;
        }
    };
    for item in roster
        .iter()
        .filter(|i| i.in_roster && matches!(i.subscription, Subscription::To | Subscription::Both))
    {
        let Ok(contact) = item.contact.parse::<BareJid>() else {
            continue;
        };
        if !router.is_local_user(&contact) || item.contact == bare {
            continue;
        }
        // The contact's (the owner's) view of this user decides.
        let view = match storage.rosters.item(&item.contact, &bare).await {
            Ok(view) => view,
            Err(e) => {
                tracing::error!(error = %e, "loading a roster item for the last PEP items failed");
                continue;
            }
        };
        let requester = Requester::contact(view.as_ref());
        if let Err(e) = send_last_of(router, &item.contact, full, nodes, &requester).await {
            tracing::error!(error = %e, "sending the last PEP items failed");
        }
    }
}

/// The remote resource `full`, tracked for `owner` (`RemoteResources`), gets the newest item of each
/// node of `owner` in `nodes` that the owner's roster lets it read (XEP-0163 section 6.2, once its
/// caps are known).
pub async fn send_last_items_to_remote(
    router: &Arc<Router>,
    owner: &str,
    full: &str,
    nodes: &BTreeSet<String>,
) {
    let Ok(full_jid) = full.parse::<FullJid>() else {
        return;
    };
    let contact = full_jid.to_bare().to_string();
    let view = match router.context.storage.rosters.item(owner, &contact).await {
        Ok(view) => view,
        Err(e) => {
            tracing::error!(error = %e, "loading a roster item for the last PEP items failed");
            return;
        }
    };
    let requester = Requester::contact(view.as_ref());
    if let Err(e) = send_last_of(router, owner, full, nodes, &requester).await {
        tracing::error!(error = %e, "sending the last PEP items failed");
    }
}

/// `contact` was just subscribed to `owner`'s presence: each of its available resources whose caps
/// are known (local ones from their sessions, remote ones from their presence to `owner`) gets the
/// newest item of the nodes of `owner` it asks for and may now read.
pub async fn send_last_items_to_contact(router: &Arc<Router>, owner: &str, contact: &BareJid) {
    let contact_key = contact.to_string();
    let caps = &router.context.caps;
    let resources: Vec<(String, Arc<crate::context::entity_caps::Caps>)> =
        if router.is_local_user(contact) {
            router
                .sessions
                .resources(&contact_key)
                .into_iter()
                .filter(|r| r.view.is_available)
                .filter_map(|r| {
                    let full = format!("{contact_key}/{}", r.resource);
                    let caps = caps.of(&full)?;
                    (!caps.notify.is_empty()).then_some((full, caps))
                })
                .collect()
        } else {
            router
                .context
                .remote_resources
                .of_contact(owner, &contact_key)
                .into_iter()
                .filter_map(|(full, ver)| {
                    let caps = caps.of_ver(&ver)?;
                    (!caps.notify.is_empty()).then_some((full, caps))
                })
                .collect()
        };
    if resources.is_empty() {
        return;
    }
    let view = match router
        .context
        .storage
        .rosters
        .item(owner, &contact_key)
        .await
    {
        Ok(view) => view,
        Err(e) => {
            tracing::error!(error = %e, "loading a roster item for the last PEP items failed");
            return;
        }
    };
    let requester = Requester::contact(view.as_ref());
    for (full, caps) in resources {
        if let Err(e) = send_last_of(router, owner, &full, &caps.notify, &requester).await {
            tracing::error!(error = %e, "sending the last PEP items failed");
        }
    }
}

/// The newest item of each node of `owner` in `wanted` that `requester` may read, sent to `to`.
async fn send_last_of(
    router: &Arc<Router>,
    owner: &str,
    to: &str,
    wanted: &BTreeSet<String>,
    requester: &Requester<'_>,
) -> Result<(), StorageError> {
    let pep = &router.context.storage.pep;
    for node in pep.nodes(owner).await? {
        if !wanted.contains(&node.node) || node.send_last_published_item != "on_sub_and_presence" {
            continue;
        }
        if !may_read_node(&node, requester) {
            continue;
        }
        if let Some(item) = pep
            .items(owner, &node.node, Some(1))
            .await?
            .into_iter()
            .next()
        {
            let child = wire::item(PUBSUB_EVENT, &item.id, &item.payload);
            router
                .send(wire::event_message(owner, to, &node.node, child))
                .await;
        }
    }
    Ok(())
}
