//! The backup API (#19) as a user meets it: `spec.backup`, `spec.restore`
//! and the TenantBackup resource. The examples are valid, every rule refuses
//! a bad spec naming the field through `validate`, the OpenAPI schema and
//! the CEL rules, `spec.restore` is create-only, and `spec.tenant` of a
//! TenantBackup cannot change.

mod support;

use std::sync::LazyLock;

use atoll_crds::{
    TenantBackup, from_value, tenant_backup_crd, validate, validate_tenant_backup, validate_update,
};
use serde_json::{Value, json};
use support::*;

const BACKUP: &str = "tenant-backup.yaml";
const RESTORE: &str = "tenant-restore.yaml";

fn store(field: &str, value: Value) -> Value {
    json!({"spec": {"backup": {"objectStore": {field: value}}}})
}

fn backup_cases() -> Vec<Case> {
    let schedule = |bad: &str, good: &str, rule| Case {
        rule,
        gate: Gate::Cel,
        field: "spec.backup.schedule",
        bad: json!({"spec": {"backup": {"schedule": bad}}}),
        good: json!({"spec": {"backup": {"schedule": good}}}),
    };
    let object_store = |rule, gate, field: &'static str, bad: Value, good: Value| {
        let key = field.rsplit('.').next().unwrap_or(field);
        Case {
            rule,
            gate,
            field,
            bad: store(key, bad),
            good: store(key, good),
        }
    };
    vec![
        schedule("0 3 * *", "*/15 0-6,22-23 * * 1-5", "schedule has 5 fields"),
        schedule("0 24 * * *", "0 23 31 12 7", "schedule fields in range"),
        schedule("0 3 * * MON", "0 3 * * 1", "schedule takes numbers only"),
        schedule("@daily", "0 0 * * *", "schedule is no macro"),
        Case {
            rule: "retention is hours, days or weeks",
            gate: Gate::Schema,
            field: "spec.backup.retention",
            bad: json!({"spec": {"backup": {"retention": "30 days"}}}),
            good: json!({"spec": {"backup": {"retention": "8w"}}}),
        },
        Case {
            rule: "retention is longer than zero",
            gate: Gate::Schema,
            field: "spec.backup.retention",
            bad: json!({"spec": {"backup": {"retention": "0d"}}}),
            good: json!({"spec": {"backup": {"retention": "36h"}}}),
        },
        Case {
            rule: "enabled is a boolean",
            gate: Gate::Schema,
            field: "spec.backup.enabled",
            bad: json!({"spec": {"backup": {"enabled": "yes"}}}),
            good: json!({"spec": {"backup": {"enabled": false}}}),
        },
        object_store(
            "endpoint has no path",
            Gate::Schema,
            "spec.backup.objectStore.endpoint",
            json!("https://s3.example.com/hooli-backups"),
            json!("http://minio.storage.svc:9000"),
        ),
        object_store(
            "endpoint has no user info",
            Gate::Schema,
            "spec.backup.objectStore.endpoint",
            json!("https://key:secret@s3.example.com"),
            json!("https://[fd00::1]:9000/"),
        ),
        object_store(
            "endpoint is http(s)",
            Gate::Schema,
            "spec.backup.objectStore.endpoint",
            json!("ftp://s3.example.com"),
            json!("https://s3.example.com"),
        ),
        object_store(
            "bucket is a bucket name",
            Gate::Schema,
            "spec.backup.objectStore.bucket",
            json!("Hooli_Backups"),
            json!("hooli.backups"),
        ),
        object_store(
            "bucket has no '..'",
            Gate::Cel,
            "spec.backup.objectStore.bucket",
            json!("hooli..backups"),
            json!("hooli.backups.2"),
        ),
        object_store(
            "bucket is not shaped like an IP address",
            Gate::Cel,
            "spec.backup.objectStore.bucket",
            json!("192.168.1.10"),
            json!("192-168-1-10"),
        ),
        object_store(
            "region is a region",
            Gate::Schema,
            "spec.backup.objectStore.region",
            json!("EU Central"),
            json!("eu-central-1"),
        ),
        object_store(
            "prefix has no leading '/'",
            Gate::Schema,
            "spec.backup.objectStore.prefix",
            json!("/atoll"),
            json!("atoll"),
        ),
        object_store(
            "prefix has no trailing '/'",
            Gate::Schema,
            "spec.backup.objectStore.prefix",
            json!("atoll/"),
            json!("atoll/prod_1"),
        ),
        object_store(
            "prefix has no '..' segment",
            Gate::Schema,
            "spec.backup.objectStore.prefix",
            json!("atoll/../other"),
            json!("atoll/other"),
        ),
        object_store(
            "prefix has no '..' at all",
            Gate::Cel,
            "spec.backup.objectStore.prefix",
            json!("atoll/a..b"),
            json!("atoll/a.b"),
        ),
        Case {
            rule: "credentials name a Secret",
            gate: Gate::Schema,
            field: "spec.backup.objectStore.credentialsSecretRef.name",
            bad: store("credentialsSecretRef", json!({"name": "Store Keys"})),
            good: store("credentialsSecretRef", json!({"name": "store-keys"})),
        },
    ]
}

