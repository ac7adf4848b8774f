//! The reconcile pipeline, in the order `apply` runs it:
//!
//! 1. **admit** (pure, and the Tenant cache): the spec is valid and the host
//!    is the Tenant's to take; otherwise nothing is written but status;
//! 2. **fetch inputs**: the namespace (created or adopted only when it is
//!    the Tenant's), the database password, an External database;
//! 3. **build** (pure, [`crate::build`]): every child, in apply order;
//! 4. **apply or observe** (`children.rs`): apply what changed (or everything
//!    every few minutes), prune what is no longer wanted, read readiness;
//! 5. **identity**: register the tenant once its instance is reachable;
//! 6. **one status write** (`report.rs`), only when it changed.
//!
//! Deletion runs `cleanup` instead. What the process remembers between
//! reconciles lives in one `memory::Memory`, keyed by the Tenant's uid.

pub(crate) mod backup;
mod children;
mod cleanup;
mod database;
mod idle;
mod memory;
mod report;
mod restore;
mod retry;

use std::sync::Arc;
use std::time::Duration;

use atoll_crds::{DatabaseMode, Phase, Tenant, validate};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};

use crate::build::{self, BuildError, DatabaseCredentials, TenantContext};
use crate::claims::{self, Refusal};
use crate::config::OperatorConfig;
use crate::identity::{IdentityClient, IdentityError, TenantRecord};
use crate::metrics::Metrics;
use crate::status::{self, DatabaseState, IdentityState, Observed};

pub use backup::{BackupWiring, RememberedBackup};
pub use database::DatabaseError;
pub use memory::REAPPLY_AFTER;
pub use report::TenantEvents;
pub use retry::backoff;

/// Finalizer guarding state outside Kubernetes (identity record, retained data).
pub const FINALIZER: &str = "atoll.dev/cleanup";
/// Label on what a Retain deletion kept for a future Tenant of the same name.
pub const RETAINED_LABEL: &str = "atoll.dev/retained";
/// Annotation naming the uid of the deleted Tenant whose data a namespace
/// keeps, so only a new Tenant of the same name adopts it.
pub const RETAINED_FROM_ANNOTATION: &str = "atoll.dev/retained-from-uid";
/// Label a Secret of the operator's namespace must carry before a Tenant's
/// `spec.database.external.adminSecretRef` may name it.
pub const DATABASE_ADMIN_LABEL: &str = "atoll.dev/database-admin";

