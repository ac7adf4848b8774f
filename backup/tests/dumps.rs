//! Dumps of External tenants with real components: a throwaway PostgreSQL
//! 15 with password authentication, tenant roles and databases made like
//! the operator's External provisioning (the role owns its database,
//! `REVOKE ALL ... FROM PUBLIC`), the built binary's `dump` and
//! `restore-dump` with the tenant's URL in `DATABASE_URL`, and the S3 test
//! server (s3s-fs).

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use atoll_backup::dump_catalog::{self, DumpInfo};
use atoll_backup::layout::{BackupId, Layout};
use atoll_backup::restore::RestoreOutcome;
use atoll_backup::settings::Settings;
use atoll_backup::store;
use atoll_testkit::nodesim::postgres::{bindir_from_env, unprivileged_user};
use atoll_testkit::pg::TestPostgres;
use atoll_testkit::s3::TestS3;
use atoll_testkit::wait::eventually;

const BIN: &str = env!("CARGO_BIN_EXE_atoll-backup");
const PREFIX: &str = "dumps";
const SOURCE: &str = "d5a1e0c4-7b2f-4e61-9a3d-2c8f0b1e4d7a";
/// Passwords with characters a URL must percent-encode.
const SOURCE_PW: &str = "Src-p@ss:w/rd-6f1c93e2";
const NEW_PW: &str = "New-p@ss:w/rd-0ab4d7c1";
const WRONG_PW: &str = "Wrong-p@ss-9e3b51a7";

/// The new tenants' uids.
fn uid(n: u32) -> String {
    format!("0a0a0a0a-0000-4000-8000-00000000000{n}")
}

fn hand_over(path: &Path) {
    if let Some((uid, gid)) = unprivileged_user() {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
    }
}

/// A server that asks every role but `postgres` for its password.
fn server(dir: &Path) -> TestPostgres {
    hand_over(dir);
    let hba = dir.join("pg_hba.conf");
    std::fs::write(
        &hba,
        "local all all trust\n\
         host all postgres 127.0.0.1/32 trust\n\
         host all all 127.0.0.1/32 scram-sha-256\n",
    )
    .expect("write pg_hba.conf");
    hand_over(&hba);
    TestPostgres::start_with(&[&format!("hba_file={}", hba.display())])
}

