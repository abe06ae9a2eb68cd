//! Samples the server's resident memory (`VmRSS`, proc(5)) during the abuse run and stops the run
//! when it passes the guard, so that a server without bounds cannot take the machine down with it.

use std::time::Duration;

use tokio::sync::watch;

use super::stopped;
use crate::stats::ProcessMemory;

/// What the sampler saw.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    /// Largest VmRSS, KiB (`None` without a process to sample).
    pub rss_max_kib: Option<u64>,
    /// Samples taken.
    pub count: u64,
    /// Set when the guard stopped the run: the reason, with the figure.
    pub guard_tripped: Option<String>,
}

impl Samples {
    /// Records one VmRSS reading; returns the guard message if it passes `max_kib`.
    pub fn record(&mut self, rss_kib: u64, max_kib: u64) -> Option<String> {
        self.count += 1;
        self.rss_max_kib = Some(self.rss_max_kib.unwrap_or(0).max(rss_kib));
        if rss_kib > max_kib && self.guard_tripped.is_none() {
            let reason = format!(
                "server VmRSS {} MiB passed the guard of {} MiB; run stopped early",
                rss_kib / 1024,
                max_kib / 1024
            );
            self.guard_tripped = Some(reason.clone());
            return Some(reason);
        }
        None
    }
}

/// Samples `memory` every `interval` until `stop`; past `max_rss_kib` it sets `stop` itself.
pub async fn run(
    memory: Option<ProcessMemory>,
    interval: Duration,
    max_rss_kib: u64,
    stop_tx: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) -> Samples {
    let mut samples = Samples::default();
    let Some(memory) = memory else {
        return samples;
    };
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => return samples,
            _ = ticks.tick() => {}
        }
        let Some(sample) = memory.sample() else {
            samples.guard_tripped = Some("server process is gone".into());
            let _ = stop_tx.send(true);
            return samples;
        };
        if let Some(reason) = samples.record(sample.rss_kib, max_rss_kib) {
            eprintln!("abuse: {reason}");
            // Ignore a send error: nobody is left to stop.
            let _ = stop_tx.send(true);
            return samples;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_trips_once_past_the_limit() {
        let mut s = Samples::default();
        assert!(s.record(1000, 2048).is_none());
        let reason = s.record(4096, 2048).expect("guard");
        assert!(reason.contains("4 MiB"), "{reason}");
        assert!(
            s.record(8192, 2048).is_none(),
            "only the first crossing reports"
        );
        assert_eq!((s.count, s.rss_max_kib), (3, Some(8192)));
    }
}
