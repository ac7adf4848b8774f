//! The orchestration engine: starts executions, claims them from the store's
//! queue and drives each to its end.

mod actions;
mod context;
mod driver;
mod flows;
mod kv;
mod plan;
mod queue;
mod reads;
mod rerun;
mod retention;
mod runner;
mod subflow;
mod triggers;

pub use actions::{Replay, SETTABLE_STATES, SYSTEM_LABEL_PREFIX};
pub use flows::{FlowChangeError, Flows, ImportProblem};
pub use reads::EngineActivity;
pub use rerun::RerunError;
pub use triggers::{
    AbstractTriggerView, Backfill, BackfillLabel, TriggerActionError, TriggerContextView,
    TriggerDetail, TriggerView, WebhookRequest, WebhookStart,
};
// The driver fires Flow triggers when an execution ends.
use triggers::flow as flow_trigger;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Map, Value};
use tokio::sync::{Notify, Semaphore, broadcast};
use tokio_util::sync::CancellationToken;

use crate::execution::{Execution, State};
use crate::flow::tasks::egress;
use crate::flow::{self, Flow, FlowError, InputError, Label};
use crate::storage::Storage;
use crate::store::{Repository, Store, StoreError};
use crate::template::Templates;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("flow {namespace}/{id} not found")]
    FlowNotFound { namespace: String, id: String },
    #[error("flow {namespace}/{id} is disabled")]
    FlowDisabled { namespace: String, id: String },
    #[error("stored flow {namespace}/{id} revision {revision} no longer parses: {source}")]
    StoredFlowInvalid {
        namespace: String,
        id: String,
        revision: i64,
        #[source]
        source: FlowError,
    },
    #[error(transparent)]
    Inputs(#[from] InputError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("execution {0} not found")]
    ExecutionNotFound(String),
    #[error("execution {0} did not finish in time")]
    Timeout(String),
    #[error("the trigger's inputs did not render: {0}")]
    TriggerInputs(String),
    #[error("execution {0} is not paused")]
    NotPaused(String),
    #[error("execution {0} is busy; try again")]
    Busy(String),
    #[error(transparent)]
    Rerun(#[from] RerunError),
}

/// Tuning of the engine (from the instance configuration).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How long a claim holds an execution without renewal; after a crash
    /// other processes (or a restart) resume the execution once it expires.
    pub lease: Duration,
    /// Executions driven at once by this process.
    pub max_running: usize,
    /// How often the queue is polled when nothing signals new work.
    pub poll: Duration,
    /// Task runs executing at once in this process (the attempts of
    /// runnable tasks: commands, HTTP requests, sleeps...).
    pub max_task_runs: usize,
    /// Ended executions older than this are deleted (with their task runs,
    /// logs and outputs); `None` keeps them forever.
    pub retention: Option<Duration>,
    /// How often the retention sweep runs (it also runs at start).
    pub retention_sweep: Duration,
    /// HTTP tasks may reach private, loopback, link-local and metadata
    /// addresses (see `egress`).
    pub http_allow_private: bool,
    /// The internal storage (files of executions, namespace files). The
    /// default is a fresh directory under the system's temporary directory
    /// (tests); the server opens the configured one.
    pub storage: Storage,
    /// Storage, task-runner settings and runners of script tasks.
    pub tasks: crate::runner::TaskServices,
    /// Where `secret()` reads secrets (one file per key); `None`: no
    /// secrets.
    pub secrets_dir: Option<std::path::PathBuf>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            lease: Duration::from_secs(30),
            max_running: 256,
            poll: Duration::from_millis(500),
            max_task_runs: crate::config::DEFAULT_MAX_CONCURRENT_TASK_RUNS,
            retention: None,
            retention_sweep: Duration::from_secs(3600),
            http_allow_private: false,
            storage: Storage::dir(
                std::env::temp_dir()
                    .join(format!("atoll-storage-{}", uuid::Uuid::new_v4().simple())),
            ),
            tasks: crate::runner::TaskServices::default(),
            secrets_dir: None,
        }
    }
}

type FlowKey = (String, String, i64);

