//! The Helm chart: lint, render with the default values and every file under
//! `charts/atoll/ci/`, validate the manifests against the Kubernetes schemas
//! of 1.33 to 1.37, snapshot what it renders, refuse bad values.
//!
//! Needs `helm` and `kubernetes-validate` (`scripts/test` installs both and
//! sets `ATOLL_HELM` / `ATOLL_KUBERNETES_VALIDATE`); without them the tests
//! fail and say so.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use atoll_testkit::chart::{
    ChartError, TEST_VALUES, chart_dir as chart, documents, run_helm, template, tool,
};
use serde_json::Value;

/// kubernetes-validate: `ATOLL_KUBERNETES_VALIDATE`, else the first on
/// `PATH`.
fn kubernetes_validate() -> PathBuf {
    const ENV: &str = "ATOLL_KUBERNETES_VALIDATE";
    tool(ENV, "kubernetes-validate").unwrap_or_else(|| {
        panic!(
            "kubernetes-validate not found: run scripts/test (it installs it) or set {ENV} to its path"
        )
    })
}

fn value_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(chart().join("ci"))
        .expect("charts/atoll/ci exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn render(values: Option<&Path>) -> String {
    let args: Vec<&Path> = values
        .map(|v| vec![Path::new("--values"), v])
        .unwrap_or_default();
    template(&args).unwrap_or_else(|e| panic!("rendering with {values:?}: {e}"))
}

#[test]
fn chart_lints_with_every_value_file() {
    let chart = chart();
    let [set, allow_insecure] = TEST_VALUES.map(OsStr::new);
    if let Err(e) = run_helm(&[
        OsStr::new("lint"),
        chart.as_os_str(),
        OsStr::new("--strict"),
        set,
        allow_insecure,
    ]) {
        panic!("{e}");
    }
    for file in value_files() {
        let args = [
            OsStr::new("lint"),
            chart.as_os_str(),
            OsStr::new("--strict"),
            set,
            allow_insecure,
            OsStr::new("--values"),
            file.as_os_str(),
        ];
        if let Err(e) = run_helm(&args) {
            panic!("with {}: {e}", file.display());
        }
    }
}

#[test]
fn rendered_manifests_validate_against_kubernetes_1_33_to_1_37() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut renders = vec![("default".to_owned(), render(None))];
    for file in value_files() {
        renders.push((file.display().to_string(), render(Some(&file))));
    }
    let validate = kubernetes_validate();
    for (name, rendered) in renders {
        let path = dir.path().join("rendered.yaml");
        std::fs::write(&path, &rendered).expect("write");
        for version in ["1.33.0", "1.34.0", "1.35.0", "1.36.0", "1.37.0"] {
            let output = Command::new(&validate)
                .args(["--kubernetes-version", version, "--strict", "--quiet"])
                .arg(&path)
                .output()
                .expect("kubernetes-validate runs");
            let report = String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr);
            assert!(
                output.status.success(),
                "{name} against {version}:\n{report}"
            );
            // Only kinds from other projects' CRDs may lack a schema.
            for line in report
                .lines()
                .filter(|l| l.contains("Couldn't find schema"))
            {
                assert!(
                    line.contains("monitoring.coreos.com"),
                    "{name} against {version}: {line}"
                );
            }
        }
    }
}

/// Generated secrets differ on every render; the snapshot shows their keys.
fn redacted(rendered: &str) -> String {
    let mut out = String::new();
    for mut doc in documents(rendered) {
        if doc["kind"] == "Secret"
            && let Some(data) = doc.get_mut("data").and_then(Value::as_object_mut)
        {
            for value in data.values_mut() {
                *value = Value::String("<generated>".into());
            }
        }
        out.push_str("---\n");
        out.push_str(&serde_norway::to_string(&doc).expect("yaml"));
    }
    out
}

#[test]
fn default_render_snapshot() {
    insta::assert_snapshot!(redacted(&render(None)));
}

#[test]
fn ha_render_snapshot() {
    let file = chart().join("ci/ha-values.yaml");
    insta::assert_snapshot!(redacted(&render(Some(&file))));
}

