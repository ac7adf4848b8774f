//! The retention sweep (#19, contract §7): the leader lists every tenant
//! in the platform store (`tenants/<uid>/tenant.json`) once at start and
//! then every `--backup-retention-sweep-seconds`, and applies retention to
//! each with the retention it declared: a live Tenant's `spec.backup`
//! (else its record's), a deleted one's as recorded in `tenant.json`.
//! The rule is `atoll_backup::retention::sweep`'s: the window is counted
//! from now, the newest backup always stays, and a tenant deleted more
//! than its retention ago is forgotten: its whole prefix and its
//! `names/` marker go, `tenant.json` last (a sweep cut short is finished
//! by the next). Prefixes without a record, or with no retention
//! recorded, are left alone and counted as skipped. Tenants whose
//! `spec.backup.objectStore` names a store of their own are swept only
//! after their own backups (that store is not listed here). An External
//! tenant's dumps are swept by the same window (`plan_dumps`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use atoll_backup::layout::Layout;
use atoll_backup::retention::{self, Sweep};
use atoll_backup::settings::Settings;
use atoll_backup::store;
use atoll_crds::Tenant;
use jiff::Timestamp;
use kube::Client;
use object_store::ObjectStore;

use super::access::TenantStore;
use super::register::TenantRecord;
use super::retention::Kind;
use crate::build::BackupStore;
use crate::reconcile::Context;

/// The platform store, opened with its credentials.
#[derive(Clone)]
pub struct PlatformStore {
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// Its layout (prefix).
    pub layout: Layout,
    /// Its settings (the tenant uid is set per tenant swept).
    pub settings: Settings,
}

impl std::fmt::Debug for PlatformStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformStore")
            .field("endpoint", &self.settings.endpoint)
            .field("bucket", &self.settings.bucket)
            .finish_non_exhaustive()
    }
}

impl PlatformStore {
    /// The store of one tenant in it.
    fn tenant(&self, uid: &str, name: &str) -> TenantStore {
        let mut settings = self.settings.clone();
        uid.clone_into(&mut settings.tenant_uid);
        settings.tenant_name = Some(name.to_owned());
        TenantStore {
            store: self.store.clone(),
            layout: self.layout.clone(),
            settings: Arc::new(settings),
        }
    }
}

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    /// Tenants (prefixes) in the store.
    pub tenants: usize,
    /// Of them, deleted Tenants.
    pub deleted: usize,
    /// Deleted Tenants whose every object went.
    pub forgotten: usize,
    /// Base backups and dumps deleted.
    pub backups: usize,
    /// WAL objects deleted.
    pub wal: usize,
    /// Tenants left alone (no record or no retention recorded).
    pub skipped: usize,
    /// Tenants whose sweep failed (logged each).
    pub failed: usize,
}

