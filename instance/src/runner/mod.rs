//! Where script tasks run: a local process in the instance ([`process`]),
//! or one pod per attempt in the tenant's namespace ([`kubernetes`]). Both
//! take the same [`ScriptJob`] and give the same [`ScriptOutcome`]; the
//! script task types (`flow/tasks/scripts`) build the job and read the
//! outcome, so a task behaves the same on either runner.

pub mod glob;
pub mod kubernetes;
pub mod process;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::config::{RunnerKind, TaskSettings};

/// One attempt of a script task, ready to run.
#[derive(Debug, Clone, Default)]
pub struct ScriptJob {
    /// The flow's namespace and id, the execution, task, task run and
    /// attempt: they name the working directory, label the pod and scope
    /// the pod's file-transfer token.
    pub namespace: String,
    pub flow_id: String,
    pub execution_id: String,
    pub task_id: String,
    pub task_run_id: String,
    pub attempt: i64,
    /// The container image (the `Kubernetes` runner; `Process` ignores it).
    pub image: String,
    /// The program and its first arguments (`["/bin/sh", "-c"]`); the
    /// script is passed as the last argument.
    pub interpreter: Vec<String>,
    /// The whole script (`beforeCommands` then `commands`, rendered).
    pub script: String,
    /// The task's declared environment, rendered; nothing else is passed.
    pub env: BTreeMap<String, String>,
    /// Files written into the working directory before the script starts
    /// (relative path → content): `inputFiles`, namespace files, the
    /// `Script` task's own script file.
    pub input_files: BTreeMap<String, Bytes>,
    /// Glob patterns (relative to the working directory) of the files to
    /// collect after the script succeeded (`outputFiles`).
    pub output_files: Vec<String>,
    /// Pod resources: `requests`/`limits` → resource → quantity.
    pub resources: BTreeMap<String, BTreeMap<String, String>>,
    /// Longest run (the task's `timeout`, else the runner's default).
    pub timeout: Option<Duration>,
}

/// Which stream a line was written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// What a finished script gave.
#[derive(Debug, Clone, Default)]
pub struct ScriptOutcome {
    /// The script's exit code (0: success).
    pub exit_code: i32,
    /// The files matching `output_files` (relative path → content).
    pub output_files: BTreeMap<String, Bytes>,
}

/// Receives each line of the script's output as it is written.
pub type Lines<'a> = &'a (dyn Fn(Stream, String) + Send + Sync);

/// What [`ScriptRunner::run`] returns: the attempt, as a future that may be
/// dropped (a killed execution aborts it; the runner then stops the script:
/// kills the process, deletes the pod).
pub type RunFuture<'a> = Pin<Box<dyn Future<Output = Result<ScriptOutcome, String>> + Send + 'a>>;

/// A place script jobs run other than a local process: the `Kubernetes`
/// runner (one pod per attempt) implements it. `Err` is the task's error
/// message as the user reads it (the pod refused by the quota, the image not
/// pulled...); a script that ran and failed is `Ok` with its exit code.
pub trait ScriptRunner: Send + Sync {
    fn run<'a>(&'a self, job: &'a ScriptJob, lines: Lines<'a>) -> RunFuture<'a>;
}

/// What script tasks need from the instance besides its internal storage
/// (which the engine owns): the tenant's task-runner settings and the
/// runners.
#[derive(Debug, Clone, Default)]
pub struct TaskServices {
    pub settings: TaskSettings,
    pub runners: Runners,
}

impl TaskServices {
    /// Runs `job` on the runner of kind `kind`; a task pod's image must be
    /// on the tenant's allow-list (when it has one).
    pub async fn run(
        &self,
        kind: RunnerKind,
        job: &ScriptJob,
        lines: Lines<'_>,
    ) -> Result<ScriptOutcome, String> {
        let allowed = &self.settings.allowed_images;
        if kind == RunnerKind::Kubernetes
            && !allowed.is_empty()
            && !allowed.iter().any(|p| image_matches(p, &job.image))
        {
            return Err(format!(
                "image `{}` is not allowed for task pods (allowed: {})",
                job.image,
                allowed.join(", ")
            ));
        }
        self.runners.run(kind, job, lines).await
    }
}

/// Whether `image` matches an allow-list `pattern` (`*` any run of
/// characters, `/` and `:` included).
pub fn image_matches(pattern: &str, image: &str) -> bool {
    let escaped: String = pattern
        .replace('\\', "\\\\")
        .replace('?', "\\?")
        .replace('[', "\\[")
        .replace('{', "\\{");
    glob::matches(&escaped.replace('*', "**"), image)
}

/// The runners an instance has: the local process always, a Kubernetes one
/// when the instance runs in a cluster with its task-runner settings.
#[derive(Clone, Default)]
pub struct Runners {
    /// `None`: no cluster configuration (tasks asking for `Kubernetes` fail).
    pub kubernetes: Option<Arc<dyn ScriptRunner>>,
}

impl std::fmt::Debug for Runners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runners")
            .field("kubernetes", &self.kubernetes.is_some())
            .finish()
    }
}

impl Runners {
    /// Runs `job` on the runner of kind `kind`.
    pub async fn run(
        &self,
        kind: RunnerKind,
        job: &ScriptJob,
        lines: Lines<'_>,
    ) -> Result<ScriptOutcome, String> {
        match kind {
            RunnerKind::Process => process::run(job, lines).await,
            RunnerKind::Kubernetes => match &self.kubernetes {
                Some(runner) => runner.run(job, lines).await,
                None => Err(format!(
                    "the Kubernetes task runner is not available: the instance has no cluster \
                     configuration ({}, {} and {}, set by the operator in a Tenant's namespace); \
                     use the Process task runner",
                    atoll_crds::contract::NAMESPACE,
                    atoll_crds::contract::INSTANCE_IMAGE,
                    atoll_crds::contract::TASK_API_URL
                )),
            },
        }
    }
}

/// Checks that `path` names a file inside a working directory: relative,
/// `/`-separated, no empty, `.` or `..` segment, no control character or
/// backslash. Both runners check input file names with it.
pub fn check_relative(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("the file name is empty");
    }
    if path.len() > crate::storage::MAX_PATH {
        return Err("the file name is too long");
    }
    if path.starts_with('/') {
        return Err("the file name must be relative to the working directory");
    }
    if path.chars().any(|c| c.is_control() || c == '\\') {
        return Err("the file name holds a control character or a backslash");
    }
    if path
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err("the file name holds an empty, `.` or `..` segment");
    }
    Ok(())
}

/// A duration as the engine says it in messages (`1m 30s`).
pub(crate) fn duration_text(limit: Duration) -> String {
    jiff::SignedDuration::try_from(limit)
        .map(|d| format!("{d:#}"))
        .unwrap_or_else(|_| format!("{limit:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_matched_against_the_allow_list() {
        assert!(image_matches("python:*", "python:3.13-slim"));
        assert!(image_matches("ghcr.io/acme/*", "ghcr.io/acme/tools/etl:1"));
        assert!(image_matches("ubuntu", "ubuntu"));
        assert!(!image_matches("ubuntu", "ubuntu:22.04"));
        assert!(!image_matches("python:*", "evil/python:3"));
        assert!(!image_matches("a?c", "abc"));
    }

    #[test]
    fn file_names_stay_inside_the_working_directory() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a\\b",
            "a\nb",
        ] {
            assert!(check_relative(bad).is_err(), "{bad:?}");
        }
        for good in ["data.csv", "in/data.csv", "..hidden", "a b.txt"] {
            assert!(check_relative(good).is_ok(), "{good:?}");
        }
    }
}
