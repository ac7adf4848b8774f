//! The names of the task types this engine runs (Kestra's names and older
//! aliases): the runnable ones come from their modules (`tasks/`), the
//! flowable ones (and those the driver interprets itself) are listed here.

use super::error::ProblemKind;
use super::tasks::RUNNABLE;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlowableType {
    Sequential,
    Parallel,
    AllowFailure,
    If,
    Switch,
    ForEach,
    EachSequential,
    EachParallel,
    Dag,
    Pause,
    Subflow,
    Exit,
}

/// (canonical name, older aliases, type).
const TASK_TYPES: &[(&str, &[&str], FlowableType)] = &[
    (
        "io.kestra.plugin.core.flow.Sequential",
        &["io.kestra.core.tasks.flows.Sequential"],
        FlowableType::Sequential,
    ),
    (
        "io.kestra.plugin.core.flow.Parallel",
        &["io.kestra.core.tasks.flows.Parallel"],
        FlowableType::Parallel,
    ),
    (
        "io.kestra.plugin.core.flow.AllowFailure",
        &["io.kestra.core.tasks.flows.AllowFailure"],
        FlowableType::AllowFailure,
    ),
    (
        "io.kestra.plugin.core.flow.If",
        &["io.kestra.core.tasks.flows.If"],
        FlowableType::If,
    ),
    (
        "io.kestra.plugin.core.flow.Switch",
        &["io.kestra.core.tasks.flows.Switch"],
        FlowableType::Switch,
    ),
    (
        "io.kestra.plugin.core.flow.ForEach",
        &[],
        FlowableType::ForEach,
    ),
    (
        "io.kestra.plugin.core.flow.EachSequential",
        &["io.kestra.core.tasks.flows.EachSequential"],
        FlowableType::EachSequential,
    ),
    (
        "io.kestra.plugin.core.flow.EachParallel",
        &["io.kestra.core.tasks.flows.EachParallel"],
        FlowableType::EachParallel,
    ),
    (
        "io.kestra.plugin.core.flow.Dag",
        &["io.kestra.core.tasks.flows.Dag"],
        FlowableType::Dag,
    ),
    (
        "io.kestra.plugin.core.flow.Subflow",
        &[
            "io.kestra.core.tasks.flows.Subflow",
            "io.kestra.core.tasks.flows.Flow",
        ],
        FlowableType::Subflow,
    ),
    (
        "io.kestra.plugin.core.execution.Exit",
        &[],
        FlowableType::Exit,
    ),
    (
        "io.kestra.plugin.core.flow.Pause",
        &["io.kestra.core.tasks.flows.Pause"],
        FlowableType::Pause,
    ),
];

/// Kestra types a user may reasonably write that this engine does not run
/// yet; refused with a message saying so rather than "unknown".
const NOT_YET: &[&str] = &[
    "io.kestra.plugin.core.flow.ForEachItem",
    "io.kestra.plugin.core.flow.WorkingDirectory",
];

/// The canonical names of every supported task type.
pub fn supported_task_types() -> impl Iterator<Item = &'static str> {
    RUNNABLE
        .iter()
        .map(|(name, _)| *name)
        .chain(TASK_TYPES.iter().map(|(name, _, _)| *name))
}

/// A flowable type by name; the error (for any name that is not a flowable
/// type) lists every supported type, runnable ones included.
pub(crate) fn lookup_task_type(name: &str) -> Result<FlowableType, (ProblemKind, String)> {
    if let Some((_, _, kind)) = TASK_TYPES
        .iter()
        .find(|(canonical, aliases, _)| *canonical == name || aliases.contains(&name))
    {
        return Ok(*kind);
    }
    let shown = shown_type(name);
    if NOT_YET.contains(&name) {
        return Err((
            ProblemKind::Unsupported,
            format!("task type {shown} is not supported yet"),
        ));
    }
    let supported: Vec<&str> = supported_task_types().collect();
    Err((
        ProblemKind::UnknownType,
        format!(
            "unknown task type {shown}; supported types: {}",
            supported.join(", ")
        ),
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TriggerType {
    Schedule,
    Webhook,
    Flow,
}

/// (canonical name, older aliases, type).
const TRIGGER_TYPES: &[(&str, &[&str], TriggerType)] = &[
    (
        "io.kestra.plugin.core.trigger.Schedule",
        &["io.kestra.core.models.triggers.types.Schedule"],
        TriggerType::Schedule,
    ),
    (
        "io.kestra.plugin.core.trigger.Webhook",
        &["io.kestra.core.models.triggers.types.Webhook"],
        TriggerType::Webhook,
    ),
    (
        "io.kestra.plugin.core.trigger.Flow",
        &["io.kestra.core.models.triggers.types.Flow"],
        TriggerType::Flow,
    ),
];

const TRIGGERS_NOT_YET: &[&str] = &[];

pub(crate) fn lookup_trigger_type(name: &str) -> Result<TriggerType, (ProblemKind, String)> {
    if let Some((_, _, kind)) = TRIGGER_TYPES
        .iter()
        .find(|(canonical, aliases, _)| *canonical == name || aliases.contains(&name))
    {
        return Ok(*kind);
    }
    let shown = shown_type(name);
    if TRIGGERS_NOT_YET.contains(&name) {
        return Err((
            ProblemKind::Unsupported,
            format!("trigger type {shown} is not supported yet"),
        ));
    }
    let supported: Vec<&str> = TRIGGER_TYPES.iter().map(|(n, _, _)| *n).collect();
    Err((
        ProblemKind::UnknownType,
        format!(
            "unknown trigger type {shown}; supported types: {}",
            supported.join(", ")
        ),
    ))
}

/// The name is echoed only when it looks like a type name, so a hostile
/// value cannot inject arbitrary text into messages and logs.
fn shown_type(name: &str) -> String {
    if name.len() <= 200
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
    {
        format!("`{name}`")
    } else {
        "(not a type name)".to_owned()
    }
}
