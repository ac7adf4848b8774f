//! Base backup and point-in-time restore with real components: a
//! throwaway PostgreSQL 15 archiving through the built binary's
//! `wal-push` into the S3 test server (s3s-fs), `atoll-backup
//! base-backup`, rows inserted in batches with a time T noted between
//! them, then `atoll-backup restore` into new data directories (as the
//! PostgreSQL user, like the init container), each started and counted.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use atoll_backup::catalog::BackupInfo;
use atoll_backup::label::Lsn;
use atoll_backup::layout::Layout;
use atoll_backup::restore::RestoreOutcome;
use atoll_backup::settings::Settings;
use atoll_backup::store;
use atoll_testkit::nodesim::postgres::{bindir_from_env, unprivileged_user};
use atoll_testkit::pg::TestPostgres;
use atoll_testkit::s3::TestS3;
use atoll_testkit::wait::eventually;

const BIN: &str = env!("CARGO_BIN_EXE_atoll-backup");
const SOURCE: &str = "5e1d7a3c-0c2b-4d8e-9a41-7f3b2c1d0e9a";
const PREFIX: &str = "pitr";
/// A marker of the source's set-up in its data directory (the operator's
/// roles marker), which `--drop` leaves behind.
const SETUP_MARKER: &str = "atoll-roles-layout";

/// A directory the PostgreSQL server's user owns.
fn shared_dir(prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temp dir");
    hand_over(dir.path());
    dir
}

fn hand_over(path: &Path) {
    if let Some((uid, gid)) = unprivileged_user() {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
    }
}

/// A configuration directory for tenant `uid` in the test store.
fn config_dir(s3: &TestS3, uid: &str) -> tempfile::TempDir {
    config_dir_in(s3, uid, PREFIX)
}

