//! Templates in Kestra's Pebble style, rendered with minijinja.
//!
//! Pebble and Jinja share most syntax; the differences Kestra flows use are
//! rewritten before rendering: `a ? b : c`, `a ?? b` and the `equals`
//! operator. Variables are strict where it matters: printing an undefined
//! value is an error (as Kestra's strict mode), while attribute access on an
//! undefined value stays undefined so `??` and `is defined` can handle it.

use std::fmt::Write as _;

use minijinja::value::{Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, State, UndefinedBehavior};

/// A template that did not render; the message names the problem (never
/// the values being rendered).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template error: {0}")]
pub struct TemplateError(pub String);

impl From<Error> for TemplateError {
    fn from(err: Error) -> Self {
        let mut message = err.kind().to_string();
        if let Some(detail) = err.detail() {
            let _ = write!(message, ": {detail}");
        }
        if let Some(line) = err.line() {
            let _ = write!(message, " (line {line})");
        }
        TemplateError(message)
    }
}

/// The configured template environment; cheap to share.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

/// Instructions one render may execute.
const MAX_FUEL: u64 = 2_000_000;

/// Names of context entries the engine sets for the functions below.
pub const LOOP_VALUES_VAR: &str = "__loopValues";
pub const ERROR_LOGS_VAR: &str = "__errorLogs";

impl Templates {
    pub fn new() -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_formatter(format_value);
        env.set_recursion_limit(100);
        // Bounds the work one render may do, so a hostile template cannot
        // keep an engine thread busy forever.
        env.set_fuel(Some(MAX_FUEL));
        env.add_filter("json", to_json);
        env.add_filter("toJson", to_json);
        env.add_filter("jq", jq);
        env.add_filter("number", number);
        env.add_filter("keys", keys);
        env.add_filter("values", values);
        env.add_filter("startsWith", |s: String, p: String| s.starts_with(&p));
        env.add_filter("endsWith", |s: String, p: String| s.ends_with(&p));
        env.add_filter("substringBefore", |s: String, p: String| {
            s.split_once(&p).map_or(s.clone(), |(a, _)| a.to_owned())
        });
        env.add_filter("substringAfter", |s: String, p: String| {
            s.split_once(&p)
                .map_or(String::new(), |(_, b)| b.to_owned())
        });
        env.add_filter("slugify", slugify);
        env.add_function("json", from_json);
        env.add_function("fromJson", from_json);
        env.add_function("now", || jiff::Timestamp::now().to_string());
        env.add_function("currentEachOutput", current_each_output);
        env.add_function("errorLogs", |state: &State| {
            state
                .lookup(ERROR_LOGS_VAR)
                .unwrap_or_else(|| Value::from(Vec::<Value>::new()))
        });
        env.add_test("json", is_json);
        Templates { env }
    }

    /// Renders one template string. Text without `{{` or `{%` is returned as is.
    pub fn render(&self, source: &str, context: &Value) -> Result<String, TemplateError> {
        if !source.contains("{{") && !source.contains("{%") {
            return Ok(source.to_owned());
        }
        let translated = translate(source);
        Ok(self.env.render_str(&translated, context)?)
    }

    /// Renders every string inside a JSON value.
    pub fn render_json(
        &self,
        value: &serde_json::Value,
        context: &Value,
    ) -> Result<serde_json::Value, TemplateError> {
        Ok(match value {
            serde_json::Value::String(s) => serde_json::Value::String(self.render(s, context)?),
            serde_json::Value::Array(items) => serde_json::Value::Array(
                items
                    .iter()
                    .map(|item| self.render_json(item, context))
                    .collect::<Result<_, _>>()?,
            ),
            serde_json::Value::Object(map) => serde_json::Value::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), self.render_json(v, context)?)))
                    .collect::<Result<_, TemplateError>>()?,
            ),
            other => other.clone(),
        })
    }
}

/// Printing: undefined is an error, none is empty, strings print raw and
/// maps and lists as compact JSON (as Pebble prints them in Kestra).
fn format_value(out: &mut minijinja::Output, _: &State, value: &Value) -> Result<(), Error> {
    let text = match value.kind() {
        ValueKind::Undefined => {
            return Err(Error::new(
                ErrorKind::UndefinedError,
                "a variable used in the expression is not defined",
            ));
        }
        ValueKind::None => String::new(),
        ValueKind::Bool => value.is_true().to_string(),
        ValueKind::String => value.as_str().unwrap_or_default().to_owned(),
        ValueKind::Map | ValueKind::Seq | ValueKind::Iterable => serde_json::to_string(value)
            .map_err(|e| Error::new(ErrorKind::BadSerialization, e.to_string()))?,
        _ => value.to_string(),
    };
    out.write_str(&text)
        .map_err(|e| Error::new(ErrorKind::WriteFailure, e.to_string()))
}

