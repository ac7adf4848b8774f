//! A Tenant's life with real processes, on kubesim and on the real control
//! plane (`ATOLL_TEST_CLUSTER`, see `atoll_testkit::cluster`): the API
//! server serves the API, nodesim runs the tenant's PostgreSQL and the
//! instance binary as processes (on realkube as kubelet only: the real
//! controllers make the pods and the real garbage collector and namespace
//! controller delete them), the operator runs in this test. A version change rolls the instance,
//! suspend and resume keep the data, Delete leaves no object, process or
//! volume directory, Retain then re-apply finds the same flows and
//! executions, and External mode provisions on a real shared server.
//!
//! Needs the workspace binaries (`cargo test --workspace` builds them) and,
//! for realkube, its binaries (`scripts/realkube-build`).

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use atoll_crds::{Phase, Tenant, conditions, tenant_crd};
use atoll_operator::cli::{Cli, Command};
use atoll_operator::run::{RunArgs, run_with_client};
use atoll_testkit::nodesim::{NodeSim, NodeSimConfig, pid_alive, workspace_binary};
use atoll_testkit::pg::TestPostgres;
use clap::Parser;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use sqlx::Connection;
use tokio::task::JoinHandle;

/// Generous: PostgreSQL's first start runs initdb on a busy 2-core machine.
const TIMEOUT: Duration = Duration::from_secs(120);
const DOMAIN: &str = "atoll.localhost";

const FLOW: &str = "id: hello\nnamespace: team\ntasks:\n  - id: say\n    type: io.kestra.plugin.core.log.Log\n    message: hello from the lifecycle test\n";

struct Cluster {
    cluster: Option<common::TestCluster>,
    client: Client,
    node: Option<NodeSim>,
    operator: JoinHandle<()>,
    ingress: SocketAddr,
    state: tempfile::TempDir,
}

fn run_args() -> RunArgs {
    let cli = Cli::parse_from([
        "atoll-operator",
        "run",
        "--metrics-addr",
        "127.0.0.1:0",
        "--base-domain",
        DOMAIN,
        "--public-port",
        "8080",
    ]);
    match cli.command {
        Command::Run(args) => *args,
        other => panic!("parsed {other:?}"),
    }
}

impl Cluster {
    async fn start(kind: common::ClusterKind) -> Cluster {
        let instance = workspace_binary("atoll-instance");
        assert!(
            instance.is_file(),
            "{} is not built: run `cargo build --bins` (cargo test --workspace does)",
            instance.display()
        );
        let cluster = common::start_cluster(kind).await;
        let client = cluster.client();
        common::install_crd(&client, &tenant_crd()).await;
        let state = tempfile::tempdir().expect("state dir");
        let config = NodeSimConfig::new(state.path().join("node"))
            .postgres()
            .binary("atoll-instance", instance)
            .ingress("127.0.0.1:0".parse().expect("addr"));
        let node = cluster
            .start_node(config)
            .await
            .unwrap_or_else(|e| panic!("nodesim on {kind}: {e}"));
        let ingress = node.ingress_addr().expect("ingress router");
        let operator = {
            let client = client.clone();
            tokio::spawn(async move {
                if let Err(error) = run_with_client(run_args(), client).await {
                    panic!("operator stopped: {error}");
                }
            })
        };
        Cluster {
            cluster: Some(cluster),
            client,
            node: Some(node),
            operator,
            ingress,
            state,
        }
    }

    fn node(&self) -> &NodeSim {
        self.node.as_ref().expect("nodesim runs")
    }

    async fn apply(&self, name: &str, spec: Value) {
        let tenant = json!({
            "apiVersion": "atoll.dev/v1alpha1", "kind": "Tenant",
            "metadata": {"name": name}, "spec": spec,
        });
        Api::<Tenant>::all(self.client.clone())
            .patch(
                name,
                &PatchParams::apply("lifecycle-test").force(),
                &Patch::Apply(&tenant),
            )
            .await
            .unwrap_or_else(|e| panic!("applying Tenant {name}: {e}"));
    }

    async fn tenant(&self, name: &str) -> Option<Tenant> {
        Api::<Tenant>::all(self.client.clone())
            .get_opt(name)
            .await
            .ok()
            .flatten()
    }

