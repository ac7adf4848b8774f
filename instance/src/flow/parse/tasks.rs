//! Tasks: the properties every task has, and those of the flowable task
//! types (and `Subflow`, `Exit`, `Pause`, which the driver interprets).
//! Runnable task types read their own properties (`flow/tasks/`).

use serde_json::Value;

use super::fields::Fields;
use super::parts::{inputs_from, labels_from};
use super::type_name;
use crate::flow::error::{Problem, ProblemKind, problem};
use crate::flow::model::*;
use crate::flow::tasks::parse_runnable;
use crate::flow::types::{FlowableType, lookup_task_type};
use crate::flow::validate::{IdRule, check_id, is_valid_id};
use crate::vocabulary::State;

pub(super) fn parse_task(item: Value, path: String, problems: &mut Vec<Problem>) -> Option<Task> {
    let Value::Object(map) = item else {
        problems.push(problem(
            &path,
            None,
            ProblemKind::Field,
            format!("a task must be a mapping, found {}", type_name(&item)),
        ));
        return None;
    };
    // Only a well-formed id is quoted in messages about this task.
    let task_id = map
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| is_valid_id(id, IdRule::Task))
        .map(str::to_owned);
    let mut f = Fields::new(map, path.clone(), task_id, problems);
    let id = f.required_string("id");
    let id_path = f.field_path("id");
    check_id(&id, &id_path, IdRule::Task, f.problems);
    let type_name = f.required_string("type");
    let description = f.string("description");
    let retry = f.retry("retry");
    let timeout = f.duration("timeout");
    let allow_failure = f.bool("allowFailure", false);
    let disabled = f.bool("disabled", false);
    let kind = if type_name.is_empty() {
        None
    } else {
        let found = match parse_runnable(&type_name, &mut f) {
            Some(kind) => Ok(kind),
            None => lookup_task_type(&type_name).map(|t| flowable_from_fields(t, &mut f)),
        };
        match found {
            Ok(kind) => Some(kind),
            Err((kind, message)) => {
                f.report("type", kind, message);
                // The rest of the task cannot be checked without its type.
                f.map.clear();
                None
            }
        }
    };
    let (errors, finally) = match &kind {
        Some(kind) if kind.is_flowable() => (f.tasks("errors"), f.tasks("finally")),
        _ => (Vec::new(), Vec::new()),
    };
    f.finish();
    Some(Task {
        id,
        path,
        type_name,
        description,
        retry,
        timeout,
        allow_failure,
        disabled,
        errors,
        finally,
        kind: kind?,
    })
}

/// The properties of a flowable task (or one the driver interprets itself).
fn flowable_from_fields(task_type: FlowableType, f: &mut Fields<'_>) -> TaskKind {
    match task_type {
        FlowableType::Sequential => TaskKind::Sequential {
            tasks: f.required_tasks("tasks"),
        },
        FlowableType::Parallel => {
            let tasks = f.required_tasks("tasks");
            TaskKind::Parallel {
                tasks,
                concurrent: f.u32("concurrent").unwrap_or(0),
            }
        }
        FlowableType::AllowFailure => TaskKind::AllowFailure {
            tasks: f.required_tasks("tasks"),
        },
        FlowableType::If => {
            let condition = f.required_string("condition");
            let then = f.required_tasks("then");
            let otherwise = f.tasks("else");
            TaskKind::If {
                condition,
                then,
                otherwise,
            }
        }
        FlowableType::Switch => switch_from(f),
        FlowableType::ForEach => {
            let values = each_values(f, "values");
            let concurrency_limit = f.u32("concurrencyLimit").unwrap_or(1);
            TaskKind::ForEach {
                values,
                concurrency_limit,
                tasks: f.required_tasks("tasks"),
            }
        }
        FlowableType::EachSequential => {
            let values = each_values(f, "value");
            TaskKind::ForEach {
                values,
                concurrency_limit: 1,
                tasks: f.required_tasks("tasks"),
            }
        }
        FlowableType::EachParallel => {
            let values = each_values(f, "value");
            let concurrency_limit = f.u32("concurrent").unwrap_or(0);
            TaskKind::ForEach {
                values,
                concurrency_limit,
                tasks: f.required_tasks("tasks"),
            }
        }
        FlowableType::Dag => dag_from(f),
        FlowableType::Subflow => subflow_from(f),
        FlowableType::Exit => exit_from(f),
        FlowableType::Pause => {
            // `pauseDuration` is Kestra's newer name for `delay`.
            let delay = match f.duration("delay") {
                Some(delay) => Some(delay),
                None => f.duration("pauseDuration"),
            };
            TaskKind::Pause {
                delay,
                on_resume: inputs_from(f, "onResume"),
                tasks: f.tasks("tasks"),
            }
        }
    }
}

