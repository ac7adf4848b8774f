//! Server-side printing: `meta.k8s.io/v1` `Table`s for kubectl's `get`,
//! with Name, the CRD's printer columns (a small JSONPath subset: `.a.b`,
//! `[n]`, `[*]`, `[?(@.k=="v")]`) and Age.

use std::borrow::Borrow;
use std::sync::Arc;

use axum::body::Bytes;
use futures::{Stream, StreamExt};
use serde_json::{Value, json};

use crate::kubesim::resources::ResourceType;

/// Evaluates a JSONPath of the supported subset; every match, in order.
pub fn json_path<'a>(object: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut current = vec![object];
    let mut rest = path.trim().trim_start_matches('{').trim_end_matches('}');
    rest = rest.strip_prefix('$').unwrap_or(rest);
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let key = &r[..end];
            current = current.into_iter().filter_map(|v| v.get(key)).collect();
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else {
                return Vec::new();
            };
            let inside = &r[..end];
            rest = &r[end + 1..];
            if inside == "*" {
                current = current
                    .into_iter()
                    .flat_map(|v| {
                        v.as_array()
                            .map(|a| a.iter().collect::<Vec<_>>())
                            .unwrap_or_default()
                    })
                    .collect();
            } else if let Ok(i) = inside.parse::<usize>() {
                current = current.into_iter().filter_map(|v| v.get(i)).collect();
            } else if let Some(filter) = inside
                .strip_prefix("?(@.")
                .and_then(|f| f.strip_suffix(')'))
            {
                let Some((key, wanted)) = filter.split_once("==") else {
                    return Vec::new();
                };
                let wanted = wanted.trim().trim_matches(|c| c == '"' || c == '\'');
                current = current
                    .into_iter()
                    .flat_map(|v| {
                        v.as_array()
                            .map(|a| a.iter().collect::<Vec<_>>())
                            .unwrap_or_default()
                    })
                    .filter(|item| item.get(key.trim()).and_then(Value::as_str) == Some(wanted))
                    .collect();
            } else {
                return Vec::new();
            }
        } else {
            return Vec::new();
        }
    }
    current
}

/// `5s`, `3m2s`, `10m`, `5h`, `2d`, as kubectl shows ages.
pub fn human_age(created: &str) -> String {
    let Ok(then) = created.parse::<jiff::Timestamp>() else {
        return "<unknown>".into();
    };
    let secs = (jiff::Timestamp::now().as_second() - then.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn columns(rt: &ResourceType) -> Vec<Value> {
    let mut cols = vec![json!({
        "name": "Name", "type": "string", "format": "name", "priority": 0,
        "description": "Name must be unique within a namespace.",
    })];
    for c in &rt.printer_columns {
        if c.json_path == ".metadata.creationTimestamp" {
            continue;
        }
        cols.push(json!({
            "name": c.name, "type": c.type_, "format": "", "priority": c.priority, "description": c.description,
        }));
    }
    cols.push(json!({
        "name": "Age", "type": "string", "format": "", "priority": 0,
        "description": "CreationTimestamp is a timestamp representing the server time when this object was created.",
    }));
    cols
}

fn cell(value: Option<&Value>, type_: &str) -> Value {
    match value {
        None | Some(Value::Null) => Value::Null,
        Some(Value::String(s)) if type_ == "date" => json!(human_age(s)),
        Some(v @ (Value::String(_) | Value::Number(_) | Value::Bool(_))) => v.clone(),
        Some(other) => json!(other.to_string()),
    }
}

fn row(rt: &ResourceType, object: &Value) -> Value {
    let mut cells = vec![object["metadata"]["name"].clone()];
    for c in &rt.printer_columns {
        if c.json_path == ".metadata.creationTimestamp" {
            continue;
        }
        let found = json_path(object, &c.json_path);
        cells.push(cell(found.first().copied(), &c.type_));
    }
    cells.push(json!(human_age(
        object["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap_or_default()
    )));
    let mut metadata = object["metadata"].clone();
    if let Some(m) = metadata.as_object_mut() {
        m.remove("managedFields");
    }
    json!({
        "cells": cells,
        "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": metadata},
    })
}

/// A Table of objects.
pub fn table(
    rt: &ResourceType,
    objects: &[impl Borrow<Value>],
    rv: Option<u64>,
    continue_token: Option<&str>,
) -> Value {
    let mut metadata = json!({});
    if let Some(rv) = rv {
        metadata["resourceVersion"] = json!(rv.to_string());
    }
    if let Some(token) = continue_token {
        metadata["continue"] = json!(token);
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns(rt),
        "rows": objects.iter().map(|o| row(rt, o.borrow())).collect::<Vec<_>>(),
    })
}

/// Rewrites a watch stream so each event's object is a one-row Table.
pub fn watch_as_table(
    rt: Arc<ResourceType>,
    stream: impl Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static,
) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static {
    stream.map(move |line| {
        let Ok(bytes) = line;
        let Ok(mut event) = serde_json::from_slice::<Value>(&bytes) else {
            return Ok(bytes);
        };
        if matches!(
            event["type"].as_str(),
            Some("ADDED" | "MODIFIED" | "DELETED")
        ) {
            event["object"] = table(&rt, &[event["object"].clone()], None, None);
        }
        let mut text = event.to_string();
        text.push('\n');
        Ok(Bytes::from(text))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_path_subset() {
        let o = json!({"status": {"phase": "Ready", "conditions": [
            {"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}
        ]}});
        assert_eq!(json_path(&o, ".status.phase"), [&json!("Ready")]);
        assert_eq!(
            json_path(&o, ".status.conditions[?(@.type==\"Ready\")].status"),
            [&json!("True")]
        );
        assert_eq!(json_path(&o, ".status.conditions[0].type"), [&json!("A")]);
        assert_eq!(json_path(&o, ".status.conditions[*].type").len(), 2);
        assert!(json_path(&o, ".missing.x").is_empty());
    }
}
