//! Running an ended execution again (pure): restart it from its failed
//! task runs, or replay it from any task run as a new execution.

use jiff::Timestamp;

use crate::execution::{Execution, State, StateInfo};
use crate::flow::Flow;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RerunError {
    #[error("execution {0} has not ended")]
    NotEnded(String),
    #[error("execution {0} did not fail; only FAILED or KILLED executions restart")]
    NotFailed(String),
    #[error("execution {execution} has no task run {task_run}")]
    NoTaskRun { execution: String, task_run: String },
}

/// Task ids of every `errors` and `finally` block of the flow: their runs
/// were caused by the ending and run again when it is run again.
fn handler_task_ids(flow: &Flow) -> Vec<String> {
    let mut ids = Vec::new();
    let mut collect = |tasks: &[crate::flow::Task]| {
        for task in tasks {
            let mut stack = vec![task];
            while let Some(t) = stack.pop() {
                ids.push(t.id.clone());
                stack.extend(t.kind.children());
                stack.extend(t.errors.iter());
                stack.extend(t.finally.iter());
            }
        }
    };
    collect(&flow.errors);
    collect(&flow.finally);
    for task in flow.all_tasks() {
        collect(&task.errors);
        collect(&task.finally);
    }
    ids
}

/// Ids of `roots` and every task run below them.
fn with_descendants(execution: &Execution, roots: &[String]) -> Vec<String> {
    let mut out: Vec<String> = roots.to_vec();
    let mut grew = true;
    while grew {
        grew = false;
        for run in &execution.task_run_list {
            if let Some(parent) = &run.parent_task_run_id
                && out.contains(parent)
                && !out.contains(&run.id)
            {
                out.push(run.id.clone());
                grew = true;
            }
        }
    }
    out
}

fn ancestors(execution: &Execution, run_id: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut next = execution
        .task_run(run_id)
        .and_then(|r| r.parent_task_run_id.clone());
    while let Some(id) = next {
        next = execution
            .task_run(&id)
            .and_then(|r| r.parent_task_run_id.clone());
        out.push(id);
    }
    out
}

/// The execution set to run again from its failed task runs: each failed
/// runnable task run gets a new attempt, the flowable ones around them run
/// again, error handlers and finally blocks run again when reached.
pub fn restart(
    flow: &Flow,
    execution: &Execution,
    now: Timestamp,
) -> Result<Execution, RerunError> {
    let state = execution.state.current;
    if !state.is_terminal() {
        return Err(RerunError::NotEnded(execution.id.clone()));
    }
    if !matches!(state, State::Failed | State::Killed) {
        return Err(RerunError::NotFailed(execution.id.clone()));
    }
    let mut next = execution.clone();
    let handlers = handler_task_ids(flow);
    let handler_runs: Vec<String> = next
        .task_run_list
        .iter()
        .filter(|r| handlers.contains(&r.task_id))
        .map(|r| r.id.clone())
        .collect();
    let dropped = with_descendants(&next, &handler_runs);
    next.task_run_list.retain(|r| !dropped.contains(&r.id));
    let failed: Vec<String> = next
        .task_run_list
        .iter()
        .filter(|r| r.state.current.is_failure())
        .map(|r| r.id.clone())
        .collect();
    let mut reopened = Vec::new();
    for id in &failed {
        reopened.extend(ancestors(&next, id));
    }
    for run in &mut next.task_run_list {
        if !failed.contains(&run.id) && !reopened.contains(&run.id) {
            continue;
        }
        let flowable = flow
            .find_task(&run.task_id)
            .is_some_and(|t| t.kind.is_flowable());
        let has_children = execution
            .task_run_list
            .iter()
            .any(|r| r.parent_task_run_id.as_deref() == Some(&run.id));
        let target = if !flowable {
            State::Retrying // the planner starts its next attempt
        } else if has_children {
            State::Running
        } else {
            State::Created // failed while deciding: decide again
        };
        run.state.set(target, now);
        run.state.end_date = None;
        run.next_attempt_at = None;
    }
    next.outputs = None;
    next.error = None;
    next.state.set(State::Created, now);
    next.state.end_date = None;
    Ok(next)
}

