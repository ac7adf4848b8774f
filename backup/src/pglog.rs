//! Reading a recovering PostgreSQL 15 server's log (`lc_messages=C`,
//! `timezone=UTC`): the lines that say how a point-in-time recovery ended.
//! Pure; the restore feeds it the server's stderr line by line.

use crate::label::Lsn;

/// One line that matters for the outcome of a recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `restored log file "<name>" from archive`.
    Restored(String),
    /// `consistent recovery state reached at <lsn>`.
    Consistent(Lsn),
    /// `recovery stopping before commit of transaction N, time T` (or
    /// abort, or "after"): the target was reached.
    Stopping(Option<jiff::Timestamp>),
    /// `redo done at <lsn> ...`: replay ended there.
    RedoDone(Lsn),
    /// `last completed transaction was at log time T`.
    LastCompleted(jiff::Timestamp),
    /// `recovery ended before configured recovery target was reached`:
    /// the archive ends before the target (or has no commit after it).
    EndedBeforeTarget,
    /// `requested recovery stop point is before consistent recovery point`.
    BeforeConsistent,
    /// `selected new timeline ID: N`.
    NewTimeline(u32),
    /// `archive recovery complete`.
    RecoveryComplete,
    /// `database system is ready to accept connections` (read-write).
    Ready,
    /// Any other `FATAL:` or `PANIC:` line (its message).
    Fatal(String),
}

/// The event of one log line, if any.
pub fn parse_line(line: &str) -> Option<Event> {
    let msg = message(line);
    if let Some(rest) = msg.strip_prefix("restored log file \"") {
        return rest
            .split_once('"')
            .map(|(name, _)| Event::Restored(name.to_owned()));
    }
    if let Some(rest) = msg.strip_prefix("consistent recovery state reached at ") {
        return rest.trim().parse().ok().map(Event::Consistent);
    }
    if msg.starts_with("recovery stopping ") {
        let time = msg
            .rsplit_once(", time ")
            .and_then(|(_, t)| parse_log_time(t));
        return Some(Event::Stopping(time));
    }
    if let Some(rest) = msg.strip_prefix("redo done at ") {
        let lsn = rest.split_whitespace().next()?;
        return lsn.parse().ok().map(Event::RedoDone);
    }
    if let Some(rest) = msg.strip_prefix("last completed transaction was at log time ") {
        return parse_log_time(rest).map(Event::LastCompleted);
    }
    if let Some(rest) = msg.strip_prefix("selected new timeline ID: ") {
        return rest.trim().parse().ok().map(Event::NewTimeline);
    }
    let fixed = [
        (
            "recovery ended before configured recovery target was reached",
            Event::EndedBeforeTarget,
        ),
        (
            "requested recovery stop point is before consistent recovery point",
            Event::BeforeConsistent,
        ),
        ("archive recovery complete", Event::RecoveryComplete),
        (
            "database system is ready to accept connections",
            Event::Ready,
        ),
    ];
    if let Some((_, event)) = fixed.into_iter().find(|(text, _)| msg == *text) {
        return Some(event);
    }
    severity_message(line, "FATAL:")
        .or_else(|| severity_message(line, "PANIC:"))
        .map(|m| Event::Fatal(m.to_owned()))
}

/// The message of a line after its prefix (`%m [%p] LOG:  `), or the
/// whole line when it has no recognised severity.
fn message(line: &str) -> &str {
    ["LOG:", "FATAL:", "PANIC:", "WARNING:", "DETAIL:", "HINT:"]
        .iter()
        .find_map(|sev| severity_message(line, sev))
        .unwrap_or(line.trim())
}

fn severity_message<'a>(line: &'a str, severity: &str) -> Option<&'a str> {
    let at = line.find(severity)?;
    Some(line[at + severity.len()..].trim())
}

/// A time as the server logs it with `timezone=UTC`:
/// `2026-12-07 11:15:13.075392+00` (also `+05:30`, `-08`).
pub fn parse_log_time(text: &str) -> Option<jiff::Timestamp> {
    let text = text.trim();
    // The offset sign comes after the date's own hyphens (position 10+).
    let pos = text.get(10..)?.rfind(['+', '-'])? + 10;
    let (civil, offset) = text.split_at(pos);
    let civil: jiff::civil::DateTime = civil.replacen(' ', "T", 1).parse().ok()?;
    let sign = if offset.starts_with('-') { -1 } else { 1 };
    let (hours, minutes) = match offset[1..].split_once(':') {
        Some((h, m)) => (h.parse::<i32>().ok()?, m.parse::<i32>().ok()?),
        None => (offset[1..].parse::<i32>().ok()?, 0),
    };
    let offset = jiff::tz::Offset::from_seconds(sign * (hours * 3600 + minutes * 60)).ok()?;
    civil
        .to_zoned(jiff::tz::TimeZone::fixed(offset))
        .ok()
        .map(|z| z.timestamp())
}

