//! The `postgres` image as nodesim plays it, below the controller: a real
//! server initialised like the official image, restarted on the same data.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use atoll_testkit::nodesim::addr::{AddressPool, Block};
use atoll_testkit::nodesim::postgres::{self, PostgresInit};
use atoll_testkit::nodesim::probe::{ProbeAction, ProbeSpec};
use atoll_testkit::nodesim::process::{
    Backoff, LaunchSpec, Prepare, RestartPolicy, RunState, Supervisor, group_alive,
};
use tokio::sync::Notify;

fn launch(data: &std::path::Path, logs: &std::path::Path, ip: Ipv4Addr) -> LaunchSpec {
    let bindir = postgres::bindir_from_env();
    let env: Vec<(String, String)> = [
        ("POSTGRES_USER", "atoll"),
        ("POSTGRES_PASSWORD", "pw-for-test"),
        ("POSTGRES_DB", "acme"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let run_as = postgres::unprivileged_user();
    let init = PostgresInit::from_env(bindir.clone(), data.join("pgdata"), &env, run_as);
    let mut probe_env = env.clone();
    probe_env.push(("PGHOST".into(), ip.to_string()));
    LaunchSpec {
        name: "postgres".into(),
        program: bindir.join("postgres"),
        args: init.server_args(ip, 5432, &[]),
        env,
        workdir: Some(PathBuf::from("/")),
        run_as,
        prepare: Prepare::Postgres(Box::new(init)),
        log_path: logs.join("postgres.log"),
        stop_signal: rustix::process::Signal::INT,
        grace: Duration::from_secs(10),
        readiness: Some(ProbeSpec {
            action: ProbeAction::Exec {
                argv: vec![
                    "pg_isready".into(),
                    "-U".into(),
                    "atoll".into(),
                    "-d".into(),
                    "acme".into(),
                ],
                env: probe_env,
                path_prefix: vec![bindir],
            },
            initial_delay: Duration::ZERO,
            period: Duration::from_millis(200),
            timeout: Duration::from_secs(2),
            success_threshold: 1,
            failure_threshold: 1,
        }),
        liveness: None,
        restart: RestartPolicy::Always,
        backoff: Backoff::default(),
        logs_on_error: false,
    }
}

async fn wait_ready(sup: &Supervisor, log: &std::path::Path) -> u32 {
    let mut states = sup.subscribe();
    let ready = tokio::time::timeout(
        Duration::from_secs(60),
        states.wait_for(|s| s.ready && matches!(s.current, RunState::Running { .. })),
    )
    .await;
    match ready.ok().and_then(Result::ok).map(|s| s.current.clone()) {
        Some(RunState::Running { pid, .. }) => pid,
        _ => panic!(
            "postgres not ready: {:?}\n{}",
            sup.state(),
            std::fs::read_to_string(log).unwrap_or_default()
        ),
    }
}

fn psql(ip: Ipv4Addr, sql: &str) -> String {
    let out = std::process::Command::new(postgres::bindir_from_env().join("psql"))
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGHOST", ip.to_string())
        .env("PGUSER", "atoll")
        .env("PGDATABASE", "acme")
        .env("PGPASSWORD", "pw-for-test")
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test]
async fn postgres_initialises_like_the_image_and_keeps_its_data_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let ip = AddressPool::new(Block::Pods)
        .allocate(&[5432])
        .expect("address");
    let log = dir.path().join("postgres.log");

    let sup = Supervisor::spawn(launch(dir.path(), dir.path(), ip), Arc::new(Notify::new()));
    let pid = wait_ready(&sup, &log).await;
    psql(
        ip,
        "CREATE TABLE t (v text); INSERT INTO t VALUES ('kept');",
    );
    sup.stop().await;
    assert!(!group_alive(pid), "postgres processes survived stop");

    let sup = Supervisor::spawn(launch(dir.path(), dir.path(), ip), Arc::new(Notify::new()));
    wait_ready(&sup, &log).await;
    assert_eq!(psql(ip, "SELECT v FROM t"), "kept");
    sup.stop().await;
    let log = std::fs::read_to_string(&log).expect("log");
    assert!(!log.contains("pw-for-test"), "password in the log");
}
