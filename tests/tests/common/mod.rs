//! Helpers shared by the nodesim tests: condition waits and object fixtures.
#![allow(dead_code)]

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use serde::de::DeserializeOwned;
use serde_json::Value;

#[allow(unused_imports)]
pub use atoll_testkit::eventually;

/// Creates a namespace.
pub async fn namespace(client: &Client, name: &str) {
    let ns: Namespace = from_json(serde_json::json!({"metadata": {"name": name}}));
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace created");
}

/// Deserialises a fixture.
pub fn from_json<K: DeserializeOwned>(value: Value) -> K {
    serde_json::from_value(value).expect("fixture deserialises")
}

/// The pods of `namespace` matching `selector`.
pub async fn pods(client: &Client, namespace: &str, selector: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(selector))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

/// The PID in a container ID `nodesim://<pid>` of the pod's first container
/// while it runs.
pub fn running_pid(pod: &Pod) -> Option<u32> {
    let status = pod.status.as_ref()?.container_statuses.as_ref()?.first()?;
    status.state.as_ref()?.running.as_ref()?;
    status
        .container_id
        .as_ref()?
        .strip_prefix("nodesim://")?
        .parse()
        .ok()
}

/// Whether the pod's Ready condition is true.
pub fn ready(pod: &Pod) -> bool {
    atoll_testkit::nodesim::workloads::pod_ready(pod)
}

/// A plain HTTP/1.1 GET; returns the status code and body.
pub async fn http_get(addr: std::net::SocketAddr, host: &str, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.ok()?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}