    /// Waits for the phase at the Tenant's current generation.
    async fn wait_phase(&self, name: &str, phase: Phase) -> Tenant {
        let what = format!("Tenant {name} to be {phase:?}");
        common::eventually(&what, TIMEOUT, || async {
            let tenant = self.tenant(name).await?;
            (tenant.current_phase() == Some(phase)).then_some(tenant)
        })
        .await
    }

    /// Waits for a condition's status at the Tenant's current generation;
    /// returns its message.
    async fn wait_condition(&self, name: &str, type_: &str, status: &str) -> String {
        let what = format!("Tenant {name} to have {type_}={status}");
        common::eventually(&what, TIMEOUT, || async {
            let tenant = self.tenant(name).await?;
            let current = tenant.status.as_ref()?;
            if current.observed_generation != tenant.metadata.generation {
                return None;
            }
            let condition = conditions::get(&current.conditions, type_)?;
            (condition.status == status).then(|| condition.message.clone())
        })
        .await
    }

    async fn delete(&self, name: &str) {
        Api::<Tenant>::all(self.client.clone())
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete Tenant");
        common::eventually(&format!("Tenant {name} to be gone"), TIMEOUT, || async {
            self.tenant(name).await.is_none().then_some(())
        })
        .await;
    }

    async fn pods(&self, namespace: &str) -> Vec<Pod> {
        Api::<Pod>::namespaced(self.client.clone(), namespace)
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
    }

    /// Uids of the instance's pods in the namespace.
    async fn instance_pods(&self, namespace: &str) -> BTreeSet<String> {
        self.pods(namespace)
            .await
            .iter()
            .filter(|p| {
                p.labels()
                    .get("app.kubernetes.io/component")
                    .map(String::as_str)
                    == Some("instance")
            })
            .filter_map(|p| p.uid())
            .collect()
    }

    /// Process ids of every container of every pod in the namespace.
    async fn pids(&self, namespace: &str) -> BTreeSet<u32> {
        self.pods(namespace)
            .await
            .iter()
            .flat_map(|p| self.node().pod_pids(namespace, &p.name_any()))
            .collect()
    }

    fn pvc_dir(&self, namespace: &str) -> PathBuf {
        self.state.path().join("node/pvc").join(namespace)
    }

    /// An HTTP client that reaches `<tenant>.atoll.localhost` through the
    /// ingress router, as a browser would.
    fn http(&self, tenant: &str) -> (reqwest::Client, String) {
        let host = format!("{tenant}.{DOMAIN}");
        let client = reqwest::Client::builder()
            .resolve(&host, self.ingress)
            .timeout(Duration::from_secs(10))
            .build()
            .expect("http client");
        (client, format!("http://{host}:{}", self.ingress.port()))
    }

    /// Saves the test flow at the tenant's URL and runs it to SUCCESS;
    /// returns the execution id.
    async fn save_and_run(&self, tenant: &str) -> String {
        let (http, base) = self.http(tenant);
        let saved = http
            .post(format!("{base}/api/v1/flows"))
            .header("content-type", "application/x-yaml")
            .body(FLOW)
            .send()
            .await
            .expect("save flow");
        assert!(saved.status().is_success(), "save flow: {}", saved.status());
        let execution: Value = http
            .post(format!("{base}/api/v1/executions/team/hello"))
            .send()
            .await
            .expect("run flow")
            .json()
            .await
            .expect("execution JSON");
        let id = execution["id"].as_str().expect("execution id").to_owned();
        let state = self.wait_execution(tenant, &id).await;
        assert_eq!(state, "SUCCESS");
        id
    }