fn restore_cases() -> Vec<Case> {
    let restore = |field: &str, value: Value| json!({"spec": {"restore": {field: value}}});
    vec![
        Case {
            rule: "from is a Tenant name or uid",
            gate: Gate::Schema,
            field: "spec.restore.from",
            bad: restore("from", json!("Hooli")),
            good: restore("from", json!("0f8fad5b-d9cb-469f-a165-70867728950e")),
        },
        Case {
            rule: "backup is latest, an id or a TenantBackup name",
            gate: Gate::Schema,
            field: "spec.restore.backup",
            bad: restore("backup", json!("Latest")),
            good: restore("backup", json!("20261207T030000Z")),
        },
        Case {
            rule: "targetTime is an RFC 3339 time with an offset",
            gate: Gate::Schema,
            field: "spec.restore.targetTime",
            bad: restore("targetTime", json!("2026-12-07T09:30:00")),
            good: restore("targetTime", json!("2026-12-07T10:30:00.25+01:00")),
        },
        Case {
            rule: "targetTime is a real moment",
            gate: Gate::Schema,
            field: "spec.restore.targetTime",
            bad: restore("targetTime", json!("2026-02-30T09:30:00Z")),
            good: restore("targetTime", json!("2026-02-28T09:30:00Z")),
        },
        Case {
            rule: "the restore's store endpoint is a URL",
            gate: Gate::Schema,
            field: "spec.restore.objectStore.endpoint",
            bad: json!({"spec": {"restore": {"objectStore": {"endpoint": "s3.example.com"}}}}),
            good: json!({"spec": {"restore": {"objectStore": {"endpoint": "https://s3.example.com"}}}}),
        },
    ]
}

#[test]
fn backup_examples_are_valid_through_every_gate() {
    for name in [BACKUP, RESTORE] {
        let object = example(name);
        assert_eq!(operator_errors(&object), vec![], "{name}: validate");
        assert_eq!(schema_errors(&object), vec![], "{name}: OpenAPI schema");
        assert_eq!(cel_errors(&object), vec![], "{name}: CEL rules");
    }
}

#[test]
fn every_backup_rule_refuses_bad_and_accepts_good_naming_the_field() {
    check_cases(BACKUP, backup_cases());
}

#[test]
fn every_restore_rule_refuses_bad_and_accepts_good_naming_the_field() {
    check_cases(RESTORE, restore_cases());
}

#[test]
fn external_tenants_may_be_backed_up() {
    let external = patched(
        BACKUP,
        &json!({"spec": {"database": {"mode": "External", "external": {"adminSecretRef": {"name": "pg-admin"}}}}}),
    );
    assert_eq!(operator_errors(&external), vec![]);
    assert_eq!(schema_errors(&external), vec![]);
    assert_eq!(cel_errors(&external), vec![]);
}

#[test]
fn a_bad_schedule_is_refused_in_words() {
    let bad = patched(
        BACKUP,
        &json!({"spec": {"backup": {"schedule": "0 3 * *"}}}),
    );
    let errors = validate(&from_value(bad.clone()).expect("parses")).expect_err("refused");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        errors[0].to_string(),
        "spec.backup.schedule: spec.backup.schedule must be a 5-field cron expression in UTC (minute hour day-of-month month day-of-week; numbers, '*', ',', '-' and '/STEP' only), such as \"0 3 * * *\" (is \"0 3 * *\")"
    );
    let cel = cel_errors(&bad);
    assert!(
        cel.iter()
            .any(|(_, m)| m.starts_with("spec.backup.schedule must be a 5-field cron expression")),
        "{cel:?}"
    );
}

