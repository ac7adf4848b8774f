//! The wake gate as a local process (#20), for the sandbox and the
//! benchmarks that run the operator outside the chart: `atoll-operator
//! wake-gate` on loopback ports, and in the operator's namespace the
//! Service `atoll-wake-gate` (without selector) with an EndpointSlice
//! pointing at it, as the chart's Deployment and Service would provide.
//! kubesim accepts the loopback address in the slice; a real API server
//! does not (docs/testing.md), so this is for kubesim.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

/// The Service name the operator looks for (its default
/// `--wake-gate-service`).
pub const SERVICE: &str = "atoll-wake-gate";

/// A free loopback port (bound, then released).
pub fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// Starts `atoll-operator wake-gate` (the binary at `operator`) against the
/// cluster of `kubeconfig`, its log in `log`; returns the process and the
/// address it serves tenants' hosts on, once its caches are filled.
pub async fn spawn(
    operator: &Path,
    kubeconfig: &Path,
    log: std::fs::File,
    hold_limit_seconds: u64,
) -> Result<(tokio::process::Child, SocketAddr), String> {
    let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port().map_err(|e| e.to_string())?));
    let metrics = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port().map_err(|e| e.to_string())?));
    let stderr = log.try_clone().map_err(|e| e.to_string())?;
    let child = tokio::process::Command::new(operator)
        .arg("wake-gate")
        .env("KUBECONFIG", kubeconfig)
        .env("ATOLL_GATE_LISTEN", listen.to_string())
        .env("ATOLL_GATE_METRICS_ADDR", metrics.to_string())
        .env(
            "ATOLL_GATE_HOLD_LIMIT_SECONDS",
            hold_limit_seconds.to_string(),
        )
        .stdout(log)
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", operator.display()))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if answers_ok(metrics, "/readyz").await {
            return Ok((child, listen));
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "the wake gate did not get ready at http://{metrics}/readyz within 30 s; see its log"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether `GET path` on `addr` answers 200.
async fn answers_ok(addr: SocketAddr, path: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let mut head = [0u8; 12];
    stream.write_all(request.as_bytes()).await.is_ok()
        && stream.read_exact(&mut head).await.is_ok()
        && head.ends_with(b" 200")
}

/// Declares the gate at `addr` as the ready endpoint of the Service
/// `atoll-wake-gate` in `namespace` (created if missing). `Ok(false)` when
/// the API server refuses the loopback address (a real one does): the
/// Service is there without endpoints, and sleeping tenants' hosts are not
/// routed to the gate on that cluster.
pub async fn register(client: &Client, namespace: &str, addr: SocketAddr) -> Result<bool, String> {
    let params = PatchParams::apply("atoll-testkit").force();
    let ns: Namespace = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace},
    }))
    .map_err(|e| e.to_string())?;
    Api::<Namespace>::all(client.clone())
        .patch(namespace, &params, &Patch::Apply(&ns))
        .await
        .map_err(|e| format!("namespace {namespace}: {e}"))?;
    let service: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": SERVICE, "namespace": namespace},
        "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
    }))
    .map_err(|e| e.to_string())?;
    Api::<Service>::namespaced(client.clone(), namespace)
        .patch(SERVICE, &params, &Patch::Apply(&service))
        .await
        .map_err(|e| format!("Service {SERVICE}: {e}"))?;
    let slice: EndpointSlice = serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": SERVICE, "namespace": namespace,
            "labels": {"kubernetes.io/service-name": SERVICE,
                       "endpointslice.kubernetes.io/managed-by": "atoll-testkit"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [addr.ip().to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "http", "port": addr.port(), "protocol": "TCP"}],
    }))
    .map_err(|e| e.to_string())?;
    match Api::<EndpointSlice>::namespaced(client.clone(), namespace)
        .patch(SERVICE, &params, &Patch::Apply(&slice))
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 422 => Ok(false),
        Err(e) => Err(format!("EndpointSlice {SERVICE}: {e}")),
    }
}
