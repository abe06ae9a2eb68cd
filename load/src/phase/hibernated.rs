//! Hibernated sessions (XEP-0198 section 5): N users log in, send initial presence (RFC 6121 section
//! 4.2), enable stream management with resumption, and then lose their connection without closing
//! the stream (the socket is dropped, as a phone's is when it sleeps). The server keeps each session
//! for resumption; its resident memory before and after gives the memory per hibernated session, to
//! set beside the idle phase's per connected session.
//!
//! The sessions are left hibernating when the phase ends (the server ends them after its resume
//! timeout), so run this phase last.

use std::time::Duration;

use super::batch::run_batch;
use super::{PhaseReport, Target};
use crate::stats::Latency;

/// Hibernates up to `count` sessions (`concurrency` in flight, none started after `deadline`), waits
/// `hold`, and samples memory.
pub async fn run(
    target: &Target,
    count: usize,
    concurrency: usize,
    deadline: Duration,
    hold: Duration,
) -> PhaseReport {
    let memory_before = target.sample_memory();
    let out = run_batch(
        count,
        concurrency,
        deadline,
        target.connector.timeout,
        |i| {
            let target = target.clone();
            async move {
                let mut session = target.login(i, "hibernated").await?;
                session.send("<presence/>").await?;
                let id = session.enable_stream_management(true).await?;
                if id.is_none() {
                    return Err(crate::client::ClientError::NotOffered(
                        "stream resumption".into(),
                    ));
                }
                // Dropped without `</stream:stream>`: the server sees the connection fail.
                drop(session);
                Ok(())
            }
        },
    )
    .await;
    let hibernated = out.values.len();
    // Let the server notice the lost connections and settle before sampling; this is a measurement
    // interval, not synchronisation.
    tokio::time::sleep(hold).await;
    let memory_loaded = target.sample_memory();
    let mut report = PhaseReport {
        name: "hibernated".into(),
        available: true,
        attempted: out.attempted,
        succeeded: hibernated as u64,
        latency: Latency::from_micros(out.latencies_us),
        errors: out.errors,
        memory_before,
        memory_loaded,
        ..PhaseReport::default()
    };
    report.set_elapsed(out.elapsed);
    report.set_memory_per_session(hibernated);
    report.note = format!(
        "{hibernated} sessions hibernated (resumable, connection dropped) after holding {}s",
        hold.as_secs()
    );
    report.note_first_errors(&out.first_errors);
    report
}