/// A new execution (`new_id`) that repeats `execution` from `task_run_id`
/// on: task runs created before it are kept (those around it run again),
/// it and everything after it run anew.
pub fn replay(
    execution: &Execution,
    task_run_id: &str,
    new_id: String,
    now: Timestamp,
) -> Result<Execution, RerunError> {
    if !execution.state.current.is_terminal() {
        return Err(RerunError::NotEnded(execution.id.clone()));
    }
    let position = execution
        .task_run_list
        .iter()
        .position(|r| r.id == task_run_id)
        .ok_or_else(|| RerunError::NoTaskRun {
            execution: execution.id.clone(),
            task_run: task_run_id.to_owned(),
        })?;
    let around = ancestors(execution, task_run_id);
    let mut next = execution.clone();
    next.id = new_id;
    next.task_run_list.truncate(position);
    let later: Vec<String> = execution.task_run_list[position..]
        .iter()
        .map(|r| r.id.clone())
        .collect();
    let dropped = with_descendants(execution, &later);
    next.task_run_list.retain(|r| !dropped.contains(&r.id));
    for run in &mut next.task_run_list {
        if around.contains(&run.id) {
            run.state.set(State::Running, now);
            run.state.end_date = None;
        }
    }
    next.outputs = None;
    next.error = None;
    next.state = StateInfo::new(State::Created, now);
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::execution::TaskRun;
    use serde_json::Map;

    const FLOW: &str = r#"
id: f
namespace: n
tasks:
  - id: seq
    type: io.kestra.plugin.core.flow.Sequential
    tasks:
      - {id: a, type: io.kestra.plugin.core.log.Log, message: a}
      - {id: b, type: io.kestra.plugin.core.execution.Fail}
errors:
  - {id: handler, type: io.kestra.plugin.core.log.Log, message: h}
"#;

    fn ended() -> (Flow, Execution) {
        let flow = crate::flow::parse(FLOW).expect("flow");
        let now = Timestamp::UNIX_EPOCH;
        let mut execution = Execution::new(
            "e1".into(),
            "n".into(),
            "f".into(),
            1,
            Vec::new(),
            Map::new(),
            now,
        );
        let mut run = |id: &str, task: &str, parent: Option<&str>, state: State| {
            let mut r = TaskRun::new(
                id.into(),
                task.into(),
                parent.map(Into::into),
                Vec::new(),
                now,
            );
            r.state.set(state, now);
            execution.task_run_list.push(r);
        };
        run("r-seq", "seq", None, State::Failed);
        run("r-a", "a", Some("r-seq"), State::Success);
        run("r-b", "b", Some("r-seq"), State::Failed);
        run("r-h", "handler", None, State::Success);
        execution.state.set(State::Failed, now);
        (flow, execution)
    }

    fn summary(execution: &Execution) -> Vec<(String, State)> {
        execution
            .task_run_list
            .iter()
            .map(|r| (r.id.clone(), r.state.current))
            .collect()
    }

    #[test]
    fn restart_reopens_the_failed_path_and_drops_handlers() {
        let (flow, execution) = ended();
        let next = restart(&flow, &execution, Timestamp::UNIX_EPOCH).expect("restart");
        assert_eq!(
            summary(&next),
            [
                ("r-seq".into(), State::Running),
                ("r-a".into(), State::Success),
                ("r-b".into(), State::Retrying),
            ]
        );
        assert_eq!(next.state.current, State::Created);
        let mut ok = execution.clone();
        ok.state.set(State::Success, Timestamp::UNIX_EPOCH);
        assert!(matches!(
            restart(&flow, &ok, Timestamp::UNIX_EPOCH),
            Err(RerunError::NotFailed(_))
        ));
    }

    #[test]
    fn replay_keeps_what_came_before_the_task_run() {
        let (_, execution) = ended();
        let next = replay(&execution, "r-a", "e2".into(), Timestamp::UNIX_EPOCH).expect("replay");
        assert_eq!(next.id, "e2");
        assert_eq!(summary(&next), [("r-seq".into(), State::Running)]);
        assert!(matches!(
            replay(&execution, "nope", "e3".into(), Timestamp::UNIX_EPOCH),
            Err(RerunError::NoTaskRun { .. })
        ));
    }
}