fn each_values(f: &mut Fields<'_>, key: &'static str) -> Value {
    match f.value(key) {
        Some(v @ (Value::String(_) | Value::Array(_))) => v,
        Some(other) => {
            f.wrong_type(key, "a JSON array string or a list", &other);
            Value::Array(Vec::new())
        }
        None => {
            if !f.problem_at(key) {
                f.missing(key);
            }
            Value::Array(Vec::new())
        }
    }
}

fn switch_from(f: &mut Fields<'_>) -> TaskKind {
    let value = f.required_string("value");
    let cases_value = f.take("cases");
    let mut cases = Vec::new();
    match cases_value {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            let base = f.field_path("cases");
            for (key, item) in map {
                let Value::Array(items) = item else {
                    f.report(
                        &format!("cases.{key}"),
                        ProblemKind::Field,
                        "a case must be a list of tasks".into(),
                    );
                    continue;
                };
                let tasks = items
                    .into_iter()
                    .enumerate()
                    .filter_map(|(i, item)| {
                        parse_task(item, format!("{base}.{key}[{i}]"), f.problems)
                    })
                    .collect();
                cases.push((key, tasks));
            }
        }
        Some(other) => f.wrong_type("cases", "a mapping of value to tasks", &other),
    }
    let defaults = f.tasks("defaults");
    if cases.is_empty() && defaults.is_empty() && !f.problem_at("cases") {
        f.report(
            "cases",
            ProblemKind::Field,
            "a Switch needs `cases` or `defaults`".into(),
        );
    }
    TaskKind::Switch {
        value,
        cases,
        defaults,
    }
}

fn dag_from(f: &mut Fields<'_>) -> TaskKind {
    let items = f.list("tasks");
    let base = f.field_path("tasks");
    let mut tasks = Vec::new();
    if items.is_empty() && !f.problem_at("tasks") {
        f.report(
            "tasks",
            ProblemKind::Field,
            "must hold at least one task".into(),
        );
    }
    for (i, item) in items.into_iter().enumerate() {
        let path = format!("{base}[{i}]");
        let Value::Object(map) = item else {
            f.problems.push(problem(
                &path,
                f.task.as_deref(),
                ProblemKind::Field,
                "a Dag entry must be a mapping with `task` and optional `dependsOn`".into(),
            ));
            continue;
        };
        let mut g = Fields::new(map, path.clone(), f.task.clone(), f.problems);
        let task = match g.take("task") {
            Some(task) => parse_task(task, format!("{path}.task"), g.problems),
            None => {
                g.missing("task");
                None
            }
        };
        let depends_on = g.strings("dependsOn");
        g.finish();
        if let Some(task) = task {
            tasks.push(DagTask { task, depends_on });
        }
    }
    TaskKind::Dag {
        tasks,
        concurrent: f.u32("concurrent").unwrap_or(0),
    }
}

fn subflow_from(f: &mut Fields<'_>) -> TaskKind {
    let namespace = f.required_string("namespace");
    let flow_id = f.required_string("flowId");
    let inputs = f.object("inputs");
    let wait = f.bool("wait", true);
    let transmit_failed = f.bool("transmitFailed", true);
    let inherit_labels = f.bool("inheritLabels", false);
    let labels = labels_from(f);
    let outputs = f.object("outputs");
    if f.has("revision") {
        f.report(
            "revision",
            ProblemKind::Unsupported,
            "a fixed subflow `revision` is not supported yet; the latest revision runs".into(),
        );
        let _ = f.take("revision");
    }
    TaskKind::Subflow(SubflowSpec {
        namespace,
        flow_id,
        inputs,
        wait,
        transmit_failed,
        inherit_labels,
        labels,
        outputs,
    })
}

fn exit_from(f: &mut Fields<'_>) -> TaskKind {
    let state = match f.string("state").as_deref() {
        None | Some("SUCCESS") => State::Success,
        Some("WARNING") => State::Warning,
        Some("FAILED") => State::Failed,
        Some("KILLED") => State::Killed,
        Some("CANCELLED") => State::Cancelled,
        Some(_) => {
            f.report(
                "state",
                ProblemKind::Field,
                "must be SUCCESS, WARNING, FAILED, KILLED or CANCELLED".into(),
            );
            State::Success
        }
    };
    TaskKind::Exit { state }
}
