//! The KV store and secrets on a real instance over HTTP: a flow that sets
//! a key with a TTL, reads it with `kv()` (a parent namespace's key too)
//! and `Get`, and deletes it (on
//! SQLite and PostgreSQL); the KV API with its roles and another tenant's
//! token refused; a secret that a flow logs and returns is masked in the
//! stored logs and outputs; a missing secret fails naming it.

mod support;

use std::path::Path;
use std::time::Duration;

use atoll_instance::config::{AuthMode, Config, TaskSettings};
use atoll_testkit::eventually;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::identity::{self, KEY_A_PEM, TestIdentity};
use tokio_util::sync::CancellationToken;

const TENANT: &str = "acme";
const SECRET_VALUE: &str = "tok-5ecr3t-value";

struct Instance {
    base: String,
    http: reqwest::Client,
    /// The token sent when a call names none (`None`: no auth).
    token: Option<String>,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Instance {
    async fn start(auth: AuthMode, database_url: Option<String>) -> Instance {
        let dir = tempfile::tempdir().expect("temp dir");
        let secrets = dir.path().join("secrets");
        std::fs::create_dir(&secrets).expect("secrets dir");
        std::fs::write(secrets.join("API_KEY"), SECRET_VALUE).expect("secret");
        // As a Kubernetes Secret volume has it: dotted entries are its own.
        std::fs::create_dir(secrets.join("..data")).expect("..data");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let config = Config {
            tenant: TENANT.into(),
            listen: addr,
            data_dir: dir.path().to_owned(),
            database_url: database_url
                .unwrap_or_else(|| format!("sqlite:{}", dir.path().join("kv.db").display())),
            auth,
            tasks: TaskSettings {
                secrets_dir: Some(secrets),
                ..TaskSettings::default()
            },
            storage: atoll_instance::config::StorageSettings::Dir(dir.path().join("storage")),
            ..Config::default()
        };
        let shutdown = CancellationToken::new();
        tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                atoll_instance::server::serve_with_metrics(config, listener, None, shutdown).await
            }
        });
        let instance = Instance {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            token: None,
            shutdown,
            _dir: dir,
        };
        let readyz = format!("{}/readyz", instance.base);
        eventually("the instance ready", Duration::from_secs(30), || async {
            let response = instance.http.get(&readyz).send().await;
            response
                .is_ok_and(|r| r.status() == StatusCode::OK)
                .then_some(())
        })
        .await;
        instance
    }

    fn storage(&self) -> std::path::PathBuf {
        self._dir.path().join("storage")
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, String)>,
        ttl: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token.or(self.token.as_deref()) {
            request = request.bearer_auth(token);
        }
        if let Some((content_type, body)) = body {
            request = request.header("content-type", content_type).body(body);
        }
        if let Some(ttl) = ttl {
            request = request.header("ttl", ttl);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn create_flow(&self, source: &str) {
        let (status, body) = self
            .send(
                Method::POST,
                "/api/v1/flows",
                None,
                Some(("application/x-yaml", source.to_owned())),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// Runs a flow to its end: the execution and its log messages.
    async fn run(&self, flow_id: &str) -> (Value, Vec<String>) {
        let (status, execution) = self
            .send(
                Method::POST,
                &format!("/api/v1/executions/company.team/{flow_id}?wait=true"),
                None,
                None,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{execution}");
        let id = execution["id"].as_str().expect("id");
        let (_, logs) = self
            .send(Method::GET, &format!("/api/v1/logs/{id}"), None, None, None)
            .await;
        let messages = logs
            .as_array()
            .expect("log lines")
            .iter()
            .filter_map(|l| l["message"].as_str().map(str::to_owned))
            .collect();
        (execution, messages)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The outputs of task `task_id` in an execution.
fn outputs<'a>(execution: &'a Value, task_id: &str) -> &'a Value {
    execution["taskRunList"]
        .as_array()
        .and_then(|runs| runs.iter().find(|r| r["taskId"] == task_id))
        .map(|r| &r["outputs"])
        .unwrap_or(&Value::Null)
}

const KV_FLOW: &str = r#"
id: kv
namespace: company.team
tasks:
  - id: set
    type: io.kestra.plugin.core.kv.Set
    key: my_key
    value: "{{ 40 + 2 }}"
    kvType: NUMBER
    ttl: PT1H
  - id: set_json
    type: io.kestra.plugin.core.kv.Set
    key: config
    namespace: company.other
    value: '{"retries": 3}'
    kvType: JSON
  - id: read
    type: io.kestra.plugin.core.debug.Return
    format: "{{ kv('my_key') + 1 }} {{ kv('config', namespace='company.other').retries }}"
  - id: set_parent
    type: io.kestra.plugin.core.kv.Set
    key: shared
    namespace: company
    value: from the parent
  - id: inherit
    type: io.kestra.plugin.core.debug.Return
    format: "{{ kv('shared') }}, {{ kv('shared', namespace='company.team', errorOnMissing=false) ?? 'not in company.team' }}"
  - id: get
    type: io.kestra.plugin.core.kv.Get
    key: my_key
  - id: delete
    type: io.kestra.plugin.core.kv.Delete
    key: my_key
  - id: delete_again
    type: io.kestra.plugin.core.kv.Delete
    key: my_key
  - id: after
    type: io.kestra.plugin.core.debug.Return
    format: "{{ kv('my_key', errorOnMissing=false) ?? 'missing' }}"
  - id: get_missing
    type: io.kestra.plugin.core.kv.Get
    key: my_key
"#;

async fn kv_flow_sets_reads_and_deletes(database_url: Option<String>) {
    let i = Instance::start(AuthMode::Disabled { explicit: false }, database_url).await;
    i.create_flow(KV_FLOW).await;
    let (execution, _) = i.run("kv").await;
    assert_eq!(execution["state"]["current"], "SUCCESS", "{execution}");
    assert_eq!(outputs(&execution, "read")["value"], "43 3");
    // Without `namespace`, kv() reads the parents' keys too (as Kestra).
    assert_eq!(
        outputs(&execution, "inherit")["value"],
        "from the parent, not in company.team"
    );
    assert_eq!(outputs(&execution, "get")["value"], 42);
    assert_eq!(outputs(&execution, "delete")["deleted"], true);
    assert_eq!(outputs(&execution, "delete_again")["deleted"], false);
    assert_eq!(outputs(&execution, "after")["value"], "missing");
    assert_eq!(outputs(&execution, "get_missing")["value"], Value::Null);

    // The other namespace's key is still there, typed.
    let (status, got) = i
        .send(
            Method::GET,
            "/api/v1/namespaces/company.other/kv/config",
            None,
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(
        (&got["type"], &got["value"]),
        (&json!("JSON"), &json!({"retries": 3}))
    );

    // Without overwrite, an existing key fails the task, naming it.
    i.create_flow(
        r#"
id: keep
namespace: company.team
tasks:
  - id: keep
    type: io.kestra.plugin.core.kv.Set
    key: config
    namespace: company.other
    value: "replaced"
    overwrite: false
"#,
    )
    .await;
    let (execution, logs) = i.run("keep").await;
    assert_eq!(execution["state"]["current"], "FAILED", "{execution}");
    assert!(
        logs.iter()
            .any(|l| l.contains("`config`") && l.contains("overwrite")),
        "{logs:?}"
    );

    // A key with a short TTL reads as missing once expired.
    let (status, _) = i
        .send(
            Method::PUT,
            "/api/v1/namespaces/company.team/kv/short",
            None,
            Some(("application/json", "\"brief\"".into())),
            Some("PT0.2S"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    eventually(
        "the short-lived key expired",
        Duration::from_secs(10),
        || async {
            let (status, _) = i
                .send(
                    Method::GET,
                    "/api/v1/namespaces/company.team/kv/short",
                    None,
                    None,
                    None,
                )
                .await;
            (status == StatusCode::NOT_FOUND).then_some(())
        },
    )
    .await;
    let (_, list) = i
        .send(
            Method::GET,
            "/api/v1/namespaces/company.team/kv",
            None,
            None,
            None,
        )
        .await;
    assert_eq!(list, json!([]), "expired keys are purged from the list");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_flow_sets_reads_and_deletes_on_sqlite() {
    kv_flow_sets_reads_and_deletes(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_flow_sets_reads_and_deletes_on_postgres() {
    let server = atoll_testkit::pg::TestPostgres::start();
    kv_flow_sets_reads_and_deletes(Some(server.database_url("kv_flow"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_api_follows_roles_and_tenants() {
    let id = TestIdentity::start().await;
    let i = Instance::start(
        AuthMode::Identity {
            issuer: id.issuer.clone(),
            tenant_uid: format!("uid-{TENANT}"),
        },
        None,
    )
    .await;
    let editor = identity::sign(&id.claims(TENANT, "Editor"), KEY_A_PEM, "key-a");
    let viewer = identity::sign(&id.claims(TENANT, "Viewer"), KEY_A_PEM, "key-a");
    let other = identity::sign(&id.claims("globex", "Admin"), KEY_A_PEM, "key-a");
    let path = "/api/v1/namespaces/company.team/kv/color";
    let body = || Some(("application/json", "{\"name\": \"blue\"}".to_owned()));

    let (status, _) = i.send(Method::PUT, path, Some(&viewer), body(), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a Viewer cannot write");
    let (status, _) = i.send(Method::PUT, path, Some(&other), body(), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "another tenant's token");
    let (status, _) = i.send(Method::PUT, path, Some(&editor), body(), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = i
        .send(
            Method::PUT,
            "/api/v1/namespaces/company.team/kv/plain",
            Some(&editor),
            Some(("text/plain", "just text".into())),
            Some("PT1H"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, got) = i.send(Method::GET, path, Some(&viewer), None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (&got["type"], &got["value"]),
        (&json!("JSON"), &json!({"name": "blue"}))
    );
    assert!(got["updated"].is_string(), "{got}");
    let (status, _) = i.send(Method::GET, path, Some(&other), None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, list) = i
        .send(
            Method::GET,
            "/api/v1/namespaces/company.team/kv",
            Some(&viewer),
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let keys: Vec<&str> = list
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|e| e["key"].as_str())
        .collect();
    assert_eq!(keys, ["color", "plain"]);
    assert!(list[1]["expirationDate"].is_string(), "{list}");
    assert!(list[0]["value"].is_null(), "the list carries no values");

    let (status, _) = i
        .send(
            Method::PUT,
            "/api/v1/namespaces/company.team/kv/bad%20key",
            Some(&editor),
            body(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, _) = i
        .send(Method::DELETE, path, Some(&viewer), None, None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, deleted) = i
        .send(Method::DELETE, path, Some(&editor), None, None)
        .await;
    assert_eq!((status, deleted), (StatusCode::OK, json!(true)));
    let (status, _) = i.send(Method::GET, path, Some(&viewer), None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_read_from_the_directory_and_masked() {
    let i = Instance::start(AuthMode::Disabled { explicit: false }, None).await;
    i.create_flow(
        r#"
id: secret
namespace: company.team
tasks:
  - id: log
    type: io.kestra.plugin.core.log.Log
    message: "the key is {{ secret('API_KEY') }}"
  - id: out
    type: io.kestra.plugin.core.debug.Return
    format: "Bearer {{ secret('API_KEY') }}"
  - id: echo
    type: io.kestra.plugin.core.log.Log
    message: "again: {{ outputs.out.value }}"
"#,
    )
    .await;
    let (execution, logs) = i.run("secret").await;
    assert_eq!(execution["state"]["current"], "SUCCESS", "{execution}");
    assert!(logs.contains(&"the key is ******".to_owned()), "{logs:?}");
    assert_eq!(outputs(&execution, "out")["value"], "Bearer ******");
    let all = format!("{execution} {logs:?}");
    assert!(!all.contains(SECRET_VALUE), "the secret leaked: {all}");

    i.create_flow(
        r#"
id: missing
namespace: company.team
tasks:
  - id: log
    type: io.kestra.plugin.core.log.Log
    message: "{{ secret('NOT_THERE') }}"
"#,
    )
    .await;
    let (execution, logs) = i.run("missing").await;
    assert_eq!(execution["state"]["current"], "FAILED", "{execution}");
    assert!(
        logs.iter()
            .any(|l| l.contains("secret `NOT_THERE` not found")),
        "{logs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_reaches_namespace_files_and_this_executions_files_only() {
    let i = Instance::start(AuthMode::Disabled { explicit: false }, None).await;
    let files = i.storage().join("company/team/_files/sub");
    std::fs::create_dir_all(&files).expect("files dir");
    std::fs::write(files.join("hello.txt"), "Hello from {{ flow.namespace }}").expect("file");
    let foreign = i
        .storage()
        .join("company/team/other/executions/x1/tasks/t/r");
    std::fs::create_dir_all(&foreign).expect("foreign dir");
    std::fs::write(foreign.join("f.txt"), "not yours").expect("file");
    assert!(Path::new(&foreign.join("f.txt")).exists());
    i.create_flow(
        r#"
id: files
namespace: company.team
tasks:
  - id: read
    type: io.kestra.plugin.core.debug.Return
    format: "{{ render(read('sub/hello.txt')) }} {{ fileExists(fileURI('sub/hello.txt')) }} {{ fileSize(fileURI('sub/hello.txt')) }} {{ fileExists(fileURI('nope.txt')) }}"
  - id: foreign
    type: io.kestra.plugin.core.debug.Return
    format: "{{ read('kestra:///company/team/other/executions/x1/tasks/t/r/f.txt') }}"
"#,
    )
    .await;
    let (execution, logs) = i.run("files").await;
    assert_eq!(
        outputs(&execution, "read")["value"],
        "Hello from company.team true 31 false"
    );
    assert_eq!(execution["state"]["current"], "FAILED", "{execution}");
    assert!(
        logs.iter()
            .any(|l| l.contains("neither a file of this execution")),
        "{logs:?}"
    );
}
