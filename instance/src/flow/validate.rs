//! Checks across the whole flow: ids, duplicates, `dependsOn` references and
//! cycles, and template references to tasks and inputs that do not exist.

use std::collections::{HashMap, HashSet};

use super::error::{Problem, ProblemKind, problem};
use super::model::*;
use super::tasks::strings_in;
use crate::vocabulary::Label;

const MAX_ID_LEN: usize = 100;
const MAX_NAMESPACE_LEN: usize = 150;

pub(super) fn validate(flow: &Flow) -> Vec<Problem> {
    let mut problems = Vec::new();
    check_id(&flow.id, "id", IdRule::Flow, &mut problems);
    check_namespace(&flow.namespace, &mut problems);
    for (i, label) in flow.labels.iter().enumerate() {
        check_label(label, i, &mut problems);
    }
    let input_ids = unique_ids(
        flow.inputs.iter().map(|i| i.id.as_str()),
        ("inputs", "input", Some(IdRule::Input)),
        &mut problems,
    );
    unique_ids(
        flow.outputs.iter().map(|o| o.id.as_str()),
        ("outputs", "output", Some(IdRule::Task)),
        &mut problems,
    );
    // Trigger ids are checked as they are parsed.
    unique_ids(
        flow.triggers.iter().map(|t| t.id.as_str()),
        ("triggers", "trigger", None),
        &mut problems,
    );
    let task_ids = check_tasks(flow, &mut problems);
    check_references(flow, &task_ids, &input_ids, &mut problems);
    problems
}

/// The ids of a list (`inputs`, `outputs`, `triggers`): each checked
/// against `rule` (when given), one declared twice reported at its second
/// declaration.
fn unique_ids<'a>(
    ids: impl Iterator<Item = &'a str>,
    (list, what, rule): (&str, &str, Option<IdRule>),
    problems: &mut Vec<Problem>,
) -> HashSet<&'a str> {
    let mut seen = HashSet::new();
    for (i, id) in ids.enumerate() {
        let path = format!("{list}[{i}].id");
        if let Some(rule) = rule {
            check_id(id, &path, rule, problems);
        }
        if !seen.insert(id) {
            problems.push(problem(
                &path,
                None,
                ProblemKind::DuplicateId,
                format!("{what} id `{id}` is declared twice"),
            ));
        }
    }
    seen
}

/// Task ids are unique across the flow, Dags well formed; returns the ids.
fn check_tasks<'a>(flow: &'a Flow, problems: &mut Vec<Problem>) -> HashSet<&'a str> {
    let mut seen = HashSet::new();
    for task in flow.all_tasks() {
        if !seen.insert(task.id.as_str()) {
            problems.push(problem(
                "id",
                Some(&task.id),
                ProblemKind::DuplicateId,
                format!(
                    "task id `{}` is used more than once; task ids must be unique in a flow",
                    task.id
                ),
            ));
        }
        if let TaskKind::Dag { tasks, .. } = &task.kind {
            check_dag(task, tasks, problems);
        }
    }
    seen
}

