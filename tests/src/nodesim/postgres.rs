//! The `postgres` image, played by the local PostgreSQL server binaries.
//!
//! Does what the official image's entrypoint does on first start (each
//! variable also as `<NAME>_FILE`): `initdb`
//! into `PGDATA` with `POSTGRES_USER` as superuser and `POSTGRES_PASSWORD` as
//! its password, `host all all all scram-sha-256` in `pg_hba.conf`, then
//! creates `POSTGRES_DB`. Later starts find `PG_VERSION` and skip all that, so
//! the data lives as long as the directory (the PVC's).
//!
//! PostgreSQL refuses to run as root. When the simulator is root (CI), the
//! server runs as the `postgres` user that the Debian package creates, or as
//! `nobody` where there is none; the data directory is handed to that user.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// Default directory of the server binaries.
pub const DEFAULT_BINDIR: &str = "/usr/lib/postgresql/15/bin";

/// The server binaries to use: `$ATOLL_PG_BINDIR`, else [`DEFAULT_BINDIR`].
pub fn bindir_from_env() -> PathBuf {
    std::env::var_os("ATOLL_PG_BINDIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_BINDIR))
}

/// First-start settings, from the container's environment.
#[derive(Clone)]
pub struct PostgresInit {
    /// Server binaries.
    pub bindir: PathBuf,
    /// The data directory (on the host).
    pub pgdata: PathBuf,
    /// `POSTGRES_USER` (default `postgres`).
    pub user: String,
    /// `POSTGRES_PASSWORD`.
    pub password: Option<String>,
    /// `POSTGRES_DB` (default: the user's name).
    pub database: String,
    /// `POSTGRES_HOST_AUTH_METHOD` (default `scram-sha-256`).
    pub host_auth_method: String,
    /// `POSTGRES_INITDB_ARGS`, split on whitespace.
    pub initdb_args: Vec<String>,
    /// `(uid, gid)` the server runs as.
    pub run_as: Option<(u32, u32)>,
}

impl std::fmt::Debug for PostgresInit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresInit")
            .field("bindir", &self.bindir)
            .field("pgdata", &self.pgdata)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("database", &self.database)
            .field("host_auth_method", &self.host_auth_method)
            .field("run_as", &self.run_as)
            .finish_non_exhaustive()
    }
}

impl PostgresInit {
    /// Reads the official image's variables from `env`.
    pub fn from_env(
        bindir: PathBuf,
        pgdata: PathBuf,
        env: &[(String, String)],
        run_as: Option<(u32, u32)>,
    ) -> Self {
        let value = |name: &str| {
            env.iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty())
        };
        // Like the image: `NAME` or else the contents of the file `NAME_FILE`.
        let get = |name: &str| {
            value(name).or_else(|| {
                let path = value(&format!("{name}_FILE"))?;
                let text = std::fs::read_to_string(path).ok()?;
                Some(text.trim_end_matches(['\r', '\n']).to_owned()).filter(|v| !v.is_empty())
            })
        };
        let user = get("POSTGRES_USER").unwrap_or_else(|| "postgres".to_owned());
        Self {
            bindir,
            pgdata,
            database: get("POSTGRES_DB").unwrap_or_else(|| user.clone()),
            password: get("POSTGRES_PASSWORD"),
            host_auth_method: get("POSTGRES_HOST_AUTH_METHOD")
                .unwrap_or_else(|| "scram-sha-256".to_owned()),
            initdb_args: get("POSTGRES_INITDB_ARGS")
                .map(|a| a.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default(),
            user,
            run_as,
        }
    }

