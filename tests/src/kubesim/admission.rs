//! ValidatingAdmissionPolicy (`admissionregistration.k8s.io/v1`) as the API
//! server applies it. Every write a client makes (create, update, patch,
//! server-side apply and delete, of a resource or of its `status` or
//! `scale`) is checked, after authorization and the built-in validation and
//! before anything is stored, against each ValidatingAdmissionPolicyBinding
//! and the policy it names:
//!
//! - the policy's `matchConstraints` and the binding's `matchResources`:
//!   `resourceRules` and `excludeResourceRules` (`apiGroups`, `apiVersions`,
//!   `resources` with `res/sub`, `res/*`, `*/sub`, `*`, `operations`,
//!   `resourceNames`, `scope`), `namespaceSelector`, `objectSelector`, and
//!   `matchPolicy` (`Equivalent`, the default, matches any version);
//! - `matchConditions`, then `variables` and `validations`, in CEL with the
//!   Kubernetes libraries (kube-cel), over `object`, `oldObject`, `request`
//!   (`operation`, `name`, `namespace`, `kind`, `resource`, `subResource`,
//!   `userInfo`, `dryRun`, ...), `namespaceObject` and `variables`;
//! - `failurePolicy` (`Fail`, the default, or `Ignore`) for an expression
//!   that cannot be evaluated; `message`, `messageExpression` and `reason`;
//! - the binding's `validationActions`: `Deny` refuses the request; `Warn`
//!   and `Audit` are kept but change nothing.
//!
//! A denial reads like the API server's: `<resource> "<name>" is forbidden:
//! ValidatingAdmissionPolicy '<policy>' with binding '<binding>' denied
//! request: <message>`, with the code of the validation's `reason`
//! (`Invalid`, 422, when unset; `Forbidden`, 403; `Unauthorized`, 401;
//! `RequestEntityTooLarge`, 413) and the message as the one cause.
//!
//! Policies and bindings are checked when they are written (every
//! expression must compile) and each policy is compiled once. Refused when
//! written, because kubesim cannot evaluate them: `paramKind` and
//! `paramRef` (there is no `params`). The `authorizer` variable is not
//! bound and `auditAnnotations` are ignored. The writes kubesim makes
//! itself (garbage collection, namespace termination) are not checked; in a
//! real cluster they are the controllers' requests, which policies see too.

use std::collections::HashMap;
use std::sync::Arc;

use kube_cel::KubeCelExt;
use kube_cel::cel::objects::{Key, Map};
use kube_cel::cel::{Context, Program, Value as Cel};
use serde_json::{Value, json};

use crate::kubesim::error::{ApiError, ApiResult, Cause};
use crate::kubesim::rbac::UserInfo;
use crate::kubesim::resources::ResourceType;
use crate::kubesim::selectors::LabelSelector;

/// The API group of policies and bindings.
pub(crate) const GROUP: &str = "admissionregistration.k8s.io";
/// ValidatingAdmissionPolicies.
pub(crate) const POLICIES: &str = "validatingadmissionpolicies";
/// ValidatingAdmissionPolicyBindings.
pub(crate) const BINDINGS: &str = "validatingadmissionpolicybindings";

/// Who makes a write, and through which subresource: what admission needs
/// to know about a request besides the objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requester {
    /// The authenticated user ([`UserInfo::administrator`] without
    /// credentials).
    pub user: UserInfo,
    /// `status`, `scale`, or empty for the resource itself.
    pub subresource: String,
}

/// The admission operation of a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operation {
    /// POST, or server-side apply of a missing object.
    Create,
    /// PUT and PATCH (server-side apply included).
    Update,
    /// DELETE.
    Delete,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Self::Create => "CREATE",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
        }
    }
}

/// One write as admission sees it.
pub(crate) struct Request<'a> {
    pub(crate) rt: &'a ResourceType,
    pub(crate) operation: Operation,
    /// `request.namespace`: the object's namespace (a Namespace's own name
    /// for writes to an existing one, as the API server's request info has it).
    pub(crate) namespace: &'a str,
    pub(crate) name: &'a str,
    /// The object after the write (`None` for a delete).
    pub(crate) object: Option<&'a Value>,
    /// The object before it (`None` for a create).
    pub(crate) old: Option<&'a Value>,
    /// The namespace of a namespaced object, if it exists.
    pub(crate) namespace_object: Option<&'a Value>,
    pub(crate) requester: &'a Requester,
    pub(crate) dry_run: bool,
}

