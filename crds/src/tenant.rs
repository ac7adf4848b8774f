//! The `Tenant` custom resource, `atoll.dev/v1alpha1`.
//!
//! Every doc comment on a field becomes that field's description in the CRD's
//! OpenAPI schema, which is what `kubectl explain tenant.spec...` prints, so
//! they are written for the person editing a Tenant in Git.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::backup::{BackupSpec, RESTORE_CREATE_ONLY_MESSAGE, RestoreSpec};
use crate::idle::IdleSpec;
use crate::quantity::Quantity;
use crate::role::Role;
use crate::status::TenantStatus;
use crate::tasks::{InstanceStorageSpec, LocalSecretRef, TasksSpec};

/// Longest tenant name. The namespace is `<prefix><name>` (the default prefix
/// `atoll-` is 6 characters) and the host is `<name>.<baseDomain>`; 40 keeps
/// both valid DNS labels with room for a longer prefix.
pub const MAX_NAME_LEN: usize = 40;
/// Tenant names refused because their namespace (`atoll-<name>`) or host
/// would be the platform's own: `atoll-system` is where the chart installs
/// the operator and identity by default, `identity` and `operator` are the
/// platform's components. The operator also refuses, at reconcile time, any
/// namespace it did not label for the Tenant (`NamespaceConflict`), whatever
/// the prefix.
pub const RESERVED_NAMES: &[&str] = &["system", "identity", "operator", "platform"];
/// A tenant name: a DNS label that starts with a letter.
pub const NAME_PATTERN: &str = "^[a-z]([-a-z0-9]*[a-z0-9])?$";
/// A lower-case e-mail address (identity compares e-mails case-insensitively,
/// so the spec keeps one spelling to make duplicates visible).
pub const EMAIL_PATTERN: &str = r"^[a-z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$";
/// A lower-case DNS subdomain without wildcards.
pub const HOST_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$";
/// An environment variable name.
pub const ENV_NAME_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_]*$";
/// A Kubernetes object name (DNS subdomain), for references to Secrets and
/// ConfigMaps.
pub const OBJECT_NAME_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A key in a Secret or ConfigMap.
pub const DATA_KEY_PATTERN: &str = r"^[-._a-zA-Z0-9]+$";
/// A container image reference without a tag (the tag comes from `version`)
/// or with a digest.
pub const IMAGE_PATTERN: &str =
    r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*(@sha256:[a-f0-9]{64})?$";
/// An image tag.
pub const VERSION_PATTERN: &str = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$";
/// Environment variable names the operator sets itself.
pub const RESERVED_ENV_PREFIX: &str = "ATOLL_";
/// Most members one Tenant may list (bounds the uniqueness rule's cost).
pub const MAX_MEMBERS: usize = 256;
/// Most extra environment variables.
pub const MAX_ENV: usize = 64;
/// Desired state of a tenant: its instance, database, ingress, quota and members.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "atoll.dev",
    version = "v1alpha1",
    kind = "Tenant",
    plural = "tenants",
    singular = "tenant",
    shortname = "tnt",
    category = "atoll",
    status = "TenantStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A Tenant is one customer of the platform: Atoll runs a dedicated orchestration instance for it, with its own database, in namespace atoll-<name>, at its own URL.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase", description = "Lifecycle phase"),
    printcolumn(name = "URL", type_ = "string", json_path = ".status.url", description = "Where the tenant's instance answers"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the instance is ready for users"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("size(self.metadata.name) <= 40")
        .message("metadata.name must be at most 40 characters, so that the namespace atoll-<name> and the host <name>.<baseDomain> stay valid DNS labels")
        .reason(Reason::FieldValueInvalid),
    validation = Rule::new("!(self.metadata.name in ['system', 'identity', 'operator', 'platform'])")
        .message("metadata.name is reserved for the platform (system, identity, operator and platform would map onto the platform's own namespace or components)")
        .reason(Reason::FieldValueForbidden),
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')")
        .message("metadata.name must be a DNS label: lower-case letters, digits and '-', starting with a letter and ending with a letter or digit")
        .reason(Reason::FieldValueInvalid)
)]
#[x_kube(
    validation = Rule::new("!has(self.database.dedicated) || !has(self.database.dedicated.storage) || !has(self.database.dedicated.storage.size) || !has(self.quota) || !has(self.quota.storage) || quantity(string(self.database.dedicated.storage.size)).compareTo(quantity(string(self.quota.storage))) <= 0")
        .message("spec.database.dedicated.storage.size must not exceed spec.quota.storage: the volume would be refused by the namespace quota")
        .field_path(".database.dedicated.storage.size")
        .reason(Reason::FieldValueInvalid),
    validation = Rule::new("!has(self.instance) || !has(self.instance.replicas) || self.instance.replicas <= 1 || (has(self.storage) && has(self.storage.s3))")
        .message("spec.instance.replicas above 1 needs spec.storage.s3: the internal storage volume is ReadWriteOnce and cannot be shared by replicas on different nodes")
        .field_path(".storage.s3")
        .reason(Reason::FieldValueRequired),
    validation = Rule::new("!has(self.storage) || has(self.storage.s3) || !has(self.storage.size) || !has(self.quota) || !has(self.quota.storage) || quantity(string(self.storage.size)).add((has(self.database) && has(self.database.mode) && self.database.mode == 'External') ? quantity('0') : ((has(self.database) && has(self.database.dedicated) && has(self.database.dedicated.storage) && has(self.database.dedicated.storage.size)) ? quantity(string(self.database.dedicated.storage.size)) : quantity('1Gi'))).compareTo(quantity(string(self.quota.storage))) <= 0")
        .message("spec.storage.size plus the database volume must not exceed spec.quota.storage: the storage volume would be refused by the namespace quota")
        .field_path(".storage.size")
        .reason(Reason::FieldValueInvalid),
    validation = Rule::new("has(self.restore) == has(oldSelf.restore) && (!has(self.restore) || self.restore == oldSelf.restore)")
        .message(RESTORE_CREATE_ONLY_MESSAGE)
        .field_path(".restore")
        .reason(Reason::FieldValueForbidden)
)]
#[serde(rename_all = "camelCase")]
pub struct TenantSpec {
    /// Human-readable name shown in the identity service's tenant list. Defaults to metadata.name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub display_name: Option<String>,

