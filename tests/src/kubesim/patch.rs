//! Patch types: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and a
//! strategic merge patch that merges the well-known keyed lists of the
//! built-in kinds (containers, env, ports, volumes, conditions, ...).

use serde_json::{Map, Value};

use crate::kubesim::error::ApiError;

/// RFC 7386: objects merge recursively, `null` removes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    let slot = target.entry(key.clone()).or_insert(Value::Null);
                    if !slot.is_object() {
                        *slot = Value::Object(Map::new());
                    }
                    merge_patch(slot, value);
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

/// The key that identifies items of a keyed list in the built-in kinds, by
/// field name; `None` for lists that are replaced whole.
pub fn builtin_list_key(field: &str, items: &[Value]) -> Option<&'static str> {
    let has = |key: &str| items.iter().all(|i| i.get(key).is_some()) && !items.is_empty();
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "volumeDevices"
        | "volumeClaimTemplates" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        "conditions" => Some("type"),
        "ownerReferences" => Some("uid"),
        "ports" if has("containerPort") => Some("containerPort"),
        "ports" => Some("port"),
        _ => None,
    }
}

fn is_directive(key: &str) -> bool {
    key.starts_with("$setElementOrder/")
        || key.starts_with("$deleteFromPrimitiveList/")
        || key == "$retainKeys"
        || key == "$patch"
}

/// A strategic merge patch over the built-in kinds: a merge patch whose
/// keyed lists merge item by item (`$patch: delete` removes an item,
/// `$patch: replace` replaces a map), and whose `finalizers` merge as a set.
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            if patch.get("$patch").and_then(Value::as_str) == Some("replace") {
                let mut replacement = patch.clone();
                replacement.remove("$patch");
                *target = replacement;
                return;
            }
            for (key, value) in patch {
                if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
                    if let (Some(Value::Array(list)), Some(remove)) =
                        (target.get_mut(field), value.as_array())
                    {
                        list.retain(|v| !remove.contains(v));
                    }
                    continue;
                }
                if is_directive(key) {
                    continue;
                }
                if value.is_null() {
                    target.remove(key);
                    continue;
                }
                match (target.get_mut(key), value) {
                    (Some(Value::Array(existing)), Value::Array(items)) => {
                        merge_list(key, existing, items);
                    }
                    (Some(slot @ Value::Object(_)), Value::Object(_)) => {
                        strategic_merge_patch(slot, value);
                    }
                    _ => {
                        let mut fresh = Value::Null;
                        strategic_merge_patch(&mut fresh, value);
                        target.insert(key.clone(), fresh);
                    }
                }
            }
        }
        (target, Value::Object(patch)) => {
            let mut fresh = Value::Object(Map::new());
            strategic_merge_patch(&mut fresh, &Value::Object(patch.clone()));
            *target = fresh;
        }
        (target, Value::Array(items)) => {
            *target = Value::Array(items.iter().map(strip_directives).collect());
        }
        (target, patch) => *target = patch.clone(),
    }
}

fn strip_directives(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !is_directive(k))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

fn merge_list(field: &str, existing: &mut Vec<Value>, items: &[Value]) {
    if field == "finalizers" {
        for item in items {
            if !existing.contains(item) {
                existing.push(item.clone());
            }
        }
        return;
    }
    let Some(key) = builtin_list_key(field, items) else {
        *existing = items.iter().map(strip_directives).collect();
        return;
    };
    for item in items {
        let id = &item[key];
        let position = existing.iter().position(|e| &e[key] == id);
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (position, delete) {
            (Some(i), true) => {
                existing.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => strategic_merge_patch(&mut existing[i], item),
            (None, false) => existing.push(strip_directives(item)),
        }
    }
}

/// Unescapes one JSON pointer token.
fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn tokens(pointer: &str) -> Result<Vec<String>, ApiError> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let rest = pointer
        .strip_prefix('/')
        .ok_or_else(|| ApiError::bad_request(format!("invalid JSON pointer {pointer:?}")))?;
    Ok(rest.split('/').map(unescape).collect())
}

fn parent_mut<'a>(
    doc: &'a mut Value,
    tokens: &[String],
    path: &str,
) -> Result<&'a mut Value, ApiError> {
    let mut node = doc;
    for token in tokens {
        node = match node {
            Value::Object(map) => map.get_mut(token),
            Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| missing(path))?;
    }
    Ok(node)
}

fn missing(path: &str) -> ApiError {
    ApiError::unsupported_media_type(format!(
        "the server rejected our request due to an error in our request: doc is missing path: {path:?}"
    ))
}

