//! Push nodes: what the hosting server's XEP-0357 push service (the "app server") hands out and
//! wakes. A node is a device of a local account plus a whitelist token scoped to that device alone:
//! the node name is the device id, the secret is the token's secret (stored only as its hash). So a
//! node+secret is exactly a capability to wake one device, and everything a token push gets
//! (expiry and revocation at send, sender binding, rate limits per token and account, the durable
//! outbox, dead devices pruned) applies to it unchanged. This module knows no XMPP: the server parses
//! the ad-hoc commands and publishes and calls these functions.
//!
//! Registering the same device again (same account, same device key) keeps its node and issues a
//! fresh secret: only the secret's hash is stored, so the old one cannot be shown again, and the
//! client re-`enable`s with the answer anyway (XEP-0357 section 5, "Enabling Notifications").

use std::time::Instant;

use herald_storage::relay::{Device, DeviceKind, WhitelistToken};
use subtle::ConstantTimeEq;

use crate::accept::{self, SenderMetering};
use crate::backends::webpush::key_bytes;
use crate::secrets::{hash_secret, new_secret};
use crate::{Notification, Priority, Relay, RelayError, Ticket, now_ms};

/// The name of every device registered as a push node; devices registered over the HTTP API are
/// not nodes (their ids cannot be published to).
pub const NODE_DEVICE_NAME: &str = "xep-0357 push node";
/// The name of the token that carries a node's secret.
pub const NODE_TOKEN_NAME: &str = "xep-0357 push node secret";

/// Longest device key (the app's stable id of its installation, plus the MUC it is for).
pub const MAX_DEVICE_KEY_BYTES: usize = 512;
const MAX_APNS_TOKEN: usize = 200;
const MAX_FCM_TOKEN: usize = 4096;
const MAX_ENDPOINT: usize = 1000;
const MAX_TOPIC: usize = 255;
/// Registrations and removals an account may make per minute: an app registers at each login, so
/// this is generous for honest use and keeps a looping client from turning commands into writes.
pub const NODE_CHANGES_PER_MINUTE: u32 = 30;
/// Registrations and removals all users of one remote domain may make per minute together.
pub const REMOTE_DOMAIN_NODE_CHANGES_PER_MINUTE: u32 = 300;
/// How [`remote_domain_account`] ids begin.
const REMOTE_DOMAIN_ACCOUNT_PREFIX: &str = "xmpp-domain:";
/// Longer node names or secrets than any this relay issues are refused before any lookup.
const MAX_NODE_BYTES: usize = 64;
const MAX_SECRET_BYTES: usize = 128;

/// What an app registers: the push network, its address there, and the device key that makes a
/// second registration of the same installation land on the same node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRegistration {
    pub kind: DeviceKind,
    /// The app's stable id of this installation (Conversations' `android-id`, p2's `device-id`),
    /// plus the MUC the node is for when there is one.
    pub device_key: String,
    /// APNs device token (hex), FCM registration token, or the Web Push / UnifiedPush endpoint.
    pub token: String,
    /// APNs only: the topic (bundle id) and environment; `None` means the relay's defaults.
    pub apns_topic: Option<String>,
    pub apns_sandbox: Option<bool>,
    /// Web Push subscription keys (RFC 8291 section 3.2), base64url; required for Web Push,
    /// optional (both or neither) for UnifiedPush.
    pub p256dh: Option<String>,
    pub auth: Option<String>,
}

/// A node and its secret, to `enable` with (XEP-0357 section 5). The secret is shown only here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushNode {
    pub node: String,
    pub secret: String,
}

/// Why a publish to a node did not wake anything. The server maps each to one IQ error.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// No such node, or it is gone (unregistered, its device reported dead, its secret revoked), or
    /// the publisher is not the account's server: the publisher should disable it.
    #[error("unknown or gone node")]
    UnknownNode,
    /// The node exists but the secret is not its secret.
    #[error("wrong secret")]
    WrongSecret,
    /// A rate limit was hit; try later.
    #[error("rate limited")]
    RateLimited,
    /// Storage failed (transient; the message is for logs only).
    #[error(transparent)]
    Relay(RelayError),
}

