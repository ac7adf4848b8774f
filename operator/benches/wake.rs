//! Wake time and idle cost of sleeping tenants (#20), in the sandbox's
//! cluster: kubesim, nodesim running PostgreSQL 15 and `atoll-instance` as
//! local processes with its ingress router on a loopback port, the
//! operator in process, the wake gate as a process (`atoll-operator
//! wake-gate`) routed as the chart routes it. Not a test: it prints
//! figures.
//!
//! 1. **Wake time**, from the first request to its response, through the
//!    ingress and the gate: `BENCH_WAKE_TENANTS` (default 8) tenants with
//!    `idle: {after: 10s}` (instance only: their PostgreSQL keeps running)
//!    and as many with `database: true` (PostgreSQL stopped too), woken
//!    `BENCH_WAKE_ROUNDS` (default 4) times each by `GET /readyz`, one
//!    tenant at a time; p50, p95, p99 and max per kind.
//! 2. **Idle cost**: the resident memory (RSS, and PSS, which shares
//!    PostgreSQL's shared memory out fairly) of a tenant's processes awake,
//!    asleep with its database running, and asleep with it stopped; then
//!    `BENCH_IDLE_TENANTS` (default 100) tenants of which 90 % sleep (with
//!    `database: true`) and 10 % stay awake, brought up `BENCH_IDLE_BATCH`
//!    (default 10) at a time: their processes' total.
//!
//! `cargo build --release -p atoll-instance -p atoll-operator && cargo
//! bench -p atoll-operator --bench wake` (needs PostgreSQL 15's binaries,
//! as the operator's cluster tests do); `BENCH_PARTS=wake`, `cost` or
//! `many` for one part; `BENCH_IDLE_SHARED=1` puts the many tenants'
//! databases on one shared server (External).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use atoll_crds::Tenant;
use atoll_operator::cli::{Cli, Command};
use atoll_operator::run::{RunArgs, run_with_client};
use atoll_testkit::cluster::{ClusterKind, TestCluster};
use atoll_testkit::nodesim::{NodeSim, NodeSimConfig, workspace_binary};
use clap::Parser;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

const DOMAIN: &str = "atoll.localhost";
const LIMIT: Duration = Duration::from_secs(600);
const POLL: Duration = Duration::from_millis(50);

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Checks `check` every [`POLL`] until it returns `Some`; panics naming
/// `what` after `limit`.
async fn until<T, F, Fut>(what: &str, limit: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    atoll_testkit::wait::eventually_every(what, limit, POLL, check).await
}

struct Bench {
    client: Client,
    gate_log: std::path::PathBuf,
    node: NodeSim,
    ingress: SocketAddr,
    http: reqwest::Client,
}

impl Bench {
    async fn create(&self, name: &str, spec: Value) {
        let tenant: Tenant = serde_json::from_value(json!({
            "apiVersion": "atoll.dev/v1alpha1", "kind": "Tenant",
            "metadata": {"name": name}, "spec": spec,
        }))
        .expect("a Tenant");
        Api::<Tenant>::all(self.client.clone())
            .create(&PostParams::default(), &tenant)
            .await
            .unwrap_or_else(|e| panic!("creating Tenant {name}: {e}"));
    }

    async fn phase(&self, name: &str) -> Option<String> {
        let tenant = Api::<Tenant>::all(self.client.clone())
            .get_opt(name)
            .await
            .ok()??;
        serde_json::to_value(tenant.status?.phase?)
            .ok()?
            .as_str()
            .map(str::to_owned)
    }

    async fn pods(&self, name: &str) -> Vec<Pod> {
        Api::<Pod>::namespaced(self.client.clone(), &format!("atoll-{name}"))
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
    }

    async fn wait_phase(&self, name: &str, phase: &str) {
        until(&format!("{name} to be {phase}"), LIMIT, || async {
            (self.phase(name).await.as_deref() == Some(phase)).then_some(())
        })
        .await;
    }

    /// Waits until `name` has been Ready: Ready, or already asleep after
    /// its idle time.
    async fn wait_up(&self, name: &str) {
        until(&format!("{name} to be Ready"), LIMIT, || async {
            matches!(
                self.phase(name).await.as_deref(),
                Some("Ready" | "Sleeping")
            )
            .then_some(())
        })
        .await;
    }

