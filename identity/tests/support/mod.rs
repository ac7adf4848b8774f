//! Shared by the integration tests: databases, a running service, requests.

#![allow(dead_code)]

pub mod browser;
pub mod sso;

use std::sync::Arc;

use atoll_identity::config::{Argon2Params, Config, LoginLimits, Secret};
use atoll_identity::keys::KeyRing;
use atoll_identity::server::{AdminPasswordPolicy, Identity, StartError};
use atoll_identity::store::Store;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const ADMIN_EMAIL: &str = "root@atoll.test";
pub const ADMIN_PASSWORD: &str = "first-admin-Pa55word!";
/// Cluster A's credential (given as the service token).
pub const SERVICE_TOKEN: &str = "operator-service-token-0123456789abcdef";
pub const CLUSTER_A: &str = "cluster-a";
/// Cluster B's credential (in a cluster tokens directory, see
/// [`with_cluster_b`]).
pub const CLUSTER_B_TOKEN: &str = "cluster-b-operator-token-0123456789abcdef";
pub const CLUSTER_B: &str = "cluster-b";

/// The credential of a test cluster.
pub fn cluster_token(cluster: &str) -> &'static str {
    match cluster {
        CLUSTER_A => SERVICE_TOKEN,
        CLUSTER_B => CLUSTER_B_TOKEN,
        other => panic!("no credential for test cluster {other}"),
    }
}

/// `config` with a cluster tokens directory holding cluster B's
/// credential; keep the directory as long as the service runs.
pub fn with_cluster_b(mut config: Config) -> (Config, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(CLUSTER_B), format!("{CLUSTER_B_TOKEN}\n")).expect("write");
    config.cluster_tokens_dir = Some(dir.path().to_owned());
    (config, dir)
}

/// Where fresh databases come from.
#[derive(Debug)]
pub enum Databases {
    Sqlite(tempfile::TempDir),
    Postgres(atoll_testkit::pg::TestPostgres),
}

impl Databases {
    pub fn sqlite() -> Databases {
        Databases::Sqlite(tempfile::tempdir().expect("tempdir"))
    }

    pub async fn postgres() -> Databases {
        let server = tokio::task::spawn_blocking(atoll_testkit::pg::TestPostgres::start)
            .await
            .expect("PostgreSQL started");
        Databases::Postgres(server)
    }

    pub fn name(&self) -> &'static str {
        match self {
            Databases::Sqlite(_) => "sqlite",
            Databases::Postgres(_) => "postgres",
        }
    }

    /// A new, empty database.
    pub async fn fresh(&self, name: &str) -> String {
        match self {
            Databases::Sqlite(dir) => format!(
                "sqlite://{}?mode=rwc",
                dir.path().join(format!("{name}.db")).display()
            ),
            Databases::Postgres(server) => server.database_url(name),
        }
    }
}

/// Test defaults: cheap Argon2 (the benchmark measures the real cost),
/// generous login limits (the abuse tests set their own).
pub fn config(database_url: &str) -> Config {
    let mut config = Config::with_database(database_url);
    config.admin_email = ADMIN_EMAIL.into();
    config.admin_password = Some(Secret::new(ADMIN_PASSWORD));
    config.service_token = Some(Secret::new(SERVICE_TOKEN));
    config.service_cluster = CLUSTER_A.into();
    // Tests add clusters to the directory and want them seen at once.
    config.cluster_tokens_reload = std::time::Duration::ZERO;
    config.argon2 = Argon2Params {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
    config.login_limits = LoginLimits {
        attempts_per_minute: 10_000,
        ..LoginLimits::default()
    };
    config.db_max_connections = 4;
    config
}

/// A service running on a loopback port.
#[derive(Debug)]
pub struct Service {
    pub base: String,
    pub http: reqwest::Client,
    /// The running service's database and key ring, for tests that move
    /// its clock (key rotation).
    pub store: Store,
    pub keys: Arc<KeyRing>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), StartError>>>,
}

