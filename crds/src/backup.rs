//! The Tenant's backup blocks: `spec.backup` (continuous archiving and
//! scheduled backups), `spec.restore` (create a Tenant from another one's
//! backups) and what the operator reports about them in `status.backup` and
//! `status.restore`. Their doc comments are the CRD's descriptions.

use std::sync::LazyLock;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::KubeSchema;
use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::tasks::{BUCKET_PATTERN, LocalSecretRef, REGION_PATTERN};

/// The cron expression of `spec.backup.schedule`, as a macro so that the
/// pattern and the CEL rule embedding it are one literal.
macro_rules! cron_pattern {
    () => {
        "^([*]|([0-5]?[0-9])(-([0-5]?[0-9]))?)(/[1-9][0-9]?)?(,([*]|([0-5]?[0-9])(-([0-5]?[0-9]))?)(/[1-9][0-9]?)?)* +([*]|([01]?[0-9]|2[0-3])(-([01]?[0-9]|2[0-3]))?)(/[1-9][0-9]?)?(,([*]|([01]?[0-9]|2[0-3])(-([01]?[0-9]|2[0-3]))?)(/[1-9][0-9]?)?)* +([*]|(0?[1-9]|[12][0-9]|3[01])(-(0?[1-9]|[12][0-9]|3[01]))?)(/[1-9][0-9]?)?(,([*]|(0?[1-9]|[12][0-9]|3[01])(-(0?[1-9]|[12][0-9]|3[01]))?)(/[1-9][0-9]?)?)* +([*]|(0?[1-9]|1[0-2])(-(0?[1-9]|1[0-2]))?)(/[1-9][0-9]?)?(,([*]|(0?[1-9]|1[0-2])(-(0?[1-9]|1[0-2]))?)(/[1-9][0-9]?)?)* +([*]|([0-7])(-([0-7]))?)(/[1-9][0-9]?)?(,([*]|([0-7])(-([0-7]))?)(/[1-9][0-9]?)?)*$"
    };
}

/// A 5-field cron expression (minute hour day-of-month month day-of-week),
/// numbers only: each field a comma-separated list of `*`, `N` or `N-M`,
/// each optionally `/STEP`, with the field's range (minute 0-59, hour 0-23,
/// day 1-31, month 1-12, day of week 0-7 where 0 and 7 are Sunday).
pub const CRON_PATTERN: &str = cron_pattern!();
/// The CEL rule holding `spec.backup.schedule` to [`CRON_PATTERN`] (a CEL
/// rule rather than a schema pattern, so the refusal reads as a sentence
/// instead of quoting the 600-character expression).
const CRON_RULE: &str = concat!("self.matches('", cron_pattern!(), "')");
/// Message of the schedule rule; `validate` uses the same words.
pub const CRON_MESSAGE: &str = "spec.backup.schedule must be a 5-field cron expression in UTC (minute hour day-of-month month day-of-week; numbers, '*', ',', '-' and '/STEP' only), such as \"0 3 * * *\"";
/// Message of the rule that makes `spec.restore` create-only; `validate_update`
/// uses the same words.
pub const RESTORE_CREATE_ONLY_MESSAGE: &str = "spec.restore is create-only: it cannot be added, changed or removed after the Tenant is created (create a new Tenant to restore again)";
/// How long backups are kept: a count of hours, days or weeks (`36h`,
/// `30d`, `8w`).
pub const RETENTION_PATTERN: &str = "^[1-9][0-9]{0,3}[dhw]$";
/// An object store endpoint: `http(s)://host[:port]`, no path, query or
/// user info (the bucket and prefix are their own fields, credentials come
/// from a Secret).
pub const OBJECT_STORE_ENDPOINT_PATTERN: &str =
    r"^https?://([A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?/?$";
/// A key prefix: `/`-separated segments of letters, digits, `.`, `_` and
/// `-`, none empty and none starting with `.` (so no leading or trailing
/// `/`, no `.` or `..` segment).
pub const PREFIX_PATTERN: &str = r"^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$";
/// A Kubernetes object uid.
pub const UID_PATTERN: &str = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$";
/// `spec.restore.from`: a Tenant name or a Tenant uid.
pub const RESTORE_SOURCE_PATTERN: &str =
    "^([a-z]([-a-z0-9]*[a-z0-9])?|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$";
/// An RFC 3339 time with a date, a time and an offset
/// (`2026-12-07T09:30:00Z`, `2026-12-07T10:30:00.5+01:00`): what the
/// `date-time` format takes, without the looser forms (no offset, a space
/// for `T`) some parsers also accept.
pub const RFC3339_PATTERN: &str = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$";
/// A backup id: its start time in UTC, `YYYYMMDDTHHMMSSZ`.
pub const BACKUP_ID_PATTERN: &str = "^[0-9]{8}T[0-9]{6}Z$";
/// `spec.restore.backup`: `latest`, a backup id or a TenantBackup name.
pub const RESTORE_BACKUP_PATTERN: &str =
    r"^([0-9]{8}T[0-9]{6}Z|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)$";