    /// Arguments of the server process, listening on `ip:port` only, with no
    /// Unix socket (so servers of several pods never share a socket path)
    /// and without fsync (data survives process deaths, which is what the
    /// simulation needs); the container's own args come last and win.
    pub fn server_args(&self, ip: std::net::Ipv4Addr, port: u16, extra: &[String]) -> Vec<String> {
        let mut args = vec![
            "-D".to_owned(),
            self.pgdata.to_string_lossy().into_owned(),
            "-c".to_owned(),
            format!("listen_addresses={ip}"),
            "-p".to_owned(),
            port.to_string(),
            "-c".to_owned(),
            "unix_socket_directories=".to_owned(),
            "-c".to_owned(),
            "fsync=off".to_owned(),
        ];
        let extra = match extra.first().map(String::as_str) {
            Some("postgres") => &extra[1..],
            _ => extra,
        };
        args.extend(extra.iter().cloned());
        args
    }
}

/// Why the first-start initialisation failed. Never carries the password.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    /// The data directory could not be prepared.
    #[error("preparing data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// No password for a fresh database, as the official image refuses too.
    #[error(
        "Database is uninitialized and superuser password is not specified. You must specify POSTGRES_PASSWORD to a non-empty value for the superuser."
    )]
    NoPassword,
    /// A step of the initialisation could not run or failed.
    #[error("{step} failed: {detail} (see the container log)")]
    Step {
        /// Which step.
        step: &'static str,
        /// What happened.
        detail: String,
    },
}

/// `(uid, gid)` the server must run as: `None` when not root, else the
/// `postgres` user or `nobody` from `/etc/passwd`.
pub fn unprivileged_user() -> Option<(u32, u32)> {
    if !rustix::process::geteuid().is_root() {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let find = |name: &str| {
        passwd.lines().find_map(|line| {
            let mut fields = line.split(':');
            (fields.next() == Some(name)).then_some(())?;
            let uid = fields.nth(1)?.parse().ok()?;
            let gid = fields.next()?.parse().ok()?;
            Some((uid, gid))
        })
    };
    find("postgres")
        .or_else(|| find("nobody"))
        .or(Some((65534, 65534)))
}

fn data_dir_error(path: &Path) -> impl FnOnce(std::io::Error) -> PostgresError + '_ {
    move |source| PostgresError::DataDir {
        path: path.to_owned(),
        source,
    }
}

/// Initialises the data directory on first start; a no-op afterwards.
pub async fn prepare(init: &PostgresInit, log: &File) -> Result<(), PostgresError> {
    let pgdata = &init.pgdata;
    std::fs::create_dir_all(pgdata).map_err(data_dir_error(pgdata))?;
    std::fs::set_permissions(pgdata, std::fs::Permissions::from_mode(0o700))
        .map_err(data_dir_error(pgdata))?;
    if let Some((uid, gid)) = init.run_as {
        chown(pgdata, Some(uid), Some(gid)).map_err(data_dir_error(pgdata))?;
    }
    if pgdata.join("PG_VERSION").exists() {
        return Ok(());
    }
    let trust = init.host_auth_method == "trust";
    if init.password.is_none() && !trust {
        return Err(PostgresError::NoPassword);
    }
    let pwfile = PasswordFile::create(init)?;
    let mut initdb = command(init, log, "initdb")?;
    initdb
        .arg("-D")
        .arg(pgdata)
        .arg(format!("--username={}", init.user))
        .arg("--encoding=UTF8")
        .arg("--locale=C.UTF-8")
        .arg("--auth-local=trust")
        // A simulated disk: skipping fsync loses nothing when a process
        // dies, only when the machine does, and saves seconds per start.
        .arg("--no-sync")
        .arg(format!("--auth-host={}", init.host_auth_method));
    if let Some(path) = &pwfile.0 {
        initdb.arg(format!("--pwfile={}", path.display()));
    }
    initdb.args(&init.initdb_args);
    run(&mut initdb, "initdb", None).await?;
    drop(pwfile);

    let mut hba = File::options()
        .append(true)
        .open(pgdata.join("pg_hba.conf"))
        .map_err(data_dir_error(pgdata))?;
    writeln!(hba, "\nhost all all all {}", init.host_auth_method)
        .map_err(data_dir_error(pgdata))?;

    if init.database != "postgres" {
        let mut single = command(init, log, "postgres")?;
        single
            .arg("--single")
            .arg("-D")
            .arg(pgdata)
            .arg("-j")
            .arg("postgres");
        let sql = format!(
            "CREATE DATABASE \"{}\";\n",
            init.database.replace('"', "\"\"")
        );
        run(&mut single, "creating database", Some(sql)).await?;
    }
    Ok(())
}

