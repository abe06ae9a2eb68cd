//! Caps on client connections that have not authenticated yet (RFC 6120 section 13.12: a server limits the
//! resources one peer can use). A connection is unauthenticated from `accept` (a direct-TLS handshake in
//! progress included) until SASL succeeds or the connection ends; an unauthenticated peer costs nothing to
//! create, so the caps bound what many of them can make the server hold: in all, and per source address,
//! with IPv6 addresses grouped by /64 (one subscriber's allocation, RFC 6177 section 3).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Where the per-address cap counts a peer: its IPv4 address (IPv4-mapped IPv6 included, as a dual-stack
/// listener on `[::]` sees IPv4 peers), or the /64 prefix of its IPv6 address; the same grouping as the
/// failed-login throttle's ([`herald_relay::login_throttle::address_key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressGroup(IpAddr);

impl AddressGroup {
    pub fn of(ip: IpAddr) -> AddressGroup {
        AddressGroup(herald_relay::login_throttle::address_key(ip))
    }
}

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("too many unauthenticated connections from this address")]
    PerAddress,
    #[error("too many unauthenticated connections")]
    Total,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_group: HashMap<AddressGroup, usize>,
}

/// The counters behind both caps, shared by every client listener.
#[derive(Debug)]
pub struct UnauthenticatedSlots {
    max_total: usize,
    max_per_address: usize,
    counts: Mutex<Counts>,
}

impl UnauthenticatedSlots {
    pub fn new(max_total: usize, max_per_address: usize) -> Arc<UnauthenticatedSlots> {
        Arc::new(UnauthenticatedSlots {
            max_total,
            max_per_address,
            counts: Mutex::new(Counts::default()),
        })
    }

    /// Counts the connection from `peer` if both caps allow it. The slot is given back when the returned
    /// [`UnauthenticatedSlot`] is dropped. Errors: which cap is full.
    pub fn try_acquire(self: &Arc<Self>, peer: IpAddr) -> Result<UnauthenticatedSlot, Refusal> {
        let group = AddressGroup::of(peer);
        let mut counts = self.lock();
        if counts.total >= self.max_total {
            return Err(Refusal::Total);
        }
        let in_group = counts.per_group.entry(group).or_insert(0);
        if *in_group >= self.max_per_address {
            return Err(Refusal::PerAddress);
        }
        *in_group += 1;
        counts.total += 1;
        Ok(UnauthenticatedSlot {
            slots: self.clone(),
            group,
        })
    }

    /// Unauthenticated connections counted now.
    pub fn count(&self) -> usize {
        self.lock().total
    }

    fn lock(&self) -> MutexGuard<'_, Counts> {
        // The counts are consistent after every statement, so a panic elsewhere leaves nothing half done.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn release(&self, group: AddressGroup) {
        let mut counts = self.lock();
        counts.total = counts.total.saturating_sub(1);
        if let Some(in_group) = counts.per_group.get_mut(&group) {
            *in_group = in_group.saturating_sub(1);
            if *in_group == 0 {
                counts.per_group.remove(&group);
            }
        }
    }
}

/// One connection counted as unauthenticated; dropping it gives the slot back.
#[derive(Debug)]
pub struct UnauthenticatedSlot {
    slots: Arc<UnauthenticatedSlots>,
    group: AddressGroup,
}

impl Drop for UnauthenticatedSlot {
    fn drop(&mut self) {
        self.slots.release(self.group);
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ipv6_is_grouped_by_64_and_mapped_ipv4_by_address() {
        assert_eq!(
            AddressGroup::of(ip("2001:db8:1:2::1")),
            AddressGroup::of(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
        );
        assert_ne!(
            AddressGroup::of(ip("2001:db8:1:2::1")),
            AddressGroup::of(ip("2001:db8:1:3::1"))
        );
        // A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d, all inside one /64: they must not share.
        assert_eq!(
            AddressGroup::of(ip("::ffff:192.0.2.1")),
            AddressGroup::of(ip("192.0.2.1"))
        );
        assert_ne!(
            AddressGroup::of(ip("::ffff:192.0.2.1")),
            AddressGroup::of(ip("::ffff:192.0.2.2"))
        );
        assert_eq!(
            AddressGroup::of(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            AddressGroup::of(ip("::2"))
        );
    }

    #[test]
    fn per_address_cap_counts_a_64_as_one_address() {
        let slots = UnauthenticatedSlots::new(100, 2);
        let a = slots.try_acquire(ip("2001:db8::1")).unwrap();
        let _b = slots.try_acquire(ip("2001:db8::2")).unwrap();
        assert_eq!(
            slots.try_acquire(ip("2001:db8::3")).unwrap_err(),
            Refusal::PerAddress
        );
        let _other = slots.try_acquire(ip("2001:db8:0:1::1")).unwrap();
        drop(a);
        let _c = slots.try_acquire(ip("2001:db8::3")).unwrap();
        assert_eq!(slots.count(), 3);
    }

    #[test]
    fn total_cap_and_release() {
        let slots = UnauthenticatedSlots::new(2, 2);
        let a = slots.try_acquire(ip("192.0.2.1")).unwrap();
        let b = slots.try_acquire(ip("192.0.2.2")).unwrap();
        assert_eq!(
            slots.try_acquire(ip("192.0.2.3")).unwrap_err(),
            Refusal::Total
        );
        drop(a);
        drop(b);
        assert_eq!(slots.count(), 0);
        assert!(slots.lock().per_group.is_empty(), "no entry left behind");
        let _c = slots.try_acquire(ip("192.0.2.3")).unwrap();
    }
}
