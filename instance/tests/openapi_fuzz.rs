//! The OpenAPI document against the real instance: the `atoll-instance`
//! binary, authentication on (Identity's tokens, an Admin's), a flow and
//! an execution in it, fuzzed by schemathesis (4.x, from the test
//! command's throwaway environment: `ATOLL_SCHEMATHESIS`) with every
//! check. No answer may be a 5xx, break the document (status, media type,
//! headers, body schema) or let a call through without a valid token.
//!
//! Without schemathesis the test is skipped, loudly; with
//! `ATOLL_SCHEMATHESIS_REQUIRED=1` it fails instead.

mod support;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use atoll_testkit::eventually;
use support::identity::{self, KEY_A_PEM, TestIdentity};

const TENANT: &str = "acme";
const TENANT_UID: &str = "uid-acme";
/// Examples per operation by default (about 12,000 cases, some six minutes
/// on 2 cores, within CI's time); `ATOLL_FUZZ_EXAMPLES` for a deeper run
/// (100: about 24,000 cases, twelve minutes).
const MAX_EXAMPLES: &str = "50";

fn max_examples() -> String {
    std::env::var("ATOLL_FUZZ_EXAMPLES")
        .ok()
        .filter(|n| n.parse::<u32>().is_ok_and(|n| n > 0))
        .unwrap_or_else(|| MAX_EXAMPLES.to_owned())
}

/// Operations whose well-formed requests may still be refused with a 400
/// for what no schema can say: a flow's source, an execution's inputs,
/// import archives are checked by their own rules; a bulk action refuses
/// every id that cannot take it (Kestra's `BulkErrorResponse`); a move
/// into itself, a backfill of the future, more label filters than a search
/// takes; a storage path with an empty, `.` or `..` segment (a namespace
/// file's, an execution's output file's). (Path regexes, both prefixes.)
const CHECKED_BEYOND_THE_SCHEMA: &[&str] = &[
    "/executions/(by-ids|by-query)$",
    "/executions/(restart|replay|kill|resume|labels|pause|change-status)/by-(ids|query)$",
    "/flows/delete/by-ids$",
    "/flows$",
    "/flows/\\{namespace\\}/\\{id\\}$",
    "/flows/(graph|import)$",
    "/executions/\\{namespace\\}/\\{flow_id\\}$",
    "/namespaces/\\{namespace\\}/files$",
    "/executions/\\{id\\}/file(/metas)?$",
    "/triggers/backfill/create$",
    // At most 5 label filters in all, comma-separated or repeated.
    "/executions(/search)?$",
];

/// schemathesis' configuration: the tenant segment is this instance's
/// (other segments are fuzzed), and the operations above may answer 400
/// to valid-looking data.
fn config_text() -> String {
    let mut config = format!("[parameters]\n\"path.tenant\" = \"{TENANT}\"\n");
    for path in CHECKED_BEYOND_THE_SCHEMA {
        config.push_str(&format!(
            "\n[[operations]]\ninclude-path-regex = '{path}'\n\
             [operations.checks.positive_data_acceptance]\n\
             expected-statuses = [\"2xx\", \"400\", \"401\", \"403\", \"404\", \"409\"]\n"
        ));
    }
    config
}

const FLOW: &str = "id: hello
namespace: fuzz.team
inputs:
  - id: who
    type: STRING
    defaults: world
tasks:
  - id: log
    type: io.kestra.plugin.core.log.Log
    message: hello {{ inputs.who }}
";

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

fn schemathesis() -> Option<String> {
    let bin = std::env::var("ATOLL_SCHEMATHESIS")
        .ok()
        .filter(|b| std::path::Path::new(b).exists());
    if bin.is_none() {
        assert!(
            std::env::var("ATOLL_SCHEMATHESIS_REQUIRED").as_deref() != Ok("1"),
            "ATOLL_SCHEMATHESIS_REQUIRED=1 but ATOLL_SCHEMATHESIS names no schemathesis"
        );
        eprintln!("SKIPPED openapi_fuzz: set ATOLL_SCHEMATHESIS (scripts/test installs it)");
    }
    bin
}

/// The binary, with Identity's tokens required.
fn start_instance(dir: &std::path::Path, port: u16, issuer: &str) -> Proc {
    let log = std::fs::File::create(dir.join("instance.log")).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_atoll-instance"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("ATOLL_DATA_DIR", dir)
        .env(
            "ATOLL_DATABASE_URL",
            format!("sqlite:{}", dir.join("atoll.db").display()),
        )
        .env("ATOLL_LISTEN", format!("127.0.0.1:{port}"))
        .env("ATOLL_TENANT", TENANT)
        .env("ATOLL_TENANT_UID", TENANT_UID)
        .env("ATOLL_IDENTITY_ISSUER", issuer)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start the instance binary");
    Proc(child)
}

