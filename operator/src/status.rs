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
            if suspended {
                Phase::Suspended
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

/// The status the Tenant should have. `url` and `namespace` are derived by
/// the caller from the same builders the children use.
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
    };
    let mut set = |type_: &str, value: Option<bool>, reason: &str, message: &str| {
        conditions::set(
            &mut status.conditions,
            Desired {
                type_,
                status: value,
                reason,
                message,
            },
            generation,
            now,
        );
    };
    let was_ready = matches!(previous.phase, Some(Phase::Ready | Phase::Degraded));

    let phase = match observed {
        Observed::Deleting => {
            set(
                types::READY,
                Some(false),
                "Deleting",
                "The Tenant is being deleted.",
            );
            Phase::Deleting
        }
        Observed::Refused(refusal) => {
            set(
                types::READY,
                Some(false),
                refusal.reason(),
                &format!("Nothing was changed: {refusal}"),
            );
            Phase::Degraded
        }
        Observed::Invalid(errors) => {
            let message = errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            set(
                types::READY,
                Some(false),
                "InvalidSpec",
                &format!("The spec is invalid, nothing was changed: {message}"),
            );
            Phase::Degraded
        }
        Observed::Applied {
            database,
            instance,
            identity,
            version,
        } => {
            let suspended = tenant.spec.suspended;
            let database_ready = match database {
                _ if suspended => {
                    set(
                        types::DATABASE_READY,
                        Some(false),
                        "Suspended",
                        "The database is scaled to zero; its data is kept.",
                    );
                    false
                }
                DatabaseState::Dedicated(db) if db.complete() => {
                    set(
                        types::DATABASE_READY,
                        Some(true),
                        "AcceptingConnections",
                        "PostgreSQL accepts connections.",
                    );
                    true
                }
                DatabaseState::Dedicated(db) => {
                    set(
                        types::DATABASE_READY,
                        Some(false),
                        "NotReady",
                        &format!(
                            "PostgreSQL is starting: {}/{} ready.",
                            db.ready,
                            db.desired.max(1)
                        ),
                    );
                    false
                }
                DatabaseState::ExternalProvisioned => {
                    set(
                        types::DATABASE_READY,
                        Some(true),
                        "Provisioned",
                        "The database and role exist on the shared server.",
                    );
                    true
                }
                DatabaseState::ExternalFailed(message) => {
                    set(
                        types::DATABASE_READY,
                        Some(false),
                        "ProvisioningFailed",
                        message,
                    );
                    false
                }
            };
            let instance_ready = if suspended {
                set(
                    types::INSTANCE_READY,
                    Some(false),
                    "Suspended",
                    "The instance is scaled to zero.",
                );
                false
            } else if tenant.spec.instance.replicas == 0 {
                set(
                    types::INSTANCE_READY,
                    Some(false),
                    "ScaledToZero",
                    "spec.instance.replicas is 0.",
                );
                false
            } else if instance.complete() {
                set(
                    types::INSTANCE_READY,
                    Some(true),
                    "Available",
                    &format!(
                        "{}/{} replicas ready, running version {version}.",
                        instance.ready, instance.desired
                    ),
                );
                true
            } else {
                let reason = if instance.ready > 0 {
                    "RollingOut"
                } else {
                    "NotReady"
                };
                set(
                    types::INSTANCE_READY,
                    Some(false),
                    reason,
                    &format!(
                        "{}/{} replicas ready, {} on the current version.",
                        instance.ready, instance.desired, instance.updated
                    ),
                );
                false
            };
            if instance_ready {
                status.version = Some(version.clone());
            }
            match identity {
                IdentityState::NotConfigured => set(
                    types::IDENTITY_SYNCED,
                    None,
                    "NotConfigured",
                    "The operator has no identity service configured.",
                ),
                IdentityState::Pending => set(
                    types::IDENTITY_SYNCED,
                    None,
                    "Pending",
                    "The tenant is registered once its instance is reachable.",
                ),
                IdentityState::Synced => set(
                    types::IDENTITY_SYNCED,
                    Some(true),
                    "Registered",
                    "Identity knows the tenant, its URL and members.",
                ),
                IdentityState::Unavailable(message) => set(
                    types::IDENTITY_SYNCED,
                    Some(false),
                    "IdentityUnavailable",
                    message,
                ),
                IdentityState::NameConflict => set(
                    types::IDENTITY_SYNCED,
                    Some(false),
                    "NameConflict",
                    "Another cluster has registered a tenant with this name in identity; rename one of them.",
                ),
            }
            if suspended {
                set(
                    types::READY,
                    Some(false),
                    "Suspended",
                    "The tenant is suspended; set spec.suspended to false to resume.",
                );
                Phase::Suspended
            } else if database_ready && instance_ready {
                set(
                    types::READY,
                    Some(true),
                    "Ready",
                    &format!("The instance answers at {url}."),
                );
                Phase::Ready
            } else {
                let waiting = if database_ready {
                    "InstanceNotReady"
                } else {
                    "DatabaseNotReady"
                };
                set(
                    types::READY,
                    Some(false),
                    waiting,
                    "Waiting for the database and the instance; see the other conditions.",
                );
                if was_ready {
                    Phase::Degraded
                } else {
                    Phase::Provisioning
                }
            }
        }
    };
    status.phase = Some(phase);
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use atoll_crds::TenantSpec;
    use k8s_openapi::jiff::Timestamp;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).expect("valid"))
    }

    fn tenant(suspended: bool, status: Option<TenantStatus>) -> Tenant {
        let mut tenant = Tenant::new(
            "acme",
            TenantSpec {
                suspended,
                ..TenantSpec::default()
            },
        );
        tenant.metadata.generation = Some(3);
        tenant.status = status;
        tenant
    }

    fn ready_workload() -> WorkloadReadiness {
        WorkloadReadiness {
            desired: 1,
            ready: 1,
            updated: 1,
            observed_current: true,
        }
    }

    fn applied(
        db: WorkloadReadiness,
        instance: WorkloadReadiness,
        identity: IdentityState,
    ) -> Observed {
        Observed::Applied {
            database: DatabaseState::Dedicated(db),
            instance,
            identity,
            version: "0.1.0".into(),
        }
    }

    fn condition<'a>(status: &'a TenantStatus, type_: &str) -> (&'a str, &'a str) {
        let c = conditions::get(&status.conditions, type_).expect("condition present");
        (c.status.as_str(), c.reason.as_str())
    }

    #[test]
    fn the_phase_alone_is_the_phase_of_the_whole_status() {
        let starting = WorkloadReadiness::default();
        let mut observations = vec![Observed::Deleting, Observed::Invalid(Vec::new())];
        for (db, instance) in [
            (ready_workload(), ready_workload()),
            (starting.clone(), ready_workload()),
            (ready_workload(), starting.clone()),
        ] {
            for identity in [IdentityState::Synced, IdentityState::NameConflict] {
                observations.push(applied(db.clone(), instance.clone(), identity));
            }
        }
        for database in [
            DatabaseState::ExternalProvisioned,
            DatabaseState::ExternalFailed("no".into()),
        ] {
            observations.push(Observed::Applied {
                database,
                instance: ready_workload(),
                identity: IdentityState::Pending,
                version: "0.1.0".into(),
            });
        }
        let before = |phase| {
            Some(TenantStatus {
                phase: Some(phase),
                ..TenantStatus::default()
            })
        };
        for suspended in [false, true] {
            for previous in [None, before(Phase::Ready), before(Phase::Provisioning)] {
                let tenant = tenant(suspended, previous);
                for observed in &observations {
                    let status = desired_status(&tenant, observed, "u", "ns", &at(1));
                    assert_eq!(
                        Some(phase(&tenant, observed)),
                        status.phase,
                        "{observed:?}, suspended {suspended}"
                    );
                }
            }
        }
    }

    #[test]
    fn provisioning_then_ready_then_degraded() {
        let url = "http://acme.atoll.localhost:8080";
        let starting = applied(
            WorkloadReadiness::default(),
            WorkloadReadiness::default(),
            IdentityState::Pending,
        );
        let first = desired_status(&tenant(false, None), &starting, url, "atoll-acme", &at(1));
        assert_eq!(first.phase, Some(Phase::Provisioning));
        assert_eq!(
            condition(&first, types::READY),
            ("False", "DatabaseNotReady")
        );
        assert_eq!(first.observed_generation, Some(3));
        assert_eq!(
            first.version, None,
            "no version is reported before the instance runs"
        );

        let running = applied(ready_workload(), ready_workload(), IdentityState::Synced);
        let ready = desired_status(
            &tenant(false, Some(first)),
            &running,
            url,
            "atoll-acme",
            &at(2),
        );
        assert_eq!(ready.phase, Some(Phase::Ready));
        assert_eq!(condition(&ready, types::READY), ("True", "Ready"));
        assert_eq!(
            condition(&ready, types::IDENTITY_SYNCED),
            ("True", "Registered")
        );
        assert_eq!(ready.version.as_deref(), Some("0.1.0"));

        // Same observation again: nothing changes, so no status write.
        let again = desired_status(
            &tenant(false, Some(ready.clone())),
            &running,
            url,
            "atoll-acme",
            &at(3),
        );
        assert_eq!(again, ready);

        let db_down = applied(
            WorkloadReadiness {
                ready: 0,
                ..ready_workload()
            },
            ready_workload(),
            IdentityState::Synced,
        );
        let degraded = desired_status(
            &tenant(false, Some(ready)),
            &db_down,
            url,
            "atoll-acme",
            &at(4),
        );
        assert_eq!(degraded.phase, Some(Phase::Degraded));
        assert_eq!(
            condition(&degraded, types::DATABASE_READY),
            ("False", "NotReady")
        );
        let ready_condition = conditions::get(&degraded.conditions, types::READY).expect("Ready");
        assert_eq!(ready_condition.last_transition_time, at(4));
    }

    #[test]
    fn invalid_spec_names_the_field() {
        let errors = vec![FieldError {
            field: "spec.quota.pods".into(),
            message: "must be between 1 and 1000 (is 0)".into(),
        }];
        let status = desired_status(
            &tenant(false, None),
            &Observed::Invalid(errors),
            "u",
            "ns",
            &at(1),
        );
        assert_eq!(status.phase, Some(Phase::Degraded));
        let ready = conditions::get(&status.conditions, types::READY).expect("Ready");
        assert_eq!(ready.reason, "InvalidSpec");
        assert!(
            ready.message.contains("spec.quota.pods"),
            "{}",
            ready.message
        );
    }

    #[test]
    fn suspended_tenant_reports_suspended_everywhere() {
        let observed = applied(
            WorkloadReadiness::default(),
            WorkloadReadiness::default(),
            IdentityState::Synced,
        );
        let status = desired_status(&tenant(true, None), &observed, "u", "ns", &at(1));
        assert_eq!(status.phase, Some(Phase::Suspended));
        for type_ in [types::READY, types::DATABASE_READY, types::INSTANCE_READY] {
            assert_eq!(condition(&status, type_), ("False", "Suspended"));
        }
    }

    #[test]
    fn identity_problems_do_not_block_readiness() {
        for (identity, reason) in [
            (
                IdentityState::Unavailable("connection refused".into()),
                "IdentityUnavailable",
            ),
            (IdentityState::NameConflict, "NameConflict"),
        ] {
            let observed = applied(ready_workload(), ready_workload(), identity);
            let status = desired_status(&tenant(false, None), &observed, "u", "ns", &at(1));
            assert_eq!(status.phase, Some(Phase::Ready));
            assert_eq!(
                condition(&status, types::IDENTITY_SYNCED),
                ("False", reason)
            );
        }
    }

    #[test]
    fn rollout_in_progress_is_not_ready() {
        let rolling = WorkloadReadiness {
            desired: 2,
            ready: 2,
            updated: 1,
            observed_current: true,
        };
        let observed = applied(ready_workload(), rolling, IdentityState::Synced);
        let status = desired_status(&tenant(false, None), &observed, "u", "ns", &at(1));
        assert_eq!(
            condition(&status, types::INSTANCE_READY),
            ("False", "RollingOut")
        );
    }
}
