//! Web UI benchmark (not a test): with 10,000 executions stored (on SQLite,
//! the default database, then on a throwaway PostgreSQL as in a cluster;
//! `ATOLL_PG_BINDIR` names its server binaries), the first paint of the executions page
//! (`GET /ui/executions`: the newest page of 25 and the total) — prints the
//! server time (first request, then p50 and max over the following ones,
//! measured on loopback around the whole request) and the bytes
//! transferred (status line and headers included), beside the targets
//! (≤ 100 ms, ≤ 200 KB). The page's stylesheet and script are fetched once
//! and cached for a year (content-hashed names), so they are counted apart.
//!
//! `cargo bench -p atoll-instance --bench ui` (BENCH_UI_EXECUTIONS to change
//! how many are stored, default 10000; BENCH_UI_REQUESTS, default 50).
#![allow(clippy::print_stdout, clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use atoll_instance::config::{AuthMode, Config};
use atoll_instance::execution::{Execution, StateInfo, TaskRun};
use atoll_instance::flow::Label;
use atoll_instance::store::{Repository, Store};
use atoll_instance::vocabulary::State;
use common::{env_number, percentile};
use jiff::{Timestamp, ToSpan};
use serde_json::{Map, json};
use tokio_util::sync::CancellationToken;

/// An ended execution as the engine leaves one: three task runs, labels,
/// inputs, outputs; started `minutes_ago`.
fn execution(i: usize, minutes_ago: i64) -> Execution {
    let start = Timestamp::now() - minutes_ago.minutes();
    let end = start + 3.seconds();
    let state = if i.is_multiple_of(10) {
        State::Failed
    } else {
        State::Success
    };
    let mut inputs = Map::new();
    inputs.insert("day".into(), json!(format!("2026-01-{:02}", i % 28 + 1)));
    let mut e = Execution::new(
        format!("{:032x}", i),
        format!("bench.team{}", i % 5),
        format!("load-{}", i % 20),
        1,
        vec![
            Label {
                key: "env".into(),
                value: "prod".into(),
            },
            Label {
                key: "run".into(),
                value: i.to_string(),
            },
        ],
        inputs,
        start,
    );
    for (n, task) in ["extract", "transform", "load"].iter().enumerate() {
        let mut run = TaskRun::new(
            format!("{:030x}{n:02}", i),
            (*task).into(),
            None,
            Vec::new(),
            start,
        );
        run.state = StateInfo::new(state, start);
        run.state.end_date = Some(end);
        run.outputs
            .insert("value".into(), json!(format!("{task} of {i}")));
        e.task_run_list.push(run);
    }
    e.state = StateInfo::new(state, start);
    e.state.end_date = Some(end);
    e
}

/// Stores `stored` ended executions in a new SQLite database at `url`.
async fn store_executions(url: &str, stored: usize) {
    let started = Instant::now();
    let store = Store::connect(url).await.unwrap();
    for i in 0..stored {
        store
            .insert_execution(&execution(i, (stored - i) as i64))
            .await
            .unwrap();
    }
    println!(
        "ui bench: {stored} executions stored in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// The instance on `url` (authentication off), ready: its base URL.
async fn start(dir: &std::path::Path, url: String, shutdown: &CancellationToken) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let config = Config {
        tenant: "bench".into(),
        listen: listener.local_addr().unwrap(),
        data_dir: dir.to_owned(),
        database_url: url,
        auth: AuthMode::Disabled { explicit: true },
        ..Config::default()
    };
    tokio::spawn(atoll_instance::server::serve_with_metrics(
        config,
        listener,
        None,
        shutdown.clone(),
    ));
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "the instance did not get ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    base
}

/// `requests` GETs of `url`: the time of each, the bytes of the last
/// (status line and headers included) and its body.
async fn fetch(
    http: &reqwest::Client,
    url: &str,
    requests: usize,
) -> (Vec<Duration>, usize, String) {
    let mut times = Vec::new();
    let mut bytes = 0;
    let mut body = String::new();
    for _ in 0..requests {
        let at = Instant::now();
        let response = http.get(url).send().await.unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        let headers: usize = response
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum();
        body = response.text().await.unwrap();
        times.push(at.elapsed());
        bytes = "HTTP/1.1 200 OK\r\n".len() + headers + 2 + body.len();
    }
    (times, bytes, body)
}

/// The bytes of the assets `body` links.
async fn asset_bytes(http: &reqwest::Client, base: &str, body: &str) -> usize {
    let mut assets = 0;
    let linked = ["href=\"/assets/", "src=\"/assets/"]
        .iter()
        .flat_map(|attribute| body.split(attribute).skip(1));
    for href in linked {
        if let Some(name) = href.split('"').next() {
            let got = http
                .get(format!("{base}/assets/{name}"))
                .send()
                .await
                .unwrap();
            assets += got.bytes().await.unwrap().len();
        }
    }
    assets
}

#[tokio::main]
async fn main() {
    let stored = env_number("BENCH_UI_EXECUTIONS", 10_000);
    let requests = env_number("BENCH_UI_REQUESTS", 50).max(2);
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite:{}", dir.path().join("db.sqlite").display());
    first_paint("SQLite", dir.path(), &sqlite, stored, requests).await;
    // A tenant's instance in a cluster stores on its PostgreSQL.
    let server = atoll_testkit::pg::TestPostgres::start();
    let postgres = server.database_url("ui_bench");
    let pg_dir = tempfile::tempdir().unwrap();
    first_paint("PostgreSQL", pg_dir.path(), &postgres, stored, requests).await;
}

/// Stores `stored` executions in `url`, starts an instance on it and prints
/// the executions page's first paint.
async fn first_paint(
    database: &str,
    dir: &std::path::Path,
    url: &str,
    stored: usize,
    requests: usize,
) {
    store_executions(url, stored).await;
    let shutdown = CancellationToken::new();
    let base = start(dir, url.to_owned(), &shutdown).await;

    let http = reqwest::Client::new();
    let (times, bytes, body) = fetch(&http, &format!("{base}/ui/executions"), requests).await;
    assert!(
        body.contains(&format!("· {stored} execution(s)")),
        "the page counts every execution"
    );
    let mut rest = times[1..].to_vec();
    rest.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "ui bench ({database}): GET /ui/executions with {stored} stored: server time first {:.1} ms, p50 {:.1} ms, max {:.1} ms over {} more (target ≤ 100 ms)",
        ms(times[0]),
        ms(percentile(&rest, 0.5)),
        ms(*rest.last().unwrap()),
        rest.len()
    );
    println!(
        "ui bench ({database}): transferred {bytes} bytes ({:.1} KB; target ≤ 200 KB)",
        bytes as f64 / 1024.0
    );
    println!(
        "ui bench ({database}): its stylesheet and script, fetched once then cached: {:.1} KB",
        asset_bytes(&http, &base, &body).await as f64 / 1024.0
    );
    shutdown.cancel();
}
