//! Patches and deletion policies through a `kube::Client`: server-side
//! apply with field ownership, strategic merge, JSON patch, and the
//! Foreground and Orphan propagation policies.

use atoll_testkit::kubesim::{KubeSim, Verb};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use serde_json::{Value, json};

fn config(data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared"}, "data": data})
}

fn managers(cm: &ConfigMap) -> Vec<(String, String)> {
    cm.metadata
        .managed_fields
        .iter()
        .flatten()
        .map(|m| {
            (
                m.manager.clone().unwrap_or_default(),
                m.operation.clone().unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test]
async fn server_side_apply_owns_fields_per_manager() {
    let sim = KubeSim::new();
    let cms: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let one = PatchParams::apply("one");
    let two = PatchParams::apply("two");
    let created = cms
        .patch(
            "shared",
            &one,
            &Patch::Apply(config(json!({"a": "1", "b": "2"}))),
        )
        .await
        .expect("created by apply");
    assert_eq!(created.metadata.generation, Some(1));
    cms.patch("shared", &two, &Patch::Apply(config(json!({"c": "3"}))))
        .await
        .expect("second manager");
    // Manager one stops applying b: b goes, c (manager two's) stays.
    let after = cms
        .patch("shared", &one, &Patch::Apply(config(json!({"a": "1"}))))
        .await
        .expect("re-applied");
    let data = after.data.clone().expect("data");
    assert_eq!(
        data.keys().map(String::as_str).collect::<Vec<_>>(),
        ["a", "c"]
    );
    assert_eq!(
        managers(&after),
        [
            ("one".to_string(), "Apply".to_string()),
            ("two".to_string(), "Apply".to_string())
        ]
    );

    // Taking a field another manager set to something else is a conflict...
    let conflict = cms
        .patch(
            "shared",
            &two,
            &Patch::Apply(config(json!({"a": "changed", "c": "3"}))),
        )
        .await
        .expect_err("conflict");
    let kube::Error::Api(status) = conflict else {
        panic!("expected an API error")
    };
    assert_eq!(status.code, 409);
    assert!(
        status.message.contains("conflict with \"one\": .data.a"),
        "{}",
        status.message
    );
    // ...unless forced; then the field changes hands.
    let forced = cms
        .patch(
            "shared",
            &two.clone().force(),
            &Patch::Apply(config(json!({"a": "changed", "c": "3"}))),
        )
        .await
        .expect("forced");
    assert_eq!(forced.data.expect("data")["a"], "changed");
    let again = cms
        .patch("shared", &one, &Patch::Apply(config(json!({}))))
        .await
        .expect("one gives up everything");
    assert_eq!(again.data.expect("data").len(), 2, "two's fields stay");

    // The same apply twice writes once.
    let mark = sim.request_log().mark();
    for _ in 0..2 {
        cms.patch(
            "shared",
            &two,
            &Patch::Apply(config(json!({"a": "changed", "c": "3"}))),
        )
        .await
        .expect("idempotent");
    }
    assert!(sim.request_log().writes_since(mark).is_empty());
    let applies: Vec<_> = sim
        .request_log()
        .since(mark)
        .into_iter()
        .map(|r| (r.verb, r.resource, r.name, r.field_manager, r.wrote))
        .collect();
    let expected = (
        Verb::Apply,
        "configmaps".to_string(),
        "shared".to_string(),
        "two".to_string(),
        false,
    );
    assert_eq!(applies, [expected.clone(), expected]);
}

#[tokio::test]
async fn strategic_merge_and_json_patch_on_the_wire() {
    let sim = KubeSim::new();
    let client = sim.client();
    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [
                {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}]},
                {"name": "sidecar", "image": "side:1"}
            ]}
        }}
    }))
    .expect("deployment");
    deployments
        .create(&PostParams::default(), &d)
        .await
        .expect("created");
    let patched = deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "app", "image": "app:2", "env": [{"name": "B", "value": "2"}]}
            ]}}}})),
        )
        .await
        .expect("strategic merge");
    let containers = patched
        .spec
        .expect("spec")
        .template
        .spec
        .expect("pod spec")
        .containers;
    assert_eq!(containers.len(), 2, "merged by name, the sidecar stays");
    assert_eq!(containers[0].image.as_deref(), Some("app:2"));
    assert_eq!(
        containers[0].env.as_ref().map(Vec::len),
        Some(2),
        "env merged by name"
    );

    // A JSON patch whose `test` of null on a missing path succeeds.
    let request = http::Request::patch("/api/v1/namespaces/default/configmaps/x")
        .header("content-type", "application/json-patch+json")
        .body(Vec::new())
        .expect("request");
    let missing = client
        .request_text(request)
        .await
        .expect_err("no such object");
    assert!(matches!(missing, kube::Error::Api(s) if s.code == 404));
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "x"}})).expect("cm"),
    )
    .await
    .expect("created");
    let ops = json!([
        {"op": "test", "path": "/metadata/finalizers", "value": null},
        {"op": "add", "path": "/metadata/finalizers", "value": ["example.com/f"]}
    ]);
    let request = http::Request::patch("/api/v1/namespaces/default/configmaps/x")
        .header("content-type", "application/json-patch+json")
        .body(serde_json::to_vec(&ops).expect("json"))
        .expect("request");
    let text = client.request_text(request).await.expect("patched");
    assert!(text.contains("example.com/f"), "{text}");
}

async fn parent_and_child(cms: &Api<ConfigMap>) {
    let parent = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "parent"}})).expect("cm"),
        )
        .await
        .expect("parent");
    let child = json!({"metadata": {"name": "child", "ownerReferences": [{
        "apiVersion": "v1", "kind": "ConfigMap", "name": "parent", "uid": parent.metadata.uid,
        "blockOwnerDeletion": true
    }], "finalizers": ["example.com/slow"]}});
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(child).expect("cm"),
    )
    .await
    .expect("child");
}

#[tokio::test]
async fn foreground_waits_for_dependents_and_orphan_releases_them() {
    let sim = KubeSim::new();
    let cms: Api<ConfigMap> = Api::default_namespaced(sim.client());
    parent_and_child(&cms).await;
    cms.delete("parent", &DeleteParams::foreground())
        .await
        .expect("deleting");
    let parent = cms.get("parent").await.expect("waits for its child");
    assert!(
        parent
            .metadata
            .finalizers
            .expect("finalizers")
            .contains(&"foregroundDeletion".to_string())
    );
    assert!(
        cms.get("child")
            .await
            .expect("child")
            .metadata
            .deletion_timestamp
            .is_some()
    );
    cms.patch(
        "child",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("child released");
    assert!(cms.get_opt("child").await.expect("read").is_none());
    assert!(
        cms.get_opt("parent").await.expect("read").is_none(),
        "parent goes after its child"
    );

    parent_and_child(&cms).await;
    let orphan = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Orphan),
        ..DeleteParams::default()
    };
    cms.delete("parent", &orphan).await.expect("deleted");
    assert!(cms.get_opt("parent").await.expect("read").is_none());
    let child = cms.get("child").await.expect("orphaned child stays");
    assert!(
        child
            .metadata
            .owner_references
            .unwrap_or_default()
            .is_empty()
    );
    assert!(child.metadata.deletion_timestamp.is_none());
}
