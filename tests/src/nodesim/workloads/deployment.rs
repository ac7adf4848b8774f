//! The Deployment controller's plan.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentSpec, DeploymentStatus,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::{
    Plan, TEMPLATE_HASH_LABEL, owner_reference, pod_from_template, pod_ready, scaled, slot_suffix,
    template_hash, terminating,
};

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

/// One Deployment and the pods it controls, as a plan sees them.
struct Rollout<'a> {
    deployment: &'a Deployment,
    spec: DeploymentSpec,
    name: String,
    desired: i32,
    hash: String,
    recreate: bool,
    /// Every controlled pod, terminating ones too.
    pods: &'a [&'a Pod],
    /// The live pods of the current template, and of older ones.
    new: Vec<&'a Pod>,
    old: Vec<&'a Pod>,
}

/// Plans one Deployment from the pods it controls.
pub fn plan_deployment(
    deployment: &Deployment,
    pods: &[&Pod],
    now: &Time,
) -> Plan<DeploymentStatus> {
    let spec = deployment.spec.clone().unwrap_or_default();
    let hash = template_hash(&spec.template);
    let live: Vec<&Pod> = pods.iter().copied().filter(|p| !terminating(p)).collect();
    let (new, old): (Vec<&Pod>, Vec<&Pod>) = live
        .iter()
        .partition(|p| p.labels().get(TEMPLATE_HASH_LABEL) == Some(&hash));
    let rollout = Rollout {
        deployment,
        name: deployment.name_any(),
        desired: spec.replicas.unwrap_or(1).max(0),
        recreate: spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate"),
        spec,
        hash,
        pods,
        new,
        old,
    };
    let mut plan = Plan::default();
    if rollout.spec.paused != Some(true) {
        rollout.plan_pods(&mut plan);
    }
    plan.status = rollout.status(&live, now);
    plan
}

impl Rollout<'_> {
    fn ready_new(&self) -> i32 {
        self.new.iter().filter(|p| pod_ready(p)).count() as i32
    }

    /// Which pods to create and delete.
    fn plan_pods(&self, plan: &mut Plan<DeploymentStatus>) {
        let (desired, hash) = (self.desired, &self.hash);
        let blocked_by_old = self.recreate && !self.pods.iter().all(|p| controlled_new(p, hash));
        if self.recreate && !self.old.is_empty() {
            plan.delete_pods
                .extend(self.old.iter().map(|p| p.name_any()));
        }
        if !blocked_by_old {
            plan.create_pods = self.missing_pods();
        }
        // Too many new pods: drop the not-ready ones first.
        let mut surplus: Vec<&&Pod> = self.new.iter().collect();
        surplus.sort_by_key(|p| (pod_ready(p), p.name_any()));
        let excess = (self.new.len() as i32 - desired).max(0) as usize;
        plan.delete_pods
            .extend(surplus.iter().take(excess).map(|p| p.name_any()));
        // Old pods go once the new ones carry the whole load.
        if !self.recreate && (self.ready_new() >= desired || desired == 0) {
            plan.delete_pods
                .extend(self.old.iter().map(|p| p.name_any()));
        }
        plan.delete_pods.sort();
        plan.delete_pods.dedup();
    }

    /// New pods for the free slots, up to the desired count.
    fn missing_pods(&self) -> Vec<Pod> {
        let (name, hash) = (&self.name, &self.hash);
        let namespace = self.deployment.namespace().unwrap_or_default();
        let existing: BTreeSet<String> = self.pods.iter().map(|p| p.name_any()).collect();
        let missing = (self.desired - self.new.len() as i32).max(0) as usize;
        let owner = owner_reference("Deployment", &self.deployment.metadata);
        (0..)
            .map(|slot| format!("{name}-{hash}-{}", slot_suffix(hash, slot)))
            .filter(|n| !existing.contains(n))
            .take(missing)
            .map(|pod_name| {
                pod_from_template(
                    &self.spec.template,
                    pod_name,
                    &namespace,
                    owner.clone(),
                    &[(TEMPLATE_HASH_LABEL, hash.clone())],
                )
            })
            .collect()
    }

    fn status(&self, live: &[&Pod], now: &Time) -> DeploymentStatus {
        let desired = self.desired;
        let ready = live.iter().filter(|p| pod_ready(p)).count() as i32;
        let opt = |n: i32| (n != 0).then_some(n);
        DeploymentStatus {
            observed_generation: self.deployment.metadata.generation,
            replicas: opt(live.len() as i32),
            updated_replicas: opt(self.new.len() as i32),
            ready_replicas: opt(ready),
            available_replicas: opt(ready),
            unavailable_replicas: opt((desired - ready).max(0)),
            conditions: Some(self.conditions(ready, now)),
            ..DeploymentStatus::default()
        }
    }

    /// `Available` and `Progressing`, worded as the real controller does.
    fn conditions(&self, ready: i32, now: &Time) -> Vec<DeploymentCondition> {
        let (name, hash, desired) = (&self.name, &self.hash, self.desired);
        let max_unavailable = if self.recreate {
            desired
        } else {
            let rolling = self
                .spec
                .strategy
                .as_ref()
                .and_then(|s| s.rolling_update.as_ref());
            let max = rolling.and_then(|r| r.max_unavailable.as_ref());
            scaled(max, 25, desired, false)
        };
        let available_ok = ready >= desired - max_unavailable.min(desired);
        let complete =
            self.new.len() as i32 == desired && self.ready_new() == desired && self.old.is_empty();
        let previous = self
            .deployment
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
        let available = if available_ok {
            let message = "Deployment has minimum availability.";
            condition(
                "Available",
                true,
                "MinimumReplicasAvailable",
                message.to_owned(),
            )
        } else {
            let message = "Deployment does not have minimum availability.";
            condition(
                "Available",
                false,
                "MinimumReplicasUnavailable",
                message.to_owned(),
            )
        };
        let progressing = if complete {
            let message = format!("ReplicaSet \"{name}-{hash}\" has successfully progressed.");
            condition("Progressing", true, "NewReplicaSetAvailable", message)
        } else {
            let message = format!("ReplicaSet \"{name}-{hash}\" is progressing.");
            condition("Progressing", true, "ReplicaSetUpdated", message)
        };
        vec![available, progressing]
    }
}

fn controlled_new(pod: &Pod, hash: &str) -> bool {
    pod.labels().get(TEMPLATE_HASH_LABEL).map(String::as_str) == Some(hash) && !terminating(pod)
}
