//! The flow model: what a parsed, validated Kestra-shaped flow holds.
//!
//! Template strings (`{{ … }}`) are kept as written and rendered by the
//! engine when a task runs; JSON-shaped properties stay `serde_json::Value`
//! trees whose strings are rendered the same way.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use super::tasks::TaskKind;
use crate::vocabulary::{Label, State};

/// A flow as written by its author, after parsing and validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flow {
    pub id: String,
    pub namespace: String,
    pub description: Option<String>,
    /// Labels in declaration order (executions copy them in that order).
    pub labels: Vec<Label>,
    pub inputs: Vec<Input>,
    pub variables: Map<String, Value>,
    pub tasks: Vec<Task>,
    pub errors: Vec<Task>,
    pub finally: Vec<Task>,
    pub outputs: Vec<FlowOutput>,
    pub disabled: bool,
    /// Default retry for tasks that declare none (Kestra's flow-level `retry`).
    pub retry: Option<Retry>,
    pub triggers: Vec<Trigger>,
    /// At most this many executions of the flow run at once.
    pub concurrency: Option<Concurrency>,
}

/// The flow-level `concurrency` limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Concurrency {
    pub limit: u32,
    pub behavior: ConcurrencyBehavior,
}

/// What happens to an execution that finds the limit reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConcurrencyBehavior {
    /// It waits (QUEUED) and starts when a slot frees, oldest first.
    Queue,
    /// It ends CANCELLED at once.
    Cancel,
    /// It ends FAILED at once.
    Fail,
}

/// A declared flow input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Input {
    pub id: String,
    pub kind: InputType,
    pub required: bool,
    pub defaults: Option<Value>,
    pub description: Option<String>,
    /// Allowed values of a `SELECT` input.
    pub values: Vec<String>,
    /// Item type of an `ARRAY` input.
    pub item_type: Option<InputType>,
}

/// Input and flow-output types, with Kestra's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InputType {
    String,
    Int,
    Float,
    Boolean,
    Datetime,
    Json,
    Select,
    Array,
    /// An ISO local date (`2024-01-31`).
    Date,
    /// An ISO local time (`13:45:00`).
    Time,
    /// An ISO-8601 duration (`PT5M`).
    Duration,
    /// Several of the allowed `values`.
    MultiSelect,
    Uri,
    Email,
    /// A string that is never shown in messages or logs.
    Secret,
    /// A file in the internal storage, given as its `kestra:///` URI (an
    /// upload of the execution, or a file of its namespace).
    File,
}

impl InputType {
    /// Every name accepted in YAML, with the type it means (`BOOL` is Kestra's
    /// newer alias of `BOOLEAN`).
    pub const NAMES: &[(&str, InputType)] = &[
        ("STRING", InputType::String),
        ("INT", InputType::Int),
        ("FLOAT", InputType::Float),
        ("BOOLEAN", InputType::Boolean),
        ("BOOL", InputType::Boolean),
        ("DATETIME", InputType::Datetime),
        ("JSON", InputType::Json),
        ("SELECT", InputType::Select),
        ("ARRAY", InputType::Array),
        ("DATE", InputType::Date),
        ("TIME", InputType::Time),
        ("DURATION", InputType::Duration),
        // `ENUM` is Kestra's older name of `SELECT`.
        ("ENUM", InputType::Select),
        ("MULTISELECT", InputType::MultiSelect),
        ("URI", InputType::Uri),
        ("EMAIL", InputType::Email),
        ("SECRET", InputType::Secret),
        ("FILE", InputType::File),
    ];

    pub fn from_name(name: &str) -> Option<Self> {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, kind)| *kind)
    }

    pub fn name(self) -> &'static str {
        match self {
            InputType::String => "STRING",
            InputType::Int => "INT",
            InputType::Float => "FLOAT",
            InputType::Boolean => "BOOLEAN",
            InputType::Datetime => "DATETIME",
            InputType::Json => "JSON",
            InputType::Select => "SELECT",
            InputType::Array => "ARRAY",
            InputType::Date => "DATE",
            InputType::Time => "TIME",
            InputType::Duration => "DURATION",
            InputType::MultiSelect => "MULTISELECT",
            InputType::Uri => "URI",
            InputType::Email => "EMAIL",
            InputType::Secret => "SECRET",
            InputType::File => "FILE",
        }
    }
}

