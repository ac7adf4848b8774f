//! A pod's life cycle on the node, as kubelet runs it: init containers one
//! after the other (each must complete before the next starts; under
//! `restartPolicy: Never` a failed one fails the pod), then the
//! containers together; `activeDeadlineSeconds` ends the pod
//! (`DeadlineExceeded`), stopping what runs.

use std::sync::Arc;
use std::time::Duration;

use super::kubelet::{PodRuntime, Prepared, Slot};
use super::process::{RunState, Supervisor, now};

/// The message kubelet gives a pod it ended at its active deadline.
pub const DEADLINE_MESSAGE: &str = "Pod was active on the node longer than the specified deadline";

/// Starts a prepared container: a supervised process, or an instant one.
fn start(prepared: Prepared, changed: &Arc<tokio::sync::Notify>) -> Slot {
    let Prepared {
        name,
        image,
        launch,
    } = prepared;
    match launch {
        None => Slot::Instant {
            name,
            image,
            started_at: now(),
        },
        Some(spec) => Slot::Process {
            name,
            image,
            supervisor: Supervisor::spawn(spec, changed.clone()),
        },
    }
}

/// Whether an init container completed (an instant one completes at once).
fn completed(slot: &Slot) -> bool {
    match slot {
        Slot::Instant { .. } => true,
        Slot::Process { supervisor, .. } => matches!(
            supervisor.state().current,
            RunState::Terminated(ref t) if t.exit_code == 0
        ),
    }
}

/// The exit code of a container that ended for good (its supervisor
/// reports `Terminated` only when it will not run it again).
fn ended_for_good(slot: &Slot) -> Option<i32> {
    let Slot::Process { supervisor, .. } = slot else {
        return None;
    };
    match supervisor.state().current {
        RunState::Terminated(t) => Some(t.exit_code),
        _ => None,
    }
}

impl PodRuntime {
    /// Starts what may start now: the next init container once the one
    /// before it completed, the containers once all init containers did.
    /// True when something started.
    pub fn advance(&mut self) -> bool {
        if self.ended.is_some() || !self.waiting.is_empty() {
            return false;
        }
        let mut started = false;
        while self.init_slots.last().is_none_or(completed) {
            if let Some(next) = self.pending_init.pop_front() {
                self.init_slots.push(start(next, &self.changed));
                started = true;
                continue;
            }
            if !self.pending.is_empty() {
                let pending = std::mem::take(&mut self.pending);
                self.slots = pending
                    .into_iter()
                    .map(|p| start(p, &self.changed))
                    .collect();
                started = true;
            }
            break;
        }
        started
    }

    /// Whether every init container completed.
    pub fn initialized(&self) -> bool {
        self.pending_init.is_empty() && self.init_slots.iter().all(completed)
    }

    /// Whether an init container failed for good (`restartPolicy: Never`).
    pub fn init_failed(&self) -> bool {
        self.init_slots
            .iter()
            .any(|s| ended_for_good(s).is_some_and(|code| code != 0))
    }

    /// `Succeeded` or `Failed` once the pod is over, else `None`.
    pub fn final_phase(&self) -> Option<&'static str> {
        if self.ended.is_some() || self.init_failed() {
            return Some("Failed");
        }
        if !self.initialized() || !self.pending.is_empty() || self.slots.is_empty() {
            return None;
        }
        let codes: Option<Vec<i32>> = self.slots.iter().map(ended_for_good).collect();
        let codes = codes?;
        Some(if codes.iter().all(|c| *c == 0) {
            "Succeeded"
        } else {
            "Failed"
        })
    }

    /// Ends the pod once it ran longer than `deadline` seconds
    /// (`activeDeadlineSeconds`): nothing more starts, what runs is
    /// stopped. True when it ended it now.
    pub fn check_deadline(&mut self, deadline: Option<i64>) -> bool {
        let Some(deadline) = deadline.and_then(|d| u64::try_from(d).ok()) else {
            return false;
        };
        if self.ended.is_some()
            || self.final_phase().is_some()
            || self.began.elapsed() < std::time::Duration::from_secs(deadline)
        {
            return false;
        }
        self.ended = Some(("DeadlineExceeded".to_owned(), DEADLINE_MESSAGE.to_owned()));
        self.pending_init.clear();
        self.pending.clear();
        for slot in self.init_slots.iter().chain(&self.slots) {
            if let Slot::Process { supervisor, .. } = slot {
                supervisor.request_stop();
            }
        }
        true
    }

    /// Stops every container (gracefully, in parallel) and removes the pod's
    /// scratch directories.
    pub async fn stop(self) {
        self.stop_within(Duration::MAX).await;
    }

    /// Stops as [`PodRuntime::stop`] does, with at most `grace` before
    /// SIGKILL (a deletion's grace period).
    pub async fn stop_within(self, grace: Duration) {
        let stops = self
            .init_slots
            .into_iter()
            .chain(self.slots)
            .filter_map(|slot| match slot {
                Slot::Process { supervisor, .. } => Some(supervisor.stop_within(grace)),
                Slot::Instant { .. } => None,
            });
        futures::future::join_all(stops).await;
        let _ = std::fs::remove_dir_all(&self.dir);
        super::pgsocket::remove_links(&self.links);
    }

    /// Whether the containers still wait to be created.
    pub fn is_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// Whether any container is (or was) a process.
    pub fn has_processes(&self) -> bool {
        self.init_slots
            .iter()
            .chain(&self.slots)
            .any(|s| matches!(s, Slot::Process { .. }))
    }

    /// The process ids of the running containers.
    pub fn pids(&self) -> Vec<u32> {
        self.init_slots
            .iter()
            .chain(&self.slots)
            .filter_map(|s| match s {
                Slot::Process { supervisor, .. } => match supervisor.state().current {
                    RunState::Running { pid, .. } => Some(pid),
                    _ => None,
                },
                Slot::Instant { .. } => None,
            })
            .collect()
    }

    /// Containers that ended for good: their logs are complete.
    pub fn finished_containers(&self) -> Vec<String> {
        self.init_slots
            .iter()
            .chain(&self.slots)
            .filter_map(|slot| match slot {
                Slot::Process { name, .. } if ended_for_good(slot).is_some() => Some(name.clone()),
                _ => None,
            })
            .collect()
    }

    /// Containers not started yet and why, as the log subresource says it
    /// (`PodInitializing`, `ContainerCreating`, or the waiting reason).
    pub fn not_started(&self) -> Vec<(String, String)> {
        let waiting = self.waiting.iter().map(|(n, r, _)| (n.clone(), r.clone()));
        let init = self
            .pending_init
            .iter()
            .map(|p| (p.name.clone(), "PodInitializing".to_owned()));
        let before = if self.init_names.is_empty() {
            "ContainerCreating"
        } else {
            "PodInitializing"
        };
        let main = self
            .pending
            .iter()
            .map(|p| (p.name.clone(), before.to_owned()));
        waiting.chain(init).chain(main).collect()
    }
}
