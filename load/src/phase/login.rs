//! Login storm: many short sessions, each TCP + TLS + SASL + bind (RFC 6120 sections 5-7) then a
//! stream close, as fast as the server accepts them with a fixed number in flight.

use std::time::Duration;

use super::batch::run_batch;
use super::{PhaseReport, Target};
use crate::stats::Latency;

/// Performs `count` logins cycling over users `0..users`, `concurrency` in flight, none started
/// after `deadline`. With a warm SCRAM cache (the idle phase logged the same users in) the
/// client spends no time in PBKDF2, so the rate reflects the server.
pub async fn run(
    target: &Target,
    count: usize,
    users: usize,
    concurrency: usize,
    deadline: Duration,
) -> PhaseReport {
    let users = users.max(1);
    let (handshakes_before, resumed_before) = target.connector.handshake_counts();
    let out = run_batch(
        count,
        concurrency,
        deadline,
        target.connector.timeout,
        |i| {
            let target = target.clone();
            async move {
                let session = target.login(i % users, &format!("storm{i}")).await?;
                session.close().await
            }
        },
    )
    .await;
    let mut report = PhaseReport {
        name: "login".into(),
        available: true,
        attempted: out.attempted,
        succeeded: out.values.len() as u64,
        latency: Latency::from_micros(out.latencies_us),
        errors: out.errors,
        note: format!("{concurrency} logins in flight; each is connect+TLS+SASL+bind+close"),
        ..PhaseReport::default()
    };
    report.set_elapsed(out.elapsed);
    let (handshakes, resumed) = target.connector.handshake_counts();
    report.note.push_str(&format!(
        "; TLS sessions resumed in {} of {} handshakes; the client {} the server's handshake signature",
        resumed - resumed_before,
        handshakes - handshakes_before,
        if target.connector.checks_signatures {
            "verified"
        } else {
            "did not verify"
        }
    ));
    report.note_first_errors(&out.first_errors);
    report
}
