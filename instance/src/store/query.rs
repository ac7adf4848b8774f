//! What the statements in `sql.rs` share: the execution filter (one
//! builder for search and count), row decoding, inserting and updating an
//! execution, appending log lines, and how values are stored (times as microseconds, executions as JSON,
//! labels as one searchable string).

use jiff::Timestamp;
use sqlx::{QueryBuilder, Row};

use super::dialect::Dialect;
use super::sql::SqlRepository;
use super::{ExecutionFilter, FlowRecord, StoreError, TriggerKey, TriggerState, query_error};
use crate::execution::{Execution, LogEntry, NewLog};

/// Inserts an execution.
const INSERT: &str = "INSERT INTO executions (id, namespace, flow_id, state, finished, created_at, updated_at, body, labels, not_before, lease_owner, lease_until)
     VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9, $10, $11)";

/// [`INSERT`] if the flow's latest revision is `$12` and live.
const INSERT_IF_LATEST: &str = "INSERT INTO executions (id, namespace, flow_id, state, finished, created_at, updated_at, body, labels, not_before, lease_owner, lease_until)
     SELECT $1, $2, $3, $4, $5, $6, $6, $7, $8, $9, $10, $11
     WHERE EXISTS (
         SELECT 1 FROM (
             SELECT revision, deleted FROM flows WHERE namespace = $2 AND id = $3
             ORDER BY revision DESC LIMIT 1) latest
         WHERE latest.revision = $12 AND latest.deleted = FALSE)";

/// Writes an execution its owner holds.
const UPDATE: &str = "UPDATE executions
     SET state = $1, finished = $2, updated_at = $3, body = $4,
         lease_owner = $5, lease_until = $6
     WHERE id = $7 AND lease_owner = $8";

/// [`UPDATE`], and the queued executions of the flow (`$9`/`$10`) made
/// claimable; both see the same rows, and touch different ones.
const WAKE_AND_UPDATE: &str = "WITH woken AS (
         UPDATE executions SET not_before = 0
         WHERE namespace = $9 AND flow_id = $10 AND finished = FALSE
           AND state = 'QUEUED' AND id <> $7)
     UPDATE executions
     SET state = $1, finished = $2, updated_at = $3, body = $4,
         lease_owner = $5, lease_until = $6
     WHERE id = $7 AND lease_owner = $8";

/// Log lines per `INSERT`: 7 parameters each, far below both databases'
/// limit on parameters in one statement (SQLite 32766, PostgreSQL 65535).
pub(super) const LOG_ROWS: usize = 1000;

