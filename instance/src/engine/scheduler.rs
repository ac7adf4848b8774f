//! Fires `Schedule` triggers. Every process runs this loop; each tick is
//! fired through the store's trigger events, which record the tick and
//! enqueue its execution in one transaction, so a tick starts exactly one
//! execution however many replicas see it and across restarts.
//!
//! A trigger's cursor (the last tick handled) is stored with it. Ticks that
//! passed while no process ran are caught up according to the trigger's
//! `recoverMissedSchedules` (all of them by default, as in Kestra).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{EngineError, Inner, new_execution};
use crate::flow::{Flow, RecoverMissed, ScheduleTrigger, Trigger, TriggerKind};
use crate::schedule::Schedule;
use crate::store::{Repository, TriggerKey, TriggerState};

/// Longest wait between two passes: flows changed by another replica are
/// seen within this time.
const MAX_WAIT: Duration = Duration::from_secs(1);

/// A tick older than this when a pass sees it was missed (no process was
/// running, or the trigger was just created with a backfill).
const MISSED_AFTER: SignedDuration = SignedDuration::from_secs(10);

/// How long trigger events are kept, and how often old ones are purged.
const EVENTS_KEPT: SignedDuration = SignedDuration::from_hours(24);
const PURGE_EVERY: Duration = Duration::from_secs(3600);

