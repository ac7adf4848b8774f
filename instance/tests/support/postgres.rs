//! Throwaway PostgreSQL servers for tests: `initdb` into a temporary
//! directory, `postgres` on a free loopback port, killed on drop.
//!
//! PostgreSQL refuses to run as root, so when the tests run as root the
//! server runs as `nobody` with the directory handed over to that user.
//! Binaries come from `$ATOLL_PG_BINDIR`, else the newest
//! `/usr/lib/postgresql/*/bin`.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct TestPostgres {
    pub url: String,
    port: u16,
    child: Child,
    // Dropped after the server is killed (field order).
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for TestPostgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPostgres")
            .field("url", &self.url)
            .finish()
    }
}

fn bindir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ATOLL_PG_BINDIR") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL server binaries not found: set ATOLL_PG_BINDIR or install them (scripts/test does)"
        )
    })
}

/// uid/gid of `nobody` when running as root; `None` otherwise.
fn unprivileged_user() -> Option<(u32, u32)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid_line = status.lines().find(|l| l.starts_with("Uid:"))?;
    let euid: u32 = uid_line.split_whitespace().nth(2)?.parse().ok()?;
    if euid != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let entry = passwd
        .lines()
        .find(|l| l.starts_with("nobody:"))
        .map(|l| l.split(':').collect::<Vec<_>>());
    match entry {
        Some(fields) if fields.len() > 3 => Some((
            fields[2].parse().unwrap_or(65534),
            fields[3].parse().unwrap_or(65534),
        )),
        _ => Some((65534, 65534)),
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
    /// Starts a server and waits until it accepts connections.
    pub fn start() -> TestPostgres {
        let bin = bindir();
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
        let child = command(&bin.join("postgres"), user)
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
        server.wait_ready(port);
        server
    }

    fn wait_ready(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let bin = bindir();
        loop {
            let ok = Command::new(bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "postgres on port {port} not ready after 60 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A fresh database on this server, returned as a URL.
    pub fn database_url(&self, name: &str) -> String {
        let out = Command::new(bindir().join("psql"))
            .args([&self.url, "-v", "ON_ERROR_STOP=1", "-qc"])
            .arg(format!("CREATE DATABASE \"{name}\""))
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "create database failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
