//! `atoll-operator crd` prints a valid CRD, and the chart ships exactly it.

use std::path::PathBuf;
use std::process::Command;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

fn crd_command_output() -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_atoll-operator"))
        .arg("crd")
        .output()
        .expect("atoll-operator runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

#[test]
fn crd_command_prints_a_valid_crd() {
    let yaml = crd_command_output();
    let crd: CustomResourceDefinition =
        serde_norway::from_str(&yaml).expect("a CustomResourceDefinition");
    assert_eq!(crd.metadata.name.as_deref(), Some("tenants.atoll.dev"));
    assert_eq!(crd.spec.versions.len(), 1);
    let version = &crd.spec.versions[0];
    assert!(version.served && version.storage);
    assert!(
        version
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .is_some()
    );
    assert_eq!(
        crd,
        atoll_crds::tenant_crd(),
        "YAML round trip changed the CRD"
    );
}

#[test]
fn chart_crd_is_generated_from_the_types() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = root.join(atoll_operator::crd::CHART_CRD_PATH);
    let in_chart = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = crd_command_output();
    assert!(
        in_chart == generated,
        "{} is out of date with the Tenant types in crds/.\nRegenerate it with:\n  cargo run -p atoll-operator -- crd > {}",
        path.display(),
        atoll_operator::crd::CHART_CRD_PATH
    );
}
