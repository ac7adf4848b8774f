//! The pure core of the engine: from a flow and the current state of an
//! execution, what must happen next. Everything the engine knows about an
//! execution is in its task runs, so planning again after a restart picks up
//! exactly where the last process stopped.

use std::collections::HashMap;

use jiff::Timestamp;

use crate::execution::{Execution, State, TaskRun};
use crate::flow::{DagTask, Flow, Task, TaskKind};

/// Branch marker of a Switch that took its `defaults`.
pub(crate) const DEFAULTS_BRANCH: &str = "\u{0}defaults";
pub(crate) const THEN_BRANCH: &str = "then";
pub(crate) const ELSE_BRANCH: &str = "else";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Create a task run (state CREATED).
    Create {
        task_id: String,
        parent: Option<String>,
        values: Vec<String>,
    },
    /// Start the next attempt of a runnable task run.
    Start { run_id: String },
    /// Evaluate a flowable task run (condition, switch value, loop values).
    Evaluate { run_id: String },
    /// A flowable task run is done.
    Complete { run_id: String, state: State },
    /// A Pause task run starts waiting.
    Pause { run_id: String },
    /// A Pause task run's delay is over: it goes on with its tasks.
    Resume { run_id: String },
    /// A Pause task run was not resumed within its timeout.
    Expire { run_id: String },
    /// The flow's tasks, error handlers and finally blocks are done.
    Finish { state: State },
}

enum Status {
    Pending,
    Done(State),
}

#[derive(Clone)]
struct Scope<'a> {
    parent: Option<&'a TaskRun>,
    values: Vec<String>,
}

impl Scope<'_> {
    fn value(&self) -> Option<&str> {
        self.values.last().map(String::as_str)
    }
}

type Key<'a> = (Option<&'a str>, &'a str, Option<&'a str>);

struct Planner<'a> {
    now: Timestamp,
    runs: HashMap<Key<'a>, &'a TaskRun>,
    steps: Vec<Step>,
}

pub(crate) fn plan(flow: &Flow, execution: &Execution, now: Timestamp) -> Vec<Step> {
    if execution.state.current.is_terminal() {
        return Vec::new();
    }
    let runs = execution
        .task_run_list
        .iter()
        .map(|run| {
            (
                (
                    run.parent_task_run_id.as_deref(),
                    run.task_id.as_str(),
                    run.value.as_deref(),
                ),
                run,
            )
        })
        .collect();
    let mut planner = Planner {
        now,
        runs,
        steps: Vec::new(),
    };
    let root = Scope {
        parent: None,
        values: Vec::new(),
    };
    let main = planner.sequential(&flow.tasks, &root);
    if let Status::Done(state) = planner.handlers(main, &flow.errors, &flow.finally, &root) {
        planner.steps.push(Step::Finish { state });
    }
    planner.steps
}

fn enabled(tasks: &[Task]) -> impl Iterator<Item = &Task> {
    tasks.iter().filter(|t| !t.disabled)
}

/// SUCCESS < WARNING < failures.
fn rank(state: State) -> u8 {
    match state {
        State::Success => 0,
        State::Warning => 1,
        _ => 2,
    }
}

fn worse(a: State, b: State) -> State {
    if rank(b) > rank(a) { b } else { a }
}

