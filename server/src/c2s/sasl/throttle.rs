//! Failed-authentication throttling (RFC 6120 section 13.5 on password guessing): counts failed SASL attempts
//! per account and per client address within a fixed window and refuses further attempts with
//! `temporary-auth-failure` once a limit is reached. Time is passed in, so it is testable without sleeping;
//! memory is bounded by evicting expired and then the oldest entries.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use super::SaslFailure;

/// The limits of an [`AuthThrottle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleLimits {
    /// Failures per account within `window` after which that account's attempts are refused.
    pub failures_per_account: u32,
    /// Failures per client address within `window` after which that address's attempts are refused.
    /// Higher than the per-account limit, since many users can share one address behind NAT.
    pub failures_per_address: u32,
    /// How long failures count, from the first failure of a key.
    pub window: Duration,
    /// At most this many accounts and this many addresses are tracked.
    pub max_entries: usize,
}

impl Default for ThrottleLimits {
    fn default() -> Self {
        ThrottleLimits {
            failures_per_account: 5,
            failures_per_address: 20,
            window: Duration::from_secs(300),
            max_entries: 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct FailureWindow {
    started: Instant,
    failures: u32,
}

/// The failure counters of one server. Not thread-safe by itself; share it behind a mutex and never hold
/// that across an `.await`.
#[derive(Debug)]
pub struct AuthThrottle {
    limits: ThrottleLimits,
    accounts: HashMap<String, FailureWindow>,
    addresses: HashMap<IpAddr, FailureWindow>,
}

impl AuthThrottle {
    pub fn new(limits: ThrottleLimits) -> AuthThrottle {
        AuthThrottle {
            limits,
            accounts: HashMap::new(),
            addresses: HashMap::new(),
        }
    }

    /// Whether an attempt from `address` (for `account`, once the username is known) may proceed.
    /// Errors: `temporary-auth-failure` while either key is over its limit.
    pub fn check(
        &self,
        address: IpAddr,
        account: Option<&str>,
        now: Instant,
    ) -> Result<(), SaslFailure> {
        let over = |window: Option<&FailureWindow>, limit: u32| {
            window.is_some_and(|w| {
                now.duration_since(w.started) < self.limits.window && w.failures >= limit
            })
        };
        let address_over = over(
            self.addresses.get(&address_key(address)),
            self.limits.failures_per_address,
        );
        let account_over =
            account.is_some_and(|a| over(self.accounts.get(a), self.limits.failures_per_account));
        if address_over || account_over {
            Err(SaslFailure::TemporaryAuthFailure)
        } else {
            Ok(())
        }
    }

    /// Counts a failed attempt against the address and, if known, the account.
    pub fn record_failure(&mut self, address: IpAddr, account: Option<&str>, now: Instant) {
        let limits = self.limits;
        count(&mut self.addresses, address_key(address), now, limits);
        if let Some(account) = account {
            count(&mut self.accounts, account.to_owned(), now, limits);
        }
    }

    /// A successful login clears the account's counter (not the address's: one good password from an
    /// address must not reset guessing against other accounts).
    pub fn record_success(&mut self, account: &str) {
        self.accounts.remove(account);
    }

    /// How many accounts and addresses are tracked (for tests and metrics).
    pub fn tracked(&self) -> (usize, usize) {
        (self.accounts.len(), self.addresses.len())
    }
}

/// IPv6 clients usually hold a whole /64, so addresses are counted per /64; IPv4-mapped addresses count as
/// their IPv4 address.
fn address_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

fn count<K: Eq + Hash + Clone>(
    map: &mut HashMap<K, FailureWindow>,
    key: K,
    now: Instant,
    limits: ThrottleLimits,
) {
    let expired = |w: &FailureWindow| now.duration_since(w.started) >= limits.window;
    if let Some(window) = map.get_mut(&key) {
        if expired(window) {
            *window = FailureWindow {
                started: now,
                failures: 1,
            };
        } else {
            window.failures = window.failures.saturating_add(1);
        }
        return;
    }
    if map.len() >= limits.max_entries {
        map.retain(|_, w| !expired(w));
    }
    if map.len() >= limits.max_entries {
        // Still full of live entries: forget the oldest, which is the closest to expiring anyway.
        let oldest = map
            .iter()
            .min_by_key(|(_, w)| w.started)
            .map(|(k, _)| k.clone());
        if let Some(oldest) = oldest {
            map.remove(&oldest);
        }
    }
    if limits.max_entries > 0 {
        map.insert(
            key,
            FailureWindow {
                started: now,
                failures: 1,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ThrottleLimits {
        ThrottleLimits {
            failures_per_account: 3,
            failures_per_address: 5,
            window: Duration::from_secs(60),
            max_entries: 4,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn account_is_refused_after_limit_until_window_passes() {
        let mut throttle = AuthThrottle::new(limits());
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(
                throttle.check(ip("192.0.2.1"), Some("juliet"), t0),
                Ok(()),
                "attempt {i}"
            );
            // Different addresses so only the account limit applies.
            throttle.record_failure(ip(&format!("192.0.2.{}", 10 + i)), Some("juliet"), t0);
        }
        assert_eq!(
            throttle.check(ip("192.0.2.1"), Some("juliet"), t0),
            Err(SaslFailure::TemporaryAuthFailure)
        );
        assert_eq!(throttle.check(ip("192.0.2.1"), Some("romeo"), t0), Ok(()));
        assert_eq!(
            throttle.check(
                ip("192.0.2.1"),
                Some("juliet"),
                t0 + Duration::from_secs(59)
            ),
            Err(SaslFailure::TemporaryAuthFailure)
        );
        assert_eq!(
            throttle.check(
                ip("192.0.2.1"),
                Some("juliet"),
                t0 + Duration::from_secs(60)
            ),
            Ok(())
        );
        // A failure after the window starts a new count.
        throttle.record_failure(
            ip("192.0.2.1"),
            Some("juliet"),
            t0 + Duration::from_secs(61),
        );
        assert_eq!(
            throttle.check(
                ip("192.0.2.1"),
                Some("juliet"),
                t0 + Duration::from_secs(61)
            ),
            Ok(())
        );
    }

    #[test]
    fn address_is_refused_after_its_own_limit() {
        let mut throttle = AuthThrottle::new(limits());
        let t0 = Instant::now();
        for _ in 0..5 {
            throttle.record_failure(ip("198.51.100.7"), None, t0);
        }
        assert_eq!(
            throttle.check(ip("198.51.100.7"), None, t0),
            Err(SaslFailure::TemporaryAuthFailure)
        );
        assert_eq!(throttle.check(ip("198.51.100.8"), None, t0), Ok(()));
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let mut throttle = AuthThrottle::new(limits());
        let t0 = Instant::now();
        for i in 0..5 {
            throttle.record_failure(ip(&format!("2001:db8::{i}")), None, t0);
        }
        assert!(throttle.check(ip("2001:db8::ffff:1"), None, t0).is_err());
        assert!(throttle.check(ip("2001:db8:0:1::1"), None, t0).is_ok());
        for _ in 0..5 {
            throttle.record_failure(ip("::ffff:192.0.2.9"), None, t0);
        }
        assert!(throttle.check(ip("192.0.2.9"), None, t0).is_err());
    }

    #[test]
    fn success_clears_the_account_only() {
        let mut throttle = AuthThrottle::new(limits());
        let t0 = Instant::now();
        for _ in 0..5 {
            throttle.record_failure(ip("192.0.2.1"), Some("juliet"), t0);
        }
        throttle.record_success("juliet");
        assert_eq!(throttle.check(ip("192.0.2.2"), Some("juliet"), t0), Ok(()));
        assert!(throttle.check(ip("192.0.2.1"), None, t0).is_err());
    }

    #[test]
    fn memory_is_bounded() {
        let mut throttle = AuthThrottle::new(limits());
        let t0 = Instant::now();
        for i in 0..100u32 {
            let now = t0 + Duration::from_millis(u64::from(i));
            throttle.record_failure(ip(&format!("192.0.2.{i}")), Some(&format!("user{i}")), now);
        }
        assert_eq!(throttle.tracked(), (4, 4));
        // The newest entries survive, the oldest were evicted.
        assert!(throttle.accounts.contains_key("user99"));
        assert!(!throttle.accounts.contains_key("user0"));
        // Expired entries are dropped first when room is needed.
        let later = t0 + Duration::from_secs(120);
        throttle.record_failure(ip("203.0.113.1"), Some("late"), later);
        assert_eq!(throttle.tracked(), (1, 1));
    }
}