impl From<RelayError> for NodeError {
    fn from(error: RelayError) -> NodeError {
        match error {
            RelayError::UnknownToken | RelayError::SenderNotAllowed => NodeError::UnknownNode,
            RelayError::RateLimited(_) => NodeError::RateLimited,
            other => NodeError::Relay(other),
        }
    }
}

/// Why a remote user's registration was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    /// `[relay.push_service] remote_domains` does not name the registrant's domain.
    #[error("registrations from this domain are not accepted")]
    DomainNotAllowed,
    /// The domain holds `max_nodes_per_remote_domain` nodes already.
    #[error("this domain holds as many push nodes as it may")]
    DomainFull,
    /// Remote domains hold `max_remote_nodes` nodes together already.
    #[error("remote domains hold as many push nodes as the service allows")]
    ServiceFull,
    /// Bad input, rate limit or storage, as for a local account.
    #[error(transparent)]
    Relay(#[from] RelayError),
}

/// Who publishes: the hosting server for one of its domains (not metered per sender), or anyone
/// else (a user of this server, later a remote server over s2s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publisher<'a> {
    HostingServer(&'a str),
    Other(&'a str),
}

impl Relay {
    /// Registers (or registers again) a device of the local account `account_id` (a bare JID) as a
    /// push node that only `account_domain`'s server (or JIDs under it) may publish to. Creates the
    /// account's relay account on first use. Errors: [`RelayError::BadInput`] for a malformed
    /// registration or when the account holds `limits.max_devices_per_account` devices (or
    /// `max_tokens_per_account` live tokens) already; [`RelayError::RateLimited`] past
    /// [`NODE_CHANGES_PER_MINUTE`]; [`RelayError::Storage`].
    pub async fn register_node(
        &self,
        account_id: &str,
        account_domain: &str,
        registration: NodeRegistration,
    ) -> Result<PushNode, RelayError> {
        check_registration(self, &registration)?;
        self.meter_node_change(account_id, NODE_CHANGES_PER_MINUTE)?;
        self.ensure_account(account_id, true).await?;
        let limits = &self.inner.config.limits;
        let too_many =
            |what: &str| RelayError::BadInput(format!("too many {what} on this account"));
        let node = self
            .put_node(
                account_id,
                account_domain,
                registration.device_key.clone(),
                registration,
                (
                    limits.max_devices_per_account,
                    limits.max_tokens_per_account,
                ),
            )
            .await?;
        node.map_err(too_many)
    }

    /// Registers (or registers again) a device of `jid`, a user of the remote domain `domain`, as a
    /// push node that only `domain`'s server (or JIDs under it) may publish to (XEP-0357 section 7:
    /// the user's server publishes). Every node of a remote domain is held by one relay account,
    /// [`remote_domain_account`], so `[relay.push_service] max_nodes_per_remote_domain` caps them all
    /// together, and a user sees and removes only their own. Errors:
    /// [`RegistrationError::DomainNotAllowed`] unless `remote_domains` names `domain` (or is `*`);
    /// [`RegistrationError::DomainFull`] at the cap; [`RegistrationError::ServiceFull`] when a new node
    /// would pass `max_remote_nodes`; [`RegistrationError::Relay`] as for
    /// [`Self::register_node`] (the rate limit is per JID and per domain).
    pub async fn register_remote_node(
        &self,
        jid: &str,
        domain: &str,
        registration: NodeRegistration,
    ) -> Result<PushNode, RegistrationError> {
        let config = &self.inner.config.push_service;
        if !config.allows_remote_domain(domain) {
            return Err(RegistrationError::DomainNotAllowed);
        }
        check_registration(self, &registration)?;
        let account_id = remote_domain_account(domain);
        self.meter_node_change(jid, NODE_CHANGES_PER_MINUTE)?;
        self.meter_node_change(&account_id, REMOTE_DOMAIN_NODE_CHANGES_PER_MINUTE)?;
        self.ensure_account(&account_id, false).await?;
        let device_key = remote_device_key(jid, &registration.device_key);
        // A new node counts against every remote domain's nodes together (a registration again of
        // an existing node does not grow them). The count and the insert happen under one lock, so
        // concurrent registrations cannot all pass a count taken before any of them was written
        // (they did: 24 simultaneous ones against a cap of 3 all got in). It is per process: relays
        // sharing one PostgreSQL database can still pass the cap by one node per process.
        let _counted = self.inner.remote_node_changes.lock().await;
        let storage = &self.inner.storage;
        let is_new = !storage
            .relay_devices
            .list(&account_id, None)
            .await
            .map_err(RelayError::from)?
            .iter()
            .any(|d| d.name == NODE_DEVICE_NAME && d.device_id == device_key);
        if is_new {
            let held = storage
                .relay_devices
                .count_with_account_prefix(REMOTE_DOMAIN_ACCOUNT_PREFIX)
                .await
                .map_err(RelayError::from)?;
            if held >= config.max_remote_nodes as u64 {
                return Err(RegistrationError::ServiceFull);
            }
        }
        let cap = config.max_nodes_per_remote_domain;
        let node = self
            .put_node(&account_id, domain, device_key, registration, (cap, cap))
            .await?;
        node.map_err(|_| RegistrationError::DomainFull)
    }

    /// Whether users of the remote XMPP domain `domain` may register nodes
    /// (`[relay.push_service] remote_domains`).
    pub fn accepts_remote_registrations(&self, domain: &str) -> bool {
        self.inner.config.push_service.allows_remote_domain(domain)
    }

    /// Removes the node `jid` (a user of remote `domain`) registered with `device_key`; `false`
    /// when there is none. Errors: [`RelayError::RateLimited`], [`RelayError::Storage`].
    pub async fn unregister_remote_node(
        &self,
        jid: &str,
        domain: &str,
        device_key: &str,
    ) -> Result<bool, RelayError> {
        self.meter_node_change(jid, NODE_CHANGES_PER_MINUTE)?;
        self.remove_node(
            &remote_domain_account(domain),
            &remote_device_key(jid, device_key),
        )
        .await
    }

    /// Creates or updates the node `device_key` of `account_id`, bound to `publisher_domain`, and
    /// issues its secret; the inner `Err` names what is full when `(max_devices, max_live_tokens)`
    /// is reached.
    async fn put_node(
        &self,
        account_id: &str,
        publisher_domain: &str,
        device_key: String,
        registration: NodeRegistration,
        (max_devices, max_live_tokens): (usize, usize),
    ) -> Result<Result<PushNode, &'static str>, RelayError> {
        let storage = &self.inner.storage;
        let limits = &self.inner.config.limits;
        let devices = storage.relay_devices.list(account_id, None).await?;
        let now = now_ms();
        let registration = NodeRegistration {
            device_key,
            ..registration
        };
        let existing = devices
            .iter()
            .find(|d| d.name == NODE_DEVICE_NAME && d.device_id == registration.device_key);
        let device = match existing {
            Some(known) => {
                let mut device = known.clone();
                apply(self, &mut device, registration);
                storage.relay_devices.update(&device).await?;
                device
            }
            None => {
                if devices.len() >= max_devices {
                    return Ok(Err("devices"));
                }
                let mut device = Device {
                    id: uuid::Uuid::new_v4().to_string(),
                    account_id: account_id.to_string(),
                    kind: registration.kind,
                    name: NODE_DEVICE_NAME.to_string(),
                    device_id: String::new(),
                    active: true,
                    token: String::new(),
                    apns_topic: None,
                    apns_sandbox: self.inner.config.apns.sandbox,
                    webpush_p256dh: None,
                    webpush_auth: None,
                    created_at_ms: now,
                };
                apply(self, &mut device, registration);
                storage.relay_devices.create(&device).await?;
                device
            }
        };
        let tokens = &storage.whitelist_tokens;
        // The node's previous secret stops working: only one is live per node.
        for old in node_tokens(&tokens.list(account_id).await?, &device.id) {
            if old.revoked_at_ms.is_none() {
                tokens.revoke(&old.id, now).await?;
            }
        }
        tokens
            .delete_dead(account_id, now, limits.max_tokens_per_account)
            .await?;
        let live = tokens
            .list(account_id)
            .await?
            .iter()
            .filter(|t| t.revoked_at_ms.is_none() && t.expires_at_ms.is_none_or(|e| e > now))
            .count();
        if live >= max_live_tokens {
            return Ok(Err("live tokens"));
        }
        let secret = new_secret();
        tokens
            .create(&WhitelistToken {
                id: uuid::Uuid::new_v4().to_string(),
                token_hash: hash_secret(&secret),
                account_id: account_id.to_string(),
                name: Some(NODE_TOKEN_NAME.to_string()),
                device_ids: vec![device.id.clone()],
                sender: Some(publisher_domain.to_ascii_lowercase()),
                rate_per_minute: None,
                created_at_ms: now,
                // A node lives until it is unregistered or its device is reported dead: an expiry
                // would silently end pushes for an app that registered once.
                expires_at_ms: None,
                revoked_at_ms: None,
            })
            .await?;
        Ok(Ok(PushNode {
            node: device.id,
            secret,
        }))
    }

    /// Removes the push node of `account_id` registered with `device_key`: its device (pending
    /// pushes to it fail) and its secrets. `false` when there is none. Errors:
    /// [`RelayError::RateLimited`] past [`NODE_CHANGES_PER_MINUTE`]; [`RelayError::Storage`].
    pub async fn unregister_node(
        &self,
        account_id: &str,
        device_key: &str,
    ) -> Result<bool, RelayError> {
        self.meter_node_change(account_id, NODE_CHANGES_PER_MINUTE)?;
        self.remove_node(account_id, device_key).await
    }

    /// Removes the node `device_key` of `account_id` with its secrets; `false` when there is none.
    async fn remove_node(&self, account_id: &str, device_key: &str) -> Result<bool, RelayError> {
        let storage = &self.inner.storage;
        let Some(device) = storage
            .relay_devices
            .list(account_id, None)
            .await?
            .into_iter()
            .find(|d| d.name == NODE_DEVICE_NAME && d.device_id == device_key)
        else {
            return Ok(false);
        };
        let now = now_ms();
        for token in node_tokens(
            &storage.whitelist_tokens.list(account_id).await?,
            &device.id,
        ) {
            if token.revoked_at_ms.is_none() {
                storage.whitelist_tokens.revoke(&token.id, now).await?;
            }
        }
        storage.relay_devices.delete(&device.id).await?;
        storage
            .push_outbox
            .fail_device(&device.id, "push node unregistered", now)
            .await?;
        Ok(true)
    }

    /// Wakes the device of `node` if `secret` is its secret: the push is in the durable outbox when
    /// this returns `Ok` (XEP-0357 section 7, "Publishing Notifications"; no sender, no text reach
    /// the device). Errors: [`NodeError::UnknownNode`] (also for a publisher outside the account's
    /// domain), [`NodeError::WrongSecret`], [`NodeError::RateLimited`] (per node, and per account;
    /// wrong secrets for one node are limited apart), [`NodeError::Relay`] for storage failures.
    pub async fn publish_to_node(
        &self,
        node: &str,
        secret: &str,
        publisher: Publisher<'_>,
    ) -> Result<Ticket, NodeError> {
        if node.is_empty() || node.len() > MAX_NODE_BYTES {
            return Err(NodeError::UnknownNode);
        }
        let inner = &self.inner;
        let storage = &inner.storage;
        let Some(device) = storage.relay_devices.get(node).await.map_err(relay)? else {
            return Err(NodeError::UnknownNode);
        };
        if device.name != NODE_DEVICE_NAME {
            return Err(NodeError::UnknownNode);
        }
        // A remote domain taken off `remote_domains` is served no more.
        if let Some(domain) = device.account_id.strip_prefix(REMOTE_DOMAIN_ACCOUNT_PREFIX)
            && !self.accepts_remote_registrations(domain)
        {
            return Err(NodeError::UnknownNode);
        }
        let now = now_ms();
        let tokens = storage
            .whitelist_tokens
            .list(&device.account_id)
            .await
            .map_err(relay)?;
        let live: Vec<&WhitelistToken> = node_tokens(&tokens, node)
            .filter(|t| t.revoked_at_ms.is_none() && t.expires_at_ms.is_none_or(|e| e > now))
            .collect();
        if live.is_empty() {
            return Err(NodeError::UnknownNode);
        }
        let offered = hash_secret(if secret.len() > MAX_SECRET_BYTES {
            ""
        } else {
            secret
        });
        let Some(token) = live
            .into_iter()
            .find(|t| bool::from(t.token_hash.as_bytes().ct_eq(offered.as_bytes())))
        else {
            // Guessing is metered per node, apart from the node's own budget, so it costs the
            // guesser and never the owner's pushes.
            let limit = inner.config.limits.per_token;
            return match inner.limits.refusals.check(node, limit, Instant::now()) {
                Ok(()) => Err(NodeError::WrongSecret),
                Err(_) => Err(NodeError::RateLimited),
            };
        };
        let (sender, metering) = match publisher {
            Publisher::HostingServer(domain) => (domain, SenderMetering::Exempt),
            Publisher::Other(jid) => (jid, SenderMetering::Metered),
        };
        let notification = Notification {
            token: secret.to_string(),
            endpoint: None,
            priority: Priority::High,
            data: None,
            sender: Some(sender.to_string()),
            origin: None,
        };
        Ok(accept::deliver(self, token, &notification, metering).await?)
    }

    /// Errors: [`RelayError::RateLimited`] past `per_minute` changes for `key`.
    fn meter_node_change(&self, key: &str, per_minute: u32) -> Result<(), RelayError> {
        self.inner
            .limits
            .node_changes
            .check(key, per_minute, Instant::now())
            .map_err(|refused| RelayError::RateLimited(refused.retry_after))
    }

    /// The relay account holding nodes: a local XMPP account's (`is_local`, as a first login over
    /// the HTTP API creates it) or a remote domain's, created on first use. Neither has a password.
    async fn ensure_account(&self, account_id: &str, is_local: bool) -> Result<(), RelayError> {
        let accounts = &self.inner.storage.relay_accounts;
        if accounts.by_id(account_id).await?.is_some() {
            return Ok(());
        }
        let account = herald_storage::relay::RelayAccount {
            id: account_id.to_string(),
            username: account_id.to_string(),
            email: None,
            password_hash: None,
            is_local,
            created_at_ms: now_ms(),
        };
        match accounts.create(&account).await {
            // Two first registrations at once: the other created it.
            Ok(()) | Err(herald_storage::StorageError::AlreadyExists) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// The relay account that holds the nodes of every user of the remote XMPP domain `domain`. Its id
/// has no `@`, so it is never a local account's (a bare JID) nor one made over the HTTP API (a UUID),
/// and removing a local account never touches it.
pub fn remote_domain_account(domain: &str) -> String {
    format!(
        "{REMOTE_DOMAIN_ACCOUNT_PREFIX}{}",
        domain.to_ascii_lowercase()
    )
}

/// A remote user's device key as stored: their bare JID first, so users of one domain, sharing one
/// relay account, never see or remove each other's nodes.
fn remote_device_key(jid: &str, device_key: &str) -> String {
    format!("{} {device_key}", jid.to_ascii_lowercase())
}

fn relay(error: herald_storage::StorageError) -> NodeError {
    NodeError::Relay(RelayError::Storage(error))
}

/// The tokens carrying the secrets of node `device_id`, revoked ones included.
fn node_tokens<'a>(
    tokens: &'a [WhitelistToken],
    device_id: &'a str,
) -> impl Iterator<Item = &'a WhitelistToken> {
    tokens.iter().filter(move |t| {
        t.name.as_deref() == Some(NODE_TOKEN_NAME)
            && t.device_ids.len() == 1
            && t.device_ids[0] == device_id
    })
}

/// Copies a checked registration into `device` (an existing node keeps its id and creation time).
fn apply(relay: &Relay, device: &mut Device, registration: NodeRegistration) {
    device.kind = registration.kind;
    device.device_id = registration.device_key;
    device.active = true;
    device.token = match registration.kind {
        DeviceKind::Apns => registration.token.to_ascii_lowercase(),
        _ => registration.token,
    };
    device.apns_topic = registration.apns_topic;
    device.apns_sandbox = registration
        .apns_sandbox
        .unwrap_or(relay.inner.config.apns.sandbox);
    device.webpush_p256dh = registration.p256dh;
    device.webpush_auth = registration.auth;
}

/// The same rules as the HTTP API's device registration (`api/devices.rs`), as [`RelayError::BadInput`].
fn check_registration(relay: &Relay, r: &NodeRegistration) -> Result<(), RelayError> {
    let bad = |m: &str| Err(RelayError::BadInput(m.to_string()));
    if r.device_key.trim().is_empty() || r.device_key.len() > MAX_DEVICE_KEY_BYTES {
        return bad("device id: 1 to 512 bytes");
    }
    match r.kind {
        DeviceKind::Apns => {
            if r.token.is_empty()
                || r.token.len() > MAX_APNS_TOKEN
                || !r.token.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return bad("token: an APNs device token is hexadecimal");
            }
            if r.apns_topic.as_ref().is_some_and(|t| t.len() > MAX_TOPIC) {
                return bad("topic: at most 255 bytes");
            }
        }
        DeviceKind::Fcm => {
            if r.token.trim().is_empty() || r.token.len() > MAX_FCM_TOKEN {
                return bad("token: 1 to 4096 bytes");
            }
        }
        DeviceKind::WebPush | DeviceKind::UnifiedPush => {
            if r.kind == DeviceKind::WebPush && relay.inner.backends.webpush.is_none() {
                return bad("web push is not configured on this relay");
            }
            let config = &relay.inner.config;
            let endpoint = &r.token;
            let https = endpoint.starts_with("https://");
            let http_ok = config.allow_plain_http && endpoint.starts_with("http://");
            if endpoint.len() > MAX_ENDPOINT
                || !(https || http_ok)
                || reqwest::Url::parse(endpoint).is_err()
            {
                return bad("endpoint: an https URL is required");
            }
            // An address literal is judged now; a host name when it is resolved, at delivery.
            if relay
                .inner
                .backends
                .endpoint_policy
                .check_url(endpoint)
                .is_err()
            {
                return bad("endpoint: the address is not a public one");
            }
            if r.p256dh
                .as_ref()
                .is_some_and(|p| key_bytes(p).is_none_or(|k| k.len() != 65 || k[0] != 4))
            {
                return bad("p256dh: an uncompressed P-256 public key (base64url) is required");
            }
            if r.auth
                .as_ref()
                .is_some_and(|a| key_bytes(a).is_none_or(|k| k.len() != 16))
            {
                return bad("auth: a 16-byte auth secret (base64url) is required");
            }
            let keys = (r.p256dh.is_some(), r.auth.is_some());
            if r.kind == DeviceKind::WebPush && keys != (true, true) {
                return bad("Web Push needs p256dh and auth");
            }
            if keys.0 != keys.1 {
                return bad("p256dh and auth go together");
            }
        }
    }
    Ok(())
}
