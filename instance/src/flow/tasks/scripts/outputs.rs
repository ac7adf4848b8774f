//! What a script gives back: its output lines (logs, and Kestra's
//! `::{"outputs": {...}}::` lines that set outputs), its output files (kept
//! in the internal storage, named by `kestra:///` URIs), its exit code.

use std::collections::BTreeMap;
use std::sync::Mutex;

use bytes::Bytes;
use serde_json::{Map, Value};

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

    /// One line of the script's output.
    pub fn line(&self, stream: Stream, line: String) {
        if let Some(message) = kestra_message(&line) {
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

    /// A `::{...}::` line: `outputs` set outputs, `logs` are logged at their
    /// level; `metrics` are not kept.
    fn message(&self, message: Map<String, Value>) {
        if let Some(Value::Object(outputs)) = message.get("outputs") {
            let mut vars = self.vars.lock().unwrap_or_else(|e| e.into_inner());
            vars.extend(outputs.clone());
        }
        if let Some(Value::Array(logs)) = message.get("logs") {
            for log in logs {
                let level = log
                    .get("level")
                    .and_then(Value::as_str)
                    .and_then(LogLevel::from_name)
                    .unwrap_or(LogLevel::Info);
                if let Some(text) = log.get("message").and_then(Value::as_str) {
                    self.cx.log(level, text);
                }
            }
        }
    }

    /// The outputs the script set.
    pub fn into_vars(self) -> Map<String, Value> {
        self.vars.into_inner().unwrap_or_else(|e| e.into_inner())
    }
}

/// `::{"outputs": {...}}::` (or `logs`, `metrics`): Kestra's way for a
/// script to talk to the engine.
pub fn kestra_message(line: &str) -> Option<Map<String, Value>> {
    let inner = line.trim().strip_prefix("::")?.strip_suffix("::")?;
    match serde_json::from_str(inner).ok()? {
        Value::Object(map)
            if ["outputs", "logs", "metrics"]
                .iter()
                .any(|k| map.contains_key(*k)) =>
        {
            Some(map)
        }
        _ => None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kestra_lines_are_recognised() {
        let message = kestra_message(r#"::{"outputs":{"n":1,"s":"x"}}::"#);
        assert_eq!(
            message.map(Value::Object),
            Some(serde_json::json!({"outputs": {"n": 1, "s": "x"}}))
        );
        assert!(kestra_message(r#"  ::{"logs":[{"level":"INFO","message":"m"}]}::"#).is_some());
        assert_eq!(kestra_message("::not json::"), None);
        assert_eq!(kestra_message(r#"::{"other":1}::"#), None);
        assert_eq!(kestra_message("plain"), None);
    }
}
