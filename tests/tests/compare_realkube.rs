//! kubesim against the real API server: the same requests, for the objects
//! Atoll uses (the Tenant CRD and a Tenant, Namespace, Secret, ConfigMap,
//! Deployment, StatefulSet, Service, NetworkPolicy, Ingress,
//! EndpointSlice, Role, RoleBinding, and Events in both versions), go to
//! kubesim and to
//! realkube, and their answers are compared: status codes, `Status`
//! reasons and the fields of their causes, managedFields managers,
//! operations and subresources, server-side apply conflicts, Event field
//! conversion and watch event types. What legitimately differs (uids,
//! timestamps, resourceVersions, generated names, defaults kubesim does
//! not fill) is left out by comparing only what each step picks.
//!
//! Differences kubesim keeps on purpose are listed in [`KNOWN`], each
//! with its reason (and in docs/testing.md); any other difference fails
//! the test, printing every difference found.
//!
//! Skipped, loudly, without the realkube binaries (`scripts/realkube-build`)
//! unless `ATOLL_REALKUBE_REQUIRED` is set.

use std::collections::BTreeMap;
use std::time::Duration;

use atoll_crds::tenant_crd;
use atoll_testkit::eventually;
use atoll_testkit::kubesim::KubeSim;
use atoll_testkit::realkube::{self, RealKube, RealKubeOptions};
use futures::{StreamExt, TryStreamExt};
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, WatchEvent, WatchParams};
use serde_json::{Value, json};

const NS: &str = "cmp";
const DISCOVERY: &str = "discovery.k8s.io/v1";
const LIMIT: Duration = Duration::from_secs(60);

/// Differences kubesim keeps, by step name, with the reason.
const KNOWN: &[(&str, &str)] = &[];

/// One request, and what of its answer is compared.
struct Step {
    name: &'static str,
    method: &'static str,
    path: String,
    content_type: &'static str,
    body: Option<Value>,
    /// JSON pointers into a successful answer.
    picks: &'static [&'static str],
}

fn step(name: &'static str, method: &'static str, path: impl Into<String>) -> Step {
    Step {
        name,
        method,
        path: path.into(),
        content_type: "application/json",
        body: None,
        picks: &[],
    }
}

impl Step {
    fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    fn apply(mut self, body: Value) -> Self {
        self.content_type = "application/apply-patch+yaml";
        self.body = Some(body);
        self
    }

    fn merge(mut self, body: Value) -> Self {
        self.content_type = "application/merge-patch+json";
        self.body = Some(body);
        self
    }

    fn picks(mut self, picks: &'static [&'static str]) -> Self {
        self.picks = picks;
        self
    }
}

/// What is compared of one answer.
#[derive(Debug, PartialEq)]
struct Outcome {
    code: u16,
    /// `Status.reason` of a failure.
    reason: Option<String>,
    /// `details.causes[].reason` and `.field`, sorted.
    causes: Vec<(String, String)>,
    /// `(manager, operation, subresource)` of every managedFields entry.
    managers: Vec<(String, String, String)>,
    picked: BTreeMap<&'static str, Value>,
}

async fn send(client: &Client, step: &Step) -> Outcome {
    let body = step
        .body
        .as_ref()
        .map(|b| serde_json::to_vec(b).expect("JSON"))
        .unwrap_or_default();
    let request = http::Request::builder()
        .method(step.method)
        .uri(&step.path)
        .header("content-type", step.content_type)
        .header("accept", "application/json")
        .body(kube::client::Body::from(body))
        .expect("request");
    let response = client
        .send(request)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", step.name));
    let code = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    outcome(code, &answer, step.picks)
}

fn outcome(code: u16, answer: &Value, picks: &'static [&'static str]) -> Outcome {
    let failed = answer["kind"] == "Status" && answer["status"] == "Failure";
    let mut causes: Vec<(String, String)> = answer["details"]["causes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let text = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
            (text("reason"), text("field"))
        })
        .collect();
    causes.sort();
    let mut managers: Vec<(String, String, String)> = answer["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let text = |k: &str| m[k].as_str().unwrap_or_default().to_owned();
            (text("manager"), text("operation"), text("subresource"))
        })
        .collect();
    managers.sort();
    let picked = picks
        .iter()
        .map(|p| (*p, answer.pointer(p).cloned().unwrap_or(Value::Null)))
        .collect();
    Outcome {
        code,
        reason: failed.then(|| answer["reason"].as_str().unwrap_or_default().to_owned()),
        causes,
        managers,
        picked,
    }
}

