//! Applying the planner's steps to the execution: task runs are created,
//! started (each attempt in its own tokio task), paused and exited.

use jiff::Timestamp;

use super::Driver;
use crate::engine::plan::Step;
use crate::engine::runner::{self, LogSink};
use crate::engine::subflow;
use crate::execution::{Attempt, State, StateInfo, TaskRun};
use crate::flow::{Task, TaskKind};

impl Driver<'_> {
    pub(super) fn apply(&mut self, step: Step) {
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

    pub(super) fn start(&mut self, run_id: &str, now: Timestamp) {
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
    pub(super) fn spawn_attempt(&mut self, run_id: &str, task: Task, attempt_number: i64) {
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
                lookups: crate::lookups::Resolver::none(),
                namespace: self.exec.namespace.clone(),
                flow_id: self.exec.flow_id.clone(),
                services: self.inner.tasks.clone(),
                storage: self.inner.config.storage.clone(),
            })),
        };
        self.workers.insert(run.id, handle.abort_handle());
    }

    /// An Exit task ends the execution in `state` at once: the Exit run and
    /// every unfinished task run around or beside it take that state.
    pub(super) fn exit(&mut self, run_id: &str, state: State, now: Timestamp) {
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
    pub(super) fn pause(&mut self, run_id: &str, now: Timestamp) {
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
}
