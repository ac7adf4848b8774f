//! Runs Kestra's own test flows (the compatibility corpus in
//! `shared/compat/kestra` beside the repository) and checks each execution
//! reaches the state, task-run count and outputs Kestra's tests assert.
//! Entries left out are listed with their reason in
//! `kestra_compat_deferred.txt`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use atoll_instance::engine::{Engine, EngineConfig, EngineError, WebhookRequest};
use atoll_instance::execution::{Execution, LogEntry};
use atoll_instance::flow;
use atoll_instance::store::{FlowExpect, Repository, Store};
use atoll_testkit::eventually;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

/// The corpus: `$ATOLL_KESTRA_COMPAT_DIR`, else `shared/compat/kestra` in the
/// nearest ancestor of this crate that has it (the repository's parent when
/// cloned with `shared/` beside it).
fn corpus_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ATOLL_KESTRA_COMPAT_DIR") {
        return PathBuf::from(dir);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .map(|a| a.join("shared/compat/kestra"))
        .find(|dir| dir.join("expected.json").is_file())
        .unwrap_or_else(|| {
            panic!(
                "the Kestra compatibility corpus was not found: expected shared/compat/kestra \
                 (with expected.json) beside the repository, above {}; or set ATOLL_KESTRA_COMPAT_DIR",
                manifest.display()
            )
        })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Deferred,
    Refused,
    Rejected,
    Wording,
}

#[derive(Debug)]
struct ListEntry {
    kind: Kind,
    file: String,
    inputs: Option<Value>,
}

fn read_list() -> Vec<ListEntry> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kestra_compat_deferred.txt");
    let text = std::fs::read_to_string(&path).expect("read the deferred list");
    let mut entries = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (head, reason) = line.split_once(" -- ").expect("`-- reason` on every line");
        assert!(!reason.trim().is_empty(), "a reason is required: {line}");
        let mut parts = head.splitn(3, ' ');
        let kind = match parts.next() {
            Some("deferred") => Kind::Deferred,
            Some("refused") => Kind::Refused,
            Some("rejected") => Kind::Rejected,
            Some("wording") => Kind::Wording,
            other => panic!("unknown kind {other:?} in: {line}"),
        };
        let file = parts.next().expect("file name").to_owned();
        let inputs = parts
            .next()
            .map(|json| serde_json::from_str(json).expect("inputs JSON"));
        entries.push(ListEntry { kind, file, inputs });
    }
    entries
}

fn listed<'a>(list: &'a [ListEntry], file: &str, inputs: &Value) -> Option<&'a ListEntry> {
    list.iter()
        .find(|e| e.file == file && e.inputs.as_ref().is_none_or(|i| i == inputs))
}

/// Checks one expected value against the actual one; `None` when it matches.
fn mismatch(expected: &Value, actual: Option<&Value>) -> Option<String> {
    let null = Value::Null;
    let actual_value = actual.unwrap_or(&null);
    let ok = match expected {
        Value::Object(m) if m.contains_key("$contains") => {
            let needle = m["$contains"].as_str().unwrap_or_default();
            actual_value.as_str().is_some_and(|s| s.contains(needle))
        }
        Value::Object(m) if m.contains_key("$matches") => {
            let pattern = format!("^(?:{})$", m["$matches"].as_str().unwrap_or_default());
            let re = regex::Regex::new(&pattern).expect("regex");
            actual_value.as_str().is_some_and(|s| re.is_match(s))
        }
        Value::Object(m) if m.contains_key("$containsAll") => {
            let items = actual_value.as_array().cloned().unwrap_or_default();
            m["$containsAll"]
                .as_array()
                .is_some_and(|want| want.iter().all(|w| items.contains(w)))
        }
        _ => expected == actual_value,
    };
    (!ok).then(|| format!("expected {expected}, got {actual_value}"))
}

fn path_get<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        return Some(value);
    }
    path.split('.').try_fold(value, |v, key| v.get(key))
}

