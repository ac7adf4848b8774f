//! Status computation: what the operator observed → the Tenant's status.
//! Pure, so every transition is tested without an API server; the
//! reconciler patches the result only when it differs from what is stored.

use atoll_crds::conditions::{self, Desired, types};
use atoll_crds::{FieldError, Phase, Tenant, TenantStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Readiness of one workload as its status reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkloadReadiness {
    /// Replicas wanted.
    pub desired: i32,
    /// Replicas ready (readiness probe passing).
    pub ready: i32,
    /// Replicas running the current template.
    pub updated: i32,
    /// Whether the controller has seen the current spec.
    pub observed_current: bool,
}

impl WorkloadReadiness {
    /// Every wanted replica is ready and up to date (and at least one is wanted).
    pub fn complete(&self) -> bool {
        self.desired > 0
            && self.observed_current
            && self.ready >= self.desired
            && self.updated >= self.desired
    }
}

/// Where the database stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseState {
    /// Dedicated: the StatefulSet as observed.
    Dedicated(WorkloadReadiness),
    /// External: the database and role exist on the shared server.
    ExternalProvisioned,
    /// External: provisioning failed; the message says why (no secrets).
    ExternalFailed(String),
}

/// Where the tenant's identity record stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentityState {
    /// No identity service is configured.
    NotConfigured,
    /// Not attempted yet (the instance is not reachable yet).
    Pending,
    /// Identity holds the tenant as it is now.
    Synced,
    /// Identity could not be reached or answered with an error.
    Unavailable(String),
    /// Another cluster registered this tenant name first.
    NameConflict,
}

/// Everything the reconciler learned in one pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observed {
    /// The spec breaks the API's rules; nothing was applied.
    Invalid(Vec<FieldError>),
    /// The children were applied; this is how they are doing.
    Applied {
        /// The database.
        database: DatabaseState,
        /// The instance Deployment.
        instance: WorkloadReadiness,
        /// The identity record.
        identity: IdentityState,
        /// The instance version the Deployment runs.
        version: String,
    },
    /// The Tenant asks for a host or namespace it cannot have; nothing was
    /// applied.
    Refused(crate::claims::Refusal),
    /// The Tenant is being deleted.
    Deleting,
}

/// The phase [`desired_status`] gives for what was observed (identity's
/// state plays no part in it): what the reconciler tells identity before it
/// writes the status.
pub fn phase(tenant: &Tenant, observed: &Observed) -> Phase {
    match observed {
        Observed::Deleting => Phase::Deleting,
        Observed::Invalid(_) | Observed::Refused(_) => Phase::Degraded,
        Observed::Applied {
            database, instance, ..
        } => {
            let suspended = tenant.spec.suspended;
            let database_ready = match database {
                DatabaseState::Dedicated(db) => db.complete(),
                DatabaseState::ExternalProvisioned => true,
                DatabaseState::ExternalFailed(_) => false,
            };
            let instance_ready = tenant.spec.instance.replicas != 0 && instance.complete();
            let was_ready = matches!(
                tenant.status.as_ref().and_then(|s| s.phase),
                Some(Phase::Ready | Phase::Degraded)
            );
            let sleeping = tenant
                .status
                .as_ref()
                .and_then(|s| s.idle.as_ref())
                .is_some_and(|i| i.sleeping_since.is_some());
            if suspended {
                Phase::Suspended
            } else if sleeping {
                Phase::Sleeping
            } else if database_ready && instance_ready {
                Phase::Ready
            } else if was_ready {
                Phase::Degraded
            } else {
                Phase::Provisioning
            }
        }
    }
}

/// One condition's desired value.
struct Verdict {
    status: Option<bool>,
    reason: &'static str,
    message: String,
}

impl Verdict {
    fn new(status: Option<bool>, reason: &'static str, message: impl Into<String>) -> Verdict {
        Verdict {
            status,
            reason,
            message: message.into(),
        }
    }

    fn is_true(&self) -> bool {
        self.status == Some(true)
    }
}

/// The status the Tenant should have. `url` and `namespace` are derived by
/// the caller from the same builders the children use. Each condition has
/// its own function below; this one sets them in order and picks the phase.
pub fn desired_status(
    tenant: &Tenant,
    observed: &Observed,
    url: &str,
    namespace: &str,
    now: &Time,
) -> TenantStatus {
    let previous = tenant.status.clone().unwrap_or_default();
    let generation = tenant.metadata.generation;
    let mut status = TenantStatus {
        phase: previous.phase,
        url: Some(url.to_owned()),
        namespace: Some(namespace.to_owned()),
        version: previous.version.clone(),
        observed_generation: generation,
        conditions: previous.conditions.clone(),
        // Not written by this reconciler: kept as found (#19).
        backup: previous.backup.clone(),
        restore: previous.restore.clone(),
        // Written by the sleep's overlay (#20, `crate::idle::status`).
        idle: previous.idle.clone(),
    };
    let mut set = |type_: &str, verdict: &Verdict| {
        conditions::set(
            &mut status.conditions,
            Desired {
                type_,
                status: verdict.status,
                reason: verdict.reason,
                message: &verdict.message,
            },
            generation,
            now,
        );
    };
    let was_ready = matches!(previous.phase, Some(Phase::Ready | Phase::Degraded));

    let mut version_ready = None;
    let phase = match observed {
        Observed::Deleting => {
            set(types::READY, &deleting());
            Phase::Deleting
        }
        Observed::Refused(refusal) => {
            set(types::READY, &refused(refusal));
            Phase::Degraded
        }
        Observed::Invalid(errors) => {
            set(types::READY, &invalid(errors));
            Phase::Degraded
        }
        Observed::Applied {
            database,
            instance,
            identity,
            version,
        } => {
            let suspended = tenant.spec.suspended;
            let database = database_ready(suspended, database);
            set(types::DATABASE_READY, &database);
            let instance = instance_ready(tenant, instance, version);
            set(types::INSTANCE_READY, &instance);
            if instance.is_true() {
                version_ready = Some(version.clone());
            }
            set(types::IDENTITY_SYNCED, &identity_synced(identity));
            let (ready, phase) = ready(
                suspended,
                database.is_true(),
                instance.is_true(),
                was_ready,
                url,
            );
            set(types::READY, &ready);
            phase
        }
    };
    if version_ready.is_some() {
        status.version = version_ready;
    }
    status.phase = Some(phase);
    status
}

