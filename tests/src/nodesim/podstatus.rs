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

/// A container that has not started: waiting with `reason`.
fn not_started(name: &str, image: &str, reason: &str, message: Option<String>) -> ContainerStatus {
    ContainerStatus {
        name: name.to_owned(),
        image: image.to_owned(),
        state: Some(waiting(reason, message)),
        started: Some(false),
        ..ContainerStatus::default()
    }
}

/// The status of a started container; tallies `progress`.
fn slot_status(slot: &Slot, init: bool, progress: &mut Progress) -> ContainerStatus {
    match slot {
        Slot::Instant {
            name,
            image,
            started_at,
        } => {
            progress.any_started = true;
            if init {
                return instant_init_status(name, image, started_at);
            }
            progress.all_final = false;
            instant_status(name, image, started_at)
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
            let mut status = container_status(name, image, &state);
            if init {
                // kubelet reports a completed init container ready.
                status.ready =
                    matches!(&state.current, RunState::Terminated(t) if t.exit_code == 0);
            }
            status
        }
    }
}

/// The status of each container, sorted by name, and how far they got.
fn container_statuses(
    runtime: &PodRuntime,
    images: &[(String, String)],
) -> (Vec<ContainerStatus>, Progress) {
    let mut statuses = Vec::new();
    let mut progress = Progress {
        any_started: false,
        all_final: true,
        all_succeeded: true,
    };
    for slot in &runtime.slots {
        statuses.push(slot_status(slot, false, &mut progress));
    }
    if runtime.slots.is_empty() {
        // Not created yet: why, or waiting for the init containers.
        progress.all_final = false;
        let before = if runtime.init_names.is_empty() {
            "ContainerCreating"
        } else {
            "PodInitializing"
        };
        for (name, image) in images {
            statuses.push(match runtime.waiting.iter().find(|w| &w.0 == name) {
                Some((_, reason, message)) => {
                    not_started(name, image, reason, Some(message.clone()))
                }
                None => not_started(name, image, before, None),
            });
        }
    }
    statuses.sort_by(|a, b| a.name.cmp(&b.name));
    (statuses, progress)
}

/// The status of each init container, in spec order.
fn init_statuses(runtime: &PodRuntime) -> Vec<ContainerStatus> {
    let mut progress = Progress {
        any_started: false,
        all_final: true,
        all_succeeded: true,
    };
    runtime
        .init_names
        .iter()
        .enumerate()
        .map(|(i, (name, image))| {
            if let Some(slot) = runtime.init_slots.get(i) {
                return slot_status(slot, true, &mut progress);
            }
            match runtime.waiting.iter().find(|w| &w.0 == name) {
                Some((_, reason, message)) => {
                    not_started(name, image, reason, Some(message.clone()))
                }
                None => not_started(name, image, "PodInitializing", None),
            }
        })
        .collect()
}

/// An instant init container: completed as soon as it "started".
fn instant_init_status(name: &str, image: &str, started_at: &Time) -> ContainerStatus {
    let done = Termination {
        exit_code: 0,
        signal: None,
        reason: "Completed".to_owned(),
        message: None,
        started_at: Some(started_at.clone()),
        finished_at: started_at.clone(),
    };
    ContainerStatus {
        name: name.to_owned(),
        image: image.to_owned(),
        ready: true,
        started: Some(false),
        container_id: Some("nodesim://instant".to_owned()),
        state: Some(terminated(&done, None)),
        ..ContainerStatus::default()
    }
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

/// The pod's conditions, keeping transition times from `previous` where
/// nothing changed; reasons and messages as kubelet words them.
fn conditions(
    phase: &str,
    statuses: &[ContainerStatus],
    init: &[ContainerStatus],
    previous: Option<&PodStatus>,
) -> Vec<PodCondition> {
    let all_ready = !statuses.is_empty() && statuses.iter().all(|s| s.ready);
    let unready: Vec<&str> = statuses
        .iter()
        .filter(|s| !s.ready)
        .map(|s| s.name.as_str())
        .collect();
    let incomplete: Vec<&str> = init
        .iter()
        .filter(|s| !s.ready)
        .map(|s| s.name.as_str())
        .collect();
    let now = now();
    let prev = previous.and_then(|p| p.conditions.as_ref());
    let condition = |type_: &str, ok: bool, reason: Option<&str>, message: &Option<String>| {
        let status = if ok { "True" } else { "False" }.to_owned();
        let last_transition_time = prev
            .and_then(|c| c.iter().find(|c| c.type_ == type_ && c.status == status))
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        PodCondition {
            type_: type_.to_owned(),
            status,
            reason: reason.map(str::to_owned),
            message: message.clone(),
            last_transition_time: Some(last_transition_time),
            ..PodCondition::default()
        }
    };
    let completed = phase == "Succeeded";
    let not_ready = if completed {
        Some("PodCompleted")
    } else {
        (!all_ready).then_some("ContainersNotReady")
    };
    let unready_message = (!completed && !all_ready)
        .then(|| names_message("unready", &unready))
        .flatten();
    let not_initialized = if completed {
        Some("PodCompleted")
    } else {
        (!incomplete.is_empty()).then_some("ContainersNotInitialized")
    };
    let incomplete_message = (!completed)
        .then(|| names_message("incomplete", &incomplete))
        .flatten();
    vec![
        condition("PodReadyToStartContainers", true, None, &None),
        condition(
            "Initialized",
            incomplete.is_empty(),
            not_initialized,
            &incomplete_message,
        ),
        condition("Ready", all_ready, not_ready, &unready_message),
        condition("ContainersReady", all_ready, not_ready, &unready_message),
        condition("PodScheduled", true, None, &None),
    ]
}

/// `containers with {what} status: [a b]`, kubelet's condition message.
fn names_message(what: &str, names: &[&str]) -> Option<String> {
    (!names.is_empty()).then(|| format!("containers with {what} status: [{}]", names.join(" ")))
}

/// The Pod status for a runtime, keeping condition transition times from
/// `previous` where nothing changed. `images` are the names and images of
/// the pod's containers, in spec order.
pub fn pod_status(
    runtime: &PodRuntime,
    images: &[(String, String)],
    previous: Option<&PodStatus>,
) -> PodStatus {
    let (statuses, progress) = container_statuses(runtime, images);
    let init = init_statuses(runtime);
    let initialized = runtime.initialized() && runtime.waiting.is_empty();
    let phase = if let Some(phase) = runtime.final_phase() {
        phase
    } else if !initialized || !runtime.pending.is_empty() {
        "Pending"
    } else if progress.all_final && !statuses.is_empty() {
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
    let conditions = conditions(phase, &statuses, &init, previous);
    let ip = runtime.ip.to_string();
    PodStatus {
        phase: Some(phase.to_owned()),
        conditions: Some(conditions),
        reason: runtime.ended.as_ref().map(|(reason, _)| reason.clone()),
        message: runtime.ended.as_ref().map(|(_, message)| message.clone()),
        container_statuses: Some(statuses),
        init_container_statuses: (!init.is_empty()).then_some(init),
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
