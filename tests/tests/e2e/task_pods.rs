//! Script tasks in their own pods (#17): a tenant's flow runs a Python
//! script in a task pod that writes a file; the file is downloadable by the
//! tenant's Editor and refused to another tenant's token; the pod had no
//! service-account token, no route to the tenant database and only the
//! environment the task declares; killing the execution deletes its pod;
//! a task pod over the Tenant's concurrent-pod limit waits instead of
//! failing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use serde_json::Value;

use crate::Report;
use crate::harness::{Instance, LIMIT, Platform, eventually};
use crate::scenarios::{token_when_synced, world};

const WRITER: &str = r#"
id: writer
namespace: team
tasks:
  - id: py
    type: io.kestra.plugin.scripts.python.Script
    containerImage: python:3.12-slim
    env:
      GREETING: hello from a task pod
    outputFiles:
      - report.txt
    script: |
      import json, os
      token = os.path.exists("/var/run/secrets/kubernetes.io/serviceaccount/token")
      # What every container gets from the image and the kubelet (which
      # always adds the API server's address, even without service links).
      given = ("PATH", "HOME", "HOSTNAME", "PWD", "LANG", "SHLVL", "_", "LC_CTYPE",
               "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")
      names = sorted(k for k in os.environ if k not in given)
      with open("report.txt", "w") as f:
          f.write(os.environ["GREETING"] + "\n")
      print("::" + json.dumps({"outputs": {"token": token, "env": names}}) + "::")
"#;

const SLEEPER: &str = r#"
id: sleeper
namespace: team
tasks:
  - id: nap
    type: io.kestra.plugin.scripts.shell.Commands
    containerImage: alpine:3.20
    commands:
      - echo started napping
      - sleep 600
"#;

const PAIR: &str = r#"
id: pair
namespace: team
tasks:
  - id: both
    type: io.kestra.plugin.core.flow.Parallel
    tasks:
      - id: one
        type: io.kestra.plugin.scripts.shell.Commands
        containerImage: alpine:3.20
        commands: ["echo one"]
      - id: two
        type: io.kestra.plugin.scripts.shell.Commands
        containerImage: alpine:3.20
        commands: ["echo two"]
"#;

