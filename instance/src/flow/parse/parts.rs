//! The flow-level parts of a flow besides tasks and triggers: labels,
//! inputs, outputs, concurrency and retry policies.

use serde_json::Value;

use super::fields::Fields;
use crate::flow::error::{ProblemKind, problem};
use crate::flow::model::*;
use crate::vocabulary::Label;

pub(super) fn labels_from(f: &mut Fields<'_>) -> Vec<Label> {
    let mut labels = Vec::new();
    match f.take("labels") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (key, value) in map {
                match scalar_text(&value) {
                    Some(value) => labels.push(Label { key, value }),
                    None => f.report(
                        &format!("labels.{key}"),
                        ProblemKind::Field,
                        "label values must be strings".into(),
                    ),
                }
            }
        }
        Some(Value::Array(items)) => {
            for (i, item) in items.into_iter().enumerate() {
                let key = item.get("key").and_then(scalar_text);
                let value = item.get("value").and_then(scalar_text);
                match (key, value) {
                    (Some(key), Some(value)) => labels.push(Label { key, value }),
                    _ => f.report(
                        &format!("labels[{i}]"),
                        ProblemKind::Field,
                        "must be a mapping with string `key` and `value`".into(),
                    ),
                }
            }
        }
        Some(other) => f.wrong_type("labels", "a mapping or a list", &other),
    }
    labels
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub(super) fn inputs_from(f: &mut Fields<'_>, key: &'static str) -> Vec<Input> {
    let items = f.list(key);
    let mut inputs = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let path = f.field_path(&format!("{key}[{i}]"));
        let Value::Object(map) = item else {
            f.problems.push(problem(
                &path,
                None,
                ProblemKind::Field,
                "an input must be a mapping".into(),
            ));
            continue;
        };
        let mut g = Fields::new(map, path, None, f.problems);
        // `name` is Kestra's older spelling of `id`.
        let id = match g.string("id") {
            Some(id) => id,
            None => g.required_string("name"),
        };
        let kind = input_type(&mut g, "type", true);
        let required = g.bool("required", true);
        let defaults = g.value("defaults");
        let description = g.string("description");
        let values = g.strings("values");
        let item_type = if g.has("itemType") {
            input_type(&mut g, "itemType", false)
        } else {
            None
        };
        if let Some(kind @ (InputType::Select | InputType::MultiSelect)) = kind
            && values.is_empty()
            && !g.problem_at("values")
        {
            g.report(
                "values",
                ProblemKind::Field,
                format!("a {} input needs a non-empty `values` list", kind.name()),
            );
        }
        g.finish();
        if let Some(kind) = kind {
            inputs.push(Input {
                id,
                kind,
                required,
                defaults,
                description,
                values,
                item_type,
            });
        }
    }
    inputs
}

fn input_type(f: &mut Fields<'_>, key: &'static str, required: bool) -> Option<InputType> {
    let name = if required {
        f.required_string(key)
    } else {
        f.string(key)?
    };
    if name.is_empty() {
        return None;
    }
    let kind = InputType::from_name(&name);
    if kind.is_none() {
        let known: Vec<&str> = InputType::NAMES.iter().map(|(n, _)| *n).collect();
        f.report(
            key,
            ProblemKind::Field,
            format!("unknown type `{name}`; supported: {}", known.join(", ")),
        );
    }
    kind
}

pub(super) fn outputs_from(f: &mut Fields<'_>) -> Vec<FlowOutput> {
    let items = f.list("outputs");
    let mut outputs = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let path = f.field_path(&format!("outputs[{i}]"));
        let Value::Object(map) = item else {
            f.problems.push(problem(
                &path,
                None,
                ProblemKind::Field,
                "an output must be a mapping".into(),
            ));
            continue;
        };
        let mut g = Fields::new(map, path, None, f.problems);
        let id = g.required_string("id");
        let kind = input_type(&mut g, "type", true);
        let value = g.value("value");
        if value.is_none() && !g.problem_at("value") {
            g.missing("value");
        }
        let required = g.bool("required", true);
        let _description = g.string("description");
        let values = g.strings("values");
        let item_type = if g.has("itemType") {
            input_type(&mut g, "itemType", false)
        } else {
            None
        };
        g.finish();
        if let (Some(kind), Some(value)) = (kind, value) {
            outputs.push(FlowOutput {
                id,
                kind,
                value,
                required,
                item_type,
                values,
            });
        }
    }
    outputs
}

