//! Throwaway PostgreSQL servers for tests: `initdb` into a temporary
//! directory, `postgres` on a free loopback port, stopped on drop.
//!
//! PostgreSQL refuses to run as root, so as root the server runs as the
//! `postgres` (or `nobody`) user with the directory handed over to it.
//! Binaries come from `$ATOLL_PG_BINDIR` (scripts/test sets it).

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::nodesim::postgres::{bindir_from_env, unprivileged_user};

/// A running server; killed, and its directory removed, when dropped.
pub struct TestPostgres {
    /// Superuser URL of the `postgres` database (trust authentication).
    pub url: String,
    /// The loopback port.
    pub port: u16,
    child: Child,
    // Dropped after the server is killed (field order).
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for TestPostgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPostgres")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

fn command(program: &Path, user: Option<(u32, u32)>) -> Command {
    let mut cmd = Command::new(program);
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
    cmd.env_remove("PGDATA").env("LC_ALL", "C");
    cmd
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl TestPostgres {
    /// Starts a server and waits (up to a minute) until it accepts
    /// connections. Panics with the reason when it cannot.
    pub fn start() -> TestPostgres {
        TestPostgres::start_with(&[])
    }

    /// [`TestPostgres::start`] with extra server settings (`name=value`,
    /// each passed as `-c`), e.g. a library to preload.
    pub fn start_with(settings: &[&str]) -> TestPostgres {
        let bin = bindir_from_env();
        assert!(
            bin.join("initdb").is_file(),
            "PostgreSQL server binaries not found in {}: set ATOLL_PG_BINDIR or install them (scripts/test does)",
            bin.display()
        );
        let user = unprivileged_user();
        let dir = tempfile::Builder::new()
            .prefix("atoll-pg-")
            .tempdir()
            .expect("temp dir");
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown temp dir");
        }
        let data = dir.path().join("data");
        let out = command(&bin.join("initdb"), user)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .stdin(Stdio::null())
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let mut server = command(&bin.join("postgres"), user);
        for setting in settings {
            server.args(["-c", setting]);
        }
        let child = server
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(dir.path())
            .args(["-p", &port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=200"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start postgres");
        let server = TestPostgres {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            port,
            child,
            _dir: dir,
        };
        server.wait_ready();
        server
    }

    /// Polls `pg_isready` until the server answers.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let bin = bindir_from_env();
        loop {
            let ok = Command::new(bin.join("pg_isready"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "postgres on port {} not ready after 60 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs SQL as the superuser with `psql`; returns its unaligned output.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let url = format!("postgres://postgres@127.0.0.1:{}/{database}", self.port);
        let out = Command::new(bindir_from_env().join("psql"))
            .args([&url, "-v", "ON_ERROR_STOP=1", "-XAtqc", sql])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// A fresh database on this server, returned as a URL.
    pub fn database_url(&self, name: &str) -> String {
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""));
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
