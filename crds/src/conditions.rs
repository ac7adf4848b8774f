//! `metav1.Condition` helpers for Tenant status.
//!
//! A condition's `lastTransitionTime` says when its *status* last changed, so
//! setting a condition to the status it already has keeps the old time (and
//! the status patch stays empty at rest).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition types a Tenant reports.
pub mod types {
    /// The tenant's instance answers at its URL.
    pub const READY: &str = "Ready";
    /// The tenant's database accepts connections.
    pub const DATABASE_READY: &str = "DatabaseReady";
    /// The instance Deployment has its replicas ready.
    pub const INSTANCE_READY: &str = "InstanceReady";
    /// The identity service knows the tenant as it is now.
    pub const IDENTITY_SYNCED: &str = "IdentitySynced";
    /// With `spec.backup`: the last scheduled backup (a base backup for a
    /// Dedicated database, a dump for an External one) succeeded and the
    /// next is due; False says what failed and what to check.
    pub const BACKUP_READY: &str = "BackupReady";
    /// With `spec.backup`, Dedicated databases only (External ones have no
    /// WAL of their own): WAL segments reach the object store; False while
    /// archiving fails (the database keeps serving and PostgreSQL keeps the
    /// segments until they are archived).
    pub const CONTINUOUS_ARCHIVING: &str = "ContinuousArchiving";
    /// With `spec.restore`: the database was recovered from the source's
    /// backups; False says why not and how far recovery got.
    pub const RESTORED: &str = "Restored";
    /// With `spec.idle`: the instance is awake (False while it sleeps or
    /// wakes, with the reason `Sleeping` or `Waking`).
    pub const AWAKE: &str = "Awake";
}

/// What a condition should say now; the helpers fill in times and generations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired<'a> {
    /// Condition type, one of [`types`].
    pub type_: &'a str,
    /// True or False (Unknown is written as `None`).
    pub status: Option<bool>,
    /// One CamelCase word a program can match on.
    pub reason: &'a str,
    /// What a person should know or do.
    pub message: &'a str,
}

fn status_str(status: Option<bool>) -> &'static str {
    match status {
        Some(true) => "True",
        Some(false) => "False",
        None => "Unknown",
    }
}

/// Sets a condition in `conditions`, keeping `lastTransitionTime` when the
/// status is unchanged. Returns whether anything changed.
pub fn set(
    conditions: &mut Vec<Condition>,
    desired: Desired<'_>,
    observed_generation: Option<i64>,
    now: &Time,
) -> bool {
    let status = status_str(desired.status);
    let existing = conditions.iter_mut().find(|c| c.type_ == desired.type_);
    let Some(current) = existing else {
        conditions.push(Condition {
            type_: desired.type_.to_owned(),
            status: status.to_owned(),
            reason: desired.reason.to_owned(),
            message: desired.message.to_owned(),
            observed_generation,
            last_transition_time: now.clone(),
        });
        return true;
    };
    let transition = current.status != status;
    let changed = transition
        || current.reason != desired.reason
        || current.message != desired.message
        || current.observed_generation != observed_generation;
    if transition {
        current.status = status.to_owned();
        current.last_transition_time = now.clone();
    }
    if changed {
        current.reason = desired.reason.to_owned();
        current.message = desired.message.to_owned();
        current.observed_generation = observed_generation;
    }
    changed
}

/// The condition of the given type, if present.
pub fn get<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of the given type is present and True.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    get(conditions, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).expect("valid timestamp"))
    }

    fn ready(status: bool, reason: &'static str) -> Desired<'static> {
        Desired {
            type_: types::READY,
            status: Some(status),
            reason,
            message: "m",
        }
    }

    #[test]
    fn keeps_transition_time_when_status_unchanged() {
        let mut conditions = Vec::new();
        assert!(set(
            &mut conditions,
            ready(false, "Provisioning"),
            Some(1),
            &at(100)
        ));
        assert!(!set(
            &mut conditions,
            ready(false, "Provisioning"),
            Some(1),
            &at(200)
        ));
        assert_eq!(conditions[0].last_transition_time, at(100));

        // A new reason is a change, but not a transition.
        assert!(set(
            &mut conditions,
            ready(false, "DatabaseNotReady"),
            Some(1),
            &at(300)
        ));
        assert_eq!(conditions[0].last_transition_time, at(100));
        assert_eq!(conditions[0].reason, "DatabaseNotReady");

        assert!(set(
            &mut conditions,
            ready(true, "Ready"),
            Some(2),
            &at(400)
        ));
        assert_eq!(conditions[0].last_transition_time, at(400));
        assert_eq!(conditions[0].status, "True");
        assert_eq!(conditions[0].observed_generation, Some(2));
        assert!(is_true(&conditions, types::READY));
    }

    #[test]
    fn unknown_status_and_independent_types() {
        let mut conditions = Vec::new();
        set(
            &mut conditions,
            Desired {
                type_: types::IDENTITY_SYNCED,
                status: None,
                reason: "Pending",
                message: "",
            },
            None,
            &at(1),
        );
        set(&mut conditions, ready(true, "Ready"), None, &at(2));
        assert_eq!(conditions.len(), 2);
        assert_eq!(
            get(&conditions, types::IDENTITY_SYNCED).map(|c| c.status.as_str()),
            Some("Unknown")
        );
        assert!(!is_true(&conditions, types::IDENTITY_SYNCED));
    }
}
