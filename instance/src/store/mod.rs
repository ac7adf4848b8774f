//! Durable state: flows (every revision), executions (which double as the
//! work queue) and logs, behind one [`Repository`] trait.
//!
//! One implementation serves SQLite and PostgreSQL: `sql.rs`, generic over
//! the sqlx database, with `dialect.rs` holding what really differs
//! (opening and migrating, how a writing transaction excludes others, the
//! claim's row lock, the substring function, the retention purge). Shared
//! statement pieces (the execution filter, row decoding) are in `query.rs`.
//! [`Store`] picks the database from a URL. This file is the trait and
//! `Store`'s forwarding of each of its methods, hence its length.
//!
//! Why generic over `sqlx::Database` rather than one `sqlx::Any` path (and
//! identity's store likewise): `Any` copies every bound value and every
//! returned row into its own value type and boxes each call, on the hot path
//! (creating and claiming executions, writing them and their logs);
//! `Any`'s `QueryBuilder` writes `?` placeholders, which PostgreSQL
//! rejects, so the filters could not be built with it; and `Any` decodes no
//! `bool` from SQLite's integer columns, where the instance's PostgreSQL
//! schema uses `BOOLEAN`. Generic code is compiled once per database and
//! runs the drivers' own types, at no cost; the price is the `match` in
//! [`Store`]'s forwarding below, which the compiler checks.
//!
//! The queue: an unfinished execution is claimed by a process with a lease
//! (owner + expiry). The owner renews the lease while it works; when a
//! process dies its leases expire and another claim picks the execution up,
//! so nothing is lost and nothing runs twice at the same time. A process
//! that creates an execution it can drive at once creates it already
//! claimed ([`Repository::insert_claimed_execution`]): one statement
//! instead of an insert, a claim and the claimer's poll.

use std::future::Future;
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

use crate::execution::{Execution, LogEntry, NewLog, State};

mod activity;
mod dialect;
mod kv;
mod query;
mod sessions;
mod sql;
mod trigger_controls;

pub use activity::ExecutionActivity;
pub use dialect::Dialect;
pub use kv::{
    KvEntry, KvType, MAX_KV_SEARCH, MAX_VALUE_BYTES as MAX_KV_VALUE_BYTES,
    check_key as check_kv_key,
};
pub use sessions::{PendingLogin, RefreshedTokens, SessionRecord};
pub use sql::SqlRepository;
pub use trigger_controls::TriggerControl;

/// The store on SQLite.
pub type SqliteRepository = SqlRepository<sqlx::Sqlite>;
/// The store on PostgreSQL.
pub type PostgresRepository = SqlRepository<sqlx::Postgres>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("database query `{action}` failed: {source}")]
    Query {
        action: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("stored {what} is not valid JSON: {source}")]
    Corrupt {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// Another process holds (or took over) the execution's lease.
    #[error("the lease on execution {0} is no longer held by this process")]
    LeaseLost(String),
    #[error("execution {0} already exists")]
    Duplicate(String),
    #[error("unsupported database URL (expected sqlite: or postgres:)")]
    UnsupportedUrl,
}

pub(crate) fn query_error(action: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { action, source }
}

/// One stored revision of a flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowRecord {
    pub namespace: String,
    pub id: String,
    pub revision: i64,
    pub source: String,
    pub deleted: bool,
    pub updated: Timestamp,
}

/// What a flow save requires of the flow's latest revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowExpect {
    /// Saved whether or not the flow exists.
    Any,
    /// Only a new flow (none yet, or deleted): a create.
    Absent,
    /// Only an existing live flow: an update.
    Live,
}

impl FlowExpect {
    fn met_by(self, latest: Option<&FlowRecord>) -> bool {
        let live = latest.is_some_and(|l| !l.deleted);
        match self {
            FlowExpect::Any => true,
            FlowExpect::Absent => !live,
            FlowExpect::Live => live,
        }
    }
}

