//! `Schedule` triggers. Every process's trigger loop runs [`pass`]; each
//! tick is fired through the store's trigger events, which record the tick
//! and enqueue its execution in one transaction, so a tick starts exactly
//! one execution however many replicas see it and across restarts.
//!
//! A trigger's cursor (the last tick handled) is stored with it. Ticks that
//! passed while no process ran are caught up according to the trigger's
//! `recoverMissedSchedules` (all of them by default, as in Kestra).

use std::collections::HashSet;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde_json::json;

use super::FlowIndex;
use super::backfill::Backfilling;
use super::controls::{Backfill, backfill_of, controls};
use super::fire::{fire, key_of, trigger_states, triggered_execution};
use crate::cron::Schedule;
use crate::engine::{EngineError, Inner};
use crate::flow::{Flow, RecoverMissed, ScheduleTrigger, Trigger, TriggerKind};
use crate::store::{Repository, TriggerControl, TriggerKey, TriggerState};

/// Longest wait between two passes: flows changed by another replica are
/// seen within this time.
pub(super) const MAX_WAIT: Duration = Duration::from_secs(1);

/// A tick older than this when a pass sees it was missed (no process was
/// running, or the trigger was just created with a backfill).
const MISSED_AFTER: SignedDuration = SignedDuration::from_secs(10);

/// Fires the due ticks of every schedule of `index`; returns how long to
/// wait before the next pass.
pub(super) async fn pass(inner: &Inner, index: &FlowIndex) -> Result<Duration, EngineError> {
    let states = trigger_states(inner).await?;
    let controls = controls(inner).await?;
    let mut wait = MAX_WAIT;
    let mut seen = HashSet::new();
    for (flow, revision) in index.flows() {
        for trigger in &flow.triggers {
            let key = key_of(flow, trigger);
            seen.insert(key.clone());
            if let TriggerKind::Schedule(spec) = &trigger.kind {
                let scheduled = Scheduled {
                    flow,
                    revision: *revision,
                    trigger,
                    spec,
                    key: &key,
                };
                let control = controls.get(&key);
                if let Some(next) = scheduled.handle(inner, states.get(&key), control).await? {
                    let left = Duration::try_from(next.duration_since(Timestamp::now()))
                        .unwrap_or(Duration::ZERO);
                    wait = wait.min(left);
                }
            }
        }
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

/// One schedule trigger of one flow, as a pass handles it.
struct Scheduled<'a> {
    flow: &'a Flow,
    revision: i64,
    trigger: &'a Trigger,
    spec: &'a ScheduleTrigger,
    key: &'a TriggerKey,
}

impl Scheduled<'_> {
    /// Fires the due ticks; returns when the schedule is due next (none
    /// when disabled or the cron does not parse).
    async fn handle(
        &self,
        inner: &Inner,
        state: Option<&TriggerState>,
        control: Option<&TriggerControl>,
    ) -> Result<Option<Timestamp>, EngineError> {
        let now = Timestamp::now();
        let switched_off = control.is_some_and(|c| c.disabled);
        if self.flow.disabled || self.trigger.disabled || switched_off {
            // Remembered, so enabling it again starts from that moment
            // instead of catching up the ticks missed meanwhile.
            if state.is_none_or(|s| !s.disabled) {
                inner.store.reset_trigger(self.key, now, true).await?;
            }
            return Ok(None);
        }
        let Ok(schedule) = self.spec.schedule() else {
            return Ok(None);
        };
        let cursor = match state {
            None => {
                let cursor = initial_cursor(self.spec, now);
                inner.store.init_trigger(self.key, cursor).await?;
                cursor
            }
            Some(s) if s.disabled => {
                inner.store.reset_trigger(self.key, now, false).await?;
                now
            }
            Some(s) => s.cursor.unwrap_or(now),
        };
        let cursor = self.fire_due(inner, &schedule, cursor, now).await?;
        if let (Some(backfill), Some(control)) = (backfill_of(control), control) {
            let backfilling = Backfilling {
                flow: self.flow,
                revision: self.revision,
                trigger: self.trigger,
                spec: self.spec,
                key: self.key,
            };
            backfilling
                .advance(inner, &schedule, backfill, control.version)
                .await?;
        }
        Ok(schedule.next_after(cursor))
    }

    /// Fires (or skips) every tick in `(cursor, now]`; returns the new cursor.
    async fn fire_due(
        &self,
        inner: &Inner,
        schedule: &Schedule,
        mut cursor: Timestamp,
        now: Timestamp,
    ) -> Result<Timestamp, EngineError> {
        let spec = self.spec;
        // A backfill that ends in the past resumes from the present once done.
        let mut until = now;
        if let Some(end) = spec.backfill_end
            && cursor < end
            && end < now
        {
            until = end;
        }
        let due = schedule.due(cursor, until);
        let complete = due.len() < crate::cron::MAX_DUE;
        for (tick, fire_it) in select_ticks(spec, &due, now) {
            let execution = if fire_it {
                self.execution(inner, schedule, tick, cursor)
            } else {
                None
            };
            let event = tick.as_microsecond().to_string();
            fire(inner, self.key, &event, Some(tick), execution.as_ref()).await?;
            cursor = tick;
        }
        if until < now && complete {
            inner.store.reset_trigger(self.key, now, false).await?;
            cursor = now;
        }
        Ok(cursor)
    }

    /// The execution a tick starts; `None` (logged: the tick is skipped)
    /// when its inputs do not render or resolve.
    fn execution(
        &self,
        inner: &Inner,
        schedule: &Schedule,
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
        triggered_execution(
            inner,
            self.flow,
            self.revision,
            &self.spec.inputs,
            variables,
        )
        .inspect_err(|err| {
            tracing::warn!(
                namespace = %self.flow.namespace, flow = %self.flow.id, trigger = %self.trigger.id,
                error = %err, "a scheduled execution could not be created; the tick is skipped"
            );
        })
        .ok()
    }
}

