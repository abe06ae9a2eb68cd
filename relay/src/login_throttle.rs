//! The one failed-login throttle of a Herald process (RFC 6120 section 13.5 on password guessing): every
//! place that checks a password (XMPP SASL, the relay's HTTP login) and the component handshake share it.
//!
//! It lives in the relay crate because the dependency arrow is `relay` <- `server`: the server hands the
//! relay's throttle to its router (see `Relay::login_throttle`), so both sides count into the same
//! buckets without the relay knowing XMPP. It knows only addresses and account names.
//!
//! A check is a reservation taken *before* a password or proof is verified ([`LoginThrottle::reserve`]):
//! failures plus checks in flight never exceed the limit, so concurrent exchanges cannot all verify a
//! guess before the first failure is counted. Only a verified wrong password counts
//! ([`Attempt::failed`]); an attempt dropped unresolved (a protocol error, a vanished client) is released
//! uncounted. Time is passed in, so it is testable without sleeping; memory is bounded.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The limits of a [`LoginThrottle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleLimits {
    /// Failures per account within `window` after which that account's attempts are refused.
    pub failures_per_account: u32,
    /// Failures per client address (IPv6: per /64) within `window` after which its attempts are refused.
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

/// Which key refused an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedKey {
    Address,
    Account,
}

/// An attempt refused by the throttle: which key was over its limit and when it will accept again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many failed logins ({key:?}), retry after {retry_after:?}")]
pub struct Refused {
    pub key: RefusedKey,
    pub retry_after: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
    /// Reservations not yet resolved.
    pending: u32,
}

#[derive(Debug)]
struct Counters {
    limits: ThrottleLimits,
    accounts: HashMap<String, Window>,
    addresses: HashMap<IpAddr, Window>,
}

/// The shared failure counters. Cheap to clone; every clone counts into the same buckets. The inner
/// mutex is held only for map updates, never across an `.await` or a password check.
#[derive(Debug, Clone)]
pub struct LoginThrottle {
    counters: Arc<Mutex<Counters>>,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        LoginThrottle::new(ThrottleLimits::default())
    }
}

