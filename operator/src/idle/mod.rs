//! Sleep when idle, wake on request or schedule (#20).
//!
//! The state lives in the Tenant's `status.idle` (so a restarted or new
//! leader carries on): awake (no `sleepingSince`), asleep (`sleepingSince`,
//! no `waking`) or waking (both). Each reconcile of a Tenant with
//! `spec.idle`:
//!
//! - awake: reads its instance's activity ([`activity`]) and decides
//!   ([`decide::awake`]); going to sleep scales the instance (and with
//!   `database: true` a Dedicated PostgreSQL) to zero and routes its host
//!   to the wake gate ([`crate::build::shape_for_sleep`]);
//! - asleep: wakes on a wake annotation newer than the sleep (set by the
//!   gate on the first request, or by a person), at its scheduled wake
//!   (`nextWake`: the next run or timer minus twice the last measured
//!   wake), or when `spec.idle` is removed ([`decide::asleep`]);
//! - waking: the workloads are scaled up again while the gate still holds
//!   the host; once the instance is ready the wake is recorded (cause and
//!   duration) and the host goes back to the instance.
//!
//! `spec.suspended` wins: a suspended tenant neither sleeps nor wakes, and
//! its host is routed to the gate, which answers that it is suspended.
//! [`status`] shapes the Tenant's status (phase `Sleeping`, condition
//! `Awake`), pure.

pub mod activity;
pub mod decide;
pub mod status;

pub use activity::Activity;
pub use decide::Mode;

use atoll_crds::{
    IdleStatus, Tenant, WAKE_CAUSE_ANNOTATION, WAKE_REQUESTED_AT_ANNOTATION, WakeCause,
};
use jiff::Timestamp;
use kube::ResourceExt;

/// The mode the Tenant's stored status says it is in.
pub fn mode(idle: Option<&IdleStatus>) -> Mode {
    match idle {
        Some(s) if s.sleeping_since.is_some() && s.waking.is_some() => Mode::Waking,
        Some(s) if s.sleeping_since.is_some() => Mode::Asleep,
        _ => Mode::Awake,
    }
}

/// The wake annotation, if it holds a time: when and by whom.
pub fn wake_request(tenant: &Tenant) -> Option<(Timestamp, WakeCause)> {
    let annotations = tenant.annotations();
    let at: Timestamp = annotations
        .get(WAKE_REQUESTED_AT_ANNOTATION)?
        .parse()
        .ok()?;
    let cause = match annotations.get(WAKE_CAUSE_ANNOTATION).map(String::as_str) {
        Some("request") => WakeCause::Request,
        _ => WakeCause::Manual,
    };
    Some((at, cause))
}
