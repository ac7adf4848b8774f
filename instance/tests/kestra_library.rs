//! Scripts that use Kestra's Python library (`from kestra import Kestra`)
//! inside a script task, on the `Process` runner, against a real instance
//! over HTTP with authentication on: outputs (nested), metrics of each
//! type, logs at each level, read back through the API as a user sees
//! them; the execution's context read with `kestra.context`
//! (`executionContext: true`); and a flow started from a script with
//! `Flow().execute(...)`.
//!
//! Kestra's own library (the `kestra` package) runs from the Python named
//! by `ATOLL_KESTRA_PYTHON` (`scripts/test` installs it in a throwaway
//! environment); without it that test says so and passes, unless
//! `ATOLL_KESTRA_PYTHON_REQUIRED=1`. The instance's stand-in library (used
//! when no library is installed) is checked with the system's `python3`.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use atoll_instance::config::{AuthMode, Config};
use atoll_testkit::eventually;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::identity::{self, KEY_A_PEM, TestIdentity};
use tokio_util::sync::CancellationToken;

const TENANT: &str = "acme";
const MAIN_PY: &str = include_str!("kestra_library/main.py");
const CHILD: &str = r#"
id: child
namespace: company.team
inputs:
  - id: who
    type: STRING
tasks:
  - id: hello
    type: io.kestra.plugin.core.log.Log
    message: "hello {{ inputs.who }}"
"#;