fn ns_path(group_version: &str, plural: &str, name: &str) -> String {
    let root = if group_version == "v1" {
        "/api/v1".to_owned()
    } else {
        format!("/apis/{group_version}")
    };
    let name = if name.is_empty() {
        String::new()
    } else {
        format!("/{name}")
    };
    format!("{root}/namespaces/{NS}/{plural}{name}")
}

fn tenant(name: &str, role: &str) -> Value {
    json!({
        "apiVersion": "atoll.dev/v1alpha1", "kind": "Tenant",
        "metadata": {"name": name},
        "spec": {"members": [{"user": "alice@acme.com", "role": role}]}
    })
}

fn workloads() -> Vec<Step> {
    let template = json!({
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "nginx:1"}]}
    });
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": template}
    });
    let statefulset = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
        "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "web"}}, "template": template}
    });
    let deploy = ns_path("apps/v1", "deployments", "web");
    let sts = ns_path("apps/v1", "statefulsets", "");
    vec![
        step(
            "deployment apply",
            "PATCH",
            format!("{deploy}?fieldManager=atoll"),
        )
        .apply(deployment)
        .picks(&["/spec/replicas", "/metadata/generation"]),
        step(
            "deployment scale by merge patch",
            "PATCH",
            format!("{deploy}?fieldManager=scaler"),
        )
        .merge(json!({"spec": {"replicas": 2}}))
        .picks(&["/spec/replicas", "/metadata/generation"]),
        step(
            "deployment status by merge patch",
            "PATCH",
            format!("{deploy}/status"),
        )
        .merge(json!({"status": {"replicas": 2}}))
        .picks(&["/status/replicas"]),
        step(
            "deployment missing",
            "GET",
            ns_path("apps/v1", "deployments", "nope"),
        ),
        step("statefulset without selector", "POST", sts.clone()).body(json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "bad"},
            "spec": {"serviceName": "db", "template": template}
        })),
        step("statefulset create", "POST", sts)
            .body(statefulset)
            .picks(&["/spec/replicas"]),
    ]
}

fn config() -> Vec<Step> {
    let cm = ns_path("v1", "configmaps", "settings");
    let cm_body = |value: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"mode": value}});
    let secret = ns_path("v1", "secrets", "");
    vec![
        step("namespace exists", "POST", "/api/v1/namespaces")
            .body(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})),
        step("secret create", "POST", secret.clone())
            .body(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"}, "stringData": {"password": "x"}}))
            .picks(&["/type", "/data/password", "/stringData"]),
        step("secret stale update", "PUT", ns_path("v1", "secrets", "creds")).body(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "creds", "resourceVersion": "1"}, "data": {"password": "eQ=="}
        })),
        step("secret create again", "POST", secret).body(
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"}}),
        ),
        step("configmap apply", "PATCH", format!("{cm}?fieldManager=atoll"))
            .apply(cm_body("a"))
            .picks(&["/data/mode"]),
        step("configmap apply by another manager", "PATCH", format!("{cm}?fieldManager=other"))
            .apply(cm_body("b")),
        step(
            "configmap apply by another manager, forced",
            "PATCH",
            format!("{cm}?fieldManager=other&force=true"),
        )
        .apply(cm_body("b"))
        .picks(&["/data/mode"]),
        step("configmap apply without manager", "PATCH", cm.clone()).apply(cm_body("c")),
        step("configmap update", "PUT", format!("{cm}?fieldManager=editor"))
            .body(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"mode": "d", "extra": "e"}}))
            .picks(&["/data"]),
        step("configmap delete", "DELETE", cm.clone()),
        step("configmap gone", "GET", cm),
    ]
}

