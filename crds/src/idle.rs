//! Sleep when idle (#20): `spec.idle` and `status.idle`.
//!
//! A Tenant with `spec.idle` is put to sleep by the operator once its
//! instance has been idle for `after` (no request, nothing running or
//! queued, no schedule or timer due soon): the instance (and, with
//! `database: true`, a Dedicated PostgreSQL) is scaled to zero and its
//! host is served by the wake gate, which holds requests while the tenant
//! wakes. The operator wakes it ahead of its next scheduled run.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An idle time: a whole number of seconds, minutes or hours (`90s`, `30m`, `2h`).
pub const IDLE_AFTER_PATTERN: &str = "^[1-9][0-9]{0,5}[smh]$";
/// Shortest idle time accepted, in seconds.
pub const MIN_IDLE_AFTER_SECONDS: u64 = 10;
/// Longest idle time accepted, in seconds (one week).
pub const MAX_IDLE_AFTER_SECONDS: u64 = 7 * 24 * 3600;

/// Annotation on a Tenant asking the operator to wake it: an RFC 3339 time.
/// The wake gate sets it on the first request to a sleeping tenant; a person
/// can set it too (`kubectl annotate tenant acme
/// atoll.dev/wake-requested-at=$(date -u +%FT%TZ) --overwrite`). A request
/// older than the tenant's sleep is ignored.
pub const WAKE_REQUESTED_AT_ANNOTATION: &str = "atoll.dev/wake-requested-at";
/// Annotation naming who asked for the wake: `request` (the wake gate) or
/// anything else, counted as `manual`.
pub const WAKE_CAUSE_ANNOTATION: &str = "atoll.dev/wake-cause";

/// Sleep when idle.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("!self.after.matches('^[1-9][0-9]{0,5}[smh]$') || (duration(self.after) >= duration('10s') && duration(self.after) <= duration('168h'))")
        .message("spec.idle.after must be from 10s to 168h: a shorter idle time would put the tenant to sleep between two requests, a longer one is better served by spec.suspended")
        .field_path(".after")
        .reason(Reason::FieldValueInvalid)
)]
#[serde(rename_all = "camelCase")]
pub struct IdleSpec {
    /// Put the tenant to sleep after this long without activity: no request to its URL, no execution running or queued, and no scheduled run or paused execution due within this time plus the time a wake takes. A whole number of seconds, minutes or hours (90s, 30m, 2h), from 10s to 168h. While asleep the instance has no process; the first request to its URL wakes it (held, not failed), and the operator wakes it ahead of its next scheduled run.
    #[schemars(pattern(IDLE_AFTER_PATTERN), length(min = 2, max = 7))]
    pub after: String,
    /// Also stop the tenant's Dedicated PostgreSQL while it sleeps (default false). A wake then also starts the database, which takes longer (about a second instead of tens of milliseconds). No effect on External databases.
    #[serde(default)]
    pub database: bool,
}

impl IdleSpec {
    /// `after` in seconds, or why it is not an idle time.
    pub fn after_seconds(&self) -> Result<u64, String> {
        parse_after(&self.after)
    }
}

/// Parses an idle time (`90s`, `30m`, `2h`) into seconds, within the bounds.
pub fn parse_after(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is not an idle time such as 90s, 30m or 2h");
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let number: u64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => number,
        "m" => number.saturating_mul(60),
        "h" => number.saturating_mul(3600),
        _ => return Err(bad()),
    };
    if !(MIN_IDLE_AFTER_SECONDS..=MAX_IDLE_AFTER_SECONDS).contains(&seconds) {
        return Err(format!(
            "{text:?} is outside 10s to 168h: a shorter idle time would put the tenant to sleep between two requests, a longer one is better served by spec.suspended"
        ));
    }
    Ok(seconds)
}

/// Why a tenant was woken.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WakeCause {
    /// A request reached its URL (through the wake gate).
    Request,
    /// Its next scheduled run, or a paused execution's timer, was due.
    Schedule,
    /// A person asked (the wake annotation), or `spec.idle` was removed.
    Manual,
}

impl WakeCause {
    /// The cause as written in status and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            WakeCause::Request => "Request",
            WakeCause::Schedule => "Schedule",
            WakeCause::Manual => "Manual",
        }
    }
}

/// The tenant's sleep and its last wake.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IdleStatus {
    /// When the tenant went to sleep; unset while it is awake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleeping_since: Option<Time>,
    /// Whether its Dedicated PostgreSQL was stopped too (spec.idle.database when it went to sleep).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub database_asleep: bool,
    /// While asleep: when the operator will wake it for its next scheduled run or timer (ahead of it by at least the measured wake time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_wake: Option<Time>,
    /// While waking: when the wake was asked for and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waking: Option<Wake>,
    /// The last completed wake: when it was asked for, why, and how long the tenant took to answer again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_wake: Option<Wake>,
}

/// One wake.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Wake {
    /// Why.
    pub cause: WakeCause,
    /// When the wake was asked for (the first held request, the schedule, or the annotation).
    pub requested_at: Time,
    /// When the instance was ready again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_at: Option<Time>,
    /// From requestedAt to readyAt, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_milliseconds: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_times_parse_within_bounds() {
        assert_eq!(parse_after("90s"), Ok(90));
        assert_eq!(parse_after("30m"), Ok(1800));
        assert_eq!(parse_after("2h"), Ok(7200));
        assert_eq!(parse_after("168h"), Ok(604_800));
        for bad in ["", "s", "10", "1d", "-5m", "5 m", "m5"] {
            let error = parse_after(bad).expect_err(bad);
            assert!(error.contains("is not an idle time"), "{bad}: {error}");
        }
        for out in ["5s", "169h", "999999h"] {
            let error = parse_after(out).expect_err(out);
            assert!(error.contains("outside 10s to 168h"), "{out}: {error}");
        }
    }
}