    /// Waits until `name` sleeps with no instance pod (and, with
    /// `database`, no database pod) left.
    async fn wait_asleep(&self, name: &str, database: bool) {
        self.wait_phase(name, "Sleeping").await;
        until(&format!("{name}'s pods to stop"), LIMIT, || async {
            let pods = self.pods(name).await;
            let left = pods.iter().filter(|p| {
                let component = p.labels().get("app.kubernetes.io/component").cloned();
                component.as_deref() == Some("instance")
                    || (database && component.as_deref() == Some("database"))
            });
            (left.count() == 0).then_some(())
        })
        .await;
    }

    /// The first request to a sleeping tenant: time until its response.
    async fn wake(&self, name: &str) -> Duration {
        let started = Instant::now();
        let answer = self
            .http
            .get(format!("http://{}/readyz", self.ingress))
            .header("host", format!("{name}.{DOMAIN}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let took = started.elapsed();
        let status = answer.status().as_u16();
        if status != 200 {
            let body = answer.text().await.unwrap_or_default();
            let log = std::fs::read_to_string(&self.gate_log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            panic!(
                "{name} did not wake: {status} {body}\nthe gate's log, newest first:\n{}",
                tail.join("\n")
            );
        }
        took
    }

    /// RSS and PSS (kB) of every process of the tenant's pods and their
    /// children, and how many processes.
    async fn memory(&self, name: &str) -> (u64, u64, usize) {
        let namespace = format!("atoll-{name}");
        let mut roots = Vec::new();
        for pod in self.pods(name).await {
            roots.extend(self.node.pod_pids(&namespace, &pod.name_any()));
        }
        let all = descendants(&roots);
        let (mut rss, mut pss) = (0, 0);
        for pid in &all {
            rss += proc_kb(&format!("/proc/{pid}/status"), "VmRSS:");
            pss += proc_kb(&format!("/proc/{pid}/smaps_rollup"), "Pss:");
        }
        (rss, pss, all.len())
    }
}

/// `pids` and all their descendants.
fn descendants(pids: &[u32]) -> Vec<u32> {
    let mut parents: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parents.entry(ppid).or_default().push(pid);
        }
    }
    let mut out = Vec::new();
    let mut stack: Vec<u32> = pids.to_vec();
    while let Some(pid) = stack.pop() {
        if out.contains(&pid) || !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        out.push(pid);
        stack.extend(parents.get(&pid).into_iter().flatten());
    }
    out
}

fn proc_kb(path: &str, key: &str) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn print_times(kind: &str, mut times: Vec<Duration>) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "wake, {kind}: {} wakes, p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        times.len(),
        ms(percentile(&times, 50.0)),
        ms(percentile(&times, 95.0)),
        ms(percentile(&times, 99.0)),
        ms(times.last().copied().unwrap_or_default()),
    );
}

fn start_operator(client: &Client) -> tokio::task::JoinHandle<()> {
    let cli = Cli::parse_from([
        "atoll-operator",
        "run",
        "--metrics-addr",
        "127.0.0.1:0",
        "--base-domain",
        DOMAIN,
    ]);
    let args: RunArgs = match cli.command {
        Command::Run(args) => *args,
        other => panic!("parsed {other:?}"),
    };
    let client = client.clone();
    tokio::spawn(async move {
        if let Err(error) = run_with_client(args, client).await {
            panic!("operator stopped: {error}");
        }
    })
}

fn idle(database: bool, after: &str) -> Value {
    json!({"idle": {"after": after, "database": database}})
}

