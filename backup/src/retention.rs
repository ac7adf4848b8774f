//! Retention (contract §7): which base backups and WAL objects of a tenant
//! to delete. Pure: the operator lists the store, plans here and deletes
//! what the plan names.
//!
//! Kept: every backup that ended inside the window, plus the newest one
//! that ended before it (so the window's start stays recoverable), and
//! always the newest backup of all. WAL is kept from the oldest kept
//! backup's first segment on; timeline histories are always kept.
//!
//! The operator's periodic sweep ([`sweep`]) applies the same rule to every
//! tenant in the store, deleted ones included: a deleted tenant's window is
//! counted from now like a live one's (so what it left stays restorable
//! for `retention` after its deletion), and once `deletedAt + retention`
//! has passed nothing of it is restorable within the window any more and
//! its whole prefix goes.
//!
//! Dumps of External databases ([`plan_dumps`]) follow the same rule by the
//! time each dump holds (its `time`); they have no WAL.

use jiff::{SignedDuration, Timestamp};

use crate::catalog::BackupInfo;
use crate::dump_catalog::DumpInfo;
use crate::layout::{WalKind, wal_name_of_object};

/// A retention that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "retention {0:?} is not a count of hours, days or weeks such as 36h, 30d or 8w (1 to 9999)"
)]
pub struct RetentionError(pub String);

/// Parses `spec.backup.retention` (`^[1-9][0-9]{0,3}[dhw]$`).
pub fn parse_retention(text: &str) -> Result<SignedDuration, RetentionError> {
    let err = || RetentionError(text.chars().take(16).collect());
    let unit = text.chars().last().ok_or_else(err)?;
    let count = &text[..text.len() - unit.len_utf8()];
    let ok = !count.is_empty()
        && count.len() <= 4
        && !count.starts_with('0')
        && count.bytes().all(|b| b.is_ascii_digit());
    if !ok {
        return Err(err());
    }
    let count: i64 = count.parse().map_err(|_| err())?;
    let hours = match unit {
        'h' => count,
        'd' => count * 24,
        'w' => count * 24 * 7,
        _ => return Err(err()),
    };
    Ok(SignedDuration::from_hours(hours))
}

/// What to delete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Ids of the backups to delete, oldest first.
    pub delete: Vec<String>,
    /// Ids of the backups kept, oldest first.
    pub keep: Vec<String>,
    /// WAL segments before this one (and their `.backup` labels) are no
    /// longer needed: the oldest kept backup's first segment. `None`: keep
    /// all WAL (no backup yet).
    pub wal_before: Option<String>,
}

/// Plans retention of `backups` (complete ones) at `now` for a window of
/// `keep_for`.
pub fn plan(backups: &[BackupInfo], keep_for: SignedDuration, now: Timestamp) -> Plan {
    let items: Vec<(Timestamp, &str)> = backups
        .iter()
        .map(|b| (b.end_time, b.id.as_str()))
        .collect();
    let (delete, keep) = split(items, keep_for, now);
    Plan {
        wal_before: backups
            .iter()
            .filter(|b| keep.contains(&b.id))
            .map(|b| b.begin_wal.clone())
            .min(),
        delete,
        keep,
    }
}

/// What the sweep does with one tenant's prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sweep {
    /// Apply this plan (the newest backup always stays).
    Plan(Plan),
    /// Delete everything of the tenant: it was deleted at least
    /// `retention` ago.
    Forget,
}

/// Plans the sweep of a tenant deleted at `deleted_at` (`None`: not
/// deleted) with a window of `keep_for` at `now`.
pub fn sweep(
    backups: &[BackupInfo],
    keep_for: SignedDuration,
    now: Timestamp,
    deleted_at: Option<Timestamp>,
) -> Sweep {
    let expired = deleted_at
        .and_then(|deleted| deleted.checked_add(keep_for).ok())
        .is_some_and(|until| until <= now);
    if expired {
        Sweep::Forget
    } else {
        Sweep::Plan(plan(backups, keep_for, now))
    }
}

/// Plans retention of an External tenant's `dumps` (complete ones) at
/// `now` for a window of `keep_for`: by the time each dump holds. No WAL.
pub fn plan_dumps(dumps: &[DumpInfo], keep_for: SignedDuration, now: Timestamp) -> Plan {
    let items = dumps.iter().map(|d| (d.time, d.id.as_str())).collect();
    let (delete, keep) = split(items, keep_for, now);
    Plan {
        delete,
        keep,
        wal_before: None,
    }
}

/// Ids to delete and to keep, oldest first, of `(time, id)` items: those
/// inside the window, the newest before it, and the newest of all are kept.
fn split(
    mut items: Vec<(Timestamp, &str)>,
    keep_for: SignedDuration,
    now: Timestamp,
) -> (Vec<String>, Vec<String>) {
    items.sort();
    let cutoff = now.checked_sub(keep_for).unwrap_or(Timestamp::MIN);
    // The newest item that ended before the window still covers its start.
    let anchor = items.iter().rposition(|(time, _)| *time < cutoff);
    let (delete, keep) = items.split_at(anchor.unwrap_or(0));
    let ids = |items: &[(Timestamp, &str)]| items.iter().map(|(_, id)| (*id).to_owned()).collect();
    (ids(delete), ids(keep))
}

/// The objects under `wal/` (their file names) that a plan deletes:
/// segments, partial segments and backup labels of segments before
/// `wal_before`. Timeline histories and unknown names are kept.
pub fn wal_to_delete<'a>(objects: &[&'a str], wal_before: &str) -> Vec<&'a str> {
    objects
        .iter()
        .copied()
        .filter(|object| {
            let Some((name, kind)) = wal_name_of_object(object) else {
                return false;
            };
            let segment = match kind {
                WalKind::History => return false,
                WalKind::Segment | WalKind::Partial | WalKind::BackupLabel => &name[..24],
            };
            segment < wal_before
        })
        .collect()
}

#[cfg(test)]
#[path = "retention_tests.rs"]
mod tests;
