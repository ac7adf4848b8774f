//! The command line of `atoll-backup`. Credentials are never arguments:
//! they are read from the `--config` directory (see [`crate::settings`]).
//!
//! Exit codes follow what PostgreSQL expects of its hooks: `wal-push`
//! exits 0 only once the file is stored (else PostgreSQL retries);
//! `wal-fetch` exits 1 when the file is not in the archive (the end of
//! recovery) and 2 on any other failure.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::{agent, base, dump, install, restore, restore_dump, wal};

/// Where the configuration directory is mounted in the pods.
pub const DEFAULT_CONFIG_DIR: &str = "/etc/atoll-backup";

/// `atoll-backup` and its subcommands.
#[derive(Debug, Parser)]
#[command(
    name = "atoll-backup",
    version,
    about = "Continuous backup of an Atoll tenant's PostgreSQL into an S3-compatible object store"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Copy this executable to DIR/atoll-backup (mode 0755), for an init
    /// container that hands it to the database container.
    Install {
        /// The directory (created when missing).
        dir: PathBuf,
    },
    /// PostgreSQL's archive_command: store one WAL file (`%p`).
    WalPush(wal::PushArgs),
    /// PostgreSQL's restore_command: fetch one WAL file (`%f %p`).
    WalFetch(wal::FetchArgs),
    /// Take a base backup of the local server (pg_basebackup over its
    /// socket) into the tenant's prefix; print its BackupInfo JSON.
    BaseBackup(base::BaseBackupArgs),
    /// Point-in-time restore of another tenant's backup into an empty
    /// PGDATA; write restore.json for the new tenant; exit 0 or 1.
    Restore(restore::RestoreArgs),
    /// The database pod's sidecar: an HTTP API (bearer token) for archiving
    /// status, base backups and WAL switches.
    Agent(agent::AgentArgs),
    /// Dump an External tenant's database (DATABASE_URL) with pg_dump into
    /// its prefix; print its DumpInfo JSON.
    Dump(dump::DumpArgs),
    /// Restore another tenant's dump into a new, empty database
    /// (DATABASE_URL); write restore.json for the new tenant; exit 0 or 1.
    RestoreDump(restore_dump::RestoreDumpArgs),
}

/// Parses the command line, runs the command on a single-threaded runtime
/// (the binary is forked per WAL segment: keep the start cheap) and returns
/// the exit code.
pub fn main() -> ExitCode {
    init_tracing();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("atoll-backup: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(run(cli.command))
}

/// Runs one command; prints its errors (credentials redacted) to stderr.
pub async fn run(command: Command) -> ExitCode {
    match command {
        Command::Install { dir } => match install::install(&dir) {
            Ok(path) => {
                println!("installed {}", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("atoll-backup install: {e}");
                ExitCode::FAILURE
            }
        },
        Command::WalPush(args) => wal::push_command(&args).await,
        Command::WalFetch(args) => wal::fetch_command(&args).await,
        Command::BaseBackup(args) => base::command(&args).await,
        Command::Restore(args) => restore::command(&args).await,
        Command::Agent(args) => agent::command(&args).await,
        Command::Dump(args) => dump::command(&args).await,
        Command::RestoreDump(args) => restore_dump::command(&args).await,
    }
}

/// Logs to stderr only when `ATOLL_BACKUP_LOG` is set (an env filter such
/// as `debug`): PostgreSQL copies the hooks' stderr into its log.
fn init_tracing() {
    let Ok(filter) = std::env::var("ATOLL_BACKUP_LOG") else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .try_init();
}