impl LoginThrottle {
    pub fn new(limits: ThrottleLimits) -> LoginThrottle {
        LoginThrottle {
            counters: Arc::new(Mutex::new(Counters {
                limits,
                accounts: HashMap::new(),
                addresses: HashMap::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Counters> {
        // A poisoned lock only means another thread panicked mid-update; the counters stay usable.
        self.counters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether an attempt from `address` (for `account`, once known) would be refused now, without
    /// reserving anything: lets a protocol refuse early. Only [`reserve`](Self::reserve) enforces.
    /// Errors: [`Refused`] while either key is at its limit.
    pub fn check(
        &self,
        address: IpAddr,
        account: Option<&str>,
        now: Instant,
    ) -> Result<(), Refused> {
        let counters = self.lock();
        counters.refusal(address_key(address), account, now)
    }

    /// Reserves one password check for `address` and `account` (`None` when the name is not an account
    /// at all). Call it right before verifying; resolve the returned [`Attempt`] with the verdict.
    /// Errors: [`Refused`] when failures plus checks in flight already reach either limit.
    pub fn reserve(
        &self,
        address: IpAddr,
        account: Option<&str>,
        now: Instant,
    ) -> Result<Attempt, Refused> {
        let address = address_key(address);
        let mut counters = self.lock();
        counters.refusal(address, account, now)?;
        let limits = counters.limits;
        reserve_in(&mut counters.addresses, address, now, limits);
        if let Some(account) = account {
            reserve_in(&mut counters.accounts, account.to_owned(), now, limits);
        }
        Ok(Attempt {
            throttle: self.clone(),
            address,
            account: account.map(str::to_owned),
            resolved: false,
        })
    }

    /// How many accounts and addresses are tracked (for tests and metrics).
    pub fn tracked(&self) -> (usize, usize) {
        let counters = self.lock();
        (counters.accounts.len(), counters.addresses.len())
    }
}

/// One reserved password check. Resolve it with [`failed`](Self::failed) or
/// [`succeeded`](Self::succeeded); dropping it unresolved releases the reservation uncounted.
#[derive(Debug)]
pub struct Attempt {
    throttle: LoginThrottle,
    address: IpAddr,
    account: Option<String>,
    resolved: bool,
}

impl Attempt {
    /// The password or proof was verified and is wrong: counts one failure for the address and account.
    pub fn failed(mut self, now: Instant) {
        self.resolved = true;
        let mut counters = self.throttle.lock();
        let limits = counters.limits;
        resolve_in(&mut counters.addresses, &self.address, Some(now), limits);
        if let Some(account) = &self.account {
            resolve_in(&mut counters.accounts, account, Some(now), limits);
        }
    }

    /// The password was right: releases the reservation and clears the account's failures (not the
    /// address's: one good password from an address must not reset guessing against other accounts).
    pub fn succeeded(mut self) {
        self.resolved = true;
        let mut counters = self.throttle.lock();
        let limits = counters.limits;
        resolve_in(&mut counters.addresses, &self.address, None, limits);
        if let Some(account) = &self.account {
            counters.accounts.remove(account);
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if self.resolved {
            return;
        }
        let mut counters = self.throttle.lock();
        let limits = counters.limits;
        resolve_in(&mut counters.addresses, &self.address, None, limits);
        if let Some(account) = &self.account {
            resolve_in(&mut counters.accounts, account, None, limits);
        }
    }
}

impl Counters {
    fn refusal(&self, address: IpAddr, account: Option<&str>, now: Instant) -> Result<(), Refused> {
        let over = |window: Option<&Window>, limit: u32| {
            window.and_then(|w| {
                let live = live_failures(w, now, self.limits.window);
                (live.saturating_add(w.pending) >= limit).then(|| {
                    self.limits
                        .window
                        .saturating_sub(now.duration_since(w.started))
                })
            })
        };
        if let Some(retry_after) = over(
            self.addresses.get(&address),
            self.limits.failures_per_address,
        ) {
            return Err(Refused {
                key: RefusedKey::Address,
                retry_after,
            });
        }
        if let Some(retry_after) =
            account.and_then(|a| over(self.accounts.get(a), self.limits.failures_per_account))
        {
            return Err(Refused {
                key: RefusedKey::Account,
                retry_after,
            });
        }
        Ok(())
    }
}

/// Failures still inside the window.
fn live_failures(window: &Window, now: Instant, length: Duration) -> u32 {
    if now.duration_since(window.started) < length {
        window.failures
    } else {
        0
    }
}

/// IPv6 clients usually hold a whole /64, so addresses are counted per /64; IPv4-mapped addresses count as
/// their IPv4 address.
pub fn address_key(address: IpAddr) -> IpAddr {
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

fn reserve_in<K: Eq + Hash + Clone>(
    map: &mut HashMap<K, Window>,
    key: K,
    now: Instant,
    limits: ThrottleLimits,
) {
    if let Some(window) = map.get_mut(&key) {
        if live_failures(window, now, limits.window) == 0 && window.failures > 0 {
            // The old window is over: its failures no longer count.
            window.started = now;
            window.failures = 0;
        }
        window.pending = window.pending.saturating_add(1);
        return;
    }
    make_room(map, now, limits);
    if limits.max_entries > 0 {
        map.insert(
            key,
            Window {
                started: now,
                failures: 0,
                pending: 1,
            },
        );
    }
}

/// Ends one reservation of `key`; with `failed_at`, counts it as a failure.
fn resolve_in<K: Eq + Hash>(
    map: &mut HashMap<K, Window>,
    key: &K,
    failed_at: Option<Instant>,
    limits: ThrottleLimits,
) {
    let Some(window) = map.get_mut(key) else {
        // Evicted while in flight (the map was full): nothing to release.
        return;
    };
    window.pending = window.pending.saturating_sub(1);
    if let Some(now) = failed_at {
        if live_failures(window, now, limits.window) == 0 {
            window.started = now;
            window.failures = 0;
        }
        window.failures = window.failures.saturating_add(1);
    }
    if window.failures == 0 && window.pending == 0 {
        map.remove(key);
    }
}

/// Frees one slot when the map is full: expired idle entries first, then the oldest idle one, which is
/// the closest to expiring anyway. Entries with checks in flight stay unless nothing else can go.
fn make_room<K: Eq + Hash + Clone>(
    map: &mut HashMap<K, Window>,
    now: Instant,
    limits: ThrottleLimits,
) {
    if map.len() < limits.max_entries {
        return;
    }
    map.retain(|_, w| w.pending > 0 || live_failures(w, now, limits.window) > 0);
    if map.len() < limits.max_entries {
        return;
    }
    let oldest = map
        .iter()
        .min_by_key(|(_, w)| (w.pending > 0, w.started))
        .map(|(k, _)| k.clone());
    if let Some(oldest) = oldest {
        map.remove(&oldest);
    }
}

#[cfg(test)]
mod tests;
