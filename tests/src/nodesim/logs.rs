//! Container logs for `kubectl logs`: the files nodesim's processes write,
//! served to kubesim's pod `log` subresource.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use hyper::body::Bytes;

use super::Shared;
use crate::kubesim::{PodLogRequest, PodLogs};

/// Reads the logs of the pods a [`super::NodeSim`] runs.
#[derive(Debug, Clone)]
pub struct PodLogSource {
    pub(super) logs_dir: PathBuf,
    pub(super) shared: Arc<Shared>,
}

/// The newest log directory of pod `namespace/pod` (a pod name can be
/// reused by a later pod with a new uid).
fn pod_dir(logs_dir: &Path, namespace: &str, pod: &str) -> Option<PathBuf> {
    let prefix = format!("{namespace}_{pod}_");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(logs_dir)
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    dirs.sort_by_key(|d| std::fs::metadata(d).and_then(|m| m.modified()).ok());
    dirs.pop()
}

/// The log file of a container (the first one when `container` is `None`).
pub fn log_file(
    logs_dir: &Path,
    namespace: &str,
    pod: &str,
    container: Option<&str>,
) -> Option<PathBuf> {
    let dir = pod_dir(logs_dir, namespace, pod)?;
    match container {
        Some(c) => Some(dir.join(format!("{c}.log"))).filter(|f| f.is_file()),
        None => {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .ok()?
                .flatten()
                .map(|e| e.path())
                .collect();
            files.sort();
            files.into_iter().next()
        }
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: Option<u64>) -> &str {
    let Some(n) = n else { return text };
    let trimmed = text.strip_suffix('\n').unwrap_or(text);
    let mut count = 0u64;
    for (i, b) in trimmed.bytes().enumerate().rev() {
        if b == b'\n' {
            count += 1;
            if count == n {
                return &text[i + 1..];
            }
        }
    }
    if n == 0 { "" } else { text }
}

impl PodLogSource {
    /// Whether the container's log may still grow: the pod runs here and
    /// the container has not ended for good (one not started yet counts as
    /// running: its log is about to begin).
    fn running(&self, namespace: &str, pod: &str, container: &str) -> bool {
        self.shared
            .pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(namespace.to_owned(), pod.to_owned()))
            .is_some_and(|info| !info.finished.iter().any(|c| c == container))
    }
}

/// What nodesim knows of a pod's container, for kubelet's 404s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// The pod runs here (its container may not have started) or left logs.
    Known,
    /// Neither running here nor any log of it.
    UnknownPod,
    /// The pod ended and left logs, none of this container.
    UnknownContainer,
}

impl PodLogSource {
    /// Whether the pod runs here or left logs, and of which containers.
    pub fn lookup(&self, namespace: &str, pod: &str, container: &str) -> Lookup {
        let running = self
            .shared
            .pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&(namespace.to_owned(), pod.to_owned()));
        if running {
            return Lookup::Known;
        }
        match pod_dir(&self.logs_dir, namespace, pod) {
            None => Lookup::UnknownPod,
            Some(dir) if dir.join(format!("{container}.log")).is_file() => Lookup::Known,
            Some(_) => Lookup::UnknownContainer,
        }
    }

    /// Why a container has not started, as its pod's runtime says.
    fn waiting_reason(&self, namespace: &str, pod: &str, container: &str) -> Option<String> {
        self.shared
            .pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(namespace.to_owned(), pod.to_owned()))?
            .not_started
            .iter()
            .find(|(name, _)| name == container)
            .map(|(_, reason)| match reason.as_str() {
                // kubelet's words for these.
                "ErrImagePull" => "trying and failing to pull image".to_owned(),
                "ImagePullBackOff" => "image can't be pulled".to_owned(),
                other => other.to_owned(),
            })
    }
}

impl PodLogs for PodLogSource {
    fn logs(&self, request: PodLogRequest) -> Result<BoxStream<'static, Bytes>, String> {
        let container = request.container.as_deref().unwrap_or("");
        if request.previous {
            return Err(format!(
                "previous terminated container \"{container}\" in pod \"{}\" not found",
                request.pod
            ));
        }
        let Some(file) = log_file(
            &self.logs_dir,
            &request.namespace,
            &request.pod,
            request.container.as_deref(),
        ) else {
            let why = self
                .waiting_reason(&request.namespace, &request.pod, container)
                .unwrap_or_else(|| "ContainerCreating".to_owned());
            return Err(format!(
                "container \"{container}\" in pod \"{}\" is waiting to start: {why}",
                request.pod
            ));
        };
        let text = std::fs::read(&file).map_err(|e| format!("reading logs: {e}"))?;
        let offset = text.len() as u64;
        let first =
            Bytes::from(tail(&String::from_utf8_lossy(&text), request.tail_lines).to_owned());
        let head = futures::stream::once(async move { first });
        if !request.follow {
            return Ok(head.boxed());
        }
        let source = self.clone();
        let name = container.to_owned();
        let follow = futures::stream::unfold((file, offset), move |(file, offset)| {
            let source = source.clone();
            let (namespace, pod) = (request.namespace.clone(), request.pod.clone());
            let container = name.clone();
            async move {
                loop {
                    // Asked before reading: a line written after the read
                    // is still sent when the container ends just after.
                    let running = source.running(&namespace, &pod, &container);
                    let data = std::fs::read(&file).ok()?;
                    if (data.len() as u64) > offset {
                        let chunk = Bytes::copy_from_slice(&data[offset as usize..]);
                        return Some((chunk, (file, data.len() as u64)));
                    }
                    if !running {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        });
        Ok(head.chain(follow).boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", Some(2)), "b\nc\n");
        assert_eq!(tail("a\nb\nc", Some(1)), "c");
        assert_eq!(tail("a\nb\n", Some(5)), "a\nb\n");
        assert_eq!(tail("a\nb\n", None), "a\nb\n");
        assert_eq!(tail("a\nb\n", Some(0)), "");
    }
}
