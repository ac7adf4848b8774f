//! The Tenant API as a user meets it: the examples are valid, and every rule
//! refuses a bad spec with an error naming the field, and accepts a good one,
//! through all three gates: the typed parse plus `validate` (what the
//! operator runs), the CRD's OpenAPI schema (what the API server checks), and
//! the CRD's CEL rules (evaluated here with kube-cel, as the API server would).

mod support;

use atoll_crds::{Tenant, from_value, validate};
use kube::CustomResourceExt;
use serde_json::{Value, json};
use support::*;

fn member(user: &str) -> Value {
    json!({"user": user, "role": "Viewer"})
}

fn cases() -> Vec<Case> {
    let many_members = |n: usize| -> Value {
        Value::Array(
            (0..n)
                .map(|i| member(&format!("user{i}@example.com")))
                .collect(),
        )
    };
    let many_env = |n: usize| -> Value {
        Value::Array(
            (0..n)
                .map(|i| json!({"name": format!("VAR_{i}"), "value": "x"}))
                .collect(),
        )
    };
    let env = |var: Value| json!({"spec": {"instance": {"env": [var]}}});
    vec![
        Case {
            rule: "tenant name at most 40 characters",
            gate: Gate::Cel,
            field: "metadata.name",
            bad: json!({"metadata": {"name": "a".repeat(41)}}),
            good: json!({"metadata": {"name": "a".repeat(40)}}),
        },
        Case {
            rule: "tenant name is a DNS label starting with a letter",
            gate: Gate::Cel,
            field: "metadata.name",
            bad: json!({"metadata": {"name": "1acme.corp"}}),
            good: json!({"metadata": {"name": "acme-corp-2"}}),
        },
        Case {
            rule: "names of the platform's own namespace and components are reserved",
            gate: Gate::Cel,
            field: "metadata.name",
            bad: json!({"metadata": {"name": "system"}}),
            good: json!({"metadata": {"name": "systems"}}),
        },
        Case {
            rule: "displayName at most 128 characters",
            gate: Gate::Schema,
            field: "spec.displayName",
            bad: json!({"spec": {"displayName": "x".repeat(129)}}),
            good: json!({"spec": {"displayName": "x".repeat(128)}}),
        },
        Case {
            rule: "instance image is an image name without tag",
            gate: Gate::Schema,
            field: "spec.instance.image",
            bad: json!({"spec": {"instance": {"image": "Registry/Atoll Instance"}}}),
            good: json!({"spec": {"instance": {"image": "localhost:5000/atoll/instance"}}}),
        },
        Case {
            rule: "instance version is an image tag",
            gate: Gate::Schema,
            field: "spec.instance.version",
            bad: json!({"spec": {"instance": {"version": "1.0/../latest"}}}),
            good: json!({"spec": {"instance": {"version": "1.2.3-rc.1"}}}),
        },
        Case {
            rule: "replicas at most 10",
            gate: Gate::Schema,
            field: "spec.instance.replicas",
            bad: json!({"spec": {"instance": {"replicas": 11}}}),
            good: json!({"spec": {"instance": {"replicas": 10}}}),
        },
        Case {
            rule: "replicas not negative",
            gate: Gate::Schema,
            field: "spec.instance.replicas",
            bad: json!({"spec": {"instance": {"replicas": -1}}}),
            good: json!({"spec": {"instance": {"replicas": 0}}}),
        },
        Case {
            rule: "resource amounts are quantities",
            gate: Gate::Schema,
            field: "spec.instance.resources.requests.cpu",
            bad: json!({"spec": {"instance": {"resources": {"requests": {"cpu": "lots"}}}}}),
            good: json!({"spec": {"instance": {"resources": {"requests": {"cpu": 1}}}}}),
        },
        Case {
            rule: "resource amounts are not negative",
            gate: Gate::Schema,
            field: "spec.instance.resources.requests.memory",
            bad: json!({"spec": {"instance": {"resources": {"requests": {"memory": -5}}}}}),
            good: json!({"spec": {"instance": {"resources": {"requests": {"memory": "128Mi"}}}}}),
        },
        Case {
            rule: "cpu limit at least the request",
            gate: Gate::Cel,
            field: "spec.instance.resources.limits.cpu",
            bad: json!({"spec": {"instance": {"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1500m"}}}}}),
            good: json!({"spec": {"instance": {"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "2000m"}}}}}),
        },
        Case {
            rule: "memory limit at least the request",
            gate: Gate::Cel,
            field: "spec.database.dedicated.resources.limits.memory",
            bad: json!({"spec": {"database": {"dedicated": {"resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "1000Mi"}}}}}}),
            good: json!({"spec": {"database": {"dedicated": {"resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "1024Mi"}}}}}}),
        },
        Case {
            rule: "env names are variable names",
            gate: Gate::Schema,
            field: "spec.instance.env[0].name",
            bad: env(json!({"name": "1-BAD", "value": "x"})),
            good: env(json!({"name": "_GOOD_1", "value": "x"})),
        },
        Case {
            rule: "ATOLL_ env names are reserved",
            gate: Gate::Cel,
            field: "spec.instance.env[0].name",
            bad: env(json!({"name": "ATOLL_DATABASE_URL", "value": "postgres://elsewhere"})),
            good: env(json!({"name": "MY_ATOLL_SETTING", "value": "x"})),
        },
        Case {
            rule: "env value or valueFrom, not both",
            gate: Gate::Cel,
            field: "spec.instance.env[0]",
            bad: env(
                json!({"name": "X", "value": "x", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}),
            ),
            good: env(
                json!({"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}),
            ),
        },
        Case {
            rule: "valueFrom names exactly one source",
            gate: Gate::Cel,
            field: "spec.instance.env[0].valueFrom",
            bad: env(json!({"name": "X", "valueFrom": {}})),
            good: env(
                json!({"name": "X", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}),
            ),
        },
        Case {
            rule: "valueFrom references a valid object name",
            gate: Gate::Schema,
            field: "spec.instance.env[0].valueFrom.secretKeyRef.name",
            bad: env(
                json!({"name": "X", "valueFrom": {"secretKeyRef": {"name": "../etc", "key": "k"}}}),
            ),
            good: env(
                json!({"name": "X", "valueFrom": {"secretKeyRef": {"name": "etc.d", "key": "k"}}}),
            ),
        },
        Case {
            rule: "at most 64 env vars",
            gate: Gate::Schema,
            field: "spec.instance.env",
            bad: json!({"spec": {"instance": {"env": many_env(65)}}}),
            good: json!({"spec": {"instance": {"env": many_env(64)}}}),
        },
        Case {
            rule: "env names unique",
            gate: Gate::ListMapKey,
            field: "spec.instance.env[1].name",
            bad: json!({"spec": {"instance": {"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}}}),
            good: json!({"spec": {"instance": {"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}}}),
        },
        Case {
            rule: "maxConcurrentTaskRuns at least 1",
            gate: Gate::Schema,
            field: "spec.instance.config.maxConcurrentTaskRuns",
            bad: json!({"spec": {"instance": {"config": {"maxConcurrentTaskRuns": 0}}}}),
            good: json!({"spec": {"instance": {"config": {"maxConcurrentTaskRuns": 1}}}}),
        },
        Case {
            rule: "executionRetentionDays at most 3650",
            gate: Gate::Schema,
            field: "spec.instance.config.executionRetentionDays",
            bad: json!({"spec": {"instance": {"config": {"executionRetentionDays": 3651}}}}),
            good: json!({"spec": {"instance": {"config": {"executionRetentionDays": 3650}}}}),
        },
        Case {
            rule: "logLevel is a known level",
            gate: Gate::Schema,
            field: "spec.instance.config.logLevel",
            bad: json!({"spec": {"instance": {"config": {"logLevel": "Verbose"}}}}),
            good: json!({"spec": {"instance": {"config": {"logLevel": "Trace"}}}}),
        },
        Case {
            rule: "database mode is Dedicated or External",
            gate: Gate::Schema,
            field: "spec.database.mode",
            bad: json!({"spec": {"database": {"mode": "Shared"}}}),
            good: json!({"spec": {"database": {"mode": "Dedicated"}}}),
        },
        Case {
            rule: "External mode needs external",
            gate: Gate::Cel,
            field: "spec.database.external",
            bad: json!({"spec": {"database": {"mode": "External", "dedicated": null}}}),
            good: json!({"spec": {"database": {"mode": "External", "dedicated": null, "external": {"adminSecretRef": {"name": "pg-admin"}}}}}),
        },
        Case {
            rule: "Dedicated mode takes no external",
            gate: Gate::Cel,
            field: "spec.database.external",
            bad: json!({"spec": {"database": {"external": {"adminSecretRef": {"name": "pg-admin"}}}}}),
            good: json!({"spec": {"database": {"external": null}}}),
        },
        Case {
            rule: "External mode takes no dedicated",
            gate: Gate::Cel,
            field: "spec.database.dedicated",
            bad: json!({"spec": {"database": {"mode": "External", "external": {"adminSecretRef": {"name": "pg-admin"}}}}}),
            good: json!({"spec": {"database": {"mode": "External", "dedicated": null, "external": {"adminSecretRef": {"name": "pg-admin"}}}}}),
        },
        Case {
            rule: "admin secret reference is an object name",
            gate: Gate::Schema,
            field: "spec.database.external.adminSecretRef.name",
            bad: json!({"spec": {"database": {"mode": "External", "dedicated": null, "external": {"adminSecretRef": {"name": "Admin Secret"}}}}}),
            good: json!({"spec": {"database": {"mode": "External", "dedicated": null, "external": {"adminSecretRef": {"name": "admin-secret"}}}}}),
        },
        Case {
            rule: "storage size is a quantity",
            gate: Gate::Schema,
            field: "spec.database.dedicated.storage.size",
            bad: json!({"spec": {"database": {"dedicated": {"storage": {"size": "5 GB"}}}}}),
            good: json!({"spec": {"database": {"dedicated": {"storage": {"size": "5G"}}}}}),
        },
        Case {
            rule: "storage class is an object name",
            gate: Gate::Schema,
            field: "spec.database.dedicated.storage.storageClassName",
            bad: json!({"spec": {"database": {"dedicated": {"storage": {"storageClassName": "Fast_SSD"}}}}}),
            good: json!({"spec": {"database": {"dedicated": {"storage": {"storageClassName": "fast-ssd"}}}}}),
        },
        Case {
            rule: "database volume fits the storage quota",
            gate: Gate::Cel,
            field: "spec.database.dedicated.storage.size",
            bad: json!({"spec": {"database": {"dedicated": {"storage": {"size": "21Gi"}}}}}),
            good: json!({"spec": {"database": {"dedicated": {"storage": {"size": "20Gi"}}}}}),
        },
        Case {
            rule: "ingress host is a DNS name without wildcard",
            gate: Gate::Schema,
            field: "spec.ingress.host",
            bad: json!({"spec": {"ingress": {"host": "*.globex.example.com"}}}),
            good: json!({"spec": {"ingress": {"host": "flows.globex.example.com"}}}),
        },
        Case {
            rule: "ingress class is an object name",
            gate: Gate::Schema,
            field: "spec.ingress.className",
            bad: json!({"spec": {"ingress": {"className": "NGINX"}}}),
            good: json!({"spec": {"ingress": {"className": "traefik"}}}),
        },
        Case {
            rule: "tls names a secret or an issuer",
            gate: Gate::Cel,
            field: "spec.ingress.tls",
            bad: json!({"spec": {"ingress": {"tls": {"secretName": null, "clusterIssuer": null}}}}),
            good: json!({"spec": {"ingress": {"tls": {"secretName": null}}}}),
        },
        Case {
            rule: "quota cpu is a quantity",
            gate: Gate::Schema,
            field: "spec.quota.cpu",
            bad: json!({"spec": {"quota": {"cpu": "8 cores"}}}),
            good: json!({"spec": {"quota": {"cpu": 8}}}),
        },
        Case {
            rule: "quota pods at least 1",
            gate: Gate::Schema,
            field: "spec.quota.pods",
            bad: json!({"spec": {"quota": {"pods": 0}}}),
            good: json!({"spec": {"quota": {"pods": 1}}}),
        },
        Case {
            rule: "member is a lower-case e-mail",
            gate: Gate::Schema,
            field: "spec.members[0].user",
            bad: json!({"spec": {"members": [member("Alice@Acme.com")]}}),
            good: json!({"spec": {"members": [member("alice@acme.com")]}}),
        },
        Case {
            rule: "member role is Admin, Editor or Viewer",
            gate: Gate::Schema,
            field: "spec.members[0].role",
            bad: json!({"spec": {"members": [{"user": "alice@acme.com", "role": "Owner"}]}}),
            good: json!({"spec": {"members": [{"user": "alice@acme.com", "role": "Admin"}]}}),
        },
        Case {
            rule: "members unique",
            gate: Gate::Cel,
            field: "spec.members",
            bad: json!({"spec": {"members": [member("bob@acme.com"), member("bob@acme.com")]}}),
            good: json!({"spec": {"members": [member("bob@acme.com"), member("rob@acme.com")]}}),
        },
        Case {
            rule: "at most 256 members",
            gate: Gate::Schema,
            field: "spec.members",
            bad: json!({"spec": {"members": many_members(257)}}),
            good: json!({"spec": {"members": many_members(256)}}),
        },
        Case {
            rule: "task runner is Kubernetes or Process",
            gate: Gate::Schema,
            field: "spec.tasks.runner",
            bad: json!({"spec": {"tasks": {"runner": "Docker"}}}),
            good: json!({"spec": {"tasks": {"runner": "Process"}}}),
        },
        Case {
            rule: "task image is an image reference",
            gate: Gate::Schema,
            field: "spec.tasks.image",
            bad: json!({"spec": {"tasks": {"image": "Python 3"}}}),
            good: json!({"spec": {"tasks": {"image": "ghcr.io/acme/tools:1.2@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}}}),
        },
        Case {
            rule: "task pod limits at least requests",
            gate: Gate::Cel,
            field: "spec.tasks.resources.limits.memory",
            bad: json!({"spec": {"tasks": {"resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}}}}),
            good: json!({"spec": {"tasks": {"resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "1Gi"}}}}}),
        },
        Case {
            rule: "maxConcurrentPods at most 1000",
            gate: Gate::Schema,
            field: "spec.tasks.maxConcurrentPods",
            bad: json!({"spec": {"tasks": {"maxConcurrentPods": 1001}}}),
            good: json!({"spec": {"tasks": {"maxConcurrentPods": 1000}}}),
        },
        Case {
            rule: "maxConcurrentPods at least 1",
            gate: Gate::Schema,
            field: "spec.tasks.maxConcurrentPods",
            bad: json!({"spec": {"tasks": {"maxConcurrentPods": 0}}}),
            good: json!({"spec": {"tasks": {"maxConcurrentPods": 1}}}),
        },
        Case {
            rule: "allowed images are image patterns",
            gate: Gate::Schema,
            field: "spec.tasks.allowedImages[0]",
            bad: json!({"spec": {"tasks": {"allowedImages": ["python:*,bash:*"]}}}),
            good: json!({"spec": {"tasks": {"allowedImages": ["python:*", "bash:*"]}}}),
        },
        Case {
            rule: "allowed images unique",
            gate: Gate::ListMapKey,
            field: "spec.tasks.allowedImages[1]",
            bad: json!({"spec": {"tasks": {"allowedImages": ["python:*", "python:*"]}}}),
            good: json!({"spec": {"tasks": {"allowedImages": ["python:*"]}}}),
        },
        Case {
            rule: "task timeout is an ISO-8601 duration",
            gate: Gate::Schema,
            field: "spec.tasks.timeout",
            bad: json!({"spec": {"tasks": {"timeout": "1h"}}}),
            good: json!({"spec": {"tasks": {"timeout": "PT1H30M"}}}),
        },
        Case {
            rule: "task timeout longer than zero",
            gate: Gate::Cel,
            field: "spec.tasks.timeout",
            bad: json!({"spec": {"tasks": {"timeout": "PT0S"}}}),
            good: json!({"spec": {"tasks": {"timeout": "PT0.5S"}}}),
        },
        Case {
            rule: "more than one replica needs S3 storage",
            gate: Gate::Cel,
            field: "spec.storage.s3",
            bad: json!({"spec": {"instance": {"replicas": 2}, "storage": {"s3": null}}}),
            good: json!({"spec": {"instance": {"replicas": 1}, "storage": {"s3": null}}}),
        },
        Case {
            rule: "storage volume plus database volume fit the storage quota",
            gate: Gate::Cel,
            field: "spec.storage.size",
            bad: json!({"spec": {"instance": {"replicas": 1}, "storage": {"s3": null, "size": "16Gi"}}}),
            good: json!({"spec": {"instance": {"replicas": 1}, "storage": {"s3": null, "size": "15Gi"}}}),
        },
        Case {
            rule: "the default database volume counts in the storage quota",
            gate: Gate::Cel,
            field: "spec.storage.size",
            bad: json!({"spec": {"instance": {"replicas": 1}, "database": {"dedicated": null}, "storage": {"s3": null, "size": "20Gi"}}}),
            good: json!({"spec": {"instance": {"replicas": 1}, "database": {"dedicated": null}, "storage": {"s3": null, "size": "19Gi"}}}),
        },
        Case {
            rule: "storage class is an object name",
            gate: Gate::Schema,
            field: "spec.storage.storageClassName",
            bad: json!({"spec": {"storage": {"storageClassName": "Fast SSD"}}}),
            good: json!({"spec": {"storage": {"storageClassName": "fast-ssd"}}}),
        },
        Case {
            rule: "S3 endpoint is an http(s) URL",
            gate: Gate::Schema,
            field: "spec.storage.s3.endpoint",
            bad: json!({"spec": {"storage": {"s3": {"endpoint": "ftp://files.example.com"}}}}),
            good: json!({"spec": {"storage": {"s3": {"endpoint": "http://minio.example.com:9000"}}}}),
        },
        Case {
            rule: "S3 bucket is a bucket name",
            gate: Gate::Schema,
            field: "spec.storage.s3.bucket",
            bad: json!({"spec": {"storage": {"s3": {"bucket": "Globex_Files"}}}}),
            good: json!({"spec": {"storage": {"s3": {"bucket": "globex-files"}}}}),
        },
        Case {
            rule: "S3 credentials name a Secret",
            gate: Gate::Schema,
            field: "spec.storage.s3.credentialsSecretRef.name",
            bad: json!({"spec": {"storage": {"s3": {"credentialsSecretRef": {"name": "S3 Keys"}}}}}),
            good: json!({"spec": {"storage": {"s3": {"credentialsSecretRef": {"name": "s3-keys"}}}}}),
        },
        Case {
            rule: "secrets name Secrets",
            gate: Gate::Schema,
            field: "spec.secrets[0].name",
            bad: json!({"spec": {"secrets": [{"name": "Flow Secrets"}]}}),
            good: json!({"spec": {"secrets": [{"name": "flow-secrets"}]}}),
        },
        Case {
            rule: "secrets unique",
            gate: Gate::ListMapKey,
            field: "spec.secrets[1].name",
            bad: json!({"spec": {"secrets": [{"name": "a"}, {"name": "a"}]}}),
            good: json!({"spec": {"secrets": [{"name": "a"}, {"name": "b"}]}}),
        },
        Case {
            rule: "idle time is a number of seconds, minutes or hours",
            gate: Gate::Schema,
            field: "spec.idle.after",
            bad: json!({"spec": {"idle": {"after": "1d"}}}),
            good: json!({"spec": {"idle": {"after": "24h"}}}),
        },
        Case {
            rule: "idle time from 10s to 168h",
            gate: Gate::Cel,
            field: "spec.idle.after",
            bad: json!({"spec": {"idle": {"after": "5s"}}}),
            good: json!({"spec": {"idle": {"after": "10s"}}}),
        },
        Case {
            rule: "idle time at most a week",
            gate: Gate::Cel,
            field: "spec.idle.after",
            bad: json!({"spec": {"idle": {"after": "169h"}}}),
            good: json!({"spec": {"idle": {"after": "10080m"}}}),
        },
        Case {
            rule: "deletionPolicy is Retain or Delete",
            gate: Gate::Schema,
            field: "spec.deletionPolicy",
            bad: json!({"spec": {"deletionPolicy": "Orphan"}}),
            good: json!({"spec": {"deletionPolicy": "Retain"}}),
        },
    ]
}

#[test]
fn examples_are_valid_through_every_gate() {
    for name in [
        "tenant-minimal.yaml",
        "tenant-full.yaml",
        "tenant-external.yaml",
        "tenant-tasks.yaml",
        "tenant-idle.yaml",
    ] {
        let object = example(name);
        assert_eq!(operator_errors(&object), vec![], "{name}: validate");
        assert_eq!(schema_errors(&object), vec![], "{name}: OpenAPI schema");
        assert_eq!(cel_errors(&object), vec![], "{name}: CEL rules");
    }
}

#[test]
fn every_rule_refuses_bad_and_accepts_good_naming_the_field() {
    check_cases("tenant-full.yaml", cases());
}

#[test]
fn validate_reports_every_problem_at_once() {
    let bad = patched(
        "tenant-full.yaml",
        &json!({
            "metadata": {"name": "Bad_Name"},
            "spec": {"instance": {"replicas": 99}, "quota": {"pods": 0}}
        }),
    );
    let fields: Vec<String> = operator_errors(&bad).into_iter().map(|(f, _)| f).collect();
    assert_eq!(
        fields,
        ["metadata.name", "spec.instance.replicas", "spec.quota.pods"]
    );
}

#[test]
fn error_messages_read_well() {
    let bad = patched(
        "tenant-full.yaml",
        &json!({"spec": {"database": {"mode": "External", "dedicated": null}}}),
    );
    let errors = validate(&from_value(bad).expect("parses")).expect_err("refused");
    assert_eq!(
        errors[0].to_string(),
        "spec.database.external: spec.database.external is required when mode is External"
    );
    let wrong_type = patched(
        "tenant-full.yaml",
        &json!({"spec": {"members": [{"user": "a@b.co", "role": "Owner"}]}}),
    );
    let error = from_value(wrong_type).expect_err("unknown role");
    assert_eq!(error.field, "spec.members[0].role");
    assert!(error.message.contains("Owner"), "{}", error.message);
}

#[test]
fn list_map_keys_make_the_api_server_refuse_duplicates() {
    for (path, key) in [
        (&["spec", "members"][..], "user"),
        (&["spec", "instance", "env"][..], "name"),
        (&["status", "conditions"][..], "type"),
    ] {
        let list = schema_at(path);
        assert_eq!(list["x-kubernetes-list-type"], "map", "{path:?}");
        assert_eq!(list["x-kubernetes-list-map-keys"], json!([key]), "{path:?}");
        let required = &list["items"]["required"];
        assert!(
            required.as_array().is_some_and(|r| r.contains(&json!(key))),
            "{path:?}: a list-map key must be required"
        );
    }
}

#[test]
fn cel_rules_compile_and_fit_the_api_server_cost_budget() {
    let compiled = kube_cel::compile_schema(&SCHEMA);
    assert!(
        !compiled.has_errors(),
        "{:?}",
        compiled.compilation_errors()
    );
    let mut rules = Vec::new();
    collect_rules(&SCHEMA, &mut rules);
    assert!(
        rules.len() >= 12,
        "expected every CEL rule, found {}",
        rules.len()
    );
    let mut warnings = Vec::new();
    collect_cost_warnings(&SCHEMA, &mut warnings);
    assert!(warnings.is_empty(), "{warnings:#?}");
}

#[test]
fn every_spec_and_status_field_is_described() {
    let mut missing = Vec::new();
    for root in ["spec", "status"] {
        check_descriptions(&SCHEMA["properties"][root], root.to_owned(), &mut missing);
    }
    assert!(
        missing.is_empty(),
        "fields without a description: {missing:?}"
    );
}

#[test]
fn crd_names_columns_and_subresources() {
    let crd = serde_json::to_value(Tenant::crd()).expect("CRD serializes");
    let spec = &crd["spec"];
    assert_eq!(crd["metadata"]["name"], "tenants.atoll.dev");
    assert_eq!(spec["scope"], "Cluster");
    assert_eq!(spec["names"]["plural"], "tenants");
    assert_eq!(spec["names"]["shortNames"], json!(["tnt"]));
    assert_eq!(spec["names"]["categories"], json!(["atoll"]));
    let version = &spec["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert_eq!(version["subresources"]["status"], json!({}));
    let columns: Vec<(&str, &str)> = version["additionalPrinterColumns"]
        .as_array()
        .expect("printer columns")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or(""),
                c["jsonPath"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        columns,
        [
            ("Phase", ".status.phase"),
            ("URL", ".status.url"),
            ("Ready", ".status.conditions[?(@.type==\"Ready\")].status"),
            ("Age", ".metadata.creationTimestamp"),
        ]
    );
}

#[test]
fn defaults_fill_an_empty_spec() {
    let tenant = from_value(json!({
        "apiVersion": "atoll.dev/v1alpha1", "kind": "Tenant",
        "metadata": {"name": "tiny"}, "spec": {}
    }))
    .expect("an empty spec is a valid Tenant");
    assert_eq!(validate(&tenant), Ok(()));
    assert_eq!(tenant.spec.instance.replicas, 1);
    assert_eq!(
        tenant.spec.deletion_policy,
        atoll_crds::DeletionPolicy::Retain
    );
    assert_eq!(
        tenant.spec.database.mode,
        atoll_crds::DatabaseMode::Dedicated
    );
    assert!(!tenant.spec.suspended);
    // The schema carries the same defaults, so the API server fills them in
    // and `kubectl get -o yaml` shows what the operator will do.
    let schema_defaults =
        kube_cel::apply_defaults(&SCHEMA, &json!({"metadata": {"name": "tiny"}, "spec": {}}));
    assert_eq!(schema_defaults["spec"]["instance"]["replicas"], 1);
    assert_eq!(schema_defaults["spec"]["deletionPolicy"], "Retain");
    assert_eq!(schema_defaults["spec"]["quota"]["storage"], "10Gi");
    assert_eq!(tenant.spec.tasks.runner, atoll_crds::TaskRunner::Kubernetes);
    assert_eq!(tenant.spec.tasks.max_concurrent_pods, 4);
    assert_eq!(tenant.spec.tasks.timeout, "PT1H");
    assert_eq!(tenant.spec.storage.size.as_str(), "1Gi");
    assert_eq!(schema_defaults["spec"]["tasks"]["runner"], "Kubernetes");
    assert_eq!(schema_defaults["spec"]["tasks"]["maxConcurrentPods"], 4);
    assert_eq!(schema_defaults["spec"]["tasks"]["timeout"], "PT1H");
    assert_eq!(
        schema_defaults["spec"]["tasks"]["resources"]["limits"]["memory"],
        "512Mi"
    );
    assert_eq!(schema_defaults["spec"]["storage"]["size"], "1Gi");
}