/// Which executions a search returns, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecutionFilter {
    /// Matches this namespace and every namespace below it.
    pub namespace: Option<String>,
    pub flow_id: Option<String>,
    pub states: Vec<State>,
    /// Every one of these labels.
    pub labels: Vec<crate::flow::Label>,
    /// Created at or after this instant (the web UI's time range).
    pub created_from: Option<jiff::Timestamp>,
    /// Created before this instant.
    pub created_until: Option<jiff::Timestamp>,
    pub limit: u32,
    pub offset: u32,
}

/// How many labels one execution search through the API can filter on
/// (each is one more condition in the statement).
pub const MAX_LABEL_FILTERS: usize = 5;

/// What the owner of a lease learns when renewing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub held: bool,
    pub kill_requested: bool,
    /// A user asked for the execution to pause (see `request_pause`).
    pub pause_requested: bool,
}

/// One trigger of one flow.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TriggerKey {
    pub namespace: String,
    pub flow_id: String,
    pub trigger_id: String,
}

/// What a trigger has done so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerState {
    pub key: TriggerKey,
    /// The last schedule tick handled (fired, or skipped on purpose).
    pub cursor: Option<Timestamp>,
    /// The trigger was seen disabled; enabling it again restarts from the present.
    pub disabled: bool,
    pub last_execution_id: Option<String>,
    pub last_fired: Option<Timestamp>,
}

