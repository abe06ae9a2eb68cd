//! `TestServer`: one Herald started in-process with `herald::start` on 127.0.0.1 port 0, with its own
//! temporary data folder and database (a SQLite file there, or a fresh PostgreSQL database when the
//! backend is [`Backend::Postgres`]). It can be stopped and started again on the same data for
//! persistence tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use herald::config::{Config, RawConfig};
use herald::features::push::PushWaker;
use herald::router::Router;
use herald::{Running, Shutdown, ShutdownTrigger};
use herald_storage::testing::ScratchDatabase;
use herald_storage::{RosterItem, Storage, Subscription};

use crate::client::TestClient;
use crate::{DOMAIN, PASSWORD, TIMEOUT};

/// Where a test server keeps its data.
#[derive(Debug, Clone)]
pub enum Backend {
    /// A SQLite file in the server's data folder (the default).
    Sqlite,
    /// A database of its own, created on the PostgreSQL server at this admin URL and dropped afterwards.
    Postgres { admin_url: String },
}

impl Backend {
    /// PostgreSQL if `HERALD_TEST_POSTGRES_URL` is set. `None` means the caller should return: a `SKIPPED` line
    /// has been printed (`herald_storage::testing::postgres_url_or_skip`).
    pub fn postgres_from_env() -> Option<Backend> {
        herald_storage::testing::postgres_url_or_skip()
            .map(|admin_url| Backend::Postgres { admin_url })
    }
}

/// Wraps the storage the server is given (not the test's own handle), e.g. to inject failures.
pub type StorageWrapper = Arc<dyn Fn(Storage) -> Storage + Send + Sync>;

/// Builds a [`TestServer`]: extra `HERALD_*` overrides, an optional herald.toml, a push waker, a backend.
pub struct TestServerBuilder {
    env: Vec<(String, String)>,
    toml: Option<String>,
    files: Vec<(String, String)>,
    push: Option<Arc<dyn PushWaker>>,
    backend: Backend,
    wrap_storage: Option<StorageWrapper>,
    /// The file clients trust instead of the generated certificate (a test CA), relative to the data folder.
    client_trust: Option<String>,
}

impl TestServerBuilder {
    /// Clients trust this file of the data folder (written with [`Self::file`], such as a test CA)
    /// instead of the server's generated certificate.
    pub fn client_trust(mut self, name: &str) -> Self {
        self.client_trust = Some(name.to_string());
        self
    }

    /// Writes a file into the data folder before the configuration is read (e.g. a component secret).
    pub fn file(mut self, name: &str, contents: &str) -> Self {
        self.files.push((name.to_string(), contents.to_string()));
        self
    }

    /// Adds an environment override such as `("HERALD_LIMITS__OFFLINE_QUOTA", "2")`.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// The text of a herald.toml written into the data folder and loaded. `{dir}` is replaced by the data
    /// folder's path (for secret files written there before the server starts).
    pub fn toml(mut self, text: &str) -> Self {
        self.toml = Some(text.to_string());
        self
    }

    pub fn push(mut self, waker: Arc<dyn PushWaker>) -> Self {
        self.push = Some(waker);
        self
    }

    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// Hands the server `wrap(storage)` instead of its storage (see [`crate::faulty_storage`]); the
    /// test's [`TestServer::storage`] stays the plain one, for setup and checks.
    pub fn wrap_storage(
        mut self,
        wrap: impl Fn(Storage) -> Storage + Send + Sync + 'static,
    ) -> Self {
        self.wrap_storage = Some(Arc::new(wrap));
        self
    }

