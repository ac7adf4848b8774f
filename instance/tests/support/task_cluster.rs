//! A cluster for task pods: kubesim, nodesim playing the node (script
//! images as the local interpreters, this crate's binary as the file
//! helpers), the tenant's namespace with its `default` service account,
//! and the Kubernetes runner with its attempt routes served on a loopback
//! port.

use std::sync::Arc;

use atoll_instance::api::attempts;
use atoll_instance::config::TaskSettings;
use atoll_instance::runner::kubernetes::{Attempts, KubernetesRunner};
use atoll_instance::runner::{Runners, ScriptRunner};
use atoll_testkit::cluster::{ClusterKind, TestCluster};
use atoll_testkit::nodesim::{NodeSim, NodeSimConfig};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;

/// The tenant namespace task pods run in.
pub const NS: &str = "atoll-acme";

/// The running cluster; dropping it stops everything.
pub struct TaskCluster {
    pub client: Client,
    pub node: NodeSim,
    pub cluster: TestCluster,
}

impl TaskCluster {
    pub async fn start() -> TaskCluster {
        let cluster = TestCluster::start(ClusterKind::KubeSim)
            .await
            .expect("kubesim starts");
        let config = NodeSimConfig::new(cluster.dir().join("node"))
            .script_images()
            .binary("atoll-instance", env!("CARGO_BIN_EXE_atoll-instance"));
        let node = cluster.start_node(config).await.expect("nodesim starts");
        let client = cluster.client();
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NS}})).expect("ns");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("namespace created");
        let account: ServiceAccount =
            serde_json::from_value(json!({"metadata": {"name": "default"}})).expect("sa");
        Api::<ServiceAccount>::namespaced(client.clone(), NS)
            .create(&PostParams::default(), &account)
            .await
            .expect("service account created");
        TaskCluster {
            client,
            node,
            cluster,
        }
    }

    /// The Kubernetes runner for `settings` (its namespace, image and API
    /// URL are filled in here), with its attempt routes served.
    pub async fn runner(&self, mut settings: TaskSettings) -> (TaskSettings, Runners) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        settings.namespace = Some(NS.into());
        settings.instance_image = Some("atoll-instance:test".into());
        settings.api_url = Some(format!("http://{}", listener.local_addr().expect("addr")));
        let runner = KubernetesRunner::with_client(self.client.clone(), &settings).expect("runner");
        let app = attempts::routes::<Attempts>().with_state(runner.attempts());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let runners = Runners {
            kubernetes: Some(Arc::new(runner) as Arc<dyn ScriptRunner>),
        };
        (settings, runners)
    }
}
