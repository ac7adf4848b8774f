//! Custom resources against their CRD's `openAPIV3Schema`, as the API server
//! treats them: unknown fields pruned, defaults applied, then the structural
//! checks (type, required, enum, pattern, bounds, lengths, item counts) and
//! the CEL `x-kubernetes-validations` rules, each failure a [`Cause`] naming
//! the field with the server's wording.
//!
//! One concern in one file: its product code is about 545 lines; the rest
//! is its tests.

use std::collections::HashMap;
use std::sync::Arc;

use regex::Regex;
use serde_json::{Map, Value};

use crate::kubesim::error::Cause;

/// Every `pattern` of a schema, compiled (or why it does not compile).
type Patterns = HashMap<String, Result<Regex, String>>;

/// A CRD version's schema, prepared once for repeated use.
pub struct CompiledSchema {
    schema: Arc<Value>,
    cel: kube_cel::CompiledSchema,
    patterns: Patterns,
}

impl std::fmt::Debug for CompiledSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledSchema").finish_non_exhaustive()
    }
}

impl CompiledSchema {
    /// Compiles the schema's CEL rules.
    pub fn new(schema: Arc<Value>) -> Self {
        let cel = kube_cel::compile_schema(&schema);
        let mut patterns = Patterns::new();
        collect_patterns(&schema, &mut patterns);
        Self {
            schema,
            cel,
            patterns,
        }
    }

    /// Fields the schema does not declare (what pruning would drop), as
    /// dotted paths; `fieldValidation=Strict` refuses them.
    pub fn unknown_fields(&self, object: &Value) -> Vec<String> {
        let mut out = Vec::new();
        unknown(&self.schema, object, true, "", &mut out);
        out
    }

    /// Prunes unknown fields and applies defaults, then validates; returns
    /// the object as it will be stored, or every problem found.
    pub fn admit(&self, mut object: Value, old: Option<&Value>) -> Result<Value, Vec<Cause>> {
        prune(&self.schema, &mut object, true);
        let mut object = kube_cel::apply_defaults(&self.schema, &object);
        // Defaults may not bring back fields pruning removed, but they may
        // introduce empty parents; prune again for a stable result.
        prune(&self.schema, &mut object, true);
        let mut causes = Vec::new();
        validate(&self.schema, &object, "", true, &self.patterns, &mut causes);
        if causes.is_empty()
            && let Err(errors) = kube_cel::validate_compiled(&self.cel, &object, old)
        {
            for e in errors.into_vec() {
                let field = e.field_path.trim_start_matches('.').to_string();
                causes.push(Cause {
                    reason: e
                        .reason
                        .clone()
                        .unwrap_or_else(|| "FieldValueInvalid".into()),
                    message: format!(
                        "{}: Invalid value: \"object\": {}",
                        if field.is_empty() { "<root>" } else { &field },
                        e.message
                    ),
                    field,
                });
            }
        }
        if causes.is_empty() {
            return Ok(object);
        }
        if has_rules(&self.schema) && !causes.iter().any(|c| c.field == "<nil>") {
            // As the API server: CEL rules run only on an otherwise valid
            // object, and it says so.
            causes.push(Cause {
                reason: "FieldValueInvalid".into(),
                message: "<nil>: Invalid value: \"object\": some validation rules were not checked because the object was invalid; correct the existing errors to complete validation".into(),
                field: "<nil>".into(),
            });
        }
        Err(causes)
    }
}

/// Whether a schema has CEL rules anywhere.
fn has_rules(schema: &Value) -> bool {
    match schema {
        Value::Object(map) => {
            map.contains_key("x-kubernetes-validations") || map.values().any(has_rules)
        }
        Value::Array(items) => items.iter().any(has_rules),
        _ => false,
    }
}

/// Compiles every `pattern` in a schema once, wherever it is nested.
fn collect_patterns(schema: &Value, out: &mut Patterns) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::String(pattern)) = map.get("pattern")
                && !out.contains_key(pattern)
            {
                let compiled = Regex::new(pattern).map_err(|e| e.to_string());
                out.insert(pattern.clone(), compiled);
            }
            for (key, value) in map {
                // Under `properties` the keys are field names, so a field
                // called `pattern` is a schema, not a pattern.
                if key != "pattern" || !value.is_string() {
                    collect_patterns(value, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_patterns(i, out)),
        _ => {}
    }
}

