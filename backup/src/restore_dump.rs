//! `atoll-backup restore-dump`: restore an External tenant's dump into the
//! NEW tenant's fresh database (its URL in `DATABASE_URL`, its own role).
//!
//! Picks the dump ([`dump_catalog::pick`]: by id or TenantBackup name, or
//! the newest taken at or before the target time), checks the target (its
//! server's major at least the dump's, `pg_restore` at least `pg_dump`'s,
//! the database empty), then streams the dump from the store into
//! `pg_restore --no-owner --no-privileges --single-transaction
//! --exit-on-error` (so every object belongs to the new role, and a failed
//! restore leaves nothing behind). `restore.json` (the same
//! [`RestoreOutcome`] as a PITR) goes under the new tenant's prefix; exit 0
//! or 1.
//!
//! Reruns: a marker table [`MARKER_SCHEMA`]`.marker` in the target
//! database records which dump of which tenant is restored there. It is
//! written (`restoring`) before `pg_restore` and set to `done` after it. A
//! rerun of the same restore finds `done` and succeeds without doing
//! anything; finding `restoring` with the database holding objects, it
//! knows `pg_restore`'s single transaction committed (the database was
//! empty before it, and the tenant's instance waits for the restore) and
//! only sets `done`. Any other non-empty database is refused. `pg_dump`
//! leaves the marker's schema out of later dumps.

use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use clap::Args;
use futures::StreamExt;
use object_store::ObjectStore;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::base::chain;
use crate::catalog::Choice;
use crate::cli::DEFAULT_CONFIG_DIR;
use crate::dump;
use crate::dump_catalog::{self, DumpCatalogError, DumpInfo, DumpPickError};
use crate::layout::{self, BackupId, Layout, LayoutError};
use crate::pgtools::{self, ToolError, Tools, Version};
use crate::restore::{self, RestoreOutcome};
use crate::settings::Settings;
use crate::store::{self, StoreError};

/// The schema of the marker table (never in a dump).
pub const MARKER_SCHEMA: &str = "atoll_restore";

/// `restore-dump --config DIR --source-uid UID [--source-config DIR]
/// [--backup latest|ID|NAME] [--target-time T]`, `DATABASE_URL` in the
/// environment.
#[derive(Debug, Clone, Args)]
pub struct RestoreDumpArgs {
    /// The configuration directory; its tenantUid is the NEW tenant.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_CONFIG_DIR)]
    pub config: PathBuf,
    /// The tenant whose dumps to restore from.
    #[arg(long, value_name = "UID")]
    pub source_uid: String,
    /// The configuration directory of the store holding the source's
    /// dumps, when it is not the new tenant's; default: --config.
    #[arg(long, value_name = "DIR")]
    pub source_config: Option<PathBuf>,
    /// `latest`, a dump id or a TenantBackup name.
    #[arg(long, default_value = "latest")]
    pub backup: String,
    /// RFC 3339 time: the newest dump taken at or before it is restored.
    #[arg(long, value_name = "TIME")]
    pub target_time: Option<jiff::Timestamp>,
    /// Where pg_restore and psql are; default: the PATH.
    #[arg(long, value_name = "DIR", env = "ATOLL_PG_BINDIR")]
    pub bindir: Option<PathBuf>,
    /// Give up after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 6 * 3600)]
    pub timeout: u64,
}

