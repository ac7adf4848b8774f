//! Field ownership (`metadata.managedFields`, `FieldsV1`) and server-side
//! apply: each manager owns the fields it applied; applying again without a
//! field the manager owned alone removes it; a field another manager owns
//! with a different value is a conflict unless `force` is set; ordinary
//! writes (create, update, patch) give the fields they change to their
//! manager.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::kubesim::patch::builtin_list_key;

mod apply;

pub use apply::apply;

/// One step of a field path, in `FieldsV1` spelling: `f:name`, `k:{...}`
/// (an item of a keyed list) or `v:<json>` (an item of a set).
pub type Path = Vec<String>;

/// A set of owned field paths.
pub type FieldSet = BTreeSet<Path>;

/// How a list is merged and owned.
enum ListKind {
    /// Items identified by these keys.
    Map(Vec<String>),
    /// Items are scalars, owned one by one.
    Set,
    /// Replaced and owned as a whole.
    Atomic,
}

fn list_kind(field: &str, schema: Option<&Value>, items: &[Value], root_meta: bool) -> ListKind {
    if let Some(schema) = schema {
        match schema["x-kubernetes-list-type"].as_str() {
            Some("map") => {
                let keys = schema["x-kubernetes-list-map-keys"]
                    .as_array()
                    .map(|k| {
                        k.iter()
                            .filter_map(|s| s.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                return ListKind::Map(keys);
            }
            Some("set") => return ListKind::Set,
            Some(_) => return ListKind::Atomic,
            None => {}
        }
        if !root_meta && field != "conditions" {
            return ListKind::Atomic;
        }
    }
    if field == "finalizers" {
        return ListKind::Set;
    }
    match builtin_list_key(field, items) {
        Some(key) => ListKind::Map(vec![key.to_string()]),
        None => ListKind::Atomic,
    }
}

fn item_key(item: &Value, keys: &[String]) -> String {
    let mut map = Map::new();
    for k in keys {
        map.insert(k.clone(), item.get(k).cloned().unwrap_or(Value::Null));
    }
    format!("k:{}", Value::Object(map))
}

fn sub_schema<'a>(schema: Option<&'a Value>, key: &str) -> Option<&'a Value> {
    let s = schema?;
    s["properties"].get(key).or_else(|| {
        s["additionalProperties"]
            .as_object()
            .map(|_| &s["additionalProperties"])
    })
}

/// Which part of an object a write concerns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Part {
    /// Everything but status.
    #[default]
    Main,
    /// Only status.
    Status,
}

fn tracked_top_level(key: &str, part: Part) -> bool {
    match part {
        Part::Status => key == "status",
        Part::Main => !matches!(key, "apiVersion" | "kind" | "status"),
    }
}

const TRACKED_METADATA: &[&str] = &["labels", "annotations", "finalizers", "ownerReferences"];

/// The fields an object (or applied configuration) sets.
pub fn field_set(object: &Value, schema: Option<&Value>, part: Part) -> FieldSet {
    let mut out = FieldSet::new();
    let Some(map) = object.as_object() else {
        return out;
    };
    for (key, value) in map {
        if !tracked_top_level(key, part) {
            continue;
        }
        if key == "metadata" {
            for meta_key in TRACKED_METADATA {
                if let Some(v) = value.get(*meta_key) {
                    let path = vec!["f:metadata".to_string(), format!("f:{meta_key}")];
                    collect(v, meta_key, None, true, path, &mut out);
                }
            }
            continue;
        }
        collect(
            value,
            key,
            sub_schema(schema, key),
            false,
            vec![format!("f:{key}")],
            &mut out,
        );
    }
    out
}

fn collect(
    value: &Value,
    field: &str,
    schema: Option<&Value>,
    meta: bool,
    path: Path,
    out: &mut FieldSet,
) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let mut p = path.clone();
                p.push(format!("f:{k}"));
                collect(v, k, sub_schema(schema, k), meta, p, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let item_schema = schema.map(|s| &s["items"]);
            match list_kind(field, schema, items, meta) {
                ListKind::Map(keys) => {
                    for item in items {
                        let mut p = path.clone();
                        p.push(item_key(item, &keys));
                        out.insert(p.clone());
                        if let Some(m) = item.as_object() {
                            for (k, v) in m {
                                let mut q = p.clone();
                                q.push(format!("f:{k}"));
                                collect(v, k, sub_schema(item_schema, k), meta, q, out);
                            }
                        }
                    }
                }
                ListKind::Set => {
                    for item in items {
                        let mut p = path.clone();
                        p.push(format!("v:{item}"));
                        out.insert(p);
                    }
                }
                ListKind::Atomic => {
                    out.insert(path);
                }
            }
        }
        _ => {
            out.insert(path);
        }
    }
}