    /// The tenant's orchestration instance: image, version, replicas, resources and settings.
    #[serde(default)]
    pub instance: InstanceSpec,

    /// The tenant's dedicated database: an in-cluster PostgreSQL (Dedicated) or a database on a shared server (External).
    #[serde(default)]
    pub database: DatabaseSpec,

    /// How users reach the instance: host name, ingress class and TLS.
    #[serde(default)]
    pub ingress: IngressSpec,

    /// Resource limits for the tenant's whole namespace (ResourceQuota).
    #[serde(default)]
    pub quota: QuotaSpec,

    /// People who may enter this tenant, by e-mail, with their role. Pushed to the identity service; a member who has no account yet gets the role when they sign up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    #[x_kube(
        merge_strategy = ListMerge::Map(vec!["user".into()]),
        validation = Rule::new("self.all(m, self.exists_one(o, o.user == m.user))")
            .message("spec.members must not name the same user twice")
            .reason(Reason::FieldValueDuplicate)
    )]
    pub members: Vec<Member>,

    /// Scale the instance and the database to zero while keeping all data. Set back to false to resume.
    #[serde(default)]
    pub suspended: bool,

    /// How script tasks (shell and Python Commands and Script) run: where, in which image, with what resources, how many task pods at once and for how long.
    #[serde(default)]
    pub tasks: TasksSpec,

    /// The instance's internal storage (files of executions, namespace files): a volume in the tenant's namespace (default), or an S3-compatible object store.
    #[serde(default)]
    pub storage: InstanceStorageSpec,

    /// Secrets of the tenant's namespace that flows may read with {{ secret('NAME') }}: every key of every listed Secret becomes a secret named after the key (a key listed by two Secrets takes the later one's value). They are mounted read-only into the instance only (never into task pods), and their values are masked in logs and outputs. A Secret that does not exist yet is skipped until it does. The operator never reads them: the kubelet mounts them, and edits reach the instance within a minute without a restart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub secrets: Vec<LocalSecretRef>,

    /// What happens to the tenant's data when the Tenant is deleted: Retain (default) keeps the namespace's database volume and credentials, and a new Tenant of the same name adopts them; Delete removes the namespace and everything in it.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// Back up the tenant's database to an object store. Dedicated databases: their WAL is archived continuously (a segment at least every 60 seconds while there are writes, so a restore loses at most a few minutes) and a base backup is taken on the schedule; the ContinuousArchiving condition reports the archiving. External databases (a shared server, whose WAL is not the tenant's alone): a logical dump of the tenant's database on the schedule, so the most a restore loses is the time since the last dump. Unset: no backups (on-demand TenantBackups still work).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupSpec>,

    /// Sleep when idle: after this long without activity the instance (and optionally a Dedicated database) is stopped and its URL is served by the wake gate, which holds the first requests while the tenant wakes; the operator wakes it ahead of its next scheduled run. Unset (default): never sleeps. spec.suspended wins over it: a suspended tenant stays stopped and its requests get a "suspended" answer, not a wake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle: Option<IdleSpec>,

    /// Create this Tenant's database from another Tenant's backups, up to a chosen moment, instead of starting empty. Create-only: it can be set only when the Tenant is created, and cannot be changed or removed afterwards. The restore never touches the source Tenant; this Tenant gets its own URL, credentials and members. The Restored condition and status.restore report how it went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreSpec>,
}