    /// Waits until the execution is in a final state; returns it.
    async fn wait_execution(&self, tenant: &str, id: &str) -> String {
        let (http, base) = self.http(tenant);
        common::eventually(&format!("execution {id} to end"), TIMEOUT, || async {
            let execution: Value = http
                .get(format!("{base}/api/v1/executions/{id}"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let state = execution["state"]["current"].as_str()?.to_owned();
            ["SUCCESS", "FAILED", "KILLED", "WARNING"]
                .contains(&state.as_str())
                .then_some(state)
        })
        .await
    }

    /// The flow and the execution are still there, as the user left them.
    async fn assert_data_kept(&self, tenant: &str, execution: &str) {
        let (http, base) = self.http(tenant);
        let flow = common::eventually("the instance to answer", TIMEOUT, || async {
            let response = http
                .get(format!("{base}/api/v1/flows/team/hello"))
                .send()
                .await
                .ok()?;
            (response.status() != reqwest::StatusCode::BAD_GATEWAY
                && response.status() != reqwest::StatusCode::SERVICE_UNAVAILABLE)
                .then_some(response)
        })
        .await;
        let status = flow.status();
        let body = flow.text().await.unwrap_or_default();
        assert!(status.is_success(), "flow kept: {status}: {body}");
        assert_eq!(self.wait_execution(tenant, execution).await, "SUCCESS");
    }

    async fn stop(mut self) {
        self.operator.abort();
        if let Some(node) = self.node.take() {
            node.shutdown().await;
        }
        if let Some(cluster) = self.cluster.take() {
            cluster
                .stop()
                .await
                .expect("the cluster stops leaving nothing");
        }
    }
}

atoll_testkit::on_each_cluster!(
    a_tenant_rolls_suspends_and_resumes_with_its_data,
    deletion_leaves_nothing_or_keeps_the_data_for_a_new_tenant,
    external_mode_provisions_on_a_shared_server_and_drops_on_delete,
);

fn condition_true(tenant: &Tenant, kind: &str) -> bool {
    tenant
        .status
        .as_ref()
        .is_some_and(|s| conditions::is_true(&s.conditions, kind))
}

async fn secret_value(client: &Client, namespace: &str, key: &str) -> String {
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get("database-credentials")
        .await
        .expect("credentials Secret");
    let bytes = secret.data.expect("data")[key].0.clone();
    String::from_utf8(bytes).expect("utf-8")
}

async fn a_tenant_rolls_suspends_and_resumes_with_its_data(kind: common::ClusterKind) {
    let cluster = Cluster::start(kind).await;
    let ns = "atoll-life";
    cluster.apply("life", json!({})).await;

    // DatabaseReady turns true only once PostgreSQL accepts connections:
    // the first connection attempt after it is seen succeeds.
    let tenant = common::eventually("DatabaseReady", TIMEOUT, || async {
        let tenant = cluster.tenant("life").await?;
        condition_true(&tenant, conditions::types::DATABASE_READY).then_some(tenant)
    })
    .await;
    let ip = cluster
        .node()
        .service_ip(ns, "database")
        .expect("database Service IP");
    let url = format!(
        "postgres://{}:{}@{ip}:5432/{}",
        secret_value(&cluster.client, ns, "username").await,
        secret_value(&cluster.client, ns, "password").await,
        secret_value(&cluster.client, ns, "database").await,
    );
    let connection = sqlx::PgConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("DatabaseReady was true ({tenant:?}) but: {e}"));
    connection.close().await.expect("close");

    let ready = cluster.wait_phase("life", Phase::Ready).await;
    let version = ready.status.and_then(|s| s.version).expect("version");
    let execution = cluster.save_and_run("life").await;

    // A version change rolls the instance: a new pod runs the new tag.
    let before = cluster.instance_pods(ns).await;
    assert_eq!(before.len(), 1, "one instance pod before the change");
    cluster
        .apply("life", json!({"instance": {"version": "9.9.9"}}))
        .await;
    let rolled = cluster.wait_phase("life", Phase::Ready).await;
    assert_eq!(
        rolled.status.as_ref().and_then(|s| s.version.as_deref()),
        Some("9.9.9"),
        "was {version}"
    );
    let deployment = Api::<Deployment>::namespaced(cluster.client.clone(), ns)
        .get("instance")
        .await
        .expect("instance Deployment");
    let image = deployment
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.containers.first().and_then(|c| c.image.clone()))
        .expect("image");
    assert!(image.ends_with(":9.9.9"), "{image}");
    let after: BTreeSet<String> =
        common::eventually("the new instance pod alone", TIMEOUT, || async {
            let uids = cluster.instance_pods(ns).await;
            (uids.len() == 1 && uids.is_disjoint(&before)).then_some(uids)
        })
        .await;
    assert!(after.is_disjoint(&before));
    cluster.assert_data_kept("life", &execution).await;