/// When a schedule fires next, as the trigger list shows it.
pub(super) fn next(
    spec: &ScheduleTrigger,
    state: Option<&TriggerState>,
    now: Timestamp,
) -> Option<Timestamp> {
    let from = match state {
        Some(s) if !s.disabled => s.cursor.unwrap_or(now),
        _ => initial_cursor(spec, now),
    };
    spec.schedule().ok().and_then(|s| s.next_after(from))
}

/// The first tick of an enabled schedule that starts an execution, for the
/// activity report: at or before `now` when ticks are due (ticks missed
/// since the trigger's cursor that its `recoverMissedSchedules` fires, the
/// next tick of its `backfill` in progress), else the next tick after now.
pub(super) fn next_fire(
    spec: &ScheduleTrigger,
    schedule: &Schedule,
    state: Option<&TriggerState>,
    backfill: Option<&Backfill>,
    now: Timestamp,
) -> Option<Timestamp> {
    let cursor = match state {
        Some(s) if !s.disabled => s.cursor.unwrap_or(now),
        // Enabled again: it starts from the present (see `handle`).
        Some(_) => now,
        None => initial_cursor(spec, now),
    };
    let due = schedule.due(cursor, now);
    let next = select_ticks(spec, &due, now)
        .into_iter()
        .find_map(|(tick, fires)| fires.then_some(tick))
        .or_else(|| schedule.next_after(cursor.max(now)));
    let backfilled = backfill.filter(|b| !b.paused).and_then(|b| {
        let after = b.current_date.unwrap_or_else(|| {
            b.start
                .checked_sub(SignedDuration::from_micros(1))
                .unwrap_or(b.start)
        });
        schedule
            .next_after(after)
            .filter(|tick| *tick <= b.end.unwrap_or(now))
    });
    match (next, backfilled) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

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

    fn minutely(recover: RecoverMissed) -> ScheduleTrigger {
        ScheduleTrigger {
            cron: "*/1 * * * *".into(),
            with_seconds: false,
            ..spec(recover)
        }
    }

    fn at(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    fn cursor(at_: &str, disabled: bool) -> TriggerState {
        TriggerState {
            key: TriggerKey {
                namespace: "acme".into(),
                flow_id: "f".into(),
                trigger_id: "t".into(),
            },
            cursor: Some(at(at_)),
            disabled,
            last_execution_id: None,
            last_fired: None,
        }
    }

    fn next_of(
        spec: &ScheduleTrigger,
        state: Option<&TriggerState>,
        backfill: Option<&Backfill>,
        now: &str,
    ) -> Option<String> {
        let schedule = spec.schedule().expect("schedule");
        next_fire(spec, &schedule, state, backfill, at(now)).map(|t| t.to_string())
    }

    #[test]
    fn the_next_fire_follows_the_cursor_and_the_time_zone() {
        let spec = minutely(RecoverMissed::All);
        let handled = cursor("2026-12-07T10:05:00Z", false);
        let next = next_of(&spec, Some(&handled), None, "2026-12-07T10:05:30Z");
        assert_eq!(next.as_deref(), Some("2026-12-07T10:06:00Z"));
        // Never seen by the trigger loop yet: from now.
        let next = next_of(&spec, None, None, "2026-12-07T10:05:30Z");
        assert_eq!(next.as_deref(), Some("2026-12-07T10:06:00Z"));
        // Enabled again after being disabled: from now too, not the old cursor.
        let old = cursor("2026-12-07T08:00:00Z", true);
        let next = next_of(&spec, Some(&old), None, "2026-12-07T10:05:30Z");
        assert_eq!(next.as_deref(), Some("2026-12-07T10:06:00Z"));
        // 09:00 in Paris is 08:00 UTC in winter.
        let paris = ScheduleTrigger {
            cron: "0 9 * * *".into(),
            timezone: Some("Europe/Paris".into()),
            ..spec.clone()
        };
        let handled = cursor("2026-12-07T08:00:00Z", false);
        let next = next_of(&paris, Some(&handled), None, "2026-12-07T10:05:30Z");
        assert_eq!(next.as_deref(), Some("2026-12-08T08:00:00Z"));
    }

    #[test]
    fn missed_ticks_make_the_next_fire_due_as_the_recovery_policy_says() {
        // Handled up to 10:00; the instance slept until 10:05:30.
        let handled = cursor("2026-12-07T10:00:00Z", false);
        let now = "2026-12-07T10:05:30Z";
        let all = next_of(&minutely(RecoverMissed::All), Some(&handled), None, now);
        assert_eq!(all.as_deref(), Some("2026-12-07T10:01:00Z"));
        let last = next_of(&minutely(RecoverMissed::Last), Some(&handled), None, now);
        assert_eq!(last.as_deref(), Some("2026-12-07T10:05:00Z"));
        // None of them runs: the next one is the next tick to come.
        let none = next_of(&minutely(RecoverMissed::None), Some(&handled), None, now);
        assert_eq!(none.as_deref(), Some("2026-12-07T10:06:00Z"));
        // A tick only just passed is not missed: it fires whatever the policy.
        let none = next_of(
            &minutely(RecoverMissed::None),
            Some(&handled),
            None,
            "2026-12-07T10:05:05Z",
        );
        assert_eq!(none.as_deref(), Some("2026-12-07T10:05:00Z"));
    }

    #[test]
    fn a_backfill_in_progress_is_due_unless_paused() {
        let spec = minutely(RecoverMissed::All);
        let handled = cursor("2026-12-07T10:05:00Z", false);
        let now = "2026-12-07T10:05:30Z";
        let mut backfill = Backfill {
            start: at("2026-12-06T00:00:00Z"),
            end: Some(at("2026-12-06T01:00:00Z")),
            current_date: Some(at("2026-12-06T00:30:00Z")),
            paused: false,
            inputs: None,
            labels: None,
            created: None,
        };
        let next = next_of(&spec, Some(&handled), Some(&backfill), now);
        assert_eq!(next.as_deref(), Some("2026-12-06T00:31:00Z"));
        backfill.paused = true;
        let next = next_of(&spec, Some(&handled), Some(&backfill), now);
        assert_eq!(next.as_deref(), Some("2026-12-07T10:06:00Z"));
        // Done (its last tick handled): nothing more from it.
        backfill.paused = false;
        backfill.current_date = backfill.end;
        let next = next_of(&spec, Some(&handled), Some(&backfill), now);
        assert_eq!(next.as_deref(), Some("2026-12-07T10:06:00Z"));
    }
}
