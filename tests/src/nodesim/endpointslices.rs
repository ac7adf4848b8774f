//! EndpointSlices (`discovery.k8s.io/v1`), both ways:
//!
//! - **The EndpointSlice controller's job** (kubesim mode, and only where
//!   nodesim serves Services, not in instant mode): every Service with a
//!   non-empty selector gets one slice, [`slice_name`] (`<service>-<5
//!   characters>`, derived from the Service's uid, so stable), labelled
//!   [`SERVICE_NAME_LABEL`]` = <service>` and [`MANAGED_BY_LABEL`]` =
//!   `[`CONTROLLER`] as the real controller labels its own (plus the
//!   Service's labels), owned by the Service, `addressType: IPv4`, one
//!   endpoint per selected pod with an IP (address = pod IP,
//!   `conditions.ready` = pod ready and not terminating, `serving`,
//!   `terminating`, `targetRef` to the pod, `nodeName`), and the Service's
//!   ports with their names and the container ports they resolve to. It is
//!   written (server-side apply) only when it differs. Unlike the real
//!   controller, pods whose ports resolve differently from the first pod's
//!   are left out instead of getting a second slice. On a real API server
//!   the real controller does this (and cannot, for nodesim's loopback pod
//!   IPs, which the API refuses in a slice).
//! - **kube-proxy's reading** ([`slice_endpoints`]): a Service *without* a
//!   selector is served from the slices labelled with its name in its
//!   namespace, whoever wrote them: the addresses of endpoints whose
//!   `conditions.ready` is not false, on the port of the slice whose name
//!   (and protocol) is the Service port's (`""` for an unnamed port).

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::Value;

use super::FIELD_MANAGER;
use super::informers::Key;
use super::node::Node;
use super::probe::resolve_port;
use super::status::is_conflict_or_missing;
use super::workloads::{pod_ready, stable_suffix};

/// The label naming the Service a slice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label naming who manages a slice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// [`MANAGED_BY_LABEL`]'s value on the slices the EndpointSlice controller
/// (nodesim, on kubesim) writes.
pub const CONTROLLER: &str = "endpointslice-controller.k8s.io";
/// The label the real controller puts on the slices of a headless Service.
const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

/// Slices by the `(namespace, Service name)` their label names.
pub type SlicesByService<'a> = HashMap<Key, Vec<&'a EndpointSlice>>;

/// Groups `slices` by the Service their [`SERVICE_NAME_LABEL`] names
/// (slices without it belong to no Service).
pub fn by_service(slices: &[Arc<EndpointSlice>]) -> SlicesByService<'_> {
    let mut out: SlicesByService<'_> = HashMap::new();
    for slice in slices {
        if let Some(service) = slice.labels().get(SERVICE_NAME_LABEL) {
            let key = (slice.namespace().unwrap_or_default(), service.clone());
            out.entry(key).or_default().push(slice.as_ref());
        }
    }
    out
}

/// The name of the slice the controller keeps for `service`:
/// `<service>-<5 characters>`, the characters derived from its uid.
pub fn slice_name(service: &Service) -> String {
    let seed = service.uid().unwrap_or_else(|| {
        format!(
            "{}/{}",
            service.namespace().unwrap_or_default(),
            service.name_any()
        )
    });
    format!("{}-{}", service.name_any(), stable_suffix(&seed, 5))
}

fn selector(service: &Service) -> Option<&BTreeMap<String, String>> {
    service
        .spec
        .as_ref()?
        .selector
        .as_ref()
        .filter(|s| !s.is_empty())
}

/// Whether `service` has a non-empty selector (its slices are the
/// controller's; without one, someone else writes them).
pub fn has_selector(service: &Service) -> bool {
    selector(service).is_some()
}

fn terminal(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    matches!(phase, Some("Succeeded" | "Failed"))
}

/// The Service's ports as `pod` serves them, without those that do not
/// resolve (a named target port the pod does not declare).
fn resolved_ports(service: &Service, pod: &Pod) -> Vec<EndpointPort> {
    let container_ports: Vec<_> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten().cloned())
        .collect();
    let ports = service.spec.iter().flat_map(|s| s.ports.iter().flatten());
    ports
        .filter_map(|port| {
            let target = port
                .target_port
                .clone()
                .unwrap_or(IntOrString::Int(port.port));
            let number = resolve_port(&target, &container_ports)?;
            Some(EndpointPort {
                name: Some(port.name.clone().unwrap_or_default()),
                port: Some(i32::from(number)),
                protocol: Some(port.protocol.clone().unwrap_or_else(|| "TCP".to_owned())),
                app_protocol: port.app_protocol.clone(),
            })
        })
        .collect()
}

fn endpoint(pod: &Pod, ip: &str) -> Endpoint {
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let serving = pod_ready(pod);
    Endpoint {
        addresses: vec![ip.to_owned()],
        conditions: Some(EndpointConditions {
            ready: Some(serving && !terminating),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".to_owned()),
            namespace: pod.namespace(),
            name: Some(pod.name_any()),
            uid: pod.uid(),
            ..ObjectReference::default()
        }),
        ..Endpoint::default()
    }
}

fn labels(service: &Service) -> BTreeMap<String, String> {
    let reserved = [SERVICE_NAME_LABEL, MANAGED_BY_LABEL, HEADLESS_LABEL];
    let mut labels: BTreeMap<String, String> = service
        .labels()
        .iter()
        .filter(|(k, _)| !reserved.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let cluster_ip = service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref());
    if matches!(cluster_ip, None | Some("" | "None")) {
        labels.insert(HEADLESS_LABEL.to_owned(), String::new());
    }
    labels.insert(SERVICE_NAME_LABEL.to_owned(), service.name_any());
    labels.insert(MANAGED_BY_LABEL.to_owned(), CONTROLLER.to_owned());
    labels
}

