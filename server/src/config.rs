//! Configuration: `herald.toml` plus `HERALD_<SECTION>__<KEY>` environment overrides.
//!
//! [`RawConfig`] is what serde reads (unknown keys rejected); [`Config::resolve`] checks it and reports every
//! problem at once, so `herald check-config` can print the whole list. With no file at all the defaults give a
//! working single-domain server on `localhost` with SQLite in `data/` and a self-signed certificate.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::xmpp::Limits;

mod pep;
mod push_notifications;
mod s2s;
pub use pep::{PepSettings, RawPep};
pub use push_notifications::{PushNotificationSettings, RawPushNotifications};
pub use s2s::{PeerSettings, RawPeer, RawS2s, S2sSettings};

/// The file as written by the admin. Every section and key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub server: RawServer,
    pub storage: RawStorage,
    pub c2s: RawC2s,
    pub registration: RawRegistration,
    pub limits: RawLimits,
    pub tls: RawTls,
    pub component: RawComponents,
    pub relay: herald_relay::RelayConfig,
    pub archive: RawArchive,
    pub push_notifications: RawPushNotifications,
    pub pep: RawPep,
    /// Federation; absent means off.
    pub s2s: Option<RawS2s>,
}

/// `[archive]`: the message archive (XEP-0313).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawArchive {
    /// Whether messages are archived at all (on by default: clients such as Conversations rely on the
    /// archive to fill in what another device sent or received). Off, the server archives nothing and
    /// neither offers nor answers XEP-0313, like Prosody without mod_mam; what is stored stays, and
    /// retention still purges it.
    pub enabled: bool,
    /// Days archived messages are kept; 0 keeps them forever. Keeping forever is the default because a
    /// purge cannot be undone (ejabberd keeps forever too; Prosody's mod_mam and Snikket keep a week).
    pub retention_days: u32,
}

