//! Following a task pod: its state read from the pod's status (pure,
//! [`progress`]), and the `task` container's log streamed as it is written.

use std::pin::pin;
use std::time::Duration;

use futures::io::AsyncBufReadExt;
use futures::{AsyncBufRead, StreamExt};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::Api;
use kube::api::LogParams;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::watch_object;
use tokio::sync::watch;

use super::pod::{FETCH_CONTAINER, TASK_CONTAINER, UPLOAD_CONTAINER};
use crate::runner::{Lines, Stream};

/// How long the log stream may keep going once the pod is done.
const LOG_DRAIN: Duration = Duration::from_secs(10);
/// Watch failures in a row (retried with backoff, about two minutes in all)
/// before the attempt fails.
const MAX_WATCH_FAILURES: u32 = 8;
/// Longest log line kept; longer ones are cut.
const MAX_LINE_BYTES: usize = 64 * 1024;

/// Waiting reasons that mean a container will never start.
const CANNOT_START: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// Where a task pod is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Not started yet (scheduling, pulling, fetching the inputs).
    Pending,
    /// The script runs (or ran): its log can be read.
    TaskStarted,
    /// The script ended with this exit code and, when 0, its outputs were
    /// uploaded.
    Finished { exit_code: i32 },
    /// The pod failed around the script: this message says why.
    Failed(String),
}

fn find<'a>(statuses: &'a [ContainerStatus], name: &str) -> Option<&'a ContainerStatus> {
    statuses.iter().find(|s| s.name == name)
}

/// Where the pod is, from its status.
pub fn progress(pod: &Pod) -> Progress {
    let Some(status) = &pod.status else {
        return Progress::Pending;
    };
    let phase = status.phase.as_deref().unwrap_or("Pending");
    if phase == "Failed" && status.reason.as_deref() == Some("DeadlineExceeded") {
        let message = status.message.as_deref().unwrap_or("");
        return Progress::Failed(format!(
            "the task pod ran past its deadline (activeDeadlineSeconds): {message}"
        ));
    }
    let inits = status
        .init_container_statuses
        .as_deref()
        .unwrap_or_default();
    let mains = status.container_statuses.as_deref().unwrap_or_default();
    if let Some(failed) = inits.iter().chain(mains).find_map(cannot_start) {
        return Progress::Failed(failed);
    }
    if let Some((code, message)) = find(inits, FETCH_CONTAINER).and_then(terminated_badly) {
        return Progress::Failed(format!(
            "fetching the input files failed (exit code {code}): {message}"
        ));
    }
    let task = find(inits, TASK_CONTAINER).and_then(|s| s.state.as_ref());
    if let Some(done) = task.and_then(|s| s.terminated.as_ref()) {
        if done.exit_code != 0 {
            return Progress::Finished {
                exit_code: done.exit_code,
            };
        }
        if let Some((code, message)) = find(mains, UPLOAD_CONTAINER).and_then(terminated_badly) {
            return Progress::Failed(format!(
                "uploading the output files failed (exit code {code}): {message}"
            ));
        }
        return match phase {
            "Succeeded" => Progress::Finished { exit_code: 0 },
            "Failed" => Progress::Failed(pod_failure(pod)),
            _ => Progress::TaskStarted,
        };
    }
    if phase == "Failed" {
        return Progress::Failed(pod_failure(pod));
    }
    if task.is_some_and(|s| s.running.is_some()) {
        return Progress::TaskStarted;
    }
    Progress::Pending
}

/// A container that will never start: its image and why.
fn cannot_start(status: &ContainerStatus) -> Option<String> {
    let waiting = status.state.as_ref()?.waiting.as_ref()?;
    let reason = waiting.reason.as_deref()?;
    CANNOT_START.contains(&reason).then(|| {
        format!(
            "container `{}` (image `{}`) cannot start: {reason}: {}",
            status.name,
            status.image,
            waiting.message.as_deref().unwrap_or("")
        )
    })
}

/// A container that ended with a non-zero code: the code and its message.
fn terminated_badly(status: &ContainerStatus) -> Option<(i32, String)> {
    let done = status.state.as_ref()?.terminated.as_ref()?;
    (done.exit_code != 0).then(|| {
        let message = done
            .message
            .as_deref()
            .or(done.reason.as_deref())
            .unwrap_or("")
            .trim();
        (done.exit_code, message.to_owned())
    })
}

