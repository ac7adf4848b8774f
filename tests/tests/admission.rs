//! ValidatingAdmissionPolicy in kubesim, with the policy the chart ships
//! (charts/atoll/templates/operator-admission-policy.yaml): the operator's
//! service account may write in namespaces labelled as Atoll tenant
//! namespaces and Leases in its own namespace, nothing else; other users
//! are not affected. Also: policies and bindings kubesim cannot evaluate
//! are refused when written, and kubectl applies the chart's policy.
//!
//! The chart tests need helm (`ATOLL_HELM`; `scripts/test` installs it and
//! sets it) and are skipped, saying so, without it; the kubectl test needs
//! kubectl (`ATOLL_KUBECTL`, else `kubectl` on the PATH).

mod common;

use std::process::Stdio;

use atoll_testkit::chart::{self, RELEASE_NAMESPACE};
use atoll_testkit::kubesim::KubeSim;
use atoll_testkit::kubesim::rbac::UserInfo;
use common::from_json;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

/// The chart's policy and binding are both named this (release `atoll`).
const POLICY: &str = "atoll-operator-scope";
const TENANT_NAMESPACE: &str = "atoll-acme";
const OPERATOR_MANAGER: &str = "atoll-operator";

/// The chart's ValidatingAdmissionPolicy and binding, rendered with
/// `extra` values; `None` (after saying so) without helm.
fn chart_policy(extra: &[&str]) -> Option<Vec<Value>> {
    match chart::template(extra) {
        Ok(rendered) => Some(
            chart::documents(&rendered)
                .into_iter()
                .filter(|d| {
                    d["apiVersion"]
                        .as_str()
                        .is_some_and(|v| v.starts_with("admissionregistration.k8s.io/"))
                })
                // The operator's policy; the wake gate's (#20) is checked by
                // the end-to-end suite (`chart_enforced`).
                .filter(|d| {
                    !d["metadata"]["name"]
                        .as_str()
                        .is_some_and(|n| n.contains("wake-gate"))
                })
                .collect(),
        ),
        Err(chart::ChartError::HelmMissing) => {
            eprintln!("SKIPPED: ATOLL_HELM is not set (scripts/test installs helm and sets it)");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

fn api_of(client: &Client, doc: &Value) -> Api<DynamicObject> {
    let api_version = doc["apiVersion"].as_str().expect("apiVersion");
    let (group, version) = api_version.split_once('/').expect("group/version");
    let kind = doc["kind"].as_str().expect("kind");
    let singular = kind.to_ascii_lowercase();
    let plural = match singular.strip_suffix('y') {
        Some(stem) => format!("{stem}ies"),
        None => format!("{singular}s"),
    };
    let resource =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), &plural);
    Api::all_with(client.clone(), &resource)
}

/// Applies cluster-scoped objects as the administrator.
async fn apply_all(client: &Client, docs: &[Value]) {
    for doc in docs {
        let name = doc["metadata"]["name"].as_str().expect("name");
        api_of(client, doc)
            .patch(
                name,
                &PatchParams::apply("helm").force(),
                &Patch::Apply(doc),
            )
            .await
            .unwrap_or_else(|e| panic!("{} {name} applied: {e}", doc["kind"]));
    }
}

fn tenant_labels() -> Value {
    json!({"atoll.dev/tenant": "acme", "app.kubernetes.io/managed-by": "atoll-operator"})
}

async fn create_namespace(client: &Client, name: &str, labels: Value) {
    let ns: Namespace = from_json(json!({"metadata": {"name": name, "labels": labels}}));
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("namespace {name} created: {e}"));
}

fn deployment(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": tenant_labels()},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": "atoll/atoll-instance:1"}]},
            },
        },
    })
}

async fn apply_deployment(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Deployment, kube::Error> {
    Api::<Deployment>::namespaced(client.clone(), namespace)
        .patch(
            name,
            &PatchParams::apply(OPERATOR_MANAGER).force(),
            &Patch::Apply(deployment(namespace, name)),
        )
        .await
}

async fn apply_secret(client: &Client, namespace: &str) -> Result<Secret, kube::Error> {
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "database-credentials", "namespace": namespace, "labels": tenant_labels()},
        "stringData": {"password": "x"},
    });
    Api::<Secret>::namespaced(client.clone(), namespace)
        .patch(
            "database-credentials",
            &PatchParams::apply(OPERATOR_MANAGER).force(),
            &Patch::Apply(secret),
        )
        .await
}

async fn apply_namespace(
    client: &Client,
    name: &str,
    labels: Value,
) -> Result<Namespace, kube::Error> {
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}});
    Api::<Namespace>::all(client.clone())
        .patch(
            name,
            &PatchParams::apply(OPERATOR_MANAGER).force(),
            &Patch::Apply(ns),
        )
        .await
}

