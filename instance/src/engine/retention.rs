//! Execution retention (`ATOLL_EXECUTION_RETENTION_DAYS`): a background
//! sweep, at start and then every `retention_sweep`, deletes ended
//! executions older than the retention with their task runs, logs,
//! outputs and files (their internal-storage folder), a batch per
//! transaction so the engine's own writes interleave.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::Inner;
use crate::storage::StoragePath;
use crate::store::Repository;

/// Executions deleted per transaction.
pub(crate) const BATCH: u32 = 500;

/// Sweeps until the engine shuts down; returns at once without a retention.
pub(crate) async fn run(inner: Arc<Inner>) {
    let Some(keep) = inner.config.retention else {
        return;
    };
    loop {
        sweep(&inner, keep).await;
        tokio::select! {
            () = tokio::time::sleep(inner.config.retention_sweep) => {}
            () = inner.shutdown.cancelled() => return,
        }
    }
}

/// Deletes an execution's folder in the internal storage (its FILE inputs
/// and output files); a failure is logged, not fatal.
pub(crate) async fn delete_files(inner: &Inner, namespace: &str, flow_id: &str, id: &str) {
    let folder = match StoragePath::execution(namespace, flow_id, id) {
        Ok(folder) => folder,
        Err(err) => {
            tracing::warn!(execution = id, error = %err, "an execution without a storage folder");
            return;
        }
    };
    if let Err(err) = inner.config.storage.delete_prefix(&folder).await {
        tracing::warn!(execution = id, error = %err, "deleting an execution's files failed");
    }
}

/// Deletes every ended execution that ended more than `keep` ago.
async fn sweep(inner: &Inner, keep: Duration) -> u64 {
    let Some(before) = SignedDuration::try_from(keep)
        .ok()
        .and_then(|keep| Timestamp::now().checked_sub(keep).ok())
    else {
        return 0;
    };
    let mut total = 0;
    while !inner.shutdown.is_cancelled() {
        // The batch about to go, for its files; read first, as the purge
        // takes the same rows in the same order.
        let doomed = match inner.store.expired_executions(before, BATCH).await {
            Ok(doomed) => doomed,
            Err(err) => {
                tracing::warn!(error = %err, "listing executions past their retention failed; retrying at the next sweep");
                break;
            }
        };
        match inner.store.purge_executions(before, BATCH).await {
            Ok(deleted) => {
                for (id, namespace, flow_id) in &doomed {
                    delete_files(inner, namespace, flow_id, id).await;
                }
                total += deleted;
                if deleted < u64::from(BATCH) {
                    break;
                }
                // Let the engine's work in between batches.
                tokio::task::yield_now().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "deleting executions past their retention failed; retrying at the next sweep");
                break;
            }
        }
    }
    if total > 0 {
        tracing::info!(
            deleted = total,
            retention_days = keep.as_secs() / 86_400,
            "deleted executions past their retention"
        );
    }
    total
}