/// The orchestration instance.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InstanceSpec {
    /// Container image of the instance, without tag (for example `registry.example.com/acme/atoll-instance`). Defaults to the operator's configured image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(IMAGE_PATTERN), length(max = 255))]
    pub image: Option<String>,

    /// Image tag to run (the instance version). Changing it rolls the instance. Defaults to the operator's own version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(VERSION_PATTERN))]
    pub version: Option<String>,

    /// Number of instance replicas. 0 stops the instance without suspending the database.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 10))]
    pub replicas: i32,

    /// CPU and memory for each instance replica.
    #[serde(default = "default_instance_resources")]
    pub resources: ComputeResources,

    /// Extra environment variables for the instance. Names starting with ATOLL_ are reserved for the operator.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub env: Vec<EnvVar>,

    /// Engine settings. Changing them rolls the instance.
    #[serde(default)]
    pub config: InstanceConfig,
}

impl Default for InstanceSpec {
    fn default() -> Self {
        Self {
            image: None,
            version: None,
            replicas: default_replicas(),
            resources: default_instance_resources(),
            env: Vec::new(),
            config: InstanceConfig::default(),
        }
    }
}

fn default_replicas() -> i32 {
    1
}

fn default_instance_resources() -> ComputeResources {
    ComputeResources::of(("50m", "64Mi"), ("1", "256Mi"))
}

fn default_database_resources() -> ComputeResources {
    ComputeResources::of(("100m", "128Mi"), ("1", "512Mi"))
}

/// Engine settings of the instance.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InstanceConfig {
    /// Log verbosity of the instance.
    #[serde(default)]
    pub log_level: LogLevel,

    /// Most task runs one replica executes at the same time.
    #[serde(default = "default_max_concurrent_task_runs")]
    #[schemars(range(min = 1, max = 1024))]
    pub max_concurrent_task_runs: i32,

    /// Days to keep finished executions and their logs. Unset keeps them forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3650))]
    pub execution_retention_days: Option<i32>,
}

impl Default for InstanceConfig {
    fn default() -> Self {
        Self {
            log_level: LogLevel::default(),
            max_concurrent_task_runs: default_max_concurrent_task_runs(),
            execution_retention_days: None,
        }
    }
}

fn default_max_concurrent_task_runs() -> i32 {
    16
}

/// Log verbosity.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Errors and warnings.
    Warn,
    /// Normal operation (default).
    #[default]
    Info,
    /// Detailed diagnostics.
    Debug,
    /// Everything.
    Trace,
}

/// CPU and memory requests and limits of one container.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(
    validation = Rule::new("!has(self.requests) || !has(self.limits) || !has(self.requests.cpu) || !has(self.limits.cpu) || quantity(string(self.limits.cpu)).compareTo(quantity(string(self.requests.cpu))) >= 0")
        .message("limits.cpu must be at least requests.cpu")
        .field_path(".limits.cpu")
        .reason(Reason::FieldValueInvalid),
    validation = Rule::new("!has(self.requests) || !has(self.limits) || !has(self.requests.memory) || !has(self.limits.memory) || quantity(string(self.limits.memory)).compareTo(quantity(string(self.requests.memory))) >= 0")
        .message("limits.memory must be at least requests.memory")
        .field_path(".limits.memory")
        .reason(Reason::FieldValueInvalid)
)]
#[serde(rename_all = "camelCase")]
pub struct ComputeResources {
    /// What the scheduler reserves for the container.
    #[serde(default)]
    pub requests: ResourceAmounts,
    /// The most the container may use.
    #[serde(default)]
    pub limits: ResourceAmounts,
}

