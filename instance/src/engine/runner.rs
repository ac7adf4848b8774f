//! Runnable tasks: what one attempt of a task does. Each attempt runs as its
//! own tokio task; its logs and result go back to the execution's driver.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::Semaphore;
use tokio::sync::mpsc::UnboundedSender;

use super::egress::{TaskHttp, blocked_cause};

use crate::execution::NewLog;
use crate::flow::{CommandsSpec, HttpRequestSpec, LogLevel, Task, TaskKind};
use crate::template::Templates;

/// What the driver hears from a running attempt.
#[derive(Debug)]
pub(crate) enum Event {
    Log(NewLog),
    Done {
        run_id: String,
        result: Result<Map<String, Value>, String>,
        /// Outputs kept even when the attempt failed (a failed subflow's).
        partial: Map<String, Value>,
    },
}

/// Where an attempt's log lines go.
#[derive(Debug, Clone)]
pub(crate) struct LogSink {
    pub execution_id: String,
    pub task_run_id: String,
    pub task_id: String,
    pub attempt: i64,
    pub events: UnboundedSender<Event>,
}

impl LogSink {
    /// Logs a line, cut at [`MAX_LINE`] bytes.
    pub fn log(&self, level: LogLevel, message: impl Into<String>) {
        let message = truncate(message.into());
        let _ = self.events.send(Event::Log(NewLog {
            execution_id: self.execution_id.clone(),
            task_run_id: Some(self.task_run_id.clone()),
            task_id: Some(self.task_id.clone()),
            attempt_number: self.attempt,
            level: level.name().into(),
            message,
            timestamp: Timestamp::now(),
        }));
    }
}

/// Everything one attempt needs.
pub(crate) struct Attempt {
    pub task: Task,
    pub vars: minijinja::Value,
    pub templates: Arc<Templates>,
    pub http: TaskHttp,
    /// Task runs executing at once (`ATOLL_MAX_CONCURRENT_TASK_RUNS`).
    pub slots: Arc<Semaphore>,
    pub logs: LogSink,
}

/// Longest log line kept (longer lines, from a command's output or a Log
/// task, are cut).
pub(crate) const MAX_LINE: usize = 64 * 1024;

/// Runs the attempt within the task's timeout and reports the result. The
/// attempt first waits for one of the engine's task-run slots; the timeout
/// counts from when it starts executing.
pub(crate) async fn run(attempt: Attempt) {
    let run_id = attempt.logs.task_run_id.clone();
    let events = attempt.logs.events.clone();
    // Closed only if the engine is gone; run anyway then.
    let _slot = attempt.slots.clone().acquire_owned().await.ok();
    let result = match attempt.task.timeout {
        Some(limit) => match tokio::time::timeout(limit, execute(&attempt)).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "timed out after {}",
                jiff::SignedDuration::try_from(limit)
                    .map(|d| format!("{d:#}"))
                    .unwrap_or_else(|_| format!("{limit:?}"))
            )),
        },
        None => execute(&attempt).await,
    };
    let _ = events.send(Event::Done {
        run_id,
        result,
        partial: Map::new(),
    });
}

async fn execute(attempt: &Attempt) -> Result<Map<String, Value>, String> {
    let render = |text: &str| {
        attempt
            .templates
            .render(text, &attempt.vars)
            .map_err(|e| e.to_string())
    };
    let mut outputs = Map::new();
    match &attempt.task.kind {
        TaskKind::Log { messages, level } => {
            for message in messages {
                let text = render(message)?;
                attempt.logs.log(*level, text);
            }
        }
        TaskKind::Return { format } => {
            let value = match format {
                Some(format) => render(format)?,
                None => String::new(),
            };
            outputs.insert("value".into(), Value::String(value));
        }
        TaskKind::OutputValues { values } => {
            let rendered = attempt
                .templates
                .render_json(&Value::Object(values.clone()), &attempt.vars)
                .map_err(|e| e.to_string())?;
            outputs.insert("values".into(), rendered);
        }
        TaskKind::Fail {
            condition,
            error_message,
        } => {
            let fail = match condition {
                Some(condition) => is_truthy(&render(condition)?),
                None => true,
            };
            if fail {
                return Err(render(error_message)?);
            }
        }
        TaskKind::Sleep { duration } => tokio::time::sleep(*duration).await,
        TaskKind::Commands(spec) => return commands(attempt, spec).await,
        TaskKind::HttpRequest(spec) => return http_request(attempt, spec).await,
        _ => return Err("a flowable task has no attempt to run".into()),
    }
    Ok(outputs)
}

