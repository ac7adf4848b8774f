//! The `postgres` image, played by the local PostgreSQL server binaries.
//!
//! Does what the official image's entrypoint does on first start (each
//! variable also as `<NAME>_FILE`): `initdb`
//! into `PGDATA` with `POSTGRES_USER` as superuser and `POSTGRES_PASSWORD` as
//! its password, `host all all all scram-sha-256` in `pg_hba.conf`, then
//! creates `POSTGRES_DB`, then runs the init scripts mounted at
//! `/docker-entrypoint-initdb.d` in sorted order on a temporary server that
//! listens on a private Unix socket only (`*.sh` sourced by bash with
//! `set -Eeo pipefail`, or run when executable; `*.sql` through
//! `psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password
//! --dbname "$POSTGRES_DB"`; anything else ignored), as `docker-entrypoint.sh`
//! does. Later starts find `PG_VERSION` and skip all that, so
//! the data lives as long as the directory (the PVC's).
//!
//! The server starts only where the image's entrypoint would start it: a
//! container without `command` (args empty, starting with `-` or with
//! `postgres`), or whose command starts with `postgres` or
//! `docker-entrypoint.sh postgres`. Any other command (`bash upgrade.sh`,
//! `/atoll/bin/atoll-backup agent` from an emptyDir) runs as a program of
//! the image: its tools first on `PATH`, as the server's user. The server's
//! Unix socket goes into the volume mounted at `/var/run/postgresql`, if
//! any (the pod's own; see `pgsocket`), where `pg_hba.conf`'s
//! `local all all trust` and `local replication all trust` (what `initdb
//! --auth-local=trust` writes, as in the stock image) let a sidecar in as
//! `postgres`; TCP connections need the password (`scram-sha-256`, also
//! on loopback, unlike the image: every pod shares this host's loopback).
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

use scratch::{PasswordFile, SocketDir};

mod scratch;

/// Where the image looks for init scripts.
pub const INITDB_DIR: &str = "/docker-entrypoint-initdb.d";

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
    /// The host directory mounted at `/docker-entrypoint-initdb.d`.
    pub init_scripts: Option<PathBuf>,
    /// The container's environment, which the init scripts run with
    /// (carries secrets: never printed).
    pub script_env: Vec<(String, String)>,
    /// The port of the temporary server's socket (`PGPORT`, else 5432).
    pub port: u16,
    /// Where the server keeps its Unix socket: the host directory of a
    /// volume mounted at `/var/run/postgresql`; `None`: no socket.
    pub socket_dir: Option<PathBuf>,
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
            .field("init_scripts", &self.init_scripts)
            .field("socket_dir", &self.socket_dir)
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
            init_scripts: None,
            script_env: env.to_vec(),
            port: 5432,
            socket_dir: None,
        }
    }

    /// Runs the scripts in `dir` (the host side of
    /// `/docker-entrypoint-initdb.d`) on first initialisation, with `env`
    /// (the container's) and a temporary server's socket on `port`.
    pub fn with_init_scripts(
        mut self,
        dir: Option<PathBuf>,
        env: Vec<(String, String)>,
        port: u16,
    ) -> Self {
        self.init_scripts = dir;
        self.script_env = env;
        self.port = port;
        self
    }

    /// Puts the server's Unix socket into `dir` (the pod's own volume, so
    /// servers of several pods never share a socket path); `None`: no
    /// socket.
    pub fn with_socket_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.socket_dir = dir;
        self
    }

    /// Arguments of the server process, listening on `ip:port`, with its
    /// Unix socket only in [`PostgresInit::socket_dir`] (none without one)
    /// and without fsync (data survives process deaths, which is what the
    /// simulation needs); the container's own args come last and win.
    pub fn server_args(&self, ip: std::net::Ipv4Addr, port: u16, extra: &[String]) -> Vec<String> {
        let sockets = match &self.socket_dir {
            // A list: a directory with a comma or a space is quoted.
            Some(dir) => {
                let dir = dir.to_string_lossy();
                if dir.contains([',', ' ', '"']) {
                    format!("\"{}\"", dir.replace('"', "\"\""))
                } else {
                    dir.into_owned()
                }
            }
            None => String::new(),
        };
        let mut args = vec![
            "-D".to_owned(),
            self.pgdata.to_string_lossy().into_owned(),
            "-c".to_owned(),
            format!("listen_addresses={ip}"),
            "-p".to_owned(),
            port.to_string(),
            "-c".to_owned(),
            format!("unix_socket_directories={sockets}"),
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
    run_init_scripts(init, log).await
}

/// The init scripts, in the order the image's `/docker-entrypoint-initdb.d/*`
/// glob lists them.
fn init_script_files(dir: &Path) -> Result<Vec<PathBuf>, PostgresError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(data_dir_error(dir))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// `docker_process_init_files` on a temporary server, as the image's
/// entrypoint does on first initialisation.
async fn run_init_scripts(init: &PostgresInit, log: &File) -> Result<(), PostgresError> {
    let Some(dir) = &init.init_scripts else {
        return Ok(());
    };
    let files = init_script_files(dir)?;
    if files.is_empty() {
        return Ok(());
    }
    let socket = SocketDir::create(init)?;
    let mut server = command(init, log, "postgres")?;
    server
        .arg("-D")
        .arg(&init.pgdata)
        .args(["-c", "listen_addresses="])
        .arg("-c")
        .arg(format!("unix_socket_directories={}", socket.0.display()))
        .args(["-p", &init.port.to_string(), "-c", "fsync=off"])
        .stdin(Stdio::null());
    let mut child = server.spawn().map_err(|e| PostgresError::Step {
        step: "starting the temporary server",
        detail: e.to_string(),
    })?;
    let result = async {
        wait_for_socket(init, log, &socket.0, &mut child).await?;
        for file in &files {
            run_init_script(init, log, &socket.0, file).await?;
        }
        Ok(())
    }
    .await;
    // Fast shutdown, as `pg_ctl -m fast stop` in the image.
    if let Some(pid) = child
        .id()
        .and_then(|pid| rustix::process::Pid::from_raw(pid as i32))
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
    }
    match tokio::time::timeout(std::time::Duration::from_secs(60), child.wait()).await {
        Ok(_) => {}
        Err(_) => {
            let _ = child.kill().await;
        }
    }
    result
}

