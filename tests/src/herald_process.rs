//! `HeraldProcess`: the `herald` binary run as a process of its own, for what an in-process
//! [`crate::TestServer`] cannot show: a server killed with SIGKILL, which runs no shutdown code at all.
//!
//! The binary is the workspace's own build: `HERALD_BIN` if set, otherwise `herald` beside this test's
//! executable (`target/debug/herald`, which `cargo test --workspace` builds with the server crate's
//! tests). It is configured by `HERALD_*` variables (listeners on port 0, data in a temporary folder),
//! and the addresses it bound are read from its "herald is serving" log line; every later log line is
//! kept, so a test can await one (a session hibernating, say) instead of sleeping.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::client::TestClient;
use crate::{DOMAIN, PASSWORD, TIMEOUT};

/// How a `herald` process is started: the same every time, so it can be started again on its data.
#[derive(Debug, Clone)]
pub struct HeraldCommand {
    binary: PathBuf,
    data_dir: PathBuf,
    env: Vec<(String, String)>,
}

impl HeraldCommand {
    /// `herald` with its data (SQLite file, certificates) in `data_dir` and `storage_url` as its
    /// database (`None`: SQLite in `data_dir`), listening for clients on loopback port 0.
    pub fn new(data_dir: &Path, storage_url: Option<&str>) -> HeraldCommand {
        let mut env = vec![
            var("HERALD_SERVER__DATA_DIR", &data_dir.display().to_string()),
            var("HERALD_C2S__LISTEN", "127.0.0.1:0"),
            var("HERALD_C2S__DIRECT_TLS_LISTEN", "127.0.0.1:0"),
            // Plain log lines (no colour codes) with the session events the tests wait for.
            var("NO_COLOR", "1"),
            var("RUST_LOG", "info,herald::c2s::session=debug"),
        ];
        if let Some(url) = storage_url {
            env.push(var("HERALD_STORAGE__URL", url));
        }
        HeraldCommand {
            binary: binary(),
            data_dir: data_dir.to_path_buf(),
            env,
        }
    }

    /// Adds a `HERALD_*` (or any) environment variable.
    pub fn env(mut self, key: &str, value: &str) -> HeraldCommand {
        self.env.push(var(key, value));
        self
    }

    /// Writes `text` to `herald.toml` in the data folder and runs with it (`{dir}` in it is the data
    /// folder, as in [`crate::TestServerBuilder::toml`]).
    pub fn toml(self, text: &str) -> HeraldCommand {
        let path = self.data_dir.join("herald.toml");
        let text = text.replace("{dir}", &self.data_dir.display().to_string());
        std::fs::write(&path, text).unwrap();
        let path = path.display().to_string();
        self.env("HERALD_CONFIG", &path)
    }

    /// Creates `name@localhost` with [`PASSWORD`] through `herald user add`.
    pub async fn add_user(&self, name: &str) {
        let output = self
            .command()
            .args(["user", "add", &format!("{name}@{DOMAIN}"), "--password"])
            .arg(PASSWORD)
            .output()
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "herald user add: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Starts `herald serve` and waits until it serves.
    pub async fn start(&self) -> HeraldProcess {
        let mut child = self
            .command()
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.binary.display()));
        let stderr = child.stderr.take().unwrap();
        let (lines_tx, mut lines) = mpsc::unbounded_channel();
        // Drains the log for as long as the process lives, so it never blocks on a full pipe.
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut seen = Vec::new();
        let serving = loop {
            match tokio::time::timeout(TIMEOUT, lines.recv()).await {
                Ok(Some(line)) if line.contains("herald is serving") => break line,
                Ok(Some(line)) => seen.push(line),
                Ok(None) => panic!("herald exited before serving:\n{}", seen.join("\n")),
                Err(_) => panic!("herald did not serve in time:\n{}", seen.join("\n")),
            }
        };
        let c2s_address = field(&serving, "c2s=")
            .and_then(|address| address.parse().ok())
            .unwrap_or_else(|| panic!("no c2s address in {serving}"));
        HeraldProcess {
            child,
            c2s_address,
            certificate: self.data_dir.join("certs").join(format!("{DOMAIN}.crt")),
            lines,
        }
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        command.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }
}

/// A running `herald` process.
pub struct HeraldProcess {
    child: Child,
    /// Where it accepts client connections (STARTTLS).
    pub c2s_address: SocketAddr,
    certificate: PathBuf,
    lines: mpsc::UnboundedReceiver<String>,
}

impl HeraldProcess {
    /// A client logged in as `user` (STARTTLS, PLAIN, [`PASSWORD`]) with `resource` bound.
    pub async fn login(&self, user: &str, resource: &str) -> TestClient {
        let mut client = TestClient::tcp_to(self.c2s_address, &self.certificate).await;
        client.open_stream().await;
        client.starttls().await;
        client.auth_plain(user, PASSWORD).await.unwrap();
        client.bind(Some(resource)).await;
        client
    }

    /// Waits for a log line containing every one of `needles`, and returns it.
    pub async fn log_line(&mut self, needles: &[&str]) -> String {
        loop {
            match tokio::time::timeout(TIMEOUT, self.lines.recv()).await {
                Ok(Some(line)) if needles.iter().all(|n| line.contains(n)) => return line,
                Ok(Some(_)) => {}
                Ok(None) => panic!("herald exited; no log line with {needles:?}"),
                Err(_) => panic!("no log line with {needles:?} in time"),
            }
        }
    }

    /// Kills the process with SIGKILL (no shutdown code runs) and waits until it is gone.
    pub async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }
}

fn var(key: &str, value: &str) -> (String, String) {
    (key.to_string(), value.to_string())
}

/// The value of `name` (such as `c2s=`) in a log line of `key=value` fields.
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(name)? + name.len();
    line[start..].split_whitespace().next()
}

/// The `herald` binary to run (see the module documentation).
fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("HERALD_BIN") {
        return PathBuf::from(path);
    }
    // target/debug/deps/<test> -> target/debug/herald
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("herald"))
        .unwrap();
    assert!(
        path.is_file(),
        "{} is missing: build it first (cargo build --bin herald; cargo test --workspace builds it) or \
         set HERALD_BIN",
        path.display()
    );
    path
}