/// The value at a path, if present.
pub fn value_at<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut node = object;
    for step in path {
        node = step_into(node, step)?;
    }
    Some(node)
}

fn step_into<'a>(node: &'a Value, step: &str) -> Option<&'a Value> {
    if let Some(f) = step.strip_prefix("f:") {
        node.get(f)
    } else if let Some(k) = step.strip_prefix("k:") {
        let key: Map<String, Value> = serde_json::from_str(k).ok()?;
        node.as_array()?
            .iter()
            .find(|item| key.iter().all(|(kk, kv)| item.get(kk) == Some(kv)))
    } else if let Some(v) = step.strip_prefix("v:") {
        let wanted: Value = serde_json::from_str(v).ok()?;
        node.as_array()?.iter().find(|item| **item == wanted)
    } else {
        None
    }
}

/// Removes the field at `path` (a whole list item for a `k:`/`v:` step),
/// then any map left empty by the removal.
pub fn remove_at(object: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = &mut *object;
    for step in parents {
        let next = if let Some(f) = step.strip_prefix("f:") {
            node.get_mut(f)
        } else if let Some(k) = step.strip_prefix("k:") {
            let Ok(key) = serde_json::from_str::<Map<String, Value>>(k) else {
                return;
            };
            node.as_array_mut().and_then(|items| {
                items
                    .iter_mut()
                    .find(|item| key.iter().all(|(kk, kv)| item.get(kk) == Some(kv)))
            })
        } else {
            None
        };
        match next {
            Some(n) => node = n,
            None => return,
        }
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = node.as_object_mut() {
            m.remove(f);
        }
    } else if let Some(k) = last.strip_prefix("k:") {
        if let (Ok(key), Some(items)) = (
            serde_json::from_str::<Map<String, Value>>(k),
            node.as_array_mut(),
        ) {
            items.retain(|item| !key.iter().all(|(kk, kv)| item.get(kk) == Some(kv)));
        }
    } else if let Some(v) = last.strip_prefix("v:")
        && let (Ok(wanted), Some(items)) = (serde_json::from_str::<Value>(v), node.as_array_mut())
    {
        items.retain(|item| *item != wanted);
    }
    // Drop maps the removal emptied (but never the top-level parts).
    if parents.len() > 1
        && value_at(object, parents).is_some_and(|v| v.as_object().is_some_and(Map::is_empty))
    {
        remove_at(object, parents);
    }
}

/// Merges an applied configuration into an object: maps recursively, keyed
/// lists item by item, sets by union, everything else replaced.
pub fn merge_applied(
    target: &mut Value,
    applied: &Value,
    field: &str,
    schema: Option<&Value>,
    meta: bool,
) {
    match (target, applied) {
        (Value::Object(target), Value::Object(applied)) => {
            for (k, v) in applied {
                if v.is_null() {
                    target.remove(k);
                    continue;
                }
                let in_meta = meta || k == "metadata";
                let s = if k == "metadata" {
                    None
                } else {
                    sub_schema(schema, k)
                };
                let slot = target.entry(k.clone()).or_insert(Value::Null);
                merge_applied(slot, v, k, s, in_meta);
            }
        }
        (Value::Array(existing), Value::Array(items)) => {
            let item_schema = schema.map(|s| &s["items"]);
            match list_kind(field, schema, items, meta) {
                ListKind::Map(keys) => {
                    for item in items {
                        let key = item_key(item, &keys);
                        let pos = existing.iter().position(|e| item_key(e, &keys) == key);
                        match pos {
                            Some(i) => merge_applied(&mut existing[i], item, "", item_schema, meta),
                            None => existing.push(item.clone()),
                        }
                    }
                }
                ListKind::Set => {
                    for item in items {
                        if !existing.contains(item) {
                            existing.push(item.clone());
                        }
                    }
                }
                ListKind::Atomic => *existing = items.clone(),
            }
        }
        (target, applied) => *target = applied.clone(),
    }
}

/// One `managedFields` entry, parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Manager name.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// `apiVersion` of the write.
    pub api_version: String,
    /// `time`.
    pub time: String,
    /// `""` or `status`.
    pub subresource: String,
    /// The fields owned.
    pub fields: FieldSet,
}

fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Value::Object(Map::new());
    for path in set {
        node_at(&mut root, path);
    }
    // A path that is itself owned and also has owned children is marked ".".
    for path in set {
        if let Some(m) = node_at(&mut root, path).as_object_mut()
            && !m.is_empty()
        {
            m.insert(".".into(), json!({}));
        }
    }
    root
}

fn node_at<'a>(root: &'a mut Value, path: &[String]) -> &'a mut Value {
    let mut node = root;
    for step in path {
        if !node.is_object() {
            *node = json!({});
        }
        node = node
            .as_object_mut()
            .map(|m| m.entry(step.clone()).or_insert_with(|| json!({})))
            .expect("fieldsV1 nodes are objects");
    }
    node
}

