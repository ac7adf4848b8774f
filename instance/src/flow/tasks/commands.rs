//! `io.kestra.plugin.scripts.shell.Commands`: shell commands run as a local
//! process, in a fresh working directory and a minimal environment.

use std::process::Stdio;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::{Context, TaskType, strings_in};
use crate::flow::error::ProblemKind;
use crate::flow::model::LogLevel;
use crate::flow::parse::Fields;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Commands {
    pub commands: Vec<String>,
    pub before_commands: Vec<String>,
    pub interpreter: Vec<String>,
    pub env: Map<String, Value>,
}

impl TaskType for Commands {
    const NAME: &'static str = "io.kestra.plugin.scripts.shell.Commands";

    fn parse(f: &mut Fields<'_>) -> Self {
        let present = f.has("commands");
        let commands = f.strings("commands");
        if !present {
            f.missing("commands");
        } else if commands.is_empty() && !f.problem_at("commands") {
            f.report(
                "commands",
                ProblemKind::Field,
                "must hold at least one command".into(),
            );
        }
        let before_commands = f.strings("beforeCommands");
        let mut interpreter = f.strings("interpreter");
        if interpreter.is_empty() {
            interpreter = vec!["/bin/sh".into(), "-c".into()];
        }
        let env = f.object("env");
        // Commands always run as local processes; a process task runner is the
        // only one that can be asked for.
        if let Some(runner) = f.value("taskRunner") {
            let kind = runner.get("type").and_then(Value::as_str).unwrap_or("");
            if kind != "io.kestra.plugin.core.runner.Process" {
                f.report(
                    "taskRunner",
                    ProblemKind::Unsupported,
                    format!(
                        "task runner `{kind}` is not supported; commands run as local processes (io.kestra.plugin.core.runner.Process)"
                    ),
                );
            }
        }
        Commands {
            commands,
            before_commands,
            interpreter,
            env,
        }
    }

    fn templates(&self) -> Vec<(&'static str, &str)> {
        let mut out: Vec<_> = self
            .commands
            .iter()
            .map(|c| ("commands", c.as_str()))
            .collect();
        out.extend(
            self.before_commands
                .iter()
                .map(|c| ("beforeCommands", c.as_str())),
        );
        for value in self.env.values() {
            out.extend(strings_in(value).into_iter().map(|s| ("env", s)));
        }
        out
    }

    async fn run(&self, cx: &Context<'_>) -> Result<Map<String, Value>, String> {
        let mut command = self.command(cx).await?;
        // Each attempt runs in a fresh working directory, removed afterwards.
        let workdir =
            std::env::temp_dir().join(format!("atoll-task-{}-{}", cx.task_run_id, cx.attempt));
        std::fs::create_dir_all(&workdir)
            .map_err(|e| format!("cannot create the working directory: {}", e.kind()))?;
        let _cleanup = RemoveOnDrop(workdir.clone());
        command.current_dir(&workdir);
        let mut child = command.spawn().map_err(|e| {
            let program = self.interpreter.first().map_or("", String::as_str);
            format!("cannot start `{program}`: {}", e.kind())
        })?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let err_logs = cx.logs.clone();
        let stderr_task = tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                err_logs(LogLevel::Warn, line);
            }
        });
        let mut vars = Map::new();
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            match output_line(&line) {
                Some(outputs) => vars.extend(outputs),
                None => cx.log(LogLevel::Info, line),
            }
        }
        let status = child
            .wait()
            .await
            .map_err(|e| format!("waiting for the command failed: {e}"))?;
        let _ = stderr_task.await;
        let code = status.code().unwrap_or(-1);
        if !status.success() {
            return Err(format!("command exited with code {code}"));
        }
        let mut outputs = Map::new();
        outputs.insert("exitCode".into(), Value::from(code));
        outputs.insert("vars".into(), Value::Object(vars));
        Ok(outputs)
    }
}

impl Commands {
    /// The process to start: the interpreter given the rendered script, in
    /// an environment of its own.
    async fn command(&self, cx: &Context<'_>) -> Result<tokio::process::Command, String> {
        let mut script = String::new();
        for line in self.before_commands.iter().chain(&self.commands) {
            script.push_str(&cx.render(line).await?);
            script.push('\n');
        }
        let (program, args) = self
            .interpreter
            .split_first()
            .ok_or("the interpreter is empty")?;
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // The command starts from an empty environment: nothing of the
        // instance's (its database URL, secrets mapped into it) is inherited,
        // only a few harmless variables and what the task declares.
        command.env_clear();
        for (key, value) in inherited_env(|name| std::env::var_os(name)) {
            command.env(key, value);
        }
        for (key, value) in &self.env {
            let text = match value {
                Value::String(s) => cx.render(s).await?,
                other => other.to_string(),
            };
            command.env(key, text);
        }
        Ok(command)
    }
}

/// `::{"outputs": {...}}::` lines set outputs, as Kestra's script tasks do.
fn output_line(line: &str) -> Option<Map<String, Value>> {
    let inner = line.trim().strip_prefix("::")?.strip_suffix("::")?;
    let value: Value = serde_json::from_str(inner).ok()?;
    match value.get("outputs") {
        Some(Value::Object(map)) => Some(map.clone()),
        _ => None,
    }
}

/// Variables a command inherits from the instance; nothing else is.
const INHERITED_ENV: &[&str] = &["PATH", "HOME", "LANG", "TZ"];

/// `PATH` when the instance has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The environment a command starts with, from the instance's own.
fn inherited_env(
    lookup: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Vec<(&'static str, std::ffi::OsString)> {
    let mut env: Vec<_> = INHERITED_ENV
        .iter()
        .filter_map(|&name| lookup(name).map(|value| (name, value)))
        .collect();
    if !env.iter().any(|(name, _)| *name == "PATH") {
        env.push(("PATH", DEFAULT_PATH.into()));
    }
    env
}

/// Removes a directory tree when dropped (also when the attempt is aborted).
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_inherit_only_harmless_variables() {
        let instance = |name: &str| match name {
            "PATH" => Some("/opt/bin:/usr/bin".into()),
            "HOME" => Some("/home/atoll".into()),
            "ATOLL_DATABASE_URL" => Some("postgres://u:secret@db/x".into()),
            "AWS_SECRET_ACCESS_KEY" => Some("secret".into()),
            _ => None,
        };
        let env = inherited_env(instance);
        let names: Vec<&str> = env.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["PATH", "HOME"]);
        // Without a PATH of its own, commands still find the usual programs.
        let env = inherited_env(|_| None);
        assert_eq!(env, vec![("PATH", DEFAULT_PATH.into())]);
    }

    #[test]
    fn output_lines_are_recognised() {
        let outputs = output_line(r#"::{"outputs":{"n":1,"s":"x"}}::"#);
        assert_eq!(
            outputs.map(Value::Object),
            Some(serde_json::json!({"n": 1, "s": "x"}))
        );
        assert_eq!(output_line("::not json::"), None);
        assert_eq!(output_line("plain"), None);
    }
}
