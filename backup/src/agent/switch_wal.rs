//! `POST /switch-wal`: `pg_switch_wal()`, then wait until PostgreSQL's
//! archiver reports the completed segment archived. Success proves that
//! all WAL written before `time` is in the store; a timeout tells the
//! caller that archiving is stuck.

use std::time::Duration;

use serde::Serialize;

use super::Agent;
use super::psql::{self, Archiver, PsqlError, Switched};
use super::status::server_status;
use crate::status as push_status;

/// The longest the switch itself may take.
const SWITCH_TIMEOUT: Duration = Duration::from_secs(15);
/// How often the archiver's progress is read.
const POLL: Duration = Duration::from_millis(250);

/// `200` of `POST /switch-wal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SwitchReport {
    /// The server's time just before the switch: all WAL up to it is
    /// archived.
    pub time: jiff::Timestamp,
    /// The segment the switch completed (now archived).
    pub wal: String,
    /// The switch LSN.
    pub lsn: String,
}

impl From<Switched> for SwitchReport {
    fn from(s: Switched) -> SwitchReport {
        SwitchReport {
            time: s.time,
            wal: s.wal,
            lsn: s.lsn,
        }
    }
}

/// Why the switch did not end archived.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    /// PostgreSQL did not answer or refused (down, in recovery).
    #[error("cannot switch WAL: {0}")]
    Postgres(#[from] PsqlError),
    /// The segment was not archived in time.
    #[error("{message}")]
    NotArchived {
        /// What was switched.
        switched: SwitchReport,
        /// What the archiver and the last wal-push said.
        message: String,
    },
}

/// Switches WAL and waits up to the agent's limit for the segment to be
/// archived.
pub async fn switch_wal(agent: &Agent) -> Result<SwitchReport, SwitchError> {
    let lines = agent
        .psql
        .run(&[psql::CLOCK_SQL, psql::SWITCH_SQL], SWITCH_TIMEOUT)
        .await?;
    let switched = psql::parse_switch(&lines)?;
    let mut seen: Option<Result<Archiver, PsqlError>> = None;
    let limit = agent.switch_timeout;
    let waited = tokio::time::timeout(limit, wait_archived(agent, &switched.wal, &mut seen)).await;
    if waited.is_ok() {
        return Ok(switched.into());
    }
    let message = not_archived_message(agent, &switched, limit, seen);
    eprintln!("atoll-backup agent: {message}");
    Err(SwitchError::NotArchived {
        switched: switched.into(),
        message,
    })
}

/// Polls `pg_stat_archiver` until it proves `wal` archived; keeps the last
/// observation in `seen`.
async fn wait_archived(agent: &Agent, wal: &str, seen: &mut Option<Result<Archiver, PsqlError>>) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match server_status(agent).await {
            Ok(status) => {
                if psql::proves_archived(status.archiver.last_archived_wal.as_deref(), wal) {
                    return;
                }
                *seen = Some(Ok(status.archiver));
            }
            Err(e) => *seen = Some(Err(e)),
        }
    }
}

/// Names the segment, the archiver's last success and failure, and the
/// last wal-push error (the store's own words, redacted).
fn not_archived_message(
    agent: &Agent,
    switched: &Switched,
    limit: Duration,
    seen: Option<Result<Archiver, PsqlError>>,
) -> String {
    let mut message = format!(
        "WAL segment {} (switched at LSN {}) was not archived within {} s",
        switched.wal,
        switched.lsn,
        limit.as_secs()
    );
    match seen {
        Some(Ok(a)) => {
            let last = a.last_archived_wal.as_deref().unwrap_or("none");
            message.push_str(&format!("; last archived: {last}"));
            if let (Some(wal), Some(time)) = (&a.last_failed_wal, a.last_failed_time) {
                message.push_str(&format!(
                    "; {} failed attempts, the last for {wal} at {time}",
                    a.failed_count
                ));
            }
        }
        Some(Err(e)) => message.push_str(&format!("; PostgreSQL: {e}")),
        None => {}
    }
    if let Ok(Some(push)) = push_status::read(&agent.status_dir)
        && let Some(error) = push.error.filter(|_| !push.ok)
    {
        message.push_str(&format!("; last wal-push ({}): {error}", push.segment));
    }
    agent.redact(&message)
}
