//! How fast nodesim's instant mode brings workloads to ready in kubesim, and
//! that it rests with zero writes. Prints figures; asserts nothing about
//! time.
//!
//! `cargo bench -p atoll-testkit --bench nodesim_instant -- [N]` (default
//! 1000): N namespaces, each with a Deployment, a one-replica StatefulSet
//! with a claim template, and a Service. Measured on the 2-core machine
//! (kubesim in process): 1,000 tenants ready in 7.8 s, 5,000 in 40 s, 10
//! writes per tenant, 0 writes at rest.

use std::time::{Duration, Instant};

use atoll_testkit::kubesim::KubeSim;
use atoll_testkit::nodesim::{NodeSim, NodeSimConfig};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

fn object<K: serde::de::DeserializeOwned>(value: serde_json::Value) -> K {
    serde_json::from_value(value).expect("fixture")
}

async fn create_tenant(client: &kube::Client, i: usize) {
    let ns = format!("bench-{i}");
    let post = PostParams::default();
    Api::<Namespace>::all(client.clone())
        .create(&post, &object(json!({"metadata": {"name": ns}})))
        .await
        .expect("namespace");
    let labels = json!({"app": "instance"});
    Api::<Deployment>::namespaced(client.clone(), &ns)
        .create(&post, &object(json!({
            "metadata": {"name": "instance"},
            "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels},
                "spec": {"containers": [{"name": "instance", "image": "registry.example.com/example/atoll-instance:1", "ports": [{"containerPort": 8080}]}]}}}
        })))
        .await
        .expect("deployment");
    let db = json!({"app": "db"});
    Api::<StatefulSet>::namespaced(client.clone(), &ns)
        .create(&post, &object(json!({
            "metadata": {"name": "db"},
            "spec": {"serviceName": "db", "selector": {"matchLabels": db}, "template": {"metadata": {"labels": db},
                "spec": {"containers": [{"name": "postgres", "image": "postgres:16"}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}
        })))
        .await
        .expect("statefulset");
    Api::<Service>::namespaced(client.clone(), &ns)
        .create(&post, &object(json!({"metadata": {"name": "db"}, "spec": {"selector": db, "ports": [{"port": 5432}]}})))
        .await
        .expect("service");
}

async fn converged(client: &kube::Client, n: usize) -> bool {
    let deployments = Api::<Deployment>::all(client.clone())
        .list(&ListParams::default())
        .await
        .expect("list");
    let sets = Api::<StatefulSet>::all(client.clone())
        .list(&ListParams::default())
        .await
        .expect("list");
    deployments
        .items
        .iter()
        .filter(|d| d.status.as_ref().and_then(|s| s.available_replicas) == Some(1))
        .count()
        == n
        && sets
            .items
            .iter()
            .filter(|s| s.status.as_ref().and_then(|s| s.ready_replicas) == Some(1))
            .count()
            == n
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1000);
    let sim = KubeSim::new();
    let client = sim.client();
    let state = std::env::temp_dir().join(format!("nodesim-bench-{}", std::process::id()));
    let node = NodeSim::start(client.clone(), NodeSimConfig::new(&state).instant())
        .await
        .expect("nodesim");

    let start = Instant::now();
    for i in 0..n {
        create_tenant(&client, i).await;
    }
    let created = start.elapsed();
    while !converged(&client, n).await {
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "no convergence in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let total = start.elapsed();
    let writes = sim
        .request_log()
        .records()
        .iter()
        .filter(|r| r.wrote && r.field_manager == "nodesim")
        .count();

    let mark = sim.request_log().mark();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let at_rest = sim.request_log().writes_since(mark).len();

    let report = format!(
        "nodesim instant mode, {n} tenants (Deployment + StatefulSet with PVC + Service each)\n\
         \x20 objects created by the bench in {:.2}s\n\
         \x20 all workloads ready after {:.2}s\n\
         \x20 nodesim writes: {writes} ({:.1} per tenant)\n\
         \x20 writes during 3s at rest: {at_rest}\n",
        created.as_secs_f64(),
        total.as_secs_f64(),
        writes as f64 / n as f64,
    );
    std::io::Write::write_all(&mut std::io::stdout(), report.as_bytes()).expect("stdout");
    node.shutdown().await;
    let _ = std::fs::remove_dir_all(state);
}
