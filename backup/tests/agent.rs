//! `atoll-backup agent` with real components: a throwaway PostgreSQL 15
//! archiving with the built binary into the S3 test server (s3s-fs), the
//! agent as a child process talking to it over its Unix socket, and HTTP
//! from the outside.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atoll_testkit::nodesim::postgres::{bindir_from_env, unprivileged_user};
use atoll_testkit::pg::TestPostgres;
use atoll_testkit::s3::TestS3;
use atoll_testkit::wait::eventually;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_atoll-backup");
const UID: &str = "5e0c1d2a-7b3f-4c8e-9a61-2d4f6b8c0e17";
const TOKEN: &str = "7f3a9c1e5b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a1c3e5b7d9f2a4c6e8b0d1f3a";

/// A directory the PostgreSQL server's user can read and write.
fn shared_dir(prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temp dir");
    hand_over(dir.path());
    dir
}

fn hand_over(path: &Path) {
    if let Some((uid, gid)) = unprivileged_user() {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
    }
}

/// config.json + credential files, readable by the server's user (its
/// archive_command reads them).
fn config_dir(endpoint: &str, bucket: &str, key_id: &str, secret: &str) -> tempfile::TempDir {
    let dir = shared_dir("atoll-agent-config-");
    let config = json!({
        "endpoint": endpoint, "bucket": bucket, "region": "us-east-1",
        "pathStyle": true, "allowHttp": true, "prefix": "itest",
        "tenantUid": UID, "tenantName": "acme",
    });
    for (name, content) in [
        ("config.json", config.to_string()),
        ("accessKeyId", key_id.to_owned()),
        ("secretAccessKey", secret.to_owned()),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, content).expect("write config file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        hand_over(&path);
    }
    dir
}

/// The agent as a child process; its stderr is collected.
struct Agent {
    child: Child,
    base: String,
    stderr: Arc<Mutex<String>>,
    /// Reads stderr until the agent closes it.
    reader: Option<std::thread::JoinHandle<()>>,
    http: reqwest::Client,
    /// Every response body, to check for credentials at the end.
    seen: Mutex<Vec<String>>,
    _token_dir: tempfile::TempDir,
}

/// Where the agent finds PostgreSQL.
struct Target<'a> {
    config: &'a Path,
    status_dir: &'a Path,
    pgdata: &'a str,
    socket_dir: &'a str,
    port: u16,
}

