//! PostgreSQL: the tenant's dedicated database. Claims lock the chosen row
//! with `FOR UPDATE SKIP LOCKED`, so concurrent claimers (several replicas)
//! each get a different execution without waiting on one another.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Row, SqlSafeStr};

use super::*;

#[derive(Debug, Clone)]
pub struct PostgresRepository {
    pool: PgPool,
}

fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        Migration::new(
            1,
            "init".into(),
            MigrationType::Simple,
            include_str!("../../migrations/postgres/0001_init.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            2,
            "triggers".into(),
            MigrationType::Simple,
            include_str!("../../migrations/postgres/0002_triggers.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            3,
            "retention".into(),
            MigrationType::Simple,
            include_str!("../../migrations/postgres/0003_retention.sql").into_sql_str(),
            false,
        ),
    ])
}

impl PostgresRepository {
    /// Connects to `url` (`postgres://…`) and migrates the database.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(StoreError::Connect)?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(StoreError::Connect)?;
        migrator().run(&pool).await.map_err(StoreError::Migrate)?;
        Ok(PostgresRepository { pool })
    }
}

fn flow_record(row: &PgRow) -> FlowRecord {
    FlowRecord {
        namespace: row.get("namespace"),
        id: row.get("id"),
        revision: row.get("revision"),
        source: row.get("source"),
        deleted: row.get("deleted"),
        updated: from_micros(row.get("updated_at")),
    }
}

/// Serialises revision changes of one flow (the lock ends with the transaction).
async fn lock_flow(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    namespace: &str,
    id: &str,
) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1 || '/' || $2))")
        .bind(namespace)
        .bind(id)
        .execute(&mut **tx)
        .await
        .map_err(query_error("lock flow"))?;
    Ok(())
}

