//! What the operator process remembers of each backed-up tenant between
//! reconciles, so a Tenant's frequent reconciles do not list the store or
//! ask the agent every time. Losing it (a restart) only costs requests.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use atoll_backup::catalog::{self, BackupInfo};
use atoll_backup::dump_catalog::{self, DumpInfo};
use atoll_crds::{BackupPhase, TenantBackup};
use kube::Client;

use super::access::{self, TenantStore};
use super::agent_client::AgentStatus;

/// How long a listing of the store is reused while no backup completes.
const CATALOG_FOR: Duration = Duration::from_secs(300);
/// How long an opened store is reused (a changed Secret is read after it).
const STORE_FOR: Duration = Duration::from_secs(300);
/// How long an agent report is reused: less than
/// [`super::status::RECHECK_UNSETTLED`], so each of those looks asks again.
const AGENT_FOR: Duration = Duration::from_secs(10);

#[derive(Clone, Default)]
struct Track {
    store: Option<(Instant, TenantStore)>,
    catalog: Option<(Instant, usize, Result<Vec<BackupInfo>, String>)>,
    dumps: Option<(Instant, usize, Result<Vec<DumpInfo>, String>)>,
    agent: Option<(Instant, Result<Option<AgentStatus>, String>)>,
    registered: bool,
}

/// The backup side's shared state: an HTTP client for the agents and
/// what is remembered per tenant uid.
#[derive(Default)]
pub struct Backups {
    http: reqwest::Client,
    tracks: Mutex<HashMap<String, Track>>,
}

impl std::fmt::Debug for Backups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backups").finish_non_exhaustive()
    }
}

fn completed(backups: &[TenantBackup]) -> usize {
    backups
        .iter()
        .filter(|b| b.status.as_ref().and_then(|s| s.phase) == Some(BackupPhase::Completed))
        .count()
}

impl Backups {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Track>> {
        self.tracks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The HTTP client for agents.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Forgets a tenant (no backups any more, or deleted).
    pub fn forget(&self, uid: &str) {
        self.lock().remove(uid);
    }

    /// Whether the tenant's registration was written by this process; marks it.
    pub fn first_registration(&self, uid: &str) -> bool {
        let mut tracks = self.lock();
        let track = tracks.entry(uid.to_owned()).or_default();
        !std::mem::replace(&mut track.registered, true)
    }

    /// Undoes [`Backups::first_registration`] after a failed write.
    pub fn registration_failed(&self, uid: &str) {
        if let Some(track) = self.lock().get_mut(uid) {
            track.registered = false;
        }
    }

    /// Drops the cached listing (after a backup or retention changed it).
    pub fn invalidate_catalog(&self, uid: &str) {
        if let Some(track) = self.lock().get_mut(uid) {
            track.catalog = None;
            track.dumps = None;
        }
    }

    /// The store of the tenant `uid` in `namespace`, from its
    /// `backup-object-store` Secret (read again every few minutes).
    pub async fn store(
        &self,
        client: &Client,
        namespace: &str,
        uid: &str,
    ) -> Result<Option<TenantStore>, String> {
        let cached = self.lock().get(uid).and_then(|t| t.store.clone());
        if let Some((at, store)) = cached
            && at.elapsed() < STORE_FOR
        {
            return Ok(Some(store));
        }
        let opened = access::open_store(client, namespace).await?;
        // A Secret of another uid (a re-created Tenant) is not this one's.
        let opened = opened.filter(|store| store.uid() == uid);
        if let Some(store) = &opened {
            self.lock().entry(uid.to_owned()).or_default().store =
                Some((Instant::now(), store.clone()));
        }
        Ok(opened)
    }

    /// The tenant's complete base backups, listed again when a TenantBackup
    /// completed since, or every few minutes; `Err` is redacted text.
    pub async fn catalog(
        &self,
        store: &TenantStore,
        backups: &[TenantBackup],
    ) -> Result<Vec<BackupInfo>, String> {
        let uid = store.uid().to_owned();
        let done = completed(backups);
        let cached = self.lock().get(&uid).and_then(|t| t.catalog.clone());
        if let Some((at, count, result)) = cached
            && count == done
            && at.elapsed() < CATALOG_FOR
        {
            return result;
        }
        let result = catalog::list(store.store.as_ref(), &store.layout, &uid)
            .await
            .map_err(|e| store.redact(&e));
        self.lock().entry(uid).or_default().catalog = Some((Instant::now(), done, result.clone()));
        result
    }

    /// The External tenant's complete dumps, cached as [`Backups::catalog`].
    pub async fn dumps(
        &self,
        store: &TenantStore,
        backups: &[TenantBackup],
    ) -> Result<Vec<DumpInfo>, String> {
        let uid = store.uid().to_owned();
        let done = completed(backups);
        let cached = self.lock().get(&uid).and_then(|t| t.dumps.clone());
        if let Some((at, count, result)) = cached
            && count == done
            && at.elapsed() < CATALOG_FOR
        {
            return result;
        }
        let result = dump_catalog::list(store.store.as_ref(), &store.layout, &uid)
            .await
            .map_err(|e| store.redact(&e));
        self.lock().entry(uid).or_default().dumps = Some((Instant::now(), done, result.clone()));
        result
    }

    /// The agent's `/status` (`Ok(None)`: the pod has no IP or token yet).
    pub async fn agent_status(
        &self,
        client: &Client,
        namespace: &str,
        uid: &str,
    ) -> Result<Option<AgentStatus>, String> {
        let cached = self.lock().get(uid).and_then(|t| t.agent.clone());
        if let Some((at, result)) = cached
            && at.elapsed() < AGENT_FOR
        {
            return result;
        }
        let result = match access::agent(client, &self.http, namespace).await {
            Ok(Some(agent)) => agent.status().await.map(Some).map_err(|e| e.to_string()),
            Ok(None) => Ok(None),
            Err(error) => Err(error),
        };
        self.lock().entry(uid.to_owned()).or_default().agent =
            Some((Instant::now(), result.clone()));
        result
    }
}
