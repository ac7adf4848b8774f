//! What the wake gate knows, pure: which Tenant a host belongs to, where
//! it stands, and where its instance's ready pods are.

use std::net::SocketAddr;

use atoll_crds::Tenant;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

/// Where a tenant stands for the gate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// `spec.suspended`: answered "suspended", never woken.
    Suspended,
    /// Asleep or waking (`status.idle.sleepingSince`).
    Sleeping {
        /// Whether the gate (or someone) already asked for this wake: the
        /// wake annotation is newer than the sleep.
        wake_requested: bool,
    },
    /// Awake: its requests are forwarded as soon as its pods are ready.
    Awake,
}

/// The tenant a request is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// `metadata.name`.
    pub name: String,
    /// Its namespace (`status.namespace`).
    pub namespace: String,
    /// Where it stands.
    pub standing: Standing,
}

/// The host part of a URL or Host header, lower-case, without port.
pub fn host_of(text: &str) -> String {
    let rest = text.split_once("://").map_or(text, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// The Tenant served at `host` (by its `status.url`), if any.
pub fn find<'a>(tenants: impl IntoIterator<Item = &'a Tenant>, host: &str) -> Option<Target> {
    let host = host_of(host);
    tenants.into_iter().find_map(|tenant| {
        let status = tenant.status.as_ref()?;
        if tenant.metadata.deletion_timestamp.is_some() || host_of(status.url.as_deref()?) != host {
            return None;
        }
        let standing = if tenant.spec.suspended {
            Standing::Suspended
        } else {
            match status.idle.as_ref().and_then(|i| i.sleeping_since.as_ref()) {
                Some(since) => Standing::Sleeping {
                    wake_requested: crate::idle::wake_request(tenant)
                        .is_some_and(|(at, _)| at > since.0),
                },
                None => Standing::Awake,
            }
        };
        Some(Target {
            name: tenant.name_any(),
            namespace: status.namespace.clone()?,
            standing,
        })
    })
}

/// The ready instance pods of a namespace (pod IP and the container port
/// named `http`), from the gate's cache of instance pods.
pub fn ready_instance(
    pods: impl IntoIterator<Item = impl AsRef<Pod>>,
    namespace: &str,
) -> Vec<SocketAddr> {
    instance_addrs(pods, namespace, true)
}

/// The instance pods of a namespace that have an address but are not
/// Ready yet: the gate asks them itself (`/readyz`) rather than wait for
/// the kubelet's next readiness probe, as a wake is that much shorter.
pub fn starting_instance(
    pods: impl IntoIterator<Item = impl AsRef<Pod>>,
    namespace: &str,
) -> Vec<SocketAddr> {
    instance_addrs(pods, namespace, false)
}

fn instance_addrs(
    pods: impl IntoIterator<Item = impl AsRef<Pod>>,
    namespace: &str,
    want_ready: bool,
) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = pods
        .into_iter()
        .filter_map(|pod| {
            let pod = pod.as_ref();
            if pod.metadata.namespace.as_deref() != Some(namespace)
                || pod.metadata.deletion_timestamp.is_some()
            {
                return None;
            }
            let status = pod.status.as_ref()?;
            let ready = status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            let ip: std::net::IpAddr = status.pod_ip.as_deref()?.parse().ok()?;
            let port = pod
                .spec
                .iter()
                .flat_map(|s| s.containers.iter())
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| p.name.as_deref() == Some("http"))
                .and_then(|p| u16::try_from(p.container_port).ok())?;
            (ready == want_ready).then_some(SocketAddr::new(ip, port))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Whether a request wants a page (a browser navigating), not data.
pub fn wants_html(method: &axum::http::Method, accept: Option<&str>) -> bool {
    method == axum::http::Method::GET && accept.is_some_and(|a| a.contains("text/html"))
}

#[cfg(test)]
#[path = "directory_tests.rs"]
mod tests;
