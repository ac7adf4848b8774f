//! `atoll-backup dump`: a logical dump of an External tenant's database
//! (on a shared server, where there is no WAL to archive) into the
//! tenant's prefix.
//!
//! `pg_dump -Fc --no-owner --no-privileges` runs as the tenant's own role
//! (it owns every object of its database), connected by the URL in
//! `DATABASE_URL` (the tenant's `database-credentials` url; handed to
//! `pg_dump` through libpq's environment, never its command line). Its
//! output (compressed by pg_dump) streams into a multipart upload of
//! `dumps/<id>/dump.pgc`; `dump.json` ([`DumpInfo`]) is written last and
//! printed. `pg_dump` must be at least the server's major version; both
//! versions are recorded, so a restore can refuse an older server.

use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use object_store::ObjectStore;

use crate::base::chain;
use crate::cli::DEFAULT_CONFIG_DIR;
use crate::conninfo::{ConnInfo, UrlError};
use crate::dump_catalog::{self, DumpCatalogError, DumpInfo};
use crate::layout::{BackupId, Layout, LayoutError};
use crate::pgtools::{self, ToolError, Tools, Version};
use crate::restore_dump::MARKER_SCHEMA;
use crate::settings::{Settings, SettingsError};
use crate::store::{self, Compression, StoreError};

/// The environment variable holding the database URL (the only credential
/// the binary takes from its environment: pg_dump needs it).
pub const DATABASE_URL: &str = "DATABASE_URL";

/// How long pg_dump waits for a table lock before it fails (a migration
/// holding an exclusive lock must not stall the dump forever).
const LOCK_WAIT_TIMEOUT: &str = "300s";

/// `dump [--config DIR] [--id ID] [--name TENANTBACKUP]`, `DATABASE_URL`
/// in the environment.
#[derive(Debug, Clone, Args)]
pub struct DumpArgs {
    /// The configuration directory (config.json, accessKeyId, secretAccessKey).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_CONFIG_DIR)]
    pub config: PathBuf,
    /// The dump id (YYYYMMDDTHHMMSSZ); default: now.
    #[arg(long)]
    pub id: Option<BackupId>,
    /// The TenantBackup this dump is for (recorded in dump.json).
    #[arg(long, value_name = "TENANTBACKUP")]
    pub name: Option<String>,
    /// Where pg_dump and psql are; default: the PATH.
    #[arg(long, value_name = "DIR", env = "ATOLL_PG_BINDIR")]
    pub bindir: Option<PathBuf>,
    /// Give up (and abort the upload) after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 6 * 3600)]
    pub timeout: u64,
}

/// Why a dump failed. Messages hold no credential once redacted (the
/// programs' output is redacted when read).
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// The configuration directory is wrong.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// `DATABASE_URL` is missing.
    #[error("{DATABASE_URL} is not set: it must hold the tenant's database URL")]
    NoUrl,
    /// `DATABASE_URL` is not usable.
    #[error("{DATABASE_URL}: {0}")]
    Url(#[from] UrlError),
    /// A bad id or uid.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading the catalog failed.
    #[error(transparent)]
    Catalog(#[from] DumpCatalogError),
    /// A dump with this id exists.
    #[error("dump {0} already exists")]
    Exists(BackupId),
    /// A client program failed.
    #[error(transparent)]
    Tool(#[from] ToolError),
    /// pg_dump cannot dump this server.
    #[error(
        "pg_dump {pg_dump} is older than the server ({server}): use a postgres image of major version {server_major} or newer for the dump"
    )]
    TooOld {
        /// pg_dump's version.
        pg_dump: String,
        /// The server's version.
        server: String,
        /// The server's major.
        server_major: u32,
    },
    /// The dump took too long.
    #[error("pg_dump did not finish within {0} s")]
    Timeout(u64),
}

/// The connection from `DATABASE_URL`.
pub fn conn_from_env() -> Result<ConnInfo, DumpError> {
    let url = std::env::var(DATABASE_URL).map_err(|_| DumpError::NoUrl)?;
    Ok(ConnInfo::parse(&url)?)
}

/// Checks that `pg_dump` can dump the server (its major >= the server's).
pub fn check_versions(pg_dump: &Version, server: &Version) -> Result<(), DumpError> {
    if pg_dump.major < server.major {
        return Err(DumpError::TooOld {
            pg_dump: pg_dump.text.clone(),
            server: server.text.clone(),
            server_major: server.major,
        });
    }
    Ok(())
}

