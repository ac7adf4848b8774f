use atoll_crds::{Wake, WakeCause};

use super::*;

fn time(s: &str) -> Time {
    Time(s.parse().expect("timestamp"))
}

fn condition<'a>(status: &'a TenantStatus, type_: &str) -> (&'a str, &'a str, &'a str) {
    let c = conditions::get(&status.conditions, type_).expect(type_);
    (c.status.as_str(), c.reason.as_str(), c.message.as_str())
}

fn view(mode: Mode, idle: IdleStatus) -> IdleView<'static> {
    IdleView {
        after: Some("15m"),
        mode,
        idle: Some(idle),
        url: "https://acme.example.com",
    }
}

#[test]
fn a_sleeping_tenant_is_ready_through_the_gate_and_not_awake() {
    let mut status = TenantStatus {
        phase: Some(Phase::Ready),
        ..TenantStatus::default()
    };
    let idle = IdleStatus {
        sleeping_since: Some(time("2026-12-07T11:00:00Z")),
        database_asleep: true,
        next_wake: Some(time("2026-12-07T11:59:50Z")),
        ..IdleStatus::default()
    };
    let now = time("2026-12-07T11:00:00Z");
    overlay(&mut status, &view(Mode::Asleep, idle), false, Some(3), &now);
    assert_eq!(status.phase, Some(Phase::Sleeping));
    let (state, reason, message) = condition(&status, types::AWAKE);
    assert_eq!((state, reason), ("False", "Sleeping"));
    assert!(
        message.contains("the first request to https://acme.example.com wakes it")
            && message.contains("It wakes at 2026-12-07T11:59:50Z"),
        "{message}"
    );
    assert_eq!(condition(&status, types::READY).0, "True");
    assert_eq!(condition(&status, types::INSTANCE_READY).1, "Sleeping");
    assert_eq!(condition(&status, types::DATABASE_READY).1, "Sleeping");
}

#[test]
fn an_awake_tenant_says_when_it_sleeps_and_how_its_last_wake_went() {
    let mut status = TenantStatus::default();
    let idle = IdleStatus {
        last_wake: Some(Wake {
            cause: WakeCause::Request,
            requested_at: time("2026-12-07T12:00:00Z"),
            ready_at: Some(time("2026-12-07T12:00:00.180Z")),
            duration_milliseconds: Some(180),
        }),
        ..IdleStatus::default()
    };
    let now = time("2026-12-07T12:00:01Z");
    overlay(&mut status, &view(Mode::Awake, idle), false, Some(3), &now);
    let (state, reason, message) = condition(&status, types::AWAKE);
    assert_eq!((state, reason), ("True", "Awake"));
    assert!(
        message.contains("sleeps after 15m without activity")
            && message.contains("Last woken by request at 2026-12-07T12:00:00Z, ready in 180 ms"),
        "{message}"
    );
    assert_eq!(
        status
            .idle
            .and_then(|i| i.last_wake)
            .map(|w| w.duration_milliseconds),
        Some(Some(180))
    );
}

#[test]
fn waking_keeps_the_phase_and_without_spec_idle_or_suspended_there_is_no_awake_condition() {
    let mut status = TenantStatus::default();
    let idle = IdleStatus {
        sleeping_since: Some(time("2026-12-07T11:00:00Z")),
        waking: Some(Wake {
            cause: WakeCause::Schedule,
            requested_at: time("2026-12-07T11:59:50Z"),
            ready_at: None,
            duration_milliseconds: None,
        }),
        ..IdleStatus::default()
    };
    let now = time("2026-12-07T11:59:51Z");
    overlay(
        &mut status,
        &view(Mode::Waking, idle.clone()),
        false,
        Some(3),
        &now,
    );
    assert_eq!(status.phase, Some(Phase::Sleeping));
    assert_eq!(condition(&status, types::AWAKE).1, "Waking");
    let none = IdleView {
        after: None,
        mode: Mode::Awake,
        idle: None,
        url: "u",
    };
    overlay(&mut status, &none, false, Some(4), &now);
    assert!(conditions::get(&status.conditions, types::AWAKE).is_none());
    assert_eq!(status.idle, None);
    overlay(&mut status, &view(Mode::Asleep, idle), true, Some(5), &now);
    assert!(conditions::get(&status.conditions, types::AWAKE).is_none());
}
