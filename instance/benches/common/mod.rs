//! What the instance benchmarks share: settings from the environment, a
//! free port, and the load loop that starts executions and times each.
//!
//! Each bench uses a part of it, so what one leaves unused is not dead.
#![allow(dead_code)]

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A number from the environment, or `default`.
pub fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `p` quantile of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// What a load run measured.
pub struct Load {
    /// Latency of each successful execution, sorted.
    pub latencies: Vec<Duration>,
    /// Executions that did not end in SUCCESS.
    pub failed: usize,
    /// Wall time of the whole run.
    pub elapsed: Duration,
}

/// Starts `total` executions through `url` (an execution endpoint with
/// `wait=true`), `concurrency` at a time, timing each to its final state.
pub async fn run_executions(
    http: &reqwest::Client,
    url: String,
    total: usize,
    concurrency: usize,
) -> Load {
    let url = Arc::new(url);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (http, url, next) = (http.clone(), url.clone(), next.clone());
            tokio::spawn(async move {
                let (mut latencies, mut failed) = (Vec::new(), 0usize);
                while next.fetch_add(1, Ordering::SeqCst) < total {
                    let t = Instant::now();
                    let ok = match http.post(url.as_str()).send().await {
                        Ok(r) => r
                            .json::<serde_json::Value>()
                            .await
                            .is_ok_and(|e| e["state"]["current"] == "SUCCESS"),
                        Err(_) => false,
                    };
                    if ok {
                        latencies.push(t.elapsed());
                    } else {
                        failed += 1;
                    }
                }
                (latencies, failed)
            })
        })
        .collect();
    let mut load = Load {
        latencies: Vec::new(),
        failed: 0,
        elapsed: Duration::ZERO,
    };
    for worker in workers {
        let (latencies, failed) = worker.await.unwrap();
        load.latencies.extend(latencies);
        load.failed += failed;
    }
    load.elapsed = started.elapsed();
    load.latencies.sort();
    load
}
