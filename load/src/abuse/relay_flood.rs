//! A flood of `POST /api/v1/messages/` (relay/openapi.json) with a revoked whitelist token: an
//! XMPP account logs in to the relay API with its password, issues a token, revokes it, and the
//! flood then posts it at a bounded rate over a few keep-alive HTTP/1.1 connections (RFC 9112
//! section 9.3). Every answer is counted by status; a 4xx without a JSON body is counted apart.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::{AbusePlan, Outcomes, stopped};
use crate::phase::provider::{HttpError, http_request, split_http_url};
use crate::stats::Latency;

/// Deadline of each request (setup and flood).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest response head or body the flood reads.
const MAX_RESPONSE_BYTES: u64 = 64 * 1024;

/// What the flood did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FloodReport {
    /// False when the flood could not run (see `note`).
    pub available: bool,
    /// Requests sent and answered.
    pub sent: u64,
    pub answered: u64,
    /// Answers by status (`404`, `429`, ...).
    pub statuses: Outcomes,
    /// Transport failures by kind (`io`, `timeout`, `bad-http`); the connection is then reopened.
    pub errors: Outcomes,
    /// 4xx/5xx answers whose body is not a JSON object.
    pub non_json_error_bodies: u64,
    /// Sending window, seconds, and answers per second over it.
    pub seconds: f64,
    pub answered_per_s: f64,
    /// Time per request.
    pub latency: Option<Latency>,
    pub note: String,
}

impl FloodReport {
    pub(crate) fn panicked() -> Self {
        FloodReport {
            note: "the flood task panicked".into(),
            ..FloodReport::default()
        }
    }
}

/// The revoked token's secret, or why there is none.
pub type FloodSetup = Result<String, String>;

/// Logs `{prefix}{relay_user}` in to the relay API, issues a whitelist token and revokes it.
pub async fn setup(plan: &AbusePlan) -> FloodSetup {
    let Some(base) = plan.relay_url.as_deref() else {
        return Err("not run: no relay URL given".into());
    };
    let account = serde_json::json!({
        "username": plan.target.bare_jid(plan.relay_user),
        "password": plan.target.password,
    });
    let key = call(
        "POST",
        &format!("{base}/api/v1/accounts/"),
        None,
        &account.to_string(),
    )
    .await
    .and_then(|v| field(&v, "token"))
    .map_err(|e| format!("relay login: {e}"))?;
    let token = call(
        "POST",
        &format!("{base}/api/v1/tokens/"),
        Some(&key),
        r#"{"name":"abuse run"}"#,
    )
    .await
    .map_err(|e| format!("token: {e}"))?;
    let secret = field(&token, "token").map_err(|e| format!("token: {e}"))?;
    let id = field(&token, "id").map_err(|e| format!("token: {e}"))?;
    let url = format!("{base}/api/v1/tokens/{id}/");
    match http_request("DELETE", &url, Some(&key), "", REQUEST_TIMEOUT).await {
        Ok((204, _)) => Ok(secret),
        Ok((status, body)) => Err(format!("revoke: HTTP {status} {body}")),
        Err(e) => Err(format!("revoke: {e}")),
    }
}