/// Everything the engine and the API store.
pub trait Repository: Send + Sync + 'static {
    /// Checks the database answers (readiness).
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Stores `source` as the next revision of the flow, unless it equals the
    /// latest (live) revision, which is then returned unchanged. The check
    /// of `expect` and the write are one transaction, serialised with every
    /// other write of the flow: `None` when the flow's presence is not what
    /// `expect` asks (never for [`FlowExpect::Any`]).
    fn save_flow(
        &self,
        namespace: &str,
        id: &str,
        source: &str,
        expect: FlowExpect,
    ) -> impl Future<Output = Result<Option<FlowRecord>, StoreError>> + Send;

    /// The given revision, or the latest live one when `revision` is `None`.
    fn get_flow(
        &self,
        namespace: &str,
        id: &str,
        revision: Option<i64>,
    ) -> impl Future<Output = Result<Option<FlowRecord>, StoreError>> + Send;

    /// Latest live revision of every flow, optionally under a namespace.
    fn list_flows(
        &self,
        namespace: Option<&str>,
    ) -> impl Future<Output = Result<Vec<FlowRecord>, StoreError>> + Send;

    /// Every revision of a flow, oldest first (deletions included).
    fn flow_revisions(
        &self,
        namespace: &str,
        id: &str,
    ) -> impl Future<Output = Result<Vec<FlowRecord>, StoreError>> + Send;

    /// Marks the flow deleted (a tombstone revision); false if it did not exist.
    fn delete_flow(
        &self,
        namespace: &str,
        id: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Enqueues a new execution.
    fn insert_execution(
        &self,
        execution: &Execution,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Enqueues a new execution already claimed by `owner`, for the process
    /// that created it to drive at once: creating and claiming are one
    /// statement, and no other process takes it while the lease holds.
    fn insert_claimed_execution(
        &self,
        execution: &Execution,
        owner: &str,
        lease: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Enqueues a new execution (claimed as by
    /// [`Repository::insert_claimed_execution`] when `claim` is given) only
    /// if its flow revision is still the flow's latest live one, in the
    /// same statement: false, and nothing written, otherwise.
    fn insert_execution_if_latest(
        &self,
        execution: &Execution,
        claim: Option<(&str, Duration)>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Enqueues a new execution that no process claims before `not_before`.
    fn schedule_execution(
        &self,
        execution: &Execution,
        not_before: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn get_execution(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<Execution>, StoreError>> + Send;

    fn search_executions(
        &self,
        filter: &ExecutionFilter,
    ) -> impl Future<Output = Result<Vec<Execution>, StoreError>> + Send;

    /// How many executions match the filter (its limit and offset aside).
    fn count_executions(
        &self,
        filter: &ExecutionFilter,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Claims the oldest unfinished execution whose lease is free or expired.
    fn claim_execution(
        &self,
        owner: &str,
        lease: Duration,
    ) -> impl Future<Output = Result<Option<Execution>, StoreError>> + Send;

    /// Claims one unfinished execution whose lease is free or expired
    /// (whatever its `not_before`), e.g. to resume it.
    fn claim_one(
        &self,
        id: &str,
        owner: &str,
        lease: Duration,
    ) -> impl Future<Output = Result<Option<Execution>, StoreError>> + Send;

    /// Rewrites an ended execution with this body (its labels, its final
    /// state), leaving it ended. False when it has not ended (or does not
    /// exist).
    fn rewrite_ended_execution(
        &self,
        execution: &Execution,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Puts an ended execution back in the queue with this body (restart).
    /// False when it has not ended (or does not exist).
    fn requeue_execution(
        &self,
        execution: &Execution,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Deletes an ended execution and its logs: `Some(true)` when deleted,
    /// `Some(false)` when it has not ended, `None` when unknown.
    fn delete_execution(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<bool>, StoreError>> + Send;

    /// Deletes at most `limit` ended executions that ended (were last
    /// written) before `before`, with their logs (task runs and outputs
    /// live in the execution), in one transaction; returns how many.
    /// Unfinished executions (running, paused, queued) are never deleted.
    fn purge_executions(
        &self,
        before: Timestamp,
        limit: u32,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// (id, namespace, flow id) of the ended executions
    /// [`Repository::purge_executions`] would delete next with the same
    /// arguments (same order), so their files can be deleted with them.
    fn expired_executions(
        &self,
        before: Timestamp,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<(String, String, String)>, StoreError>> + Send;

    /// Writes the execution if `owner` still holds its lease, renewing it;
    /// a finished execution's lease is released. `logs` (lines logged since
    /// the last write) are appended in the same transaction, and only if
    /// the lease is held.
    fn save_execution(
        &self,
        execution: &Execution,
        owner: &str,
        lease: Duration,
        logs: &[NewLog],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Writes a waiting execution (PAUSED, or QUEUED by a concurrency
    /// limit) and gives its lease up: no process claims it before
    /// `not_before` (never, when `None`, until something wakes it).
    fn park_execution(
        &self,
        execution: &Execution,
        owner: &str,
        not_before: Option<Timestamp>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Takes a slot of the flow's concurrency `limit` for the execution
    /// (held by `owner`): true when fewer than `limit` executions of the
    /// flow run and none waits ahead of it. Otherwise, when `queued` is
    /// given (the execution in state QUEUED), it is parked in the same
    /// transaction until an execution of the flow finishes.
    fn admit(
        &self,
        execution: &Execution,
        limit: u32,
        owner: &str,
        queued: Option<&Execution>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Extends the lease if `owner` holds it.
    fn renew_lease(
        &self,
        id: &str,
        owner: &str,
        lease: Duration,
    ) -> impl Future<Output = Result<Lease, StoreError>> + Send;

    /// Gives the lease up so another process (or a restart) can claim at once.
    fn release_lease(
        &self,
        id: &str,
        owner: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Asks whoever runs the execution to kill it. False when it is unknown
    /// or already finished.
    fn request_kill(&self, id: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Asks a RUNNING execution to pause (its owner sees it when renewing
    /// its lease): false when it is not running. With `pause` false,
    /// withdraws the request: false when there was none.
    fn request_pause(
        &self,
        id: &str,
        pause: bool,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    fn append_logs(&self, logs: &[NewLog]) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The state of every trigger that has one.
    fn trigger_states(&self) -> impl Future<Output = Result<Vec<TriggerState>, StoreError>> + Send;

    /// Forgets trigger events recorded before `before`. An event is only
    /// needed while a process might fire it again: a schedule tick until
    /// every cursor has passed it, an ended execution until its lease has
    /// expired; both are minutes, not days.
    fn purge_trigger_events(
        &self,
        before: Timestamp,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Records a trigger's cursor unless it already has a state.
    fn init_trigger(
        &self,
        key: &TriggerKey,
        cursor: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Sets a trigger's cursor and disabled mark (disabling, re-enabling).
    fn reset_trigger(
        &self,
        key: &TriggerKey,
        cursor: Timestamp,
        disabled: bool,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Fires one trigger event at most once: records `event_key` for the
    /// trigger and, in the same transaction, enqueues `execution` and moves
    /// the cursor forward to `cursor`. False (and nothing written) when the
    /// event was already fired, by this process or another.
    fn fire_trigger(
        &self,
        key: &TriggerKey,
        event_key: &str,
        cursor: Option<Timestamp>,
        execution: Option<&Execution>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Log lines of an execution with `seq` greater than `after`, in order.
    fn logs(
        &self,
        execution_id: &str,
        after: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<LogEntry>, StoreError>> + Send;
}

/// The repository picked by the database URL.
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(SqliteRepository),
    Postgres(PostgresRepository),
}

impl Store {
    /// Connects and runs the embedded migrations.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Store::Sqlite(SqliteRepository::connect(url).await?))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Store::Postgres(PostgresRepository::connect(url).await?))
        } else {
            Err(StoreError::UnsupportedUrl)
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => <sqlx::Sqlite as Dialect>::BACKEND,
            Store::Postgres(_) => <sqlx::Postgres as Dialect>::BACKEND,
        }
    }
}

macro_rules! dispatch {
    ($self:ident, $repo:ident => $call:expr) => {
        match $self {
            Store::Sqlite($repo) => $call.await,
            Store::Postgres($repo) => $call.await,
        }
    };
}

impl Repository for Store {
    async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self, r => r.ping())
    }
    async fn save_flow(
        &self,
        ns: &str,
        id: &str,
        source: &str,
        expect: FlowExpect,
    ) -> Result<Option<FlowRecord>, StoreError> {
        dispatch!(self, r => r.save_flow(ns, id, source, expect))
    }
    async fn get_flow(
        &self,
        ns: &str,
        id: &str,
        revision: Option<i64>,
    ) -> Result<Option<FlowRecord>, StoreError> {
        dispatch!(self, r => r.get_flow(ns, id, revision))
    }
    async fn list_flows(&self, ns: Option<&str>) -> Result<Vec<FlowRecord>, StoreError> {
        dispatch!(self, r => r.list_flows(ns))
    }
    async fn flow_revisions(&self, ns: &str, id: &str) -> Result<Vec<FlowRecord>, StoreError> {
        dispatch!(self, r => r.flow_revisions(ns, id))
    }
    async fn delete_flow(&self, ns: &str, id: &str) -> Result<bool, StoreError> {
        dispatch!(self, r => r.delete_flow(ns, id))
    }
    async fn insert_execution(&self, execution: &Execution) -> Result<(), StoreError> {
        dispatch!(self, r => r.insert_execution(execution))
    }
    async fn insert_claimed_execution(
        &self,
        execution: &Execution,
        owner: &str,
        lease: Duration,
    ) -> Result<(), StoreError> {
        dispatch!(self, r => r.insert_claimed_execution(execution, owner, lease))
    }
    async fn insert_execution_if_latest(
        &self,
        execution: &Execution,
        claim: Option<(&str, Duration)>,
    ) -> Result<bool, StoreError> {
        dispatch!(self, r => r.insert_execution_if_latest(execution, claim))
    }
    async fn schedule_execution(
        &self,
        execution: &Execution,
        not_before: Timestamp,
    ) -> Result<(), StoreError> {
        dispatch!(self, r => r.schedule_execution(execution, not_before))
    }
    async fn get_execution(&self, id: &str) -> Result<Option<Execution>, StoreError> {
        dispatch!(self, r => r.get_execution(id))
    }
    async fn search_executions(
        &self,
        filter: &ExecutionFilter,
    ) -> Result<Vec<Execution>, StoreError> {
        dispatch!(self, r => r.search_executions(filter))
    }
    async fn count_executions(&self, filter: &ExecutionFilter) -> Result<u64, StoreError> {
        dispatch!(self, r => r.count_executions(filter))
    }
    async fn claim_execution(
        &self,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<Execution>, StoreError> {
        dispatch!(self, r => r.claim_execution(owner, lease))
    }
    async fn claim_one(
        &self,
        id: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<Execution>, StoreError> {
        dispatch!(self, r => r.claim_one(id, owner, lease))
    }
    async fn rewrite_ended_execution(&self, execution: &Execution) -> Result<bool, StoreError> {
        dispatch!(self, r => r.rewrite_ended_execution(execution))
    }
    async fn requeue_execution(&self, execution: &Execution) -> Result<bool, StoreError> {
        dispatch!(self, r => r.requeue_execution(execution))
    }
    async fn delete_execution(&self, id: &str) -> Result<Option<bool>, StoreError> {
        dispatch!(self, r => r.delete_execution(id))
    }
    async fn purge_executions(&self, before: Timestamp, limit: u32) -> Result<u64, StoreError> {
        dispatch!(self, r => r.purge_executions(before, limit))
    }
    async fn expired_executions(
        &self,
        before: Timestamp,
        limit: u32,
    ) -> Result<Vec<(String, String, String)>, StoreError> {
        dispatch!(self, r => r.expired_executions(before, limit))
    }
    async fn save_execution(
        &self,
        execution: &Execution,
        owner: &str,
        lease: Duration,
        logs: &[NewLog],
    ) -> Result<(), StoreError> {
        dispatch!(self, r => r.save_execution(execution, owner, lease, logs))
    }
    async fn park_execution(
        &self,
        execution: &Execution,
        owner: &str,
        not_before: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        dispatch!(self, r => r.park_execution(execution, owner, not_before))
    }
    async fn admit(
        &self,
        execution: &Execution,
        limit: u32,
        owner: &str,
        queued: Option<&Execution>,
    ) -> Result<bool, StoreError> {
        dispatch!(self, r => r.admit(execution, limit, owner, queued))
    }
    async fn renew_lease(
        &self,
        id: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<Lease, StoreError> {
        dispatch!(self, r => r.renew_lease(id, owner, lease))
    }
    async fn release_lease(&self, id: &str, owner: &str) -> Result<(), StoreError> {
        dispatch!(self, r => r.release_lease(id, owner))
    }
    async fn request_kill(&self, id: &str) -> Result<bool, StoreError> {
        dispatch!(self, r => r.request_kill(id))
    }
    async fn request_pause(&self, id: &str, pause: bool) -> Result<bool, StoreError> {
        dispatch!(self, r => r.request_pause(id, pause))
    }
    async fn append_logs(&self, logs: &[NewLog]) -> Result<(), StoreError> {
        dispatch!(self, r => r.append_logs(logs))
    }
    async fn logs(
        &self,
        execution_id: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<LogEntry>, StoreError> {
        dispatch!(self, r => r.logs(execution_id, after, limit))
    }
    async fn trigger_states(&self) -> Result<Vec<TriggerState>, StoreError> {
        dispatch!(self, r => r.trigger_states())
    }
    async fn purge_trigger_events(&self, before: Timestamp) -> Result<u64, StoreError> {
        dispatch!(self, r => r.purge_trigger_events(before))
    }
    async fn init_trigger(&self, key: &TriggerKey, cursor: Timestamp) -> Result<(), StoreError> {
        dispatch!(self, r => r.init_trigger(key, cursor))
    }
    async fn reset_trigger(
        &self,
        key: &TriggerKey,
        cursor: Timestamp,
        disabled: bool,
    ) -> Result<(), StoreError> {
        dispatch!(self, r => r.reset_trigger(key, cursor, disabled))
    }
    async fn fire_trigger(
        &self,
        key: &TriggerKey,
        event_key: &str,
        cursor: Option<Timestamp>,
        execution: Option<&Execution>,
    ) -> Result<bool, StoreError> {
        dispatch!(self, r => r.fire_trigger(key, event_key, cursor, execution))
    }
}