/// Executions besides the one under test that an entry's facts name.
#[derive(Debug, Default)]
struct Related {
    /// The second execution of the concurrency scenario.
    second: Option<Execution>,
    /// The execution a Subflow task created.
    subflow: Option<Execution>,
    /// Every execution of the flow, for CREATE_NEW_EXECUTION retries.
    retries: Vec<Execution>,
}

/// Resolves one key of the `outputs` grammar of expected.json.
fn actual(
    key: &str,
    execution: &Execution,
    logs: &[LogEntry],
    related: &Related,
) -> Result<Option<Value>, String> {
    let runs = &execution.task_run_list;
    if key == "$retryExecutions.states" {
        let mut states: Vec<Value> = related
            .retries
            .iter()
            .map(|e| Value::from(e.state.current.as_str()))
            .collect();
        states.sort_by_key(Value::to_string);
        return Ok(Some(Value::Array(states)));
    }
    if key.starts_with("$subflow.") {
        let child = related
            .subflow
            .as_ref()
            .ok_or("no subflow execution found")?;
        let field = key.rsplit('.').next().unwrap_or_default();
        return match field {
            "state" => Ok(Some(Value::from(child.state.current.as_str()))),
            "taskRunCount" => Ok(Some(Value::from(child.task_run_list.len()))),
            _ => Err(format!("unsupported {key}")),
        };
    }
    if let Some(field) = key.strip_prefix("$concurrent.second.") {
        let second = related
            .second
            .as_ref()
            .ok_or("no second execution was started")?;
        return match field {
            "state" => Ok(Some(Value::from(second.state.current.as_str()))),
            "stateHistoryPrefix" => Ok(Some(Value::Array(
                second
                    .state
                    .histories
                    .iter()
                    .map(|h| Value::from(h.state.as_str()))
                    .collect(),
            ))),
            _ => Err(format!("unsupported {key}")),
        };
    }
    let first = |task: &str| runs.iter().find(|r| r.task_id == task);
    if let Some(task) = key.strip_prefix("$state.") {
        return Ok(Some(
            first(task).map_or(Value::Null, |r| Value::from(r.state.current.as_str())),
        ));
    }
    if let Some(task) = key.strip_prefix("$attempts.") {
        return Ok(first(task).map(|r| Value::from(r.attempts.len())));
    }
    if key == "$flowOutputs" {
        return Ok(Some(
            execution.outputs.clone().map_or(Value::Null, Value::Object),
        ));
    }
    if key == "$flowOutputs.size" {
        return Ok(execution.outputs.as_ref().map(|o| Value::from(o.len())));
    }
    if key == "$logs" {
        let messages: Vec<Value> = logs
            .iter()
            .map(|l| Value::from(l.message.clone()))
            .collect();
        return Ok(Some(Value::Array(messages)));
    }
    if let Some(rest) = key.strip_prefix("$taskRunList[") {
        let (index, field) = rest.split_once("].").ok_or("bad $taskRunList key")?;
        let index: usize = index.parse().map_err(|_| "bad index")?;
        let Some(run) = runs.get(index) else {
            return Ok(None);
        };
        return Ok(match field {
            "taskId" => Some(Value::from(run.task_id.clone())),
            "state" => Some(Value::from(run.state.current.as_str())),
            "attempts" => Some(Value::from(run.attempts.len())),
            _ => match field.strip_prefix("outputs.") {
                Some(path) => path_get(&Value::Object(run.outputs.clone()), path).cloned(),
                None => return Err(format!("unsupported $taskRunList field {field}")),
            },
        });
    }
    if let Some(id) = key.strip_prefix("flow.") {
        return Ok(execution.outputs.as_ref().and_then(|o| o.get(id)).cloned());
    }
    if let Some(path) = key.strip_prefix("$trigger.") {
        return Ok(execution
            .trigger
            .as_ref()
            .and_then(|t| path_get(t, path))
            .cloned());
    }
    if key.starts_with('$') {
        return Err(format!(
            "assertion {key} needs a feature this test does not run"
        ));
    }
    // `<taskId>[v1,v2].<path>` or `<taskId>.<path>`.
    let (task, values, path) = match key.split_once('[') {
        Some((task, rest)) if !task.contains('.') => {
            let (values, path) = rest.split_once("].").ok_or("bad loop key")?;
            (
                task,
                Some(values.split(',').map(str::to_owned).collect::<Vec<_>>()),
                path,
            )
        }
        _ => {
            let (task, path) = key.split_once('.').ok_or("bad key")?;
            (task, None, path)
        }
    };
    let run = runs
        .iter()
        .find(|r| r.task_id == task && values.as_ref().is_none_or(|v| *v == r.values));
    Ok(run.and_then(|r| path_get(&Value::Object(r.outputs.clone()), path).cloned()))
}

