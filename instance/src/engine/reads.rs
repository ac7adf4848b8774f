//! What the API reads of executions and logs, and the readiness check: the
//! store stays private to the engine.

use jiff::Timestamp;

use super::{Engine, EngineError};
use crate::execution::{Execution, LogEntry};
use crate::store::{ExecutionActivity, ExecutionFilter, Repository, StoreError};

/// What the engine has left to do, for the activity report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineActivity {
    /// The unfinished executions counted, and the earliest timer they wait on.
    pub executions: ExecutionActivity,
    /// The earliest tick a schedule fires next (at or before now when due).
    pub next_schedule: Option<Timestamp>,
}

impl Engine {
    /// Checks the database answers (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.inner.store.ping().await
    }

    /// The unfinished executions and the next schedule tick at `now`.
    pub async fn activity(&self, now: Timestamp) -> Result<EngineActivity, EngineError> {
        let executions = self.inner.store.execution_activity(now).await?;
        let next_schedule = super::triggers::next_schedule(&self.inner, now).await?;
        Ok(EngineActivity {
            executions,
            next_schedule,
        })
    }

    pub async fn execution(&self, id: &str) -> Result<Option<Execution>, StoreError> {
        self.inner.store.get_execution(id).await
    }

    /// One page of the executions `filter` selects, newest first, and how
    /// many it selects in all.
    pub async fn search_executions(
        &self,
        filter: &ExecutionFilter,
    ) -> Result<(Vec<Execution>, u64), StoreError> {
        let results = self.inner.store.search_executions(filter).await?;
        let total = self.inner.store.count_executions(filter).await?;
        Ok((results, total))
    }

    /// Deletes an ended execution with its logs and files: `Some(false)`
    /// when it has not ended, `None` when there is no such execution.
    pub async fn delete_execution(&self, id: &str) -> Result<Option<bool>, StoreError> {
        let Some(execution) = self.inner.store.get_execution(id).await? else {
            return Ok(None);
        };
        let deleted = self.inner.store.delete_execution(id).await?;
        if deleted == Some(true) {
            super::retention::delete_files(
                &self.inner,
                &execution.namespace,
                &execution.flow_id,
                id,
            )
            .await;
        }
        Ok(deleted)
    }

    /// Log lines of an execution with `seq` greater than `after`, in order.
    pub async fn logs(
        &self,
        execution_id: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<LogEntry>, StoreError> {
        self.inner.store.logs(execution_id, after, limit).await
    }
}
