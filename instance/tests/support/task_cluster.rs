//! A cluster for task pods: kubesim or realkube (see
//! `atoll_testkit::cluster`), nodesim playing the node (script images as
//! the local interpreters, this crate's binary as the file helpers), the
//! tenant's namespace with its `default` service account, and the
//! Kubernetes runner with its attempt routes served on a loopback port,
//! acting as the instance's service account, which may only manage pods
//! and read their logs in the namespace (on realkube, the API server
//! proxies those logs to nodesim's kubelet endpoint).

use std::sync::Arc;
use std::time::Duration;

use atoll_instance::api::attempts;
use atoll_instance::config::TaskSettings;
use atoll_instance::runner::kubernetes::{Attempts, KubernetesRunner};
use atoll_instance::runner::{Runners, ScriptRunner};
use atoll_testkit::cluster::{ClusterKind, TestCluster};
use atoll_testkit::nodesim::{NodeSim, NodeSimConfig};
use atoll_testkit::wait::eventually;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

/// The tenant namespace task pods run in.
pub const NS: &str = "atoll-acme";

/// The running cluster; dropping it stops everything.
pub struct TaskCluster {
    /// The admin's client.
    pub client: Client,
    /// The runner's client: the instance's service account.
    pub runner_client: Client,
    pub node: NodeSim,
    pub cluster: TestCluster,
}

impl TaskCluster {
    pub async fn start(kind: ClusterKind) -> TaskCluster {
        let cluster = TestCluster::start(kind)
            .await
            .unwrap_or_else(|e| panic!("{kind} starts: {e}"));
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
        let accounts = Api::<ServiceAccount>::namespaced(client.clone(), NS);
        if kind == ClusterKind::KubeSim {
            // realkube's controller manager creates it.
            let account: ServiceAccount =
                serde_json::from_value(json!({"metadata": {"name": "default"}})).expect("sa");
            accounts
                .create(&PostParams::default(), &account)
                .await
                .expect("service account created");
        }
        eventually(
            "service account default",
            Duration::from_secs(60),
            || async { accounts.get_opt("default").await.ok().flatten() },
        )
        .await;
        let runner_client = instance_rights(&cluster, &client).await;
        TaskCluster {
            client,
            runner_client,
            node,
            cluster,
        }
    }

    /// The Kubernetes runner for `settings` (its namespace, image and API
    /// URL are filled in here), with its attempt routes served.
    pub async fn kubernetes_runner(
        &self,
        mut settings: TaskSettings,
    ) -> (TaskSettings, KubernetesRunner) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        settings.namespace = Some(NS.into());
        settings.instance_image = Some("atoll-instance:test".into());
        settings.api_url = Some(format!("http://{}", listener.local_addr().expect("addr")));
        let runner =
            KubernetesRunner::with_client(self.runner_client.clone(), &settings).expect("runner");
        let app = attempts::routes::<Attempts>().with_state(runner.attempts());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (settings, runner)
    }

    /// The same, as the engine's runners.
    pub async fn runner(&self, settings: TaskSettings) -> (TaskSettings, Runners) {
        let (settings, runner) = self.kubernetes_runner(settings).await;
        let runners = Runners {
            kubernetes: Some(Arc::new(runner) as Arc<dyn ScriptRunner>),
        };
        (settings, runners)
    }
}

/// A client as the instance's service account `atoll-instance`, bound to
/// a Role that may only create, get, list, watch and delete pods and get
/// their logs in the namespace (what the operator grants the instance).
async fn instance_rights(cluster: &TestCluster, admin: &Client) -> Client {
    let account: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "atoll-instance"}})).expect("sa");
    Api::<ServiceAccount>::namespaced(admin.clone(), NS)
        .create(&PostParams::default(), &account)
        .await
        .expect("instance service account created");
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "atoll-instance-task-pods"},
        "rules": [
            {"apiGroups": [""], "resources": ["pods"],
             "verbs": ["create", "get", "list", "watch", "delete"]},
            {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}
        ]
    }))
    .expect("role");
    Api::<Role>::namespaced(admin.clone(), NS)
        .create(&PostParams::default(), &role)
        .await
        .expect("role created");
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "atoll-instance-task-pods"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": "atoll-instance-task-pods"},
        "subjects": [{"kind": "ServiceAccount", "name": "atoll-instance", "namespace": NS}]
    }))
    .expect("binding");
    Api::<RoleBinding>::namespaced(admin.clone(), NS)
        .create(&PostParams::default(), &binding)
        .await
        .expect("binding created");
    let client = cluster
        .client_as_service_account(NS, "atoll-instance")
        .await
        .expect("the instance's client");
    // RBAC holds for this client: nothing beyond pods.
    let secrets = Api::<Secret>::namespaced(client.clone(), NS)
        .list(&ListParams::default())
        .await;
    assert!(
        matches!(&secrets, Err(kube::Error::Api(s)) if s.code == 403),
        "{secrets:?}"
    );
    client
}
