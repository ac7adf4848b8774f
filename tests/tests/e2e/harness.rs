//! The platform the scenarios run on: the Helm chart installed into a
//! cluster, tenants applied with kubectl, HTTP to identity and to tenant URLs
//! through the cluster's ingress.
//!
//! Three back ends, one interface:
//!
//! - **kubesim** and **realkube** (`ATOLL_TEST_CLUSTER=kubesim|realkube|both`,
//!   see `atoll_testkit::cluster`): the suite starts the API server (kubesim
//!   with RBAC and admission policies, or the real control plane) and
//!   nodesim as its node, which runs the chart's Deployments (operator,
//!   identity) and each tenant's PostgreSQL and instance as local
//!   processes; its ingress router serves every Ingress host from one
//!   loopback port. On realkube nodesim plays only kubelet: the real
//!   controller manager and scheduler own the workloads, and the real
//!   authorizer and admission plugins judge every request.
//! - **External** (`ATOLL_E2E_KUBECONFIG` set): the same chart is applied to
//!   that cluster; HTTP goes to `ATOLL_E2E_INGRESS` (default `127.0.0.1:80`,
//!   what kind's usual port mapping gives) with the tenant's host name. What
//!   only nodesim can do (process ids, volume directories, killing a
//!   process) is skipped there with a message.
//!
//! What only kubesim can do (API fault injection) is skipped on the others
//! with a message.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use atoll_crds::{Phase, Tenant};
use atoll_testkit::chart;
use atoll_testkit::cluster::{ClusterKind, TestCluster};
use atoll_testkit::nodesim::{NodeSim, NodeSimConfig, workspace_binary};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

/// Long enough for a first PostgreSQL start on a busy 2-core machine.
pub const LIMIT: Duration = Duration::from_secs(120);
/// Where the chart is installed.
pub use atoll_testkit::chart::RELEASE_NAMESPACE;
/// The chart's base domain: tenant URLs are `http://<tenant>.<domain>`.
pub const DOMAIN: &str = "atoll.example.com";
/// Identity's Ingress host (the chart's value `identity.ingress.host`).
pub const IDENTITY_HOST: &str = "id.atoll.example.com";
/// The first admin the chart creates in identity.
pub const ADMIN_EMAIL: &str = "admin@atoll.example.com";

pub use atoll_testkit::eventually;

/// A random secret of 32 hex digits.
pub fn random_secret() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Where the suite runs.
#[derive(Debug, Clone)]
pub enum Target {
    /// A cluster the suite starts, nodesim as its node.
    Local(ClusterKind),
    /// The cluster of a kubeconfig (`ATOLL_E2E_KUBECONFIG`).
    External(PathBuf),
}

impl Target {
    /// `ATOLL_E2E_KUBECONFIG` when set, else each cluster
    /// `ATOLL_TEST_CLUSTER` selects.
    pub fn from_env() -> Vec<Target> {
        match std::env::var_os("ATOLL_E2E_KUBECONFIG") {
            Some(kubeconfig) => vec![Target::External(PathBuf::from(kubeconfig))],
            None => atoll_testkit::cluster::clusters_from_env()
                .into_iter()
                .map(Target::Local)
                .collect(),
        }
    }
}

/// What runs the cluster.
enum Backend {
    Local {
        node: NodeSim,
        cluster: Box<TestCluster>,
    },
    External,
}

/// The installed platform, shared by every scenario.
pub struct Platform {
    backend: Option<Backend>,
    /// Which cluster, and its Kubernetes version, for the summary.
    cluster_name: String,
    pub client: Client,
    kubeconfig: PathBuf,
    ingress: SocketAddr,
    pub dir: tempfile::TempDir,
    admin_password: String,
    /// The platform's object store (`backup.objectStore`): a TestS3 on a
    /// loopback port when the suite starts the cluster; `None` on an
    /// external cluster (or without s3s-fs, when not required).
    store: Option<atoll_testkit::s3::TestS3>,
    /// Every secret the suite generated or was handed, for the secrets scan.
    secrets: std::sync::Mutex<Vec<(String, String)>>,
}

