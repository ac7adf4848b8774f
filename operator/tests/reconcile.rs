//! The operator in process against kubesim and the real control plane
//! (`ATOLL_TEST_CLUSTER`, see `atoll_testkit::cluster`), running as the
//! chart's service account with the chart's RBAC and admission policy
//! installed (enforced by kubesim, or by the real authorizer and admission
//! chain): a Tenant becomes its objects and its status, a restarted
//! operator finds nothing to write, an invalid Tenant is reported once and
//! not retried, deletion follows the policy (finalizers; the real namespace
//! controller and garbage collector on realkube), the CRD's rules refuse
//! what they must.
//!
//! Workload readiness is written by the test in kubelet's place on kubesim;
//! on realkube, whose controllers own workload status, nodesim runs the
//! pods as kubelet. The request log (who wrote what) is kubesim's: checks
//! on it run on kubesim only and say so; on realkube unchanged
//! resourceVersions show that nothing was written.

mod common;

use std::future::Future;
use std::time::Duration;

use atoll_crds::{Phase, Tenant, tenant_crd};
use atoll_operator::cli::{Cli, Command};
use atoll_operator::run::{RunArgs, run_with_client};
use atoll_testkit::kubesim::Verb;
use atoll_testkit::nodesim::{NodeSim, NodeSimConfig, workspace_binary};
use clap::Parser;
use common::{ClusterKind, TestCluster};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::task::JoinHandle;

/// Generous: the real namespace controller and garbage collector work on
/// a busy 2-core machine, and PostgreSQL's first start runs initdb.
const TIMEOUT: Duration = Duration::from_secs(120);

async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    common::eventually(what, TIMEOUT, check).await
}

fn run_args() -> RunArgs {
    let cli = Cli::parse_from([
        "atoll-operator",
        "run",
        "--metrics-addr",
        "127.0.0.1:0",
        "--base-domain",
        "atoll.localhost",
        "--public-port",
        "8080",
    ]);
    match cli.command {
        Command::Run(args) => *args,
        other => panic!("parsed {other:?}"),
    }
}

/// Starts the cluster, installs the CRD and the chart's RBAC and admission
/// policy; returns the cluster and a client as the operator's service
/// account (so that the request log names its requests on kubesim).
async fn setup(kind: ClusterKind, crd: CustomResourceDefinition) -> (TestCluster, Client) {
    let cluster = common::start_cluster(kind).await;
    common::install_crd(&cluster.client(), &crd).await;
    let operator = common::operator_client_as_the_chart(&cluster).await;
    (cluster, operator)
}

/// Runs the operator with `client` (as the chart's service account).
fn start_operator(client: &Client) -> JoinHandle<()> {
    let client = client.clone();
    tokio::spawn(async move {
        if let Err(error) = run_with_client(run_args(), client).await {
            panic!("operator stopped: {error}");
        }
    })
}

async fn create_tenant(client: &Client, yaml: &str) -> Tenant {
    let tenant: Tenant = serde_norway::from_str(yaml).expect("tenant YAML");
    let tenants: Api<Tenant> = Api::all(client.clone());
    tenants
        .create(&PostParams::default(), &tenant)
        .await
        .expect("tenant created")
}

async fn tenant_phase(client: &Client, name: &str) -> Option<Phase> {
    let tenants: Api<Tenant> = Api::all(client.clone());
    tenants.get(name).await.ok()?.status?.phase
}

/// Plays kubelet and the workload controllers: marks the tenant's
/// StatefulSet and Deployment ready at their current generation.
async fn mark_workloads_ready(client: &Client, namespace: &str) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    let deployment = eventually("the instance Deployment", || async {
        deployments.get("instance").await.ok()
    })
    .await;
    let set = eventually("the database StatefulSet", || async {
        sets.get("database").await.ok()
    })
    .await;
    let replicas = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let status = |generation: Option<i64>, replicas: i32| {
        json!({"status": {
            "observedGeneration": generation, "replicas": replicas, "readyReplicas": replicas,
            "updatedReplicas": replicas, "availableReplicas": replicas, "currentReplicas": replicas,
        }})
    };
    deployments
        .patch_status(
            "instance",
            &PatchParams::default(),
            &Patch::Merge(status(deployment.metadata.generation, replicas)),
        )
        .await
        .expect("deployment status");
    sets.patch_status(
        "database",
        &PatchParams::default(),
        &Patch::Merge(status(set.metadata.generation, 1)),
    )
    .await
    .expect("statefulset status");
}

