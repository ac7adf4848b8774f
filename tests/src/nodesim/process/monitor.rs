//! Watching a running container: its readiness and liveness probes, with
//! kubelet's thresholds, until it exits or is stopped.

use std::time::Duration;

use tokio::process::Child;
use tokio::sync::watch;

use super::{LaunchSpec, Outcome, Publisher, stopped};
use crate::nodesim::probe::ProbeSpec;

/// Probe bookkeeping with kubelet's thresholds.
struct ProbeState {
    spec: ProbeSpec,
    next: tokio::time::Instant,
    successes: u32,
    failures: u32,
}

impl ProbeState {
    fn new(spec: &ProbeSpec) -> Self {
        Self {
            next: tokio::time::Instant::now() + spec.initial_delay,
            spec: spec.clone(),
            successes: 0,
            failures: 0,
        }
    }

    /// Runs the probe; `Some(passing)` when a threshold was crossed.
    async fn run(&mut self) -> (Option<bool>, Option<String>) {
        self.next = tokio::time::Instant::now() + self.spec.period;
        match self.spec.check().await {
            Ok(()) => {
                self.failures = 0;
                self.successes += 1;
                (
                    (self.successes >= self.spec.success_threshold).then_some(true),
                    None,
                )
            }
            Err(why) => {
                self.successes = 0;
                self.failures += 1;
                (
                    (self.failures >= self.spec.failure_threshold).then_some(false),
                    Some(why),
                )
            }
        }
    }
}

async fn sleep_until(probe: &Option<ProbeState>) {
    match probe {
        Some(p) => tokio::time::sleep_until(p.next).await,
        None => std::future::pending().await,
    }
}

pub(super) async fn monitor(
    spec: &LaunchSpec,
    child: &mut Child,
    publish: &Publisher,
    stop: &mut watch::Receiver<Option<Duration>>,
) -> Outcome {
    let mut readiness = spec.readiness.as_ref().map(ProbeState::new);
    let mut liveness = spec.liveness.as_ref().map(ProbeState::new);
    loop {
        tokio::select! {
            status = child.wait() => {
                return match status {
                    Ok(status) => Outcome::Exited(status),
                    Err(_) => Outcome::Stopped,
                };
            }
            () = stopped(stop) => return Outcome::Stopped,
            () = sleep_until(&readiness) => {
                if let Some(probe) = readiness.as_mut()
                    && let (Some(passing), _) = probe.run().await
                {
                    publish.update(|s| s.ready = passing);
                }
            }
            () = sleep_until(&liveness) => {
                if let Some(probe) = liveness.as_mut()
                    && let (Some(false), why) = probe.run().await
                {
                    return Outcome::LivenessFailed(why.unwrap_or_default());
                }
            }
        }
    }
}
