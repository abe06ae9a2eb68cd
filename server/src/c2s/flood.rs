//! The flood guard of a bound session: a client sending faster than `[limits] stanzas_per_second` is
//! closed with `<policy-violation/>` (RFC 6120 sections 4.9.3.14 and 13.12).

use std::time::Duration;

use tokio::time::Instant;

/// A token bucket over first-level elements: `rate` per second with bursts of twice that.
#[derive(Debug)]
pub(crate) struct FloodGuard {
    tokens: f64,
    capacity: f64,
    rate: f64,
    last: Instant,
}

impl FloodGuard {
    pub(crate) fn new(per_second: u32) -> FloodGuard {
        let rate = f64::from(per_second.max(1));
        FloodGuard {
            tokens: rate * 2.0,
            capacity: rate * 2.0,
            rate,
            last: Instant::now(),
        }
    }

    /// Whether one more element received at `now` is within the rate; takes its token if so.
    pub(crate) fn allows(&mut self, now: Instant) -> bool {
        let elapsed: Duration = now.saturating_duration_since(self.last);
        self.last = now;
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flood_guard_allows_bursts_then_refuses_then_refills() {
        let start = Instant::now();
        let mut guard = FloodGuard::new(10);
        guard.last = start;
        let allowed = (0..100).filter(|_| guard.allows(start)).count();
        assert_eq!(allowed, 20, "burst of twice the rate");
        assert!(
            guard.allows(start + Duration::from_millis(200)),
            "refills over time"
        );
    }
}
