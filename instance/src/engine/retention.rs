//! Execution retention (`ATOLL_EXECUTION_RETENTION_DAYS`): a background
//! sweep, at start and then every `retention_sweep`, deletes ended
//! executions older than the retention with their task runs, logs and
//! outputs, a batch per transaction so the engine's own writes interleave.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::Inner;
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
        match inner.store.purge_executions(before, BATCH).await {
            Ok(deleted) => {
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
