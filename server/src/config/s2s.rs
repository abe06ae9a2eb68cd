//! `[s2s]`: server-to-server federation (RFC 6120; XEP-0178 SASL EXTERNAL, XEP-0220 Server Dialback,
//! XEP-0368 direct TLS). The section absent means federation is off: stanzas to remote domains bounce with
//! `remote-server-not-found` (RFC 6120 section 8.3.3.15).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawS2s {
    /// Inbound listener with STARTTLS (RFC 6120 section 5).
    pub listen: String,
    /// Inbound direct TLS listener (XEP-0368, ALPN `xmpp-server`); empty disables it.
    pub direct_tls_listen: String,
    /// No stanza over plaintext, inbound or outbound (RFC 7590).
    pub require_encryption: bool,
    /// Extra trust anchors (PEM files) added to the webpki roots.
    pub ca_files: Vec<String>,
    /// DNS server for SRV and address lookups; empty: the system resolver.
    pub nameserver: String,
    /// Seconds a stanza may wait for its remote domain before it bounces with `remote-server-timeout`.
    pub queue_timeout_seconds: u64,
    /// Seconds an s2s stream may be idle before it is closed.
    pub idle_timeout_seconds: u64,
    /// Stanzas waiting per remote domain; beyond it they bounce with `resource-constraint`.
    pub max_queue_stanzas: usize,
    /// Bytes of stanzas waiting per remote domain.
    pub max_queue_bytes: usize,
    /// Inbound s2s connections at once, over every s2s listener; more are refused.
    pub max_connections: usize,
    /// Inbound s2s connections at once from one address (IPv6: one /64).
    pub max_connections_per_address: usize,
    /// Inbound s2s streams at once on which one remote domain authenticated.
    pub max_connections_per_domain: usize,
    /// Per-domain settings.
    pub peers: Vec<RawPeer>,
}

impl Default for RawS2s {
    fn default() -> Self {
        RawS2s {
            listen: "0.0.0.0:5269".into(),
            direct_tls_listen: String::new(),
            require_encryption: true,
            ca_files: Vec::new(),
            nameserver: String::new(),
            queue_timeout_seconds: 300,
            idle_timeout_seconds: 600,
            max_queue_stanzas: 10_000,
            max_queue_bytes: 10_000_000,
            max_connections: 1000,
            max_connections_per_address: 64,
            max_connections_per_domain: 16,
            peers: Vec::new(),
        }
    }
}

/// `[[s2s.peers]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPeer {
    pub domain: String,
    /// Static address: no DNS lookup for this domain.
    #[serde(default)]
    pub address: String,
    /// Connect with direct TLS (XEP-0368) instead of STARTTLS.
    #[serde(default)]
    pub direct_tls: bool,
    /// A PEM certificate accepted as this domain's, whatever signed it (a pinned self-signed one).
    #[serde(default)]
    pub certificate: String,
    /// Server Dialback (XEP-0220) is allowed with this domain even when its certificate does not validate.
    #[serde(default)]
    pub allow_dialback_without_certificate: bool,
}

/// The checked section.
#[derive(Debug, Clone)]
pub struct S2sSettings {
    pub listen: SocketAddr,
    pub direct_tls_listen: Option<SocketAddr>,
    pub require_encryption: bool,
    pub ca_files: Vec<PathBuf>,
    pub nameserver: Option<SocketAddr>,
    pub queue_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_queue_stanzas: usize,
    pub max_queue_bytes: usize,
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    pub max_connections_per_domain: usize,
    pub peers: Vec<PeerSettings>,
}

/// One `[[s2s.peers]]` entry, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSettings {
    /// Lower case.
    pub domain: String,
    pub address: Option<SocketAddr>,
    pub direct_tls: bool,
    pub certificate: Option<PathBuf>,
    pub allow_dialback_without_certificate: bool,
}

impl S2sSettings {
    /// The settings for `domain`, if it is listed.
    pub fn peer(&self, domain: &str) -> Option<&PeerSettings> {
        self.peers.iter().find(|p| p.domain == domain)
    }
}

/// The longest timeout a `[s2s]` key may name: a day (deadlines are `Instant + timeout`).
const MAX_SECONDS: u64 = 86_400;

