//! Cron schedules: parsing (five fields, or six with seconds), time zones
//! and the ticks due in a window. Pure: the engine's trigger loop fires
//! them (`engine/triggers/schedule.rs`).

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::Timestamp;
use jiff::tz::TimeZone;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("`{cron}` is not a valid cron expression: {reason}")]
    Cron { cron: String, reason: String },
    #[error("`{0}` is not a known time zone (use an IANA name such as Europe/Paris)")]
    TimeZone(String),
}

/// A parsed cron expression in its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    tz: TimeZone,
}

/// How many ticks one call to [`Schedule::due`] returns at most, so a long
/// outage or an old backfill start is caught up in bounded steps.
pub const MAX_DUE: usize = 1000;

impl Schedule {
    /// `with_seconds`: the expression has six fields, the first is seconds
    /// (Kestra's `withSeconds`). Without it, five fields (minute first).
    /// `timezone`: an IANA name; UTC when absent.
    pub fn parse(
        cron: &str,
        with_seconds: bool,
        timezone: Option<&str>,
    ) -> Result<Schedule, ScheduleError> {
        let shown = shown(cron);
        if cron.trim().is_empty() || cron.len() > 200 {
            return Err(ScheduleError::Cron {
                cron: shown,
                reason: "expected five fields (six with withSeconds)".into(),
            });
        }
        let seconds = if with_seconds {
            Seconds::Required
        } else {
            Seconds::Disallowed
        };
        let parser = CronParser::builder()
            .seconds(seconds)
            .year(Year::Disallowed)
            .build();
        let cron = parser.parse(cron).map_err(|e| ScheduleError::Cron {
            cron: shown,
            reason: e.to_string(),
        })?;
        let tz = match timezone {
            None => TimeZone::UTC,
            Some(name) => {
                TimeZone::get(name).map_err(|_| ScheduleError::TimeZone(shown_tz(name)))?
            }
        };
        Ok(Schedule { cron, tz })
    }

    /// The first tick strictly after `after`, if the expression has one.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let zoned = after.to_zoned(self.tz.clone());
        self.cron
            .find_next_occurrence(&zoned, false)
            .ok()
            .map(|z| z.timestamp())
    }

    /// Ticks in `(after, until]`, oldest first, at most [`MAX_DUE`].
    pub fn due(&self, after: Timestamp, until: Timestamp) -> Vec<Timestamp> {
        let mut ticks = Vec::new();
        let mut cursor = after;
        while ticks.len() < MAX_DUE {
            match self.next_after(cursor) {
                Some(tick) if tick <= until => {
                    ticks.push(tick);
                    cursor = tick;
                }
                _ => break,
            }
        }
        ticks
    }
}

/// Quotes user text in messages only when it is short printable ASCII.
fn shown(text: &str) -> String {
    if text.len() <= 200 && text.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
        text.to_owned()
    } else {
        "(not printable)".into()
    }
}

fn shown_tz(name: &str) -> String {
    if name.len() <= 64 && name.chars().all(|c| c.is_ascii_graphic()) {
        name.to_owned()
    } else {
        "(not printable)".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    #[test]
    fn five_fields_tick_on_minutes() {
        let s = Schedule::parse("*/15 * * * *", false, None).expect("valid");
        assert_eq!(
            s.next_after(ts("2024-01-01T10:07:30Z")),
            Some(ts("2024-01-01T10:15:00Z"))
        );
        // Strictly after: a tick is never returned twice.
        assert_eq!(
            s.next_after(ts("2024-01-01T10:15:00Z")),
            Some(ts("2024-01-01T10:30:00Z"))
        );
    }

    #[test]
    fn six_fields_with_seconds() {
        let s = Schedule::parse("*/2 * * * * *", true, None).expect("valid");
        let due = s.due(ts("2024-01-01T00:00:00Z"), ts("2024-01-01T00:00:07Z"));
        let secs: Vec<i64> = due.iter().map(|t| t.as_second() % 60).collect();
        assert_eq!(secs, [2, 4, 6]);
        // Six fields need withSeconds, and five are refused with it.
        assert!(Schedule::parse("*/2 * * * * *", false, None).is_err());
        assert!(Schedule::parse("* * * * *", true, None).is_err());
    }

    #[test]
    fn time_zones_shift_ticks() {
        let s = Schedule::parse("0 9 * * *", false, Some("Europe/Paris")).expect("valid");
        // 09:00 in Paris is 08:00 UTC in winter and 07:00 UTC in summer.
        assert_eq!(
            s.next_after(ts("2024-01-15T00:00:00Z")),
            Some(ts("2024-01-15T08:00:00Z"))
        );
        assert_eq!(
            s.next_after(ts("2024-07-15T00:00:00Z")),
            Some(ts("2024-07-15T07:00:00Z"))
        );
    }

    #[test]
    fn bad_expressions_and_zones_are_named() {
        let err = Schedule::parse("61 * * * *", false, None).expect_err("bad minute");
        assert!(err.to_string().contains("61 * * * *"), "{err}");
        let err = Schedule::parse("* * * * *", false, Some("Mars/Olympus")).expect_err("bad tz");
        assert!(err.to_string().contains("Mars/Olympus"), "{err}");
        assert!(Schedule::parse("", false, None).is_err());
    }

    #[test]
    fn due_is_bounded() {
        let s = Schedule::parse("* * * * * *", true, None).expect("valid");
        let due = s.due(ts("2024-01-01T00:00:00Z"), ts("2024-01-02T00:00:00Z"));
        assert_eq!(due.len(), MAX_DUE);
    }
}
