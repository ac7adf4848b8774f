//! The one implementation of [`Repository`], for SQLite and PostgreSQL.
//!
//! The SQL is the common dialect of both: `$n` parameters (SQLite reads
//! them as numbered), `TRUE`/`FALSE` (SQLite's 1/0; PostgreSQL rewrites
//! `finished = FALSE` to `NOT finished`, so its partial indexes apply),
//! `ON CONFLICT`, `RETURNING` and row values. What differs is in
//! [`Dialect`]. Statements whose shape depends on the call (filters) are
//! built with sqlx's `QueryBuilder`.
//!
//! This file is one `impl Repository` block (a trait impl cannot be split),
//! hence its length; the pieces statements share are in `query.rs`.

use std::time::Duration;

use jiff::Timestamp;
use sqlx::{Database, Pool, QueryBuilder, Row};

use super::dialect::Dialect;
use super::query::{LOG_ROWS, decode_execution, encode_execution, label_text, lease_until, micros};
use super::{
    ExecutionFilter, FlowExpect, FlowRecord, Lease, Repository, StoreError, TriggerKey,
    TriggerState, query_error,
};
use crate::execution::{Execution, LogEntry, NewLog};

/// The store on one database: a pool and the dialect its type names.
#[derive(Debug)]
pub struct SqlRepository<DB: Database> {
    pub(super) pool: Pool<DB>,
}

impl<DB: Database> Clone for SqlRepository<DB> {
    fn clone(&self) -> Self {
        SqlRepository {
            pool: self.pool.clone(),
        }
    }
}

impl<DB: Dialect> SqlRepository<DB> {
    /// Connects to `url`, creating (SQLite) and migrating the database.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Ok(SqlRepository {
            pool: DB::open(url).await?,
        })
    }
}

const FLOW_LATEST: &str = "SELECT namespace, id, revision, source, deleted, updated_at FROM flows
     WHERE namespace = $1 AND id = $2
     ORDER BY revision DESC LIMIT 1";

const INSERT_FLOW: &str = "INSERT INTO flows (namespace, id, revision, source, deleted, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6)";

/// Writes a waiting execution and gives its lease up.
const PARK: &str = "UPDATE executions
     SET state = $1, updated_at = $2, body = $3, not_before = $4,
         lease_owner = NULL, lease_until = NULL, pause_requested = FALSE
     WHERE id = $5 AND lease_owner = $6";