/// `Ready` while the Tenant is being deleted.
fn deleting() -> Verdict {
    Verdict::new(Some(false), "Deleting", "The Tenant is being deleted.")
}

/// `Ready` when the Tenant asks for what it cannot have.
fn refused(refusal: &crate::claims::Refusal) -> Verdict {
    Verdict::new(
        Some(false),
        refusal.reason(),
        format!("Nothing was changed: {refusal}"),
    )
}

/// `Ready` when the spec breaks the API's rules.
fn invalid(errors: &[FieldError]) -> Verdict {
    let message = errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    Verdict::new(
        Some(false),
        "InvalidSpec",
        format!("The spec is invalid, nothing was changed: {message}"),
    )
}

/// `DatabaseReady`.
fn database_ready(suspended: bool, database: &DatabaseState) -> Verdict {
    match database {
        _ if suspended => Verdict::new(
            Some(false),
            "Suspended",
            "The database is scaled to zero; its data is kept.",
        ),
        DatabaseState::Dedicated(db) if db.complete() => Verdict::new(
            Some(true),
            "AcceptingConnections",
            "PostgreSQL accepts connections.",
        ),
        DatabaseState::Dedicated(db) => Verdict::new(
            Some(false),
            "NotReady",
            format!(
                "PostgreSQL is starting: {}/{} ready.",
                db.ready,
                db.desired.max(1)
            ),
        ),
        DatabaseState::ExternalProvisioned => Verdict::new(
            Some(true),
            "Provisioned",
            "The database and role exist on the shared server.",
        ),
        DatabaseState::ExternalFailed(message) => {
            Verdict::new(Some(false), "ProvisioningFailed", message.as_str())
        }
    }
}

/// `InstanceReady`.
fn instance_ready(tenant: &Tenant, instance: &WorkloadReadiness, version: &str) -> Verdict {
    if tenant.spec.suspended {
        Verdict::new(Some(false), "Suspended", "The instance is scaled to zero.")
    } else if tenant.spec.instance.replicas == 0 {
        Verdict::new(Some(false), "ScaledToZero", "spec.instance.replicas is 0.")
    } else if instance.complete() {
        Verdict::new(
            Some(true),
            "Available",
            format!(
                "{}/{} replicas ready, running version {version}.",
                instance.ready, instance.desired
            ),
        )
    } else {
        let reason = if instance.ready > 0 {
            "RollingOut"
        } else {
            "NotReady"
        };
        Verdict::new(
            Some(false),
            reason,
            format!(
                "{}/{} replicas ready, {} on the current version.",
                instance.ready, instance.desired, instance.updated
            ),
        )
    }
}

/// `IdentitySynced`.
fn identity_synced(identity: &IdentityState) -> Verdict {
    match identity {
        IdentityState::NotConfigured => Verdict::new(
            None,
            "NotConfigured",
            "The operator has no identity service configured.",
        ),
        IdentityState::Pending => Verdict::new(
            None,
            "Pending",
            "The tenant is registered once its instance is reachable.",
        ),
        IdentityState::Synced => Verdict::new(
            Some(true),
            "Registered",
            "Identity knows the tenant, its URL and members.",
        ),
        IdentityState::Unavailable(message) => {
            Verdict::new(Some(false), "IdentityUnavailable", message.as_str())
        }
        IdentityState::NameConflict => Verdict::new(
            Some(false),
            "NameConflict",
            "Another cluster has registered a tenant with this name in identity; rename one of them.",
        ),
    }
}

/// `Ready` and the phase of an applied Tenant.
fn ready(
    suspended: bool,
    database_ready: bool,
    instance_ready: bool,
    was_ready: bool,
    url: &str,
) -> (Verdict, Phase) {
    if suspended {
        let verdict = Verdict::new(
            Some(false),
            "Suspended",
            "The tenant is suspended; set spec.suspended to false to resume.",
        );
        (verdict, Phase::Suspended)
    } else if database_ready && instance_ready {
        let verdict = Verdict::new(
            Some(true),
            "Ready",
            format!("The instance answers at {url}."),
        );
        (verdict, Phase::Ready)
    } else {
        let waiting = if database_ready {
            "InstanceNotReady"
        } else {
            "DatabaseNotReady"
        };
        let verdict = Verdict::new(
            Some(false),
            waiting,
            "Waiting for the database and the instance; see the other conditions.",
        );
        let phase = if was_ready {
            Phase::Degraded
        } else {
            Phase::Provisioning
        };
        (verdict, phase)
    }
}

#[cfg(test)]
mod tests;
