//! Drives one claimed execution to its end: plan, apply, persist, wait for
//! attempts, repeat. The database is written before anything a restart
//! would need to know about, so a killed process loses nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::plan::{DEFAULTS_BRANCH, ELSE_BRANCH, Step, THEN_BRANCH, plan};
use super::runner::{self, Event, LogSink, is_truthy};
use super::{EngineError, Inner, context, flow_trigger, subflow};
use crate::execution::{Attempt, Execution, NewLog, State, StateInfo, TaskRun};
use crate::flow::{ConcurrencyBehavior, Flow, LogLevel, Retry, RetryBehavior, Task, TaskKind};
use crate::store::{Repository, StoreError};

/// How a driver stopped before its execution finished.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    Finished,
    /// Shutting down: the lease was released for another process.
    HandedBack,
    /// Another process took the execution over.
    LeaseLost,
    /// Waiting (QUEUED or PAUSED) without a lease until something wakes it.
    Parked,
}

struct Driver<'a> {
    inner: &'a Inner,
    /// For attempts that need the engine itself (subflows).
    shared: Arc<Inner>,
    flow: Arc<Flow>,
    exec: Execution,
    events: mpsc::UnboundedSender<Event>,
    workers: HashMap<String, AbortHandle>,
    logs: Vec<NewLog>,
    error_logs: Vec<(String, String)>,
    dirty: bool,
    /// A CREATE_NEW_EXECUTION retry: this execution ends RETRIED and a new
    /// one starts at this time.
    retry_at: Option<Timestamp>,
}

pub(crate) async fn drive(inner: &Arc<Inner>, exec: Execution) -> Result<Stop, EngineError> {
    let flow = inner.flow_for(&exec).await?;
    let (events, mut rx) = mpsc::unbounded_channel();
    let mut driver = Driver {
        inner,
        shared: inner.clone(),
        flow,
        exec,
        events,
        workers: HashMap::new(),
        logs: Vec::new(),
        error_logs: Vec::new(),
        dirty: true,
        retry_at: None,
    };
    if !driver.exec.task_run_list.is_empty() {
        // Resuming: `errorLogs()` also sees failures logged before the restart.
        let logs = inner.store.logs(&driver.exec.id, 0, 10_000).await?;
        driver.error_logs = logs
            .into_iter()
            .filter(|l| l.level == LogLevel::Error.name())
            .filter_map(|l| Some((l.task_id?, l.message)))
            .collect();
    }
    let result = driver.run(&mut rx).await;
    for handle in driver.workers.values() {
        handle.abort();
    }
    result
}

