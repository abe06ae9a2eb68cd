//! Push to offline users (a message stored offline wakes the account's devices, as servers implementing XEP-0357 "Publishing Notifications" do):
//! each push user logs in to Herald's relay API with its XMPP credentials and registers a
//! UnifiedPush-style device whose endpoint is a local stand-in provider; while the user is offline
//! an online user sends it a message, and the phase measures the time from sending to the stand-in
//! receiving the push. Herald only: it needs the built-in relay (`--relay-url`).

use std::path::Path;
use std::time::{Duration, Instant};

use super::batch::run_batch;
use super::provider::{StandInProvider, post_json};
use super::{PhaseReport, Target};
use crate::client::{ClientError, escape};
use crate::stats::Latency;

/// Messages per sending session.
const SENDS_PER_SENDER: usize = 100;
/// Pace of each sending session (100/s).
const SEND_INTERVAL: Duration = Duration::from_millis(10);

/// Why the phase did not run without a relay.
pub const NOT_AVAILABLE: &str =
    "not available: needs a server with Herald's built-in push relay (--relay-url)";

/// Registers a device for users `first..first+count` and wakes each with one message sent by user
/// `sender`. `relay_url` is the relay API's base URL (`http://127.0.0.1:port`).
pub async fn run(
    target: &Target,
    relay_url: Option<&str>,
    first: usize,
    count: usize,
    sender: usize,
    wait: Duration,
    trace: Option<&Path>,
) -> PhaseReport {
    let Some(relay_url) = relay_url else {
        return PhaseReport::unavailable("push", NOT_AVAILABLE);
    };
    let mut report = PhaseReport {
        name: "push".into(),
        available: true,
        ..PhaseReport::default()
    };
    let (provider, serving) = match StandInProvider::start().await {
        Ok(p) => p,
        Err(e) => {
            report.errors.add("provider-bind");
            report.note = format!("stand-in provider: {e}");
            return report;
        }
    };
    let registered = run_batch(count, 50, wait * 4, target.connector.timeout, |n| {
        let target = target.clone();
        let relay_url = relay_url.to_owned();
        let endpoint = provider.endpoint(n);
        async move {
            register_device(&target, &relay_url, first + n, &endpoint)
                .await
                .map(|()| n)
        }
    })
    .await;
    let devices = registered.values.len();
    report.errors.merge(&registered.errors);
    if devices == 0 {
        report.note = format!(
            "no device could be registered ({})",
            registered.first_errors.join("; ")
        );
        serving.abort();
        return report;
    }
    // Several senders, each paced well under a per-session stanza rate limit (Herald's default is
    // 200/s), so that the latency measured is the push path's and not a sender's throttling.
    let slices: Vec<Vec<usize>> = registered
        .values
        .chunks(SENDS_PER_SENDER)
        .map(<[usize]>::to_vec)
        .collect();
    let mut senders = Vec::with_capacity(slices.len());
    for (k, slice) in slices.into_iter().enumerate() {
        let target = target.clone();
        senders.push(tokio::spawn(async move {
            send_slice(&target, sender + k, first, slice).await
        }));
    }
    let mut sent_at = vec![None; count];
    let mut sender_of = vec![0; count];
    let mut sessions = Vec::new();
    for (k, task) in senders.into_iter().enumerate() {
        match task.await {
            Ok(Ok((session, times))) => {
                for (n, at) in times {
                    sent_at[n] = Some(at);
                    sender_of[n] = k;
                }
                sessions.push(session);
            }
            Ok(Err(e)) => report.errors.add(e.kind()),
            Err(_) => report.errors.add("task-panicked"),
        }
    }
    let expected = sent_at.iter().flatten().count();
    provider
        .wait_for(expected, tokio::time::Instant::now() + wait)
        .await;
    for session in sessions {
        // Best effort: the measurement is over.
        let _ = session.close().await;
    }
    let arrivals = provider.arrivals();
    serving.abort();
    let start = sent_at.iter().flatten().min().copied();
    if let (Some(path), Some(start)) = (trace, start)
        && let Err(e) = write_trace(path, start, &sent_at, &sender_of, &arrivals)
    {
        report.note = format!("push trace {}: {e}; ", path.display());
    }
    let mut latencies = Vec::new();
    let mut last = start;
    for (n, at) in &arrivals {
        if let Some(sent) = sent_at.get(*n).copied().flatten() {
            latencies.push(at.saturating_duration_since(sent).as_micros() as u64);
            last = last.max(Some(*at));
        }
    }
    report.attempted = devices as u64;
    report.succeeded = latencies.len() as u64;
    for _ in latencies.len()..devices {
        report.errors.add("push-not-received");
    }
    report.latency = Latency::from_micros(latencies);
    if let (Some(s), Some(l)) = (start, last) {
        report.set_elapsed(l.saturating_duration_since(s));
    }
    report.note += &format!(
        "{devices} of {count} devices registered (relay API, UnifiedPush endpoint on a local stand-in); \
         one message each while offline; latency = send to stand-in receipt"
    );
    report
}