fn check(
    entry: &Value,
    execution: &Execution,
    logs: &[LogEntry],
    wording: bool,
    related: &Related,
) -> Vec<String> {
    let mut failures = Vec::new();
    let state = execution.state.current.as_str();
    if entry["state"] != state {
        failures.push(format!("state: expected {}, got {state}", entry["state"]));
    }
    if let Some(count) = entry["taskRunCount"].as_u64()
        && count != execution.task_run_list.len() as u64
    {
        failures.push(format!(
            "taskRunCount: expected {count}, got {}",
            execution.task_run_list.len()
        ));
    }
    for (key, expected) in entry["outputs"].as_object().into_iter().flatten() {
        if key == "$logs" {
            if wording {
                continue;
            }
            let messages: Vec<&str> = logs.iter().map(|l| l.message.as_str()).collect();
            for want in expected.as_array().into_iter().flatten() {
                let want = want.as_str().unwrap_or_default();
                if !messages.iter().any(|m| m.contains(want)) {
                    failures.push(format!("$logs: no log contains {want:?} in {messages:?}"));
                }
            }
            continue;
        }
        if key == "$labels" {
            for (label, want) in expected.as_object().into_iter().flatten() {
                let found = execution.labels.iter().find(|l| l.key == *label);
                if found.map(|l| Value::from(l.value.clone())).as_ref() != Some(want) {
                    failures.push(format!("$labels: expected {label}={want}, got {found:?}"));
                }
            }
            continue;
        }
        if key == "$concurrent.second.stateHistoryPrefix" {
            let history = actual(key, execution, logs, related).unwrap_or_default();
            let prefix = history.as_ref().and_then(Value::as_array).map(|h| {
                h.iter()
                    .take(expected.as_array().map_or(0, Vec::len))
                    .cloned()
                    .collect::<Vec<_>>()
            });
            if prefix.as_ref() != expected.as_array() {
                failures.push(format!("{key}: expected {expected}, got {history:?}"));
            }
            continue;
        }
        if key.starts_with("$subflow.") && key.ends_with(".labels") {
            let Some(child) = &related.subflow else {
                failures.push(format!("{key}: no subflow execution found"));
                continue;
            };
            for (label, want) in expected.as_object().into_iter().flatten() {
                let want = match want.as_str() {
                    Some("<parent execution id>") => Value::from(execution.id.clone()),
                    _ => want.clone(),
                };
                let found = child.labels.iter().find(|l| l.key == *label);
                if found.map(|l| Value::from(l.value.clone())) != Some(want.clone()) {
                    failures.push(format!("{key}: expected {label}={want}, got {found:?}"));
                }
            }
            continue;
        }
        let sorted_expected;
        let expected = if key == "$retryExecutions.states" {
            let mut items = expected.as_array().cloned().unwrap_or_default();
            items.sort_by_key(Value::to_string);
            sorted_expected = Value::Array(items);
            &sorted_expected
        } else {
            expected
        };
        match actual(key, execution, logs, related) {
            Ok(value) => {
                if let Some(problem) = mismatch(expected, value.as_ref()) {
                    failures.push(format!("{key}: {problem}"));
                }
            }
            Err(problem) => failures.push(format!("{key}: {problem}")),
        }
    }
    failures
}