async fn merge_namespace(
    client: &Client,
    name: &str,
    patch: Value,
) -> Result<Namespace, kube::Error> {
    Api::<Namespace>::all(client.clone())
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
}

async fn delete_namespace(client: &Client, name: &str) -> Result<(), kube::Error> {
    Api::<Namespace>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await
        .map(|_| ())
}

async fn apply_lease(client: &Client, namespace: &str) -> Result<Lease, kube::Error> {
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "atoll-operator", "namespace": namespace},
        "spec": {"holderIdentity": "atoll-operator-0"},
    });
    Api::<Lease>::namespaced(client.clone(), namespace)
        .patch(
            "atoll-operator",
            &PatchParams::apply(OPERATOR_MANAGER).force(),
            &Patch::Apply(lease),
        )
        .await
}

/// The refusal of the chart's policy for a write in (or to) `namespace`.
#[track_caller]
fn assert_denied<T: std::fmt::Debug>(result: Result<T, kube::Error>, namespace: &str, what: &str) {
    let status = match result {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("{what}: expected the policy to refuse it, got {other:?}"),
    };
    assert_eq!(status.code, 403, "{what}: {status:?}");
    assert_eq!(status.reason, "Forbidden", "{what}: {status:?}");
    let denial = format!(
        "ValidatingAdmissionPolicy '{POLICY}' with binding '{POLICY}' denied request: namespace {namespace} is not an Atoll tenant namespace"
    );
    assert!(
        status.message.contains(&denial),
        "{what}: the message names the policy and the namespace: {}",
        status.message
    );
}

/// kubesim with the chart's policy and binding, the tenant namespace
/// (labelled as the operator labels it), the release namespace and an
/// unlabelled platform namespace, with a Deployment in kube-system.
async fn cluster_with_policy() -> Option<(KubeSim, Client)> {
    let docs = chart_policy(&[])?;
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding"
        ],
        "the chart renders the policy and its binding by default"
    );
    let sim = KubeSim::new();
    let admin = sim.client();
    apply_all(&admin, &docs).await;
    create_namespace(&admin, TENANT_NAMESPACE, tenant_labels()).await;
    create_namespace(&admin, RELEASE_NAMESPACE, json!({})).await;
    create_namespace(&admin, "platform", json!({"team": "platform"})).await;
    apply_deployment(&admin, "kube-system", "coredns")
        .await
        .expect("the administrator writes in kube-system");
    let operator = sim.client_as(UserInfo::service_account(
        RELEASE_NAMESPACE,
        "atoll-operator",
    ));
    Some((sim, operator))
}

#[tokio::test]
async fn the_operator_writes_in_tenant_namespaces_and_its_lease() {
    let Some((_sim, operator)) = cluster_with_policy().await else {
        return;
    };
    apply_deployment(&operator, TENANT_NAMESPACE, "instance")
        .await
        .expect("a Deployment in a tenant namespace");
    apply_secret(&operator, TENANT_NAMESPACE)
        .await
        .expect("the database Secret in a tenant namespace");
    apply_namespace(&operator, "atoll-globex", tenant_labels())
        .await
        .expect("a new tenant namespace, labelled");
    apply_namespace(&operator, TENANT_NAMESPACE, tenant_labels())
        .await
        .expect("an existing tenant namespace, applied again");
    merge_namespace(
        &operator,
        TENANT_NAMESPACE,
        json!({"metadata": {"labels": {"atoll.dev/retained": "true"}}}),
    )
    .await
    .expect("a tenant namespace marked retained");
    apply_lease(&operator, RELEASE_NAMESPACE)
        .await
        .expect("the leader Lease in the operator's namespace");
    // Events are outside the policy: those about a cluster-scoped Tenant
    // land in `default`.
    let event: Event = from_json(json!({
        "metadata": {"name": "acme.1", "namespace": "default"},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "atoll.dev/operator", "reportingInstance": "atoll-operator-0",
        "action": "Reconcile", "reason": "Ready", "type": "Normal",
        "regarding": {"apiVersion": "atoll.dev/v1alpha1", "kind": "Tenant", "name": "acme"},
    }));
    Api::<Event>::namespaced(operator.clone(), "default")
        .create(&PostParams::default(), &event)
        .await
        .expect("an Event about a Tenant in default");
    delete_namespace(&operator, "atoll-globex")
        .await
        .expect("a tenant namespace deleted");
}

