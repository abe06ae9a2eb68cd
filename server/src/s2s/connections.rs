//! Caps on inbound server-to-server connections (RFC 6120 section 13.12: a server limits the resources
//! one peer can use): in all over every s2s listener, per source address (IPv6 grouped by /64, as for
//! clients, [`AddressGroup`]), and per remote domain once one has authenticated on a stream
//! (`[s2s] max_connections`, `max_connections_per_address`, `max_connections_per_domain`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::config::S2sSettings;
use crate::net::unauthenticated::AddressGroup;

/// Which cap refused a connection or a domain's authentication.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerRefusal {
    #[error("too many server-to-server connections")]
    Total,
    #[error("too many server-to-server connections from this address")]
    PerAddress,
    #[error("too many server-to-server connections for {0}")]
    PerDomain(String),
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_group: HashMap<AddressGroup, usize>,
    per_domain: HashMap<String, usize>,
}

/// The counters behind the caps, shared by the s2s listeners.
#[derive(Debug)]
pub struct PeerConnections {
    max_total: usize,
    max_per_address: usize,
    max_per_domain: usize,
    counts: Mutex<Counts>,
}

impl PeerConnections {
    pub fn new(settings: &S2sSettings) -> Arc<PeerConnections> {
        Self::with_caps(
            settings.max_connections,
            settings.max_connections_per_address,
            settings.max_connections_per_domain,
        )
    }

    fn with_caps(total: usize, per_address: usize, per_domain: usize) -> Arc<PeerConnections> {
        Arc::new(PeerConnections {
            max_total: total,
            max_per_address: per_address,
            max_per_domain: per_domain,
            counts: Mutex::new(Counts::default()),
        })
    }

    /// Counts a connection from `peer` if the total and per-address caps allow it; dropping the
    /// returned [`PeerConnection`] gives it back. Errors: which cap is full.
    pub fn try_accept(self: &Arc<Self>, peer: IpAddr) -> Result<PeerConnection, PeerRefusal> {
        let group = AddressGroup::of(peer);
        let mut counts = self.lock();
        if counts.total >= self.max_total {
            return Err(PeerRefusal::Total);
        }
        let in_group = counts.per_group.entry(group).or_insert(0);
        if *in_group >= self.max_per_address {
            return Err(PeerRefusal::PerAddress);
        }
        *in_group += 1;
        counts.total += 1;
        Ok(PeerConnection {
            connections: self.clone(),
            group,
            domains: Vec::new(),
        })
    }

    /// Connections counted now.
    pub fn count(&self) -> usize {
        self.lock().total
    }

    fn lock(&self) -> MutexGuard<'_, Counts> {
        // The counts are consistent after every statement, so a panic elsewhere leaves nothing half done.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One counted inbound connection and the remote domains authenticated on it; dropping it gives
/// everything back.
#[derive(Debug)]
pub struct PeerConnection {
    connections: Arc<PeerConnections>,
    group: AddressGroup,
    domains: Vec<String>,
}

impl PeerConnection {
    /// Counts `domain` (lower case) as authenticated on this connection, once however many of our
    /// domains it pairs with. Errors: [`PeerRefusal::PerDomain`] when that many streams carry it already.
    pub fn add_domain(&mut self, domain: &str) -> Result<(), PeerRefusal> {
        if self.domains.iter().any(|d| d == domain) {
            return Ok(());
        }
        let mut counts = self.connections.lock();
        let streams = counts.per_domain.entry(domain.to_string()).or_insert(0);
        if *streams >= self.connections.max_per_domain {
            if *streams == 0 {
                counts.per_domain.remove(domain);
            }
            return Err(PeerRefusal::PerDomain(domain.to_string()));
        }
        *streams += 1;
        drop(counts);
        self.domains.push(domain.to_string());
        Ok(())
    }
}

impl Drop for PeerConnection {
    fn drop(&mut self) {
        let mut counts = self.connections.lock();
        counts.total = counts.total.saturating_sub(1);
        if let Some(in_group) = counts.per_group.get_mut(&self.group) {
            *in_group = in_group.saturating_sub(1);
            if *in_group == 0 {
                counts.per_group.remove(&self.group);
            }
        }
        for domain in &self.domains {
            if let Some(streams) = counts.per_domain.get_mut(domain) {
                *streams = streams.saturating_sub(1);
                if *streams == 0 {
                    counts.per_domain.remove(domain);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn total_address_and_domain_caps_and_release() {
        let connections = PeerConnections::with_caps(3, 2, 1);
        let mut a = connections.try_accept(ip("192.0.2.1")).unwrap();
        let mut b = connections.try_accept(ip("192.0.2.1")).unwrap();
        assert_eq!(
            connections.try_accept(ip("192.0.2.1")).unwrap_err(),
            PeerRefusal::PerAddress
        );
        let c = connections.try_accept(ip("192.0.2.2")).unwrap();
        assert_eq!(
            connections.try_accept(ip("192.0.2.3")).unwrap_err(),
            PeerRefusal::Total
        );
        a.add_domain("b.test").unwrap();
        a.add_domain("b.test").unwrap();
        assert_eq!(
            b.add_domain("b.test").unwrap_err(),
            PeerRefusal::PerDomain("b.test".into())
        );
        b.add_domain("c.test").unwrap();
        drop(a);
        b.add_domain("b.test").unwrap();
        drop((b, c));
        assert_eq!(connections.count(), 0);
        let counts = connections.lock();
        assert!(counts.per_group.is_empty() && counts.per_domain.is_empty());
    }
}