/// The slice the controller keeps for `service`, listing the pods of
/// `pods` (any namespace) that it selects; `None` for a Service without a
/// selector.
pub fn desired_slice(service: &Service, pods: &[&Pod]) -> Option<EndpointSlice> {
    let selector = selector(service)?;
    let namespace = service.namespace();
    let mut selected: Vec<(&Pod, &str)> = pods
        .iter()
        .copied()
        .filter(|p| p.namespace() == namespace && !terminal(p))
        .filter(|p| selector.iter().all(|(k, v)| p.labels().get(k) == Some(v)))
        .filter_map(|p| {
            let ip = p.status.as_ref()?.pod_ip.as_deref()?;
            (!ip.is_empty()).then_some((p, ip))
        })
        .collect();
    selected.sort_by_key(|(p, _)| p.name_any());
    let ports = selected
        .first()
        .map(|(p, _)| resolved_ports(service, p))
        .unwrap_or_default();
    let endpoints = selected
        .iter()
        .filter(|(p, _)| resolved_ports(service, p) == ports)
        .map(|(p, ip)| endpoint(p, ip))
        .collect();
    Some(EndpointSlice {
        metadata: ObjectMeta {
            name: Some(slice_name(service)),
            namespace,
            labels: Some(labels(service)),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".to_owned(),
                kind: "Service".to_owned(),
                name: service.name_any(),
                uid: service.uid().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        address_type: "IPv4".to_owned(),
        endpoints,
        ports: Some(ports),
    })
}

fn value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Whether `existing` lacks what `desired` says: its labels, owner,
/// address type, endpoints or ports (labels others added stay).
pub fn needs_write(existing: Option<&EndpointSlice>, desired: &EndpointSlice) -> bool {
    let Some(existing) = existing else {
        return true;
    };
    let labels_kept = desired
        .labels()
        .iter()
        .all(|(k, v)| existing.labels().get(k) == Some(v));
    let owned = desired.owner_references().iter().all(|o| {
        existing
            .owner_references()
            .iter()
            .any(|e| e.uid == o.uid && e.controller == o.controller)
    });
    !labels_kept
        || !owned
        || existing.address_type != desired.address_type
        || value(&existing.endpoints) != value(&desired.endpoints)
        || value(&existing.ports.clone().unwrap_or_default())
            != value(&desired.ports.clone().unwrap_or_default())
}

/// The endpoints of each TCP port of `service` read from `slices` (its
/// own): the IPv4 addresses of endpoints whose `conditions.ready` is not
/// false, on the port of the slice named as the Service port (`""` when
/// unnamed) with its protocol.
pub fn slice_endpoints(
    service: &Service,
    slices: &[&EndpointSlice],
) -> BTreeMap<u16, Vec<SocketAddr>> {
    let mut out = BTreeMap::new();
    for port in service.spec.iter().flat_map(|s| s.ports.iter().flatten()) {
        let Ok(service_port) = u16::try_from(port.port) else {
            continue;
        };
        let name = port.name.as_deref().unwrap_or_default();
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        let mut addrs = Vec::new();
        for slice in slices.iter().filter(|s| s.address_type == "IPv4") {
            let number = slice
                .ports
                .iter()
                .flatten()
                .find(|p| {
                    p.name.as_deref().unwrap_or_default() == name
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .and_then(|p| p.port)
                .and_then(|n| u16::try_from(n).ok());
            let Some(number) = number else {
                continue;
            };
            let ready = slice
                .endpoints
                .iter()
                .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false));
            for address in ready.flat_map(|e| e.addresses.iter()) {
                if let Ok(ip) = address.parse::<Ipv4Addr>() {
                    addrs.push(SocketAddr::from((ip, number)));
                }
            }
        }
        addrs.sort();
        addrs.dedup();
        out.insert(service_port, addrs);
    }
    out
}

impl Node {
    /// The EndpointSlice controller's pass: for each Service `revisit`
    /// names that has a selector, writes its slice if it differs.
    pub(super) async fn sync_endpoint_slices(
        &self,
        services: &[&Service],
        pods: &HashMap<String, Vec<&Pod>>,
        slices: &SlicesByService<'_>,
        revisit: impl Fn(&Service) -> bool,
    ) {
        let no_pods = Vec::new();
        let params = PatchParams::apply(FIELD_MANAGER).force();
        for service in services.iter().copied() {
            if service.metadata.deletion_timestamp.is_some() || !revisit(service) {
                continue;
            }
            let namespace = service.namespace().unwrap_or_default();
            let in_namespace = pods.get(&namespace).unwrap_or(&no_pods);
            let Some(desired) = desired_slice(service, in_namespace) else {
                continue;
            };
            let name = desired.name_any();
            let existing = slices
                .get(&(namespace.clone(), service.name_any()))
                .and_then(|s| s.iter().copied().find(|s| s.name_any() == name));
            if !needs_write(existing, &desired) {
                continue;
            }
            let api = Api::<EndpointSlice>::namespaced(self.client.clone(), &namespace);
            if let Err(error) = api.patch(&name, &params, &Patch::Apply(&desired)).await
                && !is_conflict_or_missing(&error)
            {
                tracing::warn!(%error, %namespace, slice = %name, "writing EndpointSlice failed");
            }
        }
    }
}

#[cfg(test)]
mod tests;
