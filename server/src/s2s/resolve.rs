//! Finding a server-to-server peer: RFC 6120 section 3.2.1 (SRV lookup of `_xmpp-server._tcp`,
//! fallback to the domain's A/AAAA records on port 5269 when there is none), XEP-0368 section 3
//! (`_xmpps-server._tcp` for direct TLS, merged with the STARTTLS records and preferred at equal
//! priority) and RFC 2782 (ordering by priority, then weighted random selection; a target of "."
//! means the service is decidedly not available). A statically configured address overrides DNS.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RData};
use hickory_resolver::{Resolver, TokioResolver};

/// The port of a peer found through its A/AAAA records (RFC 6120 section 3.2.1, fallback).
pub const DEFAULT_S2S_PORT: u16 = 5269;

/// SRV records of one domain (both services together) kept, lowest priority values first.
const MAX_SRV_RECORDS: usize = 16;

/// A peer reached at a fixed address instead of through DNS (`[[s2s.peers]] address`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaticPeer {
    pub address: SocketAddr,
    /// Connect with TLS at once (XEP-0368) rather than STARTTLS.
    pub direct_tls: bool,
}

/// Where peers are looked up.
#[derive(Debug, Clone, Default)]
pub struct ResolverSettings {
    /// A DNS server to ask (over UDP and TCP) instead of the system's (`[s2s] nameserver`).
    pub nameserver: Option<SocketAddr>,
    /// Fixed addresses by domain (matched case-insensitively); these domains are never looked up.
    pub static_peers: HashMap<String, StaticPeer>,
}

/// One place to try, in the order they should be tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// A host name (an SRV target or the domain itself) or an IP address literal.
    pub host: String,
    pub port: u16,
    /// Found under `_xmpps-server` (or configured so): TLS from the first byte (XEP-0368).
    pub direct_tls: bool,
}

/// A candidate with its host resolved to one socket address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddress {
    pub address: SocketAddr,
    pub direct_tls: bool,
    /// The host name it was found under (for logs; TLS names the peer's domain, not this host).
    pub host: String,
}

/// An SRV record of either service, as [`order_candidates`] takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// Without the trailing dot.
    pub target: String,
    pub direct_tls: bool,
}

/// Why no address could be found.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The domain has no XMPP server: it does not exist, its SRV target is ".", or neither SRV
    /// nor address records exist. Stanzas bounce with `remote-server-not-found` (RFC 6120
    /// section 8.3.3.15).
    #[error("{0} has no server-to-server service")]
    NotFound(String),
    /// A lookup failed in a way that may pass (timeout, SERVFAIL, unreachable nameserver).
    #[error("DNS lookup for {domain} failed: {reason}")]
    Lookup { domain: String, reason: String },
}

impl From<ResolveError> for super::queue::DialError {
    /// `NotFound` bounces at once (`remote-server-not-found`); a failed lookup is retried.
    fn from(error: ResolveError) -> Self {
        match error {
            ResolveError::NotFound(_) => Self::NotFound,
            ResolveError::Lookup { .. } => Self::Unreachable(error.to_string()),
        }
    }
}

/// Why the resolver could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ResolverSetupError {
    /// The system configuration (`/etc/resolv.conf`) could not be read.
    #[error("system DNS configuration: {0}")]
    SystemConfig(String),
}

/// Looks peers up, through the configured nameserver or the system's.
#[derive(Clone)]
pub struct PeerResolver {
    dns: TokioResolver,
    static_peers: HashMap<String, StaticPeer>,
}

impl std::fmt::Debug for PeerResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerResolver")
            .field("static_peers", &self.static_peers)
            .finish_non_exhaustive()
    }
}

/// What one SRV lookup said.
enum SrvAnswer {
    Records(Vec<SrvRecord>),
    /// NXDOMAIN or no SRV records at that name.
    Absent,
    Failed(String),
}

