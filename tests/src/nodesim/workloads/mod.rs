//! The Deployment and StatefulSet controllers, as pure plans: given a
//! workload and the pods (and PVCs) it owns, which pods to create or delete
//! and what its status is. The controller loop applies the plans.
//!
//! Simplifications, all visible in behaviour a test can rely on:
//! - Deployments own their pods directly (no ReplicaSets). Pod names are
//!   `<deployment>-<template hash>-<slot>`, deterministic, so a create
//!   repeated on a stale cache is refused as AlreadyExists instead of making a
//!   duplicate.
//! - A RollingUpdate starts all new pods at once and removes the old ones
//!   when enough new ones are ready (`maxUnavailable`); `Recreate` removes
//!   the old pods first.
//! - StatefulSets honour `OrderedReady`/`Parallel`, `RollingUpdate`
//!   (highest ordinal first, `partition`) and `OnDelete`.

mod deployment;
mod statefulset;

use std::hash::{Hash, Hasher};

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub use deployment::plan_deployment;
pub use statefulset::{claim_name, plan_statefulset};

/// Label carrying a Deployment pod's template hash.
pub const TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
/// Label carrying a StatefulSet pod's revision.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// What to do for one workload.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan<S> {
    /// Pods to create.
    pub create_pods: Vec<Pod>,
    /// Names of pods to delete.
    pub delete_pods: Vec<String>,
    /// PVCs to create (StatefulSets).
    pub create_pvcs: Vec<PersistentVolumeClaim>,
    /// The workload's status.
    pub status: S,
}

/// Whether the pod's `Ready` condition is true.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub(super) fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// A short, stable hash of a pod template, in the alphabet Kubernetes uses for
/// generated names (no vowels, no look-alike digits).
pub fn template_hash(template: &PodTemplateSpec) -> String {
    let json = serde_json::to_string(template).unwrap_or_default();
    encode(fnv1a(json.as_bytes()), 10)
}

/// `len` characters of that alphabet derived from `seed`: the same seed
/// always gives the same characters (a deterministic `generateName` suffix).
pub fn stable_suffix(seed: &str, len: usize) -> String {
    encode(fnv1a(seed.as_bytes()), len)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

fn encode(mut n: u64, len: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut out = String::with_capacity(len);
    for _ in 0..len {
        out.push(ALPHABET[(n % ALPHABET.len() as u64) as usize] as char);
        n /= ALPHABET.len() as u64;
    }
    out
}

fn slot_suffix(hash: &str, slot: usize) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (hash, slot).hash(&mut h);
    encode(fnv1a(&h.finish().to_le_bytes()), 5)
}

