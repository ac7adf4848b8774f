//! [`Fields`]: reading one YAML mapping's properties, reporting wrong types
//! and leftovers (unknown properties) as problems instead of stopping.

use std::time::Duration;

use serde_json::{Map, Value};

use super::parts::retry_from_fields;
use super::tasks::parse_task;
use super::{parse_duration, type_name};
use crate::flow::error::{Problem, ProblemKind, problem};
use crate::flow::model::{Retry, Task};

/// The properties of one YAML mapping being read, remembering which were
/// consumed so leftovers can be reported as unknown.
pub(crate) struct Fields<'p> {
    pub(in crate::flow) map: Map<String, Value>,
    pub(in crate::flow) path: String,
    pub(in crate::flow) task: Option<String>,
    known: Vec<&'static str>,
    pub(in crate::flow) problems: &'p mut Vec<Problem>,
}

impl<'p> Fields<'p> {
    pub(crate) fn new(
        map: Map<String, Value>,
        path: String,
        task: Option<String>,
        problems: &'p mut Vec<Problem>,
    ) -> Self {
        Fields {
            map,
            path,
            task,
            known: Vec::new(),
            problems,
        }
    }

    pub(crate) fn field_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub(crate) fn report(&mut self, key: &str, kind: ProblemKind, message: String) {
        let path = self.field_path(key);
        self.problems
            .push(problem(&path, self.task.as_deref(), kind, message));
    }

    pub(crate) fn take(&mut self, key: &'static str) -> Option<Value> {
        self.known.push(key);
        self.map.remove(key)
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    pub(crate) fn wrong_type(&mut self, key: &str, expected: &str, found: &Value) {
        let message = format!("must be {expected}, found {}", type_name(found));
        self.report(key, ProblemKind::Field, message);
    }

    pub(crate) fn missing(&mut self, key: &str) {
        self.report(key, ProblemKind::Field, "is required".into());
    }

    pub(crate) fn string(&mut self, key: &'static str) -> Option<String> {
        match self.take(key)? {
            Value::String(s) => Some(s),
            Value::Null => None,
            // Scalars written unquoted (`value: 12`) are their text, as in Kestra.
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            other => {
                self.wrong_type(key, "a string", &other);
                None
            }
        }
    }

    pub(crate) fn required_string(&mut self, key: &'static str) -> String {
        let value = self.string(key);
        if value.is_none() && !self.problem_at(key) {
            self.missing(key);
        }
        value.unwrap_or_default()
    }

    pub(crate) fn problem_at(&self, key: &str) -> bool {
        let path = self.field_path(key);
        self.problems.iter().any(|p| p.path == path)
    }

    pub(crate) fn bool(&mut self, key: &'static str, default: bool) -> bool {
        match self.take(key) {
            None | Some(Value::Null) => default,
            Some(Value::Bool(b)) => b,
            Some(Value::String(s)) if s == "true" || s == "false" => s == "true",
            Some(other) => {
                self.wrong_type(key, "a boolean", &other);
                default
            }
        }
    }

    pub(crate) fn u32(&mut self, key: &'static str) -> Option<u32> {
        let value = self.take(key)?;
        match value.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) => Some(n),
            None if value.is_null() => None,
            None => {
                self.wrong_type(key, "a non-negative integer", &value);
                None
            }
        }
    }

    pub(crate) fn f64(&mut self, key: &'static str) -> Option<f64> {
        let value = self.take(key)?;
        match value.as_f64() {
            Some(n) if n.is_finite() && n > 0.0 => Some(n),
            _ if value.is_null() => None,
            _ => {
                self.wrong_type(key, "a positive number", &value);
                None
            }
        }
    }

    pub(crate) fn duration(&mut self, key: &'static str) -> Option<Duration> {
        let text = self.string(key)?;
        match parse_duration(&text) {
            Ok(d) => Some(d),
            Err(message) => {
                self.report(key, ProblemKind::Field, message);
                None
            }
        }
    }

    pub(crate) fn required_duration(&mut self, key: &'static str) -> Duration {
        let value = self.duration(key);
        if value.is_none() && !self.problem_at(key) {
            self.missing(key);
        }
        value.unwrap_or_default()
    }

    pub(crate) fn value(&mut self, key: &'static str) -> Option<Value> {
        self.take(key).filter(|v| !v.is_null())
    }

    pub(crate) fn object(&mut self, key: &'static str) -> Map<String, Value> {
        match self.take(key) {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) => map,
            Some(other) => {
                self.wrong_type(key, "a mapping", &other);
                Map::new()
            }
        }
    }

    /// A list of strings; a single string is a list of one.
    pub(crate) fn strings(&mut self, key: &'static str) -> Vec<String> {
        match self.take(key) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => vec![s],
            Some(Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    match item {
                        Value::String(s) => out.push(s),
                        Value::Number(n) => out.push(n.to_string()),
                        Value::Bool(b) => out.push(b.to_string()),
                        other => {
                            let message = format!("must be a string, found {}", type_name(&other));
                            self.report(&format!("{key}[{i}]"), ProblemKind::Field, message);
                        }
                    }
                }
                out
            }
            Some(other) => {
                self.wrong_type(key, "a list of strings", &other);
                Vec::new()
            }
        }
    }

    pub(crate) fn list(&mut self, key: &'static str) -> Vec<Value> {
        match self.take(key) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items,
            Some(other) => {
                self.wrong_type(key, "a list", &other);
                Vec::new()
            }
        }
    }

    pub(crate) fn tasks(&mut self, key: &'static str) -> Vec<Task> {
        let items = self.list(key);
        let base = self.field_path(key);
        items
            .into_iter()
            .enumerate()
            .filter_map(|(i, item)| parse_task(item, format!("{base}[{i}]"), self.problems))
            .collect()
    }

    pub(crate) fn required_tasks(&mut self, key: &'static str) -> Vec<Task> {
        let present = self.has(key);
        let tasks = self.tasks(key);
        if !present {
            self.missing(key);
        } else if tasks.is_empty() && !self.problem_at(key) {
            let flagged = self
                .problems
                .iter()
                .any(|p| p.path.starts_with(&self.field_path(key)));
            if !flagged {
                self.report(
                    key,
                    ProblemKind::Field,
                    "must hold at least one task".into(),
                );
            }
        }
        tasks
    }

    pub(crate) fn retry(&mut self, key: &'static str) -> Option<Retry> {
        let value = self.value(key)?;
        let Value::Object(map) = value else {
            self.wrong_type(key, "a mapping", &value);
            return None;
        };
        let path = self.field_path(key);
        let mut fields = Fields::new(map, path, self.task.clone(), self.problems);
        let retry = retry_from_fields(&mut fields);
        fields.finish();
        retry
    }

    /// Reports every property that was not consumed.
    pub(crate) fn finish(mut self) {
        let leftovers: Vec<String> = self.map.keys().cloned().collect();
        if leftovers.is_empty() {
            return;
        }
        let mut known = self.known.clone();
        known.sort_unstable();
        known.dedup();
        for key in leftovers {
            let message = format!("unknown property; expected one of: {}", known.join(", "));
            self.report(&key, ProblemKind::UnknownField, message);
        }
        self.map.clear();
    }
}
