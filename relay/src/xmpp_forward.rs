//! Relay-to-relay forwarding over XMPP server-to-server streams, preferred to signed HTTP when both
//! relays are hosted by XMPP servers that federate. The relay knows no XMPP: the hosting server
//! supplies an [`XmppForwarding`] (wire format, disco#info, s2s) with
//! [`crate::Relay::set_xmpp_forwarding`]; this module decides when to use it.
//!
//! Which XMPP address a peer relay answers at (its push service JID) comes from
//! `[relay.federation] peer_xmpp` (peer URL -> JID) or, failing that, from the `xmpp` field of the
//! peer's `GET /api/v1/federation/key` answer; the transport then confirms over s2s that the JID
//! offers the forwarding feature (disco#info). The answer, either way, is remembered per peer for
//! [`ROUTE_TTL`] in a bounded cache ([`MAX_PEER_ROUTES`]). A forward the s2s layer cannot deliver
//! (remote server not found, timeout, feature gone) goes over signed HTTP instead, and the peer is
//! remembered as HTTP-only for the same time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::backends::SendOutcome;
use crate::backends::forward::federation_endpoint;
use crate::{Notification, Priority, Relay, RelayError, Ticket};

/// How long a peer's route (its JID and whether it offers forwarding, or that it does not) is
/// remembered before it is looked up again.
pub const ROUTE_TTL: Duration = Duration::from_secs(600);
/// Peers remembered at once. With `forward_to_any` any endpoint can be a peer, so the cache is
/// bounded; a full cache drops its expired routes, then everything (lookups start over).
pub const MAX_PEER_ROUTES: usize = 1024;
/// The longest XMPP address accepted from a peer's key answer (RFC 7622 section 3.1: a domain part
/// is at most 1023 octets).
pub const MAX_JID_BYTES: usize = 1023;

/// What a forward over XMPP came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XmppForward {
    /// The peer answered: its answer's failure class (result = sent; item-not-found = gone;
    /// not-authorized/forbidden = rejected; wait/resource-constraint = retry).
    Answered(SendOutcome),
    /// The s2s layer could not deliver it, or the peer does not (any longer) offer forwarding: send
    /// it over signed HTTP instead. The reason is for the log.
    Unavailable(String),
}

/// The XMPP transport the hosting server supplies: it sends from this relay's federation domain
/// (an XMPP domain the server hosts), so the peer's s2s layer authenticates that domain (RFC 6120
/// SASL EXTERNAL or XEP-0220 dialback) and checks its tokens' sender bindings against it.
#[async_trait]
pub trait XmppForwarding: Send + Sync {
    /// Whether `peer_jid` offers relay forwarding (disco#info over s2s). `false` on any failure.
    async fn offers_forwarding(&self, peer_jid: &str) -> bool;

    /// Forwards one message for a whitelist token issued by the relay at `peer_jid`. Only the token
    /// travels, never a device token.
    async fn forward(
        &self,
        peer_jid: &str,
        token: &str,
        priority: Priority,
        data: Option<&str>,
    ) -> XmppForward;
}

/// Delivers one forward to the relay whose messages endpoint is `endpoint`: over XMPP when the
/// hosting server supplies a transport and the peer offers it, else (or when the s2s layer cannot
/// deliver it) over signed HTTP.
pub(crate) async fn forward(
    relay: &Relay,
    endpoint: &str,
    token: &str,
    priority: Priority,
    data: Option<&str>,
) -> SendOutcome {
    let http = &relay.inner.backends.forward;
    if let Some(transport) = relay.xmpp_transport() {
        let peer = federation_endpoint(endpoint);
        if let Some(jid) = peer_jid(relay, transport.as_ref(), endpoint, &peer).await {
            match transport.forward(&jid, token, priority, data).await {
                XmppForward::Answered(outcome) => return outcome,
                XmppForward::Unavailable(reason) => {
                    tracing::info!(peer = %jid, %reason, "forward over s2s failed; falling back to HTTP");
                    relay.inner.peer_routes.put(&peer, None, Instant::now());
                }
            }
        }
    }
    http.forward(endpoint, token, priority, data).await
}

/// The push service JID of the peer at `endpoint` (cache key `peer`) if it offers forwarding.
async fn peer_jid(
    relay: &Relay,
    transport: &dyn XmppForwarding,
    endpoint: &str,
    peer: &str,
) -> Option<String> {
    let routes = &relay.inner.peer_routes;
    if let Some(known) = routes.get(peer, Instant::now()) {
        return known;
    }
    let configured = relay
        .inner
        .config
        .federation
        .peer_xmpp
        .iter()
        .find(|(url, _)| crate::accept::under_peer(url, endpoint))
        .map(|(_, jid)| jid.clone());
    let candidate = match configured {
        Some(jid) => Some(jid),
        None => relay
            .inner
            .backends
            .forward
            .peer_service_jid(endpoint)
            .await
            .filter(|jid| plausible_service_jid(jid)),
    };
    let offered = match candidate {
        Some(jid) if transport.offers_forwarding(&jid).await => Some(jid),
        _ => None,
    };
    routes.put(peer, offered.clone(), Instant::now());
    offered
}

