//! A Tenant's life on the real control plane: realkube (etcd,
//! kube-apiserver, kube-controller-manager, kube-scheduler) serves the API
//! and runs the controllers, nodesim plays only the kubelet (as
//! `system:node:nodesim`, judged by the Node authorizer and
//! NodeRestriction), the operator runs in this test. The real controller
//! manager makes the ReplicaSet and the Pods, the real scheduler binds them
//! to nodesim's Node, nodesim runs PostgreSQL and the instance, the Tenant
//! becomes Ready and its instance answers at its pod IP and through the
//! ingress router. Deleted (`Delete`), the real namespace controller
//! removes everything and no process is left.
//!
//! The same scenario runs on kubesim (nodesim playing the controllers too)
//! for the timing comparison it prints.
//!
//! Each runs when `ATOLL_TEST_CLUSTER` selects its cluster (see
//! `atoll_testkit::cluster`). Needs the workspace binaries (`cargo build
//! --bins`) and, for realkube, its binaries (`scripts/realkube-build`):
//! selected without them, the test fails saying so.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use atoll_crds::{Phase, Tenant, tenant_crd};
use atoll_operator::cli::{Cli, Command};
use atoll_operator::run::{RunArgs, run_with_client};
use atoll_testkit::cluster::{self, ClusterKind};
use atoll_testkit::kubesim::KubeSim;
use atoll_testkit::nodesim::registration::PV_LABEL;
use atoll_testkit::nodesim::{
    NodeSim, NodeSimConfig, pid_alive, wait_schedulable, workspace_binary,
};
use atoll_testkit::realkube::{RealKube, RealKubeOptions};
use clap::Parser;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolume, PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::task::JoinHandle;

/// Generous: PostgreSQL's first start runs initdb on a busy 2-core machine.
const TIMEOUT: Duration = Duration::from_secs(180);
const DOMAIN: &str = "atoll.localhost";
const NODE: &str = "nodesim";
const TENANT: &str = "real";
const NAMESPACE: &str = "atoll-real";

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

fn node_config(state: &std::path::Path) -> NodeSimConfig {
    let instance = workspace_binary("atoll-instance");
    assert!(
        instance.is_file(),
        "{} is not built: run `cargo build --bins`",
        instance.display()
    );
    NodeSimConfig::new(state.join("node"))
        .postgres()
        .binary("atoll-instance", instance)
        .ingress("127.0.0.1:0".parse().expect("addr"))
}

/// The cluster: the API (realkube or kubesim), nodesim, the operator.
struct Cluster {
    client: Client,
    /// realkube: nodesim's own client (`system:node:nodesim`).
    node_client: Option<Client>,
    real: Option<RealKube>,
    _sim: Option<KubeSim>,
    node: Option<NodeSim>,
    operator: Option<JoinHandle<()>>,
    ingress: SocketAddr,
    state: tempfile::TempDir,
    /// Start-up of the API server (and its controllers).
    startup: Duration,
}

