//! XEP-0077 section 9: a bound on in-band account creation attempts per client address, so an open server
//! cannot be filled with accounts, or probed for taken names, from one place.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The window of [`RegistrationLimit`].
const REGISTRATION_WINDOW: Duration = Duration::from_secs(3600);
/// Addresses tracked at most by [`RegistrationLimit`]; the oldest is forgotten beyond that.
const MAX_TRACKED_ADDRESSES: usize = 10_000;

/// Account creation attempts per client address (IPv6: per /64) within an hour, so an open server
/// cannot be filled with accounts, or probed for taken names, from one place (XEP-0077 section 9
/// leaves abuse prevention to the server). Memory is bounded.
#[derive(Debug)]
pub struct RegistrationLimit {
    per_window: u32,
    attempts: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl RegistrationLimit {
    /// `per_window` attempts per address per hour; 0 means no limit.
    pub fn new(per_window: u32) -> RegistrationLimit {
        RegistrationLimit {
            per_window,
            attempts: Mutex::new(HashMap::new()),
        }
    }

    /// Counts an attempt from `address`; `false` when it is over the limit.
    pub fn allow(&self, address: IpAddr, now: Instant) -> bool {
        if self.per_window == 0 {
            return true;
        }
        let key = herald_relay::login_throttle::address_key(address);
        // A poisoned lock only means another thread panicked mid-update; the map is still usable.
        let mut attempts = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        if !attempts.contains_key(&key) && attempts.len() >= MAX_TRACKED_ADDRESSES {
            attempts.retain(|_, (started, _)| now.duration_since(*started) < REGISTRATION_WINDOW);
            if attempts.len() >= MAX_TRACKED_ADDRESSES {
                let oldest = attempts
                    .iter()
                    .min_by_key(|(_, (t, _))| *t)
                    .map(|(k, _)| *k);
                if let Some(oldest) = oldest {
                    attempts.remove(&oldest);
                }
            }
        }
        let entry = attempts.entry(key).or_insert((now, 0));
        if now.duration_since(entry.0) >= REGISTRATION_WINDOW {
            *entry = (now, 0);
        }
        if entry.1 >= self.per_window {
            return false;
        }
        entry.1 += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_are_limited_per_address_and_window() {
        let limit = RegistrationLimit::new(2);
        let t0 = Instant::now();
        let a: IpAddr = "2001:db8::1".parse().expect("address");
        let same_64: IpAddr = "2001:db8::2".parse().expect("address");
        let other: IpAddr = "192.0.2.1".parse().expect("address");
        assert!(limit.allow(a, t0));
        assert!(limit.allow(same_64, t0));
        assert!(!limit.allow(a, t0), "the /64 shares one count");
        assert!(limit.allow(other, t0));
        assert!(limit.allow(a, t0 + REGISTRATION_WINDOW));
        assert!(RegistrationLimit::new(0).allow(a, t0), "0 means no limit");
    }
}
