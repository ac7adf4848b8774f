//! The TenantBackup controller (contract §7): Pending → (backup id chosen)
//! → `POST /backups` to the tenant's agent → Running → poll
//! `GET /backups/{id}` → Completed (size, objects, WAL range) or Failed
//! (why). Waits, Pending with a `Started=False` condition, while the
//! database is not ready or another backup runs; fails at once, saying
//! why, when the Tenant cannot be backed up. Runs on the leader only,
//! started next to the Tenant controller. An External tenant's backup is
//! a dump taken by a pod instead (`dump_pod`).

use std::sync::Arc;
use std::time::Duration;

use atoll_backup::layout::BackupId;
use atoll_crds::conditions::{self, Desired, types};
use atoll_crds::{
    BackupMethod, BackupPhase, DatabaseMode, Tenant, TenantBackup, TenantBackupStatus,
};
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};

use super::agent_client::{AgentPhase, Started};
use super::{BACKUP_ID_ANNOTATION, TENANT_LABEL, access, dump_pod, retention};
use crate::reconcile::Context;

/// The condition saying why a Pending backup has not started.
pub const STARTED: &str = "Started";
/// How often a running backup is polled.
pub(super) const POLL: Duration = Duration::from_secs(5);
/// A running backup is given up after this (the agent's own limit is 6 h).
const GIVE_UP: jiff::SignedDuration = jiff::SignedDuration::from_hours(7);
/// How often a waiting one looks again.
pub(super) const WAIT: Duration = Duration::from_secs(10);

/// Writing a TenantBackup failed (retried with backoff).
#[derive(Debug, thiserror::Error)]
#[error("updating TenantBackup {name}: {source}")]
pub struct Error {
    name: String,
    source: kube::Error,
}

/// Runs the TenantBackup controller until `stop` resolves (`served`
/// false: the CRD is missing, only waits for `stop`).
pub async fn run(
    api: Api<TenantBackup>,
    ctx: Arc<Context>,
    stop: impl std::future::Future<Output = ()> + Send + Sync + 'static,
    served: bool,
) {
    if !served {
        stop.await;
        return;
    }
    Controller::new(api, watcher::Config::default())
        .graceful_shutdown_on(stop)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "TenantBackup reconcile ended with an error");
            }
        })
        .await;
}

/// Entry point for the TenantBackup controller.
pub async fn reconcile(backup: Arc<TenantBackup>, ctx: Arc<Context>) -> Result<Action, Error> {
    let status = backup.status.clone().unwrap_or_default();
    match status.phase {
        Some(BackupPhase::Completed | BackupPhase::Failed) => Ok(Action::await_change()),
        Some(BackupPhase::Running) => follow(&backup, status, &ctx).await,
        None | Some(BackupPhase::Pending) => start(&backup, status, &ctx).await,
    }
}

/// Retries after a failed write.
pub fn error_policy(_backup: Arc<TenantBackup>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "TenantBackup reconcile failed");
    Action::requeue(Duration::from_secs(15))
}

/// Why a Tenant cannot be backed up now: `Err(message)` for good.
fn eligible(
    backup: &TenantBackup,
    tenant: Option<&Tenant>,
    status: &TenantBackupStatus,
) -> Result<(), String> {
    let name = &backup.spec.tenant;
    let Some(tenant) = tenant.filter(|t| t.metadata.deletion_timestamp.is_none()) else {
        return Err(format!(
            "Tenant {name} does not exist (or is being deleted)"
        ));
    };
    if let Some(uid) = &status.tenant_uid
        && tenant.metadata.uid.as_ref() != Some(uid)
    {
        return Err(format!(
            "Tenant {name} was deleted and created again (uid {uid} is gone): create a new TenantBackup"
        ));
    }
    match &tenant.spec.backup {
        None => Err(format!(
            "Tenant {name} has no spec.backup: set it to back the tenant up"
        )),
        Some(b) if !b.enabled => Err(format!("Tenant {name} has spec.backup.enabled false")),
        _ if tenant.spec.suspended => Err(format!(
            "Tenant {name} is suspended, so its database is stopped: resume it (spec.suspended false) and create a new TenantBackup"
        )),
        _ => Ok(()),
    }
}

async fn start(
    backup: &TenantBackup,
    mut status: TenantBackupStatus,
    ctx: &Context,
) -> Result<Action, Error> {
    ensure_label(backup, ctx).await?;
    let tenant = ctx.tenants.get(&ObjectRef::new(&backup.spec.tenant));
    if let Err(message) = eligible(backup, tenant.as_deref(), &status) {
        return fail(backup, status, message, ctx).await;
    }
    let Some(tenant) = tenant else {
        return Ok(Action::await_change());
    };
    let external = tenant.spec.database.mode == DatabaseMode::External;
    if status.backup_id.is_none() {
        // The id is fixed (and written) before the agent is asked, so a
        // retry after a lost answer asks for the same backup.
        let id = backup
            .annotations()
            .get(BACKUP_ID_ANNOTATION)
            .and_then(|id| id.parse::<BackupId>().ok())
            .unwrap_or_else(BackupId::now);
        status.backup_id = Some(id.to_string());
        status.tenant_uid = tenant.metadata.uid.clone();
        status.method = Some(match external {
            true => BackupMethod::Dump,
            false => BackupMethod::Base,
        });
        status.phase = Some(BackupPhase::Pending);
        write(backup, &status, ctx).await?;
        return Ok(Action::requeue(Duration::from_millis(100)));
    }
    if external {
        return dump_pod::start(backup, status, &tenant, ctx).await;
    }
    ask_agent(backup, status, &tenant, ctx).await
}

