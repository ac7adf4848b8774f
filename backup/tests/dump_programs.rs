//! `atoll-backup dump` with fake client programs (shell scripts standing in
//! for `psql` and `pg_dump`) and the S3 test server: what reaches pg_dump
//! (arguments, environment), a pg_dump that never ends, a server newer than
//! pg_dump.

use std::path::Path;
use std::process::{Command, Output};

use atoll_backup::dump_catalog::DumpInfo;
use atoll_testkit::s3::TestS3;

const BIN: &str = env!("CARGO_BIN_EXE_atoll-backup");
const PREFIX: &str = "dumps";
const SOURCE: &str = "d5a1e0c4-7b2f-4e61-9a3d-2c8f0b1e4d7a";

fn config_dir(s3: &TestS3, uid: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
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

/// A bin directory whose `psql` answers the version query and whose
/// `pg_dump` records its arguments and environment in `$ATOLL_FAKE_OUT`,
/// then writes a few bytes and exits, or (`ATOLL_FAKE_HANG`) never ends.
fn fake_bindir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("atoll-dumps-bin-")
        .tempdir()
        .expect("temp dir");
    let psql = "#!/bin/sh\n\
        if [ -n \"$ATOLL_FAKE_SERVER16\" ]; then echo '{\"version\":\"16.4\",\"num\":\"160004\"}'; exit 0; fi\n\
        echo '{\"version\":\"15.18 (fake)\",\"num\":\"150018\"}'\n";
    let pg_dump = "#!/bin/sh\n\
        if [ \"$1\" = --version ]; then echo 'pg_dump (PostgreSQL) 15.18'; exit 0; fi\n\
        printf '%s\\n' \"$@\" > \"$ATOLL_FAKE_OUT/args\"\n\
        env > \"$ATOLL_FAKE_OUT/env\"\n\
        printf PGDMP-fake\n\
        if [ -n \"$ATOLL_FAKE_HANG\" ]; then exec sleep 600; fi\n";
    for (name, script) in [("psql", psql), ("pg_dump", pg_dump)] {
        let path = dir.path().join(name);
        std::fs::write(&path, script).expect("write fake program");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    dir
}

const FAKE_URL: &str = "postgres://atoll_fake:Fake-p%40ss-3c1d@127.0.0.1:1/atoll_fake";

fn fake_dump(cfg: &Path, bin: &Path, out: &Path, extra: &[&str], hang: bool) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["dump", "--config"])
        .arg(cfg)
        .arg("--bindir")
        .arg(bin)
        .args(extra)
        .env("DATABASE_URL", FAKE_URL)
        .env("PGSERVICE", "inherited")
        .env("ATOLL_FAKE_OUT", out);
    if hang {
        cmd.env("ATOLL_FAKE_HANG", "1");
    }
    cmd.output().expect("run dump")
}

/// The password reaches pg_dump in its environment, never its arguments;
/// inherited libpq variables and DATABASE_URL do not reach it at all.
#[tokio::test]
async fn the_password_is_in_the_environment_not_the_arguments() {
    let Some(s3) = TestS3::start("atoll-backup dump arguments") else {
        return;
    };
    let (bin, out) = (fake_bindir(), tempfile::tempdir().expect("temp dir"));
    let cfg = config_dir(&s3, SOURCE);
    let run = fake_dump(cfg.path(), bin.path(), out.path(), &[], false);
    assert!(run.status.success(), "{}", text(&run));
    let info: DumpInfo = serde_json::from_slice(&run.stdout).expect("DumpInfo");
    assert_eq!(info.size, "PGDMP-fake".len() as u64);
    assert_eq!(info.server_version, "15.18");
    let args = std::fs::read_to_string(out.path().join("args")).expect("args");
    assert!(!args.contains("Fake-p"), "{args}");
    assert!(args.contains("--dbname=dbname='atoll_fake'"), "{args}");
    assert!(args.contains("--no-owner") && args.contains("--format=custom"));
    let env = std::fs::read_to_string(out.path().join("env")).expect("env");
    for expected in [
        "PGPASSWORD=Fake-p@ss-3c1d",
        "PGUSER=atoll_fake",
        "PGHOST=127.0.0.1",
        "PGPORT=1",
        "PGDATABASE=atoll_fake",
    ] {
        assert!(env.lines().any(|l| l == expected), "{expected} in {env}");
    }
    assert!(
        !env.contains("DATABASE_URL") && !env.contains("PGSERVICE"),
        "{env}"
    );
}

/// A pg_dump that never ends is stopped at --timeout; nothing is recorded.
/// A server newer than pg_dump is refused.
#[tokio::test]
async fn a_hanging_dump_times_out_and_leaves_nothing() {
    let Some(s3) = TestS3::start("atoll-backup dump timeout") else {
        return;
    };
    let (bin, out) = (fake_bindir(), tempfile::tempdir().expect("temp dir"));
    let cfg = config_dir(&s3, SOURCE);
    let run = fake_dump(
        cfg.path(),
        bin.path(),
        out.path(),
        &["--timeout", "1"],
        true,
    );
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("did not finish within 1 s"), "{stderr}");
    assert!(!stderr.contains("Fake-p"), "{stderr}");
    let keys = s3.list_keys(&format!("{PREFIX}/tenants/{SOURCE}/dumps"));
    assert!(keys.is_empty(), "{keys:?}");

    // A server newer than pg_dump: refused before pg_dump runs.
    let run = Command::new(BIN)
        .args(["dump", "--config"])
        .arg(cfg.path())
        .arg("--bindir")
        .arg(bin.path())
        .env("DATABASE_URL", FAKE_URL)
        .env("ATOLL_FAKE_OUT", out.path())
        .env("ATOLL_FAKE_SERVER16", "1")
        .output()
        .expect("run dump");
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("pg_dump 15.18 is older than the server (16.4)"),
        "{stderr}"
    );
}
