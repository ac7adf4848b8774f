//! `atoll-backup base-backup`: a base backup of the local server into the
//! tenant's prefix.
//!
//! `pg_basebackup -D - -Ft -X none -c fast` over the Unix socket writes one
//! tar (with `backup_label` first and `backup_manifest` last) to stdout;
//! it is LZ4-compressed into a multipart upload of
//! `base/<id>/base.tar.lz4`. With `-X none` the server switches WAL itself
//! at the end and returns only once the end segment and the backup history
//! file `<segment>.<offset>.backup` are archived, so the backup is usable
//! when it returns. That history file (read back from the archive, which
//! proves the WAL reached this store) gives the stop location;
//! `backup.json` is written last.

use std::path::PathBuf;
use std::pin::Pin;
use std::process::{ExitCode, Stdio};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use object_store::ObjectStore;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader, ReadBuf};
use tokio::process::Command;

use crate::catalog::{self, BackupInfo, CatalogError};
use crate::cli::DEFAULT_CONFIG_DIR;
use crate::label::{self, Label, LabelError, LabelSniffer};
use crate::layout::{BackupId, Layout, LayoutError};
use crate::settings::{Settings, SettingsError};
use crate::store::{self, Compression, StoreError};

/// `base-backup [--config DIR] [--id ID] [--name TENANTBACKUP] ...`.
#[derive(Debug, Clone, Args)]
pub struct BaseBackupArgs {
    /// The configuration directory (config.json, accessKeyId, secretAccessKey).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_CONFIG_DIR)]
    pub config: PathBuf,
    /// The backup id (YYYYMMDDTHHMMSSZ); default: now.
    #[arg(long)]
    pub id: Option<BackupId>,
    /// The TenantBackup this backup is for (recorded in backup.json).
    #[arg(long, value_name = "TENANTBACKUP")]
    pub name: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
    /// Give up (and abort the upload) after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 6 * 3600)]
    pub timeout: u64,
}

/// How to reach the local server (over its Unix socket, as `postgres`).
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// The socket directory.
    #[arg(long, env = "PGHOST", default_value = "/var/run/postgresql")]
    pub host: String,
    /// The port (names the socket file).
    #[arg(long, env = "PGPORT", default_value_t = 5432)]
    pub port: u16,
    /// The superuser.
    #[arg(long, default_value = "postgres")]
    pub user: String,
    /// Where pg_basebackup and psql are; default: the PATH.
    #[arg(long, value_name = "DIR", env = "ATOLL_PG_BINDIR")]
    pub bindir: Option<PathBuf>,
}

impl ServerArgs {
    /// The program `name` (in `--bindir`, or looked up on the PATH).
    pub fn program(&self, name: &str) -> PathBuf {
        self.bindir
            .as_ref()
            .map_or_else(|| PathBuf::from(name), |dir| dir.join(name))
    }

    fn command(&self, name: &str) -> Command {
        let mut cmd = Command::new(self.program(name));
        cmd.args([
            "-h",
            &self.host,
            "-p",
            &self.port.to_string(),
            "-U",
            &self.user,
        ])
        .arg("-w")
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGPASSWORD")
        .stdin(Stdio::null())
        .kill_on_drop(true);
        cmd
    }
}

/// Why a base backup failed.
#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    /// The configuration directory is wrong.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// A bad id or uid.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading the catalog failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A backup with this id exists.
    #[error("base backup {0} already exists")]
    Exists(BackupId),
    /// A PostgreSQL program could not run or failed.
    #[error("{program}: {message}")]
    Program {
        /// The program.
        program: String,
        /// What went wrong (its last stderr lines).
        message: String,
    },
    /// The stream had no backup label or the archive's history file is bad.
    #[error("{what}: {source}")]
    Label {
        /// Which label.
        what: String,
        /// The reason.
        source: LabelError,
    },
    /// The tar stream did not start with `backup_label`.
    #[error("pg_basebackup's output did not start with a backup_label")]
    NoLabel,
    /// The archive lacks the backup history file.
    #[error(
        "the WAL archive has no {0}: the server's archive_command does not push to this store (or under another tenant uid)"
    )]
    NoHistory(String),
    /// The backup took too long.
    #[error("pg_basebackup did not finish within {0} s (is WAL archiving failing?)")]
    Timeout(u64),
}

/// What the server says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFacts {
    /// `system_identifier` as text.
    pub system_identifier: String,
    /// `server_version_num / 10000`.
    pub pg_major: u32,
    /// `wal_segment_size` in bytes.
    pub segment_size: u64,
}

/// Parses `psql -At` output `7716518971410737218|150018|16777216`.
pub fn parse_facts(text: &str) -> Option<ServerFacts> {
    let mut parts = text.trim().split('|');
    let system_identifier = parts.next()?.trim();
    let version: u32 = parts.next()?.trim().parse().ok()?;
    let segment_size: u64 = parts.next()?.trim().parse().ok()?;
    let valid = !system_identifier.is_empty()
        && system_identifier.bytes().all(|b| b.is_ascii_digit())
        && segment_size.is_power_of_two();
    valid.then(|| ServerFacts {
        system_identifier: system_identifier.to_owned(),
        pg_major: version / 10000,
        segment_size,
    })
}

