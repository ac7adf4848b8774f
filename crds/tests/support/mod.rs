//! Helpers shared by the API tests: the examples, the Tenant CRD's schema,
//! and its three gates (the typed parse plus `validate`, the OpenAPI
//! schema, the CEL rules).
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::LazyLock;

use atoll_crds::{Tenant, from_value, validate};
use kube::CustomResourceExt;
use serde_json::Value;

/// The workspace's root directory.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crate lives in the workspace")
        .to_path_buf()
}

/// `examples/<name>` as JSON.
pub fn example(name: &str) -> Value {
    let path = repo_root().join("examples").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `openAPIV3Schema` of a CRD.
pub fn schema_of(crd: &impl serde::Serialize) -> Value {
    let crd = serde_json::to_value(crd).expect("CRD serializes");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// The Tenant CRD's `openAPIV3Schema`.
pub static SCHEMA: LazyLock<Value> = LazyLock::new(|| schema_of(&Tenant::crd()));

/// A validator of the Tenant CRD's schema.
pub static SCHEMA_VALIDATOR: LazyLock<jsonschema::Validator> =
    LazyLock::new(|| validator_for(&SCHEMA));

/// A validator for `schema` that also checks formats (`date-time`), as the
/// API server does.
pub fn validator_for(schema: &Value) -> jsonschema::Validator {
    jsonschema::options()
        .should_validate_formats(true)
        .build(schema)
        .expect("openAPIV3Schema is a valid JSON schema")
}

/// `/spec/members/0/user` → `spec.members[0].user`
pub fn pointer_to_field(pointer: &str) -> String {
    let mut field = String::new();
    for part in pointer.split('/').filter(|p| !p.is_empty()) {
        if part.bytes().all(|b| b.is_ascii_digit()) {
            field.push_str(&format!("[{part}]"));
        } else {
            if !field.is_empty() {
                field.push('.');
            }
            field.push_str(part);
        }
    }
    field
}

/// Problems the Tenant's OpenAPI schema finds, as (field, message).
pub fn schema_errors(object: &Value) -> Vec<(String, String)> {
    schema_errors_of(&SCHEMA_VALIDATOR, object)
}

/// Problems an OpenAPI schema finds, as (field, message).
pub fn schema_errors_of(
    validator: &jsonschema::Validator,
    object: &Value,
) -> Vec<(String, String)> {
    validator
        .iter_errors(object)
        .map(|e| (pointer_to_field(e.instance_path().as_str()), e.to_string()))
        .collect()
}

/// Problems the Tenant CRD's CEL rules find, as (field, message).
pub fn cel_errors(object: &Value) -> Vec<(String, String)> {
    cel_errors_of(&SCHEMA, object, None)
}

/// Problems a CRD's CEL rules find when `object` is created (`old` is
/// `None`) or replaces `old` (transition rules run), as (field, message).
pub fn cel_errors_of(schema: &Value, object: &Value, old: Option<&Value>) -> Vec<(String, String)> {
    match kube_cel::Validator::new().validate(schema, object, old) {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .into_vec()
            .into_iter()
            .map(|e| (e.field_path.clone(), e.message.clone()))
            .collect(),
    }
}

/// Problems the operator's own gate finds, as (field, message).
pub fn operator_errors(object: &Value) -> Vec<(String, String)> {
    match from_value(object.clone()) {
        Err(e) => vec![(e.field, e.message)],
        Ok(tenant) => match validate(&tenant) {
            Ok(()) => Vec::new(),
            Err(errors) => errors.into_iter().map(|e| (e.field, e.message)).collect(),
        },
    }
}

/// RFC 7386 JSON merge patch.
pub fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

/// The example `base` with `patch` merged in.
pub fn patched(base: &str, patch: &Value) -> Value {
    let mut object = example(base);
    merge(&mut object, patch);
    object
}

/// Which API server gate a rule belongs to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Gate {
    /// An OpenAPI schema constraint (type, enum, pattern, bounds).
    Schema,
    /// A CEL `x-kubernetes-validations` rule.
    Cel,
    /// Enforced by the API server through `x-kubernetes-list-type: map`,
    /// which neither JSON Schema nor CEL evaluates; `validate` covers it and
    /// the schema test below checks the list-map declaration.
    ListMapKey,
}

/// One rule: a merge patch that breaks it, one that keeps it, and where
/// the refusal must point.
pub struct Case {
    pub rule: &'static str,
    pub gate: Gate,
    pub field: &'static str,
    pub bad: Value,
    pub good: Value,
}

/// Whether some error points at `field` (or inside it). Rules on the root
/// object cannot carry a fieldPath into `metadata` (the CRD schema does not
/// describe it), so theirs name the field at the start of the message, as
/// the API server prints it.
pub fn names_field(errors: &[(String, String)], field: &str) -> bool {
    errors.iter().any(|(f, message)| {
        f == field
            || f.starts_with(&format!("{field}."))
            || f.starts_with(&format!("{field}["))
            || (f.is_empty() && message.starts_with(field))
    })
}

/// Every case's bad spec (the example `base` with the case's merge patch)
/// is refused by `validate` and by the case's gate, each naming the field;
/// its good spec passes all three gates.
pub fn check_cases(base: &str, cases: Vec<Case>) {
    let mut failures = Vec::new();
    for case in cases {
        let bad = patched(base, &case.bad);
        let good = patched(base, &case.good);

        let operator_bad = operator_errors(&bad);
        if !names_field(&operator_bad, case.field) {
            failures.push(format!(
                "{}: validate did not name {} (got {operator_bad:?})",
                case.rule, case.field
            ));
        }
        let gate_bad = match case.gate {
            Gate::Schema => Some(schema_errors(&bad)),
            Gate::Cel => Some(cel_errors(&bad)),
            Gate::ListMapKey => None,
        };
        if let Some(errors) = gate_bad {
            // CEL rules on a struct report the struct's path plus their
            // fieldPath; the schema reports the offending value's path.
            if !names_field(&errors, case.field) {
                failures.push(format!(
                    "{}: {:?} gate did not name {} (got {errors:?})",
                    case.rule, case.gate, case.field
                ));
            }
        }
        for (gate, errors) in [
            ("validate", operator_errors(&good)),
            ("schema", schema_errors(&good)),
            ("CEL", cel_errors(&good)),
        ] {
            if !errors.is_empty() {
                failures.push(format!(
                    "{}: the good spec was refused by {gate}: {errors:?}",
                    case.rule
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The Tenant schema's node at `path` (`[]` steps into list items).
pub fn schema_at<'a>(path: &[&str]) -> &'a Value {
    let mut node: &Value = &SCHEMA;
    for key in path {
        node = if *key == "[]" {
            &node["items"]
        } else {
            &node["properties"][key]
        };
    }
    node
}

/// Every CEL rule under `node`.
pub fn collect_rules(node: &Value, out: &mut Vec<String>) {
    if let Some(rules) = node["x-kubernetes-validations"].as_array() {
        out.extend(
            rules
                .iter()
                .filter_map(|r| r["rule"].as_str().map(str::to_owned)),
        );
    }
    for child in children(node) {
        collect_rules(child, out);
    }
}

/// The cost estimator's warnings for every CEL rule under `node`.
pub fn collect_cost_warnings(node: &Value, out: &mut Vec<String>) {
    if let Some(rules) = node["x-kubernetes-validations"].as_array() {
        let compiled = kube_cel::compile_schema(node);
        for rule in rules.iter().filter_map(|r| r["rule"].as_str()) {
            out.extend(
                kube_cel::estimate_rule_cost(rule, &compiled)
                    .into_iter()
                    .map(|w| format!("{rule}: {}", w.message)),
            );
        }
    }
    for child in children(node) {
        collect_cost_warnings(child, out);
    }
}

/// The property and item schemas directly under `node`.
pub fn children(node: &Value) -> Vec<&Value> {
    let mut out: Vec<&Value> = node["properties"]
        .as_object()
        .map(|p| p.values().collect())
        .unwrap_or_default();
    if node["items"].is_object() {
        out.push(&node["items"]);
    }
    out
}

/// Collects into `missing` every field under `node` without a description.
pub fn check_descriptions(node: &Value, path: String, missing: &mut Vec<String>) {
    if node["description"]
        .as_str()
        .is_none_or(|d| d.trim().is_empty())
    {
        missing.push(path.clone());
    }
    if let Some(properties) = node["properties"].as_object() {
        for (name, child) in properties {
            check_descriptions(child, format!("{path}.{name}"), missing);
        }
    }
    if node["items"].is_object() {
        check_descriptions(&node["items"], format!("{path}[]"), missing);
    }
}