/// A role and its database, as `operator/src/external.rs` provisions them.
fn provision(pg: &TestPostgres, name: &str, password: &str) {
    pg.psql(
        "postgres",
        &format!(
            "CREATE ROLE \"{name}\" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE \
             NOREPLICATION NOBYPASSRLS INHERIT PASSWORD '{password}'"
        ),
    );
    pg.psql(
        "postgres",
        &format!("CREATE DATABASE \"{name}\" OWNER \"{name}\""),
    );
    pg.psql(
        "postgres",
        &format!("REVOKE ALL ON DATABASE \"{name}\" FROM PUBLIC"),
    );
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The URL the operator would put in the tenant's `database-credentials`.
fn url(pg: &TestPostgres, name: &str, password: &str) -> String {
    format!(
        "postgres://{name}:{}@127.0.0.1:{}/{name}",
        encode(password),
        pg.port
    )
}

/// Runs SQL as a tenant role (password authentication).
fn as_tenant(pg: &TestPostgres, name: &str, password: &str, sql: &str) -> String {
    let out = Command::new(bindir_from_env().join("psql"))
        .env("PGPASSWORD", password)
        .arg(format!("postgres://{name}@127.0.0.1:{}/{name}", pg.port))
        .args(["-v", "ON_ERROR_STOP=1", "-XAtqc", sql])
        .output()
        .expect("run psql");
    assert!(out.status.success(), "psql as {name}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn config_dir(s3: &TestS3, uid: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("atoll-dumps-config-")
        .tempdir()
        .expect("temp dir");
    let config = serde_json::json!({
        "endpoint": s3.endpoint, "bucket": s3.bucket, "region": s3.region,
        "pathStyle": true, "allowHttp": true, "prefix": PREFIX, "tenantUid": uid,
    });
    let files = [
        ("config.json", config.to_string()),
        ("accessKeyId", s3.access_key_id.clone()),
        ("secretAccessKey", s3.secret_access_key.clone()),
    ];
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).expect("write config file");
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

/// Fails when any password shows in a program's output.
fn assert_no_password(out: &Output) {
    let all = text(out);
    for pw in [SOURCE_PW, NEW_PW, WRONG_PW] {
        assert!(!all.contains(pw), "a password leaked: {all}");
        assert!(!all.contains(&encode(pw)), "a password leaked: {all}");
    }
}

/// `atoll-backup dump` of the database at `url`.
fn dump(cfg: &Path, url: &str, name: &str) -> Output {
    let out = Command::new(BIN)
        .args(["dump", "--config"])
        .arg(cfg)
        .args(["--name", name, "--bindir"])
        .arg(bindir_from_env())
        .env("DATABASE_URL", url)
        .output()
        .expect("run dump");
    assert_no_password(&out);
    out
}

fn dumped(out: &Output) -> DumpInfo {
    assert!(out.status.success(), "dump: {}", text(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

/// `atoll-backup restore-dump` from SOURCE into the database at `url`.
fn restore_dump(cfg: &Path, url: &str, extra: &[&str]) -> (Output, RestoreOutcome) {
    restore_dump_from(SOURCE, cfg, url, extra)
}

/// `atoll-backup restore-dump` from `source` into the database at `url`.
fn restore_dump_from(
    source: &str,
    cfg: &Path,
    url: &str,
    extra: &[&str],
) -> (Output, RestoreOutcome) {
    let out = Command::new(BIN)
        .args(["restore-dump", "--config"])
        .arg(cfg)
        .args(["--source-uid", source, "--bindir"])
        .arg(bindir_from_env())
        .args(extra)
        .env("DATABASE_URL", url)
        .output()
        .expect("run restore-dump");
    assert_no_password(&out);
    let outcome =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    (out, outcome)
}

/// The restore.json the store holds for tenant `uid`.
async fn stored_outcome(cfg: &Path, uid: &str) -> RestoreOutcome {
    let settings = Settings::load(cfg).expect("settings");
    let objects = store::open(&settings).expect("store");
    let key = Layout::new(Some(PREFIX)).restore_json(uid).expect("key");
    let bytes = store::get_bytes(objects.as_ref(), &key)
        .await
        .expect("get restore.json")
        .expect("restore.json written");
    let json = String::from_utf8_lossy(&bytes);
    for pw in [SOURCE_PW, NEW_PW, WRONG_PW] {
        assert!(!json.contains(pw), "a password in restore.json: {json}");
    }
    serde_json::from_slice(&bytes).expect("a RestoreOutcome")
}

const COUNTS: &str = "SELECT batch, count(*) FROM t GROUP BY 1 ORDER BY 1";

/// The source tenant: two dumps, 100 rows before the first, 50 more
/// before the second, and a time between them.
struct Source {
    pg: TestPostgres,
    first: DumpInfo,
    second: DumpInfo,
    between: jiff::Timestamp,
    _dir: tempfile::TempDir,
}

async fn source(s3: &TestS3) -> Source {
    let dir = tempfile::Builder::new()
        .prefix("atoll-dumps-pg-")
        .tempdir()
        .expect("temp dir");
    let pg = server(dir.path());
    provision(&pg, "atoll_acme", SOURCE_PW);
    let sql = |s: &str| as_tenant(&pg, "atoll_acme", SOURCE_PW, s);
    sql("CREATE TABLE t (id serial PRIMARY KEY, batch int NOT NULL, note text)");
    sql("CREATE VIEW per_batch AS SELECT batch, count(*) AS n FROM t GROUP BY batch");
    sql("INSERT INTO t (batch, note) SELECT 1, 'row ' || g FROM generate_series(1, 100) g");
    let cfg = config_dir(s3, SOURCE);
    let src_url = url(&pg, "atoll_acme", SOURCE_PW);
    let first = dumped(&dump(cfg.path(), &src_url, "acme-first"));
    sql("INSERT INTO t (batch, note) SELECT 2, 'row ' || g FROM generate_series(1, 50) g");
    // Dump ids are seconds: the next one must be a later second.
    eventually("the next second", Duration::from_secs(5), || {
        let later = BackupId::now().to_string() > first.id;
        async move { later.then_some(()) }
    })
    .await;
    let between = jiff::Timestamp::now();
    let second = dumped(&dump(cfg.path(), &src_url, "acme-second"));
    Source {
        pg,
        first,
        second,
        between,
        _dir: dir,
    }
}

#[tokio::test]
async fn dumps_and_restores() {
    let Some(s3) = TestS3::start("atoll-backup dumps") else {
        return;
    };
    let src = source(&s3).await;
    check_catalog(&s3, &src).await;
    restore_latest(&s3, &src).await;
    restore_between(&s3, &src).await;
    refused(&s3, &src).await;
    wrong_passwords(&s3, &src).await;
    failed_then_retried(&s3, &src).await;
    interrupted_before_marking_done(&s3, &src);
}

/// dump.json describes both dumps; the data objects are there.
async fn check_catalog(s3: &TestS3, src: &Source) {
    for (d, name) in [(&src.first, "acme-first"), (&src.second, "acme-second")] {
        assert_eq!(d.tenant_backup.as_deref(), Some(name));
        assert_eq!((d.server_major, d.pg_dump_major), (15, 15), "{d:?}");
        assert!(d.server_version.starts_with("15."), "{d:?}");
        assert!(d.size > 0 && d.time <= d.end_time, "{d:?}");
        let data = &d.objects[0];
        assert!(data.ends_with("dump.pgc"), "{:?}", d.objects);
        let stored = s3.object(data).expect("dump.pgc stored");
        assert_eq!(stored.len() as u64, d.size);
        assert!(stored.starts_with(b"PGDMP"), "a custom-format archive");
    }
    assert!(src.first.time < src.between && src.between < src.second.time);
    let settings = Settings::load(config_dir(s3, SOURCE).path()).expect("settings");
    let objects = store::open(&settings).expect("store");
    let listed = dump_catalog::list(objects.as_ref(), &Layout::new(Some(PREFIX)), SOURCE)
        .await
        .expect("catalog");
    assert_eq!(listed, vec![src.first.clone(), src.second.clone()]);
}

/// The newest dump into a fresh database of another role: every row, every
/// object owned by the new role; a rerun does nothing.
async fn restore_latest(s3: &TestS3, src: &Source) {
    let pg = &src.pg;
    provision(pg, "atoll_new1", NEW_PW);
    let cfg = config_dir(s3, &uid(1));
    let target = url(pg, "atoll_new1", NEW_PW);
    let (out, outcome) = restore_dump(cfg.path(), &target, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(outcome.ok, "{outcome:?}");
    assert_eq!(outcome.backup_id.as_deref(), Some(src.second.id.as_str()));
    assert_eq!(outcome.reached_time, Some(src.second.time));
    assert_eq!(stored_outcome(cfg.path(), &uid(1)).await, outcome);
    let sql = |s: &str| as_tenant(pg, "atoll_new1", NEW_PW, s);
    assert_eq!(sql(COUNTS), "1|100\n2|50");
    let owners = pg.psql(
        "atoll_new1",
        "SELECT string_agg(DISTINCT pg_get_userbyid(c.relowner), ',') FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'",
    );
    assert_eq!(owners, "atoll_new1", "tables, view and sequence");
    // The new role can write, and the sequence continues.
    assert_eq!(sql("INSERT INTO t (batch) VALUES (3) RETURNING id"), "151");
    assert_eq!(sql("SELECT n FROM per_batch WHERE batch = 3"), "1");

    let (out, again) = restore_dump(cfg.path(), &target, &[]);
    assert!(out.status.success(), "rerun: {}", text(&out));
    assert!(
        again.ok && again.message.contains("nothing to do"),
        "{again:?}"
    );
    assert_eq!(sql(COUNTS), "1|100\n2|50\n3|1", "untouched by the rerun");

    // A restored database's own dump leaves the marker out, so it restores
    // into a third tenant.
    let own = dumped(&dump(cfg.path(), &target, "new1-own"));
    provision(pg, "atoll_new5", NEW_PW);
    let cfg5 = config_dir(s3, &uid(5));
    let out = Command::new(BIN)
        .args(["restore-dump", "--config"])
        .arg(cfg5.path())
        .args(["--source-uid", &uid(1), "--backup", &own.id, "--bindir"])
        .arg(bindir_from_env())
        .env("DATABASE_URL", url(pg, "atoll_new5", NEW_PW))
        .output()
        .expect("run restore-dump");
    assert!(out.status.success(), "chained: {}", text(&out));
    let marker = pg.psql(
        "atoll_new5",
        "SELECT source_uid, state FROM atoll_restore.marker",
    );
    assert_eq!(marker, format!("{}|done", uid(1)));
    assert_eq!(
        as_tenant(pg, "atoll_new5", NEW_PW, COUNTS),
        "1|100\n2|50\n3|1"
    );
}

/// A target time between the dumps: the first dump's rows only.
async fn restore_between(s3: &TestS3, src: &Source) {
    let pg = &src.pg;
    provision(pg, "atoll_new2", NEW_PW);
    let cfg = config_dir(s3, &uid(2));
    let between = src.between.to_string();
    let target = url(pg, "atoll_new2", NEW_PW);
    let (out, outcome) = restore_dump(cfg.path(), &target, &["--target-time", &between]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(outcome.backup_id.as_deref(), Some(src.first.id.as_str()));
    assert_eq!(outcome.reached_time, Some(src.first.time));
    assert_eq!(as_tenant(pg, "atoll_new2", NEW_PW, COUNTS), "1|100");
}

/// Before the first dump; a database with a foreign table; another dump
/// over a restored database.
async fn refused(s3: &TestS3, src: &Source) {
    let pg = &src.pg;
    provision(pg, "atoll_new3", NEW_PW);
    let cfg = config_dir(s3, &uid(3));
    let target = url(pg, "atoll_new3", NEW_PW);
    let early = src
        .first
        .time
        .checked_sub(jiff::SignedDuration::from_hours(1))
        .expect("time")
        .to_string();
    let (out, outcome) = restore_dump(cfg.path(), &target, &["--target-time", &early]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let first = src.first.time.to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("first recoverability point {first}")),
        "{stderr}"
    );
    assert!(
        !outcome.ok && outcome.message.contains(&first),
        "{outcome:?}"
    );
    assert_eq!(stored_outcome(cfg.path(), &uid(3)).await, outcome);
    let tables = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'";
    assert_eq!(pg.psql("atoll_new3", tables), "0");

    provision(pg, "atoll_new4", NEW_PW);
    for sql in [
        "CREATE FOREIGN DATA WRAPPER atoll_test_fdw",
        "CREATE SERVER atoll_test_remote FOREIGN DATA WRAPPER atoll_test_fdw",
        "CREATE FOREIGN TABLE public.remote (a int) SERVER atoll_test_remote",
    ] {
        pg.psql("atoll_new4", sql);
    }
    let cfg = config_dir(s3, &uid(4));
    let (out, outcome) = restore_dump(cfg.path(), &url(pg, "atoll_new4", NEW_PW), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        outcome.message.contains("atoll_new4 is not empty")
            && outcome.message.contains("public.remote (foreign table)"),
        "{outcome:?}"
    );
    assert_eq!(pg.psql("atoll_new4", tables), "0");

    // The first dump over atoll_new1, which holds the second.
    let cfg = config_dir(s3, &uid(1));
    let target = url(pg, "atoll_new1", NEW_PW);
    let (out, outcome) = restore_dump(cfg.path(), &target, &["--backup", "acme-first"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        outcome
            .message
            .contains(&format!("already holds dump {}", src.second.id)),
        "{outcome:?}"
    );
}

/// A wrong password: exit 1 naming the failed login, no password anywhere,
/// no dump recorded.
async fn wrong_passwords(s3: &TestS3, src: &Source) {
    let pg = &src.pg;
    let cfg = config_dir(s3, &uid(3));
    let (out, outcome) = restore_dump(cfg.path(), &url(pg, "atoll_new3", WRONG_PW), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        outcome.message.contains("password authentication failed"),
        "{outcome:?}"
    );
    assert_eq!(stored_outcome(cfg.path(), &uid(3)).await, outcome);

    let src_cfg = config_dir(s3, SOURCE);
    let out = dump(src_cfg.path(), &url(pg, "atoll_acme", WRONG_PW), "bad");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("password authentication failed"),
        "{stderr}"
    );
    let settings = Settings::load(src_cfg.path()).expect("settings");
    let objects = store::open(&settings).expect("store");
    let listed = dump_catalog::list(objects.as_ref(), &Layout::new(Some(PREFIX)), SOURCE)
        .await
        .expect("catalog");
    assert_eq!(listed.len(), 2, "no dump recorded");

    let out = Command::new(BIN)
        .args(["dump", "--config"])
        .arg(src_cfg.path())
        .env_remove("DATABASE_URL")
        .output()
        .expect("run dump");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("DATABASE_URL is not set"), "{stderr}");
}

/// A damaged dump: pg_restore fails, its transaction leaves the database
/// empty (only the marker, `restoring`), and a later restore succeeds.
async fn failed_then_retried(s3: &TestS3, src: &Source) {
    const DAMAGED: &str = "d5a1e0c4-0000-4e61-9a3d-2c8f0b1e4d7a";
    let cfg = config_dir(s3, &uid(6));
    let settings = Settings::load(cfg.path()).expect("settings");
    let objects = store::open(&settings).expect("store");
    let layout = Layout::new(Some(PREFIX));
    let data = s3.object(&src.first.objects[0]).expect("the first dump");
    let half = data[..data.len() / 2].to_vec();
    let id: BackupId = src.first.id.parse().expect("id");
    let info = DumpInfo {
        size: half.len() as u64,
        ..src.first.clone()
    };
    let json = serde_json::to_vec(&info).expect("json");
    for (key, body) in [
        (layout.dump(DAMAGED, id).expect("key"), half),
        (layout.dump_json(DAMAGED, id).expect("key"), json),
    ] {
        store::put_create_or_same(objects.as_ref(), &key, body.into())
            .await
            .expect("put");
    }
    let pg = &src.pg;
    provision(pg, "atoll_new6", NEW_PW);
    let target = url(pg, "atoll_new6", NEW_PW);
    let (out, outcome) = restore_dump_from(DAMAGED, cfg.path(), &target, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(outcome.message.contains("pg_restore"), "{outcome:?}");
    let tables = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'";
    assert_eq!(pg.psql("atoll_new6", tables), "0", "rolled back");
    let marker = "SELECT source_uid, state FROM atoll_restore.marker";
    assert_eq!(
        pg.psql("atoll_new6", marker),
        format!("{DAMAGED}|restoring")
    );

    let (out, outcome) = restore_dump(cfg.path(), &target, &[]);
    assert!(out.status.success() && outcome.ok, "{}", text(&out));
    assert_eq!(as_tenant(pg, "atoll_new6", NEW_PW, COUNTS), "1|100\n2|50");
    assert_eq!(pg.psql("atoll_new6", marker), format!("{SOURCE}|done"));
}

/// pg_restore committed but the marker still says `restoring` (the
/// process died in between): a rerun only marks it done.
fn interrupted_before_marking_done(s3: &TestS3, src: &Source) {
    let pg = &src.pg;
    let marker = "SELECT state FROM atoll_restore.marker";
    pg.psql(
        "atoll_new2",
        "UPDATE atoll_restore.marker SET state = 'restoring'",
    );
    let cfg = config_dir(s3, &uid(2));
    let between = src.between.to_string();
    let target = url(pg, "atoll_new2", NEW_PW);
    let (out, outcome) = restore_dump(cfg.path(), &target, &["--target-time", &between]);
    assert!(out.status.success() && outcome.ok, "{}", text(&out));
    assert_eq!(outcome.backup_id.as_deref(), Some(src.first.id.as_str()));
    assert_eq!(pg.psql("atoll_new2", marker), "done");
    assert_eq!(as_tenant(pg, "atoll_new2", NEW_PW, COUNTS), "1|100");
}
