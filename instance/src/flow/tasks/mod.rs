//! Task types. Each runnable task type (one that does work in an attempt,
//! as opposed to the flowable ones that hold child tasks) lives in one
//! module here: its properties, how they are read from YAML, which of them
//! are templates, and what an attempt does. It is registered with one line
//! in the `task_kinds!` list below, which builds [`TaskKind`] and the
//! name lookup, template listing and execution dispatch from that list.
//!
//! The flowable types (and `Subflow`, `Exit`, `Pause`, which the engine's
//! driver interprets itself) are listed after the runnable ones; their
//! properties are read in `parse/tasks.rs` and they run in the engine's
//! planner and driver.

pub(crate) mod egress;

mod assert;
mod debug_return;
mod fail;
mod http_request;
mod kv_delete;
mod kv_get;
mod kv_set;
mod log;
mod output_values;
pub mod scripts;
mod sleep;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::model::{DagTask, Input, LogLevel, SubflowSpec, Task};
use super::parse::Fields;
use crate::template::{TemplateError, Templates, Vars};
use crate::vocabulary::State;

pub use debug_return::Return;
pub use fail::Fail;
pub use http_request::HttpRequest;
pub(crate) use kv_set::{expiry as kv_expiry, missing as kv_missing};
pub use log::Log;
pub use output_values::OutputValues;
pub use scripts::Commands;
pub use sleep::Sleep;

/// A runnable task type: what its module provides.
pub(crate) trait TaskType: Sized {
    /// Kestra's canonical type name.
    const NAME: &'static str;
    /// Older names Kestra still accepts.
    const ALIASES: &'static [&'static str] = &[];
    /// An attempt interrupted by a stopped instance may simply run again
    /// (it has no effect outside the execution). Otherwise the interrupted
    /// attempt counts as failed and the task's retry policy decides.
    const REPEATABLE: bool = false;

    /// Reads the task's own properties (the common ones, `id`, `type`,
    /// `retry`... are read already); problems go to `f`.
    fn parse(f: &mut Fields<'_>) -> Self;

    /// The template-bearing properties, with their field names (checked
    /// when the flow is saved).
    fn templates(&self) -> Vec<(&'static str, &str)>;

    /// One attempt: its outputs, or why it failed.
    fn run(
        &self,
        cx: &Context<'_>,
    ) -> impl Future<Output = Result<Map<String, Value>, String>> + Send;
}

/// Where an attempt's log lines go (cut to the engine's longest line).
pub(crate) type Logs = Arc<dyn Fn(LogLevel, String) + Send + Sync>;

/// What an attempt works with; the engine's runner builds it.
pub(crate) struct Context<'a> {
    /// The task being run (its id and path name a template that fails).
    pub task: &'a Task,
    pub templates: &'a Templates,
    pub vars: &'a Vars,
    pub http: &'a egress::TaskHttp,
    pub logs: &'a Logs,
    /// The task's `timeout`.
    pub timeout: Option<Duration>,
    /// The task run and attempt number (they name the working directory).
    pub task_run_id: &'a str,
    pub attempt: i64,
    /// What `secret()`, `kv()`, `read()`... reach in this attempt.
    pub lookups: &'a crate::lookups::Resolver,
    /// The flow's namespace and id and the execution (storage paths, pod
    /// labels).
    pub namespace: &'a str,
    pub flow_id: &'a str,
    pub execution_id: &'a str,
    /// Storage, task-runner settings and runners (script tasks).
    pub services: &'a crate::runner::TaskServices,
    /// The internal storage (files of executions, namespace files).
    pub storage: &'a crate::storage::Storage,
}

impl Context<'_> {
    /// Renders one template of the task (resolving `secret()`, `kv()`...).
    pub async fn render(&self, template: &str) -> Result<String, String> {
        crate::lookups::render(self.templates, self.lookups, template, self.vars)
            .await
            .map_err(|e| template_error(self.task, template, &e))
    }

    /// Renders every string of a JSON tree.
    pub async fn render_json(&self, value: &Value) -> Result<Value, String> {
        crate::lookups::render_json(self.templates, self.lookups, value, self.vars)
            .await
            .map_err(|e| {
                let template = strings_in(value).into_iter().next().unwrap_or_default();
                template_error(self.task, template, &e)
            })
    }

    pub fn log(&self, level: LogLevel, message: impl Into<String>) {
        (self.logs)(level, message.into());
    }
}

