//! RBAC as the real API server evaluates it, as a pure function of Roles,
//! ClusterRoles and their bindings: which rule (if any) allows a request.
//!
//! kubesim uses it to authorize requests that carry a token when RBAC is on
//! ([`crate::kubesim::KubeSimBuilder::rbac`]); tests use it to check a
//! chart's roles against the requests a component made (the
//! [`RequestLog`](crate::kubesim::RequestLog)).
//!
//! The rules follow the RBAC authorizer: a request is allowed when any rule
//! of a role bound to the user (a ClusterRoleBinding anywhere, a RoleBinding
//! in the request's namespace only) matches its verb, API group, resource
//! (`resource/subresource` for a subresource; `*` and `*/sub` as
//! wildcards) and, when the rule lists `resourceNames`, its object name.
//! There is no deny rule and no aggregation.
//!
//! A server-side apply that creates its object needs `create` as well as
//! `patch`, with the object's name (so `resourceNames` apply to it), as
//! the API server checks it (k8s.io/apiserver `handlers/patch.go`); the
//! request log lists it in [`RequestRecord::also_authorized`] and
//! [`Policy::coverage`] counts it.

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use serde_json::Value;

use crate::kubesim::log::RequestRecord;

/// The user a request runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    /// User name (`system:serviceaccount:<namespace>:<name>`).
    pub name: String,
    /// Groups (`system:serviceaccounts`, `system:serviceaccounts:<ns>`,
    /// `system:authenticated`).
    pub groups: Vec<String>,
}

impl UserInfo {
    /// The user a service account's tokens authenticate as, with its groups.
    pub fn service_account(namespace: &str, name: &str) -> Self {
        Self {
            name: format!("system:serviceaccount:{namespace}:{name}"),
            groups: vec![
                "system:serviceaccounts".to_owned(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".to_owned(),
            ],
        }
    }
}

impl UserInfo {
    /// Whom kubesim takes a request without credentials for (tests,
    /// nodesim, kubectl with the plain kubeconfig): a cluster administrator
    /// in `system:masters`, which is what admission policies see.
    pub fn administrator() -> Self {
        Self {
            name: "system:admin".to_owned(),
            groups: vec![
                "system:masters".to_owned(),
                "system:authenticated".to_owned(),
            ],
        }
    }
}

/// What a request asks for, in RBAC's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attributes {
    /// RBAC verb (`get`, `list`, `watch`, `create`, `update`, `patch`,
    /// `delete`, `deletecollection`).
    pub verb: String,
    /// API group (`""` for core).
    pub group: String,
    /// Resource plural.
    pub resource: String,
    /// Subresource, or empty.
    pub subresource: String,
    /// Namespace, or empty at the cluster scope.
    pub namespace: String,
    /// Object name, or empty for collections and creates.
    pub name: String,
}

impl Attributes {
    /// The attributes of a logged request, for its own verb.
    pub fn of(record: &RequestRecord) -> Self {
        Self {
            verb: record.verb.rbac_verb().to_owned(),
            group: record.group.clone(),
            resource: record.resource.clone(),
            subresource: record.subresource.clone(),
            namespace: record.namespace.clone(),
            name: record.name.clone(),
        }
    }

    /// Every authorization a logged request needed: its own verb, then
    /// each of [`RequestRecord::also_authorized`] (`create` for an apply
    /// that created the object).
    pub fn all_of(record: &RequestRecord) -> Vec<Self> {
        let own = Self::of(record);
        let also = record.also_authorized.iter().map(|verb| Self {
            verb: (*verb).to_owned(),
            ..own.clone()
        });
        std::iter::once(own.clone()).chain(also).collect()
    }

    /// `resource` or `resource/subresource`.
    pub fn combined_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }

    /// The API server's wording of a denial.
    pub fn forbidden_message(&self, user: &str) -> String {
        let object = if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        };
        let object = if self.name.is_empty() {
            object
        } else {
            format!("{object} \"{}\"", self.name)
        };
        let scope = if self.namespace.is_empty() {
            "at the cluster scope".to_owned()
        } else {
            format!("in the namespace \"{}\"", self.namespace)
        };
        format!(
            "{object} is forbidden: User \"{user}\" cannot {verb} resource \"{resource}\" in API group \"{group}\" {scope}",
            verb = self.verb,
            resource = self.combined_resource(),
            group = self.group,
        )
    }
}

