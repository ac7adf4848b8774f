//! The Kubernetes task runner against kubesim with nodesim playing the
//! node: real task pods (the `fetch` and `upload` helpers are this crate's
//! own binary, `atoll-instance task-files`; the `task` container runs the
//! local Python 3 for `python:*` images), real HTTP between the helpers and
//! the attempt routes, real log streaming. Each runs on kubesim and on
//! realkube (see `atoll_testkit::cluster`), where the real API server
//! proxies the task log to nodesim's kubelet endpoint.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

mod support;

use atoll_instance::config::TaskSettings;
use atoll_instance::runner::kubernetes::KubernetesRunner;
use atoll_instance::runner::kubernetes::pod::SELECTOR;
use atoll_instance::runner::{ScriptJob, Stream};
use atoll_testkit::cluster::ClusterKind;
use atoll_testkit::wait::eventually;
use bytes::Bytes;
use k8s_openapi::api::core::v1::{Pod, ResourceQuota};
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use support::task_cluster::{NS, TaskCluster};

const LIMIT: Duration = Duration::from_secs(60);

struct Setup {
    _cluster: TaskCluster,
    client: Client,
    runner: KubernetesRunner,
}

/// The cluster, the namespace, and a runner acting as the instance's
/// service account, its attempt routes served on a loopback port.
async fn start(kind: ClusterKind, max_pods: usize) -> Setup {
    let cluster = TaskCluster::start(kind).await;
    let (_, runner) = cluster
        .kubernetes_runner(TaskSettings {
            max_pods,
            allowed_images: vec!["python:*".into(), "nowhere.example/*".into()],
            ..TaskSettings::default()
        })
        .await;
    Setup {
        client: cluster.client.clone(),
        _cluster: cluster,
        runner,
    }
}

fn python_job(task: &str, script: &str) -> ScriptJob {
    ScriptJob {
        namespace: "company.team".into(),
        flow_id: "etl".into(),
        execution_id: "exec1".into(),
        task_id: task.into(),
        task_run_id: format!("{task}-run"),
        attempt: 1,
        image: "python:3.12-slim".into(),
        interpreter: vec!["python3".into(), "-c".into()],
        script: script.into(),
        ..ScriptJob::default()
    }
}

/// Collects the lines a run writes.
#[derive(Default)]
struct Collected(Mutex<Vec<String>>);

impl Collected {
    fn push(&self, stream: Stream, line: String) {
        let _ = stream;
        self.0.lock().expect("lock").push(line);
    }
    fn lines(&self) -> Vec<String> {
        self.0.lock().expect("lock").clone()
    }
}

async fn task_pods(client: &Client) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), NS)
        .list(&ListParams::default().labels(SELECTOR))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

async fn no_task_pods_left(client: &Client) {
    eventually("no task pod left", LIMIT, || async {
        task_pods(client).await.is_empty().then_some(())
    })
    .await;
}