    /// Creates the data folder (and database) and starts the server.
    pub async fn start(self) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let scratch = match &self.backend {
            Backend::Sqlite => None,
            Backend::Postgres { admin_url } => Some(
                ScratchDatabase::create(admin_url, "herald_blackbox")
                    .await
                    .unwrap(),
            ),
        };
        let mut pairs = vec![
            env("HERALD_SERVER__DATA_DIR", &dir.path().display().to_string()),
            env("HERALD_C2S__LISTEN", "127.0.0.1:0"),
            env("HERALD_C2S__DIRECT_TLS_LISTEN", "127.0.0.1:0"),
        ];
        if let Some(scratch) = &scratch {
            pairs.push(env("HERALD_STORAGE__URL", &scratch.url));
        }
        pairs.extend(self.env);
        for (name, contents) in &self.files {
            std::fs::write(dir.path().join(name), contents).unwrap();
        }
        let config_file = self.toml.map(|text| {
            let path = dir.path().join("herald.toml");
            let text = text.replace("{dir}", &dir.path().display().to_string());
            std::fs::write(&path, text).unwrap();
            path
        });
        let config =
            Config::resolve(RawConfig::load(config_file.as_deref(), pairs).unwrap()).unwrap();
        let storage = Storage::connect_with(&config.storage_url, config.storage_options())
            .await
            .unwrap();
        let expected = if scratch.is_some() {
            "postgres"
        } else {
            "sqlite"
        };
        assert_eq!(storage.backend, expected, "the backend asked for");
        let client_trust = self.client_trust.map(|name| dir.path().join(name));
        let mut server = TestServer {
            client_trust,
            dir,
            config,
            storage,
            push: self.push,
            live: None,
            scratch,
            wrap_storage: self.wrap_storage,
        };
        server.start_again().await;
        server
    }
}

fn env(key: &str, value: &str) -> (String, String) {
    (key.to_string(), value.to_string())
}

/// A running (or stopped) in-process server.
pub struct TestServer {
    dir: tempfile::TempDir,
    config: Config,
    /// A handle on the server's database, for test setup.
    pub storage: Storage,
    push: Option<Arc<dyn PushWaker>>,
    live: Option<(Running, ShutdownTrigger)>,
    scratch: Option<ScratchDatabase>,
    wrap_storage: Option<StorageWrapper>,
    client_trust: Option<PathBuf>,
}

impl TestServer {
    /// A default server on SQLite.
    pub async fn start() -> TestServer {
        Self::builder().start().await
    }

    pub fn builder() -> TestServerBuilder {
        TestServerBuilder {
            env: Vec::new(),
            toml: None,
            files: Vec::new(),
            push: None,
            backend: Backend::Sqlite,
            wrap_storage: None,
            client_trust: None,
        }
    }

    fn running(&self) -> &Running {
        &self.live.as_ref().expect("server is stopped").0
    }

    pub fn c2s_address(&self) -> SocketAddr {
        self.running().c2s_address
    }

    pub fn direct_tls_address(&self) -> SocketAddr {
        self.running()
            .direct_tls_address
            .expect("direct TLS is configured")
    }

    pub fn component_address(&self) -> SocketAddr {
        self.running()
            .component_address
            .expect("[component] listen is configured")
    }

    /// The hosted relay's HTTP API (plain HTTP unless `[relay] tls`).
    pub fn relay_address(&self) -> SocketAddr {
        self.running()
            .relay_address
            .expect("[relay] enabled is configured")
    }

    /// The hosted relay (`[relay] enabled`).
    pub fn relay(&self) -> &herald_relay::Relay {
        self.running()
            .relay
            .as_ref()
            .expect("[relay] enabled is configured")
    }

    pub fn router(&self) -> &Arc<Router> {
        &self.running().router
    }