/// What happened to one tenant.
enum Done {
    Swept(retention::Plan, super::retention::Swept),
    Forgotten,
    Skipped(&'static str),
}

/// Sweeps every tenant of `platform` at `now`; `live` are the Tenants of
/// the cluster (their spec's retention wins over the record's).
pub async fn sweep(
    platform: &PlatformStore,
    live: &[Arc<Tenant>],
    client: &Client,
    now: Timestamp,
) -> Result<Counts, String> {
    let root = platform.layout.tenants_dir();
    let folders = store::list_folders(platform.store.as_ref(), &root)
        .await
        .map_err(|e| platform.settings.redact_error(&e))?;
    let mut counts = Counts::default();
    for folder in folders {
        let Some(uid) = folder.filename().map(str::to_owned) else {
            continue;
        };
        counts.tenants += 1;
        let tenant = live
            .iter()
            .find(|t| t.metadata.uid.as_deref() == Some(uid.as_str()));
        match sweep_tenant(platform, &uid, tenant.map(Arc::as_ref), client, now).await {
            Ok((deleted, done)) => {
                counts.deleted += usize::from(deleted);
                match done {
                    Done::Swept(plan, swept) => {
                        counts.backups += swept.backups.len();
                        counts.wal += swept.wal;
                        if !swept.backups.is_empty() || swept.wal > 0 {
                            tracing::info!(%uid, deleted, backups = ?swept.backups, wal = swept.wal, kept = plan.keep.len(), "retention sweep: expired backups deleted");
                        }
                    }
                    Done::Forgotten => {
                        counts.forgotten += 1;
                        tracing::info!(%uid, "retention sweep: the deleted tenant's retention has passed; all its objects were deleted");
                    }
                    Done::Skipped(why) => {
                        counts.skipped += 1;
                        tracing::info!(%uid, why, "retention sweep: tenant left alone");
                    }
                }
            }
            Err(error) => {
                counts.failed += 1;
                tracing::warn!(%uid, %error, "retention sweep of a tenant failed");
            }
        }
    }
    Ok(counts)
}

/// Sweeps one tenant: whether it is deleted, and what was done.
async fn sweep_tenant(
    platform: &PlatformStore,
    uid: &str,
    live: Option<&Tenant>,
    client: &Client,
    now: Timestamp,
) -> Result<(bool, Done), String> {
    let key = platform
        .layout
        .tenant_json(uid)
        .map_err(|e| e.to_string())?;
    let Some(bytes) = store::get_bytes(platform.store.as_ref(), &key)
        .await
        .map_err(|e| platform.settings.redact_error(&e))?
    else {
        return Ok((false, Done::Skipped("no tenant.json")));
    };
    let record: TenantRecord =
        serde_json::from_slice(&bytes).map_err(|e| format!("{key} is not a tenant record: {e}"))?;
    let deleted = record.deleted_at.is_some();
    let spec_retention = live.and_then(|t| t.spec.backup.as_ref().map(|b| b.retention.clone()));
    let Some(text) = spec_retention.or_else(|| record.retention.clone()) else {
        return Ok((deleted, Done::Skipped("no retention recorded")));
    };
    let keep_for = retention::parse_retention(&text).map_err(|e| e.to_string())?;
    let store = platform.tenant(uid, &record.name);
    let infos = super::retention::catalog(&store).await?;
    match retention::sweep(&infos, keep_for, now, record.deleted_at) {
        Sweep::Forget => {
            forget(&store, &record).await?;
            Ok((deleted, Done::Forgotten))
        }
        Sweep::Plan(plan) => {
            let backups = match live {
                Some(tenant) => super::list_backups(client, tenant).await,
                None => Vec::new(),
            };
            let mut swept =
                super::retention::apply(&store, &plan, Kind::BaseBackups, client, &backups).await?;
            // An External tenant's dumps, by the same window.
            let dumps = super::retention::dumps(&store).await?;
            if !dumps.is_empty() {
                let plan = retention::plan_dumps(&dumps, keep_for, now);
                let more =
                    super::retention::apply(&store, &plan, Kind::Dumps, client, &backups).await?;
                swept.backups.extend(more.backups);
                swept.tenant_backups.extend(more.tenant_backups);
            }
            Ok((deleted, Done::Swept(plan, swept)))
        }
    }
}

/// Deletes every object of the tenant: the backups' descriptions first (a
/// half-deleted backup is never taken for a complete one), then the rest,
/// its name marker, and `tenant.json` last.
async fn forget(store: &TenantStore, record: &TenantRecord) -> Result<(), String> {
    let uid = store.uid();
    let dir = store.layout.tenant_dir(uid).map_err(|e| e.to_string())?;
    let record_key = store.layout.tenant_json(uid).map_err(|e| e.to_string())?;
    let mut keys: Vec<_> = store::list(store.store.as_ref(), &dir)
        .await
        .map_err(|e| store.redact(&e))?
        .into_iter()
        .map(|meta| meta.location)
        .filter(|key| key != &record_key)
        .collect();
    keys.sort_by_key(|key| !matches!(key.filename(), Some("backup.json" | "dump.json")));
    for key in &keys {
        store::delete(store.store.as_ref(), key)
            .await
            .map_err(|e| store.redact(&e))?;
    }
    if let Ok(marker) = store.layout.name_marker(&record.name, uid) {
        store::delete(store.store.as_ref(), &marker)
            .await
            .map_err(|e| store.redact(&e))?;
    }
    store::delete(store.store.as_ref(), &record_key)
        .await
        .map_err(|e| store.redact(&e))
}

/// Opens the platform store (`Ok(None)`: none is configured).
async fn open_platform(ctx: &Context) -> Result<Option<PlatformStore>, String> {
    let config = &ctx.config.backup;
    let Some((endpoint, bucket)) = config.platform_store() else {
        return Ok(None);
    };
    let credentials = crate::reconcile::backup::platform_credentials(ctx)
        .await
        .map_err(|e| e.to_string())??;
    let platform = BackupStore {
        endpoint: endpoint.trim_end_matches('/').to_owned(),
        bucket: bucket.to_owned(),
        region: config.backup_region.clone(),
        path_style: config.backup_path_style,
        prefix: config.backup_prefix.clone(),
    };
    // The uid is set per tenant; this one only names the sweep.
    let settings =
        crate::restore::store::settings(&platform, credentials.as_ref(), "sweep", "sweep");
    let store = store::open(&settings).map_err(|e| settings.redact_error(&e))?;
    Ok(Some(PlatformStore {
        store,
        layout: Layout::new(settings.prefix.as_deref()),
        settings,
    }))
}

/// One sweep of the platform store, logged with its counts.
pub async fn sweep_platform(ctx: &Context) {
    let platform = match open_platform(ctx).await {
        Ok(Some(platform)) => platform,
        Ok(None) => return,
        Err(error) => {
            tracing::warn!(%error, "retention sweep: the platform store cannot be opened");
            return;
        }
    };
    let live = ctx.tenants.state();
    match sweep(&platform, &live, &ctx.client, Timestamp::now()).await {
        Ok(c) => tracing::info!(
            tenants = c.tenants,
            deleted = c.deleted,
            forgotten = c.forgotten,
            backups = c.backups,
            wal = c.wal,
            skipped = c.skipped,
            failed = c.failed,
            "retention sweep done"
        ),
        Err(error) => tracing::warn!(%error, "retention sweep: listing the tenants failed"),
    }
}

/// Sweeps once the Tenant cache is filled, then every
/// `--backup-retention-sweep-seconds`, until `stopped` resolves (run on
/// the leader only, like the controllers).
pub async fn run(ctx: Arc<Context>, stopped: impl Future<Output = ()>) {
    if ctx.config.backup.platform_store().is_none() {
        tracing::info!("no platform object store: no retention sweep");
        return;
    }
    let every = Duration::from_secs(ctx.config.backup.backup_retention_sweep_seconds);
    let work = async {
        if ctx.tenants.wait_until_ready().await.is_err() {
            return;
        }
        loop {
            sweep_platform(&ctx).await;
            tokio::time::sleep(every).await;
        }
    };
    tokio::select! {
        () = work => {}
        () = stopped => {}
    }
}
