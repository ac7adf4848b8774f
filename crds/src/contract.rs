//! The environment contract between the operator and the instance: the
//! variables the operator renders into a tenant's instance Deployment and
//! the instance reads at start-up. One list, used by both sides, so the two
//! cannot drift apart (a contract test checks that every name the operator
//! renders is one the instance reads and uses).

/// The tenant's name; tokens must be issued for it (`aud`).
pub const TENANT: &str = "ATOLL_TENANT";
/// The Tenant object's Kubernetes uid; tokens must carry it (`tenant_uid`),
/// so a token for a same-named tenant elsewhere (another cluster, or a
/// deleted and re-created Tenant) is refused.
pub const TENANT_UID: &str = "ATOLL_TENANT_UID";
/// The database URL (from the tenant's database Secret).
pub const DATABASE_URL: &str = "ATOLL_DATABASE_URL";
/// Where the API listens (the port the Ingress routes to).
pub const LISTEN: &str = "ATOLL_LISTEN";
/// Where `/metrics` is served: a separate port the Ingress does not route.
pub const METRICS_LISTEN: &str = "ATOLL_METRICS_LISTEN";
/// The URL users reach the instance at.
pub const PUBLIC_URL: &str = "ATOLL_PUBLIC_URL";
/// Identity's issuer URL; only tokens it signs are accepted.
pub const IDENTITY_ISSUER: &str = "ATOLL_IDENTITY_ISSUER";
/// Log filter: error, warn, info, debug or trace.
pub const LOG_LEVEL: &str = "ATOLL_LOG_LEVEL";
/// Most task runs executing at the same time.
pub const MAX_CONCURRENT_TASK_RUNS: &str = "ATOLL_MAX_CONCURRENT_TASK_RUNS";
/// Executions (with their logs and outputs) older than this many days are
/// deleted; unset keeps them forever.
pub const EXECUTION_RETENTION_DAYS: &str = "ATOLL_EXECUTION_RETENTION_DAYS";
/// `true` lets tasks (HTTP requests) reach private, loopback, link-local and
/// metadata addresses; off by default.
pub const HTTP_ALLOW_PRIVATE: &str = "ATOLL_HTTP_ALLOW_PRIVATE";

/// The tenant's namespace: where task pods run and secrets are read.
pub const NAMESPACE: &str = "ATOLL_NAMESPACE";
/// The instance's own container image: task pods use it for the small
/// helper containers that fetch input files and upload output files.
pub const INSTANCE_IMAGE: &str = "ATOLL_INSTANCE_IMAGE";
/// The URL task pods reach the instance's API at (the in-cluster Service).
pub const TASK_API_URL: &str = "ATOLL_TASK_API_URL";
/// The default task runner of script tasks: `Process` or `Kubernetes`.
pub const TASK_RUNNER: &str = "ATOLL_TASK_RUNNER";
/// The default container image of script tasks that name none.
pub const TASK_IMAGE: &str = "ATOLL_TASK_IMAGE";
/// Default resources of task pods, as JSON: `{"requests": {"cpu": "100m",
/// "memory": "128Mi"}, "limits": {...}}` (Kubernetes quantities).
pub const TASK_RESOURCES: &str = "ATOLL_TASK_RESOURCES";
/// Most task pods running at once; more wait for a free place.
pub const TASK_MAX_PODS: &str = "ATOLL_TASK_MAX_PODS";
/// Images task pods may use: comma-separated patterns where `*` matches
/// any run of characters (`python:*,ghcr.io/acme/*`); unset allows any.
pub const TASK_ALLOWED_IMAGES: &str = "ATOLL_TASK_ALLOWED_IMAGES";
/// Longest a task pod may run unless the task sets its own `timeout`
/// (ISO-8601 duration, `PT1H`).
pub const TASK_TIMEOUT: &str = "ATOLL_TASK_TIMEOUT";
/// A directory holding one file per secret (file name = secret name,
/// content = value): the tenant's labelled Secrets, mounted by the operator.
pub const SECRETS_DIR: &str = "ATOLL_SECRETS_DIR";
/// Internal storage on a volume: the directory it is mounted at.
pub const STORAGE_DIR: &str = "ATOLL_STORAGE_DIR";
/// Internal storage in an S3-compatible object store: its endpoint URL.
/// With it, `STORAGE_S3_BUCKET` and the two credentials are required.
pub const STORAGE_S3_ENDPOINT: &str = "ATOLL_STORAGE_S3_ENDPOINT";
/// The bucket (it must exist).
pub const STORAGE_S3_BUCKET: &str = "ATOLL_STORAGE_S3_BUCKET";
/// The region (`us-east-1` when unset).
pub const STORAGE_S3_REGION: &str = "ATOLL_STORAGE_S3_REGION";
/// Access key id (from a Secret).
pub const STORAGE_S3_ACCESS_KEY_ID: &str = "ATOLL_STORAGE_S3_ACCESS_KEY_ID";
/// Secret access key (from a Secret).
pub const STORAGE_S3_SECRET_ACCESS_KEY: &str = "ATOLL_STORAGE_S3_SECRET_ACCESS_KEY";

/// Every variable of the contract. The operator renders only names from
/// this list (besides the Tenant's own `spec.instance.env`, which may not
/// start with `ATOLL_`); the instance reads every one of them.
pub const ALL: &[&str] = &[
    TENANT,
    TENANT_UID,
    DATABASE_URL,
    LISTEN,
    METRICS_LISTEN,
    PUBLIC_URL,
    IDENTITY_ISSUER,
    LOG_LEVEL,
    MAX_CONCURRENT_TASK_RUNS,
    EXECUTION_RETENTION_DAYS,
    HTTP_ALLOW_PRIVATE,
    NAMESPACE,
    INSTANCE_IMAGE,
    TASK_API_URL,
    TASK_RUNNER,
    TASK_IMAGE,
    TASK_RESOURCES,
    TASK_MAX_PODS,
    TASK_ALLOWED_IMAGES,
    TASK_TIMEOUT,
    SECRETS_DIR,
    STORAGE_DIR,
    STORAGE_S3_ENDPOINT,
    STORAGE_S3_BUCKET,
    STORAGE_S3_REGION,
    STORAGE_S3_ACCESS_KEY_ID,
    STORAGE_S3_SECRET_ACCESS_KEY,
];

/// The port the instance serves `/metrics` on in its pod.
pub const METRICS_PORT: u16 = 9090;
