//! The sleep's part of the Tenant's status, pure: `status.idle`, phase
//! `Sleeping` and the `Awake` condition, and what `Ready`, `InstanceReady`
//! and `DatabaseReady` say while the tenant sleeps (a sleeping tenant is
//! Ready: its URL answers, through the wake gate).

use atoll_crds::conditions::{self, Desired, types};
use atoll_crds::{IdleStatus, Phase, TenantStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::Mode;

/// What the reconcile decided about the sleep.
#[derive(Clone, Debug, PartialEq)]
pub struct IdleView<'a> {
    /// `spec.idle.after` as written.
    pub after: Option<&'a str>,
    /// The mode after this reconcile.
    pub mode: Mode,
    /// The new `status.idle` (`None`: the Tenant has no `spec.idle` and
    /// never slept).
    pub idle: Option<IdleStatus>,
    /// The tenant's URL.
    pub url: &'a str,
}

/// Applies `view` to `status` (computed for the workloads as observed).
/// A suspended tenant is left as the status says (it neither sleeps nor
/// wakes).
pub fn overlay(
    status: &mut TenantStatus,
    view: &IdleView<'_>,
    suspended: bool,
    generation: Option<i64>,
    now: &Time,
) {
    status.idle.clone_from(&view.idle);
    let Some(after) = view.after else {
        status.conditions.retain(|c| c.type_ != types::AWAKE);
        return;
    };
    if suspended {
        status.conditions.retain(|c| c.type_ != types::AWAKE);
        return;
    }
    let mut set = |type_: &str, state: Option<bool>, reason: &str, message: &str| {
        conditions::set(
            &mut status.conditions,
            Desired {
                type_,
                status: state,
                reason,
                message,
            },
            generation,
            now,
        );
    };
    let idle = view.idle.clone().unwrap_or_default();
    let url = view.url;
    match view.mode {
        Mode::Awake => {
            let last = idle.last_wake.as_ref().map_or(String::new(), |w| {
                format!(
                    " Last woken by {} at {}{}.",
                    w.cause.as_str().to_lowercase(),
                    w.requested_at.0,
                    w.duration_milliseconds
                        .map_or(String::new(), |ms| format!(", ready in {ms} ms"))
                )
            });
            let message = format!(
                "The instance serves {url}; it sleeps after {after} without activity.{last}"
            );
            set(types::AWAKE, Some(true), "Awake", &message);
        }
        Mode::Asleep => {
            let since = idle
                .sleeping_since
                .as_ref()
                .map_or_else(|| "now".to_owned(), |t| t.0.to_string());
            let next = idle.next_wake.as_ref().map_or(String::new(), |t| {
                format!(" It wakes at {} for its next scheduled run.", t.0)
            });
            let message = format!(
                "Asleep since {since} after {after} without activity; the first request to {url} wakes it.{next}"
            );
            set(types::AWAKE, Some(false), "Sleeping", &message);
            set(
                types::READY,
                Some(true),
                "Sleeping",
                &format!("The tenant sleeps; the first request to {url} wakes it."),
            );
            set(
                types::INSTANCE_READY,
                Some(false),
                "Sleeping",
                "The instance is scaled to zero while the tenant sleeps.",
            );
            if idle.database_asleep {
                set(
                    types::DATABASE_READY,
                    Some(false),
                    "Sleeping",
                    "PostgreSQL is stopped while the tenant sleeps (spec.idle.database); its data is kept.",
                );
            }
            status.phase = Some(Phase::Sleeping);
        }
        Mode::Waking => {
            let (cause, at) = idle
                .waking
                .as_ref()
                .map_or(("request", String::new()), |w| {
                    (w.cause.as_str(), w.requested_at.0.to_string())
                });
            let message = format!(
                "Waking (cause {cause}, asked at {at}); the wake gate holds requests to {url} until the instance is ready."
            );
            set(types::AWAKE, Some(false), "Waking", &message);
            set(
                types::READY,
                Some(true),
                "Waking",
                &format!("The tenant is waking; requests to {url} are held until it answers."),
            );
            status.phase = Some(Phase::Sleeping);
        }
    }
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