/// A flow-level output, rendered when the execution's tasks are done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowOutput {
    pub id: String,
    pub kind: InputType,
    /// A template string, or a list/map whose strings are templates.
    pub value: Value,
    pub required: bool,
    /// Item type of an `ARRAY` output.
    #[serde(default)]
    pub item_type: Option<InputType>,
    /// Allowed values of a `SELECT`/`MULTISELECT` output.
    #[serde(default)]
    pub values: Vec<String>,
}

/// A trigger: what starts executions of the flow besides the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    pub id: String,
    /// The type name exactly as written (canonical name or older alias).
    pub type_name: String,
    pub disabled: bool,
    pub kind: TriggerKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TriggerKind {
    Schedule(ScheduleTrigger),
    Webhook(WebhookTrigger),
    Flow(FlowTrigger),
}

impl TriggerKind {
    /// Kestra's canonical type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            TriggerKind::Schedule(_) => "io.kestra.plugin.core.trigger.Schedule",
            TriggerKind::Webhook(_) => "io.kestra.plugin.core.trigger.Webhook",
            TriggerKind::Flow(_) => "io.kestra.plugin.core.trigger.Flow",
        }
    }
}

/// Starts an execution when an execution of another flow ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowTrigger {
    /// The ending states that count (every final state when empty).
    pub states: Vec<State>,
    /// All must hold for the ended execution.
    pub conditions: Vec<FlowCondition>,
    /// Inputs of each execution (strings are templates seeing `trigger`).
    pub inputs: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FlowCondition {
    /// The ended execution is of this flow.
    Flow { namespace: String, flow_id: String },
    /// The ended execution is in this namespace (or below it, with `prefix`).
    Namespace { namespace: String, prefix: bool },
    /// Its state is one of `within` (when given) and none of `except`.
    Status {
        within: Vec<State>,
        except: Vec<State>,
    },
}

impl FlowTrigger {
    /// Whether an execution of `namespace/flow_id` that ended in `state`
    /// starts this trigger (pure).
    pub fn matches(&self, namespace: &str, flow_id: &str, state: State) -> bool {
        let state_ok = if self.states.is_empty() {
            state.is_terminal()
        } else {
            self.states.contains(&state)
        };
        state_ok
            && self.conditions.iter().all(|condition| match condition {
                FlowCondition::Flow {
                    namespace: ns,
                    flow_id: id,
                } => ns == namespace && id == flow_id,
                FlowCondition::Namespace {
                    namespace: ns,
                    prefix,
                } => {
                    ns == namespace
                        || (*prefix
                            && namespace
                                .strip_prefix(ns.as_str())
                                .is_some_and(|rest| rest.starts_with('.')))
                }
                FlowCondition::Status { within, except } => {
                    (within.is_empty() || within.contains(&state)) && !except.contains(&state)
                }
            })
    }
}

/// A cron schedule (validated when the flow is parsed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleTrigger {
    pub cron: String,
    /// Six fields, seconds first.
    pub with_seconds: bool,
    /// IANA time zone; UTC when absent.
    pub timezone: Option<String>,
    /// Ticks from this instant on are fired (once) when the trigger is first seen.
    pub backfill_start: Option<jiff::Timestamp>,
    /// Backfilling stops here; the schedule then continues from the present.
    pub backfill_end: Option<jiff::Timestamp>,
    /// Inputs of each execution (strings are templates seeing `trigger`).
    pub inputs: Map<String, Value>,
    pub recover: RecoverMissed,
}

impl ScheduleTrigger {
    pub fn schedule(&self) -> Result<crate::cron::Schedule, crate::cron::ScheduleError> {
        crate::cron::Schedule::parse(&self.cron, self.with_seconds, self.timezone.as_deref())
    }
}

/// What happens to ticks that passed while no instance was running
/// (Kestra's `recoverMissedSchedules`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecoverMissed {
    /// Every missed tick fires, oldest first.
    All,
    /// Only the most recent missed tick fires.
    Last,
    /// Missed ticks are skipped.
    None,
}

