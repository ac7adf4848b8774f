//! Engine behaviour the Kestra corpus does not cover: shell commands, HTTP
//! requests, timeouts, kills, typed inputs and variables.

use std::time::Duration;

use atoll_instance::engine::{Engine, EngineConfig, EngineError};
use atoll_instance::execution::{Execution, State};
use atoll_instance::store::{Repository, Store};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

struct Harness {
    engine: Engine,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn new() -> Harness {
        Harness::with_config(EngineConfig::default()).await
    }

    /// An engine whose HTTP tasks may reach the loopback test servers.
    async fn allowing_private() -> Harness {
        Harness::with_config(EngineConfig {
            http_allow_private: true,
            ..EngineConfig::default()
        })
        .await
    }

    async fn with_config(config: EngineConfig) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite:{}", dir.path().join("engine.db").display());
        let store = Store::connect(&url).await.expect("store");
        let engine = Engine::new(store, config);
        let shutdown = CancellationToken::new();
        tokio::spawn({
            let engine = engine.clone();
            let shutdown = shutdown.clone();
            async move { engine.run(shutdown).await }
        });
        Harness {
            engine,
            shutdown,
            _dir: dir,
        }
    }

    async fn start(&self, source: &str, inputs: Value) -> Result<Execution, EngineError> {
        let flow = self.engine.flows().save(source).await.expect("save");
        let inputs: Map<String, Value> = inputs.as_object().cloned().unwrap_or_default();
        self.engine
            .start_execution(&flow.namespace, &flow.id, &inputs, Vec::new(), None)
            .await
    }

    async fn run(&self, source: &str, inputs: Value) -> Execution {
        let started = self.start(source, inputs).await.expect("start");
        self.engine
            .wait(&started.id, Duration::from_secs(30))
            .await
            .expect("finished")
    }

    async fn logs(&self, id: &str) -> Vec<String> {
        let logs = self.engine.logs(id, 0, 1000).await.expect("logs");
        logs.into_iter().map(|l| l.message).collect()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn outputs(execution: &Execution, task: &str) -> Value {
    execution
        .task_run_list
        .iter()
        .find(|r| r.task_id == task)
        .map(|r| Value::Object(r.outputs.clone()))
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_commands_log_lines_and_set_outputs() {
    let h = Harness::new().await;
    let execution = h
        .run(
            r#"
id: shell
namespace: tests
inputs:
  - {id: who, type: STRING}
tasks:
  - id: sh
    type: io.kestra.plugin.scripts.shell.Commands
    env:
      GREETING: "hello {{ inputs.who }}"
    commands:
      - echo "$GREETING"
      - echo oops >&2
      - pwd
      - echo '::{"outputs":{"count":3,"name":"x"}}::'
  - id: use
    type: io.kestra.plugin.core.debug.Return
    format: "{{ outputs.sh.vars.count }} {{ outputs.sh.exitCode }}"
"#,
            json!({"who": "world"}),
        )
        .await;
    assert_eq!(execution.state.current, State::Success);
    assert_eq!(
        outputs(&execution, "sh")["vars"],
        json!({"count": 3, "name": "x"})
    );
    assert_eq!(outputs(&execution, "use")["value"], "3 0");
    let logs = h.logs(&execution.id).await;
    assert!(logs.contains(&"hello world".to_owned()), "{logs:?}");
    assert!(logs.contains(&"oops".to_owned()), "{logs:?}");
    let workdir = logs
        .iter()
        .find(|l| l.contains("atoll-task-"))
        .expect("runs in its own working directory");
    assert!(
        !std::path::Path::new(workdir).exists(),
        "the working directory is removed afterwards"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_commands_fail_with_the_exit_code_and_retry() {
    let h = Harness::new().await;
    let execution = h
        .run(
            r#"
id: shell-fail
namespace: tests
tasks:
  - id: sh
    type: io.kestra.plugin.scripts.shell.Commands
    commands: ["exit 3"]
    retry: {type: constant, interval: PT0.05S, maxAttempt: 2}
"#,
            json!({}),
        )
        .await;
    assert_eq!(execution.state.current, State::Failed);
    assert_eq!(execution.task_run_list[0].attempts.len(), 2);
    let logs = h.logs(&execution.id).await;
    assert!(
        logs.iter().any(|l| l.contains("exited with code 3")),
        "{logs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_request_reads_a_local_server() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let app = axum::Router::new().route(
        "/hello",
        axum::routing::post(|body: String| async move { format!("got {body}") }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let h = Harness::allowing_private().await;
    let execution = h
        .run(
            &format!(
                r#"
id: http
namespace: tests
tasks:
  - id: call
    type: io.kestra.plugin.core.http.Request
    uri: "http://127.0.0.1:{port}/hello"
    method: POST
    body: "{{{{ flow.id }}}}"
  - id: missing
    type: io.kestra.plugin.core.http.Request
    uri: "http://127.0.0.1:{port}/nope"
    allowFailure: true
"#
            ),
            json!({}),
        )
        .await;
    assert_eq!(execution.state.current, State::Warning);
    assert_eq!(outputs(&execution, "call")["code"], 200);
    assert_eq!(outputs(&execution, "call")["body"], "got http");
    let logs = h.logs(&execution.id).await;
    assert!(logs.iter().any(|l| l.contains("HTTP 404")), "{logs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_timeout_fails_the_attempt() {
    let h = Harness::new().await;
    let execution = h
        .run(
            r#"
id: slow
namespace: tests
tasks:
  - id: nap
    type: io.kestra.plugin.core.flow.Sleep
    duration: PT30S
    timeout: PT0.2S
"#,
            json!({}),
        )
        .await;
    assert_eq!(execution.state.current, State::Failed);
    let logs = h.logs(&execution.id).await;
    assert!(logs.iter().any(|l| l.contains("timed out")), "{logs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_stops_a_running_execution() {
    let h = Harness::new().await;
    let started = h
        .start(
            r#"
id: long
namespace: tests
tasks:
  - id: sh
    type: io.kestra.plugin.scripts.shell.Commands
    commands: ["sleep 30"]
  - id: never
    type: io.kestra.plugin.core.log.Log
    message: never
"#,
            json!({}),
        )
        .await
        .expect("start");
    // Wait for the command to be running before killing it.
    atoll_testkit::eventually("the command running", Duration::from_secs(10), || async {
        let current = h.engine.execution(&started.id).await.expect("get");
        current
            .is_some_and(|e| {
                e.task_run_list
                    .iter()
                    .any(|r| r.task_id == "sh" && r.state.current == State::Running)
            })
            .then_some(())
    })
    .await;
    assert!(h.engine.kill(&started.id).await.expect("kill"));
    let execution = h
        .engine
        .wait(&started.id, Duration::from_secs(10))
        .await
        .expect("finished");
    assert_eq!(execution.state.current, State::Killed);
    assert_eq!(execution.task_run_list.len(), 1);
    assert_eq!(execution.task_run_list[0].state.current, State::Killed);
    assert!(
        !h.engine.kill(&started.id).await.expect("kill"),
        "already over"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_inputs_and_variables_render() {
    let h = Harness::new().await;
    let source = r#"
id: typed
namespace: tests
variables:
  greeting: hi
inputs:
  - {id: n, type: INT}
  - {id: f, type: FLOAT}
  - {id: when, type: DATETIME}
  - {id: list, type: ARRAY, itemType: INT}
tasks:
  - id: out
    type: io.kestra.plugin.core.debug.Return
    format: "{{ vars.greeting }} {{ inputs.n + 1 }} {{ inputs.f }} {{ inputs.when }} {{ inputs.list | length }}"
"#;
    let execution = h
        .run(
            source,
            json!({"n": "41", "f": "1.5", "when": "2024-01-02T03:04:05Z", "list": "[1,2,3]"}),
        )
        .await;
    assert_eq!(execution.state.current, State::Success);
    assert_eq!(
        outputs(&execution, "out")["value"],
        "hi 42 1.5 2024-01-02T03:04:05Z 3"
    );
    let missing = h.start(source, json!({"n": "1"})).await;
    assert!(
        matches!(missing, Err(EngineError::Inputs(_))),
        "{missing:?}"
    );
    let bad = h
        .start(
            source,
            json!({"n": "x", "f": "1", "when": "2024-01-02T03:04:05Z", "list": "[]"}),
        )
        .await;
    assert!(matches!(bad, Err(EngineError::Inputs(_))), "{bad:?}");
}

fn error_of(execution: &Execution, logs: &[String]) -> String {
    assert_eq!(execution.state.current, State::Failed, "{logs:?}");
    logs.iter()
        .find(|l| l.contains("private address"))
        .cloned()
        .unwrap_or_else(|| panic!("no address refusal in {logs:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_requests_to_private_addresses_are_refused_by_default() {
    // Something answers on loopback, so a refusal is the policy, not a
    // closed port.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "secret" }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let h = Harness::new().await;
    for (uri, host) in [
        (
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            "169.254.169.254",
        ),
        (format!("http://localhost:{port}/"), "localhost"),
        (
            format!("http://[::ffff:127.0.0.1]:{port}/"),
            "[::ffff:7f00:1]",
        ),
        (format!("http://127.0.0.1:{port}/"), "127.0.0.1"),
        (format!("http://2130706433:{port}/"), "127.0.0.1"),
        ("http://[fd00:ec2::254]/".to_owned(), "[fd00:ec2::254]"),
    ] {
        let execution = h
            .run(
                &format!(
                    r#"
id: ssrf
namespace: tests
tasks:
  - id: call
    type: io.kestra.plugin.core.http.Request
    uri: "{uri}"
    timeout: PT20S
"#
                ),
                json!({}),
            )
            .await;
        let logs = h.logs(&execution.id).await;
        let error = error_of(&execution, &logs);
        assert!(error.contains(host), "{uri}: {error}");
        assert!(
            error.contains("ATOLL_HTTP_ALLOW_PRIVATE=true"),
            "{uri}: {error}"
        );
        assert!(!error.contains("secret"), "{uri}: {error}");
        assert!(
            outputs(&execution, "call").get("body").is_none(),
            "{uri}: nothing was read"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_bodies_are_read_up_to_the_limit_only() {
    // An endless body: reading it whole never ends; the task must stop at
    // the limit and say the body was cut.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let app = axum::Router::new().route(
        "/endless",
        axum::routing::get(|| async {
            let chunk = axum::body::Bytes::from(vec![b'x'; 64 * 1024]);
            let stream = futures::stream::repeat_with(move || {
                Ok::<_, std::convert::Infallible>(chunk.clone())
            });
            axum::body::Body::from_stream(stream)
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let h = Harness::allowing_private().await;
    let execution = h
        .run(
            &format!(
                r#"
id: endless
namespace: tests
tasks:
  - id: call
    type: io.kestra.plugin.core.http.Request
    uri: "http://127.0.0.1:{port}/endless"
    timeout: PT20S
"#
            ),
            json!({}),
        )
        .await;
    let logs = h.logs(&execution.id).await;
    assert_eq!(execution.state.current, State::Success, "{logs:?}");
    let call = outputs(&execution, "call");
    assert_eq!(call["body"].as_str().map(str::len), Some(1024 * 1024));
    assert_eq!(call["bodyTruncated"], true);
    assert!(
        logs.iter().any(|l| l.contains("only the first")),
        "{logs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_see_only_a_clean_environment_and_what_they_declare() {
    let h = Harness::new().await;
    let execution = h
        .run(
            r#"
id: env
namespace: tests
tasks:
  - id: sh
    type: io.kestra.plugin.scripts.shell.Commands
    env:
      DECLARED: "{{ flow.id }}-value"
    commands:
      - env
      - ls / > /dev/null && echo "path works"
"#,
            json!({}),
        )
        .await;
    let logs = h.logs(&execution.id).await;
    assert_eq!(execution.state.current, State::Success, "{logs:?}");
    assert!(logs.contains(&"DECLARED=env-value".to_owned()), "{logs:?}");
    assert!(logs.contains(&"path works".to_owned()), "{logs:?}");
    // Nothing of this (test) process's environment reaches the command but
    // the allow-list and what the shell sets itself.
    let allowed = [
        "PATH", "HOME", "LANG", "TZ", "DECLARED", "PWD", "SHLVL", "_", "OLDPWD",
    ];
    for line in logs.iter().filter(|l| l.contains('=')) {
        let name = line.split('=').next().unwrap_or_default();
        assert!(
            allowed.contains(&name),
            "the command inherited {name}: {logs:?}"
        );
    }
    assert!(
        std::env::vars().any(|(name, _)| !allowed.contains(&name.as_str())),
        "this process has variables that could have leaked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_runs_are_limited_to_the_configured_concurrency() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lock = dir.path().join("lock");
    let h = Harness::with_config(EngineConfig {
        max_task_runs: 1,
        ..EngineConfig::default()
    })
    .await;
    // Each task takes a lock directory (mkdir is atomic) and fails if
    // another task holds it: with one slot they never overlap.
    let task = |id: &str| {
        format!(
            r#"      - id: {id}
        type: io.kestra.plugin.scripts.shell.Commands
        commands:
          - mkdir {lock} || exit 7
          - sleep 0.3
          - rmdir {lock}
"#,
            lock = lock.display()
        )
    };
    let source = format!(
        "id: parallel\nnamespace: tests\ntasks:\n  - id: all\n    type: io.kestra.plugin.core.flow.Parallel\n    tasks:\n{}{}{}",
        task("a"),
        task("b"),
        task("c")
    );
    let execution = h.run(&source, json!({})).await;
    let logs = h.logs(&execution.id).await;
    assert_eq!(execution.state.current, State::Success, "{logs:?}");

    // The same flow with room for all three overlaps (so the test can tell).
    let h = Harness::new().await;
    let execution = h.run(&source, json!({})).await;
    assert_eq!(execution.state.current, State::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retention_sweep_deletes_old_ended_executions_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite:{}", dir.path().join("engine.db").display());
    let store = Store::connect(&url).await.expect("store");
    let ended = |id: &str| {
        let mut e = Execution::new(
            id.into(),
            "tests".into(),
            "old".into(),
            1,
            Vec::new(),
            Map::new(),
            jiff::Timestamp::now(),
        );
        e.state.set(State::Running, jiff::Timestamp::now());
        e.state.set(State::Success, jiff::Timestamp::now());
        e
    };
    for id in ["old-1", "old-2", "recent"] {
        store.insert_execution(&ended(id)).await.expect("insert");
    }
    // Ended 10 days ago.
    let pool = sqlx::SqlitePool::connect(&url).await.expect("connect");
    let then = jiff::Timestamp::now().as_microsecond() - 10 * 24 * 3600 * 1_000_000;
    sqlx::query("UPDATE executions SET created_at = ?1, updated_at = ?1 WHERE id LIKE 'old-%'")
        .bind(then)
        .execute(&pool)
        .await
        .expect("backdate");
    pool.close().await;
    // Their files go with them.
    let storage = atoll_instance::storage::Storage::dir(dir.path().join("storage"));
    let file = |id: &str| {
        atoll_instance::storage::StoragePath::execution("tests", "old", id)
            .and_then(|p| p.join("inputs/f/data.txt"))
            .expect("path")
    };
    for id in ["old-1", "recent"] {
        storage
            .put(&file(id), bytes::Bytes::from_static(b"x"))
            .await
            .expect("put");
    }

    let engine = Engine::new(
        store.clone(),
        EngineConfig {
            retention: Some(Duration::from_secs(7 * 24 * 3600)),
            storage: storage.clone(),
            ..EngineConfig::default()
        },
    );
    let shutdown = CancellationToken::new();
    let running = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { engine.run(shutdown).await }
    });
    atoll_testkit::eventually("old executions deleted", Duration::from_secs(10), || {
        let store = store.clone();
        async move {
            let old = store.get_execution("old-1").await.expect("get").is_none()
                && store.get_execution("old-2").await.expect("get").is_none();
            old.then_some(())
        }
    })
    .await;
    assert!(store.get_execution("recent").await.expect("get").is_some());
    atoll_testkit::eventually("old files deleted", Duration::from_secs(10), || {
        let storage = storage.clone();
        let old = file("old-1");
        async move { storage.get(&old).await.is_err().then_some(()) }
    })
    .await;
    assert!(
        storage.get(&file("recent")).await.is_ok(),
        "recent files kept"
    );
    shutdown.cancel();
    running.await.expect("engine stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assert_tasks_fail_on_a_falsy_condition_and_log_which() {
    let h = Harness::new().await;
    let source = r#"
id: check
namespace: tests
inputs:
  - {id: param, type: STRING}
tasks:
  - id: assert
    type: io.kestra.plugin.core.execution.Assert
    conditions:
      - "{{ inputs.param == 'ok' }}"
      - "{{ 1 + 1 == 2 }}"
    errorMessage: "param was {{ inputs.param }}"
"#;
    let passed = h.run(source, json!({"param": "ok"})).await;
    assert_eq!(passed.state.current, State::Success);

    let failed = h.run(source, json!({"param": "ko"})).await;
    assert_eq!(failed.state.current, State::Failed);
    let run = failed
        .task_run_list
        .iter()
        .find(|r| r.task_id == "assert")
        .expect("the assert ran");
    let error = run.attempts.last().and_then(|a| a.error.clone());
    assert_eq!(error.as_deref(), Some("1 assertion failed!\nparam was ko"));
    let logs = h.logs(&failed.id).await;
    assert!(
        logs.iter()
            .any(|l| l == "Assertion `{{ inputs.param == 'ok' }}` failed!"),
        "{logs:?}"
    );
}