/// One entry of `resourceRules` or `excludeResourceRules`.
#[derive(Debug)]
struct Rule {
    groups: Vec<String>,
    versions: Vec<String>,
    resources: Vec<String>,
    operations: Vec<String>,
    names: Vec<String>,
    scope: String,
}

impl Rule {
    fn matches(&self, r: &Request<'_>, any_version: bool) -> bool {
        let has = |list: &[String], value: &str| list.iter().any(|v| v == "*" || v == value);
        let resource = self.resources.iter().any(|pattern| {
            // As the API server splits them: `pods` is `pods` without a
            // subresource, `pods/*` is pods and every subresource of it.
            let (res, sub) = pattern.split_once('/').unwrap_or((pattern, ""));
            (res == "*" || res == r.rt.plural) && (sub == "*" || sub == r.requester.subresource)
        });
        has(&self.operations, r.operation.as_str())
            && has(&self.groups, &r.rt.group)
            && (any_version || has(&self.versions, &r.rt.version))
            && resource
            && (self.names.is_empty() || self.names.iter().any(|n| n == r.name))
            && match self.scope.as_str() {
                "Cluster" => !r.rt.namespaced,
                "Namespaced" => r.rt.namespaced,
                _ => true,
            }
    }
}

/// `matchConstraints` of a policy or `matchResources` of a binding.
#[derive(Debug)]
struct Matcher {
    /// `None`: every resource (a binding without `resourceRules`).
    rules: Option<Vec<Rule>>,
    excluded: Vec<Rule>,
    namespaces: LabelSelector,
    objects: LabelSelector,
    any_version: bool,
}

impl Matcher {
    fn matches(&self, r: &Request<'_>) -> bool {
        let any_version = self.any_version;
        if let Some(rules) = &self.rules
            && !rules.iter().any(|rule| rule.matches(r, any_version))
        {
            return false;
        }
        if self
            .excluded
            .iter()
            .any(|rule| rule.matches(r, any_version))
        {
            return false;
        }
        let is_namespace = r.rt.group.is_empty() && r.rt.plural == "namespaces";
        let namespace_matches = if is_namespace {
            // A Namespace is matched by its own labels.
            r.object
                .or(r.old)
                .is_some_and(|ns| self.namespaces.matches(ns))
        } else if r.rt.namespaced {
            self.namespaces
                .matches(r.namespace_object.unwrap_or(&Value::Null))
        } else {
            true
        };
        let object_matches = [r.object, r.old]
            .into_iter()
            .flatten()
            .any(|o| self.objects.matches(o));
        namespace_matches && object_matches
    }
}

/// A compiled CEL expression and its text.
struct Expression {
    source: String,
    program: Program,
}

struct Validation {
    check: Expression,
    message: Option<String>,
    message_expression: Option<Expression>,
    reason: Option<String>,
}

/// A policy, parsed and compiled.
pub(crate) struct CompiledPolicy {
    matcher: Matcher,
    fail: bool,
    conditions: Vec<(String, Expression)>,
    variables: Vec<(String, Expression)>,
    validations: Vec<Validation>,
}

/// Why a policy refuses a request.
struct Denial {
    message: String,
    reason: Option<String>,
}

/// Policies compiled once, by name, with the spec they were compiled from.
#[derive(Default)]
pub(crate) struct PolicyCache {
    compiled: HashMap<String, (Value, Arc<Result<CompiledPolicy, String>>)>,
}

impl std::fmt::Debug for PolicyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyCache")
            .field("policies", &self.compiled.len())
            .finish()
    }
}