impl RawS2s {
    /// Checks the section; problems go to `problems` (prefixed `s2s.`). `local_domains` may not be peers.
    pub fn resolve(
        &self,
        local_domains: &[String],
        problems: &mut Vec<String>,
    ) -> Option<S2sSettings> {
        let before = problems.len();
        let mut address = |key: &str, value: &str| match value.parse::<SocketAddr>() {
            Ok(address) => Some(address),
            Err(_) => {
                problems.push(format!(
                    "s2s.{key}: {value:?} is not an address like 0.0.0.0:5269 or [::]:5269"
                ));
                None
            }
        };
        let listen = address("listen", &self.listen);
        let direct_tls_listen = if self.direct_tls_listen.is_empty() {
            None
        } else {
            address("direct_tls_listen", &self.direct_tls_listen)
        };
        let nameserver = if self.nameserver.is_empty() {
            None
        } else {
            address("nameserver", &self.nameserver)
        };
        let mut peers = Vec::new();
        for peer in &self.peers {
            let domain = peer.domain.trim_end_matches('.').to_ascii_lowercase();
            let address = if peer.address.is_empty() {
                None
            } else {
                address(&format!("peers[{domain}].address"), &peer.address)
            };
            peers.push(PeerSettings {
                domain,
                address,
                direct_tls: peer.direct_tls,
                certificate: (!peer.certificate.is_empty())
                    .then(|| PathBuf::from(&peer.certificate)),
                allow_dialback_without_certificate: peer.allow_dialback_without_certificate,
            });
        }
        for peer in &peers {
            match crate::xmpp::BareJid::new(&peer.domain) {
                Ok(jid) if jid.node().is_none() => {}
                _ => problems.push(format!(
                    "s2s.peers: {:?} is not a valid domain",
                    peer.domain
                )),
            }
            if local_domains.contains(&peer.domain) {
                problems.push(format!(
                    "s2s.peers: {} is one of server.domains",
                    peer.domain
                ));
            }
            if peers.iter().filter(|p| p.domain == peer.domain).count() > 1 {
                problems.push(format!("s2s.peers: {} is listed twice", peer.domain));
            }
            if let Some(path) = &peer.certificate
                && !path.is_file()
            {
                problems.push(format!(
                    "s2s.peers[{}].certificate: {} is not a readable file",
                    peer.domain,
                    path.display()
                ));
            }
        }
        for file in &self.ca_files {
            if !PathBuf::from(file).is_file() {
                problems.push(format!("s2s.ca_files: {file} is not a readable file"));
            }
        }
        for (key, seconds) in [
            ("queue_timeout_seconds", self.queue_timeout_seconds),
            ("idle_timeout_seconds", self.idle_timeout_seconds),
        ] {
            if seconds == 0 || seconds > MAX_SECONDS {
                problems.push(format!("s2s.{key}: must be between 1 and {MAX_SECONDS}"));
            }
        }
        if self.max_queue_stanzas == 0 {
            problems.push("s2s.max_queue_stanzas: must be positive".into());
        }
        if self.max_queue_bytes == 0 {
            problems.push("s2s.max_queue_bytes: must be positive".into());
        }
        for (key, value) in [
            ("max_connections", self.max_connections),
            (
                "max_connections_per_address",
                self.max_connections_per_address,
            ),
            (
                "max_connections_per_domain",
                self.max_connections_per_domain,
            ),
        ] {
            if value == 0 {
                problems.push(format!("s2s.{key}: must be positive"));
            }
        }
        if problems.len() != before {
            return None;
        }
        Some(S2sSettings {
            listen: listen?,
            direct_tls_listen,
            require_encryption: self.require_encryption,
            ca_files: self.ca_files.iter().map(PathBuf::from).collect(),
            nameserver,
            queue_timeout: Duration::from_secs(self.queue_timeout_seconds),
            idle_timeout: Duration::from_secs(self.idle_timeout_seconds),
            max_queue_stanzas: self.max_queue_stanzas,
            max_queue_bytes: self.max_queue_bytes,
            max_connections: self.max_connections,
            max_connections_per_address: self.max_connections_per_address,
            max_connections_per_domain: self.max_connections_per_domain,
            peers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> RawS2s {
        #[derive(Deserialize)]
        struct File {
            s2s: RawS2s,
        }
        toml::from_str::<File>(text).unwrap().s2s
    }

    #[test]
    fn defaults_and_a_peer_resolve() {
        let raw = parse(
            "[s2s]\nlisten = \"127.0.0.1:0\"\n[[s2s.peers]]\ndomain = \"B.Example.\"\n\
             address = \"127.0.0.2:5269\"\nallow_dialback_without_certificate = true\n",
        );
        let mut problems = Vec::new();
        let settings = raw.resolve(&["a.example".into()], &mut problems).unwrap();
        assert!(problems.is_empty());
        assert!(settings.require_encryption);
        assert_eq!(settings.idle_timeout, Duration::from_secs(600));
        let peer = settings.peer("b.example").unwrap();
        assert_eq!(peer.address, Some("127.0.0.2:5269".parse().unwrap()));
        assert!(peer.allow_dialback_without_certificate && !peer.direct_tls);
    }

    #[test]
    fn every_problem_is_reported() {
        let raw = parse(
            "[s2s]\nlisten = \"nowhere\"\nnameserver = \"x\"\nidle_timeout_seconds = 0\n\
             max_connections_per_domain = 0\n\
             ca_files = [\"/nonexistent/ca.pem\"]\n\
             [[s2s.peers]]\ndomain = \"a.example\"\naddress = \"bad\"\ncertificate = \"/nonexistent.pem\"\n",
        );
        let mut problems = Vec::new();
        assert!(raw.resolve(&["a.example".into()], &mut problems).is_none());
        let all = problems.join("\n");
        for expected in [
            "s2s.listen",
            "s2s.nameserver",
            "s2s.idle_timeout_seconds",
            "s2s.max_connections_per_domain",
            "s2s.ca_files",
            "s2s.peers[a.example].address",
            "s2s.peers[a.example].certificate",
            "is one of server.domains",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in {all}");
        }
    }
}