fn owner_reference(kind: &str, meta: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".to_owned(),
        kind: kind.to_owned(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Whether `pod` is controlled by the object with `uid`.
pub fn controlled_by(pod: &Pod, uid: &str) -> bool {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.uid == uid)
}

fn pod_from_template(
    template: &PodTemplateSpec,
    name: String,
    namespace: &str,
    owner: OwnerReference,
    extra_labels: &[(&str, String)],
) -> Pod {
    let mut labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    for (k, v) in extra_labels {
        labels.insert((*k).to_owned(), v.clone());
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels),
            annotations: template
                .metadata
                .as_ref()
                .and_then(|m| m.annotations.clone()),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

fn scaled(value: Option<&IntOrString>, default_percent: i32, total: i32, round_up: bool) -> i32 {
    match value {
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => {
            let pct: i32 = s.trim_end_matches('%').parse().unwrap_or(default_percent);
            percent(total, pct, round_up)
        }
        None => percent(total, default_percent, round_up),
    }
}

fn percent(total: i32, pct: i32, round_up: bool) -> i32 {
    let product = total * pct;
    if round_up {
        (product + 99) / 100
    } else {
        product / 100
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kube::ResourceExt;
    use serde_json::json;

    use super::*;

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
    }

    fn deployment(replicas: i32, image: &str) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "d-1", "generation": 2},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "app", "image": image}]}
                }
            }
        }))
        .expect("deployment")
    }

    fn ready(mut pod: Pod, ready: bool) -> Pod {
        pod.metadata.uid = Some(format!("uid-{}", pod.name_any()));
        pod.status = Some(
            serde_json::from_value(json!({"conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}))
                .expect("status"),
        );
        pod
    }

    #[test]
    fn a_deployment_creates_its_pods_and_reports_availability_from_readiness() {
        let d = deployment(2, "app:1");
        let plan = plan_deployment(&d, &[], &now());
        assert_eq!(plan.create_pods.len(), 2);
        assert!(plan.delete_pods.is_empty());
        let hash = template_hash(&d.spec.as_ref().expect("spec").template);
        let pod = &plan.create_pods[0];
        assert!(pod.name_any().starts_with(&format!("web-{hash}-")));
        assert_eq!(pod.labels().get("app").map(String::as_str), Some("web"));
        assert!(controlled_by(pod, "d-1"));
        assert_ne!(
            plan.create_pods[0].name_any(),
            plan.create_pods[1].name_any()
        );
        let status = &plan.status;
        assert_eq!(status.observed_generation, Some(2));
        let available = &status.conditions.as_ref().expect("conditions")[0];
        assert_eq!(
            (available.type_.as_str(), available.status.as_str()),
            ("Available", "False")
        );

        let pods: Vec<Pod> = plan
            .create_pods
            .iter()
            .cloned()
            .map(|p| ready(p, true))
            .collect();
        let refs: Vec<&Pod> = pods.iter().collect();
        let plan = plan_deployment(&d, &refs, &now());
        assert!(plan.create_pods.is_empty() && plan.delete_pods.is_empty());
        assert_eq!(plan.status.ready_replicas, Some(2));
        assert_eq!(
            plan.status.conditions.as_ref().expect("conditions")[0].status,
            "True"
        );
    }

    #[test]
    fn a_template_change_rolls_and_old_pods_go_when_new_ones_are_ready() {
        let v1 = deployment(1, "app:1");
        let old: Vec<Pod> = plan_deployment(&v1, &[], &now())
            .create_pods
            .into_iter()
            .map(|p| ready(p, true))
            .collect();
        let v2 = deployment(1, "app:2");
        let plan = plan_deployment(&v2, &[&old[0]], &now());
        assert_eq!(plan.create_pods.len(), 1);
        assert!(
            plan.delete_pods.is_empty(),
            "old pod stays until the new one is ready"
        );
        let new = ready(plan.create_pods[0].clone(), false);
        let plan = plan_deployment(&v2, &[&old[0], &new], &now());
        assert!(plan.create_pods.is_empty() && plan.delete_pods.is_empty());
        let new = ready(new, true);
        let plan = plan_deployment(&v2, &[&old[0], &new], &now());
        assert_eq!(plan.delete_pods, vec![old[0].name_any()]);
        let plan = plan_deployment(&deployment(0, "app:2"), &[&new], &now());
        assert_eq!(plan.delete_pods, vec![new.name_any()], "scale to zero");
    }

    fn statefulset(replicas: i32) -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": "db", "namespace": "ns", "uid": "s-1", "generation": 1},
            "spec": {
                "replicas": replicas,
                "serviceName": "db",
                "selector": {"matchLabels": {"app": "db"}},
                "template": {
                    "metadata": {"labels": {"app": "db"}},
                    "spec": {"containers": [{"name": "pg", "image": "postgres:16"}]}
                },
                "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]
            }
        }))
        .expect("statefulset")
    }

    #[test]
    fn a_statefulset_creates_claims_and_pods_in_order() {
        let sts = statefulset(2);
        let plan = plan_statefulset(&sts, &[], &BTreeSet::new());
        let claims: Vec<String> = plan.create_pvcs.iter().map(|c| c.name_any()).collect();
        assert_eq!(claims, ["data-db-0", "data-db-1"]);
        assert_eq!(plan.create_pods.len(), 1, "OrderedReady: one at a time");
        let pod0 = &plan.create_pods[0];
        assert_eq!(pod0.name_any(), "db-0");
        let volume = &pod0
            .spec
            .as_ref()
            .expect("spec")
            .volumes
            .as_ref()
            .expect("volumes")[0];
        assert_eq!(
            volume
                .persistent_volume_claim
                .as_ref()
                .expect("pvc")
                .claim_name,
            "data-db-0"
        );

        let pvcs: BTreeSet<String> = claims.into_iter().collect();
        let pod0 = ready(pod0.clone(), false);
        let plan = plan_statefulset(&sts, &[&pod0], &pvcs);
        assert!(plan.create_pods.is_empty(), "waits for db-0 to be ready");
        let pod0 = ready(pod0, true);
        let plan = plan_statefulset(&sts, &[&pod0], &pvcs);
        assert_eq!(plan.create_pods[0].name_any(), "db-1");
        let plan = plan_statefulset(&statefulset(0), &[&pod0], &pvcs);
        assert_eq!(plan.delete_pods, ["db-0"]);
        assert!(plan.create_pvcs.is_empty(), "claims are kept");
    }
}
