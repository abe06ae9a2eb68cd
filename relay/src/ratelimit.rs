//! In-memory token buckets for the relay's rate limits (per whitelist token, per sender, per
//! account, per client address for account attempts). Buckets live in the [`crate::Relay`], not in
//! globals; they reset on restart, which only ever loosens a limit for one window.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets not touched for this long are dropped when the map is swept.
const IDLE_BUCKET: Duration = Duration::from_secs(600);
/// Sweep the map once it holds this many buckets.
const SWEEP_AT: usize = 10_000;

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

/// A family of token buckets keyed by string, each refilled at `per_minute` per minute with a burst
/// of `per_minute`.
#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
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
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= SWEEP_AT {
            map.retain(|_, b| now.duration_since(b.updated) < IDLE_BUCKET);
        }
        let b = map.entry(key.to_string()).or_insert(Bucket {
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

    #[test]
    fn zero_is_unlimited() {
        let l = RateLimiter::default();
        let t0 = Instant::now();
        for _ in 0..1000 {
            assert!(l.check("k", 0, t0).is_ok());
        }
    }
}
