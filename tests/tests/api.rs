//! kubesim through a real `kube::Client`: the object lifecycle rules a
//! controller relies on.

use atoll_testkit::kubesim::{KubeSim, Verb};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use serde_json::json;

fn cm(name: &str, data: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app": "demo"}},
        "data": data,
    }))
    .expect("valid ConfigMap")
}

fn api_status(err: kube::Error) -> kube::core::Status {
    match err {
        kube::Error::Api(status) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn create_get_update_and_conflicts() {
    let sim = KubeSim::new();
    let cms: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let created = cms
        .create(&PostParams::default(), &cm("one", json!({"a": "1"})))
        .await
        .expect("created");
    let meta = &created.metadata;
    assert!(meta.uid.is_some() && meta.creation_timestamp.is_some());
    assert_eq!(meta.generation, Some(1));
    let rv1: u64 = meta
        .resource_version
        .as_deref()
        .expect("rv")
        .parse()
        .expect("numeric");

    let again = cms
        .create(&PostParams::default(), &cm("one", json!({})))
        .await;
    let status = api_status(again.expect_err("name taken"));
    assert_eq!(
        (status.code, status.reason.as_str()),
        (409, "AlreadyExists")
    );

    let mut changed = created.clone();
    changed.data = Some([("a".to_string(), "2".to_string())].into());
    let updated = cms
        .replace("one", &PostParams::default(), &changed)
        .await
        .expect("updated");
    let rv2: u64 = updated
        .metadata
        .resource_version
        .as_deref()
        .expect("rv")
        .parse()
        .expect("numeric");
    assert!(rv2 > rv1);
    assert_eq!(
        updated.metadata.generation,
        Some(2),
        "data is outside metadata/status"
    );

    // The stale version is refused.
    let stale = cms.replace("one", &PostParams::default(), &changed).await;
    let status = api_status(stale.expect_err("stale resourceVersion"));
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));

    // A write that changes nothing keeps the version.
    let mark = sim.request_log().mark();
    let same = cms
        .replace("one", &PostParams::default(), &updated)
        .await
        .expect("no-op");
    assert_eq!(
        same.metadata.resource_version,
        updated.metadata.resource_version
    );
    let merge = cms
        .patch(
            "one",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"a": "2"}})),
        )
        .await
        .expect("no-op merge");
    assert_eq!(
        merge.metadata.resource_version,
        updated.metadata.resource_version
    );
    assert!(sim.request_log().writes_since(mark).is_empty());

    let missing = cms.get("nope").await;
    let status = api_status(missing.expect_err("absent"));
    assert_eq!((status.code, status.reason.as_str()), (404, "NotFound"));
    assert_eq!(status.message, "configmaps \"nope\" not found");
}

#[tokio::test]
async fn namespaces_generate_name_and_selectors() {
    let sim = KubeSim::new();
    let client = sim.client();
    let elsewhere: Api<ConfigMap> = Api::namespaced(client.clone(), "elsewhere");
    let refused = elsewhere
        .create(&PostParams::default(), &cm("x", json!({})))
        .await;
    let status = api_status(refused.expect_err("namespace missing"));
    assert_eq!(status.code, 404);
    assert_eq!(status.message, "namespaces \"elsewhere\" not found");

    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "elsewhere"}})).expect("ns"),
        )
        .await
        .expect("namespace created");
    let mut generated = cm("", json!({}));
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("gen-".into());
    let made = elsewhere
        .create(&PostParams::default(), &generated)
        .await
        .expect("generated");
    let name = made.metadata.name.expect("named");
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");

    let mut other = cm("other", json!({}));
    other.metadata.labels = Some(
        [
            ("app".to_string(), "web".to_string()),
            ("tier".to_string(), "x".to_string()),
        ]
        .into(),
    );
    elsewhere
        .create(&PostParams::default(), &other)
        .await
        .expect("created");
    let all: Api<ConfigMap> = Api::all(client);
    for (selector, expected) in [
        ("app=demo", 1),
        ("app in (demo,web)", 2),
        ("app notin (demo)", 1),
        ("tier", 1),
        ("!tier", 1),
        ("app!=web", 1),
    ] {
        let found = all
            .list(&ListParams::default().labels(selector))
            .await
            .expect("listed");
        assert_eq!(found.items.len(), expected, "{selector}");
    }
    let by_name = all
        .list(&ListParams::default().fields("metadata.name=other,metadata.namespace=elsewhere"))
        .await
        .expect("listed");
    assert_eq!(by_name.items.len(), 1);
    // Pages.
    let page = all
        .list(&ListParams::default().limit(1))
        .await
        .expect("page");
    assert_eq!(page.items.len(), 1);
    let token = page.metadata.continue_.expect("more pages");
    let rest = all
        .list(&ListParams::default().limit(5).continue_token(&token))
        .await
        .expect("page 2");
    assert_eq!(rest.items.len(), 1);
    assert!(rest.metadata.continue_.is_none());
}

