//! Instance benchmark (not a test): starts the `atoll-instance` binary on
//! SQLite and on a throwaway PostgreSQL and prints
//! - idle RSS a second after it is ready (VmRSS from /proc),
//! - time from process start to `/readyz` answering 200,
//! - executions per second of a one-task flow, and the p50/p99 latency of
//!   one execution (API call with `wait=true` until its final state),
//! - on PostgreSQL, what one execution costs the server (transactions and
//!   statements, see `pgstats`) and, as the ceiling, `pgbench -N`'s
//!   transactions per second on the same server in the same run, with the
//!   ratio of executions per second to it.
//!
//! `cargo bench -p atoll-instance --bench instance` (set BENCH_EXECUTIONS /
//! BENCH_CONCURRENCY to change the load, defaults 2000 and 64;
//! BENCH_PGBENCH_SECONDS for the ceiling's run, default 10).
#![allow(clippy::print_stdout, clippy::unwrap_used)]

mod common;
mod pgstats;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use atoll_testkit::pg::TestPostgres;
use common::{Load, env_number, free_port, percentile, run_executions};

const FLOW: &str = "id: one\nnamespace: bench\ntasks:\n  - id: only\n    type: io.kestra.plugin.core.debug.Return\n    format: \"{{ execution.id }}\"\n";

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The PostgreSQL server and database a run is measured on.
struct Measured<'a> {
    server: &'a TestPostgres,
    database: &'a str,
}

/// Runs the instance on `database_url`; returns its executions per second.
async fn bench(label: &str, database_url: &str, measured: Option<Measured<'_>>) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_atoll-instance"))
        .env("ATOLL_DATA_DIR", dir.path())
        .env("ATOLL_DATABASE_URL", database_url)
        .env("ATOLL_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start atoll-instance");
    let proc = Proc(child);
    loop {
        let ready = http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "never ready");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let ready_after = started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = rss_kib(proc.0.id());

    let saved = http
        .post(format!("{base}/api/v1/flows"))
        .header("content-type", "application/x-yaml")
        .body(FLOW)
        .send()
        .await
        .unwrap();
    assert!(saved.status().is_success(), "saving the flow failed");

    let total = env_number("BENCH_EXECUTIONS", 2000);
    let concurrency = env_number("BENCH_CONCURRENCY", 64);
    let before = measured
        .as_ref()
        .map(|m| pgstats::read(m.server, m.database));
    let Load {
        latencies,
        failed,
        elapsed,
    } = run_executions(
        &http,
        format!("{base}/api/v1/executions/bench/one?wait=true"),
        total,
        concurrency,
    )
    .await;
    let loaded_rss = rss_kib(proc.0.id());
    let rate = latencies.len() as f64 / elapsed.as_secs_f64();
    println!(
        "{label:<10} ready {:>6.0} ms | idle RSS {:>6.1} MiB | {total} executions x1 task, {concurrency} concurrent: {:>7.1}/s, p50 {:>6.1} ms, p99 {:>6.1} ms, failed {failed} | RSS after load {:.1} MiB",
        ready_after.as_secs_f64() * 1000.0,
        idle_rss as f64 / 1024.0,
        rate,
        percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        loaded_rss as f64 / 1024.0,
    );
    if let (Some(m), Some(before)) = (measured, before) {
        let after = pgstats::read(m.server, m.database);
        let per = |n: u64| n as f64 / total as f64;
        println!(
            "{label:<10} per execution: {:.2} transactions, {:.2} statements (pg_stat_database xact_commit+xact_rollback, pg_stat_statements calls; over {total})",
            per(after.transactions - before.transactions),
            per(after.statements - before.statements),
        );
    }
    rate
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; a plain `cargo test --benches` does
    // not, and then the (long) measurement is skipped.
    if !std::env::args().any(|a| a == "--bench") {
        println!("instance benchmark: run with `cargo bench -p atoll-instance`");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite:{}", dir.path().join("bench.db").display());
    bench("sqlite", &sqlite, None).await;
    let server = TestPostgres::start_with(pgstats::SETTINGS);
    pgstats::enable(&server);
    let url = server.database_url("bench");
    let measured = Measured {
        server: &server,
        database: "bench",
    };
    let rate = bench("postgres", &url, Some(measured)).await;
    let seconds = env_number("BENCH_PGBENCH_SECONDS", 10);
    let ceiling = pgstats::ceiling(&server, seconds);
    println!(
        "{:<10} pgbench -N (simple-update), same server: {ceiling:.0} tps; executions/s over it: {:.3}",
        "postgres",
        rate / ceiling
    );
}
