//! Helpers of the operator's backup and restore tests (#19): the operator
//! in process as the chart's service account with s3s-fs as the platform's
//! object store, nodesim with PostgreSQL, the instance and `atoll-backup`
//! as images, and ways to look at a Tenant and into its database.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use atoll_crds::Tenant;
use atoll_operator::cli::{Cli, Command};
use atoll_operator::run::{RunArgs, run_with_client};
use atoll_testkit::nodesim::{NodeSim, NodeSimConfig, workspace_binary};
use atoll_testkit::s3::TestS3;
use clap::Parser;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use sqlx::ConnectOptions;
use tokio::task::JoinHandle;

use super::TestCluster;

/// Generous: PostgreSQL starts, recovers and starts again on a busy machine.
pub const TIMEOUT: Duration = Duration::from_secs(240);
/// The platform's credentials Secret (in the release namespace).
pub const CREDENTIALS_SECRET: &str = "atoll-backup-store";

/// [`super::eventually`] with [`TIMEOUT`].
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    super::eventually(what, TIMEOUT, check).await
}

/// Runs the operator with `s3` as the platform's store, the flags of
/// `extra` added (e.g. `--metrics-addr`, `--base-domain`).
pub fn start_operator(client: &Client, s3: &TestS3, extra: &[&str]) -> JoinHandle<()> {
    let mut argv = vec![
        "atoll-operator",
        "run",
        "--backup-image",
        "atoll/atoll-backup:test",
        "--backup-endpoint",
        &s3.endpoint,
        "--backup-bucket",
        &s3.bucket,
        "--backup-path-style",
        "--backup-credentials-secret",
        CREDENTIALS_SECRET,
    ];
    argv.extend_from_slice(extra);
    if !extra.contains(&"--metrics-addr") {
        argv.extend(["--metrics-addr", "127.0.0.1:0"]);
    }
    let args: RunArgs = match Cli::parse_from(argv).command {
        Command::Run(args) => *args,
        other => panic!("parsed {other:?}"),
    };
    let client = client.clone();
    tokio::spawn(async move {
        if let Err(error) = run_with_client(args, client).await {
            panic!("operator stopped: {error}");
        }
    })
}

/// nodesim with PostgreSQL, the instance and `atoll-backup` as images,
/// and an ingress router when `ingress`.
pub async fn start_node(cluster: &TestCluster, state: &Path, ingress: bool) -> NodeSim {
    let backup = workspace_binary("atoll-backup");
    let instance = workspace_binary("atoll-instance");
    for bin in [&backup, &instance] {
        assert!(
            bin.is_file(),
            "{} is not built: run `cargo build --workspace --bins`",
            bin.display()
        );
    }
    let mut config = NodeSimConfig::new(state.join("node"))
        .postgres()
        .binary("atoll-instance", instance)
        .binary("atoll-backup", backup);
    if ingress {
        config = config.ingress("127.0.0.1:0".parse().expect("addr"));
    }
    cluster
        .start_node(config)
        .await
        .unwrap_or_else(|e| panic!("nodesim on {}: {e}", cluster.kind()))
}

/// The platform's credentials Secret, as an admin creates it for the chart.
pub async fn create_credentials(client: &Client, s3: &TestS3) {
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": CREDENTIALS_SECRET, "namespace": super::RELEASE_NAMESPACE},
        "stringData": {"accessKeyId": s3.access_key_id, "secretAccessKey": s3.secret_access_key},
    }))
    .expect("secret");
    Api::<Secret>::namespaced(client.clone(), super::RELEASE_NAMESPACE)
        .create(&PostParams::default(), &secret)
        .await
        .expect("the platform's credentials Secret");
}

/// Creates the Tenant `name` with `spec`; returns its uid.
pub async fn create_tenant(client: &Client, name: &str, spec: Value) -> String {
    let tenant: Tenant = serde_json::from_value(json!({
        "apiVersion": "atoll.dev/v1alpha1", "kind": "Tenant",
        "metadata": {"name": name}, "spec": spec,
    }))
    .expect("tenant");
    Api::<Tenant>::all(client.clone())
        .create(&PostParams::default(), &tenant)
        .await
        .unwrap_or_else(|e| panic!("Tenant {name}: {e}"))
        .metadata
        .uid
        .expect("uid")
}

