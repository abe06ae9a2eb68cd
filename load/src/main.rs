//! The `herald-load` command: `run` measures one server phase by phase and writes a JSON report;
//! `table` turns several reports into the comparison table; `abuse` runs the abuse run (see
//! `herald_load::abuse`).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

mod abuse_cli;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};

use herald_load::client::{Connector, Mechanism, ScramCache, TlsMode};
use herald_load::phase::{self, Target, archive::ArchivePlan, chat::ChatPlan, pep::PepPlan};
use herald_load::report::{RunReport, comparison_table};
use herald_load::stats::{ProcessMemory, own_cpu_seconds};

#[derive(Parser)]
#[command(about = "XMPP load generator: the same phases against Herald, Prosody or ejabberd")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Mech {
    Best,
    #[value(name = "scram-sha-256")]
    ScramSha256,
    #[value(name = "scram-sha-1")]
    ScramSha1,
    Plain,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PhaseName {
    Accounts,
    Idle,
    Login,
    Chat,
    Push,
    Archive,
    /// Sessions left hibernating for XEP-0198 resumption (run it last).
    Hibernated,
    /// PEP publish-to-notification latency, then a caps login burst (reports `pep` and `pep-caps`).
    Pep,
    /// Chatting pairs across two servers (`--peer-*`): every message crosses server-to-server.
    Federation,
}