/// On realkube, nodesim as kubelet running the tenant's PostgreSQL and
/// instance: the real controllers write workload status.
async fn start_kubelet(cluster: &TestCluster, state: &std::path::Path) -> NodeSim {
    let instance = workspace_binary("atoll-instance");
    assert!(
        instance.is_file(),
        "{} is not built: run `cargo build --bins`",
        instance.display()
    );
    let config = NodeSimConfig::new(state.join("node"))
        .postgres()
        .binary("atoll-instance", instance);
    cluster
        .start_node(config)
        .await
        .unwrap_or_else(|e| panic!("nodesim on {}: {e}", cluster.kind()))
}

/// Says that a check needs kubesim's request log.
fn kubesim_only(cluster: &TestCluster, check: &str) {
    println!(
        "kubesim only (the request log is kubesim's), not checked on {}: {check}",
        cluster.describe()
    );
}

/// The resourceVersion of every object the operator keeps in `namespace`
/// (workloads apart: their status moves), by kind and name.
async fn versions(client: &Client, namespace: &str) -> Vec<(String, Option<String>)> {
    async fn of<K>(client: &Client, namespace: &str, out: &mut Vec<(String, Option<String>)>)
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let list = Api::<K>::namespaced(client.clone(), namespace)
            .list(&ListParams::default())
            .await
            .expect("list");
        let kind = K::kind(&K::DynamicType::default()).into_owned();
        for item in list.items {
            let meta = item.meta();
            if meta.labels.as_ref().is_some_and(|l| {
                l.get("app.kubernetes.io/managed-by").map(String::as_str) == Some("atoll-operator")
            }) {
                out.push((
                    format!("{kind}/{}", item.name_any()),
                    meta.resource_version.clone(),
                ));
            }
        }
    }
    let mut out = Vec::new();
    of::<Secret>(client, namespace, &mut out).await;
    of::<ConfigMap>(client, namespace, &mut out).await;
    of::<Service>(client, namespace, &mut out).await;
    of::<ServiceAccount>(client, namespace, &mut out).await;
    of::<NetworkPolicy>(client, namespace, &mut out).await;
    of::<Ingress>(client, namespace, &mut out).await;
    of::<k8s_openapi::api::rbac::v1::RoleBinding>(client, namespace, &mut out).await;
    out.sort();
    out
}

/// Writes that changed something, by the operator (its applies, and its
/// patches of Tenants: finalizer and status), events apart.
fn operator_writes(sim: &atoll_testkit::kubesim::KubeSim, mark: usize) -> Vec<String> {
    sim.request_log()
        .writes_since(mark)
        .into_iter()
        .filter(|r| r.wrote && r.resource != "events")
        .filter(|r| {
            r.field_manager == "atoll-operator"
                || (r.resource == "tenants" && r.verb != Verb::Create)
        })
        .map(|r| {
            format!(
                "{:?} {} {}/{} {}",
                r.verb, r.resource, r.namespace, r.name, r.subresource
            )
        })
        .collect()
}