/// Starts an execution on `/api/v1/executions/webhook/{namespace}/{flowId}/{key}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookTrigger {
    /// The secret part of the URL.
    pub key: String,
    /// Answer with the finished execution instead of the created one.
    pub wait: bool,
    /// With `wait`: answer with the flow's outputs only.
    pub return_outputs: bool,
    pub inputs: Map<String, Value>,
}

/// One task of a flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    /// Where the task is in the flow's document (`tasks[2]`,
    /// `tasks[0].then[1]`), for messages.
    #[serde(default)]
    pub path: String,
    /// The type name exactly as written (canonical name or older alias).
    pub type_name: String,
    pub description: Option<String>,
    pub retry: Option<Retry>,
    pub timeout: Option<Duration>,
    pub allow_failure: bool,
    pub disabled: bool,
    /// Error handlers of a flowable task (run when its children fail).
    pub errors: Vec<Task>,
    /// Tasks a flowable task always runs after its children and handlers.
    pub finally: Vec<Task>,
    pub kind: TaskKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "TRACE" => LogLevel::Trace,
            "DEBUG" => LogLevel::Debug,
            "INFO" => LogLevel::Info,
            "WARN" => LogLevel::Warn,
            "ERROR" => LogLevel::Error,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Trace => "TRACE",
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warn => "WARN",
            LogLevel::Error => "ERROR",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DagTask {
    pub task: Task,
    pub depends_on: Vec<String>,
}

/// A `Subflow` task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubflowSpec {
    pub namespace: String,
    pub flow_id: String,
    /// Input values; strings are templates.
    pub inputs: Map<String, Value>,
    /// Follow the child to its end (else the task ends once it is created).
    pub wait: bool,
    /// A failed child fails the task.
    pub transmit_failed: bool,
    /// The child gets the parent execution's labels.
    pub inherit_labels: bool,
    pub labels: Vec<Label>,
    /// Kestra's task-level `outputs`: templates rendered against the child
    /// execution once it ends (else the child's flow outputs are used).
    pub outputs: Map<String, Value>,
}

impl TaskKind {
    /// Direct children, in declaration order (not `errors`/`finally`).
    pub fn children(&self) -> Vec<&Task> {
        match self {
            TaskKind::Sequential { tasks }
            | TaskKind::Parallel { tasks, .. }
            | TaskKind::AllowFailure { tasks }
            | TaskKind::ForEach { tasks, .. }
            | TaskKind::Pause { tasks, .. } => tasks.iter().collect(),
            TaskKind::If {
                then, otherwise, ..
            } => then.iter().chain(otherwise).collect(),
            TaskKind::Switch {
                cases, defaults, ..
            } => cases
                .iter()
                .flat_map(|(_, tasks)| tasks)
                .chain(defaults)
                .collect(),
            TaskKind::Dag { tasks, .. } => tasks.iter().map(|t| &t.task).collect(),
            _ => Vec::new(),
        }
    }

    pub fn is_flowable(&self) -> bool {
        matches!(
            self,
            TaskKind::Sequential { .. }
                | TaskKind::Parallel { .. }
                | TaskKind::AllowFailure { .. }
                | TaskKind::If { .. }
                | TaskKind::Switch { .. }
                | TaskKind::ForEach { .. }
                | TaskKind::Dag { .. }
                | TaskKind::Pause { .. }
        )
    }
}

