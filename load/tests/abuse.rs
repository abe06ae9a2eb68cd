//! The abuse run at a tiny scale against a Herald started in-process on 127.0.0.1 port 0 (SQLite in
//! a temporary folder, self-signed certificate, relay enabled): it must finish by itself within its
//! bound and account for every connection and post it made.

#![allow(clippy::unwrap_used)] // test setup: a failed step should panic with its value

use std::time::Duration;

use herald::config::{Config, RawConfig};
use herald::{Shutdown, accounts};
use herald_load::abuse::{self, AbusePlan, TlsHoldMode, unauth::PayloadShape};
use herald_load::client::{Connector, Mechanism, ScramCache, TlsMode};
use herald_load::phase::{Target, loopback_sources};
use herald_load::stats::ProcessMemory;
use herald_storage::Storage;

const PASSWORD: &str = "abuse-test-password";
const CHAT_USERS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_abuse_run_finishes_and_counts_everything() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("HERALD_SERVER__DATA_DIR", dir.path().display().to_string()),
        ("HERALD_C2S__LISTEN", "127.0.0.1:0".into()),
        ("HERALD_C2S__DIRECT_TLS_LISTEN", "127.0.0.1:0".into()),
        ("HERALD_RELAY__ENABLED", "true".into()),
        ("HERALD_RELAY__LISTEN", "127.0.0.1:0".into()),
    ]
    .map(|(k, v)| (k.to_owned(), v));
    let config = Config::resolve(RawConfig::load(None, env).unwrap()).unwrap();
    let storage = Storage::connect(&config.storage_url).await.unwrap();
    for i in 0..=CHAT_USERS {
        let jid = accounts::parse_account(&format!("abuse{i}@localhost")).unwrap();
        accounts::create(&storage, &jid, PASSWORD).await.unwrap();
    }
    let (trigger, shutdown) = Shutdown::new();
    let running = herald::start(config, storage, None, shutdown)
        .await
        .unwrap();

    let mut connector =
        Connector::new(running.c2s_address, "localhost", TlsMode::StartTls).unwrap();
    connector.timeout = Duration::from_secs(10);
    let sources = loopback_sources(12);
    let plan = AbusePlan {
        target: Target {
            connector,
            prefix: "abuse".into(),
            password: PASSWORD.into(),
            mechanism: Mechanism::Best,
            cache: ScramCache::default(),
            source_ips: sources[..2].to_vec(),
            // The server runs in this process: its memory is this process's.
            memory: Some(ProcessMemory::new(std::process::id())),
        },
        server_name: "herald-in-process".into(),
        duration: Duration::from_secs(3),
        chat_users: CHAT_USERS,
        chat_interval: Duration::from_millis(200),
        login_probe_interval: Some(Duration::from_millis(1000)),
        unauth_connections: 20,
        unauth_address: running.c2s_address,
        payload: PayloadShape {
            header_attributes: 50,
            stanza_bytes: 20_000,
        },
        connect_concurrency: 10,
        abuse_sources: sources[2..].to_vec(),
        tls_holds: 6,
        direct_tls_address: running.direct_tls_address,
        tls_hold_mode: TlsHoldMode::Mixed,
        relay_url: running.relay_address.map(|a| format!("http://{a}")),
        relay_user: CHAT_USERS,
        flood_rate: 100.0,
        flood_connections: 2,
        max_server_rss_kib: 4 << 20,
        sample_interval: Duration::from_millis(100),
        drain: Duration::from_secs(1),
    };
    let report = tokio::time::timeout(Duration::from_secs(120), abuse::run(&plan))
        .await
        .expect("the run stops by itself");
    let table = abuse::table::render(&report);
    eprintln!("{table}");

    let normal = &report.normal;
    assert_eq!(normal.logged_in, CHAT_USERS as u64, "{table}");
    assert!(normal.sent > 0 && normal.received > 0, "{table}");
    assert_eq!(normal.lost, normal.sent - normal.received, "{table}");
    assert!(normal.probe_logins > 0, "{table}");

    let unauth = &report.unauth;
    assert_eq!(unauth.attempted, 20, "{table}");
    assert_eq!(
        unauth.outcomes.total(),
        20,
        "every connection's ending: {table}"
    );
    assert_eq!(unauth.children, (20_000 - 25) / 4);

    let tls = &report.tls_holds;
    assert_eq!((tls.attempted, tls.outcomes.total()), (6, 6), "{table}");
    assert_eq!(tls.hellos_sent + 3, tls.connected, "{table}");

    let flood = &report.relay_flood;
    assert!(flood.available, "{}", flood.note);
    assert!(flood.sent > 0, "{table}");
    assert_eq!(flood.answered, flood.statuses.total(), "{table}");
    assert_eq!(flood.sent, flood.answered + flood.errors.total(), "{table}");
    assert!(
        !flood.statuses.0.contains_key("202"),
        "a revoked token is never accepted: {table}"
    );

    let server = &report.server_figures;
    assert!(
        server.samples > 0 && server.rss_max_kib.is_some(),
        "{table}"
    );
    assert!(report.stopped_early.is_none(), "{table}");

    trigger.trigger();
    tokio::time::timeout(Duration::from_secs(10), running.wait())
        .await
        .expect("server stops");
}
