//! What a script gives back: its output lines (logs, and Kestra's
//! `::{...}::` lines, see [`super::messages`]), its output files (kept
//! in the internal storage, named by `kestra:///` URIs), its exit code.

use std::collections::BTreeMap;
use std::sync::Mutex;

use bytes::Bytes;
use serde_json::{Map, Value};

use super::messages::{self, Message};
use crate::flow::model::LogLevel;
use crate::flow::tasks::Context;
use crate::runner::Stream;
use crate::storage::StoragePath;

/// Reads a script's lines as they come: logs them, and gathers the
/// outputs its `::{...}::` lines set.
pub struct LineReader<'c, 'a> {
    cx: &'c Context<'a>,
    warning_on_std_err: bool,
    vars: Mutex<Map<String, Value>>,
}

impl<'c, 'a> LineReader<'c, 'a> {
    pub fn new(cx: &'c Context<'a>, warning_on_std_err: bool) -> Self {
        LineReader {
            cx,
            warning_on_std_err,
            vars: Mutex::new(Map::new()),
        }
    }

    /// One line of the script's output: a `::{...}::` line is read as
    /// Kestra reads it, any other is logged (standard error at WARN when
    /// `warningOnStdErr`).
    pub fn line(&self, stream: Stream, line: String) {
        if let Some(message) = messages::read(&line) {
            self.message(message);
            return;
        }
        let level = match stream {
            Stream::Stdout => LogLevel::Info,
            Stream::Stderr if self.warning_on_std_err => LogLevel::Warn,
            Stream::Stderr => LogLevel::Info,
        };
        self.cx.log(level, line);
    }

    /// A `::{...}::` line: outputs merged, metrics logged at DEBUG (the
    /// instance keeps no metrics store yet), log lines logged at their level, assets noted at DEBUG, what
    /// could not be read said at WARN.
    fn message(&self, message: Message) {
        if !message.outputs.is_empty() {
            let mut vars = self.vars.lock().unwrap_or_else(|e| e.into_inner());
            vars.extend(message.outputs);
        }
        for (level, text) in message.logs {
            self.cx.log(level, text);
        }
        for metric in &message.metrics {
            self.cx.log(LogLevel::Debug, metric.to_string());
        }
        if message.assets {
            let text = "assets accepted and not kept: the instance keeps no asset catalog";
            self.cx.log(LogLevel::Debug, text);
        }
        for problem in message.problems {
            self.cx.log(LogLevel::Warn, problem);
        }
    }

    /// The outputs the script set.
    pub fn into_vars(self) -> Map<String, Value> {
        self.vars.into_inner().unwrap_or_else(|e| e.into_inner())
    }
}

/// Keeps the output files in the internal storage, under the task run's
/// folder; the map of their names to their `kestra:///` URIs.
pub async fn store_files(
    cx: &Context<'_>,
    files: BTreeMap<String, Bytes>,
) -> Result<Map<String, Value>, String> {
    let mut uris = Map::new();
    if files.is_empty() {
        return Ok(uris);
    }
    let storage = cx.storage;
    let folder = StoragePath::task_run(
        cx.namespace,
        cx.flow_id,
        cx.execution_id,
        &cx.task.id,
        cx.task_run_id,
    )
    .map_err(|e| e.to_string())?;
    for (name, content) in files {
        let path = folder
            .join(&name)
            .map_err(|e| format!("output file `{name}`: {e}"))?;
        storage
            .put(&path, content)
            .await
            .map_err(|e| format!("output file `{name}`: {e}"))?;
        uris.insert(name, Value::String(path.uri()));
    }
    Ok(uris)
}
