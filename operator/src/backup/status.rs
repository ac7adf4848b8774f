//! `status.backup` and the `BackupReady` / `ContinuousArchiving`
//! conditions (contract §7), as pure functions of what was observed: the
//! store's catalog, the agent's `/status`, the tenant's TenantBackups and
//! the time. Every input text is credential-free already (store errors are
//! redacted by the caller, the agent redacts its own); every False message
//! says what failed and what to check.

use std::time::Duration;

use atoll_backup::catalog::{self, BackupInfo};
use atoll_backup::dump_catalog::{self, DumpInfo};
use atoll_crds::{BackupPhase, BackupStatus, TenantBackup};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::agent_client::AgentStatus;

/// More segments than this waiting in `pg_wal` means archiving lags.
pub const PENDING_SEGMENTS_LIMIT: u64 = 2;
/// How soon archiving is looked at again while `ContinuousArchiving` is
/// not True (failing, lagging, not known yet): the condition follows an
/// outage of the store, and its end, within this rather than within the
/// calm interval ([`super::CHECK_EVERY`]).
pub const RECHECK_UNSETTLED: Duration = Duration::from_secs(15);

/// One condition's desired value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// True, False or Unknown (`None`).
    pub status: Option<bool>,
    /// One CamelCase word.
    pub reason: &'static str,
    /// For a person: what is, and what to do.
    pub message: String,
}

fn verdict(status: Option<bool>, reason: &'static str, message: impl Into<String>) -> Verdict {
    Verdict {
        status,
        reason,
        message: message.into(),
    }
}

/// Where a Tenant's backups stand before anything is observed.
#[derive(Clone, Debug, PartialEq)]
pub enum Situation<'a> {
    /// No `spec.backup`: no status, no conditions.
    Absent,
    /// `spec.backup.enabled: false`.
    Disabled,
    /// An External database, wired: its dumps observed (§9).
    Dumps(DumpObservation<'a>),
    /// The store cannot be used; why (names Secrets, never values).
    Unavailable(&'a str),
    /// Wired and observed.
    Wired(Observation<'a>),
}

/// What was observed of a wired tenant.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation<'a> {
    /// The complete base backups in the store, or why they could not be listed.
    pub catalog: Result<&'a [BackupInfo], &'a str>,
    /// The agent's report: `Ok(None)` while the database is not ready (or
    /// suspended), `Err` when the agent did not answer.
    pub agent: Result<Option<&'a AgentStatus>, &'a str>,
    /// The tenant's TenantBackups (this uid's).
    pub backups: &'a [TenantBackup],
    /// When the next scheduled backup is due.
    pub next_due: Option<Timestamp>,
}

/// What was observed of a wired External tenant.
#[derive(Clone, Debug, PartialEq)]
pub struct DumpObservation<'a> {
    /// The complete dumps in the store, or why they could not be listed.
    pub catalog: Result<&'a [DumpInfo], &'a str>,
    /// The tenant's TenantBackups (this uid's).
    pub backups: &'a [TenantBackup],
    /// When the next scheduled dump is due.
    pub next_due: Option<Timestamp>,
}

/// What to write.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// `status.backup`.
    pub status: Option<BackupStatus>,
    /// `BackupReady` (`None`: absent).
    pub backup_ready: Option<Verdict>,
    /// `ContinuousArchiving` (`None`: absent).
    pub archiving: Option<Verdict>,
}

/// The report for `situation`, keeping from `previous` what was not
/// observed this time.
pub fn report(situation: &Situation<'_>, previous: Option<&BackupStatus>) -> Report {
    let kept = previous.cloned();
    let not_wired = |reason, message: String| Report {
        status: kept.clone(),
        backup_ready: Some(verdict(Some(false), reason, message.clone())),
        archiving: Some(verdict(Some(false), reason, message)),
    };
    match situation {
        Situation::Absent => Report {
            status: None,
            backup_ready: None,
            archiving: None,
        },
        Situation::Disabled => Report {
            status: kept,
            backup_ready: Some(verdict(
                Some(false),
                "BackupsDisabled",
                "spec.backup.enabled is false: no WAL is archived and no backup is taken; the backups already stored expire by spec.backup.retention. Set it to true to resume.",
            )),
            archiving: None,
        },
        Situation::Dumps(observation) => dumps(observation, kept),
        Situation::Unavailable(reason) => not_wired(
            "ObjectStoreUnavailable",
            format!("backups cannot be taken: {reason}"),
        ),
        Situation::Wired(observation) => wired(observation, kept),
    }
}