fn to_json(value: Value) -> Result<String, Error> {
    serde_json::to_string(&value)
        .map_err(|e| Error::new(ErrorKind::BadSerialization, e.to_string()))
}

fn from_json(text: String) -> Result<Value, Error> {
    let parsed: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("not JSON: {e}")))?;
    Ok(Value::from_serialize(parsed))
}

fn is_json(value: Value) -> bool {
    match value.as_str() {
        Some(text) => matches!(
            serde_json::from_str::<serde_json::Value>(text),
            Ok(serde_json::Value::Object(_) | serde_json::Value::Array(_))
        ),
        None => matches!(value.kind(), ValueKind::Map | ValueKind::Seq),
    }
}

fn number(value: Value) -> Result<Value, Error> {
    if matches!(value.kind(), ValueKind::Number) {
        return Ok(value);
    }
    let text = value.to_string();
    let text = text.trim();
    if let Ok(i) = text.parse::<i64>() {
        return Ok(Value::from(i));
    }
    text.parse::<f64>()
        .map(Value::from)
        .map_err(|_| Error::new(ErrorKind::InvalidOperation, "not a number"))
}

fn keys(value: Value) -> Result<Value, Error> {
    let keys: Vec<Value> = value.try_iter()?.collect();
    Ok(Value::from(keys))
}

fn values(value: Value) -> Result<Value, Error> {
    let mut out = Vec::new();
    for key in value.try_iter()? {
        out.push(value.get_item(&key)?);
    }
    Ok(Value::from(out))
}

fn slugify(text: String) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.to_lowercase().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_owned()
}

/// The output of a looped task for the loop iteration being rendered:
/// `outputs['t']` nested by loop values, walked down with the current ones.
fn current_each_output(state: &State, value: Value) -> Result<Value, Error> {
    let mut current = value;
    let loop_values = state.lookup(LOOP_VALUES_VAR).unwrap_or_default();
    if let Ok(iter) = loop_values.try_iter() {
        for key in iter {
            match current.get_item(&key) {
                Ok(next) if !next.is_undefined() => current = next,
                _ => break,
            }
        }
    }
    Ok(current)
}

/// A jq subset: `.`, `.a.b`, `.["a"]`, `.[0]` and `.[]`; results are always a
/// list, as Kestra's `jq` filter returns them. A string input is parsed as JSON.
fn jq(value: Value, program: String) -> Result<Value, Error> {
    let input: serde_json::Value = match value.as_str() {
        Some(text) => serde_json::from_str(text).map_err(|e| {
            Error::new(
                ErrorKind::InvalidOperation,
                format!("jq input is not JSON: {e}"),
            )
        })?,
        None => serde_json::to_value(&value)
            .map_err(|e| Error::new(ErrorKind::BadSerialization, e.to_string()))?,
    };
    let mut results = vec![input];
    for step in parse_jq(&program)? {
        let mut next = Vec::new();
        for item in results {
            match &step {
                JqStep::Key(key) => next.push(item.get(key).cloned().unwrap_or_default()),
                JqStep::Index(i) => next.push(item.get(*i).cloned().unwrap_or_default()),
                JqStep::Each => match item {
                    serde_json::Value::Array(items) => next.extend(items),
                    serde_json::Value::Object(map) => next.extend(map.into_iter().map(|(_, v)| v)),
                    _ => {
                        return Err(Error::new(
                            ErrorKind::InvalidOperation,
                            "jq: cannot iterate",
                        ));
                    }
                },
            }
        }
        results = next;
    }
    Ok(Value::from_serialize(results))
}

enum JqStep {
    Key(String),
    Index(usize),
    Each,
}