/// Kestra's truthiness of a rendered condition.
pub(crate) fn is_truthy(text: &str) -> bool {
    let text = text.trim();
    !(text.is_empty()
        || text.eq_ignore_ascii_case("false")
        || text == "0"
        || text == "-0"
        || text.eq_ignore_ascii_case("null"))
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

async fn commands(attempt: &Attempt, spec: &CommandsSpec) -> Result<Map<String, Value>, String> {
    let render = |text: &str| {
        attempt
            .templates
            .render(text, &attempt.vars)
            .map_err(|e| e.to_string())
    };
    let mut script = String::new();
    for line in spec.before_commands.iter().chain(&spec.commands) {
        script.push_str(&render(line)?);
        script.push('\n');
    }
    let (program, args) = spec
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
    for (key, value) in &spec.env {
        let text = match value {
            Value::String(s) => render(s)?,
            other => other.to_string(),
        };
        command.env(key, text);
    }
    // Each attempt runs in a fresh working directory, removed afterwards.
    let workdir = std::env::temp_dir().join(format!(
        "atoll-task-{}-{}",
        attempt.logs.task_run_id, attempt.logs.attempt
    ));
    std::fs::create_dir_all(&workdir)
        .map_err(|e| format!("cannot create the working directory: {}", e.kind()))?;
    let _cleanup = RemoveOnDrop(workdir.clone());
    command.current_dir(&workdir);
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start `{program}`: {}", e.kind()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let err_logs = attempt.logs.clone();
    let stderr_task = tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            err_logs.log(LogLevel::Warn, truncate(line));
        }
    });
    let mut vars = Map::new();
    let mut lines = BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        match output_line(&line) {
            Some(outputs) => vars.extend(outputs),
            None => attempt.logs.log(LogLevel::Info, truncate(line)),
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

fn truncate(mut line: String) -> String {
    if line.len() > MAX_LINE {
        let mut cut = MAX_LINE;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
    }
    line
}

/// Largest response body kept in outputs; the rest is not read.
const MAX_BODY: usize = 1024 * 1024;

async fn http_request(
    attempt: &Attempt,
    spec: &HttpRequestSpec,
) -> Result<Map<String, Value>, String> {
    let render = |text: &str| {
        attempt
            .templates
            .render(text, &attempt.vars)
            .map_err(|e| e.to_string())
    };
    let uri = render(&spec.uri)?;
    let url = reqwest::Url::parse(&uri).map_err(|e| format!("invalid uri: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("uri must be http or https".into());
    }
    let method = reqwest::Method::from_bytes(spec.method.as_bytes())
        .map_err(|_| format!("invalid method `{}`", spec.method))?;
    let client = attempt.http.client_for(&url)?;
    let mut request = client
        .request(method, url)
        .timeout(attempt.task.timeout.unwrap_or(Duration::from_secs(60)));
    for (name, value) in &spec.headers {
        let text = match value {
            Value::String(s) => render(s)?,
            other => other.to_string(),
        };
        request = request.header(name.as_str(), text);
    }
    if let Some(content_type) = &spec.content_type {
        request = request.header(reqwest::header::CONTENT_TYPE, render(content_type)?);
    }
    if let Some(body) = &spec.body {
        request = request.body(render(body)?);
    }
    // Errors from the client name the URL; keep only the kind of failure
    // (or the address refusal, which names the host and nothing else).
    let mut response = request.send().await.map_err(|e| {
        if let Some(refused) = blocked_cause(&e) {
            refused
        } else if e.is_timeout() {
            "request timed out".to_owned()
        } else if e.is_connect() {
            "cannot connect to the server".to_owned()
        } else if e.is_redirect() {
            "too many redirects".to_owned()
        } else {
            "request failed".to_owned()
        }
    })?;
    let code = response.status().as_u16();
    let mut headers = Map::new();
    for (name, value) in response.headers() {
        if let Ok(text) = value.to_str() {
            headers.insert(name.as_str().to_owned(), Value::String(text.to_owned()));
        }
    }
    // Read the body chunk by chunk, keeping at most MAX_BODY bytes.
    let mut bytes: Vec<u8> = Vec::new();
    let mut truncated = false;
    while let Some(chunk) = response.chunk().await.map_err(|e| {
        if e.is_timeout() {
            "reading the response timed out".to_owned()
        } else {
            "reading the response failed".to_owned()
        }
    })? {
        let room = MAX_BODY - bytes.len();
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            truncated = true;
            break;
        }
        bytes.extend_from_slice(&chunk);
    }
    drop(response);
    if truncated {
        attempt.logs.log(
            LogLevel::Warn,
            format!("the response body is larger than {MAX_BODY} bytes: only the first {MAX_BODY} are kept"),
        );
    }
    let body = utf8_prefix(bytes);
    if !spec.allow_failed && code >= 400 {
        return Err(format!("server answered HTTP {code}"));
    }
    let mut outputs = Map::new();
    outputs.insert("code".into(), Value::from(code));
    outputs.insert("headers".into(), Value::Object(headers));
    outputs.insert("body".into(), Value::String(body));
    outputs.insert("bodyTruncated".into(), Value::Bool(truncated));
    outputs.insert("uri".into(), Value::String(uri));
    Ok(outputs)
}

/// The bytes as text; a character cut at the end by truncation is dropped,
/// other invalid sequences become U+FFFD.
fn utf8_prefix(mut bytes: Vec<u8>) -> String {
    if let Err(err) = std::str::from_utf8(&bytes)
        && err.error_len().is_none()
    {
        bytes.truncate(err.valid_up_to());
    }
    match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) => String::from_utf8_lossy(err.as_bytes()).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truthiness_follows_kestra() {
        for falsy in ["false", "FALSE", "0", "-0", "", "  "] {
            assert!(!is_truthy(falsy), "{falsy:?}");
        }
        for truthy in ["true", "1", "yes", "value"] {
            assert!(is_truthy(truthy), "{truthy:?}");
        }
    }

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
    fn truncated_bodies_stay_valid_text() {
        assert_eq!(utf8_prefix("héllo".as_bytes()[..2].to_vec()), "h");
        assert_eq!(utf8_prefix(b"ok".to_vec()), "ok");
        assert_eq!(utf8_prefix(vec![b'a', 0xff, b'b']), "a\u{fffd}b");
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
