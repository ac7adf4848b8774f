//! The `Kubernetes` task runner: one pod per task attempt in the tenant's
//! namespace (see [`pod`] for its layout and lock-down). The input and
//! output files travel through the instance's API with a token scoped to
//! the attempt ([`files`]); the `task` container's log is streamed into the
//! execution's logs as it is written and its exit code decides the state
//! ([`watch`]). At most `max_pods` task pods run at once: the others wait
//! for a place. A dropped attempt (killed execution, timeout) deletes its
//! pod; pods a crashed instance left behind are deleted at start
//! ([`KubernetesRunner::clean_orphans`]).

pub mod files;
pub mod glob;
pub mod pod;
pub mod watch;

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use files::Attempts;

use super::{Lines, RunFuture, ScriptJob, ScriptOutcome, ScriptRunner, Stream};
use crate::config::TaskSettings;

/// Runs script tasks as pods in the tenant's namespace.
#[derive(Clone)]
pub struct KubernetesRunner {
    pods: Api<Pod>,
    namespace: String,
    settings: Arc<TaskSettings>,
    slots: Arc<Semaphore>,
    attempts: Attempts,
    /// This instance process's pod name (labels its task pods).
    instance: String,
}

impl std::fmt::Debug for KubernetesRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesRunner")
            .field("namespace", &self.namespace)
            .field("max_pods", &self.settings.max_pods)
            .finish_non_exhaustive()
    }
}

impl KubernetesRunner {
    /// The runner, on the in-cluster configuration (the instance's service
    /// account).
    pub async fn new(settings: &TaskSettings) -> Result<KubernetesRunner, String> {
        let client = kube::Client::try_default()
            .await
            .map_err(|e| format!("cannot reach the Kubernetes API for task pods: {e}"))?;
        KubernetesRunner::with_client(client, settings)
    }

    /// The runner on a given client (tests).
    pub fn with_client(
        client: kube::Client,
        settings: &TaskSettings,
    ) -> Result<KubernetesRunner, String> {
        let namespace = settings.namespace.clone().ok_or_else(|| {
            format!(
                "the Kubernetes task runner needs the tenant's namespace ({} is not set)",
                atoll_crds::contract::NAMESPACE
            )
        })?;
        Ok(KubernetesRunner {
            pods: Api::namespaced(client, &namespace),
            namespace,
            settings: Arc::new(settings.clone()),
            slots: Arc::new(Semaphore::new(settings.max_pods.max(1))),
            attempts: Attempts::default(),
            instance: own_pod_name(),
        })
    }

    /// The same runner labelling its pods as made by the instance pod
    /// `name` (by default this process's host name, which is its pod's
    /// name).
    pub fn with_instance_name(mut self, name: &str) -> KubernetesRunner {
        self.instance = name.to_owned();
        self
    }

    /// The attempts open for file transfer (the API serves them: put them
    /// in `AppState::attempts`).
    pub fn attempts(&self) -> Attempts {
        self.attempts.clone()
    }

    /// Runs one attempt in its own pod: waits for a place, creates the pod,
    /// streams the script's log into `lines`, and gives its exit code and
    /// uploaded output files. Dropping the future deletes the pod.
    pub async fn run(&self, job: &ScriptJob, lines: Lines<'_>) -> Result<ScriptOutcome, String> {
        // Refused images are refused before anything is created or waited.
        pod::image(job, &self.settings)?;
        let _slot = self.slot(lines).await?;
        let name = pod::pod_name(job, &random_suffix()?);
        let files = self
            .attempts
            .open(&name, job.input_files.clone(), job.output_files.clone())?;
        let spec = pod::build(pod::PodInput {
            job,
            settings: &self.settings,
            name: &name,
            token: files.token(),
            instance: &self.instance,
        })?;
        let _pod = self.create(&spec, &name).await?;
        tracing::info!(pod = %name, execution = %job.execution_id, task = %job.task_id, "task pod created");
        let exit_code = watch::follow(&self.pods, &name, lines).await?;
        let output_files = if exit_code == 0 {
            files.outputs()
        } else {
            Default::default()
        };
        Ok(ScriptOutcome {
            exit_code,
            output_files,
        })
    }

