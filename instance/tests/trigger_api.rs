//! Kestra's trigger API, bulk execution actions and flow tools over real
//! HTTP on loopback: a schedule disabled through the API fires nothing
//! (across a restart too) until enabled; a backfill starts the schedule's
//! past ticks once each, with its labels, and a paused one stays paused
//! across a restart; on SQLite and on PostgreSQL. Bad input answers a 4xx
//! naming the problem and changes nothing.

mod support;

use std::time::Duration;

use atoll_instance::config::{AuthMode, Config};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

struct Instance {
    base: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Instance {
    async fn start(data_dir: &std::path::Path, database_url: &str) -> Instance {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let config = Config {
            tenant: "acme".into(),
            listen: addr,
            data_dir: data_dir.to_owned(),
            database_url: database_url.to_owned(),
            public_url: None,
            auth: AuthMode::Disabled { explicit: true },
            lease: Duration::from_secs(5),
            ..Config::default()
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                atoll_instance::server::serve(config, listener, shutdown)
                    .await
                    .expect("instance ran");
            }
        });
        let instance = Instance {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            shutdown,
            task: Some(task),
        };
        eventually("the instance is ready", || async {
            instance
                .http
                .get(format!("{}/readyz", instance.base))
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK)
        })
        .await;
        instance
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("instance stopped");
        }
    }

    /// Calls the tenant API; the status and the JSON answer (Null if none).
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}/api/v1/acme{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, answer) = self.call(method, path, body).await;
        assert!(status.is_success(), "{path}: {status} {answer}");
        answer
    }

    async fn create_flow(&self, source: &str) {
        let response = self
            .http
            .post(format!("{}/api/v1/acme/flows", self.base))
            .header("content-type", "application/x-yaml")
            .body(source.to_owned())
            .send()
            .await
            .expect("create flow");
        assert!(
            response.status().is_success(),
            "{:?}",
            response.text().await
        );
    }

    async fn executions(&self, flow_id: &str) -> Vec<Value> {
        let found = self
            .ok(
                Method::GET,
                &format!("/executions/search?namespace=ctl&flowId={flow_id}&size=500"),
                None,
            )
            .await;
        found["results"].as_array().cloned().unwrap_or_default()
    }

    async fn trigger(&self, flow_id: &str) -> Value {
        let found = self
            .ok(Method::GET, &format!("/triggers/ctl/{flow_id}"), None)
            .await;
        found["results"][0].clone()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    atoll_testkit::eventually(what, Duration::from_secs(30), || {
        let holds = condition();
        async move { holds.await.then_some(()) }
    })
    .await;
}

fn every_second(id: &str) -> String {
    format!(
        "id: {id}\nnamespace: ctl\ntasks:\n  - id: t\n    type: io.kestra.plugin.core.log.Log\n    message: tick\ntriggers:\n  - id: tick\n    type: io.kestra.plugin.core.trigger.Schedule\n    cron: \"* * * * * *\"\n    withSeconds: true\n"
    )
}

const HOURLY: &str = "id: hourly\nnamespace: ctl\ntasks:\n  - id: t\n    type: io.kestra.plugin.core.log.Log\n    message: \"{{ trigger.date }}\"\ntriggers:\n  - id: hourly\n    type: io.kestra.plugin.core.trigger.Schedule\n    cron: \"0 * * * *\"\n  - id: hook\n    type: io.kestra.plugin.core.trigger.Webhook\n    key: a-long-enough-webhook-key\n";

fn trigger_ref(flow_id: &str, trigger_id: &str) -> Value {
    json!({"namespace": "ctl", "flowId": flow_id, "triggerId": trigger_id})
}

/// Waits until the `clock` flow has run `n` more times: time has passed.
async fn clock_ticks(instance: &Instance, n: usize) {
    let before = instance.executions("clock").await.len();
    eventually("the clock ticked", || async {
        instance.executions("clock").await.len() >= before + n
    })
    .await;
}

