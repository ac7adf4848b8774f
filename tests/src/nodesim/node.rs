//! The controller loop: one pass per batch of changes (or resync), each
//! doing the work of the workload controllers (kubesim mode), kubelet,
//! kube-proxy and the ingress controller for what changed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::Api;
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::addr::AddressPool;
use super::endpointslices;
use super::informers::{Dirty, Key, Stores, key_of};
use super::ingress::IngressRouter;
use super::kubelet::PodRuntime;
use super::status::patch_status;
use super::{NodeSimConfig, Shared, services};

/// The controller loop's state.
pub(super) struct Node {
    /// Kubelet's client: pods, their status and deletion, tokens.
    pub(super) client: Client,
    /// Everything else (the same client in kubesim mode).
    pub(super) cluster: Client,
    /// Kubelet only: the real controllers own the workloads.
    pub(super) kubelet_only: bool,
    pub(super) config: Arc<NodeSimConfig>,
    pub(super) shared: Arc<Shared>,
    pub(super) stores: Stores,
    pub(super) pod_pool: Arc<AddressPool>,
    pub(super) runtimes: HashMap<String, PodRuntime>,
    pub(super) stopping: HashMap<(String, String), JoinHandle<()>>,
    /// Woken by watch events.
    pub(super) changed: Arc<Notify>,
    /// Woken by container state changes (processes, probes).
    pub(super) containers_changed: Arc<Notify>,
    pub(super) dirty: Arc<Mutex<Dirty>>,
    pub(super) last_full: tokio::time::Instant,
    pub(super) router: Option<IngressRouter>,
}

/// The work of one pass.
pub(super) struct PassScope {
    pub(super) dirty: Dirty,
    /// Recompute the status of every pod with processes.
    pub(super) containers: bool,
}

impl PassScope {
    pub(super) fn full(&self) -> bool {
        self.dirty.full
    }
}

impl Node {
    pub(super) async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut containers = true;
        loop {
            let mut dirty =
                std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|e| e.into_inner()));
            if self.last_full.elapsed() >= self.config.resync {
                dirty.full = true;
            }
            if dirty.full {
                self.last_full = tokio::time::Instant::now();
            }
            self.pass(PassScope { dirty, containers }).await;
            containers = false;
            tokio::select! {
                () = self.changed.notified() => {}
                () = self.containers_changed.notified() => containers = true,
                () = tokio::time::sleep(self.config.resync) => {}
                _ = shutdown.changed() => break,
            }
        }
        let stops = self
            .runtimes
            .drain()
            .map(|(_, runtime)| runtime.stop())
            .collect::<Vec<_>>();
        futures::future::join_all(stops).await;
        for (_, task) in self.stopping.drain() {
            let _ = task.await;
        }
    }

    async fn pass(&mut self, scope: PassScope) {
        let pods = self.stores.pods.state();
        let mut by_owner: HashMap<&str, Vec<&Pod>> = HashMap::new();
        let mut by_namespace: HashMap<String, Vec<&Pod>> = HashMap::new();
        for pod in &pods {
            for owner in pod.owner_references() {
                if owner.controller == Some(true) {
                    by_owner.entry(owner.uid.as_str()).or_default().push(pod);
                }
            }
            by_namespace
                .entry(pod.namespace().unwrap_or_default())
                .or_default()
                .push(pod);
        }
        if !self.kubelet_only {
            self.sync_deployments(&by_owner, &scope).await;
            self.sync_statefulsets(&by_owner, &scope).await;
            if scope.full() {
                self.collect_orphans(&pods).await;
            }
        }
        self.sync_pods(&pods, &scope).await;
        let services = self.stores.services.state();
        let service_refs: Vec<&Service> = services.iter().map(AsRef::as_ref).collect();
        let dirty = &scope.dirty;
        let revisit = |service: &Service| {
            let key = key_of(service);
            scope.full()
                || dirty.services.contains(&key)
                || dirty.services.contains(&(key.0, String::new()))
        };
        let slices = self.stores.endpoint_slices.state();
        let slices_by_service = endpointslices::by_service(&slices);
        // The EndpointSlice controller's job, where nodesim serves pods
        // (not in instant mode, where nothing would answer).
        if !self.kubelet_only && self.config.serve_services {
            self.sync_endpoint_slices(&service_refs, &by_namespace, &slices_by_service, &revisit)
                .await;
        }
        self.shared
            .services
            .sync(
                &service_refs,
                &by_namespace,
                &slices_by_service,
                self.config.serve_services,
                revisit,
            )
            .await;
        if scope.full() || !dirty.ingresses.is_empty() || !dirty.services.is_empty() {
            self.sync_ingresses(&services, &scope).await;
        }
        self.sync_pvcs(&scope).await;
    }

    async fn sync_ingresses(&self, services: &[Arc<Service>], scope: &PassScope) {
        let Some(router) = &self.router else {
            return;
        };
        let by_key: HashMap<Key, &Service> = services
            .iter()
            .map(|s| (key_of(s.as_ref()), s.as_ref()))
            .collect();
        let mut routes = Vec::new();
        for ingress in self.stores.ingresses.state() {
            let ns = ingress.namespace().unwrap_or_default();
            let lookup = |name: &str| by_key.get(&(ns.clone(), name.to_owned())).copied();
            routes.extend(services::ingress_routes(
                &ingress,
                lookup,
                &self.shared.services,
            ));
            if !scope.full() && !scope.dirty.ingresses.contains(&key_of(ingress.as_ref())) {
                continue;
            }
            let desired = json!({
                "loadBalancer": {"ingress": [{
                    "ip": router.addr().ip().to_string(),
                    "ports": [{"port": router.addr().port(), "protocol": "TCP"}]
                }]}
            });
            let existing = ingress
                .status
                .as_ref()
                .and_then(|s| serde_json::to_value(s).ok());
            patch_status(
                Api::<Ingress>::namespaced(self.cluster.clone(), &ns),
                &ingress.name_any(),
                existing,
                desired,
                &["loadBalancer"],
            )
            .await;
        }
        router.set_routes(routes);
    }
}