fn network() -> Vec<Step> {
    let svc = ns_path("v1", "services", "web");
    vec![
        step("service create", "POST", ns_path("v1", "services", ""))
            .body(json!({
                "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}
            }))
            .picks(&["/spec/type", "/spec/ports/0/protocol", "/spec/sessionAffinity"]),
        step("service clusterIP change", "PATCH", svc)
            .merge(json!({"spec": {"clusterIP": "10.96.99.99"}})),
        step("networkpolicy create", "POST", ns_path("networking.k8s.io/v1", "networkpolicies", ""))
            .body(json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "deny"},
                "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}
            }))
            .picks(&["/spec/policyTypes"]),
        step("ingress create", "POST", ns_path("networking.k8s.io/v1", "ingresses", ""))
            .body(json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web"},
                "spec": {"rules": [{"host": "acme.example.com", "http": {"paths": [{
                    "path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": "web", "port": {"number": 80}}}
                }]}}]}
            }))
            .picks(&["/spec/rules/0/host"]),
        step("ingress without pathType", "POST", ns_path("networking.k8s.io/v1", "ingresses", ""))
            .body(json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "bad"},
                "spec": {"rules": [{"http": {"paths": [{"path": "/", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}
            })),
        step("endpointslice create", "POST", ns_path(DISCOVERY, "endpointslices", ""))
            .body(json!({
                "apiVersion": DISCOVERY, "kind": "EndpointSlice",
                "metadata": {"name": "gate", "labels": {"kubernetes.io/service-name": "web"}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.1.2.3"], "conditions": {"ready": true}}],
                "ports": [{"port": 8080}]
            }))
            .picks(&["/addressType", "/ports/0/name", "/ports/0/protocol", "/endpoints/0/conditions/ready"]),
        step("endpointslice addressType change", "PATCH", ns_path(DISCOVERY, "endpointslices", "gate"))
            .merge(json!({"addressType": "IPv6"})),
        step("endpointslice without addressType and addresses", "POST", ns_path(DISCOVERY, "endpointslices", ""))
            .body(json!({
                "apiVersion": DISCOVERY, "kind": "EndpointSlice", "metadata": {"name": "bad"},
                "endpoints": [{"addresses": []}]
            })),
    ]
}

fn rbac() -> Vec<Step> {
    let rbac = "rbac.authorization.k8s.io/v1";
    vec![
        step("role create", "POST", ns_path(rbac, "roles", "")).body(json!({
            "apiVersion": rbac, "kind": "Role", "metadata": {"name": "reader"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]
        })),
        step(
            "rolebinding create",
            "POST",
            ns_path(rbac, "rolebindings", ""),
        )
        .body(json!({
            "apiVersion": rbac, "kind": "RoleBinding", "metadata": {"name": "reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
            "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}]
        })),
        step(
            "rolebinding roleRef change",
            "PATCH",
            ns_path(rbac, "rolebindings", "reader"),
        )
        .merge(json!({"roleRef": {"name": "writer"}})),
    ]
}

fn tenants() -> Vec<Step> {
    let path = "/apis/atoll.dev/v1alpha1/tenants";
    vec![
        step(
            "tenant apply",
            "PATCH",
            format!("{path}/acme?fieldManager=kubectl"),
        )
        .apply(tenant("acme", "Admin"))
        .picks(&["/spec/members/0/role", "/metadata/generation"]),
        step("tenant bad role", "POST", path).body(tenant("bad", "Owner")),
        step(
            "tenant status",
            "PATCH",
            format!("{path}/acme/status?fieldManager=atoll-operator"),
        )
        .merge(json!({"status": {"phase": "Ready"}}))
        .picks(&["/status/phase", "/metadata/generation"]),
        step(
            "tenant status through the main resource",
            "PATCH",
            format!("{path}/acme"),
        )
        .merge(json!({"status": {"phase": "Failed"}}))
        .picks(&["/status/phase"]),
    ]
}

fn events() -> Vec<Step> {
    let v1 = ns_path("v1", "events", "");
    let new = ns_path("events.k8s.io/v1", "events", "");
    let event_picks: &'static [&'static str] = &[
        "/message",
        "/note",
        "/involvedObject/name",
        "/regarding/name",
        "/reportingComponent",
        "/reportingController",
        "/reason",
        "/type",
    ];
    vec![
        step("event create through events.k8s.io", "POST", new.clone())
            .body(json!({
                "apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "acme.1"},
                "eventTime": "2026-01-01T00:00:00.000000Z", "action": "Reconcile", "reason": "Provisioned",
                "type": "Normal", "note": "database created", "reportingController": "atoll.dev/operator",
                "reportingInstance": "operator-0", "regarding": {"kind": "ConfigMap", "name": "acme", "namespace": NS}
            }))
            .picks(event_picks),
        step("event read as core", "GET", format!("{v1}/acme.1")).picks(event_picks),
        step("event create through core", "POST", v1.clone())
            .body(json!({
                "apiVersion": "v1", "kind": "Event", "metadata": {"name": "acme.2"},
                "involvedObject": {"kind": "ConfigMap", "name": "acme", "namespace": NS}, "reason": "Ready",
                "message": "tenant ready", "type": "Normal", "source": {"component": "atoll-operator"}
            }))
            .picks(event_picks),
        step("event read through events.k8s.io", "GET", format!("{new}/acme.2"))
            .picks(&["/note", "/regarding/name", "/deprecatedSource/component"]),
        step("event selected by involvedObject", "GET", format!("{v1}?fieldSelector=involvedObject.name%3Dacme"))
            .picks(&["/items/0/message", "/items/1/message"]),
        step("event through events.k8s.io without required fields", "POST", new)
            .body(json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "bare"}, "note": "x"})),
    ]
}

