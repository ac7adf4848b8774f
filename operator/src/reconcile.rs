//! The reconcile pipeline: fetch → validate → build → apply → observe →
//! sync identity → status. Only the apply, observe, identity and status
//! steps do I/O; validation, building and status computation are pure.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atoll_crds::{DatabaseMode, Phase, Tenant, TenantStatus, validate};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::{NamespaceResourceScope, jiff::Timestamp};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::build::{
    self, BuildError, Children, DATABASE_SECRET, DatabaseCredentials, FIELD_MANAGER,
    MANAGED_BY_LABEL, TENANT_LABEL, TenantContext,
};
use crate::claims::{self, Refusal};
use crate::config::OperatorConfig;
use crate::identity::{IdentityClient, IdentityError, TenantRecord};
use crate::metrics::Metrics;
use crate::status::{self, DatabaseState, IdentityState, Observed, WorkloadReadiness};

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
    #[error("removing the tenant's external database: {0}")]
    ExternalDatabase(String),
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

/// Publishes events on Tenants through a fixed set of [`Recorder`]s, each
/// for its share of the tenant names.
///
/// A `Recorder` keeps the events of the last minutes so that a repeated
/// event patches its series instead of creating another, and sweeps that
/// whole cache on every publish: one recorder for thousands of tenants
/// makes each publish cost O(tenants). A tenant always goes through the
/// same recorder, so its repeated events still form one series.
pub struct TenantEvents {
    shards: Vec<Recorder>,
}

impl Debug for TenantEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantEvents")
            .field("shards", &self.shards.len())
            .finish()
    }
}

impl TenantEvents {
    /// Recorders sharing one client and reporter.
    const SHARDS: usize = 64;

    /// Recorders reporting as `reporter`.
    pub fn new(client: &Client, reporter: &Reporter) -> Self {
        Self {
            shards: (0..Self::SHARDS)
                .map(|_| Recorder::new(client.clone(), reporter.clone()))
                .collect(),
        }
    }