/// A retry policy (Kestra's `retry` property).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retry {
    pub backoff: Backoff,
    /// Attempts in total, the first one included.
    pub max_attempts: Option<u32>,
    /// No new attempt starts once this much time has passed since the first.
    pub max_duration: Option<Duration>,
    /// A task that succeeded only after a retry ends WARNING.
    pub warning_on_retry: bool,
    pub behavior: RetryBehavior,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Backoff {
    Constant {
        interval: Duration,
    },
    Exponential {
        interval: Duration,
        max_interval: Duration,
        delay_factor: f64,
    },
    Random {
        min_interval: Duration,
        max_interval: Duration,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RetryBehavior {
    RetryFailedTask,
    CreateNewExecution,
}

impl Retry {
    /// Delay before attempt number `next_attempt` (1-based; the first retry
    /// is attempt 2), or `None` when the policy allows no further attempt.
    pub fn delay_before(&self, next_attempt: u32, elapsed: Duration) -> Option<Duration> {
        if self.max_attempts.is_some_and(|max| next_attempt > max) {
            return None;
        }
        let retries_done = next_attempt.saturating_sub(2);
        let delay = match &self.backoff {
            Backoff::Constant { interval } => *interval,
            Backoff::Exponential {
                interval,
                max_interval,
                delay_factor,
            } => {
                let factor = delay_factor.powi(i32::try_from(retries_done).unwrap_or(i32::MAX));
                let secs = (interval.as_secs_f64() * factor).min(max_interval.as_secs_f64());
                Duration::try_from_secs_f64(secs).unwrap_or(*max_interval)
            }
            // Deterministic midpoint: jitter adds nothing a test could check
            // and would need a random source here.
            Backoff::Random {
                min_interval,
                max_interval,
            } => (*min_interval + *max_interval) / 2,
        };
        if self
            .max_duration
            .is_some_and(|max| elapsed.saturating_add(delay) > max)
        {
            return None;
        }
        Some(delay)
    }
}

impl Flow {
    /// Every task of the flow, depth first, handlers included.
    pub fn all_tasks(&self) -> Vec<&Task> {
        let mut out = Vec::new();
        for task in self.tasks.iter().chain(&self.errors).chain(&self.finally) {
            collect(task, &mut out);
        }
        out
    }

    /// The task with this id anywhere in the flow.
    pub fn find_task(&self, id: &str) -> Option<&Task> {
        self.all_tasks().into_iter().find(|t| t.id == id)
    }

    pub fn input(&self, id: &str) -> Option<&Input> {
        self.inputs.iter().find(|i| i.id == id)
    }
}

fn collect<'a>(task: &'a Task, out: &mut Vec<&'a Task>) {
    out.push(task);
    for child in task
        .kind
        .children()
        .into_iter()
        .chain(&task.errors)
        .chain(&task.finally)
    {
        collect(child, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn constant(max: Option<u32>, max_duration: Option<Duration>) -> Retry {
        Retry {
            backoff: Backoff::Constant {
                interval: Duration::from_millis(250),
            },
            max_attempts: max,
            max_duration,
            warning_on_retry: false,
            behavior: RetryBehavior::RetryFailedTask,
        }
    }

    #[test]
    fn max_attempts_counts_the_first_attempt() {
        let retry = constant(Some(3), None);
        assert_eq!(
            retry.delay_before(2, Duration::ZERO),
            Some(Duration::from_millis(250))
        );
        assert!(retry.delay_before(3, Duration::ZERO).is_some());
        assert_eq!(retry.delay_before(4, Duration::ZERO), None);
    }

    #[test]
    fn flow_triggers_match_flow_namespace_and_state() {
        let trigger = FlowTrigger {
            states: Vec::new(),
            conditions: vec![
                FlowCondition::Namespace {
                    namespace: "acme".into(),
                    prefix: true,
                },
                FlowCondition::Status {
                    within: Vec::new(),
                    except: vec![State::Killed],
                },
            ],
            inputs: Map::new(),
        };
        assert!(trigger.matches("acme.etl", "load", State::Failed));
        assert!(trigger.matches("acme", "load", State::Success));
        assert!(!trigger.matches("acmeco", "load", State::Success));
        assert!(!trigger.matches("acme.etl", "load", State::Killed));
        assert!(!trigger.matches("acme.etl", "load", State::Running));
    }

    #[test]
    fn max_duration_stops_retries() {
        let retry = constant(None, Some(Duration::from_secs(1)));
        assert!(retry.delay_before(2, Duration::from_millis(700)).is_some());
        assert_eq!(retry.delay_before(2, Duration::from_millis(800)), None);
    }

    #[test]
    fn exponential_backoff_grows_and_caps() {
        let retry = Retry {
            backoff: Backoff::Exponential {
                interval: Duration::from_secs(1),
                max_interval: Duration::from_secs(5),
                delay_factor: 2.0,
            },
            ..constant(None, None)
        };
        let delays: Vec<_> = (2..=6)
            .filter_map(|n| retry.delay_before(n, Duration::ZERO))
            .map(|d| d.as_secs())
            .collect();
        assert_eq!(delays, vec![1, 2, 4, 5, 5]);
    }
}