fn wired(observation: &Observation<'_>, previous: Option<BackupStatus>) -> Report {
    let mut status = previous.unwrap_or_default();
    if let Ok(backups) = observation.catalog {
        status.first_recoverability_point = catalog::first_recoverability_point(backups).map(Time);
        status.last_successful_backup = catalog::latest(backups).map(|b| Time(b.end_time));
    }
    let last_failed = last_failed(observation.backups);
    if let Some(failed) = last_failed {
        status.last_failed_backup = failed.status.as_ref().and_then(|s| s.stopped_at.clone());
    }
    let archiving = match observation.agent {
        Ok(Some(agent)) => {
            if let Some(archiver) = &agent.archiver {
                status.last_archived_wal = archiver.last_archived_wal.clone();
                status.last_archived_time = archiver.last_archived_time.map(Time);
                status.last_failed_archive_time = archiver.last_failed_time.map(Time);
            }
            archiving(agent)
        }
        Ok(None) => verdict(
            None,
            "DatabaseNotReady",
            "archiving is checked once the database is ready",
        ),
        Err(message) => verdict(
            None,
            "AgentUnreachable",
            format!(
                "{message}; the backup-agent container of the database pod should be running (see its log)"
            ),
        ),
    };
    Report {
        status: Some(status),
        backup_ready: Some(backup_ready(observation, last_failed)),
        archiving: Some(archiving),
    }
}

/// The newest Failed TenantBackup, by when it stopped.
fn last_failed(backups: &[TenantBackup]) -> Option<&TenantBackup> {
    backups
        .iter()
        .filter(|b| phase(b) == Some(BackupPhase::Failed))
        .max_by_key(|b| stopped(b))
}

fn phase(backup: &TenantBackup) -> Option<BackupPhase> {
    backup.status.as_ref().and_then(|s| s.phase)
}

fn stopped(backup: &TenantBackup) -> Option<Timestamp> {
    backup
        .status
        .as_ref()
        .and_then(|s| s.stopped_at.as_ref())
        .map(|t| t.0)
}

fn name(backup: &TenantBackup) -> &str {
    backup.metadata.name.as_deref().unwrap_or_default()
}

fn backup_ready(observation: &Observation<'_>, last_failed: Option<&TenantBackup>) -> Verdict {
    let backups = match observation.catalog {
        Ok(backups) => backups,
        Err(error) => return unreachable_store(error),
    };
    let done = catalog::latest(backups).map(|latest| Done {
        id: &latest.id,
        end: latest.end_time,
        first: catalog::first_recoverability_point(backups).unwrap_or(latest.end_time),
    });
    ready(
        &BASE,
        done,
        observation.backups,
        last_failed,
        observation.next_due,
    )
}

fn unreachable_store(error: &str) -> Verdict {
    verdict(
        Some(false),
        "ObjectStoreUnreachable",
        format!(
            "the backups in the object store could not be listed: {error}. Check that the store is reachable and that its credentials are valid."
        ),
    )
}

/// How `BackupReady` names a kind of backup.
struct Kind {
    /// `base backup` or `dump`.
    noun: &'static str,
    /// The reason while none completed.
    none_yet: &'static str,
    /// Appended to the True message.
    note: &'static str,
}

const BASE: Kind = Kind {
    noun: "base backup",
    none_yet: "NoBaseBackupYet",
    note: "",
};

const DUMP: Kind = Kind {
    noun: "dump",
    none_yet: "NoDumpYet",
    note: ". External mode is dump-based: a restore returns the newest dump taken at or before its target, so the RPO is the schedule; no WAL is archived",
};

/// The newest complete backup and the first recoverability point.
struct Done<'a> {
    id: &'a str,
    end: Timestamp,
    first: Timestamp,
}

fn ready(
    kind: &Kind,
    done: Option<Done<'_>>,
    backups: &[TenantBackup],
    last_failed: Option<&TenantBackup>,
    next_due: Option<Timestamp>,
) -> Verdict {
    let noun = kind.noun;
    let in_flight = backups.iter().find(|b| {
        matches!(
            phase(b),
            None | Some(BackupPhase::Pending | BackupPhase::Running)
        )
    });
    let failure = last_failed.map(|b| {
        let message = b.status.as_ref().and_then(|s| s.message.as_deref());
        format!(
            "TenantBackup {} failed: {}",
            name(b),
            message.unwrap_or("no reason given")
        )
    });
    let Some(latest) = done else {
        let message = match (in_flight, &failure) {
            (Some(b), _) => format!(
                "the first {noun} (TenantBackup {}) is being taken; until it completes the database cannot be restored",
                name(b)
            ),
            (None, Some(failure)) => format!(
                "no {noun} completed yet: {failure}. It is retried within 10 minutes; until one completes the database cannot be restored."
            ),
            (None, None) => format!(
                "no {noun} yet: the first one starts once the database is ready; until it completes the database cannot be restored"
            ),
        };
        return verdict(Some(false), kind.none_yet, message);
    };
    let next = next_due
        .map(|t| format!("; the next is due at {t}"))
        .unwrap_or_default();
    if let (Some(failed), Some(failure)) = (last_failed, failure)
        && stopped(failed).is_some_and(|t| t > latest.end)
    {
        return verdict(
            Some(false),
            "BackupFailed",
            format!(
                "{failure}. The last successful {noun} is {} ({}){next}.",
                latest.id, latest.end
            ),
        );
    }
    verdict(
        Some(true),
        "BackupsCompleted",
        format!(
            "the last {noun} {} completed at {}; recoverable from {}{next}{}",
            latest.id, latest.end, latest.first, kind.note
        ),
    )
}

