//! Flow parsing and save-time validation, good and hostile input.

use std::time::Duration;

use atoll_instance::flow::{
    self, Backoff, FlowError, InputType, ProblemKind, TaskKind, TriggerKind,
};

fn problems(source: &str) -> Vec<(ProblemKind, String)> {
    match flow::parse(source) {
        Ok(flow) => panic!("expected the flow to be refused, got {flow:?}"),
        Err(err) => {
            assert!(!err.problems().is_empty(), "expected problems, got {err}");
            err.problems()
                .iter()
                .map(|p| (p.kind, p.to_string()))
                .collect()
        }
    }
}

fn has(problems: &[(ProblemKind, String)], kind: ProblemKind, needle: &str) -> bool {
    problems
        .iter()
        .any(|(k, message)| *k == kind && message.contains(needle))
}

#[test]
fn parses_a_flow_with_every_supported_feature() {
    let source = r#"
id: everything
namespace: company.team
description: all of it
labels:
  team: data
inputs:
  - id: name
    type: STRING
    defaults: world
  - id: count
    type: INT
    required: false
  - id: when
    type: DATETIME
    required: false
  - id: pick
    type: SELECT
    values: [a, b]
    defaults: a
  - id: list
    type: ARRAY
    itemType: INT
    required: false
variables:
  greeting: hello
tasks:
  - id: hello
    type: io.kestra.plugin.core.log.Log
    message: "{{ vars.greeting }} {{ inputs.name }}"
    retry:
      type: exponential
      interval: PT1S
      maxInterval: PT10S
      maxAttempt: 3
    timeout: PT5M
  - id: legacy
    type: io.kestra.core.tasks.debugs.Return
    format: "{{ outputs.hello ?? 'none' }}"
  - id: seq
    type: io.kestra.plugin.core.flow.Sequential
    allowFailure: true
    tasks:
      - id: sh
        type: io.kestra.plugin.scripts.shell.Commands
        commands:
          - echo '::{"outputs":{"n":1}}::'
    errors:
      - id: on-error
        type: io.kestra.plugin.core.log.Log
        message: failed
    finally:
      - id: always
        type: io.kestra.plugin.core.log.Log
        message: done
  - id: switch
    type: io.kestra.plugin.core.flow.Switch
    value: "{{ inputs.pick }}"
    cases:
      1:
        - id: one
          type: io.kestra.plugin.core.flow.Sleep
          duration: PT0.250S
    defaults:
      - id: http
        type: io.kestra.plugin.core.http.Request
        uri: http://127.0.0.1:1/
  - id: dag
    type: io.kestra.plugin.core.flow.Dag
    tasks:
      - task: {id: d1, type: io.kestra.plugin.core.log.Log, message: d1}
      - task: {id: d2, type: io.kestra.plugin.core.log.Log, message: d2}
        dependsOn: [d1]
outputs:
  - id: out
    type: STRING
    value: "{{ outputs.legacy.value }}"
triggers:
  - id: hourly
    type: io.kestra.plugin.core.trigger.Schedule
    cron: "0 * * * *"
"#;
    let flow = flow::parse(source).expect("valid flow");
    assert_eq!(flow.id, "everything");
    assert_eq!(flow.namespace, "company.team");
    assert_eq!(flow.labels[0].key, "team");
    assert_eq!(flow.inputs[1].kind, InputType::Int);
    assert!(!flow.inputs[1].required);
    assert_eq!(flow.inputs[4].item_type, Some(InputType::Int));
    assert_eq!(flow.tasks.len(), 5);
    let hello = &flow.tasks[0];
    assert_eq!(hello.timeout, Some(Duration::from_secs(300)));
    let retry = hello.retry.as_ref().expect("retry");
    assert_eq!(retry.max_attempts, Some(3));
    assert!(matches!(retry.backoff, Backoff::Exponential { .. }));
    let seq = &flow.tasks[2];
    assert!(seq.allow_failure);
    assert_eq!(seq.errors[0].id, "on-error");
    assert_eq!(seq.finally[0].id, "always");
    let TaskKind::Switch { cases, .. } = &flow.tasks[3].kind else {
        panic!("switch expected");
    };
    assert_eq!(cases[0].0, "1", "integer case keys become strings");
    assert_eq!(
        flow.triggers[0].type_name,
        "io.kestra.plugin.core.trigger.Schedule"
    );
    assert_eq!(flow.all_tasks().len(), 12);
}

