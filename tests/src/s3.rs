//! Throwaway S3-compatible servers for tests: `s3s-fs` (objects kept as
//! files in a temporary directory) on a free loopback port, with its own
//! credentials and one bucket, stopped on drop.
//!
//! The binary comes from `$ATOLL_S3_SERVER_BIN`, else
//! `~/.cache/atoll/s3s-fs/bin/s3s-fs` (scripts/test installs it there).
//! When it is missing a test is skipped, loudly, unless
//! `ATOLL_S3_REQUIRED` is set (scripts/test sets it): then it fails.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to install the server, for the messages.
const INSTALL: &str = "install it with scripts/test, or `cargo install s3s-fs --version 0.14.1 --features binary --locked --root ~/.cache/atoll/s3s-fs`, or set ATOLL_S3_SERVER_BIN";

/// A running server; killed, and its directory removed, when dropped.
pub struct TestS3 {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// The one bucket, created empty.
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    child: Child,
    // Removed after the server is killed (field order).
    dir: tempfile::TempDir,
}

/// The credentials are not printed.
impl std::fmt::Debug for TestS3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestS3")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

/// Where the binary is expected.
pub fn server_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("ATOLL_S3_SERVER_BIN") {
        return PathBuf::from(bin);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache/atoll/s3s-fs/bin/s3s-fs")
}

/// The binary, or `None` after saying loudly that `what` is skipped; fails
/// instead when `ATOLL_S3_REQUIRED` is set.
pub fn server_or_skip(what: &str) -> Option<PathBuf> {
    let bin = server_bin();
    if bin.is_file() {
        return Some(bin);
    }
    let message = format!(
        "the S3 server s3s-fs is missing at {}: {INSTALL}",
        bin.display()
    );
    assert!(
        std::env::var_os("ATOLL_S3_REQUIRED").is_none(),
        "ATOLL_S3_REQUIRED is set but {message}"
    );
    println!("\n!!! SKIPPED {what}: {message} !!!\n");
    eprintln!("\n!!! SKIPPED {what}: {message} !!!\n");
    None
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl TestS3 {
    /// Starts a server with a bucket `atoll-test` and waits (up to 30 s)
    /// until it accepts connections; `None` when the binary is missing and
    /// not required (see [`server_or_skip`]). Panics with the reason when it
    /// cannot start.
    pub fn start(what: &str) -> Option<TestS3> {
        let bin = server_or_skip(what)?;
        let dir = tempfile::Builder::new()
            .prefix("atoll-s3-")
            .tempdir()
            .expect("temp dir");
        let bucket = "atoll-test".to_owned();
        // s3s-fs keeps a bucket as a folder of its root.
        std::fs::create_dir(dir.path().join(&bucket)).expect("create the bucket's folder");
        let port = free_port();
        let access_key_id = format!("AK{}", uuid::Uuid::new_v4().simple());
        let secret_access_key = format!("SK{}", uuid::Uuid::new_v4().simple());
        let child = Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", &access_key_id])
            .args(["--secret-key", &secret_access_key])
            .arg(dir.path())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut server = TestS3 {
            endpoint: format!("http://127.0.0.1:{port}"),
            bucket,
            region: "us-east-1".into(),
            access_key_id,
            secret_access_key,
            child,
            dir,
        };
        server.wait_ready(port);
        Some(server)
    }

    /// The folder the objects are kept in (`<dir>/<bucket>/<key>`).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    fn wait_ready(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("s3s-fs exited at start ({status})");
            }
            assert!(
                Instant::now() < deadline,
                "s3s-fs did not listen on port {port} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestS3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
