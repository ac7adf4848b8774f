//! Kestra's documented script-task examples (`tests/script_flows/`), run
//! on both task runners: `Process` (local processes) and `Kubernetes`
//! (task pods played by nodesim, on kubesim and on realkube: see
//! `atoll_testkit::cluster`). The same flows must give the same states and
//! outputs on both runners.
//!
//! - `python_files`: a Python script reads an input file and writes an
//!   output file, which the next task reads back through its URI;
//! - `shell_outputs`: a shell task sets outputs with `::{...}::` lines;
//! - `namespace_kv_secret`: a namespace file, the KV store and a secret.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use atoll_instance::config::{RunnerKind, TaskSettings};
use atoll_instance::engine::{Engine, EngineConfig};
use atoll_instance::execution::{Execution, State};
use atoll_instance::runner::{Runners, TaskServices};
use atoll_instance::storage::{Storage, StoragePath};
use atoll_testkit::cluster::ClusterKind;
use bytes::Bytes;
use serde_json::{Map, Value, json};
use support::task_cluster::TaskCluster;
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(60);
const API_TOKEN: &str = "tok-3f9a8c1e5d7b2a4c6e8f";

fn flows_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/script_flows")
}

struct Harness {
    engine: Engine,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Harness {
    /// An engine whose default runner is `kind`, with the namespace file
    /// `scripts/main.py` of `company.team` and the secret `API_TOKEN`.
    async fn new(kind: RunnerKind, runner: Option<(TaskSettings, Runners)>) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let secrets = dir.path().join("secrets");
        std::fs::create_dir_all(&secrets).expect("secrets dir");
        std::fs::write(secrets.join("API_TOKEN"), API_TOKEN).expect("secret");
        let storage = Storage::dir(dir.path().join("storage"));
        let main_py =
            std::fs::read(flows_dir().join("namespace_files/scripts/main.py")).expect("main.py");
        let path = StoragePath::namespace_files("company.team")
            .and_then(|p| p.join("scripts/main.py"))
            .expect("path");
        storage
            .put(&path, Bytes::from(main_py))
            .await
            .expect("upload");
        let (settings, runners) = runner.unwrap_or_default();
        let url = format!("sqlite:{}", dir.path().join("engine.db").display());
        let store = atoll_instance::store::Store::connect(&url)
            .await
            .expect("store");
        let engine = Engine::new(
            store,
            EngineConfig {
                storage,
                secrets_dir: Some(secrets),
                tasks: TaskServices {
                    settings: TaskSettings {
                        runner: kind,
                        ..settings
                    },
                    runners,
                },
                ..EngineConfig::default()
            },
        );
        let shutdown = CancellationToken::new();
        tokio::spawn({
            let (engine, shutdown) = (engine.clone(), shutdown.clone());
            async move { engine.run(shutdown).await }
        });
        Harness {
            engine,
            shutdown,
            _dir: dir,
        }
    }

    /// Runs the flow of `file` to its end.
    async fn run(&self, file: &str) -> (Execution, Vec<String>) {
        let source = std::fs::read_to_string(flows_dir().join(file)).expect("flow");
        let flow = self.engine.flows().save(&source).await.expect("save");
        let started = self
            .engine
            .start_execution(&flow.namespace, &flow.id, &Map::new(), Vec::new(), None)
            .await
            .expect("start");
        let execution = self.engine.wait(&started.id, LIMIT).await.expect("ended");
        let logs = self
            .engine
            .logs(&execution.id, 0, 1000)
            .await
            .expect("logs");
        (execution, logs.into_iter().map(|l| l.message).collect())
    }
}

fn outputs(execution: &Execution, task: &str) -> Value {
    let run = execution
        .task_run_list
        .iter()
        .find(|r| r.task_id == task)
        .unwrap_or_else(|| panic!("no task run {task}"));
    serde_json::to_value(&run.outputs).unwrap_or_default()
}

/// Every flow of the folder on one harness; what each gave.
async fn check_all(h: &Harness, runner: &str) {
    let (execution, logs) = h.run("python_files.yaml").await;
    assert_eq!(
        execution.state.current,
        State::Success,
        "{runner}: {logs:?}"
    );
    let uri = outputs(&execution, "python_output")["outputFiles"]["myfile.txt"]
        .as_str()
        .expect("an output file URI")
        .to_owned();
    assert!(
        uri.starts_with("kestra:///company/team/python_files/executions/"),
        "{uri}"
    );
    assert!(
        logs.contains(&"wrote myfile.txt".to_owned()),
        "{runner}: {logs:?}"
    );
    assert_eq!(
        outputs(&execution, "read_output")["vars"]["content"],
        json!("status OK, total 6"),
        "{runner}: {logs:?} {:?}",
        outputs(&execution, "read_output")
    );

    let (execution, logs) = h.run("shell_outputs.yaml").await;
    assert_eq!(
        execution.state.current,
        State::Success,
        "{runner}: {logs:?}"
    );
    assert_eq!(
        outputs(&execution, "shell")["vars"],
        json!({"test": "value", "int": 2, "bool": true, "float": 3.65}),
        "{runner}"
    );
    assert!(
        logs.contains(&"value 3 true".to_owned()),
        "{runner}: {logs:?}"
    );

    let (execution, logs) = h.run("namespace_kv_secret.yaml").await;
    assert_eq!(
        execution.state.current,
        State::Success,
        "{runner}: {logs:?}"
    );
    assert_eq!(
        outputs(&execution, "get")["value"],
        json!(execution.id),
        "{runner}"
    );
    // The script printed the secret: the log shows it masked.
    assert!(
        logs.iter().any(|l| l == "token is ******"),
        "{runner}: the secret is masked: {logs:?}"
    );
    let all = format!(
        "{logs:?} {}",
        serde_json::to_string(&execution.task_run_list).unwrap_or_default()
    );
    assert!(!all.contains(API_TOKEN), "{runner}: the secret leaked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kestra_script_examples_pass_on_the_process_runner() {
    let h = Harness::new(RunnerKind::Process, None).await;
    check_all(&h, "Process").await;
}

async fn kestra_script_examples_pass_on_the_kubernetes_runner(kind: ClusterKind) {
    let cluster = TaskCluster::start(kind).await;
    let runner = cluster.runner(TaskSettings::default()).await;
    let h = Harness::new(RunnerKind::Kubernetes, Some(runner)).await;
    check_all(&h, "Kubernetes").await;
    drop(h);
    drop(cluster);
}

atoll_testkit::on_each_cluster!(kestra_script_examples_pass_on_the_kubernetes_runner);