/// Starts Identity and the instance; waits until it is ready.
async fn ready_instance(dir: &std::path::Path) -> (TestIdentity, Proc, String, String) {
    let id = TestIdentity::start().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let instance = start_instance(dir, port, &id.issuer);
    let http = reqwest::Client::new();
    eventually("the instance is ready", Duration::from_secs(30), || async {
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
            .then_some(())
    })
    .await;
    let admin = identity::sign(&id.claims(TENANT, "Admin"), KEY_A_PEM, "key-a");
    (id, instance, base, admin)
}

/// The document needs no token, on both URL forms (not for another
/// tenant); every route of the 501 table refuses a stranger (401) and
/// tells a caller the feature Atoll does not implement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn document_is_public_and_unimplemented_routes_answer_501_after_authentication() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_id, _instance, base, admin) = ready_instance(dir.path()).await;
    let http = reqwest::Client::new();
    for (path, status) in [
        ("/api/v1/openapi.json", 200),
        ("/api/v1/acme/openapi.json", 200),
        ("/api/v1/globex/openapi.json", 404),
    ] {
        let answer = http
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("answer");
        assert_eq!(answer.status().as_u16(), status, "GET {path}");
    }
    let doc: serde_json::Value = http
        .get(format!("{base}/api/v1/openapi.json"))
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("json");
    let table = doc["x-atoll-unimplemented"]
        .as_array()
        .expect("the 501 table");
    assert!(table.len() > 40, "{} rows", table.len());
    for row in table {
        let feature = row["feature"].as_str().expect("feature");
        let path = row["path"].as_str().expect("path");
        let path = path
            .replace("/*", "/anything")
            .replace("{namespace}", "team")
            .replace("{id}", "hello");
        let method = row["methods"][0].as_str().unwrap_or("GET");
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        for prefix in ["/api/v1".to_owned(), format!("/api/v1/{TENANT}")] {
            let url = format!("{base}{prefix}{path}");
            let stranger = http
                .request(method.clone(), &url)
                .send()
                .await
                .expect("answer");
            assert_eq!(
                stranger.status().as_u16(),
                401,
                "{method} {url} without a token"
            );
            let answer = http
                .request(method.clone(), &url)
                .bearer_auth(&admin)
                .send()
                .await
                .expect("answer");
            assert_eq!(answer.status().as_u16(), 501, "{method} {url}");
            let body: serde_json::Value = answer.json().await.expect("json");
            let message = body["message"].as_str().unwrap_or_default();
            assert!(
                message.contains(&format!("not implemented by Atoll: {feature}")),
                "{method} {url}: {message}"
            );
        }
    }
}

/// A flow and one ended execution of it, so reads find something.
async fn seed(http: &reqwest::Client, base: &str, token: &str) -> String {
    let created = http
        .post(format!("{base}/api/v1/{TENANT}/flows"))
        .bearer_auth(token)
        .header("content-type", "application/x-yaml")
        .body(FLOW)
        .send()
        .await
        .expect("create the flow");
    assert!(
        created.status().is_success(),
        "create: {}",
        created.status()
    );
    let started = http
        .post(format!(
            "{base}/api/v1/{TENANT}/executions/fuzz.team/hello?wait=true"
        ))
        .bearer_auth(token)
        .send()
        .await
        .expect("start an execution");
    assert!(started.status().is_success(), "start: {}", started.status());
    let execution: serde_json::Value = started.json().await.expect("execution");
    execution["id"].as_str().expect("id").to_owned()
}

/// The figures of a run, from schemathesis' summary.
#[derive(Debug, Default)]
struct Figures {
    /// "Selected: N/M" and "Tested: N" of the API operations.
    selected: String,
    tested: String,
    /// The test-case line: "N generated, N passed".
    generated: String,
    /// Each failure group of the summary: "ST… title: count".
    failures: Vec<String>,
    /// Each error group of the summary: "title: count".
    errors: Vec<String>,
    /// The closing banner: "No issues found in …s" or the counts.
    verdict: String,
    /// Each failing operation, its failures and how to reproduce them.
    details: Vec<String>,
}

impl Figures {
    fn text(&self) -> String {
        format!(
            "operations selected: {}\noperations tested: {}\ntest cases: {}\n\
             failures: {}\nerrors: {}\nverdict: {}\n",
            self.selected,
            self.tested,
            self.generated,
            list_or_none(&self.failures),
            list_or_none(&self.errors),
            self.verdict
        )
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join("; ")
    }
}

