//! The variables a template sees, as Kestra names them: `flow`, `execution`,
//! `inputs`, `vars`, `labels`, `outputs`, `task`, `taskrun`, `parent`,
//! `parents` and `trigger`.

use serde_json::{Map, Value, json};

use crate::execution::{Execution, TaskRun};
use crate::flow::{Flow, InputError, InputType, Task, typed_output};
use crate::template::{ERROR_LOGS_VAR, LOOP_VALUES_VAR, Templates, Vars};

/// `outputs`: task outputs by task id; looped tasks nested by loop value,
/// outermost first (`outputs['t']['v1']['v2'].value`).
pub(crate) fn outputs(execution: &Execution) -> Map<String, Value> {
    let mut out = Map::new();
    for run in &execution.task_run_list {
        if run.outputs.is_empty() {
            continue;
        }
        let value = Value::Object(run.outputs.clone());
        if run.values.is_empty() {
            out.insert(run.task_id.clone(), value);
            continue;
        }
        let mut slot = out
            .entry(run.task_id.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        for key in &run.values {
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            let Value::Object(map) = slot else { break };
            slot = map
                .entry(key.clone())
                .or_insert_with(|| Value::Object(Map::new()));
        }
        *slot = value;
    }
    out
}

/// Variables shared by every template of the execution.
pub(crate) fn base(flow: &Flow, execution: &Execution) -> Map<String, Value> {
    let mut vars = Map::new();
    vars.insert(
        "flow".into(),
        json!({"id": flow.id, "namespace": flow.namespace, "revision": execution.flow_revision}),
    );
    vars.insert(
        "execution".into(),
        json!({"id": execution.id, "startDate": execution.state.start_date.to_string(),
               "state": execution.state.current.as_str()}),
    );
    // Kestra leaves `inputs` undefined for a flow that declares none.
    if !flow.inputs.is_empty() {
        vars.insert("inputs".into(), Value::Object(execution.inputs.clone()));
    }
    vars.insert("vars".into(), Value::Object(flow.variables.clone()));
    let labels: Map<String, Value> = execution
        .labels
        .iter()
        .map(|l| (l.key.clone(), Value::String(l.value.clone())))
        .collect();
    vars.insert("labels".into(), Value::Object(labels));
    if let Some(trigger) = &execution.trigger {
        vars.insert("trigger".into(), trigger.clone());
    }
    vars.insert("outputs".into(), Value::Object(outputs(execution)));
    vars
}

/// The flow's `outputs`, each rendered against the finished execution and
/// converted to its declared type (an `INT` output is a number, as in
/// Kestra). A value that is one `{{ expression }}` keeps the expression's
/// type; text types take the rendered text.
pub(crate) fn flow_outputs(
    templates: &Templates,
    flow: &Flow,
    execution: &Execution,
) -> Result<Map<String, Value>, String> {
    let vars = Templates::vars(&base(flow, execution));
    let mut out = Map::new();
    for (i, output) in flow.outputs.iter().enumerate() {
        let property = format!("outputs[{i}].value");
        let textual = matches!(
            output.kind,
            InputType::String
                | InputType::Secret
                | InputType::Uri
                | InputType::Email
                | InputType::File
        );
        let rendered = if textual {
            templates.render_json(&output.value, &vars)
        } else {
            templates.evaluate_json(&output.value, &vars)
        }
        .map_err(|e| {
            format!(
                "flow output `{}`: {}",
                output.id,
                e.in_property(None, &property)
            )
        })?;
        let value = typed_output(output, rendered).map_err(|e| match e {
            InputError::Invalid { expected, .. } => {
                format!("flow output `{}` must be {expected}", output.id)
            }
            other => other.to_string(),
        })?;
        out.insert(output.id.clone(), value);
    }
    Ok(out)
}

fn taskrun_vars(run: &TaskRun) -> Value {
    let mut map = Map::new();
    map.insert("id".into(), Value::String(run.id.clone()));
    map.insert(
        "startDate".into(),
        Value::String(run.state.start_date.to_string()),
    );
    map.insert(
        "attemptsCount".into(),
        Value::from(run.attempts.len().saturating_sub(1)),
    );
    // Outside loops `taskrun.value` is null (prints empty), as in Kestra.
    map.insert(
        "value".into(),
        run.value.clone().map_or(Value::Null, Value::String),
    );
    if let Some(parent) = &run.parent_task_run_id {
        map.insert("parentId".into(), Value::String(parent.clone()));
    }
    Value::Object(map)
}

/// Variables for one task run: the base plus `task`, `taskrun`, `parent`,
/// `parents`, the loop values for `currentEachOutput()` and the error logs
/// for `errorLogs()`.
pub(crate) fn for_run(
    mut vars: Map<String, Value>,
    execution: &Execution,
    task: &Task,
    run: &TaskRun,
    error_logs: &[(String, String)],
) -> Vars {
    vars.insert(
        "task".into(),
        json!({"id": task.id, "type": task.type_name}),
    );
    vars.insert("taskrun".into(), taskrun_vars(run));
    let mut parents = Vec::new();
    let mut next = run.parent_task_run_id.as_deref();
    while let Some(id) = next {
        let Some(parent) = execution.task_run(id) else {
            break;
        };
        parents.push(json!({"taskrun": taskrun_vars(parent), "outputs": parent.outputs}));
        next = parent.parent_task_run_id.as_deref();
    }
    if let Some(first) = parents.first() {
        vars.insert("parent".into(), first.clone());
    }
    vars.insert("parents".into(), Value::Array(parents));
    vars.insert(
        LOOP_VALUES_VAR.into(),
        Value::Array(run.values.iter().cloned().map(Value::String).collect()),
    );
    let logs: Vec<Value> = error_logs
        .iter()
        .map(|(task_id, message)| json!({"taskId": task_id, "message": message, "level": "ERROR"}))
        .collect();
    vars.insert(ERROR_LOGS_VAR.into(), Value::Array(logs));
    Templates::vars(&vars)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;

    #[test]
    fn looped_outputs_nest_by_loop_value() {
        let now = Timestamp::UNIX_EPOCH;
        let mut execution = Execution::new(
            "e".into(),
            "n".into(),
            "f".into(),
            1,
            Vec::new(),
            Map::new(),
            now,
        );
        for (id, values) in [
            ("a", vec![]),
            ("b", vec!["s1", "x"]),
            ("b", vec!["s1", "y"]),
        ] {
            let mut run = TaskRun::new(
                format!("{id}{}", values.len()),
                id.into(),
                None,
                values.into_iter().map(String::from).collect(),
                now,
            );
            run.outputs
                .insert("value".into(), json!(run.values.join("-")));
            execution.task_run_list.push(run);
        }
        assert_eq!(
            Value::Object(outputs(&execution)),
            json!({"a": {"value": ""}, "b": {"s1": {"x": {"value": "s1-x"}, "y": {"value": "s1-y"}}}})
        );
    }
}
