//! `[relay]` configuration: the section the server embeds as-is in herald.toml. Every field has a
//! default, unknown keys are rejected, and secrets are named by file path only (never inlined).
//! Every URL that reaches the network (FCM, OAuth2 token exchange) can be overridden, so tests point
//! the relay at local stand-ins.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The relay's configuration (`[relay]` in herald.toml).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    /// Whether the server starts the relay at all.
    pub enabled: bool,
    /// Where the server binds the HTTP API (`Relay::router`).
    pub listen: String,
    /// Whether the server serves the API over TLS with its domains' certificates (otherwise plain HTTP,
    /// for a reverse proxy in front or a loopback-only listener).
    pub tls: bool,
    /// The public base URL of this relay, e.g. `https://push.example.org`. Tokens issued here are
    /// handed out with `<public_url>/api/v1/messages/` as their endpoint.
    pub public_url: String,
    /// The XMPP push service JID answered by `GET /api/v1/pubsub/`. A server hosting the relay serves
    /// its XEP-0357 push service on this domain (see `push_node.rs`); empty: no push service.
    pub pubsub_jid: String,
    /// Whether people without a local XMPP account may register relay-only accounts.
    pub allow_registration: bool,
    /// Default lifetime of a whitelist token, in seconds (ChatSecure used 30 days); 0 = no expiry.
    pub token_ttl_secs: u64,
    /// Notifications for one device within this window collapse into one push.
    pub collapse_window_ms: u64,
    /// Deliveries in flight at once (each holds its slot from claim through the vendor's answer to
    /// recording the outcome). By Little's law the sustained rate is at most `workers / time per
    /// delivery`: at 1,000 pushes/s and a vendor answering in 100 ms that is 100 in flight, so the
    /// default leaves headroom; too few slots queue deliveries behind each other and the latency from
    /// enqueue to send grows with the backlog.
    pub workers: usize,
    /// Delivery attempts before a transient failure becomes final.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt up to `retry_max_ms` (plus jitter), unless the peer
    /// sent a longer Retry-After.
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// HTTP timeout for every outgoing request, in milliseconds.
    pub request_timeout_ms: u64,
    /// Time-to-live of a push at the vendor, in seconds.
    pub push_ttl_secs: u64,
    /// Finished outbox rows and audit entries are deleted after this many days.
    pub retention_days: u64,
    /// Accept `http://` device endpoints and peers (tests, private networks). Off: https only.
    pub allow_plain_http: bool,
    /// Networks (CIDR) that user-supplied endpoints (Web Push, UnifiedPush, forwarding) may reach
    /// although they are not public: loopback, private, link-local... are refused otherwise (SSRF).
    /// For tests (`127.0.0.0/8`) and LAN setups.
    pub allowed_endpoint_networks: Vec<String>,
    /// Reverse proxies (addresses or blocks like `127.0.0.1/32`, `10.0.0.0/8`, `::1`) whose
    /// `client_address_header` names the real client. Empty: the TCP peer is the client.
    pub trusted_proxies: Vec<String>,
    /// The header a trusted proxy puts the client address in; the right-most untrusted entry is used.
    pub client_address_header: String,
    pub limits: RateLimits,
    pub http: HttpServerConfig,
    pub apns: ApnsConfig,
    pub fcm: FcmConfig,
    pub webpush: WebPushConfig,
    pub federation: FederationConfig,
    pub push_service: PushServiceConfig,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            enabled: false,
            listen: "127.0.0.1:5281".into(),
            tls: false,
            public_url: "http://127.0.0.1:5281".into(),
            pubsub_jid: String::new(),
            allow_registration: true,
            token_ttl_secs: 30 * 24 * 3600,
            collapse_window_ms: 2_000,
            workers: 256,
            max_attempts: 12,
            retry_base_ms: 1_000,
            retry_max_ms: 15 * 60 * 1000,
            request_timeout_ms: 20_000,
            push_ttl_secs: 4 * 3600,
            retention_days: 30,
            allow_plain_http: false,
            allowed_endpoint_networks: Vec::new(),
            trusted_proxies: Vec::new(),
            client_address_header: "X-Forwarded-For".into(),
            limits: RateLimits::default(),
            http: HttpServerConfig::default(),
            apns: ApnsConfig::default(),
            fcm: FcmConfig::default(),
            webpush: WebPushConfig::default(),
            federation: FederationConfig::default(),
            push_service: PushServiceConfig::default(),
        }
    }
}

