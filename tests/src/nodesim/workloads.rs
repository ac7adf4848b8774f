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

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, StatefulSet, StatefulSetStatus,
};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

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

fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// A short, stable hash of a pod template, in the alphabet Kubernetes uses for
/// generated names (no vowels, no look-alike digits).
pub fn template_hash(template: &PodTemplateSpec) -> String {
    let json = serde_json::to_string(template).unwrap_or_default();
    encode(fnv1a(json.as_bytes()), 10)
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

/// Keeps a condition's times when its status and reason did not change.
fn keep_times(
    previous: Option<&[DeploymentCondition]>,
    mut condition: DeploymentCondition,
) -> DeploymentCondition {
    if let Some(old) = previous
        .into_iter()
        .flatten()
        .find(|c| c.type_ == condition.type_)
        && old.status == condition.status
    {
        condition.last_transition_time = old.last_transition_time.clone();
        if old.reason == condition.reason && old.message == condition.message {
            condition.last_update_time = old.last_update_time.clone();
        }
    }
    condition
}

/// Plans one Deployment from the pods it controls.
pub fn plan_deployment(
    deployment: &Deployment,
    pods: &[&Pod],
    now: &Time,
) -> Plan<DeploymentStatus> {
    let mut plan = Plan::default();
    let namespace = deployment.namespace().unwrap_or_default();
    let name = deployment.name_any();
    let spec = deployment.spec.clone().unwrap_or_default();
    let desired = spec.replicas.unwrap_or(1).max(0);
    let hash = template_hash(&spec.template);
    let live: Vec<&Pod> = pods.iter().copied().filter(|p| !terminating(p)).collect();
    let (new, old): (Vec<&Pod>, Vec<&Pod>) = live
        .iter()
        .partition(|p| p.labels().get(TEMPLATE_HASH_LABEL) == Some(&hash));
    let ready_new = new.iter().filter(|p| pod_ready(p)).count() as i32;
    let recreate = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
    let rolling = spec
        .strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref());
    let max_unavailable = if recreate {
        desired
    } else {
        scaled(
            rolling.and_then(|r| r.max_unavailable.as_ref()),
            25,
            desired,
            false,
        )
    };

    if spec.paused != Some(true) {
        let blocked_by_old = recreate && !pods.iter().all(|p| controlled_new(p, &hash));
        if recreate && !old.is_empty() {
            plan.delete_pods.extend(old.iter().map(|p| p.name_any()));
        }
        if !blocked_by_old {
            let existing: BTreeSet<String> = pods.iter().map(|p| p.name_any()).collect();
            let missing = (desired - new.len() as i32).max(0) as usize;
            let owner = owner_reference("Deployment", &deployment.metadata);
            plan.create_pods = (0..)
                .map(|slot| format!("{name}-{hash}-{}", slot_suffix(&hash, slot)))
                .filter(|n| !existing.contains(n))
                .take(missing)
                .map(|pod_name| {
                    pod_from_template(
                        &spec.template,
                        pod_name,
                        &namespace,
                        owner.clone(),
                        &[(TEMPLATE_HASH_LABEL, hash.clone())],
                    )
                })
                .collect();
        }
        // Too many new pods: drop the not-ready ones first.
        let mut surplus: Vec<&&Pod> = new.iter().collect();
        surplus.sort_by_key(|p| (pod_ready(p), p.name_any()));
        let excess = (new.len() as i32 - desired).max(0) as usize;
        plan.delete_pods
            .extend(surplus.iter().take(excess).map(|p| p.name_any()));
        // Old pods go once the new ones carry the whole load.
        if !recreate && (ready_new >= desired || desired == 0) {
            plan.delete_pods.extend(old.iter().map(|p| p.name_any()));
        }
        plan.delete_pods.sort();
        plan.delete_pods.dedup();
    }

    let ready = live.iter().filter(|p| pod_ready(p)).count() as i32;
    let available_ok = ready >= desired - max_unavailable.min(desired);
    let complete = new.len() as i32 == desired && ready_new == desired && old.is_empty();
    let previous = deployment
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref());
    let condition = |type_: &str, ok: bool, reason: &str, message: String| {
        keep_times(
            previous,
            DeploymentCondition {
                type_: type_.to_owned(),
                status: if ok { "True" } else { "False" }.to_owned(),
                reason: Some(reason.to_owned()),
                message: Some(message),
                last_transition_time: Some(now.clone()),
                last_update_time: Some(now.clone()),
            },
        )
    };
    let conditions = vec![
        if available_ok {
            condition(
                "Available",
                true,
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".to_owned(),
            )
        } else {
            condition(
                "Available",
                false,
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".to_owned(),
            )
        },
        if complete {
            condition(
                "Progressing",
                true,
                "NewReplicaSetAvailable",
                format!("ReplicaSet \"{name}-{hash}\" has successfully progressed."),
            )
        } else {
            condition(
                "Progressing",
                true,
                "ReplicaSetUpdated",
                format!("ReplicaSet \"{name}-{hash}\" is progressing."),
            )
        },
    ];
    let opt = |n: i32| (n != 0).then_some(n);
    plan.status = DeploymentStatus {
        observed_generation: deployment.metadata.generation,
        replicas: opt(live.len() as i32),
        updated_replicas: opt(new.len() as i32),
        ready_replicas: opt(ready),
        available_replicas: opt(ready),
        unavailable_replicas: opt((desired - ready).max(0)),
        conditions: Some(conditions),
        ..DeploymentStatus::default()
    };
    plan
}