/// Whether `rule` covers the request.
pub fn rule_allows(rule: &PolicyRule, attributes: &Attributes) -> bool {
    let has = |list: &[String], value: &str| list.iter().any(|v| v == "*" || v == value);
    if !has(&rule.verbs, &attributes.verb) {
        return false;
    }
    if !has(
        rule.api_groups.as_deref().unwrap_or_default(),
        &attributes.group,
    ) {
        return false;
    }
    let combined = attributes.combined_resource();
    let resource_matches = rule.resources.iter().flatten().any(|r| {
        r == "*"
            || *r == combined
            || (!attributes.subresource.is_empty()
                && r.strip_prefix("*/") == Some(attributes.subresource.as_str()))
    });
    if !resource_matches {
        return false;
    }
    match rule.resource_names.as_deref() {
        None | Some([]) => true,
        Some(names) => !attributes.name.is_empty() && names.contains(&attributes.name),
    }
}

/// One rule of one role, for reports.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleRef {
    /// `ClusterRole` or `Role`.
    pub role_kind: String,
    /// The Role's namespace (empty for a ClusterRole).
    pub role_namespace: String,
    /// The role's name.
    pub role_name: String,
    /// Index of the rule in the role.
    pub index: usize,
}

impl std::fmt::Display for RuleRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.role_namespace.is_empty() {
            write!(
                f,
                "{} {} rule {}",
                self.role_kind, self.role_name, self.index
            )
        } else {
            write!(
                f,
                "{} {}/{} rule {}",
                self.role_kind, self.role_namespace, self.role_name, self.index
            )
        }
    }
}

#[derive(Clone, Debug)]
struct NamedRole {
    kind: &'static str,
    namespace: String,
    name: String,
    rules: Vec<PolicyRule>,
}

#[derive(Clone, Debug)]
struct Binding {
    /// The RoleBinding's namespace; empty for a ClusterRoleBinding.
    namespace: String,
    role_ref: RoleRef,
    subjects: Vec<Subject>,
}

/// Why an object could not be read as an RBAC object.
#[derive(Debug, thiserror::Error)]
#[error("{kind} {name}: {source}")]
pub struct PolicyError {
    /// Its kind.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// Why.
    pub source: serde_json::Error,
}

/// The roles and bindings of a cluster (or of a chart's rendered objects).
#[derive(Clone, Debug, Default)]
pub struct Policy {
    roles: Vec<NamedRole>,
    bindings: Vec<Binding>,
}

