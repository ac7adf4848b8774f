//! `Flow` triggers: when an execution ends, every enabled Flow trigger whose
//! conditions it meets starts an execution of its own flow. Fired before the
//! ended execution's final state is written, through trigger events keyed
//! by the ended execution's id: a driver that dies in between and is
//! re-driven fires again, and the event makes the second firing a no-op.

use serde_json::json;

use super::FlowIndex;
use super::fire::{fire as fire_event, key_of, triggered_execution};
use crate::engine::{EngineError, Inner};
use crate::execution::Execution;

/// Starts the executions that `ended` triggers.
pub(crate) async fn fire(inner: &Inner, ended: &Execution) -> Result<(), EngineError> {
    let index = FlowIndex::current(inner).await?;
    for entry in index.downstream_of(&ended.namespace, &ended.flow_id, ended.state.current) {
        let trigger = entry.trigger;
        let variables = json!({
            "id": trigger.id,
            "type": trigger.kind.type_name(),
            "executionId": ended.id,
            "namespace": ended.namespace,
            "flowId": ended.flow_id,
            "flowRevision": ended.flow_revision,
            "state": ended.state.current.as_str(),
            "outputs": ended.outputs,
        });
        let key = key_of(entry.flow, trigger);
        let execution = triggered_execution(
            inner,
            entry.flow,
            entry.revision,
            &entry.spec.inputs,
            variables,
        )
        .inspect_err(|err| {
            tracing::warn!(
                namespace = %key.namespace, flow = %key.flow_id, trigger = %key.trigger_id,
                error = %err, "a flow-triggered execution could not be created"
            );
        })
        .ok();
        fire_event(inner, &key, &ended.id, None, execution.as_ref()).await?;
    }
    Ok(())
}