/// `[relay.push_service]`: who besides the hosting server's own accounts may register devices with
/// the XEP-0357 push service at `pubsub_jid` (XEP-0050 commands, see `push_node.rs`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PushServiceConfig {
    /// Remote XMPP domains whose users may register (their server, authenticated over s2s, is then
    /// the only publisher of those nodes), or `["*"]` for any domain. Empty: local accounts only.
    pub remote_domains: Vec<String>,
    /// Push nodes all users of one remote domain may hold together: whoever owns a domain owns
    /// unlimited JIDs, so the cap is per domain, not per JID.
    pub max_nodes_per_remote_domain: usize,
    /// Push nodes all remote domains may hold together: with `remote_domains = ["*"]` anyone can
    /// make a domain, so the per-domain cap alone does not bound the relay's storage.
    pub max_remote_nodes: usize,
}

/// The most nodes `max_nodes_per_remote_domain` may allow.
pub const MAX_NODES_PER_REMOTE_DOMAIN: usize = 100_000;

impl Default for PushServiceConfig {
    fn default() -> Self {
        PushServiceConfig {
            remote_domains: Vec::new(),
            max_nodes_per_remote_domain: 100,
            max_remote_nodes: 100_000,
        }
    }
}

impl PushServiceConfig {
    /// Whether users of `domain` (as received, compared without case) may register.
    pub fn allows_remote_domain(&self, domain: &str) -> bool {
        self.remote_domains
            .iter()
            .any(|d| d == "*" || d.eq_ignore_ascii_case(domain))
    }

    /// What is wrong with the section, each problem naming its key.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for domain in &self.remote_domains {
            if domain != "*" && !is_domain_name(domain) {
                problems.push(format!(
                    "push_service.remote_domains: {domain:?} is not a lower-case domain like friends.example, nor \"*\""
                ));
            }
        }
        if self.max_nodes_per_remote_domain == 0
            || self.max_nodes_per_remote_domain > MAX_NODES_PER_REMOTE_DOMAIN
        {
            problems.push(format!(
                "push_service.max_nodes_per_remote_domain: must be between 1 and {MAX_NODES_PER_REMOTE_DOMAIN}"
            ));
        }
        if self.max_remote_nodes < self.max_nodes_per_remote_domain {
            problems.push(
                "push_service.max_remote_nodes: must be at least max_nodes_per_remote_domain"
                    .into(),
            );
        }
        problems
    }
}

/// A DNS name as XMPP domains are written (RFC 6120 section 11.4, ASCII form): dot-separated labels
/// of lower-case letters, digits and inner hyphens, at most 253 bytes.
fn is_domain_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// Rate limits, in requests per minute (token buckets; the burst equals the per-minute figure).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimits {
    /// Messages per whitelist token (a token's own `rate_per_minute` overrides it).
    pub per_token: u32,
    /// Messages per sender (bound JID/domain, or the client address for anonymous posts).
    pub per_sender: u32,
    /// Messages per receiving account, all tokens together.
    pub per_account: u32,
    /// Account creations per client address (IPv6: per /64). Logins are limited by the failed-login
    /// throttle shared with XMPP instead.
    pub account_attempts: u32,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Devices and live tokens an account may hold.
    pub max_devices_per_account: usize,
    pub max_tokens_per_account: usize,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            per_token: 60,
            per_sender: 600,
            per_account: 300,
            account_attempts: 30,
            max_body_bytes: 16 * 1024,
            max_devices_per_account: 20,
            max_tokens_per_account: 200,
        }
    }
}

