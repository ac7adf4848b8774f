//! Pod lifecycle details nodesim reproduces from kubelet and the workload
//! controllers: configuration errors in status, crash loops, liveness
//! restarts, rollouts, scaling to zero, PVC directories, instant mode.

mod common;

use std::time::Duration;

use atoll_testkit::kubesim::KubeSim;
use atoll_testkit::nodesim::process::group_alive;
use atoll_testkit::nodesim::{NodeSim, NodeSimConfig};
use common::{eventually, from_json, namespace, pods, ready, running_pid};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ContainerStateWaiting, PersistentVolumeClaim, Pod, Secret};
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(30);
const NS: &str = "life";

async fn start(
    config: impl FnOnce(NodeSimConfig) -> NodeSimConfig,
) -> (KubeSim, Client, NodeSim, tempfile::TempDir) {
    // Pods stay terminating until nodesim confirms their processes ended,
    // as with a real kubelet.
    let sim = KubeSim::builder().graceful_pod_deletion(true).build();
    let client = sim.client();
    namespace(&client, NS).await;
    let state = tempfile::tempdir().expect("tempdir");
    let base = NodeSimConfig::new(state.path().join("node"))
        .binary("atoll-testserver", env!("CARGO_BIN_EXE_atoll-testserver"))
        .binary("shell", "/bin/sh");
    let node = NodeSim::start(client.clone(), config(base))
        .await
        .expect("nodesim starts");
    (sim, client, node, state)
}

fn deployment(name: &str, replicas: i32, container: Value) -> Deployment {
    from_json(json!({
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"terminationGracePeriodSeconds": 5, "containers": [container]}
            }
        }
    }))
}

async fn create_deployment(client: &Client, d: Deployment) {
    Api::<Deployment>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &d)
        .await
        .expect("deployment created");
}

fn waiting(pod: &Pod) -> Option<ContainerStateWaiting> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .waiting
        .clone()
}

#[tokio::test]
async fn a_missing_secret_key_shows_in_pod_status_until_the_key_appears() {
    let (_sim, client, node, _state) = start(|c| c).await;
    create_deployment(
        &client,
        deployment(
            "app",
            1,
            json!({
                "name": "app",
                "image": "atoll-testserver:dev",
                "env": [
                    {"name": "LISTEN", "value": "0.0.0.0:8080"},
                    {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "app-secret", "key": "token"}}}
                ],
                "ports": [{"containerPort": 8080}]
            }),
        ),
    )
    .await;
    let state = eventually("CreateContainerConfigError", LIMIT, || async {
        pods(&client, NS, "app=app")
            .await
            .iter()
            .find_map(waiting)
            .filter(|w| w.reason.as_deref() == Some("CreateContainerConfigError"))
    })
    .await;
    assert_eq!(
        state.message.as_deref(),
        Some("secret \"app-secret\" not found")
    );
    let pod = &pods(&client, NS, "app=app").await[0];
    assert_eq!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Pending")
    );

    let secret: Secret =
        from_json(json!({"metadata": {"name": "app-secret"}, "stringData": {"other": "x"}}));
    let secrets = Api::<Secret>::namespaced(client.clone(), NS);
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret");
    eventually("the missing key reported", LIMIT, || async {
        pods(&client, NS, "app=app")
            .await
            .iter()
            .find_map(waiting)
            .filter(|w| {
                w.message.as_deref() == Some("couldn't find key token in Secret life/app-secret")
            })
    })
    .await;

    let patch = json!({"stringData": {"token": "t0ken"}});
    secrets
        .patch("app-secret", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patched");
    let pod = eventually("the container to run", LIMIT, || async {
        pods(&client, NS, "app=app").await.into_iter().find(ready)
    })
    .await;
    let ip = pod.status.and_then(|s| s.pod_ip).expect("pod IP");
    let addr = std::net::SocketAddr::new(ip.parse().expect("ip"), 8080);
    let token = eventually("the env value", LIMIT, || {
        common::http_get(addr, "x", "/env/TOKEN")
    })
    .await;
    assert_eq!(token, (200, "t0ken".to_owned()));
    node.shutdown().await;
}

