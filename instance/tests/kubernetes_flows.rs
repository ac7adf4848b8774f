//! Kestra flows whose script tasks run on the Kubernetes task runner, end
//! to end: the engine, the script task types, the runner, task pods on
//! kubesim played by nodesim (the local Python 3 for `python:*`, this
//! crate's binary as the file helpers), the attempt routes over real HTTP,
//! the internal storage. kubesim only: on realkube the API server reads
//! pod logs from a kubelet endpoint nodesim does not serve.

use std::sync::Arc;
use std::time::Duration;

use atoll_instance::api::attempts;
use atoll_instance::config::{RunnerKind, TaskSettings};
use atoll_instance::engine::{Engine, EngineConfig};
use atoll_instance::execution::{Execution, State};
use atoll_instance::runner::kubernetes::pod::SELECTOR;
use atoll_instance::runner::kubernetes::{Attempts, KubernetesRunner};
use atoll_instance::runner::{Runners, ScriptRunner, TaskServices};
use atoll_instance::storage::{Storage, StoragePath};
use atoll_testkit::cluster::{ClusterKind, TestCluster};
use atoll_testkit::nodesim::{NodeSim, NodeSimConfig};
use atoll_testkit::wait::eventually;
use bytes::Bytes;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Map, json};
use tokio_util::sync::CancellationToken;

const NS: &str = "atoll-acme";
const LIMIT: Duration = Duration::from_secs(60);

struct Harness {
    engine: Engine,
    storage: Storage,
    client: Client,
    shutdown: CancellationToken,
    _cluster: TestCluster,
    _node: NodeSim,
    _dir: tempfile::TempDir,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The cluster, the namespace and its `default` service account.
async fn cluster() -> (TestCluster, NodeSim, Client) {
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
    (cluster, node, client)
}

impl Harness {
    /// An engine whose default task runner is Kubernetes.
    async fn new() -> Harness {
        let (cluster, node, client) = cluster().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let settings = TaskSettings {
            namespace: Some(NS.into()),
            instance_image: Some("atoll-instance:test".into()),
            api_url: Some(format!("http://{}", listener.local_addr().expect("addr"))),
            runner: RunnerKind::Kubernetes,
            max_pods: 2,
            allowed_images: vec!["python:*".into()],
            ..TaskSettings::default()
        };
        let runner = KubernetesRunner::with_client(client.clone(), &settings).expect("runner");
        let app = attempts::routes::<Attempts>().with_state(runner.attempts());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite:{}", dir.path().join("engine.db").display());
        let store = atoll_instance::store::Store::connect(&url)
            .await
            .expect("store");
        let storage = Storage::dir(dir.path().join("storage"));
        let config = EngineConfig {
            storage: storage.clone(),
            tasks: TaskServices {
                settings,
                runners: Runners {
                    kubernetes: Some(Arc::new(runner) as Arc<dyn ScriptRunner>),
                },
            },
            ..EngineConfig::default()
        };
        let engine = Engine::new(store, config);
        let shutdown = CancellationToken::new();
        tokio::spawn({
            let engine = engine.clone();
            let shutdown = shutdown.clone();
            async move { engine.run(shutdown).await }
        });
        Harness {
            engine,
            storage,
            client,
            shutdown,
            _cluster: cluster,
            _node: node,
            _dir: dir,
        }
    }

    async fn start(&self, source: &str) -> Execution {
        let flow = self.engine.flows().save(source).await.expect("save");
        self.engine
            .start_execution(&flow.namespace, &flow.id, &Map::new(), Vec::new(), None)
            .await
            .expect("start")
    }

    async fn messages(&self, id: &str) -> Vec<String> {
        let logs = self.engine.logs(id, 0, 1000).await.expect("logs");
        logs.into_iter().map(|l| l.message).collect()
    }

    async fn task_pods(&self) -> Vec<Pod> {
        Api::<Pod>::namespaced(self.client.clone(), NS)
            .list(&ListParams::default().labels(SELECTOR))
            .await
            .map(|l| l.items)
            .unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_script_in_a_task_pod_reads_an_input_file_and_writes_an_output_file() {
    let h = Harness::new().await;
    let started = h
        .start(
            r#"
id: python_files
namespace: company.team
tasks:
  - id: py
    type: io.kestra.plugin.scripts.python.Script
    taskRunner:
      type: io.kestra.plugin.ee.kubernetes.runner.Kubernetes
    containerImage: python:3.12-slim
    inputFiles:
      data.json: |
        {"status": "OK", "orders": [3, 4]}
    outputFiles:
      - "*.csv"
    script: |
      import json
      from kestra import Kestra
      data = json.load(open("data.json"))
      with open("orders.csv", "w") as f:
          f.write("order\n" + "\n".join(str(o) for o in data["orders"]) + "\n")
      print(f"status {data['status']}")
      Kestra.outputs({"count": len(data["orders"])})
"#,
        )
        .await;
    let execution = h.engine.wait(&started.id, LIMIT).await.expect("finished");
    let logs = h.messages(&execution.id).await;
    assert_eq!(execution.state.current, State::Success, "{logs:?}");
    let run = execution
        .task_run_list
        .iter()
        .find(|r| r.task_id == "py")
        .expect("task run");
    assert_eq!(run.outputs["exitCode"], 0);
    assert_eq!(run.outputs["vars"], json!({"count": 2}));
    let expected =
        StoragePath::task_run("company.team", "python_files", &execution.id, "py", &run.id)
            .and_then(|p| p.join("orders.csv"))
            .expect("path");
    assert_eq!(run.outputs["outputFiles"]["orders.csv"], expected.uri());
    let content = h.storage.get(&expected).await.expect("stored");
    assert_eq!(content, Bytes::from_static(b"order\n3\n4\n"));
    assert!(logs.contains(&"status OK".to_owned()), "{logs:?}");
    eventually("the task pod deleted", LIMIT, || async {
        h.task_pods().await.is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_execution_deletes_its_task_pod() {
    let h = Harness::new().await;
    let started = h
        .start(
            r#"
id: slow
namespace: company.team
tasks:
  - id: wait
    type: io.kestra.plugin.scripts.python.Script
    containerImage: python:3.12-slim
    script: |
      import time
      print("waiting", flush=True)
      time.sleep(600)
"#,
        )
        .await;
    eventually("the script running in its pod", LIMIT, || async {
        let logs = h.messages(&started.id).await;
        logs.iter().any(|l| l == "waiting").then_some(())
    })
    .await;
    let pods = h.task_pods().await;
    assert_eq!(pods.len(), 1);
    let labels = pods[0].metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels["atoll.dev/execution"], started.id);
    assert!(h.engine.kill(&started.id).await.expect("kill"));
    let execution = h.engine.wait(&started.id, LIMIT).await.expect("finished");
    assert_eq!(execution.state.current, State::Killed);
    eventually("the task pod deleted", LIMIT, || async {
        h.task_pods().await.is_empty().then_some(())
    })
    .await;
}