fn figures(out: &str) -> Figures {
    let mut f = Figures::default();
    let mut in_errors = false;
    for line in out.lines().map(str::trim) {
        if line == "Errors:" {
            in_errors = true;
            continue;
        }
        if line.is_empty() || line.ends_with(':') && !line.contains(' ') {
            in_errors = false;
        }
        if let Some(rest) = line.strip_prefix("Selected: ") {
            f.selected = rest.to_owned();
        } else if let Some(rest) = line.strip_prefix("Tested: ") {
            f.tested = rest.to_owned();
        } else if line.contains(" generated")
            && line
                .split(' ')
                .next()
                .is_some_and(|n| n.parse::<u64>().is_ok())
        {
            f.generated = line.to_owned();
        } else if let Some(rest) = line.strip_prefix("❌ ST") {
            f.failures.push(format!("ST{rest}"));
        } else if let Some(rest) = line.strip_prefix("🚫 ").filter(|_| in_errors) {
            f.errors.push(rest.to_owned());
        } else if line.starts_with("===") && line.ends_with("===") && !line.contains("SUMMARY") {
            f.verdict = line.trim_matches(|c| c == '=' || c == ' ').to_owned();
        } else if line.starts_with("___")
            || line.starts_with("- ST")
            || line.starts_with("curl ")
            || line.starts_with("Invalid component")
            || line.starts_with("`")
            || line.starts_with('[') && line.chars().nth(1).is_some_and(|c| c.is_ascii_digit())
        {
            f.details.push(line.to_owned());
        }
    }
    f
}

/// Where a run's figures are written, next to the other test artifacts
/// (`target/openapi-fuzz.txt`, or `ATOLL_ARTIFACTS_DIR`), so a passing
/// run's figures can be read and quoted.
fn figures_file() -> std::path::PathBuf {
    let dir = std::env::var_os("ATOLL_ARTIFACTS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(".."));
    dir.join("openapi-fuzz.txt")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_answer_off_the_document() {
    let Some(schemathesis) = schemathesis() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let (_id, _instance, base, admin) = ready_instance(dir.path()).await;
    let http = reqwest::Client::new();
    let execution = seed(&http, &base, &admin).await;

    // The tenant segment is this instance's; other segments are fuzzed.
    let config = dir.path().join("schemathesis.toml");
    std::fs::write(&config, config_text()).expect("config");
    let examples = max_examples();
    let out = Command::new(&schemathesis)
        .current_dir(dir.path())
        .arg("--config-file")
        .arg(&config)
        .args(["run", &format!("{base}/api/v1/openapi.json")])
        .args(["--checks", "all", "--max-examples", &examples])
        .args(["--workers", "2", "--no-color", "--seed", "21"])
        .args(["--suppress-health-check", "all"])
        .args(["--header", &format!("Authorization: Bearer {admin}")])
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let figures = figures(&stdout);
    let report = format!(
        "schemathesis {examples} examples per operation, seed 21, every check \
         (execution seeded: {execution})\n{}",
        figures.text()
    );
    let file = figures_file();
    if let Err(e) = std::fs::write(&file, &report) {
        eprintln!("could not write {}: {e}", file.display());
    }
    eprintln!("{report}(written to {})", file.display());
    for line in &figures.details {
        eprintln!("  {line}");
    }
    let log = std::fs::read_to_string(dir.path().join("instance.log")).unwrap_or_default();
    // Any failure or error fails the run: schemathesis exits non-zero
    // for both, and the summary must have counted them as none. One kind
    // of error is schemathesis' own: a "Runtime Error" is an exception
    // raised inside the tool while it builds test cases (seen: hypothesis
    // failing to read a lambda's source under two workers), not an answer
    // of ours; it is printed with the figures and does not fail the run.
    let (tool_crashes, errors): (Vec<&String>, Vec<&String>) = figures
        .errors
        .iter()
        .partition(|e| e.starts_with("Runtime Error"));
    if !tool_crashes.is_empty() {
        eprintln!("schemathesis crashed inside itself (not counted): {tool_crashes:?}");
    }
    assert!(
        (out.status.success() || !tool_crashes.is_empty())
            && figures.failures.is_empty()
            && errors.is_empty()
            && !figures.tested.is_empty(),
        "schemathesis exited with {}: failures {:?}, errors {:?}\n{stdout}\n{}\ninstance log:\n{log}",
        out.status,
        figures.failures,
        figures.errors,
        String::from_utf8_lossy(&out.stderr)
    );
}
