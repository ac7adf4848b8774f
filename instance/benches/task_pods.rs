//! Task-pod overhead (not a test): the same script task, run N times on the
//! `Process` runner and on the `Kubernetes` runner in the same run, in the
//! sandbox's cluster (kubesim as the API server, nodesim as the node: the
//! script image as the local shell, this crate's binary as the file
//! helpers). For task pods it prints where the time goes, from watch events
//! of the pod: created → the script running (after the `fetch` helper) →
//! the script ended → outputs collected (the `upload` helper, the pod's
//! end, the execution's end). Prints figures; asserts nothing about time.
//!
//! `cargo bench -p atoll-instance --bench task_pods` (BENCH_TASK_RUNS
//! executions per runner, default 20).
#![allow(clippy::print_stdout, clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use atoll_instance::api::attempts;
use atoll_instance::config::{RunnerKind, TaskSettings};
use atoll_instance::engine::{Engine, EngineConfig};
use atoll_instance::execution::State;
use atoll_instance::runner::kubernetes::{Attempts, KubernetesRunner};
use atoll_instance::runner::{Runners, ScriptRunner, TaskServices};
use atoll_instance::storage::Storage;
use atoll_testkit::cluster::{ClusterKind, TestCluster};
use atoll_testkit::nodesim::NodeSimConfig;
use common::{env_number, percentile};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
use serde_json::{Map, json};
use tokio_util::sync::CancellationToken;

const NS: &str = "atoll-bench";

fn flow(id: &str, runner: &str) -> String {
    format!(
        "id: {id}\nnamespace: bench\ntasks:\n  - id: sh\n    type: io.kestra.plugin.scripts.shell.Commands\n    containerImage: alpine:3.20\n    taskRunner:\n      type: {runner}\n    outputFiles: [out.txt]\n    commands:\n      - echo hello > out.txt\n"
    )
}

/// When each pod reached each step, as the watch saw it.
#[derive(Debug, Default, Clone)]
struct Steps {
    created: Option<Instant>,
    script_running: Option<Instant>,
    script_ended: Option<Instant>,
    execution: String,
}

fn record(steps: &Mutex<BTreeMap<String, Steps>>, pod: &Pod) {
    let now = Instant::now();
    let mut all = steps.lock().unwrap();
    let entry = all.entry(pod.name_any()).or_default();
    entry.created.get_or_insert(now);
    if let Some(id) = pod.labels().get("atoll.dev/execution") {
        entry.execution = id.clone();
    }
    let task = pod
        .status
        .as_ref()
        .and_then(|s| s.init_container_statuses.as_ref())
        .and_then(|l| l.iter().find(|c| c.name == "task"))
        .and_then(|c| c.state.clone());
    if let Some(state) = task {
        if state.running.is_some() || state.terminated.is_some() {
            entry.script_running.get_or_insert(now);
        }
        if state.terminated.is_some() {
            entry.script_ended.get_or_insert(now);
        }
    }
}

async fn cluster() -> (TestCluster, atoll_testkit::nodesim::NodeSim, kube::Client) {
    let cluster = TestCluster::start(ClusterKind::KubeSim).await.unwrap();
    let config = NodeSimConfig::new(cluster.dir().join("node"))
        .script_images()
        .binary("atoll-instance", env!("CARGO_BIN_EXE_atoll-instance"));
    let node = cluster.start_node(config).await.unwrap();
    let client = cluster.client();
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NS}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "default"}})).unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();
    (cluster, node, client)
}

async fn engine(client: &kube::Client, dir: &std::path::Path) -> Engine {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let settings = TaskSettings {
        namespace: Some(NS.into()),
        instance_image: Some("atoll-instance:bench".into()),
        api_url: Some(format!("http://{}", listener.local_addr().unwrap())),
        runner: RunnerKind::Process,
        max_pods: 4,
        ..TaskSettings::default()
    };
    let runner = KubernetesRunner::with_client(client.clone(), &settings).unwrap();
    let app = attempts::routes::<Attempts>().with_state(runner.attempts());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let url = format!("sqlite:{}", dir.join("engine.db").display());
    let store = atoll_instance::store::Store::connect(&url).await.unwrap();
    let engine = Engine::new(
        store,
        EngineConfig {
            storage: Storage::dir(dir.join("storage")),
            tasks: TaskServices {
                settings,
                runners: Runners {
                    kubernetes: Some(Arc::new(runner) as Arc<dyn ScriptRunner>),
                },
            },
            ..EngineConfig::default()
        },
    );
    let shutdown = CancellationToken::new();
    tokio::spawn({
        let engine = engine.clone();
        async move { engine.run(shutdown).await }
    });
    engine
}

