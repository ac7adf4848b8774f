//! The StatefulSet controller's plan.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;

use super::{
    Plan, REVISION_LABEL, owner_reference, pod_from_template, pod_ready, template_hash, terminating,
};

/// The PVC name for claim template `template` of pod `ordinal`.
pub fn claim_name(template: &str, statefulset: &str, ordinal: i32) -> String {
    format!("{template}-{statefulset}-{ordinal}")
}

/// One StatefulSet and the pods it controls, as a plan sees them.
struct Set<'a> {
    sts: &'a StatefulSet,
    spec: StatefulSetSpec,
    namespace: String,
    name: String,
    desired: i32,
    revision: String,
    parallel: bool,
    owner: OwnerReference,
    /// Controlled pods by ordinal, terminating ones too.
    by_ordinal: BTreeMap<i32, &'a Pod>,
}

/// Plans one StatefulSet from the pods it controls and the names of the
/// PVCs in its namespace.
pub fn plan_statefulset(
    sts: &StatefulSet,
    pods: &[&Pod],
    pvcs: &BTreeSet<String>,
) -> Plan<StatefulSetStatus> {
    let spec = sts.spec.clone().unwrap_or_default();
    let name = sts.name_any();
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
    let set = Set {
        sts,
        namespace: sts.namespace().unwrap_or_default(),
        desired: spec.replicas.unwrap_or(1).max(0),
        revision: format!("{name}-{}", template_hash(&spec.template)),
        parallel: spec.pod_management_policy.as_deref() == Some("Parallel"),
        owner: owner_reference("StatefulSet", &sts.metadata),
        name,
        spec,
        by_ordinal,
    };
    let mut plan = Plan {
        create_pvcs: set.missing_claims(pvcs),
        ..Plan::default()
    };
    set.scale_down(&mut plan);
    set.scale_up(&mut plan);
    set.roll(&mut plan);
    plan.status = set.status(pods);
    plan
}

