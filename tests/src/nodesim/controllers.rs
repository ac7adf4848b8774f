//! The workload controllers' half of a pass (kubesim mode only): apply the
//! plans of [`workloads`](super::workloads) for the Deployments and
//! StatefulSets that changed, and collect the pods whose owner is gone.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Debug;
use std::sync::Arc;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams};
use kube::runtime::reflector::{self, Store};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::informers::Key;
use super::node::{Node, PassScope};
use super::status::{
    DEPLOYMENT_STATUS, STATEFULSET_STATUS, is_conflict_or_missing, patch_status, post_params,
};
use super::{process, workloads};

/// Pods by the uid of their controller.
pub(super) type ByOwner<'a> = HashMap<&'a str, Vec<&'a Pod>>;

/// What the controllers of both workload kinds have in common.
trait Workload:
    Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug
{
    /// The status fields the controller owns.
    const STATUS: &'static [&'static str];

    fn status_value(&self) -> Option<Value>;
}

impl Workload for Deployment {
    const STATUS: &'static [&'static str] = DEPLOYMENT_STATUS;

    fn status_value(&self) -> Option<Value> {
        self.status
            .as_ref()
            .and_then(|s| serde_json::to_value(s).ok())
    }
}

impl Workload for StatefulSet {
    const STATUS: &'static [&'static str] = STATEFULSET_STATUS;

    fn status_value(&self) -> Option<Value> {
        self.status
            .as_ref()
            .and_then(|s| serde_json::to_value(s).ok())
    }
}

/// The objects of `store` this pass concerns: all on a full pass, else the
/// dirty ones; never those being deleted.
fn concerned<K>(store: &Store<K>, dirty: &BTreeSet<Key>, full: bool) -> Vec<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone,
{
    let objects = if full {
        store.state()
    } else {
        dirty
            .iter()
            .filter_map(|(ns, name)| store.get(&reflector::ObjectRef::new(name).within(ns)))
            .collect()
    };
    objects
        .into_iter()
        .filter(|o| o.meta().deletion_timestamp.is_none())
        .collect()
}

impl Node {
    pub(super) async fn sync_deployments(&self, by_owner: &ByOwner<'_>, scope: &PassScope) {
        let now = process::now();
        let store = &self.stores.deployments;
        for deployment in concerned(store, &scope.dirty.deployments, scope.full()) {
            let owned = owned_by(by_owner, deployment.as_ref());
            let plan = workloads::plan_deployment(&deployment, &owned, &now);
            self.apply_plan(deployment.as_ref(), plan).await;
        }
    }

    pub(super) async fn sync_statefulsets(&self, by_owner: &ByOwner<'_>, scope: &PassScope) {
        let store = &self.stores.statefulsets;
        let sets = concerned(store, &scope.dirty.statefulsets, scope.full());
        if sets.is_empty() {
            return;
        }
        let mut claims_by_namespace: HashMap<String, BTreeSet<String>> = HashMap::new();
        for pvc in self.stores.pvcs.state() {
            claims_by_namespace
                .entry(pvc.namespace().unwrap_or_default())
                .or_default()
                .insert(pvc.name_any());
        }
        let no_claims = BTreeSet::new();
        for sts in sets {
            let ns = sts.namespace().unwrap_or_default();
            let owned = owned_by(by_owner, sts.as_ref());
            let claims = claims_by_namespace.get(&ns).unwrap_or(&no_claims);
            let plan = workloads::plan_statefulset(&sts, &owned, claims);
            self.apply_plan(sts.as_ref(), plan).await;
        }
    }

    /// Creates the plan's PVCs and pods and deletes its pods; writes the
    /// status only when no pod was created: the new pods' events bring the
    /// next pass, with a status that counts them (one write instead of two).
    async fn apply_plan<K: Workload, S: Serialize>(&self, object: &K, plan: workloads::Plan<S>) {
        let ns = object.namespace().unwrap_or_default();
        let pvc_api = Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), &ns);
        for pvc in &plan.create_pvcs {
            if let Err(error) = pvc_api.create(&post_params(), pvc).await
                && !is_conflict_or_missing(&error)
            {
                tracing::warn!(%error, pvc = %pvc.name_any(), "creating PVC failed");
            }
        }
        self.apply_pods(&ns, &plan.create_pods, &plan.delete_pods)
            .await;
        if !plan.create_pods.is_empty() {
            return;
        }
        let desired = serde_json::to_value(&plan.status).unwrap_or_default();
        patch_status(
            Api::<K>::namespaced(self.client.clone(), &ns),
            &object.name_any(),
            object.status_value(),
            desired,
            K::STATUS,
        )
        .await;
    }

    async fn apply_pods(&self, ns: &str, create: &[Pod], delete: &[String]) {
        let api = Api::<Pod>::namespaced(self.client.clone(), ns);
        for pod in create {
            if let Err(error) = api.create(&post_params(), pod).await
                && !is_conflict_or_missing(&error)
            {
                tracing::warn!(%error, pod = %pod.name_any(), "creating pod failed");
            }
        }
        for name in delete {
            if let Err(error) = api.delete(name, &DeleteParams::default()).await
                && !is_conflict_or_missing(&error)
            {
                tracing::warn!(%error, pod = %name, "deleting pod failed");
            }
        }
    }

    /// Deletes pods whose controlling Deployment or StatefulSet is gone, in
    /// case the API server does not collect garbage itself.
    pub(super) async fn collect_orphans(&self, pods: &[Arc<Pod>]) {
        let deployments: BTreeSet<String> = self
            .stores
            .deployments
            .state()
            .iter()
            .filter_map(|d| d.uid())
            .collect();
        let statefulsets: BTreeSet<String> = self
            .stores
            .statefulsets
            .state()
            .iter()
            .filter_map(|d| d.uid())
            .collect();
        for pod in pods {
            let orphaned = pod.owner_references().iter().any(|o| {
                o.controller == Some(true)
                    && ((o.kind == "Deployment" && !deployments.contains(&o.uid))
                        || (o.kind == "StatefulSet" && !statefulsets.contains(&o.uid)))
            });
            if orphaned && pod.metadata.deletion_timestamp.is_none() {
                let ns = pod.namespace().unwrap_or_default();
                self.apply_pods(&ns, &[], &[pod.name_any()]).await;
            }
        }
    }
}

/// The pods `object` controls.
fn owned_by<'a, K: Resource>(by_owner: &ByOwner<'a>, object: &K) -> Vec<&'a Pod> {
    let uid = object.uid().unwrap_or_default();
    by_owner.get(uid.as_str()).cloned().unwrap_or_default()
}
