//! Runs one container as a local process, as kubelet would: probes, restarts
//! with backoff, SIGTERM then SIGKILL on stop, output into a log file.
//!
//! Each process leads its own process group, and every signal goes to the
//! whole group, so children of the container (PostgreSQL's backends, a shell's
//! jobs) never outlive it. A guard kills the group if the supervisor is
//! dropped without being stopped, and where `setpriv` exists the process also
//! gets SIGKILL when the simulator itself dies.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use rustix::process::Signal;
use tokio::process::{Child, Command};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::postgres::{self, PostgresInit};
use super::probe::ProbeSpec;

mod group;
mod monitor;

use group::{GroupGuard, wait_group_gone};
pub use group::{group_alive, pid_alive, signal_group};
use monitor::monitor;

/// How a container is restarted after it exits (`spec.restartPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Always restart.
    Always,
    /// Restart after a non-zero exit.
    OnFailure,
    /// Never restart.
    Never,
}

impl RestartPolicy {
    /// Parses `spec.restartPolicy` (default `Always`).
    pub fn parse(value: Option<&str>) -> Self {
        match value {
            Some("OnFailure") => Self::OnFailure,
            Some("Never") => Self::Never,
            _ => Self::Always,
        }
    }
}

/// Restart backoff: the first restart is immediate, then `initial`, doubling
/// up to `max`; a container that ran for `reset_after` starts over.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Delay before the second restart.
    pub initial: Duration,
    /// Longest delay.
    pub max: Duration,
    /// Run time after which the backoff resets.
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(10),
            reset_after: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// The delay before restart number `n` (1-based) of a series.
    pub fn delay(&self, n: u32) -> Duration {
        if n <= 1 {
            return Duration::ZERO;
        }
        let factor = 1u32.checked_shl(n - 2).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// Work done before the main process starts.
#[derive(Debug, Clone)]
pub enum Prepare {
    /// Nothing.
    Nothing,
    /// The official PostgreSQL image's first-start initialisation.
    Postgres(Box<PostgresInit>),
}

/// Everything needed to run one container. Its `Debug` output names the
/// environment variables but never shows their values (they carry secrets).
#[derive(Clone)]
pub struct LaunchSpec {
    /// Container name (for messages).
    pub name: String,
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its whole environment.
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub workdir: Option<PathBuf>,
    /// `(uid, gid)` to run as, when not the simulator's own.
    pub run_as: Option<(u32, u32)>,
    /// Work before the first start of each run.
    pub prepare: Prepare,
    /// File that receives stdout and stderr.
    pub log_path: PathBuf,
    /// The signal that asks it to stop (the image's `STOPSIGNAL`).
    pub stop_signal: Signal,
    /// Time between the stop signal and SIGKILL.
    pub grace: Duration,
    /// Readiness probe.
    pub readiness: Option<ProbeSpec>,
    /// Liveness probe.
    pub liveness: Option<ProbeSpec>,
    /// Restart policy.
    pub restart: RestartPolicy,
    /// Restart backoff.
    pub backoff: Backoff,
    /// `terminationMessagePolicy: FallbackToLogsOnError`: after a failed
    /// run, the end of that run's log is the termination message.
    pub logs_on_error: bool,
}

impl std::fmt::Debug for LaunchSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaunchSpec")
            .field("name", &self.name)
            .field("program", &self.program)
            .field("args", &self.args.len())
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("workdir", &self.workdir)
            .field("run_as", &self.run_as)
            .field("prepare", &self.prepare)
            .field("log_path", &self.log_path)
            .field("grace", &self.grace)
            .field("readiness", &self.readiness)
            .field("liveness", &self.liveness)
            .field("restart", &self.restart)
            .finish_non_exhaustive()
    }
}

/// A container's observed state, in the shape of `ContainerStatus`.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerState {
    /// What it is doing now.
    pub current: RunState,
    /// How its previous run ended.
    pub last_termination: Option<Termination>,
    /// Restarts so far.
    pub restart_count: i32,
    /// Readiness.
    pub ready: bool,
}

