//! What every trigger type does to fire: name its trigger, render its
//! inputs into a new execution, and record the trigger event.

use std::collections::HashMap;

use jiff::Timestamp;
use serde_json::{Map, Value};

use crate::engine::{EngineError, Inner, new_execution};
use crate::execution::Execution;
use crate::flow::{Flow, Trigger};
use crate::store::{Repository, TriggerKey, TriggerState};

pub(super) fn key_of(flow: &Flow, trigger: &Trigger) -> TriggerKey {
    TriggerKey {
        namespace: flow.namespace.clone(),
        flow_id: flow.id.clone(),
        trigger_id: trigger.id.clone(),
    }
}

pub(super) async fn trigger_states(
    inner: &Inner,
) -> Result<HashMap<TriggerKey, TriggerState>, EngineError> {
    Ok(inner
        .store
        .trigger_states()
        .await?
        .into_iter()
        .map(|s| (s.key.clone(), s))
        .collect())
}

/// Trigger inputs: strings are templates that see `trigger`.
fn render_inputs(
    inner: &Inner,
    inputs: &Map<String, Value>,
    trigger: &Value,
) -> Result<Map<String, Value>, EngineError> {
    if inputs.is_empty() {
        return Ok(Map::new());
    }
    let mut vars = crate::template::Vars::new();
    vars.insert("trigger".into(), trigger.into());
    match inner
        .templates
        .render_json(&Value::Object(inputs.clone()), &vars)
    {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Ok(Map::new()),
        Err(err) => Err(EngineError::TriggerInputs(err.to_string())),
    }
}

/// A new execution of `flow` for a trigger firing with `variables`
/// (rendered into the trigger's `inputs`).
pub(super) fn triggered_execution(
    inner: &Inner,
    flow: &Flow,
    revision: i64,
    inputs: &Map<String, Value>,
    variables: Value,
) -> Result<Execution, EngineError> {
    triggered_execution_with(inner, flow, revision, inputs, Vec::new(), variables)
}

/// [`triggered_execution`] with labels (a backfill's).
pub(super) fn triggered_execution_with(
    inner: &Inner,
    flow: &Flow,
    revision: i64,
    inputs: &Map<String, Value>,
    labels: Vec<crate::flow::Label>,
    variables: Value,
) -> Result<Execution, EngineError> {
    let inputs = render_inputs(inner, inputs, &variables)?;
    new_execution(flow, revision, &inputs, labels, Some(variables))
}

/// Records the trigger event `event` (once: a second firing of the same
/// event is a no-op) with the execution it starts, if any.
pub(super) async fn fire(
    inner: &Inner,
    key: &TriggerKey,
    event: &str,
    tick: Option<Timestamp>,
    execution: Option<&Execution>,
) -> Result<(), EngineError> {
    let fired = inner
        .store
        .fire_trigger(key, event, tick, execution)
        .await?;
    if fired && execution.is_some() {
        inner.work.notify_one();
    }
    Ok(())
}
