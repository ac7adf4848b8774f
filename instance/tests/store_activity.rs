//! The store's count of unfinished executions for the activity report, on
//! SQLite and on a throwaway PostgreSQL: what is in flight, queued or
//! paused, and which waiting execution is a timer (a Pause's resume time,
//! a retry that starts later) and which is not (a pause or a queue only a
//! person or another execution ends, an execution already claimed).

use std::time::Duration;

use atoll_instance::execution::{Execution, State};
use atoll_instance::store::{ExecutionActivity, Repository, Store};
use jiff::{SignedDuration, Timestamp};
use serde_json::Map;

const LEASE: Duration = Duration::from_secs(60);
const OWNER: &str = "test-owner";

fn execution(id: &str) -> Execution {
    Execution::new(
        id.into(),
        "acme".into(),
        "f".into(),
        1,
        Vec::new(),
        Map::new(),
        Timestamp::now(),
    )
}

/// Stores an execution, claims it and parks it in `state` until `not_before`.
async fn parked(store: &Store, id: &str, state: State, not_before: Option<Timestamp>) {
    let mut waiting = execution(id);
    store.insert_execution(&waiting).await.expect("insert");
    store
        .claim_one(id, OWNER, LEASE)
        .await
        .expect("claim")
        .expect("claimed");
    waiting.state.set(state, Timestamp::now());
    store
        .park_execution(&waiting, OWNER, not_before)
        .await
        .expect("park");
}

async fn counted(store: &Store) -> ExecutionActivity {
    store
        .execution_activity(Timestamp::now())
        .await
        .expect("activity")
}

async fn suite(store: &Store) {
    assert_eq!(counted(store).await, ExecutionActivity::default());
    let in_an_hour = Timestamp::now() + SignedDuration::from_hours(1);
    let in_two_hours = in_an_hour + SignedDuration::from_hours(1);

    // Created, then claimed: in flight either way.
    store
        .insert_execution(&execution("new"))
        .await
        .expect("insert");
    store
        .insert_claimed_execution(&execution("claimed"), OWNER, LEASE)
        .await
        .expect("insert claimed");
    // A retry that starts in two hours: a timer, not in flight.
    store
        .schedule_execution(&execution("retry"), in_two_hours)
        .await
        .expect("schedule");
    // Waiting for a person, and for another execution to end: no timers.
    parked(store, "held", State::Paused, None).await;
    parked(store, "queued", State::Queued, None).await;
    let activity = counted(store).await;
    let micros = |t: Timestamp| Timestamp::from_microsecond(t.as_microsecond()).expect("time");
    assert_eq!(
        activity,
        ExecutionActivity {
            running: 2,
            queued: 1,
            paused: 1,
            next_timer: Some(micros(in_two_hours)),
        }
    );

    // A Pause that resumes in an hour is the earliest timer.
    parked(store, "timed", State::Paused, Some(in_an_hour)).await;
    let activity = counted(store).await;
    assert_eq!((activity.running, activity.paused), (2, 2));
    assert_eq!(activity.next_timer, Some(micros(in_an_hour)));

    // Its time passed (not yet claimed): still its timer, now due.
    let later = in_an_hour + SignedDuration::from_secs(1);
    let due = store.execution_activity(later).await.expect("activity");
    assert_eq!(due.next_timer, Some(micros(in_an_hour)));
    assert_eq!((due.running, due.paused), (2, 2));
    // Past the retry's start, it is in flight and no longer a timer.
    let past_both = in_two_hours + SignedDuration::from_secs(1);
    let due = store.execution_activity(past_both).await.expect("activity");
    assert_eq!(due.running, 3);
    assert_eq!(due.next_timer, Some(micros(in_an_hour)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_executions_are_counted_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite:{}", dir.path().join("atoll.db").display());
    let store = Store::connect(&url).await.expect("connect");
    suite(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_executions_are_counted_on_postgres() {
    let server = atoll_testkit::pg::TestPostgres::start();
    let store = Store::connect(&server.database_url("activity"))
        .await
        .expect("connect");
    suite(&store).await;
}
