//! The temporary PostgreSQL server of a restore: started on the unpacked
//! data directory with every recovery setting as a `-c` option (nothing
//! persists; promotion removes `recovery.signal`), reachable by nobody
//! (`listen_addresses=''`, a private socket directory), its log read from
//! stderr until it is promoted (then stopped fast) or exits.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::pglog::{self, RecoveryLog};

/// How to run the recovery.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The `postgres` program.
    pub postgres: PathBuf,
    /// The data directory (unpacked, with `recovery.signal`).
    pub pgdata: PathBuf,
    /// A private directory for the server's socket.
    pub socket_dir: PathBuf,
    /// `restore_command` (already quoted for the shell, `%` escaped).
    pub restore_command: String,
    /// `archive_command` for the new timeline, or `None` (archiving off).
    pub archive_command: Option<String>,
    /// `recovery_target_time`; `None` = the end of the archive.
    pub target: Option<jiff::Timestamp>,
    /// Give up after this long.
    pub timeout: Duration,
}

/// The server's arguments for `plan` (pure, so it can be checked).
pub fn server_args(plan: &Plan) -> Vec<String> {
    let mut settings = vec![
        "listen_addresses=".to_owned(),
        format!("unix_socket_directories={}", plan.socket_dir.display()),
        "unix_socket_permissions=0700".to_owned(),
        // The outcome is read from the log: make it plain, complete and
        // in UTC, whatever the source's postgresql.conf says.
        "logging_collector=off".to_owned(),
        "log_destination=stderr".to_owned(),
        "log_min_messages=warning".to_owned(),
        "log_line_prefix=%m [%p] ".to_owned(),
        "lc_messages=C".to_owned(),
        "timezone=UTC".to_owned(),
        "log_timezone=UTC".to_owned(),
        format!("restore_command={}", plan.restore_command),
        "recovery_target_timeline=latest".to_owned(),
        "recovery_target_action=promote".to_owned(),
        // No read-only phase: nobody connects, and hot standby would refuse
        // to start when the source ran with larger max_connections (or
        // similar) than its files say ("insufficient parameter settings").
        "hot_standby=off".to_owned(),
    ];
    match &plan.archive_command {
        Some(cmd) => {
            settings.push("archive_mode=on".to_owned());
            settings.push(format!("archive_command={cmd}"));
        }
        // Also overrides any archive_command of the source's files, which
        // would write into the source's archive.
        None => {
            settings.push("archive_mode=off".to_owned());
            settings.push("archive_command=".to_owned());
        }
    }
    // Exactly one target (or none = the end of the archive), whatever the
    // source's postgresql.auto.conf says; never stream from a primary. The
    // empty ones go first: PostgreSQL 15 refuses any recovery_target* set
    // after another kind was set, even to ''.
    for empty in [
        "recovery_target",
        "recovery_target_name",
        "recovery_target_xid",
        "recovery_target_lsn",
        "primary_conninfo",
        "primary_slot_name",
    ] {
        settings.push(format!("{empty}="));
    }
    let target = plan
        .target
        .map(pglog::format_target_time)
        .unwrap_or_default();
    settings.push(format!("recovery_target_time={target}"));
    let mut args = vec!["-D".to_owned(), plan.pgdata.display().to_string()];
    for setting in settings {
        args.push("-c".to_owned());
        args.push(setting);
    }
    args
}

/// Shell-quotes `text` for a PostgreSQL `*_command`: single quotes for
/// the shell, `%` doubled for PostgreSQL's own placeholders.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''")).replace('%', "%%")
}

/// What one run of the server showed.
#[derive(Debug, Clone)]
pub struct Run {
    /// The lines that matter, parsed.
    pub log: RecoveryLog,
    /// The last lines of the log (for unexpected failures).
    pub tail: Vec<String>,
}

/// Why the server could not be run at all.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    /// Starting it failed.
    #[error("cannot start {program}: {source}")]
    Start {
        /// The program.
        program: String,
        /// The reason.
        source: std::io::Error,
    },
    /// It neither finished nor failed in time.
    #[error("recovery did not finish within {} s; last log lines: {tail}", .limit.as_secs())]
    Timeout {
        /// The limit.
        limit: Duration,
        /// The last log lines.
        tail: String,
    },
}