/// Asks the tenant's agent for the backup (its id fixed in `status`).
async fn ask_agent(
    backup: &TenantBackup,
    mut status: TenantBackupStatus,
    tenant: &Tenant,
    ctx: &Context,
) -> Result<Action, Error> {
    let id = status.backup_id.clone().unwrap_or_default();
    let ready = super::status_says(tenant, types::DATABASE_READY);
    let namespace = tenant.status.as_ref().and_then(|s| s.namespace.clone());
    let (true, Some(namespace)) = (ready, namespace) else {
        let why = format!(
            "waiting for the database of Tenant {} to be ready",
            tenant.name_any()
        );
        return wait(backup, status, "DatabaseNotReady", &why, ctx).await;
    };
    let agent = match access::agent(&ctx.client, ctx.backups.http(), &namespace).await {
        Ok(Some(agent)) => agent,
        Ok(None) => {
            return wait(
                backup,
                status,
                "AgentNotReady",
                "waiting for the database pod's address and the backup agent's token",
                ctx,
            )
            .await;
        }
        Err(why) => return wait(backup, status, "AgentNotReady", &why, ctx).await,
    };
    match agent.start_backup(&id, &backup.name_any()).await {
        Ok(Started::Started) => {}
        Ok(Started::Busy(running)) if running == id => {}
        Ok(Started::Busy(running)) => {
            let why = format!(
                "base backup {running} of this tenant is running; this one starts after it"
            );
            return wait(backup, status, "AnotherBackupRunning", &why, ctx).await;
        }
        Err(error) if error.status().is_some_and(|s| s < 500 && s != 409) => {
            return fail(backup, status, error.to_string(), ctx).await;
        }
        Err(error) => {
            return wait(backup, status, "AgentUnreachable", &error.to_string(), ctx).await;
        }
    }
    status.phase = Some(BackupPhase::Running);
    status.started_at = Some(Time(jiff::Timestamp::now()));
    status.message = None;
    set_started(
        &mut status,
        backup,
        true,
        "Started",
        &format!("base backup {id} is being taken"),
    );
    write(backup, &status, ctx).await?;
    Ok(Action::requeue(POLL))
}

async fn follow(
    backup: &TenantBackup,
    mut status: TenantBackupStatus,
    ctx: &Context,
) -> Result<Action, Error> {
    let id = status.backup_id.clone().unwrap_or_default();
    let tenant = ctx.tenants.get(&ObjectRef::new(&backup.spec.tenant));
    if status.method == Some(BackupMethod::Dump) {
        return dump_pod::follow(backup, status, tenant.as_deref(), ctx).await;
    }
    let namespace = tenant
        .as_ref()
        .and_then(|t| t.status.as_ref()?.namespace.clone());
    let Some(namespace) = namespace else {
        return fail(
            backup,
            status,
            format!("Tenant {} is gone", backup.spec.tenant),
            ctx,
        )
        .await;
    };
    let started = status.started_at.as_ref().map(|t| t.0);
    if started.is_some_and(|t| jiff::Timestamp::now() > t + GIVE_UP) {
        let why = format!(
            "base backup {id} did not finish within {} hours (the agent gives up after 6): see the backup-agent container's log; create a new TenantBackup",
            GIVE_UP.as_hours()
        );
        return fail(backup, status, why, ctx).await;
    }
    let agent = match access::agent(&ctx.client, ctx.backups.http(), &namespace).await {
        Ok(Some(agent)) => agent,
        _ => return Ok(Action::requeue(WAIT)),
    };
    let view = match agent.backup(&id).await {
        Ok(view) => view,
        Err(error) if error.status() == Some(404) => {
            let why = format!(
                "the backup agent no longer knows base backup {id} and it is not in the object store: the database pod restarted while it ran; create a new TenantBackup"
            );
            return fail(backup, status, why, ctx).await;
        }
        Err(error) => {
            tracing::debug!(backup = %backup.name_any(), %error, "polling the agent failed");
            return Ok(Action::requeue(WAIT));
        }
    };
    match (view.phase, view.info) {
        (AgentPhase::Running, _) | (AgentPhase::Completed, None) => Ok(Action::requeue(POLL)),
        (AgentPhase::Failed, _) => {
            let why = view
                .message
                .unwrap_or_else(|| "the base backup failed".to_owned());
            fail(backup, status, why, ctx).await
        }
        (AgentPhase::Completed, Some(info)) => {
            status.phase = Some(BackupPhase::Completed);
            status.stopped_at = Some(Time(info.end_time));
            status.size = Some(i64::try_from(info.size).unwrap_or(i64::MAX));
            status.objects = info.objects;
            status.begin_wal = Some(info.begin_wal);
            status.end_wal = Some(info.end_wal);
            status.message = None;
            write(backup, &status, ctx).await?;
            ctx.metrics.count_backup("Completed");
            if let Some(tenant) = tenant {
                after_success(&tenant, &namespace, ctx).await;
            }
            Ok(Action::await_change())
        }
    }
}