impl ComputeResources {
    /// Requests and limits of CPU and memory, as quantities (`100m`, `128Mi`).
    pub fn of(requests: (&str, &str), limits: (&str, &str)) -> ComputeResources {
        let amounts = |(cpu, memory): (&str, &str)| ResourceAmounts {
            cpu: Some(Quantity::from(cpu)),
            memory: Some(Quantity::from(memory)),
        };
        ComputeResources {
            requests: amounts(requests),
            limits: amounts(limits),
        }
    }
}

/// Amounts of CPU and memory.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResourceAmounts {
    /// CPU, in cores or millicores (for example 500m or 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Quantity>,
    /// Memory, in bytes with an optional suffix (for example 256Mi or 1Gi).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,
}

/// An environment variable of the instance.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("!self.name.startsWith('ATOLL_')")
        .message("environment variable names starting with ATOLL_ are reserved for the operator")
        .field_path(".name")
        .reason(Reason::FieldValueForbidden),
    validation = Rule::new("!(has(self.value) && has(self.valueFrom))")
        .message("set either value or valueFrom, not both")
        .reason(Reason::FieldValueInvalid)
)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    /// Variable name (letters, digits and '_', not starting with a digit).
    #[schemars(pattern(ENV_NAME_PATTERN), length(min = 1, max = 128))]
    pub name: String,
    /// Literal value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32768))]
    pub value: Option<String>,
    /// Take the value from a key of a Secret or ConfigMap in the tenant's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<EnvVarSource>,
}

/// Where an environment variable's value comes from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("has(self.secretKeyRef) != has(self.configMapKeyRef)")
        .message("valueFrom needs exactly one of secretKeyRef or configMapKeyRef")
        .reason(Reason::FieldValueInvalid)
)]
#[serde(rename_all = "camelCase")]
pub struct EnvVarSource {
    /// A key of a Secret in the tenant's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<KeyRef>,
    /// A key of a ConfigMap in the tenant's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<KeyRef>,
}

/// A key of a Secret or ConfigMap.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KeyRef {
    /// Name of the Secret or ConfigMap.
    #[schemars(pattern(OBJECT_NAME_PATTERN), length(min = 1, max = 253))]
    pub name: String,
    /// Key within it.
    #[schemars(pattern(DATA_KEY_PATTERN), length(min = 1, max = 253))]
    pub key: String,
}

/// The tenant's database.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(
    validation = Rule::new("self.mode != 'External' || has(self.external)")
        .message("spec.database.external is required when mode is External")
        .field_path(".external")
        .reason(Reason::FieldValueRequired),
    validation = Rule::new("self.mode != 'Dedicated' || !has(self.external)")
        .message("spec.database.external must not be set when mode is Dedicated")
        .field_path(".external")
        .reason(Reason::FieldValueForbidden),
    validation = Rule::new("self.mode != 'External' || !has(self.dedicated)")
        .message("spec.database.dedicated must not be set when mode is External")
        .field_path(".dedicated")
        .reason(Reason::FieldValueForbidden)
)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSpec {
    /// Dedicated (default): a PostgreSQL StatefulSet in the tenant's namespace. External: a database and role created for the tenant on a shared PostgreSQL server.
    #[serde(default)]
    pub mode: DatabaseMode,
    /// Settings of the in-cluster PostgreSQL (mode Dedicated only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedicated: Option<DedicatedDatabase>,
    /// The shared server (mode External only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalDatabase>,
}

/// Where the tenant's database lives.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DatabaseMode {
    /// A PostgreSQL server of the tenant's own, in its namespace.
    #[default]
    Dedicated,
    /// A database of the tenant's own on a shared PostgreSQL server.
    External,
}

/// The in-cluster PostgreSQL server.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DedicatedDatabase {
    /// PostgreSQL image with tag (for example postgres:16). Defaults to the operator's configured image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub image: Option<String>,
    /// The database volume.
    #[serde(default)]
    pub storage: StorageSpec,
    /// CPU and memory of the PostgreSQL container.
    #[serde(default = "default_database_resources")]
    pub resources: ComputeResources,
}

impl Default for DedicatedDatabase {
    fn default() -> Self {
        Self {
            image: None,
            storage: StorageSpec::default(),
            resources: default_database_resources(),
        }
    }
}

/// A persistent volume.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Size of the volume (for example 1Gi). Growing it needs a storage class that allows expansion.
    #[serde(default = "default_storage_size")]
    pub size: Quantity,
    /// Storage class of the volume. Defaults to the cluster's default class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(OBJECT_NAME_PATTERN), length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self {
            size: default_storage_size(),
            storage_class_name: None,
        }
    }
}

