//! Script tasks around a tenant's instance (#17), with the operator in
//! process as the chart's service account against kubesim and the real
//! control plane (`ATOLL_TEST_CLUSTER`): a Tenant's `spec.tasks`,
//! `spec.storage` and `spec.secrets` become the instance's task-pod
//! RoleBinding (which the real API server accepts only because the chart
//! lets the operator `bind` that one ClusterRole), the task pods'
//! NetworkPolicy, the storage volume claim or the S3 variables, the
//! secrets volume and the task variables; a restarted operator writes
//! nothing (kubesim's request log); a changed `maxConcurrentPods` changes
//! the variable; the Process runner loses the RoleBinding and the token.

mod common;

use std::future::Future;
use std::time::Duration;

use atoll_crds::{Tenant, tenant_crd};
use atoll_operator::cli::{Cli, Command};
use atoll_operator::run::{RunArgs, run_with_client};
use atoll_testkit::kubesim::Verb;
use clap::Parser;
use common::ClusterKind;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

const TIMEOUT: Duration = Duration::from_secs(120);
const NAMESPACE: &str = "atoll-initech";

async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    common::eventually(what, TIMEOUT, check).await
}

fn start_operator(client: &Client) -> JoinHandle<()> {
    let cli = Cli::parse_from([
        "atoll-operator",
        "run",
        "--metrics-addr",
        "127.0.0.1:0",
        "--base-domain",
        "atoll.localhost",
    ]);
    let args: RunArgs = match cli.command {
        Command::Run(args) => *args,
        other => panic!("parsed {other:?}"),
    };
    let client = client.clone();
    tokio::spawn(async move {
        if let Err(error) = run_with_client(args, client).await {
            panic!("operator stopped: {error}");
        }
    })
}

/// The instance's pod template, as JSON.
async fn instance_pod(client: &Client) -> Option<Value> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let deployment = deployments.get_opt("instance").await.ok()??;
    let value = serde_json::to_value(deployment).ok()?;
    Some(value["spec"]["template"]["spec"].clone())
}

fn env_value(pod: &Value, name: &str) -> Option<String> {
    pod["containers"][0]["env"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == name)
        .and_then(|v| v["value"].as_str().map(str::to_owned))
}

async fn patch_tenant(client: &Client, spec: Value) {
    Api::<Tenant>::all(client.clone())
        .patch(
            "initech",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": spec })),
        )
        .await
        .expect("tenant patched");
}

/// The operator's writes that changed something, events apart.
fn operator_writes(sim: &atoll_testkit::kubesim::KubeSim, mark: usize) -> Vec<String> {
    sim.request_log()
        .writes_since(mark)
        .into_iter()
        .filter(|r| r.wrote && r.resource != "events")
        .filter(|r| {
            r.field_manager == "atoll-operator"
                || (r.resource == "tenants" && r.verb != Verb::Create)
        })
        .map(|r| format!("{:?} {} {}/{}", r.verb, r.resource, r.namespace, r.name))
        .collect()
}