pub(crate) async fn run(inner: std::sync::Arc<Inner>) {
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

fn key_of(flow: &Flow, trigger: &Trigger) -> TriggerKey {
    TriggerKey {
        namespace: flow.namespace.clone(),
        flow_id: flow.id.clone(),
        trigger_id: trigger.id.clone(),
    }
}

/// One look at every schedule; returns how long to wait before the next.
async fn pass(inner: &Inner) -> Result<Duration, EngineError> {
    let generation = inner.flows_generation.load(Ordering::SeqCst);
    let flows = inner.store.list_flows(None).await?;
    let states: HashMap<TriggerKey, TriggerState> = inner
        .store
        .trigger_states()
        .await?
        .into_iter()
        .map(|s| (s.key.clone(), s))
        .collect();
    let mut wait = MAX_WAIT;
    let mut seen = HashSet::new();
    let mut parsed = Vec::with_capacity(flows.len());
    for record in &flows {
        let Ok(flow) = inner.parsed(
            &record.namespace,
            &record.id,
            record.revision,
            &record.source,
        ) else {
            continue;
        };
        parsed.push((flow.clone(), record.revision));
        for trigger in &flow.triggers {
            let key = key_of(&flow, trigger);
            seen.insert(key.clone());
            let TriggerKind::Schedule(spec) = &trigger.kind else {
                continue;
            };
            let state = states.get(&key);
            let now = Timestamp::now();
            if flow.disabled || trigger.disabled {
                // Remembered, so enabling it again starts from that moment
                // instead of catching up the ticks missed meanwhile.
                if state.is_none_or(|s| !s.disabled) {
                    inner.store.reset_trigger(&key, now, true).await?;
                }
                continue;
            }
            let Ok(schedule) = spec.schedule() else {
                continue;
            };
            let cursor = match state {
                None => {
                    let cursor = initial_cursor(spec, now);
                    inner.store.init_trigger(&key, cursor).await?;
                    cursor
                }
                Some(s) if s.disabled => {
                    inner.store.reset_trigger(&key, now, false).await?;
                    now
                }
                Some(s) => s.cursor.unwrap_or(now),
            };
            let cursor = fire_due(
                inner,
                &flow,
                record.revision,
                trigger,
                spec,
                &schedule,
                &key,
                cursor,
                now,
            )
            .await?;
            if let Some(next) = schedule.next_after(cursor) {
                let left = Duration::try_from(next.duration_since(Timestamp::now()))
                    .unwrap_or(Duration::ZERO);
                wait = wait.min(left);
            }
        }
    }
    // Refreshes the Flow trigger index, so other replicas' changes are seen.
    if let Ok(mut index) = inner.downstream.lock()
        && inner.flows_generation.load(Ordering::SeqCst) == generation
    {
        *index = Some(std::sync::Arc::new(super::flow_trigger::index(&parsed)));
    }
    // Triggers whose flow was deleted (or that were removed from it).
    for (key, state) in &states {
        if !seen.contains(key) && !state.disabled {
            inner
                .store
                .reset_trigger(key, Timestamp::now(), true)
                .await?;
        }
    }
    Ok(wait)
}

fn initial_cursor(spec: &ScheduleTrigger, now: Timestamp) -> Timestamp {
    match spec.backfill_start {
        // Just before the start, so a tick at the start itself fires.
        Some(start) if start < now => start
            .checked_sub(SignedDuration::from_micros(1))
            .unwrap_or(start),
        _ => now,
    }
}

/// Which of the due ticks fire; the others are skipped (handled without an
/// execution). Ticks inside a backfill always fire.
fn select_ticks(
    spec: &ScheduleTrigger,
    due: &[Timestamp],
    now: Timestamp,
) -> Vec<(Timestamp, bool)> {
    let backfilling = |tick: Timestamp| {
        spec.backfill_start.is_some_and(|start| tick >= start)
            && spec.backfill_end.is_none_or(|end| tick <= end)
    };
    let missed = |tick: Timestamp| now.duration_since(tick) > MISSED_AFTER && !backfilling(tick);
    let last_missed = due.iter().rev().find(|t| missed(**t)).copied();
    due.iter()
        .map(|&tick| {
            let fire = !missed(tick)
                || match spec.recover {
                    RecoverMissed::All => true,
                    RecoverMissed::Last => Some(tick) == last_missed,
                    RecoverMissed::None => false,
                };
            (tick, fire)
        })
        .collect()
}

/// Fires (or skips) every tick in `(cursor, now]`; returns the new cursor.
#[allow(clippy::too_many_arguments)]
async fn fire_due(
    inner: &Inner,
    flow: &Flow,
    revision: i64,
    trigger: &Trigger,
    spec: &ScheduleTrigger,
    schedule: &Schedule,
    key: &TriggerKey,
    mut cursor: Timestamp,
    now: Timestamp,
) -> Result<Timestamp, EngineError> {
    // A backfill that ends in the past resumes from the present once done.
    let mut until = now;
    if let Some(end) = spec.backfill_end
        && cursor < end
        && end < now
    {
        until = end;
    }
    let due = schedule.due(cursor, until);
    let complete = due.len() < crate::schedule::MAX_DUE;
    for (tick, fire) in select_ticks(spec, &due, now) {
        let event = tick.as_microsecond().to_string();
        let execution = if fire {
            let variables = json!({
                "id": trigger.id,
                "type": trigger.kind.type_name(),
                "date": tick.to_string(),
                "previous": cursor.to_string(),
                "next": schedule.next_after(tick).map(|t| t.to_string()),
            });
            match scheduled_execution(inner, flow, revision, spec, variables) {
                Ok(execution) => Some(execution),
                Err(err) => {
                    tracing::warn!(
                        namespace = %flow.namespace, flow = %flow.id, trigger = %trigger.id,
                        error = %err, "a scheduled execution could not be created; the tick is skipped"
                    );
                    None
                }
            }
        } else {
            None
        };
        let fired = inner
            .store
            .fire_trigger(key, &event, Some(tick), execution.as_ref())
            .await?;
        if fired && execution.is_some() {
            inner.work.notify_one();
        }
        cursor = tick;
    }
    if until < now && complete {
        inner.store.reset_trigger(key, now, false).await?;
        cursor = now;
    }
    Ok(cursor)
}

fn scheduled_execution(
    inner: &Inner,
    flow: &Flow,
    revision: i64,
    spec: &ScheduleTrigger,
    variables: Value,
) -> Result<crate::execution::Execution, EngineError> {
    let inputs = render_inputs(inner, &spec.inputs, &variables)?;
    new_execution(flow, revision, &inputs, Vec::new(), Some(variables))
}

/// Trigger inputs: strings are templates that see `trigger`.
pub(crate) fn render_inputs(
    inner: &Inner,
    inputs: &Map<String, Value>,
    trigger: &Value,
) -> Result<Map<String, Value>, EngineError> {
    if inputs.is_empty() {
        return Ok(Map::new());
    }
    let vars = minijinja::Value::from_serialize(json!({ "trigger": trigger }));
    match inner
        .templates
        .render_json(&Value::Object(inputs.clone()), &vars)
    {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Ok(Map::new()),
        Err(err) => Err(EngineError::TriggerInputs(err.to_string())),
    }
}

/// A trigger as the API lists it (Kestra's trigger context fields).
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    pub next_execution_date: Option<Timestamp>,
    /// The last tick a schedule handled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date: Option<Timestamp>,
    /// The last execution this trigger started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_triggered_date: Option<Timestamp>,
}