#[test]
fn the_crd_is_kept_on_uninstall_and_optional() {
    let docs = documents(&render(None));
    let crds: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
        .collect();
    let names: Vec<&str> = crds
        .iter()
        .filter_map(|crd| crd["metadata"]["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["tenants.atoll.dev", "tenantbackups.atoll.dev"],
        "the CRDs are rendered by default"
    );
    for crd in crds {
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"],
            "keep"
        );
    }
    let file = chart().join("ci/supplied-secrets-values.yaml");
    let rendered = template(&[Path::new("--values"), &file]).expect("renders");
    let docs = documents(&rendered);
    assert!(docs.iter().all(|d| d["kind"] != "CustomResourceDefinition"));
    assert!(
        docs.iter().all(|d| d["kind"] != "Secret"),
        "supplied secrets are not generated"
    );
}

#[test]
fn no_wildcards_in_rbac() {
    for doc in documents(&render(None)) {
        if doc["kind"] != "ClusterRole" && doc["kind"] != "Role" {
            continue;
        }
        for rule in doc["rules"].as_array().expect("rules") {
            for field in ["apiGroups", "resources", "verbs"] {
                let items = rule[field].as_array().expect("a list");
                assert!(
                    !items.iter().any(|v| v == "*"),
                    "wildcard in {}: {rule}",
                    doc["metadata"]["name"]
                );
            }
        }
    }
}

#[test]
fn bad_values_are_refused_with_a_clear_message() {
    for (set, expected) in [
        ("identity.replicas=3", "identity/replicas"),
        ("operator.replicas=0", "operator/replicas"),
        ("baseDomain=Not A Domain", "baseDomain"),
        (
            "operator.ingressNamespaceSelector=oops",
            "ingressNamespaceSelector",
        ),
        ("operator.unknownKey=1", "unknownKey"),
        // Not https, and not explicitly allowed.
        ("identity.allowInsecureIssuer=false", "allowInsecureIssuer"),
        ("identity.trustedProxies={in-cluster}", "trustedProxies"),
        (
            "backup.objectStore.endpoint=https://s3.example.com/bucket",
            "backup/objectStore/endpoint",
        ),
        (
            "backup.objectStore.bucket=Not_A_Bucket",
            "backup/objectStore/bucket",
        ),
    ] {
        match template(&["--set", set]) {
            Ok(_) => panic!("--set {set} was accepted"),
            Err(ChartError::Failed { output, .. }) => {
                assert!(output.contains(expected), "--set {set}: {output}");
            }
            Err(e) => panic!("--set {set}: {e}"),
        }
    }
}

/// The pieces of identity's security the chart sets up.
#[test]
fn identity_gets_cluster_credentials_a_key_encryption_key_and_trusted_proxies() {
    let docs = documents(&render(None));
    let find = |kind: &str, name: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{kind} {name} is rendered"))
            .clone()
    };
    // One credential per cluster, this cluster's under its name; a
    // key-encryption key; both kept across upgrades and on uninstall.
    let clusters = find("Secret", "atoll-identity-clusters");
    assert!(clusters["data"]["default"].is_string(), "{clusters}");
    let kek = find("Secret", "atoll-identity-key-encryption");
    for secret in [&clusters, &kek] {
        assert_eq!(
            secret["metadata"]["annotations"]["helm.sh/resource-policy"],
            "keep"
        );
    }
    // 32 random bytes in base64 (44 characters), base64 again as Secret
    // data (60 characters).
    let key = kek["data"]["key"].as_str().expect("key");
    assert_eq!(key.len(), 60, "{key}");

    let env = |deployment: &Value| -> Vec<(String, String)> {
        deployment["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .expect("env")
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().unwrap_or_default().to_owned(),
                    e["value"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    };
    let identity = find("Deployment", "atoll-identity");
    let identity_env = env(&identity);
    let value = |name: &str| {
        identity_env
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("identity has {name}"))
    };
    assert_eq!(
        value("ATOLL_IDENTITY_CLUSTER_TOKENS_DIR"),
        "/var/run/secrets/atoll/clusters"
    );
    assert_eq!(
        value("ATOLL_IDENTITY_KEY_ENCRYPTION_KEY_FILE"),
        "/var/run/secrets/atoll/key-encryption/key"
    );
    assert!(value("ATOLL_IDENTITY_TRUSTED_PROXIES").contains("10.0.0.0/8"));
    assert!(
        !identity_env
            .iter()
            .any(|(n, _)| n == "ATOLL_IDENTITY_SERVICE_TOKEN_FILE"),
        "no shared service token"
    );
    // The operator's credential is this cluster's key of that Secret.
    let operator = docs
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] != "atoll-identity")
        .expect("the operator Deployment");
    let volumes = operator["spec"]["template"]["spec"]["volumes"].to_string();
    assert!(
        volumes.contains("atoll-identity-clusters") && volumes.contains(r#""key":"default""#),
        "{volumes}"
    );
}