#[derive(Debug)]
pub(crate) struct Inner {
    store: Store,
    config: EngineConfig,
    owner: String,
    templates: Arc<Templates>,
    http: egress::TaskHttp,
    tasks: Arc<crate::runner::TaskServices>,
    /// One permit per task run executing (`max_task_runs`).
    task_slots: Arc<Semaphore>,
    flows: Mutex<HashMap<FlowKey, Arc<Flow>>>,
    kills: Mutex<HashMap<String, Arc<Notify>>>,
    work: Notify,
    flows_changed: Notify,
    /// The flow index the triggers read; `None` after a local change.
    downstream: Mutex<Option<Arc<triggers::FlowIndex>>>,
    /// Counts local flow changes, so a pass that read flows before one does
    /// not install a stale index.
    flows_generation: std::sync::atomic::AtomicU64,
    finished: broadcast::Sender<(String, State)>,
    /// One per execution driven at once (`max_running`).
    drive_slots: Arc<Semaphore>,
    /// To the claim loop, while it runs: executions created here, claimed.
    handoff: Mutex<Option<tokio::sync::mpsc::UnboundedSender<queue::Handoff>>>,
    /// The ends of executions created and driven here, for their waiters.
    ends: Mutex<HashMap<String, queue::End>>,
    /// The latest revision of each flow as last read here (a hint: inserts
    /// check it).
    latest: Mutex<HashMap<(String, String), i64>>,
    shutdown: CancellationToken,
    /// What `secret()` reads.
    secrets: crate::secrets::Secrets,
}

