//! When a tenant's next scheduled base backup is due (contract §7). Pure:
//! the reconciler gathers the history (catalog and TenantBackups) and
//! creates a TenantBackup when [`decide`] says so.

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::{SignedDuration, Timestamp};

/// How long after a failed first backup the next attempt starts (the
/// schedule may be a day away, and without a base backup nothing is
/// recoverable).
pub const FIRST_BACKUP_RETRY: SignedDuration = SignedDuration::from_mins(10);

/// A parsed `spec.backup.schedule` (UTC).
#[derive(Clone, Debug)]
pub struct Schedule(Cron);

impl Schedule {
    /// Parses a 5-field cron expression; the message says what is wrong.
    pub fn parse(expression: &str) -> Result<Schedule, String> {
        let parser = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build();
        parser
            .parse(expression)
            .map(Schedule)
            .map_err(|e| format!("spec.backup.schedule is not a valid cron expression: {e}"))
    }

    /// The first run strictly after `after`.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let zoned = after.to_zoned(jiff::tz::TimeZone::UTC);
        self.0
            .find_next_occurrence(&zoned, false)
            .ok()
            .map(|z| z.timestamp())
    }
}

/// What is known of a tenant's backups.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    /// A TenantBackup of the tenant is Pending or Running.
    pub in_flight: bool,
    /// A complete base backup exists (in the store, or a Completed
    /// TenantBackup).
    pub has_complete: bool,
    /// The start of the newest backup or attempt of any outcome.
    pub newest_start: Option<Timestamp>,
    /// When the newest failed attempt ended.
    pub last_failure: Option<Timestamp>,
    /// When backups were enabled for this Tenant (its creation).
    pub created: Option<Timestamp>,
}

/// What to do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Create a TenantBackup now; `first` when it is the tenant's first.
    Due {
        /// No complete base backup exists yet.
        first: bool,
    },
    /// Look again at this time (`None`: when the running backup ends).
    Wait(Option<Timestamp>),
}

/// Whether a backup is due at `now`.
pub fn decide(schedule: &Schedule, history: &History, now: Timestamp) -> Decision {
    if history.in_flight {
        return Decision::Wait(None);
    }
    if !history.has_complete {
        // The first base backup right away; after a failure, again soon.
        return match history.last_failure.map(|t| t + FIRST_BACKUP_RETRY) {
            Some(retry) if retry > now => Decision::Wait(Some(retry)),
            _ => Decision::Due { first: true },
        };
    }
    let anchor = history.newest_start.or(history.created).unwrap_or(now);
    match schedule.next_after(anchor) {
        Some(next) if next <= now => Decision::Due { first: false },
        next => Decision::Wait(next),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn daily() -> Schedule {
        Schedule::parse("0 3 * * *").expect("cron")
    }

    #[test]
    fn next_run_is_strictly_after_in_utc() {
        let s = daily();
        assert_eq!(
            s.next_after(ts("2026-12-07T02:59:59Z")),
            Some(ts("2026-12-07T03:00:00Z"))
        );
        assert_eq!(
            s.next_after(ts("2026-12-07T03:00:00Z")),
            Some(ts("2026-12-08T03:00:00Z"))
        );
        let sundays = Schedule::parse("30 1 * * 7").expect("cron");
        // 2026-12-07 is a Monday.
        assert_eq!(
            sundays.next_after(ts("2026-12-07T00:00:00Z")),
            Some(ts("2026-12-13T01:30:00Z"))
        );
        let every = Schedule::parse("*/15 * * * *").expect("cron");
        assert_eq!(
            every.next_after(ts("2026-12-07T10:07:00Z")),
            Some(ts("2026-12-07T10:15:00Z"))
        );
    }

    #[test]
    fn bad_expressions_say_which_field() {
        let error = Schedule::parse("0 3 * *").expect_err("4 fields");
        assert!(error.starts_with("spec.backup.schedule"), "{error}");
        assert!(Schedule::parse("61 * * * *").is_err());
    }

    #[test]
    fn the_first_backup_is_due_at_once() {
        let history = History {
            created: Some(ts("2026-12-07T10:00:00Z")),
            ..History::default()
        };
        let now = ts("2026-12-07T10:00:05Z");
        assert_eq!(
            decide(&daily(), &history, now),
            Decision::Due { first: true }
        );
    }

    #[test]
    fn a_failed_first_backup_is_retried_after_a_pause() {
        let history = History {
            last_failure: Some(ts("2026-12-07T10:00:00Z")),
            newest_start: Some(ts("2026-12-07T09:59:00Z")),
            ..History::default()
        };
        assert_eq!(
            decide(&daily(), &history, ts("2026-12-07T10:05:00Z")),
            Decision::Wait(Some(ts("2026-12-07T10:10:00Z")))
        );
        assert_eq!(
            decide(&daily(), &history, ts("2026-12-07T10:10:00Z")),
            Decision::Due { first: true }
        );
    }

    #[test]
    fn later_backups_follow_the_schedule_from_the_newest_start() {
        let history = History {
            has_complete: true,
            newest_start: Some(ts("2026-12-07T10:00:00Z")),
            created: Some(ts("2026-12-01T00:00:00Z")),
            ..History::default()
        };
        assert_eq!(
            decide(&daily(), &history, ts("2026-12-08T02:00:00Z")),
            Decision::Wait(Some(ts("2026-12-08T03:00:00Z")))
        );
        assert_eq!(
            decide(&daily(), &history, ts("2026-12-08T03:00:01Z")),
            Decision::Due { first: false }
        );
        // Days of downtime: one backup now, not one per missed day.
        assert_eq!(
            decide(&daily(), &history, ts("2026-12-20T12:00:00Z")),
            Decision::Due { first: false }
        );
    }

    #[test]
    fn nothing_is_due_while_a_backup_runs() {
        let history = History {
            in_flight: true,
            ..History::default()
        };
        assert_eq!(
            decide(&daily(), &history, ts("2026-12-08T03:00:01Z")),
            Decision::Wait(None)
        );
    }
}