/// Runs pg_dump into `key`; returns the stored size.
async fn stream_dump(
    tools: &Tools,
    store: &dyn ObjectStore,
    key: &object_store::path::Path,
) -> Result<u64, DumpError> {
    let mut child = tools
        .command("pg_dump")
        .args(["--format=custom", "--no-owner", "--no-privileges"])
        .arg(format!("--exclude-schema={MARKER_SCHEMA}"))
        .arg(format!("--lock-wait-timeout={LOCK_WAIT_TIMEOUT}"))
        .arg(format!("--dbname={}", tools.dbname_arg()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| tools.error("pg_dump", &format!("cannot run it: {e}")))?;
    let stderr = child
        .stderr
        .take()
        .map(|e| pgtools::collect_tail("pg_dump", e));
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| tools.error("pg_dump", "no stdout"))?;
    let uploaded = store::put_stream(store, key, &mut stdout, Compression::None).await;
    // Close the pipe first: after a failed upload pg_dump would otherwise
    // block on a full pipe forever.
    drop(stdout);
    if uploaded.is_err() {
        let _ = child.start_kill();
    }
    let status = child.wait().await;
    let tail = match stderr {
        Some(task) => task.await.unwrap_or_default(),
        None => String::new(),
    };
    let status = status.map_err(|e| tools.error("pg_dump", &e.to_string()))?;
    if !status.success() {
        return Err(tools.error("pg_dump", &format!("{status}: {tail}")).into());
    }
    Ok(uploaded?)
}

/// Dumps the database of `tools` into the settings' tenant prefix and
/// records it; returns what `dump.json` says.
pub async fn dump(
    settings: &Settings,
    tools: &Tools,
    args: &DumpArgs,
) -> Result<DumpInfo, DumpError> {
    let store = store::open(settings)?;
    let layout = Layout::new(settings.prefix.as_deref());
    let uid = settings.tenant_uid.as_str();
    let id = args.id.unwrap_or_else(BackupId::now);
    if dump_catalog::get(store.as_ref(), &layout, uid, id)
        .await?
        .is_some()
    {
        return Err(DumpError::Exists(id));
    }
    let server = tools.server_version().await?;
    let pg_dump = tools.version("pg_dump").await?;
    check_versions(&pg_dump, &server)?;
    let key = layout.dump(uid, id)?;
    let json = layout.dump_json(uid, id)?;
    let time = jiff::Timestamp::now();
    let streamed = tokio::time::timeout(
        Duration::from_secs(args.timeout),
        stream_dump(tools, store.as_ref(), &key),
    )
    .await
    .unwrap_or(Err(DumpError::Timeout(args.timeout)));
    let recorded = match streamed {
        Ok(size) => {
            let info = DumpInfo {
                id: id.to_string(),
                tenant_backup: args.name.clone(),
                time,
                end_time: jiff::Timestamp::now(),
                server_version: server.text,
                server_major: server.major,
                pg_dump_version: pg_dump.text,
                pg_dump_major: pg_dump.major,
                size,
                objects: vec![key.to_string(), json.to_string()],
            };
            record(store.as_ref(), &json, info).await
        }
        Err(e) => Err(e),
    };
    if recorded.is_err() {
        // No dump.json: not in the catalog; remove the orphan data.
        let _ = store::delete(store.as_ref(), &key).await;
    }
    recorded
}

/// Writes `dump.json` (never over another one).
async fn record(
    store: &dyn ObjectStore,
    json: &object_store::path::Path,
    info: DumpInfo,
) -> Result<DumpInfo, DumpError> {
    let body = serde_json::to_vec_pretty(&info).map_err(|e| ToolError {
        program: "dump.json".into(),
        message: e.to_string(),
    })?;
    store::put_create_or_same(store, json, Bytes::from(body)).await?;
    Ok(info)
}

/// `dump`: prints the DumpInfo JSON and exits 0, or one redacted line on
/// stderr and exit 1.
pub async fn command(args: &DumpArgs) -> ExitCode {
    let fail = |message: String| {
        eprintln!("atoll-backup dump: {message}");
        ExitCode::FAILURE
    };
    let settings = match Settings::load(&args.config) {
        Ok(settings) => settings,
        Err(e) => return fail(e.to_string()),
    };
    let conn = match conn_from_env() {
        Ok(conn) => conn,
        Err(e) => return fail(e.to_string()),
    };
    let tools = Tools {
        bindir: args.bindir.clone(),
        conn,
    };
    match dump(&settings, &tools, args).await {
        Ok(info) => match serde_json::to_string_pretty(&info) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e.to_string()),
        },
        Err(e) => fail(tools.conn.redact(&settings.redact(&chain(&e)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str, major: u32) -> Version {
        Version {
            text: text.into(),
            major,
        }
    }

    #[test]
    fn pg_dump_must_be_at_least_the_servers_major() {
        assert!(check_versions(&v("15.18", 15), &v("15.2", 15)).is_ok());
        assert!(check_versions(&v("17.1", 17), &v("15.2", 15)).is_ok());
        let err = check_versions(&v("15.18", 15), &v("16.4", 16)).expect_err("too old");
        assert_eq!(
            err.to_string(),
            "pg_dump 15.18 is older than the server (16.4): use a postgres image of major version 16 or newer for the dump"
        );
    }
}
