//! What users do to executions besides starting them, beyond restart,
//! resume and kill: pause by hand, replay with Kestra's options, labels and
//! state set on ended executions, expressions evaluated against one, the
//! latest execution of flows.

use jiff::Timestamp;
use serde_json::{Map, Value};

use super::{Engine, EngineError, RerunError, context, rerun};
use crate::execution::{Execution, State, StateInfo};
use crate::flow::{self, Label};
use crate::store::{ExecutionFilter, Repository};
use crate::template::Templates;

/// How to replay an execution (Kestra's `replay` and `replay-with-inputs`).
#[derive(Debug, Clone, Default)]
pub struct Replay {
    /// Repeat from this task run on; from the start when `None`.
    pub task_run_id: Option<String>,
    /// Run this revision of the flow instead of the execution's.
    pub revision: Option<i64>,
    /// New inputs (checked against the flow's declarations); the
    /// execution's own when `None` or empty.
    pub inputs: Option<Map<String, Value>>,
}

/// The states an ended execution may be set to by hand.
pub const SETTABLE_STATES: [State; 4] =
    [State::Success, State::Warning, State::Failed, State::Killed];

/// Labels whose key starts with this are the system's: kept when labels
/// are set, and never set by hand.
pub const SYSTEM_LABEL_PREFIX: &str = "system.";

impl Engine {
    async fn ended_execution(&self, id: &str) -> Result<Execution, EngineError> {
        let execution = self
            .inner
            .store
            .get_execution(id)
            .await?
            .ok_or_else(|| EngineError::ExecutionNotFound(id.into()))?;
        if !execution.state.current.is_terminal() {
            return Err(RerunError::NotEnded(id.into()).into());
        }
        Ok(execution)
    }

    /// Asks a RUNNING execution to pause (Kestra's `pause` action): no task
    /// run starts any more, it is PAUSED at once and parked once its
    /// running task runs are done; [`Engine::resume`] goes on. False when
    /// it is not running.
    pub async fn pause(&self, id: &str) -> Result<bool, EngineError> {
        let requested = self.inner.store.request_pause(id, true).await?;
        if requested {
            // The driver looks at the store when signalled (as for a kill).
            self.inner.kill_signal(id).notify_one();
            self.inner.work.notify_one();
        }
        Ok(requested)
    }

    /// A new execution repeating an ended one (see [`Replay`]).
    pub async fn replay_with(&self, id: &str, replay: Replay) -> Result<Execution, EngineError> {
        let execution = self.ended_execution(id).await?;
        let new_id = uuid::Uuid::now_v7().simple().to_string();
        let now = Timestamp::now();
        let mut next = match &replay.task_run_id {
            Some(task_run_id) => rerun::replay(&execution, task_run_id, new_id, now)?,
            None => {
                let mut next = execution.clone();
                next.id = new_id;
                next.task_run_list.clear();
                next.outputs = None;
                next.error = None;
                next.state = StateInfo::new(State::Created, now);
                next
            }
        };
        if let Some(revision) = replay.revision {
            next.flow_revision = revision;
        }
        let flow = self.inner.flow_for(&next).await?;
        if let Some(inputs) = replay.inputs.filter(|i| !i.is_empty()) {
            next.inputs = flow::resolve_inputs(&flow.inputs, &inputs)?;
        }
        self.inner.store.insert_execution(&next).await?;
        self.inner.work.notify_one();
        Ok(next)
    }

    /// Sets the labels of an ended execution: `labels` replace its own,
    /// but for the system's (`system.…`), which stay.
    pub async fn set_labels(&self, id: &str, labels: Vec<Label>) -> Result<Execution, EngineError> {
        let mut execution = self.ended_execution(id).await?;
        let mut all: Vec<Label> = execution
            .labels
            .iter()
            .filter(|l| l.key.starts_with(SYSTEM_LABEL_PREFIX))
            .cloned()
            .collect();
        for label in labels {
            all.retain(|l| l.key != label.key);
            all.push(label);
        }
        execution.labels = all;
        self.rewrite(execution).await
    }

    /// Sets the final state of an ended execution by hand (one of
    /// [`SETTABLE_STATES`]).
    pub async fn change_state(&self, id: &str, state: State) -> Result<Execution, EngineError> {
        let mut execution = self.ended_execution(id).await?;
        execution.state.set(state, Timestamp::now());
        self.rewrite(execution).await
    }

    async fn rewrite(&self, execution: Execution) -> Result<Execution, EngineError> {
        if self.inner.store.rewrite_ended_execution(&execution).await? {
            Ok(execution)
        } else {
            // It started again (restart) in the meantime.
            Err(RerunError::NotEnded(execution.id).into())
        }
    }

    /// Renders `expression` (a template, `{{ … }}`) against an execution as
    /// its tasks see it: flow, execution, inputs, labels, outputs, trigger.
    /// The inner `Err` is why it did not render.
    pub async fn eval_expression(
        &self,
        id: &str,
        expression: &str,
    ) -> Result<Result<String, String>, EngineError> {
        let execution = self
            .inner
            .store
            .get_execution(id)
            .await?
            .ok_or_else(|| EngineError::ExecutionNotFound(id.into()))?;
        let flow = self.inner.flow_for(&execution).await?;
        let vars = Templates::vars(&context::base(&flow, &execution));
        Ok(self
            .inner
            .templates
            .render(expression, &vars)
            .map_err(|e| e.0))
    }

    /// The latest execution of each flow `(namespace, id)` that has one.
    pub async fn latest_executions(
        &self,
        flows: &[(String, String)],
    ) -> Result<Vec<Execution>, EngineError> {
        let mut latest = Vec::new();
        for (namespace, flow_id) in flows {
            let filter = ExecutionFilter {
                namespace: Some(namespace.clone()),
                flow_id: Some(flow_id.clone()),
                states: Vec::new(),
                labels: Vec::new(),
                limit: 20,
                offset: 0,
                ..ExecutionFilter::default()
            };
            // The namespace filter also matches namespaces below it.
            let found = self.inner.store.search_executions(&filter).await?;
            if let Some(execution) = found.into_iter().find(|e| e.namespace == *namespace) {
                latest.push(execution);
            }
        }
        Ok(latest)
    }
}
