//! Relay benchmark (a plain binary, `harness = false`): notifications accepted per second over HTTP
//! (POST /api/v1/messages/ → 202, persisted in the outbox; SQLite file, workers running), and the
//! latency from POST to arrival at a local UnifiedPush stand-in, p50/p99.
//!
//! Run: `cargo bench -p herald-relay --bench throughput` (env BENCH_MESSAGES, BENCH_CONCURRENCY,
//! BENCH_LATENCY_SAMPLES, BENCH_DB=postgres://... to use PostgreSQL instead of a SQLite file).
//!
//! `BENCH_MODE=wake` measures the server's path instead: `Relay::wake_account` for BENCH_WAKE_USERS
//! (1000) accounts with one UnifiedPush device each, called by ten senders at BENCH_WAKE_RATE (1000)
//! per second in total, default relay configuration (collapse window, limits); latency is from the
//! call to the stand-in receiving the POST, p50/p99/max. BENCH_PROVIDER_DELAY_MS makes the stand-in
//! answer that late (a vendor's response time); BENCH_WORKERS overrides `workers`.

// A benchmark aborts on a failed setup step.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use herald_relay::{NoLocalAccounts, Relay, RelayConfig};
use herald_storage::Storage;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn stand_in(
    State(tx): State<mpsc::UnboundedSender<(String, Instant)>>,
    uri: Uri,
) -> StatusCode {
    let _ = tx.send((uri.path().to_string(), Instant::now()));
    StatusCode::CREATED
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    if std::env::var("BENCH_MODE").as_deref() == Ok("wake") {
        wake_bench().await;
        return;
    }
    let messages = env_usize("BENCH_MESSAGES", 5_000);
    let concurrency = env_usize("BENCH_CONCURRENCY", 32);
    let samples = env_usize("BENCH_LATENCY_SAMPLES", 500);
    let devices = 100;

    // The stand-in push service.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let up = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_url = format!("http://{}", up.local_addr().unwrap());
    let app = axum::Router::new().fallback(stand_in).with_state(tx);
    tokio::spawn(async move { axum::serve(up, app).await.unwrap() });

    // The relay.
    let dir = tempfile::tempdir().unwrap();
    let db = std::env::var("BENCH_DB").unwrap_or_else(|_| {
        format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("bench.db").display()
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut config = RelayConfig {
        enabled: true,
        allow_plain_http: true,
        // The stand-in push service is on loopback (refused by default: SSRF).
        allowed_endpoint_networks: vec!["127.0.0.0/8".into()],
        public_url: base.clone(),
        collapse_window_ms: 0,
        ..RelayConfig::default()
    };
    config.limits.per_token = 0;
    config.limits.per_sender = 0;
    config.limits.per_account = 0;
    config.limits.account_attempts = 0;
    let relay = Relay::new(
        Storage::connect(&db).await.unwrap(),
        config.resolve().unwrap(),
        Arc::new(NoLocalAccounts),
    )
    .unwrap();
    let app = relay
        .router()
        .into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let shutdown = CancellationToken::new();
    let workers = relay.spawn_workers(shutdown.clone());

    // One account per device, one token per account.
    let http = reqwest::Client::new();
    let mut tokens = Vec::new();
    let run = uuid_like();
    for i in 0..devices {
        let r: Value = http
            .post(format!("{base}/api/v1/accounts/"))
            .json(&json!({"username": format!("b{run}{i}"), "password": "benchmark"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let key = r["token"].as_str().unwrap().to_string();
        let auth = format!("Token {key}");
        let s = http
            .post(format!("{base}/api/v1/device/unifiedpush/"))
            .header("Authorization", &auth)
            .json(&json!({"endpoint": format!("{up_url}/up/{i}")}))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(s, 201);
        let t: Value = http
            .post(format!("{base}/api/v1/tokens/"))
            .header("Authorization", &auth)
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        tokens.push(t["token"].as_str().unwrap().to_string());
    }

    // 1. Accepted per second.
    let tokens = Arc::new(tokens);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..concurrency {
        let (http, base, tokens) = (http.clone(), base.clone(), tokens.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            let mut i = c;
            while i < messages {
                let r = http
                    .post(format!("{base}/api/v1/messages/"))
                    .json(&json!({"token": tokens[i % tokens.len()], "priority": "high"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202);
                n += 1;
                i += concurrency;
            }
            n
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        accepted += t.await.unwrap();
    }
    let elapsed = started.elapsed();
    println!(
        "accepted: {accepted} notifications in {:.2} s = {:.0}/s ({concurrency} concurrent HTTP clients, {devices} devices, {})",
        elapsed.as_secs_f64(),
        accepted as f64 / elapsed.as_secs_f64(),
        if db.starts_with("sqlite") {
            "SQLite file"
        } else {
            "PostgreSQL"
        }
    );

    // Let the outbox drain (collapse merges many of them), then empty the channel.
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(1500), rx.recv()).await {}

    // 2. POST → stand-in latency, one message at a time.
    let mut lat = Vec::with_capacity(samples);
    for s in 0..samples {
        let i = s % tokens.len();
        let t0 = Instant::now();
        let r = http
            .post(format!("{base}/api/v1/messages/"))
            .json(&json!({"token": tokens[i], "priority": "high"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let want = format!("/up/{i}");
        loop {
            let (path, at) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .unwrap()
                .unwrap();
            if path == want {
                lat.push(at - t0);
                break;
            }
        }
    }
    lat.sort();
    println!(
        "latency POST -> stand-in over {samples} sequential messages: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&lat, 0.50).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().unwrap().as_secs_f64() * 1e3
    );
    shutdown.cancel();
    workers.await.unwrap();
}

/// A short run id so repeated runs on one PostgreSQL database do not collide on usernames.
fn uuid_like() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    format!("{:x}", n % 0xffffff)
}

/// `BENCH_MODE=wake`: the offline-message path, `wake_account` → outbox → UnifiedPush stand-in.
async fn wake_bench() {
    use herald_storage::relay::{Device, DeviceKind, RelayAccount};
    let users = env_usize("BENCH_WAKE_USERS", 1_000);
    let rate = env_usize("BENCH_WAKE_RATE", 1_000).max(1);
    let senders = 10;

    let (tx, mut rx) = mpsc::unbounded_channel();
    let up = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_url = format!("http://{}", up.local_addr().unwrap());
    // A provider that answers after BENCH_PROVIDER_DELAY_MS (real vendors answer in tens of ms).
    let delay = Duration::from_millis(env_usize("BENCH_PROVIDER_DELAY_MS", 0) as u64);
    let app = axum::Router::new().fallback(move |uri: Uri| {
        let tx = tx.clone();
        async move {
            let _ = tx.send((uri.path().to_string(), Instant::now()));
            tokio::time::sleep(delay).await;
            StatusCode::CREATED
        }
    });
    tokio::spawn(async move { axum::serve(up, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let db = std::env::var("BENCH_DB")
        .unwrap_or_else(|_| format!("sqlite://{}?mode=rwc", dir.path().join("wake.db").display()));
    let storage = Storage::connect(&db).await.unwrap();
    let mut config = RelayConfig {
        enabled: true,
        allow_plain_http: true,
        // The stand-in push service is on loopback (refused by default: SSRF).
        allowed_endpoint_networks: vec!["127.0.0.0/8".into()],
        ..RelayConfig::default()
    };
    if let Ok(w) = std::env::var("BENCH_WORKERS") {
        config.workers = w.parse().unwrap();
    }
    let relay = Relay::new(
        storage.clone(),
        config.resolve().unwrap(),
        Arc::new(NoLocalAccounts),
    )
    .unwrap();
    let shutdown = CancellationToken::new();
    let workers = relay.spawn_workers(shutdown.clone());

    let run = uuid_like();
    let mut accounts = Vec::with_capacity(users);
    for i in 0..users {
        let id = format!("w{run}-{i}@bench.example");
        storage
            .relay_accounts
            .create(&RelayAccount {
                id: id.clone(),
                username: id.clone(),
                email: None,
                password_hash: None,
                is_local: true,
                created_at_ms: 0,
            })
            .await
            .unwrap();
        storage
            .relay_devices
            .create(&Device {
                id: format!("d{run}-{i}"),
                account_id: id.clone(),
                kind: DeviceKind::UnifiedPush,
                name: "bench".into(),
                device_id: String::new(),
                active: true,
                token: format!("{up_url}/up/{i}"),
                apns_topic: None,
                apns_sandbox: false,
                webpush_p256dh: None,
                webpush_auth: None,
                created_at_ms: 0,
            })
            .await
            .unwrap();
        accounts.push(id);
    }
    let accounts = Arc::new(accounts);

    // Sender s wakes accounts s, s + senders, ... each at its slot on a common schedule.
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let mut tasks = Vec::new();
    for s in 0..senders {
        let (relay, accounts) = (relay.clone(), accounts.clone());
        tasks.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            let mut i = s;
            while i < accounts.len() {
                tokio::time::sleep_until(start + period * i as u32).await;
                let t0 = Instant::now();
                assert_eq!(relay.wake_account(&accounts[i]).await.unwrap(), 1);
                sent.push((i, t0, t0.elapsed()));
                i += senders;
            }
            sent
        }));
    }
    let mut sent_at = vec![None; users];
    let mut call = Vec::with_capacity(users);
    for t in tasks {
        for (i, t0, took) in t.await.unwrap() {
            sent_at[i] = Some(t0);
            call.push(took);
        }
    }
    let mut lat = Vec::with_capacity(users);
    while lat.len() < users {
        let (path, at) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .unwrap()
            .unwrap();
        let i: usize = path.trim_start_matches("/up/").parse().unwrap();
        lat.push(at - sent_at[i].unwrap());
    }
    lat.sort();
    call.sort();
    let elapsed = start.elapsed();
    println!(
        "wake_account: {users} accounts at {rate}/s by {senders} senders ({}), {:.2} s; call p50 {:.2} ms, p99 {:.2} ms; call -> stand-in p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        if db.starts_with("sqlite") {
            "SQLite file"
        } else {
            "PostgreSQL"
        },
        elapsed.as_secs_f64(),
        percentile(&call, 0.50).as_secs_f64() * 1e3,
        percentile(&call, 0.99).as_secs_f64() * 1e3,
        percentile(&lat, 0.50).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().unwrap().as_secs_f64() * 1e3
    );
    shutdown.cancel();
    workers.await.unwrap();
}
