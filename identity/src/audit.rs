//! The audit log: logins, tokens issued, tenant and membership changes,
//! admin actions. Append-only (the schema refuses updates and deletes).
//!
//! Requests hand events to a writer task that appends them in batches, so
//! the token endpoint does not wait on one database write per token. The
//! channel is bounded: when the writer falls behind, requests wait rather
//! than events being dropped.

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::store::{AuditEvent, Store};

const QUEUE: usize = 4096;
const BATCH: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    Denied,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }
}

/// Where handlers record events.
#[derive(Debug, Clone)]
pub struct AuditLog {
    sender: mpsc::Sender<AuditEvent>,
}

impl AuditLog {
    /// Starts the writer; it ends (after writing everything queued) when the
    /// last `AuditLog` clone is dropped.
    pub fn start(store: Store) -> (AuditLog, JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(QUEUE);
        let writer = tokio::spawn(write_batches(store, receiver));
        (AuditLog { sender }, writer)
    }

    pub async fn record(
        &self,
        now: i64,
        actor: Option<&str>,
        action: &str,
        subject: Option<&str>,
        outcome: Outcome,
        client_ip: Option<&str>,
    ) {
        let event = AuditEvent {
            at: now,
            actor: actor.map(str::to_owned),
            action: action.to_owned(),
            subject: subject.map(str::to_owned),
            outcome: outcome.as_str().to_owned(),
            client_ip: client_ip.map(str::to_owned),
        };
        if self.sender.send(event).await.is_err() {
            tracing::error!(action, "audit writer has stopped; event not recorded");
        }
    }
}

async fn write_batches(store: Store, mut receiver: mpsc::Receiver<AuditEvent>) {
    let mut batch = Vec::with_capacity(BATCH);
    while receiver.recv_many(&mut batch, BATCH).await > 0 {
        // Retry a failed batch a few times (a database restart); then log
        // and move on rather than block every request forever.
        let mut attempt = 0;
        while let Err(error) = store.append_audit(&batch).await {
            attempt += 1;
            if attempt == 5 {
                tracing::error!(%error, events = batch.len(), "could not append to the audit log");
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200 * attempt)).await;
        }
        batch.clear();
    }
}
