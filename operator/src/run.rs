//! `atoll-operator run`: the controller, its health and metrics endpoints.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use atoll_crds::{Tenant, TenantBackup};
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, WatchStreamExt, controller, reflector, watcher};
use kube::{Api, Client, Resource, ResourceExt};

use crate::build::{FIELD_MANAGER, MANAGED_BY_LABEL};
use crate::config::OperatorConfig;
use crate::identity::IdentityClient;
use crate::leader::{Candidate, LeaseTiming};
use crate::metrics::Metrics;
use crate::reconcile::{Context, Placement, TenantEvents, error_policy, reconcile};

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

    /// File holding this cluster's credential at identity (a mounted
    /// Secret); identity derives the cluster from it.
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

    /// Elect a leader on a Lease before reconciling, so that several
    /// replicas can run and only one acts.
    #[arg(long, env = "ATOLL_LEADER_ELECTION")]
    pub leader_election: bool,

    /// The operator's own namespace: holds the leader Lease and the admin
    /// Secrets that External-mode Tenants reference.
    #[arg(long, env = "POD_NAMESPACE", default_value = "atoll-system")]
    pub operator_namespace: String,

    /// Name of the leader Lease.
    #[arg(long, env = "ATOLL_LEASE_NAME", default_value = "atoll-operator")]
    pub lease_name: String,

    /// How long a leader's lease lasts without renewal: after a leader dies,
    /// another replica takes over within this time.
    #[arg(long, env = "ATOLL_LEASE_DURATION_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub lease_duration_seconds: u64,

    /// This replica's name in the Lease (defaults to the pod name).
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
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
    /// The credential file could not be read.
    #[error("reading the identity token file {path}: {source}")]
    TokenFile {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// identity_url without a token.
    #[error("--identity-url needs --identity-token-file (this cluster's credential at identity)")]
    TokenMissing,
    /// The identity client could not be built.
    #[error("identity client: {0}")]
    Identity(#[from] crate::identity::IdentityError),
    /// Another replica holds the lease now.
    #[error("leadership was lost; exiting so that a restart competes again")]
    LostLeadership,
    /// The leader Lease could not be used.
    #[error(transparent)]
    Leader(#[from] crate::leader::LeaderError),
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
    let identity = identity_client(&args)?;
    let metrics = Metrics::default();
    serve_health_on(args.metrics_addr, metrics.clone()).await?;
    let reporter = Reporter {
        controller: FIELD_MANAGER.to_owned(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let candidate = become_leader(&args, &client).await?;

    // The Tenant cache keeps what reconciling reads: not managedFields,
    // which are a large share of each object and so of the operator's
    // memory at thousands of tenants.
    let (store, writer) = reflector::store();
    let ctx = Arc::new(Context::new(
        client.clone(),
        args.config,
        identity,
        Placement {
            cluster: args.cluster_name,
            operator_namespace: args.operator_namespace.clone(),
        },
        TenantEvents::new(&client, &reporter),
        store.clone(),
        metrics,
    ));
    let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = futures::FutureExt::shared(stop_signal(candidate.clone(), lost.clone()));
    let backups_stopped = {
        let stopped = stopped.clone();
        async move {
            let _ = stopped.await;
        }
    };
    let sweep_stopped = {
        let stopped = stopped.clone();
        async move {
            let _ = stopped.await;
        }
    };
    // The retention sweep (#19): every tenant in the platform store,
    // deleted ones included, on the leader.
    let sweep = crate::backup::sweep::run(ctx.clone(), sweep_stopped);
    let tenant_events = watcher(tenants, watcher::Config::default())
        .default_backoff()
        .modify(|tenant| tenant.managed_fields_mut().clear())
        .reflect(writer)
        .touched_objects();
    let ours = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={FIELD_MANAGER}"));
    let tenant_backups: Api<TenantBackup> = Api::all(client.clone());
    let backups_served = serves_tenant_backups(&tenant_backups).await;
    // TenantBackups (#19): their own controller, on the leader like the
    // Tenants'; their changes also wake their Tenant (status.backup).
    let backups = crate::backup::tenant_backup::run(
        tenant_backups.clone(),
        ctx.clone(),
        backups_stopped,
        backups_served,
    );
    let routed = store.clone();
    let tenants = Controller::for_stream(tenant_events, store)
        // Not `owns()`: it keys a cluster-scoped owner by its child's
        // namespace, which the controller takes for another object than the
        // Tenant itself, so a child's change could reconcile a Tenant while
        // a reconcile of the same Tenant runs (an apply racing a cleanup
        // re-owned the Secret that Retain had just released).
        .watches(
            Api::<Deployment>::all(client.clone()),
            ours.clone(),
            owning_tenant,
        )
        .watches(Api::<StatefulSet>::all(client.clone()), ours, owning_tenant);
    // The wake gate's pods (#20): every tenant routed to it (asleep,
    // waking or suspended) follows them in its wake-gate EndpointSlice.
    let gate_slices = watcher::Config::default().labels(&format!(
        "{}={}",
        crate::build::SERVICE_NAME_LABEL,
        ctx.config.wake_gate_service
    ));
    let tenants = tenants.watches(
        Api::<EndpointSlice>::namespaced(client.clone(), &args.operator_namespace),
        gate_slices,
        move |_| {
            routed
                .state()
                .into_iter()
                .filter(|t| routed_to_gate(t))
                .map(|t| ObjectRef::from_obj(t.as_ref()))
                .collect::<Vec<_>>()
        },
    );
    let tenants = if backups_served {
        tenants.watches(tenant_backups, watcher::Config::default(), |b| {
            Some(ObjectRef::new(&b.spec.tenant))
        })
    } else {
        tenants
    };
    let tenants = tenants
        .with_config(controller::Config::default().concurrency(args.concurrency))
        .graceful_shutdown_on(async move {
            let _ = stopped.await;
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(error = %error, "reconcile ended with an error");
            }
        });
    futures::future::join3(tenants, backups, sweep).await;
    if lost.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(RunError::LostLeadership);
    }
    if let Some(candidate) = &candidate {
        candidate.release().await?;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Whether the TenantBackup CRD is installed; without it the operator
/// runs as before backups existed, and says so.
async fn serves_tenant_backups(api: &Api<TenantBackup>) -> bool {
    let served = api
        .list(&kube::api::ListParams::default().limit(1))
        .await
        .is_ok();
    if !served {
        tracing::warn!(
            "the TenantBackup CRD is not installed: no backups are scheduled or taken (install it with `atoll-operator crd | kubectl apply -f -`)"
        );
    }
    served
}

/// The client of identity's tenant directory, when one is configured.
fn identity_client(args: &RunArgs) -> Result<Option<IdentityClient>, RunError> {
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
    Ok(identity)
}

/// Binds the health and metrics address and serves it in the background.
async fn serve_health_on(addr: SocketAddr, metrics: Metrics) -> Result<(), RunError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Listen { addr, source })?;
    tracing::info!(addr = %listener.local_addr().unwrap_or(addr), "serving /healthz, /readyz and /metrics");
    tokio::spawn(serve_health(listener, metrics));
    Ok(())
}

/// With leader election, waits until this replica holds the Lease.
async fn become_leader(args: &RunArgs, client: &Client) -> Result<Option<Candidate>, RunError> {
    let candidate = args.leader_election.then(|| {
        let identity = args
            .pod_name
            .clone()
            .unwrap_or_else(|| format!("atoll-operator-{}", std::process::id()));
        Candidate::new(
            client.clone(),
            &args.operator_namespace,
            &args.lease_name,
            &identity,
            LeaseTiming::for_duration(Duration::from_secs(args.lease_duration_seconds)),
        )
    });
    if let Some(candidate) = &candidate {
        tracing::info!(lease = %args.lease_name, "waiting to become the leader");
        candidate.acquire().await?;
        tracing::info!("became the leader");
    }
    Ok(candidate)
}

/// Resolves on SIGTERM or Ctrl-C, or when the lease is lost (then `lost`
/// is set). The controller wants a Sync trigger; the lease loop holds API
/// futures that are not, so it runs as its own task and signals through a
/// channel.
fn stop_signal(
    candidate: Option<Candidate>,
    lost: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::sync::oneshot::Receiver<()> {
    let stop = async move {
        let keep = async {
            match &candidate {
                Some(candidate) => {
                    candidate.keep().await;
                    lost.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shutdown_signal() => tracing::info!("shutting down"),
            () = keep => {}
        }
    };
    let (stop_tx, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        stop.await;
        let _ = stop_tx.send(());
    });
    stopped
}

/// The Tenant that owns a child, keyed as the cluster-scoped object it is.
/// Whether a Tenant's host is routed to the wake gate: asleep, waking or
/// suspended.
fn routed_to_gate(tenant: &Tenant) -> bool {
    tenant.spec.suspended
        || tenant
            .status
            .as_ref()
            .and_then(|s| s.idle.as_ref())
            .is_some_and(|i| i.sleeping_since.is_some())
}

fn owning_tenant<K: Resource>(child: K) -> Option<ObjectRef<Tenant>> {
    child
        .owner_references()
        .iter()
        .find(|owner| {
            owner.kind == "Tenant"
                && owner.api_version.split('/').next() == Some(&*Tenant::group(&()))
        })
        .map(|owner| ObjectRef::new(&owner.name))
}

/// Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_triggers_its_tenant_as_a_cluster_scoped_object() {
        let deployment: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "instance",
                "namespace": "atoll-acme",
                "ownerReferences": [
                    {"apiVersion": "apps/v1", "kind": "Tenant", "name": "impostor", "uid": "1"},
                    {"apiVersion": "atoll.dev/v1alpha1", "kind": "Tenant", "name": "acme", "uid": "2", "controller": true}
                ]
            }
        }))
        .expect("deployment");
        let tenant = owning_tenant(deployment).expect("an owner");
        assert_eq!(tenant, ObjectRef::new("acme"));
        assert_eq!(tenant.namespace, None);
        assert!(owning_tenant(Deployment::default()).is_none());
    }
}
