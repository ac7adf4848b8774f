//! Scale benchmark: N tenants in kubesim (over HTTP) or on the real API
//! server (realkube, without controller manager and scheduler: the
//! stand-in kubelet is the only writer of workload status, as on kubesim),
//! the operator binary as a separate process, workloads marked ready
//! instantly by a stand-in kubelet. Prints time to converge, tenants
//! converged per second, writes per tenant, writes during a resync at
//! rest, and the operator's peak RSS.
//!
//! `cargo bench -p atoll-operator --bench scale` (sizes from
//! `ATOLL_BENCH_TENANTS`, default `1000,10000`; clusters from
//! `ATOLL_BENCH_CLUSTER`, `kubesim` (default), `realkube` or
//! `kubesim,realkube`, each size on each cluster in turn).
//!
//! Writes are counted from kubesim's request log (writes that changed the
//! store) and from realkube's audit log (successful write requests,
//! no-op patches included, which the real server does not tell apart): the
//! operator's (`fieldManager=atoll-operator`) and every Tenant write.

use std::process::Stdio;
use std::time::{Duration, Instant};

use atoll_crds::{Phase, Tenant, tenant_crd};
use atoll_testkit::kubesim::{KubeSim, Server};
use atoll_testkit::realkube::{RealKube, RealKubeOptions};
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

/// The API server under test, and how its writes are counted.
enum Cluster {
    Sim {
        sim: KubeSim,
        server: Server,
        _dir: tempfile::TempDir,
        kubeconfig: std::path::PathBuf,
    },
    Real {
        kube: Box<RealKube>,
        audit: std::path::PathBuf,
        _dir: tempfile::TempDir,
    },
}

/// Where counting starts: kubesim's log mark, or an audit log offset.
#[derive(Clone, Copy)]
enum Mark {
    Sim(usize),
    Real(u64),
}

const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  verbs: [get, list, watch]
- level: Metadata
";

impl Cluster {
    async fn start(kind: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        if kind == "realkube" {
            let policy = dir.path().join("audit-policy.yaml");
            std::fs::write(&policy, AUDIT_POLICY).expect("audit policy");
            let audit = dir.path().join("audit.log");
            let options = RealKubeOptions {
                controller_manager: false,
                scheduler: false,
                apiserver_args: vec![
                    format!("--audit-policy-file={}", policy.display()),
                    format!("--audit-log-path={}", audit.display()),
                    "--audit-log-format=json".into(),
                    "--audit-log-maxsize=0".into(),
                ],
                ..RealKubeOptions::default()
            };
            let kube = RealKube::start(options)
                .await
                .unwrap_or_else(|e| panic!("realkube did not start: {e}"));
            return Self::Real {
                kube: Box::new(kube),
                audit,
                _dir: dir,
            };
        }
        let sim = KubeSim::new();
        let server = sim
            .serve("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("serve");
        let kubeconfig = dir.path().join("kubeconfig");
        server.write_kubeconfig(&kubeconfig).expect("kubeconfig");
        Self::Sim {
            sim,
            server,
            _dir: dir,
            kubeconfig,
        }
    }

    fn client(&self) -> Client {
        match self {
            Self::Sim { sim, .. } => sim.client(),
            Self::Real { kube, .. } => kube.client(),
        }
    }

    fn kubeconfig(&self) -> &std::path::Path {
        match self {
            Self::Sim { kubeconfig, .. } => kubeconfig,
            Self::Real { kube, .. } => kube.kubeconfig_path(),
        }
    }

    fn mark(&self) -> Mark {
        match self {
            Self::Sim { sim, .. } => Mark::Sim(sim.request_log().mark()),
            Self::Real { audit, .. } => Mark::Real(std::fs::metadata(audit).map_or(0, |m| m.len())),
        }
    }

    /// Successful writes since `mark` that `wanted` (resource, field
    /// manager) selects.
    fn writes_since(&self, mark: Mark, wanted: impl Fn(&str, &str) -> bool) -> usize {
        match (self, mark) {
            (Self::Sim { sim, .. }, Mark::Sim(mark)) => sim
                .request_log()
                .writes_since(mark)
                .into_iter()
                .filter(|r| r.wrote && wanted(&r.resource, &r.field_manager))
                .count(),
            (Self::Real { audit, .. }, Mark::Real(offset)) => audit_writes(audit, offset, &wanted),
            _ => 0,
        }
    }

    /// Write requests since `mark` that `wanted` selects, whether they
    /// changed anything or not.
    fn requests_since(&self, mark: Mark, wanted: impl Fn(&str, &str) -> bool) -> usize {
        match (self, mark) {
            (Self::Sim { sim, .. }, Mark::Sim(mark)) => sim
                .request_log()
                .count_since(mark, |r| wanted(&r.resource, &r.field_manager)),
            (Self::Real { audit, .. }, Mark::Real(offset)) => audit_writes(audit, offset, &wanted),
            _ => 0,
        }
    }

    async fn stop(self) {
        match self {
            Self::Sim { server, .. } => server.shutdown().await,
            Self::Real { kube, .. } => kube.stop().expect("realkube stops"),
        }
    }
}

/// Successful write requests in the audit log after `offset`.
fn audit_writes(
    audit: &std::path::Path,
    offset: u64,
    wanted: &dyn Fn(&str, &str) -> bool,
) -> usize {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(audit) else {
        return 0;
    };
    let mut text = String::new();
    if file.seek(SeekFrom::Start(offset)).is_err() || file.read_to_string(&mut text).is_err() {
        return 0;
    }
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|e| {
            let verb = e["verb"].as_str().unwrap_or_default();
            let code = e["responseStatus"]["code"].as_i64().unwrap_or(0);
            let uri = e["requestURI"].as_str().unwrap_or_default();
            let manager = uri
                .split(['?', '&'])
                .find_map(|p| p.strip_prefix("fieldManager="))
                .unwrap_or_default();
            matches!(verb, "create" | "update" | "patch" | "delete")
                && (200..300).contains(&code)
                && wanted(
                    e["objectRef"]["resource"].as_str().unwrap_or_default(),
                    manager,
                )
        })
        .count()
}

