//! `herald-load abuse`: the command-line face of `herald_load::abuse`, loopback only.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::ValueEnum;

use herald_load::abuse::{self, AbusePlan, TlsHoldMode, unauth::PayloadShape};
use herald_load::client::{Connector, Mechanism, ScramCache, TlsMode};
use herald_load::phase::{self, Target};
use herald_load::stats::ProcessMemory;

#[derive(Clone, Copy, ValueEnum)]
pub enum HoldMode {
    Hello,
    Silent,
    Mixed,
}

#[derive(clap::Args)]
pub struct AbuseArgs {
    /// Label of the server in the report.
    #[arg(long, default_value = "herald")]
    name: String,
    /// Must be a loopback address: the run is loopback only.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// STARTTLS port: normal users and the unauthenticated connections.
    #[arg(long, default_value_t = 5222)]
    port: u16,
    /// Direct-TLS port for the held handshakes (0: none).
    #[arg(long, default_value_t = 5223)]
    direct_tls_port: u16,
    #[arg(long, default_value = "localhost")]
    domain: String,
    /// Relay API base URL (http://127.0.0.1:PORT); without it there is no flood.
    #[arg(long)]
    relay_url: Option<String>,
    /// Server process id, for VmRSS / CPU from /proc/<pid>; without it no memory figures or guard.
    #[arg(long)]
    pid: Option<u32>,
    /// Localpart prefix; normal users are {prefix}0..chat-users, the relay account {prefix}{chat-users}.
    #[arg(long, default_value = "abuse")]
    prefix: String,
    #[arg(long, default_value = "load-password")]
    password: String,
    /// Length of the run, seconds.
    #[arg(long, default_value_t = 60)]
    duration_secs: u64,
    /// Normal users chatting in pairs.
    #[arg(long, default_value_t = 100)]
    chat_users: usize,
    /// Each normal user sends a message every this many milliseconds.
    #[arg(long, default_value_t = 150)]
    chat_interval_ms: u64,
    /// A fresh login of a normal user every this many milliseconds (0: none).
    #[arg(long, default_value_t = 1000)]
    login_probe_ms: u64,
    /// Unauthenticated connections sending the worst-case stanza.
    #[arg(long, default_value_t = 2000)]
    unauth_connections: usize,
    /// Extra attributes on their stream header.
    #[arg(long, default_value_t = 4000)]
    header_attributes: usize,
    /// Size of their unfinished <iq> (start tag plus empty children), bytes.
    #[arg(long, default_value_t = 240_000)]
    stanza_bytes: usize,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,
    /// Loopback source addresses for the abusive connections (after the normal users' ones).
    #[arg(long, default_value_t = 249)]
    abuse_source_ips: usize,
    /// Loopback source addresses for the normal users (127.0.0.2, ...).
    #[arg(long, default_value_t = 4)]
    source_ips: usize,
    /// Connections holding a TLS handshake open on the direct-TLS port.
    #[arg(long, default_value_t = 200)]
    tls_holds: usize,
    #[arg(long, value_enum, default_value = "mixed")]
    tls_hold_mode: HoldMode,
    /// Relay posts per second with the revoked token.
    #[arg(long, default_value_t = 1000.0)]
    flood_rate: f64,
    /// Keep-alive connections the flood is spread over.
    #[arg(long, default_value_t = 8)]
    flood_connections: usize,
    /// Stop the run when the server's VmRSS passes this many MiB.
    #[arg(long, default_value_t = 4096)]
    max_server_rss_mib: u64,
    /// Per-wait timeout for the normal users, seconds.
    #[arg(long, default_value_t = 10)]
    timeout_secs: u64,
    /// Also write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
}

pub async fn abuse(args: AbuseArgs) -> anyhow::Result<()> {
    let addr: SocketAddr = (args.host.as_str(), args.port)
        .to_socket_addrs()?
        .next()
        .context("host did not resolve")?;
    if !(addr.ip().is_loopback() && addr.is_ipv4()) {
        bail!("the abuse run is for IPv4 loopback only (127.0.0.0/8), not {addr}");
    }
    if let Some(url) = &args.relay_url {
        let host = url
            .strip_prefix("http://")
            .and_then(|r| r.split(['/', ':']).next())
            .unwrap_or_default();
        if !host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()) {
            bail!("--relay-url must be http://127.x.x.x:PORT (loopback only), not {url}");
        }
    }
    if args.chat_users < 2 {
        bail!("--chat-users must be at least 2 (they chat in pairs)");
    }
    let mut connector =
        Connector::new(addr, &args.domain, TlsMode::StartTls)?.with_tls(false, false)?;
    connector.timeout = Duration::from_secs(args.timeout_secs);
    let all_sources = phase::loopback_sources(args.source_ips + args.abuse_source_ips);
    let (normal_sources, abuse_sources) = all_sources.split_at(args.source_ips);
    let target = Target {
        connector,
        prefix: args.prefix.clone(),
        password: args.password.clone(),
        mechanism: Mechanism::Best,
        cache: ScramCache::default(),
        source_ips: normal_sources.to_vec(),
        memory: args.pid.map(ProcessMemory::new),
    };
    let plan = AbusePlan {
        target,
        server_name: args.name.clone(),
        duration: Duration::from_secs(args.duration_secs),
        chat_users: args.chat_users,
        chat_interval: Duration::from_millis(args.chat_interval_ms.max(1)),
        login_probe_interval: (args.login_probe_ms > 0)
            .then(|| Duration::from_millis(args.login_probe_ms)),
        unauth_connections: args.unauth_connections,
        unauth_address: addr,
        payload: PayloadShape {
            header_attributes: args.header_attributes,
            stanza_bytes: args.stanza_bytes,
        },
        connect_concurrency: args.connect_concurrency,
        abuse_sources: abuse_sources.to_vec(),
        tls_holds: args.tls_holds,
        direct_tls_address: (args.direct_tls_port != 0)
            .then(|| SocketAddr::new(addr.ip(), args.direct_tls_port)),
        tls_hold_mode: match args.tls_hold_mode {
            HoldMode::Hello => TlsHoldMode::Hello,
            HoldMode::Silent => TlsHoldMode::Silent,
            HoldMode::Mixed => TlsHoldMode::Mixed,
        },
        relay_url: args.relay_url.clone(),
        relay_user: args.chat_users,
        flood_rate: args.flood_rate,
        flood_connections: args.flood_connections,
        max_server_rss_kib: args.max_server_rss_mib * 1024,
        sample_interval: Duration::from_millis(250),
        drain: Duration::from_secs(3),
    };
    let report = abuse::run(&plan).await;
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    print!("{}", abuse::table::render(&report));
    Ok(())
}
