//! Status computation's unit tests: every transition, without an API server.

use super::*;
use atoll_crds::TenantSpec;
use k8s_openapi::jiff::Timestamp;

fn at(seconds: i64) -> Time {
    Time(Timestamp::from_second(seconds).expect("valid"))
}

fn tenant(suspended: bool, status: Option<TenantStatus>) -> Tenant {
    let mut tenant = Tenant::new(
        "acme",
        TenantSpec {
            suspended,
            ..TenantSpec::default()
        },
    );
    tenant.metadata.generation = Some(3);
    tenant.status = status;
    tenant
}

fn ready_workload() -> WorkloadReadiness {
    WorkloadReadiness {
        desired: 1,
        ready: 1,
        updated: 1,
        observed_current: true,
    }
}

fn applied(
    db: WorkloadReadiness,
    instance: WorkloadReadiness,
    identity: IdentityState,
) -> Observed {
    Observed::Applied {
        database: DatabaseState::Dedicated(db),
        instance,
        identity,
        version: "0.1.0".into(),
    }
}

fn condition<'a>(status: &'a TenantStatus, type_: &str) -> (&'a str, &'a str) {
    let c = conditions::get(&status.conditions, type_).expect("condition present");
    (c.status.as_str(), c.reason.as_str())
}

#[test]
fn the_phase_alone_is_the_phase_of_the_whole_status() {
    let starting = WorkloadReadiness::default();
    let mut observations = vec![Observed::Deleting, Observed::Invalid(Vec::new())];
    for (db, instance) in [
        (ready_workload(), ready_workload()),
        (starting.clone(), ready_workload()),
        (ready_workload(), starting.clone()),
    ] {
        for identity in [IdentityState::Synced, IdentityState::NameConflict] {
            observations.push(applied(db.clone(), instance.clone(), identity));
        }
    }
    for database in [
        DatabaseState::ExternalProvisioned,
        DatabaseState::ExternalFailed("no".into()),
    ] {
        observations.push(Observed::Applied {
            database,
            instance: ready_workload(),
            identity: IdentityState::Pending,
            version: "0.1.0".into(),
        });
    }
    let before = |phase| {
        Some(TenantStatus {
            phase: Some(phase),
            ..TenantStatus::default()
        })
    };
    for suspended in [false, true] {
        for previous in [None, before(Phase::Ready), before(Phase::Provisioning)] {
            let tenant = tenant(suspended, previous);
            for observed in &observations {
                let status = desired_status(&tenant, observed, "u", "ns", &at(1));
                assert_eq!(
                    Some(phase(&tenant, observed)),
                    status.phase,
                    "{observed:?}, suspended {suspended}"
                );
            }
        }
    }
}

#[test]
fn provisioning_then_ready_then_degraded() {
    let url = "http://acme.atoll.localhost:8080";
    let starting = applied(
        WorkloadReadiness::default(),
        WorkloadReadiness::default(),
        IdentityState::Pending,
    );
    let first = desired_status(&tenant(false, None), &starting, url, "atoll-acme", &at(1));
    assert_eq!(first.phase, Some(Phase::Provisioning));
    assert_eq!(
        condition(&first, types::READY),
        ("False", "DatabaseNotReady")
    );
    assert_eq!(first.observed_generation, Some(3));
    assert_eq!(
        first.version, None,
        "no version is reported before the instance runs"
    );

    let running = applied(ready_workload(), ready_workload(), IdentityState::Synced);
    let ready = desired_status(
        &tenant(false, Some(first)),
        &running,
        url,
        "atoll-acme",
        &at(2),
    );
    assert_eq!(ready.phase, Some(Phase::Ready));
    assert_eq!(condition(&ready, types::READY), ("True", "Ready"));
    assert_eq!(
        condition(&ready, types::IDENTITY_SYNCED),
        ("True", "Registered")
    );
    assert_eq!(ready.version.as_deref(), Some("0.1.0"));

    // Same observation again: nothing changes, so no status write.
    let again = desired_status(
        &tenant(false, Some(ready.clone())),
        &running,
        url,
        "atoll-acme",
        &at(3),
    );
    assert_eq!(again, ready);

    let db_down = applied(
        WorkloadReadiness {
            ready: 0,
            ..ready_workload()
        },
        ready_workload(),
        IdentityState::Synced,
    );
    let degraded = desired_status(
        &tenant(false, Some(ready)),
        &db_down,
        url,
        "atoll-acme",
        &at(4),
    );
    assert_eq!(degraded.phase, Some(Phase::Degraded));
    assert_eq!(
        condition(&degraded, types::DATABASE_READY),
        ("False", "NotReady")
    );
    let ready_condition = conditions::get(&degraded.conditions, types::READY).expect("Ready");
    assert_eq!(ready_condition.last_transition_time, at(4));
}

#[test]
fn invalid_spec_names_the_field() {
    let errors = vec![FieldError {
        field: "spec.quota.pods".into(),
        message: "must be between 1 and 1000 (is 0)".into(),
    }];
    let status = desired_status(
        &tenant(false, None),
        &Observed::Invalid(errors),
        "u",
        "ns",
        &at(1),
    );
    assert_eq!(status.phase, Some(Phase::Degraded));
    let ready = conditions::get(&status.conditions, types::READY).expect("Ready");
    assert_eq!(ready.reason, "InvalidSpec");
    assert!(
        ready.message.contains("spec.quota.pods"),
        "{}",
        ready.message
    );
}

#[test]
fn suspended_tenant_reports_suspended_everywhere() {
    let observed = applied(
        WorkloadReadiness::default(),
        WorkloadReadiness::default(),
        IdentityState::Synced,
    );
    let status = desired_status(&tenant(true, None), &observed, "u", "ns", &at(1));
    assert_eq!(status.phase, Some(Phase::Suspended));
    for type_ in [types::READY, types::DATABASE_READY, types::INSTANCE_READY] {
        assert_eq!(condition(&status, type_), ("False", "Suspended"));
    }
}

#[test]
fn identity_problems_do_not_block_readiness() {
    for (identity, reason) in [
        (
            IdentityState::Unavailable("connection refused".into()),
            "IdentityUnavailable",
        ),
        (IdentityState::NameConflict, "NameConflict"),
    ] {
        let observed = applied(ready_workload(), ready_workload(), identity);
        let status = desired_status(&tenant(false, None), &observed, "u", "ns", &at(1));
        assert_eq!(status.phase, Some(Phase::Ready));
        assert_eq!(
            condition(&status, types::IDENTITY_SYNCED),
            ("False", reason)
        );
    }
}

#[test]
fn rollout_in_progress_is_not_ready() {
    let rolling = WorkloadReadiness {
        desired: 2,
        ready: 2,
        updated: 1,
        observed_current: true,
    };
    let observed = applied(ready_workload(), rolling, IdentityState::Synced);
    let status = desired_status(&tenant(false, None), &observed, "u", "ns", &at(1));
    assert_eq!(
        condition(&status, types::INSTANCE_READY),
        ("False", "RollingOut")
    );
}
