//! A `postgres:16` StatefulSet with a PVC and a Secret, run by nodesim
//! against kubesim as a real PostgreSQL server, used by a second pod through
//! the Service's in-cluster name, and keeping its data across a pod restart.

mod common;

use std::time::Duration;

use atoll_testkit::kubesim::KubeSim;
use atoll_testkit::nodesim::{NodeSim, NodeSimConfig, Program, postgres};
use common::{eventually, from_json, namespace};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(90);
const NS: &str = "atoll-acme";

async fn create<K>(client: &Client, value: serde_json::Value)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let object: K = from_json(value);
    Api::<K>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &object)
        .await
        .expect("created");
}

fn database_objects(password: &str) -> (serde_json::Value, serde_json::Value, serde_json::Value) {
    let secret = json!({
        "metadata": {"name": "acme-db"},
        "stringData": {"password": password, "username": "atoll"}
    });
    let sts = json!({
        "metadata": {"name": "db"},
        "spec": {
            "serviceName": "db",
            "replicas": 1,
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {
                    "containers": [{
                        "name": "postgres",
                        "image": "postgres:16",
                        "env": [
                            {"name": "POSTGRES_USER", "valueFrom": {"secretKeyRef": {"name": "acme-db", "key": "username"}}},
                            {"name": "POSTGRES_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "acme-db", "key": "password"}}},
                            {"name": "POSTGRES_DB", "value": "acme"},
                            {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"}
                        ],
                        "ports": [{"name": "postgres", "containerPort": 5432}],
                        "readinessProbe": {"exec": {"command": ["pg_isready", "-U", "atoll", "-d", "acme"]}, "periodSeconds": 2},
                        "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}]
                    }]
                }
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
            }]
        }
    });
    let service = json!({
        "metadata": {"name": "db"},
        "spec": {"selector": {"app": "db"}, "ports": [{"name": "postgres", "port": 5432, "targetPort": "postgres"}]}
    });
    (secret, sts, service)
}

/// A one-shot pod running `psql` against the Service's in-cluster name, with
/// the password from the Secret.
fn psql_pod(name: &str, secret_key: &str, sql: &str) -> serde_json::Value {
    json!({
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "psql",
                "image": "psql:15",
                "env": [{"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {"name": "acme-db", "key": secret_key}}}],
                "args": ["postgresql://atoll@db.atoll-acme.svc.cluster.local:5432/acme", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql]
            }]
        }
    })
}

async fn finished(client: &Client, name: &str) -> String {
    let pods = Api::<Pod>::namespaced(client.clone(), NS);
    eventually(&format!("pod {name} to finish"), LIMIT, || async {
        let pod = pods.get(name).await.ok()?;
        let phase = pod.status?.phase?;
        matches!(phase.as_str(), "Succeeded" | "Failed").then_some(phase)
    })
    .await
}

async fn db_ready(client: &Client, generation_of: Option<&str>) -> Pod {
    let pods = Api::<Pod>::namespaced(client.clone(), NS);
    eventually("db-0 to be ready", LIMIT, || async {
        let pod = pods.get("db-0").await.ok()?;
        let fresh = generation_of.is_none_or(|old| pod.metadata.uid.as_deref() != Some(old));
        (fresh && common::ready(&pod)).then_some(pod)
    })
    .await
}

#[tokio::test]
async fn a_postgres_statefulset_serves_through_its_service_name_and_keeps_data_across_restarts() {
    let sim = KubeSim::builder().graceful_pod_deletion(true).build();
    let client = sim.client();
    namespace(&client, NS).await;
    let state = tempfile::tempdir().expect("tempdir");
    let node_dir = state.path().join("node");
    let config = NodeSimConfig::new(&node_dir).postgres().image(
        "psql:",
        Program::Binary {
            path: postgres::bindir_from_env().join("psql"),
            args: Vec::new(),
        },
    );
    let node = NodeSim::start(client.clone(), config)
        .await
        .expect("nodesim starts");

    let password = format!("pw-{}", std::process::id());
    let (secret, sts, service) = database_objects(&password);
    create::<Secret>(&client, secret).await;
    create::<StatefulSet>(&client, sts).await;
    create::<Service>(&client, service).await;

    let first = db_ready(&client, None).await;
    let pvc = Api::<PersistentVolumeClaim>::namespaced(client.clone(), NS)
        .get("data-db-0")
        .await
        .expect("PVC from the claim template");
    assert_eq!(pvc.status.and_then(|s| s.phase).as_deref(), Some("Bound"));
    assert!(
        node_dir
            .join("pvc/atoll-acme/data-db-0/pgdata/PG_VERSION")
            .is_file()
    );
    let sts = Api::<StatefulSet>::namespaced(client.clone(), NS)
        .get("db")
        .await
        .expect("sts");
    assert_eq!(sts.status.as_ref().and_then(|s| s.ready_replicas), Some(1));

    // A second process reaches it by the in-cluster name with the Secret's password.
    create::<Pod>(
        &client,
        psql_pod(
            "writer",
            "password",
            "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('survives'); SELECT current_user",
        ),
    )
    .await;
    assert_eq!(
        finished(&client, "writer").await,
        "Succeeded",
        "{:?}",
        node.logs(NS, "writer", None)
    );
    assert_eq!(
        node.logs(NS, "writer", None).as_deref().map(str::trim),
        Some("CREATE TABLE\nINSERT 0 1\natoll")
    );

    // A wrong password is refused: authentication is real.
    create::<Pod>(&client, psql_pod("intruder", "username", "SELECT 1")).await;
    assert_eq!(finished(&client, "intruder").await, "Failed");
    let refused = node.logs(NS, "intruder", None).unwrap_or_default();
    assert!(
        refused.contains("password authentication failed"),
        "{refused}"
    );

    // The pod restarts (deleted, recreated by the StatefulSet) on the same PVC.
    Api::<Pod>::namespaced(client.clone(), NS)
        .delete("db-0", &DeleteParams::default())
        .await
        .expect("pod deleted");
    db_ready(&client, first.metadata.uid.as_deref()).await;
    create::<Pod>(
        &client,
        psql_pod("reader", "password", "SELECT v FROM kept"),
    )
    .await;
    assert_eq!(
        finished(&client, "reader").await,
        "Succeeded",
        "{:?}",
        node.logs(NS, "reader", None)
    );
    assert_eq!(
        node.logs(NS, "reader", None).as_deref().map(str::trim),
        Some("survives")
    );

    // Nothing logged the password.
    for entry in walk(&node.logs_dir()) {
        let text = std::fs::read_to_string(&entry).unwrap_or_default();
        assert!(!text.contains(&password), "password in {}", entry.display());
    }
    node.shutdown().await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
