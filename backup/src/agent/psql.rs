//! The agent's way to PostgreSQL: `psql` as a child process over the
//! server's Unix socket (no SQL client linked into the binary), never
//! through a shell, each call bounded in time. Parsing of its unaligned,
//! tuples-only output is pure and unit-tested.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;
use tokio::process::Command;

use crate::base::ServerArgs;

/// How long a connection attempt may take (`PGCONNECT_TIMEOUT`).
const CONNECT_TIMEOUT_SECS: &str = "5";
/// At most this much of psql's stderr goes into an error message.
const MAX_STDERR: usize = 600;

/// Runs SQL with `psql -XAtq -v ON_ERROR_STOP=1` as one user over one
/// socket directory.
#[derive(Debug, Clone)]
pub struct Psql {
    program: PathBuf,
    host: String,
    port: u16,
    user: String,
}

/// psql could not run, failed, or did not answer in time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PsqlError {
    /// The program could not be started.
    #[error("cannot run psql ({program}): {message}")]
    Spawn {
        /// The program path.
        program: String,
        /// The reason.
        message: String,
    },
    /// psql exited with an error (server down, SQL error).
    #[error("psql: {0}")]
    Failed(String),
    /// No answer within the limit.
    #[error("psql: no answer from PostgreSQL within {0} s")]
    Timeout(u64),
    /// The answer had an unexpected shape.
    #[error("psql: unexpected answer {0:?}")]
    Unexpected(String),
}

impl Psql {
    /// psql from `server`'s bindir (or the PATH), connecting as its user
    /// to its socket directory and port.
    pub fn new(server: &ServerArgs) -> Psql {
        Psql {
            program: server.program("psql"),
            host: server.host.clone(),
            port: server.port,
            user: server.user.clone(),
        }
    }

    /// Runs each of `commands` (one `-c` each, in order) in the `postgres`
    /// database; returns the non-empty output lines. The child is killed
    /// when `limit` passes.
    pub async fn run(&self, commands: &[&str], limit: Duration) -> Result<Vec<String>, PsqlError> {
        let mut cmd = Command::new(&self.program);
        cmd.args(["-X", "-A", "-t", "-q", "-w", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", &self.host, "-p", &self.port.to_string()])
            .args(["-U", &self.user, "-d", "postgres"]);
        for sql in commands {
            cmd.args(["-c", sql]);
        }
        cmd.env("PGCONNECT_TIMEOUT", CONNECT_TIMEOUT_SECS)
            .env("PGAPPNAME", "atoll-backup-agent")
            .env_remove("PGPASSWORD")
            .env_remove("PGDATABASE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|e| PsqlError::Spawn {
            program: self.program.display().to_string(),
            message: e.to_string(),
        })?;
        let out = tokio::time::timeout(limit, child.wait_with_output())
            .await
            .map_err(|_| PsqlError::Timeout(limit.as_secs()))?
            .map_err(|e| PsqlError::Failed(e.to_string()))?;
        if !out.status.success() {
            return Err(PsqlError::Failed(stderr_text(&out.stderr, out.status)));
        }
        Ok(lines(&String::from_utf8_lossy(&out.stdout)))
    }
}

/// psql's stderr, on one line and bounded.
fn stderr_text(stderr: &[u8], status: std::process::ExitStatus) -> String {
    let text = String::from_utf8_lossy(stderr);
    let mut joined = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    if joined.is_empty() {
        joined = format!("exited with {status}");
    }
    if joined.len() > MAX_STDERR {
        let mut end = MAX_STDERR;
        while !joined.is_char_boundary(end) {
            end -= 1;
        }
        joined.truncate(end);
        joined.push('…');
    }
    joined
}

fn lines(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A timestamp column as microseconds since the epoch (`''` for NULL).
macro_rules! epoch_us {
    ($col:literal) => {
        concat!(
            "coalesce((extract(epoch from ",
            $col,
            ") * 1000000)::bigint::text, '')"
        )
    };
}

/// One row: `pg_stat_archiver`, the system identifier and the version.
pub const STATUS_SQL: &str = concat!(
    "select a.archived_count, coalesce(a.last_archived_wal, ''), ",
    epoch_us!("a.last_archived_time"),
    ", a.failed_count, coalesce(a.last_failed_wal, ''), ",
    epoch_us!("a.last_failed_time"),
    ", s.system_identifier::text, current_setting('server_version_num') ",
    "from pg_stat_archiver a, pg_control_system() s"
);

/// The server's clock before the switch, in microseconds since the epoch.
pub const CLOCK_SQL: &str = concat!("select ", epoch_us!("clock_timestamp()"));

/// Switches to a new WAL segment; the switch LSN and the segment it
/// completed (`pg_walfile_name` names the segment holding the byte before
/// the LSN).
pub const SWITCH_SQL: &str = "select s.lsn, pg_walfile_name(s.lsn) from pg_switch_wal() as s(lsn)";

/// `pg_stat_archiver` (PostgreSQL's own account of archiving).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Archiver {
    /// Files archived since the statistics were reset.
    pub archived_count: u64,
    /// The last file archived.
    pub last_archived_wal: Option<String>,
    /// When.
    pub last_archived_time: Option<jiff::Timestamp>,
    /// Failed attempts.
    pub failed_count: u64,
    /// The file of the last failure.
    pub last_failed_wal: Option<String>,
    /// When.
    pub last_failed_time: Option<jiff::Timestamp>,
}

/// What one [`STATUS_SQL`] row says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStatus {
    /// Archiving.
    pub archiver: Archiver,
    /// `pg_control_system().system_identifier`.
    pub system_identifier: String,
    /// `server_version_num / 10000`.
    pub pg_major: u32,
}

