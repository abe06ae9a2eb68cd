//! XEP-0077: In-Band Registration. Creating an account before authentication is allowed only when the
//! admin enabled it (XEP-0479 note: off by default); changing the password (section 3.3) and removing the
//! account (section 3.2) always work for an authenticated user.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use super::ClientSession;
use super::iq::{IqAnswer, IqError, IqOutcome, IqRequest};
use crate::accounts::{self, AccountError};
use crate::router::Router;
use crate::router::registry::SessionCommand;
use crate::xmpp::ns;
use crate::xmpp::{BareJid, DefinedCondition, Element, Jid};

/// A registration IQ before authentication, on a stream for `domain` from `peer` (section 3.1).
pub async fn handle_unauthenticated(
    router: &Arc<Router>,
    domain: &str,
    peer: IpAddr,
    is_set: bool,
    payload: &Element,
) -> IqAnswer {
    if !router.context.config.allow_in_band_registration {
        return Err(IqError::new(DefinedCondition::NotAllowed));
    }
    if is_set && !router.context.registrations.allow(peer, Instant::now()) {
        tracing::warn!(
            target: "herald::auth",
            client = %peer,
            "in-band registration refused: too many attempts from this address"
        );
        return Err(IqError::new(DefinedCondition::PolicyViolation));
    }
    if !is_set {
        return Ok(Some(
            Element::builder("query", ns::REGISTER)
                .append(
                    Element::builder("instructions", ns::REGISTER)
                        .append("Choose a username and password.")
                        .build(),
                )
                .append(Element::builder("username", ns::REGISTER).build())
                .append(Element::builder("password", ns::REGISTER).build())
                .build(),
        ));
    }
    let (Some(username), Some(password)) = (field(payload, "username"), field(payload, "password"))
    else {
        return Err(IqError::new(DefinedCondition::NotAcceptable));
    };
    let jid = accounts::parse_account(&format!("{username}@{domain}"))
        .map_err(|_| IqError::new(DefinedCondition::JidMalformed))?;
    match accounts::create(&router.context.storage, &jid, &password).await {
        Ok(()) => {
            tracing::info!(account = %jid, "account registered in-band");
            Ok(None)
        }
        Err(e) => Err(map_error(e)),
    }
}

/// A registration IQ from a bound client to its own account.
pub async fn handle_own(
    router: &Arc<Router>,
    session: &ClientSession,
    request: &IqRequest<'_>,
) -> IqOutcome {
    let from = Jid::from(session.jid.clone());
    let (answer, removed_account) = handle_for_user(router, &from, request).await;
    IqOutcome {
        answer,
        removed_account,
    }
}

/// A registration IQ addressed to the server: only a local user's password change or removal (section
/// 3.3); anyone else gets `<service-unavailable/>`.
pub async fn for_server(router: &Arc<Router>, request: &IqRequest<'_>) -> IqOutcome {
    if !router.is_local_user(&request.from.to_bare()) {
        return IqOutcome::from(Err(IqError::new(DefinedCondition::ServiceUnavailable)));
    }
    let (answer, removed_account) = handle_for_user(router, request.from, request).await;
    IqOutcome {
        answer,
        removed_account,
    }
}

/// Password change or removal by the authenticated user `from`. Returns the answer and whether the account
/// was removed (the caller then ends every session of it).
pub async fn handle_for_user(
    router: &Arc<Router>,
    from: &Jid,
    request: &IqRequest<'_>,
) -> (IqAnswer, bool) {
    let user = from.to_bare();
    let payload = request.payload;
    if !request.is_set {
        let node = user.node().map(|n| n.to_string()).unwrap_or_default();
        return (
            Ok(Some(
                Element::builder("query", ns::REGISTER)
                    .append(Element::builder("registered", ns::REGISTER).build())
                    .append(
                        Element::builder("username", ns::REGISTER)
                            .append(node)
                            .build(),
                    )
                    .append(Element::builder("password", ns::REGISTER).build())
                    .build(),
            )),
            false,
        );
    }
    if payload.has_child("remove", ns::REGISTER) {
        // Archive rows queued behind delivery are committed first, or they would outlive the account.
        router.context.archive.sync().await;
        return match accounts::delete(&router.context.storage, &user).await {
            Ok(()) => {
                router.context.block_lists.invalidate(&user.to_string());
                router.context.archive_prefs.forget(&user.to_string());
                router
                    .context
                    .remote_resources
                    .forget_owner(&user.to_string());
                tracing::info!(account = %user, "account removed in-band");
                (Ok(None), true)
            }
            Err(e) => (Err(map_error(e)), false),
        };
    }
    (change_password(router, &user, payload).await, false)
}

async fn change_password(router: &Arc<Router>, user: &BareJid, payload: &Element) -> IqAnswer {
    let (Some(username), Some(password)) = (field(payload, "username"), field(payload, "password"))
    else {
        return Err(IqError::new(DefinedCondition::BadRequest));
    };
    // Section 3.3: the username must be the user's own.
    let own = user.node().map(|n| n.as_str().to_lowercase());
    if own.as_deref() != Some(username.to_lowercase().as_str()) {
        return Err(IqError::new(DefinedCondition::NotAuthorized));
    }
    accounts::set_password(&router.context.storage, user, &password)
        .await
        .map(|()| None)
        .map_err(map_error)
}

/// Ends every session of an account that was removed (section 3.2).
pub fn end_all_sessions(router: &Arc<Router>, bare: &str) {
    for resource in router.sessions.resources(bare) {
        resource.handle.send(SessionCommand::Terminate);
    }
}

fn field(payload: &Element, name: &str) -> Option<String> {
    payload
        .get_child(name, ns::REGISTER)
        .map(|e| e.text())
        .filter(|t| !t.is_empty())
}

fn map_error(e: AccountError) -> IqError {
    match e {
        AccountError::AlreadyExists => IqError::new(DefinedCondition::Conflict),
        AccountError::InvalidJid(_) => IqError::new(DefinedCondition::JidMalformed),
        AccountError::UnacceptablePassword => IqError::new(DefinedCondition::NotAcceptable),
        AccountError::NotFound => IqError::new(DefinedCondition::ItemNotFound),
        AccountError::Storage(e) => {
            tracing::error!(error = %e, "account storage failed");
            IqError::new(DefinedCondition::InternalServerError)
        }
    }
}