/// Templates refer only to declared tasks and inputs (unless guarded).
fn check_references(
    flow: &Flow,
    task_ids: &HashSet<&str>,
    input_ids: &HashSet<&str>,
    problems: &mut Vec<Problem>,
) {
    let mut check_text = |task: Option<&str>, field: &str, text: &str| {
        for reference in references(text) {
            let (kind, known, what) = match reference.root {
                Root::Outputs => (ProblemKind::MissingTask, task_ids, "task"),
                Root::Inputs => (ProblemKind::MissingInput, input_ids, "input"),
            };
            if !reference.guarded && !known.contains(reference.name.as_str()) {
                problems.push(problem(
                    field,
                    task,
                    kind,
                    format!(
                        "refers to {what} `{}`, which this flow does not declare",
                        reference.name
                    ),
                ));
            }
        }
    };
    for task in flow.all_tasks() {
        for (field, text) in task_templates(task) {
            check_text(Some(&task.id), field, text);
        }
    }
    for (i, output) in flow.outputs.iter().enumerate() {
        for text in strings_in(&output.value) {
            check_text(None, &format!("outputs[{i}].value"), text);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum IdRule {
    Flow,
    Task,
    Input,
}

/// Ids are ASCII only: no path separators, no look-alike or invisible
/// Unicode characters, nothing a URL or a file name would treat specially.
pub(super) fn check_id(id: &str, path: &str, rule: IdRule, problems: &mut Vec<Problem>) {
    if !id.is_empty() && !is_valid_id(id, rule) {
        let allowed = match rule {
            IdRule::Flow | IdRule::Input => "letters, digits, `_`, `-` and `.`",
            IdRule::Task => "letters, digits, `_` and `-`",
        };
        problems.push(problem(
            path,
            None,
            ProblemKind::InvalidId,
            format!(
                "invalid id {}: use at most {MAX_ID_LEN} ASCII {allowed}, starting with a letter or digit",
                shown(id)
            ),
        ));
    }
}

pub(super) fn is_valid_id(id: &str, rule: IdRule) -> bool {
    let extra: &[char] = match rule {
        IdRule::Flow | IdRule::Input => &['_', '-', '.'],
        IdRule::Task => &['_', '-'],
    };
    let mut chars = id.chars();
    let valid_first = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let valid_rest = chars.all(|c| c.is_ascii_alphanumeric() || extra.contains(&c));
    valid_first && valid_rest && id.len() <= MAX_ID_LEN && !id.contains("..")
}

pub(super) fn is_valid_namespace(namespace: &str) -> bool {
    let segment_ok = |s: &str| {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    };
    namespace.len() <= MAX_NAMESPACE_LEN && namespace.split('.').all(segment_ok)
}

fn check_namespace(namespace: &str, problems: &mut Vec<Problem>) {
    if namespace.is_empty() {
        return; // already reported as missing
    }
    if !is_valid_namespace(namespace) {
        problems.push(problem(
            "namespace",
            None,
            ProblemKind::InvalidId,
            format!(
                "invalid namespace {}: use dot-separated segments of lowercase ASCII letters, digits, `_` and `-` (at most {MAX_NAMESPACE_LEN} characters)",
                shown(namespace)
            ),
        ));
    }
}

fn check_label(label: &Label, index: usize, problems: &mut Vec<Problem>) {
    let key_ok = !label.key.is_empty()
        && label.key.len() <= MAX_ID_LEN
        && label
            .key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c));
    let value_ok = label.value.len() <= 1000 && !label.value.chars().any(char::is_control);
    if !key_ok || !value_ok {
        problems.push(problem(
            &format!("labels[{index}]"),
            None,
            ProblemKind::Field,
            "label keys use ASCII letters, digits, `.`, `_`, `-` and `/`; values are at most 1000 characters without control characters".into(),
        ));
    }
}

/// Quotes an id for a message, or describes it when it is not printable ASCII.
fn shown(id: &str) -> String {
    if id.len() <= MAX_ID_LEN * 2 && id.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
        format!("`{id}`")
    } else {
        "(contains non-ASCII or control characters)".into()
    }
}