/// Parses one [`STATUS_SQL`] row.
pub fn parse_status(lines: &[String]) -> Result<ServerStatus, PsqlError> {
    let unexpected = || PsqlError::Unexpected(lines.join("\n"));
    let [line] = lines else {
        return Err(unexpected());
    };
    let f: Vec<&str> = line.split('|').collect();
    let [
        archived,
        last_wal,
        last_time,
        failed,
        failed_wal,
        failed_time,
        system,
        version,
    ] = f.as_slice()
    else {
        return Err(unexpected());
    };
    let count = |s: &str| s.parse::<u64>().map_err(|_| unexpected());
    let time = |s: &str| parse_epoch_us(s).ok_or_else(unexpected);
    let version: u32 = version.parse().map_err(|_| unexpected())?;
    if system.is_empty() || !system.bytes().all(|b| b.is_ascii_digit()) {
        return Err(unexpected());
    }
    Ok(ServerStatus {
        archiver: Archiver {
            archived_count: count(archived)?,
            last_archived_wal: non_empty(last_wal),
            last_archived_time: time(last_time)?,
            failed_count: count(failed)?,
            last_failed_wal: non_empty(failed_wal),
            last_failed_time: time(failed_time)?,
        },
        system_identifier: (*system).to_owned(),
        pg_major: version / 10000,
    })
}

/// `''` → `Ok(None)`; microseconds since the epoch → the time; else `None`.
fn parse_epoch_us(text: &str) -> Option<Option<jiff::Timestamp>> {
    if text.is_empty() {
        return Some(None);
    }
    let us: i64 = text.parse().ok()?;
    jiff::Timestamp::from_microsecond(us).ok().map(Some)
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

/// The result of [`CLOCK_SQL`] then [`SWITCH_SQL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switched {
    /// The server's time just before the switch.
    pub time: jiff::Timestamp,
    /// The switch LSN (`X/Y`).
    pub lsn: String,
    /// The segment the switch completed.
    pub wal: String,
}

/// Parses the two lines of a switch.
pub fn parse_switch(lines: &[String]) -> Result<Switched, PsqlError> {
    let unexpected = || PsqlError::Unexpected(lines.join("\n"));
    let [clock, switch] = lines else {
        return Err(unexpected());
    };
    let time = parse_epoch_us(clock).flatten().ok_or_else(unexpected)?;
    let (lsn, wal) = switch.split_once('|').ok_or_else(unexpected)?;
    let lsn_ok = lsn
        .split_once('/')
        .is_some_and(|(a, b)| is_hex(a, 1..=8) && is_hex(b, 1..=8));
    if !lsn_ok || !is_segment_name(wal) {
        return Err(unexpected());
    }
    Ok(Switched {
        time,
        lsn: lsn.to_owned(),
        wal: wal.to_owned(),
    })
}

fn is_hex(text: &str, len: std::ops::RangeInclusive<usize>) -> bool {
    len.contains(&text.len()) && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A WAL segment file name: 24 upper-case hex digits.
pub fn is_segment_name(name: &str) -> bool {
    name.len() == 24 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F'))
}

/// Whether `pg_stat_archiver.last_archived_wal = last` proves that segment
/// `target` is archived. The archiver stores files in name order and
/// retries a failing one before any later one, so a later segment (or a
/// later segment's backup history file) proves it; `<target>.<off>.backup`
/// does not (it is marked ready before its segment is complete); a
/// timeline history file proves nothing.
pub fn proves_archived(last: Option<&str>, target: &str) -> bool {
    let Some(last) = last else {
        return false;
    };
    let Some(segment) = last.get(..24).filter(|s| is_segment_name(s)) else {
        return false;
    };
    match segment.cmp(target) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Equal => last.len() == 24,
        std::cmp::Ordering::Less => false,
    }
}

#[cfg(test)]
#[path = "psql_tests.rs"]
mod tests;
