//! Idle sessions: N users log in (TLS, SASL, bind, initial presence per RFC 6121 section 4.2) and
//! stay connected doing nothing but answering XEP-0199 pings; the server's resident memory before
//! and with all sessions up gives the memory per session.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::batch::run_batch;
use super::{PhaseReport, Target};
use crate::client::escape;
use crate::stats::Latency;

/// Establishes up to `count` sessions (`concurrency` in flight, none started after `deadline`),
/// holds them for `hold`, samples memory, then closes them all.
pub async fn run(
    target: &Target,
    count: usize,
    concurrency: usize,
    deadline: Duration,
    hold: Duration,
) -> PhaseReport {
    let memory_before = target.sample_memory();
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let alive = Arc::new(AtomicUsize::new(0));
    let out = run_batch(
        count,
        concurrency,
        deadline,
        target.connector.timeout,
        |i| {
            let target = target.clone();
            let shutdown = shutdown_rx.clone();
            let alive = alive.clone();
            async move {
                let mut session = target.login(i, "idle").await?;
                session.send("<presence/>").await?;
                alive.fetch_add(1, Ordering::SeqCst);
                Ok(tokio::spawn(hold_session(session, shutdown, alive)))
            }
        },
    )
    .await;
    let established = out.values.len();
    // Let the server settle (buffers, GC) before sampling; this is a measurement interval, not
    // synchronisation.
    tokio::time::sleep(hold).await;
    let memory_loaded = target.sample_memory();
    let still_alive = alive.load(Ordering::SeqCst);
    let mut report = PhaseReport {
        name: "idle".into(),
        available: true,
        attempted: out.attempted,
        succeeded: established as u64,
        latency: Latency::from_micros(out.latencies_us),
        errors: out.errors,
        memory_before,
        memory_loaded,
        ..PhaseReport::default()
    };
    report.set_elapsed(out.elapsed);
    report.note_first_errors(&out.first_errors);
    for _ in still_alive..established {
        report.errors.add("dropped-while-idle");
    }
    report.set_memory_per_session(still_alive);
    report.note.insert_str(
        0,
        &format!(
            "{still_alive} of {established} sessions still up after holding {}s",
            hold.as_secs()
        ),
    );
    // Ignore a send error: it only means every holder already ended.
    let _ = shutdown_tx.send(true);
    close_all(out.values, target.connector.timeout).await;
    report
}

async fn hold_session(
    session: crate::client::TlsSession,
    mut shutdown: watch::Receiver<bool>,
    alive: Arc<AtomicUsize>,
) {
    let (mut reader, mut writer) = session.into_split();
    loop {
        tokio::select! {
            _ = shutdown.changed() => {
                // Best effort: the phase is over either way.
                let _ = writer.close().await;
                // Then wait for the server to end its side (RFC 6120 section 4.4; `close_all` bounds
                // the wait), so that its work tearing these sessions down is counted in this phase
                // and not in the CPU time and rate of the next one.
                while reader.recv().await.is_ok() {}
                break;
            }
            next = reader.recv() => match next {
                Ok(e) if e.name == "iq" && e.attr("type") == Some("get") && e.child("ping").is_some() => {
                    // XEP-0199 section 4.2: answer server pings or be disconnected.
                    let id = escape(e.attr("id").unwrap_or_default());
                    let to = e.attr("from").map(|f| format!(" to='{}'", escape(f))).unwrap_or_default();
                    if writer.send(&format!("<iq type='result' id='{id}'{to}/>")).await.is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
    alive.fetch_sub(1, Ordering::SeqCst);
}

/// Waits for holders to close; those still running after `timeout` are aborted.
pub(crate) async fn close_all(holders: Vec<JoinHandle<()>>, timeout: Duration) {
    let aborts: Vec<_> = holders.iter().map(JoinHandle::abort_handle).collect();
    let join = async {
        for h in holders {
            // A holder that panicked or was aborted is already gone; nothing to clean up.
            let _ = h.await;
        }
    };
    if tokio::time::timeout(timeout, join).await.is_err() {
        for a in aborts {
            a.abort();
        }
    }
}