async fn task_rights_network_storage_and_env_follow_the_tenant(kind: ClusterKind) {
    let cluster = common::start_cluster(kind).await;
    common::install_crd(&cluster.client(), &tenant_crd()).await;
    let operator_client = common::operator_client_as_the_chart(&cluster).await;
    let client = cluster.client();
    let tenant: Tenant =
        serde_norway::from_str(include_str!("../../examples/tenant-tasks.yaml")).expect("example");
    Api::<Tenant>::all(client.clone())
        .create(&PostParams::default(), &tenant)
        .await
        .expect("tenant created");
    let operator = start_operator(&operator_client);

    // The instance's rights: pods in its own namespace, through the chart's
    // ClusterRole.
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), NAMESPACE);
    let binding = eventually("the task-pods RoleBinding", || async {
        bindings.get_opt("instance-task-pods").await.ok()?
    })
    .await;
    assert_eq!(binding.role_ref.kind, "ClusterRole");
    assert_eq!(binding.role_ref.name, "atoll-task-pods");
    let subject = &binding.subjects.as_ref().expect("subjects")[0];
    assert_eq!(
        (subject.name.as_str(), subject.namespace.as_deref()),
        ("instance", Some(NAMESPACE))
    );

    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), NAMESPACE);
    for name in ["task-pods", "instance-from-task-pods"] {
        eventually(&format!("NetworkPolicy {name}"), || async {
            policies.get_opt(name).await.ok()?
        })
        .await;
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NAMESPACE);
    let claim = eventually("the storage claim", || async {
        claims.get_opt("instance-storage").await.ok()?
    })
    .await;
    let requested = claim
        .spec
        .and_then(|s| s.resources)
        .and_then(|r| r.requests)
        .and_then(|r| r.get("storage").cloned());
    assert_eq!(requested.map(|q| q.0).as_deref(), Some("2Gi"));

    let pod = eventually("the instance Deployment", || instance_pod(&client)).await;
    assert_eq!(pod["automountServiceAccountToken"], true);
    assert_eq!(
        env_value(&pod, "ATOLL_TASK_RUNNER").as_deref(),
        Some("Kubernetes")
    );
    assert_eq!(env_value(&pod, "ATOLL_TASK_MAX_PODS").as_deref(), Some("4"));
    assert_eq!(
        env_value(&pod, "ATOLL_TASK_IMAGE").as_deref(),
        Some("python:3.12-slim")
    );
    assert_eq!(
        env_value(&pod, "ATOLL_TASK_ALLOWED_IMAGES").as_deref(),
        Some("python:*,bash:*,alpine:*")
    );
    assert_eq!(
        env_value(&pod, "ATOLL_STORAGE_DIR").as_deref(),
        Some("/var/lib/atoll/storage")
    );
    assert_eq!(
        env_value(&pod, "ATOLL_SECRETS_DIR").as_deref(),
        Some("/var/run/atoll/secrets")
    );
    assert!(pod["volumes"].to_string().contains("initech-flow-secrets"));

    // At rest: a restarted operator applies everything again and changes
    // nothing. The first operator must have finished a whole pass first
    // (its last child, the Ingress, and then the status of this generation),
    // or the second one finishes that pass and its writes are not "at rest".
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), NAMESPACE);
    let tenants: Api<Tenant> = Api::all(client.clone());
    eventually(
        "the first operator's pass to end with the status",
        || async {
            ingresses.get_opt("instance").await.ok()??;
            let tenant = tenants.get_opt("initech").await.ok()??;
            let observed = tenant.status.as_ref()?.observed_generation;
            (observed.is_some() && observed == tenant.metadata.generation).then_some(())
        },
    )
    .await;
    if let Some(sim) = cluster.sim() {
        operator.abort();
        let _ = operator.await;
        let mark = sim.request_log().mark();
        let restarted = start_operator(&operator_client);
        eventually("the restarted operator to apply the Deployment", || async {
            sim.request_log()
                .since(mark)
                .iter()
                .any(|r| r.resource == "ingresses" && r.field_manager == "atoll-operator")
                .then_some(())
        })
        .await;
        let writes = operator_writes(sim, mark);
        assert!(writes.is_empty(), "writes at rest: {writes:#?}");
        common::assert_chart_allows_the_operator(&sim.request_log().records());
        restarted.abort();
    } else {
        operator.abort();
        println!("kubesim only (the request log is kubesim's): writes at rest");
    }
    let operator = start_operator(&operator_client);

    // More task pods at once: the variable follows.
    patch_tenant(&client, json!({"tasks": {"maxConcurrentPods": 9}})).await;
    eventually("ATOLL_TASK_MAX_PODS to become 9", || async {
        let pod = instance_pod(&client).await?;
        (env_value(&pod, "ATOLL_TASK_MAX_PODS").as_deref() == Some("9")).then_some(())
    })
    .await;

    // Tasks as processes and files in S3: no rights, no token, S3
    // variables; the volume stays (files are data).
    patch_tenant(
        &client,
        json!({
            "tasks": {"runner": "Process"},
            "storage": {"s3": {
                "endpoint": "https://s3.example.com", "bucket": "initech-files",
                "credentialsSecretRef": {"name": "initech-s3"},
            }},
        }),
    )
    .await;
    eventually("the RoleBinding to be pruned", || async {
        bindings
            .get_opt("instance-task-pods")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    let pod = eventually("the Process runner's pod template", || async {
        let pod = instance_pod(&client).await?;
        (pod["automountServiceAccountToken"] == false).then_some(pod)
    })
    .await;
    assert_eq!(
        env_value(&pod, "ATOLL_STORAGE_S3_BUCKET").as_deref(),
        Some("initech-files")
    );
    assert_eq!(env_value(&pod, "ATOLL_STORAGE_DIR"), None);
    assert!(!pod["volumes"].to_string().contains("instance-storage"));
    assert!(
        claims
            .get_opt("instance-storage")
            .await
            .expect("read")
            .is_some()
    );
    operator.abort();
    cluster.stop().await.expect("the cluster stops");
}

atoll_testkit::on_each_cluster!(task_rights_network_storage_and_env_follow_the_tenant);
