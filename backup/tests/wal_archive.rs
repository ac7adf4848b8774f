//! `atoll-backup wal-push`/`wal-fetch` with real components: a throwaway
//! PostgreSQL 15 whose `archive_command` is the built binary, archiving
//! into the S3 test server (s3s-fs).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use atoll_backup::layout::Layout;
use atoll_backup::settings::Settings;
use atoll_backup::{compress, status, store};
use atoll_testkit::nodesim::postgres::unprivileged_user;
use atoll_testkit::pg::TestPostgres;
use atoll_testkit::s3::TestS3;
use atoll_testkit::wait::eventually;

const BIN: &str = env!("CARGO_BIN_EXE_atoll-backup");
const UID: &str = "0b7d3c52-1f6e-4d0a-9c1e-5a2f8e9b7c31";
const SEGMENT_SIZE: usize = 16 * 1024 * 1024;

/// A directory the PostgreSQL server's user can read and write.
fn shared_dir(prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temp dir");
    hand_over(dir.path());
    dir
}

/// Gives `path` to the unprivileged user PostgreSQL runs as (when root).
fn hand_over(path: &Path) {
    if let Some((uid, gid)) = unprivileged_user() {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
    }
}

/// A configuration directory for `endpoint` with the given credentials.
fn config_dir(endpoint: &str, bucket: &str, key_id: &str, secret: &str) -> tempfile::TempDir {
    let dir = shared_dir("atoll-backup-config-");
    let config = serde_json::json!({
        "endpoint": endpoint, "bucket": bucket, "region": "us-east-1",
        "pathStyle": true, "allowHttp": true, "prefix": "itest",
        "tenantUid": UID, "tenantName": "acme",
    });
    let files = [
        ("config.json", config.to_string()),
        ("accessKeyId", key_id.to_owned()),
        ("secretAccessKey", secret.to_owned()),
    ];
    for (name, content) in files {
        let path = dir.path().join(name);
        std::fs::write(&path, content).expect("write config file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        hand_over(&path);
    }
    dir
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run atoll-backup")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Writes a file named `name` with `content` into a fresh directory.
fn wal_file(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write WAL file");
    path
}

#[tokio::test]
async fn archives_segments_and_never_overwrites() {
    let Some(s3) = TestS3::start("atoll-backup WAL archiving") else {
        return;
    };
    let cfg = config_dir(
        &s3.endpoint,
        &s3.bucket,
        &s3.access_key_id,
        &s3.secret_access_key,
    );
    let status_dir = shared_dir("atoll-backup-status-");
    let cfg_path = cfg.path().display().to_string();
    let archive_command = format!(
        "archive_command={BIN} wal-push --config {cfg_path} --status-dir {} %p",
        status_dir.path().display()
    );
    let pg = TestPostgres::start_with(&["archive_mode=on", &archive_command]);
    pg.psql(
        "postgres",
        "CREATE TABLE t AS SELECT g AS x FROM generate_series(1, 10000) g",
    );
    let segment = pg.psql("postgres", "SELECT pg_walfile_name(pg_current_wal_lsn())");
    pg.psql("postgres", "SELECT pg_switch_wal()");

    let settings = Settings::load(cfg.path()).expect("settings");
    let objects = store::open(&settings).expect("store");
    let key = Layout::new(Some("itest")).wal(UID, &segment).expect("key");
    let stored = eventually("the segment in the store", Duration::from_secs(60), || {
        let (objects, key) = (objects.clone(), key.clone());
        async move {
            store::get_bytes(objects.as_ref(), &key)
                .await
                .ok()
                .flatten()
        }
    })
    .await;
    let data_dir = pg.psql("postgres", "SHOW data_directory");
    let original = std::fs::read(Path::new(&data_dir).join("pg_wal").join(&segment))
        .expect("the segment in pg_wal");
    let restored = compress::decompress(&stored).expect("an lz4 frame");
    assert_eq!(restored.len(), SEGMENT_SIZE);
    assert!(
        restored == original,
        "the archived segment differs from pg_wal's"
    );
    assert!(
        stored.len() < SEGMENT_SIZE / 2,
        "compressed: {}",
        stored.len()
    );

    // PostgreSQL saw success, and the status file says so.
    let archived = eventually("pg_stat_archiver", Duration::from_secs(30), || {
        let last = pg.psql("postgres", "SELECT last_archived_wal FROM pg_stat_archiver");
        let done = last.as_str() >= segment.as_str();
        async move { done.then_some(last) }
    })
    .await;
    assert!(archived >= segment);
    let last = status::read(status_dir.path())
        .expect("status")
        .expect("a push ran");
    assert!(last.ok, "{last:?}");

    idempotent_push_and_conflict(&cfg_path, &data_dir, &segment, &objects, &key).await;
    fetches(&cfg_path, &segment, &original);
}

/// The same segment again: exit 0; other content under its name: exit 1
/// and the object unchanged.
async fn idempotent_push_and_conflict(
    cfg: &str,
    data_dir: &str,
    segment: &str,
    objects: &std::sync::Arc<dyn object_store::ObjectStore>,
    key: &object_store::path::Path,
) {
    let before = store::get_bytes(objects.as_ref(), key).await.expect("get");
    let path = format!("{data_dir}/pg_wal/{segment}");
    let again = run(&["wal-push", "--config", cfg, &path]);
    assert!(
        again.status.success(),
        "same segment again: {}",
        stderr(&again)
    );

    let other = tempfile::tempdir().expect("temp dir");
    let forged = wal_file(other.path(), segment, &vec![0x5a; SEGMENT_SIZE]);
    let forged = forged.to_str().expect("utf-8 path");
    for _ in 0..3 {
        let conflict = run(&["wal-push", "--config", cfg, forged]);
        let text = stderr(&conflict);
        assert_eq!(conflict.status.code(), Some(1), "{text}");
        assert!(text.contains("different content"), "{text}");
    }
    let after = store::get_bytes(objects.as_ref(), key).await.expect("get");
    assert_eq!(before, after, "the archived segment was overwritten");
}

/// `wal-fetch`: present → 0 and the bytes; absent → 1 and no file; a name
/// that is no WAL name → 2.
fn fetches(cfg: &str, segment: &str, original: &[u8]) {
    let dest_dir = tempfile::tempdir().expect("temp dir");
    let dest = dest_dir.path().join("RECOVERYXLOG");
    let dest_str = dest.to_str().expect("utf-8 path");
    let got = run(&["wal-fetch", "--config", cfg, segment, dest_str]);
    assert!(got.status.success(), "fetch: {}", stderr(&got));
    assert!(std::fs::read(&dest).expect("fetched") == original);
    std::fs::remove_file(&dest).expect("remove");

    for absent in ["0000000100000000000000FF", "00000002.history"] {
        let out = run(&["wal-fetch", "--config", cfg, absent, dest_str]);
        assert_eq!(out.status.code(), Some(1), "{absent}: {}", stderr(&out));
        assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
        assert!(!dest.exists(), "nothing written for {absent}");
    }
    // Another tenant's archive (--source-uid) does not have it either.
    let out = run(&[
        "wal-fetch",
        "--config",
        cfg,
        "--source-uid",
        "another-uid",
        segment,
        dest_str,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let out = run(&["wal-fetch", "--config", cfg, "../../etc/passwd", dest_str]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// A push that fails (store unreachable, wrong secret, unknown key id)
/// exits 1 and never shows a credential in stderr or in the status file.
#[tokio::test]
async fn failing_pushes_never_show_credentials() {
    let Some(s3) = TestS3::start("atoll-backup credential redaction") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let wal = wal_file(dir.path(), "000000010000000000000001", &[1u8; 8192]);
    let wal = wal.to_str().expect("utf-8 path");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let unreachable = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let cases = [
        (
            unreachable.as_str(),
            s3.access_key_id.as_str(),
            "unreachable-Secret-0451",
        ),
        (
            s3.endpoint.as_str(),
            s3.access_key_id.as_str(),
            "wrong-Secret-7723",
        ),
        (
            s3.endpoint.as_str(),
            "AKUNKNOWNKEY9931",
            "other-Secret-1187",
        ),
    ];
    for (endpoint, key_id, secret) in cases {
        let cfg = config_dir(endpoint, &s3.bucket, key_id, secret);
        let status_dir = tempfile::tempdir().expect("temp dir");
        let cfg_path = cfg.path().to_str().expect("utf-8 path");
        let status_path = status_dir.path().to_str().expect("utf-8 path");
        let out = run(&[
            "wal-push",
            "--config",
            cfg_path,
            "--status-dir",
            status_path,
            wal,
        ]);
        let text = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{endpoint}: {text}");
        assert!(text.contains("000000010000000000000001"), "{text}");
        let recorded = std::fs::read_to_string(status_dir.path().join(status::LAST_PUSH_FILE))
            .expect("status file");
        assert!(recorded.contains("\"ok\":false"), "{recorded}");
        for shown in [&text, &recorded] {
            assert!(!shown.contains(secret), "secret shown: {shown}");
            assert!(!shown.contains(key_id), "access key id shown: {shown}");
        }
    }
}

#[test]
fn install_copies_a_working_binary() {
    let dir = tempfile::tempdir().expect("temp dir");
    let target = dir.path().join("atoll/bin");
    let out = run(&["install", target.to_str().expect("utf-8 path")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let installed = target.join("atoll-backup");
    let mode = std::fs::metadata(&installed)
        .expect("installed")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    let version = Command::new(&installed)
        .arg("--version")
        .output()
        .expect("run copy");
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("atoll-backup "));
}
