//! The load phases, each bounded in count and time: account creation (XEP-0077), idle sessions,
//! a login storm, chatting pairs (RFC 6121 section 5 messages), push to offline users
//! (XEP-0357, Herald only), archive queries (XEP-0313), sessions hibernated by stream
//! management (XEP-0198), and PEP notifications with a caps login burst (XEP-0163, XEP-0115).

pub mod accounts;
pub mod archive;
pub mod batch;
pub mod caps;
pub mod chat;
pub mod hibernated;
pub mod idle;
pub mod login;
pub mod mam;
pub mod pep;
pub mod provider;
pub mod push;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::client::{Connector, Mechanism, ScramCache};
use crate::stats::{ErrorCounts, Latency, MemorySample, ProcessMemory};

/// What every phase needs to reach the server and name its users.
#[derive(Clone)]
pub struct Target {
    /// How to connect.
    pub connector: Connector,
    /// Localparts are `{prefix}{index}`.
    pub prefix: String,
    /// Every account's password.
    pub password: String,
    /// SASL mechanism (the comparison forces the same one on every server).
    pub mechanism: Mechanism,
    /// Shared SaltedPassword cache (see [`ScramCache`]).
    pub cache: ScramCache,
    /// Local addresses to spread connections over; empty means the kernel's choice.
    pub source_ips: Vec<IpAddr>,
    /// The server process to sample memory from, if known.
    pub memory: Option<ProcessMemory>,
}

impl Target {
    /// The localpart of user `index`.
    pub fn username(&self, index: usize) -> String {
        format!("{}{index}", self.prefix)
    }

    /// The bare JID of user `index`.
    pub fn bare_jid(&self, index: usize) -> String {
        format!("{}{index}@{}", self.prefix, self.connector.domain())
    }

    /// The local address for connection number `n` (round robin).
    pub fn source_ip(&self, n: usize) -> Option<IpAddr> {
        if self.source_ips.is_empty() {
            None
        } else {
            Some(self.source_ips[n % self.source_ips.len()])
        }
    }

    /// The server's CPU seconds so far, if a pid was given.
    pub fn server_cpu_seconds(&self) -> Option<f64> {
        self.memory.as_ref().and_then(ProcessMemory::cpu_seconds)
    }

    /// Samples the server's memory, if a pid was given.
    pub fn sample_memory(&self) -> Option<MemorySample> {
        self.memory.as_ref().and_then(ProcessMemory::sample)
    }

    /// Logs user `index` in (SCRAM cache on) with resource `resource`.
    pub async fn login(
        &self,
        index: usize,
        resource: &str,
    ) -> Result<crate::client::TlsSession, crate::client::ClientError> {
        self.login_as(&self.username(index), index, resource).await
    }

    /// Logs `username` in (SCRAM cache on) with resource `resource`, from the source address of
    /// connection `n`: for phases whose users have names of their own.
    pub async fn login_as(
        &self,
        username: &str,
        n: usize,
        resource: &str,
    ) -> Result<crate::client::TlsSession, crate::client::ClientError> {
        self.connector
            .login(
                username,
                &self.password,
                resource,
                self.mechanism,
                Some(&self.cache),
                self.source_ip(n),
            )
            .await
    }
}

/// `count` loopback addresses starting at 127.0.0.2 (the whole 127.0.0.0/8 is loopback on Linux).
pub fn loopback_sources(count: usize) -> Vec<IpAddr> {
    (0..count as u32)
        .map(|i| {
            let n = 2 + i;
            IpAddr::V4(Ipv4Addr::new(127, (n >> 16) as u8, (n >> 8) as u8, n as u8))
        })
        .collect()
}

/// The outcome of one phase, as written to the JSON report.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PhaseReport {
    /// `accounts`, `idle`, `login`, `chat`, `push`, `archive`, `hibernated`, `pep` or `pep-caps`.
    pub name: String,
    /// False when the phase could not run against this server (see `note`).
    pub available: bool,
    /// Operations attempted (registrations, sessions, logins, messages, pushes).
    pub attempted: u64,
    /// Operations that succeeded (for chat and push: delivered).
    pub succeeded: u64,
    /// Wall time of the measured part, seconds.
    pub seconds: f64,
    /// `succeeded / seconds`.
    pub rate_per_s: f64,
    /// Per-operation latency (login time, delivery time, push time).
    pub latency: Option<Latency>,
    /// Errors by kind.
    pub errors: ErrorCounts,
    /// Server memory before the phase.
    pub memory_before: Option<MemorySample>,
    /// Server memory at the phase's high point (all idle sessions up).
    pub memory_loaded: Option<MemorySample>,
    /// (loaded - before) resident KiB divided by the sessions held (idle phase only).
    pub kib_per_session: Option<f64>,
    /// CPU seconds (user + system) the server used during the phase, when its pid is known.
    pub server_cpu_s: Option<f64>,
    /// CPU seconds the load generator itself used during the phase: on one machine the two share
    /// the cores, so a rate can be capped by the client rather than the server.
    pub client_cpu_s: Option<f64>,
    /// Anything the reader needs to interpret the figures.
    pub note: String,
    /// Latency per kind of operation, for phases that time several (archive: one per query kind).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queries: Vec<NamedLatency>,
    /// Further named figures of a phase (pep: `notifications_per_s`, `disco_queries`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub figures: BTreeMap<String, f64>,
}

/// The latency of one kind of operation within a phase.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NamedLatency {
    /// E.g. `middle page with=contact`.
    pub name: String,
    /// `None` when no operation of this kind succeeded.
    pub latency: Option<Latency>,
}

impl PhaseReport {
    /// An unavailable phase with the reason.
    pub fn unavailable(name: &str, note: &str) -> Self {
        PhaseReport {
            name: name.to_owned(),
            note: note.to_owned(),
            ..PhaseReport::default()
        }
    }

    /// Appends the first errors of a batch to the note, if there were any.
    pub fn note_first_errors(&mut self, first_errors: &[String]) {
        if !first_errors.is_empty() {
            self.note
                .push_str(&format!(" (first errors: {})", first_errors.join("; ")));
        }
    }

    /// Sets `kib_per_session` from the memory samples, for `sessions` sessions held (none without both
    /// samples or without a session).
    pub fn set_memory_per_session(&mut self, sessions: usize) {
        if let (Some(before), Some(loaded), true) =
            (self.memory_before, self.memory_loaded, sessions > 0)
        {
            self.kib_per_session =
                Some((loaded.rss_kib as f64 - before.rss_kib as f64) / sessions as f64);
        }
    }

    /// Fills `seconds` and `rate_per_s` from an elapsed duration.
    pub fn set_elapsed(&mut self, elapsed: Duration) {
        self.seconds = elapsed.as_secs_f64();
        self.rate_per_s = if self.seconds > 0.0 {
            self.succeeded as f64 / self.seconds
        } else {
            0.0
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_sources_start_at_127_0_0_2_and_carry_over() {
        let ips = loopback_sources(300);
        assert_eq!(ips[0], IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(ips[254], IpAddr::V4(Ipv4Addr::new(127, 0, 1, 0)));
    }

    #[test]
    fn rate_is_successes_per_second() {
        let mut r = PhaseReport {
            succeeded: 50,
            ..PhaseReport::default()
        };
        r.set_elapsed(Duration::from_millis(500));
        assert_eq!(r.rate_per_s, 100.0);
    }
}
