use super::*;
use crate::kubesim::log::Verb;
use serde_json::json;

fn attributes(
    verb: &str,
    group: &str,
    resource: &str,
    sub: &str,
    ns: &str,
    name: &str,
) -> Attributes {
    Attributes {
        verb: verb.into(),
        group: group.into(),
        resource: resource.into(),
        subresource: sub.into(),
        namespace: ns.into(),
        name: name.into(),
    }
}

fn policy() -> Policy {
    let objects = [
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "op"},
        "rules": [
            {"apiGroups": ["atoll.dev"], "resources": ["tenants"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["atoll.dev"], "resources": ["tenants/status"], "verbs": ["patch"]},
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["db"]},
        ]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "op"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "op"},
            "subjects": [{"kind": "ServiceAccount", "name": "op", "namespace": "sys"}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "leader", "namespace": "sys"},
            "rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "update"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "leader", "namespace": "sys"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "leader"},
            "subjects": [{"kind": "ServiceAccount", "name": "op", "namespace": "sys"}]}),
    ];
    Policy::from_objects(objects.iter()).expect("valid RBAC objects")
}

#[test]
fn subresources_names_and_scopes_match_as_in_the_api_server() {
    let policy = policy();
    let op = UserInfo::service_account("sys", "op");
    let other = UserInfo::service_account("other", "op");
    let allowed = |user: &UserInfo, a: Attributes| policy.allows(user, &a);
    assert!(allowed(
        &op,
        attributes("watch", "atoll.dev", "tenants", "", "", "")
    ));
    assert!(!allowed(
        &other,
        attributes("watch", "atoll.dev", "tenants", "", "", "")
    ));
    assert!(!allowed(
        &op,
        attributes("patch", "atoll.dev", "tenants", "", "", "acme")
    ));
    assert!(allowed(
        &op,
        attributes("patch", "atoll.dev", "tenants", "status", "", "acme")
    ));
    assert!(!allowed(
        &op,
        attributes("get", "atoll.dev", "tenants", "status", "", "acme")
    ));
    assert!(allowed(
        &op,
        attributes("get", "", "secrets", "", "x", "db")
    ));
    assert!(!allowed(
        &op,
        attributes("get", "", "secrets", "", "x", "other")
    ));
    assert!(!allowed(
        &op,
        attributes("list", "", "secrets", "", "x", "")
    ));
    assert!(allowed(
        &op,
        attributes("update", "coordination.k8s.io", "leases", "", "sys", "l")
    ));
    assert!(!allowed(
        &op,
        attributes("update", "coordination.k8s.io", "leases", "", "else", "l")
    ));
    let rules = policy.allowing_rules(
        &op,
        &attributes("patch", "atoll.dev", "tenants", "status", "", "a"),
    );
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].to_string(), "ClusterRole op rule 1");
}

fn record(user: &str, verb: Verb, group: &str, resource: &str, sub: &str) -> RequestRecord {
    RequestRecord {
        user: Some(user.to_owned()),
        verb,
        group: group.into(),
        resource: resource.into(),
        subresource: sub.into(),
        namespace: String::new(),
        name: if verb == Verb::List || verb == Verb::Watch {
            String::new()
        } else {
            "acme".into()
        },
        field_manager: String::new(),
        code: 200,
        wrote: false,
        faulted: false,
        also_authorized: Vec::new(),
    }
}

#[test]
fn coverage_names_denied_requests_and_unused_permissions() {
    let policy = policy();
    let op = UserInfo::service_account("sys", "op");
    let records = vec![
        record(&op.name, Verb::Watch, "atoll.dev", "tenants", ""),
        record(&op.name, Verb::List, "atoll.dev", "tenants", ""),
        record(&op.name, Verb::Apply, "atoll.dev", "tenants", "status"),
        record(&op.name, Verb::Delete, "atoll.dev", "tenants", ""),
        record("someone-else", Verb::Delete, "", "namespaces", ""),
    ];
    let coverage = policy.coverage(&op, &records);
    assert_eq!(coverage.denied.len(), 1);
    assert_eq!(coverage.denied[0].verb, Verb::Delete);
    let unused: Vec<String> = coverage.unused.iter().map(ToString::to_string).collect();
    assert_eq!(
        unused,
        [
            "get tenants (atoll.dev) from ClusterRole op rule 0",
            "get secrets (core) from ClusterRole op rule 2",
            "get leases (coordination.k8s.io) from Role sys/leader rule 0",
            "update leases (coordination.k8s.io) from Role sys/leader rule 0",
        ]
    );
}

#[test]
fn an_apply_that_creates_needs_and_uses_create_by_name() {
    let objects = [
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "op"},
        "rules": [
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["patch", "create"], "resourceNames": ["acme"]},
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["patch"]},
        ]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "op"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "op"},
            "subjects": [{"kind": "ServiceAccount", "name": "op", "namespace": "sys"}]}),
    ];
    let policy = Policy::from_objects(objects.iter()).expect("valid RBAC objects");
    let op = UserInfo::service_account("sys", "op");
    let created = |resource: &str| RequestRecord {
        also_authorized: vec!["create"],
        code: 201,
        ..record(&op.name, Verb::Apply, "", resource, "")
    };
    let updated = record(&op.name, Verb::Apply, "", "configmaps", "");

    let coverage = policy.coverage(&op, &[created("secrets"), updated.clone()]);
    assert!(coverage.denied.is_empty(), "{:?}", coverage.denied);
    assert!(coverage.unused.is_empty(), "{:?}", coverage.unused);

    let coverage = policy.coverage(&op, &[updated]);
    let unused: Vec<String> = coverage.unused.iter().map(ToString::to_string).collect();
    assert_eq!(
        unused,
        [
            "patch secrets (core) from ClusterRole op rule 0",
            "create secrets (core) from ClusterRole op rule 0",
        ]
    );

    let coverage = policy.coverage(&op, &[created("configmaps")]);
    assert_eq!(coverage.denied, [created("configmaps")]);
    let mut other_name = created("secrets");
    other_name.name = "other".into();
    let coverage = policy.coverage(&op, std::slice::from_ref(&other_name));
    assert_eq!(coverage.denied, [other_name]);
}

#[test]
fn wildcards_cover_everything_they_name() {
    let rule: PolicyRule = serde_json::from_value(json!({
        "apiGroups": ["*"], "resources": ["*/status"], "verbs": ["*"]
    }))
    .expect("rule");
    assert!(rule_allows(
        &rule,
        &attributes("patch", "apps", "deployments", "status", "n", "d")
    ));
    assert!(!rule_allows(
        &rule,
        &attributes("patch", "apps", "deployments", "", "n", "d")
    ));
}

#[test]
fn denials_are_worded_like_the_api_server() {
    let a = attributes("patch", "atoll.dev", "tenants", "status", "", "acme");
    assert_eq!(
        a.forbidden_message("system:serviceaccount:sys:op"),
        "tenants.atoll.dev \"acme\" is forbidden: User \"system:serviceaccount:sys:op\" cannot patch resource \"tenants/status\" in API group \"atoll.dev\" at the cluster scope"
    );
    let a = attributes("list", "", "secrets", "", "x", "");
    assert_eq!(
        a.forbidden_message("u"),
        "secrets is forbidden: User \"u\" cannot list resource \"secrets\" in API group \"\" in the namespace \"x\""
    );
}