async fn create_tenants(client: &Client, n: usize) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &tenant_crd())
        .await
        .expect("CRD");
    let tenants: Api<Tenant> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    // The real server serves a new CRD's resource a moment later.
    while tenants.list(&Default::default()).await.is_err() {
        assert!(Instant::now() < deadline, "Tenants are not served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
}

/// The operator's writes and every Tenant write (finalizer, status); not
/// the stand-in kubelet's workload status writes.
fn operator_write(resource: &str, manager: &str) -> bool {
    manager == "atoll-operator" || resource == "tenants"
}

async fn run(kind: &str, n: usize) {
    let cluster = Cluster::start(kind).await;
    let client = cluster.client();
    create_tenants(&client, n).await;
    let kubeconfig = cluster.kubeconfig().to_owned();
    let mark = cluster.mark();
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
                "{kind}: all {n} tenants provisioned (objects applied) after {:.1}s",
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
    let writes = cluster.writes_since(mark, operator_write);

    // Resync at rest: a fresh operator process reconciles every tenant.
    let _ = operator.kill();
    let _ = operator.wait();
    let mark = cluster.mark();
    let mut operator = spawn_operator(&kubeconfig);
    let resync_started = Instant::now();
    let ingress_applies =
        |resource: &str, manager: &str| resource == "ingresses" && manager == "atoll-operator";
    // Counted as requests (no-ops too): every tenant's Ingress applied.
    while cluster.requests_since(mark, ingress_applies) < n {
        assert!(Instant::now() < deadline, "resync did not finish");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let resync = resync_started.elapsed();
    let resync_writes = cluster.writes_since(mark, |_, _| true);
    let resync_peak = peak_rss_mb(operator.id()).unwrap_or(0.0);
    let _ = operator.kill();
    let _ = operator.wait();
    cluster.stop().await;

    println!(
        "cluster={kind} tenants={n} converge={:.1}s tenants_per_s={:.1} writes_per_tenant={:.2} resync={:.1}s resync_writes={resync_writes} operator_peak_rss={:.0}MB (resync {:.0}MB)",
        converge.as_secs_f64(),
        n as f64 / converge.as_secs_f64(),
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
    let clusters: Vec<String> = std::env::var("ATOLL_BENCH_CLUSTER")
        .unwrap_or_else(|_| "kubesim".into())
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    for n in sizes {
        for kind in &clusters {
            runtime.block_on(run(kind, n));
        }
    }
}