/// Waits until the temporary server accepts connections on its socket.
async fn wait_for_socket(
    init: &PostgresInit,
    log: &File,
    socket: &Path,
    server: &mut tokio::process::Child,
) -> Result<(), PostgresError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let mut ready = command(init, log, "pg_isready")?;
        ready
            .arg("-q")
            .arg("-h")
            .arg(socket)
            .args(["-p", &init.port.to_string()])
            .stdin(Stdio::null());
        if run(&mut ready, "waiting for the temporary server", None)
            .await
            .is_ok()
        {
            return Ok(());
        }
        if let Ok(Some(status)) = server.try_wait() {
            return Err(PostgresError::Step {
                step: "starting the temporary server",
                detail: format!("exited with {status}"),
            });
        }
        if std::time::Instant::now() > deadline {
            return Err(PostgresError::Step {
                step: "starting the temporary server",
                detail: "not ready after 60 s".to_owned(),
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// One init script, as `docker_process_init_files` runs it.
async fn run_init_script(
    init: &PostgresInit,
    log: &File,
    socket: &Path,
    file: &Path,
) -> Result<(), PostgresError> {
    use std::os::unix::fs::PermissionsExt;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let note = |text: String| {
        let _ = writeln!(&*log, "docker-entrypoint.sh: {text}");
    };
    let executable = std::fs::metadata(file).is_ok_and(|m| m.permissions().mode() & 0o111 != 0);
    let mut script = if name.ends_with(".sh") {
        if executable {
            note(format!("running {}", file.display()));
            Command::new(file)
        } else {
            // The image sources it into its own `set -Eeo pipefail` shell.
            note(format!("sourcing {}", file.display()));
            let mut bash = Command::new("bash");
            bash.args(["-c", "set -Eeo pipefail; . \"$1\"", "docker-entrypoint.sh"])
                .arg(file);
            bash
        }
    } else if name.ends_with(".sql") {
        note(format!("running {}", file.display()));
        let mut psql = Command::new(init.bindir.join("psql"));
        psql.args(["-v", "ON_ERROR_STOP=1", "--username", &init.user])
            .args(["--no-password", "--no-psqlrc", "--dbname", &init.database])
            .arg("-f")
            .arg(file);
        psql
    } else {
        note(format!("ignoring {}", file.display()));
        return Ok(());
    };
    let io = |source: std::io::Error| PostgresError::Step {
        step: "opening the log",
        detail: source.to_string(),
    };
    script
        .env_clear()
        .envs(init.script_env.iter().map(|(k, v)| (k, v)))
        .env(
            "PATH",
            format!("{}:/usr/local/bin:/usr/bin:/bin", init.bindir.display()),
        )
        .env("PGDATA", &init.pgdata)
        .env("PGHOST", socket)
        .env("PGPORT", init.port.to_string())
        .env_remove("PGHOSTADDR")
        .current_dir("/")
        .stdout(Stdio::from(log.try_clone().map_err(io)?))
        .stderr(Stdio::from(log.try_clone().map_err(io)?))
        .process_group(0)
        .kill_on_drop(true);
    if let Some((uid, gid)) = init.run_as {
        script.uid(uid).gid(gid);
    }
    run(&mut script, "running an init script", None)
        .await
        .map_err(|e| match e {
            PostgresError::Step { detail, .. } => PostgresError::Step {
                step: "running an init script",
                detail: format!("{name}: {detail}"),
            },
            other => other,
        })
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

#[cfg(test)]
mod tests;
