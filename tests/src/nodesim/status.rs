//! How nodesim writes: statuses as merge patches of what changed, under
//! its own field manager.

use std::fmt::Debug;

use kube::Resource;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::FIELD_MANAGER;

/// The part of `desired` (an object) that differs from `existing`, with
/// `null` for `managed` keys that `desired` no longer has; `None` if equal.
pub fn status_diff(existing: Option<&Value>, desired: &Value, managed: &[&str]) -> Option<Value> {
    let empty = serde_json::Map::new();
    let existing = existing.and_then(Value::as_object).unwrap_or(&empty);
    let desired = desired.as_object()?;
    let mut patch = serde_json::Map::new();
    for (k, v) in desired {
        if existing.get(k) != Some(v) {
            patch.insert(k.clone(), v.clone());
        }
    }
    for k in managed {
        if !desired.contains_key(*k) && existing.get(*k).is_some_and(|v| !v.is_null()) {
            patch.insert((*k).to_owned(), Value::Null);
        }
    }
    (!patch.is_empty()).then_some(Value::Object(patch))
}

pub(super) fn is_conflict_or_missing(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(s) if s.code == 409 || s.code == 404)
}

pub(super) fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    }
}

pub(super) fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    }
}

pub(super) async fn patch_status<K>(
    api: Api<K>,
    name: &str,
    existing: Option<Value>,
    desired: Value,
    managed: &[&str],
) where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let Some(diff) = status_diff(existing.as_ref(), &desired, managed) else {
        return;
    };
    if let Err(error) = api
        .patch_status(
            name,
            &patch_params(),
            &Patch::Merge(json!({ "status": diff })),
        )
        .await
        && !is_conflict_or_missing(&error)
    {
        tracing::warn!(%error, name, "status update failed");
    }
}

pub(super) const DEPLOYMENT_STATUS: &[&str] = &[
    "observedGeneration",
    "replicas",
    "updatedReplicas",
    "readyReplicas",
    "availableReplicas",
    "unavailableReplicas",
    "conditions",
];
pub(super) const STATEFULSET_STATUS: &[&str] = &[
    "observedGeneration",
    "replicas",
    "readyReplicas",
    "availableReplicas",
    "currentReplicas",
    "updatedReplicas",
    "currentRevision",
    "updateRevision",
];
pub(super) const POD_STATUS: &[&str] = &[
    "phase",
    "reason",
    "message",
    "conditions",
    "containerStatuses",
    "initContainerStatuses",
    "podIP",
    "podIPs",
    "hostIP",
    "hostIPs",
    "startTime",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_diff_sends_only_changes_and_clears_dropped_fields() {
        let existing = json!({"replicas": 1, "readyReplicas": 1, "extra": 5});
        assert_eq!(
            status_diff(
                Some(&existing),
                &json!({"replicas": 1, "readyReplicas": 1}),
                &["replicas", "readyReplicas"]
            ),
            None
        );
        assert_eq!(
            status_diff(
                Some(&existing),
                &json!({"replicas": 2}),
                &["replicas", "readyReplicas"]
            ),
            Some(json!({"replicas": 2, "readyReplicas": null}))
        );
    }
}
