//! Side-by-side benchmark (not a test): this instance and Prefect 3, in one
//! run, each on its default SQLite, on this machine. Prints for both, and
//! their ratios:
//! - time from process start to the health endpoint answering,
//! - idle RSS a few seconds after ready (the whole process tree: Prefect's
//!   server runs its API in a child process),
//! - throughput and p50/p99 latency of N runs of a trivial one-task flow,
//!   C at a time (after one warm-up run each).
//!
//! What a "run" is differs by design of the two engines: here, one API call
//! that creates an execution and waits for its end (`wait=true`); in
//! Prefect, one call of a `@flow` function from a Python client, which
//! creates the flow run and its task run through the server's API and
//! reports their states to it. Both end with the run recorded as completed
//! in the server's database.
//!
//! Prefect is installed from the Python registry into a throwaway virtual
//! environment (set `ATOLL_PREFECT_VENV` to a directory to keep and reuse
//! one). `cargo bench -p atoll-instance --bench prefect`; BENCH_RUNS
//! (default 1000) and BENCH_CONCURRENCY (default 8) change the load.
//!
//! Measured on the 2 shared cores of the development machine (release
//! build, Prefect 3 from the registry, 1000 runs):
//!
//! | | ready | idle RSS | runs/s | p50 | p99 |
//! |---|---|---|---|---|---|
//! | atoll, 8 at a time | 42 ms | 14.8 MiB | 673 | 9.7 ms | 57 ms |
//! | prefect, 8 at a time | 12.1 s | 222 MiB | 3.8 | 270 ms | 32.6 s (5 runs failed) |
//! | atoll, 1 at a time | 13 ms | 14.7 MiB | 357 | 2.6 ms | 11 ms |
//! | prefect, 1 at a time | 13.0 s | 222 MiB | 3.4 | 265 ms | 743 ms |
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Load, env_number, free_port, percentile, run_executions};

const FLOW: &str = "id: one\nnamespace: bench\ntasks:\n  - id: only\n    type: io.kestra.plugin.core.debug.Return\n    format: \"1\"\n";

/// The Prefect side: the same trivial flow, run N times, C at a time.
const PREFECT_DRIVER: &str = r#"
import asyncio, json, sys, time
from prefect import flow, task

@task
async def only():
    return 1

@flow(name="one")
async def one():
    return await only()

async def main(total, concurrency):
    await one(return_state=True)  # warm-up, not measured
    gate = asyncio.Semaphore(concurrency)
    latencies, failed = [], 0
    async def run():
        nonlocal failed
        async with gate:
            started = time.perf_counter()
            try:
                state = await one(return_state=True)
                ok = state.is_completed()
            except Exception:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - started)
            else:
                failed += 1
    started = time.perf_counter()
    await asyncio.gather(*(run() for _ in range(total)))
    elapsed = time.perf_counter() - started
    print(json.dumps({"elapsed": elapsed, "latencies": latencies, "failed": failed}))

asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
"#;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        // Prefect's server runs children of its own; end the whole group.
        let pid = self.0.id();
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{pid}")])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stderr(Stdio::null())
            .status();
        let _ = self.0.wait();
    }
}

fn spawn_in_own_group(command: &mut Command) -> Proc {
    use std::os::unix::process::CommandExt;
    Proc(command.process_group(0).spawn().expect("start"))
}

fn status_field(pid: u32, field: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .map(str::to_owned)
}

/// VmRSS of `pid` and every process below it, in KiB.
fn tree_rss_kib(pid: u32) -> u64 {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(parent) = status_field(child, "PPid:").and_then(|p| p.parse().ok()) {
            parents.push((child, parent));
        }
    }
    let mut tree = vec![pid];
    let mut grew = true;
    while grew {
        grew = false;
        for (child, parent) in &parents {
            if tree.contains(parent) && !tree.contains(child) {
                tree.push(*child);
                grew = true;
            }
        }
    }
    tree.iter()
        .filter_map(|p| status_field(*p, "VmRSS:"))
        .filter_map(|v| v.parse::<u64>().ok())
        .sum()
}

