//! The watches nodesim works from: one reflector store per kind, and what
//! changed since the last pass ([`Dirty`]), so a pass does only the work
//! the changes call for.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::{NodeSimConfig, NodeSimError};

pub(super) struct Stores {
    pub(super) deployments: Store<Deployment>,
    pub(super) statefulsets: Store<StatefulSet>,
    pub(super) pods: Store<Pod>,
    pub(super) services: Store<Service>,
    pub(super) endpoint_slices: Store<EndpointSlice>,
    pub(super) ingresses: Store<Ingress>,
    pub(super) secrets: Store<Secret>,
    pub(super) config_maps: Store<ConfigMap>,
    pub(super) pvcs: Store<PersistentVolumeClaim>,
}

pub(super) type Key = (String, String);

pub(super) fn key_of<K: Resource>(object: &K) -> Key {
    (object.namespace().unwrap_or_default(), object.name_any())
}

/// What changed since the last pass, so a pass only does the expensive work
/// (plans, status comparisons, writes) for what it must; everything is
/// revisited by a full pass after a re-list and every `resync`.
#[derive(Debug, Default)]
pub(super) struct Dirty {
    pub(super) full: bool,
    pub(super) deployments: BTreeSet<Key>,
    pub(super) statefulsets: BTreeSet<Key>,
    pub(super) pods: BTreeSet<Key>,
    /// Services, or `(namespace, "")` for every Service of a namespace
    /// whose pods changed.
    pub(super) services: BTreeSet<Key>,
    pub(super) ingresses: BTreeSet<Key>,
    pub(super) pvcs: BTreeSet<Key>,
    /// Namespaces whose Secrets, ConfigMaps or PVCs changed: their waiting
    /// pods are retried.
    pub(super) config_namespaces: BTreeSet<String>,
    /// A pod stopped: PVC directories it held may go now.
    pub(super) volumes_released: bool,
}

impl Dirty {
    fn mark_pod(&mut self, pod: &Pod) {
        let (ns, name) = key_of(pod);
        for owner in pod.owner_references() {
            let owner_key = (ns.clone(), owner.name.clone());
            match owner.kind.as_str() {
                "Deployment" => self.deployments.insert(owner_key),
                "StatefulSet" => self.statefulsets.insert(owner_key),
                _ => false,
            };
        }
        self.services.insert((ns.clone(), String::new()));
        self.pods.insert((ns, name));
    }
}

/// How each kind marks what its changes affect.
pub(super) trait MarkDirty {
    fn mark(&self, dirty: &mut Dirty);
}

impl MarkDirty for Deployment {
    fn mark(&self, dirty: &mut Dirty) {
        dirty.deployments.insert(key_of(self));
    }
}

impl MarkDirty for StatefulSet {
    fn mark(&self, dirty: &mut Dirty) {
        dirty.statefulsets.insert(key_of(self));
    }
}

impl MarkDirty for Pod {
    fn mark(&self, dirty: &mut Dirty) {
        dirty.mark_pod(self);
    }
}

impl MarkDirty for Service {
    fn mark(&self, dirty: &mut Dirty) {
        dirty.services.insert(key_of(self));
    }
}

impl MarkDirty for EndpointSlice {
    /// The Service the slice names is revisited: its proxy (no selector)
    /// or its own slice (selector) may have to follow.
    fn mark(&self, dirty: &mut Dirty) {
        if let Some(service) = self.labels().get(super::endpointslices::SERVICE_NAME_LABEL) {
            dirty.services.insert((key_of(self).0, service.clone()));
        }
    }
}

impl MarkDirty for Ingress {
    fn mark(&self, dirty: &mut Dirty) {
        dirty.ingresses.insert(key_of(self));
    }
}

impl MarkDirty for Secret {
    fn mark(&self, dirty: &mut Dirty) {
        dirty.config_namespaces.insert(key_of(self).0);
    }
}

impl MarkDirty for ConfigMap {
    fn mark(&self, dirty: &mut Dirty) {
        dirty.config_namespaces.insert(key_of(self).0);
    }
}

impl MarkDirty for PersistentVolumeClaim {
    fn mark(&self, dirty: &mut Dirty) {
        let key = key_of(self);
        dirty.config_namespaces.insert(key.0.clone());
        dirty.pvcs.insert(key);
    }
}

/// A store that is ready and stays empty: the kinds kubelet mode leaves to
/// the real controllers.
fn empty_store<K>() -> Store<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let (reader, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    writer.apply_watcher_event(&watcher::Event::InitDone);
    reader
}

