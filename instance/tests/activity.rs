//! The activity report (`GET /activity` on the metrics listener, what the
//! operator reads to put an idle tenant to sleep and wake it for its next
//! schedule) over real HTTP, on SQLite and on PostgreSQL: the last request
//! is a user's (probes and the metrics listener leave it alone); the
//! execution counts follow an execution as it pauses, runs, queues and
//! ends; a Pause with a delay is a timer at its resume time; the next
//! schedule tick is the cron's, and none once the flow or its trigger is
//! disabled or the flow deleted.

mod support;

use std::time::Duration;

use atoll_crds::contract::{InstanceActivity, RecoverMissedSchedules};
use atoll_instance::config::AuthMode;
use atoll_testkit::eventually;
use jiff::{SignedDuration, Timestamp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::api_instance::{Instance, TENANT};

/// How long an execution may take to reach the state a step waits for.
const LIMIT: Duration = Duration::from_secs(30);

const NAMESPACE: &str = "acme.activity";

/// Paused until resumed by hand, then sleeping long.
const HELD: &str = "id: held
namespace: acme.activity
tasks:
  - id: hold
    type: io.kestra.plugin.core.flow.Pause
  - id: nap
    type: io.kestra.plugin.core.flow.Sleep
    duration: PT10M
";

/// One execution at a time, the others queued.
const SINGLE: &str = "id: single
namespace: acme.activity
concurrency: {limit: 1, behavior: QUEUE}
tasks:
  - id: nap
    type: io.kestra.plugin.core.flow.Sleep
    duration: PT10M
";

/// Paused for an hour, then resumed by the engine itself.
const TIMED: &str = "id: timed
namespace: acme.activity
tasks:
  - id: wait
    type: io.kestra.plugin.core.flow.Pause
    delay: PT1H
";

/// Fires every minute.
const MINUTELY: &str = "id: minutely
namespace: acme.activity
triggers:
  - id: every-minute
    type: io.kestra.plugin.core.trigger.Schedule
    cron: \"*/1 * * * *\"
tasks:
  - id: hi
    type: io.kestra.plugin.core.log.Log
    message: hi
";

async fn start(database_url: Option<String>) -> Instance {
    Instance::start_with_metrics(AuthMode::Disabled { explicit: true }, database_url).await
}

/// The report as JSON.
async fn report_json(i: &Instance) -> Value {
    let base = i.metrics_base.as_deref().expect("a metrics listener");
    let response = i
        .http
        .get(format!("{base}/activity"))
        .send()
        .await
        .expect("activity");
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("JSON")
}

/// The report, read as the operator reads it.
async fn report(i: &Instance) -> InstanceActivity {
    serde_json::from_value(report_json(i).await).expect("an InstanceActivity")
}

/// Calls the tenant's API: a flow's YAML as text, anything else as JSON.
async fn api(i: &Instance, method: Method, path: &str, body: Option<Value>) -> Value {
    let mut request = i
        .http
        .request(method, format!("{}/api/v1/{TENANT}{path}", i.base));
    request = match body {
        Some(Value::String(yaml)) => request
            .header("content-type", "application/x-yaml")
            .body(yaml),
        Some(json) => request.json(&json),
        None => request,
    };
    let response = request.send().await.expect("API call");
    let status = response.status();
    let text = response.text().await.expect("body");
    assert!(status.is_success(), "{path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

async fn create_flow(i: &Instance, source: &str) {
    api(
        i,
        Method::POST,
        "/flows",
        Some(Value::String(source.into())),
    )
    .await;
}

/// Starts an execution of a flow of [`NAMESPACE`]; its id.
async fn run(i: &Instance, flow_id: &str) -> String {
    let path = format!("/executions/{NAMESPACE}/{flow_id}");
    let execution = api(i, Method::POST, &path, None).await;
    execution["id"].as_str().expect("an id").to_owned()
}

async fn kill(i: &Instance, id: &str) {
    api(i, Method::DELETE, &format!("/executions/{id}/kill"), None).await;
}

/// The report once it counts (running, queued, paused).
async fn counted(i: &Instance, want: (u64, u64, u64)) -> InstanceActivity {
    eventually(
        &format!("(running, queued, paused) = {want:?}"),
        LIMIT,
        || async move {
            let activity = report(i).await;
            ((activity.running, activity.queued, activity.paused) == want).then_some(activity)
        },
    )
    .await
}

/// The report's last request is a user's: none at start (the readiness
/// checks that waited for the instance do not count), then the API call's.
async fn last_request(i: &Instance) {
    let started = report_json(i).await;
    let fields: Vec<&str> = started
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields.len(),
        8,
        "lastRequestAt, running, queued, paused, nextTimerAt, nextScheduleAt, startedAt, recoverMissedSchedules: {started}"
    );
    assert_eq!(started["lastRequestAt"], Value::Null, "{started}");
    assert_eq!(started["nextTimerAt"], Value::Null, "{started}");
    assert_eq!(started["nextScheduleAt"], Value::Null, "{started}");
    let activity: InstanceActivity = serde_json::from_value(started).expect("an InstanceActivity");
    assert!(activity.started_at <= Timestamp::now());
    assert_eq!(
        activity.recover_missed_schedules,
        RecoverMissedSchedules::All
    );
    assert_eq!(
        (activity.running, activity.queued, activity.paused),
        (0, 0, 0)
    );

    let before = Timestamp::now();
    api(i, Method::GET, "/flows/search", None).await;
    let after = Timestamp::now();
    let seen = report(i).await.last_request_at.expect("the API call seen");
    // Recorded to the millisecond.
    assert!(
        before.as_millisecond() <= seen.as_millisecond() && seen <= after,
        "{before} <= {seen} <= {after}"
    );

    // Probes and the metrics listener, a clear millisecond later, leave it.
    eventually("a millisecond passed", LIMIT, || async {
        (Timestamp::now().as_millisecond() > seen.as_millisecond() + 1).then_some(())
    })
    .await;
    let metrics = i.metrics_base.clone().expect("a metrics listener");
    for url in [
        format!("{}/healthz", i.base),
        format!("{}/readyz", i.base),
        format!("{metrics}/healthz"),
        format!("{metrics}/metrics"),
        format!("{metrics}/activity"),
    ] {
        let response = i.http.get(&url).send().await.expect("probe");
        assert_eq!(response.status(), StatusCode::OK, "{url}");
    }
    assert_eq!(report(i).await.last_request_at, Some(seen));

    // A webhook (here one that matches nothing) is a client's request too.
    let response = i
        .http
        .post(format!(
            "{}/api/v1/executions/webhook/{NAMESPACE}/none/key",
            i.base
        ))
        .send()
        .await
        .expect("webhook");
    assert!(!response.status().is_server_error(), "{response:?}");
    let later = report(i).await.last_request_at.expect("still seen");
    assert!(later > seen, "{later} > {seen}");
}

/// The counts follow executions as they pause, run, queue and end.
async fn executions(i: &Instance) {
    create_flow(i, HELD).await;
    create_flow(i, SINGLE).await;
    let held = run(i, "held").await;
    let activity = counted(i, (0, 0, 1)).await;
    // Paused with no delay: waits for a person, no timer.
    assert_eq!(activity.next_timer_at, None);

    api(i, Method::POST, &format!("/executions/{held}/resume"), None).await;
    counted(i, (1, 0, 0)).await;

    let first = run(i, "single").await;
    counted(i, (2, 0, 0)).await;
    let second = run(i, "single").await;
    let activity = counted(i, (2, 1, 0)).await;
    // Queued behind the limit: no timer either.
    assert_eq!(activity.next_timer_at, None);

    for id in [&second, &first, &held] {
        kill(i, id).await;
    }
    let activity = counted(i, (0, 0, 0)).await;
    assert_eq!(activity.next_timer_at, None);
}

/// A Pause with a delay is a timer at the moment it resumes.
async fn timers(i: &Instance) {
    create_flow(i, TIMED).await;
    let id = run(i, "timed").await;
    let activity = counted(i, (0, 0, 1)).await;
    let execution = api(i, Method::GET, &format!("/executions/{id}"), None).await;
    let paused_at: Timestamp = execution["taskRunList"][0]["state"]["histories"]
        .as_array()
        .expect("histories")
        .iter()
        .find(|h| h["state"] == "PAUSED")
        .and_then(|h| h["date"].as_str())
        .expect("the pause's date")
        .parse()
        .expect("a time");
    let resumes = paused_at + SignedDuration::from_hours(1);
    // The store keeps microseconds.
    let resumes = Timestamp::from_microsecond(resumes.as_microsecond()).expect("a time");
    assert_eq!(activity.next_timer_at, Some(resumes), "{execution}");

    kill(i, &id).await;
    let activity = counted(i, (0, 0, 0)).await;
    assert_eq!(activity.next_timer_at, None);
}

/// The start of the minute `t` is in.
fn minute_of(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second().div_euclid(60) * 60).expect("a time")
}

/// The next schedule tick is the cron's, while the flow and its trigger
/// are enabled.
async fn schedules(i: &Instance) {
    create_flow(i, MINUTELY).await;
    let next_tick = || async move {
        let before = Timestamp::now();
        let next = report(i).await.next_schedule_at;
        let after = Timestamp::now();
        (before, next, after)
    };
    let (before, next, after) = next_tick().await;
    let next = next.expect("a schedule");
    // The next minute; or this one, only just begun and not yet fired.
    let one_minute = SignedDuration::from_mins(1);
    let mut expected = vec![
        minute_of(before) + one_minute,
        minute_of(after) + one_minute,
    ];
    if before.duration_since(minute_of(before)) < SignedDuration::from_secs(15) {
        expected.push(minute_of(before));
    }
    assert!(
        expected.contains(&next),
        "{next} is one of {expected:?} (read between {before} and {after})"
    );

    let no_schedule = |what: &'static str| async move {
        eventually(what, LIMIT, || async {
            report(i).await.next_schedule_at.is_none().then_some(())
        })
        .await;
    };
    let a_schedule = |what: &'static str| async move {
        eventually(what, LIMIT, || async {
            report(i).await.next_schedule_at.map(|_| ())
        })
        .await;
    };
    let path = format!("/flows/{NAMESPACE}/minutely");
    let disabled = format!("{MINUTELY}disabled: true\n");
    api(i, Method::PUT, &path, Some(Value::String(disabled))).await;
    no_schedule("no schedule once the flow is disabled").await;
    api(i, Method::PUT, &path, Some(Value::String(MINUTELY.into()))).await;
    a_schedule("the schedule back once the flow is enabled").await;

    let trigger =
        json!({"namespace": NAMESPACE, "flowId": "minutely", "triggerId": "every-minute"});
    let mut switched = trigger.clone();
    switched["disabled"] = json!(true);
    api(
        i,
        Method::PUT,
        "/triggers/set-disabled",
        Some(switched.clone()),
    )
    .await;
    no_schedule("no schedule once the trigger is disabled").await;
    switched["disabled"] = json!(false);
    api(i, Method::PUT, "/triggers/set-disabled", Some(switched)).await;
    a_schedule("the schedule back once the trigger is enabled").await;

    api(i, Method::DELETE, &path, None).await;
    no_schedule("no schedule once the flow is deleted").await;
}

async fn the_report(database_url: Option<String>) {
    let i = start(database_url).await;
    last_request(&i).await;
    executions(&i).await;
    timers(&i).await;
    schedules(&i).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_activity_report_on_sqlite() {
    the_report(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_activity_report_on_postgres() {
    let server = atoll_testkit::pg::TestPostgres::start();
    the_report(Some(server.database_url("activity"))).await;
}
