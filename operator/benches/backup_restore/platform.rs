//! The sandbox's cluster for the benchmark: kubesim as the API server,
//! nodesim as the node (PostgreSQL 15, `atoll-instance` and `atoll-backup`
//! as local processes, an ingress router on a loopback port), a TestS3
//! (s3s-fs) as the platform's backup store and the operator, in process,
//! configured with that store as the chart's `backup.objectStore` values
//! configure it. Plus what the benchmark asks of a tenant: its status, its
//! database pod (over the pod's Unix socket as `postgres`), its backup agent
//! and its URL through the ingress.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use atoll_crds::Tenant;
use atoll_operator::cli::{Cli, Command};
use atoll_operator::run::{RunArgs, run_with_client};
use atoll_testkit::cluster::{ClusterKind, TestCluster};
use atoll_testkit::nodesim::{NodeSim, NodeSimConfig, workspace_binary};
use atoll_testkit::s3::TestS3;
use clap::Parser;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use sqlx::ConnectOptions;
use tokio::task::JoinHandle;

/// The operator's namespace (where the store's credentials Secret lives).
const RELEASE_NAMESPACE: &str = "atoll-system";
/// The chart's `backup.objectStore.credentialsSecret`.
const CREDENTIALS_SECRET: &str = "atoll-backup-store";
/// Tenant URLs are `http://<tenant>.<DOMAIN>`.
const DOMAIN: &str = "atoll.localhost";
/// How often a condition is checked again while waiting.
const POLL: Duration = Duration::from_millis(100);

/// Checks `check` every [`POLL`] until it returns `Some`; panics naming
/// `what` after `limit`.
pub async fn until<T, F, Fut>(what: &str, limit: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    atoll_testkit::wait::eventually_every(what, limit, POLL, check).await
}

/// The running cluster, node, store and operator.
pub struct Sandbox {
    pub client: Client,
    pub node: NodeSim,
    pub store: TestS3,
    node_dir: PathBuf,
    ingress: SocketAddr,
    http: reqwest::Client,
    cluster: TestCluster,
    operator: JoinHandle<()>,
    /// nodesim's state (volumes, logs): removed at the end.
    _state: tempfile::TempDir,
}

impl Sandbox {
    /// Starts everything; panics naming what did not start (a binary not
    /// built, no s3s-fs).
    pub async fn start() -> Sandbox {
        let backup = workspace_binary("atoll-backup");
        let instance = workspace_binary("atoll-instance");
        for bin in [&backup, &instance] {
            assert!(
                bin.is_file(),
                "{} is not built: run `cargo build --release -p atoll-backup -p atoll-instance` first",
                bin.display()
            );
        }
        let store = TestS3::start("the backup benchmark")
            .expect("the backup benchmark needs s3s-fs (see tests/src/s3.rs)");
        let cluster = TestCluster::start(ClusterKind::KubeSim)
            .await
            .unwrap_or_else(|e| panic!("kubesim did not start: {e}"));
        let client = cluster.client();
        install_crds(&client).await;
        create_credentials(&client, &store).await;
        let state = tempfile::Builder::new()
            .prefix("atoll-backup-bench-")
            .tempdir()
            .expect("a temporary directory");
        let config = NodeSimConfig::new(state.path().join("node"))
            .postgres()
            .binary("atoll-instance", instance)
            .binary("atoll-backup", backup)
            .ingress("127.0.0.1:0".parse().expect("addr"));
        let node = cluster
            .start_node(config)
            .await
            .unwrap_or_else(|e| panic!("nodesim did not start: {e}"));
        let ingress = node.ingress_addr().expect("the ingress router");
        let operator = start_operator(&client, &store);
        Sandbox {
            client,
            node,
            store,
            node_dir: state.path().join("node"),
            ingress,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .expect("http client"),
            cluster,
            operator,
            _state: state,
        }
    }