fn check_dag(dag: &Task, tasks: &[DagTask], problems: &mut Vec<Problem>) {
    let ids: HashSet<&str> = tasks.iter().map(|t| t.task.id.as_str()).collect();
    for entry in tasks {
        for dep in &entry.depends_on {
            if !ids.contains(dep.as_str()) {
                problems.push(problem(
                    "dependsOn",
                    Some(&entry.task.id),
                    ProblemKind::MissingTask,
                    format!(
                        "depends on `{dep}`, which is not a task of Dag `{}`",
                        dag.id
                    ),
                ));
            }
        }
    }
    // Depth-first search; a task met again while on the current path closes a cycle.
    let deps: HashMap<&str, Vec<&str>> = tasks
        .iter()
        .map(|t| {
            (
                t.task.id.as_str(),
                t.depends_on.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    let mut done = HashSet::new();
    for entry in tasks {
        let mut path = Vec::new();
        if let Some(cycle) = find_cycle(entry.task.id.as_str(), &deps, &mut path, &mut done) {
            problems.push(problem(
                "dependsOn",
                Some(&dag.id),
                ProblemKind::Cycle,
                format!("dependsOn forms a cycle: {}", cycle.join(" -> ")),
            ));
            return;
        }
    }
}

fn find_cycle<'a>(
    node: &'a str,
    deps: &HashMap<&'a str, Vec<&'a str>>,
    path: &mut Vec<&'a str>,
    done: &mut HashSet<&'a str>,
) -> Option<Vec<&'a str>> {
    if let Some(start) = path.iter().position(|n| *n == node) {
        let mut cycle = path[start..].to_vec();
        cycle.push(node);
        return Some(cycle);
    }
    if done.contains(node) {
        return None;
    }
    path.push(node);
    for dep in deps.get(node).into_iter().flatten() {
        if let Some(cycle) = find_cycle(dep, deps, path, done) {
            return Some(cycle);
        }
    }
    path.pop();
    done.insert(node);
    None
}

/// The template-bearing properties of a task, with their field names.
pub(super) fn task_templates(task: &Task) -> Vec<(&'static str, &str)> {
    if let Some(templates) = task.kind.runnable_templates() {
        return templates;
    }
    let mut out = Vec::new();
    match &task.kind {
        TaskKind::If { condition, .. } => out.push(("condition", condition.as_str())),
        TaskKind::Switch { value, .. } => out.push(("value", value.as_str())),
        TaskKind::ForEach { values, .. } => {
            out.extend(strings_in(values).into_iter().map(|s| ("values", s)));
        }
        TaskKind::Subflow(spec) => {
            for value in spec.inputs.values() {
                out.extend(strings_in(value).into_iter().map(|s| ("inputs", s)));
            }
        }
        _ => {}
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Root {
    Outputs,
    Inputs,
}

#[derive(Debug, PartialEq, Eq)]
struct Reference {
    root: Root,
    name: String,
    /// Followed by `??` or an `is (not) defined` test: absence is handled.
    guarded: bool,
}

/// Static references `outputs.<task>` / `outputs['<task>']` and
/// `inputs.<id>` / `inputs['<id>']` inside `{{ }}` and `{% %}` blocks.
/// Dynamic lookups (`outputs[taskrun.value]`) are not checked.
fn references(text: &str) -> Vec<Reference> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(['{']) {
        let after = &rest[start..];
        let close = if after.starts_with("{{") {
            "}}"
        } else if after.starts_with("{%") {
            "%}"
        } else {
            rest = &rest[start + 1..];
            continue;
        };
        let body_start = start + 2;
        let Some(len) = rest[body_start..].find(close) else {
            break;
        };
        scan_expression(&rest[body_start..body_start + len], &mut out);
        rest = &rest[body_start + len + 2..];
    }
    out
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn scan_expression(expr: &str, out: &mut Vec<Reference>) {
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'\'' || c == b'"' {
            i = skip_string(bytes, i);
            continue;
        }
        if !is_ident(c) || (i > 0 && (is_ident(bytes[i - 1]) || bytes[i - 1] == b'.')) {
            i += 1;
            continue;
        }
        let word_end = bytes[i..]
            .iter()
            .position(|b| !is_ident(*b))
            .map_or(bytes.len(), |p| i + p);
        let root = match &expr[i..word_end] {
            "outputs" => Some(Root::Outputs),
            "inputs" => Some(Root::Inputs),
            _ => None,
        };
        i = word_end;
        let Some(root) = root else { continue };
        let (name, chain_end) = match bytes.get(i) {
            Some(b'.') => {
                let end = bytes[i + 1..]
                    .iter()
                    .position(|b| !(is_ident(*b) || *b == b'-'))
                    .map_or(bytes.len(), |p| i + 1 + p);
                (Some(expr[i + 1..end].to_owned()), end)
            }
            Some(b'[') => match literal_key(expr, i) {
                Some((name, end)) => (Some(name), end),
                None => (None, i),
            },
            _ => (None, i),
        };
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            continue;
        };
        let end = skip_chain(bytes, chain_end);
        let tail = expr[end..].trim_start();
        let guarded = tail.starts_with("??")
            || tail.starts_with("is defined")
            || tail.starts_with("is not defined");
        out.push(Reference {
            root,
            name,
            guarded,
        });
        i = end;
    }
}

fn skip_string(bytes: &[u8], start: usize) -> usize {
    let quote = bytes[start];
    let mut i = start + 1;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if bytes[i] == quote {
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

/// `['name']` or `["name"]` starting at `open`; returns the name and the
/// index after `]`.
fn literal_key(expr: &str, open: usize) -> Option<(String, usize)> {
    let bytes = expr.as_bytes();
    let mut i = open + 1;
    while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    let quote = *bytes.get(i)?;
    if quote != b'\'' && quote != b'"' {
        return None;
    }
    let end = skip_string(bytes, i);
    let name = expr.get(i + 1..end.checked_sub(1)?)?.to_owned();
    let mut j = end;
    while bytes.get(j).is_some_and(u8::is_ascii_whitespace) {
        j += 1;
    }
    (bytes.get(j) == Some(&b']')).then_some((name, j + 1))
}

/// Skips `.attr` and `[...]` accessors after a reference.
fn skip_chain(bytes: &[u8], mut i: usize) -> usize {
    loop {
        match bytes.get(i) {
            Some(b'.') => {
                i += 1;
                while bytes.get(i).is_some_and(|b| is_ident(*b) || *b == b'-') {
                    i += 1;
                }
            }
            Some(b'[') => {
                let mut depth = 0usize;
                while let Some(&b) = bytes.get(i) {
                    match b {
                        b'\'' | b'"' => {
                            i = skip_string(bytes, i);
                            continue;
                        }
                        b'[' => depth += 1,
                        b']' => {
                            depth -= 1;
                            if depth == 0 {
                                i += 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
            }
            _ => return i,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(text: &str) -> Vec<(Root, String, bool)> {
        references(text)
            .into_iter()
            .map(|r| (r.root, r.name, r.guarded))
            .collect()
    }

    #[test]
    fn finds_dotted_and_bracketed_references() {
        assert_eq!(
            refs("{{ outputs.t1.value }} and {{ outputs['1-2'].s1[taskrun.value].value }}"),
            vec![
                (Root::Outputs, "t1".into(), false),
                (Root::Outputs, "1-2".into(), false),
            ]
        );
        assert_eq!(
            refs("{{ inputs['emptyKey']['foo'] }} {{inputs.x}}"),
            vec![
                (Root::Inputs, "emptyKey".into(), false),
                (Root::Inputs, "x".into(), false),
            ]
        );
    }

    #[test]
    fn ignores_text_outside_blocks_strings_and_member_access() {
        assert!(refs("outputs.t1 {{ 'outputs.t2' }} {{ trigger.outputs.x }}").is_empty());
        assert!(refs("{{ outputs[taskrun.value] }}").is_empty());
    }

    #[test]
    fn guarded_references_are_marked() {
        assert_eq!(
            refs("{{ outputs.not_existing ?? '' }}{% if inputs.crash is defined %}{% endif %}"),
            vec![
                (Root::Outputs, "not_existing".into(), true),
                (Root::Inputs, "crash".into(), true),
            ]
        );
    }
}