impl std::fmt::Debug for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Platform")
            .field("ingress", &self.ingress)
            .finish_non_exhaustive()
    }
}

/// The chart rendered by `helm template` with the suite's values, CRDs
/// first.
fn render_chart(extra: &[String]) -> Result<String, String> {
    let mut args = vec![
        "--set".to_owned(),
        "identity.ingress.enabled=true".to_owned(),
        "--set".to_owned(),
        format!("identity.ingress.host={IDENTITY_HOST}"),
        // Instances reach identity inside the cluster; users go through
        // the Ingress. Tokens carry the in-cluster issuer either way.
        "--set".to_owned(),
        format!("identity.issuer=http://atoll-identity.{RELEASE_NAMESPACE}.svc"),
        "--set".to_owned(),
        format!("baseDomain={DOMAIN}"),
    ];
    args.extend(extra.iter().cloned());
    let rendered = chart::template(&args).map_err(|e| e.to_string())?;
    Ok(chart::crds_first(&rendered))
}

/// The Secret with the platform store's credentials.
const STORE_SECRET: &str = "atoll-backup-store";

/// The chart values pointing `backup.objectStore` at `store` (no
/// credentials: the Secret's name only).
fn store_values(store: &atoll_testkit::s3::TestS3) -> Vec<String> {
    [
        format!("backup.objectStore.endpoint={}", store.endpoint),
        format!("backup.objectStore.bucket={}", store.bucket),
        format!("backup.objectStore.region={}", store.region),
        "backup.objectStore.pathStyle=true".to_owned(),
        format!("backup.objectStore.credentialsSecret={STORE_SECRET}"),
    ]
    .into_iter()
    .flat_map(|value| ["--set".to_owned(), value])
    .collect()
}

impl Platform {
    /// Starts the cluster of `target` (and nodesim) or connects to it.
    async fn start_backend(
        target: &Target,
        dir: &Path,
    ) -> Result<(Backend, PathBuf, SocketAddr, Client, String), String> {
        match target {
            Target::External(kubeconfig) => {
                let ingress: SocketAddr = std::env::var("ATOLL_E2E_INGRESS")
                    .unwrap_or_else(|_| "127.0.0.1:80".into())
                    .parse()
                    .map_err(|e| format!("ATOLL_E2E_INGRESS: {e}"))?;
                let config = kube::Config::from_custom_kubeconfig(
                    kube::config::Kubeconfig::read_from(kubeconfig)
                        .map_err(|e| format!("reading {}: {e}", kubeconfig.display()))?,
                    &kube::config::KubeConfigOptions::default(),
                )
                .await
                .map_err(|e| e.to_string())?;
                let client = Client::try_from(config).map_err(|e| e.to_string())?;
                let version = client
                    .apiserver_version()
                    .await
                    .map(|v| v.git_version)
                    .unwrap_or_else(|e| format!("unknown: {e}"));
                let name = format!("the cluster of ATOLL_E2E_KUBECONFIG (Kubernetes {version})");
                Ok((Backend::External, kubeconfig.clone(), ingress, client, name))
            }
            Target::Local(kind) => {
                let binaries = [
                    "atoll-operator",
                    "atoll-identity",
                    "atoll-instance",
                    "atoll-backup",
                ]
                .map(|name| (name, workspace_binary(name)));
                for (_, path) in &binaries {
                    assert!(
                        path.is_file(),
                        "{} is not built: run `cargo build --bins` (cargo test --workspace does)",
                        path.display()
                    );
                }
                let cluster = TestCluster::start(*kind).await?;
                let mut config = NodeSimConfig::new(dir.join("node"))
                    .postgres()
                    .script_images()
                    .ingress("127.0.0.1:0".parse().expect("addr"));
                for (name, path) in binaries {
                    config = config.binary(name, path);
                }
                let node = cluster.start_node(config).await?;
                let ingress = node.ingress_addr().expect("ingress router");
                let kubeconfig = cluster.kubeconfig_path().to_owned();
                let client = cluster.client();
                let name = cluster.describe();
                Ok((
                    Backend::Local {
                        node,
                        cluster: Box::new(cluster),
                    },
                    kubeconfig,
                    ingress,
                    client,
                    name,
                ))
            }
        }
    }

