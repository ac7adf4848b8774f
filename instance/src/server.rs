//! Start-up and shutdown: connect the store (migrating it), start the
//! engine, serve the API until SIGTERM or Ctrl-C, then hand back unfinished
//! work.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState, Metrics, StateLabel};
use crate::auth::{IdentityVerifier, Verifier};
use crate::config::{AuthMode, Config, StorageSettings};
use crate::engine::{Engine, EngineConfig};
use crate::session::Sessions;
use crate::storage::{Storage, StorageError};
use crate::store::{Store, StoreError};

/// How often identity's key set is re-read (besides unknown `kid`s).
const KEY_REFRESH: std::time::Duration = std::time::Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot create the data directory: {0}")]
    DataDir(#[source] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot open the internal storage: {0}")]
    Storage(#[from] StorageError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the server failed: {0}")]
    Serve(#[source] std::io::Error),
}

async fn bind(addr: std::net::SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// Runs the instance on `config.listen` (and its metrics on
/// `config.metrics_listen`) until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), ServeError> {
    let listener = bind(config.listen).await?;
    serve(config, listener, shutdown).await
}

/// Runs the instance on an already bound listener (binding
/// `config.metrics_listen` for the metrics) until `shutdown` is cancelled.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let metrics = match config.metrics_listen {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    serve_with_metrics(config, listener, metrics, shutdown).await
}

/// Marks the process non-dumpable, so that the commands tasks run (same
/// user) cannot read its memory or `/proc/<pid>/environ` (which holds the
/// database URL and every secret the instance was started with).
pub fn protect_process() -> Result<(), std::io::Error> {
    #[cfg(target_os = "linux")]
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)?;
    Ok(())
}

/// Runs the instance on already bound listeners (the API's, and the
/// metrics' when given) until `shutdown` is cancelled.
pub async fn serve_with_metrics(
    config: Config,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let activity = Arc::new(api::Activity::new(jiff::Timestamp::now()));
    if config.database_url.starts_with("sqlite:") {
        std::fs::create_dir_all(&config.data_dir).map_err(ServeError::DataDir)?;
    }
    let store = Store::connect(&config.database_url).await?;
    tracing::info!(backend = store.backend(), "database ready");
    let session_store = store.clone();
    let storage_settings = storage_settings(&config);
    let storage = Storage::open(&storage_settings)?;
    tracing::info!(storage = ?storage_settings, "internal storage ready");
    // Task pods (when configured: `runner::kubernetes::start`); the pods a
    // previous run left are deleted in the background.
    let kubernetes = crate::runner::kubernetes::start(&config.tasks).await;
    let engine = Engine::new(
        store,
        EngineConfig {
            lease: config.lease,
            max_task_runs: config.max_concurrent_task_runs,
            retention: config.execution_retention,
            http_allow_private: config.http_allow_private,
            storage,
            tasks: task_services(&config, kubernetes.as_ref()),
            secrets_dir: config.tasks.secrets_dir.clone(),
            ..EngineConfig::default()
        },
    );
    if config.http_allow_private {
        tracing::warn!(
            "HTTP tasks may reach private, loopback, link-local and metadata addresses ({} is true)",
            atoll_crds::contract::HTTP_ALLOW_PRIVATE
        );
    }
    let identity = verifier(&config, &shutdown);
    let sessions = sessions(&config, session_store, identity.as_ref(), &shutdown);
    let verifier = identity.map(|v| v as Arc<dyn Verifier>);
    let metrics = count_finished(&engine);
    let state = AppState {
        engine: engine.clone(),
        tenant: config.tenant.clone(),
        verifier,
        metrics,
        attempts: kubernetes
            .as_ref()
            .map(|k| k.attempts())
            .unwrap_or_default(),
        sessions,
        activity,
    };
    let local = listener.local_addr().map_err(ServeError::Serve)?;
    tracing::info!(
        listen = %local,
        tenant = %config.tenant,
        public_url = config.public_url.as_deref().unwrap_or("(none)"),
        "serving"
    );
    let metrics_task = match metrics_listener {
        Some(listener) => Some(serve_metrics(listener, &state, &shutdown)?),
        None => None,
    };
    let engine_task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { engine.run(shutdown).await }
    });
    let served = axum::serve(listener, api::app(state))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await;
    shutdown.cancel();
    let _ = engine_task.await;
    if let Some(task) = metrics_task
        && let Ok(Err(err)) = task.await
    {
        tracing::warn!(error = %err, "the metrics listener failed");
    }
    served.map_err(ServeError::Serve)
}

