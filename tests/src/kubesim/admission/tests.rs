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
    admit_deployment(&mut cache, &deny, &labelled, "robot").expect("a labelled namespace is fine");
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
fn variable_names_must_be_cel_identifiers_and_not_reserved_words() {
    let policies = rt(GROUP, POLICIES);
    let causes = check_definition(
        &policies,
        &json!({"spec": {
            "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "operations": ["CREATE"]}]},
            "variables": [
                {"name": "targetNamespace", "expression": "request.namespace"},
                {"name": "namespace", "expression": "request.namespace"},
                {"name": "2fast", "expression": "1"},
            ],
            "validations": [{"expression": "true"}],
        }}),
    );
    let found: Vec<(&str, &str)> = causes
        .iter()
        .map(|c| (c.field.as_str(), c.message.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (
                "spec.variables[1].name",
                "spec.variables[1].name: Invalid value: \"namespace\": name is not a valid CEL identifier"
            ),
            (
                "spec.variables[2].name",
                "spec.variables[2].name: Invalid value: \"2fast\": name is not a valid CEL identifier"
            ),
        ]
    );
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
