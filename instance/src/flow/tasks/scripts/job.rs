//! From a script task's properties to the [`ScriptJob`] a runner takes:
//! the runner and image chosen, the script and environment rendered, the
//! input files gathered (inline contents, `kestra://` files, namespace
//! files).

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::Value;

use super::files;
use super::properties::{ScriptProperties, TaskRunner};
use crate::config::RunnerKind;
use crate::flow::tasks::Context;
use crate::runner::ScriptJob;

/// The file a Python `Script` is written to, in the working directory.
pub const PYTHON_SCRIPT_FILE: &str = ".script.py";

/// Where `executionContext: true` writes the execution's context, as
/// Kestra does (read by `kestra.context` / `load_execution_context()`).
pub const EXECUTION_CONTEXT_FILE: &str = ".kestra-execution-context.json";

/// A stand-in for Kestra's `kestra` Python library (outputs, metrics,
/// logs, assets), given to Python tasks that import it and bring no
/// `kestra.py` of their own. When the task's Python has Kestra's library
/// installed, importing the stand-in gives that library instead.
const KESTRA_PY: &str = include_str!("kestra.py");

/// The language of a script task: its default image, how a `Script` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Shell,
    Python,
}

impl Language {
    /// Kestra's default `containerImage`.
    pub fn default_image(self) -> &'static str {
        match self {
            Language::Shell => "ubuntu",
            Language::Python => "python:3.13-slim",
        }
    }
}

/// What the task runs: commands, or one script.
#[derive(Debug, Clone, Copy)]
pub enum Body<'s> {
    Commands(&'s [String]),
    Script(&'s str),
}

/// The job of one attempt, and the runner to run it on.
pub async fn build(
    cx: &Context<'_>,
    props: &ScriptProperties,
    language: Language,
    body: Body<'_>,
) -> Result<(ScriptJob, RunnerKind), String> {
    let settings = &cx.services.settings;
    let (kind, resources) = match &props.task_runner {
        TaskRunner::Default => (settings.runner, settings.resources.clone()),
        TaskRunner::Process => (RunnerKind::Process, BTreeMap::new()),
        TaskRunner::Kubernetes { resources } if resources.is_empty() => {
            (RunnerKind::Kubernetes, settings.resources.clone())
        }
        TaskRunner::Kubernetes { resources } => (RunnerKind::Kubernetes, resources.clone()),
    };
    let image = match &props.container_image {
        Some(image) => cx.render(image).await?,
        None => settings
            .image
            .clone()
            .unwrap_or_else(|| language.default_image().to_owned()),
    };
    let mut input_files = BTreeMap::new();
    if props.namespace_files.enabled {
        input_files.extend(files::namespace_files(cx, &props.namespace_files).await?);
    }
    input_files.extend(files::input_files(cx, &props.input_files).await?);
    if props.execution_context {
        input_files.insert(EXECUTION_CONTEXT_FILE.into(), execution_context(cx));
    }
    let script = script(cx, props, language, body, &mut input_files).await?;
    let script = files::localize_uris(cx, script, &mut input_files).await?;
    let mut env = BTreeMap::new();
    for (key, value) in &props.env {
        let text = match value {
            Value::String(s) => cx.render(s).await?,
            other => other.to_string(),
        };
        env.insert(key.clone(), text);
    }
    let timeout = match kind {
        RunnerKind::Process => cx.timeout,
        RunnerKind::Kubernetes => cx.timeout.or(settings.timeout),
    };
    let job = ScriptJob {
        namespace: cx.namespace.to_owned(),
        flow_id: cx.flow_id.to_owned(),
        execution_id: cx.execution_id.to_owned(),
        task_id: cx.task.id.clone(),
        task_run_id: cx.task_run_id.to_owned(),
        attempt: cx.attempt,
        image,
        interpreter: props.interpreter(),
        script,
        env,
        input_files,
        output_files: props.output_files.clone(),
        resources,
        timeout,
    };
    Ok((job, kind))
}

/// The script the interpreter runs: `beforeCommands`, then the commands or
/// the script, rendered. A Python script goes to a file of its own (and
/// Kestra's `kestra` module beside it when imported).
async fn script(
    cx: &Context<'_>,
    props: &ScriptProperties,
    language: Language,
    body: Body<'_>,
    input_files: &mut BTreeMap<String, Bytes>,
) -> Result<String, String> {
    let mut lines = Vec::new();
    for command in &props.before_commands {
        lines.push(cx.render(command).await?);
    }
    match (body, language) {
        (Body::Commands(commands), _) => {
            for command in commands {
                lines.push(cx.render(command).await?);
            }
        }
        (Body::Script(script), Language::Shell) => lines.push(cx.render(script).await?),
        (Body::Script(script), Language::Python) => {
            let script = cx.render(script).await?;
            input_files.insert(PYTHON_SCRIPT_FILE.into(), Bytes::from(script));
            lines.push(format!("python3 {PYTHON_SCRIPT_FILE}"));
        }
    }
    let mut script = lines.join("\n");
    script.push('\n');
    if language == Language::Python
        && !input_files.contains_key("kestra.py")
        && imports_kestra(&script, input_files)
    {
        input_files.insert("kestra.py".into(), Bytes::from_static(KESTRA_PY.as_bytes()));
    }
    Ok(script)
}

/// The execution's context as JSON (flow, execution, inputs, outputs,
/// labels, task, taskrun, vars, trigger...), the engine's own `__` values
/// left out.
fn execution_context(cx: &Context<'_>) -> Bytes {
    let context: atoll_expr::Map = cx
        .vars
        .iter()
        .filter(|(key, _)| !key.starts_with("__"))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    Bytes::from(atoll_expr::Value::map(context).to_json())
}

/// Whether `name` is a file written for the script (the Python script's
/// file, Kestra's module, the execution context, files fetched for
/// `kestra://` URIs), not one the script made.
pub fn is_ours(language: Language, name: &str, content: &[u8]) -> bool {
    let python = language == Language::Python
        && (name == PYTHON_SCRIPT_FILE || (name == "kestra.py" && content == KESTRA_PY.as_bytes()));
    python || name == EXECUTION_CONTEXT_FILE || name.starts_with(files::FETCHED_DIR)
}

/// Whether the script or one of its Python files imports `kestra`.
fn imports_kestra(script: &str, files: &BTreeMap<String, Bytes>) -> bool {
    let imports = |text: &[u8]| {
        let text = String::from_utf8_lossy(text);
        text.contains("from kestra import") || text.contains("import kestra")
    };
    imports(script.as_bytes())
        || files
            .iter()
            .any(|(name, content)| name.ends_with(".py") && imports(content))
}
