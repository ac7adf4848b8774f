//! The tenant's record in the store (contract §2, §7):
//! `tenants/<uid>/tenant.json` and the marker `names/<name>/<uid>`, written
//! once backups are enabled, so a restore finds a deleted tenant's uid by
//! its name; `deletedAt` is added when the Tenant is deleted (the store's
//! data itself is never deleted with the Tenant: it expires by retention,
//! which the operator's sweep applies with the record's `retention`).

use atoll_crds::{DatabaseMode, Tenant};
use bytes::Bytes;
use kube::ResourceExt;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::access::TenantStore;
use crate::reconcile::Context;

/// `tenant.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantRecord {
    /// The Tenant's name.
    pub name: String,
    /// Its uid.
    pub uid: String,
    /// Dedicated or External.
    pub mode: String,
    /// When the Tenant was created.
    #[serde(default)]
    pub created_at: Option<jiff::Timestamp>,
    /// When it was deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<jiff::Timestamp>,
    /// Its `spec.backup.retention` (how long the sweep keeps its backups;
    /// absent in records written before the sweep existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<String>,
}

impl TenantRecord {
    /// The record of `tenant`.
    pub fn of(tenant: &Tenant, deleted_at: Option<jiff::Timestamp>) -> TenantRecord {
        TenantRecord {
            name: tenant.name_any(),
            uid: tenant.metadata.uid.clone().unwrap_or_default(),
            mode: match tenant.spec.database.mode {
                DatabaseMode::Dedicated => "Dedicated",
                DatabaseMode::External => "External",
            }
            .to_owned(),
            created_at: tenant.metadata.creation_timestamp.as_ref().map(|t| t.0),
            deleted_at,
            retention: tenant.spec.backup.as_ref().map(|b| b.retention.clone()),
        }
    }
}

/// Writes the record and the name marker (overwriting both).
pub async fn write(store: &TenantStore, record: &TenantRecord) -> Result<(), String> {
    let json = store
        .layout
        .tenant_json(&record.uid)
        .map_err(|e| e.to_string())?;
    let marker = store
        .layout
        .name_marker(&record.name, &record.uid)
        .map_err(|e| e.to_string())?;
    let body = serde_json::to_vec(record).map_err(|e| e.to_string())?;
    put(store.store.as_ref(), &json, Bytes::from(body))
        .await
        .map_err(|e| store.redact(&e))?;
    put(store.store.as_ref(), &marker, Bytes::new())
        .await
        .map_err(|e| store.redact(&e))
}

async fn put(
    store: &dyn ObjectStore,
    key: &object_store::path::Path,
    bytes: Bytes,
) -> Result<(), object_store::Error> {
    let limit = atoll_backup::store::OP_TIMEOUT;
    match tokio::time::timeout(limit, store.put(key, PutPayload::from_bytes(bytes))).await {
        Ok(result) => result.map(|_| ()),
        Err(_) => Err(object_store::Error::Generic {
            store: "S3",
            source: format!("no answer within {} s", limit.as_secs()).into(),
        }),
    }
}

/// Writes the record once per process and Tenant (again after a failure).
pub async fn once(tenant: &Tenant, store: &TenantStore, ctx: &Context) {
    if !ctx.backups.first_registration(store.uid()) {
        return;
    }
    if let Err(error) = write(store, &TenantRecord::of(tenant, None)).await {
        ctx.backups.registration_failed(store.uid());
        tracing::warn!(tenant = %tenant.name_any(), %error, "writing the tenant's record in the object store failed");
    }
}

/// Adds `deletedAt` (the Tenant's deletion time, so a repeated cleanup
/// writes the same record) to the record of a Tenant being deleted, under
/// either deletion policy: its backups stay in the store, restorable by
/// its name, until retention expires them. Best effort: a store that
/// cannot be reached is logged, not waited for.
pub async fn mark_deleted(tenant: &Tenant, namespace: &str, ctx: &Context) {
    if tenant.spec.backup.is_none() {
        return;
    }
    let store = match super::access::open_store(&ctx.client, namespace).await {
        Ok(Some(store)) => store,
        Ok(None) => return,
        Err(error) => {
            tracing::warn!(tenant = %tenant.name_any(), %error, "the store's tenant record keeps no deletion time");
            return;
        }
    };
    let deleted_at = tenant
        .metadata
        .deletion_timestamp
        .as_ref()
        .map_or_else(jiff::Timestamp::now, |t| t.0);
    if let Err(error) = write(&store, &TenantRecord::of(tenant, Some(deleted_at))).await {
        tracing::warn!(tenant = %tenant.name_any(), %error, "the store's tenant record keeps no deletion time");
    }
    ctx.backups.forget(store.uid());
}
