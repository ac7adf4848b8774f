//! PVCs are directories, `<state>/pvc/<namespace>/<name>`: created (and,
//! in kubesim mode, marked Bound) while the claim exists, removed once it
//! is gone and no pod of this node uses it. In kubelet mode nodesim
//! provisions a PersistentVolume per claim and the real PV controller
//! binds them.

use std::collections::BTreeSet;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::ResourceExt;
use kube::api::Api;
use serde_json::json;

use super::informers::key_of;
use super::kubelet;
use super::node::{Node, PassScope};
use super::registration;
use super::status::patch_status;

impl Node {
    pub(super) async fn sync_pvcs(&self, scope: &PassScope) {
        if !scope.full() && scope.dirty.pvcs.is_empty() && !scope.dirty.volumes_released {
            return;
        }
        let pvcs = self.stores.pvcs.state();
        let mut wanted = BTreeSet::new();
        for pvc in &pvcs {
            let ns = pvc.namespace().unwrap_or_default();
            let dir = kubelet::pvc_dir(&self.config.state_dir, &ns, &pvc.name_any());
            wanted.insert(dir.clone());
            if pvc.metadata.deletion_timestamp.is_some()
                || (!scope.full() && !scope.dirty.pvcs.contains(&key_of(pvc.as_ref())))
            {
                continue;
            }
            if let Err(error) = std::fs::create_dir_all(&dir) {
                tracing::warn!(%error, dir = %dir.display(), "creating PVC directory failed");
                continue;
            }
            if !self.kubelet_only {
                self.bind_claim(pvc).await;
            }
        }
        if self.kubelet_only {
            registration::provision_volumes(
                &self.cluster,
                &self.config.node_name,
                &self.config.state_dir,
                &pvcs,
            )
            .await;
        }
        self.remove_released(&wanted);
    }

    /// Marks a claim Bound with the capacity it requests (kubesim mode; in
    /// kubelet mode the real PV controller binds it to nodesim's PV).
    async fn bind_claim(&self, pvc: &PersistentVolumeClaim) {
        let spec = pvc.spec.clone().unwrap_or_default();
        let capacity = spec
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .map(|q| json!({"storage": q}));
        let mut desired = json!({"phase": "Bound", "accessModes": spec.access_modes});
        if let Some(capacity) = capacity {
            desired["capacity"] = capacity;
        }
        let existing = pvc
            .status
            .as_ref()
            .and_then(|s| serde_json::to_value(s).ok());
        patch_status(
            Api::<PersistentVolumeClaim>::namespaced(
                self.client.clone(),
                &pvc.namespace().unwrap_or_default(),
            ),
            &pvc.name_any(),
            existing,
            desired,
            &[],
        )
        .await;
    }

    /// The claim directories of the pods this node runs.
    fn claims_in_use(&self) -> BTreeSet<PathBuf> {
        self.stores
            .pods
            .state()
            .iter()
            .filter(|p| p.uid().is_some_and(|u| self.runtimes.contains_key(&u)))
            .flat_map(|p| {
                let ns = p.namespace().unwrap_or_default();
                p.spec
                    .iter()
                    .flat_map(|s| s.volumes.iter().flatten())
                    .filter_map(|v| v.persistent_volume_claim.as_ref())
                    .map(|c| kubelet::pvc_dir(&self.config.state_dir, &ns, &c.claim_name))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Removes the directories of claims that are gone and unused, once no
    /// pod is stopping; a namespace's directory goes with its last claim.
    fn remove_released(&self, wanted: &BTreeSet<PathBuf>) {
        let in_use = self.claims_in_use();
        let root = self.config.state_dir.join("pvc");
        let Ok(namespaces) = std::fs::read_dir(&root) else {
            return;
        };
        for ns_dir in namespaces.flatten() {
            let Ok(claims) = std::fs::read_dir(ns_dir.path()) else {
                continue;
            };
            for claim in claims.flatten() {
                let path = claim.path();
                if !wanted.contains(&path)
                    && !in_use.contains(&path)
                    && self.stopping.is_empty()
                    && let Err(error) = std::fs::remove_dir_all(&path)
                {
                    tracing::warn!(%error, dir = %path.display(), "removing PVC directory failed");
                }
            }
            if self.stopping.is_empty() {
                let _ = std::fs::remove_dir(ns_dir.path());
            }
        }
    }
}
