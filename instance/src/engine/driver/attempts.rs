//! What happens when an attempt ends: its outcome, the retry policy that
//! applies, and attempts lost with a previous owner.

use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Map, Value};

use super::Driver;
use crate::engine::runner::Event;
use crate::execution::{State, TaskRun};
use crate::flow::{LogLevel, Retry, RetryBehavior, Task, TaskKind};

impl Driver<'_> {
    pub(super) fn handle(&mut self, event: Event) {
        match event {
            Event::Log(mut log) => {
                log.message = self.masker.mask(&log.message);
                self.logs.push(log);
            }
            Event::Done {
                run_id,
                mut result,
                mut partial,
            } => {
                self.mask_result(&mut result, &mut partial);
                self.workers.remove(&run_id);
                if result.is_err()
                    && !partial.is_empty()
                    && let Some(run) = self.exec.task_run_mut(&run_id)
                {
                    run.outputs = partial;
                }
                self.attempt_done(&run_id, result, Timestamp::now());
                self.dirty = true;
            }
        }
    }

    /// Secret values out of an attempt's outputs and error.
    fn mask_result(
        &self,
        result: &mut Result<Map<String, Value>, String>,
        partial: &mut Map<String, Value>,
    ) {
        if self.masker.is_empty() {
            return;
        }
        let mask_map = |map: &mut Map<String, Value>| {
            let mut value = Value::Object(std::mem::take(map));
            self.masker.mask_json(&mut value);
            if let Value::Object(masked) = value {
                *map = masked;
            }
        };
        match result {
            Ok(outputs) => mask_map(outputs),
            Err(message) => *message = self.masker.mask(message),
        }
        mask_map(partial);
    }

    /// The retry policy of a task: its own, else that of the nearest flowable
    /// around it that has one, else the flow's.
    pub(super) fn retry_for(&self, run: &TaskRun, task: &Task) -> Option<Retry> {
        if let Some(retry) = &task.retry {
            return Some(retry.clone());
        }
        let mut next = run.parent_task_run_id.as_deref();
        while let Some(id) = next {
            let parent = self.exec.task_run(id)?;
            if let Some(retry) = self
                .flow
                .find_task(&parent.task_id)
                .and_then(|t| t.retry.clone())
            {
                return Some(retry);
            }
            next = parent.parent_task_run_id.as_deref();
        }
        self.flow.retry.clone()
    }

    pub(super) fn attempt_done(
        &mut self,
        run_id: &str,
        result: Result<Map<String, Value>, String>,
        now: Timestamp,
    ) {
        let Some(run) = self.exec.task_run(run_id).cloned() else {
            return;
        };
        if run.state.current != State::Running {
            return; // killed meanwhile
        }
        let Some(task) = self.task(&run.task_id) else {
            return;
        };
        let retry = self.retry_for(&run, &task);
        match result {
            Ok(outputs) => {
                let warn =
                    retry.as_ref().is_some_and(|r| r.warning_on_retry) && run.attempts.len() > 1;
                if let Some(run) = self.exec.task_run_mut(run_id) {
                    run.outputs = outputs;
                    if let Some(attempt) = run.attempts.last_mut() {
                        attempt.state.set(State::Success, now);
                    }
                    run.state
                        .set(if warn { State::Warning } else { State::Success }, now);
                }
            }
            Err(message) => {
                self.log(Some(&run), LogLevel::Error, message.clone());
                self.fail_attempt(run_id, &task, retry, message, now);
            }
        }
    }

    /// Records a failed attempt and either schedules the next one or fails
    /// the task run (WARNING when the task allows failure).
    pub(super) fn fail_attempt(
        &mut self,
        run_id: &str,
        task: &Task,
        retry: Option<Retry>,
        message: String,
        now: Timestamp,
    ) {
        let execution_attempt = self.exec.metadata.as_ref().map_or(1, |m| m.attempt_number);
        let execution_elapsed =
            Duration::try_from(now.duration_since(self.exec.state.start_date)).unwrap_or_default();
        let Some(run) = self.exec.task_run_mut(run_id) else {
            return;
        };
        if let Some(attempt) = run.attempts.last_mut() {
            attempt.state.set(State::Failed, now);
            attempt.error = Some(message);
        }
        if let Some(retry) = retry
            .as_ref()
            .filter(|r| r.behavior == RetryBehavior::CreateNewExecution)
        {
            // The retry is a new execution; this one ends RETRIED.
            let delay = retry.delay_before(execution_attempt.saturating_add(1), execution_elapsed);
            run.state.set(
                if task.allow_failure && delay.is_none() {
                    State::Warning
                } else {
                    State::Failed
                },
                now,
            );
            if let Some(delay) = delay {
                let delay = jiff::SignedDuration::try_from(delay).unwrap_or_default();
                self.retry_at = Some(now.checked_add(delay).unwrap_or(now));
            }
            return;
        }
        let first_start = run.attempts.first().map_or(now, |a| a.state.start_date);
        let elapsed = Duration::try_from(now.duration_since(first_start)).unwrap_or_default();
        let next = u32::try_from(run.attempts.len() + 1).unwrap_or(u32::MAX);
        let delay = retry.and_then(|r| r.delay_before(next, elapsed));
        match delay {
            Some(delay) => {
                run.state.set(State::Retrying, now);
                let delay = jiff::SignedDuration::try_from(delay).unwrap_or_default();
                run.next_attempt_at = now.checked_add(delay).ok();
            }
            None => {
                let state = if task.allow_failure {
                    State::Warning
                } else {
                    State::Failed
                };
                run.state.set(state, now);
            }
        }
    }

    /// Task runs that were RUNNING when the previous owner stopped: their
    /// attempt is lost. Side-effect-free tasks simply run again; the others
    /// fail that attempt and follow their retry policy.
    pub(super) fn recover_in_flight(&mut self, now: Timestamp) {
        let in_flight: Vec<TaskRun> = self
            .exec
            .task_run_list
            .iter()
            .filter(|r| r.state.current == State::Running)
            .cloned()
            .collect();
        for run in in_flight {
            let Some(task) = self.task(&run.task_id) else {
                continue;
            };
            if task.kind.is_flowable() {
                continue;
            }
            if matches!(task.kind, TaskKind::Subflow(_)) {
                // Same attempt again: it finds the child it created and
                // follows it, instead of starting another one.
                let attempt = run.attempts.len() as i64;
                self.spawn_attempt(&run.id, task, attempt);
                continue;
            }
            let repeatable = task.kind.repeatable();
            let message = "the instance stopped while this attempt was running".to_owned();
            if repeatable {
                if let Some(r) = self.exec.task_run_mut(&run.id) {
                    if let Some(attempt) = r.attempts.last_mut() {
                        attempt.state.set(State::Failed, now);
                        attempt.error = Some(message);
                    }
                    r.state.set(State::Retrying, now);
                    r.next_attempt_at = None;
                }
            } else {
                self.log(Some(&run), LogLevel::Warn, message.clone());
                let retry = self.retry_for(&run, &task);
                self.fail_attempt(&run.id, &task, retry, message, now);
            }
        }
    }

    pub(super) fn fail_run(&mut self, run_id: &str, message: String, now: Timestamp) {
        let run = self.exec.task_run(run_id).cloned();
        self.log(run.as_ref(), LogLevel::Error, message);
        if let Some(run) = self.exec.task_run_mut(run_id) {
            run.state.set(State::Failed, now);
        }
    }
}
