//! The task types this engine runs, under Kestra's names and older aliases.

use super::error::ProblemKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskType {
    Log,
    Return,
    OutputValues,
    Fail,
    Sleep,
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
    Commands,
    HttpRequest,
}

/// (canonical name, older aliases, type).
const TASK_TYPES: &[(&str, &[&str], TaskType)] = &[
    (
        "io.kestra.plugin.core.log.Log",
        &["io.kestra.core.tasks.log.Log"],
        TaskType::Log,
    ),
    (
        "io.kestra.plugin.core.debug.Return",
        &["io.kestra.core.tasks.debugs.Return"],
        TaskType::Return,
    ),
    (
        "io.kestra.plugin.core.output.OutputValues",
        &["io.kestra.core.tasks.outputs.OutputValues"],
        TaskType::OutputValues,
    ),
    (
        "io.kestra.plugin.core.execution.Fail",
        &["io.kestra.core.tasks.executions.Fail"],
        TaskType::Fail,
    ),
    (
        "io.kestra.plugin.core.flow.Sleep",
        &["io.kestra.core.tasks.flows.Sleep"],
        TaskType::Sleep,
    ),
    (
        "io.kestra.plugin.core.flow.Sequential",
        &["io.kestra.core.tasks.flows.Sequential"],
        TaskType::Sequential,
    ),
    (
        "io.kestra.plugin.core.flow.Parallel",
        &["io.kestra.core.tasks.flows.Parallel"],
        TaskType::Parallel,
    ),
    (
        "io.kestra.plugin.core.flow.AllowFailure",
        &["io.kestra.core.tasks.flows.AllowFailure"],
        TaskType::AllowFailure,
    ),
    (
        "io.kestra.plugin.core.flow.If",
        &["io.kestra.core.tasks.flows.If"],
        TaskType::If,
    ),
    (
        "io.kestra.plugin.core.flow.Switch",
        &["io.kestra.core.tasks.flows.Switch"],
        TaskType::Switch,
    ),
    ("io.kestra.plugin.core.flow.ForEach", &[], TaskType::ForEach),
    (
        "io.kestra.plugin.core.flow.EachSequential",
        &["io.kestra.core.tasks.flows.EachSequential"],
        TaskType::EachSequential,
    ),
    (
        "io.kestra.plugin.core.flow.EachParallel",
        &["io.kestra.core.tasks.flows.EachParallel"],
        TaskType::EachParallel,
    ),
    (
        "io.kestra.plugin.core.flow.Dag",
        &["io.kestra.core.tasks.flows.Dag"],
        TaskType::Dag,
    ),
    (
        "io.kestra.plugin.core.flow.Subflow",
        &[
            "io.kestra.core.tasks.flows.Subflow",
            "io.kestra.core.tasks.flows.Flow",
        ],
        TaskType::Subflow,
    ),
    ("io.kestra.plugin.core.execution.Exit", &[], TaskType::Exit),
    (
        "io.kestra.plugin.core.flow.Pause",
        &["io.kestra.core.tasks.flows.Pause"],
        TaskType::Pause,
    ),
    (
        "io.kestra.plugin.scripts.shell.Commands",
        &[],
        TaskType::Commands,
    ),
    (
        "io.kestra.plugin.core.http.Request",
        &["io.kestra.plugin.fs.http.Request"],
        TaskType::HttpRequest,
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
    TASK_TYPES.iter().map(|(name, _, _)| *name)
}

pub(crate) fn lookup_task_type(name: &str) -> Result<TaskType, (ProblemKind, String)> {
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
