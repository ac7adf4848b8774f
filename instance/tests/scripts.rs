//! Kestra's script tasks on the `Process` runner, with real `sh` and
//! `python3` processes: Kestra's documented examples (a Python script that
//! reads an input file and writes an output file, shell commands setting
//! outputs with `::{...}::`), files in and out of the internal storage,
//! namespace files, and what a script may not do or see.

use std::sync::Arc;
use std::time::Duration;

use atoll_instance::config::{RunnerKind, TaskSettings};
use atoll_instance::engine::{Engine, EngineConfig};
use atoll_instance::execution::{Execution, State};
use atoll_instance::runner::{
    Lines, RunFuture, Runners, ScriptJob, ScriptOutcome, ScriptRunner, Stream, TaskServices,
};
use atoll_instance::storage::{Storage, StoragePath};
use bytes::Bytes;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

struct Harness {
    engine: Engine,
    storage: Storage,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn new() -> Harness {
        Harness::with(EngineConfig::default()).await
    }

    /// An engine with `config`, on a fresh database and storage.
    async fn with(config: EngineConfig) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite:{}", dir.path().join("engine.db").display());
        let store = atoll_instance::store::Store::connect(&url)
            .await
            .expect("store");
        let storage = Storage::dir(dir.path().join("storage"));
        let config = EngineConfig {
            storage: storage.clone(),
            ..config
        };
        let engine = Engine::new(store, config);
        let shutdown = CancellationToken::new();
        tokio::spawn({
            let engine = engine.clone();
            let shutdown = shutdown.clone();
            async move { engine.run(shutdown).await }
        });
        Harness {
            engine,
            storage,
            shutdown,
            _dir: dir,
        }
    }

    async fn start(&self, source: &str) -> Execution {
        let flow = self.engine.flows().save(source).await.expect("save");
        self.engine
            .start_execution(&flow.namespace, &flow.id, &Map::new(), Vec::new(), None)
            .await
            .expect("start")
    }

    async fn run(&self, source: &str) -> Execution {
        let started = self.start(source).await;
        self.engine
            .wait(&started.id, Duration::from_secs(60))
            .await
            .expect("finished")
    }

    /// `(level, message)` of each log line.
    async fn logs(&self, id: &str) -> Vec<(String, String)> {
        let logs = self.engine.logs(id, 0, 1000).await.expect("logs");
        logs.into_iter().map(|l| (l.level, l.message)).collect()
    }

    async fn messages(&self, id: &str) -> Vec<String> {
        self.logs(id).await.into_iter().map(|(_, m)| m).collect()
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

fn run_id(execution: &Execution, task: &str) -> String {
    execution
        .task_run_list
        .iter()
        .find(|r| r.task_id == task)
        .map(|r| r.id.clone())
        .expect("task run")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_script_reads_an_input_file_and_writes_an_output_file() {
    let h = Harness::new().await;
    let execution = h
        .run(
            r#"
id: python_files
namespace: company.team
tasks:
  - id: py
    type: io.kestra.plugin.scripts.python.Script
    taskRunner:
      type: io.kestra.plugin.core.runner.Process
    inputFiles:
      data.json: |
        {"status": "OK", "orders": [3, 4]}
    outputFiles:
      - "*.csv"
    script: |
      import json
      from kestra import Kestra
      data = json.load(open("data.json"))
      with open("orders.csv", "w") as f:
          f.write("order\n" + "\n".join(str(o) for o in data["orders"]) + "\n")
      print(f"status {data['status']}")
      Kestra.outputs({"count": len(data["orders"])})
  - id: shell
    type: io.kestra.plugin.scripts.shell.Commands
    inputFiles:
      orders.csv: "{{ outputs.py.outputFiles['orders.csv'] }}"
    commands:
      - wc -l < {{ workingDir }}/orders.csv
  - id: read_uri
    type: io.kestra.plugin.scripts.python.Script
    script: |
      with open("{{ outputs.py.outputFiles['orders.csv'] }}") as f:
          print("rows", len(f.read().splitlines()))
"#,
        )
        .await;
    assert_eq!(execution.state.current, State::Success, "{execution:?}");
    let py = outputs(&execution, "py");
    assert_eq!(py["exitCode"], 0);
    assert_eq!(py["vars"], json!({"count": 2}));
    let uri = py["outputFiles"]["orders.csv"].as_str().expect("uri");
    let expected = StoragePath::task_run(
        "company.team",
        "python_files",
        &execution.id,
        "py",
        &run_id(&execution, "py"),
    )
    .and_then(|p| p.join("orders.csv"))
    .expect("path");
    assert_eq!(uri, expected.uri());
    assert_eq!(
        py["outputFiles"].as_object().map(Map::len),
        Some(1),
        "only the matching file, not the script's own: {py}"
    );
    let content = h.storage.get(&expected).await.expect("stored");
    assert_eq!(content, Bytes::from_static(b"order\n3\n4\n"));
    let logs = h.messages(&execution.id).await;
    assert!(logs.contains(&"status OK".to_owned()), "{logs:?}");
    // The next task read the stored file as an input file.
    assert!(logs.contains(&"3".to_owned()), "{logs:?}");
    // A kestra:// URI in a script names a local copy of the file.
    assert!(logs.contains(&"rows 3".to_owned()), "{logs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_outputs_are_read_by_a_later_task() {
    let h = Harness::new().await;
    let execution = h
        .run(
            r#"
id: shell_outputs
namespace: company.team
tasks:
  - id: sh
    type: io.kestra.plugin.scripts.shell.Script
    beforeCommands:
      - echo prepared > marker
    script: |
      echo '::{"outputs":{"greeting":"hello","n":3}}::'
      echo "before: $(cat marker)"
  - id: use
    type: io.kestra.plugin.core.debug.Return
    format: "{{ outputs.sh.vars.greeting }} x{{ outputs.sh.vars.n }}"
"#,
        )
        .await;
    assert_eq!(execution.state.current, State::Success);
    assert_eq!(outputs(&execution, "use")["value"], "hello x3");
    let logs = h.messages(&execution.id).await;
    assert!(logs.contains(&"before: prepared".to_owned()), "{logs:?}");
    assert!(
        !logs.iter().any(|l| l.contains("::")),
        "outputs lines are not logged: {logs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_script_fails_with_its_exit_code_only() {
    let h = Harness::new().await;
    let execution = h
        .run(
            r#"
id: failing
namespace: company.team
tasks:
  - id: py
    type: io.kestra.plugin.scripts.python.Commands
    inputFiles:
      main.py: |
        import sys
        print("password=hunter2", file=sys.stderr)
        sys.exit(3)
    commands:
      - python3 main.py
"#,
        )
        .await;
    assert_eq!(execution.state.current, State::Failed);
    let logs = h.messages(&execution.id).await;
    let failure = logs
        .iter()
        .find(|l| l.contains("exited with code"))
        .expect("the failure is logged");
    assert!(failure.contains("command exited with code 3"), "{failure}");
    assert!(!failure.contains("hunter2"), "{failure}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stderr_is_a_warning_unless_said_otherwise() {
    let h = Harness::new().await;
    let execution = h
        .run(
            r#"
id: stderr
namespace: company.team
tasks:
  - id: warns
    type: io.kestra.plugin.scripts.shell.Commands
    commands: ["echo loud >&2"]
  - id: quiet
    type: io.kestra.plugin.scripts.shell.Commands
    warningOnStdErr: false
    commands: ["echo calm >&2"]
"#,
        )
        .await;
    assert_eq!(execution.state.current, State::Success);
    let logs = h.logs(&execution.id).await;
    let level = |text: &str| {
        logs.iter()
            .find(|(_, m)| m == text)
            .map(|(l, _)| l.clone())
            .unwrap_or_default()
    };
    assert_eq!(level("loud"), "WARN");
    assert_eq!(level("calm"), "INFO");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_sees_only_the_environment_it_declares() {
    // The test process has variables of its own (cargo's): none may leak.
    assert!(std::env::vars().any(|(k, _)| k.starts_with("CARGO")));
    let h = Harness::new().await;
    let execution = h
        .run(
            r#"
id: env
namespace: company.team
tasks:
  - id: sh
    type: io.kestra.plugin.scripts.shell.Commands
    env:
      GREETING: "hello {{ flow.id }}"
    commands:
      - env | cut -d= -f1 | sort | tr '\n' ' '; echo
      - echo "$GREETING"
"#,
        )
        .await;
    assert_eq!(execution.state.current, State::Success);
    let logs = h.messages(&execution.id).await;
    assert!(logs.contains(&"hello env".to_owned()), "{logs:?}");
    let names = logs.first().expect("the variables' names");
    let allowed = [
        "PATH", "HOME", "LANG", "TZ", "PWD", "OLDPWD", "SHLVL", "_", "GREETING",
    ];
    for name in names.split_whitespace() {
        assert!(allowed.contains(&name), "`{name}` leaked: {names}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_file_names_are_refused() {
    let h = Harness::new().await;
    let refused = h
        .engine
        .flows()
        .save(
            r#"
id: hostile
namespace: company.team
tasks:
  - id: sh
    type: io.kestra.plugin.scripts.shell.Commands
    inputFiles:
      ../../escape.txt: boom
    commands: ["true"]
"#,
        )
        .await
        .expect_err("refused at save time");
    assert!(refused.to_string().contains("inputFiles"), "{refused}");
    // A mapping that only appears when rendered is checked before writing.
    let execution = h
        .run(
            r#"
id: hostile_rendered
namespace: company.team
variables:
  files: '{"/tmp/atoll-escape.txt": "boom"}'
tasks:
  - id: sh
    type: io.kestra.plugin.scripts.shell.Commands
    inputFiles: "{{ vars.files }}"
    commands: ["true"]
"#,
        )
        .await;
    assert_eq!(execution.state.current, State::Failed);
    let logs = h.messages(&execution.id).await;
    assert!(
        logs.iter().any(|l| l.contains("must be relative")),
        "{logs:?}"
    );
    assert!(!std::path::Path::new("/tmp/atoll-escape.txt").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_files_are_written_into_the_working_directory() {
    let h = Harness::new().await;
    let folder = StoragePath::namespace_files("company.team").expect("folder");
    for (name, content) in [
        ("scripts/hello.py", "print('hello from a namespace file')"),
        ("notes.txt", "not wanted"),
    ] {
        let path = folder.join(name).expect("path");
        h.storage
            .put(&path, Bytes::from(content))
            .await
            .expect("put");
    }
    let execution = h
        .run(
            r#"
id: ns_files
namespace: company.team
tasks:
  - id: py
    type: io.kestra.plugin.scripts.python.Commands
    namespaceFiles:
      enabled: true
      include: ["**.py"]
    commands:
      - python3 scripts/hello.py
      - test ! -e notes.txt && echo "notes excluded"
"#,
        )
        .await;
    assert_eq!(execution.state.current, State::Success, "{execution:?}");
    let logs = h.messages(&execution.id).await;
    assert!(
        logs.contains(&"hello from a namespace file".to_owned()),
        "{logs:?}"
    );
    assert!(logs.contains(&"notes excluded".to_owned()), "{logs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_without_a_cluster_fails_saying_so() {
    let h = Harness::new().await;
    let execution = h
        .run(
            r#"
id: pod
namespace: company.team
tasks:
  - id: sh
    type: io.kestra.plugin.scripts.shell.Commands
    taskRunner:
      type: io.kestra.plugin.ee.kubernetes.runner.Kubernetes
      resources:
        request: {cpu: 100m, memory: 64Mi}
    commands: ["echo never"]
"#,
        )
        .await;
    assert_eq!(execution.state.current, State::Failed);
    let logs = h.messages(&execution.id).await;
    assert!(
        logs.iter()
            .any(|l| l.contains("Kubernetes task runner is not available")),
        "{logs:?}"
    );
    assert!(!logs.contains(&"never".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_execution_stops_the_script_and_what_it_started() {
    let h = Harness::new().await;
    let started = h
        .start(
            r#"
id: long
namespace: company.team
tasks:
  - id: sh
    type: io.kestra.plugin.scripts.shell.Commands
    commands:
      - sleep 300 &
      - echo "pids $$ $!"
      - wait
"#,
        )
        .await;
    let pids: Vec<i32> =
        atoll_testkit::eventually("the script running", Duration::from_secs(10), || async {
            let logs = h.messages(&started.id).await;
            let line = logs.iter().find_map(|l| l.strip_prefix("pids "))?;
            Some(line.split(' ').filter_map(|p| p.parse().ok()).collect())
        })
        .await;
    assert_eq!(pids.len(), 2);
    assert!(h.engine.kill(&started.id).await.expect("kill"));
    let execution = h
        .engine
        .wait(&started.id, Duration::from_secs(10))
        .await
        .expect("finished");
    assert_eq!(execution.state.current, State::Killed);
    atoll_testkit::eventually("the processes gone", Duration::from_secs(10), || async {
        pids.iter().all(|pid| !alive(*pid)).then_some(())
    })
    .await;
}

/// Whether a process is alive (a zombie is not).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z')
        })
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_runners_are_chosen_per_task() {
    let h = Harness::new().await;
    let refused = h
        .engine
        .flows()
        .save(
            r#"
id: unknown_runner
namespace: company.team
tasks:
  - id: sh
    type: io.kestra.plugin.scripts.shell.Commands
    taskRunner:
      type: io.kestra.plugin.ee.aws.runner.Batch
    commands: ["true"]
"#,
        )
        .await
        .expect_err("an unknown runner is refused");
    assert!(
        refused
            .to_string()
            .contains("io.kestra.plugin.ee.aws.runner.Batch"),
        "{refused}"
    );
    // A Docker task runner, or Kestra's legacy `runner: DOCKER`, means the
    // tenant's default runner (here: a process); `runner: PROCESS` a process.
    let execution = h
        .run(
            r#"
id: runners
namespace: company.team
tasks:
  - id: docker
    type: io.kestra.plugin.scripts.shell.Commands
    taskRunner:
      type: io.kestra.plugin.scripts.runner.docker.Docker
    containerImage: alpine:3
    commands: ["echo docker ran"]
  - id: legacy
    type: io.kestra.plugin.scripts.shell.Commands
    runner: PROCESS
    commands: ["echo legacy ran"]
"#,
        )
        .await;
    assert_eq!(execution.state.current, State::Success);
    let logs = h.messages(&execution.id).await;
    for line in ["docker ran", "legacy ran"] {
        assert!(logs.contains(&line.to_owned()), "{logs:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_script_leaves_running_ends_with_it() {
    let h = Harness::new().await;
    let execution = h
        .run(
            r#"
id: background
namespace: company.team
tasks:
  - id: sh
    type: io.kestra.plugin.scripts.shell.Commands
    timeout: PT30S
    commands:
      - sleep 300 &
      - echo "left $!"
"#,
        )
        .await;
    assert_eq!(execution.state.current, State::Success);
    let logs = h.messages(&execution.id).await;
    let pid: i32 = logs
        .iter()
        .find_map(|l| l.strip_prefix("left ")?.parse().ok())
        .expect("the background pid");
    atoll_testkit::eventually(
        "the background process gone",
        Duration::from_secs(10),
        || async { (!alive(pid)).then_some(()) },
    )
    .await;
}

/// A runner standing in for the Kubernetes one: keeps the jobs it is given,
/// sets an output, writes a line on each stream and gives one output file.
#[derive(Default)]
struct FakePods {
    jobs: std::sync::Mutex<Vec<ScriptJob>>,
}

impl ScriptRunner for FakePods {
    fn run<'a>(&'a self, job: &'a ScriptJob, lines: Lines<'a>) -> RunFuture<'a> {
        Box::pin(async move {
            self.jobs.lock().expect("jobs").push(job.clone());
            lines(
                Stream::Stdout,
                r#"::{"outputs":{"ran":"in a pod"}}::"#.into(),
            );
            lines(Stream::Stderr, "pod stderr".into());
            Ok(ScriptOutcome {
                exit_code: 0,
                output_files: [("out.txt".to_owned(), Bytes::from_static(b"from the pod"))].into(),
            })
        })
    }
}

async fn with_pods(settings: TaskSettings) -> (Harness, Arc<FakePods>) {
    let pods = Arc::new(FakePods::default());
    let h = Harness::with(EngineConfig {
        tasks: TaskServices {
            settings,
            runners: Runners {
                kubernetes: Some(pods.clone()),
            },
        },
        ..EngineConfig::default()
    })
    .await;
    (h, pods)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenants_default_runner_takes_the_job_kestra_would_build() {
    let (h, pods) = with_pods(TaskSettings {
        runner: RunnerKind::Kubernetes,
        resources: [(
            "limits".to_owned(),
            [("memory".to_owned(), "256Mi".to_owned())].into(),
        )]
        .into(),
        timeout: Some(Duration::from_secs(600)),
        ..TaskSettings::default()
    })
    .await;
    let execution = h
        .run(
            r#"
id: pods
namespace: company.team
tasks:
  - id: py
    type: io.kestra.plugin.scripts.python.Script
    env: {MODE: "{{ flow.id }}"}
    outputFiles: ["*.txt"]
    script: print("hi")
  - id: sized
    type: io.kestra.plugin.scripts.shell.Commands
    timeout: PT1M
    containerImage: alpine:3
    taskRunner:
      type: io.kestra.plugin.ee.kubernetes.runner.Kubernetes
      resources: {request: {cpu: 250m}}
    commands: ["echo sized"]
"#,
        )
        .await;
    assert_eq!(execution.state.current, State::Success, "{execution:?}");
    let jobs = pods.jobs.lock().expect("jobs").clone();
    let (py, sized) = (&jobs[0], &jobs[1]);
    assert_eq!(py.image, "python:3.13-slim");
    assert_eq!(py.interpreter, ["/bin/sh", "-c"]);
    assert!(py.script.contains("python3 .script.py"), "{}", py.script);
    assert_eq!(
        py.input_files[".script.py"],
        Bytes::from_static(b"print(\"hi\")")
    );
    assert_eq!(py.env, [("MODE".to_owned(), "pods".to_owned())].into());
    assert_eq!(py.resources["limits"]["memory"], "256Mi");
    assert_eq!(py.timeout, Some(Duration::from_secs(600)));
    assert_eq!(
        (py.namespace.as_str(), py.flow_id.as_str()),
        ("company.team", "pods")
    );
    assert_eq!(
        (py.execution_id.as_str(), py.task_id.as_str()),
        (execution.id.as_str(), "py")
    );
    assert_eq!(py.task_run_id, run_id(&execution, "py"));
    assert_eq!(py.attempt, 1);
    assert_eq!(sized.image, "alpine:3");
    assert_eq!(sized.resources["requests"]["cpu"], "250m");
    assert_eq!(sized.timeout, Some(Duration::from_secs(60)));
    let out = outputs(&execution, "py");
    assert_eq!(out["vars"]["ran"], "in a pod");
    let uri = out["outputFiles"]["out.txt"].as_str().expect("uri");
    let stored = h
        .storage
        .get(&StoragePath::from_uri(uri).expect("path"))
        .await
        .expect("stored");
    assert_eq!(stored, Bytes::from_static(b"from the pod"));
    let logs = h.logs(&execution.id).await;
    assert!(
        logs.contains(&("WARN".to_owned(), "pod stderr".to_owned())),
        "{logs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenants_image_and_allow_list_apply_to_task_pods() {
    let (h, pods) = with_pods(TaskSettings {
        runner: RunnerKind::Kubernetes,
        image: Some("registry.example/team/base:1".into()),
        allowed_images: vec!["registry.example/team/*".into()],
        ..TaskSettings::default()
    })
    .await;
    let execution = h
        .run(
            r#"
id: images
namespace: company.team
tasks:
  - id: default_image
    type: io.kestra.plugin.scripts.shell.Commands
    commands: ["echo default"]
  - id: refused
    type: io.kestra.plugin.scripts.shell.Commands
    containerImage: ubuntu
    commands: ["echo never"]
"#,
        )
        .await;
    assert_eq!(execution.state.current, State::Failed);
    let jobs = pods.jobs.lock().expect("jobs").clone();
    assert_eq!(jobs.len(), 1, "the refused image never reached the runner");
    assert_eq!(jobs[0].image, "registry.example/team/base:1");
    let logs = h.messages(&execution.id).await;
    assert!(
        logs.iter()
            .any(|l| l.contains("image `ubuntu` is not allowed for task pods")),
        "{logs:?}"
    );
}