/// `spec.restore.backup` meaning the newest backup that fits.
pub const LATEST_BACKUP: &str = "latest";
/// Default of `spec.backup.schedule`: daily at 03:00 UTC.
pub const DEFAULT_BACKUP_SCHEDULE: &str = "0 3 * * *";
/// Default of `spec.backup.retention`.
pub const DEFAULT_BACKUP_RETENTION: &str = "30d";
/// Default of `objectStore.region`.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Backups of the tenant's database.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// Take backups (default true). false keeps the settings and the backups already taken (they still expire by retention) but stops archiving and scheduling new ones.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// When scheduled backups run: a 5-field cron expression in UTC (minute hour day-of-month month day-of-week; numbers, '*', ',', '-' and '/STEP'), default "0 3 * * *" (daily at 03:00). Dedicated databases take a base backup on it (their WAL is archived continuously in between); External databases take a logical dump (pg_dump) on it, so their recovery point is the last dump.
    #[serde(default = "default_schedule")]
    #[schemars(length(max = 128))]
    #[x_kube(
        validation = Rule::new(CRON_RULE)
            .message(CRON_MESSAGE)
            .reason(Reason::FieldValueInvalid)
    )]
    pub schedule: String,

    /// How long backups are kept, as a count of hours, days or weeks (36h, 30d, 8w; default 30d). Older base backups and dumps are deleted, and with them the archived WAL no kept base backup needs; the newest successful backup is always kept. The recovery window starts at status.backup.firstRecoverabilityPoint.
    #[serde(default = "default_retention")]
    #[schemars(pattern(RETENTION_PATTERN), length(min = 2, max = 5))]
    pub retention: String,

    /// An object store of this Tenant's own. Unset (default): the platform's store, configured once in the chart's values. Backups go under tenants/<uid>/ in the bucket (after the prefix), so a re-created Tenant of the same name never mixes with the old one's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_store: Option<ObjectStoreSpec>,
}

impl Default for BackupSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            schedule: default_schedule(),
            retention: default_retention(),
            object_store: None,
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_schedule() -> String {
    DEFAULT_BACKUP_SCHEDULE.to_owned()
}

fn default_retention() -> String {
    DEFAULT_BACKUP_RETENTION.to_owned()
}

fn default_region() -> String {
    DEFAULT_REGION.to_owned()
}

fn default_backup() -> String {
    LATEST_BACKUP.to_owned()
}

/// An S3-compatible object store for backups.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStoreSpec {
    /// Endpoint URL of the store, scheme, host and optional port only (https://s3.eu-west-1.amazonaws.com, http://minio.storage.svc:9000): no path, query or user name; the bucket and prefix are their own fields and the credentials come from credentialsSecretRef. The backup processes in the tenant's namespace connect to it.
    #[schemars(pattern(OBJECT_STORE_ENDPOINT_PATTERN), length(min = 8, max = 2048))]
    pub endpoint: String,

    /// The bucket; it must exist. 3 to 63 lower-case letters, digits, '.' and '-', starting and ending with a letter or digit, without '..' and not shaped like an IP address.
    #[schemars(pattern(BUCKET_PATTERN), length(min = 3, max = 63))]
    #[x_kube(
        validation = Rule::new("!self.contains('..') && !self.matches('^[0-9]+[.][0-9]+[.][0-9]+[.][0-9]+$')")
            .message("bucket must not contain '..' or be shaped like an IP address")
            .reason(Reason::FieldValueInvalid)
    )]
    pub bucket: String,

    /// The region (default us-east-1; most S3-compatible stores accept any).
    #[serde(default = "default_region")]
    #[schemars(pattern(REGION_PATTERN), length(min = 1, max = 64))]
    pub region: String,

    /// Address the bucket in the URL path (http://host/bucket/key) instead of the host name (http://bucket.host/key, default false). Most self-hosted stores need true.
    #[serde(default)]
    pub path_style: bool,

    /// Key prefix inside the bucket, for a bucket shared with other data: '/'-separated segments of letters, digits, '.', '_' and '-', without a leading or trailing '/' and without '..'. Unset: the bucket's root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(PREFIX_PATTERN), length(min = 1, max = 256))]
    #[x_kube(
        validation = Rule::new("!self.contains('..')")
            .message("prefix must not contain '..'")
            .reason(Reason::FieldValueInvalid)
    )]
    pub prefix: Option<String>,

    /// Secret in the tenant's namespace (atoll-<name>) holding the store's credentials under the keys accessKeyId and secretAccessKey. The operator hands them to the backup processes as files, never in an environment variable, command line, log, event or status.
    pub credentials_secret_ref: LocalSecretRef,
}

