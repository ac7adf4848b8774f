//! A throwaway PostgreSQL server for tests: `initdb` into a temporary
//! directory, `postgres` on a free loopback port, stopped and deleted on
//! drop.
//!
//! PostgreSQL refuses to run as root; when the tests run as root (CI does),
//! the server runs as `nobody` and owns its data directory.
//! The binaries come from `$ATOLL_PG_BINDIR`, else the newest
//! `/usr/lib/postgresql/*/bin`.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::Connection;

#[derive(Debug)]
pub struct PgServer {
    child: Child,
    port: u16,
    // Dropped after the child is stopped.
    _dir: tempfile::TempDir,
}

fn bindir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ATOLL_PG_BINDIR") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path().join("bin"))
                .filter(|bin| bin.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!("no PostgreSQL server binaries: set ATOLL_PG_BINDIR or install postgresql (scripts/test does)")
    })
}

/// The uid and gid to run PostgreSQL as: ours, or `nobody`'s when we are root.
fn server_user() -> Option<(u32, u32)> {
    let id = |flag: &str, user: Option<&str>| -> u32 {
        let out = Command::new("id")
            .arg(flag)
            .args(user)
            .output()
            .expect("run id");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("numeric id")
    };
    (id("-u", None) == 0).then(|| (id("-u", Some("nobody")), id("-g", Some("nobody"))))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn command(bin: &Path, user: Option<(u32, u32)>) -> Command {
    let mut command = Command::new(bin);
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
    }
    command.env_remove("PGDATA").env("LC_ALL", "C");
    command
}

impl PgServer {
    /// Starts a server and waits until it accepts connections.
    pub async fn start() -> PgServer {
        let bin = bindir();
        let user = server_user();
        let dir = tempfile::Builder::new()
            .prefix("atoll-pg-")
            .tempdir()
            .expect("tempdir");
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown data dir");
        }
        let data = dir.path().join("data");
        let init = command(&bin.join("initdb"), user)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .expect("run initdb");
        assert!(
            init.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let port = free_port();
        let child = command(&bin.join("postgres"), user)
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", dir.path().display()))
            .args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ])
            .args(["-c", "max_connections=200"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start postgres");
        let server = PgServer {
            child,
            port,
            _dir: dir,
        };
        server.wait_ready().await;
        server
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match sqlx::postgres::PgConnection::connect(&self.url("postgres")).await {
                Ok(conn) => {
                    let _ = conn.close().await;
                    return;
                }
                Err(error) if Instant::now() > deadline => {
                    panic!(
                        "postgres on port {} did not become ready: {error}",
                        self.port
                    )
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Creates an empty database and returns its URL.
    pub async fn create_database(&self, name: &str) -> String {
        let mut conn = sqlx::postgres::PgConnection::connect(&self.url("postgres"))
            .await
            .expect("connect to postgres");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await
            .expect("create database");
        let _ = conn.close().await;
        self.url(name)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // Our own child, by its handle. Backends exit when the postmaster
        // dies; the data directory is deleted next.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
