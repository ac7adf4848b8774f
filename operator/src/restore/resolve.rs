//! `spec.restore.from` → the source's uid, and the base backup to start
//! from, checked against the store before anything is built.
//!
//! `from` is a uid (taken as is), else the name of a live Tenant (its
//! uid), else a name some deleted Tenants had: the newest uid under
//! `names/<name>/` in the store (the marker the backup controller writes
//! once backups are enabled). The new Tenant itself is never its own
//! source, so a Tenant re-created under a deleted one's name may restore
//! from it by that name.
//!
//! A Dedicated Tenant restores from a base backup, an External one from a
//! dump ([`resolve`] takes the new Tenant's mode): the other kind is
//! refused, saying which mode the source's backups need.

use std::sync::Arc;

use atoll_backup::catalog::{self, CatalogError, Choice, PickError};
use atoll_backup::dump_catalog::{self, DumpCatalogError, DumpPickError};
use atoll_backup::layout::Layout;
use atoll_backup::store::{self, StoreError};
use atoll_crds::{DatabaseMode, RestoreSpec, Tenant};
use kube::ResourceExt;
use object_store::ObjectStore;

use super::plan::{Resolved, reasons};

/// Why `spec.restore` cannot be resolved (now). Messages name tenants,
/// uids and objects, never credentials.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// No Tenant, live or deleted, is known by that name.
    #[error(
        "no Tenant named {0:?} exists, and the object store has no backups of a deleted Tenant of that name; give the source's uid in spec.restore.from"
    )]
    NoSource(String),
    /// The Tenant names itself.
    #[error("a Tenant cannot be restored from itself")]
    SameTenant,
    /// The store could not be listed.
    #[error("the object store holding the source's backups: {0}")]
    Store(#[from] StoreError),
    /// The catalog could not be read.
    #[error("the catalog of tenant {uid}: {source}")]
    Catalog {
        /// The source.
        uid: String,
        /// Why.
        source: CatalogError,
    },
    /// No backup fits.
    #[error("{0}")]
    Pick(#[from] PickError),
    /// The dump catalog could not be read.
    #[error("the dumps of tenant {uid}: {source}")]
    DumpCatalog {
        /// The source.
        uid: String,
        /// Why.
        source: DumpCatalogError,
    },
    /// No dump fits.
    #[error("{0}")]
    DumpPick(#[from] DumpPickError),
    /// The source's backups are of the other mode.
    #[error(
        "tenant {uid} has {has} but no {needs}: {has} restore only into a Tenant with spec.database.mode {mode}"
    )]
    OtherMode {
        /// The source.
        uid: String,
        /// What it has.
        has: &'static str,
        /// What this Tenant needs.
        needs: &'static str,
        /// The mode they restore into.
        mode: &'static str,
    },
}

impl ResolveError {
    /// The `Restored` condition's reason.
    pub fn reason(&self) -> &'static str {
        match self {
            ResolveError::NoSource(_) | ResolveError::SameTenant => reasons::SOURCE_UNAVAILABLE,
            ResolveError::Store(_)
            | ResolveError::Catalog { .. }
            | ResolveError::DumpCatalog { .. } => reasons::STORE_UNAVAILABLE,
            ResolveError::Pick(_) | ResolveError::DumpPick(_) => reasons::NO_BACKUP,
            ResolveError::OtherMode { .. } => reasons::OTHER_MODE,
        }
    }
}

/// Whether `from` is shaped like a Kubernetes uid.
pub fn is_uid(from: &str) -> bool {
    let b = from.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        })
}

/// The uid of the live Tenant named `from`, unless that is the new Tenant.
pub fn live_source(from: &str, own_uid: &str, live: &[Arc<Tenant>]) -> Option<String> {
    live.iter()
        .filter(|t| t.name_any() == from)
        .filter_map(|t| t.metadata.uid.clone())
        .find(|uid| uid != own_uid)
}

/// The newest of the `(uid, written at)` markers of a name, other than
/// `own_uid`.
pub fn newest_marker<T: Ord>(markers: Vec<(String, T)>, own_uid: &str) -> Option<String> {
    markers
        .into_iter()
        .filter(|(uid, _)| uid != own_uid)
        .max_by(|a, b| a.1.cmp(&b.1))
        .map(|(uid, _)| uid)
}

/// The source's uid for `from`.
async fn source_uid(
    from: &str,
    own_uid: &str,
    live: &[Arc<Tenant>],
    store: &dyn ObjectStore,
    layout: &Layout,
) -> Result<String, ResolveError> {
    if is_uid(from) {
        return if from == own_uid {
            Err(ResolveError::SameTenant)
        } else {
            Ok(from.to_owned())
        };
    }
    if let Some(uid) = live_source(from, own_uid, live) {
        return Ok(uid);
    }
    let dir = layout
        .names_dir(from)
        .map_err(|_| ResolveError::NoSource(from.to_owned()))?;
    let markers = store::list(store, &dir)
        .await?
        .into_iter()
        .filter_map(|meta| Some((meta.location.filename()?.to_owned(), meta.last_modified)))
        .collect();
    newest_marker(markers, own_uid).ok_or_else(|| ResolveError::NoSource(from.to_owned()))
}

/// Resolves `spec` for the Tenant `own_uid` whose database is of `mode`:
/// the source's uid and the base backup (Dedicated) or dump (External) a
/// restore to the target starts from.
pub async fn resolve(
    spec: &RestoreSpec,
    own_uid: &str,
    live: &[Arc<Tenant>],
    store: &dyn ObjectStore,
    layout: &Layout,
    mode: DatabaseMode,
) -> Result<Resolved, ResolveError> {
    let uid = source_uid(&spec.from, own_uid, live, store, layout).await?;
    let backups =
        catalog::list(store, layout, &uid)
            .await
            .map_err(|source| ResolveError::Catalog {
                uid: uid.clone(),
                source,
            })?;
    let dumps = dump_catalog::list(store, layout, &uid)
        .await
        .map_err(|source| ResolveError::DumpCatalog {
            uid: uid.clone(),
            source,
        })?;
    let target = spec.target_timestamp();
    let choice = Choice::parse(&spec.backup);
    let other = |has, needs, mode| ResolveError::OtherMode {
        uid: uid.clone(),
        has,
        needs,
        mode,
    };
    let backup_id = match mode {
        DatabaseMode::Dedicated if backups.is_empty() && !dumps.is_empty() => {
            return Err(other("dumps", "base backups", "External"));
        }
        DatabaseMode::External if dumps.is_empty() && !backups.is_empty() => {
            return Err(other("base backups", "dumps", "Dedicated"));
        }
        DatabaseMode::Dedicated => catalog::pick(&uid, &backups, &choice, target)?.id.clone(),
        DatabaseMode::External => dump_catalog::pick(&uid, &dumps, &choice, target)?
            .id
            .clone(),
    };
    Ok(Resolved {
        source_uid: uid.clone(),
        backup_id,
        target_time: target,
    })
}

#[cfg(test)]
#[path = "resolve_tests.rs"]
mod tests;
