//! Kestra's script tasks: `io.kestra.plugin.scripts.shell.Commands` and
//! `.shell.Script`, `io.kestra.plugin.scripts.python.Commands` and
//! `.python.Script`. Each attempt is a [`ScriptJob`](crate::runner::ScriptJob)
//! run by the task's runner (`taskRunner`, else the tenant's default): a
//! local process, or a pod of its own. Their properties are read in
//! [`properties`], the job built in [`job`], and what the script gave
//! (logs, `::{"outputs":...}::` lines, output files, exit code) read in
//! [`outputs`].

mod files;
mod job;
mod messages;
mod outputs;
mod properties;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Context, TaskType};
use crate::flow::error::ProblemKind;
use crate::flow::parse::Fields;

use job::{Body, Language};
pub use properties::{NamespaceFiles, ScriptProperties, TaskRunner};

/// `io.kestra.plugin.scripts.shell.Commands`: shell commands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Commands {
    pub commands: Vec<String>,
    pub properties: ScriptProperties,
}

/// `io.kestra.plugin.scripts.shell.Script`: an inline shell script.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShellScript {
    pub script: String,
    pub properties: ScriptProperties,
}

/// `io.kestra.plugin.scripts.python.Commands`: shell commands in a Python
/// image (`python main.py`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PythonCommands {
    pub commands: Vec<String>,
    pub properties: ScriptProperties,
}

/// `io.kestra.plugin.scripts.python.Script`: an inline Python script,
/// written to a file and run with `python3`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PythonScript {
    pub script: String,
    pub properties: ScriptProperties,
}

impl TaskType for Commands {
    const NAME: &'static str = "io.kestra.plugin.scripts.shell.Commands";

    fn parse(f: &mut Fields<'_>) -> Self {
        let commands = commands(f);
        let properties = ScriptProperties::parse(f);
        Commands {
            commands,
            properties,
        }
    }

    fn templates(&self) -> Vec<(&'static str, &str)> {
        commands_templates(&self.commands, &self.properties)
    }

    async fn run(&self, cx: &Context<'_>) -> Result<Map<String, Value>, String> {
        run(
            cx,
            &self.properties,
            Language::Shell,
            Body::Commands(&self.commands),
        )
        .await
    }
}

impl TaskType for ShellScript {
    const NAME: &'static str = "io.kestra.plugin.scripts.shell.Script";

    fn parse(f: &mut Fields<'_>) -> Self {
        let script = script(f);
        let properties = ScriptProperties::parse(f);
        ShellScript { script, properties }
    }

    fn templates(&self) -> Vec<(&'static str, &str)> {
        script_templates(&self.script, &self.properties)
    }

    async fn run(&self, cx: &Context<'_>) -> Result<Map<String, Value>, String> {
        run(
            cx,
            &self.properties,
            Language::Shell,
            Body::Script(&self.script),
        )
        .await
    }
}

impl TaskType for PythonCommands {
    const NAME: &'static str = "io.kestra.plugin.scripts.python.Commands";

    fn parse(f: &mut Fields<'_>) -> Self {
        let commands = commands(f);
        let properties = ScriptProperties::parse(f);
        PythonCommands {
            commands,
            properties,
        }
    }

    fn templates(&self) -> Vec<(&'static str, &str)> {
        commands_templates(&self.commands, &self.properties)
    }

    async fn run(&self, cx: &Context<'_>) -> Result<Map<String, Value>, String> {
        let body = Body::Commands(&self.commands);
        run(cx, &self.properties, Language::Python, body).await
    }
}

impl TaskType for PythonScript {
    const NAME: &'static str = "io.kestra.plugin.scripts.python.Script";

    fn parse(f: &mut Fields<'_>) -> Self {
        let script = script(f);
        let properties = ScriptProperties::parse(f);
        PythonScript { script, properties }
    }

    fn templates(&self) -> Vec<(&'static str, &str)> {
        script_templates(&self.script, &self.properties)
    }

    async fn run(&self, cx: &Context<'_>) -> Result<Map<String, Value>, String> {
        let body = Body::Script(&self.script);
        run(cx, &self.properties, Language::Python, body).await
    }
}

/// `commands`: required, at least one.
fn commands(f: &mut Fields<'_>) -> Vec<String> {
    let present = f.has("commands");
    let commands = f.strings("commands");
    if !present {
        f.missing("commands");
    } else if commands.is_empty() && !f.problem_at("commands") {
        let message = "must hold at least one command".into();
        f.report("commands", ProblemKind::Field, message);
    }
    commands
}

/// `script`: required, not empty.
fn script(f: &mut Fields<'_>) -> String {
    let script = f.required_string("script");
    if script.trim().is_empty() && !f.problem_at("script") {
        f.report("script", ProblemKind::Field, "must not be empty".into());
    }
    script
}

fn commands_templates<'a>(
    commands: &'a [String],
    properties: &'a ScriptProperties,
) -> Vec<(&'static str, &'a str)> {
    let mut out: Vec<_> = commands.iter().map(|c| ("commands", c.as_str())).collect();
    properties.templates(&mut out);
    out
}

fn script_templates<'a>(
    script: &'a str,
    properties: &'a ScriptProperties,
) -> Vec<(&'static str, &'a str)> {
    let mut out = vec![("script", script)];
    properties.templates(&mut out);
    out
}

/// One attempt of a script task: the job built and run on its runner, the
/// script's lines logged, its outputs and output files gathered. A script
/// that exits with another code than 0 fails the attempt with that code
/// (nothing of its output: that is in the logs).
async fn run(
    cx: &Context<'_>,
    props: &ScriptProperties,
    language: Language,
    body: Body<'_>,
) -> Result<Map<String, Value>, String> {
    // `{{ workingDir }}`: the script runs in its working directory.
    let with_working_dir;
    let cx = if mentions_working_dir(props, body) {
        let mut vars = cx.vars.clone();
        vars.insert("workingDir".into(), atoll_expr::Value::from("."));
        with_working_dir = vars;
        &Context {
            vars: &with_working_dir,
            ..*cx
        }
    } else {
        cx
    };
    let (job, kind) = job::build(cx, props, language, body).await?;
    let reader = outputs::LineReader::new(cx, props.warning_on_std_err);
    let lines = |stream, line| reader.line(stream, line);
    let outcome = cx.services.run(kind, &job, &lines).await?;
    if outcome.exit_code != 0 {
        return Err(format!("command exited with code {}", outcome.exit_code));
    }
    let mut files = outcome.output_files;
    // The files written for the script are no outputs, even when a pattern
    // matches them.
    files.retain(|name, content| !job::is_ours(language, name, content));
    let uris = outputs::store_files(cx, files).await?;
    let mut out = Map::new();
    out.insert("exitCode".into(), Value::from(outcome.exit_code));
    out.insert("vars".into(), Value::Object(reader.into_vars()));
    if !props.output_files.is_empty() {
        out.insert("outputFiles".into(), Value::Object(uris));
    }
    Ok(out)
}

/// Whether a template of the task names `workingDir`.
fn mentions_working_dir(props: &ScriptProperties, body: Body<'_>) -> bool {
    let mut templates = Vec::new();
    props.templates(&mut templates);
    let body: Vec<&str> = match body {
        Body::Commands(commands) => commands.iter().map(String::as_str).collect(),
        Body::Script(script) => vec![script],
    };
    templates
        .iter()
        .map(|(_, t)| *t)
        .chain(body)
        .any(|t| t.contains("workingDir"))
}