#[test]
fn tenant_domains_and_blocked_ranges_reach_the_operator() {
    let rendered = template(&[
        Path::new("--set"),
        Path::new("operator.allowedDomains={customers.example.org,eu.example.org}"),
        Path::new("--set"),
        Path::new("operator.egressBlockedCIDRs={169.254.0.0/16,fd00::/8}"),
    ])
    .expect("renders");
    let docs = documents(&rendered);
    let operator = docs
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "atoll-operator")
        .expect("the operator's Deployment");
    let env = operator["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env");
    let value = |name: &str| {
        env.iter()
            .find(|e| e["name"] == name)
            .and_then(|e| e["value"].as_str())
            .map(str::to_owned)
    };
    assert_eq!(
        value("ATOLL_ALLOWED_DOMAINS").as_deref(),
        Some("customers.example.org,eu.example.org")
    );
    assert_eq!(
        value("ATOLL_EGRESS_BLOCKED_CIDRS").as_deref(),
        Some("169.254.0.0/16,fd00::/8")
    );
    // Unset, the operator's own defaults apply.
    let default = documents(&render(None));
    let operator = default
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "atoll-operator")
        .expect("the operator's Deployment");
    let names = operator["spec"]["template"]["spec"]["containers"][0]["env"].to_string();
    assert!(!names.contains("ATOLL_ALLOWED_DOMAINS"));
    assert!(!names.contains("ATOLL_EGRESS_BLOCKED_CIDRS"));
}

/// Task pods (#17): the chart owns the ClusterRole of task-pod rights and
/// binds it to nobody; the operator may only `bind` that one role (it holds
/// no pod rights itself) and is told its name.
#[test]
fn task_pod_rights_are_bound_by_the_operator_never_held_by_it() {
    let docs = documents(
        &template(&[
            Path::new("--set"),
            Path::new("operator.apiServerCIDRs={10.0.0.1/32}"),
        ])
        .expect("renders"),
    );
    let role = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == "atoll-task-pods")
        .expect("the task-pods ClusterRole");
    assert_eq!(
        role["rules"],
        serde_json::json!([
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "get", "list", "watch", "delete"]},
            {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
        ])
    );
    assert!(
        !docs
            .iter()
            .any(|d| d["roleRef"]["name"] == "atoll-task-pods"),
        "the chart binds the task-pods role to nobody"
    );
    let operator_role = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == "atoll-operator")
        .expect("the operator's ClusterRole");
    let rules = operator_role["rules"].as_array().expect("rules");
    let bind = rules
        .iter()
        .find(|r| {
            r["verbs"]
                .as_array()
                .is_some_and(|v| v.iter().any(|v| v == "bind"))
        })
        .expect("a bind rule");
    assert_eq!(bind["resources"], serde_json::json!(["clusterroles"]));
    assert_eq!(
        bind["resourceNames"],
        serde_json::json!(["atoll-task-pods", "atoll-instance-activity"])
    );
    assert_eq!(bind["verbs"], serde_json::json!(["bind"]));
    // Pods: the backup ones only (#19): reading the database pod (its IP,
    // for the backup agent), and creating, reading, deleting and reading the
    // log of an External database's dump pods; never listing (an idle
    // tenant's pods are listed through a RoleBinding in its namespace,
    // #20), watching or exec'ing into any.
    let pod_rules: Vec<&Value> = rules
        .iter()
        .filter(|r| {
            r["resources"]
                .as_array()
                .is_some_and(|res| res.iter().any(|x| x == "pods" || x == "pods/log"))
        })
        .collect();
    assert_eq!(
        pod_rules,
        vec![
            &serde_json::json!({
                "apiGroups": [""], "resources": ["pods"],
                "verbs": ["get", "create", "delete"],
            }),
            &serde_json::json!({
                "apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"],
            }),
        ],
        "the operator holds no pod rights but those of backup pods"
    );
    let operator = docs
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "atoll-operator")
        .expect("the operator's Deployment");
    let env = operator["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env");
    let value = |name: &str| {
        env.iter()
            .find(|e| e["name"] == name)
            .and_then(|e| e["value"].as_str())
            .map(str::to_owned)
    };
    assert_eq!(
        value("ATOLL_TASK_PODS_CLUSTER_ROLE").as_deref(),
        Some("atoll-task-pods")
    );
    assert_eq!(
        value("ATOLL_API_SERVER_CIDRS").as_deref(),
        Some("10.0.0.1/32")
    );
    assert_eq!(value("ATOLL_API_SERVER_PORT").as_deref(), Some("6443"));
}

