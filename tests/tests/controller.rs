//! A real `kube::runtime::Controller` against kubesim in process: the
//! Tenant CRD, a controller owning ConfigMaps, the `finalizer()` helper,
//! and zero writes once converged.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atoll_crds::{Phase, Tenant, TenantSpec, tenant_crd};
use atoll_testkit::kubesim::{Fault, FaultRule, KubeSim};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event, finalizer};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

const MANAGER: &str = "test-controller";
const FINALIZER: &str = "atoll.dev/test-cleanup";

struct Ctx {
    client: Client,
    reconciles: AtomicUsize,
    cleaned: Mutex<BTreeSet<String>>,
}

async fn apply(tenant: Arc<Tenant>, ctx: &Ctx) -> Result<Action, kube::Error> {
    let name = tenant.name_any();
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), "default");
    let owner = tenant.controller_owner_ref(&()).expect("tenants have uids");
    let child = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": format!("tenant-{name}"), "ownerReferences": [owner]},
        "data": {"tenant": name},
    });
    cms.patch(
        &format!("tenant-{name}"),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(child),
    )
    .await?;
    let ready = tenant.status.as_ref().and_then(|s| s.phase) == Some(Phase::Ready);
    if !ready {
        let tenants: Api<Tenant> = Api::all(ctx.client.clone());
        let status = json!({
            "apiVersion": "atoll.dev/v1alpha1", "kind": "Tenant",
            "status": {"phase": "Ready", "observedGeneration": tenant.metadata.generation},
        });
        tenants
            .patch_status(
                &name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(status),
            )
            .await?;
    }
    Ok(Action::requeue(Duration::from_millis(200)))
}

async fn reconcile(
    tenant: Arc<Tenant>,
    ctx: Arc<Ctx>,
) -> Result<Action, kube::runtime::finalizer::Error<kube::Error>> {
    ctx.reconciles.fetch_add(1, Ordering::SeqCst);
    let tenants: Api<Tenant> = Api::all(ctx.client.clone());
    finalizer(&tenants, FINALIZER, tenant, |event| async {
        match event {
            Event::Apply(t) => apply(t, &ctx).await,
            Event::Cleanup(t) => {
                ctx.cleaned.lock().expect("lock").insert(t.name_any());
                Ok(Action::await_change())
            }
        }
    })
    .await
}

fn error_policy(
    _: Arc<Tenant>,
    _: &kube::runtime::finalizer::Error<kube::Error>,
    _: Arc<Ctx>,
) -> Action {
    Action::requeue(Duration::from_millis(100))
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    atoll_testkit::eventually(what, Duration::from_secs(20), || {
        let holds = check();
        async move { holds.await.then_some(()) }
    })
    .await;
}

async fn converged(tenants: &Api<Tenant>, cms: &Api<ConfigMap>, name: &str) -> bool {
    let Ok(Some(t)) = tenants.get_opt(name).await else {
        return false;
    };
    let ready = t.status.as_ref().and_then(|s| s.phase) == Some(Phase::Ready);
    let finalized = t.finalizers().iter().any(|f| f == FINALIZER);
    ready
        && finalized
        && cms
            .get_opt(&format!("tenant-{name}"))
            .await
            .ok()
            .flatten()
            .is_some()
}

#[tokio::test]
async fn controller_with_owns_and_finalizer_converges_then_rests() {
    let sim = KubeSim::new();
    let client = sim.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &tenant_crd())
        .await
        .expect("CRD created");
    let tenants: Api<Tenant> = Api::all(client.clone());
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    tenants
        .create(
            &PostParams::default(),
            &Tenant::new("before", TenantSpec::default()),
        )
        .await
        .expect("tenant created before the controller starts");

    let ctx = Arc::new(Ctx {
        client: client.clone(),
        reconciles: AtomicUsize::new(0),
        cleaned: Mutex::new(BTreeSet::new()),
    });
    let controller = Controller::new(tenants.clone(), watcher::Config::default())
        .owns(cms.clone(), watcher::Config::default())
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|_| async {});
    let running = tokio::spawn(controller);

    tenants
        .create(
            &PostParams::default(),
            &Tenant::new("after", TenantSpec::default()),
        )
        .await
        .expect("tenant created after the controller started");
    for name in ["before", "after"] {
        eventually(&format!("{name} to converge"), || {
            converged(&tenants, &cms, name)
        })
        .await;
    }
    let owner = cms.get("tenant-after").await.expect("child");
    assert_eq!(owner.owner_references()[0].name, "after");

    // At rest: further resyncs of converged tenants write nothing.
    let settle = ctx.reconciles.load(Ordering::SeqCst) + 4;
    eventually("a settling round", || async {
        ctx.reconciles.load(Ordering::SeqCst) >= settle
    })
    .await;
    let mark = sim.request_log().mark();
    let resync = ctx.reconciles.load(Ordering::SeqCst) + 6;
    eventually("a resync", || async {
        ctx.reconciles.load(Ordering::SeqCst) >= resync
    })
    .await;
    let writes = sim.request_log().writes_since(mark);
    assert!(writes.is_empty(), "writes at rest: {writes:#?}");
    let requests = sim.request_log().since(mark);
    assert!(
        requests.iter().any(|r| r.resource == "configmaps"),
        "the resync did re-apply children"
    );

    // Deletion runs the cleanup, then the tenant and its child go.
    tenants
        .delete("after", &DeleteParams::default())
        .await
        .expect("deleting");
    eventually("the tenant to go", || async {
        tenants.get_opt("after").await.ok().flatten().is_none()
    })
    .await;
    assert!(ctx.cleaned.lock().expect("lock").contains("after"));
    assert!(
        cms.get_opt("tenant-after").await.expect("read").is_none(),
        "child collected"
    );
    assert!(tenants.get_opt("before").await.expect("read").is_some());
    running.abort();
}

