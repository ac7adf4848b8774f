//! Kestra's official Python client (`kestrapy`), the releases teams use
//! today, against the real instance binary, as a user would call it: with
//! authentication on and an Editor's token for tenant `acme`, over a day of
//! ordinary calls (`kestra_clients/day.py` and its `day_*.py` areas).
//!
//! The routes added for those clients are also checked here against tokens,
//! roles and tenants (`every_route_checks_token_role_and_tenant`,
//! every operation of the OpenAPI document).
//!
//! The client's Python environments are named by `ATOLL_KESTRAPY_PYTHONS`
//! (interpreters separated by `:`; `scripts/test` installs them). Without
//! it the test says so and passes, unless `ATOLL_KESTRAPY_REQUIRED=1`.

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use atoll_testkit::eventually;
use support::identity::{self, KEY_A_PEM, KEY_B_PEM, TestIdentity};

const TENANT: &str = "acme";

/// The instance process, stopped when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The Python interpreters to run the day with, or `None` (after saying
/// why) when none are configured and they are not required.
fn pythons() -> Option<Vec<PathBuf>> {
    let required = std::env::var("ATOLL_KESTRAPY_REQUIRED").is_ok_and(|v| v == "1");
    let listed = std::env::var("ATOLL_KESTRAPY_PYTHONS").unwrap_or_default();
    let pythons: Vec<PathBuf> = listed
        .split(':')
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .collect();
    if pythons.is_empty() {
        assert!(
            !required,
            "ATOLL_KESTRAPY_REQUIRED=1 but ATOLL_KESTRAPY_PYTHONS names no Python with kestrapy"
        );
        eprintln!(
            "SKIPPING the Kestra client day: set ATOLL_KESTRAPY_PYTHONS to Pythons with kestrapy \
             installed (scripts/test does)"
        );
        return None;
    }
    for python in &pythons {
        assert!(python.exists(), "{} does not exist", python.display());
    }
    Some(pythons)
}

/// Starts `atoll-instance` for tenant `acme`, trusting `identity`'s tokens.
async fn start_instance(identity: &TestIdentity, data: &Path) -> (Proc, String) {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_atoll-instance"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("ATOLL_TENANT", TENANT)
        .env("ATOLL_TENANT_UID", format!("uid-{TENANT}"))
        .env("ATOLL_IDENTITY_ISSUER", &identity.issuer)
        .env("ATOLL_DATA_DIR", data)
        .env("ATOLL_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .expect("start the instance binary");
    let instance = Proc(child);
    let http = reqwest::Client::new();
    eventually("the instance is ready", Duration::from_secs(30), || async {
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
            .then_some(())
    })
    .await;
    (instance, base)
}

/// Runs the day with one client release; panics with its output when a
/// call failed.
fn run_day(python: &Path, base: &str, token: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kestra_clients/day.py");
    let output = Command::new(python)
        .arg(&script)
        .args(["--host", base, "--tenant", TENANT, "--token", token])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run day.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("== {}\n{stdout}{stderr}", python.display());
    assert!(
        output.status.success(),
        "the day with {} did not pass ({}):\n{stdout}{stderr}",
        python.display(),
        output.status
    );
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.ends_with(" 0 failed"),
        "unexpected closing line: {last}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_with_each_kestra_python_client_release() {
    let Some(pythons) = pythons() else {
        return;
    };
    let identity = TestIdentity::start().await;
    let data = tempfile::tempdir().expect("temp dir");
    let (_instance, base) = start_instance(&identity, data.path()).await;
    let token = identity::sign(&identity.claims(TENANT, "Editor"), KEY_A_PEM, "key-a");
    for python in &pythons {
        let (python, base, token) = (python.clone(), base.clone(), token.clone());
        let day = tokio::task::spawn_blocking(move || run_day(&python, &base, &token)).await;
        if let Err(err) = day {
            std::panic::resume_unwind(err.into_panic());
        }
    }
}

/// Runs `routes_served.py` with one client release: every call of the
/// client reaches a route (implemented, or 501 naming the feature), none
/// the generic 404 or a 5xx. Returns the closing figures line.
fn run_routes_served(python: &Path, base: &str, token: &str) -> String {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kestra_clients/routes_served.py");
    let output = Command::new(python)
        .arg(&script)
        .args(["--host", base, "--tenant", TENANT, "--token", token])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run routes_served.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "calls of {} fell outside the instance's routes ({}):\n{stdout}{stderr}",
        python.display(),
        output.status
    );
    // The calls answered 501 (the feature named) and 405, for the note.
    for line in stdout
        .lines()
        .filter(|l| l.starts_with("501 ") || l.starts_with("405 "))
    {
        eprintln!("{}: {line}", python.display());
    }
    let last = stdout.lines().last().unwrap_or_default().to_owned();
    assert!(
        last.ends_with(" failed 0"),
        "unexpected closing line: {last}"
    );
    last
}

/// Every call of each client release, on a fresh instance with an Editor's
/// token: implemented or 501 with the feature's name, never "no such
/// endpoint" (`kestra_clients/routes_served.py`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_of_each_client_release_reaches_a_route() {
    let Some(pythons) = pythons() else {
        return;
    };
    let identity = TestIdentity::start().await;
    let token = identity::sign(&identity.claims(TENANT, "Editor"), KEY_A_PEM, "key-a");
    for python in &pythons {
        // Fresh per release: by-query calls with no filter act on everything.
        let data = tempfile::tempdir().expect("temp dir");
        let (_instance, base) = start_instance(&identity, data.path()).await;
        let (py, token) = (python.clone(), token.clone());
        let figures =
            tokio::task::spawn_blocking(move || run_routes_served(&py, &base, &token)).await;
        match figures {
            Ok(figures) => println!("{}: {figures}", python.display()),
            Err(err) => std::panic::resume_unwind(err.into_panic()),
        }
    }
}

