//! The Pod status kubelet reports: container states from the runtime,
//! the phase, and conditions keeping their transition times.

use k8s_openapi::api::core::v1::{
    ContainerState as K8sContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::kubelet::{PodRuntime, Slot};
use super::process::{ContainerState, RunState, Termination, now};

fn waiting(reason: &str, message: Option<String>) -> K8sContainerState {
    K8sContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_owned()),
            message,
        }),
        ..K8sContainerState::default()
    }
}

fn terminated(t: &Termination, pid: Option<u32>) -> K8sContainerState {
    K8sContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: t.exit_code,
            signal: t.signal,
            reason: Some(t.reason.clone()),
            message: t.message.clone(),
            started_at: t.started_at.clone(),
            finished_at: Some(t.finished_at.clone()),
            container_id: pid.map(|p| format!("nodesim://{p}")),
        }),
        ..K8sContainerState::default()
    }
}

fn container_status(name: &str, image: &str, state: &ContainerState) -> ContainerStatus {
    let (k8s_state, pid) = match &state.current {
        RunState::Waiting { reason, message } => (waiting(reason, message.clone()), None),
        RunState::Running { pid, started_at } => (
            K8sContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(started_at.clone()),
                }),
                ..K8sContainerState::default()
            },
            Some(*pid),
        ),
        RunState::Terminated(t) => (terminated(t, None), None),
    };
    ContainerStatus {
        name: name.to_owned(),
        image: image.to_owned(),
        image_id: String::new(),
        container_id: pid.map(|p| format!("nodesim://{p}")),
        ready: state.ready,
        restart_count: state.restart_count,
        started: Some(matches!(state.current, RunState::Running { .. })),
        state: Some(k8s_state),
        last_state: state.last_termination.as_ref().map(|t| terminated(t, None)),
        ..ContainerStatus::default()
    }
}

/// How far a pod's containers got.
struct Progress {
    any_started: bool,
    all_final: bool,
    all_succeeded: bool,
}

/// The status of each container, sorted by name, and how far they got.
fn container_statuses(runtime: &PodRuntime) -> (Vec<ContainerStatus>, Progress) {
    let mut statuses = Vec::new();
    let mut progress = Progress {
        any_started: false,
        all_final: true,
        all_succeeded: true,
    };
    for (name, reason, message) in &runtime.waiting {
        progress.all_final = false;
        statuses.push(ContainerStatus {
            name: name.clone(),
            state: Some(waiting(reason, Some(message.clone()))),
            started: Some(false),
            ..ContainerStatus::default()
        });
    }
    for slot in &runtime.slots {
        match slot {
            Slot::Instant {
                name,
                image,
                started_at,
            } => {
                progress.any_started = true;
                progress.all_final = false;
                statuses.push(instant_status(name, image, started_at));
            }
            Slot::Process {
                name,
                image,
                supervisor,
            } => {
                let state = supervisor.state();
                match &state.current {
                    RunState::Terminated(t) => {
                        progress.any_started = true;
                        progress.all_succeeded &= t.exit_code == 0;
                    }
                    RunState::Running { .. } => {
                        progress.any_started = true;
                        progress.all_final = false;
                    }
                    RunState::Waiting { .. } => {
                        progress.any_started |= state.restart_count > 0;
                        progress.all_final = false;
                    }
                }
                statuses.push(container_status(name, image, &state));
            }
        }
    }
    statuses.sort_by(|a, b| a.name.cmp(&b.name));
    (statuses, progress)
}

/// An instant container: running and ready since it "started".
fn instant_status(name: &str, image: &str, started_at: &Time) -> ContainerStatus {
    ContainerStatus {
        name: name.to_owned(),
        image: image.to_owned(),
        ready: true,
        started: Some(true),
        container_id: Some("nodesim://instant".to_owned()),
        state: Some(K8sContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(started_at.clone()),
            }),
            ..K8sContainerState::default()
        }),
        ..ContainerStatus::default()
    }
}

/// The Pod status for a runtime, keeping condition transition times from
/// `previous` where nothing changed.
pub fn pod_status(runtime: &PodRuntime, previous: Option<&PodStatus>) -> PodStatus {
    let (statuses, progress) = container_statuses(runtime);
    let all_ready = !statuses.is_empty() && statuses.iter().all(|s| s.ready);
    let phase = if progress.all_final && !statuses.is_empty() {
        if progress.all_succeeded {
            "Succeeded"
        } else {
            "Failed"
        }
    } else if progress.any_started {
        "Running"
    } else {
        "Pending"
    };
    let now = now();
    let prev = previous.and_then(|p| p.conditions.as_ref());
    let condition = |type_: &str, ok: bool, reason: Option<&str>| {
        let status = if ok { "True" } else { "False" }.to_owned();
        let last_transition_time = prev
            .and_then(|c| c.iter().find(|c| c.type_ == type_ && c.status == status))
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        PodCondition {
            type_: type_.to_owned(),
            status,
            reason: reason.map(str::to_owned),
            last_transition_time: Some(last_transition_time),
            ..PodCondition::default()
        }
    };
    let not_ready = (!all_ready).then_some("ContainersNotReady");
    let scheduled_ok = true;
    let ip = runtime.ip.to_string();
    PodStatus {
        phase: Some(phase.to_owned()),
        conditions: Some(vec![
            condition("PodReadyToStartContainers", true, None),
            condition("Initialized", true, None),
            condition("Ready", all_ready, not_ready),
            condition("ContainersReady", all_ready, not_ready),
            condition("PodScheduled", scheduled_ok, None),
        ]),
        container_statuses: Some(statuses),
        host_ip: Some("127.0.0.1".to_owned()),
        host_ips: Some(vec![HostIP {
            ip: "127.0.0.1".to_owned(),
        }]),
        pod_ip: Some(ip.clone()),
        pod_ips: Some(vec![PodIP { ip }]),
        start_time: Some(
            previous
                .and_then(|p| p.start_time.clone())
                .unwrap_or_else(|| runtime.started.clone()),
        ),
        // The API server sets the QoS class at creation and refuses to
        // change it.
        qos_class: Some(
            previous
                .and_then(|p| p.qos_class.clone())
                .unwrap_or_else(|| "BestEffort".to_owned()),
        ),
        ..PodStatus::default()
    }
}