/// The API's HTTP server (served by the server process): what one client can hold.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpServerConfig {
    /// A request's headers must arrive complete within this time, and a keep-alive connection must
    /// start its next request within it; otherwise the connection is closed.
    pub header_read_timeout_ms: u64,
    /// A connection on which nothing is read or written for this long is closed (HTTP/2 included).
    pub idle_timeout_ms: u64,
    /// A request must be read and answered within this time (a body trickled in slowly gets 408).
    pub request_timeout_ms: u64,
    /// Connections served at once; further ones wait in the listen backlog until one closes.
    pub max_connections: usize,
    /// Connections from one client address at once; further ones are closed at once. Behind a
    /// reverse proxy every connection comes from the proxy: raise it to `max_connections` there.
    pub max_connections_per_address: usize,
}

impl Default for HttpServerConfig {
    fn default() -> Self {
        HttpServerConfig {
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            request_timeout_ms: 30_000,
            max_connections: 1024,
            max_connections_per_address: 128,
        }
    }
}

/// The longest timeout `[relay.http]` accepts: a day.
const MAX_HTTP_TIMEOUT_MS: u64 = 24 * 3600 * 1000;

/// APNs (Apple) settings. Token auth (`key_file` + `key_id` + `team_id`) or certificate auth
/// (`certificate_file` + `certificate_key_file`, PEM).
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ApnsConfig {
    /// The .p8 signing key (PKCS#8 PEM).
    pub key_file: String,
    pub key_id: String,
    pub team_id: String,
    pub certificate_file: String,
    pub certificate_key_file: String,
    /// Default topic (bundle id) for devices registered without one.
    pub topic: String,
    /// Default environment for devices registered without one.
    pub sandbox: bool,
}

/// FCM HTTP v1 settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FcmConfig {
    /// The Google service-account JSON file.
    pub service_account_file: String,
    /// Defaults to the service account's `project_id`.
    pub project_id: String,
    pub base_url: String,
    /// Defaults to the service account's `token_uri`.
    pub token_url: String,
}

impl Default for FcmConfig {
    fn default() -> Self {
        FcmConfig {
            service_account_file: String::new(),
            project_id: String::new(),
            base_url: "https://fcm.googleapis.com".into(),
            token_url: String::new(),
        }
    }
}

/// Web Push (RFC 8030/8291/8292) and UnifiedPush settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebPushConfig {
    /// The VAPID P-256 private key (PKCS#8 or SEC1 PEM). Without it Web Push devices are refused.
    pub vapid_private_key_file: String,
    /// The VAPID `sub` claim (RFC 8292 section 2.1): `mailto:` or `https:` contact.
    pub vapid_subject: String,
}

impl Default for WebPushConfig {
    fn default() -> Self {
        WebPushConfig {
            vapid_private_key_file: String::new(),
            vapid_subject: "mailto:postmaster@localhost".into(),
        }
    }
}

