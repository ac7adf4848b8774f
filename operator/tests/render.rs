//! `atoll-operator render`: what a Tenant produces, as a reviewer sees it in
//! a pull request (snapshots), and clear refusals of bad files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use atoll_operator::config::OperatorConfig;
use atoll_operator::render::{parse_tenant, render};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn config() -> OperatorConfig {
    OperatorConfig {
        identity_issuer: Some("https://id.example.com".into()),
        instance_version: "0.1.0".into(),
        backup: atoll_operator::config::BackupConfig {
            backup_image: "atoll/atoll-backup:0.1.0".into(),
            ..Default::default()
        },
        ..OperatorConfig::default()
    }
}

fn render_example(name: &str) -> String {
    let path = root().join("examples").join(name);
    let text = std::fs::read_to_string(&path).expect("example exists");
    let tenant = parse_tenant(name, &text).expect("example is valid");
    render(name, tenant, &config()).expect("renders")
}

#[test]
fn minimal_tenant_objects() {
    insta::assert_snapshot!(render_example("tenant-minimal.yaml"));
}

#[test]
fn full_tenant_objects() {
    insta::assert_snapshot!(render_example("tenant-full.yaml"));
}

#[test]
fn external_database_tenant_objects() {
    insta::assert_snapshot!(render_example("tenant-external.yaml"));
}

fn run_render(args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_atoll-operator"))
        .arg("render")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("atoll-operator runs");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.unwrap_or("").as_bytes())
        .expect("write stdin");
    drop(input);
    child.wait_with_output().expect("finishes")
}

fn refused(yaml: &str) -> String {
    let output = run_render(&["-f", "-"], Some(yaml));
    assert!(!output.status.success(), "accepted:\n{yaml}");
    assert!(output.stdout.is_empty(), "printed objects for a bad Tenant");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn command_renders_a_file() {
    let path = root().join("examples/tenant-minimal.yaml");
    let output = run_render(&["-f", path.to_str().expect("utf-8 path")], None);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("utf-8");
    let kinds: Vec<String> = text
        .split("---\n")
        .filter(|doc| !doc.trim().is_empty())
        .map(|doc| {
            let object: serde_json::Value =
                serde_norway::from_str(doc).expect("each document is YAML");
            assert_eq!(object["metadata"]["labels"]["atoll.dev/tenant"], "acme");
            object["kind"].as_str().expect("a kind").to_owned()
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "Namespace",
            "ResourceQuota",
            "LimitRange",
            "NetworkPolicy",
            "NetworkPolicy",
            "NetworkPolicy",
            "NetworkPolicy",
            "NetworkPolicy",
            "NetworkPolicy",
            "NetworkPolicy",
            "ServiceAccount",
            "RoleBinding",
            "ServiceAccount",
            "Secret",
            "ConfigMap",
            "Service",
            "StatefulSet",
            "Service",
            "PersistentVolumeClaim",
            "Deployment",
            "Ingress",
        ]
    );
}

#[test]
fn malformed_yaml_names_line_and_column() {
    let stderr = refused(
        "apiVersion: atoll.dev/v1alpha1\nkind: Tenant\nmetadata:\n  name: acme\nspec:\n  members: [\n",
    );
    assert!(stderr.contains("line"), "{stderr}");
    assert!(stderr.contains("column"), "{stderr}");
}

#[test]
fn wrong_kind_is_named() {
    let stderr = refused("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n");
    assert!(
        stderr.contains("expected apiVersion atoll.dev/v1alpha1 and kind Tenant"),
        "{stderr}"
    );
    assert!(stderr.contains("ConfigMap"), "{stderr}");
}

#[test]
fn wrong_type_names_the_field() {
    let stderr = refused(
        "apiVersion: atoll.dev/v1alpha1\nkind: Tenant\nmetadata:\n  name: acme\nspec:\n  members:\n    - user: a@b.co\n      role: Owner\n",
    );
    assert!(stderr.contains("spec.members[0].role"), "{stderr}");
}

#[test]
fn invalid_tenant_lists_every_problem() {
    let stderr = refused(
        "apiVersion: atoll.dev/v1alpha1\nkind: Tenant\nmetadata:\n  name: Acme\nspec:\n  instance:\n    replicas: 50\n",
    );
    assert!(stderr.contains("metadata.name"), "{stderr}");
    assert!(stderr.contains("spec.instance.replicas"), "{stderr}");
}

#[test]
fn missing_file_is_named() {
    let output = run_render(&["-f", "/nonexistent/tenant.yaml"], None);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/tenant.yaml"), "{stderr}");
}

/// A Tenant with its own backup store (#19): the backup Secrets (with
/// placeholders for the credentials and the token), the archiving
/// database pod with its agent, and the backup NetworkPolicy.
#[test]
fn backup_tenant_objects() {
    insta::assert_snapshot!(render_example("tenant-backup.yaml"));
}

/// A Tenant that sleeps when idle (#20): rendered awake (what `render`
/// shows is the Tenant as applied); its instance NetworkPolicy lets in the
/// wake gate and the operator's activity reads.
#[test]
fn idle_tenant_objects() {
    insta::assert_snapshot!(render_example("tenant-idle.yaml"));
}