async fn tenant_converges_and_a_restarted_operator_writes_nothing(kind: ClusterKind) {
    let (cluster, operator_client) = setup(kind, tenant_crd()).await;
    let client = cluster.client();
    let sim = cluster.sim();
    let state = tempfile::tempdir().expect("state dir");
    // realkube: nodesim as kubelet runs the pods (its controllers own
    // workload status); kubesim: the test marks the workloads ready.
    let node = match sim {
        Some(_) => None,
        None => Some(start_kubelet(&cluster, state.path()).await),
    };
    let minimal = include_str!("../../examples/tenant-minimal.yaml");
    let mark = sim.map(|s| s.request_log().mark());
    create_tenant(&client, minimal).await;
    let operator = start_operator(&operator_client);

    eventually("acme to report Provisioning", || async {
        (tenant_phase(&client, "acme").await == Some(Phase::Provisioning)).then_some(())
    })
    .await;
    let provisioning_writes = sim.zip(mark).map(|(sim, mark)| operator_writes(sim, mark));
    if sim.is_some() {
        mark_workloads_ready(&client, "atoll-acme").await;
    }
    eventually("acme to become Ready", || async {
        (tenant_phase(&client, "acme").await == Some(Phase::Ready)).then_some(())
    })
    .await;

    let tenants: Api<Tenant> = Api::all(client.clone());
    let acme = tenants.get("acme").await.expect("acme");
    let status = acme.status.clone().expect("status");
    assert_eq!(
        status.url.as_deref(),
        Some("http://acme.atoll.localhost:8080")
    );
    assert_eq!(status.namespace.as_deref(), Some("atoll-acme"));
    assert_eq!(status.observed_generation, acme.metadata.generation);
    assert!(acme.finalizers().contains(&"atoll.dev/cleanup".to_owned()));
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "atoll-acme");
    let password = secrets
        .get("database-credentials")
        .await
        .expect("secret")
        .data
        .expect("data")["password"]
        .clone();

    // 21 objects for a Dedicated tenant (the database's init scripts, the
    // instance's storage claim, task-pod RoleBinding and the task pods'
    // two NetworkPolicies included); creating it writes each once, plus the finalizer and the
    // first status. Later status patches report progress (workloads
    // becoming ready) and are not part of creating it.
    match &provisioning_writes {
        Some(provisioning_writes) => {
            let children = 21;
            let first_status = provisioning_writes
                .iter()
                .position(|w| w.contains("tenants") && w.ends_with("status"))
                .expect("a status was written");
            let creation = &provisioning_writes[..=first_status];
            println!("writes to create a tenant: {}", creation.len());
            assert!(
                creation.len() <= children + 2,
                "{} writes: {creation:#?}",
                creation.len()
            );
        }
        None => kubesim_only(&cluster, "the number of writes to create a tenant"),
    }

    // A new operator process reconciles everything once; nothing changes.
    let before = versions(&client, "atoll-acme").await;
    assert!(before.len() >= 8, "the tenant's objects: {before:?}");
    operator.abort();
    let _ = operator.await;
    let mark = sim.map(|s| s.request_log().mark());
    let operator = start_operator(&operator_client);
    if let Some((sim, mark)) = sim.zip(mark) {
        eventually("the restarted operator to reconcile acme", || async {
            sim.request_log()
                .since(mark)
                .iter()
                .any(|r| r.resource == "ingresses" && r.field_manager == "atoll-operator")
                .then_some(())
        })
        .await;
        let writes = operator_writes(sim, mark);
        assert!(writes.is_empty(), "writes at rest: {writes:#?}");
    }
    // The password was read back, never regenerated.
    let again = secrets
        .get("database-credentials")
        .await
        .expect("secret")
        .data
        .expect("data")["password"]
        .clone();
    assert_eq!(password, again);

    // A hand edit of a workload's spec is undone at once (on realkube this
    // is how the test knows the restarted operator has reconciled).
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "atoll-acme");
    deployments
        .patch(
            "instance",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .expect("hand edit");
    eventually("the operator to undo the hand edit", || async {
        let replicas = deployments.get("instance").await.ok()?.spec?.replicas;
        (replicas == Some(1)).then_some(())
    })
    .await;
    // Applying what is there already changed no object: the API server
    // (kubesim, or the real one) kept every resourceVersion.
    let after = versions(&client, "atoll-acme").await;
    assert_eq!(before, after, "objects rewritten by the restarted operator");
    println!(
        "{}: a restarted operator kept the resourceVersion of all {} objects",
        cluster.describe(),
        after.len()
    );
    operator.abort();
    match sim {
        Some(sim) => common::assert_chart_allows_the_operator(&sim.request_log().records()),
        None => println!(
            "{}: the operator ran as its service account, judged by the real RBAC authorizer and the chart's admission policy",
            cluster.describe()
        ),
    }
    if let Some(node) = node {
        node.shutdown().await;
    }
    cluster.stop().await.expect("the cluster stops");
}