#[derive(Debug)]
struct Figures {
    ready: Duration,
    idle_rss_kib: u64,
    runs: usize,
    failed: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Figures {
    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn print(&self, label: &str, concurrency: usize) {
        println!(
            "{label:<8} ready {:>7.0} ms | idle RSS {:>7.1} MiB | {} runs x1 task, {concurrency} at a time: {:>7.1}/s, p50 {:>7.1} ms, p99 {:>7.1} ms, failed {}",
            self.ready.as_secs_f64() * 1000.0,
            self.idle_rss_kib as f64 / 1024.0,
            self.runs,
            self.per_second(),
            percentile(&self.latencies, 0.50).as_secs_f64() * 1000.0,
            percentile(&self.latencies, 0.99).as_secs_f64() * 1000.0,
            self.failed,
        );
    }
}

/// Polls `url` until it answers 2xx; returns how long since `started`.
async fn wait_healthy(http: &reqwest::Client, url: &str, started: Instant) -> Duration {
    loop {
        let ok = http
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "{url} never answered"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Lets start-up work settle before reading the idle RSS.
const SETTLE: Duration = Duration::from_secs(3);

async fn atoll(runs: usize, concurrency: usize) -> Figures {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let started = Instant::now();
    let proc = spawn_in_own_group(
        Command::new(env!("CARGO_BIN_EXE_atoll-instance"))
            .env("ATOLL_DATA_DIR", dir.path())
            .env("ATOLL_LISTEN", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    );
    let ready = wait_healthy(&http, &format!("{base}/readyz"), started).await;
    tokio::time::sleep(SETTLE).await;
    let idle_rss_kib = tree_rss_kib(proc.0.id());
    let saved = http
        .post(format!("{base}/api/v1/flows"))
        .header("content-type", "application/x-yaml")
        .body(FLOW)
        .send()
        .await
        .unwrap();
    assert!(saved.status().is_success(), "saving the flow failed");
    let url = format!("{base}/api/v1/executions/bench/one?wait=true");
    http.post(&url).send().await.unwrap(); // warm-up
    let Load {
        latencies,
        failed,
        elapsed,
    } = run_executions(&http, url, runs, concurrency).await;
    drop(proc);
    Figures {
        ready,
        idle_rss_kib,
        runs,
        failed,
        elapsed,
        latencies,
    }
}

/// A virtual environment with Prefect 3: `ATOLL_PREFECT_VENV` when set
/// (created there once), else a throwaway one under `scratch`.
fn prefect_venv(scratch: &Path) -> PathBuf {
    let venv = std::env::var_os("ATOLL_PREFECT_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| scratch.join("venv"));
    if venv.join("bin/prefect").is_file() {
        return venv;
    }
    println!("installing Prefect 3 into {} …", venv.display());
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("python3 -m venv");
    assert!(status.success(), "creating the virtual environment failed");
    let status = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "prefect>=3,<4"])
        .status()
        .expect("pip install prefect");
    assert!(status.success(), "installing Prefect failed");
    venv
}

async fn prefect(runs: usize, concurrency: usize) -> Figures {
    let scratch = tempfile::tempdir().unwrap();
    let venv = prefect_venv(scratch.path());
    let home = scratch.path().join("prefect-home");
    std::fs::create_dir_all(&home).unwrap();
    let port = free_port();
    let api = format!("http://127.0.0.1:{port}/api");
    let quiet = |command: &mut Command| {
        command
            .env("PREFECT_HOME", &home)
            .env("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
            .env("PREFECT_LOGGING_LEVEL", "WARNING")
            .env("DO_NOT_TRACK", "1");
    };
    let mut server = Command::new(venv.join("bin/prefect"));
    server
        .args(["server", "start", "--host", "127.0.0.1", "--port"])
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    quiet(&mut server);
    let http = reqwest::Client::new();
    let started = Instant::now();
    let proc = spawn_in_own_group(&mut server);
    let ready = wait_healthy(&http, &format!("{api}/health"), started).await;
    tokio::time::sleep(SETTLE).await;
    let idle_rss_kib = tree_rss_kib(proc.0.id());

    let script = scratch.path().join("driver.py");
    std::fs::write(&script, PREFECT_DRIVER).unwrap();
    let mut driver = Command::new(venv.join("bin/python"));
    driver
        .arg(&script)
        .arg(runs.to_string())
        .arg(concurrency.to_string())
        .env("PREFECT_API_URL", &api)
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    quiet(&mut driver);
    let output = tokio::task::spawn_blocking(move || driver.output())
        .await
        .unwrap()
        .expect("run the Prefect driver");
    let line = String::from_utf8_lossy(&output.stdout);
    let report: serde_json::Value = line
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("the Prefect driver printed no report: {line}"));
    let mut latencies: Vec<Duration> = report["latencies"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_f64())
        .map(Duration::from_secs_f64)
        .collect();
    latencies.sort();
    drop(proc);
    Figures {
        ready,
        idle_rss_kib,
        runs,
        failed: report["failed"].as_u64().unwrap_or(0) as usize,
        elapsed: Duration::from_secs_f64(report["elapsed"].as_f64().unwrap_or(f64::MAX)),
        latencies,
    }
}

fn ratio(a: f64, b: f64) -> String {
    if b == 0.0 {
        "n/a".into()
    } else {
        format!("{:.1}x", a / b)
    }
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "side-by-side benchmark: run with `cargo bench -p atoll-instance --bench prefect`"
        );
        return;
    }
    let runs = env_number("BENCH_RUNS", 1000);
    let concurrency = env_number("BENCH_CONCURRENCY", 8);
    let ours = atoll(runs, concurrency).await;
    let theirs = prefect(runs, concurrency).await;
    println!("--- same machine, same run, each on its default SQLite ---");
    ours.print("atoll", concurrency);
    theirs.print("prefect", concurrency);
    let p50 = |f: &Figures| percentile(&f.latencies, 0.5).as_secs_f64();
    println!(
        "ratios (prefect / atoll): time to ready {}, idle RSS {}, p50 latency {}; throughput (atoll / prefect) {}",
        ratio(theirs.ready.as_secs_f64(), ours.ready.as_secs_f64()),
        ratio(theirs.idle_rss_kib as f64, ours.idle_rss_kib as f64),
        ratio(p50(&theirs), p50(&ours)),
        ratio(ours.per_second(), theirs.per_second()),
    );
}