fn controlled_new(pod: &Pod, hash: &str) -> bool {
    pod.labels().get(TEMPLATE_HASH_LABEL).map(String::as_str) == Some(hash) && !terminating(pod)
}

/// The PVC name for claim template `template` of pod `ordinal`.
pub fn claim_name(template: &str, statefulset: &str, ordinal: i32) -> String {
    format!("{template}-{statefulset}-{ordinal}")
}

/// Plans one StatefulSet from the pods it controls and the names of the
/// PVCs in its namespace.
pub fn plan_statefulset(
    sts: &StatefulSet,
    pods: &[&Pod],
    pvcs: &BTreeSet<String>,
) -> Plan<StatefulSetStatus> {
    let mut plan = Plan::default();
    let namespace = sts.namespace().unwrap_or_default();
    let name = sts.name_any();
    let spec = sts.spec.clone().unwrap_or_default();
    let desired = spec.replicas.unwrap_or(1).max(0);
    let revision = format!("{name}-{}", template_hash(&spec.template));
    let parallel = spec.pod_management_policy.as_deref() == Some("Parallel");
    let on_delete = spec
        .update_strategy
        .as_ref()
        .and_then(|u| u.type_.as_deref())
        == Some("OnDelete");
    let partition = spec
        .update_strategy
        .as_ref()
        .and_then(|u| u.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0);
    let owner = owner_reference("StatefulSet", &sts.metadata);
    let claim_templates = spec.volume_claim_templates.clone().unwrap_or_default();
    let delete_claims_with_set = spec
        .persistent_volume_claim_retention_policy
        .as_ref()
        .and_then(|p| p.when_deleted.as_deref())
        == Some("Delete");

    let mut by_ordinal: BTreeMap<i32, &Pod> = BTreeMap::new();
    for pod in pods {
        if let Some(ord) = pod
            .name_any()
            .strip_prefix(&format!("{name}-"))
            .and_then(|o| o.parse::<i32>().ok())
        {
            by_ordinal.insert(ord, pod);
        }
    }

    // PVCs for every wanted ordinal.
    for ordinal in 0..desired {
        for template in &claim_templates {
            let claim = claim_name(&template.name_any(), &name, ordinal);
            if pvcs.contains(&claim) {
                continue;
            }
            let mut labels = template.metadata.labels.clone().unwrap_or_default();
            if let Some(selector) = spec.selector.match_labels.as_ref() {
                labels.extend(selector.clone());
            }
            plan.create_pvcs.push(PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim),
                    namespace: Some(namespace.clone()),
                    labels: Some(labels),
                    annotations: template.metadata.annotations.clone(),
                    owner_references: delete_claims_with_set.then(|| {
                        vec![OwnerReference {
                            controller: None,
                            ..owner.clone()
                        }]
                    }),
                    ..ObjectMeta::default()
                },
                spec: template.spec.clone(),
                status: None,
            });
        }
    }

    // Scale down, highest ordinal first.
    let surplus: Vec<&Pod> = by_ordinal
        .range(desired..)
        .rev()
        .map(|(_, p)| *p)
        .filter(|p| !terminating(p))
        .collect();
    if parallel {
        plan.delete_pods
            .extend(surplus.iter().map(|p| p.name_any()));
    } else if let Some(p) = surplus.first() {
        plan.delete_pods.push(p.name_any());
    }

    // Scale up, in order unless Parallel.
    for ordinal in 0..desired {
        match by_ordinal.get(&ordinal) {
            Some(pod) if terminating(pod) => {
                if !parallel {
                    break;
                }
            }
            Some(pod) => {
                if !parallel && !pod_ready(pod) {
                    break;
                }
            }
            None => {
                let pod_name = format!("{name}-{ordinal}");
                let mut pod = pod_from_template(
                    &spec.template,
                    pod_name.clone(),
                    &namespace,
                    owner.clone(),
                    &[
                        (REVISION_LABEL, revision.clone()),
                        ("statefulset.kubernetes.io/pod-name", pod_name.clone()),
                        ("apps.kubernetes.io/pod-index", ordinal.to_string()),
                    ],
                );
                if let Some(pod_spec) = pod.spec.as_mut() {
                    pod_spec.hostname = Some(pod_name.clone());
                    pod_spec.subdomain = spec.service_name.clone();
                    let volumes = pod_spec.volumes.get_or_insert_with(Vec::new);
                    for template in &claim_templates {
                        volumes.retain(|v| v.name != template.name_any());
                        volumes.push(Volume {
                            name: template.name_any(),
                            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                                claim_name: claim_name(&template.name_any(), &name, ordinal),
                                read_only: None,
                            }),
                            ..Volume::default()
                        });
                    }
                }
                plan.create_pods.push(pod);
                if !parallel {
                    break;
                }
            }
        }
    }

    // Rolling update: one pod at a time, highest ordinal first, only while
    // every wanted pod exists and is ready.
    let wanted: Vec<&Pod> = (0..desired)
        .filter_map(|o| by_ordinal.get(&o).copied())
        .collect();
    let settled =
        wanted.len() as i32 == desired && wanted.iter().all(|p| pod_ready(p) && !terminating(p));
    if !on_delete
        && settled
        && plan.delete_pods.is_empty()
        && let Some(outdated) = (partition..desired)
            .rev()
            .filter_map(|o| by_ordinal.get(&o))
            .find(|p| p.labels().get(REVISION_LABEL) != Some(&revision))
    {
        plan.delete_pods.push(outdated.name_any());
    }

    let live: Vec<&Pod> = pods.iter().copied().filter(|p| !terminating(p)).collect();
    let ready = live.iter().filter(|p| pod_ready(p)).count() as i32;
    let updated = live
        .iter()
        .filter(|p| p.labels().get(REVISION_LABEL) == Some(&revision))
        .count() as i32;
    let current_revision = if updated == live.len() as i32 {
        revision.clone()
    } else {
        sts.status
            .as_ref()
            .and_then(|s| s.current_revision.clone())
            .unwrap_or_else(|| revision.clone())
    };
    let opt = |n: i32| (n != 0).then_some(n);
    plan.status = StatefulSetStatus {
        observed_generation: sts.metadata.generation,
        replicas: live.len() as i32,
        ready_replicas: opt(ready),
        available_replicas: opt(ready),
        current_replicas: opt(updated),
        updated_replicas: opt(updated),
        current_revision: Some(current_revision),
        update_revision: Some(revision),
        collision_count: Some(0),
        ..StatefulSetStatus::default()
    };
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