fn parse_jq(program: &str) -> Result<Vec<JqStep>, Error> {
    let unsupported = || {
        Error::new(
            ErrorKind::InvalidOperation,
            "jq: only paths like .a.b, .[0], .[\"k\"] and .[] are supported",
        )
    };
    let program = program.trim();
    if !program.starts_with('.') {
        return Err(unsupported());
    }
    let mut steps = Vec::new();
    let mut rest = &program[1..];
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']').ok_or_else(unsupported)?;
            let inner = after[..end].trim();
            if inner.is_empty() {
                steps.push(JqStep::Each);
            } else if let Ok(i) = inner.parse::<usize>() {
                steps.push(JqStep::Index(i));
            } else if inner.len() >= 2 && inner.starts_with('"') && inner.ends_with('"') {
                steps.push(JqStep::Key(inner[1..inner.len() - 1].to_owned()));
            } else {
                return Err(unsupported());
            }
            rest = &after[end + 1..];
        } else {
            let rest_trimmed = rest.strip_prefix('.').unwrap_or(rest);
            let end = rest_trimmed.find(['.', '[']).unwrap_or(rest_trimmed.len());
            let key = &rest_trimmed[..end];
            if key.is_empty()
                || !key
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
            {
                return Err(unsupported());
            }
            steps.push(JqStep::Key(key.to_owned()));
            rest = &rest_trimmed[end..];
        }
    }
    Ok(steps)
}

/// Rewrites Pebble-only syntax inside `{{ … }}` and `{% … %}` into Jinja.
pub fn translate(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find('{') {
        let after = &rest[start..];
        let (close, is_expr) = if after.starts_with("{{") {
            ("}}", true)
        } else if after.starts_with("{%") {
            ("%}", false)
        } else {
            out.push_str(&rest[..start + 1]);
            rest = &rest[start + 1..];
            continue;
        };
        let Some(len) = find_close(&rest[start + 2..], close) else {
            break;
        };
        out.push_str(&rest[..start + 2]);
        let body = &rest[start + 2..start + 2 + len];
        // Keep whitespace-control markers (`{{-`, `-}}`) outside the rewrite.
        let (lead, inner, trail) = split_markers(body);
        out.push_str(lead);
        if is_expr {
            out.push_str(&translate_expr(inner));
        } else {
            out.push_str(&replace_words(inner, "equals", "=="));
        }
        out.push_str(trail);
        out.push_str(close);
        rest = &rest[start + 2 + len + 2..];
    }
    out.push_str(rest);
    out
}

fn split_markers(body: &str) -> (&str, &str, &str) {
    let lead = if body.starts_with(['-', '+', '~']) {
        1
    } else {
        0
    };
    let trail = if body.len() > lead && body.ends_with(['-', '+', '~']) {
        1
    } else {
        0
    };
    (
        &body[..lead],
        &body[lead..body.len() - trail],
        &body[body.len() - trail..],
    )
}

/// Finds `close` outside string literals.
fn find_close(text: &str, close: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' | b'"' => i = skip_string(bytes, i),
            _ if text[i..].starts_with(close) => return Some(i),
            _ => i += 1,
        }
    }
    None
}

