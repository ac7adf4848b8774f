use std::sync::Mutex;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    PodStatus,
};

use super::*;

fn waiting(name: &str, reason: &str) -> ContainerStatus {
    ContainerStatus {
        name: name.into(),
        image: format!("{name}-image:1"),
        state: Some(ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.into()),
                message: Some(format!("{reason} happened")),
            }),
            ..ContainerState::default()
        }),
        ..ContainerStatus::default()
    }
}

fn running(name: &str) -> ContainerStatus {
    ContainerStatus {
        name: name.into(),
        state: Some(ContainerState {
            running: Some(ContainerStateRunning::default()),
            ..ContainerState::default()
        }),
        ..ContainerStatus::default()
    }
}

fn exited(name: &str, code: i32) -> ContainerStatus {
    ContainerStatus {
        name: name.into(),
        state: Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: code,
                message: (code != 0).then(|| format!("{name} said no")),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        }),
        ..ContainerStatus::default()
    }
}

fn pod(phase: &str, inits: Vec<ContainerStatus>, mains: Vec<ContainerStatus>) -> Pod {
    Pod {
        status: Some(PodStatus {
            phase: Some(phase.into()),
            init_container_statuses: Some(inits),
            container_statuses: Some(mains),
            ..PodStatus::default()
        }),
        ..Pod::default()
    }
}

#[test]
fn the_task_containers_exit_code_decides() {
    assert_eq!(progress(&Pod::default()), Progress::Pending);
    let fetching = pod(
        "Pending",
        vec![running("fetch"), waiting("task", "PodInitializing")],
        vec![],
    );
    assert_eq!(progress(&fetching), Progress::Pending);
    let started = pod("Pending", vec![exited("fetch", 0), running("task")], vec![]);
    assert_eq!(progress(&started), Progress::TaskStarted);
    let uploading = pod(
        "Running",
        vec![exited("fetch", 0), exited("task", 0)],
        vec![running("upload")],
    );
    assert_eq!(progress(&uploading), Progress::TaskStarted);
    let done = pod(
        "Succeeded",
        vec![exited("fetch", 0), exited("task", 0)],
        vec![exited("upload", 0)],
    );
    assert_eq!(progress(&done), Progress::Finished { exit_code: 0 });
    let failed = pod(
        "Failed",
        vec![exited("fetch", 0), exited("task", 3)],
        vec![],
    );
    assert_eq!(progress(&failed), Progress::Finished { exit_code: 3 });
}

#[test]
fn pull_failures_helpers_and_deadlines_fail_with_their_message() {
    for reason in ["ErrImagePull", "ImagePullBackOff", "InvalidImageName"] {
        let stuck = pod(
            "Pending",
            vec![exited("fetch", 0), waiting("task", reason)],
            vec![],
        );
        let Progress::Failed(message) = progress(&stuck) else {
            panic!("{reason} is not a failure");
        };
        assert!(message.contains(reason), "{message}");
        assert!(message.contains("task-image:1"), "{message}");
        assert!(message.contains(&format!("{reason} happened")), "{message}");
    }
    let fetch = pod("Failed", vec![exited("fetch", 1)], vec![]);
    assert!(
        matches!(progress(&fetch), Progress::Failed(m) if m.contains("fetching the input files") && m.contains("fetch said no"))
    );
    let upload = pod(
        "Failed",
        vec![exited("fetch", 0), exited("task", 0)],
        vec![exited("upload", 1)],
    );
    assert!(
        matches!(progress(&upload), Progress::Failed(m) if m.contains("uploading the output files"))
    );
    let mut late = pod(
        "Failed",
        vec![exited("fetch", 0), exited("task", 137)],
        vec![],
    );
    if let Some(status) = late.status.as_mut() {
        status.reason = Some("DeadlineExceeded".into());
        status.message =
            Some("Pod was active on the node longer than the specified deadline".into());
    }
    assert!(matches!(progress(&late), Progress::Failed(m) if m.contains("deadline")));
}

#[tokio::test]
async fn log_lines_are_split_cut_and_decoded() {
    let seen = Mutex::new(Vec::new());
    let record = |stream: Stream, line: String| {
        assert_eq!(stream, Stream::Stdout);
        seen.lock().expect("lock").push(line);
    };
    let long = "y".repeat(MAX_LINE_BYTES + 10);
    let text = format!("one\r\ntwo\n\n{long}\nbad \u{fffd}\nlast");
    let mut input = text.into_bytes();
    input.push(0xff);
    let reader = futures::io::BufReader::with_capacity(7, futures::io::Cursor::new(input));
    read_lines(pin!(reader), &record).await;
    let seen = seen.into_inner().expect("lock");
    assert_eq!(seen.len(), 6);
    assert_eq!(seen[..3], ["one", "two", ""]);
    assert_eq!(seen[3].len(), MAX_LINE_BYTES);
    assert_eq!(seen[5], "last\u{fffd}");
}
