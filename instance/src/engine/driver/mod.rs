//! Drives one claimed execution to its end: plan, apply, persist, wait for
//! attempts, repeat. The database is written before anything a restart
//! would need to know about, so a killed process loses nothing.
//!
//! This file holds the driver's life (start, the loop, leases, writes);
//! applying the planner's steps is in `steps`, the outcome of attempts and
//! retries in `attempts`, flowable decisions in `flowable`, and how an
//! execution ends in `ending`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::plan::plan;
use super::runner::Event;
use super::{EngineError, Inner, context, flow_trigger};
use crate::execution::{Execution, NewLog, State, TaskRun};
use crate::flow::{ConcurrencyBehavior, Flow, LogLevel, Task};
use crate::store::{Repository, StoreError};

mod attempts;
mod ending;
mod flowable;
mod steps;

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
    /// A user asked for a pause: no task run starts; the execution is
    /// parked PAUSED once the running ones are done.
    pausing: bool,
    /// The secret values this execution resolved, masked in its logs,
    /// outputs and errors.
    masker: Arc<crate::secrets::Masker>,
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
        pausing: false,
        masker: Arc::default(),
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
        if let Some(stop) = self.begin().await? {
            return Ok(stop);
        }
        self.recover_in_flight(now);
        let mut renew = tokio::time::interval(self.inner.config.lease / 3);
        renew.tick().await;
        let kill = self.inner.kill_signal(&self.exec.id);
        loop {
            if !self.pausing {
                self.advance();
            }
            if self.dirty {
                self.persist().await?;
            }
            if self.exec.state.current.is_terminal() {
                return Ok(Stop::Finished);
            }
            if self.pausing && self.workers.is_empty() {
                return self.park_paused().await;
            }
            if self.waiting_only() {
                return self.park().await;
            }
            let sleep = self
                .next_timer()
                .map(|at| {
                    let left = at.duration_since(Timestamp::now());
                    Duration::try_from(left).unwrap_or(Duration::ZERO)
                })
                .unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                event = rx.recv() => self.received(event, rx).await?,
                () = tokio::time::sleep(sleep) => {}
                // A kill or a pause was asked for: both are in the store.
                () = kill.notified() => {
                    if let Some(stop) = self.renew().await? {
                        return Ok(stop);
                    }
                }
                _ = renew.tick() => {
                    if let Some(stop) = self.renew().await? {
                        return Ok(stop);
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

    /// Starts a CREATED or QUEUED execution (through its flow's
    /// concurrency limit) and wakes a PAUSED one: `Some` when the driver
    /// stops there instead.
    async fn begin(&mut self) -> Result<Option<Stop>, EngineError> {
        if matches!(self.exec.state.current, State::Created | State::Queued) {
            if let Some(stop) = self.admit().await? {
                return Ok(Some(stop));
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
                return Ok(Some(Stop::LeaseLost));
            }
            if lease.kill_requested {
                self.kill();
                self.persist().await?;
                return Ok(Some(Stop::Finished));
            }
            if lease.pause_requested {
                // Paused by hand and not resumed: stays parked.
                return self.park_paused().await.map(Some);
            }
            self.exec.state.set(State::Running, Timestamp::now());
        }
        Ok(None)
    }

    /// Events from attempts: everything already sent is taken at once.
    async fn received(
        &mut self,
        event: Option<Event>,
        rx: &mut mpsc::UnboundedReceiver<Event>,
    ) -> Result<(), EngineError> {
        if let Some(event) = event {
            self.handle(event);
        }
        while let Ok(event) = rx.try_recv() {
            self.handle(event);
        }
        // Lines of a task still running are written now, so followers see
        // them live (otherwise they go with the execution's next write).
        if !self.dirty {
            self.flush_logs().await?;
        }
        Ok(())
    }

    /// Extends the lease: `Some` when it was lost; a kill asked for through
    /// the store (from another process) is applied.
    async fn renew(&mut self) -> Result<Option<Stop>, EngineError> {
        let lease = self
            .inner
            .store
            .renew_lease(&self.exec.id, &self.inner.owner, self.inner.config.lease)
            .await?;
        if !lease.held {
            return Ok(Some(Stop::LeaseLost));
        }
        if lease.kill_requested {
            self.kill();
        } else if lease.pause_requested != self.pausing && !self.exec.state.current.is_terminal() {
            // Paused by hand, or resumed before the running task runs ended.
            self.pausing = lease.pause_requested;
            let state = if self.pausing {
                State::Paused
            } else {
                State::Running
            };
            self.exec.state.set(state, Timestamp::now());
            self.dirty = true;
        }
        Ok(None)
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
        // The lines logged since the last write go in the same transaction.
        let logs = std::mem::take(&mut self.logs);
        self.inner
            .store
            .save_execution(
                &self.exec,
                &self.inner.owner,
                self.inner.config.lease,
                &logs,
            )
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

    /// Parks an execution paused by hand: PAUSED until resumed or killed
    /// (its retry timers wait for the resume).
    async fn park_paused(&mut self) -> Result<Stop, EngineError> {
        self.exec.state.set(State::Paused, Timestamp::now());
        self.flush_logs().await?;
        self.inner
            .store
            .park_execution(&self.exec, &self.inner.owner, None)
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
}