/// The instance, with an Editor's token; stopped when dropped.
struct Instance {
    /// `http://127.0.0.1:<port>`
    host: String,
    token: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
    _identity: TestIdentity,
    _dir: tempfile::TempDir,
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Instance {
    async fn start() -> Instance {
        let identity = TestIdentity::start().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let config = Config {
            tenant: TENANT.into(),
            listen: addr,
            data_dir: dir.path().to_owned(),
            database_url: format!("sqlite:{}", dir.path().join("db.sqlite").display()),
            auth: AuthMode::Identity {
                issuer: identity.issuer.clone(),
                tenant_uid: format!("uid-{TENANT}"),
            },
            ..Config::default()
        };
        let shutdown = CancellationToken::new();
        tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                atoll_instance::server::serve_with_metrics(config, listener, None, shutdown).await
            }
        });
        let token = identity::sign(&identity.claims(TENANT, "Editor"), KEY_A_PEM, "key-a");
        let i = Instance {
            host: format!("http://{addr}"),
            token,
            http: reqwest::Client::new(),
            shutdown,
            _identity: identity,
            _dir: dir,
        };
        let ready = format!("{}/readyz", i.host);
        eventually("the instance is ready", Duration::from_secs(30), || async {
            let response = i.http.get(&ready).send().await;
            response
                .is_ok_and(|r| r.status().is_success())
                .then_some(())
        })
        .await;
        i
    }

    /// `path` under `/api/v1/acme`, with the token.
    async fn send(&self, method: Method, path: &str, yaml: Option<String>) -> (StatusCode, Value) {
        let url = format!("{}/api/v1/{TENANT}{path}", self.host);
        let mut request = self.http.request(method, url).bearer_auth(&self.token);
        if let Some(yaml) = yaml {
            request = request
                .header("content-type", "application/x-yaml")
                .body(yaml);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    async fn save_flow(&self, source: String) {
        let (status, body) = self.send(Method::POST, "/flows", Some(source)).await;
        assert_eq!(status, StatusCode::OK, "saving a flow: {body}");
    }

    /// Starts `company.team/<flow>` and waits for it to end.
    async fn run(&self, flow: &str) -> Value {
        let path = format!("/executions/company.team/{flow}");
        let (status, started) = self.send(Method::POST, &path, None).await;
        assert_eq!(status, StatusCode::OK, "starting {flow}: {started}");
        let id = started["id"].as_str().expect("execution id").to_owned();
        self.ended(&id).await
    }

    async fn ended(&self, id: &str) -> Value {
        let ended = ["SUCCESS", "WARNING", "FAILED", "KILLED", "CANCELLED"];
        eventually(
            &format!("execution {id} ended"),
            Duration::from_secs(90),
            || async {
                let (_, body) = self
                    .send(Method::GET, &format!("/executions/{id}"), None)
                    .await;
                ended
                    .contains(&body["state"]["current"].as_str()?)
                    .then_some(body)
            },
        )
        .await
    }

    /// `(level, message)` of each log line of the execution, as the API
    /// gives them.
    async fn logs(&self, id: &str) -> Vec<(String, String)> {
        let (status, body) = self.send(Method::GET, &format!("/logs/{id}"), None).await;
        assert_eq!(status, StatusCode::OK, "logs: {body}");
        let lines = body.as_array().expect("a list of log lines");
        lines
            .iter()
            .map(|l| {
                let field = |name: &str| l[name].as_str().unwrap_or_default().to_owned();
                (field("level"), field("message"))
            })
            .collect()
    }
}

/// The flow `library`: a Python `Commands` task on the `Process` runner
/// running `main.py` (given in `inputFiles`) with `command`, the
/// instance's address and token in its `env`.
fn library_flow(i: &Instance, command: &str) -> String {
    let script: String = MAIN_PY.lines().map(|l| format!("        {l}\n")).collect();
    format!(
        r#"
id: library
namespace: company.team
labels:
  team: data
tasks:
  - id: py
    type: io.kestra.plugin.scripts.python.Commands
    taskRunner:
      type: io.kestra.plugin.core.runner.Process
    executionContext: true
    env:
      KESTRA_HOSTNAME: "{host}"
      KESTRA_API_TOKEN: "{token}"
      PYTHONDONTWRITEBYTECODE: "1"
    inputFiles:
      main.py: |
{script}    commands:
      - {command}
"#,
        host = i.host,
        token = i.token,
    )
}

/// The Python with Kestra's library installed, or `None` (after saying
/// why) when none is named and it is not required.
fn kestra_python() -> Option<PathBuf> {
    let required = std::env::var("ATOLL_KESTRA_PYTHON_REQUIRED").is_ok_and(|v| v == "1");
    let Some(python) = std::env::var_os("ATOLL_KESTRA_PYTHON").filter(|p| !p.is_empty()) else {
        assert!(
            !required,
            "ATOLL_KESTRA_PYTHON_REQUIRED=1 but ATOLL_KESTRA_PYTHON names no Python"
        );
        eprintln!(
            "SKIPPING the test with Kestra's own Python library: set ATOLL_KESTRA_PYTHON to a \
             Python with the `kestra` package installed (scripts/test does)"
        );
        return None;
    };
    let python = PathBuf::from(python);
    assert!(python.exists(), "{} does not exist", python.display());
    Some(python)
}

/// What every run of `main.py` shows, whichever library answered: the
/// outputs, the metrics and the log lines, through the API.
async fn assert_library_effects(i: &Instance, execution: &Value) -> Vec<(String, String)> {
    assert_eq!(execution["state"]["current"], "SUCCESS", "{execution:#}");
    let vars = &execution["taskRunList"][0]["outputs"]["vars"];
    assert_eq!(vars["greeting"], "hello", "{vars:#}");
    assert_eq!(vars["count"], 3);
    let nested = json!({"list": [1, 2, 3], "flag": true, "inner": {"x": 1.5}});
    assert_eq!(vars["nested"], nested);
    let context = json!({"flow": "library", "execution": execution["id"], "team": "data"});
    assert_eq!(vars["context"], context, "what `kestra.context` read");
    let id = execution["id"].as_str().expect("id");
    let logs = i.logs(id).await;
    let has = |level: &str, wanted: &str| {
        logs.iter()
            .any(|(l, m)| l == level && (m == wanted || m.ends_with(&format!("Z - {wanted}"))))
    };
    for (level, message) in [
        ("INFO", "info from the library"),
        ("WARN", "warning from the library"),
        ("ERROR", "error from the library"),
        ("DEBUG", "metric counter rows = 3 (table=users)"),
        ("DEBUG", "metric timer load = 1.5s"),
        ("DEBUG", "metric gauge ratio = 0.25 (kind=share)"),
    ] {
        assert!(has(level, message), "no {level} `{message}` in {logs:#?}");
    }
    let raw = logs.iter().find(|(_, m)| m.trim_start().starts_with("::"));
    assert!(
        raw.is_none(),
        "a `::{{...}}::` line was logged as is: {raw:?}"
    );
    logs
}

/// The flow `child` the script started through the API with
/// `Flow().execute`, with its input, ended.
async fn assert_child_started(i: &Instance, execution: &Value) {
    let child = &execution["taskRunList"][0]["outputs"]["vars"]["child"];
    assert_eq!(child["status"], "SUCCESS", "{child:#}");
    let child_id = child["id"].as_str().expect("child execution id");
    let child = i.ended(child_id).await;
    assert_eq!(child["flowId"], "child");
    assert_eq!(child["inputs"]["who"], "a script");
    let child_logs = i.logs(child_id).await;
    assert!(
        child_logs.iter().any(|(_, m)| m == "hello a script"),
        "{child_logs:#?}"
    );
}

/// The file `kestra` was imported from, as the script printed it.
fn kestra_module(logs: &[(String, String)]) -> String {
    logs.iter()
        .find_map(|(_, m)| m.strip_prefix("kestra module: "))
        .unwrap_or_else(|| panic!("the script printed no module path: {logs:#?}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kestras_own_library_is_imported_and_its_lines_read_and_a_flow_started() {
    let Some(python) = kestra_python() else {
        return;
    };
    let i = Instance::start().await;
    i.save_flow(CHILD.to_owned()).await;
    let command = format!("{} main.py subflow", python.display());
    i.save_flow(library_flow(&i, &command)).await;
    let execution = i.run("library").await;
    let logs = assert_library_effects(&i, &execution).await;

    let module = kestra_module(&logs);
    let venv = python.parent().and_then(|bin| bin.parent()).expect("venv");
    assert!(
        module.starts_with(&*venv.to_string_lossy())
            && module.ends_with("/site-packages/kestra.py"),
        "`kestra` came from {module}, not from the library installed in {}",
        venv.display()
    );

    assert_child_started(&i, &execution).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_library_the_instances_stand_in_sends_the_same_lines() {
    let i = Instance::start().await;
    i.save_flow(CHILD.to_owned()).await;
    // `-S`: no site-packages, so no installed `kestra` can answer.
    i.save_flow(library_flow(&i, "python3 -S main.py subflow"))
        .await;
    let execution = i.run("library").await;
    let logs = assert_library_effects(&i, &execution).await;
    let module = kestra_module(&logs);
    assert!(
        !module.contains("site-packages") && module.ends_with("/kestra.py"),
        "`kestra` came from {module}, not from the stand-in in the working directory"
    );
    assert_child_started(&i, &execution).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_script_task_imports_kestras_library_from_its_path() {
    let Some(python) = kestra_python() else {
        return;
    };
    let i = Instance::start().await;
    // A `Script` runs `python3`: the environment's comes first on `PATH`.
    let bin = python.parent().expect("bin").display().to_string();
    let path = std::env::var("PATH").unwrap_or_default();
    let flow = format!(
        r#"
id: script
namespace: company.team
tasks:
  - id: py
    type: io.kestra.plugin.scripts.python.Script
    taskRunner:
      type: io.kestra.plugin.core.runner.Process
    env:
      PATH: "{bin}:{path}"
    script: |
      import kestra
      from kestra import Kestra

      Kestra.outputs({{"module": kestra.__file__, "rows": [{{"id": 1}}] }})
      Kestra.gauge("ratio", 0.5)
      Kestra.logger().warning("from a Script task")
"#
    );
    i.save_flow(flow).await;
    let execution = i.run("script").await;
    assert_eq!(execution["state"]["current"], "SUCCESS", "{execution:#}");
    let vars = &execution["taskRunList"][0]["outputs"]["vars"];
    let module = vars["module"].as_str().expect("module");
    let venv = python.parent().and_then(|bin| bin.parent()).expect("venv");
    assert!(
        module.starts_with(&*venv.to_string_lossy()),
        "`kestra` came from {module}"
    );
    assert_eq!(vars["rows"], json!([{"id": 1}]));
    let logs = i.logs(execution["id"].as_str().expect("id")).await;
    let warned = logs
        .iter()
        .any(|(l, m)| l == "WARN" && m.ends_with("Z - from a Script task"));
    assert!(warned, "{logs:#?}");
    assert!(
        logs.iter()
            .any(|(l, m)| l == "DEBUG" && m == "metric gauge ratio = 0.5"),
        "{logs:#?}"
    );
}
