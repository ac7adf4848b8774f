//! Base backups started over HTTP: one at a time, in a background task
//! (the in-process `base-backup`, [`crate::base::base_backup`]); their
//! phase is kept in memory while the store's `backup.json` stays the truth
//! for completed ones.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use object_store::ObjectStore;
use serde::Serialize;
use tokio::task::AbortHandle;

use crate::base::{self, BaseBackupArgs};
use crate::catalog::{self, BackupInfo};
use crate::layout::{BackupId, Layout};
use crate::settings::Settings;

/// Finished backups remembered (for `GET /backups/{id}` of failed ones).
const REMEMBERED: usize = 32;

/// How a backup is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Phase {
    /// Being taken.
    Running,
    /// `backup.json` is in the store.
    Completed,
    /// It failed; see the message.
    Failed,
}

/// `GET /backups/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupView {
    /// The backup id.
    pub id: String,
    /// Its phase.
    pub phase: Phase,
    /// What `backup.json` says (completed ones).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<BackupInfo>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The last failure (`/status` → `backup.lastError`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupFailure {
    /// The backup id.
    pub id: String,
    /// When it failed.
    pub time: jiff::Timestamp,
    /// Why (credentials redacted).
    pub message: String,
}

/// `/status` → `backup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupSummary {
    /// The id of the backup being taken.
    pub running: Option<String>,
    /// The newest complete backup known (taken here, or from the catalog).
    pub last: Option<BackupInfo>,
    /// The last failure.
    pub last_error: Option<BackupFailure>,
}

/// What the runner needs to take a backup.
#[derive(Debug, Clone)]
pub struct BackupConfig {
    /// The store settings (loaded once).
    pub settings: Arc<Settings>,
    /// The arguments of an in-process `base-backup` (id and name set per run).
    pub args: BaseBackupArgs,
}

#[derive(Debug, Default)]
struct Inner {
    running: Option<(BackupId, AbortHandle)>,
    finished: VecDeque<(BackupId, Result<BackupInfo, String>)>,
    last: Option<BackupInfo>,
    last_error: Option<BackupFailure>,
}

/// The runner: one backup at a time.
#[derive(Debug)]
pub struct Backups {
    config: BackupConfig,
    store: Arc<dyn ObjectStore>,
    layout: Layout,
    inner: Mutex<Inner>,
}