/// Accepts a forward that arrived over s2s from `sender_domain`, as authenticated by the s2s layer:
/// the same path as a signed HTTP forward (token checks, sender binding against that domain, rate
/// limits), after a per-domain budget that is spent before the token is looked up, since any
/// federating server can send one (where HTTP forwards come from pinned peers only).
pub(crate) async fn accept(
    relay: &Relay,
    sender_domain: &str,
    token: String,
    priority: Priority,
    data: Option<String>,
) -> Result<Ticket, RelayError> {
    let inner = &relay.inner;
    if !relay.accepts_xmpp_forwards() {
        return Err(RelayError::ForwardNotAllowed);
    }
    let budget = inner.config.limits.per_sender;
    inner
        .limits
        .sender
        .check(
            &format!("xmpp-forward:{}", sender_domain.to_ascii_lowercase()),
            budget,
            Instant::now(),
        )
        .map_err(|r| RelayError::RateLimited(r.retry_after))?;
    relay
        .submit(Notification {
            token,
            endpoint: None,
            priority,
            data,
            sender: Some(sender_domain.to_string()),
            origin: Some(format!("xmpp:{sender_domain}")),
        })
        .await
}

/// One peer's remembered route: its JID when it offers forwarding over XMPP, `None` for HTTP only.
struct Route {
    jid: Option<String>,
    until: Instant,
}

/// Peer routes keyed by the peer's federation endpoint.
#[derive(Default)]
pub(crate) struct PeerRoutes {
    routes: Mutex<HashMap<String, Route>>,
}

impl PeerRoutes {
    /// The remembered route of `peer`: `Some(Some(jid))` over XMPP, `Some(None)` HTTP only, `None`
    /// unknown or expired.
    pub(crate) fn get(&self, peer: &str, now: Instant) -> Option<Option<String>> {
        let routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        routes
            .get(peer)
            .filter(|r| r.until > now)
            .map(|r| r.jid.clone())
    }

    /// Remembers `peer`'s route for [`ROUTE_TTL`], within [`MAX_PEER_ROUTES`].
    pub(crate) fn put(&self, peer: &str, jid: Option<String>, now: Instant) {
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        if routes.len() >= MAX_PEER_ROUTES && !routes.contains_key(peer) {
            routes.retain(|_, r| r.until > now);
            if routes.len() >= MAX_PEER_ROUTES {
                routes.clear();
            }
        }
        routes.insert(
            peer.to_string(),
            Route {
                jid,
                until: now + ROUTE_TTL,
            },
        );
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.routes.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Whether `jid` is acceptable as a peer's push service address from its key answer: a bare
/// domain-like string (no `@`, `/`, whitespace or control characters), within [`MAX_JID_BYTES`].
/// The transport parses it properly; this only keeps junk out of the cache and the log.
pub(crate) fn plausible_service_jid(jid: &str) -> bool {
    !jid.is_empty()
        && jid.len() <= MAX_JID_BYTES
        && !jid
            .chars()
            .any(|c| c == '@' || c == '/' || c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_expire_and_the_cache_is_bounded() {
        let routes = PeerRoutes::default();
        let now = Instant::now();
        routes.put("p", Some("push.b.example".into()), now);
        assert_eq!(routes.get("p", now), Some(Some("push.b.example".into())));
        assert_eq!(routes.get("p", now + ROUTE_TTL), None);
        routes.put("q", None, now);
        assert_eq!(routes.get("q", now), Some(None));
        for i in 0..MAX_PEER_ROUTES * 2 {
            routes.put(&format!("peer-{i}"), None, now);
            assert!(routes.len() <= MAX_PEER_ROUTES);
        }
        // At the cap, expired routes make room first.
        let mut i = 0;
        while routes.len() < MAX_PEER_ROUTES {
            routes.put(&format!("more-{i}"), None, now);
            i += 1;
        }
        let later = now + ROUTE_TTL;
        routes.put("r", None, later);
        assert_eq!(routes.len(), 1);
    }

    #[test]
    fn only_bare_domains_are_taken_from_a_key_answer() {
        assert!(plausible_service_jid("push.b.example"));
        for bad in ["", "a@b", "b/c", "a b", "x\u{0}", &"a".repeat(1024)] {
            assert!(!plausible_service_jid(bad), "{bad:?}");
        }
    }
}