fn steps() -> Vec<Step> {
    let mut all = config();
    all.extend(workloads());
    all.extend(network());
    all.extend(rbac());
    all.extend(tenants());
    all.extend(events());
    all
}

/// Creates the namespace and the Tenant CRD, and waits until Tenants are
/// served.
async fn prepare(client: &Client) {
    let namespace = step("namespace", "POST", "/api/v1/namespaces")
        .body(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}));
    assert_eq!(send(client, &namespace).await.code, 201);
    let crd = serde_json::to_value(tenant_crd()).expect("CRD");
    let create = step(
        "crd",
        "PATCH",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/tenants.atoll.dev?fieldManager=atoll",
    )
    .apply(crd);
    assert_eq!(send(client, &create).await.code, 201);
    let list = step("tenants", "GET", "/apis/atoll.dev/v1alpha1/tenants");
    eventually("tenants are served", LIMIT, || async {
        (send(client, &list).await.code == 200).then_some(())
    })
    .await;
}

/// The event types a ConfigMap watch sees for a create, an update and a
/// delete.
async fn watch_types(client: &Client) -> Vec<String> {
    let api = Api::<ConfigMap>::namespaced(client.clone(), NS);
    let rv = api
        .list(&Default::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .unwrap_or_default();
    let stream = api
        .watch(&WatchParams::default().timeout(20), &rv)
        .await
        .expect("watch");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "watched"}, "data": {"a": "1"}}))
            .expect("configmap");
    api.create(&Default::default(), &cm).await.expect("create");
    let patch = json!({"data": {"a": "2"}});
    api.patch(
        "watched",
        &Default::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
    .expect("patch");
    api.delete("watched", &Default::default())
        .await
        .expect("delete");
    let types = stream
        .map_ok(|e| match e {
            WatchEvent::Added(_) => "ADDED",
            WatchEvent::Modified(_) => "MODIFIED",
            WatchEvent::Deleted(_) => "DELETED",
            WatchEvent::Bookmark(_) => "BOOKMARK",
            WatchEvent::Error(_) => "ERROR",
        })
        .try_filter(|t| futures::future::ready(*t != "BOOKMARK"))
        .take(3)
        .try_collect::<Vec<_>>();
    tokio::time::timeout(LIMIT, types)
        .await
        .expect("three watch events in time")
        .expect("watch events")
        .into_iter()
        .map(str::to_owned)
        .collect()
}

async fn start_realkube() -> Option<RealKube> {
    realkube::binaries_or_skip("kubesim against realkube")?;
    // Only the API server answers these requests.
    let options = RealKubeOptions {
        controller_manager: false,
        scheduler: false,
        ..RealKubeOptions::default()
    };
    Some(
        RealKube::start(options)
            .await
            .unwrap_or_else(|e| panic!("realkube did not start: {e}")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubesim_answers_as_the_real_api_server_does() {
    let Some(kube) = start_realkube().await else {
        return;
    };
    let sim = KubeSim::new();
    let clients = [("kubesim", sim.client()), ("realkube", kube.client())];
    for (_, client) in &clients {
        prepare(client).await;
    }
    let mut differences = Vec::new();
    for step in steps() {
        let simulated = send(&clients[0].1, &step).await;
        let real = send(&clients[1].1, &step).await;
        if simulated != real {
            differences.push(format!(
                "{}: {} {}\n  kubesim:  {simulated:?}\n  realkube: {real:?}",
                step.name, step.method, step.path
            ));
        }
    }
    let simulated = watch_types(&clients[0].1).await;
    let real = watch_types(&clients[1].1).await;
    assert_eq!(real, ["ADDED", "MODIFIED", "DELETED"]);
    if simulated != real {
        differences.push(format!("watch: kubesim {simulated:?}, realkube {real:?}"));
    }
    let unexpected: Vec<&String> = differences
        .iter()
        .filter(|d| {
            !KNOWN
                .iter()
                .any(|(name, _)| d.starts_with(&format!("{name}:")))
        })
        .collect();
    for d in &differences {
        println!("{d}");
    }
    assert!(
        unexpected.is_empty(),
        "kubesim answers differently from the real API server:\n{}",
        unexpected
            .iter()
            .map(|d| d.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    kube.stop().expect("realkube stops");
}
