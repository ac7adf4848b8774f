//! Helpers shared by the operator's integration tests.
#![allow(dead_code)]

use atoll_testkit::chart;
use atoll_testkit::kubesim::RequestRecord;
use atoll_testkit::kubesim::rbac::{Policy, UserInfo};
use serde_json::Value;

#[allow(unused_imports)]
pub use atoll_testkit::eventually;

pub use atoll_testkit::chart::RELEASE_NAMESPACE;
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
