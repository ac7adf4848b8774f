//! The properties every script task shares (`containerImage`,
//! `beforeCommands`, `interpreter`, `env`, `inputFiles`, `outputFiles`,
//! `namespaceFiles`, `warningOnStdErr`, `taskRunner`), read from YAML.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::flow::error::ProblemKind;
use crate::flow::parse::Fields;
use crate::flow::tasks::strings_in;
use crate::runner::check_relative;

/// Kestra's task runner types, by what they mean here.
const PROCESS_RUNNERS: &[&str] = &[
    "io.kestra.plugin.core.runner.Process",
    "io.kestra.core.models.tasks.runners.types.ProcessTaskRunner",
];
const KUBERNETES_RUNNERS: &[&str] = &[
    "io.kestra.plugin.ee.kubernetes.runner.Kubernetes",
    "io.kestra.plugin.kubernetes.runner.Kubernetes",
];
/// A container of the task's image: here, the tenant's default runner.
const DOCKER_RUNNERS: &[&str] = &[
    "io.kestra.plugin.scripts.runner.docker.Docker",
    "io.kestra.plugin.scripts.runner.docker.DockerTaskRunner",
];

/// Where the task asks to run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub enum TaskRunner {
    /// The tenant's default runner (no `taskRunner`, or a Docker one).
    #[default]
    Default,
    Process,
    /// One pod per attempt, with the task's own resources (`requests` /
    /// `limits` → resource → quantity; empty: the tenant's default).
    Kubernetes {
        resources: BTreeMap<String, BTreeMap<String, String>>,
    },
}

/// `namespaceFiles`: the namespace's files written into the working
/// directory (all of them, or those matching `include` and not `exclude`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NamespaceFiles {
    pub enabled: bool,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

/// The properties every script task shares.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScriptProperties {
    /// `containerImage` (or the legacy `docker.image`), a template.
    pub container_image: Option<String>,
    pub before_commands: Vec<String>,
    /// Empty: `["/bin/sh", "-c"]`.
    pub interpreter: Vec<String>,
    pub env: Map<String, Value>,
    /// A mapping of file name → content or `kestra://` URI, or a template
    /// that renders to such a mapping as JSON.
    pub input_files: Value,
    pub output_files: Vec<String>,
    pub namespace_files: NamespaceFiles,
    /// Stderr lines are logged as warnings (else as info).
    pub warning_on_std_err: bool,
    pub task_runner: TaskRunner,
    /// `executionContext`: the execution's context written to
    /// `.kestra-execution-context.json` in the working directory, for
    /// Kestra's library (`from kestra import context`).
    #[serde(default)]
    pub execution_context: bool,
}

/// The interpreter of script tasks that name none.
pub const DEFAULT_INTERPRETER: [&str; 2] = ["/bin/sh", "-c"];

impl ScriptProperties {
    /// Reads the shared properties; problems go to `f`.
    pub(crate) fn parse(f: &mut Fields<'_>) -> ScriptProperties {
        let mut container_image = f.string("containerImage");
        if let Some(Value::Object(docker)) = f.value("docker")
            && container_image.is_none()
        {
            container_image = docker.get("image").and_then(Value::as_str).map(Into::into);
        }
        let before_commands = f.strings("beforeCommands");
        let interpreter = f.strings("interpreter");
        let env = f.object("env");
        let input_files = input_files(f);
        let output_files = f.strings("outputFiles");
        let namespace_files = namespace_files(f);
        let warning_on_std_err = f.bool("warningOnStdErr", true);
        let task_runner = task_runner(f);
        let execution_context = f.bool("executionContext", false);
        ScriptProperties {
            container_image,
            before_commands,
            interpreter,
            env,
            input_files,
            output_files,
            namespace_files,
            warning_on_std_err,
            task_runner,
            execution_context,
        }
    }

    /// The template-bearing properties.
    pub fn templates<'a>(&'a self, out: &mut Vec<(&'static str, &'a str)>) {
        out.extend(
            self.before_commands
                .iter()
                .map(|c| ("beforeCommands", c.as_str())),
        );
        if let Some(image) = &self.container_image {
            out.push(("containerImage", image));
        }
        for value in self.env.values() {
            out.extend(strings_in(value).into_iter().map(|s| ("env", s)));
        }
        out.extend(
            strings_in(&self.input_files)
                .into_iter()
                .map(|s| ("inputFiles", s)),
        );
    }

    /// The interpreter and its first arguments.
    pub fn interpreter(&self) -> Vec<String> {
        if self.interpreter.is_empty() {
            DEFAULT_INTERPRETER.iter().map(|&s| s.to_owned()).collect()
        } else {
            self.interpreter.clone()
        }
    }
}