async fn wake_times(bench: &Bench) {
    let tenants = env_number("BENCH_WAKE_TENANTS", 8);
    let rounds = env_number("BENCH_WAKE_ROUNDS", 4);
    let mut names = Vec::new();
    for i in 0..tenants {
        for (kind, database) in [("inst", false), ("pg", true)] {
            let name = format!("wake-{kind}-{i}");
            bench.create(&name, idle(database, "10s")).await;
            names.push((name, database));
        }
    }
    for (name, _) in &names {
        bench.wait_up(name).await;
    }
    let mut instance_only = Vec::new();
    let mut with_database = Vec::new();
    for round in 0..rounds {
        // All asleep, then woken one after the other: the first request's
        // latency, not two cores shared by ten wakes.
        futures::future::join_all(
            names
                .iter()
                .map(|(name, database)| bench.wait_asleep(name, *database)),
        )
        .await;
        let mut results = Vec::new();
        for (name, database) in &names {
            results.push((*database, bench.wake(name).await));
        }
        for (database, took) in results {
            if database {
                with_database.push(took);
            } else {
                instance_only.push(took);
            }
        }
        println!("round {}/{rounds} done", round + 1);
    }
    print_times("instance only (PostgreSQL kept running)", instance_only);
    print_times(
        "instance and PostgreSQL (spec.idle.database: true)",
        with_database,
    );
    for (name, _) in &names {
        let _ = Api::<Tenant>::all(bench.client.clone())
            .delete(name, &Default::default())
            .await;
    }
}

async fn idle_cost(bench: &Bench) {
    // One tenant in each state.
    bench.create("cost-awake", idle(true, "168h")).await;
    bench.wait_phase("cost-awake", "Ready").await;
    let (rss, pss, n) = bench.memory("cost-awake").await;
    println!(
        "idle cost, awake: {n} processes (instance and PostgreSQL), RSS {} MB, PSS {} MB",
        rss / 1024,
        pss / 1024
    );
    bench.create("cost-asleep", idle(true, "10s")).await;
    bench.wait_up("cost-asleep").await;
    bench.wait_asleep("cost-asleep", true).await;
    let (rss, pss, n) = bench.memory("cost-asleep").await;
    println!(
        "idle cost, asleep with database: true: {n} processes, RSS {} MB, PSS {} MB",
        rss / 1024,
        pss / 1024
    );
    bench.create("cost-db", idle(false, "10s")).await;
    bench.wait_up("cost-db").await;
    bench.wait_asleep("cost-db", false).await;
    let (rss, pss, n) = bench.memory("cost-db").await;
    println!(
        "idle cost, asleep with database: false: {n} processes (PostgreSQL), RSS {} MB, PSS {} MB",
        rss / 1024,
        pss / 1024
    );
}

