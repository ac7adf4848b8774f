//! Where a Tenant's restore stands and what that means for its children.
//! Pure.

use atoll_backup::restore::RestoreOutcome;
use atoll_crds::{RestorePhase, RestoreStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// The `Restored` condition's reasons.
pub mod reasons {
    /// The source, its store or its backups could not be resolved.
    pub const SOURCE_UNAVAILABLE: &str = "SourceUnavailable";
    /// No backup of the source fits spec.restore.
    pub const NO_BACKUP: &str = "NoSuitableBackup";
    /// The store holding the source's backups cannot be used.
    pub const STORE_UNAVAILABLE: &str = "ObjectStoreUnavailable";
    /// The source's backups are of the other database mode.
    pub const OTHER_MODE: &str = "IncompatibleBackups";
    /// The database pod is recovering.
    pub const RESTORING: &str = "Restoring";
    /// Recovered.
    pub const RESTORED: &str = "Restored";
    /// The recovery stopped.
    pub const FAILED: &str = "RestoreFailed";
}

/// What was resolved of `spec.restore`: the exact backup to start from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The source Tenant's uid.
    pub source_uid: String,
    /// The base backup's id.
    pub backup_id: String,
    /// The moment to recover to (`None`: the end of the archive).
    pub target_time: Option<Timestamp>,
}

/// Where a Tenant's restore stands: `status.restore` and the `Restored`
/// condition's reason and message.
#[derive(Clone, Debug, PartialEq)]
pub struct RestoreView {
    /// `status.restore` as it should be.
    pub status: RestoreStatus,
    /// The condition's reason (one of [`reasons`]).
    pub reason: &'static str,
    /// The condition's message (never a credential).
    pub message: String,
}

impl RestoreView {
    /// Not started: `reason` and `message` say what is missing.
    pub fn pending(reason: &'static str, message: String, target: Option<Timestamp>) -> Self {
        RestoreView {
            status: RestoreStatus {
                phase: Some(RestorePhase::Pending),
                target_time: target.map(Time),
                message: Some(message.clone()),
                ..RestoreStatus::default()
            },
            reason,
            message,
        }
    }

    /// Resolved; the database pod recovers.
    pub fn running(resolved: &Resolved) -> Self {
        let message = format!(
            "Recovering the database from base backup {} of tenant {} to {}.",
            resolved.backup_id,
            resolved.source_uid,
            target_text(resolved.target_time)
        );
        RestoreView {
            status: RestoreStatus {
                phase: Some(RestorePhase::Running),
                source_uid: Some(resolved.source_uid.clone()),
                backup_id: Some(resolved.backup_id.clone()),
                target_time: resolved.target_time.map(Time),
                reached_time: None,
                message: Some(message.clone()),
            },
            reason: reasons::RESTORING,
            message,
        }
    }

    /// Resolved; the restore-dump pod restores the dump (External).
    pub fn running_dump(resolved: &Resolved) -> Self {
        let message = format!(
            "Restoring dump {} of tenant {} (the newest taken at or before {}) into the new database; the instance starts once it is restored.",
            resolved.backup_id,
            resolved.source_uid,
            resolved
                .target_time
                .map_or_else(|| "now".to_owned(), |t| t.to_string())
        );
        let mut view = RestoreView::running(resolved);
        view.status.message = Some(message.clone());
        view.message = message;
        view
    }

    /// What the restore wrote (`restore.json`) for `resolved`.
    pub fn finished(resolved: &Resolved, outcome: &RestoreOutcome) -> Self {
        let (phase, reason) = if outcome.ok {
            (RestorePhase::Completed, reasons::RESTORED)
        } else {
            (RestorePhase::Failed, reasons::FAILED)
        };
        let message = if outcome.ok {
            outcome.message.clone()
        } else {
            format!(
                "{}. The database is stopped; create a new Tenant with another spec.restore to try again.",
                outcome.message.trim_end_matches('.')
            )
        };
        RestoreView {
            status: RestoreStatus {
                phase: Some(phase),
                source_uid: Some(resolved.source_uid.clone()),
                backup_id: outcome
                    .backup_id
                    .clone()
                    .or_else(|| Some(resolved.backup_id.clone())),
                target_time: resolved.target_time.map(Time),
                reached_time: outcome.reached_time.map(Time),
                message: Some(message.clone()),
            },
            reason,
            message,
        }
    }

    /// The restore's init container kept failing before it wrote its
    /// outcome (`why` from the pod's init container status): final, as a
    /// failure the restore reported itself.
    pub fn init_failed(resolved: &Resolved, why: &str) -> Self {
        let message = format!(
            "{}. The database is stopped; fix the cause and create a new Tenant with spec.restore to try again.",
            why.trim_end_matches('.')
        );
        RestoreView {
            status: RestoreStatus {
                phase: Some(RestorePhase::Failed),
                source_uid: Some(resolved.source_uid.clone()),
                backup_id: Some(resolved.backup_id.clone()),
                target_time: resolved.target_time.map(Time),
                reached_time: None,
                message: Some(message.clone()),
            },
            reason: reasons::FAILED,
            message,
        }
    }

    /// A finished restore as the Tenant's status already holds it (it
    /// never changes again), `None` for any other.
    pub fn settled(previous: &RestoreStatus) -> Option<Self> {
        let reason = match previous.phase? {
            RestorePhase::Completed => reasons::RESTORED,
            RestorePhase::Failed => reasons::FAILED,
            RestorePhase::Pending | RestorePhase::Running => return None,
        };
        Some(RestoreView {
            status: previous.clone(),
            reason,
            message: previous.message.clone().unwrap_or_default(),
        })
    }