/// What script tasks run with: the task-runner settings and the runners
/// (the Kubernetes one when the instance has its cluster configuration).
fn task_services(
    config: &Config,
    kubernetes: Option<&crate::runner::kubernetes::KubernetesRunner>,
) -> crate::runner::TaskServices {
    crate::runner::TaskServices {
        settings: config.tasks.clone(),
        runners: crate::runner::Runners {
            kubernetes: kubernetes
                .map(|k| Arc::new(k.clone()) as Arc<dyn crate::runner::ScriptRunner>),
        },
    }
}

/// Where the files go. A configuration built in code that changed the
/// data directory but kept the default storage folder (relative to the
/// working directory) keeps its files in its data directory instead, as
/// the environment's defaults do.
fn storage_settings(config: &Config) -> StorageSettings {
    let defaults = Config::default();
    match &config.storage {
        StorageSettings::Dir(dir) if *dir == defaults.data_dir.join("storage") => {
            StorageSettings::Dir(config.data_dir.join("storage"))
        }
        other => other.clone(),
    }
}

/// The token verifier: identity's keys (re-read periodically until
/// `shutdown`), or none when authentication is disabled.
fn verifier(config: &Config, shutdown: &CancellationToken) -> Option<Arc<IdentityVerifier>> {
    match &config.auth {
        AuthMode::Identity { issuer, tenant_uid } => {
            let verifier = IdentityVerifier::new(issuer, &config.tenant, tenant_uid);
            // Load the keys now, then re-read them periodically so a key
            // identity has retired stops being trusted.
            let refresher = verifier.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(KEY_REFRESH);
                loop {
                    tokio::select! {
                        _ = every.tick() => {}
                        () = stop.cancelled() => return,
                    }
                    if let Err(err) = refresher.refresh().await {
                        tracing::warn!(error = %err, "loading identity keys failed; keeping the last good set");
                    }
                }
            });
            Some(verifier)
        }
        AuthMode::Disabled { explicit } => {
            tracing::warn!(
                explicit,
                "authentication is DISABLED: every caller is an Admin; use only for local, single-user work"
            );
            None
        }
    }
}

/// Browser sign-in, when identity is configured and the public URL known
/// (identity sends browsers back to `<public url>/auth/callback`); expired
/// sessions are purged until `shutdown`.
fn sessions(
    config: &Config,
    store: Store,
    verifier: Option<&Arc<IdentityVerifier>>,
    shutdown: &CancellationToken,
) -> Option<Arc<Sessions>> {
    let (AuthMode::Identity { issuer, .. }, Some(verifier)) = (&config.auth, verifier) else {
        return None;
    };
    let Some(public_url) = &config.public_url else {
        tracing::warn!(
            "no {}: browser sign-in is off, only bearer tokens are accepted",
            atoll_crds::contract::PUBLIC_URL
        );
        return None;
    };
    let sessions = Arc::new(Sessions::new(
        &config.tenant,
        public_url,
        issuer,
        store,
        verifier.clone(),
    ));
    sessions.spawn_purge(shutdown.clone());
    Some(sessions)
}

/// The metrics, counting the executions this process finishes.
fn count_finished(engine: &Engine) -> Arc<Metrics> {
    let metrics = Arc::new(Metrics::default());
    let mut finished = engine.finished_events();
    let counted = metrics.clone();
    tokio::spawn(async move {
        while let Ok((_, state)) = finished.recv().await {
            counted
                .executions_finished
                .get_or_create(&StateLabel {
                    state: state.as_str().into(),
                })
                .inc();
        }
    });
    metrics
}

type MetricsTask = tokio::task::JoinHandle<Result<(), std::io::Error>>;

/// Serves the metrics on their own listener until `shutdown`.
fn serve_metrics(
    listener: TcpListener,
    state: &AppState,
    shutdown: &CancellationToken,
) -> Result<MetricsTask, ServeError> {
    let local = listener.local_addr().map_err(ServeError::Serve)?;
    tracing::info!(listen = %local, "serving metrics");
    let app = api::metrics_app(state.clone());
    let stop = shutdown.clone();
    Ok(tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
    }))
}

/// Cancels the token on SIGTERM or Ctrl-C.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(term) => term,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        token.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down");
        token.cancel();
    });
}