impl Backups {
    /// A runner reading the catalog through `store`.
    pub fn new(config: BackupConfig, store: Arc<dyn ObjectStore>) -> Backups {
        let layout = Layout::new(config.settings.prefix.as_deref());
        Backups {
            config,
            store,
            layout,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts backup `id` in the background; `Err(running id)` while one runs.
    pub fn start(self: &Arc<Self>, id: BackupId, name: Option<String>) -> Result<(), BackupId> {
        let mut inner = self.lock();
        if let Some((running, _)) = &inner.running {
            return Err(*running);
        }
        let mut args = self.config.args.clone();
        args.id = Some(id);
        args.name = name;
        let runner = Arc::clone(self);
        let task = tokio::spawn(async move {
            let settings = &runner.config.settings;
            let result = base::base_backup(settings, &args)
                .await
                .map_err(|e| settings.redact_error(&e));
            runner.finish(id, result);
        });
        inner.running = Some((id, task.abort_handle()));
        eprintln!("atoll-backup agent: base backup {id} started");
        Ok(())
    }

    fn finish(&self, id: BackupId, result: Result<BackupInfo, String>) {
        match &result {
            Ok(info) => eprintln!(
                "atoll-backup agent: base backup {id} completed ({} bytes, WAL {}..{})",
                info.size, info.begin_wal, info.end_wal
            ),
            Err(message) => eprintln!("atoll-backup agent: base backup {id} failed: {message}"),
        }
        let mut inner = self.lock();
        if inner.running.as_ref().is_some_and(|(r, _)| *r == id) {
            inner.running = None;
        }
        match &result {
            Ok(info) => note_last(&mut inner.last, info),
            Err(message) => {
                inner.last_error = Some(BackupFailure {
                    id: id.to_string(),
                    time: jiff::Timestamp::now(),
                    message: message.clone(),
                });
            }
        }
        inner.finished.retain(|(known, _)| *known != id);
        if inner.finished.len() == REMEMBERED {
            inner.finished.pop_front();
        }
        inner.finished.push_back((id, result));
    }

    /// Stops a running backup (shutdown): its pg_basebackup is killed and
    /// no `backup.json` is written, so the catalog does not list it.
    pub fn abort(&self) {
        if let Some((id, task)) = self.lock().running.take() {
            task.abort();
            eprintln!("atoll-backup agent: base backup {id} aborted by shutdown");
        }
    }

    /// For `/status`.
    pub fn summary(&self) -> BackupSummary {
        let inner = self.lock();
        BackupSummary {
            running: inner.running.as_ref().map(|(id, _)| id.to_string()),
            last: inner.last.clone(),
            last_error: inner.last_error.clone(),
        }
    }

    /// `GET /backups/{id}`: `Ok(None)` when unknown; `Err` (redacted) when
    /// the store cannot be read and memory does not know it either.
    pub async fn view(&self, id: BackupId) -> Result<Option<BackupView>, String> {
        let remembered = {
            let inner = self.lock();
            if inner.running.as_ref().is_some_and(|(r, _)| *r == id) {
                return Ok(Some(view(id, Phase::Running, None, None)));
            }
            inner
                .finished
                .iter()
                .find(|(known, _)| *known == id)
                .map(|(_, result)| result.clone())
        };
        let uid = &self.config.settings.tenant_uid;
        let stored = catalog::get(self.store.as_ref(), &self.layout, uid, id).await;
        Ok(match (stored, remembered) {
            (Ok(Some(info)), _) => Some(view(id, Phase::Completed, Some(info), None)),
            (_, Some(Err(message))) => Some(view(id, Phase::Failed, None, Some(message))),
            // Completed here but gone from the store (retention): unknown.
            (Ok(None), _) => None,
            (Err(_), Some(Ok(info))) => Some(view(id, Phase::Completed, Some(info), None)),
            (Err(e), None) => return Err(self.config.settings.redact_error(&e)),
        })
    }

    /// Loads the newest complete backup from the store's catalog (retrying
    /// every `every` until the store answers), so that `/status` knows it
    /// after a restart of the agent.
    pub async fn load_last(&self, every: std::time::Duration) {
        let uid = &self.config.settings.tenant_uid;
        loop {
            match catalog::list(self.store.as_ref(), &self.layout, uid).await {
                Ok(backups) => {
                    if let Some(newest) = catalog::latest(&backups) {
                        note_last(&mut self.lock().last, newest);
                    }
                    return;
                }
                Err(e) => {
                    let message = self.config.settings.redact_error(&e);
                    eprintln!("atoll-backup agent: cannot read the backup catalog yet: {message}");
                }
            }
            tokio::time::sleep(every).await;
        }
    }
}

/// Keeps the newer of `last` and `info` (by end time, then id).
fn note_last(last: &mut Option<BackupInfo>, info: &BackupInfo) {
    let newer = last
        .as_ref()
        .is_none_or(|l| (&info.end_time, &info.id) >= (&l.end_time, &l.id));
    if newer {
        *last = Some(info.clone());
    }
}

fn view(
    id: BackupId,
    phase: Phase,
    info: Option<BackupInfo>,
    message: Option<String>,
) -> BackupView {
    BackupView {
        id: id.to_string(),
        phase,
        info,
        message,
    }
}

/// Whether `name` is a valid Kubernetes object name (DNS subdomain), as a
/// `TenantBackup`'s is.
pub fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let edge = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    (1..=253).contains(&bytes.len())
        && edge(bytes.first())
        && edge(bytes.last())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'.')
}

#[cfg(test)]
#[path = "backups_tests.rs"]
mod tests;
