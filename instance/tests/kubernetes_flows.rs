//! Kestra flows whose script tasks run on the Kubernetes task runner, end
//! to end: the engine, the script task types, the runner, task pods on
//! kubesim played by nodesim (the local Python 3 for `python:*`, this
//! crate's binary as the file helpers), the attempt routes over real HTTP,
//! the internal storage. Each runs on kubesim and on realkube (see
//! `atoll_testkit::cluster`), where the real API server proxies the task
//! log the runner follows to nodesim's kubelet endpoint.

mod support;

use std::time::Duration;

use atoll_instance::config::{RunnerKind, TaskSettings};
use atoll_instance::engine::{Engine, EngineConfig};
use atoll_instance::execution::{Execution, State};
use atoll_instance::runner::TaskServices;
use atoll_instance::runner::kubernetes::pod::SELECTOR;
use atoll_instance::storage::{Storage, StoragePath};
use atoll_testkit::cluster::ClusterKind;
use atoll_testkit::wait::eventually;
use bytes::Bytes;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, ListParams};
use serde_json::{Map, json};
use support::task_cluster::{NS, TaskCluster};
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(60);

struct Harness {
    engine: Engine,
    storage: Storage,
    client: Client,
    shutdown: CancellationToken,
    _cluster: TaskCluster,
    _dir: tempfile::TempDir,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Harness {
    /// An engine whose default task runner is Kubernetes.
    async fn new(kind: ClusterKind) -> Harness {
        let cluster = TaskCluster::start(kind).await;
        let client = cluster.client.clone();
        let (settings, runners) = cluster
            .runner(TaskSettings {
                runner: RunnerKind::Kubernetes,
                max_pods: 2,
                allowed_images: vec!["python:*".into()],
                ..TaskSettings::default()
            })
            .await;
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite:{}", dir.path().join("engine.db").display());
        let store = atoll_instance::store::Store::connect(&url)
            .await
            .expect("store");
        let storage = Storage::dir(dir.path().join("storage"));
        let config = EngineConfig {
            storage: storage.clone(),
            tasks: TaskServices { settings, runners },
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

async fn a_python_script_in_a_task_pod_reads_an_input_file_and_writes_an_output_file(
    kind: ClusterKind,
) {
    let h = Harness::new(kind).await;
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

async fn killing_the_execution_deletes_its_task_pod(kind: ClusterKind) {
    let h = Harness::new(kind).await;
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

atoll_testkit::on_each_cluster!(
    a_python_script_in_a_task_pod_reads_an_input_file_and_writes_an_output_file,
    killing_the_execution_deletes_its_task_pod,
);
