//! What a Commands task can see of the instance that runs it: the real
//! binary, started with a database URL and a secret in its environment as
//! the operator starts it, runs a task that looks for them.
//!
//! Tests run as root here, and root may read any process's
//! `/proc/<pid>/environ`; so when root, the instance is started as an
//! unprivileged user, as its container image runs it.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use atoll_testkit::eventually;
use serde_json::Value;

const SECRET: &str = "s3cr3t-token-from-a-mounted-secret";
const DB_PASSWORD: &str = "db-password-in-the-url";

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_cannot_read_the_instances_environment() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The unprivileged user must be able to write the SQLite file.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    // A SQLite URL holds no password: the file name stands for one.
    let database_url = format!(
        "sqlite:{}",
        dir.path().join(format!("{DB_PASSWORD}.db")).display()
    );
    let mut command = Command::new(env!("CARGO_BIN_EXE_atoll-instance"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("ATOLL_DATA_DIR", dir.path())
        .env("ATOLL_DATABASE_URL", &database_url)
        .env("ATOLL_LISTEN", format!("127.0.0.1:{port}"))
        .env("API_TOKEN", SECRET)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if rustix::process::geteuid().is_root() {
        command.uid(65534).gid(65534);
    }
    let _instance = Proc(command.spawn().expect("start the instance binary"));
    let http = reqwest::Client::new();
    eventually("the instance is ready", Duration::from_secs(30), || async {
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
            .then_some(())
    })
    .await;

    let flow = r#"
id: snoop
namespace: tests
tasks:
  - id: sh
    type: io.kestra.plugin.scripts.shell.Commands
    env:
      DECLARED: "yes"
    commands:
      - env
      - echo "parent environ:"
      - (tr '\0' '\n' < /proc/$PPID/environ) 2>&1 || echo "parent environ not readable"
      - id -u
"#;
    let saved = http
        .post(format!("{base}/api/v1/flows"))
        .header("content-type", "application/x-yaml")
        .body(flow)
        .send()
        .await
        .expect("save flow");
    assert!(saved.status().is_success(), "{}", saved.status());
    let execution: Value = http
        .post(format!("{base}/api/v1/executions/tests/snoop?wait=true"))
        .send()
        .await
        .expect("run")
        .json()
        .await
        .expect("json");
    let id = execution["id"].as_str().expect("id");
    let logs: Value = http
        .get(format!("{base}/api/v1/logs/{id}"))
        .send()
        .await
        .expect("logs")
        .json()
        .await
        .expect("json");
    let lines: Vec<&str> = logs
        .as_array()
        .expect("log lines")
        .iter()
        .filter_map(|l| l["message"].as_str())
        .collect();
    assert_eq!(execution["state"]["current"], "SUCCESS", "{lines:?}");
    assert!(lines.contains(&"DECLARED=yes"), "{lines:?}");
    assert!(lines.contains(&"parent environ:"), "{lines:?}");
    for line in &lines {
        assert!(!line.contains(SECRET), "the secret leaked: {lines:?}");
        assert!(
            !line.contains(DB_PASSWORD),
            "the database URL leaked: {lines:?}"
        );
        assert!(!line.starts_with("ATOLL_"), "{line} leaked: {lines:?}");
        assert!(!line.starts_with("API_TOKEN"), "{line} leaked: {lines:?}");
    }
}