/// Create this Tenant's database from another Tenant's backups.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RestoreSpec {
    /// The Tenant whose backups to restore: its name, or its uid (a value shaped like a uid is taken as one). The source may be a live Tenant or one deleted under either deletion policy, as long as its backups are retained; a name that several deleted Tenants had means the newest of them unless a uid is given.
    #[schemars(pattern(RESTORE_SOURCE_PATTERN), length(min = 1, max = 40))]
    pub from: String,

    /// Which backup to start from: latest (default: the newest one that ends before targetTime, or the newest of all without targetTime), a backup id (YYYYMMDDTHHMMSSZ, as in a TenantBackup's status.backupId) or the name of a TenantBackup of the source Tenant.
    #[serde(default = "default_backup")]
    #[schemars(pattern(RESTORE_BACKUP_PATTERN), length(min = 1, max = 253))]
    pub backup: String,

    /// Recover up to this moment, as an RFC 3339 time (2026-12-07T09:30:00Z). Unset: to the end of the archive (the latest archived WAL for Dedicated databases, the dump itself for External ones). A Dedicated database's restore that cannot reach it fails, with the Restored condition saying how far it got. An External database is restored from the newest dump taken at or before it: its data is that dump's, and status.restore.reachedTime says when the dump was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(RFC3339_PATTERN), length(min = 20, max = 35))]
    #[schemars(extend("format" = "date-time"))]
    pub target_time: Option<String>,

    /// The object store holding the source's backups, when the source used a store of its own (its spec.backup.objectStore); the Secret it names must exist in this Tenant's namespace. Unset: the platform's store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_store: Option<ObjectStoreSpec>,
}

impl RestoreSpec {
    /// `targetTime` as a timestamp; `None` when unset or not a valid
    /// RFC 3339 time (which [`crate::validate`] reports).
    pub fn target_timestamp(&self) -> Option<Timestamp> {
        parse_rfc3339(self.target_time.as_deref()?)
    }
}

/// Parses an RFC 3339 time as [`RFC3339_PATTERN`] spells it.
pub(crate) fn parse_rfc3339(value: &str) -> Option<Timestamp> {
    static PATTERN: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(RFC3339_PATTERN).unwrap_or_else(|e| panic!("pattern {RFC3339_PATTERN}: {e}"))
    });
    if !PATTERN.is_match(value) {
        return None;
    }
    value.parse().ok()
}

/// What the operator observed of the tenant's backups.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    /// The earliest moment the tenant can be restored to: the end of the oldest base backup or dump still kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_recoverability_point: Option<Time>,
    /// When the last successful base backup or dump finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_backup: Option<Time>,
    /// When the last failed base backup or dump ended; the BackupReady condition says why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failed_backup: Option<Time>,
    /// Name of the last WAL segment archived (Dedicated databases only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub last_archived_wal: Option<String>,
    /// When the last WAL segment was archived (Dedicated databases only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_archived_time: Option<Time>,
    /// When archiving a WAL segment last failed (Dedicated databases only); the ContinuousArchiving condition says why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failed_archive_time: Option<Time>,
}

/// What the operator observed of the restore this Tenant was created with.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RestoreStatus {
    /// Where the restore is: Pending, Running, Completed or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RestorePhase>,
    /// The uid of the Tenant whose backups are restored (spec.restore.from resolved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_uid: Option<String>,
    /// The id of the base backup or dump restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<String>,
    /// The moment recovery aimed for (spec.restore.targetTime, or the end of the archive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_time: Option<Time>,
    /// The time of the last transaction recovered: how far the restore got.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reached_time: Option<Time>,
    /// What happened, for a person (why a restore failed, and what to do).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub message: Option<String>,
}

/// Where a restore is: Pending, Running, Completed or Failed.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestorePhase {
    /// Waiting to start (for the namespace, the store's Secret or the source's backups).
    Pending,
    /// Recovering the database.
    Running,
    /// The database is recovered; the instance starts on it.
    Completed,
    /// The restore stopped; status.restore.message and the Restored condition say why.
    Failed,
}

impl RestorePhase {
    /// The phase's name as written in status.
    pub fn as_str(self) -> &'static str {
        match self {
            RestorePhase::Pending => "Pending",
            RestorePhase::Running => "Running",
            RestorePhase::Completed => "Completed",
            RestorePhase::Failed => "Failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The literal is the expression these field ranges make; spelled out
    /// so the CRD carries one fixed string.
    #[test]
    fn cron_pattern_is_built_from_the_field_ranges() {
        let item = |n: &str| format!("([*]|{n}(-{n})?)(/[1-9][0-9]?)?");
        let list = |n: &str| format!("{}(,{})*", item(n), item(n));
        let fields = [
            "([0-5]?[0-9])",
            "([01]?[0-9]|2[0-3])",
            "(0?[1-9]|[12][0-9]|3[01])",
            "(0?[1-9]|1[0-2])",
            "([0-7])",
        ];
        let built: Vec<String> = fields.iter().map(|f| list(f)).collect();
        assert_eq!(CRON_PATTERN, format!("^{}$", built.join(" +")));
        assert!(
            !CRON_PATTERN.contains(['\\', '\'']),
            "embeds in a CEL string as is"
        );
    }
}