#[test]
fn malformed_yaml_names_line_and_column() {
    let source = "id: x\nnamespace: a\ntasks:\n  - id: t\n    type: [unclosed\n";
    match flow::parse(source) {
        Err(FlowError::Yaml { line, column, .. }) => {
            assert!(line >= 5, "line {line}");
            assert!(column >= 1);
        }
        other => panic!("expected a YAML error, got {other:?}"),
    }
    let err = flow::parse("id: x\n  bad: indent\n").expect_err("must be refused");
    let message = err.to_string();
    assert!(message.contains("line 2"), "{message}");
    assert!(message.contains("column"), "{message}");
}

#[test]
fn a_document_that_is_not_a_mapping_is_refused() {
    assert!(has(
        &problems("- just\n- a list\n"),
        ProblemKind::Field,
        "must be a YAML mapping"
    ));
}

#[test]
fn unknown_task_type_names_itself_and_lists_supported_ones() {
    let found = problems("id: f\nnamespace: n\ntasks:\n  - id: t\n    type: io.example.Nope\n");
    let (_, message) = found
        .iter()
        .find(|(k, _)| *k == ProblemKind::UnknownType)
        .expect("unknown type problem");
    assert!(message.contains("`io.example.Nope`"), "{message}");
    assert!(message.contains("task `t`"), "{message}");
    for supported in flow::supported_task_types() {
        assert!(message.contains(supported), "{message} lacks {supported}");
    }
}

#[test]
fn not_yet_supported_kestra_types_say_so() {
    let found = problems(
        "id: f\nnamespace: n\ntasks:\n  - id: p\n    type: io.kestra.plugin.core.flow.ForEachItem\n",
    );
    assert!(has(&found, ProblemKind::Unsupported, "not supported yet"));
}

#[test]
fn duplicate_task_ids_are_refused_even_across_branches_and_handlers() {
    let found = problems(
        r#"
id: f
namespace: n
tasks:
  - id: a
    type: io.kestra.plugin.core.flow.Sequential
    tasks:
      - {id: b, type: io.kestra.plugin.core.log.Log, message: x}
errors:
  - {id: b, type: io.kestra.plugin.core.log.Log, message: y}
"#,
    );
    assert!(has(&found, ProblemKind::DuplicateId, "`b`"));
}

#[test]
fn duplicate_input_ids_and_yaml_keys_are_refused() {
    let found = problems(
        "id: f\nnamespace: n\ninputs:\n  - {id: a, type: STRING}\n  - {id: a, type: INT}\ntasks:\n  - {id: t, type: io.kestra.plugin.core.log.Log, message: x}\n",
    );
    assert!(has(&found, ProblemKind::DuplicateId, "input id `a`"));
    let err = flow::parse("id: f\nid: g\nnamespace: n\n").expect_err("must be refused");
    assert!(
        matches!(&err, FlowError::Yaml { message, .. } if message.contains("duplicate")),
        "{err}"
    );
}

#[test]
fn references_to_missing_tasks_and_inputs_are_refused() {
    let found = problems(
        r#"
id: f
namespace: n
inputs:
  - {id: known, type: STRING}
tasks:
  - id: t
    type: io.kestra.plugin.core.log.Log
    message: "{{ inputs.known }} {{ inputs.unknown }} {{ outputs['nope'].value }}"
outputs:
  - {id: o, type: STRING, value: "{{ outputs.ghost.value }}"}
"#,
    );
    assert!(has(&found, ProblemKind::MissingInput, "input `unknown`"));
    assert!(has(&found, ProblemKind::MissingTask, "task `nope`"));
    assert!(has(&found, ProblemKind::MissingTask, "task `ghost`"));
    assert!(!found.iter().any(|(_, m)| m.contains("`known`")));
}

#[test]
fn guarded_references_to_missing_tasks_are_allowed() {
    flow::parse(
        "id: f\nnamespace: n\ntasks:\n  - id: t\n    type: io.kestra.plugin.core.log.Log\n    message: \"{{ outputs.later ?? '' }}\"\n",
    )
    .expect("a reference guarded by ?? is fine");
}

#[test]
fn dag_cycles_and_missing_dependencies_are_refused() {
    let found = problems(
        r#"
id: f
namespace: n
tasks:
  - id: dag
    type: io.kestra.plugin.core.flow.Dag
    tasks:
      - task: {id: a, type: io.kestra.plugin.core.log.Log, message: a}
        dependsOn: [c]
      - task: {id: b, type: io.kestra.plugin.core.log.Log, message: b}
        dependsOn: [a]
      - task: {id: c, type: io.kestra.plugin.core.log.Log, message: c}
        dependsOn: [b, ghost]
"#,
    );
    assert!(has(&found, ProblemKind::Cycle, "a -> c -> b -> a"));
    assert!(has(&found, ProblemKind::MissingTask, "`ghost`"));
}

