//! In-memory token buckets for the relay's rate limits (per whitelist token, per sender, per
//! account, per client address for account attempts). Buckets live in the [`crate::Relay`], not in
//! globals; they reset on restart, which only ever loosens a limit for one window.
//!
//! Each limiter holds at most [`MAX_BUCKETS`] buckets, and sweeps idle ones at most once per
//! [`SWEEP_INTERVAL`], so a flood of distinct keys costs memory within the cap and one pass over the
//! map per interval, never a pass per request under the lock. Client addresses are keyed by
//! [`address_key`]: an IPv6 client is its /64.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets not touched for this long are dropped when the map is swept.
const IDLE_BUCKET: Duration = Duration::from_secs(600);
/// Sweep the map once it holds this many buckets...
const SWEEP_AT: usize = 10_000;
/// ...and at most once per this interval: a sweep visits every bucket, so its cost is spread over
/// all the requests of the interval instead of being paid by each of them.
const SWEEP_INTERVAL: Duration = Duration::from_secs(10);
/// Buckets per limiter, at most. A new key arriving at the cap evicts the stalest of a few buckets
/// (see [`EVICTION_SAMPLE`]): that resets one key's budget, a loosening bounded by the cap, where
/// refusing new keys would lock out every new client while the map is full.
pub const MAX_BUCKETS: usize = 50_000;
/// Buckets looked at to choose the one to evict.
const EVICTION_SAMPLE: usize = 8;

/// The rate-limit key of a client address. An IPv4 address is its own key; an IPv6 address is
/// keyed by its /64, the smallest prefix a site is given (RFC 6177 section 3), since a single
/// client can use any of its 2^64 addresses; an IPv4-mapped address (RFC 4291 section 2.5.5.2) is
/// the IPv4 address it maps.
pub fn address_key(ip: IpAddr) -> String {
    // The same grouping as the failed-login throttle's, written as a key.
    match crate::login_throttle::address_key(ip) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(network) => format!("{network}/64"),
    }
}

struct Bucket {
    tokens: f64,
    updated: Instant,
    /// Whether a rejection was already reported since the last accepted request (so a flood writes
    /// one audit line, not one per request).
    rejected: bool,
}

/// A refused request: how long until one request would be accepted, and whether it is the first
/// refusal since the last accepted one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Refused {
    pub retry_after: Duration,
    pub first: bool,
}

#[derive(Default)]
struct Buckets {
    map: HashMap<String, Bucket>,
    /// When the next sweep may run; `None` before the first.
    next_sweep: Option<Instant>,
    /// Sweeps run so far (observed by the tests).
    sweeps: u64,
}

impl Buckets {
    fn sweep_if_due(&mut self, now: Instant) {
        if self.map.len() < SWEEP_AT || self.next_sweep.is_some_and(|at| now < at) {
            return;
        }
        self.map
            .retain(|_, b| now.saturating_duration_since(b.updated) < IDLE_BUCKET);
        self.next_sweep = Some(now + SWEEP_INTERVAL);
        self.sweeps += 1;
    }

    /// Makes room for one more bucket when the map is at [`MAX_BUCKETS`].
    fn evict_if_full(&mut self) {
        if self.map.len() < MAX_BUCKETS {
            return;
        }
        let stalest = self
            .map
            .iter()
            .take(EVICTION_SAMPLE)
            .min_by_key(|(_, b)| b.updated)
            .map(|(k, _)| k.clone());
        if let Some(key) = stalest {
            self.map.remove(&key);
        }
    }
}

/// A family of token buckets keyed by string, each refilled at `per_minute` per minute with a burst
/// of `per_minute`.
#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<Buckets>,
}

impl RateLimiter {
    /// Takes one request from `key`'s bucket. `per_minute == 0` means unlimited.
    pub fn check(&self, key: &str, per_minute: u32, now: Instant) -> Result<(), Refused> {
        if per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(per_minute);
        let per_sec = capacity / 60.0;
        // A poisoned lock only means another thread panicked mid-update; the map is still usable.
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        buckets.sweep_if_due(now);
        if !buckets.map.contains_key(key) {
            buckets.evict_if_full();
        }
        let b = buckets.map.entry(key.to_string()).or_insert(Bucket {
            tokens: capacity,
            updated: now,
            rejected: false,
        });
        let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
        b.tokens = (b.tokens + elapsed * per_sec).min(capacity);
        b.updated = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            b.rejected = false;
            Ok(())
        } else {
            let first = !b.rejected;
            b.rejected = true;
            let wait = ((1.0 - b.tokens) / per_sec).max(0.001);
            Err(Refused {
                retry_after: Duration::from_secs_f64(wait),
                first,
            })
        }
    }
}

