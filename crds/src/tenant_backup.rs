//! The `TenantBackup` custom resource, `atoll.dev/v1alpha1`: one on-demand
//! backup of a Tenant's database. Its doc comments are the CRD's
//! descriptions.
//!
//! The resource is **cluster-scoped**, like the Tenant it names, for two
//! reasons. A backup must outlive its Tenant: the tenant's namespace is
//! deleted with the Tenant under `deletionPolicy: Delete`, and a
//! TenantBackup inside it would go with it while the backup it describes is
//! still in the object store and still restorable (`spec.restore.backup`
//! may name it). And its audience is the Tenant's: platform admins, who
//! create Tenants and restore them, not the tenant's own users, who have no
//! Kubernetes access to the tenant namespace.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::tenant::NAME_PATTERN;

/// Desired state of a TenantBackup: which Tenant to back up.
// Two printer columns are both of type string: not a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "atoll.dev",
    version = "v1alpha1",
    kind = "TenantBackup",
    plural = "tenantbackups",
    singular = "tenantbackup",
    shortname = "tb",
    category = "atoll",
    status = "TenantBackupStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A TenantBackup is one on-demand backup of a Tenant's database, taken once when created: a base backup for a Dedicated database, a logical dump for an External one. It is cluster-scoped, like Tenants: it outlives a Tenant deleted with its namespace (deletionPolicy Delete), and it is managed by the platform admins who manage Tenants. Deleting it leaves the backup in the object store to expire by the Tenant's retention.",
    printcolumn(
        name = "Tenant",
        type_ = "string",
        json_path = ".spec.tenant",
        description = "The Tenant backed up"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Where the backup is"
    ),
    printcolumn(
        name = "Size",
        type_ = "integer",
        json_path = ".status.size",
        description = "Bytes stored in the object store"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct TenantBackupSpec {
    /// Name of the Tenant to back up. It cannot be changed: create another TenantBackup for another Tenant.
    #[schemars(pattern(NAME_PATTERN), length(min = 1, max = 40))]
    #[x_kube(
        validation = Rule::new("self == oldSelf")
            .message("spec.tenant is immutable: create another TenantBackup for another Tenant")
            .reason(Reason::FieldValueForbidden)
    )]
    pub tenant: String,
}

/// Observed state of a TenantBackup, written by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TenantBackupStatus {
    /// Where the backup is: Pending, Running, Completed or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BackupPhase>,
    /// The uid of the Tenant backed up (spec.tenant when the backup started): the backup lies under tenants/<uid>/ in the object store and stays tied to that Tenant if a new one of the same name is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_uid: Option<String>,
    /// The backup's id (its start time in UTC, YYYYMMDDTHHMMSSZ); spec.restore.backup of a new Tenant may name it, or this TenantBackup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub backup_id: Option<String>,
    /// Base (a physical base backup of a Dedicated database) or Dump (a logical dump of an External one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<BackupMethod>,
    /// When the backup started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the backup completed or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<Time>,
    /// Bytes stored in the object store (compressed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub size: Option<i64>,
    /// Keys of the backup's objects in the bucket.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[schemars(extend("items" = {
        "type": "string",
        "description": "A key of one object of the backup in the bucket.",
        "maxLength": 1024
    }))]
    pub objects: Vec<String>,
    /// The first WAL segment the base backup needs (Base only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub begin_wal: Option<String>,
    /// The last WAL segment the base backup needs to be consistent (Base only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub end_wal: Option<String>,
    /// What happened, for a person (why a backup failed, and what to do).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub message: Option<String>,
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions of the backup, each with a reason and a message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// Where an on-demand backup is: Pending, Running, Completed or Failed.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupPhase {
    /// Waiting to start (for the Tenant, its database or another backup of it).
    Pending,
    /// Being taken.
    Running,
    /// Complete in the object store and restorable.
    Completed,
    /// Stopped without a usable backup; status.message says why.
    Failed,
}

impl BackupPhase {
    /// The phase's name as written in status.
    pub fn as_str(self) -> &'static str {
        match self {
            BackupPhase::Pending => "Pending",
            BackupPhase::Running => "Running",
            BackupPhase::Completed => "Completed",
            BackupPhase::Failed => "Failed",
        }
    }
}

/// How a backup was taken: Base (a physical base backup of a Dedicated database) or Dump (a logical dump of an External one).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupMethod {
    /// A physical base backup (pg_basebackup) of a Dedicated database; restored with the archived WAL to any later moment.
    Base,
    /// A logical dump (pg_dump) of an External database's own database; restored as it was when taken.
    Dump,
}

impl BackupMethod {
    /// The method's name as written in status.
    pub fn as_str(self) -> &'static str {
        match self {
            BackupMethod::Base => "Base",
            BackupMethod::Dump => "Dump",
        }
    }
}
