//! The wake gate (#20) on its own, against the API server (kubesim, or the
//! real one with `ATOLL_TEST_CLUSTER`), with real HTTP: Tenants whose
//! status says where they stand, an instance pod whose readiness the test
//! sets by hand, and a plain HTTP server playing the instance.
//!
//! - a request for a sleeping tenant asks for its wake once (the wake
//!   annotations), however many requests come, and is held;
//! - once the tenant's instance pod is ready the held requests are
//!   forwarded unchanged (method, path, query, body, Host) and answered;
//! - past the hold limit: 503 with `Retry-After`; a browser gets the
//!   "waking up" page that reloads itself;
//! - a suspended tenant's host answers 503 "suspended" and wakes nothing;
//!   an unknown host answers 404.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use atoll_crds::{Tenant, WAKE_CAUSE_ANNOTATION, WAKE_REQUESTED_AT_ANNOTATION, tenant_crd};
use atoll_operator::gate::{GateArgs, run_with_client};
use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Uri};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(60);

async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    common::eventually(what, LIMIT, check).await
}

fn free_addr() -> SocketAddr {
    let port = atoll_testkit::wake_gate::free_port().expect("a free port");
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A Tenant with the status the operator would have written.
async fn tenant(client: &Client, name: &str, suspended: bool, sleeping: bool) {
    let api: Api<Tenant> = Api::all(client.clone());
    let tenant: Tenant = serde_json::from_value(json!({
        "apiVersion": "atoll.dev/v1alpha1", "kind": "Tenant",
        "metadata": {"name": name},
        "spec": {"suspended": suspended, "idle": {"after": "10s"}},
    }))
    .expect("a Tenant");
    api.create(&PostParams::default(), &tenant)
        .await
        .unwrap_or_else(|e| panic!("Tenant {name}: {e}"));
    let mut status = json!({
        "phase": if suspended { "Suspended" } else { "Sleeping" },
        "url": format!("http://{name}.atoll.localhost:8080"),
        "namespace": format!("atoll-{name}"),
    });
    if sleeping {
        status["idle"] = json!({"sleepingSince": "2026-01-01T00:00:00Z"});
    }
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": status})),
    )
    .await
    .unwrap_or_else(|e| panic!("Tenant {name} status: {e}"));
}

/// The tenant's instance pod, ready at `addr` (the test's HTTP server).
async fn ready_instance_pod(client: &Client, namespace: &str, addr: SocketAddr) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": namespace}})).expect("ns"),
        )
        .await
        .expect("the tenant's namespace");
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "instance-1", "labels": {
            "app.kubernetes.io/component": "instance",
            "app.kubernetes.io/managed-by": "atoll-operator"}},
        "spec": {"containers": [{"name": "instance", "image": "atoll/atoll-instance:test",
            "ports": [{"name": "http", "containerPort": addr.port()}]}]},
    }))
    .expect("a pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("the instance pod");
    let status = json!({"status": {
        "phase": "Running",
        "podIP": addr.ip().to_string(),
        "podIPs": [{"ip": addr.ip().to_string()}],
        "conditions": [{"type": "Ready", "status": "True"}],
    }});
    pods.patch_status(
        "instance-1",
        &PatchParams::default(),
        &Patch::Merge(&status),
    )
    .await
    .expect("the pod ready");
}

