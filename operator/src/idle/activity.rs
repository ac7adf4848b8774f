//! Reading an instance's activity: `GET /activity` on the metrics port of
//! each ready instance pod (the port the Ingress does not route), combined
//! over replicas (the latest request, the most work, the earliest due time).

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, ListParams};

pub use atoll_crds::contract::InstanceActivity as Activity;

/// One view of several replicas: the latest request, the most work, the
/// earliest due time.
pub fn combine(reports: Vec<Activity>) -> Option<Activity> {
    let min = |a: Option<Timestamp>, b: Option<Timestamp>| match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    reports.into_iter().reduce(|a, b| Activity {
        last_request_at: a.last_request_at.max(b.last_request_at),
        running: a.running.max(b.running),
        queued: a.queued.max(b.queued),
        paused: a.paused.max(b.paused),
        next_timer_at: min(a.next_timer_at, b.next_timer_at),
        next_schedule_at: min(a.next_schedule_at, b.next_schedule_at),
        started_at: a.started_at.max(b.started_at),
        recover_missed_schedules: a.recover_missed_schedules,
    })
}

/// Asks every ready instance pod of the namespace; `None` when none answered.
pub async fn read(
    client: &Client,
    http: &reqwest::Client,
    namespace: &str,
    selector: &str,
) -> Option<Activity> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = match pods.list(&ListParams::default().labels(selector)).await {
        Ok(list) => list,
        Err(error) => {
            tracing::warn!(%namespace, %error, "listing the instance pods for their activity failed");
            return None;
        }
    };
    let port = atoll_crds::contract::METRICS_PORT;
    let mut reports = Vec::new();
    for pod in list.items.iter().filter(|p| ready(p)) {
        let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()) else {
            continue;
        };
        let url = format!("http://{ip}:{port}{}", atoll_crds::contract::ACTIVITY_PATH);
        let answer = http
            .get(&url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status);
        match answer {
            Ok(response) => match response.json::<Activity>().await {
                Ok(activity) => reports.push(activity),
                Err(error) => {
                    tracing::warn!(%namespace, %error, "the instance's activity could not be read");
                }
            },
            Err(error) => {
                tracing::debug!(%namespace, %error, "an instance did not report its activity");
            }
        }
    }
    combine(reports)
}

fn ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}
