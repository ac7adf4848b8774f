//! The catalog of a tenant's base backups: `BackupInfo` (`backup.json`,
//! written last, so its presence means the backup is complete), listing
//! them from the store, and choosing one for a restore (pure functions).

use object_store::ObjectStore;
use serde::{Deserialize, Serialize};

use crate::layout::{BackupId, Layout, LayoutError};
use crate::manifest;
use crate::store::StoreError;

/// `tenants/<uid>/base/<id>/backup.json` (contract §2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupInfo {
    /// `YYYYMMDDTHHMMSSZ`.
    pub id: String,
    /// The `TenantBackup` that asked for it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_backup: Option<String>,
    /// When the backup started (its checkpoint, server clock).
    pub begin_time: jiff::Timestamp,
    /// When it ended: the database is consistent from this point on, so a
    /// restore can target any time from here.
    pub end_time: jiff::Timestamp,
    /// `START WAL LOCATION`.
    pub begin_lsn: String,
    /// `STOP WAL LOCATION`.
    pub end_lsn: String,
    /// The first WAL segment a restore needs.
    pub begin_wal: String,
    /// The last WAL segment a restore needs at least.
    pub end_wal: String,
    /// The timeline it was taken on.
    pub timeline: u32,
    /// `pg_control_system().system_identifier` (a u64 as text).
    pub system_identifier: String,
    /// The server's major version (15, 16, ...).
    pub pg_major: u32,
    /// Bytes stored (compressed).
    pub size: u64,
    /// The keys of its objects.
    pub objects: Vec<String>,
}

/// Which backup a restore asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// The newest complete one (ending at or before the target time).
    Latest,
    /// A backup id or a `TenantBackup` name.
    Named(String),
}

impl Choice {
    /// `latest` (or empty) → [`Choice::Latest`], anything else a name/id.
    pub fn parse(text: &str) -> Choice {
        match text.trim() {
            "" | "latest" => Choice::Latest,
            other => Choice::Named(other.to_owned()),
        }
    }
}

/// Why no backup fits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PickError {
    /// The tenant has no complete backup.
    #[error("there is no complete base backup of tenant {uid}")]
    NoBackups {
        /// The source tenant.
        uid: String,
    },
    /// The target lies before every backup's end.
    #[error(
        "target time {target} is before the first recoverability point {first} of tenant {uid} (the end of its oldest base backup)"
    )]
    BeforeFirst {
        /// The source tenant.
        uid: String,
        /// The requested time.
        target: jiff::Timestamp,
        /// The earliest time a restore can reach.
        first: jiff::Timestamp,
    },
    /// No backup has that id or TenantBackup name.
    #[error("tenant {uid} has no complete base backup with id or TenantBackup name {name:?}")]
    NotFound {
        /// The source tenant.
        uid: String,
        /// The name asked for.
        name: String,
    },
    /// The chosen backup ends after the target.
    #[error(
        "target time {target} is before the end of base backup {id} ({end}): choose an older backup or a later time"
    )]
    TargetBeforeBackupEnd {
        /// The backup.
        id: String,
        /// Its end.
        end: jiff::Timestamp,
        /// The requested time.
        target: jiff::Timestamp,
    },
}

/// The earliest time a restore can reach: the end of the oldest complete
/// backup.
pub fn first_recoverability_point(backups: &[BackupInfo]) -> Option<jiff::Timestamp> {
    backups.iter().map(|b| b.end_time).min()
}

/// The newest backup by end time.
pub fn latest(backups: &[BackupInfo]) -> Option<&BackupInfo> {
    backups
        .iter()
        .max_by(|a, b| (a.end_time, &a.id).cmp(&(b.end_time, &b.id)))
}

/// Picks the backup a restore of `uid` to `target` (`None` = the end of
/// the archive) starts from.
pub fn pick<'a>(
    uid: &str,
    backups: &'a [BackupInfo],
    choice: &Choice,
    target: Option<jiff::Timestamp>,
) -> Result<&'a BackupInfo, PickError> {
    if backups.is_empty() {
        return Err(PickError::NoBackups {
            uid: uid.to_owned(),
        });
    }
    let chosen = match choice {
        Choice::Named(name) => backups
            .iter()
            .find(|b| &b.id == name || b.tenant_backup.as_ref() == Some(name))
            .ok_or_else(|| PickError::NotFound {
                uid: uid.to_owned(),
                name: name.clone(),
            })?,
        Choice::Latest => match target {
            None => latest(backups).ok_or_else(|| PickError::NoBackups {
                uid: uid.to_owned(),
            })?,
            Some(target) => {
                let fitting: Vec<BackupInfo> = backups
                    .iter()
                    .filter(|b| b.end_time <= target)
                    .cloned()
                    .collect();
                let newest = latest(&fitting).map(|b| b.id.clone());
                match newest.and_then(|id| backups.iter().find(|b| b.id == id)) {
                    Some(b) => b,
                    None => {
                        return Err(PickError::BeforeFirst {
                            uid: uid.to_owned(),
                            target,
                            first: first_recoverability_point(backups).unwrap_or(target),
                        });
                    }
                }
            }
        },
    };
    match target {
        Some(target) if target < chosen.end_time => Err(PickError::TargetBeforeBackupEnd {
            id: chosen.id.clone(),
            end: chosen.end_time,
            target,
        }),
        _ => Ok(chosen),
    }
}

/// A backup whose WAL proves that the archive covers `target`: it began
/// at or after `target` and is complete, so every WAL record up to its
/// `end_lsn` (written after `target`) is archived. Used when recovery to
/// `target` found no commit after it (a quiet tail): then the end of the
/// archive is the state at `target`, provided replay got past `end_lsn`.
pub fn coverage_proof(backups: &[BackupInfo], target: jiff::Timestamp) -> Option<&BackupInfo> {
    backups
        .iter()
        .filter(|b| b.begin_time >= target)
        .min_by(|a, b| a.begin_time.cmp(&b.begin_time))
}

/// Listing or reading the catalog failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A bad uid or id.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A `backup.json` is not valid.
    #[error("{key}: not a valid backup.json: {source}")]
    Parse {
        /// The object.
        key: String,
        /// The reason.
        source: serde_json::Error,
    },
}

/// Every complete backup of `uid` (those with a `backup.json`), oldest
/// first.
pub async fn list(
    store: &dyn ObjectStore,
    layout: &Layout,
    uid: &str,
) -> Result<Vec<BackupInfo>, CatalogError> {
    let dir = layout.base_dir(uid)?;
    manifest::list(
        store,
        &dir,
        "backup.json",
        |i: &BackupInfo| i.id.as_str(),
        invalid,
    )
    .await
}

/// One backup's info, `None` when it is not complete.
pub async fn get(
    store: &dyn ObjectStore,
    layout: &Layout,
    uid: &str,
    id: BackupId,
) -> Result<Option<BackupInfo>, CatalogError> {
    manifest::read(store, &layout.backup_json(uid, id)?, invalid).await
}

fn invalid(key: String, source: serde_json::Error) -> CatalogError {
    CatalogError::Parse { key, source }
}

#[cfg(test)]
#[path = "catalog_tests.rs"]
mod tests;
