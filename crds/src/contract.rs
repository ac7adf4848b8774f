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
];

/// The port the instance serves `/metrics` on in its pod.
pub const METRICS_PORT: u16 = 9090;
