//! nodesim's kubelet-only mode on the real control plane: it registers a
//! Node as `system:node:nodesim` and keeps it Ready; the real
//! controller manager turns a Deployment into a ReplicaSet and a Pod, the
//! real scheduler binds it to the node, nodesim runs it as a process.
//! Readiness gates the Deployment's availability (computed by the real
//! deployment controller from the status nodesim reports), a killed
//! process is restarted with its restart count and last state reported,
//! the Service routes to the pod, and deletion leaves no pod and no
//! process. nodesim writes no workload object. Its kubelet endpoint (what
//! the API server proxies pod logs to) is in the Node status and answers
//! only clients whose certificate the cluster CA signed.
//!
//! Skipped, loudly, without the realkube binaries (`scripts/realkube-build`)
//! unless `ATOLL_REALKUBE_REQUIRED` is set.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use atoll_testkit::nodesim::process::group_alive;
use atoll_testkit::nodesim::{NodeSim, NodeSimConfig, wait_schedulable};
use atoll_testkit::realkube::{self, RealKube, RealKubeOptions};
use common::{eventually, from_json, http_get, namespace, pods, ready, running_pid};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(60);
const NODE: &str = "nodesim";

fn deployment(ready_file: &std::path::Path) -> Deployment {
    from_json(json!({
        "metadata": {"name": "web", "namespace": "demo"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [{
                        "name": "web",
                        "image": "atoll-testserver:dev",
                        "args": ["--ready-file", ready_file.to_string_lossy()],
                        "env": [{"name": "LISTEN", "value": "0.0.0.0:8080"}],
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 1},
                        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1}
                    }]
                }
            }
        }
    }))
}

fn available(d: &Deployment) -> Option<bool> {
    let conditions = d.status.as_ref()?.conditions.as_ref()?;
    let c = conditions.iter().find(|c| c.type_ == "Available")?;
    Some(c.status == "True")
}

/// Field managers that wrote an object (its own writes, not subresources).
fn writers<K: ResourceExt>(object: &K) -> BTreeSet<String> {
    object
        .managed_fields()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect()
}