impl Default for RawArchive {
    fn default() -> Self {
        RawArchive {
            enabled: true,
            retention_days: 0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    pub domains: Vec<String>,
    pub data_dir: String,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            domains: vec!["localhost".into()],
            data_dir: "data".into(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStorage {
    /// Empty means `sqlite://<data_dir>/herald.db`.
    pub url: String,
    /// PostgreSQL connections in the pool; 0 means automatic (twice the CPUs plus four, from 6 to 20).
    pub pool_size: u32,
}

/// Largest `storage.pool_size` accepted: far above what one server can use, so a larger number is a typo.
const MAX_STORAGE_POOL_SIZE: u32 = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawC2s {
    pub listen: String,
    /// XEP-0368 direct TLS; empty disables it.
    pub direct_tls_listen: String,
    pub require_tls: bool,
    /// Seconds a connection may take to authenticate before it is closed (RFC 6120 section 4.9.3.4 connection-timeout).
    pub auth_timeout_seconds: u64,
    /// Seconds of silence before the server pings a session (XEP-0199 section 4.2) to find dead connections.
    pub ping_interval_seconds: u64,
    /// Seconds a write to a client may make no progress before the connection is ended (the client stopped
    /// reading); what was queued for it is then routed as if it had gone offline (RFC 6121 section 8.5).
    pub write_timeout_seconds: u64,
    /// Seconds a session whose connection dropped waits to be resumed (XEP-0198 section 5) before it ends
    /// as if the client had left; 0 disables resumption (acknowledgements still work).
    pub resume_timeout_seconds: u64,
    /// Seconds a hibernated session of a user with push notifications waits to be resumed once a push
    /// has gone out for it (as Prosody's `push_max_hibernation_timeout`, XEP-0357 with XEP-0198): the
    /// phone is asleep, not gone; its devices are woken shortly before the end.
    pub push_resume_timeout_seconds: u64,
}

impl Default for RawC2s {
    fn default() -> Self {
        RawC2s {
            listen: "[::]:5222".into(),
            direct_tls_listen: "[::]:5223".into(),
            require_tls: true,
            auth_timeout_seconds: 60,
            ping_interval_seconds: 300,
            write_timeout_seconds: 30,
            resume_timeout_seconds: 300,
            push_resume_timeout_seconds: 72 * 3600,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRegistration {
    /// XEP-0077 account creation by anyone who can connect. Password change and account removal always work.
    pub allow_in_band: bool,
    /// In-band registration attempts per client address (IPv6: per /64) per hour; 0 means no limit.
    pub per_address_per_hour: u32,
}

impl Default for RawRegistration {
    fn default() -> Self {
        RawRegistration {
            allow_in_band: false,
            per_address_per_hour: 5,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    pub max_stanza_bytes: usize,
    pub max_depth: usize,
    pub offline_quota: usize,
    /// Stanzas per second one session may send before it is disconnected with policy-violation.
    pub stanzas_per_second: u32,
    pub max_connections: usize,
    /// Most elements in one stanza once authenticated (before, a fixed 100: `Limits::PRE_AUTH`).
    pub max_elements: usize,
    /// Most attributes on one element once authenticated (before, a fixed 16).
    pub max_attributes: usize,
    /// Largest estimated size of one stanza's parsed tree once authenticated, bytes (before, a fixed 64 KiB).
    pub max_parsed_bytes: usize,
    /// Client connections that have not authenticated yet (TLS handshakes included), in all.
    pub max_unauthenticated: usize,
    /// Client connections that have not authenticated yet from one IPv4 address or IPv6 /64.
    pub max_unauthenticated_per_address: usize,
    /// Bytes of stanzas (as serialised for the wire) one session may have queued for writing; beyond it a
    /// stanza is handled as if that resource were unavailable.
    pub session_queue_bytes: usize,
    /// Items one roster may hold, pending subscription requests included (RFC 6121 section 2).
    pub max_roster_items: usize,
    /// JIDs one block list may hold (XEP-0191).
    pub max_block_list_items: usize,
    /// XEP-0049 private XML fragments (one per namespace and element name) one account may store.
    pub max_private_xml_fragments: usize,
    /// Bytes of one XEP-0049 private XML fragment, serialised.
    pub max_private_xml_bytes: usize,
    /// Bytes of stanzas (serialised) one external component may have queued for writing; beyond it stanzas
    /// to its domain bounce with remote-server-timeout.
    pub component_queue_bytes: usize,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            max_stanza_bytes: Limits::DEFAULT_MAX_STANZA_BYTES,
            max_depth: Limits::DEFAULT_MAX_DEPTH,
            offline_quota: 1000,
            stanzas_per_second: 200,
            max_connections: 100_000,
            max_elements: Limits::DEFAULT_MAX_ELEMENTS,
            max_attributes: Limits::DEFAULT_MAX_ATTRIBUTES,
            max_parsed_bytes: Limits::DEFAULT_MAX_PARSED_BYTES,
            // A login holds its slot for the TLS handshake and SASL, well under a second, so 1024 admits a
            // storm of over a thousand logins a second; at the pre-authentication limits each costs at most
            // about 100 KiB (receive buffer, parse budget, TLS state), about 100 MiB in all.
            max_unauthenticated: 1024,
            // Enough for a NAT with dozens of people logging in at the same moment.
            max_unauthenticated_per_address: 32,
            session_queue_bytes: 2 * 1024 * 1024,
            max_roster_items: 1000,
            max_block_list_items: 1000,
            // Clients keep a handful (bookmarks, a few preferences); 64 fragments of at most 64 KiB
            // bound an account's private XML at 4 MiB.
            max_private_xml_fragments: 64,
            max_private_xml_bytes: 65_536,
            component_queue_bytes: 16 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTls {
    pub certificates: Vec<RawCertificate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    pub domain: String,
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawComponents {
    /// XEP-0114 listener; empty disables components.
    pub listen: String,
    pub components: Vec<RawComponent>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawComponent {
    pub domain: String,
    /// File holding the shared secret (secrets are never inlined in the config).
    pub secret_file: String,
}

/// A checked configuration, ready to run.
#[derive(Debug, Clone)]
pub struct Config {
    pub domains: Vec<String>,
    pub data_dir: PathBuf,
    pub storage_url: String,
    /// PostgreSQL pool size; `None`: automatic ([`herald_storage::default_postgres_pool_size`]).
    pub storage_pool_size: Option<u32>,
    pub c2s_listen: SocketAddr,
    pub direct_tls_listen: Option<SocketAddr>,
    pub require_tls: bool,
    pub auth_timeout: std::time::Duration,
    pub ping_interval: std::time::Duration,
    pub write_timeout: std::time::Duration,
    /// How long a session whose connection dropped can be resumed (XEP-0198 section 5); zero: never.
    pub resume_timeout: std::time::Duration,
    /// How long a hibernated session waits once a push went out for it (`[c2s]
    /// push_resume_timeout_seconds`, at least `resume_timeout`).
    pub push_resume_timeout: std::time::Duration,
    pub allow_in_band_registration: bool,
    /// In-band registration attempts per client address per hour (0: no limit).
    pub registrations_per_address_per_hour: u32,
    pub max_stanza_bytes: usize,
    pub max_depth: usize,
    pub offline_quota: usize,
    pub stanzas_per_second: u32,
    pub max_connections: usize,
    pub max_elements: usize,
    pub max_attributes: usize,
    pub max_parsed_bytes: usize,
    pub max_unauthenticated: usize,
    pub max_unauthenticated_per_address: usize,
    pub session_queue_bytes: usize,
    /// Most items in one roster, hidden pending-in items included.
    pub max_roster_items: usize,
    /// Most JIDs in one block list.
    pub max_block_list_items: usize,
    /// Most XEP-0049 private XML fragments per account.
    pub max_private_xml_fragments: usize,
    /// Largest XEP-0049 private XML fragment, bytes serialised.
    pub max_private_xml_bytes: usize,
    pub component_queue_bytes: usize,
    pub certificates: Vec<CertificateFiles>,
    pub component_listen: Option<SocketAddr>,
    pub components: Vec<ComponentSecret>,
    /// The hosted push relay, resolved (its key files read); `None` unless `[relay] enabled`.
    pub relay: Option<herald_relay::RelaySettings>,
    /// Whether the message archive (XEP-0313) is on (`[archive] enabled`).
    pub archive_enabled: bool,
    /// How long archived messages are kept (XEP-0313 section 3.2); `None` keeps them forever.
    pub archive_retention: Option<std::time::Duration>,
    /// XEP-0357 publishing (`[push_notifications]`).
    pub push_notifications: PushNotificationSettings,
    /// XEP-0163 limits (`[pep]`).
    pub pep: PepSettings,
    /// Federation (`[s2s]`); `None`: remote domains bounce with remote-server-not-found.
    pub s2s: Option<S2sSettings>,
}

#[derive(Debug, Clone)]
pub struct CertificateFiles {
    pub domain: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Clone)]
pub struct ComponentSecret {
    pub domain: String,
    pub secret: String,
}

impl std::fmt::Debug for ComponentSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentSecret")
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

/// Every problem found in a configuration, in the order found.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct ConfigErrors {
    pub problems: Vec<String>,
}

const ENV_PREFIX: &str = "HERALD_";

/// The longest timeout or interval a `[c2s]` key may name.
const MAX_TIMEOUT_SECONDS: u64 = 86_400;

/// The longest `[c2s] push_resume_timeout_seconds`: a week (Prosody's default is 72 hours).
const MAX_PUSH_RESUME_TIMEOUT_SECONDS: u64 = 7 * 86_400;

impl RawConfig {
    /// Reads `path` (a missing file is an error only when `must_exist`), then applies `HERALD_*` overrides
    /// from `env`. Errors: the file cannot be read, is not valid TOML, or has unknown keys.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<RawConfig, ConfigErrors> {
        let text = match path {
            Some(path) => std::fs::read_to_string(path).map_err(|e| ConfigErrors {
                problems: vec![format!("cannot read {}: {e}", path.display())],
            })?,
            None => String::new(),
        };
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigErrors {
            problems: vec![format!("not valid TOML: {e}")],
        })?;
        let mut problems = Vec::new();
        for (key, value) in env {
            let Some(path) = key.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let Some((section, field)) = path.split_once("__") else {
                continue;
            };
            let section = section.to_ascii_lowercase();
            let field = field.to_ascii_lowercase();
            let entry = table
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(t) => {
                    t.insert(field, env_value(&value));
                }
                _ => problems.push(format!("{key}: [{section}] is not a section")),
            }
        }
        if !problems.is_empty() {
            return Err(ConfigErrors { problems });
        }
        toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigErrors {
                problems: vec![e.message().to_string()],
            })
    }
}

/// Environment values are typed as TOML would type them (numbers, booleans, arrays), else taken as strings.
fn env_value(raw: &str) -> toml::Value {
    let probe = format!("v = {raw}");
    match probe.parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

/// The relay's federation key (Ed25519, PKCS#8 PEM) in the data folder when `[relay.federation]
/// key_file` names none: created on the relay's first start, published at
/// `GET /api/v1/federation/key`.
pub const RELAY_FEDERATION_KEY_FILE: &str = "relay-federation-key.pem";

impl Config {
    /// Checks a raw configuration. Errors: every problem found, not just the first. Component secret files and,
    /// with `[relay] enabled`, the relay's key files (APNs, FCM, VAPID) are read and checked here, so a missing
    /// or invalid file is reported before the server starts; the TLS certificate files are only checked to
    /// exist here and are parsed at start.
    pub fn resolve(raw: RawConfig) -> Result<Config, ConfigErrors> {
        let mut problems = Vec::new();
        let mut domains = Vec::new();
        for domain in &raw.server.domains {
            match crate::xmpp::BareJid::new(domain) {
                Ok(jid) if jid.node().is_none() => domains.push(jid.domain().to_string()),
                _ => problems.push(format!("server.domains: {domain:?} is not a valid domain")),
            }
        }
        if raw.server.domains.is_empty() {
            problems.push("server.domains: at least one domain is required".into());
        }
        let data_dir = PathBuf::from(&raw.server.data_dir);
        let storage_url = if raw.storage.url.is_empty() {
            format!("sqlite://{}?mode=rwc", data_dir.join("herald.db").display())
        } else {
            raw.storage.url.clone()
        };
        if !(storage_url.starts_with("sqlite:")
            || storage_url.starts_with("postgres:")
            || storage_url.starts_with("postgresql:"))
        {
            problems.push(format!(
                "storage.url: {storage_url:?} must start with sqlite: or postgres:"
            ));
        }
        if raw.storage.pool_size > MAX_STORAGE_POOL_SIZE {
            problems.push(format!(
                "storage.pool_size: {} is more than {MAX_STORAGE_POOL_SIZE} (0 means automatic)",
                raw.storage.pool_size
            ));
        }
        let storage_pool_size = (raw.storage.pool_size > 0).then_some(raw.storage.pool_size);
        let c2s_listen = parse_addr("c2s.listen", &raw.c2s.listen, &mut problems);
        let direct_tls_listen = if raw.c2s.direct_tls_listen.is_empty() {
            None
        } else {
            parse_addr(
                "c2s.direct_tls_listen",
                &raw.c2s.direct_tls_listen,
                &mut problems,
            )
        };
        let limits = &raw.limits;
        if limits.max_stanza_bytes < 10_000 {
            problems.push(
                "limits.max_stanza_bytes: must be at least 10000 (RFC 6120 section 13.12)".into(),
            );
        }
        if limits.max_depth < 4 {
            problems.push("limits.max_depth: must be at least 4".into());
        }
        if limits.session_queue_bytes < limits.max_stanza_bytes {
            problems.push(
                "limits.session_queue_bytes: must be at least limits.max_stanza_bytes, so that any stanza \
                 a client may send can be queued for another"
                    .into(),
            );
        }
        if limits.component_queue_bytes < limits.max_stanza_bytes {
            problems.push(
                "limits.component_queue_bytes: must be at least limits.max_stanza_bytes".into(),
            );
        }
        if raw.c2s.write_timeout_seconds == 0 {
            problems.push("c2s.write_timeout_seconds: must be positive".into());
        }
        // Deadlines are `Instant::now() + timeout`, which panics past the clock's range (about 2^63
        // seconds): an absurd value is a configuration error here, not a panic at every connection.
        for (key, seconds) in [
            ("c2s.auth_timeout_seconds", raw.c2s.auth_timeout_seconds),
            ("c2s.ping_interval_seconds", raw.c2s.ping_interval_seconds),
            ("c2s.write_timeout_seconds", raw.c2s.write_timeout_seconds),
            ("c2s.resume_timeout_seconds", raw.c2s.resume_timeout_seconds),
        ] {
            if seconds > MAX_TIMEOUT_SECONDS {
                problems.push(format!(
                    "{key}: must be at most {MAX_TIMEOUT_SECONDS} (one day)"
                ));
            }
        }
        if raw.c2s.push_resume_timeout_seconds > MAX_PUSH_RESUME_TIMEOUT_SECONDS {
            problems.push(format!(
                "c2s.push_resume_timeout_seconds: must be at most {MAX_PUSH_RESUME_TIMEOUT_SECONDS} (a week)"
            ));
        }
        if limits.stanzas_per_second == 0 {
            problems.push("limits.stanzas_per_second: must be positive".into());
        }
        // Below the pre-authentication limits, what a client may send before login would be refused after.
        let pre_auth = Limits::PRE_AUTH;
        if limits.max_elements < pre_auth.max_elements {
            problems.push(format!(
                "limits.max_elements: must be at least {}",
                pre_auth.max_elements
            ));
        }
        if limits.max_attributes < pre_auth.max_attributes {
            problems.push(format!(
                "limits.max_attributes: must be at least {}",
                pre_auth.max_attributes
            ));
        }
        // A stanza of plain text parses to about its own size.
        if limits.max_parsed_bytes < limits.max_stanza_bytes {
            problems
                .push("limits.max_parsed_bytes: must be at least limits.max_stanza_bytes".into());
        }
        if limits.max_unauthenticated == 0 {
            problems.push("limits.max_unauthenticated: must be positive".into());
        }
        if limits.max_unauthenticated_per_address == 0 {
            problems.push("limits.max_unauthenticated_per_address: must be positive".into());
        }
        if limits.max_roster_items == 0 {
            problems.push("limits.max_roster_items: must be positive".into());
        }
        if limits.max_block_list_items == 0 {
            problems.push("limits.max_block_list_items: must be positive".into());
        }
        if limits.max_private_xml_fragments == 0 {
            problems.push("limits.max_private_xml_fragments: must be positive".into());
        }
        if limits.max_private_xml_bytes == 0 {
            problems.push("limits.max_private_xml_bytes: must be positive".into());
        }
        let mut certificates = Vec::new();
        for cert in &raw.tls.certificates {
            let files = CertificateFiles {
                domain: cert.domain.clone(),
                cert: PathBuf::from(&cert.cert),
                key: PathBuf::from(&cert.key),
            };
            for (what, path) in [("cert", &files.cert), ("key", &files.key)] {
                if !path.is_file() {
                    problems.push(format!(
                        "tls.certificates[{}].{what}: {} is not a readable file",
                        cert.domain,
                        path.display()
                    ));
                }
            }
            if !raw.server.domains.contains(&cert.domain) {
                problems.push(format!(
                    "tls.certificates: {} is not one of server.domains",
                    cert.domain
                ));
            }
            certificates.push(files);
        }
        let component_listen = if raw.component.listen.is_empty() {
            None
        } else {
            parse_addr("component.listen", &raw.component.listen, &mut problems)
        };
        let mut components = Vec::new();
        for component in &raw.component.components {
            match std::fs::read_to_string(&component.secret_file) {
                Ok(secret) if !secret.trim().is_empty() => components.push(ComponentSecret {
                    domain: component.domain.clone(),
                    secret: secret.trim().to_string(),
                }),
                Ok(_) => problems.push(format!(
                    "component.components[{}].secret_file: file is empty",
                    component.domain
                )),
                Err(e) => problems.push(format!(
                    "component.components[{}].secret_file: {}: {e}",
                    component.domain, component.secret_file
                )),
            }
            if raw.server.domains.contains(&component.domain) {
                problems.push(format!(
                    "component.components: {} is already a user domain",
                    component.domain
                ));
            }
        }
        // `[relay]` is resolved here, once: check-config lists its problems with the rest, and `serve`
        // starts the relay from exactly what was checked (its key files read here, as the component
        // secrets are). A section that is not enabled has only its values checked: its files are unused.
        let relay_problems = |bad: Vec<String>| bad.into_iter().map(|p| format!("relay.{p}"));
        if raw.relay.enabled {
            let components: Vec<&str> = components.iter().map(|c| c.domain.as_str()).collect();
            problems.extend(crate::features::app_server::service_domain_problem(
                &raw.relay.pubsub_jid,
                &raw.server.domains,
                &components,
            ));
            // A domain of ours is never "remote": its users are local accounts.
            for domain in &raw.relay.push_service.remote_domains {
                if raw.server.domains.contains(domain) || *domain == raw.relay.pubsub_jid {
                    problems.push(format!(
                        "relay.push_service.remote_domains: {domain} is one of this server's domains"
                    ));
                }
            }
        }
        let relay = if raw.relay.enabled {
            let mut section = raw.relay;
            // The relay's federation key lives with the rest of the server's data unless named.
            if section.federation.key_file.is_empty() {
                section.federation.key_file = data_dir
                    .join(RELAY_FEDERATION_KEY_FILE)
                    .display()
                    .to_string();
            }
            match section.resolve() {
                Ok(settings) => Some(settings),
                Err(bad) => {
                    problems.extend(relay_problems(bad));
                    None
                }
            }
        } else {
            problems.extend(relay_problems(raw.relay.problems()));
            None
        };
        let push_notifications = raw.push_notifications.resolve(&mut problems);
        let pep = raw.pep.resolve(&mut problems);
        let s2s = raw
            .s2s
            .as_ref()
            .and_then(|s2s| s2s.resolve(&domains, &mut problems));
        if !problems.is_empty() {
            return Err(ConfigErrors { problems });
        }
        Ok(Config {
            domains,
            data_dir,
            storage_url,
            storage_pool_size,
            c2s_listen: c2s_listen.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 5222))),
            direct_tls_listen,
            require_tls: raw.c2s.require_tls,
            auth_timeout: std::time::Duration::from_secs(raw.c2s.auth_timeout_seconds.max(1)),
            ping_interval: std::time::Duration::from_secs(raw.c2s.ping_interval_seconds.max(1)),
            write_timeout: std::time::Duration::from_secs(raw.c2s.write_timeout_seconds),
            resume_timeout: std::time::Duration::from_secs(raw.c2s.resume_timeout_seconds),
            // Never shorter than the plain resume timeout: a push must not shorten a hibernation.
            push_resume_timeout: std::time::Duration::from_secs(
                raw.c2s
                    .push_resume_timeout_seconds
                    .max(raw.c2s.resume_timeout_seconds),
            ),
            allow_in_band_registration: raw.registration.allow_in_band,
            registrations_per_address_per_hour: raw.registration.per_address_per_hour,
            max_stanza_bytes: limits.max_stanza_bytes,
            max_depth: limits.max_depth,
            offline_quota: limits.offline_quota,
            stanzas_per_second: limits.stanzas_per_second,
            max_connections: limits.max_connections,
            max_elements: limits.max_elements,
            max_attributes: limits.max_attributes,
            max_parsed_bytes: limits.max_parsed_bytes,
            max_unauthenticated: limits.max_unauthenticated,
            max_unauthenticated_per_address: limits.max_unauthenticated_per_address,
            session_queue_bytes: limits.session_queue_bytes,
            max_roster_items: limits.max_roster_items,
            max_block_list_items: limits.max_block_list_items,
            max_private_xml_fragments: limits.max_private_xml_fragments,
            max_private_xml_bytes: limits.max_private_xml_bytes,
            component_queue_bytes: limits.component_queue_bytes,
            certificates,
            component_listen,
            components,
            relay,
            archive_enabled: raw.archive.enabled,
            archive_retention: (raw.archive.retention_days > 0).then(|| {
                std::time::Duration::from_secs(u64::from(raw.archive.retention_days) * 86_400)
            }),
            push_notifications: push_notifications.unwrap_or_default(),
            pep: pep.unwrap_or_default(),
            s2s,
        })
    }

    /// The limits on what an authenticated peer may send on one stream; [`Limits::before_auth`] gives the
    /// ones before authentication.
    pub fn stream_limits(&self) -> Limits {
        Limits {
            max_stanza_bytes: self.max_stanza_bytes,
            max_depth: self.max_depth,
            max_elements: self.max_elements,
            max_attributes: self.max_attributes,
            max_parsed_bytes: self.max_parsed_bytes,
        }
    }

    /// How to open [`Config::storage_url`]: `herald serve` and the test servers open it the same way.
    pub fn storage_options(&self) -> herald_storage::ConnectOptions {
        herald_storage::ConnectOptions {
            postgres_pool_size: self.storage_pool_size,
        }
    }

    /// Whether `domain` is one this server hosts users for.
    pub fn is_local_domain(&self, domain: &str) -> bool {
        self.domains.iter().any(|d| d == domain)
    }
}

fn parse_addr(key: &str, value: &str, problems: &mut Vec<String>) -> Option<SocketAddr> {
    match value.parse() {
        Ok(addr) => Some(addr),
        Err(_) => {
            problems.push(format!(
                "{key}: {value:?} is not an address like 0.0.0.0:5222 or [::]:5222"
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_file_gives_a_working_localhost_server() {
        let raw = RawConfig::load(None, Vec::new()).unwrap();
        let config = Config::resolve(raw).unwrap();
        assert_eq!(config.domains, vec!["localhost".to_string()]);
        assert!(config.storage_url.starts_with("sqlite://"));
        assert_eq!(config.storage_pool_size, None, "automatic");
        assert!(config.require_tls);
        assert!(!config.allow_in_band_registration);
    }

    #[test]
    fn example_config_in_the_repo_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../herald.example.toml");
        let raw = RawConfig::load(Some(&path), Vec::new()).unwrap();
        let config = Config::resolve(raw).unwrap();
        assert!(config.is_local_domain("localhost"));
        assert_eq!(config.registrations_per_address_per_hour, 5);
    }

    /// The relay's federation key defaults to the data folder, and checking the configuration
    /// creates nothing (the relay creates the key when it starts).
    #[test]
    fn the_relay_federation_key_lives_in_the_data_folder() {
        let dir = tempfile::tempdir().unwrap();
        let env = vec![
            ("HERALD_RELAY__ENABLED".to_string(), "true".to_string()),
            (
                "HERALD_SERVER__DATA_DIR".to_string(),
                dir.path().display().to_string(),
            ),
        ];
        let config = Config::resolve(RawConfig::load(None, env).unwrap()).unwrap();
        let relay = config.relay.as_ref().unwrap();
        let expected = dir.path().join(RELAY_FEDERATION_KEY_FILE);
        assert_eq!(
            relay.config().federation.key_file,
            expected.display().to_string()
        );
        assert!(!expected.exists());
    }

    #[test]
    fn bad_relay_trusted_proxies_are_reported_with_the_rest() {
        let env = vec![
            (
                "HERALD_RELAY__TRUSTED_PROXIES".to_string(),
                "[\"10.0.0.0/8\", \"proxy.example\"]".to_string(),
            ),
            ("HERALD_LIMITS__MAX_DEPTH".to_string(), "1".to_string()),
        ];
        let errors = Config::resolve(RawConfig::load(None, env).unwrap()).unwrap_err();
        assert_eq!(errors.problems.len(), 2, "{:?}", errors.problems);
        assert!(errors.problems[1].starts_with("relay.trusted_proxies:"));
    }

    /// Resolves `[limits] max_depth = 1` (another section's problem) plus `relay`, a `[relay]` section
    /// written into a file of its own; the problems found.
    fn problems_with(relay: &str) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.toml");
        std::fs::write(&path, format!("[limits]\nmax_depth = 1\n{relay}")).unwrap();
        Config::resolve(RawConfig::load(Some(&path), Vec::new()).unwrap())
            .unwrap_err()
            .problems
    }

    #[test]
    fn every_relay_start_problem_is_reported_with_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a key").unwrap();
        let garbage = garbage.display();
        let empty_json = dir.path().join("empty.json");
        std::fs::write(&empty_json, "{}").unwrap();
        let empty_json = empty_json.display();
        let bad_key_json = dir.path().join("bad-key.json");
        std::fs::write(
            &bad_key_json,
            r#"{"client_email": "relay@example.org", "private_key": "x", "project_id": "p"}"#,
        )
        .unwrap();
        let bad_key_json = bad_key_json.display();
        let enabled = "[relay]\nenabled = true\n";
        for (relay, expected) in [
            (
                format!("{enabled}listen = \"nowhere\"\n"),
                "relay.listen: \"nowhere\" is not an address".to_string(),
            ),
            (
                format!("{enabled}[relay.apns]\nkey_file = \"{garbage}\"\n"),
                "relay.apns.key_file: needs apns.key_id and apns.team_id".into(),
            ),
            (
                format!(
                    "{enabled}[relay.apns]\nkey_file = \"/nonexistent/key.p8\"\nkey_id = \"K\"\n\
                     team_id = \"T\"\n"
                ),
                "relay.apns.key_file: /nonexistent/key.p8: ".into(),
            ),
            (
                format!(
                    "{enabled}[relay.apns]\nkey_file = \"{garbage}\"\nkey_id = \"K\"\nteam_id = \"T\"\n"
                ),
                format!("relay.apns.key_file: {garbage}: "),
            ),
            (
                format!("{enabled}[relay.apns]\ncertificate_file = \"{garbage}\"\n"),
                "relay.apns.certificate_key_file: required with apns.certificate_file".into(),
            ),
            (
                format!(
                    "{enabled}[relay.apns]\ncertificate_file = \"{garbage}\"\n\
                     certificate_key_file = \"{garbage}\"\n"
                ),
                format!("relay.apns.certificate_file: {garbage} with {garbage}: "),
            ),
            (
                format!("{enabled}[relay.fcm]\nservice_account_file = \"/nonexistent/sa.json\"\n"),
                "relay.fcm.service_account_file: /nonexistent/sa.json: ".into(),
            ),
            (
                format!("{enabled}[relay.fcm]\nservice_account_file = \"{empty_json}\"\n"),
                format!("relay.fcm.service_account_file: {empty_json}: not a service account JSON"),
            ),
            (
                format!("{enabled}[relay.fcm]\nservice_account_file = \"{bad_key_json}\"\n"),
                format!("relay.fcm.service_account_file: {bad_key_json}: private key"),
            ),
            (
                format!(
                    "{enabled}[relay.webpush]\nvapid_private_key_file = \"/nonexistent/vapid.pem\"\n"
                ),
                "relay.webpush.vapid_private_key_file: /nonexistent/vapid.pem: ".into(),
            ),
            (
                format!("{enabled}[relay.webpush]\nvapid_private_key_file = \"{garbage}\"\n"),
                format!(
                    "relay.webpush.vapid_private_key_file: {garbage}: not a P-256 PKCS#8 or SEC1 PEM key"
                ),
            ),
            (
                format!("{enabled}trusted_proxies = [\"proxy.example\"]\n"),
                "relay.trusted_proxies:".into(),
            ),
            (
                format!("{enabled}client_address_header = \"Bad Header\"\n"),
                "relay.client_address_header:".into(),
            ),
            (
                format!("{enabled}allowed_endpoint_networks = [\"10.0.0.0/33\"]\n"),
                "relay.allowed_endpoint_networks:".into(),
            ),
            (
                format!("{enabled}[relay.http]\nmax_connections_per_address = 0\n"),
                "relay.http.max_connections_per_address:".into(),
            ),
        ] {
            let problems = problems_with(&relay);
            assert_eq!(problems.len(), 2, "{relay}\n{problems:?}");
            assert!(
                problems[0].starts_with("limits.max_depth:"),
                "{relay}\n{problems:?}"
            );
            assert!(
                problems[1].starts_with(&expected),
                "{relay}\nexpected {expected:?}, got {problems:?}"
            );
        }
    }

    #[test]
    fn a_relay_that_is_not_enabled_has_its_values_checked_but_its_files_not_read() {
        let problems = problems_with(
            "[relay]\nlisten = \"nowhere\"\n[relay.fcm]\nservice_account_file = \"/nonexistent/sa.json\"\n\
             [relay.http]\nmax_connections = 0\n",
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[1].starts_with("relay.http.max_connections:"));
        let defaults = Config::resolve(RawConfig::load(None, Vec::new()).unwrap()).unwrap();
        assert!(defaults.relay.is_none());
    }

    #[test]
    fn an_enabled_relay_carries_its_resolved_settings() {
        let env = vec![
            ("HERALD_RELAY__ENABLED".to_string(), "true".to_string()),
            (
                "HERALD_RELAY__LISTEN".to_string(),
                "127.0.0.1:0".to_string(),
            ),
        ];
        let config = Config::resolve(RawConfig::load(None, env).unwrap()).unwrap();
        let relay = config.relay.expect("[relay] enabled");
        assert_eq!(relay.listen(), SocketAddr::from(([127, 0, 0, 1], 0)));
        assert_eq!(relay.config().http.max_connections, 1024);
    }

    #[test]
    fn env_overrides_are_typed_and_win_over_the_file() {
        let env = vec![
            (
                "HERALD_STORAGE__URL".to_string(),
                "postgres://x@y/z".to_string(),
            ),
            ("HERALD_C2S__REQUIRE_TLS".to_string(), "false".to_string()),
            ("HERALD_LIMITS__OFFLINE_QUOTA".to_string(), "7".to_string()),
            ("HERALD_STORAGE__POOL_SIZE".to_string(), "3".to_string()),
            ("UNRELATED".to_string(), "1".to_string()),
        ];
        let config = Config::resolve(RawConfig::load(None, env).unwrap()).unwrap();
        assert_eq!(config.storage_url, "postgres://x@y/z");
        assert_eq!(config.storage_pool_size, Some(3));
        assert!(!config.require_tls);
        assert_eq!(config.offline_quota, 7);
    }

    #[test]
    fn archive_retention_is_in_days_and_zero_keeps_forever() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.toml");
        std::fs::write(&path, "[archive]\nretention_days = 7\n").unwrap();
        let config = Config::resolve(RawConfig::load(Some(&path), Vec::new()).unwrap()).unwrap();
        assert_eq!(
            config.archive_retention,
            Some(std::time::Duration::from_secs(7 * 86_400))
        );
        assert!(
            config.archive_enabled,
            "a section without `enabled` keeps the archive on"
        );
        let default = Config::resolve(RawConfig::load(None, Vec::new()).unwrap()).unwrap();
        assert_eq!(default.archive_retention, None);
        assert!(default.archive_enabled);
        std::fs::write(&path, "[archive]\nenabled = false\n").unwrap();
        let off = Config::resolve(RawConfig::load(Some(&path), Vec::new()).unwrap()).unwrap();
        assert!(!off.archive_enabled);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.toml");
        std::fs::write(&path, "[c2s]\nlisten = \"[::]:5222\"\nlisten_port = 1\n").unwrap();
        let err = RawConfig::load(Some(&path), Vec::new()).unwrap_err();
        assert!(err.to_string().contains("listen_port"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.toml");
        std::fs::write(
            &path,
            "[server]\ndomains = [\"bad domain@@\"]\n[c2s]\nlisten = \"nowhere\"\n\
             [storage]\nurl = \"mysql://x\"\npool_size = 5000\n[limits]\nmax_stanza_bytes = 5\nmax_elements = 3\n\
             max_attributes = 2\nmax_unauthenticated = 0\nmax_unauthenticated_per_address = 0\n\
             max_roster_items = 0\n\
             max_private_xml_fragments = 0\nmax_private_xml_bytes = 0\n\
             [[tls.certificates]]\ndomain = \"other.org\"\ncert = \"/nonexistent.pem\"\nkey = \"/nonexistent.key\"\n",
        )
        .unwrap();
        let err = Config::resolve(RawConfig::load(Some(&path), Vec::new()).unwrap()).unwrap_err();
        let all = err.problems.join("\n");
        for expected in [
            "server.domains",
            "c2s.listen",
            "storage.url",
            "storage.pool_size",
            "limits.max_stanza_bytes",
            "limits.max_elements",
            "limits.max_attributes",
            "limits.max_unauthenticated:",
            "limits.max_unauthenticated_per_address",
            "limits.max_roster_items",
            "limits.max_private_xml_fragments",
            "limits.max_private_xml_bytes",
            "tls.certificates[other.org].cert",
            "tls.certificates[other.org].key",
            "is not one of server.domains",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
    }

    #[test]
    fn timeouts_beyond_a_day_are_refused_instead_of_overflowing_a_deadline() {
        let env = vec![
            (
                "HERALD_C2S__AUTH_TIMEOUT_SECONDS".to_string(),
                "1000000000000".to_string(),
            ),
            (
                "HERALD_C2S__PING_INTERVAL_SECONDS".to_string(),
                "86401".to_string(),
            ),
        ];
        let err = Config::resolve(RawConfig::load(None, env).unwrap()).unwrap_err();
        let all = err.problems.join("\n");
        assert!(
            all.contains("c2s.auth_timeout_seconds: must be at most"),
            "{all}"
        );
        assert!(
            all.contains("c2s.ping_interval_seconds: must be at most"),
            "{all}"
        );
    }

    #[test]
    fn session_queue_and_write_deadline_are_checked() {
        let env = vec![
            (
                "HERALD_LIMITS__SESSION_QUEUE_BYTES".to_string(),
                "1000".to_string(),
            ),
            (
                "HERALD_C2S__WRITE_TIMEOUT_SECONDS".to_string(),
                "0".to_string(),
            ),
            (
                "HERALD_LIMITS__COMPONENT_QUEUE_BYTES".to_string(),
                "1000".to_string(),
            ),
        ];
        let err = Config::resolve(RawConfig::load(None, env).unwrap()).unwrap_err();
        let all = err.problems.join("\n");
        assert!(all.contains("limits.session_queue_bytes"), "{all}");
        assert!(all.contains("c2s.write_timeout_seconds"), "{all}");
        assert!(all.contains("limits.component_queue_bytes"), "{all}");
        let defaults = Config::resolve(RawConfig::load(None, Vec::new()).unwrap()).unwrap();
        assert_eq!(defaults.session_queue_bytes, 2 * 1024 * 1024);
        assert_eq!(defaults.write_timeout, std::time::Duration::from_secs(30));
        assert_eq!(defaults.component_queue_bytes, 16 * 1024 * 1024);
    }

    #[test]
    fn relay_problems_are_reported_with_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.toml");
        std::fs::write(
            &path,
            "[c2s]\nlisten = \"nowhere\"\n[relay]\nallowed_endpoint_networks = [\"10.0.0.0/33\"]\n\
             [relay.http]\nmax_connections = 0\nidle_timeout_ms = 0\nrequest_timeout_ms = 0\n",
        )
        .unwrap();
        let err = Config::resolve(RawConfig::load(Some(&path), Vec::new()).unwrap()).unwrap_err();
        let all = err.problems.join("\n");
        for expected in [
            "c2s.listen",
            "relay.allowed_endpoint_networks",
            "relay.http.max_connections",
            "relay.http.idle_timeout_ms",
            "relay.http.request_timeout_ms",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
    }
}
