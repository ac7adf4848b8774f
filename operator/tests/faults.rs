//! 50 tenants converge while kubesim fails 10% of requests with 500, 5% of
//! writes with 409 and delays half of them; afterwards every tenant has
//! exactly its objects, and deleting them all leaves nothing behind.
//!
//! kubesim only: only kubesim injects API faults. It says so when
//! `ATOLL_TEST_CLUSTER` selects realkube too.

mod common;

use std::collections::BTreeSet;
use std::future::Future;
use std::time::{Duration, Instant};

use atoll_crds::{Phase, Tenant, tenant_crd};
use atoll_operator::cli::{Cli, Command};
use atoll_operator::run::run_with_client;
use atoll_testkit::kubesim::{Fault, FaultRule, KubeSim};
use clap::Parser;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

const TENANTS: usize = 50;
const TIMEOUT: Duration = Duration::from_secs(180);

async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    common::eventually(what, TIMEOUT, check).await
}

/// The test's own calls go through the same faulty server: retry them.
async fn must<T, F, Fut>(what: &str, mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    eventually(what, || {
        let attempt = call();
        async move { attempt.await.ok() }
    })
    .await
}

/// Plays kubelet for every workload: ready at its current generation.
async fn kubelet(client: Client) {
    let deployments: Api<Deployment> = Api::all(client.clone());
    let sets: Api<StatefulSet> = Api::all(client.clone());
    loop {
        if let Ok(list) = deployments.list(&ListParams::default()).await {
            for d in list {
                let current =
                    d.status.as_ref().and_then(|s| s.observed_generation) == d.metadata.generation;
                if !current {
                    let api: Api<Deployment> =
                        Api::namespaced(client.clone(), &d.namespace().unwrap_or_default());
                    let n = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                    let _ = api
                        .patch_status(
                            &d.name_any(),
                            &PatchParams::default(),
                            &Patch::Merge(json!({"status": {"observedGeneration": d.metadata.generation,
                                "replicas": n, "readyReplicas": n, "updatedReplicas": n, "availableReplicas": n}})),
                        )
                        .await;
                }
            }
        }
        if let Ok(list) = sets.list(&ListParams::default()).await {
            for s in list {
                let current =
                    s.status.as_ref().and_then(|s| s.observed_generation) == s.metadata.generation;
                if !current {
                    let api: Api<StatefulSet> =
                        Api::namespaced(client.clone(), &s.namespace().unwrap_or_default());
                    let _ = api
                        .patch_status(
                            &s.name_any(),
                            &PatchParams::default(),
                            &Patch::Merge(json!({"status": {"observedGeneration": s.metadata.generation,
                                "replicas": 1, "readyReplicas": 1, "updatedReplicas": 1, "currentReplicas": 1}})),
                        )
                        .await;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn names<K>(client: &Client, namespace: &str) -> BTreeSet<String>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let params = ListParams::default();
    must("a list", || api.list(&params))
        .await
        .into_iter()
        .map(|o| o.name_any())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_tenants_converge_under_api_faults_without_duplicates_or_leaks() {
    if std::env::var(atoll_testkit::cluster::ENV).is_ok_and(|v| v != "kubesim") {
        println!(
            "fifty_tenants_converge_under_api_faults runs on kubesim only: only kubesim injects API faults"
        );
    }
    let sim = KubeSim::new();
    let client = sim.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &tenant_crd())
        .await
        .expect("CRD");

    let faults = sim.faults();
    faults.seed(7);
    faults.add(FaultRule::new(Fault::InternalError).probability(0.10));
    faults.add(FaultRule::new(Fault::Conflict).writes().probability(0.05));
    faults.add(FaultRule::new(Fault::Latency(Duration::from_millis(3))).probability(0.5));

    let started = Instant::now();
    let tenants: Api<Tenant> = Api::all(client.clone());
    for i in 0..TENANTS {
        let tenant: Tenant = serde_json::from_value(json!({
            "apiVersion": "atoll.dev/v1alpha1", "kind": "Tenant",
            "metadata": {"name": format!("t{i:02}")},
            "spec": {"deletionPolicy": "Delete", "members": [{"user": format!("admin@t{i:02}.example.com"), "role": "Admin"}]}
        }))
        .expect("tenant");
        must("creating a tenant", || async {
            match tenants.create(&PostParams::default(), &tenant).await {
                // An injected failure may hide a create that happened.
                Err(kube::Error::Api(s)) if s.reason == "AlreadyExists" => Ok(()),
                other => other.map(|_| ()),
            }
        })
        .await;
    }

    let args =
        match Cli::parse_from(["atoll-operator", "run", "--metrics-addr", "127.0.0.1:0"]).command {
            Command::Run(args) => *args,
            other => panic!("parsed {other:?}"),
        };
    let operator = tokio::spawn(run_with_client(
        args,
        sim.client_as(common::operator_user()),
    ));
    let kubelet = tokio::spawn(kubelet(client.clone()));

    eventually("every tenant to be Ready", || async {
        let list = tenants.list(&ListParams::default()).await.ok()?;
        let ready = list
            .iter()
            .filter(|t| t.status.as_ref().and_then(|s| s.phase) == Some(Phase::Ready))
            .count();
        (ready == TENANTS).then_some(())
    })
    .await;
    let converged = started.elapsed();
    let injected = faults.injected();
    faults.clear();

    // Exactly the expected objects in every namespace: nothing doubled.
    let expected_policies: BTreeSet<String> = [
        "allow-dns",
        "database-from-instance",
        "default-deny",
        "instance-egress",
        "instance-from-ingress",
        "instance-from-task-pods",
        "task-pods",
    ]
    .map(str::to_owned)
    .into();
    for i in 0..TENANTS {
        let ns = format!("atoll-t{i:02}");
        assert_eq!(
            names::<NetworkPolicy>(&client, &ns).await,
            expected_policies,
            "{ns}"
        );
        assert_eq!(
            names::<Service>(&client, &ns).await,
            ["database", "instance"].map(str::to_owned).into(),
            "{ns}"
        );
        assert_eq!(
            names::<Secret>(&client, &ns).await,
            ["database-credentials"].map(str::to_owned).into(),
            "{ns}"
        );
        assert_eq!(
            names::<Deployment>(&client, &ns).await,
            ["instance"].map(str::to_owned).into(),
            "{ns}"
        );
        assert_eq!(
            names::<StatefulSet>(&client, &ns).await,
            ["database"].map(str::to_owned).into(),
            "{ns}"
        );
    }

    // Deleting every tenant (policy Delete) leaves nothing behind.
    for i in 0..TENANTS {
        let name = format!("t{i:02}");
        let params = DeleteParams::default();
        must("deleting a tenant", || async {
            match tenants.delete(&name, &params).await {
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                other => other.map(|_| ()),
            }
        })
        .await;
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    eventually("every tenant namespace to be gone", || async {
        let list = namespaces.list(&ListParams::default()).await.ok()?;
        list.iter()
            .all(|n| !n.name_any().starts_with("atoll-"))
            .then_some(())
    })
    .await;
    let leftovers: Vec<String> = Api::<Secret>::all(client.clone())
        .list(&ListParams::default())
        .await
        .expect("list")
        .into_iter()
        .filter(|s| s.namespace().unwrap_or_default().starts_with("atoll-"))
        .map(|s| s.name_any())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    println!(
        "fault test: {TENANTS} tenants converged in {:.1}s with {injected} injected faults; no duplicates, no leaks",
        converged.as_secs_f64()
    );
    operator.abort();
    kubelet.abort();
    // Retries after injected faults stay within the chart's RBAC too.
    common::assert_chart_allows_the_operator(&sim.request_log().records());
}
