//! Kestra's official Python client (`kestrapy`), the releases teams use
//! today, against the real instance binary, as a user would call it: with
//! authentication on and an Editor's token for tenant `acme`, over a day of
//! ordinary calls (`kestra_clients/day.py` and its `day_*.py` areas).
//!
//! The routes added for those clients are also checked here against tokens,
//! roles and tenants (`the_new_routes_check_token_role_and_tenant`).
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
use support::identity::{self, KEY_A_PEM, TestIdentity};

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

/// The routes added for Kestra's clients, with a body each would take.
const NEW_ROUTES: [(&str, &str, bool); 20] = [
    // (method, path under /api/v1/acme, needs Editor)
    ("POST", "/executions/{id}/actions/restart", true),
    ("POST", "/executions/{id}/actions/replay", true),
    ("POST", "/executions/{id}/actions/replay-with-inputs", true),
    ("POST", "/executions/{id}/actions/resume", true),
    ("POST", "/executions/{id}/actions/pause", true),
    ("POST", "/executions/{id}/pause", true),
    ("DELETE", "/executions/{id}/actions/kill", true),
    ("POST", "/executions/{id}/actions/labels", true),
    ("POST", "/executions/{id}/labels", true),
    (
        "POST",
        "/executions/{id}/actions/change-status?status=FAILED",
        true,
    ),
    ("POST", "/executions/{id}/change-status?status=FAILED", true),
    ("POST", "/executions/{id}/actions/eval", true),
    ("POST", "/executions/{id}/eval", true),
    ("GET", "/executions?namespace=acme.team", false),
    ("POST", "/executions/latest", false),
    ("GET", "/executions/namespaces", false),
    ("GET", "/executions/namespaces/acme.team/flows", false),
    ("POST", "/executions/acme.team/hello/validate", false),
    ("GET", "/logs/{id}/download", false),
    ("GET", "/executions/{id}/follow", false),
];

/// Every route added for Kestra's clients refuses no token and another
/// tenant's token (401), a Viewer where an Editor is needed (403), and
/// answers 404 on another tenant's path; nothing it refuses changes the
/// execution.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_new_routes_check_token_role_and_tenant() {
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
    for (method, path, editor_only) in NEW_ROUTES {
        let path = path.replace("{id}", id);
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut cases = vec![
            ("no token", format!("/api/v1/{TENANT}{path}"), None, 401),
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
        if editor_only {
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
            assert_eq!(status, expected, "{method} {url} with {who}");
        }
    }
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