const FACTS_SQL: &str = "select system_identifier::text, current_setting('server_version_num'), \
     (select setting from pg_settings where name = 'wal_segment_size') from pg_control_system()";

/// Asks the server for its identity, version and WAL segment size.
pub async fn server_facts(server: &ServerArgs) -> Result<ServerFacts, BaseError> {
    let out = server
        .command("psql")
        .args(["-X", "-A", "-t", "-q", "-d", "postgres", "-c", FACTS_SQL])
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .map_err(|_| program_err("psql", "no answer within 60 s".into()))?
        .map_err(|e| program_err("psql", format!("cannot run: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(program_err(
            "psql",
            format!("{}: {}", out.status, stderr.trim()),
        ));
    }
    parse_facts(&stdout).ok_or_else(|| program_err("psql", format!("unexpected answer {stdout:?}")))
}

fn program_err(program: &str, message: String) -> BaseError {
    BaseError::Program {
        program: program.to_owned(),
        message,
    }
}

/// Passes a stream through while showing it to a [`LabelSniffer`].
struct Sniffing<R> {
    inner: R,
    sniffer: LabelSniffer,
}

impl<R: AsyncRead + Unpin> AsyncRead for Sniffing<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled {
            this.sniffer.feed(&buf.filled()[before..]);
        }
        polled
    }
}

/// Runs pg_basebackup into `key`; returns the stored size and the label.
async fn stream_backup(
    store: &dyn ObjectStore,
    key: &object_store::path::Path,
    server: &ServerArgs,
    id: BackupId,
) -> Result<(u64, String), BaseError> {
    let mut child = server
        .command("pg_basebackup")
        .args(["-D", "-", "-F", "tar", "-X", "none", "-c", "fast"])
        .arg(format!("--label=atoll-{id}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| program_err("pg_basebackup", format!("cannot run: {e}")))?;
    let stderr = child.stderr.take().map(collect_tail);
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| program_err("pg_basebackup", "no stdout".into()))?;
    let mut reader = Sniffing {
        inner: stdout,
        sniffer: LabelSniffer::new(),
    };
    let uploaded = store::put_stream(store, key, &mut reader, Compression::Lz4).await;
    let label = reader.sniffer.label();
    // Close the pipe before waiting: after a failed upload pg_basebackup
    // would otherwise block on a full pipe forever.
    drop(reader);
    if uploaded.is_err() {
        let _ = child.start_kill();
    }
    let status = child.wait().await;
    let tail = match stderr {
        Some(task) => task.await.unwrap_or_default(),
        None => String::new(),
    };
    let status = status.map_err(|e| program_err("pg_basebackup", e.to_string()))?;
    if !status.success() {
        return Err(program_err("pg_basebackup", format!("{status}: {tail}")));
    }
    let size = uploaded?;
    Ok((size, label.ok_or(BaseError::NoLabel)?))
}

/// Reads a child's stderr to its end; returns the last lines.
fn collect_tail<R: AsyncRead + Unpin + Send + 'static>(
    stream: R,
) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        let mut tail: std::collections::VecDeque<String> = std::collections::VecDeque::new();
        while let Ok(Some(line)) = lines.next_line().await {
            if tail.len() == 10 {
                tail.pop_front();
            }
            tail.push_back(line);
        }
        Vec::from(tail).join("; ")
    })
}

/// One backup being taken.
struct Job<'a> {
    store: &'a dyn ObjectStore,
    layout: &'a Layout,
    uid: &'a str,
    id: BackupId,
    name: Option<String>,
    facts: ServerFacts,
}

/// Takes a base backup of the server into the settings' tenant prefix and
/// records it; returns what `backup.json` says.
pub async fn base_backup(
    settings: &Settings,
    args: &BaseBackupArgs,
) -> Result<BackupInfo, BaseError> {
    let store = store::open(settings)?;
    let layout = Layout::new(settings.prefix.as_deref());
    let uid = settings.tenant_uid.as_str();
    let id = args.id.unwrap_or_else(BackupId::now);
    if catalog::get(store.as_ref(), &layout, uid, id)
        .await?
        .is_some()
    {
        return Err(BaseError::Exists(id));
    }
    let job = Job {
        store: store.as_ref(),
        layout: &layout,
        uid,
        id,
        name: args.name.clone(),
        facts: server_facts(&args.server).await?,
    };
    let started = jiff::Timestamp::now();
    let key = layout.base_tar(uid, id)?;
    let streamed = tokio::time::timeout(
        Duration::from_secs(args.timeout),
        stream_backup(job.store, &key, &args.server, id),
    )
    .await
    .unwrap_or(Err(BaseError::Timeout(args.timeout)));
    let finished = jiff::Timestamp::now();
    let recorded = match streamed {
        Ok((size, label)) => record(&job, size, &label, started, finished).await,
        Err(e) => Err(e),
    };
    if recorded.is_err() {
        // No backup.json: not in the catalog; remove the orphan tar.
        let _ = store::delete(job.store, &key).await;
    }
    recorded
}