async fn install_crd(client: &Client) {
    let crd = tenant_crd();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.metadata.name.clone().expect("the CRD has a name");
    crds.patch(
        &name,
        &PatchParams::apply("realkube-lifecycle").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("the Tenant CRD applied");
    common::eventually("the Tenant CRD to be established", TIMEOUT, || async {
        let crd = crds.get(&name).await.ok()?;
        crd.status?
            .conditions?
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
            .then_some(())
    })
    .await;
}

impl Cluster {
    /// realkube, nodesim in kubelet-only mode as `system:node:nodesim`,
    /// the operator as the admin.
    async fn real() -> Cluster {
        let started = Instant::now();
        let kube = RealKube::start(RealKubeOptions::default())
            .await
            .unwrap_or_else(|e| panic!("realkube did not start: {e}"));
        let startup = started.elapsed();
        let client = kube.client();
        install_crd(&client).await;
        let node_client = kube
            .client_as(&format!("system:node:{NODE}"), &["system:nodes"])
            .await
            .expect("a client certificate for the node");
        let state = tempfile::tempdir().expect("state dir");
        let node = NodeSim::start_kubelet(
            node_client.clone(),
            client.clone(),
            node_config(state.path()),
        )
        .await
        .expect("nodesim starts in kubelet mode");
        // The Node is Ready and the node lifecycle controller has lifted
        // its not-ready taint: the scheduler may bind to it.
        wait_schedulable(&client, NODE, TIMEOUT).await;
        let ingress = node.ingress_addr().expect("ingress router");
        let mut cluster = Cluster {
            client,
            node_client: Some(node_client),
            real: Some(kube),
            _sim: None,
            node: Some(node),
            operator: None,
            ingress,
            state,
            startup,
        };
        cluster.start_operator();
        cluster
    }

    /// kubesim with nodesim playing kubelet and the controllers.
    async fn sim() -> Cluster {
        let started = Instant::now();
        let sim = KubeSim::builder().graceful_pod_deletion(true).build();
        let client = sim.client();
        let startup = started.elapsed();
        install_crd(&client).await;
        let state = tempfile::tempdir().expect("state dir");
        let node = NodeSim::start(client.clone(), node_config(state.path()))
            .await
            .expect("nodesim starts");
        let ingress = node.ingress_addr().expect("ingress router");
        let mut cluster = Cluster {
            client,
            node_client: None,
            real: None,
            _sim: Some(sim),
            node: Some(node),
            operator: None,
            ingress,
            state,
            startup,
        };
        cluster.start_operator();
        cluster
    }

    fn start_operator(&mut self) {
        let client = self.client.clone();
        self.operator = Some(tokio::spawn(async move {
            if let Err(error) = run_with_client(run_args(), client).await {
                panic!("operator stopped: {error}");
            }
        }));
    }

    fn node(&self) -> &NodeSim {
        self.node.as_ref().expect("nodesim runs")
    }

    async fn tenant(&self) -> Option<Tenant> {
        Api::<Tenant>::all(self.client.clone())
            .get_opt(TENANT)
            .await
            .ok()
            .flatten()
    }

    async fn pods(&self) -> Vec<Pod> {
        Api::<Pod>::namespaced(self.client.clone(), NAMESPACE)
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
    }

    /// What the cluster looks like, for a failure message.
    async fn diagnose(&self) -> String {
        use k8s_openapi::api::core::v1::Event;
        let mut out = String::new();
        let tenant = self.tenant().await.and_then(|t| t.status);
        out += &format!("Tenant status: {}\n", json!(tenant));
        for pod in self.pods().await {
            out += &format!(
                "pod {} node={:?} status={}\n",
                pod.name_any(),
                pod.spec.as_ref().and_then(|s| s.node_name.clone()),
                json!(pod.status)
            );
        }
        let claims = Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), NAMESPACE)
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        for claim in claims {
            out += &format!(
                "pvc {} spec={} status={}\n",
                claim.name_any(),
                json!(claim.spec),
                json!(claim.status)
            );
        }
        let events = Api::<Event>::namespaced(self.client.clone(), NAMESPACE)
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        for event in events {
            out += &format!(
                "event {:?} {:?} {:?}: {:?}\n",
                event.involved_object.name, event.type_, event.reason, event.message
            );
        }
        out
    }

    async fn stop(mut self) {
        if let Some(operator) = self.operator.take() {
            operator.abort();
        }
        if let Some(node) = self.node.take() {
            node.shutdown().await;
        }
        if let Some(kube) = self.real.take() {
            kube.stop().expect("realkube stops leaving nothing");
        }
    }
}

