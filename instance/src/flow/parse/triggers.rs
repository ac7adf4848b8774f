//! Triggers: `Schedule`, `Webhook` and `Flow` (with its conditions).

use serde_json::Value;

use super::fields::Fields;
use crate::flow::error::{ProblemKind, problem};
use crate::flow::model::*;
use crate::flow::types::{TriggerType, lookup_trigger_type};
use crate::flow::validate::{IdRule, check_id};
use crate::vocabulary::State;

pub(super) fn triggers_from(f: &mut Fields<'_>) -> Vec<Trigger> {
    let items = f.list("triggers");
    let mut triggers = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let path = f.field_path(&format!("triggers[{i}]"));
        let Value::Object(map) = item else {
            f.problems.push(problem(
                &path,
                None,
                ProblemKind::Field,
                "a trigger must be a mapping".into(),
            ));
            continue;
        };
        let mut g = Fields::new(map, path, None, f.problems);
        let id = g.required_string("id");
        let id_path = g.field_path("id");
        check_id(&id, &id_path, IdRule::Task, g.problems);
        let type_name = g.required_string("type");
        let disabled = g.bool("disabled", false);
        let _description = g.string("description");
        let kind = if type_name.is_empty() {
            None
        } else {
            match lookup_trigger_type(&type_name) {
                Ok(TriggerType::Schedule) => schedule_from(&mut g),
                Ok(TriggerType::Webhook) => webhook_from(&mut g),
                Ok(TriggerType::Flow) => flow_trigger_from(&mut g),
                Err((kind, message)) => {
                    g.report("type", kind, message);
                    g.map.clear();
                    None
                }
            }
        };
        g.finish();
        if let Some(kind) = kind {
            triggers.push(Trigger {
                id,
                type_name,
                disabled,
                kind,
            });
        }
    }
    triggers
}

fn timestamp(f: &mut Fields<'_>, key: &'static str) -> Option<jiff::Timestamp> {
    let text = f.string(key)?;
    match text.parse::<jiff::Timestamp>() {
        Ok(ts) => Some(ts),
        Err(_) => {
            f.report(
                key,
                ProblemKind::Field,
                "must be an RFC 3339 date-time with an offset, such as 2024-01-01T00:00:00Z".into(),
            );
            None
        }
    }
}

fn schedule_from(f: &mut Fields<'_>) -> Option<TriggerKind> {
    let cron = f.required_string("cron");
    let with_seconds = f.bool("withSeconds", false);
    let timezone = f.string("timezone");
    let inputs = f.object("inputs");
    let recover = match f.string("recoverMissedSchedules").as_deref() {
        None | Some("ALL") => RecoverMissed::All,
        Some("LAST") => RecoverMissed::Last,
        Some("NONE") => RecoverMissed::None,
        Some(_) => {
            f.report(
                "recoverMissedSchedules",
                ProblemKind::Field,
                "must be ALL, LAST or NONE".into(),
            );
            RecoverMissed::All
        }
    };
    let (backfill_start, backfill_end) = match f.value("backfill") {
        None => (None, None),
        Some(Value::Object(map)) => {
            let path = f.field_path("backfill");
            let mut g = Fields::new(map, path, None, f.problems);
            let start = timestamp(&mut g, "start");
            if start.is_none() && !g.problem_at("start") {
                g.missing("start");
            }
            let end = timestamp(&mut g, "end");
            g.finish();
            (start, end)
        }
        Some(other) => {
            f.wrong_type(
                "backfill",
                "a mapping with `start` (and optional `end`)",
                &other,
            );
            (None, None)
        }
    };
    if cron.is_empty() {
        return None;
    }
    let spec = ScheduleTrigger {
        cron,
        with_seconds,
        timezone,
        backfill_start,
        backfill_end,
        inputs,
        recover,
    };
    if let Err(err) = spec.schedule() {
        let key = match err {
            crate::cron::ScheduleError::Cron { .. } => "cron",
            crate::cron::ScheduleError::TimeZone(_) => "timezone",
        };
        f.report(key, ProblemKind::Field, err.to_string());
        return None;
    }
    Some(TriggerKind::Schedule(spec))
}

fn state_list(f: &mut Fields<'_>, key: &'static str) -> Vec<State> {
    let names = f.strings(key);
    let mut states = Vec::new();
    for name in names {
        match State::parse(&name) {
            Some(state) => states.push(state),
            None => f.report(
                key,
                ProblemKind::Field,
                "names an unknown state; use SUCCESS, WARNING, FAILED, KILLED, CANCELLED…".into(),
            ),
        }
    }
    states
}

const CONDITION_TYPES: &[(&str, &str)] = &[
    ("io.kestra.plugin.core.condition.ExecutionFlow", "flow"),
    (
        "io.kestra.plugin.core.condition.ExecutionFlowCondition",
        "flow",
    ),
    (
        "io.kestra.core.models.conditions.types.ExecutionFlowCondition",
        "flow",
    ),
    (
        "io.kestra.plugin.core.condition.ExecutionNamespace",
        "namespace",
    ),
    (
        "io.kestra.plugin.core.condition.ExecutionNamespaceCondition",
        "namespace",
    ),
    (
        "io.kestra.core.models.conditions.types.ExecutionNamespaceCondition",
        "namespace",
    ),
    ("io.kestra.plugin.core.condition.ExecutionStatus", "status"),
    (
        "io.kestra.plugin.core.condition.ExecutionStatusCondition",
        "status",
    ),
    (
        "io.kestra.core.models.conditions.types.ExecutionStatusCondition",
        "status",
    ),
];

