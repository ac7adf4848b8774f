//! The vocabulary flows and executions share: execution and task-run
//! states, and labels. A leaf: it depends on nothing else in the crate, so
//! `flow` and `execution` both build on it without depending on each other.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Kestra's execution and task-run states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    Created,
    Queued,
    Running,
    Paused,
    Retrying,
    Success,
    Warning,
    Failed,
    Killing,
    Killed,
    Cancelled,
    /// The execution ended and a new one was created to retry it.
    Retried,
}

impl State {
    pub const ALL: [State; 12] = [
        State::Created,
        State::Queued,
        State::Running,
        State::Paused,
        State::Retrying,
        State::Success,
        State::Warning,
        State::Failed,
        State::Killing,
        State::Killed,
        State::Cancelled,
        State::Retried,
    ];

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            State::Success
                | State::Warning
                | State::Failed
                | State::Killed
                | State::Cancelled
                | State::Retried
        )
    }

    /// A terminal state that stops a sequence of tasks.
    pub fn is_failure(self) -> bool {
        matches!(self, State::Failed | State::Killed | State::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Created => "CREATED",
            State::Queued => "QUEUED",
            State::Running => "RUNNING",
            State::Paused => "PAUSED",
            State::Retrying => "RETRYING",
            State::Success => "SUCCESS",
            State::Warning => "WARNING",
            State::Failed => "FAILED",
            State::Killing => "KILLING",
            State::Killed => "KILLED",
            State::Cancelled => "CANCELLED",
            State::Retried => "RETRIED",
        }
    }

    pub fn parse(name: &str) -> Option<State> {
        State::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// A label of a flow or an execution, in declaration order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Label {
    pub key: String,
    pub value: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_round_trip() {
        for state in State::ALL {
            assert_eq!(State::parse(state.as_str()), Some(state));
            let json = serde_json::to_value(state).ok();
            assert_eq!(json, Some(serde_json::Value::String(state.as_str().into())));
        }
    }
}