/// Why a restore of a dump failed. Messages hold no credential once
/// redacted.
#[derive(Debug, thiserror::Error)]
pub enum RestoreDumpError {
    /// A bad uid or id.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// Source and destination are the same tenant.
    #[error("tenant {0} cannot be restored into itself: restore into a new tenant")]
    SameTenant(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The catalog could not be read.
    #[error(transparent)]
    Catalog(#[from] DumpCatalogError),
    /// No dump fits.
    #[error(transparent)]
    Pick(#[from] DumpPickError),
    /// A client program failed.
    #[error(transparent)]
    Tool(#[from] ToolError),
    /// The target cannot take this dump.
    #[error("{0}")]
    Refused(String),
    /// The dump object is missing.
    #[error("dump {0} has a dump.json but no dump.pgc in the store")]
    NoData(String),
    /// It took too long.
    #[error("pg_restore did not finish within {0} s")]
    Timeout(u64),
}

/// Checks that a dump of `dump` can be restored with `pg_restore` into
/// `server`: neither may be older than what wrote the dump.
pub fn check_versions(
    dump: &DumpInfo,
    pg_restore: &Version,
    server: &Version,
) -> Result<(), RestoreDumpError> {
    if server.major < dump.server_major {
        return Err(RestoreDumpError::Refused(format!(
            "the target server runs PostgreSQL {}, older than the server dump {} was taken from ({}): restore into a server of major version {} or newer",
            server.text, dump.id, dump.server_version, dump.server_major
        )));
    }
    if pg_restore.major < dump.pg_dump_major {
        return Err(RestoreDumpError::Refused(format!(
            "pg_restore {} is older than the pg_dump {} that wrote dump {}: use a postgres image of major version {} or newer",
            pg_restore.text, dump.pg_dump_version, dump.id, dump.pg_dump_major
        )));
    }
    Ok(())
}

/// The marker row of a target database.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Marker {
    /// The tenant restored from.
    pub source_uid: String,
    /// The dump restored.
    pub dump_id: String,
    /// `restoring` or `done`.
    pub state: String,
}

/// What the target database holds besides the marker.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Contents {
    /// How many objects (relations, schemas, functions, types, extensions).
    pub count: u64,
    /// A few of them, `name (kind)`.
    pub sample: Vec<String>,
}

/// What to do with a target database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Run pg_restore.
    Restore,
    /// This restore is done already: nothing to do.
    AlreadyDone,
    /// This restore's pg_restore committed; only the marker is behind.
    MarkDone,
    /// Not this restore's database.
    Refuse(String),
}

/// Decides from the marker and the contents whether restoring `dump_id` of
/// `source` into `database` may go on. Pure.
pub fn decide(
    database: &str,
    marker: Option<&Marker>,
    contents: &Contents,
    source: &str,
    dump_id: &str,
) -> Decision {
    let same = marker.is_some_and(|m| m.source_uid == source && m.dump_id == dump_id);
    let empty = contents.count == 0;
    match marker {
        Some(m) if same && m.state == "done" => Decision::AlreadyDone,
        Some(_) if same && !empty => Decision::MarkDone,
        Some(m) if m.state == "done" => Decision::Refuse(format!(
            "database {database} already holds dump {} of tenant {}; restore-dump does not restore another dump ({dump_id} of tenant {source}) over it",
            m.dump_id, m.source_uid
        )),
        _ if empty => Decision::Restore,
        _ => Decision::Refuse(format!(
            "database {database} is not empty ({} object{}, e.g. {}): restore-dump restores only into a new, empty database",
            contents.count,
            if contents.count == 1 { "" } else { "s" },
            contents.sample.join(", ")
        )),
    }
}

/// Objects outside the system schemas and the marker's.
const CONTENTS_SQL: &str = r"
with objects(name) as (
  select format('%I.%I (%s)', n.nspname, c.relname, case c.relkind
      when 'r' then 'table' when 'p' then 'partitioned table' when 'f' then 'foreign table'
      when 'v' then 'view' when 'm' then 'materialized view' when 'S' then 'sequence'
      when 'c' then 'composite type' when 'i' then 'index' when 'I' then 'index'
      else 'relation' end)
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname not in ('pg_catalog', 'information_schema', 'atoll_restore')
      and n.nspname not like 'pg\_%'
  union all
  select format('%I (schema)', n.nspname) from pg_namespace n
    where n.nspname not in ('pg_catalog', 'information_schema', 'atoll_restore', 'public')
      and n.nspname not like 'pg\_%'
  union all
  select format('%s (function)', p.oid::regprocedure) from pg_proc p
    join pg_namespace n on n.oid = p.pronamespace
    where n.nspname not in ('pg_catalog', 'information_schema', 'atoll_restore')
      and n.nspname not like 'pg\_%'
  union all
  select format('%s (type)', format_type(t.oid, null)) from pg_type t
    join pg_namespace n on n.oid = t.typnamespace
    where n.nspname not in ('pg_catalog', 'information_schema', 'atoll_restore')
      and n.nspname not like 'pg\_%' and t.typrelid = 0 and t.typcategory <> 'A'
  union all
  select format('%I (extension)', e.extname) from pg_extension e where e.extname <> 'plpgsql'
)
select json_build_object('count', count(*),
  'sample', coalesce((array_agg(name order by name))[1:5], '{}'))
from objects";

/// Reads the marker (if any) and the contents of the target.
async fn inspect(tools: &Tools) -> Result<(Option<Marker>, Contents), ToolError> {
    let has_marker = tools
        .psql(&format!(
            "select to_regclass('{MARKER_SCHEMA}.marker') is not null"
        ))
        .await?;
    let marker = if has_marker == "t" {
        let text = tools
            .psql(&format!(
                "select row_to_json(m) from {MARKER_SCHEMA}.marker m limit 1"
            ))
            .await?;
        serde_json::from_str(&text).ok()
    } else {
        None
    };
    Ok((marker, tools.query_json(CONTENTS_SQL).await?))
}

/// Records `state` of restoring `dump_id` of `source` (one transaction).
async fn set_marker(
    tools: &Tools,
    source: &str,
    dump_id: &str,
    state: &str,
) -> Result<(), ToolError> {
    let (source, dump_id, state) = (
        pgtools::literal(source),
        pgtools::literal(dump_id),
        pgtools::literal(state),
    );
    tools
        .psql(&format!(
            "create schema if not exists {MARKER_SCHEMA}; \
             create table if not exists {MARKER_SCHEMA}.marker (source_uid text not null, \
               dump_id text not null, state text not null, updated_at timestamptz not null); \
             delete from {MARKER_SCHEMA}.marker; \
             insert into {MARKER_SCHEMA}.marker values ({source}, {dump_id}, {state}, now())"
        ))
        .await
        .map(|_| ())
}

/// Streams the dump object into pg_restore.
async fn stream_restore(
    tools: &Tools,
    store: &dyn ObjectStore,
    key: &object_store::path::Path,
    id: &str,
) -> Result<(), RestoreDumpError> {
    let mut data = store::get_stream(store, key)
        .await?
        .ok_or_else(|| RestoreDumpError::NoData(id.to_owned()))?;
    let mut child = tools
        .command("pg_restore")
        .args(["--no-owner", "--no-privileges", "--single-transaction"])
        .arg("--exit-on-error")
        .arg(format!("--exclude-schema={MARKER_SCHEMA}"))
        .arg(format!("--dbname={}", tools.dbname_arg()))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| tools.error("pg_restore", &format!("cannot run it: {e}")))?;
    let stderr = child
        .stderr
        .take()
        .map(|e| pgtools::collect_tail("pg_restore", e));
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| tools.error("pg_restore", "no stdin"))?;
    let mut fed: Result<(), RestoreDumpError> = Ok(());
    while let Some(chunk) = data.next().await {
        let written = match chunk {
            Ok(chunk) => stdin.write_all(&chunk).await,
            Err(e) => {
                fed = Err(e.into());
                break;
            }
        };
        // pg_restore stopped reading (it failed): its status says why.
        if written.is_err() {
            break;
        }
    }
    drop(stdin);
    if fed.is_err() {
        let _ = child.start_kill();
    }
    let status = child.wait().await;
    let tail = match stderr {
        Some(task) => task.await.unwrap_or_default(),
        None => String::new(),
    };
    fed?;
    let status = status.map_err(|e| tools.error("pg_restore", &e.to_string()))?;
    if !status.success() {
        return Err(tools
            .error("pg_restore", &format!("{status}: {tail}"))
            .into());
    }
    Ok(())
}

