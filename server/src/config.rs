//! Configuration: `herald.toml` plus `HERALD_<SECTION>__<KEY>` environment overrides.
//!
//! [`RawConfig`] is what serde reads (unknown keys rejected); [`Config::resolve`] checks it and reports every
//! problem at once, so `herald check-config` can print the whole list. With no file at all the defaults give a
//! working single-domain server on `localhost` with SQLite in `data/` and a self-signed certificate.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawC2s {
    pub listen: String,
    /// XEP-0368 direct TLS; empty disables it.
    pub direct_tls_listen: String,
    pub require_tls: bool,
    /// Seconds a connection may take to authenticate before it is closed (RFC 6120 section 4.9.3.1 connection-timeout).
    pub auth_timeout_seconds: u64,
    /// Seconds of silence before the server pings a session (XEP-0199 section 4.2) to find dead connections.
    pub ping_interval_seconds: u64,
}

impl Default for RawC2s {
    fn default() -> Self {
        RawC2s {
            listen: "[::]:5222".into(),
            direct_tls_listen: "[::]:5223".into(),
            require_tls: true,
            auth_timeout_seconds: 60,
            ping_interval_seconds: 300,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRegistration {
    /// XEP-0077 account creation by anyone who can connect. Password change and account removal always work.
    pub allow_in_band: bool,
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
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            max_stanza_bytes: 262_144,
            max_depth: 32,
            offline_quota: 1000,
            stanzas_per_second: 200,
            max_connections: 100_000,
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
    pub c2s_listen: SocketAddr,
    pub direct_tls_listen: Option<SocketAddr>,
    pub require_tls: bool,
    pub auth_timeout: std::time::Duration,
    pub ping_interval: std::time::Duration,
    pub allow_in_band_registration: bool,
    pub max_stanza_bytes: usize,
    pub max_depth: usize,
    pub offline_quota: usize,
    pub stanzas_per_second: u32,
    pub max_connections: usize,
    pub certificates: Vec<CertificateFiles>,
    pub component_listen: Option<SocketAddr>,
    pub components: Vec<ComponentSecret>,
    pub relay: herald_relay::RelayConfig,
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

impl Config {
    /// Checks a raw configuration. Errors: every problem found, not just the first. Component secret files are
    /// read here, so a missing file is reported before the server starts.
    pub fn resolve(raw: RawConfig) -> Result<Config, ConfigErrors> {
        let mut problems = Vec::new();
        let mut domains = Vec::new();
        for domain in &raw.server.domains {
            match xmpp_parsers::jid::BareJid::new(domain) {
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
        if limits.stanzas_per_second == 0 {
            problems.push("limits.stanzas_per_second: must be positive".into());
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
        problems.extend(
            raw.relay
                .problems()
                .into_iter()
                .map(|p| format!("relay.{p}")),
        );
        if !problems.is_empty() {
            return Err(ConfigErrors { problems });
        }
        Ok(Config {
            domains,
            data_dir,
            storage_url,
            c2s_listen: c2s_listen.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 5222))),
            direct_tls_listen,
            require_tls: raw.c2s.require_tls,
            auth_timeout: std::time::Duration::from_secs(raw.c2s.auth_timeout_seconds.max(1)),
            ping_interval: std::time::Duration::from_secs(raw.c2s.ping_interval_seconds.max(1)),
            allow_in_band_registration: raw.registration.allow_in_band,
            max_stanza_bytes: limits.max_stanza_bytes,
            max_depth: limits.max_depth,
            offline_quota: limits.offline_quota,
            stanzas_per_second: limits.stanzas_per_second,
            max_connections: limits.max_connections,
            certificates,
            component_listen,
            components,
            relay: raw.relay,
        })
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
        assert!(config.require_tls);
        assert!(!config.allow_in_band_registration);
    }

    #[test]
    fn example_config_in_the_repo_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../herald.example.toml");
        let raw = RawConfig::load(Some(&path), Vec::new()).unwrap();
        let config = Config::resolve(raw).unwrap();
        assert!(config.is_local_domain("localhost"));
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
            ("UNRELATED".to_string(), "1".to_string()),
        ];
        let config = Config::resolve(RawConfig::load(None, env).unwrap()).unwrap();
        assert_eq!(config.storage_url, "postgres://x@y/z");
        assert!(!config.require_tls);
        assert_eq!(config.offline_quota, 7);
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
             [storage]\nurl = \"mysql://x\"\n[limits]\nmax_stanza_bytes = 5\n\
             [[tls.certificates]]\ndomain = \"other.org\"\ncert = \"/nonexistent.pem\"\nkey = \"/nonexistent.key\"\n",
        )
        .unwrap();
        let err = Config::resolve(RawConfig::load(Some(&path), Vec::new()).unwrap()).unwrap_err();
        let all = err.problems.join("\n");
        for expected in [
            "server.domains",
            "c2s.listen",
            "storage.url",
            "limits.max_stanza_bytes",
            "tls.certificates[other.org].cert",
            "tls.certificates[other.org].key",
            "is not one of server.domains",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
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
