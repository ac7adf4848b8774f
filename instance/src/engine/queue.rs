//! The queue as this process works it: the loop that claims executions and
//! drives them (at most `max_running` at once), the handoff of executions
//! this process creates already claimed, and waiting for one to end.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, broadcast, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Engine, EngineError, Inner, driver, retention, triggers};
use crate::execution::Execution;
use crate::store::Repository;

/// A claimed execution and the driver slot it takes.
pub(crate) type Handoff = (Execution, OwnedSemaphorePermit);

/// The end of an execution this process drives: `Some` once finished.
pub(crate) type End = watch::Sender<Option<Execution>>;

impl Engine {
    /// Claims and drives executions until `shutdown` is cancelled; then stops
    /// claiming, hands back unfinished executions and returns.
    pub async fn run(&self, shutdown: CancellationToken) {
        let inner = self.inner.clone();
        let stop = inner.shutdown.clone();
        let forward = tokio::spawn(async move {
            shutdown.cancelled().await;
            stop.cancel();
        });
        let schedules = tokio::spawn(triggers::run(inner.clone()));
        let retention = tokio::spawn(retention::run(inner.clone()));
        let (handoff, mut handed) = mpsc::unbounded_channel();
        inner.set_handoff(Some(handoff));
        let mut drivers = JoinSet::new();
        claim(&inner, &mut drivers, &mut handed).await;
        inner.set_handoff(None);
        // Handed over as the loop stopped: back to the queue for another
        // process (or a restart), as the drivers do with theirs.
        handed.close();
        while let Ok((execution, _slot)) = handed.try_recv() {
            inner.forget(&execution.id);
            let _ = inner.store.release_lease(&execution.id, &inner.owner).await;
        }
        while drivers.join_next().await.is_some() {}
        let _ = schedules.await;
        let _ = retention.await;
        forward.abort();
    }

    /// Waits until the execution is in a final state.
    pub async fn wait(&self, id: &str, timeout: Duration) -> Result<Execution, EngineError> {
        let deadline = Instant::now() + timeout;
        if let Some(end) = self.inner.end_of(id)
            && let Some(done) = wait_end(end, id, deadline).await?
        {
            return Ok(done);
        }
        let mut finished = self.inner.finished.subscribe();
        loop {
            let execution = self
                .inner
                .store
                .get_execution(id)
                .await?
                .ok_or_else(|| EngineError::ExecutionNotFound(id.into()))?;
            if execution.state.current.is_terminal() {
                return Ok(execution);
            }
            // Re-read when this process finishes it, or periodically for an
            // execution finished elsewhere (another replica).
            let tick = tokio::time::sleep(Duration::from_millis(250));
            tokio::pin!(tick);
            loop {
                tokio::select! {
                    event = finished.recv() => match event {
                        Ok((done, _)) if done == id => break,
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => tick.as_mut().await,
                    },
                    () = &mut tick => break,
                    () = tokio::time::sleep_until(deadline) => {
                        return Err(EngineError::Timeout(id.into()));
                    }
                }
            }
        }
    }
}

/// The end of an execution this process drives, as its driver wrote it
/// (nothing to read back): `None` when the driver stopped first (the
/// execution waits, or was handed back).
async fn wait_end(
    mut end: watch::Receiver<Option<Execution>>,
    id: &str,
    deadline: Instant,
) -> Result<Option<Execution>, EngineError> {
    loop {
        if let Some(done) = end.borrow_and_update().clone() {
            return Ok(Some(done));
        }
        tokio::select! {
            changed = end.changed() => {
                if changed.is_err() {
                    return Ok(end.borrow().clone());
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                return Err(EngineError::Timeout(id.into()));
            }
        }
    }
}

/// Claims executions while driver slots are free, and drives those handed
/// over, until shutdown.
async fn claim(
    inner: &Arc<Inner>,
    drivers: &mut JoinSet<()>,
    handed: &mut mpsc::UnboundedReceiver<Handoff>,
) {
    loop {
        let slot = tokio::select! {
            slot = inner.drive_slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return,
            },
            Some(handoff) = handed.recv() => {
                spawn_driver(drivers, inner, handoff);
                continue;
            }
            () = inner.shutdown.cancelled() => return,
        };
        let claimed = inner
            .store
            .claim_execution(&inner.owner, inner.config.lease)
            .await;
        let (pause, on_signal) = match claimed {
            Ok(Some(execution)) => {
                spawn_driver(drivers, inner, (execution, slot));
                continue;
            }
            Ok(None) => (inner.config.poll, true),
            Err(err) => {
                tracing::warn!(error = %err, "claiming work failed; retrying");
                (Duration::from_secs(1), false)
            }
        };
        drop(slot);
        if !idle(inner, drivers, handed, pause, on_signal).await {
            return;
        }
    }
}

/// Waits `pause` (or for a signal of new work, when `on_signal`), driving
/// what is handed over meanwhile: false on shutdown.
async fn idle(
    inner: &Arc<Inner>,
    drivers: &mut JoinSet<()>,
    handed: &mut mpsc::UnboundedReceiver<Handoff>,
    pause: Duration,
    on_signal: bool,
) -> bool {
    let sleep = tokio::time::sleep(pause);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            () = inner.work.notified(), if on_signal => return true,
            () = &mut sleep => return true,
            Some(handoff) = handed.recv() => spawn_driver(drivers, inner, handoff),
            () = inner.shutdown.cancelled() => return false,
        }
    }
}

fn spawn_driver(drivers: &mut JoinSet<()>, inner: &Arc<Inner>, (execution, slot): Handoff) {
    while drivers.try_join_next().is_some() {}
    let inner = inner.clone();
    drivers.spawn(async move {
        let id = execution.id.clone();
        let result = driver::drive(&inner, execution).await;
        inner.forget(&id);
        if let Err(err) = result {
            tracing::error!(execution = %id, error = %err, "driving the execution failed");
            let _ = inner.store.release_lease(&id, &inner.owner).await;
        }
        drop(slot);
    });
}

impl Inner {
    /// A driver slot and the way to the claim loop, when the loop runs and
    /// has a slot free: what an execution created here needs to be driven
    /// here at once.
    pub(super) fn free_slot(
        &self,
    ) -> Option<(mpsc::UnboundedSender<Handoff>, OwnedSemaphorePermit)> {
        if self.shutdown.is_cancelled() {
            return None;
        }
        let handoff = self.handoff.lock().ok()?.clone()?;
        let slot = self.drive_slots.clone().try_acquire_owned().ok()?;
        Some((handoff, slot))
    }

    fn set_handoff(&self, handoff: Option<mpsc::UnboundedSender<Handoff>>) {
        if let Ok(mut slot) = self.handoff.lock() {
            *slot = handoff;
        }
    }

    /// Lets [`Engine::wait`] learn the end of an execution this process
    /// drives from its driver.
    pub(super) fn watch_end(&self, id: &str) {
        if let Ok(mut ends) = self.ends.lock() {
            ends.insert(id.to_owned(), watch::Sender::new(None));
        }
    }

    fn end_of(&self, id: &str) -> Option<watch::Receiver<Option<Execution>>> {
        let ends = self.ends.lock().ok()?;
        ends.get(id).map(watch::Sender::subscribe)
    }

    /// Tells the waiters of an execution's end (see [`Inner::watch_end`]).
    pub(super) fn ended(&self, execution: &Execution) {
        if let Ok(mut ends) = self.ends.lock()
            && let Some(end) = ends.remove(&execution.id)
        {
            end.send_replace(Some(execution.clone()));
        }
    }
}