fn preserves_unknown(schema: &Value) -> bool {
    schema["x-kubernetes-preserve-unknown-fields"].as_bool() == Some(true)
}

/// Removes fields the schema does not know, as the server does for
/// structural schemas. `root` keeps `apiVersion`, `kind` and `metadata`.
fn prune(schema: &Value, value: &mut Value, root: bool) {
    match value {
        Value::Object(map) => {
            let properties = schema["properties"].as_object();
            let additional = &schema["additionalProperties"];
            if properties.is_none() && additional.is_object() {
                for v in map.values_mut() {
                    prune(additional, v, false);
                }
                return;
            }
            if let Some(properties) = properties {
                let keep_unknown = preserves_unknown(schema) || additional == &Value::Bool(true);
                map.retain(|k, _| {
                    properties.contains_key(k)
                        || keep_unknown
                        || (root && matches!(k.as_str(), "apiVersion" | "kind" | "metadata"))
                });
                for (k, v) in map.iter_mut() {
                    if root && k == "metadata" {
                        continue;
                    }
                    if let Some(s) = properties.get(k) {
                        prune(s, v, false);
                    }
                }
            } else if !preserves_unknown(schema) && schema["type"] == "object" && !root {
                map.clear();
            }
        }
        Value::Array(items) if schema["items"].is_object() => {
            for item in items {
                prune(&schema["items"], item, false);
            }
        }
        _ => {}
    }
}