impl PeerResolver {
    /// A resolver for `settings`. Errors: [`ResolverSetupError::SystemConfig`] when no nameserver
    /// is configured and the system's configuration cannot be read.
    pub fn new(settings: &ResolverSettings) -> Result<Self, ResolverSetupError> {
        let builder = match settings.nameserver {
            Some(server) => {
                let mut udp = ConnectionConfig::udp();
                udp.port = server.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = server.port();
                let name_server = NameServerConfig::new(server.ip(), true, vec![udp, tcp]);
                Resolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![name_server]),
                    TokioRuntimeProvider::default(),
                )
            }
            None => TokioResolver::builder_tokio()
                .map_err(|e| ResolverSetupError::SystemConfig(e.to_string()))?,
        };
        let dns = builder
            .build()
            .map_err(|e| ResolverSetupError::SystemConfig(e.to_string()))?;
        let static_peers = settings
            .static_peers
            .iter()
            .map(|(domain, peer)| (domain.to_ascii_lowercase(), *peer))
            .collect();
        Ok(Self { dns, static_peers })
    }

    /// Where to try `domain`, best first: its static address if configured; otherwise its
    /// `_xmpps-server._tcp` and `_xmpp-server._tcp` SRV records in RFC 2782 order (direct TLS
    /// first at equal priority); otherwise, when neither exists, the domain itself on 5269.
    ///
    /// Errors: [`ResolveError::NotFound`] when a "." target says there is no service (and no
    /// other record offers one) or the domain does not exist; [`ResolveError::Lookup`] when the
    /// lookups failed.
    pub async fn candidates(&self, domain: &str) -> Result<Vec<Candidate>, ResolveError> {
        if let Some(peer) = self.static_peers.get(&domain.to_ascii_lowercase()) {
            return Ok(vec![Candidate {
                host: peer.address.ip().to_string(),
                port: peer.address.port(),
                direct_tls: peer.direct_tls,
            }]);
        }
        let (direct, starttls) = tokio::join!(
            self.srv(domain, "_xmpps-server._tcp", true),
            self.srv(domain, "_xmpp-server._tcp", false),
        );
        let mut records = Vec::new();
        let mut found_any = false;
        let mut failure = None;
        for answer in [direct, starttls] {
            match answer {
                SrvAnswer::Records(found) => {
                    found_any = true;
                    records.extend(found);
                }
                SrvAnswer::Absent => {}
                SrvAnswer::Failed(reason) => failure = Some(reason),
            }
        }
        if found_any {
            // The peer's DNS decides how many records there are: only the best few are worth
            // trying (each costs address lookups and a connection attempt in turn).
            records.sort_by_key(|record| record.priority);
            records.truncate(MAX_SRV_RECORDS);
            let candidates = order_candidates(records, &mut |total| rand::random_range(0..=total));
            // Only "." targets: the service is decidedly not available (RFC 2782).
            if candidates.is_empty() {
                return Err(ResolveError::NotFound(domain.to_string()));
            }
            return Ok(candidates);
        }
        let fallback = Candidate {
            host: domain.to_string(),
            port: DEFAULT_S2S_PORT,
            direct_tls: false,
        };
        match failure {
            // Without SRV answers the fallback is only worth a try if the domain has addresses;
            // a failed SRV lookup with an address lookup that works still reaches the peer.
            Some(reason) => match self.addresses(&fallback).await {
                Ok(_) => Ok(vec![fallback]),
                Err(ResolveError::NotFound(_)) => Err(ResolveError::Lookup {
                    domain: domain.to_string(),
                    reason,
                }),
                Err(error) => Err(error),
            },
            None => Ok(vec![fallback]),
        }
    }

    /// The socket addresses of one candidate (an IP literal as is).
    ///
    /// Errors: [`ResolveError::NotFound`] when the host has no A/AAAA record or does not exist;
    /// [`ResolveError::Lookup`] when the lookup failed.
    pub async fn addresses(&self, candidate: &Candidate) -> Result<Vec<SocketAddr>, ResolveError> {
        if let Ok(ip) = candidate.host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, candidate.port)]);
        }
        let name = absolute_name(&candidate.host)
            .ok_or_else(|| ResolveError::NotFound(candidate.host.clone()))?;
        match self.dns.lookup_ip(name).await {
            Ok(found) => {
                let addresses: Vec<SocketAddr> = found
                    .iter()
                    .map(|ip| SocketAddr::new(ip, candidate.port))
                    .collect();
                if addresses.is_empty() {
                    Err(ResolveError::NotFound(candidate.host.clone()))
                } else {
                    Ok(addresses)
                }
            }
            Err(error) if error.is_no_records_found() => {
                Err(ResolveError::NotFound(candidate.host.clone()))
            }
            Err(error) => Err(ResolveError::Lookup {
                domain: candidate.host.clone(),
                reason: error.to_string(),
            }),
        }
    }

    /// Every address of every candidate of `domain`, in the order to try them. Hosts that have no
    /// address are skipped.
    ///
    /// Errors: those of [`Self::candidates`]; when no candidate has an address,
    /// [`ResolveError::NotFound`] if every host was definitely absent, else the last lookup error.
    pub async fn resolve(&self, domain: &str) -> Result<Vec<PeerAddress>, ResolveError> {
        let mut resolved = Vec::new();
        let mut failure = None;
        for candidate in self.candidates(domain).await? {
            match self.addresses(&candidate).await {
                Ok(addresses) => {
                    resolved.extend(addresses.into_iter().map(|address| PeerAddress {
                        address,
                        direct_tls: candidate.direct_tls,
                        host: candidate.host.clone(),
                    }))
                }
                Err(ResolveError::NotFound(_)) => {}
                Err(error) => failure = Some(error),
            }
        }
        if resolved.is_empty() {
            return Err(failure.unwrap_or_else(|| ResolveError::NotFound(domain.to_string())));
        }
        Ok(resolved)
    }

    async fn srv(&self, domain: &str, service: &str, direct_tls: bool) -> SrvAnswer {
        let Some(name) = absolute_name(&format!("{service}.{domain}")) else {
            return SrvAnswer::Absent;
        };
        match self.dns.srv_lookup(name).await {
            Ok(lookup) => {
                let records: Vec<SrvRecord> = lookup
                    .answers()
                    .iter()
                    .filter_map(|record| match &record.data {
                        RData::SRV(srv) => Some(SrvRecord {
                            priority: srv.priority,
                            weight: srv.weight,
                            port: srv.port,
                            target: srv.target.to_ascii().trim_end_matches('.').to_string(),
                            direct_tls,
                        }),
                        _ => None,
                    })
                    .collect();
                if records.is_empty() {
                    SrvAnswer::Absent
                } else {
                    SrvAnswer::Records(records)
                }
            }
            Err(error) if is_absent(&error) => SrvAnswer::Absent,
            Err(error) => SrvAnswer::Failed(error.to_string()),
        }
    }
}

