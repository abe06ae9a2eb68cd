//! Measurements: latency percentiles, error counts by kind, and a server's memory as reported by
//! Linux in `/proc/<pid>/status` (`VmRSS` resident now, `VmHWM` resident peak; proc(5)).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Latency summary in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    /// Number of samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile (nearest rank).
    pub p99_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
}

impl Latency {
    /// Summarises samples given in microseconds; `None` when there are none.
    pub fn from_micros(mut samples: Vec<u64>) -> Option<Latency> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let rank = |q: f64| {
            // Nearest-rank percentile: the smallest sample with at least q of the samples at or below it.
            let idx = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[idx] as f64 / 1000.0
        };
        Some(Latency {
            count: samples.len() as u64,
            p50_ms: rank(0.50),
            p99_ms: rank(0.99),
            max_ms: samples[samples.len() - 1] as f64 / 1000.0,
        })
    }
}

/// Errors counted by kind (e.g. `timeout`, `auth-failed`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorCounts(pub BTreeMap<String, u64>);

impl ErrorCounts {
    /// Counts one error of `kind`.
    pub fn add(&mut self, kind: &str) {
        *self.0.entry(kind.to_owned()).or_default() += 1;
    }

    /// Adds all counts of `other`.
    pub fn merge(&mut self, other: &ErrorCounts) {
        for (k, v) in &other.0 {
            *self.0.entry(k.clone()).or_default() += v;
        }
    }

    /// Total number of errors.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }
}

/// A server process whose memory (and CPU time) is sampled.
#[derive(Debug, Clone)]
pub struct ProcessMemory {
    status: PathBuf,
    stat: PathBuf,
}

/// One memory sample in KiB.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MemorySample {
    /// `VmRSS`: resident set now.
    pub rss_kib: u64,
    /// `VmHWM`: peak resident set since the process started.
    pub peak_kib: u64,
}

impl ProcessMemory {
    /// Samples process `pid`.
    pub fn new(pid: u32) -> Self {
        ProcessMemory {
            status: PathBuf::from(format!("/proc/{pid}/status")),
            stat: PathBuf::from(format!("/proc/{pid}/stat")),
        }
    }

    /// CPU time the process has used so far, user plus system, all threads, in seconds.
    pub fn cpu_seconds(&self) -> Option<f64> {
        cpu_seconds_at(&self.stat)
    }

    /// Reads the current sample; `None` if the process is gone or the file is unreadable.
    pub fn sample(&self) -> Option<MemorySample> {
        let text = std::fs::read_to_string(&self.status).ok()?;
        parse_status(&text)
    }
}

/// CPU time this process (the load generator) has used so far, in seconds.
pub fn own_cpu_seconds() -> Option<f64> {
    cpu_seconds_at(std::path::Path::new("/proc/self/stat"))
}

fn cpu_seconds_at(stat: &std::path::Path) -> Option<f64> {
    parse_stat_cpu(&std::fs::read_to_string(stat).ok()?)
}

/// `utime + stime` from a `/proc/<pid>/stat` line (proc(5) fields 14 and 15), in seconds. The values
/// are in USER_HZ, which Linux fixes at 100 for what it reports to user space whatever the kernel's
/// own tick. The command name (field 2) may hold spaces and parentheses, so fields are counted from
/// the last `)`.
fn parse_stat_cpu(text: &str) -> Option<f64> {
    const USER_HZ: f64 = 100.0;
    let after_name = &text[text.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

fn parse_status(text: &str) -> Option<MemorySample> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
    };
    Some(MemorySample {
        rss_kib: field("VmRSS:")?,
        peak_kib: field("VmHWM:")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let l = Latency::from_micros((1..=100).map(|i| i * 1000).collect()).unwrap();
        assert_eq!(
            (l.count, l.p50_ms, l.p99_ms, l.max_ms),
            (100, 50.0, 99.0, 100.0)
        );
        let one = Latency::from_micros(vec![2500]).unwrap();
        assert_eq!((one.p50_ms, one.p99_ms, one.max_ms), (2.5, 2.5, 2.5));
        assert!(Latency::from_micros(vec![]).is_none());
    }

    #[test]
    fn status_fields_are_read_in_kib() {
        let s = "Name:\tprosody\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n";
        assert_eq!(
            parse_status(s),
            Some(MemorySample {
                rss_kib: 102400,
                peak_kib: 204800
            })
        );
        assert_eq!(parse_status("Name: x\n"), None);
    }

    #[test]
    fn own_process_can_be_sampled() {
        let m = ProcessMemory::new(std::process::id()).sample().unwrap();
        assert!(m.rss_kib > 0 && m.peak_kib >= m.rss_kib);
    }

    #[test]
    fn cpu_time_is_read_after_the_command_name() {
        let line =
            "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 130 0 0 20 0 3 0";
        assert_eq!(parse_stat_cpu(line), Some(3.8));
        assert_eq!(parse_stat_cpu("4242 (x) S 1"), None);
        assert!(own_cpu_seconds().is_some());
    }

    #[test]
    fn error_counts_merge_and_total() {
        let mut a = ErrorCounts::default();
        a.add("timeout");
        let mut b = ErrorCounts::default();
        b.add("timeout");
        b.add("io");
        a.merge(&b);
        assert_eq!((a.total(), a.0["timeout"]), (3, 2));
    }
}