    /// The recorder for a tenant's events.
    fn for_tenant(&self, name: &str) -> &Recorder {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let hash = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .hash_one(name);
        &self.shards[(hash % self.shards.len() as u64) as usize]
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
    /// Consecutive failures per tenant, for exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// The last record identity accepted per tenant, so an unchanged tenant
    /// is not pushed again.
    synced: Mutex<HashMap<String, TenantRecord>>,
    /// Identity state per tenant from its last push.
    identity_state: Mutex<HashMap<String, IdentityState>>,
    /// External databases provisioned by this process (by tenant), so the
    /// shared server is not visited on every resync.
    provisioned: Mutex<HashMap<String, DatabaseCredentials>>,
    /// What this process last applied per Tenant uid.
    applied: Mutex<HashMap<String, Applied>>,
}

/// A full apply of a Tenant's objects by this process.
#[derive(Clone)]
struct Applied {
    /// Digest of the objects applied.
    fingerprint: u64,
    /// The database password they carry (read from the Secret once).
    password: String,
    /// Generations of the StatefulSet and Deployment as applied.
    workloads: [Option<i64>; 2],
    /// When.
    at: std::time::Instant,
}

/// How long a full apply is trusted before the next reconcile applies
/// everything again (and so repairs hand edits to children no watch reports).
const REAPPLY_AFTER: Duration = Duration::from_secs(300);

impl Debug for Context {
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
            failures: Mutex::default(),
            synced: Mutex::default(),
            identity_state: Mutex::default(),
            provisioned: Mutex::default(),
            applied: Mutex::default(),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Entry point for the Controller.
pub async fn reconcile(tenant: Arc<Tenant>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let name = tenant.name_any();
    let api: Api<Tenant> = Api::all(ctx.client.clone());
    let result = finalizer(&api, FINALIZER, tenant, |event| async {
        match event {
            finalizer::Event::Apply(tenant) => apply(&tenant, &ctx).await,
            finalizer::Event::Cleanup(tenant) => cleanup(&tenant, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics.observe_reconcile(
        result.as_ref().err().map(Error::category),
        started.elapsed(),
    );
    if result.is_ok() {
        lock(&ctx.failures).remove(&name);
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
    let name = tenant.name_any();
    let attempts = {
        let mut failures = lock(&ctx.failures);
        let count = failures.entry(name.clone()).or_insert(0);
        *count = count.saturating_add(1);
        *count
    };
    tracing::warn!(tenant = %name, category = error.category(), attempts, error = %error, "reconcile failed");
    Action::requeue(backoff(attempts))
}

/// 1 s, 2 s, 4 s … capped at 5 minutes, each scaled by a random 0.5–1.5.
pub fn backoff(attempts: u32) -> Duration {
    let base = 2f64
        .powi(attempts.saturating_sub(1).min(9) as i32)
        .min(300.0);
    let mut byte = [0u8; 1];
    let jitter = match getrandom::fill(&mut byte) {
        Ok(()) => 0.5 + f64::from(byte[0]) / 255.0,
        Err(_) => 1.0,
    };
    Duration::from_secs_f64(base * jitter)
}

/// Errors worth another try within the same reconcile: the server was
/// briefly unable (5xx, 429), a write raced another (409), or the
/// connection failed.
fn is_transient(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => matches!(status.code, 409 | 429 | 500 | 502 | 503 | 504),
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// Runs one idempotent API call, retrying transient failures a few times
/// with short jittered delays, so a flaky API server costs milliseconds
/// rather than a whole reconcile and its backoff.
async fn retry<T, F, Fut>(mut call: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut attempt = 0u32;
    loop {
        match call().await {
            Err(error) if attempt < 4 && is_transient(&error) => {
                attempt += 1;
                let delay = Duration::from_millis(25 << attempt).mul_f64(backoff(1).as_secs_f64());
                tokio::time::sleep(delay).await;
            }
            result => return result,
        }
    }
}

fn now() -> Time {
    Time(Timestamp::now())
}

/// Server-side apply of one namespaced child under our field manager.
async fn apply_namespaced<K>(client: &Client, namespace: &str, object: &K) -> Result<K, Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + k8s_openapi::Resource
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let name = object.meta().name.clone().unwrap_or_default();
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let patch = Patch::Apply(object);
    retry(|| api.patch(&name, &params, &patch))
        .await
        .map_err(|source| Error::Apply {
            kind: <K as k8s_openapi::Resource>::KIND,
            name,
            source,
        })
}

/// The database password: the one already in the namespace, or a new one.
async fn database_password(client: &Client, namespace: &str) -> Result<String, Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let existing = retry(|| secrets.get_opt(DATABASE_SECRET))
        .await
        .map_err(|source| Error::Read {
            what: format!("Secret {namespace}/{DATABASE_SECRET}"),
            source,
        })?;
    let stored = existing
        .and_then(|s| s.data)
        .and_then(|mut data| data.remove("password"))
        .and_then(|bytes| String::from_utf8(bytes.0).ok())
        .filter(|p| !p.is_empty());
    Ok(stored.unwrap_or_else(generate_password))
}

/// 32 random characters from [A-Za-z0-9].
fn generate_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(32);
    while out.len() < 32 {
        let mut bytes = [0u8; 64];
        if getrandom::fill(&mut bytes).is_err() {
            // The OS random source is required; an empty password would be
            // worse than stopping here.
            panic!("the operating system's random source failed");
        }
        // Rejection sampling keeps the distribution uniform.
        for byte in bytes {
            if usize::from(byte) < ALPHABET.len() * 4 && out.len() < 32 {
                out.push(char::from(ALPHABET[usize::from(byte) % ALPHABET.len()]));
            }
        }
    }
    out
}

fn readiness_of_deployment(d: &Deployment) -> WorkloadReadiness {
    let status = d.status.clone().unwrap_or_default();
    WorkloadReadiness {
        desired: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        ready: status.ready_replicas.unwrap_or(0),
        updated: status.updated_replicas.unwrap_or(0),
        observed_current: status.observed_generation.is_some()
            && status.observed_generation == d.metadata.generation,
    }
}

fn readiness_of_stateful_set(s: &StatefulSet) -> WorkloadReadiness {
    let status = s.status.clone().unwrap_or_default();
    WorkloadReadiness {
        desired: s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        ready: status.ready_replicas.unwrap_or(0),
        updated: status.updated_replicas.unwrap_or(0),
        observed_current: status.observed_generation.is_some()
            && status.observed_generation == s.metadata.generation,
    }
}

async fn apply(tenant: &Tenant, ctx: &Context) -> Result<Action, Error> {
    let tenant_ctx = TenantContext::new(tenant, &ctx.config)?;
    let url = tenant_ctx.url();
    let namespace = tenant_ctx.namespace.clone();

    if let Err(errors) = validate(tenant) {
        let observed = Observed::Invalid(errors);
        let status = status::desired_status(tenant, &observed, &url, &namespace, &now());
        write_status(tenant, status, ctx).await?;
        // Nothing to retry until someone changes the Tenant.
        return Ok(Action::await_change());
    }
    let refusal = match host_refusal(&tenant_ctx, ctx).await {
        Some(refusal) => Err(Error::Refused(refusal)),
        None => apply_valid(tenant, &tenant_ctx, ctx).await,
    };
    match refusal {
        Err(Error::Refused(refusal)) => {
            lock(&ctx.applied).remove(tenant.metadata.uid.as_deref().unwrap_or_default());
            let observed = Observed::Refused(refusal);
            let status = status::desired_status(tenant, &observed, &url, &namespace, &now());
            write_status(tenant, status, ctx).await?;
            // The holder of the host or namespace may let go of it; no
            // event tells us, so look again now and then.
            Ok(Action::requeue(Duration::from_secs(60)))
        }
        result => result,
    }
}

/// A host clash with an older Tenant or identity, or a host outside the
/// allowed domains. Reads only the controller's cache.
async fn host_refusal(tenant_ctx: &TenantContext<'_>, ctx: &Context) -> Option<Refusal> {
    // A cache still filling could hide the older holder of a host.
    if ctx.tenants.wait_until_ready().await.is_err() {
        tracing::warn!("the Tenant cache is gone; host clashes are not checked");
    }
    let host = tenant_ctx.host();
    let base = &ctx.config.base_domain;
    let candidates = ctx
        .tenants
        .state_filter(|other| claims::may_hold(other, &host, base));
    claims::check_host(tenant_ctx, candidates.iter().map(AsRef::as_ref)).err()
}

/// Applies a valid Tenant whose host is its own.
async fn apply_valid(
    tenant: &Tenant,
    tenant_ctx: &TenantContext<'_>,
    ctx: &Context,
) -> Result<Action, Error> {
    let url = tenant_ctx.url();
    let namespace = tenant_ctx.namespace.clone();

    // The namespace first: everything else lives in it, and an existing
    // credentials Secret in it is read back rather than regenerated.
    let uid = tenant.metadata.uid.clone().unwrap_or_default();
    let cached = lock(&ctx.applied)
        .get(&uid)
        .filter(|applied| applied.at.elapsed() < REAPPLY_AFTER)
        .cloned();
    let mut namespace_applied = false;
    let password = match &cached {
        Some(applied) => applied.password.clone(),
        None => {
            apply_namespace(tenant, tenant_ctx, ctx).await?;
            namespace_applied = true;
            database_password(&ctx.client, &namespace).await?
        }
    };
    let (credentials, external) = match &tenant.spec.database.external {
        Some(external) if tenant.spec.database.mode == DatabaseMode::External => {
            match provision_external(tenant_ctx.name, &external.admin_secret_ref, &password, ctx)
                .await
            {
                Ok(credentials) => (credentials, Some(DatabaseState::ExternalProvisioned)),
                Err(message) => {
                    // Without a database the instance cannot start; report
                    // and retry with backoff, keeping what already runs.
                    let observed = Observed::Applied {
                        database: DatabaseState::ExternalFailed(message),
                        instance: WorkloadReadiness::default(),
                        identity: IdentityState::Pending,
                        version: tenant_ctx.version().to_owned(),
                    };
                    let status =
                        status::desired_status(tenant, &observed, &url, &namespace, &now());
                    write_status(tenant, status, ctx).await?;
                    return Ok(Action::requeue(backoff(4)));
                }
            }
        }
        _ => (DatabaseCredentials::dedicated(tenant_ctx, password), None),
    };
    let children = build::children(tenant_ctx, &credentials);
    let fingerprint = fingerprint(&children);
    // What this process applied moments ago, unchanged, is only read back;
    // everything is applied again when anything differs, a workload is
    // missing, or REAPPLY_AFTER has passed (which also repairs drift of
    // the children no watch reports).
    let observed = match &cached {
        Some(applied) if applied.fingerprint == fingerprint => {
            observe_workloads(&ctx.client, &namespace, &children, &applied.workloads).await?
        }
        _ => None,
    };
    let workloads = match observed {
        Some(workloads) => workloads,
        None => {
            if !namespace_applied {
                apply_namespace(tenant, tenant_ctx, ctx).await?;
            }
            let workloads = apply_children(&ctx.client, &namespace, &children).await?;
            prune(&ctx.client, tenant_ctx, &children).await?;
            lock(&ctx.applied).insert(
                uid,
                Applied {
                    fingerprint,
                    password: credentials.password.clone(),
                    workloads: workloads.generations,
                    at: std::time::Instant::now(),
                },
            );
            workloads
        }
    };
    let Workloads {
        database, instance, ..
    } = workloads;
    let database =
        external.unwrap_or_else(|| DatabaseState::Dedicated(database.unwrap_or_default()));
    let version = tenant_ctx.version().to_owned();
    let identity = lock(&ctx.identity_state)
        .get(tenant_ctx.name)
        .cloned()
        .unwrap_or(if ctx.identity.is_some() {
            IdentityState::Pending
        } else {
            IdentityState::NotConfigured
        });
    let observed = |identity: IdentityState| Observed::Applied {
        database: database.clone(),
        instance: instance.clone(),
        identity,
        version: version.clone(),
    };
    let mut status = status::desired_status(
        tenant,
        &observed(identity.clone()),
        &url,
        &namespace,
        &now(),
    );

    // Register with identity once the instance is reachable, and whenever
    // the record changes (members, URL, phase).
    if let Some(client) = &ctx.identity
        && (instance.complete() || matches!(identity, IdentityState::Synced))
    {
        let phase = status.phase.map(Phase::as_str).unwrap_or("Provisioning");
        let record = TenantRecord::new(tenant, &url, phase, &ctx.cluster);
        let unchanged = lock(&ctx.synced).get(tenant_ctx.name) == Some(&record);
        if !unchanged {
            let state = match client.register(tenant_ctx.name, &record).await {
                Ok(()) => {
                    lock(&ctx.synced).insert(tenant_ctx.name.to_owned(), record);
                    IdentityState::Synced
                }
                Err(IdentityError::NameConflict(_)) => IdentityState::NameConflict,
                Err(error) => IdentityState::Unavailable(error.to_string()),
            };
            lock(&ctx.identity_state).insert(tenant_ctx.name.to_owned(), state.clone());
            status = status::desired_status(tenant, &observed(state), &url, &namespace, &now());
        }
    }
    let retry_identity = matches!(
        lock(&ctx.identity_state).get(tenant_ctx.name),
        Some(IdentityState::Unavailable(_))
    );
    let ready = status.phase == Some(Phase::Ready);
    write_status(tenant, status, ctx).await?;
    Ok(if retry_identity {
        Action::requeue(backoff(3))
    } else if ready || tenant.spec.suspended {
        Action::requeue(Duration::from_secs(600))
    } else {
        // Owned workloads wake us on every status change; this is a safety net.
        Action::requeue(Duration::from_secs(30))
    })
}

/// Reads the admin URL and provisions the tenant's database on the shared
/// server; the error is a message for status (never a secret).
async fn provision_external(
    tenant: &str,
    secret_ref: &atoll_crds::SecretKeySelector,
    password: &str,
    ctx: &Context,
) -> Result<DatabaseCredentials, String> {
    if let Some(credentials) = lock(&ctx.provisioned).get(tenant)
        && credentials.password == password
    {
        return Ok(credentials.clone());
    }
    let admin_url = admin_url(secret_ref, ctx).await?;
    let credentials = crate::external::provision(&admin_url, tenant, password)
        .await
        .map_err(|e| e.to_string())?;
    lock(&ctx.provisioned).insert(tenant.to_owned(), credentials.clone());
    Ok(credentials)
}

async fn admin_url(
    secret_ref: &atoll_crds::SecretKeySelector,
    ctx: &Context,
) -> Result<String, String> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ctx.operator_namespace);
    let place = format!("Secret {}/{}", ctx.operator_namespace, secret_ref.name);
    let secret = secrets
        .get_opt(&secret_ref.name)
        .await
        .map_err(|e| format!("reading {place}: {e}"))?
        .ok_or_else(|| format!("{place} (spec.database.external.adminSecretRef) does not exist"))?;
    if secret
        .labels()
        .get(DATABASE_ADMIN_LABEL)
        .map(String::as_str)
        != Some("true")
    {
        // Only Secrets the platform admin marked for this purpose: a Tenant
        // must not be able to make the operator use any other secret.
        return Err(format!(
            "{place} (spec.database.external.adminSecretRef) is not labelled {DATABASE_ADMIN_LABEL}=true; only Secrets the platform admin labelled so may be used"
        ));
    }
    secret
        .data
        .and_then(|mut data| data.remove(&secret_ref.key))
        .and_then(|bytes| String::from_utf8(bytes.0).ok())
        .ok_or_else(|| format!("{place} has no key {:?}", secret_ref.key))
}

/// Applies the namespace; a namespace kept by a Retain deletion of another
/// Tenant of this name is adopted (its retained mark removed).
async fn apply_namespace(
    tenant: &Tenant,
    tenant_ctx: &TenantContext<'_>,
    ctx: &Context,
) -> Result<(), Error> {
    let namespace = &tenant_ctx.namespace;
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    // Create or adopt only what the operator labelled for this Tenant: a
    // Tenant must never take over a namespace someone else made.
    let existing = retry(|| namespaces.get_opt(namespace))
        .await
        .map_err(|source| Error::Read {
            what: format!("Namespace {namespace}"),
            source,
        })?;
    claims::check_namespace(
        tenant_ctx.name,
        namespace,
        existing.as_ref().map(|ns| ns.labels()),
        &ctx.operator_namespace,
    )
    .map_err(Error::Refused)?;
    let namespace_object = build::namespace(tenant_ctx);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let patch = Patch::Apply(&namespace_object);
    let apply_error = |source| Error::Apply {
        kind: "Namespace",
        name: namespace.clone(),
        source,
    };
    let applied = retry(|| namespaces.patch(namespace, &params, &patch))
        .await
        .map_err(apply_error)?;
    let retained_from = applied.annotations().get(RETAINED_FROM_ANNOTATION);
    if applied.labels().contains_key(RETAINED_LABEL)
        && retained_from.map(String::as_str) != tenant.metadata.uid.as_deref()
    {
        // A new Tenant of this name is back: what was kept is in use again.
        // (A last reconcile of the deleted Tenant, same uid, changes nothing.)
        let adopt = serde_json::json!({"metadata": {
            "labels": {RETAINED_LABEL: null},
            "annotations": {RETAINED_FROM_ANNOTATION: null},
        }});
        let (merge, adopt) = (PatchParams::default(), Patch::Merge(&adopt));
        retry(|| namespaces.patch(namespace, &merge, &adopt))
            .await
            .map_err(apply_error)?;
    }
    Ok(())
}

/// A stable digest of everything the reconciler would apply.
fn fingerprint(children: &Children) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    match children.to_values() {
        Ok(values) => serde_json::to_string(&values)
            .unwrap_or_default()
            .hash(&mut hasher),
        // Cannot happen for k8s-openapi types; never matches a cache entry.
        Err(_) => std::time::Instant::now().hash(&mut hasher),
    }
    hasher.finish()
}

/// Readiness of the workloads and the generations their specs are at.
struct Workloads {
    database: Option<WorkloadReadiness>,
    instance: WorkloadReadiness,
    /// metadata.generation of the StatefulSet (if any) and the Deployment.
    generations: [Option<i64>; 2],
}

/// The workloads as they are, or None when one is missing or its spec was
/// changed by someone else since `applied` (then everything is applied
/// again).
async fn observe_workloads(
    client: &Client,
    namespace: &str,
    children: &Children,
    applied: &[Option<i64>; 2],
) -> Result<Option<Workloads>, Error> {
    let read = |what: &str| {
        let what = format!("{what} {namespace}");
        move |source| Error::Read { what, source }
    };
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let Some(deployment) = retry(|| deployments.get_opt(build::INSTANCE))
        .await
        .map_err(read("Deployment"))?
    else {
        return Ok(None);
    };
    let (database, set_generation) = match &children.database_stateful_set {
        None => (None, None),
        Some(_) => {
            let sets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
            let Some(set) = retry(|| sets.get_opt(build::DATABASE))
                .await
                .map_err(read("StatefulSet"))?
            else {
                return Ok(None);
            };
            (
                Some(readiness_of_stateful_set(&set)),
                set.metadata.generation,
            )
        }
    };
    let generations = [set_generation, deployment.metadata.generation];
    Ok((&generations == applied).then(|| Workloads {
        database,
        instance: readiness_of_deployment(&deployment),
        generations,
    }))
}

/// Applies every namespaced child in order (the caller applies the
/// namespace first); returns the workloads as applied.
async fn apply_children(
    client: &Client,
    namespace: &str,
    children: &Children,
) -> Result<Workloads, Error> {
    apply_namespaced(client, namespace, &children.resource_quota).await?;
    apply_namespaced(client, namespace, &children.limit_range).await?;
    for policy in &children.network_policies {
        apply_namespaced(client, namespace, policy).await?;
    }
    apply_namespaced(client, namespace, &children.instance_service_account).await?;
    if let Some(sa) = &children.database_service_account {
        apply_namespaced(client, namespace, sa).await?;
    }
    apply_namespaced(client, namespace, &children.database_secret).await?;
    if let Some(config_map) = &children.database_init_config_map {
        apply_namespaced(client, namespace, config_map).await?;
    }
    let (mut database, mut set_generation) = (None, None);
    if let Some(service) = &children.database_service {
        apply_namespaced(client, namespace, service).await?;
    }
    if let Some(sts) = &children.database_stateful_set {
        let applied = apply_namespaced(client, namespace, sts).await?;
        database = Some(readiness_of_stateful_set(&applied));
        set_generation = applied.metadata.generation;
    }
    apply_namespaced(client, namespace, &children.instance_service).await?;
    let deployment = apply_namespaced(client, namespace, &children.instance_deployment).await?;
    apply_namespaced(client, namespace, &children.instance_ingress).await?;
    Ok(Workloads {
        database,
        instance: readiness_of_deployment(&deployment),
        generations: [set_generation, deployment.metadata.generation],
    })
}

/// Removes the children the Tenant no longer needs: today the Dedicated
/// database's objects once the Tenant uses an External one. Only objects
/// carrying this Tenant's labels under the operator's field manager are
/// removed, each with its uid as precondition; the database volume and the
/// credentials Secret (what a Retain deletion keeps) are never touched.
/// Reads one StatefulSet per full apply of an External Tenant, and nothing
/// else unless there is something to remove.
async fn prune(
    client: &Client,
    tenant_ctx: &TenantContext<'_>,
    children: &Children,
) -> Result<(), Error> {
    if children.database_stateful_set.is_some() {
        return Ok(());
    }
    let namespace = &tenant_ctx.namespace;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    let read = |source| Error::Read {
        what: format!("StatefulSet {namespace}/{}", build::DATABASE),
        source,
    };
    let Some(set) = retry(|| sets.get_opt(build::DATABASE))
        .await
        .map_err(read)?
    else {
        return Ok(());
    };
    if !is_ours(set.labels(), tenant_ctx.name) {
        return Ok(());
    }
    // The StatefulSet goes last, so that while it exists the others may too.
    prune_one::<NetworkPolicy>(client, tenant_ctx, build::DATABASE_NETWORK_POLICY).await?;
    prune_one::<Service>(client, tenant_ctx, build::DATABASE).await?;
    prune_one::<ServiceAccount>(client, tenant_ctx, build::DATABASE).await?;
    prune_one::<ConfigMap>(client, tenant_ctx, build::DATABASE_INIT).await?;
    prune_one::<StatefulSet>(client, tenant_ctx, build::DATABASE).await
}

fn is_ours(labels: &std::collections::BTreeMap<String, String>, tenant: &str) -> bool {
    labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(FIELD_MANAGER)
        && labels.get(TENANT_LABEL).map(String::as_str) == Some(tenant)
}

async fn prune_one<K>(
    client: &Client,
    tenant_ctx: &TenantContext<'_>,
    name: &str,
) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + k8s_openapi::Resource
        + Clone
        + Debug
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), &tenant_ctx.namespace);
    let error = |source| Error::Prune {
        kind: <K as k8s_openapi::Resource>::KIND,
        name: name.to_owned(),
        source,
    };
    let Some(object) = retry(|| api.get_opt(name)).await.map_err(error)? else {
        return Ok(());
    };
    if !is_ours(object.labels(), tenant_ctx.name) {
        return Ok(());
    }
    let params = DeleteParams {
        preconditions: object.uid().map(|uid| kube::api::Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    match retry(|| api.delete(name, &params)).await {
        Ok(_) => {
            tracing::info!(tenant = %tenant_ctx.name, kind = <K as k8s_openapi::Resource>::KIND, %name, "removed a child the Tenant no longer needs");
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(error(source)),
    }
}

/// Patches status only when it differs, and records phase transitions.
async fn write_status(tenant: &Tenant, status: TenantStatus, ctx: &Context) -> Result<(), Error> {
    let previous = tenant.status.clone().unwrap_or_default();
    if previous == status {
        return Ok(());
    }
    let api: Api<Tenant> = Api::all(ctx.client.clone());
    let patch = serde_json::json!({"status": status});
    let name = tenant.name_any();
    let params = PatchParams::default();
    let patch = Patch::Merge(&patch);
    retry(|| api.patch_status(&name, &params, &patch))
        .await
        .map_err(Error::PatchStatus)?;
    ctx.metrics.set_phase(&tenant.name_any(), status.phase);
    if previous.phase != status.phase || ready_reason(&previous) != ready_reason(&status) {
        publish_transition(tenant, &status, ctx).await;
    }
    Ok(())
}

fn ready_reason(status: &TenantStatus) -> Option<(String, String)> {
    atoll_crds::conditions::get(&status.conditions, atoll_crds::conditions::types::READY)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

async fn publish_transition(tenant: &Tenant, status: &TenantStatus, ctx: &Context) {
    let Some(ready) =
        atoll_crds::conditions::get(&status.conditions, atoll_crds::conditions::types::READY)
    else {
        return;
    };
    let warning = ready.reason == "InvalidSpec" || status.phase == Some(Phase::Degraded);
    let event = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: ready.reason.clone(),
        note: Some(ready.message.chars().take(1000).collect()),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    let recorder = ctx.recorder.for_tenant(&tenant.name_any());
    if let Err(error) = recorder.publish(&event, &tenant.object_ref(&())).await {
        tracing::warn!(tenant = %tenant.name_any(), error = %error, "could not publish event");
    }
}

/// Deletion: deregister from identity, then remove or release the data.
async fn cleanup(tenant: &Tenant, ctx: &Context) -> Result<Action, Error> {
    let name = tenant.name_any();
    let namespace = build::namespace_name(&ctx.config, &name);
    if let Ok(tenant_ctx) = TenantContext::new(tenant, &ctx.config) {
        let status = status::desired_status(
            tenant,
            &Observed::Deleting,
            &tenant_ctx.url(),
            &namespace,
            &now(),
        );
        write_status(tenant, status, ctx).await?;
    }
    if let Some(client) = &ctx.identity {
        client.deregister(&name).await.map_err(Error::Deregister)?;
        lock(&ctx.synced).remove(&name);
        lock(&ctx.identity_state).remove(&name);
    }
    ctx.metrics.set_phase(&name, None);
    if let Some(uid) = &tenant.metadata.uid {
        lock(&ctx.applied).remove(uid);
    }
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    // Only a namespace the operator labelled for this Tenant is deleted or
    // kept for it: one it was refused (NamespaceConflict) is not its own.
    let existing = namespaces
        .get_opt(&namespace)
        .await
        .map_err(Error::Cleanup)?
        .filter(|ns| {
            let own = claims::check_namespace(
                &name,
                &namespace,
                Some(ns.labels()),
                &ctx.operator_namespace,
            );
            if let Err(refusal) = &own {
                tracing::warn!(tenant = %name, %refusal, "leaving the namespace alone");
            }
            own.is_ok()
        });
    match tenant.spec.deletion_policy {
        atoll_crds::DeletionPolicy::Delete => {
            if let (DatabaseMode::External, Some(external)) =
                (tenant.spec.database.mode, &tenant.spec.database.external)
            {
                let url = admin_url(&external.admin_secret_ref, ctx)
                    .await
                    .map_err(Error::ExternalDatabase)?;
                crate::external::drop_database(&url, &name)
                    .await
                    .map_err(|e| Error::ExternalDatabase(e.to_string()))?;
                lock(&ctx.provisioned).remove(&name);
            }
            match existing {
                None => Ok(Action::await_change()),
                Some(ns) => {
                    if ns.metadata.deletion_timestamp.is_none() {
                        namespaces
                            .delete(&namespace, &DeleteParams::foreground())
                            .await
                            .map_err(Error::Cleanup)?;
                    }
                    Err(Error::NamespaceTerminating(namespace))
                }
            }
        }
        atoll_crds::DeletionPolicy::Retain => {
            // Under Retain the namespace and the credentials never had the
            // Tenant as owner (see `TenantContext::data_owner`), so the
            // garbage collector keeps them even if a reconcile that started
            // before the deletion applies them once more; the volume has no
            // owner (the StatefulSet retains it); everything else goes with
            // the Tenant. The patch labels what was kept, and detaches it in
            // case the policy was Delete when it was created.
            let release = serde_json::json!({
                "metadata": {
                    "ownerReferences": null,
                    "labels": {RETAINED_LABEL: "true"},
                    "annotations": {RETAINED_FROM_ANNOTATION: tenant.metadata.uid},
                }
            });
            let params = PatchParams::default();
            if existing.is_some() {
                namespaces
                    .patch(&namespace, &params, &Patch::Merge(&release))
                    .await
                    .map_err(Error::Cleanup)?;
                let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
                let owned = secrets
                    .get_opt(DATABASE_SECRET)
                    .await
                    .map_err(Error::Cleanup)?
                    .is_some_and(|secret| !secret.owner_references().is_empty());
                if owned {
                    let detach = serde_json::json!({"metadata": {"ownerReferences": null}});
                    secrets
                        .patch(DATABASE_SECRET, &params, &Patch::Merge(&detach))
                        .await
                        .map_err(Error::Cleanup)?;
                }
            }
            Ok(Action::await_change())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_long_random_and_url_safe() {
        let a = generate_password();
        let b = generate_password();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn backoff_grows_and_caps() {
        for attempts in 1..20 {
            let d = backoff(attempts).as_secs_f64();
            let base = 2f64.powi((attempts - 1).min(9) as i32).min(300.0);
            assert!(
                d >= base * 0.5 && d <= base * 1.5,
                "attempt {attempts}: {d}"
            );
        }
        assert!(backoff(30).as_secs_f64() <= 450.0);
    }
}