/// Writes one line per message sent, ordered by send time: device number, sending session, send time
/// after the first send and latency (empty when no push arrived), in microseconds; a first comment line
/// gives the wall-clock time of the first send, to line the trace up with the server's logs.
///
/// Errors: creating or writing `path`.
fn write_trace(
    path: &Path,
    start: Instant,
    sent_at: &[Option<Instant>],
    sender_of: &[usize],
    arrivals: &std::collections::HashMap<usize, Instant>,
) -> std::io::Result<()> {
    use std::io::Write;
    let mut rows: Vec<(u128, usize, usize, String)> = Vec::new();
    for (n, sent) in sent_at.iter().enumerate() {
        let Some(sent) = sent else { continue };
        let latency = arrivals
            .get(&n)
            .map(|at| at.saturating_duration_since(*sent).as_micros().to_string())
            .unwrap_or_default();
        let sent_us = sent.saturating_duration_since(start).as_micros();
        rows.push((sent_us, n, sender_of[n], latency));
    }
    rows.sort_unstable();
    let first_send = std::time::SystemTime::now() - start.elapsed();
    let epoch_us = first_send
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "# first send at {epoch_us} us since the Unix epoch")?;
    writeln!(out, "device\tsender\tsent_us\tlatency_us")?;
    for (sent_us, n, sender, latency) in rows {
        writeln!(out, "{n}\t{sender}\t{sent_us}\t{latency}")?;
    }
    out.flush()
}

/// Sends one message to each user in `slice` (numbers relative to `first`) from user `sender`,
/// one every [`SEND_INTERVAL`]; returns the session (to close later) and the send times.
async fn send_slice(
    target: &Target,
    sender: usize,
    first: usize,
    slice: Vec<usize>,
) -> Result<(crate::client::TlsSession, Vec<(usize, Instant)>), ClientError> {
    let mut session = target.login(sender, "push-sender").await?;
    let mut ticks = tokio::time::interval(SEND_INTERVAL);
    let mut times = Vec::with_capacity(slice.len());
    for n in slice {
        ticks.tick().await;
        let to = escape(&target.bare_jid(first + n));
        let xml =
            format!("<message to='{to}' type='chat' id='p{n}'><body>wake {n}</body></message>");
        times.push((n, Instant::now()));
        session.send(&xml).await?;
    }
    Ok((session, times))
}

/// Relay API login with the XMPP credentials, then a UnifiedPush device pointing at `endpoint`.
async fn register_device(
    target: &Target,
    relay_url: &str,
    index: usize,
    endpoint: &str,
) -> Result<(), ClientError> {
    let timeout = target.connector.timeout;
    let account =
        serde_json::json!({"username": target.bare_jid(index), "password": target.password});
    let (status, body) = post_json(
        &format!("{relay_url}/api/v1/accounts/"),
        None,
        &account.to_string(),
        timeout,
    )
    .await
    .map_err(|e| ClientError::Protocol(format!("relay login: {e}")))?;
    if !(200..300).contains(&status) {
        return Err(ClientError::Protocol(format!(
            "relay login: HTTP {status} {body}"
        )));
    }
    let token = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("token").and_then(|t| t.as_str()).map(str::to_owned))
        .ok_or_else(|| ClientError::Protocol("relay login: no token".into()))?;
    let device = serde_json::json!({"name": "herald-load", "endpoint": endpoint});
    let (status, body) = post_json(
        &format!("{relay_url}/api/v1/device/unifiedpush/"),
        Some(&token),
        &device.to_string(),
        timeout,
    )
    .await
    .map_err(|e| ClientError::Protocol(format!("relay device: {e}")))?;
    if !(200..300).contains(&status) {
        return Err(ClientError::Protocol(format!(
            "relay device: HTTP {status} {body}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn the_trace_has_one_line_per_send_in_send_order() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        // Device 0 sent second and woken after 7 ms, device 1 sent first and woken after 12 ms,
        // device 2 sent last and never woken, device 3 never sent.
        let sent_at = vec![Some(at(10)), Some(at(0)), Some(at(20)), None];
        let sender_of = vec![1, 0, 1, 0];
        let arrivals = HashMap::from([(0, at(17)), (1, at(12))]);
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("trace.tsv");
        write_trace(&path, start, &sent_at, &sender_of, &arrivals).expect("written");
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("# first send at "), "{text}");
        assert_eq!(
            lines[1..],
            [
                "device\tsender\tsent_us\tlatency_us",
                "1\t0\t0\t12000",
                "0\t1\t10000\t7000",
                "2\t1\t20000\t",
            ]
        );
    }
}