/// The relay's limiters, one per dimension.
#[derive(Default)]
pub struct RateLimiters {
    pub token: RateLimiter,
    pub sender: RateLimiter,
    pub account: RateLimiter,
    pub attempts: RateLimiter,
    /// Refused posts of a known token (revoked, expired, sender mismatch), per token: kept apart
    /// from `token`, so whoever holds a leaked token cannot spend its owner's budget by failing.
    pub refusals: RateLimiter,
    /// Audit lines for refusals, per token and outcome: one a minute, however many are refused.
    pub refusal_audits: RateLimiter,
    /// Push node registrations and removals, per account (each is a few writes; `push_node.rs`).
    pub node_changes: RateLimiter,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let l = RateLimiter::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.check("k", 3, t0).is_ok());
        }
        let r = l.check("k", 3, t0).unwrap_err();
        assert!(r.first);
        assert!(
            r.retry_after > Duration::from_secs(19) && r.retry_after <= Duration::from_secs(20)
        );
        assert!(!l.check("k", 3, t0).unwrap_err().first);
        // Other keys are independent.
        assert!(l.check("other", 3, t0).is_ok());
        // 20 s later one request is back.
        assert!(l.check("k", 3, t0 + Duration::from_secs(20)).is_ok());
        assert!(l.check("k", 3, t0 + Duration::from_secs(20)).is_err());
    }

    fn len(l: &RateLimiter) -> usize {
        l.buckets.lock().unwrap().map.len()
    }

    fn sweeps(l: &RateLimiter) -> u64 {
        l.buckets.lock().unwrap().sweeps
    }

    /// Finding: once the map held 10,000 keys, every call scanned all of them under the lock.
    #[test]
    fn a_full_map_is_not_swept_on_every_call() {
        let l = RateLimiter::default();
        let t0 = Instant::now();
        for i in 0..SWEEP_AT {
            assert!(l.check(&format!("k{i}"), 10, t0).is_ok());
        }
        // 5,000 more calls within a few seconds: none of the buckets is idle, so a sweep finds
        // nothing to drop; at most one may run.
        for i in 0..5_000u64 {
            let now = t0 + Duration::from_millis(i);
            let _ = l.check(&format!("n{i}"), 10, now);
        }
        assert!(sweeps(&l) <= 1, "{} sweeps for 5,000 calls", sweeps(&l));
    }

    /// Finding: the map had no upper bound.
    #[test]
    fn the_map_never_exceeds_its_cap() {
        let l = RateLimiter::default();
        let t0 = Instant::now();
        for i in 0..(MAX_BUCKETS + 10_000) {
            let _ = l.check(&format!("k{i}"), 10, t0);
            assert!(len(&l) <= MAX_BUCKETS, "{} buckets", len(&l));
        }
        // A key that arrives with the map full is still limited.
        for _ in 0..10 {
            assert!(l.check("late", 10, t0).is_ok());
        }
        assert!(l.check("late", 10, t0).is_err());
    }

    /// Idle buckets are still dropped once the sweep interval has passed.
    #[test]
    fn idle_buckets_are_swept() {
        let l = RateLimiter::default();
        let t0 = Instant::now();
        for i in 0..SWEEP_AT {
            assert!(l.check(&format!("k{i}"), 10, t0).is_ok());
        }
        let later = t0 + IDLE_BUCKET + Duration::from_secs(1);
        assert!(l.check("fresh", 10, later).is_ok());
        assert!(len(&l) < SWEEP_AT, "{} buckets", len(&l));
    }

    /// Finding: every IPv6 address had its own bucket, and a client holds a /64 at least
    /// (RFC 6177 section 2), so it could take a fresh budget for each request.
    #[test]
    fn ipv6_addresses_are_grouped_by_64() {
        let key = |s: &str| address_key(s.parse().unwrap());
        assert_eq!(
            key("2001:db8:1:2::1"),
            key("2001:db8:1:2:ffff:ffff:ffff:fffe")
        );
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_ne!(key("192.0.2.1"), key("192.0.2.2"));
        // An IPv4 client seen through a dual-stack socket is the same client as over IPv4.
        assert_eq!(key("::ffff:192.0.2.1"), key("192.0.2.1"));
    }

    #[test]
    fn zero_is_unlimited() {
        let l = RateLimiter::default();
        let t0 = Instant::now();
        for _ in 0..1000 {
            assert!(l.check("k", 0, t0).is_ok());
        }
    }
}
