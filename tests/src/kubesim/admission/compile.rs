//! Compiling policies and checking bindings when they are written: every
//! expression must compile, every field be one kubesim can honour.

use kube_cel::cel::Program;
use serde_json::Value;

use super::{CompiledPolicy, Expression, Matcher, Rule, Validation};
use crate::kubesim::error::Cause;
use crate::kubesim::selectors::LabelSelector;

pub(super) fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn cause(reason: &str, field: &str, message: String) -> Cause {
    Cause {
        reason: reason.to_owned(),
        field: field.to_owned(),
        message: format!("{field}: {message}"),
    }
}

fn compile(source: &str, field: &str, causes: &mut Vec<Cause>) -> Option<Expression> {
    if source.trim().is_empty() {
        causes.push(cause(
            "FieldValueRequired",
            field,
            "Required value".to_owned(),
        ));
        return None;
    }
    match Program::compile(source) {
        Ok(program) => Some(Expression {
            source: source.to_owned(),
            program,
        }),
        Err(e) => {
            causes.push(cause(
                "FieldValueInvalid",
                field,
                format!("Invalid value: {source:?}: compilation failed: {e}"),
            ));
            None
        }
    }
}

fn rules(value: &Value, field: &str, causes: &mut Vec<Cause>) -> Vec<Rule> {
    let mut out = Vec::new();
    for (i, rule) in value
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let here = format!("{field}[{i}]");
        let scope = rule["scope"].as_str().unwrap_or("*").to_owned();
        if !matches!(scope.as_str(), "*" | "Cluster" | "Namespaced") {
            causes.push(cause(
                "FieldValueNotSupported",
                &format!("{here}.scope"),
                format!(
                    "Unsupported value: {scope:?}: supported values: \"*\", \"Cluster\", \"Namespaced\""
                ),
            ));
        }
        let operations = strings(&rule["operations"]);
        for op in &operations {
            if !matches!(
                op.as_str(),
                "*" | "CREATE" | "UPDATE" | "DELETE" | "CONNECT"
            ) {
                causes.push(cause(
                    "FieldValueNotSupported",
                    &format!("{here}.operations"),
                    format!(
                        "Unsupported value: {op:?}: supported values: \"*\", \"CONNECT\", \"CREATE\", \"DELETE\", \"UPDATE\""
                    ),
                ));
            }
        }
        for key in ["apiGroups", "apiVersions", "resources", "operations"] {
            if strings(&rule[key]).is_empty() {
                causes.push(cause(
                    "FieldValueRequired",
                    &format!("{here}.{key}"),
                    "Required value".to_owned(),
                ));
            }
        }
        out.push(Rule {
            groups: strings(&rule["apiGroups"]),
            versions: strings(&rule["apiVersions"]),
            resources: strings(&rule["resources"]),
            operations,
            names: strings(&rule["resourceNames"]),
            scope,
        });
    }
    out
}

fn selector(value: &Value, field: &str, causes: &mut Vec<Cause>) -> LabelSelector {
    LabelSelector::from_object(value).unwrap_or_else(|e| {
        causes.push(cause(
            "FieldValueInvalid",
            field,
            format!("Invalid value: {e}"),
        ));
        LabelSelector::default()
    })
}

