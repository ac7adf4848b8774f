//! Task pods, as the instance runs a script task on Kubernetes: a `fetch`
//! init container (alpine), the `task` init container (python or shell)
//! and an `upload` container, sharing the emptyDir `work` at `/work`.
//! nodesim runs the script images with the local interpreters; these tests
//! check the pod life cycle the instance relies on: init containers in
//! order, live logs of the task that end with it, exit codes and phases,
//! `activeDeadlineSeconds`, prompt deletion, an environment holding only
//! what the pod declares, and ResourceQuota refusals with the real API
//! server's messages. Each runs on kubesim and on realkube (see
//! `atoll_testkit::cluster`).

mod common;

use std::time::{Duration, Instant};

use atoll_testkit::cluster::{ClusterKind, TestCluster};
use atoll_testkit::nodesim::process::group_alive;
use atoll_testkit::nodesim::{NodeSim, NodeSimConfig};
use common::{eventually, from_json, namespace};
use futures::stream::BoxStream;
use futures::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, ResourceQuota, ServiceAccount};
use kube::Client;
use kube::api::{Api, DeleteParams, LogParams, PostParams};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(60);
const NS: &str = "tasks";

/// A cluster with nodesim running the script images, and namespace `tasks`
/// whose `default` service account exists (the real API server's
/// ServiceAccount admission needs it).
async fn start(kind: ClusterKind) -> (TestCluster, NodeSim, Client) {
    let cluster = TestCluster::start(kind).await.expect("cluster starts");
    let config = NodeSimConfig::new(cluster.dir().join("node")).script_images();
    let node = cluster.start_node(config).await.expect("nodesim starts");
    let client = cluster.client();
    namespace(&client, NS).await;
    let accounts = Api::<ServiceAccount>::namespaced(client.clone(), NS);
    if kind == ClusterKind::KubeSim {
        let account = from_json(json!({"metadata": {"name": "default"}}));
        accounts
            .create(&PostParams::default(), &account)
            .await
            .expect("service account created");
    }
    eventually("service account default", LIMIT, || async {
        accounts.get_opt("default").await.ok().flatten()
    })
    .await;
    (cluster, node, client)
}

/// A container of a task pod.
fn container(name: &str, image: &str, command: &[&str]) -> Value {
    json!({
        "name": name,
        "image": image,
        "command": command,
        "workingDir": "/work",
        "volumeMounts": [{"name": "work", "mountPath": "/work"}],
        "resources": {"limits": {"cpu": "250m", "memory": "128Mi"}},
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": true,
            "runAsUser": 1000,
            "seccompProfile": {"type": "RuntimeDefault"}
        }
    })
}

/// A task pod: `init` containers, then `main`.
fn task_pod(name: &str, init: Vec<Value>, main: Vec<Value>) -> Pod {
    from_json(json!({
        "metadata": {"name": name, "labels": {"atoll.dev/task-pod": "true"}},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": false,
            "terminationGracePeriodSeconds": 5,
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": [{"name": "work", "emptyDir": {}}],
            "initContainers": init,
            "containers": main
        }
    }))
}

fn fetch() -> Value {
    container(
        "fetch",
        "alpine:3",
        &["/bin/sh", "-c", "echo hi > /work/in.txt"],
    )
}

fn upload() -> Value {
    container(
        "upload",
        "alpine:3",
        &["/bin/sh", "-c", "cat /work/out.txt"],
    )
}

async fn create(client: &Client, pod: &Pod) {
    Api::<Pod>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), pod)
        .await
        .unwrap_or_else(|e| panic!("creating pod: {e}"));
}

/// The pod once `check` holds for it.
async fn pod_where(client: &Client, name: &str, what: &str, check: impl Fn(&Pod) -> bool) -> Pod {
    let api = Api::<Pod>::namespaced(client.clone(), NS);
    eventually(what, LIMIT, || async {
        api.get_opt(name).await.ok().flatten().filter(|p| check(p))
    })
    .await
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// A container's status, init containers included.
fn status<'a>(pod: &'a Pod, name: &str) -> Option<&'a ContainerStatus> {
    let status = pod.status.as_ref()?;
    status
        .init_container_statuses
        .iter()
        .chain(&status.container_statuses)
        .flatten()
        .find(|c| c.name == name)
}

