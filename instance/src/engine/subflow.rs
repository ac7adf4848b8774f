//! `Subflow` tasks: one attempt creates the child execution and, with
//! `wait`, follows it to its end. The child's id is derived from the task
//! run and attempt, so an attempt resumed after a restart finds the child
//! it already created instead of starting a second one.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::runner::{Event, LogSink};
use super::{Engine, EngineError, Inner, context, new_execution};
use crate::execution::Execution;
use crate::flow::{Label, LogLevel, SubflowSpec};
use crate::store::{Repository, StoreError};
use crate::template::{Templates, Vars};

/// Label every execution of a call tree carries: the id of its root.
pub(crate) const CORRELATION_LABEL: &str = "system.correlationId";

/// What the attempt knows about its parent.
pub(crate) struct Parent {
    pub execution_id: String,
    pub namespace: String,
    pub flow_id: String,
    pub flow_revision: i64,
    pub labels: Vec<Label>,
}

/// The child execution's id for one attempt of a Subflow task run.
pub(crate) fn child_id(task_run_id: &str, attempt: i64) -> String {
    format!("{task_run_id}-{attempt}")
}

/// Runs one attempt and reports it to the driver like any attempt.
pub(crate) async fn run(
    inner: Arc<Inner>,
    spec: SubflowSpec,
    parent: Parent,
    vars: Vars,
    logs: LogSink,
) {
    let run_id = logs.task_run_id.clone();
    let events = logs.events.clone();
    let (result, partial) = match attempt(&inner, &spec, &parent, &vars, &logs).await {
        Ok(outputs) => (Ok(outputs), Map::new()),
        Err((message, outputs)) => (Err(message), outputs),
    };
    let _ = events.send(Event::Done {
        run_id,
        result,
        partial,
    });
}

type Failure = (String, Map<String, Value>);

async fn attempt(
    inner: &Arc<Inner>,
    spec: &SubflowSpec,
    parent: &Parent,
    vars: &Vars,
    logs: &LogSink,
) -> Result<Map<String, Value>, Failure> {
    let fail = |message: String| (message, Map::new());
    let child = create_child(inner, spec, parent, vars, logs).await?;
    let mut outputs = Map::new();
    outputs.insert("executionId".into(), Value::String(child.id.clone()));
    if !spec.wait {
        return Ok(outputs);
    }
    let engine = Engine {
        inner: inner.clone(),
    };
    let done = loop {
        match engine.wait(&child.id, Duration::from_secs(3600)).await {
            Ok(done) => break done,
            Err(EngineError::Timeout(_)) => continue,
            Err(err) => return Err(fail(err.to_string())),
        }
    };
    outputs.insert("state".into(), Value::from(done.state.current.as_str()));
    match child_outputs(inner, spec, &done).await {
        Ok(Some(values)) => {
            outputs.insert("outputs".into(), Value::Object(values));
        }
        Ok(None) => {}
        Err(message) => return Err((message, outputs)),
    }
    if spec.transmit_failed && done.state.current.is_failure() {
        return Err((
            format!(
                "subflow execution {} ended {}",
                done.id,
                done.state.current.as_str()
            ),
            outputs,
        ));
    }
    Ok(outputs)
}

/// Creates (and queues) the child execution of this attempt, or finds the
/// one it created before a restart.
async fn create_child(
    inner: &Inner,
    spec: &SubflowSpec,
    parent: &Parent,
    vars: &Vars,
    logs: &LogSink,
) -> Result<Execution, Failure> {
    let fail = |message: String| (message, Map::new());
    let inputs = match inner
        .templates
        .render_json(&Value::Object(spec.inputs.clone()), vars)
    {
        Ok(Value::Object(map)) => map,
        Ok(_) => Map::new(),
        Err(err) => return Err(fail(err.in_property(Some(&logs.task_id), "inputs"))),
    };
    let (flow, revision) = inner
        .latest_flow(&spec.namespace, &spec.flow_id)
        .await
        .map_err(|err| fail(err.to_string()))?;
    if flow.disabled {
        return Err(fail(format!(
            "flow {}/{} is disabled",
            spec.namespace, spec.flow_id
        )));
    }
    let trigger = json!({
        "type": "io.kestra.plugin.core.flow.Subflow",
        "variables": {
            "executionId": parent.execution_id,
            "namespace": parent.namespace,
            "flowId": parent.flow_id,
            "flowRevision": parent.flow_revision,
        },
    });
    let labels = child_labels(spec, parent);
    let mut child =
        new_execution(&flow, revision, &inputs, labels, Some(trigger)).map_err(|err| {
            fail(format!(
                "subflow {}/{}: {err}",
                spec.namespace, spec.flow_id
            ))
        })?;
    child.id = child_id(&logs.task_run_id, logs.attempt);
    match inner.store.insert_execution(&child).await {
        Ok(()) => {
            inner.work.notify_one();
            logs.log(
                LogLevel::Info,
                format!(
                    "started execution {} of {}/{}",
                    child.id, spec.namespace, spec.flow_id
                ),
            );
        }
        // Created by this attempt before a restart: follow it.
        Err(StoreError::Duplicate(_)) => {}
        Err(err) => return Err(fail(err.to_string())),
    }
    Ok(child)
}

/// The child's labels: the parent's (with `inheritLabels`), the task's,
/// and the call tree's correlation id.
fn child_labels(spec: &SubflowSpec, parent: &Parent) -> Vec<Label> {
    let correlation = parent
        .labels
        .iter()
        .find(|l| l.key == CORRELATION_LABEL)
        .map_or_else(|| parent.execution_id.clone(), |l| l.value.clone());
    let mut labels = Vec::new();
    if spec.inherit_labels {
        labels.extend(
            parent
                .labels
                .iter()
                .filter(|l| l.key != CORRELATION_LABEL)
                .cloned(),
        );
    }
    labels.extend(spec.labels.iter().cloned());
    labels.push(Label {
        key: CORRELATION_LABEL.into(),
        value: correlation,
    });
    labels
}

/// The task-level `outputs` rendered against the child, else the child's
/// flow outputs.
async fn child_outputs(
    inner: &Inner,
    spec: &SubflowSpec,
    child: &Execution,
) -> Result<Option<Map<String, Value>>, String> {
    if spec.outputs.is_empty() {
        return Ok(child.outputs.clone());
    }
    let flow = inner.flow_for(child).await.map_err(|e| e.to_string())?;
    let vars = Templates::vars(&context::base(&flow, child));
    match inner
        .templates
        .render_json(&Value::Object(spec.outputs.clone()), &vars)
    {
        Ok(Value::Object(map)) => Ok(Some(map)),
        Ok(_) => Ok(None),
        Err(err) => Err(format!("subflow outputs: {err}")),
    }
}
