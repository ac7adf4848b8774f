//! The REST API over real HTTP on loopback, with and without authentication.

mod support;

use std::time::Duration;

use atoll_instance::config::{AuthMode, Config};
use atoll_testkit::eventually;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::identity::{self, KEY_A_PEM, KEY_B_PEM, TestIdentity};
use tokio_util::sync::CancellationToken;

const TENANT: &str = "acme";
/// The Tenant's uid the instance is pinned to (the test identity puts
/// `uid-<tenant>` in its tokens).
const TENANT_UID: &str = "uid-acme";

fn identity_auth(id: &TestIdentity) -> AuthMode {
    AuthMode::Identity {
        issuer: id.issuer.clone(),
        tenant_uid: TENANT_UID.into(),
    }
}

struct Instance {
    base: String,
    /// The metrics listener's base URL, when it has one.
    metrics_base: Option<String>,
    http: reqwest::Client,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Instance {
    async fn start(auth: AuthMode) -> Instance {
        Instance::start_with(auth, false).await
    }

    async fn start_with(auth: AuthMode, metrics: bool) -> Instance {
        Instance::start_full(auth, metrics, None).await
    }

    /// On the database at `database_url` (SQLite in a temporary directory
    /// when `None`).
    async fn start_on(auth: AuthMode, database_url: Option<String>) -> Instance {
        Instance::start_full(auth, false, database_url).await
    }

    async fn start_full(auth: AuthMode, metrics: bool, database_url: Option<String>) -> Instance {
        let dir = tempfile::tempdir().expect("temp dir");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let metrics_listener = if metrics {
            Some(
                tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind metrics"),
            )
        } else {
            None
        };
        let metrics_base = metrics_listener
            .as_ref()
            .map(|l| format!("http://{}", l.local_addr().expect("addr")));
        let config = Config {
            tenant: TENANT.into(),
            listen: addr,
            data_dir: dir.path().to_owned(),
            database_url: database_url
                .unwrap_or_else(|| format!("sqlite:{}", dir.path().join("api.db").display())),
            public_url: None,
            auth,
            lease: Duration::from_secs(30),
            ..Config::default()
        };
        let shutdown = CancellationToken::new();
        tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                atoll_instance::server::serve_with_metrics(
                    config,
                    listener,
                    metrics_listener,
                    shutdown,
                )
                .await
            }
        });
        let instance = Instance {
            base: format!("http://{addr}"),
            metrics_base,
            http: reqwest::Client::new(),
            shutdown,
            _dir: dir,
        };
        instance.wait_ready().await;
        instance
    }

    async fn wait_ready(&self) {
        let readyz = format!("{}/readyz", self.base);
        eventually("the instance ready", Duration::from_secs(30), || async {
            let response = self.http.get(&readyz).send().await;
            response
                .is_ok_and(|r| r.status() == StatusCode::OK)
                .then_some(())
        })
        .await;
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `send` without a token or a body.
    async fn call(&self, method: reqwest::Method, path: &str) -> (StatusCode, Value) {
        self.send(method, path, None, None).await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, String)>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
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
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

const HELLO: &str = r#"
id: hello
namespace: acme.team
inputs:
  - {id: name, type: STRING, defaults: world}
tasks:
  - id: say
    type: io.kestra.plugin.core.log.Log
    message: "hello {{ inputs.name }}"
  - id: out
    type: io.kestra.plugin.core.debug.Return
    format: "{{ inputs.name }}"
"#;

fn yaml(source: &str) -> Option<(&'static str, String)> {
    Some(("application/x-yaml", source.to_owned()))
}

/// An instance without authentication, with `sources` created.
async fn open_instance_with(sources: &[&str]) -> Instance {
    let i = Instance::start(AuthMode::Disabled { explicit: false }).await;
    for source in sources {
        let (status, body) = i
            .send(reqwest::Method::POST, "/api/v1/flows", None, yaml(source))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    i
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_are_created_updated_listed_and_deleted() {
    let i = open_instance_with(&[]).await;
    let (status, body) = i
        .send(reqwest::Method::POST, "/api/v1/flows", None, yaml(HELLO))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["revision"], 1);
    let (status, body) = i
        .send(reqwest::Method::POST, "/api/v1/flows", None, yaml(HELLO))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body["message"],
        "flow acme.team/hello already exists; update it with PUT"
    );
    let changed = HELLO.replace("hello {{", "hi {{");
    let (status, body) = i
        .send(
            reqwest::Method::PUT,
            "/api/v1/flows/acme.team/hello",
            None,
            yaml(&changed),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["revision"], 2);
    let (_, revisions) = i
        .call(
            reqwest::Method::GET,
            "/api/v1/flows/acme.team/hello/revisions",
        )
        .await;
    assert_eq!(revisions.as_array().map(Vec::len), Some(2));
    let (_, listed) = i.call(reqwest::Method::GET, "/api/v1/flows/acme").await;
    assert_eq!(listed[0]["id"], "hello");

    let (status, _) = i
        .call(reqwest::Method::DELETE, "/api/v1/flows/acme.team/hello")
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = i
        .call(reqwest::Method::GET, "/api/v1/flows/acme.team/hello")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = i
        .send(
            reqwest::Method::PUT,
            "/api/v1/flows/acme.team/hello",
            None,
            yaml(&changed),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a deleted flow is not updated"
    );
    assert_eq!(body["message"], "no such flow");

    let (status, _) = i.call(reqwest::Method::GET, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
}

/// Two creates of one flow at the same time: the existence check and the
/// save are one transaction, so exactly one succeeds and the other gets
/// the conflict a later create gets.
async fn concurrent_creates_of_one_flow_one_wins(database_url: Option<String>) {
    let i = Instance::start_on(AuthMode::Disabled { explicit: false }, database_url).await;
    for round in 0..5 {
        let source = HELLO.replace("id: hello", &format!("id: race{round}"));
        let (first, second) = tokio::join!(
            i.send(reqwest::Method::POST, "/api/v1/flows", None, yaml(&source)),
            i.send(reqwest::Method::POST, "/api/v1/flows", None, yaml(&source)),
        );
        let mut statuses = [first.0, second.0];
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::OK, StatusCode::CONFLICT],
            "round {round}: {} / {}",
            first.1,
            second.1
        );
        let lost = if first.0 == StatusCode::CONFLICT {
            first.1
        } else {
            second.1
        };
        assert_eq!(lost["code"], "conflict");
        let (_, revisions) = i
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/flows/acme.team/race{round}/revisions"),
            )
            .await;
        assert_eq!(revisions.as_array().map(Vec::len), Some(1), "{revisions}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_of_one_flow_one_wins_on_sqlite() {
    concurrent_creates_of_one_flow_one_wins(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_of_one_flow_one_wins_on_postgres() {
    let server = atoll_testkit::pg::TestPostgres::start();
    concurrent_creates_of_one_flow_one_wins(Some(server.database_url("api_race"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_found_by_id_in_logs_and_in_search() {
    let i = open_instance_with(&[HELLO]).await;
    // Run and wait, under Kestra's tenant path too.
    let (status, execution) = i
        .send(
            reqwest::Method::POST,
            "/api/v1/acme/executions/acme.team/hello?wait=true&labels=team:data",
            None,
            Some(("application/json", json!({"name": "Ada"}).to_string())),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{execution}");
    assert_eq!(execution["state"]["current"], "SUCCESS");
    assert_eq!(execution["taskRunList"][1]["outputs"]["value"], "Ada");
    assert_eq!(
        execution["labels"][0],
        json!({"key": "team", "value": "data"})
    );
    let id = execution["id"].as_str().expect("id").to_owned();

    let (status, got) = i
        .call(reqwest::Method::GET, &format!("/api/v1/executions/{id}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["id"], id.as_str());
    let (_, logs) = i
        .call(reqwest::Method::GET, &format!("/api/v1/logs/{id}"))
        .await;
    assert_eq!(logs[0]["message"], "hello Ada");
    let (_, found) = i
        .call(
            reqwest::Method::GET,
            "/api/v1/executions/search?namespace=acme&flowId=hello&state=SUCCESS",
        )
        .await;
    assert_eq!(found["results"][0]["id"], id.as_str());

    // Follow the logs of a finished execution: every line, then the end.
    let text = i
        .http
        .get(i.url(&format!("/api/v1/logs/{id}/follow")))
        .send()
        .await
        .expect("follow")
        .text()
        .await
        .expect("stream ends");
    assert!(
        text.contains("data:") && text.contains("hello Ada"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_come_as_a_form_or_multipart() {
    let i = open_instance_with(&[HELLO]).await;
    // Form-encoded inputs as Kestra's clients send strings.
    let (status, form_run) = i
        .send(
            reqwest::Method::POST,
            "/api/v1/executions/acme.team/hello?wait=true",
            None,
            Some(("application/x-www-form-urlencoded", "name=Grace".into())),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(form_run["taskRunList"][1]["outputs"]["value"], "Grace");
    // Multipart, as Kestra's own clients send inputs.
    let form = reqwest::multipart::Form::new().text("name", "Linus");
    let multipart_run: Value = i
        .http
        .post(i.url("/api/v1/executions/acme.team/hello?wait=true"))
        .multipart(form)
        .send()
        .await
        .expect("multipart run")
        .json()
        .await
        .expect("json");
    assert_eq!(multipart_run["taskRunList"][1]["outputs"]["value"], "Linus");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_execution_is_killed_once() {
    let sleepy = "id: sleepy\nnamespace: acme.team\ntasks:\n  - {id: nap, type: io.kestra.plugin.core.flow.Sleep, duration: PT30S}\n";
    let i = open_instance_with(&[sleepy]).await;
    let (_, running) = i
        .call(reqwest::Method::POST, "/api/v1/executions/acme.team/sleepy")
        .await;
    let sleepy_id = running["id"].as_str().expect("id").to_owned();
    let (status, _) = i
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/executions/{sleepy_id}/kill"),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let path = format!("/api/v1/executions/{sleepy_id}");
    eventually("the execution KILLED", Duration::from_secs(10), || async {
        let (_, e) = i.call(reqwest::Method::GET, &path).await;
        (e["state"]["current"] == "KILLED").then_some(())
    })
    .await;
    let (status, _) = i
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/executions/{sleepy_id}/kill"),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "already ended");
}

/// Metrics are served on their own listener (a port the Ingress does not
/// route), not at the tenant's URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_only_on_the_metrics_listener() {
    let i = Instance::start_with(AuthMode::Disabled { explicit: false }, true).await;
    let (status, _) = i
        .send(reqwest::Method::POST, "/api/v1/flows", None, yaml(HELLO))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, execution) = i
        .call(
            reqwest::Method::POST,
            "/api/v1/executions/acme.team/hello?wait=true",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(execution["state"]["current"], "SUCCESS");

    let (status, body) = i.call(reqwest::Method::GET, "/metrics").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the API port has no metrics: {body}"
    );
    let (status, _) = i.call(reqwest::Method::GET, "/api/v1/metrics").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let metrics_base = i.metrics_base.clone().expect("a metrics listener");
    let response = i
        .http
        .get(format!("{metrics_base}/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(response.status(), StatusCode::OK);
    let metrics = response.text().await.expect("text");
    assert!(
        metrics.contains("atoll_executions_started_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("atoll_executions_finished_total{state=\"SUCCESS\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("atoll_http_requests_total"), "{metrics}");
    let health = i
        .http
        .get(format!("{metrics_base}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), StatusCode::OK);
    // Nothing of the API is reachable on the metrics port.
    let api = i
        .http
        .get(format!("{metrics_base}/api/v1/flows/search"))
        .send()
        .await
        .expect("api on metrics port");
    assert_eq!(api.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_followed_live_until_the_execution_ends() {
    let i = Instance::start(AuthMode::Disabled { explicit: false }).await;
    let flow = "id: chatty\nnamespace: acme\ntasks:\n  - id: sh\n    type: io.kestra.plugin.scripts.shell.Commands\n    commands: [\"echo first\", \"sleep 1\", \"echo second\"]\n";
    let (status, _) = i
        .send(reqwest::Method::POST, "/api/v1/flows", None, yaml(flow))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, execution) = i
        .call(reqwest::Method::POST, "/api/v1/executions/acme/chatty")
        .await;
    let id = execution["id"].as_str().expect("id").to_owned();
    // Opened while the execution runs; the stream ends when it is over.
    let mut response = i
        .http
        .get(i.url(&format!("/api/v1/logs/{id}/follow")))
        .send()
        .await
        .expect("follow");
    assert_eq!(
        response.headers()["content-type"]
            .to_str()
            .unwrap_or_default(),
        "text/event-stream"
    );
    let mut text = String::new();
    let mut saw_first_while_running = false;
    while let Some(chunk) = response.chunk().await.expect("chunk") {
        text.push_str(&String::from_utf8_lossy(&chunk));
        if text.contains("first") && !text.contains("second") {
            let (_, now) = i
                .call(reqwest::Method::GET, &format!("/api/v1/executions/{id}"))
                .await;
            saw_first_while_running |= now["state"]["current"] == "RUNNING";
        }
    }
    assert!(text.contains("first") && text.contains("second"), "{text}");
    assert!(
        saw_first_while_running,
        "a line arrived before the execution ended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_nothing_is_stored() {
    let i = Instance::start(AuthMode::Disabled { explicit: false }).await;
    let (status, body) = i
        .send(
            reqwest::Method::POST,
            "/api/v1/flows",
            None,
            yaml("id: broken\nnamespace: acme\ntasks:\n  - id: t\n    type: [unclosed\n"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "invalidFlow");
    assert_eq!(body["status"], 400);
    assert!(body["details"][0]["line"].as_u64().is_some(), "{body}");
    assert!(body["details"][0]["column"].as_u64().is_some(), "{body}");
    let (status, _) = i
        .call(reqwest::Method::GET, "/api/v1/flows/acme/broken")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let unknown = "id: u\nnamespace: acme\ntasks:\n  - {id: t, type: io.example.Nope}\n";
    let (status, body) = i
        .send(reqwest::Method::POST, "/api/v1/flows", None, yaml(unknown))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["details"][0]["kind"], "unknownType");
    let (_, listed) = i.call(reqwest::Method::GET, "/api/v1/flows/search").await;
    assert_eq!(listed["total"], 0, "nothing stored: {listed}");

    let huge = format!(
        "id: big\nnamespace: acme\ndescription: \"{}\"\ntasks: []\n",
        "x".repeat(1024 * 1024 + 1024)
    );
    // The server answers before reading the whole body and then closes the
    // connection, so this request gets a client of its own.
    let response = reqwest::Client::new()
        .post(i.url("/api/v1/flows"))
        .header("content-type", "application/x-yaml")
        .body(huge)
        .send()
        .await
        .expect("oversized request answered");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = response.json().await.expect("json error");
    assert_eq!(body["code"], "payloadTooLarge");

    for path in [
        "/api/v1/flows/..%2F..%2Fetc/passwd",
        "/api/v1/flows/acme/%E2%80%AEevil",
        "/api/v1/executions/..%2Fx",
        "/api/v1/other-tenant/flows/search",
    ] {
        let (status, body) = i.call(reqwest::Method::GET, path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert!(body["message"].is_string(), "{path}: {body}");
    }

    let (status, _) = i
        .send(reqwest::Method::POST, "/api/v1/flows", None, yaml(HELLO))
        .await;
    assert_eq!(status, StatusCode::OK);
    let required = HELLO.replace("defaults: world", "required: true");
    i.send(
        reqwest::Method::PUT,
        "/api/v1/flows/acme.team/hello",
        None,
        yaml(&required),
    )
    .await;
    let (status, body) = i
        .call(reqwest::Method::POST, "/api/v1/executions/acme.team/hello")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "invalidInputs");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("`name`")
    );
    let (_, found) = i
        .call(reqwest::Method::GET, "/api/v1/executions/search")
        .await;
    assert_eq!(found["total"], 0, "no execution created: {found}");
}

fn hs256_with_public_key(claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("key-a".into());
    let key = EncodingKey::from_secret(identity::KEY_A_PUBLIC_PEM.as_bytes());
    jsonwebtoken::encode(&header, claims, &key).expect("sign")
}

fn alg_none(claims: &Value) -> String {
    let header = identity::base64url(br#"{"alg":"none","typ":"JWT","kid":"key-a"}"#);
    let payload = identity::base64url(claims.to_string().as_bytes());
    format!("{header}.{payload}.")
}

fn tampered(token: &str, claims: &Value) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = identity::base64url(claims.to_string().as_bytes());
    parts.join(".")
}

/// The status of a flow search with `token`.
async fn search_status(i: &Instance, token: Option<&str>) -> StatusCode {
    i.send(reqwest::Method::GET, "/api/v1/flows/search", token, None)
        .await
        .0
}

/// Viewer claims of the test tenant, with `patch` applied.
fn claims_with(id: &TestIdentity, patch: Value) -> Value {
    let mut claims = id.claims(TENANT, "Viewer");
    for (k, v) in patch.as_object().into_iter().flatten() {
        claims[k] = v.clone();
    }
    claims
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_verified_offline_against_identity() {
    let id = TestIdentity::start().await;
    let i = Instance::start(identity_auth(&id)).await;
    let editor = identity::sign(&id.claims(TENANT, "Editor"), KEY_A_PEM, "key-a");
    assert_eq!(search_status(&i, Some(&editor)).await, StatusCode::OK);
    let viewer = identity::sign(&id.claims(TENANT, "Viewer"), KEY_A_PEM, "key-a");
    assert_eq!(search_status(&i, Some(&viewer)).await, StatusCode::OK);

    // Identity goes down: the cached keys still verify valid tokens.
    id.stop();
    assert_eq!(search_status(&i, Some(&editor)).await, StatusCode::OK);
    assert_eq!(search_status(&i, Some(&viewer)).await, StatusCode::OK);
    // Operational endpoints need no token.
    assert_eq!(
        i.call(reqwest::Method::GET, "/readyz").await.0,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_token_is_refused_with_the_same_answer() {
    let id = TestIdentity::start().await;
    let i = Instance::start(identity_auth(&id)).await;
    let now = jiff::Timestamp::now().as_second();
    let with = |patch: Value| claims_with(&id, patch);
    let admin = with(json!({"role": "Admin"}));
    let refused = [
        ("no token", None),
        (
            "expired",
            Some(identity::sign(
                &with(json!({"exp": now - 3600})),
                KEY_A_PEM,
                "key-a",
            )),
        ),
        (
            "not yet valid",
            Some(identity::sign(
                &with(json!({"nbf": now + 3600})),
                KEY_A_PEM,
                "key-a",
            )),
        ),
        (
            "wrong issuer",
            Some(identity::sign(
                &with(json!({"iss": "http://127.0.0.1:1"})),
                KEY_A_PEM,
                "key-a",
            )),
        ),
        (
            "other tenant",
            Some(identity::sign(
                &id.claims("globex", "Admin"),
                KEY_A_PEM,
                "key-a",
            )),
        ),
        ("alg none", Some(alg_none(&admin))),
        (
            "HS256 with the public key",
            Some(hs256_with_public_key(&admin)),
        ),
        (
            "unknown kid",
            Some(identity::sign(&admin, KEY_B_PEM, "key-b")),
        ),
        (
            "unpublished key under a known kid",
            Some(identity::sign(&admin, KEY_B_PEM, "key-a")),
        ),
        (
            "tampered payload",
            Some(tampered(
                &identity::sign(&with(json!({})), KEY_A_PEM, "key-a"),
                &admin,
            )),
        ),
        (
            "unknown role",
            Some(identity::sign(
                &with(json!({"role": "Root"})),
                KEY_A_PEM,
                "key-a",
            )),
        ),
        ("garbage", Some("not.a.token".into())),
        (
            "same tenant name, another Tenant's uid",
            Some(identity::sign(
                &with(json!({"role": "Admin", "tenant_uid": "uid-acme-recreated"})),
                KEY_A_PEM,
                "key-a",
            )),
        ),
        (
            "no tenant uid",
            Some(identity::sign(
                &{
                    let mut claims = with(json!({"role": "Admin"}));
                    if let Some(map) = claims.as_object_mut() {
                        map.remove("tenant_uid");
                    }
                    claims
                },
                KEY_A_PEM,
                "key-a",
            )),
        ),
    ];
    let mut wrong = Vec::new();
    for (case, token) in refused {
        let (status, body) = i
            .send(
                reqwest::Method::GET,
                "/api/v1/flows/search",
                token.as_deref(),
                None,
            )
            .await;
        if status != StatusCode::UNAUTHORIZED || body["code"] != "unauthorized" {
            wrong.push(format!("{case}: {status} {body}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "every refusal must be the same 401: {wrong:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_read_but_cannot_write() {
    let id = TestIdentity::start().await;
    let i = Instance::start(identity_auth(&id)).await;
    let editor = identity::sign(&id.claims(TENANT, "Editor"), KEY_A_PEM, "key-a");
    let viewer = identity::sign(&id.claims(TENANT, "Viewer"), KEY_A_PEM, "key-a");
    assert_eq!(search_status(&i, Some(&viewer)).await, StatusCode::OK);
    let (status, body) = i
        .send(
            reqwest::Method::POST,
            "/api/v1/flows",
            Some(&viewer),
            yaml(HELLO),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = i
        .send(
            reqwest::Method::POST,
            "/api/v1/flows",
            Some(&editor),
            yaml(HELLO),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = i
        .send(
            reqwest::Method::POST,
            "/api/v1/executions/acme.team/hello",
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kids_refresh_the_keys_at_most_once_per_interval() {
    let id = TestIdentity::start().await;
    let i = Instance::start(identity_auth(&id)).await;
    let admin = claims_with(&id, json!({"role": "Admin"}));
    // The keys are loaded once a valid token verifies.
    let editor = identity::sign(&id.claims(TENANT, "Editor"), KEY_A_PEM, "key-a");
    assert_eq!(search_status(&i, Some(&editor)).await, StatusCode::OK);
    let before = id.fetches();
    for _ in 0..5 {
        let token = identity::sign(&admin, KEY_B_PEM, "key-c");
        assert_eq!(
            search_status(&i, Some(&token)).await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert!(id.fetches() <= before + 1, "refreshes are rate-limited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_need_their_key_not_a_token_and_triggers_need_a_token() {
    let id = TestIdentity::start().await;
    let i = Instance::start(identity_auth(&id)).await;
    let editor = identity::sign(&id.claims(TENANT, "Editor"), KEY_A_PEM, "key-a");
    let hooked = r#"
id: hooked
namespace: acme.team
tasks:
  - id: out
    type: io.kestra.plugin.core.debug.Return
    format: "{{ trigger.body.n }}"
triggers:
  - {id: hook, type: io.kestra.plugin.core.trigger.Webhook, key: the-right-key}
"#;
    let (status, _) = i
        .send(
            reqwest::Method::POST,
            "/api/v1/flows",
            Some(&editor),
            yaml(hooked),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let body = Some(("application/json", r#"{"n": 7}"#.to_owned()));
    for path in [
        "/api/v1/executions/webhook/acme.team/hooked/the-right-key",
        "/api/v1/acme/executions/webhook/acme.team/hooked/the-right-key",
    ] {
        let (status, created) = i
            .send(reqwest::Method::POST, path, None, body.clone())
            .await;
        assert_eq!(status, StatusCode::OK, "{path}: {created}");
        assert_eq!(created["flowId"], "hooked");
    }
    for path in [
        "/api/v1/executions/webhook/acme.team/hooked/the-wrong-key",
        "/api/v1/other/executions/webhook/acme.team/hooked/the-right-key",
    ] {
        let (status, _) = i
            .send(reqwest::Method::POST, path, None, body.clone())
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let (status, _) = i
        .call(reqwest::Method::GET, "/api/v1/triggers/search")
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, listed) = i
        .send(
            reqwest::Method::GET,
            "/api/v1/triggers/search",
            Some(&editor),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["results"][0]["triggerId"], "hook");
}

/// A huge log comes back a bounded page at a time, each page pointing at
/// the next, and every line exactly once across the pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_come_back_in_bounded_pages() {
    let i = Instance::start(AuthMode::Disabled { explicit: false }).await;
    // 3,000 lines of 10 kB: 30 MB of log.
    let flow = "id: loud\nnamespace: acme\ntasks:\n  - id: sh\n    type: io.kestra.plugin.scripts.shell.Commands\n    commands:\n      - line=$(head -c 10000 /dev/zero | tr '\\0' x); i=0; while [ $i -lt 3000 ]; do echo \"$i $line\"; i=$((i+1)); done\n";
    let (status, body) = i
        .send(reqwest::Method::POST, "/api/v1/flows", None, yaml(flow))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, execution) = i
        .call(
            reqwest::Method::POST,
            "/api/v1/executions/acme/loud?wait=true",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(execution["state"]["current"], "SUCCESS", "{execution}");
    let id = execution["id"].as_str().expect("id").to_owned();

    let mut next = Some(format!("/api/v1/acme/logs/{id}"));
    let mut seen = Vec::new();
    let mut pages = 0;
    while let Some(path) = next.take() {
        let response = i.http.get(i.url(&path)).send().await.expect("logs");
        assert_eq!(response.status(), StatusCode::OK);
        next = response
            .headers()
            .get("link")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix('<'))
            .and_then(|v| v.split_once(">; rel=\"next\""))
            .map(|(url, _)| url.to_owned());
        let bytes = response.bytes().await.expect("body");
        assert!(
            bytes.len() <= 5 * 1024 * 1024,
            "a page is bounded: {} bytes",
            bytes.len()
        );
        let page: Vec<Value> = serde_json::from_slice(&bytes).expect("json array");
        assert!(!page.is_empty());
        for line in page {
            let message = line["message"].as_str().expect("message");
            let n: usize = message
                .split(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .expect("numbered line");
            seen.push(n);
        }
        pages += 1;
        assert!(pages < 100, "the pages end");
    }
    assert!(pages >= 7, "30 MB in pages of at most 4 MiB: {pages}");
    assert_eq!(
        seen,
        (0..3000).collect::<Vec<_>>(),
        "every line once, in order"
    );

    // A smaller page on request.
    let response = i
        .http
        .get(i.url(&format!("/api/v1/logs/{id}?size=10")))
        .send()
        .await
        .expect("logs");
    assert!(response.headers().get("link").is_some());
    let page: Vec<Value> = response.json().await.expect("json");
    assert_eq!(page.len(), 10);
}

/// Viewers read flows, but not the webhook keys in them (a key starts the
/// flow); Editors and Admins see the source as written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_never_see_webhook_keys() {
    const KEY: &str = "k3y-only-editors-see";
    let id = TestIdentity::start().await;
    let i = Instance::start(identity_auth(&id)).await;
    let token = |role: &str| identity::sign(&id.claims(TENANT, role), KEY_A_PEM, "key-a");
    let (editor, admin, viewer) = (token("Editor"), token("Admin"), token("Viewer"));
    let hooked = format!(
        "id: hooked\nnamespace: acme.team\ntasks:\n  - {{id: out, type: io.kestra.plugin.core.debug.Return, format: x}}\ntriggers:\n  - id: hook\n    type: io.kestra.plugin.core.trigger.Webhook\n    key: {KEY}\n"
    );
    let (status, _) = i
        .send(
            reqwest::Method::POST,
            "/api/v1/flows",
            Some(&editor),
            yaml(&hooked),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // A second revision, so the revisions list has an older one too.
    let (status, _) = i
        .send(
            reqwest::Method::PUT,
            "/api/v1/flows/acme.team/hooked",
            Some(&editor),
            yaml(&hooked.replace("format: x", "format: y")),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let reads = [
        "/api/v1/flows/acme.team/hooked",
        "/api/v1/flows/acme.team/hooked?revision=1",
        "/api/v1/acme/flows/acme.team/hooked",
        "/api/v1/flows/acme.team/hooked/revisions",
        "/api/v1/flows/acme.team",
        "/api/v1/flows/search",
        "/api/v1/flows/search?namespace=acme",
        "/api/v1/flows/export/by-query?namespace=acme",
    ];
    for path in reads {
        let read = |token: String| {
            let i = &i;
            async move {
                let response = i
                    .http
                    .get(i.url(path))
                    .bearer_auth(token)
                    .send()
                    .await
                    .expect("read");
                assert_eq!(response.status(), StatusCode::OK, "{path}");
                let bytes = response.bytes().await.expect("body");
                String::from_utf8_lossy(&bytes).into_owned()
            }
        };
        let seen = read(viewer.clone()).await;
        assert!(!seen.contains(KEY), "{path}: a Viewer sees the key: {seen}");
        assert!(seen.contains("******"), "{path}: {seen}");
        assert!(seen.contains("hooked"), "{path}: the flow is still shown");
        for token in [&editor, &admin] {
            let seen = read(token.clone()).await;
            assert!(seen.contains(KEY), "{path}: Editors and Admins see the key");
        }
    }
    // The key still works for the systems that hold it.
    let (status, _) = i
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/executions/webhook/acme.team/hooked/{KEY}"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}
