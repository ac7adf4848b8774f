//! `Flow` triggers: when an execution ends, every enabled Flow trigger whose
//! conditions it meets starts an execution of its own flow. Fired before the
//! ended execution's final state is written, through trigger events keyed
//! by the ended execution's id: a driver that dies in between and is
//! re-driven fires again, and the event makes the second firing a no-op.

use std::sync::Arc;

use serde_json::json;

use super::scheduler::render_inputs;
use super::{EngineError, Inner, new_execution};
use crate::execution::Execution;
use crate::flow::{Flow, TriggerKind};
use crate::store::{Repository, TriggerKey};

/// One Flow trigger of one flow, as the index holds it.
#[derive(Debug)]
pub(crate) struct Downstream {
    pub flow: Arc<Flow>,
    pub revision: i64,
    /// Position of the trigger in the flow's `triggers`.
    pub trigger: usize,
}

/// The enabled Flow triggers among `flows` (pure).
pub(crate) fn index(flows: &[(Arc<Flow>, i64)]) -> Vec<Downstream> {
    let mut out = Vec::new();
    for (flow, revision) in flows {
        if flow.disabled {
            continue;
        }
        for (i, trigger) in flow.triggers.iter().enumerate() {
            if !trigger.disabled && matches!(trigger.kind, TriggerKind::Flow(_)) {
                out.push(Downstream {
                    flow: flow.clone(),
                    revision: *revision,
                    trigger: i,
                });
            }
        }
    }
    out
}

/// The current index; rebuilt from the store when flows changed here since
/// the scheduler last built it (other replicas' changes arrive with its
/// next pass).
async fn current(inner: &Inner) -> Result<Arc<Vec<Downstream>>, EngineError> {
    if let Some(index) = inner.downstream.lock().ok().and_then(|index| index.clone()) {
        return Ok(index);
    }
    let generation = inner
        .flows_generation
        .load(std::sync::atomic::Ordering::SeqCst);
    let mut flows = Vec::new();
    for record in inner.store.list_flows(None).await? {
        if let Ok(flow) = inner.parsed(
            &record.namespace,
            &record.id,
            record.revision,
            &record.source,
        ) {
            flows.push((flow, record.revision));
        }
    }
    let index = Arc::new(index(&flows));
    if let Ok(mut slot) = inner.downstream.lock()
        && inner
            .flows_generation
            .load(std::sync::atomic::Ordering::SeqCst)
            == generation
    {
        *slot = Some(index.clone());
    }
    Ok(index)
}

/// Starts the executions that `ended` triggers.
pub(crate) async fn fire(inner: &Inner, ended: &Execution) -> Result<(), EngineError> {
    let index = current(inner).await?;
    for entry in index.iter() {
        let Some(trigger) = entry.flow.triggers.get(entry.trigger) else {
            continue;
        };
        let TriggerKind::Flow(spec) = &trigger.kind else {
            continue;
        };
        if !spec.matches(&ended.namespace, &ended.flow_id, ended.state.current) {
            continue;
        }
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
        let key = TriggerKey {
            namespace: entry.flow.namespace.clone(),
            flow_id: entry.flow.id.clone(),
            trigger_id: trigger.id.clone(),
        };
        let execution = render_inputs(inner, &spec.inputs, &variables).and_then(|inputs| {
            new_execution(
                &entry.flow,
                entry.revision,
                &inputs,
                Vec::new(),
                Some(variables),
            )
        });
        let execution = match execution {
            Ok(execution) => Some(execution),
            Err(err) => {
                tracing::warn!(
                    namespace = %key.namespace, flow = %key.flow_id, trigger = %key.trigger_id,
                    error = %err, "a flow-triggered execution could not be created"
                );
                None
            }
        };
        if inner
            .store
            .fire_trigger(&key, &ended.id, None, execution.as_ref())
            .await?
            && execution.is_some()
        {
            inner.work.notify_one();
        }
    }
    Ok(())
}
