//! Helpers shared by the operator's integration tests.
#![allow(dead_code)]

use atoll_testkit::chart;
pub use atoll_testkit::cluster::{ClusterKind, TestCluster};
use atoll_testkit::kubesim::RequestRecord;
use atoll_testkit::kubesim::rbac::{Policy, UserInfo};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::Value;

#[allow(unused_imports)]
pub use atoll_testkit::eventually;

pub use atoll_testkit::chart::RELEASE_NAMESPACE;

pub mod backup;

/// The operator's ServiceAccount with release name `atoll`.
pub const OPERATOR_ACCOUNT: &str = "atoll-operator";

/// The user the operator's requests run as when installed by the chart.
pub fn operator_user() -> UserInfo {
    UserInfo::service_account(RELEASE_NAMESPACE, OPERATOR_ACCOUNT)
}

/// The chart's objects as `helm template atoll charts/atoll -n atoll-system
/// <extra>` renders them; `None` when there is no helm (`scripts/test`
/// always installs it).
pub fn render_chart(extra: &[&str]) -> Option<Vec<Value>> {
    match chart::template(extra) {
        Ok(rendered) => Some(chart::documents(&rendered)),
        Err(chart::ChartError::HelmMissing) => None,
        Err(e) => panic!("{e}"),
    }
}

/// Every request the operator made (those of [`operator_user`]) is allowed
/// by the chart's ClusterRole and Role. Skipped, saying so, without helm.
pub fn assert_chart_allows_the_operator(records: &[RequestRecord]) {
    let Some(docs) = render_chart(&[]) else {
        eprintln!("SKIPPED the RBAC check: ATOLL_HELM is not set (scripts/test sets it)");
        return;
    };
    let policy = Policy::from_objects(&docs).expect("the chart's RBAC objects read");
    let user = operator_user();
    let made = records
        .iter()
        .filter(|r| r.user.as_deref() == Some(user.name.as_str()))
        .count();
    assert!(made > 0, "no request was made as {}", user.name);
    let coverage = policy.coverage(&user, records);
    assert!(
        coverage.denied.is_empty(),
        "requests the chart's roles do not allow: {:#?}",
        coverage.denied
    );
}

/// Starts the cluster of `kind` (see `atoll_testkit::cluster`), failing
/// the test with the reason when it does not start.
pub async fn start_cluster(kind: ClusterKind) -> TestCluster {
    TestCluster::start(kind)
        .await
        .unwrap_or_else(|e| panic!("{kind} did not start: {e}"))
}

/// Applies `crd` (server-side, as the admin) and Atoll's other CRDs
/// (TenantBackup), and waits until the API server serves them
/// (`Established`).
pub async fn install_crd(client: &Client, crd: &CustomResourceDefinition) {
    install_one_crd(client, crd).await;
    for other in atoll_crds::all_crds() {
        if other.metadata.name != crd.metadata.name {
            install_one_crd(client, &other).await;
        }
    }
}

async fn install_one_crd(client: &Client, crd: &CustomResourceDefinition) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.metadata.name.clone().expect("the CRD has a name");
    crds.patch(
        &name,
        &PatchParams::apply("atoll-tests").force(),
        &Patch::Apply(crd),
    )
    .await
    .unwrap_or_else(|e| panic!("CRD {name} applied: {e}"));
    eventually(
        &format!("CRD {name} to be established"),
        std::time::Duration::from_secs(60),
        || async {
            let crd = crds.get(&name).await.ok()?;
            crd.status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        },
    )
    .await;
}

/// The kinds that decide what the operator's account may do.
const ACCESS_KINDS: [&str; 7] = [
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
];

/// Installs what the chart grants the operator (the release namespace, its
/// ServiceAccount, ClusterRole, Roles, their bindings and the
/// ValidatingAdmissionPolicy) and returns a client as the operator's
/// service account: the cluster's authorizer and admission chain (kubesim's
/// or the real ones) judge every request the operator makes, as they do
/// once the chart is installed. Without helm, says so and returns the
/// admin client.
pub async fn operator_client_as_the_chart(cluster: &TestCluster) -> Client {
    let Some(docs) = render_chart(&[]) else {
        eprintln!(
            "SKIPPED RBAC as the chart: ATOLL_HELM is not set (scripts/test sets it); the operator runs as the admin"
        );
        return cluster.client();
    };
    let client = cluster.client();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    if namespaces
        .get_opt(RELEASE_NAMESPACE)
        .await
        .expect("read the release namespace")
        .is_none()
    {
        namespaces
            .create(
                &Default::default(),
                &serde_json::from_value(
                    serde_json::json!({"metadata": {"name": RELEASE_NAMESPACE}}),
                )
                .expect("namespace"),
            )
            .await
            .expect("the release namespace created");
    }
    let access: String = docs
        .iter()
        .filter(|d| {
            d["kind"]
                .as_str()
                .is_some_and(|k| ACCESS_KINDS.contains(&k))
        })
        .map(|d| format!("---\n{}", serde_norway::to_string(d).expect("yaml")))
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = dir.path().join("access.yaml");
    std::fs::write(&manifest, access).expect("write the chart's access objects");
    atoll_testkit::sandbox::apply_files(&client, &[manifest])
        .await
        .unwrap_or_else(|e| panic!("the chart's RBAC and admission policy applied: {e}"));
    cluster
        .client_as_service_account(RELEASE_NAMESPACE, OPERATOR_ACCOUNT)
        .await
        .expect("a client as the operator's service account")
}