impl<DB> SqlRepository<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'a> &'a str:
        sqlx::Encode<'a, DB> + sqlx::Decode<'a, DB> + sqlx::Type<DB> + sqlx::ColumnIndex<DB::Row>,
    for<'a> Option<&'a str>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> i64: sqlx::Encode<'a, DB> + sqlx::Decode<'a, DB> + sqlx::Type<DB>,
    for<'a> Option<i64>: sqlx::Encode<'a, DB> + sqlx::Decode<'a, DB> + sqlx::Type<DB>,
    for<'a> bool: sqlx::Encode<'a, DB> + sqlx::Decode<'a, DB> + sqlx::Type<DB>,
    for<'a> String: sqlx::Decode<'a, DB> + sqlx::Type<DB>,
    for<'a> Option<String>: sqlx::Decode<'a, DB> + sqlx::Type<DB>,
{
    /// `head` (a `SELECT … FROM executions`) and the filter's `WHERE`
    /// clause: one condition per criterion given, one per label.
    pub(super) fn execution_search(head: &str, filter: &ExecutionFilter) -> QueryBuilder<DB> {
        let mut query = QueryBuilder::new(head);
        query.push(" WHERE TRUE");
        if let Some(namespace) = &filter.namespace {
            Self::push_namespace(&mut query, "namespace", namespace);
        }
        if let Some(flow_id) = &filter.flow_id {
            query.push(" AND flow_id = ").push_bind(flow_id.as_str());
        }
        if !filter.states.is_empty() {
            query.push(" AND state IN (");
            let mut states = query.separated(", ");
            for state in &filter.states {
                states.push_bind(state.as_str());
            }
            query.push(")");
        }
        if let Some(from) = filter.created_from {
            query.push(" AND created_at >= ").push_bind(micros(from));
        }
        if let Some(until) = filter.created_until {
            query.push(" AND created_at < ").push_bind(micros(until));
        }
        for label in &filter.labels {
            let needle = label_needle(&label.key, &label.value);
            query
                .push(format_args!(" AND {}(labels, ", DB::POSITION))
                .push_bind(needle.as_str())
                .push(") > 0");
        }
        query
    }

    /// `AND` the namespace `column` is `namespace` or below it.
    pub(super) fn push_namespace(query: &mut QueryBuilder<DB>, column: &str, namespace: &str) {
        query
            .push(format_args!(" AND ({column} = "))
            .push_bind(namespace)
            .push(format_args!(" OR {column} LIKE "))
            .push_bind(namespace_prefix(namespace).as_str())
            .push(" ESCAPE '\\')");
    }

    /// Inserts a new execution; with `lease` (owner, until), already
    /// claimed by that owner. With `if_latest`, only while its flow
    /// revision is the flow's latest live one: false (nothing written)
    /// otherwise.
    pub(super) async fn insert_execution_in<'e>(
        executor: impl sqlx::Executor<'e, Database = DB>,
        execution: &Execution,
        not_before: i64,
        lease: Option<(&str, i64)>,
        if_latest: bool,
    ) -> Result<bool, StoreError> {
        let body = encode_execution(execution)?;
        let labels = label_text(&execution.labels);
        let mut query = sqlx::query(if if_latest { INSERT_IF_LATEST } else { INSERT })
            .bind(execution.id.as_str())
            .bind(execution.namespace.as_str())
            .bind(execution.flow_id.as_str())
            .bind(execution.state.current.as_str())
            .bind(execution.state.current.is_terminal())
            .bind(micros(Timestamp::now()))
            .bind(body.as_str())
            .bind(labels.as_str())
            .bind(not_before)
            .bind(lease.map(|(owner, _)| owner))
            .bind(lease.map(|(_, until)| until));
        if if_latest {
            query = query.bind(execution.flow_revision);
        }
        match query.execute(executor).await {
            Ok(result) => Ok(DB::rows_affected(&result) > 0),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(StoreError::Duplicate(execution.id.clone()))
            }
            Err(e) => Err(query_error("insert execution")(e)),
        }
    }

    /// Writes an execution `owner` holds, renewing its lease (released when
    /// it has finished): false when `owner` no longer holds it. With `wake`
    /// (its flow), the same statement makes the flow's queued executions
    /// claimable ([`Dialect::WAKE_IN_SAVE`]).
    pub(super) async fn update_execution_in<'e>(
        executor: impl sqlx::Executor<'e, Database = DB>,
        execution: &Execution,
        owner: &str,
        lease: std::time::Duration,
        wake: Option<(&str, &str)>,
    ) -> Result<bool, StoreError> {
        let body = encode_execution(execution)?;
        let finished = execution.state.current.is_terminal();
        let mut query = sqlx::query(if wake.is_some() {
            WAKE_AND_UPDATE
        } else {
            UPDATE
        })
        .bind(execution.state.current.as_str())
        .bind(finished)
        .bind(micros(Timestamp::now()))
        .bind(body.as_str())
        .bind((!finished).then_some(owner))
        .bind((!finished).then(|| lease_until(lease)))
        .bind(execution.id.as_str())
        .bind(owner);
        if let Some((namespace, flow_id)) = wake {
            query = query.bind(namespace).bind(flow_id);
        }
        let result = query
            .execute(executor)
            .await
            .map_err(query_error("save execution"))?;
        Ok(DB::rows_affected(&result) > 0)
    }

    /// Appends log lines, one multi-row `INSERT` per [`LOG_ROWS`] lines.
    pub(super) async fn insert_logs_in(
        conn: &mut DB::Connection,
        logs: &[NewLog],
    ) -> Result<(), StoreError> {
        for chunk in logs.chunks(LOG_ROWS) {
            let mut query = QueryBuilder::<DB>::new(
                "INSERT INTO logs (execution_id, task_run_id, task_id, attempt_number, level, message, ts) ",
            );
            query.push_values(chunk, |mut row, log| {
                row.push_bind(log.execution_id.as_str())
                    .push_bind(log.task_run_id.as_deref())
                    .push_bind(log.task_id.as_deref())
                    .push_bind(log.attempt_number)
                    .push_bind(log.level.as_str())
                    .push_bind(log.message.as_str())
                    .push_bind(micros(log.timestamp));
            });
            query
                .build()
                .execute(&mut *conn)
                .await
                .map_err(query_error("append logs"))?;
        }
        Ok(())
    }

    pub(super) fn flow_record(row: &DB::Row) -> FlowRecord {
        FlowRecord {
            namespace: row.get("namespace"),
            id: row.get("id"),
            revision: row.get("revision"),
            source: row.get("source"),
            deleted: row.get("deleted"),
            updated: from_micros(row.get("updated_at")),
        }
    }

    pub(super) fn log_entry(row: &DB::Row) -> LogEntry {
        LogEntry {
            seq: row.get("seq"),
            execution_id: row.get("execution_id"),
            task_run_id: row.get("task_run_id"),
            task_id: row.get("task_id"),
            attempt_number: row.get("attempt_number"),
            level: row.get("level"),
            message: row.get("message"),
            timestamp: from_micros(row.get("ts")),
        }
    }

    pub(super) fn trigger_state(row: &DB::Row) -> TriggerState {
        TriggerState {
            key: TriggerKey {
                namespace: row.get("namespace"),
                flow_id: row.get("flow_id"),
                trigger_id: row.get("trigger_id"),
            },
            cursor: row.get::<Option<i64>, _>("cursor_at").map(from_micros),
            disabled: row.get("disabled"),
            last_execution_id: row.get("last_execution_id"),
            last_fired: row.get::<Option<i64>, _>("last_fired_at").map(from_micros),
        }
    }
}

