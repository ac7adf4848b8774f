//! Runs attempts of runnable tasks (what each does is its task type's
//! module, under `flow/tasks/`). Each attempt runs as its own tokio task;
//! its logs and result go back to the execution's driver.

use std::sync::Arc;

use jiff::Timestamp;
use serde_json::{Map, Value};
use tokio::sync::Semaphore;
use tokio::sync::mpsc::UnboundedSender;

pub(crate) use crate::flow::tasks::is_truthy;

use crate::execution::NewLog;
use crate::flow::tasks::egress::TaskHttp;
use crate::flow::tasks::{Context, Logs};
use crate::flow::{LogLevel, Task};
use crate::runner::TaskServices;
use crate::template::{Templates, Vars};

/// What the driver hears from a running attempt.
#[derive(Debug)]
pub(crate) enum Event {
    Log(NewLog),
    Done {
        run_id: String,
        result: Result<Map<String, Value>, String>,
        /// Outputs kept even when the attempt failed (a failed subflow's).
        partial: Map<String, Value>,
    },
}

/// Where an attempt's log lines go.
#[derive(Debug, Clone)]
pub(crate) struct LogSink {
    pub execution_id: String,
    pub task_run_id: String,
    pub task_id: String,
    pub attempt: i64,
    pub events: UnboundedSender<Event>,
}

impl LogSink {
    /// Logs a line, cut at [`MAX_LINE`] bytes.
    pub fn log(&self, level: LogLevel, message: impl Into<String>) {
        let message = truncate(message.into());
        let _ = self.events.send(Event::Log(NewLog {
            execution_id: self.execution_id.clone(),
            task_run_id: Some(self.task_run_id.clone()),
            task_id: Some(self.task_id.clone()),
            attempt_number: self.attempt,
            level: level.name().into(),
            message,
            timestamp: Timestamp::now(),
        }));
    }
}

/// Everything one attempt needs.
pub(crate) struct Attempt {
    pub task: Task,
    pub vars: Vars,
    pub templates: Arc<Templates>,
    pub http: TaskHttp,
    /// Task runs executing at once (`ATOLL_MAX_CONCURRENT_TASK_RUNS`).
    pub slots: Arc<Semaphore>,
    pub logs: LogSink,
    /// What `secret()`, `kv()`, `read()`... reach.
    pub lookups: crate::lookups::Resolver,
    /// The execution's flow (storage paths, pod labels).
    pub namespace: String,
    pub flow_id: String,
    pub services: Arc<TaskServices>,
    /// The internal storage.
    pub storage: crate::storage::Storage,
}

/// Longest log line kept (longer lines, from a command's output or a Log
/// task, are cut).
pub(crate) const MAX_LINE: usize = 64 * 1024;

/// Runs the attempt within the task's timeout and reports the result. The
/// attempt first waits for one of the engine's task-run slots; the timeout
/// counts from when it starts executing.
pub(crate) async fn run(attempt: Attempt) {
    let run_id = attempt.logs.task_run_id.clone();
    let events = attempt.logs.events.clone();
    // Closed only if the engine is gone; run anyway then.
    let _slot = attempt.slots.clone().acquire_owned().await.ok();
    let result = match attempt.task.timeout {
        Some(limit) => match tokio::time::timeout(limit, execute(&attempt)).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "timed out after {}",
                jiff::SignedDuration::try_from(limit)
                    .map(|d| format!("{d:#}"))
                    .unwrap_or_else(|_| format!("{limit:?}"))
            )),
        },
        None => execute(&attempt).await,
    };
    let _ = events.send(Event::Done {
        run_id,
        result,
        partial: Map::new(),
    });
}

async fn execute(attempt: &Attempt) -> Result<Map<String, Value>, String> {
    let sink = attempt.logs.clone();
    let logs: Logs = Arc::new(move |level, message| sink.log(level, message));
    let cx = Context {
        task: &attempt.task,
        templates: &attempt.templates,
        vars: &attempt.vars,
        http: &attempt.http,
        logs: &logs,
        timeout: attempt.task.timeout,
        task_run_id: &attempt.logs.task_run_id,
        attempt: attempt.logs.attempt,
        lookups: &attempt.lookups,
        namespace: &attempt.namespace,
        flow_id: &attempt.flow_id,
        execution_id: &attempt.logs.execution_id,
        services: &attempt.services,
        storage: &attempt.storage,
    };
    attempt.task.kind.run(&cx).await
}

fn truncate(mut line: String) -> String {
    if line.len() > MAX_LINE {
        let mut cut = MAX_LINE;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
    }
    line
}