pub async fn task_pods(platform: Arc<Platform>, report: Arc<Report>) {
    let tasks = "  tasks:\n    runner: Kubernetes\n    maxConcurrentPods: 1\n";
    let world = world(
        &platform,
        &["tp-editor@a.test", "tp-editor@b.test"],
        &[
            ("tp-a", &[("tp-editor@a.test", "Editor")], tasks),
            ("tp-b", &[("tp-editor@b.test", "Editor")], tasks),
        ],
    )
    .await;
    let (a, b) = (&world.instances[0], &world.instances[1]);
    let token_a = token_when_synced(&platform, &world.sessions[0], "tp-a").await;
    let token_b = token_when_synced(&platform, &world.sessions[1], "tp-b").await;
    let pods = Api::<Pod>::namespaced(platform.client.clone(), "atoll-tp-a");

    // 1. A Python script in a task pod writes a file.
    let watcher = PodCounter::start(pods.clone());
    let started = std::time::Instant::now();
    let id = save_and_start(a, &token_a, WRITER, "writer").await;
    assert_success(&platform, a, &token_a, &id).await;
    report.figure(format!(
        "python script in a task pod: SUCCESS in {:.1}s",
        started.elapsed().as_secs_f64()
    ));
    let execution = a
        .call(
            "GET",
            &format!("/api/v1/executions/{id}"),
            Some(&token_a),
            None,
        )
        .await
        .expect("execution")
        .json();
    let outputs = task_outputs(&execution, "py");
    assert_eq!(
        outputs["vars"]["token"],
        Value::Bool(false),
        "no token: {outputs}"
    );
    assert_eq!(
        outputs["vars"]["env"],
        serde_json::json!(["GREETING"]),
        "only the declared env: {outputs}"
    );
    let uri = outputs["outputFiles"]["report.txt"]
        .as_str()
        .unwrap_or_else(|| panic!("an output file URI: {outputs}"))
        .to_owned();
    assert!(uri.starts_with("kestra:///"), "{uri}");

    // 2. The Editor downloads it; another tenant's token is refused.
    let path = format!("/api/v1/executions/{id}/file?path={}", encode(&uri));
    let file = a
        .call("GET", &path, Some(&token_a), None)
        .await
        .expect("download");
    assert_eq!(
        (file.status, file.body.as_str()),
        (200, "hello from a task pod\n")
    );
    let foreign = a
        .call("GET", &path, Some(&token_b), None)
        .await
        .expect("foreign");
    assert!(
        matches!(foreign.status, 401 | 403),
        "another tenant's token: {} {}",
        foreign.status,
        foreign.body
    );
    let unauthenticated = a.call("GET", &path, None, None).await.expect("anonymous");
    assert_eq!(unauthenticated.status, 401);
    report.figure(format!(
        "output file {} B: Editor 200, other tenant {}, anonymous 401",
        file.body.len(),
        foreign.status
    ));
    let _ = b;

    // 3. The pod: no token mounted, only declared env, no database route.
    let task_pod = watcher
        .seen_pods()
        .into_iter()
        .next()
        .expect("a task pod was created");
    assert_eq!(
        task_pod
            .spec
            .as_ref()
            .and_then(|s| s.automount_service_account_token),
        Some(false)
    );
    let policies = Api::<NetworkPolicy>::namespaced(platform.client.clone(), "atoll-tp-a")
        .list(&ListParams::default())
        .await
        .expect("network policies")
        .items;
    let db_labels = database_labels(&platform, "atoll-tp-a").await;
    assert!(
        !egress_allows(&policies, task_pod.labels(), &db_labels),
        "a NetworkPolicy lets task pods reach the database"
    );
    assert!(
        selected_for_egress(&policies, task_pod.labels()),
        "no NetworkPolicy restricts task pods' egress"
    );
    report.figure(
        "task pod: automountServiceAccountToken false, env = [GREETING], no egress to the database",
    );

    // 4. Killing the execution deletes its pod.
    let id = save_and_start(a, &token_a, SLEEPER, "sleeper").await;
    let selector = format!("atoll.dev/execution={id}");
    eventually("the sleeping task pod to run", LIMIT, || async {
        let list = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .ok()?;
        list.items
            .iter()
            .any(|p| {
                p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending")
                    || p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            })
            .then_some(())
    })
    .await;
    a.follow_logs_until(&token_a, &id, "started napping").await;
    let killed = a
        .call(
            "DELETE",
            &format!("/api/v1/executions/{id}/kill"),
            Some(&token_a),
            None,
        )
        .await
        .expect("kill");
    assert!(
        (200..300).contains(&killed.status),
        "kill: {} {}",
        killed.status,
        killed.body
    );
    let began = std::time::Instant::now();
    eventually(
        "the killed execution's pod to be deleted",
        LIMIT,
        || async {
            let list = pods
                .list(&ListParams::default().labels(&selector))
                .await
                .ok()?;
            list.items.is_empty().then_some(())
        },
    )
    .await;
    assert_eq!(a.wait_final(&token_a, &id).await, "KILLED");
    report.figure(format!(
        "kill: task pod deleted {:.1}s after the kill",
        began.elapsed().as_secs_f64()
    ));

    // 5. Over the concurrent-pod limit (1): the second pod waits.
    let before = watcher.max_at_once();
    let id = save_and_start(a, &token_a, PAIR, "pair").await;
    assert_success(&platform, a, &token_a, &id).await;
    let logs = a
        .call("GET", &format!("/api/v1/logs/{id}"), Some(&token_a), None)
        .await
        .expect("logs");
    assert!(
        logs.body.contains("waiting for a task pod slot"),
        "a task waited: {}",
        logs.body
    );
    assert_eq!(
        watcher.max_at_once().max(before),
        1,
        "never more than one task pod at once"
    );
    report.figure("maxConcurrentPods 1: two parallel tasks ran one after the other, both SUCCESS");

    watcher.stop();
    for tenant in ["tp-a", "tp-b"] {
        platform.delete_tenant(tenant, true).await;
    }
}

async fn save_and_start(instance: &Instance, token: &str, yaml: &str, id: &str) -> String {
    let saved = instance.save_flow(token, yaml).await;
    assert!(
        (200..300).contains(&saved.status),
        "save {id}: {} {}",
        saved.status,
        saved.body
    );
    instance.run(token, "team", id).await
}