/// One JSON call that must answer 2xx.
async fn call(
    method: &str,
    url: &str,
    key: Option<&str>,
    body: &str,
) -> Result<serde_json::Value, String> {
    let (status, body) = http_request(method, url, key, body, REQUEST_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    if !(200..300).contains(&status) {
        return Err(format!("HTTP {status} {body}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("not JSON ({e}): {body}"))
}

fn field(value: &serde_json::Value, name: &str) -> Result<String, String> {
    value
        .get(name)
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .ok_or_else(|| format!("no {name:?} in {value}"))
}

/// Posts the revoked token at `plan.flood_rate` per second until `stop`.
pub async fn run(plan: AbusePlan, setup: FloodSetup, stop: watch::Receiver<bool>) -> FloodReport {
    let secret = match setup {
        Ok(s) => s,
        Err(reason) => {
            return FloodReport {
                note: reason,
                ..FloodReport::default()
            };
        }
    };
    let Some(base) = plan.relay_url.as_deref() else {
        return FloodReport::default();
    };
    let url = format!("{base}/api/v1/messages/");
    let body = serde_json::json!({ "token": secret }).to_string();
    let connections = plan.flood_connections.max(1);
    let period = Duration::from_secs_f64(connections as f64 / plan.flood_rate.max(0.001));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(connections);
    for n in 0..connections {
        let url = url.clone();
        let body = body.clone();
        let stop = stop.clone();
        // Spread the connections' first posts over one period.
        let first = tokio::time::Instant::now() + period.mul_f64(n as f64 / connections as f64);
        tasks.push(tokio::spawn(flood_one(url, body, first, period, stop)));
    }
    let mut report = FloodReport {
        available: true,
        ..FloodReport::default()
    };
    let mut latencies = Vec::new();
    for task in tasks {
        match task.await {
            Ok(part) => {
                report.sent += part.sent;
                report.answered += part.answered;
                report.statuses.merge(&part.statuses);
                report.errors.merge(&part.errors);
                report.non_json_error_bodies += part.non_json_error_bodies;
                latencies.extend(part.latencies_us);
            }
            Err(_) => report.errors.add("task-panicked"),
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    if report.seconds > 0.0 {
        report.answered_per_s = report.answered as f64 / report.seconds;
    }
    report.latency = Latency::from_micros(latencies);
    report.note = format!(
        "revoked token; target {:.0} posts/s over {connections} keep-alive connections",
        plan.flood_rate
    );
    report
}

#[derive(Default)]
struct FloodPart {
    sent: u64,
    answered: u64,
    statuses: Outcomes,
    errors: Outcomes,
    non_json_error_bodies: u64,
    latencies_us: Vec<u64>,
}

async fn flood_one(
    url: String,
    body: String,
    first: tokio::time::Instant,
    period: Duration,
    mut stop: watch::Receiver<bool>,
) -> FloodPart {
    let mut part = FloodPart::default();
    let mut connection = None;
    let mut ticks = tokio::time::interval_at(first, period);
    // A slow answer delays the next post rather than causing a burst: the rate stays bounded.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => return part,
            _ = ticks.tick() => {}
        }
        part.sent += 1;
        let t0 = Instant::now();
        let answer =
            tokio::time::timeout(REQUEST_TIMEOUT, post(&mut connection, &url, &body)).await;
        match answer {
            Ok(Ok((status, text))) => {
                part.answered += 1;
                part.latencies_us.push(t0.elapsed().as_micros() as u64);
                part.statuses.add(&status.to_string());
                let is_json_object =
                    serde_json::from_str::<serde_json::Value>(&text).is_ok_and(|v| v.is_object());
                if status >= 400 && !is_json_object {
                    part.non_json_error_bodies += 1;
                }
            }
            Ok(Err(e)) => {
                connection = None;
                part.errors.add(match e {
                    HttpError::Io(_) => "io",
                    HttpError::Bad(_) => "bad-http",
                    HttpError::Timeout => "timeout",
                });
            }
            Err(_) => {
                connection = None;
                part.errors.add("timeout");
            }
        }
    }
}

/// POSTs `body` on the kept connection (opening one if needed) and reads the answer; the
/// connection is dropped when the server says `Connection: close`.
async fn post(
    connection: &mut Option<BufReader<TcpStream>>,
    url: &str,
    body: &str,
) -> Result<(u16, String), HttpError> {
    let (host, path) = split_http_url(url)?;
    if connection.is_none() {
        let stream = TcpStream::connect(&host).await?;
        stream.set_nodelay(true)?;
        *connection = Some(BufReader::new(stream));
    }
    let Some(stream) = connection.as_mut() else {
        return Err(HttpError::Bad("no connection".into()));
    };
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.get_mut().write_all(request.as_bytes()).await?;
    let (status, length, closes) = read_head(stream).await?;
    let mut text = Vec::new();
    (&mut *stream)
        .take(length.min(MAX_RESPONSE_BYTES))
        .read_to_end(&mut text)
        .await?;
    if closes {
        *connection = None;
    }
    Ok((status, String::from_utf8_lossy(&text).into_owned()))
}

/// Reads a response head: (status, Content-Length, whether the server closes the connection).
async fn read_head(stream: &mut BufReader<TcpStream>) -> Result<(u16, u64, bool), HttpError> {
    let mut status = None;
    let mut length = 0u64;
    let mut closes = false;
    let mut head_bytes = 0u64;
    loop {
        let mut line = String::new();
        let n = (&mut *stream)
            .take(MAX_RESPONSE_BYTES - head_bytes)
            .read_line(&mut line)
            .await?;
        if n == 0 {
            return Err(HttpError::Bad("connection closed before the answer".into()));
        }
        head_bytes += n as u64;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if status.is_none() {
            status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok());
            if status.is_none() {
                return Err(HttpError::Bad(format!("status line {line:?}")));
            }
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => {
                length = value
                    .parse()
                    .map_err(|_| HttpError::Bad("content-length".into()))?;
            }
            "connection" => closes = value.eq_ignore_ascii_case("close"),
            "transfer-encoding" => {
                return Err(HttpError::Bad("chunked answers are not read".into()));
            }
            _ => {}
        }
    }
    let status = status.ok_or_else(|| HttpError::Bad("no status line".into()))?;
    Ok((status, length, closes))
}