/// Every operation of the document the instance serves under the tenant
/// prefix (`atoll_instance::api::openapi_document`, generated from the
/// handlers): (method, path under `/api/v1/acme` with sample segments and
/// required query parameters, needs Editor by its `x-atoll-role` mark).
/// Operations with no role mark take no token by design (webhooks: the key
/// in the path is the secret) and have their own tests.
fn document_routes(execution: &str) -> Vec<(String, String, bool)> {
    let doc = atoll_instance::api::openapi_document();
    let mut routes = Vec::new();
    for (template, item) in doc["paths"].as_object().expect("the document's paths") {
        let Some(rest) = template.strip_prefix("/api/v1/{tenant}") else {
            continue;
        };
        for method in ["get", "put", "post", "delete", "patch"] {
            let Some(op) = item.get(method) else { continue };
            let editor = match op["x-atoll-role"].as_str() {
                Some("Editor" | "Admin") => true,
                Some(_) => false,
                None => continue,
            };
            let mut path: Vec<String> = Vec::new();
            for segment in rest.split('/') {
                let value = match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some("namespace") => "acme.team",
                    Some("id") if rest.starts_with("/executions/{id}") => execution,
                    Some("execution_id" | "task_run_id") => execution,
                    Some("id" | "flow_id") => "hello",
                    Some(_) => "x",
                    None => segment,
                };
                path.push(value.to_owned());
            }
            let mut path = path.join("/");
            let required = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query" && p["required"] == serde_json::Value::Bool(true))
                .filter_map(|p| p["name"].as_str());
            for (i, name) in required.enumerate() {
                path.push_str(&format!("{}{name}=x", if i == 0 { '?' } else { '&' }));
            }
            routes.push((method.to_uppercase(), path, editor));
        }
    }
    routes
}

/// Every operation of the OpenAPI document (the routes added for Kestra's
/// clients among them) refuses no token, a forged token and another
/// tenant's token (401), a Viewer where an Editor is needed (403), and
/// answers 404 on another tenant's path; nothing it refuses changes the
/// execution.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_checks_token_role_and_tenant() {
    let identity = TestIdentity::start().await;
    let data = tempfile::tempdir().expect("temp dir");
    let (_instance, base) = start_instance(&identity, data.path()).await;
    let sign = |tenant: &str, role: &str| {
        identity::sign(&identity.claims(tenant, role), KEY_A_PEM, "key-a")
    };
    let (editor, viewer, other) = (
        sign(TENANT, "Editor"),
        sign(TENANT, "Viewer"),
        sign("globex", "Admin"),
    );
    let forged = identity::sign(&identity.claims(TENANT, "Admin"), KEY_B_PEM, "key-a");
    let http = reqwest::Client::new();
    let flow = "id: hello\nnamespace: acme.team\ntasks:\n  - {id: t, type: io.kestra.plugin.core.log.Log, message: hi}\n";
    let saved = http
        .post(format!("{base}/api/v1/{TENANT}/flows"))
        .bearer_auth(&editor)
        .header("content-type", "application/x-yaml")
        .body(flow)
        .send()
        .await
        .expect("save");
    assert!(saved.status().is_success(), "{}", saved.status());
    let run: serde_json::Value = http
        .post(format!(
            "{base}/api/v1/{TENANT}/executions/acme.team/hello?wait=true"
        ))
        .bearer_auth(&editor)
        .send()
        .await
        .expect("run")
        .json()
        .await
        .expect("json");
    let id = run["id"].as_str().expect("id");
    let routes = document_routes(id);
    assert!(
        routes.len() > 100,
        "{} operations in the document",
        routes.len()
    );
    let mut wrong = Vec::new();
    for (method, path, editor_only) in &routes {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut cases = vec![
            ("no token", format!("/api/v1/{TENANT}{path}"), None, 401),
            (
                "a forged token (a key Identity does not publish)",
                format!("/api/v1/{TENANT}{path}"),
                Some(&forged),
                401,
            ),
            (
                "other tenant's token",
                format!("/api/v1/{TENANT}{path}"),
                Some(&other),
                401,
            ),
            (
                "other tenant's path",
                format!("/api/v1/globex{path}"),
                Some(&editor),
                404,
            ),
        ];
        if *editor_only {
            cases.push((
                "a Viewer",
                format!("/api/v1/{TENANT}{path}"),
                Some(&viewer),
                403,
            ));
        }
        for (who, url, token, expected) in cases {
            let mut request = http
                .request(method.clone(), format!("{base}{url}"))
                .header("content-type", "application/json")
                .body(r#"[{"key":"k","value":"v"}]"#);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let status = request.send().await.expect("request").status().as_u16();
            if status != expected {
                wrong.push(format!(
                    "{method} {url} with {who}: {status}, not {expected}"
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} operations answered otherwise: {wrong:#?}",
        wrong.len(),
        routes.len()
    );
    let after: serde_json::Value = http
        .get(format!("{base}/api/v1/{TENANT}/executions/{id}"))
        .bearer_auth(&viewer)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(after["state"], run["state"], "{after}");
    assert_eq!(after["labels"], run["labels"], "{after}");
}