fn pod_failure(pod: &Pod) -> String {
    let status = pod.status.as_ref();
    let reason = status.and_then(|s| s.reason.as_deref()).unwrap_or("Failed");
    let message = status.and_then(|s| s.message.as_deref()).unwrap_or("");
    format!("the task pod failed: {reason}: {message}")
}

/// Follows the pod until it is done, streaming the `task` container's log
/// into `lines`; the script's exit code, or why the pod failed.
pub async fn follow(pods: &Api<Pod>, name: &str, lines: Lines<'_>) -> Result<i32, String> {
    let (started_tx, started_rx) = watch::channel(false);
    let mut status = pin!(until_done(pods, name, started_tx));
    let mut logs = pin!(stream_logs(pods, name, started_rx, lines));
    tokio::select! {
        result = &mut status => {
            let _ = tokio::time::timeout(LOG_DRAIN, &mut logs).await;
            result
        }
        () = &mut logs => status.await,
    }
}

/// Watches the pod until it finished or failed; says when the script
/// started.
async fn until_done(
    pods: &Api<Pod>,
    name: &str,
    started: watch::Sender<bool>,
) -> Result<i32, String> {
    let mut events = pin!(watch_object(pods.clone(), name).default_backoff());
    let mut failures = 0;
    while let Some(event) = events.next().await {
        let pod = match event {
            Ok(Some(pod)) => pod,
            Ok(None) => return Err(format!("the task pod {name} was deleted")),
            Err(err) if failures >= MAX_WATCH_FAILURES => {
                return Err(format!("cannot watch the task pod {name}: {err}"));
            }
            Err(err) => {
                failures += 1;
                tracing::warn!(pod = name, error = %err, "watching the task pod failed; retrying");
                continue;
            }
        };
        failures = 0;
        match progress(&pod) {
            Progress::Pending => {}
            Progress::TaskStarted => {
                started.send_replace(true);
            }
            Progress::Finished { exit_code } => {
                started.send_replace(true);
                return Ok(exit_code);
            }
            Progress::Failed(message) => return Err(message),
        }
    }
    Err(format!("the watch of task pod {name} ended"))
}

/// Once the script started, streams its log line by line until it ends.
async fn stream_logs(
    pods: &Api<Pod>,
    name: &str,
    mut started: watch::Receiver<bool>,
    lines: Lines<'_>,
) {
    if started.wait_for(|s| *s).await.is_err() {
        return;
    }
    let params = LogParams {
        container: Some(TASK_CONTAINER.into()),
        follow: true,
        ..LogParams::default()
    };
    match pods.log_stream(name, &params).await {
        Ok(reader) => read_lines(pin!(reader), lines).await,
        Err(err) => {
            tracing::warn!(pod = name, error = %err, "cannot read the task pod's log");
            lines(
                Stream::Stderr,
                format!("(cannot read the task's log: {err})"),
            );
        }
    }
}

/// Passes each line of `reader` to `lines` (lines over
/// [`MAX_LINE_BYTES`] are cut; invalid UTF-8 is replaced).
pub async fn read_lines<R: AsyncBufRead>(mut reader: std::pin::Pin<&mut R>, lines: Lines<'_>) {
    let mut line: Vec<u8> = Vec::new();
    let emit = |line: &mut Vec<u8>| {
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        lines(Stream::Stdout, String::from_utf8_lossy(line).into_owned());
        line.clear();
    };
    loop {
        let (used, complete) = {
            let chunk = match reader.fill_buf().await {
                Ok([]) | Err(_) => break,
                Ok(chunk) => chunk,
            };
            let (used, complete) = match chunk.iter().position(|&b| b == b'\n') {
                Some(at) => (at + 1, true),
                None => (chunk.len(), false),
            };
            let room = MAX_LINE_BYTES.saturating_sub(line.len());
            let body = &chunk[..if complete { used - 1 } else { used }];
            line.extend_from_slice(&body[..body.len().min(room)]);
            (used, complete)
        };
        reader.as_mut().consume(used);
        if complete {
            emit(&mut line);
        }
    }
    if !line.is_empty() {
        emit(&mut line);
    }
}

#[cfg(test)]
#[path = "watch_tests.rs"]
mod tests;