impl<DB> Repository for SqlRepository<DB>
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
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(query_error("ping"))?;
        Ok(())
    }

    async fn save_flow(
        &self,
        namespace: &str,
        id: &str,
        source: &str,
        expect: FlowExpect,
    ) -> Result<Option<FlowRecord>, StoreError> {
        let action = "save flow";
        let mut tx = DB::begin_write(&self.pool, Some((namespace, id)), action).await?;
        let latest = sqlx::query(FLOW_LATEST)
            .bind(namespace)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(query_error(action))?
            .map(|row| Self::flow_record(&row));
        if !expect.met_by(latest.as_ref()) {
            return Ok(None);
        }
        if let Some(latest) = &latest
            && !latest.deleted
            && latest.source == source
        {
            return Ok(Some(latest.clone()));
        }
        let record = FlowRecord {
            namespace: namespace.into(),
            id: id.into(),
            revision: latest.map_or(1, |l| l.revision + 1),
            source: source.into(),
            deleted: false,
            updated: Timestamp::now(),
        };
        sqlx::query(INSERT_FLOW)
            .bind(namespace)
            .bind(id)
            .bind(record.revision)
            .bind(source)
            .bind(false)
            .bind(micros(record.updated))
            .execute(&mut *tx)
            .await
            .map_err(query_error(action))?;
        tx.commit().await.map_err(query_error(action))?;
        Ok(Some(record))
    }

    async fn get_flow(
        &self,
        namespace: &str,
        id: &str,
        revision: Option<i64>,
    ) -> Result<Option<FlowRecord>, StoreError> {
        let row = match revision {
            None => sqlx::query(FLOW_LATEST)
                .bind(namespace)
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(query_error("get flow"))?
                .map(|row| Self::flow_record(&row))
                .filter(|f| !f.deleted),
            Some(revision) => sqlx::query(
                "SELECT namespace, id, revision, source, deleted, updated_at FROM flows
                 WHERE namespace = $1 AND id = $2 AND revision = $3",
            )
            .bind(namespace)
            .bind(id)
            .bind(revision)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error("get flow"))?
            .map(|row| Self::flow_record(&row)),
        };
        Ok(row)
    }

    async fn list_flows(&self, namespace: Option<&str>) -> Result<Vec<FlowRecord>, StoreError> {
        let mut query = QueryBuilder::<DB>::new(
            "SELECT f.namespace, f.id, f.revision, f.source, f.deleted, f.updated_at
             FROM flows f
             JOIN (SELECT namespace, id, MAX(revision) AS revision FROM flows GROUP BY namespace, id) l
               ON l.namespace = f.namespace AND l.id = f.id AND l.revision = f.revision
             WHERE NOT f.deleted",
        );
        if let Some(namespace) = namespace {
            Self::push_namespace(&mut query, "f.namespace", namespace);
        }
        query.push(" ORDER BY f.namespace, f.id");
        let rows = query
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("list flows"))?;
        Ok(rows.iter().map(Self::flow_record).collect())
    }

    async fn flow_revisions(
        &self,
        namespace: &str,
        id: &str,
    ) -> Result<Vec<FlowRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT namespace, id, revision, source, deleted, updated_at FROM flows
             WHERE namespace = $1 AND id = $2 ORDER BY revision",
        )
        .bind(namespace)
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("flow revisions"))?;
        Ok(rows.iter().map(Self::flow_record).collect())
    }

    async fn delete_flow(&self, namespace: &str, id: &str) -> Result<bool, StoreError> {
        let action = "delete flow";
        let mut tx = DB::begin_write(&self.pool, Some((namespace, id)), action).await?;
        let latest = sqlx::query(FLOW_LATEST)
            .bind(namespace)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(query_error(action))?
            .map(|row| Self::flow_record(&row));
        let Some(latest) = latest.filter(|l| !l.deleted) else {
            return Ok(false);
        };
        sqlx::query(INSERT_FLOW)
            .bind(namespace)
            .bind(id)
            .bind(latest.revision + 1)
            .bind(latest.source.as_str())
            .bind(true)
            .bind(micros(Timestamp::now()))
            .execute(&mut *tx)
            .await
            .map_err(query_error(action))?;
        tx.commit().await.map_err(query_error(action))?;
        Ok(true)
    }

    async fn insert_execution(&self, execution: &Execution) -> Result<(), StoreError> {
        Self::insert_execution_in(&self.pool, execution, 0, None, false)
            .await
            .map(drop)
    }

    async fn insert_claimed_execution(
        &self,
        execution: &Execution,
        owner: &str,
        lease: Duration,
    ) -> Result<(), StoreError> {
        let lease = Some((owner, lease_until(lease)));
        Self::insert_execution_in(&self.pool, execution, 0, lease, false)
            .await
            .map(drop)
    }

    async fn insert_execution_if_latest(
        &self,
        execution: &Execution,
        claim: Option<(&str, Duration)>,
    ) -> Result<bool, StoreError> {
        let lease = claim.map(|(owner, lease)| (owner, lease_until(lease)));
        Self::insert_execution_in(&self.pool, execution, 0, lease, true).await
    }

    async fn schedule_execution(
        &self,
        execution: &Execution,
        not_before: Timestamp,
    ) -> Result<(), StoreError> {
        Self::insert_execution_in(&self.pool, execution, micros(not_before), None, false)
            .await
            .map(drop)
    }

    async fn get_execution(&self, id: &str) -> Result<Option<Execution>, StoreError> {
        let row = sqlx::query("SELECT body FROM executions WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error("get execution"))?;
        row.map(|row| decode_execution(row.get("body"))).transpose()
    }

    async fn search_executions(
        &self,
        filter: &ExecutionFilter,
    ) -> Result<Vec<Execution>, StoreError> {
        let mut query = Self::execution_search("SELECT body FROM executions", filter);
        query
            .push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(i64::from(filter.limit.max(1)))
            .push(" OFFSET ")
            .push_bind(i64::from(filter.offset));
        let rows = query
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("search executions"))?;
        rows.iter()
            .map(|row| decode_execution(row.get("body")))
            .collect()
    }

    async fn count_executions(&self, filter: &ExecutionFilter) -> Result<u64, StoreError> {
        let row = Self::execution_search("SELECT COUNT(*) AS n FROM executions", filter)
            .build()
            .fetch_one(&self.pool)
            .await
            .map_err(query_error("count executions"))?;
        Ok(u64::try_from(row.get::<i64, _>("n")).unwrap_or(0))
    }

    async fn claim_execution(
        &self,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<Execution>, StoreError> {
        let claim = format!(
            "UPDATE executions SET lease_owner = $1, lease_until = $2
             WHERE id = (
                 SELECT id FROM executions
                 WHERE finished = FALSE AND not_before <= $3
                   AND (lease_until IS NULL OR lease_until < $3)
                 ORDER BY created_at LIMIT 1{})
             RETURNING body",
            DB::PICK_LOCK
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(claim))
            .bind(owner)
            .bind(lease_until(lease))
            .bind(micros(Timestamp::now()))
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error("claim execution"))?;
        row.map(|row| decode_execution(row.get("body"))).transpose()
    }

    async fn claim_one(
        &self,
        id: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<Execution>, StoreError> {
        let row = sqlx::query(
            "UPDATE executions SET lease_owner = $1, lease_until = $2
             WHERE id = $3 AND finished = FALSE AND (lease_until IS NULL OR lease_until < $4)
             RETURNING body",
        )
        .bind(owner)
        .bind(lease_until(lease))
        .bind(id)
        .bind(micros(Timestamp::now()))
        .fetch_optional(&self.pool)
        .await
        .map_err(query_error("claim execution"))?;
        row.map(|row| decode_execution(row.get("body"))).transpose()
    }

    async fn rewrite_ended_execution(&self, execution: &Execution) -> Result<bool, StoreError> {
        let body = encode_execution(execution)?;
        let result = sqlx::query(
            "UPDATE executions SET state = $1, updated_at = $2, body = $3, labels = $4
             WHERE id = $5 AND finished = TRUE",
        )
        .bind(execution.state.current.as_str())
        .bind(micros(Timestamp::now()))
        .bind(body.as_str())
        .bind(label_text(&execution.labels).as_str())
        .bind(execution.id.as_str())
        .execute(&self.pool)
        .await
        .map_err(query_error("rewrite execution"))?;
        Ok(DB::rows_affected(&result) > 0)
    }

    async fn requeue_execution(&self, execution: &Execution) -> Result<bool, StoreError> {
        let body = encode_execution(execution)?;
        let result = sqlx::query(
            "UPDATE executions
             SET state = $1, finished = FALSE, updated_at = $2, body = $3,
                 lease_owner = NULL, lease_until = NULL, not_before = 0, kill_requested = FALSE,
                 pause_requested = FALSE
             WHERE id = $4 AND finished = TRUE",
        )
        .bind(execution.state.current.as_str())
        .bind(micros(Timestamp::now()))
        .bind(body.as_str())
        .bind(execution.id.as_str())
        .execute(&self.pool)
        .await
        .map_err(query_error("requeue execution"))?;
        Ok(DB::rows_affected(&result) > 0)
    }

    async fn delete_execution(&self, id: &str) -> Result<Option<bool>, StoreError> {
        let action = "delete execution";
        let mut tx = DB::begin_write(&self.pool, None, action).await?;
        let deleted = sqlx::query("DELETE FROM executions WHERE id = $1 AND finished = TRUE")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(query_error(action))?;
        if DB::rows_affected(&deleted) == 0 {
            let exists = sqlx::query("SELECT 1 AS one FROM executions WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(query_error(action))?
                .is_some();
            return Ok(exists.then_some(false));
        }
        sqlx::query("DELETE FROM logs WHERE execution_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(query_error(action))?;
        tx.commit().await.map_err(query_error(action))?;
        Ok(Some(true))
    }

    async fn purge_executions(&self, before: Timestamp, limit: u32) -> Result<u64, StoreError> {
        DB::purge_executions(&self.pool, micros(before), i64::from(limit.max(1))).await
    }

    async fn expired_executions(
        &self,
        before: Timestamp,
        limit: u32,
    ) -> Result<Vec<(String, String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, namespace, flow_id FROM executions WHERE finished = TRUE AND updated_at < $1
             ORDER BY updated_at, id LIMIT $2",
        )
        .bind(micros(before))
        .bind(i64::from(limit.max(1)))
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("list expired executions"))?;
        Ok(rows
            .iter()
            .map(|row| (row.get("id"), row.get("namespace"), row.get("flow_id")))
            .collect())
    }

    async fn save_execution(
        &self,
        execution: &Execution,
        owner: &str,
        lease: Duration,
        logs: &[NewLog],
    ) -> Result<(), StoreError> {
        let action = "save execution";
        let lost = || StoreError::LeaseLost(execution.id.clone());
        let finished = execution.state.current.is_terminal();
        if !finished && logs.is_empty() {
            // One statement, its own transaction.
            let held = Self::update_execution_in(&self.pool, execution, owner, lease, None).await?;
            return if held { Ok(()) } else { Err(lost()) };
        }
        let flow = (execution.namespace.as_str(), execution.flow_id.as_str());
        let mut tx = DB::begin_write(&self.pool, finished.then_some(flow), action).await?;
        // Finished: after the flow's lock (see `admit`), a slot of its
        // concurrency limit is free and its queued executions are
        // claimable again.
        let wake = (finished && DB::WAKE_IN_SAVE).then_some(flow);
        if !Self::update_execution_in(&mut *tx, execution, owner, lease, wake).await? {
            return Err(lost());
        }
        Self::insert_logs_in(&mut *tx, logs).await?;
        if finished && !DB::WAKE_IN_SAVE {
            sqlx::query(
                "UPDATE executions SET not_before = 0
                 WHERE namespace = $1 AND flow_id = $2 AND finished = FALSE AND state = 'QUEUED'",
            )
            .bind(flow.0)
            .bind(flow.1)
            .execute(&mut *tx)
            .await
            .map_err(query_error(action))?;
        }
        tx.commit().await.map_err(query_error(action))?;
        Ok(())
    }

    async fn park_execution(
        &self,
        execution: &Execution,
        owner: &str,
        not_before: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        let body = encode_execution(execution)?;
        let result = sqlx::query(PARK)
            .bind(execution.state.current.as_str())
            .bind(micros(Timestamp::now()))
            .bind(body.as_str())
            .bind(not_before.map_or(i64::MAX, micros))
            .bind(execution.id.as_str())
            .bind(owner)
            .execute(&self.pool)
            .await
            .map_err(query_error("park execution"))?;
        if DB::rows_affected(&result) == 0 {
            return Err(StoreError::LeaseLost(execution.id.clone()));
        }
        Ok(())
    }

    async fn admit(
        &self,
        execution: &Execution,
        limit: u32,
        owner: &str,
        queued: Option<&Execution>,
    ) -> Result<bool, StoreError> {
        let action = "admit execution";
        let flow = (execution.namespace.as_str(), execution.flow_id.as_str());
        let mut tx = DB::begin_write(&self.pool, Some(flow), action).await?;
        let row = sqlx::query(
            "SELECT
               (SELECT COUNT(*) FROM executions
                 WHERE namespace = $1 AND flow_id = $2 AND finished = FALSE
                   AND state NOT IN ('CREATED', 'QUEUED') AND id <> $3) AS running,
               (SELECT COUNT(*) FROM executions
                 WHERE namespace = $1 AND flow_id = $2 AND finished = FALSE
                   AND state IN ('CREATED', 'QUEUED')
                   AND (created_at, id) < (SELECT created_at, id FROM executions WHERE id = $3)) AS ahead",
        )
        .bind(flow.0)
        .bind(flow.1)
        .bind(execution.id.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(query_error(action))?;
        let taken = row.get::<i64, _>("running") + row.get::<i64, _>("ahead");
        if taken < i64::from(limit) {
            sqlx::query(
                "UPDATE executions SET state = 'RUNNING' WHERE id = $1 AND lease_owner = $2",
            )
            .bind(execution.id.as_str())
            .bind(owner)
            .execute(&mut *tx)
            .await
            .map_err(query_error(action))?;
            tx.commit().await.map_err(query_error(action))?;
            return Ok(true);
        }
        if let Some(queued) = queued {
            // Queued in the same transaction that found no slot, so a slot
            // freed right after is seen by the finishing execution's wake-up.
            let body = encode_execution(queued)?;
            sqlx::query(PARK)
                .bind(queued.state.current.as_str())
                .bind(micros(Timestamp::now()))
                .bind(body.as_str())
                .bind(i64::MAX)
                .bind(queued.id.as_str())
                .bind(owner)
                .execute(&mut *tx)
                .await
                .map_err(query_error(action))?;
        }
        tx.commit().await.map_err(query_error(action))?;
        Ok(false)
    }

    async fn renew_lease(
        &self,
        id: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<Lease, StoreError> {
        let row = sqlx::query(
            "UPDATE executions SET lease_until = $1
             WHERE id = $2 AND lease_owner = $3
             RETURNING kill_requested, pause_requested",
        )
        .bind(lease_until(lease))
        .bind(id)
        .bind(owner)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_error("renew lease"))?;
        Ok(Lease {
            held: row.is_some(),
            kill_requested: row.as_ref().is_some_and(|row| row.get("kill_requested")),
            pause_requested: row.is_some_and(|row| row.get("pause_requested")),
        })
    }

    async fn release_lease(&self, id: &str, owner: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE executions SET lease_owner = NULL, lease_until = NULL
             WHERE id = $1 AND lease_owner = $2",
        )
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await
        .map_err(query_error("release lease"))?;
        Ok(())
    }

    async fn request_kill(&self, id: &str) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE executions SET kill_requested = TRUE, not_before = 0
             WHERE id = $1 AND finished = FALSE",
        )
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(query_error("request kill"))?;
        Ok(DB::rows_affected(&result) > 0)
    }

    async fn request_pause(&self, id: &str, pause: bool) -> Result<bool, StoreError> {
        let statement = if pause {
            "UPDATE executions SET pause_requested = TRUE
             WHERE id = $1 AND finished = FALSE AND state = 'RUNNING'"
        } else {
            "UPDATE executions SET pause_requested = FALSE
             WHERE id = $1 AND finished = FALSE AND pause_requested = TRUE"
        };
        let result = sqlx::query(statement)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(query_error("request pause"))?;
        Ok(DB::rows_affected(&result) > 0)
    }

    async fn append_logs(&self, logs: &[NewLog]) -> Result<(), StoreError> {
        let action = "append logs";
        if logs.is_empty() {
            return Ok(());
        }
        if logs.len() <= LOG_ROWS {
            // At most one statement: no transaction around it.
            let mut conn = self.pool.acquire().await.map_err(query_error(action))?;
            return Self::insert_logs_in(&mut *conn, logs).await;
        }
        let mut tx = self.pool.begin().await.map_err(query_error(action))?;
        Self::insert_logs_in(&mut *tx, logs).await?;
        tx.commit().await.map_err(query_error(action))?;
        Ok(())
    }

    async fn logs(
        &self,
        execution_id: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<LogEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, execution_id, task_run_id, task_id, attempt_number, level, message, ts
             FROM logs WHERE execution_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(execution_id)
        .bind(after)
        .bind(i64::from(limit.max(1)))
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("read logs"))?;
        Ok(rows.iter().map(Self::log_entry).collect())
    }

    async fn trigger_states(&self) -> Result<Vec<TriggerState>, StoreError> {
        let rows = sqlx::query(
            "SELECT namespace, flow_id, trigger_id, cursor_at, disabled, last_execution_id, last_fired_at
             FROM trigger_state",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("read trigger states"))?;
        Ok(rows.iter().map(Self::trigger_state).collect())
    }

    async fn purge_trigger_events(&self, before: Timestamp) -> Result<u64, StoreError> {
        let result = sqlx::query("DELETE FROM trigger_events WHERE created_at < $1")
            .bind(micros(before))
            .execute(&self.pool)
            .await
            .map_err(query_error("purge trigger events"))?;
        Ok(DB::rows_affected(&result))
    }

    async fn init_trigger(&self, key: &TriggerKey, cursor: Timestamp) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO trigger_state (namespace, flow_id, trigger_id, cursor_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (namespace, flow_id, trigger_id) DO NOTHING",
        )
        .bind(key.namespace.as_str())
        .bind(key.flow_id.as_str())
        .bind(key.trigger_id.as_str())
        .bind(micros(cursor))
        .execute(&self.pool)
        .await
        .map_err(query_error("init trigger"))?;
        Ok(())
    }

    async fn reset_trigger(
        &self,
        key: &TriggerKey,
        cursor: Timestamp,
        disabled: bool,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO trigger_state (namespace, flow_id, trigger_id, cursor_at, disabled)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (namespace, flow_id, trigger_id)
             DO UPDATE SET cursor_at = excluded.cursor_at, disabled = excluded.disabled",
        )
        .bind(key.namespace.as_str())
        .bind(key.flow_id.as_str())
        .bind(key.trigger_id.as_str())
        .bind(micros(cursor))
        .bind(disabled)
        .execute(&self.pool)
        .await
        .map_err(query_error("reset trigger"))?;
        Ok(())
    }

    async fn fire_trigger(
        &self,
        key: &TriggerKey,
        event_key: &str,
        cursor: Option<Timestamp>,
        execution: Option<&Execution>,
    ) -> Result<bool, StoreError> {
        let action = "fire trigger";
        let mut tx = DB::begin_write(&self.pool, None, action).await?;
        let now = micros(Timestamp::now());
        let execution_id = execution.map(|e| e.id.as_str());
        let inserted = sqlx::query(
            "INSERT INTO trigger_events (namespace, flow_id, trigger_id, event_key, execution_id, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(key.namespace.as_str())
        .bind(key.flow_id.as_str())
        .bind(key.trigger_id.as_str())
        .bind(event_key)
        .bind(execution_id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(query_error(action))?;
        if DB::rows_affected(&inserted) == 0 {
            return Ok(false);
        }
        if let Some(execution) = execution {
            Self::insert_execution_in(&mut *tx, execution, 0, None, false).await?;
        }
        // The cursor only moves forward.
        sqlx::query(
            "INSERT INTO trigger_state (namespace, flow_id, trigger_id, cursor_at, last_execution_id, last_fired_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (namespace, flow_id, trigger_id) DO UPDATE SET
                 cursor_at = CASE WHEN excluded.cursor_at IS NULL THEN trigger_state.cursor_at
                                  WHEN trigger_state.cursor_at IS NULL THEN excluded.cursor_at
                                  WHEN excluded.cursor_at > trigger_state.cursor_at THEN excluded.cursor_at
                                  ELSE trigger_state.cursor_at END,
                 last_execution_id = COALESCE(excluded.last_execution_id, trigger_state.last_execution_id),
                 last_fired_at = excluded.last_fired_at",
        )
        .bind(key.namespace.as_str())
        .bind(key.flow_id.as_str())
        .bind(key.trigger_id.as_str())
        .bind(cursor.map(micros))
        .bind(execution_id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(query_error(action))?;
        tx.commit().await.map_err(query_error(action))?;
        Ok(true)
    }
}
