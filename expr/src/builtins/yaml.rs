//! YAML: the `yaml` filter writes a value as YAML text (as Kestra's
//! Jackson YAML mapper does), the `yaml()` function parses YAML.

use super::{Args, Def, FilterFn, FunctionFn, def};
use crate::eval::Renderer;
use crate::value::{Value, write_json_string};

pub(crate) const FILTERS: &[Def<FilterFn>] =
    &[def("yaml", &[], |_, v, _| Ok(Value::from(to_yaml(&v))))];

pub(crate) const FUNCTIONS: &[Def<FunctionFn>] = &[
    def("yaml", &["yaml"], from_yaml),
    def("fromYaml", &["yaml"], from_yaml),
];

fn from_yaml(_: &mut Renderer<'_>, a: &Args) -> Result<Value, String> {
    match a.req(0, "yaml")? {
        Value::Null => Ok(Value::Null),
        Value::String(s) => serde_norway::from_str(s).map_err(|e| format!("invalid YAML: {e}")),
        other => Ok(other.clone()),
    }
}

pub(crate) fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::List(items) if !items.is_empty() => write_list(items, 0, &mut out),
        Value::Map(map) if !map.is_empty() => write_map(map, 0, &mut out),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

fn write_list(items: &[Value], indent: usize, out: &mut String) {
    for item in items {
        out.push_str(&" ".repeat(indent + 1));
        out.push_str("- ");
        match item {
            Value::Map(map) if !map.is_empty() => {
                let mut inner = String::new();
                write_map(map, indent + 3, &mut inner);
                out.push_str(inner.trim_start());
            }
            Value::List(inner) if !inner.is_empty() => {
                out.push('\n');
                write_list(inner, indent + 2, out);
            }
            other => {
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

fn write_map(map: &crate::value::Map, indent: usize, out: &mut String) {
    for (k, v) in map {
        out.push_str(&" ".repeat(indent));
        out.push_str(&string(k));
        out.push(':');
        match v {
            Value::Map(inner) if !inner.is_empty() => {
                out.push('\n');
                write_map(inner, indent + 2, out);
            }
            Value::List(items) if !items.is_empty() => {
                out.push('\n');
                write_list(items, indent, out);
            }
            other => {
                out.push(' ');
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::String(s) => string(s),
        Value::List(_) => "[]".into(),
        Value::Map(_) => "{}".into(),
        other => other.to_print(),
    }
}

/// Strings plain where YAML reads them back as the same string, quoted
/// otherwise (Jackson's MINIMIZE_QUOTES).
fn string(s: &str) -> String {
    let special = s.is_empty()
        || s.trim() != s
        || s.parse::<f64>().is_ok()
        || matches!(
            s.to_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "~"
        )
        || s.starts_with([
            '-', '?', ':', ',', '[', ']', '{', '}', '#', '&', '*', '!', '|', '>', '\'', '"', '%',
            '@', '`',
        ])
        || s.contains(": ")
        || s.contains(" #")
        || s.chars().any(char::is_control);
    if special {
        let mut out = String::new();
        write_json_string(&mut out, s);
        out
    } else {
        s.to_string()
    }
}
