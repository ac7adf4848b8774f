//! `atoll-operator run`: the controller, its health and metrics endpoints.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use atoll_crds::Tenant;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{Controller, controller, watcher};
use kube::{Api, Client};

use crate::build::{FIELD_MANAGER, MANAGED_BY_LABEL};
use crate::config::OperatorConfig;
use crate::identity::IdentityClient;
use crate::metrics::Metrics;
use crate::reconcile::{Context, error_policy, reconcile};

/// Arguments of `run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Settings that shape every tenant's objects.
    #[command(flatten)]
    pub config: OperatorConfig,

    /// Base URL at which the operator reaches identity's API (for example
    /// its in-cluster Service). Unset: tenants are not registered anywhere.
    #[arg(long, env = "ATOLL_IDENTITY_URL")]
    pub identity_url: Option<String>,

    /// File holding the service token presented to identity (a mounted Secret).
    #[arg(long, env = "ATOLL_IDENTITY_TOKEN_FILE", requires = "identity_url")]
    pub identity_token_file: Option<PathBuf>,

    /// Name of this cluster in identity's tenant directory.
    #[arg(long, env = "ATOLL_CLUSTER_NAME", default_value = "default")]
    pub cluster_name: String,

    /// Address of the /healthz, /readyz and /metrics endpoints.
    #[arg(long, env = "ATOLL_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    /// Most tenants reconciled at the same time.
    #[arg(long, env = "ATOLL_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,
}

/// Why the operator could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No usable kubeconfig or in-cluster configuration.
    #[error("connecting to the Kubernetes API: {0}")]
    Connect(#[source] kube::Error),
    /// The Tenant CRD is not installed.
    #[error(
        "the Tenant CRD is not installed (install it with `atoll-operator crd | kubectl apply -f -`): {0}"
    )]
    CrdMissing(#[source] kube::Error),
    /// The service token file could not be read.
    #[error("reading the identity token file {path}: {source}")]
    TokenFile {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// identity_url without a token.
    #[error("--identity-url needs --identity-token-file (the service token)")]
    TokenMissing,
    /// The identity client could not be built.
    #[error("identity client: {0}")]
    Identity(#[from] crate::identity::IdentityError),
    /// The metrics address could not be bound.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Runs the operator until SIGTERM or Ctrl-C.
pub async fn run(args: RunArgs) -> Result<(), RunError> {
    let client = Client::try_default().await.map_err(RunError::Connect)?;
    run_with_client(args, client).await
}

/// Runs the operator against the given client (tests pass an in-process one).
pub async fn run_with_client(args: RunArgs, client: Client) -> Result<(), RunError> {
    let tenants: Api<Tenant> = Api::all(client.clone());
    tenants
        .list(&kube::api::ListParams::default().limit(1))
        .await
        .map_err(RunError::CrdMissing)?;

    let identity = match (&args.identity_url, &args.identity_token_file) {
        (Some(url), Some(path)) => {
            let token = std::fs::read_to_string(path).map_err(|source| RunError::TokenFile {
                path: path.display().to_string(),
                source,
            })?;
            Some(IdentityClient::new(url, token.trim().to_owned())?)
        }
        (Some(_), None) => return Err(RunError::TokenMissing),
        _ => None,
    };
    if identity.is_none() {
        tracing::warn!("no identity service configured: tenants will not be registered for login");
    }

    let metrics = Metrics::default();
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .map_err(|source| RunError::Listen {
            addr: args.metrics_addr,
            source,
        })?;
    tracing::info!(addr = %listener.local_addr().unwrap_or(args.metrics_addr), "serving /healthz, /readyz and /metrics");
    tokio::spawn(serve_health(listener, metrics.clone()));

    let reporter = Reporter {
        controller: FIELD_MANAGER.to_owned(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        args.config,
        identity,
        args.cluster_name,
        Recorder::new(client.clone(), reporter),
        metrics,
    ));
    let ours = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={FIELD_MANAGER}"));
    Controller::new(tenants, watcher::Config::default())
        .owns(Api::<Deployment>::all(client.clone()), ours.clone())
        .owns(Api::<StatefulSet>::all(client.clone()), ours)
        .with_config(controller::Config::default().concurrency(args.concurrency))
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(error = %error, "reconcile ended with an error");
            }
        })
        .await;
    tracing::info!("stopped");
    Ok(())
}

async fn serve_health(listener: tokio::net::TcpListener, metrics: Metrics) {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(move || {
                let body = metrics.encode();
                async move {
                    (
                        StatusCode::OK,
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        body,
                    )
                        .into_response()
                }
            }),
        );
    if let Err(error) = axum::serve(listener, app).await {
        tracing::error!(error = %error, "health server stopped");
    }
}
