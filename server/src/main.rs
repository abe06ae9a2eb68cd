//! The `herald` command: `serve`, `check-config`, and `user add|passwd|del|list`.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use herald::config::{Config, RawConfig};
use herald::{Shutdown, accounts};

#[derive(Parser)]
#[command(
    name = "herald",
    version,
    about = "An XMPP server with a built-in push relay"
)]
struct Cli {
    /// Configuration file (default: ./herald.toml if it exists, else built-in defaults).
    #[arg(long, short, global = true, env = "HERALD_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server until SIGINT or SIGTERM.
    Serve,
    /// Check the configuration and print every problem found.
    CheckConfig,
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account. The password is read from stdin unless --password is given.
    Add {
        jid: String,
        #[arg(long)]
        password: Option<String>,
    },
    /// Change an account's password.
    Passwd {
        jid: String,
        #[arg(long)]
        password: Option<String>,
    },
    /// Delete an account and everything it owns.
    Del { jid: String },
    /// List the accounts of a domain (default: every configured domain).
    List { domain: Option<String> },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(uses_colour(
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
            std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
        ))
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    let path = cli.config.or_else(|| {
        let default = PathBuf::from("herald.toml");
        default.is_file().then_some(default)
    });
    let config = match RawConfig::load(path.as_deref(), std::env::vars()).and_then(Config::resolve)
    {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("configuration problems:");
            for problem in &errors.problems {
                eprintln!("  - {problem}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    if let Command::CheckConfig = cli.command {
        println!(
            "configuration OK: domains {:?}, storage {}",
            config.domains,
            redact(&config.storage_url)
        );
        return Ok(ExitCode::SUCCESS);
    }
    if config.storage_url.starts_with("sqlite:") {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating {}", config.data_dir.display()))?;
    }
    let storage =
        herald_storage::Storage::connect_with(&config.storage_url, config.storage_options())
            .await
            .with_context(|| format!("opening storage {}", redact(&config.storage_url)))?;
    match cli.command {
        Command::CheckConfig => unreachable!("handled above"),
        Command::Serve => {
            let (trigger, shutdown) = Shutdown::new();
            let running = herald::start(config, storage, None, shutdown).await?;
            wait_for_signal().await;
            tracing::info!("shutting down");
            trigger.trigger();
            running.wait().await;
        }
        Command::User(command) => user(command, &config, &storage).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn user(
    command: UserCommand,
    config: &Config,
    storage: &herald_storage::Storage,
) -> anyhow::Result<()> {
    match command {
        UserCommand::Add { jid, password } => {
            let jid = local_account(config, &jid)?;
            let password = password_from(password)?;
            accounts::create(storage, &jid, &password).await?;
            println!("created {jid}");
        }
        UserCommand::Passwd { jid, password } => {
            let jid = local_account(config, &jid)?;
            let password = password_from(password)?;
            accounts::set_password(storage, &jid, &password).await?;
            println!("password changed for {jid}");
        }
        UserCommand::Del { jid } => {
            let jid = local_account(config, &jid)?;
            accounts::delete(storage, &jid).await?;
            println!("deleted {jid}");
        }
        UserCommand::List { domain } => {
            let domains = match domain {
                Some(domain) => vec![domain],
                None => config.domains.clone(),
            };
            for domain in domains {
                for jid in storage.accounts.list(&domain).await? {
                    println!("{jid}");
                }
            }
        }
    }
    Ok(())
}

fn local_account(config: &Config, jid: &str) -> anyhow::Result<herald::xmpp::BareJid> {
    let jid = accounts::parse_account(jid)?;
    anyhow::ensure!(
        config.is_local_domain(jid.domain().as_str()),
        "{} is not one of the configured domains {:?}",
        jid.domain(),
        config.domains
    );
    Ok(jid)
}

fn password_from(flag: Option<String>) -> anyhow::Result<String> {
    if let Some(password) = flag {
        return Ok(password);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Whether log lines carry ANSI colour codes: only on a terminal, where they are read by a person. In a
/// file, a pipe or the journal they are noise around every field. `NO_COLOR` (https://no-color.org)
/// turns them off on a terminal too.
fn uses_colour(stderr_is_terminal: bool, no_color_set: bool) -> bool {
    stderr_is_terminal && !no_color_set
}

/// Hides a password in a database URL before printing it.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_are_coloured_only_on_a_terminal_without_no_color() {
        assert!(uses_colour(true, false));
        assert!(
            !uses_colour(false, false),
            "a file or a pipe gets no escape codes"
        );
        assert!(!uses_colour(true, true), "NO_COLOR is honoured");
        assert!(!uses_colour(false, true));
    }
}