/// `ContainerState` of the Kubernetes API.
#[derive(Debug, Clone, PartialEq)]
pub enum RunState {
    /// Not running; `reason` as kubelet names it.
    Waiting {
        /// E.g. `ContainerCreating`, `CrashLoopBackOff`.
        reason: String,
        /// Details.
        message: Option<String>,
    },
    /// Running as process `pid`.
    Running {
        /// Process id (also its process group id).
        pid: u32,
        /// Start time.
        started_at: Time,
    },
    /// Finished and not restarted.
    Terminated(Termination),
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Termination {
    /// Exit code (128 + signal when killed by one).
    pub exit_code: i32,
    /// Signal that killed it.
    pub signal: Option<i32>,
    /// `Completed` or `Error`.
    pub reason: String,
    /// Details.
    pub message: Option<String>,
    /// Start time.
    pub started_at: Option<Time>,
    /// End time.
    pub finished_at: Time,
}

/// The current time at the API's one-second resolution.
pub fn now() -> Time {
    let ts = k8s_openapi::jiff::Timestamp::now();
    Time(k8s_openapi::jiff::Timestamp::from_second(ts.as_second()).unwrap_or(ts))
}

/// A running container supervisor. Dropping it kills the process group;
/// [`Supervisor::stop`] stops it gracefully.
#[derive(Debug)]
pub struct Supervisor {
    state: watch::Receiver<ContainerState>,
    /// `Some(grace)` once a stop was asked, the grace capped by the
    /// container's own.
    stop: watch::Sender<Option<Duration>>,
    task: Option<JoinHandle<()>>,
}

impl Supervisor {
    /// Starts supervising; `changed` is notified on every state change.
    pub fn spawn(spec: LaunchSpec, changed: Arc<Notify>) -> Self {
        let (state_tx, state) = watch::channel(ContainerState {
            current: RunState::Waiting {
                reason: "ContainerCreating".to_owned(),
                message: None,
            },
            last_termination: None,
            restart_count: 0,
            ready: false,
        });
        let (stop, stop_rx) = watch::channel(None);
        let task = tokio::spawn(supervise(spec, state_tx, stop_rx, changed));
        Self {
            state,
            stop,
            task: Some(task),
        }
    }

    /// The current state.
    pub fn state(&self) -> ContainerState {
        self.state.borrow().clone()
    }

    /// A receiver that sees every state change.
    pub fn subscribe(&self) -> watch::Receiver<ContainerState> {
        self.state.clone()
    }

    /// Asks the container to stop (as [`Supervisor::stop`]) without waiting:
    /// its state turns `Terminated` once its process group is gone.
    pub fn request_stop(&self) {
        let _ = self.stop.send(Some(Duration::MAX));
    }

    /// Stops the container (SIGTERM, SIGKILL after the grace period) and waits
    /// until its process group is gone.
    pub async fn stop(self) {
        self.stop_within(Duration::MAX).await;
    }