fn skip_string(bytes: &[u8], start: usize) -> usize {
    let quote = bytes[start];
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b if b == quote => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// Positions of `needle` at bracket depth 0, outside strings.
fn top_level(expr: &str, mut matches: impl FnMut(&str, usize) -> bool) -> Option<usize> {
    let bytes = expr.as_bytes();
    let mut depth = 0i32;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' | b'"' => {
                i = skip_string(bytes, i);
                continue;
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            _ if depth == 0 && matches(expr, i) => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

fn translate_expr(expr: &str) -> String {
    // Ternary: the first top-level `?` that is not part of `??`.
    let ternary = top_level(expr, |e, i| {
        let b = e.as_bytes();
        b[i] == b'?' && b.get(i + 1) != Some(&b'?') && (i == 0 || b[i - 1] != b'?')
    });
    if let Some(q) = ternary {
        let cond = &expr[..q];
        let rest = &expr[q + 1..];
        // The matching `:` skips nested ternaries in the then-branch.
        let mut nested = 0;
        let colon = top_level(rest, |e, i| {
            let b = e.as_bytes();
            if b[i] == b'?' && b.get(i + 1) != Some(&b'?') && (i == 0 || b[i - 1] != b'?') {
                nested += 1;
                false
            } else if b[i] == b':' {
                if nested == 0 {
                    true
                } else {
                    nested -= 1;
                    false
                }
            } else {
                false
            }
        });
        if let Some(c) = colon {
            return format!(
                " (({}) if ({}) else ({})) ",
                translate_expr(&rest[..c]),
                translate_expr(cond),
                translate_expr(&rest[c + 1..])
            );
        }
    }
    if let Some(q) = top_level(expr, |e, i| e[i..].starts_with("??")) {
        let left = translate_expr(&expr[..q]);
        let right = translate_expr(&expr[q + 2..]);
        return format!(
            " (({left}) if (({left}) is defined and ({left}) is not none) else ({right})) "
        );
    }
    replace_words(expr, "equals", "==")
}

/// Replaces a whole word outside string literals.
fn replace_words(text: &str, word: &str, with: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    while i < bytes.len() {
        if bytes[i] == b'\'' || bytes[i] == b'"' {
            let end = skip_string(bytes, i);
            out.push_str(&text[i..end]);
            i = end;
            continue;
        }
        if text[i..].starts_with(word)
            && (i == 0 || !is_ident(bytes[i - 1]))
            && bytes.get(i + word.len()).is_none_or(|b| !is_ident(*b))
        {
            out.push_str(with);
            i += word.len();
            continue;
        }
        let ch = text[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(source: &str, ctx: serde_json::Value) -> Result<String, TemplateError> {
        Templates::new().render(source, &Value::from_serialize(ctx))
    }

    #[test]
    fn pebble_ternary_coalesce_and_equals() {
        let ctx = serde_json::json!({"n": 3, "v": "value 2", "outputs": {}});
        assert_eq!(
            render("{{ n == 3 ? 'ok' : ko }}", ctx.clone()).as_deref(),
            Ok("ok")
        );
        assert!(render("{{ n == 2 ? 'ok' : ko }}", ctx.clone()).is_err());
        assert_eq!(
            render("{{ v equals 'value 2' }}", ctx.clone()).as_deref(),
            Ok("true")
        );
        assert_eq!(
            render("{{ outputs.missing.value ?? 'fallback' }}", ctx.clone()).as_deref(),
            Ok("fallback")
        );
        assert_eq!(
            render("{{ outputs.not_existing ?? '' }}", ctx).as_deref(),
            Ok("")
        );
    }

    #[test]
    fn undefined_variables_fail_when_printed() {
        let err = render("{{ missingVar }}", serde_json::json!({})).expect_err("strict");
        assert!(err.to_string().contains("undefined"), "{err}");
        assert_eq!(
            render("{{ x is defined }}", serde_json::json!({})).as_deref(),
            Ok("false")
        );
    }

    #[test]
    fn maps_print_as_compact_json_and_filters_work() {
        let ctx = serde_json::json!({"o": {"value": "x"}, "s": "{\"key\": \"k\"}"});
        assert_eq!(
            render("{{ o }}", ctx.clone()).as_deref(),
            Ok("{\"value\":\"x\"}")
        );
        assert_eq!(
            render("{{ s | jq('.key') }}", ctx.clone()).as_deref(),
            Ok("[\"k\"]")
        );
        assert_eq!(
            render("{{ s is json }}", ctx.clone()).as_deref(),
            Ok("true")
        );
        assert_eq!(
            render("{{ 'plain' is json }}", ctx.clone()).as_deref(),
            Ok("false")
        );
        assert_eq!(render("{{ json(s).key }}", ctx.clone()).as_deref(), Ok("k"));
        assert_eq!(
            render("{{ o | json }}", ctx).as_deref(),
            Ok("{\"value\":\"x\"}")
        );
    }

    #[test]
    fn current_each_output_walks_loop_values() {
        let ctx = serde_json::json!({
            "outputs": {"t": {"a": {"b": {"value": "ab"}}}},
            LOOP_VALUES_VAR: ["a", "b"],
        });
        assert_eq!(
            render("{{ currentEachOutput(outputs['t']).value }}", ctx).as_deref(),
            Ok("ab")
        );
    }

    #[test]
    fn whitespace_control_and_error_logs() {
        let ctx =
            serde_json::json!({ERROR_LOGS_VAR: [{"taskId": "failed", "message": "Task failure"}]});
        let source = "{%- for log in errorLogs() -%}\n- task: {{ log.taskId }}, message: {{ log.message }}\n{%- endfor -%}\n";
        assert_eq!(
            render(source, ctx).as_deref(),
            Ok("- task: failed, message: Task failure")
        );
    }

    #[test]
    fn runaway_templates_run_out_of_fuel() {
        let err = render(
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            serde_json::json!({}),
        );
        assert!(err.is_err());
    }

    #[test]
    fn template_syntax_errors_are_reported() {
        let err = render(
            "{{ a == 'x' and {% for e in b %}{{ e }}{% endfor %} }}",
            serde_json::json!({"a": 1, "b": []}),
        );
        assert!(err.is_err());
    }
}
