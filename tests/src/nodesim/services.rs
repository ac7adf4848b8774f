//! Services and Ingresses on loopback: each Service gets its own address
//! (see [`super::addr`]) and a [`ServiceProxy`] per declared TCP port, fed
//! with the addresses of its ready pods (a Service without a selector: the
//! ready addresses of its EndpointSlices, see
//! [`slice_endpoints`](super::endpointslices::slice_endpoints)); each
//! Ingress rule becomes a route of the ingress router.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::addr::{AddressPool, Block};
use super::endpointslices::{SlicesByService, has_selector, slice_endpoints};
use super::ingress::Route;
use super::probe::resolve_port;
use super::proxy::ServiceProxy;
use super::rewrite::ServiceResolver;
use super::workloads::pod_ready;

type Key = (String, String);

/// Service addresses and their proxies.
#[derive(Debug)]
pub struct ServiceTable {
    pool: AddressPool,
    ips: Mutex<HashMap<Key, Ipv4Addr>>,
    proxies: Mutex<HashMap<Key, BTreeMap<u16, ServiceProxy>>>,
}

impl Default for ServiceTable {
    fn default() -> Self {
        Self {
            pool: AddressPool::new(Block::Services),
            ips: Mutex::new(HashMap::new()),
            proxies: Mutex::new(HashMap::new()),
        }
    }
}

impl ServiceResolver for ServiceTable {
    fn resolve(&self, namespace: &str, name: &str, explicit: bool) -> Option<Ipv4Addr> {
        let mut ips = self.ips.lock().unwrap_or_else(|e| e.into_inner());
        let key = (namespace.to_owned(), name.to_owned());
        if let Some(ip) = ips.get(&key) {
            return Some(*ip);
        }
        if !explicit {
            return None;
        }
        // A `.svc` name certainly means a Service; reserve its address now
        // so the Service gets it when it appears.
        let ip = self.pool.allocate(&[])?;
        ips.insert(key, ip);
        Some(ip)
    }
}

fn tcp_ports(service: &Service) -> Vec<u16> {
    service
        .spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
        .filter_map(|p| u16::try_from(p.port).ok())
        .collect()
}

/// The endpoints of each port of `service`: the ready pods it selects,
/// addressed by their pod IP and the resolved target port.
pub fn endpoints(service: &Service, pods: &[&Pod]) -> BTreeMap<u16, Vec<SocketAddr>> {
    let mut out = BTreeMap::new();
    let Some(spec) = &service.spec else {
        return out;
    };
    let Some(selector) = spec.selector.as_ref().filter(|s| !s.is_empty()) else {
        return out;
    };
    let namespace = service.namespace();
    let selected: Vec<&Pod> = pods
        .iter()
        .copied()
        .filter(|p| p.namespace() == namespace && p.metadata.deletion_timestamp.is_none())
        .filter(|p| selector.iter().all(|(k, v)| p.labels().get(k) == Some(v)))
        .filter(|p| pod_ready(p))
        .collect();
    for port in spec.ports.iter().flatten() {
        let Ok(service_port) = u16::try_from(port.port) else {
            continue;
        };
        let target = port
            .target_port
            .clone()
            .unwrap_or(IntOrString::Int(port.port));
        let addrs = selected
            .iter()
            .filter_map(|pod| {
                let ip: Ipv4Addr = pod.status.as_ref()?.pod_ip.as_ref()?.parse().ok()?;
                let container_ports: Vec<_> = pod
                    .spec
                    .iter()
                    .flat_map(|s| s.containers.iter())
                    .flat_map(|c| c.ports.iter().flatten().cloned())
                    .collect();
                let port = resolve_port(&target, &container_ports)?;
                Some(SocketAddr::from((ip, port)))
            })
            .collect();
        out.insert(service_port, addrs);
    }
    out
}