#[derive(Subcommand)]
enum Command {
    /// Run the phases against one server and print (and optionally save) the JSON report.
    Run(Box<RunArgs>),
    /// The abuse run: normal users chat while unauthenticated connections, held TLS handshakes
    /// and a revoked-token relay flood abuse the server; prints a table, writes JSON with --json.
    Abuse(Box<abuse_cli::AbuseArgs>),
    /// Print the comparison table of saved reports (Herald runs are those labelled herald*).
    Table {
        /// JSON reports written by `run --json`.
        reports: Vec<PathBuf>,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Label of the server in reports (herald-sqlite, prosody, ...).
    #[arg(long)]
    name: String,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 5222)]
    port: u16,
    /// XMPP domain served.
    #[arg(long, default_value = "localhost")]
    domain: String,
    /// Direct TLS (XEP-0368) instead of STARTTLS.
    #[arg(long)]
    direct_tls: bool,
    /// Resume TLS sessions (tickets / session ids) across connections, as reconnecting clients do.
    /// Off by default so every login is a full handshake on every server: a server that issues
    /// tickets would otherwise do less work per login than one that does not.
    #[arg(long)]
    tls_resumption: bool,
    /// Verify the server's TLS handshake signature. Off by default: any certificate is trusted,
    /// so the check proves nothing, and it is the client's largest cost per login, taken from
    /// the server being measured on the same cores.
    #[arg(long)]
    check_tls_signatures: bool,
    /// Server process id, for memory from /proc/<pid>/status.
    #[arg(long)]
    pid: Option<u32>,
    #[arg(long, value_enum, default_value = "best")]
    mechanism: Mech,
    /// Localpart prefix; users are {prefix}0, {prefix}1, ...
    #[arg(long, default_value = "load")]
    prefix: String,
    #[arg(long, default_value = "load-password")]
    password: String,
    /// Phases to run, in this order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "accounts,idle,login,chat,push"
    )]
    phases: Vec<PhaseName>,
    /// Idle sessions (and accounts created).
    #[arg(long, default_value_t = 10_000)]
    sessions: usize,
    /// Connections in flight while creating accounts and idle sessions.
    #[arg(long, default_value_t = 100)]
    concurrency: usize,
    /// Seconds to hold the idle sessions before sampling memory.
    #[arg(long, default_value_t = 5)]
    idle_hold_secs: u64,
    /// Logins in the storm.
    #[arg(long, default_value_t = 5_000)]
    logins: usize,
    /// Logins in flight during the storm.
    #[arg(long, default_value_t = 100)]
    login_concurrency: usize,
    /// Online chat users (pairs).
    #[arg(long, default_value_t = 1_000)]
    chat_users: usize,
    #[arg(long, default_value_t = 500.0)]
    chat_start_rate: f64,
    #[arg(long, default_value_t = 64_000.0)]
    chat_max_rate: f64,
    /// Chat and federation phases: the steps' rates in order (comma-separated, e.g.
    /// 8000,10000,12000), instead of doubling from --chat-start-rate to --chat-max-rate.
    #[arg(long, value_delimiter = ',')]
    chat_rates: Vec<f64>,
    #[arg(long, default_value_t = 5)]
    chat_step_secs: u64,
    /// A chat step fails when its p99 delivery latency exceeds this.
    #[arg(long, default_value_t = 500)]
    chat_max_p99_ms: u64,
    /// Upper bound of each of the account, idle and login phases, seconds.
    #[arg(long, default_value_t = 120)]
    phase_deadline_secs: u64,
    /// Spread connections over this many source addresses 127.0.0.2... (0: kernel's choice).
    #[arg(long, default_value_t = 16)]
    source_ips: usize,
    /// Per-step timeout waiting for the server, seconds.
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
    /// Herald's relay API base URL (http://127.0.0.1:PORT); without it the push phase is skipped.
    #[arg(long)]
    relay_url: Option<String>,
    /// Offline users with a push device (the last accounts, {prefix}{sessions-N}..).
    #[arg(long, default_value_t = 1_000)]
    push_users: usize,
    /// Push phase: write one line per push (device, sender, send time and latency) to this file, to
    /// see where in the burst the slow pushes are.
    #[arg(long)]
    push_trace: Option<std::path::PathBuf>,
    /// Archive phase: messages in the owner's archive ({prefix}mam0), exchanged with the contacts.
    #[arg(long, default_value_t = 20_000)]
    archive_messages: usize,
    /// Archive phase: contacts ({prefix}mam1..); queries filter with the first one.
    #[arg(long, default_value_t = 6)]
    archive_contacts: usize,
    /// Archive phase: resources the owner sends from (each server caps one session's stanza rate).
    #[arg(long, default_value_t = 3)]
    archive_owner_resources: usize,
    /// Archive phase: fill messages sent per second, over all senders.
    #[arg(long, default_value_t = 600.0)]
    archive_fill_rate: f64,
    /// Archive phase: fill messages sent but not yet delivered, at most.
    #[arg(long, default_value_t = 200)]
    archive_window: usize,
    /// Archive phase: timed queries of each of the six kinds.
    #[arg(long, default_value_t = 200)]
    archive_iterations: usize,
    /// Archive phase: queries started per second at most (one session).
    #[arg(long, default_value_t = 100.0)]
    archive_query_rate: f64,
    /// Archive phase: RSM page size.
    #[arg(long, default_value_t = 50)]
    archive_page: usize,
    /// PEP phase: contacts ({prefix}pep1..) receiving the publisher's ({prefix}pep0) notifications.
    #[arg(long, default_value_t = 100)]
    pep_contacts: usize,
    /// PEP phase: measured publishes.
    #[arg(long, default_value_t = 200)]
    pep_publishes: usize,
    /// PEP phase: publishes sent per second (one session; Herald limits a session to 200 stanzas/s).
    #[arg(long, default_value_t = 50.0)]
    pep_rate: f64,
    /// PEP phase: publishes sent but not yet answered, at most (a server falling behind slows the
    /// publisher down rather than queueing without bound).
    #[arg(long, default_value_t = 8)]
    pep_window: usize,
    /// PEP phase: contacts logging in at once with the same new caps in the burst.
    #[arg(long, default_value_t = 100)]
    pep_burst: usize,
    /// Federation phase: the second server's address (its users chat with this server's).
    #[arg(long)]
    peer_host: Option<String>,
    #[arg(long, default_value_t = 5222)]
    peer_port: u16,
    /// Federation phase: the second server's XMPP domain.
    #[arg(long)]
    peer_domain: Option<String>,
    /// Federation phase: the second server's process id (its CPU is added to the server's).
    #[arg(long)]
    peer_pid: Option<u32>,
    /// Federation phase: users chatting, half on each server ({prefix}0.. on both).
    #[arg(long, default_value_t = 200)]
    federation_users: usize,
    /// Also write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run(args) => run(*args).await,
        Command::Abuse(args) => abuse_cli::abuse(*args).await,
        Command::Table { reports } => {
            let mut runs = Vec::new();
            for path in reports {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                runs.push(
                    serde_json::from_str::<RunReport>(&text)
                        .with_context(|| format!("parsing {}", path.display()))?,
                );
            }
            print!("{}", comparison_table(&runs));
            Ok(())
        }
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let addr: SocketAddr = (args.host.as_str(), args.port)
        .to_socket_addrs()?
        .next()
        .context("host did not resolve")?;
    let mode = if args.direct_tls {
        TlsMode::Direct
    } else {
        TlsMode::StartTls
    };
    let mut connector = Connector::new(addr, &args.domain, mode)?
        .with_tls(args.tls_resumption, args.check_tls_signatures)?;
    connector.timeout = Duration::from_secs(args.timeout_secs);
    let source_ips = if addr.ip().is_loopback() && addr.is_ipv4() {
        phase::loopback_sources(args.source_ips)
    } else {
        Vec::new()
    };
    let mechanism = match args.mechanism {
        Mech::Best => Mechanism::Best,
        Mech::ScramSha256 => Mechanism::ScramSha256,
        Mech::ScramSha1 => Mechanism::ScramSha1,
        Mech::Plain => Mechanism::Plain,
    };
    let target = Target {
        connector,
        prefix: args.prefix.clone(),
        password: args.password.clone(),
        mechanism,
        cache: ScramCache::default(),
        source_ips,
        memory: args.pid.map(ProcessMemory::new),
    };
    if args.phases.contains(&PhaseName::Chat) && args.chat_users > args.sessions {
        bail!("--chat-users must not exceed --sessions (accounts are {{prefix}}0..sessions)");
    }
    let deadline = Duration::from_secs(args.phase_deadline_secs);
    let peer = if args.phases.contains(&PhaseName::Federation) {
        Some(peer_target(&args, &target)?)
    } else {
        None
    };
    let mut report = RunReport {
        server: args.name.clone(),
        address: addr.to_string(),
        domain: args.domain.clone(),
        mechanism: format!("{mechanism:?}"),
        phases: Vec::new(),
        memory_end: None,
    };
    for name in &args.phases {
        let cpu_before = (
            servers_cpu_seconds(&target, peer.as_ref()),
            own_cpu_seconds(),
        );
        let single = match name {
            PhaseName::Accounts => {
                phase::accounts::run(&target, args.sessions, args.concurrency, deadline).await
            }
            PhaseName::Idle => {
                let hold = Duration::from_secs(args.idle_hold_secs);
                phase::idle::run(&target, args.sessions, args.concurrency, deadline, hold).await
            }
            PhaseName::Login => {
                phase::login::run(
                    &target,
                    args.logins,
                    args.sessions,
                    args.login_concurrency,
                    deadline,
                )
                .await
            }
            PhaseName::Chat => {
                let plan = ChatPlan {
                    users: args.chat_users,
                    start_rate: args.chat_start_rate,
                    max_rate: args.chat_max_rate,
                    step: Duration::from_secs(args.chat_step_secs),
                    max_p99: Duration::from_millis(args.chat_max_p99_ms),
                    drain: Duration::from_secs(3),
                    login_concurrency: args.concurrency,
                    rates: args.chat_rates.clone(),
                };
                phase::chat::run(&target, &plan).await
            }
            PhaseName::Hibernated => {
                let hold = Duration::from_secs(args.idle_hold_secs);
                phase::hibernated::run(&target, args.sessions, args.concurrency, deadline, hold)
                    .await
            }
            PhaseName::Push => {
                let count = args.push_users.min(args.sessions.saturating_sub(1));
                let first = args.sessions - count;
                let wait = Duration::from_secs(args.timeout_secs);
                phase::push::run(
                    &target,
                    args.relay_url.as_deref(),
                    first,
                    count,
                    0,
                    wait,
                    args.push_trace.as_deref(),
                )
                .await
            }
            PhaseName::Archive => {
                let plan = ArchivePlan {
                    messages: args.archive_messages,
                    contacts: args.archive_contacts,
                    owner_resources: args.archive_owner_resources,
                    fill_rate: args.archive_fill_rate,
                    window: args.archive_window,
                    iterations: args.archive_iterations,
                    query_rate: args.archive_query_rate,
                    page: args.archive_page,
                    settle: Duration::from_secs(args.timeout_secs * 4),
                };
                phase::archive::run(&target, &plan).await
            }
            PhaseName::Federation => {
                let Some(peer) = peer.as_ref() else {
                    bail!("the federation phase needs --peer-host and --peer-domain");
                };
                let per_side = args.federation_users / 2;
                // Accounts on both sides (existing ones count as created).
                for side in [&target, peer] {
                    let accounts =
                        phase::accounts::run(side, per_side, args.concurrency, deadline).await;
                    if (accounts.succeeded as usize) < per_side {
                        eprintln!(
                            "[{}] federation: only {} of {per_side} accounts on {}: {}",
                            args.name,
                            accounts.succeeded,
                            side.connector.domain(),
                            accounts.note
                        );
                    }
                }
                let plan = ChatPlan {
                    users: per_side * 2,
                    start_rate: args.chat_start_rate,
                    max_rate: args.chat_max_rate,
                    step: Duration::from_secs(args.chat_step_secs),
                    max_p99: Duration::from_millis(args.chat_max_p99_ms),
                    drain: Duration::from_secs(3),
                    login_concurrency: args.concurrency,
                    rates: args.chat_rates.clone(),
                };
                phase::chat::run_federated(&target, peer, &plan).await
            }
            PhaseName::Pep => {
                let plan = PepPlan {
                    contacts: args.pep_contacts,
                    publishes: args.pep_publishes,
                    rate: args.pep_rate,
                    window: args.pep_window,
                    burst: args.pep_burst,
                    concurrency: args.concurrency,
                    wait: Duration::from_secs(args.timeout_secs),
                };
                // Two reports, each with its own CPU figures.
                for result in phase::pep::run(&target, &plan).await {
                    log_phase(&args.name, &result);
                    report.phases.push(result);
                }
                continue;
            }
        };
        let mut result = single;
        let cpu_after = (
            servers_cpu_seconds(&target, peer.as_ref()),
            own_cpu_seconds(),
        );
        result.server_cpu_s = cpu_before.0.zip(cpu_after.0).map(|(b, a)| a - b);
        result.client_cpu_s = cpu_before.1.zip(cpu_after.1).map(|(b, a)| a - b);
        log_phase(&args.name, &result);
        report.phases.push(result);
    }
    report.memory_end = target.sample_memory();
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &args.json {
        std::fs::write(path, &json).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{json}");
    Ok(())
}

