//! What the unfinished executions amount to, for the instance's activity
//! report (`GET /activity`): how many are in flight, queued and paused, and
//! the earliest timer one of them waits on. One statement over the
//! unfinished rows only (the queue's index, `executions_queue`, holds them).

use jiff::Timestamp;
use sqlx::Row;

use super::dialect::Dialect;
use super::query::{from_micros, micros};
use super::sql::SqlRepository;
use super::{Store, StoreError, query_error};

/// The unfinished executions, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecutionActivity {
    /// In flight: neither PAUSED nor QUEUED, and not waiting for a later
    /// start (a retried execution's delay).
    pub running: u64,
    /// QUEUED behind their flow's concurrency limit.
    pub queued: u64,
    /// PAUSED, by a Pause task or by hand.
    pub paused: u64,
    /// The earliest moment a waiting execution is due (see [`ACTIVITY`]).
    pub next_timer: Option<Timestamp>,
}

/// `not_before` is the engine's timer: a parked execution (PAUSED, QUEUED)
/// or a retry scheduled for later is not claimed before it; `i64::MAX`
/// (`$2`) parks until something wakes it (a resume, a slot freed), `0` is
/// "at once". A timer is a PAUSED execution's (even one already due), or a
/// later start of any other; an execution in flight keeps the `not_before`
/// it was claimed with, which is no timer. `$1` is now.
const ACTIVITY: &str = "SELECT
     COALESCE(SUM(CASE WHEN state = 'PAUSED' THEN 1 ELSE 0 END), 0) AS paused,
     COALESCE(SUM(CASE WHEN state = 'QUEUED' THEN 1 ELSE 0 END), 0) AS queued,
     COALESCE(SUM(CASE WHEN state <> 'PAUSED' AND state <> 'QUEUED' AND not_before <= $1
                       THEN 1 ELSE 0 END), 0) AS running,
     MIN(CASE WHEN not_before > 0 AND not_before < $2
                   AND (state = 'PAUSED' OR not_before > $1)
              THEN not_before END) AS next_timer
     FROM executions WHERE finished = FALSE";

impl<DB> SqlRepository<DB>
where
    DB: Dialect,
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'a> &'a str: sqlx::ColumnIndex<DB::Row>,
    for<'a> i64: sqlx::Encode<'a, DB> + sqlx::Decode<'a, DB> + sqlx::Type<DB>,
    for<'a> Option<i64>: sqlx::Decode<'a, DB> + sqlx::Type<DB>,
{
    async fn execution_activity(&self, now: Timestamp) -> Result<ExecutionActivity, StoreError> {
        let row = sqlx::query(ACTIVITY)
            .bind(micros(now))
            .bind(i64::MAX)
            .fetch_one(&self.pool)
            .await
            .map_err(query_error("count unfinished executions"))?;
        let count = |column: &str| u64::try_from(row.get::<i64, _>(column)).unwrap_or(0);
        Ok(ExecutionActivity {
            running: count("running"),
            queued: count("queued"),
            paused: count("paused"),
            next_timer: row.get::<Option<i64>, _>("next_timer").map(from_micros),
        })
    }
}

impl Store {
    /// The unfinished executions at `now`, counted (see [`ExecutionActivity`]).
    pub async fn execution_activity(
        &self,
        now: Timestamp,
    ) -> Result<ExecutionActivity, StoreError> {
        match self {
            Store::Sqlite(r) => r.execution_activity(now).await,
            Store::Postgres(r) => r.execution_activity(now).await,
        }
    }
}