fn is_absent(error: &NetError) -> bool {
    error.is_no_records_found() || error.is_nx_domain()
}

/// `host` as a fully qualified DNS name (IDNA-encoded), so no search domain is appended.
fn absolute_name(host: &str) -> Option<Name> {
    let mut name = Name::from_utf8(host.trim_end_matches('.')).ok()?;
    name.set_fqdn(true);
    Some(name)
}

/// Orders SRV records of both services for connection attempts (RFC 2782, XEP-0368 section 3):
/// ascending priority; within a priority, direct TLS records before STARTTLS ones, each kind in
/// weighted random order. Records with a "." (empty) target are dropped. `draw(total)` returns a
/// uniform integer in `0..=total` (RFC 2782's random number), so tests can fix it.
pub fn order_candidates(
    records: Vec<SrvRecord>,
    draw: &mut dyn FnMut(u32) -> u32,
) -> Vec<Candidate> {
    let mut records: Vec<SrvRecord> = records
        .into_iter()
        .filter(|record| !record.target.is_empty() && record.target != ".")
        .collect();
    // Stable: equal keys keep the order they came in, which weighted selection then reshuffles.
    records.sort_by_key(|record| (record.priority, !record.direct_tls));
    let mut ordered = Vec::with_capacity(records.len());
    let mut rest = records.as_slice();
    while let Some(first) = rest.first() {
        let key = (first.priority, first.direct_tls);
        let same = rest
            .iter()
            .take_while(|record| (record.priority, record.direct_tls) == key)
            .count();
        let (group, tail) = rest.split_at(same);
        ordered.extend(
            weighted_order(group.to_vec(), draw)
                .into_iter()
                .map(|record| Candidate {
                    host: record.target,
                    port: record.port,
                    direct_tls: record.direct_tls,
                }),
        );
        rest = tail;
    }
    ordered
}

/// RFC 2782's selection within one priority: weight-0 records first in the running sum, a
/// random number in `0..=sum`, the first record whose running sum reaches it; repeated.
fn weighted_order(mut group: Vec<SrvRecord>, draw: &mut dyn FnMut(u32) -> u32) -> Vec<SrvRecord> {
    group.sort_by_key(|record| record.weight != 0);
    let mut ordered = Vec::with_capacity(group.len());
    while !group.is_empty() {
        let total: u32 = group.iter().map(|record| u32::from(record.weight)).sum();
        let pick = draw(total).min(total);
        let mut running = 0;
        let index = group
            .iter()
            .position(|record| {
                running += u32::from(record.weight);
                running >= pick
            })
            .unwrap_or(0);
        ordered.push(group.remove(index));
    }
    ordered
}

#[cfg(test)]
mod tests;
