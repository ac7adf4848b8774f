//! Where script tasks run: a local process in the instance ([`process`]),
//! or one pod per attempt in the tenant's namespace ([`kubernetes`]). Both
//! take the same [`ScriptJob`] and give the same [`ScriptOutcome`]; the
//! script task types (`flow/tasks/scripts`) build the job and read the
//! outcome, so a task behaves the same on either runner.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;

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

pub mod kubernetes;
