//! Kestra's execution actions over real HTTP, under both Kestra 1.x's paths
//! (`/executions/{id}/replay`) and 2.x's (`/executions/{id}/actions/replay`):
//! the cases the Python clients' day does not reach — bad input answers a
//! 4xx naming the problem, and what each action leaves behind.

use std::time::Duration;

use atoll_instance::config::{AuthMode, Config};
use atoll_testkit::eventually;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const FLOW: &str = r#"
id: hello
namespace: acme.team
inputs:
  - {id: who, type: STRING, required: true}
tasks:
  - {id: first, type: io.kestra.plugin.core.log.Log, message: "hi {{ inputs.who }}"}
  - {id: second, type: io.kestra.plugin.core.debug.Return, format: "{{ inputs.who }}"}
triggers:
  - id: hook
    type: io.kestra.plugin.core.trigger.Webhook
    key: a-long-enough-webhook-key
    inputs: {who: hooked}
"#;

const SLEEPY: &str = "id: sleepy\nnamespace: acme.team\ntasks:\n  - {id: nap, type: io.kestra.plugin.core.flow.Sleep, duration: PT30S}\n";

struct Instance {
    base: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Instance {
    async fn start() -> Instance {
        let dir = tempfile::tempdir().expect("temp dir");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let config = Config {
            tenant: "acme".into(),
            listen: addr,
            data_dir: dir.path().to_owned(),
            database_url: format!("sqlite:{}", dir.path().join("a.db").display()),
            auth: AuthMode::Disabled { explicit: false },
            ..Config::default()
        };
        let shutdown = CancellationToken::new();
        tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                atoll_instance::server::serve_with_metrics(config, listener, None, shutdown).await
            }
        });
        let i = Instance {
            base: format!("http://{addr}/api/v1/acme"),
            http: reqwest::Client::new(),
            shutdown,
            _dir: dir,
        };
        let ready = format!("http://{addr}/readyz");
        eventually("the instance is ready", Duration::from_secs(30), || async {
            i.http
                .get(&ready)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
                .then_some(())
        })
        .await;
        for source in [FLOW, SLEEPY] {
            let (status, body) = i
                .send(
                    Method::POST,
                    "/flows",
                    Some(("application/x-yaml", source.into())),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        i
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, String)>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some((content_type, body)) = body {
            request = request.header("content-type", content_type).body(body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn post_json(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(
            Method::POST,
            path,
            Some(("application/json", body.to_string())),
        )
        .await
    }

    /// A finished run of `hello`.
    async fn ended(&self) -> Value {
        let (status, body) = self
            .post_json(
                "/executions/acme.team/hello?wait=true",
                json!({"who": "ada"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["state"]["current"], "SUCCESS", "{body}");
        body
    }

    async fn wait_state(&self, id: &str, states: &[&str]) -> Value {
        eventually(
            &format!("execution {id} in {states:?}"),
            Duration::from_secs(30),
            || async {
                let (_, body) = self
                    .send(Method::GET, &format!("/executions/{id}"), None)
                    .await;
                states
                    .contains(&body["state"]["current"].as_str()?)
                    .then_some(body)
            },
        )
        .await
    }
}

fn message(body: &Value) -> &str {
    body["message"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_replace_an_ended_executions_own_and_are_searchable() {
    let i = Instance::start().await;
    let ended = i.ended().await;
    let id = ended["id"].as_str().expect("id");
    for action in ["labels", "actions/labels"] {
        let path = format!("/executions/{id}/{action}");
        let (status, body) = i.post_json(&path, json!({"team": "data"})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(message(&body).contains("JSON list of"), "{body}");
        let (status, body) = i
            .post_json(&path, json!([{"key": "system.x", "value": "1"}]))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(message(&body).contains("system."), "{body}");
        let (status, body) = i.post_json(&path, json!([{"key": "k", "value": ""}])).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
    let path = format!("/executions/{id}/actions/labels");
    let (status, body) = i
        .post_json(&path, json!([{"key": "reviewed", "value": "yes"}]))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["labels"], json!([{"key": "reviewed", "value": "yes"}]));
    let (_, found) = i
        .send(Method::GET, "/executions/search?labels=reviewed:yes", None)
        .await;
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(found["results"][0]["id"], id);

    let (_, running) = i.post_json("/executions/acme.team/sleepy", json!({})).await;
    let running_id = running["id"].as_str().expect("id");
    let (status, body) = i
        .post_json(
            &format!("/executions/{running_id}/labels"),
            json!([{"key": "a", "value": "b"}]),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(message(&body).contains("has not ended"), "{body}");
    for action in ["pause", "actions/pause"] {
        let (status, body) = i
            .send(Method::POST, &format!("/executions/{id}/{action}"), None)
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert!(message(&body).contains("is SUCCESS"), "{body}");
    }
    let (status, _) = i
        .send(
            Method::DELETE,
            &format!("/executions/{running_id}/actions/kill"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    i.wait_state(running_id, &["KILLED"]).await;
}

const NAPS: &str = "id: naps\nnamespace: acme.team\ntasks:\n  - {id: nap, type: io.kestra.plugin.core.flow.Sleep, duration: PT1S}\n  - {id: after, type: io.kestra.plugin.core.log.Log, message: after}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_by_hand_the_running_task_ends_nothing_starts_until_resumed() {
    let i = Instance::start().await;
    let (status, body) = i
        .send(
            Method::POST,
            "/flows",
            Some(("application/x-yaml", NAPS.into())),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for action in ["pause", "actions/pause"] {
        let (_, started) = i.post_json("/executions/acme.team/naps", json!({})).await;
        let id = started["id"].as_str().expect("id");
        i.wait_state(id, &["RUNNING"]).await;
        let (status, body) = i
            .send(Method::POST, &format!("/executions/{id}/{action}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        i.wait_state(id, &["PAUSED"]).await;
        // The nap ends; `after` does not start while paused.
        let parked = eventually("the nap done, paused", Duration::from_secs(30), || async {
            let (_, body) = i
                .send(Method::GET, &format!("/executions/{id}"), None)
                .await;
            let runs = body["taskRunList"].as_array()?.clone();
            (runs.len() == 1 && runs[0]["state"]["current"] == "SUCCESS").then_some(body)
        })
        .await;
        assert_eq!(parked["state"]["current"], "PAUSED", "{parked}");
        let (status, body) = i
            .send(Method::POST, &format!("/executions/{id}/{action}"), None)
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        let resume = action.replace("pause", "resume");
        let (status, body) = i
            .send(Method::POST, &format!("/executions/{id}/{resume}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let done = i.wait_state(id, &["SUCCESS", "FAILED"]).await;
        assert_eq!(done["state"]["current"], "SUCCESS", "{done}");
        assert_eq!(done["taskRunList"].as_array().map(Vec::len), Some(2));
    }
    // Paused and killed.
    let (_, started) = i.post_json("/executions/acme.team/sleepy", json!({})).await;
    let id = started["id"].as_str().expect("id");
    i.wait_state(id, &["RUNNING"]).await;
    let (status, _) = i
        .send(
            Method::POST,
            &format!("/executions/{id}/actions/pause"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    i.wait_state(id, &["PAUSED"]).await;
    let (status, _) = i
        .send(
            Method::DELETE,
            &format!("/executions/{id}/actions/kill"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    i.wait_state(id, &["KILLED"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_starts_over_without_a_task_run_and_checks_its_options() {
    let i = Instance::start().await;
    let ended = i.ended().await;
    let id = ended["id"].as_str().expect("id");
    let second = ended["taskRunList"][1]["id"].as_str().expect("task run");
    for (query, kept) in [
        ("", 0),
        (&*format!("?taskRunId={second}"), 1),
        ("?revision=1", 0),
    ] {
        for action in ["replay", "actions/replay"] {
            let (status, body) = i
                .send(
                    Method::POST,
                    &format!("/executions/{id}/{action}{query}"),
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{query}: {body}");
            assert_ne!(body["id"], id);
            let done = i
                .wait_state(body["id"].as_str().expect("id"), &["SUCCESS"])
                .await;
            let runs = done["taskRunList"].as_array().expect("runs");
            assert_eq!(runs.len(), 2, "{done}");
            // Task runs before the replayed one are kept as they were.
            assert_eq!(
                runs.iter()
                    .filter(|r| r["id"] == ended["taskRunList"][0]["id"])
                    .count(),
                kept
            );
        }
    }
    let (status, body) = i
        .send(
            Method::POST,
            &format!("/executions/{id}/replay?taskRunId=no/such"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(message(&body).contains("taskRunId"), "{body}");
    let (status, body) = i
        .send(
            Method::POST,
            &format!("/executions/{id}/replay?taskRunId=nosuchrun"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = i
        .send(
            Method::POST,
            &format!("/executions/{id}/replay?revision=7"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = i
        .send(
            Method::POST,
            &format!("/executions/{id}/replay?revision=0"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // New inputs, checked against the flow's declarations.
    let path = format!("/executions/{id}/actions/replay-with-inputs");
    let (status, body) = i.post_json(&path, json!({"who": "grace"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["inputs"]["who"], "grace");
    let (status, body) = i.post_json(&path, json!({"who": ["not", "text"]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(message(&body).contains("who"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_latest_validate_eval_and_webhook_paths() {
    let i = Instance::start().await;
    let ended = i.ended().await;
    let id = ended["id"].as_str().expect("id");
    let (status, body) = i
        .send(
            Method::POST,
            &format!("/executions/{id}/actions/change-status?status=RUNNING"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        message(&body).contains("SUCCESS, WARNING, FAILED, KILLED"),
        "{body}"
    );
    let (status, body) = i
        .send(
            Method::POST,
            &format!("/executions/{id}/change-status?status=FAILED"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"]["current"], "FAILED");

    let (status, body) = i
        .post_json("/executions/latest", json!({"namespace": "acme.team"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let flows = json!([{"namespace": "acme.team", "id": "hello"}, {"namespace": "acme.team", "id": "sleepy"}]);
    let (status, body) = i.post_json("/executions/latest", flows).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!([{"id": id, "flowId": "hello", "namespace": "acme.team",
                             "startDate": ended["state"]["startDate"], "status": "FAILED"}])
    );

    let (status, body) = i
        .post_json("/executions/acme.team/hello/validate", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        message(&body["inputs"][0]["errors"][0]).contains("`who` is required"),
        "{body}"
    );
    let (_, body) = i
        .post_json("/executions/acme.team/hello/validate", json!({"who": "x"}))
        .await;
    assert_eq!(body["inputs"][0]["value"], "x", "{body}");
    let (status, _) = i
        .post_json("/executions/acme.team/nope/validate", json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, body) = i
        .send(
            Method::POST,
            &format!("/executions/{id}/actions/eval"),
            Some(("text/plain", "{{ inputs.who }}!".into())),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"result": "ada!"}));
    let (_, body) = i
        .send(
            Method::POST,
            &format!("/executions/{id}/eval"),
            Some(("text/plain", "{{ nope(".into())),
        )
        .await;
    assert!(body["error"].is_string(), "{body}");

    for (method, path) in [
        (Method::GET, ""),
        (Method::POST, "/orders/42"),
        (Method::PUT, "/x"),
        (Method::GET, "/a/b"),
    ] {
        let (status, body) = i
            .send(
                method.clone(),
                &format!(
                    "/executions/webhook/acme.team/hello/a-long-enough-webhook-key{path}?who=hook"
                ),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{method} {path}: {body}");
        assert_eq!(body["tenantId"], "acme", "{body}");
        assert_eq!(body["flowId"], "hello", "{body}");
    }
    let (status, _) = i
        .send(
            Method::POST,
            "/executions/webhook/acme.team/hello/wrong-key/orders",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
