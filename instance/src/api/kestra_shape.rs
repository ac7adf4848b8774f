//! Executions and log lines in the JSON Kestra's servers answer and its
//! clients parse (`kestrapy`'s pydantic models of releases 1.x and 2.x):
//! the engine's own shape plus what those models require of it —
//! `deleted`, `originalId`, `metadata.originalCreatedDate`, each task
//! run's `executionId`, `namespace` and `flowId`, and a state's
//! `duration` (ISO-8601).

use jiff::{SignedDuration, Timestamp};
use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::execution::{Execution, LogEntry, StateInfo};

/// An execution as Kestra answers it (see the module's documentation).
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub(super) struct KestraExecution(Map<String, Value>);

/// The engine's execution schema and what [`KestraExecution::of`] adds.
impl JsonSchema for KestraExecution {
    fn schema_name() -> Cow<'static, str> {
        "KestraExecution".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        // The engine's execution, inline, with `metadata` replaced by
        // Kestra's (an `allOf` would also demand the engine's metadata).
        let mut schema = Execution::json_schema(generator);
        let kestra = json_schema!({
            "properties": {
                "deleted": {"type": "boolean", "description": "Always false: deleted executions are gone."},
                "originalId": {"type": "string", "description": "The execution this one was replayed from, else its own id."},
                "metadata": {
                    "type": "object",
                    "properties": {
                        "attemptNumber": {"type": "integer"},
                        "originalCreatedDate": {"type": ["string", "null"], "format": "date-time"}
                    },
                    "required": ["attemptNumber", "originalCreatedDate"]
                }
            },
            "required": ["deleted", "originalId", "metadata"]
        });
        schema.insert(
            "description".into(),
            "An execution, with the fields Kestra's clients require.".into(),
        );
        let props = schema
            .ensure_object()
            .entry("properties")
            .or_insert_with(|| json!({}));
        if let (Some(props), Some(added)) = (
            props.as_object_mut(),
            kestra.get("properties").and_then(Value::as_object),
        ) {
            props.extend(added.clone());
        }
        let required = schema
            .ensure_object()
            .entry("required")
            .or_insert_with(|| json!([]));
        if let Some(required) = required.as_array_mut() {
            for name in ["deleted", "originalId", "metadata"] {
                if !required.iter().any(|r| r == name) {
                    required.push(json!(name));
                }
            }
        }
        schema
    }
}

impl KestraExecution {
    /// The JSON of `execution` with Kestra's required fields added.
    pub(super) fn of(execution: &Execution) -> KestraExecution {
        let mut body = match serde_json::to_value(execution) {
            Ok(Value::Object(map)) => map,
            // An execution always serializes to an object.
            _ => Map::new(),
        };
        let original_id = execution
            .metadata
            .as_ref()
            .map_or(execution.id.as_str(), |m| m.original_id.as_str());
        body.insert("deleted".into(), Value::Bool(false));
        body.insert("originalId".into(), Value::String(original_id.to_owned()));
        let mut metadata = match body.remove("metadata") {
            Some(Value::Object(map)) => map,
            _ => Map::new(),
        };
        metadata.entry("attemptNumber").or_insert_with(|| json!(1));
        metadata.insert(
            "originalCreatedDate".into(),
            json!(execution.state.start_date),
        );
        body.insert("metadata".into(), Value::Object(metadata));
        body.insert("state".into(), state(&execution.state));
        if let Some(Value::Array(runs)) = body.get_mut("taskRunList") {
            for (run, of) in runs.iter_mut().zip(&execution.task_run_list) {
                let Value::Object(run) = run else { continue };
                run.insert("executionId".into(), json!(execution.id));
                run.insert("namespace".into(), json!(execution.namespace));
                run.insert("flowId".into(), json!(execution.flow_id));
                run.insert("state".into(), state(&of.state));
                if let Some(Value::Array(attempts)) = run.get_mut("attempts") {
                    for (attempt, of) in attempts.iter_mut().zip(&of.attempts) {
                        if let Value::Object(attempt) = attempt {
                            attempt.insert("state".into(), state(&of.state));
                        }
                    }
                }
            }
        }
        KestraExecution(body)
    }

    /// Keeps only the fields `keep` accepts.
    pub(super) fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.0.retain(|key, _| keep(key));
    }

    /// Sets one field.
    pub(super) fn insert(&mut self, key: &str, value: Value) {
        self.0.insert(key.to_owned(), value);
    }

    /// Many executions.
    pub(super) fn all(executions: &[Execution]) -> Vec<KestraExecution> {
        executions.iter().map(KestraExecution::of).collect()
    }
}

/// A state with its `duration` (until now while it runs).
fn state(info: &StateInfo) -> Value {
    let mut value = serde_json::to_value(info).unwrap_or_else(|_| json!({}));
    let end = info.end_date.unwrap_or_else(Timestamp::now);
    let duration = end
        .duration_since(info.start_date)
        .max(SignedDuration::ZERO);
    if let Value::Object(map) = &mut value {
        map.insert("duration".into(), json!(iso_duration(duration)));
    }
    value
}

/// `PT1.5S`-style ISO-8601 duration, as Java's `Duration` prints it.
fn iso_duration(duration: SignedDuration) -> String {
    let millis = duration.as_millis();
    let (secs, ms) = (millis / 1000, millis % 1000);
    if ms == 0 {
        format!("PT{secs}S")
    } else {
        format!("PT{secs}.{ms:03}S")
    }
}

/// A log line as Kestra answers it: with the execution's namespace and flow.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct KestraLogEntry {
    /// The namespace of the execution's flow.
    pub namespace: String,
    /// The execution's flow.
    pub flow_id: String,
    /// The execution the line belongs to.
    pub execution_id: String,
    /// The task run that wrote it, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_run_id: Option<String>,
    /// The task that wrote it, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// The attempt of the task run.
    pub attempt_number: i64,
    /// TRACE, DEBUG, INFO, WARN or ERROR.
    pub level: String,
    /// The line.
    pub message: String,
    /// When it was written (RFC 3339).
    #[schemars(with = "String")]
    pub timestamp: Timestamp,
    /// Its position among the execution's lines (Atoll's paging cursor).
    pub seq: i64,
}

impl KestraLogEntry {
    /// `entry` of `execution`.
    pub(super) fn of(entry: LogEntry, execution: &Execution) -> KestraLogEntry {
        KestraLogEntry {
            namespace: execution.namespace.clone(),
            flow_id: execution.flow_id.clone(),
            execution_id: entry.execution_id,
            task_run_id: entry.task_run_id,
            task_id: entry.task_id,
            attempt_number: entry.attempt_number,
            level: entry.level,
            message: entry.message,
            timestamp: entry.timestamp,
            seq: entry.seq,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_java_does() {
        assert_eq!(iso_duration(SignedDuration::from_millis(1500)), "PT1.500S");
        assert_eq!(iso_duration(SignedDuration::from_secs(3)), "PT3S");
    }

    #[test]
    fn executions_carry_what_kestras_models_require() {
        let execution = Execution::new(
            "e1".into(),
            "ns".into(),
            "f".into(),
            1,
            Vec::new(),
            Map::new(),
            Timestamp::UNIX_EPOCH,
        );
        let body = serde_json::to_value(KestraExecution::of(&execution)).expect("json");
        assert_eq!(body["deleted"], false);
        assert_eq!(body["originalId"], "e1");
        assert_eq!(
            body["metadata"]["originalCreatedDate"],
            "1970-01-01T00:00:00Z"
        );
        assert!(body["state"]["duration"].is_string());
    }
}
