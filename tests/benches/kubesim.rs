//! kubesim throughput through an in-process `kube::Client`: creates,
//! no-op server-side applies, a full list, and watch fan-out, with the
//! process's resident memory. Prints figures; asserts nothing.
//!
//! `cargo bench -p atoll-testkit --bench kubesim` (set `KUBESIM_BENCH_N`
//! to change the object count, default 10000, and `KUBESIM_BENCH_HISTORY`
//! the watch history kept, default 50000).

// A benchmark prints its figures.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use atoll_testkit::kubesim::KubeSim;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::WatchStreamExt;
use serde_json::json;

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn config_map(i: usize) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": format!("cm-{i}"), "labels": {"app": "bench", "shard": (i % 10).to_string()}},
        "data": {"tenant": format!("tenant-{i}"), "url": format!("https://tenant-{i}.example.com")},
    })
}

fn report(what: &str, n: usize, took: Duration) {
    let per_sec = n as f64 / took.as_secs_f64();
    println!(
        "{what:<40} {n:>7} in {:>8.1} ms  {per_sec:>10.0}/s",
        took.as_secs_f64() * 1000.0
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("KUBESIM_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let history: usize = std::env::var("KUBESIM_BENCH_HISTORY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let sim = KubeSim::builder().history(history).build();
    let cms: Api<ConfigMap> = Api::default_namespaced(sim.client());
    println!(
        "kubesim bench, {n} ConfigMaps, history {history}, RSS at start {:.1} MiB",
        rss_mib()
    );

    // Watchers that see every change.
    let watchers: Vec<_> = (0..10)
        .map(|_| {
            let cms = cms.clone();
            let rv = sim.resource_version().to_string();
            tokio::spawn(async move {
                let mut seen = 0usize;
                let stream = cms
                    .watch(&WatchParams::default().disable_bookmarks(), &rv)
                    .await
                    .expect("watch");
                let mut stream = stream.boxed();
                while let Some(Ok(event)) = stream.next().await {
                    if matches!(event, WatchEvent::Added(_)) {
                        seen += 1;
                        if seen == n {
                            break;
                        }
                    }
                }
                Instant::now()
            })
        })
        .collect();

    let start = Instant::now();
    for i in 0..n {
        let cm: ConfigMap = serde_json::from_value(config_map(i)).expect("valid");
        cms.create(&PostParams::default(), &cm)
            .await
            .expect("created");
    }
    report("create", n, start.elapsed());
    let mut last = start;
    for w in watchers {
        last = last.max(w.await.expect("watcher"));
    }
    report("10 watchers saw every create", n, last - start);
    println!("RSS after the creates {:.1} MiB", rss_mib());

    let pp = PatchParams::apply("bench").force();
    let start = Instant::now();
    for i in 0..n {
        cms.patch(&format!("cm-{i}"), &pp, &Patch::Apply(config_map(i)))
            .await
            .expect("applied");
    }
    report("server-side apply (takes ownership)", n, start.elapsed());
    let writes_before = sim.request_log().write_count();
    let start = Instant::now();
    for i in 0..n {
        cms.patch(&format!("cm-{i}"), &pp, &Patch::Apply(config_map(i)))
            .await
            .expect("applied");
    }
    report("server-side apply, no change", n, start.elapsed());
    println!(
        "writes during the no-change round: {}",
        sim.request_log().write_count() - writes_before
    );

    println!("RSS after the applies {:.1} MiB", rss_mib());
    let start = Instant::now();
    let all = cms.list(&ListParams::default()).await.expect("listed");
    report("list all (one request)", all.items.len(), start.elapsed());
    let start = Instant::now();
    let shard = cms
        .list(&ListParams::default().labels("shard=3"))
        .await
        .expect("listed");
    report(
        "list by label (one request)",
        shard.items.len(),
        start.elapsed(),
    );
    let start = Instant::now();
    let pages: Vec<ConfigMap> =
        kube::runtime::watcher(cms.clone(), kube::runtime::watcher::Config::default())
            .default_backoff()
            .try_take_while(|e| {
                std::future::ready(Ok(!matches!(e, kube::runtime::watcher::Event::InitDone)))
            })
            .try_filter_map(|e| async move {
                Ok(match e {
                    kube::runtime::watcher::Event::InitApply(o) => Some(o),
                    _ => None,
                })
            })
            .try_collect()
            .await
            .expect("watcher listed");
    report(
        "watcher initial list (pages of 500)",
        pages.len(),
        start.elapsed(),
    );
    println!("RSS at end {:.1} MiB", rss_mib());
}
