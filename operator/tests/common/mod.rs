//! Helpers shared by the operator's integration tests.
#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use atoll_testkit::kubesim::RequestRecord;
use atoll_testkit::kubesim::rbac::{Policy, UserInfo};
use serde_json::Value;

/// Polls `check` until it returns Some, or fails the test naming `what`
/// after `timeout`. A condition with a deadline, never a fixed sleep.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The namespace the chart is installed into by the tests.
pub const RELEASE_NAMESPACE: &str = "atoll-system";
/// The operator's ServiceAccount with release name `atoll`.
pub const OPERATOR_ACCOUNT: &str = "atoll-operator";

/// The user the operator's requests run as when installed by the chart.
pub fn operator_user() -> UserInfo {
    UserInfo::service_account(RELEASE_NAMESPACE, OPERATOR_ACCOUNT)
}

/// The chart's objects as `helm template atoll charts/atoll -n atoll-system
/// <extra>` renders them; `None` when `ATOLL_HELM` is unset (`scripts/test`
/// always sets it).
pub fn render_chart(extra: &[&str]) -> Option<Vec<Value>> {
    let helm = PathBuf::from(std::env::var_os("ATOLL_HELM")?);
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/atoll");
    let output = std::process::Command::new(helm)
        .args(["template", "atoll"])
        .arg(&chart)
        .args(["--namespace", RELEASE_NAMESPACE])
        .args(extra)
        .output()
        .expect("helm runs");
    assert!(
        output.status.success(),
        "helm template failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rendered = String::from_utf8(output.stdout).expect("utf-8");
    Some(
        rendered
            .split("\n---")
            .filter_map(|doc| serde_norway::from_str::<Value>(doc).ok())
            .filter(Value::is_object)
            .collect(),
    )
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
