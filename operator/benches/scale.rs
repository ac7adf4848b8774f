//! Scale benchmark: N tenants in kubesim (over HTTP), the operator binary as
//! a separate process, workloads marked ready instantly by a stand-in
//! kubelet. Prints time to converge, writes per tenant, writes during a
//! resync at rest, and the operator's peak RSS.
//!
//! `cargo bench -p atoll-operator --bench scale` (sizes from
//! `ATOLL_BENCH_TENANTS`, default `1000,10000`).

use std::process::Stdio;
use std::time::{Duration, Instant};

use atoll_crds::{Phase, Tenant, tenant_crd};
use atoll_testkit::kubesim::KubeSim;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Marks every workload ready at its generation as soon as it is seen, as
/// nodesim's instant mode does (watch-driven, so it costs O(1) per change).
async fn instant_kubelet(client: Client) {
    use futures::StreamExt;
    use kube::runtime::watcher::{self, Event};

    let deployments = watcher::watcher(
        Api::<Deployment>::all(client.clone()),
        watcher::Config::default(),
    );
    let sets = watcher::watcher(
        Api::<StatefulSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let client_d = client.clone();
    let d = deployments.for_each_concurrent(8, move |event| {
        let client = client_d.clone();
        async move {
            let (Ok(Event::Apply(d)) | Ok(Event::InitApply(d))) = event else {
                return;
            };
            if d.status.as_ref().and_then(|s| s.observed_generation) == d.metadata.generation {
                return;
            }
            let api: Api<Deployment> = Api::namespaced(client, &d.namespace().unwrap_or_default());
            let n = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let status = json!({"status": {"observedGeneration": d.metadata.generation,
                "replicas": n, "readyReplicas": n, "updatedReplicas": n, "availableReplicas": n}});
            let _ = api
                .patch_status(
                    &d.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(status),
                )
                .await;
        }
    });
    let s = sets.for_each_concurrent(8, move |event| {
        let client = client.clone();
        async move {
            let (Ok(Event::Apply(s)) | Ok(Event::InitApply(s))) = event else {
                return;
            };
            if s.status.as_ref().and_then(|s| s.observed_generation) == s.metadata.generation {
                return;
            }
            let api: Api<StatefulSet> = Api::namespaced(client, &s.namespace().unwrap_or_default());
            let status = json!({"status": {"observedGeneration": s.metadata.generation,
                "replicas": 1, "readyReplicas": 1, "updatedReplicas": 1, "currentReplicas": 1}});
            let _ = api
                .patch_status(
                    &s.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(status),
                )
                .await;
        }
    });
    futures::join!(d, s);
}

fn spawn_operator(kubeconfig: &std::path::Path) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_atoll-operator"))
        .args([
            "run",
            "--metrics-addr",
            "127.0.0.1:0",
            "--concurrency",
            "32",
        ])
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("operator binary starts")
}

/// Tenants with a status and Ready ones, kept by a watch: the bench's own
/// polling must not cost O(tenants) per look, or it measures itself.
#[derive(Default)]
struct Progress {
    with_status: std::collections::HashSet<String>,
    ready: std::collections::HashSet<String>,
}

/// Also returns the watching task, to stop once converged: left running past
/// the server's shutdown it was once seen re-watching in a tight loop that
/// kept the bench process from exiting.
fn track(
    client: Client,
) -> (
    std::sync::Arc<std::sync::Mutex<Progress>>,
    tokio::task::JoinHandle<()>,
) {
    use futures::StreamExt;
    use kube::runtime::watcher::{self, Event};

    let progress = std::sync::Arc::new(std::sync::Mutex::new(Progress::default()));
    let shared = progress.clone();
    let task = tokio::spawn(async move {
        let mut events = std::pin::pin!(watcher::watcher(
            Api::<Tenant>::all(client),
            watcher::Config::default()
        ));
        while let Some(event) = events.next().await {
            let (Ok(Event::Apply(t)) | Ok(Event::InitApply(t))) = event else {
                continue;
            };
            let mut p = shared.lock().expect("progress");
            let name = t.name_any();
            if t.status.is_some() {
                p.with_status.insert(name.clone());
            }
            if t.status.as_ref().and_then(|s| s.phase) == Some(Phase::Ready) {
                p.ready.insert(name);
            } else {
                p.ready.remove(&name);
            }
        }
    });
    (progress, task)
}