async fn a_python_script_reads_its_input_writes_its_output_and_logs_as_it_runs(kind: ClusterKind) {
    let setup = start(kind, 4).await;
    let script = r#"
import os
rows = open("data.csv").read().splitlines()
print(f"read {len(rows)} rows", flush=True)
print("token" if "ATOLL_TASK_FILES_TOKEN" in os.environ else "no token", flush=True)
print("GREETING=" + os.environ.get("GREETING", "?"), flush=True)
open("result.json", "w").write('{"rows": %d}' % len(rows))
open("scratch.tmp", "w").write("not an output")
"#;
    let job = ScriptJob {
        env: BTreeMap::from([("GREETING".into(), "hello".into())]),
        input_files: BTreeMap::from([("data.csv".into(), Bytes::from_static(b"a,b\n1,2\n"))]),
        output_files: vec!["*.json".into()],
        ..python_job("transform", script)
    };
    let seen = Collected::default();
    let outcome = setup
        .runner
        .run(&job, &|s, l| seen.push(s, l))
        .await
        .expect("the attempt runs");
    assert_eq!(outcome.exit_code, 0, "{:?}", seen.lines());
    let lines = seen.lines();
    for expected in ["read 2 rows", "no token", "GREETING=hello"] {
        assert!(lines.iter().any(|l| l == expected), "{expected}: {lines:?}");
    }
    assert_eq!(
        outcome.output_files.keys().collect::<Vec<_>>(),
        ["result.json"]
    );
    assert_eq!(
        outcome.output_files["result.json"],
        Bytes::from_static(br#"{"rows": 2}"#)
    );
    no_task_pods_left(&setup.client).await;
}

async fn exit_codes_refusals_and_pull_failures_end_the_task(kind: ClusterKind) {
    let setup = start(kind, 4).await;
    let seen = Collected::default();
    let lines = |s, l| seen.push(s, l);
    let failing = python_job(
        "fail",
        "import sys\nprint('bad input', flush=True)\nsys.exit(3)",
    );
    let outcome = setup.runner.run(&failing, &lines).await.expect("runs");
    assert_eq!(outcome.exit_code, 3);
    assert!(outcome.output_files.is_empty());
    assert!(seen.lines().iter().any(|l| l == "bad input"));

    let refused = ScriptJob {
        image: "evil.example/miner:1".into(),
        ..python_job("refused", "print(1)")
    };
    let err = setup
        .runner
        .run(&refused, &lines)
        .await
        .expect_err("refused");
    assert!(err.contains("not allowed"), "{err}");

    let unknown = ScriptJob {
        image: "nowhere.example/no-such-image:1".into(),
        ..python_job("unpulled", "print(1)")
    };
    let err = setup
        .runner
        .run(&unknown, &lines)
        .await
        .expect_err("not pulled");
    assert!(
        err.contains("ErrImagePull") || err.contains("ImagePullBackOff"),
        "{err}"
    );
    no_task_pods_left(&setup.client).await;

    // The tenant's quota refuses the pod: the API's message ends the task.
    let quota: ResourceQuota = serde_json::from_value(json!({
        "metadata": {"name": "tenant-quota"},
        "spec": {"hard": {"pods": "0"}}
    }))
    .expect("quota");
    Api::<ResourceQuota>::namespaced(setup.client.clone(), NS)
        .create(&PostParams::default(), &quota)
        .await
        .expect("quota created");
    let over = python_job("over", "print(1)");
    let err = eventually("the quota refusal", LIMIT, || async {
        setup
            .runner
            .run(&over, &lines)
            .await
            .err()
            .filter(|e| e.contains("quota"))
    })
    .await;
    assert!(err.contains("exceeded quota: tenant-quota"), "{err}");
    assert!(task_pods(&setup.client).await.is_empty());
}

async fn a_pod_over_the_limit_waits_and_a_dropped_attempt_deletes_its_pod(kind: ClusterKind) {
    let setup = start(kind, 1).await;
    let first_seen = Collected::default();
    let second_seen = Collected::default();
    let slow = python_job(
        "slow",
        "import time\nprint('started', flush=True)\ntime.sleep(600)",
    );
    let quick = python_job("quick", "print('quick done', flush=True)");
    let first_lines = |s, l| first_seen.push(s, l);
    let second_lines = |s, l| second_seen.push(s, l);
    let mut first = Box::pin(setup.runner.run(&slow, &first_lines));
    let mut second = Box::pin(async {
        eventually("the slow script started", LIMIT, || async {
            first_seen
                .lines()
                .iter()
                .any(|l| l == "started")
                .then_some(())
        })
        .await;
        setup.runner.run(&quick, &second_lines).await
    });
    let waiting = async {
        eventually("the quick one waiting", LIMIT, || async {
            second_seen
                .lines()
                .iter()
                .any(|l| l == "waiting for a task pod slot (1 running)")
                .then_some(())
        })
        .await;
    };
    // Both run until the quick one waits for the slow one's place.
    tokio::select! {
        r = &mut first => panic!("the slow script ended by itself: {r:?}"),
        r = &mut second => panic!("the quick one ran beside the slow one: {r:?}"),
        () = waiting => {}
    }
    // Killing the slow one (dropping its attempt) deletes its pod and
    // frees its place.
    let slow_pod = task_pods(&setup.client)
        .await
        .into_iter()
        .find(|p| {
            p.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.contains("slow"))
        })
        .and_then(|p| p.metadata.name)
        .expect("the slow pod exists");
    drop(first);
    let pods = Api::<Pod>::namespaced(setup.client.clone(), NS);
    let outcome = tokio::time::timeout(LIMIT, second)
        .await
        .expect("the quick one ran once the slow one was gone")
        .expect("runs");
    eventually("the slow pod deleted", LIMIT, || async {
        pods.get_opt(&slow_pod)
            .await
            .ok()
            .flatten()
            .is_none()
            .then_some(())
    })
    .await;
    assert_eq!(outcome.exit_code, 0);
    assert!(second_seen.lines().iter().any(|l| l == "quick done"));
    no_task_pods_left(&setup.client).await;
}

/// A pod sleeping for ten minutes, with these labels.
fn sleeper(name: &str, labels: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "task",
                "image": "python:3",
                "command": ["python3", "-c", "import time; time.sleep(600)"]
            }]
        }
    }))
    .expect("pod")
}

fn task_labels(instance: Option<&str>) -> serde_json::Value {
    let mut labels = json!({
        "app.kubernetes.io/managed-by": "atoll-instance",
        "atoll.dev/task-pod": "true"
    });
    if let Some(instance) = instance {
        labels["atoll.dev/instance"] = json!(instance);
    }
    labels
}

async fn orphans_of_a_crashed_instance_are_deleted_a_live_replicas_pods_kept(kind: ClusterKind) {
    let mut setup = start(kind, 4).await;
    setup.runner = setup.runner.with_instance_name("instance-a");
    let pods = Api::<Pod>::namespaced(setup.client.clone(), NS);
    let fixtures = [
        // A live replica of the instance, and its task pod.
        sleeper("instance-b", json!({"app": "instance"})),
        sleeper("task-of-b", task_labels(Some("instance-b"))),
        // Left by this instance pod before it restarted, by a replica that
        // is gone, and by an instance that did not label its pods.
        sleeper("task-of-a", task_labels(Some("instance-a"))),
        sleeper("task-of-c", task_labels(Some("instance-c"))),
        sleeper("task-unlabelled", task_labels(None)),
    ];
    for pod in &fixtures {
        pods.create(&PostParams::default(), pod)
            .await
            .expect("created");
    }
    assert_eq!(setup.runner.clean_orphans().await, 3);
    eventually("only the live replica's task pod left", LIMIT, || async {
        let names: Vec<String> = task_pods(&setup.client)
            .await
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        (names == ["task-of-b"]).then_some(())
    })
    .await;
    assert!(pods.get_opt("instance-b").await.expect("get").is_some());
}

atoll_testkit::on_each_cluster!(
    a_python_script_reads_its_input_writes_its_output_and_logs_as_it_runs,
    exit_codes_refusals_and_pull_failures_end_the_task,
    a_pod_over_the_limit_waits_and_a_dropped_attempt_deletes_its_pod,
    orphans_of_a_crashed_instance_are_deleted_a_live_replicas_pods_kept,
);