/// Backups (#19): the platform store's settings reach the operator as
/// variables (its credentials only as a Secret's name), the agent's peers
/// are this release's operator pods, and the operator may touch only the
/// two backup Secrets by name, unless Tenants may bring their own stores.
#[test]
fn the_platform_backup_store_reaches_the_operator_without_its_credentials() {
    let set = "backup.objectStore.endpoint=http://minio.storage.svc:9000,backup.objectStore.bucket=atoll-backups,backup.objectStore.pathStyle=true,backup.objectStore.prefix=prod,backup.objectStore.credentialsSecret=atoll-backup-store,backup.image=registry.example.com/atoll-backup:9.9.9";
    let docs = documents(&template(&[Path::new("--set"), Path::new(set)]).expect("renders"));
    let operator = docs
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "atoll-operator")
        .expect("the operator's Deployment");
    let env = operator["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env");
    let value = |name: &str| {
        env.iter()
            .find(|e| e["name"] == name)
            .and_then(|e| e["value"].as_str())
            .map(str::to_owned)
    };
    for (name, expected) in [
        (
            "ATOLL_BACKUP_IMAGE",
            "registry.example.com/atoll-backup:9.9.9",
        ),
        ("ATOLL_BACKUP_ENDPOINT", "http://minio.storage.svc:9000"),
        ("ATOLL_BACKUP_BUCKET", "atoll-backups"),
        ("ATOLL_BACKUP_REGION", "us-east-1"),
        ("ATOLL_BACKUP_PATH_STYLE", "true"),
        ("ATOLL_BACKUP_PREFIX", "prod"),
        ("ATOLL_BACKUP_CREDENTIALS_SECRET", "atoll-backup-store"),
        (
            "ATOLL_OPERATOR_NAMESPACE_SELECTOR",
            "kubernetes.io/metadata.name=atoll-system",
        ),
        (
            "ATOLL_OPERATOR_POD_SELECTOR",
            "app.kubernetes.io/name=atoll-operator,app.kubernetes.io/instance=atoll",
        ),
    ] {
        assert_eq!(value(name).as_deref(), Some(expected), "{name}");
    }
    assert!(!operator.to_string().contains("secretAccessKey"));
    let secret_rules = |docs: &[Value]| -> Vec<String> {
        docs.iter()
            .filter(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == "atoll-operator")
            .flat_map(|d| d["rules"].as_array().cloned().unwrap_or_default())
            .filter(|r| r["resources"].to_string().contains("\"secrets\""))
            .map(|r| format!("{} {}", r["resourceNames"], r["verbs"]))
            .collect()
    };
    assert_eq!(
        secret_rules(&docs),
        [
            r#"["database-credentials"] ["get","create","patch"]"#,
            r#"["backup-object-store","backup-agent"] ["get","create","patch","delete"]"#,
            r#"["restore-object-store"] ["get","create","patch","delete"]"#,
        ]
    );
    let open = documents(
        &template(&[
            Path::new("--set"),
            Path::new("backup.tenantObjectStores=true"),
        ])
        .expect("renders"),
    );
    assert!(secret_rules(&open).contains(&r#"null ["get"]"#.to_owned()));
}
