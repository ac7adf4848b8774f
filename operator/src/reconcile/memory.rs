//! What this operator process remembers between reconciles of a Tenant:
//! one map, keyed by the Tenant's uid, forgotten when the Tenant is gone.
//! Everything here can be lost (a restart starts empty): it only saves API
//! calls and pushes to identity, never decides an outcome.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::build::DatabaseCredentials;
use crate::identity::TenantRecord;
use crate::status::IdentityState;

/// How long a full apply is trusted before the next reconcile applies
/// everything again (and so repairs hand edits to children no watch reports).
pub const REAPPLY_AFTER: Duration = Duration::from_secs(300);

/// A full apply of a Tenant's objects by this process.
#[derive(Clone)]
pub struct Applied {
    /// Digest of the objects applied.
    pub fingerprint: u64,
    /// The database password they carry (read from the Secret once).
    pub password: String,
    /// The backup setup they carry, with where its credentials came from.
    pub backup: Option<super::backup::RememberedBackup>,
    /// Generations of the StatefulSet and Deployment as applied.
    pub workloads: [Option<i64>; 2],
    /// When.
    pub at: Instant,
}

impl Applied {
    /// Whether it is recent enough to skip applying again.
    pub fn fresh(&self) -> bool {
        self.at.elapsed() < REAPPLY_AFTER
    }
}

/// What is remembered of one Tenant.
#[derive(Clone, Default)]
pub struct TenantMemory {
    /// Consecutive failed reconciles, for exponential backoff.
    pub failures: u32,
    /// The last full apply.
    pub applied: Option<Applied>,
    /// The last record identity accepted, so an unchanged one is not pushed
    /// again.
    pub registered: Option<TenantRecord>,
    /// Identity's answer to the last push.
    pub identity: Option<IdentityState>,
    /// The External database as provisioned by this process, so the shared
    /// server is not visited on every resync.
    pub provisioned: Option<DatabaseCredentials>,
    /// Why the Tenant's backups are not wired although it wants them
    /// (`spec.backup` enabled on a Dedicated database), for its status.
    pub backup_unavailable: Option<String>,
    /// The source and backup `spec.restore` resolved to, until the status
    /// holds them; and the restore's state, for this pass's status.
    pub restore_resolved: Option<crate::restore::Resolved>,
    /// The restore's state as this pass observed it.
    pub restore: Option<crate::restore::RestoreView>,
}

/// Every Tenant's memory.
#[derive(Default)]
pub struct Memory {
    tenants: Mutex<HashMap<String, TenantMemory>>,
}

impl std::fmt::Debug for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memory")
            .field("tenants", &self.lock().len())
            .finish()
    }
}

impl Memory {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, TenantMemory>> {
        self.tenants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A copy of what is remembered of the Tenant with this uid.
    pub fn get(&self, uid: &str) -> TenantMemory {
        self.lock().get(uid).cloned().unwrap_or_default()
    }

    /// Changes what is remembered; returns what `change` returns.
    pub fn update<T>(&self, uid: &str, change: impl FnOnce(&mut TenantMemory) -> T) -> T {
        change(self.lock().entry(uid.to_owned()).or_default())
    }

    /// Forgets the Tenant (it is gone).
    pub fn forget(&self, uid: &str) {
        self.lock().remove(uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_by_uid_and_forgets() {
        let memory = Memory::default();
        assert_eq!(memory.get("a").failures, 0);
        let count = memory.update("a", |m| {
            m.failures += 1;
            m.failures
        });
        assert_eq!(count, 1);
        assert_eq!(memory.get("a").failures, 1);
        assert_eq!(memory.get("b").failures, 0);
        memory.forget("a");
        assert_eq!(memory.get("a").failures, 0);
    }
}