#[test]
fn hostile_ids_are_refused() {
    for (id, namespace) in [
        ("../etc", "n"),
        ("a/b", "n"),
        ("ok", "../n"),
        ("ok", "n..m"),
        ("ok", "N.Upper"),
        ("\u{430}dmin", "n"),         // Cyrillic a
        ("adm\u{200b}in", "n"),       // zero-width space
        ("evil\u{202e}gpj.exe", "n"), // right-to-left override
        ("ok", "te\u{0301}am"),       // combining accent
        (".hidden", "n"),
        ("a..b", "n"),
    ] {
        let source = format!(
            "id: \"{id}\"\nnamespace: \"{namespace}\"\ntasks:\n  - {{id: t, type: io.kestra.plugin.core.log.Log, message: x}}\n"
        );
        let found = problems(&source);
        assert!(
            found.iter().any(|(k, _)| *k == ProblemKind::InvalidId),
            "{id:?}/{namespace:?} not refused: {found:?}"
        );
        for (_, message) in &found {
            assert!(
                message.is_ascii(),
                "messages must not echo hostile characters: {message}"
            );
        }
    }
    let long = "a".repeat(101);
    let found = problems(&format!(
        "id: {long}\nnamespace: n\ntasks:\n  - {{id: t, type: io.kestra.plugin.core.log.Log, message: x}}\n"
    ));
    assert!(found.iter().any(|(k, _)| *k == ProblemKind::InvalidId));
}

#[test]
fn hostile_task_ids_are_refused_without_being_echoed() {
    let found = problems(
        "id: f\nnamespace: n\ntasks:\n  - {id: \"../\u{202e}x\", type: io.kestra.plugin.core.log.Log, message: x}\n",
    );
    assert!(
        found.iter().any(|(k, m)| *k == ProblemKind::InvalidId
            && m.contains("tasks[0].id")
            && m.is_ascii())
    );
}

#[test]
fn field_errors_name_the_task_and_field() {
    let found = problems(
        r#"
id: f
namespace: n
tasks:
  - id: sleepy
    type: io.kestra.plugin.core.flow.Sleep
    duration: soon
  - id: talk
    type: io.kestra.plugin.core.log.Log
    message: hi
    colour: blue
  - id: iffy
    type: io.kestra.plugin.core.flow.If
    condition: "true"
"#,
    );
    assert!(has(
        &found,
        ProblemKind::Field,
        "task `sleepy` (tasks[0].duration)"
    ));
    assert!(has(
        &found,
        ProblemKind::UnknownField,
        "task `talk` (tasks[1].colour)"
    ));
    assert!(has(
        &found,
        ProblemKind::Field,
        "task `iffy` (tasks[2].then): is required"
    ));
}

#[test]
fn missing_top_level_fields_are_all_reported() {
    let found = problems("description: nothing else\n");
    assert!(has(&found, ProblemKind::Field, "id: is required"));
    assert!(has(&found, ProblemKind::Field, "namespace: is required"));
    assert!(has(&found, ProblemKind::Field, "tasks: is required"));
}

#[test]
fn oversized_source_is_refused() {
    let source = format!(
        "id: f\nnamespace: n\ndescription: \"{}\"\ntasks: []\n",
        "x".repeat(flow::MAX_SOURCE_BYTES)
    );
    assert!(has(&problems(&source), ProblemKind::Field, "larger than"));
}

#[test]
fn yaml_tags_and_anchors() {
    let found = problems(
        "id: f\nnamespace: n\ntasks:\n  - {id: t, type: io.kestra.plugin.core.log.Log, message: !secret x}\n",
    );
    assert!(has(
        &found,
        ProblemKind::Field,
        "YAML tags are not supported"
    ));
    let flow = flow::parse(
        "id: f\nnamespace: n\nbase: &log {type: io.kestra.plugin.core.log.Log, message: x}\ntasks:\n  - {<<: *log, id: t}\n",
    );
    // An anchor is fine; the extra top-level key it lives under is not.
    let err = flow.expect_err("must be refused");
    assert!(err.to_string().contains("base"), "{err}");
}