/// Applies the Tenant, waits until it is Ready and its instance answers;
/// returns the time to Ready. On realkube it also checks who did what.
async fn tenant_lives_and_dies(cluster: &Cluster) -> Duration {
    let tenant = json!({
        "apiVersion": "atoll.dev/v1alpha1", "kind": "Tenant",
        "metadata": {"name": TENANT},
        "spec": {
            "database": {"mode": "Dedicated"},
            "deletionPolicy": "Delete",
            "members": [{"user": "alice@acme.com", "role": "Admin"}],
        },
    });
    let applied = Instant::now();
    Api::<Tenant>::all(cluster.client.clone())
        .patch(
            TENANT,
            &PatchParams::apply("realkube-lifecycle").force(),
            &Patch::Apply(&tenant),
        )
        .await
        .expect("Tenant applied");
    let ready = common::eventually("the Tenant to be Ready", TIMEOUT * 2, || async {
        let tenant = cluster.tenant().await?;
        (tenant.current_phase() == Some(Phase::Ready)).then_some(())
    });
    if tokio::time::timeout(TIMEOUT, ready).await.is_err() {
        panic!(
            "the Tenant was not Ready within {TIMEOUT:?}:\n{}",
            cluster.diagnose().await
        );
    }
    let ready_after = applied.elapsed();

    // Every pod is bound to nodesim's node, runs, and reports its IP.
    let pods = cluster.pods().await;
    assert!(pods.len() >= 2, "database and instance pods: {pods:?}");
    for pod in &pods {
        let spec = pod.spec.as_ref().expect("spec");
        if cluster.real.is_some() {
            // Bound by the real scheduler (nodesim's own controllers on
            // kubesim make pods without a node).
            assert_eq!(spec.node_name.as_deref(), Some(NODE), "{}", pod.name_any());
        }
        let status = pod.status.as_ref().expect("status");
        assert_eq!(
            status.phase.as_deref(),
            Some("Running"),
            "{}",
            pod.name_any()
        );
        let ready = status.container_statuses.iter().flatten().all(|c| c.ready);
        assert!(
            ready,
            "{} has unready containers: {status:?}",
            pod.name_any()
        );
    }
    let instance = pods
        .iter()
        .find(|p| {
            p.labels()
                .get("app.kubernetes.io/component")
                .map(String::as_str)
                == Some("instance")
        })
        .expect("an instance pod");
    let pod_ip = instance
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("the instance pod reports its IP");
    assert_eq!(
        Some(pod_ip.clone()),
        cluster
            .node()
            .pod_ip(NAMESPACE, &instance.name_any())
            .map(|ip| ip.to_string())
    );
    let port = instance
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.ports.as_ref())
        .and_then(|p| p.first())
        .map(|p| p.container_port)
        .expect("the instance declares its port");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client");
    let healthz = http
        .get(format!("http://{pod_ip}:{port}/healthz"))
        .send()
        .await
        .expect("the instance answers at its pod IP");
    assert!(healthz.status().is_success(), "{}", healthz.status());
    // And through the ingress router, as a browser would.
    let host = format!("{TENANT}.{DOMAIN}");
    let browser = reqwest::Client::builder()
        .resolve(&host, cluster.ingress)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client");
    let url = format!("http://{host}:{}/healthz", cluster.ingress.port());
    let routed = common::eventually("the tenant URL to answer", TIMEOUT, || async {
        let r = browser.get(&url).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    let () = routed;

    if cluster.real.is_some() {
        // The real controller manager made the ReplicaSet (nodesim writes
        // none in kubelet mode).
        let sets = Api::<ReplicaSet>::namespaced(cluster.client.clone(), NAMESPACE)
            .list(&ListParams::default())
            .await
            .expect("ReplicaSets");
        assert!(
            !sets.items.is_empty(),
            "the controller manager made a ReplicaSet"
        );
        for set in &sets.items {
            let managers: BTreeSet<String> = set
                .managed_fields()
                .iter()
                .filter_map(|m| m.manager.clone())
                .collect();
            assert!(
                !managers.contains("nodesim"),
                "nodesim wrote ReplicaSet {}: {managers:?}",
                set.name_any()
            );
        }
        for pod in &pods {
            let creators: Vec<String> = pod
                .managed_fields()
                .iter()
                .filter(|m| m.operation.as_deref() == Some("Update") && m.subresource.is_none())
                .filter_map(|m| m.manager.clone())
                .collect();
            assert!(
                creators.iter().all(|m| m == "kube-controller-manager"),
                "pod {} written by {creators:?}",
                pod.name_any()
            );
        }
        // nodesim's identity is a node's: the Node authorizer lets it read
        // the Secret its pods use, not another one, and NodeRestriction
        // keeps it off workloads.
        let node_client = cluster.node_client.clone().expect("node client");
        let secrets = Api::<Secret>::namespaced(cluster.client.clone(), NAMESPACE);
        let used = pods
            .iter()
            .flat_map(|p| p.spec.iter().flat_map(|s| s.containers.iter()))
            .flat_map(|c| c.env.iter().flatten())
            .find_map(|e| e.value_from.as_ref()?.secret_key_ref.as_ref())
            .map(|r| r.name.clone())
            .expect("a pod reads a Secret");
        secrets
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "unrelated"}}))
                    .expect("secret"),
            )
            .await
            .expect("a Secret no pod uses");
        let as_node = Api::<Secret>::namespaced(node_client.clone(), NAMESPACE);
        as_node
            .get(&used)
            .await
            .unwrap_or_else(|e| panic!("the node may read Secret {used}: {e}"));
        match as_node.get("unrelated").await {
            Err(kube::Error::Api(s)) if s.code == 403 => {}
            other => panic!("the node read a Secret no pod of it uses: {other:?}"),
        }
        match Api::<ReplicaSet>::namespaced(node_client, NAMESPACE)
            .list(&ListParams::default())
            .await
        {
            Err(kube::Error::Api(s)) if s.code == 403 => {}
            other => panic!("the node listed ReplicaSets: {other:?}"),
        }

        // The database's claim is bound by the real PV controller to the
        // volume nodesim provisioned.
        let claims = Api::<PersistentVolumeClaim>::namespaced(cluster.client.clone(), NAMESPACE)
            .list(&ListParams::default())
            .await
            .expect("PVCs");
        assert!(!claims.items.is_empty(), "the database has a claim");
        for claim in &claims.items {
            let phase = claim.status.as_ref().and_then(|s| s.phase.clone());
            let volume = claim.spec.as_ref().and_then(|s| s.volume_name.clone());
            assert_eq!(phase.as_deref(), Some("Bound"), "{}", claim.name_any());
            assert_eq!(
                volume,
                claim.uid().map(|u| format!("pvc-{u}")),
                "{}",
                claim.name_any()
            );
        }
    }

    // Delete: the namespace goes (the real namespace controller on
    // realkube), with every process, PV and volume directory.
    let pids: BTreeSet<u32> = pods
        .iter()
        .flat_map(|p| cluster.node().pod_pids(NAMESPACE, &p.name_any()))
        .collect();
    assert!(pids.len() >= 2, "instance and database run: {pids:?}");
    let deleted = Instant::now();
    Api::<Tenant>::all(cluster.client.clone())
        .delete(TENANT, &DeleteParams::default())
        .await
        .expect("Tenant deleted");
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    common::eventually(
        "the Tenant, its namespace and its processes to be gone",
        TIMEOUT,
        || async {
            let tenant_gone = cluster.tenant().await.is_none();
            let namespace_gone = namespaces.get_opt(NAMESPACE).await.ok()?.is_none();
            (tenant_gone && namespace_gone && pids.iter().all(|p| !pid_alive(*p))).then_some(())
        },
    )
    .await;
    let pvc_dir = cluster.state.path().join("node/pvc").join(NAMESPACE);
    common::eventually("the volume directory to be removed", TIMEOUT, || async {
        (!pvc_dir.exists()).then_some(())
    })
    .await;
    if cluster.real.is_some() {
        let volumes: Api<PersistentVolume> = Api::all(cluster.client.clone());
        common::eventually(
            "nodesim's PersistentVolumes to be gone",
            TIMEOUT,
            || async {
                let left = volumes
                    .list(&ListParams::default().labels(&format!("{PV_LABEL}={NODE}")))
                    .await
                    .ok()?;
                left.items.is_empty().then_some(())
            },
        )
        .await;
    }
    println!(
        "deleted: namespace and processes gone in {:.1} s",
        deleted.elapsed().as_secs_f64()
    );
    ready_after
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_lives_and_dies_on_the_real_control_plane() {
    if !cluster::selected("a_tenant_lives_and_dies", ClusterKind::RealKube) {
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_test_writer()
        .try_init();
    let cluster = Cluster::real().await;
    let version = cluster
        .real
        .as_ref()
        .map(|k| k.version().to_owned())
        .unwrap_or_default();
    let ready = tenant_lives_and_dies(&cluster).await;
    println!(
        "realkube {version}: control plane ready in {:.1} s, Tenant Ready in {:.1} s",
        cluster.startup.as_secs_f64(),
        ready.as_secs_f64()
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_tenant_lives_and_dies_on_kubesim() {
    if !cluster::selected("a_tenant_lives_and_dies", ClusterKind::KubeSim) {
        return;
    }
    let cluster = Cluster::sim().await;
    let ready = tenant_lives_and_dies(&cluster).await;
    println!(
        "kubesim: ready in {:.3} s, Tenant Ready in {:.1} s",
        cluster.startup.as_secs_f64(),
        ready.as_secs_f64()
    );
    cluster.stop().await;
}
