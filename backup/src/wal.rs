//! `wal-push` (PostgreSQL's `archive_command`) and `wal-fetch` (its
//! `restore_command`).
//!
//! A pushed file is never overwritten: `PutMode::Create`, and when the
//! object exists, the same content is success (PostgreSQL retries a push
//! whose answer it did not get) and other content an error (two servers
//! archiving into one prefix, or a reused prefix).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bytes::Bytes;
use clap::Args;
use object_store::ObjectStore;

use crate::cli::DEFAULT_CONFIG_DIR;
use crate::compress::{self, CompressError};
use crate::layout::{Layout, LayoutError, WalKind};
use crate::settings::{Settings, SettingsError};
use crate::status::{self, PushStatus};
use crate::store::{self, PutOutcome, StoreError};

/// `wal-push [--config DIR] [--status-dir DIR] PATH`.
#[derive(Debug, Clone, Args)]
pub struct PushArgs {
    /// The configuration directory (config.json, accessKeyId, secretAccessKey).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_CONFIG_DIR)]
    pub config: PathBuf,
    /// Where to leave last-push.json (the result of this push).
    #[arg(long, value_name = "DIR")]
    pub status_dir: Option<PathBuf>,
    /// The WAL file (`%p`: relative to the data directory, the cwd).
    pub path: PathBuf,
}

/// `wal-fetch [--config DIR] [--source-uid UID] NAME DEST`.
#[derive(Debug, Clone, Args)]
pub struct FetchArgs {
    /// The configuration directory (config.json, accessKeyId, secretAccessKey).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_CONFIG_DIR)]
    pub config: PathBuf,
    /// Whose archive to read (a restore reads the source tenant's); default:
    /// the configuration's tenantUid.
    #[arg(long, value_name = "UID")]
    pub source_uid: Option<String>,
    /// The WAL file name (`%f`).
    pub name: String,
    /// Where to write it (`%p`).
    pub dest: PathBuf,
}

/// Why a push or fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// The configuration directory is wrong.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The file name is not a WAL file name, or the uid is invalid.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// The object store failed or refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored object is damaged.
    #[error("{key}: {source}")]
    Damaged {
        /// The object key.
        key: String,
        /// The reason.
        source: CompressError,
    },
    /// A local file step failed.
    #[error("{what} {path}: {source}")]
    File {
        /// The step.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The reason.
        source: std::io::Error,
    },
    /// The path has no usable file name.
    #[error("{0}: not a WAL file path")]
    NoName(PathBuf),
}

fn file_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> WalError {
    let path = path.to_owned();
    move |source| WalError::File { what, path, source }
}

/// Stores the WAL file at `path` under `settings.tenant_uid`: segments
/// lz4-compressed, history and backup label files as they are.
pub async fn push(settings: &Settings, path: &Path) -> Result<PutOutcome, WalError> {
    let store = store::open(settings)?;
    let layout = Layout::new(settings.prefix.as_deref());
    push_to(store.as_ref(), &layout, &settings.tenant_uid, path).await
}

/// [`push`] into a given store.
pub async fn push_to(
    store: &dyn ObjectStore,
    layout: &Layout,
    uid: &str,
    path: &Path,
) -> Result<PutOutcome, WalError> {
    let name = file_name(path)?;
    let kind = WalKind::of(&name)?;
    let key = layout.wal(uid, &name)?;
    let data = std::fs::read(path).map_err(file_err("cannot read", path))?;
    if !kind.compressed() {
        return Ok(store::put_create_or_same(store, &key, Bytes::from(data)).await?);
    }
    let packed = compress::compress(&data).map_err(|source| WalError::Damaged {
        key: key.to_string(),
        source,
    })?;
    // Compare content, not compressed bytes: another compressor version
    // may have written the same segment differently.
    let same = move |existing: &Bytes| compress::decompress(existing).is_ok_and(|d| d == data);
    Ok(store::put_create_or_same_by(store, &key, Bytes::from(packed), same).await?)
}

