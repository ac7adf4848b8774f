//! YAML text → [`Flow`], collecting every problem instead of stopping at the
//! first one: [`Fields`] reads one mapping, `parts` the flow-level parts,
//! `triggers` and `tasks` those. Structural checks across the whole flow
//! (ids, references, cycles) live in `validate`.

use std::time::Duration;

use serde_json::{Map, Value};

mod fields;
mod parts;
mod tasks;
mod triggers;

pub(crate) use fields::Fields;

use super::error::{FlowError, Problem, ProblemKind, problem};
use super::model::*;
use parts::{concurrency_from, inputs_from, labels_from, outputs_from};
use triggers::triggers_from;

/// Largest flow source accepted, in bytes.
pub const MAX_SOURCE_BYTES: usize = 1024 * 1024;

/// Deepest nesting of flow collections (`[...]`, `{...}`) accepted. The YAML
/// parser's work grows with the square of this depth (it rechecks every open
/// level at each token): 100,000 levels in 200 KB keep a core busy for a
/// minute. Real flows nest a handful of levels.
pub const MAX_FLOW_NESTING: usize = 100;

/// The deepest nesting of flow collections in `source`, counting the
/// brackets outside quoted scalars and comments. A plain scalar may hold an
/// unmatched bracket, which can only over-count by one per bracket.
fn flow_nesting(source: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut quote: Option<char> = None;
    let mut in_comment = false;
    let mut previous = '\n';
    let mut chars = source.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (_, '\n') if in_comment => in_comment = false,
            _ if in_comment => {}
            (Some('\''), '\'') if chars.peek() == Some(&'\'') => {
                chars.next();
            }
            (Some('"'), '\\') => {
                chars.next();
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '#') if previous.is_whitespace() => in_comment = true,
            (None, '[' | '{') => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            (None, ']' | '}') => depth = depth.saturating_sub(1),
            _ => {}
        }
        previous = c;
    }
    deepest
}

/// Parses YAML into a flow without the cross-task checks of `validate`.
pub(super) fn parse_flow(source: &str) -> Result<Flow, FlowError> {
    if source.len() > MAX_SOURCE_BYTES {
        return Err(invalid(
            "$",
            ProblemKind::Field,
            format!("flow source is larger than {MAX_SOURCE_BYTES} bytes"),
        ));
    }
    if flow_nesting(source) > MAX_FLOW_NESTING {
        return Err(invalid(
            "$",
            ProblemKind::Field,
            format!(
                "flow collections ([...], {{...}}) are nested deeper than {MAX_FLOW_NESTING} levels"
            ),
        ));
    }
    let mut yaml: serde_norway::Value = serde_norway::from_str(source).map_err(yaml_error)?;
    yaml.apply_merge().map_err(yaml_error)?;
    let mut problems = Vec::new();
    let json = to_json(yaml, "$", &mut problems);
    let Value::Object(map) = json else {
        if problems.is_empty() {
            problems.push(problem(
                "$",
                None,
                ProblemKind::Field,
                "a flow must be a YAML mapping".into(),
            ));
        }
        return Err(FlowError::Invalid { problems });
    };
    let flow = {
        let mut fields = Fields::new(map, String::new(), None, &mut problems);
        let flow = flow_from_fields(&mut fields);
        fields.finish();
        flow
    };
    if problems.is_empty() {
        Ok(flow)
    } else {
        Err(FlowError::Invalid { problems })
    }
}

fn yaml_error(err: serde_norway::Error) -> FlowError {
    let (line, column) = err
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((1, 1));
    let mut message = err.to_string();
    // The library appends the location to its message; it is reported apart.
    if let Some(at) = message.find(" at line ") {
        message.truncate(at);
    }
    FlowError::Yaml {
        line,
        column,
        message,
    }
}

fn invalid(path: &str, kind: ProblemKind, message: String) -> FlowError {
    FlowError::Invalid {
        problems: vec![problem(path, None, kind, message)],
    }
}

/// YAML values as JSON: mapping keys that are scalars become strings (a
/// Switch case written `1:` matches the value "1"), anything else is refused.
fn to_json(value: serde_norway::Value, path: &str, problems: &mut Vec<Problem>) -> Value {
    use serde_norway::Value as Y;
    match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                match n.as_f64().and_then(serde_json::Number::from_f64) {
                    Some(f) => Value::Number(f),
                    None => {
                        problems.push(problem(
                            path,
                            None,
                            ProblemKind::Field,
                            "numbers must be finite".into(),
                        ));
                        Value::Null
                    }
                }
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| to_json(item, &format!("{path}[{i}]"), problems))
                .collect(),
        ),
        Y::Mapping(mapping) => {
            let mut map = Map::new();
            for (key, item) in mapping {
                let key = match key {
                    Y::String(s) => s,
                    Y::Bool(b) => b.to_string(),
                    Y::Number(n) => n.to_string(),
                    _ => {
                        problems.push(problem(
                            path,
                            None,
                            ProblemKind::Field,
                            "mapping keys must be strings, numbers or booleans".into(),
                        ));
                        continue;
                    }
                };
                let child = to_json(item, &format!("{path}.{key}"), problems);
                map.insert(key, child);
            }
            Value::Object(map)
        }
        Y::Tagged(tagged) => {
            problems.push(problem(
                path,
                None,
                ProblemKind::Field,
                format!("YAML tags are not supported (found `{}`)", tagged.tag),
            ));
            Value::Null
        }
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// An ISO-8601 duration (`PT1S`, `PT0.250S`, `PT15M`, `P1D`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let signed: jiff::SignedDuration = text
        .parse()
        .map_err(|_| format!("`{text}` is not an ISO-8601 duration such as PT30S or PT1H"))?;
    Duration::try_from(signed).map_err(|_| format!("`{text}` must not be negative"))
}

fn flow_from_fields(f: &mut Fields<'_>) -> Flow {
    let id = f.required_string("id");
    let namespace = f.required_string("namespace");
    // Exported flows carry the revision the server gave them; it is the
    // store's to assign, so the written value is ignored.
    let _ = f.take("revision");
    let description = f.string("description");
    let labels = labels_from(f);
    let inputs = inputs_from(f, "inputs");
    let variables = f.object("variables");
    let tasks = f.required_tasks("tasks");
    let errors = f.tasks("errors");
    let finally = f.tasks("finally");
    let outputs = outputs_from(f);
    let disabled = f.bool("disabled", false);
    let retry = f.retry("retry");
    let triggers = triggers_from(f);
    let concurrency = concurrency_from(f);
    Flow {
        id,
        namespace,
        description,
        labels,
        inputs,
        variables,
        tasks,
        errors,
        finally,
        outputs,
        disabled,
        retry,
        triggers,
        concurrency,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_nesting_counts_brackets_outside_quotes_and_comments() {
        assert_eq!(flow_nesting("a: [1, {b: [2]}]\n"), 3);
        assert_eq!(flow_nesting("a: '[[[['\nb: \"{{{\\\"{\"\n"), 0);
        assert_eq!(flow_nesting("a: 1 # [[[[\nb: [x]\n"), 1);
        assert_eq!(flow_nesting("a: 'it''s [' \nb: [[]]\n"), 2);
    }
}