/// A template of `task` that failed, said with the task's id and the
/// property it is in: "task `fmt` (tasks[2].format): unknown filter `dtae`
/// at line 1, column 12".
pub(crate) fn template_error(task: &Task, template: &str, err: &TemplateError) -> String {
    let field = super::validate::task_templates(task)
        .into_iter()
        .find(|(_, text)| *text == template)
        .map(|(field, _)| field);
    let property = match (task.path.as_str(), field) {
        ("", Some(field)) => field.to_owned(),
        (path, Some(field)) => format!("{path}.{field}"),
        (path, None) => path.to_owned(),
    };
    err.in_property(Some(&task.id), &property)
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

/// Strings anywhere in a JSON tree.
pub(crate) fn strings_in(value: &Value) -> Vec<&str> {
    match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().flat_map(strings_in).collect(),
        Value::Object(map) => map.values().flat_map(strings_in).collect(),
        _ => Vec::new(),
    }
}

macro_rules! task_kinds {
    (
        runnable { $($variant:ident($spec:ty),)* }
        others { $($others:tt)* }
    ) => {
        /// What a task does. Runnable kinds do work; flowable kinds hold child tasks.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        pub enum TaskKind {
            $($variant($spec),)*
            $($others)*
        }

        /// The canonical name and aliases of every runnable task type.
        pub(crate) const RUNNABLE: &[(&str, &[&str])] =
            &[$((<$spec as TaskType>::NAME, <$spec as TaskType>::ALIASES),)*];

        /// Reads a runnable task of type `name`; `None` when no runnable
        /// type has that name.
        pub(crate) fn parse_runnable(name: &str, f: &mut Fields<'_>) -> Option<TaskKind> {
            $(
                if <$spec as TaskType>::NAME == name || <$spec as TaskType>::ALIASES.contains(&name) {
                    return Some(TaskKind::$variant(<$spec as TaskType>::parse(f)));
                }
            )*
            None
        }

        impl TaskKind {
            /// The template-bearing properties of a runnable task (`None`
            /// for the other kinds).
            pub(crate) fn runnable_templates(&self) -> Option<Vec<(&'static str, &str)>> {
                match self {
                    $(TaskKind::$variant(spec) => Some(spec.templates()),)*
                    _ => None,
                }
            }

            /// Whether an interrupted attempt may simply run again (see
            /// [`TaskType::REPEATABLE`]); `false` for the other kinds.
            pub(crate) fn repeatable(&self) -> bool {
                match self {
                    $(TaskKind::$variant(_) => <$spec as TaskType>::REPEATABLE,)*
                    _ => false,
                }
            }

            /// One attempt of a runnable task.
            pub(crate) async fn run(&self, cx: &Context<'_>) -> Result<Map<String, Value>, String> {
                match self {
                    $(TaskKind::$variant(spec) => spec.run(cx).await,)*
                    _ => Err("a flowable task has no attempt to run".into()),
                }
            }
        }
    };
}

task_kinds! {
    runnable {
        Log(Log),
        Return(Return),
        OutputValues(OutputValues),
        Fail(Fail),
        Sleep(Sleep),
        Commands(Commands),
        ShellScript(scripts::ShellScript),
        PythonCommands(scripts::PythonCommands),
        PythonScript(scripts::PythonScript),
        HttpRequest(HttpRequest),
        Assert(assert::Assert),
        KvSet(kv_set::KvSet),
        KvGet(kv_get::KvGet),
        KvDelete(kv_delete::KvDelete),
    }
    others {
        Sequential {
            tasks: Vec<Task>,
        },
        Parallel {
            tasks: Vec<Task>,
            /// How many children run at once; 0 = all.
            concurrent: u32,
        },
        AllowFailure {
            tasks: Vec<Task>,
        },
        If {
            condition: String,
            then: Vec<Task>,
            otherwise: Vec<Task>,
        },
        Switch {
            value: String,
            /// Cases in declaration order; keys are compared with the rendered value.
            cases: Vec<(String, Vec<Task>)>,
            /// Empty: no default branch (an unmatched value fails the Switch).
            defaults: Vec<Task>,
        },
        ForEach {
            /// A JSON array as a (template) string, or a YAML list.
            values: Value,
            /// How many iterations run at once; 0 = all.
            concurrency_limit: u32,
            tasks: Vec<Task>,
        },
        Dag {
            tasks: Vec<DagTask>,
            /// How many tasks run at once; 0 = all that are ready.
            concurrent: u32,
        },
        /// Starts an execution of another flow and (with `wait`) follows it.
        Subflow(SubflowSpec),
        /// Ends the execution at once in the given state.
        Exit {
            state: State,
        },
        /// Waits for `delay`, or until resumed through the API (the task's
        /// `timeout` then fails it if nobody does), then runs `tasks`.
        Pause {
            delay: Option<Duration>,
            /// Inputs the resume call may give; they become `outputs.<id>.onResume`.
            on_resume: Vec<Input>,
            tasks: Vec<Task>,
        },
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
}
