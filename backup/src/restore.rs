//! `atoll-backup restore`: point-in-time recovery of a tenant's base
//! backup and WAL archive into an empty data directory (for a NEW tenant).
//!
//! Picks the backup ([`catalog::pick`]), unpacks it, writes
//! `recovery.signal` and runs a temporary server ([`recovery`]) whose
//! `restore_command` is this binary's `wal-fetch` from the SOURCE tenant's
//! archive, until it is promoted or fails; the outcome is judged from its
//! log ([`judge`]) and written as `restore.json` under the NEW tenant's
//! prefix (the configuration's `tenantUid`). Exit 0 when recovered, 1 not.
//!
//! The quiet tail: PostgreSQL stops only at a commit after the target, so
//! when nothing committed between the archive's last commit and the target
//! it reports "recovery ended before configured recovery target was
//! reached" although the archive may hold the state at the target. That is
//! accepted only with proof that the archive covers the target: a complete
//! base backup that began at or after it, whose end replay passed. Then
//! the server is run again without a target (to the end of the archive).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use object_store::{ObjectStore, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::base::chain;
use crate::catalog::{self, BackupInfo, CatalogError, Choice, PickError};
use crate::cli::DEFAULT_CONFIG_DIR;
use crate::extract::{self, ExtractError};
use crate::label::Lsn;
use crate::layout::{self, BackupId, Layout, LayoutError};
use crate::pglog::Verdict;
use crate::recovery::{self, Plan, RecoveryError};
use crate::settings::Settings;
use crate::store::{self, StoreError};

/// `restore --config DIR --source-uid UID [--backup ID|NAME|latest]
/// [--target-time T] PGDATA`.
#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// The configuration directory; its tenantUid is the NEW tenant.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_CONFIG_DIR)]
    pub config: PathBuf,
    /// The tenant whose backups and WAL archive to restore from.
    #[arg(long, value_name = "UID")]
    pub source_uid: String,
    /// The configuration directory of the store holding the source's
    /// backups, when it is not the new tenant's (a per-Tenant store);
    /// default: --config. Only its store settings are used.
    #[arg(long, value_name = "DIR")]
    pub source_config: Option<PathBuf>,
    /// `latest`, a backup id or a TenantBackup name.
    #[arg(long, default_value = "latest")]
    pub backup: String,
    /// RFC 3339 time to recover to; default: the end of the archive.
    #[arg(long, value_name = "TIME")]
    pub target_time: Option<jiff::Timestamp>,
    /// Where `postgres` is; default: the PATH.
    #[arg(long, value_name = "DIR", env = "ATOLL_PG_BINDIR")]
    pub bindir: Option<PathBuf>,
    /// Give up after this many seconds (per server run).
    #[arg(long, value_name = "SECONDS", default_value_t = 24 * 3600)]
    pub timeout: u64,
    /// Do not archive the new timeline (its history file and the partial
    /// segment) into the new tenant's prefix.
    #[arg(long)]
    pub no_archive: bool,
    /// Remove whatever PGDATA holds first (the leftovers of a failed
    /// attempt), unless it holds the marker of a finished restore.
    #[arg(long)]
    pub wipe: bool,
    /// A file of the source's data directory not to keep (a name directly
    /// in PGDATA, such as a marker of how the source was set up, so the
    /// new tenant's set-up runs again); repeatable. Removed right after
    /// unpacking, before recovery and before the finished restore's marker.
    #[arg(long = "drop", value_name = "NAME", value_parser = parse_drop)]
    pub drop: Vec<String>,
    /// The data directory to create (empty or absent; see --wipe).
    pub pgdata: PathBuf,
}

/// `tenants/<new uid>/restore.json`: how the restore INTO a tenant went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreOutcome {
    /// The tenant restored from.
    pub source_uid: String,
    /// The base backup used (once chosen).
    pub backup_id: Option<String>,
    /// The requested time (`None` = end of the archive).
    pub target_time: Option<jiff::Timestamp>,
    /// The last transaction recovered (on failure: how far it could go).
    pub reached_time: Option<jiff::Timestamp>,
    /// Whether the database was recovered.
    pub ok: bool,
    /// What happened, for a condition message.
    pub message: String,
}