fn get<'a>(doc: &'a Value, path: &str) -> Result<Option<&'a Value>, ApiError> {
    let mut node = doc;
    for token in tokens(path)? {
        let next = match node {
            Value::Object(map) => map.get(&token),
            Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => return Ok(None),
        }
    }
    Ok(Some(node))
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), ApiError> {
    let mut toks = tokens(path)?;
    let Some(last) = toks.pop() else {
        *doc = value;
        return Ok(());
    };
    match parent_mut(doc, &toks, path)? {
        Value::Object(map) => {
            map.insert(last, value);
        }
        Value::Array(items) => {
            if last == "-" {
                items.push(value);
            } else {
                let i: usize = last.parse().map_err(|_| missing(path))?;
                if i > items.len() {
                    return Err(missing(path));
                }
                items.insert(i, value);
            }
        }
        _ => return Err(missing(path)),
    }
    Ok(())
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, ApiError> {
    let mut toks = tokens(path)?;
    let last = toks.pop().ok_or_else(|| missing(path))?;
    match parent_mut(doc, &toks, path)? {
        Value::Object(map) => map.remove(&last).ok_or_else(|| missing(path)),
        Value::Array(items) => {
            let i: usize = last.parse().map_err(|_| missing(path))?;
            if i >= items.len() {
                return Err(missing(path));
            }
            Ok(items.remove(i))
        }
        _ => Err(missing(path)),
    }
}

/// RFC 6902 JSON patch. As in the real server, a `test` of `null` against a
/// path that does not exist succeeds.
pub fn json_patch(doc: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let ops = patch
        .as_array()
        .ok_or_else(|| ApiError::bad_request("a JSON patch must be an array of operations"))?;
    for op in ops {
        let kind = op["op"].as_str().unwrap_or_default();
        let path = op["path"].as_str().ok_or_else(|| {
            ApiError::bad_request(format!("JSON patch operation without path: {op}"))
        })?;
        match kind {
            "add" => add(doc, path, op["value"].clone())?,
            "remove" => {
                remove(doc, path)?;
            }
            "replace" => {
                remove(doc, path)?;
                add(doc, path, op["value"].clone())?;
            }
            "move" | "copy" => {
                let from = op["from"].as_str().ok_or_else(|| {
                    ApiError::bad_request(format!("JSON patch {kind} without from: {op}"))
                })?;
                let value = if kind == "move" {
                    remove(doc, from)?
                } else {
                    get(doc, from)?.cloned().ok_or_else(|| missing(from))?
                };
                add(doc, path, value)?;
            }
            "test" => {
                let expected = &op["value"];
                let actual = get(doc, path)?;
                let ok = match actual {
                    Some(actual) => actual == expected,
                    None => expected.is_null(),
                };
                if !ok {
                    return Err(ApiError::unsupported_media_type(format!(
                        "the server rejected our request due to an error in our request: testing value {path} failed"
                    )));
                }
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown JSON patch operation {other:?}"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_removes_nulls_and_replaces_lists() {
        let mut doc = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        merge_patch(&mut doc, &json!({"a": {"b": null, "d": 3}, "l": [3]}));
        assert_eq!(doc, json!({"a": {"c": 2, "d": 3}, "l": [3]}));
    }

    #[test]
    fn json_patch_test_null_on_missing_path_succeeds() {
        let mut doc = json!({"metadata": {}});
        json_patch(
            &mut doc,
            &json!([
                {"op": "test", "path": "/metadata/finalizers", "value": null},
                {"op": "add", "path": "/metadata/finalizers", "value": []},
                {"op": "add", "path": "/metadata/finalizers/-", "value": "x"}
            ]),
        )
        .expect("applies");
        assert_eq!(doc, json!({"metadata": {"finalizers": ["x"]}}));
        let err = json_patch(
            &mut doc,
            &json!([{"op": "test", "path": "/metadata/finalizers", "value": null}]),
        )
        .expect_err("finalizers exist now");
        assert_eq!(err.code, 415);
    }

    #[test]
    fn strategic_merge_merges_containers_by_name() {
        let mut doc = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}
        ]}});
        strategic_merge_patch(
            &mut doc,
            &json!({"spec": {"containers": [
                {"name": "b", "image": "b:2"}, {"name": "a", "$patch": "delete"}, {"name": "c", "image": "c:1"}
            ]}}),
        );
        assert_eq!(
            doc,
            json!({"spec": {"containers": [{"name": "b", "image": "b:2"}, {"name": "c", "image": "c:1"}]}})
        );
    }
}
