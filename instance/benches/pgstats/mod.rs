//! What a run of the instance costs PostgreSQL, read from the server's own
//! statistics, and the server's ceiling measured with `pgbench`.
//!
//! - transactions: `xact_commit + xact_rollback` of the instance's database
//!   in `pg_stat_database` (every statement outside an explicit
//!   transaction is one);
//! - statements: `calls` of `pg_stat_statements` (preloaded into the
//!   throwaway server) for that database, `BEGIN` and `COMMIT` included;
//! - ceiling: `pgbench -N` (simple-update: per transaction one `UPDATE`, one
//!   `SELECT`, one `INSERT`, as many clients as the instance's pool) on
//!   the same server, right after the instance's run.

use std::process::Command;
use std::time::Duration;

use atoll_testkit::pg::TestPostgres;

/// The server settings the counters need.
pub const SETTINGS: &[&str] = &[
    "shared_preload_libraries=pg_stat_statements",
    "pg_stat_statements.track_utility=on",
];

/// Connections of the instance's PostgreSQL pool (store/dialect.rs), and
/// so pgbench's clients.
const POOL: usize = 8;

/// Counters of one database at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Counters {
    pub transactions: u64,
    pub statements: u64,
}

/// Makes `pg_stat_statements` readable (once per server).
pub fn enable(server: &TestPostgres) {
    server.psql(
        "postgres",
        "CREATE EXTENSION IF NOT EXISTS pg_stat_statements",
    );
}

/// The counters of `database` now. Backends report their statistics up to
/// a second after a transaction, so this waits that long first.
pub fn read(server: &TestPostgres, database: &str) -> Counters {
    std::thread::sleep(Duration::from_millis(1500));
    let row = server.psql(
        "postgres",
        &format!(
            "SELECT (SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '{database}'),
                    (SELECT COALESCE(SUM(calls), 0) FROM pg_stat_statements
                      WHERE dbid = (SELECT oid FROM pg_database WHERE datname = '{database}'))"
        ),
    );
    let mut fields = row.split('|').map(|f| f.trim().parse::<u64>().unwrap_or(0));
    Counters {
        transactions: fields.next().unwrap_or(0),
        statements: fields.next().unwrap_or(0),
    }
}

/// `pgbench -N` transactions per second on `server`, over `seconds`.
pub fn ceiling(server: &TestPostgres, seconds: usize) -> f64 {
    let bin = atoll_testkit::nodesim::postgres::bindir_from_env();
    server.psql("postgres", "CREATE DATABASE pgbench");
    let port = server.port.to_string();
    let connection = ["-h", "127.0.0.1", "-p", port.as_str(), "-U", "postgres"];
    let init = Command::new(bin.join("pgbench"))
        .args(connection)
        .args(["-i", "-q", "-s", "1", "pgbench"])
        .output()
        .expect("run pgbench -i");
    assert!(init.status.success(), "pgbench -i failed");
    let clients = POOL.to_string();
    let out = Command::new(bin.join("pgbench"))
        .args(connection)
        .args(["-N", "-n", "-c", &clients, "-j", "2"])
        .args(["-T", &seconds.to_string(), "pgbench"])
        .output()
        .expect("run pgbench");
    assert!(out.status.success(), "pgbench failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}