/// Left in the data directory after a successful restore (the outcome's
/// JSON): a rerun of the step does nothing.
pub const MARKER: &str = "atoll-restored";

/// Why a restore failed before or around the recovery itself.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// A bad uid.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// Source and destination are the same tenant.
    #[error("tenant {0} cannot be restored into itself: restore into a new tenant")]
    SameTenant(String),
    /// The data directory is not usable.
    #[error("data directory {path}: {problem}")]
    Pgdata {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The catalog could not be read.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// No backup fits.
    #[error(transparent)]
    Pick(#[from] PickError),
    /// Unpacking failed.
    #[error(transparent)]
    Extract(#[from] ExtractError),
    /// The temporary server could not be run.
    #[error(transparent)]
    Recovery(#[from] RecoveryError),
    /// This executable's path is unknown.
    #[error("cannot find this executable: {0}")]
    Exe(std::io::Error),
    /// A path given could not be made absolute.
    #[error("{path}: {source}")]
    Path {
        /// The path.
        path: PathBuf,
        /// The reason.
        source: std::io::Error,
    },
}

/// What the log of a recovery run means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// Recovered and promoted.
    Done {
        /// The last transaction replayed (else the backup's end).
        reached: jiff::Timestamp,
        /// For restore.json.
        message: String,
    },
    /// The quiet tail, proven: run again without a target.
    RecoverToEnd {
        /// Why that is the state at the target.
        message: String,
    },
    /// Not recovered.
    Failed {
        /// How far it could go, if known.
        reached: Option<jiff::Timestamp>,
        /// Why.
        message: String,
    },
}

/// Judges a run's [`Verdict`] for a restore of `source` from `backup` to
/// `target`, with `backups` = the source's catalog (for the quiet-tail
/// proof). Pure.
pub fn judge(
    verdict: &Verdict,
    source: &str,
    backup: &BackupInfo,
    target: Option<jiff::Timestamp>,
    backups: &[BackupInfo],
) -> Judgement {
    let to = target.map_or_else(|| "the end of its archive".to_owned(), |t| t.to_string());
    match verdict {
        Verdict::Promoted { reached } => {
            let last = match reached {
                Some(t) => format!("the last transaction replayed committed at {t}"),
                None => format!(
                    "no transaction after the backup's end ({})",
                    backup.end_time
                ),
            };
            Judgement::Done {
                reached: reached.unwrap_or(backup.end_time),
                message: format!(
                    "recovered tenant {source} from base backup {} to {to}; {last}",
                    backup.id
                ),
            }
        }
        Verdict::EndOfArchive { reached, redo_done } => {
            end_of_archive(source, backup, target, backups, *reached, *redo_done)
        }
        Verdict::BeforeConsistent => Judgement::Failed {
            reached: None,
            message: format!(
                "target {to} is before base backup {} became consistent ({}): choose a later time",
                backup.id, backup.end_time
            ),
        },
        Verdict::Failed(fatal) => Judgement::Failed {
            reached: None,
            message: format!(
                "the recovery server failed: {}",
                fatal
                    .as_deref()
                    .unwrap_or("it exited without saying why (see its log)")
            ),
        },
    }
}

/// The archive ended before the target: the quiet tail when proven, else
/// a failure saying how far it went.
fn end_of_archive(
    source: &str,
    backup: &BackupInfo,
    target: Option<jiff::Timestamp>,
    backups: &[BackupInfo],
    reached: Option<jiff::Timestamp>,
    redo_done: Option<Lsn>,
) -> Judgement {
    let last = reached.map_or_else(
        || format!("the end of base backup {} ({})", backup.id, backup.end_time),
        |t| format!("{t} (its last transaction)"),
    );
    let Some(target) = target else {
        return Judgement::Failed {
            reached,
            message: format!("the recovery of tenant {source} ended unexpectedly at {last}"),
        };
    };
    let proof = catalog::coverage_proof(backups, target).filter(|p| {
        let end: Option<Lsn> = p.end_lsn.parse().ok();
        matches!((end, redo_done), (Some(end), Some(done)) if end <= done)
    });
    match proof {
        Some(p) => Judgement::RecoverToEnd {
            message: format!(
                "no transaction committed between {last} and {target}, and the archive covers {target} (base backup {} began at {}): recovered to the end of the archive, which is the state at {target}",
                p.id, p.begin_time
            ),
        },
        None => Judgement::Failed {
            reached: reached.or(Some(backup.end_time)),
            message: format!(
                "cannot reach {target}: the WAL archive of tenant {source} ends earlier; recovery could reach only {last}{}",
                redo_done
                    .map(|l| format!(", replay ended at WAL {l}"))
                    .unwrap_or_default()
            ),
        },
    }
}

/// `--drop`: a plain file name (no `/`, not `.` or `..`), never one of
/// PostgreSQL's own files or directories, which the recovery needs.
pub fn parse_drop(name: &str) -> Result<String, String> {
    let plain = !name.is_empty() && name != "." && name != ".." && !name.contains('/');
    if !plain {
        return Err(format!("{name:?} is not a file name in PGDATA"));
    }
    let postgres_own = name.starts_with("pg_")
        || name.starts_with("postgresql")
        || [
            "PG_VERSION",
            "base",
            "global",
            "backup_label",
            "tablespace_map",
        ]
        .contains(&name);
    if postgres_own {
        return Err(format!(
            "{name:?} is PostgreSQL's own: it cannot be dropped"
        ));
    }
    Ok(name.to_owned())
}

/// Removes the files `names` of `pgdata` (absent ones are fine).
fn remove_files(pgdata: &Path, names: &[&str]) -> Result<(), RestoreError> {
    for name in names {
        match std::fs::remove_file(pgdata.join(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(RestoreError::Pgdata {
                    path: pgdata.to_owned(),
                    problem: format!("cannot remove {name}: {e}"),
                });
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks that `pgdata` is absent or empty; creates it (0700).
fn prepare_pgdata(pgdata: &Path) -> Result<(), RestoreError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let err = |problem: String| RestoreError::Pgdata {
        path: pgdata.to_owned(),
        problem,
    };
    match std::fs::read_dir(pgdata) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(err(
                    "not empty: a restore needs an empty data directory".into()
                ));
            }
            std::fs::set_permissions(pgdata, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| err(format!("cannot set its mode: {e}")))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(pgdata)
            .map_err(|e| err(format!("cannot create it: {e}"))),
        Err(e) => Err(err(format!("cannot read it: {e}"))),
    }
}

/// Removes everything inside `pgdata` (not the directory: it may be a
/// mount point). The caller has checked that it holds no finished restore.
fn wipe(pgdata: &Path) -> Result<(), RestoreError> {
    let err = |e: std::io::Error| RestoreError::Pgdata {
        path: pgdata.to_owned(),
        problem: format!("cannot wipe it: {e}"),
    };
    let entries = match std::fs::read_dir(pgdata) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(err(e)),
    };
    for entry in entries {
        let entry = entry.map_err(err)?;
        let path = entry.path();
        let removed = if entry.file_type().map_err(err)?.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(err)?;
    }
    Ok(())
}

/// Unpacks the backup, drops what `drop` names, and asks for recovery.
async fn unpack(
    store: &dyn ObjectStore,
    layout: &Layout,
    source: &str,
    backup: &BackupInfo,
    pgdata: &Path,
    drop: &[String],
) -> Result<(), RestoreError> {
    let id: BackupId = backup.id.parse()?;
    extract::extract(store, &layout.base_tar(source, id)?, pgdata).await?;
    // pg_basebackup's manifest (last tar member) is not part of a cluster.
    let names: Vec<&str> = std::iter::once("backup_manifest")
        .chain(drop.iter().map(String::as_str))
        .collect();
    remove_files(pgdata, &names)?;
    std::fs::write(pgdata.join("recovery.signal"), b"").map_err(|e| RestoreError::Pgdata {
        path: pgdata.to_owned(),
        problem: format!("cannot write recovery.signal: {e}"),
    })
}

/// The temporary server's plan: WAL from the source's store, the new
/// timeline archived into the new tenant's.
fn plan(args: &RestoreArgs, socket_dir: PathBuf) -> Result<Plan, RestoreError> {
    let exe = std::env::current_exe().map_err(RestoreError::Exe)?;
    let exe = recovery::quote(&exe.display().to_string());
    let absolute = |path: &Path| {
        std::path::absolute(path).map_err(|source| RestoreError::Path {
            path: path.to_owned(),
            source,
        })
    };
    let config = recovery::quote(&absolute(&args.config)?.display().to_string());
    let source_config = args.source_config.as_deref().unwrap_or(&args.config);
    let source_config = recovery::quote(&absolute(source_config)?.display().to_string());
    let postgres = args
        .bindir
        .as_ref()
        .map_or_else(|| PathBuf::from("postgres"), |d| d.join("postgres"));
    Ok(Plan {
        postgres,
        pgdata: absolute(&args.pgdata)?,
        socket_dir,
        restore_command: format!(
            "{exe} wal-fetch --config {source_config} --source-uid {} %f %p",
            args.source_uid
        ),
        archive_command: (!args.no_archive).then(|| format!("{exe} wal-push --config {config} %p")),
        target: args.target_time,
        timeout: Duration::from_secs(args.timeout),
    })
}

/// Restores from the store of `source_settings` into a tenant configured
/// by `settings`; fills `outcome` as it goes (backup id, result).
async fn attempt(
    settings: &Settings,
    source_settings: &Settings,
    args: &RestoreArgs,
    outcome: &mut RestoreOutcome,
) -> Result<(), RestoreError> {
    let source = args.source_uid.as_str();
    layout::check_uid(source)?;
    if source == settings.tenant_uid {
        return Err(RestoreError::SameTenant(source.to_owned()));
    }
    if args.wipe {
        wipe(&args.pgdata)?;
    }
    prepare_pgdata(&args.pgdata)?;
    let store = store::open(source_settings)?;
    let layout = Layout::new(source_settings.prefix.as_deref());
    let backups = catalog::list(store.as_ref(), &layout, source).await?;
    let backup = catalog::pick(
        source,
        &backups,
        &Choice::parse(&args.backup),
        args.target_time,
    )?;
    outcome.backup_id = Some(backup.id.clone());
    unpack(
        store.as_ref(),
        &layout,
        source,
        backup,
        &args.pgdata,
        &args.drop,
    )
    .await?;
    let socket_dir = recovery::socket_dir().map_err(|e| RestoreError::Pgdata {
        path: "/tmp".into(),
        problem: format!("cannot create a socket directory: {e}"),
    })?;
    let result = recover(args, socket_dir.clone(), backup, &backups).await;
    let _ = std::fs::remove_dir_all(&socket_dir);
    let judgement = result?;
    match judgement {
        Judgement::Done { reached, message } => {
            outcome.ok = true;
            outcome.reached_time = Some(reached);
            outcome.message = message;
        }
        Judgement::Failed { reached, message } => {
            outcome.reached_time = reached;
            outcome.message = message;
        }
        // recover() resolves it; never left over.
        Judgement::RecoverToEnd { message } => outcome.message = message,
    }
    Ok(())
}

/// Runs the server (twice for a proven quiet tail) and judges the result.
async fn recover(
    args: &RestoreArgs,
    socket_dir: PathBuf,
    backup: &BackupInfo,
    backups: &[BackupInfo],
) -> Result<Judgement, RestoreError> {
    let mut plan = plan(args, socket_dir)?;
    let source = args.source_uid.as_str();
    let first = recovery::run(&plan).await?;
    let judgement = judge(&first.log.verdict(), source, backup, plan.target, backups);
    let judgement = match judgement {
        Judgement::RecoverToEnd { message } => {
            plan.target = None;
            let second = recovery::run(&plan).await?;
            match judge(&second.log.verdict(), source, backup, None, backups) {
                Judgement::Done { reached, .. } => Judgement::Done { reached, message },
                other => other,
            }
        }
        other => other,
    };
    Ok(match judgement {
        Judgement::Failed { reached, message } if message.contains("without saying why") => {
            Judgement::Failed {
                reached,
                message: format!("{message}; last log lines: {}", first.tail.join(" | ")),
            }
        }
        other => other,
    })
}

/// Restores as `args` say; never fails: the outcome says what happened
/// (credentials redacted).
pub async fn restore(settings: &Settings, args: &RestoreArgs) -> RestoreOutcome {
    let mut outcome = RestoreOutcome {
        source_uid: args.source_uid.clone(),
        backup_id: None,
        target_time: args.target_time,
        reached_time: None,
        ok: false,
        message: String::new(),
    };
    let loaded = match &args.source_config {
        Some(dir) => Settings::load(dir).map(Some),
        None => Ok(None),
    };
    let source_settings = match loaded {
        Ok(loaded) => loaded,
        Err(e) => {
            // Names a file and a field, never a credential.
            outcome.message = format!("the source's configuration: {e}");
            return outcome;
        }
    };
    let source = source_settings.as_ref().unwrap_or(settings);
    if let Err(e) = attempt(settings, source, args, &mut outcome).await {
        outcome.ok = false;
        outcome.message = source.redact(&settings.redact(&chain(&e)));
    }
    outcome
}

/// Writes `restore.json` under the new tenant's prefix (overwriting the
/// outcome of an earlier attempt).
pub async fn write_outcome(settings: &Settings, outcome: &RestoreOutcome) -> Result<(), String> {
    let store = store::open(settings).map_err(|e| settings.redact(&chain(&e)))?;
    let key = Layout::new(settings.prefix.as_deref())
        .restore_json(&settings.tenant_uid)
        .map_err(|e| e.to_string())?;
    let body = serde_json::to_vec_pretty(outcome).map_err(|e| e.to_string())?;
    let put = store.put_opts(
        &key,
        PutPayload::from_bytes(Bytes::from(body)),
        PutOptions::default(),
    );
    match tokio::time::timeout(store::OP_TIMEOUT, put).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(settings.redact(&format!("put {key}: {e}"))),
        Err(_) => Err(format!("put {key}: no answer from the object store")),
    }
}

/// `restore`: prints the outcome JSON; exit 0 when recovered, else 1.
/// A finished restore needs nothing more, not even its configuration
/// (the operator removes the store's Secret once it is done).
pub async fn command(args: &RestoreArgs) -> ExitCode {
    if let Ok(done) = std::fs::read_to_string(args.pgdata.join(MARKER)) {
        eprintln!(
            "atoll-backup restore: {} was already restored",
            args.pgdata.display()
        );
        println!("{}", done.trim());
        return ExitCode::SUCCESS;
    }
    let settings = match Settings::load(&args.config) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("atoll-backup restore: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = restore(&settings, args).await;
    let json = serde_json::to_string_pretty(&outcome).unwrap_or_default();
    println!("{json}");
    if let Err(e) = write_outcome(&settings, &outcome).await {
        eprintln!("atoll-backup restore: cannot write restore.json: {e}");
        return ExitCode::FAILURE;
    }
    if !outcome.ok {
        eprintln!("atoll-backup restore: {}", outcome.message);
        return ExitCode::FAILURE;
    }
    if let Err(e) = std::fs::write(args.pgdata.join(MARKER), json) {
        eprintln!("atoll-backup restore: cannot write the {MARKER} marker: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
#[path = "restore_tests.rs"]
mod tests;