impl<'a> Planner<'a> {
    fn find(&self, task: &'a Task, scope: &Scope<'a>) -> Option<&'a TaskRun> {
        let parent = scope.parent.map(|p| p.id.as_str());
        self.runs
            .get(&(parent, task.id.as_str(), scope.value()))
            .copied()
    }

    fn create(&mut self, task: &Task, scope: &Scope<'_>) {
        self.steps.push(Step::Create {
            task_id: task.id.clone(),
            parent: scope.parent.map(|p| p.id.clone()),
            values: scope.values.clone(),
        });
    }

    /// Runs `errors` after a failed main part, then `finally` in any case.
    /// Neither changes the outcome of the main part.
    fn handlers(
        &mut self,
        main: Status,
        errors: &'a [Task],
        finally: &'a [Task],
        scope: &Scope<'a>,
    ) -> Status {
        let Status::Done(state) = main else {
            return Status::Pending;
        };
        if state.is_failure() && matches!(self.sequential(errors, scope), Status::Pending) {
            return Status::Pending;
        }
        if matches!(self.sequential(finally, scope), Status::Pending) {
            return Status::Pending;
        }
        Status::Done(state)
    }

    fn sequential(&mut self, tasks: &'a [Task], scope: &Scope<'a>) -> Status {
        let mut result = State::Success;
        for task in enabled(tasks) {
            match self.find(task, scope) {
                None => {
                    self.create(task, scope);
                    return Status::Pending;
                }
                Some(run) if !run.state.current.is_terminal() => {
                    self.visit(task, run);
                    return Status::Pending;
                }
                Some(run) if run.state.current.is_failure() => {
                    return Status::Done(run.state.current);
                }
                Some(run) => result = worse(result, run.state.current),
            }
        }
        Status::Done(result)
    }

    /// Children run side by side, at most `limit` at once (0 = all). After a
    /// failure no new child starts; the running ones finish.
    fn parallel(&mut self, tasks: &'a [Task], scope: &Scope<'a>, limit: u32) -> Status {
        let mut result = State::Success;
        let mut active = 0u32;
        let mut done = true;
        let mut missing = Vec::new();
        for task in enabled(tasks) {
            match self.find(task, scope) {
                None => missing.push(task),
                Some(run) if !run.state.current.is_terminal() => {
                    self.visit(task, run);
                    active += 1;
                    done = false;
                }
                Some(run) => result = worse(result, run.state.current),
            }
        }
        if !result.is_failure() {
            for task in missing {
                done = false;
                if limit == 0 || active < limit {
                    self.create(task, scope);
                    active += 1;
                }
            }
        }
        if done {
            Status::Done(result)
        } else {
            Status::Pending
        }
    }

    /// Drives a task run that is not finished yet.
    fn visit(&mut self, task: &'a Task, run: &'a TaskRun) {
        let state = run.state.current;
        if !task.kind.is_flowable() {
            let due = match state {
                State::Created => true,
                State::Retrying => run.next_attempt_at.is_none_or(|at| at <= self.now),
                _ => false,
            };
            if due {
                self.steps.push(Step::Start {
                    run_id: run.id.clone(),
                });
            }
            return;
        }
        let pause_delay = match &task.kind {
            TaskKind::Pause { delay, .. } => Some(*delay),
            _ => None,
        };
        let run_id = run.id.clone();
        match state {
            State::Created if pause_delay.is_some() => self.steps.push(Step::Pause { run_id }),
            State::Created => self.steps.push(Step::Evaluate { run_id }),
            State::Paused => {
                let due = run.next_attempt_at.is_some_and(|at| at <= self.now);
                match pause_delay {
                    Some(Some(_)) if due => self.steps.push(Step::Resume { run_id }),
                    Some(None) if due => self.steps.push(Step::Expire { run_id }),
                    _ => {}
                }
            }
            State::Running => {
                if let Status::Done(mut result) = self.children(task, run) {
                    let downgrade =
                        task.allow_failure || matches!(task.kind, TaskKind::AllowFailure { .. });
                    if downgrade && result.is_failure() {
                        result = State::Warning;
                    }
                    self.steps.push(Step::Complete {
                        run_id: run.id.clone(),
                        state: result,
                    });
                }
            }
            _ => {}
        }
    }

    fn children(&mut self, task: &'a Task, run: &'a TaskRun) -> Status {
        let scope = Scope {
            parent: Some(run),
            values: run.values.clone(),
        };
        let main = match &task.kind {
            TaskKind::Sequential { tasks }
            | TaskKind::AllowFailure { tasks }
            | TaskKind::Pause { tasks, .. } => self.sequential(tasks, &scope),
            TaskKind::Parallel { tasks, concurrent } => self.parallel(tasks, &scope, *concurrent),
            TaskKind::If {
                then, otherwise, ..
            } => {
                let branch = if run.branch.as_deref() == Some(THEN_BRANCH) {
                    then
                } else {
                    otherwise
                };
                self.sequential(branch, &scope)
            }
            TaskKind::Switch {
                cases, defaults, ..
            } => {
                let branch = cases
                    .iter()
                    .find(|(key, _)| Some(key.as_str()) == run.branch.as_deref())
                    .map_or(defaults, |(_, tasks)| tasks);
                self.sequential(branch, &scope)
            }
            TaskKind::ForEach {
                tasks,
                concurrency_limit,
                ..
            } => self.for_each(tasks, run, *concurrency_limit),
            TaskKind::Dag { tasks, concurrent } => self.dag(tasks, &scope, *concurrent),
            _ => Status::Done(State::Success),
        };
        self.handlers(main, &task.errors, &task.finally, &scope)
    }

    /// Each value runs the children in sequence; values run side by side up
    /// to `limit` (0 = all). After a failure no new iteration starts.
    fn for_each(&mut self, tasks: &'a [Task], run: &'a TaskRun, limit: u32) -> Status {
        let mut result = State::Success;
        let mut active = 0u32;
        let mut done = true;
        for value in &run.iterations {
            let mut values = run.values.clone();
            values.push(value.clone());
            let scope = Scope {
                parent: Some(run),
                values,
            };
            let started = enabled(tasks).any(|t| self.find(t, &scope).is_some());
            if !started && (result.is_failure() || (limit != 0 && active >= limit)) {
                if !result.is_failure() {
                    done = false;
                }
                continue;
            }
            match self.sequential(tasks, &scope) {
                Status::Pending => {
                    active += 1;
                    done = false;
                }
                Status::Done(state) => result = worse(result, state),
            }
        }
        if done {
            Status::Done(result)
        } else {
            Status::Pending
        }
    }

    /// A task starts once everything it depends on succeeded; at most
    /// `limit` run at once (0 = all that are ready).
    fn dag(&mut self, tasks: &'a [DagTask], scope: &Scope<'a>, limit: u32) -> Status {
        let mut result = State::Success;
        let mut active = 0u32;
        let mut done = true;
        let mut finished: HashMap<&str, bool> = HashMap::new();
        let mut missing = Vec::new();
        for entry in tasks {
            if entry.task.disabled {
                finished.insert(entry.task.id.as_str(), true);
                continue;
            }
            match self.find(&entry.task, scope) {
                None => missing.push(entry),
                Some(run) if !run.state.current.is_terminal() => {
                    self.visit(&entry.task, run);
                    active += 1;
                    done = false;
                }
                Some(run) => {
                    result = worse(result, run.state.current);
                    finished.insert(entry.task.id.as_str(), !run.state.current.is_failure());
                }
            }
        }
        if !result.is_failure() {
            for entry in missing {
                done = false;
                let ready = entry
                    .depends_on
                    .iter()
                    .all(|dep| finished.get(dep.as_str()) == Some(&true));
                if ready && (limit == 0 || active < limit) {
                    self.create(&entry.task, scope);
                    active += 1;
                }
            }
        }
        if done {
            Status::Done(result)
        } else {
            Status::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    const NOW: Timestamp = Timestamp::UNIX_EPOCH;

    fn flow(body: &str) -> Flow {
        crate::flow::parse(&format!("id: f\nnamespace: t\n{body}")).expect("flow parses")
    }

    fn log(id: &str) -> String {
        format!("{{id: {id}, type: io.kestra.plugin.core.log.Log, message: hi}}")
    }

    fn run(id: &str, task_id: &str, parent: Option<&str>, state: State) -> TaskRun {
        let mut run = TaskRun::new(
            id.into(),
            task_id.into(),
            parent.map(Into::into),
            Vec::new(),
            NOW,
        );
        run.state.set(state, NOW);
        run
    }

    fn execution(runs: Vec<TaskRun>) -> Execution {
        let mut execution = Execution::new(
            "e".into(),
            "t".into(),
            "f".into(),
            1,
            Vec::new(),
            Map::new(),
            NOW,
        );
        execution.state.set(State::Running, NOW);
        execution.task_run_list = runs;
        execution
    }

    fn create(task_id: &str, parent: Option<&str>) -> Step {
        Step::Create {
            task_id: task_id.into(),
            parent: parent.map(Into::into),
            values: Vec::new(),
        }
    }

    #[test]
    fn tasks_run_one_after_the_other_then_the_execution_finishes() {
        let flow = flow(&format!("tasks:\n  - {}\n  - {}\n", log("a"), log("b")));
        assert_eq!(plan(&flow, &execution(vec![]), NOW), [create("a", None)]);
        let a = run("1", "a", None, State::Created);
        assert_eq!(
            plan(&flow, &execution(vec![a]), NOW),
            [Step::Start { run_id: "1".into() }]
        );
        let a = run("1", "a", None, State::Success);
        assert_eq!(
            plan(&flow, &execution(vec![a.clone()]), NOW),
            [create("b", None)]
        );
        let b = run("2", "b", None, State::Warning);
        assert_eq!(
            plan(&flow, &execution(vec![a, b]), NOW),
            [Step::Finish {
                state: State::Warning
            }]
        );
    }

    #[test]
    fn a_failure_stops_the_sequence_and_runs_errors_then_finally() {
        let flow = flow(&format!(
            "tasks:\n  - {}\n  - {}\nerrors:\n  - {}\nfinally:\n  - {}\n",
            log("a"),
            log("b"),
            log("on-error"),
            log("always")
        ));
        let a = run("1", "a", None, State::Failed);
        assert_eq!(
            plan(&flow, &execution(vec![a.clone()]), NOW),
            [create("on-error", None)]
        );
        let handled = run("2", "on-error", None, State::Success);
        assert_eq!(
            plan(&flow, &execution(vec![a.clone(), handled.clone()]), NOW),
            [create("always", None)]
        );
        let always = run("3", "always", None, State::Success);
        assert_eq!(
            plan(&flow, &execution(vec![a, handled, always]), NOW),
            [Step::Finish {
                state: State::Failed
            }]
        );
    }

    #[test]
    fn parallel_children_start_up_to_the_limit() {
        let flow = flow(&format!(
            "tasks:\n  - id: p\n    type: io.kestra.plugin.core.flow.Parallel\n    concurrent: 2\n    tasks:\n      - {}\n      - {}\n      - {}\n",
            log("a"),
            log("b"),
            log("c")
        ));
        let p = run("p1", "p", None, State::Running);
        assert_eq!(
            plan(&flow, &execution(vec![p.clone()]), NOW),
            [create("a", Some("p1")), create("b", Some("p1"))]
        );
        let a = run("a1", "a", Some("p1"), State::Success);
        let b = run("b1", "b", Some("p1"), State::Running);
        assert_eq!(
            plan(&flow, &execution(vec![p, a, b]), NOW),
            [create("c", Some("p1"))]
        );
    }

    #[test]
    fn a_retry_starts_only_once_its_time_has_come() {
        let flow = flow(&format!("tasks:\n  - {}\n", log("a")));
        let mut a = run("1", "a", None, State::Retrying);
        a.next_attempt_at = Some(NOW + jiff::SignedDuration::from_secs(5));
        assert!(plan(&flow, &execution(vec![a.clone()]), NOW).is_empty());
        let later = NOW + jiff::SignedDuration::from_secs(5);
        assert_eq!(
            plan(&flow, &execution(vec![a]), later),
            [Step::Start { run_id: "1".into() }]
        );
    }

    #[test]
    fn a_dag_task_waits_for_what_it_depends_on() {
        let flow = flow(&format!(
            "tasks:\n  - id: d\n    type: io.kestra.plugin.core.flow.Dag\n    tasks:\n      - task: {}\n      - task: {}\n        dependsOn: [a]\n",
            log("a"),
            log("b")
        ));
        let d = run("d1", "d", None, State::Running);
        assert_eq!(
            plan(&flow, &execution(vec![d.clone()]), NOW),
            [create("a", Some("d1"))]
        );
        let a = run("a1", "a", Some("d1"), State::Success);
        assert_eq!(
            plan(&flow, &execution(vec![d, a]), NOW),
            [create("b", Some("d1"))]
        );
    }

    #[test]
    fn allow_failure_ends_warning_when_a_child_fails() {
        let flow = flow(&format!(
            "tasks:\n  - id: tolerant\n    type: io.kestra.plugin.core.flow.AllowFailure\n    tasks:\n      - {}\n",
            log("a")
        ));
        let parent = run("t1", "tolerant", None, State::Running);
        let a = run("a1", "a", Some("t1"), State::Failed);
        assert_eq!(
            plan(&flow, &execution(vec![parent, a]), NOW),
            [Step::Complete {
                run_id: "t1".into(),
                state: State::Warning
            }]
        );
    }

    #[test]
    fn an_ended_execution_plans_nothing() {
        let flow = flow(&format!("tasks:\n  - {}\n", log("a")));
        let mut ended = execution(vec![]);
        ended.state.set(State::Killed, NOW);
        assert!(plan(&flow, &ended, NOW).is_empty());
    }
}