/// A handle on the engine; cheap to clone.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    pub fn new(store: Store, config: EngineConfig) -> Engine {
        let (finished, _) = broadcast::channel(1024);
        let http = egress::TaskHttp::new(config.http_allow_private);
        let tasks = Arc::new(config.tasks.clone());
        let task_slots = Arc::new(Semaphore::new(config.max_task_runs.max(1)));
        let drive_slots = Arc::new(Semaphore::new(config.max_running));
        let secrets = crate::secrets::Secrets::new(config.secrets_dir.clone());
        Engine {
            inner: Arc::new(Inner {
                store,
                config,
                owner: format!("atoll-{}", uuid::Uuid::now_v7().simple()),
                templates: Arc::new(Templates::new()),
                http,
                tasks,
                task_slots,
                flows: Mutex::new(HashMap::new()),
                kills: Mutex::new(HashMap::new()),
                work: Notify::new(),
                flows_changed: Notify::new(),
                downstream: Mutex::new(None),
                flows_generation: std::sync::atomic::AtomicU64::new(0),
                finished,
                drive_slots,
                handoff: Mutex::new(None),
                ends: Mutex::new(HashMap::new()),
                latest: Mutex::new(HashMap::new()),
                shutdown: CancellationToken::new(),
                secrets,
            }),
        }
    }

    /// Creates an execution of the latest revision of a flow and queues it.
    pub async fn start_execution(
        &self,
        namespace: &str,
        flow_id: &str,
        inputs: &Map<String, Value>,
        labels: Vec<Label>,
        trigger: Option<Value>,
    ) -> Result<Execution, EngineError> {
        let id = Engine::new_execution_id();
        self.start_execution_with_id(namespace, flow_id, id, inputs, labels, trigger)
            .await
    }

    /// A fresh execution id, for a caller that stores the execution's files
    /// (FILE inputs) before [`Engine::start_execution_with_id`].
    pub fn new_execution_id() -> String {
        uuid::Uuid::now_v7().simple().to_string()
    }

    /// [`Engine::start_execution`] with the execution's id chosen by the
    /// caller (from [`Engine::new_execution_id`]).
    pub async fn start_execution_with_id(
        &self,
        namespace: &str,
        flow_id: &str,
        id: String,
        inputs: &Map<String, Value>,
        labels: Vec<Label>,
        trigger: Option<Value>,
    ) -> Result<Execution, EngineError> {
        // The flow's latest revision as this process last read it: the
        // insert checks that it still is, so nothing is read first.
        if let Some((flow, revision)) = self.inner.known_latest(namespace, flow_id)
            && !flow.disabled
            && let Ok(execution) = execution_with_id(
                &flow,
                revision,
                id.clone(),
                inputs,
                labels.clone(),
                trigger.clone(),
            )
            && self.enqueue(&execution, true).await?
        {
            return Ok(execution);
        }
        let (flow, revision) = self.inner.latest_flow(namespace, flow_id).await?;
        if flow.disabled {
            return Err(EngineError::FlowDisabled {
                namespace: namespace.into(),
                id: flow_id.into(),
            });
        }
        let execution = execution_with_id(&flow, revision, id, inputs, labels, trigger)?;
        self.enqueue(&execution, false).await?;
        Ok(execution)
    }

    /// Stores a new execution and has it driven: here and at once when a
    /// driver slot is free (it is created claimed), else through the queue.
    /// With `if_latest`, false (nothing stored) when its flow revision is no
    /// longer the flow's latest live one.
    async fn enqueue(&self, execution: &Execution, if_latest: bool) -> Result<bool, EngineError> {
        let (store, owner) = (&self.inner.store, &self.inner.owner);
        let lease = self.inner.config.lease;
        let slot = self.inner.free_slot();
        if if_latest {
            let claim = slot.is_some().then_some((owner.as_str(), lease));
            if !store.insert_execution_if_latest(execution, claim).await? {
                self.inner
                    .forget_latest(&execution.namespace, &execution.flow_id);
                return Ok(false);
            }
        } else if slot.is_some() {
            store
                .insert_claimed_execution(execution, owner, lease)
                .await?;
        } else {
            store.insert_execution(execution).await?;
        }
        let Some((handoff, slot)) = slot else {
            self.inner.work.notify_one();
            return Ok(true);
        };
        self.inner.watch_end(&execution.id);
        if handoff.send((execution.clone(), slot)).is_err() {
            // The claim loop stopped meanwhile: back to the queue.
            self.inner.forget(&execution.id);
            store.release_lease(&execution.id, owner).await?;
            self.inner.work.notify_one();
        }
        Ok(true)
    }

    /// Every trigger of the flows under `namespace` (all when `None`), with
    /// its next run time and last execution.
    pub async fn triggers(
        &self,
        namespace: Option<&str>,
    ) -> Result<Vec<triggers::TriggerView>, EngineError> {
        triggers::list(&self.inner, namespace).await
    }

    /// Asks for an execution to be killed (wherever it runs).
    pub async fn kill(&self, id: &str) -> Result<bool, EngineError> {
        let requested = self.inner.store.request_kill(id).await?;
        if requested {
            // The permit waits for the driver if it has not started yet here.
            self.inner.kill_signal(id).notify_one();
            self.inner.work.notify_one();
        }
        Ok(requested)
    }

    /// Resumes a PAUSED execution: its waiting Pause task runs go on, with
    /// `inputs` checked against their `onResume` declarations and given to
    /// them as `outputs.<pause>.onResume`.
    pub async fn resume(
        &self,
        id: &str,
        inputs: &Map<String, Value>,
    ) -> Result<Execution, EngineError> {
        let store = &self.inner.store;
        let owner = &self.inner.owner;
        let lease = self.inner.config.lease;
        // A driver may still hold the execution for the moment it takes to
        // park it.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut execution = loop {
            let current = store
                .get_execution(id)
                .await?
                .ok_or_else(|| EngineError::ExecutionNotFound(id.into()))?;
            if current.state.current != State::Paused {
                return Err(EngineError::NotPaused(id.into()));
            }
            if store.request_pause(id, false).await? {
                // Paused by hand while task runs still run: its driver
                // goes on.
                self.inner.kill_signal(id).notify_one();
                return Ok(current);
            }
            if let Some(execution) = store.claim_one(id, owner, lease).await? {
                break execution;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(EngineError::Busy(id.into()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let original = execution.clone();
        match self.resume_claimed(&mut execution, inputs).await {
            Ok(()) => {
                store
                    .park_execution(&execution, owner, Some(Timestamp::now()))
                    .await?;
                self.inner.work.notify_one();
                Ok(execution)
            }
            Err(err) => {
                // Left exactly as it was: parked until its timers if it
                // still waits, else only the lease is given back.
                if original.state.current == State::Paused {
                    let timers = original
                        .task_run_list
                        .iter()
                        .filter_map(|r| r.next_attempt_at)
                        .min();
                    store.park_execution(&original, owner, timers).await?;
                } else {
                    store.release_lease(id, owner).await?;
                }
                Err(err)
            }
        }
    }

    async fn resume_claimed(
        &self,
        execution: &mut Execution,
        inputs: &Map<String, Value>,
    ) -> Result<(), EngineError> {
        if execution.state.current != State::Paused {
            return Err(EngineError::NotPaused(execution.id.clone()));
        }
        let flow = self.inner.flow_for(execution).await?;
        let now = Timestamp::now();
        let mut any = false;
        for run in &mut execution.task_run_list {
            if run.state.current != State::Paused {
                continue;
            }
            let Some(flow::TaskKind::Pause { on_resume, .. }) =
                flow.find_task(&run.task_id).map(|t| &t.kind)
            else {
                continue;
            };
            let given = flow::resolve_inputs(on_resume, inputs)?;
            run.outputs.insert("onResume".into(), Value::Object(given));
            run.state.set(State::Running, now);
            run.next_attempt_at = None;
            any = true;
        }
        let waiting = execution
            .task_run_list
            .iter()
            .any(|r| r.state.current == State::Paused);
        if !any && waiting {
            return Err(EngineError::NotPaused(execution.id.clone()));
        }
        // With no task run waiting, it was paused by hand: it goes on.
        execution.state.set(State::Running, now);
        Ok(())
    }

    /// Runs a FAILED or KILLED execution again from its failed task runs.
    pub async fn restart(&self, id: &str) -> Result<Execution, EngineError> {
        let store = &self.inner.store;
        let execution = store
            .get_execution(id)
            .await?
            .ok_or_else(|| EngineError::ExecutionNotFound(id.into()))?;
        let flow = self.inner.flow_for(&execution).await?;
        let next = rerun::restart(&flow, &execution, Timestamp::now())?;
        if !store.requeue_execution(&next).await? {
            return Err(RerunError::NotEnded(id.into()).into());
        }
        self.inner.work.notify_one();
        Ok(next)
    }

    /// A new execution repeating an ended one from one of its task runs.
    pub async fn replay(&self, id: &str, task_run_id: &str) -> Result<Execution, EngineError> {
        let store = &self.inner.store;
        let execution = store
            .get_execution(id)
            .await?
            .ok_or_else(|| EngineError::ExecutionNotFound(id.into()))?;
        let new_id = uuid::Uuid::now_v7().simple().to_string();
        let next = rerun::replay(&execution, task_run_id, new_id, Timestamp::now())?;
        store.insert_execution(&next).await?;
        self.inner.work.notify_one();
        Ok(next)
    }

    /// The internal storage: files of executions and namespace files.
    pub fn storage(&self) -> &Storage {
        &self.inner.config.storage
    }

    /// A receiver of (execution id, final state) for executions this process finishes.
    pub fn finished_events(&self) -> broadcast::Receiver<(String, State)> {
        self.inner.finished.subscribe()
    }
}

/// A new execution of `flow` (not stored yet): inputs resolved against the
/// declarations, the flow's labels followed by `labels` (which win).
pub(crate) fn new_execution(
    flow: &Flow,
    revision: i64,
    inputs: &Map<String, Value>,
    labels: Vec<Label>,
    trigger: Option<Value>,
) -> Result<Execution, EngineError> {
    let id = Engine::new_execution_id();
    execution_with_id(flow, revision, id, inputs, labels, trigger)
}

/// [`new_execution`] with its id given. A FILE input must name a file the
/// execution may read (see [`crate::storage::readable_by_execution`]).
fn execution_with_id(
    flow: &Flow,
    revision: i64,
    id: String,
    inputs: &Map<String, Value>,
    labels: Vec<Label>,
    trigger: Option<Value>,
) -> Result<Execution, EngineError> {
    let inputs = flow::resolve_inputs(&flow.inputs, inputs)?;
    for input in flow
        .inputs
        .iter()
        .filter(|i| i.kind == flow::InputType::File)
    {
        let Some(uri) = inputs.get(&input.id).and_then(Value::as_str) else {
            continue;
        };
        let readable = crate::storage::StoragePath::from_uri(uri).is_ok_and(|path| {
            crate::storage::readable_by_execution(&path, &flow.namespace, &flow.id, &id)
        });
        if !readable {
            return Err(InputError::Invalid {
                id: input.id.clone(),
                expected: "a kestra:/// URI of a file of this execution or of its namespace".into(),
            }
            .into());
        }
    }
    let mut all_labels = flow.labels.clone();
    for label in labels {
        all_labels.retain(|l| l.key != label.key);
        all_labels.push(label);
    }
    let mut execution = Execution::new(
        id,
        flow.namespace.clone(),
        flow.id.clone(),
        revision,
        all_labels,
        inputs,
        Timestamp::now(),
    );
    execution.trigger = trigger;
    Ok(execution)
}

impl Inner {
    /// Forgets what was derived from the set of flows (the flow trigger
    /// index) and tells the scheduler, so new or changed schedules take
    /// effect at once in this process. Only the flows service changes flows.
    fn flows_changed(&self) {
        if let Ok(mut index) = self.downstream.lock() {
            self.flows_generation
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            *index = None;
        }
        if let Ok(mut latest) = self.latest.lock() {
            latest.clear();
        }
        self.flows_changed.notify_one();
    }

    /// The flow's latest revision as last read here, parsed.
    fn known_latest(&self, namespace: &str, flow_id: &str) -> Option<(Arc<Flow>, i64)> {
        let key = (namespace.to_owned(), flow_id.to_owned());
        let revision = *self.latest.lock().ok()?.get(&key)?;
        let flow = self
            .flows
            .lock()
            .ok()?
            .get(&(key.0, key.1, revision))?
            .clone();
        Some((flow, revision))
    }

    fn forget_latest(&self, namespace: &str, flow_id: &str) {
        if let Ok(mut latest) = self.latest.lock() {
            latest.remove(&(namespace.to_owned(), flow_id.to_owned()));
        }
    }

    /// The latest live revision of a flow, parsed.
    async fn latest_flow(
        &self,
        namespace: &str,
        flow_id: &str,
    ) -> Result<(Arc<Flow>, i64), EngineError> {
        let record = self
            .store
            .get_flow(namespace, flow_id, None)
            .await?
            .ok_or_else(|| EngineError::FlowNotFound {
                namespace: namespace.into(),
                id: flow_id.into(),
            })?;
        let flow = self.parsed(
            &record.namespace,
            &record.id,
            record.revision,
            &record.source,
        )?;
        if let Ok(mut latest) = self.latest.lock() {
            latest.insert((record.namespace, record.id), record.revision);
        }
        Ok((flow, record.revision))
    }

    fn parsed(
        &self,
        namespace: &str,
        id: &str,
        revision: i64,
        source: &str,
    ) -> Result<Arc<Flow>, EngineError> {
        let key = (namespace.to_owned(), id.to_owned(), revision);
        if let Some(flow) = self.flows.lock().ok().and_then(|f| f.get(&key).cloned()) {
            return Ok(flow);
        }
        let flow =
            Arc::new(
                flow::parse(source).map_err(|source| EngineError::StoredFlowInvalid {
                    namespace: namespace.into(),
                    id: id.into(),
                    revision,
                    source,
                })?,
            );
        if let Ok(mut flows) = self.flows.lock() {
            flows.insert(key, flow.clone());
        }
        Ok(flow)
    }

    async fn flow_for(&self, execution: &Execution) -> Result<Arc<Flow>, EngineError> {
        let key = (
            execution.namespace.clone(),
            execution.flow_id.clone(),
            execution.flow_revision,
        );
        if let Some(flow) = self.flows.lock().ok().and_then(|f| f.get(&key).cloned()) {
            return Ok(flow);
        }
        let record = self
            .store
            .get_flow(
                &execution.namespace,
                &execution.flow_id,
                Some(execution.flow_revision),
            )
            .await?
            .ok_or_else(|| EngineError::FlowNotFound {
                namespace: execution.namespace.clone(),
                id: execution.flow_id.clone(),
            })?;
        self.parsed(
            &record.namespace,
            &record.id,
            record.revision,
            &record.source,
        )
    }

    fn kill_signal(&self, id: &str) -> Arc<Notify> {
        let mut kills = self.kills.lock().unwrap_or_else(|e| e.into_inner());
        kills.entry(id.to_owned()).or_default().clone()
    }

    /// Drops what this process kept for an execution it drove.
    fn forget(&self, id: &str) {
        if let Ok(mut kills) = self.kills.lock() {
            kills.remove(id);
        }
        if let Ok(mut ends) = self.ends.lock() {
            ends.remove(id);
        }
    }

    fn finished(&self, execution: &Execution) {
        self.ended(execution);
        let _ = self
            .finished
            .send((execution.id.clone(), execution.state.current));
    }
}