fn command(init: &PostgresInit, log: &File, program: &str) -> Result<Command, PostgresError> {
    let path = init.bindir.join(program);
    let io = |source| PostgresError::Step {
        step: "opening the log",
        detail: format!("{source}"),
    };
    let mut command = Command::new(&path);
    command
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LC_ALL", "C.UTF-8")
        .current_dir("/")
        .stdout(Stdio::from(log.try_clone().map_err(io)?))
        .stderr(Stdio::from(log.try_clone().map_err(io)?))
        .process_group(0)
        .kill_on_drop(true);
    if let Some((uid, gid)) = init.run_as {
        command.uid(uid).gid(gid);
    }
    Ok(command)
}

async fn run(
    command: &mut Command,
    step: &'static str,
    stdin: Option<String>,
) -> Result<(), PostgresError> {
    command.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = command.spawn().map_err(|e| PostgresError::Step {
        step,
        detail: e.to_string(),
    })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .await
            .map_err(|e| PostgresError::Step {
                step,
                detail: e.to_string(),
            })?;
    }
    let status = child.wait().await.map_err(|e| PostgresError::Step {
        step,
        detail: e.to_string(),
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(PostgresError::Step {
            step,
            detail: format!("exited with {status}"),
        })
    }
}

/// The superuser password in a file only the server's user can read,
/// removed when dropped.
struct PasswordFile(Option<PathBuf>);

impl PasswordFile {
    fn create(init: &PostgresInit) -> Result<Self, PostgresError> {
        let Some(password) = &init.password else {
            return Ok(Self(None));
        };
        let path = std::env::temp_dir().join(format!(
            "nodesim-pw-{}-{}",
            std::process::id(),
            super::addr::random_u32()
        ));
        let write = || -> std::io::Result<()> {
            use std::os::unix::fs::OpenOptionsExt;
            let mut file = File::options()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            file.write_all(password.as_bytes())?;
            if let Some((uid, gid)) = init.run_as {
                chown(&path, Some(uid), Some(gid))?;
            }
            Ok(())
        };
        match write() {
            Ok(()) => Ok(Self(Some(path))),
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                Err(data_dir_error(&path)(e))
            }
        }
    }
}

impl Drop for PasswordFile {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_official_images_variables_and_redacts_the_password() {
        let env = vec![
            ("POSTGRES_USER".to_owned(), "atoll".to_owned()),
            ("POSTGRES_PASSWORD".to_owned(), "hunter2".to_owned()),
        ];
        let init = PostgresInit::from_env("/pg".into(), "/data".into(), &env, None);
        assert_eq!(init.user, "atoll");
        assert_eq!(init.database, "atoll");
        assert_eq!(init.host_auth_method, "scram-sha-256");
        assert!(!format!("{init:?}").contains("hunter2"));

        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("password");
        std::fs::write(&file, "from-file\n").expect("write");
        let env = vec![(
            "POSTGRES_PASSWORD_FILE".to_owned(),
            file.to_string_lossy().into_owned(),
        )];
        let init = PostgresInit::from_env("/pg".into(), "/data".into(), &env, None);
        assert_eq!(init.password.as_deref(), Some("from-file"));
        assert_eq!(init.user, "postgres");
        let args = init.server_args(
            std::net::Ipv4Addr::new(127, 64, 1, 2),
            5432,
            &[
                "postgres".to_owned(),
                "-c".to_owned(),
                "max_connections=20".to_owned(),
            ],
        );
        assert_eq!(
            args.join(" "),
            "-D /data -c listen_addresses=127.64.1.2 -p 5432 -c unix_socket_directories= -c fsync=off -c max_connections=20"
        );
    }
}