pub(crate) async fn list(
    inner: &Inner,
    namespace: Option<&str>,
) -> Result<Vec<TriggerView>, EngineError> {
    let flows = inner.store.list_flows(namespace).await?;
    let states: HashMap<TriggerKey, TriggerState> = inner
        .store
        .trigger_states()
        .await?
        .into_iter()
        .map(|s| (s.key.clone(), s))
        .collect();
    let now = Timestamp::now();
    let mut out = Vec::new();
    for record in &flows {
        let Ok(flow) = inner.parsed(
            &record.namespace,
            &record.id,
            record.revision,
            &record.source,
        ) else {
            continue;
        };
        for trigger in &flow.triggers {
            let state = states.get(&key_of(&flow, trigger));
            let disabled = flow.disabled || trigger.disabled;
            let next_execution_date = match &trigger.kind {
                TriggerKind::Schedule(spec) if !disabled => {
                    let from = match state {
                        Some(s) if !s.disabled => s.cursor.unwrap_or(now),
                        _ => initial_cursor(spec, now),
                    };
                    spec.schedule().ok().and_then(|s| s.next_after(from))
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(recover: RecoverMissed) -> ScheduleTrigger {
        ScheduleTrigger {
            cron: "* * * * * *".into(),
            with_seconds: true,
            timezone: None,
            backfill_start: None,
            backfill_end: None,
            inputs: Map::new(),
            recover,
        }
    }

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).expect("timestamp")
    }

    fn fired(spec: &ScheduleTrigger, due: &[Timestamp], now: Timestamp) -> Vec<i64> {
        select_ticks(spec, due, now)
            .into_iter()
            .filter(|(_, fire)| *fire)
            .map(|(t, _)| t.as_second())
            .collect()
    }

    #[test]
    fn missed_ticks_follow_the_recovery_policy() {
        let due: Vec<Timestamp> = (1..=30).map(ts).collect();
        let now = ts(30);
        // Ticks 1..19 are older than 10 s: missed.
        assert_eq!(fired(&spec(RecoverMissed::All), &due, now).len(), 30);
        assert_eq!(
            fired(&spec(RecoverMissed::Last), &due, now),
            (19..=30).collect::<Vec<_>>()
        );
        assert_eq!(
            fired(&spec(RecoverMissed::None), &due, now),
            (20..=30).collect::<Vec<_>>()
        );
    }

    #[test]
    fn backfilled_ticks_always_fire() {
        let mut s = spec(RecoverMissed::None);
        s.backfill_start = Some(ts(5));
        s.backfill_end = Some(ts(8));
        let due: Vec<Timestamp> = (1..=30).map(ts).collect();
        let mut want: Vec<i64> = (5..=8).collect();
        want.extend(20..=30);
        assert_eq!(fired(&s, &due, ts(30)), want);
        assert_eq!(
            initial_cursor(&s, ts(30)),
            ts(5) - SignedDuration::from_micros(1)
        );
    }
}