/// The Tenant's status as JSON.
pub async fn tenant_status(client: &Client, name: &str) -> Option<Value> {
    let tenant = Api::<Tenant>::all(client.clone())
        .get_opt(name)
        .await
        .ok()??;
    serde_json::to_value(tenant.status?).ok()
}

/// `(status, reason, message)` of a condition.
pub fn condition(status: &Value, type_: &str) -> Option<(String, String, String)> {
    let c = status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)?;
    let text = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
    Some((text("status"), text("reason"), text("message")))
}

/// Waits for the Tenant's `Restored` condition to have `state`; on a
/// timeout, says what the Tenant and its pods' logs show.
pub async fn restored(
    client: &Client,
    node: &NodeSim,
    name: &str,
    state: &str,
) -> (Value, String, String) {
    let what = format!("Tenant {name}: Restored={state}");
    let wait = super::eventually(&what, TIMEOUT, || async {
        let status = tenant_status(client, name).await?;
        let (s, reason, message) = condition(&status, "Restored")?;
        (s == state).then_some((status, reason, message))
    });
    match tokio::time::timeout(TIMEOUT - Duration::from_secs(5), wait).await {
        Ok(found) => found,
        Err(_) => {
            let logs: Vec<String> = walk(&node.logs_dir())
                .into_iter()
                .filter(|f| f.display().to_string().contains(&format!("atoll-{name}")))
                .map(|f| {
                    format!(
                        "{}:\n{}",
                        f.display(),
                        std::fs::read_to_string(&f).unwrap_or_default()
                    )
                })
                .collect();
            panic!(
                "Tenant {name}: no Restored={state}; status {:?}; logs:\n{}",
                tenant_status(client, name).await,
                logs.join("\n")
            );
        }
    }
}

/// A connection to the pod's server over its Unix socket as `postgres`.
pub async fn socket(node_dir: &Path, pod_uid: &str, db: &str) -> Option<sqlx::PgConnection> {
    let volume = node_dir.join("pods").join(pod_uid).join("volumes/run");
    // nodesim links a socket directory too long for a socket address.
    let link = std::env::temp_dir().join(format!("nodesim-{pod_uid}-0"));
    let dir = if link.exists() { link } else { volume };
    sqlx::postgres::PgConnectOptions::new()
        .socket(&dir)
        .username("postgres")
        .database(db)
        .disable_statement_logging()
        .connect()
        .await
        .ok()
}

/// The ready pod `database-0` of a namespace: its uid and IP.
pub async fn database_pod(client: &Client, node: &NodeSim, namespace: &str) -> (String, String) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    eventually(&format!("{namespace}/database-0 to be ready"), || async {
        let pod = pods.get_opt("database-0").await.ok()??;
        if !atoll_testkit::nodesim::workloads::pod_ready(&pod) {
            return None;
        }
        Some((
            pod.metadata.uid?,
            node.pod_ip(namespace, "database-0")?.to_string(),
        ))
    })
    .await
}

/// The value of `key` in a Secret of `namespace`.
pub async fn secret_value(client: &Client, namespace: &str, name: &str, key: &str) -> String {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = eventually(&format!("Secret {namespace}/{name}"), || async {
        secrets.get_opt(name).await.ok()?
    })
    .await;
    String::from_utf8(secret.data.expect("data")[key].0.clone()).expect("text")
}

/// No container log under nodesim holds the store's secret key.
pub fn assert_no_credential_in_logs(node: &NodeSim, s3: &TestS3) {
    for file in walk(&node.logs_dir()) {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            !text.contains(&s3.secret_access_key),
            "credential in {}",
            file.display()
        );
    }
}

/// The files under `dir`, recursively.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// A free loopback address (for the operator's metrics endpoint).
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
}