    /// Stops the container as [`Supervisor::stop`] does, with at most
    /// `grace` between the stop signal and SIGKILL (a deletion's
    /// `gracePeriodSeconds`).
    pub async fn stop_within(mut self, grace: Duration) {
        let _ = self.stop.send(Some(grace));
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Resolves once a stop was requested.
async fn stopped(stop: &mut watch::Receiver<Option<Duration>>) {
    let _ = stop.wait_for(Option::is_some).await;
}

enum Outcome {
    Exited(std::process::ExitStatus),
    Stopped,
    LivenessFailed(String),
}

struct Publisher {
    tx: watch::Sender<ContainerState>,
    changed: Arc<Notify>,
}

impl Publisher {
    fn update(&self, f: impl FnOnce(&mut ContainerState)) {
        let changed = self.tx.send_if_modified(|state| {
            let before = state.clone();
            f(state);
            *state != before
        });
        if changed {
            self.changed.notify_one();
        }
    }
}

async fn supervise(
    spec: LaunchSpec,
    state: watch::Sender<ContainerState>,
    mut stop: watch::Receiver<Option<Duration>>,
    changed: Arc<Notify>,
) {
    let publish = Publisher { tx: state, changed };
    let mut series = 0u32;
    loop {
        let started = Instant::now();
        let outcome = run_once(&spec, &publish, &mut stop).await;
        let (termination, restart) = match outcome {
            RunResult::Stopped(termination) => {
                publish.update(|s| {
                    s.ready = false;
                    s.current = RunState::Terminated(termination);
                });
                return;
            }
            RunResult::Ended(termination) => {
                let restart = match spec.restart {
                    RestartPolicy::Always => true,
                    RestartPolicy::OnFailure => termination.exit_code != 0,
                    RestartPolicy::Never => false,
                };
                (termination, restart)
            }
        };
        if !restart {
            publish.update(|s| {
                s.ready = false;
                s.current = RunState::Terminated(termination);
            });
            return;
        }
        if started.elapsed() >= spec.backoff.reset_after {
            series = 0;
        }
        series += 1;
        let delay = spec.backoff.delay(series);
        publish.update(|s| {
            s.ready = false;
            s.restart_count += 1;
            s.last_termination = Some(termination);
            s.current = RunState::Waiting {
                reason: if delay.is_zero() {
                    "ContainerCreating".to_owned()
                } else {
                    "CrashLoopBackOff".to_owned()
                },
                message: (!delay.is_zero()).then(|| {
                    format!(
                        "back-off {}s restarting failed container={}",
                        delay.as_secs_f32(),
                        spec.name
                    )
                }),
            };
        });
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stopped(&mut stop) => {
                publish.update(|s| {
                    s.current = RunState::Waiting { reason: "Terminated".to_owned(), message: None };
                });
                return;
            }
        }
    }
}

enum RunResult {
    /// Stopped on request; do not restart.
    Stopped(Termination),
    /// Ended on its own or by a failed liveness probe.
    Ended(Termination),
}

fn open_log(path: &Path) -> std::io::Result<File> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    File::options().create(true).append(true).open(path)
}

fn failed_start(message: String) -> Termination {
    Termination {
        exit_code: 128,
        signal: None,
        reason: "StartError".to_owned(),
        message: Some(message),
        started_at: None,
        finished_at: now(),
    }
}

async fn run_once(
    spec: &LaunchSpec,
    publish: &Publisher,
    stop: &mut watch::Receiver<Option<Duration>>,
) -> RunResult {
    let log = match open_log(&spec.log_path) {
        Ok(log) => log,
        Err(e) => {
            return RunResult::Ended(failed_start(format!(
                "opening log file {}: {e}",
                spec.log_path.display()
            )));
        }
    };
    if let Prepare::Postgres(init) = &spec.prepare {
        tokio::select! {
            result = postgres::prepare(init, &log) => {
                if let Err(e) = result {
                    return RunResult::Ended(failed_start(e.to_string()));
                }
            }
            () = stopped(stop) => {
                return RunResult::Stopped(failed_start("stopped during initialisation".to_owned()));
            }
        }
    }
    let log_start = log.metadata().map_or(0, |m| m.len());
    let mut child = match spawn(spec, &log) {
        Ok(child) => child,
        Err(e) => {
            return RunResult::Ended(failed_start(format!(
                "starting {}: {e}",
                spec.program.display()
            )));
        }
    };
    let pid = child.id().unwrap_or_default();
    let guard = GroupGuard(Some(pid));
    let started_at = now();
    publish.update(|s| {
        s.current = RunState::Running {
            pid,
            started_at: started_at.clone(),
        };
        s.ready = spec.readiness.is_none();
    });

    let outcome = monitor(spec, &mut child, publish, stop).await;
    let status = match &outcome {
        Outcome::Exited(status) => Some(*status),
        Outcome::Stopped | Outcome::LivenessFailed(_) => {
            publish.update(|s| s.ready = false);
            guard.signal(spec.stop_signal);
            let grace = stop.borrow().unwrap_or(Duration::MAX).min(spec.grace);
            match tokio::time::timeout(grace, child.wait()).await {
                Ok(status) => status.ok(),
                Err(_) => {
                    guard.signal(Signal::KILL);
                    child.wait().await.ok()
                }
            }
        }
    };
    // Whatever the main process left behind in its group goes with it, and
    // the run only ends once the group is gone (a killed process lingers
    // until the kernel has torn it down).
    drop(guard);
    wait_group_gone(pid, Duration::from_secs(5)).await;
    let mut termination = termination(status, started_at, &outcome);
    if spec.logs_on_error && termination.exit_code != 0 && termination.message.is_none() {
        termination.message = log_tail(&spec.log_path, log_start);
    }
    match outcome {
        Outcome::Stopped => RunResult::Stopped(termination),
        Outcome::Exited(_) | Outcome::LivenessFailed(_) => RunResult::Ended(termination),
    }
}

/// The end of a run's log as kubelet keeps it for a termination message:
/// its last 80 lines, at most 2048 bytes; `None` when it wrote nothing.
fn log_tail(path: &Path, from: u64) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    let run = bytes.get(usize::try_from(from).ok()?..)?;
    let text = String::from_utf8_lossy(run);
    let lines: Vec<&str> = text.trim_end().lines().collect();
    let tail = lines[lines.len().saturating_sub(80)..].join("\n");
    let mut start = tail.len().saturating_sub(2048);
    while !tail.is_char_boundary(start) {
        start += 1;
    }
    let tail = tail[start..].trim();
    (!tail.is_empty()).then(|| tail.to_owned())
}

fn termination(
    status: Option<std::process::ExitStatus>,
    started_at: Time,
    outcome: &Outcome,
) -> Termination {
    use std::os::unix::process::ExitStatusExt;
    let signal = status.and_then(|s| s.signal());
    let exit_code = match (status.and_then(|s| s.code()), signal) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 137,
    };
    Termination {
        exit_code,
        signal,
        reason: if exit_code == 0 { "Completed" } else { "Error" }.to_owned(),
        message: match outcome {
            Outcome::LivenessFailed(why) => Some(format!("liveness probe failed: {why}")),
            _ => None,
        },
        started_at: Some(started_at),
        finished_at: now(),
    }
}

fn spawn(spec: &LaunchSpec, log: &File) -> std::io::Result<Child> {
    const SETPRIV: &str = "/usr/bin/setpriv";
    let mut command = if Path::new(SETPRIV).is_file() {
        let mut c = Command::new(SETPRIV);
        c.arg("--pdeathsig")
            .arg("KILL")
            .arg("--")
            .arg(&spec.program);
        c
    } else {
        Command::new(&spec.program)
    };
    command
        .args(&spec.args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log.try_clone()?))
        .process_group(0)
        .kill_on_drop(true);
    if !spec.env.iter().any(|(k, _)| k == "PATH") {
        command.env("PATH", "/usr/local/bin:/usr/bin:/bin");
    }
    if let Some(dir) = &spec.workdir {
        command.current_dir(dir);
    }
    if let Some((uid, gid)) = spec.run_as {
        command.uid(uid).gid(gid);
    }
    command.spawn()
}

#[cfg(test)]
mod tests;