    /// Stops the operator, the node's processes and the cluster; the
    /// store and the state directory go when dropped.
    pub async fn stop(self) {
        self.operator.abort();
        self.node.shutdown().await;
        if let Err(e) = self.cluster.stop().await {
            eprintln!("stopping kubesim: {e}");
        }
    }

    /// Creates a Tenant; returns its uid.
    pub async fn create_tenant(&self, name: &str, spec: Value) -> String {
        let tenant: Tenant = serde_json::from_value(json!({
            "apiVersion": "atoll.dev/v1alpha1", "kind": "Tenant",
            "metadata": {"name": name}, "spec": spec,
        }))
        .expect("a Tenant");
        Api::<Tenant>::all(self.client.clone())
            .create(&PostParams::default(), &tenant)
            .await
            .unwrap_or_else(|e| panic!("creating Tenant {name}: {e}"))
            .metadata
            .uid
            .expect("a uid")
    }

    /// The Tenant's status as JSON.
    pub async fn tenant_status(&self, name: &str) -> Option<Value> {
        let tenant = Api::<Tenant>::all(self.client.clone())
            .get_opt(name)
            .await
            .ok()??;
        serde_json::to_value(tenant.status?).ok()
    }

    /// Waits until the Tenant's phase is `Ready`; returns its status.
    pub async fn wait_ready(&self, name: &str, limit: Duration) -> Value {
        until(&format!("Tenant {name} to be Ready"), limit, || async {
            let status = self.tenant_status(name).await?;
            (status["phase"] == "Ready").then_some(status)
        })
        .await
    }

    /// The ready pod `database-0` of the tenant: its uid and IP.
    pub async fn database_pod(&self, tenant: &str) -> (String, String) {
        let namespace = format!("atoll-{tenant}");
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        until(
            &format!("{namespace}/database-0 to be ready"),
            Duration::from_secs(300),
            || async {
                let pod = pods.get_opt("database-0").await.ok()??;
                if !atoll_testkit::nodesim::workloads::pod_ready(&pod) {
                    return None;
                }
                Some((
                    pod.metadata.uid?,
                    self.node.pod_ip(&namespace, "database-0")?.to_string(),
                ))
            },
        )
        .await
    }

    /// A connection to the tenant's database `atoll` over the pod's Unix
    /// socket, as `postgres`.
    pub async fn database(&self, tenant: &str) -> sqlx::PgConnection {
        let (pod_uid, _) = self.database_pod(tenant).await;
        until(
            &format!("{tenant}'s database over its socket"),
            Duration::from_secs(120),
            || socket(&self.node_dir, &pod_uid),
        )
        .await
    }

    /// A key of a Secret in the tenant's namespace.
    pub async fn secret_value(&self, tenant: &str, name: &str, key: &str) -> String {
        let namespace = format!("atoll-{tenant}");
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &namespace);
        let secret = until(
            &format!("Secret {namespace}/{name}"),
            Duration::from_secs(60),
            || async { secrets.get_opt(name).await.ok()? },
        )
        .await;
        let bytes = secret.data.unwrap_or_default()[key].0.clone();
        String::from_utf8(bytes).expect("a text Secret value")
    }

    /// `POST /switch-wal` to the tenant's backup agent, which answers once
    /// the completed segment is archived; returns its answer.
    pub async fn switch_wal(&self, tenant: &str) -> Value {
        let (_, ip) = self.database_pod(tenant).await;
        let token = self.secret_value(tenant, "backup-agent", "token").await;
        let answer = self
            .http
            .post(format!("http://{ip}:9187/switch-wal"))
            .bearer_auth(token)
            .send()
            .await
            .expect("the backup agent answers POST /switch-wal");
        let status = answer.status();
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "POST /switch-wal: {status} {body}");
        body
    }

    /// One request to the tenant's instance through the ingress; `None`
    /// when it does not answer.
    pub async fn call(
        &self,
        tenant: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<(&str, String)>,
    ) -> Option<(u16, String)> {
        let host = format!("{tenant}.{DOMAIN}");
        let client = reqwest::Client::builder()
            .resolve(&host, self.ingress)
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client");
        let url = format!("http://{host}:{}{path}", self.ingress.port());
        let mut request = client.request(method, url);
        if let Some((content_type, body)) = body {
            request = request.header("content-type", content_type).body(body);
        }
        let response = request.send().await.ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().await.unwrap_or_default()))
    }

    /// The total size of the store's objects under `prefix`, and their
    /// number.
    pub fn stored(&self, prefix: &str) -> (u64, usize) {
        let keys = self.store.list_keys(prefix);
        let root = self.store.dir().join(&self.store.bucket);
        let bytes = keys
            .iter()
            .filter_map(|k| std::fs::metadata(root.join(k)).ok())
            .map(|m| m.len())
            .sum();
        (bytes, keys.len())
    }
}