async fn disabled_schedule(dir: &std::path::Path, url: &str) {
    let first = Instance::start(dir, url).await;
    first.create_flow(&every_second("tick")).await;
    first.create_flow(&every_second("clock")).await;
    eventually("tick fired", || async {
        first.executions("tick").await.len() >= 2
    })
    .await;
    let answer = first
        .ok(
            Method::PUT,
            "/triggers/set-disabled",
            Some(json!({"namespace": "ctl", "flowId": "tick", "triggerId": "tick", "disabled": true})),
        )
        .await;
    assert_eq!(answer["disabled"], true, "{answer}");
    assert_eq!(answer["state"]["disabled"], true, "{answer}");
    let when_disabled = first.executions("tick").await.len();
    clock_ticks(&first, 3).await;
    // One tick may have been in flight when it was disabled.
    assert!(first.executions("tick").await.len() <= when_disabled + 1);
    first.stop().await;

    let second = Instance::start(dir, url).await;
    assert_eq!(second.trigger("tick").await["disabled"], true);
    let after_restart = second.executions("tick").await.len();
    clock_ticks(&second, 3).await;
    assert_eq!(second.executions("tick").await.len(), after_restart);
    let enabled = second
        .ok(
            Method::POST,
            "/triggers/set-disabled/by-triggers",
            Some(json!({"triggers": [trigger_ref("tick", "tick")], "disabled": false})),
        )
        .await;
    assert_eq!(enabled, json!({"count": 1}));
    eventually("tick fires again", || async {
        second.executions("tick").await.len() >= after_restart + 2
    })
    .await;
    second.stop().await;
}

fn hour(offset: i64) -> jiff::Timestamp {
    let now = jiff::Timestamp::now().as_second();
    jiff::Timestamp::from_second(now - now.rem_euclid(3600) + offset * 3600).expect("hour")
}

