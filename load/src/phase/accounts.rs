//! Account creation by XEP-0077 in-band registration, for servers that allow it; otherwise the
//! comparison script creates accounts with the server's CLI and this phase is skipped.

use std::time::Duration;

use super::batch::run_batch;
use super::{PhaseReport, Target};

/// Registers users `0..count` with `concurrency` in flight, stopping new ones after `deadline`.
pub async fn run(
    target: &Target,
    count: usize,
    concurrency: usize,
    deadline: Duration,
) -> PhaseReport {
    let grace = target.connector.timeout;
    let out = run_batch(count, concurrency, deadline, grace, |i| {
        let connector = target.connector.clone();
        let user = target.username(i);
        let password = target.password.clone();
        let ip = target.source_ip(i);
        async move { connector.register(&user, &password, ip).await }
    })
    .await;
    let mut report = PhaseReport {
        name: "accounts".into(),
        available: true,
        attempted: out.attempted,
        succeeded: out.values.len() as u64,
        latency: crate::stats::Latency::from_micros(out.latencies_us),
        errors: out.errors,
        note: "XEP-0077 in-band registration; existing accounts count as created".into(),
        ..PhaseReport::default()
    };
    report.set_elapsed(out.elapsed);
    report.note_first_errors(&out.first_errors);
    report
}
