//! Triggers: what starts executions besides the API. `Schedule` triggers
//! ([`schedule`]) fire from the trigger loop every process runs ([`run`]);
//! `Flow` triggers ([`flow`]) fire when an execution ends; `Webhook`
//! triggers ([`webhook`]) fire on a request. All of them see the flows
//! through one [`FlowIndex`] and fire the same way (`fire.rs`): through the
//! store's trigger events, which record the firing and enqueue its
//! execution in one transaction.

mod backfill;
mod controls;
mod fire;
pub(crate) mod flow;
mod index;
mod schedule;
mod webhook;

pub use controls::{
    AbstractTriggerView, Backfill, BackfillLabel, TriggerActionError, TriggerContextView,
    TriggerDetail,
};
pub(crate) use index::FlowIndex;
pub use webhook::{WebhookRequest, WebhookStart};

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use schemars::JsonSchema;
use serde::Serialize;

use super::{EngineError, Inner};
use crate::flow::TriggerKind;
use crate::store::Repository;
use fire::{key_of, trigger_states};
use schedule::MAX_WAIT;

/// How long trigger events are kept, and how often old ones are purged.
const EVENTS_KEPT: SignedDuration = SignedDuration::from_hours(24);
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// The trigger loop: fires due schedules, refreshes the flow index (so
/// other replicas' flow changes are seen) and purges old trigger events,
/// until the engine shuts down.
pub(crate) async fn run(inner: Arc<Inner>) {
    let mut last_purge: Option<tokio::time::Instant> = None;
    loop {
        if last_purge.is_none_or(|at| at.elapsed() >= PURGE_EVERY) {
            last_purge = Some(tokio::time::Instant::now());
            let before = Timestamp::now()
                .checked_sub(EVENTS_KEPT)
                .unwrap_or(Timestamp::UNIX_EPOCH);
            if let Err(err) = inner.store.purge_trigger_events(before).await {
                tracing::warn!(error = %err, "purging old trigger events failed");
            }
        }
        let wait = match pass(&inner).await {
            Ok(wait) => wait,
            Err(err) => {
                tracing::warn!(error = %err, "firing schedules failed; retrying");
                MAX_WAIT
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = inner.flows_changed.notified() => {}
            () = inner.shutdown.cancelled() => return,
        }
    }
}

/// One look at every flow: refreshes the index, then fires the due
/// schedules; returns how long to wait before the next look.
async fn pass(inner: &Inner) -> Result<Duration, EngineError> {
    let index = FlowIndex::refresh(inner).await?;
    schedule::pass(inner, &index).await
}

/// The earliest tick an enabled Schedule trigger of an enabled flow fires
/// next (see [`schedule::next_fire`]), for the activity report: at or
/// before `now` when ticks are due.
pub(crate) async fn next_schedule(
    inner: &Inner,
    now: Timestamp,
) -> Result<Option<Timestamp>, EngineError> {
    let index = FlowIndex::current(inner).await?;
    let states = trigger_states(inner).await?;
    let controls = controls::controls(inner).await?;
    let mut earliest: Option<Timestamp> = None;
    for (flow, _) in index.flows().iter().filter(|(flow, _)| !flow.disabled) {
        for trigger in flow.triggers.iter().filter(|t| !t.disabled) {
            let TriggerKind::Schedule(spec) = &trigger.kind else {
                continue;
            };
            let key = key_of(flow, trigger);
            let control = controls.get(&key);
            if control.is_some_and(|c| c.disabled) {
                continue;
            }
            let Ok(schedule) = spec.schedule() else {
                continue;
            };
            let backfill = controls::backfill_of(control);
            let next =
                schedule::next_fire(spec, &schedule, states.get(&key), backfill.as_ref(), now);
            earliest = match (earliest, next) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
    }
    Ok(earliest)
}

/// A trigger as the API lists it (Kestra's trigger context fields).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerView {
    pub namespace: String,
    pub flow_id: String,
    pub trigger_id: String,
    #[serde(rename = "type")]
    pub type_name: String,
    /// The flow or the trigger is disabled.
    pub disabled: bool,
    /// When a schedule fires next (none for other triggers or when disabled).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub next_execution_date: Option<Timestamp>,
    /// The last tick a schedule handled.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub date: Option<Timestamp>,
    /// The last execution this trigger started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub last_triggered_date: Option<Timestamp>,
}

/// Every trigger of the flows under `namespace` (all when `None`).
pub(crate) async fn list(
    inner: &Inner,
    namespace: Option<&str>,
) -> Result<Vec<TriggerView>, EngineError> {
    let index = FlowIndex::load(inner, namespace).await?;
    let states = trigger_states(inner).await?;
    let controls = controls::controls(inner).await?;
    let now = Timestamp::now();
    let mut out = Vec::new();
    for (flow, _) in index.flows() {
        for trigger in &flow.triggers {
            let key = key_of(flow, trigger);
            let state = states.get(&key);
            let disabled =
                flow.disabled || trigger.disabled || controls.get(&key).is_some_and(|c| c.disabled);
            let next_execution_date = match &trigger.kind {
                TriggerKind::Schedule(spec) if !disabled => schedule::next(spec, state, now),
                _ => None,
            };
            out.push(TriggerView {
                namespace: flow.namespace.clone(),
                flow_id: flow.id.clone(),
                trigger_id: trigger.id.clone(),
                type_name: trigger.kind.type_name().to_owned(),
                disabled,
                next_execution_date,
                date: match &trigger.kind {
                    TriggerKind::Schedule(_) => state.and_then(|s| s.cursor),
                    _ => None,
                },
                execution_id: state.and_then(|s| s.last_execution_id.clone()),
                last_triggered_date: state.and_then(|s| s.last_fired),
            });
        }
    }
    Ok(out)
}