/// Relay-to-relay forwarding and its authentication (RFC 9421 HTTP Message Signatures, Ed25519).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FederationConfig {
    /// Messages endpoints of peer relays this relay forwards to: an endpoint is admitted when it has
    /// a peer's origin (scheme, host, port) and a path equal to or under the peer's. Empty = no
    /// forwarding unless `forward_to_any` (an open forwarder is an HTTP reflector, so it is off by
    /// default).
    pub peers: Vec<String>,
    pub forward_to_any: bool,
    /// This relay's name towards its peers: the `keyid` its forwards are signed with, and the sender
    /// a peer checks its whitelist tokens' bindings against. Empty: the host of `public_url`.
    pub domain: String,
    /// The Ed25519 private key forwards are signed with (PKCS#8 PEM), created (mode 0600) on first
    /// start when the file does not exist. Empty: the hosting server names a file in its data folder;
    /// a relay embedded without one gets a key that lasts only as long as the process.
    pub key_file: String,
    /// Peer relays whose signed forwards are accepted at `/api/v1/federation/messages/`: peer domain
    /// (its `domain`, the signature's `keyid`) -> its Ed25519 public key, base64 of the 32 raw bytes
    /// as its `GET /api/v1/federation/key` shows it.
    pub peer_keys: BTreeMap<String, String>,
    /// How long a signature this relay makes is valid (`expires` - `created`), and the longest
    /// validity it accepts from a peer, in seconds.
    pub signature_lifetime_secs: u64,
    /// Forward over XMPP server-to-server streams when the hosting server supplies the transport and
    /// the peer offers it (see `xmpp_forward.rs`), and accept forwards that way; off: HTTP only.
    pub xmpp: bool,
    /// Peer relays' push service JIDs: peer URL (matched like `peers`) -> JID. A peer not named here
    /// is asked (`xmpp` in its `GET /api/v1/federation/key` answer).
    pub peer_xmpp: BTreeMap<String, String>,
}

impl Default for FederationConfig {
    fn default() -> Self {
        FederationConfig {
            peers: Vec::new(),
            forward_to_any: false,
            domain: String::new(),
            key_file: String::new(),
            peer_keys: BTreeMap::new(),
            signature_lifetime_secs: 60,
            xmpp: true,
            peer_xmpp: BTreeMap::new(),
        }
    }
}

/// The longest `federation.signature_lifetime_secs` accepted: an hour (the replay cache holds every
/// nonce that long).
const MAX_SIGNATURE_LIFETIME_SECS: u64 = 3600;