impl Driver<'_> {
    async fn run(&mut self, rx: &mut mpsc::UnboundedReceiver<Event>) -> Result<Stop, EngineError> {
        let now = Timestamp::now();
        if matches!(self.exec.state.current, State::Created | State::Queued) {
            if let Some(stop) = self.admit().await? {
                return Ok(stop);
            }
            self.exec.state.set(State::Running, Timestamp::now());
        }
        if self.exec.state.current == State::Paused {
            // Woken by a timer, a resume or a kill request.
            let lease = self
                .inner
                .store
                .renew_lease(&self.exec.id, &self.inner.owner, self.inner.config.lease)
                .await?;
            if !lease.held {
                return Ok(Stop::LeaseLost);
            }
            if lease.kill_requested {
                self.kill();
                self.persist().await?;
                return Ok(Stop::Finished);
            }
            self.exec.state.set(State::Running, Timestamp::now());
        }
        self.recover_in_flight(now);
        let lease = self.inner.config.lease;
        let mut renew = tokio::time::interval(lease / 3);
        renew.tick().await;
        let kill = self.inner.kill_signal(&self.exec.id);
        loop {
            self.advance();
            if self.dirty {
                self.persist().await?;
            }
            if self.exec.state.current.is_terminal() {
                return Ok(Stop::Finished);
            }
            if self.waiting_only() {
                return self.park().await;
            }
            let wake = self.next_timer();
            let sleep = wake
                .map(|at| {
                    let left = at.duration_since(Timestamp::now());
                    Duration::try_from(left).unwrap_or(Duration::ZERO)
                })
                .unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                event = rx.recv() => {
                    if let Some(event) = event {
                        self.handle(event);
                    }
                    while let Ok(event) = rx.try_recv() {
                        self.handle(event);
                    }
                    // Lines of a task still running are written now, so
                    // followers see them live.
                    if !self.dirty {
                        self.flush_logs().await?;
                    }
                }
                () = tokio::time::sleep(sleep) => {}
                () = kill.notified() => self.kill(),
                _ = renew.tick() => {
                    let held = self.inner.store.renew_lease(&self.exec.id, &self.inner.owner, lease).await?;
                    if !held.held {
                        return Ok(Stop::LeaseLost);
                    }
                    if held.kill_requested {
                        self.kill();
                    }
                }
                () = self.inner.shutdown.cancelled() => {
                    self.flush_logs().await?;
                    self.inner.store.release_lease(&self.exec.id, &self.inner.owner).await?;
                    return Ok(Stop::HandedBack);
                }
            }
        }
    }

    /// Applies the flow's concurrency limit to an execution about to start:
    /// `None` when it may run; otherwise it is queued, cancelled or failed.
    async fn admit(&mut self) -> Result<Option<Stop>, EngineError> {
        let Some(limit) = self.flow.concurrency else {
            return Ok(None);
        };
        let store = &self.inner.store;
        let owner = &self.inner.owner;
        let lease = store
            .renew_lease(&self.exec.id, owner, self.inner.config.lease)
            .await?;
        if !lease.held {
            return Ok(Some(Stop::LeaseLost));
        }
        if lease.kill_requested {
            self.kill();
            self.persist().await?;
            return Ok(Some(Stop::Finished));
        }
        let now = Timestamp::now();
        let queued = (limit.behavior == ConcurrencyBehavior::Queue).then(|| {
            let mut queued = self.exec.clone();
            queued.state.set(State::Queued, now);
            queued
        });
        if store
            .admit(&self.exec, limit.limit, owner, queued.as_ref())
            .await?
        {
            return Ok(None);
        }
        let message = format!("the flow's concurrency limit ({}) is reached", limit.limit);
        match (limit.behavior, queued) {
            (ConcurrencyBehavior::Queue, Some(queued)) => {
                self.exec = queued;
                Ok(Some(Stop::Parked))
            }
            (ConcurrencyBehavior::Cancel, _) => {
                self.log(None, LogLevel::Warn, format!("{message}: cancelled"));
                self.exec.state.set(State::Cancelled, now);
                self.persist().await?;
                Ok(Some(Stop::Finished))
            }
            _ => {
                self.log(None, LogLevel::Error, format!("{message}: failed"));
                self.exec.error = Some(message);
                self.exec.state.set(State::Failed, now);
                self.persist().await?;
                Ok(Some(Stop::Finished))
            }
        }
    }

    /// Plans and applies until nothing more can happen without waiting.
    fn advance(&mut self) {
        loop {
            if self.retry_at.is_some() && !self.exec.state.current.is_terminal() {
                self.end_retried();
                return;
            }
            let steps = plan(&self.flow, &self.exec, Timestamp::now());
            if steps.is_empty() {
                return;
            }
            self.dirty = true;
            for step in steps {
                self.apply(step);
            }
            if self.exec.state.current.is_terminal() {
                return;
            }
        }
    }

    async fn flush_logs(&mut self) -> Result<(), EngineError> {
        if !self.logs.is_empty() {
            let logs = std::mem::take(&mut self.logs);
            self.inner.store.append_logs(&logs).await?;
        }
        Ok(())
    }

    async fn persist(&mut self) -> Result<(), EngineError> {
        if self.exec.state.current.is_terminal() {
            // Before the final state is written: a re-drive fires again and
            // the trigger events (and the retry's derived id) make that a no-op.
            flow_trigger::fire(self.inner, &self.exec).await?;
            if let (State::Retried, Some(at)) = (self.exec.state.current, self.retry_at) {
                match self
                    .inner
                    .store
                    .schedule_execution(&self.retry_execution(), at)
                    .await
                {
                    Ok(()) | Err(StoreError::Duplicate(_)) => {}
                    Err(err) => return Err(err.into()),
                }
            }
        }
        self.flush_logs().await?;
        self.inner
            .store
            .save_execution(&self.exec, &self.inner.owner, self.inner.config.lease)
            .await?;
        self.dirty = false;
        if self.exec.state.current.is_terminal() {
            self.inner.finished(&self.exec);
        }
        Ok(())
    }

    fn log(&mut self, run: Option<&TaskRun>, level: LogLevel, message: String) {
        if level == LogLevel::Error
            && let Some(run) = run
        {
            self.error_logs.push((run.task_id.clone(), message.clone()));
        }
        self.logs.push(NewLog {
            execution_id: self.exec.id.clone(),
            task_run_id: run.map(|r| r.id.clone()),
            task_id: run.map(|r| r.task_id.clone()),
            attempt_number: run.map_or(0, |r| r.attempts.len() as i64),
            level: level.name().into(),
            message,
            timestamp: Timestamp::now(),
        });
    }

    fn task(&self, task_id: &str) -> Option<Task> {
        self.flow.find_task(task_id).cloned()
    }

    fn vars(&self, task: &Task, run: &TaskRun) -> crate::template::Vars {
        let base = context::base(&self.flow, &self.exec);
        context::for_run(base, &self.exec, task, run, &self.error_logs)
    }

    fn apply(&mut self, step: Step) {
        if self.exec.state.current.is_terminal() {
            return; // ended by an Exit earlier in the same plan
        }
        let now = Timestamp::now();
        match step {
            Step::Create {
                task_id,
                parent,
                values,
            } => {
                let id = uuid::Uuid::now_v7().simple().to_string();
                self.exec
                    .task_run_list
                    .push(TaskRun::new(id, task_id, parent, values, now));
            }
            Step::Start { run_id } => self.start(&run_id, now),
            Step::Evaluate { run_id } => self.evaluate(&run_id, now),
            Step::Complete { run_id, state } => {
                if let Some(run) = self.exec.task_run_mut(&run_id) {
                    run.state.set(state, now);
                }
            }
            Step::Finish { state } => self.finish(state, now),
            Step::Pause { run_id } => self.pause(&run_id, now),
            Step::Resume { run_id } => {
                if let Some(run) = self.exec.task_run_mut(&run_id) {
                    run.state.set(State::Running, now);
                    run.next_attempt_at = None;
                }
            }
            Step::Expire { run_id } => {
                self.fail_run(
                    &run_id,
                    "the pause was not resumed before its timeout".into(),
                    now,
                );
            }
        }
    }

    fn start(&mut self, run_id: &str, now: Timestamp) {
        let Some(run) = self.exec.task_run(run_id) else {
            return;
        };
        let Some(task) = self.task(&run.task_id) else {
            return;
        };
        if let TaskKind::Exit { state } = task.kind {
            self.exit(run_id, state, now);
            return;
        }
        let Some(run) = self.exec.task_run_mut(run_id) else {
            return;
        };
        run.state.set(State::Running, now);
        run.next_attempt_at = None;
        run.attempts.push(Attempt {
            state: StateInfo::new(State::Running, now),
            error: None,
        });
        let attempt_number = run.attempts.len() as i64;
        self.spawn_attempt(run_id, task, attempt_number);
    }

    /// Runs attempt `attempt_number` of a task run in its own tokio task.
    fn spawn_attempt(&mut self, run_id: &str, task: Task, attempt_number: i64) {
        let Some(run) = self.exec.task_run(run_id).cloned() else {
            return;
        };
        let logs = LogSink {
            execution_id: self.exec.id.clone(),
            task_run_id: run.id.clone(),
            task_id: run.task_id.clone(),
            attempt: attempt_number,
            events: self.events.clone(),
        };
        let vars = self.vars(&task, &run);
        let handle = match &task.kind {
            TaskKind::Subflow(spec) => {
                let parent = subflow::Parent {
                    execution_id: self.exec.id.clone(),
                    namespace: self.exec.namespace.clone(),
                    flow_id: self.exec.flow_id.clone(),
                    flow_revision: self.exec.flow_revision,
                    labels: self.exec.labels.clone(),
                };
                tokio::spawn(subflow::run(
                    self.shared.clone(),
                    spec.clone(),
                    parent,
                    vars,
                    logs,
                ))
            }
            _ => tokio::spawn(runner::run(runner::Attempt {
                vars,
                task,
                templates: self.inner.templates.clone(),
                http: self.inner.http.clone(),
                slots: self.inner.task_slots.clone(),
                logs,
            })),
        };
        self.workers.insert(run.id, handle.abort_handle());
    }

    /// An Exit task ends the execution in `state` at once: the Exit run and
    /// every unfinished task run around or beside it take that state.
    fn exit(&mut self, run_id: &str, state: State, now: Timestamp) {
        for (_, handle) in self.workers.drain() {
            handle.abort();
        }
        for run in &mut self.exec.task_run_list {
            if run.id == run_id || !run.state.current.is_terminal() {
                if run.id == run_id {
                    run.state.set(State::Running, now);
                }
                if let Some(attempt) = run.attempts.last_mut()
                    && !attempt.state.current.is_terminal()
                {
                    attempt.state.set(state, now);
                }
                run.next_attempt_at = None;
                run.state.set(state, now);
            }
        }
        self.finish(state, now);
    }

    /// A Pause task run starts waiting: until its delay is over, or until
    /// resumed through the API (failing at its timeout, if it has one).
    fn pause(&mut self, run_id: &str, now: Timestamp) {
        let Some(run) = self.exec.task_run(run_id) else {
            return;
        };
        let Some(task) = self.task(&run.task_id) else {
            return;
        };
        let TaskKind::Pause { delay, .. } = &task.kind else {
            return;
        };
        let wait = delay.or(task.timeout);
        if let Some(run) = self.exec.task_run_mut(run_id) {
            run.state.set(State::Running, now);
            run.state.set(State::Paused, now);
            run.next_attempt_at = wait
                .and_then(|w| jiff::SignedDuration::try_from(w).ok())
                .and_then(|w| now.checked_add(w).ok());
        }
    }

    /// Nothing runs and a Pause waits: the execution is written PAUSED and
    /// its lease given up until the earliest timer (or a resume, or a kill).
    fn waiting_only(&self) -> bool {
        self.workers.is_empty()
            && self
                .exec
                .task_run_list
                .iter()
                .any(|r| r.state.current == State::Paused)
    }

    async fn park(&mut self) -> Result<Stop, EngineError> {
        let not_before = self.next_timer();
        self.exec.state.set(State::Paused, Timestamp::now());
        self.flush_logs().await?;
        self.inner
            .store
            .park_execution(&self.exec, &self.inner.owner, not_before)
            .await?;
        Ok(Stop::Parked)
    }

    /// The earliest moment a waiting task run (retry or pause) is due.
    fn next_timer(&self) -> Option<Timestamp> {
        self.exec
            .task_run_list
            .iter()
            .filter(|r| matches!(r.state.current, State::Retrying | State::Paused))
            .filter_map(|r| r.next_attempt_at)
            .min()
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Log(log) => self.logs.push(log),
            Event::Done {
                run_id,
                result,
                partial,
            } => {
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

    /// The retry policy of a task: its own, else that of the nearest flowable
    /// around it that has one, else the flow's.
    fn retry_for(&self, run: &TaskRun, task: &Task) -> Option<Retry> {
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

    fn attempt_done(
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
    fn fail_attempt(
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
    fn recover_in_flight(&mut self, now: Timestamp) {
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
            let repeatable = matches!(
                task.kind,
                TaskKind::Log { .. }
                    | TaskKind::Return { .. }
                    | TaskKind::OutputValues { .. }
                    | TaskKind::Fail { .. }
                    | TaskKind::Sleep { .. }
            );
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

    fn fail_run(&mut self, run_id: &str, message: String, now: Timestamp) {
        let run = self.exec.task_run(run_id).cloned();
        self.log(run.as_ref(), LogLevel::Error, message);
        if let Some(run) = self.exec.task_run_mut(run_id) {
            run.state.set(State::Failed, now);
        }
    }

    /// Decides what a flowable task run will do (branch, loop values).
    fn evaluate(&mut self, run_id: &str, now: Timestamp) {
        let Some(run) = self.exec.task_run(run_id).cloned() else {
            return;
        };
        let Some(task) = self.task(&run.task_id) else {
            return;
        };
        match self.decide(&task, &run) {
            Ok((branch, iterations, outputs)) => {
                if let Some(run) = self.exec.task_run_mut(run_id) {
                    run.branch = branch;
                    run.iterations = iterations;
                    run.outputs = outputs;
                    run.state.set(State::Running, now);
                }
            }
            Err(message) => self.fail_run(run_id, message, now),
        }
    }

    #[allow(clippy::type_complexity)]
    fn decide(
        &self,
        task: &Task,
        run: &TaskRun,
    ) -> Result<(Option<String>, Vec<String>, Map<String, Value>), String> {
        let render = |text: &str| {
            self.inner
                .templates
                .render(text, &self.vars(task, run))
                .map_err(|e| crate::flow::tasks::template_error(task, text, &e))
        };
        let mut outputs = Map::new();
        match &task.kind {
            TaskKind::If { condition, .. } => {
                let branch = if is_truthy(&render(condition)?) {
                    THEN_BRANCH
                } else {
                    ELSE_BRANCH
                };
                Ok((Some(branch.into()), Vec::new(), outputs))
            }
            TaskKind::Switch {
                value,
                cases,
                defaults,
            } => {
                let value = render(value)?;
                let matched = cases.iter().find(|(key, _)| *key == value);
                outputs.insert("value".into(), Value::String(value.clone()));
                outputs.insert("defaults".into(), Value::Bool(matched.is_none()));
                match matched {
                    Some((key, _)) => Ok((Some(key.clone()), Vec::new(), outputs)),
                    None if !defaults.is_empty() => {
                        Ok((Some(DEFAULTS_BRANCH.into()), Vec::new(), outputs))
                    }
                    None => Err(format!(
                        "Switch value `{value}` matches no case and there are no defaults"
                    )),
                }
            }
            TaskKind::ForEach { values, .. } => {
                let items = match values {
                    Value::String(text) => {
                        let rendered = render(text)?;
                        match serde_json::from_str::<Value>(&rendered) {
                            Ok(Value::Array(items)) => items,
                            _ => return Err("ForEach values must render to a JSON array".into()),
                        }
                    }
                    Value::Array(items) => items
                        .iter()
                        .map(|item| match item {
                            Value::String(s) => render(s).map(Value::String),
                            other => Ok(other.clone()),
                        })
                        .collect::<Result<_, _>>()?,
                    _ => return Err("ForEach values must be a list".into()),
                };
                let nulls = items.iter().filter(|v| v.is_null()).count();
                if nulls > 0 {
                    return Err(format!(
                        "Found '{nulls}' null values on Each, with values={}",
                        Value::Array(items)
                    ));
                }
                let iterations = items
                    .into_iter()
                    .map(|item| match item {
                        Value::String(s) => s,
                        other => other.to_string(),
                    })
                    .collect();
                Ok((None, iterations, outputs))
            }
            _ => Ok((None, Vec::new(), outputs)),
        }
    }

    /// Ends the execution; a successful end renders the flow's outputs.
    fn finish(&mut self, state: State, now: Timestamp) {
        let mut state = state;
        if !state.is_failure() && !self.flow.outputs.is_empty() {
            match self.render_outputs() {
                Ok(outputs) => self.exec.outputs = Some(outputs),
                Err(message) => {
                    self.log(None, LogLevel::Error, message.clone());
                    self.exec.error = Some(message);
                    state = State::Failed;
                }
            }
        }
        self.exec.state.set(state, now);
    }

    fn render_outputs(&self) -> Result<Map<String, Value>, String> {
        context::flow_outputs(&self.inner.templates, &self.flow, &self.exec)
    }

    /// Ends the execution RETRIED (its retry is a new execution): attempts
    /// still running stop.
    fn end_retried(&mut self) {
        let now = Timestamp::now();
        for (_, handle) in self.workers.drain() {
            handle.abort();
        }
        for run in &mut self.exec.task_run_list {
            if !run.state.current.is_terminal() {
                run.state.set(State::Killed, now);
            }
        }
        self.exec.state.set(State::Retried, now);
        self.dirty = true;
    }

    /// The execution a CREATE_NEW_EXECUTION retry starts: same flow
    /// revision, inputs, labels and trigger, the next attempt number, and an
    /// id derived from the first execution's, so it is created once.
    fn retry_execution(&self) -> Execution {
        let (attempt, original) = match &self.exec.metadata {
            Some(m) => (m.attempt_number, m.original_id.clone()),
            None => (1, self.exec.id.clone()),
        };
        let mut next = Execution::new(
            format!("{original}-{}", attempt + 1),
            self.exec.namespace.clone(),
            self.exec.flow_id.clone(),
            self.exec.flow_revision,
            self.exec.labels.clone(),
            self.exec.inputs.clone(),
            Timestamp::now(),
        );
        next.trigger = self.exec.trigger.clone();
        next.metadata = Some(crate::execution::ExecutionMetadata {
            attempt_number: attempt + 1,
            original_id: original,
        });
        next
    }

    /// Stops every attempt and marks everything unfinished KILLED.
    fn kill(&mut self) {
        let now = Timestamp::now();
        for (_, handle) in self.workers.drain() {
            handle.abort();
        }
        for run in &mut self.exec.task_run_list {
            if !run.state.current.is_terminal() {
                if let Some(attempt) = run.attempts.last_mut()
                    && !attempt.state.current.is_terminal()
                {
                    attempt.state.set(State::Killed, now);
                }
                run.state.set(State::Killed, now);
            }
        }
        self.exec.state.set(State::Killing, now);
        self.exec.state.set(State::Killed, now);
        self.dirty = true;
    }
}