/// Retention, once a backup completed.
pub(super) async fn after_success(tenant: &Tenant, namespace: &str, ctx: &Context) {
    let Some(retention) = tenant.spec.backup.as_ref().map(|b| b.retention.clone()) else {
        return;
    };
    let store = match access::open_store(&ctx.client, namespace).await {
        Ok(Some(store)) => store,
        Ok(None) => return,
        Err(error) => {
            tracing::warn!(tenant = %tenant.name_any(), %error, "retention skipped");
            return;
        }
    };
    ctx.backups.invalidate_catalog(store.uid());
    let api: Api<TenantBackup> = Api::all(ctx.client.clone());
    let params =
        kube::api::ListParams::default().labels(&format!("{TENANT_LABEL}={}", tenant.name_any()));
    let backups = api.list(&params).await.map(|l| l.items).unwrap_or_default();
    let kind = match tenant.spec.database.mode {
        DatabaseMode::External => retention::Kind::Dumps,
        DatabaseMode::Dedicated => retention::Kind::BaseBackups,
    };
    let swept = retention::enforce(&store, &retention, kind, &ctx.client, &backups).await;
    match swept {
        Ok(swept) => {
            tracing::info!(tenant = %tenant.name_any(), backups = ?swept.backups, wal = swept.wal, tenant_backups = ?swept.tenant_backups, "retention applied")
        }
        Err(error) => tracing::warn!(tenant = %tenant.name_any(), %error, "retention failed"),
    }
}

pub(super) async fn fail(
    backup: &TenantBackup,
    mut status: TenantBackupStatus,
    message: String,
    ctx: &Context,
) -> Result<Action, Error> {
    status.phase = Some(BackupPhase::Failed);
    status.stopped_at = Some(Time(jiff::Timestamp::now()));
    status.message = Some(message.chars().take(4000).collect());
    write(backup, &status, ctx).await?;
    ctx.metrics.count_backup("Failed");
    Ok(Action::await_change())
}

pub(super) async fn wait(
    backup: &TenantBackup,
    mut status: TenantBackupStatus,
    reason: &'static str,
    message: &str,
    ctx: &Context,
) -> Result<Action, Error> {
    status.phase = Some(BackupPhase::Pending);
    status.message = Some(message.chars().take(4000).collect());
    set_started(&mut status, backup, false, reason, message);
    if backup.status.as_ref() != Some(&status) {
        write(backup, &status, ctx).await?;
    }
    Ok(Action::requeue(WAIT))
}

pub(super) fn set_started(
    status: &mut TenantBackupStatus,
    backup: &TenantBackup,
    started: bool,
    reason: &str,
    message: &str,
) {
    let generation = backup.metadata.generation;
    status.observed_generation = generation;
    let now = Time(jiff::Timestamp::now());
    let desired = Desired {
        type_: STARTED,
        status: Some(started),
        reason,
        message,
    };
    conditions::set(&mut status.conditions, desired, generation, &now);
}

pub(super) async fn write(
    backup: &TenantBackup,
    status: &TenantBackupStatus,
    ctx: &Context,
) -> Result<(), Error> {
    let api: Api<TenantBackup> = Api::all(ctx.client.clone());
    let mut patch = serde_json::json!({ "status": status });
    if status.message.is_none() {
        // A merge patch keeps what it does not name: clear it explicitly.
        patch["status"]["message"] = serde_json::Value::Null;
    }
    api.patch_status(
        &backup.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map(|_| ())
    .map_err(|source| Error {
        name: backup.name_any(),
        source,
    })
}

/// Labels an on-demand TenantBackup with its Tenant, so the Tenant's
/// reconciler finds it by label.
async fn ensure_label(backup: &TenantBackup, ctx: &Context) -> Result<(), Error> {
    if backup.labels().get(TENANT_LABEL) == Some(&backup.spec.tenant) {
        return Ok(());
    }
    let api: Api<TenantBackup> = Api::all(ctx.client.clone());
    let patch = serde_json::json!({"metadata": {"labels": {TENANT_LABEL: backup.spec.tenant}}});
    api.patch(
        &backup.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map(|_| ())
    .map_err(|source| Error {
        name: backup.name_any(),
        source,
    })
}