/// Plays the instance: echoes what it was sent.
async fn echo_server() -> SocketAddr {
    let app = Router::new().fallback(
        |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| async move {
            let host = headers
                .get("host")
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            format!(
                "{method} {uri} host={host} body={}",
                String::from_utf8_lossy(&body)
            )
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

async fn wake_annotations(client: &Client, name: &str) -> (Option<String>, Option<String>) {
    let t = Api::<Tenant>::all(client.clone())
        .get(name)
        .await
        .expect("tenant");
    let a = t.metadata.annotations.unwrap_or_default();
    (
        a.get(WAKE_REQUESTED_AT_ANNOTATION).cloned(),
        a.get(WAKE_CAUSE_ANNOTATION).cloned(),
    )
}

async fn the_gate_holds_wakes_and_forwards(kind: common::ClusterKind) {
    let cluster = common::start_cluster(kind).await;
    let client = cluster.client();
    common::install_crd(&client, &tenant_crd()).await;
    tenant(&client, "sleepy", false, true).await;
    tenant(&client, "frozen", true, false).await;
    tenant(&client, "slow", false, true).await;

    // Two replicas: one with a short hold limit (to see it run out), one
    // with a long one.
    let (listen, patient) = (free_addr(), free_addr());
    let mut gates = Vec::new();
    for (addr, hold) in [(listen, 1), (patient, 60)] {
        let args = GateArgs {
            listen: addr,
            metrics_addr: free_addr(),
            hold_limit_seconds: hold,
            page_hold_seconds: 1,
        };
        gates.push(tokio::spawn(run_with_client(args, client.clone())));
    }
    let http = reqwest::Client::new();
    let get = |host: &'static str, path: &'static str| {
        http.get(format!("http://{listen}{path}"))
            .header("host", host)
            .send()
    };
    eventually("the gates to listen", || async {
        get("nobody.example.com", "/").await.ok()?;
        http.get(format!("http://{patient}/")).send().await.ok()
    })
    .await;

    // Unknown host.
    let unknown = get("nobody.example.com", "/").await.expect("answer");
    assert_eq!(unknown.status().as_u16(), 404);

    // Suspended: a clear answer, no wake asked.
    let frozen = get("frozen.atoll.localhost:8080", "/api/v1/flows")
        .await
        .expect("answer");
    assert_eq!(frozen.status().as_u16(), 503);
    let text = frozen.text().await.unwrap_or_default();
    assert!(text.contains("frozen is suspended"), "{text}");
    assert_eq!(wake_annotations(&client, "frozen").await, (None, None));

    // Held past the limit: 503 with Retry-After; a browser gets the page.
    let late = get("slow.atoll.localhost:8080", "/api/v1/flows")
        .await
        .expect("answer");
    assert_eq!(late.status().as_u16(), 503);
    assert_eq!(
        late.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("2")
    );
    let page = http
        .get(format!("http://{listen}/ui/flows"))
        .header("host", "slow.atoll.localhost")
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .expect("answer");
    assert_eq!(page.status().as_u16(), 503);
    let page = page.text().await.unwrap_or_default();
    assert!(
        page.contains("Waking up") && page.contains("http-equiv=\"refresh\""),
        "{page}"
    );
    let (asked, cause) = wake_annotations(&client, "slow").await;
    assert!(asked.is_some(), "the wake was asked for");
    assert_eq!(cause.as_deref(), Some("request"));

    // Ten held requests, one wake asked; forwarded once the pod is ready.
    let sleepy = tokio::spawn({
        let http = http.clone();
        async move {
            let requests = (0..10).map(|i| {
                http.post(format!(
                    "http://{patient}/api/v1/executions/team/hello?n={i}"
                ))
                .header("host", "sleepy.atoll.localhost:8080")
                .body(format!("payload {i}"))
                .send()
            });
            futures::future::join_all(requests).await
        }
    });
    let asked = eventually("the gate to ask for sleepy's wake", || async {
        wake_annotations(&client, "sleepy").await.0
    })
    .await;
    let instance = echo_server().await;
    ready_instance_pod(&client, "atoll-sleepy", instance).await;
    let replies = sleepy.await.expect("requests");
    for (i, reply) in replies.into_iter().enumerate() {
        let reply = reply.expect("an answer");
        let status = reply.status().as_u16();
        let body = reply.text().await.unwrap_or_default();
        assert_eq!(status, 200, "held request {i}: {body}");
        assert_eq!(
            body,
            format!(
                "POST /api/v1/executions/team/hello?n={i} host=sleepy.atoll.localhost:8080 body=payload {i}"
            )
        );
    }
    assert_eq!(
        wake_annotations(&client, "sleepy").await.0,
        Some(asked),
        "one wake asked for all the requests"
    );
    // Ready now: a new request is forwarded at once.
    let direct = get("sleepy.atoll.localhost:8080", "/healthz")
        .await
        .expect("answer");
    assert_eq!(direct.status().as_u16(), 200);
    for gate in gates {
        gate.abort();
    }
}

atoll_testkit::on_each_cluster!(the_gate_holds_wakes_and_forwards);