async fn invalid_tenant_is_reported_once_and_not_retried(kind: ClusterKind) {
    // An API server that enforces nothing (as if the CRD predates the rules).
    let mut crd = tenant_crd();
    for version in &mut crd.spec.versions {
        version.schema = Some(
            serde_json::from_value(json!({
                "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
            }))
            .expect("schema"),
        );
    }
    let (cluster, operator_client) = setup(kind, crd).await;
    let client = cluster.client();
    let sim = cluster.sim();
    let tenants: Api<Tenant> = Api::all(client.clone());
    let bad = json!({
        "apiVersion": "atoll.dev/v1alpha1", "kind": "Tenant",
        "metadata": {"name": "broken"},
        "spec": {"instance": {"replicas": 50}}
    });
    tenants
        .create(
            &PostParams::default(),
            &serde_json::from_value(bad).expect("tenant"),
        )
        .await
        .expect("created");
    let operator = start_operator(&operator_client);
    let ready = eventually("the InvalidSpec condition", || async {
        let status = tenants.get("broken").await.ok()?.status?;
        atoll_crds::conditions::get(&status.conditions, "Ready")
            .filter(|c| c.reason == "InvalidSpec")
            .cloned()
    })
    .await;
    assert!(
        ready.message.contains("spec.instance.replicas"),
        "{}",
        ready.message
    );
    assert_eq!(tenant_phase(&client, "broken").await, Some(Phase::Degraded));
    // Nothing was built for it.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    assert!(
        namespaces
            .get_opt("atoll-broken")
            .await
            .expect("list")
            .is_none()
    );

    // While a valid tenant is created and converges, the invalid one causes
    // no further writes: its resourceVersion stays.
    let version = tenants
        .get("broken")
        .await
        .expect("broken")
        .resource_version();
    let mark = sim.map(|s| s.request_log().mark());
    create_tenant(&client, include_str!("../../examples/tenant-minimal.yaml")).await;
    eventually("acme to report Provisioning", || async {
        (tenant_phase(&client, "acme").await == Some(Phase::Provisioning)).then_some(())
    })
    .await;
    assert_eq!(
        tenants
            .get("broken")
            .await
            .expect("broken")
            .resource_version(),
        version,
        "the invalid Tenant was written again"
    );
    if let Some((sim, mark)) = sim.zip(mark) {
        let retries: Vec<_> = sim
            .request_log()
            .writes_since(mark)
            .into_iter()
            .filter(|r| r.name == "broken" || r.namespace == "atoll-broken")
            .collect();
        assert!(
            retries.is_empty(),
            "writes for the invalid tenant: {retries:#?}"
        );
        common::assert_chart_allows_the_operator(&sim.request_log().records());
    }
    operator.abort();
    cluster.stop().await.expect("the cluster stops");
}

async fn deletion_follows_the_policy(kind: ClusterKind) {
    let (cluster, operator_client) = setup(kind, tenant_crd()).await;
    let client = cluster.client();
    let sim = cluster.sim();
    let operator = start_operator(&operator_client);
    let tenants: Api<Tenant> = Api::all(client.clone());
    let namespaces: Api<Namespace> = Api::all(client.clone());

    for (name, policy) in [("keep", "Retain"), ("drop", "Delete")] {
        create_tenant(
            &client,
            &format!("apiVersion: atoll.dev/v1alpha1\nkind: Tenant\nmetadata: {{name: {name}}}\nspec: {{deletionPolicy: {policy}}}\n"),
        )
        .await;
        eventually("the tenant's secret", || async {
            let secrets: Api<Secret> = Api::namespaced(client.clone(), &format!("atoll-{name}"));
            secrets.get_opt("database-credentials").await.ok().flatten()
        })
        .await;
        tenants
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete");
        eventually("the Tenant to be gone", || async {
            tenants
                .get_opt(name)
                .await
                .ok()
                .and_then(|t| t.is_none().then_some(()))
        })
        .await;
    }

    // Delete: the namespace is gone.
    eventually("atoll-drop to be deleted", || async {
        namespaces
            .get_opt("atoll-drop")
            .await
            .ok()
            .and_then(|n| n.is_none().then_some(()))
    })
    .await;
    // Retain: the namespace and credentials stay, released and labelled.
    let kept = namespaces.get("atoll-keep").await.expect("kept namespace");
    assert!(kept.owner_references().is_empty());
    assert_eq!(
        kept.labels().get("atoll.dev/retained").map(String::as_str),
        Some("true")
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "atoll-keep");
    let history: Vec<String> = sim
        .map(|sim| sim.request_log().records())
        .unwrap_or_default()
        .iter()
        .filter(|r| (r.namespace == "atoll-keep" && r.resource == "secrets") || r.name == "keep")
        .map(|r| {
            format!(
                "{:?} {} {}/{} {} wrote={} code={}",
                r.verb, r.resource, r.namespace, r.name, r.subresource, r.wrote, r.code
            )
        })
        .collect();
    let secret = secrets
        .get("database-credentials")
        .await
        .unwrap_or_else(|e| panic!("kept secret: {e}\nrequests: {history:#?}"));
    assert!(secret.owner_references().is_empty());
    let password = secret.data.expect("data")["password"].clone();

    // A new Tenant of the same name adopts them, password intact.
    create_tenant(
        &client,
        "apiVersion: atoll.dev/v1alpha1\nkind: Tenant\nmetadata: {name: keep}\nspec: {}\n",
    )
    .await;
    eventually("the namespace to be adopted", || async {
        let ns = namespaces.get("atoll-keep").await.ok()?;
        (!ns.labels().contains_key("atoll.dev/retained")).then_some(())
    })
    .await;
    let adopted = secrets.get("database-credentials").await.expect("secret");
    assert_eq!(adopted.data.expect("data")["password"], password);
    operator.abort();
    if let Some(sim) = sim {
        common::assert_chart_allows_the_operator(&sim.request_log().records());
    }
    cluster.stop().await.expect("the cluster stops");
}