#[tokio::test]
async fn status_subresource_and_generation() {
    let sim = KubeSim::new();
    let deployments: Api<Deployment> = Api::default_namespaced(sim.client());
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}
    }))
    .expect("deployment");
    deployments
        .create(&PostParams::default(), &d)
        .await
        .expect("created");
    let with_status = deployments
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"readyReplicas": 1}, "spec": {"replicas": 5}})),
        )
        .await
        .expect("status patched");
    assert_eq!(with_status.status.and_then(|s| s.ready_replicas), Some(1));
    assert_eq!(
        with_status.spec.and_then(|s| s.replicas),
        Some(1),
        "/status ignores spec"
    );
    assert_eq!(
        with_status.metadata.generation,
        Some(1),
        "status writes keep the generation"
    );
    let scaled = deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}, "status": {"readyReplicas": 9}})),
        )
        .await
        .expect("patched");
    assert_eq!(scaled.metadata.generation, Some(2));
    assert_eq!(
        scaled.status.and_then(|s| s.ready_replicas),
        Some(1),
        "the main resource ignores status"
    );
    let labelled = deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .expect("patched");
    assert_eq!(
        labelled.metadata.generation,
        Some(2),
        "metadata changes keep the generation"
    );
}

#[tokio::test]
async fn finalizers_hold_deletion_and_owners_take_dependents() {
    let sim = KubeSim::new();
    let cms: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let mut held = cm("held", json!({}));
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    let owner = cms
        .create(&PostParams::default(), &held)
        .await
        .expect("created");
    let mut child = cm("child", json!({}));
    child.metadata.owner_references = Some(vec![serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "name": "held", "uid": owner.metadata.uid, "controller": true
    }))
    .expect("owner ref")]);
    cms.create(&PostParams::default(), &child)
        .await
        .expect("child");

    let pending = cms
        .delete("held", &DeleteParams::default())
        .await
        .expect("deleting");
    let marked = pending
        .left()
        .expect("still there while the finalizer holds it");
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert!(
        cms.get("child").await.is_ok(),
        "the child waits for its owner"
    );
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("finalizer removed");
    assert!(cms.get_opt("held").await.expect("read").is_none());
    assert!(
        cms.get_opt("child").await.expect("read").is_none(),
        "garbage collected"
    );
    assert!(sim.request_log().count(Verb::Delete) >= 1);
}

