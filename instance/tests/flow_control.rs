//! Flow-level control: the concurrency limit (QUEUE, CANCEL, FAIL), Pause
//! and resume, Subflow and Exit, on a real store.

mod support;

use std::time::Duration;

use atoll_instance::engine::{Engine, EngineConfig};
use atoll_instance::execution::{Execution, State};
use atoll_instance::store::Store;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

struct Harness {
    engine: Engine,
    shutdown: CancellationToken,
    runner: Option<tokio::task::JoinHandle<()>>,
}

impl Harness {
    async fn sqlite(dir: &tempfile::TempDir) -> Harness {
        let url = format!("sqlite:{}", dir.path().join("control.db").display());
        Harness::on(&url).await
    }

    async fn on(url: &str) -> Harness {
        let store = Store::connect(url).await.expect("store");
        let engine = Engine::new(store, EngineConfig::default());
        let shutdown = CancellationToken::new();
        let runner = tokio::spawn({
            let engine = engine.clone();
            let shutdown = shutdown.clone();
            async move { engine.run(shutdown).await }
        });
        Harness {
            engine,
            shutdown,
            runner: Some(runner),
        }
    }

    /// Stops the engine and waits until it has handed its work back.
    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(runner) = self.runner.take() {
            runner.await.expect("engine stopped");
        }
    }

    async fn save(&self, source: &str) {
        self.engine.flows().save(source).await.expect("save");
    }

    async fn start(&self, namespace: &str, id: &str, inputs: Value) -> Execution {
        let inputs: Map<String, Value> = inputs.as_object().cloned().unwrap_or_default();
        self.engine
            .start_execution(namespace, id, &inputs, Vec::new(), None)
            .await
            .expect("start")
    }

    async fn finished(&self, id: &str) -> Execution {
        self.engine
            .wait(id, Duration::from_secs(30))
            .await
            .expect("finished")
    }

    async fn get(&self, id: &str) -> Execution {
        self.engine
            .execution(id)
            .await
            .expect("read")
            .expect("exists")
    }

    /// Polls until the execution is in `state`.
    async fn reaches(&self, id: &str, state: State) -> Execution {
        let what = format!("{id} to reach {state:?}");
        atoll_testkit::eventually(&what, Duration::from_secs(30), || async {
            let execution = self.get(id).await;
            (execution.state.current == state).then_some(execution)
        })
        .await
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn states(execution: &Execution) -> Vec<State> {
    execution.state.histories.iter().map(|h| h.state).collect()
}

fn first_time(execution: &Execution, state: State) -> jiff::Timestamp {
    execution
        .state
        .histories
        .iter()
        .find(|h| h.state == state)
        .map(|h| h.date)
        .unwrap_or_else(|| panic!("{} was never {state:?}", execution.id))
}

const QUEUED: &str = r#"
id: one-at-a-time
namespace: control.test
concurrency: {limit: 1, behavior: QUEUE}
inputs:
  - {id: n, type: INT}
tasks:
  - id: first-holds
    type: io.kestra.plugin.core.flow.If
    condition: "{{ inputs.n == 0 }}"
    then:
      - id: hold
        type: io.kestra.plugin.core.flow.Pause
  - id: done
    type: io.kestra.plugin.core.debug.Return
    format: "{{ inputs.n }}"
"#;

async fn five_queued_executions_run_one_after_another(harness: &Harness) {
    harness.save(QUEUED).await;
    // The first execution holds the only slot (paused) until all five exist,
    // so the other four queue however slow the machine is.
    let mut ids = Vec::new();
    for n in 0..5 {
        let execution = harness
            .start("control.test", "one-at-a-time", json!({"n": n}))
            .await;
        let expected = if n == 0 { State::Paused } else { State::Queued };
        harness.reaches(&execution.id, expected).await;
        ids.push(execution.id);
    }
    harness
        .engine
        .resume(&ids[0], &Map::new())
        .await
        .expect("resume the first");
    let mut done = Vec::new();
    for id in &ids {
        done.push(harness.finished(id).await);
    }
    for pair in done.windows(2) {
        let (earlier, later) = (&pair[0], &pair[1]);
        assert_eq!(earlier.state.current, State::Success);
        let ended = earlier.state.end_date.expect("ended");
        let started = first_time(later, State::Running);
        assert!(
            started >= ended,
            "{} started at {started} before {} ended at {ended}",
            later.id,
            earlier.id
        );
    }
    assert_eq!(done[4].state.current, State::Success);
    // All but the first waited in the queue.
    for execution in &done[1..] {
        assert_eq!(
            &states(execution)[..3],
            [State::Created, State::Queued, State::Running],
            "{}",
            execution.id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_limit_one_queues_five_executions_in_order_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let harness = Harness::sqlite(&dir).await;
    five_queued_executions_run_one_after_another(&harness).await;
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_limit_one_queues_five_executions_in_order_on_postgres() {
    let postgres = atoll_testkit::pg::TestPostgres::start();
    let harness = Harness::on(&postgres.database_url("queue")).await;
    five_queued_executions_run_one_after_another(&harness).await;
    harness.stop().await;
}

fn limited(id: &str, behavior: &str) -> String {
    format!(
        r#"
id: {id}
namespace: control.test
concurrency: {{limit: 1, behavior: {behavior}}}
tasks:
  - id: nap
    type: io.kestra.plugin.core.flow.Sleep
    duration: PT1S
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_cancel_and_fail_end_the_extra_execution_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let harness = Harness::sqlite(&dir).await;
    for (behavior, expected) in [("CANCEL", State::Cancelled), ("FAIL", State::Failed)] {
        let id = format!("limited-{}", behavior.to_lowercase());
        harness.save(&limited(&id, behavior)).await;
        let first = harness.start("control.test", &id, json!({})).await;
        harness.reaches(&first.id, State::Running).await;
        let second = harness.start("control.test", &id, json!({})).await;
        let second = harness.finished(&second.id).await;
        assert_eq!(second.state.current, expected, "{behavior}");
        assert!(second.task_run_list.is_empty());
        let first = harness.finished(&first.id).await;
        assert_eq!(first.state.current, State::Success, "{behavior}");
    }
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_executions_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let harness = Harness::sqlite(&dir).await;
    harness.save(&limited("slow-queue", "QUEUE")).await;
    let first = harness.start("control.test", "slow-queue", json!({})).await;
    harness.reaches(&first.id, State::Running).await;
    let second = harness.start("control.test", "slow-queue", json!({})).await;
    harness.reaches(&second.id, State::Queued).await;
    // Only paused executions resume; a queued one is left as it is.
    let refused = harness.engine.resume(&second.id, &Map::new()).await;
    assert!(
        matches!(
            refused,
            Err(atoll_instance::engine::EngineError::NotPaused(_))
        ),
        "{refused:?}"
    );
    harness.stop().await;

    let harness = Harness::sqlite(&dir).await;
    let first = harness.finished(&first.id).await;
    let second = harness.finished(&second.id).await;
    assert_eq!(first.state.current, State::Success);
    assert_eq!(second.state.current, State::Success);
    assert!(first_time(&second, State::Running) >= first.state.end_date.expect("ended"));
    harness.stop().await;
}

const PAUSED: &str = r#"
id: paused
namespace: control.test
tasks:
  - id: wait
    type: io.kestra.plugin.core.flow.Pause
    timeout: PT1H
  - id: after
    type: io.kestra.plugin.core.log.Log
    message: never
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_execution_can_be_killed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let harness = Harness::sqlite(&dir).await;
    harness.save(PAUSED).await;
    let execution = harness.start("control.test", "paused", json!({})).await;
    let paused = harness.reaches(&execution.id, State::Paused).await;
    let wait = &paused.task_run_list[0];
    assert_eq!(wait.state.current, State::Paused);
    assert!(wait.next_attempt_at.is_some(), "the timeout is a timer");
    assert!(harness.engine.kill(&execution.id).await.expect("kill"));
    let killed = harness.finished(&execution.id).await;
    assert_eq!(killed.state.current, State::Killed);
    assert_eq!(killed.task_run_list.len(), 1);
    harness.stop().await;
}

const CHILD: &str = r#"
id: child
namespace: control.test
inputs:
  - {id: fail, type: BOOLEAN}
  - {id: word, type: STRING}
tasks:
  - id: maybe-fail
    type: io.kestra.plugin.core.execution.Fail
    condition: "{{ inputs.fail }}"
  - id: shout
    type: io.kestra.plugin.core.debug.Return
    format: "{{ inputs.word | upper }}"
outputs:
  - {id: result, type: STRING, value: "{{ outputs.shout.value }}"}
"#;

fn parent(id: &str, transmit_failed: bool, fail: bool) -> String {
    format!(
        r#"
id: {id}
namespace: control.test
labels: {{team: ops}}
tasks:
  - id: call
    type: io.kestra.plugin.core.flow.Subflow
    namespace: control.test
    flowId: child
    inheritLabels: true
    transmitFailed: {transmit_failed}
    inputs:
      fail: {fail}
      word: "{{{{ flow.id }}}}"
  - id: use
    type: io.kestra.plugin.core.debug.Return
    format: "{{{{ outputs.call.outputs.result ?? 'none' }}}} {{{{ outputs.call.state }}}}"
"#
    )
}

fn run_of<'a>(execution: &'a Execution, task: &str) -> &'a atoll_instance::execution::TaskRun {
    execution
        .task_run_list
        .iter()
        .find(|r| r.task_id == task)
        .unwrap_or_else(|| panic!("no run of {task}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subflows_pass_inputs_and_outputs_and_transmit_failures() {
    let dir = tempfile::tempdir().expect("temp dir");
    let harness = Harness::sqlite(&dir).await;
    harness.save(CHILD).await;

    // Outputs of the child are usable by the parent.
    harness.save(&parent("caller", true, false)).await;
    let ok = harness.start("control.test", "caller", json!({})).await;
    let ok = harness.finished(&ok.id).await;
    assert_eq!(ok.state.current, State::Success);
    assert_eq!(run_of(&ok, "use").outputs["value"], "CALLER SUCCESS");
    let child_id = run_of(&ok, "call").outputs["executionId"]
        .as_str()
        .expect("child id")
        .to_owned();
    let child = harness.get(&child_id).await;
    assert_eq!(child.state.current, State::Success);
    let labels: Vec<(&str, &str)> = child
        .labels
        .iter()
        .map(|l| (l.key.as_str(), l.value.as_str()))
        .collect();
    assert!(labels.contains(&("team", "ops")), "{labels:?}");
    assert!(
        labels.contains(&("system.correlationId", ok.id.as_str())),
        "{labels:?}"
    );
    assert_eq!(
        child.trigger.as_ref().expect("trigger")["variables"]["executionId"],
        ok.id.as_str()
    );

    // transmitFailed: the child's failure fails the Subflow task and the parent.
    harness.save(&parent("strict", true, true)).await;
    let failed = harness.start("control.test", "strict", json!({})).await;
    let failed = harness.finished(&failed.id).await;
    assert_eq!(failed.state.current, State::Failed);
    let call = run_of(&failed, "call");
    assert_eq!(call.state.current, State::Failed);
    assert_eq!(call.outputs["state"], "FAILED");
    assert!(failed.task_run_list.iter().all(|r| r.task_id != "use"));

    // Without it, the parent goes on.
    harness.save(&parent("lenient", false, true)).await;
    let lenient = harness.start("control.test", "lenient", json!({})).await;
    let lenient = harness.finished(&lenient.id).await;
    assert_eq!(lenient.state.current, State::Success);
    assert_eq!(run_of(&lenient, "use").outputs["value"], "none FAILED");
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subflow_without_wait_ends_once_the_child_exists() {
    let dir = tempfile::tempdir().expect("temp dir");
    let harness = Harness::sqlite(&dir).await;
    harness.save(PAUSED).await;
    harness
        .save(
            r#"
id: fire-and-forget
namespace: control.test
tasks:
  - id: call
    type: io.kestra.plugin.core.flow.Subflow
    namespace: control.test
    flowId: paused
    wait: false
"#,
        )
        .await;
    let execution = harness
        .start("control.test", "fire-and-forget", json!({}))
        .await;
    let done = harness.finished(&execution.id).await;
    assert_eq!(done.state.current, State::Success);
    let child_id = run_of(&done, "call").outputs["executionId"]
        .as_str()
        .expect("child id")
        .to_owned();
    harness.reaches(&child_id, State::Paused).await;
    harness.stop().await;
}

const CONSUMER: &str = r#"
id: consumer
namespace: control.downstream
inputs:
  - {id: got, type: STRING}
tasks:
  - id: echo
    type: io.kestra.plugin.core.debug.Return
    format: "{{ inputs.got }} from {{ trigger.flowId }} {{ trigger.state }}"
triggers:
  - id: after-child
    type: io.kestra.plugin.core.trigger.Flow
    states: [SUCCESS]
    inputs: {got: "{{ trigger.outputs.result }}"}
    conditions:
      - type: io.kestra.plugin.core.condition.ExecutionFlow
        namespace: control.test
        flowId: child
"#;

async fn executions_of(harness: &Harness, namespace: &str, flow_id: &str) -> Vec<Execution> {
    let filter = atoll_instance::store::ExecutionFilter {
        namespace: Some(namespace.into()),
        flow_id: Some(flow_id.into()),
        limit: 100,
        ..Default::default()
    };
    let (found, _) = harness
        .engine
        .search_executions(&filter)
        .await
        .expect("search");
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_trigger_starts_a_flow_when_another_ends_in_a_given_state() {
    let dir = tempfile::tempdir().expect("temp dir");
    let harness = Harness::sqlite(&dir).await;
    harness.save(CHILD).await;
    harness.save(CONSUMER).await;
    // A failed upstream execution starts nothing (states: [SUCCESS]).
    let failed = harness
        .start("control.test", "child", json!({"fail": true, "word": "x"}))
        .await;
    assert_eq!(
        harness.finished(&failed.id).await.state.current,
        State::Failed
    );
    let ok = harness
        .start(
            "control.test",
            "child",
            json!({"fail": false, "word": "hi"}),
        )
        .await;
    assert_eq!(harness.finished(&ok.id).await.state.current, State::Success);
    let started = atoll_testkit::eventually(
        "the downstream flow triggered",
        Duration::from_secs(20),
        || async {
            let found = executions_of(&harness, "control.downstream", "consumer").await;
            (!found.is_empty()).then_some(found)
        },
    )
    .await;
    assert_eq!(started.len(), 1, "only the successful execution triggers");
    let consumer = harness.finished(&started[0].id).await;
    assert_eq!(consumer.state.current, State::Success);
    assert_eq!(
        run_of(&consumer, "echo").outputs["value"],
        "HI from child SUCCESS"
    );
    assert_eq!(
        consumer.trigger.as_ref().expect("trigger")["executionId"],
        ok.id.as_str()
    );
    harness.stop().await;
}
