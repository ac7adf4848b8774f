//! Throwaway S3-compatible servers for tests: `s3s-fs` (objects kept as
//! files in a temporary directory) on a free loopback port, with its own
//! credentials and one bucket, stopped on drop.
//!
//! The binary comes from `$ATOLL_S3_SERVER_BIN`, else
//! `~/.cache/atoll/s3s-fs/bin/s3s-fs` (scripts/test installs it there).
//! When it is missing a test is skipped, loudly, unless
//! `ATOLL_S3_REQUIRED` is set (scripts/test sets it): then it fails.
//!
//! A fault test makes the store unavailable with [`TestS3::stop`] and brings
//! it back, same port and same objects, with [`TestS3::restart`];
//! [`TestS3::list_keys`] and [`TestS3::object`] read what is stored straight
//! from the server's folder (also while it is stopped).

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to install the server, for the messages.
const INSTALL: &str = "install it with scripts/test, or `cargo install s3s-fs --version 0.14.1 --features binary --locked --root ~/.cache/atoll/s3s-fs`, or set ATOLL_S3_SERVER_BIN";

/// A server (running unless [`TestS3::stop`]ped); killed, and its
/// directory removed, when dropped.
pub struct TestS3 {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// The one bucket, created empty.
    pub bucket: String,
    /// The region to sign for (`us-east-1`).
    pub region: String,
    /// The access key the server accepts.
    pub access_key_id: String,
    /// Its secret (never printed).
    pub secret_access_key: String,
    bin: PathBuf,
    port: u16,
    /// `None` while stopped.
    child: Option<Child>,
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
        let mut server = TestS3 {
            endpoint: format!("http://127.0.0.1:{port}"),
            bucket,
            region: "us-east-1".into(),
            access_key_id,
            secret_access_key,
            bin,
            port,
            child: None,
            dir,
        };
        server.run();
        Some(server)
    }

    /// Stops the server (killed, as a crash or an outage would end it):
    /// connections to its port are refused until [`TestS3::restart`]. The
    /// objects stay. A no-op when stopped.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same objects and
    /// credentials (stopping it first if it runs), and waits until it
    /// accepts connections. Panics with the reason when it cannot.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// Whether the server runs (not stopped, not exited).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Keys of the bucket's objects that start with `prefix`, sorted, read
    /// from the server's folder.
    pub fn list_keys(&self, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        collect_keys(&self.dir.path().join(&self.bucket), "", &mut keys);
        keys.retain(|k| k.starts_with(prefix));
        keys.sort();
        keys
    }

    /// The content of object `key`, `None` when there is none.
    pub fn object(&self, key: &str) -> Option<Vec<u8>> {
        if key
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..")
        {
            return None;
        }
        std::fs::read(self.dir.path().join(&self.bucket).join(key)).ok()
    }

    /// Spawns the server and waits (up to 30 s) until it listens; a server
    /// that exits at once (the port still held by the previous one) is
    /// started again within that time.
    fn run(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut child = self.spawn();
            match wait_listening(&mut child, self.port, deadline) {
                Ok(()) => {
                    self.child = Some(child);
                    return;
                }
                Err(status) if Instant::now() < deadline => {
                    eprintln!("s3s-fs exited at start ({status}); starting it again");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(status) => panic!(
                    "s3s-fs did not listen on port {} within 30 s (last exit: {status})",
                    self.port
                ),
            }
        }
    }

    fn spawn(&self) -> Child {
        Command::new(&self.bin)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", &self.access_key_id])
            .args(["--secret-key", &self.secret_access_key])
            .arg(self.dir.path())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()))
    }

    /// The folder the objects are kept in (`<dir>/<bucket>/<key>`).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

/// Waits until `child` accepts connections on `port`; `Err` with its exit
/// status when it exits first. Panics at `deadline`.
fn wait_listening(
    child: &mut Child,
    port: u16,
    deadline: Instant,
) -> Result<(), std::process::ExitStatus> {
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(status);
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("s3s-fs did not listen on port {port} within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The files under `dir` as keys (`/`-separated, after `prefix`).
fn collect_keys(dir: &std::path::Path, prefix: &str, keys: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let key = format!("{prefix}{name}");
        match entry.file_type() {
            Ok(t) if t.is_dir() => collect_keys(&entry.path(), &format!("{key}/"), keys),
            Ok(t) if t.is_file() => keys.push(key),
            _ => {}
        }
    }
}

impl Drop for TestS3 {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests;