impl Policy {
    /// Reads the Roles, ClusterRoles, RoleBindings and ClusterRoleBindings
    /// among `objects` (other kinds are skipped).
    pub fn from_objects<'a>(
        objects: impl IntoIterator<Item = &'a Value>,
    ) -> Result<Self, PolicyError> {
        let mut policy = Self::default();
        for object in objects {
            let kind = object["kind"].as_str().unwrap_or_default();
            let error = |source| PolicyError {
                kind: kind.to_owned(),
                name: object["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                source,
            };
            match kind {
                "ClusterRole" => {
                    let role: ClusterRole =
                        serde_json::from_value(object.clone()).map_err(error)?;
                    policy.roles.push(NamedRole {
                        kind: "ClusterRole",
                        namespace: String::new(),
                        name: role.metadata.name.unwrap_or_default(),
                        rules: role.rules.unwrap_or_default(),
                    });
                }
                "Role" => {
                    let role: Role = serde_json::from_value(object.clone()).map_err(error)?;
                    policy.roles.push(NamedRole {
                        kind: "Role",
                        namespace: role.metadata.namespace.unwrap_or_default(),
                        name: role.metadata.name.unwrap_or_default(),
                        rules: role.rules.unwrap_or_default(),
                    });
                }
                "ClusterRoleBinding" => {
                    let binding: ClusterRoleBinding =
                        serde_json::from_value(object.clone()).map_err(error)?;
                    policy.bindings.push(Binding {
                        namespace: String::new(),
                        role_ref: binding.role_ref,
                        subjects: binding.subjects.unwrap_or_default(),
                    });
                }
                "RoleBinding" => {
                    let binding: RoleBinding =
                        serde_json::from_value(object.clone()).map_err(error)?;
                    policy.bindings.push(Binding {
                        namespace: binding.metadata.namespace.unwrap_or_default(),
                        role_ref: binding.role_ref,
                        subjects: binding.subjects.unwrap_or_default(),
                    });
                }
                _ => {}
            }
        }
        Ok(policy)
    }

    /// Every rule of every role, in order.
    pub fn rules(&self) -> Vec<(RuleRef, PolicyRule)> {
        self.roles
            .iter()
            .flat_map(|role| {
                role.rules.iter().enumerate().map(|(index, rule)| {
                    (
                        RuleRef {
                            role_kind: role.kind.to_owned(),
                            role_namespace: role.namespace.clone(),
                            role_name: role.name.clone(),
                            index,
                        },
                        rule.clone(),
                    )
                })
            })
            .collect()
    }

    /// Every rule that allows the request for `user`; empty when it is
    /// forbidden.
    pub fn allowing_rules(&self, user: &UserInfo, attributes: &Attributes) -> Vec<RuleRef> {
        let mut found = Vec::new();
        for binding in &self.bindings {
            let in_scope =
                binding.namespace.is_empty() || binding.namespace == attributes.namespace;
            if !in_scope || !binding.subjects.iter().any(|s| subject_is(s, user)) {
                continue;
            }
            let role = self.roles.iter().find(|role| {
                role.name == binding.role_ref.name
                    && match binding.role_ref.kind.as_str() {
                        "ClusterRole" => role.kind == "ClusterRole",
                        // A Role is found in the RoleBinding's namespace.
                        "Role" => role.kind == "Role" && role.namespace == binding.namespace,
                        _ => false,
                    }
            });
            let Some(role) = role else { continue };
            for (index, rule) in role.rules.iter().enumerate() {
                if rule_allows(rule, attributes) {
                    found.push(RuleRef {
                        role_kind: role.kind.to_owned(),
                        role_namespace: role.namespace.clone(),
                        role_name: role.name.clone(),
                        index,
                    });
                }
            }
        }
        found
    }

    /// Whether the request is allowed for `user`.
    pub fn allows(&self, user: &UserInfo, attributes: &Attributes) -> bool {
        !self.allowing_rules(user, attributes).is_empty()
    }

    /// Checks `user`'s requests in `records` (others are skipped) against
    /// the roles bound to it: which were not allowed (for their own verb
    /// or for one they were also authorized for, [`Attributes::all_of`]),
    /// and which permissions of those roles no request used.
    pub fn coverage(&self, user: &UserInfo, records: &[RequestRecord]) -> Coverage {
        let mut denied = Vec::new();
        let mut allowed: Vec<(Attributes, Vec<RuleRef>)> = Vec::new();
        for record in records
            .iter()
            .filter(|r| r.user.as_deref() == Some(user.name.as_str()))
        {
            let mut refused = false;
            for attributes in Attributes::all_of(record) {
                let rules = self.allowing_rules(user, &attributes);
                if rules.is_empty() {
                    refused = true;
                } else {
                    allowed.push((attributes, rules));
                }
            }
            if refused {
                denied.push(record.clone());
            }
        }
        let bound: Vec<RuleRef> = self
            .rules()
            .into_iter()
            .map(|(rule_ref, _)| rule_ref)
            .filter(|rule_ref| {
                self.bindings.iter().any(|b| {
                    b.role_ref.name == rule_ref.role_name
                        && b.role_ref.kind == rule_ref.role_kind
                        && (rule_ref.role_kind == "ClusterRole"
                            || b.namespace == rule_ref.role_namespace)
                        && b.subjects.iter().any(|s| subject_is(s, user))
                })
            })
            .collect();
        let mut unused = Vec::new();
        for (rule_ref, rule) in self.rules() {
            if !bound.contains(&rule_ref) {
                continue;
            }
            for grant in grants(&rule_ref, &rule) {
                let single = PolicyRule {
                    verbs: vec![grant.verb.clone()],
                    api_groups: Some(vec![grant.group.clone()]),
                    resources: Some(vec![grant.resource.clone()]),
                    resource_names: rule.resource_names.clone(),
                    non_resource_urls: None,
                };
                let used = allowed.iter().any(|(attributes, rules)| {
                    rules.contains(&rule_ref) && rule_allows(&single, attributes)
                });
                if !used {
                    unused.push(grant);
                }
            }
        }
        Coverage { denied, unused }
    }
}

/// One permission a rule grants: a verb on a resource of an API group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The rule.
    pub rule: RuleRef,
    /// The verb.
    pub verb: String,
    /// The API group.
    pub group: String,
    /// The resource (`resource/subresource` for a subresource).
    pub resource: String,
}

impl std::fmt::Display for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        write!(
            f,
            "{} {} ({group}) from {}",
            self.verb, self.resource, self.rule
        )
    }
}

fn grants(rule_ref: &RuleRef, rule: &PolicyRule) -> Vec<Grant> {
    let mut out = Vec::new();
    for verb in &rule.verbs {
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                out.push(Grant {
                    rule: rule_ref.clone(),
                    verb: verb.clone(),
                    group: group.clone(),
                    resource: resource.clone(),
                });
            }
        }
    }
    out
}

/// What [`Policy::coverage`] found.
#[derive(Clone, Debug, Default)]
pub struct Coverage {
    /// Requests no rule allowed.
    pub denied: Vec<RequestRecord>,
    /// Permissions no request used.
    pub unused: Vec<Grant>,
}

fn subject_is(subject: &Subject, user: &UserInfo) -> bool {
    match subject.kind.as_str() {
        "ServiceAccount" => {
            let namespace = subject.namespace.as_deref().unwrap_or_default();
            user.name == format!("system:serviceaccount:{namespace}:{}", subject.name)
        }
        "User" => user.name == subject.name,
        "Group" => user.groups.contains(&subject.name),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