#[test]
fn triggers_are_checked_and_problems_name_the_field() {
    let found = problems(
        r#"
id: f
namespace: n
tasks:
  - {id: t, type: io.kestra.plugin.core.log.Log, message: x}
triggers:
  - {id: bad-cron, type: io.kestra.plugin.core.trigger.Schedule, cron: "61 * * * *"}
  - {id: bad-tz, type: io.kestra.plugin.core.trigger.Schedule, cron: "* * * * *", timezone: Mars/Olympus}
  - {id: nope, type: io.example.trigger.Nope}
  - {id: hook, type: io.kestra.plugin.core.trigger.Webhook, key: short}
  - {id: seconds, type: io.kestra.plugin.core.trigger.Schedule, cron: "*/5 * * * * *"}
  - {id: backfill, type: io.kestra.plugin.core.trigger.Schedule, cron: "@daily", backfill: {start: yesterday}}
"#,
    );
    assert!(has(
        &found,
        ProblemKind::Field,
        "triggers[0].cron: `61 * * * *` is not a valid cron"
    ));
    assert!(has(
        &found,
        ProblemKind::Field,
        "triggers[1].timezone: `Mars/Olympus`"
    ));
    assert!(has(
        &found,
        ProblemKind::UnknownType,
        "triggers[2].type: unknown trigger type `io.example.trigger.Nope`"
    ));
    assert!(has(
        &found,
        ProblemKind::Field,
        "triggers[3].key: must be 8 to 256"
    ));
    assert!(has(&found, ProblemKind::Field, "triggers[4].cron"));
    assert!(has(
        &found,
        ProblemKind::Field,
        "triggers[5].backfill.start: must be an RFC 3339"
    ));
    assert!(
        !found.iter().any(|(_, m)| m.contains("short")),
        "a webhook key is never echoed: {found:?}"
    );
    let flow = flow::parse(
        r#"
id: f
namespace: n
tasks:
  - {id: t, type: io.kestra.plugin.core.log.Log, message: x}
triggers:
  - id: every-second
    type: io.kestra.core.models.triggers.types.Schedule
    cron: "* * * * * *"
    withSeconds: true
    timezone: Europe/Paris
    backfill: {start: "2024-01-01T00:00:00Z"}
    inputs: {name: "{{ trigger.date }}"}
  - {id: hook, type: io.kestra.plugin.core.trigger.Webhook, key: a-secret-key, wait: true}
"#,
    )
    .expect("valid triggers");
    let TriggerKind::Schedule(schedule) = &flow.triggers[0].kind else {
        panic!("a schedule");
    };
    assert!(schedule.with_seconds);
    assert_eq!(schedule.timezone.as_deref(), Some("Europe/Paris"));
    assert!(schedule.backfill_start.is_some());
    let TriggerKind::Webhook(hook) = &flow.triggers[1].kind else {
        panic!("a webhook");
    };
    assert!(hook.wait);
}

#[test]
fn concurrency_limits_are_checked() {
    let found = problems(
        "id: f\nnamespace: n\nconcurrency: {limit: 0, behavior: WAIT}\ntasks:\n  - {id: t, type: io.kestra.plugin.core.log.Log, message: x}\n",
    );
    assert!(has(
        &found,
        ProblemKind::Field,
        "concurrency.limit: must be at least 1"
    ));
    assert!(has(
        &found,
        ProblemKind::Field,
        "concurrency.behavior: must be QUEUE, CANCEL or FAIL"
    ));
    let flow = flow::parse(
        "id: f\nnamespace: n\nconcurrency: {limit: 2}\ntasks:\n  - {id: t, type: io.kestra.plugin.core.log.Log, message: x}\n",
    )
    .expect("valid");
    assert_eq!(flow.concurrency.map(|c| c.limit), Some(2));
}

#[test]
fn flow_triggers_need_conditions_and_known_states() {
    let found = problems(
        r#"
id: f
namespace: n
tasks:
  - {id: t, type: io.kestra.plugin.core.log.Log, message: x}
triggers:
  - {id: none, type: io.kestra.plugin.core.trigger.Flow}
  - id: bad
    type: io.kestra.plugin.core.trigger.Flow
    states: [DONE]
    conditions:
      - {type: io.example.Condition}
"#,
    );
    assert!(has(
        &found,
        ProblemKind::Field,
        "triggers[0].conditions: a Flow trigger needs"
    ));
    assert!(has(
        &found,
        ProblemKind::Field,
        "triggers[1].states: names an unknown state"
    ));
    assert!(has(
        &found,
        ProblemKind::Unsupported,
        "triggers[1].conditions[0].type"
    ));
}

#[test]
fn deeply_nested_yaml_is_refused_before_the_parser_spends_minutes_on_it() {
    let deep = format!(
        "id: deep\nnamespace: team\ntasks: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let refused = problems(&deep);
    assert!(
        has(&refused, ProblemKind::Field, "nested deeper than"),
        "{refused:?}"
    );
    // A flow nested to the limit still parses as YAML (and is then judged
    // on its fields).
    let at_limit = format!(
        "id: deep\nnamespace: team\nlabels: {{k: {}{}}}\n",
        "[".repeat(flow::MAX_FLOW_NESTING - 1),
        "]".repeat(flow::MAX_FLOW_NESTING - 1)
    );
    let judged = problems(&at_limit);
    assert!(
        !has(&judged, ProblemKind::Field, "nested deeper than"),
        "{judged:?}"
    );
}
