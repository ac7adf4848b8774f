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

mod compile;

use compile::{check_binding, compile_policy, matcher, strings};

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
mod tests;