async fn a_standby_replica_stays_idle_until_the_leader_is_gone(kind: ClusterKind) {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    use k8s_openapi::jiff::Timestamp;

    let (cluster, operator_client) = setup(kind, tenant_crd()).await;
    let client = cluster.client();
    let sim = cluster.sim();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if namespaces
        .get_opt("atoll-system")
        .await
        .expect("get")
        .is_none()
    {
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "atoll-system"}}))
                    .expect("namespace"),
            )
            .await
            .expect("namespace");
    }
    // Another replica holds the lease and renews it. 6 s: the set-up below
    // and the renewals must fit within one lease on a loaded machine (with
    // 2 s the standby once took the lease before the first renewal, and
    // the renewal met a 409).
    let leases: Api<Lease> = Api::namespaced(client.clone(), "atoll-system");
    let lease = |renewed: Timestamp| -> Lease {
        serde_json::from_value(json!({
            "metadata": {"name": "atoll-operator", "namespace": "atoll-system"},
            "spec": {"holderIdentity": "leader-0", "leaseDurationSeconds": 6,
                     "renewTime": MicroTime(renewed), "acquireTime": MicroTime(renewed)}
        }))
        .expect("lease")
    };
    leases
        .create(&PostParams::default(), &lease(Timestamp::now()))
        .await
        .expect("lease");
    create_tenant(&client, include_str!("../../examples/tenant-minimal.yaml")).await;

    let cli = Cli::parse_from([
        "atoll-operator",
        "run",
        "--metrics-addr",
        "127.0.0.1:0",
        "--leader-election",
        "--pod-name",
        "standby-1",
        "--operator-namespace",
        "atoll-system",
        "--lease-duration-seconds",
        "6",
    ]);
    let Command::Run(args) = cli.command else {
        panic!("run")
    };
    let standby = tokio::spawn(async move { run_with_client(*args, operator_client).await });

    // While the leader renews (three renewals, each watched by the standby),
    // the standby does nothing to the tenant. (kubesim's request log shows
    // the standby looking; on realkube the renewals follow each other.)
    if sim.is_none() {
        kubesim_only(&cluster, "the standby looked at the Lease between renewals");
    }
    for _ in 0..3 {
        if let Some(sim) = sim {
            let mark = sim.request_log().mark();
            eventually("the standby to look at the lease", || async {
                sim.request_log()
                    .since(mark)
                    .iter()
                    .any(|r| r.resource == "leases")
                    .then_some(())
            })
            .await;
        }
        let mut current = leases.get("atoll-operator").await.expect("lease");
        current.spec.as_mut().expect("spec").renew_time = Some(MicroTime(Timestamp::now()));
        leases
            .replace("atoll-operator", &PostParams::default(), &current)
            .await
            .expect("renew");
    }
    let tenants: Api<Tenant> = Api::all(client.clone());
    let untouched = tenants.get("acme").await.expect("acme");
    assert!(
        untouched.finalizers().is_empty() && untouched.status.is_none(),
        "the standby reconciled"
    );
    let namespace = namespaces.get_opt("atoll-acme").await.expect("get");
    assert!(namespace.is_none(), "the standby created objects");

    // The leader dies (stops renewing): the standby takes over and works.
    eventually("the standby to take over the lease", || async {
        let lease = leases.get("atoll-operator").await.ok()?;
        (lease.spec?.holder_identity.as_deref() == Some("standby-1")).then_some(())
    })
    .await;
    eventually("acme to be reconciled by the new leader", || async {
        (tenant_phase(&client, "acme").await == Some(Phase::Provisioning)).then_some(())
    })
    .await;
    standby.abort();
    if let Some(sim) = sim {
        common::assert_chart_allows_the_operator(&sim.request_log().records());
    }
    cluster.stop().await.expect("the cluster stops");
}