impl Set<'_> {
    /// PVCs for every wanted ordinal; owned by the set (so collected with
    /// it) when its retention policy says `whenDeleted: Delete`.
    fn missing_claims(&self, pvcs: &BTreeSet<String>) -> Vec<PersistentVolumeClaim> {
        let delete_claims_with_set = self
            .spec
            .persistent_volume_claim_retention_policy
            .as_ref()
            .and_then(|p| p.when_deleted.as_deref())
            == Some("Delete");
        let mut claims = Vec::new();
        for ordinal in 0..self.desired {
            for template in self.spec.volume_claim_templates.iter().flatten() {
                let claim = claim_name(&template.name_any(), &self.name, ordinal);
                if pvcs.contains(&claim) {
                    continue;
                }
                let mut labels = template.metadata.labels.clone().unwrap_or_default();
                if let Some(selector) = self.spec.selector.match_labels.as_ref() {
                    labels.extend(selector.clone());
                }
                let owner = OwnerReference {
                    controller: None,
                    ..self.owner.clone()
                };
                claims.push(PersistentVolumeClaim {
                    metadata: ObjectMeta {
                        name: Some(claim),
                        namespace: Some(self.namespace.clone()),
                        labels: Some(labels),
                        annotations: template.metadata.annotations.clone(),
                        owner_references: delete_claims_with_set.then(|| vec![owner]),
                        ..ObjectMeta::default()
                    },
                    spec: template.spec.clone(),
                    status: None,
                });
            }
        }
        claims
    }

    /// Scale down, highest ordinal first (one at a time unless Parallel).
    fn scale_down(&self, plan: &mut Plan<StatefulSetStatus>) {
        let surplus: Vec<&Pod> = self
            .by_ordinal
            .range(self.desired..)
            .rev()
            .map(|(_, p)| *p)
            .filter(|p| !terminating(p))
            .collect();
        if self.parallel {
            plan.delete_pods
                .extend(surplus.iter().map(|p| p.name_any()));
        } else if let Some(p) = surplus.first() {
            plan.delete_pods.push(p.name_any());
        }
    }

    /// Scale up, in order (each pod once the one before is ready) unless
    /// Parallel.
    fn scale_up(&self, plan: &mut Plan<StatefulSetStatus>) {
        for ordinal in 0..self.desired {
            match self.by_ordinal.get(&ordinal) {
                Some(pod) if terminating(pod) => {
                    if !self.parallel {
                        break;
                    }
                }
                Some(pod) => {
                    if !self.parallel && !pod_ready(pod) {
                        break;
                    }
                }
                None => {
                    plan.create_pods.push(self.new_pod(ordinal));
                    if !self.parallel {
                        break;
                    }
                }
            }
        }
    }

    /// Pod `ordinal`: its stable name and hostname, and its claims.
    fn new_pod(&self, ordinal: i32) -> Pod {
        let name = &self.name;
        let pod_name = format!("{name}-{ordinal}");
        let mut pod = pod_from_template(
            &self.spec.template,
            pod_name.clone(),
            &self.namespace,
            self.owner.clone(),
            &[
                (REVISION_LABEL, self.revision.clone()),
                ("statefulset.kubernetes.io/pod-name", pod_name.clone()),
                ("apps.kubernetes.io/pod-index", ordinal.to_string()),
            ],
        );
        if let Some(pod_spec) = pod.spec.as_mut() {
            pod_spec.hostname = Some(pod_name);
            pod_spec.subdomain = self.spec.service_name.clone();
            let volumes = pod_spec.volumes.get_or_insert_with(Vec::new);
            for template in self.spec.volume_claim_templates.iter().flatten() {
                volumes.retain(|v| v.name != template.name_any());
                volumes.push(Volume {
                    name: template.name_any(),
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: claim_name(&template.name_any(), name, ordinal),
                        read_only: None,
                    }),
                    ..Volume::default()
                });
            }
        }
        pod
    }

    /// Rolling update: one pod at a time, highest ordinal first (down to
    /// `partition`), only while every wanted pod exists and is ready.
    fn roll(&self, plan: &mut Plan<StatefulSetStatus>) {
        let strategy = self.spec.update_strategy.as_ref();
        let on_delete = strategy.and_then(|u| u.type_.as_deref()) == Some("OnDelete");
        let partition = strategy
            .and_then(|u| u.rolling_update.as_ref())
            .and_then(|r| r.partition)
            .unwrap_or(0);
        let wanted: Vec<&Pod> = (0..self.desired)
            .filter_map(|o| self.by_ordinal.get(&o).copied())
            .collect();
        let settled = wanted.len() as i32 == self.desired
            && wanted.iter().all(|p| pod_ready(p) && !terminating(p));
        if !on_delete
            && settled
            && plan.delete_pods.is_empty()
            && let Some(outdated) = (partition..self.desired)
                .rev()
                .filter_map(|o| self.by_ordinal.get(&o))
                .find(|p| p.labels().get(REVISION_LABEL) != Some(&self.revision))
        {
            plan.delete_pods.push(outdated.name_any());
        }
    }

    fn status(&self, pods: &[&Pod]) -> StatefulSetStatus {
        let revision = &self.revision;
        let live: Vec<&Pod> = pods.iter().copied().filter(|p| !terminating(p)).collect();
        let ready = live.iter().filter(|p| pod_ready(p)).count() as i32;
        let updated = live
            .iter()
            .filter(|p| p.labels().get(REVISION_LABEL) == Some(revision))
            .count() as i32;
        let current_revision = if updated == live.len() as i32 {
            revision.clone()
        } else {
            self.sts
                .status
                .as_ref()
                .and_then(|s| s.current_revision.clone())
                .unwrap_or_else(|| revision.clone())
        };
        let opt = |n: i32| (n != 0).then_some(n);
        StatefulSetStatus {
            observed_generation: self.sts.metadata.generation,
            replicas: live.len() as i32,
            ready_replicas: opt(ready),
            available_replicas: opt(ready),
            current_replicas: opt(updated),
            updated_replicas: opt(updated),
            current_revision: Some(current_revision),
            update_revision: Some(revision.clone()),
            collision_count: Some(0),
            ..StatefulSetStatus::default()
        }
    }
}
