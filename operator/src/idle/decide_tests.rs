use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

fn activity(last_request: Option<&str>) -> Activity {
    Activity {
        last_request_at: last_request.map(ts),
        running: 0,
        queued: 0,
        paused: 0,
        next_timer_at: None,
        next_schedule_at: None,
        started_at: ts("2026-12-07T10:00:00Z"),
        recover_missed_schedules: atoll_crds::contract::RecoverMissedSchedules::All,
    }
}

fn inputs(activity: Option<Activity>) -> AwakeInputs {
    AwakeInputs {
        after: Duration::from_secs(300),
        activity,
        woke_at: None,
        lead: MIN_LEAD,
        busy: None,
    }
}

#[test]
fn an_idle_tenant_sleeps_once_its_idle_time_has_passed() {
    let i = inputs(Some(activity(Some("2026-12-07T11:00:00Z"))));
    assert_eq!(
        awake(&i, ts("2026-12-07T11:03:00Z")),
        AwakeVerdict::Stay {
            recheck: Duration::from_secs(120),
            why: "active until 2026-12-07T11:00:00Z".into()
        }
    );
    assert_eq!(
        awake(&i, ts("2026-12-07T11:05:00Z")),
        AwakeVerdict::Sleep { wake_at: None }
    );
}

#[test]
fn idle_time_counts_from_the_start_or_the_last_wake_when_no_request_came() {
    let mut i = inputs(Some(activity(None)));
    assert!(matches!(
        awake(&i, ts("2026-12-07T10:04:59Z")),
        AwakeVerdict::Stay { .. }
    ));
    i.woke_at = Some(ts("2026-12-07T12:00:00Z"));
    assert!(matches!(
        awake(&i, ts("2026-12-07T12:04:00Z")),
        AwakeVerdict::Stay { .. }
    ));
    assert_eq!(
        awake(&i, ts("2026-12-07T12:05:00Z")),
        AwakeVerdict::Sleep { wake_at: None }
    );
}

#[test]
fn work_in_flight_or_an_unanswered_instance_keeps_it_awake() {
    let mut busy = activity(None);
    busy.running = 1;
    let now = ts("2026-12-08T00:00:00Z");
    let AwakeVerdict::Stay { why, .. } = awake(&inputs(Some(busy.clone())), now) else {
        panic!("a running execution keeps the tenant awake");
    };
    assert!(why.contains("1 execution(s) running"), "{why}");
    busy.running = 0;
    busy.queued = 2;
    assert!(matches!(
        awake(&inputs(Some(busy)), now),
        AwakeVerdict::Stay { .. }
    ));
    assert_eq!(
        awake(&inputs(None), now),
        AwakeVerdict::Stay {
            recheck: UNANSWERED_RECHECK,
            why: "no ready instance reported its activity".into()
        }
    );
    let mut i = inputs(Some(activity(None)));
    i.busy = Some("a backup is running");
    assert!(matches!(awake(&i, now), AwakeVerdict::Stay { .. }));
}

#[test]
fn it_sleeps_until_the_lead_before_its_next_run_unless_that_is_too_soon() {
    let mut a = activity(Some("2026-12-07T11:00:00Z"));
    a.next_schedule_at = Some(ts("2026-12-07T11:10:00Z"));
    a.next_timer_at = Some(ts("2026-12-07T11:20:00Z"));
    let mut i = inputs(Some(a));
    i.lead = Duration::from_secs(30);
    assert_eq!(
        awake(&i, ts("2026-12-07T11:05:00Z")),
        AwakeVerdict::Sleep {
            wake_at: Some(ts("2026-12-07T11:09:30Z"))
        }
    );
    // 11:09:25: waking at 11:09:30 is less than MIN_SLEEP away: stay for the run.
    assert_eq!(
        awake(&i, ts("2026-12-07T11:09:25Z")),
        AwakeVerdict::Stay {
            recheck: Duration::from_secs(36),
            why: "a scheduled run or timer is due at 2026-12-07T11:10:00Z".into()
        }
    );
    // A paused execution's timer counts like a schedule.
    let mut a = activity(Some("2026-12-07T11:00:00Z"));
    a.next_timer_at = Some(ts("2026-12-07T12:00:00Z"));
    assert_eq!(
        awake(&inputs(Some(a)), ts("2026-12-07T11:05:00Z")),
        AwakeVerdict::Sleep {
            wake_at: Some(ts("2026-12-07T11:59:50Z"))
        }
    );
}

#[test]
fn replicas_combine_into_the_busiest_view() {
    let mut a = activity(Some("2026-12-07T11:00:00Z"));
    a.next_schedule_at = Some(ts("2026-12-07T12:00:00Z"));
    let mut b = activity(Some("2026-12-07T11:30:00Z"));
    b.running = 3;
    b.next_schedule_at = Some(ts("2026-12-07T11:45:00Z"));
    let both = super::super::activity::combine(vec![a, b]).expect("two reports");
    assert_eq!(both.last_request_at, Some(ts("2026-12-07T11:30:00Z")));
    assert_eq!(both.running, 3);
    assert_eq!(both.next_schedule_at, Some(ts("2026-12-07T11:45:00Z")));
    assert_eq!(super::super::activity::combine(vec![]), None);
}