/// Every CRD of Atoll, applied, once established.
async fn install_crds(client: &Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Patch, PatchParams};
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in atoll_crds::all_crds() {
        let name = crd.metadata.name.clone().expect("a CRD name");
        crds.patch(
            &name,
            &PatchParams::apply("atoll-bench").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("applying CRD {name}: {e}"));
        until(
            &format!("CRD {name} established"),
            Duration::from_secs(60),
            || async {
                let crd = crds.get(&name).await.ok()?;
                crd.status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                    .then_some(())
            },
        )
        .await;
    }
}

/// The release namespace and the store's credentials Secret in it.
async fn create_credentials(client: &Client, store: &TestS3) {
    let namespace: Namespace =
        serde_json::from_value(json!({"metadata": {"name": RELEASE_NAMESPACE}}))
            .expect("a Namespace");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .expect("creating the release namespace");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": CREDENTIALS_SECRET, "namespace": RELEASE_NAMESPACE},
        "stringData": {
            "accessKeyId": store.access_key_id,
            "secretAccessKey": store.secret_access_key,
        },
    }))
    .expect("a Secret");
    Api::<Secret>::namespaced(client.clone(), RELEASE_NAMESPACE)
        .create(&PostParams::default(), &secret)
        .await
        .expect("creating the store's credentials Secret");
}

/// The operator with `store` as the platform's backup store.
fn start_operator(client: &Client, store: &TestS3) -> JoinHandle<()> {
    let cli = Cli::parse_from([
        "atoll-operator",
        "run",
        "--metrics-addr",
        "127.0.0.1:0",
        "--base-domain",
        DOMAIN,
        "--public-port",
        "8080",
        "--backup-image",
        "atoll/atoll-backup:bench",
        "--backup-endpoint",
        &store.endpoint,
        "--backup-bucket",
        &store.bucket,
        "--backup-path-style",
        "--backup-credentials-secret",
        CREDENTIALS_SECRET,
    ]);
    let args: RunArgs = match cli.command {
        Command::Run(args) => *args,
        other => panic!("parsed {other:?}"),
    };
    let client = client.clone();
    tokio::spawn(async move {
        if let Err(error) = run_with_client(args, client).await {
            panic!("the operator stopped: {error}");
        }
    })
}

/// A connection over the pod's socket directory (nodesim links a shorter
/// path when the volume's is too long for a socket address).
async fn socket(node_dir: &Path, pod_uid: &str) -> Option<sqlx::PgConnection> {
    let volume = node_dir.join("pods").join(pod_uid).join("volumes/run");
    let link = std::env::temp_dir().join(format!("nodesim-{pod_uid}-0"));
    let dir = if link.exists() { link } else { volume };
    sqlx::postgres::PgConnectOptions::new()
        .socket(&dir)
        .username("postgres")
        .database("atoll")
        .disable_statement_logging()
        .connect()
        .await
        .ok()
}