impl RelayConfig {
    /// Every problem with the values (not the files they name, nor `listen`), each starting with the
    /// key: what the server reports for a section it does not start. [`RelayConfig::resolve`] reports
    /// these and the rest.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for network in &self.allowed_endpoint_networks {
            if let Err(e) = network.parse::<crate::backends::address_policy::Cidr>() {
                problems.push(format!("allowed_endpoint_networks: {e}"));
            }
        }
        let http = &self.http;
        for (key, ms) in [
            ("http.header_read_timeout_ms", http.header_read_timeout_ms),
            ("http.idle_timeout_ms", http.idle_timeout_ms),
            ("http.request_timeout_ms", http.request_timeout_ms),
        ] {
            if ms == 0 || ms > MAX_HTTP_TIMEOUT_MS {
                problems.push(format!(
                    "{key}: must be between 1 and {MAX_HTTP_TIMEOUT_MS}"
                ));
            }
        }
        if http.max_connections == 0 {
            problems.push("http.max_connections: must be positive".into());
        }
        if http.max_connections_per_address == 0 {
            problems.push("http.max_connections_per_address: must be positive".into());
        }
        if let Err(bad) = crate::api::client_addr::parse_blocks(&self.trusted_proxies) {
            problems.extend(bad.into_iter().map(|p| format!("trusted_proxies: {p}")));
        }
        if axum::http::HeaderName::from_bytes(self.client_address_header.as_bytes()).is_err() {
            problems.push(format!(
                "client_address_header: {:?} is not a header name",
                self.client_address_header
            ));
        }
        problems.extend(self.push_service.problems());
        let federation = &self.federation;
        if federation.signature_lifetime_secs == 0
            || federation.signature_lifetime_secs > MAX_SIGNATURE_LIFETIME_SECS
        {
            problems.push(format!(
                "federation.signature_lifetime_secs: must be between 1 and {MAX_SIGNATURE_LIFETIME_SECS}"
            ));
        }
        for (domain, key) in &federation.peer_keys {
            if let Err(e) = crate::federation::parse_public_key(key) {
                problems.push(format!("federation.peer_keys: {domain}: {e}"));
            }
        }
        for (peer, jid) in &federation.peer_xmpp {
            if reqwest::Url::parse(peer).is_err() {
                problems.push(format!("federation.peer_xmpp: {peer:?} is not a URL"));
            }
            if !crate::xmpp_forward::plausible_service_jid(jid) {
                problems.push(format!(
                    "federation.peer_xmpp: {peer}: {jid:?} is not a domain like push.example.org"
                ));
            }
        }
        if self.federation_domain().is_empty() {
            problems
                .push("federation.domain: empty, and public_url has no host to default to".into());
        }
        problems
    }

    /// This relay's name towards its peers: `federation.domain`, else the host of `public_url`.
    pub fn federation_domain(&self) -> String {
        if !self.federation.domain.is_empty() {
            return self.federation.domain.to_ascii_lowercase();
        }
        reqwest::Url::parse(&self.public_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
            .unwrap_or_default()
    }

    /// The messages endpoint of this relay, as handed out with tokens.
    pub fn messages_endpoint(&self) -> String {
        format!("{}/api/v1/messages/", self.public_url.trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        relay: RelayConfig,
    }

    /// relay/relay.example.toml lists every key with its default, so it cannot rot.
    #[test]
    fn example_parses_to_the_defaults() {
        let f: File = toml::from_str(include_str!("../relay.example.toml")).unwrap();
        assert_eq!(f.relay, RelayConfig::default());
    }

    #[test]
    fn empty_section_is_all_defaults_and_unknown_keys_are_rejected() {
        let f: File = toml::from_str("[relay]\n").unwrap();
        assert_eq!(f.relay, RelayConfig::default());
        assert!(toml::from_str::<File>("[relay]\nenable = true\n").is_err());
        assert!(toml::from_str::<File>("[relay.fcm]\napi_key = \"x\"\n").is_err());
    }

    #[test]
    fn problems_name_their_key() {
        assert!(RelayConfig::default().problems().is_empty());
        let mut c = RelayConfig {
            allowed_endpoint_networks: vec!["127.0.0.0/8".into(), "10.0.0.0/40".into()],
            ..RelayConfig::default()
        };
        c.http.header_read_timeout_ms = 0;
        c.http.max_connections = 0;
        let problems = c.problems();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("allowed_endpoint_networks:"));
        assert!(problems[1].starts_with("http.header_read_timeout_ms:"));
        assert!(problems[2].starts_with("http.max_connections:"));
    }

    #[test]
    fn push_service_remote_domains_are_checked() {
        let mut c = RelayConfig::default();
        assert!(!c.push_service.allows_remote_domain("friends.example"));
        c.push_service.remote_domains = vec!["friends.example".into()];
        assert!(c.problems().is_empty());
        assert!(c.push_service.allows_remote_domain("Friends.Example"));
        assert!(!c.push_service.allows_remote_domain("other.example"));
        c.push_service.remote_domains = vec!["*".into()];
        assert!(c.push_service.allows_remote_domain("other.example"));
        c.push_service.remote_domains = vec![
            "Friends.example".into(),
            "a@friends.example".into(),
            "".into(),
            "-x.example".into(),
        ];
        c.push_service.max_nodes_per_remote_domain = 0;
        let problems = c.problems();
        assert_eq!(problems.len(), 5, "{problems:?}");
        assert!(
            problems.iter().all(|p| p.starts_with("push_service.")),
            "{problems:?}"
        );
        // The cap on every remote domain together is at least one domain's.
        let mut c = RelayConfig::default();
        c.push_service.max_remote_nodes = 99;
        assert_eq!(
            c.problems(),
            ["push_service.max_remote_nodes: must be at least max_nodes_per_remote_domain"]
        );
    }

    #[test]
    fn trusted_proxies_and_header_are_checked() {
        assert!(RelayConfig::default().problems().is_empty());
        let config = RelayConfig {
            trusted_proxies: vec!["127.0.0.1/32".into(), "10.0.0.0/40".into(), "proxy".into()],
            client_address_header: "Bad Header".into(),
            ..RelayConfig::default()
        };
        assert_eq!(config.problems().len(), 3, "{:?}", config.problems());
    }
}