#[tokio::test]
async fn a_crashing_container_shows_crash_loop_back_off_and_counts_restarts() {
    let (_sim, client, node, _state) = start(|c| c).await;
    create_deployment(
        &client,
        deployment(
            "crash",
            1,
            json!({"name": "crash", "image": "shell", "args": ["-c", "echo boom; exit 2"]}),
        ),
    )
    .await;
    let pod = eventually("CrashLoopBackOff", LIMIT, || async {
        pods(&client, NS, "app=crash")
            .await
            .into_iter()
            .find(|p| waiting(p).and_then(|w| w.reason).as_deref() == Some("CrashLoopBackOff"))
    })
    .await;
    let status = &pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())
        .expect("statuses")[0];
    assert!(status.restart_count >= 2, "{status:?}");
    let last = status
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .expect("last state");
    assert_eq!((last.exit_code, last.reason.as_deref()), (2, Some("Error")));
    assert!(
        node.logs(NS, &pod.metadata.name.clone().unwrap_or_default(), None)
            .is_some_and(|l| l.contains("boom"))
    );
    let d = Api::<Deployment>::namespaced(client.clone(), NS)
        .get("crash")
        .await
        .expect("deployment");
    let available = d
        .status
        .and_then(|s| s.conditions)
        .and_then(|c| c.into_iter().find(|c| c.type_ == "Available"));
    assert_eq!(available.map(|c| c.status).as_deref(), Some("False"));
    node.shutdown().await;
}

#[tokio::test]
async fn a_failing_liveness_probe_restarts_the_container() {
    let (_sim, client, node, state) = start(|c| c).await;
    let unhealthy = state.path().join("unhealthy");
    create_deployment(
        &client,
        deployment(
            "live",
            1,
            json!({
                "name": "live",
                "image": "atoll-testserver:dev",
                "args": ["--listen", "0.0.0.0:8080", "--unhealthy-file", unhealthy.to_string_lossy()],
                "ports": [{"containerPort": 8080}],
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1, "failureThreshold": 2}
            }),
        ),
    )
    .await;
    let pod = eventually("the container to run", LIMIT, || async {
        pods(&client, NS, "app=live")
            .await
            .into_iter()
            .find(|p| running_pid(p).is_some())
    })
    .await;
    let pid = running_pid(&pod).expect("pid");
    std::fs::write(&unhealthy, b"").expect("unhealthy");
    let pod = eventually("a liveness restart", LIMIT, || async {
        pods(&client, NS, "app=live").await.into_iter().find(|p| {
            let statuses = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.clone())
                .unwrap_or_default();
            statuses.first().is_some_and(|s| s.restart_count >= 1)
        })
    })
    .await;
    let status = &pod
        .status
        .and_then(|s| s.container_statuses)
        .expect("statuses")[0];
    let last = status
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .expect("last state");
    assert!(
        last.message
            .as_deref()
            .is_some_and(|m| m.contains("liveness probe failed")),
        "{last:?}"
    );
    assert!(!group_alive(pid), "the unhealthy process was not stopped");
    node.shutdown().await;
}