/// Restores into the database of `tools`; fills `outcome` as it goes.
async fn attempt(
    settings: &Settings,
    source_settings: &Settings,
    tools: &Tools,
    args: &RestoreDumpArgs,
    outcome: &mut RestoreOutcome,
) -> Result<(), RestoreDumpError> {
    let uid = args.source_uid.as_str();
    layout::check_uid(uid)?;
    if uid == settings.tenant_uid {
        return Err(RestoreDumpError::SameTenant(uid.to_owned()));
    }
    let store = store::open(source_settings)?;
    let layout = Layout::new(source_settings.prefix.as_deref());
    let dumps = dump_catalog::list(store.as_ref(), &layout, uid).await?;
    let choice = Choice::parse(&args.backup);
    let dump = dump_catalog::pick(uid, &dumps, &choice, args.target_time)?;
    outcome.backup_id = Some(dump.id.clone());
    let server = tools.server_version().await?;
    check_versions(dump, &tools.version("pg_restore").await?, &server)?;
    let database = tools.conn.database().to_owned();
    let (marker, contents) = inspect(tools).await?;
    let message = format!(
        "restored dump {} of tenant {uid} (taken at {}) into database {database}",
        dump.id, dump.time
    );
    match decide(&database, marker.as_ref(), &contents, uid, &dump.id) {
        Decision::Refuse(why) => return Err(RestoreDumpError::Refused(why)),
        Decision::AlreadyDone => {
            outcome.message = format!("already {message}; nothing to do");
        }
        Decision::MarkDone => {
            set_marker(tools, uid, &dump.id, "done").await?;
            outcome.message = message;
        }
        Decision::Restore => {
            set_marker(tools, uid, &dump.id, "restoring").await?;
            let id: BackupId = dump.id.parse()?;
            let key = layout.dump(uid, id)?;
            tokio::time::timeout(
                Duration::from_secs(args.timeout),
                stream_restore(tools, store.as_ref(), &key, &dump.id),
            )
            .await
            .unwrap_or(Err(RestoreDumpError::Timeout(args.timeout)))?;
            set_marker(tools, uid, &dump.id, "done").await?;
            outcome.message = message;
        }
    }
    outcome.ok = true;
    outcome.reached_time = Some(dump.time);
    Ok(())
}