/// Reads the archived history file, writes `backup.json` (last).
async fn record(
    job: &Job<'_>,
    size: u64,
    label_text: &str,
    started: jiff::Timestamp,
    finished: jiff::Timestamp,
) -> Result<BackupInfo, BaseError> {
    let label = parse(label_text, "backup_label")?;
    let history = history(job, &label).await?;
    let (Some(stop_lsn), Some(stop_wal)) = (history.stop_lsn, history.stop_wal.clone()) else {
        return Err(BaseError::Label {
            what: "backup history file".into(),
            source: LabelError::Missing("STOP WAL LOCATION"),
        });
    };
    let tar = job.layout.base_tar(job.uid, job.id)?;
    let json = job.layout.backup_json(job.uid, job.id)?;
    let info = BackupInfo {
        id: job.id.to_string(),
        tenant_backup: job.name.clone(),
        begin_time: label.start_time.unwrap_or(started),
        end_time: end_time(history.stop_time, finished),
        begin_lsn: label.start_lsn.to_string(),
        end_lsn: stop_lsn.to_string(),
        begin_wal: label.start_wal.clone(),
        end_wal: stop_wal,
        timeline: label.timeline,
        system_identifier: job.facts.system_identifier.clone(),
        pg_major: job.facts.pg_major,
        size,
        objects: vec![tar.to_string(), json.to_string()],
    };
    let body =
        serde_json::to_vec_pretty(&info).map_err(|e| program_err("backup.json", e.to_string()))?;
    store::put_create_or_same(job.store, &json, Bytes::from(body)).await?;
    Ok(info)
}

/// The end of a backup: the database is consistent from the STOP TIME on,
/// which PostgreSQL writes truncated to the second, so the second after
/// it; never later than when pg_basebackup returned (both bound the true
/// stop from above, so a restore never targets a time before it).
pub fn end_time(stop_time: Option<jiff::Timestamp>, finished: jiff::Timestamp) -> jiff::Timestamp {
    stop_time
        .and_then(|t| t.checked_add(jiff::SignedDuration::from_secs(1)).ok())
        .map_or(finished, |t| t.min(finished))
}

fn parse(text: &str, what: &str) -> Result<Label, BaseError> {
    label::parse_label(text).map_err(|source| BaseError::Label {
        what: what.to_owned(),
        source,
    })
}

/// The backup history file the server archived for this backup.
async fn history(job: &Job<'_>, label: &Label) -> Result<Label, BaseError> {
    let name =
        label::backup_history_name(&label.start_wal, label.start_lsn, job.facts.segment_size);
    let key = job.layout.wal(job.uid, &name)?;
    let bytes = store::get_bytes(job.store, &key)
        .await?
        .ok_or_else(|| BaseError::NoHistory(name.clone()))?;
    let history = parse(&String::from_utf8_lossy(&bytes), &name)?;
    if history.start_lsn != label.start_lsn {
        return Err(BaseError::Label {
            what: name,
            source: LabelError::Malformed("START WAL LOCATION", history.start_lsn.to_string()),
        });
    }
    Ok(history)
}

/// `base-backup`: prints the BackupInfo JSON and exits 0, or one redacted
/// line on stderr and exit 1.
pub async fn command(args: &BaseBackupArgs) -> ExitCode {
    let settings = match Settings::load(&args.config) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("atoll-backup base-backup: {e}");
            return ExitCode::FAILURE;
        }
    };
    match base_backup(&settings, args).await {
        Ok(info) => match serde_json::to_string_pretty(&info) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("atoll-backup base-backup: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("atoll-backup base-backup: {}", settings.redact(&chain(&e)));
            ExitCode::FAILURE
        }
    }
}

/// An error's message with its sources.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_from_psql() {
        assert_eq!(
            parse_facts("7716518971410737218|150018|16777216\n"),
            Some(ServerFacts {
                system_identifier: "7716518971410737218".into(),
                pg_major: 15,
                segment_size: 16 * 1024 * 1024,
            })
        );
        assert_eq!(parse_facts("x|150018|16777216"), None);
        assert_eq!(
            parse_facts("1|150018|1000"),
            None,
            "segment sizes are powers of two"
        );
        assert_eq!(parse_facts(""), None);
    }

    #[test]
    fn end_time_bounds_the_stop_from_above() {
        let t = |s: &str| s.parse::<jiff::Timestamp>().expect("timestamp");
        let stop = Some(t("2026-12-07T11:15:08Z"));
        assert_eq!(
            end_time(stop, t("2026-12-07T11:15:30Z")),
            t("2026-12-07T11:15:09Z")
        );
        assert_eq!(
            end_time(stop, t("2026-12-07T11:15:08.5Z")),
            t("2026-12-07T11:15:08.5Z")
        );
        assert_eq!(
            end_time(None, t("2026-12-07T11:15:30Z")),
            t("2026-12-07T11:15:30Z")
        );
    }
}
