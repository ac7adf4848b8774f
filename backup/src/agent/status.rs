//! `GET /status`: archiving as PostgreSQL sees it (`pg_stat_archiver`),
//! the last `wal-push` result (status directory), the segments still
//! waiting in `pg_wal`, base backups, and the server's identity. Each part
//! is gathered on its own: what cannot be read is `null` and named in
//! `error`, so the answer is useful while PostgreSQL is not up.

use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;

use super::Agent;
use super::backups::BackupSummary;
use super::psql::{self, Archiver, PsqlError, ServerStatus};
use crate::status::{self as push_status, PushStatus};

/// The longest the status query may take.
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);

/// `GET /status`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    /// `pg_stat_archiver`; `null` when PostgreSQL did not answer.
    pub archiver: Option<Archiver>,
    /// The last `wal-push` (`null`: none yet or unreadable).
    pub last_push: Option<PushStatus>,
    /// `*.ready` files in `PGDATA/pg_wal/archive_status`.
    pub pending_segments: Option<u64>,
    /// Their size in `pg_wal`.
    pub pending_bytes: Option<u64>,
    /// Base backups.
    pub backup: BackupSummary,
    /// `pg_control_system().system_identifier` (remembered once known).
    pub system_identifier: Option<String>,
    /// The server's major version (from the server, else `PG_VERSION`).
    pub pg_major: Option<u32>,
    /// When this report was made.
    pub time: jiff::Timestamp,
    /// What could not be read, `; `-separated; `null` when all was.
    pub error: Option<String>,
}

/// The server's identity, remembered across reports (it does not change
/// while the agent runs).
#[derive(Debug, Default)]
pub struct Facts(Mutex<Option<(String, u32)>>);

impl Facts {
    fn remember(&self, status: &ServerStatus) {
        let facts = (status.system_identifier.clone(), status.pg_major);
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(facts);
    }

    fn get(&self) -> Option<(String, u32)> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Asks PostgreSQL for [`psql::STATUS_SQL`].
pub async fn server_status(agent: &Agent) -> Result<ServerStatus, PsqlError> {
    let lines = agent.psql.run(&[psql::STATUS_SQL], STATUS_TIMEOUT).await?;
    let status = psql::parse_status(&lines)?;
    agent.facts.remember(&status);
    Ok(status)
}

/// Builds the report.
pub async fn report(agent: &Agent) -> StatusReport {
    let mut errors = Vec::new();
    let server = server_status(agent)
        .await
        .map_err(|e| errors.push(format!("PostgreSQL: {e}")))
        .ok();
    let last_push = push_status::read(&agent.status_dir)
        .map_err(|e| errors.push(format!("last wal-push: {e}")))
        .ok()
        .flatten();
    let pending = pending(&agent.pgdata)
        .map_err(|e| errors.push(format!("pending segments: {e}")))
        .ok();
    let facts = agent.facts.get();
    let pg_major = facts
        .as_ref()
        .map(|f| f.1)
        .or_else(|| pg_version_file(&agent.pgdata));
    StatusReport {
        archiver: server.map(|s| s.archiver),
        last_push,
        pending_segments: pending.map(|p| p.0),
        pending_bytes: pending.map(|p| p.1),
        backup: agent.backups.summary(),
        system_identifier: facts.map(|f| f.0),
        pg_major,
        time: jiff::Timestamp::now(),
        error: (!errors.is_empty()).then(|| agent.redact(&errors.join("; "))),
    }
}

/// The number of WAL files waiting for the archiver (`*.ready` in
/// `pg_wal/archive_status`) and the size of those still in `pg_wal`.
pub fn pending(pgdata: &Path) -> Result<(u64, u64), String> {
    let wal = pgdata.join("pg_wal");
    let dir = wal.join("archive_status");
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut count = 0;
    let mut bytes = 0;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let name = entry.file_name();
        let Some(file) = name.to_str().and_then(|n| n.strip_suffix(".ready")) else {
            continue;
        };
        count += 1;
        // The file may be archived and recycled meanwhile: size 0 then.
        bytes += std::fs::metadata(wal.join(file)).map_or(0, |m| m.len());
    }
    Ok((count, bytes))
}

/// The major version in `PGDATA/PG_VERSION` (readable while the server is
/// down).
pub fn pg_version_file(pgdata: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(pgdata.join("PG_VERSION")).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_ready_files_and_their_segments() {
        let pgdata = tempfile::tempdir().expect("temp dir");
        let status = pgdata.path().join("pg_wal/archive_status");
        std::fs::create_dir_all(&status).expect("mkdir");
        let wal = pgdata.path().join("pg_wal");
        std::fs::write(wal.join("000000010000000000000003"), [0u8; 1000]).expect("segment");
        std::fs::write(wal.join("000000010000000000000004"), [0u8; 24]).expect("segment");
        for name in [
            "000000010000000000000002.done",
            "000000010000000000000003.ready",
            "000000010000000000000004.ready",
            // Already recycled: counted, no bytes.
            "000000010000000000000005.ready",
        ] {
            std::fs::write(status.join(name), "").expect("status file");
        }
        assert_eq!(pending(pgdata.path()), Ok((3, 1024)));
        std::fs::write(pgdata.path().join("PG_VERSION"), "15\n").expect("version");
        assert_eq!(pg_version_file(pgdata.path()), Some(15));
    }

    #[test]
    fn a_missing_pgdata_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("pgdata");
        let err = pending(&missing).expect_err("missing");
        assert!(err.contains("pgdata/pg_wal/archive_status"), "{err}");
        assert_eq!(pg_version_file(&missing), None);
    }
}