    /// The phase (Pending when unset).
    pub fn phase(&self) -> RestorePhase {
        self.status.phase.unwrap_or(RestorePhase::Pending)
    }

    /// The source and backup, once resolved.
    pub fn resolved(&self) -> Option<Resolved> {
        Some(Resolved {
            source_uid: self.status.source_uid.clone()?,
            backup_id: self.status.backup_id.clone()?,
            target_time: self.status.target_time.as_ref().map(|t| t.0),
        })
    }

    /// The `Restored` condition's status: True once recovered, Unknown
    /// while recovering, False otherwise.
    pub fn condition(&self) -> Option<bool> {
        match self.phase() {
            RestorePhase::Completed => Some(true),
            RestorePhase::Running => None,
            RestorePhase::Pending | RestorePhase::Failed => Some(false),
        }
    }

    /// Whether the restore needs the store's Secret in the namespace (it
    /// may run now or after a restart of the pod).
    pub fn needs_store(&self) -> bool {
        self.phase() == RestorePhase::Running
    }
}

/// `the end of the archive` or the time.
pub fn target_text(target: Option<Timestamp>) -> String {
    target.map_or_else(
        || "the end of its WAL archive".to_owned(),
        |t| t.to_string(),
    )
}

/// Whether the database StatefulSet is held at 0 replicas: until the
/// source and backup are resolved (nothing to start from) and after a
/// failed restore (no endless retry of the init container).
pub fn hold_database(view: &RestoreView) -> bool {
    !matches!(
        view.phase(),
        RestorePhase::Running | RestorePhase::Completed
    )
}

/// Whether the instance Deployment is held at 0 replicas: until the
/// database is recovered (it must never run its migrations on anything
/// else).
pub fn hold_instance(view: &RestoreView) -> bool {
    view.phase() != RestorePhase::Completed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved() -> Resolved {
        Resolved {
            source_uid: "5e1d7a3c-0c2b-4d8e-9a41-7f3b2c1d0e9a".into(),
            backup_id: "20261207T100000Z".into(),
            target_time: Some("2026-12-07T10:30:00Z".parse().expect("time")),
        }
    }

    fn outcome(ok: bool, message: &str) -> RestoreOutcome {
        RestoreOutcome {
            source_uid: resolved().source_uid,
            backup_id: Some(resolved().backup_id),
            target_time: resolved().target_time,
            reached_time: Some("2026-12-07T10:29:58Z".parse().expect("time")),
            ok,
            message: message.into(),
        }
    }

    #[test]
    fn each_phase_holds_what_must_not_run() {
        let pending = RestoreView::pending(reasons::NO_BACKUP, "none".into(), None);
        assert_eq!(pending.phase(), RestorePhase::Pending);
        assert!(hold_database(&pending) && hold_instance(&pending));
        assert_eq!(pending.condition(), Some(false));
        assert_eq!(pending.resolved(), None);

        let running = RestoreView::running(&resolved());
        assert!(!hold_database(&running) && hold_instance(&running));
        assert_eq!(running.condition(), None);
        assert_eq!(running.resolved(), Some(resolved()));
        assert!(running.needs_store());

        let done = RestoreView::finished(&resolved(), &outcome(true, "recovered"));
        assert_eq!(done.phase(), RestorePhase::Completed);
        assert!(!hold_database(&done) && !hold_instance(&done));
        assert_eq!(done.condition(), Some(true));
        assert!(!done.needs_store());
        assert_eq!(done.resolved(), Some(resolved()), "the same init container");

        let failed = RestoreView::finished(
            &resolved(),
            &outcome(false, "cannot reach T: recovery could reach only 10:29:58Z"),
        );
        assert_eq!(failed.phase(), RestorePhase::Failed);
        assert!(hold_database(&failed) && hold_instance(&failed));
        assert_eq!(failed.condition(), Some(false));
        assert!(failed.message.contains("could reach only 10:29:58Z"));
        assert!(failed.message.contains("create a new Tenant"));
        assert_eq!(
            failed.status.reached_time.as_ref().map(|t| t.0.to_string()),
            Some("2026-12-07T10:29:58Z".to_owned())
        );
    }

    #[test]
    fn an_init_container_failure_stops_the_database_for_good() {
        let failed = RestoreView::init_failed(
            &resolved(),
            "The database pod's init container \"restore\" failed: no answer from the object store.",
        );
        assert_eq!(failed.phase(), RestorePhase::Failed);
        assert_eq!(failed.reason, reasons::FAILED);
        assert_eq!(failed.condition(), Some(false));
        assert!(hold_database(&failed) && hold_instance(&failed));
        assert!(
            failed
                .message
                .contains("object store. The database is stopped")
        );
        assert_eq!(RestoreView::settled(&failed.status), Some(failed.clone()));
    }

    #[test]
    fn a_settled_restore_is_kept_and_others_are_looked_at_again() {
        let done = RestoreView::finished(&resolved(), &outcome(true, "recovered"));
        assert_eq!(RestoreView::settled(&done.status), Some(done.clone()));
        let failed = RestoreView::finished(&resolved(), &outcome(false, "no"));
        assert_eq!(
            RestoreView::settled(&failed.status).map(|v| v.reason),
            Some(reasons::FAILED)
        );
        assert_eq!(
            RestoreView::settled(&RestoreView::running(&resolved()).status),
            None
        );
        assert_eq!(RestoreView::settled(&RestoreStatus::default()), None);
    }
}
