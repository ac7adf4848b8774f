//! The TenantBackup controller's External side (#19, §9): a dump pod in
//! the tenant's namespace (`crate::build::dump_pod`) runs `atoll-backup
//! dump`; the controller follows the pod: Pending → Running → Completed
//! (size and objects from `dump.json`) or Failed (the pod's termination
//! message or its last log lines: `atoll-backup` prints one redacted line,
//! redacted again here). The pod is deleted once it has ended, whatever
//! the outcome: its message is in the TenantBackup's status, and a pod
//! kept per failed backup would pile up in the tenant's quota.

use atoll_backup::dump_catalog;
use atoll_backup::layout::BackupId;
use atoll_crds::conditions::types;
use atoll_crds::{BackupPhase, Tenant, TenantBackup, TenantBackupStatus};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::api::{Api, DeleteParams, LogParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::access::{self, TenantStore};
use super::tenant_backup::{Error, POLL, WAIT, fail, set_started, wait, write};
use crate::build::{self, TenantContext};
use crate::reconcile::Context;

/// How many log lines a failure message keeps.
const LOG_LINES: i64 = 20;

/// Starts the dump of `backup` (its id fixed in `status`): waits for the
/// database and the store's Secret, then creates the pod.
pub(super) async fn start(
    backup: &TenantBackup,
    mut status: TenantBackupStatus,
    tenant: &Tenant,
    ctx: &Context,
) -> Result<Action, Error> {
    let id = status.backup_id.clone().unwrap_or_default();
    let ready = super::status_says(tenant, types::DATABASE_READY);
    let restoring = tenant.spec.restore.is_some() && !super::status_says(tenant, types::RESTORED);
    let namespace = tenant.status.as_ref().and_then(|s| s.namespace.clone());
    let (true, false, Some(namespace)) = (ready, restoring, namespace) else {
        let why = format!(
            "waiting for the database of Tenant {} to be provisioned (and restored)",
            tenant.name_any()
        );
        return wait(backup, status, "DatabaseNotReady", &why, ctx).await;
    };
    match access::open_store(&ctx.client, &namespace).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            let why = format!(
                "waiting for the Secret {namespace}/{} holding the object store's settings",
                build::BACKUP_OBJECT_STORE_SECRET
            );
            return wait(backup, status, "ObjectStoreNotReady", &why, ctx).await;
        }
        Err(why) => return wait(backup, status, "ObjectStoreUnavailable", &why, ctx).await,
    }
    let Ok(tenant_ctx) = TenantContext::new(tenant, &ctx.config) else {
        return Ok(Action::await_change());
    };
    let Some(owner) = backup.controller_owner_ref(&()).map(|o| OwnerReference {
        controller: Some(false),
        block_owner_deletion: Some(false),
        ..o
    }) else {
        return Ok(Action::await_change());
    };
    let pod = build::dump_pod(&tenant_ctx, &owner, &id);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    match pods.create(&PostParams::default(), &pod).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(error) => {
            let why = format!(
                "creating the dump pod {namespace}/{}: {error}",
                pod.name_any()
            );
            return wait(backup, status, "PodNotCreated", &why, ctx).await;
        }
    }
    status.phase = Some(BackupPhase::Running);
    status.started_at = Some(Time(jiff::Timestamp::now()));
    status.message = None;
    let message = format!(
        "dump {id} is being taken by the pod {namespace}/{}",
        pod.name_any()
    );
    set_started(&mut status, backup, true, "Started", &message);
    write(backup, &status, ctx).await?;
    Ok(Action::requeue(POLL))
}