pub(crate) fn default_storage_size() -> Quantity {
    Quantity::from("1Gi")
}

/// A shared PostgreSQL server on which the operator creates a database and a role for the tenant.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExternalDatabase {
    /// Secret, in the operator's own namespace, holding an admin connection URL (postgres://user:password@host:port/db) to the shared server. The operator reads only Secrets of its own namespace that carry the label atoll.dev/database-admin=true, so a Tenant cannot point the operator at any other secret (an unlabelled one leaves the Tenant DatabaseReady=False with reason SecretNotLabelled).
    pub admin_secret_ref: SecretKeySelector,
}

/// A key of a Secret in the operator's namespace.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeySelector {
    /// Name of the Secret.
    #[schemars(pattern(OBJECT_NAME_PATTERN), length(min = 1, max = 253))]
    pub name: String,
    /// Key holding the connection URL.
    #[serde(default = "default_url_key")]
    #[schemars(pattern(DATA_KEY_PATTERN), length(min = 1, max = 253))]
    pub key: String,
}

fn default_url_key() -> String {
    "url".to_owned()
}

/// How users reach the instance.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IngressSpec {
    /// Host name of the instance. Defaults to <name>.<baseDomain> from the operator's configuration. It must lie under one of the operator's allowed domains (Ready=False, reason HostNotAllowed, otherwise) and be used by no other Tenant and not by identity: when two Tenants ask for the same host the older one keeps it and the other shows Ready=False, reason HostConflict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(HOST_PATTERN), length(min = 1, max = 253))]
    pub host: Option<String>,
    /// IngressClass to use. Defaults to the operator's configured class, or the cluster default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(OBJECT_NAME_PATTERN), length(min = 1, max = 253))]
    pub class_name: Option<String>,
    /// Serve the instance over HTTPS. Unset uses the operator's default issuer if it has one, else plain HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<IngressTls>,
}

/// TLS for the instance's host.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("has(self.secretName) || has(self.clusterIssuer)")
        .message("spec.ingress.tls needs secretName, clusterIssuer or both")
        .reason(Reason::FieldValueRequired)
)]
#[serde(rename_all = "camelCase")]
pub struct IngressTls {
    /// Secret in the tenant's namespace holding the certificate (type kubernetes.io/tls). With clusterIssuer, cert-manager writes it; defaults then to instance-tls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(OBJECT_NAME_PATTERN), length(min = 1, max = 253))]
    pub secret_name: Option<String>,
    /// cert-manager ClusterIssuer that issues the certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(OBJECT_NAME_PATTERN), length(min = 1, max = 253))]
    pub cluster_issuer: Option<String>,
}

/// Limits for everything in the tenant's namespace.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct QuotaSpec {
    /// Total CPU limit of all pods.
    #[serde(default = "default_quota_cpu")]
    pub cpu: Quantity,
    /// Total memory limit of all pods.
    #[serde(default = "default_quota_memory")]
    pub memory: Quantity,
    /// Total size of all volume claims.
    #[serde(default = "default_quota_storage")]
    pub storage: Quantity,
    /// Most pods at once.
    #[serde(default = "default_quota_pods")]
    #[schemars(range(min = 1, max = 1000))]
    pub pods: i32,
}

impl Default for QuotaSpec {
    fn default() -> Self {
        Self {
            cpu: default_quota_cpu(),
            memory: default_quota_memory(),
            storage: default_quota_storage(),
            pods: default_quota_pods(),
        }
    }
}

fn default_quota_cpu() -> Quantity {
    Quantity::from("4")
}
fn default_quota_memory() -> Quantity {
    Quantity::from("4Gi")
}
fn default_quota_storage() -> Quantity {
    Quantity::from("10Gi")
}
fn default_quota_pods() -> i32 {
    20
}

/// A person who may enter the tenant.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// The person's e-mail address, in lower case.
    #[schemars(pattern(EMAIL_PATTERN), length(min = 3, max = 254))]
    pub user: String,
    /// What they may do: Admin (everything), Editor (write and run flows), Viewer (read only).
    pub role: Role,
}

/// What deleting the Tenant does to its data.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeletionPolicy {
    /// Keep the database volume and credentials; a new Tenant of the same name adopts them.
    #[default]
    Retain,
    /// Remove the namespace and everything in it.
    Delete,
}