    /// The XEP-0357 publisher.
    pub fn push_notifications(
        &self,
    ) -> &Arc<herald::features::push_notifications::PushNotifications> {
        &self.running().push_notifications
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// What clients trust: the self-signed certificate the server generated for its domain, or the file
    /// named with [`TestServerBuilder::client_trust`].
    pub fn certificate(&self) -> PathBuf {
        match &self.client_trust {
            Some(path) => path.clone(),
            None => self
                .data_dir()
                .join("certs")
                .join(format!("{}.crt", self.domain())),
        }
    }

    /// The server's (first) domain: [`DOMAIN`] unless configured otherwise.
    pub fn domain(&self) -> &str {
        self.config.domains.first().map_or(DOMAIN, String::as_str)
    }

    /// The s2s listeners and federation state; panics without `[s2s]`.
    pub fn s2s(&self) -> &herald::s2s::S2sAddresses {
        self.running().s2s.as_ref().expect("[s2s] is configured")
    }

    /// (inbound EXTERNAL, inbound dialback, outbound EXTERNAL, outbound dialback) authentications so far.
    pub fn s2s_authentications(&self) -> (u64, u64, u64, u64) {
        self.s2s().federation.authentications.snapshot()
    }

    /// The s2s listener (STARTTLS), when `[s2s]` is configured.
    pub fn s2s_address(&self) -> SocketAddr {
        self.s2s().starttls
    }

    /// Stops the server: every session ends with `<system-shutdown/>` and the listeners close.
    pub async fn stop(&mut self) {
        if let Some((running, trigger)) = self.live.take() {
            trigger.trigger();
            tokio::time::timeout(TIMEOUT, running.wait())
                .await
                .expect("server stops in time");
        }
    }

    /// Starts a stopped server again on the same data folder and database (new ports).
    pub async fn restart(&mut self) {
        self.stop().await;
        self.storage =
            Storage::connect_with(&self.config.storage_url, self.config.storage_options())
                .await
                .unwrap();
        self.start_again().await;
    }

    async fn start_again(&mut self) {
        let (trigger, shutdown) = Shutdown::new();
        let storage = match &self.wrap_storage {
            Some(wrap) => wrap(self.storage.clone()),
            None => self.storage.clone(),
        };
        let running = herald::start(self.config.clone(), storage, self.push.clone(), shutdown)
            .await
            .unwrap();
        self.live = Some((running, trigger));
    }

    /// Creates `name@localhost` with [`PASSWORD`].
    pub async fn add_user(&self, name: &str) {
        self.add_user_with_password(name, PASSWORD).await;
    }

    pub async fn add_user_with_password(&self, name: &str, password: &str) {
        let jid = herald::accounts::parse_account(&format!("{name}@{}", self.domain())).unwrap();
        herald::accounts::create(&self.storage, &jid, password)
            .await
            .unwrap();
    }

    /// Test setup: makes `a` and `b` contacts with a mutual (`both`) subscription, straight in storage.
    pub async fn befriend(&self, a: &str, b: &str) {
        for (owner, contact) in [(a, b), (b, a)] {
            let domain = self.domain();
            let item = RosterItem {
                contact: format!("{contact}@{domain}"),
                subscription: Subscription::Both,
                in_roster: true,
                ..RosterItem::default()
            };
            self.storage
                .rosters
                .upsert(&format!("{owner}@{domain}"), &item)
                .await
                .unwrap();
        }
    }

    /// A client logged in as `user` (over STARTTLS, PLAIN, [`PASSWORD`]) with `resource` bound, no presence.
    pub async fn login(&self, user: &str, resource: &str) -> TestClient {
        let mut client = TestClient::connect_starttls(self).await;
        client.auth_plain(user, PASSWORD).await.unwrap();
        client.bind(Some(resource)).await;
        client
    }

    /// A new connection logged in as `user` that resumes the hibernated session `previd` of `resource`
    /// (XEP-0198 section 5), having handled `h` of its stanzas; returns once `<resumed/>` arrived.
    pub async fn resume(&self, user: &str, resource: &str, previd: &str, h: u32) -> TestClient {
        let mut client = TestClient::connect_starttls(self).await;
        client.auth_plain(user, PASSWORD).await.unwrap();
        client.jid = format!("{user}@{}/{resource}", self.domain());
        client
            .send(&format!(
                "<resume xmlns='urn:xmpp:sm:3' previd='{previd}' h='{h}'/>"
            ))
            .await;
        client
            .expect("<resumed/>", |e| e.is("resumed", herald::xmpp::ns::SM))
            .await;
        client
    }

    /// Like [`Self::login`], then requests the roster (so it gets roster pushes) and sends initial presence.
    pub async fn online(&self, user: &str, resource: &str) -> TestClient {
        let mut client = self.login(user, resource).await;
        client.roster_get().await;
        client.available(None).await;
        client
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some((_, trigger)) = &self.live {
            trigger.trigger();
        }
        if let Some(scratch) = self.scratch.take() {
            // Drop runs inside the test's runtime; the database is dropped from a thread of its own.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let name = scratch.name().to_string();
                if let Err(e) = runtime.block_on(scratch.drop_database()) {
                    eprintln!("could not drop scratch database {name}: {e}");
                }
            })
            .join();
        }
    }
}
