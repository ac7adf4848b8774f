//! A restore's view → the Tenant's status: `status.restore`, the
//! `Restored` condition, and while it is not recovered, `Ready` saying so
//! (phase Degraded when it cannot go on by itself). Pure.

use atoll_crds::conditions::{self, Desired, types};
use atoll_crds::{Phase, RestorePhase, TenantStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::plan::RestoreView;

/// Writes `view` into `status` (computed by `crate::status` for the rest)
/// at `generation`.
pub fn overlay(status: &mut TenantStatus, view: &RestoreView, generation: Option<i64>, now: &Time) {
    status.restore = Some(view.status.clone());
    let mut set = |type_: &str, status_: Option<bool>, reason: &str, message: &str| {
        conditions::set(
            &mut status.conditions,
            Desired {
                type_,
                status: status_,
                reason,
                message,
            },
            generation,
            now,
        );
    };
    set(
        types::RESTORED,
        view.condition(),
        view.reason,
        &view.message,
    );
    if status.phase == Some(Phase::Suspended) {
        return;
    }
    match view.phase() {
        RestorePhase::Completed => {}
        RestorePhase::Running => set(
            types::READY,
            Some(false),
            view.reason,
            "The database is being restored; the instance starts once it is recovered (see the Restored condition).",
        ),
        RestorePhase::Pending | RestorePhase::Failed => {
            set(types::READY, Some(false), view.reason, &view.message);
            status.phase = Some(Phase::Degraded);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::plan::{Resolved, reasons};
    use super::*;
    use atoll_backup::restore::RestoreOutcome;

    fn now() -> Time {
        Time("2026-12-07T11:00:00Z".parse().expect("time"))
    }

    fn condition<'a>(status: &'a TenantStatus, type_: &str) -> (&'a str, &'a str, &'a str) {
        let c = status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .unwrap_or_else(|| panic!("no {type_}"));
        (c.status.as_str(), c.reason.as_str(), c.message.as_str())
    }

    fn provisioning() -> TenantStatus {
        TenantStatus {
            phase: Some(Phase::Provisioning),
            ..TenantStatus::default()
        }
    }

    fn resolved() -> Resolved {
        Resolved {
            source_uid: "5e1d7a3c-0c2b-4d8e-9a41-7f3b2c1d0e9a".into(),
            backup_id: "20261207T100000Z".into(),
            target_time: None,
        }
    }

    #[test]
    fn pending_and_failed_restores_degrade_the_tenant_with_the_reason() {
        let mut status = provisioning();
        let view = RestoreView::pending(
            reasons::NO_BACKUP,
            "there is no complete base backup of tenant x".into(),
            None,
        );
        overlay(&mut status, &view, Some(1), &now());
        assert_eq!(status.phase, Some(Phase::Degraded));
        assert_eq!(
            condition(&status, types::RESTORED),
            (
                "False",
                reasons::NO_BACKUP,
                "there is no complete base backup of tenant x"
            )
        );
        assert_eq!(condition(&status, types::READY).1, reasons::NO_BACKUP);
        assert_eq!(
            status.restore.as_ref().and_then(|r| r.phase),
            Some(RestorePhase::Pending)
        );

        let mut status = provisioning();
        let outcome = RestoreOutcome {
            source_uid: resolved().source_uid,
            backup_id: Some(resolved().backup_id),
            target_time: None,
            reached_time: None,
            ok: false,
            message: "recovery could reach only 10:29:58Z".into(),
        };
        overlay(
            &mut status,
            &RestoreView::finished(&resolved(), &outcome),
            Some(1),
            &now(),
        );
        assert_eq!(status.phase, Some(Phase::Degraded));
        let (state, reason, message) = condition(&status, types::RESTORED);
        assert_eq!((state, reason), ("False", reasons::FAILED));
        assert!(message.starts_with("recovery could reach only 10:29:58Z"));
    }

    #[test]
    fn running_is_unknown_and_completed_leaves_the_rest_alone() {
        let mut status = provisioning();
        overlay(
            &mut status,
            &RestoreView::running(&resolved()),
            Some(1),
            &now(),
        );
        assert_eq!(status.phase, Some(Phase::Provisioning));
        assert_eq!(condition(&status, types::RESTORED).0, "Unknown");
        assert_eq!(condition(&status, types::READY).1, reasons::RESTORING);

        let mut status = TenantStatus {
            phase: Some(Phase::Ready),
            ..TenantStatus::default()
        };
        let outcome = RestoreOutcome {
            source_uid: resolved().source_uid,
            backup_id: Some(resolved().backup_id),
            target_time: None,
            reached_time: Some("2026-12-07T10:29:58Z".parse().expect("time")),
            ok: true,
            message: "recovered".into(),
        };
        let view = RestoreView::finished(&resolved(), &outcome);
        overlay(&mut status, &view, Some(1), &now());
        assert_eq!(status.phase, Some(Phase::Ready));
        assert_eq!(
            condition(&status, types::RESTORED),
            ("True", reasons::RESTORED, "recovered")
        );
        assert!(status.conditions.iter().all(|c| c.type_ != types::READY));
        assert_eq!(status.restore, Some(view.status));
    }
}
