//! The Tenant's script-task blocks: `spec.tasks` (how script tasks run),
//! `spec.storage` (where files go) and `spec.secrets` (what `secret()`
//! reads). Their doc comments are the CRD's descriptions.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::quantity::Quantity;
use crate::tenant::{ComputeResources, OBJECT_NAME_PATTERN, default_storage_size};

/// A container image reference with an optional tag and digest (task
/// images: `python:3.12-slim`, `ghcr.io/acme/tools:1`).
pub const TASK_IMAGE_PATTERN: &str = r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$";
/// An image pattern of `spec.tasks.allowedImages`: image characters and `*`.
pub const IMAGE_GLOB_PATTERN: &str = r"^[A-Za-z0-9./:_@*-]+$";
/// An ISO-8601 duration of hours, minutes and seconds (`PT1H`, `PT90M`,
/// `PT1H30M`, `PT0.5S`).
pub const DURATION_PATTERN: &str = r"^PT([0-9]+H)?([0-9]+M)?([0-9]+(\.[0-9]+)?S)?$";
/// An S3 endpoint URL.
pub const S3_ENDPOINT_PATTERN: &str = r"^https?://[^\s/?#]+(/[^\s?#]*)?$";
/// An S3 bucket name.
pub const BUCKET_PATTERN: &str = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$";
/// An S3 region.
pub const REGION_PATTERN: &str = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$";
/// Most entries of `spec.tasks.allowedImages`.
pub const MAX_ALLOWED_IMAGES: usize = 64;
/// Most Secrets in `spec.secrets`.
pub const MAX_SECRETS: usize = 64;
/// Label every task pod carries; the task pods' NetworkPolicy selects it.
pub const TASK_POD_LABEL: &str = "atoll.dev/task-pod";

/// How script tasks run.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TasksSpec {
    /// Where script tasks run unless a task sets taskRunner: Kubernetes (default) runs one pod per task attempt in the tenant's namespace; Process runs a local process inside the instance's container (the instance image has no shell, so only for custom images and trusted setups).
    #[serde(default)]
    pub runner: TaskRunner,

    /// Container image of script tasks that set no containerImage, with tag (for example python:3.12-slim). Unset: every task of the Kubernetes runner must name its image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(TASK_IMAGE_PATTERN), length(min = 1, max = 255))]
    pub image: Option<String>,

    /// CPU and memory of each task pod unless the task sets its own. Task pods count in spec.quota like every pod of the namespace.
    #[serde(default = "default_task_resources")]
    pub resources: ComputeResources,

    /// Most task pods running at the same time; further tasks wait for a free place instead of failing.
    #[serde(default = "default_max_concurrent_pods")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_concurrent_pods: i32,

    /// Images task pods may use, as patterns where * matches any run of characters (python:*, ghcr.io/acme/*). Empty (default): any image. A task naming another image fails with a message saying so.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[schemars(extend("items" = {
        "type": "string",
        "description": "An image pattern: image characters, with * matching any run of characters.",
        "pattern": IMAGE_GLOB_PATTERN,
        "minLength": 1,
        "maxLength": 255
    }))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub allowed_images: Vec<String>,

    /// Longest a task pod may run unless the task sets its own timeout, as an ISO-8601 duration of hours, minutes and seconds (PT1H, PT30M, PT1H30M). A pod running longer is deleted and the task fails.
    #[serde(default = "default_task_timeout")]
    #[schemars(pattern(DURATION_PATTERN), length(min = 3, max = 32))]
    #[x_kube(
        validation = Rule::new("self.matches('[1-9]')")
            .message("spec.tasks.timeout must be longer than zero")
            .reason(Reason::FieldValueInvalid)
    )]
    pub timeout: String,
}

impl Default for TasksSpec {
    fn default() -> Self {
        Self {
            runner: TaskRunner::default(),
            image: None,
            resources: default_task_resources(),
            max_concurrent_pods: default_max_concurrent_pods(),
            allowed_images: Vec::new(),
            timeout: default_task_timeout(),
        }
    }
}

fn default_task_resources() -> ComputeResources {
    ComputeResources::of(("100m", "128Mi"), ("1", "512Mi"))
}

fn default_max_concurrent_pods() -> i32 {
    4
}

fn default_task_timeout() -> String {
    "PT1H".to_owned()
}

/// Where a script task runs.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TaskRunner {
    /// One pod per task attempt in the tenant's namespace (default).
    #[default]
    Kubernetes,
    /// A local process in the instance's container.
    Process,
}

impl TaskRunner {
    /// The name the instance reads (`ATOLL_TASK_RUNNER`).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskRunner::Kubernetes => "Kubernetes",
            TaskRunner::Process => "Process",
        }
    }
}

/// The instance's internal storage.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStorageSpec {
    /// Size of the storage volume (PersistentVolumeClaim instance-storage, ReadWriteOnce), counted in spec.quota.storage. Unused with s3. Growing it needs a storage class that allows expansion.
    #[serde(default = "default_storage_size")]
    pub size: Quantity,
    /// Storage class of the volume. Defaults to the cluster's default class. Unused with s3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(OBJECT_NAME_PATTERN), length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,
    /// Keep files in an S3-compatible object store instead of a volume (required for more than one instance replica). The operator then creates no volume; an existing one is kept, with its files, until removed by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Storage>,
}

impl Default for InstanceStorageSpec {
    fn default() -> Self {
        Self {
            size: default_storage_size(),
            storage_class_name: None,
            s3: None,
        }
    }
}

/// An S3-compatible object store.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct S3Storage {
    /// Endpoint URL of the store (for example https://s3.eu-west-1.amazonaws.com or http://minio.storage.svc:9000). The instance reaches it through its egress policy: an endpoint inside the cluster or on a private network is blocked like every private address.
    #[schemars(pattern(S3_ENDPOINT_PATTERN), length(min = 8, max = 2048))]
    pub endpoint: String,
    /// The bucket; it must exist. Give each tenant its own bucket (or credentials limited to its own prefix).
    #[schemars(pattern(BUCKET_PATTERN))]
    pub bucket: String,
    /// The region. Defaults to us-east-1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(REGION_PATTERN), length(min = 1, max = 64))]
    pub region: Option<String>,
    /// Secret in the tenant's namespace holding the credentials under the keys accessKeyId and secretAccessKey. The instance reads them from its environment; the operator never reads them.
    pub credentials_secret_ref: LocalSecretRef,
}

/// Key of the access key id in an S3 credentials Secret.
pub const S3_ACCESS_KEY_ID_KEY: &str = "accessKeyId";
/// Key of the secret access key in an S3 credentials Secret.
pub const S3_SECRET_ACCESS_KEY_KEY: &str = "secretAccessKey";

/// A Secret in the tenant's namespace.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LocalSecretRef {
    /// Name of the Secret.
    #[schemars(pattern(OBJECT_NAME_PATTERN), length(min = 1, max = 253))]
    pub name: String,
}
