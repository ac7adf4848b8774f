//! When a tenant sleeps and when it wakes: pure, from the Tenant's spec and
//! status, what its instance reported, the wake annotation and the time.

use std::time::Duration;

use atoll_crds::WakeCause;
use jiff::{SignedDuration, Timestamp};

use super::Activity;

/// Shortest lead before a scheduled run: the operator wakes a tenant at
/// least this long (or twice its last measured wake, if longer) before it.
pub const MIN_LEAD: Duration = Duration::from_secs(10);
/// A sleep shorter than this is not worth its wake: a tenant whose next
/// run is closer than lead + this stays awake.
pub const MIN_SLEEP: Duration = Duration::from_secs(10);
/// How often an awake tenant whose instance does not answer is looked at.
pub const UNANSWERED_RECHECK: Duration = Duration::from_secs(30);

/// Where the tenant stands, as its status says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Serving (the Ingress routes to the instance).
    Awake,
    /// No instance process; the wake gate serves its host.
    Asleep,
    /// Instance starting again; the gate still holds its requests.
    Waking,
}

/// What an awake tenant's instance and surroundings say.
#[derive(Clone, Debug, Default)]
pub struct AwakeInputs {
    /// `spec.idle.after`.
    pub after: Duration,
    /// The instance's report (`None`: no ready instance answered).
    pub activity: Option<Activity>,
    /// When the tenant last finished waking (its idle time counts from
    /// there at the earliest).
    pub woke_at: Option<Timestamp>,
    /// Twice the last measured wake, at least [`MIN_LEAD`].
    pub lead: Duration,
    /// Something else keeps it awake (a backup or restore running, the
    /// tenant not Ready): the reason.
    pub busy: Option<&'static str>,
}

/// The verdict for an awake tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AwakeVerdict {
    /// Stay awake; look again within this long. The reason is for logs.
    Stay {
        /// When to look again.
        recheck: Duration,
        /// Why it stays awake.
        why: String,
    },
    /// Go to sleep; wake at `wake_at` for the next run or timer, if any.
    Sleep {
        /// When to wake for work of its own.
        wake_at: Option<Timestamp>,
    },
}

fn to_std(d: SignedDuration) -> Duration {
    Duration::try_from(d).unwrap_or(Duration::ZERO)
}

fn signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

/// Decides for an awake tenant at `now`.
pub fn awake(inputs: &AwakeInputs, now: Timestamp) -> AwakeVerdict {
    if let Some(why) = inputs.busy {
        return AwakeVerdict::Stay {
            recheck: inputs.after.min(UNANSWERED_RECHECK),
            why: why.to_owned(),
        };
    }
    let Some(activity) = &inputs.activity else {
        return AwakeVerdict::Stay {
            recheck: UNANSWERED_RECHECK,
            why: "no ready instance reported its activity".to_owned(),
        };
    };
    if activity.running > 0 || activity.queued > 0 {
        return AwakeVerdict::Stay {
            recheck: inputs.after.min(UNANSWERED_RECHECK),
            why: format!(
                "{} execution(s) running and {} queued",
                activity.running, activity.queued
            ),
        };
    }
    let last = [
        activity.last_request_at,
        Some(activity.started_at),
        inputs.woke_at,
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(now);
    let idle_until = last.saturating_add(signed(inputs.after)).unwrap_or(now);
    if idle_until > now {
        return AwakeVerdict::Stay {
            recheck: to_std(idle_until.duration_since(now)),
            why: format!("active until {last}"),
        };
    }
    let due = [activity.next_schedule_at, activity.next_timer_at]
        .into_iter()
        .flatten()
        .min();
    let Some(due) = due else {
        return AwakeVerdict::Sleep { wake_at: None };
    };
    let wake_at = due.saturating_sub(signed(inputs.lead)).unwrap_or(due);
    let worth_it = now.saturating_add(signed(MIN_SLEEP)).unwrap_or(now);
    if wake_at <= worth_it {
        // Let the run start and end; look again after it is due.
        return AwakeVerdict::Stay {
            recheck: to_std(due.duration_since(now)) + Duration::from_secs(1),
            why: format!("a scheduled run or timer is due at {due}"),
        };
    }
    AwakeVerdict::Sleep {
        wake_at: Some(wake_at),
    }
}

/// The verdict for a sleeping tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AsleepVerdict {
    /// Keep sleeping; look again at `until` (its scheduled wake), if any.
    Sleep {
        /// The scheduled wake.
        until: Option<Timestamp>,
    },
    /// Wake now.
    Wake {
        /// Why.
        cause: WakeCause,
        /// When the wake was asked for.
        requested_at: Timestamp,
    },
}