fn running(pod: &Pod, name: &str) -> bool {
    status(pod, name)
        .and_then(|s| s.state.as_ref())
        .is_some_and(|s| s.running.is_some())
}

/// `(exitCode, reason)` of a terminated container.
fn exit(pod: &Pod, name: &str) -> Option<(i32, String)> {
    let t = status(pod, name)?.state.as_ref()?.terminated.as_ref()?;
    Some((t.exit_code, t.reason.clone().unwrap_or_default()))
}

fn waiting_reason(pod: &Pod, name: &str) -> Option<String> {
    status(pod, name)?
        .state
        .as_ref()?
        .waiting
        .as_ref()?
        .reason
        .clone()
}

/// Follows a container's log, line by line, through the API's pod `log`
/// subresource: kubesim asks nodesim's log source; the real API server
/// proxies to nodesim's kubelet endpoint.
async fn follow(cluster: &TestCluster, pod: &str, container: &str) -> BoxStream<'static, String> {
    let api = Api::<Pod>::namespaced(cluster.client(), NS);
    let params = LogParams {
        container: Some(container.to_owned()),
        follow: true,
        ..LogParams::default()
    };
    let reader = api
        .log_stream(pod, &params)
        .await
        .unwrap_or_else(|e| panic!("following the log of {pod}/{container}: {e}"));
    reader.lines().map(|l| l.unwrap_or_default()).boxed()
}

