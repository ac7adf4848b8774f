//! A sleeping tenant's routing (#20): its Ingress keeps its host, TLS and
//! class, and only its backend changes, from the instance's Service to
//! `wake-gate`, a Service without selector in the tenant's namespace whose
//! one EndpointSlice lists the wake gate's ready pods (copied by the
//! operator from the gate's own Service). Every ingress controller routes
//! to a Service's endpoints, so this works with any of them; once the
//! tenant is awake the backend is the instance's Service again and its
//! traffic no longer passes through the gate.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};

use super::{Children, FIELD_MANAGER, INSTANCE_SERVICE_PORT, TenantContext};

/// Name of the Service and EndpointSlice that route a sleeping tenant's
/// host to the wake gate.
pub const WAKE_GATE: &str = "wake-gate";
/// The label tying an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label naming who manages an EndpointSlice.
pub const SLICE_MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";

/// Name of the RoleBinding that lets the operator list a sleeping-capable
/// tenant's pods (their activity).
pub const ACTIVITY_ROLE_BINDING: &str = "operator-activity";

/// For a Tenant with `spec.idle`: the operator's service account may list
/// pods in this namespace (the instance pods whose activity it reads), by
/// the chart's ClusterRole bound here only; `None` otherwise.
pub fn activity_role_binding(ctx: &TenantContext<'_>) -> Option<RoleBinding> {
    ctx.tenant.spec.idle.as_ref()?;
    let (namespace, name) = ctx
        .config
        .activity_reader
        .split_once('/')
        .unwrap_or(("atoll-system", ctx.config.activity_reader.as_str()));
    Some(RoleBinding {
        metadata: ctx.meta(ACTIVITY_ROLE_BINDING, None),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "ClusterRole".to_owned(),
            name: ctx.config.activity_cluster_role.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: name.to_owned(),
            namespace: Some(namespace.to_owned()),
            api_group: None,
        }]),
    })
}

/// The wake gate's ready pods, as its Service's EndpointSlices list them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GateEndpoints {
    /// Pod addresses.
    pub addresses: Vec<String>,
    /// The port the gate listens on.
    pub port: i32,
}

/// How the sleep shapes the children.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sleep {
    /// The instance is scaled to zero (asleep, not yet waking).
    pub instance_stopped: bool,
    /// The Dedicated database is scaled to zero too.
    pub database_stopped: bool,
}

/// Shapes `children` for a tenant that sleeps or wakes: workloads scaled
/// to zero as `sleep` says, the Ingress's backend on the gate, and the
/// gate's Service and EndpointSlice.
pub fn shape_for_sleep(
    ctx: &TenantContext<'_>,
    sleep: Sleep,
    gate: &GateEndpoints,
    children: &mut Children,
) {
    if sleep.instance_stopped
        && let Some(spec) = children.instance_deployment.spec.as_mut()
    {
        spec.replicas = Some(0);
    }
    if sleep.database_stopped
        && let Some(spec) = children
            .database_stateful_set
            .as_mut()
            .and_then(|s| s.spec.as_mut())
    {
        spec.replicas = Some(0);
    }
    let backends = children
        .instance_ingress
        .spec
        .iter_mut()
        .flat_map(|s| s.rules.iter_mut().flatten())
        .flat_map(|r| r.http.iter_mut())
        .flat_map(|h| h.paths.iter_mut())
        .filter_map(|p| p.backend.service.as_mut());
    for backend in backends {
        WAKE_GATE.clone_into(&mut backend.name);
    }
    children.wake_gate = Some((wake_gate_service(ctx), wake_gate_endpoints(ctx, gate)));
}

/// The Service the Ingress routes a sleeping tenant's host to: no
/// selector, its endpoints are [`wake_gate_endpoints`].
pub fn wake_gate_service(ctx: &TenantContext<'_>) -> Service {
    Service {
        metadata: ctx.meta(WAKE_GATE, Some(WAKE_GATE)),
        spec: Some(ServiceSpec {
            ports: Some(vec![ServicePort {
                name: Some("http".to_owned()),
                port: INSTANCE_SERVICE_PORT,
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The wake gate's ready pods as the endpoints of the tenant's `wake-gate`
/// Service (none while the gate has no ready pod: the ingress controller
/// then answers 503 itself).
pub fn wake_gate_endpoints(ctx: &TenantContext<'_>, gate: &GateEndpoints) -> EndpointSlice {
    let mut meta = ctx.meta(WAKE_GATE, Some(WAKE_GATE));
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(SERVICE_NAME_LABEL.to_owned(), WAKE_GATE.to_owned());
    labels.insert(SLICE_MANAGED_BY_LABEL.to_owned(), FIELD_MANAGER.to_owned());
    let ipv6 = gate.addresses.iter().any(|a| a.contains(':'));
    EndpointSlice {
        metadata: meta,
        address_type: if ipv6 { "IPv6" } else { "IPv4" }.to_owned(),
        endpoints: gate
            .addresses
            .iter()
            .map(|address| Endpoint {
                addresses: vec![address.clone()],
                conditions: Some(EndpointConditions {
                    ready: Some(true),
                    ..EndpointConditions::default()
                }),
                ..Endpoint::default()
            })
            .collect(),
        ports: Some(vec![EndpointPort {
            name: Some("http".to_owned()),
            port: Some(gate.port),
            protocol: Some("TCP".to_owned()),
            ..EndpointPort::default()
        }]),
    }
}

/// The gate's ready endpoints from its Service's EndpointSlices (ready
/// addresses of the port named `http`, or the only port), sorted so that
/// the same pods give the same slice.
pub fn gate_endpoints(slices: &[EndpointSlice]) -> GateEndpoints {
    let mut addresses = Vec::new();
    let mut port = None;
    for slice in slices {
        let ports = slice.ports.iter().flatten();
        let named = ports
            .clone()
            .find(|p| p.name.as_deref() == Some("http"))
            .or_else(|| ports.clone().next());
        let Some(number) = named.and_then(|p| p.port) else {
            continue;
        };
        port.get_or_insert(number);
        for endpoint in &slice.endpoints {
            let ready = endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                .unwrap_or(true);
            if ready {
                addresses.extend(endpoint.addresses.iter().cloned());
            }
        }
    }
    addresses.sort();
    addresses.dedup();
    GateEndpoints {
        addresses,
        port: port.unwrap_or(8080),
    }
}