impl Service {
    pub async fn start(mut config: Config) -> Service {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        config.listen = addr;
        config.issuer = format!("http://{addr}");
        let identity = Identity::open(config, AdminPasswordPolicy::RequireConfigured)
            .await
            .expect("identity opens");
        let store = identity.store().clone();
        let keys = identity.keys().clone();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(identity.serve(listener, async {
            let _ = rx.await;
        }));
        Service {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            store,
            keys,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Graceful stop: in-flight requests finish, the audit log is flushed,
    /// the database closed.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("serve task").expect("serve ends cleanly");
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    pub async fn get(&self, path: &str, bearer: Option<&str>) -> (StatusCode, Value) {
        self.call(Method::GET, path, bearer, None).await
    }

    pub async fn post(&self, path: &str, bearer: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, bearer, Some(body)).await
    }

    pub async fn put(&self, path: &str, bearer: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, bearer, Some(body)).await
    }

    pub async fn delete(&self, path: &str, bearer: Option<&str>) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, bearer, None).await
    }

    /// Logs in; panics unless it succeeds.
    pub async fn login(&self, email: &str, password: &str) -> String {
        let (status, body) = self
            .post(
                "/api/v1/login",
                None,
                serde_json::json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "login as {email}: {body}");
        body["token"].as_str().expect("token").to_owned()
    }

    pub async fn admin(&self) -> String {
        self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await
    }

    /// Creates a user as the admin; returns the user's id.
    pub async fn sign_up(&self, admin: &str, email: &str, password: &str) -> String {
        let (status, body) = self
            .post(
                "/api/v1/admin/users",
                Some(admin),
                serde_json::json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "create {email}: {body}");
        body["id"].as_str().expect("id").to_owned()
    }

    /// Registers or updates a tenant as `cluster`'s operator, with uid
    /// `uid-<name>`.
    pub async fn register(&self, name: &str, cluster: &str, members: Value) -> (StatusCode, Value) {
        self.register_uid(name, cluster, &format!("uid-{name}"), members)
            .await
    }

    /// Registers or updates a tenant as `cluster`'s operator.
    pub async fn register_uid(
        &self,
        name: &str,
        cluster: &str,
        uid: &str,
        members: Value,
    ) -> (StatusCode, Value) {
        self.put(
            &format!("/api/v1/tenants/{name}"),
            Some(cluster_token(cluster)),
            serde_json::json!({
                "displayName": format!("{name} Corp"),
                "url": format!("https://{name}.atoll.test"),
                "phase": "Ready",
                "uid": uid,
                "members": members,
            }),
        )
        .await
    }

    /// Asks for a tenant token.
    pub async fn tenant_token(&self, bearer: &str, tenant: &str) -> (StatusCode, Value) {
        self.post(
            "/api/v1/tokens",
            Some(bearer),
            serde_json::json!({"tenant": tenant}),
        )
        .await
    }
}

#[allow(unused_imports)]
pub use atoll_testkit::eventually;

/// A scenario of the shared suite: gets a fresh database URL.
pub type Scenario = fn(String) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Runs every scenario on its own fresh database of `databases`, each in
/// its own task so that one failure does not hide the others; fails
/// listing every scenario that failed.
pub async fn run_suite(databases: &Databases, scenarios: &[(&str, Scenario)]) {
    let mut failed = Vec::new();
    for (name, scenario) in scenarios {
        let url = databases.fresh(&name.replace('-', "_")).await;
        let outcome = tokio::spawn(scenario(url)).await;
        if let Err(error) = outcome {
            eprintln!("[{}] scenario {name} FAILED: {error}", databases.name());
            failed.push(*name);
        }
    }
    assert!(
        failed.is_empty(),
        "failed on {}: {failed:?}",
        databases.name()
    );
}

/// Builds the `(name, Scenario)` list from async fns taking a database URL.
#[macro_export]
macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        &[$((stringify!($name), (|url| Box::pin($name(url))) as $crate::support::Scenario)),*]
    };
}
