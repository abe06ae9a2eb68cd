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

/// A server process whose memory is sampled.
#[derive(Debug, Clone)]
pub struct ProcessMemory {
    status: PathBuf,
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
        }
    }

    /// Reads the current sample; `None` if the process is gone or the file is unreadable.
    pub fn sample(&self) -> Option<MemorySample> {
        let text = std::fs::read_to_string(&self.status).ok()?;
        parse_status(&text)
    }
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