fn watch_all<K>(
    client: &Client,
    watch_config: watcher::Config,
    changed: &Arc<Notify>,
    dirty: &Arc<Mutex<Dirty>>,
) -> (Store<K>, JoinHandle<()>)
where
    K: Resource + MarkDirty + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(Api::<K>::all(client.clone()), watch_config))
        .default_backoff();
    let changed = changed.clone();
    let dirty = dirty.clone();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            {
                let mut dirty = dirty.lock().unwrap_or_else(|e| e.into_inner());
                match &event {
                    Ok(watcher::Event::Apply(o) | watcher::Event::Delete(o)) => o.mark(&mut dirty),
                    // A (re-)list may hide deletions: look at everything.
                    Ok(
                        watcher::Event::Init
                        | watcher::Event::InitApply(_)
                        | watcher::Event::InitDone,
                    ) => {
                        dirty.full = true;
                    }
                    Err(error) => {
                        tracing::debug!(%error, kind = %K::kind(&K::DynamicType::default()), "watch error");
                    }
                }
            }
            changed.notify_one();
        }
    });
    (reader, task)
}

impl Stores {
    /// Starts a watch per kind (kubelet mode: pods bound to the node only,
    /// and no workloads, Secrets or ConfigMaps, which the real controllers
    /// own or the node reads one by one); each event marks `dirty` and
    /// wakes `changed`.
    pub(super) fn watch(
        client: &Client,
        cluster: &Client,
        config: &NodeSimConfig,
        kubelet_only: bool,
        changed: &Arc<Notify>,
        dirty: &Arc<Mutex<Dirty>>,
    ) -> (Self, Vec<JoinHandle<()>>) {
        let mut watchers = Vec::new();
        let mut add = |task| watchers.push(task);
        let all = watcher::Config::default();
        let (deployments, statefulsets) = if kubelet_only {
            // The real controller manager owns the workloads.
            (empty_store(), empty_store())
        } else {
            let (deployments, t) = watch_all(cluster, all.clone(), changed, dirty);
            add(t);
            let (statefulsets, t) = watch_all(cluster, all.clone(), changed, dirty);
            add(t);
            (deployments, statefulsets)
        };
        // As kubelet: only the pods bound to this node (the Node authorizer
        // lets a node list pods with exactly this selector).
        let pod_config = if kubelet_only {
            watcher::Config::default().fields(&format!("spec.nodeName={}", config.node_name))
        } else {
            all.clone()
        };
        let (pods, t) = watch_all(client, pod_config, changed, dirty);
        add(t);
        let (services, t) = watch_all(cluster, all.clone(), changed, dirty);
        add(t);
        let (endpoint_slices, t) = watch_all(cluster, all.clone(), changed, dirty);
        add(t);
        let (ingresses, t) = watch_all(cluster, all.clone(), changed, dirty);
        add(t);
        let (secrets, config_maps) = if kubelet_only {
            // As kubelet: each pod's Secrets and ConfigMaps are read one by
            // one with the node's identity when it starts (see
            // `fetch_referenced`); waiting pods are retried every resync.
            (empty_store(), empty_store())
        } else {
            let (secrets, t) = watch_all(cluster, all.clone(), changed, dirty);
            add(t);
            let (config_maps, t) = watch_all(cluster, all.clone(), changed, dirty);
            add(t);
            (secrets, config_maps)
        };
        let (pvcs, t) = watch_all(cluster, all, changed, dirty);
        add(t);
        let stores = Self {
            deployments,
            statefulsets,
            pods,
            services,
            endpoint_slices,
            ingresses,
            secrets,
            config_maps,
            pvcs,
        };
        (stores, watchers)
    }

    /// Waits until every watch has delivered its first list.
    pub(super) async fn wait_ready(&self, limit: Duration) -> Result<(), NodeSimError> {
        macro_rules! ready {
            ($store:expr, $kind:literal) => {
                if tokio::time::timeout(limit, $store.wait_until_ready())
                    .await
                    .is_err()
                {
                    return Err(NodeSimError::InitialSync {
                        kind: $kind,
                        seconds: limit.as_secs(),
                    });
                }
            };
        }
        ready!(self.deployments, "deployments");
        ready!(self.statefulsets, "statefulsets");
        ready!(self.pods, "pods");
        ready!(self.services, "services");
        ready!(self.endpoint_slices, "endpointslices");
        ready!(self.ingresses, "ingresses");
        ready!(self.secrets, "secrets");
        ready!(self.config_maps, "configmaps");
        ready!(self.pvcs, "persistentvolumeclaims");
        Ok(())
    }
}
