//! Triggers and waiting executions over real HTTP on loopback: schedules
//! that fire exactly once per tick across a restart and across two
//! replicas on one PostgreSQL, webhooks, the trigger listing, and paused
//! executions resumed through the API (across a restart too), and ended
//! executions restarted, replayed, searched by label and deleted; a
//! namespace exported to a directory and imported back.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use atoll_instance::config::{AuthMode, Config};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

struct Instance {
    base: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Instance {
    async fn start(data_dir: &std::path::Path, database_url: &str) -> Instance {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let config = Config {
            tenant: "acme".into(),
            listen: addr,
            data_dir: data_dir.to_owned(),
            database_url: database_url.to_owned(),
            public_url: None,
            auth: AuthMode::Disabled { explicit: true },
            lease: Duration::from_secs(5),
            ..Config::default()
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                atoll_instance::server::serve(config, listener, shutdown)
                    .await
                    .expect("instance ran");
            }
        });
        let instance = Instance {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            shutdown,
            task: Some(task),
        };
        eventually("the instance is ready", Duration::from_secs(30), || async {
            instance
                .http
                .get(instance.url("/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK)
        })
        .await;
        instance
    }

    /// Stops the instance and waits until it has handed its work back.
    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("instance stopped");
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn put_flow(&self, namespace: &str, id: &str, source: &str) {
        let exists = self
            .http
            .get(self.url(&format!("/api/v1/flows/{namespace}/{id}")))
            .send()
            .await
            .expect("get flow")
            .status()
            == StatusCode::OK;
        let request = if exists {
            self.http
                .put(self.url(&format!("/api/v1/flows/{namespace}/{id}")))
        } else {
            self.http.post(self.url("/api/v1/flows"))
        };
        let response = request
            .header("content-type", "application/x-yaml")
            .body(source.to_owned())
            .send()
            .await
            .expect("save flow");
        let status = response.status();
        assert!(status.is_success(), "{status}: {:?}", response.text().await);
    }

    async fn get(&self, path: &str) -> Value {
        self.http
            .get(self.url(path))
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json")
    }

    async fn executions(&self, flow_id: &str) -> Vec<Value> {
        let found = self
            .get(&format!(
                "/api/v1/executions/search?flowId={flow_id}&size=500"
            ))
            .await;
        found["results"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Waits until `condition` holds; fails the test after `timeout`.
async fn eventually<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    atoll_testkit::eventually(what, timeout, || {
        let holds = condition();
        async move { holds.await.then_some(()) }
    })
    .await;
}

fn every_second(id: &str, disabled: bool) -> String {
    format!(
        r#"
id: {id}
namespace: sched.test
disabled: {disabled}
tasks:
  - id: when
    type: io.kestra.plugin.core.debug.Return
    format: "{{{{ trigger.date }}}}"
triggers:
  - id: every-second
    type: io.kestra.plugin.core.trigger.Schedule
    cron: "* * * * * *"
    withSeconds: true
"#
    )
}

/// The tick (whole seconds) each execution was started for.
fn ticks(executions: &[Value]) -> Vec<i64> {
    let mut ticks: Vec<i64> = executions
        .iter()
        .map(|e| {
            let date = e["trigger"]["date"].as_str().expect("trigger.date");
            let ts: jiff::Timestamp = date.parse().expect("a timestamp");
            assert_eq!(ts.subsec_nanosecond(), 0, "ticks fall on whole seconds");
            ts.as_second()
        })
        .collect();
    ticks.sort_unstable();
    ticks
}

/// Every tick from the first to the last, each exactly once.
fn assert_once_per_tick(ticks: &[i64]) {
    let unique: BTreeSet<i64> = ticks.iter().copied().collect();
    assert_eq!(unique.len(), ticks.len(), "a tick fired twice: {ticks:?}");
    let (first, last) = (ticks[0], ticks[ticks.len() - 1]);
    assert_eq!(
        ticks.len() as i64,
        last - first + 1,
        "a tick is missing between {first} and {last}: {ticks:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_fires_once_per_tick_across_a_restart_and_stops_when_disabled() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite:{}", dir.path().join("sched.db").display());
    let first = Instance::start(dir.path(), &url).await;
    first
        .put_flow("sched.test", "tick", &every_second("tick", false))
        .await;
    eventually("three ticks fired", Duration::from_secs(20), || async {
        first.executions("tick").await.len() >= 3
    })
    .await;
    let listed = first
        .get("/api/v1/triggers/search?namespace=sched.test")
        .await;
    let trigger = &listed["results"][0];
    assert_eq!(trigger["triggerId"], "every-second");
    assert_eq!(trigger["disabled"], false);
    assert!(trigger["nextExecutionDate"].is_string(), "{listed}");
    assert!(trigger["executionId"].is_string(), "{listed}");
    let before_restart = ticks(&first.executions("tick").await);
    first.stop().await;

    // Restarted on the same database.
    let second = Instance::start(dir.path(), &url).await;
    let last_before = *before_restart.last().expect("ticks before the restart");
    eventually(
        "three more ticks fired",
        Duration::from_secs(20),
        || async {
            ticks(&second.executions("tick").await)
                .last()
                .is_some_and(|t| *t >= last_before + 3)
        },
    )
    .await;
    let all = second.executions("tick").await;
    assert_once_per_tick(&ticks(&all));
    eventually(
        "every execution succeeded",
        Duration::from_secs(20),
        || async {
            second
                .executions("tick")
                .await
                .iter()
                .filter(|e| ticks(std::slice::from_ref(e))[0] <= last_before + 3)
                .all(|e| e["state"]["current"] == "SUCCESS")
        },
    )
    .await;

    // Disabled: no tick fires, while another schedule keeps ticking.
    second
        .put_flow("sched.test", "tick", &every_second("tick", true))
        .await;
    eventually(
        "the trigger shows disabled",
        Duration::from_secs(10),
        || async {
            let listed = second
                .get("/api/v1/triggers/search?namespace=sched.test")
                .await;
            listed["results"][0]["disabled"] == true
        },
    )
    .await;
    let count_when_disabled = second.executions("tick").await.len();
    second
        .put_flow("sched.test", "clock", &every_second("clock", false))
        .await;
    eventually(
        "the clock ticked three times",
        Duration::from_secs(20),
        || async { second.executions("clock").await.len() >= 3 },
    )
    .await;
    // One tick may have been in flight when the flow was disabled.
    assert!(second.executions("tick").await.len() <= count_when_disabled + 1);
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_one_postgres_never_both_fire_a_tick() {
    let postgres = atoll_testkit::pg::TestPostgres::start();
    let url = postgres.database_url("replicas");
    let dir = tempfile::tempdir().expect("temp dir");
    let a = Instance::start(dir.path(), &url).await;
    let b = Instance::start(dir.path(), &url).await;
    a.put_flow("sched.test", "tick", &every_second("tick", false))
        .await;
    eventually("eight ticks fired", Duration::from_secs(30), || async {
        b.executions("tick").await.len() >= 8
    })
    .await;
    let all = b.executions("tick").await;
    assert_once_per_tick(&ticks(&all));
    a.stop().await;
    b.stop().await;
}

const HOOKED: &str = r#"
id: hooked
namespace: hook.test
labels:
  team: data
inputs:
  - {id: who, type: STRING, defaults: nobody}
tasks:
  - id: echo
    type: io.kestra.plugin.core.debug.Return
    format: "{{ inputs.who }} {{ trigger.body.a ?? '-' }} {{ trigger.parameters.age[1] ?? '-' }} {{ trigger.headers['x-token'][0] ?? '-' }}"
outputs:
  - {id: said, type: STRING, value: "{{ outputs.echo.value }}"}
triggers:
  - id: hook
    type: io.kestra.plugin.core.trigger.Webhook
    key: a-secret-key
    inputs: {who: "{{ trigger.body.who }}"}
  - id: waiting
    type: io.kestra.plugin.core.trigger.Webhook
    key: wait-for-it-key
    wait: true
    returnOutputs: true
  - id: off
    type: io.kestra.plugin.core.trigger.Webhook
    key: switched-off-key
    disabled: true
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_start_executions_only_with_the_right_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite:{}", dir.path().join("hooks.db").display());
    let instance = Instance::start(dir.path(), &url).await;
    instance.put_flow("hook.test", "hooked", HOOKED).await;
    let hook = |path: &str| instance.url(&format!("/api/v1/executions/webhook/{path}"));

    let response = instance
        .http
        .post(hook("hook.test/hooked/a-secret-key?age=12&age=13"))
        .header("x-token", "t0k")
        .header("authorization", "Bearer not-for-the-flow")
        .json(&serde_json::json!({"a": 1, "who": "alice"}))
        .send()
        .await
        .expect("webhook");
    assert_eq!(response.status(), StatusCode::OK);
    let created: Value = response.json().await.expect("json");
    assert_eq!(created["labels"][0]["key"], "team");
    assert!(created["trigger"]["headers"].get("authorization").is_none());
    let id = created["id"].as_str().expect("id").to_owned();
    eventually(
        "the webhook execution succeeded",
        Duration::from_secs(20),
        || async {
            instance.get(&format!("/api/v1/executions/{id}")).await["state"]["current"] == "SUCCESS"
        },
    )
    .await;
    let done = instance.get(&format!("/api/v1/executions/{id}")).await;
    assert_eq!(done["outputs"]["said"], "alice 1 13 t0k");

    // wait + returnOutputs answer with the finished execution's outputs.
    let response = instance
        .http
        .get(hook("hook.test/hooked/wait-for-it-key"))
        .send()
        .await
        .expect("webhook");
    assert_eq!(response.status(), StatusCode::OK);
    let outputs: Value = response.json().await.expect("json");
    assert_eq!(outputs["said"], "nobody - - -");

    // Wrong key, disabled trigger, unknown flow: the same 404, nothing started.
    let before = instance.executions("hooked").await.len();
    let mut answers = Vec::new();
    for path in [
        "hook.test/hooked/a-secret-kez",
        "hook.test/hooked/a-secret-key-and-more",
        "hook.test/hooked/switched-off-key",
        "hook.test/nope/a-secret-key",
    ] {
        let response = instance
            .http
            .post(hook(path))
            .send()
            .await
            .expect("webhook");
        answers.push((response.status(), response.text().await.expect("body")));
    }
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    assert_eq!(answers[0].0, StatusCode::NOT_FOUND);
    assert_eq!(instance.executions("hooked").await.len(), before);

    let listed = instance
        .get("/api/v1/triggers/search?namespace=hook.test")
        .await;
    let hook_view = listed["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|t| t["triggerId"] == "hook")
        .cloned()
        .expect("the webhook trigger is listed");
    assert_eq!(hook_view["executionId"], id.as_str());
    assert!(hook_view.get("nextExecutionDate").is_none());
    instance.stop().await;
}

const APPROVAL: &str = r#"
id: approval
namespace: pause.test
tasks:
  - id: wait
    type: io.kestra.plugin.core.flow.Pause
    onResume:
      - {id: approver, type: STRING}
      - {id: note, type: STRING, required: false}
  - id: approved
    type: io.kestra.plugin.core.debug.Return
    format: "{{ outputs.wait.onResume.approver }} {{ outputs.wait.onResume.note ?? '-' }}"
"#;

async fn state_of(instance: &Instance, id: &str) -> Value {
    instance.get(&format!("/api/v1/executions/{id}")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_survives_a_restart_and_resumes_through_the_api() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite:{}", dir.path().join("pause.db").display());
    let first = Instance::start(dir.path(), &url).await;
    first.put_flow("pause.test", "approval", APPROVAL).await;
    let created: Value = first
        .http
        .post(first.url("/api/v1/executions/pause.test/approval"))
        .send()
        .await
        .expect("start")
        .json()
        .await
        .expect("json");
    let id = created["id"].as_str().expect("id").to_owned();
    eventually(
        "the execution is paused",
        Duration::from_secs(20),
        || async { state_of(&first, &id).await["state"]["current"] == "PAUSED" },
    )
    .await;
    first.stop().await;

    let second = Instance::start(dir.path(), &url).await;
    let resume = second.url(&format!("/api/v1/executions/{id}/resume"));
    // A required onResume input is missing: refused, still paused.
    let refused = second.http.post(&resume).send().await.expect("resume");
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert_eq!(state_of(&second, &id).await["state"]["current"], "PAUSED");
    let resumed = second
        .http
        .post(&resume)
        .multipart(reqwest::multipart::Form::new().text("approver", "alice"))
        .send()
        .await
        .expect("resume");
    assert_eq!(resumed.status(), StatusCode::OK);
    eventually(
        "the resumed execution succeeded",
        Duration::from_secs(20),
        || async { state_of(&second, &id).await["state"]["current"] == "SUCCESS" },
    )
    .await;
    let done = state_of(&second, &id).await;
    let approved = done["taskRunList"]
        .as_array()
        .expect("task runs")
        .iter()
        .find(|r| r["taskId"] == "approved")
        .expect("approved ran")
        .clone();
    assert_eq!(approved["outputs"]["value"], "alice -");
    let states: Vec<&str> = done["state"]["histories"]
        .as_array()
        .expect("histories")
        .iter()
        .filter_map(|h| h["state"].as_str())
        .collect();
    assert!(states.contains(&"PAUSED"), "{states:?}");
    // Resuming twice is a conflict.
    let again = second.http.post(&resume).send().await.expect("resume");
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let unknown = second
        .http
        .post(second.url("/api/v1/executions/nope/resume"))
        .send()
        .await
        .expect("resume");
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    second.stop().await;
}

fn flaky(marker: &std::path::Path) -> String {
    format!(
        r#"
id: flaky
namespace: exec.test
tasks:
  - id: first
    type: io.kestra.plugin.core.debug.Return
    format: one
  - id: flaky
    type: io.kestra.plugin.scripts.shell.Commands
    commands:
      - "if [ -f {marker} ]; then echo ok; else touch {marker}; exit 1; fi"
  - id: last
    type: io.kestra.plugin.core.debug.Return
    format: "{{{{ outputs.first.value }}}}-{{{{ outputs.flaky.exitCode }}}}"
errors:
  - id: on-error
    type: io.kestra.plugin.core.log.Log
    message: failed
"#,
        marker = marker.display()
    )
}

fn run<'a>(execution: &'a Value, task: &str) -> &'a Value {
    execution["taskRunList"]
        .as_array()
        .expect("task runs")
        .iter()
        .find(|r| r["taskId"] == task)
        .unwrap_or_else(|| panic!("no run of {task} in {execution}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_restart_replay_search_by_label_and_delete() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite:{}", dir.path().join("exec.db").display());
    let instance = Instance::start(dir.path(), &url).await;
    instance
        .put_flow("exec.test", "flaky", &flaky(&dir.path().join("marker")))
        .await;
    let post = |path: &str| instance.http.post(instance.url(path));
    let created: Value = post("/api/v1/executions/exec.test/flaky?labels=team:data,run:1")
        .send()
        .await
        .expect("start")
        .json()
        .await
        .expect("json");
    let id = created["id"].as_str().expect("id").to_owned();
    eventually("the first run failed", Duration::from_secs(20), || async {
        state_of(&instance, &id).await["state"]["current"] == "FAILED"
    })
    .await;
    let failed = state_of(&instance, &id).await;
    let first_run = run(&failed, "first")["id"].clone();
    run(&failed, "on-error");

    // Restart: only the failed task runs again (a second attempt).
    let restarted = post(&format!("/api/v1/executions/{id}/restart"))
        .send()
        .await
        .expect("restart");
    assert_eq!(restarted.status(), StatusCode::OK);
    eventually(
        "the restarted execution succeeded",
        Duration::from_secs(20),
        || async { state_of(&instance, &id).await["state"]["current"] == "SUCCESS" },
    )
    .await;
    let done = state_of(&instance, &id).await;
    assert_eq!(run(&done, "first")["id"], first_run);
    assert_eq!(
        run(&done, "first")["attempts"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(
        run(&done, "flaky")["attempts"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(run(&done, "last")["outputs"]["value"], "one-0");
    assert!(
        done["taskRunList"]
            .as_array()
            .expect("runs")
            .iter()
            .all(|r| r["taskId"] != "on-error"),
        "error handlers of the failed run are dropped"
    );
    let again = post(&format!("/api/v1/executions/{id}/restart"))
        .send()
        .await
        .expect("restart");
    assert_eq!(
        again.status(),
        StatusCode::CONFLICT,
        "only failed executions restart"
    );

    // Replay from `last`: a new execution that keeps what came before it.
    let last_run = run(&done, "last")["id"].as_str().expect("id").to_owned();
    let replayed: Value = post(&format!(
        "/api/v1/executions/{id}/replay?taskRunId={last_run}"
    ))
    .send()
    .await
    .expect("replay")
    .json()
    .await
    .expect("json");
    let replay_id = replayed["id"].as_str().expect("id").to_owned();
    assert_ne!(replay_id, id);
    eventually("the replay succeeded", Duration::from_secs(20), || async {
        state_of(&instance, &replay_id).await["state"]["current"] == "SUCCESS"
    })
    .await;
    let replay = state_of(&instance, &replay_id).await;
    assert_eq!(run(&replay, "first")["id"], first_run);
    assert_ne!(run(&replay, "last")["id"], last_run.as_str());

    // Labels given at start are searchable (all must match).
    let search = |labels: &'static str| {
        let instance = &instance;
        async move {
            instance
                .get(&format!("/api/v1/executions/search?labels={labels}"))
                .await["total"]
                .clone()
        }
    };
    assert_eq!(search("team:data").await, 2);
    assert_eq!(search("team:data&labels=run:1").await, 2);
    assert_eq!(search("team:other").await, 0);

    // Delete: ended executions only.
    let deleted = instance
        .http
        .delete(instance.url(&format!("/api/v1/executions/{replay_id}")))
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let gone = instance
        .http
        .get(instance.url(&format!("/api/v1/executions/{replay_id}")))
        .send()
        .await
        .expect("get");
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    instance.put_flow("pause.test", "approval", APPROVAL).await;
    let paused: Value = post("/api/v1/executions/pause.test/approval")
        .send()
        .await
        .expect("start")
        .json()
        .await
        .expect("json");
    let paused_id = paused["id"].as_str().expect("id").to_owned();
    let running = instance
        .http
        .delete(instance.url(&format!("/api/v1/executions/{paused_id}")))
        .send()
        .await
        .expect("delete");
    assert_eq!(running.status(), StatusCode::CONFLICT);
    instance.stop().await;
}

fn simple_flow(namespace: &str, id: &str) -> String {
    format!(
        "id: {id}\nnamespace: {namespace}\ntasks:\n  - id: hello\n    type: io.kestra.plugin.core.log.Log\n    message: hello from {id}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_exports_to_a_directory_and_imports_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite:{}", dir.path().join("io.db").display());
    let instance = Instance::start(dir.path(), &url).await;
    for (namespace, id) in [
        ("git.team", "one"),
        ("git.team.sub", "two"),
        ("other", "three"),
    ] {
        instance
            .put_flow(namespace, id, &simple_flow(namespace, id))
            .await;
    }
    let response = instance
        .http
        .get(instance.url("/api/v1/flows/export/by-query?namespace=git.team"))
        .send()
        .await
        .expect("export");
    assert_eq!(response.status(), StatusCode::OK);
    let tar = response.bytes().await.expect("archive");

    // Unpacked with the system's tar into a directory, as a team would.
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).expect("dir");
    std::fs::write(dir.path().join("flows.tar"), &tar).expect("write");
    let status = std::process::Command::new("tar")
        .arg("-xf")
        .arg(dir.path().join("flows.tar"))
        .arg("-C")
        .arg(&repo)
        .status()
        .expect("run tar");
    assert!(status.success());
    let one = std::fs::read_to_string(repo.join("git.team/one.yml")).expect("one.yml");
    assert_eq!(one, simple_flow("git.team", "one"));
    assert!(repo.join("git.team.sub/two.yml").is_file());
    assert!(!repo.join("other").exists());

    // Edited in the directory, packed again with tar, imported.
    std::fs::write(
        repo.join("git.team/one.yml"),
        simple_flow("git.team", "one").replace("hello from", "hi from"),
    )
    .expect("edit");
    let status = std::process::Command::new("tar")
        .arg("-cf")
        .arg(dir.path().join("edited.tar"))
        .arg("-C")
        .arg(&repo)
        .arg(".")
        .status()
        .expect("run tar");
    assert!(status.success());
    let edited = std::fs::read(dir.path().join("edited.tar")).expect("read");
    let response = instance
        .http
        .post(instance.url("/api/v1/flows/import"))
        .header("content-type", "application/x-tar")
        .body(edited)
        .send()
        .await
        .expect("import");
    assert_eq!(response.status(), StatusCode::OK);
    let imported: Value = response.json().await.expect("json");
    assert_eq!(imported["total"], 2);
    let one = instance.get("/api/v1/flows/git.team/one").await;
    assert_eq!(one["revision"], 2);
    assert!(
        one["source"]
            .as_str()
            .expect("source")
            .contains("hi from one")
    );
    let two = instance.get("/api/v1/flows/git.team.sub/two").await;
    assert_eq!(two["revision"], 1, "an unchanged flow keeps its revision");

    // One bad flow in a multi-document YAML: nothing is imported.
    let mixed = format!(
        "{}---\nid: broken\nnamespace: git.team\ntasks: []\n",
        simple_flow("git.team", "four")
    );
    let response = instance
        .http
        .post(instance.url("/api/v1/flows/import"))
        .header("content-type", "application/x-yaml")
        .body(mixed)
        .send()
        .await
        .expect("import");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let refused: Value = response.json().await.expect("json");
    assert!(
        refused["details"][0]["file"].as_str().is_some(),
        "{refused}"
    );
    let four = instance
        .http
        .get(instance.url("/api/v1/flows/git.team/four"))
        .send()
        .await
        .expect("get");
    assert_eq!(four.status(), StatusCode::NOT_FOUND);
    instance.stop().await;
}