pub(super) fn concurrency_from(f: &mut Fields<'_>) -> Option<Concurrency> {
    let value = f.value("concurrency")?;
    let Value::Object(map) = value else {
        f.wrong_type(
            "concurrency",
            "a mapping with `limit` and `behavior`",
            &value,
        );
        return None;
    };
    let path = f.field_path("concurrency");
    let mut g = Fields::new(map, path, None, f.problems);
    let limit = g.u32("limit");
    match limit {
        None if !g.problem_at("limit") => g.missing("limit"),
        Some(0) => g.report("limit", ProblemKind::Field, "must be at least 1".into()),
        _ => {}
    }
    let behavior = match g.string("behavior").as_deref() {
        None | Some("QUEUE") => ConcurrencyBehavior::Queue,
        Some("CANCEL") => ConcurrencyBehavior::Cancel,
        Some("FAIL") => ConcurrencyBehavior::Fail,
        Some(_) => {
            g.report(
                "behavior",
                ProblemKind::Field,
                "must be QUEUE, CANCEL or FAIL".into(),
            );
            ConcurrencyBehavior::Queue
        }
    };
    g.finish();
    Some(Concurrency {
        limit: limit.filter(|l| *l > 0)?,
        behavior,
    })
}

pub(super) fn retry_from_fields(f: &mut Fields<'_>) -> Option<Retry> {
    let kind = f.required_string("type");
    // Kestra spells it `maxAttempt`; `maxAttempts` is accepted too.
    let max_attempts = match f.u32("maxAttempt") {
        Some(n) => Some(n),
        None => f.u32("maxAttempts"),
    };
    let max_duration = f.duration("maxDuration");
    let warning_on_retry = f.bool("warningOnRetry", false);
    let behavior = match f.string("behavior").as_deref() {
        None | Some("RETRY_FAILED_TASK") => RetryBehavior::RetryFailedTask,
        Some("CREATE_NEW_EXECUTION") => RetryBehavior::CreateNewExecution,
        Some(other) => {
            f.report(
                "behavior",
                ProblemKind::Field,
                format!("`{other}` is not RETRY_FAILED_TASK or CREATE_NEW_EXECUTION"),
            );
            RetryBehavior::RetryFailedTask
        }
    };
    if max_attempts.is_none() && max_duration.is_none() && !f.problem_at("maxAttempt") {
        f.report(
            "maxAttempt",
            ProblemKind::Field,
            "a retry needs `maxAttempt` or `maxDuration`".into(),
        );
    }
    if max_attempts == Some(0) {
        f.report(
            "maxAttempt",
            ProblemKind::Field,
            "must be at least 1".into(),
        );
    }
    let backoff = match kind.as_str() {
        "constant" => Backoff::Constant {
            interval: f.required_duration("interval"),
        },
        "exponential" => {
            let interval = f.required_duration("interval");
            let max_interval = f.required_duration("maxInterval");
            let delay_factor = f.f64("delayFactor").unwrap_or(2.0);
            Backoff::Exponential {
                interval,
                max_interval,
                delay_factor,
            }
        }
        "random" => Backoff::Random {
            min_interval: f.required_duration("minInterval"),
            max_interval: f.required_duration("maxInterval"),
        },
        "" => return None,
        other => {
            f.report(
                "type",
                ProblemKind::Field,
                format!("unknown retry type `{other}`; supported: constant, exponential, random"),
            );
            return None;
        }
    };
    Some(Retry {
        backoff,
        max_attempts,
        max_duration,
        warning_on_retry,
        behavior,
    })
}