pub(super) fn matcher(
    value: &Value,
    field: &str,
    required: bool,
    causes: &mut Vec<Cause>,
) -> Matcher {
    let resource_rules = if value["resourceRules"].is_null() && !required {
        None
    } else {
        let parsed = rules(
            &value["resourceRules"],
            &format!("{field}.resourceRules"),
            causes,
        );
        if parsed.is_empty() && required {
            causes.push(cause(
                "FieldValueRequired",
                &format!("{field}.resourceRules"),
                "Required value".to_owned(),
            ));
        }
        Some(parsed)
    };
    let match_policy = value["matchPolicy"].as_str().unwrap_or("Equivalent");
    if !matches!(match_policy, "Equivalent" | "Exact") {
        causes.push(cause(
            "FieldValueNotSupported",
            &format!("{field}.matchPolicy"),
            format!(
                "Unsupported value: {match_policy:?}: supported values: \"Equivalent\", \"Exact\""
            ),
        ));
    }
    Matcher {
        rules: resource_rules,
        excluded: rules(
            &value["excludeResourceRules"],
            &format!("{field}.excludeResourceRules"),
            causes,
        ),
        namespaces: selector(
            &value["namespaceSelector"],
            &format!("{field}.namespaceSelector"),
            causes,
        ),
        objects: selector(
            &value["objectSelector"],
            &format!("{field}.objectSelector"),
            causes,
        ),
        any_version: match_policy == "Equivalent",
    }
}

fn named_expressions(
    value: &Value,
    field: &str,
    causes: &mut Vec<Cause>,
) -> Vec<(String, Expression)> {
    let mut out: Vec<(String, Expression)> = Vec::new();
    for (i, entry) in value
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let name = entry["name"].as_str().unwrap_or_default();
        if name.is_empty() {
            causes.push(cause(
                "FieldValueRequired",
                &format!("{field}[{i}].name"),
                "Required value".to_owned(),
            ));
        } else if out.iter().any(|(n, _)| n == name) {
            causes.push(cause(
                "FieldValueDuplicate",
                &format!("{field}[{i}].name"),
                format!("Duplicate value: {name:?}"),
            ));
        }
        let source = entry["expression"].as_str().unwrap_or_default();
        if let Some(expression) = compile(source, &format!("{field}[{i}].expression"), causes) {
            out.push((name.to_owned(), expression));
        }
    }
    out
}

/// Words CEL reserves: the API server refuses them as variable names
/// (`variables.namespace` would not parse).
const CEL_RESERVED: &[&str] = &[
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

/// A variable name the API server accepts: a CEL identifier that is not a
/// reserved word.
fn is_cel_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
        && !CEL_RESERVED.contains(&name)
}

const REASONS: &[&str] = &[
    "Unauthorized",
    "Forbidden",
    "Invalid",
    "RequestEntityTooLarge",
];

/// Parses and compiles a policy's spec, or says what is wrong with it.
pub(super) fn compile_policy(spec: &Value) -> Result<CompiledPolicy, Vec<Cause>> {
    let mut causes = Vec::new();
    if !spec["paramKind"].is_null() {
        causes.push(cause(
            "FieldValueForbidden",
            "spec.paramKind",
            "Forbidden: kubesim does not support policy parameters (paramKind and params)"
                .to_owned(),
        ));
    }
    if !spec["matchConstraints"].is_object() {
        causes.push(cause(
            "FieldValueRequired",
            "spec.matchConstraints",
            "Required value".to_owned(),
        ));
    }
    let matcher = matcher(
        &spec["matchConstraints"],
        "spec.matchConstraints",
        true,
        &mut causes,
    );
    let fail = match spec["failurePolicy"].as_str() {
        None | Some("Fail") => true,
        Some("Ignore") => false,
        Some(other) => {
            causes.push(cause(
                "FieldValueNotSupported",
                "spec.failurePolicy",
                format!("Unsupported value: {other:?}: supported values: \"Fail\", \"Ignore\""),
            ));
            true
        }
    };
    let conditions = named_expressions(
        &spec["matchConditions"],
        "spec.matchConditions",
        &mut causes,
    );
    let variables = named_expressions(&spec["variables"], "spec.variables", &mut causes);
    let entries = spec["variables"].as_array().map(Vec::as_slice);
    for (i, entry) in entries.unwrap_or_default().iter().enumerate() {
        let name = entry["name"].as_str().unwrap_or_default();
        if !name.is_empty() && !is_cel_identifier(name) {
            causes.push(cause(
                "FieldValueInvalid",
                &format!("spec.variables[{i}].name"),
                format!("Invalid value: {name:?}: name is not a valid CEL identifier"),
            ));
        }
    }
    let validations = validations(spec, &mut causes);
    if causes.is_empty() {
        Ok(CompiledPolicy {
            matcher,
            fail,
            conditions,
            variables,
            validations,
        })
    } else {
        Err(causes)
    }
}