#[tokio::test]
async fn deleting_a_namespace_removes_everything_inside() {
    let sim = KubeSim::new();
    let client = sim.client();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "doomed"}})).expect("ns"),
        )
        .await
        .expect("namespace created");
    let doomed = namespaces.get("doomed").await.expect("namespace");
    assert_eq!(
        doomed.metadata.labels.expect("labels")["kubernetes.io/metadata.name"],
        "doomed"
    );
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    cms.create(&PostParams::default(), &cm("a", json!({})))
        .await
        .expect("a");
    let mut held = cm("b", json!({}));
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&PostParams::default(), &held).await.expect("b");
    namespaces
        .delete("doomed", &DeleteParams::default())
        .await
        .expect("deleting");
    let ns = namespaces
        .get("doomed")
        .await
        .expect("terminating, held by b");
    assert_eq!(
        ns.status.and_then(|s| s.phase).as_deref(),
        Some("Terminating")
    );
    assert!(cms.get_opt("a").await.expect("read").is_none());
    let refused = cms
        .create(&PostParams::default(), &cm("c", json!({})))
        .await;
    assert_eq!(api_status(refused.expect_err("terminating")).code, 403);
    cms.patch(
        "b",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("released");
    assert!(namespaces.get_opt("doomed").await.expect("read").is_none());
}

#[tokio::test]
async fn delete_collection_and_dry_run() {
    let sim = KubeSim::new();
    let cms: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let preview = cms
        .create(&dry, &cm("dry", json!({})))
        .await
        .expect("dry run");
    assert_eq!(preview.metadata.name.as_deref(), Some("dry"));
    assert!(
        cms.get_opt("dry").await.expect("read").is_none(),
        "a dry run stores nothing"
    );
    for name in ["a", "b"] {
        cms.create(&PostParams::default(), &cm(name, json!({})))
            .await
            .expect("created");
    }
    let mut other = cm("c", json!({}));
    other.metadata.labels = Some([("app".to_string(), "other".to_string())].into());
    cms.create(&PostParams::default(), &other)
        .await
        .expect("created");
    cms.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("app=demo"),
    )
    .await
    .expect("deleted");
    let left: Vec<String> = cms
        .list(&ListParams::default())
        .await
        .expect("listed")
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert_eq!(left, ["c"]);
}

#[tokio::test]
async fn built_in_defaults_are_filled_in_once() {
    use k8s_openapi::api::core::v1::{Secret, Service};
    let sim = KubeSim::new();
    let client = sim.client();
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    let applied = json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
        "stringData": {"password": "hunter22"}
    });
    let pp = PatchParams::apply("test");
    let secret = secrets
        .patch("db", &pp, &Patch::Apply(&applied))
        .await
        .expect("applied");
    assert!(secret.string_data.is_none(), "stringData is write-only");
    assert_eq!(secret.data.expect("data")["password"].0, b"hunter22");
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));

    let services: Api<Service> = Api::default_namespaced(client);
    let svc = json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]}
    });
    let created = services
        .patch("web", &pp, &Patch::Apply(&svc))
        .await
        .expect("applied");
    let spec = created.spec.expect("spec");
    assert!(spec.cluster_ip.is_some_and(|ip| ip.starts_with("10.96.")));
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    let mark = sim.request_log().mark();
    services
        .patch("web", &pp, &Patch::Apply(&svc))
        .await
        .expect("re-applied");
    secrets
        .patch("db", &pp, &Patch::Apply(&applied))
        .await
        .expect("re-applied");
    assert!(
        sim.request_log().writes_since(mark).is_empty(),
        "defaults do not make re-applies write"
    );
}

#[tokio::test]
async fn graceful_pod_deletion_and_dangling_owners() {
    use k8s_openapi::api::core::v1::Pod;
    let sim = KubeSim::builder().graceful_pod_deletion(true).build();
    let pods: Api<Pod> = Api::default_namespaced(sim.client());
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web"}, "spec": {"containers": [{"name": "c", "image": "i"}]}
    }))
    .expect("pod");
    let created = pods
        .create(&PostParams::default(), &pod)
        .await
        .expect("created");
    assert_eq!(
        created.status.and_then(|s| s.phase).as_deref(),
        Some("Pending")
    );
    pods.delete("web", &DeleteParams::default())
        .await
        .expect("deleting");
    let terminating = pods
        .get("web")
        .await
        .expect("stays until its kubelet confirms");
    assert_eq!(terminating.metadata.deletion_grace_period_seconds, Some(30));
    pods.delete("web", &DeleteParams::default().grace_period(0))
        .await
        .expect("confirmed");
    assert!(pods.get_opt("web").await.expect("read").is_none());

    // An object whose only owner does not exist is collected.
    let cms: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let mut orphan = cm("orphan", json!({}));
    orphan.metadata.owner_references = Some(vec![serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "name": "ghost", "uid": "00000000-0000-0000-0000-000000000000"
    }))
    .expect("owner ref")]);
    cms.create(&PostParams::default(), &orphan)
        .await
        .expect("accepted");
    assert!(
        cms.get_opt("orphan").await.expect("read").is_none(),
        "collected"
    );
}

