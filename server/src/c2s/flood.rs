//! The flood guard of a bound session: a client sending faster than `[limits] stanzas_per_second` is
//! closed with `<policy-violation/>` (RFC 6120 sections 4.9.3.14 and 13.12); a peer server's stream is
//! read more slowly instead ([`FloodGuard::debt`]).

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

    /// Takes the token for one more element received at `now`, going into debt when there is none;
    /// returns how long the reader should pause for the debt to be paid (`None`: within the rate).
    /// For a reader that throttles rather than refuses (server-to-server streams).
    pub(crate) fn debt(&mut self, now: Instant) -> Option<Duration> {
        let elapsed: Duration = now.saturating_duration_since(self.last);
        self.last = now;
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate).min(self.capacity) - 1.0;
        (self.tokens < 0.0).then(|| Duration::from_secs_f64(-self.tokens / self.rate))
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

    #[test]
    fn debt_paces_a_reader_at_the_rate() {
        let start = Instant::now();
        let mut guard = FloodGuard::new(10);
        guard.last = start;
        let free = (0..20).filter(|_| guard.debt(start).is_none()).count();
        assert_eq!(free, 20, "the burst is free");
        assert_eq!(guard.debt(start), Some(Duration::from_millis(100)));
        assert_eq!(guard.debt(start), Some(Duration::from_millis(200)));
        // Paid off by waiting: the next one, 200 ms later, waits only for its own token.
        let later = start + Duration::from_millis(200);
        assert_eq!(guard.debt(later), Some(Duration::from_millis(100)));
    }
}