/// `kubectl logs` of a container (realkube: through the kubelet
/// endpoint); kubectl is `$ATOLL_KUBECTL`, else `kubectl` on the PATH.
async fn kubectl_logs(cluster: &TestCluster, args: &[&str]) -> String {
    let program = std::env::var("ATOLL_KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let run = tokio::process::Command::new(program)
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig_path())
        .arg("--cache-dir")
        .arg(cluster.dir().join("kubectl-cache"))
        .args(["-n", NS, "logs"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(LIMIT, run)
        .await
        .unwrap_or_else(|_| panic!("kubectl logs {args:?} timed out"))
        .unwrap_or_else(|e| panic!("kubectl could not start ({e}); set ATOLL_KUBECTL"));
    assert!(
        output.status.success(),
        "kubectl logs {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn next_line(lines: &mut BoxStream<'static, String>) -> Option<String> {
    tokio::time::timeout(LIMIT, lines.next())
        .await
        .expect("a log line in time")
}

/// The Python task: reads what `fetch` wrote, prints, waits for the test
/// to have seen that line (the gate file), writes `out.txt`, prints the
/// names of its environment variables.
const TASK: &str = r#"
import os, sys, time
text = open("in.txt").read().strip()
print("read " + text, flush=True)
while not os.path.exists(os.environ["GATE"]):
    time.sleep(0.02)
open("out.txt", "w").write(text.upper() + "\n")
print("env " + ",".join(sorted(os.environ)), flush=True)
print("token " + str(os.path.exists("/var/run/secrets/kubernetes.io/serviceaccount/token")))
"#;

async fn init_containers_run_in_order_and_logs_follow_live(kind: ClusterKind) {
    let (cluster, node, client) = start(kind).await;
    let gate = cluster.dir().join("gate");
    let mut task = container("task", "python:3.12", &["python", "-c", TASK]);
    task["env"] = json!([
        {"name": "GATE", "value": gate.to_string_lossy()},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        {"name": "DECLARED", "value": "yes"}
    ]);
    create(
        &client,
        &task_pod("run-1", vec![fetch(), task], vec![upload()]),
    )
    .await;
    let pod = pod_where(&client, "run-1", "task running", |p| running(p, "task")).await;
    assert_eq!(exit(&pod, "fetch"), Some((0, "Completed".to_owned())));
    assert_eq!(phase(&pod), "Pending", "init containers still run");
    assert_eq!(
        waiting_reason(&pod, "upload").as_deref(),
        Some("PodInitializing")
    );
    // The log of a container that has not started: kubelet's 400.
    let params = LogParams {
        container: Some("upload".to_owned()),
        ..LogParams::default()
    };
    let api = Api::<Pod>::namespaced(client.clone(), NS);
    match api.logs("run-1", &params).await {
        Err(kube::Error::Api(s)) => assert_eq!(
            (s.code, s.message.trim_end()),
            (
                400,
                "container \"upload\" in pod \"run-1\" is waiting to start: PodInitializing"
            )
        ),
        other => panic!("expected 400, got {other:?}"),
    }
    let mut lines = follow(&cluster, "run-1", "task").await;
    assert_eq!(next_line(&mut lines).await.as_deref(), Some("read hi"));
    // The line came while the task still runs: it waits for the gate.
    let pod = pod_where(&client, "run-1", "task pod", |_| true).await;
    assert!(
        running(&pod, "task"),
        "the line arrived before the task ended"
    );
    std::fs::write(&gate, "").expect("gate written");
    let env_line = next_line(&mut lines).await.expect("env line");
    assert_eq!(next_line(&mut lines).await.as_deref(), Some("token False"));
    assert_eq!(
        next_line(&mut lines).await,
        None,
        "the log ends with the task"
    );
    assert_only_declared_env(&env_line);
    let pod = pod_where(&client, "run-1", "pod Succeeded", |p| {
        phase(p) == "Succeeded"
    })
    .await;
    for name in ["fetch", "task", "upload"] {
        assert_eq!(
            exit(&pod, name),
            Some((0, "Completed".to_owned())),
            "{name}"
        );
    }
    let started = |name: &str| {
        let t = status(&pod, name)?.state.as_ref()?.terminated.as_ref()?;
        Some((t.started_at.clone()?.0, t.finished_at.clone()?.0))
    };
    let (fetch, task, upload) = (started("fetch"), started("task"), started("upload"));
    let (fetch, task, upload) = (
        fetch.expect("fetch"),
        task.expect("task"),
        upload.expect("upload"),
    );
    assert!(
        fetch.1 <= task.0 && task.1 <= upload.0,
        "order: {fetch:?} {task:?} {upload:?}"
    );
    assert_eq!(
        node.logs(NS, "run-1", Some("upload")).as_deref(),
        Some("HI\n")
    );
    ended_logs_through_the_api(&cluster).await;
    cluster.stop().await.expect("cluster stops");
}

/// The logs of run-1's ended containers through the API, followed and
/// tailed (an init container's, an empty one's, the main one's), and
/// `kubectl logs` on realkube.
async fn ended_logs_through_the_api(cluster: &TestCluster) {
    let mut lines = follow(cluster, "run-1", "upload").await;
    assert_eq!(next_line(&mut lines).await.as_deref(), Some("HI"));
    assert_eq!(next_line(&mut lines).await, None);
    let mut lines = follow(cluster, "run-1", "fetch").await;
    assert_eq!(next_line(&mut lines).await, None, "fetch logs nothing");
    let api = Api::<Pod>::namespaced(cluster.client(), NS);
    let tail = LogParams {
        container: Some("task".to_owned()),
        tail_lines: Some(1),
        ..LogParams::default()
    };
    assert_eq!(
        api.logs("run-1", &tail).await.ok().as_deref(),
        Some("token False\n")
    );
    if cluster.kind() == ClusterKind::RealKube {
        let upload = kubectl_logs(cluster, &["run-1", "-c", "upload"]).await;
        assert_eq!(upload, "HI\n");
        let task = kubectl_logs(cluster, &["run-1", "-c", "task", "--tail=1"]).await;
        assert_eq!(task, "token False\n");
    }
}

/// The task's `env NAMES` line holds its declared variables and only what
/// an image and kubelet add.
fn assert_only_declared_env(env_line: &str) {
    let names: Vec<&str> = env_line.trim_start_matches("env ").split(',').collect();
    for declared in ["GATE", "PYTHONUNBUFFERED", "DECLARED"] {
        assert!(names.contains(&declared), "{declared} missing in {names:?}");
    }
    let allowed = |n: &&str| {
        [
            "GATE",
            "PYTHONUNBUFFERED",
            "DECLARED",
            "PATH",
            "HOME",
            "HOSTNAME",
            "LC_CTYPE",
        ]
        .contains(n)
            || n.starts_with("KUBERNETES_")
    };
    let undeclared: Vec<&&str> = names.iter().filter(|n| !allowed(n)).collect();
    assert!(
        undeclared.is_empty(),
        "undeclared env in the task: {undeclared:?}"
    );
}

async fn failures_deadlines_and_deletion(kind: ClusterKind) {
    let (cluster, node, client) = start(kind).await;
    let failing = container(
        "task",
        "bash:5",
        &["/bin/sh", "-c", "echo oops >&2; exit 3"],
    );
    create(
        &client,
        &task_pod("fails", vec![fetch(), failing], vec![upload()]),
    )
    .await;
    let slow = container("task", "ubuntu", &["/bin/sh", "-c", "sleep 300"]);
    create(
        &client,
        &task_pod("slow", vec![slow.clone()], vec![upload()]),
    )
    .await;
    let mut deadline = task_pod("deadline", vec![slow], vec![upload()]);
    deadline
        .spec
        .as_mut()
        .expect("spec")
        .active_deadline_seconds = Some(2);
    create(&client, &deadline).await;

    let unknown = container("task", "registry.example.com/nosuch:1", &["run"]);
    create(
        &client,
        &task_pod("unknown", vec![fetch(), unknown], vec![upload()]),
    )
    .await;

    let mut elsewhere = container("task", "debian:12", &["pwd"]);
    elsewhere["workingDir"] = json!("/app");
    create(&client, &task_pod("cwd", vec![], vec![elsewhere])).await;

    let pod = pod_where(&client, "fails", "pod Failed", |p| phase(p) == "Failed").await;
    assert_eq!(exit(&pod, "task"), Some((3, "Error".to_owned())));
    assert_eq!(
        waiting_reason(&pod, "upload").as_deref(),
        Some("PodInitializing")
    );

    deadline_fails_the_pod(&client).await;

    // A workingDir that is no mount is made in the pod's own space.
    pod_where(&client, "cwd", "pwd done", |p| phase(p) == "Succeeded").await;
    let pwd = node.logs(NS, "cwd", Some("task")).expect("pwd log");
    let here = std::env::current_dir().expect("cwd");
    assert!(pwd.trim_end().ends_with("/app"), "{pwd}");
    assert!(!pwd.starts_with(&*here.to_string_lossy()), "{pwd}");

    // An image nodesim cannot run waits as an image kubelet cannot pull.
    let pod = pod_where(&client, "unknown", "ErrImagePull", |p| {
        waiting_reason(p, "task").as_deref() == Some("ErrImagePull")
    })
    .await;
    assert_eq!(phase(&pod), "Pending");
    let message = status(&pod, "task")
        .and_then(|s| s.state.as_ref()?.waiting.as_ref()?.message.clone())
        .unwrap_or_default();
    assert!(
        message.starts_with("failed to pull and unpack image \"registry.example.com/nosuch:1\""),
        "{message}"
    );
    pod_where(&client, "unknown", "ImagePullBackOff", |p| {
        waiting_reason(p, "task").as_deref() == Some("ImagePullBackOff")
    })
    .await;

    deletion_stops_the_task_promptly(&client).await;
    cluster.stop().await.expect("cluster stops");
}

/// Pod `deadline` ends `DeadlineExceeded` after its 2 s, its task stopped.
async fn deadline_fails_the_pod(client: &Client) {
    let pod = pod_where(client, "deadline", "DeadlineExceeded", |p| {
        phase(p) == "Failed"
    })
    .await;
    let elapsed = pod_age(&pod);
    let pod_status = pod.status.clone().expect("status");
    assert_eq!(pod_status.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(
        pod_status.message.as_deref(),
        Some("Pod was active on the node longer than the specified deadline")
    );
    assert!(elapsed >= 2, "ended after {elapsed}s, before its deadline");
    // Then the task is stopped (the pod is Failed while it terminates).
    pod_where(client, "deadline", "the task stopped", |p| {
        exit(p, "task").is_some_and(|(code, _)| code != 0)
    })
    .await;
}

/// Deleting pod `slow` (a sleeping task) stops its processes at once.
async fn deletion_stops_the_task_promptly(client: &Client) {
    let pod = pod_where(client, "slow", "slow task running", |p| running(p, "task")).await;
    let pid: u32 = status_pid(&pod, "task").expect("task pid");
    let api = Api::<Pod>::namespaced(client.clone(), NS);
    let asked = Instant::now();
    api.delete("slow", &DeleteParams::default())
        .await
        .expect("pod deleted");
    eventually("the slow pod gone", LIMIT, || async {
        api.get_opt("slow")
            .await
            .ok()
            .flatten()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(!group_alive(pid), "the task's processes are gone");
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(5), "deletion took {took:?}");
    println!("deleting a sleeping task pod took {took:?}");
}

/// Seconds from the pod's start to now.
fn pod_age(pod: &Pod) -> i64 {
    let start = pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.clone())
        .expect("start time");
    k8s_openapi::jiff::Timestamp::now().as_second() - start.0.as_second()
}

fn status_pid(pod: &Pod, name: &str) -> Option<u32> {
    status(pod, name)?
        .container_id
        .as_ref()?
        .strip_prefix("nodesim://")?
        .parse()
        .ok()
}

async fn quota_refuses_pods_over_the_limit(kind: ClusterKind) {
    let (cluster, _node, client) = start(kind).await;
    let quota: ResourceQuota = from_json(json!({
        "metadata": {"name": "tenant-quota"},
        "spec": {"hard": {"pods": "2", "limits.cpu": "1", "limits.memory": "1Gi"}}
    }));
    let quotas = Api::<ResourceQuota>::namespaced(client.clone(), NS);
    quotas
        .create(&PostParams::default(), &quota)
        .await
        .expect("quota created");
    // The real admission refuses pods while the quota's status is unknown.
    eventually("the quota's status", LIMIT, || async {
        let q = quotas.get("tenant-quota").await.ok()?;
        q.status?.hard.is_some().then_some(())
    })
    .await;
    let pods = Api::<Pod>::namespaced(client.clone(), NS);
    let refusal = |pod: Pod| {
        let pods = pods.clone();
        async move {
            match pods.create(&PostParams::default(), &pod).await {
                Err(kube::Error::Api(status)) => (status.code, status.message),
                other => panic!("expected a refusal, got {other:?}"),
            }
        }
    };
    let mut bare = container("task", "alpine:3", &["sleep", "300"]);
    bare["resources"] = json!({});
    let (code, message) = refusal(task_pod("bare", vec![], vec![bare])).await;
    assert_eq!(code, 403);
    assert_eq!(
        message,
        "pods \"bare\" is forbidden: failed quota: tenant-quota: must specify limits.cpu for: task; limits.memory for: task"
    );
    for name in ["one", "two"] {
        let sleeper = container("task", "alpine:3", &["sleep", "300"]);
        create(&client, &task_pod(name, vec![], vec![sleeper])).await;
    }
    let sleeper = container("task", "alpine:3", &["sleep", "300"]);
    let (code, message) = refusal(task_pod("three", vec![], vec![sleeper.clone()])).await;
    assert_eq!(code, 403);
    assert_eq!(
        message,
        "pods \"three\" is forbidden: exceeded quota: tenant-quota, requested: pods=1, used: pods=2, limited: pods=2"
    );
    let used = quotas
        .get("tenant-quota")
        .await
        .expect("quota")
        .status
        .and_then(|s| s.used);
    let used = serde_json::to_value(used).expect("json");
    assert_eq!(used["pods"], "2");
    assert_eq!(used["limits.cpu"], "500m");
    assert_eq!(used["limits.memory"], "256Mi");
    pods.delete("one", &DeleteParams::default())
        .await
        .expect("deleted");
    let mut big = sleeper.clone();
    big["resources"]["limits"]["cpu"] = json!("2");
    let refused = eventually("room for one more pod", LIMIT, || async {
        match pods
            .create(
                &PostParams::default(),
                &task_pod("big", vec![], vec![big.clone()]),
            )
            .await
        {
            Err(kube::Error::Api(s)) if s.message.contains("pods=2") => None,
            Err(kube::Error::Api(s)) => Some(s.message),
            other => panic!("expected a refusal, got {other:?}"),
        }
    })
    .await;
    assert_eq!(
        refused,
        "pods \"big\" is forbidden: exceeded quota: tenant-quota, requested: limits.cpu=2, used: limits.cpu=250m, limited: limits.cpu=1"
    );
    create(&client, &task_pod("three", vec![], vec![sleeper])).await;
    cluster.stop().await.expect("cluster stops");
}

atoll_testkit::on_each_cluster!(
    init_containers_run_in_order_and_logs_follow_live,
    failures_deadlines_and_deletion,
    quota_refuses_pods_over_the_limit,
);
