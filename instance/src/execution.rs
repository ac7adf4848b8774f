//! Executions, task runs and their states, in Kestra's JSON shape
//! (`taskRunList`, `state.current`, `state.histories`).

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::vocabulary::Label;
pub use crate::vocabulary::State;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct History {
    pub state: State,
    pub date: Timestamp,
}

/// A state with its history, as Kestra reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StateInfo {
    pub current: State,
    pub histories: Vec<History>,
    pub start_date: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_date: Option<Timestamp>,
}

impl StateInfo {
    pub fn new(state: State, now: Timestamp) -> Self {
        StateInfo {
            current: state,
            histories: vec![History { state, date: now }],
            start_date: now,
            end_date: state.is_terminal().then_some(now),
        }
    }

    /// Moves to `state`; a no-op when already there.
    pub fn set(&mut self, state: State, now: Timestamp) {
        if self.current == state {
            return;
        }
        self.current = state;
        self.histories.push(History { state, date: now });
        if state.is_terminal() {
            self.end_date = Some(now);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Execution {
    pub id: String,
    pub namespace: String,
    pub flow_id: String,
    pub flow_revision: i64,
    pub state: StateInfo,
    pub labels: Vec<Label>,
    pub inputs: Map<String, Value>,
    pub task_run_list: Vec<TaskRun>,
    /// The flow's `outputs`, rendered once its tasks are done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Value>,
    /// Why the execution failed outside any task (e.g. an output that did not render).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Set on executions created by a `CREATE_NEW_EXECUTION` retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<ExecutionMetadata>,
}

/// Where an execution stands in a chain of `CREATE_NEW_EXECUTION` retries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionMetadata {
    /// 1 for the first execution, 2 for its first retry…
    pub attempt_number: u32,
    /// The first execution of the chain.
    pub original_id: String,
}

impl Execution {
    pub fn new(
        id: String,
        namespace: String,
        flow_id: String,
        flow_revision: i64,
        labels: Vec<Label>,
        inputs: Map<String, Value>,
        now: Timestamp,
    ) -> Self {
        Execution {
            id,
            namespace,
            flow_id,
            flow_revision,
            state: StateInfo::new(State::Created, now),
            labels,
            inputs,
            task_run_list: Vec::new(),
            outputs: None,
            trigger: None,
            error: None,
            metadata: None,
        }
    }

    pub fn task_run(&self, id: &str) -> Option<&TaskRun> {
        self.task_run_list.iter().find(|t| t.id == id)
    }

    pub fn task_run_mut(&mut self, id: &str) -> Option<&mut TaskRun> {
        self.task_run_list.iter_mut().find(|t| t.id == id)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskRun {
    pub id: String,
    pub task_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_task_run_id: Option<String>,
    /// The innermost loop iteration value this run belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Every enclosing loop value, outermost first (addresses `outputs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    pub state: StateInfo,
    pub attempts: Vec<Attempt>,
    pub outputs: Map<String, Value>,
    /// When the next attempt may start (while RETRYING).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<Timestamp>,
    /// The branch an If (`then`/`else`) or Switch (case key) took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// The values a ForEach iterates over, as evaluated when it started.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub iterations: Vec<String>,
}

impl TaskRun {
    pub fn new(
        id: String,
        task_id: String,
        parent_task_run_id: Option<String>,
        values: Vec<String>,
        now: Timestamp,
    ) -> Self {
        TaskRun {
            id,
            task_id,
            parent_task_run_id,
            value: values.last().cloned(),
            values,
            state: StateInfo::new(State::Created, now),
            attempts: Vec::new(),
            outputs: Map::new(),
            next_attempt_at: None,
            branch: None,
            iterations: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    pub state: StateInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One log line of an execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    /// Position in the execution's log (for following).
    pub seq: i64,
    pub execution_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    pub attempt_number: i64,
    pub level: String,
    pub message: String,
    pub timestamp: Timestamp,
}

/// A log line before the store gives it a position.
#[derive(Debug, Clone, PartialEq)]
pub struct NewLog {
    pub execution_id: String,
    pub task_run_id: Option<String>,
    pub task_id: Option<String>,
    pub attempt_number: i64,
    pub level: String,
    pub message: String,
    pub timestamp: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_history_records_changes_once() {
        let now = Timestamp::UNIX_EPOCH;
        let mut info = StateInfo::new(State::Created, now);
        info.set(State::Running, now);
        info.set(State::Running, now);
        info.set(State::Success, now);
        let states: Vec<_> = info.histories.iter().map(|h| h.state).collect();
        assert_eq!(states, [State::Created, State::Running, State::Success]);
        assert_eq!(info.end_date, Some(now));
    }
}