async fn run(n: usize) {
    let sim = KubeSim::new();
    let server = sim
        .serve("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("serve");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    let client = sim.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &tenant_crd())
        .await
        .expect("CRD");
    let tenants: Api<Tenant> = Api::all(client.clone());
    for i in 0..n {
        let tenant: Tenant = serde_json::from_value(json!({
            "apiVersion": "atoll.dev/v1alpha1", "kind": "Tenant",
            "metadata": {"name": format!("t{i:05}")},
            "spec": {"members": [{"user": format!("admin@t{i:05}.example.com"), "role": "Admin"}]}
        }))
        .expect("tenant");
        tenants
            .create(&PostParams::default(), &tenant)
            .await
            .expect("create");
    }

    let log = sim.request_log();
    let mark = log.mark();
    let started = Instant::now();
    let mut operator = spawn_operator(&kubeconfig);
    let kubelet = tokio::spawn(instant_kubelet(client.clone()));
    let mut peak = 0f64;
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut first_status: Option<Duration> = None;
    let (progress, tracker) = track(client.clone());
    let counts = || {
        let p = progress.lock().expect("progress");
        (p.with_status.len(), p.ready.len())
    };
    while counts().1 < n {
        if first_status.is_none() && counts().0 == n {
            first_status = Some(started.elapsed());
            eprintln!(
                "all {n} tenants provisioned (objects applied) after {:.1}s",
                started.elapsed().as_secs_f64()
            );
        }
        peak = peak.max(peak_rss_mb(operator.id()).unwrap_or(0.0));
        assert!(
            Instant::now() < deadline,
            "{n} tenants did not converge in 15 minutes"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let converge = started.elapsed();
    peak = peak.max(peak_rss_mb(operator.id()).unwrap_or(0.0));
    kubelet.abort();
    tracker.abort();
    let writes = log
        .writes_since(mark)
        .into_iter()
        // The operator's applies and its Tenant patches (finalizer, status);
        // not the stand-in kubelet's workload status writes, not events.
        .filter(|r| r.wrote && (r.field_manager == "atoll-operator" || r.resource == "tenants"))
        .count();

    // Resync at rest: a fresh operator process reconciles every tenant.
    let _ = operator.kill();
    let _ = operator.wait();
    let mark = log.mark();
    let mut operator = spawn_operator(&kubeconfig);
    let resync_started = Instant::now();
    while log.count_since(mark, |r| {
        r.resource == "ingresses" && r.field_manager == "atoll-operator"
    }) < n
    {
        assert!(Instant::now() < deadline, "resync did not finish");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let resync = resync_started.elapsed();
    let resync_writes = log
        .writes_since(mark)
        .into_iter()
        .filter(|r| r.wrote)
        .count();
    let resync_peak = peak_rss_mb(operator.id()).unwrap_or(0.0);
    let _ = operator.kill();
    let _ = operator.wait();
    server.shutdown().await;

    println!(
        "tenants={n} converge={:.1}s writes_per_tenant={:.2} resync={:.1}s resync_writes={resync_writes} operator_peak_rss={:.0}MB (resync {:.0}MB)",
        converge.as_secs_f64(),
        writes as f64 / n as f64,
        resync.as_secs_f64(),
        peak,
        resync_peak,
    );
}

fn main() {
    let sizes: Vec<usize> = std::env::var("ATOLL_BENCH_TENANTS")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for n in sizes {
        runtime.block_on(run(n));
    }
}