/// What went wrong in one reconcile, by the action that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A server-side apply of a child failed.
    #[error("applying {kind} {name}: {source}")]
    Apply {
        /// Kind of the child.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The API error.
        source: kube::Error,
    },
    /// Reading an object failed.
    #[error("reading {what}: {source}")]
    Read {
        /// What was read.
        what: String,
        /// The API error.
        source: kube::Error,
    },
    /// Writing the Tenant's status failed.
    #[error("updating the Tenant's status: {0}")]
    PatchStatus(#[source] kube::Error),
    /// Releasing or deleting what the Tenant owns failed.
    #[error("cleaning up after the Tenant: {0}")]
    Cleanup(#[source] kube::Error),
    /// Objects could not be built (the Tenant lacks server-set metadata).
    #[error(transparent)]
    Build(#[from] BuildError),
    /// Identity refused or could not be reached during deletion.
    #[error("removing the tenant from identity: {0}")]
    Deregister(#[source] IdentityError),
    /// The tenant's database on the shared server could not be removed.
    #[error("removing the tenant's database from the shared server: {0}")]
    ExternalDatabase(#[source] DatabaseError),
    /// The namespace is still being deleted.
    #[error("waiting for namespace {0} to be deleted")]
    NamespaceTerminating(String),
    /// The Tenant asks for what it cannot have (reported in its status).
    #[error(transparent)]
    Refused(Refusal),
    /// Removing a child the Tenant no longer needs failed.
    #[error("removing {kind} {name}, which the Tenant no longer needs: {source}")]
    Prune {
        /// Kind of the child.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The API error.
        source: kube::Error,
    },
    /// The finalizer helper failed around our step.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
}

impl Error {
    /// A small fixed set of categories for metrics labels and event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Apply { .. } => "ApplyFailed",
            Error::Read { .. } => "ReadFailed",
            Error::PatchStatus(_) => "StatusFailed",
            Error::Cleanup(_) => "CleanupFailed",
            Error::Build(_) => "InvalidObject",
            Error::Deregister(_) => "IdentityFailed",
            Error::ExternalDatabase(_) => "ExternalDatabaseFailed",
            Error::NamespaceTerminating(_) => "Waiting",
            Error::Refused(refusal) => refusal.reason(),
            Error::Prune { .. } => "PruneFailed",
            Error::Finalizer(inner) => match inner.as_ref() {
                finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => {
                    e.category()
                }
                _ => "FinalizerFailed",
            },
        }
    }
}

/// Shared state of the controller.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Operator settings.
    pub config: OperatorConfig,
    /// Identity's tenant directory, when configured.
    pub identity: Option<IdentityClient>,
    /// Name of this cluster in identity.
    pub cluster: String,
    /// The operator's namespace (admin Secrets of External databases).
    pub operator_namespace: String,
    /// Publishes events on Tenants.
    pub recorder: TenantEvents,
    /// Every Tenant as the controller's cache holds it (for host clashes).
    pub tenants: Store<Tenant>,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// What this process remembers of each Tenant.
    memory: memory::Memory,
    /// What this process remembers of each Tenant's backups (#19).
    pub backups: crate::backup::Backups,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

/// Where this operator stands: its cluster's name in identity and its own
/// namespace.
#[derive(Clone, Debug)]
pub struct Placement {
    /// Name of this cluster in identity.
    pub cluster: String,
    /// The operator's namespace.
    pub operator_namespace: String,
}

impl Context {
    /// A context for the given client and settings.
    pub fn new(
        client: Client,
        config: OperatorConfig,
        identity: Option<IdentityClient>,
        placement: Placement,
        recorder: TenantEvents,
        tenants: Store<Tenant>,
        metrics: Metrics,
    ) -> Self {
        Self {
            client,
            config,
            identity,
            cluster: placement.cluster,
            operator_namespace: placement.operator_namespace,
            recorder,
            tenants,
            metrics,
            memory: memory::Memory::default(),
            backups: crate::backup::Backups::default(),
        }
    }
}

fn uid(tenant: &Tenant) -> &str {
    tenant.metadata.uid.as_deref().unwrap_or_default()
}

fn now() -> Time {
    Time(Timestamp::now())
}

/// Entry point for the Controller.
pub async fn reconcile(tenant: Arc<Tenant>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let uid = uid(&tenant).to_owned();
    let api: Api<Tenant> = Api::all(ctx.client.clone());
    let result = finalizer(&api, FINALIZER, tenant, |event| async {
        match event {
            finalizer::Event::Apply(tenant) => apply(&tenant, &ctx).await,
            finalizer::Event::Cleanup(tenant) => cleanup::cleanup(&tenant, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics.observe_reconcile(
        result.as_ref().err().map(Error::category),
        started.elapsed(),
    );
    if result.is_ok() {
        ctx.memory.update(&uid, |m| m.failures = 0);
    }
    result
}

/// Backs off exponentially with jitter; waiting is not a failure.
pub fn error_policy(tenant: Arc<Tenant>, error: &Error, ctx: Arc<Context>) -> Action {
    if let Error::Finalizer(inner) = error
        && let finalizer::Error::CleanupFailed(Error::NamespaceTerminating(_)) = inner.as_ref()
    {
        return Action::requeue(Duration::from_secs(2));
    }
    let attempts = ctx.memory.update(uid(&tenant), |m| {
        m.failures = m.failures.saturating_add(1);
        m.failures
    });
    tracing::warn!(tenant = %tenant.name_any(), category = error.category(), attempts, error = %error, "reconcile failed");
    Action::requeue(backoff(attempts))
}

/// One pass over a live Tenant: admit → fetch → build → apply or observe →
/// identity → one status write.
async fn apply(tenant: &Tenant, ctx: &Context) -> Result<Action, Error> {
    let tenant_ctx = TenantContext::new(tenant, &ctx.config)?;
    let mut sleep = None;
    let observed = match admit(tenant, &tenant_ctx, ctx).await {
        Some(refused) => refused,
        None => {
            let step = sleep.insert(idle::step(tenant, &tenant_ctx, ctx).await);
            match converge(tenant, &tenant_ctx, ctx, step).await {
                Ok(observed) => observed,
                Err(Error::Refused(refusal)) => Observed::Refused(refusal),
                Err(error) => return Err(error),
            }
        }
    };
    if !matches!(observed, Observed::Applied { .. }) {
        // Nothing of it is applied now: the next admitted pass applies all.
        ctx.memory.update(uid(tenant), |m| m.applied = None);
    }
    let observed = sync_identity(tenant, &tenant_ctx, observed, ctx).await;
    let mut status = status::desired_status(
        tenant,
        &observed,
        &tenant_ctx.url(),
        &tenant_ctx.namespace,
        &now(),
    );
    let url = tenant_ctx.url();
    if let Some(step) = &sleep
        && matches!(observed, Observed::Applied { .. })
    {
        let view = idle::view(step, tenant, &url);
        crate::idle::status::overlay(
            &mut status,
            &view,
            tenant.spec.suspended,
            tenant.metadata.generation,
            &now(),
        );
    }
    let restoring = restore::overlay(tenant, &observed, &mut status, ctx);
    let backup_wait = observe_backups(tenant, &tenant_ctx, &observed, &mut status, ctx).await;
    let idle_wait = sleep.as_ref().and_then(|s| s.recheck);
    let wait = match (backup_wait, idle_wait) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let action = restoring.unwrap_or_else(|| next_action(tenant, &observed, status.phase, wait));
    report::write_status(tenant, status, ctx).await?;
    Ok(action)
}

/// Step 1: what the Tenant may not have, as the status to show. Reads only
/// the Tenant and the controller's cache.
async fn admit(tenant: &Tenant, tenant_ctx: &TenantContext<'_>, ctx: &Context) -> Option<Observed> {
    if let Err(errors) = validate(tenant) {
        return Some(Observed::Invalid(errors));
    }
    // A cache still filling could hide the older holder of a host.
    if ctx.tenants.wait_until_ready().await.is_err() {
        tracing::warn!("the Tenant cache is gone; host clashes are not checked");
    }
    let host = tenant_ctx.host();
    let base = &ctx.config.base_domain;
    let candidates = ctx
        .tenants
        .state_filter(|other| claims::may_hold(other, &host, base));
    claims::check_host(tenant_ctx, candidates.iter().map(AsRef::as_ref))
        .err()
        .map(Observed::Refused)
}

/// Steps 2 to 4: fetch the inputs, build the children, apply them (or only
/// read them back when this process applied the same moments ago).
async fn converge(
    tenant: &Tenant,
    tenant_ctx: &TenantContext<'_>,
    ctx: &Context,
    sleep: &mut idle::IdleStep,
) -> Result<Observed, Error> {
    let namespace = &tenant_ctx.namespace;
    let cached = ctx.memory.get(uid(tenant)).applied.filter(|a| a.fresh());
    // The namespace first: everything lives in it, and an existing
    // credentials Secret in it is read back rather than regenerated.
    let password = match &cached {
        Some(applied) => applied.password.clone(),
        None => {
            children::apply_namespace(tenant, tenant_ctx, ctx).await?;
            children::database_password(&ctx.client, namespace).await?
        }
    };
    let (credentials, external) = match &tenant.spec.database.external {
        Some(external) if tenant.spec.database.mode == DatabaseMode::External => {
            match database::provision(tenant_ctx, &external.admin_secret_ref, &password, ctx).await
            {
                Ok(credentials) => (credentials, Some(DatabaseState::ExternalProvisioned)),
                // Without a database the instance cannot start: report it,
                // keeping what already runs.
                Err(error) => {
                    return Ok(Observed::Applied {
                        database: DatabaseState::ExternalFailed(error.to_string()),
                        instance: status::WorkloadReadiness::default(),
                        identity: IdentityState::Pending,
                        version: tenant_ctx.version().to_owned(),
                    });
                }
            }
        }
        _ => (DatabaseCredentials::dedicated(tenant_ctx, password), None),
    };
    let remembered = cached.as_ref().and_then(|a| a.backup.as_ref());
    let (backup, remembered) = backup::wiring(tenant_ctx, ctx, remembered).await?;
    report_backup(tenant, &backup, ctx).await;
    let mut children = build::children_with_backup(tenant_ctx, &credentials, backup.setup());
    restore::shape(tenant, tenant_ctx, ctx, &mut children).await?;
    idle::shape(sleep, tenant_ctx, ctx, &mut children).await;
    let fingerprint = children::fingerprint(&children);
    // What this process applied moments ago, unchanged, is only read back;
    // everything is applied again when anything differs, a workload is
    // missing or was changed by someone else, or REAPPLY_AFTER has passed
    // (which also repairs drift of the children no watch reports).
    let observed = match &cached {
        Some(applied) if applied.fingerprint == fingerprint => {
            children::observe_workloads(&ctx.client, namespace, &children, &applied.workloads)
                .await?
        }
        _ => None,
    };
    let workloads = match observed {
        Some(workloads) => workloads,
        None => {
            if cached.is_some() {
                children::apply_namespace(tenant, tenant_ctx, ctx).await?;
            }
            let workloads = children::apply_children(&ctx.client, namespace, &children).await?;
            children::prune(&ctx.client, tenant_ctx, &children).await?;
            let applied = memory::Applied {
                fingerprint,
                password: credentials.password.clone(),
                backup: remembered,
                workloads: workloads.generations,
                at: std::time::Instant::now(),
            };
            ctx.memory
                .update(uid(tenant), |m| m.applied = Some(applied));
            workloads
        }
    };
    restore::run_pod(tenant, tenant_ctx, ctx).await;
    idle::finish_wake(sleep, &workloads.instance, workloads.database.as_ref(), ctx);
    Ok(Observed::Applied {
        database: external
            .unwrap_or_else(|| DatabaseState::Dedicated(workloads.database.unwrap_or_default())),
        instance: workloads.instance,
        identity: IdentityState::Pending,
        version: tenant_ctx.version().to_owned(),
    })
}

/// Remembers why a Tenant that wants backups is not wired for them (for
/// its status) and says so once per new reason, in the log and as a
/// Warning event.
async fn report_backup(tenant: &Tenant, backup: &BackupWiring, ctx: &Context) {
    let reason = match backup {
        BackupWiring::Unavailable(reason) => Some(reason.clone()),
        _ => None,
    };
    let previous = ctx.memory.update(uid(tenant), |m| {
        std::mem::replace(&mut m.backup_unavailable, reason.clone())
    });
    if let Some(reason) = reason
        && previous.as_ref() != Some(&reason)
    {
        tracing::warn!(tenant = %tenant.name_any(), %reason, "backups are not wired");
        report::publish_warning(tenant, "BackupUnavailable", &reason, ctx).await;
    }
}

/// The backup part of the status (#19, [`crate::backup`]); returns when
/// to look again for a due backup or the archiving check.
async fn observe_backups(
    tenant: &Tenant,
    tenant_ctx: &TenantContext<'_>,
    observed: &Observed,
    status: &mut atoll_crds::TenantStatus,
    ctx: &Context,
) -> Option<Duration> {
    if !matches!(observed, Observed::Applied { .. }) {
        return None;
    }
    // An External database restored from a dump is dumped once restored.
    let restoring = tenant.spec.restore.is_some()
        && ctx
            .memory
            .get(uid(tenant))
            .restore
            .is_none_or(|v| v.phase() != atoll_crds::RestorePhase::Completed);
    let database_ready = match observed {
        Observed::Applied {
            database: DatabaseState::Dedicated(db),
            ..
        } => db.complete(),
        Observed::Applied {
            database: DatabaseState::ExternalProvisioned,
            ..
        } => !restoring,
        _ => false,
    };
    let unavailable = ctx.memory.get(uid(tenant)).backup_unavailable;
    let view = crate::backup::TenantView {
        namespace: &tenant_ctx.namespace,
        unavailable: unavailable.as_deref(),
        database_ready,
    };
    let (report, wait) = crate::backup::observe(tenant, view, ctx).await;
    let times = report.status.as_ref().map(|b| {
        let time = |t: &Option<Time>| t.as_ref().map(|t| t.0);
        (time(&b.last_successful_backup), time(&b.last_archived_time))
    });
    let phase = status.phase.filter(|_| times.is_some());
    let (success, archived) = times.unwrap_or_default();
    ctx.metrics
        .set_backup_times(&tenant.name_any(), phase, success, archived);
    crate::backup::apply_report(status, report, tenant.metadata.generation, &now());
    wait
}

/// Step 5: registers the tenant with identity once its instance is
/// reachable, and again whenever the record (members, URL, phase)
/// changes; returns what was observed with identity's state in it.
async fn sync_identity(
    tenant: &Tenant,
    tenant_ctx: &TenantContext<'_>,
    observed: Observed,
    ctx: &Context,
) -> Observed {
    let Observed::Applied {
        database,
        instance,
        version,
        ..
    } = observed
    else {
        return observed;
    };
    if matches!(database, DatabaseState::ExternalFailed(_)) {
        // No database, no instance: nothing to register yet.
        return Observed::Applied {
            database,
            instance,
            identity: IdentityState::Pending,
            version,
        };
    }
    let remembered = ctx.memory.get(uid(tenant));
    let mut identity = match (&ctx.identity, remembered.identity) {
        (None, _) => IdentityState::NotConfigured,
        (Some(_), Some(state)) => state,
        (Some(_), None) => IdentityState::Pending,
    };
    let reachable = instance.complete();
    let mut observed = Observed::Applied {
        database,
        instance,
        identity: identity.clone(),
        version,
    };
    if let Some(client) = &ctx.identity
        && (reachable || identity == IdentityState::Synced)
    {
        let phase = status::phase(tenant, &observed);
        let url = tenant_ctx.url();
        let record = TenantRecord::new(tenant, &url, phase.as_str(), &ctx.cluster);
        if remembered.registered.as_ref() != Some(&record) {
            identity = match client.register(tenant_ctx.name, &record).await {
                Ok(()) => IdentityState::Synced,
                Err(IdentityError::NameConflict(_)) => IdentityState::NameConflict,
                Err(error) => IdentityState::Unavailable(error.to_string()),
            };
            let accepted = (identity == IdentityState::Synced).then_some(record);
            let state = identity.clone();
            ctx.memory.update(uid(tenant), |m| {
                if accepted.is_some() {
                    m.registered = accepted;
                }
                m.identity = Some(state);
            });
            if let Observed::Applied { identity: slot, .. } = &mut observed {
                *slot = identity;
            }
        }
    }
    observed
}

/// When to look again.
fn next_action(
    tenant: &Tenant,
    observed: &Observed,
    phase: Option<Phase>,
    backup_wait: Option<Duration>,
) -> Action {
    let at_most = |d: Duration| backup_wait.map_or(d, |w| w.min(d));
    match observed {
        // Nothing to retry until someone changes the Tenant.
        Observed::Invalid(_) => Action::await_change(),
        // The holder of the host or namespace may let go of it; no event
        // tells us, so look again now and then.
        Observed::Refused(_) => Action::requeue(Duration::from_secs(60)),
        Observed::Applied {
            database: DatabaseState::ExternalFailed(_),
            ..
        } => Action::requeue(backoff(4)),
        Observed::Applied {
            identity: IdentityState::Unavailable(_),
            ..
        } => Action::requeue(backoff(3)),
        _ if matches!(phase, Some(Phase::Ready | Phase::Sleeping)) || tenant.spec.suspended => {
            Action::requeue(at_most(Duration::from_secs(600)))
        }
        // Owned workloads wake us on every status change; this is a safety net.
        _ => Action::requeue(at_most(Duration::from_secs(30))),
    }
}