/// Restores as `args` say; never fails: the outcome says what happened
/// (credentials redacted).
pub async fn restore_dump(settings: &Settings, args: &RestoreDumpArgs) -> RestoreOutcome {
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
            outcome.message = format!("the source's configuration: {e}");
            return outcome;
        }
    };
    let source = source_settings.as_ref().unwrap_or(settings);
    let tools = match dump::conn_from_env() {
        Ok(conn) => Tools {
            bindir: args.bindir.clone(),
            conn,
        },
        Err(e) => {
            outcome.message = e.to_string();
            return outcome;
        }
    };
    if let Err(e) = attempt(settings, source, &tools, args, &mut outcome).await {
        outcome.ok = false;
        outcome.message = tools
            .conn
            .redact(&source.redact(&settings.redact(&chain(&e))));
    }
    outcome
}

/// `restore-dump`: prints the outcome JSON, writes restore.json; exit 0
/// when restored, else 1.
pub async fn command(args: &RestoreDumpArgs) -> ExitCode {
    let settings = match Settings::load(&args.config) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("atoll-backup restore-dump: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = restore_dump(&settings, args).await;
    println!(
        "{}",
        serde_json::to_string_pretty(&outcome).unwrap_or_default()
    );
    if let Err(e) = restore::write_outcome(&settings, &outcome).await {
        eprintln!("atoll-backup restore-dump: cannot write restore.json: {e}");
        return ExitCode::FAILURE;
    }
    if !outcome.ok {
        eprintln!("atoll-backup restore-dump: {}", outcome.message);
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
#[path = "restore_dump_tests.rs"]
mod tests;