#[tokio::test]
async fn the_operator_cannot_write_outside_tenant_namespaces() {
    let Some((sim, operator)) = cluster_with_policy().await else {
        return;
    };
    let admin = sim.client();
    assert_denied(
        Api::<Deployment>::namespaced(operator.clone(), "kube-system")
            .patch(
                "coredns",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": 0}})),
            )
            .await,
        "kube-system",
        "patching a Deployment in kube-system",
    );
    assert_denied(
        apply_deployment(&operator, "platform", "instance").await,
        "platform",
        "applying a Deployment in an unlabelled namespace",
    );
    assert_denied(
        apply_deployment(&operator, RELEASE_NAMESPACE, "instance").await,
        RELEASE_NAMESPACE,
        "applying a Deployment in the operator's own namespace",
    );
    for namespace in ["platform", "kube-system"] {
        assert_denied(
            merge_namespace(
                &operator,
                namespace,
                json!({"metadata": {"labels": tenant_labels()}}),
            )
            .await,
            namespace,
            "labelling an unlabelled namespace as a tenant's",
        );
        assert_denied(
            delete_namespace(&operator, namespace).await,
            namespace,
            "deleting an unlabelled namespace",
        );
    }
    assert_denied(
        apply_namespace(&operator, "sneaky", json!({})).await,
        "sneaky",
        "creating a namespace without the tenant labels",
    );
    assert_denied(
        apply_namespace(
            &operator,
            "half",
            json!({"atoll.dev/tenant": "half", "app.kubernetes.io/managed-by": "someone-else"}),
        )
        .await,
        "half",
        "creating a namespace another manager labelled",
    );
    for namespace in [RELEASE_NAMESPACE, "kube-system", "default"] {
        assert_denied(
            apply_secret(&operator, namespace).await,
            namespace,
            "writing a Secret outside tenant namespaces",
        );
    }
    assert_denied(
        apply_lease(&operator, "kube-system").await,
        "kube-system",
        "a Lease outside the operator's namespace",
    );
    // Dry runs are admitted like real writes.
    assert_denied(
        Api::<Namespace>::all(operator.clone())
            .delete(
                "platform",
                &DeleteParams {
                    dry_run: true,
                    ..DeleteParams::default()
                },
            )
            .await
            .map(|_| ()),
        "platform",
        "a dry-run delete",
    );
    // Nothing changed.
    let coredns = Api::<Deployment>::namespaced(admin.clone(), "kube-system")
        .get("coredns")
        .await
        .expect("coredns is still there");
    assert_eq!(coredns.spec.and_then(|s| s.replicas), Some(1));
    let namespaces = Api::<Namespace>::all(admin.clone());
    for name in ["platform", "kube-system"] {
        let ns = namespaces.get(name).await.expect("still there");
        assert!(
            ns.metadata.deletion_timestamp.is_none(),
            "{name} is not terminating"
        );
        assert!(
            !ns.labels().contains_key("atoll.dev/tenant"),
            "{name} is not labelled"
        );
    }
    for name in ["sneaky", "half"] {
        assert!(
            namespaces.get_opt(name).await.expect("get").is_none(),
            "{name} was not created"
        );
    }
    assert!(
        Api::<Secret>::namespaced(admin.clone(), RELEASE_NAMESPACE)
            .get_opt("database-credentials")
            .await
            .expect("get")
            .is_none()
    );
}

#[tokio::test]
async fn other_users_are_not_affected_by_the_operator_policy() {
    let Some((sim, _operator)) = cluster_with_policy().await else {
        return;
    };
    let someone = sim.client_as(UserInfo::service_account(RELEASE_NAMESPACE, "someone-else"));
    for client in [sim.client(), someone] {
        Api::<Deployment>::namespaced(client.clone(), "kube-system")
            .patch(
                "coredns",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": 2}})),
            )
            .await
            .expect("a Deployment in kube-system patched");
        apply_secret(&client, "platform")
            .await
            .expect("a Secret in an unlabelled namespace");
        apply_namespace(&client, "plain", json!({}))
            .await
            .expect("an unlabelled namespace");
        delete_namespace(&client, "plain")
            .await
            .expect("an unlabelled namespace deleted");
    }
}

#[tokio::test]
async fn the_policy_can_be_turned_off() {
    let Some(docs) = chart_policy(&["--set", "operator.admissionPolicy.enabled=false"]) else {
        return;
    };
    assert!(docs.is_empty(), "no policy, no binding: {docs:#?}");
}