async fn start() -> Option<(RealKube, Client, NodeSim, tempfile::TempDir)> {
    realkube::binaries_or_skip("nodesim on realkube")?;
    let kube = RealKube::start(RealKubeOptions::default())
        .await
        .unwrap_or_else(|e| panic!("realkube did not start: {e}"));
    let client = kube.client();
    namespace(&client, "demo").await;
    let node_client = kube
        .client_as(&format!("system:node:{NODE}"), &["system:nodes"])
        .await
        .expect("a node certificate");
    let state = tempfile::tempdir().expect("tempdir");
    let config = NodeSimConfig::new(state.path().join("node"))
        .binary("atoll-testserver", env!("CARGO_BIN_EXE_atoll-testserver"));
    let config = config.kubelet_tls(kube.kubelet_tls(NODE).await.expect("a kubelet certificate"));
    let started = Instant::now();
    let node = NodeSim::start_kubelet(node_client, client.clone(), config)
        .await
        .expect("nodesim starts in kubelet mode");
    wait_schedulable(&client, NODE, LIMIT).await;
    println!(
        "realkube {}: ready in {:.1} s; Node registered and schedulable {:.1} s after nodesim started",
        kube.version(),
        kube.startup_time().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    Some((kube, client, node, state))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_controllers_schedule_a_deployment_that_nodesim_runs_restarts_and_stops() {
    let Some((kube, client, node, state)) = start().await else {
        return;
    };
    // The node's Lease is held by the node.
    let lease = Api::<Lease>::namespaced(client.clone(), "kube-node-lease")
        .get(NODE)
        .await
        .expect("the node Lease");
    let spec = lease.spec.clone().expect("lease spec");
    assert_eq!(spec.holder_identity.as_deref(), Some(NODE));
    assert!(spec.renew_time.is_some());
    assert_eq!(writers(&lease), BTreeSet::from(["nodesim".to_owned()]));

    let ready_file = state.path().join("ready");
    let deployments = Api::<Deployment>::namespaced(client.clone(), "demo");
    deployments
        .create(&PostParams::default(), &deployment(&ready_file))
        .await
        .expect("deployment created");

    // The process runs and answers, but its readiness probe fails.
    let pod = eventually("the pod's process to run", LIMIT, || async {
        pods(&client, "demo", "app=web")
            .await
            .into_iter()
            .find(|p| running_pid(p).is_some())
    })
    .await;
    assert_eq!(
        pod.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        Some(NODE),
        "bound by the scheduler"
    );
    let pid = running_pid(&pod).expect("pid");
    let pod_ip: std::net::Ipv4Addr = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .and_then(|ip| ip.parse().ok())
        .expect("pod IP");
    assert!(pod_ip.is_loopback());
    let pod_addr = SocketAddr::from((pod_ip, 8080));
    let readyz = eventually("the server to answer", LIMIT, || {
        http_get(pod_addr, "x", "/readyz")
    })
    .await;
    assert_eq!(readyz.0, 503);
    let d = deployments.get("web").await.expect("deployment");
    assert_ne!(
        available(&d),
        Some(true),
        "Available before readiness passed"
    );
    assert!(!ready(&pods(&client, "demo", "app=web").await[0]));

    // Readiness passes: the real deployment controller makes it Available.
    std::fs::write(&ready_file, b"").expect("ready file");
    let d = eventually("Available=True", LIMIT, || async {
        let d = deployments.get("web").await.ok()?;
        (available(&d) == Some(true) && d.status.as_ref()?.ready_replicas == Some(1)).then_some(d)
    })
    .await;
    assert!(
        !writers(&d).contains("nodesim"),
        "nodesim wrote the Deployment: {:?}",
        writers(&d)
    );
    let sets = Api::<ReplicaSet>::namespaced(client.clone(), "demo")
        .list(&ListParams::default())
        .await
        .expect("ReplicaSets");
    assert_eq!(sets.items.len(), 1);
    assert!(!writers(&sets.items[0]).contains("nodesim"));

    // The Service reaches the pod at nodesim's loopback address for it.
    let service: Service = from_json(json!({
        "metadata": {"name": "web", "namespace": "demo"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
    }));
    Api::<Service>::namespaced(client.clone(), "demo")
        .create(&PostParams::default(), &service)
        .await
        .expect("service created");
    let service_ip = eventually("a Service address", LIMIT, || async {
        node.service_ip("demo", "web")
    })
    .await;
    let answer = eventually("the Service to answer", LIMIT, || async {
        http_get(SocketAddr::from((service_ip, 80)), "web", "/pid")
            .await
            .filter(|(s, _)| *s == 200)
    })
    .await;
    assert_eq!(answer.1, pid.to_string());

    // Killing the process brings a restart, reported through pods/status.
    std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill runs");
    let pod = eventually("a restarted, ready container", LIMIT, || async {
        pods(&client, "demo", "app=web")
            .await
            .into_iter()
            .find(|p| {
                let restarts = p
                    .status
                    .as_ref()
                    .and_then(|s| s.container_statuses.as_ref())
                    .map(|c| c[0].restart_count);
                restarts >= Some(1) && ready(p) && running_pid(p).is_some_and(|new| new != pid)
            })
    })
    .await;
    let new_pid = running_pid(&pod).expect("pid");
    assert!(!group_alive(pid));
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())
        .expect("statuses");
    let last = statuses[0]
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .expect("last state");
    assert_eq!(last.exit_code, 137, "killed by SIGKILL");

    // Deleting the Deployment: the garbage collector deletes the
    // ReplicaSet and the pod (gracefully); nodesim stops the process and
    // confirms with a 0-grace delete.
    deployments
        .delete("web", &DeleteParams::foreground())
        .await
        .expect("deleted");
    eventually("the pods to be gone", LIMIT, || async {
        pods(&client, "demo", "app=web")
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    eventually("the process group to be gone", LIMIT, || async {
        (!group_alive(new_pid)).then_some(())
    })
    .await;
    node.shutdown().await;
    kube.stop().expect("realkube stops leaving nothing");
}

/// A GET to nodesim's kubelet endpoint with `client`: (status, body), or
/// the error.
async fn kubelet_get(
    client: &reqwest::Client,
    port: u16,
    path: &str,
) -> Result<(u16, String), String> {
    let response = client
        .get(format!("https://127.0.0.1:{port}{path}"))
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    let body = response.text().await.map_err(|e| format!("{e:?}"))?;
    Ok((status, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubelet_endpoint_is_registered_and_serves_logs_to_certified_clients_only() {
    let Some((kube, client, node, _state)) = start().await else {
        return;
    };
    let status = Api::<k8s_openapi::api::core::v1::Node>::all(client.clone())
        .get(NODE)
        .await
        .expect("the Node")
        .status
        .expect("node status");
    let port = status
        .daemon_endpoints
        .and_then(|d| d.kubelet_endpoint)
        .map(|e| e.port)
        .expect("a kubelet endpoint");
    let port = u16::try_from(port).expect("a port");
    assert_ne!(port, 0);
    let addresses: Vec<(String, String)> = status
        .addresses
        .unwrap_or_default()
        .into_iter()
        .map(|a| (a.type_, a.address))
        .collect();
    assert!(addresses.contains(&("InternalIP".to_owned(), "127.0.0.1".to_owned())));

    let pki = kube.dir().expect("realkube's directory").join("pki");
    let read = |name: &str| std::fs::read(pki.join(name)).expect("a certificate file");
    let ca = reqwest::Certificate::from_pem(&read("ca.crt")).expect("the CA");
    // Without a client certificate: refused in the TLS handshake.
    let anonymous = reqwest::Client::builder()
        .add_root_certificate(ca.clone())
        .build()
        .expect("a client");
    let refused = kubelet_get(&anonymous, port, "/containerLogs/demo/web/web").await;
    assert!(
        refused.is_err(),
        "a client without a certificate: {refused:?}"
    );
    // With one the cluster CA signed (the admin's): kubelet's answers.
    let identity = reqwest::Identity::from_pem(&[read("admin.crt"), read("admin.key")].concat())
        .expect("the admin's identity");
    let certified = reqwest::Client::builder()
        .add_root_certificate(ca)
        .identity(identity)
        .build()
        .expect("a client");
    let missing = kubelet_get(&certified, port, "/containerLogs/demo/nope/web").await;
    assert_eq!(
        missing,
        Ok((404, "pod \"nope\" does not exist\n".to_owned()))
    );
    let other = kubelet_get(&certified, port, "/pods").await;
    assert_eq!(other.map(|(s, _)| s), Ok(404));
    node.shutdown().await;
    kube.stop().expect("realkube stops");
}