fn flow_trigger_from(f: &mut Fields<'_>) -> Option<TriggerKind> {
    let states = state_list(f, "states");
    let inputs = f.object("inputs");
    let mut conditions = conditions_from(f);
    // Kestra's newer form: preconditions.flows (one upstream flow here).
    if let Some(value) = f.value("preconditions") {
        let path = f.field_path("preconditions");
        match value {
            Value::Object(map) => {
                let mut g = Fields::new(map, path, None, f.problems);
                preconditions_from(&mut g, &mut conditions);
                g.finish();
            }
            other => f.wrong_type("preconditions", "a mapping", &other),
        }
    }
    if conditions.is_empty() && !f.problem_at("conditions") {
        f.report(
            "conditions",
            ProblemKind::Field,
            "a Flow trigger needs `conditions` (or `preconditions`) naming the upstream flow or namespace".into(),
        );
        return None;
    }
    Some(TriggerKind::Flow(FlowTrigger {
        states,
        conditions,
        inputs,
    }))
}

/// A Flow trigger's `conditions`: a list, or (older flows) a mapping of
/// name to condition.
fn conditions_from(f: &mut Fields<'_>) -> Vec<FlowCondition> {
    let items: Vec<Value> = match f.take("conditions") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items,
        Some(Value::Object(map)) => map.into_iter().map(|(_, v)| v).collect(),
        Some(other) => {
            f.wrong_type("conditions", "a list of conditions", &other);
            Vec::new()
        }
    };
    let mut conditions = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let path = f.field_path(&format!("conditions[{i}]"));
        let Value::Object(map) = item else {
            f.problems.push(problem(
                &path,
                None,
                ProblemKind::Field,
                "a condition must be a mapping".into(),
            ));
            continue;
        };
        let mut g = Fields::new(map, path, None, f.problems);
        conditions.extend(condition_from(&mut g));
        g.finish();
    }
    conditions
}

fn condition_from(g: &mut Fields<'_>) -> Option<FlowCondition> {
    let kind = g.required_string("type");
    let known = CONDITION_TYPES.iter().find(|(name, _)| *name == kind);
    match known.map(|(_, k)| *k) {
        Some("flow") => {
            let namespace = g.required_string("namespace");
            let flow_id = g.required_string("flowId");
            Some(FlowCondition::Flow { namespace, flow_id })
        }
        Some("namespace") => {
            let namespace = g.required_string("namespace");
            let prefix = g.bool("prefix", false);
            Some(FlowCondition::Namespace { namespace, prefix })
        }
        Some(_) => {
            let within = state_list(g, "in");
            let except = state_list(g, "notIn");
            Some(FlowCondition::Status { within, except })
        }
        None if kind.is_empty() => None,
        None => {
            let supported: Vec<&str> = CONDITION_TYPES
                .iter()
                .filter(|(name, _)| name.starts_with("io.kestra.plugin"))
                .map(|(name, _)| *name)
                .collect();
            g.report(
                "type",
                ProblemKind::Unsupported,
                format!(
                    "this condition type is not supported; supported: {}",
                    supported.join(", ")
                ),
            );
            g.map.clear();
            None
        }
    }
}

/// `preconditions.flows`, as conditions (one upstream flow is supported).
fn preconditions_from(g: &mut Fields<'_>, conditions: &mut Vec<FlowCondition>) {
    let _id = g.string("id");
    let flows = g.list("flows");
    if flows.len() > 1 {
        g.report(
            "flows",
            ProblemKind::Unsupported,
            "preconditions on several flows (all within a time window) are not supported yet; use one".into(),
        );
    }
    for (i, item) in flows.into_iter().enumerate() {
        let path = g.field_path(&format!("flows[{i}]"));
        let Value::Object(map) = item else {
            g.report(
                &format!("flows[{i}]"),
                ProblemKind::Field,
                "must be a mapping with namespace, flowId and states".into(),
            );
            continue;
        };
        let mut h = Fields::new(map, path, None, g.problems);
        let namespace = h.required_string("namespace");
        let flow_id = h.string("flowId");
        let within = state_list(&mut h, "states");
        h.finish();
        match flow_id {
            Some(flow_id) => conditions.push(FlowCondition::Flow { namespace, flow_id }),
            None => conditions.push(FlowCondition::Namespace {
                namespace,
                prefix: false,
            }),
        }
        if !within.is_empty() {
            conditions.push(FlowCondition::Status {
                within,
                except: Vec::new(),
            });
        }
    }
}

/// Shortest webhook key accepted: the key is the only secret of the URL.
const MIN_WEBHOOK_KEY: usize = 8;

fn webhook_from(f: &mut Fields<'_>) -> Option<TriggerKind> {
    let key = f.required_string("key");
    let wait = f.bool("wait", false);
    let return_outputs = f.bool("returnOutputs", false);
    let inputs = f.object("inputs");
    if key.is_empty() {
        return None;
    }
    let key_ok = key.len() >= MIN_WEBHOOK_KEY
        && key.len() <= 256
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.~".contains(c));
    if !key_ok {
        // The key is a secret: it is never echoed.
        f.report(
            "key",
            ProblemKind::Field,
            format!(
                "must be {MIN_WEBHOOK_KEY} to 256 URL-safe characters (letters, digits, `-`, `_`, `.`, `~`)"
            ),
        );
        return None;
    }
    Some(TriggerKind::Webhook(WebhookTrigger {
        key,
        wait,
        return_outputs,
        inputs,
    }))
}
