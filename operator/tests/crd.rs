//! `atoll-operator crd` prints valid CRDs, and the chart ships exactly them.

use std::path::PathBuf;
use std::process::Command;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::Deserialize;

fn crd_command_output(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_atoll-operator"))
        .arg("crd")
        .args(args)
        .output()
        .expect("atoll-operator runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

fn assert_served_with_schema(crd: &CustomResourceDefinition) {
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
}

#[test]
fn crd_command_prints_every_crd() {
    let yaml = crd_command_output(&[]);
    let crds: Vec<CustomResourceDefinition> = serde_norway::Deserializer::from_str(&yaml)
        .map(|doc| CustomResourceDefinition::deserialize(doc).expect("a CustomResourceDefinition"))
        .collect();
    let names: Vec<Option<&str>> = crds.iter().map(|c| c.metadata.name.as_deref()).collect();
    assert_eq!(
        names,
        [Some("tenants.atoll.dev"), Some("tenantbackups.atoll.dev")]
    );
    crds.iter().for_each(assert_served_with_schema);
    assert_eq!(
        crds,
        atoll_crds::all_crds(),
        "YAML round trip changed the CRDs"
    );
}

#[test]
fn crd_command_prints_one_crd_by_name() {
    for expected in atoll_crds::all_crds() {
        let name = expected.metadata.name.clone().expect("named");
        let crd: CustomResourceDefinition =
            serde_norway::from_str(&crd_command_output(&[&name])).expect("one CRD");
        assert_served_with_schema(&crd);
        assert_eq!(crd, expected, "{name}: YAML round trip changed the CRD");
    }
    let output = Command::new(env!("CARGO_BIN_EXE_atoll-operator"))
        .args(["crd", "flows.atoll.dev"])
        .output()
        .expect("atoll-operator runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("flows.atoll.dev is not an Atoll CRD")
            && stderr.contains("tenantbackups.atoll.dev"),
        "{stderr}"
    );
}

#[test]
fn chart_crds_are_generated_from_the_types() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    assert_eq!(
        atoll_operator::crd::chart_crd_path("tenants.atoll.dev"),
        atoll_operator::crd::CHART_CRD_PATH
    );
    for name in atoll_operator::crd::crd_names() {
        let relative = atoll_operator::crd::chart_crd_path(&name);
        let path = root.join(&relative);
        let in_chart = std::fs::read_to_string(&path).unwrap_or_default();
        let generated = crd_command_output(&[&name]);
        assert!(
            in_chart == generated,
            "{} is out of date with the types in crds/.\nRegenerate it with:\n  cargo run -p atoll-operator -- crd {name} > {relative}",
            path.display(),
        );
    }
}