fn from_fields_v1(value: &Value, prefix: &mut Path, out: &mut FieldSet) {
    let Some(map) = value.as_object() else {
        return;
    };
    if (map.is_empty() || map.contains_key(".")) && !prefix.is_empty() {
        out.insert(prefix.clone());
    }
    for (k, v) in map {
        if k == "." {
            continue;
        }
        prefix.push(k.clone());
        from_fields_v1(v, prefix, out);
        prefix.pop();
    }
}

/// Reads `metadata.managedFields`.
pub fn entries(object: &Value) -> Vec<Entry> {
    object["metadata"]["managedFields"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|e| {
                    let mut fields = FieldSet::new();
                    from_fields_v1(&e["fieldsV1"], &mut Vec::new(), &mut fields);
                    Entry {
                        manager: e["manager"].as_str().unwrap_or_default().into(),
                        operation: e["operation"].as_str().unwrap_or("Update").into(),
                        api_version: e["apiVersion"].as_str().unwrap_or_default().into(),
                        time: e["time"].as_str().unwrap_or_default().into(),
                        subresource: e["subresource"].as_str().unwrap_or_default().into(),
                        fields,
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Writes `metadata.managedFields` (entries that own nothing are dropped).
pub fn set_entries(object: &mut Value, list: &[Entry]) {
    let values: Vec<Value> = list
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&e.fields),
            });
            if !e.subresource.is_empty() {
                v["subresource"] = json!(e.subresource);
            }
            v
        })
        .collect();
    if !object["metadata"].is_object() && !values.is_empty() {
        object["metadata"] = json!({});
    }
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        if values.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(values));
        }
    }
}

/// Who is writing, for ownership.
#[derive(Clone, Debug)]
pub struct Writer<'a> {
    /// Manager name.
    pub manager: &'a str,
    /// apiVersion the request used.
    pub api_version: &'a str,
    /// Main object or status.
    pub part: Part,
    /// Current time (RFC 3339).
    pub now: &'a str,
}

impl Writer<'_> {
    fn subresource(&self) -> &'static str {
        match self.part {
            Part::Main => "",
            Part::Status => "status",
        }
    }

    fn upsert(&self, list: &mut Vec<Entry>, operation: &str, fields: FieldSet) {
        let sub = self.subresource();
        match list
            .iter_mut()
            .find(|e| e.manager == self.manager && e.operation == operation && e.subresource == sub)
        {
            Some(e) => {
                if e.fields != fields {
                    e.time = self.now.into();
                    e.api_version = self.api_version.into();
                    e.fields = fields;
                }
            }
            None => list.push(Entry {
                manager: self.manager.into(),
                operation: operation.into(),
                api_version: self.api_version.into(),
                time: self.now.into(),
                subresource: sub.into(),
                fields,
            }),
        }
    }
}

/// After an ordinary write: the fields whose value changed (or appeared) go
/// to the writer's `Update` entry; fields that disappeared leave every entry.
pub fn track_update(
    old: Option<&Value>,
    new: &mut Value,
    schema: Option<&Value>,
    writer: &Writer<'_>,
) {
    let mut list = old.map(entries).unwrap_or_default();
    let new_fields = field_set(new, schema, writer.part);
    let old_fields = old
        .map(|o| field_set(o, schema, writer.part))
        .unwrap_or_default();
    let changed: FieldSet = new_fields
        .iter()
        .filter(|p| {
            !old_fields.contains(*p) || old.and_then(|o| value_at(o, p)) != value_at(new, p)
        })
        .cloned()
        .collect();
    let sub = writer.subresource();
    for e in list.iter_mut().filter(|e| e.subresource == sub) {
        let before = e.fields.len();
        e.fields
            .retain(|p| new_fields.contains(p) && !changed.contains(p));
        if e.fields.len() != before {
            e.time = writer.now.into();
        }
    }
    if !changed.is_empty() {
        let mut mine = list
            .iter()
            .find(|e| {
                e.manager == writer.manager && e.operation == "Update" && e.subresource == sub
            })
            .map(|e| e.fields.clone())
            .unwrap_or_default();
        mine.extend(changed);
        writer.upsert(&mut list, "Update", mine);
    }
    set_entries(new, &list);
}

/// A field another manager owns with a different value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager.
    pub manager: String,
    /// The field, dotted.
    pub field: String,
}

/// Dotted spelling of a path for messages: `.spec.replicas`.
pub fn dotted(path: &[String]) -> String {
    path.iter()
        .map(|s| match s.strip_prefix("f:") {
            Some(f) => format!(".{f}"),
            None => format!("[{}]", s.replacen(':', "=", 1)),
        })
        .collect()
}

#[cfg(test)]
mod tests;