fn asleep_inputs() -> AsleepInputs {
    AsleepInputs {
        sleeping_since: ts("2026-12-07T11:00:00Z"),
        next_wake: Some(ts("2026-12-07T12:00:00Z")),
        requested: None,
        idle_wanted: true,
    }
}

#[test]
fn a_sleeping_tenant_wakes_on_a_newer_request_its_schedule_or_when_idle_is_removed() {
    let mut i = asleep_inputs();
    let now = ts("2026-12-07T11:30:00Z");
    assert_eq!(
        asleep(&i, now),
        AsleepVerdict::Sleep {
            until: Some(ts("2026-12-07T12:00:00Z"))
        }
    );
    // A request from before the sleep was already served.
    i.requested = Some((ts("2026-12-07T10:59:00Z"), WakeCause::Request));
    assert!(matches!(asleep(&i, now), AsleepVerdict::Sleep { .. }));
    i.requested = Some((ts("2026-12-07T11:29:59Z"), WakeCause::Request));
    assert_eq!(
        asleep(&i, now),
        AsleepVerdict::Wake {
            cause: WakeCause::Request,
            requested_at: ts("2026-12-07T11:29:59Z")
        }
    );
    let mut i = asleep_inputs();
    assert_eq!(
        asleep(&i, ts("2026-12-07T12:00:01Z")),
        AsleepVerdict::Wake {
            cause: WakeCause::Schedule,
            requested_at: ts("2026-12-07T12:00:00Z")
        }
    );
    i.idle_wanted = false;
    assert!(matches!(
        asleep(&i, now),
        AsleepVerdict::Wake {
            cause: WakeCause::Manual,
            ..
        }
    ));
}

#[test]
fn the_lead_is_twice_the_last_wake_and_at_least_the_minimum() {
    assert_eq!(lead(None), MIN_LEAD);
    assert_eq!(lead(Some(300)), MIN_LEAD);
    assert_eq!(lead(Some(8_000)), Duration::from_secs(16));
    assert_eq!(lead(Some(-5)), MIN_LEAD);
}

fn drain_inputs(activity: Option<Activity>) -> DrainInputs {
    DrainInputs {
        activity,
        sleeping_since: ts("2026-12-07T11:00:00Z"),
        next_wake: Some(ts("2026-12-07T12:00:00Z")),
        lead: MIN_LEAD,
    }
}

#[test]
fn work_that_reached_the_instance_in_its_drain_wakes_it_instead_of_being_stopped() {
    let now = ts("2026-12-07T11:00:05Z");
    let woken = DrainVerdict::Wake {
        cause: WakeCause::Request,
        requested_at: now,
    };
    // An execution started in the drain (by a request an ingress
    // controller still sent to the instance): it is not stopped.
    let mut running = activity(Some("2026-12-07T10:50:00Z"));
    running.running = 1;
    assert_eq!(drained(&drain_inputs(Some(running)), now), woken);
    let mut queued = activity(None);
    queued.queued = 1;
    assert_eq!(drained(&drain_inputs(Some(queued)), now), woken);
    // A request served after the sleep began, even one that started nothing.
    let served = activity(Some("2026-12-07T11:00:02Z"));
    assert_eq!(drained(&drain_inputs(Some(served)), now), woken);
    // Nothing new: the workloads stop, the scheduled wake stays.
    let quiet = activity(Some("2026-12-07T10:50:00Z"));
    assert_eq!(
        drained(&drain_inputs(Some(quiet)), now),
        DrainVerdict::Stop {
            next_wake: Some(ts("2026-12-07T12:00:00Z"))
        }
    );
    // No instance answered (already stopped): nothing to look at.
    assert_eq!(
        drained(&drain_inputs(None), now),
        DrainVerdict::Stop {
            next_wake: Some(ts("2026-12-07T12:00:00Z"))
        }
    );
}

#[test]
fn a_run_scheduled_in_the_drain_moves_the_wake_earlier() {
    let now = ts("2026-12-07T11:00:05Z");
    let mut a = activity(Some("2026-12-07T10:50:00Z"));
    a.next_schedule_at = Some(ts("2026-12-07T11:30:00Z"));
    assert_eq!(
        drained(&drain_inputs(Some(a.clone())), now),
        DrainVerdict::Stop {
            next_wake: Some(ts("2026-12-07T11:29:50Z"))
        }
    );
    // A later one leaves the wake where it was; none before, this one.
    a.next_schedule_at = Some(ts("2026-12-07T13:00:00Z"));
    assert_eq!(
        drained(&drain_inputs(Some(a.clone())), now),
        DrainVerdict::Stop {
            next_wake: Some(ts("2026-12-07T12:00:00Z"))
        }
    );
    let mut i = drain_inputs(Some(a));
    i.next_wake = None;
    assert_eq!(
        drained(&i, now),
        DrainVerdict::Stop {
            next_wake: Some(ts("2026-12-07T12:59:50Z"))
        }
    );
}