/// A policy's `validations` (at least one, or an audit annotation).
fn validations(spec: &Value, causes: &mut Vec<Cause>) -> Vec<Validation> {
    let mut validations = Vec::new();
    let listed = spec["validations"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let audits = spec["auditAnnotations"].as_array().map_or(0, Vec::len);
    if listed.is_empty() && audits == 0 {
        causes.push(cause(
            "FieldValueRequired",
            "spec.validations",
            "Required value: validations or auditAnnotations must contain at least one item"
                .to_owned(),
        ));
    }
    for (i, validation) in listed.iter().enumerate() {
        let field = format!("spec.validations[{i}]");
        let check = compile(
            validation["expression"].as_str().unwrap_or_default(),
            &format!("{field}.expression"),
            causes,
        );
        let message_expression = validation["messageExpression"]
            .as_str()
            .and_then(|source| compile(source, &format!("{field}.messageExpression"), causes));
        let reason = validation["reason"].as_str().map(str::to_owned);
        if let Some(reason) = &reason
            && !REASONS.contains(&reason.as_str())
        {
            causes.push(cause(
                "FieldValueNotSupported",
                &format!("{field}.reason"),
                format!(
                    "Unsupported value: {reason:?}: supported values: \"Unauthorized\", \"Forbidden\", \"Invalid\", \"RequestEntityTooLarge\""
                ),
            ));
        }
        if let Some(check) = check {
            validations.push(Validation {
                check,
                message: validation["message"].as_str().map(str::to_owned),
                message_expression,
                reason,
            });
        }
    }
    validations
}

/// What is wrong with a binding's spec.
pub(super) fn check_binding(spec: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    if spec["policyName"].as_str().is_none_or(str::is_empty) {
        causes.push(cause(
            "FieldValueRequired",
            "spec.policyName",
            "Required value".to_owned(),
        ));
    }
    if !spec["paramRef"].is_null() {
        causes.push(cause(
            "FieldValueForbidden",
            "spec.paramRef",
            "Forbidden: kubesim does not support policy parameters (paramKind and params)"
                .to_owned(),
        ));
    }
    let actions = strings(&spec["validationActions"]);
    if actions.is_empty() {
        causes.push(cause(
            "FieldValueRequired",
            "spec.validationActions",
            "Required value: at least one validation action is required".to_owned(),
        ));
    }
    for (i, action) in actions.iter().enumerate() {
        if !matches!(action.as_str(), "Deny" | "Warn" | "Audit") {
            causes.push(cause(
                "FieldValueNotSupported",
                &format!("spec.validationActions[{i}]"),
                format!(
                    "Unsupported value: {action:?}: supported values: \"Audit\", \"Deny\", \"Warn\""
                ),
            ));
        } else if actions[..i].contains(action) {
            causes.push(cause(
                "FieldValueDuplicate",
                &format!("spec.validationActions[{i}]"),
                format!("Duplicate value: {action:?}"),
            ));
        }
    }
    if actions.iter().any(|a| a == "Deny") && actions.iter().any(|a| a == "Warn") {
        causes.push(cause(
            "FieldValueInvalid",
            "spec.validationActions",
            "Invalid value: [\"Deny\", \"Warn\"]: must not contain both Deny and Warn (repeating the same validation failure information in the API response and headers serves no purpose)".to_owned(),
        ));
    }
    if spec["matchResources"].is_object() {
        matcher(
            &spec["matchResources"],
            "spec.matchResources",
            false,
            &mut causes,
        );
    }
    causes
}
