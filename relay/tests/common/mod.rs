//! Test harness: a relay served over real HTTP on 127.0.0.1:0 (SQLite in a temp folder), and stand-in
//! push services (axum on 127.0.0.1:0) that record every request and answer from a script.

#![allow(dead_code)]
// Test support: a failed setup step is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use herald_relay::backends::Backends;
use herald_relay::{LocalAccounts, PasswordCheck, Relay, RelayConfig, RelayError};
use herald_storage::Storage;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// One request a stand-in received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

/// A scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Hold the answer this long (a push service that hangs).
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: vec![],
            body: String::new(),
            delay: Duration::ZERO,
        }
    }
    pub fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }
    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn delayed(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }
}

#[derive(Clone)]
struct StandInState {
    tx: mpsc::UnboundedSender<Recorded>,
    script: Arc<Mutex<VecDeque<Reply>>>,
    default: Arc<Mutex<Reply>>,
}

/// A stand-in HTTP push service.
pub struct StandIn {
    pub url: String,
    pub rx: mpsc::UnboundedReceiver<Recorded>,
    script: Arc<Mutex<VecDeque<Reply>>>,
    default: Arc<Mutex<Reply>>,
    task: tokio::task::JoinHandle<()>,
}

async fn stand_in_handler(
    axum::extract::State(s): axum::extract::State<StandInState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let _ = s.tx.send(Recorded {
        method,
        path: uri.to_string(),
        headers,
        body,
        at: Instant::now(),
    });
    let reply = {
        let next = s.script.lock().unwrap().pop_front();
        next.unwrap_or_else(|| s.default.lock().unwrap().clone())
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut resp = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
    for (k, v) in reply.headers {
        resp.headers_mut().insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    resp
}

impl StandIn {
    /// Starts a stand-in answering `default` unless a scripted reply is queued.
    pub async fn start(default: Reply) -> StandIn {
        let (tx, rx) = mpsc::unbounded_channel();
        let script = Arc::new(Mutex::new(VecDeque::new()));
        let default = Arc::new(Mutex::new(default));
        let state = StandInState {
            tx,
            script: script.clone(),
            default: default.clone(),
        };
        let app = axum::Router::new()
            .fallback(stand_in_handler)
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        StandIn {
            url,
            rx,
            script,
            default,
            task,
        }
    }

    /// Queues replies for the next requests.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.script.lock().unwrap().extend(replies);
    }

    pub fn set_default(&self, reply: Reply) {
        *self.default.lock().unwrap() = reply;
    }

    /// The next request, failing the test after 20 s.
    pub async fn next(&mut self) -> Recorded {
        tokio::time::timeout(Duration::from_secs(20), self.rx.recv())
            .await
            .expect("stand-in got no request within 20 s")
            .expect("stand-in channel closed")
    }

    /// Asserts that no request arrives within `d`.
    pub async fn none_within(&mut self, d: Duration) {
        if let Ok(Some(r)) = tokio::time::timeout(d, self.rx.recv()).await {
            panic!("unexpected request to stand-in: {} {}", r.method, r.path);
        }
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Local XMPP accounts for tests: username → (password, account id).
#[derive(Default)]
pub struct TestAccounts(pub HashMap<String, String>);

#[async_trait]
impl LocalAccounts for TestAccounts {
    async fn password_check(&self, username: &str) -> Result<Box<dyn PasswordCheck>, RelayError> {
        Ok(Box::new(TestCheck {
            username: username.to_string(),
            password: self.0.get(username).cloned(),
        }))
    }
}

struct TestCheck {
    username: String,
    password: Option<String>,
}

impl PasswordCheck for TestCheck {
    fn verify(&self, password: &str) -> Option<String> {
        (self.password.as_deref() == Some(password)).then(|| self.username.clone())
    }
}

/// A relay served on 127.0.0.1:0.
pub struct Harness {
    pub relay: Relay,
    pub base: String,
    pub http: reqwest::Client,
    pub shutdown: CancellationToken,
    pub workers: Option<tokio::task::JoinHandle<()>>,
    server: tokio::task::JoinHandle<()>,
}

/// A config for tests: plain http allowed, small retry delays.
pub fn test_config() -> RelayConfig {
    RelayConfig {
        enabled: true,
        allow_plain_http: true,
        // The stand-ins listen on loopback, which endpoints may not reach by default (SSRF).
        allowed_endpoint_networks: vec!["127.0.0.0/8".into(), "::1".into()],
        retry_base_ms: 200,
        retry_max_ms: 2_000,
        request_timeout_ms: 5_000,
        collapse_window_ms: 0,
        pubsub_jid: "push.example.org".into(),
        ..RelayConfig::default()
    }
}

impl Harness {
    /// Starts a relay on `db_url` (workers only when `workers`), with `edit` applied to the config.
    pub async fn start(
        db_url: &str,
        local: Arc<dyn LocalAccounts>,
        workers: bool,
        edit: impl FnOnce(&mut RelayConfig),
    ) -> Harness {
        Harness::start_with(db_url, local, workers, edit, |_| {}).await
    }

    /// Like [`Harness::start`], letting the test replace backends (mock APNs) after they are built.
    pub async fn start_with(
        db_url: &str,
        local: Arc<dyn LocalAccounts>,
        workers: bool,
        edit: impl FnOnce(&mut RelayConfig),
        backends: impl FnOnce(&mut Backends),
    ) -> Harness {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let mut config = test_config();
        config.public_url = base.clone();
        edit(&mut config);
        let storage = Storage::connect(db_url).await.unwrap();
        let settings = config.resolve().unwrap();
        let mut built = Backends::new(&settings).unwrap();
        backends(&mut built);
        let relay = Relay::with_backends(storage, settings, local, built);
        let app = relay
            .router()
            .into_make_service_with_connect_info::<SocketAddr>();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        let shutdown = CancellationToken::new();
        let workers = workers.then(|| relay.spawn_workers(shutdown.clone()));
        Harness {
            relay,
            base,
            http: reqwest::Client::new(),
            shutdown,
            workers,
            server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Creates a relay-only account; returns its API key.
    pub async fn account(&self, username: &str) -> String {
        self.account_with_password(username, "pw-123456").await
    }

    /// Creates (or, for a local XMPP account, logs in to) the account; returns its API key.
    pub async fn account_with_password(&self, username: &str, password: &str) -> String {
        let r = self
            .http
            .post(self.url("/api/v1/accounts/"))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        v["token"].as_str().unwrap().to_string()
    }

    /// Registers a device; returns its id.
    pub async fn device(&self, key: &str, kind: &str, body: Value) -> String {
        let r = self
            .http
            .post(self.url(&format!("/api/v1/device/{kind}/")))
            .header("Authorization", format!("Token {key}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, 201, "{v}");
        v["id"].as_str().unwrap().to_string()
    }

    /// Creates a whitelist token; returns the secret.
    pub async fn token(&self, key: &str, body: Value) -> String {
        let r = self
            .http
            .post(self.url("/api/v1/tokens/"))
            .header("Authorization", format!("Token {key}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, 201, "{v}");
        v["token"].as_str().unwrap().to_string()
    }

    /// POSTs a message; returns the response.
    pub async fn post_message(&self, token: &str, priority: &str) -> reqwest::Response {
        self.http
            .post(self.url("/api/v1/messages/"))
            .json(&json!({"token": token, "priority": priority}))
            .send()
            .await
            .unwrap()
    }

    /// POSTs a message that must be accepted; returns the message id.
    pub async fn accepted(&self, token: &str) -> String {
        let r = self.post_message(token, "high").await;
        assert_eq!(r.status(), 202);
        let v: Value = r.json().await.unwrap();
        v["id"].as_str().unwrap().to_string()
    }

    /// The audit trail of the account whose API key is `key` (`GET /api/v1/audit/`), newest first.
    pub async fn audit(&self, key: &str) -> Value {
        self.http
            .get(self.url("/api/v1/audit/"))
            .header("Authorization", format!("Token {key}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The delivery status of a message.
    pub async fn status(&self, id: &str) -> Value {
        let r = self
            .http
            .get(self.url(&format!("/api/v1/messages/{id}/")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// Waits until the message's status is `want` (polling the API; fails after 20 s).
    pub async fn wait_status(&self, id: &str, want: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.status(id).await;
            if v["status"] == want {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "message {id} never became {want}: {v}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops workers (waiting for in-flight sends) and the server.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(w) = self.workers.take() {
            w.await.unwrap();
        }
        self.server.abort();
    }

    /// Simulates a crash: aborts the workers and the server without letting anything finish.
    pub fn crash(mut self) {
        if let Some(w) = self.workers.take() {
            w.abort();
        }
        self.server.abort();
    }
}

/// A SQLite file URL in `dir`.
pub fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("relay.db").display()
    )
}

/// A federation key file in `dir` (created now) and its public key, to pin at another relay before
/// the relay owning it starts.
pub fn federation_key(dir: &tempfile::TempDir, name: &str) -> (String, String) {
    let path = dir.path().join(name);
    let key = herald_relay::federation::FederationKey::load_or_create(&path).unwrap();
    (path.display().to_string(), key.public_key())
}