#[tokio::test]
async fn the_controller_converges_through_random_faults() {
    let sim = KubeSim::new();
    let client = sim.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &tenant_crd())
        .await
        .expect("CRD created");
    let faults = sim.faults();
    faults.seed(7);
    faults.add(
        FaultRule::new(Fault::InternalError)
            .writes()
            .probability(0.10),
    );
    faults.add(FaultRule::new(Fault::Conflict).writes().probability(0.05));
    faults.add(FaultRule::new(Fault::Latency(Duration::from_millis(5))).probability(0.2));
    let tenants: Api<Tenant> = Api::all(client.clone());
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        reconciles: AtomicUsize::new(0),
        cleaned: Mutex::new(BTreeSet::new()),
    });
    let controller = Controller::new(tenants.clone(), watcher::Config::default())
        .owns(cms.clone(), watcher::Config::default())
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|_| async {});
    let running = tokio::spawn(controller);
    let names: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
    for name in &names {
        // The test's own writes retry through the faults too.
        let mut attempts = 0;
        loop {
            attempts += 1;
            assert!(attempts < 100, "could not create {name} through the faults");
            match tenants
                .create(
                    &PostParams::default(),
                    &Tenant::new(name, TenantSpec::default()),
                )
                .await
            {
                Ok(_) => break,
                Err(kube::Error::Api(s)) if s.code == 409 && s.reason == "AlreadyExists" => break,
                Err(_) => {}
            }
        }
    }
    for name in &names {
        eventually(&format!("{name} to converge"), || {
            converged(&tenants, &cms, name)
        })
        .await;
    }
    assert!(faults.injected() > 0, "faults were injected");
    // Reads are only delayed, never failed, by the rules above.
    let children = cms.list(&Default::default()).await.expect("listed");
    assert_eq!(
        children.items.len(),
        names.len(),
        "one child each, no duplicates"
    );
    running.abort();
}

#[tokio::test]
async fn the_event_recorder_publishes_and_counts_repeats() {
    use k8s_openapi::api::events::v1::Event as K8sEvent;
    use kube::runtime::events::{Event as RecordedEvent, EventType, Recorder, Reporter};
    let sim = KubeSim::new();
    let client = sim.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &tenant_crd())
        .await
        .expect("CRD created");
    let tenants: Api<Tenant> = Api::all(client.clone());
    let tenant = tenants
        .create(
            &PostParams::default(),
            &Tenant::new("acme", TenantSpec::default()),
        )
        .await
        .expect("tenant");
    let recorder = Recorder::new(client.clone(), Reporter::from(MANAGER));
    let event = RecordedEvent {
        type_: EventType::Normal,
        reason: "Provisioned".into(),
        note: Some("namespace atoll-acme created".into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    let reference = tenant.object_ref(&());
    for _ in 0..2 {
        recorder
            .publish(&event, &reference)
            .await
            .expect("published");
    }
    let events: Api<K8sEvent> = Api::default_namespaced(client);
    let listed = events.list(&Default::default()).await.expect("listed");
    assert_eq!(
        listed.items.len(),
        1,
        "the repeat is counted on the same event"
    );
    let published = &listed.items[0];
    assert_eq!(published.reason.as_deref(), Some("Provisioned"));
    assert_eq!(
        published.regarding.as_ref().and_then(|r| r.name.as_deref()),
        Some("acme")
    );
}
