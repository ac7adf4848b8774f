//! Kestra's script tasks on the `Process` runner, with real `sh` and
//! `python3` processes: Kestra's documented examples (a Python script that
//! reads an input file and writes an output file, shell commands setting
//! outputs with `::{...}::`), files in and out of the internal storage,
//! namespace files, and what a script may not do or see.

use std::time::Duration;

use atoll_instance::engine::{Engine, EngineConfig};
use atoll_instance::execution::{Execution, State};
use atoll_instance::runner::{Runners, TaskServices};
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
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite:{}", dir.path().join("engine.db").display());
        let store = atoll_instance::store::Store::connect(&url)
            .await
            .expect("store");
        let storage = Storage::dir(dir.path().join("storage"));
        let config = EngineConfig {
            storage: storage.clone(),
            tasks: TaskServices {
                settings: Default::default(),
                runners: Runners::default(),
            },
            ..EngineConfig::default()
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