impl ServiceTable {
    /// The address of a Service, if it has one.
    pub fn address(&self, namespace: &str, name: &str) -> Option<Ipv4Addr> {
        self.ips
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(namespace.to_owned(), name.to_owned()))
            .copied()
    }

    /// Makes the proxies match `services` and feeds them the ready pods of
    /// their namespace (`pods` by namespace), or for a Service without a
    /// selector the ready addresses of its EndpointSlices (`slices`).
    /// Services that already have an address are only revisited when
    /// `revisit` says so. With `serve` false, Services only get addresses
    /// (instant mode).
    pub async fn sync(
        &self,
        services: &[&Service],
        pods: &HashMap<String, Vec<&Pod>>,
        slices: &SlicesByService<'_>,
        serve: bool,
        revisit: impl Fn(&Service) -> bool,
    ) {
        let wanted: HashMap<Key, &Service> = services
            .iter()
            .map(|s| ((s.namespace().unwrap_or_default(), s.name_any()), *s))
            .collect();
        // Gone: drop proxies and addresses.
        {
            let mut proxies = self.proxies.lock().unwrap_or_else(|e| e.into_inner());
            proxies.retain(|k, _| wanted.contains_key(k));
            let mut ips = self.ips.lock().unwrap_or_else(|e| e.into_inner());
            let pool = &self.pool;
            ips.retain(|k, ip| {
                let keep = wanted.contains_key(k);
                if !keep {
                    pool.release(*ip);
                }
                keep
            });
        }
        for (key, service) in wanted {
            let ports = tcp_ports(service);
            let ip = {
                let mut ips = self.ips.lock().unwrap_or_else(|e| e.into_inner());
                match ips.get(&key) {
                    Some(_) if !revisit(service) => continue,
                    Some(ip) => *ip,
                    None => {
                        let Some(ip) = self.pool.allocate(if serve { &ports } else { &[] }) else {
                            tracing::warn!(namespace = %key.0, service = %key.1, "no free loopback address");
                            continue;
                        };
                        ips.insert(key.clone(), ip);
                        ip
                    }
                }
            };
            if !serve {
                continue;
            }
            let current: Vec<u16> = self
                .proxies
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&key)
                .map(|p| p.keys().copied().collect())
                .unwrap_or_default();
            let mut bound = BTreeMap::new();
            for port in &ports {
                if current.contains(port) {
                    continue;
                }
                match ServiceProxy::bind(SocketAddr::from((ip, *port))).await {
                    Ok(proxy) => {
                        bound.insert(*port, proxy);
                    }
                    Err(error) => {
                        tracing::warn!(namespace = %key.0, service = %key.1, %ip, port, %error, "cannot listen for Service");
                    }
                }
            }
            let endpoints = if has_selector(service) {
                endpoints(service, pods.get(&key.0).map_or(&[][..], Vec::as_slice))
            } else {
                slice_endpoints(service, slices.get(&key).map_or(&[][..], Vec::as_slice))
            };
            let mut proxies = self.proxies.lock().unwrap_or_else(|e| e.into_inner());
            let entry = proxies.entry(key).or_default();
            entry.retain(|port, _| ports.contains(port));
            entry.extend(bound);
            for (port, proxy) in entry.iter() {
                proxy.set_endpoints(endpoints.get(port).cloned().unwrap_or_default());
            }
        }
    }

    /// Where a Service port listens: by number or by the port's name.
    pub fn backend(&self, service: Option<&Service>, port: &IntOrString) -> Option<SocketAddr> {
        let service = service?;
        let ip = self.address(
            &service.namespace().unwrap_or_default(),
            &service.name_any(),
        )?;
        let number = match port {
            IntOrString::Int(n) => u16::try_from(*n).ok()?,
            IntOrString::String(name) => service
                .spec
                .iter()
                .flat_map(|s| s.ports.iter().flatten())
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.port).ok())?,
        };
        Some(SocketAddr::from((ip, number)))
    }
}

/// The routes of one Ingress; `service` finds a Service in its namespace.
pub fn ingress_routes<'s>(
    ingress: &Ingress,
    service: impl Fn(&str) -> Option<&'s Service>,
    table: &ServiceTable,
) -> Vec<Route> {
    let mut routes = Vec::new();
    let Some(spec) = &ingress.spec else {
        return routes;
    };
    let backend_of = |b: &k8s_openapi::api::networking::v1::IngressBackend| {
        let svc = b.service.as_ref()?;
        let port = svc.port.as_ref()?;
        let port = match (&port.number, &port.name) {
            (Some(n), _) => IntOrString::Int(*n),
            (None, Some(name)) => IntOrString::String(name.clone()),
            (None, None) => return None,
        };
        table.backend(service(&svc.name), &port)
    };
    if let Some(default) = &spec.default_backend {
        routes.push(Route {
            host: String::new(),
            path: "/".to_owned(),
            exact: false,
            backend: backend_of(default),
        });
    }
    for rule in spec.rules.iter().flatten() {
        let host = rule.host.clone().unwrap_or_default().to_ascii_lowercase();
        for path in rule.http.iter().flat_map(|h| h.paths.iter()) {
            routes.push(Route {
                host: host.clone(),
                path: path.path.clone().unwrap_or_else(|| "/".to_owned()),
                exact: path.path_type == "Exact",
                backend: backend_of(&path.backend),
            });
        }
    }
    routes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, ip: &str, ready: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        }))
        .expect("pod")
    }

    #[test]
    fn endpoints_are_the_ready_selected_pods_on_the_target_port() {
        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}
        }))
        .expect("service");
        let a = pod("a", "127.64.0.1", true);
        let b = pod("b", "127.64.0.2", false);
        let eps = endpoints(&service, &[&a, &b]);
        assert_eq!(eps[&80], vec![SocketAddr::from(([127, 64, 0, 1], 8080))]);
    }
}
