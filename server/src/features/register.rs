//! XEP-0077: In-Band Registration. Creating an account before authentication is allowed only when the
//! admin enabled it (XEP-0479 note: off by default); changing the password (section 3.3) and removing the
//! account (section 3.2) always work for an authenticated user.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::ClientSession;
use super::iq::{IqAnswer, IqError, IqRequest};
use crate::accounts::{self, AccountError};
use crate::router::Router;
use crate::router::registry::SessionCommand;
use crate::xmpp::ns;
use crate::xmpp::{BareJid, DefinedCondition, Element, Jid};

/// The window of [`RegistrationLimit`].
const REGISTRATION_WINDOW: Duration = Duration::from_secs(3600);
/// Addresses tracked at most by [`RegistrationLimit`]; the oldest is forgotten beyond that.
const MAX_TRACKED_ADDRESSES: usize = 10_000;

/// Account creation attempts per client address (IPv6: per /64) within an hour, so an open server
/// cannot be filled with accounts, or probed for taken names, from one place (XEP-0077 section 9
/// leaves abuse prevention to the server). Memory is bounded.
#[derive(Debug)]
pub struct RegistrationLimit {
    per_window: u32,
    attempts: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl RegistrationLimit {
    /// `per_window` attempts per address per hour; 0 means no limit.
    pub fn new(per_window: u32) -> RegistrationLimit {
        RegistrationLimit {
            per_window,
            attempts: Mutex::new(HashMap::new()),
        }
    }

    /// Counts an attempt from `address`; `false` when it is over the limit.
    pub fn allow(&self, address: IpAddr, now: Instant) -> bool {
        if self.per_window == 0 {
            return true;
        }
        let key = herald_relay::login_throttle::address_key(address);
        // A poisoned lock only means another thread panicked mid-update; the map is still usable.
        let mut attempts = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        if !attempts.contains_key(&key) && attempts.len() >= MAX_TRACKED_ADDRESSES {
            attempts.retain(|_, (started, _)| now.duration_since(*started) < REGISTRATION_WINDOW);
            if attempts.len() >= MAX_TRACKED_ADDRESSES {
                let oldest = attempts
                    .iter()
                    .min_by_key(|(_, (t, _))| *t)
                    .map(|(k, _)| *k);
                if let Some(oldest) = oldest {
                    attempts.remove(&oldest);
                }
            }
        }
        let entry = attempts.entry(key).or_insert((now, 0));
        if now.duration_since(entry.0) >= REGISTRATION_WINDOW {
            *entry = (now, 0);
        }
        if entry.1 >= self.per_window {
            return false;
        }
        entry.1 += 1;
        true
    }
}

/// A registration IQ before authentication, on a stream for `domain` from `peer` (section 3.1).
pub async fn handle_unauthenticated(
    router: &Arc<Router>,
    domain: &str,
    peer: IpAddr,
    is_set: bool,
    payload: &Element,
) -> IqAnswer {
    if !router.config.allow_in_band_registration {
        return Err(IqError::new(DefinedCondition::NotAllowed));
    }
    if is_set && !router.registrations.allow(peer, Instant::now()) {
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
    match accounts::create(&router.storage, &jid, &password).await {
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
) -> (IqAnswer, bool) {
    let from = Jid::from(session.jid.clone());
    handle_for_user(router, &from, request).await
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
        return match accounts::delete(&router.storage, &user).await {
            Ok(()) => {
                router.block_lists.invalidate(&user.to_string());
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
    accounts::set_password(&router.storage, user, &password)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_are_limited_per_address_and_window() {
        let limit = RegistrationLimit::new(2);
        let t0 = Instant::now();
        let a: IpAddr = "2001:db8::1".parse().expect("address");
        let same_64: IpAddr = "2001:db8::2".parse().expect("address");
        let other: IpAddr = "192.0.2.1".parse().expect("address");
        assert!(limit.allow(a, t0));
        assert!(limit.allow(same_64, t0));
        assert!(!limit.allow(a, t0), "the /64 shares one count");
        assert!(limit.allow(other, t0));
        assert!(limit.allow(a, t0 + REGISTRATION_WINDOW));
        assert!(RegistrationLimit::new(0).allow(a, t0), "0 means no limit");
    }
}