/// Runs `flow_id` `runs` times one after the other; each run's id, start
/// and end.
async fn run(engine: &Engine, flow_id: &str, runs: usize) -> Vec<(String, Instant, Instant)> {
    let mut out = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let execution = engine
            .start_execution("bench", flow_id, &Map::new(), Vec::new(), None)
            .await
            .unwrap();
        let ended = engine
            .wait(&execution.id, Duration::from_secs(120))
            .await
            .unwrap();
        assert_eq!(ended.state.current, State::Success, "{flow_id}");
        out.push((execution.id, start, Instant::now()));
    }
    out
}

fn line(label: &str, mut values: Vec<Duration>) {
    values.sort();
    println!(
        "  {label:<34} p50 {:>7.1} ms   p90 {:>7.1} ms   max {:>7.1} ms",
        percentile(&values, 0.5).as_secs_f64() * 1e3,
        percentile(&values, 0.9).as_secs_f64() * 1e3,
        values.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}

fn main() {
    let runs = env_number("BENCH_TASK_RUNS", 20);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let (_cluster, _node, client) = cluster().await;
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(&client, dir.path()).await;
        for (id, runner) in [
            ("on_process", "io.kestra.plugin.core.runner.Process"),
            ("on_pod", "io.kestra.plugin.ee.kubernetes.runner.Kubernetes"),
        ] {
            engine.flows().save(&flow(id, runner)).await.unwrap();
        }
        let steps = Arc::new(Mutex::new(BTreeMap::new()));
        let watch = tokio::spawn({
            let (steps, pods) = (steps.clone(), Api::<Pod>::namespaced(client.clone(), NS));
            async move {
                let mut events = std::pin::pin!(watcher(pods, watcher::Config::default()));
                while let Some(event) = events.next().await {
                    if let Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) = event {
                        record(&steps, &pod);
                    }
                }
            }
        });
        // One of each first, so neither runner pays for first-use costs.
        run(&engine, "on_process", 1).await;
        run(&engine, "on_pod", 1).await;
        let process = run(&engine, "on_process", runs).await;
        let pods = run(&engine, "on_pod", runs).await;
        watch.abort();
        let steps = steps.lock().unwrap().clone();
        report(runs, &process, &pods, &steps);
    });
}

fn report(
    runs: usize,
    process: &[(String, Instant, Instant)],
    pods: &[(String, Instant, Instant)],
    steps: &BTreeMap<String, Steps>,
) {
    println!(
        "task-pod overhead, {runs} executions per runner, one after the other (kubesim + nodesim)"
    );
    println!("Process runner (a local process in the instance):");
    line(
        "execution, start to end",
        process.iter().map(|(_, s, e)| *e - *s).collect(),
    );
    println!("Kubernetes runner (one pod per attempt):");
    line(
        "execution, start to end",
        pods.iter().map(|(_, s, e)| *e - *s).collect(),
    );
    let mut created = Vec::new();
    let mut to_running = Vec::new();
    let mut script = Vec::new();
    let mut collected = Vec::new();
    for (id, start, end) in pods {
        let Some(s) = steps.values().find(|s| &s.execution == id) else {
            continue;
        };
        let (Some(c), Some(r), Some(x)) = (s.created, s.script_running, s.script_ended) else {
            continue;
        };
        created.push(c.saturating_duration_since(*start));
        to_running.push(r.saturating_duration_since(c));
        script.push(x.saturating_duration_since(r));
        collected.push(end.saturating_duration_since(x));
    }
    println!(
        "  ({} of {} pods seen through every step)",
        created.len(),
        pods.len()
    );
    line("start → pod created", created);
    line("created → script running (fetch)", to_running);
    line("script running → ended", script);
    line("ended → output collected (upload)", collected);
}