async fn many_cost(bench: &Bench) {
    // Many tenants, 90 % asleep. With BENCH_IDLE_SHARED=1 their databases
    // are External, on one shared PostgreSQL (so a tenant's processes are
    // its instance only: what sleeping saves), else Dedicated ones stopped
    // with them (database: true).
    let shared = std::env::var("BENCH_IDLE_SHARED").is_ok_and(|v| v == "1");
    let _server = if shared {
        let server = atoll_testkit::pg::TestPostgres::start();
        let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
            "metadata": {"name": "shared-postgres-admin", "namespace": "atoll-system",
                "labels": {"atoll.dev/database-admin": "true"}},
            "stringData": {"url": server.url},
        }))
        .expect("a Secret");
        Api::<k8s_openapi::api::core::v1::Secret>::namespaced(bench.client.clone(), "atoll-system")
            .create(&PostParams::default(), &secret)
            .await
            .expect("the shared server's admin Secret");
        Some(server)
    } else {
        None
    };
    let many = |after: &str| {
        if shared {
            json!({"idle": {"after": after}, "database": {"mode": "External",
                "external": {"adminSecretRef": {"name": "shared-postgres-admin", "key": "url"}}}})
        } else {
            idle(true, after)
        }
    };
    let total = env_number("BENCH_IDLE_TENANTS", 100);
    let batch = env_number("BENCH_IDLE_BATCH", 10).max(1);
    let awake = total.div_ceil(10);
    let started = Instant::now();
    let names: Vec<String> = (0..total).map(|i| format!("many-{i}")).collect();
    // In batches, each up (and its sleepers asleep) before the next: the
    // count is of the steady state, not of 100 tenants starting at once on
    // two cores (which their liveness probes do not survive).
    for (b, chunk) in names.chunks(batch).enumerate() {
        for (i, name) in chunk.iter().enumerate() {
            // The awake tenth has a long idle time: it stays up for the count.
            let after = if b * batch + i < awake { "168h" } else { "10s" };
            bench.create(name, many(after)).await;
        }
        for name in chunk {
            bench.wait_up(name).await;
        }
        for (i, name) in chunk.iter().enumerate() {
            if b * batch + i >= awake {
                bench.wait_asleep(name, !shared).await;
            }
        }
        println!(
            "{} tenants up, {:.0}s",
            (b * batch + chunk.len()).min(total),
            started.elapsed().as_secs_f64()
        );
    }
    let (mut rss, mut pss, mut processes) = (0, 0, 0);
    for name in &names {
        let (r, p, n) = bench.memory(name).await;
        rss += r;
        pss += p;
        processes += n;
    }
    println!(
        "idle cost, {total} tenants ({}) of which {} asleep (ready and asleep in {:.0}s): {processes} processes, RSS {} MB in all ({:.1} MB a tenant), PSS {} MB ({:.1} MB a tenant)",
        if shared {
            "External databases on one shared server"
        } else {
            "Dedicated databases, stopped while asleep"
        },
        total - awake,
        started.elapsed().as_secs_f64(),
        rss / 1024,
        rss as f64 / 1024.0 / total as f64,
        pss / 1024,
        pss as f64 / 1024.0 / total as f64,
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let instance = workspace_binary("atoll-instance");
        let operator = workspace_binary("atoll-operator");
        for bin in [&instance, &operator] {
            assert!(
                bin.is_file(),
                "{} is not built: run `cargo build --release -p atoll-instance -p atoll-operator` first",
                bin.display()
            );
        }
        let cluster = TestCluster::start(ClusterKind::KubeSim)
            .await
            .unwrap_or_else(|e| panic!("kubesim did not start: {e}"));
        let client = cluster.client();
        for crd in atoll_crds::all_crds() {
            Api::<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>::all(client.clone())
                .create(&PostParams::default(), &crd)
                .await
                .expect("the CRDs");
        }
        let state = tempfile::Builder::new()
            .prefix("atoll-wake-bench-")
            .tempdir()
            .expect("a temporary directory");
        let config = NodeSimConfig::new(state.path().join("node"))
            .postgres()
            .binary("atoll-instance", instance)
            .ingress("127.0.0.1:0".parse().expect("addr"));
        let node = cluster
            .start_node(config)
            .await
            .unwrap_or_else(|e| panic!("nodesim did not start: {e}"));
        let ingress = node.ingress_addr().expect("the ingress router");
        let gate_log = state.path().join("wake-gate.log");
        let log = std::fs::File::create(&gate_log).expect("a log file");
        let (gate, gate_addr) = atoll_testkit::wake_gate::spawn(
            &operator,
            cluster.kubeconfig_path(),
            log,
            120,
        )
        .await
        .expect("the wake gate");
        let routed = atoll_testkit::wake_gate::register(&client, "atoll-system", gate_addr)
            .await
            .expect("the wake gate's Service");
        assert!(routed, "kubesim takes the gate's loopback endpoint");
        let operator_task = start_operator(&client);
        let bench = Bench {
            client,
            gate_log,
            node,
            ingress,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(180))
                .build()
                .expect("http client"),
        };
        println!("wake benchmark: kubesim, nodesim (PostgreSQL 15, atoll-instance), wake gate at {gate_addr}");
        // BENCH_PARTS: `wake`, `cost` (one tenant in each state), `many`
        // (100 tenants, 90 % asleep); all by default.
        let parts = std::env::var("BENCH_PARTS").unwrap_or_else(|_| "wake,cost,many".into());
        if parts.contains("wake") {
            wake_times(&bench).await;
        }
        if parts.contains("cost") {
            idle_cost(&bench).await;
        }
        if parts.contains("many") {
            many_cost(&bench).await;
        }
        operator_task.abort();
        drop(gate);
        bench.node.shutdown().await;
        if let Err(e) = cluster.stop().await {
            eprintln!("stopping kubesim: {e}");
        }
    });
}