/// The outcome of [`fetch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// Written to the destination.
    Written,
    /// Not in the archive.
    Absent,
}

/// Fetches WAL file `name` of tenant `uid` into `dest` (decompressed,
/// written through a temporary file and a rename, synced).
pub async fn fetch(
    settings: &Settings,
    uid: &str,
    name: &str,
    dest: &Path,
) -> Result<Fetched, WalError> {
    let store = store::open(settings)?;
    let layout = Layout::new(settings.prefix.as_deref());
    fetch_from(store.as_ref(), &layout, uid, name, dest).await
}

/// [`fetch`] from a given store.
pub async fn fetch_from(
    store: &dyn ObjectStore,
    layout: &Layout,
    uid: &str,
    name: &str,
    dest: &Path,
) -> Result<Fetched, WalError> {
    let kind = WalKind::of(name)?;
    let key = layout.wal(uid, name)?;
    let Some(bytes) = store::get_bytes(store, &key).await? else {
        return Ok(Fetched::Absent);
    };
    let data = if kind.compressed() {
        compress::decompress(&bytes).map_err(|source| WalError::Damaged {
            key: key.to_string(),
            source,
        })?
    } else {
        bytes.to_vec()
    };
    write_synced(dest, &data)?;
    Ok(Fetched::Written)
}

/// Writes `dest` through `dest.atoll-tmp` and a rename.
fn write_synced(dest: &Path, data: &[u8]) -> Result<(), WalError> {
    let mut temp = dest.as_os_str().to_owned();
    temp.push(".atoll-tmp");
    let temp = PathBuf::from(temp);
    let mut file = std::fs::File::create(&temp).map_err(file_err("cannot create", &temp))?;
    file.write_all(data)
        .map_err(file_err("cannot write", &temp))?;
    file.sync_all().map_err(file_err("cannot sync", &temp))?;
    drop(file);
    std::fs::rename(&temp, dest).map_err(file_err("cannot rename to", dest))
}

fn file_name(path: &Path) -> Result<String, WalError> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| WalError::NoName(path.to_owned()))
}

/// `wal-push`: exit 0 once stored (or already stored with the same
/// content), 1 otherwise, with one redacted line on stderr and the result
/// in `--status-dir`/last-push.json.
pub async fn push_command(args: &PushArgs) -> ExitCode {
    let segment = args
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A settings error names files and fields, never a credential's value.
    let result = match Settings::load(&args.config) {
        Ok(settings) => push(&settings, &args.path)
            .await
            .map_err(|e| settings.redact_error(&e)),
        Err(e) => Err(e.to_string()),
    };
    if let Some(dir) = &args.status_dir {
        let status = PushStatus {
            segment: segment.clone(),
            time: jiff::Timestamp::now(),
            ok: result.is_ok(),
            error: result.as_ref().err().cloned(),
        };
        if let Err(e) = status::write(dir, &status) {
            eprintln!("atoll-backup wal-push: cannot record the result: {e}");
        }
    }
    match result {
        Ok(outcome) => {
            tracing::debug!(segment, ?outcome, "archived");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("atoll-backup wal-push {segment}: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `wal-fetch`: exit 0 when written, 1 (one line) when the file is not in
/// the archive, 2 on other errors.
pub async fn fetch_command(args: &FetchArgs) -> ExitCode {
    let settings = match Settings::load(&args.config) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("atoll-backup wal-fetch {}: {e}", args.name);
            return ExitCode::from(2);
        }
    };
    let uid = args.source_uid.as_deref().unwrap_or(&settings.tenant_uid);
    match fetch(&settings, uid, &args.name, &args.dest).await {
        Ok(Fetched::Written) => ExitCode::SUCCESS,
        Ok(Fetched::Absent) => {
            eprintln!(
                "atoll-backup wal-fetch: {} is not in the archive",
                args.name
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            let message = settings.redact_error(&e);
            eprintln!("atoll-backup wal-fetch {}: {message}", args.name);
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
#[path = "wal_tests.rs"]
mod tests;