async fn backfill(dir: &std::path::Path, url: &str) {
    let first = Instance::start(dir, url).await;
    first.create_flow(HOURLY).await;
    let body = json!({
        "namespace": "ctl", "flowId": "hourly", "triggerId": "hourly",
        "backfill": {"start": hour(-4), "end": hour(-2), "labels": [{"key": "run", "value": "bf"}]},
    });
    let created = first
        .ok(Method::PUT, "/triggers/backfill/create", Some(body.clone()))
        .await;
    assert_eq!(created["backfill"]["start"], json!(hour(-4)), "{created}");
    eventually("three backfilled executions", || async {
        first.executions("hourly").await.len() == 3
    })
    .await;
    let runs = first.executions("hourly").await;
    let mut dates: Vec<String> = runs
        .iter()
        .map(|r| r["trigger"]["date"].as_str().expect("date").to_owned())
        .collect();
    dates.sort();
    let want: Vec<String> = (-4..=-2).map(|h| hour(h).to_string()).collect();
    assert_eq!(dates, want);
    assert!(
        runs.iter()
            .all(|r| r["labels"] == json!([{"key": "run", "value": "bf"}]))
    );
    eventually("the finished backfill is removed", || async {
        first.trigger("hourly").await.get("backfill").is_none()
    })
    .await;

    // A paused backfill stays paused across a restart.
    let mut paused = body.clone();
    paused["backfill"]["start"] = json!(hour(-30 * 24));
    first
        .ok(Method::PUT, "/triggers/backfill/create", Some(paused))
        .await;
    first
        .ok(
            Method::PUT,
            "/triggers/backfill/pause",
            Some(trigger_ref("hourly", "hourly")),
        )
        .await;
    first.stop().await;
    let second = Instance::start(dir, url).await;
    let kept = second.trigger("hourly").await;
    assert_eq!(kept["backfill"]["paused"], true, "{kept}");
    let count = second.executions("hourly").await.len();
    second.create_flow(&every_second("clock")).await;
    clock_ticks(&second, 3).await;
    assert_eq!(
        second.executions("hourly").await.len(),
        count,
        "a paused backfill ran"
    );
    let deleted = second
        .ok(
            Method::POST,
            "/triggers/backfill/delete/by-query?filters[namespace][EQUALS]=ctl",
            None,
        )
        .await;
    assert_eq!(deleted, json!({"count": 1}));
    assert!(second.trigger("hourly").await.get("backfill").is_none());
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_controls_persist_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite:{}", dir.path().join("ctl.db").display());
    disabled_schedule(dir.path(), &url).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite:{}", dir.path().join("bf.db").display());
    backfill(dir.path(), &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_controls_persist_on_postgres() {
    let postgres = atoll_testkit::pg::TestPostgres::start();
    let dir = tempfile::tempdir().expect("tempdir");
    disabled_schedule(dir.path(), &postgres.database_url("ctl")).await;
    backfill(dir.path(), &postgres.database_url("bf")).await;
}

/// A request, and the status and words of its refusal.
type Refusal = (
    Method,
    &'static str,
    Option<Value>,
    StatusCode,
    &'static str,
);

/// Bad trigger requests: unknown triggers, malformed bodies, impossible
/// backfills, unsupported filters.
fn refusals() -> Vec<Refusal> {
    vec![
        (
            Method::PUT,
            "/triggers/set-disabled",
            Some(
                json!({"namespace": "ctl", "flowId": "hourly", "triggerId": "nope", "disabled": true}),
            ),
            StatusCode::NOT_FOUND,
            "ctl/hourly/nope",
        ),
        (
            Method::PUT,
            "/triggers/set-disabled",
            Some(json!({"namespace": "ctl"})),
            StatusCode::BAD_REQUEST,
            "flowId",
        ),
        (
            Method::PUT,
            "/triggers/backfill/create",
            Some(
                json!({"namespace": "ctl", "flowId": "hourly", "triggerId": "hook", "backfill": {"start": hour(-3)}}),
            ),
            StatusCode::BAD_REQUEST,
            "only Schedule triggers",
        ),
        (
            Method::PUT,
            "/triggers/backfill/create",
            Some(
                json!({"namespace": "ctl", "flowId": "hourly", "triggerId": "hourly", "backfill": {"start": hour(-1), "end": hour(-3)}}),
            ),
            StatusCode::BAD_REQUEST,
            "after its end",
        ),
        (
            Method::PUT,
            "/triggers/backfill/create",
            Some(
                json!({"namespace": "ctl", "flowId": "hourly", "triggerId": "hourly", "backfill": {"start": hour(-1), "end": hour(5)}}),
            ),
            StatusCode::BAD_REQUEST,
            "in the past",
        ),
        (
            Method::PUT,
            "/triggers/backfill/create",
            Some(
                json!({"namespace": "ctl", "flowId": "hourly", "triggerId": "hourly", "backfill": {"start": "yesterday"}}),
            ),
            StatusCode::BAD_REQUEST,
            "RFC 3339",
        ),
        (
            Method::PUT,
            "/triggers/backfill/pause",
            Some(trigger_ref("hourly", "hourly")),
            StatusCode::CONFLICT,
            "has no backfill",
        ),
        (
            Method::POST,
            "/triggers/unlock/by-query?filters[startDate][GREATER_THAN]=x",
            None,
            StatusCode::BAD_REQUEST,
            "filters[startDate][GREATER_THAN]",
        ),
        (
            Method::POST,
            "/triggers/unlock/by-triggers",
            Some(json!([
                trigger_ref("hourly", "hourly"),
                trigger_ref("hourly", "ghost")
            ])),
            StatusCode::NOT_FOUND,
            "ghost",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_trigger_requests_are_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite:{}", dir.path().join("bad.db").display());
    let i = Instance::start(dir.path(), &url).await;
    i.create_flow(HOURLY).await;
    for (method, path, body, status, names) in refusals() {
        let (got, answer) = i.call(method, path, body).await;
        assert_eq!(got, status, "{path}: {answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(names),
            "{path}: {message:?} does not name {names:?}"
        );
    }
    // Nothing changed: enabled, no backfill.
    let trigger = i.trigger("hourly").await;
    assert_eq!(trigger["disabled"], false, "{trigger}");
    assert!(trigger.get("backfill").is_none(), "{trigger}");
    i.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_actions_check_every_execution_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite:{}", dir.path().join("bulk.db").display());
    let i = Instance::start(dir.path(), &url).await;
    i.create_flow("id: fails\nnamespace: ctl\ntasks:\n  - id: boom\n    type: io.kestra.plugin.core.execution.Fail\n").await;
    i.create_flow("id: fine\nnamespace: ctl\ntasks:\n  - id: t\n    type: io.kestra.plugin.core.log.Log\n    message: ok\n").await;
    let failed = i
        .ok(Method::POST, "/executions/ctl/fails?wait=true", None)
        .await;
    let fine = i
        .ok(Method::POST, "/executions/ctl/fine?wait=true", None)
        .await;
    let (failed, fine) = (
        failed["id"].as_str().expect("id"),
        fine["id"].as_str().expect("id"),
    );

    refused_bulk_changes_nothing(&i, failed, fine).await;
    refused_input_names_itself(&i, failed).await;
    labels_in_bulk(&i, failed, fine).await;

    // By query, selected exactly: only the ended executions of `fine`.
    let deleted = i
        .ok(
            Method::DELETE,
            "/executions/by-query?filters[namespace][EQUALS]=ctl&filters[flowId][EQUALS]=fine",
            None,
        )
        .await;
    assert_eq!(deleted, json!({"count": 1}));
    assert_eq!(i.executions("fine").await.len(), 0);
    assert_eq!(i.executions("fails").await.len(), 1);
    i.stop().await;
}

/// A bulk restart with one execution that cannot restart and one unknown
/// is refused, naming both, and changes nothing.
async fn refused_bulk_changes_nothing(i: &Instance, failed: &str, fine: &str) {
    // One execution cannot be restarted, one is unknown: nothing restarts.
    let before = i
        .ok(Method::GET, &format!("/executions/{failed}"), None)
        .await;
    let fine_before = i
        .ok(Method::GET, &format!("/executions/{fine}"), None)
        .await;
    let (status, answer) = i
        .call(
            Method::POST,
            "/executions/restart/by-ids",
            Some(json!([failed, fine, "unknown-id"])),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["message"], "invalid bulk restart");
    assert_eq!(
        answer["invalids"][fine],
        "execution not in state FAILED or KILLED"
    );
    assert_eq!(answer["invalids"]["unknown-id"], "execution not found");
    assert!(answer["invalids"].get(failed).is_none(), "{answer}");
    let still = i
        .ok(Method::GET, &format!("/executions/{failed}"), None)
        .await;
    assert_eq!(still, before);
    let fine_still = i
        .ok(Method::GET, &format!("/executions/{fine}"), None)
        .await;
    assert_eq!(fine_still, fine_before);
}

/// Refused filters and bodies name the problem.
async fn refused_input_names_itself(i: &Instance, failed: &str) {
    // Refused filters name themselves; bodies that are not id lists too.
    let (status, answer) = i
        .call(
            Method::DELETE,
            "/executions/by-query?filters[flowId][CONTAINS]=f",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| m.contains("filters[flowId][CONTAINS]")),
        "{answer}"
    );
    let (status, answer) = i
        .call(
            Method::POST,
            "/executions/restart/by-ids",
            Some(json!({"ids": [failed]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| m.contains("a JSON list of execution ids")),
        "{answer}"
    );
    assert_eq!(
        i.executions("fails").await.len() + i.executions("fine").await.len(),
        2
    );
}

/// Labels set on ended executions in bulk; system labels refused.
async fn labels_in_bulk(i: &Instance, failed: &str, fine: &str) {
    // Labels on ended executions, by ids; refused on an unknown one.
    let labelled = i
        .ok(
            Method::POST,
            "/executions/labels/by-ids",
            Some(json!({"executionsId": [failed, fine], "executionLabels": [{"key": "seen", "value": "yes"}]})),
        )
        .await;
    assert_eq!(labelled, json!({"count": 2}));
    let seen = i
        .ok(Method::GET, &format!("/executions/{fine}"), None)
        .await;
    assert!(
        seen["labels"]
            .as_array()
            .is_some_and(|l| l.contains(&json!({"key": "seen", "value": "yes"}))),
        "{seen}"
    );
    let (status, answer) = i
        .call(
            Method::POST,
            "/executions/labels/by-query?filters[flowId][EQUALS]=fine",
            Some(json!([{"key": "system.correlationId", "value": "x"}])),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| m.contains("system.correlationId")),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_are_validated_and_drawn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite:{}", dir.path().join("tools.db").display());
    let i = Instance::start(dir.path(), &url).await;
    let two = "id: ok\nnamespace: ctl\ntasks:\n  - id: t\n    type: io.kestra.plugin.core.log.Log\n    message: m\n---\nid: bad\nnamespace: ctl\ntasks:\n  - id: t\n    type: no.such.Task\n";
    let response = i
        .http
        .post(format!("{}/api/v1/acme/flows/validate", i.base))
        .header("content-type", "application/x-yaml")
        .body(two)
        .send()
        .await
        .expect("validate");
    let answers: Value = response.json().await.expect("json");
    assert_eq!(answers[0]["index"], 0);
    assert!(answers[0].get("constraints").is_none(), "{answers}");
    assert_eq!(answers[1]["flow"], "bad");
    assert!(answers[1]["constraints"].is_string(), "{answers}");
    // Nothing was saved.
    let (status, _) = i.call(Method::GET, "/flows/ctl/ok", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, answer) = i.call(Method::GET, "/flows/ctl/ok/graph", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    i.create_flow(HOURLY).await;
    let graph = i.ok(Method::GET, "/flows/ctl/hourly/graph", None).await;
    assert_eq!(
        graph["edges"][0],
        json!({"source": "root.root", "target": "t", "relation": {"relationType": "SEQUENTIAL"}})
    );
    let task = i.ok(Method::GET, "/flows/ctl/hourly/tasks/t", None).await;
    assert_eq!(task["type"], "io.kestra.plugin.core.log.Log");
    let namespaces = i.ok(Method::GET, "/flows/distinct-namespaces", None).await;
    assert_eq!(namespaces, json!(["ctl"]));
    i.stop().await;
}