impl Agent {
    async fn spawn(target: &Target<'_>) -> Agent {
        let token_dir = tempfile::tempdir().expect("temp dir");
        let token_file = token_dir.path().join("token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).expect("token file");
        let mut child = Command::new(BIN)
            .arg("agent")
            .args(["--listen", "127.0.0.1:0", "--switch-wal-timeout", "10"])
            .arg("--config")
            .arg(target.config)
            .arg("--token-file")
            .arg(&token_file)
            .arg("--status-dir")
            .arg(target.status_dir)
            .env_clear()
            .env("PGHOST", target.socket_dir)
            .env("PGPORT", target.port.to_string())
            .env("PGUSER", "postgres")
            .env("PGDATA", target.pgdata)
            .env("ATOLL_PG_BINDIR", bindir_from_env())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the agent");
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                eprintln!("[agent] {line}");
                let mut text = sink.lock().expect("stderr lock");
                text.push_str(&line);
                text.push('\n');
            }
        });
        let addr = eventually("the agent listening", Duration::from_secs(30), || {
            let text = stderr.lock().expect("stderr lock").clone();
            async move {
                let rest = text.split("listening on ").nth(1)?;
                rest.split_whitespace().next().map(str::to_owned)
            }
        })
        .await;
        Agent {
            child,
            base: format!("http://{addr}"),
            stderr,
            reader: Some(reader),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
            seen: Mutex::new(Vec::new()),
            _token_dir: token_dir,
        }
    }

    /// `method path` with `token` (`None`: no Authorization header).
    async fn call_as(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, String) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request to the agent");
        let status = response.status().as_u16();
        let text = response.text().await.expect("response body");
        self.seen.lock().expect("seen lock").push(text.clone());
        (status, text)
    }

    /// With the right token; the body as JSON.
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let (status, text) = self.call_as(method, path, Some(TOKEN), body).await;
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path} answered {status} with no JSON ({e}): {text}"));
        (status, value)
    }

    async fn status(&self) -> Value {
        let (code, body) = self.call(reqwest::Method::GET, "/status", None).await;
        assert_eq!(code, 200, "{body}");
        body
    }

    async fn switch_wal(&self) -> (u16, Value) {
        self.call(reqwest::Method::POST, "/switch-wal", None).await
    }

    /// SIGTERM; the agent must exit 0 within 15 s. Returns its stderr.
    async fn terminate(mut self) -> String {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
        let child = &mut self.child;
        let status = eventually("the agent's exit", Duration::from_secs(15), || {
            let exited = child.try_wait().expect("try_wait");
            async move { exited }
        })
        .await;
        assert!(status.success(), "agent exit after SIGTERM: {status}");
        if let Some(reader) = self.reader.take() {
            reader.join().expect("stderr reader");
        }
        let text = self.stderr.lock().expect("stderr lock").clone();
        assert!(text.contains("shutting down"), "{text}");
        text
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wal_key(wal: &str) -> String {
    format!("itest/tenants/{UID}/wal/{wal}.lz4")
}

/// Writes some WAL.
fn write_rows(pg: &TestPostgres) {
    pg.psql(
        "postgres",
        "CREATE TABLE IF NOT EXISTS t (x int); INSERT INTO t SELECT generate_series(1, 5000)",
    );
}

#[tokio::test]
async fn agent_serves_status_backups_and_wal_switches() {
    let Some(mut s3) = TestS3::start("the backup agent") else {
        return;
    };
    let cfg = config_dir(
        &s3.endpoint,
        &s3.bucket,
        &s3.access_key_id,
        &s3.secret_access_key,
    );
    let status_dir = shared_dir("atoll-agent-status-");
    let archive_command = format!(
        "archive_command={BIN} wal-push --config {} --status-dir {} %p",
        cfg.path().display(),
        status_dir.path().display()
    );
    let pg = TestPostgres::start_with(&["archive_mode=on", &archive_command]);
    let pgdata = pg.psql("postgres", "SHOW data_directory");
    let socket_dir = pg.psql("postgres", "SHOW unix_socket_directories");
    let target = Target {
        config: cfg.path(),
        status_dir: status_dir.path(),
        pgdata: &pgdata,
        socket_dir: &socket_dir,
        port: pg.port,
    };
    let agent = Agent::spawn(&target).await;

    only_with_the_token(&agent).await;
    archiving_reported(&agent, &pg, &s3).await;
    backups_one_at_a_time(&agent, &pg, &s3).await;
    store_outage(&agent, &pg, &mut s3).await;

    let secrets = [s3.access_key_id.as_str(), s3.secret_access_key.as_str()];
    let stderr = agent.terminate_checked(&secrets).await;
    assert!(stderr.contains("base backup"), "{stderr}");
}

impl Agent {
    /// Stops the agent (SIGTERM) and checks that no response body and no
    /// stderr line showed one of `secrets` (nor the token); returns stderr.
    async fn terminate_checked(self, secrets: &[&str]) -> String {
        let seen = std::mem::take(&mut *self.seen.lock().expect("seen lock"));
        let stderr = self.terminate().await;
        for secret in secrets.iter().chain([&TOKEN]) {
            assert!(
                !stderr.contains(secret),
                "a secret in the agent's stderr: {stderr}"
            );
            for body in &seen {
                assert!(!body.contains(secret), "a secret in a response: {body}");
            }
        }
        stderr
    }
}

/// `/healthz` is open; everything else answers 401 without the token.
async fn only_with_the_token(agent: &Agent) {
    use reqwest::Method;
    let (code, body) = agent.call_as(Method::GET, "/healthz", None, None).await;
    assert_eq!((code, body.as_str()), (200, "ok"));
    let wrong = "0".repeat(TOKEN.len());
    for token in [None, Some(wrong.as_str()), Some(&TOKEN[1..])] {
        for (method, path) in [
            (Method::GET, "/status"),
            (Method::POST, "/backups"),
            (Method::GET, "/backups/20261207T101500Z"),
            (Method::POST, "/switch-wal"),
        ] {
            let (code, body) = agent.call_as(method.clone(), path, token, None).await;
            assert_eq!(code, 401, "{method} {path} with {token:?}: {body}");
            let body: Value = serde_json::from_str(&body).expect("JSON error");
            assert!(
                body["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("bearer")),
                "{body}"
            );
        }
    }
    assert_eq!(
        agent.status().await["backup"]["running"],
        Value::Null,
        "no backup started"
    );
}

/// A WAL switch returns once the segment is in the store; `/status` says so.
async fn archiving_reported(agent: &Agent, pg: &TestPostgres, s3: &TestS3) {
    write_rows(pg);
    let (code, switched) = agent.switch_wal().await;
    assert_eq!(code, 200, "{switched}");
    let wal = switched["wal"].as_str().expect("wal").to_owned();
    assert!(
        switched["lsn"].as_str().is_some_and(|l| l.contains('/')),
        "{switched}"
    );
    assert!(switched["time"].as_str().is_some(), "{switched}");
    assert!(
        s3.object(&wal_key(&wal)).is_some(),
        "{wal} not in the store"
    );

    let status = eventually("no pending segments", Duration::from_secs(30), || async {
        let status = agent.status().await;
        (status["pendingSegments"] == 0).then_some(status)
    })
    .await;
    let archiver = &status["archiver"];
    assert!(archiver["archivedCount"].as_u64() >= Some(1), "{status}");
    assert!(
        archiver["lastArchivedWal"].as_str() >= Some(wal.as_str()),
        "{status}"
    );
    assert!(archiver["lastArchivedTime"].is_string(), "{status}");
    assert_eq!(archiver["failedCount"], 0, "{status}");
    assert_eq!(status["lastPush"]["ok"], true, "{status}");
    assert_eq!(status["pendingBytes"], 0, "{status}");
    let system = pg.psql(
        "postgres",
        "SELECT system_identifier FROM pg_control_system()",
    );
    assert_eq!(status["systemIdentifier"], system.as_str(), "{status}");
    assert_eq!(status["pgMajor"], 15, "{status}");
    assert_eq!(status["error"], Value::Null, "{status}");
    assert!(status["time"].is_string(), "{status}");
}

/// POST /backups runs one backup at a time; its backup.json is the truth.
async fn backups_one_at_a_time(agent: &Agent, pg: &TestPostgres, s3: &TestS3) {
    use reqwest::Method;
    write_rows(pg);
    let (code, started) = agent
        .call(
            Method::POST,
            "/backups",
            Some(json!({"name": "acme-manual"})),
        )
        .await;
    assert_eq!(code, 202, "{started}");
    let id = started["id"].as_str().expect("id").to_owned();
    let (code, busy) = agent.call(Method::POST, "/backups", None).await;
    assert_eq!(code, 409, "{busy}");
    assert_eq!(busy["running"], id.as_str(), "{busy}");
    assert!(busy["message"].is_string(), "{busy}");

    let path = format!("/backups/{id}");
    let done = eventually("the base backup", Duration::from_secs(180), || async {
        let (code, view) = agent.call(Method::GET, &path, None).await;
        assert_eq!(code, 200, "{view}");
        (view["phase"] != "Running").then_some(view)
    })
    .await;
    assert_eq!(done["phase"], "Completed", "{done}");
    let info = &done["info"];
    assert_eq!(info["id"], id.as_str(), "{done}");
    assert_eq!(info["tenantBackup"], "acme-manual", "{done}");
    assert_eq!(info["pgMajor"], 15, "{done}");
    let json_key = format!("itest/tenants/{UID}/base/{id}/backup.json");
    let stored: Value =
        serde_json::from_slice(&s3.object(&json_key).expect("backup.json in the store"))
            .expect("json");
    assert_eq!(&stored, info, "GET /backups/{{id}} shows backup.json");
    let status = agent.status().await;
    assert_eq!(status["backup"]["last"]["id"], id.as_str(), "{status}");
    assert_eq!(status["backup"]["running"], Value::Null, "{status}");

    // The same id again: refused by the catalog; the store still says Completed.
    let (code, _) = agent
        .call(Method::POST, "/backups", Some(json!({"id": id})))
        .await;
    assert_eq!(code, 202);
    let status = eventually("the duplicate refused", Duration::from_secs(60), || async {
        let status = agent.status().await;
        status["backup"]["lastError"]["id"]
            .is_string()
            .then_some(status)
    })
    .await;
    let message = status["backup"]["lastError"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("already exists"), "{status}");
    assert_eq!(
        agent.call(Method::GET, &path, None).await.1["phase"],
        "Completed"
    );

    bad_backup_requests(agent).await;
}

async fn bad_backup_requests(agent: &Agent) {
    use reqwest::Method;
    let (code, body) = agent
        .call(Method::GET, "/backups/19990101T000000Z", None)
        .await;
    assert_eq!(code, 404, "{body}");
    let (code, body) = agent.call(Method::GET, "/backups/latest", None).await;
    assert_eq!(code, 400, "{body}");
    for bad in [
        json!({"id": "yesterday"}),
        json!({"name": "Not_A_Name"}),
        json!({"size": 1}),
    ] {
        let (code, body) = agent
            .call(Method::POST, "/backups", Some(bad.clone()))
            .await;
        assert_eq!(code, 400, "{bad}: {body}");
        assert!(body["message"].is_string(), "{body}");
    }
}

/// With the store down a switch times out (504) and `/status` shows the
/// failures and the pending segment; once it is back, it is archived.
async fn store_outage(agent: &Agent, pg: &TestPostgres, s3: &mut TestS3) {
    s3.stop();
    write_rows(pg);
    let (code, stuck) = agent.switch_wal().await;
    assert_eq!(code, 504, "{stuck}");
    let wal = stuck["wal"].as_str().expect("wal").to_owned();
    let message = stuck["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&wal) && message.contains("not archived"),
        "{stuck}"
    );

    let status = eventually(
        "the failure in /status",
        Duration::from_secs(60),
        || async {
            let status = agent.status().await;
            let failing = status["archiver"]["failedCount"].as_u64() >= Some(1)
                && status["lastPush"]["ok"] == false
                && status["pendingSegments"].as_u64() >= Some(1);
            failing.then_some(status)
        },
    )
    .await;
    assert_eq!(
        status["archiver"]["lastFailedWal"],
        wal.as_str(),
        "{status}"
    );
    assert!(status["lastPush"]["error"].is_string(), "{status}");
    assert!(
        status["pendingBytes"].as_u64() >= Some(16 << 20),
        "{status}"
    );
    assert!(s3.object(&wal_key(&wal)).is_none());

    s3.restart();
    // A new segment wakes the archiver (it waits up to a minute after
    // failures); it stores the pending one first.
    eventually(
        "a switch archived again",
        Duration::from_secs(120),
        || async {
            write_rows(pg);
            let (code, _) = agent.switch_wal().await;
            (code == 200).then_some(())
        },
    )
    .await;
    assert!(
        s3.object(&wal_key(&wal)).is_some(),
        "{wal} archived after the outage"
    );
    let status = eventually("the backlog gone", Duration::from_secs(30), || async {
        let status = agent.status().await;
        (status["pendingSegments"] == 0).then_some(status)
    })
    .await;
    assert_eq!(status["lastPush"]["ok"], true, "{status}");
}

/// PostgreSQL not there (not started yet): healthz is ok, /status answers
/// what it knows with an error, a switch is 503, a backup fails.
#[tokio::test]
async fn agent_starts_without_postgresql() {
    use reqwest::Method;
    let (key_id, secret) = ("AKAGENTTEST0042", "agent-Secret-9317");
    let cfg = config_dir("http://127.0.0.1:9", "atoll-test", key_id, secret);
    let status_dir = tempfile::tempdir().expect("temp dir");
    let socket_dir = tempfile::tempdir().expect("temp dir");
    let pgdata = socket_dir.path().join("pgdata");
    let pgdata = pgdata.to_str().expect("utf-8 path");
    let target = Target {
        config: cfg.path(),
        status_dir: status_dir.path(),
        pgdata,
        socket_dir: socket_dir.path().to_str().expect("utf-8 path"),
        port: 5432,
    };
    let agent = Agent::spawn(&target).await;
    let (code, body) = agent.call_as(Method::GET, "/healthz", None, None).await;
    assert_eq!((code, body.as_str()), (200, "ok"));
    let status = agent.status().await;
    assert_eq!(status["archiver"], Value::Null, "{status}");
    assert_eq!(status["pendingSegments"], Value::Null, "{status}");
    assert_eq!(status["lastPush"], Value::Null, "{status}");
    let error = status["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("PostgreSQL") && error.contains("pgdata"),
        "{status}"
    );

    let (code, body) = agent.switch_wal().await;
    assert_eq!(code, 503, "{body}");
    let (code, started) = agent.call(Method::POST, "/backups", Some(json!({}))).await;
    assert_eq!(code, 202, "{started}");
    let path = format!("/backups/{}", started["id"].as_str().expect("id"));
    let failed = eventually("the backup failing", Duration::from_secs(60), || async {
        let (_, view) = agent.call(Method::GET, &path, None).await;
        (view["phase"] != "Running").then_some(view)
    })
    .await;
    assert_eq!(failed["phase"], "Failed", "{failed}");
    // The store is checked for the id first: it is not there either.
    let message = failed["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("backup.json") || message.contains("psql"),
        "{failed}"
    );
    let status = agent.status().await;
    assert!(
        status["backup"]["lastError"]["message"].is_string(),
        "{status}"
    );

    agent.terminate_checked(&[key_id, secret]).await;
}