    // Suspend: every process stops and the URL stops answering.
    let pids = cluster.pids(ns).await;
    assert!(pids.len() >= 2, "instance and database run: {pids:?}");
    cluster
        .apply(
            "life",
            json!({"instance": {"version": "9.9.9"}, "suspended": true}),
        )
        .await;
    cluster.wait_phase("life", Phase::Suspended).await;
    common::eventually("every process of life to stop", TIMEOUT, || async {
        (cluster.pods(ns).await.is_empty() && pids.iter().all(|p| !pid_alive(*p))).then_some(())
    })
    .await;
    let (http, base) = cluster.http("life");
    let answer = http.get(format!("{base}/healthz")).send().await;
    assert!(
        answer.map_or(true, |r| !r.status().is_success()),
        "a suspended tenant's URL must not answer"
    );

    // Resume: the same flow and execution are there.
    cluster
        .apply(
            "life",
            json!({"instance": {"version": "9.9.9"}, "suspended": false}),
        )
        .await;
    cluster.wait_phase("life", Phase::Ready).await;
    cluster.assert_data_kept("life", &execution).await;
    cluster.stop().await;
}

async fn deletion_leaves_nothing_or_keeps_the_data_for_a_new_tenant(kind: common::ClusterKind) {
    let cluster = Cluster::start(kind).await;
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());

    // Delete: no object, no process, no volume directory.
    cluster
        .apply("gone", json!({"deletionPolicy": "Delete"}))
        .await;
    cluster.wait_phase("gone", Phase::Ready).await;
    cluster.save_and_run("gone").await;
    let pids = cluster.pids("atoll-gone").await;
    assert!(pids.len() >= 2, "instance and database run: {pids:?}");
    assert!(cluster.pvc_dir("atoll-gone").is_dir());
    cluster.delete("gone").await;
    common::eventually(
        "atoll-gone and its processes to be gone",
        TIMEOUT,
        || async {
            let namespace_gone = namespaces.get_opt("atoll-gone").await.ok()?.is_none();
            (namespace_gone && pids.iter().all(|p| !pid_alive(*p))).then_some(())
        },
    )
    .await;
    common::eventually("the volume directory to be removed", TIMEOUT, || async {
        (!cluster.pvc_dir("atoll-gone").exists()).then_some(())
    })
    .await;

    // Retain: the data outlives the Tenant and a new one finds it.
    cluster.apply("kept", json!({})).await;
    cluster.wait_phase("kept", Phase::Ready).await;
    let execution = cluster.save_and_run("kept").await;
    let pids = cluster.pids("atoll-kept").await;
    cluster.delete("kept").await;
    common::eventually("kept's processes to stop", TIMEOUT, || async {
        pids.iter().all(|p| !pid_alive(*p)).then_some(())
    })
    .await;
    assert!(
        namespaces
            .get_opt("atoll-kept")
            .await
            .expect("get")
            .is_some(),
        "Retain keeps the namespace"
    );
    assert!(
        cluster.pvc_dir("atoll-kept").is_dir(),
        "Retain keeps the volume directory"
    );
    cluster.apply("kept", json!({})).await;
    cluster.wait_phase("kept", Phase::Ready).await;
    cluster.assert_data_kept("kept", &execution).await;
    cluster.stop().await;
}