/// The longest to wait before looking at archiving again: `calm` while
/// the report's `ContinuousArchiving` is True (or absent), at most
/// [`RECHECK_UNSETTLED`] otherwise.
pub fn look_again_within(report: &Report, calm: Duration) -> Duration {
    match &report.archiving {
        Some(v) if v.status != Some(true) => calm.min(RECHECK_UNSETTLED),
        _ => calm,
    }
}

/// The report of a wired External tenant: `status.backup` from its dumps,
/// `BackupReady` from them, no `ContinuousArchiving` (there is no WAL of
/// the tenant's own on a shared server).
fn dumps(observation: &DumpObservation<'_>, previous: Option<BackupStatus>) -> Report {
    let mut status = previous.unwrap_or_default();
    let last_failed = last_failed(observation.backups);
    if let Some(failed) = last_failed {
        status.last_failed_backup = failed.status.as_ref().and_then(|s| s.stopped_at.clone());
    }
    let ready_verdict = match observation.catalog {
        Ok(dumps) => {
            status.first_recoverability_point =
                dump_catalog::first_recoverability_point(dumps).map(Time);
            status.last_successful_backup = dump_catalog::latest(dumps).map(|d| Time(d.end_time));
            let done = dump_catalog::latest(dumps).map(|latest| Done {
                id: &latest.id,
                end: latest.end_time,
                first: dump_catalog::first_recoverability_point(dumps).unwrap_or(latest.time),
            });
            ready(
                &DUMP,
                done,
                observation.backups,
                last_failed,
                observation.next_due,
            )
        }
        Err(error) => unreachable_store(error),
    };
    Report {
        status: Some(status),
        backup_ready: Some(ready_verdict),
        archiving: None,
    }
}

/// `ContinuousArchiving` from the agent's report.
pub fn archiving(agent: &AgentStatus) -> Verdict {
    let Some(archiver) = &agent.archiver else {
        let why = agent.error.as_deref().unwrap_or("no answer");
        return verdict(
            None,
            "DatabaseNotAnswering",
            format!("the backup agent could not read the archiver's state from PostgreSQL: {why}"),
        );
    };
    let pending = agent.pending_segments.unwrap_or(0);
    let pending_text = format!(
        "{pending} segment(s), {} MiB wait in pg_wal",
        agent.pending_bytes.unwrap_or(0) / (1024 * 1024)
    );
    let failing = match (archiver.last_failed_time, archiver.last_archived_time) {
        (Some(failed), Some(archived)) => failed > archived,
        (Some(_), None) => true,
        (None, _) => false,
    };
    if failing {
        let segment = archiver.last_failed_wal.as_deref().unwrap_or("(unknown)");
        let since = match &archiver.last_archived_time {
            Some(t) => format!("nothing was archived since {t}"),
            None => "nothing was archived yet".to_owned(),
        };
        let error = agent
            .last_push
            .as_ref()
            .filter(|p| !p.ok)
            .and_then(|p| p.error.as_deref())
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        return verdict(
            Some(false),
            "ArchiveFailing",
            format!(
                "archiving WAL segment {segment} fails ({since}; {pending_text}){error}. Check that the object store is reachable from the database pod and that its credentials are valid; PostgreSQL keeps the segments until they are archived, so its volume fills while this lasts."
            ),
        );
    }
    if pending > PENDING_SEGMENTS_LIMIT {
        return verdict(
            Some(false),
            "ArchiveLagging",
            format!(
                "archiving lags: {pending_text} (more than {PENDING_SEGMENTS_LIMIT}); the store may be slow or the database writes faster than it uploads"
            ),
        );
    }
    match (&archiver.last_archived_wal, archiver.last_archived_time) {
        (Some(wal), Some(time)) => verdict(
            Some(true),
            "Archiving",
            format!("WAL is archived: the last segment {wal} at {time}"),
        ),
        _ => verdict(
            None,
            "NoSegmentYet",
            "archiving is on; no WAL segment has been archived yet (one is at least every 60 seconds while the database is written to)",
        ),
    }
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