/// Runs the server until it is promoted (then stops it with a fast
/// shutdown) or exits; echoes its log to our stderr.
pub async fn run(plan: &Plan) -> Result<Run, RecoveryError> {
    let mut child = Command::new(&plan.postgres)
        .args(server_args(plan))
        .current_dir(&plan.pgdata)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| RecoveryError::Start {
            program: plan.postgres.display().to_string(),
            source,
        })?;
    let mut run = Run {
        log: RecoveryLog::default(),
        tail: Vec::new(),
    };
    let watched = tokio::time::timeout(plan.timeout, watch(&mut child, &mut run)).await;
    if watched.is_err() {
        let _ = child.kill().await;
        return Err(RecoveryError::Timeout {
            limit: plan.timeout,
            tail: run.tail.join(" | "),
        });
    }
    Ok(run)
}

/// Reads the log until promotion or exit; on promotion stops the server
/// and reads on until it is gone.
async fn watch(child: &mut Child, run: &mut Run) {
    let Some(stderr) = child.stderr.take() else {
        let _ = child.wait().await;
        return;
    };
    let mut lines = BufReader::new(stderr).lines();
    let mut stopping = false;
    while let Ok(Some(line)) = lines.next_line().await {
        eprintln!("{line}");
        run.log.feed(&line);
        if run.tail.len() == TAIL_LINES {
            run.tail.remove(0);
        }
        run.tail.push(line);
        if run.log.promoted() && !stopping {
            stopping = true;
            fast_stop(child);
        }
    }
    let _ = child.wait().await;
}

/// Log lines kept for messages about unexpected failures.
const TAIL_LINES: usize = 20;

/// SIGINT: PostgreSQL's fast shutdown.
fn fast_stop(child: &Child) {
    let pid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(rustix::process::Pid::from_raw);
    if let Some(pid) = pid {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
    }
}

/// Creates a fresh private (0700) directory for the server's socket; kept
/// short (the socket path must fit in 107 bytes).
pub fn socket_dir() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let nanos = jiff::Timestamp::now().subsec_nanosecond();
    let dir = Path::new("/tmp").join(format!("atoll-restore-{}-{nanos}", std::process::id()));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(target: Option<&str>, archive: bool) -> Plan {
        Plan {
            postgres: "postgres".into(),
            pgdata: "/data/pgdata".into(),
            socket_dir: "/tmp/s".into(),
            restore_command: "'/bin/x' wal-fetch %f %p".into(),
            archive_command: archive.then(|| "'/bin/x' wal-push %p".to_owned()),
            target: target.map(|t| t.parse().expect("timestamp")),
            timeout: Duration::from_secs(1),
        }
    }

    fn settings(args: &[String]) -> Vec<&str> {
        args.chunks(2)
            .skip(1)
            .map(|pair| pair[1].as_str())
            .collect()
    }

    #[test]
    fn target_and_archive_settings() {
        let args = server_args(&plan(Some("2026-12-07T11:15:13.061764Z"), true));
        assert_eq!(&args[..2], ["-D", "/data/pgdata"]);
        let s = settings(&args);
        assert!(
            s.contains(&"recovery_target_time=2026-12-07 11:15:13.061764+00:00"),
            "{s:?}"
        );
        assert!(s.contains(&"recovery_target_action=promote"));
        assert!(s.contains(&"listen_addresses="));
        assert!(s.contains(&"lc_messages=C"));
        assert!(s.contains(&"archive_mode=on"));
        assert!(s.contains(&"archive_command='/bin/x' wal-push %p"));
        assert!(s.contains(&"restore_command='/bin/x' wal-fetch %f %p"));
        let last = s.iter().rposition(|x| x.starts_with("recovery_target"));
        let time = s
            .iter()
            .position(|x| x.starts_with("recovery_target_time="));
        assert_eq!(
            last, time,
            "the time is set after the emptied targets: {s:?}"
        );
    }

    #[test]
    fn no_target_recovers_to_the_end_without_archiving() {
        let s_args = server_args(&plan(None, false));
        let s = settings(&s_args);
        assert!(s.contains(&"recovery_target_time="), "no target: {s:?}");
        assert!(s.contains(&"recovery_target_lsn="));
        assert!(s.contains(&"primary_conninfo="));
        assert!(s.contains(&"archive_mode=off"));
        assert!(
            s.contains(&"archive_command="),
            "the source's command is overridden"
        );
    }

    #[test]
    fn quoting_for_the_shell_and_postgres() {
        assert_eq!(
            quote("/atoll/bin/atoll-backup"),
            "'/atoll/bin/atoll-backup'"
        );
        assert_eq!(quote("/a b/it's"), "'/a b/it'\\''s'");
        assert_eq!(quote("/x/100%"), "'/x/100%%'");
    }
}
