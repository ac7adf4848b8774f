//! How an execution ends: finished (with its outputs), RETRIED into a new
//! execution, or killed.

use jiff::Timestamp;
use serde_json::{Map, Value};

use super::Driver;
use crate::engine::context;
use crate::execution::{Execution, State};
use crate::flow::LogLevel;

impl Driver<'_> {
    /// Ends the execution; a successful end renders the flow's outputs.
    pub(super) fn finish(&mut self, state: State, now: Timestamp) {
        let mut state = state;
        if !state.is_failure() && !self.flow.outputs.is_empty() {
            match self.render_outputs() {
                Ok(outputs) => self.exec.outputs = Some(outputs),
                Err(message) => {
                    self.log(None, LogLevel::Error, message.clone());
                    self.exec.error = Some(message);
                    state = State::Failed;
                }
            }
        }
        self.exec.state.set(state, now);
    }

    pub(super) fn render_outputs(&self) -> Result<Map<String, Value>, String> {
        context::flow_outputs(&self.inner.templates, &self.flow, &self.exec)
    }

    /// Ends the execution RETRIED (its retry is a new execution): attempts
    /// still running stop.
    pub(super) fn end_retried(&mut self) {
        let now = Timestamp::now();
        for (_, handle) in self.workers.drain() {
            handle.abort();
        }
        for run in &mut self.exec.task_run_list {
            if !run.state.current.is_terminal() {
                run.state.set(State::Killed, now);
            }
        }
        self.exec.state.set(State::Retried, now);
        self.dirty = true;
    }

    /// The execution a CREATE_NEW_EXECUTION retry starts: same flow
    /// revision, inputs, labels and trigger, the next attempt number, and an
    /// id derived from the first execution's, so it is created once.
    pub(super) fn retry_execution(&self) -> Execution {
        let (attempt, original) = match &self.exec.metadata {
            Some(m) => (m.attempt_number, m.original_id.clone()),
            None => (1, self.exec.id.clone()),
        };
        let mut next = Execution::new(
            format!("{original}-{}", attempt + 1),
            self.exec.namespace.clone(),
            self.exec.flow_id.clone(),
            self.exec.flow_revision,
            self.exec.labels.clone(),
            self.exec.inputs.clone(),
            Timestamp::now(),
        );
        next.trigger = self.exec.trigger.clone();
        next.metadata = Some(crate::execution::ExecutionMetadata {
            attempt_number: attempt + 1,
            original_id: original,
        });
        next
    }

    /// Stops every attempt and marks everything unfinished KILLED.
    pub(super) fn kill(&mut self) {
        let now = Timestamp::now();
        for (_, handle) in self.workers.drain() {
            handle.abort();
        }
        for run in &mut self.exec.task_run_list {
            if !run.state.current.is_terminal() {
                if let Some(attempt) = run.attempts.last_mut()
                    && !attempt.state.current.is_terminal()
                {
                    attempt.state.set(State::Killed, now);
                }
                run.state.set(State::Killed, now);
            }
        }
        self.exec.state.set(State::Killing, now);
        self.exec.state.set(State::Killed, now);
        self.dirty = true;
    }
}