/// `inputFiles`: a mapping whose names are checked here, or a template.
fn input_files(f: &mut Fields<'_>) -> Value {
    match f.value("inputFiles") {
        None => Value::Null,
        Some(Value::Object(map)) => {
            for (name, content) in &map {
                if let Err(reason) = check_relative(name) {
                    f.report(
                        &format!("inputFiles.{name}"),
                        ProblemKind::Field,
                        reason.into(),
                    );
                } else if !content.is_string() {
                    f.wrong_type(&format!("inputFiles.{name}"), "a string", content);
                }
            }
            Value::Object(map)
        }
        Some(Value::String(text)) => Value::String(text),
        Some(other) => {
            f.wrong_type("inputFiles", "a mapping of file names to contents", &other);
            Value::Null
        }
    }
}

fn namespace_files(f: &mut Fields<'_>) -> NamespaceFiles {
    let Some(value) = f.value("namespaceFiles") else {
        return NamespaceFiles::default();
    };
    let Value::Object(map) = value else {
        f.wrong_type("namespaceFiles", "a mapping", &value);
        return NamespaceFiles::default();
    };
    let list = |key: &str| -> Vec<String> {
        match map.get(key) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|i| i.as_str().map(Into::into))
                .collect(),
            Some(Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        }
    };
    NamespaceFiles {
        // Kestra's default: `enabled: true` once `namespaceFiles` is given.
        enabled: map.get("enabled").and_then(Value::as_bool).unwrap_or(true),
        include: list("include"),
        exclude: list("exclude"),
    }
}

/// `taskRunner: {type: ...}`, or Kestra's legacy `runner: PROCESS|DOCKER`.
fn task_runner(f: &mut Fields<'_>) -> TaskRunner {
    if let Some(legacy) = f.string("runner") {
        return match legacy.as_str() {
            "PROCESS" => TaskRunner::Process,
            "DOCKER" => TaskRunner::Default,
            _ => {
                let message = "must be PROCESS or DOCKER".to_owned();
                f.report("runner", ProblemKind::Field, message);
                TaskRunner::Default
            }
        };
    }
    let Some(value) = f.value("taskRunner") else {
        return TaskRunner::Default;
    };
    let kind = value.get("type").and_then(Value::as_str).unwrap_or("");
    if PROCESS_RUNNERS.contains(&kind) {
        TaskRunner::Process
    } else if KUBERNETES_RUNNERS.contains(&kind) {
        match value.get("resources").map(resources) {
            None => TaskRunner::Kubernetes {
                resources: BTreeMap::new(),
            },
            Some(Ok(resources)) => TaskRunner::Kubernetes { resources },
            Some(Err(message)) => {
                f.report("taskRunner.resources", ProblemKind::Field, message);
                TaskRunner::Default
            }
        }
    } else if DOCKER_RUNNERS.contains(&kind) {
        TaskRunner::Default
    } else {
        f.report(
            "taskRunner",
            ProblemKind::Unsupported,
            format!(
                "task runner `{kind}` is not supported; use io.kestra.plugin.core.runner.Process \
                 or io.kestra.plugin.ee.kubernetes.runner.Kubernetes"
            ),
        );
        TaskRunner::Default
    }
}

/// A Kubernetes task runner's `resources`: Kestra writes `request` and
/// `limit` (`{request: {cpu: 500m, memory: 1Gi}}`); `requests` and
/// `limits` are read too.
fn resources(value: &Value) -> Result<BTreeMap<String, BTreeMap<String, String>>, String> {
    let expected = || {
        "expected {request: {cpu: ..., memory: ...}, limit: {...}} with quantities such as 500m or 1Gi"
            .to_owned()
    };
    let Value::Object(map) = value else {
        return Err(expected());
    };
    let mut out = BTreeMap::new();
    for (key, amounts) in map {
        let key = match key.as_str() {
            "request" | "requests" => "requests",
            "limit" | "limits" => "limits",
            _ => return Err(expected()),
        };
        let Value::Object(amounts) = amounts else {
            return Err(expected());
        };
        let entry: &mut BTreeMap<String, String> = out.entry(key.to_owned()).or_default();
        for (resource, quantity) in amounts {
            let quantity = match quantity {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return Err(expected()),
            };
            let valid = !quantity.is_empty()
                && quantity.len() <= 64
                && quantity
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.');
            if !valid {
                return Err(expected());
            }
            entry.insert(resource.clone(), quantity);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kestra_resources_are_read() {
        let r =
            resources(&json!({"request": {"cpu": "500m", "memory": "1Gi"}, "limit": {"cpu": 1}}))
                .expect("resources");
        assert_eq!(r["requests"]["cpu"], "500m");
        assert_eq!(r["limits"]["cpu"], "1");
        assert!(resources(&json!({"request": {"cpu": "1; rm -rf"}})).is_err());
        assert!(resources(&json!({"quota": {}})).is_err());
    }
}
