//! Unit tests of the login throttle: limits, reservations, what counts, /64 grouping, bounded memory.

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

fn fail(throttle: &LoginThrottle, address: &str, account: Option<&str>, now: Instant) {
    throttle
        .reserve(ip(address), account, now)
        .expect("reservation")
        .failed(now);
}

#[test]
fn account_is_refused_after_limit_until_window_passes() {
    let throttle = LoginThrottle::new(limits());
    let t0 = Instant::now();
    for i in 0..3 {
        // Different addresses so only the account limit applies.
        fail(
            &throttle,
            &format!("192.0.2.{}", 10 + i),
            Some("juliet"),
            t0,
        );
    }
    let refused = throttle
        .reserve(ip("192.0.2.1"), Some("juliet"), t0)
        .unwrap_err();
    assert_eq!(refused.key, RefusedKey::Account);
    assert_eq!(refused.retry_after, Duration::from_secs(60));
    assert!(throttle.reserve(ip("192.0.2.1"), Some("romeo"), t0).is_ok());
    let t59 = t0 + Duration::from_secs(59);
    assert!(
        throttle
            .check(ip("192.0.2.1"), Some("juliet"), t59)
            .is_err()
    );
    let t60 = t0 + Duration::from_secs(60);
    assert_eq!(throttle.check(ip("192.0.2.1"), Some("juliet"), t60), Ok(()));
    // A failure after the window starts a new count.
    fail(&throttle, "192.0.2.1", Some("juliet"), t60);
    assert_eq!(throttle.check(ip("192.0.2.1"), Some("juliet"), t60), Ok(()));
}

#[test]
fn address_is_refused_after_its_own_limit() {
    let throttle = LoginThrottle::new(limits());
    let t0 = Instant::now();
    for _ in 0..5 {
        fail(&throttle, "198.51.100.7", None, t0);
    }
    assert_eq!(
        throttle
            .check(ip("198.51.100.7"), None, t0)
            .unwrap_err()
            .key,
        RefusedKey::Address
    );
    assert_eq!(throttle.check(ip("198.51.100.8"), None, t0), Ok(()));
}

#[test]
fn concurrent_reservations_cannot_exceed_the_limit() {
    let throttle = LoginThrottle::new(limits());
    let t0 = Instant::now();
    // Many checks in flight at once (the race of finding 3): the reservations themselves use up the
    // budget, so no more than the limit can be verifying a guess before the failures are counted.
    let held: Vec<_> = (0..150)
        .filter_map(|_| throttle.reserve(ip("192.0.2.1"), Some("juliet"), t0).ok())
        .collect();
    assert_eq!(held.len(), 3);
    let held_other: Vec<_> = (0..150)
        .filter_map(|i| {
            let account = format!("user{i}");
            throttle.reserve(ip("192.0.2.1"), Some(&account), t0).ok()
        })
        .collect();
    assert_eq!(held_other.len(), 2, "the address budget of 5 is shared");
    for attempt in held.into_iter().chain(held_other) {
        attempt.failed(t0);
    }
    assert!(throttle.reserve(ip("192.0.2.1"), None, t0).is_err());
}

#[test]
fn a_reservation_released_without_a_verdict_is_not_counted() {
    let throttle = LoginThrottle::new(limits());
    let t0 = Instant::now();
    for _ in 0..100 {
        let attempt = throttle
            .reserve(ip("192.0.2.1"), Some("juliet"), t0)
            .unwrap();
        drop(attempt);
    }
    assert_eq!(throttle.check(ip("192.0.2.1"), Some("juliet"), t0), Ok(()));
    assert_eq!(throttle.tracked(), (0, 0), "idle entries are removed");
}

#[test]
fn success_clears_the_account_only() {
    let throttle = LoginThrottle::new(limits());
    let t0 = Instant::now();
    for _ in 0..2 {
        fail(&throttle, "192.0.2.1", Some("juliet"), t0);
    }
    for _ in 0..3 {
        fail(&throttle, "192.0.2.1", None, t0);
    }
    throttle
        .reserve(ip("192.0.2.2"), Some("juliet"), t0)
        .unwrap()
        .succeeded();
    for _ in 0..2 {
        fail(&throttle, "192.0.2.2", Some("juliet"), t0);
    }
    assert_eq!(throttle.check(ip("192.0.2.3"), Some("juliet"), t0), Ok(()));
    assert!(throttle.check(ip("192.0.2.1"), None, t0).is_err());
}

#[test]
fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
    let throttle = LoginThrottle::new(limits());
    let t0 = Instant::now();
    for i in 0..5 {
        fail(&throttle, &format!("2001:db8::{i}"), None, t0);
    }
    assert!(throttle.check(ip("2001:db8::ffff:1"), None, t0).is_err());
    assert!(throttle.check(ip("2001:db8:0:1::1"), None, t0).is_ok());
    for _ in 0..5 {
        fail(&throttle, "::ffff:192.0.2.9", None, t0);
    }
    assert!(throttle.check(ip("192.0.2.9"), None, t0).is_err());
}

#[test]
fn memory_is_bounded() {
    let throttle = LoginThrottle::new(limits());
    let t0 = Instant::now();
    for i in 0..100u32 {
        let now = t0 + Duration::from_millis(u64::from(i));
        fail(
            &throttle,
            &format!("192.0.2.{i}"),
            Some(&format!("user{i}")),
            now,
        );
    }
    assert_eq!(throttle.tracked(), (4, 4));
    {
        let counters = throttle.lock();
        // The newest entries survive, the oldest were evicted.
        assert!(counters.accounts.contains_key("user99"));
        assert!(!counters.accounts.contains_key("user0"));
    }
    // Expired entries are dropped first when room is needed.
    let later = t0 + Duration::from_secs(120);
    fail(&throttle, "203.0.113.1", Some("late"), later);
    assert_eq!(throttle.tracked(), (1, 1));
}
