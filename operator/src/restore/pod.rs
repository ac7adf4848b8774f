//! A restore whose init container fails before it writes `restore.json`
//! (its configuration cannot be read, the binary cannot start, the store
//! cannot be reached): read from the database pod's init container
//! statuses, so `Restored` says why instead of `Running` forever. The
//! decision is pure ([`init_failure`]); [`observe`] reads the pod.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, ContainerStatus, Pod};
use kube::api::Api;
use kube::{Client, ResourceExt};

use crate::build::{DATABASE, INSTALL_BACKUP, RESTORE_CONTAINER};

/// The longest part of a container's termination message quoted.
const MESSAGE_LIMIT: usize = 600;

/// Why the restore's init container keeps failing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitFailure {
    /// The container (`restore` or `install-backup`).
    pub container: String,
    /// Its last exit code.
    pub exit_code: i32,
    /// Its last termination reason (`Error`, `StartError`, `OOMKilled`…).
    pub reason: Option<String>,
    /// The end of its termination message (its log's end, as the restore
    /// writes it: credentials redacted).
    pub message: Option<String>,
    /// How often it was restarted.
    pub restarts: i32,
}

impl InitFailure {
    /// The `Restored` condition's text.
    pub fn describe(&self) -> String {
        let reason = self.reason.as_deref().unwrap_or("Error");
        let mut text = format!(
            "The database pod's init container {:?} failed before the restore wrote its outcome ({reason}, exit code {}, {} restarts)",
            self.container, self.exit_code, self.restarts
        );
        if let Some(message) = &self.message {
            text.push_str(": ");
            text.push_str(message);
        }
        text
    }
}

/// The last failed run of a container: its current state when it ended
/// in failure, else its last termination while it waits to restart.
fn last_failure(status: &ContainerStatus) -> Option<&ContainerStateTerminated> {
    let current = status.state.as_ref().and_then(|s| s.terminated.as_ref());
    let last = status
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref());
    match current {
        Some(t) if t.exit_code != 0 => Some(t),
        Some(_) => None,
        None if status.state.as_ref().is_some_and(|s| s.running.is_some()) => None,
        None => last.filter(|t| t.exit_code != 0),
    }
}

/// The message's end, at most [`MESSAGE_LIMIT`] bytes, on one line.
fn excerpt(message: &str) -> Option<String> {
    let text = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut start = text.len().saturating_sub(MESSAGE_LIMIT);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let tail = &text[start..];
    match (tail.is_empty(), start > 0) {
        (true, _) => None,
        (false, true) => Some(format!("…{tail}")),
        (false, false) => Some(tail.to_owned()),
    }
}

/// The restore's init container that failed and was restarted at least
/// once (one retry rides out a passing blip), if any.
pub fn init_failure(pod: &Pod) -> Option<InitFailure> {
    let statuses = pod.status.as_ref()?.init_container_statuses.as_ref()?;
    statuses
        .iter()
        .filter(|s| s.name == RESTORE_CONTAINER || s.name == INSTALL_BACKUP)
        .filter(|s| s.restart_count >= 1)
        .find_map(|s| {
            let failed = last_failure(s)?;
            Some(InitFailure {
                container: s.name.clone(),
                exit_code: failed.exit_code,
                reason: failed.reason.clone(),
                message: failed.message.as_deref().and_then(excerpt),
                restarts: s.restart_count,
            })
        })
}

/// Reads the database pod of `namespace` (only the StatefulSet's own:
/// a pod of that name made by anyone else is ignored) for a failed
/// restore init container. API errors are logged: the restore then
/// still runs, as far as we know.
pub async fn observe(client: &Client, namespace: &str) -> Option<InitFailure> {
    let pod_name = format!("{DATABASE}-0");
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pod = match pods.get_opt(&pod_name).await {
        Ok(pod) => pod?,
        Err(error) => {
            tracing::warn!(%namespace, %error, "cannot read the database pod for the restore's state");
            return None;
        }
    };
    let failure = init_failure(&pod)?;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    let set_uid = sets.get_opt(DATABASE).await.ok()??.metadata.uid?;
    let owned = pod.owner_references().iter().any(|o| {
        o.controller == Some(true)
            && o.kind == "StatefulSet"
            && o.name == DATABASE
            && o.uid == set_uid
    });
    owned.then_some(failure)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(init: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "database-0"},
            "status": {"initContainerStatuses": init},
        }))
        .expect("pod")
    }

    fn status(
        name: &str,
        restarts: i32,
        state: serde_json::Value,
        last: serde_json::Value,
    ) -> serde_json::Value {
        json!({
            "name": name, "image": "postgres:15", "imageID": "", "ready": false,
            "restartCount": restarts, "state": state, "lastState": last,
        })
    }

    #[test]
    fn a_restore_crash_looping_before_its_outcome_is_a_failure() {
        let crash = pod(json!([
            status(
                "install-backup",
                0,
                json!({"terminated": {"exitCode": 0, "reason": "Completed"}}),
                json!({})
            ),
            status(
                "restore",
                2,
                json!({"waiting": {"reason": "CrashLoopBackOff"}}),
                json!({"terminated": {"exitCode": 1, "reason": "Error",
                    "message": "atoll-backup restore: cannot write restore.json: put tenants/x/restore.json: no answer from the object store\n"}}),
            ),
        ]));
        let failure = init_failure(&crash).expect("a failure");
        assert_eq!(failure.container, "restore");
        assert_eq!(failure.exit_code, 1);
        let text = failure.describe();
        assert!(text.contains("\"restore\""), "{text}");
        assert!(text.contains("exit code 1, 2 restarts"), "{text}");
        assert!(text.ends_with("no answer from the object store"), "{text}");
    }

    #[test]
    fn a_first_failure_a_running_retry_or_a_success_is_not() {
        let first = pod(json!([status(
            "restore",
            0,
            json!({"terminated": {"exitCode": 1, "reason": "Error"}}),
            json!({}),
        )]));
        assert_eq!(init_failure(&first), None, "one retry first");
        let retrying = pod(json!([status(
            "restore",
            1,
            json!({"running": {}}),
            json!({"terminated": {"exitCode": 1, "reason": "Error"}}),
        )]));
        assert_eq!(init_failure(&retrying), None);
        let done = pod(json!([status(
            "restore",
            1,
            json!({"terminated": {"exitCode": 0, "reason": "Completed"}}),
            json!({"terminated": {"exitCode": 1}}),
        )]));
        assert_eq!(init_failure(&done), None);
        let other = pod(json!([status(
            "upgrade-roles",
            3,
            json!({"waiting": {"reason": "CrashLoopBackOff"}}),
            json!({"terminated": {"exitCode": 1}}),
        )]));
        assert_eq!(init_failure(&other), None, "not the restore's");
    }

    #[test]
    fn a_binary_that_cannot_start_is_named_and_long_messages_are_cut() {
        let long = format!("{}the end", "x".repeat(2000));
        let start = pod(json!([status(
            "install-backup",
            1,
            json!({"terminated": {"exitCode": 128, "reason": "StartError", "message": long}}),
            json!({}),
        )]));
        let failure = init_failure(&start).expect("a failure");
        assert_eq!(failure.reason.as_deref(), Some("StartError"));
        let message = failure.message.expect("message");
        assert!(message.starts_with('…') && message.ends_with("the end"));
        assert!(message.len() <= MESSAGE_LIMIT + '…'.len_utf8());
    }
}