    /// A place among the `max_pods`; waits (saying so once) when none is
    /// free.
    async fn slot(&self, lines: Lines<'_>) -> Result<OwnedSemaphorePermit, String> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let running = self
            .settings
            .max_pods
            .saturating_sub(self.slots.available_permits());
        lines(
            Stream::Stdout,
            format!("waiting for a task pod slot ({running} running)"),
        );
        self.slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| "the task runner is shutting down".to_owned())
    }

    /// Creates the pod; the guard deletes it when dropped.
    async fn create(&self, spec: &Pod, name: &str) -> Result<PodGuard, String> {
        match self.pods.create(&PostParams::default(), spec).await {
            Ok(_) => Ok(PodGuard {
                pods: self.pods.clone(),
                name: name.to_owned(),
            }),
            // A ResourceQuota refusal (403 "exceeded quota"), a LimitRange
            // or admission refusal: the API's own message says it best.
            Err(kube::Error::Api(status)) => Err(format!(
                "cannot create task pod {name} in namespace {}: {}",
                self.namespace, status.message
            )),
            Err(err) => Err(format!(
                "cannot create task pod {name} in namespace {}: {err}",
                self.namespace
            )),
        }
    }

    /// Deletes the orphaned task pods: those this instance pod made whose
    /// attempt is not running here (at start: all of them, since
    /// interrupted attempts run again), and those of instance pods that are
    /// gone (a crashed replica replaced by another). Task pods of other
    /// live replicas are left alone. The number deleted.
    pub async fn clean_orphans(&self) -> usize {
        let listed = match self
            .pods
            .list(&ListParams::default().labels(pod::SELECTOR))
            .await
        {
            Ok(list) => list.items,
            Err(err) => {
                tracing::warn!(namespace = %self.namespace, error = %err, "cannot list task pods to clean orphans");
                return 0;
            }
        };
        let me = pod::label_value(&self.instance);
        let mut deleted = 0;
        for task_pod in listed {
            let Some(name) = task_pod.metadata.name.clone() else {
                continue;
            };
            let owner = task_pod
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(pod::INSTANCE_LABEL))
                .cloned()
                .unwrap_or_default();
            let orphan = if owner == me || owner.is_empty() {
                !self.attempts.is_open(&name)
            } else {
                matches!(self.pods.get_opt(&owner).await, Ok(None))
            };
            if !orphan {
                continue;
            }
            match delete(&self.pods, &name).await {
                Ok(()) => {
                    tracing::info!(pod = %name, "deleted an orphaned task pod");
                    deleted += 1;
                }
                Err(err) => {
                    tracing::warn!(pod = %name, error = %err, "cannot delete an orphaned task pod")
                }
            }
        }
        deleted
    }
}

/// This process's host name: in a pod, the pod's name.
fn own_pod_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "atoll-instance".to_owned())
}

/// The runner when the settings give what it needs (the namespace, the
/// instance's image and API URL; the operator sets all three), with the
/// orphans of a previous run being deleted in the background; `None`
/// otherwise (tasks asking for it then fail saying so).
pub async fn start(settings: &TaskSettings) -> Option<KubernetesRunner> {
    if settings.namespace.is_none()
        || settings.instance_image.is_none()
        || settings.api_url.is_none()
    {
        if settings.runner == crate::config::RunnerKind::Kubernetes {
            tracing::error!(
                "the default task runner is Kubernetes but {}, {} or {} is not set",
                atoll_crds::contract::NAMESPACE,
                atoll_crds::contract::INSTANCE_IMAGE,
                atoll_crds::contract::TASK_API_URL
            );
        }
        return None;
    }
    match KubernetesRunner::new(settings).await {
        Ok(runner) => {
            let cleaner = runner.clone();
            tokio::spawn(async move {
                let deleted = cleaner.clean_orphans().await;
                tracing::info!(deleted, "task pods of a previous run cleaned");
            });
            Some(runner)
        }
        Err(err) => {
            tracing::error!(error = %err, "the Kubernetes task runner is unavailable");
            None
        }
    }
}

impl ScriptRunner for KubernetesRunner {
    fn run<'a>(&'a self, job: &'a ScriptJob, lines: Lines<'a>) -> RunFuture<'a> {
        Box::pin(KubernetesRunner::run(self, job, lines))
    }
}

async fn delete(pods: &Api<Pod>, name: &str) -> Result<(), kube::Error> {
    let params = DeleteParams {
        grace_period_seconds: Some(1),
        ..DeleteParams::background()
    };
    match pods.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
        Err(err) => Err(err),
    }
}

/// Deletes its pod when dropped: at the end of the attempt, or when the
/// attempt's future is dropped (killed execution, timeout).
struct PodGuard {
    pods: Api<Pod>,
    name: String,
}

impl Drop for PodGuard {
    fn drop(&mut self) {
        let pods = self.pods.clone();
        let name = std::mem::take(&mut self.name);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(pod = %name, "no runtime to delete the task pod; it is left for the orphan clean-up");
            return;
        };
        runtime.spawn(async move {
            if let Err(err) = delete(&pods, &name).await {
                tracing::warn!(pod = %name, error = %err, "cannot delete the task pod; it is left for the orphan clean-up");
            }
        });
    }
}

/// Eight random lowercase letters and digits.
fn random_suffix() -> Result<String, String> {
    use aws_lc_rs::rand::{SecureRandom, SystemRandom};
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 8];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "the system random generator failed".to_owned())?;
    Ok(bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect())
}
