//! Retention's executor (the planner is `atoll_backup::retention`): after
//! each completed backup, and for every tenant in the platform store by
//! the periodic sweep ([`super::sweep`]), deletes the expired base backups (`backup.json`
//! first, so a half-deleted backup is never taken for a complete one), the
//! WAL no kept backup needs, and the scheduled TenantBackups of the deleted
//! backups. On-demand TenantBackups stay (their status says what they were).
//! An External tenant's dumps expire the same way (`Kind::Dumps`).

use atoll_backup::layout::BackupId;
use atoll_backup::retention::{self, Plan};
use atoll_backup::store;
use atoll_backup::{catalog, dump_catalog};
use atoll_crds::TenantBackup;
use kube::api::{Api, DeleteParams};
use kube::{Client, ResourceExt};

use super::SCHEDULED_ANNOTATION;
use super::access::TenantStore;

/// What retention deleted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Swept {
    /// Base backups (ids).
    pub backups: Vec<String>,
    /// WAL objects.
    pub wal: usize,
    /// TenantBackups.
    pub tenant_backups: Vec<String>,
}

/// Applies `retention` (`spec.backup.retention`) to the tenant's base
/// backups or dumps (`kind`) and its scheduled TenantBackups.
pub async fn enforce(
    store: &TenantStore,
    retention: &str,
    kind: Kind,
    client: &Client,
    backups: &[TenantBackup],
) -> Result<Swept, String> {
    let keep_for = retention::parse_retention(retention).map_err(|e| e.to_string())?;
    let now = jiff::Timestamp::now();
    let plan = match kind {
        Kind::BaseBackups => retention::plan(&catalog(store).await?, keep_for, now),
        Kind::Dumps => retention::plan_dumps(&dumps(store).await?, keep_for, now),
    };
    apply(store, &plan, kind, client, backups).await
}

/// Lists the tenant's complete base backups.
pub async fn catalog(store: &TenantStore) -> Result<Vec<catalog::BackupInfo>, String> {
    catalog::list(store.store.as_ref(), &store.layout, store.uid())
        .await
        .map_err(|e| store.redact(&e))
}

/// What a plan's ids name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Base backups (a Dedicated database), with their WAL.
    BaseBackups,
    /// Dumps (an External database); no WAL.
    Dumps,
}

/// Deletes what `plan` names: its base backups or dumps, the WAL before
/// its oldest kept backup (base backups only), and the scheduled
/// TenantBackups among `backups` of what it deleted.
pub async fn apply(
    store: &TenantStore,
    plan: &Plan,
    kind: Kind,
    client: &Client,
    backups: &[TenantBackup],
) -> Result<Swept, String> {
    let uid = store.uid().to_owned();
    let mut swept = Swept::default();
    for id in &plan.delete {
        let id = parse_id(id)?;
        let layout = &store.layout;
        let (json, dir) = match kind {
            Kind::BaseBackups => (layout.backup_json(&uid, id), layout.base_dir(&uid)),
            Kind::Dumps => (layout.dump_json(&uid, id), layout.dumps_dir(&uid)),
        };
        let json = json.map_err(|e| e.to_string())?;
        let dir = dir.map_err(|e| e.to_string())?;
        delete_backup(store, &json, &dir.clone().join(id.to_string())).await?;
        swept.backups.push(id.to_string());
    }
    if kind == Kind::BaseBackups {
        swept.wal = delete_wal(store, &uid, plan).await?;
    }
    swept.tenant_backups = delete_tenant_backups(client, backups, &uid, plan).await?;
    Ok(swept)
}

/// Lists the tenant's complete dumps.
pub async fn dumps(store: &TenantStore) -> Result<Vec<dump_catalog::DumpInfo>, String> {
    dump_catalog::list(store.store.as_ref(), &store.layout, store.uid())
        .await
        .map_err(|e| store.redact(&e))
}

fn parse_id(id: &str) -> Result<BackupId, String> {
    id.parse().map_err(|_| format!("bad backup id {id:?}"))
}

/// Deletes the scheduled TenantBackups of what `plan` deleted.
async fn delete_tenant_backups(
    client: &Client,
    backups: &[TenantBackup],
    uid: &str,
    plan: &Plan,
) -> Result<Vec<String>, String> {
    let api: Api<TenantBackup> = Api::all(client.clone());
    let mut deleted = Vec::new();
    for backup in backups.iter().filter(|b| expired(b, uid, plan)) {
        match api
            .delete(&backup.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) | Err(kube::Error::Api(_)) => deleted.push(backup.name_any()),
            Err(error) => {
                return Err(format!(
                    "deleting TenantBackup {}: {error}",
                    backup.name_any()
                ));
            }
        }
    }
    Ok(deleted)
}

/// A scheduled TenantBackup of this uid whose backup the plan deletes.
fn expired(backup: &TenantBackup, uid: &str, plan: &Plan) -> bool {
    let scheduled = backup
        .annotations()
        .get(SCHEDULED_ANNOTATION)
        .map(String::as_str)
        == Some("true");
    let status = backup.status.as_ref();
    scheduled
        && status.and_then(|s| s.tenant_uid.as_deref()) == Some(uid)
        && status
            .and_then(|s| s.backup_id.as_ref())
            .is_some_and(|id| plan.delete.contains(id))
}

/// Deletes one backup or dump: its description `json` first (so a
/// half-deleted one is never taken for complete), then the rest of `dir`.
async fn delete_backup(
    store: &TenantStore,
    json: &object_store::path::Path,
    dir: &object_store::path::Path,
) -> Result<(), String> {
    store::delete(store.store.as_ref(), json)
        .await
        .map_err(|e| store.redact(&e))?;
    let rest = store::list(store.store.as_ref(), dir)
        .await
        .map_err(|e| store.redact(&e))?;
    for meta in rest {
        store::delete(store.store.as_ref(), &meta.location)
            .await
            .map_err(|e| store.redact(&e))?;
    }
    Ok(())
}

async fn delete_wal(store: &TenantStore, uid: &str, plan: &Plan) -> Result<usize, String> {
    let Some(before) = &plan.wal_before else {
        return Ok(0);
    };
    let dir = store.layout.wal_dir(uid).map_err(|e| e.to_string())?;
    let metas = store::list(store.store.as_ref(), &dir)
        .await
        .map_err(|e| store.redact(&e))?;
    let names: Vec<&str> = metas.iter().filter_map(|m| m.location.filename()).collect();
    let doomed = retention::wal_to_delete(&names, before);
    for name in &doomed {
        store::delete(store.store.as_ref(), &dir.clone().join(*name))
            .await
            .map_err(|e| store.redact(&e))?;
    }
    Ok(doomed.len())
}