/// The `n` a counter ConfigMap holds.
fn counter_of(cm: &ConfigMap) -> usize {
    cm.data
        .as_ref()
        .and_then(|d| d.get("n"))
        .and_then(|n| n.parse().ok())
        .expect("a counter")
}

/// The request log never lags what clients see: a write is logged before
/// another client can read it (GET) or be told of it (watch), so a mark
/// taken after seeing the n-th write has it before the mark, never after.
/// A writer, two readers and a watcher run on their own threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_is_logged_before_another_client_sees_it() {
    const WRITES: usize = 300;
    let sim = KubeSim::new();
    let cms: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let created = cms
        .create(&PostParams::default(), &cm("counter", json!({"n": "0"})))
        .await
        .expect("created");
    let start = sim.request_log().mark();
    let mut events = cms
        .watch(
            &WatchParams::default(),
            created.metadata.resource_version.as_deref().expect("rv"),
        )
        .await
        .expect("watch")
        .boxed();

    let writer = {
        let cms: Api<ConfigMap> = Api::default_namespaced(sim.client());
        tokio::spawn(async move {
            for n in 1..=WRITES {
                let patch = Patch::Merge(json!({"data": {"n": n.to_string()}}));
                cms.patch("counter", &PatchParams::default(), &patch)
                    .await
                    .expect("patched");
            }
        })
    };
    // Each sees some n, then takes a mark: (n, mark) pairs.
    let reader = |sim: KubeSim| {
        tokio::spawn(async move {
            let cms: Api<ConfigMap> = Api::default_namespaced(sim.client());
            let mut seen = Vec::new();
            loop {
                let n = counter_of(&cms.get("counter").await.expect("read"));
                seen.push((n, sim.request_log().mark()));
                if n == WRITES {
                    return seen;
                }
            }
        })
    };
    let readers = [reader(sim.clone()), reader(sim.clone())];
    let watched = {
        let log = sim.request_log();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Some(event) = events.try_next().await.expect("watch event") {
                if let WatchEvent::Modified(cm) = event {
                    let n = counter_of(&cm);
                    seen.push((n, log.mark()));
                    if n == WRITES {
                        return seen;
                    }
                }
            }
            panic!("the watch ended before the last write");
        })
    };
    writer.await.expect("writer");
    let mut seen = watched.await.expect("watcher");
    for reader in readers {
        seen.extend(reader.await.expect("reader"));
    }

    // How many of the counter's writes are logged before each position.
    let log = sim.request_log();
    let records = log.records();
    let mut writes_before = vec![0];
    for record in &records {
        let counted = record.wrote && record.verb == Verb::Patch && record.name == "counter";
        writes_before.push(writes_before.last().copied().unwrap_or(0) + usize::from(counted));
    }
    assert_eq!(writes_before[records.len()] - writes_before[start], WRITES);
    for (n, mark) in seen {
        assert!(
            writes_before[mark] - writes_before[start] >= n,
            "write {n} was seen before it was logged (mark {mark})"
        );
        let after = log
            .writes_since(mark)
            .iter()
            .filter(|r| r.name == "counter")
            .count();
        assert!(
            after <= WRITES - n,
            "{after} writes logged after a mark taken once write {n} was seen"
        );
    }
}