fn strings(value: &Value) -> Vec<String> {
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

fn matcher(value: &Value, field: &str, required: bool, causes: &mut Vec<Cause>) -> Matcher {
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

const REASONS: &[&str] = &[
    "Unauthorized",
    "Forbidden",
    "Invalid",
    "RequestEntityTooLarge",
];

/// Parses and compiles a policy's spec, or says what is wrong with it.
fn compile_policy(spec: &Value) -> Result<CompiledPolicy, Vec<Cause>> {
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
            &mut causes,
        );
        let message_expression = validation["messageExpression"]
            .as_str()
            .and_then(|source| compile(source, &format!("{field}.messageExpression"), &mut causes));
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

/// What is wrong with a binding's spec.
fn check_binding(spec: &Value) -> Vec<Cause> {
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

/// What is wrong with a policy or binding about to be stored (nothing for
/// other kinds).
pub(crate) fn check_definition(rt: &ResourceType, object: &Value) -> Vec<Cause> {
    if rt.group != GROUP {
        return Vec::new();
    }
    match rt.plural.as_str() {
        POLICIES => compile_policy(&object["spec"]).err().unwrap_or_default(),
        BINDINGS => check_binding(&object["spec"]),
        _ => Vec::new(),
    }
}

/// JSON as CEL sees it: integers are `int`.
fn to_cel(value: &Value) -> Cel {
    match value {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => n
            .as_i64()
            .map(Cel::Int)
            .or_else(|| n.as_u64().map(Cel::UInt))
            .unwrap_or_else(|| Cel::Float(n.as_f64().unwrap_or_default())),
        Value::String(s) => Cel::String(Arc::new(s.clone())),
        Value::Array(items) => Cel::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(map) => Cel::Map(Map {
            map: Arc::new(
                map.iter()
                    .map(|(k, v)| (Key::String(Arc::new(k.clone())), to_cel(v)))
                    .collect(),
            ),
        }),
    }
}

/// The `request` variable.
fn request_variable(r: &Request<'_>) -> Value {
    let kind = json!({"group": r.rt.group, "version": r.rt.version, "kind": r.rt.kind});
    let resource = json!({"group": r.rt.group, "version": r.rt.version, "resource": r.rt.plural});
    let user = &r.requester.user;
    json!({
        "uid": uuid::Uuid::new_v4().to_string(),
        "kind": kind,
        "resource": resource,
        "subResource": r.requester.subresource,
        "requestKind": kind,
        "requestResource": resource,
        "requestSubResource": r.requester.subresource,
        "name": r.name,
        "namespace": r.namespace,
        "operation": r.operation.as_str(),
        "userInfo": {"username": user.name, "uid": "", "groups": user.groups},
        "dryRun": r.dry_run,
        "options": {},
    })
}

/// The variables every expression of every policy sees for one request.
fn context(r: &Request<'_>) -> Context<'static> {
    let mut ctx = Context::default().with_all();
    let or_null = |v: Option<&Value>| v.map_or(Cel::Null, to_cel);
    ctx.add_variable_from_value("object", or_null(r.object));
    ctx.add_variable_from_value("oldObject", or_null(r.old));
    ctx.add_variable_from_value("namespaceObject", or_null(r.namespace_object));
    ctx.add_variable_from_value("request", to_cel(&request_variable(r)));
    ctx
}

/// A boolean expression's value, or the API server's wording of why there
/// is none.
fn boolean(expression: &Expression, ctx: &Context<'_>) -> Result<bool, String> {
    match expression.program.execute(ctx) {
        Ok(Cel::Bool(value)) => Ok(value),
        Ok(other) => Err(format!(
            "expression '{}' resulted in error: expected a bool, got {:?}",
            expression.source,
            other.type_of()
        )),
        Err(e) => Err(format!(
            "expression '{}' resulted in error: {e}",
            expression.source
        )),
    }
}

impl CompiledPolicy {
    /// Evaluates the policy for a request it matches: `None` when it
    /// allows it (or its match conditions leave it out).
    fn decide(&self, base: &Context<'_>) -> Option<Denial> {
        let mut ctx = base.new_inner_scope();
        let mut errors = Vec::new();
        for (name, condition) in &self.conditions {
            match boolean(condition, &ctx) {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => errors.push(format!("matchCondition '{name}': {e}")),
            }
        }
        if !errors.is_empty() {
            return self.fail.then(|| Denial {
                message: errors.join("; "),
                reason: None,
            });
        }
        let mut variables: HashMap<Key, Cel> = HashMap::new();
        for (name, variable) in &self.variables {
            // A variable that fails is left out: the expressions using it
            // fail in turn, under the failure policy.
            if let Ok(value) = variable.program.execute(&ctx) {
                variables.insert(Key::String(Arc::new(name.clone())), value);
                ctx.add_variable_from_value(
                    "variables",
                    Cel::Map(Map {
                        map: Arc::new(variables.clone()),
                    }),
                );
            }
        }
        if self.variables.is_empty() || variables.is_empty() {
            ctx.add_variable_from_value(
                "variables",
                Cel::Map(Map {
                    map: Arc::new(HashMap::new()),
                }),
            );
        }
        for validation in &self.validations {
            match boolean(&validation.check, &ctx) {
                Ok(true) => {}
                Ok(false) => {
                    let from_expression = validation.message_expression.as_ref().and_then(|e| {
                        match e.program.execute(&ctx) {
                            Ok(Cel::String(s)) if !s.trim().is_empty() => Some(s.to_string()),
                            _ => None,
                        }
                    });
                    let message = from_expression
                        .or_else(|| validation.message.clone())
                        .unwrap_or_else(|| {
                            format!("failed expression: {}", validation.check.source.trim())
                        });
                    return Some(Denial {
                        message,
                        reason: validation.reason.clone(),
                    });
                }
                Err(e) if self.fail => {
                    return Some(Denial {
                        message: e,
                        reason: None,
                    });
                }
                Err(_) => {}
            }
        }
        None
    }
}

impl PolicyCache {
    /// The compiled form of a stored policy, compiled again only when its
    /// spec changed.
    fn policy(&mut self, name: &str, spec: &Value) -> Arc<Result<CompiledPolicy, String>> {
        if let Some((cached, compiled)) = self.compiled.get(name)
            && cached == spec
        {
            return compiled.clone();
        }
        let compiled = Arc::new(compile_policy(spec).map_err(|causes| {
            causes
                .iter()
                .map(|c| c.message.clone())
                .collect::<Vec<_>>()
                .join("; ")
        }));
        self.compiled
            .insert(name.to_owned(), (spec.clone(), compiled.clone()));
        compiled
    }

    /// Checks a write against every binding (in name order) and the
    /// policy it names; the first denial refuses it.
    pub(crate) fn admit(
        &mut self,
        policies: &[Arc<Value>],
        bindings: &[Arc<Value>],
        r: &Request<'_>,
    ) -> ApiResult<()> {
        self.compiled.retain(|name, _| {
            policies
                .iter()
                .any(|p| p["metadata"]["name"] == name.as_str())
        });
        let mut ctx: Option<Context<'static>> = None;
        for binding in bindings {
            let spec = &binding["spec"];
            let binding_name = binding["metadata"]["name"].as_str().unwrap_or_default();
            let Some(policy_name) = spec["policyName"].as_str() else {
                continue;
            };
            // A binding to a policy that does not exist does nothing.
            let Some(policy) = policies
                .iter()
                .find(|p| p["metadata"]["name"] == policy_name)
            else {
                continue;
            };
            let actions = strings(&spec["validationActions"]);
            if !actions.iter().any(|a| a == "Deny") {
                continue;
            }
            let denial = match &*self.policy(policy_name, &policy["spec"]) {
                Err(why) => Denial {
                    message: format!("the policy cannot be evaluated: {why}"),
                    reason: None,
                },
                Ok(compiled) => {
                    if !compiled.matcher.matches(r) {
                        continue;
                    }
                    if spec["matchResources"].is_object() {
                        let mut causes = Vec::new();
                        let binding_matcher =
                            matcher(&spec["matchResources"], "", false, &mut causes);
                        if !binding_matcher.matches(r) {
                            continue;
                        }
                    }
                    let ctx = ctx.get_or_insert_with(|| context(r));
                    match compiled.decide(ctx) {
                        Some(denial) => denial,
                        None => continue,
                    }
                }
            };
            return Err(denied(r, policy_name, binding_name, &denial));
        }
        Ok(())
    }
}

/// The API server's answer to a denial.
fn denied(r: &Request<'_>, policy: &str, binding: &str, denial: &Denial) -> ApiError {
    let (reason, code) = match denial.reason.as_deref() {
        Some("Forbidden") => ("Forbidden", 403),
        Some("Unauthorized") => ("Unauthorized", 401),
        Some("RequestEntityTooLarge") => ("RequestEntityTooLarge", 413),
        _ => ("Invalid", 422),
    };
    ApiError::denied_by_admission(
        r.rt.subject(),
        r.name,
        reason,
        code,
        format!(
            "ValidatingAdmissionPolicy '{policy}' with binding '{binding}' denied request: {}",
            denial.message
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubesim::resources::Registry;

    fn rt(group: &str, plural: &str) -> Arc<ResourceType> {
        Registry::builtin()
            .all()
            .iter()
            .find(|t| t.group == group && t.plural == plural)
            .cloned()
            .expect("a built-in type")
    }

    fn policy(spec: Value) -> Arc<Value> {
        Arc::new(json!({"metadata": {"name": "p"}, "spec": spec}))
    }

    fn binding(spec: Value) -> Arc<Value> {
        Arc::new(json!({"metadata": {"name": "b"}, "spec": spec}))
    }

    fn requester(name: &str) -> Requester {
        Requester {
            user: UserInfo {
                name: name.to_owned(),
                groups: Vec::new(),
            },
            subresource: String::new(),
        }
    }

    const ONLY_LABELLED: &str =
        "has(namespaceObject.metadata.labels) && 'team' in namespaceObject.metadata.labels";

    fn team_policy() -> Arc<Value> {
        policy(json!({
            "matchConstraints": {"resourceRules": [{
                "apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["deployments"],
                "operations": ["CREATE", "UPDATE", "DELETE"],
            }]},
            "matchConditions": [{"name": "robot", "expression": "request.userInfo.username == 'robot'"}],
            "validations": [{
                "expression": ONLY_LABELLED,
                "messageExpression": "'namespace ' + request.namespace + ' has no team'",
                "reason": "Forbidden",
            }],
        }))
    }

    fn admit_deployment(
        cache: &mut PolicyCache,
        bindings: &[Arc<Value>],
        namespace: &Value,
        who: &str,
    ) -> ApiResult<()> {
        let deployments = rt("apps", "deployments");
        let object = json!({"metadata": {"name": "web", "namespace": "x"}});
        let requester = requester(who);
        cache.admit(
            &[team_policy()],
            bindings,
            &Request {
                rt: &deployments,
                operation: Operation::Create,
                namespace: "x",
                name: "web",
                object: Some(&object),
                old: None,
                namespace_object: Some(namespace),
                requester: &requester,
                dry_run: false,
            },
        )
    }

    #[test]
    fn a_policy_denies_what_its_validation_refuses_and_only_for_matched_users() {
        let plain = json!({"metadata": {"name": "x"}});
        let labelled = json!({"metadata": {"name": "x", "labels": {"team": "a"}}});
        let mut cache = PolicyCache::default();
        let deny = [binding(
            json!({"policyName": "p", "validationActions": ["Deny"]}),
        )];
        let error = admit_deployment(&mut cache, &deny, &plain, "robot").expect_err("denied");
        assert_eq!(error.code, 403);
        assert_eq!(
            error.message,
            "deployments.apps \"web\" is forbidden: ValidatingAdmissionPolicy 'p' with binding 'b' denied request: namespace x has no team"
        );
        admit_deployment(&mut cache, &deny, &labelled, "robot")
            .expect("a labelled namespace is fine");
        admit_deployment(&mut cache, &deny, &plain, "human").expect("other users are not matched");
        let warn = [binding(
            json!({"policyName": "p", "validationActions": ["Warn"]}),
        )];
        admit_deployment(&mut cache, &warn, &plain, "robot").expect("Warn does not deny");
        admit_deployment(&mut cache, &[], &plain, "robot").expect("no binding, no policy");
    }

    #[test]
    fn bad_policies_and_bindings_are_refused_naming_the_field() {
        let policies = rt(GROUP, POLICIES);
        let bindings = rt(GROUP, BINDINGS);
        let causes = check_definition(
            &policies,
            &json!({"spec": {
                "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
                "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "operations": ["CREATE"]}]},
                "validations": [{"expression": "object.spec.(("}],
            }}),
        );
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["spec.paramKind", "spec.validations[0].expression"]);
        let causes = check_definition(
            &bindings,
            &json!({"spec": {"validationActions": ["Deny", "Nope"]}}),
        );
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["spec.policyName", "spec.validationActions[1]"]);
        assert!(check_definition(&policies, &team_policy()).is_empty());
    }

    #[test]
    fn resource_patterns_follow_the_api_server() {
        let deployments = rt("apps", "deployments");
        let robot = requester("robot");
        let mut scale = requester("robot");
        scale.subresource = "scale".into();
        let rule = |resources: &[&str]| Rule {
            groups: vec!["*".into()],
            versions: vec!["*".into()],
            resources: resources.iter().map(|s| s.to_string()).collect(),
            operations: vec!["*".into()],
            names: Vec::new(),
            scope: "*".into(),
        };
        let request = |who| Request {
            rt: &deployments,
            operation: Operation::Update,
            namespace: "x",
            name: "web",
            object: None,
            old: None,
            namespace_object: None,
            requester: who,
            dry_run: false,
        };
        for (resources, main, sub) in [
            (&["deployments"][..], true, false),
            (&["deployments/*"][..], true, true),
            (&["*"][..], true, false),
            (&["*/scale"][..], false, true),
            (&["*/*"][..], true, true),
            (&["statefulsets"][..], false, false),
        ] {
            assert_eq!(
                rule(resources).matches(&request(&robot), false),
                main,
                "{resources:?}"
            );
            assert_eq!(
                rule(resources).matches(&request(&scale), false),
                sub,
                "{resources:?}/scale"
            );
        }
    }
}
