//! Kills the instance process with SIGKILL while executions run, restarts
//! it on the same database, and checks every execution reaches a final state.

mod support;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use atoll_testkit::eventually;

use serde_json::Value;

const SLOW: &str = r#"
id: slow
namespace: crash.test
tasks:
  - id: first
    type: io.kestra.plugin.core.log.Log
    message: "start {{ execution.id }}"
  - id: nap
    type: io.kestra.plugin.core.flow.Sleep
    duration: PT1S
  - id: shell
    type: io.kestra.plugin.scripts.shell.Commands
    commands: ["sleep 0.3", "echo done"]
    retry: {type: constant, interval: PT0.1S, maxAttempt: 3}
  - id: last
    type: io.kestra.plugin.core.debug.Return
    format: "{{ outputs.first ?? 'ok' }}"
"#;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

struct Proc {
    child: Child,
    base: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn spawn(data_dir: &Path, database_url: &str) -> Proc {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_atoll-instance"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("ATOLL_DATA_DIR", data_dir)
        .env("ATOLL_DATABASE_URL", database_url)
        .env("ATOLL_LISTEN", format!("127.0.0.1:{port}"))
        .env("ATOLL_LEASE_SECONDS", "2")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the instance binary");
    let proc = Proc {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    let readyz = format!("{}/readyz", proc.base);
    eventually("the instance ready", Duration::from_secs(30), || async {
        let response = http.get(&readyz).send().await;
        response
            .is_ok_and(|r| r.status().is_success())
            .then_some(())
    })
    .await;
    proc
}

async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    http.get(url)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    Kill,
    Terminate,
}

async fn crash_and_resume(database_url: String) {
    stop_and_resume(database_url, Stop::Kill).await;
}

async fn stop_and_resume(database_url: String, stop: Stop) {
    let dir = tempfile::tempdir().expect("temp dir");
    let http = reqwest::Client::new();
    let first = spawn(dir.path(), &database_url).await;
    let saved = http
        .post(format!("{}/api/v1/flows", first.base))
        .header("content-type", "application/x-yaml")
        .body(SLOW)
        .send()
        .await
        .expect("save flow");
    assert!(saved.status().is_success());
    let mut ids = Vec::new();
    for _ in 0..12 {
        let execution: Value = http
            .post(format!("{}/api/v1/executions/crash.test/slow", first.base))
            .send()
            .await
            .expect("start")
            .json()
            .await
            .expect("json");
        ids.push(execution["id"].as_str().expect("id").to_owned());
    }
    // Kill once every execution has started running.
    let search = format!(
        "{}/api/v1/executions/search?state=RUNNING&size=100",
        first.base
    );
    eventually(
        "every execution running",
        Duration::from_secs(30),
        || async {
            let found = get_json(&http, &search).await;
            let running = found["results"].as_array().map_or(0, Vec::len);
            (running == ids.len()).then_some(())
        },
    )
    .await;
    match stop {
        Stop::Kill => drop(first), // SIGKILL
        Stop::Terminate => {
            let mut first = first;
            let status = Command::new("kill")
                .args(["-TERM", &first.child.id().to_string()])
                .status()
                .expect("send SIGTERM");
            assert!(status.success());
            let exit = eventually("an exit after SIGTERM", Duration::from_secs(20), || {
                let exit = first.child.try_wait().expect("wait");
                async move { exit }
            })
            .await;
            assert!(exit.success(), "graceful shutdown exits 0, got {exit}");
        }
    }

    let second = spawn(dir.path(), &database_url).await;
    for id in &ids {
        let url = format!("{}/api/v1/executions/{id}", second.base);
        let what = format!("execution {id} ended");
        let state = eventually(&what, Duration::from_secs(60), || async {
            let execution = get_json(&http, &url).await;
            let state = execution["state"]["current"].as_str().unwrap_or_default();
            ["SUCCESS", "WARNING", "FAILED", "KILLED", "CANCELLED"]
                .contains(&state)
                .then(|| state.to_owned())
        })
        .await;
        if state != "SUCCESS" {
            // A lost attempt of a task with side effects fails with a reason.
            let logs = get_json(&http, &format!("{}/api/v1/logs/{id}", second.base)).await;
            let text = logs.to_string();
            assert!(
                text.contains("the instance stopped"),
                "{id} {state}: {text}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_then_restart_finishes_every_execution_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite:{}", dir.path().join("crash.db").display());
    crash_and_resume(url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_then_restart_finishes_every_execution_on_postgres() {
    let server = atoll_testkit::pg::TestPostgres::start();
    crash_and_resume(server.database_url("crash")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_executions_back_and_a_restart_finishes_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite:{}", dir.path().join("term.db").display());
    stop_and_resume(url, Stop::Terminate).await;
}
