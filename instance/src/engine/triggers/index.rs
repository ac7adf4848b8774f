//! The flow index: every live flow, parsed, as the triggers see them. The
//! trigger loop rebuilds it on each pass (so flows changed by other
//! replicas are seen); a flow change in this process drops it, and the
//! next reader rebuilds it at once.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::super::{EngineError, Inner};
use crate::flow::{Flow, FlowTrigger, Trigger, TriggerKind};
use crate::store::Repository;
use crate::vocabulary::State;

/// Live flows with their revisions, and where their enabled Flow triggers are.
#[derive(Debug, Default)]
pub(crate) struct FlowIndex {
    flows: Vec<(Arc<Flow>, i64)>,
    /// (position in `flows`, position in the flow's `triggers`) of every
    /// enabled Flow trigger of an enabled flow.
    downstream: Vec<(usize, usize)>,
}

/// An enabled Flow trigger that an ended execution starts.
#[derive(Debug)]
pub(crate) struct Downstream<'a> {
    pub flow: &'a Arc<Flow>,
    pub revision: i64,
    pub trigger: &'a Trigger,
    pub spec: &'a FlowTrigger,
}

impl FlowIndex {
    /// Indexes `flows` (pure).
    pub(crate) fn new(flows: Vec<(Arc<Flow>, i64)>) -> FlowIndex {
        let mut downstream = Vec::new();
        for (f, (flow, _)) in flows.iter().enumerate() {
            if flow.disabled {
                continue;
            }
            for (t, trigger) in flow.triggers.iter().enumerate() {
                if !trigger.disabled && matches!(trigger.kind, TriggerKind::Flow(_)) {
                    downstream.push((f, t));
                }
            }
        }
        FlowIndex { flows, downstream }
    }

    /// Every flow with its revision.
    pub(crate) fn flows(&self) -> &[(Arc<Flow>, i64)] {
        &self.flows
    }

    /// The enabled Flow triggers an execution of `namespace/flow_id` that
    /// ended in `state` starts (pure).
    pub(crate) fn downstream_of<'a>(
        &'a self,
        namespace: &'a str,
        flow_id: &'a str,
        state: State,
    ) -> impl Iterator<Item = Downstream<'a>> + 'a {
        self.downstream.iter().filter_map(move |&(f, t)| {
            let (flow, revision) = self.flows.get(f)?;
            let trigger = flow.triggers.get(t)?;
            let TriggerKind::Flow(spec) = &trigger.kind else {
                return None;
            };
            spec.matches(namespace, flow_id, state)
                .then_some(Downstream {
                    flow,
                    revision: *revision,
                    trigger,
                    spec,
                })
        })
    }

    /// The live flows under `namespace` (all when `None`), read from the
    /// store; a stored flow that no longer parses is left out.
    pub(crate) async fn load(
        inner: &Inner,
        namespace: Option<&str>,
    ) -> Result<FlowIndex, EngineError> {
        let mut flows = Vec::new();
        for record in inner.store.list_flows(namespace).await? {
            if let Ok(flow) = inner.parsed(
                &record.namespace,
                &record.id,
                record.revision,
                &record.source,
            ) {
                flows.push((flow, record.revision));
            }
        }
        Ok(FlowIndex::new(flows))
    }

    /// Reads every flow and installs the result as the current index,
    /// unless flows changed in this process meanwhile (the next reader then
    /// rebuilds it).
    pub(crate) async fn refresh(inner: &Inner) -> Result<Arc<FlowIndex>, EngineError> {
        let generation = inner.flows_generation.load(Ordering::SeqCst);
        let index = Arc::new(FlowIndex::load(inner, None).await?);
        if let Ok(mut slot) = inner.downstream.lock()
            && inner.flows_generation.load(Ordering::SeqCst) == generation
        {
            *slot = Some(index.clone());
        }
        Ok(index)
    }

    /// The current index: the last one built, or a new one after a flow
    /// change in this process.
    pub(crate) async fn current(inner: &Inner) -> Result<Arc<FlowIndex>, EngineError> {
        if let Some(index) = inner.downstream.lock().ok().and_then(|index| index.clone()) {
            return Ok(index);
        }
        FlowIndex::refresh(inner).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(namespace: &str, id: &str, triggers: &str) -> Arc<Flow> {
        let source = format!(
            "id: {id}\nnamespace: {namespace}\ntasks:\n  - id: t\n    type: io.kestra.plugin.core.log.Log\n    message: hi\n{triggers}"
        );
        Arc::new(crate::flow::parse(&source).expect("flow parses"))
    }

    const ON_LOAD_FAILED: &str = "triggers:
  - id: after-load
    type: io.kestra.plugin.core.trigger.Flow
    states: [FAILED]
    conditions:
      - type: io.kestra.plugin.core.condition.ExecutionFlow
        namespace: acme
        flowId: load
";

    fn started(index: &FlowIndex, namespace: &str, flow_id: &str, state: State) -> Vec<String> {
        index
            .downstream_of(namespace, flow_id, state)
            .map(|d| format!("{}/{}@{}", d.flow.id, d.trigger.id, d.revision))
            .collect()
    }

    #[test]
    fn an_ended_execution_starts_the_matching_flow_triggers() {
        let index = FlowIndex::new(vec![
            (flow("acme", "load", ""), 1),
            (flow("acme", "alert", ON_LOAD_FAILED), 3),
            (flow("acme", "report", ON_LOAD_FAILED), 2),
        ]);
        assert_eq!(index.flows().len(), 3);
        assert_eq!(
            started(&index, "acme", "load", State::Failed),
            ["alert/after-load@3", "report/after-load@2"]
        );
        assert!(started(&index, "acme", "load", State::Success).is_empty());
        assert!(started(&index, "acme", "other", State::Failed).is_empty());
    }

    #[test]
    fn disabled_flows_and_triggers_start_nothing() {
        let disabled_trigger = ON_LOAD_FAILED.replace(
            "    states: [FAILED]",
            "    disabled: true\n    states: [FAILED]",
        );
        let mut disabled_flow = (*flow("acme", "report", ON_LOAD_FAILED)).clone();
        disabled_flow.disabled = true;
        let index = FlowIndex::new(vec![
            (flow("acme", "alert", &disabled_trigger), 1),
            (Arc::new(disabled_flow), 1),
        ]);
        assert_eq!(index.flows().len(), 2);
        assert!(started(&index, "acme", "load", State::Failed).is_empty());
    }
}