/// What a sleeping tenant's status and annotations say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AsleepInputs {
    /// When it went to sleep.
    pub sleeping_since: Timestamp,
    /// Its scheduled wake.
    pub next_wake: Option<Timestamp>,
    /// The wake annotation: when, and whether the gate set it.
    pub requested: Option<(Timestamp, WakeCause)>,
    /// `spec.idle` is still set.
    pub idle_wanted: bool,
}

/// Decides for a sleeping tenant at `now`.
pub fn asleep(inputs: &AsleepInputs, now: Timestamp) -> AsleepVerdict {
    if !inputs.idle_wanted {
        return AsleepVerdict::Wake {
            cause: WakeCause::Manual,
            requested_at: now,
        };
    }
    if let Some((at, cause)) = inputs.requested
        && at > inputs.sleeping_since
    {
        return AsleepVerdict::Wake {
            cause,
            requested_at: at.min(now),
        };
    }
    match inputs.next_wake {
        Some(at) if at <= now => AsleepVerdict::Wake {
            cause: WakeCause::Schedule,
            requested_at: at,
        },
        until => AsleepVerdict::Sleep { until },
    }
}

/// What a tenant's instance says at the end of its drain (its host has
/// gone to the gate, its workloads still run): the last look before they
/// stop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DrainInputs {
    /// The instance's report (`None`: no ready instance answered, nothing
    /// left to stop).
    pub activity: Option<Activity>,
    /// When it went to sleep.
    pub sleeping_since: Timestamp,
    /// Its scheduled wake.
    pub next_wake: Option<Timestamp>,
    /// Twice the last measured wake, at least [`MIN_LEAD`].
    pub lead: Duration,
}

/// The verdict at the end of a drain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DrainVerdict {
    /// Stop the workloads; wake at `next_wake` (earlier than before if a
    /// run or timer appeared in the drain).
    Stop {
        /// The scheduled wake.
        next_wake: Option<Timestamp>,
    },
    /// Work reached the instance in the drain (a request an ingress
    /// controller still sent it, an execution started): it wakes instead,
    /// its workloads never stop.
    Wake {
        /// Why.
        cause: WakeCause,
        /// When the wake was asked for.
        requested_at: Timestamp,
    },
}

/// Decides at the end of a drain, at `now`: a tenant with work in flight
/// never sleeps, and a request served after the sleep began is activity
/// like any other.
pub fn drained(inputs: &DrainInputs, now: Timestamp) -> DrainVerdict {
    let Some(activity) = &inputs.activity else {
        return DrainVerdict::Stop {
            next_wake: inputs.next_wake,
        };
    };
    let served = activity
        .last_request_at
        .is_some_and(|at| at > inputs.sleeping_since);
    if activity.running > 0 || activity.queued > 0 || served {
        return DrainVerdict::Wake {
            cause: WakeCause::Request,
            requested_at: now,
        };
    }
    let due = [activity.next_schedule_at, activity.next_timer_at]
        .into_iter()
        .flatten()
        .min()
        .map(|due| due.saturating_sub(signed(inputs.lead)).unwrap_or(due));
    let next_wake = match (inputs.next_wake, due) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    DrainVerdict::Stop { next_wake }
}

/// The lead before a scheduled run: twice the last measured wake, at least
/// [`MIN_LEAD`].
pub fn lead(last_wake_ms: Option<i64>) -> Duration {
    let measured = last_wake_ms
        .and_then(|ms| u64::try_from(ms).ok())
        .map_or(Duration::ZERO, |ms| {
            Duration::from_millis(ms.saturating_mul(2))
        });
    measured.max(MIN_LEAD)
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
