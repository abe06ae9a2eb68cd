//! The backoff between attempts to reach a server-to-server peer (RFC 6120 section 3.3: a failed
//! connection is retried, and a stanza that cannot be delivered in time bounces with
//! `remote-server-timeout`, section 8.3.3.16): exponential growth, a cap, and jitter so that many
//! queues that failed together do not retry together. Pure: the randomness is an argument.

use std::time::Duration;

/// How long to wait before the next attempt after a number of consecutive failures.
///
/// The base delay after `failures` failures is `initial * 2^(failures - 1)`, capped at `max`; the
/// delay actually waited is drawn from `[base * (1 - jitter), base]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// The base delay after the first failure.
    pub initial: Duration,
    /// No base delay is longer than this.
    pub max: Duration,
    /// The fraction of the base delay that jitter may take off, in `[0, 1]` (clamped).
    pub jitter: f64,
}

impl Default for RetryPolicy {
    /// 1 second after the first failure, doubling up to 5 minutes, up to half of it jittered away.
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
            jitter: 0.5,
        }
    }
}

impl RetryPolicy {
    /// The base (unjittered) delay after `failures` consecutive failures; zero when there was none.
    pub fn base(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        // 2^31 seconds is past any cap; saturating keeps the arithmetic total.
        let factor = 1u32.checked_shl(failures - 1).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The shortest and longest delay [`Self::delay`] may return after `failures` failures.
    pub fn bounds(&self, failures: u32) -> (Duration, Duration) {
        let base = self.base(failures);
        (base.mul_f64(1.0 - self.jitter_fraction()), base)
    }

    /// The delay after `failures` failures, for `unit_random` in `[0, 1]` (clamped): 0 gives the
    /// shortest delay of [`Self::bounds`], 1 the longest.
    pub fn delay(&self, failures: u32, unit_random: f64) -> Duration {
        let (shortest, longest) = self.bounds(failures);
        let unit = if unit_random.is_nan() {
            0.0
        } else {
            unit_random.clamp(0.0, 1.0)
        };
        shortest + (longest - shortest).mul_f64(unit)
    }

    /// [`Self::delay`] with a random draw.
    pub fn random_delay(&self, failures: u32) -> Duration {
        self.delay(failures, rand::random::<f64>())
    }

    fn jitter_fraction(&self) -> f64 {
        if self.jitter.is_nan() {
            0.0
        } else {
            self.jitter.clamp(0.0, 1.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(60),
            jitter: 0.5,
        }
    }

    #[test]
    fn base_doubles_from_initial_up_to_the_cap() {
        let table = [
            (0, 0),
            (1, 2),
            (2, 4),
            (3, 8),
            (4, 16),
            (5, 32),
            (6, 60),
            (7, 60),
            (40, 60),
            (u32::MAX, 60),
        ];
        for (failures, seconds) in table {
            assert_eq!(
                policy().base(failures),
                Duration::from_secs(seconds),
                "after {failures} failures"
            );
        }
    }

    #[test]
    fn jitter_stays_within_its_bounds() {
        let table = [
            // (failures, unit_random, expected milliseconds)
            (1, 0.0, 1_000),
            (1, 1.0, 2_000),
            (1, 0.5, 1_500),
            (3, 0.0, 4_000),
            (3, 1.0, 8_000),
            (9, 0.0, 30_000),
            (9, 1.0, 60_000),
            // Out-of-range draws are clamped rather than trusted.
            (1, -3.0, 1_000),
            (1, 7.0, 2_000),
            (1, f64::NAN, 1_000),
        ];
        for (failures, unit, millis) in table {
            assert_eq!(
                policy().delay(failures, unit),
                Duration::from_millis(millis),
                "after {failures} failures with draw {unit}"
            );
        }
        assert_eq!(
            policy().bounds(2),
            (Duration::from_secs(2), Duration::from_secs(4))
        );
    }

    #[test]
    fn random_delays_fall_within_the_bounds() {
        for failures in 0..12 {
            let (shortest, longest) = policy().bounds(failures);
            for _ in 0..50 {
                let delay = policy().random_delay(failures);
                assert!(
                    shortest <= delay && delay <= longest,
                    "{delay:?} after {failures}"
                );
            }
        }
    }

    #[test]
    fn no_jitter_means_the_base_delay_exactly() {
        let steady = RetryPolicy {
            jitter: 0.0,
            ..policy()
        };
        assert_eq!(steady.delay(2, 0.0), Duration::from_secs(4));
        assert_eq!(steady.delay(2, 1.0), Duration::from_secs(4));
        let wild = RetryPolicy {
            jitter: 5.0,
            ..policy()
        };
        assert_eq!(wild.bounds(1), (Duration::ZERO, Duration::from_secs(2)));
    }
}