#[test]
fn restore_is_create_only() {
    let restored = example(RESTORE);
    let plain = patched(RESTORE, &json!({"spec": {"restore": null}}));
    let retimed = patched(
        RESTORE,
        &json!({"spec": {"restore": {"targetTime": "2026-12-07T09:45:00Z"}}}),
    );
    let forbidden = [
        ("added", &plain, &restored),
        ("removed", &restored, &plain),
        ("changed", &restored, &retimed),
    ];
    for (what, old, new) in forbidden {
        let cel = cel_errors_of(&SCHEMA, new, Some(old));
        assert!(
            names_field(&cel, "spec.restore")
                && cel
                    .iter()
                    .any(|(_, m)| m.starts_with("spec.restore is create-only")),
            "restore {what}: CEL said {cel:?}"
        );
        let old = from_value(old.clone()).expect("old parses");
        let new = from_value(new.clone()).expect("new parses");
        let errors = validate_update(&old, &new).expect_err("validate_update refuses");
        assert_eq!(errors.len(), 1, "restore {what}: {errors:?}");
        assert_eq!(errors[0].field, "spec.restore");
    }
    // Anything else may change, and an unchanged restore passes.
    let more_members = patched(
        RESTORE,
        &json!({"spec": {"members": [{"user": "jared@hooli.example.com", "role": "Editor"}]}}),
    );
    assert_eq!(
        cel_errors_of(&SCHEMA, &more_members, Some(&restored)),
        vec![]
    );
    let (old, new) = (
        from_value(restored).expect("parses"),
        from_value(more_members).expect("parses"),
    );
    assert_eq!(validate_update(&old, &new), Ok(()));
    assert_eq!(validate_update(&new, &new), Ok(()));
}

#[test]
fn backup_and_restore_defaults() {
    let tenant = from_value(json!({
        "apiVersion": "atoll.dev/v1alpha1", "kind": "Tenant",
        "metadata": {"name": "tiny"},
        "spec": {
            "backup": {"objectStore": {"endpoint": "https://s3.example.com", "bucket": "b-1", "credentialsSecretRef": {"name": "s"}}},
            "restore": {"from": "acme"}
        }
    }))
    .expect("a valid Tenant");
    assert_eq!(validate(&tenant), Ok(()));
    let backup = tenant.spec.backup.as_ref().expect("backup");
    assert!(backup.enabled);
    assert_eq!(backup.schedule, "0 3 * * *");
    assert_eq!(backup.retention, "30d");
    let store = backup.object_store.as_ref().expect("store");
    assert_eq!(store.region, "us-east-1");
    assert!(!store.path_style);
    assert_eq!(store.prefix, None);
    let restore = tenant.spec.restore.as_ref().expect("restore");
    assert_eq!(restore.backup, "latest");
    assert_eq!(restore.target_time, None);
    assert_eq!(restore.target_timestamp(), None);

    // The API server fills in the same defaults.
    let defaults = kube_cel::apply_defaults(
        &SCHEMA,
        &json!({"metadata": {"name": "tiny"}, "spec": {
            "backup": {"objectStore": {"endpoint": "https://s3.example.com", "bucket": "b-1", "credentialsSecretRef": {"name": "s"}}},
            "restore": {"from": "acme"}
        }}),
    );
    let spec = &defaults["spec"];
    assert_eq!(spec["backup"]["enabled"], true);
    assert_eq!(spec["backup"]["schedule"], "0 3 * * *");
    assert_eq!(spec["backup"]["retention"], "30d");
    assert_eq!(spec["backup"]["objectStore"]["region"], "us-east-1");
    assert_eq!(spec["backup"]["objectStore"]["pathStyle"], false);
    assert_eq!(spec["restore"]["backup"], "latest");

    // No spec.backup: no backups, and nothing defaulted in.
    let empty = kube_cel::apply_defaults(&SCHEMA, &json!({"metadata": {"name": "t"}, "spec": {}}));
    assert!(empty["spec"].get("backup").is_none() && empty["spec"].get("restore").is_none());
}

#[test]
fn target_time_parses_to_a_timestamp() {
    let tenant = from_value(example(RESTORE)).expect("parses");
    let restore = tenant.spec.restore.expect("restore");
    assert_eq!(
        restore.target_timestamp().map(|t| t.as_second()),
        Some(1_796_635_800)
    );
}

static TB_SCHEMA: LazyLock<Value> = LazyLock::new(|| schema_of(&tenant_backup_crd()));

fn tenant_backup(tenant: &str) -> Value {
    json!({
        "apiVersion": "atoll.dev/v1alpha1", "kind": "TenantBackup",
        "metadata": {"name": "hooli-before-upgrade"},
        "spec": {"tenant": tenant}
    })
}

