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

/// Where the instance reports its activity, on the metrics listener
/// ([`METRICS_LISTEN`], [`METRICS_PORT`]) only: the operator reads it to
/// decide when an idle tenant may sleep and when it must wake for its next
/// scheduled run. Answered with an [`InstanceActivity`] as JSON.
pub const ACTIVITY_PATH: &str = "/activity";

/// What `GET` [`ACTIVITY_PATH`] answers (JSON, camelCase; times are RFC 3339
/// in UTC, `null` when there is none).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceActivity {
    /// The last request a user or a client made on the public listener (the
    /// API, the web UI and its assets, webhooks), to the millisecond; the
    /// probes (`/healthz`, `/readyz`), task pods' file transfers and the
    /// metrics listener do not count. `None` until the first one.
    pub last_request_at: Option<jiff::Timestamp>,
    /// Executions in flight (CREATED, RUNNING, RETRYING, KILLING), not
    /// counting a retry of a whole execution that waits for its delay
    /// (that is a timer: [`InstanceActivity::next_timer_at`]).
    pub running: u64,
    /// Executions QUEUED behind their flow's concurrency limit.
    pub queued: u64,
    /// Executions PAUSED (by a Pause task or by hand).
    pub paused: u64,
    /// The earliest moment the instance acts on its own on work already
    /// stored: a paused execution resuming (a Pause task's `delay` or
    /// `pauseDuration`) or failing (its `timeout`), a retried execution
    /// starting after its delay. At or before now: due. `None`: no timer
    /// (a pause without one waits for a person).
    pub next_timer_at: Option<jiff::Timestamp>,
    /// The earliest tick an enabled Schedule trigger of an enabled flow
    /// fires next (each in its cron's time zone, after the last tick the
    /// instance handled). At or before now when ticks are due: missed ticks
    /// its `recoverMissedSchedules` runs, or a backfill in progress.
    /// `None`: no schedule.
    pub next_schedule_at: Option<jiff::Timestamp>,
    /// When this instance process started.
    pub started_at: jiff::Timestamp,
    /// What happens to schedule ticks missed while no instance ran, for
    /// triggers that do not set their own `recoverMissedSchedules`.
    pub recover_missed_schedules: RecoverMissedSchedules,
}

/// Kestra's `recoverMissedSchedules`: which schedule ticks missed while no
/// instance ran are fired when one starts again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RecoverMissedSchedules {
    /// Every missed tick (Kestra's default).
    #[default]
    All,
    /// Only the most recent missed tick.
    Last,
    /// None of them.
    None,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_activity_report_reads_as_documented() {
        let text = r#"{"lastRequestAt":null,"running":1,"queued":0,"paused":2,
            "nextTimerAt":"2026-12-07T19:00:00.250Z","nextScheduleAt":null,
            "startedAt":"2026-12-07T18:00:00Z","recoverMissedSchedules":"ALL"}"#;
        let activity: InstanceActivity = serde_json::from_str(text).expect("reads");
        assert_eq!(activity.last_request_at, None);
        assert_eq!(
            (activity.running, activity.queued, activity.paused),
            (1, 0, 2)
        );
        assert_eq!(
            activity.next_timer_at.map(|t| t.to_string()).as_deref(),
            Some("2026-12-07T19:00:00.25Z")
        );
        assert_eq!(
            activity.recover_missed_schedules,
            RecoverMissedSchedules::All
        );
        // Written back: the same fields, absent times as null.
        let written = serde_json::to_value(&activity).expect("writes");
        assert_eq!(written["nextScheduleAt"], serde_json::Value::Null);
        assert_eq!(written["startedAt"], "2026-12-07T18:00:00Z");
        assert_eq!(
            serde_json::to_value(RecoverMissedSchedules::None).expect("writes"),
            "NONE"
        );
    }
}