/// A time as `recovery_target_time` accepts it: PostgreSQL 15 refuses a
/// trailing `Z` at startup (zone abbreviations are not loaded yet), so the
/// offset is written `+00:00`. Microsecond precision, like PostgreSQL.
pub fn format_target_time(time: jiff::Timestamp) -> String {
    let dt = time.to_zoned(jiff::tz::TimeZone::UTC).datetime();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}+00:00",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.subsec_nanosecond() / 1000
    )
}

/// Everything learnt from the log so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryLog {
    /// The last WAL file restored from the archive.
    pub last_restored: Option<String>,
    /// Where the database became consistent.
    pub consistent_at: Option<Lsn>,
    /// The recovery target was met (`recovery stopping ...`), with the
    /// time of the first transaction not applied.
    pub stopped: Option<Option<jiff::Timestamp>>,
    /// Where replay ended.
    pub redo_done: Option<Lsn>,
    /// The last transaction replayed (the time recovered to).
    pub last_completed: Option<jiff::Timestamp>,
    /// The archive ended before the target.
    pub ended_before_target: bool,
    /// The target lies before the backup's consistency point.
    pub before_consistent: bool,
    /// The timeline chosen at promotion.
    pub new_timeline: Option<u32>,
    /// Recovery finished and the server was promoted.
    pub recovery_complete: bool,
    /// The promoted server accepts connections.
    pub ready: bool,
    /// The first other FATAL/PANIC message.
    pub fatal: Option<String>,
}

impl RecoveryLog {
    /// Takes one log line into account.
    pub fn feed(&mut self, line: &str) {
        let Some(event) = parse_line(line) else {
            return;
        };
        match event {
            Event::Restored(name) => self.last_restored = Some(name),
            Event::Consistent(lsn) => self.consistent_at = Some(lsn),
            Event::Stopping(time) => self.stopped = Some(time),
            Event::RedoDone(lsn) => self.redo_done = Some(lsn),
            Event::LastCompleted(time) => self.last_completed = Some(time),
            Event::EndedBeforeTarget => self.ended_before_target = true,
            Event::BeforeConsistent => self.before_consistent = true,
            Event::NewTimeline(tli) => self.new_timeline = Some(tli),
            Event::RecoveryComplete => self.recovery_complete = true,
            Event::Ready => self.ready = true,
            Event::Fatal(msg) => {
                self.fatal.get_or_insert(msg);
            }
        }
    }

    /// True once the server was promoted and serves (the wait is over).
    pub fn promoted(&self) -> bool {
        self.recovery_complete && self.ready
    }

    /// How the recovery ended, once the server was promoted or has exited.
    pub fn verdict(&self) -> Verdict {
        if self.promoted() {
            return Verdict::Promoted {
                reached: self.last_completed,
            };
        }
        if self.ended_before_target {
            return Verdict::EndOfArchive {
                reached: self.last_completed,
                redo_done: self.redo_done,
            };
        }
        if self.before_consistent {
            return Verdict::BeforeConsistent;
        }
        Verdict::Failed(self.fatal.clone())
    }
}

/// The outcome of a recovery as its log tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Recovered and promoted; `reached` = the last replayed transaction
    /// (`None` when the WAL held none after the backup).
    Promoted {
        /// The last transaction replayed.
        reached: Option<jiff::Timestamp>,
    },
    /// The archive ended before the target time: no transaction after
    /// `reached` exists in it.
    EndOfArchive {
        /// The last transaction replayed.
        reached: Option<jiff::Timestamp>,
        /// Where replay ended.
        redo_done: Option<Lsn>,
    },
    /// The target lies before the backup's consistency point.
    BeforeConsistent,
    /// Anything else; the first FATAL/PANIC message if there was one.
    Failed(Option<String>),
}

#[cfg(test)]
#[path = "pglog_tests.rs"]
mod tests;