/// An entry that stays PAUSED: checks it pauses, resumes it with
/// `$afterResume.with` and checks the `$afterResume.*` facts.
async fn paused_then_resumed(
    engine: &Engine,
    store: &Store,
    entry: &Value,
    id: &str,
) -> Result<(), String> {
    let state = || async {
        let execution = store
            .get_execution(id)
            .await
            .expect("read")
            .expect("exists");
        execution.state.current
    };
    let paused = within("the execution PAUSED", Duration::from_secs(30), || async {
        (state().await == atoll_instance::execution::State::Paused).then_some(())
    })
    .await;
    if paused.is_none() {
        return Err(format!("never paused; it is {:?}", state().await));
    }
    let outputs = entry["outputs"].as_object().cloned().unwrap_or_default();
    let with: Map<String, Value> = outputs
        .get("$afterResume.with")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    engine.resume(id, &with).await.map_err(|e| e.to_string())?;
    let execution = engine
        .wait(id, Duration::from_secs(60))
        .await
        .map_err(|e| e.to_string())?;
    let logs = store.logs(id, 0, 10_000).await.expect("logs");
    let mut after = Map::new();
    for (key, value) in &outputs {
        match key.strip_prefix("$afterResume.") {
            Some("with") | None => {}
            Some("state") => {
                after.insert("state".into(), value.clone());
            }
            Some("taskRunCount") => {
                after.insert("taskRunCount".into(), value.clone());
            }
            Some(rest) => {
                let facts = after
                    .entry("outputs")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(facts) = facts {
                    facts.insert(rest.to_owned(), value.clone());
                }
            }
        }
    }
    let problems = check(
        &Value::Object(after),
        &execution,
        &logs,
        false,
        &Related::default(),
    );
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Labels the Kestra test gives the execution at start: those a
/// `$subflow.*.labels` fact expects on the child besides the flows' own
/// (`mainFlowExecutionLabel` in FlowCaseTest).
fn execution_labels(entry: &Value) -> Vec<atoll_instance::flow::Label> {
    let outputs = entry["outputs"].as_object();
    let expected = outputs
        .into_iter()
        .flatten()
        .find(|(k, _)| k.starts_with("$subflow.") && k.ends_with(".labels"))
        .and_then(|(_, v)| v.get("mainFlowExecutionLabel"))
        .and_then(Value::as_str);
    expected
        .map(|value| atoll_instance::flow::Label {
            key: "mainFlowExecutionLabel".into(),
            value: value.to_owned(),
        })
        .into_iter()
        .collect()
}

/// Waits until the flow has `count` ended executions (the original and
/// the ones its CREATE_NEW_EXECUTION retries created) and returns them.
async fn retry_chain(
    engine: &Engine,
    namespace: &str,
    flow_id: &str,
    count: usize,
) -> Vec<Execution> {
    let filter = atoll_instance::store::ExecutionFilter {
        namespace: Some(namespace.to_owned()),
        flow_id: Some(flow_id.to_owned()),
        limit: 100,
        ..Default::default()
    };
    let search = || async { engine.search_executions(&filter).await.expect("search").0 };
    let chain = within("the retry chain ended", Duration::from_secs(30), || async {
        let found = search().await;
        let ended = found
            .iter()
            .filter(|e| e.state.current.is_terminal())
            .count();
        (found.len() >= count && ended == found.len()).then_some(found)
    })
    .await;
    match chain {
        Some(found) => found,
        // What there is; the entry's checks then say what is missing.
        None => search().await,
    }
}

/// `eventually`, but `None` instead of a panic once `limit` has passed:
/// one corpus entry that fails must not stop the others.
async fn within<T, F, Fut>(what: &str, limit: Duration, check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let polling = eventually(what, limit + Duration::from_secs(1), check);
    tokio::time::timeout(limit, polling).await.ok()
}

/// `$subflow.<namespace>.<flowId>.<field>` keys name a child flow.
fn subflow_named(entry: &Value) -> Option<(String, String)> {
    let key = entry["outputs"]
        .as_object()?
        .keys()
        .find(|k| k.starts_with("$subflow."))?;
    let path = key.strip_prefix("$subflow.")?;
    let (flow, _field) = path.rsplit_once('.')?;
    let (namespace, flow_id) = flow.rsplit_once('.')?;
    Some((namespace.to_owned(), flow_id.to_owned()))
}

/// The finished execution of `namespace/flow_id` that `parent` started.
async fn subflow_of(
    engine: &Engine,
    namespace: &str,
    flow_id: &str,
    parent: &str,
) -> Option<Execution> {
    let filter = atoll_instance::store::ExecutionFilter {
        namespace: Some(namespace.to_owned()),
        flow_id: Some(flow_id.to_owned()),
        limit: 500,
        ..Default::default()
    };
    let (found, _) = engine.search_executions(&filter).await.ok()?;
    let child = found.into_iter().find(|e| {
        e.trigger
            .as_ref()
            .is_some_and(|t| t["variables"]["executionId"] == parent)
    })?;
    engine.wait(&child.id, Duration::from_secs(60)).await.ok()
}

/// Polls until the execution is RUNNING.
async fn wait_running(store: &Store, id: &str) {
    atoll_testkit::eventually(
        &format!("{id} running"),
        Duration::from_secs(30),
        || async {
            let execution = store
                .get_execution(id)
                .await
                .expect("read")
                .expect("exists");
            (execution.state.current == atoll_instance::execution::State::Running).then_some(())
        },
    )
    .await;
}

/// Starts an execution the way a webhook call would (the `$webhook` inputs
/// of expected.json: method, key, optional query and body).
async fn start_by_webhook(
    engine: &Engine,
    namespace: &str,
    flow_id: &str,
    call: &Value,
) -> Result<Execution, EngineError> {
    let body = match &call["body"] {
        Value::Null => Vec::new(),
        Value::String(text) => text.clone().into_bytes(),
        other => other.to_string().into_bytes(),
    };
    let query: Vec<(String, String)> = call["query"]
        .as_str()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let request = WebhookRequest::new(&body, [("content-type", "application/json")], query);
    let key = call["key"].as_str().unwrap_or_default();
    let started = engine
        .webhook(namespace, flow_id, key, request)
        .await?
        .ok_or_else(|| EngineError::ExecutionNotFound("webhook refused".into()))?;
    Ok(started.execution)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kestra_corpus() {
    let corpus = corpus_dir();
    let expected: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(corpus.join("expected.json")).expect("read expected.json"),
    )
    .expect("expected.json is JSON");
    let list = read_list();

    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite:{}", dir.path().join("compat.db").display());
    let store = Store::connect(&url).await.expect("store");
    let engine = Engine::new(store.clone(), EngineConfig::default());
    let shutdown = CancellationToken::new();
    let runner = tokio::spawn({
        let engine = engine.clone();
        let shutdown = shutdown.clone();
        async move { engine.run(shutdown).await }
    });

    let mut failures = Vec::new();
    let mut saved = std::collections::HashSet::new();
    let mut started = Vec::new();
    let mut refused_ok = 0;
    let mut rejected_ok = 0;
    let mut deferred = 0;
    for entry in &expected {
        let file = entry["file"].as_str().expect("file");
        let inputs = entry["inputs"].clone();
        let label = format!("{file} {inputs}");
        let listing = listed(&list, file, &inputs);
        if listing.is_some_and(|l| l.kind == Kind::Deferred) {
            deferred += 1;
            continue;
        }
        let source =
            std::fs::read_to_string(corpus.join("flows").join(file)).expect("read flow file");
        let parsed = flow::parse(&source);
        if listing.is_some_and(|l| l.kind == Kind::Refused) {
            match parsed {
                Err(_) => refused_ok += 1,
                Ok(_) => failures.push(format!("{label}: listed as refused but was accepted")),
            }
            continue;
        }
        let flow = match parsed {
            Ok(flow) => flow,
            Err(err) => {
                failures.push(format!("{label}: flow refused: {err}"));
                continue;
            }
        };
        if saved.insert(file.to_owned()) {
            store
                .save_flow(&flow.namespace, &flow.id, &source, FlowExpect::Any)
                .await
                .expect("save flow");
        }
        let inputs_map: Map<String, Value> = inputs.as_object().cloned().unwrap_or_default();
        let start = match inputs_map.get("$webhook") {
            Some(call) => start_by_webhook(&engine, &flow.namespace, &flow.id, call).await,
            None => {
                engine
                    .start_execution(
                        &flow.namespace,
                        &flow.id,
                        &inputs_map,
                        execution_labels(entry),
                        None,
                    )
                    .await
            }
        };
        if listing.is_some_and(|l| l.kind == Kind::Rejected) {
            match start {
                Err(EngineError::Inputs(_)) => rejected_ok += 1,
                other => failures.push(format!("{label}: listed as rejected, got {other:?}")),
            }
            continue;
        }
        let execution = match start {
            Ok(execution) => execution,
            Err(err) => {
                failures.push(format!("{label}: start failed: {err}"));
                continue;
            }
        };
        // The concurrency scenario: a second execution started while the
        // first one runs.
        let second = if entry["outputs"].get("$concurrent.second.state").is_some() {
            wait_running(&store, &execution.id).await;
            let second = engine
                .start_execution(&flow.namespace, &flow.id, &Map::new(), Vec::new(), None)
                .await
                .expect("start the second execution");
            Some(second.id)
        } else {
            None
        };
        started.push((
            label,
            entry,
            execution.id,
            listing.is_some_and(|l| l.kind == Kind::Wording),
            second,
        ));
    }

    let mut passed = 0;
    for (label, entry, id, wording, second) in &started {
        if entry["state"] == "PAUSED" {
            match paused_then_resumed(&engine, &store, entry, id).await {
                Ok(()) => passed += 1,
                Err(problem) => failures.push(format!("{label}: {problem}")),
            }
            continue;
        }
        let execution = match engine.wait(id, Duration::from_secs(60)).await {
            Ok(execution) => execution,
            Err(err) => {
                failures.push(format!("{label}: {err}"));
                continue;
            }
        };
        let logs = store.logs(id, 0, 10_000).await.expect("logs");
        let mut related = Related::default();
        if let Some(second) = second {
            match engine.wait(second, Duration::from_secs(60)).await {
                Ok(second) => related.second = Some(second),
                Err(err) => {
                    failures.push(format!("{label}: second execution: {err}"));
                    continue;
                }
            }
        }
        if let Some(expected) = entry["outputs"]["$retryExecutions.states"].as_array() {
            related.retries = retry_chain(
                &engine,
                &execution.namespace,
                &execution.flow_id,
                expected.len(),
            )
            .await;
        }
        if let Some((namespace, flow_id)) = subflow_named(entry) {
            related.subflow = subflow_of(&engine, &namespace, &flow_id, &execution.id).await;
        }
        let problems = check(entry, &execution, &logs, *wording, &related);
        if problems.is_empty() {
            passed += 1;
        } else {
            let runs: Vec<String> = execution
                .task_run_list
                .iter()
                .map(|r| format!("{}{:?}={}", r.task_id, r.values, r.state.current.as_str()))
                .collect();
            failures.push(format!(
                "{label}: {} [runs: {}]",
                problems.join("; "),
                runs.join(", ")
            ));
        }
    }
    shutdown.cancel();
    runner.await.expect("engine stopped");

    #[allow(clippy::print_stdout)]
    {
        println!(
            "kestra corpus: {passed} of {} entries passed as Kestra asserts; {refused_ok} refused at save and {rejected_ok} rejected at start by design; {deferred} deferred (see kestra_compat_deferred.txt)",
            expected.len()
        );
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(
        passed + refused_ok + rejected_ok + deferred,
        expected.len(),
        "every entry is either run or listed"
    );
}