    /// Installs the chart on `target` and waits for identity and the
    /// operator; `Err` says what failed.
    pub async fn install(target: &Target) -> Result<Platform, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let extra: Vec<String> = std::env::var("ATOLL_E2E_HELM_ARGS")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let store = match target {
            Target::Local(_) => atoll_testkit::s3::TestS3::start("the e2e backup drills"),
            Target::External(_) => None,
        };
        let mut values = extra;
        if let Some(store) = &store {
            values.extend(store_values(store));
        }
        let manifest = dir.path().join("chart.yaml");
        std::fs::write(&manifest, render_chart(&values)?).map_err(|e| e.to_string())?;
        let (backend, kubeconfig, ingress, client, cluster_name) =
            Self::start_backend(target, dir.path()).await?;
        let mut platform = Platform {
            backend: Some(backend),
            cluster_name,
            client,
            kubeconfig,
            ingress,
            dir,
            admin_password: String::new(),
            store,
            secrets: std::sync::Mutex::new(Vec::new()),
        };

        // `helm install --create-namespace`. (Through the client: `kubectl
        // create` sends protobuf, which kubesim does not speak.)
        let namespaces = Api::<Namespace>::all(platform.client.clone());
        if namespaces
            .get_opt(RELEASE_NAMESPACE)
            .await
            .map_err(|e| e.to_string())?
            .is_none()
        {
            let namespace: Namespace =
                serde_json::from_value(json!({"metadata": {"name": RELEASE_NAMESPACE}}))
                    .expect("namespace");
            namespaces
                .create(&kube::api::PostParams::default(), &namespace)
                .await
                .map_err(|e| format!("creating namespace {RELEASE_NAMESPACE}: {e}"))?;
        }
        platform.create_store_secret().await?;
        platform
            .kubectl_ok(&[
                "apply",
                "--server-side",
                "--field-manager=atoll-e2e",
                "-f",
                manifest.to_str().expect("utf-8 path"),
            ])
            .await;
        for deployment in ["atoll-identity", "atoll-operator"] {
            let api = Api::<Deployment>::namespaced(platform.client.clone(), RELEASE_NAMESPACE);
            eventually(&format!("Deployment {deployment} available"), LIMIT, || {
                let api = api.clone();
                async move {
                    let status = api.get_opt(deployment).await.ok()??.status?;
                    (status.available_replicas.unwrap_or(0) >= 1).then_some(())
                }
            })
            .await;
        }
        let secret = Api::<Secret>::namespaced(platform.client.clone(), RELEASE_NAMESPACE)
            .get("atoll-identity-first-admin")
            .await
            .map_err(|e| format!("reading the first admin's Secret: {e}"))?;
        let password = secret.data.unwrap_or_default()["password"].0.clone();
        platform.admin_password = String::from_utf8(password).map_err(|e| e.to_string())?;
        platform.remember_secret("first admin password", &platform.admin_password.clone());
        // Every cluster credential identity holds (one key per cluster).
        let credentials = Api::<Secret>::namespaced(platform.client.clone(), RELEASE_NAMESPACE)
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
            .items
            .into_iter()
            .filter(|s| s.name_any().ends_with("-clusters"))
            .flat_map(|s| s.data.unwrap_or_default().into_iter())
            .collect::<Vec<_>>();
        if credentials.is_empty() {
            return Err("no identity cluster credentials Secret (…-clusters) found".into());
        }
        for (cluster, token) in credentials {
            platform.remember_secret(
                &format!("identity credential of cluster {cluster}"),
                &String::from_utf8_lossy(&token.0),
            );
        }
        eventually("identity to answer through the ingress", LIMIT, || async {
            let response = platform
                .http(&format!("http://{IDENTITY_HOST}/readyz"))
                .get(format!("http://{IDENTITY_HOST}/readyz"))
                .send()
                .await
                .ok()?;
            response.status().is_success().then_some(())
        })
        .await;
        Ok(platform)
    }

    /// Writes the store's credentials Secret (the chart's
    /// `backup.objectStore.credentialsSecret`) into the release namespace,
    /// before the operator starts, and remembers the secret key for the
    /// secrets scan.
    async fn create_store_secret(&self) -> Result<(), String> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        self.remember_secret("the object store's secret key", &store.secret_access_key);
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": STORE_SECRET, "namespace": RELEASE_NAMESPACE},
            "stringData": {
                "accessKeyId": store.access_key_id,
                "secretAccessKey": store.secret_access_key,
            },
        }))
        .map_err(|e| e.to_string())?;
        Api::<Secret>::namespaced(self.client.clone(), RELEASE_NAMESPACE)
            .create(&kube::api::PostParams::default(), &secret)
            .await
            .map_err(|e| format!("creating the object store's Secret {STORE_SECRET}: {e}"))?;
        Ok(())
    }

    /// The platform's object store, when there is one; prints why a check
    /// is skipped otherwise.
    pub fn store(&self, check: &str) -> Option<&atoll_testkit::s3::TestS3> {
        if self.store.is_none() {
            println!(
                "    SKIPPED on {} (no platform object store): {check}",
                self.cluster_name
            );
        }
        self.store.as_ref()
    }

    /// True when nodesim is the node (process-level checks possible):
    /// kubesim and realkube.
    pub fn simulated(&self) -> bool {
        matches!(self.backend, Some(Backend::Local { .. }))
    }

    /// Where the ingress listens.
    pub fn ingress_addr(&self) -> SocketAddr {
        self.ingress
    }

    /// Which cluster the suite runs on, and its Kubernetes version.
    pub fn cluster_name(&self) -> &str {
        &self.cluster_name
    }

    /// The cluster the suite started (kubesim or realkube), if it did.
    pub fn cluster(&self) -> Option<&TestCluster> {
        match &self.backend {
            Some(Backend::Local { cluster, .. }) => Some(cluster),
            _ => None,
        }
    }

    /// nodesim, when the suite started the cluster; prints why a check is
    /// skipped otherwise.
    pub fn node(&self, check: &str) -> Option<&NodeSim> {
        match &self.backend {
            Some(Backend::Local { node, .. }) => Some(node),
            _ => {
                println!("    SKIPPED on an external cluster (needs nodesim): {check}");
                None
            }
        }
    }

    /// kubesim's fault injection, when the cluster is kubesim; prints why
    /// a check is skipped otherwise.
    pub fn faults(&self, check: &str) -> Option<atoll_testkit::kubesim::Faults> {
        match self.cluster().and_then(TestCluster::sim) {
            Some(sim) => Some(sim.faults()),
            None => {
                println!(
                    "    SKIPPED on {} (only kubesim injects API faults): {check}",
                    self.cluster_name
                );
                None
            }
        }
    }

    /// Where nodesim keeps a namespace's volume directories.
    pub fn pvc_dir(&self, namespace: &str) -> PathBuf {
        self.dir.path().join("node/pvc").join(namespace)
    }

    /// Records a secret the suite saw, for the secrets scan.
    pub fn remember_secret(&self, what: &str, value: &str) {
        if value.len() >= 8 {
            self.secrets
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((what.to_owned(), value.to_owned()));
        }
    }

    pub fn secrets(&self) -> Vec<(String, String)> {
        self.secrets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Runs kubectl against the cluster; returns success and the output.
    /// Async: the simulated API server runs on this process's runtime.
    pub async fn kubectl(&self, args: &[&str]) -> (bool, String) {
        let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
        let output = tokio::process::Command::new(kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .await
            .expect("kubectl runs (scripts/test installs it)");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr),
        )
    }

    /// kubectl that must succeed.
    pub async fn kubectl_ok(&self, args: &[&str]) -> String {
        let (ok, out) = self.kubectl(args).await;
        assert!(ok, "kubectl {}: {out}", args.join(" "));
        out
    }

    /// Writes `yaml` to a file and applies it with kubectl, server-side.
    pub async fn apply_yaml(&self, name: &str, yaml: &str) -> (bool, String) {
        let path = self.dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, yaml).expect("write YAML");
        self.kubectl(&[
            "apply",
            "--server-side",
            "--field-manager=atoll-e2e",
            "-f",
            path.to_str().expect("utf-8 path"),
        ])
        .await
    }

    /// An HTTP client whose requests to `url`'s host go to the ingress.
    pub fn http(&self, url: &str) -> reqwest::Client {
        let host = url
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split(['/', ':']).next())
            .unwrap_or_default()
            .to_owned();
        reqwest::Client::builder()
            .resolve(&host, self.ingress)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client")
    }

    /// An HTTP client for a browser: requests to each of `hosts` go to
    /// the ingress, and no redirect is followed (the test follows them, so
    /// it sees every hop and keeps each host's cookies).
    pub fn browser_http(&self, hosts: &[&str]) -> reqwest::Client {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30));
        for host in hosts {
            builder = builder.resolve(host, self.ingress);
        }
        builder.build().expect("http client")
    }

    pub fn tenants(&self) -> Api<Tenant> {
        Api::all(self.client.clone())
    }

    pub async fn tenant(&self, name: &str) -> Option<Tenant> {
        self.tenants().get_opt(name).await.ok().flatten()
    }

    /// Waits for `phase` at the Tenant's current generation.
    pub async fn wait_phase(&self, name: &str, phase: Phase) -> Tenant {
        eventually(&format!("Tenant {name} to be {phase:?}"), LIMIT, || async {
            let tenant = self.tenant(name).await?;
            (tenant.current_phase() == Some(phase)).then_some(tenant)
        })
        .await
    }

    /// Deletes a Tenant with kubectl and waits until it and (for
    /// `deletionPolicy: Delete`) its namespace are gone.
    pub async fn delete_tenant(&self, name: &str, namespace_too: bool) {
        self.kubectl_ok(&["delete", "tenant", name, "--wait=false"])
            .await;
        let namespaces = Api::<Namespace>::all(self.client.clone());
        let ns = format!("atoll-{name}");
        eventually(&format!("Tenant {name} to be gone"), LIMIT, || async {
            let gone = self.tenant(name).await.is_none()
                && (!namespace_too || matches!(namespaces.get_opt(&ns).await, Ok(None)));
            gone.then_some(())
        })
        .await;
    }

    /// The admin's identity session.
    pub async fn admin(&self) -> Session {
        self.login(ADMIN_EMAIL, &self.admin_password.clone())
            .await
            .expect("the first admin logs in")
    }

    /// Creates a user with a random password; returns the password.
    pub async fn create_user(&self, admin: &Session, email: &str) -> String {
        let password = random_secret();
        self.remember_secret(&format!("password of {email}"), &password);
        let (status, body) = admin
            .post(
                "/api/v1/admin/users",
                &json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(status, 201, "creating {email}: {body}");
        password
    }

    /// Logs in to identity; `Err` carries the status when refused.
    pub async fn login(&self, email: &str, password: &str) -> Result<Session, u16> {
        let base = format!("http://{IDENTITY_HOST}");
        let http = self.http(&base);
        let response = http
            .post(format!("{base}/api/v1/login"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .expect("identity answers");
        let status = response.status().as_u16();
        if status != 200 {
            return Err(status);
        }
        let body: Value = response.json().await.expect("login JSON");
        let token = body["token"].as_str().expect("session token").to_owned();
        self.remember_secret(&format!("session token of {email}"), &token);
        Ok(Session {
            http,
            base,
            token,
            email: email.to_owned(),
        })
    }

    /// Reads a key of the tenant's database Secret.
    async fn database_secret(&self, namespace: &str, key: &str) -> String {
        let secret = Api::<Secret>::namespaced(self.client.clone(), namespace)
            .get("database-credentials")
            .await
            .expect("database credentials Secret");
        String::from_utf8(secret.data.expect("data")[key].0.clone()).expect("utf-8")
    }

    /// Runs one SQL query in a tenant's own PostgreSQL; returns the
    /// unaligned, tuples-only output. Simulated: psql to the database
    /// Service's loopback address. Real: `kubectl exec` into the pod.
    pub async fn tenant_sql(&self, tenant: &str, sql: &str) -> String {
        let namespace = format!("atoll-{tenant}");
        let user = self.database_secret(&namespace, "username").await;
        let password = self.database_secret(&namespace, "password").await;
        let database = self.database_secret(&namespace, "database").await;
        self.remember_secret(&format!("database password of {tenant}"), &password);
        match &self.backend {
            Some(Backend::Local { node, .. }) => {
                let ip = node
                    .service_ip(&namespace, "database")
                    .expect("database Service address");
                let bindir = std::env::var("ATOLL_PG_BINDIR")
                    .unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
                // Async: nodesim's Service proxy runs on this process's
                // runtime, and a blocked worker can hold the task that
                // would answer psql.
                let output = tokio::process::Command::new(Path::new(&bindir).join("psql"))
                    .args(["-h", &ip.to_string(), "-p", "5432", "-U", &user, "-d"])
                    .arg(&database)
                    .args(["-tAc", sql])
                    .env("PGPASSWORD", &password)
                    .env("PGCONNECT_TIMEOUT", "30")
                    .kill_on_drop(true)
                    .output();
                let output = tokio::time::timeout(LIMIT, output)
                    .await
                    .unwrap_or_else(|_| {
                        panic!("psql in {tenant}'s database: no answer in {LIMIT:?}")
                    })
                    .expect("psql runs");
                assert!(
                    output.status.success(),
                    "psql in {tenant}'s database: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                String::from_utf8_lossy(&output.stdout).trim().to_owned()
            }
            _ => self
                .kubectl_ok(&[
                    "exec",
                    "-n",
                    &namespace,
                    "database-0",
                    "--",
                    "psql",
                    "-U",
                    &user,
                    "-d",
                    &database,
                    "-tAc",
                    sql,
                ])
                .await
                .trim()
                .to_owned(),
        }
    }

    /// Stops everything the suite started. Tenants are deleted by the
    /// scenarios; the chart's objects go with the cluster (kubesim,
    /// realkube) or with `kubectl delete -f` (external).
    pub async fn uninstall(mut self) {
        match self.backend.take() {
            Some(Backend::Local { node, cluster }) => {
                node.shutdown().await;
                if let Err(e) = cluster.stop().await {
                    panic!("stopping {}: {e}", self.cluster_name);
                }
            }
            _ => {
                let manifest = self.dir.path().join("chart.yaml");
                let (_, out) = self
                    .kubectl(&[
                        "delete",
                        "--ignore-not-found",
                        "-f",
                        manifest.to_str().expect("utf-8"),
                    ])
                    .await;
                println!("uninstalled the chart: {}", out.trim());
            }
        }
    }
}

/// A user's identity session.
#[derive(Debug, Clone)]
pub struct Session {
    http: reqwest::Client,
    base: String,
    pub token: String,
    pub email: String,
}

impl Session {
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("identity answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .expect("identity answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Asks for a token scoped to `tenant`; `Err(status)` when refused.
    pub async fn tenant_token(&self, platform: &Platform, tenant: &str) -> Result<String, u16> {
        let (status, body) = self
            .post("/api/v1/tokens", &json!({"tenant": tenant}))
            .await;
        if status != 200 {
            return Err(status);
        }
        let token = body["accessToken"]
            .as_str()
            .expect("accessToken")
            .to_owned();
        platform.remember_secret(&format!("{tenant} token of {}", self.email), &token);
        Ok(token)
    }
}

/// A tenant's instance at its URL, seen through the ingress.
#[derive(Debug, Clone)]
pub struct Instance {
    http: reqwest::Client,
    pub url: String,
}

/// What the instance answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

impl Instance {
    pub fn new(platform: &Platform, url: &str) -> Instance {
        Instance {
            http: platform.http(url),
            url: url.trim_end_matches('/').to_owned(),
        }
    }

    /// One request; `token` as bearer when given, `body` sent as-is with
    /// `content_type`.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> Option<Answer> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some((content_type, body)) = body {
            request = request.header("content-type", content_type).body(body);
        }
        let response = request.send().await.ok()?;
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        Some(Answer { status, body })
    }

    /// Waits until `/healthz` answers 200.
    pub async fn wait_healthy(&self) {
        eventually(&format!("{} to answer", self.url), LIMIT, || async {
            let answer = self.call("GET", "/healthz", None, None).await?;
            (answer.status == 200).then_some(())
        })
        .await;
    }

    /// Saves a flow (YAML); returns the answer.
    pub async fn save_flow(&self, token: &str, yaml: &str) -> Answer {
        self.call(
            "POST",
            "/api/v1/flows",
            Some(token),
            Some(("application/x-yaml", yaml.as_bytes().to_vec())),
        )
        .await
        .expect("instance answers")
    }

    /// Starts an execution of `namespace/flow`; returns its id.
    pub async fn run(&self, token: &str, namespace: &str, flow: &str) -> String {
        let answer = self
            .call(
                "POST",
                &format!("/api/v1/executions/{namespace}/{flow}"),
                Some(token),
                None,
            )
            .await
            .expect("instance answers");
        assert!(
            (200..300).contains(&answer.status),
            "run {namespace}/{flow}: {} {}",
            answer.status,
            answer.body
        );
        answer.json()["id"]
            .as_str()
            .expect("execution id")
            .to_owned()
    }

    /// Waits until the execution is in a final state; returns the state.
    pub async fn wait_final(&self, token: &str, id: &str) -> String {
        eventually(&format!("execution {id} to end"), LIMIT, || async {
            let answer = self
                .call(
                    "GET",
                    &format!("/api/v1/executions/{id}"),
                    Some(token),
                    None,
                )
                .await?;
            let state = answer.json()["state"]["current"].as_str()?.to_owned();
            ["SUCCESS", "FAILED", "KILLED", "WARNING"]
                .contains(&state.as_str())
                .then_some(state)
        })
        .await
    }

    /// Follows the execution's log stream until `needle` appears.
    pub async fn follow_logs_until(&self, token: &str, id: &str, needle: &str) -> String {
        let mut response = self
            .http
            .get(format!("{}/api/v1/logs/{id}/follow", self.url))
            .bearer_auth(token)
            .send()
            .await
            .expect("log stream");
        assert_eq!(response.status().as_u16(), 200, "follow logs");
        let mut seen = String::new();
        let found = tokio::time::timeout(LIMIT, async {
            while let Ok(Some(chunk)) = response.chunk().await {
                seen.push_str(&String::from_utf8_lossy(&chunk));
                if seen.contains(needle) {
                    return true;
                }
            }
            seen.contains(needle)
        })
        .await;
        assert!(
            matches!(found, Ok(true)),
            "{needle:?} not in the followed logs: {seen}"
        );
        seen
    }
}

/// A Tenant as YAML, as a platform team would keep it in Git.
pub fn tenant_yaml(name: &str, members: &[(&str, &str)], extra: &str) -> String {
    let mut yaml = format!(
        "apiVersion: atoll.dev/v1alpha1\nkind: Tenant\nmetadata:\n  name: {name}\nspec:\n  displayName: {name} e2e\n  deletionPolicy: Delete\n"
    );
    if !members.is_empty() {
        yaml.push_str("  members:\n");
        for (user, role) in members {
            yaml.push_str(&format!("    - user: {user}\n      role: {role}\n"));
        }
    }
    yaml.push_str(extra);
    yaml
}

/// Process ids of every container of every pod in a namespace (nodesim).
pub async fn pids(platform: &Platform, node: &NodeSim, namespace: &str) -> Vec<u32> {
    let pods =
        Api::<k8s_openapi::api::core::v1::Pod>::namespaced(platform.client.clone(), namespace)
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
    pods.iter()
        .flat_map(|p| node.pod_pids(namespace, &p.name_any()))
        .collect()
}

pub use atoll_testkit::nodesim::pid_alive;
