//! The Tenant's status: what the operator observed and reports.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::backup::{BackupStatus, RestoreStatus};
use crate::idle::IdleStatus;
use crate::tenant::Tenant;

/// Observed state of a Tenant, written by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TenantStatus {
    /// Where the tenant is in its life: Provisioning, Ready, Sleeping, Suspended, Degraded or Deleting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// URL at which the tenant's instance answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Namespace that holds the tenant's objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Instance version (image tag) currently rolled out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, DatabaseReady, InstanceReady and IdentitySynced, each with a reason and a message; with spec.idle also Awake; with spec.backup also BackupReady and (Dedicated databases only) ContinuousArchiving; with spec.restore also Restored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The tenant's backups: how far back it can be restored, the last backups and the WAL archiving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupStatus>,
    /// The restore this Tenant was created with (spec.restore).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreStatus>,
    /// With spec.idle: since when the tenant sleeps, when it will wake for its next scheduled run, and its last wake (cause and duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle: Option<IdleStatus>,
}

/// Lifecycle phase of a Tenant.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Objects are being created or are not ready yet.
    Provisioning,
    /// The instance answers at its URL.
    Ready,
    /// Asleep after its idle time (spec.idle): no instance process; the first request or its next scheduled run wakes it.
    Sleeping,
    /// Scaled to zero on request; data kept.
    Suspended,
    /// Was ready, and something is now failing; see the conditions.
    Degraded,
    /// Being deleted.
    Deleting,
}

impl Phase {
    /// The phase's name as written in status.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Provisioning => "Provisioning",
            Phase::Ready => "Ready",
            Phase::Sleeping => "Sleeping",
            Phase::Suspended => "Suspended",
            Phase::Degraded => "Degraded",
            Phase::Deleting => "Deleting",
        }
    }
}

impl Tenant {
    /// The phase the operator reported for the Tenant's current generation;
    /// `None` while the status is missing or describes an older spec.
    pub fn current_phase(&self) -> Option<Phase> {
        let status = self.status.as_ref()?;
        (status.observed_generation == self.metadata.generation)
            .then_some(status.phase)
            .flatten()
    }
}