/// [`config_dir`] under another key prefix (a store of its own).
fn config_dir_in(s3: &TestS3, uid: &str, prefix: &str) -> tempfile::TempDir {
    let dir = shared_dir("atoll-pitr-config-");
    let config = serde_json::json!({
        "endpoint": s3.endpoint, "bucket": s3.bucket, "region": s3.region,
        "pathStyle": true, "allowHttp": true, "prefix": prefix, "tenantUid": uid,
    });
    let files = [
        ("config.json", config.to_string()),
        ("accessKeyId", s3.access_key_id.clone()),
        ("secretAccessKey", s3.secret_access_key.clone()),
    ];
    for (name, content) in files {
        let path = dir.path().join(name);
        std::fs::write(&path, content).expect("write config file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        hand_over(&path);
    }
    dir
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `atoll-backup base-backup` against `pg`; the BackupInfo it printed.
fn base_backup(pg: &TestPostgres, cfg: &Path, name: &str) -> BackupInfo {
    let out = Command::new(BIN)
        .args(["base-backup", "--config"])
        .arg(cfg)
        .args([
            "--name",
            name,
            "--host",
            "127.0.0.1",
            "--port",
            &pg.port.to_string(),
        ])
        .arg("--bindir")
        .arg(bindir_from_env())
        .output()
        .expect("run base-backup");
    assert!(out.status.success(), "base-backup: {}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
}

/// `atoll-backup restore` as the PostgreSQL user (it runs the server).
fn restore(cfg: &Path, target: Option<&str>, pgdata: &Path) -> (Output, RestoreOutcome) {
    restore_with(cfg, target, &[], pgdata)
}

fn restore_with(
    cfg: &Path,
    target: Option<&str>,
    extra: &[&str],
    pgdata: &Path,
) -> (Output, RestoreOutcome) {
    let mut cmd = Command::new(BIN);
    cmd.args(["restore", "--config"])
        .arg(cfg)
        .args(["--source-uid", SOURCE, "--bindir"])
        .arg(bindir_from_env())
        .args(["--timeout", "120"]);
    if let Some(t) = target {
        cmd.args(["--target-time", t]);
    }
    cmd.args(extra);
    if let Some((uid, gid)) = unprivileged_user() {
        cmd.uid(uid).gid(gid);
    }
    let out = cmd.arg(pgdata).output().expect("run restore");
    let outcome =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    (out, outcome)
}

/// A server started on a restored data directory; killed on drop.
struct Restored {
    port: u16,
    child: Child,
    _socket: tempfile::TempDir,
}

impl Drop for Restored {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Restored {
    async fn start(pgdata: &Path) -> Restored {
        let socket = shared_dir("atoll-pitr-sock-");
        let port = free_port();
        let mut cmd = Command::new(bindir_from_env().join("postgres"));
        cmd.arg("-D")
            .arg(pgdata)
            .arg("-k")
            .arg(socket.path())
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "archive_mode=off"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((uid, gid)) = unprivileged_user() {
            cmd.uid(uid).gid(gid);
        }
        let server = Restored {
            port,
            child: cmd.spawn().expect("start the restored server"),
            _socket: socket,
        };
        eventually("the restored server", Duration::from_secs(60), || {
            let ok = psql_try(port, "SELECT 1").is_some();
            async move { ok.then_some(()) }
        })
        .await;
        server
    }

    fn query(&self, sql: &str) -> String {
        psql_try(self.port, sql).unwrap_or_else(|| panic!("query failed: {sql}"))
    }
}

fn psql_try(port: u16, sql: &str) -> Option<String> {
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let out = Command::new(bindir_from_env().join("psql"))
        .args([&url, "-v", "ON_ERROR_STOP=1", "-XAtqc", sql])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

const NOW_UTC: &str =
    "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')";

/// Inserts `n` rows of batch `batch` in one transaction.
fn insert(pg: &TestPostgres, batch: u32, n: u32) {
    pg.psql(
        "postgres",
        &format!("INSERT INTO t (batch, i) SELECT {batch}, g FROM generate_series(1, {n}) g"),
    );
}

/// Switches WAL and waits until the switched segment is archived.
async fn archive_everything(pg: &TestPostgres) {
    let segment = pg.psql("postgres", "SELECT pg_walfile_name(pg_current_wal_lsn())");
    pg.psql("postgres", "SELECT pg_switch_wal()");
    eventually("the last segment archived", Duration::from_secs(60), || {
        let last = pg.psql(
            "postgres",
            "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver",
        );
        let done = last.as_str() >= segment.as_str();
        async move { done.then_some(()) }
    })
    .await;
}

/// The restore.json the store holds for tenant `uid`.
async fn stored_outcome(s3_cfg: &Path, uid: &str) -> RestoreOutcome {
    let settings = Settings::load(s3_cfg).expect("settings");
    let objects = store::open(&settings).expect("store");
    let key = Layout::new(settings.prefix.as_deref())
        .restore_json(uid)
        .expect("key");
    let bytes = store::get_bytes(objects.as_ref(), &key)
        .await
        .expect("get restore.json")
        .expect("restore.json written");
    serde_json::from_slice(&bytes).expect("a RestoreOutcome")
}

/// The source: archiving server, one base backup, batches 0 (before the
/// backup), 1 (before T) and 2 (after T), all archived.
/// (Its data directory also holds [`SETUP_MARKER`].)
struct Source {
    pg: TestPostgres,
    backup: BackupInfo,
    t: String,
    cfg: tempfile::TempDir,
}

async fn source(s3: &TestS3) -> Source {
    let cfg = config_dir(s3, SOURCE);
    let archive = format!(
        "archive_command={BIN} wal-push --config {} %p",
        cfg.path().display()
    );
    // No autovacuum: its commits would land after T (the quiet tail).
    let pg = TestPostgres::start_with(&["archive_mode=on", &archive, "autovacuum=off"]);
    pg.psql(
        "postgres",
        "CREATE TABLE t (batch int, i int, at timestamptz DEFAULT clock_timestamp())",
    );
    insert(&pg, 0, 10);
    // A file of the source's own set-up, which a restore may drop.
    let data = pg.psql("postgres", "SHOW data_directory");
    std::fs::write(Path::new(&data).join(SETUP_MARKER), b"1\n").expect("write the marker");
    let backup = base_backup(&pg, cfg.path(), "nightly");
    insert(&pg, 1, 100);
    let t = pg.psql("postgres", NOW_UTC);
    insert(&pg, 2, 50);
    archive_everything(&pg).await;
    Source { pg, backup, t, cfg }
}

#[tokio::test]
async fn point_in_time_restores() {
    let Some(s3) = TestS3::start("atoll-backup point-in-time restore") else {
        return;
    };
    let src = source(&s3).await;
    check_backup(&src).await;
    restore_at_t(&s3, &src).await;
    restore_to_the_end(&s3, &src).await;
    refused_targets(&s3, &src).await;
    quiet_tail(&s3, &src).await;
}

/// backup.json is in the store and describes the server.
async fn check_backup(src: &Source) {
    let b = &src.backup;
    assert_eq!(b.tenant_backup.as_deref(), Some("nightly"));
    assert_eq!(b.pg_major, 15);
    assert_eq!(b.timeline, 1);
    assert!(b.begin_time <= b.end_time);
    let lsn = |s: &str| s.parse::<Lsn>().expect("an LSN");
    assert!(lsn(&b.begin_lsn) < lsn(&b.end_lsn), "{b:?}");
    assert!(b.size > 0);
    let sysid = src.pg.psql(
        "postgres",
        "SELECT system_identifier FROM pg_control_system()",
    );
    assert_eq!(b.system_identifier, sysid);
    let settings = Settings::load(src.cfg.path()).expect("settings");
    let objects = store::open(&settings).expect("store");
    let listed = atoll_backup::catalog::list(objects.as_ref(), &Layout::new(Some(PREFIX)), SOURCE)
        .await
        .expect("catalog");
    assert_eq!(listed, vec![b.clone()]);
    assert!(
        b.objects.iter().any(|o| o.ends_with("base.tar.lz4")),
        "{:?}",
        b.objects
    );
}

/// Restore at T: exactly batches 0 and 1.
async fn restore_at_t(s3: &TestS3, src: &Source) {
    let uid = "0a0a0a0a-0000-4000-8000-000000000001";
    let cfg = config_dir(s3, uid);
    let parent = shared_dir("atoll-pitr-data-");
    let pgdata = parent.path().join("pgdata");
    let (out, outcome) = restore(cfg.path(), Some(&src.t), &pgdata);
    assert!(out.status.success(), "{}", text(&out));
    assert!(outcome.ok, "{outcome:?}");
    assert_eq!(outcome.backup_id.as_deref(), Some(src.backup.id.as_str()));
    let t: jiff::Timestamp = src.t.parse().expect("T");
    assert!(outcome.reached_time.is_some_and(|r| r <= t), "{outcome:?}");
    assert_eq!(stored_outcome(cfg.path(), uid).await, outcome);
    assert!(pgdata.join("atoll-restored").is_file());
    assert!(pgdata.join(SETUP_MARKER).is_file(), "kept without --drop");
    assert!(!pgdata.join("recovery.signal").exists(), "promoted");
    let server = Restored::start(&pgdata).await;
    assert_eq!(
        server.query("SELECT batch, count(*) FROM t GROUP BY 1 ORDER BY 1"),
        "0|10\n1|100"
    );
    assert_eq!(server.query("SELECT pg_is_in_recovery()"), "f");
    drop(server);
    // The new timeline went into the NEW tenant's archive, not the source's.
    let settings = Settings::load(cfg.path()).expect("settings");
    let objects = store::open(&settings).expect("store");
    let key = Layout::new(Some(PREFIX))
        .wal(uid, "00000002.history")
        .expect("key");
    eventually(
        "00000002.history archived for the new tenant",
        Duration::from_secs(30),
        || {
            let (objects, key) = (objects.clone(), key.clone());
            async move {
                store::get_bytes(objects.as_ref(), &key)
                    .await
                    .ok()
                    .flatten()
            }
        },
    )
    .await;
    let theirs = Layout::new(Some(PREFIX))
        .wal(SOURCE, "00000002.history")
        .expect("key");
    let leaked = store::get_bytes(objects.as_ref(), &theirs)
        .await
        .expect("get");
    assert!(
        leaked.is_none(),
        "the restore wrote into the source's archive"
    );
    // Rerunning the step on the restored directory does nothing.
    let (again, _) = restore(cfg.path(), Some(&src.t), &pgdata);
    assert!(again.status.success(), "{}", text(&again));
    // ... even once its configuration (the store's Secret) is gone.
    let gone = parent.path().join("no-config");
    let (again, same) = restore(&gone, Some(&src.t), &pgdata);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(same, outcome);
}

/// No target: every row.
/// The new tenant's store is not the source's (`--source-config`).
async fn restore_to_the_end(s3: &TestS3, src: &Source) {
    let uid = "0a0a0a0a-0000-4000-8000-000000000002";
    let cfg = config_dir_in(s3, uid, "elsewhere");
    let parent = shared_dir("atoll-pitr-data-");
    let pgdata = parent.path().join("pgdata");
    let source_cfg = src.cfg.path().to_str().expect("utf-8 path");
    let extra = ["--source-config", source_cfg, "--drop", SETUP_MARKER];
    let (out, outcome) = restore_with(cfg.path(), None, &extra, &pgdata);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!pgdata.join(SETUP_MARKER).exists(), "--drop removed it");
    assert!(outcome.ok && outcome.target_time.is_none(), "{outcome:?}");
    assert_eq!(stored_outcome(cfg.path(), uid).await, outcome);
    let server = Restored::start(&pgdata).await;
    assert_eq!(
        server.query("SELECT batch, count(*) FROM t GROUP BY 1 ORDER BY 1"),
        "0|10\n1|100\n2|50"
    );
    let last = server.query(
        "SELECT to_char(max(at) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM t",
    );
    let last: jiff::Timestamp = last.parse().expect("time");
    assert!(
        outcome.reached_time.is_some_and(|r| r >= last),
        "{outcome:?} vs {last}"
    );
}

/// Before the backup's end, or past the archive's end: exit 1, and the
/// message names how far a restore can go.
async fn refused_targets(s3: &TestS3, src: &Source) {
    let uid = "0a0a0a0a-0000-4000-8000-000000000003";
    let cfg = config_dir(s3, uid);
    let parent = shared_dir("atoll-pitr-data-");
    let early = src.backup.begin_time - jiff::SignedDuration::from_secs(60);
    let (out, outcome) = restore(
        cfg.path(),
        Some(&early.to_string()),
        &parent.path().join("a"),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(!outcome.ok);
    let first = src.backup.end_time.to_string();
    assert!(
        outcome.message.contains("first recoverability point"),
        "{}",
        outcome.message
    );
    assert!(
        outcome.message.contains(&first),
        "{} lacks {first}",
        outcome.message
    );
    assert_eq!(stored_outcome(cfg.path(), uid).await, outcome);

    let late = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3600);
    let pgdata = parent.path().join("b");
    let (out, outcome) = restore(cfg.path(), Some(&late.to_string()), &pgdata);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(!outcome.ok);
    assert_eq!(outcome.backup_id.as_deref(), Some(src.backup.id.as_str()));
    let last = src.pg.psql(
        "postgres",
        "SELECT to_char(max(at) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM t",
    );
    let last: jiff::Timestamp = last.parse().expect("time");
    let reached = outcome.reached_time.expect("how far it could go");
    assert!(reached >= last && reached < late, "{reached} vs {last}");
    assert!(
        outcome.message.contains("could reach only"),
        "{}",
        outcome.message
    );
    assert!(
        outcome.message.contains(&reached.to_string()),
        "{}",
        outcome.message
    );
    assert_eq!(stored_outcome(cfg.path(), uid).await, outcome);
    assert!(!pgdata.join("atoll-restored").exists());

    // The failed attempt's leftovers: refused, unless wiped.
    let (out, outcome) = restore(cfg.path(), None, &pgdata);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(outcome.message.contains("not empty"), "{}", outcome.message);
    let (out, outcome) = restore_with(cfg.path(), None, &["--wipe"], &pgdata);
    assert!(out.status.success(), "{}", text(&out));
    assert!(outcome.ok, "{outcome:?}");
}

/// A target after the last commit, proven covered by a later backup:
/// recovered to the end (every row), though PostgreSQL found no commit
/// after the target.
async fn quiet_tail(s3: &TestS3, src: &Source) {
    let quiet = src.pg.psql("postgres", NOW_UTC);
    // The label's START TIME has whole seconds: start the next backup in
    // a later second than the target, so its begin provably follows it.
    let next_second = format!(
        "SELECT clock_timestamp() >= date_trunc('second', '{quiet}'::timestamptz) + interval '1 second'"
    );
    eventually(
        "the next second on the server",
        Duration::from_secs(5),
        || {
            let passed = src.pg.psql("postgres", &next_second) == "t";
            async move { passed.then_some(()) }
        },
    )
    .await;
    let later = base_backup(&src.pg, src.cfg.path(), "later");
    let quiet_t: jiff::Timestamp = quiet.parse().expect("time");
    assert!(later.begin_time >= quiet_t, "{later:?}");
    let uid = "0a0a0a0a-0000-4000-8000-000000000004";
    let cfg = config_dir(s3, uid);
    let parent = shared_dir("atoll-pitr-data-");
    let pgdata = parent.path().join("pgdata");
    let (out, outcome) = restore(cfg.path(), Some(&quiet), &pgdata);
    assert!(out.status.success(), "{}", text(&out));
    assert!(outcome.ok, "{outcome:?}");
    assert!(
        outcome.message.contains("no transaction committed"),
        "{}",
        outcome.message
    );
    assert_eq!(outcome.backup_id.as_deref(), Some(src.backup.id.as_str()));
    let server = Restored::start(&pgdata).await;
    assert_eq!(server.query("SELECT count(*) FROM t"), "160");
}

/// A server archiving somewhere else: the backup is refused (its WAL is
/// not in this store) and leaves nothing in the catalog.
#[tokio::test]
async fn base_backup_needs_the_wal_in_this_store() {
    let Some(s3) = TestS3::start("atoll-backup base backup without archive") else {
        return;
    };
    let uid = "0a0a0a0a-0000-4000-8000-000000000009";
    let cfg = config_dir(&s3, uid);
    let elsewhere = shared_dir("atoll-pitr-elsewhere-");
    let archive = format!("archive_command=cp %p {}/%f", elsewhere.path().display());
    let pg = TestPostgres::start_with(&["archive_mode=on", &archive]);
    let out = Command::new(BIN)
        .args(["base-backup", "--config"])
        .arg(cfg.path())
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &pg.port.to_string(),
            "--bindir",
        ])
        .arg(bindir_from_env())
        .output()
        .expect("run base-backup");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the WAL archive has no"), "{stderr}");
    assert!(!stderr.contains(&s3.secret_access_key), "{stderr}");
    let settings = Settings::load(cfg.path()).expect("settings");
    let objects = store::open(&settings).expect("store");
    let base = Layout::new(Some(PREFIX)).base_dir(uid).expect("key");
    let left = store::list(objects.as_ref(), &base).await.expect("list");
    assert!(left.is_empty(), "left behind: {left:?}");
}