/// Follows the dump pod of a Running TenantBackup.
pub(super) async fn follow(
    backup: &TenantBackup,
    mut status: TenantBackupStatus,
    tenant: Option<&Tenant>,
    ctx: &Context,
) -> Result<Action, Error> {
    let id = status.backup_id.clone().unwrap_or_default();
    let namespace = tenant.and_then(|t| t.status.as_ref()?.namespace.clone());
    let Some(namespace) = namespace else {
        let why = format!("Tenant {} is gone", backup.spec.tenant);
        return fail(backup, status, why, ctx).await;
    };
    let store = match access::open_store(&ctx.client, &namespace).await {
        Ok(Some(store)) => store,
        _ => return Ok(Action::requeue(WAIT)),
    };
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let name = build::dump_pod_name(&backup.name_any());
    let pod = match pods.get_opt(&name).await {
        Ok(pod) => pod,
        Err(error) => {
            tracing::debug!(backup = %backup.name_any(), %error, "reading the dump pod failed");
            return Ok(Action::requeue(WAIT));
        }
    };
    let phase = pod
        .as_ref()
        .and_then(|p| p.status.as_ref()?.phase.clone())
        .unwrap_or_default();
    let dump = match pod.is_none() || phase == "Succeeded" {
        true => match recorded(&store, &id).await {
            Ok(dump) => dump,
            Err(why) => {
                tracing::debug!(backup = %backup.name_any(), %why, "reading dump.json failed");
                return Ok(Action::requeue(WAIT));
            }
        },
        false => None,
    };
    if let Some(info) = dump {
        status.phase = Some(BackupPhase::Completed);
        status.stopped_at = Some(Time(info.end_time));
        status.size = Some(i64::try_from(info.size).unwrap_or(i64::MAX));
        status.objects = info.objects;
        status.message = None;
        write(backup, &status, ctx).await?;
        ctx.metrics.count_backup("Completed");
        delete(&pods, &name).await;
        if let Some(tenant) = tenant {
            super::tenant_backup::after_success(tenant, &namespace, ctx).await;
        }
        return Ok(Action::await_change());
    }
    let why = match (&pod, phase.as_str()) {
        (None, _) => format!(
            "the dump pod {namespace}/{name} is gone and dump {id} is not in the object store; create a new TenantBackup"
        ),
        (Some(_), "Succeeded") => format!(
            "the dump pod {namespace}/{name} ended but dump {id} has no dump.json in the object store"
        ),
        (Some(pod), "Failed") => {
            let message = failure(&pods, pod).await;
            format!(
                "the dump pod {namespace}/{name} failed: {}",
                store.settings.redact(&message)
            )
        }
        _ => return Ok(Action::requeue(POLL)),
    };
    delete(&pods, &name).await;
    fail(backup, status, why, ctx).await
}

/// The dump's description, once written.
async fn recorded(store: &TenantStore, id: &str) -> Result<Option<dump_catalog::DumpInfo>, String> {
    let id: BackupId = id.parse().map_err(|_| format!("bad dump id {id:?}"))?;
    dump_catalog::get(store.store.as_ref(), &store.layout, store.uid(), id)
        .await
        .map_err(|e| store.redact(&e))
}

/// Why a pod failed: the first failed container's termination message
/// (its last log lines under FallbackToLogsOnError), else its log's last
/// lines read from the API.
pub async fn failure(pods: &Api<Pod>, pod: &Pod) -> String {
    let status = pod.status.as_ref();
    let statuses = status
        .into_iter()
        .flat_map(|s| {
            s.init_container_statuses
                .iter()
                .flatten()
                .chain(s.container_statuses.iter().flatten())
        })
        .collect::<Vec<&ContainerStatus>>();
    let failed = statuses.iter().find(|c| {
        c.state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .is_some_and(|t| t.exit_code != 0)
    });
    let Some(failed) = failed else {
        return status
            .and_then(|s| s.message.clone())
            .unwrap_or_else(|| "no container reported why".to_owned());
    };
    let terminated = failed.state.as_ref().and_then(|s| s.terminated.as_ref());
    let code = terminated.map_or(0, |t| t.exit_code);
    let message = terminated
        .and_then(|t| t.message.clone())
        .filter(|m| !m.trim().is_empty());
    let message = match message {
        Some(message) => message,
        None => {
            let params = LogParams {
                container: Some(failed.name.clone()),
                tail_lines: Some(LOG_LINES),
                ..LogParams::default()
            };
            pods.logs(&pod.name_any(), &params)
                .await
                .unwrap_or_else(|e| format!("(its log could not be read: {e})"))
        }
    };
    let text = message.trim();
    let text: String = text
        .char_indices()
        .rev()
        .nth(2000)
        .map_or(text, |(at, _)| &text[at..])
        .to_owned();
    format!("container {} exited with {code}: {text}", failed.name)
}

/// Deletes a pod that ended (gone already is fine).
pub async fn delete(pods: &Api<Pod>, name: &str) {
    match pods.delete(name, &DeleteParams::background()).await {
        Ok(_) | Err(kube::Error::Api(_)) => {}
        Err(error) => tracing::warn!(pod = name, %error, "deleting an ended pod failed"),
    }
}
