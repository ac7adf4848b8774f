//! What a flowable task run (If, Switch, ForEach) will do.

use jiff::Timestamp;
use serde_json::{Map, Value};

use super::Driver;
use crate::engine::plan::{DEFAULTS_BRANCH, ELSE_BRANCH, THEN_BRANCH};
use crate::engine::runner::is_truthy;
use crate::execution::{State, TaskRun};
use crate::flow::{Task, TaskKind};

impl Driver<'_> {
    /// Decides what a flowable task run will do (branch, loop values).
    pub(super) fn evaluate(&mut self, run_id: &str, now: Timestamp) {
        let Some(run) = self.exec.task_run(run_id).cloned() else {
            return;
        };
        let Some(task) = self.task(&run.task_id) else {
            return;
        };
        match self.decide(&task, &run) {
            Ok((branch, iterations, outputs)) => {
                if let Some(run) = self.exec.task_run_mut(run_id) {
                    run.branch = branch;
                    run.iterations = iterations;
                    run.outputs = outputs;
                    run.state.set(State::Running, now);
                }
            }
            Err(message) => self.fail_run(run_id, message, now),
        }
    }

    #[allow(clippy::type_complexity)]
    pub(super) fn decide(
        &self,
        task: &Task,
        run: &TaskRun,
    ) -> Result<(Option<String>, Vec<String>, Map<String, Value>), String> {
        let render = |text: &str| {
            self.inner
                .templates
                .render(text, &self.vars(task, run))
                .map_err(|e| crate::flow::tasks::template_error(task, text, &e))
        };
        let mut outputs = Map::new();
        match &task.kind {
            TaskKind::If { condition, .. } => {
                let branch = if is_truthy(&render(condition)?) {
                    THEN_BRANCH
                } else {
                    ELSE_BRANCH
                };
                Ok((Some(branch.into()), Vec::new(), outputs))
            }
            TaskKind::Switch {
                value,
                cases,
                defaults,
            } => {
                let value = render(value)?;
                let matched = cases.iter().find(|(key, _)| *key == value);
                outputs.insert("value".into(), Value::String(value.clone()));
                outputs.insert("defaults".into(), Value::Bool(matched.is_none()));
                match matched {
                    Some((key, _)) => Ok((Some(key.clone()), Vec::new(), outputs)),
                    None if !defaults.is_empty() => {
                        Ok((Some(DEFAULTS_BRANCH.into()), Vec::new(), outputs))
                    }
                    None => Err(format!(
                        "Switch value `{value}` matches no case and there are no defaults"
                    )),
                }
            }
            TaskKind::ForEach { values, .. } => {
                let items = match values {
                    Value::String(text) => {
                        let rendered = render(text)?;
                        match serde_json::from_str::<Value>(&rendered) {
                            Ok(Value::Array(items)) => items,
                            _ => return Err("ForEach values must render to a JSON array".into()),
                        }
                    }
                    Value::Array(items) => items
                        .iter()
                        .map(|item| match item {
                            Value::String(s) => render(s).map(Value::String),
                            other => Ok(other.clone()),
                        })
                        .collect::<Result<_, _>>()?,
                    _ => return Err("ForEach values must be a list".into()),
                };
                let nulls = items.iter().filter(|v| v.is_null()).count();
                if nulls > 0 {
                    return Err(format!(
                        "Found '{nulls}' null values on Each, with values={}",
                        Value::Array(items)
                    ));
                }
                let iterations = items
                    .into_iter()
                    .map(|item| match item {
                        Value::String(s) => s,
                        other => other.to_string(),
                    })
                    .collect();
                Ok((None, iterations, outputs))
            }
            _ => Ok((None, Vec::new(), outputs)),
        }
    }
}