fn unknown(schema: &Value, value: &Value, root: bool, path: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            let properties = schema["properties"].as_object();
            let additional = &schema["additionalProperties"];
            for (k, v) in map {
                if root && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let field = child(path, k);
                match properties.and_then(|p| p.get(k)) {
                    Some(s) => unknown(s, v, false, &field, out),
                    None if additional.is_object() => unknown(additional, v, false, &field, out),
                    None if preserves_unknown(schema) || additional == &Value::Bool(true) => {}
                    None => out.push(field),
                }
            }
        }
        Value::Array(items) if schema["items"].is_object() => {
            for (i, item) in items.iter().enumerate() {
                unknown(&schema["items"], item, false, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn shown(value: &Value) -> String {
    match value {
        Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Null => value.to_string(),
        Value::Array(_) => "\"array\"".into(),
        Value::Object(_) => "\"object\"".into(),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(expected: &str, value: &Value) -> bool {
    match expected {
        "number" => value.is_number(),
        "integer" => value.as_i64().is_some() || value.as_u64().is_some(),
        other => type_name(value) == other,
    }
}

fn invalid(causes: &mut Vec<Cause>, path: &str, value: &Value, detail: String) {
    causes.push(Cause {
        reason: "FieldValueInvalid".into(),
        message: format!("{path}: Invalid value: {}: {detail}", shown(value)),
        field: path.into(),
    });
}

fn validate(
    schema: &Value,
    value: &Value,
    path: &str,
    root: bool,
    patterns: &Patterns,
    causes: &mut Vec<Cause>,
) {
    let shown_path = if path.is_empty() { "<root>" } else { path };
    if !check_type(schema, value, path, root, causes) {
        return;
    }
    check_combinators(schema, value, path, root, patterns, causes);
    match value {
        Value::String(s) => check_string(schema, s, value, shown_path, patterns, causes),
        Value::Number(n) => {
            check_number(schema, n.as_f64().unwrap_or(0.0), value, shown_path, causes)
        }
        Value::Array(items) => {
            check_count(schema, items.len(), shown_path, "items", causes);
            if schema["items"].is_object() {
                for (i, item) in items.iter().enumerate() {
                    validate(
                        &schema["items"],
                        item,
                        &format!("{path}[{i}]"),
                        false,
                        patterns,
                        causes,
                    );
                }
            }
        }
        Value::Object(map) => check_object(schema, map, path, root, patterns, causes),
        _ => {}
    }
}

/// `null` (allowed when `nullable`, and at the root) and the declared type
/// (or int-or-string); `false` when the value goes no further.
fn check_type(
    schema: &Value,
    value: &Value,
    path: &str,
    root: bool,
    causes: &mut Vec<Cause>,
) -> bool {
    let shown_path = if path.is_empty() { "<root>" } else { path };
    if value.is_null() {
        if schema["nullable"].as_bool() != Some(true) && !root {
            causes.push(Cause {
                reason: "FieldValueTypeInvalid".into(),
                message: format!(
                    "{shown_path}: Invalid value: \"null\": {shown_path} in body must be of type {}: \"null\"",
                    schema["type"].as_str().unwrap_or("object")
                ),
                field: path.into(),
            });
        }
        return false;
    }
    let int_or_string = schema["x-kubernetes-int-or-string"].as_bool() == Some(true);
    if int_or_string {
        if !(value.is_string() || type_matches("integer", value)) {
            invalid(
                causes,
                shown_path,
                value,
                format!("{shown_path} in body must be of type integer-or-string"),
            );
            return false;
        }
    } else if let Some(expected) = schema["type"].as_str()
        && !type_matches(expected, value)
    {
        causes.push(Cause {
            reason: "FieldValueTypeInvalid".into(),
            message: format!(
                "{shown_path}: Invalid value: \"{}\": {shown_path} in body must be of type {expected}: \"{}\"",
                type_name(value),
                type_name(value)
            ),
            field: path.into(),
        });
        return false;
    }
    true
}

/// `anyOf`, `oneOf`, `allOf` and `enum`.
fn check_combinators(
    schema: &Value,
    value: &Value,
    path: &str,
    root: bool,
    patterns: &Patterns,
    causes: &mut Vec<Cause>,
) {
    let shown_path = if path.is_empty() { "<root>" } else { path };
    for key in ["anyOf", "oneOf"] {
        if let Some(options) = schema[key].as_array() {
            let fits = options.iter().any(|o| {
                let mut inner = Vec::new();
                validate(o, value, path, root, patterns, &mut inner);
                inner.is_empty()
            });
            if !fits {
                invalid(
                    causes,
                    shown_path,
                    value,
                    format!("{shown_path} in body must match {key} of the schema"),
                );
            }
        }
    }
    if let Some(all) = schema["allOf"].as_array() {
        for s in all {
            validate(s, value, path, root, patterns, causes);
        }
    }
    if let Some(options) = schema["enum"].as_array()
        && !options.contains(value)
    {
        let supported: Vec<String> = options.iter().map(Value::to_string).collect();
        causes.push(Cause {
            reason: "FieldValueNotSupported".into(),
            message: format!(
                "{shown_path}: Unsupported value: {}: supported values: {}",
                shown(value),
                supported.join(", ")
            ),
            field: path.into(),
        });
    }
}

fn check_string(
    schema: &Value,
    s: &str,
    value: &Value,
    path: &str,
    patterns: &Patterns,
    causes: &mut Vec<Cause>,
) {
    let chars = s.chars().count() as u64;
    if let Some(max) = schema["maxLength"].as_u64()
        && chars > max
    {
        causes.push(Cause {
            reason: "FieldValueTooLong".into(),
            message: format!("{path}: Too long: may not be more than {max} bytes"),
            field: path.into(),
        });
    }
    if let Some(min) = schema["minLength"].as_u64()
        && chars < min
    {
        invalid(
            causes,
            path,
            value,
            format!("{path} in body should be at least {min} chars long"),
        );
    }
    if let Some(pattern) = schema["pattern"].as_str() {
        // `CompiledSchema::new` compiled every pattern of the schema.
        let fresh;
        let compiled = match patterns.get(pattern) {
            Some(compiled) => compiled.as_ref(),
            None => {
                fresh = Regex::new(pattern).map_err(|e| e.to_string());
                fresh.as_ref()
            }
        };
        match compiled {
            Ok(re) if !re.is_match(s) => invalid(
                causes,
                path,
                value,
                format!("{path} in body should match '{pattern}'"),
            ),
            Ok(_) => {}
            Err(e) => invalid(
                causes,
                path,
                value,
                format!("invalid pattern {pattern:?}: {e}"),
            ),
        }
    }
}

fn check_number(schema: &Value, n: f64, value: &Value, path: &str, causes: &mut Vec<Cause>) {
    if let Some(max) = schema["maximum"].as_f64() {
        let exclusive = schema["exclusiveMaximum"].as_bool() == Some(true);
        if n > max || (exclusive && n >= max) {
            let how = if exclusive {
                "less than"
            } else {
                "less than or equal to"
            };
            invalid(
                causes,
                path,
                value,
                format!("{path} in body should be {how} {}", schema["maximum"]),
            );
        }
    }
    if let Some(min) = schema["minimum"].as_f64() {
        let exclusive = schema["exclusiveMinimum"].as_bool() == Some(true);
        if n < min || (exclusive && n <= min) {
            let how = if exclusive {
                "greater than"
            } else {
                "greater than or equal to"
            };
            invalid(
                causes,
                path,
                value,
                format!("{path} in body should be {how} {}", schema["minimum"]),
            );
        }
    }
}

fn check_count(schema: &Value, count: usize, path: &str, what: &str, causes: &mut Vec<Cause>) {
    let (max_key, min_key) = if what == "items" {
        ("maxItems", "minItems")
    } else {
        ("maxProperties", "minProperties")
    };
    if let Some(max) = schema[max_key].as_u64()
        && count as u64 > max
    {
        causes.push(Cause {
            reason: "FieldValueTooMany".into(),
            message: format!("{path}: Too many: {count}: must have at most {max} {what}"),
            field: path.into(),
        });
    }
    if let Some(min) = schema[min_key].as_u64()
        && (count as u64) < min
    {
        causes.push(Cause {
            reason: "FieldValueInvalid".into(),
            message: format!(
                "{path}: Invalid value: {count}: {path} in body should have at least {min} {what}"
            ),
            field: path.into(),
        });
    }
}

fn check_object(
    schema: &Value,
    map: &Map<String, Value>,
    path: &str,
    root: bool,
    patterns: &Patterns,
    causes: &mut Vec<Cause>,
) {
    let shown_path = if path.is_empty() { "<root>" } else { path };
    check_count(schema, map.len(), shown_path, "properties", causes);
    if let Some(required) = schema["required"].as_array() {
        for key in required.iter().filter_map(Value::as_str) {
            if !map.contains_key(key) {
                let field = child(path, key);
                causes.push(Cause {
                    reason: "FieldValueRequired".into(),
                    message: format!("{field}: Required value"),
                    field,
                });
            }
        }
    }
    let properties = schema["properties"].as_object();
    for (key, value) in map {
        if root && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        let field = child(path, key);
        if let Some(s) = properties.and_then(|p| p.get(key)) {
            validate(s, value, &field, false, patterns, causes);
        } else if schema["additionalProperties"].is_object() {
            validate(
                &schema["additionalProperties"],
                value,
                &field,
                false,
                patterns,
                causes,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> CompiledSchema {
        CompiledSchema::new(Arc::new(json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["size"],
                    "properties": {
                        "size": {"type": "integer", "minimum": 1, "maximum": 10},
                        "mode": {"type": "string", "enum": ["A", "B"], "default": "A"},
                        "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5},
                        "tags": {"type": "array", "maxItems": 1, "items": {"type": "string"}}
                    }
                }
            }
        })))
    }

    #[test]
    fn prunes_defaults_and_accepts_a_good_object() {
        let admitted = schema()
            .admit(
                json!({"kind": "X", "metadata": {"name": "a"}, "spec": {"size": 2, "junk": 1}}),
                None,
            )
            .expect("valid");
        assert_eq!(admitted["spec"], json!({"size": 2, "mode": "A"}));
        assert_eq!(admitted["kind"], "X");
        let unknown = schema()
            .unknown_fields(&json!({"spec": {"size": 2, "junk": 1, "tags": ["a"]}, "extra": {}}));
        assert_eq!(unknown, ["extra", "spec.junk"]);
    }

    #[test]
    fn every_failure_names_its_field() {
        let causes = schema()
            .admit(
                json!({"spec": {"size": 11, "mode": "C", "name": "Abcdef", "tags": ["a", "b"]}}),
                None,
            )
            .expect_err("invalid");
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.mode",
                "spec.name",
                "spec.name",
                "spec.size",
                "spec.tags"
            ]
        );
        assert!(
            causes[3]
                .message
                .contains("should be less than or equal to 10")
        );
        let missing = schema()
            .admit(json!({"spec": {}}), None)
            .expect_err("invalid");
        assert_eq!(missing[0].message, "spec.size: Required value");
        let wrong_type = schema()
            .admit(json!({"spec": {"size": "x"}}), None)
            .expect_err("invalid");
        assert!(wrong_type[0].message.contains("must be of type integer"));
    }
}