/// The federation phase's second server: same users, password, mechanism and TLS settings as
/// `target`, at `--peer-host:--peer-port` serving `--peer-domain`.
fn peer_target(args: &RunArgs, target: &Target) -> anyhow::Result<Target> {
    let (Some(host), Some(domain)) = (&args.peer_host, &args.peer_domain) else {
        bail!("the federation phase needs --peer-host and --peer-domain");
    };
    let addr: SocketAddr = (host.as_str(), args.peer_port)
        .to_socket_addrs()?
        .next()
        .context("peer host did not resolve")?;
    let mode = if args.direct_tls {
        TlsMode::Direct
    } else {
        TlsMode::StartTls
    };
    let mut connector = Connector::new(addr, domain, mode)?
        .with_tls(args.tls_resumption, args.check_tls_signatures)?;
    connector.timeout = target.connector.timeout;
    Ok(Target {
        connector,
        memory: args.peer_pid.map(ProcessMemory::new),
        cache: ScramCache::default(),
        ..target.clone()
    })
}

/// CPU seconds of the server and, in the federation phase, of its peer: both carry the load.
fn servers_cpu_seconds(target: &Target, peer: Option<&Target>) -> Option<f64> {
    let own = target.server_cpu_seconds()?;
    match peer.and_then(|p| p.memory.as_ref()) {
        Some(memory) => Some(own + memory.cpu_seconds()?),
        None => Some(own),
    }
}

/// One progress line per phase on stderr.
fn log_phase(server: &str, result: &phase::PhaseReport) {
    eprintln!(
        "[{}] {}: {}/{} ok in {:.1}s ({:.1}/s) errors {} {}",
        server,
        result.name,
        result.succeeded,
        result.attempted,
        result.seconds,
        result.rate_per_s,
        result.errors.total(),
        result.note
    );
}