async fn ready_reason(client: &Client, name: &str) -> Option<(String, String)> {
    let tenants: Api<Tenant> = Api::all(client.clone());
    let tenant = tenants.get(name).await.ok()?;
    let status = tenant.status?;
    if status.observed_generation != tenant.metadata.generation {
        return None;
    }
    let ready = atoll_crds::conditions::get(&status.conditions, "Ready")?;
    Some((ready.reason.clone(), ready.message.clone()))
}

/// Waits until the Tenant's Ready condition has `reason`; returns its message.
async fn wait_reason(client: &Client, name: &str, reason: &str) -> String {
    eventually(&format!("Tenant {name} Ready reason {reason}"), || async {
        let (found, message) = ready_reason(client, name).await?;
        (found == reason).then_some(message)
    })
    .await
}

async fn a_tenant_cannot_take_a_namespace_or_host_it_does_not_own(kind: ClusterKind) {
    let (cluster, operator_client) = setup(kind, tenant_crd()).await;
    let client = cluster.client();
    let sim = cluster.sim();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    // Someone else's namespace that happens to be atoll-<name>.
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {
                "name": "atoll-payments", "labels": {"team": "payments"}}}))
            .expect("namespace"),
        )
        .await
        .expect("foreign namespace");
    let operator = start_operator(&operator_client);

    create_tenant(
        &client,
        "apiVersion: atoll.dev/v1alpha1\nkind: Tenant\nmetadata: {name: first}\nspec: {}\n",
    )
    .await;
    eventually("the first tenant's namespace", || async {
        namespaces.get_opt("atoll-first").await.ok().flatten()
    })
    .await;
    let mark = sim.map(|s| s.request_log().mark());

    // A namespace the operator did not label for the Tenant.
    create_tenant(
        &client,
        "apiVersion: atoll.dev/v1alpha1\nkind: Tenant\nmetadata: {name: payments}\nspec: {deletionPolicy: Delete}\n",
    )
    .await;
    let message = wait_reason(&client, "payments", "NamespaceConflict").await;
    assert!(message.contains("atoll-payments"), "{message}");
    // Another Tenant's host, and a host outside the allowed domains.
    create_tenant(
        &client,
        "apiVersion: atoll.dev/v1alpha1\nkind: Tenant\nmetadata: {name: thief}\nspec: {ingress: {host: first.atoll.localhost}}\n",
    )
    .await;
    let message = wait_reason(&client, "thief", "HostConflict").await;
    assert!(message.contains("Tenant first"), "{message}");
    create_tenant(
        &client,
        "apiVersion: atoll.dev/v1alpha1\nkind: Tenant\nmetadata: {name: phish}\nspec: {ingress: {host: login.bank.example}}\n",
    )
    .await;
    let message = wait_reason(&client, "phish", "HostNotAllowed").await;
    assert!(message.contains("atoll.localhost"), "{message}");
    assert_eq!(
        tenant_phase(&client, "thief").await,
        Some(Phase::Degraded),
        "a refused Tenant is Degraded"
    );

    // Nothing was written for them but the Tenants themselves (finalizer,
    // status).
    match sim.zip(mark) {
        Some((sim, mark)) => {
            let writes: Vec<String> = operator_writes(sim, mark)
                .into_iter()
                .filter(|w| !w.contains(" tenants /"))
                .filter(|w| ["payments", "thief", "phish"].iter().any(|n| w.contains(n)))
                .collect();
            assert!(writes.is_empty(), "writes for refused Tenants: {writes:#?}");
        }
        None => kubesim_only(&cluster, "no write for the refused Tenants"),
    }
    let foreign = namespaces.get("atoll-payments").await.expect("still there");
    assert_eq!(
        foreign.labels().get("team").map(String::as_str),
        Some("payments")
    );
    assert!(!foreign.labels().contains_key("atoll.dev/tenant"));
    for name in ["atoll-thief", "atoll-phish"] {
        assert!(namespaces.get_opt(name).await.expect("read").is_none());
    }
    // The first Tenant keeps its host.
    let (reason, _) = eventually("first to be applied", || async {
        ready_reason(&client, "first").await
    })
    .await;
    assert_ne!(reason, "HostConflict");

    // Deleting the refused Tenant (policy Delete) leaves the namespace alone.
    let tenants: Api<Tenant> = Api::all(client.clone());
    tenants
        .delete("payments", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("payments to be gone", || async {
        tenants
            .get_opt("payments")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        namespaces
            .get("atoll-payments")
            .await
            .expect("still there")
            .metadata
            .deletion_timestamp
            .is_none(),
        "the foreign namespace was not deleted"
    );
    operator.abort();
    cluster.stop().await.expect("the cluster stops");
}

async fn a_tenant_being_deleted_shows_phase_deleting(kind: ClusterKind) {
    let (cluster, operator_client) = setup(kind, tenant_crd()).await;
    let client = cluster.client();
    let operator = start_operator(&operator_client);
    create_tenant(
        &client,
        "apiVersion: atoll.dev/v1alpha1\nkind: Tenant\nmetadata: {name: going}\nspec: {deletionPolicy: Delete}\n",
    )
    .await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    eventually("the namespace", || async {
        namespaces.get_opt("atoll-going").await.ok().flatten()
    })
    .await;
    // Something else holds the namespace for a while (as a slow
    // controller's finalizer would), so the deletion takes time.
    namespaces
        .patch(
            "atoll-going",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/hold"]}})),
        )
        .await
        .expect("hold");
    let tenants: Api<Tenant> = Api::all(client.clone());
    tenants
        .delete("going", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("phase Deleting", || async {
        (tenant_phase(&client, "going").await == Some(Phase::Deleting)).then_some(())
    })
    .await;
    let (reason, _) = ready_reason(&client, "going")
        .await
        .expect("Ready condition");
    assert_eq!(reason, "Deleting");
    namespaces
        .patch(
            "atoll-going",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .expect("release");
    eventually("the Tenant to be gone", || async {
        tenants.get_opt("going").await.ok()?.is_none().then_some(())
    })
    .await;
    operator.abort();
    cluster.stop().await.expect("the cluster stops");
}

/// The CRD's rules (OpenAPI schema and CEL `x-kubernetes-validations`) are
/// enforced by the API server: kubesim's evaluator, or the real one.
async fn the_crd_rules_refuse_invalid_tenants(kind: ClusterKind) {
    let cluster = common::start_cluster(kind).await;
    let client = cluster.client();
    common::install_crd(&client, &tenant_crd()).await;
    let tenants: Api<Tenant> = Api::all(client.clone());
    // (name, spec, what the refusal says: any of). A duplicate member is
    // refused by the list's map keys on the real API server before its
    // CEL rule runs; kubesim reaches the CEL rule.
    let cases: [(&str, serde_json::Value, &[&str]); 9] = [
        (
            "system",
            json!({}),
            &["metadata.name is reserved for the platform"],
        ),
        (
            "twice",
            json!({"members": [
                {"user": "a@x.example", "role": "Admin"},
                {"user": "a@x.example", "role": "Viewer"}]}),
            &[
                "spec.members must not name the same user twice",
                "spec.members[1]: Duplicate value",
            ],
        ),
        (
            "noexternal",
            json!({"database": {"mode": "External"}}),
            &["spec.database.external is required when mode is External"],
        ),
        (
            "reserved-env",
            json!({"instance": {"env": [{"name": "ATOLL_SECRET", "value": "x"}]}}),
            &["environment variable names starting with ATOLL_ are reserved"],
        ),
        (
            "replicas-volume",
            json!({"instance": {"replicas": 2}}),
            &["spec.instance.replicas above 1 needs spec.storage.s3"],
        ),
        (
            "storage-quota",
            json!({"storage": {"size": "10Gi"}}),
            &["spec.storage.size plus the database volume must not exceed spec.quota.storage"],
        ),
        (
            "zero-timeout",
            json!({"tasks": {"timeout": "PT0S"}}),
            &["spec.tasks.timeout must be longer than zero"],
        ),
        (
            "bad-cron",
            json!({"backup": {"schedule": "0 3 * *"}}),
            &["spec.backup.schedule must be a 5-field cron expression"],
        ),
        (
            "bad-target-time",
            json!({"restore": {"from": "acme", "targetTime": "2026-12-07T09:30:00"}}),
            &["spec.restore.targetTime"],
        ),
    ];
    for (name, spec, messages) in cases {
        let tenant: Tenant = serde_json::from_value(json!({
            "apiVersion": "atoll.dev/v1alpha1", "kind": "Tenant",
            "metadata": {"name": name}, "spec": spec,
        }))
        .expect("tenant");
        match tenants.create(&PostParams::default(), &tenant).await {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422, "{name}: {status:?}");
                assert!(
                    messages.iter().any(|m| status.message.contains(m)),
                    "{name}: {} does not say any of {messages:?}",
                    status.message
                );
                println!("{}: refused {name}: {}", cluster.describe(), status.message);
            }
            other => panic!("{} accepted Tenant {name}: {other:?}", cluster.describe()),
        }
    }
    restore_is_create_only(&cluster, &tenants).await;
    cluster.stop().await.expect("the cluster stops");
}

/// `spec.restore` cannot be added to, changed in or removed from an
/// existing Tenant (a CEL transition rule, evaluated on update).
async fn restore_is_create_only(cluster: &TestCluster, tenants: &Api<Tenant>) {
    let create = |name: &str, spec: serde_json::Value| -> Tenant {
        serde_json::from_value(json!({
            "apiVersion": "atoll.dev/v1alpha1", "kind": "Tenant",
            "metadata": {"name": name}, "spec": spec,
        }))
        .expect("tenant")
    };
    let restore = json!({"from": "acme", "targetTime": "2026-12-07T09:30:00Z"});
    for tenant in [
        create("plain", json!({})),
        create("restored", json!({"restore": restore})),
    ] {
        tenants
            .create(&PostParams::default(), &tenant)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", cluster.describe()));
    }
    let changes = [
        ("plain", json!({"spec": {"restore": restore}}), "added"),
        (
            "restored",
            json!({"spec": {"restore": {"targetTime": "2026-12-07T10:00:00Z"}}}),
            "changed",
        ),
        ("restored", json!({"spec": {"restore": null}}), "removed"),
    ];
    for (name, patch, what) in changes {
        match tenants
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422, "{what}: {status:?}");
                assert!(
                    status.message.contains("spec.restore is create-only"),
                    "restore {what}: {}",
                    status.message
                );
                println!(
                    "{}: refused restore {what}: {}",
                    cluster.describe(),
                    status.message
                );
            }
            other => panic!(
                "{} let spec.restore be {what}: {other:?}",
                cluster.describe()
            ),
        }
    }
    // Other fields of a restored Tenant still change.
    tenants
        .patch(
            "restored",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"suspended": true}})),
        )
        .await
        .unwrap_or_else(|e| panic!("{}: suspending a restored Tenant: {e}", cluster.describe()));
}

atoll_testkit::on_each_cluster!(
    tenant_converges_and_a_restarted_operator_writes_nothing,
    invalid_tenant_is_reported_once_and_not_retried,
    deletion_follows_the_policy,
    a_standby_replica_stays_idle_until_the_leader_is_gone,
    a_tenant_cannot_take_a_namespace_or_host_it_does_not_own,
    a_tenant_being_deleted_shows_phase_deleting,
    the_crd_rules_refuse_invalid_tenants,
);