#[tokio::test]
async fn policies_kubesim_cannot_evaluate_are_refused_when_written() {
    let sim = KubeSim::new();
    let admin = sim.client();
    let policies = api_of(
        &admin,
        &json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy"}),
    );
    let with_params: DynamicObject = from_json(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": "with-params"},
        "spec": {
            "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
            "matchConstraints": {"resourceRules": [{
                "apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["deployments"],
                "operations": ["CREATE"],
            }]},
            "validations": [{"expression": "object.spec.replicas <= params.data.max"}],
        },
    }));
    let status = match policies.create(&PostParams::default(), &with_params).await {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("a policy with paramKind was accepted: {other:?}"),
    };
    assert_eq!(status.code, 422, "{status:?}");
    assert!(
        status.message.contains("spec.paramKind"),
        "{}",
        status.message
    );
    let broken: DynamicObject = from_json(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": "broken"},
        "spec": {
            "matchConstraints": {"resourceRules": [{
                "apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["deployments"],
                "operations": ["CREATE"],
            }]},
            "validations": [{"expression": "object.spec.replicas <="}],
        },
    }));
    let status = match policies.create(&PostParams::default(), &broken).await {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("a policy that does not compile was accepted: {other:?}"),
    };
    assert_eq!(status.code, 422, "{status:?}");
    assert!(
        status.message.contains("spec.validations[0].expression"),
        "{}",
        status.message
    );
}

#[tokio::test]
async fn a_denial_without_reason_is_invalid_and_ignore_lets_errors_pass() {
    let sim = KubeSim::new();
    let admin = sim.client();
    let rule = json!([{
        "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"],
        "operations": ["CREATE", "UPDATE"],
    }]);
    let docs = [
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": "small"},
            "spec": {
                "matchConstraints": {"resourceRules": rule},
                "validations": [{"expression": "size(object.data) <= 1"}],
            },
        }),
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": "small"},
            "spec": {"policyName": "small", "validationActions": ["Deny"]},
        }),
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": "lenient"},
            "spec": {
                "failurePolicy": "Ignore",
                "matchConstraints": {"resourceRules": rule},
                "validations": [{"expression": "object.data.missing == 'x'"}],
            },
        }),
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": "lenient"},
            "spec": {"policyName": "lenient", "validationActions": ["Deny"]},
        }),
    ];
    apply_all(&admin, &docs).await;
    let configmaps =
        Api::<k8s_openapi::api::core::v1::ConfigMap>::default_namespaced(admin.clone());
    let one: k8s_openapi::api::core::v1::ConfigMap =
        from_json(json!({"metadata": {"name": "one"}, "data": {"a": "1"}}));
    configmaps
        .create(&PostParams::default(), &one)
        .await
        .expect("one key passes, and the lenient policy's error is ignored");
    let two: k8s_openapi::api::core::v1::ConfigMap =
        from_json(json!({"metadata": {"name": "two"}, "data": {"a": "1", "b": "2"}}));
    let status = match configmaps.create(&PostParams::default(), &two).await {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("two keys were accepted: {other:?}"),
    };
    assert_eq!(status.code, 422, "{status:?}");
    assert_eq!(status.reason, "Invalid");
    assert_eq!(
        status.message,
        "configmaps \"two\" is forbidden: ValidatingAdmissionPolicy 'small' with binding 'small' denied request: failed expression: size(object.data) <= 1"
    );
}

#[tokio::test]
async fn kubectl_applies_the_chart_policy() {
    let Some(docs) = chart_policy(&[]) else {
        return;
    };
    let sim = KubeSim::new();
    let server = sim
        .serve("127.0.0.1:0".parse().expect("loopback"))
        .await
        .expect("listening");
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    server
        .write_kubeconfig(&kubeconfig)
        .expect("kubeconfig written");
    let manifest = dir.path().join("policy.yaml");
    let text: String = docs
        .iter()
        .map(|d| format!("---\n{}", serde_norway::to_string(d).expect("yaml")))
        .collect();
    std::fs::write(&manifest, text).expect("manifest written");
    let kubectl = std::env::var("ATOLL_KUBECTL").unwrap_or_else(|_| "kubectl".into());
    for args in [
        vec!["apply", "-f", manifest.to_str().expect("utf-8 path")],
        vec![
            "apply",
            "--server-side",
            "-f",
            manifest.to_str().expect("utf-8 path"),
        ],
        vec![
            "get",
            "validatingadmissionpolicies,validatingadmissionpolicybindings",
        ],
    ] {
        let output = tokio::process::Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--cache-dir")
            .arg(dir.path().join("cache"))
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap_or_else(|e| panic!("kubectl could not start ({e}); set ATOLL_KUBECTL"));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "kubectl {args:?}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        if args[0] == "get" {
            assert_eq!(stdout.matches(POLICY).count(), 2, "{stdout}");
        }
    }
    let stored = api_of(
        &sim.client(),
        &json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy"}),
    )
    .get(POLICY)
    .await
    .expect("the policy is stored");
    assert_eq!(stored.data["spec"]["failurePolicy"], "Fail");
}