/// Waits for the execution's end; SUCCESS, or a failure showing its logs.
async fn assert_success(platform: &Platform, instance: &Instance, token: &str, id: &str) {
    let state = instance.wait_final(token, id).await;
    if state != "SUCCESS" {
        let logs = instance
            .call("GET", &format!("/api/v1/logs/{id}"), Some(token), None)
            .await
            .map(|a| a.body)
            .unwrap_or_default();
        let (_, instance_logs) = platform
            .kubectl(&[
                "logs",
                "-n",
                "atoll-tp-a",
                "deployment/instance",
                "--tail=30",
            ])
            .await;
        panic!("execution {id} ended {state}: {logs}\ninstance logs:\n{instance_logs}");
    }
}

fn task_outputs<'a>(execution: &'a Value, task: &str) -> &'a Value {
    execution["taskRunList"]
        .as_array()
        .and_then(|runs| runs.iter().find(|r| r["taskId"] == task))
        .map(|r| &r["outputs"])
        .unwrap_or_else(|| panic!("task run {task}: {execution}"))
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The labels of the tenant database's pods.
async fn database_labels(platform: &Platform, namespace: &str) -> BTreeMap<String, String> {
    let pods = Api::<Pod>::namespaced(platform.client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .expect("pods")
        .items;
    pods.iter()
        .find(|p| p.name_any().starts_with("database"))
        .map(|p| p.labels().clone())
        .unwrap_or_default()
}

fn matches(
    selector: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
    labels: &BTreeMap<String, String>,
) -> bool {
    let Some(selector) = selector else {
        return true;
    };
    selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v))
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(|e| e.is_empty())
}

fn selected_for_egress(policies: &[NetworkPolicy], pod: &BTreeMap<String, String>) -> bool {
    policies.iter().any(|p| {
        let spec = p.spec.as_ref();
        spec.is_some_and(|s| {
            matches(&Some(s.pod_selector.clone().unwrap_or_default()), pod)
                && s.policy_types.iter().flatten().any(|t| t == "Egress")
        })
    })
}

/// Whether any policy selecting `pod` lets it reach a pod with `target`
/// labels in its own namespace.
fn egress_allows(
    policies: &[NetworkPolicy],
    pod: &BTreeMap<String, String>,
    target: &BTreeMap<String, String>,
) -> bool {
    policies.iter().filter_map(|p| p.spec.as_ref()).any(|s| {
        matches(&Some(s.pod_selector.clone().unwrap_or_default()), pod)
            && s.egress.iter().flatten().any(|rule| match &rule.to {
                None => true,
                Some(peers) => peers.iter().any(|peer| {
                    peer.ip_block.is_none()
                        && peer.namespace_selector.is_none()
                        && matches(&peer.pod_selector, target)
                }),
            })
    })
}

/// Watches the task pods of a namespace: every pod seen, and the most
/// present at once.
struct PodCounter {
    seen: Arc<std::sync::Mutex<Vec<Pod>>>,
    max: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl PodCounter {
    fn start(pods: Api<Pod>) -> PodCounter {
        use futures::StreamExt;
        use kube::runtime::watcher;
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let max = Arc::new(AtomicUsize::new(0));
        let (s, m) = (seen.clone(), max.clone());
        let task = tokio::spawn(async move {
            let config = watcher::Config::default().labels("atoll.dev/task-pod=true");
            let mut live: BTreeMap<String, bool> = BTreeMap::new();
            let mut events = std::pin::pin!(watcher(pods, config));
            while let Some(event) = events.next().await {
                let pod = match event {
                    Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => pod,
                    Ok(watcher::Event::Delete(pod)) => {
                        live.remove(&pod.uid().unwrap_or_default());
                        continue;
                    }
                    _ => continue,
                };
                let ended = pod.metadata.deletion_timestamp.is_some()
                    || matches!(
                        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
                        Some("Succeeded" | "Failed")
                    );
                live.insert(pod.uid().unwrap_or_default(), !ended);
                m.fetch_max(live.values().filter(|l| **l).count(), Ordering::SeqCst);
                if let Ok(mut seen) = s.lock()
                    && !seen.iter().any(|p: &Pod| p.uid() == pod.uid())
                {
                    seen.push(pod);
                }
            }
        });
        PodCounter { seen, max, task }
    }

    fn seen_pods(&self) -> Vec<Pod> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn max_at_once(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }

    fn stop(self) {
        self.task.abort();
    }
}
