//! A Deployment run by nodesim against kubesim: readiness gates
//! availability, a killed process is restarted, deletion leaves no process,
//! and Services and Ingresses route to the pod.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use atoll_testkit::kubesim::KubeSim;
use atoll_testkit::nodesim::process::group_alive;
use atoll_testkit::nodesim::{NodeSim, NodeSimConfig};
use common::{eventually, from_json, http_get, namespace, pods, ready, running_pid};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(30);

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

async fn start() -> (KubeSim, kube::Client, NodeSim, tempfile::TempDir) {
    let sim = KubeSim::new();
    let client = sim.client();
    namespace(&client, "demo").await;
    let state = tempfile::tempdir().expect("tempdir");
    let config = NodeSimConfig::new(state.path().join("node"))
        .binary("atoll-testserver", env!("CARGO_BIN_EXE_atoll-testserver"))
        .ingress("127.0.0.1:0".parse().expect("addr"));
    let node = NodeSim::start(client.clone(), config)
        .await
        .expect("nodesim starts");
    (sim, client, node, state)
}

#[tokio::test]
async fn a_deployment_becomes_available_after_readiness_restarts_when_killed_and_leaves_nothing_when_deleted()
 {
    let (_sim, client, node, state) = start().await;
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
    assert_eq!(
        available(&d),
        Some(false),
        "Available before readiness passed: {:?}",
        d.status
    );
    assert!(!ready(&pods(&client, "demo", "app=web").await[0]));

    // Readiness passes: the Deployment becomes Available.
    std::fs::write(&ready_file, b"").expect("ready file");
    let d = eventually("Available=True", LIMIT, || async {
        let d = deployments.get("web").await.ok()?;
        (available(&d) == Some(true)).then_some(d)
    })
    .await;
    let status = d.status.expect("status");
    assert_eq!(status.ready_replicas, Some(1));
    assert_eq!(status.available_replicas, Some(1));
    assert_eq!(status.updated_replicas, Some(1));
    assert_eq!(status.observed_generation, d.metadata.generation);

    // The Service reaches the pod at its own loopback address.
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
    assert_eq!(
        node.resolve("http://web.demo.svc.cluster.local:80/x"),
        format!("http://{service_ip}:80/x")
    );

    // Killing the process brings a restart with a new process.
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
    let last = &pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())
        .expect("statuses")[0];
    let last = last
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .expect("last state");
    assert_eq!(last.exit_code, 137, "killed by SIGKILL");

    // Deleting the Deployment stops the process and removes the pod.
    deployments
        .delete("web", &DeleteParams::default())
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
}

#[tokio::test]
async fn the_ingress_router_routes_by_host_to_the_service_and_fills_ingress_status() {
    let (_sim, client, node, state) = start().await;
    let ready_file = state.path().join("ready");
    std::fs::write(&ready_file, b"").expect("ready file");
    Api::<Deployment>::namespaced(client.clone(), "demo")
        .create(&PostParams::default(), &deployment(&ready_file))
        .await
        .expect("deployment");
    let service: Service = from_json(json!({
        "metadata": {"name": "web", "namespace": "demo"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
    }));
    Api::<Service>::namespaced(client.clone(), "demo")
        .create(&PostParams::default(), &service)
        .await
        .expect("service");
    let ingress: Ingress = from_json(json!({
        "metadata": {"name": "web", "namespace": "demo"},
        "spec": {"rules": [{"host": "web.atoll.localhost", "http": {"paths": [{
            "path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "web", "port": {"name": "http"}}}
        }]}}]}
    }));
    let ingresses = Api::<Ingress>::namespaced(client.clone(), "demo");
    ingresses
        .create(&PostParams::default(), &ingress)
        .await
        .expect("ingress");

    let router = node.ingress_addr().expect("router");
    let (status, body) = eventually("the host to answer through the router", LIMIT, || async {
        http_get(router, "web.atoll.localhost:8080", "/")
            .await
            .filter(|(s, _)| *s == 200)
    })
    .await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    assert_eq!(
        http_get(router, "other.atoll.localhost", "/")
            .await
            .map(|r| r.0),
        Some(404)
    );
    let lb = eventually("Ingress status", LIMIT, || async {
        let ing = ingresses.get("web").await.ok()?;
        ing.status?.load_balancer?.ingress?.into_iter().next()
    })
    .await;
    assert_eq!(lb.ip.as_deref(), Some("127.0.0.1"));
    node.shutdown().await;
}
