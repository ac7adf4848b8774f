//! The catalog of an External tenant's logical dumps: `DumpInfo`
//! (`dumps/<id>/dump.json`, written last, so its presence means the dump is
//! complete), listing them from the store, and choosing one for a restore
//! (pure functions). A dump is a snapshot: it restores the state at its
//! `time`, never a later one.

use object_store::ObjectStore;
use serde::{Deserialize, Serialize};

use crate::catalog::Choice;
use crate::layout::{BackupId, Layout, LayoutError};
use crate::manifest;
use crate::store::StoreError;

/// `tenants/<uid>/dumps/<id>/dump.json` (contract §2, §9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DumpInfo {
    /// `YYYYMMDDTHHMMSSZ`.
    pub id: String,
    /// The `TenantBackup` that asked for it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_backup: Option<String>,
    /// When `pg_dump` started: the state it holds is that of (about) this
    /// time, so a restore to a target `T` uses the newest with `time <= T`.
    pub time: jiff::Timestamp,
    /// When the upload finished.
    pub end_time: jiff::Timestamp,
    /// The server's version (`15.18`).
    pub server_version: String,
    /// The server's major version (15): a restore needs at least this one.
    pub server_major: u32,
    /// `pg_dump`'s version (`15.18`).
    pub pg_dump_version: String,
    /// `pg_dump`'s major version: `pg_restore` needs at least this one.
    pub pg_dump_major: u32,
    /// Bytes stored (`pg_dump -Fc` output, compressed by pg_dump).
    pub size: u64,
    /// The keys of its objects.
    pub objects: Vec<String>,
}

/// Why no dump fits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DumpPickError {
    /// The tenant has no complete dump.
    #[error("there is no complete dump of tenant {uid}")]
    NoDumps {
        /// The source tenant.
        uid: String,
    },
    /// The target lies before every dump.
    #[error(
        "target time {target} is before the first recoverability point {first} of tenant {uid} (the time of its oldest dump)"
    )]
    BeforeFirst {
        /// The source tenant.
        uid: String,
        /// The requested time.
        target: jiff::Timestamp,
        /// The earliest time a restore can reach.
        first: jiff::Timestamp,
    },
    /// No dump has that id or TenantBackup name.
    #[error("tenant {uid} has no complete dump with id or TenantBackup name {name:?}")]
    NotFound {
        /// The source tenant.
        uid: String,
        /// The name asked for.
        name: String,
    },
    /// The chosen dump was taken after the target.
    #[error(
        "target time {target} is before dump {id} was taken ({time}): choose an older dump or a later time"
    )]
    TargetBeforeDump {
        /// The dump.
        id: String,
        /// Its time.
        time: jiff::Timestamp,
        /// The requested time.
        target: jiff::Timestamp,
    },
}

/// The earliest time a restore can reach: the time of the oldest dump.
pub fn first_recoverability_point(dumps: &[DumpInfo]) -> Option<jiff::Timestamp> {
    dumps.iter().map(|d| d.time).min()
}

/// The newest dump by time.
pub fn latest(dumps: &[DumpInfo]) -> Option<&DumpInfo> {
    dumps
        .iter()
        .max_by(|a, b| (a.time, &a.id).cmp(&(b.time, &b.id)))
}

/// Picks the dump a restore of `uid` to `target` (`None` = the newest)
/// uses: by id or TenantBackup name, else the newest with `time <= target`.
pub fn pick<'a>(
    uid: &str,
    dumps: &'a [DumpInfo],
    choice: &Choice,
    target: Option<jiff::Timestamp>,
) -> Result<&'a DumpInfo, DumpPickError> {
    let no_dumps = || DumpPickError::NoDumps {
        uid: uid.to_owned(),
    };
    let first = first_recoverability_point(dumps).ok_or_else(no_dumps)?;
    let chosen = match choice {
        Choice::Named(name) => dumps
            .iter()
            .find(|d| &d.id == name || d.tenant_backup.as_ref() == Some(name))
            .ok_or_else(|| DumpPickError::NotFound {
                uid: uid.to_owned(),
                name: name.clone(),
            })?,
        Choice::Latest => {
            let fitting = dumps.iter().filter(|d| target.is_none_or(|t| d.time <= t));
            fitting
                .max_by(|a, b| (a.time, &a.id).cmp(&(b.time, &b.id)))
                .ok_or_else(|| DumpPickError::BeforeFirst {
                    uid: uid.to_owned(),
                    target: target.unwrap_or(first),
                    first,
                })?
        }
    };
    match target {
        Some(target) if target < chosen.time => Err(DumpPickError::TargetBeforeDump {
            id: chosen.id.clone(),
            time: chosen.time,
            target,
        }),
        _ => Ok(chosen),
    }
}

/// Listing or reading the dump catalog failed.
#[derive(Debug, thiserror::Error)]
pub enum DumpCatalogError {
    /// A bad uid or id.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A `dump.json` is not valid.
    #[error("{key}: not a valid dump.json: {source}")]
    Parse {
        /// The object.
        key: String,
        /// The reason.
        source: serde_json::Error,
    },
}

/// Every complete dump of `uid` (those with a `dump.json`), oldest
/// first.
pub async fn list(
    store: &dyn ObjectStore,
    layout: &Layout,
    uid: &str,
) -> Result<Vec<DumpInfo>, DumpCatalogError> {
    let dir = layout.dumps_dir(uid)?;
    manifest::list(
        store,
        &dir,
        "dump.json",
        |i: &DumpInfo| i.id.as_str(),
        invalid,
    )
    .await
}

/// One dump's info, `None` when it is not complete.
pub async fn get(
    store: &dyn ObjectStore,
    layout: &Layout,
    uid: &str,
    id: BackupId,
) -> Result<Option<DumpInfo>, DumpCatalogError> {
    manifest::read(store, &layout.dump_json(uid, id)?, invalid).await
}

fn invalid(key: String, source: serde_json::Error) -> DumpCatalogError {
    DumpCatalogError::Parse { key, source }
}

#[cfg(test)]
#[path = "dump_catalog_tests.rs"]
mod tests;
