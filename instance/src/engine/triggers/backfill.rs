//! A schedule's backfill, advanced by the trigger loop: the ticks between
//! its start and end fire again (whether they fired before or not), each
//! once, with the backfill's inputs and labels, a bounded batch per pass.
//! Progress (`currentDate`) is stored after each batch (unless a caller
//! changed the backfill meanwhile), and each tick is
//! a trigger event named after the backfill, so a restart neither skips
//! nor repeats one. A finished backfill is removed, as Kestra does.

use jiff::{SignedDuration, Timestamp};
use serde_json::json;

use super::controls::Backfill;
use super::fire::{fire, triggered_execution_with};
use crate::cron::Schedule;
use crate::engine::{EngineError, Inner};
use crate::flow::{Flow, Label, ScheduleTrigger, Trigger};
use crate::store::TriggerKey;

/// Ticks fired per trigger and pass.
const BATCH: usize = 100;

/// One schedule trigger with a backfill in progress.
pub(super) struct Backfilling<'a> {
    pub flow: &'a Flow,
    pub revision: i64,
    pub trigger: &'a Trigger,
    pub spec: &'a ScheduleTrigger,
    pub key: &'a TriggerKey,
}

impl Backfilling<'_> {
    /// Fires the next batch of the backfill's ticks and stores its progress.
    pub(super) async fn advance(
        &self,
        inner: &Inner,
        schedule: &Schedule,
        mut backfill: Backfill,
        version: i64,
    ) -> Result<(), EngineError> {
        if backfill.paused {
            return Ok(());
        }
        let end = backfill.end.unwrap_or_else(Timestamp::now);
        let after = backfill.current_date.unwrap_or_else(|| {
            backfill
                .start
                .checked_sub(SignedDuration::from_micros(1))
                .unwrap_or(backfill.start)
        });
        let due = schedule.due(after, end);
        let finished = due.len() <= BATCH && due.len() < crate::cron::MAX_DUE;
        let name = backfill.created.unwrap_or(backfill.start).as_microsecond();
        let mut previous = after;
        for tick in due.into_iter().take(BATCH) {
            let execution = self.execution(inner, schedule, &backfill, tick, previous);
            let event = format!("backfill-{name}-{}", tick.as_microsecond());
            fire(inner, self.key, &event, None, execution.as_ref()).await?;
            backfill.current_date = Some(tick);
            previous = tick;
        }
        let stored = if finished {
            None
        } else {
            Some(serde_json::to_value(&backfill).map_err(|e| {
                EngineError::TriggerInputs(format!("the backfill does not encode: {e}"))
            })?)
        };
        // Not over a caller's change (pause, delete) made meanwhile: the
        // next pass reads it and fires again only what is not yet fired.
        inner
            .store
            .advance_trigger_backfill(self.key, version, stored.as_ref())
            .await?;
        Ok(())
    }

    /// The execution one backfilled tick starts (`None`, logged, when its
    /// inputs do not render or resolve: the tick is skipped).
    fn execution(
        &self,
        inner: &Inner,
        schedule: &Schedule,
        backfill: &Backfill,
        tick: Timestamp,
        previous: Timestamp,
    ) -> Option<crate::execution::Execution> {
        let variables = json!({
            "id": self.trigger.id,
            "type": self.trigger.kind.type_name(),
            "date": tick.to_string(),
            "previous": previous.to_string(),
            "next": schedule.next_after(tick).map(|t| t.to_string()),
        });
        let mut inputs = self.spec.inputs.clone();
        if let Some(given) = &backfill.inputs {
            inputs.extend(given.clone());
        }
        let labels: Vec<Label> = backfill.labels.iter().flatten().map(Label::from).collect();
        triggered_execution_with(inner, self.flow, self.revision, &inputs, labels, variables)
            .inspect_err(|err| {
                tracing::warn!(
                    namespace = %self.flow.namespace, flow = %self.flow.id, trigger = %self.trigger.id,
                    error = %err, "a backfilled execution could not be created; the tick is skipped"
                );
            })
            .ok()
    }
}