#[tokio::test]
async fn a_template_change_rolls_the_process_and_scaling_to_zero_stops_it() {
    let (_sim, client, node, _state) = start(|c| c).await;
    let container = |version: &str| {
        json!({
            "name": "web",
            "image": "atoll-testserver:dev",
            "env": [{"name": "LISTEN", "value": "0.0.0.0:8080"}, {"name": "VERSION", "value": version}],
            "ports": [{"containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080}}
        })
    };
    create_deployment(&client, deployment("web", 1, container("1"))).await;
    let deployments = Api::<Deployment>::namespaced(client.clone(), NS);
    let first = eventually("v1 ready", LIMIT, || async {
        pods(&client, NS, "app=web").await.into_iter().find(ready)
    })
    .await;
    let old_pid = running_pid(&first).expect("pid");

    let patch = json!({"spec": {"template": {"spec": {"containers": [container("2")]}}}});
    deployments
        .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patched");
    let second = eventually("v2 replacing v1", LIMIT, || async {
        let all = pods(&client, NS, "app=web").await;
        let only_new =
            all.len() == 1 && all[0].metadata.name != first.metadata.name && ready(&all[0]);
        only_new.then(|| all[0].clone())
    })
    .await;
    let new_pid = running_pid(&second).expect("pid");
    assert_ne!(new_pid, old_pid);
    eventually("the v1 process gone", LIMIT, || async {
        (!group_alive(old_pid)).then_some(())
    })
    .await;
    let d = eventually("the rollout reported", LIMIT, || async {
        let d = deployments.get("web").await.ok()?;
        let s = d.status.clone()?;
        (s.observed_generation == d.metadata.generation
            && s.updated_replicas == Some(1)
            && s.replicas == Some(1))
        .then_some(d)
    })
    .await;
    assert_eq!(d.metadata.generation, Some(2));

    let patch = json!({"spec": {"replicas": 0}});
    deployments
        .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("scaled");
    eventually("no pods at zero replicas", LIMIT, || async {
        pods(&client, NS, "app=web").await.is_empty().then_some(())
    })
    .await;
    eventually("the v2 process gone", LIMIT, || async {
        (!group_alive(new_pid)).then_some(())
    })
    .await;
    node.shutdown().await;
}

#[tokio::test]
async fn pvc_directories_live_as_long_as_their_claims() {
    let (_sim, client, node, state) = start(|c| c).await;
    let sts: StatefulSet = from_json(json!({
        "metadata": {"name": "store", "namespace": NS},
        "spec": {
            "replicas": 1,
            "serviceName": "store",
            "selector": {"matchLabels": {"app": "store"}},
            "template": {
                "metadata": {"labels": {"app": "store"}},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                    "name": "store", "image": "shell",
                    "args": ["-c", "echo kept > /data/file; exec sleep 600"],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]
                }]}
            },
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]
        }
    }));
    let sets = Api::<StatefulSet>::namespaced(client.clone(), NS);
    sets.create(&PostParams::default(), &sts)
        .await
        .expect("statefulset");
    let file = state.path().join("node/pvc/life/data-store-0/file");
    // The shell creates the file before it writes the line: wait for both.
    eventually("the container to write into its PVC", LIMIT, || async {
        (std::fs::read_to_string(&file).ok()? == "kept\n").then_some(())
    })
    .await;

    // Deleting the StatefulSet keeps the claim and its data.
    sets.delete("store", &DeleteParams::default())
        .await
        .expect("deleted");
    eventually("the pod gone", LIMIT, || async {
        pods(&client, NS, "app=store")
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    assert!(file.is_file(), "data kept with the PVC");

    // Deleting the claim removes the directory.
    Api::<PersistentVolumeClaim>::namespaced(client.clone(), NS)
        .delete("data-store-0", &DeleteParams::default())
        .await
        .expect("PVC deleted");
    let dir = state.path().join("node/pvc/life/data-store-0");
    eventually("the PVC directory removed", LIMIT, || async {
        (!dir.exists()).then_some(())
    })
    .await;
    node.shutdown().await;
}

#[tokio::test]
async fn instant_mode_reports_workloads_ready_without_running_anything() {
    let (_sim, client, node, _state) = start(NodeSimConfig::instant).await;
    create_deployment(
        &client,
        deployment("fake", 3, json!({"name": "fake", "image": "registry.example.com/example/unmapped:1", "ports": [{"containerPort": 80}]})),
    )
    .await;
    let deployments = Api::<Deployment>::namespaced(client.clone(), NS);
    eventually("3 available replicas", LIMIT, || async {
        let d = deployments.get("fake").await.ok()?;
        (d.status?.available_replicas == Some(3)).then_some(())
    })
    .await;
    for pod in pods(&client, NS, "app=fake").await {
        assert!(ready(&pod));
        assert!(
            node.pod_pids(NS, &pod.metadata.name.unwrap_or_default())
                .is_empty()
        );
    }
    node.shutdown().await;
}

#[tokio::test]
async fn secret_volumes_are_files_at_their_mount_paths() {
    let (_sim, client, node, _state) = start(|c| c).await;
    let secret: Secret = from_json(
        json!({"metadata": {"name": "creds", "namespace": NS}, "stringData": {"token": "s3cr3t-token"}}),
    );
    Api::<Secret>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret");
    let pod: Pod = from_json(json!({
        "metadata": {"name": "reader", "namespace": NS},
        "spec": {
            "restartPolicy": "Never",
            "volumes": [{"name": "creds", "secret": {"secretName": "creds"}}],
            "containers": [{
                "name": "reader",
                "image": "shell",
                "env": [{"name": "TOKEN_FILE", "value": "/etc/atoll/token"}],
                "args": ["-c", "test \"$(cat \"$TOKEN_FILE\")\" = s3cr3t-token && test -f /etc/atoll/token && echo matched"],
                "volumeMounts": [{"name": "creds", "mountPath": "/etc/atoll", "readOnly": true}]
            }]
        }
    }));
    let pods = Api::<Pod>::namespaced(client.clone(), NS);
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("pod");
    let phase = eventually("the pod to finish", LIMIT, || async {
        let phase = pods.get("reader").await.ok()?.status?.phase?;
        matches!(phase.as_str(), "Succeeded" | "Failed").then_some(phase)
    })
    .await;
    assert_eq!(phase, "Succeeded", "{:?}", node.logs(NS, "reader", None));
    assert_eq!(node.logs(NS, "reader", None).as_deref(), Some("matched\n"));
    node.shutdown().await;
}