#[test]
fn a_tenant_backup_names_a_tenant_that_cannot_change() {
    let validator = validator_for(&TB_SCHEMA);
    let good = tenant_backup("hooli");
    assert_eq!(schema_errors_of(&validator, &good), vec![]);
    assert_eq!(cel_errors_of(&TB_SCHEMA, &good, None), vec![]);
    let parsed: TenantBackup = serde_json::from_value(good.clone()).expect("parses");
    assert_eq!(validate_tenant_backup(&parsed), Ok(()));

    for bad_name in ["Hooli", "1hooli", &"a".repeat(41)] {
        let bad = tenant_backup(bad_name);
        let schema = schema_errors_of(&validator, &bad);
        assert!(
            names_field(&schema, "spec.tenant"),
            "{bad_name}: {schema:?}"
        );
        let parsed: TenantBackup = serde_json::from_value(bad).expect("parses");
        let errors = validate_tenant_backup(&parsed).expect_err("refused");
        assert!(
            errors.iter().all(|e| e.field == "spec.tenant"),
            "{errors:?}"
        );
    }
    let missing = json!({"apiVersion": "atoll.dev/v1alpha1", "kind": "TenantBackup",
        "metadata": {"name": "x"}, "spec": {}});
    assert!(!schema_errors_of(&validator, &missing).is_empty());

    let other = tenant_backup("initech");
    let changed = cel_errors_of(&TB_SCHEMA, &other, Some(&good));
    assert!(
        changed
            .iter()
            .any(|(f, m)| f.starts_with("spec.tenant") && m.starts_with("spec.tenant is immutable")),
        "{changed:?}"
    );
    assert_eq!(cel_errors_of(&TB_SCHEMA, &good, Some(&good)), vec![]);
}

#[test]
fn tenant_backup_crd_names_columns_scope_and_descriptions() {
    let crd = serde_json::to_value(tenant_backup_crd()).expect("CRD serializes");
    let spec = &crd["spec"];
    assert_eq!(crd["metadata"]["name"], "tenantbackups.atoll.dev");
    assert_eq!(
        spec["scope"], "Cluster",
        "backups outlive tenant namespaces"
    );
    assert_eq!(spec["names"]["kind"], "TenantBackup");
    assert_eq!(spec["names"]["shortNames"], json!(["tb"]));
    assert_eq!(spec["names"]["categories"], json!(["atoll"]));
    let version = &spec["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert_eq!(version["subresources"]["status"], json!({}));
    let columns: Vec<(&str, &str, &str)> = version["additionalPrinterColumns"]
        .as_array()
        .expect("printer columns")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or(""),
                c["type"].as_str().unwrap_or(""),
                c["jsonPath"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        columns,
        [
            ("Tenant", "string", ".spec.tenant"),
            ("Phase", "string", ".status.phase"),
            ("Size", "integer", ".status.size"),
            ("Age", "date", ".metadata.creationTimestamp"),
        ]
    );
    let status = &TB_SCHEMA["properties"]["status"];
    assert_eq!(
        status["properties"]["conditions"]["x-kubernetes-list-type"],
        "map"
    );
    for field in [
        "observedGeneration",
        "tenantUid",
        "backupId",
        "method",
        "objects",
    ] {
        assert!(status["properties"][field].is_object(), "status.{field}");
    }
    let mut missing = Vec::new();
    for root in ["spec", "status"] {
        check_descriptions(
            &TB_SCHEMA["properties"][root],
            root.to_owned(),
            &mut missing,
        );
    }
    assert!(
        missing.is_empty(),
        "fields without a description: {missing:?}"
    );

    let compiled = kube_cel::compile_schema(&TB_SCHEMA);
    assert!(
        !compiled.has_errors(),
        "{:?}",
        compiled.compilation_errors()
    );
    let mut warnings = Vec::new();
    collect_cost_warnings(&TB_SCHEMA, &mut warnings);
    assert!(warnings.is_empty(), "{warnings:#?}");
}

#[test]
fn tenant_status_reports_backups_and_restores() {
    let status = &SCHEMA["properties"]["status"]["properties"];
    for field in [
        "firstRecoverabilityPoint",
        "lastSuccessfulBackup",
        "lastFailedBackup",
        "lastArchivedWal",
        "lastArchivedTime",
        "lastFailedArchiveTime",
    ] {
        assert!(
            status["backup"]["properties"][field].is_object(),
            "status.backup.{field}"
        );
    }
    for field in [
        "sourceUid",
        "backupId",
        "targetTime",
        "reachedTime",
        "phase",
        "message",
    ] {
        assert!(
            status["restore"]["properties"][field].is_object(),
            "status.restore.{field}"
        );
    }
    assert_eq!(
        status["restore"]["properties"]["phase"]["enum"],
        json!(["Pending", "Running", "Completed", "Failed"])
    );
    use atoll_crds::conditions::types;
    assert_eq!(
        [
            types::BACKUP_READY,
            types::CONTINUOUS_ARCHIVING,
            types::RESTORED
        ],
        ["BackupReady", "ContinuousArchiving", "Restored"]
    );
}