async fn external_mode_provisions_on_a_shared_server_and_drops_on_delete(
    kind: common::ClusterKind,
) {
    let shared = TestPostgres::start();
    let cluster = Cluster::start(kind).await;
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "atoll-system"}}))
                .expect("namespace"),
        )
        .await
        .expect("operator namespace");
    Api::<Secret>::namespaced(cluster.client.clone(), "atoll-system")
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "unmarked-postgres-admin"},
                "stringData": {"url": shared.url},
            }))
            .expect("secret"),
        )
        .await
        .expect("unlabelled Secret");
    Api::<Secret>::namespaced(cluster.client.clone(), "atoll-system")
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {
                    "name": "shared-postgres-admin",
                    "labels": {"atoll.dev/database-admin": "true"},
                },
                "stringData": {"url": shared.url},
            }))
            .expect("secret"),
        )
        .await
        .expect("admin Secret");

    // The tenant starts with a Dedicated database, then moves to the shared
    // server: the Dedicated database's objects are pruned, its volume kept.
    cluster
        .apply("ext", json!({"deletionPolicy": "Delete"}))
        .await;
    cluster.wait_phase("ext", Phase::Ready).await;
    let database_objects = |client: kube::Client| async move {
        let ns = "atoll-ext";
        let mut left = Vec::new();
        if Api::<StatefulSet>::namespaced(client.clone(), ns)
            .get_opt("database")
            .await
            .expect("read")
            .is_some()
        {
            left.push("StatefulSet");
        }
        if Api::<Service>::namespaced(client.clone(), ns)
            .get_opt("database")
            .await
            .expect("read")
            .is_some()
        {
            left.push("Service");
        }
        if Api::<ServiceAccount>::namespaced(client.clone(), ns)
            .get_opt("database")
            .await
            .expect("read")
            .is_some()
        {
            left.push("ServiceAccount");
        }
        if Api::<NetworkPolicy>::namespaced(client, ns)
            .get_opt("database-from-instance")
            .await
            .expect("read")
            .is_some()
        {
            left.push("NetworkPolicy");
        }
        left
    };
    assert_eq!(database_objects(cluster.client.clone()).await.len(), 4);

    // A Secret the platform admin did not label is never used.
    cluster
        .apply(
            "ext",
            json!({
                "deletionPolicy": "Delete",
                "database": {"mode": "External", "external": {
                    "adminSecretRef": {"name": "unmarked-postgres-admin", "key": "url"}}},
            }),
        )
        .await;
    let message = cluster
        .wait_condition("ext", "DatabaseReady", "False")
        .await;
    assert!(
        message.contains("not labelled atoll.dev/database-admin=true"),
        "{message}"
    );
    assert!(!message.contains(&shared.url), "the URL is never shown");

    cluster
        .apply(
            "ext",
            json!({
                "deletionPolicy": "Delete",
                "database": {"mode": "External", "external": {
                    "adminSecretRef": {"name": "shared-postgres-admin", "key": "url"}}},
            }),
        )
        .await;
    cluster.wait_phase("ext", Phase::Ready).await;
    common::eventually(
        "the Dedicated database's objects to be pruned",
        TIMEOUT,
        || async {
            database_objects(cluster.client.clone())
                .await
                .is_empty()
                .then_some(())
        },
    )
    .await;
    assert!(
        cluster.pvc_dir("atoll-ext").is_dir(),
        "the Dedicated database's volume is kept"
    );
    // The instance pod of the Dedicated days is gone (its database is), so
    // the ingress routes only to the one on the shared server.
    common::eventually("one instance pod, no database pod", TIMEOUT, || async {
        let pods = cluster.pods("atoll-ext").await;
        let component = |p: &Pod, c: &str| {
            p.labels()
                .get("app.kubernetes.io/component")
                .map(String::as_str)
                == Some(c)
        };
        let instances = pods.iter().filter(|p| component(p, "instance")).count();
        let databases = pods.iter().filter(|p| component(p, "database")).count();
        (instances == 1 && databases == 0).then_some(())
    })
    .await;
    let execution = cluster.save_and_run("ext").await;

    // The execution is a row in the tenant's own database on the server.
    let databases = shared.psql("postgres", "SELECT datname FROM pg_database ORDER BY 1");
    let database = databases
        .lines()
        .find(|d| d.contains("ext"))
        .unwrap_or_else(|| panic!("no database for ext among {databases}"))
        .to_owned();
    let tables = shared.psql(
        &database,
        "SELECT string_agg(table_name, ',') FROM information_schema.tables WHERE table_schema = current_schema()",
    );
    assert!(
        shared.psql(
            &database,
            &format!("SELECT count(*) FROM executions WHERE id = '{execution}'")
        ) == "1",
        "execution {execution} in {database} (tables {tables})"
    );
    assert!(
        cluster.pods("atoll-ext").await.iter().all(|p| p
            .labels()
            .get("app.kubernetes.io/component")
            .map(String::as_str)
            != Some("database")),
        "External mode runs no database pod"
    );

    cluster.delete("ext").await;
    let databases = shared.psql("postgres", "SELECT datname FROM pg_database ORDER BY 1");
    assert!(
        !databases.lines().any(|d| d == database),
        "Delete drops {database}: {databases}"
    );
    cluster.stop().await;
}