/// Microseconds since the Unix epoch: the one time format both databases store.
pub(super) fn micros(ts: Timestamp) -> i64 {
    ts.as_microsecond()
}

pub(super) fn from_micros(us: i64) -> Timestamp {
    Timestamp::from_microsecond(us).unwrap_or(Timestamp::UNIX_EPOCH)
}

pub(super) fn lease_until(lease: std::time::Duration) -> i64 {
    let lease = i64::try_from(lease.as_micros()).unwrap_or(i64::MAX / 2);
    micros(Timestamp::now()).saturating_add(lease)
}

pub(super) fn encode_execution(execution: &Execution) -> Result<String, StoreError> {
    serde_json::to_string(execution).map_err(|source| StoreError::Corrupt {
        what: "execution",
        source,
    })
}

pub(super) fn decode_execution(body: &str) -> Result<Execution, StoreError> {
    serde_json::from_str(body).map_err(|source| StoreError::Corrupt {
        what: "execution",
        source,
    })
}

/// `LIKE` pattern for a namespace's children, with wildcards escaped.
fn namespace_prefix(namespace: &str) -> String {
    let escaped = namespace
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("{escaped}.%")
}

/// Labels as `\u{1f}key=value\u{1f}…` so one substring test finds a label.
pub(super) fn label_text(labels: &[crate::flow::Label]) -> String {
    let mut text = String::from("\u{1f}");
    for label in labels {
        text.push_str(&label.key);
        text.push('=');
        text.push_str(&label.value);
        text.push('\u{1f}');
    }
    text
}

/// The search needle of one label.
fn label_needle(key: &str, value: &str) -> String {
    format!("\u{1f}{key}={value}\u{1f}")
}