fn log_entry(row: &PgRow) -> LogEntry {
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

const FLOW_COLUMNS_LATEST: &str =
    "SELECT namespace, id, revision, source, deleted, updated_at FROM flows f
     WHERE namespace = $1 AND id = $2
     ORDER BY revision DESC LIMIT 1";

impl Repository for PostgresRepository {
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
    ) -> Result<FlowRecord, StoreError> {
        let mut tx = self.pool.begin().await.map_err(query_error("save flow"))?;
        lock_flow(&mut tx, namespace, id).await?;
        let latest = sqlx::query(FLOW_COLUMNS_LATEST)
            .bind(namespace)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(query_error("save flow"))?
            .map(|row| flow_record(&row));
        if let Some(latest) = &latest
            && !latest.deleted
            && latest.source == source
        {
            return Ok(latest.clone());
        }
        let record = FlowRecord {
            namespace: namespace.into(),
            id: id.into(),
            revision: latest.map_or(1, |l| l.revision + 1),
            source: source.into(),
            deleted: false,
            updated: Timestamp::now(),
        };
        sqlx::query(
            "INSERT INTO flows (namespace, id, revision, source, deleted, updated_at)
             VALUES ($1, $2, $3, $4, FALSE, $5)",
        )
        .bind(&record.namespace)
        .bind(&record.id)
        .bind(record.revision)
        .bind(&record.source)
        .bind(micros(record.updated))
        .execute(&mut *tx)
        .await
        .map_err(query_error("save flow"))?;
        tx.commit().await.map_err(query_error("save flow"))?;
        Ok(record)
    }

    async fn get_flow(
        &self,
        namespace: &str,
        id: &str,
        revision: Option<i64>,
    ) -> Result<Option<FlowRecord>, StoreError> {
        let row = match revision {
            None => sqlx::query(FLOW_COLUMNS_LATEST)
                .bind(namespace)
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(query_error("get flow"))?
                .map(|row| flow_record(&row))
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
            .map(|row| flow_record(&row)),
        };
        Ok(row)
    }

    async fn list_flows(&self, namespace: Option<&str>) -> Result<Vec<FlowRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT f.namespace, f.id, f.revision, f.source, f.deleted, f.updated_at
             FROM flows f
             JOIN (SELECT namespace, id, MAX(revision) AS revision FROM flows GROUP BY namespace, id) l
               ON l.namespace = f.namespace AND l.id = f.id AND l.revision = f.revision
             WHERE NOT f.deleted
               AND ($1::TEXT IS NULL OR f.namespace = $1 OR f.namespace LIKE $2 ESCAPE '\\')
             ORDER BY f.namespace, f.id",
        )
        .bind(namespace)
        .bind(namespace.map(namespace_prefix))
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("list flows"))?;
        Ok(rows.iter().map(flow_record).collect())
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
        Ok(rows.iter().map(flow_record).collect())
    }

    async fn delete_flow(&self, namespace: &str, id: &str) -> Result<bool, StoreError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(query_error("delete flow"))?;
        lock_flow(&mut tx, namespace, id).await?;
        let latest = sqlx::query(FLOW_COLUMNS_LATEST)
            .bind(namespace)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(query_error("delete flow"))?
            .map(|row| flow_record(&row));
        let Some(latest) = latest.filter(|l| !l.deleted) else {
            return Ok(false);
        };
        sqlx::query(
            "INSERT INTO flows (namespace, id, revision, source, deleted, updated_at)
             VALUES ($1, $2, $3, $4, TRUE, $5)",
        )
        .bind(namespace)
        .bind(id)
        .bind(latest.revision + 1)
        .bind(&latest.source)
        .bind(micros(Timestamp::now()))
        .execute(&mut *tx)
        .await
        .map_err(query_error("delete flow"))?;
        tx.commit().await.map_err(query_error("delete flow"))?;
        Ok(true)
    }

    async fn insert_execution(&self, execution: &Execution) -> Result<(), StoreError> {
        insert_execution_in(&self.pool, execution, 0).await
    }

    async fn schedule_execution(
        &self,
        execution: &Execution,
        not_before: Timestamp,
    ) -> Result<(), StoreError> {
        insert_execution_in(&self.pool, execution, micros(not_before)).await
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
        let states = state_list(&filter.states);
        let query = sqlx::query(
            "SELECT body FROM executions
             WHERE ($1::TEXT IS NULL OR namespace = $1 OR namespace LIKE $2 ESCAPE '\\')
               AND ($3::TEXT IS NULL OR flow_id = $3)
               AND ($4 = '' OR strpos($4, ',' || state || ',') > 0)
               AND ($7 = '' OR strpos(labels, $7) > 0) AND ($8 = '' OR strpos(labels, $8) > 0)
               AND ($9 = '' OR strpos(labels, $9) > 0) AND ($10 = '' OR strpos(labels, $10) > 0)
               AND ($11 = '' OR strpos(labels, $11) > 0)
             ORDER BY created_at DESC, id DESC
             LIMIT $5 OFFSET $6",
        )
        .bind(filter.namespace.as_deref())
        .bind(filter.namespace.as_deref().map(namespace_prefix))
        .bind(filter.flow_id.as_deref())
        .bind(states)
        .bind(i64::from(filter.limit.max(1)))
        .bind(i64::from(filter.offset));
        let rows = bind_labels(query, filter)
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("search executions"))?;
        rows.iter()
            .map(|row| decode_execution(row.get("body")))
            .collect()
    }

    async fn count_executions(&self, filter: &ExecutionFilter) -> Result<u64, StoreError> {
        let query = sqlx::query(
            "SELECT COUNT(*) AS n FROM executions
             WHERE ($1::TEXT IS NULL OR namespace = $1 OR namespace LIKE $2 ESCAPE '\\')
               AND ($3::TEXT IS NULL OR flow_id = $3)
               AND ($4 = '' OR strpos($4, ',' || state || ',') > 0)
               AND ($7 = '' OR strpos(labels, $7) > 0) AND ($8 = '' OR strpos(labels, $8) > 0)
               AND ($9 = '' OR strpos(labels, $9) > 0) AND ($10 = '' OR strpos(labels, $10) > 0)
               AND ($11 = '' OR strpos(labels, $11) > 0)",
        )
        .bind(filter.namespace.as_deref())
        .bind(filter.namespace.as_deref().map(namespace_prefix))
        .bind(filter.flow_id.as_deref())
        .bind(state_list(&filter.states))
        // Limit and offset slots, unused when counting.
        .bind(0i64)
        .bind(0i64);
        let row = bind_labels(query, filter)
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
        let now = micros(Timestamp::now());
        let row = sqlx::query(
            "UPDATE executions SET lease_owner = $1, lease_until = $2
             WHERE id = (
                 SELECT id FROM executions
                 WHERE NOT finished AND not_before <= $3
                   AND (lease_until IS NULL OR lease_until < $3)
                 ORDER BY created_at LIMIT 1
                 FOR UPDATE SKIP LOCKED)
             RETURNING body",
        )
        .bind(owner)
        .bind(lease_until(lease))
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_error("claim execution"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        decode_execution(row.get("body")).map(Some)
    }

    async fn claim_one(
        &self,
        id: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<Execution>, StoreError> {
        let row = sqlx::query(
            "UPDATE executions SET lease_owner = $1, lease_until = $2
             WHERE id = $3 AND NOT finished AND (lease_until IS NULL OR lease_until < $4)
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

    async fn requeue_execution(&self, execution: &Execution) -> Result<bool, StoreError> {
        let body = encode_execution(execution)?;
        let result = sqlx::query(
            "UPDATE executions
             SET state = $1, finished = FALSE, updated_at = $2, body = $3,
                 lease_owner = NULL, lease_until = NULL, not_before = 0, kill_requested = FALSE
             WHERE id = $4 AND finished",
        )
        .bind(execution.state.current.as_str())
        .bind(micros(Timestamp::now()))
        .bind(body)
        .bind(&execution.id)
        .execute(&self.pool)
        .await
        .map_err(query_error("requeue execution"))?;
        Ok(result.rows_affected() > 0)
    }

    async fn delete_execution(&self, id: &str) -> Result<Option<bool>, StoreError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(query_error("delete execution"))?;
        let deleted = sqlx::query("DELETE FROM executions WHERE id = $1 AND finished")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(query_error("delete execution"))?
            .rows_affected();
        if deleted == 0 {
            let exists = sqlx::query("SELECT 1 AS one FROM executions WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(query_error("delete execution"))?
                .is_some();
            return Ok(exists.then_some(false));
        }
        sqlx::query("DELETE FROM logs WHERE execution_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(query_error("delete execution"))?;
        tx.commit().await.map_err(query_error("delete execution"))?;
        Ok(Some(true))
    }

    async fn purge_executions(&self, before: Timestamp, limit: u32) -> Result<u64, StoreError> {
        // One statement, so one transaction: the batch's logs and the
        // executions go together; rows another process holds are skipped.
        let deleted = sqlx::query(
            "WITH doomed AS (
                 SELECT id FROM executions WHERE finished AND updated_at < $1
                 ORDER BY updated_at, id LIMIT $2 FOR UPDATE SKIP LOCKED
             ), gone_logs AS (
                 DELETE FROM logs WHERE execution_id IN (SELECT id FROM doomed)
             )
             DELETE FROM executions WHERE id IN (SELECT id FROM doomed)",
        )
        .bind(micros(before))
        .bind(i64::from(limit.max(1)))
        .execute(&self.pool)
        .await
        .map_err(query_error("purge executions"))?
        .rows_affected();
        Ok(deleted)
    }

    async fn save_execution(
        &self,
        execution: &Execution,
        owner: &str,
        lease: Duration,
    ) -> Result<(), StoreError> {
        let body = encode_execution(execution)?;
        let finished = execution.state.current.is_terminal();
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(query_error("save execution"))?;
        if finished {
            lock_flow(&mut tx, &execution.namespace, &execution.flow_id).await?;
        }
        let result = sqlx::query(
            "UPDATE executions
             SET state = $1, finished = $2, updated_at = $3, body = $4,
                 lease_owner = CASE WHEN $2 THEN NULL ELSE lease_owner END,
                 lease_until = CASE WHEN $2 THEN NULL ELSE $5::BIGINT END
             WHERE id = $6 AND lease_owner = $7",
        )
        .bind(execution.state.current.as_str())
        .bind(finished)
        .bind(micros(Timestamp::now()))
        .bind(body)
        .bind(lease_until(lease))
        .bind(&execution.id)
        .bind(owner)
        .execute(&mut *tx)
        .await
        .map_err(query_error("save execution"))?;
        if result.rows_affected() == 0 {
            return Err(StoreError::LeaseLost(execution.id.clone()));
        }
        if finished {
            // A slot of the flow's concurrency limit is free: queued
            // executions of the flow are claimable again.
            sqlx::query(
                "UPDATE executions SET not_before = 0
                 WHERE namespace = $1 AND flow_id = $2 AND NOT finished AND state = 'QUEUED'",
            )
            .bind(&execution.namespace)
            .bind(&execution.flow_id)
            .execute(&mut *tx)
            .await
            .map_err(query_error("save execution"))?;
        }
        tx.commit().await.map_err(query_error("save execution"))?;
        Ok(())
    }

    async fn park_execution(
        &self,
        execution: &Execution,
        owner: &str,
        not_before: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        let body = encode_execution(execution)?;
        let result = sqlx::query(
            "UPDATE executions
             SET state = $1, updated_at = $2, body = $3, not_before = $4,
                 lease_owner = NULL, lease_until = NULL
             WHERE id = $5 AND lease_owner = $6",
        )
        .bind(execution.state.current.as_str())
        .bind(micros(Timestamp::now()))
        .bind(body)
        .bind(not_before.map_or(i64::MAX, micros))
        .bind(&execution.id)
        .bind(owner)
        .execute(&self.pool)
        .await
        .map_err(query_error("park execution"))?;
        if result.rows_affected() == 0 {
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
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(query_error("admit execution"))?;
        lock_flow(&mut tx, &execution.namespace, &execution.flow_id).await?;
        let row = sqlx::query(
            "SELECT
               (SELECT COUNT(*) FROM executions
                 WHERE namespace = $1 AND flow_id = $2 AND NOT finished
                   AND state NOT IN ('CREATED', 'QUEUED') AND id <> $3) AS running,
               (SELECT COUNT(*) FROM executions
                 WHERE namespace = $1 AND flow_id = $2 AND NOT finished
                   AND state IN ('CREATED', 'QUEUED')
                   AND (created_at, id) < (SELECT created_at, id FROM executions WHERE id = $3)) AS ahead",
        )
        .bind(&execution.namespace)
        .bind(&execution.flow_id)
        .bind(&execution.id)
        .fetch_one(&mut *tx)
        .await
        .map_err(query_error("admit execution"))?;
        let taken = row.get::<i64, _>("running") + row.get::<i64, _>("ahead");
        if taken < i64::from(limit) {
            sqlx::query(
                "UPDATE executions SET state = 'RUNNING' WHERE id = $1 AND lease_owner = $2",
            )
            .bind(&execution.id)
            .bind(owner)
            .execute(&mut *tx)
            .await
            .map_err(query_error("admit execution"))?;
            tx.commit().await.map_err(query_error("admit execution"))?;
            return Ok(true);
        }
        if let Some(queued) = queued {
            // Queued in the same transaction that found no slot, so a slot
            // freed right after is seen by the finishing execution's wake-up.
            let body = encode_execution(queued)?;
            sqlx::query(
                "UPDATE executions
                 SET state = $1, updated_at = $2, body = $3, not_before = $4,
                     lease_owner = NULL, lease_until = NULL
                 WHERE id = $5 AND lease_owner = $6",
            )
            .bind(queued.state.current.as_str())
            .bind(micros(Timestamp::now()))
            .bind(body)
            .bind(i64::MAX)
            .bind(&queued.id)
            .bind(owner)
            .execute(&mut *tx)
            .await
            .map_err(query_error("admit execution"))?;
        }
        tx.commit().await.map_err(query_error("admit execution"))?;
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
             RETURNING kill_requested",
        )
        .bind(lease_until(lease))
        .bind(id)
        .bind(owner)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_error("renew lease"))?;
        Ok(match row {
            Some(row) => Lease {
                held: true,
                kill_requested: row.get("kill_requested"),
            },
            None => Lease {
                held: false,
                kill_requested: false,
            },
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
            "UPDATE executions SET kill_requested = TRUE, not_before = 0 WHERE id = $1 AND NOT finished",
        )
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(query_error("request kill"))?;
        Ok(result.rows_affected() > 0)
    }

    async fn append_logs(&self, logs: &[NewLog]) -> Result<(), StoreError> {
        if logs.is_empty() {
            return Ok(());
        }
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(query_error("append logs"))?;
        for log in logs {
            sqlx::query(
                "INSERT INTO logs (execution_id, task_run_id, task_id, attempt_number, level, message, ts)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&log.execution_id)
            .bind(log.task_run_id.as_deref())
            .bind(log.task_id.as_deref())
            .bind(log.attempt_number)
            .bind(&log.level)
            .bind(&log.message)
            .bind(micros(log.timestamp))
            .execute(&mut *tx)
            .await
            .map_err(query_error("append logs"))?;
        }
        tx.commit().await.map_err(query_error("append logs"))?;
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
        Ok(rows.iter().map(log_entry).collect())
    }

    async fn trigger_states(&self) -> Result<Vec<TriggerState>, StoreError> {
        let rows = sqlx::query(
            "SELECT namespace, flow_id, trigger_id, cursor_at, disabled, last_execution_id, last_fired_at
             FROM trigger_state",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("read trigger states"))?;
        Ok(rows.iter().map(trigger_state).collect())
    }

    async fn purge_trigger_events(&self, before: Timestamp) -> Result<u64, StoreError> {
        let result = sqlx::query("DELETE FROM trigger_events WHERE created_at < $1")
            .bind(micros(before))
            .execute(&self.pool)
            .await
            .map_err(query_error("purge trigger events"))?;
        Ok(result.rows_affected())
    }

    async fn init_trigger(&self, key: &TriggerKey, cursor: Timestamp) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO trigger_state (namespace, flow_id, trigger_id, cursor_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (namespace, flow_id, trigger_id) DO NOTHING",
        )
        .bind(&key.namespace)
        .bind(&key.flow_id)
        .bind(&key.trigger_id)
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
        .bind(&key.namespace)
        .bind(&key.flow_id)
        .bind(&key.trigger_id)
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
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(query_error("fire trigger"))?;
        let now = micros(Timestamp::now());
        let inserted = sqlx::query(
            "INSERT INTO trigger_events (namespace, flow_id, trigger_id, event_key, execution_id, created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(&key.namespace)
        .bind(&key.flow_id)
        .bind(&key.trigger_id)
        .bind(event_key)
        .bind(execution.map(|e| e.id.as_str()))
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(query_error("fire trigger"))?
        .rows_affected();
        if inserted == 0 {
            return Ok(false);
        }
        if let Some(execution) = execution {
            insert_execution_in(&mut *tx, execution, 0).await?;
        }
        sqlx::query(
            "INSERT INTO trigger_state (namespace, flow_id, trigger_id, cursor_at, last_execution_id, last_fired_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (namespace, flow_id, trigger_id) DO UPDATE SET
                 cursor_at = CASE WHEN excluded.cursor_at IS NULL THEN trigger_state.cursor_at
                                  WHEN trigger_state.cursor_at IS NULL THEN excluded.cursor_at
                                  ELSE GREATEST(trigger_state.cursor_at, excluded.cursor_at) END,
                 last_execution_id = COALESCE(excluded.last_execution_id, trigger_state.last_execution_id),
                 last_fired_at = excluded.last_fired_at",
        )
        .bind(&key.namespace)
        .bind(&key.flow_id)
        .bind(&key.trigger_id)
        .bind(cursor.map(micros))
        .bind(execution.map(|e| e.id.as_str()))
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(query_error("fire trigger"))?;
        tx.commit().await.map_err(query_error("fire trigger"))?;
        Ok(true)
    }
}

async fn insert_execution_in<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Postgres>,
    execution: &Execution,
    not_before: i64,
) -> Result<(), StoreError> {
    let body = encode_execution(execution)?;
    let now = micros(Timestamp::now());
    let result = sqlx::query(
        "INSERT INTO executions (id, namespace, flow_id, state, finished, created_at, updated_at, body, labels, not_before)
         VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9)",
    )
    .bind(&execution.id)
    .bind(&execution.namespace)
    .bind(&execution.flow_id)
    .bind(execution.state.current.as_str())
    .bind(execution.state.current.is_terminal())
    .bind(now)
    .bind(body)
    .bind(label_text(&execution.labels))
    .bind(not_before)
    .execute(executor)
    .await;
    match result {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            Err(StoreError::Duplicate(execution.id.clone()))
        }
        Err(e) => Err(query_error("insert execution")(e)),
    }
}

fn trigger_state(row: &PgRow) -> TriggerState {
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

/// Binds the label filter slots (empty = no filter).
fn bind_labels<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    filter: &ExecutionFilter,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    for slot in 0..MAX_LABEL_FILTERS {
        let needle = filter
            .labels
            .get(slot)
            .map(|l| label_needle(&l.key, &l.value))
            .unwrap_or_default();
        query = query.bind(needle);
    }
    query
}
