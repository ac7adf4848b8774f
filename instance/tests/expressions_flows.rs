//! Flows written from Kestra's documentation examples of its expression
//! language: dates with Java patterns and time zones, jq programs over task
//! outputs, typed flow outputs carried through subflows and flow triggers,
//! and template errors that say where they are. Each asserts the result
//! Kestra gives, in the execution's outputs.

use std::time::Duration;

use atoll_instance::engine::{Engine, EngineConfig};
use atoll_instance::execution::{Execution, State};
use atoll_instance::store::{ExecutionFilter, Repository, Store};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

struct Harness {
    engine: Engine,
    store: Store,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn start() -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite:{}", dir.path().join("expr.db").display());
        let store = Store::connect(&url).await.expect("store");
        let engine = Engine::new(store.clone(), EngineConfig::default());
        let shutdown = CancellationToken::new();
        tokio::spawn({
            let engine = engine.clone();
            let shutdown = shutdown.clone();
            async move { engine.run(shutdown).await }
        });
        Harness {
            engine,
            store,
            shutdown,
            _dir: dir,
        }
    }

    async fn save(&self, source: &str) {
        self.engine.flows().save(source).await.expect("save");
    }

    /// Starts an execution (with trigger variables, if any) and waits for
    /// its end.
    async fn run(&self, id: &str, inputs: Value, trigger: Option<Value>) -> Execution {
        let inputs: Map<String, Value> = inputs.as_object().cloned().unwrap_or_default();
        let started = self
            .engine
            .start_execution("expr.test", id, &inputs, Vec::new(), trigger)
            .await
            .expect("start");
        self.engine
            .wait(&started.id, Duration::from_secs(30))
            .await
            .expect("finished")
    }

    async fn log_text(&self, execution: &Execution) -> String {
        let logs = self
            .store
            .logs(&execution.id, 0, 10_000)
            .await
            .expect("logs");
        logs.iter()
            .map(|l| l.message.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn outputs_of(execution: &Execution) -> Value {
    assert_eq!(
        execution.state.current,
        State::Success,
        "execution {} ended {:?}: {:?}",
        execution.id,
        execution.state.current,
        execution.error
    );
    Value::Object(execution.outputs.clone().unwrap_or_default())
}

const DATES: &str = r#"
id: dates
namespace: expr.test
tasks:
  - id: paris
    type: io.kestra.plugin.core.debug.Return
    format: "{{ trigger.date | date('yyyy-MM-dd HH:mm', timeZone='Europe/Paris') }}"
outputs:
  - id: paris
    type: STRING
    value: "{{ outputs.paris.value }}"
  - id: tomorrow
    type: STRING
    value: "{{ trigger.date | dateAdd(1, 'DAYS') | date('yyyy-MM-dd') }}"
  - id: lastWeek
    type: DATE
    value: "{{ trigger.date | dateAdd(-7, 'DAYS') | date('yyyy-MM-dd') }}"
  - id: weekday
    type: STRING
    value: "{{ trigger.date | date('EEEE d MMMM yyyy', timeZone='America/New_York') }}"
  - id: year
    type: INT
    value: "{{ now() | date('yyyy') }}"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dates_format_with_java_patterns_and_time_zones() {
    let harness = Harness::start().await;
    harness.save(DATES).await;
    let before = jiff::Timestamp::now();
    let execution = harness
        .run(
            "dates",
            json!({}),
            Some(json!({"date": "2024-06-15T22:30:00Z"})),
        )
        .await;
    let after = jiff::Timestamp::now();
    let outputs = outputs_of(&execution);
    assert_eq!(outputs["paris"], "2024-06-16 00:30");
    assert_eq!(outputs["tomorrow"], "2024-06-16");
    assert_eq!(outputs["lastWeek"], "2024-06-08");
    assert_eq!(outputs["weekday"], "Saturday 15 June 2024");
    // `now()` is the time of rendering.
    let years = [before, after].map(|t| i64::from(t.to_zoned(jiff::tz::TimeZone::UTC).year()));
    assert!(
        years.contains(&outputs["year"].as_i64().expect("a number")),
        "{outputs}"
    );
}

const JQ: &str = r#"
id: jq
namespace: expr.test
tasks:
  - id: users
    type: io.kestra.plugin.core.output.OutputValues
    values:
      people:
        - {name: ada, age: 36, team: core}
        - {name: bob, age: 25, team: web}
        - {name: cy, age: 41, team: core}
  - id: summary
    type: io.kestra.plugin.core.debug.Return
    format: "{{ outputs.users.values.people | jq('[.[] | select(.team == \"core\") | .name] | join(\", \")') | first }}"
outputs:
  - id: over30
    type: JSON
    value: "{{ outputs.users.values.people | jq('map(select(.age > 30)) | map(.name)') | first }}"
  - id: totalAge
    type: INT
    value: "{{ outputs.users.values.people | jq('map(.age) | add') | first }}"
  - id: first
    type: JSON
    value: "{{ outputs.users.values.people | jq('.[0] | {who: .name, years: .age}') | first }}"
  - id: names
    type: ARRAY
    itemType: STRING
    value: "{{ outputs.users.values.people | jq('.[].name') }}"
  - id: summary
    type: STRING
    value: "{{ outputs.summary.value }}"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jq_programs_run_over_task_outputs() {
    let harness = Harness::start().await;
    harness.save(JQ).await;
    let execution = harness.run("jq", json!({}), None).await;
    let outputs = outputs_of(&execution);
    assert_eq!(outputs["over30"], json!(["ada", "cy"]));
    assert_eq!(outputs["totalAge"], json!(102));
    assert_eq!(outputs["first"], json!({"who": "ada", "years": 36}));
    assert_eq!(outputs["names"], json!(["ada", "bob", "cy"]));
    assert_eq!(outputs["summary"], "ada, cy");
}

const TYPED_CHILD: &str = r#"
id: typed-child
namespace: expr.test
inputs:
  - {id: start, type: INT}
tasks:
  - id: eleven
    type: io.kestra.plugin.core.debug.Return
    format: "{{ inputs.start + 1 }}"
outputs:
  - {id: eleven, type: INT, value: "{{ outputs.eleven.value }}"}
  - {id: thirteen, type: INT, value: "13"}
  - {id: ratio, type: FLOAT, value: "{{ 3 / 2.0 }}"}
  - {id: ok, type: BOOLEAN, value: "{{ inputs.start < 100 }}"}
  - {id: sizes, type: ARRAY, itemType: INT, value: "{{ [1, 2, 3] }}"}
  - {id: label, type: STRING, value: "{{ inputs.start }}"}
"#;

const TYPED_PARENT: &str = r#"
id: typed-parent
namespace: expr.test
tasks:
  - id: call
    type: io.kestra.plugin.core.flow.Subflow
    namespace: expr.test
    flowId: typed-child
    inputs:
      start: "{{ 10 }}"
  - id: sum
    type: io.kestra.plugin.core.debug.Return
    format: "{{ outputs.call.outputs.eleven + outputs.call.outputs.thirteen }}"
outputs:
  - id: sum
    type: INT
    value: "{{ outputs.call.outputs.eleven + outputs.call.outputs.thirteen }}"
  - id: printed
    type: STRING
    value: "{{ outputs.sum.value }}"
  - id: ratioTwice
    type: FLOAT
    value: "{{ outputs.call.outputs.ratio * 2 }}"
  - id: both
    type: BOOLEAN
    value: "{{ outputs.call.outputs.ok and true }}"
"#;

const TYPED_CONSUMER: &str = r#"
id: typed-consumer
namespace: expr.test
inputs:
  - {id: n, type: INT}
tasks:
  - id: next
    type: io.kestra.plugin.core.debug.Return
    format: "{{ inputs.n + 1 }}"
outputs:
  - {id: next, type: INT, value: "{{ inputs.n + 1 }}"}
triggers:
  - id: after-child
    type: io.kestra.plugin.core.trigger.Flow
    states: [SUCCESS]
    inputs: {n: "{{ trigger.outputs.eleven }}"}
    conditions:
      - type: io.kestra.plugin.core.condition.ExecutionFlow
        namespace: expr.test
        flowId: typed-child
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_subflow_outputs_add_up_and_keep_their_types() {
    let harness = Harness::start().await;
    harness.save(TYPED_CHILD).await;
    harness.save(TYPED_PARENT).await;
    harness.save(TYPED_CONSUMER).await;
    let parent = harness.run("typed-parent", json!({}), None).await;
    let outputs = outputs_of(&parent);
    // 11 + 13 adds (it would be "1113" were the outputs strings).
    assert_eq!(outputs["sum"], json!(24));
    assert_eq!(outputs["printed"], "24");
    assert_eq!(outputs["ratioTwice"], json!(3.0));
    assert_eq!(outputs["both"], json!(true));

    let call = parent
        .task_run_list
        .iter()
        .find(|r| r.task_id == "call")
        .expect("the Subflow run");
    assert_eq!(
        Value::Object(
            call.outputs["outputs"]
                .as_object()
                .cloned()
                .unwrap_or_default()
        ),
        json!({"eleven": 11, "thirteen": 13, "ratio": 1.5, "ok": true,
               "sizes": [1, 2, 3], "label": "10"})
    );

    // The flow trigger passes the typed output on as an INT input.
    let filter = ExecutionFilter {
        namespace: Some("expr.test".into()),
        flow_id: Some("typed-consumer".into()),
        limit: 10,
        ..Default::default()
    };
    let consumer = atoll_testkit::eventually(
        "the consumer flow to run",
        Duration::from_secs(30),
        || async {
            let (found, _) = harness
                .engine
                .search_executions(&filter)
                .await
                .expect("search");
            found.into_iter().find(|e| e.state.current.is_terminal())
        },
    )
    .await;
    let consumer = outputs_of(&consumer);
    assert_eq!(consumer, json!({"next": 12}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_output_that_does_not_convert_fails_the_execution() {
    let harness = Harness::start().await;
    harness
        .save(
            r#"
id: bad-int
namespace: expr.test
tasks:
  - {id: word, type: io.kestra.plugin.core.debug.Return, format: "eleven"}
outputs:
  - {id: n, type: INT, value: "{{ outputs.word.value }}"}
"#,
        )
        .await;
    let execution = harness.run("bad-int", json!({}), None).await;
    assert_eq!(execution.state.current, State::Failed);
    let error = execution.error.clone().unwrap_or_default();
    assert!(
        error.contains("flow output `n` must be an integer"),
        "{error}"
    );
    assert!(!error.contains("eleven"), "the value is not shown: {error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_errors_name_the_task_property_position_and_filter() {
    let harness = Harness::start().await;
    harness
        .save(
            r#"
id: typo
namespace: expr.test
tasks:
  - {id: first, type: io.kestra.plugin.core.debug.Return, format: "ok"}
  - id: seq
    type: io.kestra.plugin.core.flow.Sequential
    tasks:
      - id: fmt
        type: io.kestra.plugin.core.debug.Return
        format: "{{ now() | dtae('yyyy') }}"
"#,
        )
        .await;
    let execution = harness.run("typo", json!({}), None).await;
    assert_eq!(execution.state.current, State::Failed);
    let logs = harness.log_text(&execution).await;
    assert!(
        logs.contains("task `fmt` (tasks[1].tasks[0].format): "),
        "{logs}"
    );
    assert!(logs.contains("dtae"), "{logs}");
    assert!(logs.contains("at line 1, column 12"), "{logs}");
}
